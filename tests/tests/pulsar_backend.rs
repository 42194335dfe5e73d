//! The `pulsar://` storage backend end to end, with real Kafka clients, against two Pulsars:
//! **Apache Pulsar 4.0** itself (the standalone of `guise_tests::apache_pulsar`, shared by the
//! run; each test works in namespaces of its own) and Guise's own Pulsar endpoint (host A, on its
//! embedded log), which is what the backend was first built against. Host B stores everything in
//! the cluster through the `pulsar` crate (storage = the cluster's URL). Every test also looks
//! at the cluster itself, so none can pass with B keeping data itself.

#[path = "support/rd_txn.rs"]
mod rd_txn;

use guise_host::record::batch::BatchHeader;
use guise_host::record::records;
use guise_host::storage::TopicName;
use guise_tests::TestServer;
use guise_tests::apache_pulsar::{self, ApachePulsar};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Where host B keeps everything.
enum Backing {
    /// Host A: Guise's Pulsar endpoint on an ephemeral port of 127.0.0.1.
    Guise(Box<TestServer>),
    Apache(&'static ApachePulsar),
}

struct Cluster {
    backing: Backing,
    url: String,
    /// B's namespace (its partition topics are `persistent://public/NS/t-partition-p`).
    namespace: String,
    /// B's `pulsar_metadata_namespace`.
    metadata: String,
    /// B's `pulsar_auth_token`, for a broker with authentication on.
    token: Option<String>,
}

/// A message as the cluster stores it.
#[derive(Debug)]
struct Stored {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    properties: BTreeMap<String, String>,
}

impl Cluster {
    fn guise() -> Cluster {
        let a = TestServer::start_with_pulsar(|_| {});
        let url = a.pulsar_url();
        Cluster {
            backing: Backing::Guise(Box::new(a)),
            url,
            namespace: "hostb".into(),
            metadata: "public/__guise".into(),
            token: None,
        }
    }

    /// The run's Apache Pulsar, with namespaces `public/ID` and `public/ID-meta` made for the test.
    fn apache(id: &str) -> Cluster {
        Cluster::on(apache_pulsar::shared(), id)
    }

    /// `pulsar`, with namespaces `public/ID` and `public/ID-meta` made for the test.
    fn on(pulsar: &'static ApachePulsar, id: &str) -> Cluster {
        let namespace = format!("pb-{id}");
        let metadata = format!("public/pb-{id}-meta");
        for ns in [format!("public/{namespace}"), metadata.clone()] {
            let (status, body) = pulsar.admin("PUT", &format!("/admin/v2/namespaces/{ns}"), Some("{}"));
            assert!(status == 204 || status == 409, "creating {ns}: {status} {body}");
        }
        Cluster { backing: Backing::Apache(pulsar), url: pulsar.url(), namespace, metadata, token: None }
    }

    /// A Guise host storing everything in the cluster.
    fn host(&self) -> TestServer {
        self.host_with(|_| {})
    }

    /// [`host`](Self::host) with more settings.
    fn host_with(&self, tweak: impl FnOnce(&mut guise_host::config::Config)) -> TestServer {
        TestServer::start_with(|c| {
            c.storage = self.url.parse().unwrap();
            c.namespace = self.namespace.clone();
            c.pulsar_metadata_namespace = self.metadata.clone();
            c.pulsar_auth_token = self.token.clone();
            if let Backing::Apache(pulsar) = &self.backing {
                c.pulsar_admin_url = Some(pulsar.web_url());
            }
            c.group_initial_rebalance_delay_ms = 0;
            tweak(c);
        })
    }

    /// B's partition topic `topic-partition-p`, as a Kafka topic name of the cluster's side.
    fn partition_topic(&self, topic: &str, p: i32) -> String {
        format!("persistent://public/{}/{topic}-partition-{p}", self.namespace)
    }

    /// Every message of the Pulsar topic `full` (`persistent://tenant/ns/name`), in order.
    fn messages(&self, full: &str) -> Vec<Stored> {
        match &self.backing {
            Backing::Guise(a) => {
                let (name, partition) = guise_name(full);
                a.stored(&name, partition).into_iter().map(|(_, r)| stored_of(r)).collect()
            }
            Backing::Apache(pulsar) => read_all(&pulsar.url(), full, self.token.as_deref()),
        }
    }

    /// Make B's topic `topic` refuse messages larger than `bytes` in the cluster (before anything
    /// is written to it).
    fn limit_message_size(&self, topic: &str, bytes: usize) {
        match &self.backing {
            Backing::Guise(a) => {
                let small = vec![("max.message.bytes".to_string(), bytes.to_string())];
                let (name, _) = guise_name(&self.partition_topic(topic, 0));
                guise_host::storage::wait(a.server().log.create_topic(&name, 1, &small, false)).unwrap();
            }
            Backing::Apache(pulsar) => {
                // A topic policy on the partitioned topic (Pulsar refuses policies on a partition).
                let path = format!("/admin/v2/persistent/public/{}/{topic}", self.namespace);
                let (status, body) =
                    pulsar.admin("POST", &format!("{path}/maxMessageSize"), Some(&bytes.to_string()));
                assert_eq!(status, 204, "limiting {topic}: {body}");
                // Topic policies travel through a system topic: wait until the broker applies it.
                let deadline = Instant::now() + TIMEOUT;
                while pulsar.admin_json(&format!("{path}/maxMessageSize?applied=true")) != bytes {
                    assert!(Instant::now() < deadline, "the policy on {topic} never applied");
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }

    /// Whether the Pulsar topic `full` has the durable subscription `sub`.
    fn has_subscription(&self, full: &str, sub: &str) -> bool {
        match &self.backing {
            Backing::Guise(a) => {
                let (name, _) = guise_name(full);
                let cursors = TopicName::new(&name.tenant, &name.namespace, "__pulsar_cursors");
                let topic = full.rsplit('/').next().unwrap();
                a.stored(&cursors, 0).into_iter().filter_map(|(_, r)| r.key).any(|k| {
                    let k = String::from_utf8_lossy(&k);
                    k.starts_with(&format!("{topic}@")) && k.ends_with(&format!("/{sub}"))
                })
            }
            Backing::Apache(pulsar) => {
                let path = full.replace("persistent://", "/admin/v2/persistent/");
                let subs = pulsar.admin_json(&format!("{path}/subscriptions"));
                subs.as_array().unwrap().iter().any(|s| s == sub)
            }
        }
    }
}

/// The test suite is named after the Pulsar it runs on: `<test>::on_apache_pulsar` and
/// `<test>::on_guise_endpoint`.
macro_rules! on_both {
    ($test:ident, $id:literal) => {
        mod $test {
            #[test]
            fn on_apache_pulsar() {
                super::$test(&super::Cluster::apache($id));
            }
            #[test]
            fn on_guise_endpoint() {
                super::$test(&super::Cluster::guise());
            }
        }
    };
}

/// Host A's name for a Pulsar topic, and the partition: the endpoint serves `t-partition-N` as
/// partition N of Kafka topic `t`, and a name without the suffix as partition 0 of its own topic.
fn guise_name(full: &str) -> (TopicName, i32) {
    let path = full.strip_prefix("persistent://").unwrap();
    let mut parts = path.splitn(3, '/');
    let (tenant, ns, topic) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    match topic.rsplit_once("-partition-").and_then(|(t, n)| Some((t, n.parse().ok()?))) {
        Some((base, n)) => (TopicName::new(tenant, ns, base), n),
        None => (TopicName::new(tenant, ns, topic), 0),
    }
}

fn stored_of(r: records::Record) -> Stored {
    Stored {
        key: r.key.map(|k| k.to_vec()),
        payload: r.value.map(|v| v.to_vec()).unwrap_or_default(),
        properties: r
            .headers
            .into_iter()
            .map(|h| (h.key, String::from_utf8_lossy(h.value.as_deref().unwrap_or_default()).into_owned()))
            .collect(),
    }
}

/// Every message of `topic` on the Pulsar at `url`, read with the `pulsar` crate from the
/// earliest on a subscription of its own (removed afterwards), until none comes for 3 s.
fn read_all(url: &str, topic: &str, token: Option<&str>) -> Vec<Stored> {
    use futures::StreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut builder = Pulsar::builder(url, TokioExecutor);
        if let Some(token) = token {
            builder = builder
                .with_auth(pulsar::Authentication { name: "token".into(), data: token.as_bytes().to_vec() });
        }
        let client = builder.build().await.unwrap();
        let mut consumer: pulsar::Consumer<Vec<u8>, _> = client
            .consumer()
            .with_topic(topic)
            .with_subscription(format!("test-reader-{}", std::process::id()))
            .with_subscription_type(SubType::Exclusive)
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            })
            .build()
            .await
            .unwrap();
        let mut out = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(3), consumer.next()).await {
            let m = m.unwrap();
            let meta = &m.payload.metadata;
            out.push(Stored {
                key: m.key_bytes().unwrap(),
                payload: m.payload.data.clone(),
                properties: meta.properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect(),
            });
            consumer.ack(&m).await.unwrap();
        }
        consumer.unsubscribe().await.unwrap();
        out
    })
}

