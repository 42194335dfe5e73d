//! Transactions (KIP-98, KIP-447, KIP-890) end to end: the Java client against Guise and against
//! Apache Kafka 4.4 (both finalizing transaction version 2, Kafka 4's default) running the same
//! script, the Java client against Guise at transaction version 1, and librdkafka's
//! transactional producer and read_committed consumer, fencing included.

#[path = "support/rd_txn.rs"]
mod rd_txn;

use guise_tests::java::clients;
use guise_tests::{TestServer, apache_kafka};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::Producer;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn admin(bootstrap: &str, ops: Value) -> Vec<Value> {
    match clients(&["admin", bootstrap, &ops.to_string()]) {
        Value::Array(results) => results,
        other => panic!("admin printed {other}"),
    }
}

/// The Java client's view of one transactional script: what the producer saw at each step, and
/// what read_committed and read_uncommitted group consumers read afterwards.
fn java_script(bootstrap: &str, names: &str) -> Value {
    let topic = format!("{names}-payments");
    let created = admin(bootstrap, json!([{"op": "create", "topics": [{"name": topic, "partitions": 2}]}]));
    assert_eq!(created[0]["ok"][&topic], "ok", "{created:?}");
    let id = format!("{names}-tx");
    // 5 committed, 4 aborted, 3 committed; then a second instance fences the first, which had
    // 2 records open: they are aborted, and the zombie's next steps fail.
    let producer = clients(&[
        "txn",
        bootstrap,
        &topic,
        &id,
        "send:5,commit,send:4,abort,send:3,commit,send:2,fence,send:1,commit",
    ]);
    let committed = clients(&[
        "consume",
        bootstrap,
        &topic,
        &format!("{names}-committed"),
        "8",
        "isolation.level=read_committed",
    ]);
    let uncommitted = clients(&["consume", bootstrap, &topic, &format!("{names}-uncommitted"), "14"]);
    let offsets = admin(
        bootstrap,
        json!([
            {"op": "listOffsets", "topic": topic, "partition": 0, "spec": "latest"},
            {"op": "listOffsets", "topic": topic, "partition": 1, "spec": "latest"},
        ]),
    );
    // A sorted view: which partition a record lands in is murmur2 of its key on both, and
    // within a partition the offsets (markers take one each) must match.
    let sorted = |v: &Value| {
        let mut records = v["records"].as_array().cloned().unwrap_or_default();
        records.sort_by_key(|r| (r[0].as_i64(), r[1].as_i64()));
        Value::Array(records)
    };
    // The error classes, not their messages: the Java client words the error a commit
    // rethrows from what it saw first, which depends on timing.
    let mut producer = producer;
    for step in producer.as_array_mut().into_iter().flatten() {
        if let Some(step) = step.as_object_mut() {
            step.remove("message");
        }
    }
    json!({
        "producer": producer,
        "read_committed": sorted(&committed),
        "read_uncommitted": sorted(&uncommitted),
        "latest": [offsets[0]["ok"]["offset"], offsets[1]["ok"]["offset"]],
    })
}

#[test]
fn java_transactional_producer_and_consumers_observe_the_same_as_on_kafka() {
    let kafka = apache_kafka::shared();
    let guise = TestServer::start();
    let names = format!("java-txn-{}", std::process::id());
    let on_kafka = java_script(&kafka.bootstrap(), &names);
    let on_guise = java_script(&guise.bootstrap(), &names);
    assert_eq!(on_kafka["read_committed"].as_array().map(Vec::len), Some(8), "{on_kafka}");
    assert_eq!(on_kafka["read_uncommitted"].as_array().map(Vec::len), Some(14), "{on_kafka}");
    assert_eq!(on_guise, on_kafka);
    // Transaction version 1 finalized: the client takes KIP-98's path (AddPartitionsToTxn,
    // AddOffsetsToTxn, the epoch kept across transactions) and observes the same, the fenced
    // zombie's errors included.
    let v1 = TestServer::start_with(|c| c.transaction_version = 1);
    let versions: kafka_protocol::messages::ApiVersionsResponse = guise_tests::wire::call(
        v1.kafka_addr,
        kafka_protocol::messages::ApiKey::ApiVersions,
        3,
        &kafka_protocol::messages::ApiVersionsRequest::default(),
    )
    .expect("ApiVersions");
    let levels: Vec<i16> = versions.finalized_features.iter().map(|f| f.max_version_level).collect();
    assert_eq!(levels, [1], "the setting reaches ApiVersions");
    assert_eq!(java_script(&v1.bootstrap(), &names), on_kafka, "at transaction version 1");
}

