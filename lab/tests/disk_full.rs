//! The delivery store on a disk that fills up (moved here from src/store/tests.rs with the tmpfs
//! helper it needs, `helsemelding_lab::chaos::disk`): commits and reads wait, nothing fails, and
//! everything lands once there is room. Needs root (mount -t tmpfs); skipped with the reason
//! printed otherwise.

use std::sync::Arc;

use helsemelding::address::RecipientRole::{Copy as Cop, Primary as Prim};
use helsemelding::ids::{HerId, MsgId, Timestamp};
use helsemelding::store::{
    Change, DeliveryState, DeliveryStore, Event, MessageRecord, StoreHandle, StoreHealth,
    Transition,
};
use helsemelding_lab::chaos::disk::SmallDisk;
use time::macros::datetime;

const T0: Timestamp = datetime!(2026-01-05 10:00 UTC);

fn msg(n: u32) -> MsgId {
    MsgId::new(format!("00000000-0000-4000-8000-{n:012}"))
}

fn apply(sender: u32, n: u32, recipient: usize, event: Event, at: Timestamp) -> Change {
    Change::Apply(Transition {
        sender: HerId(sender),
        msg_id: msg(n),
        recipient,
        event,
        at,
        apprec_id: None,
        codes: vec![],
    })
}

/// Create + route + deliver both recipients: what the pipeline commits for a good message.
fn delivered(sender: u32, n: u32, at: Timestamp) -> Vec<Change> {
    vec![
        Change::Create(MessageRecord::new(
            HerId(sender),
            msg(n),
            "DIALOG_FORESPORSEL",
            format!("synthetic body {n}").as_bytes(),
            at,
            Some(at - time::Duration::minutes(1)),
            [(Some(HerId(1001)), Prim), (Some(HerId(2001)), Cop)],
        )),
        apply(sender, n, 0, Event::Routed, at),
        apply(sender, n, 1, Event::Routed, at),
        apply(sender, n, 0, Event::Delivered, at),
        apply(sender, n, 1, Event::Delivered, at),
    ]
}

/// A full disk under the store (a 2 MiB tmpfs, filled by a filler file; needs root, as CI has; skipped with the reason printed otherwise):
/// commits and reads wait instead of failing, the handle reports the store unavailable with the
/// reason, and once the disk has room again every waiting commit lands, durably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_commits_wait_and_they_land_once_there_is_room() {
    if let Some(why) = SmallDisk::unavailable() {
        println!("skipped: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk =
        SmallDisk::mount(&dir.path().join("state"), 2 << 20).expect("mount -t tmpfs (needs root)");
    let state = dir.path().join("state");
    let handle = Arc::new(StoreHandle::start(DeliveryStore::open(&state).unwrap(), 64).unwrap());
    handle.commit(delivered(3000, 0, T0)).await.unwrap();
    let mut health = handle.health();
    disk.fill().unwrap();
    // Commit until one meets the full disk (redb needs new pages now and then, not on every commit).
    let mut waiting = tokio::task::JoinSet::new();
    let mut n = 1u32;
    let down = loop {
        let h = Arc::clone(&handle);
        waiting.spawn(async move { h.commit(delivered(3000, n, T0)).await });
        n += 1;
        tokio::select! {
            r = health.wait_for(|h| matches!(h, StoreHealth::Unavailable { .. })) => break r.unwrap().clone(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
        }
        assert!(n < 5000, "2 MiB full, yet 5000 commits needed no room");
    };
    let StoreHealth::Unavailable { reason, .. } = down else {
        unreachable!()
    };
    assert!(
        reason.to_lowercase().contains("space") || reason.contains("I/O"),
        "{reason}"
    );
    // Reads wait too (the database is being reopened), and nothing is answered with an error.
    let h = Arc::clone(&handle);
    let read = tokio::spawn(async move { h.get(HerId(3000), msg(0)).await });
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    while let Some(r) = waiting.try_join_next() {
        r.unwrap()
            .expect("no commit may fail while the disk is full");
    }
    assert!(
        !read.is_finished(),
        "a read waits while the store is reopened"
    );
    assert!(
        matches!(*handle.health().borrow(), StoreHealth::Unavailable { .. }),
        "still full"
    );
    disk.free().unwrap();
    assert!(
        read.await.unwrap().unwrap().is_some(),
        "the read is answered after the outage"
    );
    while let Some(r) = waiting.join_next().await {
        r.unwrap().expect("lands once the disk has room");
    }
    health
        .wait_for(|h| *h == StoreHealth::Available)
        .await
        .unwrap();
    let handle = Arc::try_unwrap(handle).ok().expect("the only handle");
    handle.shutdown().await;
    let store = DeliveryStore::open(&state).unwrap();
    for i in 0..n {
        let rec = store
            .get(HerId(3000), &msg(i))
            .unwrap()
            .expect("durable after the outage");
        assert!(rec
            .recipients
            .iter()
            .all(|r| r.state == DeliveryState::Delivered));
    }
    drop(store);
    drop(disk);
}
