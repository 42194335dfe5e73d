//! Storage: the Log port and its implementations.
//!
//! The port is [`Log`]: topics, partitions and their record batches, stored as received (the
//! host assigns offsets and patches them into each batch). `embedded` keeps per-partition
//! segment files on local disk; `pulsar` keeps them in topics of an Apache Pulsar cluster.
//! `producers` holds the backend-neutral idempotent-producer checks every backend applies on
//! append. This module knows nothing of Wasm or sockets.

pub mod compaction;
mod config;
mod delay;
pub mod embedded;
mod error;
pub mod kv;
pub mod modules;
pub mod producers;
pub mod pulsar;

pub use crate::record::TopicName;
use crate::record::batch;
pub use config::{
    AlterOp, CLEANUP_POLICY, CleanupPolicy, ConfigEntry, ENTRY_FORMAT, EntryFormat, FsyncPolicy, INGRESS,
    LogDefaults, TimestampType, TopicConfig,
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

/// Milliseconds since the Unix epoch, as record timestamps count them.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A COMMIT or ABORT marker's control batch for `marker`, stamped now, as a topic with `config`
/// stores it ([`conform`]ed), and its validation.
pub(crate) fn marker_records(
    config: &TopicConfig,
    marker: &TxnMarker,
) -> Result<(bytes::Bytes, Vec<batch::ValidBatch>), StorageError> {
    let bytes = batch::end_txn_marker(
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
        marker.coordinator_epoch,
        now_ms(),
    );
    let records = conform(config, bytes::Bytes::from(bytes))?;
    // A marker is 78 bytes: never over max.message.bytes, which does not apply to it.
    let batches = batch::validate_with(&records, u32::MAX, batch::Counts::Exact)?;
    Ok((records, batches))
}

/// The tenants among `names` (sorted, as a catalog keyed by [`TopicName`] holds them) with a
/// topic `topic` in `namespace`: what both engines answer [`Log::tenants_with`] with.
pub(crate) fn tenants_with<'a>(
    names: impl Iterator<Item = &'a TopicName>,
    namespace: &str,
    topic: &str,
) -> Vec<String> {
    let mut tenants: Vec<String> =
        names.filter(|n| n.namespace == namespace && n.topic == topic).map(|n| n.tenant.clone()).collect();
    tenants.dedup();
    tenants
}

/// `records` as the log stores them under `config`, as Kafka's broker validates and converts an
/// append (its `LogValidator`): with message.timestamp.type CreateTime, a batch whose timestamps
/// fall outside [now − message.timestamp.before.max.ms, now + message.timestamp.after.max.ms] is
/// refused with INVALID_TIMESTAMP; with a compression.type other than `producer`, a batch in
/// another codec is re-encoded in the topic's (`uncompressed` decompresses), keeping its
/// records, offsets, timestamps and producer fields; with LogAppendTime, every batch is stamped
/// with the append time (see [`batch::stamp_log_append_time`]). Batches that cannot be parsed
/// are passed on unchanged, for validation to refuse with its own error.
///
/// The latest timestamp checked is the batch header's maxTimestamp (clients compute it from
/// their records); the earliest, when before.max.ms is set, is each record's.
pub(crate) fn conform(config: &TopicConfig, records: bytes::Bytes) -> Result<bytes::Bytes, StorageError> {
    let check_times = config.timestamp_type == TimestampType::CreateTime
        && (config.timestamp_before_max_ms < i64::MAX || config.timestamp_after_max_ms < i64::MAX);
    let target = config.compression;
    if !check_times && target.is_none() && config.timestamp_type != TimestampType::LogAppendTime {
        return Ok(records);
    }
    let now = now_ms();
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    while let Some(header) = records.get(at..).and_then(|rest| batch::BatchHeader::parse(rest).ok()) {
        let end = at + header.size();
        let Some(one) = records.get(at..end).filter(|b| !b.is_empty()) else { break };
        if check_times {
            check_timestamps(config, &header, one, now)?;
        }
        let recompress = target.is_some_and(|codec| codec != header.compression())
            && header.records_count > 0
            && !header.is_control()
            && batch::crc_matches(one, header.crc);
        if let (true, Some(codec)) = (recompress, target) {
            let buf = out.get_or_insert_with(|| records[..at].to_vec());
            buf.extend_from_slice(&recompressed(one, &header, codec, config)?);
        } else if let Some(buf) = out.as_mut() {
            buf.extend_from_slice(one);
        }
        at = end;
    }
    let records = match out {
        Some(mut buf) => {
            buf.extend_from_slice(&records[at..]);
            bytes::Bytes::from(buf)
        }
        None => records,
    };
    Ok(if config.timestamp_type == TimestampType::LogAppendTime {
        bytes::Bytes::from(batch::stamp_log_append_time(&records, now))
    } else {
        records
    })
}

