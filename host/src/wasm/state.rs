//! Per-store state: what a guest call may touch.

use crate::storage::{Log, TopicName};
use crate::tenant::InternalTopics;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// A host buffer the guest holds a handle to: a slice of a request frame or of stored batches.
#[derive(Clone, Debug)]
pub struct BufferHandle(pub Bytes);

/// What the host services need, shared by every call.
pub struct HostContext {
    /// The front ends' log: its appends go through the tenant transforms (see
    /// `crate::transform::Transforms::log`). Internal services hold the raw log instead.
    pub log: Arc<dyn Log>,
    pub namespace: String,
    pub node_id: i32,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub cluster_id: String,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    pub max_frame_bytes: u32,
    /// The `transaction.version` feature finalized in ApiVersions.
    pub transaction_version: u8,
    pub coord: Arc<crate::coord::Coordinator>,
    /// The host's internal topics: clients may read them, never write them.
    pub internal: Arc<InternalTopics>,
    /// Kafka's ACLs, checked on every host service a guest calls.
    pub acl: Arc<crate::acl::Authorizer>,
    /// SCRAM credentials (DescribeUserScramCredentials, AlterUserScramCredentials).
    pub scram: Arc<crate::scram::Store>,
    /// Client quotas and tenant ceilings: measured on every request, throttling clients over them.
    pub quotas: Arc<crate::quota::Quotas>,
    /// The transaction coordinator.
    pub txn: Arc<crate::txn::Coordinator>,
}

impl HostContext {
    /// A single host on 127.0.0.1:9092 over `log` (no transforms), with default settings and a
    /// coordinator that persists nothing: for tests and benchmarks that need a runtime without
    /// a server.
    pub fn local(log: Arc<dyn Log>, max_frame_bytes: u32) -> Self {
        let mut internal = InternalTopics::new();
        crate::coord::Coordinator::register_internal(&mut internal, "default");
        let coord: Arc<crate::coord::Coordinator> = Default::default();
        let txn = Arc::new(crate::txn::Coordinator::new(log.clone(), coord.clone(), Default::default()));
        HostContext {
            txn,
            log,
            namespace: "default".into(),
            node_id: 0,
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            cluster_id: "local".into(),
            auto_create_topics: true,
            default_partitions: 1,
            max_frame_bytes,
            transaction_version: 2,
            coord,
            internal: Arc::new(internal),
            acl: Default::default(),
            scram: Arc::new(crate::scram::Store::from_file(Default::default())),
            quotas: Default::default(),
        }
    }

    pub fn topic(&self, tenant: &str, topic: &str) -> TopicName {
        TopicName { tenant: tenant.to_string(), namespace: self.namespace.clone(), topic: topic.to_string() }
    }
}

/// The connection a request came on.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub id: u64,
    /// The connection's tenant: its authenticated principal's, or its listener's.
    pub tenant: String,
    /// Kafka's name of who is connected: "User:alice" once authenticated, else
    /// "User:ANONYMOUS".
    pub principal: String,
    pub peer: String,
    /// The client's address as ACLs name hosts ("10.0.0.1", without the port; an IPv4 client
    /// of a dual-stack listener as IPv4, as Java names it). See [`ConnInfo::client_ip_of`].
    pub client_ip: String,
    /// The (host, port) Metadata returns on this connection's listener; None: the context's.
    pub advertised: Option<Arc<(String, i32)>>,
}

impl ConnInfo {
    /// An unauthenticated connection (principal "User:ANONYMOUS") of `tenant` from `peer`.
    pub fn new(id: u64, tenant: &str, peer: &str) -> Self {
        ConnInfo {
            id,
            tenant: tenant.into(),
            principal: ANONYMOUS.into(),
            peer: peer.into(),
            client_ip: Self::client_ip_of(peer),
            advertised: None,
        }
    }

    /// `peer`'s address as ACLs name hosts (`peer` itself when it is not an address).
    pub fn client_ip_of(peer: &str) -> String {
        peer.parse::<std::net::SocketAddr>()
            .map_or_else(|_| peer.to_string(), |a| a.ip().to_canonical().to_string())
    }
}

/// Kafka's principal of an unauthenticated connection.
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// What a parked request waits on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WakeKey {
    /// Appends to a partition (its high watermark).
    Partition(TopicName, i32),
    /// Changes of a consumer group (its change counter).
    Group { tenant: String, group: String },
}

