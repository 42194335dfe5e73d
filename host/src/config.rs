//! Configuration: defaults, then a TOML file, then `GUISE_*` environment variables, then
//! command-line flags (each later source wins). Unknown keys are rejected with a clear message.

use crate::storage::FsyncPolicy;
use crate::tenant::TenantId;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("reading config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("invalid environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("invalid flag {flag}: {message}")]
    Flag { flag: String, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Every setting, with its default. In a file and in `GUISE_<UPPER_NAME>` variables the names
/// are these field names.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded log keeps its segments.
    pub data_dir: PathBuf,
    /// Kafka listener bind address.
    pub kafka_addr: String,
    /// The address Metadata returns to clients (default: the bound Kafka address).
    pub advertised_kafka_addr: Option<String>,
    /// Admin HTTP bind address (health, metrics).
    pub admin_addr: String,
    /// The Pulsar-protocol endpoint's bind address (off when unset): Pulsar clients produce to
    /// and consume from the same topics as Kafka clients.
    pub pulsar_addr: Option<String>,
    /// The `pulsar://HOST:PORT` LOOKUP answers with (default: the bound Pulsar address).
    pub advertised_pulsar_addr: Option<String>,
    /// The tenants whose topics the Pulsar endpoint serves (empty: `tenant`, the Kafka
    /// listener's). As with the tenants' Kafka listeners, who may reach the port decides who is
    /// a tenant: the endpoint does not authenticate, so list only tenants that share it.
    pub pulsar_tenants: Vec<TenantId>,
    /// Where topics live: "embedded" (segment files in `data_dir`) or `pulsar://HOST:PORT`
    /// (an Apache Pulsar cluster, through the `pulsar` crate).
    pub storage: StorageKind,
    /// With `pulsar://` storage: the `tenant/namespace` of the topic-metadata and producer-id
    /// logs.
    pub pulsar_metadata_namespace: String,
    /// With `pulsar://` storage: a token for Pulsar's token authentication.
    pub pulsar_auth_token: Option<String>,
    /// With `pulsar://` storage: the brokers' maxMessageSize. A Kafka batch (entry format
    /// `kafka`) or record (format `pulsar`) must fit in it, less 64 KiB for the message
    /// metadata, or the produce gets MESSAGE_TOO_LARGE.
    pub pulsar_max_message_bytes: usize,
    /// With `pulsar://` storage: `http://HOST:PORT` of Pulsar's admin REST API. When set, a
    /// Kafka topic is a Pulsar partitioned topic of the same name (created, grown and deleted
    /// with it) and missing namespaces are created; without it, only the partitions exist in
    /// Pulsar (auto-created by the brokers).
    pub pulsar_admin_url: Option<String>,
    /// With `pulsar+ssl://` storage: a PEM file of the CA certificates the brokers' certificate
    /// must chain to (default: the system's roots, as `webpki-roots` ships them).
    pub pulsar_tls_trust_certs_file: Option<std::path::PathBuf>,
    /// This broker's node id in Metadata; with `cluster`, unique among the hosts.
    pub node_id: i32,
    pub cluster_id: String,
    /// Several hosts on one Pulsar (`pulsar://` storage only): this host takes the lease of
    /// its `node_id` and heartbeats, and keeps a view of the live hosts (`GET /cluster`).
    /// Ownership and routing are not built yet: each host still serves every partition.
    pub cluster: bool,
    /// With `cluster`: how often this host's heartbeat is appended.
    pub cluster_heartbeat_ms: u64,
    /// With `cluster`: a host not heard from for this long is dead to the others.
    pub cluster_session_timeout_ms: u64,
    /// This host's rack (Metadata's broker rack, for clients' `client.rack`).
    pub rack: Option<String>,
    /// The tenant and namespace of the Kafka listener's connections (as in Pulsar/KoP). A
    /// tenant is 1 to 64 characters of a-z, 0-9, '-' and '_' (checked as the config loads).
    pub tenant: TenantId,
    pub namespace: String,
    /// Kafka's auto.create.topics.enable.
    pub auto_create_topics: bool,
    /// Kafka's num.partitions, for auto-created topics and CreateTopics with -1.
    pub default_partitions: i32,
    /// Kafka's socket.request.max.bytes: larger request frames close the connection.
    pub max_frame_bytes: u32,
    /// Kafka's message.max.bytes: the largest record batch accepted (per-topic max.message.bytes overrides).
    pub message_max_bytes: u32,
    /// Kafka's log.segment.bytes.
    pub segment_bytes: u64,
    /// When the log fsyncs: "never" (the OS writes back), "interval" (every fsync_interval_ms),
    /// or "every-batch" (before a produce is acknowledged). All survive a crash of the process;
    /// only "every-batch" guarantees acknowledged data survives a power loss.
    pub fsync: FsyncMode,
    pub fsync_interval_ms: u64,
    /// Kafka's log.retention.ms (-1: keep forever) and log.retention.bytes per partition (-1: no
    /// limit); topics override them with retention.ms / retention.bytes. Whole segments go.
    pub retention_ms: i64,
    pub retention_bytes: i64,
    /// Kafka's log.retention.check.interval.ms.
    pub retention_check_interval_ms: u64,
    /// Kafka's log.cleaner.backoff.ms: how often the log cleaner looks for compacted partitions
    /// (`cleanup.policy=compact`) that need cleaning, and cleans them.
    pub log_cleaner_backoff_ms: u64,
    /// A translator component to deploy instead of the one embedded in the binary (once: it
    /// becomes a version in the module registry, like an upload).
    pub translator: Option<PathBuf>,
    /// The registry module the Kafka listener runs.
    pub translator_module: String,
    /// Module uploads larger than this are refused.
    pub module_max_bytes: u64,
    /// Versions kept per module for rollback (the active and the previous one always stay).
    pub module_keep_versions: usize,
    /// CPU deadline of one guest call, in milliseconds.
    pub guest_timeout_ms: u64,
    /// Linear-memory cap of a translator instance (default: max_frame_bytes + 64 MiB).
    pub guest_memory_bytes: Option<u64>,
    /// Translator instances kept warm between requests, over all tenants (0: a fresh instance
    /// for every request).
    pub guest_warm_instances: u32,
    /// Requests read ahead of the one executing, per connection.
    pub read_ahead: usize,
    /// Request bytes one connection may hold in memory (at least max_frame_bytes).
    pub max_inflight_bytes: u64,
    /// Open Kafka connections at most; more are closed at once.
    pub max_connections: usize,
    /// Bytes of partly read request frames that all Kafka connections together may hold
    /// (beyond 64 KiB each); a reader waits for room, within frame_timeout_ms. At least
    /// max_frame_bytes.
    pub partial_frames_max_bytes: u64,
    /// Open admin API connections at most (each may buffer an upload of module_max_bytes).
    pub admin_max_connections: usize,
    /// Partitions of all topics together at most on the embedded log (a file open each);
    /// 0: the open-file limit (raised to its hard limit at start) less max_connections,
    /// admin_max_connections and `server::FD_RESERVE`, or half the limit if that is more.
    pub max_partitions: usize,
    /// Open connections from one IP address at most, per listener (Kafka's
    /// max.connections.per.ip); 0: no limit, Kafka's default.
    pub max_connections_per_ip: usize,
    /// Kafka's connections.max.idle.ms: a Kafka connection with nothing received, nothing in
    /// flight and nothing sent for this long is closed; 0: never.
    pub connections_max_idle_ms: u64,
    /// A request frame, once its first bytes arrived, must arrive whole within this; else the
    /// connection is closed (a client that starts a large frame and stalls holds no memory for
    /// long); 0: no deadline.
    pub frame_timeout_ms: u64,
    /// On shutdown, how long open connections get to finish.
    pub shutdown_drain_ms: u64,
    /// Kafka's group.initial.rebalance.delay.ms: how long the first rebalance of an empty group
    /// waits for more members (each new member extends it, up to the rebalance timeout).
    pub group_initial_rebalance_delay_ms: u64,
    /// Kafka's group.min.session.timeout.ms and group.max.session.timeout.ms: the session
    /// timeouts a joining member may ask for.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// Kafka's offset.metadata.max.bytes: longer commit metadata gets OFFSET_METADATA_TOO_LARGE.
    pub offset_metadata_max_bytes: usize,
    /// Kafka's transaction.max.timeout.ms: a transactional producer asking for a longer
    /// transaction timeout gets INVALID_TRANSACTION_TIMEOUT.
    pub transaction_max_timeout_ms: i32,
    /// The `transaction.version` feature finalized in ApiVersions: 2 (Kafka 4's default: KIP-890
    /// part 2, every transaction ends at a new epoch) or 1 (KIP-98 and KIP-447 only). A client
    /// picks its protocol from it when it connects; both are served either way.
    pub transaction_version: u8,
    /// Limits of one tenant-transform call (one produced batch): linear memory, CPU deadline, and
    /// the bytes of records it may return. `[tenants.NAME]` overrides them per tenant.
    pub transform_memory_bytes: u64,
    pub transform_timeout_ms: u64,
    pub transform_max_output_bytes: u64,
    /// Transform calls one tenant may run at once; more wait for a slot (`0`: half the cores,
    /// at least one). `[tenants.NAME]` overrides it.
    pub transform_max_concurrency: usize,
    /// Transform instances kept warm between batches, over all tenants (0: a fresh instance for
    /// every batch).
    pub transform_warm_instances: u32,
    /// The host's TLS certificate chain and private key (PEM), for the listeners that use TLS
    /// (`kafka_security_protocol = "SSL"`, `pulsar_tls`, `admin_tls`, SSL `[[listeners]]`).
    /// Changed files are used from the next handshake on.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates are verified against.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Kafka's ssl.client.auth: `none`, `requested` or `required`. A verified client
    /// certificate's subject is the connection's principal (`User:CN=…`).
    pub tls_client_auth: crate::net::tls::ClientAuth,
    /// The main Kafka listener's security protocol, as Kafka names them: `PLAINTEXT`, `SSL`,
    /// `SASL_PLAINTEXT` or `SASL_SSL`.
    pub kafka_security_protocol: SecurityProtocol,
    /// Kafka's sasl.enabled.mechanisms: of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512.
    pub sasl_enabled_mechanisms: Vec<String>,
    /// SASL users that exist from the start, with their salted SCRAM credentials (a TOML file;
    /// `guise scram-credential` makes its entries). More are managed with
    /// AlterUserScramCredentials and kept in the log.
    pub sasl_users_file: Option<PathBuf>,
    /// OAUTHBEARER: a JWKS file of the keys tokens are signed with (RS256/384/512, ES256/384;
    /// Kafka's sasl.oauthbearer.jwks.endpoint.url with a file), the expected `iss` and `aud`
    /// (Kafka's sasl.oauthbearer.expected.issuer/audience; unchecked when unset), the claim
    /// naming the principal (sasl.oauthbearer.sub.claim.name) and the clock skew allowed on
    /// `exp` and `nbf` (sasl.oauthbearer.clock.skew.seconds).
    pub sasl_oauthbearer_jwks_file: Option<PathBuf>,
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    pub sasl_oauthbearer_expected_audience: Vec<String>,
    pub sasl_oauthbearer_sub_claim_name: String,
    pub sasl_oauthbearer_clock_skew_seconds: u64,
    /// Kafka's connections.max.reauth.ms (KIP-368): an authenticated session lasts this long;
    /// a request after it without re-authentication closes the connection (`0`: no limit).
    pub connections_max_reauth_ms: u64,
    /// Principal → tenant (`[principal_tenants]`, e.g. `"User:CN=writer,O=Acme" = "acme"`): the
    /// tenant an authenticated connection belongs to, whatever its listener's.
    pub principal_tenants: std::collections::BTreeMap<String, TenantId>,
    /// Whether a SASL user named `TENANT/USER` belongs to TENANT (when `principal_tenants` does
    /// not name the principal). Otherwise the listener's tenant applies.
    pub sasl_user_tenant_prefix: bool,
    /// Kafka's connection.failed.authentication.delay.ms: a failed authentication is answered
    /// (and its connection closed) this late.
    pub connection_failed_authentication_delay_ms: u64,
    /// Enforce Kafka's ACLs (what Kafka's `authorizer.class.name` turns on): every request is
    /// checked against the tenant's ACLs, managed with CreateAcls/DeleteAcls (`kafka-acls`).
    pub authorizer_enabled: bool,
    /// Kafka's super.users: principals ("User:admin") allowed everything.
    pub super_users: Vec<String>,
    /// Kafka's allow.everyone.if.no.acl.found: a resource no ACL names is open to everyone.
    pub allow_everyone_if_no_acl_found: bool,
    /// Serve the Pulsar protocol over TLS (clients use `pulsar+ssl://`).
    pub pulsar_tls: bool,
    /// Serve the admin API over TLS (https).
    pub admin_tls: bool,
    /// Bearer tokens of the admin API (`[admin_tokens.NAME]` with `role`, `tenant`, and
    /// `token_file` or `sha256`). With any (or `admin_operators`) set, every admin request but
    /// `/health` needs a credential.
    pub admin_tokens: std::collections::BTreeMap<String, crate::admin::auth::TokenConfig>,
    /// Principals of verified client certificates (`User:CN=ops`) with the admin API's operator
    /// role; other certificates get their `principal_tenants` tenant's role.
    pub admin_operators: Vec<String>,
    /// Require Pulsar clients to authenticate with a JWT (`AuthenticationToken`), validated as
    /// OAUTHBEARER tokens are (`sasl_oauthbearer_*`); a principal's tenant is then the only one
    /// it reaches.
    pub pulsar_token_auth: bool,
    /// More Kafka listeners, one per tenant (`[[listeners]]` with `addr`, `tenant` and optionally
    /// `advertised_addr` and `security_protocol`). A connection whose principal names no tenant
    /// (`principal_tenants`) works in its listener's; the main listener (`kafka_addr`) serves
    /// `tenant`.
    pub listeners: Vec<ListenerConfig>,
    /// Per-tenant settings (`[tenants.NAME]`).
    pub tenants: std::collections::BTreeMap<TenantId, TenantConfig>,
}

