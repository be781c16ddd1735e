use super::build::{FLAG_NO_RECORDED_VALUE, Options, Report, Target, TargetState};
use super::parser::Format;
use super::scrape::{jobs, offset, target_url};
use super::*;
use sluice_core::component::{
    Class, ComponentId, ExporterConfig, ParseFn, ProcessorConfig, ReceiverConfig, Registry,
    parse_config,
};
use sluice_core::config::LoadContext;
use sluice_core::prometheus::is_stale_nan;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data, number_data_point,
};
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;
use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const T0: u64 = 1_700_000_000_000_000_000;
const SEC: u64 = 1_000_000_000;

fn target() -> Target {
    Target::new(
        "node",
        "127.0.0.1:9100",
        "http",
        "http://127.0.0.1:9100/metrics".into(),
        &[("team".into(), "infra".into())],
    )
}

fn opts() -> Options {
    Options {
        honor_timestamps: true,
        ..Default::default()
    }
}

fn scrape_with(
    state: &mut TargetState,
    body: &str,
    format: Format,
    now: u64,
    o: &Options,
) -> Report {
    state.scrape(Ok((body.as_bytes(), format)), 0.01, now, &target(), o)
}

fn scrape(state: &mut TargetState, body: &str, now: u64) -> Report {
    scrape_with(state, body, Format::Text, now, &opts())
}

fn str_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match &kv.value {
            Some(AnyValue {
                value: Some(any_value::Value::StringValue(s)),
            }) => Some(s.clone()),
            Some(AnyValue {
                value: Some(any_value::Value::IntValue(i)),
            }) => Some(i.to_string()),
            _ => None,
        })
}

fn metrics(r: &Report) -> Vec<&Metric> {
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .collect()
}

fn metric<'a>(r: &'a Report, name: &str) -> &'a Metric {
    metrics(r)
        .into_iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no {name} in {:?}",
                metrics(r).iter().map(|m| &m.name).collect::<Vec<_>>()
            )
        })
}

fn has(r: &Report, name: &str) -> bool {
    metrics(r).iter().any(|m| m.name == name)
}

fn numbers(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{}: {other:?}", m.name),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(i)) => i as f64,
        None => panic!("no value"),
    }
}

fn single(r: &Report, name: &str) -> f64 {
    let ps = numbers(metric(r, name));
    assert_eq!(ps.len(), 1, "{name}: {ps:?}");
    value(&ps[0])
}

fn ptype(m: &Metric) -> Option<String> {
    str_attr(&m.metadata, "prometheus.type")
}

fn resource_of<'a>(r: &'a Report, name: &str) -> &'a ResourceMetrics {
    r.resource_metrics
        .iter()
        .find(|rm| {
            rm.scope_metrics
                .iter()
                .any(|s| s.metrics.iter().any(|m| m.name == name))
        })
        .unwrap()
}

// ---- mapping ----

#[test]
fn gauge_up_and_scrape_series() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "# TYPE g gauge\ng{a=\"1\"} 5\ng{a=\"2\"} 6\n", T0);
    assert_eq!(r.error, None);
    let g = metric(&r, "g");
    assert!(matches!(g.data, Some(Data::Gauge(_))));
    assert_eq!(ptype(g), None);
    assert_eq!(numbers(g).len(), 2);
    assert_eq!(numbers(g)[0].time_unix_nano, T0);
    assert_eq!(single(&r, "up"), 1.0);
    assert_eq!(single(&r, "scrape_duration_seconds"), 0.01);
    assert_eq!(single(&r, "scrape_samples_scraped"), 2.0);
    assert_eq!(single(&r, "scrape_samples_post_metric_relabeling"), 2.0);
    assert_eq!(single(&r, "scrape_series_added"), 2.0);
    // A second scrape adds nothing new.
    let r = scrape(
        &mut s,
        "# TYPE g gauge\ng{a=\"1\"} 5\ng{a=\"2\"} 6\n",
        T0 + SEC,
    );
    assert_eq!(single(&r, "scrape_series_added"), 0.0);
}

#[test]
fn resource_from_job_and_instance() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "g 1\n", T0);
    assert_eq!(r.resource_metrics.len(), 1);
    let attrs = &r.resource_metrics[0].resource.as_ref().unwrap().attributes;
    assert_eq!(str_attr(attrs, "service.name").as_deref(), Some("node"));
    assert_eq!(
        str_attr(attrs, "service.instance.id").as_deref(),
        Some("127.0.0.1:9100")
    );
    assert_eq!(
        str_attr(attrs, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(str_attr(attrs, "server.port").as_deref(), Some("9100"));
    assert_eq!(str_attr(attrs, "url.scheme").as_deref(), Some("http"));
    // Static labels are point attributes; job and instance are not.
    let p = &numbers(metric(&r, "g"))[0];
    assert_eq!(str_attr(&p.attributes, "team").as_deref(), Some("infra"));
    assert_eq!(str_attr(&p.attributes, "job"), None);
    assert_eq!(str_attr(&p.attributes, "instance"), None);
}

#[test]
fn counters_ending_in_total_are_monotonic_sums_with_start_times() {
    let mut s = TargetState::default();
    let body = |v: f64| format!("# TYPE c_total counter\nc_total{{x=\"y\"}} {v}\n");
    let r = scrape(&mut s, &body(10.0), T0);
    let m = metric(&r, "c_total");
    let Some(Data::Sum(sum)) = &m.data else {
        panic!("{m:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2);
    assert_eq!(sum.data_points[0].start_time_unix_nano, T0);
    let r = scrape(&mut s, &body(12.0), T0 + SEC);
    assert_eq!(numbers(metric(&r, "c_total"))[0].start_time_unix_nano, T0);
    // A reset gives a new start time.
    let r = scrape(&mut s, &body(1.0), T0 + 2 * SEC);
    let p = &numbers(metric(&r, "c_total"))[0];
    assert!(p.start_time_unix_nano > T0 && p.start_time_unix_nano < T0 + 2 * SEC);
    assert_eq!(value(p), 1.0);
}

#[test]
fn openmetrics_counter_with_created() {
    let mut s = TargetState::default();
    let body = "# TYPE c counter\n# HELP c Things.\nc_total 3\nc_created 1600000000.5\n# EOF\n";
    let r = scrape_with(&mut s, body, Format::OpenMetrics, T0, &opts());
    assert_eq!(r.error, None);
    let m = metric(&r, "c_total");
    assert_eq!(m.description, "Things.");
    assert!(matches!(m.data, Some(Data::Sum(_))));
    let p = &numbers(m)[0];
    assert_eq!(value(p), 3.0);
    assert_eq!(p.start_time_unix_nano, 1_600_000_000_500_000_000);
    assert!(!has(&r, "c_created"));
}

#[test]
fn counter_without_total_stays_a_gauge_typed_counter() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "# TYPE requests counter\nrequests 4\n", T0);
    let m = metric(&r, "requests");
    assert!(matches!(m.data, Some(Data::Gauge(_))));
    assert_eq!(ptype(m).as_deref(), Some("counter"));
}

#[test]
fn untyped_and_other_types_keep_their_type_in_metadata() {
    let mut s = TargetState::default();
    let body = "u 1\n# TYPE i info\ni_info{v=\"1\"} 1\n# TYPE st stateset\nst{st=\"a\"} 1\n# TYPE gh gaugehistogram\ngh_bucket{le=\"+Inf\"} 2\ngh_gcount 2\n# EOF\n";
    let r = scrape_with(&mut s, body, Format::OpenMetrics, T0, &opts());
    assert_eq!(r.error, None);
    assert_eq!(ptype(metric(&r, "u")).as_deref(), Some("unknown"));
    assert_eq!(ptype(metric(&r, "i_info")).as_deref(), Some("info"));
    assert_eq!(ptype(metric(&r, "st")).as_deref(), Some("stateset"));
    assert_eq!(
        ptype(metric(&r, "gh_bucket")).as_deref(),
        Some("gaugehistogram")
    );
    assert_eq!(
        ptype(metric(&r, "gh_gcount")).as_deref(),
        Some("gaugehistogram")
    );
}

#[test]
fn histograms_are_assembled() {
    let mut s = TargetState::default();
    let body = "# HELP h Latency.\n# TYPE h histogram\nh_bucket{p=\"a\",le=\"1\"} 1\nh_bucket{p=\"a\",le=\"2\"} 2\nh_bucket{p=\"a\",le=\"+Inf\"} 2\nh_sum{p=\"a\"} 3\nh_count{p=\"a\"} 2\n";
    let r = scrape(&mut s, body, T0);
    let m = metric(&r, "h");
    assert_eq!(m.description, "Latency.");
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("{m:?}")
    };
    assert_eq!(h.aggregation_temporality, 2);
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![1.0, 2.0]);
    assert_eq!(p.bucket_counts, vec![1, 1, 0]);
    assert_eq!(p.count, 2);
    assert_eq!(p.sum, Some(3.0));
    assert_eq!(p.start_time_unix_nano, T0);
    assert_eq!(str_attr(&p.attributes, "p").as_deref(), Some("a"));
    assert_eq!(str_attr(&p.attributes, "le"), None);
    for n in ["h_bucket", "h_sum", "h_count"] {
        assert!(!has(&r, n), "{n}");
    }
    assert_eq!(single(&r, "scrape_samples_scraped"), 5.0);
}

