//! Carrying out a decided [`Carry`] (DESIGN §3): step 2 record (no flush of its own) → step 3
//! publish every send with confirms → step 4 commit what the confirmed sends made true (one
//! flush, group-committed) → step 5 ack the inbound delivery.
//!
//! Steps 2–3 run in the delivery's lane ([`publish`]), so the next message of the same sender is
//! published only after this one is confirmed; steps 4–5 ([`Finish::run`]) run on their own task
//! while the lane goes on. A crash anywhere means redelivery, and the record makes it idempotent.
//!
//! Failure modes: a lost broker session abandons the delivery (the broker redelivers it); a
//! recipient queue that keeps refusing is dead-lettered with its reason once the others are
//! committed; a store fault after publishing returns the delivery to the queue (its redelivery
//! re-publishes with the same MsgId, the one duplicate DESIGN §3 allows).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lapin::types::AMQPValue;
use lapin::BasicProperties;
use tracing::{error, warn};

use super::assess::{condition, Refusal};
use super::crash::CrashPoint;
use super::decide::{self, Body, Carry, Properties, Send, SendKind};
use super::keylock::KeyGuard;
use super::metrics::Phase;
use super::routing_log::{Decision, MessageRef, Outcome};
use super::server::Inner;
use crate::amqp::consumer::Delivery;
use crate::amqp::headers::error_entry_properties;
use crate::amqp::publisher::Route;
use crate::amqp::supervisor::Backoff;
use crate::ids::Timestamp;
use crate::store::Recorded;
use std::sync::Arc;

/// How a publish ended.
pub(super) enum Published {
    Ok,
    /// The session of the delivery is gone: the broker redelivers it; do nothing more.
    SessionLost,
    /// Retried up to the bound; the reason says why.
    GaveUp(String),
}

/// Steps 2 and 3 done; what is left for steps 4 and 5.
pub(super) struct Finish {
    pub inner: Arc<Inner>,
    pub delivery: Delivery,
    pub sends: Vec<Send>,
    pub results: Vec<Published>,
    pub decisions: Vec<Decision>,
    pub recorded: Option<Recorded>,
    /// Held until the outcome is durable: a duplicate or an AppRec for this message waits for it.
    pub guard: Option<KeyGuard>,
    pub started: Instant,
    /// What the delivery is about, for a refusal made here.
    pub about: MessageRef,
    /// Offered to the insight recorder once committed (`crate::insight`).
    pub observed: Option<crate::insight::observation::Seed>,
}

/// What steps 2–3 came to.
pub(super) enum Stepped {
    Published(Box<Finish>),
    /// The delivery's session is gone; drop it, the broker redelivers it.
    Abandon,
    /// Step 2 could not be recorded (an infrastructure fault): the delivery, to try again (boxed:
    /// rare, and the other variants are small).
    Retry(String, Box<Delivery>),
}

/// Steps 2 and 3 for one delivery: record, then publish every send at once (pipelined confirms).
pub(super) async fn publish(
    inner: &Arc<Inner>,
    delivery: Delivery,
    carry: Carry,
    guard: Option<KeyGuard>,
    started: Instant,
    about: MessageRef,
    observed: Option<crate::insight::observation::Seed>,
) -> Stepped {
    let mut lap = Instant::now();
    let Carry {
        record,
        sends,
        decisions,
    } = carry;
    let recorded = if record.is_empty() {
        None
    } else {
        match inner.store.record(record).await {
            Ok(r) => Some(r),
            Err(e) => return Stepped::Retry(format!("delivery state: {e}"), Box::new(delivery)),
        }
    };
    inner.metrics.phases.lap(Phase::Record, &mut lap);
    if sends.iter().any(|s| s.kind != SendKind::ErrorEntry) {
        inner.crash_point(CrashPoint::RecordPublish);
    }
    let now = inner.clock.now();
    let results = join_all(sends.iter().map(|s| {
        let props = properties(s, &delivery, now);
        let body = match &s.body {
            Body::Original => delivery.body().as_ref(),
            Body::Issued(b) => b.as_slice(),
        };
        let queue = s.queue.as_str();
        let generation = delivery.generation();
        async move {
            inner
                .publish(generation, Route::Queue(queue), &props, body)
                .await
        }
    }))
    .await;
    inner.metrics.phases.lap(Phase::Publish, &mut lap);
    if results.iter().any(|r| matches!(r, Published::SessionLost)) {
        return Stepped::Abandon;
    }
    Stepped::Published(Box::new(Finish {
        inner: Arc::clone(inner),
        delivery,
        sends,
        results,
        decisions,
        recorded,
        guard,
        started,
        about,
        observed,
    }))
}

