//! The Pulsar-protocol endpoint on the embedded log, with real Pulsar clients: the official C++
//! client (libpulsar, in PyPI's pulsar-client wheel, through tests/python/pulsar_scenarios.py)
//! and the `pulsar` crate; and Kafka clients (rskafka) on the same topics.

use base64::Engine as _;
use futures::StreamExt;
use guise_host::pulsar::frame::{FrameDecoder, encode_command, encode_payload};
use guise_host::pulsar::proto::base_command::Type;
use guise_host::pulsar::proto::{
    BaseCommand, CommandConnect, CommandGetTopicsOfNamespace, CommandLookupTopic,
    CommandPartitionedTopicMetadata, CommandProducer, CommandSend, MessageMetadata, ServerError,
};
use guise_tests::TestServer;
use guise_tests::pulsar_py::scenario;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::{Record, RecordAndOffset};
use std::collections::BTreeMap;
use std::io::{Read, Write};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

async fn partition(server: &TestServer, topic: &str, partitions: i32) -> PartitionClient {
    let client = ClientBuilder::new(vec![server.bootstrap()]).build().await.unwrap();
    client.controller_client().unwrap().create_topic(topic, partitions, 1, 5000).await.unwrap();
    client.partition_client(topic, 0, UnknownTopicHandling::Retry).await.unwrap()
}

async fn fetch_all(pc: &PartitionClient, n: usize) -> Vec<RecordAndOffset> {
    let mut got = Vec::new();
    let mut offset = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while got.len() < n {
        assert!(std::time::Instant::now() < deadline, "only {} of {n} records arrived", got.len());
        let (records, _) = pc.fetch_records(offset, 1..10_000_000, 1_000).await.unwrap();
        for r in records {
            offset = r.offset + 1;
            got.push(r);
        }
    }
    got
}

fn record(key: Option<&[u8]>, value: Option<&[u8]>, headers: &[(&str, &str)], ts: i64) -> Record {
    Record {
        key: key.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect(),
        timestamp: chrono::DateTime::from_timestamp_millis(ts).unwrap(),
    }
}

#[test]
fn kafka_records_reach_the_official_pulsar_client() {
    let server = TestServer::start_with_pulsar(|_| {});
    let rt = rt();
    let sent = vec![
        record(Some(b"text-key"), Some(b"first"), &[("h1", "x"), ("h2", "y")], 1_700_000_000_001),
        record(Some(&[0xff, 0x00, 0x7f]), Some(b"binary key"), &[], 1_700_000_000_002),
        record(None, Some(b"no key"), &[("only", "one")], 1_700_000_000_003),
        record(Some(b"deleted"), None, &[], 1_700_000_000_004),
    ];
    rt.block_on(async {
        let pc = partition(&server, "k2p", 1).await;
        // One record alone (an unbatched Pulsar message), then three in an LZ4 batch (a Pulsar batch).
        pc.produce(sent[..1].to_vec(), Compression::NoCompression).await.unwrap();
        pc.produce(sent[1..].to_vec(), Compression::Lz4).await.unwrap();
    });
    let got = scenario("consume", &server.pulsar_url(), "persistent://public/default/k2p", &["4"]);
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), 4);
    for (m, r) in got.iter().zip(&sent) {
        let key = r.key.as_ref().map(|k| match std::str::from_utf8(k) {
            Ok(s) => s.to_string(),
            Err(_) => B64.encode(k), // binary keys travel base64-encoded, flagged as such
        });
        assert_eq!(m["key"].as_str().map(str::to_string), key, "{m}");
        assert_eq!(
            B64.decode(m["data"].as_str().unwrap()).unwrap(),
            r.value.clone().unwrap_or_default(),
            "{m}"
        );
        let props: BTreeMap<String, Vec<u8>> = m["properties"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().as_bytes().to_vec()))
            .collect();
        assert_eq!(props, r.headers, "{m}");
        assert_eq!(m["event_time"].as_i64().unwrap(), r.timestamp.timestamp_millis(), "{m}");
    }
    // The single record came as an unbatched message, the others as one batch of three.
    assert!(got[0]["id"].as_str().unwrap().ends_with(",-1,-1)"), "{}", got[0]);
    assert!(
        got[3]["id"].as_str().unwrap().contains(",1,2)") || got[3]["id"].as_str().unwrap().contains(",2)"),
        "{}",
        got[3]
    );
}

