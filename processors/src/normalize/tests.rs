//! The normalize processor against NAMING.md: every example of the contract, a table of names
//! from the OpenTelemetry semantic conventions, Micrometer, Dropwizard, Go's runtime/metrics and
//! Prometheus, base-unit conversions, domains, collisions, failures and label keys; property tests
//! for idempotence, the output grammar, and label values; and processor-level tests through a
//! capturing next stage for value scaling, telemetry and the bounded cache.

use super::labels::{self, KeyCache};
use super::rules::{Input, Rules, Trace};
use super::*;
use proptest::prelude::*;
use sluice_core::batch::Context;
use sluice_core::component::{Class, ComponentId, parse_config};
use sluice_core::config::component_node;
use sluice_core::prometheus::is_stale_nan;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, metric::Data, number_data_point, summary_data_point,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;

const G: MetricKind = MetricKind::Gauge;
const C: MetricKind = MetricKind::Counter;
const U: MetricKind = MetricKind::UpDownCounter;
const H: MetricKind = MetricKind::Histogram;
const E: MetricKind = MetricKind::ExponentialHistogram;
const S: MetricKind = MetricKind::Summary;

fn rules(cfg: &NormalizeConfig) -> Rules {
    cfg.rules().expect("a valid config")
}

fn with_base_units() -> NormalizeConfig {
    NormalizeConfig {
        base_units: true,
        ..Default::default()
    }
}

fn run(r: &Rules, name: &str, kind: MetricKind, unit: &str) -> Naming {
    r.name(
        Input {
            name,
            kind,
            unit,
            domain: "",
        },
        &mut Trace::off(),
    )
}

/// The final name, or `dropped:<reason>`.
fn out(n: &Naming) -> String {
    match &n.name {
        Ok(s) => s.clone(),
        Err(r) => format!("dropped:{r}"),
    }
}

/// Rule 5: the last segment is `info`.
fn is_info(name: &str) -> bool {
    name == "info" || name.ends_with("_info")
}

/// Parses a `normalize` config from YAML the way the binary does.
fn parse(yaml: &str) -> Result<NormalizeConfig, Vec<String>> {
    let text = format!("processors:\n  normalize:\n{}", indent(yaml));
    let id = ComponentId::parse("normalize").unwrap();
    let node = component_node(&text, Class::Processor, &id).expect("a normalize node");
    let ctx = sluice_core::config::LoadContext {
        base_dir: ".".into(),
    };
    parse_config::<NormalizeConfig>(&node, &ctx)
        .map_err(|errs| errs.into_iter().map(|e| e.message).collect())
}

fn indent(yaml: &str) -> String {
    yaml.lines().map(|l| format!("    {l}\n")).collect()
}

// ---------------------------------------------------------------------------------------------
// The contract's examples.

/// Every row of NAMING.md's "Examples that must hold" table.
#[test]
fn naming_md_examples_table() {
    let r = rules(&NormalizeConfig::default());
    let table: &[(&str, MetricKind, &str, &str)] = &[
        (
            "http.server.request.duration",
            H,
            "s",
            "http_server_request_duration_seconds",
        ),
        ("jvm.memory.used", G, "By", "jvm_memory_used_bytes"),
        ("process.cpu.time", C, "s", "process_cpu_time_seconds_total"),
        (
            "/gc/heap/allocs:bytes",
            C,
            "",
            "go_gc_heap_allocs_bytes_total",
        ),
        ("/sched/goroutines:goroutines", G, "", "go_sched_goroutines"),
        ("httpRequestsTotal", C, "", "http_requests_total"),
        (
            "system.network.io",
            C,
            "By",
            "system_network_io_bytes_total",
        ),
        ("cpu.utilization", G, "1", "cpu_utilization_ratio"),
        ("net.io.rate", G, "By/s", "net_io_rate_bytes_per_second"),
        ("packets.dropped", C, "{packets}", "packets_dropped_total"),
        ("go_goroutines", G, "", "go_goroutines"),
    ];
    for &(name, kind, unit, want) in table {
        assert_eq!(
            out(&run(&r, name, kind, unit)),
            want,
            "{name} ({kind}, {unit:?})"
        );
    }
}

/// The examples given inside the rules of NAMING.md.
#[test]
fn naming_md_rule_examples() {
    let plain = rules(&NormalizeConfig::default());
    let base = rules(&with_base_units());
    let cases: &[(&Rules, &str, MetricKind, &str, &str)] = &[
        // Rule 2.
        (&plain, "HTTPServerLatency", G, "", "http_server_latency"),
        (&plain, "HTTP2Server", G, "", "http2_server"),
        (&plain, "ipv4Packets", G, "", "ipv4_packets"),
        (&plain, "k8s", G, "", "k8s"),
        (&plain, "payment.café.orders", G, "", "payment_caf_orders"),
        // Rule 3.
        (
            &plain,
            "process_cpu_seconds_total",
            C,
            "s",
            "process_cpu_seconds_total",
        ),
        (&plain, "foo_subbytes", G, "By", "foo_subbytes_bytes"),
        (&plain, "net.io", G, "By/ms", "net_io_bytes_per_millisecond"),
        (&plain, "requests", G, "{requests}/s", "requests_per_second"),
        (&plain, "requests", G, "1/s", "requests_per_second"),
        (&plain, "ratio.on.counter", C, "1", "ratio_on_counter_total"),
        (&plain, "ratio.on.histogram", H, "1", "ratio_on_histogram"),
        (
            &plain,
            "fetch.latency.ms",
            G,
            "ms",
            "fetch_latency_milliseconds",
        ),
        (&base, "latency_milliseconds", G, "ms", "latency_seconds"),
        (&base, "fetch.latency.ms", G, "ms", "fetch_latency_seconds"),
        (&base, "net.io", G, "KiBy/s", "net_io_bytes_per_second"),
        (&base, "net.io", G, "By/ms", "net_io_bytes_per_second"),
        (&base, "cpu.share", G, "%", "cpu_share_percent"),
        // Rule 4.
        (&plain, "api_total_requests", C, "", "api_requests_total"),
        (&plain, "queue.messages.total", G, "", "queue_messages"),
        (
            &plain,
            "system.memory.total",
            G,
            "By",
            "system_memory_total_bytes",
        ),
        (
            &plain,
            "system.memory.total",
            U,
            "By",
            "system_memory_total_bytes",
        ),
        // Rule 5.
        (&plain, "go_info", G, "", "go_info"),
        (&plain, "go_info", C, "s", "go_info"),
        (&plain, "target_info", G, "1", "target_info"),
        // Rule 7.
        (&plain, "up", G, "", "up"),
        (&plain, "go_goroutines", G, "", "go_goroutines"),
        (&plain, "http_requests_total", C, "", "http_requests_total"),
    ];
    for &(r, name, kind, unit, want) in cases {
        assert_eq!(
            out(&run(r, name, kind, unit)),
            want,
            "{name} ({kind}, {unit:?})"
        );
    }
}

