//! The `route` and `limits` processors through the real binary. Route: two remote_write receivers
//! with static tenants feed one pipeline whose `route` sends each tenant to its own remote_write
//! backend (each backend gets exactly its tenant's samples); an OTLP pipeline routes by resource
//! attribute and by point label. Limits: a tenant over its rate is refused with 429 + Retry-After
//! (remote_write, OTLP/HTTP) and RESOURCE_EXHAUSTED + RetryInfo (OTLP/gRPC) while another tenant's
//! requests pass; a cardinality bomb is capped at `max_series`. Counters are read from Sluice's
//! `/metrics`.

mod support;

use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::proto::prometheus_v1 as v1;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::peers::{RwBehaviour, RwSink, series_text};
use support::{Behaviour, GrpcClient, OtlpSink, Sluice, wait_until};

const DEADLINE: Duration = Duration::from_secs(20);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A remote_write 1.0 body: `n` series of `name` (label `i` = first..first+n), one sample each.
fn rw_body(name: &str, first: usize, n: usize) -> Vec<u8> {
    let t = now_ms();
    let req = v1::WriteRequest {
        timeseries: (first..first + n)
            .map(|i| v1::TimeSeries {
                labels: vec![
                    v1::Label {
                        name: "__name__".into(),
                        value: name.into(),
                    },
                    v1::Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                ],
                samples: vec![v1::Sample {
                    value: i as f64,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// POSTs a remote_write body to a receiver; the status and the Retry-After header.
fn post_rw(sluice: &Sluice, receiver: &str, body: Vec<u8>) -> (u16, Option<String>) {
    let url = format!(
        "http://{}/api/v1/write",
        sluice.addr(&format!("{receiver}/http"))
    );
    block_on(async {
        let resp = support::http_client()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body)
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), retry)
    })
}

/// POSTs an OTLP/HTTP protobuf request; the status and the Retry-After header.
fn post_otlp(
    sluice: &Sluice,
    receiver: &str,
    req: ExportMetricsServiceRequest,
) -> (u16, Option<String>) {
    let url = sluice.http_url(receiver);
    block_on(async {
        let resp = support::http_client()
            .post(url)
            .header("Content-Type", "application/x-protobuf")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (resp.status().as_u16(), retry)
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    }
}

/// A resource `service.name = service` with gauge `name`: one point per entry of `envs`, labelled
/// `env`, valued by its position.
fn resource(service: &str, name: &str, envs: &[&str]) -> ResourceMetrics {
    let points = envs
        .iter()
        .enumerate()
        .map(|(i, e)| NumberDataPoint {
            attributes: vec![string_kv("env", e), string_kv("i", &i.to_string())],
            time_unix_nano: now_ms() as u64 * 1_000_000,
            value: Some(number_data_point::Value::AsDouble(i as f64)),
            ..Default::default()
        })
        .collect();
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![string_kv("service.name", service)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// (service.name, metric, env) of every point a sink got, sorted.
fn otlp_points(sink: &OtlpSink) -> Vec<(String, String, String)> {
    let s = |v: &Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    let mut out = Vec::new();
    for rm in sink.requests().iter().flat_map(|r| &r.resource_metrics) {
        let service = rm
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| s(&kv.value))
            .unwrap_or_default();
        for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
            if let Some(metric::Data::Gauge(g)) = &m.data {
                for p in &g.data_points {
                    let env = p
                        .attributes
                        .iter()
                        .find(|kv| kv.key == "env")
                        .map(|kv| s(&kv.value))
                        .unwrap_or_default();
                    out.push((service.clone(), m.name.clone(), env));
                }
            }
        }
    }
    out.sort();
    out
}

/// The metric names of every sample a remote_write sink got, with their count.
fn rw_names(sink: &RwSink) -> BTreeSet<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for ts in sink.requests().iter().flat_map(|r| &r.v1.timeseries) {
        let name = ts
            .labels
            .iter()
            .find(|l| l.name == "__name__")
            .map(|l| l.value.clone())
            .unwrap_or_default();
        *counts.entry(name).or_default() += ts.samples.len();
    }
    counts.into_iter().collect()
}

#[test]
fn each_tenant_reaches_only_its_own_backend() {
    let (acme_sink, shared_sink) = (
        RwSink::start(RwBehaviour::Accept),
        RwSink::start(RwBehaviour::Accept),
    );
    let yaml = format!(
        "
receivers:
  prometheus_remote_write/acme: {{ endpoint: 127.0.0.1:0, tenant: {{ static: acme }} }}
  prometheus_remote_write/globex: {{ endpoint: 127.0.0.1:0, tenant: {{ static: globex }} }}
processors:
  route:
    routes:
      - {{ name: acme, tenants: [acme], exporters: [prometheus_remote_write/acme] }}
    default: [prometheus_remote_write/shared]
exporters:
  prometheus_remote_write/acme: {{ endpoint: {} }}
  prometheus_remote_write/shared: {{ endpoint: {} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics:
      receivers: [prometheus_remote_write/acme, prometheus_remote_write/globex]
      processors: [route]
      exporters: [prometheus_remote_write/acme, prometheus_remote_write/shared]
",
        acme_sink.url(),
        shared_sink.url()
    );
    let sluice = Sluice::start(
        &yaml,
        &[
            "prometheus_remote_write/acme/http",
            "prometheus_remote_write/globex/http",
            "telemetry",
        ],
    );
    for round in 0..3 {
        let acme = post_rw(
            &sluice,
            "prometheus_remote_write/acme",
            rw_body("acme_requests", round * 7, 7),
        );
        let globex = post_rw(
            &sluice,
            "prometheus_remote_write/globex",
            rw_body("globex_requests", round * 5, 5),
        );
        assert_eq!((acme.0, globex.0), (204, 204));
    }
    wait_until(DEADLINE, "both backends have their samples", || {
        acme_sink.samples() == 21 && shared_sink.samples() == 15
    });
    assert_eq!(
        rw_names(&acme_sink),
        BTreeSet::from([("acme_requests".to_string(), 21)])
    );
    assert_eq!(
        rw_names(&shared_sink),
        BTreeSet::from([("globex_requests".to_string(), 15)])
    );
    let routed = |r: &str| sluice.metric("sluice_processor_route_points_total", &[("route", r)]);
    assert_eq!((routed("acme"), routed("default")), (21.0, 15.0));
    let sent = |e: &str, t: &str| {
        sluice.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", e), ("tenant", t)],
        )
    };
    wait_until(DEADLINE, "the exporters count what they sent", || {
        sent("prometheus_remote_write/acme", "acme") == 21.0
            && sent("prometheus_remote_write/shared", "globex") == 15.0
    });
    assert_eq!(sent("prometheus_remote_write/acme", "globex"), 0.0);
    assert_eq!(sent("prometheus_remote_write/shared", "acme"), 0.0);
}

#[test]
fn routes_by_resource_attribute_and_by_label() {
    let (checkout, prod, rest) = (
        OtlpSink::start(Behaviour::Accept),
        OtlpSink::start(Behaviour::Accept),
        OtlpSink::start(Behaviour::Accept),
    );
    let yaml = format!(
        "
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: 127.0.0.1:0 }} }} }}
processors:
  route:
    routes:
      - {{ name: checkout, attributes: {{ service.name: checkout }}, exporters: [otlp/checkout] }}
      - {{ name: prod, labels: {{ env: prod }}, exporters: [otlp/prod] }}
    default: [otlp/rest]