#[test]
fn official_pulsar_producers_reach_kafka_consumers_with_every_codec() {
    let server = TestServer::start_with_pulsar(|_| {});
    let rt = rt();
    let pc = rt.block_on(partition(&server, "p2k", 1));
    let out = scenario("produce_codecs", &server.pulsar_url(), "persistent://public/default/p2k", &["50"]);
    assert_eq!(out["sent"], 250);
    let got = rt.block_on(fetch_all(&pc, 250));
    assert_eq!(got.len(), 250);
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.offset, i as i64, "contiguous offsets");
        let codec = String::from_utf8(r.record.headers["codec"].clone()).unwrap();
        let n = next.entry(codec.clone()).or_default();
        assert_eq!(
            r.record.value.as_deref(),
            Some(format!("{codec}-{n}").as_bytes()),
            "in order per producer"
        );
        assert_eq!(r.record.key.as_deref(), Some(format!("{codec}-key-{n}").as_bytes()));
        assert_eq!(r.record.headers["i"], n.to_string().into_bytes());
        assert_eq!(r.record.timestamp.timestamp_millis(), 1_600_000_000_000 + *n as i64, "event time");
        *n += 1;
    }
    assert_eq!(next.len(), 5, "all five codecs: {next:?}");
    assert!(next.values().all(|n| *n == 50));
}

#[test]
fn a_durable_subscription_resumes_after_a_restart() {
    let server = TestServer::start_with_pulsar(|_| {});
    let rt = rt();
    rt.block_on(async {
        let pc = partition(&server, "cursor", 1).await;
        for i in 0..10 {
            pc.produce(
                vec![record(None, Some(format!("m{i}").as_bytes()), &[], 1_700_000_000_000 + i)],
                Compression::NoCompression,
            )
            .await
            .unwrap();
        }
    });
    let topic = "persistent://public/default/cursor";
    let first = scenario("cursor", &server.pulsar_url(), topic, &["1"]);
    assert_eq!(first, serde_json::json!(["m0", "m1", "m2", "m3", "m4"]));
    let server = server.restart();
    let next = scenario("cursor", &server.pulsar_url(), topic, &["2"]);
    assert_eq!(next, serde_json::json!(["m5"]), "the cursor was kept across the restart");
}

#[test]
fn readers_seeks_subscription_types_and_access_modes() {
    let server = TestServer::start_with_pulsar(|_| {});
    let rt = rt();
    rt.block_on(async {
        let pc = partition(&server, "subs", 1).await;
        // Batches of 1, 2, 3 and 4 records: a mix of unbatched and batched entries.
        let mut i = 0;
        for size in [1, 2, 3, 4, 1, 2, 3, 4] {
            let batch: Vec<Record> = (0..size)
                .map(|_| {
                    i += 1;
                    record(None, Some(format!("r{i}").as_bytes()), &[], 1_700_000_000_000 + i * 1000)
                })
                .collect();
            pc.produce(batch, Compression::NoCompression).await.unwrap();
        }
    });
    let url = server.pulsar_url();
    let topic = "persistent://public/default/subs";
    let read = scenario("reader_seek", &url, topic, &[]);
    assert_eq!(read["messages"], 20);
    let subs = scenario("subscriptions", &url, topic, &["20"]);
    assert_eq!(subs["failover"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).sum::<i64>(), 20);
    assert!(subs["refused"].as_str().unwrap().contains("ConsumerBusy"), "{subs}");
    let modes = scenario("access_modes", &url, "persistent://public/default/modes", &[]);
    assert_eq!(modes["fenced"], true);
}

/// A producer with a schema, and a pattern consumer (GET_TOPICS_OF_NAMESPACE), with libpulsar.
#[test]
fn a_producer_with_a_schema_and_a_pattern_consumer() {
    let server = TestServer::start_with_pulsar(|_| {});
    let out =
        scenario("schema_and_pattern", &server.pulsar_url(), "persistent://public/default/pattern-a", &[]);
    assert_eq!(out["received"], "with a schema");
}

