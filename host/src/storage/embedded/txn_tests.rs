//! Transactions (KIP-98) on the embedded log: markers, the last stable offset, read-committed
//! reads and their aborted transactions, across restarts, retention and the cleaner; and a
//! property test of all that against a model.

use super::EmbeddedLog;
use crate::record::batch::testing::{batch, idempotent_batch, transactional_batch};
use crate::record::batch::{self, ControlType, Counts, validate_with};
use crate::record::records::{self, EncodeSpec, Record};
use crate::storage::{
    AbortedTxn, AlterOp, ConfigChange, Isolation, Log, LogDefaults, ReadResult, StorageError, TopicName,
    TxnMarker,
};
use bytes::Bytes;
use proptest::prelude::*;
use std::path::Path;

fn name(topic: &str) -> TopicName {
    TopicName::new("public", "default", topic)
}

/// A log whose segments roll at every batch when `segment_bytes` is small (a batch takes 61
/// bytes and more).
fn open(dir: &Path, segment_bytes: u64) -> EmbeddedLog {
    EmbeddedLog::open(dir, LogDefaults { segment_bytes, ..LogDefaults::default() }).unwrap()
}

/// A topic whose segments do not roll by time: the test batches' timestamps are from 1970, a
/// marker's are now.
fn create(log: &EmbeddedLog, topic: &str, partitions: i32) {
    let config = [("segment.ms".to_string(), "10000000000000".to_string())];
    log.create_topic(&name(topic), partitions, &config, false).unwrap();
}

fn append(log: &EmbeddedLog, topic: &str, bytes: Vec<u8>) -> Result<i64, StorageError> {
    log.append(&name(topic), 0, Bytes::from(bytes)).map(|a| a.base_offset)
}

fn end(log: &EmbeddedLog, topic: &str, pid: i64, epoch: i16, commit: bool) -> Result<i64, StorageError> {
    let marker = TxnMarker { producer_id: pid, producer_epoch: epoch, commit, coordinator_epoch: 3 };
    log.write_marker(&name(topic), 0, marker).map(|a| a.base_offset)
}

fn read(log: &EmbeddedLog, topic: &str, offset: i64, isolation: Isolation) -> ReadResult {
    log.read_with(&name(topic), 0, offset, 1 << 20, true, isolation).unwrap()
}

/// (base offset, last offset, control type) of each batch of a read.
fn spans(r: &ReadResult) -> Vec<(i64, i64, Option<ControlType>)> {
    let Some(records) = &r.records else { return Vec::new() };
    validate_with(records, u32::MAX, Counts::Span)
        .unwrap()
        .iter()
        .map(|b| {
            let one = &records[b.position..b.position + b.size()];
            (b.header.base_offset, b.header.last_offset(), batch::control_type(one))
        })
        .collect()
}

fn aborted(pid: i64, first: i64, last: i64) -> AbortedTxn {
    AbortedTxn { producer_id: pid, first_offset: first, last_offset: last }
}