/// Where topics live (`storage`): `"embedded"` or a `pulsar://HOST:PORT` (or `pulsar+ssl://`)
/// URL; anything else is refused as the config loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// Segment files under `data_dir`.
    Embedded,
    /// An Apache Pulsar cluster at this service URL.
    Pulsar(String),
}

impl std::str::FromStr for StorageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "embedded" {
            Ok(StorageKind::Embedded)
        } else if s.starts_with("pulsar://") || s.starts_with("pulsar+ssl://") {
            Ok(StorageKind::Pulsar(s.to_string()))
        } else {
            Err(format!("{s:?} is not \"embedded\" or a pulsar://HOST:PORT (or pulsar+ssl://) URL"))
        }
    }
}

impl std::fmt::Display for StorageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageKind::Embedded => f.write_str("embedded"),
            StorageKind::Pulsar(url) => f.write_str(url),
        }
    }
}

impl<'de> Deserialize<'de> for StorageKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// When the log fsyncs (`fsync`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FsyncMode {
    /// The OS writes back (Kafka's default).
    Never,
    /// Every `fsync_interval_ms`.
    Interval,
    /// Before a produce is acknowledged.
    EveryBatch,
}

/// An extra Kafka listener for one tenant.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub addr: String,
    pub tenant: TenantId,
    /// The address Metadata returns on this listener (default: the bound address).
    pub advertised_addr: Option<String>,
    /// `PLAINTEXT` (the default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    #[serde(default)]
    pub security_protocol: SecurityProtocol,
}

