//! Crash safety of the delivery store: a child process (this test binary, re-run with an env flag)
//! commits batches through the group-commit thread and reports each commit as it is acknowledged;
//! the parent kills it with SIGKILL mid-stream and reopens the store. Every commit the child saw
//! acknowledged must be there, and no batch may be half there (DESIGN §3: "a crash anywhere means
//! redelivery; nothing is ever lost").

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

mod support;

use helsemelding::store::{DeliveryState, DeliveryStore, StoreHandle};
use support::store::{delivered_batch, msg, SENDER};

const CHILD_DIR: &str = "HELSEMELDING_STORE_CRASH_CHILD_DIR";

/// Runs only inside the child process; a no-op in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let handle =
            Arc::new(StoreHandle::start(DeliveryStore::open(dir.as_ref()).unwrap(), 64).unwrap());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // Eight concurrent committers, so group commits are in flight when the kill comes.
        for w in 0..8u32 {
            let (h, tx) = (Arc::clone(&handle), tx.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    let n = i * 8 + w;
                    h.commit(delivered_batch(n)).await.unwrap();
                    if tx.send(n).is_err() {
                        return;
                    }
                }
            });
        }
        let mut out = std::io::stdout().lock();
        while let Some(n) = rx.recv().await {
            writeln!(out, "committed {n}").unwrap();
            out.flush().unwrap();
        }
    });
}

#[test]
fn acknowledged_commits_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acknowledged = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acknowledged.len() < 300 {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            acknowledged.push(n.parse::<u32>().unwrap());
        }
    }
    // A second gateway process on the same state directory is refused while the first runs.
    let second = DeliveryStore::open(dir.path());
    assert!(second.is_err(), "a second writer must not open the store");
    // The read-only `status` view works meanwhile and sees acknowledged commits.
    let ro = DeliveryStore::open_read_only(dir.path()).unwrap();
    assert!(ro.get(SENDER, &msg(acknowledged[0])).unwrap().is_some());
    drop(ro);
    child.kill().unwrap(); // SIGKILL: no destructor, no flush, no clean shutdown
    child.wait().unwrap();

    let store = DeliveryStore::open(dir.path()).expect("reopens after SIGKILL");
    for n in &acknowledged {
        let rec = store
            .get(SENDER, &msg(*n))
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged commit {n} lost"));
        assert!(
            rec.recipients
                .iter()
                .all(|r| r.state == DeliveryState::Delivered),
            "{n}: {rec:?}"
        );
    }
    // Whatever else made it in is whole: batches are atomic.
    let max = acknowledged.iter().max().copied().unwrap_or(0);
    let mut extra = 0;
    for n in 0..max + 1000 {
        if let Some(rec) = store.get(SENDER, &msg(n)).unwrap() {
            assert!(
                rec.recipients
                    .iter()
                    .all(|r| r.state == DeliveryState::Delivered),
                "half a batch for {n}"
            );
            extra += usize::from(!acknowledged.contains(&n));
        }
    }
    eprintln!(
        "{} acknowledged commits all present after SIGKILL; {extra} more were durable but unacknowledged",
        acknowledged.len()
    );
}
