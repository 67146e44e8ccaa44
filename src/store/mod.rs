//! The delivery-state store: one record per message, one sub-state per recipient, durable in redb
//! (DESIGN §3; redb rather than sled for the reasons given there) or in PostgreSQL for several
//! instances (DESIGN §6, `pg.rs`), both behind [`StoreHandle`] (`backend.rs`).
//!
//! Input: [`Change`]s — "create this message's record" and "apply this [`Event`] to recipient *i* of
//! message *k*" — committed in batches; queries by key, by MsgId (`status`), for overdue recipients
//! and for pruning. Output: [`MessageRecord`]s. The file is `delivery.redb` in the configured state
//! directory (`paths.state`).
//!
//! What is stored: ids, parties, roles, message type, times, states, AppRec codes and the Id of the
//! AppRec issued or forwarded, and the SHA-256 of the content (so the same MsgId arriving with a
//! different body is recognised). **Never** message bodies or patient data.
//!
//! Encoding: a compact binary layout with a version byte (`record.rs`, which says why), decoded
//! by version; records written as JSON by earlier versions are still read.
//!
//! Atomicity: [`DeliveryStore::commit_batch`] applies its changes all-or-nothing in one write
//! transaction (one durable flush). Each change is checked first — a state change only through
//! [`DeliveryState::on`] — and the first illegal one fails the whole batch with an error naming the
//! message, the recipient and the move; nothing of that batch is written. [`DeliveryStore::commit_group`]
//! puts many batches (from many callers) into one transaction; a failing batch affects only its own
//! caller. The group commit thread is [`StoreHandle`] (`handle.rs`).
//!
//! Indexes (so queries do not scan everything): `by_msg_id` (MsgId → sender) for `find`;
//! `by_received` (received time → key) for `prune`; `awaiting_apprec` (overdue clock start → key),
//! holding exactly the messages with at least one recipient `Delivered`, for `overdue`.
//!
//! Failure modes: [`StoreError`] — infrastructure faults (I/O, a corrupt record; retry, never an
//! AppRec) versus refused changes (duplicate record, unknown message/recipient, illegal transition),
//! see [`StoreError::is_infrastructure`].

mod backend;
mod cli;
mod handle;
mod migrate;
pub mod pg;
mod pg_handle;
mod record;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redb::{
    Database, MultimapTableDefinition, ReadOnlyDatabase, ReadableDatabase, ReadableMultimapTable,
    ReadableTable, TableDefinition,
};
use sha2::{Digest, Sha256};

use crate::address::RecipientRole;
use crate::codes::ErrorCode;
use crate::ids::{HerId, MsgId, Timestamp};

pub use backend::StoreHandle;
pub use cli::{render as render_status, run_status, StatusArgs};
pub use handle::{Recorded, RedbHandle, StoreHealth, StoreSize};
pub use migrate::{run_migrate_store, MigrateStoreArgs};
pub use pg::PgStore;
pub use pg_handle::PgHandle;
pub use state::{DeliveryState, Event, IllegalTransition};

/// A runtime for a command that talks to PostgreSQL once (`status`, `check-config`,
/// `migrate-store`); its error is the message to print.
pub fn command_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// [`command_runtime`] for a command: `None` after printing why it could not start.
pub(crate) fn command_runtime_or_report() -> Option<tokio::runtime::Runtime> {
    command_runtime().map_err(|e| eprintln!("{e}")).ok()
}

/// The database file inside the state directory.
pub const FILE_NAME: &str = "delivery.redb";

/// One writing process (the gateway) and any number of read-only ones (`status`) at the same time;
/// redb's default would lock `status` out while the gateway runs. A second gateway process on the
/// same state directory is still refused.
const CONCURRENCY: redb::ConcurrencyMode = redb::ConcurrencyMode::SingleWriter;

/// (sender HER-id, MsgId) → [`MessageRecord`] encoded by `record.rs`.
const MESSAGES: TableDefinition<(u32, &str), &[u8]> = TableDefinition::new("messages");
/// MsgId → sender HER-ids (one MsgId may come from several senders).
const BY_MSG_ID: MultimapTableDefinition<&str, u32> = MultimapTableDefinition::new("by_msg_id");
/// received time (unix seconds) → key, for `prune`.
const BY_RECEIVED: MultimapTableDefinition<i64, (u32, &str)> =
    MultimapTableDefinition::new("by_received");
