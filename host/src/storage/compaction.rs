//! What compaction keeps, whatever the engine stores batches in: the map of each key's latest
//! offset, the filter that decides which records and batches stay (Kafka's `Cleaner.cleanInto`
//! and `MemoryRecords.filterTo`), the configs a pass applies, and the key check a compacted
//! topic makes on produce. The embedded log's cleaner (`embedded::cleaner`) rewrites segment
//! files with it; the Pulsar backend rewrites a partition topic's live part (`pulsar::compact`).
//!
//! A record stays when it has a key, no later record of that key was mapped, and it is not a
//! tombstone (a null value) past its batch's delete horizon. A batch whose records all stay is
//! copied byte for byte, unless it holds a tombstone and has no delete horizon yet: then it is
//! rewritten with one (now + delete.retention.ms), so the tombstone goes at the first clean
//! after that (KIP-534). A batch that loses records is rewritten with the same codec, producer
//! id, epoch and base sequence, its records keeping their offsets and the batch its offset span
//! (lastOffsetDelta), so that offsets are never renumbered and the producer's sequence span is
//! kept. A batch that loses every record goes, except an idempotent producer's remembered
//! batches and the caller's `keep_empty` batches, which stay as empty batches (headers only).
//!
//! Transactions (KIP-98; the engine cleans nothing at or past the last stable offset, so every
//! transaction in what it cleans is decided): control batches (the transaction markers) are
//! kept as they are, and their keys map nothing; the records of an aborted transaction map
//! nothing either (they must not supersede a committed value), those of a committed one do. The
//! records of an aborted transaction are removed, as Kafka's cleaner removes them. A
//! transactional batch is otherwise filtered like any other, keeps its transactional attribute
//! when rewritten, and is never dropped (emptied, its header stays), so that the producer state
//! rebuilt at open finds every transaction where it started and ended.
//!
//! A marker goes once its transaction's records are gone, delete.retention.ms later (Kafka's
//! `CleanedTransactionMetadata` with KIP-534's delete horizon), and it goes together with the
//! emptied batches of its transaction: one without the other would leave the rebuilt state with
//! a transaction open for ever. The engine therefore plans every pass's markers ahead over the
//! batches' headers ([`MarkerPlanner`]): the first pass that finds a transaction's batches all
//! empty (an earlier pass removed their records) stamps its marker with a delete horizon (now +
//! delete.retention.ms, as Kafka stamps the control batch), and the first pass after the horizon
//! drops the marker and those batches. An aborted transaction whose marker goes is forgotten by
//! the partition first (`ProducerStateTable::forget_aborted`): listed without its marker, it
//! would make read-committed consumers skip the producer's later batches. Always kept, as the state rebuilt at open needs them: a
//! producer's first and last transaction in the cleaned part (the first may have begun below
//! the log start; the last holds the producer's epoch), a transaction with a batch the
//! producer's sequence state remembers, and one whose marker or a batch must stay for the
//! engine's own reason (a group's last batch).

use crate::record::batch::{BatchHeader, ValidBatch};
use crate::record::records::{self, EncodeSpec, Record, RecordsError};
use crate::storage::{AbortedTxn, CleanStats, StorageError, TopicConfig, TopicName};
use std::collections::{HashMap, HashSet};

/// The topic configs a pass applies: taken from the topic's configs as they are when the pass
/// starts (AlterConfigs may change them between passes), never kept.
#[derive(Clone, Copy, Debug)]
pub struct CleanConfig {
    /// segment.bytes: groups of segments are cleaned into one segment of at most this.
    pub segment_bytes: u64,
    pub index_interval_bytes: u32,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    /// max.decompressed.message.bytes: the most a batch is decompressed to.
    pub max_decompressed_bytes: usize,
}

impl CleanConfig {
    pub fn of(config: &TopicConfig) -> CleanConfig {
        CleanConfig {
            segment_bytes: config.segment_bytes,
            index_interval_bytes: config.index_interval_bytes,
            delete_retention_ms: config.delete_retention_ms,
            min_cleanable_dirty_ratio: config.min_cleanable_dirty_ratio,
            min_compaction_lag_ms: config.min_compaction_lag_ms,
            max_compaction_lag_ms: config.max_compaction_lag_ms,
            max_decompressed_bytes: crate::storage::max_decompressed(config),
        }
    }
}