#[test]
fn read_committed_stops_at_the_lso_until_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1 << 20);
    create(&log, "t", 1);
    assert!(Log::supports_transactions(&log));
    append(&log, "t", batch(3, 5, 0)).unwrap(); // 0..=2
    assert_eq!(append(&log, "t", transactional_batch(2, 7, 0, 0)).unwrap(), 3); // 3..=4
    append(&log, "t", batch(1, 5, 0)).unwrap(); // 5
    append(&log, "t", transactional_batch(1, 7, 0, 2)).unwrap(); // 6
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 3);

    let committed = read(&log, "t", 0, Isolation::ReadCommitted);
    assert_eq!(spans(&committed), [(0, 2, None)], "only what is below the LSO");
    assert_eq!((committed.high_watermark, committed.last_stable_offset), (7, 3));
    assert!(committed.aborted.is_empty());
    for offset in [3, 5, 7] {
        let r = read(&log, "t", offset, Isolation::ReadCommitted);
        assert!(r.records.is_none(), "from {offset}: nothing stable");
        assert_eq!(r.last_stable_offset, 3);
    }
    let out = log.read_with(&name("t"), 0, 8, 1 << 20, true, Isolation::ReadCommitted).unwrap_err();
    assert!(matches!(out, StorageError::OffsetOutOfRange { requested: 8, start: 0, end: 7 }), "{out:?}");
    // Read-uncommitted reads everything, as before, and reports the LSO too.
    let uncommitted = read(&log, "t", 0, Isolation::ReadUncommitted);
    assert_eq!(spans(&uncommitted), [(0, 2, None), (3, 4, None), (5, 5, None), (6, 6, None)]);
    assert_eq!(uncommitted.last_stable_offset, 3);
    assert!(uncommitted.aborted.is_empty());
    let plain = log.read(&name("t"), 0, 0, 1 << 20, true).unwrap();
    assert_eq!(plain.records, uncommitted.records);

    // The commit marker: a control batch at the end, announced to watchers; the LSO moves on.
    let mut watch = log.subscribe(&name("t"), 0).unwrap();
    assert_eq!(end(&log, "t", 7, 0, true).unwrap(), 7);
    assert!(watch.has_changed().unwrap());
    assert_eq!(*watch.borrow_and_update(), 8);
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 8);
    let r = read(&log, "t", 0, Isolation::ReadCommitted);
    assert_eq!(
        spans(&r),
        [(0, 2, None), (3, 4, None), (5, 5, None), (6, 6, None), (7, 7, Some(ControlType::Commit))]
    );
    assert_eq!((r.high_watermark, r.last_stable_offset), (8, 8));
    assert!(r.aborted.is_empty(), "nothing aborted");
    // The marker as Kafka writes it: the producer's id and epoch, no sequence, the coordinator epoch.
    let records = r.records.unwrap();
    let marker = validate_with(&records, u32::MAX, Counts::Exact).unwrap().pop().unwrap();
    let h = marker.header;
    assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.attributes), (7, 0, -1, 0x30));
    // Its record ends with the value (version 0, coordinator epoch 3) and no headers.
    assert_eq!(&records[records.len() - 8..], &[0x0c, 0, 0, 0, 0, 0, 3, 0]);
    // DescribeProducers: no transaction open any more.
    let p = log.report(&name("t"), 0).unwrap().producers;
    assert_eq!((p[0].producer_id, p[0].txn_start_offset, p[0].last_sequence), (7, -1, 2));
}

#[test]
fn aborted_transactions_come_with_read_committed_reads() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1 << 20);
    create(&log, "t", 1);
    append(&log, "t", transactional_batch(2, 1, 0, 0)).unwrap(); // 0..=1
    append(&log, "t", transactional_batch(1, 2, 0, 0)).unwrap(); // 2
    let report = log.report(&name("t"), 0).unwrap().producers;
    assert_eq!(report.iter().map(|p| p.txn_start_offset).collect::<Vec<_>>(), [0, 2]);
    assert_eq!(end(&log, "t", 1, 0, false).unwrap(), 3);
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 2, "producer 2's is open");
    let r = read(&log, "t", 0, Isolation::ReadCommitted);
    assert_eq!(spans(&r), [(0, 1, None)]);
    assert_eq!(r.aborted, [aborted(1, 0, 3)]);
    // A read that returns nothing still gets what lies below the LSO.
    let r = read(&log, "t", 2, Isolation::ReadCommitted);
    assert!(r.records.is_none());
    assert_eq!(r.aborted, [aborted(1, 0, 3)], "marker at or after 2, first offset below the LSO");
    assert_eq!(end(&log, "t", 2, 0, true).unwrap(), 4);
    let r = read(&log, "t", 0, Isolation::ReadCommitted);
    assert_eq!(spans(&r).len(), 4);
    assert_eq!(r.aborted, [aborted(1, 0, 3)]);
    assert!(read(&log, "t", 4, Isolation::ReadCommitted).aborted.is_empty(), "its marker is below 4");
    // A one-batch read: the bound is the offset after that batch.
    let r = log.read_with(&name("t"), 0, 2, 1, true, Isolation::ReadCommitted).unwrap();
    assert_eq!(spans(&r), [(2, 2, None)]);
    assert_eq!(r.aborted, [aborted(1, 0, 3)]);
    assert!(read(&log, "t", 0, Isolation::ReadUncommitted).aborted.is_empty());
}