#[test]
fn a_family_written_twice_gives_a_point_per_block() {
    // The same series in two blocks of the same family: each block is its own group, so the
    // buckets of one never mix with the other's (a group's key holds its family's number).
    let block = |n: u32| {
        format!(
            "# TYPE h histogram\nh_bucket{{le=\"1\"}} {n}\nh_bucket{{le=\"+Inf\"}} {n}\nh_count {n}\n"
        )
    };
    let body = format!("{}# TYPE g gauge\ng 1\n{}", block(1), block(4));
    let r = scrape(&mut TargetState::default(), &body, T0);
    assert_eq!(r.error, None);
    let Some(Data::Histogram(h)) = &metric(&r, "h").data else {
        panic!("{r:?}")
    };
    let points: Vec<_> = h
        .data_points
        .iter()
        .map(|p| (p.explicit_bounds.clone(), p.bucket_counts.clone(), p.count))
        .collect();
    assert_eq!(
        points,
        vec![(vec![1.0], vec![1, 0], 1), (vec![1.0], vec![4, 0], 4)]
    );
}

#[test]
fn histogram_timestamps_are_kept_only_when_honored() {
    // The buckets after the first take the short way (they differ only in `le`).
    let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1 1700000000000\nh_bucket{le=\"+Inf\"} 2 1700000002000\nh_count 2\n";
    for (honor, time) in [(true, 1_700_000_002 * SEC), (false, T0 + 5 * SEC)] {
        let o = Options {
            honor_timestamps: honor,
            ..Default::default()
        };
        let r = scrape_with(
            &mut TargetState::default(),
            body,
            Format::Text,
            T0 + 5 * SEC,
            &o,
        );
        let Some(Data::Histogram(h)) = &metric(&r, "h").data else {
            panic!("{r:?}")
        };
        assert_eq!(
            h.data_points[0].time_unix_nano, time,
            "honor_timestamps {honor}"
        );
        assert_eq!(h.data_points[0].bucket_counts, vec![1, 1]);
    }
}

#[test]
fn histogram_without_count_is_left_out_and_bad_le_fails() {
    let mut s = TargetState::default();
    let r = scrape(
        &mut s,
        "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\n",
        T0,
    );
    assert_eq!(r.error, None);
    assert!(!has(&r, "h"));
    let r = scrape(
        &mut s,
        "# TYPE h histogram\nh_bucket{le=\"x\"} 1\nh_count 1\n",
        T0,
    );
    assert!(
        r.error.as_deref().unwrap().contains("`le`"),
        "{:?}",
        r.error
    );
    assert_eq!(single(&r, "up"), 0.0);
}

#[test]
fn summaries_are_assembled() {
    let mut s = TargetState::default();
    let body = "# TYPE go_gc_duration_seconds summary\ngo_gc_duration_seconds{quantile=\"0\"} 1e-05\ngo_gc_duration_seconds{quantile=\"0.5\"} 2\ngo_gc_duration_seconds{quantile=\"1\"} 3\ngo_gc_duration_seconds_sum 6\ngo_gc_duration_seconds_count 3\n";
    let r = scrape(&mut s, body, T0);
    let m = metric(&r, "go_gc_duration_seconds");
    let Some(Data::Summary(sm)) = &m.data else {
        panic!("{m:?}")
    };
    let p = &sm.data_points[0];
    assert_eq!(p.count, 3);
    assert_eq!(p.sum, 6.0);
    let q: Vec<(f64, f64)> = p
        .quantile_values
        .iter()
        .map(|q| (q.quantile, q.value))
        .collect();
    assert_eq!(q, vec![(0.0, 1e-05), (0.5, 2.0), (1.0, 3.0)]);
}

#[test]
fn honor_labels_false_renames_to_exported() {
    let mut s = TargetState::default();
    let r = scrape(
        &mut s,
        "test{job=\"original\",instance=\"foo\",team=\"x\"} 1\n",
        T0,
    );
    let p = &numbers(metric(&r, "test"))[0];
    assert_eq!(
        str_attr(&p.attributes, "exported_job").as_deref(),
        Some("original")
    );
    assert_eq!(
        str_attr(&p.attributes, "exported_instance").as_deref(),
        Some("foo")
    );
    assert_eq!(
        str_attr(&p.attributes, "exported_team").as_deref(),
        Some("x")
    );
    assert_eq!(str_attr(&p.attributes, "team").as_deref(), Some("infra"));
    let attrs = &resource_of(&r, "test")
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(str_attr(attrs, "service.name").as_deref(), Some("node"));
}

#[test]
fn exported_prefix_repeats_when_taken() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "t{job=\"a\",exported_job=\"b\"} 1\n", T0);
    let p = &numbers(metric(&r, "t"))[0];
    assert_eq!(
        str_attr(&p.attributes, "exported_job").as_deref(),
        Some("b")
    );
    assert_eq!(
        str_attr(&p.attributes, "exported_exported_job").as_deref(),
        Some("a")
    );
}

#[test]
fn honor_labels_true_keeps_the_scraped_values() {
    let mut s = TargetState::default();
    let o = Options {
        honor_labels: true,
        ..opts()
    };
    let r = scrape_with(
        &mut s,
        "test{job=\"original\",team=\"x\"} 1\n",
        Format::Text,
        T0,
        &o,
    );
    let attrs = &resource_of(&r, "test")
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(str_attr(attrs, "service.name").as_deref(), Some("original"));
    assert_eq!(
        str_attr(attrs, "service.instance.id").as_deref(),
        Some("127.0.0.1:9100")
    );
    let p = &numbers(metric(&r, "test"))[0];
    assert_eq!(str_attr(&p.attributes, "team").as_deref(), Some("x"));
    // `up` stays under the target's own resource.
    let attrs = &resource_of(&r, "up").resource.as_ref().unwrap().attributes;
    assert_eq!(str_attr(attrs, "service.name").as_deref(), Some("node"));
}

#[test]
fn empty_label_values_are_dropped() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "test{a=\"\",b=\"x\"} 1\n", T0);
    let p = &numbers(metric(&r, "test"))[0];
    assert_eq!(str_attr(&p.attributes, "a"), None);
    assert_eq!(str_attr(&p.attributes, "b").as_deref(), Some("x"));
}

#[test]
fn repeated_labels_reject_the_scrape() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "ok 1\ntest{a=\"1\",a=\"1\"} 1.0\n", T0);
    assert!(r.error.as_deref().unwrap().contains("more than once"));
    assert!(!has(&r, "test"));
    assert!(!has(&r, "ok"));
    assert_eq!(single(&r, "up"), 0.0);
}

#[test]
fn invalid_exposition_is_up_0_with_the_line() {
    let mut s = TargetState::default();
    let r = scrape(
        &mut s,
        "# this is not valid prometheus\n1234notvali}{ 444\n",
        T0,
    );
    assert_eq!(single(&r, "up"), 0.0);
    assert!(
        r.error.as_deref().unwrap().starts_with("line 2:"),
        "{:?}",
        r.error
    );
    // The series without a name is refused too.
    let r = scrape(&mut s, "{label=\"value\"} 1.0\n", T0);
    assert_eq!(single(&r, "up"), 0.0);
}

#[test]
fn fetch_errors_are_up_0() {
    let mut s = TargetState::default();
    let r = s.scrape(
        Err("connection refused".into()),
        0.001,
        T0,
        &target(),
        &opts(),
    );
    assert_eq!(r.error.as_deref(), Some("connection refused"));
    assert_eq!(single(&r, "up"), 0.0);
    assert_eq!(single(&r, "scrape_samples_scraped"), 0.0);
}

fn stale_points(r: &Report, name: &str) -> usize {
    if !has(r, name) {
        return 0;
    }
    numbers(metric(r, name))
        .iter()
        .filter(|p| p.flags & FLAG_NO_RECORDED_VALUE != 0 && is_stale_nan(value(p)))
        .count()
}

#[test]
fn disappearing_series_get_a_staleness_marker() {
    let mut s = TargetState::default();
    scrape(&mut s, "# TYPE stale gauge\nstale 1\nkept 2\n", T0);
    let r = scrape(&mut s, "kept 2\n", T0 + SEC);
    assert_eq!(stale_points(&r, "stale"), 1);
    assert_eq!(r.stale_markers, 1);
    assert_eq!(numbers(metric(&r, "stale"))[0].time_unix_nano, T0 + SEC);
    // Only once.
    let r = scrape(&mut s, "kept 2\n", T0 + 2 * SEC);
    assert!(!has(&r, "stale"));
}

