//! The bad-input catalogue: each class of malformed or extreme input (truncated protobuf, wrong
//! wire types, invalid UTF-8 in names, NaN and the infinities, timestamps at 0 and far in the
//! future, 100k labels on one series, 10 MB label values, decompression bombs, duplicate and
//! unsorted labels) against each push receiver (OTLP/gRPC, OTLP/HTTP protobuf, OTLP/HTTP JSON,
//! remote_write 1.0, remote_write 2.0), through the real binary with its default limits. Each case
//! asserts the exact status, a message naming the problem, that the refusal (or the acceptance) is
//! counted in Sluice's telemetry, that Sluice is still running, and that a well-formed request
//! right after succeeds. The decision for each class is in docs/bad-input.md.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Exemplar, Histogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, exemplar, metric,
    number_data_point,
};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;
use support::{Behaviour, OtlpSink, Sluice, numbered_request, wait_until};
use tonic::Code;

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:0" }
      http: { endpoint: "127.0.0.1:0" }
  prometheus_remote_write:
    endpoint: "127.0.0.1:0"
exporters:
  otlp: { endpoint: "http://SINK" }
service:
  telemetry: { metrics: { address: "127.0.0.1:0" } }
  pipelines:
    metrics: { receivers: [otlp, prometheus_remote_write], exporters: [otlp] }
"#;

/// A bomb: this much decompressed, over the default `max_decompressed_bytes` (64 MiB).
const BOMB_BYTES: usize = 80 << 20;
/// The "10 MB label value" class.
const BIG_VALUE_BYTES: usize = 10 << 20;
/// The "100k labels on one series" class.
const MANY_LABELS: usize = 100_000;
/// 2023-11-14, in milliseconds.
const NOW_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Receiver {
    Grpc,
    HttpProtobuf,
    HttpJson,
    RwV1,
    RwV2,
}

use Receiver::*;

impl Receiver {
    /// The receiver id in the config (and in telemetry).
    fn id(self) -> &'static str {
        match self {
            Grpc | HttpProtobuf | HttpJson => "otlp",
            RwV1 | RwV2 => "prometheus_remote_write",
        }
    }

    fn is_otlp(self) -> bool {
        self.id() == "otlp"
    }
}

/// What is sent.
enum Body {
    /// An OTLP request, encoded as the receiver expects (protobuf or OTLP/JSON).
    Otlp(ExportMetricsServiceRequest),
    V1(v1::WriteRequest),
    V2(v2::Request),
    /// The message bytes as they are (protobuf or JSON); snappy-compressed for remote_write.
    Raw(Vec<u8>),
    /// These bytes, gzip-compressed (`Content-Encoding: gzip`, or gRPC's `grpc-encoding: gzip`).
    Gzip(Vec<u8>),
    /// The remote_write HTTP body exactly as given (not compressed again).
    Wire(Vec<u8>),
}

/// What must come back.
#[derive(Debug)]
enum Expect {
    /// Taken whole: 200 without a partial success (OTLP), 204 (remote_write).
    Taken(Check),
    /// Refused: the HTTP status, the gRPC code, and words of the message.
    Refused {
        http: u16,
        grpc: Code,
        message: &'static str,
    },
}

/// What the next hop must see of a taken case's metric.
#[derive(Clone, Copy, Debug)]
enum Check {
    /// That it arrived.
    Arrived,
    /// Its point attributes are sorted by key.
    SortedAttributes,
    /// Its points hold NaN and both infinities.
    NonFinite,
}

fn refused(http: u16, grpc: Code, message: &'static str) -> Expect {
    Expect::Refused {
        http,
        grpc,
        message,
    }
}

struct Case {
    name: &'static str,
    /// The metric name the case's data carries (for the next hop checks).
    metric: String,
    body: Body,
    expect: Expect,
}

// --- building requests ---------------------------------------------------------------------

fn string_kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