/// Rule 1: `exclude` keeps node_exporter's name for existing dashboards; without it the name is
/// normalized like any other.
#[test]
fn exclude_keeps_a_name_exactly() {
    let plain = rules(&NormalizeConfig::default());
    let name = "node_memory_MemAvailable_bytes";
    assert_eq!(
        out(&run(&plain, name, G, "By")),
        "node_memory_mem_available_bytes"
    );
    let cfg = parse("exclude: ['node_memory_.*']\nbase_units: true").unwrap();
    let n = run(&rules(&cfg), name, G, "KiBy");
    assert_eq!(out(&n), name);
    assert_eq!(n.unit, None, "the unit is left as it is");
    assert!(n.scale.is_one());
    assert!(n.reasons.is_empty());
    // Anchored: a pattern must match the whole name.
    let cfg = parse("exclude: ['node_memory']").unwrap();
    assert_eq!(
        out(&run(&rules(&cfg), name, G, "By")),
        "node_memory_mem_available_bytes"
    );
}

/// Rule 1: a rename or rewrite replaces the name the other rules start from (so the source form
/// is the user's); the unit, `_total` and domain rules still complete it, and normalizing the
/// result again changes nothing.
#[test]
fn renames_and_rewrites_win_over_the_source_form() {
    let cfg = parse(
        r#"
base_units: true
rename: { legacy.requests: legacy_requests_count, "x.y": "Renamed.Thing", "go_info": "build.info" }
rewrite:
  - { pattern: 'com\.acme\.(\w+)\.lat', replacement: 'acme.${1}.latency' }
  - { pattern: 'com\.acme\..*', replacement: 'acme.other' }
  - { pattern: 'junk\..*', replacement: '' }
on_failure: { replace: unnamed }
"#,
    )
    .unwrap();
    let r = rules(&cfg);
    let n = run(&r, "legacy.requests", C, "{requests}");
    assert_eq!(out(&n), "legacy_requests_count_total");
    assert!(n.reasons.contains(Reason::Rename));
    assert!(
        !n.reasons.contains(Reason::SourceForm),
        "the target is clean already"
    );
    assert_eq!(out(&run(&r, "x.y", G, "")), "renamed_thing");
    assert_eq!(out(&run(&r, "go_info", G, "1")), "build_info");
    let n = run(&r, "com.acme.checkout.lat", H, "ms");
    assert_eq!(out(&n), "acme_checkout_latency_seconds");
    assert_eq!(n.scale.factor(), 0.001);
    assert!(n.reasons.contains(Reason::Rewrite));
    assert_eq!(
        out(&run(&r, "com.acme.checkout.errors", C, "")),
        "acme_other_total",
        "the first match wins"
    );
    // Nothing left of a rewrite result is a failure (here replaced).
    assert_eq!(out(&run(&r, "junk.thing", G, "")), "unnamed");
    // Idempotent, also for renamed and rewritten names.
    for (name, kind, unit) in [
        ("legacy.requests", C, "{requests}"),
        ("com.acme.checkout.lat", H, "s"),
    ] {
        let once = out(&run(&r, name, kind, unit));
        assert_eq!(out(&run(&r, &once, kind, unit)), once);
    }
}