#[test]
fn markers_are_checked_and_fence_older_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1 << 20);
    create(&log, "t", 2);
    append(&log, "t", transactional_batch(1, 9, 0, 0)).unwrap();
    // The coordinator aborts at a bumped epoch: the zombie's next batch is fenced.
    assert_eq!(end(&log, "t", 9, 1, false).unwrap(), 1);
    let zombie = append(&log, "t", transactional_batch(1, 9, 0, 1)).unwrap_err();
    assert_eq!(zombie.kafka_code(), 47, "{zombie}");
    let stale = end(&log, "t", 9, 0, true).unwrap_err();
    assert!(matches!(stale, StorageError::InvalidProducerEpoch(_)), "{stale:?}");
    assert_eq!(append(&log, "t", transactional_batch(1, 9, 1, 1)).unwrap_err().kafka_code(), 45, "from 0");
    assert_eq!(append(&log, "t", transactional_batch(1, 9, 1, 0)).unwrap(), 2);
    // The epoch is known host-wide: the old one is fenced on the other partition too.
    let other = log.append(&name("t"), 1, Bytes::from(transactional_batch(1, 9, 0, 0))).unwrap_err();
    assert_eq!(other.kafka_code(), 47);
    // A non-transactional batch while the transaction is open; a control batch from a client.
    let refused = append(&log, "t", idempotent_batch(1, 9, 1, 1)).unwrap_err();
    assert!(matches!(refused, StorageError::InvalidTxnState(_)), "{refused:?}");
    let control = batch::end_txn_marker(9, 1, true, 0, 0);
    assert_eq!(append(&log, "t", control).unwrap_err().kafka_code(), 87);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 3), "nothing refused was stored");
    let missing = log.write_marker(
        &name("t"),
        2,
        TxnMarker { producer_id: 9, producer_epoch: 1, commit: true, coordinator_epoch: 0 },
    );
    assert!(matches!(missing, Err(StorageError::UnknownTopicOrPartition)));
}

/// A read-committed read's batches (see [`spans`]) and aborted transactions.
type Committed = (Vec<(i64, i64, Option<ControlType>)>, Vec<AbortedTxn>);

/// What a restart must keep: the LSO, each offset's read-committed answer, DescribeProducers.
fn txn_state(log: &EmbeddedLog, topic: &str) -> (i64, Vec<Committed>, String) {
    let (start, end) = log.offsets(&name(topic), 0).unwrap();
    let reads = (start..=end)
        .map(|o| {
            let r = read(log, topic, o, Isolation::ReadCommitted);
            (spans(&r), r.aborted)
        })
        .collect();
    let producers = format!("{:?}", log.report(&name(topic), 0).unwrap().producers);
    (log.last_stable_offset(&name(topic), 0).unwrap(), reads, producers)
}

#[test]
fn a_restart_keeps_open_and_aborted_transactions() {
    let dir = tempfile::tempdir().unwrap();
    // Every batch in a segment of its own: the state crosses segments.
    let log = open(dir.path(), 100);
    create(&log, "t", 1);
    append(&log, "t", transactional_batch(1, 1, 0, 0)).unwrap(); // 0
    append(&log, "t", transactional_batch(1, 2, 0, 0)).unwrap(); // 1
    append(&log, "t", transactional_batch(1, 1, 0, 1)).unwrap(); // 2
    end(&log, "t", 1, 0, false).unwrap(); // 3: aborts 0..=3
    append(&log, "t", transactional_batch(1, 3, 0, 0)).unwrap(); // 4
    end(&log, "t", 3, 0, false).unwrap(); // 5: aborts 4..=5
    append(&log, "t", batch(1, 5, 0)).unwrap(); // 6
    append(&log, "t", transactional_batch(1, 1, 0, 2)).unwrap(); // 7: producer 1 again
    assert!(std::fs::read_dir(dir.path().join("topics/public/default/t/0")).unwrap().count() > 7);
    let before = txn_state(&log, "t");
    assert_eq!(before.0, 1, "producer 2 opened at 1");
    assert_eq!(read(&log, "t", 0, Isolation::ReadCommitted).aborted, [aborted(1, 0, 3)]);
    // As after kill -9: nothing flushed, no clean shutdown.
    drop(log);
    let log = open(dir.path(), 100);
    assert_eq!(txn_state(&log, "t"), before);
    // And it goes on from there: producer 2's commit, then producer 1's abort.
    end(&log, "t", 2, 0, true).unwrap(); // 8
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 7);
    end(&log, "t", 1, 0, false).unwrap(); // 9
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 10);
    let r = log.read_with(&name("t"), 0, 0, 1 << 20, true, Isolation::ReadCommitted).unwrap();
    assert_eq!(r.aborted, [aborted(1, 0, 3)], "one segment per read: up to offset 1");
    assert!(read(&log, "t", 6, Isolation::ReadCommitted).aborted.is_empty(), "up to offset 7 only");
    assert_eq!(read(&log, "t", 7, Isolation::ReadCommitted).aborted, [aborted(1, 7, 9)]);
    let after = txn_state(&log, "t");
    drop(log);
    assert_eq!(txn_state(&open(dir.path(), 100), "t"), after);
}

