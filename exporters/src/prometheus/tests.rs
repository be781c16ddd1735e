use super::exposition::{Format, encode, negotiate, write_float};
use super::store::Store;
use super::*;
use sluice_core::component::Validate;
use sluice_core::config::{LoadContext, Node, Pos};
use sluice_core::prometheus::{
    Exemplar, LabelSet, Metadata, MetricType, NativeHistogram, Sample, Series, stale_nan,
};
use std::collections::BTreeMap;
use std::time::Duration;

const T: i64 = 1_790_000_000_000; // ms

fn md(t: MetricType, family: &str, help: &str, unit: &str) -> Metadata {
    Metadata {
        metric_type: t,
        family: family.into(),
        help: help.into(),
        unit: unit.into(),
    }
}

/// One series with one sample; labels given unsorted, `__name__` added.
fn series(name: &str, labels: &[(&str, &str)], ts: i64, value: f64, metadata: &Metadata) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.push(("__name__".into(), name.into()));
    l.sort();
    let mut s = Series::new(LabelSet::from(l), metadata.clone().into());
    s.samples.push(Sample {
        timestamp_ms: ts,
        value,
        start_timestamp_ms: T - 60_000,
    });
    s
}

fn exemplar(trace: &str, value: f64, ts: i64) -> Exemplar {
    Exemplar {
        labels: vec![("trace_id".into(), trace.into())],
        value,
        timestamp_ms: ts,
    }
}

fn new_store() -> Store {
    Store::new(&BTreeMap::new(), Duration::from_secs(300), Instant::now())
}

fn render(store: &Store, format: Format) -> String {
    let mut out = String::new();
    encode(store, format, &mut out);
    out
}

fn counters(store: &mut Store, now: Instant) {
    let m = md(
        MetricType::Counter,
        "http_requests_total",
        "The total number of HTTP requests.",
        "",
    );
    let mut s = series(
        "http_requests_total",
        &[("method", "GET"), ("code", "200")],
        T,
        1027.0,
        &m,
    );
    s.exemplars_mut()
        .push(exemplar("4bf92f3577b34da6a3ce929d0e0e4736", 1.0, T - 877));
    store.update(s, now);
    store.update(
        series(
            "http_requests_total",
            &[("method", "POST"), ("code", "400")],
            T,
            3.0,
            &m,
        ),
        now,
    );
}

