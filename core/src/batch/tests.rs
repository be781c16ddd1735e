use super::*;
use crate::proto::otlp::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use crate::proto::otlp::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, NumberDataPoint, Sum, Summary, SummaryDataPoint, exemplar,
    exponential_histogram_data_point::Buckets, number_data_point,
    summary_data_point::ValueAtQuantile,
};
use crate::proto::otlp::resource::v1::Resource;
use proptest::prelude::*;
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Builders. Every point carries a unique tag in `time_unix_nano` so that order can be checked.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    /// A metric without data (counts as zero points).
    NoData,
}

const KINDS: [Kind; 6] = [
    Kind::Gauge,
    Kind::Sum,
    Kind::Histogram,
    Kind::ExpHistogram,
    Kind::Summary,
    Kind::NoData,
];

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn number_point(tag: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![kv("p", &tag.to_string())],
        start_time_unix_nano: 1,
        time_unix_nano: tag,
        exemplars: vec![],
        flags: 0,
        value: Some(number_data_point::Value::AsInt(tag as i64)),
    }
}

fn histogram_point(tag: u64) -> HistogramDataPoint {
    HistogramDataPoint {
        time_unix_nano: tag,
        count: 3,
        sum: Some(4.5),
        bucket_counts: vec![1, 2, 0],
        explicit_bounds: vec![1.0, 2.0],
        min: Some(0.5),
        max: Some(2.0),
        ..Default::default()
    }
}

fn exp_histogram_point(tag: u64) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        time_unix_nano: tag,
        count: 2,
        scale: 3,
        zero_count: 1,
        positive: Some(Buckets {
            offset: -2,
            bucket_counts: vec![1],
        }),
        negative: None,
        ..Default::default()
    }
}

fn summary_point(tag: u64) -> SummaryDataPoint {
    SummaryDataPoint {
        time_unix_nano: tag,
        count: 10,
        sum: 55.0,
        quantile_values: vec![ValueAtQuantile {
            quantile: 0.5,
            value: 5.0,
        }],
        ..Default::default()
    }
}

/// A metric of `kind` with points tagged `tags`.
fn metric(name: &str, kind: Kind, tags: impl IntoIterator<Item = u64>) -> Metric {
    let tags: Vec<u64> = tags.into_iter().collect();
    let data = match kind {
        Kind::Gauge => Some(Data::Gauge(Gauge {
            data_points: tags.iter().map(|&t| number_point(t)).collect(),
        })),
        Kind::Sum => Some(Data::Sum(Sum {
            data_points: tags.iter().map(|&t| number_point(t)).collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        })),
        Kind::Histogram => Some(Data::Histogram(Histogram {
            data_points: tags.iter().map(|&t| histogram_point(t)).collect(),
            aggregation_temporality: AggregationTemporality::Delta as i32,
        })),
        Kind::ExpHistogram => Some(Data::ExponentialHistogram(ExponentialHistogram {
            data_points: tags.iter().map(|&t| exp_histogram_point(t)).collect(),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        Kind::Summary => Some(Data::Summary(Summary {
            data_points: tags.iter().map(|&t| summary_point(t)).collect(),
        })),
        Kind::NoData => {
            assert!(tags.is_empty());
            None
        }
    };
    Metric {
        name: name.into(),
        description: format!("{name} description"),
        unit: "By".into(),
        metadata: vec![kv("meta", name)],
        data,
    }
}

fn scope(name: &str, metrics: Vec<Metric>) -> ScopeMetrics {
    ScopeMetrics {
        scope: Some(InstrumentationScope {
            name: name.into(),
            version: "1.0".into(),
            ..Default::default()
        }),
        metrics,
        schema_url: format!("https://schema/{name}"),
    }
}

fn resource(service: &str, scopes: Vec<ScopeMetrics>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("service.name", service)],
            ..Default::default()
        }),
        scope_metrics: scopes,
        schema_url: format!("https://schema/{service}"),
    }
}

fn ctx() -> Context {
    Context {
        tenant: Some("acme".into()),
        metadata: vec![("x-team".into(), "infra".into())],
        ..Default::default()
    }
}

/// One data point flattened with everything that identifies where it belongs.
#[derive(Clone, Debug, PartialEq)]
struct Flat {
    resource: Option<Resource>,
    resource_schema: String,
    scope: Option<InstrumentationScope>,
    scope_schema: String,
    metric: (String, String, String, Vec<KeyValue>),
    /// Kind plus temporality / monotonicity.
    shape: (Kind, i32, bool),
    /// The point, encoded.
    point: Vec<u8>,
    tag: u64,
}

