use super::*;
use sluice_core::batch::Context;
use sluice_core::component::{Class, ComponentId, parse_config};
use sluice_core::config::{LoadContext, component_node};
use sluice_core::proto::otlp::common::v1::AnyValue;
use sluice_core::proto::otlp::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics,
};
use sluice_core::proto::otlp::resource::v1::Resource;
use sluice_core::telemetry::Telemetry;
use sluice_core::tenancy::{TenantInfo, TenantLimits};
use sluice_core::test_util::Capture;
use std::path::Path;

fn parse_result(yaml: &str) -> Result<LimitsConfig, Vec<String>> {
    let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
    let text = format!("processors:\n  limits:\n{indented}");
    let id = ComponentId::parse("limits").unwrap();
    let node = component_node(&text, Class::Processor, &id).expect("a limits node");
    let ctx = LoadContext {
        base_dir: Path::new(".").into(),
    };
    parse_config::<LimitsConfig>(&node, &ctx)
        .map_err(|errs| errs.into_iter().map(|e| e.message).collect())
}

fn parse(yaml: &str) -> LimitsConfig {
    parse_result(yaml).unwrap_or_else(|e| panic!("{e:?}"))
}

struct Fixture {
    p: LimitsProcessor,
    capture: Arc<Capture>,
    telemetry: Arc<Telemetry>,
    t0: Instant,
}

impl Fixture {
    fn new(yaml: &str) -> Self {
        let capture = Capture::new();
        let telemetry = Arc::new(Telemetry::new());
        let p = LimitsProcessor::new(
            &parse(yaml),
            ProcessorContext {
                id: ComponentId::parse("limits").unwrap(),
                pipeline: "metrics".into(),
                next: capture.clone(),
                telemetry: telemetry.clone(),
            },
        );
        let t0 = p.epoch;
        Fixture {
            p,
            capture,
            telemetry,
            t0,
        }
    }

    /// Sends `batch` at `secs` seconds after the start.
    fn send(&self, batch: Batch, secs: f64) -> Result<(), Refusal> {
        self.p
            .consume_at(batch, self.t0 + Duration::from_secs_f64(secs))
    }

    fn refused(&self, tenant: &str, reason: &str) -> f64 {
        self.telemetry.value(
            "sluice_processor_limits_refused_points_total",
            &[("tenant", tenant), ("reason", reason)],
        )
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

/// `n` points of metric `name`, point `i` labelled `id=<first + i>` (so `n` distinct series).
fn series(tenant: &str, name: &str, first: usize, n: usize) -> Batch {
    let points = (first..first + n)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("id", &i.to_string())],
            ..Default::default()
        })
        .collect();
    Batch::new(
        Context {
            tenant: (!tenant.is_empty()).then(|| Arc::from(tenant)),
            ..Default::default()
        },
        vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "svc")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    )
}

/// `n` points of one series.
fn samples(tenant: &str, n: usize) -> Batch {
    let mut b = series(tenant, "m", 0, n);
    if let Some(Data::Gauge(g)) = &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data {
        for p in &mut g.data_points {
            p.attributes = vec![kv("id", "0")];
        }
    }
    b
}

#[test]
fn without_limits_batches_pass_untouched() {
    let f = Fixture::new("{}");
    let b = series("acme", "m", 0, 1000);
    f.send(b.clone(), 0.0).unwrap();
    assert_eq!(f.capture.take(), [b]);
    assert_eq!(f.p.tenant_count(), 0);
}

#[test]
fn rate_is_a_token_bucket_refusing_whole_batches() {
    let f = Fixture::new("default: { rate: 10, burst: 20 }");
    f.send(samples("acme", 15), 0.0).unwrap();
    let r = f.send(samples("acme", 10), 0.0).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Limited);
    // 5 tokens left, 10 needed, 10 per second.
    assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
    assert!(
        r.message.contains("`acme`") && r.message.contains("rate limit"),
        "{r}"
    );
    assert_eq!(f.refused("acme", "limited_rate"), 10.0);
    // Half a second later 5 more tokens: exactly enough.
    f.send(samples("acme", 10), 0.5).unwrap();
    assert_eq!(f.capture.points(), 25);
    // Another tenant has its own bucket; so has the empty tenant.
    f.send(samples("globex", 20), 0.5).unwrap();
    f.send(samples("", 20), 0.5).unwrap();
    assert!(
        f.send(samples("", 1), 0.5)
            .unwrap_err()
            .message
            .contains("(no tenant)")
    );
}

#[test]
fn the_retry_hint_is_the_time_until_enough_tokens() {
    let f = Fixture::new("default: { rate: 10 }");
    f.send(samples("acme", 20), 0.0).unwrap();
    let r = f.send(samples("acme", 20), 0.0).unwrap_err();
    assert_eq!(r.retry_after, Some(Duration::from_secs(2)));
    assert!(f.send(samples("acme", 20), 1.9).is_err());
    f.send(samples("acme", 20), 2.0).unwrap();
}

