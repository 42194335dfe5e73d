//! Transactions (KIP-98, KIP-447) end to end: the Java client against Guise and against Apache
//! Kafka 4.4 (formatted with transaction version 1, as Guise serves) running the same script,
//! and librdkafka's transactional producer and read_committed consumer, fencing included.

use guise_tests::java::clients;
use guise_tests::{TestServer, apache_kafka};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
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
}

fn rd_producer(server: &TestServer, transactional_id: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("transactional.id", transactional_id)
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn rd_send(p: &BaseProducer, topic: &str, values: &[&str]) {
    for v in values {
        p.send(BaseRecord::to(topic).partition(0).key("k").payload(*v)).expect("queued");
    }
    p.flush(TIMEOUT).expect("flushed");
}

/// Every value in partition 0 of `topic` from the start, at `isolation`, until `expect` values
/// arrived or nothing more came for a few seconds.
fn rd_read(server: &TestServer, topic: &str, isolation: &str, expect: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "txn-e2e")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut quiet = std::time::Instant::now();
    while std::time::Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                quiet = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("consumer: {e}"),
            None if out.len() >= expect && quiet.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    out
}

#[test]
fn librdkafka_commits_aborts_and_is_fenced_by_a_second_instance() {
    let server = TestServer::start();
    let topic = "rd-txn";
    let p = rd_producer(&server, "rd-tx");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["a", "b"]);
    p.commit_transaction(TIMEOUT).expect("commit");
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["x", "y", "z"]);
    p.abort_transaction(TIMEOUT).expect("abort");
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["c"]);
    p.commit_transaction(TIMEOUT).expect("commit");

    assert_eq!(rd_read(&server, topic, "read_committed", 3), ["a", "b", "c"]);
    assert_eq!(rd_read(&server, topic, "read_uncommitted", 6), ["a", "b", "x", "y", "z", "c"]);

    // A transaction left open is aborted when a second instance with the same id initializes;
    // the first is fenced: its commit fails with a fatal error.
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["zombie"]);
    let second = rd_producer(&server, "rd-tx");
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
    rd_send(&second, topic, &["d"]);
    second.commit_transaction(TIMEOUT).expect("the second instance commits");
    assert_eq!(rd_read(&server, topic, "read_committed", 4), ["a", "b", "c", "d"]);
}

#[test]
fn an_open_transaction_survives_a_host_restart_and_commits() {
    let server = TestServer::start();
    let topic = "rd-txn-restart";
    {
        let p = rd_producer(&server, "restart-tx");
        p.init_transactions(TIMEOUT).expect("init_transactions");
        p.begin_transaction().unwrap();
        rd_send(&p, topic, &["before"]);
        p.commit_transaction(TIMEOUT).expect("commit");
    }
    let p = rd_producer(&server, "restart-tx");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["across"]);
    let server = server.restart();
    p.commit_transaction(TIMEOUT).expect("commit after the restart");
    assert_eq!(rd_read(&server, topic, "read_committed", 2), ["before", "across"]);
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
    let p = rd_producer(&server, "pulsar-tx");
    p.init_transactions(TIMEOUT).expect("init_transactions");
    for (values, commit) in [(&["a", "b"][..], true), (&["x"][..], false)] {
        p.begin_transaction().unwrap();
        rd_send(&p, topic, values);
        if commit { p.commit_transaction(TIMEOUT).unwrap() } else { p.abort_transaction(TIMEOUT).unwrap() }
    }
    p.begin_transaction().unwrap();
    rd_send(&p, topic, &["open"]);

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
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    lines
        .filter(|l| l.contains(&format!("{names}-")))
        .map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            header
                .iter()
                .zip(cells)
                .filter(|(h, _)| KEPT.contains(h))
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
        json!({
            "describe open": run(&["describe", "--transactional-id", &format!("{names}-open")]),
            "describe done": run(&["describe", "--transactional-id", &format!("{names}-done")]),
            "list": run(&["list"]),
        })
    };
    let on_kafka = script(&kafka.bootstrap());
    let on_guise = script(&guise.bootstrap());
    assert_eq!(on_kafka["describe open"]["ok"], true, "{on_kafka:#}");
    assert_eq!(on_guise, on_kafka, "Guise (left) and Apache Kafka (right) differ");
}
