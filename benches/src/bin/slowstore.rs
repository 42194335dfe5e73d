//! Slow storage under many producers (issue 12, item 5's acceptance measurement): a host whose
//! appends take `--delay-ms` (a delay wrapper around the embedded log, `storage::DelayedLog`,
//! standing in for a remote store such as Pulsar), `--connections` connections producing at
//! once (one request in flight each, as Kafka clients pipeline per connection), and ApiVersions
//! on one more connection every `--probe-ms`. It reports the host process's thread count (before
//! and at its peak, from /proc), ApiVersions latency (p50, p99, max), produce requests/s and the
//! host's CPU use. The probe runs on a thread and runtime of its own, so the producers' tasks in
//! this process do not delay it.
//!
//! The host runs in a child process (this binary with `host`), so the load generator's own
//! threads are not counted. Everything is on 127.0.0.1 and stops after `--seconds`.
//!
//! `cargo build --release -p guise-benches --bin slowstore && target/release/slowstore`

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use guise_host::config::Config;
use guise_host::server::Server;
use guise_host::storage::embedded::EmbeddedLog;
use guise_host::storage::{DelayedLog, Log, LogDefaults};
use guise_tests::wire::{record_batch, request_frame, sized};
use hdrhistogram::Histogram;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Milliseconds every append waits before it is stored.
    #[arg(long, default_value_t = 5)]
    delay_ms: u64,
    /// Producing connections.
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// Partitions of the topic (connection i produces to partition i mod this).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// How long the load runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Each producing connection sends its next produce this long after the previous one was
    /// sent (or at once when the response comes later); 0: back to back, one always in flight.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// ApiVersions probe interval.
    #[arg(long, default_value_t = 10)]
    probe_ms: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the host with the delayed log (used by the load run; prints `kafka ADDR`).
    Host {
        #[arg(long)]
        delay_ms: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Cmd::Host { delay_ms }) => host(delay_ms),
        None => load(&args),
    }
}

/// The host: the embedded log in a temp dir behind a delay, until stdin closes.
fn host(delay_ms: u64) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUISE_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let mut config = Config::load(None, Vec::new())?;
        config.data_dir = dir.path().to_path_buf();
        config.kafka_addr = "127.0.0.1:0".into();
        config.admin_addr = "127.0.0.1:0".into();
        let inner: Arc<dyn Log> = Arc::new(EmbeddedLog::open(&config.data_dir, LogDefaults::default())?);
        let log: Arc<dyn Log> = Arc::new(DelayedLog::new(inner, Duration::from_millis(delay_ms)));
        let server = Server::start_with_log(&config, log).await?;
        println!("kafka {}", server.kafka_addr);
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {}
        })
        .await?;
        server.shutdown().await;
        anyhow::Ok(())
    })
}

/// The process's user + system CPU time, in clock ticks (`/proc/PID/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after it are counted from its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn threads(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok())
}

async fn read_frame(s: &mut TcpStream) -> std::io::Result<()> {
    let mut size = [0u8; 4];
    s.read_exact(&mut size).await?;
    let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
    s.read_exact(&mut body).await?;
    Ok(())
}

fn produce_frame(partition: i32) -> Vec<u8> {
    let batch: Bytes = record_batch(&[&[7u8; 100]]);
    let body = ProduceRequest::default().with_acks(1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("slow")))
            .with_partition_data(vec![
                PartitionProduceData::default().with_index(partition).with_records(Some(batch)),
            ]),
    ]);
    sized(&request_frame(ApiKey::Produce, 7, 7, 1, "slowstore", &body))
}

