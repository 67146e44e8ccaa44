//! Publishing with publisher confirms: a message counts as delivered only when the broker has
//! confirmed it *and* did not return it.
//!
//! Input: a route (queue via the default exchange, or exchange + routing key), headers or raw
//! properties, and a body borrowed from the caller (no copy on our side). Output: `Ok(())` once
//! the broker has taken responsibility. Failure: [`PublishError`] — `Returned` (unroutable,
//! `mandatory`), `Nacked`, `Lost` (channel/connection gone before the confirm), never a silent
//! success. Publishes on one [`Publisher`] pipeline: many may be in flight at once (`&self`).
//!
//! Why a return is matched to the right publish: RabbitMQ sends `basic.return` for an unroutable
//! message immediately followed by the `basic.ack` covering exactly that sequence number (in the
//! same channel step), and lapin attaches the pending return to the next confirm it processes.
//!
//! Why publishes on one channel take a lock for an instant: lapin 4 gives a publish its delivery
//! tag (the confirm's sequence number) and queues its frames in two separate steps. Two tasks
//! publishing at once on two threads can queue their frames in the opposite order of their tags;
//! the broker numbers publishes in wire order, so its answer for one then resolves the other. With
//! every publish confirmed that goes unnoticed, but a nack (a full queue's `reject-publish`) or a
//! return then lands on the wrong message: one copy reported delivered and never stored, another
//! refused although stored (found by the chaos reject-publish scenario; reproduced by
//! `tests/amqp_broker.rs::confirms_and_nacks_resolve_the_publish_they_belong_to`, 324 of 2,000
//! answers misplaced without the lock). The lock is held only for the first poll of lapin's publish
//! future, which does both steps without awaiting; sending and confirming stay pipelined.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::mpsc;

use super::error::{AmqpError, PublishError};
use super::headers::MessageHeaders;

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// Straight to a queue through the default exchange (routing key = queue name).
    Queue(&'a str),
    /// Through an exchange with a routing key.
    Exchange {
        exchange: &'a str,
        routing_key: &'a str,
    },
}

impl<'a> Route<'a> {
    /// The gateway's intake: the intake exchange, routed to `gateway_inbound` (what a sender, a
    /// replay, a redrive and the lab's traffic publish to).
    pub fn intake(topology: &'a super::topology::Topology) -> Route<'a> {
        Route::Exchange {
            exchange: &topology.exchange,
            routing_key: &topology.inbound,
        }
    }
}

impl Route<'_> {
    fn parts(&self) -> (&str, &str) {
        match *self {
            Route::Queue(q) => ("", q),
            Route::Exchange {
                exchange,
                routing_key,
            } => (exchange, routing_key),
        }
    }
}

/// A channel in confirm mode. Cheap to clone; clones share the channel (and its pipeline).
#[derive(Clone, Debug)]
pub struct Publisher {
    channel: Channel,
    generation: u64,
    broken: Option<mpsc::UnboundedSender<u64>>,
    /// Makes "take a delivery tag" and "queue the frames" one step per channel (module comment).
    in_order: Arc<Mutex<()>>,
}

impl Publisher {
    /// Open a dedicated channel on `connection` and enable publisher confirms.
    pub async fn open(connection: &Connection) -> Result<Self, AmqpError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::classify("channel.open (publisher)", "", "", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| AmqpError::classify("confirm.select", "", "", e))?;
        Ok(Self {
            channel,
            generation: 0,
            broken: None,
            in_order: Arc::default(),
        })
    }

    pub(crate) fn attach(mut self, generation: u64, broken: mpsc::UnboundedSender<u64>) -> Self {
        self.generation = generation;
        self.broken = Some(broken);
        self
    }

    /// The session generation this publisher belongs to (0 when opened outside a supervisor).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the channel is still open.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    /// Publish `body` with the wire-contract headers (persistent, `mandatory`), and wait for
    /// the broker's confirm.
    pub async fn publish(
        &self,
        route: Route<'_>,
        headers: &MessageHeaders,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let properties = headers.to_properties()?;
        self.publish_with_properties(route, properties, body).await
    }

    /// Publish with properties as given (used by re-drive, which must keep a message's original
    /// headers, and by benchmarks). The caller is responsible for `delivery_mode = 2`.
    pub async fn publish_with_properties(
        &self,
        route: Route<'_>,
        properties: BasicProperties,
        body: &[u8],
    ) -> Result<(), PublishError> {
        let (exchange, routing_key) = route.parts();
        let message_id = properties
            .message_id()
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default();
        let lost = |source: lapin::Error| {
            if let Some(tx) = &self.broken {
                if !self.channel.status().connected() {
                    let _ = tx.send(self.generation);
                }
            }
            PublishError::Lost {
                message_id: message_id.clone(),
                source,
            }
        };
        let mut publish = std::pin::pin!(self.channel.basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions {
                mandatory: true,
                immediate: false
            },
            body,
            properties,
        ));
        // The first poll takes the tag and queues the frames; nobody else on this channel may
        // do the same in between (module comment).
        let first = std::future::poll_fn(|cx| {
            let _in_order = self
                .in_order
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Poll::Ready(publish.as_mut().poll(cx))
        })
        .await;
        let queued = match first {
            Poll::Ready(r) => r,
            Poll::Pending => publish.await,
        };
        let confirm = queued.map_err(lost)?.await.map_err(lost)?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(ret)) | Confirmation::Nack(Some(ret)) => {
                Err(PublishError::Returned {
                    message_id,
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    reply_code: ret.reply_code,
                    reply_text: ret.reply_text.to_string(),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked {
                message_id,
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::NotRequested => Err(PublishError::NotConfirmed { message_id }),
        }
    }

    /// Close the channel (normal shutdown).
    pub async fn close(&self) {
        let _ = self.channel.close(200, "publisher closed".into()).await;
    }
}
