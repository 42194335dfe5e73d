//! The Pulsar-protocol endpoint: Pulsar clients produce to and consume from the log's topics.
//!
//! Off by default (`pulsar_addr`). A Kafka topic TOPIC of a tenant and namespace is the
//! partitioned Pulsar topic `persistent://TENANT/NAMESPACE/TOPIC` with the Kafka topic's
//! partition count, and `…/TOPIC-partition-N` is its partition N ([`crate::pulsar::topic`]).
//! One stored Kafka batch is one Pulsar entry ([`convert`]); message ids are
//! (0, base offset of the batch, index in the batch). Subscriptions dispatch from the log
//! ([`subs`]) and durable ones keep their cursor in the log ([`cursors`]); producers follow
//! Pulsar's access modes ([`producers`]). The connection ([`conn`]) speaks the protocol with the
//! sans-I/O codec of [`crate::pulsar::frame`].

mod conn;
pub mod convert;
pub mod cursors;
pub mod producers;
pub mod subs;

use crate::pulsar::frame::encode_command;
use crate::pulsar::proto::BaseCommand;
use crate::pulsar::proto::base_command::Type;
use crate::pulsar::topic;
use crate::storage::{Log, StorageError, TopicName};
use crate::tenant::{InternalTopics, TenantId};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// Frames queued for one connection's writer, and how many bytes are queued: dispatchers stop
/// feeding a connection whose client does not read (its permits do not bound bytes: one permit
/// releases a whole batch).
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// Bytes queued for one connection beyond which its consumers get nothing more for now.
pub const OUTBOX_LIMIT: usize = 8 << 20;

impl Outbox {
    pub fn new() -> (Outbox, OutboxReceiver) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        (Outbox { tx, queued: queued.clone() }, OutboxReceiver { rx, queued })
    }

    /// Queue a frame; false when the connection is gone.
    pub fn send(&self, frame: Bytes) -> bool {
        self.queued.fetch_add(frame.len(), Ordering::Relaxed);
        self.tx.send(frame).is_ok()
    }

    /// Whether the connection's client is behind on reading.
    pub fn full(&self) -> bool {
        self.queued.load(Ordering::Relaxed) >= OUTBOX_LIMIT
    }
}

pub struct OutboxReceiver {
    rx: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

impl OutboxReceiver {
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.rx.recv().await
    }

    pub fn try_recv(&mut self) -> Option<Bytes> {
        self.rx.try_recv().ok()
    }

