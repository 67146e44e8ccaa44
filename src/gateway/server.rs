//! The effects half of the pipeline: takes each delivery from `gateway_inbound`, has it assessed
//! ([`super::assess`]), and carries out the plan in the order that makes the gateway lose nothing
//! (DESIGN §3):
//!
//! 1. consume (manual ack) → 2. record `Received`/`Routed` → 3. publish to recipients (and
//!    gateway-issued AppRecs) with confirms → 4. record `Delivered`/`Rejected` (group commit) →
//!    5. ack the inbound delivery.
//!
//! A crash anywhere means redelivery, and the store makes redelivery idempotent: recipients
//! already settled are skipped, recipients still `Routed` are published again (the only duplicate
//! a receiver can see, with the same MsgId), and a pending AppRec is rebuilt byte-for-byte the same
//! (deterministic Id and GenDate), so a sender never gets two different AppRecs for one message.
//!
//! Failure modes: a broker fault makes the delivery wait for the next session (its unacked
//! delivery returns to the queue by itself); a recipient queue that refuses messages is retried
//! with backoff up to a bound, then the message is dead-lettered with its reason; a store fault is
//! an infrastructure fault (requeue after a pause, never an AppRec).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use tokio::task::JoinSet;
use tracing::{error, info, warn};

use super::assess::{
    self, condition, AppRecPlan, Context, Inbound, MessagePlan, Plan, RecipientPlan, Refusal,
};
use super::crash::{CrashAt, CrashPoint};
use super::metrics::{Metrics, Phase};
use super::routing_log::{now_rfc3339, Decision, Outcome, RoutingLog};
use super::workers::Workers;
use crate::address::RecipientRole;
use crate::amqp::connection::AmqpSettings;
use crate::amqp::consumer::Delivery;
use crate::amqp::headers::{ContentType, MessageHeaders};
use crate::amqp::publisher::Route;
use crate::amqp::supervisor::{Backoff, LinkState, SessionPlan, Supervisor, SupervisorHandle};
use crate::amqp::topology::{async_queue, error_queue, Topology};
use crate::apprec::{build_apprec, AppRecInput, PrimaryRoleV1_0};
use crate::cms::Signer;
use crate::codes::{AppRecStatus, ErrorCode};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::store::state::Event;
use crate::store::{
    Change, DeliveryStore, MessageRecord, StoreError, StoreHandle, StoreHealth, Transition,
};

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
    /// Fault injection for `helsemelding chaos` (`HELSEMELDING_CRASH_AT`); None in production.
    pub crash_at: Option<CrashAt>,
}

impl Settings {
    /// Defaults for everything but where to connect and where state lives.
    pub fn new(amqp: AmqpSettings, store_dir: PathBuf) -> Settings {
        Settings {
            amqp,
            topology: Topology::default(),
            store_dir,
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
}

struct Inner {
    ctx: Context,
    signer: Signer,
    store: StoreHandle,
    link: SupervisorHandle,
    log: RoutingLog,
    metrics: Arc<Metrics>,
    clock: Clock,
    locks: KeyLocks,
    /// The CPU-bound assessment runs here, one thread per core (`workers.rs`).
    workers: Workers,
    settings: Settings,
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
        settings: Settings,
        ctx: Context,
        signer: Signer,
        clock: Clock,
    ) -> Result<Gateway, GatewayError> {
        let dir = settings.store_dir.clone();
        let store = tokio::task::spawn_blocking(move || DeliveryStore::open(&dir))
            .await
            .map_err(|e| StoreError::Corrupt {
                sender: HerId(1),
                msg_id: MsgId::new("-"),
                reason: format!("opening the store panicked: {e}"),
            })??;
        let store = StoreHandle::start(store, 4096)?;
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
        let inner = Arc::new(Inner {
            ctx,
            signer,
            store,
            link,
            log,
            metrics,
            clock,
            locks: KeyLocks::default(),
            workers,
            settings,
        });
        background.push(tokio::spawn(watch_link(inner.clone())));
        background.push(tokio::spawn(watch_store(inner.clone())));
        background.push(tokio::spawn(housekeeping(inner.clone())));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let main = match deliveries {
            Some(d) => tokio::spawn(consume(inner.clone(), d, stop_rx)),
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

    /// The delivery record of a message, from the store (what `helsemelding status` shows).
    pub async fn record(
        &self,
        sender: HerId,
        msg_id: &MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        self.inner.store.get(sender, msg_id.clone()).await
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
    match inner
        .store
        .overdue(now, inner.settings.apprec_timeout)
        .await
    {
        Ok(list) => {
            for o in list {
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
                        inner.record(Decision {
                            ts: now_rfc3339(),
                            msg_id: Some(o.msg_id.clone()),
                            msg_type: None,
                            from_her: Some(o.sender),
                            to_her: o.her,
                            outcome: Outcome::Overdue,
                            code: None,
                            reason: Some(format!("no AppRec since {}", o.clock_start)),
                            elapsed_ms: 0.0,
                        });
                    }
                    // The recipient's AppRec arrived in the meantime: nothing is overdue.
                    Err(StoreError::Illegal { .. }) => {}
                    Err(e) => warn!(error = %e, "overdue: store commit failed; will try again"),
                }
            }
        }
        Err(e) => warn!(error = %e, "overdue scan failed; will try again"),
    }
    match inner.store.prune(now, inner.settings.retention).await {
        Ok(0) => {}
        Ok(n) => info!(pruned = n, "pruned delivery records past retention"),
        Err(e) => warn!(error = %e, "prune failed; will try again"),
    }
}

async fn consume(
    inner: Arc<Inner>,
    mut deliveries: crate::amqp::supervisor::Deliveries,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut in_flight = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            d = deliveries.next() => match d {
                Some(d) => { in_flight.spawn(process(inner.clone(), d)); }
                None => break,
            },
        }
    }
    // Finishing in-flight work wins over taking new work (CONVENTIONS, vector).
    let n = in_flight.len();
    if n > 0 {
        info!(
            in_flight = n,
            "stopping: waiting for in-flight messages to reach a safe point"
        );
    }
    let grace = inner.settings.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            left = in_flight.len(),
            "shutdown grace exceeded; abandoning unacked deliveries (the broker redelivers them)"
        );
        in_flight.abort_all();
    }
}

