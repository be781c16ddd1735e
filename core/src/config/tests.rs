use super::*;
use crate::component::{
    BoxError, Exporter, ExporterContext, ParseFn, Processor, ProcessorContext, ReceiverContext,
    Validate, parse_config,
};
use crate::config::types::{ByteSize, Duration, Endpoint, HttpUrl};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::cell::RefCell;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// A registry with one component type per class. Parsed configs are also recorded, in parse order
// (document order), in a thread-local so that tests can look at the typed values.
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestRecv {
    #[serde(default = "default_recv_endpoint")]
    endpoint: Endpoint,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    max_request_size: Option<ByteSize>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    label: Option<String>,
}

fn default_recv_endpoint() -> Endpoint {
    Endpoint("127.0.0.1:4317".into())
}

impl Validate for TestRecv {}

impl crate::component::ReceiverConfig for TestRecv {
    fn start(&self, _ctx: ReceiverContext) -> BoxFuture<'static, Result<JoinHandle<()>, BoxError>> {
        Box::pin(async { Err::<JoinHandle<()>, BoxError>("test receiver".into()) })
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestProc {
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    timeout: Option<Duration>,
}

fn default_limit() -> u32 {
    100
}

impl Validate for TestProc {
    /// A check beyond deserialization, reported without a position of its own.
    fn validate(&self, _node: &Node, _ctx: &LoadContext) -> Vec<DeError> {
        if self.limit == 0 {
            vec![DeError::new(Pos::default(), "`limit` must be at least 1")]
        } else {
            Vec::new()
        }
    }
}

impl crate::component::ProcessorConfig for TestProc {
    fn build(&self, _ctx: ProcessorContext) -> Result<Arc<dyn Processor>, BoxError> {
        Err("test processor".into())
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestExp {
    endpoint: HttpUrl,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default)]
    max_size: Option<ByteSize>,
}

impl Validate for TestExp {}

impl crate::component::ExporterConfig for TestExp {
    fn build(&self, _ctx: ExporterContext) -> Result<Arc<dyn Exporter>, BoxError> {
        Err("test exporter".into())
    }
    fn sending(&self) -> crate::sending::SendingSettings {
        Default::default()
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Parsed {
    Recv(TestRecv),
    Proc(TestProc),
    Exp(TestExp),
}

thread_local! {
    static PARSED: RefCell<Vec<Parsed>> = const { RefCell::new(Vec::new()) };
}

fn record(p: Parsed) {
    PARSED.with(|v| v.borrow_mut().push(p));
}

fn take_parsed() -> Vec<Parsed> {
    PARSED.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

fn parse_recv(
    n: &Node,
    c: &LoadContext,
) -> Result<Box<dyn crate::component::ReceiverConfig>, Vec<DeError>> {
    let cfg = parse_config::<TestRecv>(n, c)?;
    record(Parsed::Recv(cfg.clone()));
    Ok(Box::new(cfg))
}

fn parse_proc(
    n: &Node,
    c: &LoadContext,
) -> Result<Box<dyn crate::component::ProcessorConfig>, Vec<DeError>> {
    let cfg = parse_config::<TestProc>(n, c)?;
    record(Parsed::Proc(cfg.clone()));
    Ok(Box::new(cfg))
}

fn parse_exp(
    n: &Node,
    c: &LoadContext,
) -> Result<Box<dyn crate::component::ExporterConfig>, Vec<DeError>> {
    let cfg = parse_config::<TestExp>(n, c)?;
    record(Parsed::Exp(cfg.clone()));
    Ok(Box::new(cfg))
}

struct TestRegistry;

impl Registry for TestRegistry {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn crate::component::ReceiverConfig>> {
        (kind == "test_recv").then_some(parse_recv as ParseFn<dyn crate::component::ReceiverConfig>)
    }
    fn processor(&self, kind: &str) -> Option<ParseFn<dyn crate::component::ProcessorConfig>> {
        (kind == "test_proc")
            .then_some(parse_proc as ParseFn<dyn crate::component::ProcessorConfig>)
    }
    fn exporter(&self, kind: &str) -> Option<ParseFn<dyn crate::component::ExporterConfig>> {
        (kind == "test_exp").then_some(parse_exp as ParseFn<dyn crate::component::ExporterConfig>)
    }
    fn kinds(&self, class: Class) -> &'static [&'static str] {
        match class {
            Class::Receiver => &["test_recv"],
            Class::Processor => &["test_proc"],
            Class::Exporter => &["test_exp"],
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const FILE: &str = "pipeline.yaml";

/// Strips the newline right after `r#"` so that line 1 of the YAML is the first written line.
fn yaml(s: &str) -> &str {
    s.strip_prefix('\n').unwrap_or(s)
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    take_parsed();
    load_str(
        yaml(text),
        FILE.into(),
        LoadContext {
            base_dir: PathBuf::from("/etc/sluice"),
        },
        &TestRegistry,
    )
}

fn load_ok(text: &str) -> (Config, Vec<Parsed>) {
    match load(text) {
        Ok(c) => (c, take_parsed()),
        Err(e) => panic!("expected the config to load, got:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(c) => panic!("expected errors, the config loaded: {c:#?}"),
        Err(e) => {
            let pos: Vec<Pos> = e.0.iter().map(|e| e.pos).collect();
            let mut sorted = pos.clone();
            sorted.sort();
            assert_eq!(pos, sorted, "errors are not in file order:\n{e}");
            assert!(e.0.iter().all(|e| &*e.file == FILE));
            e.0
        }
    }
}

/// Exactly one error.
fn one_error(text: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(
        errs.len(),
        1,
        "expected exactly one error, got:\n{}",
        ConfigErrors(errs.clone())
    );
    errs.into_iter().next().unwrap()
}

/// Checks an error's position, component, that its message contains every fragment, and that it
/// displays as `file:line:col: component: message`.
#[track_caller]
fn check(e: &ConfigError, line: u32, column: u32, component: Option<&str>, fragments: &[&str]) {
    assert_eq!(
        (e.pos.line, e.pos.column),
        (line, column),
        "position of: {e}"
    );
    assert_eq!(e.component.as_deref(), component, "component of: {e}");
    for f in fragments {
        assert!(e.message.contains(f), "message {:?} lacks {f:?}", e.message);
    }
    let expected = match component {
        Some(c) => format!("{FILE}:{line}:{column}: {c}: {}", e.message),
        None => format!("{FILE}:{line}:{column}: {}", e.message),
    };
    assert_eq!(e.to_string(), expected);
}

fn cid(s: &str) -> ComponentId {
    ComponentId::parse(s).unwrap()
}

/// An environment variable that is set in any test run (tests must not set variables:
/// `std::env::set_var` is unsafe and the workspace forbids unsafe code).
fn some_set_var() -> (&'static str, String) {
    ["PATH", "HOME", "CARGO_MANIFEST_DIR", "CARGO"]
        .into_iter()
        .find_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .expect("one of PATH, HOME, CARGO_MANIFEST_DIR, CARGO is set")
}

const UNSET: &str = "SLUICE_CORE_TEST_SURELY_UNSET_3F9A";

fn assert_unset() {
    assert!(
        std::env::var_os(UNSET).is_none(),
        "{UNSET} must not be set for these tests"
    );
}

const VALID: &str = r#"
receivers:
  test_recv:
    endpoint: 0.0.0.0:4317
    timeout: 1m30s
  test_recv/b:
processors:
  test_proc:
    limit: 7
exporters:
  test_exp:
    endpoint: http://localhost:9090/api/v1/write
    max_size: 16MiB
service:
  pipelines:
    metrics:
      receivers: [test_recv, test_recv/b]
      processors: [test_proc]
      exporters: [test_exp]
"#;

// ---------------------------------------------------------------------------------------------
// Loading a valid config
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_config_loads_with_typed_values() {
    let (cfg, parsed) = load_ok(VALID);
    assert_eq!(cfg.source, PathBuf::from(FILE));
    assert_eq!(
        cfg.receivers.keys().cloned().collect::<Vec<_>>(),
        [cid("test_recv"), cid("test_recv/b")]
    );
    assert_eq!(
        cfg.processors.keys().cloned().collect::<Vec<_>>(),
        [cid("test_proc")]
    );
    assert_eq!(
        cfg.exporters.keys().cloned().collect::<Vec<_>>(),
        [cid("test_exp")]
    );
    assert_eq!(
        parsed,
        [
            Parsed::Recv(TestRecv {
                endpoint: Endpoint("0.0.0.0:4317".into()),
                timeout: Some(Duration::from_secs(90)),
                max_request_size: None,
                port: None,
                label: None,
            }),
            Parsed::Recv(TestRecv {
                endpoint: default_recv_endpoint(),
                timeout: None,
                max_request_size: None,
                port: None,
                label: None,
            }),
            Parsed::Proc(TestProc {
                limit: 7,
                timeout: None
            }),
            Parsed::Exp(TestExp {
                endpoint: HttpUrl::parse("http://localhost:9090/api/v1/write").unwrap(),
                timeout: None,
                max_size: Some(ByteSize::mib(16)),
            }),
        ]
    );

    let svc = &cfg.service;
    assert_eq!(svc.shutdown_timeout, std::time::Duration::from_secs(10));
    assert_eq!(
        svc.telemetry.metrics.address,
        Endpoint("127.0.0.1:8888".into())
    );
    assert_eq!(svc.telemetry.metrics.level, service::TelemetryLevel::Normal);
    assert_eq!(svc.telemetry.logs.level, "info");
    assert_eq!(svc.pipelines.len(), 1);
    let p = &svc.pipelines[0];
    assert_eq!(p.id, "metrics");
    let ids = |l: &[Located<ComponentId>]| {
        l.iter()
            .map(|l| (l.value.to_string(), l.pos.line, l.pos.column))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(&p.receivers),
        [
            ("test_recv".to_string(), 16, 19),
            ("test_recv/b".to_string(), 16, 30)
        ]
    );
    assert_eq!(ids(&p.processors), [("test_proc".to_string(), 17, 20)]);
    assert_eq!(ids(&p.exporters), [("test_exp".to_string(), 18, 19)]);
}

#[test]
fn empty_component_value_parses_with_defaults() {
    let (cfg, parsed) = load_ok(
        r#"
receivers:
  test_recv:
processors:
  test_proc:
exporters:
  test_exp: {endpoint: "https://example.com"}
service:
  pipelines:
    metrics:
      receivers: [test_recv]
      processors: [test_proc]
      exporters: [test_exp]
"#,
    );
    assert!(cfg.receivers.contains_key(&cid("test_recv")));
    assert!(cfg.processors.contains_key(&cid("test_proc")));
    assert_eq!(
        parsed[..2],
        [
            Parsed::Recv(TestRecv {
                endpoint: default_recv_endpoint(),
                timeout: None,
                max_request_size: None,
                port: None,
                label: None,
            }),
            Parsed::Proc(TestProc {
                limit: 100,
                timeout: None
            }),
        ]
    );
}

#[test]
fn service_settings_are_read() {
    let (cfg, _) = load_ok(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  shutdown_timeout: 250ms
  telemetry:
    metrics:
      address: 0.0.0.0:9999
      level: none
    logs:
      level: debug
  pipelines:
    metrics/a: {receivers: [test_recv], exporters: [test_exp]}
    metrics/b: {receivers: [test_recv], exporters: [test_exp]}
"#,
    );
    let svc = &cfg.service;
    assert_eq!(svc.shutdown_timeout, std::time::Duration::from_millis(250));
    assert_eq!(svc.telemetry.metrics.address.as_str(), "0.0.0.0:9999");
    assert_eq!(svc.telemetry.metrics.level, service::TelemetryLevel::None);
    assert_eq!(svc.telemetry.logs.level, "debug");
    let ids: Vec<&str> = svc.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["metrics/a", "metrics/b"]);
    assert!(svc.pipelines.iter().all(|p| p.processors.is_empty()));
}

#[test]
fn numbers_given_as_strings_are_accepted() {
    let (_, parsed) = load_ok(
        r#"
receivers:
  test_recv: {port: "4317", max_request_size: 1024}
  test_recv/2: {port: 1_000}
exporters: {test_exp: {endpoint: "http://a:1"}}
service: {pipelines: {metrics: {receivers: [test_recv, test_recv/2], exporters: [test_exp]}}}
"#,
    );
    let Parsed::Recv(r) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    assert_eq!(r.port, Some(4317));
    assert_eq!(r.max_request_size, Some(ByteSize(1024)));
    let Parsed::Recv(r) = &parsed[1] else {
        panic!("{parsed:?}")
    };
    assert_eq!(r.port, Some(1000));
}

// ---------------------------------------------------------------------------------------------
// YAML syntax
// ---------------------------------------------------------------------------------------------

#[test]
fn yaml_unclosed_bracket_is_reported_where_the_parser_stops() {
    let e = one_error(
        r#"
receivers:
  test_recv:
    endpoint: [a
exporters: {}
"#,
    );
    // The flow sequence swallows the next line; `exporters:`'s colon cannot be in it.
    check(&e, 4, 10, None, &[]);
    assert_eq!(e.message, "illegal placement of ':' indicator");
}

#[test]
fn yaml_bad_indentation_is_reported_at_the_misindented_line() {
    let e = one_error(
        r#"
receivers:
  test_recv:
    endpoint: 1.2.3.4:5
   timeout: 5s
"#,
    );
    check(&e, 4, 4, None, &[]);
    assert_eq!(
        e.message,
        "while parsing a block mapping, did not find expected key"
    );
}

#[test]
fn yaml_duplicate_component_ids_are_rejected() {
    let e = one_error(
        r#"
receivers:
  test_recv:
  test_recv:
"#,
    );
    check(&e, 3, 3, None, &[]);
    assert_eq!(e.message, "duplicate mapping key: test_recv");
}

#[test]
fn yaml_duplicate_keys_inside_a_component_are_rejected() {
    let e = one_error(
        r#"
receivers:
  test_recv:
    timeout: 1s
    port: 1
    timeout: 2s
"#,
    );
    check(&e, 5, 5, None, &[]);
    assert_eq!(e.message, "duplicate mapping key: timeout");
}

#[test]
fn yaml_duplicate_top_level_sections_are_rejected() {
    let e = one_error("receivers: {}\nexporters: {}\nreceivers: {}\n");
    check(&e, 3, 1, None, &[]);
    assert_eq!(e.message, "duplicate mapping key: receivers");
}

/// The parser's own rendering (`error: line 4 column 10: ... set DuplicateKeyPolicy ...` plus a
/// snippet) is reduced to the message: the position is carried by the error itself.
#[test]
fn yaml_syntax_error_message_does_not_repeat_the_position() {
    for (text, line, column, message) in [
        (
            "receivers:\n  test_recv:\n    endpoint: [a\nexporters: {}\n",
            4,
            10,
            "illegal placement of ':' indicator",
        ),
        (
            "receivers: {}\nexporters: {}\nreceivers: {}\n",
            3,
            1,
            "duplicate mapping key: receivers",
        ),
        (
            "receivers:\n  test_recv: {label: 'unterminated}\n",
            2,
            22,
            "unclosed quote",
        ),
        (
            "receivers:\n  test_recv: {label: *nope}\n",
            2,
            22,
            "alias references unknown anchor",
        ),
        (
            "receivers: a: b\n",
            1,
            13,
            "mapping values are not allowed in this context",
        ),
    ] {
        let e = one_error(text);
        assert_eq!(
            e.to_string(),
            format!("{FILE}:{line}:{column}: {message}"),
            "{text:?}"
        );
        assert!(!e.message.contains('\n'), "{e:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Component errors
// ---------------------------------------------------------------------------------------------

/// A config whose receiver section is the given text and everything else is valid.
fn with_receiver(recv: &str) -> String {
    format!(
        "receivers:\n{recv}exporters:\n  test_exp: {{endpoint: \"http://a:1\"}}\nservice:\n  pipelines:\n    metrics: {{receivers: [test_recv], exporters: [test_exp]}}\n"
    )
}

#[test]
fn unknown_key_in_a_component_points_at_the_key() {
    let e = one_error(&with_receiver(
        "  test_recv:\n    endpoint: 1.2.3.4:5\n    endpiont: x\n",
    ));
    check(
        &e,
        4,
        5,
        Some("receivers.test_recv"),
        &[
            "unknown field `endpiont`",
            "`endpoint`",
            "`timeout`",
            "`max_request_size`",
            "`port`",
            "`label`",
        ],
    );
}

#[test]
fn unknown_key_in_a_processor_points_at_the_key() {
    let e = one_error(
        r#"
receivers: {test_recv: }
processors:
  test_proc/x:
    limit: 5
    timeout: 1s
    colour: blue
exporters: {test_exp: {endpoint: "http://a:1"}}
service: {pipelines: {metrics: {receivers: [test_recv], processors: [test_proc/x], exporters: [test_exp]}}}
"#,
    );
    check(
        &e,
        6,
        5,
        Some("processors.test_proc/x"),
        &["unknown field `colour`", "`limit`", "`timeout`"],
    );
}

#[test]
fn unknown_component_type_points_at_the_id_and_lists_known_types() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters:
  test_exp: {endpoint: "http://a:1"}
  prometheusremotewrite/x:
    endpoint: http://b:2
service: {pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}}
"#,
    );
    check(
        &e,
        4,
        3,
        Some("exporters.prometheusremotewrite/x"),
        &[
            "unknown exporter type `prometheusremotewrite`",
            "known types: test_exp",
        ],
    );
}

#[test]
fn unknown_component_type_that_a_pipeline_uses_is_not_also_reported_as_undefined() {
    let e = one_error(
        r#"
receivers:
  nope:
exporters: {test_exp: {endpoint: "http://a:1"}}
service: {pipelines: {metrics: {receivers: [nope], exporters: [test_exp]}}}
"#,
    );
    check(
        &e,
        2,
        3,
        Some("receivers.nope"),
        &["unknown receiver type `nope`", "known types: test_recv"],
    );
}

#[test]
fn invalid_component_id_is_reported_at_the_key() {
    let errs = errors(
        r#"
receivers:
  test_recv:
  test_recv/:
exporters: {test_exp: {endpoint: "http://a:1"}}
service: {pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}}
"#,
    );
    assert_eq!(errs.len(), 1, "{}", ConfigErrors(errs.clone()));
    check(
        &errs[0],
        3,
        3,
        None,
        &["invalid component id \"test_recv/\""],
    );
}

#[test]
fn bad_duration_is_reported_at_the_value() {
    let e = one_error(&with_receiver("  test_recv:\n    timeout: 5 parsecs\n"));
    check(
        &e,
        3,
        14,
        Some("receivers.test_recv"),
        &["invalid duration \"5 parsecs\"", "parsecs"],
    );
}

#[test]
fn endpoint_without_port_is_reported_at_the_value() {
    let e = one_error(&with_receiver(
        "  test_recv:\n    port: 5\n    endpoint: nohost\n",
    ));
    check(
        &e,
        4,
        15,
        Some("receivers.test_recv"),
        &["invalid endpoint \"nohost\"", "host:port"],
    );
}

#[test]
fn endpoint_with_port_out_of_range_is_reported_at_the_value() {
    let e = one_error(&with_receiver(
        "  test_recv:\n    endpoint: 1.2.3.4:99999\n",
    ));
    check(
        &e,
        3,
        15,
        Some("receivers.test_recv"),
        &[
            "invalid endpoint \"1.2.3.4:99999\"",
            "\"99999\"",
            "0 to 65535",
        ],
    );
}

#[test]
fn bad_size_is_reported_at_the_value() {
    let e = one_error(&with_receiver(
        "  test_recv:\n    max_request_size: 12 bananas\n",
    ));
    check(
        &e,
        3,
        23,
        Some("receivers.test_recv"),
        &["invalid size \"12 bananas\"", "MiB"],
    );
}

#[test]
fn port_out_of_range_is_reported_at_the_value() {
    let e = one_error(&with_receiver("  test_recv:\n    port: 70000\n"));
    check(
        &e,
        3,
        11,
        Some("receivers.test_recv"),
        &["expected a non-negative integer (at most 65535)"],
    );
}

#[test]
fn wrong_kind_of_value_is_reported_at_the_value() {
    let e = one_error(&with_receiver("  test_recv:\n    timeout: [1s]\n"));
    check(
        &e,
        3,
        14,
        Some("receivers.test_recv"),
        &["expected a string, found a list"],
    );
    let e = one_error(&with_receiver("  test_recv: [a]\n"));
    check(
        &e,
        2,
        14,
        Some("receivers.test_recv"),
        &["expected a map, found a list"],
    );
}

#[test]
fn bad_url_is_reported_at_the_value() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters:
  test_exp:
    endpoint: ftp://example.com
service: {pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}}
"#,
    );
    check(
        &e,
        4,
        15,
        Some("exporters.test_exp"),
        &["invalid URL \"ftp://example.com\"", "http://"],
    );
}

#[test]
fn missing_required_field_is_reported_at_the_component() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters:
  test_exp:
    timeout: 1s
service: {pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}}
"#,
    );
    // The component's map starts at its first key.
    check(
        &e,
        4,
        5,
        Some("exporters.test_exp"),
        &["missing field `endpoint`"],
    );
}

#[test]
fn validation_error_without_a_position_takes_the_components() {
    let e = one_error(
        r#"
receivers: {test_recv: }
processors:
  test_proc:
    timeout: 1s
    limit: 0
exporters: {test_exp: {endpoint: "http://a:1"}}
service: {pipelines: {metrics: {receivers: [test_recv], processors: [test_proc], exporters: [test_exp]}}}
"#,
    );
    check(
        &e,
        4,
        5,
        Some("processors.test_proc"),
        &["`limit` must be at least 1"],
    );
}

#[test]
fn several_errors_in_different_components_are_all_reported_in_file_order() {
    let errs = errors(
        r#"
receivers:
  test_recv:
    timeout: 5 parsecs
  test_recv/2:
    endpoint: nohost
  kafka:
processors:
  test_proc:
    limit: -1
exporters:
  test_exp:
    endpoint: http://a:1
    max_size: lots
service:
  pipelines:
    metrics:
      receivers: [test_recv, test_recv/3]
      processors: [test_proc, test_proc]
      exporters: [test_exp]
    logs:
      receivers: [test_recv]
      exporters: [test_exp]
"#,
    );
    assert_eq!(errs.len(), 8, "{}", ConfigErrors(errs.clone()));
    check(
        &errs[0],
        3,
        14,
        Some("receivers.test_recv"),
        &["invalid duration"],
    );
    check(
        &errs[1],
        5,
        15,
        Some("receivers.test_recv/2"),
        &["invalid endpoint \"nohost\""],
    );
    check(
        &errs[2],
        6,
        3,
        Some("receivers.kafka"),
        &["unknown receiver type `kafka`"],
    );
    check(
        &errs[3],
        9,
        12,
        Some("processors.test_proc"),
        &["expected a non-negative integer"],
    );
    check(
        &errs[4],
        13,
        15,
        Some("exporters.test_exp"),
        &["invalid size \"lots\""],
    );
    check(
        &errs[5],
        17,
        30,
        Some("service.pipelines.metrics"),
        &["references receiver `test_recv/3` which is not configured in `receivers`"],
    );
    check(
        &errs[6],
        18,
        31,
        Some("service.pipelines.metrics"),
        &["references processor `test_proc` more than once"],
    );
    check(
        &errs[7],
        20,
        5,
        Some("service.pipelines.logs"),
        &["pipeline `logs`", "metrics only"],
    );

    // The whole report: one line per error, each `file:line:col: component: message`.
    let text = ConfigErrors(errs.clone()).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8);
    assert!(
        lines[0]
            .starts_with("pipeline.yaml:3:14: receivers.test_recv: invalid duration \"5 parsecs\""),
        "{text}"
    );
    assert!(
        lines[7].starts_with("pipeline.yaml:20:5: service.pipelines.logs: pipeline `logs`"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Pipelines
// ---------------------------------------------------------------------------------------------

#[test]
fn pipeline_referencing_undefined_receiver_points_at_the_list_item() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics:
      receivers:
        - test_recv
        - test_recv/missing
      exporters: [test_exp]
"#,
    );
    check(
        &e,
        8,
        11,
        Some("service.pipelines.metrics"),
        &["references receiver `test_recv/missing` which is not configured in `receivers`"],
    );
}

#[test]
fn pipeline_referencing_undefined_exporter_and_processor_points_at_the_list_items() {
    let errs = errors(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics/x:
      receivers: [test_recv]
      processors: [batch]
      exporters: [test_exp, otlp]
"#,
    );
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    check(
        &errs[0],
        7,
        20,
        Some("service.pipelines.metrics/x"),
        &["references processor `batch` which is not configured in `processors`"],
    );
    check(
        &errs[1],
        8,
        29,
        Some("service.pipelines.metrics/x"),
        &["references exporter `otlp` which is not configured in `exporters`"],
    );
}

#[test]
fn processor_listed_twice_is_reported_at_the_second_mention() {
    let e = one_error(
        r#"
receivers: {test_recv: }
processors: {test_proc: , test_proc/b: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics:
      receivers: [test_recv]
      processors: [test_proc, test_proc/b, test_proc]
      exporters: [test_exp]
"#,
    );
    check(
        &e,
        8,
        44,
        Some("service.pipelines.metrics"),
        &["references processor `test_proc` more than once"],
    );
}

#[test]
fn pipeline_named_traces_is_rejected_at_its_key() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics: {receivers: [test_recv], exporters: [test_exp]}
    traces: {receivers: [test_recv], exporters: [test_exp]}
"#,
    );
    check(
        &e,
        6,
        5,
        Some("service.pipelines.traces"),
        &["pipeline `traces`", "metrics only", "metrics/<name>"],
    );
}

