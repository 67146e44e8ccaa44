//! The transport baseline: a bare pass-through relay over RabbitMQ, built only from
//! [`helsemelding::amqp`], so it measures what the broker and that API can move without any gateway work.
//!
//! 1. fill: a publisher with pipelined confirms puts `n` persistent messages of `size` bytes on
//!    quorum queue A;
//! 2. relay: a consumer (prefetch P) takes each from A, republishes it persistent with a confirm
//!    to quorum queue B, then acks it on A (the gateway's order of effects, DESIGN §3);
//! 3. drain: a consumer counts arrivals on B (and acks them).
//!
//! Every message crosses the broker twice, as a message through the gateway does: this is the
//! physical limit the gateway is measured against. Used by `cargo bench --bench relay` and by
//! `helsemelding-lab bench`. Queues get unique names and are deleted at the end. Failure: any broker
//! fault, refused publish or unsettled ack is a [`BenchError`] (a benchmark that lost messages
//! must not print a rate).

use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::QueueDeleteOptions;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::task::JoinSet;

use super::BenchError;
use helsemelding::amqp::topology::declare_quorum_queue;
use helsemelding::amqp::{
    connect, AmqpSettings, Consumer, PublishError, Publisher, Route, Settlement,
};

/// What one relay run measured.
#[derive(Debug, Clone)]
pub struct RelayReport {
    pub messages: u64,
    pub size: usize,
    pub prefetch: u16,
    /// Messages per second into queue A (pipelined confirms).
    pub fill_rate: f64,
    /// Messages per second through the relay, until the last one arrived on B.
    pub relay_rate: f64,
    pub relay_seconds: f64,
    /// CPU µs per relayed message: the broker's, and the relay's own (relay + drain consumer).
    pub broker_cpu_us: Option<f64>,
    pub relay_cpu_us: f64,
}

