//! Guise host: sockets, framing, storage and the Wasm runtime that runs the Kafka translator.
//!
//! One module per concern, with arrows pointing one way:
//! `net` (listeners, connections, framing) → `wasm` (engine, host services) → `storage` (the Log
//! port). `server` wires them together; `admin` serves health and metrics.

pub mod admin;
pub mod config;
pub mod coord;
pub mod net;
pub mod server;
pub mod storage;
pub mod wasm;
