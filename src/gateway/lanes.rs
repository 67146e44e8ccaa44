//! Per-sender order (DESIGN §3): every delivery goes into the lane of its sender (the envelope's
//! `fromHerId`, the most specific HER-id the sender claims), and a lane publishes its messages one
//! after the other, in the order the broker delivered them — the next only once every copy of
//! the previous one is confirmed. Different senders' lanes run side by side, and every delivery's
//! assessment (the CPU work) starts on the worker pool the moment it arrives, so a lane waits for
//! its publishes, not for verification.
//!
//! Input: deliveries from the intake. Output: each one carried out (`deliver.rs`) and settled.
//! An infrastructure fault before publishing (stale revocation data, an unreadable store, the
//! gateway's own signing) holds the lane: the delivery is assessed again after a growing pause
//! instead of going back to the queue, where a later message of the same sender would overtake it.
//! After the attempts the broker's delivery limit leaves, it is dead-lettered with its reason.
//! A lost broker session abandons what a lane holds; the broker redelivers it in order.
//!
//! Bounds: a lane exists while it holds deliveries (at most the prefetch in all); idle lanes are
//! dropped every second.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{error, info, warn, Instrument};

use super::assess::{self, condition, Envelope, Inbound, Packaging, Plan, Refusal};
use super::decide::{self, Action};
use super::deliver::{self, delivery_count, Stepped};
use super::metrics::Phase;
use super::routing_log::{Decision, MessageRef, Outcome};
use super::server::Inner;
use super::workers::WorkerError;
use crate::amqp::consumer::Delivery;
use crate::amqp::headers::{ContentType, HeaderError, MessageHeaders};
use crate::amqp::supervisor::Deliveries;
use crate::ids::HerId;

impl From<&MessageHeaders> for Envelope {
    fn from(h: &MessageHeaders) -> Envelope {
        Envelope {
            from_her_id: h.from_her_id,
            to_her_id: h.to_her_id,
            msg_type: h.msg_type.clone(),
            message_id: h.message_id.clone(),
            application_timestamp: h.application_timestamp,
            packaging: match h.content_type {
                ContentType::SignedCms => Packaging::Signed,
                ContentType::EnvelopedCms => Packaging::Encrypted,
                ContentType::Xml => Packaging::Plain,
            },
            cpa_id: h.cpa_id.clone(),
        }
    }
}

/// The envelope of a delivery as the pipeline takes it: read from the AMQP headers, or why not.
pub fn envelope_of(headers: &Result<MessageHeaders, HeaderError>) -> Result<Envelope, String> {
    headers
        .as_ref()
        .map(Envelope::from)
        .map_err(|e| e.to_string())
}

/// One delivery in its lane.
struct Job {
    delivery: Delivery,
    envelope: Result<Envelope, String>,
    /// Its assessment, already queued on the worker pool.
    assessment: Pending,
    started: Instant,
}

type Pending = Pin<Box<dyn Future<Output = Result<Plan, WorkerError>> + Send>>;

/// A sender's queue of deliveries and how many it holds.
struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    held: Arc<AtomicUsize>,
}

/// Takes deliveries until `stop`, each into its sender's lane; then lets the lanes finish what they
/// hold (bounded by `shutdown_grace`).
pub(super) async fn consume(
    inner: Arc<Inner>,
    mut deliveries: Deliveries,
    mut stop: watch::Receiver<bool>,
) {
    let mut lanes: HashMap<Option<HerId>, Lane> = HashMap::new();
    let mut running = JoinSet::new();
    let mut tidy = tokio::time::interval(Duration::from_secs(1));
    tidy.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            r = stop.changed() => if r.is_err() || *stop.borrow() { break },
            Some(_) = running.join_next(), if !running.is_empty() => {}
            // Dropping an idle lane's sender ends its task.
            _ = tidy.tick() => lanes.retain(|_, l| l.held.load(Ordering::Acquire) > 0),
            d = deliveries.next() => match d {
                Some(d) => dispatch(&inner, &mut lanes, &mut running, d, &stop),
                None => break,
            },
        }
    }
    // Finishing in-flight work wins over taking new work (CONVENTIONS, vector): every lane carries
    // out what it holds, then ends.
    let held: usize = lanes.values().map(|l| l.held.load(Ordering::Acquire)).sum();
    drop(lanes);
    if held > 0 {
        info!(
            in_flight = held,
            "stopping: waiting for in-flight messages to reach a safe point"
        );
    }
    let drained = tokio::time::timeout(inner.settings.shutdown_grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!(
            lanes = running.len(),
            "shutdown grace exceeded; abandoning unacked deliveries (the broker redelivers them)"
        );
        running.abort_all();
    }
}

