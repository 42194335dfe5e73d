//! The log cleaner, end to end on the embedded log: what stays, what goes, when a pass runs,
//! idempotent producers across a clean and a restart, compressed batches, and crashes at every
//! step of the swap.

use super::super::EmbeddedLog;
use super::super::partition::{Partition, SwapStep};
use crate::record::batch::{BatchHeader, Counts, validate_with};
use crate::record::records::{self, EncodeSpec, Record};
use crate::storage::{CleanStats, LogDefaults, StorageError, TopicName};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Far enough apart that every batch rolls a new segment with segment.ms = 1000.
const STEP: i64 = 10_000;
/// "Now" for the passes: after every timestamp used here.
const NOW: i64 = 1_000_000_000;

fn name(topic: &str) -> TopicName {
    TopicName::new("public", "default", topic)
}

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(dir, LogDefaults::default()).unwrap()
}

/// A compacted topic whose segments roll at every batch of the tests (segment.ms = 1000), with
/// these configs on top.
fn compacted(log: &EmbeddedLog, topic: &str, extra: &[(&str, &str)]) {
    let mut pairs = std::collections::BTreeMap::from([("cleanup.policy", "compact"), ("segment.ms", "1000")]);
    pairs.extend(extra.iter().copied());
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    log.create_topic(&name(topic), 1, &pairs, false).unwrap();
}

fn record(key: &str, value: Option<&str>, timestamp: i64) -> Record {
    Record {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        headers: Vec::new(),
        timestamp,
        offset_delta: 0,
    }
}

/// One batch of (key, value) records, timestamps `ts`, `ts + 1`, ...
fn keyed(entries: &[(&str, Option<&str>)], ts: i64, codec: u8) -> Bytes {
    produced(entries, ts, EncodeSpec::plain(codec, ts))
}

fn produced(entries: &[(&str, Option<&str>)], ts: i64, spec: EncodeSpec) -> Bytes {
    let records: Vec<Record> =
        entries.iter().enumerate().map(|(i, (k, v))| record(k, *v, ts + i as i64)).collect();
    Bytes::from(records::encode(&records, &spec).unwrap())
}

fn idempotent(entries: &[(&str, Option<&str>)], ts: i64, pid: i64, seq: i32) -> Bytes {
    let spec =
        EncodeSpec { producer_id: pid, producer_epoch: 0, base_sequence: seq, ..EncodeSpec::plain(0, ts) };
    produced(entries, ts, spec)
}

/// Append one batch per entry, each in a segment of its own (timestamps STEP apart from `ts`).
fn append_each(log: &EmbeddedLog, topic: &str, entries: &[(&str, Option<&str>)], ts: i64) -> i64 {
    let mut last = 0;
    for (i, e) in entries.iter().enumerate() {
        last = log.append(&name(topic), 0, keyed(&[*e], ts + i as i64 * STEP, 0)).unwrap().last_offset;
    }
    last
}

/// Every batch of the partition, from the log start, as stored (CRC checked).
fn batches(log: &EmbeddedLog, topic: &str) -> Vec<Bytes> {
    let (start, end) = log.offsets(&name(topic), 0).unwrap();
    let mut out = Vec::new();
    let mut offset = start;
    while offset < end {
        let mut bytes = log.read(&name(topic), 0, offset, 1 << 20, true).unwrap().records.unwrap();
        // Emptied batches (an idempotent producer's) hold no records over their span.
        validate_with(&bytes, u32::MAX, Counts::Span).unwrap();
        while !bytes.is_empty() {
            let header = BatchHeader::parse(&bytes).unwrap();
            offset = header.next_offset();
            out.push(bytes.split_to(header.size()));
        }
    }
    out
}

/// (offset, key, value) of every record, in log order.
fn contents(log: &EmbeddedLog, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let text = |b: &Bytes| String::from_utf8(b.to_vec()).unwrap();
    batches(log, topic)
        .iter()
        .flat_map(|b| {
            let decoded = records::decode(b, 1 << 20).unwrap();
            let base = decoded.header.base_offset;
            decoded.records.into_iter().map(move |r| {
                (
                    base + i64::from(r.offset_delta),
                    r.key.as_ref().map(text).unwrap(),
                    r.value.as_ref().map(text),
                )
            })
        })
        .collect()
}

