use super::config::{GrpcConfig, HttpConfig, Protocols};
use super::*;
use prost::Message;
use sluice_core::component::ComponentId;
use sluice_core::config::types::{ByteSize, Endpoint};
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Histogram, HistogramDataPoint, Metric, ResourceMetrics, ScopeMetrics, metric,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::{Capture, gauge_batch};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic_types::StatusExt;

const RECEIVER: &str = "otlp/test";

/// Fails the test if `fut` takes longer than 10s, instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Two distinct free ports on 127.0.0.1 (both held until both are picked, then released).
fn free_addrs() -> (SocketAddr, SocketAddr) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

struct Running {
    grpc: SocketAddr,
    http: SocketAddr,
    capture: Arc<Capture>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    /// The folder of the tenants file, removed with the receiver.
    _tenants: Option<tempfile::TempDir>,
}

async fn start(metadata_keys: &[&str]) -> Running {
    start_with(metadata_keys, |_| {}).await
}

async fn start_with(metadata_keys: &[&str], edit: impl FnOnce(&mut OtlpReceiverConfig)) -> Running {
    let (grpc, http) = free_addrs();
    let mut cfg = OtlpReceiverConfig {
        protocols: Protocols {
            grpc: Some(GrpcConfig {
                endpoint: Endpoint(grpc.to_string()),
            }),
            http: Some(HttpConfig {
                endpoint: Endpoint(http.to_string()),
            }),
        },
        max_request_bytes: ByteSize::mib(16),
        max_decompressed_bytes: ByteSize::mib(64),
        metadata_keys: metadata_keys.iter().map(|k| k.to_string()).collect(),
        auth: None,
        tenant: None,
    };
    edit(&mut cfg);
    let capture = Capture::new();
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let task = within(
        "receiver start",
        cfg.start(ReceiverContext {
            id: ComponentId::parse(RECEIVER).unwrap(),
            next: capture.clone(),
            shutdown: shutdown.clone(),
            telemetry: telemetry.clone(),
        }),
    )
    .await
    .expect("the receiver starts");
    Running {
        grpc,
        http,
        capture,
        telemetry,
        shutdown,
        task,
        _tenants: None,
    }
}

impl Running {
    async fn grpc_client(&self) -> MetricsServiceClient<tonic::transport::Channel> {
        within(
            "gRPC connect",
            MetricsServiceClient::connect(format!("http://{}", self.grpc)),
        )
        .await
        .expect("connects to the gRPC port")
    }

    fn http_url(&self) -> String {
        format!("http://{}/v1/metrics", self.http)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("receiver", RECEIVER)];
        all.extend_from_slice(labels);
        self.telemetry.value(name, &all)
    }
}

/// A request with a resource attribute, a gauge and a histogram: 4 points in all.
fn rich_request() -> ExportMetricsServiceRequest {
    let mut req = gauge_batch("requests_in_flight", 3).into_request();
    let rm = &mut req.resource_metrics[0];
    rm.resource = Some(Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("checkout".into())),
            }),
        }],
        ..Default::default()
    });
    rm.scope_metrics[0].metrics.push(Metric {
        name: "latency".into(),
        unit: "s".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                count: 3,
                sum: Some(0.6),
                bucket_counts: vec![1, 1, 1],
                explicit_bounds: vec![0.1, 0.5],
                time_unix_nano: 1_700_000_000_000_000_000,
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    });
    req
}

async fn post_protobuf(
    url: &str,
    req: &ExportMetricsServiceRequest,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut rb = crate::test_http_client()
        .post(url)
        .header("content-type", "application/x-protobuf")
        .body(req.encode_to_vec());
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    within("HTTP export", rb.send())
        .await
        .expect("the HTTP request completes")
}

// Guarantees: an OTLP/gRPC export (and an OTLP/HTTP protobuf export) reaches the next consumer
// exactly as sent, is answered with a full success, and its points are counted as accepted.
#[tokio::test]
async fn grpc_and_http_exports_arrive_unchanged_and_are_counted() {
    let r = start(&[]).await;
    let req = rich_request();

    let resp = within("gRPC export", r.grpc_client().await.export(req.clone()))
        .await
        .expect("the export succeeds")
        .into_inner();
    assert_eq!(resp.partial_success, None);
    let got = r.capture.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].resource_metrics, req.resource_metrics);
    assert_eq!(got[0].context, Context::default());
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 4.0);

    let resp = post_protobuf(&r.http_url(), &req, &[]).await;
    assert_eq!(resp.status(), 200);
    let body = ExportMetricsServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    assert_eq!(body.partial_success, None);
    let got = r.capture.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].resource_metrics, req.resource_metrics);
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 8.0);
    assert_eq!(r.counter("sluice_receiver_refused_points_total", &[]), 0.0);
}