/// Kafka's max.decompressed.message.bytes bound on what one batch may decompress to.
pub(crate) fn max_decompressed(config: &TopicConfig) -> usize {
    const DEFAULT: usize = 2_147_483_639;
    config.overrides.get("max.decompressed.message.bytes").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT)
}

fn check_timestamps(
    config: &TopicConfig,
    header: &batch::BatchHeader,
    one: &[u8],
    now: i64,
) -> Result<(), StorageError> {
    let earliest = now.saturating_sub(config.timestamp_before_max_ms);
    let latest = now.saturating_add(config.timestamp_after_max_ms);
    let out_of_range = |ts: i64, offset_delta: i64| {
        StorageError::InvalidTimestamp(format!(
            "Timestamp {ts} of message with offset {offset_delta} is out of range. The timestamp should be within \
             [{earliest}, {latest}]"
        ))
    };
    if header.records_count > 0 && header.max_timestamp > latest {
        return Err(out_of_range(header.max_timestamp, i64::from(header.last_offset_delta)));
    }
    if config.timestamp_before_max_ms == i64::MAX || header.records_count <= 0 {
        return Ok(());
    }
    let oldest = match batch::record_stamps(one) {
        Ok(Some(stamps)) => stamps.map_while(Result::ok).map(|s| (s.timestamp, s.offset)).min(),
        // Compressed: decode (bounded) to see each record's timestamp.
        Ok(None) => crate::record::records::decode(one, max_decompressed(config))
            .ok()
            .and_then(|d| d.records.iter().map(|r| (r.timestamp, i64::from(r.offset_delta))).min()),
        Err(_) => None,
    };
    match oldest {
        Some((ts, offset)) if ts < earliest => Err(out_of_range(ts, offset)),
        _ => Ok(()),
    }
}

/// One whole, CRC-checked batch re-encoded with `codec`: the same records with their offset
/// deltas and timestamps, the same offset span, producer fields and transactional attribute.
fn recompressed(
    one: &[u8],
    header: &batch::BatchHeader,
    codec: u8,
    config: &TopicConfig,
) -> Result<Vec<u8>, StorageError> {
    use crate::record::records::{self, EncodeSpec};
    let bad = |e: records::RecordsError| StorageError::CorruptMessage(e.to_string());
    let decoded = records::decode(one, max_decompressed(config)).map_err(bad)?;
    records::encode_rewrite(
        &decoded.records,
        &EncodeSpec::like(header, codec),
        None,
        header.is_transactional(),
    )
    .map_err(bad)
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

/// A message of a Pulsar ingress topic, in the order Pulsar delivers them (ledger, entry, index
/// in its batch; -1 when not batched): what an ingress append came from (see
/// `docs/architecture.md`, "Pulsar applications on the backend's topics").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IngressMark {
    pub ledger: u64,
    pub entry: u64,
    pub index: i32,
}

impl std::fmt::Display for IngressMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.ledger, self.entry, self.index)
    }
}

impl std::str::FromStr for IngressMark {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let mut it = s.split(':');
        let mut next = || it.next().ok_or(());
        let mark = IngressMark {
            ledger: next()?.parse().map_err(drop)?,
            entry: next()?.parse().map_err(drop)?,
            index: next()?.parse().map_err(drop)?,
        };
        if it.next().is_some() || mark.index < -1 {
            return Err(());
        }
        Ok(mark)
    }
}

