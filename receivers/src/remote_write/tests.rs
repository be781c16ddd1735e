use super::http::{EXEMPLARS_WRITTEN, HISTOGRAMS_WRITTEN, SAMPLES_WRITTEN};
use super::*;
use prost::Message;
use sluice_core::component::Consumer;
use sluice_core::component::{ComponentId, Refusal, RefusalKind};
use sluice_core::config::types::{ByteSize, Endpoint};
use sluice_core::prometheus::{MetricType, STALE_NAN, TranslateOptions, is_stale_nan, translate};
use sluice_core::proto::otlp::common::v1::{KeyValue, any_value};
use sluice_core::proto::otlp::metrics::v1::{
    Metric, NumberDataPoint, ResourceMetrics, metric::Data,
};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const RECEIVER: &str = "prometheus_remote_write/test";
const V1_TYPE: &str = "application/x-protobuf";
const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";
/// 2023-11-14T22:13:20Z in ms.
const T0: i64 = 1_700_000_000_000;

/// Fails the test if `fut` takes longer than 10s, instead of hanging.
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A consumer that takes batches, or refuses them with a set refusal.
#[derive(Default)]
struct Next {
    capture: Arc<Capture>,
    refusal: Mutex<Option<Refusal>>,
}

impl Consumer for Next {
    fn consume(&self, batch: Batch) -> Result<(), Refusal> {
        if let Some(r) = self.refusal.lock().unwrap().clone() {
            return Err(r);
        }
        self.capture.consume(batch)
    }
}

