//! `sample_age_limit` of the `prometheus_remote_write` exporter, through the real sending engine
//! and an in-test remote_write endpoint, and the option as every exporter that has it reads it.
//! (The `otlp` and `otlp_http` exporters' component tests are in `otlp/tests.rs`.)

use crate::otlp::{OtlpGrpcExporterConfig, OtlpHttpExporterConfig};
use crate::remote_write::RemoteWriteConfig;
use prost::Message;
use sluice_core::batch::Batch;
use sluice_core::component::{ComponentId, ExporterConfig, ExporterContext, Validate};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use sluice_core::proto::prometheus_v1 as v1;
use sluice_core::sending::ExporterRuntime;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::gauge_batch;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// Parses an exporter's YAML body as `exporters.<id>` of a config file.
fn parse<T: Validate + serde::de::DeserializeOwned>(id: &str, yaml: &str) -> Result<T, String> {
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

/// A batch for tenant `acme`: one gauge of `old` points two hours old, then `fresh` points of now.
fn aged_batch(old: usize, fresh: usize) -> Batch {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut batch = gauge_batch("m", old + fresh);
    batch.context.tenant = Some("acme".into());
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

/// A remote_write endpoint on 127.0.0.1:0 recording the samples' timestamps (ms) it receives.
async fn rw_endpoint() -> (std::net::SocketAddr, Arc<Mutex<Vec<i64>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let rec = got.clone();
    let app = axum::Router::new().route(
        "/write",
        axum::routing::post(move |body: axum::body::Bytes| {
            let rec = rec.clone();
            async move {
                let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                let req = v1::WriteRequest::decode(raw.as_slice()).unwrap();
                rec.lock().unwrap().extend(
                    req.timeseries
                        .iter()
                        .flat_map(|s| s.samples.iter().map(|x| x.timestamp)),
                );
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, got)
}

// Guarantees: `prometheus_remote_write` with `sample_age_limit` sends only the samples younger
// than the limit and counts the others as dropped `too_old`, by tenant.
#[tokio::test]
async fn remote_write_sample_age_limit_drops_and_counts_too_old_points() {
    let (addr, got) = rw_endpoint().await;
    let cfg: RemoteWriteConfig = parse(
        "prometheus_remote_write/test",
        &format!(
            "endpoint: http://{addr}/write\nsample_age_limit: 1h\nqueue_config: {{ batch_send_deadline: 10ms }}"
        ),
    )
    .unwrap();
    let telemetry = Arc::new(Telemetry::new());
    let id = ComponentId::parse("prometheus_remote_write/test").unwrap();
    let exporter = cfg
        .build(ExporterContext {
            id: id.clone(),
            telemetry: telemetry.clone(),
        })
        .unwrap();
    let runtime = ExporterRuntime::spawn(id, exporter, cfg.sending(), telemetry.clone()).unwrap();
    runtime.queue.push(aged_batch(3, 2));
    runtime.queue.push(aged_batch(4, 0));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    tokio::time::timeout(Duration::from_secs(20), runtime.shutdown(deadline))
        .await
        .expect("shut down in time");
    let got = got.lock().unwrap().clone();
    let hour_ago_ms = (SystemTime::now() - Duration::from_secs(3600))
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|t| *t > hour_ago_ms), "{got:?}");
    let dropped = |reason| {
        telemetry.value(
            "sluice_exporter_dropped_points_total",
            &[
                ("exporter", "prometheus_remote_write/test"),
                ("tenant", "acme"),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(dropped("too_old"), 7.0);
}

// Guarantees: `sample_age_limit` is read by the three exporters that have it (none by default).
#[test]
fn sample_age_limit_is_read_by_every_exporter_that_has_it() {
    let rw: RemoteWriteConfig = parse(
        "prometheus_remote_write",
        "endpoint: http://h/w\nsample_age_limit: 2h",
    )
    .unwrap();
    assert_eq!(
        rw.sample_age_limit.unwrap().get(),
        Duration::from_secs(7200)
    );
    let grpc: OtlpGrpcExporterConfig =
        parse("otlp", "endpoint: h:4317\nsample_age_limit: 90s").unwrap();
    assert_eq!(
        grpc.sample_age_limit.unwrap().get(),
        Duration::from_secs(90)
    );
    let http: OtlpHttpExporterConfig = parse(
        "otlp_http",
        "endpoint: http://h:4318\nsample_age_limit: 10m",
    )
    .unwrap();
    assert_eq!(
        http.sample_age_limit.unwrap().get(),
        Duration::from_secs(600)
    );
    let default: OtlpGrpcExporterConfig = parse("otlp", "endpoint: h:4317").unwrap();
    assert!(default.sample_age_limit.is_none());
    let bad = parse::<OtlpGrpcExporterConfig>("otlp", "endpoint: h:4317\nsample_age_limit: soon")
        .unwrap_err();
    assert!(
        bad.contains("sample_age_limit") || bad.contains("duration"),
        "{bad}"
    );
}