/// How an append's batches are checked, and where they came from.
#[derive(Clone, Copy, Debug)]
pub struct Append {
    /// [`Log::append`]: exact record counts; [`Log::append_host`]: producer sequence spans.
    pub counts: batch::Counts,
    /// The last ingress message the batches were made from ([`Log::append_ingress`]).
    pub ingress: Option<IngressMark>,
    /// Transactional batches with a producer id and no sequence (-1) are the host's own
    /// records written into that producer's open transaction (a transform's output beyond the
    /// producer's batch, or routed to another partition): checked against the transaction and
    /// the epoch, not for sequences, as Kafka's coordinator-origin appends are. Off, such a
    /// batch meets the sequence checks like any other (and fails them).
    pub unsequenced_txn: bool,
}

impl Append {
    pub const CLIENT: Append = Append { counts: batch::Counts::Exact, ingress: None, unsequenced_txn: false };
    pub const HOST: Append = Append { counts: batch::Counts::Span, ingress: None, unsequenced_txn: false };
    /// [`HOST`](Self::HOST) with the host's unsequenced transactional batches allowed.
    pub const HOST_TXN: Append = Append { counts: batch::Counts::Span, ingress: None, unsequenced_txn: true };
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
    /// The last sequence of its last stored batch (-1 when a transaction marker moved it to a
    /// new epoch and it stored no batch since).
    pub last_sequence: i32,
    /// The max timestamp of its last stored batch or transaction marker.
    pub last_timestamp: i64,
    /// The first offset of its open transaction on the partition, -1 when it has none
    /// (DescribeProducers' currentTxnStartOffset).
    pub txn_start_offset: i64,
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
    /// `None` when there is nothing to return: the offset is the high watermark (with
    /// [`Isolation::ReadCommitted`], at or past the last stable offset), or the first batch does
    /// not fit in `max_bytes` and `min_one` was not set.
    pub records: Option<bytes::Bytes>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// The partition's last stable offset (LSO): the first offset of its earliest open
    /// transaction, or the high watermark when none is open. Always filled.
    pub last_stable_offset: i64,
    /// With [`Isolation::ReadCommitted`], the aborted transactions a consumer needs to skip the
    /// aborted records among `records` (Fetch's aborted_transactions), sorted by first offset;
    /// empty otherwise.
    pub aborted: Vec<AbortedTxn>,
}

/// What a read returns of transactions (Fetch's isolation_level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every stored batch up to the high watermark.
    #[default]
    ReadUncommitted,
    /// Batches below the last stable offset only, with the aborted transactions among them.
    ReadCommitted,
}

/// An aborted transaction of one producer on one partition (Fetch's aborted_transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch on the partition.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
}

