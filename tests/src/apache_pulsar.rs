//! Apache Pulsar 4.0 itself: the standalone (broker, BookKeeper bookie and RocksDB metadata store
//! in one JVM) from Maven artifacts (`tests/pulsar/pom.xml`), on loopback ports chosen at run
//! time, with its data under `target/peers/`.
//!
//! [`shared`] is one standalone for the whole `cargo test` run, as `apache_kafka::shared` is: the
//! first test binary that asks starts it and writes its address to a ready file, the others find
//! it there; it halts when the run's `cargo` exits. Tests share it, so each uses topic or
//! namespace names of its own. [`ApachePulsar::start_owned`] starts one that belongs to the
//! caller alone and halts when it is dropped (or the test binary dies): for tests that stop or
//! configure the broker.

use crate::apache_kafka::{alive, free_port, owner, reap};
use crate::{java, target_dir};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a start may take (JVM start-up, bookie and metadata store, `public/default`) on a
/// busy two-core machine. It takes 6–8 s on an idle one.
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A running Apache Pulsar standalone.
pub struct ApachePulsar {
    /// The binary protocol's port.
    pub broker: SocketAddr,
    /// The admin REST API's port.
    pub web: SocketAddr,
    /// Its directory: `standalone.conf`, `data/`, `pulsar.log`.
    pub dir: PathBuf,
    /// For an owned standalone: the JVM and the pipe whose closing halts it.
    owned: Option<(Child, ChildStdin)>,
    /// The token the admin calls carry (a standalone with authentication on).
    token: Option<String>,
}

impl ApachePulsar {
    /// `pulsar://127.0.0.1:PORT`, for clients and for Guise's `storage` setting.
    pub fn url(&self) -> String {
        format!("pulsar://{}", self.broker)
    }

    /// `http://127.0.0.1:PORT`, the admin API.
    pub fn web_url(&self) -> String {
        format!("http://{}", self.web)
    }

    /// A standalone of the caller's own, with `extra` lines added to its `standalone.conf`;
    /// halted when dropped.
    pub fn start_owned(extra: &[&str]) -> ApachePulsar {
        Self::start_owned_with_token(extra, None)
    }

    /// [`start_owned`](Self::start_owned) for a standalone with authentication on: its own
    /// calls (the readiness check, [`admin`](Self::admin)) carry the bearer `token`.
    pub fn start_owned_with_token(extra: &[&str], token: Option<String>) -> ApachePulsar {
        static N: AtomicUsize = AtomicUsize::new(0);
        crate::init_logging();
        let peers = target_dir().join("peers");
        {
            let _lock = java::lock(&peers.join("pulsar.lock"));
            reap(&peers, "pulsar-");
        }
        let dir = peers.join(format!("pulsar-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
        start(&dir, None, extra, token)
    }

    /// The JVM's pid, for an owned standalone (for CPU accounting).
    pub fn pid(&self) -> Option<u32> {
        self.owned.as_ref().map(|(child, _)| child.id())
    }

    /// Halt the owned standalone (as `kill -9` would) and wait for it.
    pub fn halt(&mut self) {
        if let Some((mut child, stdin)) = self.owned.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `METHOD path` on the admin API with a JSON `body`: the status and the body of the answer.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.web, method, path, body, self.token.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// `GET path` on the admin API, which must answer 200 with JSON.
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.admin("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path} answered no JSON ({e}): {body}"))
    }

    /// The last lines of the standalone's log, for a failure message.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("pulsar.log"), lines)
    }
}

