//! A `guise serve` child process, for the tests that drive the real binary (a `kill -9` is a
//! real crash only for a process of its own). Shared by the host's own tests
//! (`host/tests/common`, which includes this file) and the end-to-end tests (`guise_tests`).
//!
//! The host binds port 0 (or the ports it is given, on a restart) and the test reads the bound
//! addresses from its start-up log line. Picking a free port in the test and handing it to the
//! child raced with every other process on the machine that binds or connects meanwhile.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `guise serve`; killed when dropped.
pub struct Host {
    pub child: Child,
    /// Its log (stdout, info level, no colours).
    pub log: PathBuf,
    pub kafka: u16,
    pub admin: u16,
}

impl Host {
    /// `bin serve` (the `guise` binary) on `data`, Kafka on `kafka` and the admin API on `admin`
    /// (0: any port), with extra environment `env`. Returns once it serves, with the ports it
    /// bound.
    pub fn start_binary(bin: &Path, data: &Path, kafka: u16, admin: u16, env: &[(&str, &str)]) -> Host {
        static STARTS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data.with_file_name(format!("guise-{n}.log"));
        let mut child = Command::new(bin)
            .args(["serve", "--kafka-addr", &format!("127.0.0.1:{kafka}")])
            .args(["--admin-addr", &format!("127.0.0.1:{admin}")])
            .arg("--data-dir")
            .arg(data)
            .env("GUISE_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start guise");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            // Whole lines only: the last one may be half written.
            let mut lines = text.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            if let Some(line) = lines.find(|l| l.contains("guise is serving Kafka")) {
                let port = |key: &str| -> u16 {
                    let field = line.split_whitespace().find_map(|w| w.strip_prefix(key)).expect(line);
                    field.rsplit(':').next().unwrap().parse().expect(line)
                };
                let (kafka, admin) = (port("kafka_addr="), port("admin_addr="));
                return Host { child, log, kafka, admin };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!("guise exited before serving ({status}); its log:\n{text}");
            }
            assert!(Instant::now() < deadline, "guise did not start serving; its log:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (a clean stop); returns the log.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap()
    }

    /// SIGKILL: a crash.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
