//! Feeds arbitrary bytes to the Prometheus text / OpenMetrics parser in both formats: it must
//! never panic, an error must name a line of the input, and reading a line's labels from the
//! previous line (the parser's short way) must give what reading every line afresh gives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_receivers::prometheus::parser::{Entry, Format, Parser};

/// Every entry as text, then the error if there was one.
fn run(data: &[u8], format: Format, reuse: bool) -> Vec<String> {
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    let parser = Parser::new(data, format);
    let mut parser = if reuse {
        parser
    } else {
        parser.without_reuse()
    };
    let mut out = Vec::new();
    loop {
        match parser.next() {
            Ok(Some(Entry::Sample(s))) => {
                let mut line = format!("{} {} {:?}", s.name, s.value, s.timestamp_ms);
                for l in s.labels {
                    line.push_str(&format!(" {:?}={:?}", l.name.get(), l.value.get()));
                }
                if let Some(e) = s.exemplar {
                    line.push_str(&format!(" # {} {:?}", e.value, e.timestamp_ms));
                    for l in e.labels {
                        line.push_str(&format!(" #{:?}={:?}", l.name.get(), l.value.get()));
                    }
                }
                out.push(line);
            }
            Ok(Some(Entry::Help { family, help })) => {
                out.push(format!("help {family} {help}"));
            }
            Ok(Some(e)) => out.push(format!("{e:?}")),
            Ok(None) => break,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{e}");
                out.push(e.to_string());
                break;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    for format in [Format::Text, Format::OpenMetrics] {
        assert_eq!(run(data, format, true), run(data, format, false));
    }
});
