//! The bridge between the [`Log`](crate::storage::Log) port and the async `pulsar` crate: a
//! tokio runtime owned by the backend (two worker threads) runs the client. Each call spawns its
//! work there and awaits it ([`Bridge::run`]); the few synchronous callers (opening the log, the
//! module store, a catalog lookup that misses) block on a channel instead
//! ([`Bridge::run_blocking`]), never asking the caller's runtime to run the future
//! (`Handle::block_on` would panic on its worker).
//!
//! The crate's producers and consumers spawn onto "the current runtime" when dropped, so every
//! such object is wrapped in [`Owned`], which drops it inside this runtime's context.

use crate::storage::StorageError;
use pulsar::{Authentication, Pulsar, TokioExecutor};
use std::future::Future;
use std::time::Duration;

pub type Client = Pulsar<TokioExecutor>;

/// How long one backend operation may take before the caller gets a retriable error.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Pulsar's producer access modes (`ProducerAccessMode`).
pub const EXCLUSIVE: i32 = 1;
pub const EXCLUSIVE_WITH_FENCING: i32 = 3;

/// Whether a Pulsar error says another producer holds or took the topic (ProducerBusy,
/// ProducerFenced): the crate gives the broker's reason as text only.
pub fn is_fenced(e: &StorageError) -> bool {
    let text = e.to_string();
    text.contains("ProducerBusy") || text.contains("Fenced")
}

pub struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    pub client: Client,
}

impl Bridge {
    /// Start the runtime and connect to `url` (`pulsar://HOST:PORT` or `pulsar+ssl://`, whose
    /// certificate is checked against the PEM certificates in `trust` when given, else the
    /// system's roots).
    pub fn connect(
        url: &str,
        token: Option<&str>,
        trust: Option<&std::path::Path>,
    ) -> Result<Bridge, StorageError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("guise-pulsar")
            // The crate's futures are large (several MiB of stack in debug builds).
            .thread_stack_size(16 << 20)
            .enable_all()
            .build()
            .map_err(StorageError::Io)?;
        let handle = runtime.handle().clone();
        let mut builder =
            Pulsar::builder(url, TokioExecutor).with_operation_retry_options(pulsar::OperationRetryOptions {
                operation_timeout: OPERATION_TIMEOUT,
                retry_delay: Duration::from_millis(500),
                // A busy producer or consumer (another host holds the partition) is not waited
                // for long.
                max_retries: Some(6),
            });
        if let Some(path) = trust {
            let pem = std::fs::read(path).map_err(|e| {
                StorageError::InvalidConfig(format!("pulsar_tls_trust_certs_file {}: {e}", path.display()))
            })?;
            builder = builder.with_certificate_chain(pem);
        }
        if let Some(token) = token {
            builder =
                builder.with_auth(Authentication { name: "token".into(), data: token.as_bytes().to_vec() });
        }
        let url = url.to_string();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(builder.build().await);
        });
        let client = match rx.recv_timeout(OPERATION_TIMEOUT) {
            Ok(Ok(client)) => client,
            failed => {
                // Dropping a runtime blocks, which panics when the caller runs on another.
                runtime.shutdown_background();
                return Err(match failed {
                    Err(_) => StorageError::Unavailable(format!("connecting to {url}: no answer")),
                    // The crate logs the broker's reason (AuthenticationError, say) and returns
                    // only "fatal error" for what retrying cannot fix.
                    Ok(Err(e))
                        if format!("{e:?}").contains("AuthenticationError")
                            || e.to_string().contains("fatal error") =>
                    {
                        let tls = if url.starts_with("pulsar+ssl://") {
                            ", or the TLS handshake (check pulsar_tls_trust_certs_file)"
                        } else {
                            ""
                        };
                        let token = if token.is_some() {
                            "check pulsar_auth_token"
                        } else {
                            "no pulsar_auth_token is set"
                        };
                        StorageError::InvalidConfig(format!(
                            "connecting to {url}: Pulsar refused the connection for good: its \
                             authentication ({token}){tls}; the pulsar crate's error line before \
                             this one names the reason: {e}"
                        ))
                    }
                    Ok(Err(e)) => StorageError::Unavailable(format!("connecting to {url}: {e}")),
                    Ok(Ok(_)) => unreachable!("matched above"),
                });
            }
        };
        Ok(Bridge { runtime: Some(runtime), handle, client })
    }

    /// Run the future `make` returns on the backend's runtime and await it (from any runtime).
    ///
    /// The future is made there, not by the caller: the pulsar crate's futures are large (some
    /// hundreds of KiB in debug builds), and one made, moved and held by the caller's futures
    /// would take that much of the caller's stack at every level (a tokio worker's 2 MiB).
    pub async fn run<T, F, M>(&self, make: M) -> Result<T, StorageError>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
        T: Send + 'static,
    {
        // The futures bound their own waits; an error here is a task that died (a panic).
        match self.handle.spawn(made_here(make)).await {
            Ok(r) => r,
            Err(_) => Err(StorageError::Unavailable("the storage task failed".into())),
        }
    }

    /// [`run`](Self::run), blocking the calling thread until it is done.
    pub fn run_blocking<T, F, M>(&self, make: M) -> Result<T, StorageError>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = Result<T, StorageError>> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = made_here(make);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // The futures bound their own waits; this only catches a task that died (a panic).
        rx.recv().map_err(|_| StorageError::Unavailable("the storage task failed".into()))?
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

/// A small future that makes `make`'s future where it is first polled, on the heap.
async fn made_here<T, F, M>(make: M) -> T
where
    M: FnOnce() -> F + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    // Boxed in the statement that makes it: this future's own state holds only the box.
    let fut = Box::pin(make());
    fut.await
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Dropping a runtime blocks, which panics inside another runtime.
            rt.shutdown_background();
        }
    }
}

/// A `pulsar` crate object dropped inside the backend's runtime context.
pub struct Owned<T> {
    inner: Option<T>,
    handle: tokio::runtime::Handle,
}

impl<T> Owned<T> {
    pub fn new(inner: T, handle: tokio::runtime::Handle) -> Owned<T> {
        Owned { inner: Some(inner), handle }
    }
}

impl<T> std::ops::Deref for Owned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner.as_ref().expect("present until dropped")
    }
}

impl<T> std::ops::DerefMut for Owned<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner.as_mut().expect("present until dropped")
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        let _context = self.handle.enter();
        drop(self.inner.take());
    }
}

/// `fut`, or Unavailable after `limit`.
pub async fn within<T>(
    limit: Duration,
    what: impl std::fmt::Display,
    fut: impl Future<Output = Result<T, pulsar::Error>>,
) -> Result<T, StorageError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(StorageError::Unavailable(format!("{what}: {e}"))),
        Err(_) => Err(StorageError::Unavailable(format!("{what}: no answer within {limit:?}"))),
    }
}