#[test]
fn pipeline_without_exporters_or_with_an_empty_list_is_rejected() {
    let errs = errors(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics/a:
      receivers: [test_recv]
    metrics/b:
      receivers: []
      exporters: [test_exp]
"#,
    );
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    check(
        &errs[0],
        6,
        7,
        Some("service.pipelines.metrics/a"),
        &["missing field `exporters`"],
    );
    check(
        &errs[1],
        8,
        7,
        Some("service.pipelines.metrics/b"),
        &["at least one entry in `receivers`"],
    );
}

#[test]
fn unknown_key_in_a_pipeline_points_at_the_key() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines:
    metrics:
      receivers: [test_recv]
      exporters: [test_exp]
      connectors: [x]
"#,
    );
    check(
        &e,
        8,
        7,
        Some("service.pipelines.metrics"),
        &[
            "unknown field `connectors`",
            "`receivers`",
            "`processors`",
            "`exporters`",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Missing or malformed sections
// ---------------------------------------------------------------------------------------------

#[test]
fn empty_file_is_one_error() {
    for text in ["", "\n\n   \n"] {
        let e = one_error(text);
        check(&e, 1, 1, None, &["the config file is empty"]);
    }
}

#[test]
fn comment_only_file_is_reported_as_empty() {
    // Reported where the (empty) document ends.
    let e = one_error("# nothing here yet\n");
    check(&e, 2, 1, None, &["the config file is empty"]);
}

#[test]
fn non_map_document_is_rejected() {
    let e = one_error("- receivers\n- exporters\n");
    check(&e, 1, 1, None, &["must be a map"]);
}

#[test]
fn missing_service_is_reported() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
"#,
    );
    check(&e, 1, 1, None, &["`service` is missing"]);
}