/// An OTLP request with one gauge metric `name` whose points have these values and attributes.
fn otlp_gauge(
    name: &str,
    values: &[f64],
    attributes: Vec<KeyValue>,
    time_ns: u64,
) -> ExportMetricsServiceRequest {
    let mut req = numbered_request(0, 1);
    let points = values
        .iter()
        .map(|v| NumberDataPoint {
            attributes: attributes.clone(),
            time_unix_nano: time_ns,
            value: Some(number_data_point::Value::AsDouble(*v)),
            ..Default::default()
        })
        .collect();
    req.resource_metrics[0].scope_metrics[0].metrics = vec![Metric {
        name: name.into(),
        data: Some(metric::Data::Gauge(
            sluice_core::proto::otlp::metrics::v1::Gauge {
                data_points: points,
            },
        )),
        ..Default::default()
    }];
    req
}

fn good_otlp(name: &str) -> ExportMetricsServiceRequest {
    otlp_gauge(
        name,
        &[1.0],
        vec![string_kv("k", "v")],
        NOW_MS as u64 * 1_000_000,
    )
}

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label {
        name: name.into(),
        value: value.into(),
    }
}

/// A remote_write 1.0 request: one series `name` with `labels` (in this order, after `__name__`)
/// and these samples (value, timestamp ms).
fn v1_series(name: &str, labels: &[(&str, &str)], samples: &[(f64, i64)]) -> v1::WriteRequest {
    let mut l = vec![label("__name__", name)];
    l.extend(labels.iter().map(|(k, v)| label(k, v)));
    v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: l,
            samples: samples
                .iter()
                .map(|&(value, timestamp)| v1::Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The same series as remote_write 2.0: a symbol table and references.
fn v2_series(name: &str, labels: &[(&str, &str)], samples: &[(f64, i64)]) -> v2::Request {
    let mut symbols = vec![String::new()];
    let mut index: HashMap<String, u32> = HashMap::from([(String::new(), 0)]);
    let mut refs = Vec::new();
    for (k, v) in std::iter::once(("__name__", name)).chain(labels.iter().copied()) {
        for s in [k, v] {
            let r = *index.entry(s.to_string()).or_insert_with(|| {
                symbols.push(s.to_string());
                (symbols.len() - 1) as u32
            });
            refs.push(r);
        }
    }
    v2::Request {
        symbols,
        timeseries: vec![v2::TimeSeries {
            labels_refs: refs,
            samples: samples
                .iter()
                .map(|&(value, timestamp)| v2::Sample {
                    value,
                    timestamp,
                    ..Default::default()
                })
                .collect(),
            metadata: Some(v2::Metadata {
                r#type: v2::metadata::MetricType::Gauge as i32,
                ..Default::default()
            }),
            ..Default::default()
        }],
    }
}

/// A series with `labels` and samples, in the receiver's format.
fn series(r: Receiver, name: &str, labels: &[(&str, &str)], samples: &[(f64, i64)]) -> Body {
    match r {
        RwV1 => Body::V1(v1_series(name, labels, samples)),
        RwV2 => Body::V2(v2_series(name, labels, samples)),
        _ => {
            let attributes = labels.iter().map(|(k, v)| string_kv(k, v)).collect();
            let values: Vec<f64> = samples.iter().map(|s| s.0).collect();
            let time = samples[0].1.max(0) as u64 * 1_000_000;
            Body::Otlp(otlp_gauge(name, &values, attributes, time))
        }
    }
}

fn good(r: Receiver) -> Body {
    series(
        r,
        "catalogue_good",
        &[("job", "catalogue")],
        &[(1.0, NOW_MS)],
    )
}

/// The encoded message of a body built by [`series`] (for cutting and patching).
fn encoded(r: Receiver, body: &Body) -> Vec<u8> {
    match (body, r) {
        (Body::Otlp(req), HttpJson) => sluice_core::otlp_json::to_json_vec(req),
        (Body::Otlp(req), _) => req.encode_to_vec(),
        (Body::V1(req), _) => req.encode_to_vec(),
        (Body::V2(req), _) => req.encode_to_vec(),
        _ => unreachable!("only built messages are encoded"),
    }
}

/// `bytes` with the (unique) occurrence of `from` replaced by `to`, of the same length.
fn patch(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("the placeholder is in the message");
    bytes[at..at + to.len()].copy_from_slice(to);
    bytes
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn snappy(data: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(data).unwrap()
}

/// NaN, both infinities and the stale marker in every float field the format has.
fn non_finite(r: Receiver, name: &str) -> Body {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let values = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];
    match r {
        RwV1 | RwV2 => {
            let samples: Vec<(f64, i64)> = values
                .iter()
                .chain([stale].iter())
                .enumerate()
                .map(|(i, v)| (*v, NOW_MS + i as i64))
                .collect();
            let exemplar_value = f64::INFINITY;
            match series(r, name, &[("job", "catalogue")], &samples) {
                Body::V1(mut req) => {
                    req.timeseries[0].exemplars.push(v1::Exemplar {
                        labels: vec![label("trace_id", "abc")],
                        value: exemplar_value,
                        timestamp: NOW_MS,
                    });
                    Body::V1(req)
                }
                Body::V2(mut req) => {
                    req.symbols
                        .extend(["trace_id".to_string(), "abc".to_string()]);
                    let n = req.symbols.len() as u32;
                    req.timeseries[0].exemplars.push(v2::Exemplar {
                        labels_refs: vec![n - 2, n - 1],
                        value: exemplar_value,
                        timestamp: NOW_MS,
                    });
                    Body::V2(req)
                }
                _ => unreachable!(),
            }
        }
        _ => {
            let mut req = otlp_gauge(
                name,
                &values,
                vec![string_kv("job", "catalogue")],
                NOW_MS as u64 * 1_000_000,
            );
            let metrics = &mut req.resource_metrics[0].scope_metrics[0].metrics;
            if let Some(metric::Data::Gauge(g)) = &mut metrics[0].data {
                g.data_points[0].exemplars.push(Exemplar {
                    time_unix_nano: NOW_MS as u64 * 1_000_000,
                    value: Some(exemplar::Value::AsDouble(f64::NAN)),
                    ..Default::default()
                });
            }
            metrics.push(Metric {
                name: format!("{name}_sum"),
                data: Some(metric::Data::Sum(Sum {
                    data_points: vec![NumberDataPoint {
                        time_unix_nano: NOW_MS as u64 * 1_000_000,
                        value: Some(number_data_point::Value::AsDouble(f64::INFINITY)),
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                    is_monotonic: true,
                })),
                ..Default::default()
            });
            metrics.push(Metric {
                name: format!("{name}_histogram"),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        time_unix_nano: NOW_MS as u64 * 1_000_000,
                        count: 2,
                        sum: Some(f64::NAN),
                        bucket_counts: vec![1, 1],
                        explicit_bounds: vec![1.0],
                        min: Some(f64::NEG_INFINITY),
                        max: Some(f64::INFINITY),
                        ..Default::default()
                    }],
                    aggregation_temporality: 2,
                })),
                ..Default::default()
            });
            Body::Otlp(req)
        }
    }
}