// Guarantees: label values may hold any character, the receiver's separators included: series
// that differ only in where those characters fall are tracked apart (each gets its own marker).
#[test]
fn series_whose_values_hold_separators_are_tracked_apart() {
    let mut s = TargetState::default();
    let both = "# TYPE m gauge\nm{a=\"x\u{0}b\u{0}y\"} 1\nm{a=\"x\",b=\"y\"} 2\n";
    let r = scrape(&mut s, both, T0);
    assert_eq!(numbers(metric(&r, "m")).len(), 2);
    let r = scrape(&mut s, "# TYPE m gauge\nm{a=\"x\",b=\"y\"} 2\n", T0 + SEC);
    assert_eq!(stale_points(&r, "m"), 1, "{:?}", numbers(metric(&r, "m")));
    assert_eq!(r.stale_markers, 1);
}

// Guarantees: a staleness marker names its series exactly as its samples did: the same resource
// (job, instance), metric name and kind, and attributes, whatever characters the values hold.
#[test]
fn staleness_markers_carry_their_series_identity() {
    let mut s = TargetState::default();
    let body = "# TYPE g gauge\ng{a=\"1:x\",b=\"\u{fc}n\u{ef}\",job=\"other\"} 1\n\
                # TYPE c_total counter\nc_total{path=\"/a:b/7:c\"} 3\n\
                # TYPE h histogram\nh_bucket{r=\"9\",le=\"+Inf\"} 1\nh_count{r=\"9\"} 1\nh_sum{r=\"9\"} 2\n\
                # TYPE q summary\nq{quantile=\"0.5\",s=\"\"} 1\nq_count 1\nq_sum 1\n";
    let first = scrape(&mut s, body, T0);
    let gone = scrape(&mut s, "", T0 + SEC);
    assert_eq!(gone.stale_markers, 4);
    for name in ["g", "c_total", "h", "q"] {
        let (was, now) = (metric(&first, name), metric(&gone, name));
        let attributes = |m: &Metric| match m.data.as_ref().unwrap() {
            Data::Gauge(g) => g.data_points[0].attributes.clone(),
            Data::Sum(s) => s.data_points[0].attributes.clone(),
            Data::Histogram(h) => h.data_points[0].attributes.clone(),
            Data::Summary(s) => s.data_points[0].attributes.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(attributes(now), attributes(was), "{name}");
        assert_eq!(
            std::mem::discriminant(now.data.as_ref().unwrap()),
            std::mem::discriminant(was.data.as_ref().unwrap()),
            "{name}"
        );
        assert_eq!(ptype(now), ptype(was), "{name}");
        assert_eq!(
            resource_of(&gone, name).resource,
            resource_of(&first, name).resource,
            "{name}"
        );
    }
    let g = numbers(metric(&gone, "g"));
    assert_eq!(str_attr(&g[0].attributes, "a").as_deref(), Some("1:x"));
    assert_eq!(
        str_attr(&g[0].attributes, "exported_job").as_deref(),
        Some("other")
    );
}

#[test]
fn a_counter_named_without_total_keeps_its_start_and_goes_stale_by_its_series_name() {
    // OpenMetrics: the family is `c`, its series `c_total` (the name the receiver writes).
    let mut s = TargetState::default();
    let body = |v: u32| {
        format!("# TYPE c counter\nc_total{{p=\"a\"}} {v}\nc_total{{p=\"b\"}} {v}\n# EOF\n")
    };
    let start = |r: &Report| {
        numbers(metric(r, "c_total"))
            .iter()
            .map(|p| p.start_time_unix_nano)
            .collect::<Vec<_>>()
    };
    let first = scrape_with(&mut s, &body(1), Format::OpenMetrics, T0, &opts());
    let second = scrape_with(&mut s, &body(2), Format::OpenMetrics, T0 + SEC, &opts());
    assert_eq!(start(&first), vec![T0, T0]);
    assert_eq!(start(&second), vec![T0, T0], "the start time is kept");
    let gone = scrape_with(
        &mut s,
        "# EOF\n",
        Format::OpenMetrics,
        T0 + 2 * SEC,
        &opts(),
    );
    assert_eq!(gone.stale_markers, 2);
    assert!(
        numbers(metric(&gone, "c_total"))
            .iter()
            .all(|p| p.flags == FLAG_NO_RECORDED_VALUE)
    );
}

#[test]
fn a_family_that_changes_type_gives_the_same_groups_in_any_order() {
    // A second `# TYPE` for the family whose samples came before: its next lines are the new
    // kind's, whether or not the line before is of the same series.
    let points = |body: &str| {
        let r = scrape(&mut TargetState::default(), body, T0);
        assert_eq!(r.error, None);
        let mut out: Vec<(String, usize)> = metrics(&r)
            .iter()
            .filter(|m| m.name.starts_with('x'))
            .map(|m| {
                let n = match m.data.as_ref().unwrap() {
                    Data::Sum(s) => s.data_points.len(),
                    Data::Summary(s) => s.data_points.len(),
                    other => panic!("{other:?}"),
                };
                (m.name.clone(), n)
            })
            .collect();
        out.sort();
        out
    };
    let adjacent = "# TYPE x counter\nx_total{a=\"2\"} 2\nx_total{a=\"1\"} 1\n# TYPE x summary\nx_count{a=\"1\"} 3\n";
    let apart = "# TYPE x counter\nx_total{a=\"1\"} 1\nx_total{a=\"2\"} 2\n# TYPE x summary\nx_count{a=\"1\"} 3\n";
    assert_eq!(points(adjacent), points(apart));
    assert_eq!(
        points(apart),
        vec![("x".to_string(), 1), ("x_total".to_string(), 2)]
    );
}

#[test]
fn a_failed_scrape_marks_every_series_stale() {
    let mut s = TargetState::default();
    let body = "a 1\n# TYPE c_total counter\nc_total 1\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n";
    scrape(&mut s, body, T0);
    let r = s.scrape(Err("down".into()), 0.0, T0 + SEC, &target(), &opts());
    assert_eq!(stale_points(&r, "a"), 1);
    assert_eq!(stale_points(&r, "c_total"), 1);
    let Some(Data::Histogram(h)) = &metric(&r, "h").data else {
        panic!()
    };
    assert_eq!(h.data_points[0].flags, FLAG_NO_RECORDED_VALUE);
    assert_eq!(s.tracked(), 0);
    // Back up: the series are new again.
    let r = scrape(&mut s, body, T0 + 2 * SEC);
    assert_eq!(single(&r, "scrape_series_added"), 3.0);
}

#[test]
fn a_removed_target_marks_its_series_and_up_stale() {
    let mut s = TargetState::default();
    scrape(&mut s, "a 1\nb{x=\"1\"} 2\nts 1 1600000000000\n", T0);
    let r = Report {
        resource_metrics: s.stale_all(T0 + SEC, &target()),
        ..Default::default()
    };
    assert_eq!(stale_points(&r, "a"), 1);
    assert_eq!(stale_points(&r, "b"), 1);
    assert!(!has(&r, "ts"));
    for name in ["up", "scrape_duration_seconds", "scrape_series_added"] {
        assert_eq!(stale_points(&r, name), 1, "{name}");
    }
    assert_eq!(s.tracked(), 0);
}

#[test]
fn series_of_a_failed_scrape_never_sent_get_no_marker() {
    let mut s = TargetState::default();
    scrape(&mut s, "a 1\n", T0);
    let r = scrape(&mut s, "a 1\nnew 1\nbad{\n", T0 + SEC);
    assert_eq!(stale_points(&r, "a"), 1);
    assert!(!has(&r, "new"));
}

#[test]
fn explicit_timestamps_are_honored_and_not_marked_stale() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "t 1 1600000000000\n", T0);
    assert_eq!(
        numbers(metric(&r, "t"))[0].time_unix_nano,
        1_600_000_000_000_000_000
    );
    let r = scrape(&mut s, "", T0 + SEC);
    assert!(!has(&r, "t"));
    let o = Options::default();
    let r = scrape_with(&mut s, "t 1 1600000000000\n", Format::Text, T0, &o);
    assert_eq!(numbers(metric(&r, "t"))[0].time_unix_nano, T0);
}

