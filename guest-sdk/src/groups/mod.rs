//! A consumer group's state machine (Kafka's classic group protocol: join, sync, heartbeat,
//! leave, session and rebalance timeouts, the initial rebalance delay, static membership), pure:
//! no I/O, time passed in. The one copy: the host's group coordinator runs it under its locks and
//! persists what it says to persist; this SDK's native stub (`crate::stub`) runs it for the
//! translator's unit tests. Native only.

pub mod consumer;
pub mod machine;
mod value;

pub use machine::*;
pub use value::{GroupValue, MemberValue};
