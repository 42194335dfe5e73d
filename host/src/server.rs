//! Wiring: open the log, load the translator, bind the listeners, and shut down cleanly.

use crate::admin;
use crate::config::{Config, SecurityProtocol, StorageKind};
use crate::coord::Coordinator;
use crate::net::kafka::connection::ConnConfig;
use crate::net::tls::Tls;
use crate::net::{Listener, NetConfig, listener};
use crate::storage::embedded::EmbeddedLog;
use crate::storage::pulsar::{PulsarLog, PulsarSettings};
use crate::storage::{FsyncPolicy, Log, LogDefaults, StorageError};
use crate::tenant::{InternalTopics, TenantId};
use crate::transform::Transforms;
use crate::wasm::registry::{StoreLink, TRANSLATOR_SCOPE, restore};
use crate::wasm::{
    Compiler, DEFAULT_TRANSLATOR, GuestLimits, HostContext, Registry, RegistryConfig, RegistryError, Runtime,
    WasmError,
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
    #[error("starting the transaction coordinator: {0}")]
    Txn(#[from] crate::txn::TxnError),
    #[error("starting the tenant transforms: {0}")]
    Transforms(#[from] crate::transform::TransformError),
    #[error(transparent)]
    Tls(crate::net::tls::TlsError),
    #[error(transparent)]
    Scram(#[from] crate::scram::ScramError),
    #[error(transparent)]
    AdminAuth(crate::admin::auth::AuthError),
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// What SASL listeners authenticate with: the users file (PLAIN, SCRAM) and the JWKS file
/// (OAUTHBEARER), for the mechanisms enabled.
fn sasl_config(
    config: &Config,
    users: Arc<crate::scram::Store>,
) -> Result<crate::net::kafka::sasl::SaslConfig, ServerError> {
    use crate::net::kafka::sasl::{Mechanism, SaslConfig};
    let mechanisms = config.sasl_mechanisms()?;
    let oauth =
        if mechanisms.contains(&Mechanism::OAuthBearer) { Some(token_validator(config)?) } else { None };
    Ok(SaslConfig {
        mechanisms,
        users,
        reauth: (config.connections_max_reauth_ms > 0)
            .then(|| Duration::from_millis(config.connections_max_reauth_ms)),
        failure_delay: Duration::from_millis(config.connection_failed_authentication_delay_ms),
        oauth,
    })
}

/// The JWT validator of OAUTHBEARER and the Pulsar endpoint's token authentication.
fn token_validator(config: &Config) -> Result<Arc<crate::net::kafka::sasl::oauth::Validator>, ServerError> {
    let invalid = |message: String| {
        ServerError::Config(crate::config::ConfigError::Invalid {
            key: "sasl_oauthbearer_jwks_file",
            message,
        })
    };
    let jwks = config
        .sasl_oauthbearer_jwks_file
        .as_ref()
        .ok_or_else(|| invalid("token validation needs it".into()))?;
    let validator = crate::net::kafka::sasl::oauth::Validator::load(
        jwks,
        config.sasl_oauthbearer_expected_issuer.clone(),
        config.sasl_oauthbearer_expected_audience.clone(),
        config.sasl_oauthbearer_sub_claim_name.clone(),
        Duration::from_secs(config.sasl_oauthbearer_clock_skew_seconds),
    )
    .map_err(invalid)?;
    Ok(Arc::new(validator))
}

/// Pulsar's default maxMessageSize: the most a Pulsar client may send in one message.
const PULSAR_MAX_MESSAGE: u32 = 5 * 1024 * 1024;
/// Room for the records' framing when a Pulsar message becomes a Kafka batch, so that a message
/// Pulsar clients are allowed to send still fits message.max.bytes.
const PULSAR_HEADROOM: u32 = 16 * 1024;

/// How often open transactions are checked against their timeouts (Kafka's
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s).
const TXN_TICK: Duration = Duration::from_secs(1);

/// How often the group coordinator's timer runs (session expiry, rebalance deadlines).
const GROUP_TICK: Duration = Duration::from_millis(100);

/// A running host.
pub struct Server {
    pub kafka_addr: SocketAddr,
    /// The Pulsar-protocol endpoint's bound address, when `pulsar_addr` is set.
    pub pulsar_addr: Option<SocketAddr>,
    /// The bound addresses of the tenants' extra listeners (`listeners` in the config).
    pub tenant_addrs: Vec<(String, SocketAddr)>,
    pub admin_addr: SocketAddr,
    pub log: Arc<dyn Log>,
    pub runtime: Arc<Runtime>,
    pub registry: Arc<Registry>,
    pub transforms: Arc<Transforms>,
    /// With `cluster`: this host's membership (`GET /cluster`).
    pub members: Option<Arc<crate::cluster::Members>>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Descriptors kept back from the partitions' files, for connections, segments being rolled,
/// and the host's own files.
pub const FD_RESERVE: usize = 1024;

/// Raise this process's open-file limit to its hard limit (the default soft limit is often
/// 1,024); the limit now in force.
pub fn raise_descriptor_limit() -> usize {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = rustix::process::Rlimit { current: limit.maximum, maximum: limit.maximum };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit")
            }
            Err(e) => tracing::warn!(limit = ?limit.current, "cannot raise the open-file limit: {e}"),
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    now.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

impl Server {
    /// Start serving with `config`: open the log it names (the embedded log or a Pulsar
    /// cluster), then [`start_with_log`](Self::start_with_log).
    pub async fn start(config: &Config) -> Result<Server, ServerError> {
        let fsync = config.fsync_policy().map_err(ServerError::Config)?;
        let descriptors = raise_descriptor_limit();
        let defaults = LogDefaults {
            // By default, the descriptors that the connections (at their caps) and the host's
            // own files leave, so the listeners have descriptors to accept with; half of them
            // at least, under a limit too low for the connection caps.
            max_partitions: match config.max_partitions {
                0 => (descriptors / 2).max(
                    descriptors
                        .saturating_sub(config.max_connections)
                        .saturating_sub(config.admin_max_connections)
                        .saturating_sub(FD_RESERVE),
                ),
                n => n,
            },
            segment_bytes: config.segment_bytes,
            max_message_bytes: config.message_max_bytes,
            fsync,
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            ..LogDefaults::default()
        };
        let log: Arc<dyn Log> = match &config.storage {
            StorageKind::Embedded => {
                Arc::new(EmbeddedLog::open(&config.data_dir, defaults).map_err(|source| {
                    ServerError::Storage { dir: config.data_dir.display().to_string(), source }
                })?)
            }
            StorageKind::Pulsar(url) => {
                let settings = PulsarSettings {
                    url: url.clone(),
                    metadata_namespace: config.pulsar_metadata_namespace.clone(),
                    auth_token: config.pulsar_auth_token.clone(),
                    max_message_bytes: config.pulsar_max_message_bytes,
                    admin_url: config.pulsar_admin_url.clone(),
                    tls_trust_certs: config.pulsar_tls_trust_certs_file.clone(),
                };
                // Blocks this thread while it connects and replays the metadata (on its own runtime).
                Arc::new(
                    PulsarLog::open(settings, defaults)
                        .map_err(|source| ServerError::Storage { dir: url.clone(), source })?,
                )
            }
        };

        Self::start_with_log(config, log).await
    }

    /// Start serving with `config` over `log` (already open): wire the internal topics, the
    /// coordinator, the engine, the transforms and the runtime, and bind the listeners.
    pub async fn start_with_log(config: &Config, log: Arc<dyn Log>) -> Result<Server, ServerError> {
        let fsync = config.fsync_policy().map_err(ServerError::Config)?;
        // One set of TLS files for every listener that uses TLS, loaded (and checked) first.
        let tls = match (config.uses_tls(), config.tls_files()) {
            (false, _) => None,
            (true, Some(files)) => Some(Tls::load(files).map_err(ServerError::Tls)?),
            (true, None) => {
                return Err(ServerError::Config(crate::config::ConfigError::Invalid {
                    key: "tls_cert_file",
                    message: "an SSL listener, pulsar_tls or admin_tls needs tls_cert_file and tls_key_file"
                        .into(),
                }));
            }
        };
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
        let (advertised_host, advertised_port) =
            advertised(config.advertised_kafka_addr.as_deref(), kafka_addr, "advertised_kafka_addr")?;
        // Several hosts: this node's lease and heartbeats, before anything is served (taking
        // the lease fences this node id's previous run, or another process given it).
        let members = match (&config.storage, config.cluster) {
            (crate::config::StorageKind::Pulsar(url), true) => Some(
                crate::cluster::Members::start(crate::cluster::ClusterConfig {
                    url: url.clone(),
                    token: config.pulsar_auth_token.clone(),
                    trust: config.pulsar_tls_trust_certs_file.clone(),
                    metadata_namespace: config.pulsar_metadata_namespace.clone(),
                    node_id: config.node_id,
                    kafka_addr: format!("{advertised_host}:{advertised_port}"),
                    rack: config.rack.clone(),
                    heartbeat: Duration::from_millis(config.cluster_heartbeat_ms),
                    session_timeout: Duration::from_millis(config.cluster_session_timeout_ms),
                })
                .await?,
            ),
            _ => None,
        };
        // One more listener per extra tenant: the listener decides a connection's tenant.
        let mut extra = Vec::new();
        for l in &config.listeners {
            let bind_err = |source| ServerError::Bind {
                what: "a tenant's Kafka listener",
                addr: l.addr.clone(),
                source,
            };
            let socket = TcpListener::bind(&l.addr).await.map_err(bind_err)?;
            let addr = socket.local_addr().map_err(bind_err)?;
            let adv = advertised(l.advertised_addr.as_deref(), addr, "listeners.advertised_addr")?;
            extra.push((l.tenant.clone(), socket, addr, adv, l.security_protocol));
        }
        let mut tenants: Vec<&str> = vec![config.tenant.as_str()];
        tenants.extend(config.listeners.iter().map(|l| l.tenant.as_str()));

        // The tenant room's registry of internal topics, filled by the services that own them.
        let mut internal = InternalTopics::new();
        Coordinator::register_internal(&mut internal, &config.namespace);
        crate::txn::Coordinator::register_internal(&mut internal, &config.namespace);
        crate::acl::Authorizer::register_internal(&mut internal, &config.namespace);
        crate::quota::Quotas::register_internal(&mut internal, &config.namespace);
        crate::net::pulsar::cursors::register_internal(&mut internal);
        internal.register(
            crate::scram::TOPIC,
            Some(crate::scram::RESERVED_NAMESPACE),
            "the SCRAM credentials",
        );
        let internal = Arc::new(internal);
        let principals = Arc::new(crate::net::principals::TenantMap {
            explicit: config.principal_tenants.clone(),
            sasl_prefix: config.sasl_user_tenant_prefix,
        });

        // SCRAM credentials: the users file's and those stored with AlterUserScramCredentials.
        let file_users = match &config.sasl_users_file {
            Some(path) => crate::scram::Users::load(path)?,
            None => crate::scram::Users::default(),
        };
        let owner = {
            let (principals, main) = (principals.clone(), config.tenant.to_string());
            move |user: &str| {
                let principal = format!("User:{user}");
                principals
                    .tenant_of(&principal, crate::net::principals::Via::Sasl)
                    .map_or_else(|| main.clone(), |t| t.to_string())
            }
        };
        let scram =
            Arc::new(crate::scram::Store::new(file_users, log.clone(), &config.tenant, Box::new(owner)));
        let stored = scram.load().await?;
        if stored > 0 {
            tracing::info!(
                users = stored,
                "read the SCRAM credentials stored with AlterUserScramCredentials"
            );
        }
        // The SASL users and token keys, for every SASL listener.
        let sasl = if config.uses_sasl() { Some(sasl_config(config, scram.clone())?) } else { None };

        // Groups and committed offsets of the listener's tenant are replayed now; other tenants'
        // when first used. Internal services get the raw log.
        let coord = Arc::new(Coordinator::open(log.clone(), config.coord_config(), &tenants)?);
        // Transactions of those tenants too: what a crash interrupted is finished now.
        let txn = Arc::new(crate::txn::Coordinator::new(log.clone(), coord.clone(), config.txn_config()));
        if txn.enabled() {
            txn.open_tenants(&tenants).await?;
        }
        let limits = GuestLimits {
            memory_bytes: usize::try_from(config.guest_memory()).unwrap_or(usize::MAX),
            call_timeout: Duration::from_millis(config.guest_timeout_ms),
            max_instances: crate::config::TRANSLATOR_SLOTS,
            max_response_bytes: config.max_frame_bytes as usize,
            warm_instances: config.guest_warm_instances,
            warm_transforms: config.transform_warm_instances,
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
        if let Some(store) = log.module_store() {
            // The backend keeps the registries: this host's directories are a cache of them.
            let n = restore(&*store, &config.data_dir)?;
            tracing::info!(modules = n, "restored the module registries from the storage backend");
        }
        let started = std::time::Instant::now();
        // One engine for the translator and the tenant transforms.
        let compiler = Compiler::for_limits(&limits)?;
        let transforms = Arc::new(Transforms::open(
            config.transforms_config(),
            log.clone(),
            &compiler,
            internal.clone(),
            txn.enabled().then(|| txn.clone()),
        )?);
        // The one append door: front ends append through the tenant transforms.
        let front_log = transforms.log();

        let quotas = Arc::new(crate::quota::Quotas::new(log.clone(), config.quota_config()));
        let ctx = Arc::new(HostContext {
            log: front_log.clone(),
            namespace: config.namespace.clone(),
            node_id: config.node_id,
            advertised_host,
            advertised_port,
            cluster_id: config.cluster_id.clone(),
            auto_create_topics: config.auto_create_topics,
            default_partitions: config.default_partitions,
            max_frame_bytes: config.max_frame_bytes,
            transaction_version: config.transaction_version,
            coord: coord.clone(),
            internal: internal.clone(),
            acl: Arc::new(crate::acl::Authorizer::new(log.clone(), config.acl_config())),
            scram,
            quotas: quotas.clone(),
            txn: txn.clone(),
        });
        // Pulsar applications' writes to ingress topics come in through the same door.
        log.serve_ingress(Arc::downgrade(&front_log));
        let runtime = Arc::new(Runtime::on(compiler, ctx, limits)?);
        let registry = Arc::new(Registry::open(
            RegistryConfig {
                dir: config.data_dir.join(TRANSLATOR_SCOPE),
                max_module_bytes: config.module_max_bytes,
                keep_versions: config.module_keep_versions,
                store: log.module_store().map(|store| StoreLink { store, scope: TRANSLATOR_SCOPE.into() }),
            },
            runtime.clone(),
            &config.translator_module,
            &wasm,
            &source,
        )?);
        let active = runtime.translator()?;
        tracing::info!(module = %active.id.name, version = active.id.version, hash = %active.id.short_hash(), elapsed = ?started.elapsed(), "translator ready");

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let limits = listener::Limits {
            max_connections: config.max_connections,
            max_per_ip: match config.max_connections_per_ip {
                0 => usize::MAX,
                n => n,
            },
            drain: Duration::from_millis(config.shutdown_drain_ms),
        };
        let millis = |ms: u64| (ms > 0).then(|| Duration::from_millis(ms));
        // One budget for every Kafka listener's partly read frames.
        let partial = Arc::new(tokio::sync::Semaphore::new(
            usize::try_from(config.partial_frames_max_bytes)
                .unwrap_or(usize::MAX)
                .min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        let tls_for = |on: bool| if on { tls.clone() } else { None };
        let net = |tenant: &TenantId, advertised: Option<Arc<(String, i32)>>, protocol: SecurityProtocol| {
            NetConfig {
                conn: ConnConfig {
                    max_frame_bytes: config.max_frame_bytes,
                    read_ahead: config.read_ahead,
                    max_inflight_bytes: usize::try_from(config.max_inflight_bytes).unwrap_or(usize::MAX),
                    idle: millis(config.connections_max_idle_ms),
                    frame_timeout: millis(config.frame_timeout_ms),
                    partial: Some(partial.clone()),
                    sasl: sasl.clone().filter(|_| protocol.sasl()),
                    principals: principals.clone(),
                },
                tenant: tenant.clone(),
                advertised,
                limits,
                tls: tls_for(protocol.tls()),
            }
        };
        let listener =
            Listener::new(kafka, runtime.clone(), net(&config.tenant, None, config.kafka_security_protocol));
        tasks.push(tokio::spawn(listener.run(shutdown_rx.clone())));
        let mut tenant_addrs = Vec::new();
        for (tenant, socket, addr, adv, protocol) in extra {
            tracing::info!(%tenant, %addr, ?protocol, "serving a tenant's Kafka listener");
            let listener =
                Listener::new(socket, runtime.clone(), net(&tenant, Some(Arc::new(adv)), protocol));
            tasks.push(tokio::spawn(listener.run(shutdown_rx.clone())));
            tenant_addrs.push((tenant.to_string(), addr));
        }

        let pulsar_addr = match &config.pulsar_addr {
            Some(addr) => {
                let bind_err =
                    |source| ServerError::Bind { what: "the Pulsar listener", addr: addr.clone(), source };
                let socket = TcpListener::bind(addr).await.map_err(bind_err)?;
                let bound = socket.local_addr().map_err(bind_err)?;
                let (host, port) =
                    advertised(config.advertised_pulsar_addr.as_deref(), bound, "advertised_pulsar_addr")?;
                let endpoint = Arc::new(crate::net::pulsar::Endpoint::new(
                    crate::net::pulsar::EndpointConfig {
                        tenant: config.tenant.clone(),
                        namespace: config.namespace.clone(),
                        tenants: if config.pulsar_tenants.is_empty() {
                            vec![config.tenant.clone()]
                        } else {
                            config.pulsar_tenants.clone()
                        },
                        known_tenants: std::iter::once(config.tenant.clone())
                            .chain(config.listeners.iter().map(|l| l.tenant.clone()))
                            .chain(config.pulsar_tenants.iter().cloned())
                            .collect(),
                        service_url: format!("pulsar://{host}:{port}"),
                        tls_service_url: config.pulsar_tls.then(|| format!("pulsar+ssl://{host}:{port}")),
                        max_message_size: config
                            .message_max_bytes
                            .min(PULSAR_MAX_MESSAGE)
                            .saturating_sub(PULSAR_HEADROOM)
                            .max(1024),
                        auto_create_topics: config.auto_create_topics,
                        default_partitions: config.default_partitions,
                        auth: if config.pulsar_token_auth { Some(token_validator(config)?) } else { None },
                        principals: principals.clone(),
                        quotas: quotas.clone(),
                    },
                    front_log.clone(),
                    log.clone(),
                    internal.clone(),
                ));
                let scheme = if config.pulsar_tls { "pulsar+ssl" } else { "pulsar" };
                tracing::info!(addr = %bound, advertised = %format!("{scheme}://{host}:{port}"), "serving the Pulsar protocol");
                tasks.push(tokio::spawn(listener::run(
                    "pulsar",
                    socket,
                    tls_for(config.pulsar_tls),
                    limits,
                    shutdown_rx.clone(),
                    move |s, a| endpoint.clone().serve(s, a),
                )));
                Some(bound)
            }
            None => None,
        };

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
        let auth = admin::auth::AdminAuth::load(
            &config.admin_tokens,
            &config.admin_operators,
            (*principals).clone(),
        )
        .map_err(ServerError::AdminAuth)?;
        let certificates_required =
            config.admin_tls && config.tls_client_auth == crate::net::tls::ClientAuth::Required;
        if !admin_addr.ip().is_loopback() {
            if !auth.required() && !certificates_required {
                tracing::warn!(
                    %admin_addr,
                    "the admin API is reachable beyond this machine without authentication: \
                     anyone who reaches it can replace the translator and every tenant's transforms; \
                     configure admin_tokens (or client certificates), or bind admin_addr to a loopback address"
                );
            } else if !config.admin_tls {
                tracing::warn!(
                    %admin_addr,
                    "the admin API is reachable beyond this machine without TLS: its bearer tokens \
                     cross the network in clear; set admin_tls"
                );
            }
        }
        if auth.required() {
            tracing::info!("the admin API requires a credential (admin_tokens, admin_operators)");
        }
        let admin_state = admin::AdminState {
            registry: registry.clone(),
            runtime: runtime.clone(),
            coord: coord.clone(),
            transforms: transforms.clone(),
            auth,
            failure_delay: Duration::from_millis(config.connection_failed_authentication_delay_ms),
            members: members.clone(),
        };
        let admin_state = Arc::new(admin_state);
        // Each admin connection may buffer an upload (module_max_bytes): few of them.
        let admin_limits = listener::Limits { max_connections: config.admin_max_connections, ..limits };
        tasks.push(tokio::spawn(listener::run(
            "admin",
            admin,
            tls_for(config.admin_tls),
            admin_limits,
            shutdown_rx.clone(),
            move |s, a| admin::serve(admin_state.clone(), s, a),
        )));
        let check = Duration::from_millis(config.retention_check_interval_ms);
        let l = log.clone();
        tasks.push(tokio::spawn(every(check, shutdown_rx.clone(), blocking(move || enforce_retention(&*l)))));
        // The log cleaner: compacts partitions of topics with cleanup.policy=compact.
        let backoff = Duration::from_millis(config.log_cleaner_backoff_ms);
        let l = log.clone();
        tasks.push(tokio::spawn(every(backoff, shutdown_rx.clone(), blocking(move || clean(&*l)))));
        // The group coordinator's timer: sessions, rebalance deadlines, the initial delay.
        tasks.push(tokio::spawn(every(GROUP_TICK, shutdown_rx.clone(), move || {
            let coord = coord.clone();
            async move { coord.tick(std::time::Instant::now()).await }
        })));
        // The transaction coordinator's timer: transactions past their timeout are aborted.
        tasks.push(tokio::spawn(every(TXN_TICK, shutdown_rx.clone(), move || {
            let txn = txn.clone();
            async move { txn.tick().await }
        })));
        // Rates no client recorded in for the whole quota horizon are dropped.
        tasks.push(tokio::spawn(every(Duration::from_secs(60), shutdown_rx.clone(), move || {
            quotas.expire();
            std::future::ready(())
        })));
        if let FsyncPolicy::Interval(period) = fsync {
            // The "interval" fsync policy; a failed flush is logged by the log itself.
            let l = log.clone();
            tasks.push(tokio::spawn(every(
                period,
                shutdown_rx,
                blocking(move || {
                    let _ = crate::storage::wait(l.flush());
                }),
            )));
        }

        tracing::info!(%kafka_addr, %admin_addr, data_dir = %config.data_dir.display(), "guise is serving Kafka");
        Ok(Server {
            kafka_addr,
            pulsar_addr,
            tenant_addrs,
            admin_addr,
            log,
            runtime,
            registry,
            transforms,
            members,
            shutdown,
            tasks,
        })
    }

    /// Stop accepting, answer parked requests, close connections, and flush the log.
    pub async fn shutdown(self) {
        if let Some(members) = &self.members {
            members.leave().await;
        }
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        match self.log.flush().await {
            Ok(()) => tracing::info!("log flushed; stopped"),
            Err(e) => tracing::error!("flushing the log on shutdown failed: {e}"),
        }
    }
}

/// Run `job` every `period` until shutdown (one run at a time).
async fn every<F: std::future::Future<Output = ()>>(
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    job: impl Fn() -> F,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
        }
        job().await;
    }
}

/// A job for [`every`] that blocks (file I/O): run on a blocking thread, off the async workers.
fn blocking(
    job: impl Fn() + Send + Sync + 'static,
) -> impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    let job = Arc::new(job);
    move || {
        let job = job.clone();
        Box::pin(async move {
            let _ = tokio::task::spawn_blocking(move || job()).await;
        })
    }
}

/// Retention: delete whole expired or surplus segments.
fn enforce_retention(log: &dyn Log) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    if let Err(e) = crate::storage::wait(log.enforce_retention(now_ms)) {
        tracing::error!("retention failed: {e}");
    }
}

/// The log cleaner's pass (each cleaned partition is logged by the log).
fn clean(log: &dyn Log) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    match crate::storage::wait(log.clean(now_ms)) {
        Ok(stats) if stats.partitions > 0 => tracing::debug!(?stats, "log cleaner pass"),
        Ok(_) => {}
        Err(e) => tracing::error!("log cleaning failed: {e}"),
    }
}

fn advertised(configured: Option<&str>, bound: SocketAddr, key: &str) -> Result<(String, i32), ServerError> {
    match configured {
        Some(addr) => {
            let bad = || ServerError::Advertised(addr.to_string());
            let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if host.is_empty() {
                return Err(bad());
            }
            Ok((host.to_string(), i32::from(port)))
        }
        None => {
            let host = if bound.ip().is_unspecified() {
                tracing::warn!(
                    "Kafka listener bound to {bound}; advertising 127.0.0.1 — set {key} for remote clients"
                );
                "127.0.0.1".to_string()
            } else {
                bound.ip().to_string()
            };
            Ok((host, i32::from(bound.port())))
        }
    }
}
