//! `helsemelding status [--config config/gateway.toml] [--store-url postgres://…] MSGID`: where a
//! message is, per recipient, read from the delivery store (redb opened read-only, or the
//! PostgreSQL store of `[store]`, or the one `--store-url` names). One header line per record (a MsgId may have
//! been used by more than one sender), then one line per recipient: HER-id, role, state, AppRec
//! code(s), when the state was entered, the AppRec Id, and the event history. Exit 1 if the MsgId
//! is unknown or the store cannot be read; the message says which.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{DeliveryStore, MessageRecord};
use crate::address::RecipientRole;
use crate::config::{GatewayConfig, StoreBackend, DEFAULT_CONFIG_PATH};
use crate::ids::{MsgId, Timestamp};

/// Arguments of `status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The gateway configuration file (for `paths.state`).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Read this PostgreSQL store instead of the configured one (then no configuration is read).
    #[arg(long)]
    pub store_url: Option<String>,
    /// The MsgHead MsgId to look up.
    pub msg_id: String,
}

/// Runs `status`.
pub fn run_status(args: &StatusArgs) -> ExitCode {
    let msg_id = MsgId::new(args.msg_id.as_str());
    if let Some(url) = &args.store_url {
        return status_postgres(url, &msg_id);
    }
    let cfg = match GatewayConfig::load(&args.config) {
        Ok(cfg) => cfg,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            return ExitCode::FAILURE;
        }
    };
    if let StoreBackend::Postgres { url } = &cfg.store {
        return status_postgres(url, &msg_id);
    }
    let file = cfg.paths.state.join(super::FILE_NAME);
    if !file.exists() {
        eprintln!(
            "no delivery store at {}: nothing recorded yet, or paths.state points elsewhere",
            file.display()
        );
        return ExitCode::FAILURE;
    }
    let store = match DeliveryStore::open_read_only(&cfg.paths.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    print_found(
        store.find(&msg_id),
        &msg_id,
        &store.path().display().to_string(),
    )
}

/// `status` against a PostgreSQL store (read only: nothing is migrated or written).
fn status_postgres(url: &str, msg_id: &MsgId) -> ExitCode {
    let config = match super::pg::parse_url(url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("--store-url / store.url: not a PostgreSQL connection URL: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = super::command_runtime_or_report() else {
        return ExitCode::FAILURE;
    };
    let found = runtime.block_on(async {
        let store = super::PgStore::open_existing(&config).await?;
        store.find(msg_id).await
    });
    print_found(found, msg_id, &crate::config::redact_url(url))
}

fn print_found(
    found: Result<Vec<MessageRecord>, super::StoreError>,
    msg_id: &MsgId,
    store: &str,
) -> ExitCode {
    match found {
        Ok(records) if records.is_empty() => {
            eprintln!("unknown MsgId {msg_id}: not in the delivery store {store}");
            ExitCode::FAILURE
        }
        Ok(records) => {
            for r in &records {
                print!("{}", render(r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn when(t: Timestamp) -> String {
    crate::ids::rfc3339(t)
}

/// The readable form `status` prints for one record.
pub fn render(r: &MessageRecord) -> String {
    let mut out = format!(
        "message {} from {} type {} received {} gendate {} sha256 {}\n",
        r.msg_id,
        r.sender,
        r.msg_type,
        when(r.received_at),
        r.gen_date.map_or_else(|| "-".into(), when),
        &hex::encode(r.content_sha256)[..16],
    );
    for rec in &r.recipients {
        let codes = if rec.codes.is_empty() {
            "-".to_owned()
        } else {
            rec.codes
                .iter()
                .map(|c| c.code())
                .collect::<Vec<_>>()
                .join(",")
        };
        let history = rec
            .events
            .iter()
            .map(|e| format!("{:?}@{}", e.event, when(e.at)))
            .collect::<Vec<_>>()
            .join(" ");
        out.push_str(&format!(
            "  {:<10} {:<4} {:<16} code {:<8} since {} apprec {} history [{}]\n",
            rec.her.map_or_else(|| "-".into(), |h| h.to_string()),
            match rec.role {
                RecipientRole::Primary => "PRIM",
                RecipientRole::Copy => "COP",
            },
            rec.state.name(),
            codes,
            rec.since().map_or_else(|| "-".into(), when),
            rec.apprec_id.as_ref().map_or("-", MsgId::as_str),
            history,
        ));
    }
    out
}
