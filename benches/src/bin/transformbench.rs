//! Tenant transforms (issue 5), in one run:
//!
//! 1. **the Wasm call alone**, in process (no network, no log): the host's `TransformEngine` on
//!    the same engine configuration as the server (pooling allocator, epoch deadlines), calling
//!    `chaos` (mode=pass, a pass-through) and `mask_card` on batches of 0, 1, 10, 100 and 1000
//!    JSON records: time per call and per record;
//! 2. **produce throughput** against one `guise serve` (release build) with a librdkafka
//!    producer (linger 5 ms, 1 MB batches), JSON values of `--size` bytes with a `card_number`
//!    field, to three topics of tenant `public`: one without a transform (the zero-copy path:
//!    the frame's bytes are appended as they came), one bound to `chaos` mode=pass and one bound
//!    to `mask_card` (both policy reject, so a failed call fails the run). `--rounds` rounds,
//!    the order alternating, so the machine's drift shows. Per phase: records/s, MB/s, and the
//!    CPU time of the host process and of this client (from /proc), and the transform's own
//!    time from its stats;
//! 3. **the other tenant's produce latency**: tenant `public` sends one record at a time (acks,
//!    each awaited) to an untransformed topic, with tenant `acme` (its own listener) idle, then
//!    producing flat out to a topic without a transform (a heavy but well-behaved neighbour),
//!    then producing to a topic whose transform loops forever (`chaos` mode=loop, policy skip:
//!    each batch is stopped at the tenant's 100 ms deadline), then idle again.
//!
//! `cargo build --release -p guise-host -p guise-benches && target/release/transformbench`

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use guise_benches::deliveries::Deliveries;
use guise_benches::host::{Host, free_port};
use guise_benches::tenants::{Neighbour, cpu_secs, deploy, latency, us, value};
use guise_host::storage::embedded::EmbeddedLog;
use guise_host::storage::{Log, LogDefaults};
use guise_host::transform::{Policy, TransformView};
use guise_host::wasm::transform::{InputBatch, Record};
use guise_host::wasm::{
    GuestLimits, HostContext, ModuleId, Runtime, StatsSnapshot, TransformEngine, TransformLimits,
};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// The guise binary [default: next to this one].
    #[arg(long)]
    guise: Option<PathBuf>,
    /// Where the transform components are [default: target/modules, next to this binary's directory].
    #[arg(long)]
    modules: Option<PathBuf>,
    /// Records per throughput phase.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes of each record's value (JSON with a `card_number` field, padded).
    #[arg(long, default_value_t = 200)]
    size: usize,
    /// Throughput rounds (each: the three topics, the order alternating between rounds).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Producer acks (1 or all).
    #[arg(long, default_value = "1")]
    acks: String,
    /// Sequential sends per latency measurement (after 20 unmeasured ones).
    #[arg(long, default_value_t = 2000)]
    latency_records: u64,
    /// Producer threads of the neighbouring tenant.
    #[arg(long, default_value_t = 3)]
    neighbour_threads: usize,
    /// Time per case of the in-process call measurement, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    call_ms: u64,
}

const TENANT: &str = "acme";

// ---------------------------------------------------------------- 1. the Wasm call in process

struct CallRow {
    /// "warm" (an instance kept from the call before, as on the produce path by default) or
    /// "fresh" (`transform_warm_instances = 0`).
    instances: &'static str,
    transform: &'static str,
    records: usize,
    calls: usize,
    median: Duration,
    mean: Duration,
}

