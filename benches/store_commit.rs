//! Delivery-store throughput: how many messages per second reach durable `Delivered` state, one
//! flush per message (`commit_batch` in a loop) versus group commit through `StoreHandle` with
//! many concurrent committers (DESIGN §3 step 4). Also: `find` and `overdue` latency on the
//! resulting store. Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench --bench store_commit` (optionally `-- <messages>`). Uses a directory under
//! the target dir (a real disk, so fsync costs what it costs), not /tmp (often tmpfs).

use std::sync::Arc;
use std::time::Instant;

#[path = "../tests/support/store.rs"]
mod store_batch;

use helsemelding::store::{DeliveryStore, StoreHandle};
use store_batch::{delivered_batch, msg};
use time::macros::datetime;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir under target")
}

fn main() {
    let messages: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(4000);

    let d = dir();
    let store = DeliveryStore::open(d.path()).expect("open");
    let n_single = messages.min(1000);
    let start = Instant::now();
    for n in 0..n_single {
        store.commit_batch(&delivered_batch(n)).expect("commit");
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "one flush per message : {n_single:>6} messages in {secs:>6.2} s = {:>8.0} msg/s ({} transactions)",
        f64::from(n_single) / secs,
        store.write_transactions()
    );
    drop(store);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for concurrency in [1u32, 16, 256] {
        let d = dir();
        let handle = Arc::new(
            StoreHandle::start(DeliveryStore::open(d.path()).expect("open"), 1024).expect("start"),
        );
        let start = Instant::now();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let h = Arc::clone(&handle);
                tasks.push(tokio::spawn(async move {
                    let mut n = w;
                    while n < messages {
                        h.commit(delivered_batch(n)).await.expect("commit");
                        n += concurrency;
                    }
                }));
            }
            for t in tasks {
                t.await.expect("task");
            }
        });
        let secs = start.elapsed().as_secs_f64();
        let txns = handle.write_transactions();
        println!(
            "group commit, {concurrency:>3} tasks: {messages:>6} messages in {secs:>6.2} s = {:>8.0} msg/s ({txns} transactions, {:.1} messages each)",
            f64::from(messages) / secs,
            f64::from(messages) / txns.max(1) as f64
        );
        if concurrency == 256 {
            let now = datetime!(2026-01-10 10:00 UTC);
            rt.block_on(async {
                let start = Instant::now();
                for n in 0..1000 {
                    handle.find(msg(n * 3 % messages)).await.expect("find");
                }
                println!(
                    "find                  : {:>8.1} µs per lookup",
                    start.elapsed().as_secs_f64() * 1e6 / 1000.0
                );
                let start = Instant::now();
                let due = handle
                    .overdue(now, time::Duration::hours(96))
                    .await
                    .expect("overdue");
                println!(
                    "overdue               : {} recipients in {:.1} ms",
                    due.len(),
                    start.elapsed().as_secs_f64() * 1e3
                );
            });
        }
        match Arc::try_unwrap(handle) {
            Ok(h) => rt.block_on(h.shutdown()),
            Err(_) => eprintln!("handle still shared"),
        }
    }
}
