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
    /// Validate messages against the official schemas (prints path, verdict, detail per file).
    Validate(helsemelding::xsd::cli::ValidateArgs),

    // ---- signed envelopes ----

    // ---- the gateway ----

    // ---- benchmarks ----
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // ---- XML and schemas ----
        Command::Validate(args) => helsemelding::xsd::cli::run(&args),

        // ---- signed envelopes ----

        // ---- the gateway ----

        // ---- benchmarks ----
    }
}
