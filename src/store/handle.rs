//! Group commit: one dedicated thread owns every write to the [`DeliveryStore`], so many messages
//! share one durable flush (DESIGN §3, step 4: "record `Delivered` (group-committed)").
//!
//! Input: [`RedbHandle::commit`] calls from any number of tasks. The writer thread takes the first
//! queued request, then everything else that queued up meanwhile (while the previous transaction
//! was flushing), commits all of it in one write transaction, and only then answers each caller —
//! so a caller's `Ok` means "durable", and the caller may ack the inbound delivery.
//! Output: per caller, `Ok(())` or the [`StoreError`] of its own batch (batches are isolated: one
//! caller's illegal transition does not fail the others').
//!
//! Bounds: the request queue holds at most `queue` requests (callers wait when it is full —
//! backpressure onto the consumer, never unbounded memory); one transaction takes at most
//! [`MAX_GROUP`] requests. Reads go to the same database (redb readers never block the writer): a
//! point read by key on the caller's task, scans on tokio's blocking pool.
//!
//! I/O failures (a full disk above all): redb latches an I/O error and refuses everything until the
//! database is closed and reopened. The writer then marks the store unavailable
//! ([`StoreHealth::Unavailable`], with the reason, for `/health`), closes it, reopens it with a
//! growing pause (redb recovers to the last committed transaction) and retries the *same* group
//! until it is durable. Callers are not failed meanwhile: they wait, so the gateway holds its
//! unacknowledged deliveries (bounded by the prefetch) instead of burning their delivery count or
//! answering anyone, and carries on by itself once the disk has room again. Only shutdown ends the
//! wait, with [`StoreError::Stopped`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::{Change, DeliveryStore, MessageRecord, OverdueRecipient, StoreError};
use crate::ids::{HerId, MsgId, Timestamp};

/// At most this many commit requests share one transaction (bounds the transaction's size and the
/// latency of the first caller in it).
pub const MAX_GROUP: usize = 1024;

/// First pause before reopening after an I/O failure; it doubles up to [`REOPEN_PAUSE_MAX`].
const REOPEN_PAUSE: Duration = Duration::from_millis(250);
const REOPEN_PAUSE_MAX: Duration = Duration::from_secs(5);
/// While the store stays unavailable, the error is repeated in the log this often.
const REMIND_EVERY: Duration = Duration::from_secs(30);

/// Whether the store can be written, for `/health` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreHealth {
    Available,
    /// Writes fail (a full disk, an I/O error); the writer is reopening and retrying.
    Unavailable {
        since: Timestamp,
        reason: String,
    },
    /// The handle was shut down.
    Stopped,
}

enum Request {
    /// Changes, whether the caller waits for them to be durable, and where to answer.
    Commit(Vec<Change>, bool, Reply<()>),
    Prune(Timestamp, time::Duration, Reply<usize>),
    /// A reader met an I/O error: close and reopen the database.
    Reopen(String),
}

/// What the writer thread and the readers share.
struct Shared {
    dir: PathBuf,
    path: PathBuf,
    /// `None` while the database is closed for reopening.
    slot: RwLock<Option<Arc<DeliveryStore>>>,
    health: watch::Sender<StoreHealth>,
    stopping: AtomicBool,
    /// Write transactions of the databases closed by reopening.
    earlier_transactions: AtomicU64,
}

