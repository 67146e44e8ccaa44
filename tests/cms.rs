//! Signed envelopes end to end, against the committed test PKI (`fixtures/pki`, see its README)
//! and the openssl CLI in both directions.

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding::cms::{
    self, certificate_fingerprint, verify, SignError, Signer, TrustError, TrustStore, VerifyError,
};
use helsemelding::codes::ErrorCode;
use helsemelding::ids::Timestamp;
use proptest::prelude::*;
use time::macros::datetime;

const NOW: Timestamp = datetime!(2026-06-01 12:00 UTC);

fn pki() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki")
}

fn trust() -> TrustStore {
    TrustStore::load(&pki()).expect("committed trust directory loads")
}

/// About 4 KB of synthetic MsgHead-like content.
fn content() -> Vec<u8> {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\">");
    while xml.len() < 4000 {
        xml.push_str(
            "<Note>Syntetisk testpasient Ola Testesen, fnr 00000000000 (ikke ekte)</Note>",
        );
    }
    xml.push_str("</MsgHead>");
    xml.into_bytes()
}

fn signer(rel: &str) -> Signer {
    let p = pki();
    Signer::from_pem_files(&p.join(format!("{rel}.key")), &p.join(format!("{rel}.pem")))
        .expect("fixture signer loads")
}

fn signed_by(rel: &str) -> Vec<u8> {
    signer(rel).sign(&content(), NOW).expect("signs")
}

/// Runs `openssl cms -sign` with the fixture `rel` and extra arguments; returns the DER.
fn openssl_sign(rel: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.xml");
    let out = dir.path().join("out.p7");
    std::fs::write(&input, content()).expect("write input");
    let p = pki();
    let status = Command::new("openssl")
        .args(["cms", "-sign", "-binary", "-outform", "DER"])
        .arg("-signer")
        .arg(p.join(format!("{rel}.pem")))
        .arg("-inkey")
        .arg(p.join(format!("{rel}.key")))
        .arg("-in")
        .arg(&input)
        .arg("-out")
        .arg(&out)
        .args(extra)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl cms -sign {rel} {extra:?} failed");
    std::fs::read(out).expect("openssl output")
}

fn code(r: &Result<cms::Verified, VerifyError>) -> Option<ErrorCode> {
    r.as_ref().err().and_then(VerifyError::apprec_code)
}

#[test]
fn own_signature_verifies_with_identity_and_signing_time() {
    let v = verify(&signed_by("parties/81234-sign"), &trust(), NOW).expect("verifies");
    assert_eq!(v.content, content());
    assert_eq!(v.signing_time, Some(NOW));
    // The content digest verification computed, handed on so the gateway does not hash again.
    assert_eq!(
        v.content_sha256,
        Some(helsemelding::store::content_sha256(&content()))
    );
    assert_eq!(v.signer.organisation_number.as_deref(), Some("999999990"));
    assert!(
        v.signer
            .subject
            .contains("CN=Testlegekontoret AS (HER 81234)"),
        "{}",
        v.signer.subject
    );
    let pem = std::fs::read(pki().join("parties/81234-sign.pem")).expect("pem");
    assert_eq!(
        v.signer.fingerprint_sha256,
        certificate_fingerprint(&pem).expect("fingerprint")
    );
    // The gateway's own signer works too.
    let v = verify(&signed_by("parties/90000-sign"), &trust(), NOW).expect("gateway verifies");
    assert_eq!(v.signer.organisation_number.as_deref(), Some("999999000"));
    // Debug never prints the content.
    assert!(!format!("{v:?}").contains("Testesen"));
}

#[test]
fn fingerprint_agrees_with_openssl_for_pem_and_der() {
    let path = pki().join("parties/81235-sign.pem");
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&path)
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let expected: String = text
        .split('=')
        .nth(1)
        .expect("fingerprint line")
        .trim()
        .replace(':', "")
        .to_lowercase();
    let pem = std::fs::read(&path).expect("pem");
    assert_eq!(certificate_fingerprint(&pem).expect("pem"), expected);
    let der = Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&path)
        .output()
        .expect("openssl")
        .stdout;
    assert_eq!(certificate_fingerprint(&der).expect("der"), expected);
    let two = [pem.clone(), pem].concat();
    assert!(certificate_fingerprint(&two).is_err());
}

