//! Message-model throughput: `cargo bench --bench model`. Prints figures; asserts nothing about speed.
//!
//! - MsgHead::parse over every MsgHead of the shared corpus (typical 5–40 kB messages);
//! - MsgHead::parse of a synthetic message carrying 20 attachments of 1 MB base64 each
//!   (the payload subtrees are skipped, so this measures the reader's raw scan speed);
//! - build_apprec for the primary recipient of each corpus message.

use std::path::{Path, PathBuf};
use std::time::Instant;

use helsemelding::apprec::{build_apprec, AppRecInput, AppRecVersion, PrimaryRoleV1_0};
use helsemelding::codes::AppRecStatus;
use helsemelding::ids::MsgId;
use helsemelding::msghead::MsgHead;

fn walk(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
}

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let mut files = Vec::new();
    for d in [
        "dialogmelding-v1.0",
        "dialogmelding-v1.1",
        "plo-v1.5",
        "plo-v1.6",
    ] {
        walk(&corpus.join(d), &mut files);
    }
    let docs: Vec<Vec<u8>> = files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter(|b| MsgHead::parse(b).is_ok())
        .collect();
    let bytes: usize = docs.iter().map(Vec::len).sum();
    let rounds = 50;
    let t = Instant::now();
    let mut n = 0usize;
    for _ in 0..rounds {
        for d in &docs {
            n += MsgHead::parse(d).map(|m| m.documents).unwrap_or(0);
        }
    }
    let el = t.elapsed();
    let msgs = (docs.len() * rounds) as f64;
    println!(
        "MsgHead::parse corpus: {} messages x {rounds}: {:.1} µs/message, {:.0} messages/s, {:.1} MB/s (checksum {n})",
        docs.len(),
        el.as_secs_f64() * 1e6 / msgs,
        msgs / el.as_secs_f64(),
        (bytes * rounds) as f64 / el.as_secs_f64() / 1e6
    );

    // A large message: the first corpus message with 20 x 1 MB base64 attachments appended.
    let base = String::from_utf8_lossy(&docs[0]).into_owned();
    let attachment = format!(
        "<Document><RefDoc><MsgType V=\"A\"/><MimeType>application/pdf</MimeType><Content><Base64Container xmlns=\"http://www.kith.no/xmlstds/base64container\">{}</Base64Container></Content></RefDoc></Document>",
        "QUJDRA==".repeat(1 << 17)
    );
    let close = base.rfind("</").unwrap_or(base.len());
    let big = format!(
        "{}{}{}",
        &base[..close],
        attachment.repeat(20),
        &base[close..]
    );
    let t = Instant::now();
    let m = MsgHead::parse(big.as_bytes()).expect("large message parses");
    let el = t.elapsed();
    println!(
        "MsgHead::parse large: {:.1} MB with {} documents in {:.1} ms ({:.0} MB/s)",
        big.len() as f64 / 1e6,
        m.documents,
        el.as_secs_f64() * 1e3,
        big.len() as f64 / el.as_secs_f64() / 1e6
    );

    let heads: Vec<MsgHead> = docs.iter().filter_map(|d| MsgHead::parse(d).ok()).collect();
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let t = Instant::now();
    let mut out = 0usize;
    for _ in 0..rounds {
        for h in &heads {
            let (r, party) = h.recipients().into_iter().next().expect("a receiver");
            out += build_apprec(&AppRecInput {
                version: AppRecVersion::for_payload(&h.payload),
                original: h,
                recipient: party,
                role: r.role,
                status: AppRecStatus::Ok,
                errors: vec![],
                id: MsgId::random(),
                now,
                software_name: "helsemelding".into(),
                software_version: "bench".into(),
                v1_0_primary_role: PrimaryRoleV1_0::default(),
            })
            .len();
        }
    }
    let el = t.elapsed();
    let k = (heads.len() * rounds) as f64;
    println!(
        "build_apprec: {:.1} µs/AppRec, {:.0} AppRecs/s (avg {} bytes)",
        el.as_secs_f64() * 1e6 / k,
        k / el.as_secs_f64(),
        out / (heads.len() * rounds)
    );
}