struct Running {
    addr: SocketAddr,
    next: Arc<Next>,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

async fn start_with(cfg: impl FnOnce(&mut RemoteWriteReceiverConfig)) -> Running {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut config = RemoteWriteReceiverConfig {
        endpoint: Endpoint(addr.to_string()),
        ..Default::default()
    };
    cfg(&mut config);
    let next = Arc::new(Next::default());
    let telemetry = Arc::new(Telemetry::new());
    let shutdown = CancellationToken::new();
    let task = within(
        "receiver start",
        config.start(ReceiverContext {
            id: ComponentId::parse(RECEIVER).unwrap(),
            next: next.clone(),
            shutdown: shutdown.clone(),
            telemetry: telemetry.clone(),
        }),
    )
    .await
    .expect("the receiver starts");
    Running {
        addr,
        next,
        telemetry,
        shutdown,
        task,
    }
}

async fn start() -> Running {
    start_with(|_| {}).await
}

struct Reply {
    status: u16,
    /// Header names lowercased.
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The three `*-Written` headers of a 2.0 answer.
    fn written(&self) -> (u64, u64, u64) {
        let get = |h| {
            self.header(h)
                .unwrap_or_else(|| panic!("no {h} header"))
                .parse()
                .unwrap()
        };
        (
            get(SAMPLES_WRITTEN),
            get(HISTOGRAMS_WRITTEN),
            get(EXEMPLARS_WRITTEN),
        )
    }
}

/// A minimal HTTP/1.1 POST (one request per connection), so that these tests depend on no HTTP
/// client's feature set.
async fn http_post(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = within("connect", tokio::net::TcpStream::connect(addr))
        .await
        .expect("connects");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading all of the body and close; that is fine.
    let _ = conn.write_all(body).await;
    let mut raw = Vec::new();
    within("response", conn.read_to_end(&mut raw))
        .await
        .expect("reads the response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
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
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

impl Running {
    async fn post_raw(&self, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        http_post(self.addr, "/api/v1/write", headers, &body).await
    }

    async fn post(&self, content_type: &str, message: Vec<u8>) -> Reply {
        let body = snap::raw::Encoder::new().compress_vec(&message).unwrap();
        self.post_raw(
            &[
                ("content-type", content_type),
                ("content-encoding", "snappy"),
                ("x-prometheus-remote-write-version", "0.1.0"),
            ],
            body,
        )
        .await
    }

    async fn post_v1(&self, req: &v1::WriteRequest) -> Reply {
        self.post(V1_TYPE, req.encode_to_vec()).await
    }

    async fn post_v2(&self, req: &v2::Request) -> Reply {
        self.post(V2_TYPE, req.encode_to_vec()).await
    }

    fn taken(&self) -> Vec<ResourceMetrics> {
        self.next
            .capture
            .take()
            .into_iter()
            .flat_map(|b| b.resource_metrics)
            .collect()
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut all = vec![("receiver", RECEIVER)];
        all.extend_from_slice(labels);
        self.telemetry.value(name, &all)
    }
}

fn labels(pairs: &[(&str, &str)]) -> Vec<v1::Label> {
    pairs
        .iter()
        .map(|(k, v)| v1::Label {
            name: k.to_string(),
            value: v.to_string(),
        })
        .collect()
}

fn series(pairs: &[(&str, &str)], samples: &[(f64, i64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels(pairs),
        samples: samples
            .iter()
            .map(|&(value, timestamp)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

fn metadata(family: &str, t: v1::metric_metadata::MetricType, help: &str) -> v1::MetricMetadata {
    v1::MetricMetadata {
        r#type: t as i32,
        metric_family_name: family.into(),
        help: help.into(),
        unit: String::new(),
    }
}

/// A 2.0 request builder that interns symbols.
#[derive(Default)]
struct V2 {
    req: v2::Request,
}

impl V2 {
    fn new() -> V2 {
        V2 {
            req: v2::Request {
                symbols: vec![String::new()],
                timeseries: Vec::new(),
            },
        }
    }

    fn sym(&mut self, s: &str) -> u32 {
        match self.req.symbols.iter().position(|x| x == s) {
            Some(i) => i as u32,
            None => {
                self.req.symbols.push(s.to_string());
                (self.req.symbols.len() - 1) as u32
            }
        }
    }

    fn refs(&mut self, pairs: &[(&str, &str)]) -> Vec<u32> {
        pairs
            .iter()
            .flat_map(|(k, v)| [self.sym(k), self.sym(v)])
            .collect()
    }

    fn series(
        &mut self,
        pairs: &[(&str, &str)],
        t: v2::metadata::MetricType,
        help: &str,
        unit: &str,
    ) -> &mut v2::TimeSeries {
        let labels_refs = self.refs(pairs);
        let metadata = Some(v2::Metadata {
            r#type: t as i32,
            help_ref: self.sym(help),
            unit_ref: self.sym(unit),
        });
        self.req.timeseries.push(v2::TimeSeries {
            labels_refs,
            metadata,
            ..Default::default()
        });
        self.req.timeseries.last_mut().unwrap()
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("attribute {key} is not a string: {other:?}"),
        }
    })
}

fn resource_attr(rm: &ResourceMetrics, key: &str) -> Option<String> {
    attr(&rm.resource.as_ref().unwrap().attributes, key)
}

fn metric<'a>(rms: &'a [ResourceMetrics], name: &str) -> &'a Metric {
    rms.iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn number_points(m: &Metric) -> &[NumberDataPoint] {
    match &m.data {
        Some(Data::Gauge(g)) => &g.data_points,
        Some(Data::Sum(s)) => &s.data_points,
        other => panic!("{} is not a gauge or sum: {other:?}", m.name),
    }
}

fn value(p: &NumberDataPoint) -> f64 {
    match p.value {
        Some(sluice_core::proto::otlp::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
        other => panic!("not a double: {other:?}"),
    }
}

fn prometheus_type(m: &Metric) -> Option<String> {
    attr(&m.metadata, "prometheus.type")
}

// Guarantees: a 1.0 request becomes one resource per (job, instance) with service.name /
// service.namespace / service.instance.id, names and other labels unchanged, timestamps in ns, and
// types from the request's metadata: a `_total` counter is a cumulative monotonic Sum, a gauge a
// Gauge, a classic histogram's series Gauges marked `prometheus.type: histogram`, untyped series
// Gauges marked `unknown`. Answer 204, no Written headers (1.0), points counted as accepted.
#[tokio::test]
async fn v1_request_becomes_resources_per_job_and_instance_typed_by_metadata() {
    use v1::metric_metadata::MetricType as T;
    let r = start().await;
    let req = v1::WriteRequest {
        timeseries: vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("instance", "10.0.0.1:9100"),
                    ("job", "shop/checkout"),
                ],
                &[(10.0, T0), (12.0, T0 + 15_000)],
            ),
            series(
                &[
                    ("__name__", "room_temperature_celsius"),
                    ("instance", "10.0.0.1:9100"),
                    ("job", "shop/checkout"),
                    ("room", "kitchen \"main\" ünïcode"),
                ],
                &[(-3.25, T0)],
            ),
            series(
                &[
                    ("__name__", "latency_seconds_bucket"),
                    ("instance", "10.0.0.2:9100"),
                    ("job", "shop/checkout"),
                    ("le", "0.5"),
                ],
                &[(7.0, T0)],
            ),
            series(&[("__name__", "mystery"), ("job", "batch")], &[(1.5, T0)]),
        ],
        metadata: vec![
            metadata("http_requests_total", T::Counter, "Requests served."),
            metadata("room_temperature_celsius", T::Gauge, "Temperature."),
            metadata("latency_seconds", T::Histogram, "Latency."),
        ],
    };
    let reply = r.post_v1(&req).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        reply.header(SAMPLES_WRITTEN),
        None,
        "1.0 answers carry no counts"
    );
    let rms = r.taken();
    assert_eq!(rms.len(), 3, "three (job, instance) pairs: {rms:#?}");

    let shop1 = &rms[0];
    assert_eq!(
        resource_attr(shop1, "service.namespace").as_deref(),
        Some("shop")
    );
    assert_eq!(
        resource_attr(shop1, "service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        resource_attr(shop1, "service.instance.id").as_deref(),
        Some("10.0.0.1:9100")
    );
    let batch = resource_attr(&rms[2], "service.name");
    assert_eq!(batch.as_deref(), Some("batch"));
    assert_eq!(resource_attr(&rms[2], "service.namespace"), None);
    assert_eq!(resource_attr(&rms[2], "service.instance.id"), None);

    let counter = metric(&rms, "http_requests_total");
    let Some(Data::Sum(sum)) = &counter.data else {
        panic!("a counter is a Sum: {counter:?}")
    };
    assert!(sum.is_monotonic);
    assert_eq!(sum.aggregation_temporality, 2, "cumulative");
    assert_eq!(counter.description, "Requests served.");
    assert_eq!(prometheus_type(counter), None);
    let points = number_points(counter);
    assert_eq!(points.len(), 2);
    assert_eq!(value(&points[0]), 10.0);
    assert_eq!(points[0].time_unix_nano, T0 as u64 * 1_000_000);
    assert_eq!(value(&points[1]), 12.0);
    assert_eq!(points[1].time_unix_nano, (T0 as u64 + 15_000) * 1_000_000);
    assert_eq!(
        points[0].attributes.len(),
        1,
        "job and instance are not attributes"
    );
    assert_eq!(attr(&points[0].attributes, "code").as_deref(), Some("200"));

    let gauge = metric(&rms, "room_temperature_celsius");
    assert!(matches!(gauge.data, Some(Data::Gauge(_))));
    assert_eq!(prometheus_type(gauge), None);
    let p = &number_points(gauge)[0];
    assert_eq!(value(p), -3.25);
    assert_eq!(
        attr(&p.attributes, "room").as_deref(),
        Some("kitchen \"main\" ünïcode")
    );

    let bucket = metric(&rms, "latency_seconds_bucket");
    assert!(matches!(bucket.data, Some(Data::Gauge(_))));
    assert_eq!(prometheus_type(bucket).as_deref(), Some("histogram"));
    assert_eq!(
        attr(&number_points(bucket)[0].attributes, "le").as_deref(),
        Some("0.5")
    );

    let mystery = metric(&rms, "mystery");
    assert!(matches!(mystery.data, Some(Data::Gauge(_))));
    assert_eq!(prometheus_type(mystery).as_deref(), Some("unknown"));

    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 5.0);
}

// Guarantees: label values may hold any character, the receiver's separators included: series
// (and job/instance pairs) that differ only in where those characters fall stay apart.
#[tokio::test]
async fn series_whose_values_hold_separators_stay_apart() {
    let r = start().await;
    let req = v1::WriteRequest {
        timeseries: vec![
            series(&[("__name__", "m"), ("a", "x\0b\0y")], &[(1.0, T0)]),
            series(&[("__name__", "m"), ("a", "x"), ("b", "y")], &[(2.0, T0)]),
            series(&[("__name__", "n"), ("job", "a\0+b")], &[(3.0, T0)]),
            series(
                &[("__name__", "n"), ("instance", "b\0-"), ("job", "a")],
                &[(4.0, T0)],
            ),
        ],
        metadata: vec![],
    };
    let reply = r.post_v1(&req).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let rms = r.taken();
    let points: Vec<&NumberDataPoint> = rms
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == "m")
        .flat_map(number_points)
        .collect();
    assert_eq!(points.len(), 2, "{rms:#?}");
    assert_eq!(attr(&points[0].attributes, "a").as_deref(), Some("x\0b\0y"));
    assert_eq!(attr(&points[0].attributes, "b"), None);
    assert_eq!(attr(&points[1].attributes, "b").as_deref(), Some("y"));
    let jobs: Vec<Option<String>> = rms
        .iter()
        .map(|rm| resource_attr(rm, "service.name"))
        .collect();
    assert!(jobs.contains(&Some("a\0+b".to_string())), "{jobs:?}");
    assert!(jobs.contains(&Some("a".to_string())), "{jobs:?}");
}

