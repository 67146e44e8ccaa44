//! The AMQP transport against the real local RabbitMQ (127.0.0.1:5672), each test in its own
//! throw-away vhost (`TestVhost`), which is deleted afterwards.

use std::time::Duration;

use helsemelding::amqp::redrive::{redrive, REDRIVEN_HEADER};
use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::{
    connect, AmqpError, Consumer, ContentType, MessageHeaders, PublishError, Publisher, Route,
    SessionPlan, Settlement, Supervisor, Topology, DEAD_LETTER_QUEUE, EXCHANGE, INBOUND_QUEUE,
};
use helsemelding::ids::{HerId, MsgId};
use lapin::types::{AMQPValue, FieldTable};
use time::macros::datetime;

fn headers(n: u32) -> MessageHeaders {
    MessageHeaders::new(
        (HerId(81234), HerId(90000 + n)),
        "DIALOG_NOTAT",
        MsgId::random(),
        datetime!(2026-11-23 14:00:00 UTC),
        ContentType::SignedCms,
    )
}

const TIMEOUT: Duration = Duration::from_secs(20);

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn inbound() -> Route<'static> {
    Route::Exchange {
        exchange: EXCHANGE,
        routing_key: INBOUND_QUEUE,
    }
}

#[tokio::test]
async fn topology_is_idempotent_and_complete() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let parties = [HerId(81234), HerId(8888)];
    Topology::default().declare(&ch, &parties).await.unwrap();
    Topology::default().declare(&ch, &parties).await.unwrap();
    Topology::default()
        .ensure_party_queues(&ch, &[HerId(8888), HerId(777)])
        .await
        .unwrap();
    for q in [
        INBOUND_QUEUE,
        DEAD_LETTER_QUEUE,
        "81234_async",
        "81234_error",
        "8888_async",
        "777_error",
    ] {
        assert_eq!(vhost.queue_len(q).await.unwrap(), Some(0), "queue {q}");
    }
    conn.close(200, "bye".into()).await.unwrap();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn mismatched_queue_arguments_are_a_configuration_error_naming_queue_and_argument() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    // Someone created the intake as a plain quorum queue, without our dead-lettering.
    helsemelding::amqp::topology::declare_quorum_queue(&ch, INBOUND_QUEUE, FieldTable::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let err = Topology::default().declare(&ch, &[]).await.unwrap_err();
    match &err {
        AmqpError::QueueArgumentMismatch {
            queue, argument, ..
        } => {
            assert_eq!(queue, INBOUND_QUEUE);
            assert!(argument.starts_with("x-"), "{argument}");
        }
        other => panic!("expected QueueArgumentMismatch, got {other}"),
    }
    assert!(err.is_configuration());
    assert!(err.to_string().contains("gateway_inbound"), "{err}");
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn unknown_vhost_is_a_configuration_error() {
    let mut s = helsemelding::amqp::AmqpSettings::new(
        "amqp://guest:guest@127.0.0.1:5672/hm-no-such-vhost",
        "test",
    );
    s.heartbeat = Duration::from_secs(5);
    let err = connect(&s).await.unwrap_err();
    assert!(err.is_configuration(), "{err:?}");
}

#[tokio::test]
async fn publish_and_consume_round_trip_with_headers() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    Topology::default()
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let h = headers(1);
    let body = bytes::Bytes::from_static(b"\x30\x82 not really CMS");
    publisher.publish(inbound(), &h, &body).await.unwrap();
    // user_id is checked by RabbitMQ against the connection's user.
    let with_user = h.to_properties().unwrap().with_user_id("guest".into());
    publisher
        .publish_with_properties(inbound(), with_user, &body)
        .await
        .unwrap();

    let mut consumer = Consumer::open(&conn, INBOUND_QUEUE, 4).await.unwrap();
    let d = within("first delivery", consumer.next()).await.unwrap();
    assert_eq!(d.headers().unwrap(), h);
    assert_eq!(d.body(), &body);
    assert_eq!(d.user_id(), None);
    assert!(!d.redelivered());
    assert_eq!(d.message_id(), Some(h.message_id.as_str()));
    assert_eq!(d.properties().delivery_mode(), &Some(2));
    assert_eq!(d.ack().await, Settlement::Settled);
    let d = within("second delivery", consumer.next()).await.unwrap();
    assert_eq!(d.user_id(), Some("guest"));
    assert_eq!(d.ack().await, Settlement::Settled);
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn unroutable_publish_is_returned_not_success() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let err = publisher
        .publish(Route::Queue("90001_async"), &headers(1), b"x")
        .await
        .unwrap_err();
    match &err {
        PublishError::Returned {
            routing_key,
            reply_code,
            ..
        } => {
            assert_eq!(routing_key, "90001_async");
            assert_eq!(*reply_code, 312); // NO_ROUTE
        }
        other => panic!("expected Returned, got {other}"),
    }
    // The channel stays usable, and a routable publish next to it still succeeds.
    Topology::default()
        .ensure_party_queues(&conn.create_channel().await.unwrap(), &[HerId(90002)])
        .await
        .unwrap();
    publisher
        .publish(Route::Queue("90002_async"), &headers(2), b"y")
        .await
        .unwrap();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn many_pipelined_publishes_are_all_confirmed_and_stored() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    Topology::default()
        .declare(&conn.create_channel().await.unwrap(), &[HerId(81234)])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let body = bytes::Bytes::from(vec![7u8; 4096]);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let (p, b) = (publisher.clone(), body.clone());
        // One in ten goes nowhere: its failure must not be credited to a neighbour.
        let q = if i % 10 == 0 {
            "nobody_async"
        } else {
            "81234_async"
        };
        set.spawn(async move { (q, p.publish(Route::Queue(q), &headers(i), &b).await) });
    }
    let (mut ok, mut returned) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            ("81234_async", Ok(())) => ok += 1,
            ("nobody_async", Err(PublishError::Returned { .. })) => returned += 1,
            (q, other) => panic!("{q}: unexpected {other:?}"),
        }
    }
    assert_eq!((ok, returned), (180, 20));
    // Confirmed means stored: all 180 are on the queue now, without waiting.
    assert_eq!(vhost.queue_len("81234_async").await.unwrap(), Some(180));
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn ack_after_channel_closed_is_not_settled_and_message_comes_back() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    Topology::default()
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let h = headers(1);
    publisher.publish(inbound(), &h, b"body").await.unwrap();
    let mut consumer = Consumer::open(&conn, INBOUND_QUEUE, 4).await.unwrap();
    let d = within("delivery", consumer.next()).await.unwrap();
    consumer.close().await;
    let outcome = d.ack().await;
    assert!(
        matches!(outcome, Settlement::NotSettled { .. }),
        "{outcome:?}"
    );
    let mut again = Consumer::open(&conn, INBOUND_QUEUE, 4).await.unwrap();
    let d = within("redelivery", again.next()).await.unwrap();
    assert!(d.redelivered());
    assert_eq!(d.message_id(), Some(h.message_id.as_str()));
    assert_eq!(d.ack().await, Settlement::Settled);
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn poison_message_is_dead_lettered_after_the_delivery_limit() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let topology = Topology {
        delivery_limit: 1,
        ..Topology::default()
    };
    topology
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let h = headers(1);
    publisher.publish(inbound(), &h, b"poison").await.unwrap();
    let mut consumer = Consumer::open(&conn, INBOUND_QUEUE, 4).await.unwrap();
    for _ in 0..2 {
        let d = within("delivery", consumer.next()).await.unwrap();
        assert_eq!(d.reject(true).await, Settlement::Settled);
    }
    let mut dl = Consumer::open(&conn, DEAD_LETTER_QUEUE, 4).await.unwrap();
    let d = within("dead letter", dl.next()).await.unwrap();
    assert_eq!(d.message_id(), Some(h.message_id.as_str()));
    assert_eq!(d.headers().unwrap().from_her_id, HerId(81234));
    assert_eq!(d.ack().await, Settlement::Settled);
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn supervisor_reconnects_after_close_connection_and_unacked_message_is_redelivered() {
    let vhost = TestVhost::create().await.unwrap();
    let mut plan = SessionPlan::gateway(vec![HerId(81234)]);
    plan.backoff.initial = Duration::from_millis(50);
    let sup = Supervisor::spawn(vhost.settings("test"), plan);
    let handle = sup.handle.clone();
    let mut deliveries = sup.deliveries.expect("plan consumes the intake");

    let publisher = within("first session", handle.publisher()).await.unwrap();
    assert_eq!(publisher.generation(), 1);
    let h = headers(1);
    publisher
        .publish(inbound(), &h, b"in flight")
        .await
        .unwrap();
    let d = within("delivery", deliveries.next()).await.unwrap();
    assert_eq!(d.generation(), 1);

    let closed = vhost
        .close_connections("helsemelding test ", "test: cut connection")
        .await
        .unwrap();
    assert_eq!(
        closed, 2,
        "the session's publishing and consuming connections"
    );

    // The dead channel's delivery cannot be acked: reported, not pretended.
    let outcome = within("ack on dead channel", d.ack()).await;
    assert!(
        matches!(outcome, Settlement::NotSettled { .. }),
        "{outcome:?}"
    );

    // The consumer resumes on a new session and the unacked message comes back.
    let d = within("redelivery after reconnect", deliveries.next())
        .await
        .unwrap();
    assert_eq!(d.generation(), 2);
    assert!(d.redelivered());
    assert_eq!(d.message_id(), Some(h.message_id.as_str()));
    assert_eq!(d.ack().await, Settlement::Settled);

    let publisher = within("second session", handle.publisher()).await.unwrap();
    assert_eq!(publisher.generation(), 2);
    publisher
        .publish(Route::Queue("81234_async"), &headers(2), b"after")
        .await
        .unwrap();

    handle.shutdown();
    within("supervisor stop", sup.task).await.unwrap();
    assert!(within("no more deliveries", deliveries.next())
        .await
        .is_none());
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn redrive_moves_dead_letters_back_to_intake_with_count() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let topology = Topology::default();
    topology
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let h = headers(i);
        ids.push(h.message_id.clone());
        publisher
            .publish(Route::Queue(DEAD_LETTER_QUEUE), &h, b"dead")
            .await
            .unwrap();
    }
    let r = redrive(&conn, &topology, Some(2)).await.unwrap();
    assert_eq!(r.moved, 2);
    let r = redrive(&conn, &topology, None).await.unwrap();
    assert_eq!((r.moved, r.republished_not_acked), (3, 0));
    assert_eq!(redrive(&conn, &topology, None).await.unwrap().moved, 0);
    assert_eq!(vhost.queue_len(DEAD_LETTER_QUEUE).await.unwrap(), Some(0));
    assert_eq!(vhost.queue_len(INBOUND_QUEUE).await.unwrap(), Some(5));

    let mut consumer = Consumer::open(&conn, INBOUND_QUEUE, 8).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        let d = within("redriven", consumer.next()).await.unwrap();
        let t = d.properties().headers().clone().unwrap();
        assert_eq!(
            t.inner().get(REDRIVEN_HEADER),
            Some(&AMQPValue::LongLongInt(1))
        );
        let h = d.headers().unwrap(); // original headers kept
        seen.push(h.message_id.clone());
        assert_eq!(d.ack().await, Settlement::Settled);
    }
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn supervisor_reports_configuration_fault_and_keeps_retrying_slowly() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    helsemelding::amqp::topology::declare_quorum_queue(&ch, INBOUND_QUEUE, FieldTable::default())
        .await
        .unwrap();
    let mut plan = SessionPlan::gateway(vec![]);
    plan.backoff.configuration = Duration::from_millis(200);
    let sup = Supervisor::spawn(vhost.settings("test"), plan);
    let mut state = sup.handle.state();
    let seen = within("two failed attempts", async {
        loop {
            state.changed().await.unwrap();
            let s = state.borrow().clone();
            if let helsemelding::amqp::LinkState::Down { attempt, reason } = s {
                if attempt >= 2 {
                    return reason;
                }
            }
        }
    })
    .await;
    assert!(
        seen.contains("gateway_inbound") && seen.contains("different argument"),
        "{seen}"
    );
    assert!(sup.handle.current().is_none());
    sup.handle.shutdown();
    within("supervisor stop", sup.task).await.unwrap();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn redrive_command_prints_how_many_moved() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    Topology::default()
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    for i in 0..3 {
        publisher
            .publish(Route::Queue(DEAD_LETTER_QUEUE), &headers(i), b"dead")
            .await
            .unwrap();
    }
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["redrive", "--url", vhost.url(), "--limit", "2"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("moved 2 message(s) from gateway_dead_letter to gateway_inbound"),
        "{stdout}"
    );
    assert_eq!(vhost.queue_len(DEAD_LETTER_QUEUE).await.unwrap(), Some(1));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, "[gateway]\nher_id = 90000\n").unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(["redrive", "--config"])
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [amqp] table"));
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_a_configuration_error() {
    let s = helsemelding::amqp::AmqpSettings::new(
        "amqp://guest:not-the-password@127.0.0.1:5672/%2f",
        "test",
    );
    let err = connect(&s).await.unwrap_err();
    assert!(err.is_configuration(), "{err:?}");
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

/// Confirms and refusals land on the publish they belong to, with many publishes in flight on one
/// channel from several threads. lapin assigns a publish its delivery tag and queues its frames in
/// two steps; unless the two are one step, two publishes can reach the wire in the opposite order
/// of their tags, and the broker's nack for one then resolves the other (seen in the chaos
/// reject-publish scenario: a copy to a full queue "confirmed" and lost, the copy to an open queue
/// "nacked" and sent twice). A classic queue with `x-max-length = 0` and `reject-publish` refuses
/// every message, an open queue takes every one: each answer is known in advance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_and_nacks_resolve_the_publish_they_belong_to() {
    use lapin::options::QueueDeclareOptions;
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&helsemelding::amqp::AmqpSettings::new(
        vhost.url().to_owned(),
        "tags",
    ))
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    ch.queue_declare("refusing".into(), durable, args)
        .await
        .unwrap();
    ch.queue_declare("open".into(), durable, FieldTable::default())
        .await
        .unwrap();
    let p = Publisher::open(&conn).await.unwrap();
    let body = vec![b'x'; 64 * 1024];
    let n = 2000u32;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (p, body) = (p.clone(), body.clone());
        tasks.spawn(async move {
            let queue = if i % 2 == 0 { "open" } else { "refusing" };
            let props = lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(format!("m{i}").into());
            (
                queue,
                p.publish_with_properties(Route::Queue(queue), props, &body)
                    .await,
            )
        });
    }
    let mut wrong = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            ("open", Ok(())) | ("refusing", Err(PublishError::Nacked { .. })) => {}
            (q, other) => wrong.push(format!("{q}: {other:?}")),
        }
    }
    let kept = vhost.queue_len("open").await.unwrap().unwrap();
    let _ = conn.close(200, "done".into()).await;
    vhost.delete().await.unwrap();
    assert!(
        wrong.is_empty(),
        "{} of {n} publishes got another publish's answer, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(3)]
    );
    assert_eq!(kept, n / 2, "every confirmed message is in the open queue");
}