/// A Kafka listener's security protocol, named as Kafka names them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One tenant's settings: overrides of the transform limits, and the tenant's quota ceiling —
/// what all of its clients together may produce and fetch per second and the share of a thread
/// their requests may take (Kafka's quota keys; the tenant cannot change these, unlike the
/// client quotas it sets with AlterClientQuotas).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub transform_memory_bytes: Option<u64>,
    pub transform_timeout_ms: Option<u64>,
    pub transform_max_output_bytes: Option<u64>,
    pub transform_max_concurrency: Option<usize>,
    pub producer_byte_rate: Option<u64>,
    pub consumer_byte_rate: Option<u64>,
    pub request_percentage: Option<f64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            kafka_addr: "127.0.0.1:9092".into(),
            advertised_kafka_addr: None,
            admin_addr: "127.0.0.1:8080".into(),
            pulsar_addr: None,
            advertised_pulsar_addr: None,
            pulsar_tenants: Vec::new(),
            storage: StorageKind::Embedded,
            pulsar_metadata_namespace: "public/__guise".into(),
            pulsar_auth_token: None,
            pulsar_max_message_bytes: 5 << 20,
            pulsar_admin_url: None,
            pulsar_tls_trust_certs_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            tls_client_auth: crate::net::tls::ClientAuth::None,
            kafka_security_protocol: SecurityProtocol::Plaintext,
            sasl_enabled_mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            sasl_users_file: None,
            sasl_oauthbearer_jwks_file: None,
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_expected_audience: Vec::new(),
            sasl_oauthbearer_sub_claim_name: "sub".into(),
            sasl_oauthbearer_clock_skew_seconds: 30,
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            principal_tenants: Default::default(),
            sasl_user_tenant_prefix: true,
            authorizer_enabled: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            pulsar_tls: false,
            admin_tls: false,
            admin_tokens: Default::default(),
            admin_operators: Vec::new(),
            pulsar_token_auth: false,
            node_id: 0,
            cluster_id: "guise-cluster".into(),
            cluster: false,
            cluster_heartbeat_ms: 1000,
            cluster_session_timeout_ms: 6000,
            rack: None,
            tenant: TenantId::new("public").expect("a valid tenant"),
            namespace: "default".into(),
            auto_create_topics: true,
            default_partitions: 1,
            max_frame_bytes: 100 * 1024 * 1024,
            message_max_bytes: 1_048_588,
            segment_bytes: 1 << 30,
            fsync: FsyncMode::Interval,
            fsync_interval_ms: 1000,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            retention_check_interval_ms: 300_000,
            log_cleaner_backoff_ms: 15_000,
            translator: None,
            translator_module: "kafka".into(),
            module_max_bytes: 10 << 20,
            module_keep_versions: 10,
            guest_timeout_ms: 1000,
            guest_memory_bytes: None,
            guest_warm_instances: 16,
            read_ahead: 16,
            max_inflight_bytes: 100 * 1024 * 1024,
            max_connections: 10_000,
            max_partitions: 0,
            admin_max_connections: 16,
            partial_frames_max_bytes: 1 << 30,
            max_connections_per_ip: 0,
            connections_max_idle_ms: 600_000,
            frame_timeout_ms: 60_000,
            shutdown_drain_ms: 5000,
            group_initial_rebalance_delay_ms: 3000,
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            transaction_max_timeout_ms: 900_000,
            transaction_version: 2,
            offset_metadata_max_bytes: 4096,
            transform_memory_bytes: 16 << 20,
            transform_timeout_ms: 100,
            transform_max_output_bytes: 16 << 20,
            transform_max_concurrency: 0,
            transform_warm_instances: 16,
            listeners: Vec::new(),
            tenants: Default::default(),
        }
    }
}

