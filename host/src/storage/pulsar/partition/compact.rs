//! Compaction of a partition topic (`cleanup.policy=compact`): Kafka's log cleaner, done by the
//! partition's owner over an append-only Pulsar topic.
//!
//! Pulsar cannot rewrite a topic in place, and its own compaction works on message keys (entry
//! format `kafka` holds a whole batch per message, and it drops tombstones at once). So a pass
//! rewrites the partition's live part at the end of the topic instead:
//! 1. plan as Kafka's cleaner does, over the index: the dirty part runs from where the last
//!    pass ended to the first batch younger than min.compaction.lag.ms (or the high
//!    watermark); clean when its share of the bytes is above min.cleanable.dirty.ratio or a
//!    dirty batch is older than max.compaction.lag.ms;
//! 2. without the writer lock (appends and fetches go on): read the dirty part and map each
//!    key's latest offset (`storage::compaction::OffsetMap`), then read every batch below the
//!    plan's high watermark and filter it with `storage::compaction::Filter` up to the end of
//!    the dirty part (offsets kept; an idempotent producer's last batches and the last batch
//!    kept, emptied if need be), keeping the result in memory;
//! 3. under the writer lock (appends wait for the sends only): add what was appended meanwhile,
//!    unchanged, and append a fence marker of the writer's own epoch at the high watermark H
//!    (recovery can start there once Pulsar has deleted what went before), every kept batch as
//!    a *copy* (`guise.copy`), and the commit marker (`guise.compacted` = H), with nothing between
//!    them, so that offset order stays message order; recovery replaces the index with the
//!    copies when it reads the commit, and ignores copies that anything else interrupts (a pass
//!    that died half way: the next writer's fence);
//! 4. switch the index to the copies, and acknowledge every message before the fence on the
//!    `guise-retention` subscription, so Pulsar deletes the ledgers that hold only those: what a
//!    restart or a takeover reads no longer grows with the partition's history.
//!
//! A pass thus writes the whole live part again, as a Kafka pass rewrites every segment from the
//! log start; the dirty ratio bounds how often (min.cleanable.dirty.ratio 0.5: at most once per
//! as many bytes appended as are live). Retention and DeleteRecords wait for the pass to end
//! (they skip that round); a writer that changes meanwhile (a failed send, a takeover) ends it.

use super::super::index::{IndexEntry, MsgId, Txn};
use super::super::props::{self, Kind, Props};
use super::super::reader::Follower;
use super::{Partition, Shared, batch_messages, message, read_entry, stored_format};
use crate::record::batch::BatchHeader;
use crate::storage::compaction::{
    AbortedRanges, CleanConfig, Filter, MarkerPlan, MarkerPlanner, OffsetMap, Output, TxnView,
};
use crate::storage::{CleanStats, EntryFormat, StorageError};
use ::pulsar::producer::Message;
use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// Copies sent per round of receipts.
const CHUNK_MESSAGES: usize = 1000;
const CHUNK_BYTES: usize = 4 << 20;
/// Batches kept per idempotent producer (its state is rebuilt from their headers at open), as
/// the embedded cleaner keeps them.
const PRODUCER_BATCHES: usize = 5;
/// Messages a pass's reader lets the broker push ahead.
const PREFETCH: u32 = 500;

/// What a pass will clean (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(in crate::storage::pulsar) struct Plan {
    pub first_dirty: i64,
    pub first_uncleanable: i64,
    pub clean_bytes: u64,
    pub cleanable_bytes: u64,
    pub overdue: bool,
}

impl Plan {
    fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.cleanable_bytes;
        if total == 0 { 0.0 } else { self.cleanable_bytes as f64 / total as f64 }
    }
}