#[test]
fn missing_pipelines_is_reported_at_the_service() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  telemetry:
    logs: {level: warn}
"#,
    );
    check(&e, 4, 3, Some("service"), &["`pipelines` is missing"]);

    let e = one_error(
        "receivers: {test_recv: }\nexporters: {test_exp: {endpoint: \"http://a:1\"}}\nservice:\n",
    );
    check(&e, 3, 8, Some("service"), &["`pipelines` is missing"]);
}

#[test]
fn empty_pipelines_is_reported() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  pipelines: {}
"#,
    );
    check(&e, 4, 14, Some("service"), &["no pipelines are defined"]);
}

#[test]
fn missing_receivers_and_exporters_are_reported() {
    let errs = errors("service:\n  pipelines:\n    metrics: {receivers: [r], exporters: [e]}\n");
    assert_eq!(errs.len(), 4, "{}", ConfigErrors(errs.clone()));
    check(&errs[0], 1, 1, None, &["no receivers are configured"]);
    check(&errs[1], 1, 1, None, &["no exporters are configured"]);
    check(
        &errs[2],
        3,
        27,
        Some("service.pipelines.metrics"),
        &["references receiver `r`"],
    );
    check(
        &errs[3],
        3,
        43,
        Some("service.pipelines.metrics"),
        &["references exporter `e`"],
    );
}