impl Drop for ApachePulsar {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The run's standalone, started on first use.
pub fn shared() -> &'static ApachePulsar {
    static PULSAR: OnceLock<ApachePulsar> = OnceLock::new();
    PULSAR.get_or_init(|| {
        crate::init_logging();
        let owner = owner();
        let peers = target_dir().join("peers");
        let _lock = java::lock(&peers.join("pulsar.lock"));
        reap(&peers, "pulsar-");
        let dir = peers.join(format!("pulsar-{owner}"));
        if let Ok(ready) = std::fs::read_to_string(dir.join("ready")) {
            let mut parts = ready.split_whitespace();
            if let (Some(Ok(broker)), Some(Ok(web)), Some(Ok(pid))) = (
                parts.next().map(str::parse::<SocketAddr>),
                parts.next().map(str::parse::<SocketAddr>),
                parts.next().map(str::parse::<u32>),
            ) && alive(pid)
                && ready_namespace(web, None)
            {
                return ApachePulsar { broker, web, dir, owned: None, token: None };
            }
        }
        start(&dir, Some(owner), &[], None)
    })
}

/// The standalone's classpath and our launcher's classes.
fn classpath() -> &'static str {
    static CP: OnceLock<String> = OnceLock::new();
    CP.get_or_init(|| {
        let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pulsar");
        let dir = target_dir().join("pulsar");
        let deps = java::resolve(&project.join("pom.xml"), &dir, "about 250 MB");
        let classes = java::compile(&project.join("src"), &deps, &dir);
        format!("{}:{deps}", classes.display())
    })
}

fn start(dir: &Path, owner: Option<u32>, extra: &[&str], token: Option<String>) -> ApachePulsar {
    let cp = classpath();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("tmp")).expect("creating the standalone's directory");
    let (port, web, bookie) = (free_port(), free_port(), free_port());
    let conf = dir.join("standalone.conf");
    let mut text = format!(
        "clusterName=standalone\n\
         bindAddress=127.0.0.1\n\
         advertisedAddress=127.0.0.1\n\
         brokerServicePort={port}\n\
         webServicePort={web}\n\
         managedLedgerDefaultEnsembleSize=1\n\
         managedLedgerDefaultWriteQuorum=1\n\
         managedLedgerDefaultAckQuorum=1\n\
         allowLoopback=true\n\
         allowEphemeralPorts=true\n\
         listeningInterface=lo\n\
         diskUsageThreshold=0.99\n\
         diskUsageWarnThreshold=0.99\n\
         journalSyncData=false\n\
         dbStorage_writeCacheMaxSizeMb=32\n\
         dbStorage_readAheadCacheMaxSizeMb=32\n\
         functionsWorkerEnabled=false\n"
    );
    for line in extra {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&conf, text).expect("writing standalone.conf");
    let log = std::fs::File::create(dir.join("pulsar.log")).expect("creating pulsar.log");
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pulsar");
    let mut cmd = Command::new("java");
    cmd.current_dir(dir)
        .args(["-Xms256m", "-Xmx1g", "-XX:MaxDirectMemorySize=512m", "-XX:+UseSerialGC"])
        .arg("-Djava.net.preferIPv4Stack=true")
        .arg("-Dio.netty.tryReflectionSetAccessible=true")
        .arg(format!("-Djava.io.tmpdir={}", dir.join("tmp").display()))
        .arg(format!("-Dlog4j2.configurationFile={}", project.join("log4j2.properties").display()))
        .arg("-Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver")
        .arg("-Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver");
    for open in [
        "java.base/java.io",
        "java.base/java.util.zip",
        "java.base/java.nio",
        "java.base/jdk.internal.misc",
        "java.base/jdk.internal.platform",
        "java.base/sun.net",
        "java.management/sun.management",
    ] {
        cmd.arg("--add-opens").arg(format!("{open}=ALL-UNNAMED"));
    }
    cmd.arg("-cp").arg(cp).arg("guise.PulsarPeer");
    match owner {
        Some(pid) => cmd.arg(pid.to_string()).stdin(Stdio::null()),
        None => cmd.arg("--stdin").stdin(Stdio::piped()),
    };
    cmd.arg("--config")
        .arg(&conf)
        .args(["-nfw", "-nss", "--bookkeeper-port"])
        .arg(bookie.to_string())
        .args(["-a", "127.0.0.1"])
        .stdout(log.try_clone().expect("a second handle on pulsar.log"))
        .stderr(log);
    let mut child = cmd.spawn().expect("starting java");
    let broker: SocketAddr = ([127, 0, 0, 1], port).into();
    let web: SocketAddr = ([127, 0, 0, 1], web).into();
    let started = Instant::now();
    while !ready_namespace(web, token.as_deref()) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "Apache Pulsar exited ({status}) before it served:\n{}",
                tail(&dir.join("pulsar.log"), 60)
            );
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            panic!(
                "Apache Pulsar did not serve within {START_TIMEOUT:?}:\n{}",
                tail(&dir.join("pulsar.log"), 60)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "Apache Pulsar 4.0 standalone is serving on {broker} (admin {web}, logs in {}) after {:.1?}",
        dir.join("pulsar.log").display(),
        started.elapsed()
    );
    let owned = match owner {
        Some(_) => {
            let ready = dir.join("ready");
            std::fs::write(ready.with_extension("tmp"), format!("{broker} {web} {}", child.id()))
                .expect("writing the ready file");
            std::fs::rename(ready.with_extension("tmp"), &ready).expect("publishing the ready file");
            None
        }
        None => {
            let stdin = child.stdin.take().expect("the standalone's stdin");
            Some((child, stdin))
        }
    };
    ApachePulsar { broker, web, dir: dir.to_path_buf(), owned, token }
}

