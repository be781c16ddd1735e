//! Sends a [`Workload`]'s pre-built bodies to a collector over a few connections, as fast as the
//! collector takes them. Pushback (HTTP 429 and 5xx, gRPC `UNAVAILABLE` and `RESOURCE_EXHAUSTED`,
//! connection errors) is retried after a short backoff, without honouring Retry-After, until the
//! body is taken or the deadline passes; retries are counted. Anything else refuses the body for
//! good and is counted too. With tenants, body `i` goes to tenant `i mod tenants`, named by an
//! `X-Scope-OrgID` header.

use crate::workload::{Format, Workload};
use bytes::{BufMut, Bytes};
use prost::Message;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceResponse;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// First and longest wait before resending a body that was pushed back.
const MIN_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(250);
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Where to send: the collector's remote_write URL or OTLP/gRPC endpoint (`http://host:port`).
#[derive(Clone, Debug)]
pub struct Target {
    pub format: Format,
    pub url: String,
    /// Spread the bodies over this many tenants (`X-Scope-OrgID`); none when 0.
    pub tenants: usize,
}

/// The header naming a request's tenant (gRPC metadata keys are lowercase).
const TENANT_HEADER: &str = "x-scope-orgid";

/// The name of tenant `i` (0-based): `tenant-01`, `tenant-02`, ...
pub fn tenant(i: usize) -> String {
    format!("tenant-{:02}", i + 1)
}

/// What sending cost and what the collector said.
#[derive(Clone, Debug, Default)]
pub struct Sent {
    /// Samples or data points the collector accepted.
    pub points: u64,
    pub requests: u64,
    pub retries: u64,
    /// Bodies refused for good, and the points in them; OTLP partial-success rejections too.
    pub refused_requests: u64,
    pub refused_points: u64,
    /// The first refusal, for the report.
    pub first_error: Option<String>,
    /// Time from the first send to the last answer.
    pub elapsed: Duration,
    /// Bodies not sent because the deadline passed.
    pub unsent: u64,
}

#[derive(Default)]
struct Tally {
    points: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
    refused_requests: AtomicU64,
    refused_points: AtomicU64,
    unsent: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

enum Outcome {
    Accepted { rejected_points: u64 },
    Retry,
    Refused(String),
}

/// Sends the preamble, then every body over `connections` concurrent connections.
pub async fn send(
    workload: Arc<Workload>,
    target: Target,
    connections: usize,
    deadline: Instant,
) -> anyhow::Result<Sent> {
    let tally = Arc::new(Tally::default());
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..connections.max(1) {
        clients.push(Client::connect(&target).await?);
    }
    let tenants: Arc<Vec<Option<String>>> = Arc::new(if target.tenants == 0 {
        vec![None]
    } else {
        (0..target.tenants).map(|i| Some(tenant(i))).collect()
    });
    let started = Instant::now();
    for body in &workload.preamble {
        let c = &mut clients[0];
        send_one(c, body.clone(), tenants[0].as_deref(), 0, &tally, deadline).await;
    }
    let mut tasks = Vec::new();
    for mut client in clients {
        let (workload, tally, next) = (workload.clone(), tally.clone(), next.clone());
        let tenants = tenants.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Relaxed);
                let Some(body) = workload.bodies.get(i) else {
                    break;
                };
                let points = u64::from(workload.body_points[i]);
                let tenant = tenants[i % tenants.len()].as_deref();
                send_one(&mut client, body.clone(), tenant, points, &tally, deadline).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let first_error = tally.first_error.lock().expect("not poisoned").clone();
    Ok(Sent {
        points: tally.points.load(Relaxed),
        requests: tally.requests.load(Relaxed),
        retries: tally.retries.load(Relaxed),
        refused_requests: tally.refused_requests.load(Relaxed),
        refused_points: tally.refused_points.load(Relaxed),
        first_error,
        elapsed: started.elapsed(),
        unsent: tally.unsent.load(Relaxed),
    })
}

async fn send_one(
    client: &mut Client,
    body: Bytes,
    tenant: Option<&str>,
    points: u64,
    tally: &Tally,
    deadline: Instant,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if Instant::now() >= deadline {
            tally.unsent.fetch_add(points, Relaxed);
            return;
        }
        tally.requests.fetch_add(1, Relaxed);
        match client.send(body.clone(), tenant).await {
            Outcome::Accepted { rejected_points } => {
                tally
                    .points
                    .fetch_add(points - rejected_points.min(points), Relaxed);
                tally.refused_points.fetch_add(rejected_points, Relaxed);
                return;
            }
            Outcome::Retry => {
                tally.retries.fetch_add(1, Relaxed);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Outcome::Refused(e) => {
                tally.refused_requests.fetch_add(1, Relaxed);
                tally.refused_points.fetch_add(points, Relaxed);
                tally
                    .first_error
                    .lock()
                    .expect("not poisoned")
                    .get_or_insert(e);
                return;
            }
        }
    }
}

/// One connection to the collector.
enum Client {
    RemoteWrite { http: reqwest::Client, url: String },
    Otlp(tonic::client::Grpc<tonic::transport::Channel>),
}

impl Client {
    async fn connect(target: &Target) -> anyhow::Result<Client> {
        Ok(match target.format {
            Format::RemoteWrite => Client::RemoteWrite {
                // One client per connection, so that `connections` really is the connection count.
                http: reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(60))
                    .build()?,
                url: target.url.clone(),
            },
            Format::Otlp => {
                let channel = tonic::transport::Endpoint::from_shared(target.url.clone())?
                    .timeout(Duration::from_secs(60))
                    .connect()
                    .await?;
                Client::Otlp(tonic::client::Grpc::new(channel))
            }
        })
    }

