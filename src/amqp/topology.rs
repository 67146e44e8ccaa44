//! The queues and exchange of the wire contract (DESIGN §1), declared idempotently.
//!
//! Input: an open channel and the parties' HER-ids. Output: the broker holds exchange
//! `helsemelding` (direct, durable), `gateway_inbound` (quorum, delivery limit, dead-lettering to
//! `gateway_dead_letter`), `gateway_dead_letter`, and `{herId}_async` / `{herId}_error` per party;
//! with `hnmsg_exchange` set, that direct exchange with each party's `{herId}_async` bound to the
//! intake (Helsenorge.Messaging senders address the receiver's queue through it).
//! Failure: an existing queue with other arguments is [`AmqpError::QueueArgumentMismatch`] naming
//! queue and argument (a configuration fault: never delete and recreate a queue that may hold
//! patient messages). The broker closes the channel after a failed declare.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::error::AmqpError;
use crate::ids::HerId;

/// Direct exchange every sender publishes to.
pub const EXCHANGE: &str = "helsemelding";
/// Gateway intake queue (and its routing key on [`EXCHANGE`]).
pub const INBOUND_QUEUE: &str = "gateway_inbound";
/// Poison / undeliverable messages, re-drivable by `helsemelding redrive`.
pub const DEAD_LETTER_QUEUE: &str = "gateway_dead_letter";

/// A party's inbox: `{herId}_async`.
pub fn async_queue(her: HerId) -> String {
    format!("{her}_async")
}

/// A party's transport-error queue: `{herId}_error`.
pub fn error_queue(her: HerId) -> String {
    format!("{her}_error")
}

/// Names and limits of the topology. `Default` is exactly DESIGN §1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub inbound: String,
    pub dead_letter: String,
    /// Deliveries of one inbound message before the broker dead-letters it (poison protection:
    /// a message that crashes the gateway cannot loop forever).
    pub delivery_limit: i64,
    /// Helsenorge.Messaging addressing (DESIGN §1): a direct exchange named like the senders'
    /// namespace, with every party's `{herId}_async` routing key bound to the intake, so a sender
    /// addressing `/exchange/{name}/{herId}_async` goes through the gateway. `None`: not declared.
    pub hnmsg_exchange: Option<String>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: EXCHANGE.into(),
            inbound: INBOUND_QUEUE.into(),
            dead_letter: DEAD_LETTER_QUEUE.into(),
            delivery_limit: 20,
            hnmsg_exchange: None,
        }
    }
}

fn quorum_args() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    t
}

/// Declare a durable quorum queue with `extra` arguments on top of `x-queue-type`.
pub async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    extra: FieldTable,
) -> Result<(), AmqpError> {
    let mut args = quorum_args();
    for (k, v) in &extra {
        args.insert(k.clone(), v.clone());
    }
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .map(|_| ())
        .map_err(|e| AmqpError::classify("queue.declare", "", "", e))
}

impl Topology {
    /// The intake queue's arguments: quorum; after `delivery_limit` deliveries the message is
    /// dead-lettered through the default exchange to `dead_letter`, *at-least-once* (RabbitMQ ≥ 3.10:
    /// the message leaves the source queue only when the dead-letter queue has confirmed it, so a
    /// poison message is never lost on the way; this strategy requires `x-overflow=reject-publish`).
    pub fn inbound_arguments(&self) -> FieldTable {
        let mut t = FieldTable::default();
        t.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(self.delivery_limit),
        );
        t.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        t.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(self.dead_letter.as_str().into()),
        );
        t.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        t.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        t
    }

    /// Declare exchange, intake, dead-letter queue and every party's queues. Idempotent.
    pub async fn declare(&self, channel: &Channel, parties: &[HerId]) -> Result<(), AmqpError> {
        declare_direct_exchange(channel, &self.exchange).await?;
        // Dead-letter target first, so the intake never points at a missing queue.
        declare_quorum_queue(channel, &self.dead_letter, FieldTable::default()).await?;
        declare_quorum_queue(channel, &self.inbound, self.inbound_arguments()).await?;
        self.bind_intake(channel, &self.exchange, &self.inbound)
            .await?;
        self.ensure_party_queues(channel, parties).await?;
        self.sync_hnmsg_bindings(channel, &[], parties).await
    }

    /// Makes the HN.Msg exchange's bindings follow the register: declares the exchange (durable,
    /// direct), binds `{herId}_async` of every party in `current` to the intake and unbinds those
    /// of parties in `previous` that are no longer in `current`. Idempotent; a no-op without
    /// [`hnmsg_exchange`](Self::hnmsg_exchange). Called at start with no `previous`; whoever
    /// reloads the register calls it with the old and the new party list.
    pub async fn sync_hnmsg_bindings(
        &self,
        channel: &Channel,
        previous: &[HerId],
        current: &[HerId],
    ) -> Result<(), AmqpError> {
        let Some(exchange) = self.hnmsg_exchange.as_deref() else {
            return Ok(());
        };
        declare_direct_exchange(channel, exchange).await?;
        for her in current {
            self.bind_intake(channel, exchange, &async_queue(*her))
                .await?;
        }
        for her in previous.iter().filter(|h| !current.contains(h)) {
            channel
                .queue_unbind(
                    self.inbound.as_str().into(),
                    exchange.into(),
                    async_queue(*her).as_str().into(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| AmqpError::classify("queue.unbind", "", "", e))?;
        }
        Ok(())
    }

    /// Binds the intake to `exchange` with `routing_key`.
    async fn bind_intake(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), AmqpError> {
        channel
            .queue_bind(
                self.inbound.as_str().into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::classify("queue.bind", "", "", e))
            .map(|_| ())
    }

    /// Declare `{herId}_async` and `{herId}_error` for each party (e.g. after the register grew).
    pub async fn ensure_party_queues(
        &self,
        channel: &Channel,
        parties: &[HerId],
    ) -> Result<(), AmqpError> {
        for her in parties {
            declare_quorum_queue(channel, &async_queue(*her), FieldTable::default()).await?;
            declare_quorum_queue(channel, &error_queue(*her), FieldTable::default()).await?;
        }
        Ok(())
    }
}

/// Declares a durable direct exchange (idempotent).
async fn declare_direct_exchange(channel: &Channel, name: &str) -> Result<(), AmqpError> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| AmqpError::classify("exchange.declare", "", "", e))
}
