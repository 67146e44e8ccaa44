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
    let Ok(rd) = std::fs::read_dir(dir) else { return };
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
    let xsd = std::env::var("XSD_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("../shared/standards/xsd"));
    let corpus = std::env::var("CORPUS_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("../shared/corpus"));
    let secs: f64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);

    let t = Instant::now();
    let schemas = match Schemas::load(&xsd) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot load schemas: {e}");
            std::process::exit(2);
        }
    };
    println!("schemas compiled once in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);

    let mut files = Vec::new();
    xml_files(&corpus, &mut files);
    files.sort();
    let docs: Vec<Vec<u8>> = files.iter().filter_map(|f| std::fs::read(f).ok()).collect();
    let total: usize = docs.iter().map(Vec::len).sum();
    println!("corpus: {} documents, {:.1} MB", docs.len(), total as f64 / 1e6);

    let limits = XmlLimits::default();
    let (mut n, mut bytes, mut valid) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    let cpu0 = cpu_seconds();
    while cpu_seconds().zip(cpu0).map_or(start.elapsed().as_secs_f64(), |(c, c0)| c - c0) < secs {
        for d in &docs {
            let v = schemas.validate(d, &limits);
            valid += usize::from(v.is_valid());
            n += 1;
            bytes += d.len();
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let el = cpu_seconds().zip(cpu0).map_or(wall, |(c, c0)| c - c0);
    let ours = n as f64 / el;
    println!(
        "helsemelding: {:.0} docs/s, {:.1} MB/s ({} docs in {:.2} s CPU, {:.2} s wall, {} valid)",
        ours,
        bytes as f64 / el / 1e6,
        n,
        el,
        wall,
        valid
    );

    let script = root.join("benches/lxml_validate.py");
    match Command::new("python3").arg(&script).arg(&corpus).arg(&xsd).arg(secs.to_string()).output() {
        Ok(o) if o.status.success() => {
            let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
            println!("{line}");
            let theirs: Option<f64> = line.split(": ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok());
            if let Some(theirs) = theirs {
                println!("ratio: {:.2}x libxml2's documents/s", ours / theirs);
            }
        }
        Ok(o) => println!("lxml benchmark failed (pip install lxml?): {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => println!("lxml benchmark not run: {e}"),
    }
}
