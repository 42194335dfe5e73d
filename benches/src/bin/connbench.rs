//! Idle connections (issue 18, item 5): the broker's resident memory with `--connections` Kafka
//! connections open and idle. Each connection sends one ApiVersions request (v0, so every broker
//! answers it the same way) and reads the answer, so the broker has accepted it and set it up as
//! a Kafka connection; then all of them stay open, idle, for `--hold-secs`. The broker's RSS
//! (VmRSS, /proc) is read before the first connection and after the last has been answered and
//! the hold has passed.
//!
//! `cargo build --release -p guise-benches && target/release/connbench --bootstrap
//! 127.0.0.1:9092 --server-pid PID`; `benches/kafka-compare.sh` runs it against Guise and Apache
//! Kafka in one run. The client needs as many descriptors as connections (`ulimit -n`).

use anyhow::{Context, Result, bail};
use clap::Parser;
use guise_tests::wire::{request_frame, sized};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(name = "connbench", about = "Broker memory with many idle Kafka connections")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// A label for the output (guise, kafka, tansu).
    #[arg(long, default_value = "broker")]
    system: String,
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    parallel: usize,
    /// Seconds all connections stay open and idle before the broker's memory is read.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
    /// PID of the broker (this machine): its resident memory is reported.
    #[arg(long)]
    server_pid: u32,
    /// Also print the result as one JSON line (prefixed with `JSON `).
    #[arg(long)]
    json: bool,
}

/// The broker's resident memory, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading the broker's status")?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS")?.parse()?)
}

/// One connection: ApiVersions v0 asked and answered, then kept.
async fn open(addr: &str, id: i32) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.context("connect")?;
    let frame = request_frame(ApiKey::ApiVersions, 0, 0, id, "connbench", &ApiVersionsRequest::default());
    stream.write_all(&sized(&frame)).await?;
    let size = stream.read_i32().await.context("reading the answer")?;
    if !(4..1 << 20).contains(&size) {
        bail!("an answer of {size} bytes");
    }
    let mut body = vec![0; size as usize];
    stream.read_exact(&mut body).await?;
    if i32::from_be_bytes(body[..4].try_into()?) != id {
        bail!("the answer carries another correlation id");
    }
    Ok(stream)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let before = rss_kib(args.server_pid)?;
    let started = Instant::now();
    let streams = rt.block_on(async {
        let mut streams = Vec::with_capacity(args.connections);
        let mut next = 0;
        while next < args.connections {
            let batch =
                (next..args.connections.min(next + args.parallel)).map(|i| open(&args.bootstrap, i as i32));
            for s in futures::future::join_all(batch).await {
                streams.push(
                    s.with_context(|| format!("connection {} of {}", streams.len() + 1, args.connections))?,
                );
            }
            next = streams.len();
        }
        Ok::<_, anyhow::Error>(streams)
    })?;
    let opened = started.elapsed();
    std::thread::sleep(Duration::from_secs(args.hold_secs));
    let after = rss_kib(args.server_pid)?;
    let n = streams.len();
    // Signed: a broker whose memory shrank meanwhile (a collection) shows it.
    let per = (after as f64 - before as f64) / n as f64;
    println!(
        "| system | connections | opened in s | broker RSS before MiB | with the connections MiB | KiB per connection |"
    );
    println!("|---|---|---|---|---|---|");
    println!(
        "| {} | {n} | {:.1} | {:.0} | {:.0} | {per:.1} |",
        args.system,
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0
    );
    if args.json {
        println!(
            "JSON {}",
            serde_json::json!({
                "system": args.system, "connections": n, "opened_s": opened.as_secs_f64(),
                "rss_before_kib": before, "rss_after_kib": after, "kib_per_connection": per,
            })
        );
    }
    drop(streams);
    Ok(())
}
