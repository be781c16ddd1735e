use super::config::Protocol;
use super::encode::{Encoder, to_v1, to_v2};
use prost::Message;
use sluice_core::prometheus::{
    LabelSet, Metadata, MetricType, NativeHistogram, Sample, Series, stale_nan,
};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};

fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.push(("__name__".into(), name.into()));
    l.sort();
    let metadata = Metadata {
        metric_type: MetricType::Counter,
        family: name.into(),
        help: "help".into(),
        unit: "".into(),
    };
    let mut s = Series::new(LabelSet::from(l), metadata.into());
    s.samples = samples
        .iter()
        .map(|&(t, v)| Sample {
            timestamp_ms: t,
            value: v,
            start_timestamp_ms: 1000,
        })
        .collect();
    s
}

// The body is snappy *block* format (not framed) and decodes to the same series, v1.
#[test]
fn v1_body_round_trips_through_snappy_block_format() {
    let s = vec![
        series("a_total", &[("job", "j")], &[(1, 1.0), (2, stale_nan())]),
        series("b_total", &[], &[(3, 2.5)]),
    ];
    let mut enc = Encoder::default();
    let body = enc.encode(&s, Protocol::V1, true).to_vec();
    assert_ne!(&body[..2], &[0xff, 0x06], "not the framed format");
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let req = v1::WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.timeseries.len(), 2);
    assert_eq!(req.timeseries[0].labels[0].name, "__name__");
    assert_eq!(
        req.timeseries[0].samples[1].value.to_bits(),
        0x7ff0_0000_0000_0002
    );
    assert_eq!(req.metadata.len(), 2);
    assert_eq!(req.metadata[0].r#type, 1);
    assert_eq!(req.metadata[0].help, "help");
}

// The shards' bodies come from buffers their thread shares: a small request after a large one
// is the small one alone, byte for byte what an encoder of its own writes, in either protocol.
#[test]
fn bodies_from_a_threads_shared_buffers_hold_only_their_own_request() {
    let large: Vec<Series> = (0..500)
        .map(|i| series("a_total", &[("i", &i.to_string())], &[(i, 1.0)]))
        .collect();
    let small = vec![series("b_total", &[("job", "j")], &[(3, 2.5)])];
    for protocol in [Protocol::V1, Protocol::V2] {
        for (s, metadata) in [(&large, true), (&small, false), (&small, true)] {
            let own = Encoder::default().encode(s, protocol, metadata).to_vec();
            assert_eq!(Encoder::body(s, protocol, metadata), own);
        }
    }
}

// The v1 body is written straight from the series: byte for byte what prost writes for the same
// request, with exemplars, native histograms, empty label values, zero and negative values and
// timestamps (repeated and not), NaN, and metadata on and off.
#[test]
fn v1_direct_writer_matches_prost() {
    let mut a = series(
        "a_total",
        &[("job", "j"), ("empty", "")],
        &[(0, 0.0), (-5, -1.5)],
    );
    a.samples.push(Sample {
        timestamp_ms: 1_700_000_000_000,
        value: f64::NAN,
        start_timestamp_ms: 0,
    });
    *a.exemplars_mut() = vec![sluice_core::prometheus::Exemplar {
        labels: vec![("trace_id".into(), "abc".into())],
        value: 0.5,
        timestamp_ms: 3,
    }];
    let mut h = series("h", &[("le_long_label_name".repeat(10).as_str(), "v")], &[]);
    *h.histograms_mut() = vec![NativeHistogram {
        timestamp_ms: 7,
        count: 4,
        sum: 2.5,
        schema: -2,
        zero_count: 1,
        positive_spans: vec![(1, 2)],
        positive_deltas: vec![1, -1],
        ..Default::default()
    }];
    // Timestamps repeated, within a series and across series, and back to an earlier one.
    let long = series(
        "b",
        &[("v", &"x".repeat(300))],
        &[(1, 1.0), (1, 2.0), (-5, 3.0)],
    );
    let again = series("c", &[], &[(-5, 1.0), (1_700_000_000_000, 2.0)]);
    let all = [a, h, long, again, Series::default()];
    for metadata in [true, false] {
        for n in 0..=all.len() {
            let direct = Encoder::default()
                .encode(&all[..n], Protocol::V1, metadata)
                .to_vec();
            let direct = snap::raw::Decoder::new().decompress_vec(&direct).unwrap();
            assert_eq!(
                direct,
                to_v1(&all[..n], metadata).encode_to_vec(),
                "{n} series"
            );
        }
    }
}

