//! Tests for the OTLP -> Prometheus translation: names, labels, every metric kind, staleness,
//! delta handling and native histograms.

use super::names::{NameKind, label_name, metric_name, unit_word};
use super::*;
use crate::batch::{Batch, Context};
use crate::proto::otlp::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
};
use crate::proto::otlp::metrics::v1::Exemplar as OtlpExemplar;
use crate::proto::otlp::metrics::v1::exponential_histogram_data_point::Buckets;
use crate::proto::otlp::metrics::v1::summary_data_point::ValueAtQuantile;
use crate::proto::otlp::metrics::v1::*;
use crate::proto::otlp::resource::v1::Resource;
use proptest::prelude::*;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Every test translates with and without a label cache

thread_local! {
    /// A test's cache for stateful (delta) translations, so that later calls find what earlier
    /// ones left.
    static CACHE: std::cell::RefCell<LabelCache> =
        std::cell::RefCell::new(LabelCache::new(LabelCache::DEFAULT_CAPACITY));
}

/// [`super::translate`], checked against the same translation with a label cache, cold and then
/// warm (stateless translations), or with the test's cache (delta translations).
fn translate(
    batch: &Batch,
    opts: &TranslateOptions,
    delta: Option<&mut DeltaToCumulative>,
) -> Translation {
    if let Some(delta) = delta {
        return CACHE
            .with(|c| translate_cached(batch, opts, Some(delta), Some(&mut c.borrow_mut())));
    }
    let plain = super::translate(batch, opts, None);
    let mut cache = LabelCache::new(LabelCache::DEFAULT_CAPACITY);
    for round in ["cold", "warm"] {
        let cached = translate_cached(batch, opts, None, Some(&mut cache));
        // Compared as text: NaN values (stale markers) are never equal as floats.
        let text = |t: &Translation| format!("{:?}", t.series);
        assert_eq!(text(&cached), text(&plain), "{round} cache");
        assert_eq!(cached.dropped, plain.dropped, "{round} cache");
        assert_eq!(cached.fingerprints, plain.fingerprints, "{round} cache");
    }
    plain
}

// ---------------------------------------------------------------------------------------------
// Builders

const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

use crate::test_util::{kv, string_kv as s};

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    v.sort();
    v
}

fn batch_with(resource: Vec<KeyValue>, scope: Option<(&str, &str)>, metrics: Vec<Metric>) -> Batch {
    Batch::new(
        Context::default(),
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: scope.map(|(name, version)| InstrumentationScope {
                    name: name.into(),
                    version: version.into(),
                    ..Default::default()
                }),
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
}

/// A batch without resource attributes or scope, so that series carry only their own labels.
fn bare(metrics: Vec<Metric>) -> Batch {
    batch_with(Vec::new(), None, metrics)
}

fn num(time: u64, start: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        start_time_unix_nano: start,
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn metric(name: &str, unit: &str, data: metric::Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        description: format!("about {name}"),
        data: Some(data),
        ..Default::default()
    }
}

fn gauge(name: &str, unit: &str, points: Vec<NumberDataPoint>) -> Metric {
    metric(
        name,
        unit,
        metric::Data::Gauge(Gauge {
            data_points: points,
        }),
    )
}

fn sum(
    name: &str,
    unit: &str,
    monotonic: bool,
    t: AggregationTemporality,
    points: Vec<NumberDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: t as i32,
            is_monotonic: monotonic,
        }),
    )
}

fn histogram(
    name: &str,
    unit: &str,
    t: AggregationTemporality,
    points: Vec<HistogramDataPoint>,
) -> Metric {
    metric(
        name,
        unit,
        metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: t as i32,
        }),
    )
}

fn exp_histogram(
    name: &str,
    t: AggregationTemporality,
    points: Vec<ExponentialHistogramDataPoint>,
) -> Metric {
    metric(
        name,
        "",
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points,
            aggregation_temporality: t as i32,
        }),
    )
}

fn opts() -> TranslateOptions {
    TranslateOptions::default()
}

fn series<'t>(t: &'t Translation, want: &[(&str, &str)]) -> &'t Series {
    let want = labels(want);
    t.series
        .iter()
        .find(|s| s.labels.to_vec() == want)
        .unwrap_or_else(|| {
            panic!(
                "no series {want:?}; have {:#?}",
                t.series.iter().map(|s| &s.labels).collect::<Vec<_>>()
            )
        })
}

fn values(s: &Series) -> Vec<f64> {
    s.samples.iter().map(|s| s.value).collect()
}

fn dropped(t: &Translation, reason: &str) -> u64 {
    t.dropped
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(0, |(_, n)| *n)
}

// ---------------------------------------------------------------------------------------------
// Metric names

#[test]
fn metric_names_follow_the_worked_examples_of_the_spec_and_otlptranslator() {
    use NameKind::*;
    let cases: &[(&str, &str, NameKind, &str)] = &[
        // otelcol.md §1.2 worked examples.
        (
            "http.server.request.duration",
            "s",
            Histogram,
            "http_server_request_duration_seconds",
        ),
        (
            "http.server.active_requests",
            "{request}",
            UpDownCounter,
            "http_server_active_requests",
        ),
        (
            "system.network.dropped",
            "{packets}",
            Counter,
            "system_network_dropped_total",
        ),
        (
            "system.memory.utilization",
            "1",
            Gauge,
            "system_memory_utilization_ratio",
        ),
        ("requests", "1/s", Gauge, "requests_per_second"),
        ("throughput", "By/s", Gauge, "throughput_bytes_per_second"),
        ("response_time_seconds", "s", Gauge, "response_time_seconds"),
        (
            "otelcol_process_cpu_seconds",
            "s",
            Counter,
            "otelcol_process_cpu_seconds_total",
        ),
        (
            "metric__with__multiple__underscores",
            "unit__multiple__underscores",
            Gauge,
            "metric_with_multiple_underscores_unit_multiple_underscores",
        ),
        ("123metric", "", Gauge, "_123metric"),
        (
            "process.cpu.time",
            "s",
            Counter,
            "process_cpu_time_seconds_total",
        ),
        (
            "process.memory.usage",
            "By",
            UpDownCounter,
            "process_memory_usage_bytes",
        ),
        (
            "go.memory.allocated",
            "By",
            Counter,
            "go_memory_allocated_bytes_total",
        ),
        (
            "go.goroutine.count",
            "{goroutine}",
            UpDownCounter,
            "go_goroutine_count",
        ),
        // otlptranslator metric_namer_test.go cases.
        (
            "custom_metric",
            "unit@with#special/chars",
            Gauge,
            "custom_metric_unit_with_special_per_chars",
        ),
        ("custom_metric", "By/{custom}", Gauge, "custom_metric_bytes"),
        (
            "custom_metric",
            "custom_unit",
            Gauge,
            "custom_metric_custom_unit",
        ),
        ("cpu_usage", "1", Gauge, "cpu_usage_ratio"),
        ("response_time", "ms", Summary, "response_time_milliseconds"),
        ("metric@@##$$name", "", Gauge, "metric_name"),
        ("uptime", "d", Gauge, "uptime_days"),
        // The rest of the unit map.
        ("disk.size", "TiBy", Gauge, "disk_size_tebibytes"),
        ("disk.size", "KiBy", Gauge, "disk_size_kibibytes"),
        ("disk.size", "kBy", Gauge, "disk_size_kilobytes"),
        ("temp", "Cel", Gauge, "temp_celsius"),
        ("cpu.freq", "Hz", Gauge, "cpu_freq_hertz"),
        ("load", "%", Gauge, "load_percent"),
        ("wait", "us", Histogram, "wait_microseconds"),
        ("uptime", "min", Counter, "uptime_minutes_total"),
        ("net.io", "By/h", Gauge, "net_io_bytes_per_hour"),
        // `_total` moves to the end, once.
        ("api.total.requests", "", Counter, "api_requests_total"),
        // Colons are valid in metric names.
        ("job:requests:rate5m", "", Gauge, "job:requests:rate5m"),
    ];
    for (name, unit, kind, want) in cases {
        assert_eq!(
            metric_name(name, unit, *kind, true).as_deref(),
            Some(*want),
            "{name} [{unit}] {kind:?}"
        );
    }
}

