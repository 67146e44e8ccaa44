//! The `helsemelding` command line: one subcommand per operator task.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "helsemelding", version, about = "Gateway for Norwegian health messages (MsgHead, Dialogmelding, PLO, AppRec) over RabbitMQ")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // ---- XML and schemas ----

    // ---- signed envelopes ----

    // ---- the gateway ----
    /// Validate the configuration, the address register and the files they name; print every problem.
    CheckConfig(helsemelding::config::CheckConfigArgs),
    /// Show where a message is, per recipient, from the delivery store.
    Status(helsemelding::store::StatusArgs),

    // ---- benchmarks ----
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // ---- XML and schemas ----

        // ---- signed envelopes ----

        // ---- the gateway ----
        Command::CheckConfig(args) => helsemelding::config::run_check_config(&args),
        Command::Status(args) => helsemelding::store::run_status(&args),

        // ---- benchmarks ----
    }
}
