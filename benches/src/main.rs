//! `loadgen`: a Kafka load generator built on librdkafka (the `rdkafka` crate), for comparing
//! Guise with other Kafka-compatible brokers on one machine.
//!
//! Phases, each bounded and each failing loudly:
//! 1. create the topic `<topic>` (`--partitions`) and `<topic>-lat` (1 partition) with the admin
//!    client (TOPIC_ALREADY_EXISTS is fine: brokers without auto-creation need this);
//! 2. produce throughput: `--records` records of `--size` fixed pseudo-random bytes, many in
//!    flight (linger.ms=5, batch.size=1000000), every delivery report checked;
//! 3. produce latency: `--latency-records` sequential sends (linger.ms=0) to `<topic>-lat`, each
//!    awaited before the next, round trips in an HDR histogram;
//! 4. fetch throughput: a consumer assigned (no group subscription) to every partition from where
//!    phase 2 started writing, reading until every record of phase 2 was seen, with per-partition
//!    counts, contiguous offsets and value sizes checked.
//!
//! MB is 10^6 bytes and counts record values only (not keys, headers or batch framing).

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::Parser;
use guise_benches::deliveries::Deliveries;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "loadgen",
    about = "Kafka load generator: produce throughput, produce latency, fetch throughput"
)]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Topic for the throughput phases; the latency phase uses `<topic>-lat`.
    #[arg(long, default_value = "bench")]
    topic: String,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Records to produce (and then fetch) in the throughput phases.
    #[arg(long, default_value_t = 500_000)]
    records: u64,
    /// Partitions of the topic (records are spread round-robin over them).
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Producer acks: 0, 1 or all (-1).
    #[arg(long, default_value = "1")]
    acks: String,
    /// Sequential sends measured in the latency phase (after a short unmeasured warm-up).
    #[arg(long, default_value_t = 2000)]
    latency_records: u64,
    /// Producer compression codec: none, gzip, snappy, lz4, zstd. Every record carries the same
    /// value, so batches compress extremely well: compressed runs measure the codecs and framing,
    /// not realistic data.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Also print the results as one JSON line (prefixed with `JSON `).
    #[arg(long)]
    json: bool,
    /// Global timeout in seconds: past it, loadgen exits with status 2.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Skip the latency phase.
    #[arg(long)]
    no_latency: bool,
    /// PID of the broker, when it runs on this machine: its CPU time per phase is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A topic config (KEY=VALUE) for the topics loadgen creates, e.g. guise.entry.format=pulsar;
    /// repeatable.
    #[arg(long = "topic-config", value_parser = parse_kv)]
    topic_configs: Vec<(String, String)>,
    /// A librdkafka setting (KEY=VALUE) for every client loadgen makes, e.g.
    /// security.protocol=ssl, ssl.ca.location=ca.crt; repeatable.
    #[arg(long = "client-config", value_parser = parse_kv)]
    client_configs: Vec<(String, String)>,
}

/// A librdkafka config for `args.bootstrap` with every `--client-config` setting.
fn client_config(args: &Args) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &args.bootstrap);
    for (k, v) in &args.client_configs {
        cfg.set(k, v);
    }
    cfg
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s}: expected KEY=VALUE"))
}

/// CPU time (user + system) of a process from /proc/PID/stat, in seconds (Linux, USER_HZ = 100).
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds spent by loadgen itself and by the server (if known) over one phase.
#[derive(Clone, Copy)]
struct CpuMeter {
    client: Option<f64>,
    server: Option<f64>,
}

impl CpuMeter {
    fn start(args: &Args) -> Self {
        CpuMeter { client: cpu_secs("self"), server: args.server_pid.and_then(|p| cpu_secs(&p.to_string())) }
    }
    /// (client, server) CPU seconds since `start`.
    fn stop(self, args: &Args) -> (Option<f64>, Option<f64>) {
        let now = CpuMeter::start(args);
        (self.client.zip(now.client).map(|(a, b)| b - a), self.server.zip(now.server).map(|(a, b)| b - a))
    }
}

fn fmt_cpu((client, server): (Option<f64>, Option<f64>)) -> String {
    let f = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.2}s"));
    format!("CPU: loadgen {}, server {}", f(client), f(server))
}

fn json_num(v: Option<f64>) -> String {
    v.map_or("null".to_string(), |v| format!("{v:.2}"))
}

/// Timeout of single client operations (admin calls, metadata, one latency send).
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Unmeasured sends before the latency histogram starts (connection set-up, metadata).
const LATENCY_WARMUP: u64 = 20;