#[test]
fn the_pulsar_crate_produces_consumes_and_reads() {
    use pulsar::consumer::InitialPosition;
    use pulsar::{ConsumerOptions, ProducerOptions, Pulsar, SubType, TokioExecutor};

    let server = TestServer::start_with_pulsar(|_| {});
    let rt = rt();
    let url = server.pulsar_url();
    rt.block_on(async {
        let pc = partition(&server, "rs-pulsar", 1).await;
        let client: Pulsar<TokioExecutor> = Pulsar::builder(url, TokioExecutor).build().await.unwrap();
        let topic = "persistent://public/default/rs-pulsar";
        // Batched (pulsar-rs compresses nothing here) and unbatched producers.
        for (name, batch) in [("batched", Some(10)), ("single", None)] {
            let mut producer = client
                .producer()
                .with_topic(topic)
                .with_name(name)
                .with_options(ProducerOptions { batch_size: batch, ..Default::default() })
                .build()
                .await
                .unwrap();
            let mut receipts = Vec::new();
            for i in 0..20 {
                let message = pulsar::producer::Message {
                    payload: format!("{name}-{i}").into_bytes(),
                    properties: [("i".to_string(), i.to_string())].into(),
                    partition_key: Some(format!("k{i}")),
                    event_time: Some(1_650_000_000_000 + i),
                    ..Default::default()
                };
                receipts.push(producer.send_non_blocking(message).await.unwrap());
            }
            for r in receipts {
                r.await.unwrap();
            }
            producer.close().await.unwrap();
        }

        // Kafka sees 40 records in order per producer, with keys, headers and timestamps.
        let got = fetch_all(&pc, 40).await;
        for (i, r) in got.iter().enumerate() {
            let (name, n) = if i < 20 { ("batched", i) } else { ("single", i - 20) };
            assert_eq!(r.record.value.as_deref(), Some(format!("{name}-{n}").as_bytes()));
            assert_eq!(r.record.key.as_deref(), Some(format!("k{n}").as_bytes()));
            assert_eq!(r.record.headers["i"], n.to_string().into_bytes());
            assert_eq!(r.record.timestamp.timestamp_millis(), 1_650_000_000_000 + n as i64);
        }

        // A consumer reads them back and acknowledges.
        let mut consumer: pulsar::Consumer<Vec<u8>, _> = client
            .consumer()
            .with_topic(topic)
            .with_subscription("rs-sub")
            .with_subscription_type(SubType::Exclusive)
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            })
            .build()
            .await
            .unwrap();
        for i in 0..40 {
            let m = tokio::time::timeout(std::time::Duration::from_secs(20), consumer.next())
                .await
                .expect("a message in time")
                .expect("stream open")
                .unwrap();
            let (name, n) = if i < 20 { ("batched", i) } else { ("single", i - 20) };
            assert_eq!(m.deserialize(), format!("{name}-{n}").into_bytes());
            assert_eq!(m.key(), Some(format!("k{n}")));
            consumer.ack(&m).await.unwrap();
        }
        let last = consumer.get_last_message_id().await.unwrap();
        assert_eq!(last[0].entry_id, 39, "the last entry is offset 39 (an unbatched message)");
        consumer.close().await.unwrap();
    });
}