impl Finish {
    /// Steps 4 and 5: commit what the confirmed sends made true, log, ack.
    pub(super) async fn run(self) {
        let Finish {
            inner,
            delivery,
            sends,
            results,
            mut decisions,
            recorded,
            guard,
            started,
            about,
            observed,
        } = self;
        let mut lap = Instant::now();
        let mut changes = Vec::new();
        let mut logged = Vec::new();
        let mut undeliverable: Option<String> = None;
        let mut entry_failed: Option<String> = None;
        let mut carried = false;
        for (send, result) in sends.into_iter().zip(results) {
            match result {
                Published::Ok => {
                    if send.kind == SendKind::AppRec {
                        inner.metrics.apprecs_issued.fetch_add(1, Ordering::Relaxed);
                    }
                    carried |= send.kind != SendKind::ErrorEntry;
                    changes.extend(send.confirmed);
                    logged.push(send.decision);
                }
                Published::GaveUp(why) if send.kind == SendKind::ErrorEntry => {
                    error!(queue = %send.queue, error = %why, "cannot place a refused message on its queue");
                    entry_failed = Some(format!("{}: {why}", send.queue));
                }
                Published::GaveUp(why) => {
                    undeliverable = Some(match send.kind {
                        SendKind::Forward => format!("forwarding the AppRec failed: {why}"),
                        _ => format!(
                            "gave up after {} attempts: {}: {why}",
                            inner.settings.max_publish_attempts, send.queue
                        ),
                    });
                }
                Published::SessionLost => return, // excluded by `publish`
            }
        }
        // Step 4: durable before the ack. Step 2's record shares this flush.
        if !changes.is_empty() {
            inner.crash_point(CrashPoint::PublishCommit);
        }
        let commits = !changes.is_empty();
        let committing = async {
            if commits {
                inner.store.commit(changes).await
            } else {
                Ok(())
            }
        };
        let recording = async {
            match recorded {
                Some(r) => r.outcome().await,
                None => Ok(()),
            }
        };
        let (committed, recorded) = tokio::join!(committing, recording);
        if let Err(e) = recorded.and(committed) {
            drop(guard);
            return requeue(
                &inner,
                delivery,
                format!("delivery state: {e}"),
                &about,
                started,
            )
            .await;
        }
        if commits {
            inner.metrics.store_commits.fetch_add(1, Ordering::Relaxed);
            inner.metrics.phases.lap(Phase::Commit, &mut lap);
        }
        drop(guard);
        logged.append(&mut decisions);
        for d in logged {
            inner.record(d.elapsed(started));
        }
        if let Some(why) = entry_failed {
            return requeue(&inner, delivery, why, &about, started).await;
        }
        if let Some(why) = undeliverable {
            // A recipient queue kept refusing: keep the message, with its reason, for redrive. The
            // record still says Routed for that recipient, so a redrive resumes exactly there.
            let r = Refusal::new(None, condition::UNDELIVERABLE, why, about.clone());
            return refuse_then_settle(&inner, delivery, &r, started).await;
        }
        if carried {
            inner.crash_point(CrashPoint::CommitAck);
            // Committed (step 4): offered without waiting; a full queue is a counted gap.
            if let (Some(r), Some(seed)) = (&inner.insight, observed) {
                r.offer(seed);
            }
        }
        ack(&inner, delivery).await;
    }
}