fn wasm_calls(modules: &Path, size: usize, budget: Duration) -> Result<Vec<CallRow>> {
    let dir = tempfile::tempdir()?;
    let log: Arc<dyn Log> = Arc::new(EmbeddedLog::open(dir.path(), LogDefaults::default())?);
    let ctx = Arc::new(HostContext::local(log, 100 << 20));
    // As the server builds its runtime (the transforms share its engine and epoch ticker).
    let limits = GuestLimits {
        memory_bytes: (100 << 20) + (64 << 20),
        call_timeout: Duration::from_secs(1),
        max_instances: 128,
        max_response_bytes: 100 << 20,
        warm_instances: 0,
        warm_transforms: 4,
    };
    let runtime = Runtime::empty(ctx, limits)?;
    let limits = TransformLimits::default();
    let mut rows = Vec::new();
    for (instances, warm) in [("warm", 4), ("fresh", 0)] {
        let engine = TransformEngine::new(runtime.compiler().engine().clone(), warm)?;
        for (name, file, config) in [
            ("chaos mode=pass", "guise_transform_chaos.wasm", vec![("mode".to_string(), "pass".to_string())]),
            ("mask_card", "guise_transform_mask_card.wasm", vec![]),
        ] {
            let wasm = std::fs::read(modules.join(file)).with_context(|| format!("reading {file}"))?;
            let component = runtime.compiler().compile(&wasm)?;
            let id = ModuleId::unregistered(name, &wasm);
            let module = engine.prepare(&component, id, Arc::default(), "bench", config, &limits)?;
            for n in [0usize, 1, 10, 100, 1000] {
                let batch = InputBatch {
                    topic: "bench".into(),
                    records: (0..n as u64)
                        .map(|i| Record {
                            key: Some(i.to_be_bytes().to_vec()),
                            value: Some(value(i, size)),
                            headers: Vec::new(),
                            timestamp: 1_764_000_000_000 + i as i64,
                            offset_delta: i as i32,
                        })
                        .collect(),
                };
                let out = guise_host::storage::wait(engine.call(&module, &limits, &[], &batch, 0))?;
                ensure!(out.len() == n, "{name}: {} records out of {n}", out.len());
                if name == "mask_card" && n > 0 {
                    let v = String::from_utf8_lossy(out[0].record.value.as_deref().unwrap_or_default());
                    ensure!(v.contains("**** **** **** 0000"), "mask_card did not mask: {v}");
                }
                for seed in 0..10 {
                    guise_host::storage::wait(engine.call(&module, &limits, &[], &batch, seed))?;
                }
                let mut times = Vec::new();
                let started = Instant::now();
                while started.elapsed() < budget || times.len() < 20 {
                    let t = Instant::now();
                    std::hint::black_box(guise_host::storage::wait(engine.call(
                        &module,
                        &limits,
                        &[],
                        &batch,
                        times.len() as u64,
                    ))?);
                    times.push(t.elapsed());
                }
                let total: Duration = times.iter().sum();
                let mean = total / times.len() as u32;
                times.sort();
                rows.push(CallRow {
                    instances,
                    transform: name,
                    records: n,
                    calls: times.len(),
                    median: times[times.len() / 2],
                    mean,
                });
                eprintln!("call {name} x{n} ({instances}): median {:?}", times[times.len() / 2]);
            }
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------- 2. produce throughput

fn throughput_producer(bootstrap: &str, acks: &str) -> Result<BaseProducer<Deliveries>> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "2000000")
        .set("queue.buffering.max.kbytes", "2097151")
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "120000")
        .create_with_context(Deliveries::new(1))?)
}

/// Send every record of `values` (cycled) `records` times and wait for every delivery report.
fn send_all(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    values: &[Vec<u8>],
    records: u64,
) -> Result<()> {
    let ctx = producer.context();
    let before = ctx.ok.load(Ordering::Relaxed);
    for i in 0..records {
        let key = i.to_be_bytes();
        let record =
            BaseRecord::to(topic).key(&key[..]).payload(&values[i as usize % values.len()][..]).partition(0);
        Deliveries::send(producer, record, i)?;
    }
    producer.flush(Duration::from_secs(240)).context("flushing")?;
    ctx.check()?;
    let ok = ctx.ok.load(Ordering::Relaxed) - before;
    ensure!(ok == records, "only {ok} of {records} deliveries reported");
    Ok(())
}

struct Phase {
    round: usize,
    what: &'static str,
    elapsed: Duration,
    host_cpu: f64,
    client_cpu: f64,
    /// The transform's stats over the phase (None: no transform).
    stats: Option<StatsSnapshot>,
}