/// overdue clock start (unix seconds) → key, only while some recipient is `Delivered`.
const AWAITING: MultimapTableDefinition<i64, (u32, &str)> =
    MultimapTableDefinition::new("awaiting_apprec");

/// A state change with the time it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StampedEvent {
    pub event: Event,
    #[serde(with = "unix_ms")]
    pub at: Timestamp,
}

/// One recipient of a message, as addressed, and where its copy is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientRecord {
    /// The communication party (or the party delivered to); `None` only when the address carried
    /// no HER-id at all (then the recipient can only be `Rejected`).
    pub her: Option<HerId>,
    pub role: RecipientRole,
    pub state: DeliveryState,
    /// Every `Error` code of the AppRec issued (gateway) or forwarded (recipient) for this recipient.
    #[serde(default)]
    pub codes: Vec<ErrorCode>,
    /// The `Id` of the AppRec the gateway issued or forwarded for this recipient.
    #[serde(default)]
    pub apprec_id: Option<MsgId>,
    /// Every accepted event, oldest first: the recipient's times, and a replayable history.
    #[serde(default)]
    pub events: Vec<StampedEvent>,
}

impl RecipientRecord {
    /// A recipient that has just been received.
    pub fn new(her: Option<HerId>, role: RecipientRole) -> Self {
        RecipientRecord {
            her,
            role,
            state: DeliveryState::Received,
            codes: Vec::new(),
            apprec_id: None,
            events: Vec::new(),
        }
    }

    /// When the current state was entered (`None` while still `Received`).
    pub fn since(&self) -> Option<Timestamp> {
        self.events.last().map(|e| e.at)
    }
}

/// Everything the gateway keeps about one message (key: sender HER-id + MsgId).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageRecord {
    pub sender: HerId,
    pub msg_id: MsgId,
    /// MsgHead `MsgInfo/Type` (code list 8279).
    pub msg_type: String,
    /// SHA-256 of the message as received (the signed envelope).
    #[serde(with = "hex_digest")]
    pub content_sha256: [u8; 32],
    #[serde(with = "unix_ms")]
    pub received_at: Timestamp,
    /// MsgHead `MsgInfo/GenDate`, when it could be read.
    #[serde(with = "opt_unix_ms", default)]
    pub gen_date: Option<Timestamp>,
    pub recipients: Vec<RecipientRecord>,
}

impl MessageRecord {
    /// A fresh record, every recipient `Received`. `content` is hashed, not kept.
    pub fn new(
        sender: HerId,
        msg_id: MsgId,
        msg_type: impl Into<String>,
        content: &[u8],
        received_at: Timestamp,
        gen_date: Option<Timestamp>,
        recipients: impl IntoIterator<Item = (Option<HerId>, RecipientRole)>,
    ) -> Self {
        MessageRecord {
            sender,
            msg_id,
            msg_type: msg_type.into(),
            content_sha256: content_sha256(content),
            received_at,
            gen_date,
            recipients: recipients
                .into_iter()
                .map(|(her, role)| RecipientRecord::new(her, role))
                .collect(),
        }
    }

    /// Where the AppRec clock starts: GenDate (HIS 80415:2012 §3.2: no AppRec within 96 hours of
    /// GenDate), but never later than when we received it, so a sender's clock running ahead cannot
    /// postpone the alarm.
    pub fn clock_start(&self) -> Timestamp {
        self.gen_date
            .map_or(self.received_at, |g| g.min(self.received_at))
    }

    /// The index of the first recipient with this HER-id (to apply an AppRec from that party).
    pub fn recipient_index(&self, her: HerId) -> Option<usize> {
        self.recipients.iter().position(|r| r.her == Some(her))
    }

    /// Whether `content` is the body this record was created from.
    pub fn same_content(&self, content: &[u8]) -> bool {
        self.content_sha256 == content_sha256(content)
    }