// Guarantees: a label set sent in several `TimeSeries` of one request (its labels in any order,
// with other series and, in 2.0, a series of bad references between) is one series: its samples
// are the points of one series, together, in both versions.
#[tokio::test]
async fn a_label_set_sent_twice_in_one_request_is_one_series() {
    let r = start().await;
    let (ab, ba) = (
        [("__name__", "m"), ("a", "1"), ("b", "2")],
        [("b", "2"), ("__name__", "m"), ("a", "1")],
    );
    let other = [("__name__", "m"), ("a", "1"), ("b", "3")];
    let v1_req = v1::WriteRequest {
        timeseries: vec![
            series(&ab, &[(1.0, T0)]),
            series(&other, &[(2.0, T0)]),
            series(&ba, &[(3.0, T0 + 1)]),
        ],
        metadata: vec![],
    };
    let mut v2_req = V2::new();
    let gauge = v2::metadata::MetricType::Gauge;
    for (pairs, value, t) in [(&ab, 1.0, T0), (&other, 2.0, T0), (&ba, 3.0, T0 + 1)] {
        v2_req.series(pairs, gauge, "", "").samples = vec![v2::Sample {
            value,
            timestamp: t,
            start_timestamp: 0,
        }];
        if value == 2.0 {
            v2_req.req.timeseries.push(v2::TimeSeries {
                labels_refs: vec![1, 999],
                samples: vec![v2::Sample::default()],
                ..Default::default()
            });
        }
    }
    assert_eq!(r.post_v1(&v1_req).await.status, 204);
    assert_eq!(r.post_v2(&v2_req.req).await.status, 400);
    let taken = r.taken();
    assert_eq!(taken.len(), 2, "{taken:#?}");
    for rm in taken {
        let rms = [rm];
        let points = number_points(metric(&rms, "m"));
        let b: Vec<Option<String>> = points.iter().map(|p| attr(&p.attributes, "b")).collect();
        let values: Vec<f64> = points.iter().map(value).collect();
        assert_eq!(values, [1.0, 3.0, 2.0], "{points:#?}");
        assert_eq!(b, [Some("2".into()), Some("2".into()), Some("3".into())]);
    }
}

// Guarantees: Prometheus sends 1.0 metadata in requests of its own; the receiver remembers it, so
// that the samples of later requests are typed by it.
#[tokio::test]
async fn v1_metadata_from_an_earlier_request_types_later_samples() {
    use v1::metric_metadata::MetricType as T;
    let r = start().await;
    let only_metadata = v1::WriteRequest {
        timeseries: Vec::new(),
        metadata: vec![
            metadata("jobs_done_total", T::Counter, "Jobs."),
            metadata("rpc_seconds", T::Summary, "RPC latency."),
        ],
    };
    assert_eq!(r.post_v1(&only_metadata).await.status, 204);
    let req = v1::WriteRequest {
        timeseries: vec![
            series(&[("__name__", "jobs_done_total")], &[(3.0, T0)]),
            series(
                &[("__name__", "rpc_seconds"), ("quantile", "0.5")],
                &[(0.2, T0)],
            ),
            series(&[("__name__", "rpc_seconds_count")], &[(9.0, T0)]),
        ],
        metadata: Vec::new(),
    };
    assert_eq!(r.post_v1(&req).await.status, 204);
    let rms = r.taken();
    assert!(matches!(
        metric(&rms, "jobs_done_total").data,
        Some(Data::Sum(_))
    ));
    for name in ["rpc_seconds", "rpc_seconds_count"] {
        let m = metric(&rms, name);
        assert!(matches!(m.data, Some(Data::Gauge(_))), "{name}");
        assert_eq!(prometheus_type(m).as_deref(), Some("summary"), "{name}");
        assert_eq!(m.description, "RPC latency.");
    }
}

// Guarantees: the family lookup for 1.0 metadata only matches suffixes that the family's type has.
#[test]
fn metadata_lookup_matches_suffixes_by_type() {
    use v1::metric_metadata::MetricType as T;
    let cache = decode::MetadataCache::default();
    cache.update(&[
        metadata("h", T::Histogram, ""),
        metadata("c", T::Counter, ""),
        metadata("g", T::Gauge, ""),
    ]);
    assert_eq!(cache.meta_type("h_bucket"), MetricType::Histogram);
    assert_eq!(cache.meta_type("h_sum"), MetricType::Histogram);
    assert_eq!(cache.meta_type("c_total"), MetricType::Counter);
    assert_eq!(cache.meta_type("g"), MetricType::Gauge);
    assert_eq!(cache.meta_type("g_sum"), MetricType::Unknown);
    assert_eq!(cache.meta_type("c_bucket"), MetricType::Unknown);
}

// Guarantees: a 2.0 request is decoded through its symbol table; per-series metadata types it
// (counter -> Sum with the start timestamp, gauge -> Gauge with help and unit); exemplars land on
// the point closest in time with trace/span ids decoded; the answer is 204 with exact Written
// counts.
#[tokio::test]
async fn v2_request_is_decoded_with_metadata_exemplars_and_written_counts() {
    use v2::metadata::MetricType as T;
    let r = start().await;
    let mut b = V2::new();
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let span = "b7ad6b7169203331";
    let ex_refs = b.refs(&[("span_id", span), ("trace_id", trace), ("user", "x")]);
    let s = b.series(
        &[
            ("__name__", "orders_total"),
            ("instance", "a:1"),
            ("job", "shop"),
        ],
        T::Counter,
        "Orders.",
        "",
    );
    s.samples = vec![
        v2::Sample {
            value: 1.0,
            timestamp: T0,
            start_timestamp: T0 - 60_000,
        },
        v2::Sample {
            value: 4.0,
            timestamp: T0 + 1_000,
            start_timestamp: T0 - 60_000,
        },
    ];
    s.exemplars = vec![v2::Exemplar {
        labels_refs: ex_refs,
        value: 0.7,
        timestamp: T0 + 900,
    }];
    let s = b.series(
        &[
            ("__name__", "queue_bytes"),
            ("instance", "a:1"),
            ("job", "shop"),
            ("queue", "q1"),
        ],
        T::Gauge,
        "Queue size.",
        "bytes",
    );
    s.samples = vec![v2::Sample {
        value: 512.0,
        timestamp: T0,
        start_timestamp: 0,
    }];

    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.written(), (3, 0, 1));
    let rms = r.taken();
    assert_eq!(rms.len(), 1);

    let orders = metric(&rms, "orders_total");
    assert!(matches!(&orders.data, Some(Data::Sum(s)) if s.is_monotonic));
    assert_eq!(orders.description, "Orders.");
    let points = number_points(orders);
    assert_eq!(
        points[0].start_time_unix_nano,
        (T0 as u64 - 60_000) * 1_000_000
    );
    assert!(points[0].exemplars.is_empty());
    let e = &points[1].exemplars[0];
    assert_eq!(e.trace_id, hex(trace));
    assert_eq!(e.span_id, hex(span));
    assert_eq!(e.time_unix_nano, (T0 as u64 + 900) * 1_000_000);
    assert_eq!(attr(&e.filtered_attributes, "user").as_deref(), Some("x"));
    assert_eq!(e.filtered_attributes.len(), 1);

    let q = metric(&rms, "queue_bytes");
    assert!(matches!(q.data, Some(Data::Gauge(_))));
    assert_eq!(q.unit, "bytes", "kept: the name ends with it");
    assert_eq!(q.description, "Queue size.");
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 3.0);
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