fn flatten(b: &Batch) -> Vec<Flat> {
    let mut out = Vec::new();
    for rm in &b.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let mut push = |shape: (Kind, i32, bool), point: Vec<u8>, tag: u64| {
                    out.push(Flat {
                        resource: rm.resource.clone(),
                        resource_schema: rm.schema_url.clone(),
                        scope: sm.scope.clone(),
                        scope_schema: sm.schema_url.clone(),
                        metric: (
                            m.name.clone(),
                            m.description.clone(),
                            m.unit.clone(),
                            m.metadata.clone(),
                        ),
                        shape,
                        point,
                        tag,
                    })
                };
                match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.iter().for_each(|p| {
                        push((Kind::Gauge, 0, false), p.encode_to_vec(), p.time_unix_nano)
                    }),
                    Some(Data::Sum(s)) => s.data_points.iter().for_each(|p| {
                        push(
                            (Kind::Sum, s.aggregation_temporality, s.is_monotonic),
                            p.encode_to_vec(),
                            p.time_unix_nano,
                        )
                    }),
                    Some(Data::Histogram(h)) => h.data_points.iter().for_each(|p| {
                        push(
                            (Kind::Histogram, h.aggregation_temporality, false),
                            p.encode_to_vec(),
                            p.time_unix_nano,
                        )
                    }),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.iter().for_each(|p| {
                        push(
                            (Kind::ExpHistogram, h.aggregation_temporality, false),
                            p.encode_to_vec(),
                            p.time_unix_nano,
                        )
                    }),
                    Some(Data::Summary(s)) => s.data_points.iter().for_each(|p| {
                        push(
                            (Kind::Summary, 0, false),
                            p.encode_to_vec(),
                            p.time_unix_nano,
                        )
                    }),
                    None => {}
                }
            }
        }
    }
    out
}

fn tags(b: &Batch) -> Vec<u64> {
    flatten(b).iter().map(|f| f.tag).collect()
}

/// A split leaves no empty resource, scope or metric behind on either side (the builders never make
/// a metric with data but no points, nor an empty resource or scope).
fn assert_no_split_leftovers(b: &Batch) {
    for rm in &b.resource_metrics {
        assert!(
            !rm.scope_metrics.is_empty(),
            "empty resource left by a split: {rm:?}"
        );
        for sm in &rm.scope_metrics {
            assert!(
                !sm.metrics.is_empty(),
                "empty scope left by a split: {sm:?}"
            );
            for m in &sm.metrics {
                assert!(
                    m.data.is_none() || metric_points(m) > 0,
                    "empty metric left by a split: {m:?}"
                );
            }
        }
    }
}

/// The fixture: 3 resources, 5 scopes, every kind, 26 points tagged 0..26.
fn fixture() -> Batch {
    let mut t = 0u64;
    let mut next = |n: u64| {
        let r = t..t + n;
        t += n;
        r
    };
    Batch::new(
        ctx(),
        vec![
            resource(
                "a",
                vec![
                    scope(
                        "s1",
                        vec![
                            metric("g", Kind::Gauge, next(3)),
                            metric("s", Kind::Sum, next(2)),
                        ],
                    ),
                    scope(
                        "s2",
                        vec![
                            metric("none", Kind::NoData, next(0)),
                            metric("h", Kind::Histogram, next(4)),
                        ],
                    ),
                ],
            ),
            resource(
                "b",
                vec![scope("s3", vec![metric("eh", Kind::ExpHistogram, next(5))])],
            ),
            resource(
                "c",
                vec![
                    scope("s4", vec![metric("sm", Kind::Summary, next(6))]),
                    scope(
                        "s5",
                        vec![
                            metric("g2", Kind::Gauge, next(1)),
                            metric("s2", Kind::Sum, next(5)),
                        ],
                    ),
                ],
            ),
        ],
    )
}

// ---------------------------------------------------------------------------------------------
// point_count
// ---------------------------------------------------------------------------------------------

