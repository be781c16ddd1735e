//! Per-tenant exporter queues through the real binary: a tenant whose backend fails does not hold
//! up another tenant and loses nothing once it recovers; under an overload Sluice cannot carry,
//! the gold tenant loses nothing while the bronze tenant is refused, and both show in /metrics.
//!
//! The tenant comes from the `X-Scope-OrgID` metadata (`tenant: { header: ... }`), its SLA tier
//! from a tenants file. The in-process sink tells tenants apart by their points' numbers: tenant
//! `acme` sends numbers below `B_BASE`, the other tenant numbers from `B_BASE` on.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{GrpcClient, Sluice, numbered_request, numbers, wait_until};
use tonic::{Code, Request, Response, Status};

/// Numbers from here on belong to the second tenant.
const B_BASE: u64 = 1_000_000;

/// What the sink received, in arrival order.
#[derive(Default)]
struct Received {
    requests: Vec<ExportMetricsServiceRequest>,
}

#[derive(Clone)]
struct SinkService {
    received: Arc<Mutex<Received>>,
    /// While set, requests carrying `acme`'s points are answered UNAVAILABLE.
    fail_acme: Arc<AtomicBool>,
    failed_calls: Arc<AtomicUsize>,
    /// Each request takes this long, one at a time (a backend of limited throughput).
    delay: Duration,
    one_at_a_time: Arc<tokio::sync::Mutex<()>>,
}

#[tonic::async_trait]
impl MetricsService for SinkService {
    async fn export(
        &self,
        req: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let _turn = self.one_at_a_time.lock().await;
        tokio::time::sleep(self.delay).await;
        let req = req.into_inner();
        if self.fail_acme.load(Ordering::SeqCst) && is_acme(&req) {
            self.failed_calls.fetch_add(1, Ordering::SeqCst);
            return Err(Status::unavailable("acme's backend is down"));
        }
        self.received.lock().unwrap().requests.push(req);
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn is_acme(r: &ExportMetricsServiceRequest) -> bool {
    numbers(std::slice::from_ref(r))
        .first()
        .is_some_and(|n| *n < B_BASE)
}

/// An OTLP/gRPC backend on 127.0.0.1:0 that can fail `acme`'s requests and can be slow.
struct TenantSink {
    addr: SocketAddr,
    svc: SinkService,
    _rt: tokio::runtime::Runtime,
}

impl TenantSink {
    fn start(delay: Duration) -> TenantSink {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let svc = SinkService {
            received: Arc::default(),
            fail_acme: Arc::default(),
            failed_calls: Arc::default(),
            delay,
            one_at_a_time: Arc::default(),
        };
        let server = svc.clone();
        let addr = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(
                        MetricsServiceServer::new(server)
                            .accept_compressed(tonic::codec::CompressionEncoding::Gzip),
                    )
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
            );
            addr
        });
        TenantSink { addr, svc, _rt: rt }
    }

    fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.svc.received.lock().unwrap().requests.clone()
    }

    /// The numbers received for `acme` and for the other tenant, sorted.
    fn numbers_by_tenant(&self) -> (Vec<u64>, Vec<u64>) {
        numbers(&self.requests())
            .into_iter()
            .partition(|n| *n < B_BASE)
    }
}

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

    fn export(&self, req: ExportMetricsServiceRequest) -> Result<(), Status> {
        self.client
            .export_with(req, &[("x-scope-orgid", self.tenant)])
            .map(|_| ())
    }
}

fn config(sink: SocketAddr, tenants_file: &str, queue: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:0" }}
    tenant: {{ header: X-Scope-OrgID, tenants_file: "{tenants_file}" }}
exporters:
  otlp:
    endpoint: "{sink}"
    compression: none
    timeout: 5s
    retry_on_failure: {{ initial_interval: 10ms, max_interval: 100ms }}
    sending_queue: {queue}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 5s
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [otlp] }}
"#
    )
}

/// A tenants file in `dir`: `acme` is gold, `globex` bronze.
fn tenants_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("tenants.yaml");
    std::fs::write(
        &path,
        "tenants:\n  acme: { sla_tier: gold }\n  globex: { sla_tier: bronze }\n",
    )
    .unwrap();
    path.display().to_string()
}

const LISTENERS: &[&str] = &["otlp/grpc", "telemetry"];