// Guarantees: a StaleNaN sample keeps its exact bits and gets the "no recorded value" flag, in
// both versions; an ordinary NaN is not flagged.
#[tokio::test]
async fn stale_nan_is_kept_bit_exact_and_flagged() {
    let r = start().await;
    let stale = f64::from_bits(STALE_NAN);
    let req = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "up"), ("job", "j")],
                &[(1.0, T0), (stale, T0 + 1)],
            ),
            series(
                &[("__name__", "nan_gauge"), ("job", "j")],
                &[(f64::NAN, T0)],
            ),
        ],
        metadata: Vec::new(),
    };
    assert_eq!(r.post_v1(&req).await.status, 204);
    let mut b = V2::new();
    b.series(
        &[("__name__", "up2")],
        v2::metadata::MetricType::Gauge,
        "",
        "",
    )
    .samples = vec![v2::Sample {
        value: stale,
        timestamp: T0,
        start_timestamp: 0,
    }];
    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 204);
    assert_eq!(reply.written(), (1, 0, 0));

    let rms = r.taken();
    let up = number_points(metric(&rms, "up"));
    assert_eq!(up[0].flags, 0);
    assert_eq!(value(&up[1]).to_bits(), STALE_NAN, "bit-exact");
    assert_eq!(up[1].flags, build::FLAG_NO_RECORDED_VALUE);
    let nan = &number_points(metric(&rms, "nan_gauge"))[0];
    assert!(value(nan).is_nan() && !is_stale_nan(value(nan)));
    assert_eq!(nan.flags, 0);
    let up2 = &number_points(metric(&rms, "up2"))[0];
    assert_eq!(value(up2).to_bits(), STALE_NAN);
    assert_eq!(up2.flags, build::FLAG_NO_RECORDED_VALUE);
}

fn span(offset: i32, length: u32) -> v2::BucketSpan {
    v2::BucketSpan { offset, length }
}

// Guarantees: native histograms become OTLP exponential histograms (scale = schema, OTLP offset =
// Prometheus index - 1, spans and deltas expanded into dense counts with zeros in the gaps), and
// custom-bucket ones explicit histograms; a stale one is flagged with its sum kept bit-exact.
#[tokio::test]
async fn native_histograms_become_exponential_and_explicit_histograms() {
    use v2::histogram::{Count, ZeroCount};
    let r = start().await;
    let mut b = V2::new();
    let exp = v2::Histogram {
        count: Some(Count::CountInt(12)),
        sum: 18.5,
        schema: 1,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(2)),
        // Buckets at indexes 1, 2 and 5 (counts 3, 1, 2), then -2 (count 4) on the negative side.
        positive_spans: vec![span(1, 2), span(2, 1)],
        positive_deltas: vec![3, -2, 1],
        negative_spans: vec![span(-2, 1)],
        negative_deltas: vec![4],
        timestamp: T0,
        start_timestamp: T0 - 5_000,
        ..Default::default()
    };
    let stale = v2::Histogram {
        sum: f64::from_bits(STALE_NAN),
        schema: 1,
        timestamp: T0 + 1_000,
        count: Some(Count::CountInt(0)),
        ..Default::default()
    };
    b.series(
        &[("__name__", "rpc_duration_seconds"), ("job", "j")],
        v2::metadata::MetricType::Histogram,
        "",
        "",
    )
    .histograms = vec![exp, stale];
    let custom = v2::Histogram {
        count: Some(Count::CountFloat(6.0)),
        sum: 3.0,
        schema: -53,
        custom_values: vec![0.1, 1.0, 10.0],
        positive_spans: vec![span(0, 2), span(1, 1)],
        positive_counts: vec![1.0, 2.0, 3.0],
        timestamp: T0,
        ..Default::default()
    };
    b.series(
        &[("__name__", "size_bytes"), ("job", "j")],
        v2::metadata::MetricType::Histogram,
        "",
        "",
    )
    .histograms = vec![custom];

    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(reply.written(), (0, 3, 0));
    let rms = r.taken();

    let m = metric(&rms, "rpc_duration_seconds");
    let Some(Data::ExponentialHistogram(h)) = &m.data else {
        panic!("an exponential histogram: {m:?}")
    };
    assert_eq!(h.aggregation_temporality, 2);
    let p = &h.data_points[0];
    assert_eq!(
        (p.scale, p.count, p.sum, p.zero_count),
        (1, 12, Some(18.5), 2)
    );
    assert_eq!(p.zero_threshold, 0.001);
    assert_eq!(p.time_unix_nano, T0 as u64 * 1_000_000);
    assert_eq!(p.start_time_unix_nano, (T0 as u64 - 5_000) * 1_000_000);
    let pos = p.positive.as_ref().unwrap();
    assert_eq!(pos.offset, 0);
    assert_eq!(pos.bucket_counts, vec![3, 1, 0, 0, 2]);
    let neg = p.negative.as_ref().unwrap();
    assert_eq!((neg.offset, neg.bucket_counts.clone()), (-3, vec![4]));
    let s = &h.data_points[1];
    assert_eq!(s.flags, build::FLAG_NO_RECORDED_VALUE);
    assert_eq!(s.sum.unwrap().to_bits(), STALE_NAN);

    let m = metric(&rms, "size_bytes");
    let Some(Data::Histogram(h)) = &m.data else {
        panic!("an explicit histogram: {m:?}")
    };
    let p = &h.data_points[0];
    assert_eq!(p.explicit_bounds, vec![0.1, 1.0, 10.0]);
    assert_eq!(p.bucket_counts, vec![1, 2, 0, 3]);
    assert_eq!((p.count, p.sum), (6, Some(3.0)));
}