fn read_command(s: &mut std::net::TcpStream) -> Option<BaseCommand> {
    let mut buf = bytes::BytesMut::new();
    let decoder = FrameDecoder::new(1 << 20);
    loop {
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            return Some(f.command);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn connect(s: &mut std::net::TcpStream) {
    let cmd = BaseCommand {
        r#type: Type::Connect as i32,
        connect: Some(CommandConnect {
            client_version: "raw".into(),
            protocol_version: Some(21),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&cmd)).unwrap();
    let connected = read_command(s).unwrap();
    assert_eq!(connected.r#type, Type::Connected as i32);
    assert_eq!(connected.connected.unwrap().protocol_version, Some(19), "at most v19");
}

#[test]
fn lookup_answers_the_advertised_address_and_metadata_the_kafka_partition_count() {
    let server =
        TestServer::start_with_pulsar(|c| c.advertised_pulsar_addr = Some("pulsar.example:6651".into()));
    rt().block_on(partition(&server, "three", 3));
    let mut s = std::net::TcpStream::connect(server.pulsar_addr.unwrap()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    connect(&mut s);
    let metadata = BaseCommand {
        r#type: Type::PartitionedMetadata as i32,
        partition_metadata: Some(CommandPartitionedTopicMetadata {
            topic: "persistent://public/default/three".into(),
            request_id: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&metadata)).unwrap();
    let r = read_command(&mut s).unwrap().partition_metadata_response.unwrap();
    assert_eq!(r.partitions, Some(3));
    let lookup = BaseCommand {
        r#type: Type::Lookup as i32,
        lookup_topic: Some(CommandLookupTopic {
            topic: "persistent://public/default/three-partition-2".into(),
            request_id: 2,
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&lookup)).unwrap();
    let r = read_command(&mut s).unwrap().lookup_topic_response.unwrap();
    assert_eq!(r.broker_service_url.as_deref(), Some("pulsar://pulsar.example:6651"));
}

/// Raw frames: a SEND with a bad CRC gets SEND_ERROR ChecksumError and the connection goes on;
/// a command before CONNECT and an oversized frame close that connection only.
#[test]
fn bad_frames_get_errors_and_close_only_their_connection() {
    let server = TestServer::start_with_pulsar(|_| {});
    let addr = server.pulsar_addr.unwrap();
    let timeout = Some(std::time::Duration::from_secs(20));

    let mut good = std::net::TcpStream::connect(addr).unwrap();
    good.set_read_timeout(timeout).unwrap();
    connect(&mut good);
    let producer = BaseCommand {
        r#type: Type::Producer as i32,
        producer: Some(CommandProducer {
            topic: "persistent://public/default/raw".into(),
            producer_id: 1,
            request_id: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    good.write_all(&encode_command(&producer)).unwrap();
    assert_eq!(read_command(&mut good).unwrap().r#type, Type::ProducerSuccess as i32);
    let send = |seq: u64| BaseCommand {
        r#type: Type::Send as i32,
        send: Some(CommandSend {
            producer_id: 1,
            sequence_id: seq,
            num_messages: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    let meta = MessageMetadata {
        producer_name: "raw".into(),
        sequence_id: 0,
        publish_time: 1,
        ..Default::default()
    };
    let mut corrupt = encode_payload(&send(0), &meta, b"payload").to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    good.write_all(&corrupt).unwrap();
    let err = read_command(&mut good).unwrap();
    assert_eq!(err.r#type, Type::SendError as i32);
    assert_eq!(err.send_error.unwrap().error, ServerError::ChecksumError as i32);
    good.write_all(&encode_payload(&send(1), &meta, b"payload")).unwrap();
    let receipt = read_command(&mut good).unwrap();
    assert_eq!(receipt.r#type, Type::SendReceipt as i32);
    assert_eq!(
        receipt.send_receipt.unwrap().message_id.unwrap().entry_id,
        0,
        "nothing of the corrupt SEND was stored"
    );

    let mut early = std::net::TcpStream::connect(addr).unwrap();
    early.set_read_timeout(timeout).unwrap();
    early.write_all(&encode_command(&producer)).unwrap();
    assert!(read_command(&mut early).is_none(), "a command before CONNECT closes the connection");

    let mut huge = std::net::TcpStream::connect(addr).unwrap();
    huge.set_read_timeout(timeout).unwrap();
    connect(&mut huge);
    huge.write_all(&(200u32 << 20).to_be_bytes()).unwrap();
    assert!(read_command(&mut huge).is_none(), "an oversized frame closes the connection");

    good.write_all(&encode_payload(&send(2), &meta, b"again")).unwrap();
    assert_eq!(
        read_command(&mut good).unwrap().r#type,
        Type::SendReceipt as i32,
        "the other connection still works"
    );
}

fn with_acme_listener(c: &mut guise_host::config::Config) {
    c.listeners.push(guise_host::config::ListenerConfig {
        addr: "127.0.0.1:0".into(),
        tenant: "acme".parse().unwrap(),
        advertised_addr: None,
        security_protocol: Default::default(),
    });
}

/// The endpoint serves only the tenants it is given (by default the Kafka listener's, `public`):
/// another tenant's topics get AuthorizationError, so a client that may reach the Pulsar port
/// cannot use it to read or write a tenant whose Kafka listener it cannot reach; the host's
/// internal topics get NotAllowedError. A listed tenant works with the pulsar crate, and its own
/// Kafka listener reads what was produced.
#[test]
fn only_the_listed_tenants_and_no_internal_topics_are_served() {
    let server = TestServer::start_with_pulsar(with_acme_listener);
    let mut s = std::net::TcpStream::connect(server.pulsar_addr.unwrap()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    connect(&mut s);
    let lookup = BaseCommand {
        r#type: Type::Lookup as i32,
        lookup_topic: Some(CommandLookupTopic {
            topic: "persistent://acme/default/orders".into(),
            request_id: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&lookup)).unwrap();
    let r = read_command(&mut s).unwrap().lookup_topic_response.unwrap();
    assert_eq!(r.error, Some(ServerError::AuthorizationError as i32), "{r:?}");
    let producer = |topic: &str, id: u64| BaseCommand {
        r#type: Type::Producer as i32,
        producer: Some(CommandProducer {
            topic: topic.into(),
            producer_id: id,
            request_id: 10 + id,
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&producer("persistent://acme/default/orders", 1))).unwrap();
    let r = read_command(&mut s).unwrap();
    assert_eq!(r.error.map(|e| e.error), Some(ServerError::AuthorizationError as i32));
    let list = BaseCommand {
        r#type: Type::GetTopicsOfNamespace as i32,
        get_topics_of_namespace: Some(CommandGetTopicsOfNamespace {
            request_id: 3,
            namespace: "acme/default".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    s.write_all(&encode_command(&list)).unwrap();
    let r = read_command(&mut s).unwrap();
    assert_eq!(r.error.map(|e| e.error), Some(ServerError::AuthorizationError as i32));
    assert!(server.server().log.topics("acme", "default").is_empty(), "nothing was created for acme");
    // The host's internal topics are not a Pulsar client's to write (or to create).
    for (id, topic) in
        [(3, "__consumer_offsets"), (4, "__pulsar_cursors"), (5, "__pulsar_cursors-partition-0")]
    {
        s.write_all(&encode_command(&producer(&format!("persistent://public/default/{topic}"), id))).unwrap();
        let r = read_command(&mut s).unwrap();
        assert_eq!(r.error.map(|e| e.error), Some(ServerError::NotAllowedError as i32), "{topic}");
    }
    assert!(server.server().log.topics("public", "default").is_empty(), "nothing was created");
    s.write_all(&encode_command(&producer("persistent://public/default/orders", 2))).unwrap();
    assert_eq!(read_command(&mut s).unwrap().r#type, Type::ProducerSuccess as i32, "public is served");
    drop(server);

    let server = TestServer::start_with_pulsar(|c| {
        with_acme_listener(c);
        c.pulsar_tenants = vec!["public".parse().unwrap(), "acme".parse().unwrap()];
    });
    let acme = server.server().tenant_addrs[0].1.to_string();
    rt().block_on(async {
        use pulsar::{Pulsar, TokioExecutor};
        let client: Pulsar<TokioExecutor> =
            Pulsar::builder(server.pulsar_url(), TokioExecutor).build().await.unwrap();
        let mut producer =
            client.producer().with_topic("persistent://acme/default/orders").build().await.unwrap();
        for i in 0..3 {
            producer.send_non_blocking(format!("acme-{i}").into_bytes()).await.unwrap().await.unwrap();
        }
        let kafka = ClientBuilder::new(vec![acme]).build().await.unwrap();
        let pc = kafka.partition_client("orders", 0, UnknownTopicHandling::Retry).await.unwrap();
        let got: Vec<_> = fetch_all(&pc, 3).await.into_iter().map(|r| r.record.value.unwrap()).collect();
        assert_eq!(got, [b"acme-0".to_vec(), b"acme-1".to_vec(), b"acme-2".to_vec()]);
    });
    assert!(server.server().log.topics("public", "default").iter().all(|t| t.name.topic != "orders"));
}