    /// Applies one transition to this record in memory, exactly as a commit of it does (the
    /// store stages every commit through here), so a caller that has just committed `changes`
    /// can know the stored record without reading it back. The record is unchanged on error.
    pub fn apply(&mut self, tr: &Transition) -> Result<(), StoreError> {
        let count = self.recipients.len();
        let Some(r) = self.recipients.get_mut(tr.recipient) else {
            return Err(StoreError::UnknownRecipient {
                sender: tr.sender,
                msg_id: tr.msg_id.clone(),
                index: tr.recipient,
                count,
            });
        };
        r.state = r.state.on(tr.event).map_err(|source| StoreError::Illegal {
            sender: tr.sender,
            msg_id: tr.msg_id.clone(),
            index: tr.recipient,
            source,
        })?;
        r.events.push(StampedEvent {
            event: tr.event,
            at: tr.at,
        });
        r.codes.extend(tr.codes.iter().copied());
        if tr.apprec_id.is_some() {
            r.apprec_id = tr.apprec_id.clone();
        }
        Ok(())
    }

    /// The recipients still waiting for their AppRec, as [`DeliveryStore::overdue`] lists them.
    fn awaiting_recipients(&self) -> impl Iterator<Item = OverdueRecipient> + '_ {
        self.recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.state.awaits_apprec())
            .map(|(i, r)| OverdueRecipient {
                sender: self.sender,
                msg_id: self.msg_id.clone(),
                recipient: i,
                her: r.her,
                clock_start: self.clock_start(),
            })
    }

    fn awaits_apprec(&self) -> bool {
        self.recipients.iter().any(|r| r.state.awaits_apprec())
    }
}

/// SHA-256 of a message body, as stored in [`MessageRecord::content_sha256`].
pub fn content_sha256(content: &[u8]) -> [u8; 32] {
    Sha256::digest(content).into()
}

/// A state event for one recipient of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub sender: HerId,
    pub msg_id: MsgId,
    /// Index into [`MessageRecord::recipients`] (stable: the list never changes after creation).
    pub recipient: usize,
    pub event: Event,
    pub at: Timestamp,
    /// The Id of the AppRec issued or forwarded with this event, if any.
    pub apprec_id: Option<MsgId>,
    /// The AppRec's error codes, if any (added to [`RecipientRecord::codes`]).
    pub codes: Vec<ErrorCode>,
}

/// One change to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Record a newly received message; every recipient must be `Received` with no events.
    Create(MessageRecord),
    /// Apply an event to one recipient through [`DeliveryState::on`].
    Apply(Transition),
}

/// A recipient whose AppRec is overdue (see [`DeliveryStore::overdue`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverdueRecipient {
    pub sender: HerId,
    pub msg_id: MsgId,
    pub recipient: usize,
    pub her: Option<HerId>,
    pub clock_start: Timestamp,
}

/// Why the store refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use state directory {path}: {source}")]
    Directory {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("cannot open delivery store {path}: {source}")]
    Open {
        path: PathBuf,
        source: Arc<redb::DatabaseError>,
    },
    #[error("delivery store: {0}")]
    Database(Arc<redb::Error>),
    #[error("stored record for sender {sender}, MsgId {msg_id} cannot be decoded: {reason}")]
    Corrupt {
        sender: HerId,
        msg_id: MsgId,
        reason: String,
    },
    #[error("message {msg_id} from sender {sender} is already recorded ({})", if *same_content { "same content: a duplicate" } else { "DIFFERENT content under the same MsgId" })]
    Duplicate {
        sender: HerId,
        msg_id: MsgId,
        same_content: bool,
    },
    #[error("no record of message {msg_id} from sender {sender}")]
    UnknownMessage { sender: HerId, msg_id: MsgId },
    #[error(
        "message {msg_id} from sender {sender} has {count} recipient(s), no recipient #{index}"
    )]
    UnknownRecipient {
        sender: HerId,
        msg_id: MsgId,
        index: usize,
        count: usize,
    },
    #[error("message {msg_id} from sender {sender}, recipient #{index}: {source}")]
    Illegal {
        sender: HerId,
        msg_id: MsgId,
        index: usize,
        source: IllegalTransition,
    },
    #[error("new record for message {msg_id} from sender {sender} is not fresh: {reason}")]
    NotFresh {
        sender: HerId,
        msg_id: MsgId,
        reason: String,
    },
    #[error("delivery store (PostgreSQL): {during}: {}", pg_reason(source))]
    Postgres {
        during: &'static str,
        source: Arc<tokio_postgres::Error>,
    },
    #[error("delivery store (PostgreSQL): {0}")]
    Schema(String),
    #[error("the delivery store was opened read-only")]
    ReadOnly,
    #[error("the delivery store's writer thread has stopped")]
    Stopped,
}