/// A remote_write native histogram whose float count is NaN (OTLP counts are integers).
fn nan_histogram_count(r: Receiver, name: &str) -> Body {
    match series(r, name, &[("job", "catalogue")], &[]) {
        Body::V1(mut req) => {
            req.timeseries[0].histograms.push(v1::Histogram {
                count: Some(v1::histogram::Count::CountFloat(f64::NAN)),
                timestamp: NOW_MS,
                ..Default::default()
            });
            Body::V1(req)
        }
        Body::V2(mut req) => {
            req.timeseries[0].histograms.push(v2::Histogram {
                count: Some(v2::histogram::Count::CountFloat(f64::NAN)),
                timestamp: NOW_MS,
                ..Default::default()
            });
            Body::V2(req)
        }
        _ => unreachable!("remote_write only"),
    }
}

// --- the catalogue -------------------------------------------------------------------------

/// Every case for one receiver, in catalogue order.
fn catalogue(r: Receiver) -> Vec<Case> {
    let otlp = r.is_otlp();
    let json = r == HttpJson;
    let mut cases = Vec::new();
    let mut add = |name: &'static str, metric: &str, body: Body, expect: Expect| {
        cases.push(Case {
            name,
            metric: metric.to_string(),
            body,
            expect,
        })
    };
    // The message of a body that does not decode.
    let malformed: &'static str = match r {
        Grpc | HttpProtobuf => "malformed protobuf",
        HttpJson => "malformed OTLP/JSON",
        RwV1 => "malformed protobuf (prometheus.WriteRequest)",
        RwV2 => "malformed protobuf (io.prometheus.write.v2.Request)",
    };

    // Truncated: the message cut short by one byte, and in the middle.
    let whole = encoded(r, &good(r));
    add(
        "truncated by one byte",
        "",
        Body::Raw(whole[..whole.len() - 1].to_vec()),
        refused(400, Code::InvalidArgument, malformed),
    );
    if otlp {
        add(
            "truncated in the middle",
            "",
            Body::Raw(whole[..whole.len() / 2].to_vec()),
            refused(400, Code::InvalidArgument, malformed),
        );
    } else {
        add(
            "snappy body truncated",
            "",
            Body::Wire({
                let wire = snappy(&whole);
                wire[..wire.len() / 2].to_vec()
            }),
            refused(400, Code::InvalidArgument, "not valid snappy"),
        );
    }

    // Wrong wire types: a nested field with the wrong wire type (JSON: the wrong JSON type).
    let wrong = match r {
        // ResourceMetrics (field 1) { scope_metrics (field 2) as a varint }
        Grpc | HttpProtobuf => vec![0x0a, 0x02, 0x10, 0x01],
        HttpJson => {
            br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":5}]}]}]}"#.to_vec()
        }
        // TimeSeries (field 1) { samples (field 2) as a varint }
        RwV1 => vec![0x0a, 0x02, 0x10, 0x01],
        // TimeSeries (field 5) { samples (field 2) as a varint }
        RwV2 => vec![0x2a, 0x02, 0x10, 0x01],
    };
    let wrong_message = if json { "invalid type" } else { "wire type" };
    add(
        "wrong wire type",
        "",
        Body::Raw(wrong),
        refused(400, Code::InvalidArgument, wrong_message),
    );
    add(
        "wrong wire type (message)",
        "",
        Body::Raw(match r {
            HttpJson => br#"{"resourceMetrics": 5}"#.to_vec(),
            // The repeated message field (2.0: `timeseries`, 5; else 1) as a fixed32.
            RwV2 => vec![0x2d, 1, 2, 3, 4],
            _ => vec![0x0d, 1, 2, 3, 4],
        }),
        refused(400, Code::InvalidArgument, malformed),
    );

    // Invalid UTF-8 in a metric name and in a label name.
    for (what, placeholder_name, placeholder_label) in [
        ("invalid UTF-8 in the metric name", "catalogue_XXXX", "job"),
        ("invalid UTF-8 in a label name", "catalogue_utf8", "XXXX"),
    ] {
        let body = series(
            r,
            placeholder_name,
            &[(placeholder_label, "v")],
            &[(1.0, NOW_MS)],
        );
        let bytes = patch(encoded(r, &body), b"XXXX", b"\xff\xfe\xc0\x80");
        let message = if json { "malformed OTLP/JSON" } else { "UTF-8" };
        add(
            what,
            "",
            Body::Raw(bytes),
            refused(400, Code::InvalidArgument, message),
        );
    }

    // NaN and the infinities are values like any other.
    add(
        "NaN and the infinities everywhere (remote_write: StaleNaN too)",
        "catalogue_nonfinite",
        non_finite(r, "catalogue_nonfinite"),
        Expect::Taken(Check::NonFinite),
    );
    if !otlp {
        add(
            "NaN as a float histogram count",
            "",
            nan_histogram_count(r, "catalogue_nan_count"),
            refused(400, Code::InvalidArgument, "not a whole number"),
        );
    }

    // Timestamps: 0 (1970) is a time like any other; far in the future is taken as long as the
    // format can hold it (remote_write milliseconds past 2554 do not fit OTLP nanoseconds).
    add(
        "timestamp 0",
        "catalogue_time_zero",
        series(
            r,
            "catalogue_time_zero",
            &[("job", "catalogue")],
            &[(1.0, 0)],
        ),
        Expect::Taken(Check::Arrived),
    );
    let year_2500_ms = 16_725_225_600_000;
    add(
        "timestamp in the year 2500",
        "catalogue_time_2500",
        series(
            r,
            "catalogue_time_2500",
            &[("job", "catalogue")],
            &[(1.0, year_2500_ms)],
        ),
        Expect::Taken(Check::Arrived),
    );
    if otlp {
        let mut req = good_otlp("catalogue_time_max");
        if let Some(metric::Data::Gauge(g)) =
            &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data
        {
            g.data_points[0].time_unix_nano = u64::MAX;
        }
        add(
            "timestamp u64::MAX ns",
            "catalogue_time_max",
            Body::Otlp(req),
            Expect::Taken(Check::Arrived),
        );
    } else {
        add(
            "timestamp i64::MAX ms",
            "",
            series(
                r,
                "catalogue_time_max",
                &[("job", "catalogue")],
                &[(1.0, i64::MAX)],
            ),
            refused(400, Code::InvalidArgument, "outside 1970..2554"),
        );
    }

    // 100k labels on one series, 10 MB label values: taken within the size limits (capping them
    // is the `limits` processor's job).
    let names: Vec<String> = (0..MANY_LABELS).map(|i| format!("l{i:06}")).collect();
    let labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    add(
        "100k labels on one series",
        "catalogue_many_labels",
        series(r, "catalogue_many_labels", &labels, &[(1.0, NOW_MS)]),
        Expect::Taken(Check::Arrived),
    );
    let big = "x".repeat(BIG_VALUE_BYTES);
    add(
        "10 MB label value",
        "catalogue_big_value",
        series(r, "catalogue_big_value", &[("big", &big)], &[(1.0, NOW_MS)]),
        Expect::Taken(Check::Arrived),
    );

    // Bombs: small on the wire, over max_decompressed_bytes once decompressed.
    let zeros = vec![0u8; BOMB_BYTES];
    match r {
        Grpc => add(
            "gzip bomb",
            "",
            Body::Gzip(zeros),
            refused(0, Code::ResourceExhausted, "size limit"),
        ),
        HttpProtobuf | HttpJson => add(
            "gzip bomb",
            "",
            Body::Gzip(zeros),
            refused(413, Code::ResourceExhausted, "larger than"),
        ),
        RwV1 | RwV2 => {
            add(
                "snappy bomb",
                "",
                Body::Wire(snappy(&zeros)),
                refused(
                    413,
                    Code::ResourceExhausted,
                    "more than max_decompressed_bytes",
                ),
            );
            // A snappy header announcing the largest length the format allows (4 GiB), and
            // nothing else; larger lengths are not snappy at all.
            add(
                "snappy header announcing 4 GiB",
                "",
                Body::Wire(vec![0xff, 0xff, 0xff, 0xff, 0x0f]),
                refused(
                    413,
                    Code::ResourceExhausted,
                    "decompresses to 4294967295 bytes",
                ),
            );
            add(
                "snappy header announcing 1 TiB",
                "",
                Body::Wire(vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20]),
                refused(400, Code::InvalidArgument, "not valid snappy"),
            );
        }
    }

    // Duplicate label names: remote_write forbids them (the series is refused, 400); OTLP
    // attributes pass as they are (the Prometheus translation joins the values with `;`).
    let dup = series(
        r,
        "catalogue_duplicate",
        &[("job", "catalogue"), ("a", "1"), ("a", "2")],
        &[(1.0, NOW_MS)],
    );
    if otlp {
        add(
            "duplicate label names",
            "catalogue_duplicate",
            dup,
            Expect::Taken(Check::Arrived),
        );
    } else {
        add(
            "duplicate label names",
            "",
            dup,
            refused(
                400,
                Code::InvalidArgument,
                "label \"a\" appears more than once",
            ),
        );
    }

    // Unsorted labels are taken (remote_write sorts them).
    let check = if otlp {
        Check::Arrived
    } else {
        Check::SortedAttributes
    };
    add(
        "unsorted labels",
        "catalogue_unsorted",
        series(
            r,
            "catalogue_unsorted",
            &[("zz", "1"), ("job", "catalogue"), ("aa", "2"), ("mm", "3")],
            &[(1.0, NOW_MS)],
        ),
        Expect::Taken(check),
    );
    cases
}

