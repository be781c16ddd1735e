//! Compiles the vendored protos (OTLP metrics, remote_write v1 and v2) with protox, so that no system
//! `protoc` is needed, and generates the OTLP/JSON serde code with pbjson.

use prost::Message;
use std::{env, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "opentelemetry/proto/collector/metrics/v1/metrics_service.proto",
    "prometheus/v1/remote.proto",
    "prometheus/v2/types.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(PROTOS, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let descriptors = fds.encode_to_vec();
    fs::write(out.join("descriptors.bin"), &descriptors)?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .codec_path("crate::grpc_codec::OtlpCodec")
        .compile_fds(fds)?;

    // OTLP/JSON: enums as integers on output (the OTLP spec requires it; names are accepted on input),
    // unknown fields ignored. Exemplar is excluded because OTLP writes its ids as hex, not base64: its
    // serde impl is hand-written in `otlp_json.rs`.
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .ignore_unknown_fields()
        .use_integers_for_enums()
        .exclude([".opentelemetry.proto.metrics.v1.Exemplar"])
        .build(&[".opentelemetry"])?;
    Ok(())
}