// Series a warm label cache hands on (a histogram point's, kept as the point's labels with each
// series' name and `le` put in) are written byte for byte as prost writes their labels, and as
// the same series translated without a cache.
#[test]
fn v1_direct_writer_matches_prost_for_remembered_series() {
    use sluice_core::batch::Batch;
    use sluice_core::prometheus::{LabelCache, TranslateOptions, translate, translate_cached};
    use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value::Value};
    use sluice_core::proto::otlp::metrics::v1::*;
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
    };
    // Label names on both sides of `__name__` and of `le`; more series than the writer reads
    // ahead at a time.
    let points = (0..4)
        .map(|i| HistogramDataPoint {
            attributes: vec![
                attr("Upper", "u"),
                attr("method", "GET"),
                attr("route", &format!("/r{i}")),
            ],
            time_unix_nano: 1_700_000_000_000_000_000,
            start_time_unix_nano: 1_600_000_000_000_000_000,
            count: 6,
            sum: Some(2.5),
            bucket_counts: vec![1, 2, 3],
            explicit_bounds: vec![0.1, 1.0],
            ..Default::default()
        })
        .collect();
    let batch = Batch::new(
        Default::default(),
        vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "request_duration".into(),
                    unit: "s".into(),
                    data: Some(metric::Data::Histogram(Histogram {
                        data_points: points,
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    );
    let opts = TranslateOptions::default();
    let mut cache = LabelCache::new(LabelCache::DEFAULT_CAPACITY);
    let plain = translate(&batch, &opts, None).series;
    // The first translation hands its series on in parts too (they are new to the cache).
    let first = translate_cached(&batch, &opts, None, Some(&mut cache));
    let warm = translate_cached(&batch, &opts, None, Some(&mut cache));
    assert_eq!(warm.label_cache_hits, 4);
    assert_eq!(warm.series.len(), 4 * 5);
    let write = |series: &[Series]| {
        let body = Encoder::default()
            .encode(series, Protocol::V1, true)
            .to_vec();
        snap::raw::Decoder::new().decompress_vec(&body).unwrap()
    };
    let direct = write(&warm.series);
    assert_eq!(direct, to_v1(&warm.series, true).encode_to_vec());
    assert_eq!(direct, write(&plain));
    assert_eq!(write(&first.series), direct);
    assert_eq!(to_v1(&first.series, true).encode_to_vec(), direct);
    let req = v1::WriteRequest::decode(direct.as_slice()).unwrap();
    let names = |ts: &v1::TimeSeries| ts.labels.iter().map(|l| l.name.clone()).collect::<Vec<_>>();
    let bucket = req
        .timeseries
        .iter()
        .find(|ts| names(ts).iter().any(|n| n == "le"));
    assert_eq!(
        bucket.map(names).unwrap(),
        ["Upper", "__name__", "le", "method", "route"]
    );
}

// Metadata is sent once per family and not at all when switched off.
#[test]
fn v1_metadata_once_per_family_or_not_at_all() {
    let s = vec![
        series("a_total", &[("x", "1")], &[(1, 1.0)]),
        series("a_total", &[("x", "2")], &[(1, 1.0)]),
    ];
    assert_eq!(to_v1(&s, true).metadata.len(), 1);
    assert!(to_v1(&s, false).metadata.is_empty());
}

// v2: "" at index 0, every string once, refs in range and in label order, start timestamps.
#[test]
fn v2_symbols_table_is_deduplicated_and_refs_are_valid() {
    let s = vec![
        series("a_total", &[("job", "j"), ("x", "1")], &[(5, 1.0)]),
        series("a_total", &[("job", "j"), ("x", "2")], &[(5, 2.0)]),
    ];
    let req = to_v2(&s);
    assert_eq!(req.symbols[0], "");
    let mut u = req.symbols.clone();
    u.sort();
    u.dedup();
    assert_eq!(u.len(), req.symbols.len());
    for t in &req.timeseries {
        let names: Vec<&str> = t
            .labels_refs
            .chunks(2)
            .map(|p| req.symbols[p[0] as usize].as_str())
            .collect();
        assert_eq!(names, ["__name__", "job", "x"]);
        assert_eq!(t.samples[0].start_timestamp, 1000);
        let md = t.metadata.unwrap();
        assert_eq!(req.symbols[md.help_ref as usize], "help");
        assert_eq!(md.unit_ref, 0, "an empty unit is symbol 0");
    }
    let mut enc = Encoder::default();
    let body = enc.encode(&s, Protocol::V2, true).to_vec();
    let back = v2::Request::decode(
        snap::raw::Decoder::new()
            .decompress_vec(&body)
            .unwrap()
            .as_slice(),
    )
    .unwrap();
    assert_eq!(back, req);
}

// Native histograms keep their spans and deltas; a stale one carries StaleNaN as its sum.
#[test]
fn native_histograms_are_encoded_in_both_versions() {
    let h = NativeHistogram {
        timestamp_ms: 7,
        count: 4,
        sum: 2.5,
        schema: 3,
        zero_count: 1,
        positive_spans: vec![(1, 2)],
        positive_deltas: vec![1, 1],
        ..Default::default()
    };
    let mut s = series("h", &[], &[]);
    *s.histograms_mut() = vec![h.clone(), NativeHistogram { stale: true, ..h }];
    let r1 = to_v1(std::slice::from_ref(&s), false);
    let hs = &r1.timeseries[0].histograms;
    assert_eq!(hs[0].positive_spans[0].length, 2);
    assert_eq!(hs[0].positive_deltas, vec![1, 1]);
    assert_eq!(hs[1].sum.to_bits(), 0x7ff0_0000_0000_0002);
    let r2 = to_v2(&[s]);
    assert_eq!(r2.timeseries[0].histograms[0].schema, 3);
}

// A shard takes a run whole into an empty request when no series but the last fills it; the
// figures are those it would have summed series by series.
#[test]
fn a_run_is_taken_whole_only_when_no_series_before_its_last_fills_the_request() {
    use super::config::QueueConfig;
    use super::encode::estimated_bytes;
    use super::shards::whole_run;
    let one = |i: i64| series("m", &[("i", &i.to_string())], &[(i, 1.0)]);
    let run = |n: i64| (0..n).map(one).collect::<Vec<_>>();
    let bytes = |r: &[Series]| r.iter().map(estimated_bytes).sum::<usize>();
    let q = QueueConfig {
        max_samples_per_send: 3,
        ..QueueConfig::default()
    };
    for n in 1..=3 {
        let r = run(n);
        assert_eq!(
            whole_run(&r, &q),
            Some((n as usize, bytes(&r))),
            "{n} series"
        );
    }
    assert_eq!(whole_run(&run(4), &q), None, "the third fills the request");
    // Two samples in the first series: the second series fills it.
    let mut r = run(3);
    let first = r[0].samples[0];
    r[0].samples.push(first);
    assert_eq!(whole_run(&r, &q), None);
    // Bytes count too.
    let r = run(3);
    let q = QueueConfig {
        max_bytes_per_send: sluice_core::config::types::ByteSize(bytes(&r[..1]) as u64),
        ..QueueConfig::default()
    };
    assert_eq!(whole_run(&r[..1], &q), Some((1, bytes(&r[..1]))));
    assert_eq!(whole_run(&r, &q), None);
}

#[test]
fn basic_auth_base64() {
    assert_eq!(super::client::base64_encode("user:pass"), "dXNlcjpwYXNz");
    assert_eq!(super::client::base64_encode("a"), "YQ==");
    assert_eq!(super::client::base64_encode("ab"), "YWI=");
}

/// Per-tenant sending: an in-process remote_write endpoint that refuses chosen tenants.
mod tenants {
    use super::super::slots::Slots;
    use crate::remote_write::RemoteWriteConfig;
    use prost::Message;
    use sluice_core::batch::{Batch, Context};
    use sluice_core::component::{ComponentId, Exporter, ExporterConfig, ExporterContext};
    use sluice_core::proto::otlp::common::v1::{AnyValue, KeyValue, any_value};
    use sluice_core::proto::otlp::metrics::v1::*;
    use sluice_core::proto::prometheus_v1 as v1;
    use sluice_core::telemetry::Telemetry;
    use sluice_core::tenancy::TenantInfo;
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Fails the test if `fut` takes longer than 20s, instead of hanging.
    async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(20), fut)
            .await
            .expect("timed out")
    }

    /// Waits (up to 20s) until `cond` holds.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[derive(Default)]
    struct State {
        /// (tenant from the header, path, request) of each accepted request.
        accepted: Vec<(String, String, v1::WriteRequest)>,
        /// Tenants answered 503.
        failing: HashSet<String>,
        refused: usize,
        /// Tenants whose requests are held (not answered) while they are in the set.
        stalled: HashSet<String>,
        /// Requests that arrived, answered or not.
        arrived: usize,
    }

    struct Endpoint {
        addr: std::net::SocketAddr,
        state: Arc<Mutex<State>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for Endpoint {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Endpoint {
        async fn start() -> Endpoint {
            let state = Arc::new(Mutex::new(State::default()));
            let st = state.clone();
            let app = axum::Router::new().route(
                "/{*path}",
                axum::routing::post(
                    move |uri: http::Uri, headers: http::HeaderMap, body: axum::body::Bytes| {
                        let st = st.clone();
                        async move {
                            let tenant = headers
                                .get("x-scope-orgid")
                                .map_or("", |v| v.to_str().unwrap())
                                .to_string();
                            let path = uri.path().to_string();
                            st.lock().unwrap().arrived += 1;
                            while st.lock().unwrap().stalled.contains(&tenant) {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            let mut s = st.lock().unwrap();
                            if s.failing.contains(&tenant)
                                || s.failing.iter().any(|t| path.contains(&format!("/{t}/")))
                            {
                                s.refused += 1;
                                return http::StatusCode::SERVICE_UNAVAILABLE;
                            }
                            let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
                            let req = v1::WriteRequest::decode(raw.as_slice()).unwrap();
                            s.accepted.push((tenant, path, req));
                            http::StatusCode::NO_CONTENT
                        }
                    },
                ),
            );
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let task = tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
            Endpoint { addr, state, task }
        }

        fn fail(&self, tenant: &str, on: bool) {
            let mut s = self.state.lock().unwrap();
            if on {
                s.failing.insert(tenant.into());
            } else {
                s.failing.remove(tenant);
            }
        }

        /// Sample values received per series (`s` label), for one tenant (by header or path).
        fn values(&self, tenant: &str) -> BTreeMap<String, Vec<f64>> {
            let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for (t, path, req) in &self.state.lock().unwrap().accepted {
                if t != tenant && !path.contains(&format!("/{tenant}/")) {
                    continue;
                }
                for ts in &req.timeseries {
                    let s = ts.labels.iter().find(|l| l.name == "s").unwrap();
                    let v = out.entry(s.value.clone()).or_default();
                    v.extend(ts.samples.iter().map(|x| x.value));
                }
            }
            out
        }

        fn samples(&self, tenant: &str) -> usize {
            self.values(tenant).values().map(Vec::len).sum()
        }
    }

    fn config(yaml: &str) -> RemoteWriteConfig {
        use sluice_core::component::{Class, parse_config};
        use sluice_core::config::{LoadContext, component_node};
        let indented: String = yaml.lines().map(|l| format!("    {l}\n")).collect();
        let text = format!("exporters:\n  prometheus_remote_write:\n{indented}");
        let id = ComponentId::parse("prometheus_remote_write").unwrap();
        let node = component_node(&text, Class::Exporter, &id).unwrap();
        let ctx = LoadContext {
            base_dir: std::path::Path::new(".").into(),
        };
        parse_config(&node, &ctx).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn label_cache_size_defaults_to_262144_and_0_turns_it_off() {
        let endpoint = "endpoint: http://127.0.0.1:9/api/v1/write";
        assert_eq!(config(endpoint).label_cache_size, 262_144);
        let off = config(&format!("{endpoint}\nlabel_cache_size: 0"));
        assert_eq!(off.label_cache_size, 0);
    }

    fn build(cfg: &RemoteWriteConfig) -> (Arc<dyn Exporter>, Arc<Telemetry>) {
        let telemetry = Arc::new(Telemetry::new());
        let e = cfg
            .build(ExporterContext {
                id: ComponentId::parse("prometheus_remote_write").unwrap(),
                telemetry: telemetry.clone(),
            })
            .unwrap();
        (e, telemetry)
    }

    /// Batch number `seq` of a tenant: gauge `m` with `series` series (`s="0"`...), each with
    /// one sample of value `seq` at `seq` ms.
    fn batch(tenant: &str, tier: Option<&str>, series: usize, seq: u64) -> Batch {
        let points = (0..series)
            .map(|j| NumberDataPoint {
                attributes: vec![KeyValue {
                    key: "s".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(j.to_string())),
                    }),
                }],
                time_unix_nano: 1_790_000_000_000_000_000 + seq * 1_000_000,
                value: Some(number_data_point::Value::AsDouble(seq as f64)),
                ..Default::default()
            })
            .collect();
        Batch::new(
            Context {
                tenant: Some(tenant.into()),
                tenant_info: tier.map(|t| {
                    Arc::new(TenantInfo {
                        sla_tier: Some(t.into()),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            },
            vec![ResourceMetrics {
                scope_metrics: vec![ScopeMetrics {
                    metrics: vec![Metric {
                        name: "m".into(),
                        data: Some(metric::Data::Gauge(Gauge {
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

    /// Every series got exactly the values 0..batches, in order.
    fn assert_complete_in_order(got: &BTreeMap<String, Vec<f64>>, series: usize, batches: u64) {
        let want: Vec<f64> = (0..batches).map(|i| i as f64).collect();
        assert_eq!(got.len(), series, "{got:?}");
        for (s, v) in got {
            assert_eq!(v, &want, "series {s}");
        }
    }

    const QUEUE: &str = "queue_config: { batch_send_deadline: 20ms, min_backoff: 10ms, max_backoff: 50ms, min_shards: 1, max_shards: 4 }";

    // Guarantees: while tenant A's backend refuses (503) every request, tenant B's samples are
    // delivered, complete and in order, through the same exporter with one shard per tenant; once
    // A's backend accepts again, A's samples arrive complete, once each, in order; the counters
    // are per tenant (A failed attempts, both sent).
    #[tokio::test]
    async fn a_failing_tenant_does_not_hold_back_another() {
        let ep = Endpoint::start().await;
        ep.fail("a", true);
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\n{QUEUE}",
            ep.addr
        ));
        let (e, telemetry) = build(&cfg);
        for seq in 0..5 {
            within(e.send(&batch("a", None, 3, seq))).await.unwrap();
            within(e.send(&batch("b", None, 3, seq))).await.unwrap();
        }
        until("b delivered", || ep.samples("b") == 15).await;
        assert_complete_in_order(&ep.values("b"), 3, 5);
        until("a refused", || ep.state.lock().unwrap().refused >= 2).await;
        assert_eq!(ep.samples("a"), 0);
        ep.fail("a", false);
        until("a delivered", || ep.samples("a") == 15).await;
        assert_complete_in_order(&ep.values("a"), 3, 5);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
        let v = |name: &str, t: &str| {
            telemetry.value(
                name,
                &[("exporter", "prometheus_remote_write"), ("tenant", t)],
            )
        };
        assert_eq!(v("sluice_exporter_sent_points_total", "a"), 15.0);
        assert_eq!(v("sluice_exporter_sent_points_total", "b"), 15.0);
        assert!(v("sluice_exporter_failed_points_total", "a") > 0.0);
        assert_eq!(v("sluice_exporter_failed_points_total", "b"), 0.0);
        // Each batch is translated once; the 3 series are built once and then remembered.
        let cache = |name: &str| telemetry.value(name, &[("exporter", "prometheus_remote_write")]);
        let (hits, misses) = (
            cache("sluice_exporter_label_cache_hits_total"),
            cache("sluice_exporter_label_cache_misses_total"),
        );
        assert_eq!(hits + misses, 30.0);
        assert!((3.0..=6.0).contains(&misses), "misses: {misses}");
        assert!((3.0..=6.0).contains(&cache("sluice_exporter_label_cache_sets")));
    }

    // Guarantees: with `${tenant}` in the endpoint each tenant's requests go to its own URL, and
    // one tenant's URL failing does not hold back the other's.
    #[tokio::test]
    async fn tenant_urls_fail_independently() {
        let ep = Endpoint::start().await;
        ep.fail("a", true);
        let cfg = config(&format!(
            "endpoint: http://{}/insert/${{tenant}}/write\n{QUEUE}",
            ep.addr
        ));
        let (e, _) = build(&cfg);
        for seq in 0..3 {
            within(e.send(&batch("a", None, 2, seq))).await.unwrap();
            within(e.send(&batch("b", None, 2, seq))).await.unwrap();
        }
        until("b delivered", || ep.samples("b") == 6).await;
        assert!(
            ep.state
                .lock()
                .unwrap()
                .accepted
                .iter()
                .all(|(_, p, _)| p == "/insert/b/write"),
            "paths"
        );
        ep.fail("a", false);
        until("a delivered", || ep.samples("a") == 6).await;
        assert_complete_in_order(&ep.values("a"), 2, 3);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
    }

    // Guarantees: when a failing tenant's shards are full, `send` does not wait: the series that
    // did not fit are kept (in order) and the tenant's next batch is refused as retryable (before
    // it is translated), while another tenant's batches are taken and delivered; memory per tenant
    // stays bounded by its shards' capacity plus one batch.
    #[tokio::test]
    async fn full_shards_refuse_only_their_tenant() {
        let ep = Endpoint::start().await;
        ep.fail("a", true);
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\nqueue_config: {{ batch_send_deadline: 20ms, min_backoff: 10ms, max_backoff: 50ms, max_shards: 1, capacity: 2, max_samples_per_send: 2 }}",
            ep.addr
        ));
        let (e, telemetry) = build(&cfg);
        within(e.send(&batch("a", None, 10, 0))).await.unwrap();
        let err = within(e.send(&batch("a", None, 10, 1))).await.unwrap_err();
        assert!(err.retryable, "{err}");
        assert!(err.message.contains("tenant a"), "{err}");
        for seq in 0..3 {
            within(e.send(&batch("b", None, 10, seq))).await.unwrap();
            until("b delivered", || ep.samples("b") == 10 * (seq as usize + 1)).await;
        }
        assert_complete_in_order(&ep.values("b"), 10, 3);
        ep.fail("a", false);
        // The refused batch is sent again, as the sending engine does, until it is taken.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while e.send(&batch("a", None, 10, 1)).await.is_err() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a never took its batch"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        until("a delivered", || ep.samples("a") == 20).await;
        assert_complete_in_order(&ep.values("a"), 10, 2);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
        let dropped = telemetry.value(
            "sluice_exporter_dropped_points_total",
            &[("exporter", "prometheus_remote_write")],
        );
        assert_eq!(dropped, 0.0);
    }

    // Guarantees: at the shutdown deadline, a tenant whose backend still refuses has its held
    // samples dropped and counted under its own tenant (reason `shutdown`); the other tenant's
    // were delivered and nothing of it is dropped.
    #[tokio::test]
    async fn shutdown_drops_and_counts_only_the_stuck_tenants_samples() {
        let ep = Endpoint::start().await;
        ep.fail("a", true);
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\n{QUEUE}",
            ep.addr
        ));
        let (e, telemetry) = build(&cfg);
        within(e.send(&batch("a", None, 4, 0))).await.unwrap();
        within(e.send(&batch("b", None, 4, 0))).await.unwrap();
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_millis(500))).await;
        let dropped = |t: &str| {
            telemetry.value(
                "sluice_exporter_dropped_points_total",
                &[
                    ("exporter", "prometheus_remote_write"),
                    ("tenant", t),
                    ("reason", "shutdown"),
                ],
            )
        };
        assert_eq!(dropped("a"), 4.0);
        assert_eq!(dropped("b"), 0.0);
        assert_eq!(ep.samples("b"), 4);
        assert_eq!(ep.samples("a"), 0);
        assert!(
            within(e.send(&batch("b", None, 1, 1))).await.is_err(),
            "taken after shutdown"
        );
    }

    // Guarantees: when every send slot is taken, a freed slot goes to the waiting shard of the
    // best SLA tier (gold before silver before bronze), first come first served within a tier,
    // and a waiter that gives up returns a slot it was granted.
    #[tokio::test]
    async fn send_slots_go_to_the_best_tier_first() {
        let slots = Arc::new(Slots::new(1));
        let held = slots.acquire(2).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (who, rank) in [("bronze", 2), ("silver", 1), ("gold-1", 0), ("gold-2", 0)] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slots.acquire(rank).await;
                order.lock().unwrap().push(who);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }));
            // Each waits before the next comes.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(held);
        for t in tasks {
            within(t).await.unwrap();
        }
        assert_eq!(
            *order.lock().unwrap(),
            ["gold-1", "gold-2", "silver", "bronze"]
        );
        assert_eq!(slots.free(), 1);

        let held = slots.acquire(0).await;
        let waiting = {
            let slots = slots.clone();
            tokio::spawn(async move {
                let _slot = slots.acquire(1).await;
                std::future::pending::<()>().await;
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        assert_eq!(slots.free(), 1, "a slot was lost");
    }

    // Guarantees: with the exporter saturated (its one send slot held by a request in flight)
    // and a bronze and then a gold tenant's requests waiting, the gold tenant's goes first.
    #[tokio::test]
    async fn gold_is_sent_first_when_saturated() {
        let ep = Endpoint::start().await;
        ep.state.lock().unwrap().stalled.insert("hold".into());
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\nqueue_config: {{ batch_send_deadline: 10ms, max_shards: 1 }}",
            ep.addr
        ));
        let (e, _) = build(&cfg);
        within(e.send(&batch("hold", Some("gold"), 1, 0)))
            .await
            .unwrap();
        until("hold in flight", || ep.state.lock().unwrap().arrived == 1).await;
        // Each tenant's shard flushes after 10ms and then waits for the slot; the pauses only
        // let the bronze one queue first.
        within(e.send(&batch("bronze", Some("bronze"), 1, 0)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        within(e.send(&batch("gold", Some("gold"), 1, 0)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            ep.state.lock().unwrap().arrived,
            1,
            "the slot limit was not kept"
        );
        ep.state.lock().unwrap().stalled.clear();
        until("all delivered", || {
            ep.state.lock().unwrap().accepted.len() == 3
        })
        .await;
        let order: Vec<String> = ep
            .state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|(t, _, _)| t.clone())
            .collect();
        assert_eq!(order, ["hold", "gold", "bronze"]);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
    }

    // Guarantees: a tenant's shards stop once it has sent nothing for 30 shard update intervals
    // (the shard gauge counts only the active tenant's), and start again with its next batch,
    // which is delivered.
    #[tokio::test]
    async fn idle_tenants_shards_are_retired_and_restarted() {
        let ep = Endpoint::start().await;
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\nqueue_config: {{ batch_send_deadline: 5ms, shard_update_interval: 5ms, min_shards: 2, max_shards: 2 }}",
            ep.addr
        ));
        let (e, telemetry) = build(&cfg);
        let shards = || {
            telemetry.value(
                "sluice_exporter_shards",
                &[("exporter", "prometheus_remote_write")],
            )
        };
        within(e.send(&batch("a", None, 2, 0))).await.unwrap();
        within(e.send(&batch("b", None, 2, 0))).await.unwrap();
        assert_eq!(shards(), 4.0);
        until("a delivered", || ep.samples("a") == 2).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut seq = 1;
        while shards() != 2.0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a's shards never stopped"
            );
            within(e.send(&batch("b", None, 2, seq))).await.unwrap();
            seq += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        within(e.send(&batch("a", None, 2, 1))).await.unwrap();
        until("a delivered again", || ep.samples("a") == 4).await;
        assert_complete_in_order(&ep.values("a"), 2, 2);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
        assert_eq!(shards(), 0.0);
    }

    // Guarantees: with `${tenant}` in the endpoint, a 415 to v2 from one tenant's URL makes only
    // that tenant fall back to v1; the other keeps sending v2.
    #[tokio::test]
    async fn v2_fallback_is_per_tenant_with_tenant_urls() {
        let versions = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let got = versions.clone();
        let app = axum::Router::new().route(
            "/{tenant}/write",
            axum::routing::post(
                move |axum::extract::Path(t): axum::extract::Path<String>,
                      headers: http::HeaderMap| {
                    let got = got.clone();
                    async move {
                        let v = headers["x-prometheus-remote-write-version"]
                            .to_str()
                            .unwrap()
                            .to_string();
                        got.lock().unwrap().push((t.clone(), v.clone()));
                        if t == "old" && v.starts_with('2') {
                            return http::StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
                        }
                        let mut r = http::StatusCode::NO_CONTENT.into_response();
                        if v.starts_with('2') {
                            r.headers_mut().insert(
                                "X-Prometheus-Remote-Write-Samples-Written",
                                http::HeaderValue::from_static("1"),
                            );
                        }
                        r
                    }
                },
            ),
        );
        use axum::response::IntoResponse;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let cfg = config(&format!(
            "endpoint: http://{addr}/${{tenant}}/write\nprotocol: v2\nqueue_config: {{ batch_send_deadline: 5ms }}"
        ));
        let (e, _) = build(&cfg);
        for seq in 0..2 {
            within(e.send(&batch("old", None, 1, seq))).await.unwrap();
            within(e.send(&batch("new", None, 1, seq))).await.unwrap();
            // Round 0: old's v2 refused and sent again as v1, new's v2; then one each.
            let n = 3 + 2 * seq as usize;
            until("sent", || versions.lock().unwrap().len() >= n).await;
        }
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
        task.abort();
        let v = versions.lock().unwrap().clone();
        let of = |t: &str| -> Vec<String> {
            v.iter()
                .filter(|(x, _)| x == t)
                .map(|(_, v)| v[..1].to_string())
                .collect()
        };
        assert_eq!(of("old"), ["2", "0", "0"]);
        assert_eq!(of("new"), ["2", "2"]);
    }

    /// Whether a batch's completion reported, and with what.
    fn watch(c: &sluice_core::sending::Completion) -> Arc<Mutex<Option<bool>>> {
        let seen = Arc::new(Mutex::new(None));
        let s = seen.clone();
        c.on_done(move |ok| *s.lock().unwrap() = Some(ok));
        seen
    }

    // Guarantees: a handed-off batch reports its completion only once every one of its series was
    // sent (so that a disk queue acknowledges its record only then), and reports it abandoned
    // (kept for the next start) when the shutdown deadline drops series still being retried.
    #[tokio::test]
    async fn completion_waits_for_every_series_and_reports_shutdown_drops() {
        let ep = Endpoint::start().await;
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\n{QUEUE}",
            ep.addr
        ));
        let (e, _) = build(&cfg);
        ep.fail("a", true);
        let d = within(e.send(&batch("a", None, 5, 0))).await.unwrap();
        let seen = watch(
            d.completion
                .as_ref()
                .expect("remote_write reports completion"),
        );
        until("a refused", || ep.state.lock().unwrap().refused >= 1).await;
        assert_eq!(
            *seen.lock().unwrap(),
            None,
            "not done while its series are retried"
        );
        ep.fail("a", false);
        until("a delivered", || ep.samples("a") == 5).await;
        until("completion", || seen.lock().unwrap().is_some()).await;
        assert_eq!(*seen.lock().unwrap(), Some(true));
        // Down again, then stopped: the batch is abandoned, not done.
        ep.fail("a", true);
        let d = within(e.send(&batch("a", None, 5, 1))).await.unwrap();
        let seen = watch(d.completion.as_ref().unwrap());
        until("a refused again", || ep.state.lock().unwrap().refused >= 2).await;
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_millis(100))).await;
        until("completion", || seen.lock().unwrap().is_some()).await;
        assert_eq!(*seen.lock().unwrap(), Some(false));
    }

    // Guarantees: a batch goes to its shard as one run, and a run longer than a request is sent
    // in several requests in order; the batch is done only once the last of them is delivered.
    #[tokio::test]
    async fn a_run_spanning_requests_completes_with_its_last_request() {
        let ep = Endpoint::start().await;
        let cfg = config(&format!(
            "endpoint: http://{}/api/v1/write\ntenant_header: X-Scope-OrgID\nqueue_config: {{ batch_send_deadline: 20ms, min_backoff: 10ms, max_backoff: 50ms, min_shards: 1, max_shards: 1, capacity: 4, max_samples_per_send: 2 }}",
            ep.addr
        ));
        let (e, telemetry) = build(&cfg);
        // 9 series: more than the shard holds (4), so the batch goes as runs of 4, 4 and 1.
        let d = within(e.send(&batch("a", None, 9, 0))).await.unwrap();
        let seen = watch(d.completion.as_ref().unwrap());
        until("a delivered", || ep.samples("a") == 9).await;
        until("completion", || seen.lock().unwrap().is_some()).await;
        assert_eq!(*seen.lock().unwrap(), Some(true));
        let sizes: Vec<usize> = ep
            .state
            .lock()
            .unwrap()
            .accepted
            .iter()
            .map(|(_, _, req)| req.timeseries.len())
            .collect();
        assert_eq!(sizes, [2, 2, 2, 2, 1]);
        assert_complete_in_order(&ep.values("a"), 9, 1);
        within(e.shutdown(tokio::time::Instant::now() + Duration::from_secs(5))).await;
        let held = telemetry.value(
            "sluice_exporter_shard_samples",
            &[("exporter", "prometheus_remote_write")],
        );
        assert_eq!(held, 0.0);
    }

    // Guarantees: the disk queue's keys parse (sizes with units, `fsync` as a word or a map), a
    // relative `directory` is taken relative to the config file, and `storage: disk` without a
    // directory is a config error.
    #[test]
    fn disk_queue_settings_parse_and_validate() {
        use sluice_core::sending::{FsyncSetting, Storage};
        let cfg = config(
            "endpoint: http://127.0.0.1:9/api/v1/write\nsending_queue: { storage: disk, directory: q, max_bytes: 2MiB, fsync: { interval: 250ms }, durable: false }",
        );
        let q = &cfg.sending_queue;
        assert_eq!(q.storage, Storage::Disk);
        assert_eq!(q.directory.as_deref(), Some("./q"));
        assert_eq!(q.max_bytes.get(), 2 << 20);
        assert_eq!(
            q.fsync,
            FsyncSetting::Interval(sluice_core::config::types::Duration::from_millis(250))
        );
        assert!(!q.durable);
        let cfg =
            config("endpoint: http://127.0.0.1:9/api/v1/write\nsending_queue: { fsync: batch }");
        assert_eq!(cfg.sending_queue.storage, Storage::Memory);
        assert_eq!(cfg.sending_queue.fsync, FsyncSetting::Batch);
        assert_eq!(cfg.sending_queue.max_bytes.get(), 1 << 30);

        use sluice_core::component::{Class, parse_config};
        use sluice_core::config::{LoadContext, component_node};
        let text = "exporters:\n  prometheus_remote_write:\n    endpoint: http://127.0.0.1:9/api/v1/write\n    sending_queue: { storage: disk }\n";
        let id = ComponentId::parse("prometheus_remote_write").unwrap();
        let node = component_node(text, Class::Exporter, &id).unwrap();
        let ctx = LoadContext {
            base_dir: std::path::Path::new(".").into(),
        };
        let errs = parse_config::<RemoteWriteConfig>(&node, &ctx).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.to_string().contains("needs a directory")),
            "{errs:?}"
        );
    }
}