/// A compacted topic refuses records without a key, as Kafka does (INVALID_RECORD, with Kafka's
/// message): the cleaner could never tell which record one supersedes.
pub fn check_keys(
    records: &bytes::Bytes,
    batches: &[ValidBatch],
    name: &TopicName,
    partition: i32,
    max_decompressed: usize,
) -> Result<(), StorageError> {
    for b in batches {
        let batch = records.slice(b.position..b.position + b.size());
        match records::every_record_keyed(&batch, max_decompressed) {
            Ok(true) => {}
            Ok(false) => {
                return Err(StorageError::InvalidRecord(format!(
                    "Compacted topic cannot accept message without key in topic partition {}-{partition}.",
                    name.topic
                )));
            }
            Err(e @ RecordsError::TooLarge { .. }) => {
                return Err(StorageError::InvalidRecord(format!("a batch of a compacted topic: {e}")));
            }
            Err(e) => return Err(StorageError::CorruptMessage(e.to_string())),
        }
    }
    Ok(())
}

/// The cleaner's map of key -> offset of its latest record (Kafka's `OffsetMap`). Kafka keeps a
/// fixed buffer of 16-byte MD5 hashes, so two keys whose hashes collide lose a record; this map
/// holds the keys themselves, so it is exact, and bounds its memory instead by mapping less per
/// pass.
/// What an entry costs beyond its key bytes (the box, the offset, the table's slot).
const ENTRY_OVERHEAD: usize = 56;

#[derive(Default)]
pub struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    bytes: usize,
}

impl OffsetMap {
    /// The offset of the latest record of `key` in the mapped part, if it has one there.
    pub fn latest(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    pub fn len(&self) -> usize {
        self.latest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }

    /// About the memory the map takes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn put(&mut self, key: &[u8], offset: i64) {
        if let Some(o) = self.latest.get_mut(key) {
            *o = (*o).max(offset);
        } else {
            self.bytes += key.len() + ENTRY_OVERHEAD;
            self.latest.insert(key.into(), offset);
        }
    }

    /// Map every keyed record of one stored batch, unless its records supersede nothing (see
    /// [`supersedes`]; `aborted`: the partition's aborted transactions); false when its records
    /// cannot be decoded (they then supersede nothing and are kept as they are).
    pub fn map_batch(&mut self, bytes: &[u8], max_decompressed: usize, aborted: &AbortedRanges) -> bool {
        let Ok(header) = BatchHeader::parse(bytes) else { return false };
        if !supersedes(&header, aborted) {
            return true;
        }
        let Ok(decoded) = records::decode(bytes, max_decompressed) else { return false };
        for r in &decoded.records {
            if let Some(key) = &r.key {
                self.put(key, header.base_offset + i64::from(r.offset_delta));
            }
        }
        true
    }
}

/// The aborted transactions of a partition, by producer, for the cleaner: which transactional
/// batches were aborted.
#[derive(Debug, Default)]
pub struct AbortedRanges {
    /// (first offset, marker offset) of each producer's aborted transactions, sorted.
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedRanges {
    pub fn new<'a>(aborted: impl IntoIterator<Item = &'a AbortedTxn>) -> AbortedRanges {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in aborted {
            by_producer.entry(t.producer_id).or_default().push((t.first_offset, t.last_offset));
        }
        for spans in by_producer.values_mut() {
            spans.sort_unstable();
        }
        AbortedRanges { by_producer }
    }

    /// Whether the batch of `producer_id` at `offset` belongs to one of its aborted
    /// transactions (its transactions on a partition never overlap).
    pub fn contains(&self, producer_id: i64, offset: i64) -> bool {
        let Some(spans) = self.by_producer.get(&producer_id) else { return false };
        let i = spans.partition_point(|(first, _)| *first <= offset);
        i.checked_sub(1).is_some_and(|i| offset <= spans[i].1)
    }
}

/// Whether the records of a stored batch may supersede earlier records of their keys (the
/// cleaner maps them): not a control batch's (its key is a transaction marker's, not a record
/// key), not an aborted transaction's (Kafka's cleaner skips those too). Only for batches below
/// the last stable offset, whose transactions are all decided.
pub fn supersedes(header: &BatchHeader, aborted: &AbortedRanges) -> bool {
    let aborted = header.is_transactional() && aborted.contains(header.producer_id, header.base_offset);
    !header.is_control() && !aborted
}

/// One stored batch as the [`MarkerPlanner`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct TxnView {
    pub base_offset: i64,
    pub producer_id: i64,
    pub transactional: bool,
    pub control: bool,
    /// It holds no record (an earlier pass, or the filter, removed them).
    pub empty: bool,
    pub delete_horizon: Option<i64>,
    /// It stays, whatever the plan (the engine's or the producer state's reason).
    pub keep: bool,
}

