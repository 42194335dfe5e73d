use super::EmbeddedLog;
use crate::record::batch::testing::{batch, batch_with_timestamps, idempotent_batch, with_attributes};
use crate::record::batch::{BatchHeader, validate};
use crate::storage::{LogDefaults, StorageError, TopicName};
use bytes::Bytes;
use std::io::Write;
use std::path::Path;

fn name(topic: &str) -> TopicName {
    TopicName::new("public", "default", topic)
}

fn open(dir: &Path) -> EmbeddedLog {
    EmbeddedLog::open(dir, LogDefaults::default()).unwrap()
}

fn open_with(dir: &Path, segment_bytes: u64, index_interval_bytes: u32) -> EmbeddedLog {
    let defaults = LogDefaults { segment_bytes, index_interval_bytes, ..LogDefaults::default() };
    EmbeddedLog::open(dir, defaults).unwrap()
}

fn create(log: &EmbeddedLog, topic: &str, partitions: i32) {
    log.create_topic(&name(topic), partitions, &[], false).unwrap();
}

/// (base offset, last offset) of each batch in a read result, checking each batch's CRC.
fn batches_in(records: &Bytes) -> Vec<(i64, i64)> {
    validate(records, u32::MAX)
        .unwrap()
        .iter()
        .map(|b| (b.header.base_offset, b.header.last_offset()))
        .collect()
}

fn read_all(log: &EmbeddedLog, topic: &str, partition: i32) -> Vec<(i64, i64)> {
    let (start, end) = log.offsets(&name(topic), partition).unwrap();
    let mut out = Vec::new();
    let mut offset = start;
    while offset < end {
        let r = log.read(&name(topic), partition, offset, 1 << 20, true).unwrap();
        let got = batches_in(&r.records.unwrap());
        offset = got.last().unwrap().1 + 1;
        out.extend(got);
    }
    out
}

fn segment_files(dir: &Path, topic: &str, partition: i32) -> Vec<std::path::PathBuf> {
    let pdir = dir.join("topics/public/default").join(topic).join(partition.to_string());
    let mut files: Vec<_> = std::fs::read_dir(pdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn append_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    let b = batch(3, 20, 1000);
    let info = log.append(&name("t"), 0, Bytes::from(b.clone())).unwrap();
    assert_eq!((info.base_offset, info.last_offset, info.log_start_offset), (0, 2, 0));
    let info = log.append(&name("t"), 0, Bytes::from(batch(2, 5, 2000))).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 4));

    let r = log.read(&name("t"), 0, 0, 1 << 20, false).unwrap();
    assert_eq!((r.high_watermark, r.log_start_offset), (5, 0));
    let records = r.records.unwrap();
    assert_eq!(batches_in(&records), vec![(0, 2), (3, 4)]);
    // Stored as received: the first batch is byte for byte what was appended (offset was 0).
    assert_eq!(&records[..b.len()], &b[..]);
    let second = BatchHeader::parse(&records[b.len()..]).unwrap();
    assert_eq!(second.base_offset, 3);

    assert!(log.read(&name("t"), 0, 5, 1 << 20, true).unwrap().records.is_none());
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
}

#[test]
fn several_batches_in_one_append_and_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    let mut two = batch(2, 4, 0);
    two.extend_from_slice(&batch(3, 4, 0));
    let info = log.append(&name("t"), 0, Bytes::from(two.clone())).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (0, 4));
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4)]);

    let mut bad = two.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    let err = log.append(&name("t"), 0, Bytes::from(bad)).unwrap_err();
    assert!(matches!(err, StorageError::CorruptMessage(_)), "{err}");
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
}

#[test]
fn offsets_stay_contiguous_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(4, 100, 0).len() as u64;
    // Room for two batches per segment.
    let log = open_with(dir.path(), 2 * one + 10, 4096);
    create(&log, "t", 1);
    for i in 0..7 {
        let info = log.append(&name("t"), 0, Bytes::from(batch(4, 100, i))).unwrap();
        assert_eq!(info.base_offset, i * 4);
    }
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 4);
    let expected: Vec<_> = (0..7).map(|i| (i * 4, i * 4 + 3)).collect();
    assert_eq!(read_all(&log, "t", 0), expected);
    // A read returns batches of one segment only: two here.
    let r = log.read(&name("t"), 0, 0, 1 << 20, true).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()).len(), 2);
    // Every offset is found, in whichever segment it lives.
    for offset in 0..28 {
        let r = log.read(&name("t"), 0, offset, 1, true).unwrap();
        let got = batches_in(&r.records.unwrap());
        assert_eq!(got.len(), 1);
        assert!(got[0].0 <= offset && offset <= got[0].1, "offset {offset} in {got:?}");
    }
    drop(log);
    let log = open_with(dir.path(), 2 * one + 10, 4096);
    assert_eq!(read_all(&log, "t", 0), expected);
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(1, 1, 0))).unwrap().base_offset, 28);
}

#[test]
fn an_oversized_batch_gets_a_segment_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), 200, 4096);
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(1, 10, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(1, 500, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(1, 10, 0))).unwrap();
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 3);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 0), (1, 1), (2, 2)]);
}

#[test]
fn sparse_index_finds_every_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), 1 << 30, 1000);
    create(&log, "t", 1);
    for i in 0..200 {
        log.append(&name("t"), 0, Bytes::from(batch(1 + (i % 3) as usize, 50, i))).unwrap();
    }
    let (_, p) = log.partition(&name("t"), 0).unwrap();
    let entries = p.index_entries();
    assert_eq!(entries.len(), 1);
    assert!(entries[0] > 5 && entries[0] < 200, "sparse: {} entries for 200 batches", entries[0]);
    let all = read_all(&log, "t", 0);
    assert_eq!(all.len(), 200);
    for &(base, last) in &all {
        for offset in base..=last {
            let r = log.read(&name("t"), 0, offset, 0, true).unwrap();
            assert_eq!(batches_in(&r.records.unwrap()), vec![(base, last)]);
        }
    }
    // The index is rebuilt the same at open.
    drop((p, log));
    let log = open_with(dir.path(), 1 << 30, 1000);
    let (_, p) = log.partition(&name("t"), 0).unwrap();
    assert_eq!(p.index_entries(), entries);
    assert_eq!(p.segment_count(), 1);
}

