//! `helsemelding-lab chaos`: runs scenarios against the local broker and prints, per scenario,
//! `scenario<TAB>sent<TAB>delivered<TAB>lost<TAB>duplicated<TAB>apprecs<TAB>inversions`; notes and
//! problems go on `# ` lines. Exit 1 if any scenario lost a message, issued a second AppRec,
//! misplaced a message, delivered a sender's messages out of order (an inversion) or did not stop
//! gracefully; exit 2 if a scenario could not be carried out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::scenario::{run, Options, Scenario};

#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Scenarios to run (repeatable). Default: kill9, close-connection, reject-publish.
    /// broker-restart and alarm disturb everybody on the broker, disk-full mounts a tmpfs
    /// (root), and cluster-kill9 and cluster-node-stop start a 3-node broker cluster of their own
    /// and three instances on a scratch PostgreSQL database: only when named.
    #[arg(long = "scenario", value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Messages per scenario.
    #[arg(long, default_value_t = 500)]
    pub messages: usize,
    /// Faults per scenario (kills for kill9, rounds of closes for close-connection).
    #[arg(long, default_value_t = 20)]
    pub faults: u32,
    /// Seed for the random moments (default: from the clock; printed either way).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The shipped configuration the scenarios copy (its broker URL and state path are replaced).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Installed schemas (default: the configuration's `paths.schemas`).
    #[arg(long)]
    pub schemas: Option<PathBuf>,
    /// The gateway binary, run as `BINARY serve` (default: this executable; its crash points
    /// need a build with fault injection, which `helsemelding` does not act on).
    #[arg(long)]
    pub gateway: Option<PathBuf>,
    /// Seconds to wait, after the faults, for every message to come out.
    #[arg(long, default_value_t = 120)]
    pub settle_secs: u64,
}

pub fn run_chaos(args: &ChaosArgs) -> ExitCode {
    let fail = |what: String| {
        eprintln!("helsemelding-lab chaos: {what}");
        ExitCode::from(2)
    };
    let crate::RunPaths { base, schemas, .. } =
        match crate::RunPaths::resolve(&args.config, args.schemas.as_deref()) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
    let exe = match args
        .gateway
        .clone()
        .map(Ok)
        .unwrap_or_else(std::env::current_exe)
    {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find the gateway binary: {e}")),
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let scenarios = if args.scenarios.is_empty() {
        vec![
            Scenario::Kill9,
            Scenario::CloseConnection,
            Scenario::RejectPublish,
        ]
    } else {
        args.scenarios.clone()
    };
    let options = Options {
        exe,
        base,
        schemas,
        messages: args.messages.max(1),
        faults: args.faults,
        seed,
        settle: Duration::from_secs(args.settle_secs),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    println!("# seed {seed}");
    println!("# scenario\t{}", super::ledger::Figures::TSV_HEADER);
    let mut worst = ExitCode::SUCCESS;
    for s in scenarios {
        match rt.block_on(run(s, &options)) {
            Ok(r) => {
                println!("{}\t{}", s.name(), r.figures.tsv());
                for n in &r.notes {
                    println!("# {}: {n}", s.name());
                }
                if r.figures.second_apprecs > 0
                    || r.figures.misplaced > 0
                    || r.figures.inversions > 0
                {
                    println!(
                        "# {}: second AppRecs {}, misplaced {}, inversions {}",
                        s.name(),
                        r.figures.second_apprecs,
                        r.figures.misplaced,
                        r.figures.inversions
                    );
                }
                for p in &r.figures.problems {
                    println!("# {}: {p}", s.name());
                }
                if let Err(e) = &r.graceful_stop {
                    println!("# {}: graceful stop FAILED: {e}", s.name());
                }
                if !r.passed() {
                    println!("# {}: FAILED (kept {})", s.name(), r.dir.display());
                    worst = ExitCode::FAILURE;
                }
            }
            Err(e) => {
                println!("{}\tERROR\t{e}", s.name());
                if worst == ExitCode::SUCCESS {
                    worst = ExitCode::from(2);
                }
            }
        }
    }
    worst
}