#[test]
fn burst_defaults_to_twice_the_rate() {
    let f = Fixture::new("default: { rate: 10 }");
    f.send(samples("acme", 20), 0.0).unwrap();
    assert!(f.send(samples("acme", 1), 0.0).is_err());
}

#[test]
fn a_batch_larger_than_the_burst_passes_on_a_full_bucket_and_is_owed() {
    let f = Fixture::new("default: { rate: 10, burst: 20 }");
    f.send(samples("acme", 50), 0.0).unwrap();
    // Tokens are now -30: 3 s until 0, 4 s until 10.
    let r = f.send(samples("acme", 10), 0.0).unwrap_err();
    assert_eq!(r.retry_after, Some(Duration::from_secs(4)));
    // Not full (10 of 20 tokens): refused, until the bucket is full again.
    assert!(f.send(samples("acme", 50), 4.0).is_err());
    f.send(samples("acme", 50), 5.0).unwrap();
}

#[test]
fn tokens_of_a_batch_refused_further_on_are_given_back() {
    let f = Fixture::new("default: { rate: 10, burst: 20 }");
    f.capture.set_refusing(true);
    assert_eq!(
        f.send(samples("acme", 20), 0.0).unwrap_err().kind,
        RefusalKind::Full
    );
    f.capture.set_refusing(false);
    f.send(samples("acme", 20), 0.0).unwrap();
}

#[test]
fn settings_come_from_the_tenants_file_then_tenants_then_default() {
    let cfg = parse(
        "
default: { rate: 100, burst: 1000, max_series: 50, max_label_name_length: 10 }
tenants:
  acme: { rate: 10, max_series: 5 }
  globex: { burst: 300 }
",
    );
    let e = cfg.effective("other", None);
    assert_eq!(e.rate, Some((100.0, 1000.0)));
    assert_eq!(e.max_series, Some(50));
    assert_eq!(e.labels.name_length, Some(10));
    // acme's rate has no burst of its own: twice its rate, not the default's burst.
    let e = cfg.effective("acme", None);
    assert_eq!((e.rate, e.max_series), (Some((10.0, 20.0)), Some(5)));
    assert_eq!(e.labels.name_length, Some(10));
    assert_eq!(cfg.effective("globex", None).rate, Some((100.0, 300.0)));
    let file = TenantLimits {
        rate: Some(7),
        burst: None,
        max_series: None,
    };
    let e = cfg.effective("acme", Some(&file));
    assert_eq!((e.rate, e.max_series), (Some((7.0, 14.0)), Some(5)));
    let file = TenantLimits {
        rate: None,
        burst: Some(99),
        max_series: Some(1),
    };
    let e = cfg.effective("acme", Some(&file));
    assert_eq!((e.rate, e.max_series), (Some((10.0, 99.0)), Some(1)));
    assert!(!parse("{}").effective("acme", None).any());
}

#[test]
fn the_tenants_file_limits_apply_through_the_context() {
    let f = Fixture::new("{}");
    let mut b = samples("acme", 5);
    b.context.tenant_info = Some(Arc::new(TenantInfo {
        sla_tier: None,
        limits: TenantLimits {
            rate: Some(1),
            burst: Some(5),
            max_series: None,
        },
    }));
    f.send(b.clone(), 0.0).unwrap();
    assert!(f.send(b, 0.0).is_err());
}

#[test]
fn max_series_caps_a_cardinality_bomb_and_known_series_keep_passing() {
    let f = Fixture::new("tenants: { acme: { max_series: 100 } }");
    f.send(series("acme", "m", 0, 60), 0.0).unwrap();
    // 60 known + 50 new > 100: refused whole.
    let r = f.send(series("acme", "m", 30, 80), 1.0).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Limited);
    assert_eq!(r.retry_after, Some(Duration::from_secs(60)));
    assert!(
        r.message.contains("110") && r.message.contains("max_series 100"),
        "{r}"
    );
    assert_eq!(f.refused("acme", "limited_series"), 80.0);
    // The bomb: batches of 10 new series each; only the room left (40) is taken.
    let mut passed = 0;
    for i in 0..100 {
        if f.send(series("acme", "bomb", i * 10, 10), 2.0).is_ok() {
            passed += 10;
        }
    }
    assert_eq!(passed, 40);
    assert_eq!(f.p.tenants.read()["acme"].lock().active_series(), 100);
    assert_eq!(
        f.telemetry.value(
            "sluice_processor_limits_active_series",
            &[("tenant", "acme")]
        ),
        100.0
    );
    // Known series pass; other tenants are not limited.
    f.send(series("acme", "m", 0, 60), 3.0).unwrap();
    f.send(series("globex", "m", 0, 1000), 3.0).unwrap();
    // Series not seen for 10 minutes expire: `m` was seen at 3 s, the bomb at 2 s.
    let r = f.send(series("acme", "new", 0, 41), 603.0);
    assert!(r.is_err(), "only the bomb's 40 expired");
    f.send(series("acme", "new", 0, 40), 603.0).unwrap();
}