#[test]
fn openssl_verifies_what_we_sign_including_crls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pki();
    let envelope = dir.path().join("env.p7");
    std::fs::write(&envelope, signed_by("parties/81235-sign")).expect("write");
    // CA file: root, intermediate and both CRLs in PEM, so -crl_check_all can run.
    let mut ca = std::fs::read(p.join("anchors/helsemelding-test-root-ca.pem")).expect("root");
    ca.extend(
        std::fs::read(p.join("intermediates/helsemelding-test-intermediate-ca.pem"))
            .expect("inter"),
    );
    ca.extend(std::fs::read(p.join("crls/helsemelding-test-root-ca.crl")).expect("root crl"));
    let inter_crl = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(p.join("crls/helsemelding-test-intermediate-ca.crl"))
        .output()
        .expect("openssl crl");
    ca.extend(inter_crl.stdout);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).expect("write ca");
    let out = dir.path().join("out.xml");
    let status = Command::new("openssl")
        .args([
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-crl_check_all",
            "-in",
        ])
        .arg(&envelope)
        .arg("-CAfile")
        .arg(&ca_file)
        .arg("-out")
        .arg(&out)
        .status()
        .expect("openssl runs");
    assert!(
        status.success(),
        "openssl cms -verify rejected our SignedData"
    );
    assert_eq!(std::fs::read(out).expect("out"), content());
}

#[test]
fn we_verify_what_openssl_signs() {
    let t = trust();
    for (rel, extra) in [
        ("parties/81234-sign", &["-nodetach"][..]),
        (
            "parties/81234-sign",
            &["-nodetach", "-keyopt", "rsa_padding_mode:pss"][..],
        ),
        (
            "parties/81234-sign",
            &[
                "-nodetach",
                "-keyopt",
                "rsa_padding_mode:pss",
                "-keyopt",
                "rsa_pss_saltlen:digest",
                "-md",
                "sha512",
            ][..],
        ),
        ("parties/81235-sign", &["-nodetach", "-md", "sha384"][..]),
        ("parties/81235-sign", &["-nodetach", "-noattr"][..]),
        (
            "parties/81235-sign",
            &["-nodetach", "-noattr", "-keyopt", "rsa_padding_mode:pss"][..],
        ),
        ("parties/81235-sign", &["-nodetach", "-keyid"][..]),
        (
            "legacy/seid1-rsa2048-sign",
            &["-nodetach", "-md", "sha512"][..],
        ),
    ] {
        let v = verify(&openssl_sign(rel, extra), &t, NOW)
            .unwrap_or_else(|e| panic!("{rel} {extra:?}: {e}"));
        assert_eq!(v.content, content(), "{rel} {extra:?}");
        assert_eq!(
            v.signing_time.is_none(),
            extra.contains(&"-noattr"),
            "{rel} {extra:?}"
        );
    }
    // SEID 1: the organisation number comes from the subject serialNumber.
    let v = verify(
        &openssl_sign("legacy/seid1-rsa2048-sign", &["-nodetach"]),
        &t,
        NOW,
    )
    .expect("seid1");
    assert_eq!(v.signer.organisation_number.as_deref(), Some("999999901"));
}

