//! The `pulsar://` storage backend end to end, with real Kafka clients. Host A serves the
//! Pulsar protocol (its Pulsar endpoint, on its embedded log) and stands in for a Pulsar
//! cluster; host B stores everything in A through the `pulsar` crate (storage =
//! `pulsar://<A>`, namespace `hostb`, so its partition topics are A's topics in
//! `public/hostb`). Every test also looks at A, so none can pass with B keeping data itself.

use guise_host::record::records;
use guise_host::storage::TopicName;
use guise_tests::TestServer;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Host A: the Pulsar endpoint on an ephemeral port of 127.0.0.1.
fn host_a() -> (TestServer, String) {
    let a = TestServer::start_with_pulsar(|_| {});
    let url = a.pulsar_url();
    (a, url)
}

/// Host B: everything in A.
fn host_b(url: &str) -> TestServer {
    TestServer::start_with(|c| {
        c.storage = url.parse().unwrap();
        c.namespace = "hostb".into();
        c.group_initial_rebalance_delay_ms = 0;
    })
}

fn in_a(topic: &str) -> TopicName {
    TopicName::new("public", "hostb", topic)
}

fn record(i: usize) -> Record {
    Record {
        key: Some(format!("key-{i}").into_bytes()),
        value: Some(format!("value-{i}-").repeat(1 + i % 5).into_bytes()),
        headers: BTreeMap::from([("n".to_string(), i.to_string().into_bytes())]),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
    }
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

#[test]
fn produce_and_fetch_in_both_entry_formats() {
    let (a, url) = host_a();
    let b = host_b(&url);
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

    // In A (the "Pulsar cluster"): format kafka is one message per batch plus the writer's probe
    // and fence marker, format pulsar one message per record, whose key is the Kafka key (Pulsar consumers read
    // them natively).
    assert_eq!(guise_host::storage::wait(a.server().log.offsets(&in_a("kf"), 0)).unwrap().1, 2 + 4);
    assert_eq!(guise_host::storage::wait(a.server().log.offsets(&in_a("pf"), 0)).unwrap().1, 2 + 40);
    let stored = a.stored(&in_a("pf"), 0);
    let first = &stored[2 + 7].1;
    assert_eq!(first.key.as_deref(), Some(&b"key-7"[..]));
    assert_eq!(first.value.as_deref(), Some(&record(7).value.unwrap()[..]));
    assert!(first.headers.iter().any(|h| h.key == "n" && h.value.as_deref() == Some(&b"7"[..])));
    assert!(first.headers.iter().any(|h| h.key == "guise.offset" && h.value.as_deref() == Some(&b"7"[..])));
    // DescribeLogDirs on B: its log dir is the Pulsar URL, its partition sizes what it stored.
    let report = guise_host::storage::wait(b.server().log.report(&in_a("kf"), 0)).unwrap();
    assert!(report.size_bytes > 0 && report.producers.is_empty(), "{report:?}");
    assert_eq!(b.server().log.log_dir().path, url);
    assert_no_local_topics(&b);
}

#[test]
fn committed_offsets_and_log_ends_survive_a_restart_of_b() {
    let (a, url) = host_a();
    let b = host_b(&url);
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
    assert_eq!(
        guise_host::storage::wait(a.server().log.offsets(&in_a("resume"), 0)).unwrap().1,
        2 * 2 + 1 + 4
    );
    assert_no_local_topics(&b);
}

#[test]
fn a_second_host_takes_over_and_the_first_is_fenced() {
    let (a, url) = host_a();
    let b1 = host_b(&url);
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

    let b2 = host_b(&url);
    for topic in ["tk", "tk2"] {
        rt.block_on(async {
            let pc = partition(&b2, topic, 0).await;
            let offsets = pc.produce((4..6).map(record).collect(), Compression::Gzip).await.unwrap();
            assert_eq!(offsets, vec![4, 5], "{topic}: B2 continues where B1 stopped");
        });

        // B1 no longer owns the partition: its appends fail, now and later.
        let batch = raw_batch(b"zombie");
        let name = TopicName::new("public", "hostb", topic);
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
    assert!(guise_host::storage::wait(a.server().log.offsets(&in_a("tk"), 0)).unwrap().1 >= 8);
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

#[test]
fn a_failed_send_is_retriable_and_the_writer_takes_the_partition_back() {
    let (a, url) = host_a();
    // In A, the partition's topic refuses messages above 4 KiB: a bigger send from B fails, and
    // not because another host took the partition.
    let small: Vec<(String, String)> = vec![("max.message.bytes".into(), "4096".into())];
    guise_host::storage::wait(a.server().log.create_topic(&in_a("flaky"), 1, &small, false)).unwrap();
    let b = host_b(&url);
    create(&b, "flaky", 1, &[]);
    let name = TopicName::new("public", "hostb", "flaky");
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

/// Fetches that go to Pulsar (not the tail cache: B restarted) of a topic of entry format
/// `pulsar`, where a 1 MiB fetch is thousands of messages: each answers within the guest call's
/// deadline, and all records come back in order.
#[test]
fn a_pulsar_format_topic_is_fetched_from_pulsar_after_a_restart() {
    let (_a, url) = host_a();
    let b = host_b(&url);
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

/// The module registries are in Pulsar too: a replacement host with a new, empty data directory
/// runs the translator version and the tenant transforms its predecessor deployed (and not the
/// ones it deleted), without any of them being uploaded again.
#[test]
fn a_replacement_host_runs_the_deployed_translator_and_transforms() {
    use guise_host::admin::client::AdminClient;
    use guise_host::transform::BindingSpec;
    let (a, url) = host_a();
    let card = |n: usize| Record {
        key: None,
        value: Some(format!(r#"{{"n":{n},"card_number":"4111 1111 1111 1234"}}"#).into_bytes()),
        headers: BTreeMap::new(),
        timestamp: chrono::DateTime::from_timestamp_millis(1_700_000_000_000).unwrap(),
    };
    let masked = |n: usize| format!(r#"{{"card_number":"**** **** **** 1234","n":{n}}}"#);
    let mask = BindingSpec {
        topics: vec!["cards".into()],
        output_topics: vec![],
        policy: "reject".parse().unwrap(),
        config: vec![],
    };
    let module =
        std::fs::read(format!("{}/guise_transform_mask_card.wasm", guise_host::wasm::GUEST_DIR)).unwrap();
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

    let b1 = host_b(&url);
    let admin = AdminClient::new(b1.admin_addr.to_string());
    let v2 = admin.deploy("kafka", &faulty).unwrap();
    assert_eq!(v2.version, 2);
    admin.deploy_transform("public", "mask-card", &mask, &module).unwrap();
    create(&b1, "cards", 1, &[]);
    assert_eq!(produce(&b1, 0), 0);
    drop(b1); // and its data directory with it

    let b2 = host_b(&url);
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
    let bx = host_b(&url);
    let rolled = AdminClient::new(bx.admin_addr.to_string()).rollback("kafka", None).unwrap();
    assert_eq!(rolled.version, 1);
    drop(bx);
    let err = admin.rollback("kafka", None).unwrap_err().to_string();
    assert!(err.contains("another host") && err.contains("HTTP 409"), "{err}");
    admin.delete_transform("public", "mask-card").unwrap();
    drop(b2);

    let b3 = host_b(&url);
    let admin = AdminClient::new(b3.admin_addr.to_string());
    assert!(admin.list_transforms(Some("public")).unwrap().is_empty(), "the deletion holds");
    assert_eq!(admin.show("kafka").unwrap().active, Some(1), "and so does the rollback");
    assert_eq!(produce(&b3, 2), 2);
    assert_eq!(values(&b3)[2].as_bytes(), card(2).value.unwrap(), "no transform runs on B3");
    // In A: the registries' log, components included.
    let modules = TopicName::new("public", "__guise", "modules");
    assert!(
        guise_host::storage::wait(a.server().log.offsets(&modules, 0)).unwrap().1 >= 4,
        "the registries are kept in A"
    );
    // ... and held there by a durable subscription, as each metadata log is (Pulsar would
    // otherwise delete them: no retention policy is required, and inactive topics go).
    drop(b3);
    let cursors = a.stored(&TopicName::new("public", "__guise", "__pulsar_cursors"), 0);
    let keys: Vec<String> = cursors
        .into_iter()
        .filter_map(|(_, r)| r.key)
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    for log in ["topics", "producer-ids", "modules"] {
        assert!(
            keys.iter().any(|k| k.starts_with(&format!("{log}@")) && k.ends_with("/guise-retention")),
            "{log}: {keys:?}"
        );
    }
}
