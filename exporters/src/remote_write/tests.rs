use super::config::Protocol;
use super::encode::{Encoder, to_v1, to_v2};
use prost::Message;
use sluice_core::prometheus::{Metadata, MetricType, NativeHistogram, Sample, Series, stale_nan};
use sluice_core::proto::{prometheus_v1 as v1, prometheus_v2 as v2};

fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> Series {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.push(("__name__".into(), name.into()));
    l.sort();
    Series {
        labels: l,
        samples: samples
            .iter()
            .map(|&(t, v)| Sample {
                timestamp_ms: t,
                value: v,
                start_timestamp_ms: 1000,
            })
            .collect(),
        metadata: Metadata {
            metric_type: MetricType::Counter,
            family: name.into(),
            help: "help".into(),
            unit: "".into(),
        },
        ..Default::default()
    }
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
    s.histograms = vec![h.clone(), NativeHistogram { stale: true, ..h }];
    let r1 = to_v1(std::slice::from_ref(&s), false);
    let hs = &r1.timeseries[0].histograms;
    assert_eq!(hs[0].positive_spans[0].length, 2);
    assert_eq!(hs[0].positive_deltas, vec![1, 1]);
    assert_eq!(hs[1].sum.to_bits(), 0x7ff0_0000_0000_0002);
    let r2 = to_v2(&[s]);
    assert_eq!(r2.timeseries[0].histograms[0].schema, 3);
}

#[test]
fn basic_auth_base64() {
    assert_eq!(super::client::base64_encode("user:pass"), "dXNlcjpwYXNz");
    assert_eq!(super::client::base64_encode("a"), "YQ==");
    assert_eq!(super::client::base64_encode("ab"), "YWI=");
}
