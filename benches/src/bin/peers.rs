//! Starts Apache Pulsar 4.0 standalone and Apache Kafka 4.4 from Maven artifacts, as the tests
//! do (`guise_tests::apache_pulsar`, `guise_tests::apache_kafka`), prints where they serve and
//! their JVMs' pids, and keeps them until it is killed (they halt with it). For
//! `benches/apache-pulsar.sh`.
//!
//! Prints `PULSAR <service url> <admin url> <pid>` then `KAFKA <bootstrap> <pid>`.

use guise_tests::apache_kafka;
use guise_tests::apache_pulsar::ApachePulsar;
use std::io::Write;

fn main() {
    let pulsar = ApachePulsar::start_owned(&[]);
    println!("PULSAR {} {} {}", pulsar.url(), pulsar.web_url(), pulsar.pid().unwrap_or(0));
    std::io::stdout().flush().ok();
    // Owned by this process (not run by cargo): it halts when this process exits.
    let kafka = apache_kafka::shared();
    let ready = std::fs::read_to_string(kafka.dir.join("ready")).unwrap_or_default();
    let pid = ready.split_whitespace().nth(1).unwrap_or("0").to_string();
    println!("KAFKA {} {pid}", kafka.bootstrap());
    std::io::stdout().flush().ok();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