#[test]
fn librdkafka_commits_aborts_and_is_fenced_by_a_second_instance() {
    let server = TestServer::start();
    let topic = "rd-txn";
    let p = rd_txn::producer(&server, "rd-tx", &[]);
    rd_txn::commit_abort_commit(&p, topic);

    assert_eq!(rd_txn::read(&server, topic, 0, "read_committed", 3), ["a", "b", "c"]);
    assert_eq!(rd_txn::read(&server, topic, 0, "read_uncommitted", 6), ["a", "b", "x", "y", "z", "c"]);

    // A transaction left open is aborted when a second instance with the same id initializes;
    // the first is fenced: its commit fails with a fatal error.
    p.begin_transaction().unwrap();
    rd_txn::send(&p, topic, 0, &["zombie"]);
    let second = rd_txn::producer(&server, "rd-tx", &[]);
    second.init_transactions(TIMEOUT).expect("the second instance initializes");
    let fenced = p.commit_transaction(TIMEOUT).expect_err("the first instance is fenced");
    let rd = fenced.rdkafka_error_code();
    assert!(
        matches!(
            rd,
            Some(
                rdkafka::types::RDKafkaErrorCode::ProducerFenced
                    | rdkafka::types::RDKafkaErrorCode::InvalidProducerEpoch
                    | rdkafka::types::RDKafkaErrorCode::Fenced
            )
        ),
        "{fenced:?}"
    );
    second.begin_transaction().unwrap();
    rd_txn::send(&second, topic, 0, &["d"]);
    second.commit_transaction(TIMEOUT).expect("the second instance commits");
    assert_eq!(rd_txn::read(&server, topic, 0, "read_committed", 4), ["a", "b", "c", "d"]);
}

#[test]
fn an_open_transaction_survives_a_host_restart_and_commits() {
    let server = TestServer::start();
    let topic = "rd-txn-restart";
    {
        let p = rd_txn::producer(&server, "restart-tx", &[]);
        p.init_transactions(TIMEOUT).expect("init_transactions");
        p.begin_transaction().unwrap();
        rd_txn::send(&p, topic, 0, &["before"]);
        p.commit_transaction(TIMEOUT).expect("commit");
    }
    let p = rd_txn::producer(&server, "restart-tx", &[]);
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p.begin_transaction().unwrap();
    rd_txn::send(&p, topic, 0, &["across"]);
    let server = server.restart();
    p.commit_transaction(TIMEOUT).expect("commit after the restart");
    assert_eq!(rd_txn::read(&server, topic, 0, "read_committed", 2), ["before", "across"]);
}

