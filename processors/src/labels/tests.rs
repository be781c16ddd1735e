use super::*;
use sluice_core::batch::Context;
use sluice_core::component::{Class, ComponentId, parse_config};
use sluice_core::config::{LoadContext, component_node};
use sluice_core::proto::otlp::metrics::v1::{
    ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, Sum, Summary, SummaryDataPoint,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;
use std::collections::BTreeMap;
use std::path::Path;

const PROCESSOR: &str = "labels/test";
const PIPELINE: &str = "metrics/test";

/// Parses a `labels` config from YAML the way the binary does, relative to `base_dir`.
fn parse_in(yaml: &str, base_dir: &Path) -> Result<LabelsConfig, Vec<String>> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("processors:\n  labels:\n{indented}");
    let id = ComponentId::parse("labels").unwrap();
    let node = component_node(&text, Class::Processor, &id).expect("a labels node");
    let ctx = LoadContext {
        base_dir: base_dir.into(),
    };
    parse_config::<LabelsConfig>(&node, &ctx)
        .map_err(|errs| errs.into_iter().map(|e| e.message).collect())
}

fn parse(yaml: &str) -> LabelsConfig {
    parse_in(yaml, Path::new(".")).unwrap_or_else(|e| panic!("{e:?}"))
}

fn errors(yaml: &str) -> String {
    match parse_in(yaml, Path::new(".")) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.join("\n"),
    }
}

fn build(cfg: &LabelsConfig) -> (LabelsProcessor, Arc<Capture>) {
    let capture = Capture::new();
    let p = LabelsProcessor::new(
        cfg,
        ProcessorContext {
            id: ComponentId::parse(PROCESSOR).unwrap(),
            pipeline: PIPELINE.into(),
            next: capture.clone(),
            telemetry: Arc::new(Telemetry::new()),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (p, capture)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(string_value(v)),
    }
}

fn number(attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        ..Default::default()
    }
}

/// One metric of each of the five kinds, each with one point carrying `attrs`.
fn all_kinds(attrs: &[KeyValue]) -> Vec<Metric> {
    let a = || attrs.to_vec();
    let metric = |name: &str, data: Data| Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    };
    vec![
        metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![number(a())],
            }),
        ),
        metric(
            "s",
            Data::Sum(Sum {
                data_points: vec![number(a())],
                is_monotonic: true,
                ..Default::default()
            }),
        ),
        metric(
            "h",
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: a(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        metric(
            "e",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: a(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        ),
        metric(
            "q",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: a(),
                    ..Default::default()
                }],
            }),
        ),
    ]
}