/// Whether the standalone on `web` lists `public/default` (it creates it once it serves).
fn ready_namespace(web: SocketAddr, token: Option<&str>) -> bool {
    http(web, "GET", "/admin/v2/namespaces/public", None, token)
        .is_ok_and(|(status, body)| status == 200 && body.contains("\"public/default\""))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One HTTP/1.0 exchange (so the answer is never chunked and ends with the connection).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{auth}\r\n{body}",
        body.len()
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head}")))?;
    Ok((status, rest.to_string()))
}

/// An HS256 JSON Web Token for subject `role`, signed with `secret`: what
/// `pulsar tokens create --secret-key` makes for a broker whose `tokenSecretKey` is that secret.
pub fn hs256_token(secret: &[u8], role: &str) -> String {
    use base64::Engine;
    use hmac::Mac;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let signing_input = format!(
        "{}.{}",
        b64.encode(br#"{"alg":"HS256"}"#),
        b64.encode(serde_json::json!({ "sub": role }).to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Every message of `topic` on the Pulsar at `url`, read from the earliest with the official
/// Java client (`pulsar-client` 4.2, `tests/pulsar-client`) until none comes for 3 s: a JSON
/// array of `{key, data (base64), event_time, topic, properties, null_value}`.
pub fn java_client_read(url: &str, topic: &str) -> serde_json::Value {
    java_client("PulsarRead", &[url, topic, "3000"])
}

/// Send `n` messages to `topic` with the official Java client (batched, asynchronous): message
/// i has key `PREFIX-key-i`, payload `PREFIX-i`, property `i` and event time 1600000000000 + i.
pub fn java_client_write(url: &str, topic: &str, n: usize, prefix: &str) {
    java_client("PulsarWrite", &[url, topic, &n.to_string(), prefix]);
}

/// Run `guise.MAIN` of `tests/pulsar-client` with `args`; the JSON its last line prints.
fn java_client(main: &str, args: &[&str]) -> serde_json::Value {
    static CP: OnceLock<String> = OnceLock::new();
    let cp = CP.get_or_init(|| {
        let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pulsar-client");
        let dir = target_dir().join("pulsar-client");
        let deps = java::resolve(&project.join("pom.xml"), &dir, "about 30 MB");
        let classes = java::compile(&project.join("src"), &deps, &dir);
        format!("{}:{deps}", classes.display())
    });
    let out = Command::new("java")
        .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", cp])
        .arg(format!("guise.{main}"))
        .args(args)
        .output()
        .expect("running java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{main} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{main} printed no JSON ({e}):\n{stdout}"))
}
