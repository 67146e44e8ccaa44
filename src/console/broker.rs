//! The console's own link to the broker: queue depths and the redrive of dead letters.
//!
//! Input: the gateway's AMQP settings and topology. Output: message counts of named queues (a
//! passive `queue.declare`, which reads without touching a message) and [`redrive`] reports.
//! The connection is opened on first use and again after it fails; every call is bounded by
//! [`TIMEOUT`] so a page never hangs on a sick broker: it shows the error instead.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Connection;

use crate::amqp::connection::{connect, AmqpSettings};
use crate::amqp::redrive::{redrive, RedriveReport};
use crate::amqp::topology::Topology;

/// Longest a page waits for the broker.
pub const TIMEOUT: Duration = Duration::from_secs(3);

/// Queue depths and redrive over a connection of the console's own.
pub struct BrokerView {
    settings: AmqpSettings,
    pub topology: Topology,
    conn: tokio::sync::Mutex<Option<Connection>>,
}

/// How many messages a queue holds, or why that is not known.
pub type Depth = Result<u32, String>;

impl BrokerView {
    pub fn new(settings: AmqpSettings, topology: Topology) -> BrokerView {
        BrokerView {
            settings,
            topology,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Connection>>, String> {
        let mut g = self.conn.lock().await;
        if !g.as_ref().is_some_and(|c| c.status().connected()) {
            let c = tokio::time::timeout(TIMEOUT, connect(&self.settings))
                .await
                .map_err(|_| format!("no answer from the broker within {TIMEOUT:?}"))?
                .map_err(|e| e.to_string())?;
            *g = Some(c);
        }
        Ok(g)
    }

    /// The depth of each queue, in the order given. A queue that does not exist says so.
    pub async fn depths(&self, queues: &[String]) -> Result<Vec<Depth>, String> {
        let g = self.connection().await?;
        let Some(conn) = g.as_ref() else {
            return Err("not connected".into());
        };
        let mut out = Vec::with_capacity(queues.len());
        let mut channel = None;
        for q in queues {
            if channel.is_none() {
                channel = Some(
                    tokio::time::timeout(TIMEOUT, conn.create_channel())
                        .await
                        .map_err(|_| "channel.open timed out".to_owned())?
                        .map_err(|e| format!("channel.open: {e}"))?,
                );
            }
            let Some(ch) = channel.as_ref() else { break };
            let declared = tokio::time::timeout(
                TIMEOUT,
                ch.queue_declare(
                    q.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                ),
            )
            .await;
            match declared {
                Ok(Ok(queue)) => out.push(Ok(queue.message_count())),
                Ok(Err(e)) => {
                    // A missing queue closes the channel (404): the next one needs a new channel.
                    channel = None;
                    out.push(Err(if e.to_string().contains("NOT_FOUND") {
                        "no such queue".to_owned()
                    } else {
                        e.to_string()
                    }));
                }
                Err(_) => {
                    channel = None;
                    out.push(Err("no answer within 3 s".into()));
                }
            }
        }
        if let Some(ch) = channel {
            let _ = ch.close(200, "console".into()).await;
        }
        Ok(out)
    }

    /// Moves up to `limit` dead letters back to the intake (see [`crate::amqp::redrive`]).
    pub async fn redrive(&self, limit: u64) -> Result<RedriveReport, String> {
        let g = self.connection().await?;
        let Some(conn) = g.as_ref() else {
            return Err("not connected".into());
        };
        redrive(conn, &self.topology, Some(limit))
            .await
            .map_err(|e| e.to_string())
    }
}
