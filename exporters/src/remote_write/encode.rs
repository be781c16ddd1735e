//! Prometheus series -> remote_write request bodies (v1 `prometheus.WriteRequest` or v2
//! `io.prometheus.write.v2.Request`), protobuf + snappy block format, into reused buffers.

use super::config::Protocol;
use hashbrown::HashMap;
use prost::Message;
use sluice_core::prometheus::{Exemplar, MetricType, NativeHistogram, Series};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};

mod wire;

/// Encodes requests, keeping its buffers between calls.
#[derive(Default)]
pub struct Encoder {
    proto: Vec<u8>,
    compressed: Vec<u8>,
}

impl Encoder {
    /// The snappy-compressed body for `series`, encoded in this thread's buffers. An encoding
    /// never waits, so every shard running on a thread shares one pair of buffers (each about
    /// the size of a full request) instead of keeping a pair of its own.
    pub fn body(series: &[Series], protocol: Protocol, send_metadata: bool) -> Vec<u8> {
        thread_local! {
            static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::default();
        }
        ENCODER.with_borrow_mut(|e| e.encode(series, protocol, send_metadata).to_vec())
    }

    /// The snappy-compressed body for `series`.
    pub fn encode(&mut self, series: &[Series], protocol: Protocol, send_metadata: bool) -> &[u8] {
        self.proto.clear();
        match protocol {
            Protocol::V1 => wire::write_v1(series, send_metadata, &mut self.proto),
            Protocol::V2 => to_v2(series)
                .encode(&mut self.proto)
                .expect("encoding into a Vec cannot fail"),
        }
        // Grown, never shrunk: requests of different sizes in turn (the shards of several
        // tenants) would otherwise zero the difference again each time.
        let max = snap::raw::max_compress_len(self.proto.len());
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        let n = snap::raw::Encoder::new()
            .compress(&self.proto, &mut self.compressed[..max])
            .expect("the output buffer has max_compress_len bytes");
        &self.compressed[..n]
    }
}

pub fn metric_type(t: MetricType) -> i32 {
    match t {
        MetricType::Unknown => 0,
        MetricType::Counter => 1,
        MetricType::Gauge => 2,
        MetricType::Histogram => 3,
        MetricType::GaugeHistogram => 4,
        MetricType::Summary => 5,
        MetricType::Info => 6,
        MetricType::StateSet => 7,
    }
}

/// A rough uncompressed size of a series in a request, for `max_bytes_per_send`: its labels' size
/// is exact and known without reading them.
pub fn estimated_bytes(s: &Series) -> usize {
    s.labels.v1_len()
        + s.samples.len() * 20
        + s.histograms().len() * 64
        + s.exemplars().len() * 48
        + 8
}

/// The request [`Encoder::encode`] writes for v1, as prost messages: the model its direct writer
/// is checked against.
#[cfg(test)]
pub fn to_v1(series: &[Series], send_metadata: bool) -> v1::WriteRequest {
    let timeseries = series
        .iter()
        .map(|s| v1::TimeSeries {
            labels: labels_v1(&s.labels),
            samples: s
                .samples
                .iter()
                .map(|x| v1::Sample {
                    value: x.value,
                    timestamp: x.timestamp_ms,
                })
                .collect(),
            exemplars: s.exemplars().iter().map(exemplar_v1).collect(),
            histograms: s.histograms().iter().map(histogram_v1).collect(),
        })
        .collect();
    let metadata = if send_metadata {
        metadata_v1(series)
    } else {
        Vec::new()
    };
    v1::WriteRequest {
        timeseries,
        metadata,
    }
}

/// The metadata of the series' families, once per family. A family's series mostly follow one
/// another and share one metadata: those are passed over without hashing the name.
fn metadata_v1(series: &[Series]) -> Vec<v1::MetricMetadata> {
    let mut seen = hashbrown::HashSet::new();
    let mut last: Option<&std::sync::Arc<_>> = None;
    series
        .iter()
        .map(|s| &s.metadata)
        .filter(|m| {
            !last
                .replace(*m)
                .is_some_and(|l| std::sync::Arc::ptr_eq(l, m))
        })
        .filter(|m| !m.family.is_empty() && seen.insert(m.family.as_str()))
        .map(|m| v1::MetricMetadata {
            r#type: metric_type(m.metric_type),
            metric_family_name: m.family.clone(),
            help: m.help.clone(),
            unit: m.unit.clone(),
        })
        .collect()
}