fn record(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("value-{i}-").repeat(1 + i % 5).into_bytes()),
        headers: BTreeMap::from([("n".to_string(), i.to_string().into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
}

/// The example transform `mask-card` bound to topic `cards` (policy reject), and its component.
fn mask_card() -> (guise_host::transform::BindingSpec, Vec<u8>) {
    let spec = guise_host::transform::BindingSpec {
        topics: vec!["cards".into()],
        output_topics: vec![],
        policy: "reject".parse().unwrap(),
        config: vec![],
    };
    let module =
        std::fs::read(format!("{}/guise_transform_mask_card.wasm", guise_host::wasm::GUEST_DIR)).unwrap();
    (spec, module)
}

fn admin(server: &TestServer) -> AdminClient<DefaultClientContext> {
    ClientConfig::new().set("bootstrap.servers", server.bootstrap()).create().expect("admin")
}

fn create(server: &TestServer, topic: &str, partitions: i32, config: &[(&str, &str)]) {
    let mut t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    for (k, v) in config {
        t = t.set(k, v);
    }
    let res = futures::executor::block_on(admin(server).create_topics(&[t], &AdminOptions::new())).unwrap();
    assert!(res[0].is_ok(), "creating {topic}: {res:?}");
}

async fn partition(server: &TestServer, topic: &str, p: i32) -> PartitionClient {
    let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
    client.partition_client(topic, p, UnknownTopicHandling::Error).await.unwrap()
}

/// Every record from `from` to the high watermark, with its offset.
async fn fetch_all(pc: &PartitionClient, from: i64) -> Vec<(i64, Record)> {
    let mut out = Vec::new();
    let mut offset = from;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (records, hwm) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        for r in records.into_iter().filter(|r| r.offset >= from) {
            assert_eq!(r.offset, offset, "offsets are contiguous");
            offset += 1;
            out.push((r.offset, r.record));
        }
        if offset >= hwm {
            return out;
        }
        assert!(Instant::now() < deadline, "fetch made no progress at {offset} of {hwm}");
    }
}

/// No data directory for topics on B: it keeps nothing locally.
fn assert_no_local_topics(b: &TestServer) {
    let topics = b.dir.path().join("data").join("topics");
    let local = std::fs::read_dir(&topics).map(|d| d.count()).unwrap_or(0);
    assert_eq!(local, 0, "host B stored topics under {}", topics.display());
}

on_both!(produce_and_fetch_in_both_entry_formats, "formats");
fn produce_and_fetch_in_both_entry_formats(cluster: &Cluster) {
    let b = cluster.host();
    create(&b, "kf", 2, &[]);
    create(&b, "pf", 1, &[("guise.entry.format", "pulsar")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for topic in ["kf", "pf"] {
            let pc = partition(&b, topic, 0).await;
            let mut expected = Vec::new();
            let codecs = [Compression::NoCompression, Compression::Gzip, Compression::Lz4, Compression::Zstd];
            for (round, codec) in codecs.into_iter().enumerate() {
                let batch: Vec<Record> = (0..10).map(|i| record(round * 10 + i)).collect();
                let offsets = pc.produce(batch.clone(), codec).await.unwrap();
                assert_eq!(
                    offsets,
                    ((round * 10) as i64..(round * 10 + 10) as i64).collect::<Vec<_>>(),
                    "{topic}"
                );
                expected.extend(batch);
            }
            assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 40);
            let got: Vec<Record> = fetch_all(&pc, 0).await.into_iter().map(|(_, r)| r).collect();
            assert_eq!(got, expected, "{topic}");
            // From the middle of a batch, too (the fetch reader starts over).
            let tail = fetch_all(&pc, 25).await;
            assert_eq!(tail.len(), 15, "{topic}");
            assert_eq!(tail[0].1, expected[25], "{topic}");
        }
    });

    // In the cluster: format kafka is one message per batch plus the writer's probe and fence
    // marker, format pulsar one message per record, whose key is the Kafka key (Pulsar consumers
    // read them natively).
    assert_eq!(cluster.messages(&cluster.partition_topic("kf", 0)).len(), 2 + 4);
    let stored = cluster.messages(&cluster.partition_topic("pf", 0));
    assert_eq!(stored.len(), 2 + 40);
    let first = &stored[2 + 7];
    assert_eq!(first.key.as_deref(), Some(&b"key-7"[..]), "{first:?}");
    assert_eq!(first.payload, record(7).value.unwrap());
    assert_eq!(first.properties.get("n").map(String::as_str), Some("7"), "{first:?}");
    assert_eq!(first.properties.get("guise.offset").map(String::as_str), Some("7"), "{first:?}");
    // DescribeLogDirs on B: its log dir is the Pulsar URL, its partition sizes what it stored.
    let kf = TopicName::new("public", &cluster.namespace, "kf");
    let report = guise_host::storage::wait(b.server().log.report(&kf, 0)).unwrap();
    assert!(report.size_bytes > 0 && report.producers.is_empty(), "{report:?}");
    assert_eq!(b.server().log.log_dir().path, cluster.url);
    assert_no_local_topics(&b);
    if let Backing::Apache(pulsar) = &cluster.backing {
        // With the admin API, Kafka topic kf is Pulsar's partitioned topic kf, and goes with it.
        let ns = format!("/admin/v2/persistent/public/{}", cluster.namespace);
        assert_eq!(pulsar.admin_json(&format!("{ns}/kf/partitions"))["partitions"], 2);
        let partitioned = |topic: &str| {
            let list = pulsar.admin_json(&format!("{ns}/partitioned"));
            list.as_array().unwrap().iter().any(|t| t.as_str().unwrap().ends_with(&format!("/{topic}")))
        };
        assert!(partitioned("kf") && partitioned("pf"));
        let res =
            futures::executor::block_on(admin(&b).delete_topics(&["kf"], &AdminOptions::new())).unwrap();
        assert!(res[0].is_ok(), "{res:?}");
        assert!(!partitioned("kf") && partitioned("pf"), "kf is gone from Pulsar");
        let topics = pulsar.admin_json(&ns);
        assert!(
            !topics.as_array().unwrap().iter().any(|t| t.as_str().unwrap().contains("/kf-partition-")),
            "{topics}"
        );
    }
}

on_both!(committed_offsets_and_log_ends_survive_a_restart_of_b, "resume");
fn committed_offsets_and_log_ends_survive_a_restart_of_b(cluster: &Cluster) {
    let b = cluster.host();
    create(&b, "resume", 1, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pc = partition(&b, "resume", 0).await;
        for round in 0..3 {
            let batch: Vec<Record> = (0..5).map(|i| record(round * 5 + i)).collect();
            pc.produce(batch, Compression::NoCompression).await.unwrap();
        }
        // DeleteRecords inside the second batch: the log start is recorded in Pulsar.
        pc.delete_records(7, 30_000).await.unwrap();
        assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 7);
    });
    let group = |server: &TestServer| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "resumers")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("resume", 0, Offset::Offset(7)).unwrap();
    group(&b).commit(&tpl, CommitMode::Sync).unwrap();
    let committed = |server: &TestServer| -> Offset {
        let mut want = TopicPartitionList::new();
        want.add_partition("resume", 0);
        let got = group(server).committed_offsets(want, Duration::from_secs(30)).unwrap();
        got.find_partition("resume", 0).unwrap().offset()
    };
    assert_eq!(committed(&b), Offset::Offset(7));

    let b = b.restart();
    assert_eq!(committed(&b), Offset::Offset(7), "the commit is kept in Pulsar");
    rt.block_on(async {
        let pc = partition(&b, "resume", 0).await;
        assert_eq!(pc.get_offset(OffsetAt::Latest).await.unwrap(), 15);
        assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 7, "the log start is kept in Pulsar");
        let offsets = pc.produce(vec![record(99)], Compression::NoCompression).await.unwrap();
        assert_eq!(offsets, vec![15], "the next produce lands at the next offset");
        let all = fetch_all(&pc, 7).await;
        assert_eq!(all.first().map(|r| r.0), Some(7));
        assert_eq!(all.len(), 9);
        assert_eq!(all[8].1, record(99));
        assert_eq!(all[0].1, record(7));
    });
    // Two writers' probes and fence markers, the log start's marker and 3 + 1 batches in A.
    assert_eq!(cluster.messages(&cluster.partition_topic("resume", 0)).len(), 2 * 2 + 1 + 4);
    assert_no_local_topics(&b);
}

/// Every record from `from` to the high watermark, with its offset (gaps allowed: compaction).
async fn fetch_compacted(pc: &PartitionClient, from: i64) -> Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut offset = from;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (records, hwm) = pc.fetch_records(offset, 1..1_000_000, 1_000).await.unwrap();
        let from = offset;
        for r in records.into_iter().filter(|r| r.offset >= from) {
            offset = r.offset + 1;
            out.push((r.offset, r.record.key, r.record.value));
        }
        if offset >= hwm {
            return out;
        }
        assert!(Instant::now() < deadline, "fetch made no progress at {offset} of {hwm}");
    }
}

