//! `compactbench`: the log cleaner's throughput and its effect on produce latency, against any
//! Kafka broker whose log this process can read (Guise's `tracing` output or Apache Kafka's
//! log4j output with `org.apache.kafka.storage.internals.log` at INFO).
//!
//! 1. create `<topic>` (1 partition, `cleanup.policy=compact`, `segment.bytes`, and
//!    `min.cleanable.dirty.ratio=1.0`, which holds the cleaner back: a ratio is never above 1)
//!    and `<topic>-other` (a plain topic);
//! 2. fill `<topic>` with `--mb` MB of `--size`-byte values under `--keys` distinct keys (each key
//!    overwritten mb*1e6/size/keys times) in batches of `--fill-batch-bytes`, many in flight,
//!    every delivery checked;
//! 3. baseline: `--baseline-secs` of sequential sends (linger.ms=0, acks=1, each awaited), one to
//!    `<topic>` (the partition being cleaned), one to `<topic>-other`, alternately;
//! 4. AlterConfigs sets `min.cleanable.dirty.ratio=0.5` (Kafka's default): the cleaner's next
//!    look (log.cleaner.backoff.ms) cleans the partition. The same sends go on until the broker
//!    logs the pass's report; sends inside the pass (its end as seen in the log, minus its
//!    duration) are the "during" histograms.
//!
//! The pass's bytes and time are the broker's own: Guise's `cleaned a compacted partition` line
//! (`bytes_read`, `bytes_written`, `elapsed_ms`), Kafka's `LogCleaner` stats ("MB of log
//! processed in N seconds", MiB) with the time from its "Beginning cleaning of log" line to the
//! stats when both were seen. MB is 10^6 bytes.

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use clap::{Parser, ValueEnum};
use guise_benches::deliveries::Deliveries;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum System {
    Guise,
    Kafka,
}

#[derive(Parser, Debug)]
#[command(name = "compactbench", about = "Log cleaner throughput and produce latency while it runs")]
struct Args {
    /// Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// The compacted topic (a fresh name per run); the plain one is `<topic>-other`.
    #[arg(long, default_value = "compact-bench")]
    topic: String,
    /// Which broker writes `--server-log` (how to read the cleaner's report).
    #[arg(long, value_enum)]
    system: System,
    /// The broker's log file, read from its current end for the cleaner's report.
    #[arg(long)]
    server_log: PathBuf,
    /// MB (10^6 bytes) of record values written before the clean.
    #[arg(long, default_value_t = 300)]
    mb: u64,
    /// Record value size in bytes (fill and latency sends).
    #[arg(long, default_value_t = 1000)]
    size: usize,
    /// Distinct keys: the clean keeps one record per key.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// batch.size of the fill's producer: 16384 is the Java client's default (most producers'
    /// batches); it sets how many batches the cleaner walks.
    #[arg(long, default_value_t = 16_384)]
    fill_batch_bytes: u64,
    /// segment.bytes of the compacted topic (1 MiB is the least Kafka 4 and Guise accept).
    #[arg(long, default_value_t = 1_048_576)]
    segment_bytes: u64,
    /// Seconds of latency sends before the cleaner is let go.
    #[arg(long, default_value_t = 5)]
    baseline_secs: u64,
    /// Global timeout in seconds: past it, compactbench fails.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Also print the results as one JSON line (prefixed with `JSON `).
    #[arg(long)]
    json: bool,
}

const OP_TIMEOUT: Duration = Duration::from_secs(30);

fn main() {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.timeout_secs);
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        eprintln!("compactbench: FAILED: global timeout of {timeout:?} reached");
        std::process::exit(2);
    });
    if let Err(e) = run(&args) {
        eprintln!("compactbench: FAILED: {e:#}");
        std::process::exit(1);
    }
}

fn key(i: u64) -> String {
    format!("key-{i:08}")
}

fn compact_configs(args: &Args, ratio: &str) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", "compact".to_string()),
        ("segment.bytes", args.segment_bytes.to_string()),
        ("min.cleanable.dirty.ratio", ratio.to_string()),
    ]
}

