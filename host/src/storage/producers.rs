//! Idempotent and transactional producers: the sequence checks an append makes, as Kafka's
//! `ProducerStateManager` and `ProducerAppendInfo` make them, the transactions open on a
//! partition and the aborted ones (KIP-98), and the host-wide latest epoch of each producer id.
//! Backend-neutral: a backend keeps one [`ProducerStateTable`] per partition, checks every
//! append against it under the partition's append lock (so the checks are atomic with offset
//! assignment), commits the outcome only once the batches are stored, and rebuilds the table at
//! open by replaying the stored batches in log order ([`ProducerStateTable::replay`] for the
//! headers of data batches, [`ProducerStateTable::replay_marker`] for transaction markers). When
//! the log start moves past batches the state still needs (a producer's last batches, the start
//! of a transaction still open or aborted later), the backend keeps what the state holds below
//! it ([`ProducerStateTable::below`]) and seeds the replay with it
//! ([`ProducerStateTable::seed`]), so a restart comes out with the same state.
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
//! Transactions (attribute 0x10), once those checks pass: the first transactional batch of a
//! producer with no open transaction on the partition opens one at its base offset (Kafka's
//! `currentTxnFirstOffset`); a non-transactional batch while one is open is INVALID_TXN_STATE
//! (48). Only the transaction coordinator ends a transaction, with a marker
//! ([`ProducerStateTable::check_marker`]): a COMMIT or ABORT control batch at the producer's
//! epoch or a newer one (an older one is INVALID_PRODUCER_EPOCH; a newer one moves the producer
//! to it, so its next batch starts at sequence 0 and a zombie's batches are fenced). An ABORT of
//! an open transaction is remembered ([`AbortedTxn`]) for read-committed fetches. Control
//! batches from clients are refused (INVALID_RECORD). The last stable offset (LSO) is the first
//! offset of the earliest open transaction, else the high watermark.
//!
//! Not done: Kafka's producer-id expiration (`producer.id.expiration.ms`) and transaction
//! timeouts (the coordinator aborts those); the coordinator epoch of a marker is not checked
//! (Kafka refuses a lower one with TRANSACTION_COORDINATOR_FENCED). A producer's state on a
//! partition lives until the log start passes its last batch or marker (retention, DeleteRecords:
//! then it is evicted, with its open transaction, as Kafka evicts producers below the log start
//! offset); a few dozen bytes per producer and partition.

use crate::record::batch::{BatchHeader, ControlType};
use crate::storage::{AbortedTxn, StorageError, TxnMarker};
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Batches remembered per producer and partition for duplicate detection: Kafka's bound, which
/// is also the most in-flight requests an idempotent client keeps per connection.
pub const BATCHES_REMEMBERED: usize = 5;

/// The highest epoch InitProducerId hands out; beyond it, a new producer id (Kafka: an epoch of
/// `i16::MAX - 1` or more is exhausted).
pub const MAX_EPOCH: i16 = i16::MAX - 1;

/// A batch's base sequence when it has none (Kafka's `RecordBatch.NO_SEQUENCE`).
pub const NO_SEQUENCE: i32 = -1;

/// One stored batch of a producer, as remembered for duplicate detection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// What a partition knows of one producer: its epoch, its last batches at that epoch (oldest
/// first; none when a transaction marker moved it to a new epoch and it stored none since) and
/// its open transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// The first offset of its open transaction on the partition.
    txn_first_offset: Option<i64>,
    /// The last offset of its last stored batch or the offset of its last marker.
    last_offset: i64,
    /// The max timestamp of its last stored batch or marker.
    last_timestamp: i64,
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::with_capacity(BATCHES_REMEMBERED),
            txn_first_offset: None,
            last_offset: -1,
            last_timestamp: -1,
        }
    }

    /// The remembered batches, oldest first.
    pub fn batches(&self) -> impl Iterator<Item = &BatchMeta> {
        self.batches.iter()
    }

    /// The last sequence of its last remembered batch; -1 when it has none at its epoch.
    pub fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    /// The first offset of its open transaction on the partition, if it has one.
    pub fn txn_first_offset(&self) -> Option<i64> {
        self.txn_first_offset
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
        self.touch(&meta);
        self.batches.push_back(meta);
    }

    /// A stored batch of the producer that is not one of its sequenced batches (the host's,
    /// in its transaction): only the offset and time of its last write move.
    fn touch(&mut self, meta: &BatchMeta) {
        self.last_offset = self.last_offset.max(meta.last_offset());
        self.last_timestamp = meta.max_timestamp;
    }

    /// Move to a newer epoch: the batches of the older one are forgotten (its sequences start
    /// again at 0); an open transaction stays open, as in Kafka.
    fn bump(&mut self, epoch: i16) {
        self.epoch = epoch;
        self.batches.clear();
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
    /// The transaction an ABORT marker ends.
    aborted: Option<AbortedTxn>,
    /// The producer a marker is for: its registration ends with it.
    marker_of: Option<i64>,
}

impl Pending {
    /// (producer id, epoch) of every producer the append touches.
    pub fn epochs(&self) -> impl Iterator<Item = (i64, i16)> + '_ {
        self.entries.iter().map(|(pid, e)| (*pid, e.epoch))
    }
}