#[test]
fn certificate_faults_are_s02_with_context() {
    let t = trust();
    let r = verify(&signed_by("bad/expired-sign"), &t, NOW);
    assert!(
        matches!(&r, Err(VerifyError::CertificateExpired { subject, not_after, checked_at })
        if subject.contains("Expired") && not_after.year() == 2019 && *checked_at == NOW),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));
    assert!(r
        .unwrap_err()
        .to_string()
        .contains("expired at 2019-12-31T23:59:59Z (checked at 2026-06-01T12:00:00Z)"));

    let r = verify(&signed_by("bad/not-yet-valid-sign"), &t, NOW);
    assert!(
        matches!(&r, Err(VerifyError::CertificateNotYetValid { not_before, .. }) if not_before.year() == 2090),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));

    let r = verify(&signed_by("bad/encryption-only-sign"), &t, NOW);
    assert!(
        matches!(&r, Err(VerifyError::WrongKeyUsage { key_usage, .. }) if key_usage.contains("Key Encipherment")),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));

    let r = verify(&signed_by("bad/untrusted-sign"), &t, NOW);
    assert!(
        matches!(&r, Err(VerifyError::Untrusted { issuer, .. }) if issuer.contains("Untrusted Test CA")),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));

    let r = verify(
        &openssl_sign("bad/weak-rsa1024-sign", &["-nodetach"]),
        &t,
        NOW,
    );
    assert!(
        matches!(&r, Err(VerifyError::KeyNotAcceptable { problem, .. }) if problem.contains("RSA-1024")),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));
}

#[test]
fn good_certificate_outside_its_validity_is_s02_even_after_a_cached_success() {
    let t = trust();
    let env = signed_by("parties/81234-sign");
    verify(&env, &t, NOW).expect("ok now");
    verify(&env, &t, NOW).expect("ok again (cached)");
    let r = verify(&env, &t, datetime!(2100-06-01 00:00 UTC));
    assert!(
        matches!(r, Err(VerifyError::CertificateExpired { .. })),
        "{r:?}"
    );
    let r = verify(&env, &t, datetime!(2023-06-01 00:00 UTC));
    assert!(
        matches!(r, Err(VerifyError::CertificateNotYetValid { .. })),
        "{r:?}"
    );
    verify(&env, &t, NOW).expect("ok once more");
}

#[test]
fn revoked_is_s03() {
    let r = verify(&signed_by("bad/revoked-sign"), &trust(), NOW);
    assert!(
        matches!(&r, Err(VerifyError::Revoked { serial, .. }) if serial == "02:03"),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S03));
    assert!(!r.unwrap_err().is_retryable());
}

#[test]
fn stale_or_missing_crl_is_retryable_without_apprec() {
    let env = signed_by("parties/81234-sign");
    let stale = TrustStore::load(&pki().join("variants/stale-crl")).expect("stale variant loads");
    let e = verify(&env, &stale, NOW).expect_err("stale CRL");
    assert!(
        matches!(&e, VerifyError::RevocationStale { issuer, next_update, .. }
        if issuer.contains("Intermediate") && next_update.year() == 2024),
        "{e:?}"
    );
    assert!(e.is_retryable() && e.apprec_code().is_none());
    // A stale CRL is not cached into success: it stays retryable.
    assert!(verify(&env, &stale, NOW)
        .expect_err("still stale")
        .is_retryable());

    let missing =
        TrustStore::load(&pki().join("variants/missing-crl")).expect("missing variant loads");
    let e = verify(&env, &missing, NOW).expect_err("missing CRL");
    assert!(matches!(e, VerifyError::RevocationMissing { .. }), "{e:?}");
    assert!(e.is_retryable());

    // No CRLs at all: also retry, never accept.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("anchors")).expect("mkdir");
    std::fs::copy(
        pki().join("anchors/helsemelding-test-root-ca.pem"),
        dir.path().join("anchors/root.pem"),
    )
    .expect("copy");
    std::fs::create_dir(dir.path().join("intermediates")).expect("mkdir");
    std::fs::copy(
        pki().join("intermediates/helsemelding-test-intermediate-ca.pem"),
        dir.path().join("intermediates/i.pem"),
    )
    .expect("copy");
    let none = TrustStore::load(dir.path()).expect("loads");
    assert!(verify(&env, &none, NOW)
        .expect_err("no CRLs")
        .is_retryable());
}

