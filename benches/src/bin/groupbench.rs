//! Consumer groups, measured against a real `guise serve` (release build) with librdkafka:
//!
//! 1. end to end, produce → consume, 1 KiB records on a 6-partition topic: a group of 3
//!    consumers (subscribe, librdkafka's auto-commit every 5 s) against 3 consumers
//!    with hand-assigned partitions and no group, in the same run: throughput, and latency from
//!    the producer's timestamp to the consumer;
//! 2. rebalance time of a group of 3: from a third member's subscribe until all 6 partitions
//!    are assigned across the three, and from one member's close until the other two own all 6.
//!
//! `cargo build --release -p guise-host -p guise-benches && target/release/groupbench`

use anyhow::{Context, Result, bail};
use clap::Parser;
use guise_benches::host::{Host, free_port};
use hdrhistogram::Histogram;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// The guise binary [default: next to this one].
    #[arg(long)]
    guise: Option<PathBuf>,
    #[arg(long, default_value_t = 300_000)]
    records: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Rebalance measurements (each: a join and a leave).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The members' heartbeat.interval.ms in the rebalance measurements (members learn of a
    /// rebalance from a heartbeat answer, as in Kafka).
    #[arg(long, default_value_t = 500)]
    heartbeat_ms: u32,
    /// Records per second for the latency runs (the throughput runs produce as fast as they can,
    /// so their latency is mostly queueing).
    #[arg(long, default_value_t = 5000)]
    latency_rate: u64,
}

const PARTITIONS: i32 = 6;

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

/// Produce `records` records of `size` bytes (the first 8 bytes: the send time in µs) to `topic`.
fn produce(bootstrap: &str, topic: &str, records: u64, size: usize, rate: u64) -> Result<()> {
    let started = Instant::now();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .create()?;
    let mut payload = vec![b'x'; size.max(8)];
    for i in 0..records {
        // Pace (rate > 0): record i is due at i / rate seconds.
        if let Some(wait) = (i * 1_000_000)
            .checked_div(rate)
            .and_then(|due_us| Duration::from_micros(due_us).checked_sub(started.elapsed()))
        {
            producer.poll(wait);
        }
        payload[..8].copy_from_slice(&now_us().to_be_bytes());
        let key = i.to_be_bytes();
        let mut record = BaseRecord::to(topic).payload(&payload[..]).key(&key[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60))?;
    Ok(())
}

/// Three consumers (in a group, or assigned two partitions each) reading `records` records.
fn consume(
    bootstrap: &str,
    topic: &str,
    records: u64,
    group: bool,
    size: usize,
    rate: u64,
) -> Result<(f64, Histogram<u64>)> {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let assigned = Arc::new(Mutex::new([0usize; 3]));
    let mut threads = Vec::new();
    for n in 0..3 {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", bootstrap)
            .set("group.id", format!("bench-{topic}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", if group { "true" } else { "false" });
        let consumer: BaseConsumer = cfg.create()?;
        if group {
            consumer.subscribe(&[topic])?;
        } else {
            let mut tpl = TopicPartitionList::new();
            for p in [2 * n, 2 * n + 1] {
                tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            }
            consumer.assign(&tpl)?;
        }
        let (done, stop, latencies, assigned) =
            (done.clone(), stop.clone(), latencies.clone(), assigned.clone());
        threads.push(std::thread::spawn(move || {
            let mut local = Histogram::<u64>::new(3).unwrap();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(tpl) = consumer.assignment() {
                    assigned.lock().unwrap()[n as usize] = tpl.count();
                }
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    if let Some(sent) = m.payload().and_then(|p| p.get(..8)) {
                        let sent = u64::from_be_bytes(sent.try_into().unwrap());
                        let _ = local.record(now_us().saturating_sub(sent));
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies.lock().unwrap().add(&local).unwrap();
        }));
    }
    // The clock starts when the partitions are assigned (a new group waits out Kafka's initial
    // rebalance delay first, 3 s by default).
    wait("the consumers' assignments", || {
        assigned.lock().unwrap().iter().sum::<usize>() == PARTITIONS as usize
    })?;
    let started = Instant::now();
    let producer = {
        let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
        std::thread::spawn(move || produce(&bootstrap, &topic, records, size, rate))
    };
    while done.load(Ordering::Relaxed) < records {
        if started.elapsed() > Duration::from_secs(600) {
            bail!("consumed only {} of {records}", done.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    producer.join().unwrap()?;
    let h = latencies.lock().unwrap().clone();
    Ok((records as f64 * size as f64 / elapsed.as_secs_f64() / 1e6, h))
}

fn create_topic(bootstrap: &str, topic: &str) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let topics = [NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))];
    for r in rt.block_on(admin.create_topics(&topics, &AdminOptions::new()))? {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

struct Member {
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

fn member(bootstrap: &str, group: &str, topic: &str, heartbeat_ms: u32) -> Result<Member> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", heartbeat_ms.to_string())
        .create()?;
    consumer.subscribe(&[topic])?;
    let assigned = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let (assigned, stop) = (assigned.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(10));
                if let Ok(tpl) = consumer.assignment() {
                    *assigned.lock().unwrap() = tpl.elements().iter().map(|e| e.partition()).collect();
                }
            }
        })
    };
    Ok(Member { assigned, stop, thread })
}

fn covered(members: &[&Member]) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(|m| m.assigned.lock().unwrap().clone()).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.into_iter().flatten().collect();
    total == PARTITIONS as usize && union.len() == PARTITIONS as usize
}

