//! The gateway's lifecycle: [`Gateway::start`] opens the delivery store, starts the broker
//! supervisor, the assessment threads, the HTTP endpoint and the periodic work (overdue AppRecs,
//! pruning), and hands the intake to the lanes (`lanes.rs`); [`Gateway::shutdown`] stops taking
//! deliveries, lets the lanes reach a safe point, closes the broker session and the store.
//!
//! One message's path, file by file: `lanes.rs` (its sender's lane, per-sender order, retries in
//! place) → `assess.rs` (decode → verify → validate → route, on the worker pool) → `keylock.rs`
//! (one record at a time) → `decide.rs` (everything to send and record, the gateway's AppRec) →
//! `deliver.rs` (record, publish with confirms, commit, ack — DESIGN §3).
//!
//! Failure modes here: the store cannot be opened, the routing log or the HTTP port cannot be
//! opened, the assessment threads cannot start — each a [`GatewayError`] before anything is consumed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tracing::{info, warn};

use super::assess::{Context, ContextCell};
use super::crash::{CrashAt, CrashPoint};
use super::decide::Identity;
use super::keylock::KeyLocks;
use super::metrics::Metrics;
use super::routing_log::{Decision, MessageRef, Outcome, RoutingLog};
use super::workers::Workers;
use crate::amqp::connection::AmqpSettings;
use crate::amqp::supervisor::{Backoff, LinkState, SessionPlan, Supervisor, SupervisorHandle};
use crate::amqp::topology::Topology;
use crate::cms::Signer;
use crate::ids::{HerId, MsgId, Timestamp};
use crate::store::state::Event;
use crate::store::{Change, MessageRecord, StoreError, StoreHandle, StoreHealth, Transition};

/// Where "now" comes from. Injected so that overdue and certificate checks are testable.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    pub fn system() -> Clock {
        Clock(Arc::new(time::OffsetDateTime::now_utc))
    }
    pub fn new(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Clock {
        Clock(Arc::new(f))
    }
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }
}

/// Everything `serve` needs beyond the assessment [`Context`].
pub struct Settings {
    pub amqp: AmqpSettings,
    pub topology: Topology,
    pub store_dir: PathBuf,
    /// Where delivery state is kept: redb in `store_dir` (the default) or PostgreSQL.
    pub store_backend: crate::config::StoreBackend,
    /// The file `helsemelding tail` follows (also printed on stdout when `routing_log_stdout`).
    pub routing_log: Option<PathBuf>,
    pub routing_log_stdout: bool,
    pub metrics_addr: Option<SocketAddr>,
    pub apprec_timeout: time::Duration,
    pub retention: time::Duration,
    /// How often overdue recipients are looked for and old records pruned.
    pub housekeeping_every: Duration,
    /// Publish attempts for one recipient before the message is dead-lettered with its reason.
    pub max_publish_attempts: u32,
    /// Pause before an infrastructure fault (stale CRL, store error) returns a delivery to the queue.
    pub retry_pause: Duration,
    /// How long shutdown waits for in-flight messages to reach a safe point.
    pub shutdown_grace: Duration,
    /// Fault injection for `helsemelding-lab chaos` (`HELSEMELDING_CRASH_AT`); None in production.
    pub crash_at: Option<CrashAt>,
    /// The certificates the hub depends on: warned about from 30 days before they expire.
    pub certificates: Vec<crate::certs::InUse>,
    /// Keeping CRLs current (`crate::revocation`); `None`: the CRLs loaded at start only.
    pub revocation: Option<crate::revocation::RevocationSettings>,
    /// The configuration this gateway was started from: a reload (`reload.rs`) reports the
    /// settings that differ from it and cannot change without a restart.
    pub config: Option<crate::config::GatewayConfig>,
    /// Recording observations for the health community's report (`crate::insight`); `None`: off.
    pub insight: Option<crate::insight::InsightSettings>,
}