#[test]
fn unreadable_envelopes_are_t01() {
    let t = trust();
    for bytes in [
        &b""[..],
        b"<MsgHead/>",
        &[0x30, 0x80, 0x00, 0x00],
        &[0x30, 0x03, 0x02, 0x01],
    ] {
        let r = verify(bytes, &t, NOW);
        assert!(
            matches!(r, Err(VerifyError::Malformed { .. })),
            "{bytes:?}: {r:?}"
        );
        assert_eq!(code(&r), Some(ErrorCode::T01));
    }
    // A ContentInfo of another type (id-data).
    let data = [
        0x30, 0x0B, 0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01,
    ];
    assert!(matches!(
        verify(&data, &t, NOW),
        Err(VerifyError::NotSignedData)
    ));
    // Detached signature: no content.
    let r = verify(&openssl_sign("parties/81234-sign", &[]), &t, NOW);
    assert!(matches!(r, Err(VerifyError::NoContent)), "{r:?}");
    assert_eq!(code(&r), Some(ErrorCode::T01));
    // Truncated and trailing garbage.
    let env = signed_by("parties/81234-sign");
    assert_eq!(
        code(&verify(&env[..env.len() - 1], &t, NOW)),
        Some(ErrorCode::T01)
    );
    assert_eq!(
        code(&verify(&[&env[..], &[0u8]].concat(), &t, NOW)),
        Some(ErrorCode::T01)
    );
}

#[test]
fn too_many_certificates_or_signers_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&key)
        .arg("2048")
        .output()
        .expect("openssl genrsa");
    assert!(made.status.success());
    // Distinct throw-away certificates (same key, different subjects) to pad the certificate set.
    let extra = |n: usize| -> PathBuf {
        let file = dir.path().join(format!("extra{n}.pem"));
        let mut pem = Vec::new();
        for i in 0..n {
            let out = Command::new("openssl")
                .args([
                    "req",
                    "-x509",
                    "-days",
                    "1",
                    "-subj",
                    &format!("/CN=extra {i}"),
                    "-key",
                ])
                .arg(&key)
                .output()
                .expect("openssl req");
            assert!(out.status.success());
            pem.extend(out.stdout);
        }
        std::fs::write(&file, pem).expect("write");
        file
    };
    // 15 extra + the signer = 16, the limit: accepted (the extras are simply unused).
    let at_limit = openssl_sign(
        "parties/81234-sign",
        &["-nodetach", "-certfile", extra(15).to_str().expect("utf8")],
    );
    verify(&at_limit, &trust(), NOW).expect("sixteen certificates are fine");
    // 16 extra + the signer = 17: refused before any certificate is parsed.
    let over = openssl_sign(
        "parties/81234-sign",
        &["-nodetach", "-certfile", extra(16).to_str().expect("utf8")],
    );
    let r = verify(&over, &trust(), NOW);
    assert!(
        matches!(&r, Err(VerifyError::Malformed { problem }) if problem.contains("more than 16 certificates")),
        "{r:?}"
    );
    // …while a SignerInfos SET with two signers is refused.
    let p = pki();
    let two = openssl_sign(
        "parties/81234-sign",
        &[
            "-nodetach",
            "-signer",
            p.join("parties/81235-sign.pem").to_str().expect("utf8"),
            "-inkey",
            p.join("parties/81235-sign.key").to_str().expect("utf8"),
        ],
    );
    let r = verify(&two, &trust(), NOW);
    assert!(
        matches!(&r, Err(VerifyError::Malformed { problem }) if problem.contains("exactly one SignerInfo")),
        "{r:?}"
    );
}

/// Byte ranges of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present")
}

