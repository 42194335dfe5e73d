//! librdkafka's transactional producer and read_committed consumer, as the transaction tests
//! drive them (shared by `transactions.rs` and `pulsar_backend.rs`).

use guise_tests::TestServer;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

/// A producer with `transactional_id` and the settings `extra`.
pub fn producer(server: &TestServer, transactional_id: &str, extra: &[(&str, &str)]) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", server.bootstrap())
        .set("transactional.id", transactional_id)
        .set("message.timeout.ms", "30000");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// Send `values` (key "k") to `partition` of `topic` and wait until they are acknowledged.
pub fn send(p: &BaseProducer, topic: &str, partition: i32, values: &[&str]) {
    for v in values {
        p.send(BaseRecord::to(topic).partition(partition).key("k").payload(*v)).expect("queued");
    }
    p.flush(TIMEOUT).expect("flushed");
}

/// Initialize `p`, then in partition 0 of `topic`: commit "a", "b"; abort "x", "y", "z";
/// commit "c".
pub fn commit_abort_commit(p: &BaseProducer, topic: &str) {
    p.init_transactions(TIMEOUT).expect("init_transactions");
    p.begin_transaction().unwrap();
    send(p, topic, 0, &["a", "b"]);
    p.commit_transaction(TIMEOUT).expect("commit");
    p.begin_transaction().unwrap();
    send(p, topic, 0, &["x", "y", "z"]);
    p.abort_transaction(TIMEOUT).expect("abort");
    p.begin_transaction().unwrap();
    send(p, topic, 0, &["c"]);
    p.commit_transaction(TIMEOUT).expect("commit");
}

/// Every value in `partition` of `topic` from the start, at `isolation`, until `expect` values
/// arrived and nothing more came for a few seconds.
pub fn read(server: &TestServer, topic: &str, partition: i32, isolation: &str, expect: usize) -> Vec<String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", server.bootstrap())
        .set("group.id", "txn-e2e")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning).unwrap();
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut quiet = Instant::now();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
                quiet = Instant::now();
            }
            Some(Err(e)) => panic!("consumer: {e}"),
            None if out.len() >= expect && quiet.elapsed() > Duration::from_secs(2) => break,
            None => {}
        }
    }
    out
}