fn load(args: &Args) -> Result<()> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["host", "--delay-ms", &args.delay_ms.to_string()])
        .env("GUISE_LOG", std::env::var("GUISE_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the host")?;
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line)?;
    let Some(addr) = line.trim().strip_prefix("kafka ").map(str::to_string) else {
        bail!("the host did not start: {line:?}");
    };
    let idle_threads = threads(pid);

    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &addr).create()?;
    rt.block_on(admin.create_topics(
        &[NewTopic::new("slow", args.partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new(),
    ))?;

    let produced = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let (peak, probes, cpu) = rt.block_on(async {
        let mut tasks = Vec::new();
        let (interval, n) = (Duration::from_millis(args.interval_ms), args.connections);
        for i in 0..args.connections {
            let (addr, produced, failed) = (addr.clone(), produced.clone(), failed.clone());
            let frame = produce_frame(i as i32 % args.partitions);
            tasks.push(tokio::spawn(async move {
                let mut s = match TcpStream::connect(&addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("connection {i}: connect: {e}");
                        }
                        return;
                    }
                };
                let _ = s.set_nodelay(true);
                let mut pace = (interval > Duration::ZERO).then(|| {
                    // Spread the connections' sends over the interval.
                    let start = tokio::time::Instant::now() + interval.mul_f64(i as f64 / n as f64);
                    let mut t = tokio::time::interval_at(start, interval);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                });
                while Instant::now() < deadline {
                    if let Some(t) = pace.as_mut() {
                        t.tick().await;
                    }
                    let sent = match s.write_all(&frame).await {
                        Ok(()) => read_frame(&mut s).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = sent {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!(
                                "connection {i}: after {} responses: {e}",
                                produced.load(Ordering::Relaxed)
                            );
                        }
                        return;
                    }
                    produced.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        // Let the producers connect and start before probing.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cpu_before = (Instant::now(), cpu_ticks(pid));
        let (addr, probe_ms) = (addr.clone(), args.probe_ms);
        let probing = std::thread::spawn(move || -> Result<(u64, Histogram<u64>)> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let mut probe = TcpStream::connect(&addr).await?;
                probe.set_nodelay(true)?;
                let frame = sized(&request_frame(
                    ApiKey::ApiVersions,
                    3,
                    3,
                    1,
                    "probe",
                    &ApiVersionsRequest::default(),
                ));
                let mut probes = Histogram::<u64>::new(3)?;
                let mut peak = 0;
                let mut tick = tokio::time::interval(Duration::from_millis(probe_ms));
                while Instant::now() < deadline {
                    tick.tick().await;
                    let sent = Instant::now();
                    probe.write_all(&frame).await?;
                    read_frame(&mut probe).await?;
                    probes.record(sent.elapsed().as_micros() as u64)?;
                    peak = peak.max(threads(pid).unwrap_or(0));
                }
                Ok((peak, probes))
            })
        });
        let (peak, probes) = tokio::task::spawn_blocking(move || probing.join())
            .await?
            .map_err(|_| anyhow::anyhow!("the probe thread panicked"))??;
        let cpu = match (cpu_before.1, cpu_ticks(pid)) {
            (Some(a), Some(b)) => (b - a) as f64 / 100.0 / cpu_before.0.elapsed().as_secs_f64(),
            _ => f64::NAN,
        };
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok((peak, probes, cpu))
    })?;
    drop(child.stdin.take());
    let _ = child.wait();

    let n = produced.load(Ordering::Relaxed);
    println!(
        "| {} ms | {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} | {:.2} |",
        args.delay_ms,
        args.connections,
        idle_threads.map_or("?".into(), |t| t.to_string()),
        peak,
        n as f64 / args.seconds as f64,
        probes.value_at_quantile(0.5) as f64 / 1000.0,
        probes.value_at_quantile(0.99) as f64 / 1000.0,
        probes.max() as f64 / 1000.0,
        failed.load(Ordering::Relaxed),
        cpu,
    );
    println!(
        "(columns: append delay | producing connections | host threads idle | host threads peak | produce requests/s | ApiVersions p50 ms | p99 ms | max ms | failed connections | host CPU, cores; {} probes)",
        probes.len()
    );
    Ok(())
}
