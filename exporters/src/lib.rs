//! Sluice's exporters. Each supplies `send` for one protocol and classifies failures as retryable
//! or not; the core sending engine does the queueing, retries and telemetry.

pub mod debug;
pub mod otlp;
pub mod prometheus;
pub mod remote_write;

#[cfg(test)]
mod sample_age_tests;
