//! Kafka Connect 4.4 workers in distributed mode, run by the tests against Guise and against
//! Apache Kafka: one JVM per worker (`org.apache.kafka.connect.cli.ConnectDistributed` under
//! `guise.Peer`, so it halts when the test binary exits), its REST API on a loopback port chosen
//! at run time, its log in a directory of its own. The connectors the tests run are the test
//! project's own (`tests/java/src/guise/LineFile*.java`), found on the worker's classpath.

use crate::java;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a worker may take to serve its REST API (JVM start-up, plugin scan, joining the
/// group, reading the internal topics) on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a graceful stop may take (tasks stop, offsets are committed, the worker leaves).
const STOP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a REST request that the worker keeps retrying (a rebalance, a forward) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The names a Connect cluster keeps its state under: its group and its three internal topics.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub bootstrap: String,
    pub group: String,
}

impl Cluster {
    /// A cluster of workers in group `group`, with internal topics named after it.
    pub fn new(bootstrap: &str, group: &str) -> Self {
        Cluster { bootstrap: bootstrap.to_string(), group: group.to_string() }
    }

    pub fn config_topic(&self) -> String {
        format!("{}-configs", self.group)
    }

    pub fn offset_topic(&self) -> String {
        format!("{}-offsets", self.group)
    }

    pub fn status_topic(&self) -> String {
        format!("{}-status", self.group)
    }

    /// The worker's properties, with its REST API on `port`.
    fn properties(&self, port: u16) -> String {
        format!(
            "bootstrap.servers={bootstrap}\n\
             group.id={group}\n\
             config.storage.topic={configs}\n\
             offset.storage.topic={offsets}\n\
             status.storage.topic={status}\n\
             config.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\n\
             status.storage.replication.factor=1\n\
             offset.storage.partitions=2\n\
             status.storage.partitions=2\n\
             listeners=http://127.0.0.1:{port}\n\
             rest.advertised.host.name=127.0.0.1\n\
             rest.advertised.port={port}\n\
             key.converter=org.apache.kafka.connect.storage.StringConverter\n\
             value.converter=org.apache.kafka.connect.storage.StringConverter\n\
             offset.flush.interval.ms=500\n\
             # Connectors on the classpath have no ServiceLoader manifests: only a scan finds them\n\
             # (service_load would not; the hybrid modes scan too, and warn).\n\
             plugin.discovery=only_scan\n\
             # A worker that left is not waited for before its work is reassigned.\n\
             scheduled.rebalance.max.delay.ms=0\n",
            bootstrap = self.bootstrap,
            group = self.group,
            configs = self.config_topic(),
            offsets = self.offset_topic(),
            status = self.status_topic(),
        )
    }
}

/// A running Connect worker; killed when dropped, unless stopped.
pub struct Worker {
    child: Child,
    pub port: u16,
    /// `worker.properties` and `worker.log`.
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding an ephemeral port")
        .local_addr()
        .expect("its address")
        .port()
}

impl Worker {
    /// Start a worker of `cluster` and wait until its REST API answers `GET /` with 200.
    pub fn start(cluster: &Cluster) -> Worker {
        crate::init_logging();
        let dir = tempfile::Builder::new().prefix("guise-connect-").tempdir().expect("a worker directory");
        let port = free_port();
        let props = dir.path().join("worker.properties");
        std::fs::write(&props, cluster.properties(port)).expect("writing worker.properties");
        let log = std::fs::File::create(dir.path().join("worker.log")).expect("creating worker.log");
        let mut cmd = java::command("384m", &["-XX:+UseSerialGC"], "guise.Peer");
        if std::env::var_os("GUISE_JAVA_LOG").is_none() {
            // The worker's log is what explains a failure: INFO shows its requests and rebalances.
            cmd.env("GUISE_JAVA_LOG", "info");
        }
        let child = cmd
            .arg(std::process::id().to_string())
            .arg("org.apache.kafka.connect.cli.ConnectDistributed")
            .arg(&props)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a second handle on worker.log"))
            .stderr(log)
            .spawn()
            .expect("starting java");
        let mut worker = Worker { child, port, dir };
        let started = Instant::now();
        loop {
            if matches!(worker.request("GET", "/", None), Ok((200, _))) {
                return worker;
            }
            if let Ok(Some(status)) = worker.child.try_wait() {
                panic!("the Connect worker exited ({status}) before it served:\n{}", worker.log_tail(60));
            }
            if started.elapsed() > START_TIMEOUT {
                panic!("the Connect worker did not serve within {START_TIMEOUT:?}:\n{}", worker.log_tail(60));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn log(&self) -> PathBuf {
        self.dir.path().join("worker.log")
    }

    /// The last `lines` lines of the worker's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// One HTTP/1.1 request to the REST API: the status and the JSON answered (`Null` for an
    /// empty body, a string for a body that is not JSON).
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<(u16, Value)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let body = body.map(Value::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no end of headers"))?;
        let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
        let status =
            head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("no status"))?;
        let mut content = raw[split + 4..].to_vec();
        if head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
            content = dechunk(&content).ok_or_else(|| bad("bad chunked body"))?;
        }
        let text = String::from_utf8_lossy(&content);
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()))
        };
        Ok((status, value))
    }

    /// `GET path`, which must answer 200.
    pub fn get(&self, path: &str) -> Value {
        match self.request("GET", path, None) {
            Ok((200, value)) => value,
            other => panic!("GET {path}: {other:?}\n{}", self.log_tail(40)),
        }
    }

    /// Create or update connector `name` (`PUT /connectors/NAME/config`), retrying while the
    /// worker cannot take it yet (joining its group, a rebalance: 409, or a timeout: 500).
    pub fn put_connector(&self, name: &str, config: &Value) -> Value {
        let path = format!("/connectors/{name}/config");
        let started = Instant::now();
        loop {
            let answer = self.request("PUT", &path, Some(config));
            match answer {
                Ok((200 | 201, value)) => return value,
                Ok((409 | 500 | 503, _)) | Err(_) if started.elapsed() < REQUEST_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(500));
                }
                other => panic!("PUT {path}: {other:?}\n{}", self.log_tail(60)),
            }
        }
    }

    /// Stop gracefully (SIGTERM: the worker stops its tasks, commits their offsets and leaves its
    /// group) and wait for the JVM to exit.
    pub fn stop(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("running kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the worker") {
                return status;
            }
            if started.elapsed() > STOP_TIMEOUT {
                panic!(
                    "the Connect worker did not stop within {STOP_TIMEOUT:?}:\n{}\n\
                     its threads that run Kafka or Connect code:\n{}",
                    self.log_tail(40),
                    kafka_threads(&pid)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The stacks of the JVM's threads that are in Kafka's or Connect's code (`jstack`), to show
/// what a stuck worker waits for.
fn kafka_threads(pid: &str) -> String {
    let dump = match Command::new("jstack").arg(pid).output() {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => return format!("(jstack failed: {e})"),
    };
    dump.split("\n\n")
        .filter(|thread| thread.contains("org.apache.kafka") || thread.contains("guise."))
        .map(|thread| thread.lines().take(25).collect::<Vec<_>>().join("\n"))
        .collect::<Vec<_>>()
        .join("\n\n")
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The body of a `Transfer-Encoding: chunked` response.
fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&raw[..end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}
