//! The default `pipeline.yaml` (what README's run command starts) runs with no backend: OTLP and
//! Sluice's own runtime counters go in, come out normalized on the `prometheus` exposition endpoint,
//! and SIGTERM stops it with exit 0. Its addresses are moved to free ports through its `${env:...}`
//! settings.

mod support;

use std::time::Duration;
use support::{GrpcClient, Sluice, http_get, numbered_request, wait_until};

#[test]
fn default_pipeline_runs_with_no_backend_and_normalizes() {
    let yaml =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml")).unwrap();
    let s = Sluice::start_with_env(
        &yaml,
        &[
            ("SLUICE_OTLP_GRPC_ENDPOINT", "127.0.0.1:0"),
            ("SLUICE_OTLP_HTTP_ENDPOINT", "127.0.0.1:0"),
            ("SLUICE_PROMETHEUS_ENDPOINT", "127.0.0.1:0"),
            ("SLUICE_TELEMETRY_ADDRESS", "127.0.0.1:0"),
            ("SLUICE_RUNTIME_INTERVAL", "200ms"),
        ],
        &["otlp/grpc", "otlp/http", "prometheus/http", "telemetry"],
    );
    GrpcClient::connect(&s.grpc_url("otlp"))
        .export(numbered_request(0, 3))
        .unwrap();
    let url = format!("http://{}/metrics", s.addr("prometheus/http"));
    wait_until(
        Duration::from_secs(20),
        "OTLP and runtime metrics exposed",
        || {
            let text = http_get(&url);
            text.contains("test_gauge{") && text.contains("process_cpu_time_seconds_total{")
        },
    );
    let text = http_get(&url);
    assert!(text.contains("process_memory_usage_bytes{"), "{text}");
    assert!(text.contains("system_memory_usage_bytes{"), "{text}");
    assert!(!text.contains("process.cpu.time"), "names are normalized");
    assert!(
        s.log_text().contains("batch"),
        "the debug exporter logs a line per batch"
    );
    let status = s.stop("TERM");
    assert!(status.success());
}
