use super::*;

#[test]
fn exemplar_ids_are_hex_and_round_trip() {
    let ex = Exemplar {
        filtered_attributes: vec![],
        time_unix_nano: 1_700_000_000_000_000_123,
        value: Some(exemplar::Value::AsInt(-7)),
        span_id: vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        trace_id: (0u8..16).collect(),
    };
    let json = serde_json::to_string(&ex).unwrap();
    assert!(json.contains(r#""spanId":"deadbeef00010203""#), "{json}");
    assert!(
        json.contains(r#""traceId":"000102030405060708090a0b0c0d0e0f""#),
        "{json}"
    );
    assert!(
        json.contains(r#""timeUnixNano":"1700000000000000123""#),
        "{json}"
    );
    let back: Exemplar = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ex);
}

#[test]
fn exemplar_accepts_numbers_snake_case_and_special_doubles() {
    let back: Exemplar =
        serde_json::from_str(r#"{"time_unix_nano": 5, "as_double": "NaN", "span_id": ""}"#)
            .unwrap();
    assert_eq!(back.time_unix_nano, 5);
    assert!(matches!(back.value, Some(exemplar::Value::AsDouble(v)) if v.is_nan()));
}

#[test]
fn exemplar_rejects_bad_hex_and_bad_numbers() {
    assert!(serde_json::from_str::<Exemplar>(r#"{"spanId":"xyz1"}"#).is_err());
    assert!(serde_json::from_str::<Exemplar>(r#"{"spanId":"abc"}"#).is_err());
    assert!(serde_json::from_str::<Exemplar>(r#"{"asInt":"1.5"}"#).is_err());
}

// ---------------------------------------------------------------------------------------------
// Non-finite doubles: `to_json_vec` writes "NaN", "Infinity", "-Infinity" at any depth.
// ---------------------------------------------------------------------------------------------

use crate::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use crate::proto::otlp::common::v1::{AnyValue, ArrayValue, KeyValueList, any_value};
use crate::proto::otlp::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint, metric,
    number_data_point, summary_data_point::ValueAtQuantile,
};

const SPECIALS: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

fn double(v: f64) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::DoubleValue(v)),
    }
}

/// A request with `v` in every double field OTLP has, including nested attribute values.
fn request_with(v: f64) -> ExportMetricsServiceRequest {
    let attrs = vec![
        KeyValue {
            key: "d".into(),
            value: Some(double(v)),
        },
        KeyValue {
            key: "nested".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![AnyValue {
                        value: Some(any_value::Value::KvlistValue(KeyValueList {
                            values: vec![KeyValue {
                                key: "deep".into(),
                                value: Some(double(v)),
                            }],
                        })),
                    }],
                })),
            }),
        },
    ];
    let exemplar = Exemplar {
        value: Some(exemplar::Value::AsDouble(v)),
        ..Default::default()
    };
    let metric = |name: &str, data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    let metrics = vec![
        metric(
            "gauge",
            metric::Data::Gauge(Gauge {
                data_points: vec![NumberDataPoint {
                    attributes: attrs.clone(),
                    time_unix_nano: 1,
                    value: Some(number_data_point::Value::AsDouble(v)),
                    exemplars: vec![exemplar.clone()],
                    ..Default::default()
                }],
            }),
        ),
        metric(
            "histogram",
            metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs.clone(),
                    count: 2,
                    sum: Some(v),
                    bucket_counts: vec![1, 0, 1],
                    explicit_bounds: vec![-1.5, v],
                    exemplars: vec![exemplar.clone()],
                    min: Some(v),
                    max: Some(v),
                    ..Default::default()
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "exp_histogram",
            metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    count: 1,
                    sum: Some(v),
                    min: Some(v),
                    max: Some(v),
                    zero_threshold: v,
                    ..Default::default()
                }],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "summary",
            metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: attrs,
                    count: 3,
                    sum: v,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: v,
                        },
                        ValueAtQuantile {
                            quantile: v,
                            value: 2.0,
                        },
                    ],
                    ..Default::default()
                }],
            }),
        ),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Every double in `req`, in a fixed order (the same fields `request_with` fills).
