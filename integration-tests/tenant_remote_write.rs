//! Per-tenant sending in the `prometheus_remote_write` exporter through the real binary: the tenant
//! comes from the OTLP receiver's `X-Scope-OrgID` metadata (`tenant: { header: ... }`) and goes out
//! in the exporter's `tenant_header` (or its `${tenant}` URL) to the in-process remote_write sink.
//! While the sink refuses one tenant (503), the other tenant's samples keep arriving; once it is
//! released, the refused tenant's samples arrive complete, once each, in order.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use std::collections::BTreeMap;
use std::time::Duration;
use support::peers::{RwBehaviour, RwSink};
use support::{GrpcClient, Sluice, wait_until};

/// Series per request, and rounds sent before the refused tenant is released.
const SERIES: usize = 20;
const ROUNDS: u64 = 10;

/// A client of Sluice's OTLP/gRPC receiver that names its tenant in `X-Scope-OrgID`.
struct TenantClient {
    client: GrpcClient,
    tenant: &'static str,
}

impl TenantClient {
    fn connect(url: &str, tenant: &'static str) -> TenantClient {
        TenantClient {
            client: GrpcClient::connect(url),
            tenant,
        }
    }

    /// Sends round `round` (see [`round`]), retrying while Sluice pushes back (bounded).
    fn send_round(&self, round: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self
                .client
                .export_with(self::round(round), &[("x-scope-orgid", self.tenant)])
            {
                Ok(_) => return,
                Err(e) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "{} round {round} never accepted: {e}",
                        self.tenant
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }
}

/// Round `r`: gauge `work` with `SERIES` series (`s="0"`...), each one sample of value `r` at
/// `r` ms past a fixed time, so that order and completeness can be checked per series.
fn round(r: u64) -> ExportMetricsServiceRequest {
    use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use sluice_core::proto::otlp::metrics::v1::*;
    let points = (0..SERIES)
        .map(|j| NumberDataPoint {
            attributes: vec![KeyValue {
                key: "s".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(j.to_string())),
                }),
            }],
            time_unix_nano: 1_790_000_000_000_000_000 + r * 1_000_000,
            value: Some(number_data_point::Value::AsDouble(r as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "work".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The values of each `work` series the sink accepted for `tenant` (by `X-Scope-OrgID` or a
/// `/<tenant>/` path segment), in arrival order.
fn values(sink: &RwSink, tenant: &str) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for r in sink.requests() {
        let header = r
            .headers
            .get("x-scope-orgid")
            .map(|v| v.to_str().unwrap().to_string());
        if header.as_deref() != Some(tenant) && !r.path.contains(&format!("/{tenant}/")) {
            continue;
        }
        for t in &r.v1.timeseries {
            let label = |n: &str| t.labels.iter().find(|l| l.name == n).map(|l| &l.value);
            if label("__name__").map(String::as_str) != Some("work") {
                continue;
            }
            let s = label("s").expect("an s label").clone();
            out.entry(s)
                .or_default()
                .extend(t.samples.iter().map(|x| x.value));
        }
    }
    out
}

fn samples(sink: &RwSink, tenant: &str) -> usize {
    values(sink, tenant).values().map(Vec::len).sum()
}

/// Every series of the tenant got exactly the values `0..rounds`, in order, once each.
fn assert_complete_in_order(sink: &RwSink, tenant: &str, rounds: u64) {
    let got = values(sink, tenant);
    let want: Vec<f64> = (0..rounds).map(|r| r as f64).collect();
    assert_eq!(got.len(), SERIES, "{tenant}: series {got:?}");
    for (s, v) in &got {
        assert_eq!(v, &want, "{tenant}: series s={s}");
    }
}

fn config(endpoint: &str, tenant_header: &str, queue: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
    tenant: {{ header: X-Scope-OrgID }}
exporters:
  prometheus_remote_write:
    endpoint: "{endpoint}"
    {tenant_header}
    queue_config: {{ batch_send_deadline: 20ms, min_backoff: 20ms, max_backoff: 200ms {queue} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 5s
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write] }}
"#
    )
}

const LISTENERS: &[&str] = &["otlp/grpc", "telemetry"];

/// Runs the scenario: `acme` refused by the sink, `globex` not; `globex` complete while `acme`
/// still fails; then `acme` released and complete, once, in order; counters per tenant.
fn refused_tenant_does_not_hold_back_the_other(sink: &RwSink, s: &Sluice) {
    let acme = TenantClient::connect(&s.grpc_url("otlp"), "acme");
    let globex = TenantClient::connect(&s.grpc_url("otlp"), "globex");
    for r in 0..ROUNDS {
        acme.send_round(r);
        globex.send_round(r);
    }
    wait_until(
        Duration::from_secs(20),
        "all of globex's samples at the sink",
        || samples(sink, "globex") >= SERIES * ROUNDS as usize,
    );
    assert_complete_in_order(sink, "globex", ROUNDS);
    assert!(sink.state.lock().unwrap().tenant_refusals > 0);
    assert_eq!(samples(sink, "acme"), 0, "acme is refused");

    // globex keeps flowing while acme still fails.
    for r in ROUNDS..2 * ROUNDS {
        globex.send_round(r);
    }
    wait_until(
        Duration::from_secs(20),
        "globex's later samples at the sink",
        || samples(sink, "globex") >= SERIES * 2 * ROUNDS as usize,
    );
    assert_complete_in_order(sink, "globex", 2 * ROUNDS);
    assert_eq!(samples(sink, "acme"), 0, "acme is refused");

    sink.release_tenant("acme");
    wait_until(
        Duration::from_secs(20),
        "all of acme's samples at the sink",
        || samples(sink, "acme") >= SERIES * ROUNDS as usize,
    );
    let metric = |name: &str, tenant: &str| {
        s.metric(
            name,
            &[("exporter", "prometheus_remote_write"), ("tenant", tenant)],
        )
    };
    wait_until(Duration::from_secs(5), "acme counted as sent", || {
        metric("sluice_exporter_sent_points_total", "acme") == (SERIES as u64 * ROUNDS) as f64
    });
    assert_complete_in_order(sink, "acme", ROUNDS);
    assert_complete_in_order(sink, "globex", 2 * ROUNDS);
    assert_eq!(
        metric("sluice_exporter_sent_points_total", "globex"),
        (SERIES as u64 * 2 * ROUNDS) as f64
    );
    assert!(metric("sluice_exporter_failed_points_total", "acme") > 0.0);
    assert_eq!(metric("sluice_exporter_failed_points_total", "globex"), 0.0);
}

/// The tenant in `X-Scope-OrgID`, one endpoint for all: the sink refuses `acme` for a while.
#[test]
fn a_refused_tenant_header_does_not_hold_back_another_and_recovers_in_order() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("acme");
    let s = Sluice::start(
        &config(&sink.url(), "tenant_header: X-Scope-OrgID", ""),
        LISTENERS,
    );
    refused_tenant_does_not_hold_back_the_other(&sink, &s);
    for r in sink.requests() {
        assert_eq!(r.path, "/api/v1/write");
    }
}

