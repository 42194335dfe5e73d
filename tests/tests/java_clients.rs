//! The Java client (`kafka-clients` 4.4) against Guise and against Apache Kafka 4.4, the same
//! scenario on both, comparing what the client observes (differential tests). Apache Kafka runs
//! once for the whole test run (`guise_tests::apache_kafka`); Guise runs in-process per test.
//! Every test uses names of its own, since the reference broker is shared.

use guise_tests::java::clients;
use guise_tests::{TestServer, apache_kafka};
use serde_json::{Value, json};

/// Run `scenario(bootstrap, names)` against Apache Kafka and against a fresh Guise host, with
/// `names` a prefix unique to this test; returns (Kafka's observation, Guise's).
fn both(test: &str, scenario: impl Fn(&str, &str) -> Value) -> (Value, Value) {
    let kafka = apache_kafka::shared();
    // Kafka's default time retention (the harness turns it off for tests with old timestamps):
    // the scenarios compare the configs they describe.
    let guise = TestServer::start_with(|c| c.retention_ms = 604_800_000);
    let names = format!("{test}-{}", std::process::id());
    let on_kafka = scenario(&kafka.bootstrap(), &names);
    let on_guise = scenario(&guise.bootstrap(), &names);
    (on_kafka, on_guise)
}

fn admin(bootstrap: &str, ops: Value) -> Vec<Value> {
    match clients(&["admin", bootstrap, &ops.to_string()]) {
        Value::Array(results) => results,
        other => panic!("admin printed {other}"),
    }
}

/// The error class a client saw for `key` of an admin result, or "ok".
fn outcome(result: &Value, key: &str) -> String {
    match &result["ok"][key] {
        Value::String(s) => s.clone(),
        v => v["error"].as_str().map(str::to_string).unwrap_or_else(|| format!("unexpected: {result}")),
    }
}

#[test]
fn idempotent_producer_and_group_consumer_observe_the_same_as_on_kafka() {
    let (kafka, guise) = both("java-pc", |bootstrap, names| {
        let topic = format!("{names}-orders");
        let group = format!("{names}-billing");
        let stamped = format!("{names}-stamped");
        let created = admin(
            bootstrap,
            json!([{"op": "create", "topics": [
                {"name": topic, "partitions": 3},
                {"name": stamped, "partitions": 1, "configs": {"message.timestamp.type": "LogAppendTime"}},
            ]}]),
        );
        assert_eq!(outcome(&created[0], &topic), "ok", "{created:?}");
        assert_eq!(outcome(&created[0], &stamped), "ok", "{created:?}");
        // The broker stamps a LogAppendTime topic's batches; consumers see that timestamp type.
        clients(&["produce", bootstrap, &stamped, "5"]);
        let stamped = clients(&["consume", bootstrap, &stamped, &format!("{group}-stamped"), "5"]);
        // The Java client's default producer: idempotent, acks=all; the partitioner hashes keys
        // with murmur2, so where each record lands is the same on both brokers.
        let produced = clients(&["produce", bootstrap, &topic, "40"]);
        let consumed = clients(&["consume", bootstrap, &topic, &group, "40"]);
        // The producer's state on a partition, and where the partitions are stored.
        let inspected = admin(
            bootstrap,
            json!([
                {"op": "describeProducers", "topic": topic, "partition": 1},
                {"op": "describeLogDirs", "prefix": names},
            ]),
        );
        let after = admin(
            bootstrap,
            json!([
                {"op": "groupOffsets", "group": group},
                {"op": "describeGroup", "group": group},
                {"op": "listOffsets", "topic": topic, "partition": 1, "spec": "earliest"},
                {"op": "listOffsets", "topic": topic, "partition": 1, "spec": "latest"},
                {"op": "deleteRecords", "topic": topic, "partition": 1, "before": 2},
                {"op": "listOffsets", "topic": topic, "partition": 1, "spec": "earliest"},
                {"op": "deleteRecords", "topic": topic, "partition": 1, "before": 1},
                {"op": "deleteRecords", "topic": topic, "partition": 1, "before": 1000},
            ]),
        );
        let latest = &after[3]["ok"]["offset"];
        let deleted: Vec<Value> = after[4..]
            .iter()
            .map(|r| if r["ok"].is_null() { r["error"].clone() } else { r["ok"].clone() })
            .collect();
        json!({
            "produced": produced,
            "consumed": consumed,
            "offsets": after[0],
            "state": after[1]["ok"]["state"],
            "members": after[1]["ok"]["members"],
            "earliest": after[2]["ok"]["offset"],
            "latest": latest,
            "delete records, then earliest": deleted,
            "log append time": stamped,
            "producers, log dirs": inspected,
        })
    });
    assert_eq!(kafka["produced"]["sent"].as_array().map(Vec::len), Some(40), "{kafka}");
    // Group offsets are keyed by topic-partition names, which carry the prefix: same on both.
    assert_eq!(guise, kafka);
}

