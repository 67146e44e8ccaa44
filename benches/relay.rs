//! Baseline for the transport's throughput: a bare pass-through relay over the local RabbitMQ,
//! built only from `helsemelding::amqp` so it measures that API.
//!
//! 1. fill: a publisher with pipelined confirms puts N persistent 4 KB messages on quorum queue A;
//! 2. relay: a consumer (prefetch P) takes each from A, republishes it persistent with a confirm
//!    to quorum queue B, then acks it on A (the gateway's order of effects, DESIGN §3);
//! 3. drain: a consumer counts arrivals on B (and acks them).
//!
//! Prints fill and relay rates in messages/s. Queues get unique names and are deleted at the end.
//! `cargo bench --bench relay -- [N] [PREFETCH]` (defaults 20000, 256);
//! `HELSEMELDING_BENCH_AMQP_URL` overrides `amqp://guest:guest@127.0.0.1:5672/%2f`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use helsemelding::amqp::topology::declare_quorum_queue;
use helsemelding::amqp::{connect, AmqpSettings, Consumer, PublishError, Publisher, Route, Settlement};
use lapin::options::QueueDeleteOptions;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use tokio::task::JoinSet;

fn props(i: u64) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(format!("bench-{i}").into())
        .with_content_type("application/pkcs7-mime; smime-type=signed-data".into())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let prefetch: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let url = std::env::var("HELSEMELDING_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let mut settings = AmqpSettings::new(url, "bench");
    settings.prefetch = prefetch;

    let id = uuid::Uuid::new_v4().simple().to_string();
    let (qa, qb) = (format!("bench_relay_a_{}", &id[..10]), format!("bench_relay_b_{}", &id[..10]));
    let setup = connect(&settings).await.expect("connect");
    let ch = setup.create_channel().await.expect("channel");
    declare_quorum_queue(&ch, &qa, FieldTable::default()).await.expect("declare A");
    declare_quorum_queue(&ch, &qb, FieldTable::default()).await.expect("declare B");

    let body = Bytes::from(vec![0x5a; 4096]);

    // 1. fill, with a window of in-flight confirms.
    let fill_conn = connect(&settings).await.expect("connect fill");
    let publisher = Publisher::open(&fill_conn).await.expect("publisher");
    let window = 1024;
    let started = Instant::now();
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    for i in 0..n {
        if set.len() >= window {
            set.join_next().await.expect("task").expect("join").expect("publish");
        }
        let (p, b, q) = (publisher.clone(), body.clone(), qa.clone());
        set.spawn(async move { p.publish_with_properties(Route::Queue(&q), props(i), &b).await });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join").expect("publish");
    }
    let fill = started.elapsed();

    // 3. drain (started first so it is ready when the relay begins).
    let drain_conn = connect(&settings).await.expect("connect drain");
    let mut drain = Consumer::open(&drain_conn, &qb, prefetch).await.expect("drain consumer");
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
            settled += u64::from(r.expect("join") == Settlement::Settled);
        }
        assert_eq!(settled, count, "drain acks");
        count
    });

    // 2. relay: each delivery republished with a confirm, then acked; up to `prefetch` at once.
    let relay_conn = connect(&settings).await.expect("connect relay");
    let mut source = Consumer::open(&relay_conn, &qa, prefetch).await.expect("relay consumer");
    let out = Publisher::open(&relay_conn).await.expect("relay publisher");
    let started = Instant::now();
    let mut set = JoinSet::new();
    let mut taken = 0u64;
    while taken < n {
        let Some(d) = source.next().await else { panic!("relay consumer ended after {taken}") };
        taken += 1;
        while set.len() >= usize::from(prefetch) {
            set.join_next().await.expect("task").expect("join");
        }
        let (p, q) = (out.clone(), qb.clone());
        set.spawn(async move {
            p.publish_with_properties(Route::Queue(&q), d.properties().clone(), d.body()).await.expect("relay publish");
            assert_eq!(d.ack().await, Settlement::Settled);
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("join");
    }
    let arrived = tokio::time::timeout(Duration::from_secs(120), drain_task).await.expect("drain timed out").expect("join");
    let relay = started.elapsed();

    println!("relay bench: {n} persistent 4 KB messages, quorum queues, prefetch {prefetch}");
    println!("  fill  (pipelined confirms): {:>8.0} msg/s  ({:.2} s)", n as f64 / fill.as_secs_f64(), fill.as_secs_f64());
    println!(
        "  relay (consume -> publish+confirm -> ack, drained): {:>8.0} msg/s  ({:.2} s, {arrived} arrived)",
        arrived as f64 / relay.as_secs_f64(),
        relay.as_secs_f64()
    );

    for q in [&qa, &qb] {
        let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    for c in [&setup, &fill_conn, &drain_conn, &relay_conn] {
        let _ = c.close(200, "bench done".into()).await;
    }
}