fn doubles(req: &ExportMetricsServiceRequest) -> Vec<Option<f64>> {
    fn any(v: Option<&AnyValue>, out: &mut Vec<Option<f64>>) {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::DoubleValue(d)) => out.push(Some(*d)),
            Some(any_value::Value::ArrayValue(a)) => {
                for v in &a.values {
                    any(Some(v), out)
                }
            }
            Some(any_value::Value::KvlistValue(l)) => attrs(&l.values, out),
            _ => out.push(None),
        }
    }
    fn attrs(kvs: &[KeyValue], out: &mut Vec<Option<f64>>) {
        for kv in kvs {
            any(kv.value.as_ref(), out)
        }
    }
    fn exemplars(exs: &[Exemplar], out: &mut Vec<Option<f64>>) {
        for e in exs {
            out.push(match e.value {
                Some(exemplar::Value::AsDouble(d)) => Some(d),
                _ => None,
            })
        }
    }
    let mut out = vec![];
    for m in &req.resource_metrics[0].scope_metrics[0].metrics {
        match m.data.as_ref().unwrap() {
            metric::Data::Gauge(g) => {
                let p = &g.data_points[0];
                attrs(&p.attributes, &mut out);
                out.push(match p.value {
                    Some(number_data_point::Value::AsDouble(d)) => Some(d),
                    _ => None,
                });
                exemplars(&p.exemplars, &mut out);
            }
            metric::Data::Histogram(h) => {
                let p = &h.data_points[0];
                attrs(&p.attributes, &mut out);
                out.extend([p.sum, p.min, p.max]);
                out.extend(p.explicit_bounds.iter().map(|&b| Some(b)));
                exemplars(&p.exemplars, &mut out);
            }
            metric::Data::ExponentialHistogram(h) => {
                let p = &h.data_points[0];
                out.extend([p.sum, p.min, p.max, Some(p.zero_threshold)]);
            }
            metric::Data::Summary(s) => {
                let p = &s.data_points[0];
                attrs(&p.attributes, &mut out);
                out.push(Some(p.sum));
                for q in &p.quantile_values {
                    out.extend([Some(q.quantile), Some(q.value)]);
                }
            }
            other => panic!("{other:?}"),
        }
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

#[test]
fn non_finite_doubles_round_trip_at_any_depth() {
    for v in SPECIALS {
        let req = request_with(v);
        let expected = doubles(&req);
        assert_eq!(expected.len(), 23, "{expected:?}");
        let json = to_json_string(&req);
        assert!(!json.contains("null"), "{json}");
        let back: ExportMetricsServiceRequest =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let got = doubles(&back);
        assert_eq!(got.len(), expected.len(), "{json}");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            match (g, e) {
                (Some(g), Some(e)) if same(*g, *e) => {}
                _ => panic!("double #{i}: {e:?} came back as {g:?} from {json}"),
            }
        }
        assert_eq!(to_json_vec(&req), json.as_bytes());
    }
}

#[test]
fn non_finite_doubles_are_written_as_proto3_json_strings() {
    for (v, text) in SPECIALS
        .into_iter()
        .zip(["\"NaN\"", "\"Infinity\"", "\"-Infinity\""])
    {
        let json = to_json_string(&request_with(v));
        for field in [
            "doubleValue",
            "asDouble",
            "sum",
            "min",
            "max",
            "zeroThreshold",
            "value",
            "quantile",
        ] {
            let needle = format!("\"{field}\":{text}");
            assert!(json.contains(&needle), "{needle} not in {json}");
        }
        assert!(
            json.contains(&format!("\"explicitBounds\":[-1.5,{text}]")),
            "{json}"
        );
        // Plain serde_json loses them: this is what `to_json_vec` exists for.
        let plain = serde_json::to_string(&request_with(v)).unwrap();
        assert!(plain.contains("null"), "{plain}");
    }
}

#[test]
fn finite_values_are_written_exactly_as_serde_json_writes_them() {
    for v in [
        0.0,
        -0.0,
        1.5,
        -2.25e-300,
        f64::MAX,
        f64::MIN_POSITIVE,
        1e21,
        0.1 + 0.2,
    ] {
        let req = request_with(v);
        assert_eq!(to_json_vec(&req), serde_json::to_vec(&req).unwrap(), "{v}");
        assert_eq!(to_json_string(&req), serde_json::to_string(&req).unwrap());
    }
    // Not only OTLP messages: any serde value, including f32, maps, tuples, enums and options.
    #[derive(Serialize)]
    enum E {
        Unit,
        Newtype(f64),
        Tuple(f32, f64),
        Struct { x: f64 },
    }
    let finite = (
        vec![
            E::Unit,
            E::Newtype(1.0),
            E::Tuple(0.5, -3.0),
            E::Struct { x: 4.5 },
        ],
        std::collections::BTreeMap::from([("k", Some(1.25f32)), ("n", None)]),
        'c',
        (),
        i128::MIN,
        u128::MAX,
    );
    assert_eq!(to_json_vec(&finite), serde_json::to_vec(&finite).unwrap());
    let special = (
        vec![
            E::Newtype(f64::NAN),
            E::Tuple(f32::INFINITY, f64::NEG_INFINITY),
            E::Struct { x: f64::NAN },
        ],
        std::collections::BTreeMap::from([("k", Some(f32::NEG_INFINITY))]),
        [f32::NAN],
    );
    assert_eq!(
        to_json_string(&special),
        r#"[[{"Newtype":"NaN"},{"Tuple":["Infinity","-Infinity"]},{"Struct":{"x":"NaN"}}],{"k":"-Infinity"},["NaN"]]"#
    );
}

/// JSON carries NaN only as the string "NaN": a NaN's payload bits cannot survive OTLP/JSON. In
/// particular Prometheus' stale marker (`0x7ff0000000000002`) comes back as an ordinary NaN. Only
/// protobuf keeps the bits.
#[test]
fn nan_payload_bits_do_not_survive_json() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    assert!(stale.is_nan());
    let req = request_with(stale);
    let json = to_json_string(&req);
    assert!(json.contains(r#""asDouble":"NaN""#), "{json}");
    let back: ExportMetricsServiceRequest = serde_json::from_str(&json).unwrap();
    let (sent, got) = (doubles(&req), doubles(&back));
    assert_eq!(sent.len(), got.len());
    let mut nans = 0;
    for (s, g) in sent.into_iter().flatten().zip(got.into_iter().flatten()) {
        if s.is_nan() {
            nans += 1;
            assert!(g.is_nan());
            assert_ne!(g.to_bits(), stale.to_bits());
            assert_eq!(g.to_bits(), f64::NAN.to_bits());
        } else {
            assert_eq!(g.to_bits(), s.to_bits());
        }
    }
    assert_eq!(nans, 20);
}