fn dispatch(
    inner: &Arc<Inner>,
    lanes: &mut HashMap<Option<HerId>, Lane>,
    running: &mut JoinSet<()>,
    delivery: Delivery,
    stop: &watch::Receiver<bool>,
) {
    let started = Instant::now();
    inner.metrics.received.fetch_add(1, Ordering::Relaxed);
    let envelope = envelope_of(&delivery.headers());
    let key = envelope.as_ref().ok().map(|e| e.from_her_id);
    let assessment = Box::pin(assessment(inner, &delivery, &envelope));
    let lane = lanes.entry(key).or_insert_with(|| {
        let (jobs, rx) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        running.spawn(run_lane(
            Arc::clone(inner),
            rx,
            Arc::clone(&held),
            stop.clone(),
        ));
        Lane { jobs, held }
    });
    lane.held.fetch_add(1, Ordering::AcqRel);
    let job = Job {
        delivery,
        envelope,
        assessment,
        started,
    };
    if let Err(mpsc::error::SendError(job)) = lane.jobs.send(job) {
        // The lane task is gone (it only ends when its sender is dropped): unreachable in practice,
        // and if it happens the delivery goes back to the broker untouched.
        error!("a sender's lane ended early; returning the delivery to the broker");
        lane.held.fetch_sub(1, Ordering::AcqRel);
        drop(job);
    }
}

/// Queues the CPU part of a delivery on the worker pool now; the future yields its plan.
fn assessment(
    inner: &Arc<Inner>,
    delivery: &Delivery,
    envelope: &Result<Envelope, String>,
) -> impl Future<Output = Result<Plan, WorkerError>> + Send + 'static {
    let job = Arc::clone(inner);
    let body = delivery.body().clone();
    let envelope = envelope.clone();
    let user = delivery.user_id().map(str::to_owned);
    let now = inner.clock.now();
    inner.workers.submit(move || {
        let input = Inbound {
            body: &body,
            envelope: envelope.as_ref().map_err(String::as_str),
            user_id: user.as_deref(),
        };
        assess::assess_timed(&input, &job.ctx.load(), now, Some(&job.metrics.stages))
    })
}

async fn run_lane(
    inner: Arc<Inner>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    held: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
) {
    let mut finishing = JoinSet::new();
    while let Some(job) = jobs.recv().await {
        while finishing.try_join_next().is_some() {}
        handle(&inner, job, &mut finishing, &stop).await;
        held.fetch_sub(1, Ordering::AcqRel);
    }
    while finishing.join_next().await.is_some() {}
}