impl TxnView {
    /// The view of a stored batch with `header`.
    pub fn of(header: &BatchHeader, keep: bool) -> TxnView {
        TxnView {
            base_offset: header.base_offset,
            producer_id: header.producer_id,
            transactional: header.is_transactional() && header.producer_id >= 0,
            control: header.is_control(),
            empty: header.records_count == 0,
            delete_horizon: header.delete_horizon(),
            keep,
        }
    }
}

/// Plans which transaction markers a pass stamps with a delete horizon and which it drops, with
/// their transactions' batches (see the module docs): fed every batch of the part a pass
/// cleans, in offset order.
#[derive(Debug)]
pub struct MarkerPlanner {
    now_ms: i64,
    plan: MarkerPlan,
    /// Per producer, the batches of its transaction since its last marker, and whether they
    /// are all gone (no record, nothing that must stay).
    open: HashMap<i64, (Vec<i64>, bool)>,
    /// Producers whose marker was seen: a transaction after it began in the cleaned part.
    ended: HashSet<i64>,
    /// Per producer, its last transaction that may go (marker and batches): it goes once a
    /// later marker of the producer shows it was not the last.
    expired: HashMap<i64, Vec<i64>>,
}

/// What [`MarkerPlanner`] decided.
#[derive(Debug, Default)]
pub struct MarkerPlan {
    /// Base offsets of the batches and markers to drop.
    drop: HashSet<i64>,
    /// Base offsets of the markers to stamp with `horizon`.
    stamp: HashSet<i64>,
    horizon: i64,
}

impl MarkerPlanner {
    pub fn new(now_ms: i64, delete_retention_ms: i64) -> MarkerPlanner {
        MarkerPlanner {
            now_ms,
            plan: MarkerPlan {
                horizon: now_ms.saturating_add(delete_retention_ms.max(0)),
                ..MarkerPlan::default()
            },
            open: HashMap::new(),
            ended: HashSet::new(),
            expired: HashMap::new(),
        }
    }

    pub fn see(&mut self, v: TxnView) {
        if !v.transactional {
            return;
        }
        let pid = v.producer_id;
        if !v.control {
            let (batches, gone) = self.open.entry(pid).or_insert_with(|| (Vec::new(), true));
            batches.push(v.base_offset);
            *gone &= v.empty && !v.keep;
            return;
        }
        // A later marker: the producer's transaction before may go.
        if let Some(gone) = self.expired.remove(&pid) {
            self.plan.drop.extend(gone);
        }
        // No batch since the producer's last marker: a marker of nothing (its partition was
        // added and never written, or a recovery wrote it again), which may go as well.
        let (mut batches, gone) = self.open.remove(&pid).unwrap_or((Vec::new(), true));
        let began_here = !self.ended.insert(pid);
        if !gone || !began_here || v.keep {
            return;
        }
        match v.delete_horizon {
            None => {
                self.plan.stamp.insert(v.base_offset);
            }
            Some(h) if self.now_ms >= h => {
                batches.push(v.base_offset);
                self.expired.insert(pid, batches);
            }
            Some(_) => {}
        }
    }

    pub fn finish(self) -> MarkerPlan {
        self.plan
    }
}

impl MarkerPlan {
    /// Whether the plan drops the batch at `offset`.
    pub fn drops(&self, offset: i64) -> bool {
        self.drop.contains(&offset)
    }

    /// Whether the plan changes anything.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.stamp.is_empty()
    }

    /// What the plan does with the stored batch `bytes`; None: nothing (the filter decides).
    pub fn apply(&self, bytes: &[u8], stats: &mut CleanStats) -> Option<Output> {
        if self.is_empty() {
            return None;
        }
        let header = BatchHeader::parse(bytes).ok()?;
        if self.drop.contains(&header.base_offset) {
            let records = u64::try_from(header.records_count).unwrap_or(0);
            stats.records_read += records;
            stats.records_removed += records;
            stats.bytes_read += bytes.len() as u64;
            return Some(Output::Dropped);
        }
        if header.is_control() && self.stamp.contains(&header.base_offset) {
            stats.bytes_read += bytes.len() as u64;
            return Some(match stamp_marker(bytes, &header, self.horizon) {
                Ok(stamped) => Output::Rewritten(stamped),
                Err(e) => {
                    tracing::warn!(offset = header.base_offset, error = %e, "the cleaner cannot stamp this marker; it is kept as it is");
                    Output::Unchanged
                }
            });
        }
        None
    }
}