/// The relay proper: takes `n` deliveries from `qa`, republishes each with a confirm to `qb`, then
/// acks it; up to `prefetch` at once.
async fn forward(
    conn: &lapin::Connection,
    qa: &str,
    qb: &str,
    n: u64,
    prefetch: u16,
) -> Result<(), BenchError> {
    let mut source = Consumer::open(conn, qa, prefetch).await?;
    let out = Publisher::open(conn).await?;
    let mut set: JoinSet<Result<(), BenchError>> = JoinSet::new();
    let mut taken = 0u64;
    while taken < n {
        let Some(d) = source.next().await else {
            return Err(BenchError::Lost(format!(
                "relay consumer ended after {taken} of {n}"
            )));
        };
        taken += 1;
        while set.len() >= usize::from(prefetch) {
            if let Some(r) = set.join_next().await {
                r.map_err(BenchError::join)??;
            }
        }
        let (p, q) = (out.clone(), qb.to_owned());
        set.spawn(async move {
            p.publish_with_properties(Route::Queue(&q), d.properties().clone(), d.body())
                .await?;
            match d.ack().await {
                Settlement::Settled => Ok(()),
                Settlement::NotSettled { reason } => {
                    Err(BenchError::Lost(format!("relay ack: {reason}")))
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(BenchError::join)??;
    }
    Ok(())
}

/// The relay's own latency (publish to arrival on B, ms) with `n` messages published one by one
/// at `rate` per second: the broker's share of the gateway's latency at the same rate.
#[derive(Debug, Clone)]
pub struct RelayLatency {
    pub rate: f64,
    pub messages: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Runs the relay while a paced publisher feeds it at `rate` (the gateway's half rate).
pub async fn latency(
    url: &str,
    n: u64,
    size: usize,
    prefetch: u16,
    rate: f64,
) -> Result<RelayLatency, BenchError> {
    let rig = Rig::open(url, prefetch, "lat").await?;
    let [pub_conn, drain_conn, relay_conn] = &rig.conns;
    let (qa, qb) = (&rig.qa, &rig.qb);
    let result = async {
        let (tx, mut arrivals) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
        let mut drain = Consumer::open(drain_conn, qb, prefetch).await?;
        let drain_task = tokio::spawn(async move {
            for _ in 0..n {
                let Some(d) = drain.next().await else { break };
                let id = d.message_id().unwrap_or_default().to_owned();
                let _ = tx.send((id, Instant::now()));
                tokio::spawn(d.ack());
            }
        });
        let relay = forward(relay_conn, qa, qb, n, prefetch);
        let paced = async {
            let publisher = Publisher::open(pub_conn).await?;
            let body = Bytes::from(vec![0x5a; size]);
            super::paced_latencies(
                n as usize,
                rate,
                |i| {
                    let (p, b, q) = (publisher.clone(), body.clone(), qa.clone());
                    let publish = async move {
                        p.publish_with_properties(Route::Queue(&q), props(i as u64), &b)
                            .await
                    };
                    Ok((format!("bench-{i}"), publish))
                },
                &mut arrivals,
                || Ok(()),
            )
            .await
        };
        let (relayed, latencies) = tokio::join!(relay, paced);
        relayed?;
        let latencies = latencies?;
        let _ = drain_task.await;
        Ok(RelayLatency {
            rate,
            messages: latencies.len(),
            p50_ms: super::quantile(&latencies, 0.50),
            p99_ms: super::quantile(&latencies, 0.99),
        })
    }
    .await;
    rig.close().await;
    result
}

/// Two fresh quorum queues A and B, and three connections (feeding, draining, relaying).
struct Rig {
    setup: lapin::Connection,
    ch: lapin::Channel,
    qa: String,
    qb: String,
    conns: [lapin::Connection; 3],
}

impl Rig {
    async fn open(url: &str, prefetch: u16, tag: &str) -> Result<Rig, BenchError> {
        let mut settings = AmqpSettings::new(url.to_owned(), "bench");
        settings.prefetch = prefetch;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (qa, qb) = (
            format!("bench_{tag}_a_{}", &id[..10]),
            format!("bench_{tag}_b_{}", &id[..10]),
        );
        let setup = connect(&settings).await?;
        let ch = setup
            .create_channel()
            .await
            .map_err(|e| BenchError::Broker(format!("channel: {e}")))?;
        declare_quorum_queue(&ch, &qa, FieldTable::default()).await?;
        declare_quorum_queue(&ch, &qb, FieldTable::default()).await?;
        let conns = [
            connect(&settings).await?,
            connect(&settings).await?,
            connect(&settings).await?,
        ];
        Ok(Rig {
            setup,
            ch,
            qa,
            qb,
            conns,
        })
    }

    /// Deletes both queues and closes every connection.
    async fn close(self) {
        for q in [&self.qa, &self.qb] {
            let _ = self
                .ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for c in std::iter::once(&self.setup).chain(self.conns.iter()) {
            let _ = c.close(200, "bench done".into()).await;
        }
    }
}

fn props(i: u64) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("bench-{i}").into())
        .with_content_type("application/pkcs7-mime; smime-type=signed-data".into())
}

/// Runs fill, relay and drain of `n` messages of `size` bytes against the broker at `url`.
pub async fn run(url: &str, n: u64, size: usize, prefetch: u16) -> Result<RelayReport, BenchError> {
    let rig = Rig::open(url, prefetch, "relay").await?;
    let [fill_conn, drain_conn, relay_conn] = &rig.conns;
    let result = relay(
        fill_conn, drain_conn, relay_conn, &rig.qa, &rig.qb, n, size, prefetch,
    )
    .await;
    rig.close().await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn relay(
    fill_conn: &lapin::Connection,
    drain_conn: &lapin::Connection,
    relay_conn: &lapin::Connection,
    qa: &str,
    qb: &str,
    n: u64,
    size: usize,
    prefetch: u16,
) -> Result<RelayReport, BenchError> {
    let body = Bytes::from(vec![0x5a; size]);

    // 1. fill, with a window of in-flight confirms.
    let publisher = Publisher::open(fill_conn).await?;
    let window = 1024;
    let started = Instant::now();
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    for i in 0..n {
        if set.len() >= window {
            if let Some(r) = set.join_next().await {
                r.map_err(BenchError::join)??;
            }
        }
        let (p, b, q) = (publisher.clone(), body.clone(), qa.to_owned());
        set.spawn(async move {
            p.publish_with_properties(Route::Queue(&q), props(i), &b)
                .await
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(BenchError::join)??;
    }
    let fill = started.elapsed();

    // 3. drain (started first so it is ready when the relay begins).
    let mut drain = Consumer::open(drain_conn, qb, prefetch).await?;
    let drain_task = tokio::spawn(async move {
        // Count arrivals; acks go out concurrently so the drain never paces the relay.
        let mut count = 0u64;
        let mut acks = JoinSet::new();
        while count < n {
            let Some(d) = drain.next().await else { break };
            count += 1;
            acks.spawn(d.ack());
        }
        let mut settled = 0u64;
        while let Some(r) = acks.join_next().await {
            settled += u64::from(r.map_err(BenchError::join)? == Settlement::Settled);
        }
        if settled != count {
            return Err(BenchError::Lost(format!(
                "drain settled {settled} of {count} acks"
            )));
        }
        Ok(count)
    });

    // 2. relay
    let started = Instant::now();
    let cpu = super::CpuMark::now();
    forward(relay_conn, qa, qb, n, prefetch).await?;
    let arrived = tokio::time::timeout(Duration::from_secs(120), drain_task)
        .await
        .map_err(|_| BenchError::Lost("drain timed out after 120 s".into()))?
        .map_err(BenchError::join)??;
    let relay = started.elapsed();
    let (broker_cpu_us, relay_cpu_us) = cpu.per_message_us(arrived as f64);
    Ok(RelayReport {
        broker_cpu_us,
        relay_cpu_us,
        messages: arrived,
        size,
        prefetch,
        fill_rate: n as f64 / fill.as_secs_f64(),
        relay_rate: arrived as f64 / relay.as_secs_f64(),
        relay_seconds: relay.as_secs_f64(),
    })
}