#[test]
fn read_from_the_middle_of_a_batch_returns_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(5, 10, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(5, 10, 0))).unwrap();
    let r = log.read(&name("t"), 0, 7, 1 << 20, false).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()), vec![(5, 9)]);
    let r = log.read(&name("t"), 0, 3, 1 << 20, false).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()), vec![(0, 4), (5, 9)]);
}

#[test]
fn max_bytes_and_min_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    let size = batch(2, 100, 0).len();
    for _ in 0..4 {
        log.append(&name("t"), 0, Bytes::from(batch(2, 100, 0))).unwrap();
    }
    // Two and a half batches' worth: two whole batches.
    let r = log.read(&name("t"), 0, 0, 2 * size + size / 2, false).unwrap();
    let records = r.records.unwrap();
    assert_eq!(records.len(), 2 * size);
    assert_eq!(batches_in(&records), vec![(0, 1), (2, 3)]);
    // Exactly one batch.
    let r = log.read(&name("t"), 0, 2, size, false).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()), vec![(2, 3)]);
    // Too small for the first batch: nothing, unless min_one (KIP-74).
    let r = log.read(&name("t"), 0, 0, 10, false).unwrap();
    assert!(r.records.is_none());
    assert_eq!(r.high_watermark, 8);
    let r = log.read(&name("t"), 0, 0, 10, true).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()), vec![(0, 1)]);
    let r = log.read(&name("t"), 0, 0, 0, true).unwrap();
    assert_eq!(r.records.unwrap().len(), size);
}

#[test]
fn offset_out_of_range_and_unknown_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 2);
    log.append(&name("t"), 0, Bytes::from(batch(3, 1, 0))).unwrap();
    match log.read(&name("t"), 0, 4, 100, true) {
        Err(StorageError::OffsetOutOfRange { requested: 4, start: 0, end: 3 }) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(log.read(&name("t"), 0, -1, 100, true), Err(StorageError::OffsetOutOfRange { .. })));
    let r = log.read(&name("t"), 1, 0, 100, true).unwrap();
    assert!(r.records.is_none());
    assert_eq!(r.high_watermark, 0);
    for (topic, p) in [("t", 2), ("t", -1), ("nope", 0)] {
        assert!(matches!(log.read(&name(topic), p, 0, 1, true), Err(StorageError::UnknownTopicOrPartition)));
        assert!(matches!(
            log.append(&name(topic), p, Bytes::from(batch(1, 1, 0))),
            Err(StorageError::UnknownTopicOrPartition)
        ));
        assert!(matches!(log.offsets(&name(topic), p), Err(StorageError::UnknownTopicOrPartition)));
        assert!(log.subscribe(&name(topic), p).is_err());
    }
}

#[test]
fn reopen_preserves_topics_ids_and_data() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = vec![("max.message.bytes".to_string(), "5000".to_string())];
    let meta = log.create_topic(&name("a"), 3, &config, false).unwrap();
    create(&log, "b", 1);
    log.append(&name("a"), 2, Bytes::from(batch(4, 10, 50))).unwrap();
    log.append(&name("a"), 2, Bytes::from(batch(1, 10, 60))).unwrap();
    log.flush().unwrap();
    drop(log);

    let log = open(dir.path());
    let again = log.topic(&name("a")).unwrap();
    assert_eq!(again.id, meta.id);
    assert_eq!(again.partitions, 3);
    assert_eq!(again.config.max_message_bytes, 5000);
    assert_eq!(log.topic_by_id("public", "default", meta.id).unwrap().name, name("a"));
    assert_eq!(log.offsets(&name("a"), 2).unwrap(), (0, 5));
    assert_eq!(read_all(&log, "a", 2), vec![(0, 3), (4, 4)]);
    assert_eq!(log.offsets(&name("a"), 0).unwrap(), (0, 0));
    assert_eq!(log.append(&name("a"), 2, Bytes::from(batch(1, 1, 0))).unwrap().base_offset, 5);
    let names: Vec<_> = log.topics("public", "default").into_iter().map(|t| t.name.topic).collect();
    assert_eq!(names, vec!["a", "b"]);
}

#[test]
fn a_torn_tail_is_truncated_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(3, 10, 0))).unwrap();
    drop(log);
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let good_len = std::fs::metadata(&file).unwrap().len();

    // Half a batch at the end, as a crash in the middle of a write leaves it.
    let mut half = batch(4, 100, 0);
    half[0..8].copy_from_slice(&5i64.to_be_bytes());
    half.truncate(half.len() / 2);
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&half).unwrap();
    let log = open(dir.path());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good_len);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(1, 10, 0))).unwrap().base_offset, 5);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4), (5, 5)]);
    drop(log);

    // A whole batch whose bytes were not all written (CRC mismatch), then garbage.
    let good_len = std::fs::metadata(&file).unwrap().len();
    let mut torn = batch(2, 50, 0);
    torn[0..8].copy_from_slice(&6i64.to_be_bytes());
    let n = torn.len();
    torn[n - 10..].fill(0);
    torn.extend_from_slice(b"garbage");
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&torn).unwrap();
    let log = open(dir.path());
    assert_eq!(std::fs::metadata(&file).unwrap().len(), good_len);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 6));
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap().base_offset, 6);
    drop(log);

    // Garbage that is not even a header.
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&[0xab; 30]).unwrap();
    let log = open(dir.path());
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 8));
}

#[test]
fn a_segment_that_does_not_match_its_name_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    drop(log);
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    std::fs::rename(&file, file.with_file_name("00000000000000000100.log")).unwrap();
    assert!(matches!(EmbeddedLog::open(dir.path(), LogDefaults::default()), Err(StorageError::Io(_))));
}

