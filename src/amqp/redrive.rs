//! Re-drive: move messages from `gateway_dead_letter` back to the intake, and the
//! `helsemelding redrive` command.
//!
//! Input: a connection, the topology, an optional limit. Output: a [`RedriveReport`] (how many
//! moved). Each message is taken with a manual-ack `basic.get`, republished to the intake through
//! the `helsemelding` exchange with its original properties and headers plus
//! `x-helsemelding-redriven: <count>` (persistent, mandatory, confirmed), and only then acked on
//! the dead-letter queue: a crash in between leaves a duplicate on the intake (same MsgId,
//! deduplicated by the delivery state), never a loss. The number of messages taken is bounded by
//! the queue length at the start, so a message that dead-letters again at once is not looped.
//! Failure: [`AmqpError`] for connection/topology, [`PublishError`] for a publish (the message
//! stays on the dead-letter queue).

use std::path::PathBuf;
use std::process::ExitCode;

use lapin::options::BasicGetOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::Connection;

use super::connection::{connect, AmqpSettings};
use super::consumer::{Delivery, Settlement};
use super::error::{AmqpError, PublishError};
use super::headers::PERSISTENT;
use super::publisher::{Publisher, Route};
use super::topology::Topology;

/// Header counting how often a message has been re-driven.
pub const REDRIVEN_HEADER: &str = "x-helsemelding-redriven";

/// A re-drive failed part-way; `moved` say how many had been moved before.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("{0} (after moving {1} messages)")]
    Amqp(AmqpError, u64),
    #[error("{0} (after moving {1} messages; this message stays on the dead-letter queue)")]
    Publish(PublishError, u64),
}

/// What a re-drive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedriveReport {
    /// Republished (confirmed) and acked on the dead-letter queue.
    pub moved: u64,
    /// Republished, but the ack on the dead-letter queue did not go through: they will be
    /// delivered again from the dead-letter queue too (a duplicate, never a loss).
    pub republished_not_acked: u64,
}

fn redriven_count(headers: &Option<FieldTable>) -> i64 {
    let v = headers
        .as_ref()
        .and_then(|t| t.inner().get(REDRIVEN_HEADER).cloned());
    match v {
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => n.into(),
        Some(AMQPValue::LongUInt(n)) => n.into(),
        Some(AMQPValue::ShortInt(n)) => n.into(),
        Some(AMQPValue::ShortUInt(n)) => n.into(),
        _ => 0,
    }
}

/// Move up to `limit` (all when `None`) messages from the dead-letter queue to the intake.
pub async fn redrive(
    connection: &Connection,
    topology: &Topology,
    limit: Option<u64>,
) -> Result<RedriveReport, RedriveError> {
    let mut report = RedriveReport::default();
    let amqp = |e: AmqpError, r: &RedriveReport| RedriveError::Amqp(e, r.moved);
    let channel = connection.create_channel().await.map_err(|e| {
        amqp(
            AmqpError::classify("channel.open (redrive)", "", "", e),
            &report,
        )
    })?;
    let publisher = Publisher::open(connection)
        .await
        .map_err(|e| amqp(e, &report))?;
    let mut budget: Option<u64> = limit;
    loop {
        if budget == Some(0) {
            break;
        }
        let got = channel
            .basic_get(
                topology.dead_letter.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .map_err(|e| amqp(AmqpError::classify("basic.get", "", "", e), &report))?;
        let Some(got) = got else { break };
        // Bound by what is there now (this one + the rest), so re-dead-lettered ones are not looped.
        let remaining_now = u64::from(got.message_count) + 1;
        budget = Some(budget.map_or(remaining_now, |b| b.min(remaining_now)));
        let delivery = Delivery::from_lapin(got.delivery, 0);
        let mut props = delivery.properties().clone();
        let mut headers = props.headers().clone().unwrap_or_default();
        let count = redriven_count(props.headers()) + 1;
        headers.insert(REDRIVEN_HEADER.into(), AMQPValue::LongLongInt(count));
        props = props.with_headers(headers).with_delivery_mode(PERSISTENT);
        let route = Route::intake(topology);
        if let Err(e) = publisher
            .publish_with_properties(route, props, delivery.body())
            .await
        {
            // Not acked: it goes back to the dead-letter queue when the channel closes.
            let _ = channel.close(200, "redrive stopped".into()).await;
            return Err(RedriveError::Publish(e, report.moved));
        }
        match delivery.ack().await {
            Settlement::Settled => report.moved += 1,
            Settlement::NotSettled { .. } => report.republished_not_acked += 1,
        }
        budget = budget.map(|b| b - 1);
    }
    publisher.close().await;
    let _ = channel.close(200, "redrive done".into()).await;
    Ok(report)
}

/// `helsemelding redrive`: move dead-lettered messages back to the intake.
#[derive(Debug, clap::Args)]
pub struct RedriveArgs {
    /// Gateway config file; its `[amqp] url` (and `tls_ca_file`) is used.
    #[arg(long, conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// Broker URL, e.g. amqp://user:pass@host:5672/%2f (instead of --config).
    #[arg(long)]
    pub url: Option<String>,
    /// Move at most this many messages (default: all that are there now).
    #[arg(long)]
    pub limit: Option<u64>,
}

/// Read `[amqp] url` and `tls_ca_file` from the gateway config (only those keys; the full config
/// is validated by `check-config`).
fn settings_from_config(path: &std::path::Path) -> Result<AmqpSettings, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e| format!("{}: not valid TOML: {e}", path.display()))?;
    let amqp = doc
        .get("amqp")
        .and_then(|v| v.as_table())
        .ok_or_else(|| format!("{}: no [amqp] table", path.display()))?;
    let url = amqp
        .get("url")
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("{}: [amqp] url missing or not a string", path.display()))?;
    let mut s = AmqpSettings::new(url, "redrive");
    if let Some(ca) = amqp.get("tls_ca_file").and_then(|v| v.as_str()) {
        s.tls_ca_file = Some(path.parent().unwrap_or(std::path::Path::new(".")).join(ca));
    }
    Ok(s)
}

/// Run the command; prints how many messages moved.
pub fn run(args: RedriveArgs) -> ExitCode {
    let settings = match (&args.url, &args.config) {
        (Some(url), _) => AmqpSettings::new(url.clone(), "redrive"),
        (None, config) => {
            let path = config
                .clone()
                .unwrap_or_else(|| PathBuf::from("config/gateway.toml"));
            match settings_from_config(&path) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("redrive: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redrive: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let topology = Topology::default();
        let connection = match connect(&settings).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("redrive: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = redrive(&connection, &topology, args.limit).await;
        let _ = connection.close(200, "redrive done".into()).await;
        match result {
            Ok(r) => {
                println!(
                    "moved {} message(s) from {} to {}",
                    r.moved, topology.dead_letter, topology.inbound
                );
                if r.republished_not_acked > 0 {
                    println!(
                        "{} message(s) were republished but stay on {} too (ack not confirmed): they will appear twice, same MsgId",
                        r.republished_not_acked, topology.dead_letter
                    );
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("redrive: {e}");
                ExitCode::FAILURE
            }
        }
    })
}