/// Sizes of the partition's segment files, oldest first.
fn segment_sizes(dir: &Path, topic: &str) -> Vec<u64> {
    let pdir = dir.join("topics/public/default").join(topic).join("0");
    let mut files: Vec<_> = std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files.iter().map(|f| std::fs::metadata(f).unwrap().len()).collect()
}

#[test]
fn retention_and_delete_records_evict_what_they_pass() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 100);
    create(&log, "t", 1);
    append(&log, "t", transactional_batch(1, 1, 0, 0)).unwrap(); // 0
    end(&log, "t", 1, 0, false).unwrap(); // 1: aborts 0..=1
    append(&log, "t", transactional_batch(1, 2, 0, 0)).unwrap(); // 2
    append(&log, "t", transactional_batch(1, 3, 0, 0)).unwrap(); // 3
    append(&log, "t", transactional_batch(1, 3, 0, 1)).unwrap(); // 4
    end(&log, "t", 2, 0, false).unwrap(); // 5: aborts 2..=5
    append(&log, "t", batch(1, 5, 0)).unwrap(); // 6
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 3);
    assert_eq!(read(&log, "t", 0, Isolation::ReadCommitted).aborted, [aborted(1, 0, 1)]);
    // One segment per read here: the bound is the offset after the batch returned.
    assert_eq!(read(&log, "t", 1, Isolation::ReadCommitted).aborted, [aborted(1, 0, 1)]);
    assert_eq!(read(&log, "t", 2, Isolation::ReadCommitted).aborted, [aborted(2, 2, 5)]);

    // DeleteRecords past producer 1's marker: it and its aborted transaction are forgotten.
    assert_eq!(log.delete_records(&name("t"), 0, 2).unwrap(), 2);
    let r = read(&log, "t", 2, Isolation::ReadCommitted);
    assert_eq!(r.aborted, [aborted(2, 2, 5)]);
    let producers: Vec<i64> =
        log.report(&name("t"), 0).unwrap().producers.iter().map(|p| p.producer_id).collect();
    assert_eq!(producers, [2, 3]);

    // Retention keeps the last three segments (4, 5, 6): the log starts at 4. (By size only:
    // these batches' timestamps are from 1970.)
    let keep: u64 = segment_sizes(dir.path(), "t").iter().rev().take(3).sum();
    let change = ConfigChange::Incremental(vec![
        ("retention.bytes".into(), AlterOp::Set(keep.to_string())),
        ("retention.ms".into(), AlterOp::Set("-1".into())),
    ]);
    log.alter_topic_config(&name("t"), &change, false).unwrap();
    assert_eq!(log.enforce_retention(crate::storage::now_ms()).unwrap(), 2);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (4, 7));
    // Producer 2's abort is at 5: still listed. Producer 3's transaction (from 3) is still open,
    // its last batch at 4 kept: the LSO is the log start.
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 4);
    let r = read(&log, "t", 4, Isolation::ReadCommitted);
    assert!(r.records.is_none());
    assert_eq!(r.aborted, [aborted(2, 2, 5)]);
    let before = txn_state(&log, "t");
    drop(log);
    let log = open(dir.path(), 100);
    assert_eq!(txn_state(&log, "t"), before, "the same after a restart");

    // Past producer 3's last batch too: its transaction goes with it, and the LSO is the end.
    assert_eq!(log.delete_records(&name("t"), 0, 6).unwrap(), 6);
    assert_eq!(log.last_stable_offset(&name("t"), 0).unwrap(), 7);
    assert!(read(&log, "t", 6, Isolation::ReadCommitted).aborted.is_empty());
    let before = txn_state(&log, "t");
    drop(log);
    assert_eq!(txn_state(&open(dir.path(), 100), "t"), before);
}

/// One batch of keyed records of transactional producer `pid` (epoch 0) from sequence `seq`;
/// `pid` -1: a plain batch.
fn keyed(entries: &[(&str, &str)], pid: i64, seq: i32) -> Vec<u8> {
    let ts = crate::storage::now_ms() - 3_600_000;
    let records: Vec<Record> = entries
        .iter()
        .map(|(k, v)| Record {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            headers: Vec::new(),
            timestamp: ts,
            offset_delta: 0,
        })
        .collect();
    let spec = EncodeSpec {
        producer_id: pid,
        producer_epoch: if pid < 0 { -1 } else { 0 },
        base_sequence: if pid < 0 { -1 } else { seq },
        ..EncodeSpec::plain(0, ts)
    };
    records::encode_rewrite(&records, &spec, None, pid >= 0).unwrap()
}

