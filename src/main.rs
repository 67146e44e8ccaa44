//! The `helsemelding` command line: one subcommand per operator task. The lab tools (bench, chaos,
//! dev-pki) are a separate binary, `helsemelding-lab` (lab/).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "helsemelding",
    version,
    about = "Gateway for Norwegian health messages (MsgHead, Dialogmelding, PLO, AppRec) over RabbitMQ"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    // ---- XML and schemas ----
    /// Copy the official schema files into place, verifying every SHA-256 of xsd/MANIFEST.toml.
    InstallSchemas(helsemelding::schemas::InstallSchemasArgs),
    /// One line per MsgHead/AppRec file: type, MsgId, HER levels, copies, payload, patient identified (no patient data).
    Inspect(helsemelding::inspect::InspectArgs),
    /// Validate messages against the official schemas (prints path, verdict, detail per file).
    Validate(helsemelding::xsd::cli::ValidateArgs),

    // ---- signed envelopes ----
    /// Verify DER CMS SignedData envelopes: one `path<TAB>verdict<TAB>detail` line per file.
    Verify(helsemelding::cms::cli::VerifyArgs),
    /// Sign content into a DER CMS SignedData envelope.
    Sign(helsemelding::cms::cli::SignArgs),

    // ---- the gateway ----
    /// Run the gateway: consume gateway_inbound, verify, validate, route, deliver, answer (until SIGTERM).
    Serve(helsemelding::gateway::cli::ServeArgs),
    /// Make the running gateway re-read its configuration, register and trust directory (SIGHUP).
    #[command(long_about = helsemelding::gateway::cli::RELOAD_HELP)]
    Reload(helsemelding::gateway::cli::ReloadArgs),
    /// Sign files as a sender would and publish them to the intake.
    Replay(helsemelding::gateway::cli::ReplayArgs),
    /// Follow the routing log in a readable form.
    Tail(helsemelding::gateway::cli::TailArgs),
    /// Move messages from gateway_dead_letter back to gateway_inbound (confirmed, then acked).
    Redrive(helsemelding::amqp::redrive::RedriveArgs),
    /// Validate the configuration, the address register and the files they name; print every problem.
    CheckConfig(helsemelding::config::CheckConfigArgs),
    /// Show where a message is, per recipient, from the delivery store.
    Status(helsemelding::store::StatusArgs),
    /// Copy a redb delivery store into PostgreSQL (idempotent; verified by counts, exit 1 on a mismatch).
    MigrateStore(helsemelding::store::MigrateStoreArgs),
    /// Write the health community's report (report.html, indicators.csv, indicators.xlsx) for some months.
    Report(helsemelding::insight::report::ReportArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        // ---- XML and schemas ----
        Command::InstallSchemas(a) => helsemelding::schemas::run_install(&a),
        Command::Inspect(a) => helsemelding::inspect::run(&a),
        Command::Validate(args) => helsemelding::xsd::cli::run(&args),

        // ---- signed envelopes ----
        Command::Verify(args) => helsemelding::cms::cli::run_verify(args),
        Command::Sign(args) => helsemelding::cms::cli::run_sign(args),

        // ---- the gateway ----
        Command::Serve(args) => helsemelding::gateway::cli::run_serve(&args),
        Command::Reload(args) => helsemelding::gateway::cli::run_reload(&args),
        Command::Replay(args) => helsemelding::gateway::cli::run_replay(&args),
        Command::Tail(args) => helsemelding::gateway::cli::run_tail(&args),
        Command::Redrive(args) => helsemelding::amqp::redrive::run(args),
        Command::CheckConfig(args) => helsemelding::config::run_check_config(&args),
        Command::Status(args) => helsemelding::store::run_status(&args),
        Command::MigrateStore(args) => helsemelding::store::run_migrate_store(&args),
        Command::Report(args) => helsemelding::insight::report::run(&args),
    }
}