#[test]
fn point_count_counts_every_kind_once_per_point() {
    let b = fixture();
    assert_eq!(b.point_count(), 26);
    assert!(!b.is_empty());
    assert_eq!(resource_points(&b.resource_metrics[0]), 9);
    assert_eq!(scope_points(&b.resource_metrics[0].scope_metrics[1]), 4);
    for kind in KINDS {
        let n = if kind == Kind::NoData { 0 } else { 4 };
        assert_eq!(
            metric_points(&metric("m", kind, 0..n)),
            n as usize,
            "{kind:?}"
        );
    }
}

#[test]
fn empty_batches_have_no_points() {
    assert_eq!(Batch::default().point_count(), 0);
    assert!(Batch::default().is_empty());
    let b = Batch::new(
        ctx(),
        vec![
            resource("a", vec![]),
            resource("b", vec![scope("s", vec![metric("x", Kind::NoData, [])])]),
        ],
    );
    assert_eq!(b.point_count(), 0);
    assert!(b.is_empty());
    let b = Batch::new(
        ctx(),
        vec![resource(
            "a",
            vec![scope("s", vec![metric("g", Kind::Gauge, [])])],
        )],
    );
    assert!(b.is_empty());
}

#[test]
fn request_conversions_keep_the_metrics() {
    let b = fixture();
    let req = b.to_request();
    assert_eq!(req.resource_metrics, b.resource_metrics);
    let back = Batch::from_request(ctx(), req.clone());
    assert_eq!(back, b);
    assert_eq!(back.into_request(), req);
}

#[test]
fn encode_request_writes_the_bytes_of_the_request_message() {
    let b = fixture();
    let bytes = b.encode_request();
    assert_eq!(bytes, b.to_request().encode_to_vec());
    let decoded = ExportMetricsServiceRequest::decode(&bytes[..]).unwrap();
    assert_eq!(decoded.resource_metrics, b.resource_metrics);
    assert!(Batch::default().encode_request().is_empty());
    // Sent as is by the gRPC codec.
    let sent = crate::grpc_codec::Encoded(bytes.clone().into());
    assert_eq!(sent.encode_to_vec(), bytes);
}

// ---------------------------------------------------------------------------------------------
// split_off_front
// ---------------------------------------------------------------------------------------------

#[test]
fn split_at_every_size_conserves_points_in_order() {
    let orig = fixture();
    let all = flatten(&orig);
    let total = orig.point_count();
    for n in 0..=total + 3 {
        let mut rest = orig.clone();
        let head = rest.split_off_front(n);
        assert_eq!(head.point_count(), n.min(total), "n={n}");
        assert_eq!(rest.point_count(), total - n.min(total), "n={n}");
        assert_eq!(head.context, orig.context);
        assert_eq!(rest.context, orig.context);
        assert_eq!(
            tags(&head),
            (0..n.min(total) as u64).collect::<Vec<_>>(),
            "n={n}"
        );
        assert_no_split_leftovers(&head);
        assert_no_split_leftovers(&rest);

        // Re-appending the remainder gives back every point, in order, with its resource, scope,
        // metric identity and shape.
        let mut joined = head.clone();
        joined.append(rest.clone());
        assert_eq!(flatten(&joined), all, "n={n}");
    }
}

#[test]
fn split_zero_takes_nothing() {
    let mut b = fixture();
    let head = b.split_off_front(0);
    assert!(head.resource_metrics.is_empty());
    assert_eq!(head.context, ctx());
    assert_eq!(b, fixture());
}

#[test]
fn split_of_everything_moves_the_batch_unchanged() {
    let mut b = fixture();
    let head = b.split_off_front(26);
    assert_eq!(head, fixture());
    assert!(b.resource_metrics.is_empty());

    let mut b = fixture();
    let head = b.split_off_front(usize::MAX);
    assert_eq!(head, fixture());
    assert!(b.resource_metrics.is_empty());
}

#[test]
fn split_on_a_resource_boundary_moves_whole_resources() {
    let mut b = fixture();
    let head = b.split_off_front(9);
    assert_eq!(head.resource_metrics, fixture().resource_metrics[..1]);
    assert_eq!(b.resource_metrics, fixture().resource_metrics[1..]);
}