fn partition(log: &EmbeddedLog, topic: &str) -> Arc<Partition> {
    log.partition(&name(topic), 0).unwrap().1
}

fn files(dir: &Path, topic: &str) -> Vec<String> {
    let pdir = dir.join("topics/public/default").join(topic).join("0");
    let mut names: Vec<String> =
        std::fs::read_dir(pdir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

fn segment_path(dir: &Path, topic: &str, base: i64) -> PathBuf {
    dir.join("topics/public/default").join(topic).join("0").join(format!("{base:020}.log"))
}

fn owned(v: &[(i64, &str, Option<&str>)]) -> Vec<(i64, String, Option<String>)> {
    v.iter().map(|(o, k, v)| (*o, k.to_string(), v.map(str::to_string))).collect()
}

#[test]
fn the_latest_record_of_each_key_stays_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[]);
    let v = [
        ("a", Some("a1")),
        ("b", Some("b1")),
        ("a", Some("a2")),
        ("c", Some("c1")),
        ("b", Some("b2")),
        ("a", Some("a3")),
    ];
    append_each(&log, "t", &v, 0);
    // The active segment: never cleaned, even though it supersedes c1.
    log.append(&name("t"), 0, keyed(&[("c", Some("c2")), ("d", Some("d1"))], 6 * STEP, 0)).unwrap();
    let active = segment_path(dir.path(), "t", 6);
    let active_bytes = std::fs::read(&active).unwrap();
    assert_eq!(files(dir.path(), "t").len(), 7);

    let stats = log.clean(NOW).unwrap();
    assert_eq!((stats.partitions, stats.records_read, stats.records_removed), (1, 6, 3));
    let expected = owned(&[
        (3, "c", Some("c1")),
        (4, "b", Some("b2")),
        (5, "a", Some("a3")),
        (6, "c", Some("c2")),
        (7, "d", Some("d1")),
    ]);
    assert_eq!(contents(&log, "t"), expected);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 8), "offsets are never renumbered");
    assert_eq!(std::fs::read(&active).unwrap(), active_bytes, "the active segment is untouched");
    // The six inactive segments are one now, still named after the log start.
    assert_eq!(
        files(dir.path(), "t"),
        ["00000000000000000000.log", "00000000000000000006.log", "cleaner-offset-checkpoint"]
    );
    // Nothing is dirty any more.
    assert_eq!(log.clean(NOW).unwrap(), CleanStats::default());

    // The same after a restart, and appends go on where they were.
    drop(log);
    let log = open(dir.path());
    assert_eq!(contents(&log, "t"), expected);
    assert_eq!(log.append(&name("t"), 0, keyed(&[("e", Some("e1"))], 7 * STEP, 0)).unwrap().base_offset, 8);
    assert_eq!(log.clean(NOW).unwrap(), CleanStats::default(), "the checkpoint survived the restart");
}

#[test]
fn a_read_of_a_removed_offset_returns_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[]);
    let v = [
        ("a", Some("1")),
        ("b", Some("1")),
        ("a", Some("2")),
        ("a", Some("3")),
        ("b", Some("2")),
        ("c", Some("1")),
    ];
    append_each(&log, "t", &v, 0);
    log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 6 * STEP, 0)).unwrap();
    log.clean(NOW).unwrap();
    // Kept: a3 at 3, b2 at 4, c1 at 5 (the group's last batch), z at 6.
    let first = |offset| {
        let r = log.read(&name("t"), 0, offset, 1, true).unwrap();
        BatchHeader::parse(&r.records.unwrap()).unwrap().base_offset
    };
    for (offset, batch) in [(0, 3), (1, 3), (2, 3), (3, 3), (4, 4), (5, 5), (6, 6)] {
        assert_eq!(first(offset), batch, "read at {offset}");
    }
    assert_eq!(log.read(&name("t"), 0, 7, 1, true).unwrap().records, None);
    // ListOffsets by time: a removed record's timestamp finds the next kept one.
    assert_eq!(log.offset_for_timestamp(&name("t"), 0, STEP).unwrap(), Some((3, 3 * STEP)));
    assert_eq!(log.offset_for_timestamp(&name("t"), 0, 4 * STEP).unwrap(), Some((4, 4 * STEP)));
    assert_eq!(log.max_timestamp(&name("t"), 0).unwrap(), Some((6, 6 * STEP)));
}

