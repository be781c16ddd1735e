use super::*;

/// An owned exemplar: labels, value, timestamp.
type Ex = (Vec<(String, String)>, f64, Option<i64>);

/// An owned view of an entry, for comparisons.
#[derive(Debug, PartialEq)]
enum E {
    Help(String, String),
    Type(String, MetricType),
    Unit(String, String),
    S {
        name: String,
        labels: Vec<(String, String)>,
        value: f64,
        ts: Option<i64>,
        ex: Option<Ex>,
    },
}

fn own(labels: &[Label<'_>]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|l| (l.name.get().into_owned(), l.value.get().into_owned()))
        .collect()
}

fn parse(body: &str, format: Format) -> Result<Vec<E>, ParseError> {
    match parse_both_ways(body.as_bytes(), format, true) {
        (_, Some(e)) => Err(e),
        (entries, None) => Ok(entries.into_iter().map(|(e, _)| e).collect()),
    }
}

fn text(body: &str) -> Vec<E> {
    parse(body, Format::Text).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

fn om(body: &str) -> Vec<E> {
    parse(body, Format::OpenMetrics).unwrap_or_else(|e| panic!("{body:?}: {e}"))
}

fn text_err(body: &str) -> ParseError {
    match parse(body, Format::Text) {
        Ok(v) => panic!("{body:?} parsed: {v:?}"),
        Err(e) => e,
    }
}

fn om_err(body: &str) -> ParseError {
    match parse(body, Format::OpenMetrics) {
        Ok(v) => panic!("{body:?} parsed: {v:?}"),
        Err(e) => e,
    }
}

fn s(name: &str, labels: &[(&str, &str)], value: f64) -> E {
    E::S {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        value,
        ts: None,
        ex: None,
    }
}

fn ts(e: E, t: i64) -> E {
    match e {
        E::S {
            name,
            labels,
            value,
            ex,
            ..
        } => E::S {
            name,
            labels,
            value,
            ts: Some(t),
            ex,
        },
        other => other,
    }
}

#[test]
fn simple_samples() {
    assert_eq!(
        text("a 1\nb{x=\"y\"} 2.5\n"),
        vec![s("a", &[], 1.0), s("b", &[("x", "y")], 2.5)]
    );
}

#[test]
fn last_line_without_newline_and_blank_lines_in_text() {
    assert_eq!(
        text("\n\na 1\n\n  \nb 2"),
        vec![s("a", &[], 1.0), s("b", &[], 2.0)]
    );
}

#[test]
fn empty_body_is_nothing_in_text() {
    assert_eq!(text(""), vec![]);
}

#[test]
fn metric_names_with_colons_and_underscores() {
    assert_eq!(
        text("_a:b_c:1 3\n:x 4\n"),
        vec![s("_a:b_c:1", &[], 3.0), s(":x", &[], 4.0)]
    );
}

#[test]
fn help_and_type_in_text() {
    assert_eq!(
        text(
            "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 7\n"
        ),
        vec![
            E::Help("go_goroutines".into(), "Number of goroutines.".into()),
            E::Type("go_goroutines".into(), MetricType::Gauge),
            s("go_goroutines", &[], 7.0),
        ]
    );
}

#[test]
fn help_escaping_in_text_keeps_quotes_escaped() {
    assert_eq!(
        text("# HELP m a\\\\b\\nc \\\"q\\\"\n"),
        vec![E::Help("m".into(), "a\\b\nc \\\"q\\\"".into())]
    );
}

#[test]
fn help_escaping_in_openmetrics_includes_quotes() {
    assert_eq!(
        om("# HELP m a\\\\b\\nc \\\"q\\\"\n# EOF\n"),
        vec![E::Help("m".into(), "a\\b\nc \"q\"".into())]
    );
}

#[test]
fn empty_help() {
    assert_eq!(text("# HELP m\n"), vec![E::Help("m".into(), "".into())]);
    assert_eq!(text("# HELP m \n"), vec![E::Help("m".into(), "".into())]);
}

#[test]
fn text_types() {
    let body = "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d summary\n# TYPE e untyped\n";
    assert_eq!(
        text(body),
        vec![
            E::Type("a".into(), MetricType::Counter),
            E::Type("b".into(), MetricType::Gauge),
            E::Type("c".into(), MetricType::Histogram),
            E::Type("d".into(), MetricType::Summary),
            E::Type("e".into(), MetricType::Unknown),
        ]
    );
}

#[test]
fn openmetrics_types() {
    let body = "# TYPE a counter\n# TYPE b gauge\n# TYPE c histogram\n# TYPE d gaugehistogram\n# TYPE e summary\n# TYPE f info\n# TYPE g stateset\n# TYPE h unknown\n# EOF\n";
    assert_eq!(
        om(body),
        vec![
            E::Type("a".into(), MetricType::Counter),
            E::Type("b".into(), MetricType::Gauge),
            E::Type("c".into(), MetricType::Histogram),
            E::Type("d".into(), MetricType::GaugeHistogram),
            E::Type("e".into(), MetricType::Summary),
            E::Type("f".into(), MetricType::Info),
            E::Type("g".into(), MetricType::StateSet),
            E::Type("h".into(), MetricType::Unknown),
        ]
    );
}

#[test]
fn types_of_the_other_format_are_refused() {
    assert!(text_err("# TYPE a info\n").message.contains("metric type"));
    assert!(text_err("# TYPE a unknown\n").message.contains("untyped"));
    assert!(
        om_err("# TYPE a untyped\n# EOF\n")
            .message
            .contains("unknown")
    );
    assert!(text_err("# TYPE a\n").message.contains("metric type"));
    assert!(
        text_err("# TYPE a gauge extra\n")
            .message
            .contains("end of the line")
    );
}

#[test]
fn free_comments_are_skipped_in_text() {
    assert_eq!(
        text("# just a comment\n#\n#HELP not metadata\n# HELPER x\na 1\n"),
        vec![s("a", &[], 1.0)]
    );
}

#[test]
fn free_comments_are_refused_in_openmetrics() {
    let e = om_err("# just a comment\n# EOF\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("HELP, TYPE, UNIT or EOF"), "{e}");
}

#[test]
fn help_without_name_is_an_error() {
    let e = text_err("# HELP\n");
    assert!(e.message.contains("metric family name"), "{e}");
    let e = text_err("# TYPE 1abc gauge\n");
    assert!(e.message.contains("metric family name"), "{e}");
}

#[test]
fn unit_in_openmetrics() {
    assert_eq!(
        om("# TYPE req_seconds histogram\n# UNIT req_seconds seconds\n# EOF\n"),
        vec![
            E::Type("req_seconds".into(), MetricType::Histogram),
            E::Unit("req_seconds".into(), "seconds".into())
        ]
    );
    let e = om_err("# UNIT req_bytes seconds\n# EOF\n");
    assert!(e.message.contains("not a suffix"), "{e}");
    // An empty unit is allowed.
    assert_eq!(
        om("# UNIT a \n# EOF\n"),
        vec![E::Unit("a".into(), "".into())]
    );
}

#[test]
fn unit_is_a_comment_in_text() {
    assert_eq!(text("# UNIT x seconds\n"), vec![]);
}

#[test]
fn label_value_escaping() {
    assert_eq!(
        text("m{a=\"x\\\\y\",b=\"q\\\"q\",c=\"l1\\nl2\",d=\"\\t\"} 1\n"),
        vec![s(
            "m",
            &[("a", "x\\y"), ("b", "q\"q"), ("c", "l1\nl2"), ("d", "\\t")],
            1.0
        )]
    );
}

#[test]
fn label_values_are_borrowed_without_escapes() {
    let body = b"m{a=\"plain\",b=\"esc\\\\\"} 1\n";
    let mut p = Parser::new(body, Format::Text);
    let Some(Entry::Sample(s)) = p.next().unwrap() else {
        panic!()
    };
    assert!(matches!(
        s.labels[0].value.get(),
        std::borrow::Cow::Borrowed("plain")
    ));
    assert!(matches!(
        s.labels[1].value.get(),
        std::borrow::Cow::Owned(_)
    ));
    assert_eq!(s.labels[1].value.raw(), "esc\\\\");
    assert!(s.labels[1].value.eq_str("esc\\"));
}

#[test]
fn utf8_label_values() {
    assert_eq!(
        text("m{city=\"Zürich 東京\"} 1\n"),
        vec![s("m", &[("city", "Zürich 東京")], 1.0)]
    );
}

#[test]
fn spaces_around_labels_and_trailing_comma_in_text() {
    assert_eq!(
        text("m { a = \"1\" , b=\"2\", } 3\n"),
        vec![s("m", &[("a", "1"), ("b", "2")], 3.0)]
    );
    assert_eq!(text("m{} 3\n"), vec![s("m", &[], 3.0)]);
}

#[test]
fn tabs_and_leading_spaces_in_text() {
    assert_eq!(text("  m\t4\t5\n"), vec![ts(s("m", &[], 4.0), 5)]);
    assert_eq!(text("m 4 \r\n"), vec![s("m", &[], 4.0)]);
}

#[test]
fn special_values() {
    let v = text("a +Inf\nb -Inf\nc NaN\nd 1e3\ne -0.5\nf .5\ng inf\nh 0\n");
    let values: Vec<f64> = v
        .iter()
        .map(|e| match e {
            E::S { value, .. } => *value,
            _ => panic!(),
        })
        .collect();
    assert_eq!(values[0], f64::INFINITY);
    assert_eq!(values[1], f64::NEG_INFINITY);
    assert!(values[2].is_nan());
    assert_eq!(&values[3..], &[1000.0, -0.5, 0.5, f64::INFINITY, 0.0]);
}

#[test]
fn bad_values_name_line_and_column() {
    let e = text_err("a 1\nb{x=\"y\"} abc\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("sample value"), "{e}");
    assert!(e.message.contains("column 10"), "{e}");
    assert!(e.message.contains("\"abc\""), "{e}");
    assert!(text_err("a 1_000\n").message.contains("sample value"));
    assert!(text_err("a 0x10\n").message.contains("sample value"));
    let e = text_err("a\n");
    assert!(e.message.contains("sample value"), "{e}");
}

#[test]
fn timestamps_are_milliseconds_in_text() {
    assert_eq!(
        text("a 1 1700000000123\n"),
        vec![ts(s("a", &[], 1.0), 1_700_000_000_123)]
    );
    assert_eq!(text("a 1 -5\n"), vec![ts(s("a", &[], 1.0), -5)]);
    let e = text_err("a 1 1.5\n");
    assert!(e.message.contains("integer milliseconds"), "{e}");
    assert!(text_err("a 1 2 3\n").message.contains("end of the line"));
}

#[test]
fn timestamps_are_seconds_in_openmetrics() {
    assert_eq!(
        om("a 1 1700000000.123\nb 2 17\n# EOF\n"),
        vec![
            ts(s("a", &[], 1.0), 1_700_000_000_123),
            ts(s("b", &[], 2.0), 17_000)
        ]
    );
    assert!(om_err("a 1 NaN\n# EOF\n").message.contains("timestamp"));
    assert!(om_err("a 1 +Inf\n# EOF\n").message.contains("timestamp"));
}

#[test]
fn openmetrics_needs_eof() {
    let e = om_err("a 1\n");
    assert!(e.message.contains("# EOF"), "{e}");
    let e = om_err("");
    assert!(e.message.contains("# EOF"), "{e}");
    assert_eq!(om("# EOF"), vec![]);
    assert_eq!(om("a 1\n# EOF"), vec![s("a", &[], 1.0)]);
}

#[test]
fn nothing_after_eof() {
    let e = om_err("# EOF\na 1\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("follow"), "{e}");
    let e = om_err("# EOF\n\n");
    assert_eq!(e.line, 2);
}

#[test]
fn no_blank_lines_in_openmetrics() {
    let e = om_err("a 1\n\nb 2\n# EOF\n");
    assert_eq!(e.line, 2);
    assert!(e.message.contains("empty line"), "{e}");
}

#[test]
fn exemplars_in_openmetrics() {
    let body = "# TYPE foo histogram\nfoo_bucket{le=\"0.5\"} 3 # {trace_id=\"abc\",span_id=\"de\"} 0.25 1700000000.5\nfoo_bucket{le=\"+Inf\"} 4 # {} 7\nfoo_count 4\nfoo_sum 2.5\n# EOF\n";
    let v = om(body);
    assert_eq!(
        v[1],
        E::S {
            name: "foo_bucket".into(),
            labels: vec![("le".into(), "0.5".into())],
            value: 3.0,
            ts: None,
            ex: Some((
                vec![
                    ("trace_id".into(), "abc".into()),
                    ("span_id".into(), "de".into())
                ],
                0.25,
                Some(1_700_000_000_500)
            )),
        }
    );
    assert_eq!(
        v[2],
        E::S {
            name: "foo_bucket".into(),
            labels: vec![("le".into(), "+Inf".into())],
            value: 4.0,
            ts: None,
            ex: Some((vec![], 7.0, None)),
        }
    );
}

#[test]
fn exemplar_with_sample_timestamp() {
    let v = om("c_total 5 17 # {a=\"b\"} 1 18\n# EOF\n");
    assert_eq!(
        v[0],
        E::S {
            name: "c_total".into(),
            labels: vec![],
            value: 5.0,
            ts: Some(17_000),
            ex: Some((vec![("a".into(), "b".into())], 1.0, Some(18_000))),
        }
    );
}

#[test]
fn bad_exemplars() {
    assert!(
        text_err("c 1 # {a=\"b\"} 1\n")
            .message
            .contains("only allowed in OpenMetrics")
    );
    assert!(om_err("c 1 # 1\n# EOF\n").message.contains("exemplar"));
    assert!(
        om_err("c 1 # {a=\"b\"}\n# EOF\n")
            .message
            .contains("exemplar value")
    );
    assert!(
        om_err("c 1 # {a=\"b\"} x\n# EOF\n")
            .message
            .contains("exemplar value")
    );
    let long = "x".repeat(130);
    let e = om_err(&format!("c 1 # {{a=\"{long}\"}} 1\n# EOF\n"));
    assert!(e.message.contains("128"), "{e}");
    // Exactly 128 characters is fine.
    let ok = "y".repeat(127);
    om(&format!("c 1 # {{a=\"{ok}\"}} 1\n# EOF\n"));
}

#[test]
fn quoted_utf8_metric_names() {
    assert_eq!(
        text("{\"my.metric\",a=\"b\"} 1\n{\"other.one\"} 2\n"),
        vec![s("my.metric", &[("a", "b")], 1.0), s("other.one", &[], 2.0)]
    );
    assert_eq!(
        om(
            "# TYPE \"my.metric\" gauge\n# HELP \"my.metric\" dotted\n{\"my.metric\", \"label.x\"=\"v\"} 1\n# EOF\n"
        ),
        vec![
            E::Type("my.metric".into(), MetricType::Gauge),
            E::Help("my.metric".into(), "dotted".into()),
            s("my.metric", &[("label.x", "v")], 1.0)
        ]
    );
}

#[test]
fn quoted_names_may_hold_escapes() {
    assert_eq!(text("{\"a\\\"b\"} 1\n"), vec![s("a\"b", &[], 1.0)]);
}

#[test]
fn quoted_name_must_come_first_and_once() {
    assert!(
        text_err("{a=\"b\",\"my.metric\"} 1\n")
            .message
            .contains("first item")
    );
    assert!(text_err("m{\"my.metric\"} 1\n").message.contains("twice"));
    assert!(text_err("{\"\"} 1\n").message.contains("empty metric name"));
    assert!(
        text_err("m{\"\"=\"x\"} 1\n")
            .message
            .contains("empty label name")
    );
}

#[test]
fn a_metric_name_is_required() {
    let e = text_err("{label=\"value\"} 1.0\n");
    assert!(e.message.contains("metric name"), "{e}");
    let e = text_err("1234notvali}{ 444\n");
    assert!(e.message.contains("metric name"), "{e}");
}

#[test]
fn compliance_invalid_exposition() {
    let e = text_err("# this is not valid prometheus\n1234notvali}{ 444\n");
    assert_eq!(e.line, 2);
    assert_eq!(
        e.to_string(),
        "line 2: expected a metric name at column 1, found '1'"
    );
}

#[test]
fn repeated_label_names_are_refused() {
    let e = text_err("test{a=\"1\",a=\"1\"} 1.0\n");
    assert!(e.message.contains("\"a\" appears more than once"), "{e}");
    let e = text_err("test{a=\"1\",\"a\"=\"2\"} 1.0\n");
    assert!(e.message.contains("more than once"), "{e}");
}

#[test]
fn empty_label_values_are_kept_by_the_parser() {
    // Dropping them is the scrape's job.
    assert_eq!(text("test{a=\"\"} 1\n"), vec![s("test", &[("a", "")], 1.0)]);
}

#[test]
fn label_syntax_errors() {
    assert!(text_err("m{a} 1\n").message.contains("`=`"));
    assert!(
        text_err("m{a=b} 1\n")
            .message
            .contains("quoted label value")
    );
    assert!(text_err("m{a=\"b\" 1\n").message.contains("`,` or `}`"));
    assert!(text_err("m{a=\"b} 1\n").message.contains("unterminated"));
    assert!(
        text_err("m{a=\"b\\\"} 1\n")
            .message
            .contains("unterminated")
    );
    assert!(text_err("m{1a=\"b\"} 1\n").message.contains("label name"));
    assert!(text_err("m{a=\"b\"}1\n").message.contains("space"));
    assert!(text_err("m{\n").message.contains("label name"));
    assert!(text_err("m{,} 1\n").message.contains("label name"));
}

#[test]
fn newline_inside_a_label_value_is_unterminated() {
    let e = text_err("m{a=\"x\ny\"} 1\n");
    assert_eq!(e.line, 1);
    assert!(e.message.contains("unterminated"), "{e}");
}

#[test]
fn invalid_utf8_is_reported_with_its_line() {
    let body = b"a 1\nb{x=\"\xff\"} 2\n";
    let mut p = Parser::new(body, Format::Text);
    let e = p.next().unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.message.contains("UTF-8"));
    assert!(p.next().unwrap().is_none());
}

#[test]
fn nothing_more_after_an_error() {
    let mut p = Parser::new(b"a x\nb 1\n", Format::Text);
    assert!(p.next().is_err());
    assert_eq!(p.next().unwrap(), None);
}

#[test]
fn histogram_summary_gaugehistogram_info_stateset_openmetrics() {
    let body = "\
# TYPE h histogram
h_bucket{le=\"1\"} 1
h_bucket{le=\"+Inf\"} 2
h_count 2
h_sum 3
h_created 1700000000
# TYPE s summary
s{quantile=\"0.5\"} 2
s_sum 6
s_count 3
# TYPE gh gaugehistogram
gh_bucket{le=\"+Inf\"} 2
gh_gcount 2
gh_gsum 1
# TYPE b info
b_info{version=\"1.2\"} 1
# TYPE st stateset
st{st=\"a\"} 1
st{st=\"b\"} 0
# EOF
";
    let v = om(body);
    assert_eq!(v.len(), 19);
    assert_eq!(v[1], s("h_bucket", &[("le", "1")], 1.0));
    assert_eq!(v[5], s("h_created", &[], 1_700_000_000.0));
    assert_eq!(v[7], s("s", &[("quantile", "0.5")], 2.0));
    assert_eq!(v[15], s("b_info", &[("version", "1.2")], 1.0));
    assert_eq!(v[18], s("st", &[("st", "b")], 0.0));
}

#[test]
fn format_from_content_type() {
    assert_eq!(
        Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::from_content_type("text/plain; version=0.0.4; charset=utf-8"),
        Format::Text
    );
    assert_eq!(Format::from_content_type(""), Format::Text);
}

#[test]
fn name_checks() {
    assert!(is_legacy_metric_name("a:b_c9"));
    assert!(!is_legacy_metric_name("9a"));
    assert!(!is_legacy_metric_name("a.b"));
    assert!(!is_legacy_metric_name(""));
    assert!(is_legacy_label_name("_a9"));
    assert!(!is_legacy_label_name("a:b"));
}

#[test]
fn buffers_are_reused() {
    let mut buffers = Buffers::default();
    for body in ["a{x=\"1\",y=\"2\"} 1\n", "b{z=\"3\"} 2\n"] {
        let owned = body.to_string();
        let mut p = Parser::with_buffers(owned.as_bytes(), Format::Text, buffers);
        let Some(Entry::Sample(s)) = p.next().unwrap() else {
            panic!()
        };
        assert!(!s.labels.is_empty());
        buffers = p.into_buffers();
        // The allocation is kept for the next scrape.
        assert!(buffers.labels.capacity() >= 1);
    }
}

/// A realistic node_exporter / Go client exposition.
const GO_EXPOSITION: &str = "\
# HELP go_gc_duration_seconds A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile=\"0\"} 2.3762e-05
go_gc_duration_seconds{quantile=\"0.25\"} 3.4011e-05
go_gc_duration_seconds{quantile=\"1\"} 0.000167593
go_gc_duration_seconds_sum 0.001336262
go_gc_duration_seconds_count 26
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 8
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 14532.41
node_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 312.2
# HELP prometheus_http_request_duration_seconds Histogram of latencies for HTTP requests.
# TYPE prometheus_http_request_duration_seconds histogram
prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"0.1\"} 2
prometheus_http_request_duration_seconds_bucket{handler=\"/\",le=\"+Inf\"} 2
prometheus_http_request_duration_seconds_sum{handler=\"/\"} 3.4e-05
prometheus_http_request_duration_seconds_count{handler=\"/\"} 2
# HELP node_exporter_build_info A metric with a constant '1' value labeled by version.
# TYPE node_exporter_build_info gauge
node_exporter_build_info{branch=\"debian/sid\",goversion=\"go1.24\",revision=\"1.9.1\",version=\"1.9.1\"} 1
";

#[test]
fn realistic_exposition() {
    let v = text(GO_EXPOSITION);
    let samples = v.iter().filter(|e| matches!(e, E::S { .. })).count();
    assert_eq!(samples, 13);
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs the parser over a body to the end or the first error; must not panic, and an error must
/// name a line inside the body.
fn exercise(body: &[u8], format: Format) {
    let mut p = Parser::new(body, format);
    let lines = body.iter().filter(|b| **b == b'\n').count() + 1;
    let mut n = 0;
    loop {
        match p.next() {
            Ok(Some(Entry::Sample(s))) => {
                for l in s.labels {
                    let _ = l.value.get();
                    let _ = l.name.get();
                }
                let _ = s.name.get();
            }
            Ok(Some(Entry::Help { help, .. })) => {
                let _ = help.get();
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{e} (lines {lines})");
                break;
            }
        }
        n += 1;
        assert!(n <= body.len() + 1, "more entries than bytes");
    }
}

#[test]
fn random_mutations_never_panic() {
    let om_body = format!(
        "{}# TYPE foo histogram\n# UNIT foo seconds\nfoo_bucket{{le=\"1\"}} 1 # {{trace_id=\"a\\\"b\"}} 0.5 12.5\n{{\"my.metric\",\"a.b\"=\"x\\\\y\\n\"}} NaN 17\n# EOF\n",
        GO_EXPOSITION
    );
    let seeds: [&[u8]; 2] = [GO_EXPOSITION.as_bytes(), om_body.as_bytes()];
    let alphabet = b"{}\"\\=, \t\n#+-.eE0123456789aInfNa_:\xff\xc3";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..4000 {
        let seed = seeds[round % 2];
        let mut body = seed.to_vec();
        let edits = 1 + rng.below(8);
        for _ in 0..edits {
            let at = rng.below(body.len() + 1);
            match rng.below(4) {
                0 if at < body.len() => {
                    body[at] = alphabet[rng.below(alphabet.len())];
                }
                1 => body.insert(at, alphabet[rng.below(alphabet.len())]),
                2 if at < body.len() => {
                    body.remove(at);
                }
                _ => {
                    let end = (at + rng.below(40)).min(body.len());
                    body.truncate(end.max(at.min(body.len())));
                }
            }
        }
        exercise(&body, Format::Text);
        exercise(&body, Format::OpenMetrics);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let len = rng.below(64);
        let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        exercise(&body, Format::Text);
        exercise(&body, Format::OpenMetrics);
    }
}

#[test]
fn short_decimals_take_the_short_way_to_the_same_float() {
    let mut inputs: Vec<String> = [
        "0",
        "-0",
        "007",
        "-12",
        "0.005",
        "-0.0",
        "2.5",
        "0.1",
        "0.3",
        "123456789.012345",
        "1.00000000000000",
        "999999999999999",
        "-999999999999999",
        "1000000000000000",
        "9007199254740993",
        "18446744073709551616",
        "0.1000000000000001",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for digits in 1..=17u32 {
        for _ in 0..200 {
            let n = (next() % 10u64.pow(digits)).to_string();
            let at = (next() % (n.len() as u64 + 1)) as usize;
            inputs.push(format!("{}.{}", &n[..at], &n[at..]));
            inputs.push(n);
        }
    }
    for s in &inputs {
        let Ok(expected) = s.parse::<f64>() else {
            assert_eq!(parse_float(s), None, "{s:?}");
            continue;
        };
        let got = parse_float(s).unwrap();
        assert_eq!(got.to_bits(), expected.to_bits(), "{s}");
    }
    for bad in ["", "-", "--1", "1-", "12a", "1_000", "0x10", "1..2"] {
        assert_eq!(parse_float(bad), None, "{bad:?}");
    }
    // The short way is the one taken for counts and short decimals, and only for them.
    for s in [
        "0",
        "3",
        "-12",
        "0.005",
        "2.5",
        "123456789.012345",
        "999999999999999",
    ] {
        assert_eq!(text::short_decimal(s.as_bytes()), s.parse().ok(), "{s}");
    }
    for s in [
        "1e3",
        "+5",
        ".5",
        "5.",
        "1000000000000000",
        "0.1000000000000001",
        "NaN",
    ] {
        assert_eq!(text::short_decimal(s.as_bytes()), None, "{s}");
    }
    assert_eq!(parse_float("+5"), Some(5.0));
    assert_eq!(parse_float("1e3"), Some(1000.0));
    assert_eq!(parse_float(".5"), ".5".parse().ok());
    assert_eq!(parse_float("5."), "5.".parse().ok());
}

/// Every entry of a body (or the first error), with the `changed` the parser gave each sample.
fn parse_both_ways(
    body: &[u8],
    format: Format,
    reuse: bool,
) -> (Vec<(E, Option<usize>)>, Option<ParseError>) {
    let p = Parser::new(body, format);
    let mut p = if reuse { p } else { p.without_reuse() };
    let mut out = Vec::new();
    loop {
        let e = match p.next() {
            Ok(Some(e)) => e,
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e)),
        };
        out.push(match e {
            Entry::Help { family, help } => (E::Help(family.get().into(), help.get().into()), None),
            Entry::Type { family, kind } => (E::Type(family.get().into(), kind), None),
            Entry::Unit { family, unit } => (E::Unit(family.get().into(), unit.get().into()), None),
            Entry::Sample(s) => (
                E::S {
                    name: s.name.get().into(),
                    labels: own(s.labels),
                    value: s.value,
                    ts: s.timestamp_ms,
                    ex: s.exemplar.map(|e| (own(e.labels), e.value, e.timestamp_ms)),
                },
                s.changed,
            ),
        });
    }
}

/// A body of sample lines that mostly differ from the line before in one label value (as a
/// histogram's buckets do), sometimes in the name, a label name, the spacing or anything else.
fn similar_lines(rng: &mut Rng) -> String {
    const NAMES: [&str; 5] = ["m", "m_bucket", "m_sum", "x:y", "m_bucket_x"];
    const KEYS: [&str; 6] = ["le", "a", "b", "quantile", "zz", "\"q.r\""];
    const VALUES: [&str; 14] = [
        "", "1", "12", "0.005", "+Inf", "x\\\"y", "a\\\\b", "\\n", "é", "ü12", "a b", "0.0", "1\\",
        "12\\\"",
    ];
    let mut name = NAMES[0].to_string();
    let mut labels: Vec<(String, String)> = vec![("le".into(), "1".into())];
    let mut quoted_name = false;
    let (mut sep, mut close, mut space) = (",", "}", "");
    let mut body = String::new();
    for _ in 0..(2 + rng.below(12)) {
        match rng.below(11) {
            0..=5 if !labels.is_empty() => {
                let k = rng.below(labels.len());
                labels[k].1 = VALUES[rng.below(VALUES.len())].into();
            }
            6 => name = NAMES[rng.below(NAMES.len())].into(),
            7 => quoted_name = !quoted_name,
            8 => {
                labels = (0..rng.below(4))
                    .map(|i| {
                        let key = KEYS[(i + rng.below(KEYS.len())) % KEYS.len()];
                        (key.to_string(), VALUES[rng.below(VALUES.len())].to_string())
                    })
                    .collect();
            }
            9 => {
                sep = [",", ", ", " ,"][rng.below(3)];
                close = ["}", ",}", " }"][rng.below(3)];
                space = ["", " "][rng.below(2)];
            }
            _ => body.push_str(["# TYPE m histogram\n", "\n", "# free\n"][rng.below(3)]),
        }
        let mut items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        if quoted_name {
            items.insert(0, format!("\"{name}\""));
        } else {
            body.push_str(&name);
            body.push_str(space);
        }
        if !items.is_empty() || rng.below(2) == 0 {
            body.push('{');
            body.push_str(&items.join(sep));
            body.push_str(close);
        }
        body.push_str([" 1", " 2.5 17", " NaN", " 3 # {t=\"1\"} 0.5", "  7 "][rng.below(5)]);
        body.push('\n');
    }
    body
}

#[test]
fn labels_read_from_the_previous_line_are_what_a_fresh_read_gives() {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let alphabet = b"{}\"\\=, \n#0123456789le_a\xc3";
    let (mut reused, mut samples) = (0, 0);
    for round in 0..6000 {
        let mut body = similar_lines(&mut rng).into_bytes();
        if round % 2 == 1 {
            for _ in 0..(1 + rng.below(3)) {
                let at = rng.below(body.len());
                match rng.below(3) {
                    0 => body[at] = alphabet[rng.below(alphabet.len())],
                    1 => body.insert(at, alphabet[rng.below(alphabet.len())]),
                    _ => {
                        body.remove(at);
                    }
                }
            }
        }
        for format in [Format::Text, Format::OpenMetrics] {
            let mut body = body.clone();
            if format == Format::OpenMetrics {
                body.extend_from_slice(b"# EOF\n");
            }
            let (fresh, fresh_err) = parse_both_ways(&body, format, false);
            let (got, err) = parse_both_ways(&body, format, true);
            let shown = String::from_utf8_lossy(&body);
            assert_eq!(err, fresh_err, "{format:?} {shown}");
            let entries = |v: &[(E, Option<usize>)]| {
                v.iter().map(|(e, _)| format!("{e:?}")).collect::<Vec<_>>()
            };
            assert_eq!(entries(&got), entries(&fresh), "{format:?} {shown}");
            assert!(fresh.iter().all(|(_, c)| c.is_none()));
            // `changed` tells the truth: the previous sample differs in that label value only.
            let mut previous: Option<&E> = None;
            for (e, changed) in &got {
                let E::S { name, labels, .. } = e else {
                    continue;
                };
                samples += 1;
                if let Some(k) = changed {
                    reused += 1;
                    let Some(E::S {
                        name: pn,
                        labels: pl,
                        ..
                    }) = previous
                    else {
                        panic!("changed without a previous sample: {shown}");
                    };
                    assert_eq!(name, pn, "{shown}");
                    assert_eq!(labels.len(), pl.len(), "{shown}");
                    for (j, (l, p)) in labels.iter().zip(pl).enumerate() {
                        assert_eq!(l.0, p.0, "{shown}");
                        if j != *k {
                            assert_eq!(l.1, p.1, "{shown}");
                        }
                    }
                }
                previous = Some(e);
            }
        }
    }
    // The short way was taken often enough to be tested.
    assert!(reused * 5 > samples, "{reused} of {samples}");
}

#[test]
fn lines_that_differ_in_one_value_are_read_the_short_way() {
    let body = "\
h_bucket{le=\"0.005\",method=\"GET\",route=\"/a\"} 1
h_bucket{le=\"0.01\",method=\"GET\",route=\"/a\"} 2
h_bucket{le=\"+Inf\",method=\"GET\",route=\"/a\"} 2
h_sum{method=\"GET\",route=\"/a\"} 3
c{a=\"1\",b=\"x\"} 1
c{a=\"12\",b=\"x\"} 1
c{a=\"12\",b=\"yy\"} 1
c{a=\"1\",b=\"yy\"} 1
c{a=\"1\",b=\"z\\\"\"} 1
";
    let (got, err) = parse_both_ways(body.as_bytes(), Format::Text, true);
    assert_eq!(err, None);
    let likes: Vec<Option<usize>> = got.iter().map(|(_, like)| *like).collect();
    assert_eq!(
        likes,
        [
            None,
            Some(0),
            Some(0),
            None,
            None,
            Some(0),
            Some(1),
            Some(0),
            None
        ]
    );
    let (fresh, _) = parse_both_ways(body.as_bytes(), Format::Text, false);
    let entries =
        |v: &[(E, Option<usize>)]| format!("{:?}", v.iter().map(|(e, _)| e).collect::<Vec<_>>());
    assert_eq!(entries(&got), entries(&fresh));
}