impl Shared {
    fn current(&self) -> Option<Arc<DeliveryStore>> {
        match self.slot.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set(&self, store: Option<Arc<DeliveryStore>>) -> Option<Arc<DeliveryStore>> {
        let mut slot = match self.slot.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        std::mem::replace(&mut *slot, store)
    }

    /// Closes the database and opens it again, pausing `pause` first. Returns false if the handle
    /// is stopping. Marks the store unavailable with `reason`; the caller marks it available once
    /// a write has succeeded.
    fn reopen(&self, reason: &str, outage: &mut Option<Outage>, pause: Duration) -> bool {
        let o = outage.get_or_insert_with(|| {
            tracing::error!(
                path = %self.path.display(),
                %reason,
                "delivery store cannot be written; holding every message unacknowledged until it can (free disk space \
                 under the state directory); reopening and retrying"
            );
            let since = time::OffsetDateTime::now_utc();
            self.health.send_replace(StoreHealth::Unavailable { since, reason: reason.to_owned() });
            Outage { started: Instant::now(), reminded: Instant::now(), attempts: 0 }
        });
        o.attempts += 1;
        if o.reminded.elapsed() >= REMIND_EVERY {
            o.reminded = Instant::now();
            tracing::error!(
                path = %self.path.display(),
                %reason,
                for_s = o.started.elapsed().as_secs(),
                attempts = o.attempts,
                "delivery store still cannot be written; messages are held unacknowledged"
            );
            let since = match &*self.health.borrow() {
                StoreHealth::Unavailable { since, .. } => *since,
                _ => time::OffsetDateTime::now_utc(),
            };
            self.health.send_replace(StoreHealth::Unavailable {
                since,
                reason: reason.to_owned(),
            });
        }
        if let Some(old) = self.set(None) {
            self.earlier_transactions
                .fetch_add(old.write_transactions(), Ordering::Relaxed);
            // Readers hold it only for one short read; redb allows one open database per file.
            let waited = Instant::now();
            while Arc::strong_count(&old) > 1 && waited.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(old);
        }
        std::thread::sleep(pause);
        if self.stopping.load(Ordering::Acquire) {
            return false;
        }
        match DeliveryStore::open(&self.dir) {
            Ok(store) => {
                self.set(Some(Arc::new(store)));
            }
            Err(e) => {
                tracing::debug!(error = %e, "reopening the delivery store failed; will try again")
            }
        }
        true
    }

    fn recovered(&self, outage: &mut Option<Outage>) {
        if let Some(o) = outage.take() {
            tracing::info!(
                path = %self.path.display(),
                after_s = o.started.elapsed().as_secs(),
                attempts = o.attempts,
                "delivery store can be written again; held messages continue"
            );
            self.health.send_replace(StoreHealth::Available);
        }
    }
}

/// An ongoing period of I/O failures, for the log.
struct Outage {
    started: Instant,
    reminded: Instant,
    attempts: u32,
}

/// The store's size (`RedbHandle::size`, `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSize {
    pub records: u64,
    pub file_bytes: u64,
}

/// Async access to the redb store, with group-committed writes (behind [`super::StoreHandle`]); dropping
/// it lets the writer finish the queue and stop, [`RedbHandle::shutdown`] also waits for that.
pub struct RedbHandle {
    requests: mpsc::Sender<Request>,
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl RedbHandle {
    /// Starts the writer thread. `queue` bounds the requests waiting for it (at least 1).
    pub fn start(store: DeliveryStore, queue: usize) -> Result<RedbHandle, StoreError> {
        let path = store.path().to_path_buf();
        let dir = path
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_else(|| PathBuf::from("."));
        let shared = Arc::new(Shared {
            dir,
            path: path.clone(),
            slot: RwLock::new(Some(Arc::new(store))),
            health: watch::Sender::new(StoreHealth::Available),
            stopping: AtomicBool::new(false),
            earlier_transactions: AtomicU64::new(0),
        });
        let (requests, rx) = mpsc::channel(queue.max(1));
        let writer_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("delivery-store-writer".into())
            .spawn(move || write_loop(&writer_shared, rx))
            .map_err(|e| StoreError::Directory {
                path,
                source: Arc::new(e),
            })?;
        Ok(RedbHandle {
            requests,
            shared,
            writer: Some(thread),
        })
    }

    /// Commits `changes` atomically; returns once they are durable (or refused). While the store
    /// cannot be written this waits (see the module documentation).
    pub async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        ask(&self.requests, |tx| Request::Commit(changes, true, tx)).await
    }

    /// Records `changes` without a flush of their own (DESIGN §3 step 2, `Received`/`Routed`):
    /// returns once they are queued for the writer, which holds them (at most `RECORD_LINGER`) until
    /// a [`RedbHandle::commit`] arrives and writes them in that commit's transaction — one flush for
    /// both. A later commit of the same caller lands in the same or a later transaction, never an
    /// earlier one. [`Recorded::outcome`] tells whether they were accepted.
    pub async fn record(&self, changes: Vec<Change>) -> Result<Recorded, StoreError> {
        send(&self.requests, |tx| Request::Commit(changes, false, tx))
            .await
            .map(Recorded)
    }

    /// Prunes records older than `retention` (in the writer thread, between group commits).
    pub async fn prune(
        &self,
        now: Timestamp,
        retention: time::Duration,
    ) -> Result<usize, StoreError> {
        ask(&self.requests, |tx| Request::Prune(now, retention, tx)).await
    }

    /// See [`DeliveryStore::get`]. One key, a few microseconds: read on the calling task rather than
    /// handed to the blocking pool and back (a thread hand-off per message on the hot path).
    pub async fn get(
        &self,
        sender: HerId,
        msg_id: MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.read_with(Inline, move |s| s.get(sender, &msg_id))
            .await
    }