/// Whether and what to clean (Kafka's `LogCleanerManager` rules over the index), up to
/// `stable` at most: the last stable offset (the high watermark without open transactions).
pub(in crate::storage::pulsar) fn plan(
    entries: &[IndexEntry],
    cleaned_to: i64,
    stable: i64,
    config: &CleanConfig,
    now_ms: i64,
) -> Option<Plan> {
    let first_dirty = cleaned_to;
    let mut first_uncleanable = stable;
    if config.min_compaction_lag_ms > 0 {
        let young = now_ms.saturating_sub(config.min_compaction_lag_ms);
        if let Some(e) = entries.iter().find(|e| e.base >= first_dirty && e.max_timestamp > young) {
            first_uncleanable = first_uncleanable.min(e.base);
        }
    }
    let first_uncleanable = first_uncleanable.max(first_dirty);
    // A batch counts at least a byte: in format `pulsar` a tombstone's message has no payload.
    let size = |e: &IndexEntry| e.bytes.max(1);
    let clean_bytes = entries.iter().filter(|e| e.base < first_dirty).map(size).sum();
    let dirty = || entries.iter().filter(|e| e.base >= first_dirty && e.base < first_uncleanable);
    let cleanable_bytes = dirty().map(size).sum();
    let overdue_before = now_ms.saturating_sub(config.max_compaction_lag_ms.max(0));
    let overdue =
        dirty().map(|e| e.max_timestamp).filter(|&t| t > 0).min().is_some_and(|t| t < overdue_before);
    let plan = Plan { first_dirty, first_uncleanable, clean_bytes, cleanable_bytes, overdue };
    if plan.cleanable_bytes == 0 {
        return None;
    }
    (plan.overdue || plan.ratio() > config.min_cleanable_dirty_ratio).then_some(plan)
}

/// The (producer id, base offset) of each idempotent producer's last batches.
fn producer_batches(entries: &[IndexEntry]) -> HashSet<(i64, i64)> {
    let mut last: HashMap<i64, Vec<i64>> = HashMap::new();
    for e in entries {
        // The batches the producer state remembers: sequenced ones (not markers, not the
        // host's unsequenced batches in a transaction).
        if matches!(e.txn, Txn::Marker(_)) {
            continue;
        }
        if let Some(p) = e.producer.filter(|p| p.base_sequence >= 0) {
            let bases = last.entry(p.id).or_default();
            bases.push(e.base);
            if bases.len() > PRODUCER_BATCHES {
                bases.remove(0);
            }
        }
    }
    last.into_iter().flat_map(|(pid, bases)| bases.into_iter().map(move |b| (pid, b))).collect()
}

/// The markers of `kept` (the filtered batches, in offset order) below `end` that the pass
/// stamps or drops, with their transactions' batches (`storage::compaction::MarkerPlanner`,
/// here after the filter: what it emptied is empty already); the last batch and the
/// producers' remembered ones (`producer_batches`) stay. Also the plan, whose dropped markers'
/// aborted transactions the partition forgets.
fn drop_markers(
    kept: Vec<Vec<u8>>,
    end: i64,
    producer_batches: &HashSet<(i64, i64)>,
    config: &CleanConfig,
    now_ms: i64,
    stats: &mut CleanStats,
) -> (Vec<Vec<u8>>, MarkerPlan) {
    let mut planner = MarkerPlanner::new(now_ms, config.delete_retention_ms);
    for (i, bytes) in kept.iter().enumerate() {
        let Ok(h) = BatchHeader::parse(bytes) else { continue };
        if h.base_offset >= end {
            break;
        }
        let keep = i + 1 == kept.len() || producer_batches.contains(&(h.producer_id, h.base_offset));
        planner.see(TxnView::of(&h, keep));
    }
    let plan = planner.finish();
    if plan.is_empty() {
        return (kept, plan);
    }
    let mut counted = CleanStats::default();
    let out = kept
        .into_iter()
        .filter_map(|bytes| match plan.apply(&bytes, &mut counted) {
            Some(Output::Dropped) => None,
            Some(Output::Rewritten(b)) => Some(b),
            _ => Some(bytes),
        })
        .collect();
    // Read and counted once already, by the filter.
    stats.records_removed += counted.records_removed;
    (out, plan)
}