/// (offset, key, value) of every record of topic "c", and the offset, transactional attribute
/// and control type of every batch (empty ones too).
#[allow(clippy::type_complexity)]
fn contents(log: &EmbeddedLog) -> (Vec<(i64, String, String)>, Vec<(i64, bool, Option<ControlType>)>) {
    let text = |b: Option<Bytes>| String::from_utf8(b.unwrap().to_vec()).unwrap();
    let (mut records_out, mut batches_out) = (Vec::new(), Vec::new());
    let (mut offset, end) = log.offsets(&name("c"), 0).unwrap();
    while offset < end {
        let bytes = log.read(&name("c"), 0, offset, 1 << 20, true).unwrap().records.unwrap();
        for b in validate_with(&bytes, u32::MAX, Counts::Span).unwrap() {
            let one = &bytes[b.position..b.position + b.size()];
            let h = b.header;
            batches_out.push((h.base_offset, h.is_transactional(), batch::control_type(one)));
            offset = h.next_offset();
            if !h.is_control() {
                for r in records::decode(one, 1 << 20).unwrap().records {
                    records_out.push((h.base_offset + i64::from(r.offset_delta), text(r.key), text(r.value)));
                }
            }
        }
    }
    (records_out, batches_out)
}

#[test]
fn the_cleaner_stops_at_the_lso_and_keeps_what_transactions_need() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 100);
    let config: Vec<(String, String)> =
        [("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.01")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    log.create_topic(&name("c"), 1, &config, false).unwrap();
    let c = |bytes| append(&log, "c", bytes).unwrap();
    c(keyed(&[("a", "a1")], -1, 0)); // 0
    c(keyed(&[("a", "a2")], 5, 0)); // 1, aborted below
    end(&log, "c", 5, 0, false).unwrap(); // 2
    c(keyed(&[("b", "b1")], 5, 1)); // 3, committed below
    end(&log, "c", 5, 0, true).unwrap(); // 4
    c(keyed(&[("b", "b2")], -1, 0)); // 5
    c(keyed(&[("c", "c1")], 6, 0)); // 6: stays open, the LSO
    c(keyed(&[("d", "d1")], -1, 0)); // 7
    c(keyed(&[("d", "d2")], -1, 0)); // 8
    c(keyed(&[("e", "e1")], -1, 0)); // 9, the active segment
    let state = txn_state(&log, "c");
    assert_eq!(state.0, 6);

    let stats = log.clean(crate::storage::now_ms()).unwrap();
    assert_eq!(stats.partitions, 1);
    let (records, batches) = contents(&log);
    let kept: Vec<(i64, &str, &str)> = records.iter().map(|(o, k, v)| (*o, k.as_str(), v.as_str())).collect();
    assert_eq!(
        kept,
        [(0, "a", "a1"), (5, "b", "b2"), (6, "c", "c1"), (7, "d", "d1"), (8, "d", "d2"), (9, "e", "e1")],
        "the aborted a2 is removed and supersedes no committed a; the committed b1 is superseded; nothing from the LSO on is cleaned"
    );
    assert_eq!(
        batches,
        [
            (0, false, None),
            (1, true, None), // emptied, kept: its aborted transaction starts there
            (2, true, Some(ControlType::Abort)),
            (3, true, None), // emptied, kept: its transaction starts there
            (4, true, Some(ControlType::Commit)),
            (5, false, None),
            (6, true, None),
            (7, false, None),
            (8, false, None),
            (9, false, None),
        ]
    );
    // The same batches' spans, LSO, aborted transactions and producers; after a restart too.
    assert_eq!(txn_state(&log, "c"), state);
    drop(log);
    let log = open(dir.path(), 100);
    assert_eq!(txn_state(&log, "c"), state, "a cleaned partition replays to the same state");
    assert_eq!(read(&log, "c", 1, Isolation::ReadCommitted).aborted, [aborted(5, 1, 2)]);

    // Once producer 6 commits, the rest is cleanable.
    end(&log, "c", 6, 0, true).unwrap(); // 10
    append(&log, "c", keyed(&[("f", "f1")], -1, 0)).unwrap(); // 11, the active segment
    log.clean(crate::storage::now_ms()).unwrap();
    let (records, _) = contents(&log);
    assert!(!records.iter().any(|(_, _, v)| v == "d1"), "{records:?}");
    assert!(records.iter().any(|(_, _, v)| v == "c1"));
    assert_eq!(log.last_stable_offset(&name("c"), 0).unwrap(), 12);
}