fn main() {
    let args = Args::parse();
    // Everything is bounded: a watchdog ends the process whatever phase is stuck.
    let limit = Duration::from_secs(args.timeout_secs);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("loadgen: FAILED: global timeout of {}s reached (a phase hung); exiting", limit.as_secs());
        std::process::exit(2);
    });
    if let Err(e) = run(&args) {
        eprintln!("loadgen: FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<()> {
    ensure!(args.partitions >= 1, "--partitions must be at least 1");
    ensure!(args.records >= 1, "--records must be at least 1");
    let acks = match args.acks.as_str() {
        "all" | "-1" => "-1",
        "0" => "0",
        "1" => "1",
        other => bail!("--acks must be 0, 1 or all, not {other:?}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let lat_topic = format!("{}-lat", args.topic);
    println!(
        "loadgen: bootstrap={} topic={} partitions={} size={}B records={} acks={} compression={}",
        args.bootstrap, args.topic, args.partitions, args.size, args.records, acks, args.compression
    );

    // ---- 1. topics
    let t = Instant::now();
    print_flush(&format!(
        "[1/4] create topics {} ({} partitions) and {lat_topic} (1) ... ",
        args.topic, args.partitions
    ));
    rt.block_on(create_topics(args, &[(&args.topic, args.partitions), (&lat_topic, 1)]))?;
    let consumer = consumer(args)?;
    for (topic, partitions) in [(args.topic.as_str(), args.partitions), (lat_topic.as_str(), 1)] {
        wait_for_topic(&consumer, topic, partitions)?;
    }
    // The high watermarks before producing: where this run's records should start (0 for a new
    // topic). The delivery reports' offsets take precedence; these are the fallback for acks=0.
    let mut start_offsets = Vec::new();
    for p in 0..args.partitions {
        let (_, high) = consumer
            .fetch_watermarks(&args.topic, p, OP_TIMEOUT)
            .with_context(|| format!("watermarks of {}/{p}", args.topic))?;
        start_offsets.push(high);
    }
    println!("ok in {:.2}s (start offsets {start_offsets:?})", t.elapsed().as_secs_f64());

    let payload = guise_benches::payload(args.size);

    // ---- 2. produce throughput
    print_flush(&format!("[2/4] produce throughput: {} records of {} B ... ", args.records, args.size));
    let cpu = CpuMeter::start(args);
    let (produce, first_offsets) = produce_throughput(args, acks, &payload)?;
    let produce_cpu = cpu.stop(args);
    let produce_bytes = args.records as f64 * args.size as f64;
    let produce_rps = args.records as f64 / produce.as_secs_f64();
    let produce_mbps = produce_bytes / produce.as_secs_f64() / 1e6;
    println!(
        "{:.2}s: {produce_rps:.0} records/s, {produce_mbps:.1} MB/s ({})",
        produce.as_secs_f64(),
        fmt_cpu(produce_cpu)
    );
    for (p, (before, first)) in start_offsets.iter_mut().zip(&first_offsets).enumerate() {
        if let Some(first) = *first {
            if first != *before {
                println!(
                    "    WARNING: partition {p}: first delivered offset {first}, but the high watermark before producing was {before}"
                );
            }
            *before = first;
        }
    }

    // ---- 3. produce latency
    let latency = if args.no_latency || args.latency_records == 0 {
        println!("[3/4] produce latency: skipped");
        None
    } else {
        print_flush(&format!(
            "[3/4] produce latency: {} sequential sends of {} B to {lat_topic} (after {LATENCY_WARMUP} warm-up) ... ",
            args.latency_records, args.size
        ));
        let h = rt.block_on(produce_latency(args, acks, &lat_topic, &payload))?;
        let (p50, p99, max) = (h.value_at_quantile(0.50), h.value_at_quantile(0.99), h.max());
        println!("p50 {p50} µs, p99 {p99} µs, max {max} µs (mean {:.0} µs)", h.mean());
        Some((p50, p99, max))
    };

    // ---- 4. fetch throughput
    print_flush(&format!(
        "[4/4] fetch throughput: {} records from {} partition(s) ... ",
        args.records, args.partitions
    ));
    let cpu = CpuMeter::start(args);
    let (fetch, watermarks_ok) = fetch_throughput(args, &consumer, &start_offsets)?;
    let fetch_cpu = cpu.stop(args);
    let fetch_rps = args.records as f64 / fetch.as_secs_f64();
    let fetch_mbps = produce_bytes / fetch.as_secs_f64() / 1e6;
    println!(
        "{:.2}s: {fetch_rps:.0} records/s, {fetch_mbps:.1} MB/s ({})",
        fetch.as_secs_f64(),
        fmt_cpu(fetch_cpu)
    );

    println!(
        "RESULT size={}B records={} produce={produce_mbps:.1}MB/s,{produce_rps:.0}rec/s latency_us(p50/p99/max)={} fetch={fetch_mbps:.1}MB/s,{fetch_rps:.0}rec/s",
        args.size,
        args.records,
        latency.map_or("-".to_string(), |(a, b, c)| format!("{a}/{b}/{c}")),
    );
    if args.json {
        let (p50, p99, max) = match latency {
            Some((a, b, c)) => (a.to_string(), b.to_string(), c.to_string()),
            None => ("null".into(), "null".into(), "null".into()),
        };
        println!(
            "JSON {{\"bootstrap\":\"{}\",\"topic\":\"{}\",\"size\":{},\"records\":{},\"partitions\":{},\"acks\":\"{acks}\",\"compression\":\"{}\",\
\"produce_secs\":{:.4},\"produce_rps\":{produce_rps:.1},\"produce_mbps\":{produce_mbps:.2},\
\"latency_records\":{},\"latency_p50_us\":{p50},\"latency_p99_us\":{p99},\"latency_max_us\":{max},\
\"fetch_secs\":{:.4},\"fetch_rps\":{fetch_rps:.1},\"fetch_mbps\":{fetch_mbps:.2},\"watermarks_ok\":{watermarks_ok},\
\"produce_cpu_client\":{},\"produce_cpu_server\":{},\"fetch_cpu_client\":{},\"fetch_cpu_server\":{}}}",
            args.bootstrap,
            args.topic,
            args.size,
            args.records,
            args.partitions,
            args.compression,
            produce.as_secs_f64(),
            if latency.is_some() { args.latency_records } else { 0 },
            fetch.as_secs_f64(),
            json_num(produce_cpu.0),
            json_num(produce_cpu.1),
            json_num(fetch_cpu.0),
            json_num(fetch_cpu.1),
        );
    }
    Ok(())
}

fn print_flush(s: &str) {
    use std::io::Write as _;
    print!("{s}");
    let _ = std::io::stdout().flush();
}

async fn create_topics(args: &Args, topics: &[(&String, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(args).create().context("admin client")?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, parts)| {
            args.topic_configs
                .iter()
                .fold(NewTopic::new(name, *parts, TopicReplication::Fixed(1)), |t, (k, v)| t.set(k, v))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT)).request_timeout(Some(OP_TIMEOUT));
    let results = tokio::time::timeout(OP_TIMEOUT + Duration::from_secs(5), admin.create_topics(&new, &opts))
        .await
        .context("CreateTopics timed out")?
        .context("CreateTopics")?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// Waits until the metadata lists `topic` with at least `partitions` partitions, all without error.
fn wait_for_topic(consumer: &BaseConsumer, topic: &str, partitions: i32) -> Result<()> {
    let deadline = Instant::now() + OP_TIMEOUT;
    loop {
        let md = consumer
            .fetch_metadata(Some(topic), OP_TIMEOUT)
            .with_context(|| format!("metadata of {topic}"))?;
        let last = match md.topics().iter().find(|t| t.name() == topic) {
            None => "topic not listed".to_string(),
            Some(t) if t.error().is_some() => format!("topic error {:?}", t.error()),
            Some(t) if (t.partitions().len() as i32) < partitions => {
                format!("{} of {partitions} partitions", t.partitions().len())
            }
            Some(t) if t.partitions().iter().any(|p| p.error().is_some()) => {
                "a partition has an error".into()
            }
            Some(t) => {
                if t.partitions().len() as i32 > partitions {
                    println!(
                        "\n    note: {topic} already exists with {} partitions; using partitions 0..{partitions}",
                        t.partitions().len()
                    );
                }
                return Ok(());
            }
        };
        if Instant::now() >= deadline {
            bail!("topic {topic} not ready after {OP_TIMEOUT:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn producer_config(args: &Args, acks: &str, linger_ms: &str) -> ClientConfig {
    let mut cfg = client_config(args);
    cfg.set("acks", acks)
        .set("linger.ms", linger_ms)
        .set("compression.codec", &args.compression)
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000");
    cfg
}

/// Returns the elapsed time and, per partition, the first offset the broker assigned to this
/// run's records (None when the delivery reports carry no offsets, as with acks=0).
fn produce_throughput(args: &Args, acks: &str, payload: &[u8]) -> Result<(Duration, Vec<Option<i64>>)> {
    let mut cfg = producer_config(args, acks, "5");
    cfg.set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151");
    let producer: BaseProducer<Deliveries> =
        cfg.create_with_context(Deliveries::new(args.partitions)).context("producer")?;
    let check_failed = |p: &BaseProducer<Deliveries>| p.context().check();
    let start = Instant::now();
    for i in 0..args.records {
        let key = i.to_be_bytes();
        let partition = (i % args.partitions as u64) as i32;
        let record = BaseRecord::to(&args.topic).key(&key[..]).payload(payload).partition(partition);
        Deliveries::send(&producer, record, i)?;
    }
    // Wait for every delivery report (flush serves the callbacks).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match producer.flush(Duration::from_millis(500)) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                check_failed(&producer)?
            }
            Err(e) => {
                let ctx = producer.context();
                return Err(anyhow!(e).context(format!(
                    "flushing: {} delivered, {} failed, {} still in flight",
                    ctx.ok.load(Ordering::Relaxed),
                    ctx.failed.load(Ordering::Relaxed),
                    producer.in_flight_count()
                )));
            }
        }
    }
    producer.poll(Duration::ZERO);
    let elapsed = start.elapsed();
    check_failed(&producer)?;
    let ok = producer.context().ok.load(Ordering::Relaxed);
    ensure!(ok == args.records, "only {ok} of {} deliveries reported success", args.records);
    let first = producer
        .context()
        .first_offset
        .iter()
        .map(|o| Some(o.load(Ordering::Relaxed)).filter(|o| *o != i64::MAX))
        .collect();
    Ok((elapsed, first))
}

async fn produce_latency(args: &Args, acks: &str, topic: &str, payload: &[u8]) -> Result<Histogram<u64>> {
    let producer: FutureProducer = producer_config(args, acks, "0").create().context("latency producer")?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for i in 0..LATENCY_WARMUP + args.latency_records {
        let key = i.to_be_bytes();
        let t = Instant::now();
        producer
            .send(FutureRecord::to(topic).key(&key[..]).payload(payload).partition(0), OP_TIMEOUT)
            .await
            .map_err(|(e, _)| anyhow!(e))
            .with_context(|| format!("latency send {i}"))?;
        if i >= LATENCY_WARMUP {
            h.record((t.elapsed().as_micros() as u64).max(1))?;
        }
    }
    Ok(h)
}

fn consumer(args: &Args) -> Result<BaseConsumer> {
    client_config(args)
        // librdkafka wants a group.id even for assign(); no group is joined (no subscribe()).
        .set("group.id", "guise-loadgen")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.max.bytes", "52428800")
        .set("max.partition.fetch.bytes", "52428800")
        .set("receive.message.max.bytes", "104857600")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "1048576")
        .set("queued.min.messages", "1000000")
        .create()
        .context("consumer")
}

/// Returns the elapsed time and whether the broker's high watermarks (ListOffsets latest) agree
/// with what was fetched (a mismatch is reported as a warning, not a failure).
fn fetch_throughput(args: &Args, consumer: &BaseConsumer, start_offsets: &[i64]) -> Result<(Duration, bool)> {
    let parts = args.partitions as usize;
    let mut expected = vec![args.records / parts as u64; parts];
    for e in expected.iter_mut().take((args.records % parts as u64) as usize) {
        *e += 1;
    }
    let mut seen = vec![0u64; parts];
    let mut tpl = TopicPartitionList::new();
    for (p, start) in start_offsets.iter().enumerate() {
        tpl.add_partition_offset(&args.topic, p as i32, Offset::Offset(*start))?;
    }
    let start = Instant::now();
    consumer.assign(&tpl).context("assign")?;
    let mut total = 0u64;
    let mut last_progress = Instant::now();
    while total < args.records {
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if last_progress.elapsed() > Duration::from_secs(30) {
                    bail!(
                        "no record for 30s: seen {seen:?} of {expected:?} per partition (start offsets {start_offsets:?})"
                    );
                }
            }
            Some(Err(e)) => bail!("consume error after {total} records: {e}"),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                let p = m.partition() as usize;
                ensure!(p < parts, "record from unexpected partition {p}");
                let want = start_offsets[p] + seen[p] as i64;
                ensure!(
                    m.offset() == want,
                    "partition {p}: offset {} where {want} was expected (offsets must be contiguous)",
                    m.offset()
                );
                let len = m.payload_len();
                ensure!(
                    len == args.size,
                    "partition {p} offset {}: value of {len} B, expected {}",
                    m.offset(),
                    args.size
                );
                seen[p] += 1;
                total += 1;
                ensure!(
                    seen[p] <= expected[p],
                    "partition {p}: more records ({}) than produced ({})",
                    seen[p],
                    expected[p]
                );
            }
        }
    }
    let elapsed = start.elapsed();
    ensure!(seen == expected, "per-partition counts {seen:?} differ from produced {expected:?}");
    let _ = consumer.unassign();
    // The broker's high watermark must be right after this run's last record.
    let mut ok = true;
    for (p, s) in start_offsets.iter().enumerate() {
        let (_, high) = consumer.fetch_watermarks(&args.topic, p as i32, OP_TIMEOUT)?;
        if high != s + expected[p] as i64 {
            ok = false;
            println!(
                "\n    WARNING: partition {p}: ListOffsets says high watermark {high}, but the fetched records end at {} (start {s} + {} records)",
                s + expected[p] as i64,
                expected[p]
            );
        }
    }
    Ok((elapsed, ok))
}
