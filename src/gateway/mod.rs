//! The gateway daemon (`helsemelding serve`): the pipeline of DESIGN §2 over RabbitMQ.

pub mod assess;
pub mod cli;
pub mod crash;
pub mod metrics;
pub mod routing_log;
pub mod server;
pub mod tail;
pub mod workers;
