//! One transactional id's state, as the transaction log stores it (JSON, one record per id) and
//! the coordinator changes it. Pure: time is passed in.

use super::{Description, Producer};
use crate::coord::OffsetCommit;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Kafka's transaction states (`TransactionState`), without Dead and PrepareEpochFence (the
/// coordinator fences and aborts under one lock, so nobody sees the step between).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name, as DescribeTransactions and ListTransactions report it.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    /// Decided but not finished: markers (and offsets) still to write.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset a transaction commits when it commits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
    /// When TxnOffsetCommit gave it (ms since the epoch; None in state stored before this was
    /// kept): an offset the group committed later is not overwritten when the transaction
    /// commits (Kafka keeps the later record of `__consumer_offsets`), also when recovery
    /// applies the offsets again.
    #[serde(default)]
    pub committed_ms: Option<i64>,
}

/// A transactional id's producer, its open transaction and what it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    /// The producer before the last bump (KIP-360: a retried InitProducerId is answered again).
    pub last_producer_id: i64,
    pub last_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// The data partitions of the open (or prepared) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// The groups whose offsets it commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// Its offsets (TxnOffsetCommit), the latest per group and partition.
    pub offsets: Vec<PendingOffset>,
    /// When the last transaction began (ms since the epoch), -1 before the first.
    pub start_ms: i64,
    /// The producer id a prepared transaction's completion moves to (transaction version 2,
    /// when ending it exhausted the epoch: Kafka's nextProducerId), -1 otherwise. Stored with
    /// the prepare, so the next host that finishes it moves to the same one.
    #[serde(default = "no_producer")]
    pub next_producer_id: i64,
}

fn no_producer() -> i64 {
    -1
}

impl TxnMeta {
    /// A new transactional id's state: `producer_id` at epoch 0, no transaction.
    pub fn new(producer_id: i64, timeout_ms: i32) -> TxnMeta {
        TxnMeta {
            producer_id,
            epoch: 0,
            last_producer_id: -1,
            last_epoch: -1,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            offsets: Vec::new(),
            start_ms: -1,
            next_producer_id: -1,
        }
    }

    /// The next epoch. With `remember`, the one before is kept as the one a retry of this
    /// bump may name (only when the client named its producer: KIP-360, Kafka's
    /// lastProducerEpoch); else none may.
    pub fn bump_epoch(&mut self, remember: bool) {
        self.remember(remember);
        self.epoch = self.epoch.saturating_add(1);
    }

    /// A new producer id at epoch 0 (the epoch is exhausted); `remember` as for
    /// [`bump_epoch`](Self::bump_epoch).
    pub fn new_producer(&mut self, producer_id: i64, remember: bool) {
        self.remember(remember);
        self.producer_id = producer_id;
        self.epoch = 0;
    }

    fn remember(&mut self, remember: bool) {
        (self.last_producer_id, self.last_epoch) =
            if remember { (self.producer_id, self.epoch) } else { (-1, -1) };
    }

    /// A transaction is open from now on (a no-op when one is).
    pub fn begin(&mut self, now: i64) {
        if self.state != TxnState::Ongoing {
            self.state = TxnState::Ongoing;
            self.start_ms = now;
            self.partitions.clear();
            self.groups.clear();
            self.offsets.clear();
        }
    }

    /// The transaction is over: nothing open (its start stays, as Kafka describes it). A
    /// rotation decided with it (`next_producer_id`) takes effect: the new id at epoch 0, the
    /// old one remembered (a retry of the EndTxn that rotated names it).
    pub fn finish(&mut self, commit: bool) {
        if self.next_producer_id >= 0 {
            let next = std::mem::replace(&mut self.next_producer_id, -1);
            self.new_producer(next, true);
        }
        self.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        self.partitions.clear();
        self.groups.clear();
        self.offsets.clear();
    }

    /// An open transaction older than its timeout.
    pub fn expired(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.start_ms >= 0
            && now.saturating_sub(self.start_ms) > i64::from(self.timeout_ms)
    }

    /// Keep `o` as the group's offset of its partition in this transaction.
    pub fn put_offset(&mut self, group: &str, o: &OffsetCommit, now_ms: i64) {
        let entry = PendingOffset {
            group: group.to_string(),
            topic: o.topic.clone(),
            partition: o.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch,
            metadata: o.metadata.clone(),
            committed_ms: Some(now_ms),
        };
        match self
            .offsets
            .iter_mut()
            .find(|p| p.group == group && p.topic == o.topic && p.partition == o.partition)
        {
            Some(p) => *p = entry,
            None => self.offsets.push(entry),
        }
    }

    /// The transaction's offsets, per group.
    pub fn offsets_by_group(&self) -> BTreeMap<String, Vec<(OffsetCommit, Option<i64>)>> {
        let mut out: BTreeMap<String, Vec<(OffsetCommit, Option<i64>)>> = BTreeMap::new();
        for p in &self.offsets {
            let o = OffsetCommit {
                topic: p.topic.clone(),
                partition: p.partition,
                offset: p.offset,
                leader_epoch: p.leader_epoch,
                metadata: p.metadata.clone(),
            };
            out.entry(p.group.clone()).or_default().push((o, p.committed_ms));
        }
        out
    }

    pub fn describe(&self, id: &str) -> Description {
        Description {
            transactional_id: id.to_string(),
            error: guise_guest_sdk::error::NONE,
            state: self.state.name(),
            timeout_ms: self.timeout_ms,
            start_ms: self.start_ms,
            producer: Producer { id: self.producer_id, epoch: self.epoch },
            partitions: self.partitions.iter().cloned().collect(),
        }
    }
}