/// A supervisor consuming the intake with a byte budget of `budget`, sized for messages of up to
/// `largest` bytes, and a publisher on a connection of its own.
async fn budgeted(
    vhost: &TestVhost,
    prefetch: u16,
    budget: u64,
    largest: u64,
) -> (Supervisor, helsemelding::amqp::Deliveries, Publisher) {
    let mut settings = vhost.settings("test");
    settings.prefetch = prefetch;
    settings.max_inflight_bytes = budget;
    settings.max_message_bytes = largest;
    let mut sup = Supervisor::spawn(settings, SessionPlan::gateway(vec![]));
    let deliveries = sup.deliveries.take().expect("plan consumes the intake");
    within("session", sup.handle.session()).await.unwrap();
    let conn = connect(&vhost.settings("test-feed")).await.unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    (sup, deliveries, publisher)
}

/// Takes `n` deliveries and settles each in a task of its own a moment later (as the gateway's
/// pipeline does), so that without the budget several would be held at once. Returns the sizes
/// in arrival order and checks every delivery is fresh, held with its bytes, and acked; `check`
/// sees each delivery with what was held right after it was taken.
async fn take_and_settle(
    deliveries: &mut helsemelding::amqp::Deliveries,
    n: usize,
    check: impl Fn(&helsemelding::amqp::Delivery, helsemelding::amqp::Held),
) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut settling = tokio::task::JoinSet::new();
    for _ in 0..n {
        let d = within("budgeted delivery", deliveries.next())
            .await
            .unwrap();
        assert!(
            !d.redelivered(),
            "a window change must not requeue anything"
        );
        assert_eq!(
            d.budget_bytes(),
            (d.body().len() as u64).min(deliveries.budget_limit())
        );
        let held = deliveries.held();
        assert!(held.bytes <= deliveries.budget_limit(), "{held:?}");
        check(&d, held);
        sizes.push(d.body().len());
        settling.spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            d.ack().await
        });
    }
    while let Some(r) = settling.join_next().await {
        assert_eq!(r.unwrap(), Settlement::Settled);
    }
    sizes
}

