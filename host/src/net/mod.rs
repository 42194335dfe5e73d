//! Sockets and Kafka framing. `net` knows Kafka only as far as the frame header (size, api key,
//! version, correlation id); everything else is the translator's.

pub mod connection;
pub mod frame;
pub mod listener;

pub use listener::{Listener, NetConfig};
