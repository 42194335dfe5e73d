//! Where transform calls run: threads of their own, at a lower CPU priority than the host's
//! workers. A tenant's transform is that tenant's code; one that loops until its deadline (or is
//! merely slow) spends its CPU on these threads, and the kernel's scheduler lets the host's
//! workers — every other tenant's requests, the translator, the coordinator — run first
//! whenever both want a core. The call's time is charged to the request that waits for it
//! (`wasm::charge`), so the tenant's `request_percentage` ceiling and quotas count it.
//!
//! The pool starts with the first call (a host without transforms has no such threads) and has
//! as many threads as the machine has cores, each running a single-threaded runtime of its own:
//! a call stays on the thread it started on (a spinning guest yields at every epoch tick; with
//! work stealing it would hop between threads, and so between cores, at each yield), and a new
//! call goes to the thread with the fewest calls. How many of one tenant's calls run at once is
//! still `transform_max_concurrency` (`calls.rs`).

use crate::wasm::Timed;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How much lower than the host's workers the pool's threads run (a nice value: the kernel's
/// fair scheduler weighs a thread at nice 10 at about a tenth of one at nice 0).
pub const NICENESS: i32 = 10;

/// One transform thread: where to spawn on it, and how many calls it has.
struct Worker {
    handle: tokio::runtime::Handle,
    calls: Arc<AtomicUsize>,
}

/// The transform threads. Dropping the pool stops them (each after its current poll).
#[derive(Default)]
pub struct Pool {
    workers: OnceLock<(Vec<Worker>, tokio::sync::watch::Sender<()>)>,
}

/// Why a call did not complete on the pool.
#[derive(thiserror::Error, Debug)]
pub enum PoolFailure {
    #[error("the transform threads did not start")]
    Unavailable,
    /// The call panicked or the pool shut down under it.
    #[error("the transform call was lost: {0}")]
    Lost(String),
}

impl Pool {
    fn workers(&self) -> &[Worker] {
        &self
            .workers
            .get_or_init(|| {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let (stop, stopped) = tokio::sync::watch::channel(());
                let workers = (0..threads).filter_map(|i| start_worker(i, stopped.clone())).collect();
                (workers, stop)
            })
            .0
    }

    /// Run `call` on the pool; answer its output and the time its polls took there (its CPU
    /// time, as near as a wall clock around each poll measures it). Dropping the returned
    /// future stops the call at its next yield.
    pub async fn run<F>(&self, call: F) -> Result<(F::Output, Duration), PoolFailure>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let worker = self
            .workers()
            .iter()
            .min_by_key(|w| w.calls.load(Ordering::Relaxed))
            .ok_or(PoolFailure::Unavailable)?;
        let calls = worker.calls.clone();
        calls.fetch_add(1, Ordering::Relaxed);
        let handle = worker.handle.spawn(async move {
            let _counted = Counted(calls);
            let mut busy = Duration::ZERO;
            let out = Timed { inner: std::pin::pin!(call), busy: &mut busy }.await;
            (out, busy)
        });
        match AbortOnDrop(handle).await {
            Ok(done) => Ok(done),
            Err(e) => Err(PoolFailure::Lost(e.to_string())),
        }
    }
}

/// Start transform thread `i`: a single-threaded runtime at the lowered priority, running until
/// the pool is dropped (`stopped` then ends). None (logged) if it could not start.
fn start_worker(i: usize, mut stopped: tokio::sync::watch::Receiver<()>) -> Option<Worker> {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(thread = i, "cannot start a transform thread's runtime: {e}");
            return None;
        }
    };
    let handle = runtime.handle().clone();
    let started = std::thread::Builder::new().name("guise-transform".into()).spawn(move || {
        lower_priority();
        // Runs the calls spawned on it until the pool's sender goes away; dropping the runtime
        // here, on its own thread, then drops what is left of them.
        runtime.block_on(async move { while stopped.changed().await.is_ok() {} });
    });
    match started {
        Ok(_) => Some(Worker { handle, calls: Arc::new(AtomicUsize::new(0)) }),
        Err(e) => {
            tracing::error!(thread = i, "cannot start a transform thread: {e}");
            None
        }
    }
}

/// Counts a call off its thread when it ends (also when it is aborted).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Lower the calling thread's priority by [`NICENESS`] below the thread that started it (Linux:
/// `setpriority` on a thread id affects that thread only). Raising one's own nice value needs no
/// privilege; if it fails anyway, the calls run at the host's priority and a warning says so.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    let base = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), lowered(base)) {
        tracing::warn!("cannot lower a transform thread's priority (they run at the host's): {e}");
    }
}

/// The nice value [`NICENESS`] below `base` (19 is the lowest priority there is).
fn lowered(base: i32) -> i32 {
    (base + NICENESS).min(19)
}

/// The spawned call, aborted when the request waiting for it goes away (a client that
/// disconnects does not leave its transform running outside its tenant's slots).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn calls_run_on_lower_priority_threads_and_report_their_time() {
        let pool = Pool::default();
        let (name, nice) = pool
            .run(async {
                let name = std::thread::current().name().map(str::to_string);
                let spin = Instant::now();
                while spin.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
                (name, rustix::process::getpriority_process(None))
            })
            .await
            .map(|(out, busy)| {
                assert!(busy >= Duration::from_millis(20), "{busy:?}");
                out
            })
            .unwrap();
        assert_eq!(name.as_deref(), Some("guise-transform"));
        // getpriority(PRIO_PROCESS, 0) reads the calling thread's nice value on Linux; the
        // pool's threads start from the nice value of the thread that started them (this one).
        let here = rustix::process::getpriority_process(None).unwrap();
        assert_eq!(nice.unwrap(), lowered(here));
        // A call whose waiter goes away is stopped.
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let call = pool.run(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(tokio::time::timeout(Duration::from_millis(10), call).await);
        assert!(rx.await.is_err(), "the call's future was dropped");
    }
}
