//! Apache Kafka 4.4 itself, the reference of the differential tests: one KRaft node (broker and
//! controller in one JVM) on loopback ports chosen at run time, with formatted storage under
//! `target/peers/`.
//!
//! One broker serves the whole `cargo test` run: the first test binary that asks starts it and
//! writes its address to a ready file; the others find it there (a file lock orders them). The
//! JVM watches the run's `cargo` process and halts when it exits, however it exits, so no broker
//! outlives the run even though Rust never drops statics. A test binary run by hand (not under
//! `cargo`) owns its own broker, which dies with it; `GUISE_PEER_OWNER=PID` names another owner.
//! Tests share the broker, so each uses topic and group names of its own.

use crate::{java, target_dir, wire};
use base64::Engine;
use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running Apache Kafka broker.
pub struct ApacheKafka {
    pub addr: SocketAddr,
    /// Its directory: `server.properties`, `data/`, `broker.log`.
    pub dir: PathBuf,
}

impl ApacheKafka {
    /// `host:port` for a client's bootstrap servers.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }
}

/// How long a first start may take (format, JVM start-up, controller election) on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The pid whose exit ends the shared peers: the `cargo` running this test binary, else the
/// binary itself.
pub(crate) fn owner() -> u32 {
    if let Some(pid) = std::env::var("GUISE_PEER_OWNER").ok().and_then(|v| v.parse().ok()) {
        return pid;
    }
    let parent = std::os::unix::process::parent_id();
    let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
    if comm.trim().starts_with("cargo") { parent } else { std::process::id() }
}

pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The run's broker, started on first use.
pub fn shared() -> &'static ApacheKafka {
    static KAFKA: OnceLock<ApacheKafka> = OnceLock::new();
    KAFKA.get_or_init(|| {
        crate::init_logging();
        let owner = owner();
        let peers = target_dir().join("peers");
        let _lock = java::lock(&peers.join("kafka.lock"));
        reap(&peers, "kafka-");
        let dir = peers.join(format!("kafka-{owner}"));
        if let Ok(ready) = std::fs::read_to_string(dir.join("ready"))
            && let Some((addr, pid)) = ready.trim().split_once(' ')
            && let (Ok(addr), Ok(pid)) = (addr.parse::<SocketAddr>(), pid.parse::<u32>())
            && alive(pid)
            && answers(addr)
        {
            return ApacheKafka { addr, dir };
        }
        let kafka = start(&dir, owner);
        eprintln!(
            "Apache Kafka 4.4 is serving on {} (logs in {})",
            kafka.addr,
            dir.join("broker.log").display()
        );
        kafka
    })
}

/// Remove the directories (named `PREFIX<pid>`) of peers whose run has ended.
pub(crate) fn reap(peers: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(peers) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok())
            && !alive(pid)
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("its address")
        .port()
}

fn cluster_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = Vec::with_capacity(16);
    for salt in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u8(salt);
        h.write_u32(std::process::id());
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        bytes.extend_from_slice(&h.finish().to_be_bytes());
    }
    // An id whose text starts with '-' (base64 index 62) reads as an option to the storage
    // tool's argument parser, and formatting fails: keep the first character a letter.
    bytes[0] &= 0x7f;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn start(dir: &Path, owner: u32) -> ApacheKafka {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("data")).expect("creating the broker's directory");
    let (port, controller) = (free_port(), free_port());
    let props = dir.join("server.properties");
    std::fs::write(
        &props,
        format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n\
             log.dirs={}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n",
            dir.join("data").display()
        ),
    )
    .expect("writing server.properties");
    let log = std::fs::File::create(dir.join("broker.log")).expect("creating broker.log");
    let mut child = java::command("512m", &["-XX:+UseSerialGC", "-Xss512k"], "guise.Peer")
        .arg(owner.to_string())
        .arg("--format")
        .arg(cluster_id())
        .arg(&props)
        .arg("kafka.Kafka")
        .arg(&props)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("a second handle on broker.log"))
        .stderr(log)
        .spawn()
        .expect("starting java");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let started = Instant::now();
    loop {
        if answers(addr) {
            break;
        }
        let log_tail = || {
            let text = std::fs::read_to_string(dir.join("broker.log")).unwrap_or_default();
            text.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!("Apache Kafka exited ({status}) before it served:\n{}", log_tail());
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            panic!("Apache Kafka did not serve within {START_TIMEOUT:?}:\n{}", log_tail());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let ready = dir.join("ready");
    std::fs::write(ready.with_extension("tmp"), format!("{addr} {}", child.id()))
        .expect("writing the ready file");
    std::fs::rename(ready.with_extension("tmp"), &ready).expect("publishing the ready file");
    ApacheKafka { addr, dir: dir.to_path_buf() }
}

/// Whether a broker on `addr` answers Metadata with itself in the broker list.
fn answers(addr: SocketAddr) -> bool {
    wire::call::<_, MetadataResponse>(addr, ApiKey::Metadata, 12, &MetadataRequest::default())
        .is_ok_and(|m| !m.brokers.is_empty())
}
