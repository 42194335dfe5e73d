//! The official Pulsar client — libpulsar, the C++ client, as PyPI's `pulsar-client` wheel ships
//! it — driven through `tests/python/pulsar_scenarios.py`. The wheel is installed on first use
//! into the target directory (`pip install --target`), so a fresh clone needs nothing by hand.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The wheel the tests run (3.13.0 ships libpulsar 4.x; cp311 manylinux_2_28 builds exist).
pub const PULSAR_CLIENT: &str = "pulsar-client==3.13.0";

/// The directory holding the installed `pulsar` package (for PYTHONPATH).
pub fn site() -> PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| crate::pip::site("pulsar-client-py", PULSAR_CLIENT, "pulsar", false)).clone()
}

/// Run one scenario of `pulsar_scenarios.py` and return the JSON it printed; panics with the
/// script's output when it fails.
pub fn scenario(name: &str, url: &str, topic: &str, args: &[&str]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("pulsar_scenarios.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(name)
        .arg(url)
        .arg(topic)
        .args(args)
        .env("PYTHONPATH", site())
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scenario {name} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("scenario {name} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}
