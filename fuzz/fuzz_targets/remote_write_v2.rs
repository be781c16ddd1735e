//! Feeds arbitrary bytes to the remote_write receiver's path for a remote_write 2.0 (`io.prometheus.write.v2.Request`)
//! body: snappy (block format) decompression under a limit, protobuf decode, the checks and the
//! build into OTLP resources, and the batch handed to the pipeline. None of it may panic.
//!
//! The first byte picks the entry: odd, the rest is the HTTP body (snappy-compressed, as on the
//! wire); even, the rest is the already decompressed protobuf, so that mutations reach the decoder
//! instead of mostly breaking the snappy framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_core::batch::{Batch, Context};
use sluice_core::proto::prometheus_v2::Request;
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
    let Ok(request) = Request::decode(body) else {
        return;
    };
    let Ok(decoded) = fuzzing::v2(&request, budget) else {
        return;
    };
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
