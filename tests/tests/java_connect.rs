//! Kafka Connect 4.4 in distributed mode against Guise and against Apache Kafka 4.4 (differential):
//! a worker copies a file through a topic into another file with the test project's line-file
//! connectors (`tests/java/src/guise/LineFile*.java`), stops gracefully, and a new worker of the
//! same cluster goes on from the committed offsets after more lines were appended. What Connect
//! did — the copy, its offsets, its internal topics — must be the same on both brokers.

use guise_tests::connect::{Cluster, Worker};
use guise_tests::java::clients;
use guise_tests::{TestServer, apache_kafka};
use serde_json::{Value, json};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Lines in the input file for the first worker, and lines appended for the second.
const FIRST: usize = 200;
const MORE: usize = 50;
/// How long Connect may take to copy the lines (task start, rebalances, commits).
const COPY_TIMEOUT: Duration = Duration::from_secs(120);

/// Input lines `from..to`, each ended by `\n` (some non-ASCII, of varied lengths).
fn lines(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("line {i}: Grüße {}\n", "·".repeat(i % 13))).collect()
}

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map(|b| b.iter().filter(|&&c| c == b'\n').count()).unwrap_or(0)
}

fn admin(bootstrap: &str, ops: Value) -> Vec<Value> {
    match clients(&["admin", bootstrap, &ops.to_string()]) {
        Value::Array(results) => results,
        other => panic!("admin printed {other}"),
    }
}

/// The state of each connector and of each of its tasks, in order.
fn states(worker: &Worker, connectors: &[&str]) -> Vec<Value> {
    let mut out = Vec::new();
    for name in connectors {
        let status = worker.get(&format!("/connectors/{name}/status"));
        out.push(status["connector"]["state"].clone());
        out.extend(status["tasks"].as_array().into_iter().flatten().map(|t| t["state"].clone()));
    }
    out
}