/// As above with one small shard per tenant, so that the refused tenant's shard fills: its later
/// batches are refused by the exporter and wait in its part of the sending queue, retried, while
/// the other tenant's go through; after the release they arrive complete and in order.
#[test]
fn a_refused_tenant_with_full_shards_does_not_hold_back_another() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("acme");
    let s = Sluice::start(
        &config(
            &sink.url(),
            "tenant_header: X-Scope-OrgID",
            ", max_shards: 1, capacity: 20, max_samples_per_send: 20",
        ),
        LISTENERS,
    );
    refused_tenant_does_not_hold_back_the_other(&sink, &s);
    assert!(
        s.metric(
            "sluice_exporter_busy_deferrals_total",
            &[("exporter", "prometheus_remote_write"), ("tenant", "acme")]
        ) > 0.0,
        "acme's shard never filled: the test does not test what it says"
    );
}

/// The tenant in the URL (`${tenant}`), no tenant header: `acme`'s URL is down for a while.
#[test]
fn a_refused_tenant_url_does_not_hold_back_another_and_recovers_in_order() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("acme");
    let endpoint = format!("http://{}/insert/${{tenant}}/api/v1/write", sink.addr);
    let s = Sluice::start(&config(&endpoint, "", ""), LISTENERS);
    refused_tenant_does_not_hold_back_the_other(&sink, &s);
    for r in sink.requests() {
        assert!(r.headers.get("x-scope-orgid").is_none());
        assert!(
            r.path == "/insert/acme/api/v1/write" || r.path == "/insert/globex/api/v1/write",
            "{}",
            r.path
        );
    }
}