#[tokio::test]
async fn a_stream_larger_than_the_byte_budget_passes_one_at_a_time() {
    let vhost = TestVhost::create().await.unwrap();
    // 300 kB budget, sized for 100 kB messages (window 3), but 200 kB ones come: the broker sends
    // up to 3 before the window shrinks to 1, and the budget lets the pipeline hold only one.
    let (sup, mut deliveries, publisher) = budgeted(&vhost, 16, 300_000, 100_000).await;
    assert_eq!(deliveries.window(), 3);
    let body = vec![0x42u8; 200_000];
    for i in 0..12 {
        publisher
            .publish(inbound(), &headers(i), &body)
            .await
            .unwrap();
    }
    let sizes = take_and_settle(&mut deliveries, 12, |_, _| {}).await;
    assert_eq!(sizes, vec![200_000; 12]);
    let held = deliveries.held();
    assert_eq!(
        held.peak_permits, 1,
        "one 200 kB message at a time: {held:?}"
    );
    assert_eq!(held.peak_bytes, 200_000);
    assert_eq!((held.bytes, held.permits), (0, 0), "all given back");
    assert_eq!(deliveries.window(), 1, "300 kB / 200 kB");
    assert_eq!(vhost.queue_len(INBOUND_QUEUE).await.unwrap(), Some(0));
    sup.handle.shutdown();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn a_message_larger_than_the_whole_budget_passes_alone() {
    let vhost = TestVhost::create().await.unwrap();
    // Budget 100 kB; 250 kB messages between small ones.
    let (sup, mut deliveries, publisher) = budgeted(&vhost, 16, 100_000, 100_000).await;
    let (big, small) = (vec![1u8; 250_000], vec![2u8; 1_000]);
    let mut expected = Vec::new();
    for i in 0..10 {
        let body = if i % 2 == 0 { &big } else { &small };
        expected.push(body.len());
        publisher
            .publish(inbound(), &headers(i), body)
            .await
            .unwrap();
    }
    // A big one taken while a small one is still held would break the budget: it waits.
    let sizes = take_and_settle(&mut deliveries, 10, |d, held| {
        if d.body().len() > 100_000 {
            assert_eq!(
                held.permits, 1,
                "an oversized message is held alone: {held:?}"
            );
            assert_eq!(d.budget_bytes(), 100_000, "charged the whole budget");
        }
    })
    .await;
    assert_eq!(sizes, expected, "queue order kept across window changes");
    assert_eq!(deliveries.held().peak_bytes, 100_000);
    sup.handle.shutdown();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn the_window_follows_the_sizes_and_prefetch_still_bounds_the_count() {
    let vhost = TestVhost::create().await.unwrap();
    // Budget 1 MB for messages of up to 1 MB: the first window is 1; small messages open it
    // up to the prefetch of 8, never further.
    let (sup, mut deliveries, publisher) = budgeted(&vhost, 8, 1_000_000, 1_000_000).await;
    assert_eq!(deliveries.window(), 1);
    for i in 0..40 {
        publisher
            .publish(inbound(), &headers(i), b"small")
            .await
            .unwrap();
    }
    take_and_settle(&mut deliveries, 20, |_, _| {}).await;
    assert_eq!(deliveries.window(), 8, "grown to the prefetch, not beyond");
    // Hold deliveries without settling: the broker sends no more than the window.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(within("delivery", deliveries.next()).await.unwrap());
    }
    assert_eq!(deliveries.held().permits, 8);
    assert_eq!(
        vhost.queue_len(INBOUND_QUEUE).await.unwrap(),
        Some(12),
        "40 - 20 settled - 8 held in the window"
    );
    // A large message shrinks the window at once: 1 MB / 400 kB = 2.
    for d in held.drain(..) {
        assert_eq!(d.ack().await, Settlement::Settled);
    }
    let rest = take_and_settle(&mut deliveries, 12, |_, _| {}).await;
    assert_eq!(rest.len(), 12);
    publisher
        .publish(inbound(), &headers(99), &vec![3u8; 400_000])
        .await
        .unwrap();
    let d = within("large delivery", deliveries.next()).await.unwrap();
    assert_eq!(d.body().len(), 400_000);
    assert_eq!(deliveries.window(), 2);
    assert_eq!(d.ack().await, Settlement::Settled);
    sup.handle.shutdown();
    vhost.delete().await.unwrap();
}

/// A message from `sender` (the partition exchange hashes its `fromHerId`).
fn from_sender(sender: u32, n: u32) -> MessageHeaders {
    MessageHeaders::new(
        (HerId(sender), HerId(90000 + n)),
        "DIALOG_NOTAT",
        MsgId::random(),
        datetime!(2026-11-23 14:00:00 UTC),
        ContentType::SignedCms,
    )
}

fn partitioned(k: u16) -> Topology {
    Topology {
        partitions: k,
        ..Topology::default()
    }
}

/// Messages of `n` per sender from `senders`, published as senders do: to `helsemelding` with key
/// `gateway_inbound`. Returns the MsgIds per sender, in sending order.
async fn publish_from(
    publisher: &Publisher,
    senders: &[u32],
    n: u32,
) -> std::collections::HashMap<u32, Vec<String>> {
    let mut sent: std::collections::HashMap<u32, Vec<String>> = Default::default();
    for i in 0..n {
        for s in senders {
            let h = from_sender(*s, i);
            publisher.publish(inbound(), &h, b"x").await.unwrap();
            sent.entry(*s).or_default().push(h.message_id.to_string());
        }
    }
    sent
}

#[tokio::test]
async fn partitions_keep_every_sender_in_one_queue_and_in_order() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    let topology = partitioned(4);
    let ch = conn.create_channel().await.unwrap();
    topology.declare(&ch, &[]).await.unwrap();
    // Idempotent, and the old route (exchange → gateway_inbound) is gone: nothing lands twice.
    topology.declare(&ch, &[]).await.unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let senders: Vec<u32> = (0..24).map(|i| 81000 + i * 7).collect();
    let sent = publish_from(&publisher, &senders, 5).await;
    // A message without fromHerId is still routed (to one fixed partition), not dropped.
    let mut bare = lapin::BasicProperties::default().with_message_id("no-sender".into());
    bare = bare.with_headers(FieldTable::default());
    let raw = conn.create_channel().await.unwrap();
    raw.confirm_select(Default::default()).await.unwrap();
    let confirm = raw
        .basic_publish(
            EXCHANGE.into(),
            INBOUND_QUEUE.into(),
            lapin::options::BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bare",
            bare,
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");

    let queues = topology.intake_queues();
    assert_eq!(queues.len(), 5);
    assert_eq!(queues[0], INBOUND_QUEUE);
    assert_eq!(queues[3], "gateway_inbound.3");
    let mut seen: std::collections::HashMap<u32, (String, Vec<String>)> = Default::default();
    let mut used = std::collections::HashSet::new();
    let mut bare_found = 0;
    let total = senders.len() as u32 * 5 + 1;
    let mut got = 0;
    for q in &queues {
        let len = within("queue length", vhost.queue_len(q))
            .await
            .unwrap()
            .unwrap();
        got += len;
        if len == 0 {
            continue;
        }
        used.insert(q.clone());
        let mut c = Consumer::open(&conn, q, 64).await.unwrap();
        for _ in 0..len {
            let d = within("delivery", c.next()).await.unwrap();
            if d.message_id() == Some("no-sender") {
                bare_found += 1;
            } else {
                let h = d.headers().unwrap();
                let (queue, ids) = seen
                    .entry(h.from_her_id.0)
                    .or_insert_with(|| (q.clone(), Vec::new()));
                assert_eq!(
                    queue, q,
                    "sender {} split over two partitions",
                    h.from_her_id
                );
                ids.push(h.message_id.to_string());
            }
            assert_eq!(d.ack().await, Settlement::Settled);
        }
        c.close().await;
    }
    assert_eq!(got, total, "every message in exactly one intake queue");
    assert_eq!(bare_found, 1);
    // Nothing reaches partition 0 through the exchange: it is the AMQP 1.0 senders' queue.
    assert!(!used.contains(INBOUND_QUEUE), "{used:?}");
    assert!(
        used.len() >= 3,
        "24 senders spread over several partitions: {used:?}"
    );
    for s in &senders {
        assert_eq!(seen[s].1, sent[s], "sender {s}: order within its partition");
    }
    conn.close(200, "bye".into()).await.unwrap();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn one_instance_is_active_per_partition_and_a_waiting_one_takes_over() {
    let vhost = TestVhost::create().await.unwrap();
    let setup = connect(&vhost.settings("test")).await.unwrap();
    let mut topology = partitioned(3);
    topology
        .declare(&setup.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    // Instance A prefers 0 and 1, B prefers 2 and 3; both start together.
    topology.prefer_partitions = Some(vec![0, 1]);
    let a_conn = connect(&vhost.settings("a")).await.unwrap();
    let mut a = Consumer::open_partitioned(&a_conn, &topology.preferred(), 8)
        .await
        .unwrap();
    topology.prefer_partitions = Some(vec![2, 3]);
    let b_conn = connect(&vhost.settings("b")).await.unwrap();
    let mut b = Consumer::open_partitioned(&b_conn, &topology.preferred(), 8)
        .await
        .unwrap();
    // Past the standby delay both are subscribed everywhere; each is active on its own share.
    tokio::time::sleep(helsemelding::amqp::consumer::STANDBY_DELAY + Duration::from_secs(1)).await;
    let publisher = Publisher::open(&setup).await.unwrap();
    for p in 0..=3u16 {
        let h = headers(u32::from(p));
        publisher
            .publish(
                Route::Queue(&topology.partition_queue(p)),
                &h,
                format!("{p}").as_bytes(),
            )
            .await
            .unwrap();
    }
    let mut on_a = Vec::new();
    for _ in 0..2 {
        let d = within("A's delivery", a.next()).await.unwrap();
        on_a.push(String::from_utf8(d.body().to_vec()).unwrap());
        assert_eq!(d.ack().await, Settlement::Settled);
    }
    let mut on_b = Vec::new();
    for _ in 0..2 {
        let d = within("B's delivery", b.next()).await.unwrap();
        on_b.push(String::from_utf8(d.body().to_vec()).unwrap());
        assert_eq!(d.ack().await, Settlement::Settled);
    }
    on_a.sort();
    on_b.sort();
    assert_eq!(
        (on_a, on_b),
        (
            vec!["0".to_owned(), "1".into()],
            vec!["2".to_owned(), "3".into()]
        )
    );

    // A holds a message of partition 1 unacked and dies: B gets it (redelivered) and the rest.
    let h = headers(10);
    publisher
        .publish(Route::Queue(&topology.partition_queue(1)), &h, b"held")
        .await
        .unwrap();
    let held = within("A's held delivery", a.next()).await.unwrap();
    assert_eq!(held.message_id(), Some(h.message_id.as_str()));
    a_conn.close(320, "instance died".into()).await.unwrap();
    let again = within("B takes over partition 1", b.next()).await.unwrap();
    assert_eq!(again.message_id(), Some(h.message_id.as_str()));
    assert!(again.redelivered());
    assert_eq!(again.ack().await, Settlement::Settled);
    assert!(
        !held.ack().await.is_settled(),
        "a dead instance's ack is not settled"
    );
    b_conn.close(200, "bye".into()).await.unwrap();
    setup.close(200, "bye".into()).await.unwrap();
    vhost.delete().await.unwrap();
}

#[tokio::test]
async fn turning_partitions_on_for_an_existing_intake_names_the_argument() {
    let vhost = TestVhost::create().await.unwrap();
    let conn = connect(&vhost.settings("test")).await.unwrap();
    Topology::default()
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap();
    let err = partitioned(2)
        .declare(&conn.create_channel().await.unwrap(), &[])
        .await
        .unwrap_err();
    match &err {
        AmqpError::QueueArgumentMismatch {
            queue, argument, ..
        } => {
            assert_eq!(queue, INBOUND_QUEUE);
            assert_eq!(argument, "x-single-active-consumer");
        }
        other => panic!("expected QueueArgumentMismatch, got {other:?}"),
    }
    assert!(err.is_configuration());
    conn.close(200, "bye".into()).await.unwrap();
    vhost.delete().await.unwrap();
}
