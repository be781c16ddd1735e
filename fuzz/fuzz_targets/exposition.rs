//! Feeds arbitrary bytes to the Prometheus text / OpenMetrics parser in both formats: it must
//! never panic, and an error must name a line of the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_receivers::prometheus::parser::{Entry, Format, Parser};

fn run(data: &[u8], format: Format) {
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    let mut parser = Parser::new(data, format);
    loop {
        match parser.next() {
            Ok(Some(Entry::Sample(s))) => {
                let _ = s.name.get();
                for l in s.labels {
                    let _ = (l.name.get(), l.value.get());
                }
                if let Some(e) = s.exemplar {
                    for l in e.labels {
                        let _ = (l.name.get(), l.value.get());
                    }
                }
            }
            Ok(Some(Entry::Help { family, help })) => {
                let _ = (family.get(), help.get());
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                assert!(e.line >= 1 && e.line <= lines, "{e}");
                break;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    run(data, Format::Text);
    run(data, Format::OpenMetrics);
});
