//! The Wasm runtime: engine, the translator component, tenant transforms, limits, and the host
//! side of the WIT imports. It knows nothing of sockets: `net` hands it a frame and gets back an outcome.

mod admission;
mod bindings;
mod engine;
mod host_acls;
mod host_groups;
mod host_impl;
mod host_producers;
mod host_quotas;
mod host_scram;
mod host_txn;
mod module;
mod park;
pub mod registry;
mod runtime;
mod state;
pub mod transform;
mod warm;

pub use admission::{CONTROL_APIS, CONTROL_SLOTS};
pub use engine::Compiler;
pub use module::{Module, ModuleId, ModuleStats, StatsSnapshot};
pub use park::{Executed, Timed, charge, charged_within};
pub use registry::{ModuleView, Registry, RegistryConfig, RegistryError, VersionView};
pub use runtime::{GuestFailure, GuestLimits, Handled, Runtime, WasmError};
pub use state::{ANONYMOUS, ConnInfo, HostContext, Observed, RequestInfo, WakeKey};
pub use transform::{TransformEngine, TransformLimits, TransformModule};

/// Where the build put the guest components (the example transforms, `guise_transform_*.wasm`),
/// for tests and benchmarks that deploy them. Test-only guests come from `guise-test-guests`.
pub const GUEST_DIR: &str = env!("OUT_DIR");

/// The Kafka translator built by `host/build.rs` for `wasm32-wasip2` and embedded in the binary.
pub const DEFAULT_TRANSLATOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/guise_kafka.wasm"));