/// The copies not sent yet, with the entries they make.
#[derive(Default)]
struct Chunk {
    messages: Vec<Message>,
    bytes: usize,
    /// Per batch: its header, its part in a transaction, its first message in `messages`, how
    /// many it takes.
    batches: Vec<(BatchHeader, Txn, usize, usize)>,
}

/// Marks a pass as running (retention and DeleteRecords wait for the next round meanwhile).
struct Running<'a>(&'a Partition);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.write().compacting = false;
    }
}

impl Partition {
    /// One compaction pass (see the module docs) with `config` at `now_ms`; None when the
    /// partition is not open here or did not need it.
    pub async fn compact(
        &self,
        shared: &Shared,
        config: &CleanConfig,
        format: EntryFormat,
        now_ms: i64,
    ) -> Result<Option<CleanStats>, StorageError> {
        if !matches!(self.check_usable(), Ok(true)) {
            return Ok(None);
        }
        let (entries, hwm, epoch, plan, aborted) = {
            let guard = self.writer.lock().await;
            let Some(w) = guard.as_ref() else { return Ok(None) };
            let mut s = self.state.write();
            if s.compacting {
                return Ok(None);
            }
            let entries: Vec<IndexEntry> = s.entries.iter().copied().collect();
            let dirty_from = s.cleaned_to.max(s.log_start);
            // Never past the first unstable offset: what is undecided is not cleaned.
            let stable = s.producers.last_stable_offset(s.log_start, s.high_watermark);
            let Some(plan) = plan(&entries, dirty_from, stable, config, now_ms) else {
                return Ok(None);
            };
            s.compacting = true;
            (entries, s.high_watermark, w.epoch, plan, AbortedRanges::new(s.producers.aborted()))
        };
        let _running = Running(self);
        let started = Instant::now();
        let mut stats = CleanStats { partitions: 1, ..CleanStats::default() };

        // Without the writer lock: map the dirty part's keys, then filter everything below the
        // high watermark of the plan.
        let mut map = OffsetMap::default();
        let first = entries.partition_point(|e| e.base < plan.first_dirty);
        let mut reader = self.pass_reader(shared, &entries, first).await?;
        for e in entries[first..].iter().take_while(|e| e.base < plan.first_uncleanable) {
            let bytes = read_entry(&mut reader, e).await?;
            // An aborted transaction's records supersede nothing.
            if !map.map_batch(&bytes, config.max_decompressed_bytes, &aborted) {
                tracing::warn!(topic = %self.topic, offset = e.base, "the cleaner cannot read this batch's records; they are kept as they are");
            }
        }
        drop(reader);
        let keep = producer_batches(&entries);
        let none = MarkerPlan::default();
        let filter =
            Filter { map: &map, producer_batches: &keep, aborted: &aborted, config, now_ms, markers: &none };
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let mut reader = self.pass_reader(shared, &entries, 0).await?;
        for (i, e) in entries.iter().enumerate() {
            let bytes = read_entry(&mut reader, e).await?;
            let output = if e.base < plan.first_uncleanable {
                // The last batch stays, emptied if need be: the copies end where the log does.
                filter.batch(&bytes, i + 1 == entries.len(), &mut stats)
            } else {
                stats.bytes_read += bytes.len() as u64;
                Output::Unchanged
            };
            match output {
                Output::Unchanged => kept.push(bytes.to_vec()),
                Output::Rewritten(b) => kept.push(b),
                Output::Dropped => {}
            }
        }
        drop(reader);
        let (mut kept, markers) =
            drop_markers(kept, plan.first_uncleanable, &keep, config, now_ms, &mut stats);
        if !markers.is_empty() {
            // Their batches are empty already: reads of the old messages lose nothing.
            self.state.write().producers.forget_aborted(|offset| markers.drops(offset));
        }

        // Under the writer lock: what was appended meanwhile, unchanged, after the rest; then the
        // fence, the copies and the commit, with nothing between them.
        let mut guard = self.writer.lock().await;
        if guard.as_ref().is_none_or(|w| w.epoch != epoch) {
            return Err(StorageError::Unavailable(format!(
                "{}: the writer changed during a compaction; it is abandoned",
                self.topic
            )));
        }
        let (appended, log_start, end) = {
            let s = self.state.read();
            let appended: Vec<IndexEntry> = s.entries.iter().filter(|e| e.base >= hwm).copied().collect();
            (appended, s.log_start, s.high_watermark)
        };
        if !appended.is_empty() {
            let all: Vec<IndexEntry> = entries.iter().chain(&appended).copied().collect();
            let mut reader = self.pass_reader(shared, &all, entries.len()).await?;
            for e in &appended {
                let bytes = read_entry(&mut reader, e).await?;
                stats.bytes_read += bytes.len() as u64;
                kept.push(bytes.to_vec());
            }
        }
        let w = guard.as_mut().expect("checked");
        let obsolete = w.last;
        let fence = Props {
            topic_id: self.topic_id,
            epoch,
            kind: Kind::Fence { next: end, start: log_start },
            copy: false,
        };
        if let Err(e) = self.send_checked(shared, w, vec![message(Vec::new(), &fence)]).await {
            return Err(self.failed(&mut guard, "compacting", e).await);
        }
        let mut copied: Vec<IndexEntry> = Vec::with_capacity(kept.len());
        let mut chunk = Chunk::default();
        let count = kept.len();
        for (i, bytes) in kept.into_iter().enumerate() {
            stats.bytes_written += bytes.len() as u64;
            let header =
                BatchHeader::parse(&bytes).map_err(|e| StorageError::CorruptMessage(e.to_string()))?;
            let txn = Txn::of(&header, &bytes);
            let stored = stored_format(format, &header);
            let messages =
                batch_messages(stored, bytes, &header, self.topic_id, epoch, shared.max_payload, true)?;
            chunk.batches.push((header, txn, chunk.messages.len(), messages.len()));
            chunk.bytes += messages.iter().map(|m| m.payload.len()).sum::<usize>();
            chunk.messages.extend(messages);
            if chunk.messages.len() >= CHUNK_MESSAGES || chunk.bytes >= CHUNK_BYTES || i + 1 == count {
                let w = guard.as_mut().expect("checked");
                match self.send_copies(shared, w, std::mem::take(&mut chunk), format).await {
                    Ok(entries) => copied.extend(entries),
                    Err(e) => return Err(self.failed(&mut guard, "compacting", e).await),
                }
            }
        }
        let commit = Props {
            topic_id: self.topic_id,
            epoch,
            kind: Kind::Compacted { upto: end, start: log_start },
            copy: false,
        };
        let w = guard.as_mut().expect("checked");
        let mut commit = message(Vec::new(), &commit);
        // The history that held the last ingress mark goes: the commit keeps it.
        if let Some(mark) = self.state.read().ingress {
            commit.properties.insert(props::INGRESS.to_string(), mark.to_string());
        }
        if let Err(e) = self.send_checked(shared, w, vec![commit]).await {
            return Err(self.failed(&mut guard, "committing a compaction", e).await);
        }
        let batches_after = copied.len();
        {
            let mut s = self.state.write();
            s.entries = copied.into();
            s.cleaned_to = plan.first_uncleanable;
            // The tail cache holds batches as appended, not as compacted.
            s.cache.clear();
            s.cache_bytes = 0;
        }
        // Fetch readers stand on the old messages: the next fetch opens one on the copies.
        *self.cursor.lock().await = None;
        let w = guard.as_mut().expect("checked");
        if let Some(retention) = w.retention.as_mut() {
            retention.acknowledge_to(&self.topic, obsolete).await;
        }
        tracing::info!(
            topic = %self.topic,
            dirty_from = plan.first_dirty,
            cleaned_to = plan.first_uncleanable,
            dirty_ratio = plan.ratio(),
            overdue = plan.overdue,
            keys = map.len(),
            batches_before = entries.len() + appended.len(),
            batches_after,
            bytes_read = stats.bytes_read,
            bytes_written = stats.bytes_written,
            records_read = stats.records_read,
            records_removed = stats.records_removed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "compacted a partition"
        );
        Ok(Some(stats))
    }