/// Publishes a refusal (an error entry or dead letter) for `delivery` itself and settles it: ack
/// once placed, else back to the queue.
pub(super) async fn refuse_then_settle(
    inner: &Arc<Inner>,
    delivery: Delivery,
    r: &Refusal,
    started: Instant,
) {
    let now = inner.clock.now();
    let send = decide::refusal(r, &inner.me, now);
    let props = properties(&send, &delivery, now);
    match inner
        .publish(
            delivery.generation(),
            Route::Queue(&send.queue),
            &props,
            delivery.body(),
        )
        .await
    {
        Published::Ok => {
            warn!(condition = r.condition, queue = %send.queue, "message refused: {}", r.description);
            inner.record(send.decision.elapsed(started));
            ack(inner, delivery).await;
        }
        Published::SessionLost => {}
        Published::GaveUp(why) => {
            error!(queue = %send.queue, error = %why, "cannot place a refused message on its queue; returning it to the intake");
            let _ = delivery.nack(true).await;
            inner.metrics.requeued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An infrastructure fault after the sends were published: back to the queue after a pause that
/// grows with every delivery (its redelivery re-publishes what is still owed, same MsgId), or — one
/// delivery before the broker's own limit would dead-letter it without a reason — to the
/// dead-letter queue with the reason.
pub(super) async fn requeue(
    inner: &Arc<Inner>,
    delivery: Delivery,
    reason: String,
    about: &MessageRef,
    started: Instant,
) {
    error!(%reason, "infrastructure fault; the message will be retried");
    inner.record(
        Decision::new(inner.clock.now(), Outcome::Retry, about)
            .reason(reason.clone())
            .elapsed(started),
    );
    let count = delivery_count(delivery.properties());
    if inner.attempts_exhausted(count) {
        let r = Refusal::new(
            None,
            condition::RETRIES_EXHAUSTED,
            format!("still failing after {} deliveries: {reason}", count + 1),
            about.clone(),
        );
        return refuse_then_settle(inner, delivery, &r, started).await;
    }
    tokio::time::sleep(inner.retry_pause(count)).await;
    let _ = delivery.nack(true).await;
    inner.metrics.requeued.fetch_add(1, Ordering::Relaxed);
}

pub(super) async fn ack(inner: &Inner, delivery: Delivery) {
    let mut acking = Instant::now();
    let settled = delivery.ack().await.is_settled();
    inner.metrics.phases.lap(Phase::Ack, &mut acking);
    if settled {
        inner.metrics.acked.fetch_add(1, Ordering::Relaxed);
    } else {
        inner.metrics.ack_not_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// How often the broker has delivered this message before (quorum queues count it in
/// `x-delivery-count`); 0 for a first delivery.
pub(super) fn delivery_count(p: &BasicProperties) -> u64 {
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

impl Inner {
    /// Publishes with confirms, retrying refusals (a full queue's `reject-publish`, a returned
    /// message) with backoff, and following reconnects while the delivery's session lives.
    pub(super) async fn publish(
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

    /// The pause before retrying after `count` failed deliveries: 1×, 2×, 4× … the configured
    /// pause, at most a minute.
    pub(super) fn retry_pause(&self, count: u64) -> Duration {
        self.settings
            .retry_pause
            .saturating_mul(1u32 << count.min(5))
            .min(Duration::from_secs(60))
    }

    /// Whether a message that failed `count` times has had all the attempts the intake's delivery
    /// limit (quorum queue `x-delivery-limit`) gives it: one more and the broker would dead-letter
    /// it by that limit, without our reason, so the gateway dead-letters it itself, with the reason.
    pub(super) fn attempts_exhausted(&self, count: u64) -> bool {
        let limit = u64::try_from(self.settings.topology.delivery_limit)
            .unwrap_or(20)
            .max(2);
        count + 2 >= limit
    }
}

/// The AMQP properties of a send.
fn properties(send: &Send, delivery: &Delivery, now: Timestamp) -> BasicProperties {
    match &send.properties {
        Properties::Headers(h) => h.to_properties().unwrap_or_else(|e| {
            // Our own headers are built from checked values; fall back to the bare minimum.
            warn!(error = %e, "cannot express headers; publishing with message_id only");
            BasicProperties::default().with_delivery_mode(2)
        }),
        Properties::Error {
            condition,
            description,
            original,
        } => error_entry_properties(
            delivery.properties(),
            condition,
            description,
            original.as_ref(),
            now,
        ),
    }
}
