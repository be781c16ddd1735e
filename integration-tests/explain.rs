//! `sluice explain`: the real binary prints the rules that fired, one per line, and the final name
//! (with the value factor of a base-unit conversion) on its last line; `--config` applies the
//! settings of the file's `normalize` processor; bad input exits non-zero with a message.

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn explains_a_base_unit_conversion() {
    let out = sluice(&[
        "explain",
        "http.server.request.duration",
        "--type",
        "histogram",
        "--unit",
        "ms",
        "--base-units",
    ]);
    let lines = stdout_lines(&out);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("http_server_request_duration_seconds (value factor 0.001)"),
        "{lines:#?}"
    );
    let rules = &lines[..lines.len() - 1];
    assert!(
        rules.iter().any(|l| l.starts_with("rule 2 (source form)")),
        "{lines:#?}"
    );
    assert!(
        rules.iter().any(|l| l.starts_with("rule 3 (base_units)")),
        "{lines:#?}"
    );
    assert!(rules.iter().all(|l| l.starts_with("rule ")), "{lines:#?}");
}

#[test]
fn the_type_defaults_to_gauge_and_conforming_names_stay() {
    let lines = stdout_lines(&sluice(&["explain", "cpu.utilization", "--unit", "1"]));
    assert_eq!(lines.last().unwrap(), "cpu_utilization_ratio");
    let lines = stdout_lines(&sluice(&["explain", "go_goroutines"]));
    assert_eq!(
        lines,
        [
            "rule 7 (idempotence): already follows the convention: unchanged",
            "go_goroutines"
        ]
    );
    let lines = stdout_lines(&sluice(&[
        "explain",
        "/gc/heap/allocs:bytes",
        "--type",
        "counter",
    ]));
    assert_eq!(lines.last().unwrap(), "go_gc_heap_allocs_bytes_total");
}

#[test]
fn config_settings_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(
        &path,
        r#"
receivers:
  otlp:
    protocols: { grpc: { endpoint: "127.0.0.1:4317" } }
processors:
  batch: {}
  normalize:
    rename: { legacy.requests: checkout.requests }
    exclude: ['node_.*']
    require_domain: true
    domain: { static: shop }
exporters:
  debug: {}
service:
  pipelines:
    metrics: { receivers: [otlp], processors: [normalize, batch], exporters: [debug] }
"#,
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let lines = stdout_lines(&sluice(&[
        "explain",
        "legacy.requests",
        "--type",
        "counter",
        "--config",
        config,
    ]));
    assert!(lines[0].starts_with("rule 1 (rename)"), "{lines:#?}");
    assert_eq!(lines.last().unwrap(), "shop_checkout_requests_total");
    let lines = stdout_lines(&sluice(&[
        "explain",
        "node_memory_MemAvailable_bytes",
        "-c",
        config,
    ]));
    assert_eq!(lines.last().unwrap(), "node_memory_MemAvailable_bytes");
    // Without the file, the defaults.
    let lines = stdout_lines(&sluice(&[
        "explain",
        "legacy.requests",
        "--type",
        "counter",
    ]));
    assert_eq!(lines.last().unwrap(), "legacy_requests_total");
}

#[test]
fn bad_input_fails_with_a_message() {
    let out = sluice(&["explain", "x", "--type", "bogus"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(
        &path,
        "receivers:\n  otlp:\n    protocols: { grpc: { endpoint: \"127.0.0.1:4317\" } }\n\
         exporters:\n  debug: {}\n\
         service:\n  pipelines:\n    metrics: { receivers: [otlp], exporters: [debug] }\n",
    )
    .unwrap();
    let out = sluice(&["explain", "x", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no `normalize` processor"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(&path, "processors:\n  normalize: { cache_size: 0 }\n").unwrap();
    let out = sluice(&["explain", "x", "--config", path.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cache_size must be above 0"), "{stderr}");
}
