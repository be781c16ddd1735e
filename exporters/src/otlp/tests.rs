use super::grpc::classify;
use super::http::parse_retry_after;
use super::*;
use ::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use sluice_core::batch::Batch;
use sluice_core::component::{ComponentId, ExporterConfig, ExporterContext};
use sluice_core::compression::{Compression, CompressionParams};
use sluice_core::config::types::{Duration as CfgDuration, HttpUrl};
use sluice_core::proto::otlp::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sluice_core::proto::otlp::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sluice_core::sending::{ExporterRuntime, QueueSettings, RetrySettings};
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::gauge_batch;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Fails the test if `fut` takes longer than 20s, instead of hanging.
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("timed out")
}

const ALL_CODES: [Code; 17] = [
    Code::Ok,
    Code::Cancelled,
    Code::Unknown,
    Code::InvalidArgument,
    Code::DeadlineExceeded,
    Code::NotFound,
    Code::AlreadyExists,
    Code::PermissionDenied,
    Code::ResourceExhausted,
    Code::FailedPrecondition,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unimplemented,
    Code::Internal,
    Code::Unavailable,
    Code::DataLoss,
    Code::Unauthenticated,
];

const RETRYABLE: [Code; 6] = [
    Code::Cancelled,
    Code::DeadlineExceeded,
    Code::Aborted,
    Code::OutOfRange,
    Code::Unavailable,
    Code::DataLoss,
];

// Guarantees: every gRPC code is classified per the OTLP spec: the six transient codes are
// retryable, RESOURCE_EXHAUSTED only with RetryInfo (whose delay is returned), all others permanent.
#[test]
fn classify_follows_the_otlp_retry_rules_for_every_code() {
    for code in ALL_CODES {
        let e = classify(&Status::new(code, "boom"));
        assert_eq!(e.retryable, RETRYABLE.contains(&code), "{code:?}");
        assert_eq!(e.retry_after, None, "{code:?}");
        assert!(e.message.contains("boom"), "{code:?}: {}", e.message);

        let delay = Duration::from_secs(3);
        let with_info =
            Status::with_error_details(code, "boom", ErrorDetails::with_retry_info(Some(delay)));
        let e = classify(&with_info);
        let retryable = RETRYABLE.contains(&code) || code == Code::ResourceExhausted;
        assert_eq!(e.retryable, retryable, "{code:?} with RetryInfo");
        assert_eq!(
            e.retry_after,
            retryable.then_some(delay),
            "{code:?} with RetryInfo"
        );
    }
}

// Guarantees: Retry-After is read as seconds or as an HTTP date (a past date means now), and
// anything else is ignored.
#[test]
fn parse_retry_after_reads_seconds_and_http_dates() {
    assert_eq!(parse_retry_after("5"), Some(Duration::from_secs(5)));
    assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
    assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));

    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    let d = parse_retry_after(&later).expect("an HTTP date");
    assert!(
        d > Duration::from_secs(27) && d <= Duration::from_secs(30),
        "{later} -> {d:?}"
    );
    assert_eq!(
        parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
        Some(Duration::ZERO)
    );

    for bad in ["", "soon", "-1", "1.5", "Wed, 21 Oct 2015"] {
        assert_eq!(parse_retry_after(bad), None, "{bad:?}");
    }
}

/// One request an in-test server received.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The body after Content-Encoding.
    fn decoded_body(&self) -> Vec<u8> {
        match self.header("content-encoding") {
            None => self.body.clone(),
            Some("gzip") => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(self.body.as_slice())
                    .read_to_end(&mut out)
                    .expect("a gzip body");
                out
            }
            Some(other) => panic!("unexpected Content-Encoding {other}"),
        }
    }

    fn protobuf(&self) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest::decode(self.decoded_body().as_slice())
            .expect("an OTLP protobuf body")
    }
}