    async fn send(&mut self, body: Bytes, tenant: Option<&str>) -> Outcome {
        match self {
            Client::RemoteWrite { http, url } => {
                let mut post = http.post(url.as_str());
                if let Some(t) = tenant {
                    post = post.header(TENANT_HEADER, t);
                }
                let sent = post
                    .header("Content-Encoding", "snappy")
                    .header("Content-Type", "application/x-protobuf")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .header("User-Agent", "sluice-bench")
                    .body(body)
                    .send()
                    .await;
                let Ok(resp) = sent else {
                    return Outcome::Retry;
                };
                let status = resp.status();
                if status.is_success() {
                    Outcome::Accepted { rejected_points: 0 }
                } else if status.as_u16() == 429 || status.is_server_error() {
                    Outcome::Retry
                } else {
                    let text = resp.text().await.unwrap_or_default();
                    Outcome::Refused(format!("HTTP {status}: {}", truncate(&text)))
                }
            }
            Client::Otlp(grpc) => {
                if grpc.ready().await.is_err() {
                    return Outcome::Retry;
                }
                let path = http::uri::PathAndQuery::from_static(EXPORT_PATH);
                let mut request = tonic::Request::new(body);
                if let Some(t) = tenant.and_then(|t| t.parse().ok()) {
                    request.metadata_mut().insert(TENANT_HEADER, t);
                }
                match grpc.unary(request, path, RawCodec).await {
                    Ok(resp) => Outcome::Accepted {
                        rejected_points: resp
                            .into_inner()
                            .partial_success
                            .map_or(0, |p| p.rejected_data_points.max(0) as u64),
                    },
                    Err(s) => match s.code() {
                        tonic::Code::Unavailable
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Cancelled
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Aborted => Outcome::Retry,
                        code => Outcome::Refused(format!("{code:?}: {}", truncate(s.message()))),
                    },
                }
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

/// Sends pre-encoded request bytes as they are; decodes the response.
#[derive(Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

struct ResponseDecoder;

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        ExportMetricsServiceResponse::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding the response: {e}")))
    }
}