// Guarantees: the `metadata_keys` named in the config (matched case-insensitively) are carried
// from gRPC metadata and HTTP headers into the batch context with lowercased keys, and no other
// header is.
#[tokio::test]
async fn metadata_keys_are_carried_into_the_context() {
    let r = start(&["X-Scope-OrgID"]).await;
    let expected = |v: &str| vec![(Arc::<str>::from("x-scope-orgid"), Arc::<str>::from(v))];

    let mut req = tonic::Request::new(gauge_batch("g", 2).into_request());
    req.metadata_mut()
        .insert("x-scope-orgid", "tenant-grpc".parse().unwrap());
    req.metadata_mut()
        .insert("x-other", "not-carried".parse().unwrap());
    within("gRPC export", r.grpc_client().await.export(req))
        .await
        .expect("the export succeeds");
    let got = r.capture.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].context.metadata, expected("tenant-grpc"));
    assert_eq!(
        got[0].context.metadata("X-Scope-OrgID"),
        Some("tenant-grpc")
    );

    let resp = post_protobuf(
        &r.http_url(),
        &gauge_batch("g", 2).into_request(),
        &[("X-Scope-OrgID", "tenant-http"), ("X-Other", "not-carried")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let got = r.capture.take();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].context.metadata, expected("tenant-http"));

    // Without the header the context carries nothing.
    let resp = post_protobuf(&r.http_url(), &gauge_batch("g", 1).into_request(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(r.capture.take()[0].context, Context::default());
}

// Guarantees: invalid metrics are left out, the rest is taken, and the client gets a partial
// success naming how many points were rejected (gRPC, and OTLP/JSON over HTTP); the rejected points
// are counted as refused with reason invalid.
#[tokio::test]
async fn invalid_points_are_reported_as_partial_success() {
    let r = start(&[]).await;
    let mut req = gauge_batch("good", 2).into_request();
    let bad =
        gauge_batch("", 3).into_request().resource_metrics[0].scope_metrics[0].metrics[0].clone();
    req.resource_metrics[0].scope_metrics[0].metrics.push(bad);

    let resp = within("gRPC export", r.grpc_client().await.export(req.clone()))
        .await
        .expect("the export succeeds")
        .into_inner();
    let ps = resp.partial_success.expect("a partial success");
    assert_eq!(ps.rejected_data_points, 3);
    assert!(!ps.error_message.is_empty());

    let resp = within(
        "HTTP export",
        crate::test_http_client()
            .post(r.http_url())
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&req).unwrap())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/json"
    );
    let body: ExportMetricsServiceResponse =
        serde_json::from_slice(&resp.bytes().await.unwrap()).expect("an OTLP/JSON response");
    assert_eq!(body.partial_success.unwrap().rejected_data_points, 3);

    let got = r.capture.take();
    assert_eq!(got.len(), 2);
    for b in &got {
        assert_eq!(b.point_count(), 2);
        assert_eq!(b.resource_metrics[0].scope_metrics[0].metrics.len(), 1);
        assert_eq!(
            b.resource_metrics[0].scope_metrics[0].metrics[0].name,
            "good"
        );
    }
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "invalid")]
        ),
        6.0
    );
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 4.0);
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

// Guarantees: when the pipeline refuses (backpressure), gRPC clients get UNAVAILABLE with RetryInfo
// and HTTP clients 503 with Retry-After (both retryable per OTLP), nothing is taken, and the points
// are counted as refused with reason queue_full.
#[tokio::test]
async fn refusal_is_a_retryable_status_and_is_counted() {
    let r = start(&[]).await;
    r.capture.set_refusing(true);

    let status = within(
        "gRPC export",
        r.grpc_client()
            .await
            .export(gauge_batch("g", 3).into_request()),
    )
    .await
    .expect_err("the export is refused");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let retry = status
        .get_details_retry_info()
        .expect("the status carries RetryInfo");
    assert_eq!(retry.retry_delay, Some(Duration::from_secs(1)));

    let resp = post_protobuf(&r.http_url(), &gauge_batch("g", 2).into_request(), &[]).await;
    assert_eq!(resp.status(), 503);
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert_eq!(retry_after, 1);
    assert_eq!(
        resp.headers().get("content-type").unwrap(),
        "application/x-protobuf"
    );
    let body = RpcStatus::decode(resp.bytes().await.unwrap()).expect("a google.rpc.Status body");
    assert_eq!(body.code, 14, "UNAVAILABLE");

    assert!(r.capture.take().is_empty());
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "queue_full")]
        ),
        5.0
    );
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 0.0);

    // Once the pipeline takes data again, so does the receiver.
    r.capture.set_refusing(false);
    let resp = post_protobuf(&r.http_url(), &gauge_batch("g", 2).into_request(), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(r.capture.points(), 2);
}