// --- sending -------------------------------------------------------------------------------

/// What came back.
#[derive(Debug)]
struct Answer {
    /// HTTP status, or 0 for gRPC.
    http: u16,
    grpc: Code,
    message: String,
}

struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    channel: tonic::transport::Channel,
    otlp_url: String,
    rw_url: String,
}

impl Client {
    fn new(s: &Sluice) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let channel = rt
            .block_on(
                tonic::transport::Endpoint::from_shared(s.grpc_url("otlp"))
                    .unwrap()
                    .connect(),
            )
            .unwrap();
        Client {
            rt,
            http: support::http_client(),
            channel,
            otlp_url: s.http_url("otlp"),
            rw_url: format!(
                "http://{}/api/v1/write",
                s.addr("prometheus_remote_write/http")
            ),
        }
    }

    fn send(&self, r: Receiver, body: Body) -> Answer {
        let (bytes, gzip_it) = match body {
            Body::Gzip(b) => (b, true),
            Body::Wire(b) => return self.post_rw(r, b),
            other => {
                let bytes = match other {
                    Body::Raw(b) => b,
                    built => encoded(r, &built),
                };
                (bytes, false)
            }
        };
        match r {
            Grpc => self.grpc(bytes, gzip_it),
            HttpProtobuf | HttpJson => self.post_otlp(r, bytes, gzip_it),
            RwV1 | RwV2 => self.post_rw(r, snappy(&bytes)),
        }
    }

    fn grpc(&self, message: Vec<u8>, gzip_it: bool) -> Answer {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        if gzip_it {
            grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
        }
        let result = self.rt.block_on(async move {
            grpc.ready().await.unwrap();
            let path = http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            );
            grpc.unary(tonic::Request::new(message), path, support::RawCodec)
                .await
                .map(|r| r.into_inner())
        });
        match result {
            Ok(body) => {
                let resp = ExportMetricsServiceResponse::decode(body.as_slice()).unwrap();
                Answer {
                    http: 0,
                    grpc: Code::Ok,
                    message: partial_success(resp),
                }
            }
            Err(status) => Answer {
                http: 0,
                grpc: status.code(),
                message: status.message().to_string(),
            },
        }
    }

    fn post_otlp(&self, r: Receiver, body: Vec<u8>, gzip_it: bool) -> Answer {
        let json = r == HttpJson;
        let content_type = if json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let (status, body) = self.post(&self.otlp_url, content_type, gzip_it, &[], body);
        let message = if status == 200 {
            if json {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                v.get("partialSuccess")
                    .map(|p| p.to_string())
                    .unwrap_or_default()
            } else {
                partial_success(ExportMetricsServiceResponse::decode(body.as_slice()).unwrap())
            }
        } else {
            status_message(json, &body)
        };
        Answer {
            http: status,
            grpc: Code::Ok,
            message,
        }
    }

    fn post_rw(&self, r: Receiver, body: Vec<u8>) -> Answer {
        let (content_type, version) = match r {
            RwV1 => ("application/x-protobuf", "0.1.0"),
            _ => (
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "2.0.0",
            ),
        };
        let headers = [
            ("content-encoding", "snappy"),
            ("x-prometheus-remote-write-version", version),
        ];
        let (status, body) = self.post(&self.rw_url, content_type, false, &headers, body);
        Answer {
            http: status,
            grpc: Code::Ok,
            message: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn post(
        &self,
        url: &str,
        content_type: &str,
        gzip_it: bool,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let body = if gzip_it { gzip(&body) } else { body };
        self.rt.block_on(async {
            let mut rb = self
                .http
                .post(url)
                .header("content-type", content_type)
                .body(body);
            if gzip_it {
                rb = rb.header("content-encoding", "gzip");
            }
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status().as_u16();
            (status, resp.bytes().await.unwrap().to_vec())
        })
    }
}

/// The partial success of an OTLP response as text; empty when there is none.
fn partial_success(resp: ExportMetricsServiceResponse) -> String {
    resp.partial_success
        .map(|p| format!("{} rejected: {}", p.rejected_data_points, p.error_message))
        .unwrap_or_default()
}

/// The `message` of a google.rpc.Status error body, protobuf or JSON.
fn status_message(json: bool, body: &[u8]) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if json {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        v["message"].as_str().unwrap().to_string()
    } else {
        RpcStatus::decode(body).unwrap().message
    }
}

