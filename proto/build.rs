//! Compiles proto/aap/v1/*.proto and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "aap/v1/types.proto",
    "aap/v1/answers.proto",
    "aap/v1/evaluations.proto",
    "aap/v1/sessions.proto",
    "aap/v1/admin.proto",
    "aap/v1/logins.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tonic-prost-build does not announce the files it reads: without this, editing a proto
    // would not rebuild the crate.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let well_known = protoc_bin_vendored::include_path()?;
    let well_known = well_known.to_str().ok_or("protoc include path is not UTF-8")?;
    let includes = [".", well_known];
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        // Smaller buffers than tonic's own codec (src/codec.rs says why).
        .codec_path("crate::Codec")
        .file_descriptor_set_path(out_dir.join("aap_descriptor.bin"))
        .compile_with_config(config, PROTOS, &includes)?;
    Ok(())
}
