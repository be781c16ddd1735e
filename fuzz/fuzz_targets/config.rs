//! Feeds arbitrary text to the config loader (`sluice_core::config::load_str`) with the `sluice`
//! binary's own registry of components (`src/registry.rs`, included as it is), so that every
//! component's config parser is reached. It must never panic, and every error must name a
//! position inside the text (or none, for errors about the file as a whole).
#![no_main]

#[path = "../../src/registry.rs"]
mod registry;

use libfuzzer_sys::fuzz_target;
use sluice_core::config::{LoadContext, load_str};
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = LoadContext {
        base_dir: std::path::PathBuf::from("/nonexistent"),
    };
    if let Err(errors) = load_str(text, Arc::from("fuzz.yaml"), ctx, &registry::Components) {
        // Lines, counting every character YAML may take for a line break (an upper bound).
        let breaks = text
            .chars()
            .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'));
        let lines = breaks.count() as u64 + 1;
        for e in &errors.0 {
            assert!(!e.message.is_empty(), "{e}");
            assert!(
                u64::from(e.pos.line) <= lines,
                "{e}: line {} of {lines}",
                e.pos.line
            );
            let _ = e.to_string();
        }
    }
});