/// What a producer's state holds of the log below an offset (the log start, once retention or
/// DeleteRecords moved it: the batches there are gone, or no longer replayed), for a backend to
/// keep and seed the table with before it replays the log from that offset
/// ([`ProducerStateTable::below`], [`ProducerStateTable::seed`]): its remembered batches below
/// the offset, and the transaction it had open at the offset, begun below it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProducerSeed {
    pub producer_id: i64,
    /// Its epoch, when it has batches below the offset (they are at its current epoch); -1
    /// otherwise (the first batch or marker replayed sets it).
    pub epoch: i16,
    /// Its remembered batches that start below the offset, oldest first.
    pub batches: Vec<BatchMeta>,
    /// The first offset of its transaction open at the offset, when that began below it.
    pub txn_first_offset: Option<i64>,
}

/// An aborted transaction as the table keeps it: with the partition's first unstable offset
/// just after its marker (or the offset after the marker when no transaction stayed open),
/// Kafka's `AbortedTxn.lastStableOffset`. No transaction aborted later can start below it, so a
/// lookup stops at the first entry where it reaches the lookup's upper bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AbortedEntry {
    txn: AbortedTxn,
    stable_after: i64,
}

/// The producer state of one partition, keyed by producer id, with its open and aborted
/// transactions.
#[derive(Debug, Default)]
pub struct ProducerStateTable {
    entries: HashMap<i64, ProducerEntry>,
    /// (first offset, producer id) of every open transaction: the first is the first unstable
    /// offset.
    open: BTreeSet<(i64, i64)>,
    /// Aborted transactions in the order of their markers (so by last offset).
    aborted: VecDeque<AbortedEntry>,
    /// KIP-890's verification, per producer the transaction coordinator registered here: the
    /// epoch whose transaction holds this partition, or None once a marker ended it. A
    /// transactional batch that would open a transaction is refused for a producer registered
    /// at another epoch or no longer registered, so a late append (one that passed the
    /// coordinator's check before an abort) cannot open a transaction nobody will end. Producers
    /// never registered (a log used without a coordinator) are not checked. Not persisted: the
    /// coordinator registers its open transactions' partitions again when it loads.
    registered: HashMap<i64, Option<i16>>,
    /// Whether the partition has held a transaction (a transactional batch or a marker).
    transactional: bool,
}

