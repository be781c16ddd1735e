use super::*;
use sluice_core::component::{Class, parse_config};
use sluice_core::config::{LoadContext, component_node};
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use sluice_core::proto::otlp::metrics::v1::{
    Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ScopeMetrics, Sum,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::Telemetry;
use sluice_core::test_util::Capture;
use std::path::Path;

fn parse_result(yaml: &str) -> Result<RouteConfig, Vec<String>> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("processors:\n  route:\n{indented}");
    let id = ComponentId::parse("route").unwrap();
    let node = component_node(&text, Class::Processor, &id).expect("a route node");
    let ctx = LoadContext {
        base_dir: Path::new(".").into(),
    };
    parse_config::<RouteConfig>(&node, &ctx)
        .map_err(|errs| errs.into_iter().map(|e| e.message).collect())
}

fn parse(yaml: &str) -> RouteConfig {
    parse_result(yaml).unwrap_or_else(|e| panic!("{e:?}"))
}

fn errors(yaml: &str) -> String {
    match parse_result(yaml) {
        Ok(c) => panic!("expected errors, got {c:?}"),
        Err(e) => e.join("\n"),
    }
}

fn build(yaml: &str) -> (RouteProcessor, Arc<Capture>, Arc<Telemetry>) {
    let capture = Capture::new();
    let telemetry = Arc::new(Telemetry::new());
    let p = RouteProcessor::new(
        &parse(yaml),
        ProcessorContext {
            id: ComponentId::parse("route").unwrap(),
            pipeline: "metrics".into(),
            next: capture.clone(),
            telemetry: telemetry.clone(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (p, capture, telemetry)
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

/// A resource with `attrs`, one gauge `name` whose points carry the given `env` labels (values).
fn resource(attrs: &[(&str, &str)], name: &str, envs: &[&str]) -> ResourceMetrics {
    let points = envs
        .iter()
        .map(|e| NumberDataPoint {
            attributes: vec![kv("env", e)],
            ..Default::default()
        })
        .collect();
    ResourceMetrics {
        resource: Some(Resource {
            attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: name.into(),
                unit: "s".into(),
                data: Some(Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn batch(tenant: &str, rms: Vec<ResourceMetrics>) -> Batch {
    Batch::new(
        Context {
            tenant: Some(Arc::from(tenant)),
            ..Default::default()
        },
        rms,
    )
}

fn route_of(b: &Batch) -> Vec<String> {
    b.context.route.as_deref().unwrap_or_default().to_vec()
}

/// The env labels of every point of a batch, in order.
fn envs(b: &Batch) -> Vec<String> {
    let mut out = Vec::new();
    for rm in &b.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                if let Some(Data::Gauge(g)) = &m.data {
                    for p in &g.data_points {
                        if let Some(AnyValue {
                            value: Some(any_value::Value::StringValue(s)),
                        }) = p.attributes[0].value.as_ref()
                        {
                            out.push(s.clone());
                        }
                    }
                }
            }
        }
    }
    out
}

const BY_TENANT: &str = "
routes:
  - { tenants: [acme], exporters: [otlp/acme] }
  - { tenants: [globex, initech], exporters: [otlp/other] }
default: [otlp/shared]
";

#[test]
fn tenant_routes_the_whole_batch_and_unmatched_goes_to_default() {
    let (p, capture, t) = build(BY_TENANT);
    for tenant in ["acme", "initech", "nobody"] {
        p.consume(batch(tenant, vec![resource(&[], "m", &["a", "b"])]))
            .unwrap();
    }
    let got = capture.take();
    assert_eq!(got.len(), 3);
    assert_eq!(route_of(&got[0]), ["otlp/acme"]);
    assert_eq!(route_of(&got[1]), ["otlp/other"]);
    assert_eq!(route_of(&got[2]), ["otlp/shared"]);
    assert_eq!(got[0].context.tenant.as_deref(), Some("acme"));
    assert_eq!(got[0].point_count(), 2);
    let routed = |r: &str| t.value("sluice_processor_route_points_total", &[("route", r)]);
    assert_eq!(routed("0"), 2.0);
    assert_eq!(routed("1"), 2.0);
    assert_eq!(routed("default"), 2.0);
}

#[test]
fn without_default_unmatched_data_is_dropped_and_counted() {
    let (p, capture, t) = build("routes: [{ tenants: [acme], exporters: [otlp/acme] }]");
    p.consume(batch("nobody", vec![resource(&[], "m", &["a", "b", "c"])]))
        .unwrap();
    assert!(capture.take().is_empty());
    assert_eq!(
        t.value(
            "sluice_processor_dropped_points_total",
            &[("reason", "no_route")]
        ),
        3.0
    );
}

#[test]
fn attributes_split_a_batch_per_resource() {
    let (p, capture, _) = build(
        "
routes:
  - { name: checkout, attributes: { service.name: checkout }, exporters: [otlp/a] }
default: [otlp/b]
",
    );
    p.consume(batch(
        "acme",
        vec![
            resource(&[("service.name", "checkout")], "m", &["1", "2"]),
            resource(&[("service.name", "cart")], "m", &["3"]),
            resource(&[("service.name", "checkout")], "n", &["4"]),
        ],
    ))
    .unwrap();
    let got = capture.take();
    assert_eq!(got.len(), 2);
    assert_eq!(route_of(&got[0]), ["otlp/a"]);
    assert_eq!(envs(&got[0]), ["1", "2", "4"]);
    assert_eq!(got[0].resource_metrics.len(), 2);
    assert_eq!(route_of(&got[1]), ["otlp/b"]);
    assert_eq!(envs(&got[1]), ["3"]);
    assert!(
        got.iter()
            .all(|b| b.context.tenant.as_deref() == Some("acme"))
    );
}

#[test]
fn labels_split_per_point_and_the_first_matching_route_wins() {
    let (p, capture, t) = build(
        "
routes:
  - { name: prod, labels: { env: prod }, exporters: [otlp/prod] }
  - { name: acme, tenants: [acme], exporters: [otlp/acme] }
  - { name: never, labels: { env: dev }, exporters: [otlp/dev] }
default: [otlp/shared]
",
    );
    p.consume(batch(
        "acme",
        vec![resource(&[], "m", &["prod", "dev", "prod", "test"])],
    ))
    .unwrap();
    let got = capture.take();
    assert_eq!(got.len(), 2);
    assert_eq!(route_of(&got[0]), ["otlp/prod"]);
    assert_eq!(envs(&got[0]), ["prod", "prod"]);
    assert_eq!(route_of(&got[1]), ["otlp/acme"]);
    assert_eq!(envs(&got[1]), ["dev", "test"]);
    // The split metric keeps its name and unit in both parts.
    let m = &got[1].resource_metrics[0].scope_metrics[0].metrics[0];
    assert_eq!((m.name.as_str(), m.unit.as_str()), ("m", "s"));
    assert_eq!(
        t.value("sluice_processor_route_points_total", &[("route", "prod")]),
        2.0
    );
    assert_eq!(
        t.value("sluice_processor_route_points_total", &[("route", "never")]),
        0.0
    );
    // Another tenant's unmatched points go to the default.
    p.consume(batch("globex", vec![resource(&[], "m", &["dev", "prod"])]))
        .unwrap();
    let got = capture.take();
    assert_eq!(route_of(&got[0]), ["otlp/prod"]);
    assert_eq!(route_of(&got[1]), ["otlp/dev"]);
    assert_eq!(envs(&got[1]), ["dev"]);
}

#[test]
fn routes_to_the_same_exporters_travel_as_one_batch() {
    let (p, capture, t) = build(
        "
routes:
  - { name: a, labels: { env: a }, exporters: [otlp/x, otlp/y] }
  - { name: b, labels: { env: b }, exporters: [otlp/y, otlp/x] }
default: [otlp/x, otlp/y]
",
    );
    p.consume(batch("", vec![resource(&[], "m", &["a", "b", "c"])]))
        .unwrap();
    let got = capture.take();
    assert_eq!(got.len(), 1);
    assert_eq!(route_of(&got[0]), ["otlp/x", "otlp/y"]);
    assert_eq!(got[0].point_count(), 3);
    for r in ["a", "b", "default"] {
        assert_eq!(
            t.value("sluice_processor_route_points_total", &[("route", r)]),
            1.0
        );
    }
}

#[test]
fn a_refusal_is_returned_and_nothing_is_counted_as_routed() {
    let (p, capture, t) = build(BY_TENANT);
    capture.set_refusing(true);
    let r = p.consume(batch("acme", vec![resource(&[], "m", &["a"])]));
    assert!(r.unwrap_err().retryable());
    assert_eq!(t.value("sluice_processor_route_points_total", &[]), 0.0);
}

#[test]
fn values_of_other_types_match_by_value() {
    let v = |value| AnyValue { value: Some(value) };
    assert!(value_is(&v(any_value::Value::IntValue(42)), "42"));
    assert!(value_is(&v(any_value::Value::BoolValue(true)), "true"));
    assert!(value_is(&v(any_value::Value::DoubleValue(0.5)), "0.5"));
    assert!(!value_is(&v(any_value::Value::IntValue(42)), "x"));
}

#[test]
fn partition_moves_every_point_of_every_kind_in_order() {
    let hist = |env: &str| HistogramDataPoint {
        attributes: vec![kv("env", env)],
        count: 1,
        ..Default::default()
    };
    let num = |env: &str| NumberDataPoint {
        attributes: vec![kv("env", env)],
        ..Default::default()
    };
    let rm = ResourceMetrics {
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![
                Metric {
                    name: "h".into(),
                    data: Some(Data::Histogram(Histogram {
                        data_points: vec![hist("0"), hist("1"), hist("0")],
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "s".into(),
                    data: Some(Data::Sum(Sum {
                        data_points: vec![num("1"), num("1")],
                        aggregation_temporality: 2,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                },
                Metric {
                    name: "empty".into(),
                    data: None,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }],
        ..Default::default()
    };
    let parts = partition(
        vec![rm, resource(&[], "g", &["0"])],
        3,
        |rm| match rm.scope_metrics[0].metrics[0].name.as_str() {
            "g" => Choice::Whole(2),
            _ => Choice::PerPoint(()),
        },
        |_, attrs| match &attrs[0].value.as_ref().unwrap().value {
            Some(any_value::Value::StringValue(s)) => s.parse().unwrap(),
            _ => unreachable!(),
        },
    );
    assert_eq!(parts.len(), 3);
    let metrics = |t: usize| -> Vec<(String, usize)> {
        parts[t]
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| {
                let n = sluice_core::batch::metric_points(m);
                (m.name.clone(), n)
            })
            .collect()
    };
    assert_eq!(metrics(0), [("h".to_string(), 2)]);
    assert_eq!(metrics(1), [("h".to_string(), 1), ("s".to_string(), 2)]);
    assert_eq!(metrics(2), [("g".to_string(), 1)]);
    let Some(Data::Histogram(h)) = &parts[0][0].scope_metrics[0].metrics[0].data else {
        panic!("a histogram");
    };
    assert_eq!(h.aggregation_temporality, 2);
    let Some(Data::Sum(s)) = &parts[1][0].scope_metrics[0].metrics[1].data else {
        panic!("a sum");
    };
    assert!(s.is_monotonic);
}

#[test]
fn routes_to_names_every_target_with_its_position() {
    let cfg = parse(BY_TENANT);
    let targets: Vec<String> = cfg.targets().iter().map(|t| t.value.to_string()).collect();
    assert_eq!(targets, ["otlp/acme", "otlp/other", "otlp/shared"]);
    assert!(cfg.targets().iter().all(|t| t.pos.is_known()));
}

#[test]
fn config_errors_are_clear() {
    assert!(errors("default: [otlp]").contains("at least one route"));
    assert!(errors("routes: [{ exporters: [otlp] }]").contains("set at least one of"));
    assert!(errors("routes: [{ tenants: [a], exporters: [] }]").contains("at least one exporter"));
    assert!(errors("routes: [{ tenants: [], exporters: [otlp] }]").contains("matches nothing"));
    assert!(errors("routes: [{ tenants: [a], exporters: [\"a b\"] }]").contains("invalid"));
    let twice = "routes:
  - { name: x, tenants: [a], exporters: [otlp] }
  - { name: x, tenants: [b], exporters: [otlp] }";
    assert!(errors(twice).contains("also the name"));
    assert!(errors("routes: [{ tenants: [a], exporter: [otlp] }]").contains("exporter"));
    assert!(
        errors("routes: [{ tenants: [a], exporters: [otlp] }]\ndefault: []").contains("default")
    );
}

/// (resource, metric, point) ids of every point of some resources, in order.
fn point_ids(rms: &[ResourceMetrics]) -> Vec<(String, String, String)> {
    let s = |v: &Option<AnyValue>| match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    let mut out = Vec::new();
    for rm in rms {
        let r = s(&rm.resource.as_ref().unwrap().attributes[0].value);
        for m in rm.scope_metrics.iter().flat_map(|sm| &sm.metrics) {
            if let Some(Data::Gauge(g)) = &m.data {
                for p in &g.data_points {
                    out.push((r.clone(), m.name.clone(), s(&p.attributes[0].value)));
                }
            }
        }
    }
    out
}

proptest::proptest! {
    /// Every point lands in exactly the part its resource or itself chose, in its original order.
    #[test]
    fn partition_keeps_every_point_in_order(
        shape in proptest::collection::vec(
            (proptest::option::of(0usize..3), proptest::collection::vec(
                proptest::collection::vec(0usize..3, 0..6), 0..4)),
            0..5,
        )
    ) {
        let mut rms = Vec::new();
        // The expected target of each point id.
        let mut expected = Vec::new();
        for (r, (whole, metrics)) in shape.iter().enumerate() {
            let rid = match whole {
                Some(t) => format!("r{r}-whole{t}"),
                None => format!("r{r}"),
            };
            let mut ms = Vec::new();
            for (m, targets) in metrics.iter().enumerate() {
                let points = targets
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let id = format!("p{i}-t{t}");
                        let target = whole.unwrap_or(*t);
                        expected.push(((rid.clone(), format!("m{m}"), id.clone()), target));
                        NumberDataPoint { attributes: vec![kv("id", &id)], ..Default::default() }
                    })
                    .collect();
                ms.push(Metric {
                    name: format!("m{m}"),
                    data: Some(Data::Gauge(Gauge { data_points: points })),
                    ..Default::default()
                });
            }
            rms.push(ResourceMetrics {
                resource: Some(Resource { attributes: vec![kv("id", &rid)], ..Default::default() }),
                scope_metrics: vec![ScopeMetrics { metrics: ms, ..Default::default() }],
                ..Default::default()
            });
        }
        let parts = partition(
            rms,
            3,
            |rm| {
                let attrs = &rm.resource.as_ref().unwrap().attributes;
                let id = match &attrs[0].value.as_ref().unwrap().value {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    _ => unreachable!(),
                };
                match id.split_once("-whole") {
                    Some((_, t)) => Choice::Whole(t.parse().unwrap()),
                    None => Choice::PerPoint(()),
                }
            },
            |_, attrs| match &attrs[0].value.as_ref().unwrap().value {
                Some(any_value::Value::StringValue(s)) => {
                    s.rsplit_once("-t").unwrap().1.parse().unwrap()
                }
                _ => unreachable!(),
            },
        );
        proptest::prop_assert_eq!(parts.len(), 3);
        for (t, part) in parts.iter().enumerate() {
            let want: Vec<_> = expected
                .iter()
                .filter(|(_, e)| *e == t)
                .map(|(id, _)| id.clone())
                .collect();
            proptest::prop_assert_eq!(point_ids(part), want);
        }
    }
}
