//! Builds the guest modules to `wasm32-wasip2` as part of the ordinary `cargo build`, so the
//! default Kafka translator is embedded in the `guise` binary with no manual step (see
//! `tools/build/guests.rs`), and compiles the Pulsar protocol's `.proto`.

use std::env;
use std::path::PathBuf;

/// Guest crates built with the host: (package, wasm file name produced by cargo). The Kafka
/// translator is embedded in the binary; the `guise-transform-*` crates (`modules/transforms/`)
/// are example tenant message transforms (the `transform` world), published to
/// `target/modules/` for deployment, never embedded. Test-only guests (`guise-faulty`,
/// `guise-transform-chaos`) are built by the test fixtures (`tests/guests`), not here.
const GUESTS: &[(&str, &str)] = &[
    ("guise-kafka", "guise_kafka.wasm"),
    ("guise-transform-mask-card", "guise_transform_mask_card.wasm"),
    ("guise-transform-require-header", "guise_transform_require_header.wasm"),
    ("guise-transform-route-by-key", "guise_transform_route_by_key.wasm"),
    ("guise-transform-validate-json", "guise_transform_validate_json.wasm"),
];

#[path = "build_proto.rs"]
mod build_proto;

#[path = "../tools/build/guests.rs"]
mod guests;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());

    // The Pulsar binary protocol's messages (host/proto/PulsarApi.proto), for `host::pulsar`.
    build_proto::generate(&out_dir, &manifest_dir.join("proto"));

    guests::build(&workspace, &out_dir, GUESTS);
}
