//! The label cache's two paths on W2's OTLP payload (10,000 series): `miss` translates every
//! batch into an empty cache (the first scrape or batch of each series), `hit_translate` into a
//! warm one, and `hit_write` encodes the warm result as a remote_write v1 request.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_bench::workload::{Format, Sizes, Workload};
use sluice_core::prometheus::{LabelCache, Series, TranslateOptions, translate_cached};
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::{Batch, Context};
use std::hint::black_box;
use std::time::Duration;

fn paths(c: &mut Criterion) {
    let w = Workload::build(Format::Otlp, Sizes::ONE_ROUND, 1_700_000_000_000);
    let opts = TranslateOptions::default();
    let batches: Vec<Batch> = w
        .bodies
        .iter()
        .map(|b| {
            Batch::from_request(
                Context::default(),
                ExportMetricsServiceRequest::decode(b.as_ref()).unwrap(),
            )
        })
        .collect();
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(w.points));
    g.measurement_time(Duration::from_secs(8));
    let translate_all = |cache: &mut LabelCache| {
        batches
            .iter()
            .for_each(|batch| drop(black_box(translate_cached(batch, &opts, None, Some(cache)))))
    };
    g.bench_function("miss", |b| {
        b.iter(|| translate_all(&mut LabelCache::new(LabelCache::DEFAULT_CAPACITY)))
    });
    let mut cache = LabelCache::new(LabelCache::DEFAULT_CAPACITY);
    translate_all(&mut cache);
    g.bench_function("hit_translate", |b| b.iter(|| translate_all(&mut cache)));
    let warm: Vec<Vec<Series>> = batches
        .iter()
        .map(|b| translate_cached(b, &opts, None, Some(&mut cache)).series)
        .collect();
    let mut encoder = sluice_exporters::remote_write::Encoder::default();
    g.bench_function("hit_write", |b| {
        b.iter(|| {
            warm.iter().for_each(|s| {
                black_box(encoder.encode(s, sluice_exporters::remote_write::Protocol::V1, false));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, paths);
criterion_main!(benches);
