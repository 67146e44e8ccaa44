//! Group commit on PostgreSQL: one writer task owns the writing connection, so many callers'
//! batches share one transaction (the same contract as the redb writer, `handle.rs`).
//!
//! Input: [`PgHandle::commit`] / [`PgHandle::record`] from any number of tasks; reads and the
//! periodic-work lock. The writer takes the first queued request and everything that queued up
//! meanwhile (at most [`super::handle::MAX_GROUP`]), commits them in one transaction and then
//! answers each caller with its own batch's result. Reads use a second connection (a transaction
//! on the writer's would otherwise hold them), the periodic-work lock a third (a session lock lives
//! as long as its connection: it must not be lost with a reconnect of the others).
//!
//! Connection loss: while PostgreSQL cannot be reached the store is
//! [`StoreHealth::Unavailable`]; the writer reconnects with a growing pause, and every request
//! queued meanwhile — commits and reads alike — *waits* (the gateway holds its unacknowledged
//! deliveries, bounded by the prefetch, and carries on by itself once PostgreSQL is back). Only
//! the requests whose transaction was under way when the connection broke get the error
//! ([`StoreError::Postgres`], an infrastructure fault): their COMMIT may or may not have happened,
//! so they are not retried blindly here; the gateway retries the message from what the store then
//! says (redelivery is idempotent, DESIGN §3). Shutdown ends a wait with [`StoreError::Stopped`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch, Mutex, RwLock};

use super::handle::{ask, send, Recorded, Reply, StoreHealth, StoreSize, MAX_GROUP};
use super::pg::PgStore;
use super::{Change, MessageRecord, OverdueRecipient, StoreError};
use crate::ids::{HerId, MsgId, Timestamp};

const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
const RECONNECT_PAUSE_MAX: Duration = Duration::from_secs(5);
/// While PostgreSQL stays unreachable, the error is repeated in the log this often.
const REMIND_EVERY: Duration = Duration::from_secs(30);

enum Request {
    Commit(Vec<Change>, Reply<()>),
    Prune(Timestamp, time::Duration, Reply<usize>),
    /// A reader lost its connection: make sure the writer notices the outage too.
    Reconnect(String),
}

struct Shared {
    config: super::pg::PgConfig,
    health: watch::Sender<StoreHealth>,
    stopping: AtomicBool,
    /// The readers' connection; `None` until (re)connected.
    reader: RwLock<Option<Arc<PgStore>>>,
    /// The periodic-work lock's connection, and whether it holds the lock.
    lock: Mutex<Option<(PgStore, bool)>>,
    transactions: AtomicU64,
}

/// Async access to the PostgreSQL store, with group-committed writes.
pub struct PgHandle {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl PgHandle {
    /// Connects, applies pending migrations and starts the writer task. `queue` bounds the
    /// requests waiting for it.
    pub async fn start(config: super::pg::PgConfig, queue: usize) -> Result<PgHandle, StoreError> {
        let store = PgStore::open(&config).await?;
        let reader = PgStore::open_existing(&config).await?;
        let shared = Arc::new(Shared {
            config,
            health: watch::Sender::new(StoreHealth::Available),
            stopping: AtomicBool::new(false),
            reader: RwLock::new(Some(Arc::new(reader))),
            lock: Mutex::new(None),
            transactions: AtomicU64::new(0),
        });
        let (requests, rx) = mpsc::channel(queue.max(1));
        let writer = tokio::spawn(write_loop(Arc::clone(&shared), store, rx));
        Ok(PgHandle {
            requests,
            shared,
            writer: Some(writer),
        })
    }

    /// Commits `changes` atomically; returns once they are committed (or refused).
    pub async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        ask(&self.requests, |tx| Request::Commit(changes, tx)).await
    }

    /// Queues `changes` for the writer (DESIGN §3 step 2); [`Recorded::outcome`] tells whether
    /// they were accepted. PostgreSQL commits them with whatever else is queued (there is no
    /// separate flush to save here, so they are not held back for a later commit).
    pub async fn record(&self, changes: Vec<Change>) -> Result<Recorded, StoreError> {
        send(&self.requests, |tx| Request::Commit(changes, tx))
            .await
            .map(Recorded::new)
    }

