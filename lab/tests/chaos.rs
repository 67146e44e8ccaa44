//! `helsemelding-lab chaos` scenarios as tests (issue 5): the real gateway binary, each scenario in its
//! own vhost and state directory, a confirmed sender streaming signed messages (delivered, E21,
//! E10), and drained recipient queues. Each must report lost = 0, no second AppRec and no inversion
//! (each sender's messages first arrive at each recipient in publish order); the figures are
//! printed. The gateway is `helsemelding-lab serve` (fault injection allowed). `broker-restart` and `alarm` disturb everybody on the shared broker: they are
//! `#[ignore]`d here (run them with `helsemelding-lab chaos --scenario broker-restart`).

mod support;

use helsemelding_lab::chaos::scenario::{run, Report, Scenario};
use support::{chaos_options, print_report};

fn assert_nothing_lost(r: &Report) {
    assert_nothing_lost_of(r, 200, 75);
}

/// `sent` messages confirmed into the intake, none lost, no second AppRec, nothing misplaced, no
/// inversion, `apprecs` AppRecs, and a graceful stop.
fn assert_nothing_lost_of(r: &Report, sent: usize, apprecs: usize) {
    let f = &r.figures;
    assert_eq!(f.sent, sent, "every message confirmed into the intake");
    assert_eq!(
        f.lost,
        0,
        "lost: {:?} (kept {})",
        f.problems,
        r.dir.display()
    );
    assert_eq!(
        f.second_apprecs, 0,
        "a second, different AppRec: {:?}",
        f.problems
    );
    assert_eq!(f.misplaced, 0, "misplaced: {:?}", f.problems);
    // Each sender's messages reach each recipient in the order they were published (a duplicate
    // with the same MsgId is allowed, an overtaking message is not).
    assert_eq!(f.inversions, 0, "inversions: {:?}", f.problems);
    assert_eq!(
        f.apprecs, apprecs,
        "one AppRec per rejected message (E21, E10)"
    );
    r.graceful_stop
        .as_ref()
        .expect("SIGTERM: exit 0, nothing left unacked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_five_times_loses_nothing() {
    let r = run(Scenario::Kill9, &chaos_options(200, 5, 0x5eed))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r);
    assert!(
        r.notes.iter().any(|n| n.contains("5 kill -9")),
        "{:?}",
        r.notes
    );
    // Every crash point of the protocol was hit (kill 2 between record and publish, kill 3 between
    // publish and commit, kill 4 between commit and ack; kills 1 and 5 from outside), and each left
    // its trace: nothing lost after the first, a republished copy with the same MsgId after the
    // second, and a redelivery acknowledged as a duplicate without sending anything again after the third.
    let k = r
        .kills
        .as_ref()
        .expect("kill9 reports where the kills fell");
    assert_eq!(
        (
            k.outside,
            k.record_publish,
            k.publish_commit,
            k.commit_ack,
            k.missed
        ),
        (2, 1, 1, 1, 0),
        "{k:?}"
    );
    assert!(
        r.figures.duplicated >= 1,
        "each publish→commit crash republishes: {:?}",
        r.figures
    );
    assert!(
        k.settled_redeliveries >= 1,
        "the commit→ack crash is redelivered and found settled: {k:?}"
    );
}

/// Issue 11: per-sender order across crashes. 1,500 messages, 1,125 of them from one GP (the
/// traffic mix has six GP messages in eight), interleaved with a hospital's and a nursing home's, and
/// four `kill -9` in the middle (one from outside, one at each crash point): every recipient still
/// sees each sender's messages in publish order; only duplicates with the same MsgId are allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_each_senders_order_over_a_thousand_messages() {
    let r = run(Scenario::Kill9, &chaos_options(1500, 4, 0x0de5))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost_of(&r, 1500, 1500 * 75 / 200);
    let k = r
        .kills
        .as_ref()
        .expect("kill9 reports where the kills fell");
    assert_eq!(
        (k.outside, k.record_publish, k.publish_commit, k.commit_ack),
        (1, 1, 1, 1),
        "{k:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_are_reopened_by_the_gateway_and_lose_nothing() {
    let r = run(Scenario::CloseConnection, &chaos_options(200, 5, 0x5eed))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("gateway connection(s) closed") && !n.starts_with("0 ")),
        "{:?}",
        r.notes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_recipient_queue_is_retried_with_backoff_and_delivered_once_drained() {
    let r = run(Scenario::RejectPublish, &chaos_options(200, 0, 0x5eed))
        .await
        .expect("scenario runs");
    print_report(&r);
    // Every refused copy was kept and delivered after the drain; every confirmed copy arrived
    // (a confirm matched to the wrong publish once made one look delivered: see
    // amqp_broker::confirms_and_nacks_resolve_the_publish_they_belong_to).
    assert_nothing_lost(&r);
    assert_eq!(
        r.figures.confirmed_not_arrived, 0,
        "{:?}",
        r.figures.problems
    );
    assert!(
        r.notes.iter().any(|n| n.contains("backed off and retried")),
        "the full queue must have refused publishes: {:?}",
        r.notes
    );
}

/// The gateway's own state disk fills up (a tmpfs under the state directory: this test needs root,
/// as CI has; skipped with the reason printed otherwise) while messages flow, and is freed 8 s later: the gateway holds what it has unacked,
/// says so, and carries on by itself — nothing lost, no second AppRec, a clean stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_holds_messages_and_recovers_by_itself() {
    if let Some(why) = helsemelding_lab::chaos::disk::SmallDisk::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let r = run(Scenario::DiskFull, &chaos_options(200, 0, 0x5eed))
        .await
        .expect("scenario runs (mount -t tmpfs needs root)");
    print_report(&r);
    assert_nothing_lost(&r);
    let note = r
        .notes
        .iter()
        .find(|n| n.starts_with("state disk filled"))
        .expect("the disk was filled");
    assert!(
        note.contains("the gateway met it") && note.contains("recovered by itself"),
        "{note}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared broker: run alone, e.g. helsemelding-lab chaos --scenario broker-restart"]
async fn broker_restarts_lose_nothing() {
    let r = run(Scenario::BrokerRestart, &chaos_options(200, 0, 0x5eed))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "sets memory and disk alarms on the shared broker: run alone, e.g. helsemelding-lab chaos --scenario alarm"]
async fn broker_alarms_lose_nothing() {
    let r = run(Scenario::Alarm, &chaos_options(200, 0, 0x5eed))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r);
}