fn active_stats(view: &TransformView) -> StatsSnapshot {
    view.module
        .versions
        .iter()
        .find(|v| Some(v.version) == view.module.active)
        .map(|v| v.stats)
        .unwrap_or_default()
}

fn stats_delta(a: &StatsSnapshot, b: &StatsSnapshot) -> StatsSnapshot {
    StatsSnapshot {
        calls: b.calls - a.calls,
        errors: b.errors - a.errors,
        traps: b.traps - a.traps,
        timeouts: b.timeouts - a.timeouts,
        records_in: b.records_in - a.records_in,
        records_out: b.records_out - a.records_out,
        busy_ms: b.busy_ms - a.busy_ms,
    }
}

/// The value of the first record of `topic` (tenant `public`).
fn first_value(bootstrap: &str, topic: &str) -> Result<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "transformbench")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m?;
            return Ok(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
        }
    }
    bail!("no record read from {topic}")
}

// ---------------------------------------------------------------- 3. neighbour latency

struct LatencyRow {
    what: String,
    h: Histogram<u64>,
    elapsed: Duration,
    host_cpu: f64,
    neighbour: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let exe_dir = std::env::current_exe()?.parent().unwrap().to_path_buf();
    let guise = args.guise.clone().unwrap_or_else(|| exe_dir.join("guise"));
    let modules = args.modules.clone().unwrap_or_else(|| exe_dir.join("../modules"));
    let chaos =
        std::fs::read(modules.join("guise_transform_chaos.wasm")).context("reading the chaos transform")?;
    let mask = std::fs::read(modules.join("guise_transform_mask_card.wasm")).context("reading mask_card")?;

    // 1. The call alone, before the host starts (nothing else running).
    eprintln!("in-process transform calls ({} ms per case)", args.call_ms);
    let calls = wasm_calls(&modules, args.size, Duration::from_millis(args.call_ms))?;

    // The host: tenant `public` on the main listener, `acme` on a second one.
    let work = tempfile::tempdir()?;
    let (kafka, admin_port, acme_port) = (free_port(), free_port(), free_port());
    let config = work.path().join("guise.toml");
    std::fs::write(
        &config,
        format!("[[listeners]]\naddr = \"127.0.0.1:{acme_port}\"\ntenant = \"{TENANT}\"\n"),
    )?;
    let extra = [OsStr::new("--config"), config.as_os_str()];
    let (host, _) = Host::start_with_args(&guise, &work.path().join("data"), kafka, admin_port, &[], &extra)
        .context("guise")?;
    let pid = host.pid().to_string();
    let admin = host.admin();
    let bootstrap = format!("127.0.0.1:{kafka}");
    let acme = format!("127.0.0.1:{acme_port}");

    // 2. Throughput.
    deploy(&admin, "public", "pass", &chaos, "t-pass", Policy::Reject, &[("mode", "pass")])?;
    deploy(&admin, "public", "mask", &mask, "t-mask", Policy::Reject, &[])?;
    let topics: [(&str, &str, Option<&str>); 3] = [
        ("no transform", "t-plain", None),
        ("chaos mode=pass", "t-pass", Some("pass")),
        ("mask_card", "t-mask", Some("mask")),
    ];
    let values: Vec<Vec<u8>> = (0..1024).map(|i| value(i, args.size)).collect();
    let producer = throughput_producer(&bootstrap, &args.acks)?;
    for (_, topic, _) in &topics {
        send_all(&producer, topic, &values[..1], 1)?; // creates the topic, connects, binds
    }
    let mut phases = Vec::new();
    for round in 0..args.rounds {
        let order: Vec<usize> = if round % 2 == 0 { vec![0, 1, 2] } else { vec![2, 1, 0] };
        for i in order {
            let (what, topic, name) = topics[i];
            let before = name.map(|n| admin.show_transform("public", n)).transpose()?;
            let (h0, c0) = (cpu_secs(&pid), cpu_secs("self"));
            let started = Instant::now();
            send_all(&producer, topic, &values, args.records)?;
            let elapsed = started.elapsed();
            let (h1, c1) = (cpu_secs(&pid), cpu_secs("self"));
            let stats = match (name, before) {
                (Some(n), Some(b)) => {
                    Some(stats_delta(&active_stats(&b), &active_stats(&admin.show_transform("public", n)?)))
                }
                _ => None,
            };
            eprintln!(
                "round {}: {what}: {:.0} records/s",
                round + 1,
                args.records as f64 / elapsed.as_secs_f64()
            );
            phases.push(Phase { round, what, elapsed, host_cpu: h1 - h0, client_cpu: c1 - c0, stats });
        }
    }
    drop(producer);
    // What was stored: the transformed topic masked, the others unchanged.
    let plain = first_value(&bootstrap, "t-plain")?;
    let passed = first_value(&bootstrap, "t-pass")?;
    let masked = first_value(&bootstrap, "t-mask")?;
    ensure!(
        plain.contains("4111 1111 1111 0000") && passed == plain,
        "unexpected values: {plain} / {passed}"
    );
    ensure!(masked.contains("\"card_number\":\"**** **** **** 0000\""), "not masked: {masked}");

