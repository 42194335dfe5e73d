//! End to end with librdkafka (the `rdkafka` crate builds it from source): produce with keys,
//! headers and every compression codec, read back byte-exact; explicit and auto-created topics;
//! several partitions; admin calls; offsets.

use guise_tests::TestServer;
use rdkafka::Message;
use rdkafka::admin::{
    AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn producer(server: &TestServer, extra: &[(&str, &str)]) -> FutureProducer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", server.bootstrap()).set("message.timeout.ms", "30000").set("linger.ms", "5");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("producer")
}

/// A consumer without a group (partitions are assigned by hand: groups are a later issue).
fn consumer(server: &TestServer, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", server.bootstrap())
        .set("group.id", "guise-e2e")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("consumer")
}

fn admin(server: &TestServer) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", server.bootstrap()).create().expect("admin")
}

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: Option<i64>,
}

fn read(c: &BaseConsumer, topic: &str, partition: i32, from: i64, count: usize) -> Vec<Rec> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from)).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while out.len() < count {
        assert!(std::time::Instant::now() < deadline, "timed out: got {} of {count} records", out.len());
        match c.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => panic!("consume error: {e}"),
            Some(Ok(m)) => out.push(Rec {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers: m
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
                    .unwrap_or_default(),
                timestamp: m.timestamp().to_millis(),
            }),
        }
    }
    out
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn every_codec_round_trips_byte_exact() {
    let server = TestServer::start();
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        let p = producer(&server, &[("compression.codec", codec)]);
        let mut sent = Vec::new();
        block_on(async {
            for i in 0..50i64 {
                let key = format!("key-{i}").into_bytes();
                // Compressible and incompressible values, an empty one, and a tombstone.
                let value: Option<Vec<u8>> = match i {
                    7 => None,
                    8 => Some(Vec::new()),
                    _ if i % 2 == 0 => Some(format!("value {i} ").repeat(20).into_bytes()),
                    _ => Some(
                        (0..200u32)
                            .map(|b| (b.wrapping_mul(31).wrapping_add(i as u32) % 251) as u8)
                            .collect(),
                    ),
                };
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "h1", value: Some(&format!("v{i}")) })
                    .insert(Header { key: "empty", value: Some("") })
                    .insert(Header { key: "null", value: None::<&[u8]> });
                let ts = 1_700_000_000_000 + i;
                let mut rec = FutureRecord::to(&topic).key(&key).partition(0).headers(headers).timestamp(ts);
                if let Some(v) = &value {
                    rec = rec.payload(v);
                }
                let d = p
                    .send(rec, TIMEOUT)
                    .await
                    .unwrap_or_else(|(e, _)| panic!("{codec}: produce failed: {e}"));
                sent.push(Rec {
                    partition: 0,
                    offset: d.offset,
                    key: Some(key),
                    value,
                    headers: vec![
                        ("h1".into(), Some(format!("v{i}").into_bytes())),
                        ("empty".into(), Some(Vec::new())),
                        ("null".into(), None),
                    ],
                    timestamp: Some(ts),
                });
            }
        });
        let offsets: Vec<i64> = sent.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..50).collect::<Vec<_>>(), "{codec}: offsets are contiguous from 0");
        let got = read(&consumer(&server, &[]), &topic, 0, 0, sent.len());
        assert_eq!(got, sent, "{codec}: records read back differ");
    }
}

