//! Building guest components for `wasm32-wasip2` from a build script: shared by the host's
//! build (the embedded translator and the published example transforms) and the test fixtures'
//! (`tests/guests`: test-only guests). Included with `#[path]`, since build scripts cannot share
//! a crate without making it a build dependency of both.
//!
//! rustup installs the targets listed in `rust-toolchain.toml` only when it installs the
//! toolchain itself; when the target is missing here, this adds it.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-wasip2";

/// Build each (package, wasm file) of `guests` with the `guest` profile, copy the file into
/// `out_dir` and publish it in `<target>/modules/`, where operators and benchmarks find it.
pub fn build(workspace: &Path, out_dir: &Path, guests: &[(&str, &str)]) {
    for dir in ["wit", "guest-sdk/src", "guest-sdk/Cargo.toml", "modules", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=GUISE_GUEST_TARGET_DIR");
    ensure_target();

    let outer = outer_target_dir(workspace, out_dir);
    let target_dir =
        env::var_os("GUISE_GUEST_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| outer.join("guests"));
    // Where operators find the built components to deploy (`guise module deploy kafka
    // target/modules/guise_kafka.wasm`), as the README says.
    let published = outer.join("modules");
    let _ = std::fs::create_dir_all(&published);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One cargo run per guest: features are unified within a run, and a guest that wraps the
    // Kafka translator needs it without its exports.
    for (package, file) in guests {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(workspace)
            .args(["build", "--target", TARGET, "--profile", "guest", "-p", package])
            .arg("--manifest-path")
            .arg(workspace.join("Cargo.toml"));
        // The outer build's flags, wrappers and jobserver are not meant for the guest build.
        for var in [
            "RUSTFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
            "RUSTC_WRAPPER",
            "CARGO_BUILD_TARGET",
            "CARGO_MAKEFLAGS",
            "MAKEFLAGS",
            "MFLAGS",
            "CARGO_PRIMARY_PACKAGE",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_PROFILE_DEV_DEBUG",
        ] {
            cmd.env_remove(var);
        }
        // Set last: the loop above clears the outer build's variables.
        cmd.env("CARGO_TARGET_DIR", &target_dir);
        let status = cmd.status().expect("failed to run cargo for the guest modules");
        if !status.success() {
            panic!("building guest module {package} for {TARGET} failed (see the output above)");
        }
        // Copy at once: a later guest that depends on this crate rebuilds its cdylib, with other
        // features, in the same place.
        let built = target_dir.join(TARGET).join("guest").join(file);
        let dest = out_dir.join(file);
        std::fs::copy(&built, &dest)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), dest.display()));
        if let Err(e) = std::fs::copy(&built, published.join(file)) {
            println!("cargo:warning=could not copy {} to {}: {e}", built.display(), published.display());
        }
    }
}

/// `rustup target add wasm32-wasip2` when the toolchain's sysroot lacks it.
fn ensure_target() {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = sysroot.as_ref().is_some_and(|s| s.join("lib/rustlib").join(TARGET).join("lib").is_dir());
    if installed {
        return;
    }
    println!("cargo:warning=adding the {TARGET} target with rustup (first build on this machine)");
    let status = Command::new("rustup").args(["target", "add", TARGET]).status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("`rustup target add {TARGET}` failed with {s}; install the target and build again"),
        Err(e) => panic!(
            "the {TARGET} target is missing and rustup could not be run ({e}); install the target and build again"
        ),
    }
}

/// The outer build's target directory: `CARGO_TARGET_DIR`, or the ancestor of OUT_DIR that
/// holds the profile directories (OUT_DIR is `<target>/[<triple>/]<profile>/build/<pkg>/out`).
fn outer_target_dir(workspace: &Path, out_dir: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { workspace.join(dir) };
    }
    out_dir
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| workspace.join("target"))
}