// --- running the catalogue -----------------------------------------------------------------

/// The metrics named `name` the next hop has received.
fn arrived(sink: &OtlpSink, name: &str) -> Vec<Metric> {
    sink.requests()
        .into_iter()
        .flat_map(|r| r.resource_metrics)
        .flat_map(|r| r.scope_metrics)
        .flat_map(|s| s.metrics)
        .filter(|m| m.name == name)
        .collect()
}

fn number_points(m: &Metric) -> Vec<NumberDataPoint> {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.clone(),
        Some(metric::Data::Sum(s)) => s.data_points.clone(),
        _ => Vec::new(),
    }
}

fn check_arrival(sink: &OtlpSink, case: &str, metric: &str, check: Check) {
    wait_until(
        Duration::from_secs(20),
        &format!("{metric} at the next hop"),
        || !arrived(sink, metric).is_empty(),
    );
    let metrics = arrived(sink, metric);
    match check {
        Check::Arrived => {}
        Check::SortedAttributes => {
            for p in metrics.iter().flat_map(number_points) {
                let keys: Vec<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
                assert!(keys.is_sorted(), "{}: attributes {keys:?}", case);
            }
        }
        Check::NonFinite => {
            let values: Vec<f64> = metrics
                .iter()
                .flat_map(number_points)
                .filter_map(|p| match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => Some(v),
                    _ => None,
                })
                .collect();
            assert!(values.iter().any(|v| v.is_nan()), "{}: {values:?}", case);
            assert!(values.contains(&f64::INFINITY), "{}: {values:?}", case);
            assert!(values.contains(&f64::NEG_INFINITY), "{}: {values:?}", case);
        }
    }
}

