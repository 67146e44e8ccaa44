//! The delivery path's promises (DESIGN §3), against the real broker with an in-process gateway:
//!
//! - per-sender order: 1,000 messages from one GP (each to a nursing home with a copy to home
//!   care), interleaved with a hospital's notes to the same nursing home and the nursing home's
//!   notes to the GP, published back to back with confirms. At every recipient queue the MsgIds of
//!   each sender must come out in the order they were sent.
//! - a message in flight is visible: step 2 (`Routed`) has no flush of its own, but a message whose
//!   publishing takes long (its recipient queue refuses everything) shows as `Routed` in the store
//!   while it waits, and as `Delivered` once the queue takes it.

mod support;

use std::collections::HashMap;

use helsemelding::gateway::cli::Overrides;
use helsemelding::ids::{HerId, MsgId};
use support::gateway::Harness;

const GP: HerId = HerId(82001);
const HOSPITAL: HerId = HerId(80001);
const NURSING_HOME: HerId = HerId(81001);
const HOME_CARE: HerId = HerId(81002);

/// Positions where `got` (the MsgIds of one sender, in arrival order) breaks `sent` order: pairs of
/// neighbours that arrived in the opposite order of sending.
fn inversions(sent: &[String], got: &[String]) -> Vec<(String, String)> {
    let rank: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    got.windows(2)
        .filter(|w| rank[w[0].as_str()] > rank[w[1].as_str()])
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect()
}

#[test]
fn the_inversion_check_sees_a_swap_and_nothing_else() {
    let sent: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    assert!(inversions(&sent, &sent).is_empty());
    let swapped: Vec<String> = ["a", "c", "b", "d"].map(String::from).to_vec();
    assert_eq!(inversions(&sent, &swapped), vec![("c".into(), "b".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_senders_messages_reach_every_recipient_in_the_order_sent() {
    let h = Harness::start().await;
    let mut sent: HashMap<HerId, Vec<String>> = HashMap::new();
    let n = 1000;
    for i in 0..n {
        // Every GP message; a hospital note after every fourth, a nursing-home note after every fifth.
        let mut round = vec![(GP, "delivered/foresporsel-with-copy-to-home-care.xml")];
        if i % 4 == 0 {
            round.push((HOSPITAL, "delivered/notat-hospital-to-nursing-home.xml"));
        }
        if i % 5 == 0 {
            round.push((
                NURSING_HOME,
                "delivered/notat-nursing-home-to-gp-person.xml",
            ));
        }
        for (from, fixture) in round {
            let id = MsgId::random();
            sent.entry(from).or_default().push(id.as_str().to_owned());
            let o = Overrides {
                msg_id: Some(id),
                ..Overrides::default()
            };
            h.send_fixture_with(fixture, from, &o).await;
        }
    }
    let expect = [
        (NURSING_HOME, vec![GP, HOSPITAL], n + n / 4),
        (HOME_CARE, vec![GP], n),
        (GP, vec![NURSING_HOME], n / 5),
    ];
    for (queue_of, senders, count) in expect {
        let got = h.take(queue_of, count).await;
        for from in senders {
            let ids: Vec<String> = got
                .iter()
                .filter(|g| g.headers.from_her_id == from)
                .map(|g| g.headers.message_id.as_str().to_owned())
                .collect();
            let bad = inversions(&sent[&from], &ids);
            assert!(
                bad.is_empty(),
                "{}_async: {} of {from}'s {} messages overtaken, e.g. {:?}",
                queue_of,
                bad.len(),
                ids.len(),
                &bad[..bad.len().min(3)]
            );
            assert_eq!(ids.len(), sent[&from].len(), "{queue_of}_async from {from}");
        }
    }
    h.stop().await;
}

/// `rabbitmqctl` with `args`; panics with its output if it fails.
fn ctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_still_being_published_shows_as_routed_then_delivered() {
    use helsemelding::store::state::DeliveryState;
    let h = Harness::start().await;
    let fixture = "delivered/foresporsel-gp-to-nursing-home.xml";
    let filler = h.send_fixture(fixture, GP).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while h.vhost.queue_len("81001_async").await.ok().flatten() != Some(1) {
        assert!(
            std::time::Instant::now() < deadline,
            "the first message never arrived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The nursing home's queue is limited to the one message it holds, refusing more.
    ctl(&[
        "set_policy",
        "-p",
        h.vhost.name(),
        "--apply-to",
        "queues",
        "refuse-more",
        "^81001_async$",
        r#"{"max-length":1,"overflow":"reject-publish"}"#,
    ]);
    // A policy reaches a queue asynchronously: wait until the queue says it has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "-p", h.vhost.name(), "name", "policy"])
            .output()
            .expect("rabbitmqctl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        if text
            .lines()
            .any(|l| l.starts_with("81001_async") && l.contains("refuse-more"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "policy not applied: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Three more: a quorum queue refuses once it is *over* its limit, which it may or may not be
    // after the first of them; one of the three is held either way, and the lane keeps the rest
    // behind it.
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = MsgId::random();
        let o = Overrides {
            msg_id: Some(id.clone()),
            ..Overrides::default()
        };
        h.send_fixture_with(fixture, GP, &o).await;
        ids.push(id);
    }
    let state = |r: &helsemelding::store::MessageRecord| r.recipients[0].state;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    'held: loop {
        for id in &ids {
            let rec = h.gateway.record(GP, id).await.expect("store readable");
            if rec.as_ref().map(state) == Some(DeliveryState::Routed) {
                break 'held;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message in flight ever showed in the store"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The receiver reads its queue: room again, and the held messages follow in order.
    let got = h.take(NURSING_HOME, 4).await;
    let got: Vec<&MsgId> = got.iter().map(|g| &g.headers.message_id).collect();
    let mut expected = vec![&filler.message_id];
    expected.extend(ids.iter());
    assert_eq!(got, expected);
    for id in &ids {
        assert_eq!(
            state(&h.status(GP, id.as_str()).await),
            DeliveryState::Delivered
        );
    }
    h.stop().await;
}