#[test]
fn metric_names_are_idempotent_on_prometheus_style_names() {
    use NameKind::*;
    let unchanged: &[(&str, &str, NameKind)] = &[
        ("http_server_request_duration_seconds", "s", Histogram),
        ("go_goroutines", "", Gauge),
        ("http_requests_total", "", Counter),
        ("process_cpu_seconds_total", "s", Counter),
        ("throughput_bytes_per_second", "By/s", Gauge),
        ("requests_per_second", "1/s", Gauge),
        ("system_memory_utilization_ratio", "1", Gauge),
        ("go_gc_cycles_total", "", Counter),
        ("gc_x_gc_cycles", "gc-cycles", Gauge),
        ("_123metric", "", Gauge),
        ("up", "", Gauge),
    ];
    for (name, unit, kind) in unchanged {
        assert_eq!(
            metric_name(name, unit, *kind, true).as_deref(),
            Some(*name),
            "{name} [{unit}]"
        );
    }
    // Translating a translated name again changes nothing.
    for (name, unit, kind) in [
        ("http.server.request.duration", "s", Histogram),
        ("net.io.rate", "By/s", Gauge),
        ("requests", "{request}/s", Counter),
        ("cpu.utilization", "1", Gauge),
        ("2xx.responses", "", Counter),
    ] {
        let once = metric_name(name, unit, kind, true).unwrap();
        assert_eq!(
            metric_name(&once, unit, kind, true).as_deref(),
            Some(once.as_str()),
            "{name}"
        );
    }
}

#[test]
fn total_suffix_is_never_doubled() {
    for name in [
        "requests_total",
        "requests.total",
        "total.requests",
        "requests_total_total",
        "requests",
    ] {
        assert_eq!(
            metric_name(name, "", NameKind::Counter, true).as_deref(),
            Some("requests_total"),
            "{name}"
        );
    }
    assert_eq!(
        metric_name("cpu.seconds.total", "s", NameKind::Counter, true).as_deref(),
        Some("cpu_seconds_total")
    );
}

#[test]
fn unit_one_adds_ratio_on_gauges_only() {
    assert_eq!(
        metric_name("items", "1", NameKind::Counter, true).as_deref(),
        Some("items_total")
    );
    assert_eq!(
        metric_name("items", "1", NameKind::UpDownCounter, true).as_deref(),
        Some("items")
    );
    assert_eq!(
        metric_name("items", "1", NameKind::Histogram, true).as_deref(),
        Some("items")
    );
    assert_eq!(
        metric_name("items", "1", NameKind::Gauge, true).as_deref(),
        Some("items_ratio")
    );
    assert_eq!(
        metric_name("ratio.of.items", "1", NameKind::Gauge, true).as_deref(),
        Some("of_items_ratio")
    );
}

#[test]
fn annotation_units_add_nothing_and_rates_add_per_unit() {
    assert_eq!(
        metric_name("packets", "{packets}", NameKind::Gauge, true).as_deref(),
        Some("packets")
    );
    assert_eq!(
        metric_name("dropped", "{packets}", NameKind::Counter, true).as_deref(),
        Some("dropped_total")
    );
    assert_eq!(
        metric_name("packets", "{packets}/s", NameKind::Gauge, true).as_deref(),
        Some("packets_per_second")
    );
    assert_eq!(
        metric_name("net.io", "By/s", NameKind::Gauge, true).as_deref(),
        Some("net_io_bytes_per_second")
    );
    assert_eq!(unit_word("By/s"), "bytes_per_second");
    assert_eq!(unit_word("s"), "seconds");
    assert_eq!(unit_word("1"), "");
    assert_eq!(unit_word("1/s"), "per_second");
    assert_eq!(unit_word("{request}"), "");
    assert_eq!(unit_word(" ms "), "milliseconds");
}

#[test]
fn leading_digits_get_an_underscore_and_empty_names_are_invalid() {
    assert_eq!(
        metric_name("2xx.responses", "", NameKind::Counter, true).as_deref(),
        Some("_2xx_responses_total")
    );
    assert_eq!(
        metric_name("123metric", "", NameKind::Gauge, false).as_deref(),
        Some("_123metric")
    );
    assert_eq!(metric_name("", "", NameKind::Gauge, true), None);
    assert_eq!(metric_name("@#$%", "", NameKind::Gauge, true), None);
    assert_eq!(metric_name("ようこそ", "", NameKind::Gauge, true), None);
    assert_eq!(metric_name("___", "", NameKind::Gauge, false), None);
    // Without a name there is nothing to hang a unit on, but a counter still gets a name.
    assert_eq!(
        metric_name("...", "", NameKind::Counter, true).as_deref(),
        Some("total")
    );
}

#[test]
fn names_without_suffixes_only_escape_characters() {
    assert_eq!(
        metric_name("http.server.duration", "s", NameKind::Histogram, false).as_deref(),
        Some("http_server_duration")
    );
    assert_eq!(
        metric_name("requests", "", NameKind::Counter, false).as_deref(),
        Some("requests")
    );
    assert_eq!(
        metric_name("metric@with#special$chars", "", NameKind::Gauge, false).as_deref(),
        Some("metric_with_special_chars")
    );
    assert_eq!(
        metric_name("a__b", "", NameKind::Gauge, false).as_deref(),
        Some("a__b")
    );
}

// ---------------------------------------------------------------------------------------------
// Label names

#[test]
fn label_names_are_sanitized_like_otlptranslator() {
    let cases: &[(&str, Option<&str>)] = &[
        ("label:with:colons", Some("label_with_colons")),
        ("LabelWithCapitalLetters", Some("LabelWithCapitalLetters")),
        (
            "label!with&special$chars)",
            Some("label_with_special_chars_"),
        ),
        (
            "label_with_foreign_characters_字符",
            Some("label_with_foreign_characters_"),
        ),
        ("label.with.dots", Some("label_with_dots")),
        ("http.request.method", Some("http_request_method")),
        ("a..b__c", Some("a_b_c")),
        ("123label", Some("key_123label")),
        (
            "_label_starting_with_underscore",
            Some("_label_starting_with_underscore"),
        ),
        (
            "__label_starting_with_2underscores",
            Some("_label_starting_with_2underscores"),
        ),
        ("__name__", Some("__name__")),
        ("__a.b..c__", Some("__a_b_c__")),
        ("ようこそ", None),
        ("", None),
        ("_", None),
        ("__", None),
        ("____", None),
        ("...", None),
    ];
    for (key, want) in cases {
        assert_eq!(label_name(key).as_deref(), *want, "{key:?}");
    }
}

#[test]
fn colliding_attribute_keys_join_values_in_bytewise_key_order() {
    // `k8s.pod.name` < `k8s_pod_name` bytewise ('.' < '_'), whatever order the point lists them in.
    for attrs in [
        vec![s("k8s_pod_name", "bar"), s("k8s.pod.name", "foo")],
        vec![s("k8s.pod.name", "foo"), s("k8s_pod_name", "bar")],
    ] {
        let b = bare(vec![gauge("g", "", vec![num(T0, 0, 1.0, attrs)])]);
        let t = translate(&b, &opts(), None);
        series(&t, &[("__name__", "g"), ("k8s_pod_name", "foo;bar")]);
    }
    // An empty value takes no part in the join; a key with nothing valid is left out.
    let b = bare(vec![gauge(
        "g",
        "",
        vec![num(
            T0,
            0,
            1.0,
            vec![
                s("a.b", ""),
                s("a_b", "x"),
                s("ようこそ", "y"),
                s("empty", ""),
            ],
        )],
    )]);
    let t = translate(&b, &opts(), None);
    series(&t, &[("__name__", "g"), ("a_b", "x")]);
}

