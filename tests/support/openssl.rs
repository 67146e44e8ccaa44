//! The `openssl cms` CLI as the counterpart of the hub's encryption (tests/encryption.rs): what an
//! EHR that encrypts with OpenSSL sends, and whether OpenSSL can open and verify what the hub sends.
//! Paths of keys and certificates are relative to `fixtures/gateway-pki`.

use std::io::Write;
use std::process::{Command, Stdio};

use super::repo;

fn pki(rel: &str) -> String {
    repo()
        .join("fixtures/gateway-pki")
        .join(rel)
        .display()
        .to_string()
}

/// Runs `openssl cms <args>` with `input` on stdin; the DER (or content) on stdout, or stderr.
fn cms(args: &[&str], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new("openssl")
        .arg("cms")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("openssl reads its input");
    let out = child.wait_with_output().expect("openssl finishes");
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `openssl cms -encrypt -binary -outform DER <options> <recipient certificate>`: `data` (the
/// SignedData DER, as bytes) in an EnvelopedData (or AuthEnvelopedData for a GCM cipher).
/// `options` are e.g. `["-aes256"]` or `["-aes256", "-keyopt", "rsa_padding_mode:oaep"]`; the
/// certificate goes with `-recip` so that `-keyopt` applies to it.
pub fn encrypt(data: &[u8], options: &[&str], recipient_cert: &str) -> Vec<u8> {
    let cert = pki(recipient_cert);
    let mut args = vec!["-encrypt", "-binary", "-outform", "DER"];
    let (ciphers, keyopts): (Vec<&str>, Vec<&str>) = split_keyopts(options);
    args.extend(ciphers);
    args.extend(["-recip", cert.as_str()]);
    args.extend(keyopts);
    cms(&args, data).unwrap_or_else(|e| panic!("openssl cms -encrypt {options:?}: {e}"))
}

/// `-keyopt X` pairs go after `-recip` (they apply to the recipient named before them).
fn split_keyopts<'a>(options: &[&'a str]) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut plain, mut keyopts) = (Vec::new(), Vec::new());
    let mut it = options.iter();
    while let Some(o) = it.next() {
        if *o == "-keyopt" {
            keyopts.push(*o);
            keyopts.extend(it.next());
        } else {
            plain.push(*o);
        }
    }
    (plain, keyopts)
}

/// `openssl cms -decrypt` with a recipient's key and certificate (stems under gateway-pki,
/// e.g. `encryption/82001-enc`): the content, or OpenSSL's complaint.
pub fn decrypt(der: &[u8], stem: &str) -> Result<Vec<u8>, String> {
    let (cert, key) = (pki(&format!("{stem}.pem")), pki(&format!("{stem}.key")));
    cms(
        &[
            "-decrypt", "-binary", "-inform", "DER", "-recip", &cert, "-inkey", &key,
        ],
        der,
    )
}

/// `openssl cms -verify` of a DER SignedData against the test PKI (root and intermediate in the
/// CA file): the signed content, or OpenSSL's complaint.
pub fn verify(der: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let mut pem = std::fs::read(pki("anchors/helsemelding-test-root-ca.pem")).expect("root");
    pem.extend(
        std::fs::read(pki("intermediates/helsemelding-test-intermediate-ca.pem"))
            .expect("intermediate"),
    );
    std::fs::write(&ca, pem).expect("CA file");
    let ca = ca.display().to_string();
    cms(
        &[
            "-verify", "-binary", "-inform", "DER", "-CAfile", &ca, "-purpose", "any",
        ],
        der,
    )
}