exporters:
  otlp/checkout: {{ endpoint: {} }}
  otlp/prod: {{ endpoint: {} }}
  otlp/rest: {{ endpoint: {} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [route]
      exporters: [otlp/checkout, otlp/prod, otlp/rest]
",
        checkout.addr, prod.addr, rest.addr
    );
    let sluice = Sluice::start(&yaml, &["otlp/grpc", "telemetry"]);
    let client = GrpcClient::connect(&sluice.grpc_url("otlp"));
    client
        .export(ExportMetricsServiceRequest {
            resource_metrics: vec![
                resource("checkout", "orders", &["prod", "dev"]),
                resource("cart", "items", &["prod", "dev", "prod", "test"]),
            ],
        })
        .unwrap();
    wait_until(DEADLINE, "every sink has its points", || {
        checkout.points() == 2 && prod.points() == 2 && rest.points() == 2
    });
    let p = |s: &str, m: &str, e: &str| (s.to_string(), m.to_string(), e.to_string());
    assert_eq!(
        otlp_points(&checkout),
        [
            p("checkout", "orders", "dev"),
            p("checkout", "orders", "prod")
        ]
    );
    assert_eq!(
        otlp_points(&prod),
        [p("cart", "items", "prod"), p("cart", "items", "prod")]
    );
    assert_eq!(
        otlp_points(&rest),
        [p("cart", "items", "dev"), p("cart", "items", "test")]
    );
    for r in ["checkout", "prod", "default"] {
        assert_eq!(
            sluice.metric("sluice_processor_route_points_total", &[("route", r)]),
            2.0,
            "route {r}"
        );
    }
}