/// Refusals a receiver has counted: refused requests and refused points, every reason.
fn refusals(s: &Sluice, r: Receiver) -> f64 {
    let labels = [("receiver", r.id())];
    s.metric("sluice_receiver_refused_requests_total", &labels)
        + s.metric("sluice_receiver_refused_points_total", &labels)
}

fn accepted(s: &Sluice, r: Receiver) -> f64 {
    s.metric(
        "sluice_receiver_accepted_points_total",
        &[("receiver", r.id())],
    )
}

/// Whether the answer says "taken whole": OK / 200 without a partial success, 204.
fn taken(r: Receiver, answer: &Answer) -> bool {
    let status = match r {
        Grpc => answer.grpc == Code::Ok,
        HttpProtobuf | HttpJson => answer.http == 200,
        RwV1 | RwV2 => answer.http == 204,
    };
    status && answer.message.is_empty()
}

fn run(r: Receiver) {
    let sink = OtlpSink::start(Behaviour::Accept);
    let config = CONFIG.replace("SINK", &sink.addr.to_string());
    let mut s = Sluice::start(
        &config,
        &[
            "otlp/grpc",
            "otlp/http",
            "prometheus_remote_write/http",
            "telemetry",
        ],
    );
    let client = Client::new(&s);
    for case in catalogue(r) {
        let Case {
            name,
            metric,
            body,
            expect,
        } = case;
        let (refused_before, accepted_before) = (refusals(&s, r), accepted(&s, r));
        let answer = client.send(r, body);
        eprintln!("{r:?} {name}: {answer:?}");
        match &expect {
            Expect::Taken(check) => {
                assert!(
                    taken(r, &answer),
                    "{r:?} {name}: expected to be taken whole, got {answer:?}"
                );
                assert!(
                    accepted(&s, r) > accepted_before,
                    "{r:?} {name}: not counted as accepted"
                );
                assert_eq!(
                    refusals(&s, r),
                    refused_before,
                    "{r:?} {name}: counted as refused"
                );
                check_arrival(&sink, name, &metric, *check);
            }
            Expect::Refused {
                http,
                grpc,
                message,
            } => {
                if r == Grpc {
                    assert_eq!(answer.grpc, *grpc, "{r:?} {name}: {answer:?}");
                } else {
                    assert_eq!(answer.http, *http, "{r:?} {name}: {answer:?}");
                }
                assert!(
                    answer.message.contains(message),
                    "{r:?} {name}: the message {:?} should contain {message:?}",
                    answer.message
                );
                // OTLP/gRPC messages that do not decode or are too large are refused by the
                // gRPC server before Sluice's handler runs, and not counted yet (a known gap,
                // docs/bad-input.md; `otlp_grpc_refusals_before_the_handler_are_counted`).
                if r != Grpc {
                    assert!(
                        refusals(&s, r) > refused_before,
                        "{r:?} {name}: refusal not counted"
                    );
                }
            }
        }
        assert!(
            s.child.try_wait().unwrap().is_none(),
            "{r:?} {name}: sluice exited; log:\n{}",
            s.log_text()
        );
        let after = client.send(r, good(r));
        assert!(
            taken(r, &after),
            "{r:?} after {name}: a good request got {after:?}"
        );
    }
}

