//! Idempotent producers: the sequence checks an append makes, as Kafka's `ProducerStateManager`
//! and `ProducerAppendInfo` make them for non-transactional producers, and the host-wide latest
//! epoch of each producer id. Backend-neutral: a backend keeps one [`ProducerStateTable`] per
//! partition, checks every append against it under the partition's append lock (so the checks
//! are atomic with offset assignment), commits the outcome only once the batches are stored, and
//! rebuilds the table at open by replaying the stored batch headers ([`ProducerStateTable::replay`]).
//!
//! Rules, for a batch with producer id >= 0 (a batch with producer id -1 is not checked):
//! * a batch with the same epoch and the same first and last sequence as one of the last
//!   [`BATCHES_REMEMBERED`] batches of that producer on the partition is a duplicate: nothing is
//!   appended and the original offsets are returned (the produce succeeds, as in Kafka);
//! * an epoch below the partition's, or below the latest epoch known host-wide for the producer
//!   id ([`ProducerEpochs`]): INVALID_PRODUCER_EPOCH (47);
//! * an epoch above the partition's: the base sequence must be 0 (else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER, 45), and the producer's state restarts at that epoch;
//! * the same epoch: the base sequence must follow the last one (int32 wrap-around: after
//!   i32::MAX comes 0), else OUT_OF_ORDER_SEQUENCE_NUMBER;
//! * a producer the partition has no state for: base sequence 0, else UNKNOWN_PRODUCER_ID (59).
//!
//! Transactional and control batches are refused (transactions are not supported).
//!
//! Not done: Kafka's producer-id expiration (`producer.id.expiration.ms`). A producer's state on
//! a partition lives until retention deletes the segments holding its batches (then it is
//! evicted, as Kafka evicts producers below the log start offset) or until the next restart no
//! longer finds its batches; a few dozen bytes per producer and partition.

use crate::record::batch::BatchHeader;
use crate::storage::StorageError;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer and partition for duplicate detection: Kafka's bound, which
/// is also the most in-flight requests an idempotent client keeps per connection.
pub const BATCHES_REMEMBERED: usize = 5;

/// The highest epoch InitProducerId hands out; beyond it, a new producer id (Kafka: an epoch of
/// `i16::MAX - 1` or more is exhausted).
pub const MAX_EPOCH: i16 = i16::MAX - 1;

/// One stored batch of a producer, as remembered for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
    pub last_offset_delta: i32,
    pub max_timestamp: i64,
}

impl BatchMeta {
    fn of(header: &BatchHeader) -> BatchMeta {
        BatchMeta {
            first_seq: header.base_sequence,
            last_seq: last_sequence(header),
            base_offset: header.base_offset,
            last_offset_delta: header.last_offset_delta,
            max_timestamp: header.max_timestamp,
        }
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }
}

/// What a partition knows of one producer: its epoch and its last batches at that epoch, oldest
/// first (never empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    batches: VecDeque<BatchMeta>,
}

impl ProducerEntry {
    fn new(epoch: i16, first: BatchMeta) -> ProducerEntry {
        let mut batches = VecDeque::with_capacity(BATCHES_REMEMBERED);
        batches.push_back(first);
        ProducerEntry { epoch, batches }
    }

    /// The remembered batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &BatchMeta> {
        self.batches.iter()
    }

    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, BatchMeta::last_offset)
    }

    fn duplicate_of(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMeta> {
        if epoch != self.epoch {
            return None;
        }
        self.batches.iter().find(|b| b.first_seq == first_seq && b.last_seq == last_seq).copied()
    }

    fn push(&mut self, meta: BatchMeta) {
        if self.batches.len() == BATCHES_REMEMBERED {
            self.batches.pop_front();
        }
        self.batches.push_back(meta);
    }
}

/// The last sequence of a batch: baseSequence + lastOffsetDelta, wrapping past i32::MAX to 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(header: &BatchHeader) -> i32 {
    increment_sequence(header.base_sequence, header.last_offset_delta)
}

fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    if increment > 0 && sequence > i32::MAX - increment {
        // Only reached for sequence > 0: the result lies in [0, increment).
        increment - (i32::MAX - sequence) - 1
    } else {
        sequence.wrapping_add(increment)
    }
}

/// Whether `next` is the sequence right after `last` (after i32::MAX comes 0).
fn in_sequence(last: i32, next: i32) -> bool {
    i64::from(next) == i64::from(last) + 1 || (next == 0 && last == i32::MAX)
}

/// The outcome of checking an append.
#[derive(Debug)]
pub enum Checked {
    /// Store the batches; once stored, [`ProducerStateTable::commit`] this.
    Append(Pending),
    /// Every producer batch of the append is already stored: append nothing and answer with
    /// the original offsets (of the first and last batch of the append).
    Duplicate { base_offset: i64, last_offset: i64 },
}

/// Producer state an append will leave behind once its batches are stored.
#[derive(Debug, Default)]
pub struct Pending {
    entries: Vec<(i64, ProducerEntry)>,
}

impl Pending {
    /// (producer id, epoch) of every producer the append touches.
    pub fn epochs(&self) -> impl Iterator<Item = (i64, i16)> + '_ {
        self.entries.iter().map(|(pid, e)| (*pid, e.epoch))
    }
}

/// The producer state of one partition, keyed by producer id.
#[derive(Debug, Default)]
pub struct ProducerStateTable {
    entries: HashMap<i64, ProducerEntry>,
}

