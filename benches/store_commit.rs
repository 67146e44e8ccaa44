//! Delivery-store throughput: how many messages per second reach durable `Delivered` state, one
//! flush per message (`commit_batch` in a loop) versus group commit through `StoreHandle` with
//! many concurrent committers (DESIGN §3 step 4). Also: `find` and `overdue` latency on the
//! resulting store. Prints figures; asserts nothing about speed.
//!
//! Run: `cargo bench --bench store_commit` (optionally `-- <messages>`). Uses a directory under
//! the target dir (a real disk, so fsync costs what it costs), not /tmp (often tmpfs).
//!
//! With `HELSEMELDING_BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432/test` the group-commit runs
//! are repeated on the PostgreSQL backend (in a database of their own, dropped afterwards), and
//! each run also prints the CPU it cost: this process (user + system, all threads) and, for
//! PostgreSQL, the server backends serving its connections (from /proc, so the server must run on
//! this machine), per message.

use std::sync::Arc;
use std::time::Instant;

#[path = "../tests/support/store.rs"]
mod store_batch;

use helsemelding::config::StoreBackend;
use helsemelding::store::{pg, DeliveryStore, StoreHandle};
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
    let postgres = std::env::var("HELSEMELDING_BENCH_POSTGRES").ok();
    let bench_db = postgres
        .as_deref()
        .map(|admin| rt.block_on(BenchDb::create(admin)));
    let mut backends = vec![None];
    backends.extend(bench_db.as_ref().map(Some));
    for db in backends {
        for concurrency in [1u32, 16, 256] {
            let d = dir();
            let handle = match db {
                None => StoreHandle::start(DeliveryStore::open(d.path()).expect("open"), 1024)
                    .expect("start"),
                Some(db) => rt.block_on(async {
                    db.empty().await;
                    StoreHandle::open(
                        &StoreBackend::Postgres {
                            url: db.url.clone(),
                        },
                        d.path(),
                        1024,
                    )
                    .await
                    .expect("PostgreSQL store")
                }),
            };
            let handle = Arc::new(handle);
            let server_before = db.map(|db| rt.block_on(db.server_cpu()));
            let cpu_before = process_cpu();
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
            let cpu = process_cpu() - cpu_before;
            let server = match (db, server_before) {
                (Some(db), Some(before)) => {
                    let after = rt.block_on(db.server_cpu());
                    format!(
                        ", server {:.0} µs/msg",
                        (after - before) * 1e6 / f64::from(messages)
                    )
                }
                _ => String::new(),
            };
            let txns = handle.write_transactions();
            println!(
                "{:<8} group commit, {concurrency:>3} tasks: {messages:>6} messages in {secs:>6.2} s = {:>8.0} msg/s ({txns} transactions, {:.1} messages each); CPU: this process {:.0} µs/msg{server}",
                handle.backend_name(),
                f64::from(messages) / secs,
                f64::from(messages) / txns.max(1) as f64,
                cpu * 1e6 / f64::from(messages),
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
    if let Some(db) = bench_db {
        rt.block_on(db.drop_db());
    }
}

/// User + system CPU seconds of this process so far (all threads).
fn process_cpu() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A database of the benchmark's own on the PostgreSQL server.
struct BenchDb {
    admin_url: String,
    admin: tokio_postgres::Client,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(admin_url: &str) -> BenchDb {
        let (name, url) = pg::create_scratch_database(admin_url, "hm_bench")
            .await
            .expect("create the benchmark database");
        BenchDb {
            admin_url: admin_url.to_owned(),
            admin: connect(admin_url).await,
            name,
            url,
        }
    }

    /// Starts a run from an empty table (the schema is created by the first store).
    async fn empty(&self) {
        let c = connect(&self.url).await;
        c.batch_execute(
            "DO $$ BEGIN IF to_regclass('delivery_messages') IS NOT NULL THEN TRUNCATE delivery_messages; END IF; END $$",
        )
        .await
        .expect("truncate");
    }

    /// CPU seconds (user + system) of the server processes connected to this database.
    async fn server_cpu(&self) -> f64 {
        let rows = self
            .admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await
            .expect("pg_stat_activity");
        // SAFETY: sysconf only reads a constant of the system.
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        rows.iter()
            .filter_map(|r| {
                let pid: i32 = r.get(0);
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // Fields after the command (which is in parentheses): utime and stime are the
                // 12th and 13th of them.
                let rest = stat.rsplit_once(')')?.1;
                let f: Vec<&str> = rest.split_whitespace().collect();
                let ticks: f64 =
                    f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
                Some(ticks / tick)
            })
            .sum()
    }

    async fn drop_db(self) {
        pg::drop_scratch_database(&self.admin_url, &self.name)
            .await
            .expect("drop the benchmark database");
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL");
    tokio::spawn(connection);
    client
}
