//! The CRL-refresh tests' CA and CRL server are the lab's (`lab/src/pki/crl.rs`, compiled into
//! these tests by path in `support/mod.rs`, so the main crate does not depend on the lab); here only
//! the trust directory built from this crate's fixtures.

use std::path::{Path, PathBuf};

// Every test binary compiles the support tree; only crl_refresh.rs uses these.
#[allow(unused_imports)]
pub use super::lab_crl::{CrlServer, TestCa, CA_NAME};

/// A trust directory: the fixture PKI's anchors, intermediates and CRLs plus `ca` as an anchor.
pub fn trust_dir_with(dir: &Path, ca: &TestCa) -> PathBuf {
    super::lab_crl::trust_dir_with(&super::repo().join("fixtures/gateway-pki"), dir, ca)
        .unwrap_or_else(|e| panic!("trust directory under {}: {e}", dir.display()))
}
