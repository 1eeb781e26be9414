//! Compiles `proto/gomote.proto` into Rust (client and server) with protox,
//! a pure-Rust protobuf compiler, so building never needs a system `protoc`.

use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=proto/gomote.proto");
    let fds = protox::compile(["gomote.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