#[test]
fn topic_admin_errors_match_kafka() {
    let (kafka, guise) = both("java-admin", |bootstrap, names| {
        let t = |s: &str| format!("{names}-{s}");
        let results = admin(
            bootstrap,
            json!([
                {"op": "create", "topics": [
                    {"name": t("defaults")},
                    {"name": t("three"), "partitions": 3, "rf": 1},
                    {"name": t("zero-partitions"), "partitions": 0},
                    {"name": t("rf-three"), "partitions": 1, "rf": 3},
                    {"name": t("unknown-config"), "configs": {"guise.no.such.config": "1"}},
                    {"name": t("bad-value"), "configs": {"retention.ms": "soon"}},
                    {"name": t("bad-segment"), "configs": {"segment.bytes": "12"}},
                    {"name": format!("{names} has spaces")},
                    {"name": "a".repeat(250)},
                ]},
                {"op": "create", "topics": [{"name": t("three"), "partitions": 3}]},
                {"op": "create", "validateOnly": true, "topics": [{"name": t("only-validated"), "partitions": 2}]},
                {"op": "describeTopics", "names": [t("three"), t("only-validated"), t("never")]},
                {"op": "createPartitions", "topic": t("three"), "total": 2},
                {"op": "createPartitions", "topic": t("three"), "total": 3},
                {"op": "createPartitions", "topic": t("three"), "total": 5},
                {"op": "createPartitions", "topic": t("never"), "total": 5},
                {"op": "delete", "names": [t("defaults"), t("never")]},
                {"op": "describeGroup", "group": t("no-group")},
                {"op": "groupOffsets", "group": t("no-group")},
                {"op": "alterConfigs", "topic": t("three"), "set": {"retention.ms": "3600000", "cleanup.policy": "compact,delete"}},
                {"op": "alterConfigs", "topic": t("three"), "set": {"retention.ms": "soon"}},
                {"op": "alterConfigs", "topic": t("three"), "set": {"guise.no.such.config": "1"}},
                {"op": "alterConfigs", "topic": t("never"), "set": {"retention.ms": "1"}},
                {"op": "alterConfigs", "topic": t("three"), "delete": ["retention.ms"]},
                {"op": "describeConfigs", "topic": t("three")},
                {"op": "describeCluster"},
            ]),
        );
        let mut seen = serde_json::Map::new();
        let create = &results[0];
        for name in
            ["defaults", "three", "zero-partitions", "rf-three", "unknown-config", "bad-value", "bad-segment"]
        {
            seen.insert(format!("create {name}"), outcome(create, &t(name)).into());
        }
        seen.insert("create spaces".into(), outcome(create, &format!("{names} has spaces")).into());
        seen.insert("create 250 chars".into(), outcome(create, &"a".repeat(250)).into());
        seen.insert("create again".into(), outcome(&results[1], &t("three")).into());
        seen.insert("validate only".into(), outcome(&results[2], &t("only-validated")).into());
        let described = &results[3]["ok"];
        seen.insert(
            "describe three".into(),
            described[t("three")]["partitions"].as_array().map(Vec::len).into(),
        );
        seen.insert("describe validated".into(), described[t("only-validated")]["error"].clone());
        seen.insert("describe never".into(), described[t("never")]["error"].clone());
        for (i, what) in [(4, "shrink"), (5, "same count"), (6, "grow"), (7, "missing topic")] {
            seen.insert(
                format!("partitions {what}"),
                outcome(&results[i], &t(if i == 7 { "never" } else { "three" })).into(),
            );
        }
        seen.insert("delete defaults".into(), outcome(&results[8], &t("defaults")).into());
        seen.insert("delete never".into(), outcome(&results[8], &t("never")).into());
        seen.insert("describe missing group".into(), results[9]["ok"]["state"].clone());
        seen.insert("missing group offsets".into(), results[10]["ok"].clone());
        let error_or_ok =
            |r: &Value| r["error"].as_str().unwrap_or(if r["ok"] == "ok" { "ok" } else { "?" }).to_string();
        for (i, what) in [
            (11, "alter"),
            (12, "alter bad value"),
            (13, "alter unknown config"),
            (14, "alter missing topic"),
            (15, "alter delete"),
        ] {
            seen.insert(what.into(), error_or_ok(&results[i]).into());
        }
        // The configs of a topic: every name Kafka 4.4 has, with the same values, and which were
        // set on the topic. (Guise adds `guise.entry.format`; Kafka's KRaft cluster reports
        // min.insync.replicas as a dynamic broker default, Guise as a default: neither is compared.)
        let mut configs = serde_json::Map::new();
        for (name, entry) in results[16]["ok"].as_object().expect("configs") {
            if name.starts_with("guise.") {
                continue;
            }
            let overridden = entry["source"] == "DYNAMIC_TOPIC_CONFIG";
            configs.insert(name.clone(), json!([entry["value"], overridden]));
        }
        seen.insert("configs after alter".into(), Value::Object(configs));
        let cluster = &results[17]["ok"];
        let nodes = cluster["nodes"].as_array().expect("nodes");
        seen.insert(
            "cluster".into(),
            json!([nodes.len(), cluster["controller"] == nodes[0]["id"], cluster["hasClusterId"]]),
        );
        Value::Object(seen)
    });
    assert_eq!(kafka["create defaults"], "ok", "{kafka:#}");
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
}