#[test]
fn the_dirty_ratio_decides_when_a_partition_is_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[("min.cleanable.dirty.ratio", "0.5")]);
    append_each(&log, "t", &[("a", Some("1")), ("b", Some("1")), ("c", Some("1")), ("d", Some("1"))], 0);
    log.append(&name("t"), 0, keyed(&[("a", Some("2"))], 4 * STEP, 0)).unwrap();
    // Everything inactive is dirty: 4 batches, ratio 1.
    assert_eq!(log.clean(NOW).unwrap().partitions, 1);
    // One more inactive batch (a=2, rolled out by the next append): 1 dirty of 5, not enough.
    log.append(&name("t"), 0, keyed(&[("b", Some("2"))], 5 * STEP, 0)).unwrap();
    assert_eq!(log.clean(NOW).unwrap(), CleanStats::default());
    assert_eq!(contents(&log, "t").len(), 6);
    // Four more dirty batches: 5 dirty of 9, above one half.
    append_each(
        &log,
        "t",
        &[("c", Some("2")), ("d", Some("2")), ("e", Some("1")), ("f", Some("1"))],
        6 * STEP,
    );
    let stats = log.clean(NOW).unwrap();
    assert_eq!((stats.partitions, stats.records_removed), (1, 4));
    let keys: Vec<_> = contents(&log, "t").into_iter().map(|(o, k, v)| (o, k, v.unwrap())).collect();
    let expected: Vec<_> =
        [(4, "a", "2"), (5, "b", "2"), (6, "c", "2"), (7, "d", "2"), (8, "e", "1"), (9, "f", "1")]
            .iter()
            .map(|(o, k, v)| (*o, k.to_string(), v.to_string()))
            .collect();
    assert_eq!(keys, expected);

    // A ratio of 1 is never exceeded: only max.compaction.lag.ms cleans such a topic.
    compacted(&log, "u", &[("min.cleanable.dirty.ratio", "1"), ("max.compaction.lag.ms", "100000")]);
    append_each(&log, "u", &[("a", Some("1")), ("a", Some("2")), ("a", Some("3"))], 1_000_000);
    // The first batch (timestamp 1000000) is not yet 100 s old.
    assert_eq!(log.clean(1_050_000).unwrap(), CleanStats::default());
    let stats = log.clean(1_100_001).unwrap();
    assert_eq!((stats.partitions, stats.records_removed), (1, 1));
    assert_eq!(contents(&log, "u"), owned(&[(1, "a", Some("2")), (2, "a", Some("3"))]));
}

#[test]
fn records_younger_than_the_min_compaction_lag_are_not_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[("min.compaction.lag.ms", "60000"), ("min.cleanable.dirty.ratio", "0.01")]);
    // One segment each, newest timestamps 0, 10 s, ..., 40 s; z (50 s) stays active.
    let v = [
        ("a", Some("1")),
        ("a", Some("2")),
        ("a", Some("3")),
        ("a", Some("4")),
        ("a", Some("5")),
        ("z", Some("1")),
    ];
    append_each(&log, "t", &v, 0);
    // At 65 s only the segment at 0 s is at least 60 s old: it is cleaned alone, and a=1 stays
    // (only younger records supersede it).
    let stats = log.clean(65_000).unwrap();
    assert_eq!((stats.partitions, stats.records_removed), (1, 0));
    assert_eq!(contents(&log, "t").len(), 6);
    // At 75 s the segment at 10 s joins: a=2 supersedes a=1. The one at 20 s is too young, and
    // everything after it waits with it.
    assert_eq!(log.clean(75_000).unwrap().records_removed, 1);
    assert_eq!(contents(&log, "t").first(), Some(&(1, "a".to_string(), Some("2".to_string()))));
    // Much later, everything inactive is old enough.
    assert_eq!(log.clean(1_000_000).unwrap().records_removed, 3);
    assert_eq!(contents(&log, "t"), owned(&[(4, "a", Some("5")), (5, "z", Some("1"))]));
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[("delete.retention.ms", "5000"), ("min.cleanable.dirty.ratio", "0.01")]);
    append_each(&log, "t", &[("a", Some("1")), ("a", None), ("b", Some("1"))], 0);
    log.append(&name("t"), 0, keyed(&[("b", Some("2"))], 3 * STEP, 0)).unwrap();

    let t = NOW;
    assert_eq!(log.clean(t).unwrap().records_removed, 1);
    // The tombstone stays, stamped with its delete horizon (KIP-534).
    assert_eq!(contents(&log, "t"), owned(&[(1, "a", None), (2, "b", Some("1")), (3, "b", Some("2"))]));
    let stamped = BatchHeader::parse(&batches(&log, "t")[0]).unwrap();
    assert_eq!((stamped.base_offset, stamped.delete_horizon()), (1, Some(t + 5000)));
    assert_eq!(records::decode(&batches(&log, "t")[0], 1 << 20).unwrap().records[0].timestamp, STEP);

    // A later clean before the horizon keeps it (and its horizon).
    log.append(&name("t"), 0, keyed(&[("c", Some("1"))], 4 * STEP, 0)).unwrap();
    assert_eq!(log.clean(t + 4999).unwrap().records_removed, 1, "b=1 goes");
    assert_eq!(contents(&log, "t")[0], (1, "a".to_string(), None));
    assert_eq!(BatchHeader::parse(&batches(&log, "t")[0]).unwrap().delete_horizon(), Some(t + 5000));
    // The first clean at or after the horizon removes it.
    log.append(&name("t"), 0, keyed(&[("d", Some("1"))], 5 * STEP, 0)).unwrap();
    assert_eq!(log.clean(t + 5000).unwrap().records_removed, 1);
    assert_eq!(contents(&log, "t"), owned(&[(3, "b", Some("2")), (4, "c", Some("1")), (5, "d", Some("1"))]));
}