#[test]
fn corrupt_and_oversized_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let config = vec![("max.message.bytes".to_string(), "200".to_string())];
    log.create_topic(&name("t"), 1, &config, false).unwrap();
    let mut bad = batch(1, 10, 0);
    bad[70] ^= 1;
    assert!(matches!(log.append(&name("t"), 0, Bytes::from(bad)), Err(StorageError::CorruptMessage(_))));
    assert!(matches!(log.append(&name("t"), 0, Bytes::new()), Err(StorageError::CorruptMessage(_))));
    assert!(matches!(
        log.append(&name("t"), 0, Bytes::from_static(&[1, 2, 3])),
        Err(StorageError::CorruptMessage(_))
    ));
    let big = batch(1, 300, 0);
    match log.append(&name("t"), 0, Bytes::from(big.clone())) {
        Err(StorageError::MessageTooLarge { size, max: 200 }) => assert_eq!(size, big.len()),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 0));
    // The broker default applies elsewhere.
    create(&log, "u", 1);
    assert!(log.append(&name("u"), 0, Bytes::from(big)).is_ok());
}

#[test]
fn create_delete_and_create_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let t = name("t");
    assert!(matches!(log.create_topic(&t, 0, &[], false), Err(StorageError::InvalidPartitions(_))));
    assert!(matches!(log.create_topic(&name(".."), 1, &[], false), Err(StorageError::InvalidTopic(_))));
    assert!(matches!(log.create_topic(&name("a/b"), 1, &[], false), Err(StorageError::InvalidTopic(_))));
    let bad_tenant = TopicName::new("..", "default", "t");
    assert!(matches!(log.create_topic(&bad_tenant, 1, &[], false), Err(StorageError::InvalidTopic(_))));
    let bad_config = vec![("min.compaction.lag.ms".to_string(), "-1".to_string())];
    assert!(matches!(log.create_topic(&t, 1, &bad_config, false), Err(StorageError::InvalidConfig(_))));

    let validated = log.create_topic(&t, 2, &[], true).unwrap();
    assert_eq!(validated.partitions, 2);
    assert!(log.topic(&t).is_none(), "validate_only creates nothing");

    let meta = log.create_topic(&t, 2, &[], false).unwrap();
    assert!(!meta.id.is_nil());
    assert!(matches!(log.create_topic(&t, 2, &[], false), Err(StorageError::TopicAlreadyExists(_))));
    assert!(matches!(log.create_topic(&t, 2, &[], true), Err(StorageError::TopicAlreadyExists(_))));
    create(&log, "a.b", 1);
    assert!(matches!(log.create_topic(&name("a_b"), 1, &[], false), Err(StorageError::InvalidTopic(_))));
    // Same name in another namespace is another topic.
    log.create_topic(&TopicName::new("public", "other", "t"), 1, &[], false).unwrap();

    assert!(matches!(log.create_partitions(&t, 2, false), Err(StorageError::InvalidPartitions(_))));
    assert!(matches!(log.create_partitions(&t, 1, false), Err(StorageError::InvalidPartitions(_))));
    assert!(matches!(
        log.create_partitions(&name("x"), 3, false),
        Err(StorageError::UnknownTopicOrPartition)
    ));
    log.create_partitions(&t, 5, true).unwrap();
    assert_eq!(log.topic(&t).unwrap().partitions, 2);
    log.append(&t, 1, Bytes::from(batch(1, 1, 0))).unwrap();
    log.create_partitions(&t, 4, false).unwrap();
    assert_eq!(log.topic(&t).unwrap().partitions, 4);
    assert_eq!(log.topic(&t).unwrap().id, meta.id);
    log.append(&t, 3, Bytes::from(batch(2, 1, 0))).unwrap();
    assert_eq!(log.offsets(&t, 1).unwrap(), (0, 1));

    assert!(matches!(log.delete_topic(&name("x")), Err(StorageError::UnknownTopicOrPartition)));
    let rx = log.subscribe(&t, 3).unwrap();
    log.delete_topic(&t).unwrap();
    assert!(log.topic(&t).is_none());
    assert!(!dir.path().join("topics/public/default/t").exists());
    assert!(rx.has_changed().is_err(), "the watch closes on delete");
    assert!(matches!(
        log.append(&t, 0, Bytes::from(batch(1, 1, 0))),
        Err(StorageError::UnknownTopicOrPartition)
    ));

    // Re-created: a new id and an empty log.
    let again = log.create_topic(&t, 1, &[], false).unwrap();
    assert_ne!(again.id, meta.id);
    assert_eq!(log.offsets(&t, 0).unwrap(), (0, 0));
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.topic(&t).unwrap().id, again.id);
    assert_eq!(log.topic(&name("a.b")).unwrap().partitions, 1);
    assert_eq!(log.topics("public", "other").len(), 1);
}

#[test]
fn created_partitions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.create_partitions(&name("t"), 3, false).unwrap();
    log.append(&name("t"), 2, Bytes::from(batch(2, 1, 0))).unwrap();
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.topic(&name("t")).unwrap().partitions, 3);
    assert_eq!(log.offsets(&name("t"), 2).unwrap(), (0, 2));
}

#[test]
fn an_unfinished_creation_is_skipped_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join("topics/public/default/t/0");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000000.log"), b"junk").unwrap();
    let log = open(dir.path());
    assert!(log.topic(&name("t")).is_none());
    create(&log, "t", 1);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 0));
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), 1 << 30, 0);
    create(&log, "t", 1);
    let t = name("t");
    assert_eq!(log.offset_for_timestamp(&t, 0, 0).unwrap(), None);
    assert_eq!(log.max_timestamp(&t, 0).unwrap(), None);

    let v: [&[u8]; 3] = [b"a", b"b", b"c"];
    // offsets 0..=2: timestamps 100, 110, 105
    log.append(&t, 0, Bytes::from(batch_with_timestamps(&v, 100, &[0, 10, 5]))).unwrap();
    // offsets 3..=5: timestamps 200, 250, 250
    log.append(&t, 0, Bytes::from(batch_with_timestamps(&v, 200, &[0, 50, 50]))).unwrap();
    // offsets 6..=8: timestamps 150, 160, 170 (out of order with the batch before)
    log.append(&t, 0, Bytes::from(batch_with_timestamps(&v, 150, &[0, 10, 20]))).unwrap();

    assert_eq!(log.offset_for_timestamp(&t, 0, 0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 100).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 101).unwrap(), Some((1, 110)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 111).unwrap(), Some((3, 200)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 201).unwrap(), Some((4, 250)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 251).unwrap(), None);
    assert_eq!(log.max_timestamp(&t, 0).unwrap(), Some((4, 250)));

    // A compressed batch (codec bit set; its records are not parsed): base offset and max
    // timestamp for a lookup, last offset for the max.
    let mut compressed = batch_with_timestamps(&v, 300, &[0, 1, 2]);
    compressed[22] |= 4;
    crate::record::batch::testing::fix_crc(&mut compressed);
    log.append(&t, 0, Bytes::from(compressed)).unwrap();
    assert_eq!(log.offset_for_timestamp(&t, 0, 301).unwrap(), Some((9, 302)));
    assert_eq!(log.max_timestamp(&t, 0).unwrap(), Some((11, 302)));

    // Across segments and after a restart.
    drop(log);
    let log = open_with(dir.path(), 1, 0);
    log.append(&t, 0, Bytes::from(batch_with_timestamps(&v, 400, &[0, 1, 2]))).unwrap();
    assert_eq!(log.offset_for_timestamp(&t, 0, 401).unwrap(), Some((13, 401)));
    assert_eq!(log.offset_for_timestamp(&t, 0, 160).unwrap(), Some((3, 200)));
    assert_eq!(log.max_timestamp(&t, 0).unwrap(), Some((14, 402)));
}

