//! kafka-python, PyPI's pure-Python Kafka client, driven through
//! `tests/python/kafka_scenarios.py`. The package is installed on first use into the target
//! directory (`pip install --target`), so a fresh clone needs nothing by hand.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The release the tests run: the newest 2.x (it opens with ApiVersions v4 and steps down as
/// KIP-511 says when a broker answers UNSUPPORTED_VERSION).
pub const KAFKA_PYTHON: &str = "kafka-python==2.3.3";

/// The directory holding the installed `kafka` package (for PYTHONPATH).
pub fn site() -> PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| crate::pip::site("kafka-python", KAFKA_PYTHON, "kafka", true)).clone()
}

/// Run one scenario of `kafka_scenarios.py` with `config` (the listener, the login and the
/// scenario's own settings) and return the JSON it printed last; panics with the script's
/// output when it fails.
pub fn scenario(name: &str, config: &serde_json::Value) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python").join("kafka_scenarios.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(name)
        .arg(config.to_string())
        .env("PYTHONPATH", site())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // What kafka-python logged (warnings and errors), in the test's captured output.
    eprint!("{stderr}");
    assert!(out.status.success(), "scenario {name} failed ({}):\n{stdout}\n{stderr}", out.status);
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("scenario {name} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}
