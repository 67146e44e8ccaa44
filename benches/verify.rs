//! `cargo bench --bench verify`: full `cms::verify()` calls per second on one core, RSA-3072
//! signer, ~4 KB content, committed test PKI; beside it the raw ring RSA-3072 verify rate (the
//! ceiling) and the uncached rate (a fresh trust store per call: chain + CRL work included).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use helsemelding::cms::{verify, Signer, TrustStore};
use time::macros::datetime;

fn rate(label: &str, budget: Duration, mut f: impl FnMut()) -> f64 {
    for _ in 0..50 {
        f();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let per_s = n as f64 / start.elapsed().as_secs_f64();
    println!("{label:<48} {per_s:>10.0} /s  ({:.1} µs each)", 1e6 / per_s);
    per_s
}

fn main() {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki");
    let now = datetime!(2026-06-01 12:00 UTC);
    let signer = Signer::from_pem_files(&pki.join("parties/81234-sign.key"), &pki.join("parties/81234-sign.pem")).expect("signer");
    let mut content = Vec::new();
    while content.len() < 4096 {
        content.extend_from_slice(b"<Note>Syntetisk innhold for ytelsesmaaling</Note>");
    }
    content.truncate(4096);
    let envelope = signer.sign(&content, now).expect("sign");
    let trust = TrustStore::load(&pki).expect("trust");
    verify(&envelope, &trust, now).expect("verifies");
    println!("RSA-3072 signer, {} byte content, {} byte envelope, one thread", content.len(), envelope.len());

    // The ceiling: ring's RSA-3072 PKCS#1 v1.5 SHA-256 verification alone, over a short message.
    let rng = ring::rand::SystemRandom::new();
    let key_pem = std::fs::read(pki.join("parties/81234-sign.key")).expect("key");
    use rustls_pki_types::pem::PemObject;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&key_pem).expect("pkcs8");
    let kp = ring::signature::RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).expect("key pair");
    let mut sig = vec![0; kp.public().modulus_len()];
    kp.sign(&ring::signature::RSA_PKCS1_SHA256, &rng, b"abc", &mut sig).expect("sign");
    use ring::signature::KeyPair;
    let public = ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, kp.public_key().as_ref().to_vec());
    rate("ring RSA-3072 verify (raw, ceiling)", Duration::from_secs(2), || {
        public.verify(black_box(b"abc"), black_box(&sig)).expect("raw verify");
    });

    let full = rate("cms::verify (cached chain check)", Duration::from_secs(3), || {
        black_box(verify(black_box(&envelope), &trust, now).expect("verify"));
    });
    rate("cms::verify (fresh trust store: chain + CRLs)", Duration::from_secs(2), || {
        let fresh = TrustStore::load(&pki).expect("trust");
        black_box(verify(black_box(&envelope), &fresh, now).expect("verify"));
    });
    println!("target >= 15000 full verify() calls/s: {}", if full >= 15000.0 { "met" } else { "NOT met" });
}
