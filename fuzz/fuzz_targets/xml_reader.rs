//! Fuzz target: the hardened XML reader (`src/xml/`). Any bytes must give events or an
//! `XmlError`, never a panic, and the reader must always make progress (bounded by input size).
#![no_main]

use helsemelding::xml::{check_well_formed, XmlDocument, XmlEvent, XmlLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small depth limit so the fuzzer reaches the depth refusal with short inputs.
    let limits = XmlLimits { max_depth: 16, ..XmlLimits::default() };
    let _ = check_well_formed(data, &limits);
    if let Ok(doc) = XmlDocument::new(data, &limits) {
        let mut r = doc.reader();
        // Every event consumes input, so more events than bytes (+ slack) is a hang.
        for _ in 0..=data.len() + 2 {
            match r.next_event() {
                Ok(XmlEvent::Eof) | Err(_) => return,
                Ok(_) => {}
            }
        }
        panic!("XML reader did not reach Eof within {} events", data.len() + 2);
    }
});
