//! What the lab's tests share: the repository root, the official schemas, a scratch gateway
//! configuration, and the options that run `helsemelding-lab serve` (the gateway with fault
//! injection allowed) as the chaos rig's gateway. A copy of the little of the main crate's test
//! support these tests need (that support names the operators' binary, which has no crash points).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn repo() -> PathBuf {
    helsemelding_lab::repo_root()
}

/// The official schemas, straight from ../shared (same layout and checksums as an installed `xsd/`).
pub fn schemas() -> PathBuf {
    repo().join("../shared/standards/xsd")
}

/// A copy of the shipped configuration pointing at `url` and at `dir` for state.
pub fn write_config(dir: &Path, url: &str) -> PathBuf {
    helsemelding::config::scratch::write_config(&repo(), dir, url, &schemas())
        .unwrap_or_else(|e| panic!("test configuration: {e}"))
}

/// Options for running `helsemelding-lab serve` as the gateway of a chaos run.
pub fn chaos_options(
    messages: usize,
    faults: u32,
    seed: u64,
) -> helsemelding_lab::chaos::scenario::Options {
    helsemelding_lab::chaos::scenario::Options {
        exe: PathBuf::from(env!("CARGO_BIN_EXE_helsemelding-lab")),
        base: repo(),
        schemas: schemas(),
        messages,
        faults,
        seed,
        settle: Duration::from_secs(120),
    }
}

/// Prints a chaos report: the TSV header and line, then its notes and problems as `# ` lines.
pub fn print_report(r: &helsemelding_lab::chaos::scenario::Report) {
    println!(
        "# scenario\t{}",
        helsemelding_lab::chaos::ledger::Figures::TSV_HEADER
    );
    println!("{}\t{}", r.scenario.name(), r.figures.tsv());
    for n in &r.notes {
        println!("# {n}");
    }
    for p in &r.figures.problems {
        println!("# {p}");
    }
}
