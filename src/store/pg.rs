//! The PostgreSQL backend of the delivery store (`[store] backend = "postgres"`, DESIGN §6): the
//! same records, state machine and refusals as the redb store, in a database that several gateway
//! instances share.
//!
//! Input: the same [`Change`]s, batches and queries as [`super::DeliveryStore`]. Output: the same
//! [`MessageRecord`]s and [`StoreError`]s — every batch is staged through the one `stage` function
//! of `mod.rs` (and so through [`super::DeliveryState::on`]), so both backends accept and refuse
//! exactly the same changes.
//!
//! Layout: one table, `delivery_messages`, keyed by (sender, msg_id); the record itself is the
//! versioned binary encoding of `record.rs` (one encoding, one decoder, for both backends), and
//! the columns the queries select on sit beside it: `received_at` (prune), `awaiting_since`
//! (the overdue clock start while some recipient is `Delivered`, else NULL; overdue) and an index on
//! `msg_id` (`status`). Migrations are numbered, recorded in `helsemelding_schema_migrations`, and
//! applied at start under a transaction-scoped advisory lock, so instances starting together apply
//! each exactly once.
//!
//! Concurrency (several instances on one database): a group commit locks the rows it reads
//! (`SELECT … FOR UPDATE`, in key order so two groups cannot deadlock), stages every batch in
//! memory (check-then-write: a refused batch writes nothing, the others of the group are
//! written), then writes with one `INSERT … ON CONFLICT DO NOTHING` and one `UPDATE`. A record that
//! another instance created between our read and our insert shows up as a conflict: the whole
//! transaction is rolled back and the group staged again, now seeing that record (so the batch gets
//! the same `Duplicate` it would have got one moment later). Overdue and prune are guarded by
//! [`PERIODIC_LOCK`] (see [`super::StoreHandle::periodic_lease`]); a prune that runs twice anyway
//! deletes each row once.
//!
//! Failure modes: every PostgreSQL error is [`StoreError::Postgres`], an infrastructure fault
//! (never an AppRec); [`StoreError::is_connection_lost`] says when the connection has to be made
//! again. A schema newer than this program knows is refused ([`StoreError::Schema`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Statement};

use super::{record, stage, Change, MessageRecord, OverdueRecipient, StoreError};
use crate::ids::{HerId, MsgId, Timestamp};

/// The key of the session-level advisory lock that makes one instance do the periodic work
/// (overdue sweep, pruning) at a time: "hm-perio" in ASCII.
pub const PERIODIC_LOCK: i64 = 0x686d_2d70_6572_696f;
/// The key of the transaction-level advisory lock taken while migrations are applied.
const MIGRATION_LOCK: i64 = 0x686d_2d6d_6967_7261;

/// How long a connection attempt may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a group is staged again after a concurrent insert of one of its records.
const CONFLICT_RETRIES: usize = 5;

/// One schema migration: applied in order, each once, recorded with its version.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    sql: &'static str,
}

/// Every migration this program knows, oldest first. Never edit one that has shipped: add another.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "delivery_messages: one row per message, record in record.rs encoding, indexes for status, overdue and prune",
    sql: "CREATE TABLE delivery_messages (
            sender          bigint  NOT NULL,
            msg_id          text    NOT NULL,
            received_at     bigint  NOT NULL,
            awaiting_since  bigint,
            record          bytea   NOT NULL,
            PRIMARY KEY (sender, msg_id)
          );
          CREATE INDEX delivery_messages_msg_id ON delivery_messages (msg_id);
          CREATE INDEX delivery_messages_received_at ON delivery_messages (received_at);
          CREATE INDEX delivery_messages_awaiting ON delivery_messages (awaiting_since)
            WHERE awaiting_since IS NOT NULL;",
}];

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS helsemelding_schema_migrations (
        version     integer     PRIMARY KEY,
        description text        NOT NULL,
        applied_at  timestamptz NOT NULL DEFAULT now()
    )";

/// The newest schema version this program knows.
pub fn known_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Where a database's schema stands (`check-config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaStatus {
    /// The newest applied migration (0: none, an empty database).
    pub applied: i32,
    /// Migrations this program would apply at start, oldest first.
    pub pending: Vec<(i32, &'static str)>,
}