#[test]
fn split_inside_a_metric_keeps_its_identity_and_shape_on_both_sides() {
    // 3 gauge points + 1 of the 2 sum points.
    let mut b = fixture();
    let head = b.split_off_front(4);
    assert_eq!(head.resource_metrics.len(), 1);
    let hr = &head.resource_metrics[0];
    let orig = fixture();
    assert_eq!(hr.resource, orig.resource_metrics[0].resource);
    assert_eq!(hr.schema_url, "https://schema/a");
    assert_eq!(hr.scope_metrics.len(), 1);
    let hs = &hr.scope_metrics[0];
    assert_eq!(hs.scope, orig.resource_metrics[0].scope_metrics[0].scope);
    assert_eq!(hs.schema_url, "https://schema/s1");
    assert_eq!(hs.metrics.len(), 2);
    assert_eq!(
        hs.metrics[0],
        orig.resource_metrics[0].scope_metrics[0].metrics[0]
    );
    let split = &hs.metrics[1];
    assert_eq!(
        (
            split.name.as_str(),
            split.unit.as_str(),
            split.description.as_str()
        ),
        ("s", "By", "s description")
    );
    assert_eq!(split.metadata, vec![kv("meta", "s")]);
    let Some(Data::Sum(s)) = &split.data else {
        panic!("{split:?}")
    };
    assert_eq!(
        s.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert!(s.is_monotonic);
    assert_eq!(s.data_points, vec![number_point(3)]);

    // The remainder keeps the rest of that metric first, in the same resource and scope.
    let rr = &b.resource_metrics[0];
    assert_eq!(rr.resource, orig.resource_metrics[0].resource);
    assert_eq!(
        rr.scope_metrics[0].scope,
        orig.resource_metrics[0].scope_metrics[0].scope
    );
    let rest = &rr.scope_metrics[0].metrics[0];
    assert_eq!(rest.name, "s");
    let Some(Data::Sum(s)) = &rest.data else {
        panic!("{rest:?}")
    };
    assert_eq!(s.data_points, vec![number_point(4)]);
    assert!(s.is_monotonic);
    assert_eq!(b.point_count(), 22);
}

#[test]
fn split_inside_each_kind_of_metric() {
    for kind in KINDS.into_iter().filter(|k| *k != Kind::NoData) {
        let orig = Batch::new(
            ctx(),
            vec![resource(
                "r",
                vec![scope("s", vec![metric("m", kind, 0..5)])],
            )],
        );
        for n in 1..5 {
            let mut rest = orig.clone();
            let head = rest.split_off_front(n);
            assert_eq!(
                tags(&head),
                (0..n as u64).collect::<Vec<_>>(),
                "{kind:?} n={n}"
            );
            assert_eq!(
                tags(&rest),
                (n as u64..5).collect::<Vec<_>>(),
                "{kind:?} n={n}"
            );
            let hm = &head.resource_metrics[0].scope_metrics[0].metrics[0];
            let rm = &rest.resource_metrics[0].scope_metrics[0].metrics[0];
            let shape = |m: &Metric| {
                flatten(&Batch::new(
                    ctx(),
                    vec![resource("r", vec![scope("s", vec![m.clone()])])],
                ))[0]
                    .shape
            };
            assert_eq!(
                shape(hm),
                shape(&orig.resource_metrics[0].scope_metrics[0].metrics[0]),
                "{kind:?}"
            );
            assert_eq!(shape(rm), shape(hm), "{kind:?}");
            let mut joined = head;
            joined.append(rest);
            assert_eq!(flatten(&joined), flatten(&orig), "{kind:?} n={n}");
        }
    }
}

#[test]
fn split_moves_leading_empty_metrics_with_the_head() {
    // A metric without points in front of the split point goes with the head.
    let orig = Batch::new(
        ctx(),
        vec![resource(
            "r",
            vec![scope(
                "s",
                vec![
                    metric("none", Kind::NoData, []),
                    metric("g", Kind::Gauge, 0..3),
                ],
            )],
        )],
    );
    let mut rest = orig.clone();
    let head = rest.split_off_front(1);
    let names: Vec<&str> = head.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["none", "g"]);
    assert_eq!(tags(&head), [0]);
    assert_eq!(tags(&rest), [1, 2]);
}

#[test]
fn repeated_splits_drain_the_batch_in_order() {
    for chunk in 1..=27 {
        let mut b = fixture();
        let mut seen = Vec::new();
        let mut rounds = 0;
        while !b.is_empty() {
            let head = b.split_off_front(chunk);
            assert!(head.point_count() == chunk || b.is_empty(), "chunk={chunk}");
            seen.extend(tags(&head));
            rounds += 1;
            assert!(rounds <= 26, "no progress with chunk={chunk}");
        }
        assert_eq!(seen, (0..26).collect::<Vec<_>>(), "chunk={chunk}");
        assert_eq!(rounds, 26usize.div_ceil(chunk));
    }
}

