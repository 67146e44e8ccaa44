//! helsemelding-lab — the tools that test and measure the helsemelding gateway, kept out of the
//! operators' binary (DESIGN §5): they generate keys, inject faults and load the broker.
//!
//! | module  | job |
//! |---------|-----|
//! | `bench` | `helsemelding-lab bench`: the gateway against a bare relay (throughput, latency, RSS, CPU per stage; a table, or one JSON object with `--json`) |
//! | `community` | `helsemelding-lab community`: a synthetic health community (hospital trust, municipalities, GP offices) through the real gateway with insight on, and the truth file of the indicators it planted |
//! | `chaos` | `helsemelding-lab chaos`: reliability proofs — the real gateway under kill -9, closed connections, full queues, broker restarts, a full state disk; nothing lost, no second AppRec, no inversion |
//! | `pki`   | `helsemelding-lab dev-pki`: the synthetic test PKI (CAs, CRLs, party signers, bad certificates) in the trust layout; a CA serving its CRL over HTTP |
//! | `soak`  | `helsemelding-lab soak`: a long run with the gateway's clock sped up (overdue, pruning, stale CRLs refreshed); RSS, files, threads and store size over time; lost 0 |
//!
//! The gateway these tools run is `helsemelding-lab serve`: the library's own `serve`, built with
//! the `fault-injection` feature and allowed to act on `HELSEMELDING_CRASH_AT`
//! (`helsemelding::gateway::crash`) and `HELSEMELDING_CLOCK_SPEED` (`helsemelding::gateway::fast_clock`). Each module opens with its own `//!`.

pub mod bench;
pub mod chaos;
pub mod community;
pub mod pki;
pub mod soak;

use std::path::PathBuf;

/// The repository root (where `config/`, `fixtures/` and `xsd/` are): the lab crate's parent.
pub fn repo_root() -> PathBuf {
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lab.parent().map(PathBuf::from).unwrap_or(lab)
}
