//! Consuming with manual acks and a bounded prefetch.
//!
//! Input: a connection and a queue name. Output: [`Delivery`] values exposing body (zero-copy
//! `Bytes`), parsed headers, `user_id`, `redelivered`, delivery tag, and the three ways to settle
//! them. Failure: settling reports a [`Settlement`]: an ack that could not be sent (channel closed:
//! `Ok(false)` from lapin, or an error) is `NotSettled` — the broker will redeliver the message —
//! logged as a warning with the message id, never mistaken for success.

use bytes::Bytes;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::Acker;
use lapin::{BasicProperties, Connection};
use std::future::Future;
use tracing::warn;

use super::budget::BudgetPermit;
use super::error::AmqpError;
use super::headers::{HeaderError, MessageHeaders};

/// Outcome of ack / reject / nack. `#[must_use]`: count the ones that were not settled.
#[must_use]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// The broker has been told.
    Settled,
    /// Not sent or not known to have arrived (channel closed or errored). The broker redelivers
    /// the message to some consumer; the store makes that redelivery idempotent (DESIGN §3).
    NotSettled { reason: String },
}

impl Settlement {
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Settled)
    }
}

/// One message taken from a queue, not yet settled. Settling consumes it, so a delivery can be
/// settled at most once.
#[derive(Debug)]
pub struct Delivery {
    body: Bytes,
    properties: BasicProperties,
    redelivered: bool,
    delivery_tag: u64,
    exchange: String,
    routing_key: String,
    generation: u64,
    acker: Acker,
    /// The bytes of the in-flight budget this delivery holds; given back when the delivery is
    /// settled or dropped (declared last: released after the settlement was sent).
    permit: Option<BudgetPermit>,
}

impl Delivery {
    pub(crate) fn from_lapin(d: lapin::message::Delivery, generation: u64) -> Self {
        Self {
            // Vec → Bytes takes ownership of the allocation: no copy.
            body: Bytes::from(d.data),
            properties: d.properties,
            redelivered: d.redelivered,
            delivery_tag: d.delivery_tag,
            exchange: d.exchange.to_string(),
            routing_key: d.routing_key.to_string(),
            generation,
            acker: d.acker,
            permit: None,
        }
    }

    pub(crate) fn hold(&mut self, permit: BudgetPermit) {
        self.permit = Some(permit);
    }

    /// Bytes of the in-flight budget this delivery holds (0 when taken outside a budget).
    pub fn budget_bytes(&self) -> u64 {
        self.permit.as_ref().map_or(0, BudgetPermit::bytes)
    }

    /// The body, shareable without copying.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
    /// Raw AMQP properties (for re-drive, which keeps them as they were).
    pub fn properties(&self) -> &BasicProperties {
        &self.properties
    }
    /// The wire-contract headers, parsed.
    pub fn headers(&self) -> Result<MessageHeaders, HeaderError> {
        MessageHeaders::from_properties(&self.properties)
    }
    /// The `message_id` property as sent (for logs, even when other headers are garbled).
    pub fn message_id(&self) -> Option<&str> {
        self.properties.message_id().as_ref().map(|m| m.as_str())
    }
    /// The AMQP user that published the message, when the publisher set `user_id`. RabbitMQ
    /// refuses a publish whose `user_id` is not the connection's user, so it can be trusted.
    pub fn user_id(&self) -> Option<&str> {
        self.properties.user_id().as_ref().map(|u| u.as_str())
    }
    /// The broker delivered this message before (to us or another consumer) without an ack.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }
    pub fn delivery_tag(&self) -> u64 {
        self.delivery_tag
    }
    pub fn exchange(&self) -> &str {
        &self.exchange
    }
    pub fn routing_key(&self) -> &str {
        &self.routing_key
    }
    /// Session generation of the channel it came from (see the supervisor).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Tell the broker the message is done. Call only after its outcome is durable (DESIGN §3).
    pub async fn ack(self) -> Settlement {
        let r = self.acker.ack(BasicAckOptions::default()).await;
        self.settled("ack", r)
    }

    /// Reject: `requeue = false` dead-letters it (intake) or drops it (queues without DLX).
    pub async fn reject(self, requeue: bool) -> Settlement {
        let r = self.acker.reject(BasicRejectOptions { requeue }).await;
        self.settled("reject", r)
    }

    /// Negative ack of this single delivery.
    pub async fn nack(self, requeue: bool) -> Settlement {
        let r = self
            .acker
            .nack(BasicNackOptions {
                multiple: false,
                requeue,
            })
            .await;
        self.settled("nack", r)
    }

    fn settled(&self, what: &'static str, r: Result<bool, lapin::Error>) -> Settlement {
        let reason = match r {
            Ok(true) => return Settlement::Settled,
            Ok(false) => "channel closed".to_owned(),
            Err(e) => e.to_string(),
        };
        warn!(
            msg_id = self.message_id().unwrap_or("-"),
            delivery_tag = self.delivery_tag,
            generation = self.generation,
            %reason,
            "AMQP {what} not sent; the broker will redeliver the message"
        );
        Settlement::NotSettled { reason }
    }
}