impl ProducerStateTable {
    pub fn new() -> ProducerStateTable {
        ProducerStateTable::default()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.entries.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every producer known here, by producer id, as DescribeProducers reports them.
    pub fn snapshot(&self) -> Vec<crate::storage::ProducerSnapshot> {
        let mut all: Vec<_> = self
            .entries
            .iter()
            .map(|(pid, e)| crate::storage::ProducerSnapshot {
                producer_id: *pid,
                epoch: e.epoch,
                last_sequence: e.last_seq(),
                last_timestamp: e.batches.back().map_or(-1, |b| b.max_timestamp),
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// (producer id, epoch) of every producer known here.
    pub fn epochs(&self) -> impl Iterator<Item = (i64, i16)> + '_ {
        self.entries.iter().map(|(pid, e)| (*pid, e.epoch))
    }

    /// Check the batches of one append, in order, each against the state as the ones before it
    /// leave it. `headers` carry the base offsets the batches will get; `latest_epoch` is the
    /// latest epoch known host-wide for a producer id. Nothing changes here: an accepted append
    /// is [`commit`](Self::commit)ted by the caller once it is stored.
    ///
    /// An append whose producer batches are all duplicates is [`Checked::Duplicate`]. An append
    /// that mixes duplicates with new batches (no client sends that: a retried request carries
    /// the same batches, and a failed append stores none of them) is refused with
    /// INVALID_RECORD rather than acknowledging records it would not store.
    pub fn check(
        &self,
        headers: &[BatchHeader],
        latest_epoch: impl Fn(i64) -> Option<i16>,
    ) -> Result<Checked, StorageError> {
        let mut scratch: Vec<(i64, Option<ProducerEntry>)> = Vec::new();
        let mut duplicates: Vec<BatchMeta> = Vec::new();
        let mut new_batches = 0usize;
        for h in headers {
            if h.is_control() {
                return Err(StorageError::InvalidRecord(
                    "control batches are written by the broker, not by clients".into(),
                ));
            }
            if h.is_transactional() {
                return Err(StorageError::TransactionsUnsupported(format!(
                    "transactional batch of producer {} (transactions are not supported)",
                    h.producer_id
                )));
            }
            if h.producer_id < 0 {
                new_batches += 1;
                continue;
            }
            let pid = h.producer_id;
            let slot = match scratch.iter().position(|(p, _)| *p == pid) {
                Some(i) => i,
                None => {
                    scratch.push((pid, self.entries.get(&pid).cloned()));
                    scratch.len() - 1
                }
            };
            let entry = &mut scratch[slot].1;
            let meta = BatchMeta::of(h);
            let (epoch, seq) = (h.producer_epoch, h.base_sequence);
            if let Some(original) = entry.as_ref().and_then(|e| e.duplicate_of(epoch, seq, meta.last_seq)) {
                duplicates.push(original);
                continue;
            }
            if let Some(latest) = latest_epoch(pid)
                && epoch < latest
            {
                return Err(StorageError::InvalidProducerEpoch(format!(
                    "producer {pid} sent epoch {epoch}, older than its current epoch {latest}"
                )));
            }
            match entry {
                None => {
                    if seq != 0 {
                        return Err(StorageError::UnknownProducerId(format!(
                            "no state for producer {pid} on this partition, and its batch starts at sequence {seq}, not 0"
                        )));
                    }
                    *entry = Some(ProducerEntry::new(epoch, meta));
                }
                Some(e) if epoch < e.epoch => {
                    return Err(StorageError::InvalidProducerEpoch(format!(
                        "producer {pid} sent epoch {epoch}, older than its epoch {} on this partition",
                        e.epoch
                    )));
                }
                Some(e) if epoch > e.epoch => {
                    if seq != 0 {
                        return Err(StorageError::OutOfOrderSequence(format!(
                            "producer {pid} moved to epoch {epoch} (from {}) with sequence {seq}, not 0",
                            e.epoch
                        )));
                    }
                    *e = ProducerEntry::new(epoch, meta);
                }
                Some(e) => {
                    if !in_sequence(e.last_seq(), seq) {
                        return Err(StorageError::OutOfOrderSequence(format!(
                            "producer {pid} epoch {epoch} sent sequence {seq}, expected {}",
                            increment_sequence(e.last_seq(), 1).max(0)
                        )));
                    }
                    e.push(meta);
                }
            }
            new_batches += 1;
        }
        if let (Some(first), Some(last)) = (duplicates.first(), duplicates.last()) {
            if new_batches > 0 {
                return Err(StorageError::InvalidRecord(format!(
                    "an append mixes {} duplicate batches with {new_batches} new ones",
                    duplicates.len()
                )));
            }
            return Ok(Checked::Duplicate {
                base_offset: first.base_offset,
                last_offset: last.last_offset(),
            });
        }
        let entries = scratch.into_iter().filter_map(|(pid, e)| e.map(|e| (pid, e))).collect();
        Ok(Checked::Append(Pending { entries }))
    }

    /// Keep the state an accepted append leaves behind (after its batches are stored).
    pub fn commit(&mut self, pending: Pending) {
        self.entries.extend(pending.entries);
    }

    /// Rebuild state from a stored batch (at open, in log order), without checks: a batch at a
    /// higher epoch than known restarts the producer's entry, one at the same epoch is added to
    /// it, one at a lower epoch (which an append never stores) is ignored.
    pub fn replay(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        self.replay_meta(header.producer_id, header.producer_epoch, BatchMeta::of(header));
    }

    fn replay_meta(&mut self, producer_id: i64, epoch: i16, meta: BatchMeta) {
        match self.entries.get_mut(&producer_id) {
            None => {
                self.entries.insert(producer_id, ProducerEntry::new(epoch, meta));
            }
            Some(e) if epoch > e.epoch => *e = ProducerEntry::new(epoch, meta),
            Some(e) if epoch == e.epoch => e.push(meta),
            Some(_) => {}
        }
    }

    /// Replay the state of a later stretch of the log (the next segment's table) on top of this.
    pub fn extend(&mut self, later: ProducerStateTable) {
        for (pid, entry) in later.entries {
            for meta in entry.batches {
                self.replay_meta(pid, entry.epoch, meta);
            }
        }
    }

    /// Forget producers whose last batch is below `log_start` (retention deleted it), as Kafka
    /// evicts them when the log start offset moves. Returns how many were forgotten.
    pub fn evict_before(&mut self, log_start: i64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.last_offset() >= log_start);
        before - self.entries.len()
    }
}

/// The latest epoch of each producer id, host-wide (in memory): raised by InitProducerId's epoch
/// bump and by every accepted append, seeded at open from the partitions' recovered state. An
/// append with an older epoch is refused with INVALID_PRODUCER_EPOCH even on a partition that has
/// not seen the newer one.
#[derive(Debug, Default)]
pub struct ProducerEpochs {
    latest: Mutex<HashMap<i64, i16>>,
}

impl ProducerEpochs {
    pub fn latest(&self, producer_id: i64) -> Option<i16> {
        self.latest.lock().get(&producer_id).copied()
    }

    /// Note that `producer_id` is at `epoch` (kept if higher than what is known).
    pub fn observe(&self, producer_id: i64, epoch: i16) {
        let mut latest = self.latest.lock();
        let e = latest.entry(producer_id).or_insert(epoch);
        *e = (*e).max(epoch);
    }

    /// InitProducerId with the client's current (id, epoch) (KIP-360): the epoch after `epoch`,
    /// which becomes the id's latest. The retry of a bump whose answer was lost (`epoch` is one
    /// below the latest) gets the latest again. None when the id should be replaced by a new one
    /// (epoch 0): `epoch` is negative, exhausted (the bump would pass [`MAX_EPOCH`]), or older
    /// than that (the client is behind; a new id is always safe for a non-transactional producer,
    /// and is what Kafka hands out in every case).
    pub fn bump(&self, producer_id: i64, epoch: i16) -> Option<i16> {
        if producer_id < 0 || !(0..MAX_EPOCH).contains(&epoch) {
            return None;
        }
        let mut latest = self.latest.lock();
        let next = epoch + 1;
        match latest.get(&producer_id).copied() {
            Some(known) if known > next => None,
            Some(known) if known == next => Some(next),
            _ => {
                latest.insert(producer_id, next);
                Some(next)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::testing::{idempotent_batch, with_attributes};

    /// The header of an idempotent batch of `n` records at `offset`.
    fn header(pid: i64, epoch: i16, seq: i32, n: usize, offset: i64) -> BatchHeader {
        let mut h = BatchHeader::parse(&idempotent_batch(n, pid, epoch, seq)).unwrap();
        h.base_offset = offset;
        h
    }

    fn none(_: i64) -> Option<i16> {
        None
    }

    /// Check and commit one batch; the result's base offset or error code.
    fn append(table: &mut ProducerStateTable, h: BatchHeader) -> Result<Checked, StorageError> {
        let checked = table.check(&[h], none)?;
        if let Checked::Append(p) = checked {
            table.commit(p);
            return Ok(Checked::Append(Pending::default()));
        }
        Ok(checked)
    }

    fn code(r: Result<Checked, StorageError>) -> i16 {
        r.unwrap_err().kafka_code()
    }

    #[test]
    fn a_new_producer_starts_at_sequence_zero() {
        let mut t = ProducerStateTable::new();
        assert_eq!(code(append(&mut t, header(7, 0, 3, 1, 0))), 59);
        assert!(t.is_empty());
        assert!(matches!(append(&mut t, header(7, 0, 0, 3, 0)), Ok(Checked::Append(_))));
        let e = t.get(7).unwrap();
        assert_eq!((e.epoch, e.last_seq()), (0, 2));
    }

    #[test]
    fn sequences_must_follow_on() {
        let mut t = ProducerStateTable::new();
        append(&mut t, header(1, 0, 0, 3, 0)).unwrap();
        assert_eq!(code(append(&mut t, header(1, 0, 4, 1, 3))), 45, "gap");
        assert_eq!(code(append(&mut t, header(1, 0, 2, 1, 3))), 45, "overlap that is no duplicate");
        append(&mut t, header(1, 0, 3, 2, 3)).unwrap();
        assert_eq!(t.get(1).unwrap().last_seq(), 4);
    }

    #[test]
    fn a_duplicate_of_one_of_the_last_five_returns_its_offsets() {
        let mut t = ProducerStateTable::new();
        for i in 0..7 {
            append(&mut t, header(1, 0, i * 2, 2, 100 + i64::from(i) * 2)).unwrap();
        }
        // Batches 2..=6 are remembered (sequences 4..=13).
        match append(&mut t, header(1, 0, 4, 2, 999)).unwrap() {
            Checked::Duplicate { base_offset, last_offset } => {
                assert_eq!((base_offset, last_offset), (104, 105))
            }
            other => panic!("{other:?}"),
        }
        match append(&mut t, header(1, 0, 12, 2, 999)).unwrap() {
            Checked::Duplicate { base_offset, .. } => assert_eq!(base_offset, 112),
            other => panic!("{other:?}"),
        }
        assert_eq!(code(append(&mut t, header(1, 0, 2, 2, 999))), 45, "older than the last five");
        assert_eq!(code(append(&mut t, header(1, 0, 4, 3, 999))), 45, "same start, other end");
        assert_eq!(t.get(1).unwrap().last_seq(), 13, "nothing changed");
        assert_eq!(t.get(1).unwrap().batches().count(), BATCHES_REMEMBERED);
    }

    #[test]
    fn epochs() {
        let mut t = ProducerStateTable::new();
        append(&mut t, header(1, 3, 0, 2, 0)).unwrap();
        append(&mut t, header(1, 3, 2, 2, 2)).unwrap();
        assert_eq!(code(append(&mut t, header(1, 2, 4, 1, 4))), 47, "stale epoch");
        assert_eq!(code(append(&mut t, header(1, 4, 4, 1, 4))), 45, "new epoch not at 0");
        append(&mut t, header(1, 4, 0, 1, 4)).unwrap();
        let e = t.get(1).unwrap();
        assert_eq!((e.epoch, e.last_seq(), e.batches().count()), (4, 0, 1));
        // A batch of the old epoch is no duplicate any more: stale.
        assert_eq!(code(append(&mut t, header(1, 3, 2, 2, 5))), 47);
    }

    #[test]
    fn the_host_wide_epoch_fences_older_epochs() {
        let t = ProducerStateTable::new();
        let latest = |pid: i64| (pid == 1).then_some(5);
        assert_eq!(t.check(&[header(1, 4, 0, 1, 0)], latest).unwrap_err().kafka_code(), 47);
        assert!(matches!(t.check(&[header(1, 5, 0, 1, 0)], latest), Ok(Checked::Append(_))));
        assert!(matches!(t.check(&[header(2, 0, 0, 1, 0)], latest), Ok(Checked::Append(_))));
    }

    #[test]
    fn sequences_wrap_past_i32_max() {
        let mut t = ProducerStateTable::new();
        append(&mut t, header(1, 0, 0, 1, 0)).unwrap();
        // Fast-forward the entry to just below the wrap.
        t.entries.get_mut(&1).unwrap().push(BatchMeta {
            first_seq: i32::MAX - 10,
            last_seq: i32::MAX - 2,
            base_offset: 1,
            last_offset_delta: 8,
            max_timestamp: 0,
        });
        let h = header(1, 0, i32::MAX - 1, 4, 10);
        assert_eq!(last_sequence(&h), 1, "MAX-1, MAX, 0, 1");
        append(&mut t, h).unwrap();
        assert_eq!(t.get(1).unwrap().last_seq(), 1);
        assert!(matches!(append(&mut t, header(1, 0, i32::MAX - 1, 4, 20)), Ok(Checked::Duplicate { .. })));
        append(&mut t, header(1, 0, 2, 1, 14)).unwrap();

        let mut t = ProducerStateTable::new();
        append(&mut t, header(1, 0, 0, 1, 0)).unwrap();
        t.entries.get_mut(&1).unwrap().push(BatchMeta {
            first_seq: i32::MAX,
            last_seq: i32::MAX,
            base_offset: 1,
            last_offset_delta: 0,
            max_timestamp: 0,
        });
        assert_eq!(code(append(&mut t, header(1, 0, 1, 1, 2))), 45);
        append(&mut t, header(1, 0, 0, 1, 2)).unwrap();
    }

    #[test]
    fn several_batches_are_checked_in_order_and_all_or_nothing() {
        let t = ProducerStateTable::new();
        let ok =
            [header(1, 0, 0, 2, 0), header(-1, -1, -1, 1, 2), header(1, 0, 2, 3, 3), header(2, 0, 0, 1, 6)];
        let Checked::Append(p) = t.check(&ok, none).unwrap() else { panic!() };
        let mut epochs: Vec<_> = p.epochs().collect();
        epochs.sort();
        assert_eq!(epochs, vec![(1, 0), (2, 0)]);
        let mut t = t;
        t.commit(p);
        assert_eq!(t.get(1).unwrap().last_seq(), 4);

        // The second batch has a gap: nothing of the append counts.
        let bad = [header(1, 0, 5, 1, 7), header(1, 0, 7, 1, 8)];
        assert_eq!(t.check(&bad, none).unwrap_err().kafka_code(), 45);
        assert_eq!(t.get(1).unwrap().last_seq(), 4);
        // A batch repeated within one append is a duplicate of the first: mixed, refused.
        let twice = [header(1, 0, 5, 1, 7), header(1, 0, 5, 1, 8)];
        assert_eq!(t.check(&twice, none).unwrap_err().kafka_code(), 87);
        // A retried two-batch append is a duplicate as a whole: the original offsets.
        match t.check(&[header(1, 0, 0, 2, 50), header(1, 0, 2, 3, 52)], none).unwrap() {
            Checked::Duplicate { base_offset, last_offset } => assert_eq!((base_offset, last_offset), (0, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transactional_and_control_batches_are_refused() {
        let t = ProducerStateTable::new();
        let mut h = header(1, 0, 0, 1, 0);
        h.attributes = 0x10;
        assert_eq!(t.check(&[h], none).unwrap_err().kafka_code(), 48);
        let b = with_attributes(&idempotent_batch(1, -1, -1, -1), 0x20);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(t.check(&[h], none).unwrap_err().kafka_code(), 87);
    }

    #[test]
    fn replay_and_extend_rebuild_the_last_batches() {
        let mut first = ProducerStateTable::new();
        let mut second = ProducerStateTable::new();
        for i in 0..4 {
            first.replay(&header(1, 0, i, 1, i64::from(i)));
        }
        first.replay(&header(2, 0, 0, 1, 4));
        for i in 4..7 {
            second.replay(&header(1, 0, i, 1, i64::from(i) + 1));
        }
        second.replay(&header(2, 1, 0, 1, 8));
        second.replay(&header(2, 0, 1, 1, 9)); // lower epoch: ignored
        first.extend(second);
        let e = first.get(1).unwrap();
        let seqs: Vec<i32> = e.batches().map(|b| b.first_seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
        let e = first.get(2).unwrap();
        assert_eq!((e.epoch, e.last_seq()), (1, 0));
        assert_eq!(first.evict_before(8), 1);
        assert!(first.get(1).is_none() && first.get(2).is_some());
    }

    #[test]
    fn epoch_bumps() {
        let epochs = ProducerEpochs::default();
        assert_eq!(epochs.bump(1, 0), Some(1));
        assert_eq!(epochs.latest(1), Some(1));
        assert_eq!(epochs.bump(1, 0), Some(1), "a retried bump");
        assert_eq!(epochs.bump(1, 1), Some(2));
        assert_eq!(epochs.bump(1, 0), None, "behind: a new id");
        epochs.observe(1, 7);
        epochs.observe(1, 3);
        assert_eq!(epochs.latest(1), Some(7));
        assert_eq!(epochs.bump(2, MAX_EPOCH - 1), Some(MAX_EPOCH));
        assert_eq!(epochs.bump(2, MAX_EPOCH), None, "exhausted");
        assert_eq!(epochs.bump(3, -1), None);
        assert_eq!(epochs.bump(-1, 0), None);
    }
}
