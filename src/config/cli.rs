//! `helsemelding check-config [--config config/gateway.toml]`: validates the configuration, the
//! address register and every file they name, and prints every problem (one per line, as
//! `file:line: key: what`), or one "configuration OK" summary line. Exit status 1 on problems.
//!
//! It checks exactly what `serve` checks before it starts (`setup::load`): beyond the files
//! themselves, that the installed schemas match `xsd/MANIFEST.toml` and compile, that the trust
//! store loads, that every party certificate parses, that the gateway's signing key matches
//! its certificate, and for encryption (DESIGN §1) that each of the hub's `encryption_keys` matches
//! its certificate and that every encryption certificate (the hub's and the parties') allows
//! keyEncipherment and is valid now. Certificates that expire within 30 days (or have expired) —
//! signing and encryption alike — are listed as warnings after the summary line. With
//! `[store] backend = "postgres"` it connects and reports the schema version and the migrations
//! `serve` would apply at start; a database it cannot reach is a problem.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{redact_url, StoreBackend, DEFAULT_CONFIG_PATH};

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The gateway configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// The intake as `check-config` reports it: one queue, or the partitions and this instance's share.
fn intake(amqp: &super::AmqpConfig) -> String {
    match (amqp.partitions, &amqp.prefer_partitions) {
        (0, _) => "gateway_inbound".to_owned(),
        (k, None) => format!("{} queues (partitions = {k}, all subscribed at once)", k + 1),
        (k, Some(p)) => format!(
            "{} queues (partitions = {k}, preferring {:?}, the rest after 5 s)",
            k + 1,
            p
        ),
    }
}

/// Runs `check-config`.
pub fn run_check_config(args: &CheckConfigArgs) -> ExitCode {
    match crate::setup::load(&args.config) {
        Ok(loaded) => {
            let (cfg, register) = (&loaded.config, &loaded.register);
            let store = match check_store(&cfg.store) {
                Ok(s) => s,
                Err(problem) => {
                    println!("{}: store.url: {problem}", args.config.display());
                    eprintln!("1 problem(s) in the configuration");
                    return ExitCode::FAILURE;
                }
            };
            let organisations = register
                .parties()
                .iter()
                .filter(|p| register.is_organisation(p.her_id))
                .count();
            println!(
                "configuration OK: {} parties ({} organisations, {} services/persons), gateway HER-id {}, broker {}, intake {}, register {}, state {}, store {}",
                register.parties().len(),
                organisations,
                register.parties().len() - organisations,
                cfg.gateway.her_id,
                redact_url(&cfg.amqp.url),
                intake(&cfg.amqp),
                cfg.paths.register.display(),
                cfg.paths.state.display(),
                store,
            );
            // Certificates about to expire are not configuration errors, but operators must act
            // before they stop messages (issue 16): listed, with the days left.
            let now = time::OffsetDateTime::now_utc();
            for c in loaded.certificates.iter().filter(|c| c.due(now)) {
                println!("warning: {}", c.warning(now));
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!("{} problem(s) in the configuration", problems.len());
            ExitCode::FAILURE
        }
    }
}

/// The store part of the summary line. PostgreSQL: connects and reads the schema version (and
/// what `serve` would migrate at start); unreachable, or a schema newer than this program, is a
/// problem.
fn check_store(backend: &StoreBackend) -> Result<String, String> {
    let url = match backend {
        StoreBackend::Redb => return Ok("redb".into()),
        StoreBackend::Postgres { url } => url,
    };
    let config = crate::store::pg::parse_url(url)?;
    let runtime = crate::store::command_runtime()?;
    let status = runtime
        .block_on(crate::store::pg::schema_status(&config))
        .map_err(|e| e.to_string())?;
    Ok(format!("postgres {} ({status})", redact_url(url)))
}
