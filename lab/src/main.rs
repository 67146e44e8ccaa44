//! The `helsemelding-lab` command line: the lab tools, one subcommand each. Operators run
//! `helsemelding`; nothing here belongs in production.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "helsemelding-lab",
    version,
    about = "Lab tools for helsemelding: benchmarks, the chaos rig, the test PKI (not for production)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Throughput, latency, peak RSS and CPU per stage of the gateway against a bare relay (a table, or JSON with --json).
    Bench(helsemelding_lab::bench::cli::BenchArgs),
    /// Prove the gateway loses nothing and keeps each sender's order: kill -9, closed connections, full queues, broker restarts and alarms, a full state disk (one TSV line per scenario).
    Chaos(helsemelding_lab::chaos::cli::ChaosArgs),
    /// A synthetic health community through the real gateway with insight on: truth.csv (the planted indicators), the report, and whether they agree in every cell.
    Community(helsemelding_lab::community::cli::CommunityArgs),
    /// Generate a test PKI (CAs, CRLs, party signers, bad certificates) in the trust layout.
    DevPki(helsemelding_lab::pki::cli::DevPkiArgs),
    /// A long run with the gateway's clock sped up: overdue AppRecs, pruning, stale CRLs refreshed; RSS, open files, threads and store size over time (a table, and JSON to --report).
    Soak(helsemelding_lab::soak::cli::SoakArgs),
    /// The gateway's `serve` with fault injection (HELSEMELDING_CRASH_AT, HELSEMELDING_CLOCK_SPEED) allowed: what bench, chaos and soak run.
    Serve(helsemelding::gateway::cli::ServeArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Bench(args) => helsemelding_lab::bench::cli::run(&args),
        Command::Chaos(args) => helsemelding_lab::chaos::cli::run_chaos(&args),
        Command::Community(args) => helsemelding_lab::community::cli::run_community(&args),
        Command::DevPki(args) => helsemelding_lab::pki::cli::run_dev_pki(args),
        Command::Soak(args) => helsemelding_lab::soak::cli::run_soak(&args),
        Command::Serve(args) => {
            helsemelding::gateway::crash::allow();
            helsemelding::gateway::cli::run_serve(&args)
        }
    }
}