#[test]
fn empty_receivers_section_is_reported_at_the_section() {
    let errs = errors(
        "receivers:\nexporters: {test_exp: {endpoint: \"http://a:1\"}}\nservice: {pipelines: {metrics: {receivers: [], exporters: [test_exp]}}}\n",
    );
    // `receivers:` is empty and the pipeline's list too, each reported where it is.
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    check(&errs[0], 1, 10, None, &["no receivers are configured"]);
    check(
        &errs[1],
        3,
        32,
        Some("service.pipelines.metrics"),
        &["at least one entry in `receivers`"],
    );
}

#[test]
fn unknown_top_level_keys_are_reported() {
    let errs = errors(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
extensions: {health_check: }
service: {pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}}
recievers: {}
"#,
    );
    assert_eq!(errs.len(), 2, "{}", ConfigErrors(errs.clone()));
    check(&errs[0], 3, 1, None, &["`extensions` are not supported"]);
    check(
        &errs[1],
        5,
        1,
        None,
        &["unknown top-level key `recievers`", "`receivers`"],
    );
}

#[test]
fn unknown_key_in_service_telemetry_points_at_the_key() {
    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  telemetry:
    metrics:
      adress: 0.0.0.0:8888
  pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}
"#,
    );
    check(
        &e,
        6,
        7,
        Some("service"),
        &["unknown field `adress`", "`address`"],
    );
}

