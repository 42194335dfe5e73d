//! Tenant fairness (issue 15, item 8): tenant C's produce latency while tenant A runs a looping
//! transform on several connections and tenant B produces flat out — the target is C's p99
//! within 2× of its p99 with both idle.
//!
//! Two hosts, one after the other, each with tenant C (`public`) on the main listener and A and
//! B on listeners of their own:
//!
//! 1. **no ceilings**: only the per-tenant cap on concurrent transform calls
//!    (`transform_max_concurrency`, default half the cores) stands between A and C;
//! 2. **with ceilings** (`[tenants.b] producer_byte_rate`, `[tenants.a] request_percentage`):
//!    B's clients together are throttled to `--b-rate` bytes/s and A's requests to
//!    `--a-percent` of a thread.
//!
//! Each host: C sends `--latency-records` records one at a time (acks=1, each awaited) while
//! the neighbours are idle, A loops alone, B floods alone, both, and idle again.
//!
//! `cargo build --release -p guise-host -p guise-benches && target/release/fairbench`

use anyhow::{Context, Result, ensure};
use clap::Parser;
use guise_benches::host::{Host, free_port};
use guise_benches::tenants::{Neighbour, cpu_secs, deploy, latency, us, value};
use guise_host::transform::Policy;
use hdrhistogram::Histogram;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The guise binary [default: next to this one].
    #[arg(long)]
    guise: Option<PathBuf>,
    /// Where the transform components are [default: target/modules].
    #[arg(long)]
    modules: Option<PathBuf>,
    /// Tenant C's sequential sends per measurement.
    #[arg(long, default_value_t = 2000)]
    latency_records: u64,
    /// Bytes of each record's value.
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Tenant A's producer connections to its looping topic.
    #[arg(long, default_value_t = 8)]
    a_connections: usize,
    /// Tenant B's producer connections (each a librdkafka producer flat out: on a small machine
    /// their own CPU competes with the host's).
    #[arg(long, default_value_t = 1)]
    b_connections: usize,
    /// Tenant B's ceiling in the second host, bytes/s.
    #[arg(long, default_value_t = 10_000_000)]
    b_rate: u64,
    /// Tenant A's ceiling in the second host, percent of one thread.
    #[arg(long, default_value_t = 20.0)]
    a_percent: f64,
    /// Seconds the neighbours run before C's probe. A quota's rate is measured over 11 windows
    /// of 1 s and counts at least 10 s from the first sample (as Kafka's does), so a ceiling
    /// takes hold only after its tenant has run over it for a while: the probe measures the
    /// steady state after it.
    #[arg(long, default_value_t = 6)]
    warmup_secs: u64,
    /// The phases, in order: `idle`, `a` (A loops), `b` (B floods), `both`. The first is the
    /// baseline the others are compared with.
    #[arg(long, value_delimiter = ',', default_value = "idle,a,b,both,idle")]
    phases: Vec<String>,
    /// Which hosts: `none` (no ceilings), `ceilings`.
    #[arg(long, value_delimiter = ',', default_value = "none,ceilings")]
    hosts: Vec<String>,
}

