//! `cargo bench --bench verify`: full `cms::verify()` calls per second on one core, RSA-3072
//! signer, ~4 KB content, committed test PKI; beside it the raw aws-lc-rs RSA-3072 verify rate (for
//! comparison: the bare signature operation under verify()) and the uncached rate (a fresh trust store per call: chain + CRL work included).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use helsemelding::cms::{verify, Signer, TrustStore};
use time::macros::datetime;

/// CPU time of this thread (user + system) from /proc, so a machine shared with other work still
/// gives a per-core figure; `None` where /proc is unavailable.
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}

/// Calls per wall-clock second and per CPU second of this thread.
fn rate(label: &str, budget: Duration, mut f: impl FnMut()) -> (f64, Option<f64>) {
    for _ in 0..50 {
        f();
    }
    let cpu0 = thread_cpu_seconds();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    let wall = n as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(n as f64 / (b - a)),
        _ => None,
    };
    let cpu_text = cpu.map_or("n/a".to_owned(), |c| {
        format!("{c:.0} /CPU-s ({:.1} µs CPU each)", 1e6 / c)
    });
    println!("{label:<48} {wall:>8.0} /s wall   {cpu_text}");
    (wall, cpu)
}

fn main() {
    let pki = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pki");
    let now = datetime!(2026-06-01 12:00 UTC);
    let signer = Signer::from_pem_files(
        &pki.join("parties/81234-sign.key"),
        &pki.join("parties/81234-sign.pem"),
    )
    .expect("signer");
    let mut content = Vec::new();
    while content.len() < 4096 {
        content.extend_from_slice(b"<Note>Syntetisk innhold for ytelsesmaaling</Note>");
    }
    content.truncate(4096);
    let envelope = signer.sign(&content, now).expect("sign");
    let trust = TrustStore::load(&pki).expect("trust");
    verify(&envelope, &trust, now).expect("verifies");
    println!(
        "RSA-3072 signer, {} byte content, {} byte envelope, one thread",
        content.len(),
        envelope.len()
    );

    // For comparison: the bare RSA-3072 PKCS#1 v1.5 SHA-256 verification of aws-lc-rs, without CMS, chain or CRL work.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let key_pem = std::fs::read(pki.join("parties/81234-sign.key")).expect("key");
    use rustls_pki_types::pem::PemObject;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(&key_pem).expect("pkcs8");
    let kp =
        aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der()).expect("key pair");
    let mut sig = vec![0; kp.public_modulus_len()];
    kp.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &rng,
        b"abc",
        &mut sig,
    )
    .expect("sign");
    use aws_lc_rs::signature::KeyPair;
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
        kp.public_key().as_ref().to_vec(),
    );
    rate(
        "aws-lc-rs RSA-3072 verify (raw, for comparison)",
        Duration::from_secs(2),
        || {
            public
                .verify(black_box(b"abc"), black_box(&sig))
                .expect("raw verify");
        },
    );

    let (full_wall, full_cpu) = rate(
        "cms::verify (cached chain check)",
        Duration::from_secs(3),
        || {
            black_box(verify(black_box(&envelope), &trust, now).expect("verify"));
        },
    );
    rate(
        "cms::verify (fresh trust store: chain + CRLs)",
        Duration::from_secs(2),
        || {
            let fresh = TrustStore::load(&pki).expect("trust");
            black_box(verify(black_box(&envelope), &fresh, now).expect("verify"));
        },
    );
    let full = full_cpu.unwrap_or(full_wall);
    println!(
        "target >= 15000 full verify() calls/s on one core: {} ({full:.0}/s per CPU-second; wall figures drop when the machine is shared)",
        if full >= 15000.0 { "met" } else { "NOT met" }
    );
}
