//! Sluice's core: the data model, generated protos, config loading, component traits, the topology
//! runtime, exporter queues and the sending engine, and self-telemetry.

pub mod backoff;
pub mod batch;
pub mod component;
pub mod compression;
pub mod config;
pub mod disk;
pub mod grpc_codec;
pub mod ingress;
pub mod memory;
pub mod otlp_json;
pub mod otlp_protobuf;
pub mod prometheus;
pub mod proto;
pub mod protowire;
pub mod queue;
pub mod sending;
pub mod telemetry;
pub mod tenancy;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
pub mod topology;

pub use batch::{Batch, Context};
pub use component::{Consumer, Refusal, RefusalKind};