impl StoreError {
    /// True for faults of the machine (I/O, corruption, shutdown): retry or stop, never an AppRec.
    /// False for refused changes, which say something about the message (a duplicate, a second
    /// AppRec, an AppRec for a message we never saw).
    pub fn is_infrastructure(&self) -> bool {
        matches!(
            self,
            Self::Directory { .. }
                | Self::Open { .. }
                | Self::Database(_)
                | Self::Corrupt { .. }
                | Self::Postgres { .. }
                | Self::Schema(_)
                | Self::ReadOnly
                | Self::Stopped
        )
    }

    /// True for a failed read or write of the database file (a full disk, an I/O error, or redb's
    /// "previous I/O error" latch after one). redb must then be closed and reopened before it
    /// works again; [`StoreHandle`] does that and retries, so callers wait instead of failing.
    pub fn is_io(&self) -> bool {
        match self {
            Self::Database(e) => matches!(
                **e,
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            ),
            Self::Open { source, .. } => matches!(
                **source,
                redb::DatabaseError::Storage(
                    redb::StorageError::Io(_) | redb::StorageError::PreviousIo
                )
            ),
            _ => false,
        }
    }

    /// True when the PostgreSQL server could not be reached or the connection broke (as opposed to
    /// an error the server reported for a statement): the connection must be made again.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            Self::Postgres { source, .. } => match source.code() {
                None => true,
                // Class 08: connection exception; 57P01..57P03: the server is shutting down or
                // starting (operator intervention).
                Some(c) => c.code().starts_with("08") || c.code().starts_with("57P"),
            },
            _ => false,
        }
    }
}

/// A PostgreSQL error with its server message (tokio-postgres' own text is only "db error").
fn pg_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(inner) => format!("{e}: {inner}"),
            None => e.to_string(),
        },
    }
}

fn db_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Database(Arc::new(e.into()))
}

enum Db {
    ReadWrite(Database),
    ReadOnly(ReadOnlyDatabase),
}

/// The redb-backed store. `Sync`: reads may run on any thread while one thread writes.
pub struct DeliveryStore {
    db: Db,
    path: PathBuf,
    write_transactions: AtomicU64,
}