    /// See [`DeliveryStore::find`].
    pub async fn find(&self, msg_id: MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        self.read_with(Blocking, move |s| s.find(&msg_id)).await
    }

    /// See [`DeliveryStore::overdue`] (a scan: on the blocking pool).
    pub async fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        self.read_with(Blocking, move |s| s.overdue(now, timeout))
            .await
    }

    /// How big the store is: records in it (an O(1) count) and the size of its file on disk. redb
    /// grows its file by doubling and trims it only when the tail is free, so the file size moves in
    /// steps; the record count is what retention bounds.
    pub async fn size(&self) -> Result<StoreSize, StoreError> {
        let records = self.read_with(Inline, |s| s.records()).await?;
        let file_bytes = std::fs::metadata(&self.shared.path)
            .map(|m| m.len())
            .map_err(|e| StoreError::Directory {
                path: self.shared.path.clone(),
                source: Arc::new(e),
            })?;
        Ok(StoreSize {
            records,
            file_bytes,
        })
    }

    /// Write transactions committed so far (a group commit counts once).
    pub fn write_transactions(&self) -> u64 {
        let current = self.shared.current().map_or(0, |s| s.write_transactions());
        self.shared.earlier_transactions.load(Ordering::Relaxed) + current
    }

    /// Whether the store can be written now; changes as it fails and recovers.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.shared.health.subscribe()
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it. A writer
    /// waiting for the disk gives up: its callers get [`StoreError::Stopped`].
    pub async fn shutdown(mut self) {
        let thread = self.writer.take();
        drop(self);
        if let Some(thread) = thread {
            // Joining blocks; do it off the async worker threads.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    /// Runs `f` against the open database, inline or on the blocking pool. While the store is
    /// unavailable it waits; an I/O error of the read itself asks the writer to reopen, then the
    /// read is retried.
    async fn read_with<T: Send + 'static>(
        &self,
        how: ReadOn,
        f: impl Fn(&DeliveryStore) -> Result<T, StoreError> + Send + Sync + 'static,
    ) -> Result<T, StoreError> {
        let f = Arc::new(f);
        let mut health = self.shared.health.subscribe();
        loop {
            let (available, stopped) = {
                let h = health.borrow_and_update();
                (*h == StoreHealth::Available, *h == StoreHealth::Stopped)
            };
            if stopped {
                return Err(StoreError::Stopped);
            }
            if !available {
                // The writer is reopening it: wait until that is over.
                health.changed().await.map_err(|_| StoreError::Stopped)?;
                continue;
            }
            let Some(store) = self.shared.current() else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            let result = match how {
                ReadOn::Inline => Ok(f(&store)),
                ReadOn::Blocking => {
                    let g = Arc::clone(&f);
                    tokio::task::spawn_blocking(move || g(&store)).await
                }
            };
            match result {
                Err(_) => return Err(StoreError::Stopped),
                Ok(Err(e)) if e.is_io() => {
                    self.requests
                        .send(Request::Reopen(e.to_string()))
                        .await
                        .map_err(|_| StoreError::Stopped)?;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Ok(result) => return result,
            }
        }
    }
}

/// Changes handed to the writer by [`RedbHandle::record`], not waited for yet.
#[must_use = "the outcome says whether the changes were accepted"]
pub struct Recorded(oneshot::Receiver<Result<(), StoreError>>);

impl Recorded {
    pub(super) fn new(rx: oneshot::Receiver<Result<(), StoreError>>) -> Self {
        Recorded(rx)
    }

    /// Waits until the writer has committed them (not necessarily durably) or refused them.
    pub async fn outcome(self) -> Result<(), StoreError> {
        self.0.await.map_err(|_| StoreError::Stopped)?
    }
}

/// Where a read runs: short point reads on the calling task, scans on tokio's blocking pool.
#[derive(Clone, Copy)]
enum ReadOn {
    Inline,
    Blocking,
}
use ReadOn::{Blocking, Inline};

impl Drop for RedbHandle {
    fn drop(&mut self) {
        // Ends a wait for the disk (the queue itself is finished by the writer as it closes).
        self.shared.stopping.store(true, Ordering::Release);
    }
}

fn write_loop(shared: &Shared, mut rx: mpsc::Receiver<Request>) {
    let mut outage: Option<Outage> = None;
    // A timer for the writer thread's own waits (below); without one it cannot wait with a timeout.
    let timer = match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "delivery store writer cannot start its timer");
            shared.health.send_replace(StoreHealth::Stopped);
            return;
        }
    };
    while let Some(first) = rx.blocking_recv() {
        let mut group = Group::default();
        group.take(first);
        while group.commits.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(req) => group.take(req),
                Err(_) => break,
            }
        }
        // Records only (DESIGN §3 step 2): they need no flush of their own, so wait a little for a
        // commit that needs one — usually the same message's step 4, a few milliseconds later — and
        // share its flush. If none comes within RECORD_LINGER they are written anyway, so `status`
        // shows a message whose publishing takes long.
        let until = Instant::now() + RECORD_LINGER;
        while !group.needs_flush
            && group.reopen.is_none()
            && group.prunes.is_empty()
            && group.commits.len() < MAX_GROUP
        {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            // Sleeps until a request comes or the time is up (no polling: an idle writer costs
            // nothing while records wait).
            match timer.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
                Ok(Some(req)) => group.take(req),
                Ok(None) | Err(_) => break,
            }
        }
        let Group {
            commits,
            prunes,
            reopen,
            ..
        } = group;
        if let Some(reason) = reopen {
            if shared.reopen(&reason, &mut outage, Duration::ZERO) && shared.current().is_some() {
                shared.recovered(&mut outage);
            }
        }
        if !commits.is_empty() {
            let batches: Vec<&[Change]> = commits.iter().map(|(c, _)| c.as_slice()).collect();
            match until_written(shared, &mut outage, |s| s.commit_group(&batches)) {
                Ok(results) => {
                    for ((_, reply), result) in commits.into_iter().zip(results) {
                        // A caller that gave up waiting still had its changes committed.
                        let _ = reply.send(result);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, callers = commits.len(), "delivery store group commit failed");
                    for (_, reply) in commits {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
        for (now, retention, reply) in prunes {
            let _ = reply.send(until_written(shared, &mut outage, |s| {
                s.prune(now, retention)
            }));
        }
    }
    shared.health.send_replace(StoreHealth::Stopped);
}

/// How long step-2 records wait for a commit that needs a flush before they are written alone.
const RECORD_LINGER: Duration = Duration::from_millis(100);

pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Hands a writer the request `make` builds around a reply channel; the receiver of the answer is
/// returned (a gone writer is [`StoreError::Stopped`]). Both backends' writers are asked this way.
pub(super) async fn send<R, T>(
    requests: &mpsc::Sender<R>,
    make: impl FnOnce(Reply<T>) -> R,
) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
    let (tx, rx) = oneshot::channel();
    requests
        .send(make(tx))
        .await
        .map_err(|_| StoreError::Stopped)?;
    Ok(rx)
}

/// [`send`], then waits for the writer's answer.
pub(super) async fn ask<R, T>(
    requests: &mpsc::Sender<R>,
    make: impl FnOnce(Reply<T>) -> R,
) -> Result<T, StoreError> {
    send(requests, make)
        .await?
        .await
        .map_err(|_| StoreError::Stopped)?
}

/// The requests one write transaction serves.
#[derive(Default)]
struct Group {
    commits: Vec<(Vec<Change>, Reply<()>)>,
    prunes: Vec<(Timestamp, time::Duration, Reply<usize>)>,
    reopen: Option<String>,
    /// Someone waits for durability (a commit, not only records).
    needs_flush: bool,
}

impl Group {
    fn take(&mut self, req: Request) {
        match req {
            Request::Commit(changes, durable, reply) => {
                self.needs_flush |= durable;
                self.commits.push((changes, reply));
            }
            Request::Prune(now, retention, reply) => self.prunes.push((now, retention, reply)),
            Request::Reopen(reason) => self.reopen = Some(reason),
        }
    }
}

/// Runs the write `w`; on an I/O failure reopens the database and runs it again, with a growing
/// pause, until it succeeds, fails for another reason, or the handle stops.
fn until_written<T>(
    shared: &Shared,
    outage: &mut Option<Outage>,
    w: impl Fn(&DeliveryStore) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut pause = REOPEN_PAUSE;
    loop {
        let result = match shared.current() {
            Some(store) => w(&store),
            None => Err(StoreError::Stopped),
        };
        let reason = match result {
            Err(e) if e.is_io() => e.to_string(),
            // Closed and not yet reopened (the reopen failed): try again.
            Err(StoreError::Stopped) if !shared.stopping.load(Ordering::Acquire) => {
                "the database could not be reopened".to_owned()
            }
            other => {
                if other.is_ok() {
                    shared.recovered(outage);
                }
                return other;
            }
        };
        if !shared.reopen(
            &reason,
            outage,
            if outage.is_some() {
                pause
            } else {
                Duration::ZERO
            },
        ) {
            return Err(StoreError::Stopped);
        }
        pause = (pause * 2).min(REOPEN_PAUSE_MAX);
    }
}
