//! Compiles the .proto files under proto/ with protox (pure Rust, no system protoc) and
//! generates prost messages plus tonic clients and servers.

const PROTOS: [&str; 3] = [
    "proto/istio/v1/auth/ca.proto",
    "proto/envoy/service/discovery/v3/discovery.proto",
    "proto/istio/workload/workload.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let descriptors = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Connecting is the caller's business (its own TLS), so no `connect()` helpers.
        .build_transport(false)
        .compile_fds(descriptors)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