#[test]
fn subscribe_sees_the_new_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(1, 1, 0))).unwrap();
    let mut rx = log.subscribe(&name("t"), 0).unwrap();
    assert_eq!(*rx.borrow(), 1);
    assert!(!rx.has_changed().unwrap());
    log.append(&name("t"), 0, Bytes::from(batch(3, 1, 0))).unwrap();
    assert!(rx.has_changed().unwrap());
    assert_eq!(*rx.borrow_and_update(), 4);

    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let log = std::sync::Arc::new(log);
    let writer = log.clone();
    let seen = rt.block_on(async move {
        let wait = tokio::spawn(async move {
            rx.changed().await.unwrap();
            *rx.borrow()
        });
        tokio::task::yield_now().await;
        writer.append(&name("t"), 0, Bytes::from(batch(2, 1, 0))).unwrap();
        wait.await.unwrap()
    });
    assert_eq!(seen, 6);
}

#[test]
fn reads_run_alongside_appends() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open_with(dir.path(), 64 * 1024, 512));
    create(&log, "t", 1);
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..500 {
                log.append(&name("t"), 0, Bytes::from(batch(1 + i % 4, 64, i as i64))).unwrap();
            }
        })
    };
    let mut offset = 0;
    while offset < 1250 {
        let r = log.read(&name("t"), 0, offset, 4096, true).unwrap();
        if let Some(records) = r.records {
            let got = batches_in(&records);
            assert!(got[0].0 <= offset && offset <= got[0].1);
            for w in got.windows(2) {
                assert_eq!(w[0].1 + 1, w[1].0);
            }
            offset = got.last().unwrap().1 + 1;
            assert!(offset <= r.high_watermark);
        }
    }
    writer.join().unwrap();
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 1250));
    log.flush().unwrap();
}

#[test]
fn a_gap_left_in_an_older_segment_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(4, 100, 0).len() as u64;
    let log = open_with(dir.path(), 2 * one + 10, 4096);
    create(&log, "t", 1);
    for i in 0..5 {
        log.append(&name("t"), 0, Bytes::from(batch(4, 100, i))).unwrap();
    }
    drop(log);
    // Damage the end of the first (not the active) segment: its second batch is lost.
    let first = segment_files(dir.path(), "t", 0).remove(0);
    let f = std::fs::OpenOptions::new().write(true).open(&first).unwrap();
    f.set_len(2 * one - 10).unwrap();
    drop(f);
    let log = open_with(dir.path(), 2 * one + 10, 4096);
    assert_eq!(std::fs::metadata(&first).unwrap().len(), one);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 20));
    let r = log.read(&name("t"), 0, 5, 1 << 20, true).unwrap();
    assert_eq!(batches_in(&r.records.unwrap()), vec![(8, 11), (12, 15)]);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 3), (8, 11), (12, 15), (16, 19)]);
}

/// A log with small segments and the given retention, one partition of topic "r" holding four
/// single-batch segments with newest timestamps 1000, 2000, 3000, 4000.
fn retained(dir: &Path, retention_ms: i64, retention_bytes: i64) -> (EmbeddedLog, u64) {
    let defaults =
        LogDefaults { segment_bytes: 1500, retention_ms, retention_bytes, ..LogDefaults::default() };
    let log = EmbeddedLog::open(dir, defaults).unwrap();
    create(&log, "r", 1);
    let mut size = 0;
    for i in 1..=4 {
        let b = batch(5, 200, i * 1000);
        size = b.len() as u64;
        log.append(&name("r"), 0, Bytes::from(b)).unwrap();
    }
    assert_eq!(segment_files(dir, "r", 0).len(), 4, "one batch per segment");
    (log, size)
}

#[test]
fn retention_by_time_deletes_whole_old_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = retained(dir.path(), 1000, -1);
    // At 3500 with retention 1000, segments whose newest record is before 2500 go: 1000, 2000.
    assert_eq!(log.enforce_retention(3500).unwrap(), 2);
    assert_eq!(log.offsets(&name("r"), 0).unwrap(), (10, 20));
    assert_eq!(segment_files(dir.path(), "r", 0).len(), 2);
    assert!(matches!(
        log.read(&name("r"), 0, 0, 1 << 20, true),
        Err(StorageError::OffsetOutOfRange { start: 10, .. })
    ));
    assert_eq!(read_all(&log, "r", 0), vec![(10, 14), (15, 19)]);
    // Once everything expired, the active segment goes too, as in Kafka: a new empty one at
    // the high watermark replaces it, and appends continue at the right offset.
    assert_eq!(log.enforce_retention(1_000_000).unwrap(), 2);
    assert_eq!(log.offsets(&name("r"), 0).unwrap(), (20, 20));
    assert_eq!(segment_files(dir.path(), "r", 0).len(), 1);
    assert_eq!(log.enforce_retention(2_000_000).unwrap(), 0, "an empty active segment stays");
    assert_eq!(log.append(&name("r"), 0, Bytes::from(batch(1, 10, 5000))).unwrap().base_offset, 20);
    assert_eq!(read_all(&log, "r", 0), vec![(20, 20)]);
    // A restart keeps the new log start.
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.offsets(&name("r"), 0).unwrap(), (20, 21));
    // Emptied and restarted before any append: the offsets continue too (`open` keeps the
    // default retention.ms, seven days).
    assert_eq!(log.enforce_retention(1_000_000_000).unwrap(), 1);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.offsets(&name("r"), 0).unwrap(), (21, 21));
    assert_eq!(log.append(&name("r"), 0, Bytes::from(batch(1, 10, 5000))).unwrap().base_offset, 21);
}