impl std::fmt::Debug for DeliveryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl DeliveryStore {
    /// Opens (creating if needed) `dir/delivery.redb` for reading and writing. After an unclean stop
    /// redb recovers to the last committed transaction here.
    pub fn open(dir: &Path) -> Result<DeliveryStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Directory {
            path: dir.to_path_buf(),
            source: Arc::new(e),
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_concurrency_mode(CONCURRENCY)
            .create(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                source: Arc::new(e),
            })?;
        // Create every table once, so readers (also read-only ones) never meet a missing table.
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(MESSAGES).map_err(db_err)?;
        txn.open_multimap_table(BY_MSG_ID).map_err(db_err)?;
        txn.open_multimap_table(BY_RECEIVED).map_err(db_err)?;
        txn.open_multimap_table(AWAITING).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(DeliveryStore {
            db: Db::ReadWrite(db),
            path,
            write_transactions: AtomicU64::new(0),
        })
    }

    /// Opens an existing store for reading only (the `status` command).
    pub fn open_read_only(dir: &Path) -> Result<DeliveryStore, StoreError> {
        let path = dir.join(FILE_NAME);
        let db = Database::builder()
            .set_concurrency_mode(CONCURRENCY)
            .open_read_only(&path)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                source: Arc::new(e),
            })?;
        Ok(DeliveryStore {
            db: Db::ReadOnly(db),
            path,
            write_transactions: AtomicU64::new(0),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions committed since open (each is one durable flush).
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions.load(Ordering::Relaxed)
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction, StoreError> {
        match &self.db {
            Db::ReadWrite(db) => db.begin_read().map_err(db_err),
            Db::ReadOnly(db) => db.begin_read().map_err(db_err),
        }
    }

    fn writer(&self) -> Result<&Database, StoreError> {
        match &self.db {
            Db::ReadWrite(db) => Ok(db),
            Db::ReadOnly(_) => Err(StoreError::ReadOnly),
        }
    }

    /// How many message records the store holds (the soak checks that none outlive retention).
    pub fn records(&self) -> Result<u64, StoreError> {
        use redb::ReadableTableMetadata as _;
        let txn = self.begin_read()?;
        let table = txn.open_table(MESSAGES).map_err(db_err)?;
        table.len().map_err(db_err)
    }

    /// Up to `limit` records in key order (sender, MsgId), starting after `after` (from the first
    /// when `None`): `migrate-store` copies the store chunk by chunk with this, so a store of any
    /// size is read in bounded memory.
    pub fn records_after(
        &self,
        after: Option<&(HerId, MsgId)>,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(MESSAGES).map_err(db_err)?;
        let range = match after {
            Some((s, m)) => table.range((s.0, m.as_str())..),
            None => table.range::<(u32, &str)>(..),
        }
        .map_err(db_err)?;
        let mut out = Vec::with_capacity(limit.min(4096));
        for entry in range {
            let (k, v) = entry.map_err(db_err)?;
            let (s, m) = k.value();
            let (sender, msg_id) = (HerId(s), MsgId(m.to_owned()));
            if after.is_some_and(|(a, b)| *a == sender && *b == msg_id) {
                continue;
            }
            if out.len() == limit {
                break;
            }
            out.push(decode(sender, &msg_id, v.value())?);
        }
        Ok(out)
    }

    /// The record of one message.
    pub fn get(&self, sender: HerId, msg_id: &MsgId) -> Result<Option<MessageRecord>, StoreError> {
        let txn = self.begin_read()?;
        let table = txn.open_table(MESSAGES).map_err(db_err)?;
        let value = table.get((sender.0, msg_id.as_str())).map_err(db_err)?;
        value.map(|v| decode(sender, msg_id, v.value())).transpose()
    }

    /// Every record with this MsgId (normally one; several senders may reuse an id), by sender.
    pub fn find(&self, msg_id: &MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        let txn = self.begin_read()?;
        let index = txn.open_multimap_table(BY_MSG_ID).map_err(db_err)?;
        let table = txn.open_table(MESSAGES).map_err(db_err)?;
        let mut out = Vec::new();
        for sender in index.get(msg_id.as_str()).map_err(db_err)? {
            let sender = HerId(sender.map_err(db_err)?.value());
            if let Some(v) = table.get((sender.0, msg_id.as_str())).map_err(db_err)? {
                out.push(decode(sender, msg_id, v.value())?);
            }
        }
        Ok(out)
    }

    /// Recipients still `Delivered` whose clock ([`MessageRecord::clock_start`]) started at or before
    /// `now - timeout` (HIS 80415:2012 §3.2, Systemtest #42). Reads only the `awaiting_apprec` index
    /// up to the cut-off. The caller records [`Event::Overdue`] for each.
    pub fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        let cutoff = (now - timeout).unix_timestamp();
        let txn = self.begin_read()?;
        let index = txn.open_multimap_table(AWAITING).map_err(db_err)?;
        let table = txn.open_table(MESSAGES).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in index.range(..=cutoff).map_err(db_err)? {
            let (_, keys) = entry.map_err(db_err)?;
            for key in keys {
                let key = key.map_err(db_err)?;
                let (sender, msg_id) = key.value();
                let (sender, msg_id) = (HerId(sender), MsgId(msg_id.to_owned()));
                let Some(v) = table.get((sender.0, msg_id.as_str())).map_err(db_err)? else {
                    continue;
                };
                let rec = decode(sender, &msg_id, v.value())?;
                out.extend(rec.awaiting_recipients());
            }
        }
        Ok(out)
    }

    /// Deletes every record received before `now - retention` (whatever its state: after the
    /// retention even an unanswered message has long been reported overdue). Returns how many.
    pub fn prune(&self, now: Timestamp, retention: time::Duration) -> Result<usize, StoreError> {
        let cutoff = (now - retention).unix_timestamp();
        let db = self.writer()?;
        let txn = db.begin_write().map_err(db_err)?;
        let mut removed = 0;
        {
            let mut t = Tables::open(&txn)?;
            let mut old: Vec<(i64, u32, String)> = Vec::new();
            for entry in t.by_received.range(..cutoff).map_err(db_err)? {
                let (time, keys) = entry.map_err(db_err)?;
                for key in keys {
                    let key = key.map_err(db_err)?;
                    let (s, m) = key.value();
                    old.push((time.value(), s, m.to_owned()));
                }
            }
            for (time, s, m) in old {
                let (sender, msg_id) = (HerId(s), MsgId(m));
                if let Some(rec) = t.load(sender, &msg_id)? {
                    t.messages.remove((s, msg_id.as_str())).map_err(db_err)?;
                    t.by_msg_id.remove(msg_id.as_str(), s).map_err(db_err)?;
                    t.awaiting
                        .remove(rec.clock_start().unix_timestamp(), (s, msg_id.as_str()))
                        .map_err(db_err)?;
                    removed += 1;
                }
                t.by_received
                    .remove(time, (s, msg_id.as_str()))
                    .map_err(db_err)?;
            }
        }
        txn.commit().map_err(db_err)?;
        self.write_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(removed)
    }

    /// Applies `changes` all-or-nothing in one write transaction (one durable flush).
    pub fn commit_batch(&self, changes: &[Change]) -> Result<(), StoreError> {
        let mut results = self.commit_group(&[changes])?;
        results.pop().unwrap_or(Ok(()))
    }

    /// Applies several independent batches in ONE write transaction (group commit). The outer error
    /// means the transaction itself failed (nothing of any batch is durable); otherwise there is one
    /// result per batch, and a refused batch left no trace while the others were committed.
    pub fn commit_group(
        &self,
        batches: &[&[Change]],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let db = self.writer()?;
        let txn = db.begin_write().map_err(db_err)?;
        let mut results = Vec::with_capacity(batches.len());
        {
            let mut t = Tables::open(&txn)?;
            for batch in batches {
                // Stage in memory first, so a refused change leaves nothing of its batch behind.
                let staged = stage(&mut |s, m| t.load(s, m), batch);
                match staged {
                    Ok(staged) => {
                        t.write(staged)?;
                        results.push(Ok(()));
                    }
                    Err(e) if e.is_infrastructure() => return Err(e),
                    Err(e) => results.push(Err(e)),
                }
            }
        }
        txn.commit().map_err(db_err)?;
        self.write_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(results)
    }
}

