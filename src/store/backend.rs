//! One store interface, two backends (DESIGN §6): [`StoreHandle`] is what the gateway, the
//! housekeeping pass and the tools hold; behind it is either the embedded redb store (the
//! default, one instance, nothing to install) or PostgreSQL (several instances sharing state).
//!
//! An enum rather than a trait object: the set of backends is closed and known here, the methods
//! are `async` (a `dyn` trait would need boxed futures on the hot path, `commit` and `get` of every
//! message), and the gateway keeps calling the same inherent methods it always did. Both variants
//! answer with the same types and the same [`StoreError`]s, because both stage every change
//! through the same function (`stage` in `mod.rs`).
//!
//! Failure modes: those of the backend; [`StoreHandle::open`] fails when the redb file cannot be
//! opened or PostgreSQL cannot be reached or migrated (the gateway does not start then).

use std::path::Path;

use tokio::sync::watch;

use super::handle::{Recorded, RedbHandle, StoreHealth, StoreSize};
use super::pg_handle::PgHandle;
use super::{Change, DeliveryStore, MessageRecord, OverdueRecipient, StoreError};
use crate::config::StoreBackend;
use crate::ids::{HerId, MsgId, Timestamp};

/// Async access to the delivery store, with group-committed writes, on either backend.
pub enum StoreHandle {
    Redb(RedbHandle),
    Postgres(PgHandle),
}

macro_rules! each {
    ($self:ident, $h:ident => $e:expr) => {
        match $self {
            StoreHandle::Redb($h) => $e,
            StoreHandle::Postgres($h) => $e,
        }
    };
}

impl StoreHandle {
    /// Starts the redb writer over an open store (`queue` bounds the requests waiting for it).
    pub fn start(store: DeliveryStore, queue: usize) -> Result<StoreHandle, StoreError> {
        RedbHandle::start(store, queue).map(StoreHandle::Redb)
    }

    /// Opens the configured backend: redb in `state_dir`, or PostgreSQL (migrations applied).
    pub async fn open(
        backend: &StoreBackend,
        state_dir: &Path,
        queue: usize,
    ) -> Result<StoreHandle, StoreError> {
        match backend {
            StoreBackend::Redb => {
                let dir = state_dir.to_path_buf();
                let store = tokio::task::spawn_blocking(move || DeliveryStore::open(&dir))
                    .await
                    .map_err(|e| {
                        StoreError::Schema(format!("opening the store panicked: {e}"))
                    })??;
                StoreHandle::start(store, queue)
            }
            StoreBackend::Postgres { url } => {
                let config = super::pg::parse_url(url).map_err(StoreError::Schema)?;
                PgHandle::start(config, queue)
                    .await
                    .map(StoreHandle::Postgres)
            }
        }
    }

    /// Which backend, for logs and `/health`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreHandle::Redb(_) => "redb",
            StoreHandle::Postgres(_) => "postgres",
        }
    }

    /// Commits `changes` atomically; returns once they are durable (or refused).
    pub async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        each!(self, h => h.commit(changes).await)
    }

    /// Records `changes` without waiting for a flush of their own (DESIGN §3 step 2).
    pub async fn record(&self, changes: Vec<Change>) -> Result<Recorded, StoreError> {
        each!(self, h => h.record(changes).await)
    }

    /// Deletes records received before `now - retention`; returns how many.
    pub async fn prune(
        &self,
        now: Timestamp,
        retention: time::Duration,
    ) -> Result<usize, StoreError> {
        each!(self, h => h.prune(now, retention).await)
    }

    /// The record of one message.
    pub async fn get(
        &self,
        sender: HerId,
        msg_id: MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        each!(self, h => h.get(sender, msg_id).await)
    }

    /// Every record with this MsgId, by sender.
    pub async fn find(&self, msg_id: MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        each!(self, h => h.find(msg_id).await)
    }

    /// Recipients still `Delivered` whose AppRec clock started at or before `now - timeout`.
    pub async fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        each!(self, h => h.overdue(now, timeout).await)
    }

    /// Records held, and bytes on disk (redb: the file; PostgreSQL: the table with its indexes).
    pub async fn size(&self) -> Result<StoreSize, StoreError> {
        each!(self, h => h.size().await)
    }

    /// Write transactions committed so far (a group commit counts once).
    pub fn write_transactions(&self) -> u64 {
        each!(self, h => h.write_transactions())
    }

    /// Whether the store can be written now; changes as it fails and recovers.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        each!(self, h => h.health())
    }

    /// Whether this instance should do the periodic work (overdue sweep, pruning) now. redb: always
    /// (one instance owns its file). PostgreSQL: only the instance holding the session advisory
    /// lock, so that several instances sharing the database report each overdue recipient once.
    pub async fn periodic_lease(&self) -> Result<bool, StoreError> {
        match self {
            StoreHandle::Redb(_) => Ok(true),
            StoreHandle::Postgres(h) => h.periodic_lease().await,
        }
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it.
    pub async fn shutdown(self) {
        each!(self, h => h.shutdown().await)
    }
}