#[test]
fn explicit_topics_with_several_partitions() {
    let server = TestServer::start();
    let admin = admin(&server);
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results =
        block_on(admin.create_topics(&[NewTopic::new("multi", 3, TopicReplication::Fixed(1))], &opts))
            .unwrap();
    assert!(results[0].is_ok(), "{results:?}");
    // Creating it again is TOPIC_ALREADY_EXISTS.
    let again =
        block_on(admin.create_topics(&[NewTopic::new("multi", 3, TopicReplication::Fixed(1))], &opts))
            .unwrap();
    assert!(matches!(&again[0], Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))), "{again:?}");

    let p = producer(&server, &[]);
    block_on(async {
        for partition in 0..3 {
            for i in 0..10 {
                let payload = format!("p{partition}-{i}");
                let d = p
                    .send(FutureRecord::<(), _>::to("multi").payload(&payload).partition(partition), TIMEOUT)
                    .await
                    .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
                assert_eq!((d.partition, d.offset), (partition, i));
            }
        }
    });
    let c = consumer(&server, &[]);
    for partition in 0..3 {
        let got = read(&c, "multi", partition, 0, 10);
        let values: Vec<String> =
            got.iter().map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap()).collect();
        assert_eq!(values, (0..10).map(|i| format!("p{partition}-{i}")).collect::<Vec<_>>());
        let (low, high) = c.fetch_watermarks("multi", partition, TIMEOUT).unwrap();
        assert_eq!((low, high), (0, 10));
    }

    // Grow to 5 partitions, then describe the topic's configs, then delete it.
    let grown = block_on(admin.create_partitions(&[NewPartitions::new("multi", 5)], &opts)).unwrap();
    assert!(grown[0].is_ok(), "{grown:?}");
    let md = c.fetch_metadata(Some("multi"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 5);
    let configs = block_on(admin.describe_configs(&[ResourceSpecifier::Topic("multi")], &opts)).unwrap();
    let resource = configs[0].as_ref().expect("describe configs");
    let max_message = resource.get("max.message.bytes").expect("max.message.bytes is described");
    assert_eq!(max_message.value.as_deref(), Some("1048588"));
    let deleted = block_on(admin.delete_topics(&["multi"], &opts)).unwrap();
    assert!(deleted[0].is_ok(), "{deleted:?}");
    let md = c.fetch_metadata(None, TIMEOUT).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "multi"), "deleted topic still listed");
}

#[test]
fn produce_auto_creates_topics() {
    let server = TestServer::start_with(|c| c.default_partitions = 2);
    let p = producer(&server, &[]);
    block_on(async {
        let d = p
            .send(FutureRecord::<(), _>::to("auto-created").payload("hello").partition(1), TIMEOUT)
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        assert_eq!((d.partition, d.offset), (1, 0));
    });
    let c = consumer(&server, &[]);
    let md = c.fetch_metadata(Some("auto-created"), TIMEOUT).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 2);
    assert_eq!(read(&c, "auto-created", 1, 0, 1)[0].value.as_deref(), Some(&b"hello"[..]));
}

