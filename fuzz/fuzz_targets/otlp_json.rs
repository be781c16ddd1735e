//! Feeds arbitrary bytes to the OTLP receiver's path for a JSON body (OTLP/HTTP JSON): decode with
//! the generated pbjson code and `sluice_core::otlp_json`, validation (`sanitize`), the batch. A
//! request that decodes must also encode back to OTLP/JSON (an `otlp_http` exporter with
//! `encoding: json` does that to everything it forwards) and that JSON must decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::batch::{Batch, Context};
use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_receivers::otlp::fuzzing::sanitize;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<ExportMetricsServiceRequest>(data) else {
        return;
    };
    let (request, rejected) = sanitize(request);
    if let Some(r) = rejected {
        assert!(!r.message.is_empty());
    }
    let batch = Batch::from_request(Context::default(), request);
    let json = sluice_core::otlp_json::to_json_vec(&batch.to_request());
    let again = serde_json::from_slice::<ExportMetricsServiceRequest>(&json);
    let again = again.unwrap_or_else(|e| panic!("re-encoded OTLP/JSON does not decode: {e}"));
    assert_eq!(
        Batch::from_request(Context::default(), again).point_count(),
        batch.point_count()
    );
});
