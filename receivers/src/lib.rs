//! Sluice's receivers. Each takes metrics in over one protocol and hands them, as `Batch`es, to its
//! pipelines; a refusal from the pipeline becomes the protocol's retryable status.

pub mod otlp;
pub mod remote_write;