#[test]
fn tampering_is_s01() {
    let t = trust();
    let env = signed_by("parties/81234-sign");
    let at = find(&env, &content());
    let mut flipped = env.clone();
    flipped[at + 100] ^= 0x01;
    assert!(matches!(
        verify(&flipped, &t, NOW),
        Err(VerifyError::DigestMismatch)
    ));
    // The signature itself (the last bytes of the envelope).
    let mut sig = env.clone();
    let last = sig.len() - 1;
    sig[last] ^= 0x80;
    let r = verify(&sig, &t, NOW);
    assert!(
        matches!(&r, Err(VerifyError::SignatureInvalid { subject, .. }) if subject.contains("81234")),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S01));
    // Without signed attributes the signature covers the content directly.
    let noattr = openssl_sign("parties/81234-sign", &["-nodetach", "-noattr"]);
    let mut flipped = noattr.clone();
    flipped[find(&noattr, &content()) + 7] ^= 0x20;
    assert!(matches!(
        verify(&flipped, &t, NOW),
        Err(VerifyError::SignatureInvalid { .. })
    ));
    // The signer certificate's bytes are covered by its issuer's signature: S02.
    let cert_der = signer("parties/81234-sign").certificate_der().to_vec();
    let mut cert_flip = env.clone();
    cert_flip[find(&env, &cert_der) + 200] ^= 0x01;
    assert_eq!(code(&verify(&cert_flip, &t, NOW)), Some(ErrorCode::S02));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any flipped content byte gives S01 (or T01 where the DER breaks); never OK, never a panic.
    #[test]
    fn flipped_content_byte_is_s01(offset in 0usize..4096, mask in 1u8..=255) {
        thread_local!(static CASE: (TrustStore, Vec<u8>, usize, usize) = {
            let env = signed_by("parties/81234-sign");
            let at = find(&env, &content());
            (trust(), env, at, content().len())
        });
        CASE.with(|(t, env, at, len)| {
            let mut e = env.clone();
            e[at + offset % len] ^= mask;
            let code = verify(&e, t, NOW).err().and_then(|e| e.apprec_code());
            prop_assert!(matches!(code, Some(ErrorCode::S01) | Some(ErrorCode::T01)), "{code:?}");
            Ok(())
        })?;
    }

    /// Any flipped byte anywhere in the envelope: an answer, never a panic.
    #[test]
    fn flipped_byte_anywhere_never_panics(offset in 0usize..1 << 16, mask in 1u8..=255) {
        thread_local!(static CASE: (TrustStore, Vec<u8>) = (trust(), signed_by("parties/81234-sign")));
        CASE.with(|(t, env)| {
            let mut e = env.clone();
            let i = offset % e.len();
            e[i] ^= mask;
            let _ = verify(&e, t, NOW);
            let _ = verify(&e[..i], t, NOW);
        });
    }
}

#[test]
fn signer_and_trust_store_errors_name_the_file() {
    let p = pki();
    let r = Signer::from_pem_files(
        &p.join("parties/81234-sign.key"),
        &p.join("parties/81235-sign.pem"),
    );
    assert!(matches!(r, Err(SignError::KeyCertMismatch { .. })), "{r:?}");
    let r = Signer::from_pem_files(
        &p.join("parties/81234-sign.pem"),
        &p.join("parties/81234-sign.pem"),
    );
    assert!(
        matches!(&r, Err(SignError::Unreadable { path, .. }) if path.ends_with("81234-sign.pem")),
        "{r:?}"
    );
    let r = Signer::from_pem_files(&p.join("nope.key"), &p.join("parties/81234-sign.pem"));
    assert!(matches!(r, Err(SignError::Io { .. })), "{r:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        TrustStore::load(dir.path()),
        Err(TrustError::NoAnchors { .. })
    ));
    std::fs::create_dir(dir.path().join("anchors")).expect("mkdir");
    std::fs::write(
        dir.path().join("anchors/broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let e = TrustStore::load(dir.path()).expect_err("broken anchor");
    assert!(e.to_string().contains("broken.pem"), "{e}");
    std::fs::remove_file(dir.path().join("anchors/broken.pem")).expect("rm");
    std::fs::copy(
        p.join("anchors/helsemelding-test-root-ca.pem"),
        dir.path().join("anchors/root.pem"),
    )
    .expect("copy");
    std::fs::create_dir(dir.path().join("crls")).expect("mkdir");
    std::fs::write(dir.path().join("crls/bad.crl"), b"junk").expect("write");
    let e = TrustStore::load(dir.path()).expect_err("broken CRL");
    assert!(e.to_string().contains("bad.crl"), "{e}");
}

#[test]
fn cli_verify_prints_one_verdict_per_file_and_exits_1_on_any_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.p7");
    let revoked = dir.path().join("revoked.p7");
    let junk = dir.path().join("junk.p7");
    std::fs::write(&good, signed_by("parties/81234-sign")).expect("write");
    std::fs::write(&revoked, signed_by("bad/revoked-sign")).expect("write");
    std::fs::write(&junk, b"<MsgHead/>").expect("write");
    let bin = env!("CARGO_BIN_EXE_helsemelding");
    let run = |files: &[&Path], trust: &Path| {
        let out = Command::new(bin)
            .args(["verify", "--at", "2026-06-01T12:00:00Z", "--trust-dir"])
            .arg(trust)
            .args(files)
            .output()
            .expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (status, out) = run(&[&good], &pki());
    assert_eq!(status, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("{}\tOK\t", good.display())) && out.contains("999999990"),
        "{out}"
    );
    let (status, out) = run(&[&good, &revoked, &junk], &pki());
    assert_eq!(status, Some(1));
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(
        lines.iter().map(|l| l[1]).collect::<Vec<_>>(),
        ["OK", "S03", "T01"],
        "{out}"
    );
    let (status, out) = run(&[&good], &pki().join("variants/stale-crl"));
    assert_eq!(status, Some(1));
    assert!(out.contains("\tRETRY\t"), "{out}");

    // sign, then verify the result.
    let signed = dir.path().join("signed.p7");
    let input = dir.path().join("in.xml");
    std::fs::write(&input, content()).expect("write");
    let p = pki();
    let st = Command::new(bin)
        .arg("sign")
        .arg("--key")
        .arg(p.join("parties/90000-sign.key"))
        .arg("--cert")
        .arg(p.join("parties/90000-sign.pem"))
        .arg(&input)
        .arg(&signed)
        .status()
        .expect("runs");
    assert!(st.success());
    let v = verify(
        &std::fs::read(&signed).expect("read"),
        &trust(),
        Timestamp::now_utc(),
    )
    .expect("verifies");
    assert_eq!(v.content, content());
}

