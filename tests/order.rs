//! Per-sender order (DESIGN §3, issue 11): messages from one sender reach every recipient in the
//! order the broker gave them to the gateway, while other senders' messages flow between them.
//!
//! 1,000 messages from one GP (each to a nursing home with a copy to home care), interleaved with a
//! hospital's notes to the same nursing home and the nursing home's notes to the GP, published back
//! to back with confirms through the real broker to an in-process gateway. At every recipient queue
//! the MsgIds of each sender must come out in the order they were sent.

mod gateway_support;

use std::collections::HashMap;

use gateway_support::Harness;
use helsemelding::gateway::cli::Overrides;
use helsemelding::ids::{HerId, MsgId};

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
    let mut send = |from: HerId, id: MsgId| {
        sent.entry(from).or_default().push(id.as_str().to_owned());
        id
    };
    let n = 1000;
    for i in 0..n {
        let id = send(GP, MsgId::random());
        h.send_fixture_with(
            "delivered/foresporsel-with-copy-to-home-care.xml",
            GP,
            &Overrides {
                msg_id: Some(id),
                ..Overrides::default()
            },
        )
        .await;
        if i % 4 == 0 {
            let id = send(HOSPITAL, MsgId::random());
            h.send_fixture_with(
                "delivered/notat-hospital-to-nursing-home.xml",
                HOSPITAL,
                &Overrides {
                    msg_id: Some(id),
                    ..Overrides::default()
                },
            )
            .await;
        }
        if i % 5 == 0 {
            let id = send(NURSING_HOME, MsgId::random());
            h.send_fixture_with(
                "delivered/notat-nursing-home-to-gp-person.xml",
                NURSING_HOME,
                &Overrides {
                    msg_id: Some(id),
                    ..Overrides::default()
                },
            )
            .await;
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