#[test]
fn an_idempotent_producers_last_batches_stay_and_a_retry_after_a_restart_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[]);
    // Seven batches of producer 7, all superseded by a plain batch of the same key.
    for seq in 0..7 {
        let ts = i64::from(seq) * STEP;
        let info = log.append(&name("t"), 0, idempotent(&[("k", Some("p"))], ts, 7, seq)).unwrap();
        assert_eq!(info.base_offset, i64::from(seq));
    }
    log.append(&name("t"), 0, keyed(&[("k", Some("plain"))], 7 * STEP, 0)).unwrap();
    log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 8 * STEP, 0)).unwrap();
    let stats = log.clean(NOW).unwrap();
    assert_eq!(stats.records_removed, 7);
    // The producer's last five batches stay, empty, with their sequences; the first two go.
    let kept: Vec<BatchHeader> = batches(&log, "t").iter().map(|b| BatchHeader::parse(b).unwrap()).collect();
    let spans: Vec<_> =
        kept.iter().map(|h| (h.base_offset, h.records_count, h.producer_id, h.base_sequence)).collect();
    assert_eq!(
        spans,
        [
            (2, 0, 7, 2),
            (3, 0, 7, 3),
            (4, 0, 7, 4),
            (5, 0, 7, 5),
            (6, 0, 7, 6),
            (7, 1, -1, -1),
            (8, 1, -1, -1)
        ]
    );
    assert_eq!(contents(&log, "t"), owned(&[(7, "k", Some("plain")), (8, "z", Some("z"))]));

    // After a restart (as after kill -9: no flush), producer state comes back from the kept
    // headers: a retry of the last batch gets its original offset and stores nothing.
    drop(log);
    let log = open(dir.path());
    let retry = log.append(&name("t"), 0, idempotent(&[("k", Some("p"))], 6 * STEP, 7, 6)).unwrap();
    assert_eq!((retry.base_offset, retry.last_offset), (6, 6));
    let retry = log.append(&name("t"), 0, idempotent(&[("k", Some("p"))], 2 * STEP, 7, 2)).unwrap();
    assert_eq!(retry.base_offset, 2);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 9), "nothing appended");
    // The producer goes on with its next sequence.
    let next = log.append(&name("t"), 0, idempotent(&[("k", Some("p7"))], 9 * STEP, 7, 7)).unwrap();
    assert_eq!(next.base_offset, 9);
    let gap = log.append(&name("t"), 0, idempotent(&[("k", Some("p"))], 9 * STEP, 7, 9));
    assert_eq!(gap.unwrap_err().kafka_code(), 45);

    // Four more batches of the producer (offsets 10..=13), superseded too: its last five are
    // now sequences 7..=11, and the batches emptied before are no longer needed.
    for seq in 8..12 {
        let ts = i64::from(seq + 2) * STEP;
        log.append(&name("t"), 0, idempotent(&[("k", Some("p"))], ts, 7, seq)).unwrap();
    }
    log.append(&name("t"), 0, keyed(&[("k", Some("plain 2"))], 14 * STEP, 0)).unwrap();
    log.append(&name("t"), 0, keyed(&[("z", Some("z2"))], 15 * STEP, 0)).unwrap();
    log.clean(NOW).unwrap();
    let kept: Vec<BatchHeader> = batches(&log, "t").iter().map(|b| BatchHeader::parse(b).unwrap()).collect();
    let spans: Vec<_> = kept.iter().map(|h| (h.base_offset, h.records_count, h.base_sequence)).collect();
    // (z=z at 8 stays: z2 is in the active segment, which the cleaner does not map.)
    let expected =
        [(8, 1, -1), (9, 0, 7), (10, 0, 8), (11, 0, 9), (12, 0, 10), (13, 0, 11), (14, 1, -1), (15, 1, -1)];
    assert_eq!(spans, expected);
}

