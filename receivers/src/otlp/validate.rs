//! Which OTLP points are acceptable. A metric without a name or without data, or a histogram point
//! whose bucket counts do not match its bounds, is left out and reported back to the client as a
//! partial success; everything else passes untouched.

use sluice_core::batch::metric_points;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::metrics::v1::{Metric, metric::Data};

pub struct Rejected {
    pub points: u64,
    pub message: String,
}

pub fn sanitize(
    mut req: ExportMetricsServiceRequest,
) -> (ExportMetricsServiceRequest, Option<Rejected>) {
    let mut points = 0u64;
    let mut first: Option<String> = None;
    for rm in &mut req.resource_metrics {
        for sm in &mut rm.scope_metrics {
            sm.metrics.retain_mut(|m| match check_metric(m) {
                Ok(bad) => {
                    if bad > 0 {
                        points += bad;
                        first.get_or_insert_with(|| {
                            format!("metric {:?}: histogram points whose bucket_counts do not have one more entry than explicit_bounds", m.name)
                        });
                    }
                    true
                }
                Err(msg) => {
                    points += metric_points(m) as u64;
                    first.get_or_insert(msg);
                    false
                }
            });
        }
    }
    let rejected = first.map(|message| Rejected { points, message });
    (req, rejected)
}

/// `Err` drops the whole metric; `Ok(n)` says how many of its points were removed.
fn check_metric(m: &mut Metric) -> Result<u64, String> {
    if m.name.is_empty() {
        return Err("a metric has an empty name".into());
    }
    match &mut m.data {
        None => Err(format!(
            "metric {:?} has no data (gauge, sum, histogram, exponential_histogram or summary)",
            m.name
        )),
        Some(Data::Histogram(h)) => {
            let before = h.data_points.len();
            h.data_points.retain(|p| {
                p.bucket_counts.is_empty() || p.bucket_counts.len() == p.explicit_bounds.len() + 1
            });
            Ok((before - h.data_points.len()) as u64)
        }
        Some(_) => Ok(0),
    }
}