#[test]
fn otlp_grpc_bad_input_catalogue() {
    run(Grpc);
}

/// Every refusal must be counted in Sluice's telemetry; OTLP/gRPC messages that do not decode, or
/// are over `max_decompressed_bytes`, are refused by the gRPC server's codec before the receiver's
/// handler runs, and counted nowhere.
#[test]
fn otlp_grpc_refusals_before_the_handler_are_counted() {
    let sink = OtlpSink::start(Behaviour::Accept);
    let config = CONFIG.replace("SINK", &sink.addr.to_string());
    let s = Sluice::start(
        &config,
        &[
            "otlp/grpc",
            "otlp/http",
            "prometheus_remote_write/http",
            "telemetry",
        ],
    );
    let client = Client::new(&s);
    let answer = client.send(Grpc, Body::Raw(vec![0x0d, 1, 2, 3, 4]));
    assert_eq!(answer.grpc, Code::InvalidArgument, "{answer:?}");
    let answer = client.send(Grpc, Body::Gzip(vec![0u8; BOMB_BYTES]));
    assert_eq!(answer.grpc, Code::ResourceExhausted, "{answer:?}");
    let labels = [("receiver", "otlp")];
    assert_eq!(
        s.metric(
            "sluice_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "malformed")]
        ),
        1.0
    );
    assert_eq!(
        s.metric(
            "sluice_receiver_refused_requests_total",
            &[("receiver", "otlp"), ("reason", "too_large")]
        ),
        1.0
    );
    assert_eq!(
        s.metric("sluice_receiver_refused_requests_total", &labels),
        2.0
    );
}

#[test]
fn otlp_http_protobuf_bad_input_catalogue() {
    run(HttpProtobuf);
}

#[test]
fn otlp_http_json_bad_input_catalogue() {
    run(HttpJson);
}

#[test]
fn remote_write_v1_bad_input_catalogue() {
    run(RwV1);
}

#[test]
fn remote_write_v2_bad_input_catalogue() {
    run(RwV2);
}