async fn create_topics(args: &Args, admin: &AdminClient<DefaultClientContext>) -> Result<()> {
    let configs = compact_configs(args, "1.0");
    let compacted = configs
        .iter()
        .fold(NewTopic::new(&args.topic, 1, TopicReplication::Fixed(1)), |t, (k, v)| t.set(k, v));
    let other_name = format!("{}-other", args.topic);
    let other = NewTopic::new(&other_name, 1, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(OP_TIMEOUT)).request_timeout(Some(OP_TIMEOUT));
    for r in admin.create_topics(&[compacted, other], &opts).await.context("CreateTopics")? {
        match r {
            Ok(_) => {}
            Err((name, code)) => bail!("creating topic {name}: {code} (use a fresh --topic per run)"),
        }
    }
    Ok(())
}

async fn release_cleaner(args: &Args, admin: &AdminClient<DefaultClientContext>) -> Result<()> {
    let configs = compact_configs(args, "0.5");
    let alter =
        configs.iter().fold(AlterConfig::new(ResourceSpecifier::Topic(&args.topic)), |a, (k, v)| a.set(k, v));
    let opts = AdminOptions::new().request_timeout(Some(OP_TIMEOUT));
    for r in admin.alter_configs([&alter], &opts).await.context("AlterConfigs")? {
        r.map_err(|(res, code)| anyhow!("AlterConfigs of {res:?}: {code}"))?;
    }
    Ok(())
}

/// Returns the fill's records and seconds.
fn fill(args: &Args, value: &[u8]) -> Result<(u64, f64)> {
    let records = args.mb * 1_000_000 / args.size as u64;
    let producer: BaseProducer<Deliveries> = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "1")
        .set("linger.ms", "5")
        .set("batch.size", args.fill_batch_bytes.to_string())
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Deliveries::new(1))
        .context("fill producer")?;
    let start = Instant::now();
    for i in 0..records {
        let k = key(i % args.keys);
        let record = BaseRecord::to(&args.topic).key(k.as_bytes()).payload(value).partition(0);
        Deliveries::send(&producer, record, i)?;
    }
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        match producer.flush(Duration::from_millis(500)) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                producer.context().check()?
            }
            Err(e) => return Err(anyhow!(e).context("flushing the fill")),
        }
    }
    producer.poll(Duration::ZERO);
    producer.context().check()?;
    let ok = producer.context().ok.load(Ordering::Relaxed);
    ensure!(ok == records, "only {ok} of {records} fill deliveries reported success");
    Ok((records, start.elapsed().as_secs_f64()))
}

/// What the broker reported about the pass.
#[derive(Debug, Default)]
struct Report {
    bytes_read: f64,
    bytes_written: Option<f64>,
    elapsed: Duration,
    /// When this process saw the report line (≈ the end of the pass).
    seen: Option<Instant>,
    text: String,
}

/// Follows the broker's log from where it was when created.
struct LogWatch {
    file: std::fs::File,
    pos: u64,
    buf: String,
    /// Kafka: when "Beginning cleaning of log <topic>-0" was seen.
    began: Option<Instant>,
}

impl LogWatch {
    fn new(path: &PathBuf) -> Result<Self> {
        let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let pos = file.seek(SeekFrom::End(0))?;
        Ok(LogWatch { file, pos, buf: String::new(), began: None })
    }

