//! The Kafka listener: accepts connections and runs each on its own task.

use super::connection::{self, ConnConfig};
use crate::wasm::{ConnInfo, Runtime};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

#[derive(Clone, Debug)]
pub struct NetConfig {
    pub conn: ConnConfig,
    /// The tenant this listener's connections belong to.
    pub tenant: String,
    /// What Metadata returns on this listener; None: the host's advertised address.
    pub advertised: Option<Arc<(String, i32)>>,
    /// Open connections at most; further ones are closed at once, with a log line.
    pub max_connections: usize,
}

pub struct Listener {
    listener: TcpListener,
    runtime: Arc<Runtime>,
    cfg: NetConfig,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

impl Listener {
    pub fn new(listener: TcpListener, runtime: Arc<Runtime>, cfg: NetConfig) -> Self {
        Listener { listener, runtime, cfg }
    }

    /// Accept until `shutdown` turns true; then let open connections answer their parked
    /// requests and close (waiting at most `drain`).
    pub async fn run(self, shutdown: watch::Receiver<bool>, drain: Duration) {
        let mut conns = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        if conns.len() >= self.cfg.max_connections {
                            tracing::warn!(%peer, limit = self.cfg.max_connections, "refusing a connection: at max_connections");
                            drop(stream);
                            continue;
                        }
                        let _ = stream.set_nodelay(true);
                        let info = ConnInfo {
                            id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
                            tenant: self.cfg.tenant.clone(),
                            peer: peer.to_string(),
                            advertised: self.cfg.advertised.clone(),
                        };
                        tracing::debug!(conn = info.id, %peer, "accepted connection");
                        conns.spawn(connection::serve(stream, self.runtime.clone(), info, self.cfg.conn.clone(), shutdown.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            }
        }
        drop(self.listener);
        let drained = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!("{} connections still open after {drain:?}; closing them", conns.len());
            conns.abort_all();
        }
    }
}
