//! Test-only guest components, built by this crate's build script for the tests and benchmarks
//! that load them (and published in `target/modules/` beside the others):
//!
//! - `guise_faulty.wasm` (`modules/faulty`): the Kafka translator, except that Produce requests
//!   from client id `fault:trap`, `fault:loop` or `fault:oom` trap, never return, or exhaust
//!   memory;
//! - `guise_transform_chaos.wasm` (`modules/transforms/chaos`): a transform whose `mode`
//!   setting makes it pass, drop, trap, loop, and so on.

/// The deliberately broken translator, by path (its bytes are not embedded anywhere).
pub const FAULTY_TRANSLATOR_PATH: &str = concat!(env!("OUT_DIR"), "/guise_faulty.wasm");

/// The chaos transform, by path.
pub const CHAOS_TRANSFORM_PATH: &str = concat!(env!("OUT_DIR"), "/guise_transform_chaos.wasm");

/// The directory holding both.
pub const DIR: &str = env!("OUT_DIR");