#[test]
fn compressed_batches_are_filtered_and_compressed_again_with_their_codec() {
    for codec in 1..=4u8 {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        compacted(&log, "t", &[]);
        let big = "v".repeat(2000);
        let first = [("k1", Some("a")), ("k2", Some(big.as_str())), ("k1", Some("c")), ("k3", Some("d"))];
        log.append(&name("t"), 0, keyed(&first, 0, codec)).unwrap();
        log.append(&name("t"), 0, keyed(&[("k2", Some("e")), ("k4", None)], STEP, codec)).unwrap();
        log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 2 * STEP, 0)).unwrap();
        assert_eq!(log.clean(NOW).unwrap().records_removed, 2, "codec {codec}");
        let expected = owned(&[
            (2, "k1", Some("c")),
            (3, "k3", Some("d")),
            (4, "k2", Some("e")),
            (5, "k4", None),
            (6, "z", Some("z")),
        ]);
        assert_eq!(contents(&log, "t"), expected, "codec {codec}");
        let stored = batches(&log, "t");
        let h = BatchHeader::parse(&stored[0]).unwrap();
        assert_eq!((h.compression(), h.base_offset, h.last_offset_delta, h.records_count), (codec, 0, 3, 2));
        assert_eq!((h.base_timestamp, h.max_timestamp, h.delete_horizon()), (2, 3, None));
        // The batch with the tombstone kept both records and got a delete horizon.
        let h = BatchHeader::parse(&stored[1]).unwrap();
        assert_eq!(
            (h.compression(), h.records_count, h.delete_horizon()),
            (codec, 2, Some(NOW + 86_400_000))
        );
        drop(log);
        let log = open(dir.path());
        assert_eq!(contents(&log, "t"), expected, "codec {codec} after a restart");
    }
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[]);
    let keyless = |codec| {
        let r = Record { key: None, ..record("", Some("v"), 0) };
        let keyed = record("k", Some("v"), 0);
        Bytes::from(records::encode(&[keyed, r], &EncodeSpec::plain(codec, 0)).unwrap())
    };
    for codec in 0..=4u8 {
        let err = log.append(&name("t"), 0, keyless(codec)).unwrap_err();
        assert!(matches!(err, StorageError::InvalidRecord(_)), "{err}");
        assert_eq!(err.kafka_code(), 87);
        assert!(
            err.to_string()
                .contains("Compacted topic cannot accept message without key in topic partition t-0."),
            "{err}"
        );
    }
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 0));
    log.append(&name("t"), 0, keyed(&[("k", Some("v"))], 0, 3)).unwrap();
    // A topic that is not compacted takes them.
    log.create_topic(&name("u"), 1, &[], false).unwrap();
    log.append(&name("u"), 0, keyless(0)).unwrap();
}