/// Run `guise.StreamsApp` (see `tests/java/src/guise/StreamsApp.java`).
fn streams(args: &[&str]) -> Value {
    guise_tests::java::run_main("guise.StreamsApp", args)
}

#[test]
fn kafka_streams_restores_its_state_and_counts_as_on_kafka() {
    // Recent timestamps, the same on both brokers: retention deletes records older than a week.
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let base = (now_ms / 3_600_000 - 2) * 3_600_000;
    let base = base.to_string();
    let (kafka, guise) = both("java-streams", |bootstrap, names| {
        let input = format!("{names}-words");
        let app = format!("{names}-app");
        let state = tempfile::tempdir().expect("a state dir");
        let created =
            admin(bootstrap, json!([{"op": "create", "topics": [{"name": input, "partitions": 2}]}]));
        assert_eq!(outcome(&created[0], &input), "ok", "{created:?}");
        streams(&["input", bootstrap, &input, &base, "0", "40"]);
        let first =
            streams(&["run", bootstrap, &app, &input, &state.path().join("a").to_string_lossy(), "40"]);
        // A second instance with an empty state directory: its stores are restored from the
        // compacted changelogs, and the counts go on from there.
        streams(&["input", bootstrap, &input, &base, "40", "30"]);
        let second =
            streams(&["run", bootstrap, &app, &input, &state.path().join("b").to_string_lossy(), "30"]);
        let changelog = admin(
            bootstrap,
            json!([
                {"op": "describeConfigs", "topic": format!("{app}-word-counts-changelog")},
                {"op": "describeConfigs", "topic": format!("{app}-user-windows-changelog")},
            ]),
        );
        json!({
            "processed": [first["processed"], second["processed"]],
            "counts": streams(&["read", bootstrap, &format!("{input}-counts")]),
            "windows": streams(&["read", bootstrap, &format!("{input}-windows")]),
            "changelog policy": changelog[0]["ok"]["cleanup.policy"]["value"],
            "windowed changelog policy": changelog[1]["ok"]["cleanup.policy"]["value"],
        })
    });
    // 70 records over 7 words: 10 each, whichever broker counted them.
    assert_eq!(kafka["counts"]["w0"], 10, "{kafka:#}");
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
}