fn wait(what: &str, cond: impl Fn() -> bool) -> Result<Duration> {
    let started = Instant::now();
    while !cond() {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(started.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let exe_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let guise = args.guise.clone().unwrap_or_else(|| exe_dir.join("guise"));
    let work = tempfile::tempdir()?;
    let (kafka, admin) = (free_port(), free_port());
    let partitions = PARTITIONS.to_string();
    let env = [("GUISE_DEFAULT_PARTITIONS", partitions.as_str())];
    let (host, _) = Host::start(&guise, &work.path().join("data"), kafka, admin, &env).context("guise")?;
    let bootstrap = format!("127.0.0.1:{}", host.kafka);

    let mut rows = Vec::new();
    for (name, group) in [("3 consumers, assigned (no group)", false), ("group of 3 (subscribe)", true)] {
        for (load, records, rate) in
            [("as fast as possible", args.records, 0), ("paced", args.latency_rate * 10, args.latency_rate)]
        {
            let topic = format!("e2e-{group}-{rate}");
            create_topic(&bootstrap, &topic)?;
            let (mbps, h) = consume(&bootstrap, &topic, records, group, args.size, rate)?;
            let load = if rate > 0 { format!("{load}, {rate} records/s") } else { load.to_string() };
            rows.push((name, load, mbps, h));
        }
    }

    // Rebalances: two members stable, a third joins; then one leaves. Kafka's default initial
    // rebalance delay (3 s) applies only to a group's first rebalance, not to these.
    let mut joins = Vec::new();
    let mut leaves = Vec::new();
    for round in 0..args.rounds {
        let group = format!("rebalance-{round}");
        let a = member(&bootstrap, &group, "e2e-true-0", args.heartbeat_ms)?;
        let b = member(&bootstrap, &group, "e2e-true-0", args.heartbeat_ms)?;
        wait("two members", || covered(&[&a, &b]))?;
        let started = Instant::now();
        let c = member(&bootstrap, &group, "e2e-true-0", args.heartbeat_ms)?;
        wait("three members", || covered(&[&a, &b, &c]) && !c.assigned.lock().unwrap().is_empty())?;
        joins.push(started.elapsed());
        let started = Instant::now();
        c.stop.store(true, Ordering::Relaxed);
        c.thread.join().unwrap(); // drops the consumer: LeaveGroup
        wait("two members again", || covered(&[&a, &b]))?;
        leaves.push(started.elapsed());
        for m in [a, b] {
            m.stop.store(true, Ordering::Relaxed);
            m.thread.join().unwrap();
        }
    }
    host.stop();

    println!("\n| consumers | load | MB/s | latency p50 | p99 | max |\n|---|---|---|---|---|---|");
    for (name, load, mbps, h) in &rows {
        println!(
            "| {name} | {load} | {mbps:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
    joins.sort();
    leaves.sort();
    println!(
        "\nheartbeat.interval.ms {}: rebalance, a third member joins: median {} (all: {:?})",
        args.heartbeat_ms,
        ms(joins[joins.len() / 2]),
        joins.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    println!(
        "rebalance, one of three leaves: median {} (all: {:?})",
        ms(leaves[leaves.len() / 2]),
        leaves.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    Ok(())
}
