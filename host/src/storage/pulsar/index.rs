//! The offset index of one partition (Kafka offsets to Pulsar message ids) and the rules that
//! rebuild it from the partition topic's messages. Pure: no I/O, so the rules are unit-tested
//! over sequences of messages.
//!
//! Recovery reads the topic from the start, in order, and keeps an entry only if it
//! * carries this topic's id (a deleted and re-created topic leaves the old messages behind),
//! * comes from the highest writer epoch seen so far (a fenced writer's late messages are
//!   skipped: its successor wrote a fence marker with a higher epoch before anything else), and
//! * starts at the next offset (a gap or an overlap is a zombie's or a torn write).
//!
//! A fence marker with a higher epoch is authoritative: the new writer continues at its `next`
//! offset, so entries at or past it (written by the old writer after the new one read the
//! topic, never seen by it) are dropped. A record batch (format `pulsar`, one message per record)
//! counts only once all its messages have been read, in order; a torn batch is dropped.

use super::props::{BatchInfo, Kind, Props};
use crate::record::batch::{self, BatchHeader, ControlType};
use crate::storage::IngressMark;
use crate::storage::producers::ProducerStateTable;

/// Ingress marks kept with the offsets of their entries; older ones fold into one.
const MARKS_KEPT: usize = 256;

/// A Pulsar message id, as far as ordering goes (our messages are never batched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId {
    pub ledger: u64,
    pub entry: u64,
}

impl MsgId {
    pub fn of(id: &pulsar::proto::MessageIdData) -> MsgId {
        MsgId { ledger: id.ledger_id, entry: id.entry_id }
    }

    pub fn to_data(self) -> pulsar::proto::MessageIdData {
        pulsar::proto::MessageIdData { ledger_id: self.ledger, entry_id: self.entry, ..Default::default() }
    }
}

/// The idempotent-producer fields of a stored batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerInfo {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// One stored Kafka batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub base: i64,
    pub last: i64,
    /// The (first) message holding it.
    pub id: MsgId,
    /// The writer epoch it was written with.
    pub epoch: u64,
    /// Messages it takes: 1 for format `kafka`, one per record for format `pulsar`.
    pub messages: u32,
    /// Bytes of payload (for retention.bytes and fetch sizing).
    pub bytes: u64,
    pub max_timestamp: i64,
    pub compressed: bool,
    pub producer: Option<ProducerInfo>,
    /// Its part in a transaction (KIP-98); always `None` in a record batch (format `pulsar`
    /// stores transactional batches and markers as format `kafka` does, see `partition`).
    pub txn: Txn,
}

/// A stored batch's part in a transaction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Txn {
    #[default]
    None,
    /// A transactional data batch.
    Data,
    /// A transaction marker (a control batch), COMMIT or ABORT.
    Marker(ControlType),
}

impl Txn {
    /// The part of the stored batch `bytes`, whose header is `header`.
    pub fn of(header: &BatchHeader, bytes: &[u8]) -> Txn {
        if header.is_control() {
            // A control batch of another type than ABORT or COMMIT is never written here.
            batch::control_type(bytes).map_or(Txn::None, Txn::Marker)
        } else if header.is_transactional() {
            Txn::Data
        } else {
            Txn::None
        }
    }

    /// The batch attributes that say so (for replaying the producers' state).
    fn attributes(self) -> i16 {
        match self {
            Txn::None => 0,
            Txn::Data => batch::TRANSACTIONAL,
            Txn::Marker(_) => batch::TRANSACTIONAL | batch::CONTROL,
        }
    }
}

impl IndexEntry {
    /// The header fields the idempotent-producer table replays.
    pub fn replay_header(&self) -> Option<BatchHeader> {
        let p = self.producer?;
        Some(BatchHeader {
            base_offset: self.base,
            batch_length: 0,
            partition_leader_epoch: -1,
            magic: batch::MAGIC_V2,
            crc: 0,
            attributes: self.txn.attributes(),
            last_offset_delta: i32::try_from(self.last - self.base).unwrap_or(i32::MAX),
            base_timestamp: self.max_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: p.id,
            producer_epoch: p.epoch,
            base_sequence: p.base_sequence,
            records_count: 0,
        })
    }

    /// The entry for a Kafka batch as stored (base offset patched in), whose part in a
    /// transaction is `txn`.
    pub fn of_batch(header: &BatchHeader, id: MsgId, epoch: u64, txn: Txn) -> IndexEntry {
        IndexEntry {
            base: header.base_offset,
            last: header.last_offset(),
            id,
            epoch,
            messages: 1,
            bytes: header.size() as u64,
            max_timestamp: header.max_timestamp,
            compressed: header.is_compressed(),
            producer: (header.producer_id >= 0).then_some(ProducerInfo {
                id: header.producer_id,
                epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
            }),
            txn,
        }
    }
}

