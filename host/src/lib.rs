//! Guise host: sockets, framing, storage and the Wasm runtime that runs the Kafka translator.
//!
//! One module per concern, with arrows pointing one way:
//! `net` (listeners, connections, framing) → `wasm` (engine, host services) → `storage` (the Log
//! port). `transform` runs tenant message transforms on the produce path.
//! `server` wires them together; `admin` serves health, metrics, modules and transforms.

pub mod acl;
pub mod admin;
pub mod cluster;
pub mod config;
pub mod coord;
pub mod logs;
pub mod net;
pub mod pulsar;
pub mod quota;
pub mod record;
pub mod scram;
pub mod server;
pub mod storage;
pub mod tenant;
pub mod transform;
pub mod txn;
pub mod wasm;