// Guarantees: a gRPC request refused before its message is read (no room in the pipeline) gets
// UNAVAILABLE with RetryInfo even when its body is far larger than HTTP/2's flow-control window
// (the client is still sending it when the answer comes), the refusal is counted as a refused
// request, and the connection carries the next request.
#[tokio::test]
async fn a_large_request_refused_unread_gets_its_status_and_the_connection_goes_on() {
    let r = start(&[]).await;
    let mut client = r.grpc_client().await;
    // About 2 MiB, thirty times HTTP/2's initial window.
    let big = gauge_batch("g", 100_000).into_request();
    assert!(big.encoded_len() > 30 * 65_535, "{}", big.encoded_len());
    r.capture
        .unready
        .store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..3 {
        let status = within("gRPC export", client.export(big.clone()))
            .await
            .expect_err("the export is refused");
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(status.get_details_retry_info().is_some(), "{status:?}");
    }
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_requests_total",
            &[("reason", "queue_full")]
        ),
        3.0
    );
    assert!(r.capture.take().is_empty());

    r.capture
        .unready
        .store(false, std::sync::atomic::Ordering::SeqCst);
    within("gRPC export", client.export(big))
        .await
        .expect("the export is taken once there is room");
    assert_eq!(r.capture.points(), 100_000);
}

// Guarantees: cancelling the shutdown token ends the receiver's task (even with client connections
// still open) and releases both listening ports.
#[tokio::test]
async fn shutdown_ends_the_task_and_releases_the_ports() {
    let r = start(&[]).await;
    // Leave a gRPC and an HTTP connection open across the shutdown.
    let mut grpc = r.grpc_client().await;
    within(
        "gRPC export",
        grpc.export(gauge_batch("g", 1).into_request()),
    )
    .await
    .unwrap();
    let http = crate::test_http_client();
    let resp = within(
        "HTTP export",
        http.post(r.http_url())
            .header("content-type", "application/x-protobuf")
            .body(gauge_batch("g", 1).into_request().encode_to_vec())
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(r.capture.points(), 2);

    r.shutdown.cancel();
    within("receiver task to end", r.task)
        .await
        .expect("the receiver task does not panic");
    for addr in [r.grpc, r.http] {
        std::net::TcpListener::bind(addr)
            .unwrap_or_else(|e| panic!("port {addr} is still taken after shutdown: {e}"));
    }
    drop((grpc, http));
}

fn one_metric_request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
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

fn histogram_point(buckets: usize, bounds: usize) -> HistogramDataPoint {
    HistogramDataPoint {
        bucket_counts: vec![1; buckets],
        explicit_bounds: (0..bounds).map(|b| b as f64).collect(),
        count: buckets as u64,
        ..Default::default()
    }
}

// Guarantees: a metric without a name is left out and its points reported as rejected.
#[test]
fn sanitize_drops_a_metric_with_an_empty_name() {
    let mut req = gauge_batch("", 3).into_request();
    req.resource_metrics[0].scope_metrics[0].metrics.extend(
        gauge_batch("kept", 2).into_request().resource_metrics[0].scope_metrics[0]
            .metrics
            .clone(),
    );
    let (out, rejected) = validate::sanitize(req);
    let rejected = rejected.expect("the nameless metric is reported");
    assert_eq!(rejected.points, 3);
    assert!(
        rejected.message.contains("empty name"),
        "{}",
        rejected.message
    );
    let metrics = &out.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1);
    assert_eq!(metrics[0].name, "kept");
}

// Guarantees: a metric without data is left out and reported (with no points to count).
#[test]
fn sanitize_drops_a_metric_without_data() {
    let req = one_metric_request(vec![Metric {
        name: "empty".into(),
        ..Default::default()
    }]);
    let (out, rejected) = validate::sanitize(req);
    let rejected = rejected.expect("the metric without data is reported");
    assert_eq!(rejected.points, 0);
    assert!(rejected.message.contains("no data"), "{}", rejected.message);
    assert!(out.resource_metrics[0].scope_metrics[0].metrics.is_empty());
}