#[test]
fn retention_by_size_keeps_at_least_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let (log, size) = retained(dir.path(), -1, 0);
    // Keep at least two segments' worth: the two oldest go.
    let log = {
        drop(log);
        let defaults = LogDefaults {
            segment_bytes: 1500,
            retention_ms: -1,
            retention_bytes: 2 * size as i64,
            ..LogDefaults::default()
        };
        EmbeddedLog::open(dir.path(), defaults).unwrap()
    };
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
    assert_eq!(log.offsets(&name("r"), 0).unwrap(), (10, 20));
    assert_eq!(log.enforce_retention(0).unwrap(), 0, "at the limit: nothing more");
}

#[test]
fn retention_topic_configs_override_and_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let pairs = vec![("retention.ms".to_string(), "60000".to_string())];
    log.create_topic(&name("t"), 1, &pairs, false).unwrap();
    let meta = log.topic(&name("t")).unwrap();
    assert_eq!((meta.config.retention_ms, meta.config.retention_bytes), (60000, -1));
    let entries = meta.config.entries(log.defaults());
    let ms = entries.iter().find(|e| e.name == "retention.ms").unwrap();
    assert_eq!((ms.value.as_deref(), ms.is_default), (Some("60000"), false));
    let bytes = entries.iter().find(|e| e.name == "retention.bytes").unwrap();
    assert_eq!((bytes.value.as_deref(), bytes.is_default), (Some("-1"), true));
    // Kafka takes any retention.bytes (below zero: no limit), but retention.ms from -1 up.
    let bad = vec![("retention.ms".to_string(), "-2".to_string())];
    assert!(matches!(log.create_topic(&name("u"), 1, &bad, false), Err(StorageError::InvalidConfig(_))));
}

// Failed appends (full disk, read-only file system, failed fsync): injected through
// `Partition::faults`. A failed append must change nothing: no bytes stay in the file past the
// committed length, no segment is added, offsets, reads and the watch are as before, and the next
// append lands where the failed one would have.

fn partition(log: &EmbeddedLog, topic: &str) -> std::sync::Arc<super::partition::Partition> {
    log.partition(&name(topic), 0).unwrap().1
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// An I/O error (KAFKA_STORAGE_ERROR) whose message names the segment file and the OS error.
fn assert_storage_error(err: StorageError, os_error: &str) {
    assert_eq!(err.kafka_code(), 56, "{err}");
    assert!(matches!(err, StorageError::Io(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains(".log") && message.contains(os_error), "{message}");
}

#[test]
fn a_write_that_fails_midway_is_cut_off_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(3, 10, 0))).unwrap();
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let len = file_len(&file);
    let rx = log.subscribe(&name("t"), 0).unwrap();

    // Two batches in one append; the disk fills after the first one and a half.
    let mut two = batch(4, 100, 0);
    let first = two.len();
    two.extend_from_slice(&batch(4, 100, 0));
    partition(&log, "t").faults.lock().write = Some(first + first / 2);
    let err = log.append(&name("t"), 0, Bytes::from(two.clone())).unwrap_err();
    assert_storage_error(err, "No space left on device");
    assert_eq!(file_len(&file), len, "the partial write is cut off");
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
    assert!(!rx.has_changed().unwrap());
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4)]);
    assert_eq!(partition(&log, "t").index_entries(), vec![1]);

    // Space is back: the same append lands at the next offsets.
    let info = log.append(&name("t"), 0, Bytes::from(two)).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (5, 12));
    assert!(rx.has_changed().unwrap());
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4), (5, 8), (9, 12)]);
    drop(log);
    let log = open(dir.path());
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4), (5, 8), (9, 12)]);
}

#[test]
fn a_failed_append_into_a_new_segment_leaves_no_segment_behind() {
    let dir = tempfile::tempdir().unwrap();
    let one = batch(4, 100, 0).len() as u64;
    let segment_bytes = 2 * one + 10;
    let log = open_with(dir.path(), segment_bytes, 4096);
    create(&log, "t", 1);
    for i in 0..2 {
        log.append(&name("t"), 0, Bytes::from(batch(4, 100, i))).unwrap();
    }
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 1);

    // The roll itself fails (a read-only file system cannot create the file).
    partition(&log, "t").faults.lock().create = true;
    let err = log.append(&name("t"), 0, Bytes::from(batch(4, 100, 2))).unwrap_err();
    assert_storage_error(err, "Read-only file system");
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 1);
    assert_eq!(partition(&log, "t").segment_count(), 1);

    // The new segment is created, but the disk is full: it is removed again.
    partition(&log, "t").faults.lock().write = Some(10);
    let err = log.append(&name("t"), 0, Bytes::from(batch(4, 100, 2))).unwrap_err();
    assert_storage_error(err, "No space left on device");
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 1);
    assert_eq!(partition(&log, "t").segment_count(), 1);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 8));
    assert_eq!(read_all(&log, "t", 0), vec![(0, 3), (4, 7)]);

    // Once it can be written, the append rolls and lands at offset 8.
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(4, 100, 2))).unwrap().base_offset, 8);
    assert_eq!(segment_files(dir.path(), "t", 0).len(), 2);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 3), (4, 7), (8, 11)]);

    // A new segment that cannot be removed either is kept, empty, as the active segment.
    log.append(&name("t"), 0, Bytes::from(batch(4, 100, 3))).unwrap();
    {
        let p = partition(&log, "t");
        let mut faults = p.faults.lock();
        faults.write = Some(10);
        faults.remove = true;
    }
    let err = log.append(&name("t"), 0, Bytes::from(batch(4, 100, 4))).unwrap_err();
    assert_storage_error(err, "No space left on device");
    let files = segment_files(dir.path(), "t", 0);
    assert_eq!(files.len(), 3);
    assert_eq!(file_len(files.last().unwrap()), 0);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 16));
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(4, 100, 4))).unwrap().base_offset, 16);
    let expected: Vec<_> = (0..5).map(|i| (i * 4, i * 4 + 3)).collect();
    assert_eq!(read_all(&log, "t", 0), expected);
    drop(log);
    let log = open_with(dir.path(), segment_bytes, 4096);
    assert_eq!(read_all(&log, "t", 0), expected);
}

