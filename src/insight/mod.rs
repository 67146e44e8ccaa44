//! What the health community learns from its traffic (DESIGN §7, issue 13; definitions in
//! `../shared/research/health-community-indicators.md`).
//!
//! | module        | job |
//! |---------------|-----|
//! | `key`         | the patient pseudonym: HMAC-SHA256 under rotated keys from `[insight] key_file` |
//! | `oslo`        | message times placed in Europe/Oslo; working days and public holidays |
//! | `observation` | one committed message → an [`observation::Observation`] (no names, identity numbers, free text) |
//! | `store`       | `insight.redb` behind the [`store::ObservationStore`] trait |
//! | `indicators`  | pure: observations → episodes → indicator cells I1–I12 per unit and month |
//! | `suppress`    | pure: the small-number rule applied to cells |
//! | `population`  | the optional population table: I2 per 1,000 inhabitants |
//! | `report`      | `helsemelding report`: HTML, CSV, XLSX; the same HTML at `/report` |
//!
//! This file is the [`Recorder`]: after the commit (DESIGN §3 step 4) the gateway offers a
//! [`observation::Seed`] to a bounded queue with `try_send`. If the queue is full or the recorder
//! failed, delivery goes on regardless; the message is counted as a *gap* (`/metrics`
//! `helsemelding_insight_not_recorded_total`, a warning at most once a minute, and per month in the
//! store so the report can show it). The recorder thread reads the payload, pseudonymises, writes
//! in batches, and once an hour deletes what retention allows after freezing the months' cells.

pub mod indicators;
pub mod key;
pub mod observation;
pub mod oslo;
pub mod population;
pub mod report;
pub mod store;
pub mod suppress;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use key::Keys;
use observation::{observe, Observation, Seed};
use store::{InsightError, ObservationStore, RedbStore};

/// How many observations may wait for the recorder before new ones are counted as gaps.
pub const QUEUE: usize = 8192;
/// Observations written in one transaction at most.
const BATCH: usize = 512;
/// How often retention is applied.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the recorder needs.
pub struct InsightSettings {
    /// The directory of `insight.redb` (the gateway's state directory).
    pub store_dir: PathBuf,
    pub keys: Keys,
    /// Observations and pseudonyms of episodes closed longer than this are deleted.
    pub retention: time::Duration,
    pub queue: usize,
}

/// Counts messages that were not recorded and warns about them at most once a minute.
pub struct Gaps {
    total: Arc<AtomicU64>,
    /// Counted but not yet written to the store's `gaps` table.
    unsaved: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

impl Gaps {
    fn new(total: Arc<AtomicU64>) -> Gaps {
        Gaps {
            total,
            unsaved: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        }
    }

    fn count(&self, n: u64, why: &str) {
        self.total.fetch_add(n, Ordering::Relaxed);
        self.unsaved.fetch_add(n, Ordering::Relaxed);
        let mut last = match self.last_warning.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            warn!(
                not_recorded = self.total.load(Ordering::Relaxed),
                reason = why,
                "insight: messages delivered but not recorded (the report shows the gap)"
            );
        }
    }
}

/// The gateway's side of the recorder: a bounded queue into the recorder thread.
pub struct Recorder {
    tx: Mutex<Option<SyncSender<Seed>>>,
    gaps: Arc<Gaps>,
    store: Arc<RedbStore>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Recorder {
    /// Opens the store and starts the recorder thread. `not_recorded` is the gateway's metric.
    pub fn start(
        settings: InsightSettings,
        not_recorded: Arc<AtomicU64>,
    ) -> Result<Recorder, InsightError> {
        let store = Arc::new(RedbStore::open(&settings.store_dir)?);
        let (tx, rx) = mpsc::sync_channel::<Seed>(settings.queue.max(1));
        let gaps = Arc::new(Gaps::new(not_recorded));
        let worker = Worker {
            store: store.clone(),
            keys: settings.keys,
            retention: settings.retention,
            gaps: gaps.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("insight-recorder".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| InsightError::Database(format!("starting the recorder thread: {e}")))?;
        info!(store = %store.path().display(), "insight recorder started");
        Ok(Recorder {
            tx: Mutex::new(Some(tx)),
            gaps,
            store,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Hands one committed message to the recorder without waiting. Never fails: a full queue or a
    /// stopped recorder is a counted gap.
    pub fn offer(&self, seed: Seed) {
        let tx = match self.tx.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let Some(tx) = tx else {
            return self.gaps.count(1, "the recorder is stopped");
        };
        match tx.try_send(seed) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.gaps.count(1, "the recorder's queue is full"),
            Err(TrySendError::Disconnected(_)) => {
                self.gaps.count(1, "the recorder thread has stopped")
            }
        }
    }

    /// The store, for `/report` (reads run beside the recorder's writes).
    pub fn store(&self) -> Arc<RedbStore> {
        self.store.clone()
    }

    /// Lets the recorder write what is queued, then stops it.
    pub fn shutdown(&self) {
        if let Ok(mut g) = self.tx.lock() {
            g.take();
        }
        let t = match self.thread.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

struct Worker {
    store: Arc<RedbStore>,
    keys: Keys,
    retention: time::Duration,
    gaps: Arc<Gaps>,
}

impl Worker {
    fn run(self, rx: mpsc::Receiver<Seed>) {
        let mut last_prune = Instant::now();
        let mut open = true;
        while open {
            let mut batch = Vec::new();
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(s) => batch.push(s),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(s) => batch.push(s),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.record(&batch);
            }
            self.save_gaps();
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = Instant::now();
                self.prune(time::OffsetDateTime::now_utc());
            }
        }
        self.save_gaps();
    }

    fn record(&self, batch: &[Seed]) {
        let mut fresh: Vec<String> = Vec::new();
        let obs: Vec<Observation> = batch
            .iter()
            .map(|s| {
                observe(s, &self.keys, |candidates| {
                    // Every key is tried, so an episode begun under an older key stays linked.
                    let seen = candidates.iter().find(|c| fresh.contains(c)).cloned();
                    let linked = seen
                        .or_else(|| self.store.known(candidates).ok().flatten())
                        .unwrap_or_else(|| candidates[0].clone());
                    fresh.push(linked.clone());
                    linked
                })
            })
            .collect();
        if let Err(e) = self.store.put(&obs) {
            warn!(error = %e, "insight: cannot write observations");
            self.gaps
                .count(obs.len() as u64, "the insight store failed");
        }
    }

    /// Moves counted gaps into the store, by the month they are saved in.
    fn save_gaps(&self) {
        let n = self.gaps.unsaved.swap(0, Ordering::Relaxed);
        if n == 0 {
            return;
        }
        let month = indicators::month_of(time::OffsetDateTime::now_utc());
        if self.store.add_gap(&month, n).is_err() {
            self.gaps.unsaved.fetch_add(n, Ordering::Relaxed);
        }
    }

    fn prune(&self, now: time::OffsetDateTime) {
        let result = self.store.observations().and_then(|obs| {
            let plan = indicators::retention_plan(&obs, now, self.retention);
            let n = plan.observations.len();
            self.store
                .prune(&plan.frozen, &plan.observations, &plan.patients)
                .map(|()| n)
        });
        match result {
            Ok(0) => {}
            Ok(n) => info!(deleted = n, "insight: observations past retention deleted"),
            Err(e) => warn!(error = %e, "insight: retention pass failed; will try again"),
        }
    }
}
