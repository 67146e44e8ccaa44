//! helsemelding-lab — the tools that test and measure the helsemelding gateway, kept out of the
//! operators' binary (DESIGN §5): they generate keys, inject faults and load the broker.
//!
//! | module  | job |
//! |---------|-----|
//! | `bench` | `helsemelding-lab bench`: the gateway against a bare relay (throughput, latency, RSS, CPU per stage; a table, or one JSON object with `--json`) |
//! | `community` | `helsemelding-lab community`: a synthetic health community (hospital trust, municipalities, GP offices) through the real gateway with insight on, and the truth file of the indicators it planted |
//! | `cluster` | a real 3-node RabbitMQ cluster of extra nodes (own names, ports, cookie; node 1 also on TLS), started and stopped by tests and the chaos rig |
//! | `chaos` | `helsemelding-lab chaos`: reliability proofs — the real gateway under kill -9, closed connections, full queues, broker restarts, a full state disk; nothing lost, no second AppRec, no inversion |
//! | `pki`   | `helsemelding-lab dev-pki`: the synthetic test PKI (CAs, CRLs, party signers, bad certificates) in the trust layout; a CA serving its CRL over HTTP |
//! | `soak`  | `helsemelding-lab soak`: a long run with the gateway's clock sped up (overdue, pruning, stale CRLs refreshed); RSS, files, threads and store size over time; lost 0 |
//!
//! The gateway these tools run is `helsemelding-lab serve`: the library's own `serve`, built with
//! the `fault-injection` feature and allowed to act on `HELSEMELDING_CRASH_AT`
//! (`helsemelding::gateway::crash`) and `HELSEMELDING_CLOCK_SPEED` (`helsemelding::gateway::fast_clock`). Each module opens with its own `//!`.

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod community;
pub mod pki;
pub mod soak;

use std::path::{Path, PathBuf};

/// The repository root (where `config/`, `fixtures/` and `xsd/` are): the lab crate's parent.
pub fn repo_root() -> PathBuf {
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    lab.parent().map(PathBuf::from).unwrap_or(lab)
}

/// The paths a lab run starts from: the shipped configuration, the repository root it lives in
/// (`<root>/config/gateway.toml`; where `fixtures/` is) and the installed schemas.
pub struct RunPaths {
    pub config: PathBuf,
    pub base: PathBuf,
    pub schemas: PathBuf,
}

impl RunPaths {
    /// Resolves `config` and `schemas` (default: the configuration's `paths.schemas`) to absolute
    /// paths, or says which one is wrong and why.
    pub fn resolve(config: &Path, schemas: Option<&Path>) -> Result<RunPaths, String> {
        let config = config
            .canonicalize()
            .map_err(|e| format!("{}: {e}", config.display()))?;
        let base = config
            .parent()
            .and_then(|p| p.parent())
            .map(PathBuf::from)
            .ok_or_else(|| format!("{}: expected <root>/config/gateway.toml", config.display()))?;
        let schemas = match schemas {
            Some(s) => s.to_path_buf(),
            None => {
                helsemelding::config::GatewayConfig::load(&config)
                    .map_err(|ps| {
                        format!(
                            "{}: {}",
                            config.display(),
                            ps.iter()
                                .map(|p| p.to_string())
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    })?
                    .paths
                    .schemas
            }
        };
        let schemas = schemas
            .canonicalize()
            .map_err(|e| format!("schemas {}: {e}", schemas.display()))?;
        Ok(RunPaths {
            config,
            base,
            schemas,
        })
    }
}

/// `one(i)` for every `i` in `0..n`, on all available cores, in order; the first error is
/// returned, and `panicked()` if a thread panicked. (Signing is RSA and slow: the benchmark and
/// the community generator sign thousands of messages this way before anything is timed.)
pub fn on_all_cores<T: Send, E: Send>(
    n: usize,
    one: impl Fn(usize) -> Result<T, E> + Sync,
    panicked: impl Fn() -> E,
) -> Result<Vec<T>, E> {
    let threads = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1)
        .clamp(1, n.max(1));
    let chunk = n.div_ceil(threads).max(1);
    let one = &one;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|start| {
                scope.spawn(move || {
                    (start..(start + chunk).min(n))
                        .map(one)
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for h in handles {
            out.extend(h.join().map_err(|_| panicked())??);
        }
        Ok(out)
    })
}