// A counter: text 0.0.4 names the family with `_total`; OpenMetrics names it without, writes the
// samples with `_total` and the exemplar (seconds), and ends with `# EOF`. No timestamps.
#[test]
fn counter_in_both_formats() {
    let mut store = new_store();
    counters(&mut store, Instant::now());
    assert_eq!(
        render(&store, Format::Text),
        "# HELP http_requests_total The total number of HTTP requests.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{code=\"200\",method=\"GET\"} 1027\n\
         http_requests_total{code=\"400\",method=\"POST\"} 3\n"
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE http_requests counter\n\
         # HELP http_requests The total number of HTTP requests.\n\
         http_requests_total{code=\"200\",method=\"GET\"} 1027 # {trace_id=\"4bf92f3577b34da6a3ce929d0e0e4736\"} 1 1789999999.123\n\
         http_requests_total{code=\"400\",method=\"POST\"} 3\n\
         # EOF\n"
    );
}

// A gauge with a unit: `# UNIT` in OpenMetrics only, since the unit is a suffix of the name.
#[test]
fn gauge_in_both_formats() {
    let mut store = new_store();
    let m = md(
        MetricType::Gauge,
        "process_memory_bytes",
        "Resident memory.",
        "bytes",
    );
    store.update(
        series("process_memory_bytes", &[], T, 1.5e9, &m),
        Instant::now(),
    );
    let m = md(MetricType::Gauge, "queue_depth", "", "items");
    store.update(
        series("queue_depth", &[("queue", "a")], T, -2.25, &m),
        Instant::now(),
    );
    assert_eq!(
        render(&store, Format::Text),
        "# HELP process_memory_bytes Resident memory.\n\
         # TYPE process_memory_bytes gauge\n\
         process_memory_bytes 1500000000\n\
         # TYPE queue_depth gauge\n\
         queue_depth{queue=\"a\"} -2.25\n"
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE process_memory_bytes gauge\n\
         # UNIT process_memory_bytes bytes\n\
         # HELP process_memory_bytes Resident memory.\n\
         process_memory_bytes 1500000000\n\
         # TYPE queue_depth gauge\n\
         queue_depth{queue=\"a\"} -2.25\n\
         # EOF\n",
        "no UNIT line when the unit is not a suffix of the name"
    );
}

fn histogram(store: &mut Store, service: &str, now: Instant) {
    let m = md(
        MetricType::Histogram,
        "rpc_duration_seconds",
        "RPC latency.",
        "seconds",
    );
    let n = "rpc_duration_seconds";
    // Arrival order is not output order: buckets come out by numeric bound, then _sum, _count.
    let mut b1 = series(
        &format!("{n}_bucket"),
        &[("service", service), ("le", "1")],
        T,
        5.0,
        &m,
    );
    b1.exemplars_mut()
        .push(exemplar("0af7651916cd43dd8448eb211c80319c", 0.75, T));
    for s in [
        series(&format!("{n}_count"), &[("service", service)], T, 10.0, &m),
        series(
            &format!("{n}_bucket"),
            &[("service", service), ("le", "+Inf")],
            T,
            10.0,
            &m,
        ),
        series(
            &format!("{n}_bucket"),
            &[("service", service), ("le", "10")],
            T,
            9.0,
            &m,
        ),
        b1,
        series(&format!("{n}_sum"), &[("service", service)], T, 7.5, &m),
        series(
            &format!("{n}_bucket"),
            &[("service", service), ("le", "0.5")],
            T,
            2.0,
            &m,
        ),
    ] {
        store.update(s, now);
    }
}

#[test]
fn histogram_in_both_formats() {
    let mut store = new_store();
    histogram(&mut store, "b", Instant::now());
    histogram(&mut store, "a", Instant::now());
    let point = |svc: &str| {
        format!(
            "rpc_duration_seconds_bucket{{service=\"{svc}\",le=\"0.5\"}} 2\n\
             rpc_duration_seconds_bucket{{service=\"{svc}\",le=\"1\"}} 5\n\
             rpc_duration_seconds_bucket{{service=\"{svc}\",le=\"10\"}} 9\n\
             rpc_duration_seconds_bucket{{service=\"{svc}\",le=\"+Inf\"}} 10\n\
             rpc_duration_seconds_sum{{service=\"{svc}\"}} 7.5\n\
             rpc_duration_seconds_count{{service=\"{svc}\"}} 10\n"
        )
    };
    assert_eq!(
        render(&store, Format::Text),
        format!(
            "# HELP rpc_duration_seconds RPC latency.\n# TYPE rpc_duration_seconds histogram\n{}{}",
            point("a"),
            point("b")
        )
    );
    let om_point = |svc: &str| {
        point(svc).replace(
            "le=\"1\"} 5\n",
            "le=\"1\"} 5 # {trace_id=\"0af7651916cd43dd8448eb211c80319c\"} 0.75 1790000000\n",
        )
    };
    assert_eq!(
        render(&store, Format::OpenMetrics),
        format!(
            "# TYPE rpc_duration_seconds histogram\n# UNIT rpc_duration_seconds seconds\n# HELP rpc_duration_seconds RPC latency.\n{}{}# EOF\n",
            om_point("a"),
            om_point("b")
        )
    );
}

#[test]
fn summary_in_both_formats() {
    let mut store = new_store();
    let m = md(
        MetricType::Summary,
        "rpc_latency_seconds",
        "RPC latency quantiles.",
        "seconds",
    );
    let now = Instant::now();
    for s in [
        series("rpc_latency_seconds_sum", &[], T, 100.25, &m),
        series("rpc_latency_seconds", &[("quantile", "0.99")], T, 1.5, &m),
        series("rpc_latency_seconds_count", &[], T, 400.0, &m),
        series("rpc_latency_seconds", &[("quantile", "0.5")], T, 0.2, &m),
    ] {
        store.update(s, now);
    }
    let samples = "rpc_latency_seconds{quantile=\"0.5\"} 0.2\n\
                   rpc_latency_seconds{quantile=\"0.99\"} 1.5\n\
                   rpc_latency_seconds_sum 100.25\n\
                   rpc_latency_seconds_count 400\n";
    assert_eq!(
        render(&store, Format::Text),
        format!(
            "# HELP rpc_latency_seconds RPC latency quantiles.\n# TYPE rpc_latency_seconds summary\n{samples}"
        )
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        format!(
            "# TYPE rpc_latency_seconds summary\n# UNIT rpc_latency_seconds seconds\n# HELP rpc_latency_seconds RPC latency quantiles.\n{samples}# EOF\n"
        )
    );
}

// Label values escape `\`, `"` and line feeds in both formats; HELP escapes `\` and line feeds,
// and in OpenMetrics also `"`.
#[test]
fn escaping_of_label_values_and_help() {
    let mut store = new_store();
    let m = md(
        MetricType::Gauge,
        "g",
        "a \"quoted\" \\ help\nwith two lines",
        "",
    );
    store.update(
        series("g", &[("path", "C:\\dir \"x\"\nnext")], T, 1.0, &m),
        Instant::now(),
    );
    assert_eq!(
        render(&store, Format::Text),
        "# HELP g a \"quoted\" \\\\ help\\nwith two lines\n\
         # TYPE g gauge\n\
         g{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n"
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE g gauge\n\
         # HELP g a \\\"quoted\\\" \\\\ help\\nwith two lines\n\
         g{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n\
         # EOF\n"
    );
}

#[test]
fn floats_are_written_as_prometheus_reads_them() {
    let f = |v: f64| {
        let mut s = String::new();
        write_float(&mut s, v);
        s
    };
    assert_eq!(f(f64::INFINITY), "+Inf");
    assert_eq!(f(f64::NEG_INFINITY), "-Inf");
    assert_eq!(f(f64::NAN), "NaN");
    assert_eq!(f(0.0), "0");
    assert_eq!(f(42.0), "42");
    assert_eq!(f(9007199254740993.0), "9007199254740992");
    assert_eq!(f(1e20), "100000000000000000000");
    assert_eq!(f(1.5e21), "1.5e21");
    assert_eq!(f(0.1), "0.1");
    assert_eq!(f(-0.000001), "-0.000001");
    assert_eq!(f(1e-7), "1e-7");
    for v in [
        0.1,
        1.0 / 3.0,
        1e-300,
        123456.789,
        -2.5e-9,
        1.7976931348623157e308,
    ] {
        assert_eq!(f(v).parse::<f64>().unwrap(), v, "round trip of {v}");
    }
}

// A series not updated within `metric_expiration` disappears; one that was updated stays.
#[test]
fn series_expire_after_metric_expiration() {
    let t0 = Instant::now();
    let mut store = Store::new(&BTreeMap::new(), Duration::from_millis(100), t0);
    let m = md(MetricType::Gauge, "g", "", "");
    store.update(series("g", &[("x", "old")], T, 1.0, &m), t0);
    store.update(series("g", &[("x", "new")], T, 1.0, &m), t0);
    store.update(
        series("g", &[("x", "new")], T + 1000, 2.0, &m),
        t0 + Duration::from_millis(80),
    );
    store.sweep(t0 + Duration::from_millis(99));
    assert_eq!(store.series_count(), 2);
    store.sweep(t0 + Duration::from_millis(120));
    assert_eq!(
        render(&store, Format::Text),
        "# TYPE g gauge\ng{x=\"new\"} 2\n"
    );
    store.sweep(t0 + Duration::from_millis(200));
    assert_eq!(render(&store, Format::Text), "", "empty families go too");
    assert_eq!(render(&store, Format::OpenMetrics), "# EOF\n");
}

// The exporter's own sweep on scrape uses the wall clock.
#[tokio::test]
async fn exporter_expires_series_in_real_time() {
    let cfg = PrometheusExporterConfig {
        metric_expiration: sluice_core::config::types::Duration::from_millis(100),
        ..Default::default()
    };
    let exp = PrometheusExporter::new("prometheus".into(), &cfg, Arc::new(Telemetry::new()));
    let m = md(MetricType::Gauge, "g", "", "");
    exp.apply(vec![series("g", &[], T, 1.0, &m)], Instant::now());
    assert_eq!(exp.render(Format::Text), "# TYPE g gauge\ng 1\n");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(exp.render(Format::Text), "");
}

// StaleNaN removes the series (and its family when it was the last one); older samples, stale or
// not, are ignored.
#[test]
fn stale_nan_removes_and_older_samples_are_ignored() {
    let mut store = new_store();
    let now = Instant::now();
    let m = md(MetricType::Gauge, "g", "", "");
    store.update(series("g", &[("x", "1")], T, 1.0, &m), now);
    store.update(series("g", &[("x", "2")], T, 2.0, &m), now);
    store.update(series("g", &[("x", "1")], T - 1, 9.0, &m), now);
    store.update(series("g", &[("x", "2")], T - 1, stale_nan(), &m), now);
    assert_eq!(
        render(&store, Format::Text),
        "# TYPE g gauge\ng{x=\"1\"} 1\ng{x=\"2\"} 2\n"
    );
    store.update(series("g", &[("x", "1")], T + 1, stale_nan(), &m), now);
    assert_eq!(
        render(&store, Format::Text),
        "# TYPE g gauge\ng{x=\"2\"} 2\n"
    );
    store.update(series("g", &[("x", "2")], T, stale_nan(), &m), now);
    assert_eq!(render(&store, Format::Text), "");
    assert!(store.families.is_empty());
    // Several samples in one series: the latest counts, even when it comes first.
    let mut s = series("g", &[], T + 5, 5.0, &m);
    s.samples.push(Sample {
        timestamp_ms: T + 4,
        value: 4.0,
        start_timestamp_ms: 0,
    });
    store.update(s, now);
    assert_eq!(render(&store, Format::Text), "# TYPE g gauge\ng 5\n");
    // A stale histogram point removes all its parts.
    histogram(&mut store, "a", now);
    let m = md(
        MetricType::Histogram,
        "rpc_duration_seconds",
        "RPC latency.",
        "seconds",
    );
    let n = "rpc_duration_seconds";
    for (name, le) in [
        ("_bucket", Some("0.5")),
        ("_bucket", Some("1")),
        ("_bucket", Some("10")),
        ("_bucket", Some("+Inf")),
        ("_sum", None),
        ("_count", None),
    ] {
        let mut labels = vec![("service", "a")];
        labels.extend(le.map(|v| ("le", v)));
        store.update(
            series(&format!("{n}{name}"), &labels, T + 1, stale_nan(), &m),
            now,
        );
    }
    assert_eq!(render(&store, Format::Text), "# TYPE g gauge\ng 5\n");
}

#[test]
fn negotiation_follows_accept() {
    let prometheus_2_42 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(negotiate(Some(prometheus_2_42), true), Format::OpenMetrics);
    assert_eq!(
        negotiate(Some(prometheus_2_42), false),
        Format::Text,
        "enable_open_metrics: false"
    );
    assert_eq!(negotiate(None, true), Format::Text);
    assert_eq!(negotiate(Some("text/plain"), true), Format::Text);
    assert_eq!(negotiate(Some("*/*"), true), Format::Text);
    assert_eq!(
        negotiate(Some("application/json"), true),
        Format::Text,
        "nothing acceptable: text"
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text"), true),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(Some("Application/OpenMetrics-Text; version=0.0.1"), true),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(Some("application/openmetrics-text; version=2.0.0"), true),
        Format::Text
    );
    assert_eq!(
        negotiate(
            Some("application/openmetrics-text;q=0.3,text/plain;q=0.5"),
            true
        ),
        Format::Text
    );
    assert_eq!(
        negotiate(
            Some("text/plain;q=0.5, application/openmetrics-text;q=0.6"),
            true
        ),
        Format::OpenMetrics
    );
    assert_eq!(
        negotiate(
            Some("application/openmetrics-text;q=0,text/plain;version=0.0.4"),
            true
        ),
        Format::Text
    );
    assert_eq!(
        negotiate(
            Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=1"),
            true
        ),
        Format::Text,
        "ties: the first"
    );
}

// Constant labels go on every series, in label order; a series' own label of the same name wins.
#[test]
fn const_labels_are_added_unless_the_series_has_the_label() {
    let consts = BTreeMap::from([
        ("zone".to_string(), "eu".to_string()),
        ("a".to_string(), "1".to_string()),
    ]);
    let mut store = Store::new(&consts, Duration::from_secs(60), Instant::now());
    let m = md(MetricType::Gauge, "g", "", "");
    store.update(series("g", &[("m", "x")], T, 1.0, &m), Instant::now());
    store.update(series("g", &[("zone", "us")], T, 2.0, &m), Instant::now());
    assert_eq!(
        render(&store, Format::Text),
        "# TYPE g gauge\ng{a=\"1\",m=\"x\",zone=\"eu\"} 1\ng{a=\"1\",zone=\"us\"} 2\n"
    );
}

// A family whose metric type changes exposes only series of the new type.
#[test]
fn a_type_change_replaces_the_family() {
    let mut store = new_store();
    let now = Instant::now();
    store.update(
        series(
            "x",
            &[("a", "1")],
            T,
            1.0,
            &md(MetricType::Gauge, "x", "", ""),
        ),
        now,
    );
    store.update(
        series(
            "x",
            &[("a", "2")],
            T,
            2.0,
            &md(MetricType::Unknown, "x", "now unknown", ""),
        ),
        now,
    );
    assert_eq!(
        render(&store, Format::Text),
        "# HELP x now unknown\n# TYPE x untyped\nx{a=\"2\"} 2\n"
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE x unknown\n# HELP x now unknown\nx{a=\"2\"} 2\n# EOF\n"
    );
}

// OpenMetrics: a counter without `_total` in its name, or whose name without `_total` is another
// family's, is `unknown` there (its series keep their names); exemplars only where allowed.
#[test]
fn openmetrics_counters_that_cannot_be_counters() {
    let mut store = new_store();
    let now = Instant::now();
    let mut s = series(
        "requests",
        &[],
        T,
        3.0,
        &md(MetricType::Counter, "requests", "", ""),
    );
    s.exemplars_mut().push(exemplar("ab", 1.0, T));
    store.update(s, now);
    store.update(
        series(
            "jobs_total",
            &[],
            T,
            4.0,
            &md(MetricType::Counter, "jobs_total", "", ""),
        ),
        now,
    );
    store.update(
        series("jobs", &[], T, 5.0, &md(MetricType::Gauge, "jobs", "", "")),
        now,
    );
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE jobs gauge\njobs 5\n# TYPE jobs_total unknown\njobs_total 4\n# TYPE requests unknown\nrequests 3\n# EOF\n"
    );
    assert_eq!(
        render(&store, Format::Text),
        "# TYPE jobs gauge\njobs 5\n# TYPE jobs_total counter\njobs_total 4\n# TYPE requests counter\nrequests 3\n"
    );
}

// An exemplar whose labels exceed OpenMetrics' 128 characters is left out (the sample stays).
#[test]
fn oversized_exemplars_are_left_out() {
    let mut store = new_store();
    let mut s = series(
        "c_total",
        &[],
        T,
        1.0,
        &md(MetricType::Counter, "c_total", "", ""),
    );
    s.exemplars_mut().push(exemplar(&"a".repeat(121), 1.0, T));
    store.update(s, Instant::now());
    assert_eq!(
        render(&store, Format::OpenMetrics),
        "# TYPE c counter\nc_total 1\n# EOF\n"
    );
}

// Native histograms are not stored (no text format can carry them) and are reported.
#[test]
fn native_histograms_are_skipped_and_reported() {
    let mut store = new_store();
    let mut s = series(
        "h_seconds",
        &[],
        T,
        0.0,
        &md(MetricType::Histogram, "h_seconds", "", "seconds"),
    );
    s.samples.clear();
    s.histograms_mut().push(NativeHistogram {
        timestamp_ms: T,
        count: 3,
        sum: 1.0,
        ..Default::default()
    });
    let applied = store.update(s, Instant::now());
    assert_eq!(applied.native_histograms, 1);
    assert!(store.families.is_empty());
}

#[test]
fn config_defaults_and_validation() {
    let cfg: PrometheusExporterConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg.endpoint.as_str(), "127.0.0.1:9464");
    assert_eq!(cfg.metric_expiration.get(), Duration::from_secs(300));
    assert!(
        cfg.enable_open_metrics && cfg.add_metric_suffixes && cfg.target_info && cfg.scope_labels
    );
    assert!(cfg.const_labels.is_empty() && cfg.resource_to_labels.is_empty());
    assert_eq!(cfg.sending().queue.num_consumers, 1);
    let err = serde_json::from_str::<PrometheusExporterConfig>(
        r#"{"endpoint": "127.0.0.1:9464", "ttl": "1m"}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let node = Node::null(Pos::default());
    let ctx = LoadContext {
        base_dir: ".".into(),
    };
    let bad: PrometheusExporterConfig = serde_json::from_str(
        r#"{"metric_expiration": "0", "const_labels": {"le": "1", "__x": "y", "bad-name": "z", "ok": ""}}"#,
    )
    .unwrap();
    let errs: Vec<String> = bad
        .validate(&node, &ctx)
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(errs.len(), 5, "{errs:?}");
    let good: PrometheusExporterConfig =
        serde_json::from_str(r#"{"endpoint": "0.0.0.0:9464", "const_labels": {"region": "eu"}, "metric_expiration": "30s"}"#).unwrap();
    assert!(good.validate(&node, &ctx).is_empty());
}

mod through_translate {
    use super::*;
    use sluice_core::batch::Batch;
    use sluice_core::proto::otlp::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use sluice_core::proto::otlp::metrics::v1::*;
    use sluice_core::proto::otlp::resource::v1::Resource;

    const T0: u64 = 1_790_000_000_000_000_000; // ns

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
        }
    }

    fn number(attrs: Vec<KeyValue>, t: u64, v: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: T0 - 60_000_000_000,
            time_unix_nano: t,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn sum(
        name: &str,
        unit: &str,
        temporality: AggregationTemporality,
        points: Vec<NumberDataPoint>,
    ) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("{name} help"),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: temporality as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn batch(metrics: Vec<Metric>) -> Batch {
        Batch::new(
            Default::default(),
            vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", "checkout"),
                        kv("service.instance.id", "host-1:8080"),
                        kv("env", "test"),
                    ],
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "shop".into(),
                        version: "1.0".into(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        )
    }

    fn all_kinds(t: u64) -> Vec<Metric> {
        let mut with_exemplar = number(vec![kv("route", "/pay")], t, 5.0);
        with_exemplar
            .exemplars
            .push(sluice_core::proto::otlp::metrics::v1::Exemplar {
                time_unix_nano: t - 500_000_000,
                value: Some(exemplar::Value::AsDouble(1.0)),
                trace_id: vec![0xab; 16],
                span_id: vec![0xcd; 8],
                ..Default::default()
            });
        vec![
            sum(
                "http.server.requests",
                "{request}",
                AggregationTemporality::Cumulative,
                vec![with_exemplar],
            ),
            Metric {
                name: "queue.depth".into(),
                unit: "By".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![number(vec![kv("q", "a\"b")], t, 3.0)],
                })),
                ..Default::default()
            },
            Metric {
                name: "http.server.request.duration".into(),
                unit: "s".into(),
                description: "Duration of HTTP server requests.".into(),
                data: Some(metric::Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint {
                        start_time_unix_nano: T0 - 60_000_000_000,
                        time_unix_nano: t,
                        count: 10,
                        sum: Some(7.5),
                        bucket_counts: vec![2, 3, 5],
                        explicit_bounds: vec![0.5, 1.0],
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            Metric {
                name: "rpc.latency".into(),
                unit: "ms".into(),
                data: Some(metric::Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        time_unix_nano: t,
                        count: 4,
                        sum: 10.0,
                        quantile_values: vec![
                            summary_data_point::ValueAtQuantile {
                                quantile: 0.5,
                                value: 2.0,
                            },
                            summary_data_point::ValueAtQuantile {
                                quantile: 1.0,
                                value: 4.0,
                            },
                        ],
                        ..Default::default()
                    }],
                })),
                ..Default::default()
            },
            Metric {
                name: "payload.size".into(),
                unit: "By".into(),
                data: Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        time_unix_nano: t,
                        count: 2,
                        sum: Some(3.0),
                        scale: 0,
                        positive: Some(exponential_histogram_data_point::Buckets {
                            offset: 0,
                            bucket_counts: vec![1, 1],
                        }),
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                })),
                ..Default::default()
            },
            sum(
                "jobs.done",
                "",
                AggregationTemporality::Delta,
                vec![number(vec![], t, 1.0), number(vec![], t + 1, 1.0)],
            ),
        ]
    }

    const IDENTITY: &str = "instance=\"host-1:8080\",job=\"checkout\",otel_scope_name=\"shop\",otel_scope_version=\"1.0\"";

    // Real batches through `translate`: every kind of metric in both formats; exponential
    // histograms and delta sums are reported as not exposable.
    #[tokio::test]
    async fn otlp_batches_through_translate_in_both_formats() {
        let exp = PrometheusExporter::new(
            "prometheus".into(),
            &PrometheusExporterConfig::default(),
            Arc::new(Telemetry::new()),
        );
        let d = exp
            .send(&batch(all_kinds(T0 + 1_000_000_000)))
            .await
            .unwrap();
        assert_eq!(
            d.rejected_points, 3,
            "1 exponential histogram point and 2 delta points: {}",
            d.message
        );
        assert!(!d.handed_off);
        assert!(
            d.message.contains("2 delta_temporality")
                && d.message.contains("1 exponential_histogram"),
            "{}",
            d.message
        );
        let id = IDENTITY;
        let text = exp.render(Format::Text);
        assert_eq!(
            text,
            format!(
                "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n\
                 # TYPE http_server_request_duration_seconds histogram\n\
                 http_server_request_duration_seconds_bucket{{{id},le=\"0.5\"}} 2\n\
                 http_server_request_duration_seconds_bucket{{{id},le=\"1\"}} 5\n\
                 http_server_request_duration_seconds_bucket{{{id},le=\"+Inf\"}} 10\n\
                 http_server_request_duration_seconds_sum{{{id}}} 7.5\n\
                 http_server_request_duration_seconds_count{{{id}}} 10\n\
                 # HELP http_server_requests_total http.server.requests help\n\
                 # TYPE http_server_requests_total counter\n\
                 http_server_requests_total{{{id},route=\"/pay\"}} 5\n\
                 # TYPE queue_depth_bytes gauge\n\
                 queue_depth_bytes{{{id},q=\"a\\\"b\"}} 3\n\
                 # TYPE rpc_latency_milliseconds summary\n\
                 rpc_latency_milliseconds{{{id},quantile=\"0.5\"}} 2\n\
                 rpc_latency_milliseconds{{{id},quantile=\"1\"}} 4\n\
                 rpc_latency_milliseconds_sum{{{id}}} 10\n\
                 rpc_latency_milliseconds_count{{{id}}} 4\n\
                 # HELP target_info Target metadata\n\
                 # TYPE target_info gauge\n\
                 target_info{{env=\"test\",instance=\"host-1:8080\",job=\"checkout\"}} 1\n"
            )
        );
        let om = exp.render(Format::OpenMetrics);
        assert!(om.contains("# TYPE http_server_requests counter\n# HELP http_server_requests http.server.requests help\n"), "{om}");
        let trace = "ab".repeat(16);
        let span = "cd".repeat(8);
        assert!(
            om.contains(&format!(
                "http_server_requests_total{{{id},route=\"/pay\"}} 5 # {{span_id=\"{span}\",trace_id=\"{trace}\"}} 1 1790000000.5\n"
            )),
            "{om}"
        );
        assert!(om.contains("# TYPE http_server_request_duration_seconds histogram\n# UNIT http_server_request_duration_seconds seconds\n"), "{om}");
        assert!(
            om.contains("# TYPE queue_depth_bytes gauge\n# UNIT queue_depth_bytes bytes\n"),
            "{om}"
        );
        assert!(
            om.ends_with(
                "target_info{env=\"test\",instance=\"host-1:8080\",job=\"checkout\"} 1\n# EOF\n"
            ),
            "{om}"
        );
        assert!(!om.contains("payload"), "native histograms are not exposed");
        assert_eq!(
            om.lines().filter(|l| !l.starts_with('#')).count(),
            text.lines().filter(|l| !l.starts_with('#')).count()
        );
    }

    // Newer points replace older ones; an older batch arriving late changes nothing; a point
    // flagged "no recorded value" removes its series.
    #[tokio::test]
    async fn later_batches_update_and_staleness_removes() {
        let telemetry = Arc::new(Telemetry::new());
        let exp = PrometheusExporter::new(
            "prometheus".into(),
            &PrometheusExporterConfig::default(),
            telemetry.clone(),
        );
        let counter = |t: u64, v: f64| {
            batch(vec![sum(
                "c",
                "",
                AggregationTemporality::Cumulative,
                vec![number(vec![], t, v)],
            )])
        };
        exp.send(&counter(T0 + 2_000_000_000, 7.0)).await.unwrap();
        exp.send(&counter(T0 + 1_000_000_000, 3.0)).await.unwrap();
        assert!(
            exp.render(Format::Text)
                .contains(&format!("c_total{{{IDENTITY}}} 7\n"))
        );
        exp.send(&counter(T0 + 3_000_000_000, 8.0)).await.unwrap();
        assert!(
            exp.render(Format::Text)
                .contains(&format!("c_total{{{IDENTITY}}} 8\n"))
        );
        // The counter's labels were built for the first batch and remembered for the others.
        let cache = |name: &str| telemetry.value(name, &[("exporter", "prometheus")]);
        assert_eq!(cache("sluice_exporter_label_cache_misses_total"), 1.0);
        assert_eq!(cache("sluice_exporter_label_cache_hits_total"), 2.0);
        assert_eq!(cache("sluice_exporter_label_cache_sets"), 1.0);
        let mut stale = number(vec![], T0 + 4_000_000_000, 0.0);
        stale.flags = 1;
        stale.value = None;
        exp.send(&batch(vec![sum(
            "c",
            "",
            AggregationTemporality::Cumulative,
            vec![stale],
        )]))
        .await
        .unwrap();
        let text = exp.render(Format::Text);
        assert!(!text.contains("c_total"), "{text}");
    }

    // `delta_temporality: to_cumulative` accumulates; `target_info: false`, `scope_labels: false`
    // and `add_metric_suffixes: false` are passed to the translation; const labels are added.
    #[tokio::test]
    async fn translate_options_and_const_labels_apply() {
        let cfg = PrometheusExporterConfig {
            delta_temporality: sluice_core::prometheus::DeltaPolicy::ToCumulative,
            target_info: false,
            scope_labels: false,
            add_metric_suffixes: false,
            const_labels: BTreeMap::from([("region".to_string(), "eu".to_string())]),
            ..Default::default()
        };
        let exp = PrometheusExporter::new("prometheus".into(), &cfg, Arc::new(Telemetry::new()));
        let delta = |t: u64| {
            let mut p = number(vec![], t, 2.0);
            p.start_time_unix_nano = t - 1_000_000_000;
            batch(vec![sum(
                "jobs.done",
                "",
                AggregationTemporality::Delta,
                vec![p],
            )])
        };
        assert_eq!(
            exp.send(&delta(T0 + 1_000_000_000))
                .await
                .unwrap()
                .rejected_points,
            0
        );
        exp.send(&delta(T0 + 2_000_000_000)).await.unwrap();
        assert_eq!(
            exp.render(Format::Text),
            "# HELP jobs_done jobs.done help\n# TYPE jobs_done counter\njobs_done{instance=\"host-1:8080\",job=\"checkout\",region=\"eu\"} 4\n"
        );
        assert_eq!(
            exp.render(Format::OpenMetrics),
            "# TYPE jobs_done unknown\n# HELP jobs_done jobs.done help\njobs_done{instance=\"host-1:8080\",job=\"checkout\",region=\"eu\"} 4\n# EOF\n"
        );
    }
}

