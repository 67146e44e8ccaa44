//! The gateway on the PostgreSQL delivery store (`[store] backend = "postgres"`, DESIGN §6), against
//! the real local RabbitMQ and PostgreSQL: two gateways (each in its own vhost) share one database
//! of the test's own. A message routed by one is recorded where the other sees it; the same
//! message arriving at the other is a duplicate there; only the gateway holding the periodic-work
//! lease marks it overdue and prunes, so it is reported once.

mod support;

use std::time::Duration;

use helsemelding::config::StoreBackend;
use helsemelding::gateway::cli::Overrides;
use helsemelding::gateway::routing_log::Outcome;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::store::state::DeliveryState;
use support::gateway::*;
use support::postgres::ScratchDb;

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_state_and_report_overdue_once() {
    let db = ScratchDb::create();
    let backend = StoreBackend::Postgres {
        url: db.url.clone(),
    };
    let on_pg = |b: StoreBackend| {
        move |s: &mut helsemelding::gateway::server::Settings| s.store_backend = b
    };
    let a = Harness::start_with(None, on_pg(backend.clone())).await;
    // `a` takes the periodic-work lease before `b` exists (every pass asks for it).
    a.housekeep().await;
    let b = Harness::start_with(None, on_pg(backend)).await;

    // Generated 100 hours ago: overdue at the first sweep after its delivery.
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    let key = format!("parties/{GP}-sign");
    let now = time::OffsetDateTime::now_utc();
    let old = with_gen_date(
        &fixture_with_msg_id(file, MsgId::random().as_str()),
        now - time::Duration::hours(100),
    );
    let sent = a
        .send_xml_signed_by(&old, &key, &Overrides::default(), None)
        .await;
    let id = sent.message_id.as_str();
    a.take(NURSING_HOME, 1).await;
    a.settle().await;
    // Recorded in the shared store: `b` sees it.
    assert_eq!(
        b.status(GP, id).await.recipients[0].state,
        DeliveryState::Delivered
    );

    // What `b`'s operator console reads (its message and overdue pages go through the gateway's
    // own handle, not the redb file): the record `a` wrote, and the recipient waiting past the timeout.
    let reads = b.gateway.store_reads();
    let found = reads.find(MsgId::new(id)).await.expect("console find");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].recipients[0].state, DeliveryState::Delivered);
    let waiting = reads
        .overdue(now, time::Duration::hours(72))
        .await
        .expect("console overdue");
    assert!(
        waiting.iter().any(|o| o.msg_id.as_str() == id),
        "the console's overdue page lists it: {waiting:?}"
    );

    // `b` has no lease: its pass leaves the message alone.
    b.housekeep().await;
    assert_eq!(b.gateway.metrics().outcome(Outcome::Overdue), 0);
    assert_eq!(
        a.status(GP, id).await.recipients[0].state,
        DeliveryState::Delivered
    );
    a.housekeep().await;
    assert_eq!(a.gateway.metrics().outcome(Outcome::Overdue), 1);
    assert_eq!(
        b.status(GP, id).await.recipients[0].state,
        DeliveryState::Overdue
    );
    b.housekeep().await;
    a.housekeep().await;
    assert_eq!(
        a.gateway.metrics().outcome(Outcome::Overdue)
            + b.gateway.metrics().outcome(Outcome::Overdue),
        1,
        "reported once across both gateways"
    );

    // The same message at the other gateway is a duplicate there: not delivered again.
    b.send_xml_signed_by(&old, &key, &Overrides::default(), None)
        .await;
    b.wait_for(|m| m.outcome(Outcome::Duplicate) >= 1).await;
    b.assert_empty(NURSING_HOME).await;
    // And at the first one (the same envelope again).
    a.resend(&sent.message_id).await;
    a.wait_for(|m| m.outcome(Outcome::Duplicate) >= 1).await;
    a.assert_empty(NURSING_HOME).await;

    // Past retention the lease holder prunes it, once.
    a.advance(Duration::from_secs(31 * 24 * 3600));
    b.advance(Duration::from_secs(31 * 24 * 3600));
    b.housekeep().await;
    a.housekeep().await;
    let pruned = |h: &Harness| {
        h.gateway
            .metrics()
            .pruned
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!((pruned(&a), pruned(&b)), (1, 0));
    assert_eq!(
        a.gateway
            .metrics()
            .store_records
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    a.stop().await;
    b.stop().await;
    drop(db);
}

/// Issue 14 item 2 at the gateway: two instances on one vhost and one database, the intake in
/// partitions. The instance that subscribed first is active; when it stops, the waiting one
/// takes every partition over and the traffic carries on, each message delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_intake_fails_over_to_the_waiting_instance() {
    let db = ScratchDb::create();
    let backend = StoreBackend::Postgres {
        url: db.url.clone(),
    };
    let partitioned = |b: StoreBackend, prefer: Option<Vec<u16>>| {
        move |s: &mut helsemelding::gateway::server::Settings| {
            s.store_backend = b;
            s.topology.partitions = 2;
            s.topology.prefer_partitions = prefer;
        }
    };
    // The harness's own instance is a standby everywhere (it subscribes after the standby
    // delay); `active` subscribes at once, so the broker makes it the active one.
    let standby = Harness::start_with(None, partitioned(backend.clone(), Some(vec![]))).await;
    let active = standby
        .start_instance("active", partitioned(backend, None))
        .await;
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    for _ in 0..3 {
        let (xml, o) = fresh_fixture(file);
        standby
            .send_xml_signed_by(&xml, &format!("parties/{GP}-sign"), &o, None)
            .await;
    }
    standby.take(NURSING_HOME, 3).await;
    let delivered =
        |g: &helsemelding::gateway::server::Gateway| g.metrics().outcome(Outcome::Delivered);
    let wait = std::time::Instant::now() + Duration::from_secs(30);
    while delivered(&active) < 3 {
        assert!(
            std::time::Instant::now() < wait,
            "the active instance routes them"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        delivered(&standby.gateway),
        0,
        "one instance active per partition"
    );

    // The active instance stops; the standby takes over and nothing is delivered twice.
    active.shutdown().await;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let (xml, o) = fresh_fixture(file);
        sent.push(
            standby
                .send_xml_signed_by(&xml, &format!("parties/{GP}-sign"), &o, None)
                .await
                .message_id
                .to_string(),
        );
    }
    let got = standby.take(NURSING_HOME, 3).await;
    let mut ids: Vec<String> = got
        .iter()
        .map(|g| g.headers.message_id.to_string())
        .collect();
    ids.sort();
    sent.sort();
    assert_eq!(ids, sent);
    // (Not `settle`/`status`: they count every publish as this instance's, and half were not.)
    standby
        .wait_for(|m| m.outcome(Outcome::Delivered) >= 3)
        .await;
    assert_eq!(delivered(&standby.gateway), 3);
    let q = format!("{NURSING_HOME}_async");
    assert_eq!(
        standby.vhost.queue_len(&q).await.unwrap(),
        Some(0),
        "no second copy"
    );
    for id in &sent {
        let record = standby
            .gateway
            .record(GP, &helsemelding::ids::MsgId::new(id))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no record of {id}"));
        assert_eq!(record.recipients[0].state, DeliveryState::Delivered);
    }
    standby.stop().await;
    drop(db);
}
