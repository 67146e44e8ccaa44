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
//! `serve` would apply at start; a database it cannot reach is a problem. Each `amqps://` broker
//! URL is connected to once, because only the broker can show whether its certificate chains to
//! `tls_ca_file`: a refused certificate (or login) is a problem naming the URL, a node that cannot
//! be reached only a warning (a cluster node may be down while the configuration is right).

use std::path::PathBuf;
use std::process::ExitCode;

use super::{redact_url, GatewayConfig, StoreBackend, DEFAULT_CONFIG_PATH};

/// Arguments of `check-config`.
#[derive(Debug, clap::Args)]
pub struct CheckConfigArgs {
    /// The gateway configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
}

/// The intake as `check-config` reports it: one queue, or the partitions and this instance's share.
fn intake(amqp: &super::AmqpConfig, max_message_bytes: u64) -> String {
    let queues = usize::from(amqp.partitions) + 1;
    // Each partition's fixed window and what it bounds (budget::partition_window), so an operator
    // sees what max_inflight_bytes buys before the first message.
    let window = || {
        let w = crate::amqp::budget::partition_window(
            amqp.max_inflight_bytes,
            queues,
            amqp.prefetch,
            max_message_bytes,
        );
        format!(
            "window {w} per queue, max_inflight_bytes {} MiB",
            amqp.max_inflight_bytes >> 20
        )
    };
    match (amqp.partitions, &amqp.prefer_partitions) {
        (0, _) => "gateway_inbound".to_owned(),
        (k, None) => format!(
            "{queues} queues (partitions = {k}, all subscribed at once; {})",
            window()
        ),
        (k, Some(p)) => format!(
            "{queues} queues (partitions = {k}, preferring {p:?}, the rest after 5 s; {})",
            window()
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
            let (tls_problems, tls_warnings) = check_tls_brokers(cfg);
            if !tls_problems.is_empty() {
                for p in &tls_problems {
                    println!("{}: {p}", args.config.display());
                }
                eprintln!("{} problem(s) in the configuration", tls_problems.len());
                return ExitCode::FAILURE;
            }
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
                std::iter::once(&cfg.amqp.url)
                    .chain(&cfg.amqp.fallback_urls)
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>()
                    .join(" "),
                intake(&cfg.amqp, cfg.policy.max_message_bytes),
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
            for w in tls_warnings {
                println!("warning: {w}");
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

/// Connects once to every `amqps://` broker URL (module comment: why). Problems (the certificate
/// or the login refused) and warnings (unreachable), one line each, naming the key and URL, as
/// `check-config` prints them.
pub fn check_tls_brokers(cfg: &GatewayConfig) -> (Vec<String>, Vec<String>) {
    let (mut problems, mut warnings) = (Vec::new(), Vec::new());
    let urls: Vec<(String, &String)> = if cfg.amqp.fallback_urls.is_empty() {
        vec![("amqp.url".to_owned(), &cfg.amqp.url)]
    } else {
        std::iter::once(&cfg.amqp.url)
            .chain(&cfg.amqp.fallback_urls)
            .enumerate()
            .map(|(i, u)| (format!("amqp.urls[{i}]"), u))
            .collect()
    };
    let tls: Vec<_> = urls
        .into_iter()
        .filter(|(_, u)| u.starts_with("amqps://"))
        .collect();
    if tls.is_empty() {
        return (problems, warnings);
    }
    let runtime = match crate::store::command_runtime() {
        Ok(r) => r,
        Err(e) => return (vec![e], warnings),
    };
    for (key, url) in tls {
        let mut settings = crate::amqp::AmqpSettings::new(url.clone(), "check-config");
        settings.tls_ca_file = cfg.amqp.tls_ca_file.clone();
        let outcome = runtime.block_on(async {
            tokio::time::timeout(
                std::time::Duration::from_secs(10),
                crate::amqp::connection::connect(&settings),
            )
            .await
        });
        match outcome {
            Ok(Ok(connection)) => {
                let _ = runtime.block_on(connection.close(200, "check-config".into()));
            }
            Ok(Err(e)) if e.is_configuration() => problems.push(format!("{key}: {e}")),
            Ok(Err(e)) => warnings.push(format!("{key}: cannot check TLS now: {e}")),
            Err(_) => warnings.push(format!(
                "{key}: cannot check TLS now: {} did not answer within 10 s",
                redact_url(url)
            )),
        }
    }
    (problems, warnings)
}