/// Edge cases a client library would not send, on the wire: the same request to Kafka and
/// Guise, comparing error codes and what the responses say.
#[test]
fn wire_edge_cases_match_kafka() {
    use guise_tests::wire;
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    // Recent timestamps, 1 s apart (retention would delete old ones on Kafka).
    let base_ts = (now_ms / 1000 - 600) * 1000;
    let (kafka, guise) = both("wire", |bootstrap, names| {
        let addr: std::net::SocketAddr = bootstrap.parse().expect("an address");
        let name = |s: &str| TopicName(StrBytes::from_string(format!("{names}-{s}")));
        let mut seen = serde_json::Map::new();

        // CreateTopics v3 with -1 partitions and replication factor: the broker's defaults, as
        // Kafka's broker takes them at every version; 0 partitions is INVALID_PARTITIONS.
        let create = |v: i16, topic: &str, partitions: i32, rf: i16| -> i16 {
            let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(rf),
            ]);
            let resp: CreateTopicsResponse =
                wire::call(addr, ApiKey::CreateTopics, v, &req).expect("CreateTopics");
            resp.topics[0].error_code
        };
        seen.insert("create v3 -1 -1".into(), create(3, "v3-defaults", -1, -1).into());
        seen.insert("create v3 0 partitions".into(), create(3, "v3-zero", 0, -1).into());
        seen.insert("create v7 -1 -1".into(), create(7, "v7-defaults", -1, -1).into());
        seen.insert("create v3 rf 0".into(), create(3, "v3-rf0", 1, 0).into());
        let metadata: MetadataResponse = wire::call(
            addr,
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("v3-defaults"))),
            ])),
        )
        .expect("Metadata");
        seen.insert("v3 defaults partitions".into(), metadata.topics[0].partitions.len().into());

        // Ten records, one second apart, in two batches.
        let topic = name("v7-defaults");
        let batch = |from: i64| {
            let records: Vec<Record> = (from..from + 5)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: i - from,
                    // kafka-protocol starts a new batch where offset - sequence changes; with
                    // these the five records are one batch whose base sequence is -1 (Kafka
                    // refuses more than one batch per partition: INVALID_RECORD).
                    sequence: (i - from) as i32 - 1,
                    timestamp: base_ts + i * 1000,
                    key: Some(bytes::Bytes::from(format!("k{i}"))),
                    value: Some(bytes::Bytes::from(format!("v{i}"))),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions { version: 2, compression: Compression::None },
            )
            .expect("a batch");
            buf.freeze()
        };
        for from in [0, 5] {
            let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
                TopicProduceData::default().with_name(topic.clone()).with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(batch(from))),
                ]),
            ]);
            // Kafka answers UNKNOWN_TOPIC_OR_PARTITION until a new topic's leader is known, and
            // clients retry: so do we.
            let mut tries = 0;
            loop {
                let resp: ProduceResponse = wire::call(addr, ApiKey::Produce, 9, &req).expect("Produce");
                let p = &resp.responses[0].partition_responses[0];
                if p.error_code == 3 && tries < 100 {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
                assert_eq!(p.error_code, 0, "{bootstrap}: {:?} {:?}", p.error_message, p.record_errors);
                break;
            }
        }

        // ListOffsets by time: before, at, between and after the records; latest, earliest, max.
        for (what, ts) in [
            ("before all", base_ts - 5000),
            ("at the third", base_ts + 2000),
            ("between", base_ts + 6500),
            ("after all", base_ts + 60_000),
            ("latest", -1),
            ("earliest", -2),
            ("max timestamp", -3),
        ] {
            let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                ListOffsetsTopic::default().with_name(topic.clone()).with_partitions(vec![
                    ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts),
                ]),
            ]);
            let resp: ListOffsetsResponse =
                wire::call(addr, ApiKey::ListOffsets, 7, &req).expect("ListOffsets");
            let p = &resp.topics[0].partitions[0];
            let ts = if p.timestamp >= base_ts { p.timestamp - base_ts } else { p.timestamp };
            seen.insert(format!("list offsets {what}"), json!([p.error_code, p.offset, ts]));
        }

        // Fetch at the log end (nothing, no error), past it (OFFSET_OUT_OF_RANGE), inside a
        // batch (the whole batch comes back) and for a partition that does not exist.
        for (what, partition, offset) in
            [("at the end", 0, 10), ("past the end", 0, 15), ("inside a batch", 0, 7), ("no partition", 3, 0)]
        {
            let req = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(1)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default().with_topic(topic.clone()).with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(partition)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ])]);
            let resp: FetchResponse = wire::call(addr, ApiKey::Fetch, 12, &req).expect("Fetch");
            let p = &resp.responses[0].partitions[0];
            let first = p
                .records
                .as_ref()
                .filter(|r| r.len() >= 8)
                .map(|r| i64::from_be_bytes(r[..8].try_into().expect("8 bytes")));
            seen.insert(format!("fetch {what}"), json!([p.error_code, p.high_watermark, first]));
        }

        // Broker-side compression and timestamp bounds: a topic whose compression.type is zstd
        // stores an uncompressed batch as zstd; a CreateTime timestamp two hours ahead is past
        // the default message.timestamp.after.max.ms (1 h), and one ten minutes old is before a
        // message.timestamp.before.max.ms of one minute.
        let create_with = |topic: &str, config: (&str, &str)| -> i16 {
            use create_topics_request::CreatableTopicConfig;
            let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![
                CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(config.0.into()))
                            .with_value(Some(StrBytes::from_string(config.1.into()))),
                    ]),
            ]);
            let resp: CreateTopicsResponse =
                wire::call(addr, ApiKey::CreateTopics, 7, &req).expect("CreateTopics");
            resp.topics[0].error_code
        };
        seen.insert("create zstd topic".into(), create_with("zstd", ("compression.type", "zstd")).into());
        seen.insert(
            "create bounded topic".into(),
            create_with("bounded", ("message.timestamp.before.max.ms", "60000")).into(),
        );
        let stamped = |shift_ms: i64| {
            let mut b = batch(0).to_vec();
            // Shift both header timestamps (the records' are deltas) and fix the CRC.
            for at in [27, 35] {
                let ts = i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes")) + shift_ms;
                b[at..at + 8].copy_from_slice(&ts.to_be_bytes());
            }
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            bytes::Bytes::from(b)
        };
        let ahead = now_ms - base_ts + 2 * 3_600_000;
        for (what, topic, records) in [
            ("produce to zstd topic", "zstd", batch(0)),
            ("produce 2 h ahead", "v7-defaults", stamped(ahead)),
            ("produce 10 min old to bounded topic", "bounded", batch(0)),
            ("produce now to bounded topic", "bounded", stamped(now_ms - base_ts)),
        ] {
            let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![
                TopicProduceData::default().with_name(name(topic)).with_partition_data(vec![
                    PartitionProduceData::default().with_index(0).with_records(Some(records)),
                ]),
            ]);
            let mut tries = 0;
            let code = loop {
                let resp: ProduceResponse = wire::call(addr, ApiKey::Produce, 9, &req).expect("Produce");
                let code = resp.responses[0].partition_responses[0].error_code;
                if code == 3 && tries < 100 {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    continue;
                }
                break code;
            };
            seen.insert(what.into(), code.into());
        }
        let req = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default().with_topic(name("zstd")).with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ])]);
        let resp: FetchResponse = wire::call(addr, ApiKey::Fetch, 12, &req).expect("Fetch");
        let stored = resp.responses[0].partitions[0].records.clone().unwrap_or_default();
        // Attributes (codec in the low 3 bits) and records count of the stored batch.
        let header = (stored.len() >= 61).then(|| {
            (
                i16::from_be_bytes([stored[21], stored[22]]) & 7,
                i32::from_be_bytes(stored[57..61].try_into().expect("4")),
            )
        });
        seen.insert("zstd topic's stored batch (codec, records)".into(), json!(header));

        // OffsetForLeaderEpoch (as the Java consumer validates a position): a new partition's
        // one epoch ends at the log end; later epochs are unknown; a current epoch newer or
        // older than the leader's is refused.
        for (what, partition, current, requested) in [
            ("epoch 0", 0, -1, 0),
            ("epoch 0, current 0", 0, 0, 0),
            ("a later epoch", 0, 0, 7),
            ("undefined epoch", 0, -1, -1),
            ("current epoch too new", 0, 5, 0),
            ("no partition", 3, -1, 0),
        ] {
            use offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
            let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![
                OffsetForLeaderTopic::default().with_topic(topic.clone()).with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(partition)
                        .with_current_leader_epoch(current)
                        .with_leader_epoch(requested),
                ]),
            ]);
            let resp: OffsetForLeaderEpochResponse =
                wire::call(addr, ApiKey::OffsetForLeaderEpoch, 4, &req).expect("OffsetForLeaderEpoch");
            let p = &resp.topics[0].partitions[0];
            seen.insert(
                format!("offset for leader epoch: {what}"),
                json!([p.error_code, p.leader_epoch, p.end_offset]),
            );
        }
        Value::Object(seen)
    });
    assert_eq!(kafka["create v3 -1 -1"], 0, "{kafka:#}");
    // What Kafka 4.4 does, so that the comparison below compares something.
    assert_eq!(kafka["produce to zstd topic"], 0, "{kafka:#}");
    assert_eq!(kafka["zstd topic's stored batch (codec, records)"], json!([4, 5]), "{kafka:#}");
    assert_eq!(kafka["produce 2 h ahead"], 32, "{kafka:#}");
    assert_eq!(kafka["produce 10 min old to bounded topic"], 32, "{kafka:#}");
    assert_eq!(kafka["produce now to bounded topic"], 0, "{kafka:#}");
    assert_eq!(kafka["offset for leader epoch: epoch 0"], json!([0, 0, 10]), "{kafka:#}");
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
}