/// The position of the entry holding `offset`, or of the first one after it when compaction
/// removed it (as Kafka, a read of a removed offset returns the next batch).
pub fn find(entries: &std::collections::VecDeque<IndexEntry>, offset: i64) -> Option<usize> {
    let i = entries.partition_point(|e| e.last < offset);
    (i < entries.len()).then_some(i)
}

/// What recovery did with a message (for logs and tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    Accepted,
    /// Part of a record batch, not complete yet.
    Pending,
    Fence,
    /// A writer's probe of the topic's end: nothing.
    Probe,
    /// A compaction's copy, kept aside until its commit marker.
    Copy,
    /// A compaction's commit: its copies replaced the index.
    Compacted,
    NotOurs,
    OtherTopic,
    StaleEpoch,
    OutOfSequence,
    Corrupt,
}

/// A record batch being read, message by message.
#[derive(Debug)]
struct PendingBatch {
    entry: IndexEntry,
    info: BatchInfo,
    seen: u32,
}

/// Entries read in offset order: the partition's, or a compaction's copies.
#[derive(Debug, Default)]
struct Track {
    entries: Vec<IndexEntry>,
    next: Option<i64>,
    pending: Option<PendingBatch>,
}

impl Track {
    /// Whether a batch at `base` may come next: right after the previous one, or, for a
    /// compaction's copies (`gaps`), anywhere after it.
    fn fits(&self, base: i64, gaps: bool) -> bool {
        self.next.is_none_or(|n| if gaps { base >= n } else { base == n })
    }

    /// A data message (a Kafka batch, or one record of a record batch).
    fn data(&mut self, id: MsgId, props: Props, payload: &[u8], gaps: bool) -> Seen {
        // A pending record batch continues only with its own next message.
        if let Some(p) = &mut self.pending {
            let continues = matches!(props.kind, Kind::Record { offset, batch }
                if props.epoch == p.entry.epoch && batch == BatchInfo { index: p.seen, ..p.info }
                    && offset >= batch.base);
            if continues {
                p.seen += 1;
                p.entry.bytes = p.entry.bytes.saturating_add(payload.len() as u64);
                if p.seen == p.info.messages() {
                    let done = self.pending.take().expect("pending").entry;
                    return self.push(done);
                }
                return Seen::Pending;
            }
            // A torn batch: its writer never acknowledged it.
            self.pending = None;
        }
        match props.kind {
            Kind::Kafka { base, last } => {
                if !self.fits(base, gaps) {
                    return Seen::OutOfSequence;
                }
                let header = match batch::validate_with(payload, u32::MAX, batch::Counts::Span) {
                    Ok(b) if b.len() == 1 => b[0].header,
                    _ => return Seen::Corrupt,
                };
                // (Props::parse keeps `last` at most MAX_LAST, so `last + 1` is an offset.)
                if header.base_offset != base || header.last_offset() != last {
                    return Seen::Corrupt;
                }
                self.push(IndexEntry::of_batch(&header, id, props.epoch, Txn::of(&header, payload)))
            }
            Kind::Record { offset, batch } => {
                // A compaction's copy may have lost the batch's first records.
                let first_offset = if gaps { offset >= batch.base } else { offset == batch.base };
                if batch.index != 0 || !self.fits(batch.base, gaps) || !first_offset {
                    // A record batch starts with its first message at its base offset (an empty
                    // batch's only message too); a later message alone is a torn batch's rest.
                    return if batch.index != 0 { Seen::Corrupt } else { Seen::OutOfSequence };
                }
                let entry = IndexEntry {
                    base: batch.base,
                    last: batch.last,
                    id,
                    epoch: props.epoch,
                    messages: batch.messages(),
                    bytes: payload.len() as u64,
                    max_timestamp: batch.max_timestamp,
                    compressed: batch.codec != 0,
                    producer: (batch.producer_id >= 0).then_some(ProducerInfo {
                        id: batch.producer_id,
                        epoch: batch.producer_epoch,
                        base_sequence: batch.base_sequence,
                    }),
                    txn: Txn::None,
                };
                if batch.messages() == 1 {
                    return self.push(entry);
                }
                self.pending = Some(PendingBatch { entry, info: batch, seen: 1 });
                Seen::Pending
            }
            Kind::Fence { .. } | Kind::Probe | Kind::Compacted { .. } => Seen::Corrupt,
        }
    }

    fn push(&mut self, entry: IndexEntry) -> Seen {
        // Props::parse keeps `last` below i64::MAX; a caller that did not is refused here.
        let Some(next) = entry.last.checked_add(1) else { return Seen::Corrupt };
        self.next = Some(next);
        self.entries.push(entry);
        Seen::Accepted
    }
}

