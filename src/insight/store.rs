//! Where observations live: a store of its own, `<state dir>/insight.redb` (redb, the backend of
//! the delivery state, DESIGN §3), behind [`ObservationStore`] so that another backend (PostgreSQL,
//! DESIGN §6) can follow.
//!
//! Tables: `observations` (sender HER-id, MsgId → the observation as JSON: a re-sent message
//! overwrites itself, so a duplicate is stored once), `patients` (pseudonym → last seen, for
//! linking across key rotation), `gaps` (month → messages not recorded), `aggregates` (month →
//! the indicator cells frozen before that month's observations were deleted).
//!
//! Failure modes: [`InsightError`] — the file cannot be opened or a transaction fails. The
//! recorder counts what it could not write as a gap; nothing here can hold up delivery.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::observation::Observation;

/// The store's file in the state directory.
pub const FILE_NAME: &str = "insight.redb";

const OBSERVATIONS: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("observations");
const PATIENTS: TableDefinition<&str, i64> = TableDefinition::new("patients");
const GAPS: TableDefinition<&str, u64> = TableDefinition::new("gaps");
const AGGREGATES: TableDefinition<&str, &[u8]> = TableDefinition::new("aggregates");

/// Why the insight store failed.
#[derive(Debug, thiserror::Error)]
pub enum InsightError {
    #[error("insight store {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("insight store: {0}")]
    Database(String),
    #[error("insight store: a stored observation cannot be read: {0}")]
    Corrupt(String),
}

fn db_err(e: impl Into<redb::Error>) -> InsightError {
    InsightError::Database(e.into().to_string())
}

/// What the recorder writes and the report reads. `&self` everywhere: a backend serialises its
/// own writers (redb has one write transaction at a time) and readers never wait for them.
pub trait ObservationStore: Send + Sync {
    /// Stores observations (one transaction, one flush) and marks their patients as seen.
    fn put(&self, batch: &[Observation]) -> Result<(), InsightError>;
    /// The first of `candidates` (newest key first) already seen, if any.
    fn known(&self, candidates: &[String]) -> Result<Option<String>, InsightError>;
    /// Adds `n` messages not recorded in `month` (`YYYY-MM`).
    fn add_gap(&self, month: &str, n: u64) -> Result<(), InsightError>;
    /// Every stored observation.
    fn observations(&self) -> Result<Vec<Observation>, InsightError>;
    /// Messages not recorded, per month.
    fn gaps(&self) -> Result<BTreeMap<String, u64>, InsightError>;
    /// Frozen cells per month (JSON), kept after the month's observations were deleted.
    fn aggregates(&self) -> Result<BTreeMap<String, Vec<u8>>, InsightError>;
    /// One transaction: freezes `frozen` (month → cells JSON, an existing month is kept as it is),
    /// then deletes the observations `(sender, MsgId)` and the pseudonyms given.
    fn prune(
        &self,
        frozen: &[(String, Vec<u8>)],
        observations: &[(u32, String)],
        patients: &[String],
    ) -> Result<(), InsightError>;
}

/// The redb backend.
pub struct RedbStore {
    db: Db,
    path: PathBuf,
}

enum Db {
    ReadWrite(Database),
    ReadOnly(redb::ReadOnlyDatabase),
}