/// How long an instance waits before subscribing to the intake partitions it does not prefer
/// (`[amqp] prefer_partitions`): long enough for the preferred instance, started at the same
/// time, to subscribe first and so be the one the broker makes active.
pub const STANDBY_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// The consumers of a partitioned intake (all on the consumer's channel, one per queue).
#[derive(Debug)]
struct Partitioned {
    consumers: Vec<lapin::Consumer>,
    /// Subscriptions to the partitions not preferred, started after [`STANDBY_DELAY`].
    later: Option<tokio::task::JoinHandle<Result<Vec<lapin::Consumer>, AmqpError>>>,
    /// Where the next round-robin poll starts, so one busy partition cannot starve the others.
    start: usize,
}

impl Drop for Partitioned {
    fn drop(&mut self) {
        // A consumer dropped with its session must not subscribe afterwards.
        if let Some(t) = &self.later {
            t.abort();
        }
    }
}

/// A consumer on its own channel, with `basic.qos(prefetch)` and manual acks. Its window can be
/// changed ([`Consumer::set_prefetch`]): RabbitMQ applies `basic.qos` to consumers started after
/// it, so that cancels the broker-side consumer and starts a new one on the same channel; the
/// deliveries the old one already received are yielded first (queue order is kept) and stay
/// ackable, since unacked deliveries belong to the channel, not to the consumer.
#[derive(Debug)]
pub struct Consumer {
    /// Oldest first: cancelled consumers still draining, then the live one (last).
    inner: std::collections::VecDeque<lapin::Consumer>,
    channel: lapin::Channel,
    queue: String,
    prefetch: u16,
    /// The window last asked for (differs from `prefetch` while a restart is queued behind another).
    wanted: u16,
    generation: u64,
    /// A window change under way: cancel of the live consumer, then a new one.
    restarting: Option<tokio::task::JoinHandle<Result<lapin::Consumer, AmqpError>>>,
    /// `Some`: several intake partitions with single-active-consumer ([`Consumer::open_partitioned`]).
    partitioned: Option<Partitioned>,
}

impl Consumer {
    /// Open a channel, set the prefetch, and start consuming `queue` with manual acks.
    pub async fn open(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
    ) -> Result<Self, AmqpError> {
        let channel = open_channel(connection).await?;
        let inner = start(&channel, queue, prefetch).await?;
        Ok(Self {
            inner: std::collections::VecDeque::from([inner]),
            channel,
            queue: queue.to_owned(),
            prefetch,
            wanted: prefetch,
            generation: 0,
            restarting: None,
            partitioned: None,
        })
    }

    /// Consume several single-active-consumer queues on one channel, each with the same fixed
    /// `prefetch`: those marked `true` at once, the others after [`STANDBY_DELAY`].
    ///
    /// The window never changes here: changing it means cancelling and re-consuming, and on a
    /// single-active-consumer queue a cancel hands the queue to a waiting instance while this one
    /// still holds unacked messages of the same senders — their order would be lost. So the
    /// caller fits `prefetch` to its byte budget for the largest message once, up front.
    pub async fn open_partitioned(
        connection: &Connection,
        queues: &[(String, bool)],
        prefetch: u16,
    ) -> Result<Self, AmqpError> {
        let channel = open_channel(connection).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await
            .map_err(|e| AmqpError::classify("basic.qos", "", "", e))?;
        let mut consumers = Vec::with_capacity(queues.len());
        for (queue, _) in queues.iter().filter(|(_, now)| *now) {
            consumers.push(subscribe(&channel, queue).await?);
        }
        let standby: Vec<String> = queues
            .iter()
            .filter(|(_, now)| !*now)
            .map(|(q, _)| q.clone())
            .collect();
        let later = (!standby.is_empty()).then(|| {
            let channel = channel.clone();
            tokio::spawn(async move {
                tokio::time::sleep(STANDBY_DELAY).await;
                let mut consumers = Vec::with_capacity(standby.len());
                for queue in &standby {
                    consumers.push(subscribe(&channel, queue).await?);
                }
                Ok(consumers)
            })
        });
        Ok(Self {
            inner: std::collections::VecDeque::new(),
            channel,
            queue: queues.first().map(|(q, _)| q.clone()).unwrap_or_default(),
            prefetch,
            wanted: prefetch,
            generation: 0,
            restarting: None,
            partitioned: Some(Partitioned {
                consumers,
                later,
                start: 0,
            }),
        })
    }

    pub(crate) fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The prefetch (count window) of the live consumer.
    pub fn prefetch(&self) -> u16 {
        self.prefetch
    }

    /// Restart the broker-side consumer with a new prefetch (comment on [`Consumer`]) and wait
    /// until the new one is started.
    pub async fn set_prefetch(&mut self, prefetch: u16) -> Result<(), AmqpError> {
        self.request_prefetch(prefetch);
        self.finish_restart().await
    }