/// Kafka's own command-line tools, by main class, as a user runs them: `kafka-topics`,
/// `kafka-configs`, `kafka-consumer-groups --describe`, `kafka-delete-records`. Their output is
/// compared with what they print against Apache Kafka, with what must differ taken out: topic
/// ids, node ids (Kafka's node is 1, Guise's 0), the config
/// synonyms, and `min.insync.replicas`, which Kafka's KRaft cluster sets as a dynamic default.
#[test]
fn kafka_command_line_tools_print_what_they_print_on_kafka() {
    use guise_tests::java::tool;
    let (kafka, guise) = both("cli", |bootstrap, names| {
        let topic = format!("{names}-t");
        let compacted = format!("{names}-c");
        let group = format!("{names}-g");
        let dir = tempfile::tempdir().expect("a temp dir");
        let mut out = Vec::new();
        let mut run = |main: &str, args: &[&str]| {
            let (ok, text) = tool(main, args);
            out.push(json!([main.rsplit('.').next(), args.get(2), ok, normalize(&text)]));
        };
        const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
        const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
        const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
        const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
        let b = bootstrap;
        run(TOPICS, &["--bootstrap-server", b, "--create", "--topic", &topic, "--partitions", "3"]);
        run(
            TOPICS,
            &[
                "--bootstrap-server",
                b,
                "--create",
                "--topic",
                &compacted,
                "--config",
                "cleanup.policy=compact",
            ],
        );
        run(TOPICS, &["--bootstrap-server", b, "--create", "--topic", &topic, "--partitions", "3"]);
        run(TOPICS, &["--bootstrap-server", b, "--describe", "--topic", &topic]);
        run(TOPICS, &["--bootstrap-server", b, "--alter", "--topic", &topic, "--partitions", "4"]);
        let retention = ["--bootstrap-server", b, "--entity-type", "topics", "--entity-name", &topic];
        run(
            CONFIGS,
            &[&retention[..], &["--alter", "--add-config", "retention.ms=3600000,segment.bytes=2097152"]]
                .concat(),
        );
        run(CONFIGS, &[&retention[..], &["--alter", "--add-config", "retention.ms=soon"]].concat());
        run(CONFIGS, &[&retention[..], &["--describe"]].concat());
        run(CONFIGS, &[&retention[..], &["--alter", "--delete-config", "segment.bytes"]].concat());
        run(CONFIGS, &[&retention[..], &["--describe"]].concat());
        clients(&["produce", b, &topic, "20"]);
        clients(&["consume", b, &topic, &group, "20"]);
        run(GROUPS, &["--bootstrap-server", b, "--describe", "--group", &group]);
        run(GROUPS, &["--bootstrap-server", b, "--describe", "--group", &format!("{names}-none")]);
        let offsets = dir.path().join("offsets.json");
        for (t, file) in [(&topic, &offsets), (&compacted, &dir.path().join("compacted.json"))] {
            std::fs::write(
                file,
                json!({"version": 1, "partitions": [{"topic": t, "partition": 0, "offset": 2}]}).to_string(),
            )
            .expect("writing the offsets file");
            run(DELETE_RECORDS, &["--bootstrap-server", b, "--offset-json-file", &file.to_string_lossy()]);
        }
        run(TOPICS, &["--bootstrap-server", b, "--delete", "--topic", &topic]);
        Value::Array(out)
    });
    // The tools ran on Kafka itself (equal failures on both would prove nothing).
    assert_eq!(kafka[0][2], true, "kafka-topics --create failed on Kafka: {kafka:#}");
    assert_eq!(
        kafka[0][3][0],
        "Created topic cli-".to_string() + &std::process::id().to_string() + "-t.",
        "{kafka:#}"
    );
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
}

