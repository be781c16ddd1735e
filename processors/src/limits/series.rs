//! Series identity for `max_series`: a hash of the resource attributes, the metric name and the
//! data point's attributes, each set hashed independently of its order.

use hashbrown::DefaultHashBuilder;
use sluice_core::batch::Batch;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use std::hash::{BuildHasher, Hash, Hasher};

/// Hashes series with one (per-process random) seed.
#[derive(Default)]
pub struct SeriesHasher {
    state: DefaultHashBuilder,
}

impl SeriesHasher {
    /// Appends the series hash of every data point of `batch` to `out`, in order.
    pub fn hash_batch(&self, batch: &Batch, out: &mut Vec<u64>) {
        for rm in &batch.resource_metrics {
            let resource = rm
                .resource
                .as_ref()
                .map_or(0, |r| self.attributes(&r.attributes));
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    let metric = self.state.hash_one((resource, m.name.as_str()));
                    macro_rules! points {
                        ($points:expr) => {
                            out.extend($points.iter().map(|p| {
                                self.state
                                    .hash_one((metric, self.attributes(&p.attributes)))
                            }))
                        };
                    }
                    match &m.data {
                        Some(Data::Gauge(g)) => points!(g.data_points),
                        Some(Data::Sum(s)) => points!(s.data_points),
                        Some(Data::Histogram(h)) => points!(h.data_points),
                        Some(Data::ExponentialHistogram(h)) => points!(h.data_points),
                        Some(Data::Summary(s)) => points!(s.data_points),
                        None => {}
                    }
                }
            }
        }
    }

    /// An attribute set's hash, the same in any order (a sum of each pair's hash).
    fn attributes(&self, attrs: &[KeyValue]) -> u64 {
        attrs.iter().fold(0u64, |sum, kv| {
            let mut h = self.state.build_hasher();
            kv.key.hash(&mut h);
            if let Some(v) = &kv.value {
                hash_value(v, &mut h);
            }
            sum.wrapping_add(h.finish())
        })
    }
}

fn hash_value(v: &AnyValue, h: &mut impl Hasher) {
    match &v.value {
        None => h.write_u8(0),
        Some(any_value::Value::StringValue(s)) => {
            h.write_u8(1);
            s.hash(h);
        }
        Some(any_value::Value::BoolValue(b)) => {
            h.write_u8(2);
            b.hash(h);
        }
        Some(any_value::Value::IntValue(i)) => {
            h.write_u8(3);
            i.hash(h);
        }
        Some(any_value::Value::DoubleValue(d)) => {
            h.write_u8(4);
            d.to_bits().hash(h);
        }
        Some(any_value::Value::BytesValue(b)) => {
            h.write_u8(5);
            b.hash(h);
        }
        Some(any_value::Value::ArrayValue(a)) => {
            h.write_u8(6);
            h.write_usize(a.values.len());
            for v in &a.values {
                hash_value(v, h);
            }
        }
        Some(any_value::Value::KvlistValue(l)) => {
            h.write_u8(7);
            h.write_usize(l.values.len());
            for kv in &l.values {
                kv.key.hash(h);
                if let Some(v) = &kv.value {
                    hash_value(v, h);
                }
            }
        }
    }
}