    /// Start changing the window without waiting: the restart runs as a task of its own, so a
    /// caller that stops waiting half-way (a `select!`) cannot leave the queue without a consumer
    /// or lose one; [`Consumer::next`] finishes it first.
    pub fn request_prefetch(&mut self, prefetch: u16) {
        self.wanted = prefetch;
        // A partitioned consumer keeps its window ([`Consumer::open_partitioned`]).
        if self.partitioned.is_some() {
            return;
        }
        // One restart at a time; the one under way is followed by another if still wanted.
        if prefetch == self.prefetch || self.restarting.is_some() {
            return;
        }
        let (channel, queue) = (self.channel.clone(), self.queue.clone());
        let old = self.inner.back().map(lapin::Consumer::tag);
        self.restarting = Some(tokio::spawn(async move {
            if let Some(tag) = old {
                channel
                    .basic_cancel(tag, BasicCancelOptions::default())
                    .await
                    .map_err(|e| AmqpError::classify("basic.cancel", "", "", e))?;
            }
            start(&channel, &queue, prefetch).await
        }));
        self.prefetch = prefetch;
    }

    async fn finish_restart(&mut self) -> Result<(), AmqpError> {
        while let Some(task) = self.restarting.as_mut() {
            let result = task.await;
            self.restarting = None;
            match result {
                Ok(Ok(next)) => self.inner.push_back(next),
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    warn!(generation = self.generation, error = %e, "AMQP consumer restart task failed");
                    return Err(AmqpError::Shutdown);
                }
            }
            if self.wanted != self.prefetch {
                self.request_prefetch(self.wanted);
            }
        }
        Ok(())
    }

    pub(crate) fn channel_status(&self) -> lapin::ChannelStatus {
        self.channel.status().clone()
    }

    /// Whether the consumer's channel is still open.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// The next delivery; `None` when the consumer ended (cancelled, channel or connection closed).
    /// Unacked deliveries of an ended consumer go back to the queue on the broker's side.
    pub async fn next(&mut self) -> Option<Delivery> {
        if let Some(p) = self.partitioned.as_mut() {
            let generation = self.generation;
            return match std::future::poll_fn(|cx| p.poll_next(cx)).await {
                Ok(d) => Some(Delivery::from_lapin(d, generation)),
                Err(e) => {
                    warn!(generation, error = %e, "AMQP partition consumer ended");
                    None
                }
            };
        }
        if let Err(e) = self.finish_restart().await {
            warn!(generation = self.generation, error = %e, "AMQP consumer could not change its window; it keeps the old one");
        }
        loop {
            let draining = self.inner.len() > 1;
            let current = self.inner.front_mut()?;
            match current.next().await {
                Some(Ok(d)) => return Some(Delivery::from_lapin(d, self.generation)),
                // A consumer cancelled by a window change has yielded all it received.
                None if draining => {
                    self.inner.pop_front();
                }
                Some(Err(e)) => {
                    warn!(generation = self.generation, error = %e, "AMQP consumer ended");
                    return None;
                }
                None => return None,
            }
        }
    }

    /// Close the consumer's channel; its unacked deliveries are requeued by the broker.
    pub async fn close(&self) {
        let _ = self.channel.close(200, "consumer closed".into()).await;
    }
}

impl Partitioned {
    /// The next delivery of any partition, round robin. `Err` when a subscription failed or a
    /// partition's consumer ended: the session is over (the supervisor reconnects).
    fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<lapin::message::Delivery, String>> {
        use std::task::Poll;
        if let Some(task) = self.later.as_mut() {
            if let Poll::Ready(r) = std::pin::Pin::new(task).poll(cx) {
                self.later = None;
                match r {
                    Ok(Ok(more)) => self.consumers.extend(more),
                    Ok(Err(e)) => return Poll::Ready(Err(format!("standby subscription: {e}"))),
                    Err(e) => return Poll::Ready(Err(format!("standby subscription task: {e}"))),
                }
            }
        }
        let n = self.consumers.len();
        for i in 0..n {
            let at = (self.start + i) % n;
            match futures_lite::Stream::poll_next(std::pin::Pin::new(&mut self.consumers[at]), cx) {
                Poll::Ready(Some(Ok(d))) => {
                    self.start = at + 1;
                    return Poll::Ready(Ok(d));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.to_string())),
                Poll::Ready(None) => {
                    let queue = self.consumers[at].queue();
                    return Poll::Ready(Err(format!("consumer of {queue} cancelled")));
                }
                Poll::Pending => {}
            }
        }
        Poll::Pending
    }
}

/// The consumer's own channel.
async fn open_channel(connection: &Connection) -> Result<lapin::Channel, AmqpError> {
    connection
        .create_channel()
        .await
        .map_err(|e| AmqpError::classify("channel.open (consumer)", "", "", e))
}

/// `basic.qos(prefetch)` then `basic.consume` with manual acks.
async fn start(
    channel: &lapin::Channel,
    queue: &str,
    prefetch: u16,
) -> Result<lapin::Consumer, AmqpError> {
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await
        .map_err(|e| AmqpError::classify("basic.qos", "", "", e))?;
    subscribe(channel, queue).await
}

/// `basic.consume` with manual acks, under the channel's current `basic.qos`.
async fn subscribe(channel: &lapin::Channel, queue: &str) -> Result<lapin::Consumer, AmqpError> {
    channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: false,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| AmqpError::classify("basic.consume", "", "", e))
}