impl std::fmt::Display for SchemaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "schema version {} of {}", self.applied, known_version())?;
        if self.pending.is_empty() {
            write!(f, ", no pending migrations")
        } else {
            let list: Vec<String> = self.pending.iter().map(|(v, _)| v.to_string()).collect();
            write!(
                f,
                ", {} pending migration(s) ({}), applied when the gateway starts",
                self.pending.len(),
                list.join(", ")
            )
        }
    }
}

fn pg(during: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Postgres {
        during,
        source: Arc::new(e),
    }
}

/// Where the PostgreSQL store is and how to reach it: tokio-postgres's settings and, when the URL
/// asks for TLS, the verifying connector.
#[derive(Clone)]
pub struct PgConfig {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
}

impl std::fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConfig")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl PgConfig {
    /// Whether the connection is TLS (the server's certificate verified against `sslrootcert`).
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// Parses a `postgres://` URL (or key=value string), as `check-config` does.
///
/// TLS, with libpq's parameter names (URL form only): `sslmode=verify-full&sslrootcert=/path/ca.pem`.
/// The gateway always verifies the server's certificate against `sslrootcert` and its name against
/// the host in the URL, whichever of `require`, `verify-ca` or `verify-full` is asked (libpq's
/// `require` does not verify; a hub must not send its state to a server it cannot identify), and a
/// TLS mode without `sslrootcert` is refused. `sslrootcert` alone implies TLS. `disable`, or no
/// sslmode and no `sslrootcert`: plain TCP, as before. Several hosts
/// (`postgres://u@db1:5432,db2:5432/hm?target_session_attrs=read-write`) are tried in turn, so after
/// a failover of a primary/standby pair the reconnect finds the new primary.
pub fn parse_url(url: &str) -> Result<PgConfig, String> {
    let (rest, sslmode, rootcert) = take_tls_params(url);
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("{e}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("helsemelding");
    }
    let wants_tls = match sslmode.as_deref() {
        None | Some("prefer") | Some("allow") => rootcert.is_some(),
        Some("disable") if rootcert.is_some() => {
            return Err("sslmode=disable with sslrootcert: say which you mean (verify-full to use the CA, or drop sslrootcert)".into())
        }
        Some("disable") => false,
        Some("require") | Some("verify-ca") | Some("verify-full") => true,
        Some(other) => {
            return Err(format!(
                "sslmode={other}: use disable, require, verify-ca or verify-full"
            ))
        }
    };
    let tls = if wants_tls {
        let Some(ca) = rootcert else {
            return Err(format!(
                "sslmode={} without sslrootcert: name the CA that signed the server's certificate (sslrootcert=/path/ca.pem); the gateway verifies the server it stores to",
                sslmode.unwrap_or_default()
            ));
        };
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        Some(tokio_postgres_rustls::MakeRustlsConnect::new(client_tls(
            std::path::Path::new(&ca),
        )?))
    } else {
        config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        None
    };
    Ok(PgConfig { config, tls })
}

/// Splits `sslmode` and `sslrootcert` off a URL's query (tokio-postgres knows neither
/// `verify-*` nor `sslrootcert`). A key=value string is passed on whole.
fn take_tls_params(url: &str) -> (String, Option<String>, Option<String>) {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return (url.to_owned(), None, None);
    };
    let (mut mode, mut ca, mut kept) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_encoding::percent_decode_str(v)
            .decode_utf8_lossy()
            .into_owned();
        match k {
            "sslmode" => mode = Some(v),
            "sslrootcert" => ca = Some(v),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, mode, ca)
}