mod endpoint {
    use super::*;
    use std::collections::HashMap;

    /// A plain HTTP/1.0 GET (no client library): status, headers (lowercased names), body.
    async fn get(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, HashMap<String, String>, Vec<u8>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        (status, headers, raw[split + 4..].to_vec())
    }

    // The endpoint serves both formats by `Accept`, gzip when asked, 404 elsewhere, and stops on
    // shutdown.
    #[tokio::test]
    async fn serves_negotiated_formats_and_stops_on_shutdown() {
        let cfg = PrometheusExporterConfig {
            endpoint: sluice_core::config::types::Endpoint("127.0.0.1:0".into()),
            ..Default::default()
        };
        let exp =
            PrometheusExporter::new("prometheus/test".into(), &cfg, Arc::new(Telemetry::new()));
        exp.start().await.unwrap();
        let addr = exp.local_addr().unwrap();
        let m = md(MetricType::Gauge, "g", "", "");
        exp.apply(vec![series("g", &[], T, 1.0, &m)], Instant::now());
        let (status, h, body) = get(addr, "/metrics", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(h["content-type"], TEXT_CONTENT_TYPE);
        assert!(!h.contains_key("content-encoding"));
        assert_eq!(String::from_utf8(body).unwrap(), "# TYPE g gauge\ng 1\n");

        let accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (status, h, body) = get(
            addr,
            "/metrics",
            &[("Accept", accept), ("Accept-Encoding", "gzip")],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(h["content-type"], OPENMETRICS_CONTENT_TYPE);
        assert_eq!(h["content-encoding"], "gzip");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&body[..]), &mut text)
            .unwrap();
        assert_eq!(text, "# TYPE g gauge\ng 1\n# EOF\n");

        assert_eq!(get(addr, "/other", &[]).await.0, 404);

        exp.shutdown(tokio::time::Instant::now() + Duration::from_secs(2))
            .await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "the endpoint is closed after shutdown"
        );
    }

    #[tokio::test]
    async fn a_taken_port_fails_start_with_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = taken.local_addr().unwrap().to_string();
        let cfg = PrometheusExporterConfig {
            endpoint: sluice_core::config::types::Endpoint(endpoint.clone()),
            ..Default::default()
        };
        let exp = PrometheusExporter::new("prometheus".into(), &cfg, Arc::new(Telemetry::new()));
        let err = exp.start().await.unwrap_err().to_string();
        assert!(err.contains(&endpoint), "{err}");
    }

    #[test]
    fn gzip_acceptance() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip("deflate, gzip;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("identity"));
    }
}