// ---------------------------------------------------------------------------------------------
// Property: split conserves points
// ---------------------------------------------------------------------------------------------

/// A batch of random shape: per metric a kind and a point count (tags are assigned in order).
fn arb_shape() -> impl Strategy<Value = Vec<Vec<Vec<(Kind, u64)>>>> {
    let kind = prop::sample::select(KINDS.to_vec());
    let m = (kind, 0u64..6).prop_map(|(k, n)| if k == Kind::NoData { (k, 0) } else { (k, n) });
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(m, 0..5), 0..4),
        0..5,
    )
}

fn build(shape: &[Vec<Vec<(Kind, u64)>>]) -> Batch {
    let mut t = 0;
    let rms = shape
        .iter()
        .enumerate()
        .map(|(ri, scopes)| {
            resource(
                &format!("r{ri}"),
                scopes
                    .iter()
                    .enumerate()
                    .map(|(si, metrics)| {
                        scope(
                            &format!("s{si}"),
                            metrics
                                .iter()
                                .enumerate()
                                .map(|(mi, &(k, n))| {
                                    let m = metric(&format!("m{mi}"), k, t..t + n);
                                    t += n;
                                    m
                                })
                                .collect(),
                        )
                    })
                    .collect(),
            )
        })
        .collect();
    Batch::new(ctx(), rms)
}

proptest! {
    #[test]
    fn prop_split_conserves_points(shape in arb_shape(), extra in 0usize..4, frac in 0.0f64..=1.0) {
        let orig = build(&shape);
        let total = orig.point_count();
        let n = ((total as f64 * frac) as usize + extra).saturating_sub(2);
        let mut rest = orig.clone();
        let head = rest.split_off_front(n);
        prop_assert_eq!(head.point_count(), n.min(total));
        prop_assert_eq!(head.point_count() + rest.point_count(), total);
        prop_assert_eq!(tags(&head), (0..n.min(total) as u64).collect::<Vec<_>>());
        let mut joined = head;
        joined.append(rest);
        prop_assert_eq!(flatten(&joined), flatten(&orig));
    }

    #[test]
    fn prop_chunked_splits_conserve_points(shape in arb_shape(), chunk in 1usize..8) {
        let mut b = build(&shape);
        let total = b.point_count();
        let mut heads = Vec::new();
        while !b.is_empty() {
            let head = b.split_off_front(chunk);
            prop_assert!(head.point_count() == chunk || b.is_empty());
            heads.push(head);
        }
        prop_assert_eq!(heads.len(), total.div_ceil(chunk));
        let seen: Vec<u64> = heads.iter().flat_map(tags).collect();
        prop_assert_eq!(seen, (0..total as u64).collect::<Vec<_>>());
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP encoding round trips (protobuf and OTLP/JSON)
// ---------------------------------------------------------------------------------------------

fn arb_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::POSITIVE
            | prop::num::f64::NEGATIVE
            | prop::num::f64::NORMAL
            | prop::num::f64::SUBNORMAL
            | prop::num::f64::ZERO,
        Just(0.0),
        Just(1.5),
        Just(-1e300),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
    ]
}

fn arb_any_value() -> impl Strategy<Value = AnyValue> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(any_value::Value::StringValue),
        any::<bool>().prop_map(any_value::Value::BoolValue),
        any::<i64>().prop_map(any_value::Value::IntValue),
        arb_f64().prop_map(any_value::Value::DoubleValue),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(any_value::Value::BytesValue),
    ]
    .prop_map(|v| AnyValue { value: Some(v) });
    let leaf = prop_oneof![9 => leaf, 1 => Just(AnyValue { value: None })];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
            }),
            prop::collection::vec(("[a-z.]{0,6}", prop::option::of(inner)), 0..4).prop_map(|kvs| {
                AnyValue {
                    value: Some(any_value::Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, value)| KeyValue { key, value })
                            .collect(),
                    })),
                }
            }),
        ]
    })
}

fn arb_attrs() -> impl Strategy<Value = Vec<KeyValue>> {
    prop::collection::vec(
        ("[a-zA-Z_.]{0,8}", prop::option::of(arb_any_value()))
            .prop_map(|(key, value)| KeyValue { key, value }),
        0..4,
    )
}

