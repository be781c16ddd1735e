//! Feeds arbitrary bytes to the remote_write receiver's path for a remote_write 1.0 (`prometheus.WriteRequest`)
//! body: snappy (block format) decompression under a limit, the in-place protobuf decode (which
//! must accept and refuse exactly what prost does, with the same contents), the checks and the
//! build into OTLP resources, and the batch handed to the pipeline. None of it may panic.
//!
//! The first byte picks the entry: odd, the rest is the HTTP body (snappy-compressed, as on the
//! wire); even, the rest is the already decompressed protobuf, so that mutations reach the decoder
//! instead of mostly breaking the snappy framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_core::batch::{Batch, Context};
use sluice_core::proto::prometheus_v1::{Exemplar, Histogram, Sample, WriteRequest};
use sluice_receivers::remote_write::fuzzing;

/// max_decompressed_bytes for the fuzz runs (the default is larger; inputs are small anyway).
const LIMIT: u64 = 1 << 20;
/// Histogram buckets a request may expand, at least: `MIN_BUCKET_BUDGET` of the HTTP handler.
const MIN_BUCKET_BUDGET: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let decompressed;
    let body = if mode & 1 == 1 {
        match fuzzing::decompress(rest, LIMIT) {
            Ok(d) => {
                assert!(d.len() as u64 <= LIMIT);
                decompressed = d;
                decompressed.as_slice()
            }
            Err((_, _, message)) => {
                assert!(!message.is_empty());
                return;
            }
        }
    } else {
        rest
    };
    let budget = body.len().max(MIN_BUCKET_BUDGET);
    let mut request = match (fuzzing::decode_v1(body), WriteRequest::decode(body)) {
        (Ok(ours), Ok(theirs)) => {
            assert_eq!(ours.series.len(), theirs.timeseries.len());
            for (s, t) in ours.series.iter().zip(&theirs.timeseries) {
                let labels = &ours.labels[s.labels.clone()];
                assert_eq!(labels.len(), t.labels.len());
                for (&(name, value), l) in labels.iter().zip(&t.labels) {
                    assert_eq!((name, value), (l.name.as_str(), l.value.as_str()));
                }
                // Floats compared by their bits (NaN is a value here); messages by their bytes.
                let bits = |x: &[_]| -> Vec<(u64, i64)> {
                    x.iter()
                        .map(|s: &Sample| (s.value.to_bits(), s.timestamp))
                        .collect()
                };
                assert_eq!(bits(&ours.samples[s.samples.clone()]), bits(&t.samples));
                let bytes = |m: &[_]| -> Vec<Vec<u8>> {
                    m.iter().map(|e: &Exemplar| e.encode_to_vec()).collect()
                };
                assert_eq!(bytes(&s.exemplars), bytes(&t.exemplars));
                let hbytes = |m: &[_]| -> Vec<Vec<u8>> {
                    m.iter().map(|h: &Histogram| h.encode_to_vec()).collect()
                };
                assert_eq!(hbytes(&s.histograms), hbytes(&t.histograms));
            }
            assert_eq!(ours.metadata, theirs.metadata);
            ours
        }
        (Err(message), Err(_)) => {
            assert!(!message.is_empty());
            return;
        }
        (ours, theirs) => panic!(
            "in-place decode {:?}, prost {:?}",
            ours.is_ok(),
            theirs.is_ok()
        ),
    };
    let decoded = fuzzing::v1(&mut request, &fuzzing::MetadataCache::default(), budget);
    if decoded.rejected.any() {
        assert!(!decoded.rejected.message().is_empty());
    }
    let batch = Batch::new(Context::default(), decoded.resource_metrics);
    let written = decoded.written;
    // Every sample and histogram written is one point of the batch.
    assert_eq!(
        batch.point_count() as u64,
        written.samples + written.histograms,
        "{written:?}"
    );
});
