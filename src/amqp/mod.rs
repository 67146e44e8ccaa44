//! AMQP transport (RabbitMQ via lapin): the wire contract of DESIGN §1 and the reliability
//! protocol's transport half (DESIGN §3: publish with confirms, ack only when durable).
//!
//! | module        | job |
//! |---------------|-----|
//! | `connection`  | [`AmqpSettings`] → one named connection (`amqp://`, `amqps://` with a CA file) |
//! | `error`       | [`AmqpError`] / [`PublishError`]: transient (retry) or configuration (fix) |
//! | `topology`    | exchange `helsemelding`, `gateway_inbound`, `gateway_dead_letter`, `{her}_async`, `{her}_error` |
//! | `headers`     | [`MessageHeaders`] ↔ AMQP properties and header table |
//! | `amqp10`      | the AMQP 1.0 type system: the `x-amqp-1.0-*` sections of 1.0 clients (Helsenorge.Messaging) |
//! | `publisher`   | [`Publisher::publish`]: mandatory, persistent, awaited confirm; pipelined |
//! | `consumer`    | [`Consumer`] / [`Delivery`]: manual ack, prefetch, [`Settlement`] of each ack |
//! | `budget`      | [`ByteBudget`]: in-flight bytes held by deliveries; the count window fitted to it |
//! | `supervisor`  | [`Supervisor`]: reconnect with backoff, re-declare, fresh channels per generation; publishing and consuming on separate connections |
//! | `redrive`     | move `gateway_dead_letter` back to intake (CLI `helsemelding redrive`) |
//! | `testing`     | [`testing::TestVhost`]: a throw-away vhost on the local broker for tests |
//!
//! Logging note: lapin itself logs a returned (unroutable) message at WARN with its `Debug`,
//! which includes the body. Whoever installs the tracing subscriber must add
//! [`LAPIN_LOG_DIRECTIVE`] so message content never reaches a log.

pub mod amqp10;
pub mod budget;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod headers;
pub mod publisher;
pub mod redrive;
pub mod supervisor;
pub mod testing;
pub mod topology;

pub use budget::{BudgetPermit, ByteBudget, Held, PrefetchWindow};
pub use connection::{connect, AmqpSettings};
pub use consumer::{Consumer, Delivery, Settlement};
pub use error::{AmqpError, FaultKind, PublishError};
pub use headers::{ContentType, HeaderError, MessageHeaders};
pub use publisher::{Publisher, Route};
pub use supervisor::{
    Backoff, Deliveries, LinkState, Session, SessionPlan, Supervisor, SupervisorHandle,
};
pub use topology::{
    async_queue, error_queue, Topology, DEAD_LETTER_QUEUE, EXCHANGE, INBOUND_QUEUE,
};

/// `EnvFilter` directive silencing lapin's own logging of returned message bodies (and its
/// other chatter below ERROR); we log every transport event ourselves, with ids only.
pub const LAPIN_LOG_DIRECTIVE: &str = "lapin=error";
