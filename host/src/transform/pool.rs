//! Where transform calls run: threads of their own, one single-threaded runtime per core. A
//! tenant's transform is that tenant's code; its calls do not run on the host's workers, and
//! the time each call's polls took on its thread is charged to the request that waits for it
//! (`wasm::charge`), so the tenant's `request_percentage` ceiling and quotas count it.
//!
//! A call goes to the thread with the fewest calls and stays on it (a spinning guest yields at
//! every epoch tick; with work stealing it would hop between threads, and so between cores, at
//! each yield). The threads run at the host's priority: a lower one was measured to change
//! nothing for other tenants' latency (BENCHMARKS.md, "Tenant fairness"), and would let a busy
//! host push calls into their wall-clock deadlines. The pool starts with the first call (a host
//! without transforms has no such threads). How many of one tenant's calls run at once is
//! `transform_max_concurrency` (`calls.rs`).

use crate::wasm::Timed;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

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
    /// The call panicked.
    #[error("the transform call panicked: {0}")]
    Panicked(String),
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

    /// Run `call` on the pool; answer its output and the time its polls took there. Dropping
    /// the returned future stops the call at its next yield.
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
        AbortOnDrop(handle).await.map_err(|e| PoolFailure::Panicked(e.to_string()))
    }
}

/// Start transform thread `i`: it builds its single-threaded runtime, hands back where to spawn
/// on it, and runs it until the pool is dropped (`stopped` then ends). None (logged) if it could
/// not start. The runtime lives and dies on its own thread.
fn start_worker(i: usize, mut stopped: tokio::sync::watch::Receiver<()>) -> Option<Worker> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let started = std::thread::Builder::new().name("guise-transform".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        };
        let _ = tx.send(Ok(runtime.handle().clone()));
        // Runs the calls spawned on it until the pool's sender goes away; dropping the runtime
        // then drops what is left of them.
        runtime.block_on(async move { while stopped.changed().await.is_ok() {} });
    });
    let handle = match started.map_err(|e| e.to_string()).and_then(|_| rx.recv().map_err(|e| e.to_string())) {
        Ok(Ok(handle)) => handle,
        Ok(Err(e)) | Err(e) => {
            tracing::error!(thread = i, "cannot start a transform thread: {e}");
            return None;
        }
    };
    Some(Worker { handle, calls: Arc::new(AtomicUsize::new(0)) })
}

/// Counts a call off its thread when it ends (also when it is aborted).
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
    async fn calls_run_on_the_transform_threads_and_report_their_time() {
        let pool = Pool::default();
        let (name, busy) = pool
            .run(async {
                let spin = Instant::now();
                while spin.elapsed() < Duration::from_millis(20) {
                    std::hint::spin_loop();
                }
                std::thread::current().name().map(str::to_string)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("guise-transform"));
        assert!(busy >= Duration::from_millis(20), "{busy:?}");
        // A panicking call is reported, and the thread serves the next one.
        let panicked = pool.run(async { panic!("a bad call") }).await;
        assert!(matches!(panicked, Err(PoolFailure::Panicked(_))), "{panicked:?}");
        assert!(pool.run(async { 7 }).await.is_ok_and(|(n, _)| n == 7));
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
