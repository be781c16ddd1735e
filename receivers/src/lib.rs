//! Sluice's receivers. Each takes metrics in over one protocol and hands them, as `Batch`es, to its
//! pipelines; a refusal from the pipeline becomes the protocol's retryable status.

mod keys;
pub mod otlp;
pub mod prometheus;
pub mod remote_write;
pub mod runtime;

/// An HTTP client for tests (reqwest is built with rustls, which needs its crypto provider).
#[cfg(test)]
pub(crate) fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