/// A transaction marker the transaction coordinator writes to a data partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// COMMIT, else ABORT.
    pub commit: bool,
    pub coordinator_epoch: i32,
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

    /// The tenants that have a topic named `topic` in `namespace` (the host's services find
    /// their internal topics with it at start); a backend that cannot tell answers none.
    fn tenants_with(&self, namespace: &str, topic: &str) -> Vec<String> {
        let _ = (namespace, topic);
        Vec::new()
    }

    /// Whether topics with `cleanup.policy=compact` are compacted here (both engines do); a
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
        self.append_with(name, partition, records, Append::CLIENT).await
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
        self.append_with(name, partition, records, Append::HOST).await
    }

    /// [`append`](Log::append) of records a Pulsar application wrote to the partition's ingress
    /// topic, made from the ingress messages up to `mark` (transformed as a client's produce).
    /// The backend stores `mark` with them, so that whoever owns the partition next knows which
    /// ingress messages are in the log; an append whose mark is not past the partition's last
    /// one appends nothing (a redelivery).
    async fn append_ingress(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        mark: IngressMark,
    ) -> Result<AppendInfo, StorageError> {
        let how = Append { ingress: Some(mark), ..Append::CLIENT };
        self.append_with(name, partition, records, how).await
    }

    /// What [`append`](Log::append), [`append_host`](Log::append_host) and
    /// [`append_ingress`](Log::append_ingress) do; each backend implements this one.
    async fn append_with(
        &self,
        name: &TopicName,
        partition: i32,
        records: bytes::Bytes,
        how: Append,
    ) -> Result<AppendInfo, StorageError>;

    /// Start what this backend runs on behalf of the front ends (the Pulsar backend: the
    /// ingress of topics with `guise.pulsar.ingress`, appended through `front`, the log the
    /// front ends hold, so that transforms apply). Others have nothing to start.
    fn serve_ingress(&self, front: std::sync::Weak<dyn Log>) {
        let _ = front;
    }

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
    ) -> Result<ReadResult, StorageError> {
        self.read_with(name, partition, offset, max_bytes, min_one, Isolation::ReadUncommitted).await
    }

    /// [`read`](Log::read) at an isolation level. With [`Isolation::ReadCommitted`] only whole
    /// batches whose last offset is below the last stable offset (LSO) are returned: `records:
    /// None` when `offset` is at or past it (an offset outside [log start, high watermark] is
    /// still OffsetOutOfRange); `aborted` lists every aborted transaction whose abort marker is
    /// at or after `offset` and whose first offset is below the offset after the last batch
    /// returned (the LSO when none is) — Kafka's `collectAbortedTransactions` — sorted by first
    /// offset. `last_stable_offset` is filled at either level.
    async fn read_with(
        &self,
        name: &TopicName,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        min_one: bool,
        isolation: Isolation,
    ) -> Result<ReadResult, StorageError>;

    /// (log start offset, high watermark).
    async fn offsets(&self, name: &TopicName, partition: i32) -> Result<(i64, i64), StorageError>;

    /// The partition's last stable offset: the first offset of its earliest open transaction,
    /// else the high watermark (which it is on a log without transactions).
    async fn last_stable_offset(&self, name: &TopicName, partition: i32) -> Result<i64, StorageError> {
        Ok(self.offsets(name, partition).await?.1)
    }

    /// Append the transaction coordinator's `marker` (a COMMIT or ABORT control batch, as Kafka
    /// writes one) to the partition: it ends the producer's open transaction there, if any (an
    /// ABORT of an open one is remembered for read-committed fetches). A marker at an epoch
    /// below the producer's on the partition is InvalidProducerEpoch; one at a higher epoch moves
    /// the producer to it. Durable and announced as any append. A log without transactions
    /// refuses it (TransactionsUnsupported).
    async fn write_marker(
        &self,
        name: &TopicName,
        partition: i32,
        marker: TxnMarker,
    ) -> Result<AppendInfo, StorageError> {
        let _ = (name, partition);
        Err(StorageError::TransactionsUnsupported(format!(
            "this log stores no transactions (a marker of producer {})",
            marker.producer_id
        )))
    }

    /// KIP-890's verification: the transaction coordinator added the partition to producer
    /// `producer_id`'s transaction at `epoch`. From then until the producer's next marker here,
    /// only its transactional batches at `epoch` may open a transaction on the partition; after
    /// the marker, none until it is registered again (a late append cannot open a transaction
    /// nobody will end). A log without transactions ignores it.
    async fn register_txn(
        &self,
        name: &TopicName,
        partition: i32,
        producer_id: i64,
        epoch: i16,
    ) -> Result<(), StorageError> {
        let _ = (name, partition, producer_id, epoch);
        Ok(())
    }

    /// Whether this log stores transactional batches and markers (KIP-98); one that does not
    /// refuses them (TransactionsUnsupported), so its last stable offset is its high watermark.
    fn supports_transactions(&self) -> bool {
        false
    }

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
    /// in its segments but the active one (the Pulsar backend: in the partitions it owns, see
    /// `pulsar::partition::compact`). Backends that do not compact do nothing.
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

#[cfg(test)]
mod conform_tests {
    use super::*;
    use crate::record::batch::testing::{batch_with_timestamps, idempotent_batch};
    use crate::record::records;

    fn config(pairs: &[(&str, &str)]) -> TopicConfig {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TopicConfig::from_pairs(&LogDefaults::default(), &pairs).unwrap()
    }