#[test]
fn config_errors_are_reported_with_their_cause() {
    let errs = parse(
        r#"
exclude: ['(']
rename: { a: "..." }
extra_domains: [Payments]
domain: { static: shop, from_attribute: service.namespace, pattern: '^[a-z]+-' }
on_failure: { replace: "Not Valid" }
cache_size: 0
"#,
    )
    .unwrap_err();
    let all = errs.join("\n");
    for want in [
        "exclude: invalid regex",
        "nothing of the new name remains after cleaning",
        "`Payments` does not follow the naming convention",
        "domain.pattern must have exactly one capture group",
        "domain.static excludes",
        "on_failure.replace",
        "cache_size must be above 0",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
    assert!(parse("colisions: drop").is_err(), "unknown keys are errors");
    let cfg = parse("{}").unwrap();
    assert_eq!(cfg.cache_size, 100_000);
    assert!(!cfg.base_units && !cfg.require_domain);
    assert_eq!(cfg.collisions, CollisionPolicy::Drop);
    assert_eq!(cfg.on_failure, OnFailure::Drop);
    assert_eq!(cfg.domain.default_domain(), "app");
}

// ---------------------------------------------------------------------------------------------
// The wider table.

/// (name, type, unit, base_units, expected name, expected value factor)
type Row = (
    &'static str,
    MetricKind,
    &'static str,
    bool,
    &'static str,
    f64,
);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // OpenTelemetry semantic conventions: HTTP.
    ("http.server.active_requests", U, "{request}", false, "http_server_active_requests", 1.0),
    ("http.client.request.duration", H, "s", false, "http_client_request_duration_seconds", 1.0),
    ("http.server.request.body.size", H, "By", false, "http_server_request_body_size_bytes", 1.0),
    ("http.client.open_connections", U, "{connection}", false, "http_client_open_connections", 1.0),
    ("http.server.duration", H, "ms", false, "http_server_duration_milliseconds", 1.0),
    ("http.server.duration", H, "ms", true, "http_server_duration_seconds", 0.001),
    // RPC.
    ("rpc.server.duration", H, "ms", true, "rpc_server_duration_seconds", 0.001),
    ("rpc.client.requests_per_rpc", H, "{count}", false, "rpc_client_requests_per_rpc", 1.0),
    ("rpc.server.request.size", H, "By", false, "rpc_server_request_size_bytes", 1.0),
    // DB.
    ("db.client.operation.duration", H, "s", false, "db_client_operation_duration_seconds", 1.0),
    ("db.client.connection.count", U, "{connection}", false, "db_client_connection_count", 1.0),
    ("db.client.connection.create_time", H, "s", false, "db_client_connection_create_time_seconds", 1.0),
    // JVM.
    ("jvm.gc.duration", H, "s", false, "jvm_gc_duration_seconds", 1.0),
    ("jvm.thread.count", U, "{thread}", false, "jvm_thread_count", 1.0),
    ("jvm.class.loaded", C, "{class}", false, "jvm_class_loaded_total", 1.0),
    ("jvm.cpu.recent_utilization", G, "1", false, "jvm_cpu_recent_utilization_ratio", 1.0),
    ("jvm.memory.committed", U, "By", false, "jvm_memory_committed_bytes", 1.0),
    ("jvm.cpu.time", C, "s", false, "jvm_cpu_time_seconds_total", 1.0),
    // Go (OpenTelemetry semantic conventions).
    ("go.memory.used", U, "By", false, "go_memory_used_bytes", 1.0),
    ("go.goroutine.count", U, "{goroutine}", false, "go_goroutine_count", 1.0),
    ("go.config.gogc", U, "%", false, "go_config_gogc_percent", 1.0),
    // Process.
    ("process.memory.usage", U, "By", false, "process_memory_usage_bytes", 1.0),
    ("process.cpu.utilization", G, "1", false, "process_cpu_utilization_ratio", 1.0),
    ("process.disk.io", C, "By", false, "process_disk_io_bytes_total", 1.0),
    ("process.open_file_descriptor.count", U, "{file_descriptor}", false, "process_open_file_descriptor_count", 1.0),
    ("process.thread.count", U, "{thread}", false, "process_thread_count", 1.0),
    // System and hardware.
    ("system.cpu.time", C, "s", false, "system_cpu_time_seconds_total", 1.0),
    ("system.memory.usage", U, "By", false, "system_memory_usage_bytes", 1.0),
    ("system.filesystem.utilization", G, "1", false, "system_filesystem_utilization_ratio", 1.0),
    ("system.disk.operations", C, "{operation}", false, "system_disk_operations_total", 1.0),
    ("system.cpu.frequency", G, "Hz", false, "system_cpu_frequency_hertz", 1.0),
    ("system.uptime", G, "s", false, "system_uptime_seconds", 1.0),
    ("hw.temperature", G, "Cel", false, "hw_temperature_celsius", 1.0),
    ("hw.power", G, "W", false, "hw_power_watts", 1.0),
    ("hw.energy", C, "J", false, "hw_energy_joules_total", 1.0),
    // Micrometer (base unit seconds for timers).
    ("http.server.requests", H, "s", false, "http_server_requests_seconds", 1.0),
    ("jvm.gc.pause", S, "s", false, "jvm_gc_pause_seconds", 1.0),
    ("logback.events", C, "{events}", false, "logback_events_total", 1.0),
    ("tomcat.sessions.active.current", G, "{sessions}", false, "tomcat_sessions_active_current", 1.0),
    ("hikaricp.connections.usage", H, "ms", true, "hikaricp_connections_usage_seconds", 0.001),
    // Dropwizard.
    ("com.example.Foo.requests.count", C, "", false, "com_example_foo_requests_count_total", 1.0),
    ("com.example.Foo.requests.m1_rate", G, "", false, "com_example_foo_requests_m1_rate", 1.0),
    ("com.example.Api.latency.p99", G, "ms", false, "com_example_api_latency_p99_milliseconds", 1.0),
    ("org.eclipse.jetty.server.handler.StatisticsHandler.requests", C, "", false, "org_eclipse_jetty_server_handler_statistics_handler_requests_total", 1.0),
    ("jvm.memory.heap.usage", G, "1", false, "jvm_memory_heap_usage_ratio", 1.0),
    // Go runtime/metrics, one of each unit kind.
    ("/gc/cycles/total:gc-cycles", C, "", false, "go_gc_cycles_total", 1.0),
    ("/sched/latencies:seconds", H, "", false, "go_sched_latencies_seconds", 1.0),
    ("/memory/classes/heap/objects:bytes", G, "", false, "go_memory_classes_heap_objects_bytes", 1.0),
    ("/cpu/classes/gc/total:cpu-seconds", C, "", false, "go_cpu_classes_gc_cpu_seconds_total", 1.0),
    ("/gc/heap/allocs:objects", C, "", false, "go_gc_heap_allocs_objects_total", 1.0),
    ("/sched/gomaxprocs:threads", G, "", false, "go_sched_gomaxprocs_threads", 1.0),
    ("/gc/gogc:percent", G, "", false, "go_gc_gogc_percent", 1.0),
    ("/godebug/non-default-behavior/http2client:events", C, "", false, "go_godebug_non_default_behavior_http2client_events_total", 1.0),
    ("/sync/mutex/wait/total:seconds", C, "", false, "go_sync_mutex_wait_seconds_total", 1.0),
    ("/gc/pauses:seconds", H, "", false, "go_gc_pauses_seconds", 1.0),
    ("/cgo/go-to-c-calls:calls", C, "", false, "go_cgo_go_to_c_calls_total", 1.0),
    ("/gc/heap/goal:bytes", G, "By", true, "go_gc_heap_goal_bytes", 1.0),
    // Already Prometheus-style: unchanged.
    ("up", G, "", false, "up", 1.0),
    ("go_goroutines", G, "", false, "go_goroutines", 1.0),
    ("http_requests_total", C, "", false, "http_requests_total", 1.0),
    ("process_resident_memory_bytes", G, "By", false, "process_resident_memory_bytes", 1.0),
    ("node_cpu_seconds_total", C, "s", false, "node_cpu_seconds_total", 1.0),
    ("prometheus_tsdb_head_series", G, "", false, "prometheus_tsdb_head_series", 1.0),
    ("http_request_duration_seconds", H, "s", true, "http_request_duration_seconds", 1.0),
    // Every unit of the table, and base_units.
    ("job.wait", G, "min", false, "job_wait_minutes", 1.0),
    ("job.wait", G, "min", true, "job_wait_seconds", 60.0),
    ("job.age", G, "h", true, "job_age_seconds", 3600.0),
    ("cert.validity", G, "d", false, "cert_validity_days", 1.0),
    ("cert.validity", G, "d", true, "cert_validity_seconds", 86400.0),
    ("gc.pause", H, "us", true, "gc_pause_seconds", 1e-6),
    ("gc.pause", H, "ns", true, "gc_pause_seconds", 1e-9),
    ("gc.pause", H, "ns", false, "gc_pause_nanoseconds", 1.0),
    ("cache.size", G, "KiBy", false, "cache_size_kibibytes", 1.0),
    ("cache.size", G, "KiBy", true, "cache_size_bytes", 1024.0),
    ("cache.size", G, "MiBy", true, "cache_size_bytes", 1048576.0),
    ("disk.size", G, "GiBy", false, "disk_size_gibibytes", 1.0),
    ("disk.size", G, "TiBy", false, "disk_size_tebibytes", 1.0),
    ("disk.size", G, "kBy", true, "disk_size_bytes", 1000.0),
    ("disk.size", G, "KBy", false, "disk_size_kilobytes", 1.0),
    ("disk.size", G, "MBy", false, "disk_size_megabytes", 1.0),
    ("disk.size", G, "GBy", true, "disk_size_bytes", 1e9),
    ("disk.size", G, "TBy", false, "disk_size_terabytes", 1.0),
    ("disk.size.kb", G, "kBy", false, "disk_size_kilobytes", 1.0),
    ("disk.size.kb", G, "kBy", true, "disk_size_bytes", 1000.0),
    ("latency_ms", G, "ms", false, "latency_milliseconds", 1.0),
    ("latency.milliseconds", G, "ms", true, "latency_seconds", 0.001),
    ("latency_ms_total", C, "ms", true, "latency_seconds_total", 0.001),
    ("battery.voltage", G, "V", false, "battery_voltage_volts", 1.0),
    ("battery.current", G, "A", false, "battery_current_amperes", 1.0),
    ("distance", G, "m", false, "distance_meters", 1.0),
    ("flour.mass", G, "g", false, "flour_mass_grams", 1.0),
    ("net.io", C, "By/s", false, "net_io_bytes_per_second_total", 1.0),
    ("net.io.rate", G, "By/ms", true, "net_io_rate_bytes_per_second", 1000.0),
    ("net.io.rate", G, "KiBy/s", true, "net_io_rate_bytes_per_second", 1024.0),
    ("arrivals", G, "{packets}/min", true, "arrivals_per_second", 1.0 / 60.0),
    ("arrivals", G, "{packets}/min", false, "arrivals_per_minute", 1.0),
    ("queue.depth", G, "{messages}", false, "queue_depth", 1.0),
    ("queue.depth", G, "requests", false, "queue_depth_requests", 1.0),
    // Exponential histograms are never rescaled: the unit stays as it is.
    ("rpc.server.duration", E, "ms", true, "rpc_server_duration_milliseconds", 1.0),
    ("rpc.server.duration", E, "s", true, "rpc_server_duration_seconds", 1.0),
    // `_total`.
    ("jobs.total", C, "", false, "jobs_total", 1.0),
    ("jobs.total.total", C, "", false, "jobs_total", 1.0),
    ("jobs", U, "", false, "jobs", 1.0),
    ("jobs_total", U, "", false, "jobs", 1.0),
    ("request.total", H, "s", false, "request_total_seconds", 1.0),
    ("total", G, "", false, "total", 1.0),
    // Info metrics.
    ("build.info", C, "", false, "build_info", 1.0),
    ("buildInfo", G, "1", false, "build_info", 1.0),
    // Source forms.
    ("XMLHttpRequest.count", G, "", false, "xml_http_request_count", 1.0),
    ("myAPIVersion", G, "", false, "my_api_version", 1.0),
    ("K8SPods", G, "", false, "k8s_pods", 1.0),
    ("ipv4TCPSegments", C, "", false, "ipv4_tcp_segments_total", 1.0),
    ("IPv4", G, "", false, "i_pv4", 1.0),
    ("k8s.pod.cpu.time", C, "s", false, "k8s_pod_cpu_time_seconds_total", 1.0),
    ("foo--bar  baz", G, "", false, "foo_bar_baz", 1.0),
    ("__foo__bar__", G, "", false, "foo_bar", 1.0),
    ("app:request_latency:rate5m", G, "", false, "app_request_latency_rate5m", 1.0),
    ("a/b/c", G, "", false, "a_b_c", 1.0),
    ("日本.requests", C, "", false, "requests_total", 1.0),
    ("Payment Orders (EUR)", G, "", false, "payment_orders_eur", 1.0),
    // A leading digit always gets the domain.
    ("5xx.errors", C, "", false, "app_5xx_errors_total", 1.0),
    ("2fa.attempts", C, "{attempts}", false, "app_2fa_attempts_total", 1.0),
    // Failures (default: drop).
    ("日本", G, "", false, "dropped:invalid_name", 1.0),
    ("...", G, "s", false, "dropped:invalid_name", 1.0),
    ("", C, "", false, "dropped:invalid_name", 1.0),
];