/// The index rebuilt from a partition topic, message by message.
#[derive(Debug)]
pub struct Recovery {
    topic_id: uuid::Uuid,
    /// The highest writer epoch seen (0: none).
    pub max_epoch: u64,
    track: Track,
    /// A compaction's copies read since the last other message.
    copies: Option<Track>,
    /// Nothing but probes since the last fence: a pass's copies may start.
    after_fence: bool,
    start: i64,
    /// Whether `start` is the log start as recorded by a compaction: the first entry may be
    /// later (its records were compacted away), and the log still starts at `start`.
    exact_start: bool,
    /// The offset up to which the last compaction rewrote the partition.
    cleaned_to: i64,
    /// The ingress marks of accepted entries, by the entry's last offset (a fence may still
    /// drop the entries, and their marks with them), and the highest mark folded or committed.
    marks: std::collections::VecDeque<(i64, IngressMark)>,
    mark_floor: Option<IngressMark>,
    pub skipped: u64,
}

/// The outcome of [`Recovery::finish`].
#[derive(Debug)]
pub struct Recovered {
    pub entries: std::collections::VecDeque<IndexEntry>,
    pub log_start: i64,
    pub next_offset: i64,
    pub max_epoch: u64,
    pub producers: ProducerStateTable,
    /// Where the last compaction's rewrite ended (the log start when none did).
    pub cleaned_to: i64,
    /// The last ingress message in the log.
    pub ingress: Option<IngressMark>,
}

impl Recovery {
    pub fn new(topic_id: uuid::Uuid) -> Recovery {
        Recovery {
            topic_id,
            max_epoch: 0,
            track: Track::default(),
            copies: None,
            after_fence: false,
            start: 0,
            exact_start: false,
            cleaned_to: 0,
            marks: Default::default(),
            mark_floor: None,
            skipped: 0,
        }
    }

    /// Take the ingress mark of the message just fed, which `feed` answered with `seen`: it
    /// counts once its entry is accepted, or from a compaction's commit.
    pub fn feed_mark(&mut self, seen: Seen, mark: Option<IngressMark>) {
        let Some(mark) = mark else { return };
        match seen {
            Seen::Accepted => {
                if let Some(e) = self.track.entries.last() {
                    self.marks.push_back((e.last, mark));
                }
                if self.marks.len() > MARKS_KEPT
                    && let Some((_, old)) = self.marks.pop_front()
                {
                    self.mark_floor = self.mark_floor.max(Some(old));
                }
            }
            Seen::Compacted => self.mark_floor = self.mark_floor.max(Some(mark)),
            _ => {}
        }
    }

    /// Take the next message of the topic: its id, parsed properties and payload.
    pub fn feed(&mut self, id: MsgId, props: Option<Props>, payload: &[u8]) -> Seen {
        let seen = self.apply(id, props, payload);
        if !matches!(
            seen,
            Seen::Accepted | Seen::Pending | Seen::Fence | Seen::Probe | Seen::Copy | Seen::Compacted
        ) {
            self.skipped += 1;
        }
        seen
    }

    fn apply(&mut self, id: MsgId, props: Option<Props>, payload: &[u8]) -> Seen {
        let Some(props) = props else { return Seen::NotOurs };
        if props.topic_id != self.topic_id {
            return Seen::OtherTopic;
        }
        if props.kind == Kind::Probe {
            // Written by a writer that owns the topic while nothing else can write: it neither
            // continues nor tears a record batch.
            return Seen::Probe;
        }
        if props.epoch < self.max_epoch {
            return Seen::StaleEpoch;
        }
        if props.copy {
            // By the current writer, right after the fence it starts a pass with.
            let starts = self.copies.is_none();
            if props.epoch != self.max_epoch || self.track.next.is_none() || (starts && !self.after_fence) {
                return Seen::OutOfSequence;
            }
            let copies = self.copies.get_or_insert_with(Track::default);
            return match copies.data(id, props, payload, true) {
                Seen::Accepted | Seen::Pending => Seen::Copy,
                other => other,
            };
        }
        // Anything else ends a compaction's copies: its commit, or a pass cut short (its writer
        // sends the copies and the commit under one lock, nothing between them).
        let copies = self.copies.take();
        match props.kind {
            Kind::Compacted { upto, start } => {
                self.track.pending = None;
                self.after_fence = false;
                // A pass keeps at least its last batch: a commit without copies is none.
                let Some(copies) = copies else { return Seen::OutOfSequence };
                if props.epoch != self.max_epoch || self.track.next != Some(upto) {
                    return Seen::OutOfSequence;
                }
                if copies.pending.is_some() || copies.next.is_some_and(|n| n > upto) {
                    return Seen::Corrupt;
                }
                self.track.entries = copies.entries;
                self.start = start.min(upto);
                self.exact_start = true;
                self.cleaned_to = upto;
                Seen::Compacted
            }
            Kind::Fence { next, start } => {
                self.track.pending = None;
                if self.track.next.is_some_and(|n| n != next) {
                    tracing::warn!(
                        "a writer at epoch {} continues at offset {next}, not {:?}; entries from {next} on are dropped",
                        props.epoch,
                        self.track.next
                    );
                }
                self.max_epoch = props.epoch;
                self.after_fence = true;
                self.track.entries.retain(|e| e.last < next);
                self.marks.retain(|(last, _)| *last < next);
                self.track.next = Some(next);
                self.start = self.start.max(start).min(next);
                self.cleaned_to = self.cleaned_to.min(next);
                Seen::Fence
            }
            Kind::Probe => Seen::Probe,
            Kind::Kafka { .. } | Kind::Record { .. } => {
                let seen = self.track.data(id, props, payload, false);
                if matches!(seen, Seen::Accepted | Seen::Pending) {
                    self.max_epoch = props.epoch;
                    self.after_fence = false;
                }
                seen
            }
        }
    }