    fn poll(&mut self, args: &Args) -> Result<Option<Report>> {
        self.file.seek(SeekFrom::Start(self.pos))?;
        let mut more = Vec::new();
        self.pos += self.file.read_to_end(&mut more)? as u64;
        self.buf.push_str(&String::from_utf8_lossy(&more));
        let partition = format!("{}-0", args.topic);
        match args.system {
            System::Guise => {
                for line in self.buf.lines() {
                    if line.contains("cleaned a compacted partition") && line.contains(&partition) {
                        let field = |name: &str| -> Option<f64> {
                            let at = line.find(&format!(" {name}="))? + name.len() + 2;
                            line[at..].split(|c: char| !c.is_ascii_digit() && c != '.').next()?.parse().ok()
                        };
                        return Ok(Some(Report {
                            bytes_read: field("bytes_read").context("bytes_read in the report")?,
                            bytes_written: field("bytes_written"),
                            elapsed: Duration::from_millis(
                                field("elapsed_ms").context("elapsed_ms in the report")? as u64,
                            ),
                            seen: Some(Instant::now()),
                            text: line.to_string(),
                        }));
                    }
                }
            }
            System::Kafka => {
                if self.began.is_none()
                    && self.buf.contains(&format!("Beginning cleaning of log {partition}"))
                {
                    self.began = Some(Instant::now());
                }
                let marker = format!("cleaned log {partition} ");
                if let Some(at) = self.buf.find(&marker) {
                    let rest = &self.buf[at..];
                    // The stats are one multi-line message; wait until its last line is in.
                    let Some(end) = rest.find("size reduction") else { return Ok(None) };
                    let text = rest[..end].to_string();
                    let num = |s: &str| s.replace(',', "").parse::<f64>().ok();
                    let processed =
                        text.split_once(" MB of log processed in ").context("stats: processed")?;
                    let mb = processed.0.rsplit(|c: char| c.is_whitespace()).next().and_then(num);
                    let secs = processed.1.split_whitespace().next().and_then(num);
                    let end_size = text
                        .split_once("End size: ")
                        .and_then(|(_, s)| s.split_whitespace().next())
                        .and_then(num);
                    let seen = Instant::now();
                    let elapsed = match self.began {
                        Some(b) => seen - b,
                        None => Duration::from_secs_f64(secs.context("stats: seconds")?),
                    };
                    return Ok(Some(Report {
                        bytes_read: mb.context("stats: MB processed")? * 1_048_576.0,
                        bytes_written: end_size.map(|m| m * 1_048_576.0),
                        elapsed,
                        seen: Some(seen),
                        text,
                    }));
                }
            }
        }
        // Keep only a tail (a partial line or a partial multi-line message).
        if self.buf.len() > 1 << 20 {
            let cut = self.buf.len() - (64 << 10);
            let cut = (cut..self.buf.len()).find(|&i| self.buf.is_char_boundary(i)).unwrap_or(cut);
            self.buf.drain(..cut);
        }
        Ok(None)
    }
}

struct Sample {
    at: Instant,
    us: u64,
    same_partition: bool,
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, value: &[u8]) -> Result<u64> {
    let t = Instant::now();
    producer
        .send(FutureRecord::to(topic).key(key.as_bytes()).payload(value).partition(0), OP_TIMEOUT)
        .await
        .map_err(|(e, _)| anyhow!(e))
        .with_context(|| format!("latency send to {topic}"))?;
    Ok((t.elapsed().as_micros() as u64).max(1))
}

fn histogram(samples: &[&Sample]) -> Result<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for s in samples {
        h.record(s.us)?;
    }
    Ok(h)
}

