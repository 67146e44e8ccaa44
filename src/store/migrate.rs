//! `helsemelding migrate-store --from <state dir> --to postgres://…`: copies a redb delivery store
//! into PostgreSQL (DESIGN §6), so an existing installation can move to shared state.
//!
//! Input: the redb store in the state directory (opened read-only, read in chunks of [`CHUNK`] in
//! key order, so memory stays bounded) and the target database (its schema is migrated first).
//! Output: the records copied as they are (same encoding, same states and histories); a record
//! already in the target is left alone, so running it twice changes nothing. Then it verifies by
//! counts: every source record must be in the target with identical contents. Prints the counts;
//! exit 1 on a mismatch (e.g. a record that a gateway on PostgreSQL has already moved on) or an error.
//!
//! Stop the gateway that writes the redb store first: what it writes during the copy may be missed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::pg::{parse_url, PgStore};
use super::{DeliveryStore, StoreError};

/// Records read from redb and written to PostgreSQL per statement.
pub const CHUNK: usize = 1000;

/// Arguments of `migrate-store`.
#[derive(Debug, clap::Args)]
pub struct MigrateStoreArgs {
    /// The redb state directory (the gateway's `paths.state`, holding delivery.redb).
    #[arg(long)]
    pub from: PathBuf,
    /// The PostgreSQL connection URL (`postgres://user@host:5432/database`).
    #[arg(long)]
    pub to: String,
}

/// What a migration found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MigrationCounts {
    /// Records in the redb store.
    pub source: u64,
    /// Records this run inserted into PostgreSQL.
    pub inserted: u64,
    /// Source records found in PostgreSQL with identical contents after the copy.
    pub identical: u64,
    /// Records in the PostgreSQL table after the copy (other instances' included).
    pub target_total: u64,
}

impl MigrationCounts {
    /// Every source record is in the target, unchanged.
    pub fn verified(&self) -> bool {
        self.identical == self.source
    }
}

/// Copies the redb store in `from` into the database at `to` and counts.
pub async fn migrate_store(from: &Path, to: &str) -> Result<MigrationCounts, StoreError> {
    let config = parse_url(to).map_err(StoreError::Schema)?;
    let source = DeliveryStore::open_read_only(from)?;
    let target = PgStore::open(&config).await?;
    let mut counts = MigrationCounts::default();
    let mut last = None;
    loop {
        let chunk = source.records_after(last.as_ref(), CHUNK)?;
        let Some(tail) = chunk.last() else { break };
        last = Some((tail.sender, tail.msg_id.clone()));
        counts.source += chunk.len() as u64;
        counts.inserted += target.import(&chunk).await?;
        counts.identical += target.count_identical(&chunk).await?;
    }
    counts.target_total = target.records().await?;
    Ok(counts)
}

/// Runs `migrate-store`.
pub fn run_migrate_store(args: &MigrateStoreArgs) -> ExitCode {
    let file = args.from.join(super::FILE_NAME);
    if !file.exists() {
        eprintln!("no delivery store at {}", file.display());
        return ExitCode::FAILURE;
    }
    let Some(runtime) = super::command_runtime_or_report() else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(migrate_store(&args.from, &args.to)) {
        Ok(c) => {
            println!("source (redb {}): {} records", file.display(), c.source);
            println!(
                "inserted: {}, already present: {}",
                c.inserted,
                c.source - c.inserted.min(c.source)
            );
            println!(
                "verified: {} of {} identical in PostgreSQL {} (the table holds {})",
                c.identical,
                c.source,
                crate::config::redact_url(&args.to),
                c.target_total
            );
            if c.verified() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "MISMATCH: {} source record(s) are missing or different in PostgreSQL",
                    c.source - c.identical.min(c.source)
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
