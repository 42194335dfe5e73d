//! The wasm32 side of the `transform` world: its WIT bindings, the host's imports, and the
//! export glue that [`crate::export_transform!`] expands to.

use crate::Level;
use crate::transform::{Header, Output, Record, Result, run_batch};
use std::sync::OnceLock;

#[allow(clippy::all, missing_docs, unsafe_op_in_unsafe_fn)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "transform",
        pub_export_macro: true,
        default_bindings_module: "guise_guest_sdk::transform_wasm::bindings",
        generate_all,
    });
}

use bindings::guise::runtime::{logging, transform_config, transform_types as tt};

pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => logging::Level::Trace,
        Level::Debug => logging::Level::Debug,
        Level::Info => logging::Level::Info,
        Level::Warn => logging::Level::Warn,
        Level::Error => logging::Level::Error,
    };
    logging::log(level, message);
}

/// The module's configuration, asked of the host once per instance (it is fixed per version).
pub fn config() -> &'static [(String, String)] {
    static CONFIG: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CONFIG.get_or_init(transform_config::get)
}

fn from_wit(r: tt::Record) -> Record {
    Record {
        key: r.key,
        value: r.value,
        headers: r.headers.into_iter().map(|h| Header { key: h.key, value: h.value }).collect(),
        timestamp: r.timestamp,
        offset_delta: r.offset_delta,
    }
}

/// The body of the exported `transform` function.
pub fn run<F>(batch: tt::InputBatch, f: F) -> std::result::Result<Vec<u8>, String>
where
    F: Fn(Record, &mut Output) -> Result<()>,
{
    let records = batch.records.into_iter().map(from_wit).collect();
    run_batch(f, &batch.topic, records).map(|out| crate::transform::encode_outputs(&out)).map_err(|e| e.0)
}