// Guarantees: only the histogram points whose bucket_counts do not have one more entry than
// explicit_bounds are removed; the metric and its good points stay (no buckets at all is fine).
#[test]
fn sanitize_removes_histogram_points_with_a_wrong_bucket_count() {
    let req = one_metric_request(vec![Metric {
        name: "latency".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![
                histogram_point(3, 2),
                histogram_point(2, 2),
                histogram_point(0, 0),
                histogram_point(5, 2),
            ],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    }]);
    let (out, rejected) = validate::sanitize(req);
    let rejected = rejected.expect("the bad points are reported");
    assert_eq!(rejected.points, 2);
    assert!(rejected.message.contains("latency"), "{}", rejected.message);
    let metrics = &out.resource_metrics[0].scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 1);
    let Some(metric::Data::Histogram(h)) = &metrics[0].data else {
        panic!("still a histogram")
    };
    assert_eq!(
        h.data_points,
        vec![histogram_point(3, 2), histogram_point(0, 0)]
    );
}

// Guarantees: a valid request passes untouched and nothing is reported.
#[test]
fn sanitize_passes_a_valid_request_untouched() {
    let req = rich_request();
    let (out, rejected) = validate::sanitize(req.clone());
    assert!(rejected.is_none());
    assert_eq!(out, req);
}

// ---------------------------------------------------------------------------------------------
// Tenants.

/// Starts the receiver with `auth` over a tenants file holding acme's token, in a folder of its
/// own named after the test.
async fn start_with_auth(test: &str) -> Running {
    let dir = tempfile::Builder::new()
        .prefix(&format!("sluice-otlp-{test}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().join("tenants.yaml");
    std::fs::write(
        &path,
        "tenants: { acme: { tokens: [acme-token], sla_tier: gold } }",
    )
    .unwrap();
    let node =
        sluice_core::config::parse_yaml(&format!("{{ tenants_file: {:?} }}", path.display()))
            .unwrap();
    let auth: sluice_core::config::Located<sluice_core::tenancy::AuthConfig> =
        sluice_core::config::from_node(&node).unwrap();
    Running {
        _tenants: Some(dir),
        ..start_with(&[], |c| c.auth = Some(auth)).await
    }
}

// Guarantees: with `auth`, a request with a known bearer token arrives with its tenant and the
// tenants file's info in the context, over gRPC and HTTP.
#[tokio::test]
async fn an_authenticated_request_carries_its_tenant() {
    let r = start_with_auth("authenticated").await;
    let mut req = tonic::Request::new(gauge_batch("g", 2).into_request());
    req.metadata_mut()
        .insert("authorization", "Bearer acme-token".parse().unwrap());
    within("gRPC export", r.grpc_client().await.export(req))
        .await
        .expect("the export succeeds");
    let resp = post_protobuf(
        &r.http_url(),
        &gauge_batch("g", 1).into_request(),
        &[("Authorization", "Bearer acme-token")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    for b in r.capture.take() {
        assert_eq!(b.context.tenant.as_deref(), Some("acme"));
        assert_eq!(b.context.sla_tier(), Some("gold"));
    }
    assert_eq!(
        r.counter(
            "sluice_receiver_accepted_points_total",
            &[("tenant", "acme")]
        ),
        3.0
    );
}

// Guarantees: credentials are checked before the message is decoded: a malformed message without
// credentials gets UNAUTHENTICATED / 401 (with WWW-Authenticate), not a decoding error, and is
// counted as refused with reason unauthenticated.
#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let r = start_with_auth("before_body").await;
    let mut grpc = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(format!("http://{}", r.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    grpc.ready().await.unwrap();
    let path = ::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    );
    let e = grpc
        .unary(
            // Field 1 holding bytes that are not a ResourceMetrics: malformed.
            tonic::Request::new(vec![0xffu8, 0xff, 0xff]),
            path,
            sluice_core::grpc_codec::OtlpCodec::<Vec<u8>, Vec<u8>>::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");

    let resp = crate::test_http_client()
        .post(r.http_url())
        .header("content-type", "application/x-protobuf")
        .header("authorization", "Bearer wrong")
        .body(vec![0xffu8, 0xff, 0xff])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().contains("Bearer"))
    );
    assert!(r.capture.take().is_empty());
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_requests_total",
            &[("reason", "unauthenticated")]
        ),
        2.0
    );
}
