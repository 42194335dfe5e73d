//! Hot-swap costs, measured against a real `guise serve` (release build) with librdkafka clients:
//!
//! 1. throughput of a producer and a consumer (1 KiB records) for `--seconds`, not swapping; then
//!    the same while the translator is deployed every `--swap-every-ms`, alternating two builds;
//!    then not swapping again (the two quiet phases bracket the noisy machine's drift);
//! 2. time to deploy: from the upload to the first request served by the new version, for bytes
//!    the host has compiled before (the artifact cache) and for new bytes (compiled on upload);
//! 3. restart time (process start to serving: the admin API answers once the translator is loaded) with the cached artifact, and cold
//!    (the cache deleted, so the translator is compiled again).
//!
//! `cargo build --release -p guise-host -p guise-benches && target/release/swapbench`

use anyhow::{Context, Result, bail};
use clap::Parser;
use guise_benches::host::{Host, free_port};
use guise_host::admin::client::AdminClient;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The guise binary [default: next to this one].
    #[arg(long)]
    guise: Option<PathBuf>,
    /// The two builds to alternate [default: target/modules/guise_kafka.wasm and guise_faulty.wasm].
    #[arg(long)]
    modules: Option<PathBuf>,
    #[arg(long, default_value_t = 15)]
    seconds: u64,
    #[arg(long, default_value_t = 200)]
    swap_every_ms: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    #[arg(long, default_value_t = 5)]
    restarts: usize,
}

/// `wasm` with a custom section appended: the same component, new bytes (a new hash).
fn variant(wasm: &[u8], n: u32) -> Vec<u8> {
    let name = b"guise-bench";
    let payload = n.to_le_bytes();
    let mut out = wasm.to_vec();
    out.push(0); // custom section
    out.push((1 + name.len() + payload.len()) as u8);
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn active_calls(admin: &AdminClient, version: u32) -> u64 {
    admin
        .show("kafka")
        .ok()
        .and_then(|m| m.versions.into_iter().find(|v| v.version == version))
        .map_or(0, |v| v.stats.calls)
}

/// Deploy and wait for the first request on the new version (the load keeps requests coming).
fn deploy_and_first_request(admin: &AdminClient, wasm: &[u8]) -> Result<(Duration, Duration)> {
    let started = Instant::now();
    let v = admin.deploy("kafka", wasm)?;
    let deployed = started.elapsed();
    while active_calls(admin, v.version) == 0 {
        if started.elapsed() > Duration::from_secs(60) {
            bail!("no request reached version {}", v.version);
        }
    }
    Ok((deployed, started.elapsed()))
}

struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    consumed: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(bootstrap: &str, size: usize) -> Result<Load> {
        let (stop, acked, consumed, errors) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let mut threads = Vec::new();
        let producer: BaseProducer<_> = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("acks", "1")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .create_with_context(Counter { acked: acked.clone(), errors: errors.clone() })?;
        {
            let stop = stop.clone();
            let payload = vec![b'x'; size];
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match producer.send(BaseRecord::<(), [u8]>::to("swap").payload(&payload)) {
                        Ok(()) => {}
                        Err(_) => {
                            producer.poll(Duration::from_millis(1));
                        }
                    }
                    producer.poll(Duration::ZERO);
                }
                let _ = producer.flush(Duration::from_secs(30));
            }));
        }
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "swapbench")
            .set("enable.auto.commit", "false")
            .create()?;
        {
            let (stop, consumed, errors) = (stop.clone(), consumed.clone(), errors.clone());
            threads.push(std::thread::spawn(move || {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset("swap", 0, Offset::Beginning).unwrap();
                consumer.assign(&tpl).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match consumer.poll(Duration::from_millis(100)) {
                        Some(Ok(_)) => {
                            consumed.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(Err(e)) => {
                            eprintln!("consumer error: {e}");
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {}
                    }
                }
            }));
        }
        Ok(Load { stop, acked, consumed, errors, threads })
    }

    fn counts(&self) -> (u64, u64) {
        (self.acked.load(Ordering::Relaxed), self.consumed.load(Ordering::Relaxed))
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        self.errors.load(Ordering::Relaxed)
    }
}

