//! The cost no collector can avoid, per sample, on the benchmark's own payloads: what it takes to
//! read a request and write it out again, without any pipeline around it.
//!
//! - `rw_v1`: snappy decompress + decode + encode + snappy compress of remote_write 1.0 requests
//!   (the W1 floor), and each step alone;
//! - `otlp`: decode + encode of OTLP requests, and with gunzip before and gzip after (the W3
//!   floor, at level 6 as rotel's tonic compresses, and at level 1, Sluice's default); gzip at
//!   levels 1 and 6 alone;
//! - `w2`: OTLP decode, Sluice's translation (`sluice_core::prometheus::translate`), and the
//!   remote_write 1.0 encoding + snappy of the translated series, by prost (labels copied into
//!   its messages) and by the exporter's own writer (straight from the series) (the W2 floor).
//!
//! Throughput is in elements = samples (remote_write) or data points (OTLP) of the input.

use criterion::{BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use sluice_bench::workload::{Format, Sizes, Workload};
use sluice_core::prometheus::{Series, TranslateOptions, translate};
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::prometheus_v1 as v1;
use sluice_core::{Batch, Context};
use std::hint::black_box;
use std::time::Duration;

fn workload(format: Format) -> Workload {
    Workload::build(format, Sizes::ONE_ROUND, 1_700_000_000_000)
}

fn snappy_decompress(b: &[u8]) -> Vec<u8> {
    snap::raw::Decoder::new()
        .decompress_vec(b)
        .expect("valid snappy")
}

fn snappy_compress(b: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(b)
        .expect("compressible")
}

fn group<'a>(
    c: &'a mut Criterion,
    name: &str,
    w: &Workload,
) -> BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(w.points));
    g
}

fn rw_v1(c: &mut Criterion) {
    let w = workload(Format::RemoteWrite);
    let raws: Vec<Vec<u8>> = w.bodies.iter().map(|b| snappy_decompress(b)).collect();
    let reqs: Vec<v1::WriteRequest> = raws
        .iter()
        .map(|r| v1::WriteRequest::decode(r.as_slice()).expect("valid"))
        .collect();
    let mut g = group(c, "rw_v1", &w);
    g.bench_function("decompress+decode+encode+compress", |b| {
        b.iter(|| {
            for body in &w.bodies {
                let raw = snappy_decompress(black_box(body));
                let req = v1::WriteRequest::decode(raw.as_slice()).expect("valid");
                black_box(snappy_compress(&req.encode_to_vec()));
            }
        })
    });
    g.bench_function("decompress", |b| {
        b.iter(|| {
            w.bodies
                .iter()
                .for_each(|body| drop(black_box(snappy_decompress(body))))
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            raws.iter()
                .for_each(|r| drop(black_box(v1::WriteRequest::decode(r.as_slice()))))
        })
    });
    g.bench_function("encode", |b| {
        b.iter(|| reqs.iter().for_each(|r| drop(black_box(r.encode_to_vec()))))
    });
    g.bench_function("compress", |b| {
        b.iter(|| {
            raws.iter()
                .for_each(|r| drop(black_box(snappy_compress(r))))
        })
    });
    g.finish();
}

fn gzip(b: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(b).expect("in memory");
    e.finish().expect("in memory")
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn otlp(c: &mut Criterion) {
    let w = workload(Format::Otlp);
    let gzipped: Vec<Vec<u8>> = w.bodies.iter().map(|b| gzip(b, 6)).collect();
    let mut g = group(c, "otlp", &w);
    g.bench_function("decode+encode", |b| {
        b.iter(|| {
            for body in &w.bodies {
                let req =
                    ExportMetricsServiceRequest::decode(black_box(body.as_ref())).expect("valid");
                black_box(req.encode_to_vec());
            }
        })
    });
    for level in [6, 1] {
        g.bench_function(format!("gunzip+decode+encode+gzip{level}"), |b| {
            b.iter(|| {
                for body in &gzipped {
                    let raw = gunzip(black_box(body));
                    let req = ExportMetricsServiceRequest::decode(raw.as_slice()).expect("valid");
                    black_box(gzip(&req.encode_to_vec(), level));
                }
            })
        });
    }
    g.bench_function("gunzip", |b| {
        b.iter(|| {
            for body in &gzipped {
                black_box(gunzip(black_box(body)));
            }
        })
    });
    for level in [6, 1] {
        g.bench_function(format!("gzip level {level}"), |b| {
            b.iter(|| {
                for body in &w.bodies {
                    black_box(gzip(black_box(body), level));
                }
            })
        });
    }
    g.finish();
    for level in [6, 1] {
        let bytes: usize = w.bodies.iter().map(|b| gzip(b, level).len()).sum();
        let raw: usize = w.bodies.iter().map(|b| b.len()).sum();
        eprintln!("otlp gzip level {level}: {raw} -> {bytes} bytes");
    }
}

/// A plain remote_write 1.0 request of translated series (no metadata).
fn to_write_request(series: &[Series]) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(name, value)| v1::Label {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|p| v1::Sample {
                        value: p.value,
                        timestamp: p.timestamp_ms,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect(),
        metadata: Vec::new(),
    }
}

fn w2(c: &mut Criterion) {
    let w = workload(Format::Otlp);
    let opts = TranslateOptions::default();
    let batches: Vec<Batch> = w
        .bodies
        .iter()
        .map(|b| {
            Batch::from_request(
                Context::default(),
                ExportMetricsServiceRequest::decode(b.as_ref()).expect("valid"),
            )
        })
        .collect();
    let translated: Vec<Vec<Series>> = batches
        .iter()
        .map(|b| translate(b, &opts, None).series)
        .collect();
    let mut g = group(c, "w2", &w);
    g.bench_function("otlp_decode", |b| {
        b.iter(|| {
            w.bodies.iter().for_each(|body| {
                drop(black_box(ExportMetricsServiceRequest::decode(
                    body.as_ref(),
                )))
            })
        })
    });
    g.bench_function("translate", |b| {
        b.iter(|| {
            batches
                .iter()
                .for_each(|batch| drop(black_box(translate(batch, &opts, None))))
        })
    });
    g.bench_function("rw_encode+compress", |b| {
        b.iter(|| {
            translated.iter().for_each(|s| {
                drop(black_box(snappy_compress(
                    &to_write_request(s).encode_to_vec(),
                )))
            })
        })
    });
    let mut encoder = sluice_exporters::remote_write::Encoder::default();
    g.bench_function("rw_encode+compress (exporter's writer)", |b| {
        b.iter(|| {
            translated.iter().for_each(|s| {
                black_box(encoder.encode(s, sluice_exporters::remote_write::Protocol::V1, false));
            })
        })
    });
    g.bench_function("all", |b| {
        b.iter(|| {
            for body in &w.bodies {
                let req =
                    ExportMetricsServiceRequest::decode(black_box(body.as_ref())).expect("valid");
                let t = translate(&Batch::from_request(Context::default(), req), &opts, None);
                black_box(encoder.encode(
                    &t.series,
                    sluice_exporters::remote_write::Protocol::V1,
                    false,
                ));
            }
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = rw_v1, otlp, w2
}
criterion_main!(benches);
