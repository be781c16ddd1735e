//! The in-place decoder against prost's: the same requests accepted with the same contents, the
//! same inputs refused.

use super::*;
use sluice_core::prometheus::write_v1_labels;
use sluice_core::proto::prometheus_v1 as v1;

/// The decoded request as prost's message, to compare.
fn as_prost(r: &Request<'_>) -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: r
            .series
            .iter()
            .map(|s| v1::TimeSeries {
                labels: r.labels[s.labels.clone()]
                    .iter()
                    .map(|&(name, value)| v1::Label {
                        name: name.into(),
                        value: value.into(),
                    })
                    .collect(),
                samples: r.samples[s.samples.clone()].to_vec(),
                exemplars: s.exemplars.clone(),
                histograms: s.histograms.clone(),
            })
            .collect(),
        metadata: r.metadata.clone(),
    }
}

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn request() -> v1::WriteRequest {
    v1::WriteRequest {
        timeseries: vec![
            v1::TimeSeries {
                labels: vec![
                    label("__name__", "up"),
                    label("job", "a"),
                    label("empty", ""),
                ],
                samples: vec![
                    v1::Sample {
                        value: 1.5,
                        timestamp: 1_700_000_000_000,
                    },
                    v1::Sample {
                        value: 0.0,
                        timestamp: -3,
                    },
                ],
                exemplars: vec![v1::Exemplar {
                    labels: vec![label("trace_id", "ab")],
                    value: 2.0,
                    timestamp: 5,
                }],
                histograms: Vec::new(),
            },
            v1::TimeSeries::default(),
            v1::TimeSeries {
                labels: vec![label("__name__", "h"), label("é", "ü")],
                samples: Vec::new(),
                exemplars: Vec::new(),
                histograms: vec![v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(3)),
                    sum: 1.5,
                    schema: 2,
                    positive_spans: vec![v1::BucketSpan {
                        offset: 0,
                        length: 2,
                    }],
                    positive_deltas: vec![1, 1],
                    timestamp: 9,
                    ..Default::default()
                }],
            },
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: 1,
            metric_family_name: "up".into(),
            help: "h".into(),
            unit: "".into(),
        }],
    }
}

/// Both decoders on `bytes`: both refuse, or both accept with the same contents.
fn same(bytes: &[u8]) {
    let theirs = v1::WriteRequest::decode(bytes);
    let ours = decode(bytes);
    match (theirs, ours) {
        (Ok(t), Ok(o)) => assert_eq!(as_prost(&o), t, "{bytes:02x?}"),
        (Err(_), Err(message)) => assert!(!message.is_empty()),
        (t, o) => panic!("prost {t:?}, ours {o:?} for {bytes:02x?}"),
    }
}

#[test]
fn a_request_reads_as_prost_reads_it() {
    let bytes = request().encode_to_vec();
    let ours = decode(&bytes).unwrap();
    assert_eq!(as_prost(&ours), request());
    assert_eq!(ours.labels.len(), 5);
    assert_eq!(ours.series[1].labels, 3..3);
}

// Unknown fields of every wire type are skipped, as prost skips them; fields repeat (last wins
// for a scalar, appended for a repeated one).
#[test]
fn unknown_and_repeated_fields_are_read_as_prost_reads_them() {
    let mut bytes = request().encode_to_vec();
    // WriteRequest field 9: varint, fixed64, length-delimited, fixed32, and an empty group.
    bytes.extend_from_slice(&[0x48, 0x96, 0x01]);
    bytes.extend_from_slice(&[0x49, 1, 2, 3, 4, 5, 6, 7, 8]);
    bytes.extend_from_slice(&[0x4a, 2, 0xff, 0xff]);
    bytes.extend_from_slice(&[0x4d, 1, 2, 3, 4]);
    bytes.extend_from_slice(&[0x4b, 0x4c]);
    // A series whose sample repeats its value (the last wins) and has an unknown field.
    let sample = [
        0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0x09, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x38, 1,
    ];
    let mut series = vec![0x12, sample.len() as u8];
    series.extend_from_slice(&sample);
    bytes.push(0x0a);
    bytes.push(series.len() as u8);
    bytes.extend_from_slice(&series);
    same(&bytes);
    assert_eq!(decode(&bytes).unwrap().samples.last().unwrap().value, 2.0);
}

