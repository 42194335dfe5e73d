//! Request-bound produce (issue 18): many small producers, each sending one 100 B record per
//! Produce request (librdkafka with `linger.ms=0`, `batch.num.messages=1`) and waiting for its
//! acknowledgement before the next (one request in flight per connection: a closed loop).
//!
//! For each connection count (`--connections 1,16,256`): that many producers (one librdkafka
//! instance, hence one broker connection, each), spread over the partitions of a fresh topic
//! (connection i writes partition i mod `--partitions`), all warmed up, then measured over the
//! same `--secs` window: requests/s, per-request latency p50/p99/max, and CPU per request of the
//! broker (`--server-pid`, from /proc) and of this client. The broker's CPU per request is the
//! figure that means something on a shared machine: the client runs on the same cores.
//!
//! `cargo build --release -p guise-benches && target/release/reqbench --bootstrap 127.0.0.1:9092`;
//! `benches/kafka-compare.sh` runs it against Guise and Apache Kafka in one run.

use anyhow::{Context, Result, bail};
use clap::Parser;
use guise_benches::tenants::cpu_secs;
use hdrhistogram::Histogram;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "reqbench", about = "Request-bound produce: one record per request, N connections")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// A label for the output (guise, kafka, tansu).
    #[arg(long, default_value = "broker")]
    system: String,
    /// Connection counts to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    connections: Vec<usize>,
    /// Partitions of each run's topic.
    #[arg(long, default_value_t = 16)]
    partitions: i32,
    /// Measured seconds per connection count.
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Producer acks: 1 or all.
    #[arg(long, default_value = "1")]
    acks: String,
    /// PID of the broker, when it runs on this machine: its CPU time per request is reported.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also print each result as one JSON line (prefixed with `JSON `).
    #[arg(long)]
    json: bool,
}

/// Unmeasured sends per connection before the window opens (connection set-up, metadata).
const WARMUP: usize = 50;

struct Run {
    requests: u64,
    secs: f64,
    latency: Histogram<u64>,
    server_cpu: Option<f64>,
    client_cpu: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    println!(
        "| system | connections | requests/s | p50 µs | p99 µs | max µs | broker CPU µs per request | client CPU µs per request |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for &n in &args.connections {
        let topic = format!("req-{stamp}-{n}");
        rt.block_on(create_topic(&args, &topic))?;
        let run = rt.block_on(measure(&args, &topic, n))?;
        let per = |cpu: f64| cpu * 1e6 / run.requests.max(1) as f64;
        let q = |p: f64| run.latency.value_at_quantile(p);
        println!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.1} |",
            args.system,
            n,
            run.requests as f64 / run.secs,
            q(0.5),
            q(0.99),
            run.latency.max(),
            run.server_cpu.map_or("—".into(), |c| format!("{:.1}", per(c))),
            per(run.client_cpu),
        );
        if args.json {
            println!(
                "JSON {}",
                serde_json::json!({
                    "system": args.system,
                    "connections": n,
                    "requests": run.requests,
                    "secs": run.secs,
                    "requests_per_s": run.requests as f64 / run.secs,
                    "p50_us": q(0.5),
                    "p99_us": q(0.99),
                    "max_us": run.latency.max(),
                    "server_cpu_us_per_request": run.server_cpu.map(per),
                    "client_cpu_us_per_request": per(run.client_cpu),
                })
            );
        }
    }
    Ok(())
}

async fn create_topic(args: &Args, topic: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &args.bootstrap).create().context("admin client")?;
    let new = NewTopic::new(topic, args.partitions, TopicReplication::Fixed(1));
    for r in admin.create_topics([&new], &AdminOptions::new()).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => bail!("creating {t}: {e}"),
        }
    }
    Ok(())
}

/// One record, awaited until the broker acknowledged it.
async fn send(producer: &FutureProducer, topic: &str, value: &[u8], partition: i32) -> Result<()> {
    let record = FutureRecord::<(), [u8]>::to(topic).payload(value).partition(partition);
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map(|_| ())
        .map_err(|(e, _)| anyhow::anyhow!("send: {e}"))
}

async fn measure(args: &Args, topic: &str, n: usize) -> Result<Run> {
    let value = Arc::new(guise_benches::payload(args.size));
    let producers = (0..n)
        .map(|_| {
            ClientConfig::new()
                .set("bootstrap.servers", &args.bootstrap)
                .set("acks", &args.acks)
                .set("linger.ms", "0")
                .set("batch.num.messages", "1")
                .set("enable.idempotence", "false")
                .set("message.timeout.ms", "30000")
                .create::<FutureProducer>()
                .context("producer")
        })
        .collect::<Result<Vec<_>>>()?;
    // Every connection warms up, then all wait for the same start; the window is the same for
    // all (it starts when the last one is ready), and only what completes inside it counts.
    let start = Arc::new(tokio::sync::Barrier::new(n + 1));
    let (window_tx, window_rx) = tokio::sync::watch::channel(None::<Instant>);
    let window = Duration::from_secs(args.secs);
    let mut tasks = Vec::new();
    for (i, producer) in producers.into_iter().enumerate() {
        let (start, value, topic) = (start.clone(), value.clone(), topic.to_string());
        let mut window_rx = window_rx.clone();
        let partition = (i as i32) % args.partitions;
        tasks.push(tokio::spawn(async move {
            for _ in 0..WARMUP {
                send(&producer, &topic, &value, partition).await?;
            }
            start.wait().await;
            let end = window_rx.wait_for(Option::is_some).await?.expect("set") + window;
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            loop {
                let t = Instant::now();
                send(&producer, &topic, &value, partition).await?;
                let done = Instant::now();
                if done > end {
                    break;
                }
                h.record((done - t).as_micros().max(1) as u64)?;
            }
            Ok::<_, anyhow::Error>(h)
        }));
    }
    start.wait().await;
    let pid = args.server_pid.map(|p| p.to_string());
    let (s0, c0, began) = (pid.as_deref().map(cpu_secs), cpu_secs("self"), Instant::now());
    window_tx.send_replace(Some(began));
    tokio::time::sleep_until((began + window).into()).await;
    let (s1, c1) = (pid.as_deref().map(cpu_secs), cpu_secs("self"));
    let secs = began.elapsed().as_secs_f64();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    for t in tasks {
        latency.add(t.await??)?;
    }
    Ok(Run {
        requests: latency.len(),
        secs,
        latency,
        server_cpu: s0.zip(s1).map(|(a, b)| b - a),
        client_cpu: c1 - c0,
    })
}