/// rustls client settings trusting exactly the CA certificates in `ca` (PEM).
fn client_tls(ca: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {}: {e}", ca.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "sslrootcert {}: no certificate in it",
            ca.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Connects; the connection is driven by a task on the current runtime until the client is
/// dropped or the connection breaks (then the client reports `is_closed`).
pub(super) async fn connect(config: &PgConfig) -> Result<Client, StoreError> {
    let client = match &config.tls {
        None => {
            let (client, connection) = config
                .config
                .connect(NoTls)
                .await
                .map_err(pg("connecting"))?;
            tokio::spawn(drive(connection));
            client
        }
        Some(tls) => {
            let (client, connection) = config
                .config
                .connect(tls.clone())
                .await
                .map_err(pg("connecting (TLS)"))?;
            tokio::spawn(drive(connection));
            client
        }
    };
    Ok(client)
}

/// Runs a connection until it ends, saying why if it broke.
async fn drive<S, T>(connection: tokio_postgres::Connection<S, T>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if let Err(e) = connection.await {
        tracing::warn!(error = %pg_text(&e), "delivery store: PostgreSQL connection ended");
    }
}

fn pg_text(e: &tokio_postgres::Error) -> String {
    super::pg_reason(e)
}

/// Makes a throw-away database, uniquely named `<prefix>_<uuid>`, on the server `admin_url`
/// connects to (tests and benchmarks). Returns its name and its URL.
pub async fn create_scratch_database(
    admin_url: &str,
    prefix: &str,
) -> Result<(String, String), StoreError> {
    let admin = connect(&parse_url(admin_url).map_err(StoreError::Schema)?).await?;
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .map_err(pg("creating a scratch database"))?;
    let (base, query) = admin_url
        .split_once('?')
        .map_or((admin_url, None), |(b, q)| (b, Some(q)));
    let server = base.rsplit_once('/').map_or(base, |(server, _)| server);
    let url = match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    };
    Ok((name, url))
}

/// Drops a database [`create_scratch_database`] made (ending its sessions first).
pub async fn drop_scratch_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    let admin = connect(&parse_url(admin_url).map_err(StoreError::Schema)?).await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .map_err(pg("dropping a scratch database"))
}

/// Reads the schema status of the database at `config` without changing anything.
pub async fn schema_status(config: &PgConfig) -> Result<SchemaStatus, StoreError> {
    let client = connect(config).await?;
    status_of(&client).await
}

async fn status_of(client: &Client) -> Result<SchemaStatus, StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('helsemelding_schema_migrations') IS NOT NULL",
            &[],
        )
        .await
        .map_err(pg("reading the schema version"))?
        .get(0);
    let applied = if exists {
        applied_version(client).await?
    } else {
        0
    };
    Ok(SchemaStatus {
        applied,
        pending: MIGRATIONS
            .iter()
            .filter(|m| m.version > applied)
            .map(|m| (m.version, m.description))
            .collect(),
    })
}

/// The newest applied migration; a schema newer than this program knows is refused.
async fn applied_version(client: &impl tokio_postgres::GenericClient) -> Result<i32, StoreError> {
    let applied: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM helsemelding_schema_migrations",
            &[],
        )
        .await
        .map_err(pg("reading the schema version"))?
        .get(0);
    if applied > known_version() {
        return Err(StoreError::Schema(format!(
            "schema version {applied} is newer than this helsemelding knows ({}): upgrade helsemelding",
            known_version()
        )));
    }
    Ok(applied)
}

/// Applies the pending migrations, each in its own transaction with its version row, under an
/// advisory lock (instances starting at once wait for each other). Returns what was applied.
async fn migrate(client: &mut Client) -> Result<Vec<i32>, StoreError> {
    let mut applied = Vec::new();
    let txn = client
        .transaction()
        .await
        .map_err(pg("starting the migration"))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg("locking for the migration"))?;
    txn.batch_execute(MIGRATIONS_TABLE)
        .await
        .map_err(pg("creating the migrations table"))?;
    let current = applied_version(&txn).await?;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        txn.batch_execute(m.sql)
            .await
            .map_err(pg("applying a migration"))?;
        txn.execute(
            "INSERT INTO helsemelding_schema_migrations (version, description) VALUES ($1, $2)",
            &[&m.version, &m.description],
        )
        .await
        .map_err(pg("recording a migration"))?;
        applied.push(m.version);
    }
    txn.commit().await.map_err(pg("committing the migration"))?;
    Ok(applied)
}

/// The PostgreSQL store: one connection. The gateway uses two (one for the group-commit writer,
/// one for reads: a transaction on a connection would otherwise hold the readers).
pub struct PgStore {
    client: Client,
    /// The point reads of the hot path, prepared once per connection (an unprepared query costs a
    /// second round trip for every message).
    get: Statement,
    find: Statement,
    write_transactions: AtomicU64,
}

const GET: &str = "SELECT record FROM delivery_messages WHERE sender = $1 AND msg_id = $2";
const FIND: &str = "SELECT sender, record FROM delivery_messages WHERE msg_id = $1 ORDER BY sender";

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

