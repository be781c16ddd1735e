//! Bad input against the OTLP receiver, over HTTP and gRPC: each gets a precise status and message,
//! nothing is taken from it, and a well-formed request right after still succeeds.

mod support;

use prost::Message;
use std::io::Write;
use support::{GrpcClient, Sluice, numbered_request};

const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      grpc: { endpoint: "127.0.0.1:0" }
      http: { endpoint: "127.0.0.1:0" }
    max_request_bytes: 64KiB
    max_decompressed_bytes: 1MiB
exporters:
  debug: {}
service:
  telemetry: { metrics: { address: "127.0.0.1:0" } }
  pipelines:
    metrics: { receivers: [otlp], exporters: [debug] }
"#;

struct Http {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    url: String,
}

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl Http {
    fn post(&self, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> Reply {
        self.rt.block_on(async {
            let mut rb = self
                .client
                .post(&self.url)
                .header("content-type", content_type)
                .body(body);
            if let Some(e) = encoding {
                rb = rb.header("content-encoding", e);
            }
            let r = rb.send().await.unwrap();
            let status = r.status().as_u16();
            let content_type = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            Reply {
                status,
                content_type,
                body: r.bytes().await.unwrap().to_vec(),
            }
        })
    }

    /// A good request must still be accepted.
    fn assert_still_serving(&self) {
        let r = self.post(
            "application/x-protobuf",
            None,
            numbered_request(0, 3).encode_to_vec(),
        );
        assert_eq!(r.status, 200);
    }
}

/// The `message` of a google.rpc.Status error body, protobuf or JSON.
fn status_message(r: &Reply) -> String {
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
    }
    if r.content_type.contains("json") {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["message"].as_str().unwrap().to_string()
    } else {
        RpcStatus::decode(r.body.as_slice()).unwrap().message
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn start() -> (Sluice, Http) {
    let s = Sluice::start(CONFIG, &["otlp/grpc", "otlp/http", "telemetry"]);
    let http = Http {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        client: support::http_client(),
        url: s.http_url("otlp"),
    };
    (s, http)
}

#[test]
fn http_bad_inputs_get_precise_statuses_and_the_receiver_keeps_serving() {
    let (s, http) = start();
    // (case, content type, content encoding, body, expected status, expected message part)
    type Case = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Vec<u8>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "malformed protobuf",
            "application/x-protobuf",
            None,
            vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2],
            400,
            "malformed protobuf",
        ),
        (
            "wrong wire type",
            "application/x-protobuf",
            None,
            vec![0x0d, 1, 2, 3, 4],
            400,
            "malformed protobuf",
        ),
        (
            "invalid JSON",
            "application/json",
            None,
            b"{\"resourceMetrics\": [".to_vec(),
            400,
            "malformed OTLP/JSON",
        ),
        (
            "JSON of the wrong shape",
            "application/json",
            None,
            br#"{"resourceMetrics": 5}"#.to_vec(),
            400,
            "malformed OTLP/JSON",
        ),
        (
            "wrong content type",
            "text/plain",
            None,
            b"hello".to_vec(),
            415,
            "unsupported Content-Type",
        ),
        (
            "oversized body",
            "application/x-protobuf",
            None,
            vec![0u8; 65 * 1024],
            413,
            "max_request_bytes",
        ),
        (
            "gzip bomb",
            "application/x-protobuf",
            Some("gzip"),
            gzip(&vec![0u8; 20 << 20]),
            413,
            "larger than",
        ),
        (
            "corrupt gzip",
            "application/x-protobuf",
            Some("gzip"),
            b"not gzip at all".to_vec(),
            400,
            "not valid gzip",
        ),
        (
            "unsupported encoding",
            "application/x-protobuf",
            Some("br"),
            vec![1, 2, 3],
            415,
            "unsupported Content-Encoding",
        ),
    ];
    for (name, ctype, enc, body, status, needle) in cases {
        let r = http.post(ctype, enc, body);
        assert_eq!(r.status, status, "{name}");
        let msg = status_message(&r);
        assert!(
            msg.contains(needle),
            "{name}: message {msg:?} should contain {needle:?}"
        );
        http.assert_still_serving();
    }
    // JSON errors say where the problem is.
    let r = http.post(
        "application/json",
        None,
        b"{\"resourceMetrics\": [}".to_vec(),
    );
    assert!(
        status_message(&r).contains("line 1 column"),
        "{}",
        status_message(&r)
    );
    assert_eq!(s.metric("sluice_receiver_accepted_points_total", &[]), 27.0);
    let refused = |reason| {
        s.metric(
            "sluice_receiver_refused_requests_total",
            &[("reason", reason)],
        )
    };
    assert_eq!(refused("malformed"), 6.0);
    assert_eq!(refused("unsupported_media_type"), 1.0);
    assert_eq!(refused("too_large"), 2.0);
    assert_eq!(refused("unsupported_encoding"), 1.0);
}

#[test]
fn http_json_request_is_accepted_and_answered_in_json() {
    let (_s, http) = start();
    let json = serde_json::to_vec(&numbered_request(0, 5)).unwrap();
    let r = http.post("application/json; charset=utf-8", None, json);
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, "application/json");
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(body.get("partialSuccess").is_none(), "{body}");
}

/// Points that are not valid OTLP are left out and reported as a partial success; the rest is taken.
#[test]
fn invalid_points_are_reported_as_partial_success() {
    let (s, http) = start();
    let mut req = numbered_request(0, 4);
    let mut nameless = req.resource_metrics[0].scope_metrics[0].metrics[0].clone();
    nameless.name.clear();
    req.resource_metrics[0].scope_metrics[0]
        .metrics
        .push(nameless);
    let grpc = GrpcClient::connect(&s.grpc_url("otlp"));
    let resp = grpc.export(req.clone()).unwrap();
    let ps = resp.partial_success.expect("partial success");
    assert_eq!(ps.rejected_data_points, 4);
    assert!(
        ps.error_message.contains("empty name"),
        "{}",
        ps.error_message
    );
    let r = http.post("application/x-protobuf", None, req.encode_to_vec());
    assert_eq!(r.status, 200);
    let resp =
        sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceResponse::decode(
            r.body.as_slice(),
        )
        .unwrap();
    assert_eq!(resp.partial_success.unwrap().rejected_data_points, 4);
    assert_eq!(s.metric("sluice_receiver_accepted_points_total", &[]), 8.0);
    assert_eq!(
        s.metric(
            "sluice_receiver_refused_points_total",
            &[("reason", "invalid")]
        ),
        8.0
    );
}

#[test]
fn grpc_bad_inputs_get_precise_statuses_and_the_receiver_keeps_serving() {
    let (s, _http) = start();
    let grpc = GrpcClient::connect(&s.grpc_url("otlp"));
    let err = grpc
        .export_raw(vec![0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2])
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("malformed protobuf"),
        "{}",
        err.message()
    );
    grpc.export(numbered_request(0, 2)).expect("still serving");

    // Larger than max_decompressed_bytes, plain and as a gzip bomb.
    let big = numbered_request(0, 40_000);
    let err = grpc.export(big.clone()).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    grpc.export(numbered_request(0, 2)).expect("still serving");
    let err = grpc.export_gzip(big).unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    grpc.export(numbered_request(0, 2)).expect("still serving");
    assert_eq!(s.metric("sluice_receiver_accepted_points_total", &[]), 6.0);
}