fn resource(resource_attrs: &[(&str, &str)], metrics: Vec<Metric>) -> ResourceMetrics {
    ResourceMetrics {
        resource: Some(Resource {
            attributes: resource_attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A batch of one resource with one gauge point carrying `point_attrs`.
fn one(ctx: Context, resource_attrs: &[(&str, &str)], point_attrs: &[KeyValue]) -> Batch {
    let m = all_kinds(point_attrs).into_iter().next().unwrap();
    Batch::new(ctx, vec![resource(resource_attrs, vec![m])])
}

fn ctx(tenant: Option<&str>, headers: &[(&str, &str)]) -> Context {
    Context {
        tenant: tenant.map(Arc::from),
        metadata: headers
            .iter()
            .map(|(k, v)| (Arc::from(k.to_ascii_lowercase()), Arc::from(*v)))
            .collect(),
        ..Default::default()
    }
}

/// The attributes of every point that reached the next stage, in order, as maps.
fn point_labels(capture: &Capture) -> Vec<BTreeMap<String, String>> {
    let mut out = Vec::new();
    let text = |attrs: &[KeyValue]| {
        attrs
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect::<BTreeMap<_, _>>()
    };
    for b in capture.take() {
        for rm in &b.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    match m.data.as_ref().unwrap() {
                        Data::Gauge(g) => {
                            out.extend(g.data_points.iter().map(|p| text(&p.attributes)))
                        }
                        Data::Sum(s) => {
                            out.extend(s.data_points.iter().map(|p| text(&p.attributes)))
                        }
                        Data::Histogram(h) => {
                            out.extend(h.data_points.iter().map(|p| text(&p.attributes)))
                        }
                        Data::ExponentialHistogram(h) => {
                            out.extend(h.data_points.iter().map(|p| text(&p.attributes)))
                        }
                        Data::Summary(s) => {
                            out.extend(s.data_points.iter().map(|p| text(&p.attributes)))
                        }
                    }
                }
            }
        }
    }
    out
}

/// Runs one batch through a processor built from `yaml`; the labels of its first point.
fn label_one(yaml: &str, batch: Batch) -> BTreeMap<String, String> {
    let (p, c) = build(&parse(yaml));
    p.consume(batch).unwrap();
    point_labels(&c).remove(0)
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The config contract.

/// ARCHITECTURE.md's example parses as written and does what it says.
#[test]
fn architecture_example_labels_tenant_domain_and_sla() {
    let yaml = r#"
tenant: { key: tenant }
domain: { key: domain, from_attribute: service.name, pattern: "^([a-z]+)-" }
sla: { key: sla_tier, default: bronze }
"#;
    let got = label_one(
        yaml,
        one(
            ctx(Some("acme"), &[]),
            &[("service.name", "pay-gateway")],
            &[],
        ),
    );
    assert_eq!(
        got,
        map(&[
            ("tenant", "acme"),
            ("domain", "pay"),
            ("sla_tier", "bronze")
        ])
    );
}

#[test]
fn default_keys_are_tenant_domain_sla_tier() {
    let yaml = "tenant: {}\ndomain: { default: app }\nsla: { default: bronze }";
    let got = label_one(yaml, one(ctx(Some("t1"), &[]), &[], &[]));
    assert_eq!(
        got,
        map(&[("tenant", "t1"), ("domain", "app"), ("sla_tier", "bronze")])
    );
}

#[test]
fn invalid_configs_are_reported_all_at_once() {
    let e = errors(
        r#"
tenant: { key: Customer-ID }
domain: { key: sla_tier, pattern: "^[a-z]+-" }
sla: { key: sla_tier, default: bronze }
"#,
    );
    assert!(
        e.contains("`Customer-ID` does not follow the naming convention"),
        "{e}"
    );
    assert!(e.contains("exactly one capture group"), "{e}");
    assert!(
        e.contains("label key `sla_tier` is already written by domain"),
        "{e}"
    );

    let e = errors("domain: { key: domain }");
    assert!(e.contains("domain: no source"), "{e}");
    let e = errors("domain: { context: tenant }");
    assert!(e.contains("tenant and SLA labels only"), "{e}");
    let e = errors("sla: { default: gold, sources: [{ default: silver }] }");
    assert!(e.contains("`sources` excludes"), "{e}");
    let e = errors("sla: { sources: [{ header: X-Tier, default: silver }] }");
    assert!(e.contains("sla.sources[0]: exactly one of"), "{e}");
    let e = errors("sla: { sources: [] }");
    assert!(e.contains("`sources` is empty"), "{e}");
    let e = errors("sla: { pattern: '(' }");
    assert!(e.contains("invalid regex"), "{e}");
    let e = errors("sla: { table_attribute: service.name }");
    assert!(e.contains("without table"), "{e}");
    let e = errors("static: { __name__: x }");
    assert!(e.contains("naming convention"), "{e}");
    let e = errors("static: { team: infra }\nfrom_attributes: { service.team: team }");
    assert!(e.contains("already written"), "{e}");
    let e = errors("tenant: { unknown: 1 }");
    assert!(e.contains("unknown"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Each source kind, and their order.

#[test]
fn tenant_comes_from_the_batch_context_first() {
    let yaml = "tenant: { header: X-Customer-ID, default: nobody }";
    let got = label_one(
        yaml,
        one(ctx(Some("acme"), &[("X-Customer-ID", "globex")]), &[], &[]),
    );
    assert_eq!(got, map(&[("tenant", "acme")]));
}

/// A batch whose tenant the receiver found in its tenants file, with that tenant's tier.
fn tiered(tenant: &str, tier: Option<&str>) -> Context {
    Context {
        tenant_info: Some(Arc::new(sluice_core::tenancy::TenantInfo {
            sla_tier: tier.map(Arc::from),
            ..Default::default()
        })),
        ..ctx(Some(tenant), &[])
    }
}

/// ARCHITECTURE: a tenant's `sla_tier` in tenants.yaml is the labels processor's tier for that
/// tenant, before any other source (a table, a header, an attribute the client controls).
#[test]
fn sla_comes_from_the_tenants_file_tier_first() {
    let yaml = "sla: { from_attribute: sla, table: { acme: silver }, default: bronze }";
    let got = label_one(
        yaml,
        one(tiered("acme", Some("gold")), &[("sla", "bronze")], &[]),
    );
    assert_eq!(got, map(&[("sla_tier", "gold")]));
    // Without a tier in the file, the other sources decide.
    let got = label_one(yaml, one(tiered("acme", None), &[], &[]));
    assert_eq!(got, map(&[("sla_tier", "silver")]));
    let got = label_one(yaml, one(ctx(None, &[]), &[], &[]));
    assert_eq!(got, map(&[("sla_tier", "bronze")]));
    // `sla: {}` writes the file's tier only.
    let got = label_one("sla: {}", one(tiered("acme", Some("gold")), &[], &[]));
    assert_eq!(got, map(&[("sla_tier", "gold")]));
}

/// In a `sources` list the tier is where `context: sla_tier` puts it.
#[test]
fn sla_tier_context_in_a_sources_list() {
    let yaml = "sla: { sources: [{ from_attribute: sla }, { context: sla_tier }] }";
    let got = label_one(
        yaml,
        one(tiered("acme", Some("gold")), &[("sla", "silver")], &[]),
    );
    assert_eq!(got, map(&[("sla_tier", "silver")]));
    let got = label_one(yaml, one(tiered("acme", Some("gold")), &[], &[]));
    assert_eq!(got, map(&[("sla_tier", "gold")]));
    let e = errors("sla: { sources: [{ context: tenant }] }");
    assert!(e.contains("`context` must be `sla_tier`"), "{e}");
}

/// The header is looked up case-insensitively in the metadata the receiver carried.
#[test]
fn tenant_from_a_header_when_the_batch_has_none() {
    let yaml = "tenant: { key: customer_id, header: x-CUSTOMER-id, default: nobody }";
    let got = label_one(
        yaml,
        one(ctx(None, &[("X-Customer-ID", "globex")]), &[], &[]),
    );
    assert_eq!(got, map(&[("customer_id", "globex")]));
}

#[test]
fn tenant_from_an_attribute_then_the_default() {
    let yaml = "tenant: { header: X-Customer-ID, from_attribute: tenant.id, default: nobody }";
    let got = label_one(yaml, one(ctx(None, &[]), &[("tenant.id", "initech")], &[]));
    assert_eq!(got, map(&[("tenant", "initech")]));
    let got = label_one(yaml, one(ctx(None, &[]), &[], &[]));
    assert_eq!(got, map(&[("tenant", "nobody")]));
}

/// The batch's context is never changed: a tenant found in a header is a label only.
#[test]
fn the_batch_context_is_left_alone() {
    let (p, c) = build(&parse("tenant: { header: X-Customer-ID }"));
    p.consume(one(ctx(None, &[("x-customer-id", "acme")]), &[], &[]))
        .unwrap();
    let b = c.take().remove(0);
    assert_eq!(b.context.tenant, None);
}

#[test]
fn domain_from_an_attribute_or_a_capture() {
    let yaml = "domain: { from_attribute: service.namespace }";
    let got = label_one(
        yaml,
        one(ctx(None, &[]), &[("service.namespace", "payments")], &[]),
    );
    assert_eq!(got, map(&[("domain", "payments")]));
    // `pattern` alone searches service.name.
    let yaml = "domain: { pattern: '^([a-z]+)-', default: app }";
    let got = label_one(
        yaml,
        one(ctx(None, &[]), &[("service.name", "auth-api")], &[]),
    );
    assert_eq!(got, map(&[("domain", "auth")]));
    let got = label_one(
        yaml,
        one(ctx(None, &[]), &[("service.name", "Search")], &[]),
    );
    assert_eq!(got, map(&[("domain", "app")]));
}

#[test]
fn sla_from_a_capture_with_word_boundary() {
    let yaml = r#"sla: { from_attribute: service.name, pattern: '-(gold|silver|bronze)\b', default: bronze }"#;
    for (service, tier) in [
        ("pay-gateway-gold", "gold"),
        ("auth-silver-eu", "silver"),
        ("search", "bronze"),
        ("x-goldfish", "bronze"),
    ] {
        let got = label_one(yaml, one(ctx(None, &[]), &[("service.name", service)], &[]));
        assert_eq!(got, map(&[("sla_tier", tier)]), "{service}");
    }
}

/// A table keyed by the tenant uses the tenant label's value (here from a header), else the
/// batch's tenant.
#[test]
fn sla_from_a_table_keyed_by_the_tenant() {
    let yaml = r#"
tenant: { key: customer_id, header: X-Customer-ID }
sla: { table: { acme: gold, globex: silver }, default: bronze }
"#;
    let got = label_one(yaml, one(ctx(None, &[("x-customer-id", "acme")]), &[], &[]));
    assert_eq!(got, map(&[("customer_id", "acme"), ("sla_tier", "gold")]));
    let got = label_one(yaml, one(ctx(Some("globex"), &[]), &[], &[]));
    assert_eq!(
        got,
        map(&[("customer_id", "globex"), ("sla_tier", "silver")])
    );
    let got = label_one(yaml, one(ctx(Some("initech"), &[]), &[], &[]));
    assert_eq!(
        got,
        map(&[("customer_id", "initech"), ("sla_tier", "bronze")])
    );
    // Without a tenant rule, the batch's tenant.
    let got = label_one(
        "sla: { table: { acme: gold } }",
        one(ctx(Some("acme"), &[]), &[], &[]),
    );
    assert_eq!(got, map(&[("sla_tier", "gold")]));
}

#[test]
fn sla_from_a_table_keyed_by_an_attribute() {
    let yaml =
        "sla: { table: { pay-gateway: gold }, table_attribute: service.name, default: bronze }";
    let got = label_one(
        yaml,
        one(ctx(None, &[]), &[("service.name", "pay-gateway")], &[]),
    );
    assert_eq!(got, map(&[("sla_tier", "gold")]));
    let got = label_one(
        yaml,
        one(ctx(None, &[]), &[("service.name", "search")], &[]),
    );
    assert_eq!(got, map(&[("sla_tier", "bronze")]));
}

/// An explicit `sources` list is tried in its order, not the short form's.
#[test]
fn explicit_sources_are_tried_in_their_order() {
    let yaml = r#"
tenant:
  sources:
    - header: X-Customer-ID
    - context: tenant
    - default: nobody
sla:
  sources:
    - { from_attribute: service.name, pattern: '-(gold|silver)$' }
    - { table: { acme: silver } }
    - from_attribute: sla.tier
    - default: bronze
"#;
    let got = label_one(
        yaml,
        one(
            ctx(Some("acme"), &[("x-customer-id", "globex")]),
            &[("service.name", "pay-gold"), ("sla.tier", "platinum")],
            &[],
        ),
    );
    assert_eq!(got, map(&[("tenant", "globex"), ("sla_tier", "gold")]));
    let got = label_one(
        yaml,
        one(
            ctx(Some("acme"), &[]),
            &[("service.name", "pay"), ("sla.tier", "platinum")],
            &[],
        ),
    );
    assert_eq!(got, map(&[("tenant", "acme"), ("sla_tier", "silver")]));
    let got = label_one(
        yaml,
        one(
            ctx(Some("initech"), &[]),
            &[("service.name", "pay"), ("sla.tier", "platinum")],
            &[],
        ),
    );
    assert_eq!(got, map(&[("tenant", "initech"), ("sla_tier", "platinum")]));
    let got = label_one(yaml, one(ctx(None, &[]), &[("sla.tier", "x")], &[]));
    assert_eq!(got, map(&[("tenant", "nobody"), ("sla_tier", "x")]));
    let got = label_one(yaml, one(ctx(None, &[]), &[], &[]));
    assert_eq!(got, map(&[("tenant", "nobody"), ("sla_tier", "bronze")]));
}

/// Empty values (an empty header, an empty attribute) do not count as found.
#[test]
fn empty_values_fall_through() {
    let yaml = "tenant: { header: X-Customer-ID, from_attribute: tenant.id, default: nobody }";
    let got = label_one(
        yaml,
        one(
            ctx(Some(""), &[("x-customer-id", "")]),
            &[("tenant.id", "")],
            &[],
        ),
    );
    assert_eq!(got, map(&[("tenant", "nobody")]));
}

/// Integer and boolean attributes are written out; other kinds count as absent.
#[test]
fn non_string_attributes_are_written_out() {
    let mut b = one(ctx(None, &[]), &[], &[]);
    b.resource_metrics[0].resource.as_mut().unwrap().attributes = vec![KeyValue {
        key: "shard".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(7)),
        }),
    }];
    let got = label_one("domain: { from_attribute: shard }", b);
    assert_eq!(got, map(&[("domain", "7")]));
}

// ---------------------------------------------------------------------------------------------
// overwrite

/// Guarantees: a client cannot choose its tenant label, even when no tenant is found.
#[test]
fn overwrite_replaces_or_removes_the_clients_label() {
    let yaml = "tenant: { key: customer_id, header: X-Customer-ID }";
    let evil = [kv("customer_id", "evil"), kv("route", "/pay")];
    let got = label_one(
        yaml,
        one(ctx(None, &[("x-customer-id", "acme")]), &[], &evil),
    );
    assert_eq!(got, map(&[("customer_id", "acme"), ("route", "/pay")]));
    let got = label_one(yaml, one(ctx(None, &[]), &[], &evil));
    assert_eq!(got, map(&[("route", "/pay")]));
}

/// A key the client sent twice is replaced once: no copy of the client's value survives.
#[test]
fn overwrite_replaces_a_key_sent_twice() {
    let (p, c) = build(&parse(
        "tenant: { key: customer_id, header: X-Customer-ID }",
    ));
    p.consume(one(
        ctx(None, &[("x-customer-id", "acme")]),
        &[],
        &[kv("customer_id", "evil"), kv("customer_id", "evil2")],
    ))
    .unwrap();
    let b = c.take().remove(0);
    let Some(Data::Gauge(g)) = &b.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("a gauge");
    };
    assert_eq!(g.data_points[0].attributes, vec![kv("customer_id", "acme")]);
}

#[test]
fn without_overwrite_the_clients_label_is_kept() {
    let yaml =
        "tenant: { overwrite: false, default: shared }\nsla: { overwrite: false, default: bronze }";
    let got = label_one(
        yaml,
        one(
            ctx(Some("acme"), &[]),
            &[],
            &[kv("tenant", "mine"), kv("route", "/")],
        ),
    );
    assert_eq!(
        got,
        map(&[("tenant", "mine"), ("route", "/"), ("sla_tier", "bronze")])
    );
}

#[test]
fn overwrite_is_on_by_default_for_domain_and_sla_too() {
    let yaml = "domain: { default: app }\nsla: { default: bronze }";
    let got = label_one(
        yaml,
        one(
            ctx(None, &[]),
            &[],
            &[kv("domain", "x"), kv("sla_tier", "platinum")],
        ),
    );
    assert_eq!(got, map(&[("domain", "app"), ("sla_tier", "bronze")]));
}

// ---------------------------------------------------------------------------------------------
// static and from_attributes

#[test]
fn static_labels_and_promoted_attributes() {
    let yaml = r#"
static: { region: eu, team: payments }
from_attributes: { service.name: service, deployment.environment: env, absent.attr: absent }
"#;
    let got = label_one(
        yaml,
        one(
            ctx(None, &[]),
            &[
                ("service.name", "pay-gateway"),
                ("deployment.environment", "prod"),
            ],
            &[kv("team", "own")],
        ),
    );
    assert_eq!(
        got,
        map(&[
            ("region", "eu"),
            ("team", "own"),
            ("service", "pay-gateway"),
            ("env", "prod")
        ])
    );
}

// ---------------------------------------------------------------------------------------------
// Every point of every kind, per resource

#[test]
fn every_point_of_all_five_kinds_is_labelled_per_resource() {
    let yaml = r#"
tenant: {}
domain: { pattern: '^([a-z]+)-', default: app }
static: { region: eu }
"#;
    let (p, c) = build(&parse(yaml));
    let mut batch = Batch::new(
        ctx(Some("acme"), &[]),
        vec![
            resource(&[("service.name", "pay-api")], all_kinds(&[kv("a", "1")])),
            resource(&[("service.name", "auth-api")], all_kinds(&[])),
        ],
    );
    // A second point on the first gauge, and a second scope.
    if let Some(Data::Gauge(g)) = &mut batch.resource_metrics[0].scope_metrics[0].metrics[0].data {
        g.data_points.push(number(vec![kv("b", "2")]));
    }
    batch.resource_metrics[1].scope_metrics.push(ScopeMetrics {
        metrics: all_kinds(&[]),
        ..Default::default()
    });
    p.consume(batch).unwrap();
    let got = point_labels(&c);
    assert_eq!(got.len(), 6 + 10);
    let pay = map(&[("tenant", "acme"), ("domain", "pay"), ("region", "eu")]);
    let auth = map(&[("tenant", "acme"), ("domain", "auth"), ("region", "eu")]);
    let with = |mut m: BTreeMap<String, String>, k: &str, v: &str| {
        m.insert(k.into(), v.into());
        m
    };
    assert_eq!(got[0], with(pay.clone(), "a", "1"));
    assert_eq!(got[1], with(pay.clone(), "b", "2"));
    for g in &got[2..6] {
        assert_eq!(*g, with(pay.clone(), "a", "1"));
    }
    for g in &got[6..] {
        assert_eq!(*g, auth);
    }
    assert_eq!(
        p.metrics()
            .value("sluice_processor_labels_points_total", &[]),
        16.0
    );
}

// ---------------------------------------------------------------------------------------------
// Telemetry

/// Points are counted as labelled once, and a label with no value is counted by key and the
/// reason of the last source tried.
#[test]
fn labelled_and_missing_points_are_counted_by_label_and_reason() {
    let yaml = r#"
tenant: { key: customer_id, header: X-Customer-ID }
domain: { pattern: '^([a-z]+)-' }
"#;
    let (p, _c) = build(&parse(yaml));
    let b = Batch::new(
        ctx(None, &[]),
        vec![resource(&[("service.name", "search")], all_kinds(&[]))],
    );
    p.consume(b).unwrap();
    let b = Batch::new(
        ctx(None, &[("x-customer-id", "acme")]),
        vec![resource(&[], all_kinds(&[]))],
    );
    p.consume(b).unwrap();
    let m = p.metrics();
    let v = |label: &str, reason: &str| {
        m.value(
            "sluice_processor_labels_missing_points_total",
            &[
                ("processor", PROCESSOR),
                ("pipeline", PIPELINE),
                ("label", label),
                ("reason", reason),
            ],
        )
    };
    assert_eq!(v("customer_id", "no_header"), 5.0);
    assert_eq!(v("domain", "no_match"), 5.0);
    assert_eq!(v("domain", "no_attribute"), 5.0);
    assert_eq!(v("customer_id", "no_tenant"), 0.0);
    assert_eq!(
        m.value(
            "sluice_processor_labels_points_total",
            &[("processor", PROCESSOR), ("pipeline", PIPELINE)]
        ),
        5.0
    );
}

// ---------------------------------------------------------------------------------------------
// table_file

struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!(
            "sluice-labels-{name}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `table_file` is relative to the config file's folder, read at build and reread once it
/// changes (checked at most once per `reload_interval`); a broken version keeps the previous table.
#[test]
fn table_file_is_resolved_and_reloaded_on_change() {
    let dir = TempDir::new("reload");
    std::fs::write(dir.0.join("tiers.yaml"), "acme: gold\nglobex: silver\n").unwrap();
    let yaml = "sla: { table_file: tiers.yaml, default: bronze }\nreload_interval: 10ms";
    let cfg = parse_in(yaml, &dir.0).unwrap();
    let (p, c) = build(&cfg);
    let tier = |tenant: &str| {
        p.consume(one(ctx(Some(tenant), &[]), &[], &[])).unwrap();
        point_labels(&c).remove(0)["sla_tier"].clone()
    };
    assert_eq!(tier("acme"), "gold");
    assert_eq!(tier("initech"), "bronze");

    std::fs::write(
        dir.0.join("tiers.yaml"),
        "# changed\nacme: silver\ninitech: gold\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tier("initech") != "gold" {
        assert!(std::time::Instant::now() < deadline, "table not reloaded");
        std::thread::sleep(std::time::Duration::from_millis(15));
    }
    assert_eq!(tier("acme"), "silver");

    // A broken file is logged and the previous table kept.
    std::fs::write(dir.0.join("tiers.yaml"), "[not, a, map]").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(tier("acme"), "silver");
    assert_eq!(tier("initech"), "gold");
}

#[test]
fn table_file_in_sources_and_by_attribute() {
    let dir = TempDir::new("sources");
    std::fs::write(dir.0.join("domains.yaml"), "{ pay-gateway: payments }").unwrap();
    let yaml = r#"
domain:
  sources:
    - { table_file: domains.yaml, table_attribute: service.name }
    - default: app
"#;
    let cfg = parse_in(yaml, &dir.0).unwrap();
    let (p, c) = build(&cfg);
    p.consume(one(ctx(None, &[]), &[("service.name", "pay-gateway")], &[]))
        .unwrap();
    p.consume(one(ctx(None, &[]), &[("service.name", "search")], &[]))
        .unwrap();
    let got = point_labels(&c);
    assert_eq!(got[0]["domain"], "payments");
    assert_eq!(got[1]["domain"], "app");
}

/// A table file that cannot be read fails the build (validation does no I/O).
#[test]
fn unreadable_table_file_fails_the_build() {
    let dir = TempDir::new("missing");
    let cfg = parse_in("sla: { table_file: nope.yaml }", &dir.0).unwrap();
    let err = LabelsProcessor::new(
        &cfg,
        ProcessorContext {
            id: ComponentId::parse(PROCESSOR).unwrap(),
            pipeline: PIPELINE.into(),
            next: Capture::new(),
            telemetry: Arc::new(Telemetry::new()),
        },
    )
    .err()
    .expect("a build error")
    .to_string();
    assert!(err.contains("nope.yaml"), "{err}");
    std::fs::write(dir.0.join("bad.yaml"), "- a\n- b\n").unwrap();
    let cfg = parse_in("sla: { table_file: bad.yaml }", &dir.0).unwrap();
    let err = LabelsProcessor::new(
        &cfg,
        ProcessorContext {
            id: ComponentId::parse(PROCESSOR).unwrap(),
            pipeline: PIPELINE.into(),
            next: Capture::new(),
            telemetry: Arc::new(Telemetry::new()),
        },
    )
    .err()
    .expect("a build error")
    .to_string();
    assert!(err.contains("expected a map"), "{err}");
}

/// The snippets of docs/configuration.md's `labels` section are valid.
#[test]
fn docs_snippets_parse() {
    parse(
        r#"
tenant: { key: tenant }
domain: { key: domain, from_attribute: service.name, pattern: "^([a-z]+)-" }
sla: { key: sla_tier, default: bronze }
static: { region: eu }
from_attributes: { service.name: service }
"#,
    );
    parse(
        r#"
tenant:
  key: customer_id
  sources: [{ header: X-Customer-ID }, { context: tenant }, { default: unknown }]
sla:
  sources:
    - { from_attribute: service.name, pattern: '-(gold|silver|bronze)\b' }
    - { table_file: tiers.yaml }
    - { table: { pay-gateway: gold }, table_attribute: service.name }
    - { default: bronze }
"#,
    );
}