#[test]
fn table_of_names() {
    assert!(TABLE.len() >= 60 + 11);
    let plain = rules(&NormalizeConfig::default());
    let base = rules(&with_base_units());
    let mut failures = Vec::new();
    for &(name, kind, unit, base_units, want, factor) in TABLE {
        let r = if base_units { &base } else { &plain };
        let n = run(r, name, kind, unit);
        let got = out(&n);
        let got_factor = n.scale.factor();
        if got != want || (got_factor - factor).abs() > factor * 1e-12 {
            failures.push(format!(
                "{name} ({kind}, {unit:?}, base_units={base_units}): got {got} x{got_factor}, want {want} x{factor}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// What the exporters do after normalize: their OTel -> Prometheus naming leaves every normalized
/// name as it is, given the unit normalize writes (only `_total` on an info counter would be
/// added: the exporters' rule, not the unit's).
#[test]
fn exporters_leave_normalized_names_unchanged() {
    let plain = rules(&NormalizeConfig::default());
    let base = rules(&with_base_units());
    for &(name, kind, unit, base_units, _, _) in TABLE {
        let r = if base_units { &base } else { &plain };
        let n = run(r, name, kind, unit);
        let Ok(normalized) = &n.name else { continue };
        let written = n.unit.clone().unwrap_or_else(|| unit.to_string());
        let translated = metric_name(normalized, &written, kind.name_kind(), true).unwrap();
        if kind == C && is_info(normalized) {
            assert_eq!(translated, format!("{normalized}_total"));
            continue;
        }
        assert_eq!(
            &translated, normalized,
            "{name} ({kind}, {unit:?}) -> {normalized} in {written:?}"
        );
    }
}

#[test]
fn the_unit_written_is_the_base_unit_or_one_the_name_carries() {
    let base = rules(&with_base_units());
    let plain = rules(&NormalizeConfig::default());
    let unit = |r: &Rules, name, kind, unit| run(r, name, kind, unit).unit;
    assert_eq!(unit(&base, "a", H, "ms").as_deref(), Some("s"));
    assert_eq!(unit(&base, "a", G, "KiBy/s").as_deref(), Some("By/s"));
    assert_eq!(unit(&base, "a", G, "{req}/ms").as_deref(), Some("{req}/s"));
    assert_eq!(unit(&plain, "a", H, "ms"), None, "kept");
    assert_eq!(
        unit(&plain, "/gc/heap/allocs:bytes", C, "").as_deref(),
        Some("By")
    );
    assert_eq!(
        unit(&plain, "/sched/latencies:seconds", H, "").as_deref(),
        Some("s")
    );
    assert_eq!(
        unit(&plain, "/gc/heap/allocs:objects", C, "").as_deref(),
        Some("{objects}")
    );
    assert_eq!(
        unit(&plain, "target_info", G, "1").as_deref(),
        Some(""),
        "info: no unit"
    );
    assert_eq!(
        unit(&base, "a", E, "ms"),
        None,
        "exponential histogram: unconverted"
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 6: domains.

#[test]
fn require_domain_with_a_static_or_default_domain() {
    let cfg = parse("require_domain: true").unwrap();
    let r = rules(&cfg);
    assert_eq!(
        out(&run(&r, "orders.created", C, "")),
        "app_orders_created_total"
    );
    assert_eq!(
        out(&run(&r, "app_orders_created_total", C, "")),
        "app_orders_created_total"
    );
    assert_eq!(
        out(&run(&r, "http.server.request.duration", H, "s")),
        "http_server_request_duration_seconds"
    );
    assert_eq!(
        out(&run(&r, "/gc/heap/allocs:bytes", C, "")),
        "go_gc_heap_allocs_bytes_total"
    );
    assert_eq!(out(&run(&r, "up", G, "")), "up");
    assert_eq!(
        out(&run(&r, "gen_ai.client.token.usage", H, "{token}")),
        "gen_ai_client_token_usage"
    );
    // Segments are counted before the unit and type suffixes.
    assert_eq!(out(&run(&r, "seconds", H, "s")), "app_seconds");
    assert_eq!(out(&run(&r, "total", C, "")), "app_total");

    let cfg =
        parse("require_domain: true\nextra_domains: [payment]\ndomain: { static: shop }").unwrap();
    let r = rules(&cfg);
    assert_eq!(out(&run(&r, "payment.orders", G, "")), "payment_orders");
    assert_eq!(
        out(&run(&r, "orders.created", C, "")),
        "shop_orders_created_total"
    );
    assert_eq!(
        out(&run(&r, "shop_orders_created_total", C, "")),
        "shop_orders_created_total"
    );
    assert_eq!(out(&run(&r, "9lives", G, "")), "shop_9lives");

    let cfg =
        parse("require_domain: true\nknown_domains: [billing]\ndomain: { default: misc }").unwrap();
    let r = rules(&cfg);
    assert_eq!(
        out(&run(&r, "http.requests", C, "")),
        "misc_http_requests_total",
        "the list was replaced"
    );
    assert_eq!(
        out(&run(&r, "billing.invoices", C, "")),
        "billing_invoices_total"
    );
}

#[test]
fn a_leading_digit_gets_the_domain_without_require_domain() {
    let cfg = parse("domain: { static: edge }").unwrap();
    assert_eq!(
        out(&run(&rules(&cfg), "5xx.errors", C, "")),
        "edge_5xx_errors_total"
    );
    assert_eq!(
        out(&run(&rules(&cfg), "errors.5xx", C, "")),
        "errors_5xx_total"
    );
}

// ---------------------------------------------------------------------------------------------
// Rule 9: failures.

#[test]
fn failures_drop_or_use_the_replacement() {
    let r = rules(&parse("on_failure: { replace: unnamed_metric }").unwrap());
    let n = run(&r, "日本", C, "s");
    assert_eq!(
        out(&n),
        "unnamed_metric_seconds_total",
        "the unit and type rules still apply"
    );
    assert!(n.reasons.contains(Reason::Replace));
    let r = rules(&NormalizeConfig::default());
    assert_eq!(run(&r, "---", G, "").name, Err(drop_reason::INVALID_NAME));
}

// ---------------------------------------------------------------------------------------------
// `explain`.

#[test]
fn explain_lists_the_rules_that_fired_and_ends_with_the_name() {
    let e = explain(&with_base_units(), "http.server.request.duration", H, "ms").unwrap();
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last(),
        Some(&"http_server_request_duration_seconds (value factor 0.001)")
    );
    assert!(lines[0].starts_with("rule 2 (source form)"), "{text}");
    assert!(
        lines.iter().any(|l| l.starts_with("rule 3 (base_units)")),
        "{text}"
    );
    assert_eq!(
        e.steps.len(),
        lines.len() - 1,
        "one line per rule that fired"
    );

    let e = explain(&NormalizeConfig::default(), "go_goroutines", G, "").unwrap();
    assert_eq!(e.to_string().lines().last(), Some("go_goroutines"));
    assert_eq!(e.steps[0].rule, 7);

    let e = explain(&NormalizeConfig::default(), "日本", G, "").unwrap();
    assert_eq!(e.result_line(), "dropped (invalid_name)");
    assert_eq!(e.steps.last().unwrap().rule, 9);

    let e = explain(&NormalizeConfig::default(), "queue.messages.total", G, "").unwrap();
    let rules: Vec<u8> = e.steps.iter().map(|s| s.rule).collect();
    assert_eq!(rules, [2, 4]);
}

// ---------------------------------------------------------------------------------------------
// Label keys.

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

fn kv_int(k: &str, v: i64) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(v)),
        }),
    }
}

fn clean_keys(mut attrs: Vec<KeyValue>) -> Vec<KeyValue> {
    let mut cache = KeyCache::new(1000);
    labels::clean(
        &mut attrs,
        &mut cache,
        &mut Vec::new(),
        &mut Default::default(),
    );
    attrs
}

fn pairs(attrs: &[KeyValue]) -> Vec<(String, String)> {
    attrs
        .iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map(labels::text).unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn label_keys_are_cleaned_and_values_kept() {
    let got = clean_keys(vec![
        kv("serviceDomain", "Payments.EU"),
        kv("http.request.method", "GET"),
        kv("__reserved", "x"),
        kv("_private", "y"),
        kv("5xx", "z"),
        kv("ok_key", "Mixed Case Value"),
        kv("日本", "dropped"),
        kv_int("k8s.pod.restarts", 3),
    ]);
    let want = [
        ("service_domain", "Payments.EU"),
        ("http_request_method", "GET"),
        ("reserved", "x"),
        ("private", "y"),
        ("key_5xx", "z"),
        ("ok_key", "Mixed Case Value"),
        ("k8s_pod_restarts", "3"),
    ];
    assert_eq!(
        pairs(&got),
        want.map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(
        matches!(
            got[6].value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(3))
        ),
        "a single value keeps its type"
    );
}

#[test]
fn colliding_label_keys_join_their_values_in_bytewise_key_order() {
    let got = clean_keys(vec![
        kv("service_domain", "b"),
        kv("other", "o"),
        kv("serviceDomain", "a"),
        kv("service.domain", "c"),
        kv_int("service-domain", 7),
    ]);
    // Bytewise: "service-domain" < "service.domain" < "serviceDomain" < "service_domain".
    assert_eq!(
        pairs(&got),
        [
            ("service_domain".to_string(), "7;c;a;b".to_string()),
            ("other".to_string(), "o".to_string())
        ]
    );
    let untouched = vec![kv("a", "1"), kv("b_c", "2")];
    assert_eq!(clean_keys(untouched.clone()), untouched);
}

// ---------------------------------------------------------------------------------------------
// Property tests.

fn kind_strategy() -> impl Strategy<Value = MetricKind> {
    proptest::sample::select(MetricKind::ALL.to_vec())
}

fn unit_strategy() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(vec![
        "",
        "s",
        "ms",
        "us",
        "ns",
        "min",
        "h",
        "d",
        "By",
        "KiBy",
        "kBy",
        "MiBy",
        "GBy",
        "1",
        "%",
        "Cel",
        "Hz",
        "{packets}",
        "By/s",
        "By/ms",
        "KiBy/s",
        "1/s",
        "{req}/min",
        "requests",
        "gc-cycles",
        "m",
        "s/By",
    ])
}

/// Names in every source form: dotted, camelCase, separators, digits, `total` / `info` / unit
/// words as segments, non-ASCII, Go paths.
fn name_strategy() -> impl Strategy<Value = String> {
    let word = proptest::sample::select(vec![
        "http",
        "Server",
        "requestDuration",
        "total",
        "info",
        "ms",
        "seconds",
        "bytes",
        "ratio",
        "kib",
        "per",
        "second",
        "HTTP2",
        "ipv4",
        "K8S",
        "5xx",
        "9",
        "café",
        "日本",
        "",
        "_",
        "go",
        "app",
        "milliseconds",
        "kibibytes",
    ]);
    let sep = proptest::sample::select(vec![".", "_", "-", " ", ":", "/", "__", ""]);
    (
        proptest::collection::vec((word, sep), 1..6),
        proptest::bool::ANY,
    )
        .prop_map(|(parts, go)| {
            let mut s: String = parts.iter().map(|(w, s)| format!("{w}{s}")).collect();
            if go {
                s = format!("/{}:{}", s.replace(':', "/"), "bytes");
            }
            s
        })
}

fn config_strategy() -> impl Strategy<Value = NormalizeConfig> {
    (
        proptest::bool::ANY,
        proptest::bool::ANY,
        proptest::bool::ANY,
    )
        .prop_map(|(b, d, replace)| NormalizeConfig {
            base_units: b,
            require_domain: d,
            on_failure: if replace {
                parse("on_failure: { replace: unnamed }")
                    .unwrap()
                    .on_failure
            } else {
                OnFailure::Drop
            },
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10000))]

    /// Rule 7: normalizing a normalized name, with the same type and unit, changes nothing (a Go
    /// path's unit is in its name; its OTLP unit is empty here).
    #[test]
    fn normalizing_twice_changes_nothing(
        name in name_strategy(), kind in kind_strategy(), unit in unit_strategy(),
        cfg in config_strategy(),
    ) {
        let unit = if name.starts_with('/') { "" } else { unit };
        let r = rules(&cfg);
        let once = run(&r, &name, kind, unit);
        if let Ok(first) = &once.name {
            let twice = run(&r, first, kind, unit);
            prop_assert_eq!(twice.name.as_ref(), Ok(first), "{} ({}, {:?})", name, kind, unit);
        }
    }

    /// The output follows the convention, or the metric is dropped with a reason.
    #[test]
    fn output_follows_the_grammar_or_is_dropped(
        name in name_strategy(), kind in kind_strategy(), unit in unit_strategy(),
        cfg in config_strategy(),
    ) {
        let r = rules(&cfg);
        let n = run(&r, &name, kind, unit);
        match &n.name {
            Ok(out) => {
                prop_assert!(is_conforming(out), "{:?} -> {:?}", name, out);
                let written = n.unit.clone().unwrap_or_else(|| unit.to_string());
                let translated = metric_name(out, &written, kind.name_kind(), true).unwrap();
                if !(kind == C && is_info(out)) {
                    prop_assert_eq!(&translated, out, "exporter changed it; unit {:?}", written);
                }
            }
            Err(reason) => prop_assert_eq!(*reason, drop_reason::INVALID_NAME),
        }
    }

    /// The processor leaves the domain out of a cache key only where it cannot change the name.
    #[test]
    fn the_domain_is_in_the_cache_key_where_it_matters(
        name in name_strategy(), kind in kind_strategy(), unit in unit_strategy(),
    ) {
        let r = rules(&NormalizeConfig::default());
        let with = |domain| r.name(Input { name: &name, kind, unit, domain }, &mut Trace::off());
        if with("one").name != with("two").name {
            prop_assert!(r.domain_matters(&name), "{:?}", name);
        }
    }

    /// Label values are never rewritten: each output value is its input value, or, for keys that
    /// collide after cleaning, the input values joined with `;` in bytewise order of the keys.
    #[test]
    fn label_values_never_change(
        attrs in proptest::collection::vec(
            (name_strategy(), "[a-zA-Z0-9 .;=-]{0,8}"), 0..8)
    ) {
        let input: Vec<KeyValue> = attrs.iter().map(|(k, v)| kv(k, v)).collect();
        let got = clean_keys(input.clone());
        // The model: group by cleaned key in first-occurrence order.
        let mut want: Vec<(String, Vec<(String, String)>)> = Vec::new();
        for a in &input {
            let key = if is_conforming(&a.key) { Some(a.key.clone()) } else { label_key(&a.key) };
            let Some(key) = key else { continue };
            let v = (a.key.clone(), labels::text(a.value.as_ref().unwrap()));
            match want.iter_mut().find(|(k, _)| *k == key) {
                Some((_, vs)) => vs.push(v),
                None => want.push((key, vec![v])),
            }
        }
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(k, mut vs)| {
                vs.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
                (k, vs.into_iter().map(|(_, v)| v).collect::<Vec<_>>().join(";"))
            })
            .collect();
        prop_assert_eq!(pairs(&got), want);
        for a in &got {
            prop_assert!(is_conforming(&a.key), "{:?}", a.key);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The processor.

const PROCESSOR: &str = "normalize/test";
const PIPELINE: &str = "metrics/test";

struct Setup {
    p: Arc<dyn Processor>,
    next: Arc<Capture>,
    telemetry: Arc<Telemetry>,
}

impl Setup {
    fn new(cfg: NormalizeConfig) -> Setup {
        let next = Capture::new();
        let telemetry = Arc::new(Telemetry::new());
        let p = cfg
            .build(ProcessorContext {
                id: ComponentId::parse(PROCESSOR).unwrap(),
                pipeline: PIPELINE.into(),
                next: next.clone(),
                telemetry: telemetry.clone(),
            })
            .unwrap();
        Setup { p, next, telemetry }
    }

    fn value(&self, name: &str, reason: Option<&str>) -> f64 {
        let mut labels = vec![("processor", PROCESSOR), ("pipeline", PIPELINE)];
        if let Some(r) = reason {
            labels.push(("reason", r));
        }
        self.telemetry.value(name, &labels)
    }
    fn rewrites(&self, reason: &str) -> f64 {
        self.value("sluice_processor_normalize_rewrites_total", Some(reason))
    }
    fn dropped(&self, reason: &str) -> f64 {
        self.value("sluice_processor_dropped_points_total", Some(reason))
    }
    fn hits(&self) -> f64 {
        self.value("sluice_processor_normalize_cache_hits_total", None)
    }
    fn misses(&self) -> f64 {
        self.value("sluice_processor_normalize_cache_misses_total", None)
    }
    fn evictions(&self) -> f64 {
        self.value("sluice_processor_normalize_cache_evictions_total", None)
    }
    fn entries(&self) -> f64 {
        self.value("sluice_processor_normalize_cache_entries", None)
    }

    /// Sends one batch and returns the metrics that came out (all resources and scopes).
    fn send(&self, batch: Batch) -> Vec<Metric> {
        self.p.consume(batch).unwrap();
        self.next
            .take()
            .into_iter()
            .flat_map(|b| b.resource_metrics)
            .flat_map(|rm| rm.scope_metrics)
            .flat_map(|sm| sm.metrics)
            .collect()
    }
}

fn batch(tenant: Option<&str>, resource: &[(&str, &str)], metrics: Vec<Metric>) -> Batch {
    Batch::new(
        Context {
            tenant: tenant.map(Arc::from),
            ..Default::default()
        },
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
}

fn metric(name: &str, unit: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    }
}

fn number(v: number_data_point::Value, attrs: &[(&str, &str)]) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
        value: Some(v),
        time_unix_nano: 1,
        ..Default::default()
    }
}