#[test]
fn a_tail_that_cannot_be_cut_off_blocks_appends_until_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let len = file_len(&file);

    // A whole batch of two gets written, and the file cannot be cut back: had a shorter append
    // been written over it, that batch could come back at the next open.
    let mut two = batch(1, 10, 0);
    let first = two.len();
    two.extend_from_slice(&batch(1, 500, 0));
    {
        let p = partition(&log, "t");
        let mut faults = p.faults.lock();
        faults.write = Some(first + 20);
        faults.cut = 2;
    }
    let err = log.append(&name("t"), 0, Bytes::from(two)).unwrap_err();
    assert_storage_error(err, "No space left on device");
    assert_eq!(file_len(&file), len + first as u64 + 20);
    // Refused while the tail is still there; reads are unaffected.
    let err = log.append(&name("t"), 0, Bytes::from(batch(1, 1, 0))).unwrap_err();
    assert_storage_error(err, "Read-only file system");
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 2));
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1)]);
    // Then the cut works, and the append after it lands at offset 2 with nothing behind it.
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(1, 1, 0))).unwrap().base_offset, 2);
    assert_eq!(file_len(&file), len + batch(1, 1, 0).len() as u64);
    drop(log);
    let log = open(dir.path());
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 2)]);

    // A flush retries the cut too.
    partition(&log, "t").faults.lock().write = Some(30);
    partition(&log, "t").faults.lock().cut = 1;
    log.append(&name("t"), 0, Bytes::from(batch(1, 10, 0))).unwrap_err();
    assert!(file_len(&file) > len);
    log.flush().unwrap();
    assert_eq!(file_len(&file), len + batch(1, 1, 0).len() as u64);
}

#[test]
fn a_failed_fsync_with_every_batch_fails_the_append_and_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = LogDefaults { fsync: crate::storage::FsyncPolicy::EveryBatch, ..LogDefaults::default() };
    let log = EmbeddedLog::open(dir.path(), defaults.clone()).unwrap();
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let len = file_len(&file);
    let rx = log.subscribe(&name("t"), 0).unwrap();

    partition(&log, "t").faults.lock().sync = true;
    let err = log.append(&name("t"), 0, Bytes::from(batch(3, 10, 0))).unwrap_err();
    assert_storage_error(err, "Input/output error");
    // Not acknowledged, so not kept: a retry stores the batch once.
    assert_eq!(file_len(&file), len);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 2));
    assert!(!rx.has_changed().unwrap());
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(3, 10, 0))).unwrap().base_offset, 2);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4)]);
    drop(log);
    let log = EmbeddedLog::open(dir.path(), defaults).unwrap();
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4)]);
}

#[test]
fn a_failed_flush_names_the_partition_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    partition(&log, "t").faults.lock().sync = true;
    let err = log.flush().unwrap_err();
    assert!(err.to_string().contains("t/0"), "{err}");
    assert_eq!(err.kafka_code(), 56);
    log.flush().unwrap();
}

#[test]
fn an_empty_segment_inside_the_previous_one_is_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 10, 0))).unwrap();
    log.append(&name("t"), 0, Bytes::from(batch(3, 10, 0))).unwrap();
    drop(log);
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let good_len = file_len(&file);
    // A torn tail on the segment, and the leftover of a failed roll at offset 2 (whose removal
    // a crash lost): kept, the log would end at 2 and offsets 2..5 would be handed out again.
    std::fs::OpenOptions::new().append(true).open(&file).unwrap().write_all(&[0xab; 30]).unwrap();
    let stray = file.with_file_name("00000000000000000002.log");
    std::fs::File::create(&stray).unwrap();
    let log = open(dir.path());
    assert!(!stray.exists());
    // The segment is the last one again, so it got the last one's scan: the tail is cut.
    assert_eq!(file_len(&file), good_len);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 5));
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(1, 10, 0))).unwrap().base_offset, 5);
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4), (5, 5)]);
}

// Idempotent producers: sequence checks on append, recovery of the producer state at open,
// producer ids and epoch bumps.

fn produce(
    log: &EmbeddedLog,
    topic: &str,
    pid: i64,
    epoch: i16,
    seq: i32,
    n: usize,
) -> Result<i64, StorageError> {
    log.append(&name(topic), 0, Bytes::from(idempotent_batch(n, pid, epoch, seq))).map(|a| a.base_offset)
}

fn code<T: std::fmt::Debug>(r: Result<T, StorageError>) -> i16 {
    r.unwrap_err().kafka_code()
}

#[test]
fn a_retried_batch_gets_its_original_offset_and_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    log.append(&name("t"), 0, Bytes::from(batch(2, 5, 0))).unwrap();
    assert_eq!(produce(&log, "t", 1, 0, 0, 3).unwrap(), 2);
    assert_eq!(produce(&log, "t", 1, 0, 3, 2).unwrap(), 5);
    // Both retried: the original offsets back, nothing appended.
    let info = log.append(&name("t"), 0, Bytes::from(idempotent_batch(3, 1, 0, 0))).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (2, 4));
    assert_eq!(produce(&log, "t", 1, 0, 3, 2).unwrap(), 5);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 7));
    assert_eq!(read_all(&log, "t", 0), vec![(0, 1), (2, 4), (5, 6)]);
    // The producer carries on; plain batches are never checked.
    assert_eq!(produce(&log, "t", 1, 0, 5, 1).unwrap(), 7);
    assert_eq!(log.append(&name("t"), 0, Bytes::from(batch(1, 5, 0))).unwrap().base_offset, 8);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 9));
}

