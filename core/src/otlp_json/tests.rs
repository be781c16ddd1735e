use super::*;

#[test]
fn exemplar_ids_are_hex_and_round_trip() {
    let ex = Exemplar {
        filtered_attributes: vec![],
        time_unix_nano: 1_700_000_000_000_000_123,
        value: Some(exemplar::Value::AsInt(-7)),
        span_id: vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3],
        trace_id: (0u8..16).collect(),
    };
    let json = serde_json::to_string(&ex).unwrap();
    assert!(json.contains(r#""spanId":"deadbeef00010203""#), "{json}");
    assert!(
        json.contains(r#""traceId":"000102030405060708090a0b0c0d0e0f""#),
        "{json}"
    );
    assert!(
        json.contains(r#""timeUnixNano":"1700000000000000123""#),
        "{json}"
    );
    let back: Exemplar = serde_json::from_str(&json).unwrap();
    assert_eq!(back, ex);
}

#[test]
fn exemplar_accepts_numbers_snake_case_and_special_doubles() {
    let back: Exemplar =
        serde_json::from_str(r#"{"time_unix_nano": 5, "as_double": "NaN", "span_id": ""}"#)
            .unwrap();
    assert_eq!(back.time_unix_nano, 5);
    assert!(matches!(back.value, Some(exemplar::Value::AsDouble(v)) if v.is_nan()));
}

#[test]
fn exemplar_rejects_bad_hex_and_bad_numbers() {
    assert!(serde_json::from_str::<Exemplar>(r#"{"spanId":"xyz1"}"#).is_err());
    assert!(serde_json::from_str::<Exemplar>(r#"{"spanId":"abc"}"#).is_err());
    assert!(serde_json::from_str::<Exemplar>(r#"{"asInt":"1.5"}"#).is_err());
}