fn gauge(values: &[f64], attrs: &[(&str, &str)]) -> Data {
    Data::Gauge(Gauge {
        data_points: values
            .iter()
            .map(|v| number(number_data_point::Value::AsDouble(*v), attrs))
            .collect(),
    })
}

fn counter(values: &[i64]) -> Data {
    Data::Sum(Sum {
        data_points: values
            .iter()
            .map(|v| number(number_data_point::Value::AsInt(*v), &[]))
            .collect(),
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: true,
    })
}

fn histogram(bounds: &[f64], sum: f64) -> Data {
    Data::Histogram(Histogram {
        data_points: vec![HistogramDataPoint {
            attributes: vec![kv("http.route", "/api/{id}")],
            count: 3,
            sum: Some(sum),
            bucket_counts: vec![1; bounds.len() + 1],
            explicit_bounds: bounds.to_vec(),
            min: Some(1.0),
            max: Some(2500.0),
            exemplars: vec![Exemplar {
                value: Some(exemplar::Value::AsDouble(250.0)),
                filtered_attributes: vec![kv("traceFlags", "1")],
                ..Default::default()
            }],
            ..Default::default()
        }],
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
    })
}

fn double(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        ref other => panic!("expected a double, got {other:?}"),
    }
}

fn points(m: &Metric) -> &[NumberDataPoint] {
    match m.data.as_ref().unwrap() {
        Data::Gauge(g) => &g.data_points,
        Data::Sum(s) => &s.data_points,
        other => panic!("not a number metric: {other:?}"),
    }
}

