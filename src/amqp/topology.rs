//! The queues and exchange of the wire contract (DESIGN §1), declared idempotently.
//!
//! Input: an open channel and the parties' HER-ids. Output: the broker holds exchange
//! `helsemelding` (direct, durable), `gateway_inbound` (quorum, delivery limit, dead-lettering to
//! `gateway_dead_letter`), `gateway_dead_letter`, and `{herId}_async` / `{herId}_error` per party;
//! with `hnmsg_exchange` set, that direct exchange with each party's `{herId}_async` bound to the
//! intake (Helsenorge.Messaging senders address the receiver's queue through it).
//!
//! Partitions (`partitions = K > 0`, DESIGN §6): the intake becomes K+1 queues so that several
//! gateway instances share the work while each sender's messages stay in order. The
//! `helsemelding` exchange's key `gateway_inbound` no longer goes to the queue but to exchange
//! `gateway_partitions` (x-consistent-hash on the `fromHerId` header, plugin
//! `rabbitmq_consistent_hash_exchange`), which spreads senders over `gateway_inbound.1` …
//! `gateway_inbound.K`. Every sender's messages hash to one queue. `gateway_inbound` stays (AMQP
//! 1.0 and Helsenorge.Messaging senders address it by name; their `fromHerId` is an application
//! property the hash cannot see) and is partition 0. Every intake queue has single-active-consumer:
//! each instance consumes all of them and the broker makes exactly one consumer active per queue,
//! handing the queue to a waiting instance when the active one's connection dies. A message with
//! no `fromHerId` header is still routed (the hash of nothing picks one fixed partition) and gets
//! its specific answer from the pipeline like any other.
//! Failure: an existing queue with other arguments is [`AmqpError::QueueArgumentMismatch`] naming
//! queue and argument (a configuration fault: never delete and recreate a queue that may hold
//! patient messages). The broker closes the channel after a failed declare.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::error::AmqpError;
use crate::ids::HerId;

/// Direct exchange every sender publishes to.
pub const EXCHANGE: &str = "helsemelding";
/// Gateway intake queue (and its routing key on [`EXCHANGE`]).
pub const INBOUND_QUEUE: &str = "gateway_inbound";
/// Consistent-hash exchange in front of the partition queues (`partitions > 0`).
pub const PARTITION_EXCHANGE: &str = "gateway_partitions";
/// The header the partition exchange hashes: the sender's HER-id (DESIGN §1), so a sender's
/// messages always land in the same partition.
pub const PARTITION_HASH_HEADER: &str = super::headers::FROM_HER_ID;
/// The most partitions a topology may have (a queue per partition on every broker node; beyond a
/// few dozen the cluster pays for queues that add no parallelism).
pub const MAX_PARTITIONS: u16 = 64;

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
    /// Intake partitions beyond `inbound` (module comment); 0: one intake queue, no
    /// single-active-consumer (one gateway instance, as before partitions existed).
    pub partitions: u16,
    /// Partitions (0 = `inbound`) this instance subscribes to at once; the others only after
    /// [`STANDBY_DELAY`](super::consumer::STANDBY_DELAY), so with every instance up each one is
    /// active on its own share. `None`: all at once.
    pub prefer_partitions: Option<Vec<u16>>,
}