fn run(args: &Args) -> Result<()> {
    ensure!(args.size > 0 && args.keys > 0 && args.mb > 0, "--size, --keys and --mb must be positive");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create().context("admin client")?;
    rt.block_on(create_topics(args, &admin))?;
    let value = guise_benches::payload(args.size);
    let other = format!("{}-other", args.topic);

    let (records, fill_secs) = fill(args, &value)?;
    let fill_mb = records as f64 * args.size as f64 / 1e6;
    println!(
        "fill: {records} records ({fill_mb:.0} MB of values, {} keys) in {fill_secs:.2} s = {:.1} MB/s",
        args.keys,
        fill_mb / fill_secs
    );

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &args.bootstrap)
        .set("acks", "1")
        .set("linger.ms", "0")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "30000")
        .create()
        .context("latency producer")?;
    let mut samples: Vec<Sample> = Vec::new();
    let mut n = 0u64;
    let report = rt.block_on(async {
        // Warm-up: connections and metadata of both topics.
        for i in 0..20 {
            send(&producer, &args.topic, &key(i), &value).await?;
            send(&producer, &other, &key(i), &value).await?;
        }
        let mut watch = LogWatch::new(&args.server_log)?;
        let baseline_end = Instant::now() + Duration::from_secs(args.baseline_secs);
        while Instant::now() < baseline_end {
            for (topic, same) in [(&args.topic, true), (&other, false)] {
                let us = send(&producer, topic, &key(n % args.keys), &value).await?;
                samples.push(Sample { at: Instant::now(), us, same_partition: same });
                n += 1;
            }
        }
        if let Some(r) = watch.poll(args)? {
            bail!("the cleaner ran before it was let go: {}", r.text);
        }
        let released = Instant::now();
        release_cleaner(args, &admin).await?;
        println!("cleaner let go (min.cleanable.dirty.ratio=0.5); sending until the broker reports the pass");
        let mut last_poll = Instant::now();
        loop {
            for (topic, same) in [(&args.topic, true), (&other, false)] {
                let us = send(&producer, topic, &key(n % args.keys), &value).await?;
                samples.push(Sample { at: Instant::now(), us, same_partition: same });
                n += 1;
            }
            if last_poll.elapsed() >= Duration::from_millis(10) {
                last_poll = Instant::now();
                if let Some(r) = watch.poll(args)? {
                    return Ok::<_, anyhow::Error>((r, released));
                }
            }
        }
    })?;
    let (report, released) = report;
    let end = report.seen.expect("set when found");
    let start = end.checked_sub(report.elapsed).unwrap_or(released).max(released);
    let phase = |during: bool, same: bool| -> Vec<&Sample> {
        samples
            .iter()
            .filter(|s| s.same_partition == same)
            .filter(|s| if during { s.at >= start && s.at <= end } else { s.at < released })
            .collect()
    };
    let mbps = report.bytes_read / 1e6 / report.elapsed.as_secs_f64();
    println!("report: {}", report.text.replace('\n', " ").replace('\t', ""));
    println!(
        "clean: {:.1} MB read, {} written, {:.3} s = {mbps:.1} MB/s (let go {:.2} s before the pass began)",
        report.bytes_read / 1e6,
        report.bytes_written.map_or("?".to_string(), |b| format!("{:.1} MB", b / 1e6)),
        report.elapsed.as_secs_f64(),
        (start - released).as_secs_f64()
    );
    let mut json = format!(
        "{{\"fill_records\":{records},\"fill_mb\":{fill_mb:.1},\"fill_mbps\":{:.1},\"keys\":{},\
         \"clean_mb_read\":{:.1},\"clean_mb_written\":{},\"clean_secs\":{:.3},\"clean_mbps\":{mbps:.1}",
        fill_mb / fill_secs,
        args.keys,
        report.bytes_read / 1e6,
        report.bytes_written.map_or("null".to_string(), |b| format!("{:.1}", b / 1e6)),
        report.elapsed.as_secs_f64()
    );
    println!("produce latency (linger.ms=0, acks=1, {} B, sequential), µs:", args.size);
    for (label, key, during, same) in [
        ("compacted partition, no clean", "same_base", false, true),
        ("compacted partition, during the clean", "same_during", true, true),
        ("other topic, no clean", "other_base", false, false),
        ("other topic, during the clean", "other_during", true, false),
    ] {
        let s = phase(during, same);
        ensure!(!s.is_empty(), "no latency samples for {label}");
        let h = histogram(&s)?;
        println!(
            "  {label:40} n={:6} p50 {:6} p99 {:6} max {:7}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        );
        json.push_str(&format!(
            ",\"{key}_n\":{},\"{key}_p50\":{},\"{key}_p99\":{},\"{key}_max\":{}",
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        ));
    }
    json.push('}');
    if args.json {
        println!("JSON {json}");
    }
    Ok(())
}
