use super::decode_metrics;
use crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::otlp::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use crate::proto::otlp::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use crate::proto::otlp::resource::v1::Resource;
use crate::test_util::{kv as attr, string_kv as text};
use prost::Message;

/// Our reading and prost's agree: both refuse, or both give the same message (compared by their
/// encodings, which tell NaNs apart as `==` does not).
fn agree(bytes: &[u8]) {
    let ours = decode_metrics(bytes);
    let prost = ExportMetricsServiceRequest::decode(bytes);
    match (&ours, &prost) {
        (Ok(a), Ok(b)) => assert_eq!(a.encode_to_vec(), b.encode_to_vec(), "{bytes:02x?}"),
        (Err(_), Err(_)) => {}
        _ => panic!(
            "ours: {:?}, prost: {:?}, for {bytes:02x?}",
            ours.as_ref().err(),
            prost.as_ref().err()
        ),
    }
}

/// A field: its one-byte key (wire type 2) and length, then `bytes`.
fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![tag << 3 | 2];
    prost::encoding::encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// A request of every kind of metric, point and value, each field of each message set.
fn rich() -> ExportMetricsServiceRequest {
    let exemplar = Exemplar {
        filtered_attributes: vec![text("trace", "t")],
        time_unix_nano: 9,
        span_id: vec![1, 2],
        trace_id: vec![3; 16],
        value: Some(crate::proto::otlp::metrics::v1::exemplar::Value::AsDouble(
            0.5,
        )),
    };
    let values = vec![
        text("method", "GET"),
        text("ünïcode", "日本語"),
        text("", ""),
        attr("int", Value::IntValue(-3)),
        attr("bool", Value::BoolValue(true)),
        attr("double", Value::DoubleValue(f64::NAN)),
        attr("bytes", Value::BytesValue(vec![0, 255])),
        attr(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![AnyValue {
                    value: Some(Value::StringValue("x".into())),
                }],
            }),
        ),
        attr(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![text("k", "v")],
            }),
        ),
        KeyValue {
            key: "none".into(),
            value: Some(AnyValue { value: None }),
        },
        KeyValue {
            key: "absent".into(),
            value: None,
        },
    ];
    let number = |v| NumberDataPoint {
        attributes: values.clone(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        exemplars: vec![exemplar.clone()],
        flags: 1,
        value: Some(v),
    };
    let metric = |name: &str, data| Metric {
        name: name.into(),
        description: "d".into(),
        unit: "s".into(),
        metadata: vec![text("m", "n")],
        data: Some(data),
    };
    let metrics = vec![
        metric(
            "gauge",
            Data::Gauge(Gauge {
                data_points: vec![
                    number(number_data_point::Value::AsDouble(1.5)),
                    number(number_data_point::Value::AsInt(-7)),
                    NumberDataPoint::default(),
                ],
            }),
        ),
        metric(
            "sum",
            Data::Sum(Sum {
                data_points: vec![number(number_data_point::Value::AsInt(3))],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "histogram",
            Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: values.clone(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 6,
                        sum: Some(4.5),
                        bucket_counts: vec![1, 2, 3],
                        explicit_bounds: vec![0.5, f64::INFINITY],
                        exemplars: vec![exemplar.clone()],
                        flags: 1,
                        min: Some(-1.0),
                        max: Some(9.0),
                    },
                    HistogramDataPoint::default(),
                ],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "exponential",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: values.clone(),
                    count: 3,
                    scale: -2,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -1,
                        bucket_counts: vec![1, 1],
                    }),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "summary",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: values.clone(),
                    count: 2,
                    sum: 3.0,
                    quantile_values: vec![ValueAtQuantile {
                        quantile: 0.5,
                        value: 1.0,
                    }],
                    ..Default::default()
                }],
            }),
        ),
        Metric::default(),
    ];
    let scope = ScopeMetrics {
        scope: Some(InstrumentationScope {
            name: "s".into(),
            version: "1".into(),
            attributes: vec![text("a", "b")],
            dropped_attributes_count: 1,
        }),
        metrics,
        schema_url: "u".into(),
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![text("service.name", "svc")],
                    dropped_attributes_count: 2,
                    ..Default::default()
                }),
                scope_metrics: vec![scope.clone(), ScopeMetrics::default()],
                schema_url: "r".into(),
            },
            ResourceMetrics::default(),
        ],
    }
}

