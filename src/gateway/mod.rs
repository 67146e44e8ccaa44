//! The gateway daemon (`helsemelding serve`): the pipeline of DESIGN §2 over RabbitMQ.

pub mod metrics;
pub mod routing_log;
pub mod tail;