struct Row {
    host: &'static str,
    what: &'static str,
    /// The latencies, or why the probe failed (a send that timed out: C was starved).
    h: Result<Histogram<u64>, String>,
    host_cpu: f64,
    elapsed: Duration,
    b_acked: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let exe_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let guise = args.guise.clone().unwrap_or_else(|| exe_dir.join("guise"));
    let modules = args.modules.clone().unwrap_or_else(|| exe_dir.join("../modules"));
    let chaos =
        std::fs::read(modules.join("guise_transform_chaos.wasm")).context("reading the chaos transform")?;
    let mut rows = Vec::new();
    let mut phases = Vec::new();
    for (i, p) in args.phases.iter().enumerate() {
        phases.push(match p.as_str() {
            "idle" if i == 0 => ("A and B idle", false, false),
            "idle" => ("A and B idle again", false, false),
            "a" => ("A's transform looping", true, false),
            "b" => ("B producing flat out", false, true),
            "both" => ("A looping and B flooding", true, true),
            other => anyhow::bail!("unknown phase {other:?} (idle, a, b, both)"),
        });
    }
    let mut hosts = Vec::new();
    for h in &args.hosts {
        hosts.push(match h.as_str() {
            "none" => ("no ceilings", false),
            "ceilings" => ("with ceilings", true),
            other => anyhow::bail!("unknown host {other:?} (none, ceilings)"),
        });
    }
    for (name, ceilings) in hosts {
        let work = tempfile::tempdir()?;
        let (kafka, admin_port, a_port, b_port) = (free_port(), free_port(), free_port(), free_port());
        // B writes flat out: small segments and a byte retention keep the disk use bounded.
        let mut config = format!(
            "segment_bytes = 67108864\nretention_bytes = 268435456\nretention_check_interval_ms = 2000\n\n\
             [[listeners]]\naddr = \"127.0.0.1:{a_port}\"\ntenant = \"a\"\n\n\
             [[listeners]]\naddr = \"127.0.0.1:{b_port}\"\ntenant = \"b\"\n"
        );
        if ceilings {
            config.push_str(&format!(
                "\n[tenants.a]\nrequest_percentage = {}\n\n[tenants.b]\nproducer_byte_rate = {}\n",
                args.a_percent, args.b_rate
            ));
        }
        let file = work.path().join("guise.toml");
        std::fs::write(&file, config)?;
        let extra = [OsStr::new("--config"), file.as_os_str()];
        let (host, _) =
            Host::start_with_args(&guise, &work.path().join("data"), kafka, admin_port, &[], &extra)
                .context("guise")?;
        let pid = host.pid().to_string();
        let admin = host.admin();
        let (c, a, b) =
            (format!("127.0.0.1:{kafka}"), format!("127.0.0.1:{a_port}"), format!("127.0.0.1:{b_port}"));
        deploy(&admin, "a", "spin", &chaos, "spin", Policy::Skip, &[("mode", "loop")])?;
        let probe = value(0, args.size);
        latency(&c, "lat", 10, "1", &probe)?; // creates the topic
        for &(what, loops, floods) in &phases {
            // A's connections each keep one record in flight (every one runs into the transform's
            // deadline), so A's load is on the host, not on this client.
            let a_side = loops
                .then(|| Neighbour::start_paced(&a, "spin", args.a_connections, args.size))
                .transpose()?;
            let b_side =
                floods.then(|| Neighbour::start(&b, "flood", args.b_connections, args.size)).transpose()?;
            if loops || floods {
                // Until the neighbours run: a looping call timed out, or B's records acknowledged.
                let started = Instant::now();
                let spin0 = admin
                    .show_transform("a", "spin")?
                    .module
                    .versions
                    .iter()
                    .map(|v| v.stats.timeouts)
                    .sum::<u64>();
                loop {
                    let spun = admin
                        .show_transform("a", "spin")?
                        .module
                        .versions
                        .iter()
                        .map(|v| v.stats.timeouts)
                        .sum::<u64>();
                    let a_ok = !loops || spun > spin0;
                    let b_ok = b_side.as_ref().is_none_or(|n| n.acked() > 0);
                    if a_ok && b_ok {
                        break;
                    }
                    ensure!(started.elapsed() < Duration::from_secs(60), "the neighbours did not start");
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_secs(args.warmup_secs));
            }
            let b0 = b_side.as_ref().map_or(0, Neighbour::acked);
            let h0 = cpu_secs(&pid);
            let started = Instant::now();
            let h = latency(&c, "lat", args.latency_records, "1", &probe).map_err(|e| format!("{e:#}"));
            let elapsed = started.elapsed();
            let host_cpu = cpu_secs(&pid) - h0;
            let b_acked = b_side.as_ref().map_or(0, Neighbour::acked) - b0;
            for n in [a_side, b_side].into_iter().flatten() {
                n.finish()?;
            }
            match &h {
                Ok(h) => eprintln!(
                    "{name}, {what}: p50 {} p99 {}",
                    us(h.value_at_quantile(0.5)),
                    us(h.value_at_quantile(0.99))
                ),
                Err(e) => eprintln!("{name}, {what}: the probe failed: {e}"),
            }
            rows.push(Row { host: name, what, h, host_cpu, elapsed, b_acked });
            // Let the host finish what the neighbours left queued, and the quota rates forget
            // this phase (Kafka's horizon: 11 windows of 1 s).
            std::thread::sleep(Duration::from_secs(12));
        }
        host.stop();
    }

    println!(
        "\nTenant C's produce latency ({} sequential sends of {} B, acks=1); A: {} connections to a \
         looping transform; B: {} connections producing flat out; ceilings: B {} B/s, A {}% of a thread:\n",
        args.latency_records, args.size, args.a_connections, args.b_connections, args.b_rate, args.a_percent
    );
    println!(
        "| host | tenants A and B | p50 | p99 | p99 ÷ idle p99 | p99.9 | max | host CPU s over the probe | B's records/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let idle = rows
            .iter()
            .find(|x| x.host == r.host)
            .and_then(|x| x.h.as_ref().ok())
            .map_or(1, |h| h.value_at_quantile(0.99));
        let Ok(h) = &r.h else {
            println!(
                "| {} | {} | failed: {} | | | | | {:.2} in {:.1} s | {:.0} |",
                r.host,
                r.what,
                r.h.as_ref().err().unwrap(),
                r.host_cpu,
                r.elapsed.as_secs_f64(),
                r.b_acked as f64 / r.elapsed.as_secs_f64()
            );
            continue;
        };
        println!(
            "| {} | {} | {} | {} | {:.1} | {} | {} | {:.2} in {:.1} s | {:.0} |",
            r.host,
            r.what,
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99)),
            h.value_at_quantile(0.99) as f64 / idle.max(1) as f64,
            us(h.value_at_quantile(0.999)),
            us(h.max()),
            r.host_cpu,
            r.elapsed.as_secs_f64(),
            r.b_acked as f64 / r.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
