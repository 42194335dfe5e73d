//! kafka-python, PyPI's pure-Python Kafka client, driven through
//! `tests/python/kafka_scenarios.py`. The package is installed on first use into the target
//! directory (`pip install --target`), so a fresh clone needs nothing by hand.

use crate::target_dir;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The release the tests run: the newest 2.x (it opens with ApiVersions v4 and steps down as
/// KIP-511 says when a broker answers UNSUPPORTED_VERSION).
pub const KAFKA_PYTHON: &str = "kafka-python==2.3.3";

/// The directory holding the installed `kafka` package (for PYTHONPATH).
pub fn site() -> PathBuf {
    static SITE: OnceLock<PathBuf> = OnceLock::new();
    SITE.get_or_init(|| {
        let dir = target_dir().join("kafka-python").join(KAFKA_PYTHON.replace("==", "-"));
        if dir.join("kafka").join("__init__.py").exists() {
            return dir;
        }
        // Install beside it, then rename: test binaries running at once never see half an install.
        let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--no-deps",
            ])
            .arg("--target")
            .arg(&tmp)
            .arg(KAFKA_PYTHON)
            .status()
            .expect("running python3 -m pip (the kafka-python tests need CPython 3 with pip)");
        assert!(status.success(), "pip could not install {KAFKA_PYTHON}");
        std::fs::create_dir_all(dir.parent().expect("has a parent")).expect("creating the target dir");
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another test binary installed it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(dir.join("kafka").join("__init__.py").exists(), "{KAFKA_PYTHON} is not in {}", dir.display());
        dir
    })
    .clone()
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
