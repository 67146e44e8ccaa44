//! Group commit: one dedicated thread owns every write to the [`DeliveryStore`], so many messages
//! share one durable flush (DESIGN §3, step 4: "record `Delivered` (group-committed)").
//!
//! Input: [`StoreHandle::commit`] calls from any number of tasks. The writer thread takes the first
//! queued request, then everything else that queued up meanwhile (while the previous transaction
//! was flushing), commits all of it in one write transaction, and only then answers each caller —
//! so a caller's `Ok` means "durable", and the caller may ack the inbound delivery.
//! Output: per caller, `Ok(())` or the [`StoreError`] of its own batch (batches are isolated: one
//! caller's illegal transition does not fail the others').
//!
//! Bounds: the request queue holds at most `queue` requests (callers wait when it is full —
//! backpressure onto the consumer, never unbounded memory); one transaction takes at most
//! [`MAX_GROUP`] requests. Reads run on tokio's blocking pool against the same database (redb
//! readers never block the writer). Failure modes: an I/O failure of the transaction is returned to
//! every caller in it; if the thread has stopped, calls return [`StoreError::Stopped`].

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

use super::{Change, DeliveryStore, MessageRecord, OverdueRecipient, StoreError};
use crate::ids::{HerId, MsgId, Timestamp};

/// At most this many commit requests share one transaction (bounds the transaction's size and the
/// latency of the first caller in it).
pub const MAX_GROUP: usize = 1024;

enum Request {
    Commit(Vec<Change>, oneshot::Sender<Result<(), StoreError>>),
    Prune(Timestamp, time::Duration, oneshot::Sender<Result<usize, StoreError>>),
}

/// Async access to the store, with group-committed writes. Share it as `Arc<StoreHandle>`; dropping
/// it lets the writer finish the queue and stop, [`StoreHandle::shutdown`] also waits for that.
pub struct StoreHandle {
    requests: mpsc::Sender<Request>,
    store: Arc<DeliveryStore>,
    writer: Option<JoinHandle<()>>,
}

impl StoreHandle {
    /// Starts the writer thread. `queue` bounds the requests waiting for it (at least 1).
    pub fn start(store: DeliveryStore, queue: usize) -> Result<StoreHandle, StoreError> {
        let store = Arc::new(store);
        let (requests, rx) = mpsc::channel(queue.max(1));
        let writer_store = Arc::clone(&store);
        let thread = std::thread::Builder::new()
            .name("delivery-store-writer".into())
            .spawn(move || write_loop(&writer_store, rx))
            .map_err(|e| StoreError::Directory { path: store.path().to_path_buf(), source: Arc::new(e) })?;
        Ok(StoreHandle { requests, store, writer: Some(thread) })
    }

    /// Commits `changes` atomically; returns once they are durable (or refused).
    pub async fn commit(&self, changes: Vec<Change>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Commit(changes, tx)).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Prunes records older than `retention` (in the writer thread, between group commits).
    pub async fn prune(&self, now: Timestamp, retention: time::Duration) -> Result<usize, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(Request::Prune(now, retention, tx)).await.map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// See [`DeliveryStore::get`].
    pub async fn get(&self, sender: HerId, msg_id: MsgId) -> Result<Option<MessageRecord>, StoreError> {
        self.read(move |s| s.get(sender, &msg_id)).await
    }

    /// See [`DeliveryStore::find`].
    pub async fn find(&self, msg_id: MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        self.read(move |s| s.find(&msg_id)).await
    }

    /// See [`DeliveryStore::overdue`].
    pub async fn overdue(&self, now: Timestamp, timeout: time::Duration) -> Result<Vec<OverdueRecipient>, StoreError> {
        self.read(move |s| s.overdue(now, timeout)).await
    }

    /// Write transactions committed so far (a group commit counts once).
    pub fn write_transactions(&self) -> u64 {
        self.store.write_transactions()
    }

    /// Stops taking requests, lets the writer finish what is queued, and waits for it.
    pub async fn shutdown(mut self) {
        let thread = self.writer.take();
        drop(self);
        if let Some(thread) = thread {
            // Joining blocks; do it off the async worker threads.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DeliveryStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|_| StoreError::Stopped)?
    }
}

fn write_loop(store: &DeliveryStore, mut rx: mpsc::Receiver<Request>) {
    while let Some(first) = rx.blocking_recv() {
        let mut commits = Vec::new();
        let mut prunes = Vec::new();
        let mut next = Some(first);
        while let Some(req) = next {
            match req {
                Request::Commit(changes, reply) => commits.push((changes, reply)),
                Request::Prune(now, retention, reply) => prunes.push((now, retention, reply)),
            }
            next = if commits.len() < MAX_GROUP { rx.try_recv().ok() } else { None };
        }
        if !commits.is_empty() {
            let batches: Vec<&[Change]> = commits.iter().map(|(c, _)| c.as_slice()).collect();
            match store.commit_group(&batches) {
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
            let _ = reply.send(store.prune(now, retention));
        }
    }
}