/// A batch is rewritten: names, units, values (histogram bounds, sum, min, max, exemplars; ints
/// become doubles when scaled), label keys; the telemetry counts rewrites by rule, and the second
/// identical batch is answered from the cache.
#[test]
fn a_batch_is_rewritten_scaled_and_counted() {
    let s = Setup::new(with_base_units());
    let make = || {
        batch(
            Some("acme"),
            &[("service.name", "checkout")],
            vec![
                metric(
                    "http.server.request.duration",
                    "ms",
                    histogram(&[5.0, 10.0, 250.0, 1000.0], 1265.0),
                ),
                metric(
                    "cache.size",
                    "KiBy",
                    gauge(&[2.0, 0.5], &[("cacheName", "sessions")]),
                ),
                metric("net.read", "KiBy", counter(&[3, 4])),
                metric("go_goroutines", "", gauge(&[12.0], &[("job", "x")])),
                metric("net.io.rate", "By/ms", gauge(&[1.5], &[])),
            ],
        )
    };
    let got = s.send(make());
    let names: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "http_server_request_duration_seconds",
            "cache_size_bytes",
            "net_read_bytes_total",
            "go_goroutines",
            "net_io_rate_bytes_per_second"
        ]
    );
    let units: Vec<&str> = got.iter().map(|m| m.unit.as_str()).collect();
    assert_eq!(units, ["s", "By", "By", "", "By/s"]);

    let Some(Data::Histogram(h)) = &got[0].data else {
        panic!()
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, [0.005, 0.01, 0.25, 1.0]);
    assert_eq!(p.sum, Some(1.265));
    assert_eq!((p.min, p.max), (Some(0.001), Some(2.5)));
    assert_eq!(p.bucket_counts, [1; 5], "counts are not values");
    assert_eq!(p.count, 3);
    assert_eq!(p.exemplars[0].value, Some(exemplar::Value::AsDouble(0.25)));
    assert_eq!(p.attributes, [kv("http_route", "/api/{id}")]);
    assert_eq!(p.exemplars[0].filtered_attributes, [kv("trace_flags", "1")]);

    assert_eq!(
        points(&got[1]).iter().map(double).collect::<Vec<_>>(),
        [2048.0, 512.0]
    );
    assert_eq!(
        points(&got[1])[0].attributes,
        [kv("cache_name", "sessions")]
    );
    assert_eq!(
        points(&got[2]).iter().map(double).collect::<Vec<_>>(),
        [3072.0, 4096.0]
    );
    assert_eq!(
        points(&got[3])[0].value,
        Some(number_data_point::Value::AsDouble(12.0))
    );
    assert_eq!(double(&points(&got[4])[0]), 1500.0);

    // Points counted once under each rule that changed them.
    assert_eq!(s.rewrites("source_form"), 1.0 + 2.0 + 2.0 + 1.0);
    assert_eq!(s.rewrites("unit"), 1.0 + 2.0 + 2.0 + 1.0);
    assert_eq!(s.rewrites("base_unit"), 1.0 + 2.0 + 2.0 + 1.0);
    assert_eq!(s.rewrites("total"), 2.0);
    assert_eq!(s.rewrites("label_key"), 1.0 + 2.0);
    assert_eq!(s.rewrites("domain"), 0.0);
    assert_eq!(s.misses(), 5.0 + 3.0, "five names, three label keys");
    assert_eq!(s.hits(), 1.0, "`cacheName` the second time");

    let again = s.send(make());
    assert_eq!(again, got, "deterministic");
    assert_eq!(s.misses(), 8.0, "nothing computed again");
    assert_eq!(s.hits(), 1.0 + 5.0 + 4.0);
    assert_eq!(s.evictions(), 0.0);
    assert_eq!(s.entries(), 8.0);
}