impl ProducerStateTable {
    /// Whether the partition has held a transaction since its state was built (its log
    /// replayed): the cleaner plans markers only then.
    pub fn has_transactions(&self) -> bool {
        self.transactional
    }

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
                last_timestamp: e.last_timestamp,
                txn_start_offset: e.txn_first_offset.unwrap_or(-1),
            })
            .collect();
        all.sort_by_key(|p| p.producer_id);
        all
    }

    /// (producer id, epoch) of every producer known here.
    pub fn epochs(&self) -> impl Iterator<Item = (i64, i16)> + '_ {
        self.entries.iter().map(|(pid, e)| (*pid, e.epoch))
    }

    /// The first offset of the earliest open transaction (Kafka's first unstable offset).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.first().map(|(offset, _)| *offset)
    }

    /// The last stable offset of the partition whose log spans [`log_start`,
    /// `high_watermark`): the first unstable offset, within that span, else the high watermark.
    pub fn last_stable_offset(&self, log_start: i64, high_watermark: i64) -> i64 {
        last_stable_offset(self.first_unstable_offset(), log_start, high_watermark)
    }

    /// (producer id, first offset) of every open transaction, by first offset.
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.open.iter().map(|(offset, pid)| (*pid, *offset))
    }

    /// Every aborted transaction remembered (those whose marker is at or above the log start),
    /// in the order of their markers.
    pub fn aborted(&self) -> impl Iterator<Item = &AbortedTxn> {
        self.aborted.iter().map(|a| &a.txn)
    }

    /// Forget the aborted transactions whose marker the cleaner drops (`dropped`, by the
    /// marker's offset), before it does: their batches are empty already, and an aborted
    /// transaction listed without its marker would make read-committed consumers skip the
    /// producer's later batches. Returns how many were forgotten.
    pub fn forget_aborted(&mut self, dropped: impl Fn(i64) -> bool) -> usize {
        let before = self.aborted.len();
        self.aborted.retain(|a| !dropped(a.txn.last_offset));
        before - self.aborted.len()
    }

    /// The aborted transactions a read-committed fetch from `offset` needs when it returns the
    /// batches below `upper` (Kafka's `collectAbortedTransactions(fetchOffset,
    /// upperBoundOffset)`): those whose marker is at or after `offset` and whose first offset is
    /// below `upper`, sorted by first offset.
    pub fn aborted_between(&self, offset: i64, upper: i64) -> Vec<AbortedTxn> {
        let from = self.aborted.partition_point(|a| a.txn.last_offset < offset);
        let mut found = Vec::new();
        for a in self.aborted.range(from..) {
            if a.txn.first_offset < upper {
                found.push(a.txn);
            }
            if a.stable_after >= upper {
                break;
            }
        }
        found.sort_by_key(|t| (t.first_offset, t.producer_id));
        found
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
    ///
    /// With `unsequenced_txn`, a transactional batch with no sequence (-1) is the host's own,
    /// in its producer's open transaction (see [`Append::unsequenced_txn`]): its epoch and the
    /// transaction are checked as any batch's, its sequence is not, and it is not remembered
    /// among the producer's batches (the producer's own sequences go on around it).
    ///
    /// [`Append::unsequenced_txn`]: crate::storage::Append::unsequenced_txn
    pub fn check(
        &self,
        headers: &[BatchHeader],
        latest_epoch: impl Fn(i64) -> Option<i16>,
        unsequenced_txn: bool,
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
            if h.producer_id < 0 {
                if h.is_transactional() {
                    return Err(StorageError::InvalidRecord(
                        "a transactional batch without a producer id".into(),
                    ));
                }
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
            let unsequenced = unsequenced_txn && seq == NO_SEQUENCE && h.is_transactional();
            if !unsequenced
                && let Some(original) = entry.as_ref().and_then(|e| e.duplicate_of(epoch, seq, meta.last_seq))
            {
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
            let e = match entry {
                None if unsequenced => entry.insert(ProducerEntry::new(epoch)),
                Some(e) if unsequenced && epoch >= e.epoch => {
                    if epoch > e.epoch {
                        e.bump(epoch);
                    }
                    e
                }
                None => {
                    if seq != 0 {
                        return Err(StorageError::UnknownProducerId(format!(
                            "no state for producer {pid} on this partition, and its batch starts at sequence {seq}, not 0"
                        )));
                    }
                    entry.insert(ProducerEntry::new(epoch))
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
                    e.bump(epoch);
                    e
                }
                Some(e) => {
                    if !in_sequence(e.last_seq(), seq) {
                        return Err(StorageError::OutOfOrderSequence(format!(
                            "producer {pid} epoch {epoch} sent sequence {seq}, expected {}",
                            increment_sequence(e.last_seq(), 1).max(0)
                        )));
                    }
                    e
                }
            };
            if unsequenced {
                e.touch(&meta);
            } else {
                e.push(meta);
            }
            match (e.txn_first_offset, h.is_transactional()) {
                (Some(first), false) => {
                    return Err(StorageError::InvalidTxnState(format!(
                        "producer {pid} sent a non-transactional batch while its transaction from offset {first} \
                         is open on this partition"
                    )));
                }
                (None, true) => {
                    match self.registered.get(&pid) {
                        Some(Some(registered)) if *registered == epoch => {}
                        Some(registered) => {
                            return Err(StorageError::InvalidTxnState(format!(
                                "producer {pid} at epoch {epoch} has no open transaction holding this partition \
                                 (registered: {registered:?})"
                            )));
                        }
                        None => {}
                    }
                    e.txn_first_offset = Some(h.base_offset)
                }
                _ => {}
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
        Ok(Checked::Append(Pending { entries, aborted: None, marker_of: None }))
    }

    /// Check the transaction marker `marker`, to be stored at `offset` with timestamp
    /// `timestamp` (Kafka's `ProducerAppendInfo.appendEndTxnMarker`): its epoch must not be
    /// below the producer's on the partition (else INVALID_PRODUCER_EPOCH). Once stored, it
    /// ends the producer's open transaction (an ABORT of one is remembered) and moves the
    /// producer to its epoch; a producer the partition did not know is known from then on.
    /// Nothing changes here: [`commit`](Self::commit) the result once the marker is stored.
    pub fn check_marker(
        &self,
        marker: &TxnMarker,
        offset: i64,
        timestamp: i64,
    ) -> Result<Pending, StorageError> {
        let pid = marker.producer_id;
        if pid < 0 {
            return Err(StorageError::InvalidRecord(format!("a transaction marker of producer id {pid}")));
        }
        let epoch = marker.producer_epoch;
        let mut entry = self.entries.get(&pid).cloned().unwrap_or_else(|| ProducerEntry::new(epoch));
        if epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "a transaction marker of producer {pid} at epoch {epoch}, older than its epoch {} on this partition",
                entry.epoch
            )));
        }
        if epoch > entry.epoch {
            entry.bump(epoch);
        }
        let aborted = match entry.txn_first_offset.take() {
            Some(first_offset) if !marker.commit => {
                Some(AbortedTxn { producer_id: pid, first_offset, last_offset: offset })
            }
            _ => None,
        };
        entry.last_offset = entry.last_offset.max(offset);
        entry.last_timestamp = timestamp;
        Ok(Pending { entries: vec![(pid, entry)], aborted, marker_of: Some(pid) })
    }

    /// The transaction coordinator added this partition to producer `pid`'s transaction at
    /// `epoch`: its transactional batches may open a transaction here (see `registered`).
    pub fn register_txn(&mut self, pid: i64, epoch: i16) {
        self.registered.insert(pid, Some(epoch));
    }

    /// Take over `old`'s registrations (see `registered`): a writer that recovers a partition
    /// it held keeps them, as its own markers are what ended the others.
    pub fn keep_registrations(&mut self, old: &ProducerStateTable) {
        self.registered = old.registered.clone();
    }

    /// Keep the state an accepted append leaves behind (after its batches are stored).
    pub fn commit(&mut self, pending: Pending) {
        self.transactional |=
            pending.marker_of.is_some() || pending.entries.iter().any(|(_, e)| e.txn_first_offset.is_some());
        if let Some(pid) = pending.marker_of
            && let Some(registered) = self.registered.get_mut(&pid)
        {
            *registered = None;
        }
        for (pid, entry) in pending.entries {
            let before = self.entries.get(&pid).and_then(|e| e.txn_first_offset);
            self.set_open(pid, before, entry.txn_first_offset);
            self.entries.insert(pid, entry);
        }
        if let Some(txn) = pending.aborted {
            let stable_after = self.first_unstable_offset().unwrap_or(txn.last_offset.saturating_add(1));
            self.aborted.push_back(AbortedEntry { txn, stable_after });
        }
    }

    /// Move producer `pid`'s open transaction from first offset `before` to `after`.
    fn set_open(&mut self, pid: i64, before: Option<i64>, after: Option<i64>) {
        if before == after {
            return;
        }
        if let Some(first) = before {
            self.open.remove(&(first, pid));
        }
        if let Some(first) = after {
            self.open.insert((first, pid));
        }
    }

    /// Rebuild state from a stored data batch (at open, in log order), without checks: a batch
    /// at a higher epoch than known restarts the producer's batches, one at the same epoch is
    /// added to them, one at a lower epoch (which an append never stores) is ignored. A
    /// transactional batch opens its producer's transaction if none is open. Control batches
    /// are [`replay_marker`](Self::replay_marker)ed instead; their headers are ignored here.
    pub fn replay(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        let pid = header.producer_id;
        let epoch = header.producer_epoch;
        let entry = self.entries.entry(pid).or_insert_with(|| ProducerEntry::new(epoch));
        if epoch < entry.epoch {
            return;
        }
        if epoch > entry.epoch {
            entry.bump(epoch);
        }
        if header.base_sequence == NO_SEQUENCE && header.is_transactional() {
            // The host's own batch in the producer's transaction (see `check`).
            entry.touch(&BatchMeta::of(header));
        } else {
            entry.push(BatchMeta::of(header));
        }
        self.transactional |= header.is_transactional();
        if header.is_transactional() && entry.txn_first_offset.is_none() {
            entry.txn_first_offset = Some(header.base_offset);
            self.open.insert((header.base_offset, pid));
        }
    }

    /// Rebuild state from a stored transaction marker (at open, in log order): `header` is its
    /// control batch's, `control` what its record says. As [`check_marker`](Self::check_marker)
    /// and [`commit`](Self::commit); a marker at a lower epoch (never stored) is ignored.
    pub fn replay_marker(&mut self, header: &BatchHeader, control: ControlType) {
        let marker = TxnMarker {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            commit: control == ControlType::Commit,
            coordinator_epoch: 0,
        };
        if let Ok(pending) = self.check_marker(&marker, header.base_offset, header.max_timestamp) {
            self.commit(pending);
        }
    }

    /// What the state holds of the log below `log_start` (see [`ProducerSeed`]), for the
    /// producers that [`evict_before`](Self::evict_before) keeps at that log start, by producer
    /// id. A transaction that began below it and was committed at or after it is left out: its
    /// marker, replayed, finds nothing open and leaves the same state.
    pub fn below(&self, log_start: i64) -> Vec<ProducerSeed> {
        // Aborted at or after the log start, begun below it: open at the log start.
        let aborted_open: HashMap<i64, i64> = self
            .aborted
            .iter()
            .filter(|a| a.txn.first_offset < log_start && a.txn.last_offset >= log_start)
            .map(|a| (a.txn.producer_id, a.txn.first_offset))
            .collect();
        let mut seeds: Vec<ProducerSeed> = self
            .entries
            .iter()
            .filter(|(_, e)| e.last_offset >= log_start)
            .filter_map(|(pid, e)| {
                let batches: Vec<BatchMeta> =
                    e.batches.iter().filter(|b| b.base_offset < log_start).copied().collect();
                let txn_first_offset = e
                    .txn_first_offset
                    .filter(|first| *first < log_start)
                    .or_else(|| aborted_open.get(pid).copied());
                if batches.is_empty() && txn_first_offset.is_none() {
                    return None;
                }
                let epoch = if batches.is_empty() { -1 } else { e.epoch };
                Some(ProducerSeed { producer_id: *pid, epoch, batches, txn_first_offset })
            })
            .collect();
        seeds.sort_by_key(|s| s.producer_id);
        seeds
    }

    /// Start a replay from an offset with what the state held of the log below it (see
    /// [`below`](Self::below)): then the log's batches and markers from that offset on are
    /// [`replay`](Self::replay)ed, and the state comes out as it was.
    pub fn seed(&mut self, seeds: Vec<ProducerSeed>) {
        for s in seeds {
            let pid = s.producer_id;
            let mut entry = ProducerEntry::new(s.epoch);
            for b in s.batches {
                entry.push(b);
            }
            let before = self.entries.get(&pid).and_then(|e| e.txn_first_offset);
            entry.txn_first_offset = s.txn_first_offset;
            self.transactional |= s.txn_first_offset.is_some();
            self.set_open(pid, before, entry.txn_first_offset);
            self.entries.insert(pid, entry);
        }
    }

    /// Forget producers whose last batch or marker is below `log_start` (retention or
    /// DeleteRecords deleted it), with their open transactions, as Kafka evicts them when the
    /// log start offset moves, and the aborted transactions whose marker is below it. Returns
    /// how many producers were forgotten.
    pub fn evict_before(&mut self, log_start: i64) -> usize {
        let before = self.entries.len();
        let open = &mut self.open;
        self.entries.retain(|pid, e| {
            let keep = e.last_offset >= log_start;
            if !keep && let Some(first) = e.txn_first_offset {
                open.remove(&(first, *pid));
            }
            keep
        });
        while self.aborted.front().is_some_and(|a| a.txn.last_offset < log_start) {
            self.aborted.pop_front();
        }
        before - self.entries.len()
    }
}