// ---------------------------------------------------------------------------------------------
// Environment variables
// ---------------------------------------------------------------------------------------------

#[test]
fn env_variable_is_expanded() {
    let (name, value) = some_set_var();
    let (_, parsed) = load_ok(&with_receiver(&format!(
        "  test_recv:\n    label: \"<${{env:{name}}}>\"\n"
    )));
    let Parsed::Recv(r) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    assert_eq!(r.label.as_deref(), Some(format!("<{value}>").as_str()));
}

#[test]
fn env_default_is_used_when_unset_and_numbers_parse() {
    assert_unset();
    let (_, parsed) = load_ok(&with_receiver(&format!(
        "  test_recv:\n    port: ${{env:{UNSET}:-4317}}\n    timeout: ${{env:{UNSET}:-2s}}\n    endpoint: ${{env:{UNSET}:-[::1]:9}}\n    max_request_size: ${{env:{UNSET}:-4MiB}}\n"
    )));
    assert_eq!(
        parsed[0],
        Parsed::Recv(TestRecv {
            endpoint: Endpoint("[::1]:9".into()),
            timeout: Some(Duration::from_secs(2)),
            max_request_size: Some(ByteSize::mib(4)),
            port: Some(4317),
            label: None,
        })
    );
}

#[test]
fn env_default_is_ignored_when_set() {
    let (name, value) = some_set_var();
    let (_, parsed) = load_ok(&with_receiver(&format!(
        "  test_recv:\n    label: ${{env:{name}:-fallback}}\n"
    )));
    let Parsed::Recv(r) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    assert_eq!(r.label.as_deref(), Some(value.as_str()));
}