/// What happened to one delivery, for the routing log and metrics.
enum Settle {
    Ack,
    /// Back to the queue after a pause (infrastructure fault), with the reason.
    Requeue(String),
    /// Leave it: the session is gone and the broker redelivers it.
    Abandon,
}

async fn process(inner: Arc<Inner>, delivery: Delivery) {
    let started = Instant::now();
    inner.metrics.received.fetch_add(1, Ordering::Relaxed);
    let headers = delivery.headers();
    let body = delivery.body().clone();
    let user = delivery.user_id().map(str::to_owned);
    let now = inner.clock.now();
    let plan = {
        let job = inner.clone();
        let headers = headers.clone();
        let body = body.clone();
        inner
            .workers
            .run(move || {
                let input = Inbound {
                    body: &body,
                    headers: &headers,
                    user_id: user.as_deref(),
                };
                assess::assess_timed(&input, &job.ctx, now, Some(&job.metrics.stages))
            })
            .await
    };
    inner
        .metrics
        .phases
        .lap(Phase::Assess, &mut started.clone());
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            // A bug, not the sender's fault: keep the message (dead letter, with the reason).
            error!(msg_id = delivery.message_id().unwrap_or("-"), error = %e, "assessment panicked");
            Plan::Refuse(Refusal {
                to: None,
                condition: condition::UNDELIVERABLE,
                description: format!("internal error while assessing: {e}"),
                msg_id: headers.as_ref().ok().map(|h| h.message_id.clone()),
                msg_type: headers.as_ref().ok().map(|h| h.msg_type.clone()),
                from_her: headers.as_ref().ok().map(|h| h.from_her_id),
                to_her: headers.as_ref().ok().map(|h| h.to_her_id),
            })
        }
    };
    let settle = match plan {
        Plan::Retry { reason } => {
            warn!(msg_id = delivery.message_id().unwrap_or("-"), %reason, "infrastructure fault; the message will be retried");
            inner.record(Decision {
                ts: now_rfc3339(),
                msg_id: headers.as_ref().ok().map(|h| h.message_id.clone()),
                msg_type: headers.as_ref().ok().map(|h| h.msg_type.clone()),
                from_her: headers.as_ref().ok().map(|h| h.from_her_id),
                to_her: headers.as_ref().ok().map(|h| h.to_her_id),
                outcome: Outcome::Retry,
                code: None,
                reason: Some(reason.clone()),
                elapsed_ms: ms(started),
            });
            Settle::Requeue(reason)
        }
        Plan::Refuse(r) => inner.refuse(&delivery, &r, started).await,
        Plan::Message(p) => match &headers {
            Ok(h) => inner.message(&delivery, h, *p, now, started).await,
            Err(e) => Settle::Requeue(e.to_string()), // unreachable: a plan is only made from readable headers
        },
        Plan::AppRec(p) => match &headers {
            Ok(h) => inner.apprec(&delivery, h, *p, now, started).await,
            Err(e) => Settle::Requeue(e.to_string()),
        },
    };
    match settle {
        Settle::Ack => {
            let mut acking = Instant::now();
            let settled = delivery.ack().await.is_settled();
            inner.metrics.phases.lap(Phase::Ack, &mut acking);
            if settled {
                inner.metrics.acked.fetch_add(1, Ordering::Relaxed);
            } else {
                inner.metrics.ack_not_sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        Settle::Requeue(reason) => {
            let count = delivery_count(delivery.properties());
            let limit = u64::try_from(inner.settings.topology.delivery_limit)
                .unwrap_or(20)
                .max(2);
            if count + 2 >= limit {
                // One more requeue and the broker dead-letters it by its delivery limit, without our
                // reason: put it there ourselves, with the reason, so an operator can act and redrive.
                let r = Refusal {
                    to: None,
                    condition: condition::RETRIES_EXHAUSTED,
                    description: format!("still failing after {} deliveries: {reason}", count + 1),
                    msg_id: headers.as_ref().ok().map(|h| h.message_id.clone()),
                    msg_type: headers.as_ref().ok().map(|h| h.msg_type.clone()),
                    from_her: headers.as_ref().ok().map(|h| h.from_her_id),
                    to_her: headers.as_ref().ok().map(|h| h.to_her_id),
                };
                match inner.refuse(&delivery, &r, started).await {
                    Settle::Ack => {
                        if delivery.ack().await.is_settled() {
                            inner.metrics.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        let _ = delivery.nack(true).await;
                        inner.metrics.requeued.fetch_add(1, Ordering::Relaxed);
                    }
                }
            } else {
                // Back off more with every failed delivery: 1×, 2×, 4× … the pause, at most a minute.
                let pause = inner
                    .settings
                    .retry_pause
                    .saturating_mul(1u32 << count.min(5))
                    .min(Duration::from_secs(60));
                tokio::time::sleep(pause).await;
                let _ = delivery.nack(true).await;
                inner.metrics.requeued.fetch_add(1, Ordering::Relaxed);
            }
        }
        Settle::Abandon => drop(delivery),
    }
}

/// How often the broker has delivered this message before (quorum queues count it in
/// `x-delivery-count`); 0 for a first delivery.
fn delivery_count(p: &BasicProperties) -> u64 {
    let Some(v) = p
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get("x-delivery-count").cloned())
    else {
        return 0;
    };
    match v {
        AMQPValue::LongLongInt(n) => u64::try_from(n).unwrap_or(0),
        AMQPValue::LongInt(n) => u64::try_from(n).unwrap_or(0),
        AMQPValue::ShortInt(n) => u64::try_from(n).unwrap_or(0),
        AMQPValue::LongUInt(n) => u64::from(n),
        AMQPValue::ShortUInt(n) => u64::from(n),
        AMQPValue::ShortShortInt(n) => u64::try_from(n).unwrap_or(0),
        AMQPValue::ShortShortUInt(n) => u64::from(n),
        _ => 0,
    }
}

fn ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// How a publish ended.
enum Published {
    Ok,
    /// The session of the delivery is gone: the broker redelivers it; do nothing more.
    SessionLost,
    /// Retried up to the bound; the reason says why.
    GaveUp(String),
}

impl Inner {
    fn record(&self, d: Decision) {
        self.metrics.count(d.outcome);
        self.log.record(&d);
    }

    /// Publishes with confirms, retrying refusals (a full queue's `reject-publish`, a returned
    /// message) with backoff, and following reconnects while the delivery's session lives.
    async fn publish(
        &self,
        generation: u64,
        route: Route<'_>,
        properties: &BasicProperties,
        body: &[u8],
    ) -> Published {
        let backoff = Backoff::default();
        let mut last = String::new();
        for attempt in 0..self.settings.max_publish_attempts.max(1) {
            let session = match self.link.current() {
                Some(s) if s.generation == generation => s,
                // The inbound delivery died with its session; it will come back by itself.
                _ => return Published::SessionLost,
            };
            match session
                .publisher()
                .publish_with_properties(route, properties.clone(), body)
                .await
            {
                Ok(()) => return Published::Ok,
                Err(e) => {
                    last = e.to_string();
                    warn!(attempt, error = %e, "publish not confirmed; backing off");
                }
            }
            tokio::time::sleep(backoff.delay(attempt, crate::amqp::error::FaultKind::Transient))
                .await;
        }
        Published::GaveUp(last)
    }

    fn properties(headers: &MessageHeaders) -> BasicProperties {
        match headers.to_properties() {
            Ok(p) => p,
            Err(e) => {
                // Our own headers are built from checked values; fall back to the bare minimum.
                warn!(error = %e, "cannot express headers; publishing with message_id only");
                BasicProperties::default().with_delivery_mode(2)
            }
        }
    }

    /// Puts the original message on an error queue or the dead-letter queue, with the reason.
    async fn refuse(&self, delivery: &Delivery, r: &Refusal, started: Instant) -> Settle {
        let queue = match r.to {
            Some(her) => error_queue(her),
            None => self.settings.topology.dead_letter.clone(),
        };
        let props = with_error(
            delivery.properties().clone(),
            r.condition,
            &r.description,
            r.msg_id.as_ref(),
        );
        match self
            .publish(
                delivery.generation(),
                Route::Queue(&queue),
                &props,
                delivery.body(),
            )
            .await
        {
            Published::Ok => {}
            Published::SessionLost => return Settle::Abandon,
            Published::GaveUp(why) => {
                error!(queue = %queue, error = %why, "cannot place a refused message on its error queue; requeueing");
                return Settle::Requeue(format!("{queue}: {why}"));
            }
        }
        warn!(msg_id = ?r.msg_id, condition = r.condition, queue = %queue, "message refused: {}", r.description);
        self.record(Decision {
            ts: now_rfc3339(),
            msg_id: r.msg_id.clone(),
            msg_type: r.msg_type.clone(),
            from_her: r.from_her,
            to_her: r.to_her,
            outcome: if r.to.is_some() {
                Outcome::ErrorQueue
            } else {
                Outcome::DeadLettered
            },
            code: None,
            reason: Some(format!("{}: {}", r.condition, r.description)),
            elapsed_ms: ms(started),
        });
        Settle::Ack
    }

    async fn message(
        &self,
        delivery: &Delivery,
        h: &MessageHeaders,
        p: MessagePlan,
        now: Timestamp,
        started: Instant,
    ) -> Settle {
        let mut lap = Instant::now();
        let _guard = self.locks.lock(p.sender, &p.msg_id).await;
        let existing = match self.store.get(p.sender, p.msg_id.clone()).await {
            Ok(r) => r,
            Err(e) => return self.infrastructure(h, e, started),
        };
        self.metrics.phases.lap(Phase::Lookup, &mut lap);
        let ours: Vec<&RecipientPlan> = p.recipients.iter().filter(|r| r.is_ours()).collect();
        let fresh = existing.is_none();
        let record = match existing {
            Some(rec) if rec.content_sha256 != p.content_sha256 => {
                // HIS 80601: a MsgId identifies one message. Same id, other content: refuse the
                // newcomer through the sender's error queue; the first one's AppRec stands.
                let r = Refusal {
                    to: Some(p.sender),
                    condition: condition::MSGID_REUSED,
                    description: format!(
                        "MsgId {} was already received from HER-id {} with different content",
                        p.msg_id, p.sender
                    ),
                    msg_id: Some(p.msg_id.clone()),
                    msg_type: Some(p.msg_type.clone()),
                    from_her: Some(p.sender),
                    to_her: Some(h.to_her_id),
                };
                return self.refuse(delivery, &r, started).await;
            }
            Some(rec) => rec,
            None if ours.is_empty() => {
                // Not ours at all (HITS 1168 §5.3): no state, no AppRec; the sender hears of it
                // through its error queue.
                return self.not_for_us_entries(delivery, h, &p).await;
            }
            None => {
                let mut rec = MessageRecord::new(
                    p.sender,
                    p.msg_id.clone(),
                    p.msg_type.clone(),
                    &[],
                    now,
                    p.gen_date,
                    ours.iter().map(|r| match r {
                        RecipientPlan::Deliver { her, role } => (Some(*her), *role),
                        RecipientPlan::Reject { her, role, .. } => (*her, *role),
                        _ => (None, RecipientRole::Primary),
                    }),
                );
                rec.content_sha256 = p.content_sha256;
                let mut committed = rec.clone();
                let mut changes = vec![Change::Create(rec)];
                for (i, r) in ours.iter().enumerate() {
                    if matches!(r, RecipientPlan::Deliver { .. }) {
                        let t = transition(&p, i, Event::Routed, now);
                        // The record as the commit below stores it, without reading it back.
                        if let Err(e) = committed.apply(&t) {
                            return self.infrastructure(h, e, started);
                        }
                        changes.push(Change::Apply(t));
                    }
                }
                if let Err(e) = self.store.commit(changes).await {
                    return self.infrastructure(h, e, started);
                }
                self.metrics.phases.lap(Phase::Record, &mut lap);
                committed
            }
        };
        if record.recipients.len() != ours.len() {
            // The register changed between two deliveries of the same message: keep what was
            // decided the first time (the record), and say so.
            warn!(msg_id = %p.msg_id, "recipients differ from the first assessment; keeping the recorded ones");
        }

        // Step 3: publish what is still owed, all recipients at once (pipelined confirms).
        let mut jobs = Vec::new();
        for (i, (plan, rec)) in ours.iter().zip(record.recipients.iter()).enumerate() {
            match (plan, rec.state) {
                (
                    RecipientPlan::Deliver { her, .. },
                    crate::store::state::DeliveryState::Routed,
                ) => {
                    let headers = MessageHeaders {
                        from_her_id: p.sender,
                        to_her_id: *her,
                        msg_type: p.msg_type.clone(),
                        message_id: p.msg_id.clone(),
                        application_timestamp: h.application_timestamp,
                        content_type: h.content_type,
                        error_condition: None,
                        error_description: None,
                        original_message_id: None,
                    };
                    jobs.push(Job {
                        index: i,
                        queue: async_queue(*her),
                        props: Self::properties(&headers),
                        body: None,
                        her: Some(*her),
                    });
                }
                (
                    RecipientPlan::Reject {
                        her,
                        role,
                        party,
                        errors,
                    },
                    crate::store::state::DeliveryState::Received,
                ) => {
                    let apprec_id = apprec_id_for(p.sender, &p.msg_id, i);
                    let xml = build_apprec(&AppRecInput {
                        version: p.apprec_version,
                        original: &p.head,
                        recipient: party,
                        role: *role,
                        status: AppRecStatus::Rejected,
                        errors: errors.clone(),
                        id: apprec_id.clone(),
                        // The record's time, so a rebuilt AppRec is identical to the first one.
                        now: record.received_at,
                        software_name: "helsemelding".into(),
                        software_version: env!("CARGO_PKG_VERSION").into(),
                        v1_0_primary_role: PrimaryRoleV1_0::default(),
                    });
                    let signed = match self.signer.sign(xml.as_bytes(), record.received_at) {
                        Ok(s) => s,
                        Err(e) => {
                            error!(error = %e, "the gateway cannot sign its AppRec");
                            return self.infrastructure_text(
                                h,
                                format!("signing the AppRec failed: {e}"),
                                started,
                            );
                        }
                    };
                    let headers = MessageHeaders {
                        from_her_id: her.unwrap_or(self.ctx.gateway_her),
                        to_her_id: p.sender,
                        msg_type: "APPREC".into(),
                        message_id: apprec_id,
                        application_timestamp: record.received_at,
                        content_type: ContentType::SignedCms,
                        error_condition: None,
                        error_description: None,
                        original_message_id: Some(p.msg_id.clone()),
                    };
                    // Logged with the HER-id as addressed, also when it is not ours (E21).
                    let logged = her.or_else(|| party.address().communication_party());
                    jobs.push(Job {
                        index: i,
                        queue: async_queue(p.sender),
                        props: Self::properties(&headers),
                        body: Some(signed),
                        her: logged,
                    });
                }
                _ => {}
            }
        }
        // Entries for recipients that are not ours go out with the first handling (or its redelivery
        // after a crash), not again for every duplicate.
        let not_ours_first_time = (fresh || !jobs.is_empty())
            && p.recipients
                .iter()
                .any(|r| matches!(r, RecipientPlan::NotForUs { .. }));
        let futs: Vec<_> = jobs
            .iter()
            .map(|j| {
                self.publish(
                    delivery.generation(),
                    Route::Queue(&j.queue),
                    &j.props,
                    j.body.as_deref().unwrap_or(delivery.body()),
                )
            })
            .collect();
        let results: Vec<Published> = join_all(futs).await;
        self.metrics.phases.lap(Phase::Publish, &mut lap);
        let mut changes = Vec::new();
        let mut decisions = Vec::new();
        let mut gave_up: Option<String> = None;
        for (job, res) in jobs.iter().zip(results) {
            match res {
                Published::SessionLost => return Settle::Abandon,
                Published::GaveUp(why) => {
                    gave_up = Some(format!("{}: {why}", job.queue));
                    continue;
                }
                Published::Ok => {}
            }
            match &ours[job.index] {
                RecipientPlan::Deliver { her, .. } => {
                    changes.push(Change::Apply(transition(
                        &p,
                        job.index,
                        Event::Delivered,
                        now,
                    )));
                    decisions.push((Some(*her), Outcome::Delivered, None, None));
                }
                RecipientPlan::Reject { errors, .. } => {
                    let code = errors.first().map(|e| e.code).unwrap_or(ErrorCode::X99);
                    let mut t = transition(&p, job.index, Event::Rejected(code), now);
                    t.apprec_id = Some(apprec_id_for(p.sender, &p.msg_id, job.index));
                    t.codes = errors.iter().map(|e| e.code).collect();
                    changes.push(Change::Apply(t));
                    let reason = errors
                        .iter()
                        .filter_map(|e| e.ot.clone())
                        .collect::<Vec<_>>()
                        .join("; ");
                    decisions.push((job.her, Outcome::Rejected, Some(code), Some(reason)));
                    self.metrics.apprecs_issued.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        // Step 4: durable before the ack.
        if !changes.is_empty() {
            self.crash_point(CrashPoint::PublishCommit);
            if let Err(e) = self.store.commit(changes).await {
                return self.infrastructure(h, e, started);
            }
            self.metrics.store_commits.fetch_add(1, Ordering::Relaxed);
            self.metrics.phases.lap(Phase::Commit, &mut lap);
        }
        if not_ours_first_time {
            // Some recipients were not ours: the sender hears of each through its error queue.
            if let Settle::Abandon = self.not_for_us_entries(delivery, h, &p).await {
                return Settle::Abandon;
            }
        }
        let elapsed = ms(started);
        for (to, outcome, code, reason) in &decisions {
            self.record(Decision {
                ts: now_rfc3339(),
                msg_id: Some(p.msg_id.clone()),
                msg_type: Some(p.msg_type.clone()),
                from_her: Some(p.sender),
                to_her: *to,
                outcome: *outcome,
                code: *code,
                reason: reason.clone().filter(|r| !r.is_empty()),
                elapsed_ms: elapsed,
            });
        }
        if jobs.is_empty() {
            // Everything was settled before: a duplicate (HITS 1168 §5.4, Systemtest #12, #41) —
            // no second delivery, no second AppRec.
            self.record(Decision {
                ts: now_rfc3339(),
                msg_id: Some(p.msg_id.clone()),
                msg_type: Some(p.msg_type.clone()),
                from_her: Some(p.sender),
                to_her: Some(h.to_her_id),
                outcome: Outcome::Duplicate,
                code: None,
                reason: None,
                elapsed_ms: elapsed,
            });
        }
        if let Some(why) = gave_up {
            // A recipient queue kept refusing: keep the message, with its reason, for redrive.
            // The record still says Routed for that recipient, so a redrive resumes exactly there.
            let r = Refusal {
                to: None,
                condition: condition::UNDELIVERABLE,
                description: format!(
                    "gave up after {} attempts: {why}",
                    self.settings.max_publish_attempts
                ),
                msg_id: Some(p.msg_id.clone()),
                msg_type: Some(p.msg_type.clone()),
                from_her: Some(p.sender),
                to_her: Some(h.to_her_id),
            };
            return self.refuse(delivery, &r, started).await;
        }
        if !jobs.is_empty() {
            self.crash_point(CrashPoint::CommitAck);
        }
        Settle::Ack
    }

    fn crash_point(&self, point: CrashPoint) {
        if let Some(c) = &self.settings.crash_at {
            c.reached(point);
        }
    }

    /// One `transport:unknown-receiver` entry on the sender's error queue per recipient that is
    /// not ours (HITS 1168 §5.3: no AppRec, but never silence).
    async fn not_for_us_entries(
        &self,
        delivery: &Delivery,
        h: &MessageHeaders,
        p: &MessagePlan,
    ) -> Settle {
        for r in &p.recipients {
            if let RecipientPlan::NotForUs { reason, .. } = r {
                let refusal = Refusal {
                    to: Some(p.sender),
                    condition: condition::UNKNOWN_RECEIVER,
                    description: reason.clone(),
                    msg_id: Some(p.msg_id.clone()),
                    msg_type: Some(p.msg_type.clone()),
                    from_her: Some(p.sender),
                    to_her: Some(h.to_her_id),
                };
                let props = with_error(
                    delivery.properties().clone(),
                    refusal.condition,
                    &refusal.description,
                    refusal.msg_id.as_ref(),
                );
                match self
                    .publish(
                        delivery.generation(),
                        Route::Queue(&error_queue(p.sender)),
                        &props,
                        delivery.body(),
                    )
                    .await
                {
                    Published::Ok => {}
                    Published::SessionLost => return Settle::Abandon,
                    Published::GaveUp(why) => {
                        error!(error = %why, "cannot place an unknown-receiver entry on the sender's error queue");
                        return Settle::Requeue(why);
                    }
                }
                self.record(Decision {
                    ts: now_rfc3339(),
                    msg_id: Some(p.msg_id.clone()),
                    msg_type: Some(p.msg_type.clone()),
                    from_her: Some(p.sender),
                    to_her: Some(h.to_her_id),
                    outcome: Outcome::NotForUs,
                    code: None,
                    reason: Some(format!("{}: {reason}", condition::UNKNOWN_RECEIVER)),
                    elapsed_ms: 0.0,
                });
            }
        }
        Settle::Ack
    }

    async fn apprec(
        &self,
        delivery: &Delivery,
        h: &MessageHeaders,
        p: AppRecPlan,
        now: Timestamp,
        started: Instant,
    ) -> Settle {
        let _guard = self.locks.lock(p.original_sender, &p.original_msg_id).await;
        let refusal = |condition: &'static str, description: String| Refusal {
            to: Some(p.from),
            condition,
            description,
            msg_id: Some(p.apprec_id.clone()),
            msg_type: Some("APPREC".into()),
            from_her: Some(p.from),
            to_her: Some(p.original_sender),
        };
        let record = match self
            .store
            .get(p.original_sender, p.original_msg_id.clone())
            .await
        {
            Ok(Some(r)) => r,
            Ok(None) => {
                let r = refusal(
                    condition::UNKNOWN_ORIGINAL,
                    format!("AppRec {} refers to MsgId {} from HER-id {}, which the gateway never carried", p.apprec_id, p.original_msg_id, p.original_sender),
                );
                return self.refuse(delivery, &r, started).await;
            }
            Err(e) => return self.infrastructure(h, e, started),
        };
        let Some(index) = record.recipient_index(p.from) else {
            let r = refusal(
                condition::SPOOFING,
                format!(
                    "AppRec from HER-id {} for MsgId {}, which was not delivered to that party",
                    p.from, p.original_msg_id
                ),
            );
            return self.refuse(delivery, &r, started).await;
        };
        let rec = &record.recipients[index];
        use crate::store::state::DeliveryState as S;
        match rec.state {
            S::Routed | S::Delivered | S::Overdue => {}
            S::AppRecOk | S::AppRecRejected if rec.apprec_id.as_ref() == Some(&p.apprec_id) => {
                // The same AppRec again (a redelivery after a crash between forward and ack).
                self.apprec_decision(
                    &p,
                    Outcome::Duplicate,
                    None,
                    format!("AppRec for {} already forwarded", p.original_msg_id),
                    started,
                );
                return Settle::Ack;
            }
            S::AppRecOk | S::AppRecRejected => {
                // An AppRec is final (HIS 80415:2012 §3.2, Systemtest #13): a second one is dropped,
                // and the recipient's system is told through its error queue.
                let r = refusal(
                    condition::SECOND_APPREC,
                    format!(
                        "a second AppRec from HER-id {} for MsgId {}; the first one stands",
                        p.from, p.original_msg_id
                    ),
                );
                let settle = self.refuse(delivery, &r, started).await;
                self.apprec_decision(
                    &p,
                    Outcome::AppRecRefused,
                    None,
                    format!("second AppRec for {}", p.original_msg_id),
                    started,
                );
                return settle;
            }
            S::Received | S::Rejected(_) => {
                let r = refusal(
                    condition::SPOOFING,
                    format!("AppRec from HER-id {} for MsgId {}, which the gateway rejected and never delivered", p.from, p.original_msg_id),
                );
                return self.refuse(delivery, &r, started).await;
            }
        }
        let headers = MessageHeaders {
            from_her_id: p.from,
            to_her_id: p.original_sender,
            msg_type: "APPREC".into(),
            message_id: p.apprec_id.clone(),
            application_timestamp: h.application_timestamp,
            content_type: h.content_type,
            error_condition: None,
            error_description: None,
            original_message_id: Some(p.original_msg_id.clone()),
        };
        // The receiver's signed AppRec travels on unchanged (DESIGN §2: the gateway forwards it).
        match self
            .publish(
                delivery.generation(),
                Route::Queue(&async_queue(p.original_sender)),
                &Self::properties(&headers),
                delivery.body(),
            )
            .await
        {
            Published::Ok => {}
            Published::SessionLost => return Settle::Abandon,
            Published::GaveUp(why) => {
                let r = Refusal {
                    to: None,
                    condition: condition::UNDELIVERABLE,
                    description: format!("forwarding the AppRec failed: {why}"),
                    msg_id: Some(p.apprec_id.clone()),
                    msg_type: Some("APPREC".into()),
                    from_her: Some(p.from),
                    to_her: Some(p.original_sender),
                };
                return self.refuse(delivery, &r, started).await;
            }
        }
        let mut changes = Vec::new();
        let key = (record.sender, record.msg_id.clone());
        let mut t = Transition {
            sender: key.0,
            msg_id: key.1,
            recipient: index,
            event: Event::Delivered,
            at: now,
            apprec_id: None,
            codes: Vec::new(),
        };
        if rec.state == S::Routed {
            changes.push(Change::Apply(t.clone()));
        }
        t.event = if p.status == AppRecStatus::Rejected {
            Event::AppRecRejected
        } else {
            Event::AppRecOk
        };
        t.apprec_id = Some(p.apprec_id.clone());
        t.codes = p.codes.clone();
        changes.push(Change::Apply(t));
        if let Err(e) = self.store.commit(changes).await {
            return self.infrastructure(h, e, started);
        }
        self.apprec_decision(
            &p,
            Outcome::AppRecForwarded,
            p.codes.first().copied(),
            format!("status {} for {}", p.status.code(), p.original_msg_id),
            started,
        );
        Settle::Ack
    }

    /// The routing-log line for a receiver's AppRec.
    fn apprec_decision(
        &self,
        p: &AppRecPlan,
        outcome: Outcome,
        code: Option<ErrorCode>,
        reason: String,
        started: Instant,
    ) {
        self.record(Decision {
            ts: now_rfc3339(),
            msg_id: Some(p.apprec_id.clone()),
            msg_type: Some("APPREC".into()),
            from_her: Some(p.from),
            to_her: Some(p.original_sender),
            outcome,
            code,
            reason: Some(reason),
            elapsed_ms: ms(started),
        });
    }

    fn infrastructure(&self, h: &MessageHeaders, e: StoreError, started: Instant) -> Settle {
        self.infrastructure_text(h, format!("delivery state: {e}"), started)
    }

    fn infrastructure_text(&self, h: &MessageHeaders, reason: String, started: Instant) -> Settle {
        error!(msg_id = %h.message_id, %reason, "infrastructure fault; the message will be retried");
        self.record(Decision {
            ts: now_rfc3339(),
            msg_id: Some(h.message_id.clone()),
            msg_type: Some(h.msg_type.clone()),
            from_her: Some(h.from_her_id),
            to_her: Some(h.to_her_id),
            outcome: Outcome::Retry,
            code: None,
            reason: Some(reason.clone()),
            elapsed_ms: ms(started),
        });
        Settle::Requeue(reason)
    }
}

struct Job {
    index: usize,
    queue: String,
    props: BasicProperties,
    /// `None`: the original envelope; `Some`: a gateway-issued AppRec.
    body: Option<Vec<u8>>,
    her: Option<HerId>,
}

async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futs.len());
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = (0..pinned.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(done.into_iter().flatten());
    out
}

fn transition(p: &MessagePlan, recipient: usize, event: Event, at: Timestamp) -> Transition {
    Transition {
        sender: p.sender,
        msg_id: p.msg_id.clone(),
        recipient,
        event,
        at,
        apprec_id: None,
        codes: Vec::new(),
    }
}

/// A deterministic AppRec Id for the AppRec the gateway issues for recipient `index` of a
/// message: a redelivery after a crash rebuilds the very same AppRec, never a second one.
pub fn apprec_id_for(sender: HerId, msg_id: &MsgId, index: usize) -> MsgId {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("helsemelding-apprec\0{sender}\0{msg_id}\0{index}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    MsgId(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

/// The original properties plus `errorCondition`, `errorDescription`, `originalMessageId`.
fn with_error(
    props: BasicProperties,
    condition: &str,
    description: &str,
    original: Option<&MsgId>,
) -> BasicProperties {
    let mut t: FieldTable = props.headers().clone().unwrap_or_default();
    t.insert(
        "errorCondition".into(),
        AMQPValue::LongString(condition.into()),
    );
    // Descriptions are the gateway's own texts; bounded so a header never grows without limit.
    let d: String = description.chars().take(1000).collect();
    t.insert(
        "errorDescription".into(),
        AMQPValue::LongString(d.as_str().into()),
    );
    if let Some(o) = original {
        t.insert(
            "originalMessageId".into(),
            AMQPValue::LongString(o.as_str().into()),
        );
    }
    props.with_headers(t).with_delivery_mode(2)
}

/// One lock per (sender, MsgId): two deliveries of the same message (a duplicate racing its
/// original, or an AppRec racing the commit of its message) are handled one after the other.
#[derive(Default)]
struct KeyLocks {
    map: Mutex<HashMap<(HerId, MsgId), KeyLock>>,
}

type KeyLock = Arc<tokio::sync::Mutex<()>>;

struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: (HerId, MsgId),
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    async fn lock(&self, sender: HerId, msg_id: &MsgId) -> KeyGuard<'_> {
        let key = (sender, msg_id.clone());
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        KeyGuard {
            locks: self,
            key,
            guard: Some(guard),
        }
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.map.lock().unwrap_or_else(|e| e.into_inner());
        drop(self.guard.take());
        // Bounded: the entry goes when nobody holds or waits for it.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apprec_ids_are_deterministic_uuids() {
        let a = apprec_id_for(HerId(1), &MsgId::new("m"), 0);
        assert_eq!(a, apprec_id_for(HerId(1), &MsgId::new("m"), 0));
        assert_ne!(a, apprec_id_for(HerId(1), &MsgId::new("m"), 1));
        assert_ne!(a, apprec_id_for(HerId(2), &MsgId::new("m"), 0));
        assert!(a.is_uuid(), "{a}");
    }

    #[tokio::test]
    async fn key_locks_serialise_the_same_key_and_clean_up() {
        let locks = Arc::new(KeyLocks::default());
        let g = locks.lock(HerId(1), &MsgId::new("a")).await;
        let other = locks.lock(HerId(1), &MsgId::new("b")).await; // a different key is free
        drop(other);
        let l2 = locks.clone();
        let waiter = tokio::spawn(async move {
            let _g = l2.lock(HerId(1), &MsgId::new("a")).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "second holder must wait");
        drop(g);
        waiter.await.unwrap();
        assert!(locks.map.lock().unwrap().is_empty());
    }
}
