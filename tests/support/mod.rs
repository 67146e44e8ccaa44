//! The one support tree of the integration tests; every test file that needs it says
//! `mod support;` and uses the part it needs:
//!
//! - [`browser`]: headless Chromium through chromedriver, a small HTTP client (console_browser.rs,
//!   insight_browser.rs);
//! - [`crl`]: a CA publishing its CRLs over HTTP on 127.0.0.1 (crl_refresh.rs);
//! - [`gateway`]: a gateway in its own vhost and state directory, a signing sender, readers for
//!   the parties' queues (gateway_*.rs, hostile.rs);
//! - [`hnmsg`]: the Helsenorge.Messaging emulator, an AMQP 1.0 client (hnmsg_amqp10.rs);
//! - [`xsd`]: libxml2's verdicts (`../shared/tools/xsd-oracle`) and the differential comparison
//!   with ours (xsd_*.rs, model_*.rs);
//! - [`model`]: corpus files for the message-model tests (model_*.rs);
//! - [`openssl`]: `openssl cms` encrypting, decrypting and verifying (encryption.rs);
//! - [`postgres`]: a scratch database on the local PostgreSQL, dropped afterwards (gateway_postgres.rs,
//!   store_cli.rs);
//! - [`serve`]: `helsemelding serve` as a child process, its log in a file (reload.rs);
//! - [`store`]: the changes the pipeline commits for one good message (store_crash.rs, and
//!   benches/store_commit.rs, which includes that file by path).
//!
//! A test binary uses only some of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

pub mod browser;
pub mod crl;
pub mod gateway;
pub mod hnmsg;
/// The lab's test CA and CRL server (`helsemelding-lab soak` runs the same), by path: no copy.
#[path = "../../lab/src/pki/crl.rs"]
mod lab_crl;
pub mod model;
pub mod openssl;
pub mod postgres;
pub mod serve;
pub mod store;
pub mod xsd;

use std::path::{Path, PathBuf};

/// The crate's root (fixtures/, config/ are below it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared`: standards, corpus and the libxml2 oracle.
pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// Every `.xml` file under `dir`, recursively, sorted.
pub fn xml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `text` encoded as UTF-16 (big- or little-endian) after `prefix` (a byte-order mark, or none).
pub fn utf16(text: &str, big_endian: bool, prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for u in text.encode_utf16() {
        out.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}
