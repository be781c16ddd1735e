//! How fast Sluice's own exposition parser reads a realistic scrape (Go runtime gauges and
//! counters, HTTP histograms with method/status/route labels), in samples per second, text 0.0.4
//! and OpenMetrics, with the parser's buffers reused across scrapes as the scrape loop does.
//!
//! `cargo bench -p sluice-bench --bench exposition_parse`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_receivers::prometheus::parser::{Entry, Format, Parser};
use std::fmt::Write;
use std::hint::black_box;

/// An exposition of about 2,000 samples; returns the body and its sample count.
fn exposition(openmetrics: bool) -> (String, u64) {
    let mut b = String::new();
    let mut n = 0;
    for i in 0..40 {
        let _ = writeln!(
            b,
            "# HELP go_memstats_{i}_bytes Bytes in class {i}.\n# TYPE go_memstats_{i}_bytes gauge"
        );
        let _ = writeln!(b, "go_memstats_{i}_bytes {}", 1_234_567.0 * i as f64);
        n += 1;
    }
    let counter = if openmetrics {
        "http_requests"
    } else {
        "http_requests_total"
    };
    let _ = writeln!(b, "# HELP {counter} Requests.\n# TYPE {counter} counter");
    for route in ["/", "/api/v1/pay", "/api/v1/refund", "/healthz", "/login"] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            for status in ["200", "201", "400", "404", "500"] {
                let _ = writeln!(
                    b,
                    "http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} 1027"
                );
                n += 1;
            }
        }
    }
    let _ = writeln!(
        b,
        "# HELP http_request_duration_seconds Latency.\n# TYPE http_request_duration_seconds histogram"
    );
    for route in ["/", "/api/v1/pay", "/api/v1/refund", "/healthz", "/login"] {
        for method in ["GET", "POST", "PUT", "DELETE"] {
            for status in ["200", "500"] {
                let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{status}\"");
                for (k, le) in [
                    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                    "+Inf",
                ]
                .iter()
                .enumerate()
                {
                    let _ = writeln!(
                        b,
                        "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                        k * 3
                    );
                    n += 1;
                }
                let _ = writeln!(
                    b,
                    "http_request_duration_seconds_sum{{{labels}}} 53.25\nhttp_request_duration_seconds_count{{{labels}}} 33"
                );
                n += 2;
            }
        }
    }
    while n < 2000 {
        let _ = writeln!(b, "process_open_fds{{fd_class=\"c{n}\"}} {n}");
        n += 1;
    }
    if openmetrics {
        b.push_str("# EOF\n");
    }
    (b, n)
}

fn parse_all(body: &[u8], format: Format) -> u64 {
    let mut p = Parser::new(body, format);
    let mut samples = 0;
    while let Some(e) = p.next().expect("the bench exposition is valid") {
        if let Entry::Sample(s) = e {
            black_box(s.value);
            samples += 1;
        }
    }
    samples
}

fn bench(c: &mut Criterion) {
    for (name, format, om) in [
        ("text_0_0_4", Format::Text, false),
        ("openmetrics_1_0", Format::OpenMetrics, true),
    ] {
        let (body, n) = exposition(om);
        assert_eq!(parse_all(body.as_bytes(), format), n);
        let mut g = c.benchmark_group("exposition_parse");
        g.throughput(Throughput::Elements(n));
        g.bench_function(name, |b| {
            b.iter(|| parse_all(black_box(body.as_bytes()), format))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
