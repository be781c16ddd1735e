//! A queued batch as a record's payload: the OTLP `ResourceMetrics` as protobuf and the part of
//! its context that sending needs (tenant, SLA tier, metadata, route). Limits from the tenants
//! file are not kept: they acted at the receiver.

use crate::batch::{Batch, Context};
use crate::proto::otlp::metrics::v1::ResourceMetrics;
use crate::tenancy::TenantInfo;
use prost::Message;
use std::sync::Arc;

#[derive(Clone, PartialEq, Message)]
struct StoredBatch {
    #[prost(string, optional, tag = "1")]
    tenant: Option<String>,
    #[prost(string, optional, tag = "2")]
    sla_tier: Option<String>,
    /// Set when the batch carries a route (which may be empty).
    #[prost(bool, tag = "3")]
    routed: bool,
    #[prost(string, repeated, tag = "4")]
    route: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    metadata: Vec<StoredPair>,
    #[prost(message, repeated, tag = "6")]
    resource_metrics: Vec<ResourceMetrics>,
}

#[derive(Clone, PartialEq, Message)]
struct StoredPair {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

/// The payload of `batch`'s record.
pub fn encode(batch: &Batch) -> Vec<u8> {
    let c = &batch.context;
    let head = StoredBatch {
        tenant: c.tenant.as_deref().map(str::to_string),
        sla_tier: c.sla_tier().map(str::to_string),
        routed: c.route.is_some(),
        route: c.route.iter().flat_map(|r| r.iter().cloned()).collect(),
        metadata: c
            .metadata
            .iter()
            .map(|(k, v)| StoredPair {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect(),
        resource_metrics: Vec::new(),
    };
    let mut out = Vec::with_capacity(
        head.encoded_len()
            + batch
                .resource_metrics
                .iter()
                .map(|rm| prost::encoding::message::encoded_len(6, rm))
                .sum::<usize>(),
    );
    head.encode_raw(&mut out);
    for rm in &batch.resource_metrics {
        prost::encoding::message::encode(6, rm, &mut out);
    }
    out
}

/// The batch a payload holds, or why it cannot be read.
pub fn decode(payload: &[u8]) -> Result<Batch, prost::DecodeError> {
    let s = StoredBatch::decode(payload)?;
    let context = Context {
        tenant: s.tenant.map(Arc::from),
        tenant_info: s.sla_tier.map(|tier| {
            Arc::new(TenantInfo {
                sla_tier: Some(tier.into()),
                ..Default::default()
            })
        }),
        route: s.routed.then(|| s.route.into()),
        metadata: s
            .metadata
            .into_iter()
            .map(|p| (Arc::from(p.key), Arc::from(p.value)))
            .collect(),
    };
    Ok(Batch::new(context, s.resource_metrics))
}