/// Pulsar consumers of the endpoint read what read_committed Kafka consumers read: never a
/// record of an aborted transaction, and an open transaction's only once it commits.
#[test]
fn pulsar_consumers_see_only_committed_transactions() {
    use futures::StreamExt;
    use pulsar::consumer::InitialPosition;
    use pulsar::{ConsumerOptions, Pulsar, SubType, TokioExecutor};

    let server = TestServer::start_with_pulsar(|_| {});
    let topic = "txn-to-pulsar";
    let p = rd_txn::producer(&server, "pulsar-tx", &[]);
    p.init_transactions(TIMEOUT).expect("init_transactions");
    for (values, commit) in [(&["a", "b"][..], true), (&["x"][..], false)] {
        p.begin_transaction().unwrap();
        rd_txn::send(&p, topic, 0, values);
        if commit { p.commit_transaction(TIMEOUT).unwrap() } else { p.abort_transaction(TIMEOUT).unwrap() }
    }
    p.begin_transaction().unwrap();
    rd_txn::send(&p, topic, 0, &["open"]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let url = server.pulsar_url();
    let mut consumer = rt.block_on(async {
        let client: Pulsar<TokioExecutor> = Pulsar::builder(url, TokioExecutor).build().await.unwrap();
        let consumer: pulsar::Consumer<Vec<u8>, _> = client
            .consumer()
            .with_topic(format!("persistent://public/default/{topic}"))
            .with_subscription("txn-sub")
            .with_subscription_type(SubType::Exclusive)
            .with_options(ConsumerOptions {
                initial_position: InitialPosition::Earliest,
                ..Default::default()
            })
            .build()
            .await
            .unwrap();
        consumer
    });
    let mut next = |within: Duration| {
        rt.block_on(async {
            let m = tokio::time::timeout(within, consumer.next()).await.ok()??.ok()?;
            consumer.ack(&m).await.unwrap();
            Some(String::from_utf8(m.deserialize()).unwrap())
        })
    };
    assert_eq!(next(TIMEOUT).as_deref(), Some("a"));
    assert_eq!(next(TIMEOUT).as_deref(), Some("b"));
    assert_eq!(next(Duration::from_secs(3)), None, "nothing aborted, nothing open");
    p.commit_transaction(TIMEOUT).unwrap();
    assert_eq!(next(TIMEOUT).as_deref(), Some("open"), "once committed");
}

fn streams(args: &[&str]) -> Value {
    guise_tests::java::run_main("guise.StreamsApp", args)
}

/// A child process killed when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Kafka Streams with `exactly_once_v2` (transactions, KIP-447's offsets in them, read_committed
/// consumers) counting words and windows while the host is killed (`kill -9`) and restarted
/// under it, and then the Streams instance itself is killed and a new one with an empty state
/// directory takes over: the committed output is exactly the input's counts.
#[test]
fn kafka_streams_exactly_once_counts_exactly_through_host_and_instance_crashes() {
    use guise_tests::host_process::Host;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let host = Host::start(&data, 0, 0, &[]);
    let port = host.kafka;
    let bootstrap = format!("127.0.0.1:{port}");
    let (input, app) = ("eos-words", "eos-app");
    let created = admin(&bootstrap, json!([{"op": "create", "topics": [{"name": input, "partitions": 2}]}]));
    assert_eq!(created[0]["ok"][input], "ok", "{created:?}");
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let base = (now_ms / 3_600_000 - 2) * 3_600_000;
    streams(&["input", &bootstrap, input, &base.to_string(), "0", "60"]);

    // Instance A, in the background.
    let state = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let instance = |state_dir: String| {
        let log =
            std::fs::File::create(dir.path().join(format!("{}.log", state_dir.rsplit('/').next().unwrap())))
                .unwrap();
        Killed(
            guise_tests::java::command(
                "256m",
                &["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"],
                "guise.StreamsApp",
            )
            .args(["eos", &bootstrap, app, input, &state_dir, "forever"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting java"),
        )
    };
    let a = instance(state("a"));
    // Once A has committed a transaction, the host crashes under it and comes back.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let offsets = admin(&bootstrap, json!([{"op": "groupOffsets", "group": app}]));
        if offsets[0]["ok"].as_object().is_some_and(|o| !o.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "A committed nothing: {offsets:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
    host.kill9();
    let host = Host::start(&data, port, 0, &[]);
    streams(&["input", &bootstrap, input, &base.to_string(), "60", "60"]);
    // A is killed mid-stream: as soon as its output shows it processed some of the new records
    // (read_uncommitted: its transaction, 5 s long, has not committed them yet). B, with an
    // empty state directory, finishes.
    let first_count = (0..60).filter(|i| i % 7 == 0).count() as i64;
    let watch: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "eos-watch")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_uncommitted")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&format!("{input}-counts"), 0, Offset::Beginning).unwrap();
    watch.assign(&tpl).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(std::time::Instant::now() < deadline, "A processed nothing of the new records");
        if let Some(Ok(m)) = watch.poll(Duration::from_millis(100))
            && m.key() == Some(b"w0".as_slice())
            && m.payload().and_then(|v| <[u8; 8]>::try_from(v).ok()).map(i64::from_be_bytes)
                > Some(first_count)
        {
            break;
        }
    }
    // Closed while the host runs: a consumer destroyed after its broker is gone can wait for
    // ever (librdkafka; seen once in CI, the test hung at its end after every assertion passed).
    drop(watch);
    drop(a);
    let b = streams(&["eos", &bootstrap, app, input, &state("b")]);
    assert!(b["processed"].as_i64().is_some(), "{b}");

    let mut words = serde_json::Map::new();
    let mut windows = serde_json::Map::new();
    for i in 0..120i64 {
        let word = format!("w{}", i % 7);
        let n = words.get(&word).and_then(Value::as_i64).unwrap_or(0);
        words.insert(word, json!(n + 1));
        let ts = base + i * 60_000;
        let window = format!("user-{}@{}", i % 5, ts - ts.rem_euclid(600_000));
        let n = windows.get(&window).and_then(Value::as_i64).unwrap_or(0);
        windows.insert(window, json!(n + 1));
    }
    let counts = streams(&["read", &bootstrap, &format!("{input}-counts"), "read_committed"]);
    assert_eq!(counts, Value::Object(words), "word counts");
    let got = streams(&["read", &bootstrap, &format!("{input}-windows"), "read_committed"]);
    assert_eq!(got, Value::Object(windows), "windowed counts");
    drop(host);
}

/// A `kafka-transactions` table as (column → value) rows, keeping the columns that do not
/// differ between two brokers by nature (producer ids, clocks, coordinator ids), and only the
/// rows of `names`' transactional ids (the reference broker is shared), sorted (Kafka lists in
/// no particular order).
fn transactions_table(text: &str, names: &str) -> Vec<Vec<String>> {
    const KEPT: [&str; 5] =
        ["TransactionalId", "ProducerEpoch", "TransactionState", "TransactionTimeoutMs", "TopicPartitions"];
    table(text, &KEPT, |l| l.contains(&format!("{names}-")))
}

/// The columns `kept` of the rows `keep_row` takes of a table the tool printed, as
/// `Column=value` cells, the rows sorted.
fn table(text: &str, kept: &[&str], keep_row: impl Fn(&str) -> bool) -> Vec<Vec<String>> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    lines
        .filter(|l| keep_row(l))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            header
                .iter()
                .zip(cells)
                .filter(|(h, _)| kept.contains(h))
                .map(|(h, c)| format!("{h}={c}"))
                .collect()
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn kafka_transactions_tool_describes_and_lists_as_on_kafka() {
    const TOOL: &str = "org.apache.kafka.tools.TransactionsCommand";
    let kafka = apache_kafka::shared();
    let guise = TestServer::start();
    let names = format!("tool-txn-{}", std::process::id());
    let script = |bootstrap: &str| {
        let topic = format!("{names}-t");
        admin(bootstrap, json!([{"op": "create", "topics": [{"name": topic, "partitions": 1}]}]));
        // One id with a committed transaction, one left open by a producer that went away.
        clients(&["txn", bootstrap, &topic, &format!("{names}-done"), "send:2,commit"]);
        // (A long timeout: neither broker may abort it while the tools run.)
        clients(&[
            "txn",
            bootstrap,
            &topic,
            &format!("{names}-open"),
            "send:2,leave",
            "transaction.timeout.ms=600000",
        ]);
        let run = |args: &[&str]| {
            let (ok, out) =
                guise_tests::java::tool(TOOL, &[&["--bootstrap-server", bootstrap][..], args].concat());
            json!({"ok": ok, "rows": transactions_table(&out, &names)})
        };
        // Each producer's epoch, last sequence and open transaction's first offset (producer
        // ids, timestamps and the coordinator epoch Guise does not keep are left out).
        let (ok, out) = guise_tests::java::tool(
            TOOL,
            &["--bootstrap-server", bootstrap, "describe-producers", "--topic", &topic, "--partition", "0"],
        );
        let kept = ["ProducerEpoch", "LastSequence", "CurrentTransactionStartOffset"];
        json!({
            "describe open": run(&["describe", "--transactional-id", &format!("{names}-open")]),
            "describe done": run(&["describe", "--transactional-id", &format!("{names}-done")]),
            "list": run(&["list"]),
            // KIP-1152: ListTransactions v2's pattern, matched against the whole id.
            "list pattern": run(&["list", "--transactional-id-pattern", &format!("{names}-d.*")]),
            "list prefix only": run(&["list", "--transactional-id-pattern", &format!("{names}-d")]),
            "list bad pattern": run(&["list", "--transactional-id-pattern", "tool-(("]),
            "describe-producers": {"ok": ok, "rows": table(&out, &kept, |_| true)},
        })
    };
    let on_kafka = script(&kafka.bootstrap());
    let on_guise = script(&guise.bootstrap());
    assert_eq!(on_kafka["describe open"]["ok"], true, "{on_kafka:#}");
    let open_from = json!(["ProducerEpoch=0", "LastSequence=1", "CurrentTransactionStartOffset=3"]);
    assert!(
        on_kafka["describe-producers"]["rows"].as_array().unwrap().contains(&open_from),
        "the open transaction starts after the first one's two records and marker: {on_kafka:#}"
    );
    let rows = |key: &str| on_kafka[key]["rows"].as_array().unwrap().len();
    assert_eq!((rows("list"), rows("list pattern"), rows("list prefix only")), (2, 1, 0), "{on_kafka:#}");
    assert_eq!(on_kafka["list bad pattern"]["ok"], false, "{on_kafka:#}");
    assert_eq!(on_guise, on_kafka, "Guise (left) and Apache Kafka (right) differ");
}

/// One transactional batch of `value` from producer `pid` at `epoch`, first sequence `seq`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, value: &str) -> bytes::Bytes {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: seq,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).expect("encodes");
    buf.freeze()
}

/// A Produce may name a transactional id its principal may WRITE and still carry the batches of
/// another id's producer: the host checks WRITE on the id that producer belongs to too (Kafka's
/// broker has the coordinator check the mapping, KIP-890), so such batches cannot be slipped
/// into a transaction the principal may not write.
#[test]
fn a_produce_cannot_write_into_the_transaction_of_an_id_it_may_not_write() {
    use guise_tests::wire;
    use kafka_protocol::messages::create_acls_request::AclCreation;
    use kafka_protocol::messages::describe_transactions_request::DescribeTransactionsRequest;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, CreateAclsRequest, CreateAclsResponse, DescribeTransactionsResponse, ProduceRequest,
        ProduceResponse, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    let server = TestServer::start_with(|c| {
        c.authorizer_enabled = true;
        c.allow_everyone_if_no_acl_found = true;
    });
    let addr = server.kafka_addr;
    let topic = "txn-acl";
    let victim = rd_txn::producer(&server, "victim-tx", &[]);
    victim.init_transactions(TIMEOUT).expect("init_transactions");
    victim.begin_transaction().unwrap();
    rd_txn::send(&victim, topic, 0, &["v"]);
    let described: DescribeTransactionsResponse = wire::call(
        addr,
        ApiKey::DescribeTransactions,
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("victim-tx"))]),
    )
    .expect("DescribeTransactions");
    let state = &described.transaction_states[0];
    let (pid, epoch) = (state.producer_id.0, state.producer_epoch);
    let produce = |seq: i32| -> i16 {
        let req = ProduceRequest::default()
            .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("attacker-tx"))))
            .with_acks(-1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(txn_batch(pid, epoch, seq, "slipped"))),
                    ]),
            ]);
        let resp: ProduceResponse = wire::call(addr, ApiKey::Produce, 9, &req).expect("Produce");
        resp.responses[0].partition_responses[0].error_code
    };
    // Everyone may write every id: the batch joins the victim's transaction (Kafka would answer
    // INVALID_PRODUCER_ID_MAPPING: the ids differ; see docs/kafka-protocol.md).
    assert_eq!(produce(1), 0);
    let deny = AclCreation::default()
        .with_resource_type(5) // TRANSACTIONAL_ID
        .with_resource_name(StrBytes::from_static_str("victim-tx"))
        .with_resource_pattern_type(3) // LITERAL
        .with_principal(StrBytes::from_static_str("User:ANONYMOUS"))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(4) // WRITE
        .with_permission_type(2); // DENY
    let created: CreateAclsResponse =
        wire::call(addr, ApiKey::CreateAcls, 2, &CreateAclsRequest::default().with_creations(vec![deny]))
            .expect("CreateAcls");
    assert_eq!(created.results[0].error_code, 0, "{created:?}");
    assert_eq!(produce(2), 53, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED");
}