/// The batch at `offset` of topic "c" (its header, and whether it is still there).
fn batch_at(log: &EmbeddedLog, offset: i64) -> Option<batch::BatchHeader> {
    let bytes = log.read(&name("c"), 0, offset, 1 << 20, true).ok()?.records?;
    let first = validate_with(&bytes, u32::MAX, Counts::Span).unwrap().remove(0);
    (first.header.base_offset == offset).then_some(first.header)
}

#[test]
fn markers_go_with_their_emptied_transactions_after_delete_retention() {
    // Segments of 1000 bytes: the transactions under test share the first (the cleaner keeps a
    // cleaned group's last batch whatever it is); each filler fills one.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1000);
    let config: Vec<(String, String)> =
        [("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.01"), ("delete.retention.ms", "0")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    log.create_topic(&name("c"), 1, &config, false).unwrap();
    let c = |log: &EmbeddedLog, bytes| append(log, "c", bytes).unwrap();
    let mut seq = 0;
    let mut txn = |key: &str, value: &str, commit: bool| {
        c(&log, keyed(&[(key, value)], 5, seq));
        seq += 1;
        end(&log, "c", 5, 0, commit).unwrap()
    };
    assert_eq!(txn("x", "x1", true), 1); // 0..=1: the producer's first transaction, kept
    assert_eq!(txn("a", "a1", true), 3); // 2..=3: committed, superseded at 8
    assert_eq!(txn("a", "a2", false), 5); // 4..=5: aborted
    assert_eq!(txn("b", "b1", true), 7); // 6..=7
    c(&log, keyed(&[("a", "a3")], -1, 0)); // 8
    // 9..=18: five more, which hold the batches the producer's sequence state remembers.
    for i in 0..5 {
        assert_eq!(txn(&format!("c{i}"), "c", true), 10 + 2 * i);
    }
    let mut filler = 0;
    let mut clean = |log: &EmbeddedLog| {
        // New dirty bytes, so that the cleaner runs again (and rolls a segment).
        c(log, keyed(&[("z", &format!("z{filler}{}", ".".repeat(900)))], -1, 0));
        filler += 1;
        log.clean(crate::storage::now_ms()).unwrap();
    };
    let offsets = |log: &EmbeddedLog| (0..=18).filter(|o| batch_at(log, *o).is_some()).collect::<Vec<i64>>();

    // Pass 1 empties the aborted and the superseded transactions.
    clean(&log);
    assert_eq!(offsets(&log), (0..=18).collect::<Vec<_>>());
    assert_eq!(batch_at(&log, 2).unwrap().records_count, 0);
    assert_eq!(batch_at(&log, 4).unwrap().records_count, 0);
    assert!(batch_at(&log, 5).unwrap().delete_horizon().is_none(), "not empty yet when planned");
    // Pass 2 stamps their markers with their delete horizon.
    clean(&log);
    assert_eq!(offsets(&log), (0..=18).collect::<Vec<_>>());
    assert!(batch_at(&log, 3).unwrap().delete_horizon().is_some());
    assert!(batch_at(&log, 5).unwrap().delete_horizon().is_some());
    assert!(batch_at(&log, 7).unwrap().delete_horizon().is_none(), "b1 stays");
    let read_abort = log.read(&name("c"), 0, 5, 1 << 20, true).unwrap().records.unwrap();
    assert_eq!(batch::control_type(&read_abort), Some(ControlType::Abort), "a stamped marker stays a marker");
    assert_eq!(read(&log, "c", 0, Isolation::ReadCommitted).aborted, [aborted(5, 4, 5)]);
    // Pass 3, past the horizon, drops them with their batches, and the aborted transaction
    // is no longer listed. The first transaction and the last ones stay.
    clean(&log);
    assert_eq!(offsets(&log), (0..=18).filter(|o| !(2..=5).contains(o)).collect::<Vec<_>>());
    assert!(read(&log, "c", 0, Isolation::ReadCommitted).aborted.is_empty());
    let (records, _) = contents(&log);
    let values: Vec<&str> =
        records.iter().map(|(_, _, v)| v.as_str()).filter(|v| !v.starts_with('z')).collect();
    assert_eq!(values, ["x1", "b1", "a3", "c", "c", "c", "c", "c"]);

    // Nothing is left open, before and after a restart (as after kill -9: not flushed).
    let hwm = log.offsets(&name("c"), 0).unwrap().1;
    assert_eq!(log.last_stable_offset(&name("c"), 0).unwrap(), hwm);
    let state = txn_state(&log, "c");
    drop(log);
    let log = open(dir.path(), 1000);
    assert_eq!(log.last_stable_offset(&name("c"), 0).unwrap(), hwm);
    let after = txn_state(&log, "c");
    assert_eq!((after.0, &after.2), (state.0, &state.2), "the same LSO and producers");
    assert!(read(&log, "c", 0, Isolation::ReadCommitted).aborted.is_empty());
    // The producer goes on at its next sequence.
    c(&log, keyed(&[("d", "d1")], 5, seq));
    end(&log, "c", 5, 0, true).unwrap();
}

// The property test: random transactional appends, markers, plain appends, DeleteRecords and
// restarts against a model of the LSO and of the aborted transactions a read-committed read must
// list (and of the producers' sequences: every append the model expects to succeed must).

#[derive(Clone, Debug)]
enum Op {
    /// A transactional batch of `n` records of producer `p`.
    Txn(u8, u8),
    Commit(u8),
    Abort(u8),
    /// An idempotent, non-transactional batch of producer `p` (refused while its transaction
    /// is open).
    Plain(u8, u8),
    /// DeleteRecords up to the offset this picks in [log start, high watermark].
    DeleteRecords(u16),
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3u8, 1..4u8).prop_map(|(p, n)| Op::Txn(p, n)),
        2 => (0..3u8).prop_map(Op::Commit),
        2 => (0..3u8).prop_map(Op::Abort),
        2 => (0..3u8, 1..3u8).prop_map(|(p, n)| Op::Plain(p, n)),
        1 => any::<u16>().prop_map(Op::DeleteRecords),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    log_start: i64,
    high_watermark: i64,
    /// The offset of each producer's last batch or marker, while the partition knows it (until
    /// the log start passes that).
    last: [Option<i64>; 3],
    /// The next sequence of each producer (0 again once the partition forgot it).
    sequences: [i32; 3],
    open: [Option<i64>; 3],
    /// In the order of their markers.
    aborted: Vec<AbortedTxn>,
}