    // 3. Neighbour latency.
    deploy(&admin, TENANT, "spin", &chaos, "spin", Policy::Skip, &[("mode", "loop")])?;
    let probe = value(0, args.size);
    latency(&bootstrap, "lat", 10, &args.acks, &probe)?; // creates the topic
    let mut lat = Vec::new();
    for (what, topic) in [
        ("neighbour idle", None),
        ("neighbour producing flat out, no transform", Some("busy")),
        ("neighbour's transform looping (chaos mode=loop, skip)", Some("spin")),
        ("neighbour idle again", None),
    ] {
        let spin_before = active_stats(&admin.show_transform(TENANT, "spin")?);
        let neighbour = match topic {
            Some(t) => {
                let n = Neighbour::start(&acme, t, args.neighbour_threads, args.size)?;
                // Running: records acknowledged (flat out) or batches timed out (looping).
                let started = Instant::now();
                while n.acked() == 0
                    && active_stats(&admin.show_transform(TENANT, "spin")?).timeouts
                        < spin_before.timeouts + args.neighbour_threads as u64
                {
                    ensure!(started.elapsed() < Duration::from_secs(60), "the neighbour did not start");
                    std::thread::sleep(Duration::from_millis(50));
                }
                std::thread::sleep(Duration::from_millis(500));
                Some(n)
            }
            None => None,
        };
        let spin0 = active_stats(&admin.show_transform(TENANT, "spin")?);
        let acked0 = neighbour.as_ref().map_or(0, Neighbour::acked);
        let h0 = cpu_secs(&pid);
        let started = Instant::now();
        let h = latency(&bootstrap, "lat", args.latency_records, &args.acks, &probe)?;
        let elapsed = started.elapsed();
        let host_cpu = cpu_secs(&pid) - h0;
        let spin = stats_delta(&spin0, &active_stats(&admin.show_transform(TENANT, "spin")?));
        let acked = neighbour.as_ref().map_or(0, Neighbour::acked) - acked0;
        if let Some(n) = neighbour {
            n.finish()?;
        }
        let neighbour = match topic {
            None => "—".to_string(),
            Some("spin") => format!(
                "{} batches timed out ({:.0} ms each), {} records acknowledged (skipped)",
                spin.timeouts,
                spin.busy_ms as f64 / spin.calls.max(1) as f64,
                acked
            ),
            Some(_) => format!("{:.0} records/s acknowledged", acked as f64 / elapsed.as_secs_f64()),
        };
        eprintln!(
            "latency, {what}: p50 {} p99 {}",
            us(h.value_at_quantile(0.5)),
            us(h.value_at_quantile(0.99))
        );
        lat.push(LatencyRow { what: what.to_string(), h, elapsed, host_cpu, neighbour });
        // Let the host finish what the neighbour left queued before the next measurement.
        std::thread::sleep(Duration::from_secs(2));
    }
    let spin = admin.show_transform(TENANT, "spin")?;
    host.stop();