fn arb_exemplar() -> impl Strategy<Value = Exemplar> {
    (
        arb_attrs(),
        any::<u64>(),
        prop_oneof![
            Just(None),
            arb_f64().prop_map(|v| Some(exemplar::Value::AsDouble(v))),
            any::<i64>().prop_map(|v| Some(exemplar::Value::AsInt(v))),
        ],
        prop_oneof![Just(vec![]), prop::collection::vec(any::<u8>(), 8..=8)],
        prop_oneof![Just(vec![]), prop::collection::vec(any::<u8>(), 16..=16)],
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, value, span_id, trace_id)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                value,
                span_id,
                trace_id,
            },
        )
}

fn arb_exemplars() -> impl Strategy<Value = Vec<Exemplar>> {
    prop::collection::vec(arb_exemplar(), 0..3)
}

fn arb_number_point() -> impl Strategy<Value = NumberDataPoint> {
    (
        arb_attrs(),
        any::<u64>(),
        any::<u64>(),
        arb_exemplars(),
        0u32..2,
        prop_oneof![
            Just(None),
            arb_f64().prop_map(|v| Some(number_data_point::Value::AsDouble(v))),
            any::<i64>().prop_map(|v| Some(number_data_point::Value::AsInt(v))),
        ],
    )
        .prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, exemplars, flags, value)| {
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value,
                }
            },
        )
}

fn arb_histogram_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        (arb_attrs(), any::<u64>(), any::<u64>(), any::<u64>()),
        prop::option::of(arb_f64()),
        prop::collection::vec(any::<u64>(), 0..5),
        prop::collection::vec(arb_f64(), 0..4),
        arb_exemplars(),
        0u32..2,
        prop::option::of(arb_f64()),
        prop::option::of(arb_f64()),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            )| {
                HistogramDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    count,
                    sum,
                    bucket_counts,
                    explicit_bounds,
                    exemplars,
                    flags,
                    min,
                    max,
                }
            },
        )
}

fn arb_buckets() -> impl Strategy<Value = Option<Buckets>> {
    prop::option::of(
        (any::<i32>(), prop::collection::vec(any::<u64>(), 0..5)).prop_map(
            |(offset, bucket_counts)| Buckets {
                offset,
                bucket_counts,
            },
        ),
    )
}

fn arb_exp_histogram_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    (
        (arb_attrs(), any::<u64>(), any::<u64>(), any::<u64>()),
        prop::option::of(arb_f64()),
        (-10i32..=20, any::<u64>()),
        (arb_buckets(), arb_buckets()),
        0u32..2,
        arb_exemplars(),
        (
            prop::option::of(arb_f64()),
            prop::option::of(arb_f64()),
            arb_f64(),
        ),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                sum,
                (scale, zero_count),
                (positive, negative),
                flags,
                exemplars,
                (min, max, zero_threshold),
            )| ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                scale,
                zero_count,
                positive,
                negative,
                flags,
                exemplars,
                min,
                max,
                zero_threshold,
            },
        )
}

fn arb_summary_point() -> impl Strategy<Value = SummaryDataPoint> {
    (
        arb_attrs(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        arb_f64(),
        prop::collection::vec(
            (0.0f64..=1.0, arb_f64())
                .prop_map(|(quantile, value)| ValueAtQuantile { quantile, value }),
            0..4,
        ),
        0u32..2,
    )
        .prop_map(
            |(
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            )| SummaryDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            },
        )
}

fn arb_temporality() -> impl Strategy<Value = i32> {
    0i32..=2
}

fn points<S: Strategy>(s: S) -> impl Strategy<Value = Vec<S::Value>> {
    prop::collection::vec(s, 0..4)
}

fn arb_data() -> impl Strategy<Value = Option<Data>> {
    prop_oneof![
        points(arb_number_point()).prop_map(|data_points| Some(Data::Gauge(Gauge { data_points }))),
        (points(arb_number_point()), arb_temporality(), any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| Some(Data::Sum(Sum {
                data_points,
                aggregation_temporality,
                is_monotonic
            }))
        ),
        (points(arb_histogram_point()), arb_temporality()).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::Histogram(Histogram {
                data_points,
                aggregation_temporality
            }))
        ),
        (points(arb_exp_histogram_point()), arb_temporality()).prop_map(
            |(data_points, aggregation_temporality)| Some(Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points,
                    aggregation_temporality
                }
            ))
        ),
        points(arb_summary_point())
            .prop_map(|data_points| Some(Data::Summary(Summary { data_points }))),
        Just(None),
    ]
}