#[test]
fn segment_ms_rolls_the_active_segment_on_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let with_segment_ms = |topic: &str, ms: &str| {
        // Far-future timestamps below are on purpose: no message.timestamp.after.max.ms bound.
        let pairs = vec![
            ("segment.ms".to_string(), ms.to_string()),
            ("message.timestamp.after.max.ms".to_string(), i64::MAX.to_string()),
        ];
        log.create_topic(&name(topic), 1, &pairs, false).unwrap();
        partition(&log, topic)
    };
    let plain =
        |ts| Bytes::from(records::encode(&[record("k", Some("v"), ts)], &EncodeSpec::plain(0, ts)).unwrap());
    // By the batches' timestamps: a roll once a batch is more than segment.ms newer than the
    // active segment's first batch.
    let p = with_segment_ms("t", "1000");
    for ts in [5000, 5900, 6000] {
        log.append(&name("t"), 0, plain(ts)).unwrap();
    }
    assert_eq!(p.segment_count(), 1, "1000 ms after the first batch is not more than segment.ms");
    log.append(&name("t"), 0, plain(6001)).unwrap();
    assert_eq!(p.segment_count(), 2);
    log.append(&name("t"), 0, plain(6500)).unwrap();
    assert_eq!(p.segment_count(), 2);
    // A first batch without a timestamp (-1): by the segment's age, by the wall clock.
    let p = with_segment_ms("u", "3600000");
    log.append(&name("u"), 0, plain(-1)).unwrap();
    log.append(&name("u"), 0, plain(i64::MAX / 2)).unwrap();
    assert_eq!(p.segment_count(), 1, "the segment is not an hour old");
    let p = with_segment_ms("v", "1");
    log.append(&name("v"), 0, plain(-1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    log.append(&name("v"), 0, plain(-1)).unwrap();
    assert_eq!(p.segment_count(), 2, "20 ms is more than 1");
    // The topic's current segment.ms applies (not the one at open): a log reopened keeps rolling.
    drop(p);
    drop(log);
    let log = open(dir.path());
    log.append(&name("t"), 0, plain(7502)).unwrap();
    assert_eq!(partition(&log, "t").segment_count(), 3);
}

#[test]
fn a_full_offset_map_cleans_part_of_the_dirty_log_and_the_rest_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[("min.cleanable.dirty.ratio", "0.01")]);
    let v = [("a", Some("1")), ("b", Some("1")), ("a", Some("2")), ("b", Some("2")), ("a", Some("3"))];
    append_each(&log, "t", &v, 0);
    log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 5 * STEP, 0)).unwrap();
    let p = partition(&log, "t");
    let config = super::CleanConfig::of(&log.topic(&name("t")).unwrap().config);
    // A budget of nothing: one segment per pass (the first holds a=1, its own latest so far).
    let stats = super::clean_partition_with(&p, "t-0", &config, NOW, 0).unwrap().unwrap();
    assert_eq!(stats.records_removed, 0);
    assert_eq!(p.clean_checkpoint(), Some(1));
    let stats = super::clean_partition_with(&p, "t-0", &config, NOW, 0).unwrap().unwrap();
    assert_eq!((stats.records_removed, p.clean_checkpoint()), (0, Some(2)));
    // With b=1 already mapped as clean, a=2 removes a=1.
    let stats = super::clean_partition_with(&p, "t-0", &config, NOW, 0).unwrap().unwrap();
    assert_eq!((stats.records_removed, p.clean_checkpoint()), (1, Some(3)));
    // The rest in one pass with the full budget.
    assert_eq!(log.clean(NOW).unwrap().records_removed, 2);
    assert_eq!(contents(&log, "t"), owned(&[(3, "b", Some("2")), (4, "a", Some("3")), (5, "z", Some("z"))]));
}

#[test]
fn appends_and_reads_go_on_during_a_clean() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    compacted(&log, "t", &[("min.cleanable.dirty.ratio", "0.01")]);
    let keys = ["a", "b", "c", "d", "e"];
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..400i64 {
                let key = keys[(i % 5) as usize];
                let value = i.to_string();
                log.append(&name("t"), 0, keyed(&[(key, Some(&value))], i * STEP, 0)).unwrap();
            }
        })
    };
    while !writer.is_finished() {
        log.clean(NOW).unwrap();
        let _ = contents(&log, "t");
    }
    writer.join().unwrap();
    log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 400 * STEP, 0)).unwrap();
    assert_eq!(log.clean(NOW).unwrap().partitions, 1);
    let expected = owned(&[
        (395, "a", Some("395")),
        (396, "b", Some("396")),
        (397, "c", Some("397")),
        (398, "d", Some("398")),
        (399, "e", Some("399")),
        (400, "z", Some("z")),
    ]);
    assert_eq!(contents(&log, "t"), expected);
    drop(log);
    assert_eq!(contents(&open(dir.path()), "t"), expected);
}