    // ---------------------------------------------------------------- report
    let mb = args.size as f64 / 1e6;
    println!(
        "\nWasm call in process ({} B JSON values; warm: the instance the call before left, as on the produce path; fresh: a new instance per call):\n",
        args.size
    );
    println!(
        "| instances | transform | records per call | calls | median µs per call | mean µs per call | ns per record (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in &calls {
        let per = if r.records > 0 {
            format!("{:.0}", r.median.as_nanos() as f64 / r.records as f64)
        } else {
            "—".into()
        };
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {per} |",
            r.instances,
            r.transform,
            r.records,
            r.calls,
            r.median.as_secs_f64() * 1e6,
            r.mean.as_secs_f64() * 1e6
        );
    }
    for (i, t) in ["warm", "fresh"].into_iter().flat_map(|i| [(i, "chaos mode=pass"), (i, "mask_card")]) {
        let at =
            |n| calls.iter().find(|r| r.instances == i && r.transform == t && r.records == n).unwrap().median;
        println!(
            "{t} ({i}): fixed cost (empty batch) {:.1} µs; marginal cost per record (100 → 1000 records) {:.0} ns",
            at(0).as_secs_f64() * 1e6,
            (at(1000).as_secs_f64() - at(100).as_secs_f64()) * 1e9 / 900.0
        );
    }

    println!(
        "\nProduce throughput: {} records of {} B per phase, acks={}, one partition, linger.ms=5:\n",
        args.records, args.size, args.acks
    );
    println!(
        "| round | topic | records/s | MB/s | host CPU s | host CPU µs per record | client CPU s | transform calls | records per call | transform busy ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for p in &phases {
        let rps = args.records as f64 / p.elapsed.as_secs_f64();
        let (calls, per_call, busy) = match &p.stats {
            Some(s) => (
                s.calls.to_string(),
                format!("{:.0}", s.records_in as f64 / s.calls.max(1) as f64),
                s.busy_ms.to_string(),
            ),
            None => ("—".into(), "—".into(), "—".into()),
        };
        println!(
            "| {} | {} | {rps:.0} | {:.1} | {:.2} | {:.2} | {:.2} | {calls} | {per_call} | {busy} |",
            p.round + 1,
            p.what,
            rps * mb,
            p.host_cpu,
            p.host_cpu * 1e6 / args.records as f64,
            p.client_cpu
        );
    }
    println!("\n| topic | records/s (median of rounds) | host CPU µs per record (median) |\n|---|---|---|");
    for (what, _, _) in &topics {
        let mut rps: Vec<f64> = phases
            .iter()
            .filter(|p| p.what == *what)
            .map(|p| args.records as f64 / p.elapsed.as_secs_f64())
            .collect();
        let mut cpu: Vec<f64> = phases
            .iter()
            .filter(|p| p.what == *what)
            .map(|p| p.host_cpu * 1e6 / args.records as f64)
            .collect();
        rps.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!("| {what} | {:.0} | {:.2} |", rps[rps.len() / 2], cpu[cpu.len() / 2]);
    }
    println!("stored: t-plain {plain}\n        t-mask  {masked}");

    println!(
        "\nTenant public's produce latency ({} sequential sends of {} B, acks={}, linger.ms=0) while tenant {TENANT} \
         ({} producer connections on its own listener) does:\n",
        args.latency_records, args.size, args.acks, args.neighbour_threads
    );
    println!("| tenant acme | p50 | p99 | p99.9 | max | host CPU s over the probe | acme's side |");
    println!("|---|---|---|---|---|---|---|");
    for r in &lat {
        println!(
            "| {} | {} | {} | {} | {} | {:.2} in {:.1} s | {} |",
            r.what,
            us(r.h.value_at_quantile(0.5)),
            us(r.h.value_at_quantile(0.99)),
            us(r.h.value_at_quantile(0.999)),
            us(r.h.max()),
            r.host_cpu,
            r.elapsed.as_secs_f64(),
            r.neighbour
        );
    }
    let s = active_stats(&spin);
    println!(
        "{TENANT}/spin over the run: {} calls, {} timed out, {} batches skipped (policy), busy {} ms",
        s.calls, s.timeouts, spin.outcomes.skipped, s.busy_ms
    );
    Ok(())
}