    fn batches(records: &[u8]) -> Vec<records::DecodedBatch> {
        let valid = batch::validate(records, u32::MAX).expect("valid batches");
        valid
            .iter()
            .map(|b| records::decode(&records[b.position..b.position + b.size()], usize::MAX).unwrap())
            .collect()
    }

    #[test]
    fn batches_are_recompressed_to_the_topics_codec_keeping_everything_else() {
        let now = now_ms();
        let plain = batch_with_timestamps(&[b"a", b"bb", b"ccc"], now - 10, &[0, 3, 1]);
        let mut two = idempotent_batch(2, 42, 3, 7);
        two.extend_from_slice(&plain);
        let input = bytes::Bytes::from(two);
        let before = batches(&input);
        for (codec, id) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4), ("uncompressed", 0)] {
            let out = conform(&config(&[("compression.type", codec)]), input.clone()).unwrap();
            let after = batches(&out);
            assert_eq!(after.len(), 2, "{codec}");
            for (b, a) in before.iter().zip(&after) {
                assert_eq!(a.header.compression(), id, "{codec}");
                assert_eq!(a.records, b.records, "{codec}: same records, deltas and timestamps");
                let h = |x: &batch::BatchHeader| {
                    (x.last_offset_delta, x.producer_id, x.producer_epoch, x.base_sequence, x.max_timestamp)
                };
                assert_eq!(h(&a.header), h(&b.header), "{codec}");
            }
            // Already in the topic's codec: stored as sent.
            assert_eq!(conform(&config(&[("compression.type", codec)]), out.clone()).unwrap(), out);
        }
        assert_eq!(conform(&config(&[]), input.clone()).unwrap(), input, "producer: as sent");
    }

    #[test]
    fn a_transactional_batch_is_recompressed_as_a_transactional_one() {
        let txn = bytes::Bytes::from(batch::testing::transactional_batch(3, 42, 1, 5));
        let out = conform(&config(&[("compression.type", "zstd")]), txn.clone()).unwrap();
        let (before, after) = (&batches(&txn)[0], &batches(&out)[0]);
        assert_eq!(after.header.compression(), 4);
        assert!(after.header.is_transactional() && !after.header.is_control());
        assert_eq!(after.records, before.records);
        let producer = |h: &batch::BatchHeader| (h.producer_id, h.producer_epoch, h.base_sequence);
        assert_eq!(producer(&after.header), producer(&before.header));
        // A control batch (only the log writes them) is never re-encoded.
        let marker = bytes::Bytes::from(batch::end_txn_marker(42, 1, true, 0, now_ms()));
        assert_eq!(conform(&config(&[("compression.type", "zstd")]), marker.clone()).unwrap(), marker);
    }

    #[test]
    fn create_time_timestamps_outside_the_window_are_refused() {
        let now = now_ms();
        let at =
            |delta_ms: i64| bytes::Bytes::from(batch_with_timestamps(&[b"x", b"y"], now + delta_ms, &[0, 1]));
        let default = config(&[]);
        assert!(conform(&default, at(0)).is_ok());
        assert!(conform(&default, at(-10 * 365 * 24 * 3_600_000)).is_ok(), "no earliest by default");
        let late = conform(&default, at(2 * 3_600_000)).unwrap_err();
        assert_eq!(late.kafka_code(), 32, "{late}");
        let window =
            config(&[("message.timestamp.before.max.ms", "60000"), ("message.timestamp.after.max.ms", "0")]);
        assert_eq!(conform(&window, at(-120_000)).unwrap_err().kafka_code(), 32);
        assert!(conform(&window, at(-30_000)).is_ok());
        // Compressed: each record's timestamp is looked at.
        let zstd = config(&[("compression.type", "zstd")]);
        let compressed = conform(&zstd, at(-120_000)).unwrap();
        assert_eq!(conform(&window, compressed).unwrap_err().kafka_code(), 32);
        // LogAppendTime: the producer's timestamps do not matter.
        let lat =
            config(&[("message.timestamp.type", "LogAppendTime"), ("message.timestamp.after.max.ms", "0")]);
        assert!(conform(&lat, at(2 * 3_600_000)).is_ok());
    }
}
