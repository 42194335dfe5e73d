//! A `guise serve` child process for the tests that drive the real binary: the shared
//! `Host` (`tests/src/host_process.rs`), started with this package's `guise` binary.

#![allow(dead_code)] // each test file uses a part of it

#[path = "../../../tests/src/host_process.rs"]
mod host_process;
pub use host_process::Host;

impl Host {
    /// `guise serve` on `data`, Kafka on `kafka` and the admin API on `admin` (0: any port), with
    /// extra environment `env`. Returns once it serves, with the ports it bound.
    pub fn start(data: &std::path::Path, kafka: u16, admin: u16, env: &[(&str, &str)]) -> Host {
        Host::start_binary(std::path::Path::new(env!("CARGO_BIN_EXE_guise")), data, kafka, admin, env)
    }
}