/// An OTLP/HTTP server answering request `n` (from 0) with `answer(n)`.
struct HttpServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: JoinHandle<()>,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HttpServer {
    async fn start(answer: impl Fn(usize) -> Response + Send + Sync + 'static) -> HttpServer {
        let received = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(answer);
        let rec = received.clone();
        let app = axum::Router::new().route(
            "/v1/metrics",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let (rec, answer) = (rec.clone(), answer.clone());
                async move {
                    let n = {
                        let mut r = rec.lock().unwrap();
                        r.push(Received {
                            headers,
                            body: body.to_vec(),
                        });
                        r.len() - 1
                    };
                    answer(n)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HttpServer {
            addr,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn ok_protobuf(partial: Option<ExportMetricsPartialSuccess>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportMetricsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
    )
        .into_response()
}

fn http_config(addr: SocketAddr) -> OtlpHttpExporterConfig {
    OtlpHttpExporterConfig {
        endpoint: Some(HttpUrl::parse(&format!("http://{addr}")).unwrap()),
        metrics_endpoint: None,
        encoding: HttpEncoding::Proto,
        compression: Compression::default(),
        compression_params: CompressionParams::default(),
        timeout: CfgDuration::from_secs(5),
        headers: BTreeMap::new(),
        tenant_header: None,
        default_tenant: "anonymous".into(),
        sending_queue: QueueSettings::default(),
        retry_on_failure: RetrySettings::default(),
        max_age: None,
        sample_age_limit: None,
    }
}

/// The outcome of running batches through the real sending engine.
struct Run {
    telemetry: Arc<Telemetry>,
    exporter: String,
    took: Duration,
}

impl Run {
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("exporter", self.exporter.as_str())];
        all.extend_from_slice(labels);
        self.telemetry.value(name, &all)
    }
    fn sent(&self) -> f64 {
        self.value("sluice_exporter_sent_points_total", &[])
    }
    fn retries(&self) -> f64 {
        self.value("sluice_exporter_retries_total", &[])
    }
    fn dropped(&self, reason: &str) -> f64 {
        self.value(
            "sluice_exporter_dropped_points_total",
            &[("reason", reason)],
        )
    }
}

/// Builds the exporter, queues `batches` in its sending engine and shuts it down with a deadline
/// long enough for every send and retry these tests expect.
async fn run(id: &str, cfg: &dyn ExporterConfig, batches: Vec<Batch>) -> Run {
    let telemetry = Arc::new(Telemetry::new());
    let id = ComponentId::parse(id).unwrap();
    let exporter = cfg
        .build(ExporterContext {
            id: id.clone(),
            telemetry: telemetry.clone(),
        })
        .expect("the exporter builds");
    let start = Instant::now();
    let runtime = ExporterRuntime::spawn(id.clone(), exporter, cfg.sending(), telemetry.clone())
        .expect("the exporter starts");
    for b in batches {
        assert!(runtime.queue.has_room(b.point_count()));
        runtime.queue.push(b);
    }
    within(runtime.shutdown(tokio::time::Instant::now() + Duration::from_secs(10))).await;
    Run {
        telemetry,
        exporter: id.to_string(),
        took: start.elapsed(),
    }
}

// Guarantees: a 503 with Retry-After is retried after the time the server asked for, and the
// batch is then delivered exactly once (same body) and counted as sent, with one retry.
#[tokio::test]
async fn http_503_is_retried_after_retry_after() {
    let server = HttpServer::start(|n| {
        if n == 0 {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                "busy",
            )
                .into_response()
        } else {
            ok_protobuf(None)
        }
    })
    .await;
    let batch = gauge_batch("m", 5);
    let r = run(
        "otlp_http/test",
        &http_config(server.addr),
        vec![batch.clone()],
    )
    .await;
    let got = server.received();
    assert_eq!(got.len(), 2, "one failed attempt, one delivery");
    assert_eq!(got[0].protobuf(), batch.to_request());
    assert_eq!(got[1].protobuf(), batch.to_request());
    assert_eq!(r.sent(), 5.0);
    assert_eq!(r.retries(), 1.0);
    assert_eq!(r.value("sluice_exporter_failed_points_total", &[]), 5.0);
    assert_eq!(r.value("sluice_exporter_dropped_points_total", &[]), 0.0);
    assert!(
        r.took >= Duration::from_millis(900),
        "Retry-After: 1 not honoured: delivered after {:?}",
        r.took
    );
}

// Guarantees: a 400 is permanent: the batch is dropped with reason permanent_error after one
// attempt, without retrying.
#[tokio::test]
async fn http_400_is_dropped_without_retry() {
    let server = HttpServer::start(|_| (StatusCode::BAD_REQUEST, "bad data").into_response()).await;
    let r = run(
        "otlp_http/test",
        &http_config(server.addr),
        vec![gauge_batch("m", 4)],
    )
    .await;
    assert_eq!(server.received().len(), 1);
    assert_eq!(r.dropped("permanent_error"), 4.0);
    assert_eq!(r.retries(), 0.0);
    assert_eq!(r.sent(), 0.0);
}

// Guarantees: points the server rejects in a partial success are counted as dropped with reason
// rejected, and only the rest as sent; the batch is not resent.
#[tokio::test]
async fn http_partial_success_counts_rejected_points() {
    let server = HttpServer::start(|_| {
        ok_protobuf(Some(ExportMetricsPartialSuccess {
            rejected_data_points: 2,
            error_message: "two points were stale".into(),
        }))
    })
    .await;
    let r = run(
        "otlp_http/test",
        &http_config(server.addr),
        vec![gauge_batch("m", 5)],
    )
    .await;
    assert_eq!(server.received().len(), 1);
    assert_eq!(r.dropped("rejected"), 2.0);
    assert_eq!(r.sent(), 3.0);
    assert_eq!(r.retries(), 0.0);
}

// Guarantees: requests go to `<endpoint>/v1/metrics` with the configured headers, as gzip-compressed
// OTLP protobuf by default, and the body decodes to the batch.
#[tokio::test]
async fn http_sends_headers_and_gzip_protobuf_by_default() {
    let server = HttpServer::start(|_| ok_protobuf(None)).await;
    let mut cfg = http_config(server.addr);
    cfg.headers = BTreeMap::from([
        ("Authorization".to_string(), "Bearer s3cret".to_string()),
        ("X-Scope-OrgID".to_string(), "tenant-1".to_string()),
    ]);
    let batch = gauge_batch("m", 3);
    let r = run("otlp_http/test", &cfg, vec![batch.clone()]).await;
    let got = server.received();
    assert_eq!(got.len(), 1);
    let req = &got[0];
    assert_eq!(req.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(req.header("x-scope-orgid"), Some("tenant-1"));
    assert_eq!(req.header("content-encoding"), Some("gzip"));
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert!(req.header("user-agent").unwrap().starts_with("sluice/"));
    assert_eq!(req.protobuf(), batch.to_request());
    assert_eq!(r.sent(), 3.0);
}

// Guarantees: with `encoding: json` the body is OTLP/JSON (camelCase fields, 64-bit integers as
// strings) that decodes to the batch, and a JSON response is understood.
#[tokio::test]
async fn http_json_encoding_sends_otlp_json() {
    let server = HttpServer::start(|_| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"partialSuccess":{"rejectedDataPoints":"1","errorMessage":"one bad"}}"#,
        )
            .into_response()
    })
    .await;
    let mut cfg = http_config(server.addr);
    cfg.encoding = HttpEncoding::Json;
    let batch = gauge_batch("m", 3);
    let r = run("otlp_http/test", &cfg, vec![batch.clone()]).await;
    let got = server.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("content-type"), Some("application/json"));
    assert_eq!(got[0].header("content-encoding"), Some("gzip"));
    let body = got[0].decoded_body();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    let point =
        &json["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["gauge"]["dataPoints"][0];
    assert_eq!(point["timeUnixNano"], "1700000000000000000", "{json}");
    let decoded: ExportMetricsServiceRequest = serde_json::from_slice(&body).unwrap();
    assert_eq!(decoded, batch.to_request());
    assert_eq!(r.dropped("rejected"), 1.0);
    assert_eq!(r.sent(), 2.0);
}

