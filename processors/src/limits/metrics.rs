//! The limits processor's self-telemetry: points refused per tenant and reason, points dropped for
//! label limits, and each tenant's active series. The families are Sluice's own
//! (`sluice_core::telemetry`), served on `/metrics`.

use prometheus_client::metrics::counter::Counter;
use sluice_core::telemetry::{
    ProcessorLabels, ProcessorTenantLabels, ProcessorTenantReasonLabels, Telemetry,
};
use std::sync::Arc;

pub struct LimitsMetrics {
    telemetry: Arc<Telemetry>,
    processor: String,
    pipeline: String,
    label_dropped: Counter,
}

impl LimitsMetrics {
    pub fn new(telemetry: Arc<Telemetry>, processor: &str, pipeline: &str) -> Self {
        let label_dropped = telemetry
            .processor_dropped
            .get_or_create(&ProcessorLabels {
                processor: processor.to_string(),
                pipeline: pipeline.to_string(),
                reason: "label_limit".into(),
            })
            .clone();
        LimitsMetrics {
            telemetry,
            processor: processor.to_string(),
            pipeline: pipeline.to_string(),
            label_dropped,
        }
    }

    pub fn label_dropped(&self, points: u64) {
        if points > 0 {
            self.label_dropped.inc_by(points);
        }
    }

    pub fn refused(&self, tenant: &str, reason: &str, points: u64) {
        self.telemetry
            .limits_refused
            .get_or_create(&ProcessorTenantReasonLabels {
                processor: self.processor.clone(),
                pipeline: self.pipeline.clone(),
                tenant: tenant.to_string(),
                reason: reason.to_string(),
            })
            .inc_by(points);
    }

    pub fn active_series(&self, tenant: &str, n: usize) {
        self.telemetry
            .limits_active_series
            .get_or_create(&self.tenant_labels(tenant))
            .set(n as i64);
    }

    /// Removes a forgotten tenant's gauge.
    pub fn forget(&self, tenant: &str) {
        self.telemetry
            .limits_active_series
            .remove(&self.tenant_labels(tenant));
    }

    fn tenant_labels(&self, tenant: &str) -> ProcessorTenantLabels {
        ProcessorTenantLabels {
            processor: self.processor.clone(),
            pipeline: self.pipeline.clone(),
            tenant: tenant.to_string(),
        }
    }
}