/// The marker `bytes` (a control batch) again, with delete horizon `horizon` (KIP-534: the
/// attribute bit and the base timestamp; its record keeps its timestamp).
fn stamp_marker(bytes: &[u8], header: &BatchHeader, horizon: i64) -> Result<Vec<u8>, RecordsError> {
    let decoded = records::decode(bytes, bytes.len().max(1 << 10))?;
    let mut out =
        records::encode_rewrite(&decoded.records, &EncodeSpec::like(header, 0), Some(horizon), true)?;
    let attributes = i16::from_be_bytes([out[21], out[22]]) | crate::record::batch::CONTROL;
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&out[crate::record::batch::CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    // Outside the CRC: the stored base offset and the producer's leader epoch.
    out[0..8].copy_from_slice(&header.base_offset.to_be_bytes());
    out[12..16].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
    Ok(out)
}

/// What the filter does with one batch.
pub enum Output {
    /// Copied as it is.
    Unchanged,
    Rewritten(Vec<u8>),
    Dropped,
}

/// What every batch of a pass is filtered with.
pub struct Filter<'a> {
    pub map: &'a OffsetMap,
    /// (producer id, base offset) of the batches producer state depends on.
    pub producer_batches: &'a HashSet<(i64, i64)>,
    /// The aborted transactions: their records are removed.
    pub aborted: &'a AbortedRanges,
    pub config: &'a CleanConfig,
    pub now_ms: i64,
    /// The markers this pass stamps or drops, with their transactions' batches.
    pub markers: &'a MarkerPlan,
}

impl Filter<'_> {
    /// Filter one stored batch; `keep_empty`: keep it as an empty batch if all its records go
    /// (a transactional batch always is, unless the marker plan drops it).
    pub fn batch(&self, bytes: &[u8], keep_empty: bool, stats: &mut CleanStats) -> Output {
        if let Some(output) = self.markers.apply(bytes, stats) {
            return output;
        }
        stats.bytes_read += bytes.len() as u64;
        let Ok(header) = BatchHeader::parse(bytes) else { return Output::Unchanged };
        if header.is_control() {
            // A transaction marker: its transaction's state is rebuilt from it at open.
            return Output::Unchanged;
        }
        // The first batch of a transaction is where it starts (its LSO, its aborted range):
        // never dropped, so that state comes out the same.
        let keep_empty = keep_empty || header.is_transactional();
        let aborted =
            header.is_transactional() && self.aborted.contains(header.producer_id, header.base_offset);
        let decoded = match records::decode(bytes, self.config.max_decompressed_bytes) {
            Ok(d) => d,
            Err(e) => {
                stats.records_read += u64::try_from(header.records_count).unwrap_or(0);
                tracing::warn!(offset = header.base_offset, error = %e, "the cleaner cannot read this batch's records; it is kept as it is");
                return Output::Unchanged;
            }
        };
        let read = decoded.records.len();
        stats.records_read += read as u64;
        let horizon = header.delete_horizon();
        let tombstones_expired = horizon.is_some_and(|h| self.now_ms >= h);
        let kept: Vec<Record> = decoded
            .records
            .into_iter()
            .filter(|r| {
                if aborted {
                    return false;
                }
                let Some(key) = &r.key else { return false };
                let offset = header.base_offset + i64::from(r.offset_delta);
                let latest = self.map.latest(key).is_none_or(|o| offset >= o);
                latest && (r.value.is_some() || !tombstones_expired)
            })
            .collect();
        stats.records_removed += (read - kept.len()) as u64;
        let producer_batch = header.producer_id >= 0
            && self.producer_batches.contains(&(header.producer_id, header.base_offset));
        // Also a batch an earlier clean emptied, once nothing needs it any more.
        if kept.is_empty() && !(keep_empty || producer_batch) {
            return Output::Dropped;
        }
        let needs_horizon = horizon.is_none() && kept.iter().any(|r| r.value.is_none());
        if kept.len() == read && !needs_horizon {
            return Output::Unchanged;
        }
        let spec = EncodeSpec::like(&header, header.compression());
        let horizon = if needs_horizon {
            Some(self.now_ms.saturating_add(self.config.delete_retention_ms))
        } else {
            horizon
        };
        let horizon = if kept.is_empty() { None } else { horizon };
        match records::encode_rewrite(&kept, &spec, horizon, header.is_transactional()) {
            Ok(mut rewritten) => {
                // Outside the CRC: the stored base offset and the producer's leader epoch.
                rewritten[0..8].copy_from_slice(&header.base_offset.to_be_bytes());
                rewritten[12..16].copy_from_slice(&header.partition_leader_epoch.to_be_bytes());
                Output::Rewritten(rewritten)
            }
            Err(e) => {
                stats.records_removed -= (read - kept.len()) as u64;
                tracing::warn!(offset = header.base_offset, error = %e, "the cleaner cannot rewrite this batch; it is kept as it is");
                Output::Unchanged
            }
        }
    }
}