#[test]
fn intermediates_may_come_with_the_message_and_the_signer_certificate_must() {
    let p = pki();
    // A trust directory without intermediates/: the chain needs the one the message carries.
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["anchors", "crls"] {
        std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::copy(
        p.join("anchors/helsemelding-test-root-ca.pem"),
        dir.path().join("anchors/root.pem"),
    )
    .expect("copy");
    for crl in [
        "helsemelding-test-root-ca.crl",
        "helsemelding-test-intermediate-ca.crl",
    ] {
        std::fs::copy(p.join("crls").join(crl), dir.path().join("crls").join(crl)).expect("copy");
    }
    let anchors_only = TrustStore::load(dir.path()).expect("loads");
    let bare = openssl_sign("parties/81234-sign", &["-nodetach"]);
    let r = verify(&bare, &anchors_only, NOW);
    assert!(matches!(r, Err(VerifyError::Untrusted { .. })), "{r:?}");
    let inter = p.join("intermediates/helsemelding-test-intermediate-ca.pem");
    let with_chain = openssl_sign(
        "parties/81234-sign",
        &["-nodetach", "-certfile", inter.to_str().expect("utf8")],
    );
    verify(&with_chain, &anchors_only, NOW).expect("chain through the message's intermediate");

    // No certificates in the message: the signer cannot be identified.
    let r = verify(
        &openssl_sign("parties/81234-sign", &["-nodetach", "-nocerts"]),
        &trust(),
        NOW,
    );
    assert!(
        matches!(r, Err(VerifyError::SignerCertificateMissing { .. })),
        "{r:?}"
    );
    assert_eq!(code(&r), Some(ErrorCode::S02));

    // SHA-1 is not accepted as a digest: S01, whatever the padding.
    for extra in [
        &["-nodetach", "-md", "sha1"][..],
        &[
            "-nodetach",
            "-md",
            "sha1",
            "-keyopt",
            "rsa_padding_mode:pss",
        ][..],
    ] {
        let r = verify(&openssl_sign("parties/81234-sign", extra), &trust(), NOW);
        assert!(
            matches!(r, Err(VerifyError::UnsupportedAlgorithm { .. })),
            "{extra:?}: {r:?}"
        );
        assert_eq!(code(&r), Some(ErrorCode::S01));
    }
}
