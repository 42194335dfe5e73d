//! The Kafka front end: a connection's request loop and the Kafka frame header (sans-I/O).
//! Everything past the header is the translator's.

pub mod connection;
pub mod frame;