fn labels_v1<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<v1::Label> {
    labels
        .into_iter()
        .map(|(k, v)| v1::Label {
            name: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

/// An exemplar's labels as (name, value).
fn pairs(labels: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
}

fn exemplar_v1(e: &Exemplar) -> v1::Exemplar {
    v1::Exemplar {
        labels: labels_v1(pairs(&e.labels)),
        value: e.value,
        timestamp: e.timestamp_ms,
    }
}

fn spans_v1(spans: &[(i32, u32)]) -> Vec<v1::BucketSpan> {
    spans
        .iter()
        .map(|&(offset, length)| v1::BucketSpan { offset, length })
        .collect()
}

fn histogram_v1(h: &NativeHistogram) -> v1::Histogram {
    v1::Histogram {
        count: Some(v1::histogram::Count::CountInt(h.count)),
        sum: if h.stale {
            sluice_core::prometheus::stale_nan()
        } else {
            h.sum
        },
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(v1::histogram::ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans_v1(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        negative_counts: Vec::new(),
        positive_spans: spans_v1(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        positive_counts: Vec::new(),
        reset_hint: if h.reset_hint_gauge {
            v1::histogram::ResetHint::Gauge as i32
        } else {
            0
        },
        timestamp: h.timestamp_ms,
        custom_values: Vec::new(),
    }
}

/// The v2 symbols table: every string once, `""` at index 0.
struct Symbols<'a> {
    table: Vec<&'a str>,
    index: HashMap<&'a str, u32>,
}

impl<'a> Symbols<'a> {
    fn new() -> Self {
        let mut index = HashMap::new();
        index.insert("", 0);
        Symbols {
            table: vec![""],
            index,
        }
    }

    fn r#ref(&mut self, s: &'a str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.table.len() as u32;
        self.table.push(s);
        self.index.insert(s, i);
        i
    }

    fn refs(&mut self, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<u32> {
        let labels = labels.into_iter();
        let mut out = Vec::with_capacity(labels.size_hint().0 * 2);
        for (k, v) in labels {
            out.push(self.r#ref(k));
            out.push(self.r#ref(v));
        }
        out
    }
}

pub fn to_v2(series: &[Series]) -> v2::Request {
    let mut symbols = Symbols::new();
    let timeseries = series
        .iter()
        .map(|s| {
            let labels_refs = symbols.refs(s.labels.iter());
            let exemplars = s.exemplars().iter().map(|e: &Exemplar| v2::Exemplar {
                labels_refs: symbols.refs(pairs(&e.labels)),
                value: e.value,
                timestamp: e.timestamp_ms,
            });
            let exemplars = exemplars.collect();
            let metadata = v2::Metadata {
                r#type: metric_type(s.metadata.metric_type),
                help_ref: symbols.r#ref(&s.metadata.help),
                unit_ref: symbols.r#ref(&s.metadata.unit),
            };
            v2::TimeSeries {
                labels_refs,
                samples: s
                    .samples
                    .iter()
                    .map(|x| v2::Sample {
                        value: x.value,
                        timestamp: x.timestamp_ms,
                        start_timestamp: x.start_timestamp_ms,
                    })
                    .collect(),
                histograms: s.histograms().iter().map(histogram_v2).collect(),
                exemplars,
                metadata: Some(metadata),
            }
        })
        .collect();
    v2::Request {
        symbols: symbols.table.into_iter().map(str::to_string).collect(),
        timeseries,
    }
}

fn histogram_v2(h: &NativeHistogram) -> v2::Histogram {
    let spans = |s: &[(i32, u32)]| {
        s.iter()
            .map(|&(offset, length)| v2::BucketSpan { offset, length })
            .collect()
    };
    v2::Histogram {
        count: Some(v2::histogram::Count::CountInt(h.count)),
        sum: if h.stale {
            sluice_core::prometheus::stale_nan()
        } else {
            h.sum
        },
        schema: h.schema,
        zero_threshold: h.zero_threshold,
        zero_count: Some(v2::histogram::ZeroCount::ZeroCountInt(h.zero_count)),
        negative_spans: spans(&h.negative_spans),
        negative_deltas: h.negative_deltas.clone(),
        negative_counts: Vec::new(),
        positive_spans: spans(&h.positive_spans),
        positive_deltas: h.positive_deltas.clone(),
        positive_counts: Vec::new(),
        reset_hint: if h.reset_hint_gauge {
            v2::histogram::ResetHint::Gauge as i32
        } else {
            0
        },
        timestamp: h.timestamp_ms,
        custom_values: Vec::new(),
        start_timestamp: h.start_timestamp_ms,
    }
}