/// The last stable offset of a partition whose log spans [`log_start`, `high_watermark`) and
/// whose earliest open transaction starts at `first_unstable`: that offset, within the span (as
/// Kafka's `UnifiedLog.lastStableOffset`), else the high watermark.
pub fn last_stable_offset(first_unstable: Option<i64>, log_start: i64, high_watermark: i64) -> i64 {
    first_unstable.map_or(high_watermark, |first| first.max(log_start).min(high_watermark))
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
        let checked = table.check(&[h], none, false)?;
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
        assert_eq!(t.check(&[header(1, 4, 0, 1, 0)], latest, false).unwrap_err().kafka_code(), 47);
        assert!(matches!(t.check(&[header(1, 5, 0, 1, 0)], latest, false), Ok(Checked::Append(_))));
        assert!(matches!(t.check(&[header(2, 0, 0, 1, 0)], latest, false), Ok(Checked::Append(_))));
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
        let Checked::Append(p) = t.check(&ok, none, false).unwrap() else { panic!() };
        let mut epochs: Vec<_> = p.epochs().collect();
        epochs.sort();
        assert_eq!(epochs, vec![(1, 0), (2, 0)]);
        let mut t = t;
        t.commit(p);
        assert_eq!(t.get(1).unwrap().last_seq(), 4);

        // The second batch has a gap: nothing of the append counts.
        let bad = [header(1, 0, 5, 1, 7), header(1, 0, 7, 1, 8)];
        assert_eq!(t.check(&bad, none, false).unwrap_err().kafka_code(), 45);
        assert_eq!(t.get(1).unwrap().last_seq(), 4);
        // A batch repeated within one append is a duplicate of the first: mixed, refused.
        let twice = [header(1, 0, 5, 1, 7), header(1, 0, 5, 1, 8)];
        assert_eq!(t.check(&twice, none, false).unwrap_err().kafka_code(), 87);
        // A retried two-batch append is a duplicate as a whole: the original offsets.
        match t.check(&[header(1, 0, 0, 2, 50), header(1, 0, 2, 3, 52)], none, false).unwrap() {
            Checked::Duplicate { base_offset, last_offset } => assert_eq!((base_offset, last_offset), (0, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_rebuilds_the_last_batches() {
        let mut t = ProducerStateTable::new();
        for i in 0..4 {
            t.replay(&header(1, 0, i, 1, i64::from(i)));
        }
        t.replay(&header(2, 0, 0, 1, 4));
        for i in 4..7 {
            t.replay(&header(1, 0, i, 1, i64::from(i) + 1));
        }
        t.replay(&header(2, 1, 0, 1, 8));
        t.replay(&header(2, 0, 1, 1, 9)); // lower epoch: ignored
        let e = t.get(1).unwrap();
        let seqs: Vec<i32> = e.batches().map(|b| b.first_seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5, 6]);
        let e = t.get(2).unwrap();
        assert_eq!((e.epoch, e.last_seq()), (1, 0));
        assert_eq!(t.evict_before(8), 1);
        assert!(t.get(1).is_none() && t.get(2).is_some());
    }

    /// A transactional batch's header.
    fn txn(pid: i64, epoch: i16, seq: i32, n: usize, offset: i64) -> BatchHeader {
        let mut h = header(pid, epoch, seq, n, offset);
        h.attributes |= 0x10;
        h
    }

    /// Check and commit a marker of `pid` at `epoch`, stored at `offset`.
    fn end(
        t: &mut ProducerStateTable,
        pid: i64,
        epoch: i16,
        commit: bool,
        offset: i64,
    ) -> Result<(), StorageError> {
        let marker = TxnMarker { producer_id: pid, producer_epoch: epoch, commit, coordinator_epoch: 0 };
        let pending = t.check_marker(&marker, offset, 1000 + offset)?;
        t.commit(pending);
        Ok(())
    }

    fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn { producer_id: pid, first_offset: first, last_offset: last }
    }

    #[test]
    fn a_transaction_opens_at_its_first_batch_and_its_marker_closes_it() {
        let mut t = ProducerStateTable::new();
        assert_eq!(t.last_stable_offset(0, 0), 0);
        append(&mut t, header(1, 0, 0, 2, 0)).unwrap();
        assert_eq!(t.first_unstable_offset(), None, "an idempotent batch opens nothing");
        append(&mut t, txn(1, 0, 2, 2, 2)).unwrap();
        append(&mut t, txn(1, 0, 4, 3, 4)).unwrap();
        assert_eq!(t.get(1).unwrap().txn_first_offset(), Some(2), "the first batch's offset stays");
        assert_eq!(t.last_stable_offset(0, 7), 2);
        assert_eq!(t.snapshot()[0].txn_start_offset, 2);
        end(&mut t, 1, 0, true, 7).unwrap();
        assert_eq!(t.first_unstable_offset(), None);
        assert_eq!(t.last_stable_offset(0, 8), 8, "no open transaction: the high watermark");
        assert_eq!(t.aborted_between(0, 8), vec![], "a commit is no abort");
        let p = t.snapshot()[0];
        assert_eq!((p.txn_start_offset, p.last_sequence, p.last_timestamp), (-1, 6, 1007));
        // The next transaction starts where its first batch lands.
        append(&mut t, txn(1, 0, 7, 1, 8)).unwrap();
        assert_eq!(t.last_stable_offset(0, 9), 8);
        // The LSO never leaves [log start, high watermark].
        assert_eq!(t.last_stable_offset(9, 12), 9);
        assert_eq!(t.last_stable_offset(0, 5), 5);
    }

    #[test]
    fn the_hosts_unsequenced_batches_join_the_transaction_and_leave_the_sequences_alone() {
        let mut t = ProducerStateTable::new();
        let host = |t: &mut ProducerStateTable, h: BatchHeader| -> Result<(), StorageError> {
            match t.check(&[h], none, true)? {
                Checked::Append(p) => {
                    t.commit(p);
                    Ok(())
                }
                Checked::Duplicate { .. } => panic!("an unsequenced batch is never a duplicate"),
            }
        };
        // A client may not send one: the sequence checks refuse it.
        assert_eq!(code(t.check(&[txn(1, 0, NO_SEQUENCE, 1, 0)], none, false)), 59);
        // The host's opens the transaction on a partition the producer never wrote.
        host(&mut t, txn(1, 0, NO_SEQUENCE, 2, 0)).unwrap();
        assert_eq!(t.get(1).unwrap().txn_first_offset(), Some(0));
        assert_eq!(t.get(1).unwrap().last_seq(), -1, "no sequence remembered");
        // The producer's own batches start at 0 around the host's, which may come again.
        append(&mut t, txn(1, 0, 0, 1, 2)).unwrap();
        host(&mut t, txn(1, 0, NO_SEQUENCE, 1, 3)).unwrap();
        host(&mut t, txn(1, 0, NO_SEQUENCE, 1, 4)).unwrap();
        append(&mut t, txn(1, 0, 1, 1, 5)).unwrap();
        assert_eq!(t.get(1).unwrap().batches().map(|b| b.first_seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(t.last_stable_offset(0, 6), 0);
        // Only transactional: an idempotent batch without a sequence is refused.
        assert_eq!(code(t.check(&[header(2, 0, NO_SEQUENCE, 1, 6)], none, true)), 59);
        // An older epoch is fenced; once the marker closed it, a late one cannot reopen it.
        end(&mut t, 1, 1, false, 6).unwrap();
        assert_eq!(code(t.check(&[txn(1, 0, NO_SEQUENCE, 1, 7)], none, true)), 47);
        t.register_txn(1, 2);
        assert_eq!(code(t.check(&[txn(1, 1, NO_SEQUENCE, 1, 7)], none, true)), 48, "registered at 2");
        assert_eq!(code(t.check(&[txn(1, 3, NO_SEQUENCE, 1, 7)], none, true)), 48, "not at 3");
        host(&mut t, txn(1, 2, NO_SEQUENCE, 1, 7)).unwrap();
        assert_eq!(t.aborted_between(0, 8), vec![aborted(1, 0, 6)]);
        // Replayed, the log gives the same state.
        let mut r = ProducerStateTable::new();
        r.replay(&txn(1, 0, NO_SEQUENCE, 2, 0));
        r.replay(&txn(1, 0, 0, 1, 2));
        r.replay(&txn(1, 0, NO_SEQUENCE, 1, 3));
        r.replay(&txn(1, 0, 1, 1, 5));
        assert_eq!(r.get(1).unwrap().batches().map(|b| b.first_seq).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(r.get(1).unwrap().txn_first_offset(), Some(0));
    }

    #[test]
    fn aborts_are_remembered_and_the_lso_is_the_earliest_open_transaction() {
        let mut t = ProducerStateTable::new();
        append(&mut t, txn(1, 0, 0, 2, 0)).unwrap(); // 0..=1
        append(&mut t, txn(2, 0, 0, 1, 2)).unwrap(); // 2
        append(&mut t, header(3, 0, 0, 1, 3)).unwrap(); // 3
        assert_eq!(t.last_stable_offset(0, 4), 0);
        let open: Vec<_> = t.open_transactions().collect();
        assert_eq!(open, vec![(1, 0), (2, 2)]);
        end(&mut t, 1, 0, false, 4).unwrap();
        assert_eq!(t.last_stable_offset(0, 5), 2, "producer 2 is still open");
        assert_eq!(t.aborted().copied().collect::<Vec<_>>(), vec![aborted(1, 0, 4)]);
        append(&mut t, txn(1, 0, 2, 1, 5)).unwrap(); // a new transaction of producer 1 at 5
        end(&mut t, 2, 0, false, 6).unwrap();
        assert_eq!(t.last_stable_offset(0, 7), 5);
        end(&mut t, 1, 0, true, 7).unwrap();
        assert_eq!(t.last_stable_offset(0, 8), 8);
        // A marker without an open transaction changes nothing but its producer's offsets.
        end(&mut t, 2, 0, false, 8).unwrap();
        end(&mut t, 9, 0, false, 9).unwrap();
        assert_eq!(t.aborted().count(), 2, "an abort of nothing is not remembered (as in Kafka)");
        assert_eq!(t.get(9).unwrap().epoch, 0, "an unknown producer is known from its marker on");
        // Fetch's aborted list: marker at or after the fetch offset, first offset below the bound.
        assert_eq!(t.aborted_between(0, 10), vec![aborted(1, 0, 4), aborted(2, 2, 6)]);
        assert_eq!(t.aborted_between(5, 10), vec![aborted(2, 2, 6)]);
        assert_eq!(t.aborted_between(0, 2), vec![aborted(1, 0, 4)], "producer 2's starts at 2");
        assert_eq!(t.aborted_between(0, 1), vec![aborted(1, 0, 4)]);
        assert_eq!(t.aborted_between(7, 10), vec![]);
        assert_eq!(t.aborted_between(4, 3), vec![aborted(1, 0, 4), aborted(2, 2, 6)]);
    }

    #[test]
    fn the_aborted_list_is_sorted_by_first_offset_and_its_lookup_stops_early() {
        let mut t = ProducerStateTable::new();
        append(&mut t, txn(1, 0, 0, 1, 0)).unwrap();
        append(&mut t, txn(2, 0, 0, 1, 1)).unwrap();
        end(&mut t, 2, 0, false, 2).unwrap(); // aborted (2: 1..=2), LSO after it 0
        end(&mut t, 1, 0, false, 3).unwrap(); // aborted (1: 0..=3), LSO after it 4
        for i in 0..5 {
            append(&mut t, txn(1, 0, 1 + i, 1, 4 + i64::from(i) * 2)).unwrap();
            end(&mut t, 1, 0, false, 5 + i64::from(i) * 2).unwrap();
        }
        assert_eq!(t.aborted_between(0, 4), vec![aborted(1, 0, 3), aborted(2, 1, 2)], "by first offset");
        assert_eq!(
            t.aborted_between(2, 7),
            vec![aborted(1, 0, 3), aborted(2, 1, 2), aborted(1, 4, 5), aborted(1, 6, 7)]
        );
        assert_eq!(t.aborted_between(8, 14), vec![aborted(1, 8, 9), aborted(1, 10, 11), aborted(1, 12, 13)]);
    }

    #[test]
    fn a_marker_at_a_newer_epoch_fences_the_older_one() {
        let mut t = ProducerStateTable::new();
        append(&mut t, txn(1, 0, 0, 3, 0)).unwrap();
        // The coordinator aborts with a bumped epoch (KIP-360).
        end(&mut t, 1, 1, false, 3).unwrap();
        let e = t.get(1).unwrap();
        assert_eq!((e.epoch, e.last_seq(), e.batches().count(), e.txn_first_offset()), (1, -1, 0, None));
        assert_eq!(t.aborted().copied().collect::<Vec<_>>(), vec![aborted(1, 0, 3)]);
        // The zombie at epoch 0 is fenced, its retry is no duplicate any more.
        assert_eq!(code(append(&mut t, txn(1, 0, 3, 1, 4))), 47);
        assert_eq!(code(append(&mut t, txn(1, 0, 0, 3, 4))), 47);
        // At the new epoch, sequences start again at 0.
        assert_eq!(code(append(&mut t, txn(1, 1, 3, 1, 4))), 45);
        append(&mut t, txn(1, 1, 0, 1, 4)).unwrap();
        assert_eq!(t.last_stable_offset(0, 5), 4);
        // A marker of an older epoch is refused and changes nothing.
        let stale = TxnMarker { producer_id: 1, producer_epoch: 0, commit: true, coordinator_epoch: 0 };
        assert_eq!(t.check_marker(&stale, 5, 0).unwrap_err().kafka_code(), 47);
        assert_eq!(t.last_stable_offset(0, 5), 4);
        // One at the same epoch does not touch the sequences.
        end(&mut t, 1, 1, true, 5).unwrap();
        assert_eq!(code(append(&mut t, header(1, 1, 3, 1, 6))), 45, "a gap: not a restart");
        append(&mut t, header(1, 1, 1, 1, 6)).unwrap();
        let p = t.snapshot()[0];
        assert_eq!((p.epoch, p.last_sequence, p.txn_start_offset), (1, 1, -1));
    }

    #[test]
    fn a_non_transactional_batch_during_an_open_transaction_is_refused() {
        let mut t = ProducerStateTable::new();
        append(&mut t, txn(1, 0, 0, 1, 0)).unwrap();
        let refused = append(&mut t, header(1, 0, 1, 1, 1)).unwrap_err();
        assert!(matches!(refused, StorageError::InvalidTxnState(_)), "{refused:?}");
        assert_eq!(refused.kafka_code(), 48);
        // Within one append too, all or nothing.
        assert_eq!(
            t.check(&[txn(1, 0, 1, 1, 1), header(1, 0, 2, 1, 2)], none, false).unwrap_err().kafka_code(),
            48
        );
        assert_eq!(t.get(1).unwrap().last_seq(), 0, "nothing of it counted");
        // Other producers are not concerned.
        append(&mut t, header(2, 0, 0, 1, 1)).unwrap();
        append(&mut t, header(-1, -1, -1, 1, 2)).unwrap();
        end(&mut t, 1, 0, true, 3).unwrap();
        append(&mut t, header(1, 0, 1, 1, 4)).unwrap();
        // A transactional batch needs a producer id.
        let mut anonymous = header(-1, -1, -1, 1, 5);
        anonymous.attributes |= 0x10;
        assert_eq!(code(append(&mut t, anonymous)), 87);
    }

    #[test]
    fn control_batches_from_clients_are_refused() {
        let t = ProducerStateTable::new();
        let b = with_attributes(&idempotent_batch(1, -1, -1, -1), 0x20);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(t.check(&[h], none, false).unwrap_err().kafka_code(), 87);
        let marker = BatchHeader::parse(&crate::record::batch::end_txn_marker(1, 0, true, 0, 0)).unwrap();
        assert_eq!(t.check(&[marker], none, false).unwrap_err().kafka_code(), 87, "not even a real marker");
        assert!(t.is_empty());
    }

    #[test]
    fn replaying_the_log_rebuilds_open_and_aborted_transactions() {
        // The same log, appended with checks and replayed from its stored headers.
        let mut live = ProducerStateTable::new();
        let mut replayed = ProducerStateTable::new();
        let marker = |pid: i64, epoch: i16, commit: bool, offset: i64| {
            let bytes = crate::record::batch::end_txn_marker(pid, epoch, commit, 0, 1000 + offset);
            let mut h = BatchHeader::parse(&bytes).unwrap();
            h.base_offset = offset;
            h
        };
        for h in [txn(1, 0, 0, 2, 0), txn(2, 0, 0, 1, 2), header(3, 0, 0, 1, 3)] {
            append(&mut live, h).unwrap();
            replayed.replay(&h);
        }
        for (pid, epoch, commit, offset) in [(1, 0, false, 4), (2, 1, true, 5)] {
            end(&mut live, pid, epoch, commit, offset).unwrap();
            let control = if commit { ControlType::Commit } else { ControlType::Abort };
            replayed.replay_marker(&marker(pid, epoch, commit, offset), control);
            replayed.replay(&marker(pid, epoch, commit, offset)); // a control header: ignored
        }
        let h = txn(1, 0, 2, 1, 6);
        append(&mut live, h).unwrap();
        replayed.replay(&h);
        assert_eq!(replayed.snapshot(), live.snapshot());
        assert_eq!(replayed.open_transactions().collect::<Vec<_>>(), vec![(1, 6)]);
        assert_eq!(replayed.aborted().collect::<Vec<_>>(), live.aborted().collect::<Vec<_>>());
        assert_eq!(replayed.aborted_between(0, 7), vec![aborted(1, 0, 4)]);
        assert_eq!(replayed.last_stable_offset(0, 7), 6);
    }

    #[test]
    fn seeding_what_lies_below_a_log_start_and_replaying_the_rest_gives_the_same_state() {
        // The log: batches (headers with their offsets) and markers (producer, epoch, commit,
        // offset). Cut at every log start, seeded and replayed, it must give what appending it
        // and evicting below the log start gives.
        enum Event {
            Batch(BatchHeader),
            Marker(i64, i16, bool, i64),
        }
        let events = [
            Event::Batch(txn(1, 0, 0, 2, 0)),    // 1 opens at 0
            Event::Batch(header(2, 0, 0, 1, 2)), // 2: idempotent
            Event::Batch(txn(3, 0, 0, 1, 3)),    // 3 opens at 3
            Event::Batch(header(2, 0, 1, 1, 4)),
            Event::Marker(3, 0, true, 5),     // 3 commits
            Event::Batch(txn(4, 0, 0, 1, 6)), // 4 opens at 6
            Event::Batch(txn(1, 0, 2, 1, 7)),
            Event::Marker(1, 1, false, 8), // 1 aborted at a new epoch: 0..=8
            Event::Batch(header(2, 0, 2, 1, 9)),
            Event::Batch(txn(3, 0, 1, 1, 10)), // 3 opens at 10
            Event::Batch(txn(4, 0, 1, 1, 11)),
            Event::Marker(4, 0, false, 12), // 4 aborted: 6..=12
            Event::Batch(header(5, 0, 0, 1, 13)),
        ];
        for log_start in 0..=14 {
            let mut live = ProducerStateTable::new();
            for e in &events {
                match e {
                    Event::Batch(h) => {
                        append(&mut live, *h).unwrap();
                    }
                    Event::Marker(pid, epoch, commit, offset) => {
                        end(&mut live, *pid, *epoch, *commit, *offset).unwrap()
                    }
                }
            }
            let seeds = live.below(log_start);
            live.evict_before(log_start);
            let mut replayed = ProducerStateTable::new();
            replayed.seed(seeds);
            for e in &events {
                match e {
                    Event::Batch(h) if h.base_offset >= log_start => replayed.replay(h),
                    Event::Marker(pid, epoch, commit, offset) if *offset >= log_start => {
                        let bytes =
                            crate::record::batch::end_txn_marker(*pid, *epoch, *commit, 0, 1000 + offset);
                        let mut h = BatchHeader::parse(&bytes).unwrap();
                        h.base_offset = *offset;
                        let control = if *commit { ControlType::Commit } else { ControlType::Abort };
                        replayed.replay_marker(&h, control);
                    }
                    _ => {}
                }
            }
            replayed.evict_before(log_start);
            assert_eq!(replayed.snapshot(), live.snapshot(), "from {log_start}");
            for pid in 1..=5 {
                let batches =
                    |t: &ProducerStateTable| t.get(pid).map(|e| e.batches().copied().collect::<Vec<_>>());
                assert_eq!(batches(&replayed), batches(&live), "producer {pid} from {log_start}");
            }
            assert_eq!(
                replayed.open_transactions().collect::<Vec<_>>(),
                live.open_transactions().collect::<Vec<_>>(),
                "from {log_start}"
            );
            assert_eq!(replayed.aborted().collect::<Vec<_>>(), live.aborted().collect::<Vec<_>>());
            for offset in log_start..=14 {
                for upper in offset..=14 {
                    assert_eq!(replayed.aborted_between(offset, upper), live.aborted_between(offset, upper));
                }
            }
        }
    }

    #[test]
    fn eviction_forgets_open_and_aborted_transactions_below_the_log_start() {
        let mut t = ProducerStateTable::new();
        append(&mut t, txn(1, 0, 0, 1, 0)).unwrap();
        end(&mut t, 1, 0, false, 1).unwrap();
        append(&mut t, txn(2, 0, 0, 1, 2)).unwrap();
        append(&mut t, txn(3, 0, 0, 1, 3)).unwrap();
        append(&mut t, txn(3, 0, 1, 1, 4)).unwrap();
        assert_eq!(t.evict_before(1), 0, "producer 1's marker is at 1");
        assert_eq!(t.aborted().count(), 1);
        assert_eq!(t.evict_before(3), 2, "producers 1 and 2");
        assert_eq!(t.aborted().count(), 0);
        assert_eq!(t.open_transactions().collect::<Vec<_>>(), vec![(3, 3)]);
        assert_eq!(t.evict_before(4), 0, "producer 3's last batch is at 4: its transaction stays open");
        assert_eq!(t.last_stable_offset(4, 5), 4, "from the log start");
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
