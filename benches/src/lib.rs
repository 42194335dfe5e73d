//! Shared by the benchmark binaries: a `guise serve` child process on free ports.

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

    pub fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}