/// One delivery through steps 2–3 in its lane, retrying in place; steps 4–5 go to `finishing`.
async fn handle(
    inner: &Arc<Inner>,
    job: Job,
    finishing: &mut JoinSet<()>,
    stop: &watch::Receiver<bool>,
) {
    let Job {
        delivery,
        envelope,
        assessment: first,
        started,
    } = job;
    let about = match &envelope {
        Ok(e) => e.message_ref(),
        Err(_) => MessageRef {
            msg_id: delivery.message_id().map(crate::ids::MsgId::new),
            ..MessageRef::default()
        },
    };
    let span = tracing::info_span!(
        "message",
        msg_id = about.msg_id.as_ref().map_or("-", |m| m.as_str()),
        from_her = about.from_her.map_or(0, |h| h.0),
    );
    let mut stop = stop.clone();
    async {
        let mut plan = settle_assessment(first.await, &about);
        // The first assessment was made when the delivery arrived; a lane with a backlog reaches
        // it later. An infrastructure verdict from then (a CRL that was stale and has since been
        // replaced) is taken again now instead of being paid for with a retry pause — found by
        // `helsemelding-lab soak`: one stale CRL cost every held message of a busy lane a pause.
        if matches!(plan, Plan::Retry { .. }) {
            plan = settle_assessment(assessment(inner, &delivery, &envelope).await, &about);
        }
        inner
            .metrics
            .phases
            .lap(Phase::Assess, &mut started.clone());
        let mut delivery = delivery;
        let mut attempt = 0u64;
        loop {
            let reason = match step(inner, delivery, plan, started, &about).await {
                Stepped::Published(finish) => {
                    finishing.spawn(finish.run().in_current_span());
                    return;
                }
                Stepped::Abandon => return,
                Stepped::Retry(reason, d) => {
                    delivery = *d;
                    reason
                }
            };
            attempt += 1;
            let count = delivery_count(delivery.properties()) + attempt;
            warn!(%reason, attempt, "infrastructure fault; the message will be retried");
            inner.record(
                Decision::new(inner.clock.now(), Outcome::Retry, &about)
                    .reason(reason.clone())
                    .elapsed(started),
            );
            if inner.attempts_exhausted(count) {
                // Keep the message, with the reason, for an operator to act on and redrive.
                let r = Refusal::new(
                    None,
                    condition::RETRIES_EXHAUSTED,
                    format!("still failing after {count} attempts: {reason}"),
                    about.clone(),
                );
                plan = Plan::Refuse(r);
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(inner.retry_pause(count - 1)) => {}
                // Stopping: leave it unacked; the broker redelivers it in order.
                _ = stop.changed() => return,
            }
            plan = settle_assessment(assessment(inner, &delivery, &envelope).await, &about);
        }
    }
    .instrument(span)
    .await
}

/// The plan, or — when the assessment itself failed (a bug, not the sender's fault) — a dead
/// letter with the reason, so the message is kept.
fn settle_assessment(result: Result<Plan, WorkerError>, about: &MessageRef) -> Plan {
    let why = match result {
        Ok(plan) => return plan,
        Err(e) => e.to_string(),
    };
    error!(error = %why, "assessment failed");
    Plan::Refuse(Refusal::new(
        None,
        condition::UNDELIVERABLE,
        format!("internal error while assessing: {why}"),
        about.clone(),
    ))
}

/// Lock the record's key, read it, decide, record and publish.
async fn step(
    inner: &Arc<Inner>,
    delivery: Delivery,
    plan: Plan,
    started: Instant,
    about: &MessageRef,
) -> Stepped {
    let mut lap = Instant::now();
    let now = inner.clock.now();
    let key = plan.record_key();
    let guard = match &key {
        Some((sender, msg_id)) => Some(inner.locks.lock(*sender, msg_id).await),
        None => None,
    };
    let stored = match key {
        Some((sender, msg_id)) => match inner.store.get(sender, msg_id).await {
            Ok(r) => r,
            Err(e) => return Stepped::Retry(format!("delivery state: {e}"), Box::new(delivery)),
        },
        None => None,
    };
    inner.metrics.phases.lap(Phase::Lookup, &mut lap);
    // What the insight recorder will be offered once the outcome is committed (`crate::insight`).
    let observed = inner
        .insight
        .as_ref()
        .and_then(|_| crate::insight::observation::Seed::of_plan(&plan, delivery.body(), now));
    let action = if plan.signs() {
        let job = Arc::clone(inner);
        match inner
            .workers
            .run(move || decide::decide(plan, stored, &job.me, now))
            .await
        {
            Ok(a) => a,
            Err(e) => Action::Retry(format!("deciding: {e}")),
        }
    } else {
        decide::decide(plan, stored, &inner.me, now)
    };
    match action {
        Action::Retry(reason) => Stepped::Retry(reason, Box::new(delivery)),
        Action::Carry(carry) => {
            deliver::publish(
                inner,
                delivery,
                carry,
                guard,
                started,
                about.clone(),
                observed,
            )
            .await
        }
    }
}