// Guarantees: histograms that cannot be held are left out with a 400 naming the problem, the rest
// of the request is taken: fractional float counts (reason native_histogram_unsupported), spans
// far apart (no huge allocation), deltas going negative, count below the buckets' total.
#[tokio::test]
async fn bad_native_histograms_are_refused_and_the_rest_taken() {
    use v2::histogram::Count;
    let r = start().await;
    let mut b = V2::new();
    let fractional = v2::Histogram {
        count: Some(Count::CountFloat(1.5)),
        schema: 0,
        timestamp: T0,
        ..Default::default()
    };
    let far = v2::Histogram {
        count: Some(Count::CountInt(2)),
        schema: 0,
        positive_spans: vec![span(-1_000_000_000, 1), span(2_000_000_000, 1)],
        positive_deltas: vec![1, 0],
        timestamp: T0,
        ..Default::default()
    };
    let negative = v2::Histogram {
        count: Some(Count::CountInt(9)),
        schema: 0,
        positive_spans: vec![span(0, 2)],
        positive_deltas: vec![1, -2],
        timestamp: T0,
        ..Default::default()
    };
    let short_count = v2::Histogram {
        count: Some(Count::CountInt(1)),
        schema: 0,
        positive_spans: vec![span(0, 1)],
        positive_deltas: vec![5],
        timestamp: T0,
        ..Default::default()
    };
    b.series(
        &[("__name__", "h")],
        v2::metadata::MetricType::Histogram,
        "",
        "",
    )
    .histograms = vec![fractional, far, negative, short_count];
    b.series(
        &[("__name__", "fine")],
        v2::metadata::MetricType::Gauge,
        "",
        "",
    )
    .samples = vec![v2::Sample {
        value: 1.0,
        timestamp: T0,
        start_timestamp: 0,
    }];
    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.written(), (1, 0, 0));
    assert!(
        reply.body.contains("rejected 0 samples, 4 histograms"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("not a whole number"), "{}", reply.body);
    assert!(
        reply.body.contains("(and 1 more problems)"),
        "{}",
        reply.body
    );
    let rms = r.taken();
    assert_eq!(number_points(metric(&rms, "fine")).len(), 1);
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "native_histogram_unsupported")]
        ),
        1.0
    );
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "invalid")]
        ),
        3.0
    );
}

// Guarantees: series without `__name__`, with a repeated label name or an empty label name are
// left out and answered 400 with a message naming each problem, while the valid series of the
// same request are taken; the refused samples are counted with reason invalid.
#[tokio::test]
async fn invalid_series_give_400_while_valid_ones_are_taken() {
    let r = start().await;
    let req = v1::WriteRequest {
        timeseries: vec![
            series(&[("job", "j"), ("x", "1")], &[(1.0, T0), (2.0, T0 + 1)]),
            series(&[("__name__", "dup"), ("a", "1"), ("a", "2")], &[(1.0, T0)]),
            series(&[("__name__", "empty"), ("", "v")], &[(1.0, T0)]),
            series(&[("__name__", "good"), ("job", "j")], &[(42.0, T0)]),
            series(&[("__name__", "before_1970")], &[(1.0, -5)]),
        ],
        metadata: Vec::new(),
    };
    let reply = r.post_v1(&req).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply
            .body
            .starts_with("rejected 5 samples, 0 histograms and 0 exemplars"),
        "{}",
        reply.body
    );
    for needle in [
        "no __name__ label",
        "label \"a\" appears more than once",
        "empty name",
        "(and 1 more problems)",
    ] {
        assert!(reply.body.contains(needle), "{needle:?} in {}", reply.body);
    }
    let rms = r.taken();
    assert_eq!(rms.len(), 1);
    assert_eq!(value(&number_points(metric(&rms, "good"))[0]), 42.0);
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "invalid")]
        ),
        5.0
    );
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 1.0);
}

// Guarantees: 2.0 references outside the symbol table, odd labels_refs and bad metadata refs
// leave out their series (or exemplar) with a 400, the valid series are taken and the Written
// counts say exactly what was; a symbol table whose first entry is not "" refuses the request.
#[tokio::test]
async fn v2_bad_references_give_400_and_exact_written_counts() {
    let r = start().await;
    let mut b = V2::new();
    b.series(
        &[("__name__", "ok")],
        v2::metadata::MetricType::Gauge,
        "",
        "",
    )
    .samples = vec![v2::Sample {
        value: 1.0,
        timestamp: T0,
        start_timestamp: 0,
    }];
    let ok_refs = b.req.timeseries[0].labels_refs.clone();
    let sample = vec![v2::Sample {
        value: 2.0,
        timestamp: T0,
        start_timestamp: 0,
    }];
    b.req.timeseries.push(v2::TimeSeries {
        labels_refs: vec![1, 999],
        samples: sample.clone(),
        ..Default::default()
    });
    b.req.timeseries.push(v2::TimeSeries {
        labels_refs: vec![1],
        samples: sample.clone(),
        ..Default::default()
    });
    b.req.timeseries.push(v2::TimeSeries {
        labels_refs: ok_refs.clone(),
        samples: sample.clone(),
        metadata: Some(v2::Metadata {
            r#type: 2,
            help_ref: 777,
            unit_ref: 0,
        }),
        ..Default::default()
    });
    b.req.timeseries.push(v2::TimeSeries {
        labels_refs: ok_refs,
        samples: vec![v2::Sample {
            value: 3.0,
            timestamp: T0 + 1,
            start_timestamp: 0,
        }],
        exemplars: vec![v2::Exemplar {
            labels_refs: vec![5000, 0],
            value: 1.0,
            timestamp: T0,
        }],
        ..Default::default()
    });
    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.written(), (2, 0, 0));
    assert!(
        reply
            .body
            .starts_with("rejected 3 samples, 0 histograms and 1 exemplars"),
        "{}",
        reply.body
    );
    assert!(
        reply
            .body
            .contains("reference 999 is outside the symbol table"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("odd number"), "{}", reply.body);
    let points = number_points(metric(&r.taken(), "ok")).to_vec();
    assert_eq!(points.iter().map(value).collect::<Vec<_>>(), vec![1.0, 3.0]);

    let mut bad = V2::new();
    bad.req.symbols[0] = "oops".into();
    let reply = r.post_v2(&bad.req).await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("symbols[0] must be the empty string"),
        "{}",
        reply.body
    );
}

// Guarantees: exemplars without a sample of their series in the request cannot be held (OTLP
// keeps exemplars on points): counted as exemplar_without_sample; 1.0 still answers 204 (1.0
// senders ship exemplars apart from samples), 2.0 answers 400 as its spec requires.
#[tokio::test]
async fn exemplars_without_samples_are_counted() {
    let r = start().await;
    let req = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: labels(&[("__name__", "c_total")]),
            exemplars: vec![v1::Exemplar {
                labels: labels(&[("trace_id", "00")]),
                value: 1.0,
                timestamp: T0,
            }],
            ..Default::default()
        }],
        metadata: Vec::new(),
    };
    assert_eq!(r.post_v1(&req).await.status, 204);

    let mut b = V2::new();
    b.series(
        &[("__name__", "c_total")],
        v2::metadata::MetricType::Counter,
        "",
        "",
    )
    .exemplars = vec![v2::Exemplar {
        labels_refs: Vec::new(),
        value: 1.0,
        timestamp: T0,
    }];
    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.written(), (0, 0, 0));
    assert!(reply.body.contains("without a sample"), "{}", reply.body);
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "exemplar_without_sample")]
        ),
        2.0
    );
    assert!(r.taken().is_empty());
}