type Key = (HerId, MsgId);

/// What the index updates need to know of a record as stored: whether it awaited an AppRec.
/// (Only that, not a copy of the whole record.)
#[derive(Clone, Copy)]
struct Stored {
    awaited_apprec: bool,
}

/// Per key: the record as stored (None = new) and as it will be.
type Staged = BTreeMap<Key, (Option<Stored>, MessageRecord)>;

/// Reads a record as stored (by the backend staging a batch).
type Loader<'a> = dyn FnMut(HerId, &MsgId) -> Result<Option<MessageRecord>, StoreError> + 'a;

/// Checks one batch against the records as stored (`load`) and returns them as they will be; the
/// first refused change refuses the batch. Both backends stage through here, so they accept and
/// refuse exactly the same changes.
fn stage(load: &mut Loader<'_>, batch: &[Change]) -> Result<Staged, StoreError> {
    let mut staged: Staged = BTreeMap::new();
    for change in batch {
        match change {
            Change::Create(rec) => {
                let key = (rec.sender, rec.msg_id.clone());
                let existing = match staged.get(&key) {
                    Some((_, new)) => Some(new.content_sha256),
                    None => load(rec.sender, &rec.msg_id)?.map(|old| old.content_sha256),
                };
                if let Some(old_sha256) = existing {
                    return Err(StoreError::Duplicate {
                        sender: rec.sender,
                        msg_id: rec.msg_id.clone(),
                        same_content: old_sha256 == rec.content_sha256,
                    });
                }
                if let Some(r) = rec
                    .recipients
                    .iter()
                    .find(|r| r.state != DeliveryState::Received || !r.events.is_empty())
                {
                    return Err(StoreError::NotFresh {
                        sender: rec.sender,
                        msg_id: rec.msg_id.clone(),
                        reason: format!(
                            "recipient {:?} is {} with {} event(s)",
                            r.her,
                            r.state.name(),
                            r.events.len()
                        ),
                    });
                }
                staged.insert(key, (None, rec.clone()));
            }
            Change::Apply(tr) => {
                let key = (tr.sender, tr.msg_id.clone());
                if !staged.contains_key(&key) {
                    let Some(old) = load(tr.sender, &tr.msg_id)? else {
                        return Err(StoreError::UnknownMessage {
                            sender: tr.sender,
                            msg_id: tr.msg_id.clone(),
                        });
                    };
                    staged.insert(
                        key.clone(),
                        (
                            Some(Stored {
                                awaited_apprec: old.awaits_apprec(),
                            }),
                            old,
                        ),
                    );
                }
                let Some((_, rec)) = staged.get_mut(&key) else {
                    continue;
                };
                rec.apply(tr)?;
            }
        }
    }
    Ok(staged)
}