fn arb_metric() -> impl Strategy<Value = Metric> {
    (
        "[a-z_.]{0,10}",
        ".{0,8}",
        "[a-zA-Z{}/]{0,4}",
        arb_attrs(),
        arb_data(),
    )
        .prop_map(|(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        })
}

fn arb_scope_metrics() -> impl Strategy<Value = ScopeMetrics> {
    (
        prop::option::of(
            ("[a-z.]{0,8}", "[0-9.]{0,5}", arb_attrs(), 0u32..3).prop_map(
                |(name, version, attributes, dropped_attributes_count)| InstrumentationScope {
                    name,
                    version,
                    attributes,
                    dropped_attributes_count,
                },
            ),
        ),
        prop::collection::vec(arb_metric(), 0..4),
        "[a-z:/.]{0,10}",
    )
        .prop_map(|(scope, metrics, schema_url)| ScopeMetrics {
            scope,
            metrics,
            schema_url,
        })
}

fn arb_resource_metrics() -> impl Strategy<Value = ResourceMetrics> {
    (
        prop::option::of(
            (
                arb_attrs(),
                0u32..3,
                prop::collection::vec(
                    (
                        "[a-z]{0,5}",
                        "[a-z.]{0,6}",
                        prop::collection::vec("[a-z.]{1,6}", 0..3),
                        prop::collection::vec("[a-z.]{1,6}", 0..2),
                    )
                        .prop_map(
                            |(schema_url, r#type, id_keys, description_keys)| EntityRef {
                                schema_url,
                                r#type,
                                id_keys,
                                description_keys,
                            },
                        ),
                    0..2,
                ),
            )
                .prop_map(|(attributes, dropped_attributes_count, entity_refs)| {
                    Resource {
                        attributes,
                        dropped_attributes_count,
                        entity_refs,
                    }
                }),
        ),
        prop::collection::vec(arb_scope_metrics(), 0..3),
        "[a-z:/.]{0,10}",
    )
        .prop_map(|(resource, scope_metrics, schema_url)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        })
}

fn arb_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    prop::collection::vec(arb_resource_metrics(), 0..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn prop_protobuf_round_trip_through_a_batch_is_byte_identical(req in arb_request()) {
        let bytes = req.encode_to_vec();
        let decoded = ExportMetricsServiceRequest::decode(bytes.as_slice()).expect("decodes");
        let batch = Batch::from_request(ctx(), decoded);
        prop_assert_eq!(batch.point_count(), Batch::from_request(ctx(), req.clone()).point_count());
        let again = batch.to_request().encode_to_vec();
        prop_assert_eq!(&again, &bytes);
        prop_assert_eq!(batch.encode_request(), bytes.clone());
        prop_assert_eq!(batch.into_request().encode_to_vec(), bytes);
    }

    #[test]
    fn prop_otlp_json_round_trip_is_equal(req in arb_request()) {
        let json = serde_json::to_string(&req).expect("serializes");
        let back: ExportMetricsServiceRequest = serde_json::from_str(&json)
            .map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
        prop_assert_eq!(&back, &req, "{}", json);
        // And from there to protobuf, the bytes are the original's.
        prop_assert_eq!(Batch::from_request(ctx(), back).to_request().encode_to_vec(), req.encode_to_vec());
    }

    #[test]
    fn prop_split_batches_of_real_requests_reencode_to_the_same_points(req in arb_request(), n in 0usize..12) {
        let orig = Batch::from_request(ctx(), req);
        let total = orig.point_count();
        let mut rest = orig.clone();
        let head = rest.split_off_front(n);
        prop_assert_eq!(head.point_count(), n.min(total));
        prop_assert_eq!(rest.point_count(), total - n.min(total));
        let mut joined = head;
        joined.append(rest);
        // Every point, encoded, in the same order and with the same resource, scope and metric.
        let strip_tags = |v: Vec<Flat>| v.into_iter().map(|f| (f.resource, f.scope, f.metric, f.shape, f.point)).collect::<Vec<_>>();
        prop_assert_eq!(strip_tags(flatten(&joined)), strip_tags(flatten(&orig)));
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON: non-finite doubles and the wire format
// ---------------------------------------------------------------------------------------------

fn gauge_request(v: f64) -> ExportMetricsServiceRequest {
    let mut p = number_point(7);
    p.value = Some(number_data_point::Value::AsDouble(v));
    Batch::new(
        ctx(),
        vec![resource(
            "r",
            vec![scope(
                "s",
                vec![Metric {
                    name: "g".into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![p],
                    })),
                    ..Default::default()
                }],
            )],
        )],
    )
    .into_request()
}

