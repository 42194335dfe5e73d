//! Host bindings of the `guise:runtime` WIT package.
//!
//! Host functions are not trappable: guest-visible failures are Kafka error codes in the WIT
//! results, and host-internal failures are mapped to error codes too (logged), so a guest can
//! always answer its client.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "protocol-handler",
    // Storage and coordinator calls are awaited on the guest's fiber (see `Runtime::handle`).
    imports: {
        "guise:runtime/log": async,
        "guise:runtime/producers": async,
        "guise:runtime/groups": async,
        "guise:runtime/acls": async,
        "guise:runtime/scram": async,
        "guise:runtime/quotas": async,
        "guise:runtime/transactions": async,
    },
    exports: { default: async },
    with: {
        "guise:runtime/types.buffer": crate::wasm::state::BufferHandle,
    },
});

pub use guise::runtime::{
    acls, cluster, connection, groups, handler_types, log, logging, producers, quotas, scram, transactions,
    types,
};
