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
pub use config::{
    AlterOp, CLEANUP_POLICY, CleanupPolicy, ConfigEntry, ENTRY_FORMAT, EntryFormat, FsyncPolicy, LogDefaults,
    TimestampType, TopicConfig,
};
pub use delay::DelayedLog;
pub(crate) use delay::delegate_log;
pub use error::StorageError;
pub use modules::{ModuleSnapshot, ModuleStore};

/// Run a [`Log`] future to completion from synchronous code (the group coordinator, tests,
/// start-up). It returns at once when the future is ready at its first poll, as every call of
/// the embedded engine is; otherwise it blocks this thread until the future is done (on a tokio
/// worker, after handing the worker's other tasks to another thread).
pub fn wait<F: std::future::Future>(fut: F) -> F::Output {
    use std::task::{Context, Poll};
    let mut fut = std::pin::pin!(fut);
    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(futures::task::noop_waker_ref())) {
        return v;
    }
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(fut))
        }
        _ => futures::executor::block_on(fut),
    }
}

/// What the log knows about a topic.
#[derive(Clone, Debug)]
pub struct TopicMeta {
    pub name: TopicName,
    /// Random (v4) at creation, stable across restarts; nil for a `validate_only` creation.
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub config: TopicConfig,
}

/// A change of a topic's configs.
#[derive(Clone, Debug)]
pub enum ConfigChange {
    /// IncrementalAlterConfigs: each op applies to the current overrides.
    Incremental(Vec<(String, AlterOp)>),
    /// AlterConfigs: these pairs replace every override.
    Replace(Vec<(String, String)>),
}

impl TopicConfig {
    /// This config after `change`.
    pub fn changed(
        &self,
        defaults: &LogDefaults,
        change: &ConfigChange,
    ) -> Result<TopicConfig, StorageError> {
        match change {
            ConfigChange::Incremental(ops) => self.altered(defaults, ops),
            ConfigChange::Replace(pairs) => self.replaced(defaults, pairs),
        }
    }
}

/// `records` as the log stores them under `config`: stamped with the append time when the topic's
/// message.timestamp.type is LogAppendTime (see [`batch::stamp_log_append_time`]).
pub(crate) fn stamp_if_log_append_time(config: &TopicConfig, records: bytes::Bytes) -> bytes::Bytes {
    if config.timestamp_type != TimestampType::LogAppendTime {
        return records;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    bytes::Bytes::from(batch::stamp_log_append_time(&records, now_ms))
}

/// DeleteRecords is allowed only where records may be deleted: Kafka refuses it on a topic whose
/// cleanup.policy lacks `delete` (a compacted topic keeps every key's latest value).
pub(crate) fn check_delete_records(meta: &TopicMeta) -> Result<(), StorageError> {
    if meta.config.cleanup_policy.delete {
        Ok(())
    } else {
        Err(StorageError::PolicyViolation(format!(
            "Records delete operation is not supported on topic {} with cleanup.policy without delete",
            meta.name.topic
        )))
    }
}

/// Where an append landed.
#[derive(Clone, Copy, Debug)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    pub log_start_offset: i64,
}

/// What one pass of the log cleaner did ([`Log::clean`]), summed over the partitions it cleaned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Partitions cleaned.
    pub partitions: usize,
    /// Bytes of segments read (the cleanable part of each cleaned partition).
    pub bytes_read: u64,
    /// Bytes of cleaned segments written.
    pub bytes_written: u64,
    pub records_read: u64,
    /// Records removed: superseded by a later record of their key, tombstones past their
    /// delete horizon, and records without a key.
    pub records_removed: u64,
}

impl CleanStats {
    pub fn add(&mut self, other: CleanStats) {
        self.partitions += other.partitions;
        self.bytes_read += other.bytes_read;
        self.bytes_written += other.bytes_written;
        self.records_read += other.records_read;
        self.records_removed += other.records_removed;
    }
}

