//! Builds the test-only guests to `wasm32-wasip2` when a test or benchmark needs them (this
//! crate is a dev-dependency of the host and a dependency of the test and bench crates), so that
//! `cargo build` and `cargo run -- serve` do not build them.

use std::env;
use std::path::PathBuf;

const GUESTS: &[(&str, &str)] =
    &[("guise-faulty", "guise_faulty.wasm"), ("guise-transform-chaos", "guise_transform_chaos.wasm")];

#[path = "../../tools/build/guests.rs"]
mod guests;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    guests::build(&workspace, &out_dir, GUESTS);
}