#[test]
fn dollar_dollar_escapes_and_other_templates_are_kept() {
    assert_unset();
    let (_, parsed) = load_ok(&with_receiver(&format!(
        "  test_recv:\n    label: \"$${{env:HOME}} costs $$5, ${{tenant}}, $x, ${{env:{UNSET}:-a:-b}}\"\n"
    )));
    let Parsed::Recv(r) = &parsed[0] else {
        panic!("{parsed:?}")
    };
    assert_eq!(
        r.label.as_deref(),
        Some("${env:HOME} costs $5, ${tenant}, $x, a:-b")
    );
}

#[test]
fn unset_env_variable_is_one_error_at_the_scalar_with_its_component() {
    assert_unset();
    let e = one_error(&with_receiver(&format!(
        "  test_recv:\n    port: 1\n    endpoint: ${{env:{UNSET}}}\n"
    )));
    check(
        &e,
        4,
        15,
        Some("receivers.test_recv"),
        &[
            &format!("environment variable {UNSET} is not set"),
            &format!("${{env:{UNSET}:-value}}"),
        ],
    );
}

#[test]
fn unset_env_variables_in_service_and_pipelines_name_their_component() {
    assert_unset();
    let errs = errors(&format!(
        r#"
receivers: {{test_recv: }}
processors:
  test_proc: {{timeout: "${{env:{UNSET}}}"}}
exporters: {{test_exp: {{endpoint: "http://a:1"}}}}
service:
  shutdown_timeout: ${{env:{UNSET}}}
  pipelines:
    metrics:
      receivers: [test_recv]
      exporters: ["${{env:{UNSET}}}"]
"#
    ));
    assert_eq!(errs.len(), 3, "{}", ConfigErrors(errs.clone()));
    let msg = format!("environment variable {UNSET} is not set");
    check(&errs[0], 3, 24, Some("processors.test_proc"), &[&msg]);
    check(&errs[1], 6, 21, Some("service"), &[&msg]);
    check(&errs[2], 10, 19, Some("service.pipelines.metrics"), &[&msg]);
}

#[test]
fn invalid_env_reference_is_reported() {
    let e = one_error(&with_receiver("  test_recv:\n    label: \"${env:1BAD}\"\n"));
    check(
        &e,
        3,
        12,
        Some("receivers.test_recv"),
        &["invalid environment variable name \"1BAD\""],
    );
    let e = one_error(&with_receiver("  test_recv:\n    label: \"${env:OPEN\"\n"));
    check(
        &e,
        3,
        12,
        Some("receivers.test_recv"),
        &["unclosed `${env:`"],
    );
}

// ---------------------------------------------------------------------------------------------
// load_file
// ---------------------------------------------------------------------------------------------

#[test]
fn load_file_reads_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.yaml");
    std::fs::write(&path, yaml(VALID)).unwrap();
    let cfg = load_file(&path, &TestRegistry).unwrap();
    assert_eq!(cfg.source, path);
    assert_eq!(cfg.receivers.len(), 2);

    std::fs::write(&path, "receivers: {test_recv: {port: x}}\n").unwrap();
    let errs = load_file(&path, &TestRegistry).unwrap_err();
    let first = &errs.0[0];
    assert_eq!(&*first.file, path.display().to_string());
    assert!(
        errs.to_string()
            .starts_with(&format!("{}:1:1: ", path.display())),
        "{errs}"
    );
    assert!(errs.0.iter().any(|e| e.to_string()
        == format!("{}:1:31: receivers.test_recv: expected a non-negative integer (at most 65535), found \"x\"", path.display())), "{errs}");
}