#[test]
fn sample_and_label_limits_fail_the_scrape() {
    let mut s = TargetState::default();
    let o = Options {
        sample_limit: 2,
        ..opts()
    };
    let r = scrape_with(&mut s, "a 1\nb 1\n", Format::Text, T0, &o);
    assert_eq!(r.error, None);
    let r = scrape_with(&mut s, "a 1\nb 1\nc 1\n", Format::Text, T0, &o);
    assert!(r.error.as_deref().unwrap().contains("sample_limit 2"));
    assert_eq!(single(&r, "up"), 0.0);

    // job, instance, team and the name: 4 labels.
    let o = Options {
        label_limit: 4,
        ..opts()
    };
    let mut s = TargetState::default();
    assert_eq!(
        scrape_with(&mut s, "a 1\n", Format::Text, T0, &o).error,
        None
    );
    let r = scrape_with(&mut s, "a{x=\"1\"} 1\n", Format::Text, T0, &o);
    assert!(r.error.as_deref().unwrap().contains("label_limit 4"));

    let o = Options {
        // "127.0.0.1:9100" and "instance" are within them.
        label_value_length_limit: 14,
        label_name_length_limit: 8,
        ..opts()
    };
    assert_eq!(
        scrape_with(&mut s, "a{x=\"12345678901234\"} 1\n", Format::Text, T0, &o).error,
        None
    );
    let r = scrape_with(&mut s, "a{x=\"123456789012345\"} 1\n", Format::Text, T0, &o);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("label_value_length_limit")
    );
    let r = scrape_with(&mut s, "a{xxxxxxxxx=\"1\"} 1\n", Format::Text, T0, &o);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("label_name_length_limit")
    );
}

#[test]
fn target_info_becomes_resource_attributes() {
    let mut s = TargetState::default();
    let body = "# TYPE target info\ntarget_info{env=\"prod\",region=\"eu\"} 1\ng 1\n# EOF\n";
    let r = scrape_with(&mut s, body, Format::OpenMetrics, T0, &opts());
    assert!(!has(&r, "target_info"));
    let attrs = &resource_of(&r, "g").resource.as_ref().unwrap().attributes;
    assert_eq!(str_attr(attrs, "env").as_deref(), Some("prod"));
    assert_eq!(str_attr(attrs, "region").as_deref(), Some("eu"));
}

#[test]
fn exemplars_reach_their_points() {
    let mut s = TargetState::default();
    let body = "# TYPE h histogram\nh_bucket{le=\"1\"} 1 # {trace_id=\"0123456789abcdef0123456789abcdef\",span_id=\"0123456789abcdef\",user=\"u\"} 0.5 1600000000\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 0.5\n# EOF\n";
    let r = scrape_with(&mut s, body, Format::OpenMetrics, T0, &opts());
    let Some(Data::Histogram(h)) = &metric(&r, "h").data else {
        panic!()
    };
    let e = &h.data_points[0].exemplars[0];
    assert_eq!(e.trace_id.len(), 16);
    assert_eq!(e.span_id.len(), 8);
    assert_eq!(e.time_unix_nano, 1_600_000_000 * SEC);
    assert_eq!(
        str_attr(&e.filtered_attributes, "user").as_deref(),
        Some("u")
    );
}

#[test]
fn quoted_utf8_names_pass_through() {
    let mut s = TargetState::default();
    let r = scrape(&mut s, "{\"my.metric\",\"a.b\"=\"c\"} 1\n", T0);
    let p = &numbers(metric(&r, "my.metric"))[0];
    assert_eq!(str_attr(&p.attributes, "a.b").as_deref(), Some("c"));
}

#[test]
fn units_are_kept_when_the_name_ends_with_them() {
    let mut s = TargetState::default();
    let body = "# TYPE d_seconds gauge\n# UNIT d_seconds seconds\nd_seconds 1\n# EOF\n";
    let r = scrape_with(&mut s, body, Format::OpenMetrics, T0, &opts());
    assert_eq!(metric(&r, "d_seconds").unit, "seconds");
}

// ---- config ----

thread_local! {
    static PARSED: RefCell<Option<PrometheusReceiverConfig>> = const { RefCell::new(None) };
}

struct OnlyPrometheus;

impl Registry for OnlyPrometheus {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn ReceiverConfig>> {
        match kind {
            "prometheus" => Some(|n, c| {
                let cfg = parse_config::<PrometheusReceiverConfig>(n, c)?;
                PARSED.with(|p| *p.borrow_mut() = Some(cfg.clone()));
                Ok(Box::new(cfg))
            }),
            _ => None,
        }
    }
    fn processor(&self, _: &str) -> Option<ParseFn<dyn ProcessorConfig>> {
        None
    }
    fn exporter(&self, _: &str) -> Option<ParseFn<dyn ExporterConfig>> {
        None
    }
    fn kinds(&self, _: Class) -> &'static [&'static str] {
        &["prometheus"]
    }
}

fn parse(body: &str) -> Result<PrometheusReceiverConfig, Vec<String>> {
    PARSED.with(|p| *p.borrow_mut() = None);
    let text = format!("receivers:\n  prometheus:\n{body}\n");
    let result = sluice_core::config::load_str(
        &text,
        "pipeline.yaml".into(),
        LoadContext {
            base_dir: PathBuf::from("/etc/sluice"),
        },
        &OnlyPrometheus,
    );
    let errs: Vec<String> = match result {
        Ok(_) => Vec::new(),
        Err(e) => {
            e.0.into_iter()
                .filter(|e| e.component.as_deref() == Some("receivers.prometheus"))
                .map(|e| e.message)
                .collect()
        }
    };
    match PARSED.with(|p| p.borrow_mut().take()) {
        Some(cfg) if errs.is_empty() => Ok(cfg),
        _ => Err(errs),
    }
}

fn one_job(extra: &str) -> String {
    format!(
        "    config:\n      scrape_configs:\n        - job_name: node\n          static_configs: [{{ targets: [\"127.0.0.1:9100\"], labels: {{ team: infra }} }}]\n{extra}"
    )
}

#[test]
fn config_defaults_are_prometheus_defaults() {
    let cfg = parse(&one_job("")).unwrap();
    let sc = &cfg.config.scrape_configs[0];
    assert_eq!(sc.interval(), Duration::from_secs(60));
    assert_eq!(sc.timeout(), Duration::from_secs(10));
    assert_eq!(sc.metrics_path, "/metrics");
    assert_eq!(sc.scheme, "http");
    assert!(!sc.honor_labels);
    assert!(sc.honor_timestamps);
    assert_eq!(sc.static_configs[0].labels["team"], "infra");
    let js = jobs(sc);
    assert_eq!(js.len(), 1);
    assert_eq!(js[0].target.url, "http://127.0.0.1:9100/metrics");
    assert_eq!(js[0].target.job, "node");
    assert_eq!(js[0].target.instance, "127.0.0.1:9100");
}

#[test]
fn config_short_interval_shortens_the_default_timeout() {
    let cfg = parse(&one_job("          scrape_interval: 1s\n")).unwrap();
    assert_eq!(
        cfg.config.scrape_configs[0].timeout(),
        Duration::from_secs(1)
    );
}

#[test]
fn config_errors() {
    let e = parse(&one_job(
        "          scrape_interval: 5s\n          scrape_timeout: 6s\n",
    ))
    .unwrap_err();
    assert!(
        e.iter().any(|m| m.contains("longer than scrape_interval")),
        "{e:?}"
    );
    let e = parse(&one_job("          scheme: ftp\n")).unwrap_err();
    assert!(e.iter().any(|m| m.contains("http or https")), "{e:?}");
    parse(&one_job("          scheme: https\n")).unwrap();
    let e = parse(&one_job("          tls_config: { cert_file: c.pem }\n")).unwrap_err();
    assert!(
        e.iter().any(|m| m.contains("both cert_file and key_file")),
        "{e:?}"
    );
    let e = parse(&one_job("          metrics_path: metrics\n")).unwrap_err();
    assert!(e.iter().any(|m| m.contains("start with `/`")), "{e:?}");
    // Not supported yet: refused rather than ignored.
    let e = parse(&one_job("          oauth2: {}\n")).unwrap_err();
    assert!(e.iter().any(|m| m.contains("oauth2")), "{e:?}");
    let e = parse("    config:\n      scrape_configs:\n        - job_name: a\n          static_configs: [{ targets: [\"http://x:1/metrics\", \"nohost\"] }]\n        - job_name: a\n          static_configs: [{ targets: [\"x:1\"], labels: { __bad: x } }]\n").unwrap_err();
    assert!(e.iter().any(|m| m.contains("must be host:port")), "{e:?}");
    assert!(e.iter().any(|m| m.contains("has no port")), "{e:?}");
    assert!(
        e.iter().any(|m| m.contains("more than one scrape config")),
        "{e:?}"
    );
    assert!(e.iter().any(|m| m.contains("__bad")), "{e:?}");
    let e = parse("    config:\n      scrape_configs: []\n").unwrap_err();
    assert!(e.iter().any(|m| m.contains("empty")), "{e:?}");
    let e = parse("    config:\n      scrape_configs:\n        - job_name: a\n").unwrap_err();
    assert!(e.iter().any(|m| m.contains("no targets")), "{e:?}");
}

#[test]
fn urls_with_params() {
    let mut params = std::collections::BTreeMap::new();
    params.insert(
        "module".to_string(),
        vec!["http_2xx".to_string(), "a b".to_string()],
    );
    assert_eq!(
        target_url("http", "h:1", "/probe", &params),
        "http://h:1/probe?module=http_2xx&module=a%20b"
    );
}

