//! Storage: the Log port and its implementations.
//!
//! The port is [`Log`]: topics, partitions and their record batches, stored as received (the
//! host assigns offsets and patches them into each batch). `embedded` keeps per-partition
//! segment files on local disk; `pulsar` keeps them in topics of an Apache Pulsar cluster.
//! `producers` holds the backend-neutral idempotent-producer checks every backend applies on
//! append. This module knows nothing of Wasm or sockets.

mod config;
mod delay;
pub mod embedded;
mod error;
pub mod modules;
pub mod producers;
pub mod pulsar;

pub use crate::record::TopicName;
use crate::record::batch;
pub use config::{ConfigEntry, ENTRY_FORMAT, EntryFormat, FsyncPolicy, LogDefaults, TopicConfig};
pub use delay::DelayedLog;
pub(crate) use delay::delegate_log;
pub use error::StorageError;
pub use modules::{ModuleSnapshot, ModuleStore};

/// What the log knows about a topic.
#[derive(Clone, Debug)]
pub struct TopicMeta {
    pub name: TopicName,
    /// Random (v4) at creation, stable across restarts; nil for a `validate_only` creation.
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub config: TopicConfig,
}

/// Where an append landed.
#[derive(Clone, Copy, Debug)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// The answer to a read: whole stored batches, as written (offsets already patched in).
#[derive(Clone, Debug)]
pub struct ReadResult {
    /// `None` when there is nothing to return: the offset is the high watermark, or the first
    /// batch does not fit in `max_bytes` and `min_one` was not set.
    pub records: Option<bytes::Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// The Log port. Synchronous on purpose: calls are short (page-cache I/O) and made from inside
/// guest host-calls.
pub trait Log: Send + Sync + 'static {
    /// Create a topic with `partitions` partitions and the given Kafka config overrides.
    fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError>;

    /// Delete a topic and all its data; subscribers of its partitions see their watch close.
    fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError>;

    /// Grow a topic to `total` partitions; `total` must exceed the current count, else
    /// InvalidPartitions.
    fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError>;

    fn topic(&self, name: &TopicName) -> Option<TopicMeta>;

    fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta>;

    /// The topics of one tenant and namespace, sorted by name.
    fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta>;

    fn defaults(&self) -> &LogDefaults;

    /// Validate every batch in `records` (see [`batch::validate`]) with the topic's
    /// max.message.bytes, check idempotent producers' sequences (see [`producers`]), then assign
    /// offsets and append. `records` may hold several concatenated batches; all or nothing. An
    /// append whose producer batches are all already stored (a retry) appends nothing and
    /// returns the original offsets.
    fn append(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
    ) -> Result<AppendInfo, StorageError> {
        self.append_counted(name, partition, records, batch::Counts::Exact)
    }

    /// [`append`](Log::append) for batches the host built itself (a tenant transform's output):
    /// a batch may hold fewer records than the offsets it spans, or none, so that it keeps the
    /// producer's original sequence span (see [`batch::BatchHeader::check_span`]).
    fn append_host(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
    ) -> Result<AppendInfo, StorageError> {
        self.append_counted(name, partition, records, batch::Counts::Span)
    }

    /// What [`append`](Log::append) and [`append_host`](Log::append_host) do, with how record
    /// counts are checked; each backend implements this one.
    fn append_counted(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        counts: batch::Counts,
    ) -> Result<AppendInfo, StorageError>;

    /// The idempotent-producer checks an append of `header` would meet now, changing nothing:
    /// Some((base offset, last offset)) for a retry of a stored batch, None for a batch that
    /// would be accepted, or the error (stale epoch, sequence gap) it would get. Checked before a
    /// transform runs, so a retry is not transformed and routed again, and a batch the log would
    /// refuse routes nothing.
    fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &batch::BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError>;

    /// Whole batches starting with the batch that contains `offset`; stops before exceeding
    /// `max_bytes` unless `min_one` and nothing was taken yet (KIP-74: the first batch is returned
    /// even if larger). `offset` == high watermark gives `records: None`; an offset outside
    /// [log start, high watermark] is OffsetOutOfRange. May return batches of one segment only.
    fn read(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError>;

    /// (log start offset, high watermark).
    fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError>;

    /// ListOffsets by timestamp: (offset, timestamp) of the first record whose timestamp is at
    /// or above `ts`, or None. Exact for uncompressed batches; for a compressed batch, its base
    /// offset and its max timestamp.
    fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError>;

    /// ListOffsets -3: (offset, timestamp) of the first record with the largest timestamp, or
    /// None when the partition is empty. Exact for uncompressed batches; for a compressed batch,
    /// the batch's last offset (its records are not decompressed).
    fn max_timestamp(&self, name: &TopicName, partition: i32) -> Result<Option<(i64, i64)>, StorageError>;

    /// A watch of the partition's high watermark, updated after every append (for long-poll
    /// fetch). It closes when the topic is deleted.
    fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError>;

    /// Apply every topic's retention.ms and retention.bytes at `now_ms` (milliseconds since the
    /// epoch): delete whole old segments and move log start offsets. Returns what was deleted
    /// (embedded: segments; pulsar: stored batches).
    fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError>;
    /// fsync everything written so far.
    fn flush(&self) -> Result<(), StorageError>;

    /// A producer id (InitProducerId) that this log has never handed out before, across
    /// restarts and crashes.
    fn allocate_producer_id(&self) -> Result<i64, StorageError>;

    /// InitProducerId's epoch bump (KIP-360) for a client at (`producer_id`, `epoch`): the new
    /// epoch, which from now on is the id's latest, so that appends with an older epoch are
    /// refused with InvalidProducerEpoch. None when the id cannot be bumped (epoch exhausted, an
    /// id this log never handed out, a client behind the latest epoch): the caller hands out a
    /// new id with epoch 0 instead. See [`producers::ProducerEpochs::bump`].
    fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError>;

    /// Where module registries keep their state, when this backend keeps it (see
    /// [`modules`]); None: they keep it in `data_dir`.
    fn module_store(&self) -> Option<std::sync::Arc<dyn ModuleStore>> {
        None
    }
}