    /// A reader of the messages of `entries[from..]`, standing before the first.
    async fn pass_reader(
        &self,
        shared: &Shared,
        entries: &[IndexEntry],
        from: usize,
    ) -> Result<Follower, StorageError> {
        let previous: Option<MsgId> = from.checked_sub(1).map(|p| entries[p].id);
        Follower::open(&shared.bridge.client, shared.bridge.handle(), &self.topic, previous, PREFETCH).await
    }

    /// Send one chunk of copies; the index entries they make.
    async fn send_copies(
        &self,
        shared: &Shared,
        w: &mut super::Writer,
        chunk: Chunk,
        format: EntryFormat,
    ) -> Result<Vec<IndexEntry>, StorageError> {
        let sizes: Vec<u64> = chunk.messages.iter().map(|m| m.payload.len() as u64).collect();
        let ids = self.send_checked(shared, w, chunk.messages).await?;
        Ok(chunk
            .batches
            .iter()
            .map(|(h, txn, first, count)| {
                super::entry_of(h, *txn, &ids, &sizes, *first, *count, format, w.epoch)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::TopicConfig;

    fn entry(base: i64, last: i64, bytes: u64, ts: i64) -> IndexEntry {
        IndexEntry {
            base,
            last,
            id: MsgId { ledger: 1, entry: base as u64 },
            epoch: 1,
            messages: 1,
            bytes,
            max_timestamp: ts,
            compressed: false,
            producer: None,
            txn: Txn::None,
        }
    }

    fn config(pairs: &[(&str, &str)]) -> CleanConfig {
        let defaults = crate::storage::LogDefaults::default();
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CleanConfig::of(&TopicConfig::from_pairs(&defaults, &pairs).unwrap())
    }

    #[test]
    fn a_pass_runs_when_the_dirty_share_passes_the_ratio() {
        let c = config(&[("cleanup.policy", "compact")]);
        let now = 1_000_000;
        let entries = [entry(0, 9, 100, 10), entry(10, 19, 100, 20), entry(20, 29, 100, 30)];
        // Everything dirty.
        let p = plan(&entries, 0, 30, &c, now).unwrap();
        assert_eq!((p.first_dirty, p.first_uncleanable, p.cleanable_bytes), (0, 30, 300));
        // One third dirty: below the default 0.5.
        assert_eq!(plan(&entries, 20, 30, &c, now), None);
        // Nothing dirty.
        assert_eq!(plan(&entries, 30, 30, &c, now), None);
        // A tombstone alone (format pulsar: no payload bytes) is dirty too.
        let tombstone = [entry(0, 9, 100, 10), entry(10, 10, 0, 20)];
        assert_eq!(
            plan(&tombstone, 10, 11, &config(&[("min.cleanable.dirty.ratio", "0.001")]), now)
                .map(|p| p.cleanable_bytes),
            Some(1)
        );
        // Records younger than min.compaction.lag.ms end the cleanable part.
        let lag = config(&[("cleanup.policy", "compact"), ("min.compaction.lag.ms", "999975")]);
        let p = plan(&entries, 0, 30, &lag, now).unwrap();
        assert_eq!((p.first_uncleanable, p.cleanable_bytes), (20, 200));
        // max.compaction.lag.ms cleans a small dirty part.
        let overdue = config(&[("cleanup.policy", "compact"), ("max.compaction.lag.ms", "1000")]);
        assert!(plan(&entries, 20, 30, &overdue, now).unwrap().overdue);
    }

    #[test]
    fn each_idempotent_producers_last_batches_are_kept() {
        let mut entries: Vec<IndexEntry> = (0..8).map(|i| entry(i, i, 10, 0)).collect();
        for e in entries.iter_mut() {
            e.producer = Some(super::super::super::index::ProducerInfo {
                id: 7,
                epoch: 0,
                base_sequence: e.base as i32,
            });
        }
        entries[0].producer =
            Some(super::super::super::index::ProducerInfo { id: 8, epoch: 0, base_sequence: 0 });
        let kept = producer_batches(&entries);
        let mut seven: Vec<i64> = kept.iter().filter(|(p, _)| *p == 7).map(|(_, b)| *b).collect();
        seven.sort();
        assert_eq!(seven, [3, 4, 5, 6, 7]);
        assert!(kept.contains(&(8, 0)));
    }

    /// A batch as stored at `offset`: `bytes` with its base offset set.
    fn at(offset: i64, mut bytes: Vec<u8>) -> Vec<u8> {
        bytes[0..8].copy_from_slice(&offset.to_be_bytes());
        bytes
    }

    #[test]
    fn markers_go_with_their_emptied_transactions_after_delete_retention() {
        use crate::record::batch::{self, ControlType};
        use crate::record::records::{self, EncodeSpec};
        let c = config(&[("cleanup.policy", "compact"), ("delete.retention.ms", "1000")]);
        // Transactions of producer 5 as the filter leaves them: the records of the second gone.
        let data = |offset: i64, empty: bool| {
            let spec = EncodeSpec {
                producer_id: 5,
                producer_epoch: 0,
                base_sequence: offset as i32,
                offset_span: Some(0),
                ..EncodeSpec::plain(0, 1)
            };
            let record = records::Record {
                key: Some(bytes::Bytes::from_static(b"k")),
                value: None,
                headers: vec![],
                timestamp: 1,
                offset_delta: 0,
            };
            let kept = if empty { vec![] } else { vec![record] };
            at(offset, records::encode_rewrite(&kept, &spec, None, true).unwrap())
        };
        let marker = |offset: i64, commit: bool| at(offset, batch::end_txn_marker(5, 0, commit, 0, 1));
        let kept = vec![
            data(0, false),
            marker(1, true),
            data(2, true),
            marker(3, false),
            data(4, false),
            marker(5, true),
            marker(6, false), // of nothing (a partition added and never written)
            data(7, false),
            marker(8, true),
            data(9, false),
        ];
        let none = HashSet::new();
        let offsets = |kept: &[Vec<u8>]| -> Vec<i64> {
            kept.iter().map(|b| BatchHeader::parse(b).unwrap().base_offset).collect()
        };
        let mut stats = CleanStats::default();
        // Stamped first; before its horizon, it stays.
        let all: Vec<i64> = (0..10).collect();
        let (kept, _) = drop_markers(kept, 10, &none, &c, 10_000, &mut stats);
        assert_eq!(offsets(&kept), all);
        assert!(
            BatchHeader::parse(&kept[6]).unwrap().delete_horizon().is_some(),
            "the marker of nothing too"
        );
        let stamped = &kept[3];
        assert_eq!(BatchHeader::parse(stamped).unwrap().delete_horizon(), Some(11_000));
        assert_eq!(batch::control_type(stamped), Some(ControlType::Abort));
        assert!(batch::validate_with(stamped, u32::MAX, batch::Counts::Exact).is_ok(), "its CRC holds");
        let (kept, _) = drop_markers(kept, 10, &none, &c, 10_999, &mut stats);
        assert_eq!(offsets(&kept), all);
        // Past it, the marker goes with its batch; not beyond the cleaned part, and not when
        // the producer's state remembers the batch.
        let remembered = HashSet::from([(5, 2)]);
        let (same, _) = drop_markers(kept.clone(), 10, &remembered, &c, 11_000, &mut stats);
        assert_eq!(offsets(&same), [0, 1, 2, 3, 4, 5, 7, 8, 9], "a remembered batch keeps its transaction");
        let (same, _) = drop_markers(kept.clone(), 5, &none, &c, 11_000, &mut stats);
        assert_eq!(offsets(&same), all, "its later marker is not cleaned");
        let (kept, plan) = drop_markers(kept, 10, &none, &c, 11_000, &mut stats);
        assert_eq!(offsets(&kept), [0, 1, 4, 5, 7, 8, 9]);
        assert!(plan.drops(3) && plan.drops(2) && plan.drops(6) && !plan.drops(5));
    }
}