#[test]
fn without_auto_create_unknown_topics_fail() {
    let server = TestServer::start_with(|c| c.auto_create_topics = false);
    let c = consumer(&server, &[]);
    let md = c.fetch_metadata(Some("nope"), TIMEOUT).unwrap();
    assert_eq!(
        md.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    let p = producer(&server, &[("message.timeout.ms", "2000")]);
    let r = block_on(p.send(FutureRecord::<(), _>::to("nope").payload("x"), Duration::from_secs(5)));
    assert!(r.is_err(), "produce to an unknown topic must fail when auto-creation is off");
}

#[test]
fn offsets_by_time_and_watermarks() {
    let server = TestServer::start();
    let p = producer(&server, &[("linger.ms", "0")]);
    block_on(async {
        for i in 0..5i64 {
            p.send(
                FutureRecord::<(), _>::to("times").payload("x").partition(0).timestamp(1000 * (i + 1)),
                TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
    });
    let c = consumer(&server, &[]);
    assert_eq!(c.fetch_watermarks("times", 0, TIMEOUT).unwrap(), (0, 5));
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("times", 0, Offset::Offset(2500)).unwrap();
    let found = c.offsets_for_times(tpl, TIMEOUT).unwrap();
    assert_eq!(found.find_partition("times", 0).unwrap().offset(), Offset::Offset(2));
    p.flush(TIMEOUT).unwrap();
}

#[test]
fn retention_deletes_old_segments_and_moves_the_low_watermark() {
    let server = TestServer::start_with(|c| {
        c.segment_bytes = 4096;
        c.retention_check_interval_ms = 100;
    });
    let admin = admin(&server);
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let topic = NewTopic::new("retained", 1, TopicReplication::Fixed(1)).set("retention.ms", "60000");
    let created = block_on(admin.create_topics(&[topic], &opts)).unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    // Old records (timestamps in 2001) in several segments, then current ones.
    let p = producer(&server, &[("linger.ms", "0")]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    block_on(async {
        for i in 0..30i64 {
            let ts = if i < 20 { 1_000_000_000_000 + i } else { now };
            let payload = vec![b'r'; 1000];
            p.send(
                FutureRecord::<(), _>::to("retained").payload(&payload).partition(0).timestamp(ts),
                TIMEOUT,
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
    });
    let c = consumer(&server, &[]);
    let deadline = std::time::Instant::now() + TIMEOUT;
    let (low, high) = loop {
        let (low, high) = c.fetch_watermarks("retained", 0, TIMEOUT).unwrap();
        if low > 0 {
            break (low, high);
        }
        assert!(std::time::Instant::now() < deadline, "retention never ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(high, 30);
    assert!(low <= 20, "records newer than retention.ms are kept (low watermark {low})");
    // What is left reads from the new start; the current records are all there.
    let got = read(&c, "retained", 0, low, (high - low) as usize);
    assert_eq!(got.first().map(|r| r.offset), Some(low));
    assert_eq!(got.last().map(|r| r.offset), Some(29));
    let configs = block_on(admin.describe_configs(&[ResourceSpecifier::Topic("retained")], &opts)).unwrap();
    let retention = configs[0].as_ref().unwrap().get("retention.ms").expect("retention.ms is described");
    assert_eq!(retention.value.as_deref(), Some("60000"));
}

/// `max_partitions` caps the partitions of all topics together (the embedded log keeps a file
/// open per partition, so 20,000 of them once exhausted the descriptors): a creation or growth
/// past it gets POLICY_VIOLATION and changes nothing, and room freed by a deletion is usable.
#[test]
fn partitions_beyond_the_hosts_cap_are_refused() {
    use rdkafka::types::RDKafkaErrorCode;
    let server = TestServer::start_with(|c| c.max_partitions = 10);
    let admin = admin(&server);
    let opts = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let topic = |name: &'static str, n| NewTopic::new(name, n, TopicReplication::Fixed(1));
    let made = block_on(admin.create_topics(&[topic("eight", 8)], &opts)).unwrap();
    assert!(made[0].is_ok(), "{made:?}");
    let refused = block_on(admin.create_topics(&[topic("five", 5)], &opts)).unwrap();
    assert!(matches!(&refused[0], Err((_, RDKafkaErrorCode::PolicyViolation))), "{refused:?}");
    let refused = block_on(admin.create_partitions(&[NewPartitions::new("eight", 11)], &opts)).unwrap();
    assert!(matches!(&refused[0], Err((_, RDKafkaErrorCode::PolicyViolation))), "{refused:?}");
    let grown = block_on(admin.create_partitions(&[NewPartitions::new("eight", 10)], &opts)).unwrap();
    assert!(grown[0].is_ok(), "up to the cap: {grown:?}");
    let md = admin.inner().fetch_metadata(None, TIMEOUT).unwrap();
    assert!(md.topics().iter().all(|t| t.name() != "five"), "the refused topic does not exist");
    let gone = block_on(admin.delete_topics(&["eight"], &opts)).unwrap();
    assert!(gone[0].is_ok(), "{gone:?}");
    let made = block_on(admin.create_topics(&[topic("five", 5)], &opts)).unwrap();
    assert!(made[0].is_ok(), "room freed by the deletion: {made:?}");
}