/// What is sent, the headers, the body, the expected status and a part of the expected message.
type Case = (
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<u8>,
    u16,
    &'static str,
);

// Guarantees: the statuses of requests refused before reading: 415 for other content types,
// `proto` values and encodings (and a missing Content-Encoding), 400 for bad snappy (with a hint
// for the framed format) and bad protobuf, 413 over max_request_bytes; each is counted and
// nothing reaches the pipeline.
#[tokio::test]
async fn unsupported_and_malformed_requests_get_precise_statuses() {
    let r = start_with(|c| c.max_request_bytes = ByteSize(4096)).await;
    let good = snap::raw::Encoder::new()
        .compress_vec(&v1::WriteRequest::default().encode_to_vec())
        .unwrap();
    let cases: Vec<Case> = vec![
        (
            "json",
            vec![
                ("content-type", "application/json"),
                ("content-encoding", "snappy"),
            ],
            good.clone(),
            415,
            "unsupported Content-Type",
        ),
        (
            "unknown proto",
            vec![
                (
                    "content-type",
                    "application/x-protobuf;proto=io.prometheus.write.v3.Request",
                ),
                ("content-encoding", "snappy"),
            ],
            good.clone(),
            415,
            "unsupported Content-Type",
        ),
        (
            "gzip",
            vec![("content-type", V1_TYPE), ("content-encoding", "gzip")],
            good.clone(),
            415,
            "unsupported Content-Encoding \"gzip\"",
        ),
        (
            "no encoding",
            vec![("content-type", V1_TYPE)],
            good.clone(),
            415,
            "Content-Encoding: snappy is required",
        ),
        (
            "not snappy",
            vec![("content-type", V1_TYPE), ("content-encoding", "snappy")],
            vec![0xff; 16],
            400,
            "not valid snappy",
        ),
        (
            "framed snappy",
            vec![("content-type", V1_TYPE), ("content-encoding", "snappy")],
            b"\xff\x06\x00\x00sNaPpY\x01\x05\x00\x00abcde".to_vec(),
            400,
            "framed format",
        ),
        (
            "not protobuf",
            vec![("content-type", V1_TYPE), ("content-encoding", "snappy")],
            snap::raw::Encoder::new()
                .compress_vec(&[0x0a, 0xff, 0x01])
                .unwrap(),
            400,
            "malformed protobuf",
        ),
        (
            "too large",
            vec![("content-type", V1_TYPE), ("content-encoding", "snappy")],
            vec![0; 5000],
            413,
            "max_request_bytes",
        ),
    ];
    for (what, headers, body, status, needle) in &cases {
        let reply = r.post_raw(headers, body.clone()).await;
        assert_eq!(reply.status, *status, "{what}: {}", reply.body);
        assert!(reply.body.contains(needle), "{what}: {:?}", reply.body);
    }
    assert!(r.taken().is_empty());
    let refused = |reason| {
        r.counter(
            "sluice_receiver_refused_requests_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refused("unsupported_media_type"), 2.0);
    assert_eq!(refused("unsupported_encoding"), 2.0);
    assert_eq!(refused("malformed"), 3.0);
    assert_eq!(refused("too_large"), 1.0);

    // The empty request (how a sender probes a receiver) is fine, and without a Content-Type
    // the body is read as 1.0.
    let reply = r
        .post_raw(
            &[("content-type", V1_TYPE), ("content-encoding", "snappy")],
            good.clone(),
        )
        .await;
    assert_eq!(reply.status, 204);
    let reply = r.post_raw(&[("content-encoding", "snappy")], good).await;
    assert_eq!(reply.status, 204);
}

// Guarantees: a snappy body whose header announces more than max_decompressed_bytes is refused
// with 413 from the header alone (a decompression bomb: 7 bytes claiming 1 GiB).
#[tokio::test]
async fn snappy_bomb_is_refused_from_its_announced_length() {
    let r = start_with(|c| c.max_decompressed_bytes = ByteSize::mib(1)).await;
    // Varint 1 GiB, then the start of a copy that would repeat forever.
    let mut bomb = Vec::new();
    let mut n: u64 = 1 << 30;
    while n >= 0x80 {
        bomb.push((n as u8) | 0x80);
        n >>= 7;
    }
    bomb.push(n as u8);
    bomb.extend_from_slice(&[0x00, 0x00, 0xfe, 0x01]);
    assert_eq!(snap::raw::decompress_len(&bomb).unwrap(), 1 << 30);
    let reply = r
        .post_raw(
            &[("content-type", V1_TYPE), ("content-encoding", "snappy")],
            bomb,
        )
        .await;
    assert_eq!(reply.status, 413);
    assert!(reply.body.contains("1073741824 bytes"), "{}", reply.body);

    // Just under the limit is decoded.
    let req = v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "x")], &[(1.0, T0)])],
        metadata: Vec::new(),
    };
    assert_eq!(r.post_v1(&req).await.status, 204);
}

// Guarantees: pipeline backpressure is a retryable answer: 503 + Retry-After for a full queue
// (senders retry 5xx), 429 + Retry-After for a limit, 400 for data the pipeline calls invalid;
// 2.0 answers say nothing was written; the points are counted as refused with the refusal's
// reason; once the pipeline takes data again, so does the receiver.
#[tokio::test]
async fn pipeline_refusals_become_retryable_statuses() {
    let r = start().await;
    let req = v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "x")], &[(1.0, T0), (2.0, T0 + 1)])],
        metadata: Vec::new(),
    };
    *r.next.refusal.lock().unwrap() = Some(Refusal::full("queue full"));
    let reply = r.post_v1(&req).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.body.contains("queue full"));

    *r.next.refusal.lock().unwrap() = Some(Refusal {
        kind: RefusalKind::Limited,
        message: "tenant over its rate".into(),
        retry_after: Some(Duration::from_millis(2500)),
    });
    let mut b = V2::new();
    b.series(
        &[("__name__", "x")],
        v2::metadata::MetricType::Gauge,
        "",
        "",
    )
    .samples = vec![v2::Sample {
        value: 1.0,
        timestamp: T0,
        start_timestamp: 0,
    }];
    let reply = r.post_v2(&b.req).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.header("retry-after"), Some("3"));
    assert_eq!(reply.written(), (0, 0, 0));

    *r.next.refusal.lock().unwrap() = Some(Refusal {
        kind: RefusalKind::Invalid,
        message: "no".into(),
        retry_after: None,
    });
    let reply = r.post_v1(&req).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("retry-after"), None);

    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "queue_full")]
        ),
        2.0
    );
    assert_eq!(
        r.counter(
            "sluice_receiver_refused_points_total",
            &[("reason", "limited")]
        ),
        1.0
    );
    assert_eq!(r.counter("sluice_receiver_accepted_points_total", &[]), 0.0);

    *r.next.refusal.lock().unwrap() = None;
    assert_eq!(r.post_v1(&req).await.status, 204);
    assert_eq!(r.next.capture.points(), 2);
}

