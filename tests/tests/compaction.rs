//! End to end with librdkafka: a topic with `cleanup.policy=compact` keeps the latest record of
//! each key, at its original offset, once the log cleaner has run; consumers read across the
//! gaps, the emptied batches of an idempotent producer and the re-compressed batches; a record
//! without a key is refused as Kafka refuses it.

use guise_host::record::batch::BatchHeader;
use guise_host::storage::{TopicName, wait};
use guise_tests::TestServer;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cleaner gets to run (polled; the machine may be busy).
const CLEANER_DEADLINE: Duration = Duration::from_secs(60);
const TOPIC: &str = "compacted";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

fn producer(server: &TestServer, extra: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", server.bootstrap()).set("message.timeout.ms", "30000");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("producer")
}

/// (offset, key, value) of every record from `from` up to the high watermark `end`.
fn consume(server: &TestServer, from: i64, end: i64) -> Vec<(i64, String, Option<String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "compaction-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("check.crcs", "true")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC, 0, Offset::Offset(from)).unwrap();
    c.assign(&tpl).unwrap();
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    let mut out: Vec<(i64, String, Option<String>)> = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while out.last().is_none_or(|r| r.0 + 1 < end) {
        assert!(Instant::now() < deadline, "timed out consuming: got {out:?}");
        match c.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push((m.offset(), text(m.key().unwrap()), m.payload().map(text))),
        }
    }
    out
}

#[test]
fn a_compacted_topic_keeps_the_latest_value_of_each_key_at_its_offset() {
    let server = TestServer::start_with(|c| c.log_cleaner_backoff_ms = 100);
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", server.bootstrap()).create().expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "100")
        .set("min.cleanable.dirty.ratio", "0.01");
    let created = block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(created[0].is_ok(), "{created:?}");

    // An idempotent producer, compressing, batching each round's records together. Rounds
    // update fewer and fewer keys, so the cleaner filters some batches (re-compressing them)
    // and empties others (round 3's: kept as an empty batch, the producer's state depends on
    // it); the pause between rounds rolls a new segment (segment.ms) at each.
    let p = producer(
        &server,
        &[("enable.idempotence", "true"), ("compression.type", "zstd"), ("linger.ms", "50")],
    );
    let rounds: [&[usize]; 5] =
        [&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &[0, 1, 2, 3, 4], &[0, 1, 9], &[0], &[0, 9]];
    let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    let mut produced = 0;
    for (round, keys) in rounds.iter().enumerate() {
        let sends: Vec<_> = keys
            .iter()
            .map(|&k| {
                let key = format!("key-{k}");
                // The last round deletes key 9 (a tombstone, kept for delete.retention.ms).
                let value = (round < 4 || k != 9).then(|| format!("{key} round {round} ").repeat(20));
                let record = FutureRecord::to(TOPIC).key(&key).partition(0);
                let record = match &value {
                    Some(v) => record.payload(v),
                    None => record,
                };
                let sent = p.send_result(record).unwrap_or_else(|(e, _)| panic!("enqueue: {e}"));
                (key, value, sent)
            })
            .collect();
        for (key, value, sent) in sends {
            let delivery = block_on(sent).unwrap().unwrap_or_else(|(e, _)| panic!("produce: {e}"));
            assert_eq!(delivery.partition, 0);
            latest.insert(key, (delivery.offset, value));
            produced += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // One more record rolls the last round out of the active segment, where the cleaner can
    // reach it; it stays active itself.
    let end_offset =
        block_on(p.send(FutureRecord::to(TOPIC).key("end").payload("end").partition(0), TIMEOUT))
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"))
            .offset;
    latest.insert("end".into(), (end_offset, Some("end".into())));
    p.flush(TIMEOUT).unwrap();
    assert_eq!(produced + 1, end_offset + 1, "every record got its own offset");

    // Wait for the cleaner (backoff 100 ms): until the log holds only the latest records.
    let name = TopicName::new("public", "default", TOPIC);
    let deadline = Instant::now() + CLEANER_DEADLINE;
    loop {
        let stored = server.stored(&name, 0).len();
        if stored == latest.len() {
            break;
        }
        assert!(Instant::now() < deadline, "the cleaner did not compact the topic: {stored} records stored");
        std::thread::sleep(Duration::from_millis(200));
    }

    // What the cleaner left: re-compressed batches with gaps, and an emptied one.
    let log = &server.server().log;
    let (mut offset, mut batches) = (0, Vec::new());
    while offset < end_offset {
        let mut bytes = wait(log.read(&name, 0, offset, 1 << 20, true)).unwrap().records.unwrap();
        while !bytes.is_empty() {
            let header = BatchHeader::parse(&bytes).unwrap();
            offset = header.next_offset();
            batches.push(header);
            let _ = bytes.split_to(header.size());
        }
    }
    assert!(batches.iter().any(|h| h.records_count == 0), "an emptied batch is kept: {batches:?}");
    assert!(
        batches.iter().any(|h| h.compression() == 4 && h.records_count <= h.last_offset_delta),
        "{batches:?}"
    );

    // Consumed from the beginning (an offset the cleaner removed): exactly the latest value of
    // each key, at the offset it was produced at.
    let mut expected: Vec<(i64, String, Option<String>)> =
        latest.iter().map(|(k, (offset, v))| (*offset, k.clone(), v.clone())).collect();
    expected.sort();
    assert_eq!(consume(&server, 0, end_offset + 1), expected);
    // From the middle of a removed range too.
    let from = expected[expected.len() / 2].0 - 1;
    let tail: Vec<_> = expected.iter().filter(|r| r.0 >= from).cloned().collect();
    assert_eq!(consume(&server, from, end_offset + 1), tail);

    // A record without a key: INVALID_RECORD, as Kafka answers.
    let plain = producer(&server, &[("linger.ms", "0"), ("retries", "0")]);
    let refused =
        block_on(plain.send(FutureRecord::<(), _>::to(TOPIC).payload("no key").partition(0), TIMEOUT));
    match refused {
        Err((KafkaError::MessageProduction(code), _)) => assert_eq!(code, RDKafkaErrorCode::InvalidRecord),
        other => panic!("a keyless record was not refused: {other:?}"),
    }
    block_on(plain.send(FutureRecord::to(TOPIC).key("k").payload("v").partition(0), TIMEOUT))
        .unwrap_or_else(|(e, _)| panic!("a keyed record after the refusal: {e}"));
}