/// `acme`'s backend answers UNAVAILABLE: `globex`'s data keeps arriving while `acme`'s waits in
/// its own queue and is retried, without taking the senders from `globex`. When the backend
/// recovers, `acme`'s data arrives complete and once.
#[test]
fn a_failing_tenant_backend_does_not_hold_up_another_and_recovers_complete() {
    let sink = TenantSink::start(Duration::ZERO);
    sink.svc.fail_acme.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let s = Sluice::start(
        &config(
            sink.addr,
            &tenants_file(&dir),
            "{ queue_size: 5000, num_consumers: 2 }",
        ),
        LISTENERS,
    );
    let acme = TenantClient::connect(&s.grpc_url("otlp"), "acme");
    let globex = TenantClient::connect(&s.grpc_url("otlp"), "globex");
    for r in 0..20 {
        acme.export(numbered_request(r * 50, 50))
            .expect("acme accepted");
        globex
            .export(numbered_request(B_BASE + r * 50, 50))
            .expect("globex accepted");
    }
    wait_until(
        Duration::from_secs(20),
        "all of globex's points at the sink",
        || sink.numbers_by_tenant().1.len() >= 1000,
    );
    let (got_acme, got_globex) = sink.numbers_by_tenant();
    assert!(got_acme.is_empty(), "acme's backend is down");
    assert_eq!(got_globex, (B_BASE..B_BASE + 1000).collect::<Vec<_>>());
    assert!(sink.svc.failed_calls.load(Ordering::SeqCst) > 0);
    // acme's points wait in acme's queue; globex's is empty.
    let queued = |tenant| {
        s.metric(
            "sluice_exporter_queue_points",
            &[("exporter", "otlp"), ("tenant", tenant)],
        )
    };
    // (globex's last batch is released once Sluice has the sink's answer.)
    wait_until(Duration::from_secs(5), "globex's queue empty", || {
        queued("globex") == 0.0
    });
    assert_eq!(queued("acme"), 1000.0);
    assert!(s.metric("sluice_exporter_retries_total", &[("exporter", "otlp")]) > 0.0);

    // globex keeps flowing while acme is still failing.
    for r in 20..30 {
        globex
            .export(numbered_request(B_BASE + r * 50, 50))
            .expect("globex accepted");
    }
    wait_until(
        Duration::from_secs(20),
        "globex's later points at the sink",
        || sink.numbers_by_tenant().1.len() >= 1500,
    );
    assert!(sink.numbers_by_tenant().0.is_empty());

    sink.svc.fail_acme.store(false, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(20),
        "all of acme's points at the sink",
        || sink.numbers_by_tenant().0.len() >= 1000,
    );
    wait_until(Duration::from_secs(5), "acme's queue empty", || {
        queued("acme") == 0.0
    });
    let (got_acme, got_globex) = sink.numbers_by_tenant();
    assert_eq!(got_acme, (0..1000).collect::<Vec<_>>(), "complete and once");
    assert_eq!(got_globex, (B_BASE..B_BASE + 1500).collect::<Vec<_>>());
    let sent = |tenant| {
        s.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", "otlp"), ("tenant", tenant)],
        )
    };
    assert_eq!(sent("acme"), 1000.0);
    assert_eq!(sent("globex"), 1500.0);
    assert!(
        s.metric(
            "sluice_exporter_failed_points_total",
            &[("exporter", "otlp"), ("tenant", "acme")]
        ) > 0.0
    );
    assert_eq!(
        s.metric(
            "sluice_exporter_failed_points_total",
            &[("exporter", "otlp"), ("tenant", "globex")]
        ),
        0.0
    );
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}

