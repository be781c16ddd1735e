//! What Sluice's remote_write receiver costs per sample on the benchmark's payloads, without the
//! HTTP server and the pipeline around it: a 1.0 body read in place (`read`), and read then built
//! into the OTLP resources the receiver hands its pipelines (`read+build`). To be read against
//! `codec_floor`'s `rw_v1/decode` (prost's decoding of the same bodies, into its own messages).
//!
//! Throughput is in elements = samples of the input.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_bench::workload::{Format, Sizes, Workload};
use sluice_receivers::remote_write::fuzzing::{MetadataCache, decode_v1, v1};
use std::hint::black_box;
use std::time::Duration;

fn receive(c: &mut Criterion) {
    let w = Workload::build(Format::RemoteWrite, Sizes::ONE_ROUND, 1_700_000_000_000);
    let raws: Vec<Vec<u8>> = w
        .bodies
        .iter()
        .map(|b| {
            snap::raw::Decoder::new()
                .decompress_vec(b)
                .expect("valid snappy")
        })
        .collect();
    let cache = MetadataCache::default();
    let mut g = c.benchmark_group("rw_v1_receive");
    g.throughput(Throughput::Elements(w.points));
    g.bench_function("read", |b| {
        b.iter(|| {
            raws.iter()
                .for_each(|r| drop(black_box(decode_v1(r).expect("valid"))))
        })
    });
    g.bench_function("read+build", |b| {
        b.iter(|| {
            for r in &raws {
                let mut req = decode_v1(r).expect("valid");
                black_box(v1(&mut req, &cache, r.len()));
            }
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = receive
}
criterion_main!(benches);