struct Counter {
    acked: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

impl rdkafka::ClientContext for Counter {}

impl rdkafka::producer::ProducerContext for Counter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.acked.fetch_add(1, Ordering::Relaxed),
            Err((e, _)) => {
                eprintln!("delivery error: {e}");
                self.errors.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let exe_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let guise = args.guise.clone().unwrap_or_else(|| exe_dir.join("guise"));
    let modules = args.modules.clone().unwrap_or_else(|| exe_dir.join("../modules"));
    let builds = [
        std::fs::read(modules.join("guise_kafka.wasm")).context("reading guise_kafka.wasm")?,
        std::fs::read(modules.join("guise_faulty.wasm")).context("reading guise_faulty.wasm")?,
    ];
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let (kafka, admin_port) = (free_port(), free_port());
    let (host, first_start) = Host::start(&guise, &data, kafka, admin_port, &[])?;
    let admin = host.admin();
    let bootstrap = format!("127.0.0.1:{}", host.kafka);
    println!("first start (compiles the embedded translator): {}", ms(first_start));
    // Compile both builds once, so the swap phase measures swaps, not compiles.
    for b in builds.iter().rev() {
        admin.deploy("kafka", b)?;
    }

    let load = Load::start(&bootstrap, args.size)?;
    std::thread::sleep(Duration::from_secs(2)); // warm up
    let phase = Duration::from_secs(args.seconds);
    let mb = |records: u64, d: Duration| records as f64 * args.size as f64 / d.as_secs_f64() / 1e6;
    let mut rows = Vec::new();
    let mut swap_latencies = Vec::new();
    for (name, swapping) in [("not swapping", false), ("swapping", true), ("not swapping", false)] {
        let (a0, c0) = load.counts();
        let started = Instant::now();
        let mut swaps = 0;
        while started.elapsed() < phase {
            if swapping {
                let next = Instant::now() + Duration::from_millis(args.swap_every_ms);
                let (_, first) = deploy_and_first_request(&admin, &builds[swaps % 2])?;
                swap_latencies.push(first);
                swaps += 1;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let elapsed = started.elapsed();
        let (a1, c1) = load.counts();
        rows.push((name, swaps, mb(a1 - a0, elapsed), mb(c1 - c0, elapsed)));
    }
    let errors = load.finish();

    // Deploys of new bytes: compiled on upload.
    let mut cold = Vec::new();
    let load = Load::start(&bootstrap, 100)?;
    for n in 0..3 {
        cold.push(deploy_and_first_request(&admin, &variant(&builds[0], n))?);
    }
    let errors = errors + load.finish();
    host.stop();

    // Restarts: cached artifact, then cold.
    let mut cached_starts = Vec::new();
    let mut cold_starts = Vec::new();
    for _ in 0..args.restarts {
        let (h, t) = Host::start(&guise, &data, kafka, admin_port, &[])?;
        cached_starts.push(t);
        h.stop();
        for e in std::fs::read_dir(data.join("modules/artifacts"))? {
            let p = e?.path();
            if p.extension().is_some_and(|x| x == "cwasm") {
                std::fs::remove_file(p)?;
            }
        }
        let (h, t) = Host::start(&guise, &data, kafka, admin_port, &[])?;
        cold_starts.push(t);
        h.stop();
    }

    println!("\n| phase | swaps | produce MB/s | consume MB/s |\n|---|---|---|---|");
    for (name, swaps, p, c) in &rows {
        println!("| {name} | {swaps} | {p:.0} | {c:.0} |");
    }
    println!("client-visible errors: {errors}");
    println!(
        "\nswap (cached artifact), deploy call to first request on the new version: median {}, max {} over {} swaps",
        ms(median(swap_latencies.clone())),
        ms(*swap_latencies.iter().max().unwrap()),
        swap_latencies.len()
    );
    for (deployed, first) in &cold {
        println!(
            "deploy of new bytes (compiled on upload): deploy call {}, first request {}",
            ms(*deployed),
            ms(*first)
        );
    }
    println!(
        "restart to serving: cached artifact median {} ({:?}); cold (compiling) median {} ({:?})",
        ms(median(cached_starts.clone())),
        cached_starts.iter().map(|d| ms(*d)).collect::<Vec<_>>(),
        ms(median(cold_starts.clone())),
        cold_starts.iter().map(|d| ms(*d)).collect::<Vec<_>>()
    );
    if errors > 0 {
        bail!("{errors} client-visible errors");
    }
    Ok(())
}