/// A backend slower than what two tenants send: the gold tenant's requests are all accepted and
/// sent ahead of the bronze tenant's queued data (at most the one bronze batch already in flight
/// arrives in between), while the bronze tenant, whose queue fills, is refused with a retryable
/// status and counted; everything either tenant had accepted is delivered in the end.
#[test]
fn under_overload_gold_loses_nothing_while_bronze_is_refused_and_counted() {
    let sink = TenantSink::start(Duration::from_millis(40));
    let dir = tempfile::tempdir().unwrap();
    let s = Sluice::start(
        &config(
            sink.addr,
            &tenants_file(&dir),
            "{ queue_size: 500, num_consumers: 1 }",
        ),
        LISTENERS,
    );
    let url = s.grpc_url("otlp");
    let stop = Arc::new(AtomicBool::new(false));
    let bronze = std::thread::spawn({
        let (url, stop) = (url.clone(), stop.clone());
        move || {
            let client = TenantClient::connect(&url, "globex");
            let (mut next, mut accepted, mut refused) = (B_BASE, Vec::new(), 0u64);
            while !stop.load(Ordering::SeqCst) {
                match client.export(numbered_request(next, 50)) {
                    Ok(()) => {
                        accepted.extend(next..next + 50);
                        next += 50;
                    }
                    Err(st) => {
                        assert_eq!(st.code(), Code::Unavailable, "{st:?}");
                        refused += 50;
                        // A client backs off before retrying the same points.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
            (accepted, refused)
        }
    });
    // Bronze points refused: counted as points when refused after decoding, as requests (of 50
    // points each) when refused before.
    let refused_bronze = || {
        let labels = [
            ("receiver", "otlp"),
            ("tenant", "globex"),
            ("reason", "queue_full"),
        ];
        s.metric("sluice_receiver_refused_points_total", &labels)
            + 50.0 * s.metric("sluice_receiver_refused_requests_total", &labels)
    };
    wait_until(
        Duration::from_secs(20),
        "the bronze tenant refused (overload)",
        || refused_bronze() > 0.0,
    );

    let gold = TenantClient::connect(&url, "acme");
    for round in 0..5u64 {
        gold.export(numbered_request(round * 400, 400))
            .expect("the gold tenant is never refused");
        // From here on gold's batch is queued: at most the bronze batch in flight goes first.
        let before = sink.requests().len();
        wait_until(
            Duration::from_secs(20),
            "gold's request at the sink",
            || sink.numbers_by_tenant().0.len() as u64 >= (round + 1) * 400,
        );
        let reqs = sink.requests();
        let gold_at = reqs
            .iter()
            .position(|r| is_acme(r) && numbers(std::slice::from_ref(r))[0] == round * 400)
            .expect("gold's request");
        let bronze_between = reqs[before.min(gold_at)..gold_at]
            .iter()
            .filter(|r| !is_acme(r))
            .count();
        assert!(
            bronze_between <= 1,
            "round {round}: {bronze_between} bronze requests were sent ahead of gold's"
        );
        // The sender releases gold's room once the sink has answered: only then does the next
        // gold request (400 of a 500-point queue) fit.
        wait_until(Duration::from_secs(20), "gold's queue empty", || {
            s.metric(
                "sluice_exporter_queue_points",
                &[("exporter", "otlp"), ("tenant", "acme")],
            ) == 0.0
        });
    }
    // The bronze queue is full while gold is served.
    let queued_bronze = s.metric(
        "sluice_exporter_queue_points",
        &[("exporter", "otlp"), ("tenant", "globex")],
    );
    assert!(
        queued_bronze > 0.0 && queued_bronze <= 500.0,
        "{queued_bronze}"
    );
    stop.store(true, Ordering::SeqCst);
    let (bronze_accepted, bronze_refused) = bronze.join().unwrap();
    assert!(bronze_refused > 0);

    // Everything accepted arrives, once; the refusals are in /metrics.
    let want_bronze = bronze_accepted.len();
    wait_until(
        Duration::from_secs(60),
        "every accepted bronze point at the sink",
        || sink.numbers_by_tenant().1.len() >= want_bronze,
    );
    let (got_gold, got_bronze) = sink.numbers_by_tenant();
    // The figure docs/gateway.md quotes (`cargo test --test tenant_queues -- --nocapture`).
    println!(
        "SLA under overload: gold sent 2000 points, accepted 2000, refused 0; bronze accepted {}, refused {bronze_refused}",
        bronze_accepted.len()
    );
    assert_eq!(got_gold, (0..2000).collect::<Vec<_>>());
    assert_eq!(got_bronze, bronze_accepted);
    for refused in [
        "sluice_receiver_refused_points_total",
        "sluice_receiver_refused_requests_total",
    ] {
        assert_eq!(
            s.metric(refused, &[("receiver", "otlp"), ("tenant", "acme")]),
            0.0
        );
    }
    assert_eq!(refused_bronze(), bronze_refused as f64);
    assert_eq!(
        s.metric(
            "sluice_receiver_accepted_points_total",
            &[("receiver", "otlp"), ("tenant", "acme")]
        ),
        2000.0
    );
    assert_eq!(
        s.metric(
            "sluice_exporter_sent_points_total",
            &[("exporter", "otlp"), ("tenant", "globex")]
        ),
        want_bronze as f64
    );
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}