#[test]
fn load_file_reports_an_unreadable_file_without_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.yaml");
    let errs = load_file(&path, &TestRegistry).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert!(!errs.0[0].pos.is_known());
    let text = errs.to_string();
    assert!(
        text.starts_with(&format!(
            "{}: cannot read the config file: ",
            path.display()
        )),
        "{text}"
    );
}

#[test]
fn load_context_resolves_relative_paths() {
    let ctx = LoadContext {
        base_dir: PathBuf::from("/etc/sluice"),
    };
    assert_eq!(
        ctx.resolve("certs/ca.pem"),
        PathBuf::from("/etc/sluice/certs/ca.pem")
    );
    assert_eq!(ctx.resolve("/abs/ca.pem"), PathBuf::from("/abs/ca.pem"));
}

// ---------------------------------------------------------------------------------------------
// Value types and env::expand
// ---------------------------------------------------------------------------------------------

#[test]
fn byte_size_parse() {
    let ok = [
        ("0", 0),
        ("512", 512),
        (" 512B ", 512),
        ("1KB", 1_000),
        ("1kB", 1_000),
        ("2K", 2_000),
        ("2k", 2_000),
        ("3MB", 3_000_000),
        ("3M", 3_000_000),
        ("1GB", 1_000_000_000),
        ("1G", 1_000_000_000),
        ("2TB", 2_000_000_000_000),
        ("1T", 1_000_000_000_000),
        ("512KiB", 512 << 10),
        ("1Ki", 1 << 10),
        ("16MiB", 16 << 20),
        ("16 MiB", 16 << 20),
        ("1Mi", 1 << 20),
        ("2GiB", 2 << 30),
        ("1Gi", 1 << 30),
        ("1TiB", 1 << 40),
        ("1Ti", 1 << 40),
        ("1.5MiB", 3 << 19),
        ("0.5KiB", 512),
        ("1.5", 1),
        ("18446744073709551615", u64::MAX),
    ];
    for (s, want) in ok {
        assert_eq!(ByteSize::parse(s), Some(want), "{s:?}");
    }
    let bad = [
        "",
        " ",
        "MiB",
        "-1",
        "-1KiB",
        "1.2.3MiB",
        ".",
        "12 bananas",
        "1e3",
        "1mib",
        "1 M B",
        "16EiB",
        "18446744073709551616",
        "20000000TiB",
        "99999999999.5TiB",
        "0x10",
    ];
    for s in bad {
        assert_eq!(ByteSize::parse(s), None, "{s:?}");
    }
}

#[test]
fn endpoint_parse() {
    for s in [
        "127.0.0.1:4317",
        "localhost:4318",
        "[::1]:9090",
        "0.0.0.0:0",
        "my-host_1.example.com:65535",
    ] {
        assert_eq!(Endpoint::parse(s), Ok(Endpoint(s.to_string())), "{s:?}");
    }
    assert_eq!(
        Endpoint::parse("  localhost:1 "),
        Ok(Endpoint("localhost:1".into()))
    );

    let err = |s: &str| Endpoint::parse(s).unwrap_err();
    assert!(
        err("nohost").contains("expected host:port"),
        "{}",
        err("nohost")
    );
    assert!(err("").contains("expected host:port"));
    let e = err("1.2.3.4:99999");
    assert!(
        e.contains("invalid endpoint \"1.2.3.4:99999\"")
            && e.contains("\"99999\"")
            && e.contains("0 to 65535"),
        "{e}"
    );
    assert!(err("host:").contains("port \"\""));
    assert!(err("host:http").contains("port \"http\""));
    assert!(err(":4317").contains("host \"\""));
    assert!(err("::1:4317").contains("host \"::1\""));
    assert!(err("[::1:4317").contains("host \"[::1\""));
    assert!(err("[zz]:4317").contains("host \"[zz]\""));
    assert!(err("[127.0.0.1]:4317").contains("host"));
    assert!(err("exa mple:80").contains("host \"exa mple\""));
    assert!(err("http://host:80").contains("host \"http://host\""));
}

#[test]
fn http_url_parse() {
    for s in [
        "http://localhost:9090/api/v1/write",
        "https://example.com",
        "http://[::1]:8080/x?y=1",
    ] {
        let u = HttpUrl::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(
            u.0.to_string().trim_end_matches('/'),
            s.trim_end_matches('/')
        );
    }
    assert_eq!(
        HttpUrl::parse(" https://a:1/p ").unwrap().0.to_string(),
        "https://a:1/p"
    );
    assert_eq!(
        HttpUrl::parse("https://a:1/p").unwrap().to_string(),
        "https://a:1/p"
    );

    let err = |s: &str| HttpUrl::parse(s).unwrap_err();
    assert!(err("ftp://example.com").contains("must start with http:// or https://"));
    assert!(err("localhost:9090").contains("must start with http:// or https://"));
    assert!(err("/api/v1/write").contains("must start with http:// or https://"));
    assert!(err("not a url").starts_with("invalid URL \"not a url\""));
    assert!(err("").starts_with("invalid URL"));
    assert!(err("http://").starts_with("invalid URL"));
}

fn from_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, DeError> {
    let n = node::parse(text).expect("valid YAML");
    from_node::<T>(&n)
}