/// Summaries scale sum and quantile values; exponential histograms are never rescaled (their unit
/// stays); StaleNaN markers survive scaling bit for bit; delta counters are counters.
#[test]
fn summaries_exponential_histograms_and_stale_markers() {
    let s = Setup::new(with_base_units());
    let stale = f64::from_bits(sluice_core::prometheus::STALE_NAN);
    let got = s.send(batch(
        None,
        &[],
        vec![
            metric(
                "rpc.latency",
                "ms",
                Data::Summary(Summary {
                    data_points: vec![SummaryDataPoint {
                        count: 2,
                        sum: 30.0,
                        quantile_values: vec![summary_data_point::ValueAtQuantile {
                            quantile: 0.99,
                            value: 20.0,
                        }],
                        ..Default::default()
                    }],
                }),
            ),
            metric(
                "rpc.latency.exp",
                "ms",
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: vec![ExponentialHistogramDataPoint {
                        count: 1,
                        sum: Some(7.0),
                        scale: 3,
                        ..Default::default()
                    }],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
            metric("gc.pause", "ms", gauge(&[stale, 5.0], &[])),
            metric(
                "jobs.done",
                "",
                Data::Sum(Sum {
                    data_points: vec![number(number_data_point::Value::AsInt(1), &[])],
                    aggregation_temporality: AggregationTemporality::Delta as i32,
                    is_monotonic: true,
                }),
            ),
        ],
    ));
    assert_eq!(got[0].name, "rpc_latency_seconds");
    let Some(Data::Summary(sm)) = &got[0].data else {
        panic!()
    };
    assert_eq!(sm.data_points[0].sum, 0.03);
    assert_eq!(sm.data_points[0].quantile_values[0].value, 0.02);
    assert_eq!(sm.data_points[0].quantile_values[0].quantile, 0.99);

    assert_eq!(got[1].name, "rpc_latency_exp_milliseconds");
    assert_eq!(got[1].unit, "ms");
    let Some(Data::ExponentialHistogram(eh)) = &got[1].data else {
        panic!()
    };
    assert_eq!(eh.data_points[0].sum, Some(7.0));

    assert_eq!(got[2].name, "gc_pause_seconds");
    assert!(is_stale_nan(double(&points(&got[2])[0])));
    assert_eq!(double(&points(&got[2])[1]), 0.005);

    assert_eq!(got[3].name, "jobs_done_total");
}

/// Rule 8 with the default policy: the first mapping of a name in a tenant wins; a later input
/// with another type or unit is dropped, counted and logged; other tenants are not affected; the
/// same meaning under two spellings is not a collision.
#[test]
fn collisions_drop_the_later_meaning_per_tenant() {
    let s = Setup::new(NormalizeConfig::default());
    let first = vec![
        metric("queue.messages.total", "", gauge(&[1.0], &[])),
        metric("queue.messages", "", gauge(&[2.0], &[])),
    ];
    let got = s.send(batch(Some("acme"), &[], first));
    assert_eq!(got.len(), 2, "same type and unit: one meaning");
    let later = || {
        vec![
            metric(
                "queue.messages",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint::default(); 3],
                    ..Default::default()
                }),
            ),
            metric("latency", "s", gauge(&[1.0], &[])),
            metric("latency_seconds", "", gauge(&[1.0], &[])),
        ]
    };
    let got = s.send(batch(Some("acme"), &[], later()));
    let names: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["latency_seconds"],
        "the histogram and the unitless latency are dropped"
    );
    assert_eq!(s.dropped("collision"), 3.0 + 1.0);
    let got = s.send(batch(Some("globex"), &[], later()));
    assert_eq!(
        got.len(),
        2,
        "another tenant: `queue_messages` is free, latency collides"
    );
    assert_eq!(s.dropped("collision"), 4.0 + 1.0);
}

