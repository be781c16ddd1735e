//! A harness for component tests: a consumer that records what reaches it (and can be told to
//! refuse), and a way to read one component's counters back from its telemetry.

use crate::batch::Batch;
use crate::component::{Consumer, Refusal};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Records every batch it takes; refuses with `Refusal::full` while `refuse` is set, and says it
/// has no room ([`Consumer::ready`]) while `unready` is set.
#[derive(Default)]
pub struct Capture {
    pub batches: Mutex<Vec<Batch>>,
    pub refuse: AtomicBool,
    pub unready: AtomicBool,
}

impl Capture {
    pub fn new() -> Arc<Capture> {
        Arc::new(Capture::default())
    }

    pub fn points(&self) -> usize {
        self.batches.lock().iter().map(Batch::point_count).sum()
    }

    pub fn set_refusing(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    pub fn take(&self) -> Vec<Batch> {
        std::mem::take(&mut *self.batches.lock())
    }
}

impl Consumer for Capture {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        if self.refuse.load(Ordering::SeqCst) {
            return Err(Refusal::full("capture told to refuse"));
        }
        self.batches.lock().push(batch);
        Ok(())
    }

    fn ready(&self, _context: &crate::batch::Context, _points: usize) -> Result<(), Refusal> {
        if self.unready.load(Ordering::SeqCst) {
            return Err(Refusal::full("capture told it has no room"));
        }
        Ok(())
    }
}

/// A batch of `n` gauge points named `name` (values 0..n) under one resource and scope.
pub fn gauge_batch(name: &str, n: usize) -> Batch {
    use crate::proto::otlp::metrics::v1::*;
    let points = (0..n)
        .map(|i| NumberDataPoint {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    Batch::new(
        Default::default(),
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
}

/// An attribute of this value.
pub fn kv(
    key: &str,
    value: crate::proto::otlp::common::v1::any_value::Value,
) -> crate::proto::otlp::common::v1::KeyValue {
    use crate::proto::otlp::common::v1::{AnyValue, KeyValue};
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

/// A string attribute.
pub fn string_kv(key: &str, value: &str) -> crate::proto::otlp::common::v1::KeyValue {
    kv(
        key,
        crate::proto::otlp::common::v1::any_value::Value::StringValue(value.into()),
    )
}