impl Settings {
    /// Defaults for everything but where to connect and where state lives.
    pub fn new(amqp: AmqpSettings, store_dir: PathBuf) -> Settings {
        Settings {
            amqp,
            topology: Topology::default(),
            store_dir,
            store_backend: crate::config::StoreBackend::Redb,
            routing_log: None,
            routing_log_stdout: true,
            metrics_addr: None,
            apprec_timeout: time::Duration::hours(96),
            retention: time::Duration::days(30),
            housekeeping_every: Duration::from_secs(60),
            max_publish_attempts: 40,
            retry_pause: Duration::from_secs(2),
            shutdown_grace: Duration::from_secs(30),
            crash_at: None,
            certificates: Vec::new(),
            revocation: None,
            config: None,
            insight: None,
        }
    }
}

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("delivery state: {0}")]
    Store(#[from] StoreError),
    #[error("routing log {path}: {source}")]
    RoutingLog {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metrics endpoint {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("starting the assessment threads: {0}")]
    Workers(std::io::Error),
    #[error("insight: {0}")]
    Insight(#[from] crate::insight::store::InsightError),
}

/// What every part of a running gateway shares.
pub(super) struct Inner {
    pub(super) ctx: Arc<ContextCell>,
    pub(super) me: Identity,
    pub(super) store: StoreHandle,
    pub(super) link: SupervisorHandle,
    log: RoutingLog,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: Clock,
    pub(super) locks: KeyLocks,
    /// The CPU-bound work runs here, one thread per core (`workers.rs`).
    pub(super) workers: Workers,
    pub(super) settings: Settings,
    /// The certificates the hub depends on (those of `settings` until a reload replaces them).
    certificates: std::sync::Mutex<Vec<crate::certs::InUse>>,
    /// The day certificate warnings were last logged.
    certificates_warned: std::sync::Mutex<Option<time::Date>>,
    /// Where committed messages are offered as observations (`crate::insight`); `None`: off.
    pub(super) insight: Option<Arc<crate::insight::Recorder>>,
}

impl Inner {
    /// Writes a routing-log line and counts its outcome.
    pub(super) fn record(&self, d: Decision) {
        self.metrics.count(d.outcome);
        self.log.record(&d);
    }

    /// Replaces the certificates watched for expiry (a reload); their days left and warnings are
    /// brought up to date at once.
    pub(super) fn replace_certificates(&self, certs: Vec<crate::certs::InUse>) {
        *self.certificates.lock().unwrap_or_else(|p| p.into_inner()) = certs;
        *self
            .certificates_warned
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = None;
        certificates(self, self.clock.now());
    }

    pub(super) fn crash_point(&self, point: CrashPoint) {
        if let Some(c) = &self.settings.crash_at {
            c.reached(point);
        }
    }
}

/// A running gateway. Stop it with [`Gateway::shutdown`] (what SIGTERM does).
pub struct Gateway {
    inner: Arc<Inner>,
    stop: tokio::sync::watch::Sender<bool>,
    main: tokio::task::JoinHandle<()>,
    supervisor_task: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    /// Opens the store, starts the broker supervisor and begins consuming the intake.
    pub async fn start(
        mut settings: Settings,
        ctx: Context,
        signer: Signer,
        clock: Clock,
    ) -> Result<Gateway, GatewayError> {
        let store = StoreHandle::open(&settings.store_backend, &settings.store_dir, 4096).await?;
        let log = match &settings.routing_log {
            Some(p) => {
                RoutingLog::open(Some(p), settings.routing_log_stdout).map_err(|source| {
                    GatewayError::RoutingLog {
                        path: p.clone(),
                        source,
                    }
                })?
            }
            None => RoutingLog::open(None, settings.routing_log_stdout).map_err(|source| {
                GatewayError::RoutingLog {
                    path: PathBuf::new(),
                    source,
                }
            })?,
        };
        let metrics = Arc::new(Metrics::default());
        let insight = match settings.insight.take() {
            Some(i) => Some(Arc::new(crate::insight::Recorder::start(
                i,
                metrics.insight_not_recorded.clone(),
            )?)),
            None => None,
        };
        let mut background = Vec::new();
        if let Some(addr) = settings.metrics_addr {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| GatewayError::Metrics { addr, source })?;
            info!(%addr, "metrics and health endpoint listening");
            background.push(tokio::spawn(super::metrics::serve_http(
                listener,
                metrics.clone(),
            )));
        }
        let mut parties: Vec<HerId> = ctx.register.parties().iter().map(|p| p.her_id).collect();
        if !parties.contains(&ctx.gateway_her) {
            parties.push(ctx.gateway_her);
        }
        let plan = SessionPlan {
            topology: settings.topology.clone(),
            parties,
            consume: Some(settings.topology.inbound.clone()),
            backoff: Backoff::default(),
        };
        let supervisor = Supervisor::spawn(settings.amqp.clone(), plan);
        let Supervisor {
            handle: link,
            deliveries,
            task: supervisor_task,
        } = supervisor;
        let workers = Workers::per_core().map_err(GatewayError::Workers)?;
        let me = Identity {
            her: ctx.gateway_her,
            signer,
            dead_letter: settings.topology.dead_letter.clone(),
        };
        let ctx = Arc::new(ContextCell::new(ctx));
        if let Some(r) = settings.revocation.clone() {
            let clock = clock.clone();
            background.push(tokio::spawn(
                crate::revocation::Refresher {
                    settings: r,
                    holder: ctx.clone(),
                    clock: Arc::new(move || clock.now()),
                    status: metrics.crls.clone(),
                }
                .run(),
            ));
        }
        let inner = Arc::new(Inner {
            ctx,
            me,
            store,
            link,
            log,
            metrics,
            clock,
            locks: KeyLocks::default(),
            workers,
            certificates: std::sync::Mutex::new(settings.certificates.clone()),
            settings,
            certificates_warned: std::sync::Mutex::new(None),
            insight,
        });
        background.push(tokio::spawn(watch_link(inner.clone())));
        background.push(tokio::spawn(watch_store(inner.clone())));
        background.push(tokio::spawn(housekeeping(inner.clone())));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let main = match deliveries {
            Some(d) => tokio::spawn(super::lanes::consume(inner.clone(), d, stop_rx)),
            None => tokio::spawn(async {}),
        };
        Ok(Gateway {
            inner,
            stop,
            main,
            supervisor_task,
            background,
        })
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.inner.metrics.clone()
    }

    /// The parties whose queues the gateway declares, as of each call (a reload changes them).
    pub fn party_list(&self) -> crate::console::PartyList {
        let link = self.inner.link.clone();
        Arc::new(move || link.parties())
    }

    /// The delivery store as the console reads it: through this gateway's handle, so the console
    /// shows the same records on redb and on PostgreSQL.
    pub fn store_reads(&self) -> Arc<dyn crate::console::StoreReads> {
        Arc::new(StoreReads(Arc::clone(&self.inner)))
    }

    /// The insight recorder, when `[insight]` is enabled (its store serves `/report`).
    pub fn insight(&self) -> Option<Arc<crate::insight::Recorder>> {
        self.inner.insight.clone()
    }

    /// The delivery record of a message, from the store (what `helsemelding status` shows).
    pub async fn record(
        &self,
        sender: HerId,
        msg_id: &MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.inner.store.get(sender, msg_id.clone()).await
    }

    /// Re-reads the configuration, the register and the trust directory and, when they check out
    /// exactly as `check-config` checks them, swaps them in between messages (`reload.rs`; what
    /// SIGHUP does in `serve`). On any problem the running set stays and every problem is returned.
    pub async fn reload(
        &self,
        config: &std::path::Path,
    ) -> Result<super::reload::Reloaded, super::reload::ReloadFailed> {
        super::reload::reload(&self.inner, config).await
    }

    /// Runs one overdue/prune pass now (tests; the daemon does it every `housekeeping_every`).
    pub async fn housekeep_now(&self) {
        housekeeping_pass(&self.inner).await;
    }

    /// Graceful stop: take no new deliveries, let in-flight ones reach a safe point (bounded by
    /// `shutdown_grace`), close the broker session (unacked deliveries go back to the queue), and
    /// flush the store.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.main.await;
        for t in self.background {
            t.abort();
            let _ = t.await;
        }
        self.inner.link.shutdown();
        let _ = self.supervisor_task.await;
        // Aborted in-flight tasks release their handle on the store as they are dropped.
        let mut inner = self.inner;
        for _ in 0..50 {
            match Arc::try_unwrap(inner) {
                Ok(i) => {
                    i.store.shutdown().await;
                    if let Some(r) = &i.insight {
                        let r = r.clone();
                        let _ = tokio::task::spawn_blocking(move || r.shutdown()).await;
                    }
                    info!("gateway stopped");
                    return;
                }
                Err(still) => {
                    inner = still;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        // Every commit is already durable; only the writer thread's orderly exit is skipped.
        warn!("store still referenced at shutdown; its writer finishes when the process exits");
    }
}

async fn watch_link(inner: Arc<Inner>) {
    let mut state = inner.link.state();
    let mut blocked = inner.link.blocked();
    let mut seen_up = false;
    loop {
        let up = matches!(*state.borrow_and_update(), LinkState::Up { .. });
        if up && seen_up {
            inner.metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        seen_up |= up;
        inner.metrics.broker_connected.store(up, Ordering::Relaxed);
        inner
            .metrics
            .broker_blocked
            .store(blocked.borrow_and_update().is_some(), Ordering::Relaxed);
        tokio::select! {
            r = state.changed() => if r.is_err() { return },
            r = blocked.changed() => if r.is_err() { return },
        }
    }
}

/// Mirrors the store's health into the metrics (`/health`, `helsemelding_store_available`).
async fn watch_store(inner: Arc<Inner>) {
    let mut health = inner.store.health();
    loop {
        let problem = match &*health.borrow_and_update() {
            StoreHealth::Available => None,
            StoreHealth::Unavailable { since, reason } => Some(format!("since {since}: {reason}")),
            StoreHealth::Stopped => Some("stopped".to_owned()),
        };
        match inner.metrics.store_unavailable.lock() {
            Ok(mut g) => *g = problem,
            Err(p) => *p.into_inner() = problem,
        }
        if health.changed().await.is_err() {
            return;
        }
    }
}

async fn housekeeping(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(inner.settings.housekeeping_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        housekeeping_pass(&inner).await;
    }
}

/// Marks recipients silent past `apprec_timeout` as Overdue (HIS 80415:2012 §3.2: no AppRec within
/// 96 hours of GenDate is a negative answer for the sender) and prunes records past retention.
async fn housekeeping_pass(inner: &Inner) {
    let now = inner.clock.now();
    // Several instances on one PostgreSQL store: only the one holding the lease sweeps and prunes,
    // so each overdue recipient is reported once (redb: always this instance).
    let lease = match inner.store.periodic_lease().await {
        Ok(lease) => lease,
        Err(e) => {
            warn!(error = %e, "periodic-work lease unavailable; skipping overdue and prune this pass");
            false
        }
    };
    if lease {
        sweep_and_prune(inner, now).await;
    }
    certificates(inner, now);
    store_size(inner).await;
}

/// The periodic work done by one instance at a time: overdue sweep and pruning.
async fn sweep_and_prune(inner: &Inner, now: Timestamp) {
    match inner
        .store
        .overdue(now, inner.settings.apprec_timeout)
        .await
    {
        Ok(list) => {
            // Many at once, so that the store's group commit carries them together (one flush for
            // a chunk instead of one per recipient: a backlog after downtime, or the soak's clock,
            // is thousands); each still under its own record lock.
            for chunk in list.chunks(OVERDUE_AT_ONCE) {
                join_all(chunk.iter().map(|o| mark_overdue(inner, o, now))).await;
            }
        }
        Err(e) => warn!(error = %e, "overdue scan failed; will try again"),
    }
    match inner.store.prune(now, inner.settings.retention).await {
        Ok(0) => {}
        Ok(n) => {
            inner.metrics.pruned.fetch_add(n as u64, Ordering::Relaxed);
            info!(pruned = n, "pruned delivery records past retention");
        }
        Err(e) => warn!(error = %e, "prune failed; will try again"),
    }
}

async fn store_size(inner: &Inner) {
    match inner.store.size().await {
        Ok(size) => {
            inner
                .metrics
                .store_records
                .store(size.records, Ordering::Relaxed);
            inner
                .metrics
                .store_file_bytes
                .store(size.file_bytes, Ordering::Relaxed);
        }
        Err(e) => warn!(error = %e, "reading the delivery store's size failed; will try again"),
    }
}

/// Overdue recipients committed at once by the housekeeping pass.
const OVERDUE_AT_ONCE: usize = 64;

/// Records [`Event::Overdue`] for one recipient, logs and counts it.
async fn mark_overdue(inner: &Inner, o: &crate::store::OverdueRecipient, now: Timestamp) {
    let _guard = inner.locks.lock(o.sender, &o.msg_id).await;
    let change = Change::Apply(Transition {
        sender: o.sender,
        msg_id: o.msg_id.clone(),
        recipient: o.recipient,
        event: Event::Overdue,
        at: now,
        apprec_id: None,
        codes: Vec::new(),
    });
    match inner.store.commit(vec![change]).await {
        Ok(()) => {
            warn!(msg_id = %o.msg_id, from_her = %o.sender, to_her = ?o.her, "no AppRec within the timeout: overdue");
            let about = MessageRef {
                msg_id: Some(o.msg_id.clone()),
                msg_type: None,
                from_her: Some(o.sender),
                to_her: o.her,
            };
            inner.record(Decision::new(now, Outcome::Overdue, &about).reason(format!(
                "no AppRec since {}",
                crate::ids::rfc3339(o.clock_start)
            )));
        }
        // The recipient's AppRec arrived in the meantime: nothing is overdue.
        Err(StoreError::Illegal { .. }) => {}
        Err(e) => warn!(error = %e, "overdue: store commit failed; will try again"),
    }
}

/// Days left for every certificate in `/metrics`; a warning for each one within 30 days of expiry
/// (or expired), at start and then once a day.
fn certificates(inner: &Inner, now: Timestamp) {
    let certs = inner
        .certificates
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let days: Vec<(String, i64)> = certs
        .iter()
        .map(|c| {
            (
                format!("{} ({})", c.role, c.path.display()),
                c.days_left(now),
            )
        })
        .collect();
    match inner.metrics.certificate_days.lock() {
        Ok(mut g) => *g = days,
        Err(p) => *p.into_inner() = days,
    }
    let today = now.date();
    let mut warned = inner
        .certificates_warned
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if *warned == Some(today) {
        return;
    }
    *warned = Some(today);
    for c in certs.iter().filter(|c| c.due(now)) {
        warn!("{}", c.warning(now));
    }
}

/// [`Gateway::store_reads`]: the console's reads on the gateway's own store handle.
struct StoreReads(Arc<Inner>);

impl crate::console::StoreReads for StoreReads {
    fn find(
        &self,
        msg_id: crate::ids::MsgId,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<MessageRecord>, StoreError>> {
        Box::pin(self.0.store.find(msg_id))
    }

    fn overdue(
        &self,
        now: crate::ids::Timestamp,
        timeout: time::Duration,
    ) -> futures_util::future::BoxFuture<'_, Result<Vec<crate::store::OverdueRecipient>, StoreError>>
    {
        Box::pin(self.0.store.overdue(now, timeout))
    }
}