fn keyed(key: &str, value: Option<&str>) -> Record {
    Record {
        key: Some(key.as_bytes().to_vec()),
        value: value.map(|v| v.as_bytes().to_vec()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    }
}

/// Produce to a compacted topic: k0..k9, then k0..k4, then k0..k2, then k9's tombstone; what a
/// compaction keeps: each key's latest record at its offset.
async fn produce_versions(pc: &PartitionClient) -> Vec<(i64, Option<Vec<u8>>, Option<Vec<u8>>)> {
    let mut latest = BTreeMap::new();
    let mut next = 0i64;
    for (round, keys) in [10, 5, 3].into_iter().enumerate() {
        let batch: Vec<Record> =
            (0..keys).map(|k| keyed(&format!("k{k}"), Some(&format!("v{round}")))).collect();
        for k in 0..keys {
            latest.insert(format!("k{k}"), (next + k as i64, Some(format!("v{round}").into_bytes())));
        }
        assert_eq!(pc.produce(batch, Compression::Lz4).await.unwrap()[0], next);
        next += keys as i64;
    }
    pc.produce(vec![keyed("k9", None)], Compression::NoCompression).await.unwrap();
    latest.insert("k9".into(), (next, None));
    let mut expected: Vec<_> =
        latest.into_iter().map(|(k, (offset, value))| (offset, Some(k.into_bytes()), value)).collect();
    expected.sort();
    expected
}

on_both!(compacted_topics_keep_each_keys_latest_record_across_restarts, "compact");
/// `cleanup.policy=compact` on the backend: the owner rewrites the partition's live part at the
/// topic's end (`partition::compact`); offsets are kept, a read of a removed offset gets the next
/// batch, the log start stays, a restart rebuilds the same partition from the copies, and the
/// next produce continues at the next offset. Keyless records are refused as Kafka refuses them.
fn compacted_topics_keep_each_keys_latest_record_across_restarts(cluster: &Cluster) {
    let b = cluster.host_with(|c| c.log_cleaner_backoff_ms = 300);
    let compact = [("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.01")];
    create(&b, "ck", 1, &compact);
    create(&b, "cp", 1, &[compact[0], compact[1], ("guise.entry.format", "pulsar")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut expected = BTreeMap::new();
    rt.block_on(async {
        for topic in ["ck", "cp"] {
            let pc = partition(&b, topic, 0).await;
            expected.insert(topic, produce_versions(&pc).await);
            let keyless = Record { key: None, ..keyed("x", Some("x")) };
            let err = pc.produce(vec![keyless], Compression::NoCompression).await.unwrap_err();
            assert!(format!("{err:?}").contains("InvalidRecord"), "{topic}: {err:?}");
        }
        for topic in ["ck", "cp"] {
            let pc = partition(&b, topic, 0).await;
            let deadline = Instant::now() + TIMEOUT;
            loop {
                let got = fetch_compacted(&pc, 0).await;
                if got == expected[topic] {
                    break;
                }
                assert!(Instant::now() < deadline, "{topic} was never compacted: {got:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0, "{topic}: the log start stays");
            let from_middle = fetch_compacted(&pc, 10).await;
            assert_eq!(from_middle[0].0, 13, "{topic}: a removed offset reads the next batch");
        }
    });
    for topic in ["ck", "cp"] {
        let stored = cluster.messages(&cluster.partition_topic(topic, 0));
        let copies = stored.iter().filter(|m| m.properties.contains_key("guise.copy")).count();
        let commits = stored.iter().filter(|m| m.properties.contains_key("guise.compacted")).count();
        assert!(copies > 0 && commits > 0, "{topic}: the copies and their commit are in the cluster");
    }

    let b = b.restart();
    rt.block_on(async {
        for topic in ["ck", "cp"] {
            let pc = partition(&b, topic, 0).await;
            assert_eq!(fetch_compacted(&pc, 0).await, expected[topic], "{topic}: the same after a restart");
            assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0, "{topic}");
            let next = expected[topic].last().unwrap().0 + 1;
            assert_eq!(
                pc.produce(vec![keyed("k0", Some("again"))], Compression::NoCompression).await.unwrap(),
                [next]
            );
        }
    });
    assert_no_local_topics(&b);
}

on_both!(a_second_host_takes_over_and_the_first_is_fenced, "takeover");
fn a_second_host_takes_over_and_the_first_is_fenced(cluster: &Cluster) {
    let b1 = cluster.host();
    create(&b1, "tk", 1, &[("guise.entry.format", "pulsar")]);
    create(&b1, "tk2", 1, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for topic in ["tk", "tk2"] {
        rt.block_on(async {
            let pc = partition(&b1, topic, 0).await;
            let offsets = pc.produce((0..4).map(record).collect(), Compression::NoCompression).await.unwrap();
            assert_eq!(offsets, vec![0, 1, 2, 3]);
        });
    }

    let b2 = cluster.host();
    for topic in ["tk", "tk2"] {
        rt.block_on(async {
            let pc = partition(&b2, topic, 0).await;
            let offsets = pc.produce((4..6).map(record).collect(), Compression::Gzip).await.unwrap();
            assert_eq!(offsets, vec![4, 5], "{topic}: B2 continues where B1 stopped");
        });

        // B1 no longer owns the partition: its appends fail, now and later.
        let batch = raw_batch(b"zombie");
        let name = TopicName::new("public", &cluster.namespace, topic);
        let started = Instant::now();
        let err = guise_host::storage::wait(b1.server().log.append(&name, 0, batch.clone())).unwrap_err();
        assert_eq!(err.kafka_code(), 6, "{topic}: {err}");
        // It finds the newer writer's fence marker: no waiting for the operation timeout.
        assert!(started.elapsed() < Duration::from_secs(15), "{topic}: took {:?}", started.elapsed());
        let err = guise_host::storage::wait(b1.server().log.append(&name, 0, batch)).unwrap_err();
        assert_eq!(err.kafka_code(), 6, "{topic}: still fenced: {err}");

        rt.block_on(async {
            let pc = partition(&b2, topic, 0).await;
            let offsets = pc.produce(vec![record(6)], Compression::NoCompression).await.unwrap();
            assert_eq!(offsets, vec![6]);
            let all = fetch_all(&pc, 0).await;
            let values: Vec<Record> = all.iter().map(|(_, r)| r.clone()).collect();
            assert_eq!(
                values,
                (0..7).map(record).collect::<Vec<_>>(),
                "{topic}: no interleaved or lost records"
            );
        });
    }
    drop(b1);
    // A restart of B2 reads the same log.
    let b2 = b2.restart();
    rt.block_on(async {
        let pc = partition(&b2, "tk", 0).await;
        let all = fetch_all(&pc, 0).await;
        assert_eq!(all.len(), 7);
        assert_eq!(pc.produce(vec![record(7)], Compression::NoCompression).await.unwrap(), vec![7]);
    });
    assert!(cluster.messages(&cluster.partition_topic("tk", 0)).len() >= 8);
}

/// A Kafka batch of one record with `value`, for appends straight to a host's log.
fn raw_batch(value: &[u8]) -> bytes::Bytes {
    let recs = vec![records::Record {
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value)),
        headers: vec![],
        timestamp: 1,
        offset_delta: 0,
    }];
    bytes::Bytes::from(records::encode(&recs, &records::EncodeSpec::plain(0, 1)).unwrap())
}

/// The transaction markers (control batches) stored in the cluster for partition `p` of `topic`.
fn stored_markers(cluster: &Cluster, topic: &str, p: i32) -> usize {
    cluster
        .messages(&cluster.partition_topic(topic, p))
        .iter()
        .filter(|m| BatchHeader::parse(&m.payload).is_ok_and(|h| h.is_control()))
        .count()
}

on_both!(transactions_commit_abort_and_survive_a_restart, "txn");
/// Transactions (KIP-98) on the Pulsar backend, in both entry formats: read_committed sees only
/// committed records, and a restarted host recovers the open and the aborted transactions from
/// the cluster alone, then lets the open one commit.
fn transactions_commit_abort_and_survive_a_restart(cluster: &Cluster) {
    let b = cluster.host();
    create(&b, "tx", 1, &[]);
    create(&b, "txp", 1, &[("guise.entry.format", "pulsar")]);
    // A transform routes records of a transaction to another topic: they join it.
    create(&b, "txr", 1, &[]);
    create(&b, "txr-vip", 1, &[("guise.entry.format", "pulsar")]);
    let route = guise_host::transform::BindingSpec {
        topics: vec!["txr".into()],
        output_topics: vec!["txr-vip".into()],
        policy: "reject".parse().unwrap(),
        config: vec![],
    };
    let module =
        std::fs::read(format!("{}/guise_transform_route_by_key.wasm", guise_host::wasm::GUEST_DIR)).unwrap();
    guise_host::admin::client::AdminClient::new(b.admin_addr.to_string())
        .deploy_transform("public", "route", &route, &module)
        .unwrap();
    let routing = rd_txn::producer(&b, "txr-id", &[]);
    let send_vip = |value: &str| {
        routing
            .send(rdkafka::producer::BaseRecord::to("txr").partition(0).key("vip-1").payload(value))
            .unwrap();
        routing.flush(TIMEOUT).unwrap();
    };
    routing.init_transactions(TIMEOUT).unwrap();
    for (value, commit) in [("r1", true), ("r2", false)] {
        routing.begin_transaction().unwrap();
        send_vip(value);
        if commit { routing.commit_transaction(TIMEOUT) } else { routing.abort_transaction(TIMEOUT) }
            .unwrap();
    }
    routing.begin_transaction().unwrap();
    send_vip("r3"); // left open across the restart
    let mut producers = Vec::new();
    for topic in ["tx", "txp"] {
        let p = rd_txn::producer(&b, &format!("{topic}-id"), &[]);
        rd_txn::commit_abort_commit(&p, topic);
        // Left open across the restart.
        p.begin_transaction().unwrap();
        rd_txn::send(&p, topic, 0, &["open"]);
        assert_eq!(rd_txn::read(&b, topic, 0, "read_committed", 3), ["a", "b", "c"], "{topic}");
        producers.push(p);
    }
    assert_no_local_topics(&b);
    let b = b.restart();
    for (topic, p) in ["tx", "txp"].into_iter().zip(&producers) {
        assert_eq!(rd_txn::read(&b, topic, 0, "read_committed", 3), ["a", "b", "c"], "{topic}: recovered");
        assert_eq!(
            rd_txn::read(&b, topic, 0, "read_uncommitted", 7),
            ["a", "b", "x", "y", "z", "c", "open"],
            "{topic}"
        );
        p.commit_transaction(TIMEOUT).expect("the open transaction commits after the restart");
        assert_eq!(rd_txn::read(&b, topic, 0, "read_committed", 4), ["a", "b", "c", "open"], "{topic}");
        // The markers are in the cluster (format `pulsar` stores them, and the transactional
        // batches, as format `kafka` does): commit, abort, commit, commit.
        assert_eq!(stored_markers(cluster, topic, 0), 4, "{topic}");
    }
    assert!(!cluster.messages(&cluster.partition_topic("__transaction_state", 0)).is_empty());
    assert_eq!(rd_txn::read(&b, "txr-vip", 0, "read_committed", 1), ["r1"], "routed, recovered");
    routing.commit_transaction(TIMEOUT).expect("the routed transaction commits after the restart");
    assert_eq!(rd_txn::read(&b, "txr-vip", 0, "read_committed", 2), ["r1", "r3"]);
    assert_eq!(rd_txn::read(&b, "txr-vip", 0, "read_uncommitted", 3), ["r1", "r2", "r3"]);
    assert_eq!(stored_markers(cluster, "txr-vip", 0), 3, "commit, abort, commit on the routed partition");
}

on_both!(a_replacement_host_finishes_or_aborts_what_the_old_one_left, "txn-takeover");
/// A host that dies with a commit half done (its prepare stored, one of two markers written:
/// the other partition was taken by another host) or with a transaction open: the host that
/// loads the transaction log next writes the missing marker, and aborts the open transaction
/// once its timeout passes, so read_committed consumers move on.
fn a_replacement_host_finishes_or_aborts_what_the_old_one_left(cluster: &Cluster) {
    // B2 starts first: the transaction log is B1's (created after both started).
    let b2 = cluster.host();
    let b1 = cluster.host();
    create(&b1, "tt", 2, &[]);
    let p = rd_txn::producer(&b1, "tt-id", &[]);
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p.begin_transaction().unwrap();
    rd_txn::send(&p, "tt", 0, &["p0"]);
    rd_txn::send(&p, "tt", 1, &["p1"]);
    // B2 takes partition 1 (it appends there): B1's marker for it fails, after the prepare.
    let name = TopicName::new("public", &cluster.namespace, "tt");
    let appended = guise_host::storage::wait(b2.server().log.append(&name, 1, raw_batch(b"b2"))).unwrap();
    assert_eq!(appended.base_offset, 1);
    let err = p.commit_transaction(Duration::from_secs(5)).expect_err("B1 cannot write the second marker");
    eprintln!("the commit on B1: {err}");
    drop(p);
    drop(b1);
    assert_eq!(stored_markers(cluster, "tt", 0), 1, "B1 wrote the first marker");
    assert_eq!(stored_markers(cluster, "tt", 1), 0, "and not the second");

    let b2 = b2.restart();
    assert_eq!(rd_txn::read(&b2, "tt", 1, "read_committed", 2), ["p1", "b2"], "the commit is finished");
    assert_eq!(rd_txn::read(&b2, "tt", 0, "read_committed", 1), ["p0"]);
    assert_eq!(stored_markers(cluster, "tt", 1), 1, "by the replacement");
    // (It writes partition 0's again: a second marker changes nothing.)
    assert_eq!(stored_markers(cluster, "tt", 0), 2);

    // A transaction left open by a host that stops: aborted after its timeout (by the next
    // host, unless the restart takes longer than the timeout).
    let q = rd_txn::producer(
        &b2,
        "tt-open",
        &[("transaction.timeout.ms", "15000"), ("message.timeout.ms", "15000")],
    );
    q.init_transactions(TIMEOUT).expect("init_transactions");
    q.begin_transaction().unwrap();
    rd_txn::send(&q, "tt", 0, &["left"]);
    drop(q);
    guise_host::storage::wait(b2.server().log.append(&name, 0, raw_batch(b"after"))).unwrap();
    let b2 = b2.restart();
    // Below the open transaction's first offset until the abort; then up to the end.
    assert_eq!(rd_txn::read(&b2, "tt", 0, "read_committed", 2), ["p0", "after"]);
    assert_eq!(rd_txn::read(&b2, "tt", 0, "read_uncommitted", 3), ["p0", "left", "after"]);
    assert_eq!(stored_markers(cluster, "tt", 0), 3, "the abort marker");
}

on_both!(a_failed_send_is_retriable_and_the_writer_takes_the_partition_back, "flaky");
fn a_failed_send_is_retriable_and_the_writer_takes_the_partition_back(cluster: &Cluster) {
    // In the cluster, the partition's topic refuses messages above 4 KiB: a bigger send from B fails, and
    // not because another host took the partition.
    let b = cluster.host();
    create(&b, "flaky", 1, &[]);
    cluster.limit_message_size("flaky", 4096);
    let name = TopicName::new("public", &cluster.namespace, "flaky");
    let log = &b.server().log;
    assert_eq!(guise_host::storage::wait(log.append(&name, 0, raw_batch(b"first"))).unwrap().base_offset, 0);
    let started = Instant::now();
    let err = guise_host::storage::wait(log.append(&name, 0, raw_batch(&[b'x'; 8192]))).unwrap_err();
    assert_eq!(err.kafka_code(), 56, "a retriable KAFKA_STORAGE_ERROR, not NOT_LEADER: {err}");
    eprintln!("the failed send took {:?}", started.elapsed());
    // The next append takes the partition back (a new fence) and continues at the next offset.
    assert_eq!(guise_host::storage::wait(log.append(&name, 0, raw_batch(b"second"))).unwrap().base_offset, 1);
    assert_eq!(guise_host::storage::wait(log.offsets(&name, 0)).unwrap(), (0, 2));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pc = partition(&b, "flaky", 0).await;
        let values: Vec<Vec<u8>> =
            fetch_all(&pc, 0).await.into_iter().map(|(_, r)| r.value.unwrap()).collect();
        assert_eq!(values, [b"first".to_vec(), b"second".to_vec()]);
    });
    // The same after a restart (the second fence marker continues at offset 1).
    let b = b.restart();
    assert_eq!(guise_host::storage::wait(b.server().log.offsets(&name, 0)).unwrap(), (0, 2));
}

on_both!(a_pulsar_format_topic_is_fetched_from_pulsar_after_a_restart, "many");
/// Fetches that go to Pulsar (not the tail cache: B restarted) of a topic of entry format
/// `pulsar`, where a 1 MiB fetch is thousands of messages: each answers within the guest call's
/// deadline, and all records come back in order.
fn a_pulsar_format_topic_is_fetched_from_pulsar_after_a_restart(cluster: &Cluster) {
    let b = cluster.host();
    create(&b, "many", 1, &[("guise.entry.format", "pulsar")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let value = |i: usize| format!("{i:0>100}").into_bytes();
    rt.block_on(async {
        let pc = partition(&b, "many", 0).await;
        for round in 0..20 {
            let batch: Vec<Record> = (round * 1000..round * 1000 + 1000)
                .map(|i| Record { value: Some(value(i)), ..record(i) })
                .collect();
            pc.produce(batch, Compression::Lz4).await.unwrap();
        }
    });
    let b = b.restart();
    rt.block_on(async {
        let pc = partition(&b, "many", 0).await;
        let got = fetch_all(&pc, 0).await;
        assert_eq!(got.len(), 20_000);
        for (i, (offset, r)) in got.iter().enumerate() {
            assert_eq!((*offset, r.value.as_deref()), (i as i64, Some(&value(i)[..])));
        }
    });
}

on_both!(a_replacement_host_runs_the_deployed_translator_and_transforms, "modules");
/// The module registries are in Pulsar too: a replacement host with a new, empty data directory
/// runs the translator version and the tenant transforms its predecessor deployed (and not the
/// ones it deleted), without any of them being uploaded again.
fn a_replacement_host_runs_the_deployed_translator_and_transforms(cluster: &Cluster) {
    use guise_host::admin::client::AdminClient;
    let card = |n: usize| Record {
        key: None,
        value: Some(format!(r#"{{"n":{n},"card_number":"4111 1111 1111 1234"}}"#).into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    };
    let masked = |n: usize| format!(r#"{{"card_number":"**** **** **** 1234","n":{n}}}"#);
    let (mask, module) = mask_card();
    let faulty = std::fs::read(guise_test_guests::FAULTY_TRANSLATOR_PATH).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let produce = |b: &TestServer, n: usize| {
        rt.block_on(async {
            let pc = partition(b, "cards", 0).await;
            pc.produce(vec![card(n)], Compression::NoCompression).await.unwrap()[0]
        })
    };
    let values = |b: &TestServer| -> Vec<String> {
        rt.block_on(async {
            let pc = partition(b, "cards", 0).await;
            fetch_all(&pc, 0)
                .await
                .into_iter()
                .map(|(_, r)| String::from_utf8(r.value.unwrap()).unwrap())
                .collect()
        })
    };

    let b1 = cluster.host();
    let admin = AdminClient::new(b1.admin_addr.to_string());
    let v2 = admin.deploy("kafka", &faulty).unwrap();
    assert_eq!(v2.version, 2);
    admin.deploy_transform("public", "mask-card", &mask, &module).unwrap();
    create(&b1, "cards", 1, &[]);
    assert_eq!(produce(&b1, 0), 0);
    drop(b1); // and its data directory with it

    let b2 = cluster.host();
    let admin = AdminClient::new(b2.admin_addr.to_string());
    let kafka = admin.show("kafka").unwrap();
    assert_eq!(kafka.active, Some(2), "the deployed translator, not the binary's: {kafka:?}");
    assert_eq!(kafka.versions.iter().find(|v| v.active).unwrap().sha256, v2.sha256);
    let transforms = admin.list_transforms(Some("public")).unwrap();
    assert_eq!(transforms.len(), 1, "{transforms:?}");
    assert_eq!(produce(&b2, 1), 1);
    assert_eq!(values(&b2), [masked(0), masked(1)], "B2 runs the transform B1 deployed");
    // A host started meanwhile rolls the translator back: B2, which still runs version 2,
    // refuses to change the module from its older state instead of overwriting that.
    let bx = cluster.host();
    let rolled = AdminClient::new(bx.admin_addr.to_string()).rollback("kafka", None).unwrap();
    assert_eq!(rolled.version, 1);
    drop(bx);
    let err = admin.rollback("kafka", None).unwrap_err().to_string();
    assert!(err.contains("another host") && err.contains("HTTP 409"), "{err}");
    admin.delete_transform("public", "mask-card").unwrap();
    drop(b2);

    let b3 = cluster.host();
    let admin = AdminClient::new(b3.admin_addr.to_string());
    assert!(admin.list_transforms(Some("public")).unwrap().is_empty(), "the deletion holds");
    assert_eq!(admin.show("kafka").unwrap().active, Some(1), "and so does the rollback");
    assert_eq!(produce(&b3, 2), 2);
    assert_eq!(values(&b3)[2].as_bytes(), card(2).value.unwrap(), "no transform runs on B3");
    // In the cluster: the registries' log, components included, ...
    let meta = |log: &str| format!("persistent://{}/{log}", cluster.metadata);
    assert!(cluster.messages(&meta("modules")).len() >= 4, "the registries are kept in the cluster");
    // ... and held there by a durable subscription, as each metadata log is (Pulsar would
    // otherwise delete them: no retention policy is required, and inactive topics go).
    drop(b3);
    for log in ["topics", "producer-ids", "modules"] {
        assert!(cluster.has_subscription(&meta(log), "guise-retention"), "{log}");
    }
}

/// Apache Pulsar set to take whatever it may: ledgers roll every 5 entries, and topics without
/// producers or consumers are deleted after 3 s unless a subscription holds them (Pulsar's
/// default policy, `delete_when_no_subscriptions`, with its timings shortened). Nothing of B's
/// goes: not its partitions, not their messages across ledgers, not the metadata logs, while no
/// host runs; and a new B finds the exact end after the roll-overs.
#[test]
fn nothing_is_lost_to_ledger_rollover_or_inactive_topic_deletion() {
    let pulsar: &'static ApachePulsar = Box::leak(Box::new(ApachePulsar::start_owned(&[
        "managedLedgerMaxEntriesPerLedger=5",
        "managedLedgerMinLedgerRolloverTimeMinutes=0",
        "brokerDeleteInactiveTopicsEnabled=true",
        "brokerDeleteInactiveTopicsFrequencySeconds=1",
        "brokerDeleteInactiveTopicsMaxInactiveDurationSeconds=3",
    ])));
    let cluster = Cluster::on(pulsar, "rollover");
    let b = cluster.host();
    create(&b, "roll", 1, &[]);
    create(&b, "rollp", 1, &[("guise.entry.format", "pulsar")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for topic in ["roll", "rollp"] {
            let pc = partition(&b, topic, 0).await;
            for i in 0..30 {
                assert_eq!(
                    pc.produce(vec![record(i)], Compression::NoCompression).await.unwrap(),
                    vec![i as i64]
                );
            }
        }
    });
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset("roll", 0, Offset::Offset(12)).unwrap();
    let group = |server: &TestServer| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "rollers")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    };
    group(&b).commit(&tpl, CommitMode::Sync).unwrap();
    let path = |topic: &str| format!("/admin/v2/persistent/public/{}/{topic}-partition-0", cluster.namespace);
    let ledgers =
        pulsar.admin_json(&format!("{}/internalStats", path("roll")))["ledgers"].as_array().unwrap().len();
    assert!(ledgers >= 6, "the ledgers rolled over: {ledgers}");
    drop(b);
    // The control: a topic nobody holds, which the broker deletes.
    let (status, body) =
        pulsar.admin("PUT", &format!("/admin/v2/persistent/public/{}/control", cluster.namespace), Some(""));
    assert_eq!(status, 204, "{body}");

    // No host: only the guise-retention subscriptions hold the topics.
    std::thread::sleep(Duration::from_secs(8));
    let topics = pulsar.admin_json(&format!("/admin/v2/persistent/public/{}", cluster.namespace)).to_string();
    assert!(topics.contains("/roll-partition-0") && topics.contains("/rollp-partition-0"), "{topics}");
    assert!(!topics.contains("/control"), "the broker deletes inactive topics: {topics}");
    let meta = pulsar.admin_json(&format!("/admin/v2/persistent/{}", cluster.metadata)).to_string();
    assert!(meta.contains("/topics") && meta.contains("/producer-ids"), "{meta}");

    let b = cluster.host();
    rt.block_on(async {
        for topic in ["roll", "rollp"] {
            let pc = partition(&b, topic, 0).await;
            let all = fetch_all(&pc, 0).await;
            assert_eq!(all.len(), 30, "{topic}");
            assert!(all.iter().enumerate().all(|(i, (o, r))| *o == i as i64 && *r == record(i)), "{topic}");
            assert_eq!(
                pc.produce(vec![record(30)], Compression::NoCompression).await.unwrap(),
                vec![30],
                "{topic}"
            );
        }
    });
    let mut want = TopicPartitionList::new();
    want.add_partition("roll", 0);
    let got = group(&b).committed_offsets(want, Duration::from_secs(30)).unwrap();
    assert_eq!(got.find_partition("roll", 0).unwrap().offset(), Offset::Offset(12));
}

/// What a restart or a takeover reads no longer grows with history: on a broker that rolls a
/// ledger every 5 entries, compaction (of a compacted Kafka topic, and of `__consumer_offsets`,
/// compacted on this backend too) lets Pulsar delete the ledgers that hold only replaced
/// messages, and a new host still finds every key's latest value and the group's commit.
/// A standalone of this binary's own, shared by the tests that need its settings: ledgers roll
/// every 5 entries, and backlog quotas are checked every second.
fn tuned() -> &'static ApachePulsar {
    static TUNED: std::sync::OnceLock<ApachePulsar> = std::sync::OnceLock::new();
    TUNED.get_or_init(|| {
        ApachePulsar::start_owned(&[
            "managedLedgerMaxEntriesPerLedger=5",
            "managedLedgerMinLedgerRolloverTimeMinutes=0",
            "backlogQuotaCheckIntervalInSeconds=1",
        ])
    })
}