    pub fn finish(self) -> Recovered {
        let next_offset = self.track.next.unwrap_or(0);
        let mut entries: std::collections::VecDeque<IndexEntry> =
            self.track.entries.into_iter().filter(|e| e.last >= self.start).collect();
        // Retention in Pulsar may have removed the oldest messages: the log starts at the first
        // entry kept, or at the recorded start (a compaction records it exactly).
        let log_start = if self.exact_start {
            self.start.min(next_offset)
        } else {
            entries.front().map_or(next_offset, |e| e.base.max(self.start))
        };
        let mut producers = ProducerStateTable::new();
        for e in entries.iter_mut() {
            if let Some(h) = e.replay_header() {
                match e.txn {
                    Txn::Marker(control) => producers.replay_marker(&h, control),
                    _ => producers.replay(&h),
                }
            }
        }
        let cleaned_to = self.cleaned_to.clamp(log_start, next_offset);
        let ingress = self.marks.iter().map(|(_, m)| *m).max().max(self.mark_floor);
        Recovered {
            entries,
            log_start,
            next_offset,
            max_epoch: self.max_epoch,
            producers,
            cleaned_to,
            ingress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::testing::{batch, idempotent_batch};

    fn id(n: u64) -> MsgId {
        MsgId { ledger: 1, entry: n }
    }

    fn kafka(topic_id: uuid::Uuid, epoch: u64, base: i64, n: usize) -> (Option<Props>, Vec<u8>) {
        let mut b = batch(n, 5, 1000 + base);
        b[..8].copy_from_slice(&base.to_be_bytes());
        let last = base + n as i64 - 1;
        (Some(Props { topic_id, epoch, kind: Kind::Kafka { base, last }, copy: false }), b)
    }

    fn fence(topic_id: uuid::Uuid, epoch: u64, next: i64) -> (Option<Props>, Vec<u8>) {
        (Some(Props { topic_id, epoch, kind: Kind::Fence { next, start: 0 }, copy: false }), Vec::new())
    }

    fn record(
        topic_id: uuid::Uuid,
        epoch: u64,
        base: i64,
        index: u32,
        count: u32,
    ) -> (Option<Props>, Vec<u8>) {
        let batch = BatchInfo {
            base,
            last: base + i64::from(count.max(1)) - 1,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            codec: 0,
            index,
            count,
            max_timestamp: 77,
        };
        let offset = base + i64::from(index);
        (
            Some(Props { topic_id, epoch, kind: Kind::Record { offset, batch }, copy: false }),
            b"value".to_vec(),
        )
    }

    fn run(topic_id: uuid::Uuid, messages: &[(Option<Props>, Vec<u8>)]) -> (Vec<Seen>, Recovered) {
        let mut r = Recovery::new(topic_id);
        let seen = messages.iter().enumerate().map(|(i, (p, b))| r.feed(id(i as u64), *p, b)).collect();
        (seen, r.finish())
    }

    fn bases(r: &Recovered) -> Vec<(i64, i64)> {
        r.entries.iter().map(|e| (e.base, e.last)).collect()
    }

    #[test]
    fn entries_of_one_writer_are_indexed() {
        let t = uuid::Uuid::new_v4();
        let (seen, r) = run(t, &[fence(t, 1, 0), kafka(t, 1, 0, 3), kafka(t, 1, 3, 2)]);
        assert_eq!(seen, [Seen::Fence, Seen::Accepted, Seen::Accepted]);
        assert_eq!(bases(&r), [(0, 2), (3, 4)]);
        assert_eq!((r.log_start, r.next_offset, r.max_epoch), (0, 5, 1));
        assert_eq!(r.entries[1].id, id(2));
        assert_eq!(find(&r.entries, 4), Some(1));
        assert_eq!(find(&r.entries, 0), Some(0));
        assert_eq!(find(&r.entries, 5), None);
    }

    #[test]
    fn the_last_ingress_mark_is_the_one_of_an_entry_the_log_kept() {
        let t = uuid::Uuid::new_v4();
        let mark = |entry: u64| Some(IngressMark { ledger: 7, entry, index: -1 });
        let mut r = Recovery::new(t);
        let feed = |r: &mut Recovery, (props, payload): (Option<Props>, Vec<u8>), m| {
            let seen = r.feed(id(0), props, &payload);
            r.feed_mark(seen, m);
        };
        feed(&mut r, fence(t, 1, 0), None);
        feed(&mut r, kafka(t, 1, 0, 2), mark(1));
        feed(&mut r, kafka(t, 1, 2, 2), mark(2));
        // A newer writer fenced at 2: the second append is not in the log, nor is its mark; nor
        // is the mark of a stale writer's late append.
        feed(&mut r, fence(t, 2, 2), None);
        feed(&mut r, kafka(t, 1, 4, 2), mark(9));
        assert_eq!(r.finish().ingress, mark(1));

        let mut r = Recovery::new(t);
        feed(&mut r, fence(t, 1, 0), None);
        for i in 0..(MARKS_KEPT as i64 + 10) {
            feed(&mut r, kafka(t, 1, i, 1), mark(i as u64));
        }
        assert_eq!(r.finish().ingress, mark(MARKS_KEPT as u64 + 9), "old marks fold into one");
    }

    #[test]
    fn ingress_marks_order_as_pulsar_delivers() {
        let m = |ledger, entry, index| IngressMark { ledger, entry, index };
        assert!(m(1, 5, -1) < m(1, 6, 0) && m(1, 6, 0) < m(1, 6, 1) && m(1, 6, 9) < m(2, 0, -1));
        assert_eq!("3:4:-1".parse::<IngressMark>(), Ok(m(3, 4, -1)));
        assert_eq!(m(3, 4, 2).to_string().parse::<IngressMark>(), Ok(m(3, 4, 2)));
        assert!("3:4".parse::<IngressMark>().is_err() && "3:4:-2".parse::<IngressMark>().is_err());
    }

    #[test]
    fn a_zombie_writer_is_skipped_after_the_fence() {
        let t = uuid::Uuid::new_v4();
        let (seen, r) = run(
            t,
            &[
                fence(t, 1, 0),
                kafka(t, 1, 0, 2),
                fence(t, 2, 2),
                kafka(t, 1, 2, 1), // the old writer, late
                kafka(t, 2, 2, 3),
                kafka(t, 1, 3, 1), // still late
                kafka(t, 2, 9, 1), // a gap: never written by a sane writer
                kafka(t, 2, 5, 1),
            ],
        );
        assert_eq!(
            seen,
            [
                Seen::Fence,
                Seen::Accepted,
                Seen::Fence,
                Seen::StaleEpoch,
                Seen::Accepted,
                Seen::StaleEpoch,
                Seen::OutOfSequence,
                Seen::Accepted
            ]
        );
        assert_eq!(bases(&r), [(0, 1), (2, 4), (5, 5)]);
        assert_eq!((r.next_offset, r.max_epoch), (6, 2));
    }

    #[test]
    fn offsets_at_the_end_of_the_range_never_overflow() {
        let t = uuid::Uuid::new_v4();
        let mut b = batch(1, 5, 1000);
        b[..8].copy_from_slice(&i64::MAX.to_be_bytes());
        let kafka_max = Some(Props {
            topic_id: t,
            epoch: 1,
            kind: Kind::Kafka { base: i64::MAX, last: i64::MAX },
            copy: false,
        });
        let info = BatchInfo {
            base: i64::MAX,
            last: i64::MAX,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            codec: 0,
            index: 0,
            count: 1,
            max_timestamp: 0,
        };
        let record_max = Some(Props {
            topic_id: t,
            epoch: 1,
            kind: Kind::Record { offset: i64::MAX, batch: info },
            copy: false,
        });
        let (seen, r) = run(t, &[fence(t, 1, i64::MAX), (kafka_max, b), (record_max, b"v".to_vec())]);
        assert_eq!(seen, [Seen::Fence, Seen::Corrupt, Seen::Corrupt]);
        assert_eq!((r.entries.len(), r.next_offset), (0, i64::MAX));
    }

    #[test]
    fn probes_are_nothing() {
        let t = uuid::Uuid::new_v4();
        let probe = (Some(Props { topic_id: t, epoch: 0, kind: Kind::Probe, copy: false }), Vec::new());
        let (seen, r) = run(
            t,
            &[
                probe.clone(),
                fence(t, 1, 0),
                record(t, 1, 0, 0, 2),
                probe.clone(), // never between a batch's messages in practice; harmless anyway
                record(t, 1, 0, 1, 2),
                probe.clone(),
                kafka(t, 1, 2, 1),
            ],
        );
        assert_eq!(
            seen,
            [
                Seen::Probe,
                Seen::Fence,
                Seen::Pending,
                Seen::Probe,
                Seen::Accepted,
                Seen::Probe,
                Seen::Accepted
            ]
        );
        assert_eq!((bases(&r), r.next_offset, r.max_epoch, r.entries.len()), (vec![(0, 1), (2, 2)], 3, 1, 2));
    }

    #[test]
    fn a_fence_drops_what_its_writer_did_not_see() {
        let t = uuid::Uuid::new_v4();
        // The old writer appended after the new one read the topic: the fence says 2.
        let (_, r) = run(t, &[kafka(t, 1, 0, 2), kafka(t, 1, 2, 2), fence(t, 2, 2), kafka(t, 2, 2, 1)]);
        assert_eq!(bases(&r), [(0, 1), (2, 2)]);
        assert_eq!(r.next_offset, 3);
    }

    #[test]
    fn other_topics_and_foreign_messages_are_skipped() {
        let t = uuid::Uuid::new_v4();
        let old = uuid::Uuid::new_v4();
        let (seen, r) = run(
            t,
            &[kafka(old, 5, 0, 4), (None, b"plain pulsar".to_vec()), fence(t, 1, 0), kafka(t, 1, 0, 1)],
        );
        assert_eq!(seen, [Seen::OtherTopic, Seen::NotOurs, Seen::Fence, Seen::Accepted]);
        assert_eq!((bases(&r), r.max_epoch), (vec![(0, 0)], 1));
    }

    #[test]
    fn a_corrupt_or_mislabelled_batch_is_skipped() {
        let t = uuid::Uuid::new_v4();
        let (p, mut b) = kafka(t, 1, 0, 2);
        b[70] ^= 1;
        let (q, _) = kafka(t, 1, 0, 3); // says 0..=2, holds 0..=1
        let (_, good) = kafka(t, 1, 0, 2);
        let (seen, r) = run(t, &[(p, b), (q, good.clone()), (p, good)]);
        assert_eq!(seen, [Seen::Corrupt, Seen::Corrupt, Seen::Accepted]);
        assert_eq!(bases(&r), [(0, 1)]);
    }

    #[test]
    fn record_batches_count_once_complete() {
        let t = uuid::Uuid::new_v4();
        let (seen, r) = run(
            t,
            &[
                record(t, 1, 0, 0, 3),
                record(t, 1, 0, 1, 3),
                record(t, 1, 0, 2, 3),
                record(t, 1, 3, 0, 2), // torn: the writer died before the second message
                record(t, 1, 3, 0, 0), // an empty batch, one message
                record(t, 1, 4, 1, 2), // the rest of a batch without its start
            ],
        );
        assert_eq!(
            seen,
            [Seen::Pending, Seen::Pending, Seen::Accepted, Seen::Pending, Seen::Accepted, Seen::Corrupt]
        );
        assert_eq!(bases(&r), [(0, 2), (3, 3)]);
        assert_eq!((r.entries[0].messages, r.entries[0].bytes, r.entries[0].id), (3, 15, id(0)));
        assert_eq!(r.next_offset, 4);
    }

    /// A stored Kafka-format message of `bytes` (a batch) at `base`.
    fn stored(topic_id: uuid::Uuid, base: i64, mut bytes: Vec<u8>) -> (Option<Props>, Vec<u8>) {
        bytes[..8].copy_from_slice(&base.to_be_bytes());
        let last = BatchHeader::parse(&bytes).unwrap().last_offset();
        (Some(Props { topic_id, epoch: 1, kind: Kind::Kafka { base, last }, copy: false }), bytes)
    }

    #[test]
    fn open_and_aborted_transactions_are_replayed_from_the_entries() {
        use crate::record::batch::end_txn_marker;
        use crate::record::batch::testing::transactional_batch;
        let t = uuid::Uuid::new_v4();
        let (_, r) = run(
            t,
            &[
                stored(t, 0, transactional_batch(2, 7, 0, 0)), // 0-1: producer 7, aborted at 3
                stored(t, 2, batch(1, 5, 0)),                  // 2
                stored(t, 3, end_txn_marker(7, 0, false, 0, 9)), // 3
                stored(t, 4, transactional_batch(1, 8, 0, 0)), // 4: producer 8, committed at 6
                stored(t, 5, transactional_batch(1, 9, 0, 0)), // 5: producer 9, open
                stored(t, 6, end_txn_marker(8, 0, true, 0, 9)), // 6
            ],
        );
        let txn: Vec<Txn> = r.entries.iter().map(|e| e.txn).collect();
        assert_eq!(
            txn,
            [
                Txn::Data,
                Txn::None,
                Txn::Marker(ControlType::Abort),
                Txn::Data,
                Txn::Data,
                Txn::Marker(ControlType::Commit)
            ]
        );
        assert_eq!(r.next_offset, 7);
        assert_eq!(r.producers.last_stable_offset(r.log_start, r.next_offset), 5, "producer 9's is open");
        let aborted: Vec<(i64, i64, i64)> =
            r.producers.aborted().map(|a| (a.producer_id, a.first_offset, a.last_offset)).collect();
        assert_eq!(aborted, [(7, 0, 3)]);
    }

    #[test]
    fn producer_state_is_replayed_and_the_log_start_kept() {
        let t = uuid::Uuid::new_v4();
        let mut b = idempotent_batch(2, 42, 3, 0);
        b[..8].copy_from_slice(&5i64.to_be_bytes());
        let p = Some(Props { topic_id: t, epoch: 1, kind: Kind::Kafka { base: 5, last: 6 }, copy: false });
        let start =
            Some(Props { topic_id: t, epoch: 1, kind: Kind::Fence { next: 5, start: 5 }, copy: false });
        let (_, r) = run(t, &[kafka(t, 1, 0, 5), (start, Vec::new()), (p, b)]);
        assert_eq!((r.log_start, r.next_offset), (5, 7));
        assert_eq!(bases(&r), [(5, 6)]);
        let e = r.producers.get(42).unwrap();
        assert_eq!((e.epoch, e.last_seq()), (3, 1));
        // Retention removed the first messages from Pulsar: the log starts at the first one left.
        let (_, r) = run(t, &[kafka(t, 1, 10, 2), kafka(t, 1, 12, 1)]);
        assert_eq!((r.log_start, r.next_offset), (10, 13));
        let (_, r) = run(t, &[]);
        assert_eq!((r.log_start, r.next_offset, r.max_epoch), (0, 0, 0));
        // DeleteRecords recorded a start inside a batch: the batch stays, the start is kept.
        let inside =
            Some(Props { topic_id: t, epoch: 1, kind: Kind::Fence { next: 13, start: 11 }, copy: false });
        let (_, r) = run(t, &[kafka(t, 1, 10, 2), kafka(t, 1, 12, 1), (inside, Vec::new())]);
        assert_eq!((r.log_start, r.next_offset), (11, 13));
        assert_eq!(bases(&r), [(10, 11), (12, 12)]);
    }

    fn copy((p, b): (Option<Props>, Vec<u8>)) -> (Option<Props>, Vec<u8>) {
        (p.map(|p| Props { copy: true, ..p }), b)
    }

    fn compacted(topic_id: uuid::Uuid, epoch: u64, upto: i64, start: i64) -> (Option<Props>, Vec<u8>) {
        (Some(Props { topic_id, epoch, kind: Kind::Compacted { upto, start }, copy: false }), Vec::new())
    }

    #[test]
    fn a_committed_compaction_replaces_the_index_with_its_copies() {
        let t = uuid::Uuid::new_v4();
        let history =
            [fence(t, 1, 0), kafka(t, 1, 0, 2), kafka(t, 1, 2, 2), kafka(t, 1, 4, 2), fence(t, 1, 6)];
        let copies = [copy(kafka(t, 1, 2, 1)), copy(record(t, 1, 4, 0, 2)), copy(record(t, 1, 4, 1, 2))];
        let mut all: Vec<_> = history.to_vec();
        all.extend(copies.iter().cloned());
        all.push(compacted(t, 1, 6, 0));
        all.push(kafka(t, 1, 6, 1));
        let (seen, r) = run(t, &all);
        assert_eq!(&seen[5..], [Seen::Copy, Seen::Copy, Seen::Copy, Seen::Compacted, Seen::Accepted]);
        assert_eq!(bases(&r), [(2, 2), (4, 5), (6, 6)]);
        // The log still starts at 0, whatever the first batch left is; the next pass starts at 6.
        assert_eq!((r.log_start, r.next_offset, r.cleaned_to), (0, 7, 6));
        assert_eq!(r.entries[0].id, id(5));
        assert_eq!(find(&r.entries, 0), Some(0), "a removed offset reads the next batch");
        assert_eq!(find(&r.entries, 3), Some(1));

        // Pulsar deleted everything before the compaction's fence: the same index.
        let (_, again) = run(t, &all[4..]);
        assert_eq!((bases(&again), again.log_start, again.next_offset), (bases(&r), 0, 7));
    }

    #[test]
    fn a_copied_record_batch_may_have_lost_its_first_records() {
        let t = uuid::Uuid::new_v4();
        // Batch 0..=3 kept only offsets 2 and 3: its first message is at offset 2.
        let (p, b) = record(t, 1, 0, 0, 4);
        let Some(Props { kind: Kind::Record { batch, .. }, .. }) = p else { unreachable!() };
        let at = |offset: i64, index: u32| {
            let batch = BatchInfo { index, count: 2, ..batch };
            (
                Some(Props { topic_id: t, epoch: 1, kind: Kind::Record { offset, batch }, copy: true }),
                b.clone(),
            )
        };
        let history = [fence(t, 1, 0), record(t, 1, 0, 0, 4), record(t, 1, 0, 1, 4), record(t, 1, 0, 2, 4)];
        let mut all: Vec<_> = history.to_vec();
        all.push(record(t, 1, 0, 3, 4));
        all.extend([fence(t, 1, 4), at(2, 0), at(3, 1), compacted(t, 1, 4, 0)]);
        let (seen, r) = run(t, &all);
        assert_eq!(&seen[6..], [Seen::Copy, Seen::Copy, Seen::Compacted]);
        assert_eq!((bases(&r), r.entries[0].messages), (vec![(0, 3)], 2));
        // Not outside a compaction: a batch's first message is at its base offset.
        let (seen, _) =
            run(t, &[fence(t, 1, 0), (at(2, 0).0.map(|p| Props { copy: false, ..p }), b.clone())]);
        assert_eq!(seen[1], Seen::OutOfSequence);
    }

    #[test]
    fn a_message_between_copies_and_their_commit_cuts_them_short() {
        let t = uuid::Uuid::new_v4();
        let all = [
            fence(t, 1, 0),
            kafka(t, 1, 0, 2),
            kafka(t, 1, 2, 2),
            fence(t, 1, 4),
            copy(kafka(t, 1, 1, 1)),
            kafka(t, 1, 4, 2), // never sent by a writer mid-pass; if it were, the copies go
            copy(kafka(t, 1, 3, 1)),
            compacted(t, 1, 6, 0),
        ];
        let (seen, r) = run(t, &all);
        assert_eq!(&seen[4..], [Seen::Copy, Seen::Accepted, Seen::OutOfSequence, Seen::OutOfSequence]);
        assert_eq!(bases(&r), [(0, 1), (2, 3), (4, 5)]);
        assert_eq!((r.next_offset, r.cleaned_to), (6, 0));
    }

    #[test]
    fn copies_without_their_commit_are_ignored() {
        let t = uuid::Uuid::new_v4();
        let base = [fence(t, 1, 0), kafka(t, 1, 0, 2), kafka(t, 1, 2, 2), fence(t, 1, 4)];
        // The host died half way: the next owner's fence ends the copies.
        let mut torn: Vec<_> = base.to_vec();
        torn.push(copy(kafka(t, 1, 2, 1)));
        torn.push(copy(record(t, 1, 3, 0, 2)));
        torn.push(fence(t, 2, 4));
        torn.push(kafka(t, 2, 4, 1));
        let (seen, r) = run(t, &torn);
        assert_eq!(&seen[4..], [Seen::Copy, Seen::Copy, Seen::Fence, Seen::Accepted]);
        assert_eq!((bases(&r), r.next_offset, r.cleaned_to), (vec![(0, 1), (2, 3), (4, 4)], 5, 0));
        // A commit that does not match where the partition ends is not one.
        let mut wrong: Vec<_> = base.to_vec();
        wrong.push(copy(kafka(t, 1, 2, 1)));
        wrong.push(compacted(t, 1, 9, 0));
        let (seen, r) = run(t, &wrong);
        assert_eq!(seen[5], Seen::OutOfSequence);
        assert_eq!(bases(&r), [(0, 1), (2, 3)]);
        // Copies that go backwards, or a stale writer's, are refused.
        let mut back: Vec<_> = base.to_vec();
        back.push(copy(kafka(t, 1, 2, 1)));
        back.push(copy(kafka(t, 1, 0, 1)));
        back.push(copy(kafka(t, 0, 3, 1)));
        let (seen, _) = run(t, &back);
        assert_eq!(&seen[4..], [Seen::Copy, Seen::OutOfSequence, Seen::StaleEpoch]);
    }
}