struct Tables<'txn> {
    messages: redb::Table<'txn, (u32, &'static str), &'static [u8]>,
    by_msg_id: redb::MultimapTable<'txn, &'static str, u32>,
    by_received: redb::MultimapTable<'txn, i64, (u32, &'static str)>,
    awaiting: redb::MultimapTable<'txn, i64, (u32, &'static str)>,
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            messages: txn.open_table(MESSAGES).map_err(db_err)?,
            by_msg_id: txn.open_multimap_table(BY_MSG_ID).map_err(db_err)?,
            by_received: txn.open_multimap_table(BY_RECEIVED).map_err(db_err)?,
            awaiting: txn.open_multimap_table(AWAITING).map_err(db_err)?,
        })
    }

    fn load(&self, sender: HerId, msg_id: &MsgId) -> Result<Option<MessageRecord>, StoreError> {
        let value = self
            .messages
            .get((sender.0, msg_id.as_str()))
            .map_err(db_err)?;
        value.map(|v| decode(sender, msg_id, v.value())).transpose()
    }

    fn write(&mut self, staged: Staged) -> Result<(), StoreError> {
        for ((sender, msg_id), (old, new)) in staged {
            let key = (sender.0, msg_id.as_str());
            let bytes = record::encode(&new);
            self.messages
                .insert(key, bytes.as_slice())
                .map_err(db_err)?;
            if old.is_none() {
                self.by_msg_id
                    .insert(msg_id.as_str(), sender.0)
                    .map_err(db_err)?;
                self.by_received
                    .insert(new.received_at.unix_timestamp(), key)
                    .map_err(db_err)?;
            }
            let clock = new.clock_start().unix_timestamp();
            match (old.is_some_and(|o| o.awaited_apprec), new.awaits_apprec()) {
                (false, true) => {
                    self.awaiting.insert(clock, key).map_err(db_err)?;
                }
                (true, false) => {
                    self.awaiting.remove(clock, key).map_err(db_err)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn decode(sender: HerId, msg_id: &MsgId, bytes: &[u8]) -> Result<MessageRecord, StoreError> {
    record::decode(bytes).map_err(|reason| StoreError::Corrupt {
        sender,
        msg_id: msg_id.clone(),
        reason,
    })
}

/// Timestamps as integer milliseconds since the Unix epoch (UTC): compact and exact enough.
mod unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ids::Timestamp;

    pub fn to_ms(t: &Timestamp) -> i64 {
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    pub fn from_ms<E: serde::de::Error>(ms: i64) -> Result<Timestamp, E> {
        Timestamp::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .map_err(|e| E::custom(format!("timestamp {ms} ms out of range: {e}")))
    }

    pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(to_ms(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        from_ms(i64::deserialize(d)?)
    }
}

mod opt_unix_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::ids::Timestamp;

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::unix_ms::to_ms(t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Option::<i64>::deserialize(d)?
            .map(super::unix_ms::from_ms)
            .transpose()
    }
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out)
            .map_err(|e| serde::de::Error::custom(format!("content_sha256: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