#[test]
fn attribute_values_are_stringified_per_the_attribute_spec() {
    let attrs = vec![
        kv("bool", Value::BoolValue(true)),
        kv("int", Value::IntValue(-42)),
        kv("double", Value::DoubleValue(0.5)),
        kv("whole", Value::DoubleValue(3.0)),
        kv("big", Value::DoubleValue(1e21)),
        kv("tiny", Value::DoubleValue(1e-7)),
        kv("bytes", Value::BytesValue(b"hi!?".to_vec())),
        kv(
            "array",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::StringValue("a".into())),
                    },
                    AnyValue {
                        value: Some(Value::IntValue(1)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![s("z", "1"), kv("a", Value::BoolValue(false))],
            }),
        ),
        KeyValue {
            key: "unset".into(),
            value: None,
        },
    ];
    let b = bare(vec![gauge("g", "", vec![num(T0, 0, 1.0, attrs)])]);
    let t = translate(&b, &opts(), None);
    series(
        &t,
        &[
            ("__name__", "g"),
            ("bool", "true"),
            ("int", "-42"),
            ("double", "0.5"),
            ("whole", "3"),
            ("big", "1e+21"),
            ("tiny", "1e-7"),
            ("bytes", "aGkhPw=="),
            ("array", r#"["a",1]"#),
            ("map", r#"{"a":false,"z":"1"}"#),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Translation per kind

/// `n` gauge points of distinct attributes; every `missing`th after the first has no value (and
/// is dropped).
fn many_points(n: usize, missing: usize) -> Vec<NumberDataPoint> {
    let mut points: Vec<_> = (0..n)
        .map(|i| num(T0, 0, 1.0, vec![s("k", &i.to_string())]))
        .collect();
    if missing > 0 {
        for p in points.iter_mut().step_by(missing).skip(1) {
            p.value = None;
        }
    }
    points
}

/// A histogram of `n` points of distinct attributes.
fn many_histograms(n: usize) -> Metric {
    let points = (0..n)
        .map(|i| {
            let mut p = hist_point(T0, T0 - SEC, &[1.0], &[1, 1], Some(1.0));
            p.attributes = vec![s("k", &i.to_string())];
            p
        })
        .collect();
    histogram("many_h", "", AggregationTemporality::Cumulative, points)
}

/// A translation's series index is its thread's, kept between translations: each finds only
/// its own batch's series in it, and points of one series in a batch still make one series.
#[test]
fn translations_one_after_another_on_a_thread_each_index_only_their_own_series() {
    let first = bare(vec![gauge("many", "", many_points(3000, 0))]);
    let t = super::translate(&first, &opts(), None);
    assert_eq!(t.series.len(), 3000);
    let twice: Vec<NumberDataPoint> = many_points(2, 0)
        .into_iter()
        .chain(many_points(2, 0).into_iter().map(|mut p| {
            p.time_unix_nano += SEC;
            p
        }))
        .collect();
    let second = bare(vec![gauge("many", "", twice)]);
    let t = super::translate(&second, &opts(), None);
    let got: Vec<_> = t
        .series
        .iter()
        .map(|s| (s.labels.to_vec(), s.samples.len()))
        .collect();
    let want = |k: &str| (labels(&[("__name__", "many"), ("k", k)]), 2);
    assert_eq!(got, vec![want("0"), want("1")]);
}

#[test]
fn a_metric_of_many_points_finds_each_in_the_label_cache_by_its_own_key() {
    let b = bare(vec![
        gauge("many", "", many_points(100, 7)),
        many_histograms(45),
    ]);
    let mut cache = LabelCache::new(LabelCache::DEFAULT_CAPACITY);
    let plain = super::translate(&b, &opts(), None);
    let first = translate_cached(&b, &opts(), None, Some(&mut cache));
    let second = translate_cached(&b, &opts(), None, Some(&mut cache));
    // 100 gauge points of which 14 have no value (0, 7, ..., 91 but the first), 45 histograms.
    let points = 100 - 14 + 45;
    assert_eq!(dropped(&plain, reason::MISSING_VALUE), 14);
    assert_eq!(
        (first.label_cache_hits, first.label_cache_misses),
        (0, points)
    );
    assert_eq!(
        (second.label_cache_hits, second.label_cache_misses),
        (points, 0)
    );
    let as_without_cache = |t: &Translation| {
        assert_eq!(t.series.len(), plain.series.len());
        for (a, b) in t.series.iter().zip(&plain.series) {
            assert_eq!(a.labels.to_vec(), b.labels.to_vec());
            assert_eq!(a.samples, b.samples);
        }
    };
    as_without_cache(&first);
    as_without_cache(&second);
    // A hit hands the batch the lookup's hold on a number's set: with both batches gone, the
    // cache still holds every set and list of its own.
    drop((first, second));
    let third = translate_cached(&b, &opts(), None, Some(&mut cache));
    assert_eq!(
        (third.label_cache_hits, third.label_cache_misses),
        (points, 0)
    );
    as_without_cache(&third);
}

#[test]
fn a_label_cache_keeps_up_to_twice_its_size_of_series_between_batches() {
    // 150 series against 100 label sets a generation: the first batch fills both generations,
    // and every later batch finds every series, round after round.
    let b = bare(vec![gauge("many", "", many_points(150, 0))]);
    let mut cache = LabelCache::new(100);
    let first = translate_cached(&b, &opts(), None, Some(&mut cache));
    assert_eq!((first.label_cache_hits, first.label_cache_misses), (0, 150));
    for _ in 0..3 {
        let again = translate_cached(&b, &opts(), None, Some(&mut cache));
        assert_eq!((again.label_cache_hits, again.label_cache_misses), (150, 0));
    }
    assert_eq!(cache.len(), 150);
    // 250 do not fit: the cache stays within two generations.
    let more = bare(vec![gauge("more", "", many_points(250, 0))]);
    for _ in 0..3 {
        translate_cached(&more, &opts(), None, Some(&mut cache));
        assert!(cache.len() <= 200, "{}", cache.len());
    }
}

#[test]
fn a_label_cache_shared_by_batches_gives_each_series_its_own_labels() {
    // Batches that differ only in the resource, the scope, an attribute's type or value, or the
    // histogram's bounds: one cache across all of them, each translated as without it.
    let hist_with = |bounds: &[f64], sum: Option<f64>| {
        let counts = vec![1; bounds.len() + 1];
        let p = hist_point(T0, T0 - SEC, bounds, &counts, sum);
        histogram("h", "", AggregationTemporality::Cumulative, vec![p])
    };
    let hist = |bounds: &[f64]| hist_with(bounds, Some(1.0));
    let batches = [
        batch_with(
            vec![s("service.name", "a")],
            None,
            vec![gauge("g", "", vec![num(T0, 0, 1.0, vec![s("k", "1")])])],
        ),
        batch_with(
            vec![s("service.name", "b")],
            None,
            vec![gauge("g", "", vec![num(T0, 0, 1.0, vec![s("k", "1")])])],
        ),
        batch_with(
            vec![s("service.name", "b")],
            Some(("s", "1")),
            vec![gauge("g", "", vec![num(T0, 0, 1.0, vec![s("k", "1")])])],
        ),
        batch_with(
            vec![s("service.name", "b")],
            None,
            vec![gauge(
                "g",
                "",
                vec![num(T0, 0, 1.0, vec![kv("k", Value::IntValue(1))])],
            )],
        ),
        batch_with(
            vec![s("service.name", "b")],
            None,
            vec![gauge("g", "", vec![num(T0, 0, 1.0, vec![s("k", "2")])])],
        ),
        batch_with(
            vec![s("service.name", "b")],
            None,
            vec![gauge("g", "By", vec![num(T0, 0, 1.0, vec![s("k", "2")])])],
        ),
        bare(vec![hist(&[1.0, 2.0])]),
        bare(vec![hist(&[1.0, 5.0])]),
        // Out of the remembered order at once, and found at another place than asked for
        // (the series of a point remembered anew are those of the cached point).
        bare(vec![hist(&[2.0])]),
        bare(vec![hist_with(&[1.0, 2.0], None)]),
        bare(vec![hist(&[1.0, 2.0])]),
        // A number of the histogram's key (a number is kept apart from a list), and back.
        bare(vec![gauge("h", "", vec![num(T0, 0, 1.0, vec![])])]),
        bare(vec![hist(&[1.0, 2.0])]),
        // Metrics of more points than are hashed ahead at a time, with points dropped.
        bare(vec![
            gauge("many", "", many_points(70, 11)),
            gauge("more", "", many_points(40, 0)),
            many_histograms(40),
        ]),
    ];
    let mut cache = LabelCache::new(LabelCache::DEFAULT_CAPACITY);
    for round in 0..2 {
        for b in &batches {
            let cached = translate_cached(b, &opts(), None, Some(&mut cache));
            let plain = super::translate(b, &opts(), None);
            let labels = |t: &Translation| {
                t.series
                    .iter()
                    .map(|s| s.labels.to_vec())
                    .collect::<Vec<_>>()
            };
            assert_eq!(labels(&cached), labels(&plain), "round {round}");
        }
    }
    assert!(!cache.is_empty());
}

#[test]
fn a_metric_carried_by_several_resources_has_one_metadata_in_a_batch() {
    // Two services' `up`, and a third whose description differs: the first two series share
    // one metadata, the third has its own, and each says what its metric said.
    let service = |name: &str, description: &str| {
        let mut up = gauge("up", "", vec![num(T0, 0, 1.0, vec![])]);
        up.description = description.to_string();
        let mut b = batch_with(vec![s("service.name", name)], None, vec![up]);
        b.resource_metrics.pop().expect("one resource")
    };
    let b = Batch::new(
        Context::default(),
        vec![
            service("a", "is up"),
            service("b", "is up"),
            service("c", "is up, said otherwise"),
        ],
    );
    let t = super::translate(&b, &opts(), None);
    let up = |job: &str| series(&t, &[("__name__", "up"), ("job", job)]);
    assert!(Arc::ptr_eq(&up("a").metadata, &up("b").metadata));
    assert!(!Arc::ptr_eq(&up("a").metadata, &up("c").metadata));
    assert_eq!(up("b").metadata.help, "is up");
    assert_eq!(up("c").metadata.help, "is up, said otherwise");
    assert_eq!(up("c").metadata.family, "up");
}

#[test]
fn gauge_carries_job_instance_and_scope_labels_and_metadata() {
    let resource = vec![
        s("service.name", "checkout"),
        s("service.namespace", "shop"),
        s("service.instance.id", "pod-1"),
    ];
    let mut p = num(T0 + 1_500_000, T0 - SEC, 0.0, vec![s("state", "idle")]);
    p.value = Some(number_data_point::Value::AsInt(7));
    let b = batch_with(
        resource,
        Some(("io.opentelemetry.runtime", "1.2.0")),
        vec![gauge("jvm.threads", "{thread}", vec![p])],
    );
    let t = translate(&b, &opts(), None);
    assert!(t.dropped.is_empty());
    // No target_info: the resource has only identifying attributes.
    assert_eq!(t.series.len(), 1);
    let sr = series(
        &t,
        &[
            ("__name__", "jvm_threads"),
            ("job", "shop/checkout"),
            ("instance", "pod-1"),
            ("otel_scope_name", "io.opentelemetry.runtime"),
            ("otel_scope_version", "1.2.0"),
            ("state", "idle"),
        ],
    );
    assert_eq!(
        sr.samples[..],
        [Sample {
            timestamp_ms: (T0 / 1_000_000 + 1) as i64,
            value: 7.0,
            // Gauges carry no start time.
            start_timestamp_ms: 0,
        }]
    );
    assert_eq!(
        *sr.metadata,
        Metadata {
            metric_type: MetricType::Gauge,
            family: "jvm_threads".into(),
            help: "about jvm.threads".into(),
            unit: String::new(),
        }
    );
}

#[test]
fn resource_identity_wins_over_point_attributes_and_promoted_labels_only_fill_gaps() {
    let resource = vec![
        s("service.name", "api"),
        s("service.instance.id", "i-1"),
        s("k8s.namespace.name", "prod"),
        s("region", "eu"),
        s("cloud.zone", ""),
    ];
    let attrs = vec![
        s("job", "spoofed"),
        s("instance", "spoofed"),
        s("region", "us"),
        s("otel.scope.name", "spoofed"),
        s("__name__", "spoofed"),
    ];
    let b = batch_with(
        resource,
        Some(("lib", "")),
        vec![gauge("g", "", vec![num(T0, 0, 1.0, attrs)])],
    );
    let o = TranslateOptions {
        resource_to_labels: vec![
            "k8s.namespace.name".into(),
            "region".into(),
            "cloud.zone".into(),
            "absent".into(),
        ],
        target_info: false,
        ..opts()
    };
    let t = translate(&b, &o, None);
    assert_eq!(t.series.len(), 1);
    series(
        &t,
        &[
            ("__name__", "g"),
            ("job", "api"),
            ("instance", "i-1"),
            ("otel_scope_name", "lib"),
            ("k8s_namespace_name", "prod"),
            // The point's own attribute wins over the promoted resource attribute.
            ("region", "us"),
        ],
    );
    // Without `service.name` a point attribute `job` stays.
    let b = bare(vec![gauge(
        "g",
        "",
        vec![num(T0, 0, 1.0, vec![s("job", "mine")])],
    )]);
    series(
        &translate(&b, &opts(), None),
        &[("__name__", "g"), ("job", "mine")],
    );
}

#[test]
fn scope_labels_can_be_disabled() {
    let b = batch_with(
        Vec::new(),
        Some(("lib", "1")),
        vec![gauge("g", "", vec![num(T0, 0, 1.0, vec![])])],
    );
    let o = TranslateOptions {
        scope_labels: false,
        ..opts()
    };
    series(&translate(&b, &o, None), &[("__name__", "g")]);
}

#[test]
fn target_info_carries_the_other_resource_attributes_at_the_latest_point() {
    let resource = vec![
        s("service.name", "api"),
        s("service.instance.id", "i-1"),
        s("host.name", "web-3"),
        kv("process.pid", Value::IntValue(4242)),
    ];
    let b = batch_with(
        resource.clone(),
        Some(("lib", "1")),
        vec![
            gauge("a", "", vec![num(T0 + 5 * SEC, 0, 1.0, vec![])]),
            gauge(
                "b",
                "",
                vec![
                    num(T0 + 9 * SEC, 0, 1.0, vec![]),
                    num(T0 + 2 * SEC, 0, 1.0, vec![]),
                ],
            ),
        ],
    );
    let t = translate(&b, &opts(), None);
    let ti = series(
        &t,
        &[
            ("__name__", "target_info"),
            ("job", "api"),
            ("instance", "i-1"),
            ("host_name", "web-3"),
            ("process_pid", "4242"),
        ],
    );
    assert_eq!(values(ti), vec![1.0]);
    assert_eq!(
        ti.samples[0].timestamp_ms,
        ((T0 + 9 * SEC) / 1_000_000) as i64
    );
    assert_eq!(ti.metadata.metric_type, MetricType::Gauge);
    assert_eq!(ti.metadata.family, "target_info");
    // Other resource attributes are not copied onto the series themselves.
    series(
        &t,
        &[
            ("__name__", "a"),
            ("job", "api"),
            ("instance", "i-1"),
            ("otel_scope_name", "lib"),
            ("otel_scope_version", "1"),
        ],
    );

    let off = TranslateOptions {
        target_info: false,
        ..opts()
    };
    assert!(
        translate(&b, &off, None)
            .series
            .iter()
            .all(|s| s.name() != "target_info")
    );

    // Neither job nor instance: no target_info (it could not be told apart from other targets).
    let b = batch_with(
        vec![s("host.name", "web-3")],
        None,
        vec![gauge("a", "", vec![num(T0, 0, 1.0, vec![])])],
    );
    assert!(
        translate(&b, &opts(), None)
            .series
            .iter()
            .all(|s| s.name() != "target_info")
    );
}

#[test]
fn monotonic_cumulative_sum_is_a_counter_with_total_start_time_and_exemplars() {
    let mut p = num(T0 + 2 * SEC, T0, 10.0, vec![s("code", "200")]);
    p.exemplars = vec![OtlpExemplar {
        filtered_attributes: vec![s("user.id", "u1")],
        time_unix_nano: T0 + SEC,
        span_id: vec![0xab, 0xcd, 0, 1, 2, 3, 4, 5],
        trace_id: vec![0x0f; 16],
        value: Some(exemplar::Value::AsInt(3)),
    }];
    let b = bare(vec![sum(
        "http.requests",
        "{request}",
        true,
        AggregationTemporality::Cumulative,
        vec![p],
    )]);
    let t = translate(&b, &opts(), None);
    let sr = series(&t, &[("__name__", "http_requests_total"), ("code", "200")]);
    assert_eq!(
        sr.samples[..],
        [Sample {
            timestamp_ms: ((T0 + 2 * SEC) / 1_000_000) as i64,
            value: 10.0,
            start_timestamp_ms: (T0 / 1_000_000) as i64,
        }]
    );
    assert_eq!(sr.metadata.metric_type, MetricType::Counter);
    assert_eq!(sr.metadata.family, "http_requests_total");
    assert_eq!(
        sr.exemplars(),
        vec![super::Exemplar {
            labels: labels(&[
                ("span_id", "abcd000102030405"),
                ("trace_id", "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"),
                ("user_id", "u1"),
            ]),
            value: 3.0,
            timestamp_ms: ((T0 + SEC) / 1_000_000) as i64,
        }]
    );
}

#[test]
fn exemplars_keep_only_ids_when_labels_exceed_128_characters_and_gauges_drop_them() {
    let ex = OtlpExemplar {
        filtered_attributes: vec![s("long", &"x".repeat(100))],
        trace_id: vec![1; 16],
        value: Some(exemplar::Value::AsDouble(1.0)),
        ..Default::default()
    };
    let mut p = num(T0, 0, 1.0, vec![]);
    p.exemplars = vec![ex];
    let b = bare(vec![
        sum(
            "c",
            "",
            true,
            AggregationTemporality::Cumulative,
            vec![p.clone()],
        ),
        gauge("g", "", vec![p]),
    ]);
    let t = translate(&b, &opts(), None);
    let c = series(&t, &[("__name__", "c_total")]);
    assert_eq!(
        c.exemplars()[0].labels,
        labels(&[("trace_id", "01010101010101010101010101010101")])
    );
    assert!(series(&t, &[("__name__", "g")]).exemplars().is_empty());
}

#[test]
fn non_monotonic_cumulative_sum_is_a_gauge_without_total() {
    let b = bare(vec![sum(
        "process.memory.usage",
        "By",
        false,
        AggregationTemporality::Cumulative,
        vec![num(T0, T0 - SEC, 5.0, vec![])],
    )]);
    let t = translate(&b, &opts(), None);
    let sr = series(&t, &[("__name__", "process_memory_usage_bytes")]);
    assert_eq!(values(sr), vec![5.0]);
    assert_eq!(sr.samples[0].start_timestamp_ms, 0);
    assert_eq!(sr.metadata.metric_type, MetricType::Gauge);
    assert_eq!(sr.metadata.unit, "bytes");
}

fn hist_point(
    time: u64,
    start: u64,
    bounds: &[f64],
    counts: &[u64],
    sum: Option<f64>,
) -> HistogramDataPoint {
    HistogramDataPoint {
        start_time_unix_nano: start,
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum,
        bucket_counts: counts.to_vec(),
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    }
}

#[test]
fn histogram_has_cumulative_le_buckets_inf_equal_to_count_sum_and_count() {
    let mut p = hist_point(
        T0,
        T0 - 10 * SEC,
        &[0.005, 1.0, 2.5, 10.0],
        &[1, 2, 0, 3, 4],
        Some(42.5),
    );
    p.attributes = vec![s("route", "/a")];
    p.exemplars = vec![
        OtlpExemplar {
            value: Some(exemplar::Value::AsDouble(0.7)),
            time_unix_nano: T0,
            ..Default::default()
        },
        OtlpExemplar {
            value: Some(exemplar::Value::AsDouble(1.0)),
            time_unix_nano: T0,
            ..Default::default()
        },
        OtlpExemplar {
            value: Some(exemplar::Value::AsDouble(99.0)),
            time_unix_nano: T0,
            ..Default::default()
        },
    ];
    let b = bare(vec![histogram(
        "http.server.request.duration",
        "s",
        AggregationTemporality::Cumulative,
        vec![p],
    )]);
    let t = translate(&b, &opts(), None);
    let name = "http_server_request_duration_seconds";
    let bucket = format!("{name}_bucket");
    let want = [
        ("0.005", 1.0),
        ("1", 3.0),
        ("2.5", 3.0),
        ("10", 6.0),
        ("+Inf", 10.0),
    ];
    for (le, v) in want {
        let sr = series(&t, &[("__name__", &bucket), ("le", le), ("route", "/a")]);
        assert_eq!(values(sr), vec![v], "le={le}");
        assert_eq!(
            sr.samples[0].start_timestamp_ms,
            ((T0 - 10 * SEC) / 1_000_000) as i64
        );
        assert_eq!(sr.metadata.family, name);
        assert_eq!(sr.metadata.metric_type, MetricType::Histogram);
        assert_eq!(sr.metadata.unit, "seconds");
    }
    assert_eq!(
        values(series(
            &t,
            &[("__name__", &format!("{name}_sum")), ("route", "/a")]
        )),
        vec![42.5]
    );
    assert_eq!(
        values(series(
            &t,
            &[("__name__", &format!("{name}_count")), ("route", "/a")]
        )),
        vec![10.0]
    );
    assert_eq!(t.series.len(), 7);
    // Exemplars land in the first bucket whose bound holds them (le is inclusive).
    let ex_values = |le: &str| -> Vec<f64> {
        series(&t, &[("__name__", &bucket), ("le", le), ("route", "/a")])
            .exemplars()
            .iter()
            .map(|e| e.value)
            .collect()
    };
    assert_eq!(ex_values("1"), vec![0.7, 1.0]);
    assert_eq!(ex_values("+Inf"), vec![99.0]);
    assert!(ex_values("0.005").is_empty());
}

#[test]
fn histogram_without_sum_has_no_sum_series() {
    let b = bare(vec![histogram(
        "h",
        "",
        AggregationTemporality::Cumulative,
        vec![hist_point(T0, 0, &[1.0], &[1, 1], None)],
    )]);
    let t = translate(&b, &opts(), None);
    let names: Vec<&str> = t.series.iter().map(Series::name).collect();
    assert_eq!(names, vec!["h_count", "h_bucket", "h_bucket"]);
    // With no bucket counts at all, only `+Inf` = count remains.
    let b = bare(vec![histogram(
        "h",
        "",
        AggregationTemporality::Cumulative,
        vec![HistogramDataPoint {
            time_unix_nano: T0,
            count: 3,
            ..Default::default()
        }],
    )]);
    let t = translate(&b, &opts(), None);
    assert_eq!(
        values(series(&t, &[("__name__", "h_bucket"), ("le", "+Inf")])),
        vec![3.0]
    );
}

#[test]
fn summary_has_quantiles_sum_and_count() {
    let p = SummaryDataPoint {
        attributes: vec![s("op", "get")],
        start_time_unix_nano: T0 - SEC,
        time_unix_nano: T0,
        count: 12,
        sum: 3.25,
        quantile_values: vec![
            ValueAtQuantile {
                quantile: 0.5,
                value: 0.1,
            },
            ValueAtQuantile {
                quantile: 0.99,
                value: 0.9,
            },
            ValueAtQuantile {
                quantile: 1.0,
                value: 1.5,
            },
        ],
        flags: 0,
    };
    let b = bare(vec![metric(
        "rpc.latency",
        "ms",
        metric::Data::Summary(Summary {
            data_points: vec![p],
        }),
    )]);
    let t = translate(&b, &opts(), None);
    let n = "rpc_latency_milliseconds";
    for (q, v) in [("0.5", 0.1), ("0.99", 0.9), ("1", 1.5)] {
        let sr = series(&t, &[("__name__", n), ("op", "get"), ("quantile", q)]);
        assert_eq!(values(sr), vec![v]);
        assert_eq!(sr.metadata.metric_type, MetricType::Summary);
    }
    assert_eq!(
        values(series(
            &t,
            &[("__name__", &format!("{n}_sum")), ("op", "get")]
        )),
        vec![3.25]
    );
    assert_eq!(
        values(series(
            &t,
            &[("__name__", &format!("{n}_count")), ("op", "get")]
        )),
        vec![12.0]
    );
}

#[test]
fn no_recorded_value_points_become_stale_nan_on_every_sample() {
    let stale = |mut p: NumberDataPoint| {
        p.flags = 1;
        p.value = None;
        p
    };
    let mut h = hist_point(T0, 0, &[1.0, 2.0], &[1, 2, 3], Some(4.0));
    h.flags = 1;
    let summary = SummaryDataPoint {
        time_unix_nano: T0,
        count: 1,
        sum: 1.0,
        quantile_values: vec![ValueAtQuantile {
            quantile: 0.5,
            value: 1.0,
        }],
        flags: 1,
        ..Default::default()
    };
    let exp = ExponentialHistogramDataPoint {
        time_unix_nano: T0,
        count: 1,
        sum: Some(1.0),
        flags: 1,
        positive: Some(Buckets {
            offset: 0,
            bucket_counts: vec![1],
        }),
        ..Default::default()
    };
    let b = bare(vec![
        gauge("g", "", vec![stale(num(T0, 0, 0.0, vec![]))]),
        sum(
            "c",
            "",
            true,
            AggregationTemporality::Cumulative,
            vec![stale(num(T0, 0, 0.0, vec![]))],
        ),
        histogram("h", "", AggregationTemporality::Cumulative, vec![h]),
        metric(
            "s",
            "",
            metric::Data::Summary(Summary {
                data_points: vec![summary],
            }),
        ),
        exp_histogram("e", AggregationTemporality::Cumulative, vec![exp]),
    ]);
    let t = translate(&b, &opts(), None);
    assert!(t.dropped.is_empty());
    let mut samples = 0;
    for sr in &t.series {
        for sample in &sr.samples {
            assert_eq!(sample.value.to_bits(), STALE_NAN, "{:?}", sr.labels);
            samples += 1;
        }
    }
    // g, c_total, h_sum, h_count, 3 buckets, s_sum, s_count, one quantile.
    assert_eq!(samples, 10);
    let e = series(&t, &[("__name__", "e")]);
    assert_eq!(e.histograms().len(), 1);
    assert!(e.histograms()[0].stale);
    assert!(is_stale_nan(e.histograms()[0].sum));
}

#[test]
fn delta_and_unspecified_temporality_and_invalid_names_are_dropped_and_counted() {
    let b = bare(vec![
        sum(
            "d",
            "",
            true,
            AggregationTemporality::Delta,
            vec![num(T0, 0, 1.0, vec![]), num(T0 + 1, 0, 1.0, vec![])],
        ),
        histogram(
            "dh",
            "",
            AggregationTemporality::Delta,
            vec![hist_point(T0, 0, &[1.0], &[1, 1], None)],
        ),
        exp_histogram(
            "de",
            AggregationTemporality::Delta,
            vec![ExponentialHistogramDataPoint::default()],
        ),
        sum(
            "u",
            "",
            true,
            AggregationTemporality::Unspecified,
            vec![num(T0, 0, 1.0, vec![])],
        ),
        histogram(
            "uh",
            "",
            AggregationTemporality::Unspecified,
            vec![hist_point(T0, 0, &[], &[], None)],
        ),
        gauge(
            "ようこそ",
            "",
            vec![num(T0, 0, 1.0, vec![]), num(T0, 0, 1.0, vec![])],
        ),
        gauge("ok", "", vec![num(T0, 0, 1.0, vec![])]),
    ]);
    let t = translate(&b, &opts(), None);
    assert_eq!(dropped(&t, reason::DELTA_TEMPORALITY), 4);
    assert_eq!(dropped(&t, reason::UNSPECIFIED_TEMPORALITY), 2);
    assert_eq!(dropped(&t, reason::INVALID_NAME), 2);
    assert_eq!(t.dropped.len(), 3);
    assert_eq!(t.series.len(), 1);

    // `ToCumulative` without a state to keep also drops.
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    assert_eq!(
        dropped(&translate(&b, &o, None), reason::DELTA_TEMPORALITY),
        4
    );
}

#[test]
fn delta_sums_accumulate_across_translations_and_reset_on_a_gap() {
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    let mut state = DeltaToCumulative::default();
    let delta_batch = |points| {
        bare(vec![sum(
            "jobs.done",
            "",
            true,
            AggregationTemporality::Delta,
            points,
        )])
    };
    let name = [("__name__", "jobs_done_total")];
    let ms = |ns: u64| (ns / 1_000_000) as i64;

    let t = translate(
        &delta_batch(vec![num(T0 + SEC, T0, 5.0, vec![])]),
        &o,
        Some(&mut state),
    );
    assert_eq!(
        series(&t, &name).samples[..],
        [Sample {
            timestamp_ms: ms(T0 + SEC),
            value: 5.0,
            start_timestamp_ms: ms(T0),
        }]
    );
    assert_eq!(series(&t, &name).metadata.metric_type, MetricType::Counter);

    // Two contiguous deltas in the next batch: the running sum, start time kept.
    let t = translate(
        &delta_batch(vec![
            num(T0 + 2 * SEC, T0 + SEC, 3.0, vec![]),
            num(T0 + 3 * SEC, T0 + 2 * SEC, 2.0, vec![]),
        ]),
        &o,
        Some(&mut state),
    );
    let sr = series(&t, &name);
    assert_eq!(values(sr), vec![8.0, 10.0]);
    assert!(sr.samples.iter().all(|s| s.start_timestamp_ms == ms(T0)));

    // A point not newer than the last one is refused.
    let t = translate(
        &delta_batch(vec![num(T0 + 3 * SEC, T0 + 2 * SEC, 1.0, vec![])]),
        &o,
        Some(&mut state),
    );
    assert!(t.series.is_empty());
    assert_eq!(dropped(&t, reason::DELTA_OUT_OF_ORDER), 1);

    // A start after the last point's time (missed data or a restart): a new cumulative series.
    let t = translate(
        &delta_batch(vec![num(T0 + 10 * SEC, T0 + 9 * SEC, 4.0, vec![])]),
        &o,
        Some(&mut state),
    );
    let sr = series(&t, &name);
    assert_eq!(values(sr), vec![4.0]);
    assert_eq!(sr.samples[0].start_timestamp_ms, ms(T0 + 9 * SEC));

    // Other label sets and other tenants are separate series.
    let mut other = delta_batch(vec![num(T0 + 11 * SEC, T0 + 10 * SEC, 1.0, vec![])]);
    other.context.tenant = Some("acme".into());
    let t = translate(&other, &o, Some(&mut state));
    assert_eq!(values(series(&t, &name)), vec![1.0]);
    assert_eq!(state.len(), 2);
}

#[test]
fn delta_histograms_accumulate_and_reset_when_bounds_change() {
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    let mut state = DeltaToCumulative::default();
    let b = |p| {
        bare(vec![histogram(
            "h",
            "",
            AggregationTemporality::Delta,
            vec![p],
        )])
    };
    translate(
        &b(hist_point(T0 + SEC, T0, &[1.0, 2.0], &[1, 0, 2], Some(5.0))),
        &o,
        Some(&mut state),
    );
    let t = translate(
        &b(hist_point(
            T0 + 2 * SEC,
            T0 + SEC,
            &[1.0, 2.0],
            &[0, 1, 1],
            Some(3.0),
        )),
        &o,
        Some(&mut state),
    );
    let v = |t: &Translation, extra: &[(&str, &str)]| values(series(t, extra));
    assert_eq!(v(&t, &[("__name__", "h_bucket"), ("le", "1")]), vec![1.0]);
    assert_eq!(v(&t, &[("__name__", "h_bucket"), ("le", "2")]), vec![2.0]);
    assert_eq!(
        v(&t, &[("__name__", "h_bucket"), ("le", "+Inf")]),
        vec![5.0]
    );
    assert_eq!(v(&t, &[("__name__", "h_sum")]), vec![8.0]);
    assert_eq!(v(&t, &[("__name__", "h_count")]), vec![5.0]);
    let start = series(&t, &[("__name__", "h_count")]).samples[0].start_timestamp_ms;
    assert_eq!(start, (T0 / 1_000_000) as i64);

    // New bounds: the series starts over from this point.
    let t = translate(
        &b(hist_point(
            T0 + 3 * SEC,
            T0 + 2 * SEC,
            &[5.0],
            &[1, 0],
            Some(1.0),
        )),
        &o,
        Some(&mut state),
    );
    assert_eq!(v(&t, &[("__name__", "h_bucket"), ("le", "5")]), vec![1.0]);
    assert_eq!(v(&t, &[("__name__", "h_count")]), vec![1.0]);
    assert_eq!(
        series(&t, &[("__name__", "h_count")]).samples[0].start_timestamp_ms,
        ((T0 + 2 * SEC) / 1_000_000) as i64
    );
}

#[test]
fn delta_state_is_bounded_by_series_count_and_idle_time() {
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    let mut state = DeltaToCumulative::with_limits(2, Duration::from_secs(600));
    let point = |series: &str, t: u64| {
        bare(vec![sum(
            "c",
            "",
            true,
            AggregationTemporality::Delta,
            vec![num(
                T0 + t * SEC,
                T0 + (t - 1) * SEC,
                1.0,
                vec![s("s", series)],
            )],
        )])
    };
    translate(&point("a", 1), &o, Some(&mut state));
    translate(&point("b", 1), &o, Some(&mut state));
    translate(&point("a", 2), &o, Some(&mut state)); // a is now more recent than b
    assert_eq!(state.len(), 2);
    translate(&point("c", 1), &o, Some(&mut state)); // evicts b, the least recently seen
    assert_eq!(state.len(), 2);
    let t = translate(&point("a", 3), &o, Some(&mut state));
    assert_eq!(
        values(series(&t, &[("__name__", "c_total"), ("s", "a")])),
        vec![3.0]
    );
    let t = translate(&point("b", 2), &o, Some(&mut state));
    assert_eq!(
        values(series(&t, &[("__name__", "c_total"), ("s", "b")])),
        vec![1.0],
        "b was forgotten"
    );

    state.forget_idle(Instant::now() + Duration::from_secs(601));
    assert!(state.is_empty());
    let fresh = DeltaToCumulative::default();
    assert!(fresh.is_empty());
}

#[test]
fn series_with_equal_labels_are_merged_and_sorted_by_time() {
    let b = Batch::new(
        Context::default(),
        vec![
            ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge(
                        "g",
                        "",
                        vec![
                            num(T0 + 3 * SEC, 0, 3.0, vec![]),
                            num(T0 + SEC, 0, 1.0, vec![]),
                        ],
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![gauge("g", "", vec![num(T0 + 2 * SEC, 0, 2.0, vec![])])],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    );
    let t = translate(&b, &opts(), None);
    assert_eq!(t.series.len(), 1);
    assert_eq!(values(&t.series[0]), vec![1.0, 2.0, 3.0]);
}

#[test]
fn delta_up_down_sums_accumulate_into_a_gauge_and_valueless_points_are_dropped() {
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    let mut state = DeltaToCumulative::default();
    let mut valueless = num(T0 + 3 * SEC, T0 + 2 * SEC, 0.0, vec![]);
    valueless.value = None;
    let b = bare(vec![sum(
        "queue.depth",
        "",
        false,
        AggregationTemporality::Delta,
        vec![
            num(T0 + SEC, T0, 4.0, vec![]),
            num(T0 + 2 * SEC, T0 + SEC, -3.0, vec![]),
            valueless,
        ],
    )]);
    let t = translate(&b, &o, Some(&mut state));
    let sr = series(&t, &[("__name__", "queue_depth")]);
    assert_eq!(values(sr), vec![4.0, 1.0]);
    assert_eq!(sr.metadata.metric_type, MetricType::Gauge);
    assert_eq!(dropped(&t, reason::MISSING_VALUE), 1);
}

#[test]
fn structural_labels_win_over_attributes_and_type_hints_set_metadata() {
    let mut h = hist_point(T0, 0, &[1.0], &[1, 0], None);
    h.attributes = vec![s("le", "spoofed")];
    let mut info = sum(
        "build.info",
        "",
        false,
        AggregationTemporality::Cumulative,
        vec![num(T0, 0, 1.0, vec![])],
    );
    info.metadata = vec![s("prometheus.type", "info")];
    let mut unknown = gauge("legacy", "", vec![num(T0, 0, 1.0, vec![])]);
    unknown.metadata = vec![s("prometheus.type", "unknown")];
    let b = bare(vec![
        histogram("h", "", AggregationTemporality::Cumulative, vec![h]),
        info,
        unknown,
    ]);
    let t = translate(&b, &opts(), None);
    series(&t, &[("__name__", "h_bucket"), ("le", "1")]);
    series(&t, &[("__name__", "h_count"), ("le", "spoofed")]);
    assert_eq!(
        series(&t, &[("__name__", "build_info")])
            .metadata
            .metric_type,
        MetricType::Info
    );
    assert_eq!(
        series(&t, &[("__name__", "legacy")]).metadata.metric_type,
        MetricType::Unknown
    );
}

#[test]
fn resources_of_one_target_share_one_target_info_sample_per_timestamp() {
    let rm = |v: f64| ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![s("service.name", "api"), s("host.name", "h")],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![gauge("g", "", vec![num(T0, 0, v, vec![])])],
            ..Default::default()
        }],
        ..Default::default()
    };
    let b = Batch::new(Context::default(), vec![rm(1.0), rm(2.0)]);
    let t = translate(&b, &opts(), None);
    let ti = series(
        &t,
        &[
            ("__name__", "target_info"),
            ("job", "api"),
            ("host_name", "h"),
        ],
    );
    assert_eq!(values(ti), vec![1.0]);
    assert_eq!(
        values(series(&t, &[("__name__", "g"), ("job", "api")])),
        vec![1.0, 2.0]
    );
}

// ---------------------------------------------------------------------------------------------
// Exponential histograms

fn exp_point(scale: i32, offset: i32, counts: &[u64]) -> ExponentialHistogramDataPoint {
    ExponentialHistogramDataPoint {
        start_time_unix_nano: T0 - SEC,
        time_unix_nano: T0,
        count: counts.iter().sum(),
        sum: Some(12.5),
        scale,
        positive: Some(Buckets {
            offset,
            bucket_counts: counts.to_vec(),
        }),
        ..Default::default()
    }
}

fn native_of(p: ExponentialHistogramDataPoint) -> NativeHistogram {
    let b = bare(vec![exp_histogram(
        "e",
        AggregationTemporality::Cumulative,
        vec![p],
    )]);
    let t = translate(&b, &opts(), None);
    assert!(t.dropped.is_empty(), "{:?}", t.dropped);
    let sr = series(&t, &[("__name__", "e")]);
    assert!(sr.samples.is_empty());
    assert_eq!(sr.metadata.metric_type, MetricType::Histogram);
    assert_eq!(sr.histograms().len(), 1);
    sr.histograms()[0].clone()
}

#[test]
fn exponential_histogram_becomes_native_histogram_spans_and_deltas() {
    // OTLP index i (scale 0) covers (2^i, 2^(i+1)], Prometheus index i+1. Counts at OTLP indexes
    // 0, 3 and 7: Prometheus indexes 1, 4, 8. The gap of two between 1 and 4 is filled with zero
    // buckets; the gap of three before 8 starts a new span.
    let mut p = exp_point(0, 0, &[1, 0, 0, 2, 0, 0, 0, 3]);
    p.zero_count = 2;
    p.count += 2;
    p.negative = Some(Buckets {
        offset: 2,
        bucket_counts: vec![0, 5],
    });
    p.count += 5;
    let h = native_of(p);
    assert_eq!(
        h,
        NativeHistogram {
            timestamp_ms: (T0 / 1_000_000) as i64,
            start_timestamp_ms: ((T0 - SEC) / 1_000_000) as i64,
            count: 13,
            sum: 12.5,
            schema: 0,
            zero_threshold: 1e-128,
            zero_count: 2,
            positive_spans: vec![(1, 4), (3, 1)],
            positive_deltas: vec![1, -1, 0, 2, 1],
            negative_spans: vec![(4, 1)],
            negative_deltas: vec![5],
            reset_hint_gauge: false,
            stale: false,
        }
    );
}

#[test]
fn exponential_histogram_scale_above_8_is_merged_down_and_below_minus_4_dropped() {
    // Scale 10 -> 8 merges groups of 4: OTLP indexes -3..=4 become -1 (3), 0 (4), 1 (1) at scale
    // 8, i.e. Prometheus indexes 0, 1, 2.
    let mut p = exp_point(10, -3, &[1; 8]);
    p.zero_threshold = 0.001;
    let h = native_of(p);
    assert_eq!(h.schema, 8);
    assert_eq!(h.positive_spans, vec![(0, 3)]);
    assert_eq!(h.positive_deltas, vec![3, 1, -3]);
    assert_eq!(h.zero_threshold, 0.001);
    assert_eq!(h.count, 8);

    let ok = native_of(exp_point(-4, 1, &[7]));
    assert_eq!(
        (ok.schema, ok.positive_spans, ok.positive_deltas),
        (-4, vec![(2, 1)], vec![7])
    );

    let b = bare(vec![exp_histogram(
        "e",
        AggregationTemporality::Cumulative,
        vec![exp_point(-5, 0, &[1])],
    )]);
    let t = translate(&b, &opts(), None);
    assert!(t.series.is_empty());
    assert_eq!(dropped(&t, reason::INVALID_SCALE), 1);
}

#[test]
fn delta_exponential_histograms_accumulate_at_the_coarser_scale() {
    let o = TranslateOptions {
        delta: DeltaPolicy::ToCumulative,
        ..opts()
    };
    let mut state = DeltaToCumulative::default();
    let b = |p| {
        bare(vec![exp_histogram(
            "e",
            AggregationTemporality::Delta,
            vec![p],
        )])
    };
    let mut first = exp_point(1, 0, &[1, 1]);
    (first.start_time_unix_nano, first.time_unix_nano) = (T0, T0 + SEC);
    let mut second = exp_point(0, 0, &[2]);
    (second.start_time_unix_nano, second.time_unix_nano) = (T0 + SEC, T0 + 2 * SEC);
    translate(&b(first), &o, Some(&mut state));
    let t = translate(&b(second), &o, Some(&mut state));
    let h = &series(&t, &[("__name__", "e")]).histograms()[0];
    assert_eq!((h.schema, h.count, h.sum), (0, 4, 25.0));
    assert_eq!(
        (h.positive_spans.clone(), h.positive_deltas.clone()),
        (vec![(1, 1)], vec![4])
    );
    assert_eq!(h.start_timestamp_ms, (T0 / 1_000_000) as i64);
}

// ---------------------------------------------------------------------------------------------
// Properties

fn valid_label_set(labels: &[(String, String)]) -> Result<(), String> {
    for w in labels.windows(2) {
        if w[0].0 >= w[1].0 {
            return Err(format!("not sorted/unique: {labels:?}"));
        }
    }
    for (k, v) in labels {
        if !names::is_valid_label_name(k) || v.is_empty() {
            return Err(format!("bad label {k:?}={v:?}"));
        }
    }
    if !labels.iter().any(|(k, _)| k == "__name__") {
        return Err(format!("no __name__: {labels:?}"));
    }
    Ok(())
}

proptest! {
    #[test]
    fn labels_are_sorted_unique_valid_and_named(
        attrs in prop::collection::vec(("[a-zA-Z0-9._:/ é-]{0,6}", "[a-z;]{0,3}"), 0..8),
        resource in prop::collection::vec(("[a-z._]{1,6}", "[a-z]{0,2}"), 0..4),
        name in "[a-z.]{1,8}",
    ) {
        let attrs: Vec<KeyValue> = attrs.iter().map(|(k, v)| s(k, v)).collect();
        let mut res: Vec<KeyValue> = resource.iter().map(|(k, v)| s(k, v)).collect();
        res.push(s("service.name", "svc"));
        let hist = HistogramDataPoint {
            attributes: attrs.clone(),
            time_unix_nano: T0,
            count: 2,
            bucket_counts: vec![1, 1],
            explicit_bounds: vec![1.0],
            ..Default::default()
        };
        let b = batch_with(res, Some(("scope", "")), vec![
            gauge(&name, "s", vec![num(T0, 0, 1.0, attrs.clone())]),
            histogram(&name, "By", AggregationTemporality::Cumulative, vec![hist]),
        ]);
        let o = TranslateOptions { resource_to_labels: resource.iter().map(|(k, _)| k.clone()).collect(), ..opts() };
        let t = translate(&b, &o, None);
        prop_assert!(!t.series.is_empty());
        let mut seen = std::collections::HashSet::new();
        for sr in &t.series {
            if let Err(e) = valid_label_set(&sr.labels.to_vec()) {
                return Err(TestCaseError::fail(e));
            }
            prop_assert!(seen.insert(sr.labels.clone()), "series appears twice");
        }
    }

    #[test]
    fn label_names_are_valid_or_none_and_idempotent(key in "\\PC{0,12}") {
        if let Some(n) = label_name(&key) {
            prop_assert!(names::is_valid_label_name(&n), "{n:?}");
            let again = label_name(&n);
            prop_assert_eq!(again.as_deref(), Some(n.as_str()));
        }
    }

    #[test]
    fn metric_names_are_valid_and_idempotent(name in "\\PC{0,12}", unit in "(s|By|1|By/s|\\{x\\}|ms|)") {
        for kind in [NameKind::Counter, NameKind::Gauge, NameKind::Histogram] {
            if let Some(n) = metric_name(&name, &unit, kind, true) {
                let mut b = n.bytes();
                prop_assert!(matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':'));
                prop_assert!(b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':'));
                prop_assert_eq!(metric_name(&n, &unit, kind, true), Some(n.clone()));
            }
        }
    }
}

// Each series has a fingerprint of its labels, the same in every call (the remote_write shards
// rely on it to keep a series on one shard), and different series (almost always) differ.
#[test]
fn fingerprints_are_per_series_and_stable_across_calls() {
    let b = |points: Vec<NumberDataPoint>| bare(vec![gauge("temp", "", points)]);
    let first = translate(
        &b(vec![
            num(1_000_000, 0, 1.0, vec![s("room", "a")]),
            num(1_000_000, 0, 2.0, vec![s("room", "b")]),
        ]),
        &opts(),
        None,
    );
    let second = translate(
        &b(vec![num(2_000_000, 0, 3.0, vec![s("room", "b")])]),
        &opts(),
        None,
    );
    assert_eq!(first.fingerprints.len(), first.series.len());
    assert_ne!(first.fingerprints[0], first.fingerprints[1]);
    assert_eq!(second.series[0].labels, first.series[1].labels);
    assert_eq!(second.fingerprints[0], first.fingerprints[1]);
}

#[test]
fn a_series_of_samples_stays_small_and_empty_extras_change_nothing() {
    // A series is written, moved twice and dropped on its way into a request: histograms and
    // exemplars, which few carry, are boxed.
    assert!(
        std::mem::size_of::<Series>() <= 80,
        "{}",
        std::mem::size_of::<Series>()
    );
    let labels = LabelSet::from(vec![("__name__".to_string(), "m".to_string())]);
    let mut a = Series::new(labels, Arc::new(Metadata::default()));
    let b = a.clone();
    a.exemplars_mut();
    a.histograms_mut();
    assert_eq!(a, b, "extras made and left empty");
    a.exemplars_mut().push(super::Exemplar {
        labels: Vec::new(),
        value: 1.0,
        timestamp_ms: 2,
    });
    assert_ne!(a, b);
    assert_eq!(a.exemplars().len(), 1);
    assert_eq!(a.take_exemplars().len(), 1);
    assert_eq!(a, b);
    a.histograms_mut().push(NativeHistogram::default());
    assert_ne!(a, b);
    assert_eq!(a.histograms().len(), 1);

    // Sorting and trimming by time reach samples and histograms alike.
    let at = |ms: i64| NativeHistogram {
        timestamp_ms: ms,
        ..NativeHistogram::default()
    };
    let mut s = Series::new(
        LabelSet::from(vec![("__name__".to_string(), "h".to_string())]),
        Arc::new(Metadata::default()),
    );
    *s.histograms_mut() = vec![at(30), at(10), at(20)];
    for ms in [3, 1, 2] {
        s.samples.push(Sample {
            timestamp_ms: ms,
            value: 0.0,
            start_timestamp_ms: 0,
        });
    }
    s.sort_by_time();
    let times = |s: &Series| {
        let samples: Vec<i64> = s.samples.iter().map(|x| x.timestamp_ms).collect();
        let histograms: Vec<i64> = s.histograms().iter().map(|h| h.timestamp_ms).collect();
        (samples, histograms)
    };
    assert_eq!(times(&s), (vec![1, 2, 3], vec![10, 20, 30]));
    s.retain_by_time(|ms| ms % 10 != 0 || ms >= 20);
    assert_eq!(times(&s), (vec![1, 2, 3], vec![20, 30]));
}