impl Model {
    fn pid(p: u8) -> i64 {
        100 + i64::from(p)
    }

    fn lso(&self) -> i64 {
        let first = self.open.iter().flatten().copied().min();
        first.map_or(self.high_watermark, |f| f.max(self.log_start).min(self.high_watermark))
    }

    /// The log start moves to `offset`: producers whose last batch or marker is below it are
    /// forgotten, with their open transactions, and so are aborted transactions whose marker is.
    fn delete_records(&mut self, offset: i64) {
        self.log_start = offset;
        for p in 0..3 {
            if self.last[p].is_some_and(|last| last < offset) {
                self.last[p] = None;
                self.sequences[p] = 0;
                self.open[p] = None;
            }
        }
        self.aborted.retain(|a| a.last_offset >= offset);
    }

    fn aborted_between(&self, offset: i64, upper: i64) -> Vec<AbortedTxn> {
        let mut found: Vec<AbortedTxn> = self
            .aborted
            .iter()
            .filter(|a| a.last_offset >= offset && a.first_offset < upper)
            .copied()
            .collect();
        found.sort_by_key(|a| a.first_offset);
        found
    }
}

/// Check one read-committed and one read-uncommitted read from `offset` against the model;
/// `size` 0: up to 1 MiB; 1: one batch; 2: nothing fits (`max_bytes` 1 without `min_one`).
fn check_reads(log: &EmbeddedLog, model: &Model, offset: i64, size: u16) -> Result<(), TestCaseError> {
    let (max_bytes, min_one) = match size {
        0 => (1 << 20, true),
        1 => (1, true),
        _ => (1, false),
    };
    let lso = model.lso();
    let r = log.read_with(&name("p"), 0, offset, max_bytes, min_one, Isolation::ReadCommitted).unwrap();
    prop_assert_eq!(r.last_stable_offset, lso);
    prop_assert_eq!(r.high_watermark, model.high_watermark);
    let got = spans(&r);
    let upper = match got.last() {
        None => {
            prop_assert!(offset >= lso || !min_one, "nothing returned from {} below the LSO {}", offset, lso);
            lso
        }
        Some(&(_, last, _)) => {
            prop_assert!(offset < lso);
            prop_assert!(got[0].0 <= offset && offset <= got[0].1, "the first batch holds the offset");
            prop_assert!(last < lso, "batch up to {} returned past the LSO {}", last, lso);
            for w in got.windows(2) {
                prop_assert_eq!(w[0].1 + 1, w[1].0);
            }
            last + 1
        }
    };
    prop_assert_eq!(r.aborted, model.aborted_between(offset, upper), "from {} up to {}", offset, upper);

    let u = log.read_with(&name("p"), 0, offset, max_bytes, min_one, Isolation::ReadUncommitted).unwrap();
    prop_assert_eq!(u.last_stable_offset, lso);
    prop_assert!(u.aborted.is_empty());
    prop_assert_eq!(u.records.is_some(), offset < model.high_watermark && min_one);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn lso_and_aborted_transactions_follow_the_model(
        steps in proptest::collection::vec((op(), proptest::collection::vec(any::<u16>(), 3)), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        // Small segments: reads return one segment's batches, and restarts replay many.
        let mut log = open(dir.path(), 400);
        create(&log, "p", 1);
        let mut model = Model::default();
        let middle = steps.len() / 2;
        for (i, (op, seeds)) in steps.into_iter().enumerate() {
            // At least one restart, in the middle.
            let op = if i == middle { Op::Restart } else { op };
            match op {
                Op::Txn(p, n) => {
                    let pid = Model::pid(p);
                    let b = transactional_batch(usize::from(n), pid, 0, model.sequences[usize::from(p)]);
                    prop_assert_eq!(append(&log, "p", b).unwrap(), model.high_watermark);
                    model.sequences[usize::from(p)] += i32::from(n);
                    model.open[usize::from(p)].get_or_insert(model.high_watermark);
                    model.high_watermark += i64::from(n);
                    model.last[usize::from(p)] = Some(model.high_watermark - 1);
                }
                Op::Plain(p, n) => {
                    let pid = Model::pid(p);
                    let b = idempotent_batch(usize::from(n), pid, 0, model.sequences[usize::from(p)]);
                    let appended = append(&log, "p", b);
                    if model.open[usize::from(p)].is_some() {
                        prop_assert_eq!(appended.unwrap_err().kafka_code(), 48);
                    } else {
                        prop_assert_eq!(appended.unwrap(), model.high_watermark);
                        model.sequences[usize::from(p)] += i32::from(n);
                        model.high_watermark += i64::from(n);
                        model.last[usize::from(p)] = Some(model.high_watermark - 1);
                    }
                }
                Op::Commit(p) | Op::Abort(p) => {
                    let commit = matches!(op, Op::Commit(_));
                    prop_assert_eq!(end(&log, "p", Model::pid(p), 0, commit).unwrap(), model.high_watermark);
                    if let Some(first) = model.open[usize::from(p)].take()
                        && !commit
                    {
                        model.aborted.push(aborted(Model::pid(p), first, model.high_watermark));
                    }
                    model.last[usize::from(p)] = Some(model.high_watermark);
                    model.high_watermark += 1;
                }
                Op::DeleteRecords(seed) => {
                    let span = model.high_watermark - model.log_start + 1;
                    let offset = model.log_start + i64::from(seed) % span;
                    prop_assert_eq!(log.delete_records(&name("p"), 0, offset).unwrap(), offset);
                    model.delete_records(offset);
                }
                Op::Restart => {
                    drop(log);
                    log = open(dir.path(), 400);
                }
            }
            prop_assert_eq!(log.last_stable_offset(&name("p"), 0).unwrap(), model.lso());
            prop_assert_eq!(log.offsets(&name("p"), 0).unwrap(), (model.log_start, model.high_watermark));
            // The producers it knows, and DescribeProducers' currentTxnStartOffset.
            let producers = log.report(&name("p"), 0).unwrap().producers;
            let known: Vec<i64> = (0..3u8).filter(|p| model.last[usize::from(*p)].is_some()).map(Model::pid).collect();
            prop_assert_eq!(producers.iter().map(|p| p.producer_id).collect::<Vec<_>>(), known);
            for p in producers {
                let i = usize::try_from(p.producer_id - 100).unwrap();
                prop_assert_eq!(p.txn_start_offset, model.open[i].unwrap_or(-1));
            }
            for seed in seeds {
                let offset = model.log_start + i64::from(seed) % (model.high_watermark - model.log_start + 1);
                check_reads(&log, &model, offset, (seed >> 8) % 3)?;
            }
            check_reads(&log, &model, model.lso(), 0)?;
        }
    }
}