#[test]
fn duration_deserializes_humantime_and_zero() {
    assert_eq!(
        from_yaml::<Duration>("0").unwrap(),
        Duration(std::time::Duration::ZERO)
    );
    assert_eq!(
        from_yaml::<Duration>("200ms").unwrap(),
        Duration::from_millis(200)
    );
    assert_eq!(from_yaml::<Duration>("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(
        from_yaml::<Duration>("1m30s").unwrap(),
        Duration::from_secs(90)
    );
    assert_eq!(
        from_yaml::<Duration>("1h").unwrap(),
        Duration::from_secs(3600)
    );
    assert_eq!(Duration::from_secs(90).to_string(), "1m 30s");
    for bad in ["5", "5 parsecs", "-1s", "soon", "\"\""] {
        let e = from_yaml::<Duration>(bad).unwrap_err();
        assert!(e.message.contains("invalid duration"), "{bad}: {e}");
        assert_eq!((e.pos.line, e.pos.column), (1, 1), "{bad}");
    }
}

#[test]
fn byte_size_and_endpoint_deserialize_with_their_messages() {
    assert_eq!(from_yaml::<ByteSize>("16MiB").unwrap(), ByteSize::mib(16));
    assert_eq!(from_yaml::<ByteSize>("1024").unwrap(), ByteSize(1024));
    let e = from_yaml::<ByteSize>("lots").unwrap_err();
    assert_eq!(
        e.message,
        "invalid size \"lots\"; write bytes or a number with a unit such as 512KiB, 16MiB, 1GB"
    );
    assert_eq!(
        from_yaml::<Endpoint>("\"[::1]:1\"").unwrap(),
        Endpoint("[::1]:1".into())
    );
    let e = from_yaml::<HttpUrl>("x: 1").unwrap_err();
    assert!(e.message.contains("expected a string, found a map"), "{e}");
}

#[test]
fn located_values_carry_their_positions() {
    let v: Vec<Located<String>> = from_yaml("- a\n- bb\n-   ccc\n").unwrap();
    let got: Vec<(&str, u32, u32)> = v
        .iter()
        .map(|l| (l.value.as_str(), l.pos.line, l.pos.column))
        .collect();
    assert_eq!(got, [("a", 1, 3), ("bb", 2, 3), ("ccc", 3, 5)]);
}

#[test]
fn env_expand() {
    assert_unset();
    let (name, value) = some_set_var();
    assert_eq!(env::expand("plain").unwrap(), "plain");
    assert_eq!(env::expand("").unwrap(), "");
    assert_eq!(env::expand(&format!("${{env:{name}}}")).unwrap(), value);
    assert_eq!(
        env::expand(&format!("a${{env:{name}}}b${{env:{name}}}c")).unwrap(),
        format!("a{value}b{value}c")
    );
    assert_eq!(env::expand(&format!("${{env:{name}:-x}}")).unwrap(), value);
    assert_eq!(env::expand(&format!("${{env:{UNSET}:-x}}")).unwrap(), "x");
    assert_eq!(env::expand(&format!("${{env:{UNSET}:-}}")).unwrap(), "");
    assert_eq!(
        env::expand(&format!("${{env:{UNSET}:-a:-b}}")).unwrap(),
        "a:-b"
    );
    assert_eq!(
        env::expand(&format!("${{env:{UNSET}:-http://h:1/p}}")).unwrap(),
        "http://h:1/p"
    );
    assert_eq!(env::expand("$$").unwrap(), "$");
    assert_eq!(env::expand("$$$$").unwrap(), "$$");
    assert_eq!(env::expand("a$$b").unwrap(), "a$b");
    assert_eq!(env::expand("$${env:X}").unwrap(), "${env:X}");
    assert_eq!(env::expand("$").unwrap(), "$");
    assert_eq!(env::expand("5$").unwrap(), "5$");
    assert_eq!(env::expand("$HOME").unwrap(), "$HOME");
    assert_eq!(
        env::expand("${tenant}/${env_x}").unwrap(),
        "${tenant}/${env_x}"
    );
    assert_eq!(env::expand("x ${ENV:HOME}").unwrap(), "x ${ENV:HOME}");
    assert_eq!(env::expand("ünïcödé $$ ✓").unwrap(), "ünïcödé $ ✓");
    // The value is not expanded again.
    assert_eq!(
        env::expand(&format!("$$${{env:{UNSET}:-$$}}")).unwrap(),
        "$$$"
    );

    let e = env::expand(&format!("a ${{env:{UNSET}}} b")).unwrap_err();
    assert_eq!(
        e,
        format!(
            "environment variable {UNSET} is not set (give a default with ${{env:{UNSET}:-value}})"
        )
    );
    // The first unset variable is named.
    let e = env::expand(&format!(
        "${{env:{name}}}${{env:{UNSET}_1}}${{env:{UNSET}_2}}"
    ))
    .unwrap_err();
    assert!(e.contains(&format!("{UNSET}_1 is not set")), "{e}");
    assert!(
        env::expand("${env:}")
            .unwrap_err()
            .contains("invalid environment variable name \"\"")
    );
    assert!(
        env::expand("${env:A-B}")
            .unwrap_err()
            .contains("invalid environment variable name \"A-B\"")
    );
    assert!(
        env::expand("${env:9}")
            .unwrap_err()
            .contains("invalid environment variable name")
    );
    assert!(
        env::expand("${env: HOME}")
            .unwrap_err()
            .contains("invalid environment variable name")
    );
    assert!(
        env::expand("${env:HOME")
            .unwrap_err()
            .contains("unclosed `${env:`")
    );
    // `_` may start a name.
    assert_eq!(
        env::expand(&format!("${{env:_{UNSET}:-ok}}")).unwrap(),
        "ok"
    );
}

#[test]
fn service_log_level_is_validated_at_its_value() {
    let (cfg, _) = load_ok(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  telemetry:
    logs: {level: "info,sluice_exporters=DEBUG"}
  pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}
"#,
    );
    assert_eq!(
        cfg.service.telemetry.logs.level,
        "info,sluice_exporters=DEBUG"
    );

    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  telemetry:
    logs:
      level: verbose
    metrics:
      level: loud
  pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}
"#,
    );
    // The first problem in the section is reported (serde stops there).
    check(
        &e,
        6,
        14,
        Some("service"),
        &["invalid log level \"verbose\"", "debug"],
    );

    let e = one_error(
        r#"
receivers: {test_recv: }
exporters: {test_exp: {endpoint: "http://a:1"}}
service:
  telemetry:
    metrics:
      level: loud
  pipelines: {metrics: {receivers: [test_recv], exporters: [test_exp]}}
"#,
    );
    check(
        &e,
        6,
        14,
        Some("service"),
        &["unknown variant `loud`", "`detailed`"],
    );
}