/// Wait until `path` has `count` lines; panics with the connectors' status and the worker's log
/// when it does not within `COPY_TIMEOUT`.
fn wait_for_lines(worker: &Worker, path: &Path, count: usize, connectors: &[&str]) {
    let started = Instant::now();
    while line_count(path) < count {
        if started.elapsed() > COPY_TIMEOUT {
            let status: Vec<_> = connectors
                .iter()
                .map(|name| worker.request("GET", &format!("/connectors/{name}/status"), None))
                .collect();
            panic!(
                "{} has {} lines, not {count}, after {COPY_TIMEOUT:?}; connectors: {status:?}\n{}",
                path.display(),
                line_count(path),
                worker.log_tail(80)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The source offset Connect reports for the line-file source (`GET /connectors/NAME/offsets`),
/// once it reached `expected` (source offsets are committed every 500 ms), or what it was at the
/// deadline.
fn source_offset(worker: &Worker, source: &str, expected: usize) -> Value {
    let started = Instant::now();
    loop {
        let offsets = worker.get(&format!("/connectors/{source}/offsets"));
        let line = offsets["offsets"][0]["offset"]["line"].clone();
        if line == json!(expected) || started.elapsed() > COPY_TIMEOUT {
            return line;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Where the input and the output first differ, if they do.
fn difference(input: &str, output: &str) -> Value {
    let (a, b): (Vec<_>, Vec<_>) = (input.lines().collect(), output.lines().collect());
    match a.iter().zip(&b).position(|(x, y)| x != y) {
        Some(i) => json!({"line": i, "input": a[i], "output": b[i], "lines": [a.len(), b.len()]}),
        None if a.len() != b.len() || input != output => json!({"lines": [a.len(), b.len()]}),
        None => Value::Null,
    }
}

/// The scenario on the broker at `bootstrap`, with names unique to this run and broker; returns
/// what was observed, with no names in it.
fn copy_through_connect(broker: &str, bootstrap: &str) -> Value {
    let names = format!("connect-{broker}-{}", std::process::id());
    let cluster = Cluster::new(bootstrap, &format!("{names}-cluster"));
    let topic = format!("{names}-lines");
    let (source, sink) = (format!("{names}-source"), format!("{names}-sink"));
    let files = tempfile::tempdir().expect("a directory for the files");
    let (input, output) = (files.path().join("input.txt"), files.path().join("output.txt"));
    std::fs::write(&input, lines(0, FIRST)).expect("writing the input");
    let clock = Instant::now();

    let worker = Worker::start(&cluster);
    let started_first = clock.elapsed();
    worker.put_connector(
        &source,
        &json!({
            "connector.class": "guise.LineFileSource",
            "tasks.max": "1",
            "file": input,
            "topic": topic,
            "topic.creation.default.partitions": "1",
            "topic.creation.default.replication.factor": "1",
        }),
    );
    worker.put_connector(
        &sink,
        &json!({"connector.class": "guise.LineFileSink", "tasks.max": "1", "topics": topic, "file": output}),
    );
    wait_for_lines(&worker, &output, FIRST, &[&source, &sink]);
    let copied_first = clock.elapsed();
    let first_states = states(&worker, &[&source, &sink]);
    let first_exit = worker.stop();
    let stopped_first = clock.elapsed();
    let sink_group = format!("connect-{sink}");
    let committed = || {
        admin(bootstrap, json!([{"op": "groupOffsets", "group": sink_group}]))[0]["ok"][format!("{topic}-0")]
            .clone()
    };
    let sink_offset_after_first = committed();

    let mut file = std::fs::OpenOptions::new().append(true).open(&input).expect("opening the input");
    file.write_all(lines(FIRST, FIRST + MORE).as_bytes()).expect("appending to the input");
    drop(file);
    // The connectors are in the config topic: the new worker runs them without being told.
    let worker = Worker::start(&cluster);
    let started_second = clock.elapsed();
    wait_for_lines(&worker, &output, FIRST + MORE, &[&source, &sink]);
    let copied_second = clock.elapsed();
    let source_offset = source_offset(&worker, &source, FIRST + MORE);
    let second_states = states(&worker, &[&source, &sink]);
    let second_exit = worker.stop();
    let stopped_second = clock.elapsed();
    eprintln!(
        "{broker}: worker started in {started_first:.1?}, copied {FIRST} lines at {copied_first:.1?}, \
         stopped ({first_exit}) at {stopped_first:.1?}; second worker started at {started_second:.1?}, \
         copied {MORE} more at {copied_second:.1?}, stopped ({second_exit}) at {stopped_second:.1?}"
    );

    let (input_text, output_text) = (
        std::fs::read_to_string(&input).expect("reading the input"),
        std::fs::read_to_string(&output).expect("reading the output"),
    );
    let internal = [cluster.config_topic(), cluster.offset_topic(), cluster.status_topic()];
    let mut ops =
        vec![json!({"op": "describeTopics", "names": [internal[0], internal[1], internal[2], topic]})];
    ops.extend(internal.iter().chain([&topic]).map(|t| json!({"op": "describeConfigs", "topic": t})));
    let described = admin(bootstrap, Value::Array(ops));
    let topics = &described[0]["ok"];
    let topic_facts = |i: usize, name: &str| {
        json!({
            "partitions": topics[name]["partitions"].as_array().map(Vec::len),
            "cleanup.policy": described[i + 1]["ok"]["cleanup.policy"]["value"],
        })
    };
    json!({
        "output lines": line_count(&output),
        "output differs from input": difference(&input_text, &output_text),
        "states after the first run": first_states,
        "states after the second run": second_states,
        "sink offset after the first run": sink_offset_after_first,
        "sink offset at the end": committed(),
        "source offset at the end": source_offset,
        "config topic": topic_facts(0, &internal[0]),
        "offset topic": topic_facts(1, &internal[1]),
        "status topic": topic_facts(2, &internal[2]),
        "data topic": topic_facts(3, &topic),
    })
}

#[test]
fn connect_distributed_copies_a_file_and_resumes_as_on_kafka() {
    let kafka = copy_through_connect("kafka", &apache_kafka::shared().bootstrap());
    // What Connect must do on Kafka itself: every line once, in order, across the restart.
    assert_eq!(kafka["output differs from input"], Value::Null, "{kafka:#}");
    assert_eq!(kafka["output lines"], json!(FIRST + MORE), "{kafka:#}");
    assert_eq!(kafka["sink offset after the first run"], json!(FIRST), "{kafka:#}");
    assert_eq!(kafka["sink offset at the end"], json!(FIRST + MORE), "{kafka:#}");
    assert_eq!(kafka["source offset at the end"], json!(FIRST + MORE), "{kafka:#}");
    for internal in ["config topic", "offset topic", "status topic"] {
        assert_eq!(kafka[internal]["cleanup.policy"], "compact", "{kafka:#}");
    }
    // The reference broker runs with group.initial.rebalance.delay.ms=0; so does Guise here (its
    // default is Kafka's, 3 s, which would only make each group's first join slower).
    let server = TestServer::start_with(|c| c.group_initial_rebalance_delay_ms = 0);
    let guise = copy_through_connect("guise", &server.bootstrap());
    assert_eq!(guise, kafka, "Guise (left) and Apache Kafka (right) differ");
}