/// Transaction version 2 on the wire, the same requests to Guise and to Apache Kafka: EndTxn v5
/// from each state (Kafka's table: an abort with nothing open, retries with the previous epoch,
/// fenced and unknown producers) and Produce v12 adding its partition to the transaction, or
/// fenced when its epoch is old. Each answer's code, and the epoch it hands out relative to the
/// first one.
#[test]
fn end_txn_v5_and_produce_v12_answer_as_on_kafka() {
    use guise_tests::wire;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{
        ApiKey, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest, FindCoordinatorResponse,
        InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
        ProduceRequest, ProduceResponse, ProducerId, TopicName, TransactionalId,
    };
    use kafka_protocol::protocol::StrBytes;
    use std::net::SocketAddr;

    /// Retry what a client retries: the coordinator loading or busy, the partition not ready.
    fn retried<T>(what: &str, mut call: impl FnMut() -> (i16, T)) -> (i16, T) {
        let started = std::time::Instant::now();
        loop {
            let (code, out) = call();
            if !matches!(code, 14 | 15 | 16 | 19 | 51) || started.elapsed() > TIMEOUT {
                return (code, out);
            }
            eprintln!("{what}: error {code}, retrying");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn script(bootstrap: &str, names: &str) -> Vec<Value> {
        let addr: SocketAddr = bootstrap.parse().expect("a socket address");
        let topic = format!("{names}-tv2");
        let created =
            admin(bootstrap, json!([{"op": "create", "topics": [{"name": topic, "partitions": 1}]}]));
        assert_eq!(created[0]["ok"][&topic], "ok", "{created:?}");
        let id = || TransactionalId(StrBytes::from_string(format!("{names}-tv2-tx")));
        // As a client does first (on Kafka this creates the transaction log).
        let (code, ()) = retried("FindCoordinator", || {
            let r: FindCoordinatorResponse = wire::call(
                addr,
                ApiKey::FindCoordinator,
                4,
                &FindCoordinatorRequest::default()
                    .with_key_type(1)
                    .with_coordinator_keys(vec![StrBytes::from_string(format!("{names}-tv2-tx"))]),
            )
            .expect("FindCoordinator");
            (r.coordinators.first().map_or(-1, |c| c.error_code), ())
        });
        assert_eq!(code, 0, "FindCoordinator");
        let (code, (pid, e0)) = retried("InitProducerId", || {
            let r: InitProducerIdResponse = wire::call(
                addr,
                ApiKey::InitProducerId,
                5,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(id()))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .expect("InitProducerId");
            (r.error_code, (r.producer_id.0, r.producer_epoch))
        });
        assert_eq!(code, 0, "InitProducerId");
        let mut rows = Vec::new();
        let mut end = |step: &str, pid: i64, epoch: i16, commit: bool| {
            let (code, (got_pid, got_epoch)) = retried(step, || {
                let r: EndTxnResponse = wire::call(
                    addr,
                    ApiKey::EndTxn,
                    5,
                    &EndTxnRequest::default()
                        .with_transactional_id(id())
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(epoch)
                        .with_committed(commit),
                )
                .expect("EndTxn");
                (r.error_code, (r.producer_id.0, r.producer_epoch))
            });
            let epoch = (got_pid >= 0).then(|| json!([got_pid == pid, got_epoch - e0]));
            rows.push(json!([step, code, epoch]));
        };
        let produce = |epoch: i16, seq: i32| -> i16 {
            retried("Produce", || {
                let req = ProduceRequest::default()
                    .with_transactional_id(Some(id()))
                    .with_acks(-1)
                    .with_timeout_ms(10_000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic.clone())))
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(0)
                                    .with_records(Some(txn_batch(pid, epoch, seq, "v"))),
                            ]),
                    ]);
                let r: ProduceResponse = wire::call(addr, ApiKey::Produce, 12, &req).expect("Produce");
                (r.responses[0].partition_responses[0].error_code, ())
            })
            .0
        };
        end("commit with nothing open", pid, e0, true);
        end("abort with nothing open", pid, e0, false);
        end("that abort retried", pid, e0, false);
        end("that abort retried as a commit", pid, e0, true);
        end("commit at the new epoch with nothing open", pid, e0 + 1, true);
        let added = produce(e0 + 1, 0);
        end("commit after a produce added the partition", pid, e0 + 1, true);
        // Kafka writes markers after it answers: wait until the partition is stable.
        let stable = || {
            let offsets = |isolation: i8| -> i64 {
                let r: ListOffsetsResponse = wire::call(
                    addr,
                    ApiKey::ListOffsets,
                    5,
                    &ListOffsetsRequest::default()
                        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                        .with_isolation_level(isolation)
                        .with_topics(vec![
                            ListOffsetsTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic.clone())))
                                .with_partitions(vec![
                                    ListOffsetsPartition::default()
                                        .with_partition_index(0)
                                        .with_timestamp(-1),
                                ]),
                        ]),
                )
                .expect("ListOffsets");
                r.topics[0].partitions[0].offset
            };
            offsets(1) == offsets(0)
        };
        let started = std::time::Instant::now();
        while !stable() {
            assert!(started.elapsed() < TIMEOUT, "the commit's marker never came");
            std::thread::sleep(Duration::from_millis(100));
        }
        let late = produce(e0 + 1, 1);
        end("that commit retried", pid, e0 + 1, true);
        end("that commit retried as an abort", pid, e0 + 1, false);
        end("an epoch ahead of the coordinator's", pid, e0 + 9, true);
        end("another producer id", pid + 1_000_000, e0 + 2, true);
        let next = produce(e0 + 2, 0);
        end("abort after a produce at the next epoch", pid, e0 + 2, false);
        rows.push(json!(["produce at the new epoch", added]));
        rows.push(json!(["produce at an old epoch after its commit", late]));
        rows.push(json!(["produce at the next epoch", next]));
        rows
    }

    let kafka = apache_kafka::shared();
    let guise = TestServer::start();
    let names = format!("tv2-{}", std::process::id());
    let on_kafka = script(&kafka.bootstrap(), &names);
    let on_guise = script(&guise.bootstrap(), &names);
    eprintln!("on Apache Kafka: {}", Value::Array(on_kafka.clone()));
    assert!(on_kafka.contains(&json!(["abort with nothing open", 0, [true, 1]])), "{on_kafka:#?}");
    assert_eq!(on_guise, on_kafka, "Guise (left) and Apache Kafka (right) differ");
}