#[test]
fn offsets_are_within_the_interval_and_differ() {
    let i = Duration::from_secs(10);
    let a = offset(&target(), i);
    let b = offset(
        &Target::new(
            "node",
            "127.0.0.1:9101",
            "http",
            "http://127.0.0.1:9101/metrics".into(),
            &[],
        ),
        i,
    );
    assert!(a < i && b < i);
    assert_ne!(a, b);
    assert_eq!(a, offset(&target(), i));
}

// ---- end to end ----

async fn serve(
    body: &'static str,
    content_type: &'static str,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    let accepts = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = accepts.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let accept = headers
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(accept);
                ([(http::header::CONTENT_TYPE, content_type)], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, accepts)
}

fn config_for(addrs: &[std::net::SocketAddr]) -> PrometheusReceiverConfig {
    let targets: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    parse(&format!(
        "    config:\n      scrape_configs:\n        - job_name: test\n          scrape_interval: 100ms\n          static_configs: [{{ targets: [{}] }}]\n",
        targets.join(", ")
    ))
    .unwrap()
}

async fn wait_for(
    capture: &Capture,
    what: &str,
    f: impl Fn(&[ResourceMetrics]) -> bool,
) -> Vec<ResourceMetrics> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut all = Vec::new();
    loop {
        for b in capture.take() {
            all.extend(b.resource_metrics);
        }
        if f(&all) {
            return all;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn up_values(rms: &[ResourceMetrics], instance: &str) -> Vec<f64> {
    rms.iter()
        .filter(|rm| {
            str_attr(
                &rm.resource.as_ref().unwrap().attributes,
                "service.instance.id",
            )
            .as_deref()
                == Some(instance)
        })
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "up")
        .flat_map(|m| numbers(m).iter().map(value))
        .collect()
}

#[tokio::test]
async fn scrapes_live_targets_with_negotiation() {
    let (text_addr, accepts) = serve(
        "# TYPE go_goroutines gauge\ngo_goroutines 8\n",
        "text/plain; version=0.0.4; charset=utf-8",
    )
    .await;
    let (om_addr, _) = serve(
        "# TYPE c counter\nc_total 3\n# EOF\n",
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .await;
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let cfg = config_for(&[text_addr, om_addr, down]);
    let capture = Capture::new();
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let task = cfg
        .start(sluice_core::component::ReceiverContext {
            id: ComponentId::parse("prometheus").unwrap(),
            next: capture.clone(),
            shutdown: shutdown.clone(),
            telemetry,
        })
        .await
        .unwrap();
    let all = wait_for(&capture, "up from all three targets", |rms| {
        [text_addr, om_addr, down]
            .iter()
            .all(|a| !up_values(rms, &a.to_string()).is_empty())
    })
    .await;
    assert!(up_values(&all, &text_addr.to_string()).contains(&1.0));
    assert!(up_values(&all, &om_addr.to_string()).contains(&1.0));
    assert!(up_values(&all, &down.to_string()).iter().all(|v| *v == 0.0));
    let names: Vec<&str> = all
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(|m| m.name.as_str())
        .collect();
    assert!(names.contains(&"go_goroutines"));
    assert!(names.contains(&"c_total"));
    assert!(accepts.lock().unwrap()[0].starts_with("application/openmetrics-text;version=1.0.0"));
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the receiver stops at shutdown")
        .unwrap();
}

/// A target speaking HTTP/1.1 by hand, keeping each connection open for more requests: counts
/// the requests it answered and the most any one connection carried.
async fn serve_counting() -> (
    std::net::SocketAddr,
    Arc<[std::sync::atomic::AtomicUsize; 2]>,
) {
    use std::sync::atomic::Ordering::Relaxed;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let counts: Arc<[std::sync::atomic::AtomicUsize; 2]> = Arc::new(Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = counts.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let c = c.clone();
            tokio::spawn(async move {
                let body = "# TYPE g gauge\ng 1\n";
                let (mut buf, mut on_this) = (Vec::new(), 0);
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = conn.read(&mut chunk).await {
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..end + 4);
                        on_this += 1;
                        c[0].fetch_add(1, Relaxed);
                        c[1].fetch_max(on_this, Relaxed);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\n\
                             content-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, counts)
}

/// Scrapes `target` (`host:port`) every 100 ms until it answered 3 requests; the most requests
/// one connection carried.
async fn requests_per_connection(
    target: &str,
    counts: &[std::sync::atomic::AtomicUsize; 2],
) -> usize {
    use std::sync::atomic::Ordering::Relaxed;
    let cfg = parse(&format!(
        "    config:\n      scrape_configs:\n        - job_name: test\n          scrape_interval: 100ms\n          static_configs: [{{ targets: ['{target}'] }}]\n"
    ))
    .unwrap();
    let shutdown = CancellationToken::new();
    let task = cfg
        .start(sluice_core::component::ReceiverContext {
            id: ComponentId::parse("prometheus").unwrap(),
            next: Capture::new(),
            shutdown: shutdown.clone(),
            telemetry: Arc::new(Telemetry::new()),
        })
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counts[0].load(Relaxed) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for 3 scrapes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the receiver stops at shutdown")
        .unwrap();
    counts[1].load(Relaxed)
}

// Guarantees: a plain-HTTP target named by its IP address gets a new connection for each scrape,
// closed after it, so that no connection (and its read buffer) is kept between scrapes, even when
// the target would keep it; one named by a host name keeps its connection (no lookup per scrape).
#[tokio::test]
async fn plain_http_scrapes_of_ip_targets_do_not_keep_their_connection() {
    let (addr, counts) = serve_counting().await;
    let most = requests_per_connection(&addr.to_string(), &counts).await;
    assert_eq!(most, 1, "a connection to {addr} was reused");
    let (addr, counts) = serve_counting().await;
    let most = requests_per_connection(&format!("localhost:{}", addr.port()), &counts).await;
    assert!(most >= 2, "a connection to localhost was not kept");
}

// ---- relabeling ----

use super::relabel::{hash64, md5, relabel};
use super::scrape::{Auth, jobs_for, read_groups, wildcard};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn md5_test_vectors() {
    assert_eq!(hex(&md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(hex(&md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
    assert_eq!(
        hex(&md5(b"The quick brown fox jumps over the lazy dog")),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
    assert_eq!(
        hex(&md5(
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
        )),
        "57edf4a22be3c955ac49da2e2107b67a"
    );
}

#[test]
fn hashmod_matches_prometheus() {
    // The last 8 bytes of MD5, big-endian (Python: int.from_bytes(md5(s).digest()[8:], "big")).
    assert_eq!(hash64(b"foo"), 17_145_033_699_835_028_696);
    assert_eq!(hash64(b"127.0.0.1:9100") % 1000, 150);
}

/// Rules from YAML, as a scrape config holds them.
fn rules(yaml: &str) -> Vec<RelabelConfig> {
    let cfg = parse(&one_job(&format!(
        "          metric_relabel_configs:\n{yaml}"
    )))
    .unwrap();
    cfg.config.scrape_configs[0].metric_relabel_configs.clone()
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sorted(mut l: Vec<(String, String)>) -> Vec<(String, String)> {
    l.sort();
    l
}

#[test]
fn relabel_replace_with_defaults_and_captures() {
    let r = rules(
        "            - { source_labels: [a, b], regex: \"f(.*);(.*)\", target_label: c, replacement: \"${1}-$2\" }\n            - { source_labels: [a], target_label: d }\n",
    );
    let mut l = labels(&[("a", "foo"), ("b", "bar")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(
        sorted(l),
        labels(&[("a", "foo"), ("b", "bar"), ("c", "oo-bar"), ("d", "foo")])
    );
}

#[test]
fn relabel_regexes_are_anchored_and_no_match_changes_nothing() {
    let r =
        rules("            - { source_labels: [a], regex: oo, target_label: c, replacement: x }\n");
    let mut l = labels(&[("a", "foo")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(l, labels(&[("a", "foo")]));
}

#[test]
fn relabel_empty_replacement_removes_the_label() {
    let r = rules("            - { source_labels: [a], target_label: b, replacement: \"\" }\n");
    let mut l = labels(&[("a", "x"), ("b", "y")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(l, labels(&[("a", "x")]));
}

#[test]
fn relabel_keep_drop_keepequal_dropequal() {
    let keep = rules("            - { source_labels: [a], regex: \"f.*\", action: keep }\n");
    assert!(relabel(&mut labels(&[("a", "foo")]), &keep));
    assert!(!relabel(&mut labels(&[("a", "bar")]), &keep));
    assert!(!relabel(&mut labels(&[]), &keep));
    let drop = rules("            - { source_labels: [a], regex: \"f.*\", action: drop }\n");
    assert!(!relabel(&mut labels(&[("a", "foo")]), &drop));
    assert!(relabel(&mut labels(&[("a", "bar")]), &drop));
    let ke = rules("            - { source_labels: [a], target_label: b, action: keepequal }\n");
    assert!(relabel(&mut labels(&[("a", "1"), ("b", "1")]), &ke));
    assert!(!relabel(&mut labels(&[("a", "1"), ("b", "2")]), &ke));
    let de = rules("            - { source_labels: [a], target_label: b, action: dropequal }\n");
    assert!(!relabel(&mut labels(&[("a", "1"), ("b", "1")]), &de));
}

#[test]
fn relabel_hashmod_lowercase_uppercase() {
    let r = rules(
        "            - { source_labels: [a], target_label: shard, modulus: 1000, action: hashmod }\n            - { source_labels: [a], target_label: up, action: uppercase }\n            - { source_labels: [up], target_label: low, action: lowercase }\n",
    );
    let mut l = labels(&[("a", "foo")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(
        sorted(l),
        labels(&[
            ("a", "foo"),
            ("low", "foo"),
            ("shard", "696"),
            ("up", "FOO")
        ])
    );
}

#[test]
fn relabel_labelmap_labeldrop_labelkeep() {
    let r = rules("            - { regex: \"__meta_(.+)\", action: labelmap }\n");
    let mut l = labels(&[("__meta_zone", "eu"), ("a", "1")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(
        sorted(l),
        labels(&[("__meta_zone", "eu"), ("a", "1"), ("zone", "eu")])
    );
    let r = rules("            - { regex: \"tmp_.*\", action: labeldrop }\n");
    let mut l = labels(&[("tmp_x", "1"), ("a", "1")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(l, labels(&[("a", "1")]));
    let r = rules("            - { regex: \"__name__|a\", action: labelkeep }\n");
    let mut l = labels(&[("__name__", "m"), ("a", "1"), ("b", "2")]);
    assert!(relabel(&mut l, &r));
    assert_eq!(l, labels(&[("__name__", "m"), ("a", "1")]));
}

#[test]
fn relabel_config_errors() {
    let e = parse(&one_job(
        "          relabel_configs: [{ source_labels: [a], action: hashmod, target_label: x }]\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("modulus")), "{e:?}");
    let e = parse(&one_job(
        "          relabel_configs: [{ source_labels: [a] , replacement: x }]\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("target_label")), "{e:?}");
    let e = parse(&one_job(
        "          relabel_configs: [{ regex: \"(\" , action: keep }]\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("invalid regex")), "{e:?}");
    let e = parse(&one_job(
        "          relabel_configs: [{ action: explode }]\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("explode")), "{e:?}");
    let e = parse(&one_job(
        "          metric_relabel_configs: [{ source_labels: [a], action: labeldrop }]\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("no source_labels")), "{e:?}");
}

#[test]
fn target_relabeling_shapes_address_instance_path_and_params() {
    let cfg = parse(
        "    config:\n      scrape_configs:\n        - job_name: probe\n          metrics_path: /probe\n          params: { module: [http_2xx] }\n          static_configs: [{ targets: [\"example.org:80\", \"skip.me:80\"], labels: { exporter: \"127.0.0.1:9115\" } }]\n          relabel_configs:\n            - { source_labels: [__address__], regex: \"skip.*\", action: drop }\n            - { source_labels: [__address__], target_label: __param_target }\n            - { source_labels: [__param_target], target_label: instance }\n            - { source_labels: [exporter], target_label: __address__ }\n            - { regex: exporter, action: labeldrop }\n",
    )
    .unwrap();
    let sc = &cfg.config.scrape_configs[0];
    let js = jobs(sc);
    assert_eq!(js.len(), 1);
    let t = &js[0].target;
    assert_eq!(
        t.url,
        "http://127.0.0.1:9115/probe?module=http_2xx&target=example.org%3A80"
    );
    assert_eq!(t.instance, "example.org:80");
    assert_eq!(t.job, "probe");
    assert_eq!(
        t.labels,
        labels(&[("instance", "example.org:80"), ("job", "probe")])
    );
}

#[test]
fn metric_relabeling_drops_renames_and_counts() {
    let r = rules(
        "            - { source_labels: [__name__], regex: \"go_.*\", action: drop }\n            - { source_labels: [__name__], regex: \"old_(.*)\", target_label: __name__, replacement: \"new_$1\" }\n            - { regex: secret, action: labeldrop }\n",
    );
    let o = Options {
        metric_relabel: r,
        ..opts()
    };
    let mut s = TargetState::default();
    let body = "go_goroutines 3\nold_thing{secret=\"x\",keep=\"y\"} 1\n# TYPE c_total counter\nc_total 5\n";
    let r = scrape_with(&mut s, body, Format::Text, T0, &o);
    assert_eq!(r.error, None);
    assert!(!has(&r, "go_goroutines"));
    assert!(!has(&r, "old_thing"));
    let p = &numbers(metric(&r, "new_thing"))[0];
    assert_eq!(str_attr(&p.attributes, "secret"), None);
    assert_eq!(str_attr(&p.attributes, "keep").as_deref(), Some("y"));
    assert!(matches!(metric(&r, "c_total").data, Some(Data::Sum(_))));
    assert_eq!(single(&r, "scrape_samples_scraped"), 3.0);
    assert_eq!(single(&r, "scrape_samples_post_metric_relabeling"), 2.0);
}

// ---- auth ----

fn auth_header(auth: &Auth) -> Option<String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let req = auth
        .apply(client.get("http://127.0.0.1:1/metrics"))
        .unwrap()
        .build()
        .unwrap();
    req.headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap().to_string())
}

/// A file named `name` alone in a folder of its own; both are removed when it is dropped.
struct TempFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl std::ops::Deref for TempFile {
    type Target = std::path::Path;

    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

fn temp_file(name: &str, content: &str) -> TempFile {
    let dir = tempfile::Builder::new()
        .prefix("sluice-prom-")
        .tempdir()
        .unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    TempFile { _dir: dir, path }
}

#[test]
fn basic_auth_and_bearer_tokens() {
    let cfg = parse(&one_job(
        "          basic_auth: { username: u, password: p }\n",
    ))
    .unwrap();
    let js = jobs(&cfg.config.scrape_configs[0]);
    // base64("u:p") = dTpw
    assert_eq!(auth_header(&js[0].auth).as_deref(), Some("Basic dTpw"));
    let cfg = parse(&one_job("          bearer_token: abc\n")).unwrap();
    let js = jobs(&cfg.config.scrape_configs[0]);
    assert_eq!(auth_header(&js[0].auth).as_deref(), Some("Bearer abc"));
    let f = temp_file("token", "from-file\n");
    let cfg = parse(&one_job(&format!(
        "          bearer_token_file: {}\n",
        f.display()
    )))
    .unwrap();
    let js = jobs(&cfg.config.scrape_configs[0]);
    assert_eq!(
        auth_header(&js[0].auth).as_deref(),
        Some("Bearer from-file")
    );
    // Relative files are relative to the config's folder.
    let cfg = parse(&one_job("          bearer_token_file: token\n")).unwrap();
    assert_eq!(
        cfg.config.scrape_configs[0].bearer_token_file.as_deref(),
        Some(std::path::Path::new("/etc/sluice/token"))
    );
    let e = parse(&one_job(
        "          bearer_token: a\n          basic_auth: { username: u, password: p, password_file: f }\n",
    ))
    .unwrap_err();
    assert!(e.iter().any(|m| m.contains("not both")), "{e:?}");
    assert_eq!(e.len(), 2, "{e:?}");
    let missing = Auth::BearerFile(PathBuf::from("/nonexistent/token"));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let err = missing
        .apply(reqwest::Client::new().get("http://127.0.0.1:1/"))
        .unwrap_err();
    assert!(err.contains("/nonexistent/token"));
}

#[test]
fn tls_files_are_relative_to_the_config_and_must_be_readable() {
    let cfg = parse(&one_job(
        "          scheme: https\n          tls_config: { ca_file: ca.pem, insecure_skip_verify: true }\n",
    ))
    .unwrap();
    let sc = &cfg.config.scrape_configs[0];
    assert_eq!(
        sc.tls_config.as_ref().unwrap().ca_file.as_deref(),
        Some(std::path::Path::new("/etc/sluice/ca.pem"))
    );
    assert_eq!(jobs(sc)[0].target.url, "https://127.0.0.1:9100/metrics");
    let err = super::scrape::client_for(sc, true).unwrap_err().to_string();
    assert!(err.contains("/etc/sluice/ca.pem"), "{err}");
}

// ---- file_sd ----

#[test]
fn wildcards() {
    assert!(wildcard("*.json", "a.json"));
    assert!(wildcard("t-*-x.yml", "t-abc-x.yml"));
    assert!(!wildcard("*.json", "a.yml"));
    assert!(wildcard("a*b*c", "abc"));
    assert!(!wildcard("a*b*c", "acb"));
    assert!(wildcard("exact", "exact"));
}

#[test]
fn file_sd_files_in_json_and_yaml() {
    let j = temp_file(
        "t.json",
        r#"[{"targets": ["127.0.0.1:1", "127.0.0.1:2"], "labels": {"env": "prod"}}]"#,
    );
    let g = read_groups(&j).unwrap();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].0, vec!["127.0.0.1:1", "127.0.0.1:2"]);
    assert_eq!(g[0].1["env"], "prod");
    let y = temp_file(
        "t.yml",
        "- targets: [\"127.0.0.1:3\"]\n  labels: { env: dev }\n",
    );
    let g = read_groups(&y).unwrap();
    assert_eq!(g[0].0, vec!["127.0.0.1:3"]);
    let bad = temp_file("bad.json", "[{\"targets\": 3}]");
    assert!(read_groups(&bad).is_err());
    let cfg = parse("    config:\n      scrape_configs:\n        - job_name: a\n          file_sd_configs: [{ files: [targets.txt] }]\n").unwrap_err();
    assert!(
        cfg.iter().any(|m| m.contains(".json, .yml or .yaml")),
        "{cfg:?}"
    );
    // Target labels from the file reach the target.
    let sc = parse(&format!(
        "    config:\n      scrape_configs:\n        - job_name: a\n          file_sd_configs: [{{ files: [\"{}\"] }}]\n",
        j.display()
    ))
    .unwrap()
    .config
    .scrape_configs[0]
        .clone();
    let js = jobs_for(&sc, &read_groups(&j).unwrap());
    assert_eq!(js.len(), 2);
    assert_eq!(
        js[0].target.labels,
        labels(&[("env", "prod"), ("instance", "127.0.0.1:1"), ("job", "a")])
    );
}

#[tokio::test]
async fn file_sd_targets_come_and_go_with_staleness() {
    let (addr, _) = serve("# TYPE g gauge\ng 1\n", "text/plain; version=0.0.4").await;
    let file = temp_file(
        "live.json",
        &format!(r#"[{{"targets": ["{addr}"], "labels": {{"env": "prod"}}}}]"#),
    );
    let cfg = parse(&format!(
        "    config:\n      scrape_configs:\n        - job_name: sd\n          scrape_interval: 100ms\n          file_sd_configs: [{{ files: [\"{}\"], refresh_interval: 50ms }}]\n",
        file.parent().unwrap().join("*.json").display()
    ))
    .unwrap();
    let capture = Capture::new();
    let shutdown = CancellationToken::new();
    let task = cfg
        .start(sluice_core::component::ReceiverContext {
            id: ComponentId::parse("prometheus").unwrap(),
            next: capture.clone(),
            shutdown: shutdown.clone(),
            telemetry: Arc::new(Telemetry::new()),
        })
        .await
        .unwrap();
    wait_for(&capture, "a scrape of the file's target", |rms| {
        up_values(rms, &addr.to_string()).contains(&1.0)
    })
    .await;
    std::fs::write(&*file, "[]").unwrap();
    let all = wait_for(
        &capture,
        "staleness markers for the removed target",
        |rms| {
            rms.iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == "g")
                .flat_map(numbers)
                .any(|p| p.flags & FLAG_NO_RECORDED_VALUE != 0 && is_stale_nan(value(p)))
        },
    )
    .await;
    let g = all
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == "g")
        .unwrap();
    assert_eq!(
        str_attr(&numbers(g)[0].attributes, "env").as_deref(),
        Some("prod")
    );
    // No more scrapes of it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    capture.take();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(capture.points(), 0);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
}

// ---- gzip and body size ----

async fn serve_gzip(body: &'static str) -> std::net::SocketAddr {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(body.as_bytes()).unwrap();
    let gz = enc.finish().unwrap();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: http::HeaderMap| {
            let gz = gz.clone();
            async move {
                let accepts_gzip = headers
                    .get(http::header::ACCEPT_ENCODING)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("gzip"));
                assert!(accepts_gzip, "the scraper asks for gzip");
                (
                    [
                        (http::header::CONTENT_TYPE, "text/plain; version=0.0.4"),
                        (http::header::CONTENT_ENCODING, "gzip"),
                    ],
                    gz,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn run_receiver(
    yaml: String,
) -> (Arc<Capture>, CancellationToken, tokio::task::JoinHandle<()>) {
    let cfg = parse(&yaml).unwrap();
    let capture = Capture::new();
    let shutdown = CancellationToken::new();
    let task = cfg
        .start(sluice_core::component::ReceiverContext {
            id: ComponentId::parse("prometheus").unwrap(),
            next: capture.clone(),
            shutdown: shutdown.clone(),
            telemetry: Arc::new(Telemetry::new()),
        })
        .await
        .unwrap();
    (capture, shutdown, task)
}

#[tokio::test]
async fn gzipped_bodies_and_body_size_limit() {
    let body = "# TYPE big gauge\nbig{pad=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"} 1\nbig{pad=\"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"} 2\n";
    let addr = serve_gzip(body).await;
    let yaml = |limit: &str| {
        format!(
            "    config:\n      scrape_configs:\n        - job_name: gz\n          scrape_interval: 100ms\n          body_size_limit: {limit}\n          static_configs: [{{ targets: [\"{addr}\"] }}]\n"
        )
    };
    let (capture, shutdown, task) = run_receiver(yaml("0")).await;
    let all = wait_for(&capture, "a gzipped scrape", |rms| {
        up_values(rms, &addr.to_string()).contains(&1.0)
    })
    .await;
    let big = all
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == "big")
        .expect("big");
    assert_eq!(numbers(big).len(), 2);
    shutdown.cancel();
    task.await.unwrap();

    // The limit applies to the body as received and to the decompressed one.
    assert!(body.len() > 100);
    let (capture, shutdown, task) = run_receiver(yaml("100")).await;
    let all = wait_for(&capture, "a scrape over the limit", |rms| {
        !up_values(rms, &addr.to_string()).is_empty()
    })
    .await;
    assert!(up_values(&all, &addr.to_string()).iter().all(|v| *v == 0.0));
    shutdown.cancel();
    task.await.unwrap();
}

#[test]
fn attributes_come_out_sorted_whatever_the_exposition_order() {
    let mut s = TargetState::default();
    let r = scrape(
        &mut s,
        "t{zeta=\"1\",team=\"x\",alpha=\"2\",job=\"j\"} 1\n",
        T0,
    );
    let p = &numbers(metric(&r, "t"))[0];
    let keys: Vec<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["alpha", "exported_job", "exported_team", "team", "zeta"]
    );
    assert_eq!(
        str_attr(&p.attributes, "exported_team").as_deref(),
        Some("x")
    );
    assert_eq!(str_attr(&p.attributes, "team").as_deref(), Some("infra"));
}

#[test]
fn interleaved_histogram_lines_find_their_series() {
    let body = "# TYPE h histogram\n\
        h_bucket{a=\"1\",le=\"1\"} 1\n\
        h_bucket{a=\"2\",le=\"1\"} 5\n\
        h_bucket{a=\"1\",le=\"+Inf\"} 2\n\
        h_bucket{a=\"2\",le=\"+Inf\"} 7\n\
        h_count{a=\"2\"} 7\n\
        h_count{a=\"1\"} 2\n";
    let mut s = TargetState::default();
    let r = scrape(&mut s, body, T0);
    let m = metric(&r, "h");
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("{m:?}")
    };
    assert_eq!(h.data_points.len(), 2);
    for p in &h.data_points {
        let a = str_attr(&p.attributes, "a");
        let want: &[u64] = if a.as_deref() == Some("1") {
            &[1, 1]
        } else {
            &[5, 2]
        };
        assert_eq!(p.bucket_counts, want, "{a:?}");
    }
}

/// Not a check but a probe for profilers: 200 scrapes of a 2,400-sample exposition shaped like
/// the bench's W4 targets (gauges, a counter and a histogram with method/route/status labels),
/// with no network and no pipeline, so that an instruction count of the receiver's own work is
/// repeatable (docs/performance.md):
/// `cargo test --release -p sluice-receivers --lib --no-run`, then
/// `valgrind --tool=callgrind <the test binary> --ignored scrape_loop_for_profilers`.
#[test]
#[ignore]
fn scrape_loop_for_profilers() {
    let b = w4_like_exposition();
    let mut s = TargetState::default();
    for i in 0..200u64 {
        let r = scrape(&mut s, &b, T0 + 1_000_000_000 * i);
        assert_eq!((r.samples_scraped, r.stale_markers), (2_440, 0));
    }
    assert_eq!(s.tracked(), 40 + 160 + 160);
}

/// A probe like [`scrape_loop_for_profilers`] for the translation to Prometheus series that the
/// remote_write exporter does next: 8 rounds of 50 targets (distinct instances, one target state
/// each) scraped and translated with one label cache, as in the bench's W4 (122,000 series, the
/// first round all misses). `valgrind --tool=callgrind <binary> --ignored
/// scrape_and_translate_for_profilers`.
#[test]
#[ignore]
fn scrape_and_translate_for_profilers() {
    use sluice_core::batch::{Batch, Context};
    use sluice_core::prometheus::{
        LabelCache, TranslateOptions, TranslationState, translate_cached,
    };
    let b = w4_like_exposition();
    let targets: Vec<Target> = (0..50)
        .map(|i| {
            let address = format!("10.0.0.{i}:8080");
            Target::new(
                "api",
                &address,
                "http",
                format!("http://{address}/metrics"),
                &[],
            )
        })
        .collect();
    let mut states: Vec<TargetState> = targets.iter().map(|_| TargetState::default()).collect();
    let mut state = TranslationState::new(LabelCache::DEFAULT_CAPACITY);
    let topts = TranslateOptions::default();
    let mut series = 0;
    for round in 0..8u64 {
        for (t, s) in targets.iter().zip(&mut states) {
            let r = s.scrape(
                Ok((b.as_bytes(), Format::Text)),
                0.01,
                T0 + SEC * round,
                t,
                &opts(),
            );
            let batch = Batch::new(Context::default(), r.resource_metrics);
            let tr = translate_cached(
                &batch,
                &topts,
                Some(&mut state.delta),
                Some(&mut state.labels),
            );
            series += tr.series.len();
        }
    }
    assert!(series >= 8 * 50 * 2_440, "{series}");
}

/// 2,440 samples shaped like the bench's W4 targets: gauges, a counter and a histogram with
/// method/route/status labels.
fn w4_like_exposition() -> String {
    use std::fmt::Write;
    let mut b = String::new();
    for i in 0..40 {
        let _ = writeln!(
            b,
            "# HELP go_g{i}_bytes B.\n# TYPE go_g{i}_bytes gauge\ngo_g{i}_bytes {i}"
        );
    }
    let _ = writeln!(
        b,
        "# HELP http_requests_total R.\n# TYPE http_requests_total counter"
    );
    let labels = |r: usize, m: &str, st: &str| {
        format!("method=\"{m}\",route=\"/api/v1/r{r}\",status=\"{st}\"")
    };
    let series = || {
        (0..20).flat_map(|r| {
            ["GET", "POST", "PUT", "DELETE"]
                .into_iter()
                .flat_map(move |m| ["200", "500"].into_iter().map(move |st| (r, m, st)))
        })
    };
    for (r, m, st) in series() {
        let _ = writeln!(b, "http_requests_total{{{}}} 1027", labels(r, m, st));
    }
    let _ = writeln!(
        b,
        "# HELP http_request_duration_seconds L.\n# TYPE http_request_duration_seconds histogram"
    );
    let bounds = [
        "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
    ];
    for (r, m, st) in series() {
        let l = labels(r, m, st);
        for le in bounds {
            let _ = writeln!(
                b,
                "http_request_duration_seconds_bucket{{{l},le=\"{le}\"}} 3"
            );
        }
        let _ = writeln!(
            b,
            "http_request_duration_seconds_sum{{{l}}} 5.5\nhttp_request_duration_seconds_count{{{l}}} 3"
        );
    }
    b
}

/// Histogram and summary expositions whose lines vary the ways that matter to the short way of
/// bucket lines: bounds (good, now and then empty, bad or long, repeated), other labels, series
/// written one after the other or bound by bound, timestamps, exemplars, the group's other lines
/// in any order, lines of another name with the same labels.
fn bucket_heavy_exposition(seed: u64, openmetrics: bool) -> String {
    let mut x = seed | 1;
    let mut below = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % n) as usize
    };
    const BOUNDS: [&str; 7] = ["0.005", "0.01", "1", "+Inf", "1e3", "2.50", "0.1"];
    const OTHERS: [&str; 5] = [
        "",
        "a=\"1\",",
        "a=\"2\",",
        "a=\"2\",job=\"j\",",
        "instance=\"i9\",",
    ];
    let mut b = String::new();
    for family in 0..(1 + below(3)) {
        let summary = below(4) == 0;
        let (kind, label) = if summary {
            ("summary", "quantile")
        } else {
            ("histogram", "le")
        };
        b.push_str(&format!("# TYPE f{family} {kind}\n"));
        let name = if summary {
            format!("f{family}")
        } else {
            format!("f{family}_bucket")
        };
        for group in 0..(1 + below(4)) {
            let others: Vec<&str> = (0..1 + below(2)).map(|_| OTHERS[below(5)]).collect();
            let bounds: Vec<&str> = (0..1 + below(6))
                .map(|_| match below(300) {
                    0 => "",
                    1 => "x",
                    2..=30 => "0.0000000000000001",
                    _ => BOUNDS[below(BOUNDS.len() as u64)],
                })
                .collect();
            let bound_last = below(2) == 0;
            // Series one after the other, or bound by bound across the series.
            let lines: Vec<(&str, &str)> = if below(2) == 0 {
                let o = &others;
                bounds
                    .iter()
                    .flat_map(|&bd| o.iter().map(move |&ot| (ot, bd)))
                    .collect()
            } else {
                let bd = &bounds;
                others
                    .iter()
                    .flat_map(|&ot| bd.iter().map(move |&b| (ot, b)))
                    .collect()
            };
            for (other, bound) in lines {
                let labels = if bound_last {
                    format!("{other}{label}=\"{bound}\"")
                } else {
                    format!("{label}=\"{bound}\",{other}")
                        .trim_end_matches(',')
                        .to_string()
                };
                b.push_str(&format!("{name}{{{labels}}} {}", below(100)));
                match below(6) {
                    0 => b.push_str(if openmetrics {
                        " 1700000000.5"
                    } else {
                        " 1700000000500"
                    }),
                    1 if openmetrics => b.push_str(" # {trace_id=\"ab\"} 0.5"),
                    _ => {}
                }
                b.push('\n');
            }
            // Each series' other lines, in any order, and sometimes a line of another name
            // (another family's, or a bucket) with the same labels as the last one.
            for other in others {
                let mut last = other.trim_end_matches(',').to_string();
                if below(3) > 0 {
                    let mut tails = vec!["sum", "count", "created"];
                    tails.truncate(2 + below(2));
                    if below(2) == 0 {
                        tails.swap(0, 1);
                    }
                    if below(4) == 0 {
                        let comma = if last.is_empty() { "" } else { "," };
                        last = format!("{last}{comma}{label}=\"0.5\"");
                    }
                    for t in tails {
                        b.push_str(&format!("f{family}_{t}{{{last}}} {}\n", 10 + group));
                    }
                }
                match below(40) {
                    0 => b.push_str(&format!("stray{{{last}}} 1\n")),
                    1 => b.push_str(&format!("f{family}_bucket{{{last}}} 2\n")),
                    _ => {}
                }
            }
        }
    }
    if openmetrics {
        b.push_str("# EOF\n");
    }
    b
}

#[test]
fn bucket_lines_the_short_way_give_what_the_long_way_gives() {
    let le_target = Target::new(
        "node",
        "127.0.0.1:9100",
        "http",
        "http://127.0.0.1:9100/metrics".into(),
        &[("le".into(), "9".into())],
    );
    let option_sets = [
        opts(),
        Options::default(),
        Options {
            label_value_length_limit: 16,
            ..opts()
        },
        Options {
            sample_limit: 30,
            ..opts()
        },
        Options {
            honor_labels: true,
            ..opts()
        },
        Options {
            metric_relabel: rules(
                "            - { source_labels: [le], regex: \"1\", action: drop }\n",
            ),
            ..opts()
        },
    ];
    let (mut errors, mut fine) = (0, 0);
    for seed in 0..400u64 {
        for openmetrics in [false, true] {
            let format = if openmetrics {
                Format::OpenMetrics
            } else {
                Format::Text
            };
            for (i, o) in option_sets.iter().enumerate() {
                let t = if (i == 0 || i == 5) && seed % 2 == 0 {
                    le_target.clone()
                } else {
                    target()
                };
                let (mut short, mut long) = (TargetState::default(), TargetState::afresh());
                // The same body twice: staleness markers come out in hash order, which is not
                // the same in two states.
                let body = bucket_heavy_exposition(seed, openmetrics);
                for scrape in 0..2u64 {
                    let now = T0 + scrape * SEC;
                    let a = short.scrape(Ok((body.as_bytes(), format)), 0.01, now, &t, o);
                    let b = long.scrape(Ok((body.as_bytes(), format)), 0.01, now, &t, o);
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "options {i}:\n{body}");
                    if a.error.is_some() {
                        errors += 1;
                    } else {
                        fine += 1;
                    }
                }
            }
        }
    }
    // Both outcomes were compared many times.
    assert!(
        errors > 500 && fine > 2 * errors,
        "{errors} errors, {fine} fine"
    );
}
