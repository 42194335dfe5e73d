//! Wiring: open the log, load the translator, bind the listeners, and shut down cleanly.

use crate::admin;
use crate::config::Config;
use crate::net::connection::ConnConfig;
use crate::net::{Listener, NetConfig};
use crate::storage::embedded::EmbeddedLog;
use crate::storage::{FsyncPolicy, Log, LogDefaults, StorageError};
use crate::wasm::{
    DEFAULT_TRANSLATOR, GuestLimits, HostContext, Registry, RegistryConfig, RegistryError, Runtime, WasmError,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(thiserror::Error, Debug)]
pub enum ServerError {
    #[error("opening the log in {dir}: {source}")]
    Storage { dir: String, source: StorageError },
    #[error("reading the translator {path}: {source}")]
    Translator { path: String, source: std::io::Error },
    #[error("starting the Wasm runtime: {0}")]
    Wasm(#[from] WasmError),
    #[error("opening the module registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("binding {what} on {addr}: {source}")]
    Bind { what: &'static str, addr: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("invalid advertised address {0:?}: expected HOST:PORT")]
    Advertised(String),
    #[error("starting the group coordinator: {0}")]
    Coord(#[from] crate::coord::CoordError),
}

/// How often the group coordinator's timer runs (session expiry, rebalance deadlines).
const GROUP_TICK: Duration = Duration::from_millis(100);

/// A running host.
pub struct Server {
    pub kafka_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub log: Arc<dyn Log>,
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Start serving with `config` (the embedded log and the embedded translator).
    pub async fn start(config: &Config) -> Result<Server, ServerError> {
        let fsync = config.fsync_policy().map_err(ServerError::Config)?;
        let defaults = LogDefaults {
            segment_bytes: config.segment_bytes,
            max_message_bytes: config.message_max_bytes,
            fsync,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            ..LogDefaults::default()
        };
        let log: Arc<dyn Log> =
            Arc::new(EmbeddedLog::open(&config.data_dir, defaults).map_err(|source| {
                ServerError::Storage { dir: config.data_dir.display().to_string(), source }
            })?);

        let kafka = TcpListener::bind(&config.kafka_addr).await.map_err(|source| ServerError::Bind {
            what: "the Kafka listener",
            addr: config.kafka_addr.clone(),
            source,
        })?;
        let kafka_addr = kafka.local_addr().map_err(|source| ServerError::Bind {
            what: "the Kafka listener",
            addr: config.kafka_addr.clone(),
            source,
        })?;
        let (advertised_host, advertised_port) = advertised(config, kafka_addr)?;

        // Groups and committed offsets of the listener's tenant are replayed now; other tenants'
        // when first used.
        let coord = Arc::new(crate::coord::Coordinator::open(
            log.clone(),
            config.coord_config(),
            &[config.tenant.as_str()],
        )?);

        let ctx = Arc::new(HostContext {
            log: log.clone(),
            namespace: config.namespace.clone(),
            node_id: config.node_id,
            advertised_host,
            advertised_port,
            cluster_id: config.cluster_id.clone(),
            auto_create_topics: config.auto_create_topics,
            default_partitions: config.default_partitions,
            max_frame_bytes: config.max_frame_bytes,
            coord: coord.clone(),
        });
        let limits = GuestLimits {
            memory_bytes: usize::try_from(config.guest_memory()).unwrap_or(usize::MAX),
            call_timeout: Duration::from_millis(config.guest_timeout_ms),
            max_instances: 128,
            max_response_bytes: config.max_frame_bytes as usize,
        };
        let (wasm, source) = match &config.translator {
            Some(path) => (
                std::borrow::Cow::Owned(std::fs::read(path).map_err(|source| ServerError::Translator {
                    path: path.display().to_string(),
                    source,
                })?),
                path.display().to_string(),
            ),
            None => (std::borrow::Cow::Borrowed(DEFAULT_TRANSLATOR), "embedded".to_string()),
        };
        let started = std::time::Instant::now();
        let runtime = Arc::new(Runtime::empty(ctx, limits)?);
        let registry = Arc::new(Registry::open(
            RegistryConfig {
                dir: config.data_dir.join("modules"),
                max_module_bytes: config.module_max_bytes,
                keep_versions: config.module_keep_versions,
                translator: config.translator_module.clone(),
            },
            runtime.clone(),
            &wasm,
            &source,
        )?);
        let active = runtime.translator()?;
        tracing::info!(module = %active.id.name, version = active.id.version, hash = %active.id.short_hash(), elapsed = ?started.elapsed(), "translator ready");

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let listener = Listener::new(
            kafka,
            runtime.clone(),
            NetConfig {
                conn: ConnConfig {
                    max_frame_bytes: config.max_frame_bytes,
                    read_ahead: config.read_ahead,
                    max_inflight_bytes: usize::try_from(config.max_inflight_bytes).unwrap_or(usize::MAX),
                },
                tenant: config.tenant.clone(),
                max_connections: config.max_connections,
            },
        );
        let drain = Duration::from_millis(config.shutdown_drain_ms);
        tasks.push(tokio::spawn(listener.run(shutdown_rx.clone(), drain)));

        let admin = TcpListener::bind(&config.admin_addr).await.map_err(|source| ServerError::Bind {
            what: "the admin listener",
            addr: config.admin_addr.clone(),
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| ServerError::Bind {
            what: "the admin listener",
            addr: config.admin_addr.clone(),
            source,
        })?;
        tasks.push(tokio::spawn(admin::serve(admin, registry.clone(), coord.clone(), shutdown_rx.clone())));
        let check = Duration::from_millis(config.retention_check_interval_ms);
        let l = log.clone();
        tasks.push(tokio::spawn(every(check, shutdown_rx.clone(), move || enforce_retention(&*l))));
        // The group coordinator's timer: sessions, rebalance deadlines, the initial delay.
        tasks.push(tokio::spawn(every(GROUP_TICK, shutdown_rx.clone(), move || {
            coord.tick(std::time::Instant::now())
        })));
        if let FsyncPolicy::Interval(period) = fsync {
            // The "interval" fsync policy; a failed flush is logged by the log itself.
            let l = log.clone();
            tasks.push(tokio::spawn(every(period, shutdown_rx, move || {
                let _ = l.flush();
            })));
        }

        tracing::info!(%kafka_addr, %admin_addr, data_dir = %config.data_dir.display(), "guise is serving Kafka");
        Ok(Server { kafka_addr, admin_addr, log, runtime, registry, shutdown, tasks })
    }

    /// Stop accepting, answer parked requests, close connections, and flush the log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        match self.log.flush() {
            Ok(()) => tracing::info!("log flushed; stopped"),
            Err(e) => tracing::error!("flushing the log on shutdown failed: {e}"),
        }
    }
}

/// Run the blocking `job` every `period` until shutdown, off the async workers.
async fn every(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    job: impl Fn() + Send + Sync + 'static,
) {
    let job = Arc::new(job);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
        let job = job.clone();
        let _ = tokio::task::spawn_blocking(move || job()).await;
    }
}

/// Retention: delete whole expired or surplus segments.
fn enforce_retention(log: &dyn Log) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if let Err(e) = log.enforce_retention(now_ms) {
        tracing::error!("retention failed: {e}");
    }
}

fn advertised(config: &Config, bound: SocketAddr) -> Result<(String, i32), ServerError> {
    match &config.advertised_kafka_addr {
        Some(addr) => {
            let (host, port) = addr.rsplit_once(':').ok_or_else(|| ServerError::Advertised(addr.clone()))?;
            let port: u16 = port.parse().map_err(|_| ServerError::Advertised(addr.clone()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(ServerError::Advertised(addr.clone()));
            }
            Ok((host.to_string(), i32::from(port)))
        }
        None => {
            let host = if bound.ip().is_unspecified() {
                tracing::warn!(
                    "Kafka listener bound to {bound}; advertising 127.0.0.1 — set advertised_kafka_addr for remote clients"
                );
                "127.0.0.1".to_string()
            } else {
                bound.ip().to_string()
            };
            Ok((host, i32::from(bound.port())))
        }
    }
}
