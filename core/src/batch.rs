//! The unit that flows through a pipeline: a tenant context plus metrics in OTLP's shape.

use crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::otlp::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics, metric::Data};
use crate::tenancy::TenantInfo;
use std::sync::Arc;

/// Who a batch belongs to and what the receiver learned about the request it came in.
/// Batches with different contexts are never merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Context {
    /// The tenant, once decided (by authentication, a trusted header, or a static setting).
    pub tenant: Option<Arc<str>>,
    /// What the tenants file says about the tenant (SLA tier, limits), when it was authenticated
    /// by one.
    pub tenant_info: Option<Arc<TenantInfo>>,
    /// The exporters a `route` processor chose for this batch (ids as written in the config);
    /// `None`: every exporter of the pipeline.
    pub route: Option<Arc<[String]>>,
    /// Request headers the receiver was told to carry (`metadata_keys`), keys lowercased, sorted.
    pub metadata: Vec<(Arc<str>, Arc<str>)>,
}

impl Context {
    /// The tenant as a telemetry label value (empty when there is none).
    pub fn tenant_label(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }

    /// The SLA tier from the tenants file, if any.
    pub fn sla_tier(&self) -> Option<&str> {
        self.tenant_info
            .as_ref()
            .and_then(|i| i.sla_tier.as_deref())
    }

    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| &**v)
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub context: Context,
    pub resource_metrics: Vec<ResourceMetrics>,
}

impl Batch {
    pub fn new(context: Context, resource_metrics: Vec<ResourceMetrics>) -> Self {
        Batch {
            context,
            resource_metrics,
        }
    }

    pub fn from_request(context: Context, req: ExportMetricsServiceRequest) -> Self {
        Batch {
            context,
            resource_metrics: req.resource_metrics,
        }
    }

    pub fn to_request(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: self.resource_metrics.clone(),
        }
    }

    /// The batch as an encoded `ExportMetricsServiceRequest`, written from the batch itself (no
    /// request message is built), each message measured once: the same bytes as
    /// `to_request().encode_to_vec()`.
    pub fn encode_request(&self) -> Vec<u8> {
        encode::encode_request(&self.resource_metrics)
    }

    pub fn into_request(self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: self.resource_metrics,
        }
    }

    /// Data points in the batch (a histogram or summary point counts as one).
    pub fn point_count(&self) -> usize {
        self.resource_metrics.iter().map(resource_points).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.point_count() == 0
    }

    /// Appends another batch's metrics (the contexts must be equal; the caller checks).
    pub fn append(&mut self, other: Batch) {
        self.resource_metrics.extend(other.resource_metrics);
    }

    /// Removes the first `max_points` data points (whole resources, scopes and metrics where they fit,
    /// a metric's leading points where it does not) and returns them as a batch of the same context.
    pub fn split_off_front(&mut self, max_points: usize) -> Batch {
        let mut head = Vec::new();
        let mut left = max_points;
        while left > 0 && !self.resource_metrics.is_empty() {
            let n = resource_points(&self.resource_metrics[0]);
            if n <= left {
                head.push(self.resource_metrics.remove(0));
                left -= n;
                continue;
            }
            let rm = &mut self.resource_metrics[0];
            let mut scopes = Vec::new();
            while left > 0 && !rm.scope_metrics.is_empty() {
                let n = scope_points(&rm.scope_metrics[0]);
                if n <= left {
                    scopes.push(rm.scope_metrics.remove(0));
                    left -= n;
                    continue;
                }
                let sm = &mut rm.scope_metrics[0];
                let mut metrics = Vec::new();
                while left > 0 && !sm.metrics.is_empty() {
                    let n = metric_points(&sm.metrics[0]);
                    if n <= left {
                        metrics.push(sm.metrics.remove(0));
                        left -= n;
                    } else {
                        metrics.push(split_metric(&mut sm.metrics[0], left));
                        left = 0;
                    }
                }
                scopes.push(ScopeMetrics {
                    scope: sm.scope.clone(),
                    metrics,
                    schema_url: sm.schema_url.clone(),
                });
            }
            head.push(ResourceMetrics {
                resource: rm.resource.clone(),
                scope_metrics: scopes,
                schema_url: rm.schema_url.clone(),
            });
        }
        Batch {
            context: self.context.clone(),
            resource_metrics: head,
        }
    }
}

pub fn resource_points(rm: &ResourceMetrics) -> usize {
    rm.scope_metrics.iter().map(scope_points).sum()
}

pub fn scope_points(sm: &ScopeMetrics) -> usize {
    sm.metrics.iter().map(metric_points).sum()
}

pub fn metric_points(m: &Metric) -> usize {
    match &m.data {
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }
}

/// Moves the first `n` points of `m` into a new metric with the same name, unit, type and metadata.
fn split_metric(m: &mut Metric, n: usize) -> Metric {
    let data = match &mut m.data {
        Some(Data::Gauge(g)) => Some(Data::Gauge(crate::proto::otlp::metrics::v1::Gauge {
            data_points: g.data_points.drain(..n).collect(),
        })),
        Some(Data::Sum(s)) => Some(Data::Sum(crate::proto::otlp::metrics::v1::Sum {
            data_points: s.data_points.drain(..n).collect(),
            aggregation_temporality: s.aggregation_temporality,
            is_monotonic: s.is_monotonic,
        })),
        Some(Data::Histogram(h)) => Some(Data::Histogram(
            crate::proto::otlp::metrics::v1::Histogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::ExponentialHistogram(h)) => Some(Data::ExponentialHistogram(
            crate::proto::otlp::metrics::v1::ExponentialHistogram {
                data_points: h.data_points.drain(..n).collect(),
                aggregation_temporality: h.aggregation_temporality,
            },
        )),
        Some(Data::Summary(s)) => Some(Data::Summary(crate::proto::otlp::metrics::v1::Summary {
            data_points: s.data_points.drain(..n).collect(),
        })),
        None => None,
    };
    Metric {
        name: m.name.clone(),
        description: m.description.clone(),
        unit: m.unit.clone(),
        data,
        metadata: m.metadata.clone(),
    }
}

pub mod age;
mod encode;

#[cfg(test)]
mod tests;