    /// Deletes records past retention (in the writer, between group commits).
    pub async fn prune(
        &self,
        now: Timestamp,
        retention: time::Duration,
    ) -> Result<usize, StoreError> {
        ask(&self.requests, |tx| Request::Prune(now, retention, tx)).await
    }

    pub async fn get(
        &self,
        sender: HerId,
        msg_id: MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        let s = self.reader().await?;
        self.read_result(s.get(sender, &msg_id).await).await
    }

    pub async fn find(&self, msg_id: MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        let s = self.reader().await?;
        self.read_result(s.find(&msg_id).await).await
    }

    pub async fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        let s = self.reader().await?;
        self.read_result(s.overdue(now, timeout).await).await
    }

    /// Records in the table (exact) and the bytes of the table with its indexes.
    pub async fn size(&self) -> Result<StoreSize, StoreError> {
        let s = self.reader().await?;
        let records = self.read_result(s.records().await).await?;
        let file_bytes = self.read_result(s.total_bytes().await).await?;
        Ok(StoreSize {
            records,
            file_bytes,
        })
    }

    /// Write transactions committed so far (a group commit counts once).
    pub fn write_transactions(&self) -> u64 {
        self.shared.transactions.load(Ordering::Relaxed)
    }

    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.shared.health.subscribe()
    }

    /// Whether this instance may do the periodic work now: it holds, or has just taken, the
    /// session advisory lock [`super::pg::PERIODIC_LOCK`]. The lock stays with this instance
    /// until its lock connection ends (the instance stops or dies), then another takes it at its
    /// next pass. An error (PostgreSQL unreachable) is an infrastructure fault: skip this pass.
    pub async fn periodic_lease(&self) -> Result<bool, StoreError> {
        let mut slot = self.shared.lock.lock().await;
        if slot.as_ref().is_some_and(|(s, _)| s.is_closed()) {
            *slot = None;
        }
        if slot.is_none() {
            *slot = Some((PgStore::open_existing(&self.shared.config).await?, false));
        }
        let Some((store, held)) = slot.as_mut() else {
            return Err(StoreError::Stopped);
        };
        if !*held {
            *held = store.try_periodic_lock().await?;
        }
        Ok(*held)
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it.
    pub async fn shutdown(mut self) {
        let writer = self.writer.take();
        drop(self);
        if let Some(w) = writer {
            let _ = w.await;
        }
    }

    /// The readers' connection, waiting while the store is unavailable (the writer reconnects).
    async fn reader(&self) -> Result<Arc<PgStore>, StoreError> {
        let mut health = self.shared.health.subscribe();
        loop {
            let state = health.borrow_and_update().clone();
            match state {
                StoreHealth::Stopped => return Err(StoreError::Stopped),
                StoreHealth::Unavailable { .. } => {
                    health.changed().await.map_err(|_| StoreError::Stopped)?;
                    continue;
                }
                StoreHealth::Available => {}
            }
            if let Some(s) = self.shared.reader.read().await.as_ref() {
                if !s.is_closed() {
                    return Ok(Arc::clone(s));
                }
            }
            let mut slot = self.shared.reader.write().await;
            if slot.as_ref().is_some_and(|s| !s.is_closed()) {
                continue;
            }
            match PgStore::open_existing(&self.shared.config).await {
                Ok(s) => *slot = Some(Arc::new(s)),
                Err(e) => {
                    drop(slot);
                    if e.is_connection_lost() {
                        self.lost(&e).await?;
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Passes a read's result on; a lost connection also tells the writer (which marks the store
    /// unavailable and reconnects), and the read's caller gets the error.
    async fn read_result<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            if e.is_connection_lost() {
                self.lost(e).await?;
            }
        }
        r
    }

    async fn lost(&self, e: &StoreError) -> Result<(), StoreError> {
        self.requests
            .send(Request::Reconnect(e.to_string()))
            .await
            .map_err(|_| StoreError::Stopped)
    }
}

impl Drop for PgHandle {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
    }
}

async fn write_loop(shared: Arc<Shared>, store: PgStore, mut rx: mpsc::Receiver<Request>) {
    let mut store = Some(store);
    while let Some(first) = rx.recv().await {
        let mut group = Group::default();
        group.take(first);
        while group.commits.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.take(req),
                Err(_) => break,
            }
        }
        let Group {
            commits,
            prunes,
            lost,
        } = group;
        if lost.is_some() && !alive(store.as_ref()).await {
            store = None;
        }
        if store.as_ref().is_none_or(|s| s.is_closed()) {
            let reason = lost.unwrap_or_else(|| "the connection to PostgreSQL was lost".into());
            store = reconnect(&shared, &reason).await;
        }
        let Some(s) = store.as_mut() else {
            // Stopping while PostgreSQL was away.
            for (_, reply) in commits {
                let _ = reply.send(Err(StoreError::Stopped));
            }
            for (_, _, reply) in prunes {
                let _ = reply.send(Err(StoreError::Stopped));
            }
            break;
        };
        let mut broken = false;
        if !commits.is_empty() {
            let batches: Vec<&[Change]> = commits.iter().map(|(c, _)| c.as_slice()).collect();
            match s.commit_group(&batches).await {
                Ok(results) => {
                    shared.transactions.fetch_add(1, Ordering::Relaxed);
                    for ((_, reply), result) in commits.into_iter().zip(results) {
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    broken |= e.is_connection_lost();
                    tracing::error!(error = %e, callers = commits.len(), "delivery store group commit failed");
                    for (_, reply) in commits {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        for (now, retention, reply) in prunes {
            let r = s.prune(now, retention).await;
            match &r {
                Ok(_) => {
                    shared.transactions.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => broken |= e.is_connection_lost(),
            }
            let _ = reply.send(r);
        }
        if broken {
            // Reconnect now, not at the next request: readers wait for it meanwhile.
            store = reconnect(&shared, "the connection to PostgreSQL broke during a write").await;
            if store.is_none() {
                break;
            }
        }
    }
    shared.health.send_replace(StoreHealth::Stopped);
}

/// The requests one transaction serves.
#[derive(Default)]
struct Group {
    commits: Vec<(Vec<Change>, Reply<()>)>,
    prunes: Vec<(Timestamp, time::Duration, Reply<usize>)>,
    /// A reader lost its connection, with the reason.
    lost: Option<String>,
}

impl Group {
    fn take(&mut self, req: Request) {
        match req {
            Request::Commit(c, r) => self.commits.push((c, r)),
            Request::Prune(n, t, r) => self.prunes.push((n, t, r)),
            Request::Reconnect(reason) => self.lost = Some(reason),
        }
    }
}

/// Whether the writer's connection still answers (a reader saw its own fail; the writer's may
/// have broken too without having been used since).
async fn alive(store: Option<&PgStore>) -> bool {
    match store {
        Some(s) => s.ping().await.is_ok(),
        None => false,
    }
}

/// Connects again (migrations included: the database may be a new one), with a growing pause,
/// while marking the store unavailable. `None` if the handle stopped meanwhile.
async fn reconnect(shared: &Shared, reason: &str) -> Option<PgStore> {
    let since = time::OffsetDateTime::now_utc();
    shared.health.send_replace(StoreHealth::Unavailable {
        since,
        reason: reason.to_owned(),
    });
    tracing::error!(
        %reason,
        "delivery store (PostgreSQL) unavailable; holding every message unacknowledged until it is back; reconnecting"
    );
    let started = Instant::now();
    let mut reminded = Instant::now();
    let mut pause = RECONNECT_PAUSE;
    let mut attempts = 0u32;
    loop {
        if shared.stopping.load(Ordering::Acquire) {
            return None;
        }
        attempts += 1;
        match PgStore::open(&shared.config).await {
            Ok(s) => {
                tracing::info!(
                    after_s = started.elapsed().as_secs(),
                    attempts,
                    "delivery store (PostgreSQL) reachable again; held messages continue"
                );
                *shared.reader.write().await = None;
                shared.health.send_replace(StoreHealth::Available);
                return Some(s);
            }
            Err(e) => {
                if reminded.elapsed() >= REMIND_EVERY {
                    reminded = Instant::now();
                    tracing::error!(error = %e, for_s = started.elapsed().as_secs(), attempts,
                        "delivery store (PostgreSQL) still unavailable; messages are held unacknowledged");
                    shared.health.send_replace(StoreHealth::Unavailable {
                        since,
                        reason: e.to_string(),
                    });
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RECONNECT_PAUSE_MAX);
    }
}