type Key = (HerId, MsgId);

impl PgStore {
    /// Connects and applies pending migrations (what the gateway does at start).
    pub async fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        let mut client = connect(config).await?;
        let applied = migrate(&mut client).await?;
        if !applied.is_empty() {
            tracing::info!(
                ?applied,
                "delivery store: PostgreSQL schema migrations applied"
            );
        }
        PgStore::prepared(client).await
    }

    /// Connects to a database whose schema must already be current (`status`, `migrate-store`
    /// readers, the gateway's second connection): nothing is changed.
    pub async fn open_existing(config: &PgConfig) -> Result<PgStore, StoreError> {
        let client = connect(config).await?;
        let status = status_of(&client).await?;
        if !status.pending.is_empty() {
            return Err(StoreError::Schema(format!(
                "{status}: the database has no current delivery store (start the gateway once, or run migrate-store)"
            )));
        }
        PgStore::prepared(client).await
    }

    async fn prepared(client: Client) -> Result<PgStore, StoreError> {
        let get = client
            .prepare(GET)
            .await
            .map_err(pg("preparing a statement"))?;
        let find = client
            .prepare(FIND)
            .await
            .map_err(pg("preparing a statement"))?;
        Ok(PgStore {
            client,
            get,
            find,
            write_transactions: AtomicU64::new(0),
        })
    }

    /// Whether the connection has ended (then the store must be opened again).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// A round trip to the server (is the connection alive?).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(pg("checking the connection"))
    }

    /// Write transactions committed on this connection.
    pub fn write_transactions(&self) -> u64 {
        self.write_transactions.load(Ordering::Relaxed)
    }

    /// How many message records the table holds (an exact count: a scan, fine once a minute).
    pub async fn records(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client
            .query_one("SELECT count(*) FROM delivery_messages", &[])
            .await
            .map_err(pg("counting records"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// Bytes the table and its indexes take on disk.
    pub async fn total_bytes(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client
            .query_one("SELECT pg_total_relation_size('delivery_messages')", &[])
            .await
            .map_err(pg("reading the table size"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// See [`super::DeliveryStore::get`].
    pub async fn get(
        &self,
        sender: HerId,
        msg_id: &MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let row = self
            .client
            .query_opt(&self.get, &[&i64::from(sender.0), &msg_id.as_str()])
            .await
            .map_err(pg("reading a record"))?;
        row.map(|r| decode(sender, msg_id, r.get(0))).transpose()
    }

    /// See [`super::DeliveryStore::find`] (by sender, as there).
    pub async fn find(&self, msg_id: &MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        let rows = self
            .client
            .query(&self.find, &[&msg_id.as_str()])
            .await
            .map_err(pg("finding a MsgId"))?;
        rows.iter()
            .map(|r| decode(her(r.get(0))?, msg_id, r.get(1)))
            .collect()
    }

    /// See [`super::DeliveryStore::overdue`]; reads only rows whose clock started by the cut-off
    /// (a partial index holds exactly the rows awaiting an AppRec).
    pub async fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        let cutoff = (now - timeout).unix_timestamp();
        let rows = self
            .client
            .query(
                "SELECT sender, msg_id, record FROM delivery_messages
                 WHERE awaiting_since IS NOT NULL AND awaiting_since <= $1
                 ORDER BY awaiting_since, sender, msg_id COLLATE \"C\"",
                &[&cutoff],
            )
            .await
            .map_err(pg("looking for overdue recipients"))?;
        let mut out = Vec::new();
        for row in rows {
            let sender = her(row.get(0))?;
            let msg_id = MsgId(row.get::<_, String>(1));
            let rec = decode(sender, &msg_id, row.get(2))?;
            out.extend(rec.awaiting_recipients());
        }
        Ok(out)
    }

    /// See [`super::DeliveryStore::prune`]. One statement: two instances pruning at once delete
    /// each row once, and each counts only its own.
    pub async fn prune(
        &self,
        now: Timestamp,
        retention: time::Duration,
    ) -> Result<usize, StoreError> {
        let cutoff = (now - retention).unix_timestamp();
        let n = self
            .client
            .execute(
                "DELETE FROM delivery_messages WHERE received_at < $1",
                &[&cutoff],
            )
            .await
            .map_err(pg("pruning"))?;
        self.write_transactions.fetch_add(1, Ordering::Relaxed);
        Ok(n as usize)
    }

    /// See [`super::DeliveryStore::commit_batch`].
    pub async fn commit_batch(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        let mut results = self.commit_group(&[changes]).await?;
        results.pop().unwrap_or(Ok(()))
    }

    /// See [`super::DeliveryStore::commit_group`]: many batches in ONE transaction; a refused batch
    /// leaves no trace and does not affect the others. The outer error means nothing of any batch
    /// was committed — or, when the connection broke during COMMIT, that the outcome is unknown;
    /// either way the callers retry from what the store then says (redelivery is idempotent).
    pub async fn commit_group(
        &mut self,
        batches: &[&[Change]],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut keys: Vec<Key> = batches
            .iter()
            .flat_map(|b| b.iter())
            .map(|c| match c {
                Change::Create(r) => (r.sender, r.msg_id.clone()),
                Change::Apply(t) => (t.sender, t.msg_id.clone()),
            })
            .collect();
        keys.sort();
        keys.dedup();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_group(&keys, batches).await? {
                Some(results) => {
                    self.write_transactions.fetch_add(1, Ordering::Relaxed);
                    return Ok(results);
                }
                None if attempt < CONFLICT_RETRIES => {
                    tracing::debug!(
                        attempt,
                        "delivery store: concurrent insert, staging the group again"
                    );
                }
                None => {
                    return Err(StoreError::Schema(format!(
                        "a group commit met a concurrent insert {CONFLICT_RETRIES} times in a row"
                    )))
                }
            }
        }
    }

    /// One attempt of a group commit; `None` when a concurrent insert was detected and the
    /// transaction rolled back.
    async fn try_group(
        &mut self,
        keys: &[Key],
        batches: &[&[Change]],
    ) -> Result<Option<Vec<Result<(), StoreError>>>, StoreError> {
        let txn = self
            .client
            .transaction()
            .await
            .map_err(pg("starting a transaction"))?;
        let (senders, ids): (Vec<i64>, Vec<&str>) = keys
            .iter()
            .map(|(s, m)| (i64::from(s.0), m.as_str()))
            .unzip();
        let rows = txn
            .query(
                "SELECT d.sender, d.msg_id, d.record FROM delivery_messages d
                 JOIN unnest($1::bigint[], $2::text[]) AS k(sender, msg_id)
                   ON d.sender = k.sender AND d.msg_id = k.msg_id
                 ORDER BY d.sender, d.msg_id
                 FOR UPDATE OF d",
                &[&senders, &ids],
            )
            .await
            .map_err(pg("locking the group's records"))?;
        // The records as stored, and as the group has left them so far.
        let mut stored: HashMap<Key, MessageRecord> = HashMap::with_capacity(rows.len());
        for row in rows {
            let sender = her(row.get(0))?;
            let msg_id = MsgId(row.get::<_, String>(1));
            let rec = decode(sender, &msg_id, row.get(2))?;
            stored.insert((sender, msg_id), rec);
        }
        let mut current: HashMap<Key, MessageRecord> = HashMap::new();
        let mut results = Vec::with_capacity(batches.len());
        for batch in batches {
            let mut load = |s: HerId, m: &MsgId| -> Result<Option<MessageRecord>, StoreError> {
                let key = (s, m.clone());
                Ok(current.get(&key).or_else(|| stored.get(&key)).cloned())
            };
            match stage(&mut load, batch) {
                Ok(staged) => {
                    for (key, (_, new)) in staged {
                        current.insert(key, new);
                    }
                    results.push(Ok(()));
                }
                Err(e) if e.is_infrastructure() => return Err(e),
                Err(e) => results.push(Err(e)),
            }
        }
        let written: BTreeMap<Key, MessageRecord> = current.into_iter().collect();
        let mut inserts = Columns::default();
        let mut updates = Columns::default();
        for ((sender, msg_id), rec) in &written {
            let cols = if stored.contains_key(&(*sender, msg_id.clone())) {
                &mut updates
            } else {
                &mut inserts
            };
            cols.push(rec);
        }
        if !inserts.sender.is_empty() {
            let inserted = txn
                .query(
                    "INSERT INTO delivery_messages (sender, msg_id, received_at, awaiting_since, record)
                     SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
                     ON CONFLICT (sender, msg_id) DO NOTHING
                     RETURNING sender",
                    &[
                        &inserts.sender,
                        &inserts.msg_id,
                        &inserts.received_at,
                        &inserts.awaiting_since,
                        &inserts.record,
                    ],
                )
                .await
                .map_err(pg("inserting records"))?;
            if inserted.len() != inserts.sender.len() {
                // Another instance created one of these records since we looked.
                txn.rollback().await.map_err(pg("rolling back"))?;
                return Ok(None);
            }
        }
        if !updates.sender.is_empty() {
            txn.execute(
                "UPDATE delivery_messages d
                 SET awaiting_since = u.awaiting_since, record = u.record
                 FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bytea[])
                   AS u(sender, msg_id, awaiting_since, record)
                 WHERE d.sender = u.sender AND d.msg_id = u.msg_id",
                &[
                    &updates.sender,
                    &updates.msg_id,
                    &updates.awaiting_since,
                    &updates.record,
                ],
            )
            .await
            .map_err(pg("updating records"))?;
        }
        txn.commit().await.map_err(pg("committing"))?;
        Ok(Some(results))
    }

    /// Copies records as they are (`migrate-store`): a record already present is left alone.
    /// Returns how many were inserted.
    pub async fn import(&self, records: &[MessageRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut cols = Columns::default();
        for r in records {
            cols.push(r);
        }
        self.client
            .execute(
                "INSERT INTO delivery_messages (sender, msg_id, received_at, awaiting_since, record)
                 SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
                 ON CONFLICT (sender, msg_id) DO NOTHING",
                &[
                    &cols.sender,
                    &cols.msg_id,
                    &cols.received_at,
                    &cols.awaiting_since,
                    &cols.record,
                ],
            )
            .await
            .map_err(pg("importing records"))
    }

    /// How many of `records` are stored with exactly these contents (`migrate-store` verifies
    /// with it).
    pub async fn count_identical(&self, records: &[MessageRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut cols = Columns::default();
        for r in records {
            cols.push(r);
        }
        let n: i64 = self
            .client
            .query_one(
                "SELECT count(*) FROM delivery_messages d
                 JOIN unnest($1::bigint[], $2::text[], $3::bytea[]) AS k(sender, msg_id, record)
                   ON d.sender = k.sender AND d.msg_id = k.msg_id AND d.record = k.record",
                &[&cols.sender, &cols.msg_id, &cols.record],
            )
            .await
            .map_err(pg("verifying records"))?
            .get(0);
        Ok(n.max(0) as u64)
    }

    /// Tries to take [`PERIODIC_LOCK`] for this connection's session (held until the connection
    /// ends). True if this session holds it now.
    pub async fn try_periodic_lock(&self) -> Result<bool, StoreError> {
        Ok(self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&PERIODIC_LOCK])
            .await
            .map_err(pg("taking the periodic-work lock"))?
            .get(0))
    }
}

/// Column arrays for one multi-row statement.
#[derive(Default)]
struct Columns {
    sender: Vec<i64>,
    msg_id: Vec<String>,
    received_at: Vec<i64>,
    awaiting_since: Vec<Option<i64>>,
    record: Vec<Vec<u8>>,
}

impl Columns {
    fn push(&mut self, rec: &MessageRecord) {
        self.sender.push(i64::from(rec.sender.0));
        self.msg_id.push(rec.msg_id.as_str().to_owned());
        self.received_at.push(rec.received_at.unix_timestamp());
        self.awaiting_since.push(
            rec.awaits_apprec()
                .then(|| rec.clock_start().unix_timestamp()),
        );
        self.record.push(record::encode(rec));
    }
}

fn her(v: i64) -> Result<HerId, StoreError> {
    u32::try_from(v)
        .map(HerId)
        .map_err(|_| StoreError::Corrupt {
            sender: HerId(0),
            msg_id: MsgId::new("-"),
            reason: format!("sender {v} is not a HER-id"),
        })
}

fn decode(sender: HerId, msg_id: &MsgId, bytes: &[u8]) -> Result<MessageRecord, StoreError> {
    super::decode(sender, msg_id, bytes)
}