// Guarantees: `metadata_keys` headers are carried into the batch context (lowercased keys), other
// headers are not; the configured path is the one served.
#[tokio::test]
async fn metadata_keys_and_path_are_honoured() {
    let r = start_with(|c| {
        c.metadata_keys = vec!["X-Scope-OrgID".into()];
        c.path = "/push".into();
    })
    .await;
    let body = snap::raw::Encoder::new()
        .compress_vec(
            &v1::WriteRequest {
                timeseries: vec![series(&[("__name__", "x")], &[(1.0, T0)])],
                metadata: Vec::new(),
            }
            .encode_to_vec(),
        )
        .unwrap();
    let headers = [
        ("content-type", V1_TYPE),
        ("content-encoding", "snappy"),
        ("x-scope-orgid", "acme"),
        ("x-other", "no"),
    ];
    let reply = http_post(r.addr, "/api/v1/write", &headers, &body).await;
    assert_eq!(reply.status, 404);
    let reply = http_post(r.addr, "/push", &headers, &body).await;
    assert_eq!(reply.status, 204);
    let got = r.next.capture.take();
    assert_eq!(
        got[0].context.metadata,
        vec![(Arc::<str>::from("x-scope-orgid"), Arc::<str>::from("acme"))]
    );
}

// Guarantees: cancelling the shutdown token ends the task and releases the port.
#[tokio::test]
async fn shutdown_ends_the_task_and_releases_the_port() {
    let r = start().await;
    let req = v1::WriteRequest::default();
    assert_eq!(r.post_v1(&req).await.status, 204);
    r.shutdown.cancel();
    within("receiver task to end", r.task)
        .await
        .expect("the task does not panic");
    std::net::TcpListener::bind(r.addr).expect("the port is free again");
}

// Guarantees: the relay is lossless. Series as Prometheus sends them (a counter, a labelled
// gauge, a classic histogram, a summary, an untyped series, a counter without `_total`, a stale
// marker, a `namespace/name` job), decoded by this receiver and translated back by the
// remote_write exporter's translation with its default options, come out with the same names,
// labels, values (bit-exact) and timestamps.
#[test]
fn series_survive_receive_then_translate_unchanged() {
    use v1::metric_metadata::MetricType as T;
    let stale = f64::from_bits(STALE_NAN);
    let common = [("instance", "10.1.2.3:9100"), ("job", "infra/node")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l: Vec<(&str, &str)> = common.to_vec();
        l.extend_from_slice(extra);
        l.sort();
        l
    };
    let input = vec![
        series(
            &with(&[("__name__", "http_requests_total"), ("code", "200")]),
            &[(1027.0, T0), (1030.0, T0 + 15_000)],
        ),
        series(
            &with(&[("__name__", "temperature_celsius"), ("room", "hall \"2\"")]),
            &[(-3.25, T0), (stale, T0 + 15_000)],
        ),
        series(
            &with(&[("__name__", "latency_seconds_bucket"), ("le", "+Inf")]),
            &[(9.0, T0)],
        ),
        series(
            &with(&[("__name__", "latency_seconds_bucket"), ("le", "0.25")]),
            &[(4.0, T0)],
        ),
        series(&with(&[("__name__", "latency_seconds_sum")]), &[(1.75, T0)]),
        series(
            &with(&[("__name__", "latency_seconds_count")]),
            &[(9.0, T0)],
        ),
        series(
            &with(&[("__name__", "rpc_seconds"), ("quantile", "0.99")]),
            &[(0.125, T0)],
        ),
        series(&with(&[("__name__", "rpc_seconds_count")]), &[(3.0, T0)]),
        series(&with(&[("__name__", "untyped_thing")]), &[(f64::NAN, T0)]),
        series(&with(&[("__name__", "legacy_counter")]), &[(5.0, T0)]),
        series(&[("__name__", "no_job_at_all"), ("x", "y")], &[(1.0, T0)]),
    ];
    let req = v1::WriteRequest {
        timeseries: input.clone(),
        metadata: vec![
            metadata("http_requests_total", T::Counter, "Requests."),
            metadata("temperature_celsius", T::Gauge, "Temp."),
            metadata("latency_seconds", T::Histogram, "Latency."),
            metadata("rpc_seconds", T::Summary, "RPC."),
            metadata("legacy_counter", T::Counter, "Old style."),
        ],
    };
    let cache = decode::MetadataCache::default();
    let bytes = req.encode_to_vec();
    let decoded = decode::v1(&mut super::wire::decode(&bytes).unwrap(), &cache, 1 << 20);
    assert!(!decoded.rejected.any());
    let batch = Batch::new(Default::default(), decoded.resource_metrics);
    let out = translate(&batch, &TranslateOptions::default(), None);
    assert!(out.dropped.is_empty(), "{:?}", out.dropped);

    type Key = Vec<(String, String)>;
    let key = |labels: Vec<(String, String)>| -> Key {
        let mut l = labels;
        l.sort();
        l
    };
    let mut want: Vec<(Key, Vec<(i64, u64)>)> = input
        .iter()
        .map(|t| {
            (
                key(t
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect()),
                t.samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect(),
            )
        })
        .collect();
    let mut got: Vec<(Key, Vec<(i64, u64)>)> = out
        .series
        .iter()
        .map(|s| {
            (
                key(s.labels.to_vec()),
                s.samples
                    .iter()
                    .map(|x| (x.timestamp_ms, x.value.to_bits()))
                    .collect(),
            )
        })
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);

    let types: HashMap<String, MetricType> = out
        .series
        .iter()
        .map(|s| (s.name().to_string(), s.metadata.metric_type))
        .collect();
    assert_eq!(types["http_requests_total"], MetricType::Counter);
    assert_eq!(types["temperature_celsius"], MetricType::Gauge);
    assert_eq!(types["untyped_thing"], MetricType::Unknown);
}

/// A Prometheus-style name: lowercase words joined by single underscores (names with `__` runs or
/// a leading underscore are rewritten by the exporter's default sanitizing, by design).
const NAME: &str = "[a-z][a-z0-9]{0,4}(_[a-z0-9]{1,4}){0,2}";

fn metric_type() -> impl proptest::strategy::Strategy<Value = v1::metric_metadata::MetricType> {
    use proptest::prelude::*;
    use v1::metric_metadata::MetricType as T;
    prop_oneof![
        Just(T::Unknown),
        Just(T::Counter),
        Just(T::Gauge),
        Just(T::Histogram),
        Just(T::Summary),
        Just(T::Info),
        Just(T::Stateset),
    ]
}