impl Default for Topology {
    fn default() -> Self {
        Self {
            exchange: EXCHANGE.into(),
            inbound: INBOUND_QUEUE.into(),
            dead_letter: DEAD_LETTER_QUEUE.into(),
            delivery_limit: 20,
            hnmsg_exchange: None,
            partitions: 0,
            prefer_partitions: None,
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

    /// Partition `n`'s queue: `inbound` for 0, `inbound.n` otherwise.
    pub fn partition_queue(&self, n: u16) -> String {
        if n == 0 {
            self.inbound.clone()
        } else {
            format!("{}.{n}", self.inbound)
        }
    }

    /// Every intake queue, partition 0 (`inbound`) first: what a gateway consumes.
    pub fn intake_queues(&self) -> Vec<String> {
        (0..=self.partitions)
            .map(|n| self.partition_queue(n))
            .collect()
    }

    /// Which intake queues to subscribe to at once (`true`) and which after the standby delay.
    pub fn preferred(&self) -> Vec<(String, bool)> {
        (0..=self.partitions)
            .map(|n| {
                let now = self
                    .prefer_partitions
                    .as_ref()
                    .is_none_or(|p| p.contains(&n));
                (self.partition_queue(n), now)
            })
            .collect()
    }

    /// An intake queue's arguments: [`inbound_arguments`](Self::inbound_arguments), plus
    /// single-active-consumer when the intake is partitioned.
    fn intake_arguments(&self) -> FieldTable {
        let mut t = self.inbound_arguments();
        if self.partitions > 0 {
            t.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        }
        t
    }

    /// Declare exchange, intake, dead-letter queue and every party's queues. Idempotent.
    ///
    /// Turning partitions on for an intake that exists without them fails with
    /// [`AmqpError::QueueArgumentMismatch`] on `x-single-active-consumer`: the queue must be
    /// drained and deleted first (README, "Several instances"); it is never recreated here.
    pub async fn declare(&self, channel: &Channel, parties: &[HerId]) -> Result<(), AmqpError> {
        declare_direct_exchange(channel, &self.exchange).await?;
        // Dead-letter target first, so the intake never points at a missing queue.
        declare_quorum_queue(channel, &self.dead_letter, FieldTable::default()).await?;
        declare_quorum_queue(channel, &self.inbound, self.intake_arguments()).await?;
        if self.partitions == 0 {
            self.bind_intake(channel, &self.exchange, &self.inbound)
                .await?;
        } else {
            self.declare_partitions(channel).await?;
        }
        self.ensure_party_queues(channel, parties).await?;
        self.sync_hnmsg_bindings(channel, &[], parties).await
    }

    /// The partition exchange, its K queues, and the route to it (module comment). The new route
    /// is bound before the old one (`helsemelding` → `gateway_inbound`) is removed: in between a
    /// message may land in both, which the store's duplicate check absorbs; the other order could
    /// drop a message with no queue bound.
    async fn declare_partitions(&self, channel: &Channel) -> Result<(), AmqpError> {
        let mut args = FieldTable::default();
        args.insert(
            "hash-header".into(),
            AMQPValue::LongString(PARTITION_HASH_HEADER.into()),
        );
        channel
            .exchange_declare(
                PARTITION_EXCHANGE.into(),
                ExchangeKind::Custom("x-consistent-hash".into()),
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                args,
            )
            .await
            .map_err(|e| {
                // RabbitMQ answers an unknown type with 503 COMMAND_INVALID "invalid exchange type".
                if e.to_string().contains("invalid exchange type") {
                    AmqpError::ExchangeTypeUnknown {
                        exchange_type: "x-consistent-hash".into(),
                        needed: "[amqp] partitions",
                        plugin: "rabbitmq_consistent_hash_exchange",
                        detail: e.to_string(),
                    }
                } else {
                    AmqpError::classify("exchange.declare", "", "", e)
                }
            })?;
        for n in 1..=self.partitions {
            let queue = self.partition_queue(n);
            declare_quorum_queue(channel, &queue, self.intake_arguments()).await?;
            // Consistent-hash bindings: the routing key is the queue's weight on the ring.
            channel
                .queue_bind(
                    queue.as_str().into(),
                    PARTITION_EXCHANGE.into(),
                    "1".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| AmqpError::classify("queue.bind", "", "", e))?;
        }
        channel
            .exchange_bind(
                PARTITION_EXCHANGE.into(),
                self.exchange.as_str().into(),
                self.inbound.as_str().into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::classify("exchange.bind", "", "", e))?;
        channel
            .queue_unbind(
                self.inbound.as_str().into(),
                self.exchange.as_str().into(),
                self.inbound.as_str().into(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| AmqpError::classify("queue.unbind", "", "", e))
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
