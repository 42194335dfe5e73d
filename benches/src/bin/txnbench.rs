//! `txnbench`: transactions against any Kafka broker, with librdkafka.
//!
//! 1. For each transaction size in `--sizes` (records per transaction), a transactional producer
//!    (its own `transactional.id`, `linger.ms=5`) runs transactions one after another for
//!    `--secs` seconds on a 1-partition topic: begin, send N records of `--size` bytes, commit.
//!    Reported: transactions/s, records/s, MB/s, and the commit latency (commit_transaction:
//!    the flush of the last records, EndTxn and the markers) p50 / p99 / max.
//! 2. Every record written is then read back from the start by a consumer with
//!    `isolation.level=read_committed` and one with `read_uncommitted` (assigned, no group):
//!    MB/s and records/s each.
//!
//! `cargo build --release -p guise-benches --bin txnbench && target/release/txnbench --bootstrap HOST:PORT`
//! (`benches/kafka-compare.sh` runs it against Guise and Apache Kafka in one run.)

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "txnbench", about = "Transactional produce and read_committed fetch")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The topic (created with 1 partition; a fresh name per run).
    #[arg(long, default_value = "txn-bench")]
    topic: String,
    /// Records per transaction, one phase each.
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000")]
    sizes: Vec<usize>,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Seconds per phase (the last transaction started in time is finished).
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// A label for the output (guise, kafka).
    #[arg(long, default_value = "broker")]
    system: String,
    /// Also print the results as one JSON line (prefixed with `JSON `).
    #[arg(long)]
    json: bool,
}

const TIMEOUT: Duration = Duration::from_secs(60);

struct Phase {
    per_txn: usize,
    txns: u64,
    records: u64,
    secs: f64,
    commit: Histogram<u64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    create_topic(&args)?;
    let value = vec![b'x'; args.size];
    let mut phases = Vec::new();
    for &n in &args.sizes {
        phases.push(produce_phase(&args, n, &value)?);
    }
    let total: u64 = phases.iter().map(|p| p.records).sum();
    let committed = read_all(&args, "read_committed", total)?;
    let uncommitted = read_all(&args, "read_uncommitted", total)?;

    let mb = |records: u64, secs: f64| records as f64 * args.size as f64 / 1e6 / secs;
    println!("{}: transactional produce, {} B records, 1 partition, linger.ms=5", args.system, args.size);
    println!("| records/txn | txns | txn/s | records/s | MB/s | commit p50 / p99 / max ms |");
    println!("|---|---|---|---|---|---|");
    let mut json = Vec::new();
    for p in &phases {
        let ms = |q: f64| p.commit.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.2} / {:.2} / {:.2} |",
            p.per_txn,
            p.txns,
            p.txns as f64 / p.secs,
            p.records as f64 / p.secs,
            mb(p.records, p.secs),
            ms(0.5),
            ms(0.99),
            p.commit.max() as f64 / 1000.0
        );
        json.push(serde_json::json!({
            "per_txn": p.per_txn, "txns": p.txns, "txn_per_s": p.txns as f64 / p.secs,
            "records_per_s": p.records as f64 / p.secs, "mb_per_s": mb(p.records, p.secs),
            "commit_p50_ms": ms(0.5), "commit_p99_ms": ms(0.99), "commit_max_ms": p.commit.max() as f64 / 1000.0,
        }));
    }
    println!("{}: fetch of all {total} records from the start", args.system);
    for (isolation, (records, secs)) in [("read_committed", committed), ("read_uncommitted", uncommitted)] {
        println!(
            "  {isolation}: {:.0} records/s, {:.2} MB/s ({records} records)",
            records as f64 / secs,
            mb(records, secs)
        );
        json.push(serde_json::json!({
            "fetch": isolation, "records": records, "records_per_s": records as f64 / secs, "mb_per_s": mb(records, secs),
        }));
    }
    if args.json {
        println!("JSON {}", serde_json::json!({ "system": args.system, "results": json }));
    }
    Ok(())
}

fn create_topic(args: &Args) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create().context("admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let topic = NewTopic::new(&args.topic, 1, TopicReplication::Fixed(1));
    let results = rt.block_on(admin.create_topics([&topic], &AdminOptions::new()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating {t}: {e}"),
        }
    }
    Ok(())
}

fn produce_phase(args: &Args, per_txn: usize, value: &[u8]) -> Result<Phase> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("transactional.id", format!("{}-{per_txn}-{}", args.topic, std::process::id()))
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("transactional producer")?;
    producer.init_transactions(TIMEOUT).context("init_transactions")?;
    let mut commit = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let (mut txns, mut records) = (0u64, 0u64);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(args.secs) {
        producer.begin_transaction()?;
        for _ in 0..per_txn {
            let mut record = BaseRecord::<(), [u8]>::to(&args.topic).partition(0).payload(value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(1));
                    }
                    Err((e, _)) => bail!("send: {e}"),
                }
            }
        }
        let t = Instant::now();
        producer.commit_transaction(TIMEOUT).context("commit_transaction")?;
        commit.record(t.elapsed().as_micros().max(1) as u64)?;
        txns += 1;
        records += per_txn as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Phase { per_txn, txns, records, secs, commit })
}

/// Read `expect` records from the start at `isolation`: (records, seconds).
fn read_all(args: &Args, isolation: &str, expect: u64) -> Result<(u64, f64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("group.id", format!("{}-{isolation}", args.topic))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.max.bytes", "52428800")
        .create()
        .context("consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&args.topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let start = Instant::now();
    let mut n = 0u64;
    while n < expect {
        if start.elapsed() > Duration::from_secs(300) {
            bail!("{isolation}: read {n} of {expect} records in 300 s");
        }
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            if m.payload().is_some() {
                n += 1;
            }
        }
    }
    Ok((n, start.elapsed().as_secs_f64()))
}
