//! Exporters `otlp` (OTLP/gRPC) and `otlp_http` (OTLP/HTTP), with the retry rules of the OTLP
//! specification.

mod config;
mod grpc;
mod http;
mod precompressed;
mod request;

pub use config::{HttpEncoding, OtlpGrpcExporterConfig, OtlpHttpExporterConfig};
pub(crate) use http::parse_retry_after;

#[cfg(test)]
mod tests;
