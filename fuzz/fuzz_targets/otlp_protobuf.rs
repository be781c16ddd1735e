//! Feeds arbitrary bytes to the OTLP receiver's path for a protobuf body (OTLP/HTTP protobuf and
//! OTLP/gRPC decode the same message): decode, validation (`sanitize`), and the batch handed to the
//! pipeline. None of it may panic; a rejection must say why. The receiver's decoding
//! (`sluice_core::otlp_protobuf`) must take and refuse what prost's does, into the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use sluice_core::batch::{Batch, Context};
use sluice_core::otlp_protobuf::decode_metrics;
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_receivers::otlp::fuzzing::sanitize;

fuzz_target!(|data: &[u8]| {
    let ours = decode_metrics(data);
    let prost = ExportMetricsServiceRequest::decode(data);
    assert_eq!(ours.is_ok(), prost.is_ok(), "{:?} / {:?}", ours.as_ref().err(), prost.as_ref().err());
    let Ok(request) = ours else {
        return;
    };
    // Compared by their encodings, which tell NaNs apart.
    assert_eq!(request.encode_to_vec(), prost.expect("agreed").encode_to_vec());
    let (request, rejected) = sanitize(request);
    if let Some(r) = rejected {
        assert!(!r.message.is_empty());
    }
    let mut batch = Batch::from_request(Context::default(), request);
    // What the batch processor does with it: cut it into pieces of at most 7 points, conserving
    // every point.
    let points = batch.point_count();
    let mut taken = 0;
    while !batch.is_empty() {
        let front = batch.split_off_front(7);
        let n = front.point_count();
        assert!(n > 0 && n <= 7, "a piece of {n} points");
        taken += n;
    }
    assert_eq!(taken, points);
});
