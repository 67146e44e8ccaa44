//! Fuzz target: the CMS SignedData parser — `cms::verify` against the test trust store in
//! `fixtures/pki`, and `cms::unverified_content` (what the gateway reads to answer S01–S03).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use helsemelding::cms::{self, TrustStore};
use libfuzzer_sys::fuzz_target;

fn trust() -> &'static TrustStore {
    static T: OnceLock<TrustStore> = OnceLock::new();
    T.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/pki");
        TrustStore::load(&dir).unwrap_or_else(|e| panic!("trust store {}: {e}", dir.display()))
    })
}

fuzz_target!(|data: &[u8]| {
    // A fixed time inside the test PKI's validity, so runs are reproducible.
    let now = time::macros::datetime!(2026-11-23 12:00 UTC);
    let _ = cms::verify(data, trust(), now);
    let _ = cms::unverified_content(data);
});