#[test]
fn out_of_order_unknown_and_stale_producers_are_refused_and_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 2);
    assert_eq!(code(produce(&log, "t", 1, 0, 5, 1)), 59, "unknown producer, sequence not 0");
    produce(&log, "t", 1, 2, 0, 2).unwrap();
    assert_eq!(code(produce(&log, "t", 1, 2, 3, 1)), 45, "gap");
    assert_eq!(code(produce(&log, "t", 1, 1, 2, 1)), 47, "stale epoch");
    assert_eq!(code(produce(&log, "t", 1, 3, 2, 1)), 45, "new epoch must start at 0");
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 2));
    // librdkafka bumps its own epoch and starts again at 0.
    assert_eq!(produce(&log, "t", 1, 3, 0, 1).unwrap(), 2);
    // Epoch 3 is now known host-wide: epoch 2 is stale on another partition too.
    let other = |epoch| log.append(&name("t"), 1, Bytes::from(idempotent_batch(1, 1, epoch, 0)));
    assert_eq!(code(other(2)), 47);
    assert_eq!(other(3).unwrap().base_offset, 0);

    // Several batches in one append: checked in order, all or nothing.
    let mut two = idempotent_batch(2, 1, 3, 1);
    two.extend_from_slice(&idempotent_batch(1, 1, 3, 4)); // gap after 1..=2
    assert_eq!(code(log.append(&name("t"), 0, Bytes::from(two))), 45);
    let mut two = idempotent_batch(2, 1, 3, 1);
    two.extend_from_slice(&idempotent_batch(1, 1, 3, 3));
    let info = log.append(&name("t"), 0, Bytes::from(two.clone())).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 5));
    let info = log.append(&name("t"), 0, Bytes::from(two)).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (3, 5), "a retried multi-batch append");
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 6));

    // Only the transaction coordinator writes control batches (transactions: `txn_tests`).
    let control = with_attributes(&batch(1, 5, 0), 0x20);
    assert_eq!(code(log.append(&name("t"), 0, Bytes::from(control))), 87);
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 6));
}

#[test]
fn producer_state_is_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: the batches of one producer spread over several.
    let seg = idempotent_batch(2, 1, 0, 0).len() as u64 * 2;
    let log = open_with(dir.path(), seg, 4096);
    create(&log, "t", 1);
    for i in 0..7 {
        assert_eq!(produce(&log, "t", 1, 0, i * 2, 2).unwrap(), i64::from(i) * 3);
        log.append(&name("t"), 0, Bytes::from(batch(1, 5, 0))).unwrap();
    }
    // Producer 2 moves through epochs 0 and 1.
    produce(&log, "t", 2, 0, 0, 1).unwrap();
    produce(&log, "t", 2, 1, 0, 1).unwrap();
    let end = log.offsets(&name("t"), 0).unwrap().1;
    assert!(segment_files(dir.path(), "t", 0).len() > 3);
    // No flush, no clean shutdown: as after kill -9 (the bytes are in the page cache).
    drop(log);

    let log = open_with(dir.path(), seg, 4096);
    // Sequences 4..=13 are the last five batches: retries are still recognized.
    let retried = log.append(&name("t"), 0, Bytes::from(idempotent_batch(2, 1, 0, 12))).unwrap();
    assert_eq!(retried.base_offset, 18, "the original offset of the seventh batch");
    let retried = log.append(&name("t"), 0, Bytes::from(idempotent_batch(2, 1, 0, 6))).unwrap();
    assert_eq!(retried.base_offset, 9);
    assert_eq!(log.offsets(&name("t"), 0).unwrap().1, end, "nothing appended");
    assert_eq!(code(produce(&log, "t", 1, 0, 2, 2)), 45, "older than the last five");
    assert_eq!(code(produce(&log, "t", 1, 0, 15, 1)), 45, "gap");
    assert_eq!(produce(&log, "t", 1, 0, 14, 1).unwrap(), end);
    // Producer 2's epoch 1 came back, host-wide too.
    assert_eq!(code(produce(&log, "t", 2, 0, 1, 1)), 47);
    assert_eq!(produce(&log, "t", 2, 1, 1, 1).unwrap(), end + 1);
    create(&log, "u", 1);
    assert_eq!(code(produce(&log, "u", 2, 0, 0, 1)), 47, "stale on a partition that never saw it");
}

#[test]
fn a_torn_tail_takes_its_producer_state_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "t", 1);
    produce(&log, "t", 1, 0, 0, 2).unwrap();
    produce(&log, "t", 1, 0, 2, 2).unwrap();
    drop(log);
    // The second batch is torn by a crash: after the restart, its retry is appended, not a duplicate.
    let file = segment_files(dir.path(), "t", 0).pop().unwrap();
    let len = file_len(&file);
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(len - 3).unwrap();
    let log = open(dir.path());
    assert_eq!(log.offsets(&name("t"), 0).unwrap(), (0, 2));
    assert_eq!(produce(&log, "t", 1, 0, 2, 2).unwrap(), 2);
    assert_eq!(produce(&log, "t", 1, 0, 0, 2).unwrap(), 0, "the first batch is still a duplicate");
}

#[test]
fn retention_evicts_producers_whose_batches_are_gone() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = LogDefaults { segment_bytes: 1500, retention_bytes: 0, ..LogDefaults::default() };
    let log = EmbeddedLog::open(dir.path(), defaults).unwrap();
    create(&log, "r", 1);
    produce(&log, "r", 1, 0, 0, 1).unwrap();
    for i in 1..=3 {
        log.append(&name("r"), 0, Bytes::from(batch(5, 200, i * 1000))).unwrap();
    }
    assert!(log.enforce_retention(0).unwrap() > 0);
    assert!(log.offsets(&name("r"), 0).unwrap().0 > 0);
    // Kafka answers a producer it forgot with UNKNOWN_PRODUCER_ID; the client starts over.
    assert_eq!(code(produce(&log, "r", 1, 0, 1, 1)), 59);
    produce(&log, "r", 1, 1, 0, 1).unwrap();
}

