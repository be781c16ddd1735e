use super::*;
use sluice_core::prometheus::{TranslateOptions, translate};
use sluice_core::{Batch, Context};
use std::collections::HashSet;

const SMALL: Sizes = Sizes {
    samples: 5000,
    series: 1200,
    per_request: 700,
};

fn rw_requests(w: &Workload) -> Vec<rw::WriteRequest> {
    w.bodies
        .iter()
        .map(|b| {
            let raw = snap::raw::Decoder::new().decompress_vec(b).unwrap();
            rw::WriteRequest::decode(raw.as_slice()).unwrap()
        })
        .collect()
}

// Every sample is in a body, in requests of `per_request`, with one sample per series per round and
// timestamps one step apart per round.
#[test]
fn remote_write_workload_has_the_asked_samples_series_and_rounds() {
    let w = Workload::build(Format::RemoteWrite, SMALL, 1_700_000_000_000);
    let reqs = rw_requests(&w);
    assert_eq!(w.points, 5000);
    assert_eq!(w.body_points, vec![700, 700, 700, 700, 700, 700, 700, 100]);
    let mut series = HashSet::new();
    let mut per_series: std::collections::HashMap<Vec<(String, String)>, Vec<i64>> =
        Default::default();
    for r in &reqs {
        for t in &r.timeseries {
            let key: Vec<_> = t
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            assert!(
                key.windows(2).all(|p| p[0].0 < p[1].0),
                "labels sorted: {key:?}"
            );
            series.insert(key.clone());
            per_series
                .entry(key)
                .or_default()
                .push(t.samples[0].timestamp);
        }
    }
    assert_eq!(series.len(), 1200);
    for ts in per_series.values() {
        assert!(ts.windows(2).all(|p| p[1] - p[0] == STEP_MS), "{ts:?}");
        assert!(*ts.last().unwrap() <= 1_700_000_000_000);
    }
    assert_eq!(w.preamble.len(), 1);
}

// Classic histogram buckets are cumulative and end with `+Inf` equal to `_count`.
#[test]
fn remote_write_histogram_buckets_are_cumulative() {
    let w = Workload::build(Format::RemoteWrite, SMALL, 1_700_000_000_000);
    let first = &rw_requests(&w)[0];
    let buckets: Vec<f64> = first
        .timeseries
        .iter()
        .take(12)
        .map(|t| t.samples[0].value)
        .collect();
    assert!(buckets.windows(2).all(|p| p[0] <= p[1]), "{buckets:?}");
    let count = first.timeseries[13].samples[0].value;
    assert_eq!(
        first.timeseries[13].labels[0].value,
        "http_request_duration_seconds_count"
    );
    assert_eq!(buckets[11], count);
}

// `rw_samples` is what Sluice's own translation makes of the OTLP bodies (without target_info).
#[test]
fn otlp_workload_counts_points_and_the_samples_they_translate_to() {
    let w = Workload::build(Format::Otlp, SMALL, 1_700_000_000_000);
    assert_eq!(w.points, 5000);
    let opts = TranslateOptions {
        target_info: false,
        ..Default::default()
    };
    let mut points = 0;
    let mut samples = 0;
    for b in &w.bodies {
        let req = ExportMetricsServiceRequest::decode(b.as_ref()).unwrap();
        points += req
            .resource_metrics
            .iter()
            .map(sluice_core::batch::resource_points)
            .sum::<usize>();
        let t = translate(&Batch::from_request(Context::default(), req), &opts, None);
        assert!(t.dropped.is_empty(), "{:?}", t.dropped);
        samples += t.series.iter().map(|s| s.samples.len()).sum::<usize>();
    }
    assert_eq!(points as u64, w.points);
    assert_eq!(samples as u64, w.rw_samples);
}