/// An idempotent producer a partition remembers (DescribeProducers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerSnapshot {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last sequence of its last stored batch.
    pub last_sequence: i32,
    /// The max timestamp of its last stored batch.
    pub last_timestamp: i64,
}

/// What DescribeLogDirs and DescribeProducers report of one partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionReport {
    /// Bytes of stored batches (embedded: its segment files).
    pub size_bytes: u64,
    /// The idempotent producers its state remembers, by producer id.
    pub producers: Vec<ProducerSnapshot>,
}

/// Where a log keeps its data (DescribeLogDirs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogDirReport {
    /// Embedded: the absolute path of the topics directory; Pulsar: the service URL.
    pub path: String,
    /// The volume's size and what is usable of it, when the backend knows them.
    pub total_bytes: Option<u64>,
    pub usable_bytes: Option<u64>,
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

/// The Log port. Every call that may wait on a disk or the network is `async`: a guest's host
/// call awaits it on its fiber, holding no thread (see `docs/architecture.md`, "A guest never
/// blocks a thread"). The catalog lookups (`topic`, `topic_by_id`, `topics`, `defaults`) are
/// answered from memory and stay synchronous.
#[async_trait::async_trait]
pub trait Log: Send + Sync + 'static {
    /// Create a topic with `partitions` partitions and the given Kafka config overrides.
    async fn create_topic(
        &self,
        name: &TopicName,
        partitions: i32,
        config: &[(String, String)],
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError>;

    /// Delete a topic and all its data; subscribers of its partitions see their watch close.
    async fn delete_topic(&self, name: &TopicName) -> Result<(), StorageError>;

    /// Grow a topic to `total` partitions; `total` must exceed the current count, else
    /// InvalidPartitions.
    async fn create_partitions(
        &self,
        name: &TopicName,
        total: i32,
        validate_only: bool,
    ) -> Result<(), StorageError>;

    /// Change a topic's configs (AlterConfigs, IncrementalAlterConfigs): validated as a whole
    /// as at creation, persisted, and in effect for the next append, read and retention pass.
    async fn alter_topic_config(
        &self,
        name: &TopicName,
        change: &ConfigChange,
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError>;

    /// DeleteRecords: move the partition's log start offset up to `offset` (-1: the high
    /// watermark), durably; records below it are no longer readable and whole segments (or
    /// stored batches) below it are deleted. An offset above the high watermark is
    /// OffsetOutOfRange; one at or below the current log start changes nothing; a topic whose
    /// cleanup.policy lacks `delete` is PolicyViolation, as in Kafka. Returns the new log start
    /// offset (the low watermark).
    async fn delete_records(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
    ) -> Result<i64, StorageError>;

    /// The partition's stored size and its idempotent producers (DescribeLogDirs,
    /// DescribeProducers).
    async fn report(&self, name: &TopicName, partition: i32) -> Result<PartitionReport, StorageError>;

    /// Where this log keeps its data (DescribeLogDirs).
    fn log_dir(&self) -> LogDirReport;

    fn topic(&self, name: &TopicName) -> Option<TopicMeta>;

    fn topic_by_id(&self, tenant: &str, namespace: &str, id: uuid::Uuid) -> Option<TopicMeta>;

    /// The topics of one tenant and namespace, sorted by name.
    fn topics(&self, tenant: &str, namespace: &str) -> Vec<TopicMeta>;

    fn defaults(&self) -> &LogDefaults;

    /// Whether topics with `cleanup.policy=compact` are compacted here (the embedded log); a
    /// backend that does not compact refuses that policy.
    fn compacts(&self) -> bool {
        false
    }

    /// Validate every batch in `records` (see [`batch::validate`]) with the topic's
    /// max.message.bytes, check idempotent producers' sequences (see [`producers`]), then assign
    /// offsets and append. `records` may hold several concatenated batches; all or nothing. An
    /// append whose producer batches are all already stored (a retry) appends nothing and
    /// returns the original offsets.
    async fn append(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
    ) -> Result<AppendInfo, StorageError> {
        self.append_counted(name, partition, records, batch::Counts::Exact).await
    }

    /// [`append`](Log::append) for batches the host built itself (a tenant transform's output):
    /// a batch may hold fewer records than the offsets it spans, or none, so that it keeps the
    /// producer's original sequence span (see [`batch::BatchHeader::check_span`]).
    async fn append_host(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
    ) -> Result<AppendInfo, StorageError> {
        self.append_counted(name, partition, records, batch::Counts::Span).await
    }

    /// What [`append`](Log::append) and [`append_host`](Log::append_host) do, with how record
    /// counts are checked; each backend implements this one.
    async fn append_counted(
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
    async fn producer_precheck(
        &self,
        name: &TopicName,
        partition: i32,
        header: &batch::BatchHeader,
    ) -> Result<Option<(i64, i64)>, StorageError>;

    /// Whole batches starting with the batch that contains `offset`; stops before exceeding
    /// `max_bytes` unless `min_one` and nothing was taken yet (KIP-74: the first batch is returned
    /// even if larger). `offset` == high watermark gives `records: None`; an offset outside
    /// [log start, high watermark] is OffsetOutOfRange. May return batches of one segment only.
    async fn read(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
    ) -> Result<ReadResult, StorageError>;

    /// (log start offset, high watermark).
    async fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError>;

    /// ListOffsets by timestamp: (offset, timestamp) of the first record whose timestamp is at
    /// or above `ts`, or None. Exact for uncompressed batches; for a compressed batch, its base
    /// offset and its max timestamp.
    async fn offset_for_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
        ts: i64,
    ) -> Result<Option<(i64, i64)>, StorageError>;

    /// ListOffsets -3: (offset, timestamp) of the first record with the largest timestamp, or
    /// None when the partition is empty. Exact for uncompressed batches; for a compressed batch,
    /// the batch's last offset (its records are not decompressed).
    async fn max_timestamp(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<Option<(i64, i64)>, StorageError>;

    /// A watch of the partition's high watermark, updated after every append (for long-poll
    /// fetch). It closes when the topic is deleted.
    async fn subscribe(
        &self,
        name: &TopicName,
        partition: i32,
    ) -> Result<tokio::sync::watch::Receiver<i64>, StorageError>;

    /// Apply every topic's retention.ms and retention.bytes at `now_ms` (milliseconds since the
    /// epoch): delete whole old segments and move log start offsets. Returns what was deleted
    /// (embedded: segments; pulsar: stored batches).
    async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError>;

    /// One pass of the log cleaner at `now_ms` (milliseconds since the epoch): every partition
    /// of a topic with `cleanup.policy=compact` whose dirty share (min.cleanable.dirty.ratio) or
    /// dirty age (max.compaction.lag.ms) calls for it keeps only the latest record of each key
    /// in its segments but the active one. Backends that do not compact (Pulsar) do nothing.
    async fn clean(&self, now_ms: i64) -> Result<CleanStats, StorageError> {
        let _ = now_ms;
        Ok(CleanStats::default())
    }

    /// fsync everything written so far.
    async fn flush(&self) -> Result<(), StorageError>;

    /// A producer id (InitProducerId) that this log has never handed out before, across
    /// restarts and crashes.
    async fn allocate_producer_id(&self) -> Result<i64, StorageError>;

    /// InitProducerId's epoch bump (KIP-360) for a client at (`producer_id`, `epoch`): the new
    /// epoch, which from now on is the id's latest, so that appends with an older epoch are
    /// refused with InvalidProducerEpoch. None when the id cannot be bumped (epoch exhausted, an
    /// id this log never handed out, a client behind the latest epoch): the caller hands out a
    /// new id with epoch 0 instead. See [`producers::ProducerEpochs::bump`].
    async fn bump_producer_epoch(&self, producer_id: i64, epoch: i16) -> Result<Option<i16>, StorageError>;

    /// Where module registries keep their state, when this backend keeps it (see
    /// [`modules`]); None: they keep it in `data_dir`.
    fn module_store(&self) -> Option<std::sync::Arc<dyn ModuleStore>> {
        None
    }
}
