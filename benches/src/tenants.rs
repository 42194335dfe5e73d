//! Tenants side by side: a probe tenant's sequential produce latency, and neighbouring tenants
//! producing flat out or through a transform (used by `transformbench` and `fairbench`).

use crate::deliveries::Deliveries;
use anyhow::{Context, Result, anyhow};
use guise_host::admin::client::AdminClient;
use guise_host::transform::{BindingSpec, Policy};
use hdrhistogram::Histogram;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, FutureProducer, FutureRecord, Producer, PurgeConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A JSON value of about `size` bytes (at least the fields): an order with a card number.
pub fn value(i: u64, size: usize) -> Vec<u8> {
    let mut v = format!(
        r#"{{"order_id":{i},"customer":"c-{:06}","card_number":"4111 1111 1111 {:04}","amount":{}.{:02},"currency":"EUR","note":""#,
        (i * 7919) % 1_000_000,
        i % 10_000,
        i % 1000,
        i % 100
    );
    while v.len() + 2 < size {
        v.push('x');
    }
    v.push_str("\"}");
    v.into_bytes()
}

/// CPU time (user + system) of a process from /proc/PID/stat, in seconds (USER_HZ = 100).
pub fn cpu_secs(pid: &str) -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        Some((f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?) / 100.0)
    };
    read().unwrap_or(f64::NAN)
}

/// Unmeasured sends before a latency measurement.
pub const LATENCY_WARMUP: u64 = 20;

/// `n` sequential sends of `payload` to partition 0 of `topic` (after a few unmeasured ones),
/// each awaited: their latency in microseconds.
pub fn latency(bootstrap: &str, topic: &str, n: u64, acks: &str, payload: &[u8]) -> Result<Histogram<u64>> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", acks)
        .set("linger.ms", "0")
        .set("enable.idempotence", "false")
        .create()?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    rt.block_on(async {
        for i in 0..LATENCY_WARMUP + n {
            let key = i.to_be_bytes();
            let t = Instant::now();
            producer
                .send(
                    FutureRecord::to(topic).key(&key[..]).payload(payload).partition(0),
                    Duration::from_secs(30),
                )
                .await
                .map_err(|(e, _)| anyhow!(e))
                .with_context(|| format!("latency send {i}"))?;
            if i >= LATENCY_WARMUP {
                h.record((t.elapsed().as_micros() as u64).max(1))?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(h)
}

/// A neighbouring tenant's producers: `threads` connections producing to `topic` as fast as they may.
pub struct Neighbour {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<Result<()>>>,
}

impl Neighbour {
    pub fn start(bootstrap: &str, topic: &str, threads: usize, size: usize) -> Result<Neighbour> {
        Self::start_with(bootstrap, topic, threads, size, false)
    }

    /// Like [`start`](Self::start), but each connection keeps one record in flight and waits
    /// for its delivery: a neighbour that keeps the host busy (e.g. through a looping
    /// transform) without spending the client's CPU on a queue it cannot drain.
    pub fn start_paced(bootstrap: &str, topic: &str, threads: usize, size: usize) -> Result<Neighbour> {
        Self::start_with(bootstrap, topic, threads, size, true)
    }

    fn start_with(
        bootstrap: &str,
        topic: &str,
        threads: usize,
        size: usize,
        paced: bool,
    ) -> Result<Neighbour> {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for t in 0..threads {
            let producer: BaseProducer<Deliveries> = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("acks", "1")
                .set("linger.ms", "5")
                .set("batch.size", "1000000")
                .set("queue.buffering.max.messages", "200000")
                .set("enable.idempotence", "false")
                .set("message.timeout.ms", "120000")
                .create_with_context(Deliveries::new(1))?;
            let (stop, acked, topic) = (stop.clone(), acked.clone(), topic.to_string());
            let values: Vec<Vec<u8>> = (0..64).map(|i| value(i, size)).collect();
            handles.push(std::thread::spawn(move || {
                let mut i = 0u64;
                let mut counted = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("{t}-{i}");
                    let record = BaseRecord::to(&topic).key(&key).payload(&values[i as usize % 64][..]);
                    match producer.send(record) {
                        Ok(()) => i += 1,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) if !paced => {
                            producer.poll(Duration::from_millis(1));
                        }
                        Err((e, _)) => return Err(anyhow!(e)),
                    }
                    if paced {
                        let c = producer.context();
                        while c.ok.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed) < i
                            && !stop.load(Ordering::Relaxed)
                        {
                            producer.poll(Duration::from_millis(10));
                        }
                        acked.store(c.ok.load(Ordering::Relaxed), Ordering::Relaxed);
                        continue;
                    }
                    if i.is_multiple_of(256) {
                        producer.poll(Duration::ZERO);
                        let ok = producer.context().ok.load(Ordering::Relaxed);
                        acked.fetch_add(ok - counted, Ordering::Relaxed);
                        counted = ok;
                        producer.context().check()?;
                    }
                }
                // Whatever is still queued or in flight is dropped (reported as purged).
                producer.purge(PurgeConfig::default().queue().inflight());
                producer.poll(Duration::from_millis(100));
                Ok(())
            }));
        }
        Ok(Neighbour { stop, acked, threads: handles })
    }

    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub fn finish(self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().map_err(|_| anyhow!("a neighbour thread panicked"))??;
        }
        Ok(())
    }
}

/// Deploy transform `name` to `tenant`, bound to `topic`.
pub fn deploy(
    admin: &AdminClient,
    tenant: &str,
    name: &str,
    wasm: &[u8],
    topic: &str,
    policy: Policy,
    config: &[(&str, &str)],
) -> Result<()> {
    let spec = BindingSpec {
        topics: vec![topic.to_string()],
        output_topics: Vec::new(),
        policy,
        config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    };
    admin
        .deploy_transform(tenant, name, &spec, wasm)
        .with_context(|| format!("deploying {tenant}/{name}"))?;
    Ok(())
}

/// Microseconds as the tables print them (ms from 10 ms up).
pub fn us(v: u64) -> String {
    if v >= 10_000 { format!("{:.1} ms", v as f64 / 1000.0) } else { format!("{v} µs") }
}
