//! `helsemelding-lab dev-pki`, run as a developer would: the trust directory it writes loads, its
//! good signers verify, and each bad certificate fails with the code it was made for
//! (moved from the main crate's tests/cms.rs with the generator).

use std::process::Command;

use helsemelding::cms::{self, verify, Signer, TrustStore, VerifyError};
use helsemelding::codes::ErrorCode;
use helsemelding::ids::Timestamp;
use time::macros::datetime;

const NOW: Timestamp = datetime!(2026-06-01 12:00 UTC);

fn code(r: &Result<cms::Verified, VerifyError>) -> Option<ErrorCode> {
    r.as_ref().err().and_then(VerifyError::apprec_code)
}

#[test]
fn dev_pki_generates_a_working_trust_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_helsemelding-lab"))
        .args([
            "dev-pki",
            "--parties",
            "81299",
            "--gateway-her",
            "90001",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed
            .lines()
            .any(|f| f.ends_with("parties/81299-sign.key")),
        "{listed}"
    );
    let out = dir.path();
    let t = TrustStore::load(out).expect("generated trust dir loads");
    let content = b"<MsgHead>synthetic test content</MsgHead>".to_vec();
    let sign = |rel: &str| {
        Signer::from_pem_files(
            &out.join(format!("{rel}.key")),
            &out.join(format!("{rel}.pem")),
        )
        .expect("signer")
        .sign(&content, NOW)
        .expect("sign")
    };
    let v = verify(&sign("parties/81299-sign"), &t, NOW).expect("party verifies");
    assert!(v.signer.subject.contains("HER 81299"));
    verify(&sign("parties/90001-sign"), &t, NOW).expect("gateway verifies");
    verify(&sign("legacy/seid1-rsa2048-sign"), &t, NOW).expect("SEID 1 signer verifies");
    for (bad, expected) in [
        ("bad/revoked-sign", ErrorCode::S03),
        ("bad/expired-sign", ErrorCode::S02),
        ("bad/not-yet-valid-sign", ErrorCode::S02),
        ("bad/encryption-only-sign", ErrorCode::S02),
        ("bad/untrusted-sign", ErrorCode::S02),
    ] {
        assert_eq!(code(&verify(&sign(bad), &t, NOW)), Some(expected), "{bad}");
    }
    let stale = TrustStore::load(&out.join("variants/stale-crl")).expect("stale loads");
    assert!(verify(&sign("parties/81299-sign"), &stale, NOW)
        .expect_err("stale")
        .is_retryable());
}

#[test]
fn dev_pki_says_why_it_cannot_write() {
    let out = Command::new(env!("CARGO_BIN_EXE_helsemelding-lab"))
        .args(["dev-pki", "--out", "/proc/helsemelding-no-such-place"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("helsemelding-lab dev-pki: cannot write /proc/helsemelding-no-such-place"),
        "{err}"
    );
}
