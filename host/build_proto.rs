// Generates the Rust types of the Pulsar binary protocol (`proto/PulsarApi.proto`, package
// `pulsar.proto`) into `$OUT_DIR/pulsar.proto.rs`, which `src/pulsar/proto.rs` includes.
//
// No system `protoc` is needed: `protox` (a pure-Rust protobuf compiler) parses the .proto file
// into a `FileDescriptorSet` and `prost-build` generates the code from that.
//
// This file is meant to be pulled into a build script with
// `#[path = "build_proto.rs"] mod build_proto;` (or `mod build_proto { include!("build_proto.rs"); }`)
// and called as `build_proto::generate(&out_dir, &manifest_dir.join("proto"))`. It has no `use`
// items, so it also works when `include!`d at the top level of a build script.

/// The .proto file compiled, relative to `proto_dir`.
pub const PULSAR_PROTO: &str = "PulsarApi.proto";

/// Compiles `proto_dir/PulsarApi.proto` and writes the generated module to
/// `out_dir/pulsar.proto.rs` (the name prost-build derives from the package `pulsar.proto`).
/// Panics (failing the build) with the compiler's message when the .proto file is invalid.
pub fn generate(out_dir: &std::path::Path, proto_dir: &std::path::Path) {
    let proto = proto_dir.join(PULSAR_PROTO);
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([PULSAR_PROTO], [proto_dir])
        .unwrap_or_else(|e| panic!("cannot compile {}: {e:?}", proto.display()));
    prost_build::Config::new()
        .out_dir(out_dir)
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("cannot generate code for {}: {e}", proto.display()));
}