/// A namespace backlog quota counts what `guise-retention` holds (what Kafka retention keeps).
/// Once it is exceeded (policy `producer_exception`), appends fail with KAFKA_STORAGE_ERROR,
/// which producers retry; nothing acknowledged is lost, and appends go on once the quota is
/// raised.
#[test]
fn a_backlog_quota_refuses_appends_retriably_until_raised() {
    let pulsar = tuned();
    let cluster = Cluster::on(pulsar, "quota");
    let b = cluster.host();
    create(&b, "q", 1, &[]);
    let quota = format!("/admin/v2/namespaces/public/{}/backlogQuota", cluster.namespace);
    let (status, body) = pulsar.admin(
        "POST",
        &quota,
        Some(r#"{"limitSize": 20000, "limitTime": -1, "policy": "producer_exception"}"#),
    );
    assert_eq!(status, 204, "setting the backlog quota: {body}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let value = |i: usize| Record { value: Some(vec![b'x'; 2000]), ..record(i) };
    let (acknowledged, refusal) = rt.block_on(async {
        let pc = partition(&b, "q", 0).await;
        let deadline = Instant::now() + TIMEOUT;
        let mut acknowledged = 0;
        loop {
            match pc.produce(vec![value(acknowledged)], Compression::NoCompression).await {
                Ok(_) => acknowledged += 1,
                Err(e) => return (acknowledged, format!("{e:?}")),
            }
            assert!(Instant::now() < deadline, "{acknowledged} appends, and the quota never refused one");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert!(acknowledged >= 5, "refused after {acknowledged} appends: {refusal}");
    assert!(refusal.contains("KafkaStorageError"), "{refusal}");
    let (status, body) = pulsar.admin("DELETE", &quota, None);
    assert_eq!(status, 204, "removing the backlog quota: {body}");
    rt.block_on(async {
        let pc = partition(&b, "q", 0).await;
        let deadline = Instant::now() + TIMEOUT;
        while let Err(e) = pc.produce(vec![value(acknowledged)], Compression::NoCompression).await {
            assert!(Instant::now() < deadline, "appends still refused once the quota is gone: {e:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        // The refused append may still be stored: when Pulsar persists a message but its receipt
        // never arrives (the broker closes the producer over the quota), the append times out
        // and its outcome is unknown, as with Kafka's REQUEST_TIMED_OUT; a retry then writes it
        // twice unless the producer is idempotent. What must hold: every acknowledged record, in
        // order, then at most that one record, then the record acknowledged after the quota.
        let got = fetch_all(&pc, 0).await;
        let keys: Vec<_> = got.iter().map(|(_, r)| r.key.clone()).collect();
        let mut want: Vec<_> = (0..=acknowledged).map(|i| value(i).key).collect();
        if keys.len() == acknowledged + 2 {
            want.insert(acknowledged, value(acknowledged).key);
        }
        assert_eq!(keys, want, "every acknowledged record, and the one after");
    });
}

#[test]
fn compaction_lets_pulsar_delete_the_history_recovery_would_read() {
    let pulsar = tuned();
    let cluster = Cluster::on(pulsar, "history");
    let b = cluster.host_with(|c| c.log_cleaner_backoff_ms = 300);
    // Any dirty share cleans (Kafka's default 0.5 would leave the last few appends dirty).
    create(&b, "hist", 1, &[("cleanup.policy", "compact"), ("min.cleanable.dirty.ratio", "0.01")]);
    let group = |server: &TestServer| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", server.bootstrap())
            .set("group.id", "historians")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap()
    };
    let committer = group(&b);
    let rt = tokio::runtime::Runtime::new().unwrap();
    const ROUNDS: usize = 100;
    rt.block_on(async {
        let pc = partition(&b, "hist", 0).await;
        for i in 0..ROUNDS {
            let value = format!("v{i}");
            pc.produce(vec![keyed(&format!("k{}", i % 4), Some(&value))], Compression::NoCompression)
                .await
                .unwrap();
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset("hist", 0, Offset::Offset(i as i64)).unwrap();
            committer.commit(&tpl, CommitMode::Sync).unwrap();
        }
    });
    let path = |topic: &str| {
        format!("/admin/v2/persistent/public/{}/{topic}-partition-0/internalStats", cluster.namespace)
    };
    let entries = |topic: &str| pulsar.admin_json(&path(topic))["numberOfEntries"].as_i64().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    for topic in ["hist", "__consumer_offsets"] {
        // 100 appends (and 100 commits) went in; once compacted, a few ledgers are left.
        while entries(topic) > 40 {
            assert!(
                Instant::now() < deadline,
                "{topic}: Pulsar still holds {} entries: {}\nLOGTAIL {}",
                entries(topic),
                pulsar.admin_json(&path(topic)),
                pulsar.log_tail(400)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    // The last appends compacted too, before B goes (a pass may be running when it does).
    let want: Vec<_> = (ROUNDS - 4..ROUNDS)
        .map(|i| (i as i64, Some(format!("k{}", i % 4).into_bytes()), Some(format!("v{i}").into_bytes())))
        .collect();
    let deadline = Instant::now() + TIMEOUT;
    rt.block_on(async {
        let pc = partition(&b, "hist", 0).await;
        while fetch_compacted(&pc, 0).await != want {
            assert!(Instant::now() < deadline, "hist: the last appends were never compacted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    drop(committer);
    drop(b);

    let b = cluster.host();
    rt.block_on(async {
        let pc = partition(&b, "hist", 0).await;
        assert_eq!(fetch_compacted(&pc, 0).await, want, "the same partition after a restart");
        assert_eq!(pc.get_offset(OffsetAt::Earliest).await.unwrap(), 0);
        let next = pc.produce(vec![keyed("k0", Some("after"))], Compression::NoCompression).await.unwrap();
        assert_eq!(next, [ROUNDS as i64]);
    });
    let mut want = TopicPartitionList::new();
    want.add_partition("hist", 0);
    let got = group(&b).committed_offsets(want, Duration::from_secs(30)).unwrap();
    assert_eq!(got.find_partition("hist", 0).unwrap().offset(), Offset::Offset(ROUNDS as i64 - 1));
    metadata_logs_are_snapshotted(pulsar, &cluster, b);
}

/// The metadata logs grow with topic changes and module deploys; a start that replays more than
/// twice what a log holds writes a snapshot of it, after which Pulsar deletes the history, and
/// the next host starts from the snapshot with the same topics and transforms.
fn metadata_logs_are_snapshotted(pulsar: &ApachePulsar, cluster: &Cluster, b: TestServer) {
    use guise_host::admin::client::AdminClient;
    let (mask, module) = mask_card();
    let ops = AdminClient::new(b.admin_addr.to_string());
    for i in 0..12 {
        let name = format!("tmp{i}");
        create(&b, &name, 1, &[]);
        let gone = futures::executor::block_on(admin(&b).delete_topics(&[&name], &AdminOptions::new()));
        assert!(gone.unwrap()[0].is_ok());
        ops.deploy_transform("public", "mask-card", &mask, &module).unwrap();
        ops.delete_transform("public", "mask-card").unwrap();
    }
    ops.deploy_transform("public", "mask-card", &mask, &module).unwrap();
    create(&b, "cards", 1, &[]);
    drop(b);
    let stats = |log: &str| {
        pulsar.admin_json(&format!(
            "/admin/v2/persistent/{}/{log}/internalStats",
            cluster.metadata.replace("persistent://", "")
        ))
    };
    let entries = |log: &str| stats(log)["numberOfEntries"].as_i64().unwrap();
    let before = (entries("topics"), entries("modules"));
    assert!(before.0 >= 24 && before.1 >= 24, "the history: {before:?}");

    drop(cluster.host()); // replays the history and snapshots both logs
    let deadline = Instant::now() + TIMEOUT;
    while entries("topics") > 12 || entries("modules") > 12 {
        assert!(
            Instant::now() < deadline,
            "Pulsar still holds {} and {} entries (before: {before:?}): {}\n{}",
            entries("topics"),
            entries("modules"),
            stats("topics"),
            stats("modules")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let b = cluster.host();
    let md = admin(&b).inner().fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut names: Vec<&str> =
        md.topics().iter().map(|t| t.name()).filter(|n| !n.starts_with("__")).collect();
    names.sort();
    assert_eq!(names, ["cards", "hist"], "the topics after the snapshot");
    let transforms = AdminClient::new(b.admin_addr.to_string()).list_transforms(Some("public")).unwrap();
    assert_eq!(transforms.len(), 1, "{transforms:?}");
    let card = Record {
        key: None,
        value: Some(br#"{"n":7,"card_number":"4111 1111 1111 1234"}"#.to_vec()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got = rt.block_on(async {
        let pc = partition(&b, "cards", 0).await;
        pc.produce(vec![card], Compression::NoCompression).await.unwrap();
        fetch_all(&pc, 0).await
    });
    assert_eq!(got[0].1.value.as_deref(), Some(&br#"{"card_number":"**** **** **** 1234","n":7}"#[..]));
}

/// A broker with token authentication and authorization on: B authenticates with its token
/// (role `guise`, a tenant admin with produce and consume permission, as an operator would set
/// it up) on the binary protocol and the admin API; a host with a token the broker does not
/// accept fails to start, saying why, and never shows the token.
#[test]
fn token_authentication_on_a_secured_broker() {
    use base64::Engine;
    let secret: Vec<u8> =
        format!("{:0>32}", format!("{:?}{}", Instant::now(), std::process::id())).into_bytes();
    let admin_token = apache_pulsar::hs256_token(&secret, "admin");
    let key = base64::engine::general_purpose::STANDARD.encode(&secret);
    let extra = [
        "authenticationEnabled=true".to_string(),
        "authenticationProviders=org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
            .to_string(),
        format!("tokenSecretKey=data:;base64,{key}"),
        "authorizationEnabled=true".to_string(),
        "superUserRoles=admin".to_string(),
        "brokerClientAuthenticationPlugin=org.apache.pulsar.client.impl.auth.AuthenticationToken".to_string(),
        format!("brokerClientAuthenticationParameters=token:{admin_token}"),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let pulsar: &'static ApachePulsar =
        Box::leak(Box::new(ApachePulsar::start_owned_with_token(&extra, Some(admin_token))));
    let (status, body) = pulsar.admin(
        "POST",
        "/admin/v2/tenants/public",
        Some(r#"{"adminRoles":["guise"],"allowedClusters":["standalone"]}"#),
    );
    assert_eq!(status, 204, "{body}");
    let mut cluster = Cluster::on(pulsar, "secured");
    for ns in [format!("public/{}", cluster.namespace), cluster.metadata.clone()] {
        let (status, body) = pulsar.admin(
            "POST",
            &format!("/admin/v2/namespaces/{ns}/permissions/guise"),
            Some(r#"["produce","consume"]"#),
        );
        assert_eq!(status, 204, "{ns}: {body}");
    }

    // Without a token, or with one of another key, no start; the error says why.
    let forged = apache_pulsar::hs256_token(b"not-the-brokers-secret-key-at-all", "guise");
    for token in [None, Some(forged.clone())] {
        cluster.token = token.clone();
        let err = TestServer::try_start_with(|c| {
            c.storage = cluster.url.parse().unwrap();
            c.namespace = cluster.namespace.clone();
            c.pulsar_metadata_namespace = cluster.metadata.clone();
            c.pulsar_auth_token = token.clone();
        })
        .err()
        .expect("a host without a valid token does not start");
        assert!(err.contains("authentication") && err.contains("pulsar_auth_token"), "{err}");
        assert!(!err.contains(&forged), "the token is not in the error: {err}");
    }

    cluster.token = Some(apache_pulsar::hs256_token(&secret, "guise"));
    let b = cluster.host();
    create(&b, "sec", 2, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pc = partition(&b, "sec", 1).await;
        assert_eq!(pc.produce((0..3).map(record).collect(), Compression::Zstd).await.unwrap(), vec![0, 1, 2]);
    });
    let b = b.restart();
    rt.block_on(async {
        let pc = partition(&b, "sec", 1).await;
        let got: Vec<Record> = fetch_all(&pc, 0).await.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, (0..3).map(record).collect::<Vec<_>>());
    });
    assert_eq!(cluster.messages(&cluster.partition_topic("sec", 1)).len(), 2 * 2 + 1);
    let ns = format!("/admin/v2/persistent/public/{}", cluster.namespace);
    assert_eq!(pulsar.admin_json(&format!("{ns}/sec/partitions"))["partitions"], 2);
}

/// Pulsar applications connected straight to Apache Pulsar read what Kafka clients produced
/// through Guise. Entry format `pulsar`: one message per record on the partitioned topic, with
/// the key, the headers as properties and the timestamp as event time, beside Guise's own
/// `guise.*` properties; the writer's control messages (probe, fence marker: empty payload,
/// `guise.probe` or `guise.fence`) are recognisable and skipped as docs/pulsar.md says. Entry
/// format `kafka`: one message per Kafka batch, the payload the v2 record batch itself.
#[test]
fn pulsar_applications_read_what_kafka_clients_produced() {
    use base64::Engine;
    let cluster = Cluster::apache("direct");
    let b = cluster.host();
    create(&b, "direct", 2, &[("guise.entry.format", "pulsar")]);
    create(&b, "directk", 1, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sent: Vec<Vec<Record>> = vec![Vec::new(), Vec::new()];
    sent[0] = (0..5).map(record).collect();
    sent[0].push(Record { key: Some(vec![0xff, 0x00]), value: None, ..record(5) });
    sent[1] = (10..13).map(record).collect();
    rt.block_on(async {
        for (p, records) in sent.iter().enumerate() {
            let pc = partition(&b, "direct", p as i32).await;
            pc.produce(records[..2].to_vec(), Compression::Lz4).await.unwrap();
        }
        let pc = partition(&b, "directk", 0).await;
        pc.produce((0..3).map(record).collect(), Compression::NoCompression).await.unwrap();
    });
    let b = b.restart(); // a second writer: a second probe and fence marker
    rt.block_on(async {
        for (p, records) in sent.iter().enumerate() {
            let pc = partition(&b, "direct", p as i32).await;
            pc.produce(records[2..].to_vec(), Compression::NoCompression).await.unwrap();
        }
    });
    let topic = format!("persistent://public/{}/direct", cluster.namespace);
    let libpulsar = guise_tests::pulsar_py::scenario("consume_until_idle", &cluster.url, &topic, &[]);
    let java = apache_pulsar::java_client_read(&cluster.url, &topic);
    for got in [libpulsar, java] {
        check_direct_read(&got, &sent);
    }

    // Format kafka: the payload is the Kafka batch, its base offset the message's guise.offset.
    let topic = format!("persistent://public/{}/directk", cluster.namespace);
    let got = guise_tests::pulsar_py::scenario("consume_until_idle", &cluster.url, &topic, &[]);
    let b64 = base64::engine::general_purpose::STANDARD;
    let batches: Vec<Vec<u8>> = got
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["properties"].get("guise.offset").is_some())
        .map(|m| b64.decode(m["data"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(batches.len(), 1);
    let header = guise_host::record::batch::BatchHeader::parse(&batches[0]).unwrap();
    assert_eq!((header.base_offset, header.next_offset()), (0, 3));
    assert_eq!(batches[0][16], 2, "magic 2: a Kafka v2 record batch");
}

/// What a Pulsar client read from the partitioned topic (`got`), with the documented rule
/// applied, is exactly `sent`, partition by partition.
fn check_direct_read(got: &serde_json::Value, sent: &[Vec<Record>]) {
    use base64::Engine;
    let mut by_partition: Vec<Vec<&serde_json::Value>> = vec![Vec::new(), Vec::new()];
    let mut control = 0;
    for m in got.as_array().unwrap() {
        let props = m["properties"].as_object().unwrap();
        if props.contains_key("guise.fence") || props.contains_key("guise.probe") {
            assert_eq!(m["data"], "", "a control message has no payload: {m}");
            control += 1;
            continue;
        }
        let t = m["topic"].as_str().unwrap();
        let p: usize = t.rsplit("-partition-").next().unwrap().parse().unwrap();
        by_partition[p].push(m);
    }
    assert_eq!(control, 2 * 2 * 2, "a probe and a fence marker per partition and writer");
    let b64 = base64::engine::general_purpose::STANDARD;
    for (p, records) in sent.iter().enumerate() {
        assert_eq!(by_partition[p].len(), records.len(), "partition {p}: {:?}", by_partition[p]);
        for (i, (m, r)) in by_partition[p].iter().zip(records).enumerate() {
            let key = r.key.as_ref().map(|k| String::from_utf8(k.clone()).unwrap_or_else(|_| b64.encode(k)));
            assert_eq!(m["key"].as_str().map(str::to_string), key, "{m}");
            assert_eq!(
                b64.decode(m["data"].as_str().unwrap()).unwrap(),
                r.value.clone().unwrap_or_default(),
                "{m}"
            );
            assert_eq!(m["null_value"], r.value.is_none(), "{m}");
            assert_eq!(m["event_time"].as_i64().unwrap(), r.timestamp.timestamp_millis(), "{m}");
            let props = m["properties"].as_object().unwrap();
            let headers: BTreeMap<String, Vec<u8>> = props
                .iter()
                .filter(|(k, _)| !k.starts_with("guise."))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
                .collect();
            assert_eq!(headers, r.headers, "{m}");
            assert_eq!(props["guise.offset"], i.to_string(), "{m}");
        }
    }
}

/// `pulsar+ssl://` to a broker whose certificate a test CA signed (made with `openssl`):
/// trusted through `pulsar_tls_trust_certs_file`, refused without it.
#[test]
fn tls_to_a_broker_with_a_test_ca() {
    let certs = tempfile::tempdir().unwrap();
    let ca = guise_tests::certs::TestCa::new(certs.path(), "guise");
    let server = ca.server("server");

    let tls_port = guise_tests::apache_kafka::free_port();
    let extra = [
        format!("brokerServicePortTls={tls_port}"),
        format!("tlsCertificateFilePath={}", server.cert.display()),
        format!("tlsKeyFilePath={}", server.key.display()),
        format!("tlsTrustCertsFilePath={}", ca.cert().display()),
    ];
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let pulsar: &'static ApachePulsar = Box::leak(Box::new(ApachePulsar::start_owned(&extra)));
    let mut cluster = Cluster::on(pulsar, "tls");
    cluster.url = format!("pulsar+ssl://127.0.0.1:{tls_port}");

    // The system's roots do not know the test CA: no start, and the error says where it failed.
    let err = TestServer::try_start_with(|c| {
        c.storage = cluster.url.parse().unwrap();
        c.namespace = cluster.namespace.clone();
        c.pulsar_metadata_namespace = cluster.metadata.clone();
    })
    .err()
    .expect("an untrusted broker certificate stops the host");
    eprintln!("without the CA: {err}");
    assert!(err.contains(&cluster.url) && err.contains("pulsar_tls_trust_certs_file"), "{err}");

    let trust = ca.cert();
    let host = || {
        TestServer::start_with(|c| {
            c.storage = cluster.url.parse().unwrap();
            c.namespace = cluster.namespace.clone();
            c.pulsar_metadata_namespace = cluster.metadata.clone();
            c.pulsar_admin_url = Some(pulsar.web_url());
            c.pulsar_tls_trust_certs_file = Some(trust.clone());
        })
    };
    let b = host();
    create(&b, "secret", 1, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let pc = partition(&b, "secret", 0).await;
        assert_eq!(
            pc.produce((0..4).map(record).collect(), Compression::Gzip).await.unwrap(),
            vec![0, 1, 2, 3]
        );
    });
    drop(b);
    let b = host();
    rt.block_on(async {
        let pc = partition(&b, "secret", 0).await;
        let got: Vec<Record> = fetch_all(&pc, 0).await.into_iter().map(|(_, r)| r).collect();
        assert_eq!(got, (0..4).map(record).collect::<Vec<_>>());
    });
    // What went over TLS is in the broker (read back over its plaintext port).
    assert_eq!(cluster.messages(&cluster.partition_topic("secret", 0)).len(), 2 * 2 + 1);
}

/// Pulsar applications → Kafka clients: a topic with `guise.pulsar.ingress=true` has the
/// partitioned Pulsar topic `TOPIC:ingress`; what the official clients produce there (libpulsar
/// with every codec, the Java client 4.2, both batched and keyed) reaches Kafka consumers of the
/// topic through Guise in each ingress partition's order, with key, properties as headers and
/// event time as timestamp, exactly once across a restart of the host, and through the
/// transform bound to the topic. In the cluster, the appended messages carry the ingress mark
/// and the ingress partitions hold the `guise-ingress` subscription.
#[test]
fn pulsar_producers_reach_kafka_consumers_through_the_ingress_topic() {
    use guise_host::admin::client::AdminClient;
    let cluster = Cluster::apache("ingress");
    let ns = cluster.namespace.clone();
    let b = cluster.host();
    create(&b, "orders", 2, &[("guise.pulsar.ingress", "true")]);
    create(&b, "records", 1, &[("guise.pulsar.ingress", "true"), ("guise.entry.format", "pulsar")]);
    let orders_in = format!("persistent://public/{ns}/orders:ingress");
    // (Not Snappy: the pulsar crate 6.9 cannot read Pulsar's raw Snappy; see docs/pulsar.md.)
    let codecs = "none,lz4,zlib,zstd";
    guise_tests::pulsar_py::scenario("produce_codecs", &cluster.url, &orders_in, &["20", codecs]);
    apache_pulsar::java_client_write(&cluster.url, &orders_in, 50, "java");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let got = rt.block_on(ingressed(&b, "orders", 2, 130));
    check_ingressed(&got, &[("none", 20), ("lz4", 20), ("zlib", 20), ("zstd", 20), ("java", 50)]);

    // The next host continues where the first stopped: nothing twice, nothing lost.
    let b = b.restart();
    apache_pulsar::java_client_write(&cluster.url, &orders_in, 30, "again");
    let records_in = format!("persistent://public/{ns}/records:ingress");
    apache_pulsar::java_client_write(&cluster.url, &records_in, 10, "rec");
    let got = rt.block_on(ingressed(&b, "orders", 2, 160));
    check_ingressed(
        &got,
        &[("none", 20), ("lz4", 20), ("zlib", 20), ("zstd", 20), ("java", 50), ("again", 30)],
    );
    let got = rt.block_on(ingressed(&b, "records", 1, 10));
    check_ingressed(&got, &[("rec", 10)]);

    // Through the transform bound to the topic, as a Kafka client's produce.
    let (mask, module) = mask_card();
    AdminClient::new(b.admin_addr.to_string())
        .deploy_transform("public", "mask-card", &mask, &module)
        .unwrap();
    create(&b, "cards", 1, &[("guise.pulsar.ingress", "true")]);
    let cards_in = format!("persistent://public/{ns}/cards:ingress");
    let card = r#"{"n":1,"card_number":"4111 1111 1111 1234"}"#;
    guise_tests::pulsar_py::scenario("produce_values", &cluster.url, &cards_in, &[card]);
    let got = rt.block_on(ingressed(&b, "cards", 1, 1));
    assert_eq!(got[0][0].1.value.as_deref(), Some(&br#"{"card_number":"**** **** **** 1234","n":1}"#[..]));

    // In the cluster.
    let marked = (0..2)
        .flat_map(|p| cluster.messages(&cluster.partition_topic("orders", p)))
        .filter(|m| m.properties.contains_key("guise.ingress"))
        .count();
    assert!(marked >= 2, "appends from the ingress carry its mark ({marked})");
    for p in 0..2 {
        let source = format!("persistent://public/{ns}/orders:ingress-partition-{p}");
        assert!(cluster.has_subscription(&source, "guise-ingress"), "{source}");
    }
}

/// The records of `topic`'s `partitions`, partition by partition, once there are `n` of them in
/// all (ingress is asynchronous), and no more come within a second.
async fn ingressed(b: &TestServer, topic: &str, partitions: i32, n: usize) -> Vec<Vec<(i64, Record)>> {
    let deadline = Instant::now() + TIMEOUT;
    let mut pcs = Vec::new();
    for p in 0..partitions {
        pcs.push(partition(b, topic, p).await);
    }
    let mut settled = 0;
    loop {
        let mut all = Vec::new();
        for pc in &pcs {
            all.push(fetch_all(pc, 0).await);
        }
        let total: usize = all.iter().map(Vec::len).sum();
        assert!(total <= n, "{topic}: {total} records, more than the {n} produced");
        settled = if total == n { settled + 1 } else { 0 };
        if settled == 3 {
            return all;
        }
        assert!(Instant::now() < deadline, "{topic}: {total} of {n} records arrived");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `got` holds, for each `(prefix, count)`, the records `PREFIX-0..count` that the Pulsar
/// scenarios sent (key `PREFIX-key-i`, header `i`, event time 1600000000000 + i), each once, and
/// in sending order within each partition.
fn check_ingressed(got: &[Vec<(i64, Record)>], sent: &[(&str, usize)]) {
    let mut seen: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for records in got {
        let mut last: BTreeMap<String, usize> = BTreeMap::new();
        for (offset, r) in records {
            let value = String::from_utf8(r.value.clone().unwrap()).unwrap();
            let (prefix, i) = value.rsplit_once('-').unwrap();
            let i: usize = i.parse().unwrap();
            assert_eq!(r.key.as_deref(), Some(format!("{prefix}-key-{i}").as_bytes()), "at {offset}");
            assert_eq!(r.headers.get("i").map(Vec::as_slice), Some(i.to_string().as_bytes()), "at {offset}");
            assert_eq!(r.timestamp.timestamp_millis(), 1_600_000_000_000 + i as i64, "at {offset}");
            if let Some(before) = last.insert(prefix.to_string(), i) {
                assert!(before < i, "{prefix}-{i} after {prefix}-{before} at {offset}");
            }
            *seen.entry((prefix.to_string(), i)).or_default() += 1;
        }
    }
    let expected: BTreeMap<(String, usize), usize> =
        sent.iter().flat_map(|(p, n)| (0..*n).map(move |i| ((p.to_string(), i), 1))).collect();
    assert_eq!(seen, expected);
}

/// Several hosts, step 1 (issue 17): each host takes its node's lease and heartbeats, and every
/// host sees the others live; one that stops leaves at once, one killed with SIGKILL is dead to
/// the others after the session timeout, and a second process with a node id already held takes
/// the lease: the first one's binary exits with an error naming the clash.
#[test]
fn hosts_see_each_other_and_a_dead_or_duplicate_one_goes() {
    let cluster = Cluster::apache("members");
    let (beat, timeout) = (200u64, 2000u64);
    let host = |id: i32| {
        cluster.host_with(|c| {
            c.cluster = true;
            c.node_id = id;
            c.cluster_heartbeat_ms = beat;
            c.cluster_session_timeout_ms = timeout;
        })
    };
    let live = |h: &TestServer| -> Vec<i32> {
        h.server().members.as_ref().unwrap().live().iter().map(|m| m.node_id).collect()
    };
    let until = |what: &str, hosts: &[&TestServer], want: &[i32]| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while hosts.iter().any(|h| live(h) != want) {
            let views: Vec<Vec<i32>> = hosts.iter().map(|h| live(h)).collect();
            assert!(Instant::now() < deadline, "{what}: the hosts see {views:?}, not {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (a, b, c) = (host(1), host(2), host(3));
    until("three hosts", &[&a, &b, &c], &[1, 2, 3]);
    // A clean stop leaves (the others do not wait for the timeout).
    drop(c.stop());
    until("one stopped", &[&a, &b], &[1, 2]);

    // A separate process, killed: gone after the session timeout.
    let env_url = cluster.url.clone();
    let env = [
        ("GUISE_STORAGE", env_url.as_str()),
        ("GUISE_NAMESPACE", cluster.namespace.as_str()),
        ("GUISE_PULSAR_METADATA_NAMESPACE", cluster.metadata.as_str()),
        ("GUISE_CLUSTER", "true"),
        ("GUISE_NODE_ID", "4"),
        ("GUISE_CLUSTER_HEARTBEAT_MS", "200"),
        ("GUISE_CLUSTER_SESSION_TIMEOUT_MS", "2000"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let four = guise_tests::host_process::Host::start(&dir.path().join("four"), 0, 0, &env);
    until("a fourth process", &[&a, &b], &[1, 2, 4]);
    four.kill9();
    until("the fourth killed", &[&a, &b], &[1, 2]);

    // Node id 4 again; then a host started with it too: the process's lease is taken and it exits.
    let mut four = guise_tests::host_process::Host::start(&dir.path().join("four-again"), 0, 0, &env);
    until("the fourth back", &[&a, &b], &[1, 2, 4]);
    let clash = host(4);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = four.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the process whose node id was taken still runs");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "it exits with an error");
    let log = std::fs::read_to_string(&four.log).unwrap();
    assert!(log.contains("node id 4 was taken by another host"), "{log}");
    until("the new node 4", &[&a, &b, &clash], &[1, 2, 4]);
    assert!(a.server().members.as_ref().unwrap().live().iter().all(|m| !m.kafka_addr.is_empty()));
}
