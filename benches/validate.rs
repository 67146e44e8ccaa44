//! Validation throughput over the corpus on one core, next to libxml2's (lxml) measured in the
//! same run. `cargo bench --bench validate` (env `XSD_DIR`, `CORPUS_DIR`, `BENCH_SECONDS` to
//! override the defaults `../shared/standards/xsd`, `../shared/corpus`, 5). Both figures are per
//! second of CPU time of one thread, measured in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use helsemelding::xml::XmlLimits;
use helsemelding::xsd::Schemas;

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            xml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "xml") {
            out.push(p);
        }
    }
}

/// CPU time of this thread in seconds (Linux `schedstat`), so a loaded machine (two cores shared
/// by a team) does not distort the comparison; falls back to wall time elsewhere.
fn cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let xsd = std::env::var("XSD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/standards/xsd"));
    let corpus = std::env::var("CORPUS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("../shared/corpus"));
    let secs: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);

    let t = Instant::now();
    let schemas = match Schemas::load(&xsd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot load schemas: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "schemas compiled once in {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut files = Vec::new();
    xml_files(&corpus, &mut files);
    files.sort();
    let docs: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    let total: usize = docs.iter().map(Vec::len).sum();
    println!(
        "corpus: {} documents, {:.1} MB",
        docs.len(),
        total as f64 / 1e6
    );

    // Ours and libxml2's alternate in `ROUNDS` slices, so that a change in the machine's load
    // (two cores shared by a team) affects both figures alike.
    const ROUNDS: usize = 3;
    let limits = XmlLimits::default();
    let script = root.join("benches/lxml_validate.py");
    let (mut n, mut bytes, mut valid, mut cpu) = (0usize, 0usize, 0usize, 0f64);
    let (mut their_docs, mut their_cpu, mut their_line) = (0f64, 0f64, String::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let cpu0 = cpu_seconds();
        let used = || {
            cpu_seconds()
                .zip(cpu0)
                .map_or(start.elapsed().as_secs_f64(), |(c, c0)| c - c0)
        };
        while used() < secs / ROUNDS as f64 {
            for d in &docs {
                let v = schemas.validate(d, &limits);
                valid += usize::from(v.is_valid());
                n += 1;
                bytes += d.len();
            }
        }
        cpu += used();
        match Command::new("python3")
            .arg(&script)
            .arg(&corpus)
            .arg(&xsd)
            .arg((secs / ROUNDS as f64).to_string())
            .output()
        {
            Ok(o) if o.status.success() => {
                their_line = String::from_utf8_lossy(&o.stdout).trim().to_string();
                // "... (N docs in X s CPU, ...)"
                let inside = their_line.rsplit('(').next().unwrap_or("");
                let mut words = inside.split(' ');
                let docs_n: Option<f64> = words.next().and_then(|w| w.parse().ok());
                let secs_n: Option<f64> = words.nth(2).and_then(|w| w.parse().ok());
                if let (Some(d), Some(s)) = (docs_n, secs_n) {
                    their_docs += d;
                    their_cpu += s;
                }
            }
            Ok(o) => println!(
                "lxml benchmark failed (pip install lxml?): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => println!("lxml benchmark not run: {e}"),
        }
    }
    let ours = n as f64 / cpu;
    println!(
        "helsemelding: {:.0} docs/s, {:.1} MB/s ({} docs in {:.2} s CPU, {} valid)",
        ours,
        bytes as f64 / cpu / 1e6,
        n,
        cpu,
        valid
    );
    if their_cpu > 0.0 {
        let theirs = their_docs / their_cpu;
        let mb = bytes as f64 / n as f64 * their_docs / their_cpu / 1e6;
        println!("lxml/libxml2: {theirs:.0} docs/s, {mb:.1} MB/s ({their_docs} docs in {their_cpu:.2} s CPU; last slice: {their_line})");
        println!("ratio: {:.2}x libxml2's documents/s", ours / theirs);
    }
}