/// A wake key's value as a guest saw it during a call (a high watermark, a group's change
/// counter); a parked request is re-run as soon as it moves past that (checked after
/// subscribing, so no wake-up is lost).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub key: WakeKey,
    pub value: i64,
}

pub struct GuestState {
    pub table: ResourceTable,
    pub wasi: WasiCtx,
    pub limits: GuestLimiter,
    pub ctx: Arc<HostContext>,
    pub conn: ConnInfo,
    pub observed: Vec<Observed>,
    /// Time spent in host calls since the deadline was last extended (handed back to the
    /// guest's CPU deadline: see `Runtime::store`).
    pub host_time: std::time::Duration,
    /// The request frame, whose API and client id its quotas are measured by (read only when
    /// the tenant has quotas: see `quotas.throttle-ms`).
    pub frame: Bytes,
    /// Record bytes this call's reads returned (a fetch response's, for its quota).
    pub fetched: u64,
    /// What `throttle-ms` last answered: the throttle the response reports.
    pub reported_throttle_ms: i32,
}

/// A store's limits ([`StoreLimits`]), counting the bytes its memories grew to: a warm instance
/// whose memory grew past a bound is not kept (`super::warm`).
pub struct GuestLimiter {
    pub limits: StoreLimits,
    /// The bytes of linear memory the store's instances hold (their initial sizes and every
    /// growth allowed since).
    pub memory_bytes: usize,
}

impl GuestLimiter {
    pub fn new(limits: StoreLimits) -> Self {
        GuestLimiter { limits, memory_bytes: 0 }
    }
}

impl wasmtime::ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = self.memory_bytes.saturating_add(desired.saturating_sub(current));
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

/// What the host reads of a request's header itself: its API key and client id (for quotas).
#[derive(Clone, Debug, Default)]
pub struct RequestInfo {
    pub api_key: i16,
    pub client_id: String,
}

impl RequestInfo {
    /// The API key and client id of a request frame (its header's first fields, the same in
    /// every header version); None for a frame too short to hold them.
    pub fn of(frame: &[u8]) -> Option<RequestInfo> {
        let api_key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
        let len = i16::from_be_bytes([*frame.get(8)?, *frame.get(9)?]);
        let client_id = match usize::try_from(len) {
            Ok(len) => String::from_utf8_lossy(frame.get(10..10 + len)?).into_owned(),
            Err(_) => String::new(), // a null client id
        };
        Some(RequestInfo { api_key, client_id })
    }
}

impl ConnInfo {
    /// The user quotas know the connection by: its principal's name without `User:`
    /// ("ANONYMOUS" unauthenticated), as Kafka names quota users.
    pub fn quota_user(&self) -> &str {
        crate::quota::user_of(&self.principal)
    }

    /// The quota client of a request with `info` on this connection.
    pub fn quota_client<'a>(&'a self, info: &'a RequestInfo) -> crate::quota::Client<'a> {
        crate::quota::Client { tenant: &self.tenant, user: self.quota_user(), client_id: &info.client_id }
    }
}

impl GuestState {
    /// Set every per-request field for a request of `conn` with `frame`, on an instance that
    /// served an earlier request (`Runtime::store` sets the same ones on a new store). A field
    /// added to this struct that belongs to one request must be reset here, or it would carry
    /// over to the next request of the tenant.
    pub fn begin(&mut self, conn: &ConnInfo, frame: &Bytes) {
        self.conn.clone_from(conn);
        self.frame = frame.clone();
        self.observed.clear();
        self.host_time = std::time::Duration::ZERO;
        self.fetched = 0;
        self.reported_throttle_ms = 0;
    }

    /// Await `fut`, a call into storage or the group coordinator (it may wait on a disk, a slow
    /// store or, with the Pulsar backend, the network), and hand the time it took back to the guest's CPU deadline. The
    /// guest's fiber is suspended meanwhile: it holds no thread.
    pub async fn awaiting<T>(&mut self, fut: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let r = fut.await;
        self.host_time += started.elapsed();
        r
    }

    /// The front ends' log, to await a call on (a clone of the `Arc`, so the call does not
    /// borrow the state it reports its time to).
    pub fn log(&self) -> std::sync::Arc<dyn Log> {
        self.ctx.log.clone()
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}