#[test]
fn a_tenant_over_its_rate_is_refused_with_a_retry_hint_and_others_pass() {
    let sink = OtlpSink::start(Behaviour::Accept);
    // Refilling 100 samples takes 100 s: the refusals below do not depend on timing.
    let yaml = format!(
        "
receivers:
  prometheus_remote_write/acme: {{ endpoint: 127.0.0.1:0, tenant: {{ static: acme }} }}
  prometheus_remote_write/globex: {{ endpoint: 127.0.0.1:0, tenant: {{ static: globex }} }}
  otlp/acme:
    protocols: {{ grpc: {{ endpoint: 127.0.0.1:0 }}, http: {{ endpoint: 127.0.0.1:0 }} }}
    tenant: {{ static: acme }}
processors:
  limits:
    default: {{ rate: 100000 }}
    tenants: {{ acme: {{ rate: 1, burst: 100 }} }}
exporters:
  otlp: {{ endpoint: {} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics:
      receivers: [prometheus_remote_write/acme, prometheus_remote_write/globex, otlp/acme]
      processors: [limits]
      exporters: [otlp]
",
        sink.addr
    );
    let sluice = Sluice::start(
        &yaml,
        &[
            "prometheus_remote_write/acme/http",
            "prometheus_remote_write/globex/http",
            "otlp/acme/grpc",
            "otlp/acme/http",
            "telemetry",
        ],
    );
    let rw =
        |receiver: &str, first: usize| post_rw(&sluice, receiver, rw_body("requests", first, 100));
    assert_eq!(rw("prometheus_remote_write/acme", 0).0, 204);
    let (status, retry) = rw("prometheus_remote_write/acme", 100);
    assert_eq!(status, 429);
    let retry: u64 = retry.expect("a Retry-After header").parse().unwrap();
    assert!((1..=100).contains(&retry), "Retry-After {retry}");
    // Another tenant is not held back.
    for i in 0..5 {
        assert_eq!(rw("prometheus_remote_write/globex", i * 100).0, 204);
    }
    // OTLP/gRPC: RESOURCE_EXHAUSTED with RetryInfo.
    let client = GrpcClient::connect(&sluice.grpc_url("otlp/acme"));
    let status = client
        .export(support::numbered_request(0, 100))
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("acme"), "{status:?}");
    {
        use tonic_types::StatusExt;
        let delay = status.get_details_retry_info().and_then(|r| r.retry_delay);
        assert!(
            delay.is_some_and(|d| d >= Duration::from_secs(1)),
            "{status:?}"
        );
    }
    // OTLP/HTTP: 429 with Retry-After.
    let (status, retry) = post_otlp(&sluice, "otlp/acme", support::numbered_request(0, 100));
    assert_eq!(status, 429);
    assert!(retry.is_some());
    wait_until(DEADLINE, "the sink has what passed", || {
        sink.points() == 600
    });
    assert_eq!(
        sluice.metric(
            "sluice_processor_limits_refused_points_total",
            &[("tenant", "acme"), ("reason", "limited_rate")]
        ),
        300.0
    );
    assert_eq!(
        sluice.metric(
            "sluice_processor_limits_refused_points_total",
            &[("tenant", "globex")]
        ),
        0.0
    );
    assert_eq!(
        sluice.metric(
            "sluice_receiver_refused_points_total",
            &[("tenant", "acme"), ("reason", "limited")]
        ),
        300.0
    );
    assert_eq!(
        sluice.metric(
            "sluice_receiver_accepted_points_total",
            &[("tenant", "globex")]
        ),
        500.0
    );
}

#[test]
fn a_cardinality_bomb_is_capped_at_max_series() {
    let sink = RwSink::start(RwBehaviour::Accept);
    let yaml = format!(
        "
receivers:
  prometheus_remote_write: {{ endpoint: 127.0.0.1:0, tenant: {{ static: acme }} }}
processors:
  limits: {{ default: {{ max_series: 50 }} }}
exporters:
  prometheus_remote_write: {{ endpoint: {} }}
service:
  telemetry: {{ metrics: {{ address: 127.0.0.1:0 }} }}
  pipelines:
    metrics:
      receivers: [prometheus_remote_write]
      processors: [limits]
      exporters: [prometheus_remote_write]
",
        sink.url()
    );
    let sluice = Sluice::start(&yaml, &["prometheus_remote_write/http", "telemetry"]);
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (status, retry) = post_rw(
            &sluice,
            "prometheus_remote_write",
            rw_body("bomb", i * 10, 10),
        );
        if status == 429 {
            assert_eq!(retry.as_deref(), Some("60"));
        }
        statuses.push(status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // Known series keep passing.
    assert_eq!(
        post_rw(&sluice, "prometheus_remote_write", rw_body("bomb", 0, 50)).0,
        204
    );
    wait_until(DEADLINE, "the sink has every sample that passed", || {
        sink.samples() == 100
    });
    let series: BTreeSet<String> = sink
        .requests()
        .iter()
        .flat_map(|r| r.v1.timeseries.iter().map(series_text))
        .collect();
    assert_eq!(series.len(), 50);
    assert_eq!(
        sluice.metric(
            "sluice_processor_limits_refused_points_total",
            &[("tenant", "acme"), ("reason", "limited_series")]
        ),
        150.0
    );
    assert_eq!(
        sluice.metric(
            "sluice_processor_limits_active_series",
            &[("tenant", "acme")]
        ),
        50.0
    );
}
