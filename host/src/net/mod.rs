//! The front ends: sockets and the protocols' framing. `kafka` knows Kafka only as far as the
//! frame header (size, api key, version, correlation id) and hands every request to the
//! translator; `pulsar` serves the Pulsar binary protocol over the log with the sans-I/O codec
//! of `crate::pulsar`. `listener` accepts connections for both (and for the admin API), over `tls` where configured.

pub mod kafka;
pub mod listener;
pub mod principals;
pub mod pulsar;
pub mod tls;

pub use listener::{Listener, NetConfig};
