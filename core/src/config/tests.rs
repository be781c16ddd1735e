use super::*;
use crate::component::{
    BoxError, Exporter, ExporterContext, ParseFn, Processor, ProcessorContext, ReceiverContext, Validate,
    parse_config,
};
use crate::config::types::{ByteSize, Duration, Endpoint, HttpUrl};
use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// A registry with one component type per class.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
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

#[derive(Debug, Deserialize)]
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
    fn build(&self, _ctx: ProcessorContext) -> Result<std::sync::Arc<dyn Processor>, BoxError> {
        Err("test processor".into())
    }
}

#[derive(Debug, Deserialize)]
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
    fn build(&self, _ctx: ExporterContext) -> Result<std::sync::Arc<dyn Exporter>, BoxError> {
        Err("test exporter".into())
    }
    fn sending(&self) -> crate::sending::SendingSettings {
        Default::default()
    }
}

fn parse_recv(n: &Node, c: &LoadContext) -> Result<Box<dyn crate::component::ReceiverConfig>, Vec<DeError>> {
    Ok(Box::new(parse_config::<TestRecv>(n, c)?))
}
fn parse_proc(n: &Node, c: &LoadContext) -> Result<Box<dyn crate::component::ProcessorConfig>, Vec<DeError>> {
    Ok(Box::new(parse_config::<TestProc>(n, c)?))
}
fn parse_exp(n: &Node, c: &LoadContext) -> Result<Box<dyn crate::component::ExporterConfig>, Vec<DeError>> {
    Ok(Box::new(parse_config::<TestExp>(n, c)?))
}

struct TestRegistry;

impl Registry for TestRegistry {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn crate::component::ReceiverConfig>> {
        (kind == "test_recv").then_some(parse_recv as ParseFn<dyn crate::component::ReceiverConfig>)
    }
    fn processor(&self, kind: &str) -> Option<ParseFn<dyn crate::component::ProcessorConfig>> {
        (kind == "test_proc").then_some(parse_proc as ParseFn<dyn crate::component::ProcessorConfig>)
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

const FILE: &str = "pipeline.yaml";

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_str(text, FILE.into(), LoadContext { base_dir: PathBuf::from("/etc/sluice") }, &TestRegistry)
}

fn errors(text: &str) -> Vec<ConfigError> {
    match load(text) {
        Ok(c) => panic!("expected errors, the config loaded: {c:#?}"),
        Err(e) => e.0,
    }
}

#[test]
fn dump() {
    for t in [
        "receivers:\n  test_recv:\n   endpoint: 1.2.3.4:5\n  bad: 1\n",
        "receivers:\n  test_recv:\n    endpoint: 1.2.3.4:5\n   bad: 1\n",
        "receivers:\n  test_recv:\nexporters:\n  test_exp:\nservice:\n  pipelines:\n    metrics:\n      receivers: [test_recv, nope]\n      exporters:\n        - test_exp\n        - test_exp/2\n    traces:\n      receivers: [test_recv]\n      exporters: [test_exp]\n",
        "receivers:\n  test_recv:\n    timeout: 5 parsecs\n    max_request_size: 12 bananas\n    port: 70000\nprocessors:\n  test_proc:\n    limit: 0\n  test_proc/2:\n    limit: -1\nexporters:\n  test_exp:\n    endpoint: ftp://x\n  test_exp/b:\n    endpoint: http://x\n    max_size: 1.5MiB\n  foo/x:\n    a: 1\nservice:\n  pipelines:\n    metrics:\n      receivers: [test_recv]\n      processors: [test_proc, test_proc/2, test_proc]\n      exporters: [test_exp]\n",
        "receivers:\n  test_recv:\n    label: \"$${env:HOME} $$ ${tenant} ${env:SLUICE_UNSET_X:-d:ef}\"\n    port: ${env:SLUICE_UNSET_Y:-4317}\nexporters:\n  test_exp:\n    endpoint: http://a:1\nservice:\n  shutdown_timeout: ${env:SLUICE_UNSET_Z}\n  pipelines:\n    metrics:\n      receivers: [test_recv]\n      exporters: [\"${env:SLUICE_UNSET_W}\"]\n",
        "receivers: [a]\nexporters:\nservice: {pipelines: {}}\nfoo: 1\nextensions: {}\n",
        "- a\n",
    ] {
        println!("----\n{t}");
        match load(t) {
            Ok(c) => println!("OK {c:?}"),
            Err(e) => println!("{e}"),
        }
    }
}
