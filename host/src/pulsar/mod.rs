//! The Pulsar binary protocol, sans-I/O: the protobuf types ([`proto`]), the framing of commands
//! and message payloads ([`frame`]), batched and compressed message payloads ([`batch`]), and
//! the one-to-one mapping of Kafka records and Pulsar messages ([`mapping`]).
//!
//! Pulsar clients speak a protobuf-based protocol over TCP
//! (<https://pulsar.apache.org/docs/next/developing-binary-protocol/>): every frame is a
//! `BaseCommand`, and the commands that carry a message (`SEND` from producers, `MESSAGE` to
//! consumers) are followed by the message's `MessageMetadata` and payload, guarded by a CRC32C.
//! A producer usually sends a batch of messages in one payload, optionally compressed.
//!
//! Nothing here does I/O: the decoder works on bytes the caller has read into a buffer and
//! returns `Ok(None)` until a whole frame is there; the encoders return the bytes to write. The
//! connection handling (sockets, tokio, timeouts) lives with the caller, so the codec is tested
//! without a network, cannot block, and can be driven from any runtime, or from a fuzzer.
//!
//! Input comes from untrusted clients: sizes are checked against the configured maximum and
//! against the bytes actually present before anything is allocated from them, decompression
//! stops at a caller-given bound, and no input makes the codec panic.

pub mod batch;
pub mod frame;
pub mod mapping;
pub mod proto;
pub mod topic;