// Guarantees: `compression: none` sends the body as is, without Content-Encoding.
#[tokio::test]
async fn http_without_compression_sends_a_plain_body() {
    let server = HttpServer::start(|_| ok_protobuf(None)).await;
    let mut cfg = http_config(server.addr);
    cfg.compression = Compression::None;
    let batch = gauge_batch("m", 2);
    run("otlp_http/test", &cfg, vec![batch.clone()]).await;
    let got = server.received();
    assert_eq!(got[0].header("content-encoding"), None);
    assert_eq!(
        ExportMetricsServiceRequest::decode(got[0].body.as_slice()).unwrap(),
        batch.to_request()
    );
}

/// An OTLP/gRPC server recording each call's metadata and request; answers the first calls with
/// `failures`, in order, then with success.
#[derive(Clone, Default)]
struct GrpcSink {
    received: Arc<Mutex<Vec<(tonic::metadata::MetadataMap, ExportMetricsServiceRequest)>>>,
    failures: Arc<Mutex<Vec<Status>>>,
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, Status> {
        let md = request.metadata().clone();
        self.received
            .lock()
            .unwrap()
            .push((md, request.into_inner()));
        let mut failures = self.failures.lock().unwrap();
        if !failures.is_empty() {
            return Err(failures.remove(0));
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

struct GrpcServer {
    addr: SocketAddr,
    sink: GrpcSink,
    task: JoinHandle<()>,
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcServer {
    async fn start(failures: Vec<Status>) -> GrpcServer {
        let sink = GrpcSink {
            failures: Arc::new(Mutex::new(failures)),
            ..Default::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = MetricsServiceServer::new(sink.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Zstd);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
        GrpcServer { addr, sink, task }
    }

    fn received(&self) -> Vec<(tonic::metadata::MetadataMap, ExportMetricsServiceRequest)> {
        self.sink.received.lock().unwrap().clone()
    }
}

fn grpc_config(addr: SocketAddr) -> OtlpGrpcExporterConfig {
    OtlpGrpcExporterConfig {
        endpoint: addr.to_string(),
        compression: Compression::default(),
        compression_params: CompressionParams::default(),
        timeout: CfgDuration::from_secs(5),
        headers: BTreeMap::new(),
        tenant_header: None,
        default_tenant: "anonymous".into(),
        sending_queue: QueueSettings::default(),
        retry_on_failure: RetrySettings::default(),
        max_age: None,
        sample_age_limit: None,
    }
}

// Guarantees: the `otlp` exporter delivers the batch unchanged over gRPC (gzip by default), with the
// configured headers as call metadata (keys lowercased), and counts it as sent.
#[tokio::test]
async fn grpc_delivers_the_batch_with_headers_as_metadata() {
    let server = GrpcServer::start(Vec::new()).await;
    let mut cfg = grpc_config(server.addr);
    cfg.headers = BTreeMap::from([
        ("Authorization".to_string(), "Bearer s3cret".to_string()),
        ("X-Scope-OrgID".to_string(), "tenant-1".to_string()),
    ]);
    let batch = gauge_batch("m", 4);
    let r = run("otlp/test", &cfg, vec![batch.clone()]).await;
    let got = server.received();
    assert_eq!(got.len(), 1);
    let (md, req) = &got[0];
    assert_eq!(req, &batch.to_request());
    assert_eq!(md.get("authorization").unwrap(), "Bearer s3cret");
    assert_eq!(md.get("x-scope-orgid").unwrap(), "tenant-1");
    assert_eq!(md.get("grpc-encoding").unwrap(), "gzip");
    assert_eq!(r.sent(), 4.0);
    assert_eq!(r.retries(), 0.0);
}

// Guarantees: the `otlp` exporter compresses requests itself with the configured codec and level
// (tonic's own gzip has a fixed level), and a real gRPC server reads every combination: the batch
// arrives unchanged, with `grpc-encoding` naming the codec, or none when uncompressed.
#[tokio::test]
async fn grpc_compresses_with_the_configured_codec_and_level() {
    for (compression, level, encoding) in [
        (Compression::Gzip, None, Some("gzip")),
        (Compression::Gzip, Some(9), Some("gzip")),
        (Compression::Zstd, None, Some("zstd")),
        (Compression::Zstd, Some(19), Some("zstd")),
        (Compression::None, None, None),
    ] {
        let server = GrpcServer::start(Vec::new()).await;
        let mut cfg = grpc_config(server.addr);
        cfg.compression = compression;
        cfg.compression_params = CompressionParams { level };
        let batch = gauge_batch("m", 5);
        let r = run("otlp/test", &cfg, vec![batch.clone()]).await;
        let got = server.received();
        assert_eq!(got.len(), 1, "{compression:?} {level:?}");
        let (md, req) = &got[0];
        assert_eq!(req, &batch.to_request(), "{compression:?} {level:?}");
        let sent = md.get("grpc-encoding").map(|v| v.to_str().unwrap());
        assert_eq!(sent, encoding, "{compression:?} {level:?}");
        assert_eq!(r.sent(), 5.0);
    }
}

// Guarantees: `compression_params.level` out of its codec's range, or set with `compression: none`,
// is a config error at the setting's line and column; unknown keys in it are refused.
#[test]
fn compression_params_are_validated_with_their_position() {
    use sluice_core::component::{Class, parse_config};
    use sluice_core::config::{LoadContext, component_node};
    let c: OtlpHttpExporterConfig = parse_exporter(
        "otlp_http",
        "endpoint: http://gw:4318\ncompression: zstd\ncompression_params:\n  level: 22",
    )
    .unwrap();
    assert_eq!(c.compression_params.level, Some(22));
    for (body, message) in [
        ("compression_params:\n  level: 10", "use 1 to 9"),
        (
            "compression: zstd\ncompression_params:\n  level: 23",
            "use 1 to 22",
        ),
        (
            "compression: none\ncompression_params:\n  level: 1",
            "compression none",
        ),
        ("compression_params:\n  levle: 1", "levle"),
    ] {
        let text = format!(
            "exporters:\n  otlp:\n    endpoint: 127.0.0.1:4317\n    {}\n",
            body.replace('\n', "\n    ")
        );
        let id = ComponentId::parse("otlp").unwrap();
        let node = component_node(&text, Class::Exporter, &id).expect("an exporter node");
        let ctx = LoadContext {
            base_dir: std::path::Path::new(".").into(),
        };
        let errs = parse_config::<OtlpGrpcExporterConfig>(&node, &ctx).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].message.contains(message), "{errs:?}");
        let line = text.lines().position(|l| l.contains("  lev")).unwrap() + 1;
        assert_eq!(errs[0].pos.line as usize, line, "{body}: {errs:?}");
    }
}

// Guarantees: over gRPC, UNAVAILABLE is retried (waiting at least the server's RetryInfo delay) and
// the same batch then delivered; INVALID_ARGUMENT is dropped as permanent_error without retry.
#[tokio::test]
async fn grpc_retries_transient_codes_and_drops_permanent_ones() {
    let delay = Duration::from_millis(300);
    let server = GrpcServer::start(vec![Status::with_error_details(
        Code::Unavailable,
        "busy",
        ErrorDetails::with_retry_info(Some(delay)),
    )])
    .await;
    let batch = gauge_batch("m", 3);
    let r = run("otlp/test", &grpc_config(server.addr), vec![batch.clone()]).await;
    let got = server.received();
    assert_eq!(got.len(), 2);
    // The retry sends the request encoded for the first attempt: the same points.
    assert_eq!(got[0].1, batch.to_request());
    assert_eq!(got[1].1, batch.to_request());
    assert_eq!(r.sent(), 3.0);
    assert_eq!(r.retries(), 1.0);
    assert!(r.took >= delay, "RetryInfo not honoured: {:?}", r.took);

    let server = GrpcServer::start(vec![Status::invalid_argument("bad data")]).await;
    let r = run(
        "otlp/test",
        &grpc_config(server.addr),
        vec![gauge_batch("m", 3)],
    )
    .await;
    assert_eq!(server.received().len(), 1);
    assert_eq!(r.dropped("permanent_error"), 3.0);
    assert_eq!(r.retries(), 0.0);
    assert_eq!(r.sent(), 0.0);
}

/// `batch` for `tenant` (or none).
fn for_tenant(mut batch: Batch, tenant: Option<&str>) -> Batch {
    batch.context.tenant = tenant.map(Arc::from);
    batch
}

// Guarantees: with `tenant_header`, the `otlp_http` exporter sends each batch's tenant in that
// header, `default_tenant` for a batch without one, and `${tenant}` in the endpoint is replaced
// by the batch's tenant.
#[tokio::test]
async fn http_sends_each_batch_with_its_tenant_header_and_url() {
    let received = Arc::new(Mutex::new(Vec::new()));
    let rec = received.clone();
    let app = axum::Router::new().route(
        "/{tenant}/v1/metrics",
        axum::routing::post(
            move |axum::extract::Path(t): axum::extract::Path<String>, headers: HeaderMap| {
                let rec = rec.clone();
                async move {
                    let h = headers
                        .get("x-scope-orgid")
                        .map(|v| v.to_str().unwrap().to_string());
                    rec.lock().unwrap().push((t, h));
                    ok_protobuf(None)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut cfg = http_config(addr);
    cfg.endpoint = Some(HttpUrl::parse(&format!("http://{addr}/${{tenant}}")).unwrap());
    cfg.tenant_header = Some("X-Scope-OrgID".into());
    cfg.default_tenant = "nobody".into();
    cfg.sending_queue.num_consumers = 1;
    let batches = vec![
        for_tenant(gauge_batch("m", 2), Some("acme")),
        for_tenant(gauge_batch("m", 2), None),
        for_tenant(gauge_batch("m", 2), Some("globex")),
    ];
    let r = run("otlp_http/test", &cfg, batches).await;
    task.abort();
    let mut got = received.lock().unwrap().clone();
    got.sort();
    let want: Vec<(String, Option<String>)> = ["acme", "globex", "nobody"]
        .iter()
        .map(|t| (t.to_string(), Some(t.to_string())))
        .collect();
    assert_eq!(got, want);
    assert_eq!(
        r.value("sluice_exporter_sent_points_total", &[("tenant", "acme")]),
        2.0
    );
}

// Guarantees: with `tenant_header`, the `otlp` exporter sends each batch's tenant as call
// metadata under the lowercased key, and `default_tenant` for a batch without one.
#[tokio::test]
async fn grpc_sends_each_batch_with_its_tenant_metadata() {
    let server = GrpcServer::start(Vec::new()).await;
    let mut cfg = grpc_config(server.addr);
    cfg.tenant_header = Some("X-Scope-OrgID".into());
    cfg.sending_queue.num_consumers = 1;
    let batches = vec![
        for_tenant(gauge_batch("m", 1), Some("acme")),
        for_tenant(gauge_batch("m", 1), None),
    ];
    run("otlp/test", &cfg, batches).await;
    let mut got: Vec<String> = server
        .received()
        .iter()
        .map(|(md, _)| {
            md.get("x-scope-orgid")
                .unwrap()
                .to_str()
                .unwrap()
                .to_string()
        })
        .collect();
    got.sort();
    assert_eq!(got, ["acme", "anonymous"]);
}

/// Parses an exporter's YAML body as `exporters.<id>` of a config file: the config or its errors.
fn parse_exporter<T: sluice_core::component::Validate + serde::de::DeserializeOwned>(
    id: &str,
    yaml: &str,
) -> Result<T, String> {
    use sluice_core::component::{Class, parse_config};
    use sluice_core::config::{LoadContext, component_node};
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("exporters:\n  {id}:\n{indented}");
    let id = ComponentId::parse(id).unwrap();
    let node = component_node(&text, Class::Exporter, &id).expect("an exporter node");
    let ctx = LoadContext {
        base_dir: std::path::Path::new(".").into(),
    };
    parse_config::<T>(&node, &ctx).map_err(|errs| {
        errs.into_iter()
            .map(|e| e.message)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

// Guarantees: `tenant_header` and `default_tenant` are read from YAML (default `anonymous`), a
// `tenant_header` that is not a valid header name is a config error, and `${tenant}` in an
// `otlp_http` endpoint survives the config's `${env:...}` expansion.
#[test]
fn tenant_settings_are_read_and_validated() {
    let c: OtlpGrpcExporterConfig = parse_exporter(
        "otlp",
        "endpoint: 127.0.0.1:4317\ntenant_header: X-Scope-OrgID",
    )
    .unwrap();
    assert_eq!(c.tenant_header.as_deref(), Some("X-Scope-OrgID"));
    assert_eq!(c.default_tenant, "anonymous");
    let e = parse_exporter::<OtlpGrpcExporterConfig>(
        "otlp",
        "endpoint: 127.0.0.1:4317\ntenant_header: \"bad header\"",
    )
    .unwrap_err();
    assert!(e.contains("tenant_header"), "{e}");
    let c: OtlpHttpExporterConfig = parse_exporter(
        "otlp_http",
        "endpoint: http://gw:4318/${tenant}\ndefault_tenant: nobody",
    )
    .unwrap();
    assert_eq!(c.url().unwrap(), "http://gw:4318/${tenant}/v1/metrics");
    assert_eq!(c.default_tenant, "nobody");
    let e = parse_exporter::<OtlpHttpExporterConfig>(
        "otlp_http",
        "endpoint: http://gw:4318\ntenant_header: \"a:b\"",
    )
    .unwrap_err();
    assert!(e.contains("tenant_header"), "{e}");
}

/// A batch for tenant `acme` of `old` points two hours old, then `fresh` points of now.
fn aged_batch(old: usize, fresh: usize) -> Batch {
    use sluice_core::proto::otlp::metrics::v1::metric::Data;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut batch = for_tenant(gauge_batch("m", old + fresh), Some("acme"));
    let Some(Data::Gauge(g)) = &mut batch.resource_metrics[0].scope_metrics[0].metrics[0].data
    else {
        unreachable!("gauge_batch makes a gauge")
    };
    for (i, p) in g.data_points.iter_mut().enumerate() {
        p.time_unix_nano = if i < old {
            now - 7_200_000_000_000
        } else {
            now
        };
    }
    batch
}

// Guarantees: with `sample_age_limit`, points older than it are not sent but dropped and counted
// as `too_old` (a batch with nothing else is not sent at all); the rest is delivered and counted
// as sent, and the engine does not count the dropped points as sent as well.
#[tokio::test]
async fn http_sample_age_limit_drops_and_counts_too_old_points() {
    let server = HttpServer::start(|_| ok_protobuf(None)).await;
    let mut cfg = http_config(server.addr);
    cfg.sample_age_limit = Some(CfgDuration::from_secs(3600));
    let r = run(
        "otlp_http/test",
        &cfg,
        vec![aged_batch(3, 2), aged_batch(4, 0), aged_batch(0, 1)],
    )
    .await;
    let got = server.received();
    assert_eq!(got.len(), 2, "the batch with only old points is not sent");
    let sent_points: usize = got
        .iter()
        .map(|g| Batch::from_request(Default::default(), g.protobuf()).point_count())
        .sum();
    assert_eq!(sent_points, 3);
    assert_eq!(r.dropped("too_old"), 7.0);
    assert_eq!(r.sent(), 3.0);
    assert_eq!(r.value("sluice_exporter_dropped_points_total", &[]), 7.0);
}

// Guarantees: over gRPC, a batch retried after a transient failure has its too old points counted
// once, when it is finally delivered; without `sample_age_limit` nothing is dropped for age.
#[tokio::test]
async fn grpc_sample_age_limit_counts_once_across_retries() {
    let server = GrpcServer::start(vec![Status::unavailable("down")]).await;
    let mut cfg = grpc_config(server.addr);
    cfg.sample_age_limit = Some(CfgDuration::from_secs(3600));
    let r = run("otlp/test", &cfg, vec![aged_batch(3, 2)]).await;
    let got = server.received();
    assert_eq!(got.len(), 2, "one failure, one delivery");
    for (_, req) in &got {
        assert_eq!(
            Batch::from_request(Default::default(), req.clone()).point_count(),
            2
        );
    }
    assert_eq!(r.retries(), 1.0);
    assert_eq!(r.dropped("too_old"), 3.0);
    assert_eq!(r.sent(), 2.0);

    let server = GrpcServer::start(Vec::new()).await;
    let r = run(
        "otlp/test",
        &grpc_config(server.addr),
        vec![aged_batch(3, 2)],
    )
    .await;
    assert_eq!(r.dropped("too_old"), 0.0);
    assert_eq!(r.sent(), 5.0);
}