/// A tool's output without what differs between two brokers by nature (see the test above).
fn normalize(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words: Vec<String> = Vec::new();
            let mut skip_value = false;
            for word in line.split('\t') {
                let word = word.trim();
                if skip_value {
                    skip_value = false;
                }
                if word.starts_with("TopicId:") {
                    words.push("TopicId: _".into());
                } else if let Some(k) =
                    ["Leader:", "Replicas:", "Isr:"].iter().find(|k| word.starts_with(**k))
                {
                    words.push(format!("{k} _"));
                } else if let Some(configs) = word.strip_prefix("Configs:") {
                    let kept: Vec<&str> = configs
                        .trim()
                        .split(',')
                        .filter(|c| !c.is_empty() && !c.starts_with("min.insync.replicas="))
                        .collect();
                    words.push(format!("Configs: {}", kept.join(",")));
                } else {
                    words.push(word.split(" synonyms={").next().unwrap_or(word).to_string());
                }
            }
            words.join(" | ")
        })
        .filter(|l| !l.contains("min.insync.replicas=") && !l.starts_with('['))
        .collect()
}

#[test]
fn client_quotas_are_altered_and_described_as_on_kafka() {
    let (kafka, guise) = both("java-quotas", |bootstrap, names| {
        let (u1, u2, c) = (format!("{names}-u1"), format!("{names}-u2"), format!("{names}-c"));
        let altered = admin(
            bootstrap,
            json!([
                {"op": "alterQuotas", "entries": [
                    {"entity": {"user": u1}, "set": {"producer_byte_rate": 1048576, "request_percentage": 50.5}},
                    {"entity": {"user": u1, "client-id": null}, "set": {"consumer_byte_rate": 2048}},
                    {"entity": {"client-id": c}, "set": {"producer_byte_rate": 1.5}},
                    {"entity": {"user": u2}, "set": {"no_such_quota": 1}},
                ]},
                {"op": "alterQuotas", "validateOnly": true, "entries": [
                    {"entity": {"user": u2}, "set": {"producer_byte_rate": 4096}},
                ]},
            ]),
        );
        // The broker learns of a change from the controller a moment later: wait for it.
        let u1_filter =
            json!({"op": "describeQuotas", "components": [{"type": "user", "match": "exact", "name": u1}]});
        let mut described = Value::Null;
        for _ in 0..50 {
            described = admin(bootstrap, json!([u1_filter]))[0].clone();
            if described["ok"].as_object().is_some_and(|o| o.len() == 2) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let more = admin(
            bootstrap,
            json!([
                {"op": "describeQuotas", "strict": true, "components": [{"type": "user", "match": "exact", "name": u1}]},
                {"op": "describeQuotas", "components": [
                    {"type": "user", "match": "exact", "name": u1}, {"type": "client-id", "match": "default"}]},
                {"op": "describeQuotas", "components": [{"type": "user", "match": "exact", "name": u2}]},
                {"op": "describeQuotas", "components": [{"type": "client-id", "match": "exact", "name": c}]},
                {"op": "describeQuotas", "components": [
                    {"type": "user", "match": "any"}, {"type": "user", "match": "default"}]},
                {"op": "describeQuotas", "components": [{"type": "group", "match": "any"}]},
            ]),
        );
        // Removing every key of an entity removes the entity.
        let removed = admin(
            bootstrap,
            json!([{"op": "alterQuotas", "entries": [
                {"entity": {"user": u1, "client-id": null}, "remove": ["consumer_byte_rate"]},
            ]}]),
        );
        let mut after = Value::Null;
        for _ in 0..50 {
            after = admin(bootstrap, json!([u1_filter]))[0].clone();
            if after["ok"].as_object().is_some_and(|o| o.len() == 1) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        // Leave nothing behind on the shared broker.
        admin(
            bootstrap,
            json!([{"op": "alterQuotas", "entries": [
                {"entity": {"user": u1}, "remove": ["producer_byte_rate", "request_percentage"]},
            ]}]),
        );
        // Error messages differ between the brokers; the client's exception classes must not.
        let classes = |v: &Value| -> Value {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("message");
                for (_, inner) in o.iter_mut() {
                    if let Some(i) = inner.as_object_mut() {
                        for (_, x) in i.iter_mut() {
                            if let Some(x) = x.as_object_mut() {
                                x.remove("message");
                            }
                        }
                    }
                }
            }
            v
        };
        let names_out =
            |v: Value| -> Value { serde_json::from_str(&v.to_string().replace(names, "N")).unwrap() };
        names_out(json!({
            "altered": altered.iter().map(classes).collect::<Vec<_>>(),
            "described": described,
            "more": more.iter().map(classes).collect::<Vec<_>>(),
            "removed": removed,
            "after": after,
        }))
    });
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
    assert_eq!(
        guise["described"]["ok"]["{user=N-u1}"],
        json!({"producer_byte_rate": 1048576.0, "request_percentage": 50.5}),
        "{guise}"
    );
}