impl RedbStore {
    /// Opens (creating if needed) `dir/insight.redb`.
    pub fn open(dir: &Path) -> Result<RedbStore, InsightError> {
        std::fs::create_dir_all(dir).map_err(|e| InsightError::Open {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| InsightError::Open {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(OBSERVATIONS).map_err(db_err)?;
        txn.open_table(PATIENTS).map_err(db_err)?;
        txn.open_table(GAPS).map_err(db_err)?;
        txn.open_table(AGGREGATES).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(RedbStore {
            db: Db::ReadWrite(db),
            path,
        })
    }

    /// Opens an existing store for reading only (`helsemelding report`, also while `serve` runs).
    pub fn open_read_only(dir: &Path) -> Result<RedbStore, InsightError> {
        let path = dir.join(FILE_NAME);
        let db = redb::Builder::new()
            .open_read_only(&path)
            .map_err(|e| InsightError::Open {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        Ok(RedbStore {
            db: Db::ReadOnly(db),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<redb::ReadTransaction, InsightError> {
        match &self.db {
            Db::ReadWrite(d) => d.begin_read().map_err(db_err),
            Db::ReadOnly(d) => d.begin_read().map_err(db_err),
        }
    }

    fn write(&self) -> Result<redb::WriteTransaction, InsightError> {
        match &self.db {
            Db::ReadWrite(d) => d.begin_write().map_err(db_err),
            Db::ReadOnly(_) => Err(InsightError::Database("opened read-only".into())),
        }
    }
}

impl ObservationStore for RedbStore {
    fn put(&self, batch: &[Observation]) -> Result<(), InsightError> {
        let txn = self.write()?;
        {
            let mut obs = txn.open_table(OBSERVATIONS).map_err(db_err)?;
            let mut patients = txn.open_table(PATIENTS).map_err(db_err)?;
            for o in batch {
                let json =
                    serde_json::to_vec(o).map_err(|e| InsightError::Corrupt(e.to_string()))?;
                obs.insert((o.from, o.msg_id.as_str()), json.as_slice())
                    .map_err(db_err)?;
                if let Some(p) = &o.patient {
                    patients.insert(p.as_str(), o.received).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)
    }

    fn known(&self, candidates: &[String]) -> Result<Option<String>, InsightError> {
        let txn = self.read()?;
        let t = txn.open_table(PATIENTS).map_err(db_err)?;
        for c in candidates {
            if t.get(c.as_str()).map_err(db_err)?.is_some() {
                return Ok(Some(c.clone()));
            }
        }
        Ok(None)
    }

    fn add_gap(&self, month: &str, n: u64) -> Result<(), InsightError> {
        let txn = self.write()?;
        {
            let mut t = txn.open_table(GAPS).map_err(db_err)?;
            let had = t.get(month).map_err(db_err)?.map_or(0, |v| v.value());
            t.insert(month, had + n).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)
    }

    fn observations(&self) -> Result<Vec<Observation>, InsightError> {
        let txn = self.read()?;
        let t = txn.open_table(OBSERVATIONS).map_err(db_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(db_err)? {
            let (_, v) = e.map_err(db_err)?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|e| InsightError::Corrupt(e.to_string()))?,
            );
        }
        Ok(out)
    }

    fn gaps(&self) -> Result<BTreeMap<String, u64>, InsightError> {
        let txn = self.read()?;
        let t = txn.open_table(GAPS).map_err(db_err)?;
        let mut out = BTreeMap::new();
        for e in t.iter().map_err(db_err)? {
            let (k, v) = e.map_err(db_err)?;
            out.insert(k.value().to_owned(), v.value());
        }
        Ok(out)
    }

    fn aggregates(&self) -> Result<BTreeMap<String, Vec<u8>>, InsightError> {
        let txn = self.read()?;
        let t = txn.open_table(AGGREGATES).map_err(db_err)?;
        let mut out = BTreeMap::new();
        for e in t.iter().map_err(db_err)? {
            let (k, v) = e.map_err(db_err)?;
            out.insert(k.value().to_owned(), v.value().to_vec());
        }
        Ok(out)
    }

    fn prune(
        &self,
        frozen: &[(String, Vec<u8>)],
        observations: &[(u32, String)],
        patients: &[String],
    ) -> Result<(), InsightError> {
        let txn = self.write()?;
        {
            let mut agg = txn.open_table(AGGREGATES).map_err(db_err)?;
            for (month, cells) in frozen {
                if agg.get(month.as_str()).map_err(db_err)?.is_none() {
                    agg.insert(month.as_str(), cells.as_slice())
                        .map_err(db_err)?;
                }
            }
            let mut obs = txn.open_table(OBSERVATIONS).map_err(db_err)?;
            for (from, id) in observations {
                obs.remove((*from, id.as_str())).map_err(db_err)?;
            }
            let mut p = txn.open_table(PATIENTS).map_err(db_err)?;
            for k in patients {
                p.remove(k.as_str()).map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)
    }
}
