//! The `sluice` command line: version, help, and `validate` / `run` on broken configs. Each class
//! of config error is reported with file:line:column and the component it belongs to, all errors
//! at once, and a non-zero exit.

use std::process::{Command, Output};

fn sluice(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .unwrap()
}

/// Writes `yaml` to a temp file and runs `sluice <cmd> --config <file>`; returns (file, output).
fn with_config(cmd: &str, yaml: &str) -> (String, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = sluice(&[cmd, "--config", path.to_str().unwrap()]);
    (path.display().to_string(), out)
}

/// Asserts that validation fails and stderr has a line `file:line:col: <rest>`.
fn assert_error(yaml: &str, line: u32, col: u32, rest: &str) {
    let (file, out) = with_config("validate", yaml);
    assert!(!out.status.success(), "validate should fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!("{file}:{line}:{col}: {rest}");
    assert!(
        stderr.lines().any(|l| l.starts_with(&want)),
        "expected a line starting with\n  {want}\ngot:\n{stderr}"
    );
}

const GOOD: &str = r#"
receivers:
  otlp:
    protocols: { grpc: { endpoint: "127.0.0.1:4317" } }
exporters:
  debug: {}
service:
  pipelines:
    metrics: { receivers: [otlp], exporters: [debug] }
"#;

#[test]
fn version_and_help() {
    let out = sluice(&["version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
    let out = sluice(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "validate", "version"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn validate_accepts_a_good_config_and_the_default_pipeline() {
    let (_, out) = with_config("validate", GOOD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/pipeline.yaml");
    let out = sluice(&["validate", "--config", default]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for example in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/examples")).unwrap()
    {
        let p = example.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml") && !p.to_string_lossy().contains("tenants") {
            let out = sluice(&["validate", "--config", p.to_str().unwrap()]);
            assert!(
                out.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn yaml_syntax_error_names_its_position() {
    assert_error(
        "receivers:\n  otlp: {protocols: [\nexporters: {}\n",
        2,
        21,
        "unclosed bracket",
    );
}

#[test]
fn unknown_key_names_the_key_and_the_component() {
    let yaml = GOOD.replace("protocols:", "protocol:");
    assert_error(
        &yaml,
        4,
        5,
        "receivers.otlp: unknown field `protocol`, expected one of `protocols`",
    );
}

#[test]
fn unknown_component_type_lists_the_known_ones() {
    let yaml = GOOD
        .replace("  debug: {}", "  debgu: {}")
        .replace("[debug]", "[debgu]");
    assert_error(
        &yaml,
        6,
        3,
        "exporters.debgu: unknown exporter type `debgu`; known types: otlp",
    );
}

#[test]
fn pipeline_naming_an_undefined_component_points_at_the_reference() {
    let yaml = GOOD.replace("exporters: [debug]", "exporters: [debug, otlp/missing]");
    assert_error(
        &yaml,
        9,
        54,
        "service.pipelines.metrics: references exporter `otlp/missing` which is not configured",
    );
}

#[test]
fn bad_duration_is_reported_at_the_value() {
    let yaml = format!("{GOOD}processors:\n  batch: {{ timeout: 5 parsecs }}\n");
    assert_error(
        &yaml,
        11,
        21,
        "processors.batch: invalid duration \"5 parsecs\"",
    );
}

#[test]
fn bad_endpoint_is_reported_at_the_value() {
    let yaml = GOOD.replace("127.0.0.1:4317", "127.0.0.1:99999");
    assert_error(
        &yaml,
        4,
        36,
        "receivers.otlp: invalid endpoint \"127.0.0.1:99999\"",
    );
    let yaml = GOOD.replace("\"127.0.0.1:4317\"", "localhost");
    assert_error(
        &yaml,
        4,
        36,
        "receivers.otlp: invalid endpoint \"localhost\": expected host:port",
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = r#"
receivers:
  otlp:
    protocols: { grpc: { endpoint: "nope" } }
    unknown_option: 1
processors:
  batch: { timeout: soon }
exporters:
  otlp: { endpoint: "127.0.0.1:4317", compression: brotli }
  fancy: {}
service:
  pipelines:
    metrics: { receivers: [otlp, prometheus], processors: [batch], exporters: [otlp] }
"#;
    let (file, out) = with_config("validate", yaml);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&file)).collect();
    // One deserialization error per component (the first), plus every cross-component error.
    assert_eq!(lines.len(), 5, "{stderr}");
    assert!(stderr.contains("5 error(s)"), "{stderr}");
    for needle in [
        "receivers.otlp",
        "processors.batch",
        "exporters.otlp",
        "exporters.fancy",
        "service.pipelines.metrics",
    ] {
        assert!(stderr.contains(needle), "missing {needle}: {stderr}");
    }
}

#[test]
fn environment_variables_expand_and_unset_ones_are_errors() {
    let yaml = GOOD.replace(
        "\"127.0.0.1:4317\"",
        "\"${env:SLUICE_TEST_SURELY_UNSET:-127.0.0.1:4317}\"",
    );
    let (_, out) = with_config("validate", &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = GOOD.replace("\"127.0.0.1:4317\"", "\"${env:SLUICE_TEST_SURELY_UNSET}\"");
    assert_error(
        &yaml,
        4,
        36,
        "receivers.otlp: environment variable SLUICE_TEST_SURELY_UNSET is not set",
    );
}

#[test]
fn run_with_a_broken_config_exits_non_zero_and_starts_nothing() {
    let (file, out) = with_config(
        "run",
        &GOOD.replace("debug: {}", "debug: { verbosity: loud }"),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{file}:6:23: exporters.debug: unknown variant `loud`"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing started"), "{stderr}");
}

#[test]
fn run_with_a_busy_port_exits_non_zero_with_the_reason() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let yaml = GOOD
        .replace("127.0.0.1:4317", &format!("127.0.0.1:{port}"))
        .replace(
            "service:\n",
            "service:\n  telemetry: { metrics: { level: none } }\n",
        );
    let (_, out) = with_config("run", &yaml);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = sluice(&["validate", "--config", "/nonexistent/pipeline.yaml"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("/nonexistent/pipeline.yaml: cannot read the config file")
    );
}

#[test]
fn duplicate_keys_are_rejected() {
    let yaml = GOOD.replace(
        "  debug: {}",
        "  debug: {}\n  debug: { verbosity: detailed }",
    );
    assert_error(&yaml, 7, 3, "duplicate mapping key: debug");
}