fn sample_value() -> impl proptest::strategy::Strategy<Value = f64> {
    use proptest::prelude::*;
    prop_oneof![
        any::<f64>(),
        Just(f64::from_bits(STALE_NAN)),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
    ]
}

/// A generated series: name, `_total` appended, job, instance, other labels, values, type.
type GenSeries = (
    String,
    bool,
    Option<String>,
    Option<String>,
    std::collections::BTreeMap<String, String>,
    Vec<f64>,
    v1::metric_metadata::MetricType,
);

/// Label sets and samples (timestamp, value bits), sorted, for comparing series sets.
type Rows = Vec<(Vec<(String, String)>, Vec<(i64, u64)>)>;

fn gen_series() -> impl proptest::strategy::Strategy<Value = Vec<GenSeries>> {
    use proptest::prelude::*;
    proptest::collection::vec(
        (
            NAME,
            any::<bool>(),
            proptest::option::of("[a-z]{1,4}(/[a-z]{1,4})?"),
            proptest::option::of("[a-z0-9.:]{1,8}"),
            proptest::collection::btree_map(NAME, "\\PC{1,6}", 0..4),
            proptest::collection::vec(sample_value(), 1..4),
            metric_type(),
        ),
        1..12,
    )
}

/// The 1.0 request for generated series (label sets made unique, one type per family).
fn request_of(series_in: Vec<GenSeries>) -> v1::WriteRequest {
    let mut seen = std::collections::HashSet::new();
    let mut families = std::collections::HashSet::new();
    let mut req = v1::WriteRequest::default();
    for (name, total, job, instance, labels, values, t) in series_in {
        let name = if total { format!("{name}_total") } else { name };
        let mut l: Vec<(String, String)> = labels
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "job" | "instance"))
            .collect();
        l.push(("__name__".into(), name.clone()));
        l.extend(job.map(|j| ("job".to_string(), j)));
        l.extend(instance.map(|x| ("instance".to_string(), x)));
        l.sort();
        if !seen.insert(l.clone()) {
            continue;
        }
        if families.insert(name.clone()) {
            req.metadata.push(v1::MetricMetadata {
                r#type: t as i32,
                help: format!("help of {name}"),
                metric_family_name: name,
                unit: String::new(),
            });
        }
        req.timeseries.push(v1::TimeSeries {
            labels: l
                .into_iter()
                .map(|(name, value)| v1::Label { name, value })
                .collect(),
            samples: values
                .iter()
                .enumerate()
                .map(|(k, &value)| v1::Sample {
                    value,
                    timestamp: T0 + k as i64 * 1000,
                })
                .collect(),
            ..Default::default()
        });
    }
    req
}

proptest::proptest! {
    // Guarantees (the relay law): any valid remote_write 1.0 series, whatever their metadata,
    // decoded by this receiver and translated back by the exporter's translation with its default
    // options, come out with the same label sets and the same samples (timestamps, value bits).
    #[test]
    fn receive_then_translate_is_lossless(series_in in gen_series()) {
        let bytes = request_of(series_in).encode_to_vec();
        // What is on the wire (prost's encoding leaves out a -0.0 value, as the default).
        let req = v1::WriteRequest::decode(bytes.as_slice()).unwrap();
        let decoded = decode::v1(
            &mut super::wire::decode(&bytes).unwrap(),
            &decode::MetadataCache::default(),
            1 << 20,
        );
        proptest::prop_assert!(!decoded.rejected.any(), "{}", decoded.rejected.message());
        let batch = Batch::new(Default::default(), decoded.resource_metrics);
        let out = translate(&batch, &TranslateOptions::default(), None);
        proptest::prop_assert!(out.dropped.is_empty(), "{:?}", out.dropped);
        let mut want: Rows = req
            .timeseries
            .iter()
            .map(|t| {
                let mut l: Vec<_> = t
                    .labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect();
                l.sort();
                (l, t.samples.iter().map(|s| (s.timestamp, s.value.to_bits())).collect())
            })
            .collect();
        let mut got: Rows = out
            .series
            .iter()
            .map(|s| {
                let mut l = s.labels.to_vec();
                l.sort();
                (l, s.samples.iter().map(|x| (x.timestamp_ms, x.value.to_bits())).collect())
            })
            .collect();
        want.sort();
        got.sort();
        proptest::prop_assert_eq!(got, want);
    }
}

// ---------------------------------------------------------------------------------------------
// Tenants.

/// `tenant:` settings as written in a config.
fn tenant_setting(yaml: &str) -> sluice_core::config::Located<sluice_core::tenancy::TenantConfig> {
    sluice_core::config::from_node(&sluice_core::config::parse_yaml(yaml).unwrap()).unwrap()
}

fn one_series() -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(1.0, 1_700_000_000_000)])],
        ..Default::default()
    }
}

// Guarantees: with `tenant.header`, the header names the batch's tenant; without it the request is
// 401, with an invalid id 400, both before the body is read (a garbage body does not change the
// answer) and counted.
#[tokio::test]
async fn a_trusted_header_names_the_tenant() {
    let r = start_with(|c| c.tenant = Some(tenant_setting("{ header: X-Scope-OrgID }"))).await;
    let body = snap::raw::Encoder::new()
        .compress_vec(&one_series().encode_to_vec())
        .unwrap();
    let headers = |org: Option<&'static str>| {
        let mut h = vec![("content-type", V1_TYPE), ("content-encoding", "snappy")];
        h.extend(org.map(|o| ("x-scope-orgid", o)));
        h
    };
    let reply = r.post_raw(&headers(Some("acme")), body.clone()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    let got = r.next.capture.take();
    assert_eq!(got[0].context.tenant.as_deref(), Some("acme"));
    assert_eq!(got[0].context.tenant_info, None);

    let reply = r.post_raw(&headers(None), b"garbage".to_vec()).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("x-scope-orgid"), "{}", reply.body);
    assert_eq!(reply.header("www-authenticate"), None);
    let reply = r.post_raw(&headers(Some("a/b")), b"garbage".to_vec()).await;
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("'/'"), "{}", reply.body);
    assert!(r.next.capture.take().is_empty());
    for reason in ["unauthenticated", "invalid_tenant"] {
        assert_eq!(
            r.telemetry.value(
                "sluice_receiver_refused_requests_total",
                &[("receiver", RECEIVER), ("reason", reason)]
            ),
            1.0,
            "{reason}"
        );
    }
}

// Guarantees: with `tenant.static`, every request is that tenant's.
#[tokio::test]
async fn a_static_tenant_for_every_request() {
    let r = start_with(|c| c.tenant = Some(tenant_setting("{ static: acme }"))).await;
    let reply = r.post_v1(&one_series()).await;
    assert_eq!(reply.status, 204, "{}", reply.body);
    assert_eq!(
        r.next.capture.take()[0].context.tenant.as_deref(),
        Some("acme")
    );
}
