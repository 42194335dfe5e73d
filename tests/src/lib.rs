//! Support for the end-to-end tests: a Guise host started in-process on ephemeral ports, with a
//! data directory of its own, on a runtime of its own (so clients with their own threads, like
//! librdkafka, and tokio clients, like rskafka, can both talk to it).

pub mod apache_kafka;
pub mod apache_pulsar;
pub mod certs;
pub mod connect;
pub mod host_process;
pub mod java;
pub mod kafka_py;
pub mod pip;
pub mod proxy;
pub mod pulsar_py;
pub mod wire;

use guise_host::config::Config;
use guise_host::record::batch::BatchHeader;
use guise_host::record::records;
use guise_host::server::Server;
use guise_host::storage::{TopicName, wait};
use std::net::SocketAddr;
use std::sync::Once;

pub struct TestServer {
    pub kafka_addr: SocketAddr,
    /// The Pulsar endpoint, when the config turned it on.
    pub pulsar_addr: Option<SocketAddr>,
    pub admin_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    config: Config,
    runtime: Option<tokio::runtime::Runtime>,
    server: Option<Server>,
}

static LOG: Once = Once::new();

/// The workspace's target directory, where the tests cache what they download (Python wheels,
/// the Maven repository, compiled Java classes) and keep the shared peers' state.
pub fn target_dir() -> std::path::PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"),
    }
}

impl host_process::Host {
    /// `guise serve` as a process of its own (the workspace's `guise` binary, which `cargo test
    /// --workspace` builds for the host's own tests), so that a test can `kill -9` it. Arguments
    /// as [`host_process::Host::start_binary`].
    pub fn start(data: &std::path::Path, kafka: u16, admin: u16, env: &[(&str, &str)]) -> Self {
        let bin = target_dir().join("debug").join("guise");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build -p guise-host --bin guise` (the workspace's \
             test command builds it)",
            bin.display()
        );
        Self::start_binary(&bin, data, kafka, admin, env)
    }
}

/// Logs go to the test's captured output; `RUST_LOG` picks the level (default `warn`).
pub fn init_logging() {
    LOG.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

impl TestServer {
    /// A host on 127.0.0.1 with ephemeral ports and default settings.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A host whose config `tweak` may change (data dir and addresses are set for it).
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::try_start_with(tweak).unwrap_or_else(|e| panic!("start guise: {e}"))
    }

    /// [`start_with`](Self::start_with) for a host that may fail to start: why it did.
    pub fn try_start_with(tweak: impl FnOnce(&mut Config)) -> Result<Self, String> {
        init_logging();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            kafka_addr: "127.0.0.1:0".into(),
            admin_addr: "127.0.0.1:0".into(),
            // Tests write fixed timestamps from 2023 so that what they read back is exact; the
            // default retention (seven days) would delete them, active segment included, as
            // Kafka does, at the first check (one runs at start, so after every restart).
            // Retention tests set their own.
            retention_ms: -1,
            ..Config::default()
        };
        tweak(&mut config);
        Self::try_start_in(dir, config)
    }

    fn start_in(dir: tempfile::TempDir, config: Config) -> Self {
        Self::try_start_in(dir, config).unwrap_or_else(|e| panic!("start guise: {e}"))
    }

    fn try_start_in(dir: tempfile::TempDir, config: Config) -> Result<Self, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let server = runtime.block_on(Server::start(&config)).map_err(|e| format!("{e:#}"))?;
        Ok(TestServer {
            kafka_addr: server.kafka_addr,
            pulsar_addr: server.pulsar_addr,
            admin_addr: server.admin_addr,
            dir,
            config,
            runtime: Some(runtime),
            server: Some(server),
        })
    }

    /// `host:port` for a client's bootstrap servers.
    pub fn bootstrap(&self) -> String {
        self.kafka_addr.to_string()
    }

    /// A host with the Pulsar endpoint on an ephemeral port.
    pub fn start_with_pulsar(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with(|c| {
            c.pulsar_addr = Some("127.0.0.1:0".into());
            tweak(c);
        })
    }

    /// `pulsar://host:port` for a Pulsar client.
    pub fn pulsar_url(&self) -> String {
        format!("pulsar://{}", self.pulsar_addr.expect("the Pulsar endpoint is on"))
    }

    /// The host's runtime (for the server's own state, e.g. metrics).
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Every record stored in partition `partition` of `name`, read from the log itself, with
    /// the number of the stored batch it is in (0 for the first batch read); nothing when the
    /// topic does not exist.
    pub fn stored(&self, name: &TopicName, partition: i32) -> Vec<(usize, records::Record)> {
        let log = &self.server().log;
        let Some(_) = log.topic(name) else { return Vec::new() };
        let (mut offset, end) = wait(log.offsets(name, partition)).expect("offsets");
        let (mut out, mut batch_no) = (Vec::new(), 0);
        while offset < end {
            let mut bytes = wait(log.read(name, partition, offset, 1 << 20, true))
                .expect("read")
                .records
                .expect("records");
            while !bytes.is_empty() {
                let header = BatchHeader::parse(&bytes).expect("a stored batch");
                let batch = records::decode(&bytes.split_to(header.size()), 64 << 20).expect("decodes");
                out.extend(batch.records.into_iter().map(|r| (batch_no, r)));
                batch_no += 1;
                offset = header.next_offset();
            }
        }
        out
    }

    /// Stop cleanly and start again on the same data directory and the same Kafka address (so
    /// clients that know the broker reconnect to it).
    pub fn restart(mut self) -> Self {
        self.shutdown();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
        let mut config = self.config.clone();
        config.kafka_addr = self.kafka_addr.to_string();
        if let Some(addr) = self.pulsar_addr {
            config.pulsar_addr = Some(addr.to_string());
        }
        Self::start_in(dir, config)
    }

    /// Shut down cleanly (parked requests answered, log flushed) and keep the data directory.
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"))
    }

    fn shutdown(&mut self) {
        if let (Some(rt), Some(server)) = (self.runtime.take(), self.server.take()) {
            rt.block_on(server.shutdown());
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A `sasl_users_file` in `dir` with a salted SCRAM credential (4,096 iterations) of `password`
/// for each (user, mechanism).
pub fn users_file(
    dir: &std::path::Path,
    users: &[(&str, guise_host::scram::Scram)],
    password: &str,
) -> std::path::PathBuf {
    use guise_host::scram::{Credential, Users};
    let mut text = String::new();
    for &(user, scram) in users {
        text += &Users::entry(user, scram, &Credential::new(scram, password.as_bytes(), 4096));
    }
    let path = dir.join("users.toml");
    std::fs::write(&path, text).expect("writing the users file");
    path
}
