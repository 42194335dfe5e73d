//! The one accept loop, shared by the Kafka listeners, the Pulsar endpoint and the admin API (in
//! the style of mini-redis's `server::run(listener, shutdown)`): a connection cap, a span per
//! connection, back-off when accepting fails, and on shutdown a bounded drain of the open
//! connections before they are aborted.

use super::kafka::connection::{self, ConnConfig};
use super::tls::{Stream, Tls};
use crate::wasm::{ANONYMOUS, ConnInfo, Runtime};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// What every listener is bounded by.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at most; further ones are closed at once, with a log line.
    pub max_connections: usize,
    /// Open connections from one IP address at most; further ones are closed at once.
    pub max_per_ip: usize,
    /// How long open connections may take to finish after shutdown before they are aborted.
    pub drain: Duration,
}

/// How long a TLS handshake may take once the connection is accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection the loop accepted, for the protocol's handler.
#[derive(Clone, Debug)]
pub struct Accepted {
    /// Unique among all the host's connections, whatever the protocol.
    pub id: u64,
    pub peer: SocketAddr,
    /// Turns true at shutdown: finish the request in hand (answer parked ones), then close.
    pub shutdown: watch::Receiver<bool>,
    /// Over TLS with a client certificate: its subject as Kafka names principals
    /// (`User:CN=…`).
    pub principal: Option<String>,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// Accept on `listener` until `shutdown` turns true, running `serve` on its own task for each
/// connection (after a TLS handshake when `tls` is given), inside a `conn` span naming the
/// protocol (`kind`), the connection id and the peer. Then stop accepting and let the open
/// connections finish within `limits.drain`.
pub async fn run<F, Fut>(
    kind: &'static str,
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    serve: F,
) where
    F: Fn(Stream, Accepted) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let serve = Arc::new(serve);
    // Failed handshakes (scanners, clients with the wrong CA) are logged, a few at most.
    let refused = Arc::new(crate::logs::Throttle::new(crate::logs::PERIOD));
    let mut conns = JoinSet::new();
    // Open connections per IP address (each connection's task returns its address).
    let mut per_ip: HashMap<IpAddr, usize> = HashMap::new();
    let closed = |per_ip: &mut HashMap<IpAddr, usize>, ended: Result<IpAddr, tokio::task::JoinError>| {
        if let Ok(ip) = ended
            && let Some(n) = per_ip.get_mut(&ip)
        {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    };
    let accept_failures = crate::logs::Throttle::new(crate::logs::PERIOD);
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    while let Some(ended) = conns.try_join_next() {
                        closed(&mut per_ip, ended);
                    }
                    if conns.len() >= limits.max_connections {
                        tracing::warn!(%peer, kind, limit = limits.max_connections, "refusing a connection: at max_connections");
                        drop(stream);
                        continue;
                    }
                    let from_ip = per_ip.entry(peer.ip()).or_default();
                    if *from_ip >= limits.max_per_ip {
                        tracing::warn!(%peer, kind, limit = limits.max_per_ip, "refusing a connection: at max_connections_per_ip");
                        drop(stream);
                        continue;
                    }
                    *from_ip += 1;
                    let _ = stream.set_nodelay(true);
                    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
                    let span = tracing::info_span!("conn", kind, id, %peer);
                    tracing::debug!(parent: &span, "accepted connection");
                    let mut accepted = Accepted { id, peer, shutdown: shutdown.clone(), principal: None };
                    let (serve, tls, refused) = (serve.clone(), tls.clone(), refused.clone());
                    conns.spawn(async move {
                        let stream = match tls {
                            None => Stream::Plain(stream),
                            Some(tls) => match tls.accept(stream, HANDSHAKE_TIMEOUT).await {
                                Ok((stream, principal)) => {
                                    tracing::debug!(principal, "TLS established");
                                    accepted.principal = principal;
                                    stream
                                }
                                Err(e) => {
                                    if let Some(left_out) = refused.hit() {
                                        tracing::info!(left_out, "closing the connection: {e}");
                                    }
                                    return peer.ip();
                                }
                            },
                        };
                        serve(stream, accepted).await;
                        peer.ip()
                    }.instrument(span));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning, and
                    // say so once per period, not 20 times a second.
                    if let Some(left_out) = accept_failures.hit() {
                        tracing::warn!(kind, left_out, "accept failed: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(ended) = conns.join_next(), if !conns.is_empty() => closed(&mut per_ip, ended),
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(limits.drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(kind, "{} connections still open after {:?}; closing them", conns.len(), limits.drain);
        conns.abort_all();
    }
}

/// A Kafka listener's settings.
#[derive(Clone, Debug)]
pub struct NetConfig {
    pub conn: ConnConfig,
    /// The tenant this listener's connections belong to.
    pub tenant: crate::tenant::TenantId,
    /// What Metadata returns on this listener; None: the host's advertised address.
    pub advertised: Option<Arc<(String, i32)>>,
    pub limits: Limits,
    /// Some on an SSL listener.
    pub tls: Option<Arc<Tls>>,
}

/// A Kafka listener: every connection runs the translator through `runtime`.
pub struct Listener {
    listener: TcpListener,
    runtime: Arc<Runtime>,
    cfg: NetConfig,
}

impl Listener {
    pub fn new(listener: TcpListener, runtime: Arc<Runtime>, cfg: NetConfig) -> Self {
        Listener { listener, runtime, cfg }
    }

    /// Serve until `shutdown` turns true; then let open connections answer their parked
    /// requests and close (see [`run`]).
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let Listener { listener, runtime, cfg } = self;
        let (limits, tls) = (cfg.limits, cfg.tls.clone());
        run("kafka", listener, tls, limits, shutdown, move |stream, accepted| {
            // A client certificate's principal may name the tenant; else the listener's.
            let tenant = accepted
                .principal
                .as_deref()
                .and_then(|p| cfg.conn.principals.tenant_of(p, crate::net::principals::Via::Certificate))
                .unwrap_or_else(|| cfg.tenant.clone());
            let info = ConnInfo {
                id: accepted.id,
                tenant: tenant.to_string(),
                principal: accepted.principal.clone().unwrap_or_else(|| ANONYMOUS.to_string()),
                peer: accepted.peer.to_string(),
                client_ip: accepted.peer.ip().to_canonical().to_string(),
                advertised: cfg.advertised.clone(),
            };
            connection::serve(stream, runtime.clone(), info, cfg.conn.clone(), accepted.shutdown)
        })
        .await
    }
}