#[test]
fn producer_ids_never_repeat_and_epochs_bump() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let a = log.allocate_producer_id().unwrap();
    let b = log.allocate_producer_id().unwrap();
    assert_ne!(a, b);
    // A crash with most of the block unused: none of it is handed out again.
    drop(log);
    let log = open(dir.path());
    let c = log.allocate_producer_id().unwrap();
    assert!(c > b, "{c} after {b}");

    create(&log, "t", 1);
    produce(&log, "t", c, 0, 0, 1).unwrap();
    assert_eq!(log.bump_producer_epoch(c, 0).unwrap(), Some(1));
    assert_eq!(code(produce(&log, "t", c, 0, 1, 1)), 47, "fenced by the bump");
    assert_eq!(produce(&log, "t", c, 1, 0, 1).unwrap(), 1);
    assert_eq!(log.bump_producer_epoch(c, i16::MAX - 1).unwrap(), None, "exhausted");
    assert_eq!(log.bump_producer_epoch(c + 1_000_000, 0).unwrap(), None, "never handed out");
}

#[test]
fn delete_records_moves_the_log_start_durably() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(dir.path(), 200, 4096);
    create(&log, "d", 1);
    let t = name("d");
    // Batches of 3 records, each larger than a segment: a segment per batch.
    for _ in 0..4 {
        log.append(&t, 0, Bytes::from(batch(3, 50, 1_000))).unwrap();
    }
    let before = segment_files(dir.path(), "d", 0).len();
    assert_eq!(log.delete_records(&t, 0, 4).unwrap(), 4);
    assert_eq!(log.offsets(&t, 0).unwrap(), (4, 12));
    assert!(matches!(log.read(&t, 0, 3, 1 << 20, true), Err(StorageError::OffsetOutOfRange { .. })));
    // The batch holding the new start is still read whole; the segment wholly below it is gone.
    let r = log.read(&t, 0, 4, 1 << 20, true).unwrap();
    assert_eq!(batches_in(&r.records.unwrap())[0], (3, 5));
    assert_eq!(segment_files(dir.path(), "d", 0).len(), before - 1);
    // Below the log start changes nothing; above the high watermark is out of range.
    assert_eq!(log.delete_records(&t, 0, 2).unwrap(), 4);
    assert!(matches!(log.delete_records(&t, 0, 13), Err(StorageError::OffsetOutOfRange { .. })));
    assert_eq!(log.offset_for_timestamp(&t, 0, 0).unwrap().map(|(o, _)| o), Some(4));
    drop(log);

    let log = open_with(dir.path(), 200, 4096);
    assert_eq!(log.offsets(&t, 0).unwrap(), (4, 12), "the log start survives a restart");
    assert_eq!(log.delete_records(&t, 0, -1).unwrap(), 12);
    assert_eq!(log.offsets(&t, 0).unwrap(), (12, 12));
    log.append(&t, 0, Bytes::from(batch(1, 10, 2_000))).unwrap();
    assert_eq!(read_all(&log, "d", 0), [(12, 12)]);
}

#[test]
fn report_gives_stored_bytes_and_producers_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    create(&log, "r", 2);
    let t = name("r");
    let (a, b, c) =
        (idempotent_batch(3, 7, 1, 0), idempotent_batch(2, 7, 1, 3), idempotent_batch(1, 9, 0, 0));
    for x in [&a, &b, &c] {
        log.append(&t, 0, Bytes::from(x.clone())).unwrap();
    }
    let want = |log: &EmbeddedLog| {
        let r = log.report(&t, 0).unwrap();
        assert_eq!(r.size_bytes, (a.len() + b.len() + c.len()) as u64);
        let got: Vec<(i64, i16, i32)> =
            r.producers.iter().map(|p| (p.producer_id, p.epoch, p.last_sequence)).collect();
        assert_eq!(got, [(7, 1, 4), (9, 0, 0)]);
        assert_eq!(log.report(&t, 1).unwrap(), Default::default());
        assert!(matches!(log.report(&t, 2), Err(StorageError::UnknownTopicOrPartition)));
    };
    want(&log);
    let d = log.log_dir();
    assert!(d.path.ends_with("topics"), "{d:?}");
    assert!(d.total_bytes.unwrap() >= d.usable_bytes.unwrap());
    drop(log);
    want(&open(dir.path()));
}

#[test]
fn idle_sealed_segments_are_closed_and_opened_again_when_read() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = LogDefaults { segment_bytes: 1500, idle_file_close_ms: 0, ..LogDefaults::default() };
    let log = EmbeddedLog::open(dir.path(), defaults).unwrap();
    create(&log, "r", 1);
    for i in 1..=4 {
        log.append(&name("r"), 0, Bytes::from(batch(5, 200, i * 1000))).unwrap();
    }
    let p = partition(&log, "r");
    assert_eq!(p.open_files(), 4);
    // A file that still owes an fsync is held until the flush.
    assert_eq!(log.close_idle_files(), 0);
    log.flush().unwrap();
    assert_eq!(log.close_idle_files(), 3, "every sealed segment; the active one stays open");
    assert_eq!(p.open_files(), 1);
    // Reads open them again and see everything; appends go on.
    assert_eq!(read_all(&log, "r", 0), vec![(0, 4), (5, 9), (10, 14), (15, 19)]);
    assert_eq!(p.open_files(), 4);
    assert_eq!(log.close_idle_files(), 3);
    assert_eq!(log.offset_for_timestamp(&name("r"), 0, 2000).unwrap(), Some((5, 2000)));
    log.append(&name("r"), 0, Bytes::from(batch(5, 200, 5000))).unwrap();
    assert_eq!(read_all(&log, "r", 0).len(), 5);
    // The retention pass closes them too (with the default ten minutes, a just-read file stays).
    log.flush().unwrap();
    assert_eq!(log.enforce_retention(6000).unwrap(), 0);
    assert_eq!(p.open_files(), 1);
    drop(log);
    let log = EmbeddedLog::open(dir.path(), LogDefaults::default()).unwrap();
    assert_eq!(read_all(&log, "r", 0).len(), 5);
    assert_eq!(log.close_idle_files(), 0, "read just now");
}