#[test]
fn a_refused_batch_adds_no_series() {
    let f = Fixture::new("default: { max_series: 10 }");
    assert!(f.send(series("acme", "m", 0, 11), 0.0).is_err());
    assert_eq!(f.p.tenants.read()["acme"].lock().active_series(), 0);
    f.send(series("acme", "m", 0, 10), 0.0).unwrap();
}

#[test]
fn a_rate_refusal_adds_no_series_and_a_series_refusal_takes_no_tokens() {
    let f = Fixture::new("default: { rate: 10, burst: 10, max_series: 5 }");
    assert!(f.send(series("acme", "m", 0, 6), 0.0).is_err());
    // Had the refused batch taken its 6 tokens, 5 more samples would not pass now.
    f.send(series("acme", "m", 0, 5), 0.0).unwrap();
    f.send(series("acme", "m", 0, 5), 0.0).unwrap();
    assert!(f.send(series("acme", "m", 0, 1), 0.0).is_err());
}

#[test]
fn series_identity_ignores_attribute_order() {
    let h = series::SeriesHasher::default();
    let mut a = series("", "m", 0, 1);
    let mut b = a.clone();
    fn attrs(b: &mut Batch) -> &mut Vec<KeyValue> {
        match &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data {
            Some(Data::Gauge(g)) => &mut g.data_points[0].attributes,
            _ => unreachable!(),
        }
    }
    attrs(&mut a).push(kv("x", "1"));
    attrs(&mut b).insert(0, kv("x", "1"));
    let c = series("", "other", 0, 1);
    let (mut ha, mut hb, mut hc) = (Vec::new(), Vec::new(), Vec::new());
    h.hash_batch(&a, &mut ha);
    h.hash_batch(&b, &mut hb);
    h.hash_batch(&c, &mut hc);
    assert_eq!(ha, hb);
    assert_ne!(ha, hc);
}

#[test]
fn points_breaking_label_limits_are_dropped_and_counted() {
    let f = Fixture::new(
        "default: { max_label_names_per_series: 2, max_label_name_length: 5, max_label_value_length: 3 }",
    );
    let mut b = series("acme", "m", 0, 5);
    if let Some(Data::Gauge(g)) = &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data {
        g.data_points[1].attributes.push(kv("toolong", "v"));
        g.data_points[2].attributes[0] = kv("id", "long");
        g.data_points[3]
            .attributes
            .extend([kv("a", "1"), kv("b", "2")]);
    }
    f.send(b, 0.0).unwrap();
    assert_eq!(f.capture.points(), 2);
    assert_eq!(
        f.telemetry.value(
            "sluice_processor_dropped_points_total",
            &[("reason", "label_limit")]
        ),
        3.0
    );
    // A batch of which nothing is left is not passed on.
    let mut b = series("acme", "m", 1000, 1);
    if let Some(Data::Gauge(g)) = &mut b.resource_metrics[0].scope_metrics[0].metrics[0].data {
        g.data_points[0].attributes = vec![kv("id", "1000")];
    }
    f.send(b, 0.0).unwrap();
    assert_eq!(f.capture.take().len(), 1);
}

#[test]
fn idle_tenants_are_forgotten() {
    let f = Fixture::new("default: { rate: 10, max_series: 10 }");
    f.send(samples("acme", 1), 0.0).unwrap();
    f.send(samples("globex", 1), 500.0).unwrap();
    assert_eq!(f.p.tenant_count(), 2);
    f.send(samples("globex", 1), 700.0).unwrap();
    assert_eq!(f.p.tenant_count(), 1);
    assert_eq!(
        f.telemetry.value(
            "sluice_processor_limits_active_series",
            &[("tenant", "acme")]
        ),
        0.0
    );
}

#[test]
fn config_errors_are_clear() {
    let errs = |y: &str| parse_result(y).unwrap_err().join("\n");
    assert!(errs("default: { rate: 0 }").contains("default.rate must be above 0"));
    assert!(errs("tenants: { acme: { max_series: 0 } }").contains("tenants.acme.max_series"));
    assert!(errs("default: { rates: 1 }").contains("rates"));
    let e = errs("default: { rate: -1 }");
    assert!(e.contains("non-negative"), "{e}");
}