// Every truncation and every single-byte change of a valid request: refused by both or read alike.
#[test]
fn every_truncation_and_byte_flip_agrees_with_prost() {
    let bytes = request().encode_to_vec();
    for n in 0..bytes.len() {
        same(&bytes[..n]);
    }
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80, 0xff, 0x07] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            same(&b);
        }
    }
}

#[test]
fn invalid_utf8_in_a_label_is_refused_with_a_message() {
    let mut req = request();
    req.timeseries[0].labels[1].name = "XXXX".into();
    let mut bytes = req.encode_to_vec();
    let at = bytes.windows(4).position(|w| w == b"XXXX").unwrap();
    bytes[at..at + 4].copy_from_slice(b"\xff\xfe\xc0\x80");
    same(&bytes);
    let message = decode(&bytes).unwrap_err();
    assert!(message.contains("UTF-8"), "{message}");
}

// A series' labels are checked as one string: a label name cut inside a character that the
// bytes after it (an unknown field of the label) complete is still refused, as prost refuses it;
// labels after a long one (a two-byte length) are checked on their own, and read alike.
#[test]
fn labels_checked_together_are_refused_and_read_as_prost_does() {
    let cut = [0x0a, 0x01, 0xc3, 0x82, 0x01, 0x00, 0x12, 0x01, b'v'];
    let mut series = vec![0x0a, cut.len() as u8];
    series.extend_from_slice(&cut);
    let bytes = [&[0x0a, series.len() as u8][..], &series].concat();
    same(&bytes);
    assert!(decode(&bytes).unwrap_err().contains("UTF-8"));

    let mut req = request();
    let long = "é".repeat(100);
    req.timeseries[0].labels.insert(1, label("long", &long));
    req.timeseries[0].labels.push(label("ü", "ö"));
    let bytes = req.encode_to_vec();
    same(&bytes);
    let ours = decode(&bytes).unwrap();
    assert_eq!(ours.labels[1], ("long", long.as_str()));
    assert_eq!(ours.labels[4], ("ü", "ö"));
}

// Guarantees: a series whose labels the request holds in canonical form (first, short, not
// empty) carries those bytes, which are what `write_v1_labels` writes for the same labels (when
// sorted: the order is the caller's to check); labels after another field or with an empty value
// carry none.
#[test]
fn canonical_labels_are_found_as_the_request_holds_them() {
    let sorted = [("__name__", "up"), ("instance", "a:1"), ("job", "j")];
    let series = |labels: &[(&str, &str)], samples_first: bool| {
        let mut ts = v1::TimeSeries {
            labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: 5,
            }],
            ..Default::default()
        };
        if samples_first {
            // Samples, then labels: prost writes fields in order, so build the bytes by hand.
            let mut body = Vec::new();
            for s in &ts.samples {
                encoding::message::encode(2, s, &mut body);
            }
            for l in &ts.labels {
                encoding::message::encode(1, l, &mut body);
            }
            ts.labels.clear();
            return body;
        }
        ts.encode_to_vec()
    };
    let canonical = |ts_bytes: Vec<u8>| {
        let mut body = Vec::new();
        encoding::bytes::encode(1, &ts_bytes, &mut body);
        let req = decode(&body).expect("valid");
        req.series[0].canonical.to_vec()
    };
    let mut expected = Vec::new();
    write_v1_labels(sorted, &mut expected);
    assert!(!expected.is_empty());
    assert_eq!(canonical(series(&sorted, false)), expected);

    assert!(canonical(series(&sorted, true)).is_empty());
    let empty_value = [("__name__", "up"), ("job", "")];
    assert!(canonical(series(&empty_value, false)).is_empty());
}

// Guarantees: the reader's arrays are sized by what the body can hold: a body of empty series
// (two bytes each) reserves no room for labels or samples, however many series it counts.
#[test]
fn room_is_reserved_only_for_what_the_body_can_hold() {
    let empty = [0x0a, 0x00].repeat(10_000);
    let req = decode(&empty).expect("valid");
    assert_eq!(req.series.len(), 10_000);
    assert_eq!((req.labels.capacity(), req.samples.capacity()), (0, 0));
}