/// Rule 8 with `collisions: keep`: the later meaning gets a type-qualified name.
#[test]
fn collisions_keep_under_a_type_qualified_name() {
    let s = Setup::new(parse("collisions: keep").unwrap());
    let got = s.send(batch(
        None,
        &[],
        vec![
            metric("queue.messages", "", gauge(&[1.0], &[])),
            metric(
                "queue.messages.total",
                "",
                Data::Histogram(Histogram {
                    data_points: vec![HistogramDataPoint::default()],
                    ..Default::default()
                }),
            ),
            metric("jobs", "", counter(&[1])),
            metric("jobs_total", "{jobs}", counter(&[1])),
            metric("jobs.total", "By", counter(&[1])),
            metric("cpu.usage", "1", gauge(&[0.5], &[])),
            metric("cpu_usage_ratio", "1", gauge(&[0.5], &[])),
        ],
    ));
    let names: Vec<&str> = got.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "queue_messages",
            "queue_messages_histogram",
            "jobs_total",
            "jobs_total",
            "jobs_bytes_total",
            "cpu_usage_ratio",
            "cpu_usage_ratio"
        ]
    );
    assert_eq!(s.rewrites("collision"), 1.0);
    assert_eq!(s.dropped("collision"), 0.0);
}

/// Rule 6 with the domain from a resource attribute, from a pattern over `service.name`, and the
/// default when neither gives one.
#[test]
fn domains_from_resources() {
    let by_attr = Setup::new(
        parse("require_domain: true\ndomain: { from_attribute: service.namespace, pattern: '^([a-z]+)-' }")
            .unwrap(),
    );
    let send = |s: &Setup, res: &[(&str, &str)], name: &str| {
        s.send(batch(None, res, vec![metric(name, "", counter(&[1]))]))[0]
            .name
            .clone()
    };
    assert_eq!(
        send(&by_attr, &[("service.namespace", "Payment-Team")], "orders"),
        "payment_team_orders_total"
    );
    assert_eq!(
        send(&by_attr, &[("service.name", "billing-api")], "orders"),
        "billing_orders_total"
    );
    assert_eq!(
        send(
            &by_attr,
            &[("service.namespace", "???"), ("service.name", "NOPE")],
            "orders"
        ),
        "app_orders_total"
    );
    assert_eq!(
        send(
            &by_attr,
            &[("service.namespace", "payment_team")],
            "payment_team_orders_total"
        ),
        "payment_team_orders_total",
        "idempotent for the resource's own domain"
    );
    assert_eq!(
        send(
            &by_attr,
            &[("service.namespace", "payment")],
            "http.requests"
        ),
        "http_requests_total"
    );
    assert_eq!(by_attr.rewrites("domain"), 3.0);

    // Without `require_domain`, only names that would start with a digit get it.
    let s = Setup::new(parse("domain: { from_attribute: service.namespace }").unwrap());
    let res = [("service.namespace", "edge")];
    assert_eq!(send(&s, &res, "5xx.errors"), "edge_5xx_errors_total");
    assert_eq!(send(&s, &res, "total.5xx"), "edge_5xx_total");
    assert_eq!(send(&s, &res, "orders"), "orders_total");
    assert_eq!(send(&s, &[], "5xx.errors"), "app_5xx_errors_total");
}

#[test]
fn failures_are_dropped_and_counted() {
    let s = Setup::new(NormalizeConfig::default());
    let got = s.send(batch(
        None,
        &[],
        vec![
            metric("日本", "", gauge(&[1.0, 2.0], &[])),
            metric("ok", "", gauge(&[1.0], &[])),
        ],
    ));
    assert_eq!(got.len(), 1);
    assert_eq!(s.dropped("invalid_name"), 2.0);
    // A batch of which nothing is left is not passed on.
    s.p.consume(batch(
        None,
        &[],
        vec![metric("---", "", gauge(&[1.0], &[]))],
    ))
    .unwrap();
    assert!(s.next.take().is_empty());
    assert_eq!(s.dropped("invalid_name"), 3.0);
}

/// A flood of distinct names keeps the cache within `cache_size`, counting what it lets go.
#[test]
fn a_cardinality_bomb_stays_within_cache_size() {
    let s = Setup::new(parse("cache_size: 1000").unwrap());
    let mut sent = 0;
    for chunk in 0..20 {
        let metrics = (0..10_000)
            .map(|i| {
                metric(
                    &format!("bomb.m{}", chunk * 10_000 + i),
                    "",
                    gauge(&[1.0], &[]),
                )
            })
            .collect();
        sent += s.send(batch(None, &[], metrics)).len();
        assert!(s.entries() <= 1000.0, "{} entries", s.entries());
    }
    assert_eq!(sent, 200_000);
    assert_eq!(s.misses(), 200_000.0);
    assert_eq!(s.evictions(), 199_000.0);
    assert_eq!(s.entries(), 1000.0);
}

/// The registry's config round trip: a YAML `normalize` section builds a working processor.
#[test]
fn config_from_yaml_builds() {
    let cfg = parse(
        r#"
base_units: true
require_domain: false
exclude: ["node_.*"]
rename: { "old.name": new_name_total }
rewrite: [{ pattern: 'x\.(\w+)', replacement: 'x_$1' }]
known_domains: [go, http]
extra_domains: [payment]
domain: { from_attribute: service.namespace, default: misc }
collisions: keep
on_failure: drop
cache_size: 10
"#,
    )
    .unwrap();
    let s = Setup::new(cfg);
    let got = s.send(batch(
        None,
        &[],
        vec![
            metric("old.name", "", counter(&[1])),
            metric("x.y", "", gauge(&[1.0], &[])),
        ],
    ));
    assert_eq!(got[0].name, "new_name_total");
    assert_eq!(got[1].name, "x_y");
    assert_eq!(s.rewrites("rename"), 1.0);
    assert_eq!(s.rewrites("rewrite"), 1.0);
}