const ENV_PREFIX: &str = "GUISE_";

/// Translator calls that may run at once (instance slots of the pool, see `wasm::engine`).
pub const TRANSLATOR_SLOTS: u32 = 128;

impl Config {
    /// Defaults, overlaid by `file` (if any) and by `GUISE_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Self::load_layers(file, env, toml::Table::new())
    }

    /// The one place settings are layered: defaults < `file` < `GUISE_*` variables from `env` <
    /// `flags` (the command line's, by setting name), then validated. An unknown key names its
    /// source; an invalid value fails with the setting's name.
    pub fn load_layers(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: toml::Table,
    ) -> Result<Self, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::File { path: path.to_path_buf(), message: e.to_string() })?
            }
            None => toml::Table::new(),
        };
        if let Some(path) = file {
            // Check the file alone first, so an unknown key names the file.
            toml::Value::Table(table.clone())
                .try_into::<Config>()
                .map_err(|e| ConfigError::File { path: path.to_path_buf(), message: e.to_string() })?;
        }
        for (var, value) in env {
            let Some(key) = var.strip_prefix(ENV_PREFIX) else { continue };
            let key = key.to_ascii_lowercase();
            // A TOML literal when it parses as one (numbers, booleans), else a string.
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value.clone()));
            table.insert(key.clone(), parsed);
            // The struct itself says what a setting is (deny_unknown_fields).
            if let Err(e) = toml::Value::Table(table.clone()).try_into::<Config>() {
                let message = e.to_string();
                if message.contains("unknown field") {
                    // Build-time variables share the prefix (GUISE_GUEST_TARGET_DIR): not settings.
                    tracing::debug!("ignoring {var}: not a setting");
                    table.remove(&key);
                    continue;
                }
                return Err(ConfigError::Env { var, message });
            }
        }
        for (key, value) in flags {
            table.insert(key.clone(), value);
            toml::Value::Table(table.clone()).try_into::<Config>().map_err(|e| ConfigError::Flag {
                flag: format!("--{}", key.replace('_', "-")),
                message: e.to_string(),
            })?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e| ConfigError::File { path: PathBuf::from("<merged>"), message: e.to_string() })?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| Err(ConfigError::Invalid { key, message: message.to_string() });
        if self.default_partitions < 1 {
            return invalid("default_partitions", "must be at least 1");
        }
        if self.cluster {
            if !matches!(self.storage, StorageKind::Pulsar(_)) {
                return invalid(
                    "cluster",
                    "several hosts share a Pulsar cluster: it needs `storage = pulsar://...`",
                );
            }
            if self.node_id < 0 {
                return invalid("node_id", "must be 0 or more");
            }
            if self.cluster_heartbeat_ms < 100
                || self.cluster_session_timeout_ms < 3 * self.cluster_heartbeat_ms
            {
                return invalid(
                    "cluster_session_timeout_ms",
                    "must be at least three heartbeats (cluster_heartbeat_ms, at least 100)",
                );
            }
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > i32::MAX as u32 {
            return invalid("max_frame_bytes", "must be between 1 KiB and 2 GiB");
        }
        if self.message_max_bytes < 64 || self.message_max_bytes > self.max_frame_bytes {
            return invalid("message_max_bytes", "must be at least 64 and at most max_frame_bytes");
        }
        if self.segment_bytes < 1024 {
            return invalid("segment_bytes", "must be at least 1024");
        }
        self.fsync_policy()?;
        if self.pulsar_max_message_bytes < 128 * 1024 {
            return invalid("pulsar_max_message_bytes", "must be at least 128 KiB");
        }
        if let Some(url) = &self.pulsar_admin_url
            && !url.starts_with("http://")
        {
            return invalid("pulsar_admin_url", "must be http://HOST:PORT (https is not supported yet)");
        }
        if self.retention_ms < -1 || self.retention_bytes < -1 {
            return invalid("retention_ms", "retention_ms and retention_bytes must be -1 (no limit) or more");
        }
        if self.retention_check_interval_ms == 0 {
            return invalid("retention_check_interval_ms", "must be positive");
        }
        if self.log_cleaner_backoff_ms == 0 {
            return invalid("log_cleaner_backoff_ms", "must be positive");
        }
        if self.partial_frames_max_bytes < u64::from(self.max_frame_bytes) {
            return invalid("partial_frames_max_bytes", "must be at least max_frame_bytes");
        }
        if self.admin_max_connections == 0 {
            return invalid("admin_max_connections", "must be at least 1");
        }
        if let Some(bad) = self
            .super_users
            .iter()
            .find(|p| p.split_once(':').is_none_or(|(t, n)| t.is_empty() || n.is_empty()))
        {
            return Err(ConfigError::Invalid {
                key: "super_users",
                message: format!("{bad:?} is not a principal such as \"User:admin\""),
            });
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.guest_timeout_ms == 0 {
            return invalid("guest_timeout_ms", "must be positive");
        }
        if self.guest_warm_instances > TRANSLATOR_SLOTS {
            return invalid(
                "guest_warm_instances",
                &format!("must be at most {TRANSLATOR_SLOTS} (the translator calls that may run at once)"),
            );
        }
        if self.transform_warm_instances > TRANSLATOR_SLOTS {
            return invalid(
                "transform_warm_instances",
                &format!("must be at most {TRANSLATOR_SLOTS} (the transform calls the engine is sized for)"),
            );
        }
        if self.guest_memory_bytes.is_some_and(|m| m < u64::from(self.max_frame_bytes)) {
            return invalid(
                "guest_memory_bytes",
                "must be at least max_frame_bytes (the translator reads whole requests)",
            );
        }
        if self.module_max_bytes == 0 {
            return invalid("module_max_bytes", "must be positive");
        }
        if self.module_keep_versions < 2 {
            return invalid(
                "module_keep_versions",
                "must be at least 2 (the active version and one to roll back to)",
            );
        }
        if self.namespace == crate::scram::RESERVED_NAMESPACE {
            return invalid("namespace", "__guise is reserved for the host's own topics");
        }
        // Tenants are checked as they are read (TenantId); the namespace becomes a directory.
        if let Err(e) = crate::tenant::names::validate_path_component("namespace", &self.namespace) {
            return invalid("namespace", &e.to_string());
        }
        if self.group_min_session_timeout_ms < 1 {
            return invalid("group_min_session_timeout_ms", "must be positive");
        }
        if !(1..=2).contains(&self.transaction_version) {
            return invalid("transaction_version", "must be 1 or 2");
        }
        if self.transaction_max_timeout_ms <= 0 {
            return invalid("transaction_max_timeout_ms", "must be positive");
        }
        if self.group_max_session_timeout_ms < self.group_min_session_timeout_ms {
            return invalid("group_max_session_timeout_ms", "must be at least group_min_session_timeout_ms");
        }
        if self.transform_memory_bytes < (1 << 20) || self.transform_timeout_ms == 0 {
            return invalid(
                "transform_memory_bytes",
                "transform_memory_bytes must be at least 1 MiB and transform_timeout_ms positive",
            );
        }
        for l in &self.listeners {
            if l.addr.is_empty() {
                return invalid("listeners", "each listener needs an addr");
            }
        }
        if self.tls_files().is_none() && self.uses_tls() {
            return invalid(
                "tls_cert_file",
                "an SSL listener, pulsar_tls or admin_tls needs tls_cert_file and tls_key_file",
            );
        }
        let mechanisms = self.sasl_mechanisms()?;
        let oauth = crate::net::kafka::sasl::Mechanism::OAuthBearer;
        if self.uses_sasl() && self.sasl_oauthbearer_jwks_file.is_none() && mechanisms.contains(&oauth) {
            return invalid("sasl_oauthbearer_jwks_file", "OAUTHBEARER needs sasl_oauthbearer_jwks_file");
        }
        if self.pulsar_token_auth && self.sasl_oauthbearer_jwks_file.is_none() {
            return invalid(
                "sasl_oauthbearer_jwks_file",
                "pulsar_token_auth needs sasl_oauthbearer_jwks_file",
            );
        }
        if self.tls_client_auth != crate::net::tls::ClientAuth::None && self.tls_client_ca_file.is_none() {
            return invalid("tls_client_auth", "requested or required needs tls_client_ca_file");
        }
        for (name, t) in &self.tenants {
            if t.transform_memory_bytes.is_some_and(|m| m < (1 << 20)) || t.transform_timeout_ms == Some(0) {
                return Err(ConfigError::Invalid {
                    key: "tenants",
                    message: format!("tenant {name}: transform memory below 1 MiB or a zero timeout"),
                });
            }
            if t.producer_byte_rate == Some(0)
                || t.consumer_byte_rate == Some(0)
                || t.request_percentage.is_some_and(|p| p.is_nan() || p <= 0.0 || p.is_infinite())
            {
                return Err(ConfigError::Invalid {
                    key: "tenants",
                    message: format!("tenant {name}: a quota ceiling must be greater than 0"),
                });
            }
        }
        if self.group_initial_rebalance_delay_ms > i32::MAX as u64 {
            return invalid("group_initial_rebalance_delay_ms", "must fit in 32 bits, as in Kafka");
        }
        Ok(())
    }

    /// Whether any listener serves TLS.
    pub fn uses_tls(&self) -> bool {
        self.kafka_security_protocol.tls()
            || self.pulsar_tls
            || self.admin_tls
            || self.listeners.iter().any(|l| l.security_protocol.tls())
    }

    /// Whether any Kafka listener authenticates with SASL.
    pub fn uses_sasl(&self) -> bool {
        self.kafka_security_protocol.sasl() || self.listeners.iter().any(|l| l.security_protocol.sasl())
    }

    /// The SASL mechanisms enabled, checked.
    pub fn sasl_mechanisms(&self) -> Result<Vec<crate::net::kafka::sasl::Mechanism>, ConfigError> {
        use crate::net::kafka::sasl::Mechanism;
        let parsed = self
            .sasl_enabled_mechanisms
            .iter()
            .map(|m| {
                Mechanism::parse(m).ok_or_else(|| ConfigError::Invalid {
                    key: "sasl_enabled_mechanisms",
                    message: format!("{m} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if parsed.is_empty() && self.uses_sasl() {
            return Err(ConfigError::Invalid { key: "sasl_enabled_mechanisms", message: "is empty".into() });
        }
        Ok(parsed)
    }

    /// The TLS files, when both the certificate and the key are set.
    pub fn tls_files(&self) -> Option<crate::net::tls::TlsFiles> {
        Some(crate::net::tls::TlsFiles {
            cert: self.tls_cert_file.clone()?,
            key: self.tls_key_file.clone()?,
            client_ca: self.tls_client_ca_file.clone(),
            client_auth: self.tls_client_auth,
        })
    }

    /// The fsync policy, with its interval.
    pub fn fsync_policy(&self) -> Result<FsyncPolicy, ConfigError> {
        match self.fsync {
            FsyncMode::Never => Ok(FsyncPolicy::Never),
            FsyncMode::EveryBatch => Ok(FsyncPolicy::EveryBatch),
            FsyncMode::Interval if self.fsync_interval_ms > 0 => {
                Ok(FsyncPolicy::Interval(std::time::Duration::from_millis(self.fsync_interval_ms)))
            }
            FsyncMode::Interval => Err(ConfigError::Invalid {
                key: "fsync_interval_ms",
                message: "must be positive with fsync = \"interval\"".into(),
            }),
        }
    }

    pub fn acl_config(&self) -> crate::acl::AclConfig {
        crate::acl::AclConfig {
            enabled: self.authorizer_enabled,
            super_users: self.super_users.clone(),
            allow_everyone_if_no_acl_found: self.allow_everyone_if_no_acl_found,
            namespace: self.namespace.clone(),
        }
    }

    pub fn quota_config(&self) -> crate::quota::QuotaConfig {
        let ceilings = self
            .tenants
            .iter()
            .map(|(name, t)| {
                let ceiling = crate::quota::Ceiling {
                    producer_byte_rate: t.producer_byte_rate.map(|r| r as f64),
                    consumer_byte_rate: t.consumer_byte_rate.map(|r| r as f64),
                    request_percentage: t.request_percentage,
                };
                (name.to_string(), ceiling)
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        crate::quota::QuotaConfig {
            namespace: self.namespace.clone(),
            sampling: Default::default(),
            ceilings,
        }
    }

    pub fn txn_config(&self) -> crate::txn::TxnConfig {
        crate::txn::TxnConfig {
            namespace: self.namespace.clone(),
            max_timeout_ms: self.transaction_max_timeout_ms,
        }
    }

    pub fn coord_config(&self) -> crate::coord::CoordConfig {
        crate::coord::CoordConfig {
            namespace: self.namespace.clone(),
            group: crate::coord::GroupConfig {
                initial_rebalance_delay: std::time::Duration::from_millis(
                    self.group_initial_rebalance_delay_ms,
                ),
                min_session_timeout_ms: self.group_min_session_timeout_ms,
                max_session_timeout_ms: self.group_max_session_timeout_ms,
            },
            offset_metadata_max_bytes: self.offset_metadata_max_bytes,
        }
    }

    /// The transform limits of `tenant`.
    pub fn transform_limits(&self, tenant: &str) -> crate::wasm::TransformLimits {
        let t = self.tenants.get(tenant).cloned().unwrap_or_default();
        let bytes = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        crate::wasm::TransformLimits {
            memory_bytes: bytes(t.transform_memory_bytes.unwrap_or(self.transform_memory_bytes)),
            timeout: std::time::Duration::from_millis(
                t.transform_timeout_ms.unwrap_or(self.transform_timeout_ms),
            ),
            max_output_bytes: bytes(t.transform_max_output_bytes.unwrap_or(self.transform_max_output_bytes)),
        }
    }

    /// The transforms service's settings.
    pub fn transforms_config(&self) -> crate::transform::TransformsConfig {
        crate::transform::TransformsConfig {
            dir: Some(self.data_dir.join(crate::wasm::registry::TRANSFORMS_DIR)),
            namespace: self.namespace.clone(),
            max_module_bytes: self.module_max_bytes,
            keep_versions: self.module_keep_versions,
            limits: self.transform_limits(""),
            tenant_limits: self.tenants.keys().map(|t| (t.to_string(), self.transform_limits(t))).collect(),
            auto_create_topics: self.auto_create_topics,
            default_partitions: self.default_partitions,
            concurrency: self.transform_concurrency(self.transform_max_concurrency),
            tenant_concurrency: self
                .tenants
                .iter()
                .filter_map(|(t, c)| {
                    Some((t.to_string(), self.transform_concurrency(c.transform_max_concurrency?)))
                })
                .collect(),
        }
    }

    /// A `transform_max_concurrency` setting, `0` derived.
    fn transform_concurrency(&self, n: usize) -> usize {
        if n == 0 { crate::transform::default_concurrency() } else { n }
    }

    /// The translator's memory cap: at least the maximum frame plus working room.
    pub fn guest_memory(&self) -> u64 {
        self.guest_memory_bytes.unwrap_or(u64::from(self.max_frame_bytes) + (64 << 20))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn defaults_match_kafka() {
        let c = Config::load(None, []).unwrap();
        assert_eq!(c.kafka_addr, "127.0.0.1:9092");
        assert_eq!(c.admin_addr, "127.0.0.1:8080");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.max_frame_bytes, 104_857_600);
        assert!(c.auto_create_topics);
    }

    #[test]
    fn file_then_env_override() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "default_partitions = 3\nkafka_addr = \"127.0.0.1:1234\"").unwrap();
        let env = vec![
            ("GUISE_DEFAULT_PARTITIONS".to_string(), "5".to_string()),
            ("GUISE_AUTO_CREATE_TOPICS".to_string(), "false".to_string()),
            ("GUISE_DATA_DIR".to_string(), "/tmp/x y".to_string()),
            ("GUISE_GUEST_TARGET_DIR".to_string(), "ignored".to_string()),
            ("GUISE_PULSAR_TENANTS".to_string(), r#"["public","acme"]"#.to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ];
        let c = Config::load(Some(f.path()), env).unwrap();
        assert_eq!(c.pulsar_tenants, ["public", "acme"], "a TOML list, as the README shows");
        assert_eq!(c.default_partitions, 5);
        assert_eq!(c.kafka_addr, "127.0.0.1:1234");
        assert!(!c.auto_create_topics);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x y"));
    }

    #[test]
    fn unknown_file_key_is_rejected_with_its_name() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "kafka_adr = \"x\"").unwrap();
        let err = Config::load(Some(f.path()), []).unwrap_err().to_string();
        assert!(err.contains("kafka_adr"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let env = vec![("GUISE_DEFAULT_PARTITIONS".to_string(), "lots".to_string())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("GUISE_DEFAULT_PARTITIONS"), "{err}");
        let env = vec![("GUISE_DEFAULT_PARTITIONS".to_string(), "0".to_string())];
        assert!(Config::load(None, env).is_err());
        let env = vec![("GUISE_FSYNC".to_string(), "sometimes".to_string())];
        let err = Config::load(None, env).unwrap_err().to_string();
        assert!(err.contains("every-batch"), "{err}");
        let env = vec![("GUISE_FSYNC".to_string(), "every-batch".to_string())];
        assert_eq!(Config::load(None, env).unwrap().fsync_policy().unwrap(), FsyncPolicy::EveryBatch);
    }

    #[test]
    fn flags_are_the_last_layer() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(
            &mut f,
            b"kafka_addr = \"127.0.0.1:1\"\nstorage = \"embedded\"\nfsync = \"never\"",
        )
        .unwrap();
        let env = vec![("GUISE_KAFKA_ADDR".to_string(), "127.0.0.1:2".to_string())];
        let c = Config::load_layers(Some(f.path()), env.clone(), toml::Table::new()).unwrap();
        assert_eq!((c.kafka_addr.as_str(), c.fsync), ("127.0.0.1:2", FsyncMode::Never));
        let mut flags = toml::Table::new();
        flags.insert("kafka_addr".into(), "127.0.0.1:3".into());
        flags.insert("storage".into(), "pulsar://127.0.0.1:6650".into());
        let c = Config::load_layers(Some(f.path()), env.clone(), flags).unwrap();
        assert_eq!(c.kafka_addr, "127.0.0.1:3");
        assert_eq!(c.storage, StorageKind::Pulsar("pulsar://127.0.0.1:6650".into()));
        let mut flags = toml::Table::new();
        flags.insert("storage".into(), "kafka://x".into());
        let e = Config::load_layers(None, Vec::new(), flags).unwrap_err().to_string();
        assert!(e.contains("--storage") && e.contains("embedded"), "{e}");
        let e = Config::load(None, vec![("GUISE_FSYNC".into(), "sometimes".into())]).unwrap_err().to_string();
        assert!(e.contains("GUISE_FSYNC") && e.contains("every-batch"), "{e}");
    }

    #[test]
    fn warm_instances_default_to_16_and_never_outnumber_the_translator_slots() {
        let load =
            |v: &str| Config::load(None, vec![("GUISE_GUEST_WARM_INSTANCES".to_string(), v.to_string())]);
        assert_eq!(Config::load(None, Vec::new()).unwrap().guest_warm_instances, 16);
        assert_eq!(load("0").unwrap().guest_warm_instances, 0);
        assert_eq!(load("128").unwrap().guest_warm_instances, 128);
        let e = load("129").unwrap_err().to_string();
        assert!(e.contains("guest_warm_instances") && e.contains("128"), "{e}");
        let load =
            |v: &str| Config::load(None, vec![("GUISE_TRANSFORM_WARM_INSTANCES".to_string(), v.to_string())]);
        assert_eq!(Config::load(None, Vec::new()).unwrap().transform_warm_instances, 16);
        assert_eq!(load("0").unwrap().transform_warm_instances, 0);
        let e = load("129").unwrap_err().to_string();
        assert!(e.contains("transform_warm_instances") && e.contains("128"), "{e}");
    }

    #[test]
    fn cluster_needs_pulsar_and_a_session_of_three_heartbeats() {
        let load = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load(None, vars)
        };
        let e = load(&[("GUISE_CLUSTER", "true")]).unwrap_err().to_string();
        assert!(e.contains("cluster") && e.contains("pulsar://"), "{e}");
        let pulsar = ("GUISE_STORAGE", "pulsar://127.0.0.1:6650");
        let c = load(&[pulsar, ("GUISE_CLUSTER", "true"), ("GUISE_NODE_ID", "3")]).unwrap();
        assert_eq!(
            (c.cluster, c.node_id, c.cluster_heartbeat_ms, c.cluster_session_timeout_ms),
            (true, 3, 1000, 6000)
        );
        let e = load(&[pulsar, ("GUISE_CLUSTER", "true"), ("GUISE_CLUSTER_SESSION_TIMEOUT_MS", "2000")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("cluster_session_timeout_ms"), "{e}");
        let e = load(&[pulsar, ("GUISE_CLUSTER", "true"), ("GUISE_NODE_ID", "-1")]).unwrap_err().to_string();
        assert!(e.contains("node_id"), "{e}");
    }

    #[test]
    fn an_invalid_tenant_fails_at_load() {
        for (text, key) in [
            ("tenant = \"Acme\"", "Acme"),
            ("pulsar_tenants = [\"ok\", \"a/b\"]", "a/b"),
            ("[[listeners]]\naddr = \"127.0.0.1:0\"\ntenant = \"x y\"", "x y"),
            ("[tenants.\"BAD\"]\ntransform_timeout_ms = 5", "BAD"),
        ] {
            let mut f = tempfile::NamedTempFile::new().unwrap();
            std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
            let e = Config::load(Some(f.path()), Vec::new()).unwrap_err().to_string();
            assert!(e.contains("invalid tenant") && e.contains(key), "{text}: {e}");
        }
        let e = Config::load(None, vec![("GUISE_TENANT".into(), "Nope".into())]).unwrap_err().to_string();
        assert!(e.contains("GUISE_TENANT") && e.contains("invalid tenant"), "{e}");
        let e = Config::load(None, vec![("GUISE_NAMESPACE".into(), "a/b".into())]).unwrap_err().to_string();
        assert!(e.contains("namespace"), "{e}");
    }

    #[test]
    fn listeners_and_tenant_limits() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            f,
            "transform_timeout_ms = 50\n[[listeners]]\naddr = \"127.0.0.1:9093\"\ntenant = \"acme\"\n[tenants.acme]\ntransform_memory_bytes = 4194304"
        )
        .unwrap();
        let c = Config::load(Some(f.path()), []).unwrap();
        assert_eq!(c.listeners[0].tenant, "acme");
        let acme = c.transform_limits("acme");
        assert_eq!((acme.memory_bytes, acme.timeout.as_millis()), (4 << 20, 50));
        assert_eq!(c.transform_limits("public").memory_bytes, 16 << 20);
        writeln!(f, "[tenants.bad]\ntransform_timeout_ms = 0").unwrap();
        assert!(Config::load(Some(f.path()), []).is_err());
    }

    #[test]
    fn group_settings() {
        let c = Config::load(None, []).unwrap();
        let coord = c.coord_config();
        assert_eq!(coord.group.initial_rebalance_delay, std::time::Duration::from_secs(3));
        assert_eq!(
            (coord.group.min_session_timeout_ms, coord.group.max_session_timeout_ms),
            (6000, 1_800_000)
        );
        assert_eq!(coord.offset_metadata_max_bytes, 4096);
        let env = vec![
            ("GUISE_GROUP_MIN_SESSION_TIMEOUT_MS".to_string(), "100".to_string()),
            ("GUISE_GROUP_INITIAL_REBALANCE_DELAY_MS".to_string(), "0".to_string()),
        ];
        let c = Config::load(None, env).unwrap();
        assert_eq!(c.coord_config().group.min_session_timeout_ms, 100);
        assert!(c.coord_config().group.initial_rebalance_delay.is_zero());
        let env = vec![("GUISE_GROUP_MAX_SESSION_TIMEOUT_MS".to_string(), "10".to_string())];
        assert!(Config::load(None, env).is_err());
    }
}
