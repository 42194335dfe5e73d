//! The Kafka front end: a connection's request loop, the Kafka frame header and, on SASL
//! listeners, the authentication that runs before any request reaches the translator (both
//! sans-I/O). Everything else past the header is the translator's.

pub mod connection;
pub mod frame;
pub mod sasl;