fn gauge_value(req: &ExportMetricsServiceRequest) -> Option<number_data_point::Value> {
    let Some(Data::Gauge(g)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("{req:?}")
    };
    g.data_points[0].value
}

const JSON_GAUGE: &str = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"g","gauge":{"dataPoints":[{"timeUnixNano":"7","asDouble":VALUE}]}}]}]}]}"#;

#[test]
fn otlp_json_decodes_nan_and_infinities_written_as_strings() {
    for (text, check) in [
        (r#""NaN""#, (|v: f64| v.is_nan()) as fn(f64) -> bool),
        (r#""Infinity""#, |v: f64| v == f64::INFINITY),
        (r#""-Infinity""#, |v: f64| v == f64::NEG_INFINITY),
        ("1.5", |v: f64| v == 1.5),
        (r#""1.5""#, |v: f64| v == 1.5),
        ("-0.0", |v: f64| v == 0.0 && v.is_sign_negative()),
    ] {
        let json = JSON_GAUGE.replace("VALUE", text);
        let req: ExportMetricsServiceRequest =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
        match gauge_value(&req) {
            Some(number_data_point::Value::AsDouble(v)) => {
                assert!(check(v), "{text} decoded as {v}")
            }
            other => panic!("{text} decoded as {other:?}"),
        }
    }
}

#[test]
fn otlp_json_round_trips_exemplar_nan_and_infinities() {
    // Exemplars have a hand-written serde impl that writes non-finite doubles as strings.
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let ex = Exemplar {
            value: Some(exemplar::Value::AsDouble(v)),
            ..Default::default()
        };
        let json = serde_json::to_string(&ex).unwrap();
        let back: Exemplar = serde_json::from_str(&json).unwrap();
        match back.value {
            Some(exemplar::Value::AsDouble(b)) => assert!(
                b.to_bits() == v.to_bits() || (b.is_nan() && v.is_nan()),
                "{json}"
            ),
            other => panic!("{json} -> {other:?}"),
        }
    }
}

/// proto3's JSON mapping writes NaN and the infinities as the strings "NaN", "Infinity" and
/// "-Infinity". The pbjson-generated `Serialize` impls pass the `f64` straight to serde_json, which
/// writes non-finite numbers as `null` (decoded as *no value*), so OTLP/JSON must be written with
/// `otlp_json::to_json_vec`, which writes the strings. JSON carries NaN only as "NaN": NaN payload
/// bits (e.g. Prometheus' stale marker) are not preserved.
#[test]
fn otlp_json_round_trips_nan_and_infinities_in_a_gauge() {
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let req = gauge_request(v);
        let bytes = crate::otlp_json::to_json_vec(&req);
        let json = String::from_utf8_lossy(&bytes);
        let back: ExportMetricsServiceRequest = serde_json::from_slice(&bytes).unwrap();
        match gauge_value(&back) {
            Some(number_data_point::Value::AsDouble(b)) => {
                assert!(
                    b.to_bits() == v.to_bits() || (b.is_nan() && v.is_nan()),
                    "{json}"
                )
            }
            other => panic!("{v} -> {json} -> {other:?}"),
        }
    }
}

#[test]
fn otlp_json_writes_64_bit_integers_as_strings_and_enums_as_integers() {
    let req = Batch::new(
        ctx(),
        vec![resource(
            "r",
            vec![scope("s", vec![metric("s", Kind::Sum, [u64::MAX])])],
        )],
    )
    .into_request();
    let json = serde_json::to_string(&req).unwrap();
    assert!(
        json.contains(r#""timeUnixNano":"18446744073709551615""#),
        "{json}"
    );
    assert!(json.contains(r#""asInt":"-1""#), "{json}");
    assert!(json.contains(r#""aggregationTemporality":2"#), "{json}");
    assert!(json.contains(r#""isMonotonic":true"#), "{json}");
    let back: ExportMetricsServiceRequest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, req);
}