    /// `n` bytes were written to the socket.
    pub fn written(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

/// The protocol version this endpoint speaks: v19, the version of the `.proto` it is built
/// from. Clients that speak a later version are answered with 19 and use only what 19 has.
pub const PROTOCOL_VERSION: i32 = 19;

#[derive(Clone, Debug)]
pub struct EndpointConfig {
    /// Tenant and namespace of short topic names (`my-topic`).
    pub tenant: TenantId,
    pub namespace: String,
    /// The tenants whose topics it serves; the host's other tenants get AuthorizationError,
    /// names that are no tenant of the host TopicNotFound (as Apache Pulsar answers for a tenant
    /// it does not have).
    pub tenants: Vec<TenantId>,
    /// Every tenant of the host (its listeners').
    pub known_tenants: Vec<TenantId>,
    /// `pulsar://HOST:PORT`, what LOOKUP answers.
    pub service_url: String,
    /// `pulsar+ssl://…` when the endpoint serves TLS (lookups answer it as the TLS URL).
    pub tls_service_url: Option<String>,
    /// CONNECTED's max_message_size: the largest message a client may send.
    pub max_message_size: u32,
    pub auto_create_topics: bool,
    pub default_partitions: i32,
    /// Token authentication (`pulsar_auth_tokens`): CONNECT must carry a JWT these keys signed;
    /// its principal's tenant (`principals`) is the only one the connection reaches.
    pub auth: Option<Arc<crate::net::kafka::sasl::oauth::Validator>>,
    pub principals: Arc<crate::net::principals::TenantMap>,
    /// The client quotas: a SEND's bytes count toward its tenant's produce rate, and a
    /// connection over it stops being read for the throttle time (Pulsar has no throttle field
    /// in its answers; a broker's publish rate limiter likewise stops reading).
    pub quotas: Arc<crate::quota::Quotas>,
}

pub struct Endpoint {
    cfg: EndpointConfig,
    /// The front ends' log: SENDs go through the tenant transforms.
    log: Arc<dyn Log>,
    internal: Arc<InternalTopics>,
    subs: subs::Subscriptions,
    producers: producers::Producers,
}

/// Why a topic cannot be used, as a Pulsar error.
#[derive(Debug)]
pub struct TopicError {
    pub error: crate::pulsar::proto::ServerError,
    pub message: String,
}

impl TopicError {
    /// A command naming a consumer id this connection does not have.
    fn no_consumer() -> Self {
        TopicError {
            error: crate::pulsar::proto::ServerError::ConsumerNotFound,
            message: "no such consumer".into(),
        }
    }
}

impl Endpoint {
    /// `log` is the front ends' (transforming) log; `raw` the log itself, where the cursor store
    /// keeps its internal topic.
    pub fn new(
        cfg: EndpointConfig,
        log: Arc<dyn Log>,
        raw: Arc<dyn Log>,
        internal: Arc<InternalTopics>,
    ) -> Self {
        let cursors = Arc::new(cursors::Cursors::new(raw));
        Endpoint {
            cfg,
            subs: subs::Subscriptions::new(log.clone(), cursors),
            log,
            internal,
            producers: producers::Producers::default(),
        }
    }

    /// Serve one accepted connection (see [`crate::net::listener::run`]).
    pub async fn serve(
        self: Arc<Self>,
        stream: crate::net::tls::Stream,
        accepted: crate::net::listener::Accepted,
    ) {
        conn::serve(self, stream, accepted.id, accepted.peer, accepted.shutdown).await
    }

    pub fn parse(&self, name: &str) -> Result<topic::PulsarTopic, TopicError> {
        let t = topic::parse(name, &self.cfg.tenant, &self.cfg.namespace).map_err(|message| TopicError {
            error: crate::pulsar::proto::ServerError::InvalidTopicName,
            message,
        })?;
        self.serves(&t.base.tenant)?;
        if let Some(owner) = self.internal.lookup(&t.base.namespace, &t.base.topic).map(|i| i.owner) {
            tracing::info!(topic = %t.base, owner, "refused a Pulsar client the internal topic");
            return Err(TopicError {
                error: crate::pulsar::proto::ServerError::NotAllowedError,
                message: format!("{name} is internal to the host"),
            });
        }
        Ok(t)
    }

    /// Whether this endpoint serves `tenant`'s topics (`pulsar_tenants`).
    pub fn serves(&self, tenant: &str) -> Result<(), TopicError> {
        if self.cfg.tenants.iter().any(|t| t == tenant) {
            return Ok(());
        }
        if !self.cfg.known_tenants.iter().any(|t| t == tenant) {
            tracing::debug!(tenant, "refused: no such tenant");
            return Err(TopicError {
                error: crate::pulsar::proto::ServerError::TopicNotFound,
                message: format!("tenant {tenant:?} does not exist"),
            });
        }
        tracing::debug!(tenant, "refused: a tenant this Pulsar endpoint does not serve");
        Err(TopicError {
            error: crate::pulsar::proto::ServerError::AuthorizationError,
            message: format!("tenant {tenant:?} is not served on this endpoint (pulsar_tenants)"),
        })
    }

    /// PARTITIONED_METADATA: a Kafka topic is a partitioned topic with its partition count; a
    /// partition's name, or a topic that does not exist and cannot be created, has 0.
    pub async fn partitions_of(&self, name: &str) -> Result<u32, TopicError> {
        let t = self.parse(name)?;
        if let Some(meta) = self.log.topic(&t.whole()) {
            return Ok(u32::try_from(meta.partitions).unwrap_or(0));
        }
        if t.partition.is_some() || !self.cfg.auto_create_topics {
            return Ok(0);
        }
        let meta = self.create(&t.whole(), self.cfg.default_partitions).await?;
        Ok(u32::try_from(meta.partitions).unwrap_or(0))
    }

    /// The Kafka partition a producer or consumer of `name` uses, creating the topic (or growing
    /// it to include partition N) when auto-creation is on.
    pub async fn partition_of(&self, name: &str) -> Result<(TopicName, i32), TopicError> {
        use crate::pulsar::proto::ServerError as E;
        let t = self.parse(name)?;
        let whole = t.whole();
        let single = |meta: crate::storage::TopicMeta| {
            if meta.partitions == 1 {
                Ok((meta.name, 0))
            } else {
                Err(TopicError {
                    error: E::NotAllowedError,
                    message: format!("{name} is a partitioned topic: use {name}-partition-N"),
                })
            }
        };
        if let Some(meta) = self.log.topic(&whole) {
            return single(meta);
        }
        let not_found =
            || TopicError { error: E::TopicNotFound, message: format!("topic {name} does not exist") };
        match t.partition {
            Some(p) => match self.log.topic(&t.base) {
                Some(meta) if p < meta.partitions => Ok((t.base, p)),
                Some(_) if self.cfg.auto_create_topics => {
                    let total = p.checked_add(1).ok_or_else(not_found)?;
                    match self.log.create_partitions(&t.base, total, false).await {
                        Ok(()) => {
                            tracing::info!(topic = %t.base, partitions = total, "grew a topic for a Pulsar client")
                        }
                        // Refused (too many partitions), or another client grew it first.
                        Err(StorageError::InvalidPartitions(why)) => {
                            tracing::debug!(topic = %t.base, "not grown: {why}")
                        }
                        Err(e) => return Err(storage_error(e)),
                    }
                    match self.log.topic(&t.base) {
                        Some(meta) if p < meta.partitions => Ok((t.base, p)),
                        _ => Err(not_found()),
                    }
                }
                Some(_) => Err(not_found()),
                None if self.cfg.auto_create_topics => {
                    let total = p.checked_add(1).ok_or_else(not_found)?;
                    let meta = self.create(&t.base, self.cfg.default_partitions.max(total)).await?;
                    if p < meta.partitions { Ok((t.base, p)) } else { Err(not_found()) }
                }
                None => Err(not_found()),
            },
            None if self.cfg.auto_create_topics => {
                single(self.create(&whole, self.cfg.default_partitions).await?)
            }
            None => Err(not_found()),
        }
    }

    async fn create(
        &self,
        name: &TopicName,
        partitions: i32,
    ) -> Result<crate::storage::TopicMeta, TopicError> {
        match self.log.create_topic(name, partitions, &[], false).await {
            Ok(meta) => {
                tracing::info!(topic = %name, partitions, "created a topic for a Pulsar client");
                Ok(meta)
            }
            Err(StorageError::TopicAlreadyExists(_)) => {
                self.log.topic(name).ok_or_else(|| storage_error(StorageError::UnknownTopicOrPartition))
            }
            Err(e) => Err(storage_error(e)),
        }
    }
}

/// A storage error as the Pulsar error a client understands.
pub fn storage_error(e: StorageError) -> TopicError {
    use crate::pulsar::proto::ServerError as E;
    let error = match &e {
        StorageError::UnknownTopicOrPartition => E::TopicNotFound,
        StorageError::InvalidTopic(_) => E::InvalidTopicName,
        // Retriable: clients reconnect and send again.
        StorageError::Io(_) | StorageError::Busy(_) | StorageError::Unavailable(_) => E::PersistenceError,
        StorageError::NotLeader(_) => E::ServiceNotReady,
        // The request itself is refused (too large, invalid, a producer sequence error).
        _ => E::NotAllowedError,
    };
    TopicError { error, message: e.to_string() }
}

/// A simple command frame of `kind`.
pub fn command(kind: Type, mut command: BaseCommand) -> Bytes {
    command.r#type = kind as i32;
    encode_command(&command)
}