/// A crash (simulated `kill -9`: the swap stops dead, nothing is undone) after each step of
/// the swap, then a restart: the partition opens, no latest value is lost, and the swap is
/// either undone (not committed yet) or finished (committed).
#[test]
fn a_crash_at_any_step_of_the_swap_loses_nothing() {
    let steps = [
        SwapStep::Written,
        SwapStep::Committed,
        SwapStep::Deleted(1),
        SwapStep::Deleted(2),
        SwapStep::Replaced,
        SwapStep::Swapped,
    ];
    let all = owned(&[
        (0, "a", Some("1")),
        (1, "b", Some("1")),
        (2, "a", Some("2")),
        (3, "b", Some("2")),
        (4, "z", Some("z")),
    ]);
    let cleaned = owned(&[(2, "a", Some("2")), (3, "b", Some("2")), (4, "z", Some("z"))]);
    for step in steps {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        compacted(&log, "t", &[]);
        append_each(&log, "t", &[("a", Some("1")), ("b", Some("1")), ("a", Some("2")), ("b", Some("2"))], 0);
        log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 4 * STEP, 0)).unwrap();
        partition(&log, "t").faults.lock().crash_after = Some(step);
        let err = log.clean(NOW).unwrap_err();
        assert!(err.to_string().contains("simulated crash"), "{step:?}: {err}");
        let left = files(dir.path(), "t");
        match step {
            SwapStep::Written => assert!(left.iter().any(|f| f.ends_with(".log.cleaned")), "{left:?}"),
            SwapStep::Committed | SwapStep::Deleted(_) => {
                assert!(left.iter().any(|f| f.ends_with(".swap")), "{step:?}: {left:?}")
            }
            _ => assert!(!left.iter().any(|f| f.ends_with(".swap") || f.ends_with(".cleaned")), "{left:?}"),
        }
        // The running log still reads everything (in memory, nothing changed).
        assert!(contents(&log, "t").len() >= 3);
        drop(log);

        let log = open(dir.path());
        let expected = if step == SwapStep::Written { &all } else { &cleaned };
        assert_eq!(&contents(&log, "t"), expected, "after a crash after {step:?}");
        assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
        let left = files(dir.path(), "t");
        assert!(!left.iter().any(|f| f.ends_with(".swap") || f.ends_with(".cleaned")), "{step:?}: {left:?}");
        // Cleaning again ends in the same state; appends go on at the right offset.
        log.clean(NOW).unwrap();
        assert_eq!(contents(&log, "t"), cleaned, "{step:?}");
        assert_eq!(
            log.append(&name("t"), 0, keyed(&[("a", Some("3"))], 5 * STEP, 0)).unwrap().base_offset,
            5
        );
    }
}

#[test]
fn retention_during_a_clean_abandons_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    compacted(&log, "t", &[("cleanup.policy", "compact,delete")]);
    append_each(&log, "t", &[("a", Some("1")), ("a", Some("2"))], 0);
    log.append(&name("t"), 0, keyed(&[("z", Some("z"))], 2 * STEP, 0)).unwrap();
    let p = partition(&log, "t");
    let config = super::CleanConfig::of(&log.topic(&name("t")).unwrap().config);
    let snapshot = p.clean_snapshot();
    // Retention takes the older segments between the snapshot and the swap (retention.bytes 1
    // keeps the active one, which 0 would take too, as in Kafka).
    p.apply_retention(-1, 1, NOW).unwrap();
    let group: Vec<_> = snapshot.segments.clone();
    let map = super::offset_map::OffsetMap::default();
    let filter = crate::storage::compaction::Filter {
        map: &map,
        producer_batches: &snapshot.producer_batches,
        aborted: &Default::default(),
        config: &config,
        now_ms: NOW,
        markers: &Default::default(),
    };
    let outcome = super::filter::clean_group(p.dir(), &group, &filter).unwrap();
    let (segment, path) = outcome.cleaned.unwrap();
    assert!(!p.replace_segments(&group, segment, &path, 2).unwrap());
    assert!(!path.exists());
    assert_eq!(contents(&log, "t"), owned(&[(2, "z", Some("z"))]));
}
