//! Generates the KEDA externalscaler client and server at build time with a
//! vendored protoc, so building needs no protoc on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &["externalscaler.proto"], &["."])?;
    println!("cargo:rerun-if-changed=externalscaler.proto");
    Ok(())
}