// Guarantees: a request of every kind of metric, point and value decodes to what prost decodes,
// and so does every prefix of it and every change of one of its bytes (prost and the reader
// then agree on refusing it, or on what it holds).
#[test]
fn every_truncation_and_byte_flip_agrees_with_prost() {
    let body = rich().encode_to_vec();
    assert_eq!(decode_metrics(&body).unwrap().encode_to_vec(), body);
    for n in 0..body.len() {
        agree(&body[..n]);
    }
    let mut flipped = body.clone();
    for i in 0..body.len() {
        for bits in [0x01, 0x07, 0x08, 0x80, 0xff] {
            flipped[i] = body[i] ^ bits;
            agree(&flipped);
        }
        flipped[i] = body[i];
    }
}

// Guarantees: what protobuf makes of fields out of order, repeated or in their other encoding is
// what prost makes of them: attributes apart from each other, a second gauge merging into the
// first and a sum replacing it, a second value of an attribute merging into the first, bucket
// counts not packed, packed ones of a length that is not a multiple of 8, strings set twice.
#[test]
fn fields_apart_repeated_or_unpacked_decode_as_prost_decodes_them() {
    let point = NumberDataPoint {
        attributes: vec![text("a", "1"), text("b", "2")],
        time_unix_nano: 5,
        value: Some(number_data_point::Value::AsDouble(1.0)),
        ..Default::default()
    };
    let more = NumberDataPoint {
        attributes: vec![text("c", "3")],
        value: Some(number_data_point::Value::AsInt(2)),
        ..Default::default()
    };
    // A point's bytes followed by another's are one point with the fields of both.
    let apart = [point.encode_to_vec(), more.encode_to_vec()].concat();
    let gauge = field(1, &apart);
    let sum = Sum {
        data_points: vec![point.clone()],
        aggregation_temporality: 2,
        is_monotonic: true,
    }
    .encode_to_vec();
    let int_then_text = [
        field(1, b"k"),
        field(
            2,
            &AnyValue {
                value: Some(Value::IntValue(4)),
            }
            .encode_to_vec(),
        ),
        field(2, &field(1, b"four")),
        field(1, b"key"),
    ]
    .concat();
    let unpacked = {
        let mut p = field(9, &int_then_text);
        for count in [1u64, 2] {
            p.push(6 << 3 | 1);
            p.extend_from_slice(&count.to_le_bytes());
        }
        p.extend(field(6, &3u64.to_le_bytes()));
        p
    };
    let metrics = [
        [
            field(1, b"m"),
            field(5, &gauge),
            field(5, &gauge),
            field(1, b"n"),
        ]
        .concat(),
        [field(5, &gauge), field(7, &sum)].concat(),
        [field(7, &sum), field(5, &gauge), field(7, &sum)].concat(),
        field(9, &field(1, &unpacked)),
        field(9, &field(1, &field(7, &[0; 7]))),
        field(9, &field(1, &[field(6, &[0; 9]), vec![0; 8]].concat())),
    ];
    for m in &metrics {
        let request = field(1, &field(2, &field(2, m)));
        agree(&request);
    }
    let decoded = decode_metrics(&field(1, &field(2, &field(2, &metrics[0])))).unwrap();
    let m = &decoded.resource_metrics[0].scope_metrics[0].metrics[0];
    assert_eq!(m.name, "n");
    let Some(Data::Gauge(g)) = &m.data else {
        panic!("a gauge: {m:?}")
    };
    assert_eq!(g.data_points.len(), 2);
    let names: Vec<&str> = g.data_points[0]
        .attributes
        .iter()
        .map(|a| a.key.as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
}

// Guarantees: a repeated field whose occurrences follow one another gets its room once, for all
// of them.
#[test]
fn a_run_of_attributes_gets_room_for_all_of_it() {
    let point = NumberDataPoint {
        attributes: (0..5).map(|i| text(&i.to_string(), "v")).collect(),
        ..Default::default()
    };
    let metric = Metric {
        data: Some(Data::Gauge(Gauge {
            data_points: vec![point; 3],
        })),
        ..Default::default()
    };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![metric],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let decoded = decode_metrics(&request.encode_to_vec()).unwrap();
    let m = &decoded.resource_metrics[0].scope_metrics[0].metrics[0];
    let Some(Data::Gauge(g)) = &m.data else {
        panic!("a gauge")
    };
    assert_eq!(g.data_points.capacity(), 3);
    for p in &g.data_points {
        assert_eq!(p.attributes.capacity(), 5);
    }
}
