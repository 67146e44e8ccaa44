//! Shared helpers for the model tests: the shared corpus and libxml2's verdict on files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

pub fn corpus_files(dirs: &[&str]) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "xml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        let dir = shared().join("corpus").join(d);
        assert!(
            dir.is_dir(),
            "corpus directory {} is missing",
            dir.display()
        );
        walk(&dir, &mut out);
    }
    out.sort();
    out
}

/// One verdict of `../shared/tools/xsd-oracle` (libxml2).
#[derive(Debug, Clone)]
pub struct Verdict {
    pub path: PathBuf,
    pub verdict: String,
    pub schema: String,
    pub error: String,
}

/// Asks the oracle about all files in one run.
pub fn oracle(files: &[PathBuf]) -> Vec<Verdict> {
    let out = Command::new(shared().join("tools/xsd-oracle"))
        .args(files)
        .output()
        .expect("run ../shared/tools/xsd-oracle (needs python3 and xmllint)");
    assert!(
        out.status.success(),
        "xsd-oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 oracle output");
    let v: Vec<Verdict> = text
        .lines()
        .map(|l| {
            let mut f = l.splitn(4, '\t');
            Verdict {
                path: PathBuf::from(f.next().unwrap_or_default()),
                verdict: f.next().unwrap_or_default().to_owned(),
                schema: f.next().unwrap_or_default().to_owned(),
                error: f.next().unwrap_or_default().to_owned(),
            }
        })
        .collect();
    assert_eq!(v.len(), files.len(), "one verdict per file");
    v
}

pub fn corpus(rel: &str) -> Vec<u8> {
    let p = shared().join("corpus").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
