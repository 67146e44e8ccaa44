//! Fuzz target: the streaming schema validator (`Schemas::validate`) with the official schemas
//! from `../shared/standards/xsd`, compiled once.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use helsemelding::xml::XmlLimits;
use helsemelding::xsd::Schemas;
use libfuzzer_sys::fuzz_target;

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        // The fuzz crate lives in <repo>/fuzz; the shared folder is a sibling of the repository.
        let dir = std::env::var_os("HELSEMELDING_XSD").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/standards/xsd")
        });
        Schemas::load(&dir).unwrap_or_else(|e| panic!("schemas from {}: {e}", dir.display()))
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = schemas().validate(data, &XmlLimits::default());
});
