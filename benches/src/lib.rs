//! Shared by the benchmark binaries: a `guise serve` child process on free ports, and the
//! records' payload.

/// Fixed pseudo-random bytes (xorshift64*, fixed seed): incompressible, identical in every run.
pub fn payload(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..size)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

pub mod host {
    use anyhow::{Context, Result, bail};
    use guise_host::admin::client::AdminClient;
    use std::ffi::OsStr;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Host {
        child: Child,
        pub kafka: u16,
        pub admin: u16,
    }

    impl Host {
        /// Start `guise serve` with `env` (GUISE_* settings) and wait until it serves.
        pub fn start(
            guise: &Path,
            data: &Path,
            kafka: u16,
            admin: u16,
            env: &[(&str, &str)],
        ) -> Result<(Host, Duration)> {
            Self::start_with_args(guise, data, kafka, admin, env, &[])
        }

        /// [`Host::start`] with more arguments to `guise serve` (e.g. `--config FILE`).
        pub fn start_with_args(
            guise: &Path,
            data: &Path,
            kafka: u16,
            admin: u16,
            env: &[(&str, &str)],
            args: &[&OsStr],
        ) -> Result<(Host, Duration)> {
            let started = Instant::now();
            let child = Command::new(guise)
                .args(["serve", "--kafka-addr", &format!("127.0.0.1:{kafka}"), "--admin-addr"])
                .arg(format!("127.0.0.1:{admin}"))
                .arg("--data-dir")
                .arg(data)
                .args(args)
                .env("GUISE_LOG", "warn")
                .envs(env.iter().copied())
                .stdout(Stdio::null())
                .spawn()
                .context("starting guise")?;
            // Ready when the admin API answers: it starts after the translator is loaded (the Kafka
            // port is bound earlier, so a connect alone proves nothing).
            let health = AdminClient::new(format!("127.0.0.1:{admin}"));
            while health.text("/health").is_err() {
                if started.elapsed() > Duration::from_secs(120) {
                    bail!("guise did not start");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok((Host { child, kafka, admin }, started.elapsed()))
        }

        pub fn stop(mut self) {
            let _ = Command::new("kill").arg(self.child.id().to_string()).status();
            let _ = self.child.wait();
        }

        /// The `guise serve` process id (for its CPU time in `/proc/PID/stat`).
        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        pub fn admin(&self) -> AdminClient {
            AdminClient::new(format!("127.0.0.1:{}", self.admin))
        }
    }

    /// A benchmark that fails half way does not leave its host running (holding its data).
    impl Drop for Host {
        fn drop(&mut self) {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

pub mod deliveries {
    //! A librdkafka producer context that counts delivery reports, for the throughput phases.

    use anyhow::{Result, anyhow, bail};
    use rdkafka::ClientContext;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::message::{DeliveryResult, Message};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
    use std::time::Duration;

    pub struct Deliveries {
        pub ok: AtomicU64,
        /// Per partition, the lowest offset a successful delivery reported (i64::MAX: none).
        pub first_offset: Vec<AtomicI64>,
        pub failed: AtomicU64,
        pub first_error: Mutex<Option<String>>,
    }

    impl Deliveries {
        /// Counting deliveries to `partitions` partitions.
        pub fn new(partitions: i32) -> Self {
            Deliveries {
                ok: AtomicU64::new(0),
                first_offset: (0..partitions).map(|_| AtomicI64::new(i64::MAX)).collect(),
                failed: AtomicU64::new(0),
                first_error: Mutex::new(None),
            }
        }

        /// Enqueue `record` on `producer` (whose context is this), waiting while librdkafka's
        /// queue is full and giving up at the first failed delivery; every 1024th record
        /// (`index`) also serves delivery reports.
        pub fn send(
            producer: &BaseProducer<Deliveries>,
            mut record: BaseRecord<'_, [u8], [u8]>,
            index: u64,
        ) -> Result<()> {
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(1));
                        producer.context().check()?;
                    }
                    Err((e, _)) => return Err(anyhow!(e).context(format!("enqueueing record {index}"))),
                }
            }
            if index.is_multiple_of(1024) {
                producer.poll(Duration::ZERO);
                producer.context().check()?;
            }
            Ok(())
        }

        /// An error naming the first failure, if any delivery failed.
        pub fn check(&self) -> Result<()> {
            let failed = self.failed.load(Ordering::Relaxed);
            if failed > 0 {
                bail!(
                    "{failed} deliveries failed; first: {}",
                    self.first_error.lock().unwrap().clone().unwrap_or_default()
                );
            }
            Ok(())
        }
    }

    impl ClientContext for Deliveries {}

    impl ProducerContext for Deliveries {
        type DeliveryOpaque = ();
        fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
            match result {
                Ok(m) => {
                    self.ok.fetch_add(1, Ordering::Relaxed);
                    if let Some(first) = self.first_offset.get(m.partition() as usize)
                        && m.offset() >= 0
                    {
                        first.fetch_min(m.offset(), Ordering::Relaxed);
                    }
                }
                Err((e, m)) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = self.first_error.lock().unwrap();
                    if first.is_none() {
                        *first = Some(format!("{e} (partition {})", m.partition()));
                    }
                }
            }
        }
    }
}
pub mod tenants;
