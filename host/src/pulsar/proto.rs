//! The protobuf messages of the Pulsar binary protocol (`proto/PulsarApi.proto`, package
//! `pulsar.proto`), generated at build time by prost-build from a descriptor set that protox
//! compiles (see `build_proto.rs`; no system `protoc` is involved).
//!
//! The file is proto2: prost maps `optional` fields to `Option`s but does not enforce `required`
//! fields, so a message missing one decodes with the field's default (empty string, 0). Enum
//! fields are `i32`s (use `Type::try_from(field)`); unknown values are kept, not rejected.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

include!(concat!(env!("OUT_DIR"), "/pulsar.proto.rs"));
