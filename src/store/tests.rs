use time::macros::datetime;
use time::Duration;

use std::path::Path;

use super::*;
use crate::address::RecipientRole::{Copy as Cop, Primary as Prim};

const T0: Timestamp = datetime!(2026-01-05 10:00 UTC);

fn msg(n: u32) -> MsgId {
    MsgId(format!("00000000-0000-4000-8000-{n:012}"))
}

fn record(sender: u32, n: u32, received: Timestamp) -> MessageRecord {
    MessageRecord::new(
        HerId(sender),
        msg(n),
        "DIALOG_FORESPORSEL",
        format!("synthetic body {n}").as_bytes(),
        received,
        Some(received - Duration::minutes(1)),
        [(Some(HerId(1001)), Prim), (Some(HerId(2001)), Cop)],
    )
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
        Change::Create(record(sender, n, at)),
        apply(sender, n, 0, Event::Routed, at),
        apply(sender, n, 1, Event::Routed, at),
        apply(sender, n, 0, Event::Delivered, at),
        apply(sender, n, 1, Event::Delivered, at),
    ]
}

#[test]
fn no_body_and_no_patient_data_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let body = b"<MsgHead>Patient Kari Nordmann 01010112345</MsgHead>";
    let rec = MessageRecord::new(
        HerId(3000),
        msg(7),
        "DIALOG_NOTAT",
        body,
        T0,
        None,
        [(Some(HerId(1001)), Prim)],
    );
    store.commit_batch(&[Change::Create(rec)]).unwrap();
    drop(store);
    let raw = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
    for needle in [&b"Nordmann"[..], b"01010112345", b"MsgHead"] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{:?} found in the store file",
            String::from_utf8_lossy(needle)
        );
    }
}

async fn records_round_trip_and_are_found_by_msg_id(store: &mut Under) {
    store.commit_batch(&delivered(3000, 1, T0)).await.unwrap();
    // Another sender reusing the same MsgId is a different message.
    store
        .commit_batch(&[Change::Create(record(4000, 1, T0))])
        .await
        .unwrap();

    let got = store
        .get(HerId(3000), &msg(1))
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(got.recipients[0].state, DeliveryState::Delivered);
    assert_eq!(got.recipients[1].events.len(), 2);
    assert_eq!(got.recipients[1].since(), Some(T0));
    assert_eq!(got.gen_date, Some(T0 - Duration::minutes(1)));
    assert!(got.same_content(b"synthetic body 1"));
    assert!(!got.same_content(b"synthetic body 2"));
    assert_eq!(got.recipient_index(HerId(2001)), Some(1));

    let found = store.find(&msg(1)).await.unwrap();
    assert_eq!(
        found.iter().map(|r| r.sender).collect::<Vec<_>>(),
        vec![HerId(3000), HerId(4000)]
    );
    assert!(store.find(&msg(99)).await.unwrap().is_empty());
    assert!(store.get(HerId(3000), &msg(99)).await.unwrap().is_none());
}

async fn a_batch_is_all_or_nothing(store: &mut Under) {
    let mut batch = delivered(3000, 1, T0);
    batch.push(apply(3000, 1, 0, Event::Routed, T0)); // Delivered → Routed: illegal
    let err = store.commit_batch(&batch).await.unwrap_err();
    assert!(matches!(err, StoreError::Illegal { index: 0, .. }), "{err}");
    assert!(
        err.to_string().contains("Routed") && err.to_string().contains(msg(1).as_str()),
        "{err}"
    );
    assert!(!err.is_infrastructure());
    assert!(
        store.get(HerId(3000), &msg(1)).await.unwrap().is_none(),
        "nothing of the failed batch is written"
    );
    assert!(
        store.find(&msg(1)).await.unwrap().is_empty(),
        "nor of its index entries"
    );
}

async fn refused_changes_say_why(store: &mut Under) {
    store.commit_batch(&delivered(3000, 1, T0)).await.unwrap();

    let same = store
        .commit_batch(&[Change::Create(record(3000, 1, T0))])
        .await
        .unwrap_err();
    assert!(
        matches!(
            same,
            StoreError::Duplicate {
                same_content: true,
                ..
            }
        ),
        "{same}"
    );
    let mut other = record(3000, 1, T0);
    other.content_sha256 = content_sha256(b"another body");
    let different = store
        .commit_batch(&[Change::Create(other)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            different,
            StoreError::Duplicate {
                same_content: false,
                ..
            }
        ),
        "{different}"
    );
    assert!(different.to_string().contains("DIFFERENT content"));

    let unknown = store
        .commit_batch(&[apply(3000, 2, 0, Event::Routed, T0)])
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownMessage { .. }),
        "{unknown}"
    );
    let no_such = store
        .commit_batch(&[apply(3000, 1, 5, Event::AppRecOk, T0)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            no_such,
            StoreError::UnknownRecipient {
                index: 5,
                count: 2,
                ..
            }
        ),
        "{no_such}"
    );

    let mut stale = record(3000, 3, T0);
    stale.recipients[0].state = DeliveryState::Delivered;
    let err = store
        .commit_batch(&[Change::Create(stale)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFresh { .. }), "{err}");

    // A second AppRec for the same recipient is refused (HIS 80415:2012 §3.2, Systemtest #41).
    let ok = Change::Apply(Transition {
        sender: HerId(3000),
        msg_id: msg(1),
        recipient: 0,
        event: Event::AppRecOk,
        at: T0 + Duration::hours(1),
        apprec_id: Some(msg(500)),
        codes: vec![],
    });
    store.commit_batch(std::slice::from_ref(&ok)).await.unwrap();
    assert!(matches!(
        store.commit_batch(&[ok]).await.unwrap_err(),
        StoreError::Illegal { .. }
    ));
    let rec = store.get(HerId(3000), &msg(1)).await.unwrap().unwrap();
    assert_eq!(rec.recipients[0].apprec_id, Some(msg(500)));
}

async fn a_rejection_records_every_code(store: &mut Under) {
    let reject = Change::Apply(Transition {
        sender: HerId(3000),
        msg_id: msg(1),
        recipient: 1,
        event: Event::Rejected(ErrorCode::E21),
        at: T0,
        apprec_id: Some(msg(600)),
        codes: vec![ErrorCode::E21, ErrorCode::T10],
    });
    let batch = vec![
        Change::Create(record(3000, 1, T0)),
        apply(3000, 1, 0, Event::Routed, T0),
        reject,
    ];
    store.commit_batch(&batch).await.unwrap();
    let rec = store.get(HerId(3000), &msg(1)).await.unwrap().unwrap();
    assert_eq!(
        rec.recipients[1].state,
        DeliveryState::Rejected(ErrorCode::E21)
    );
    assert_eq!(
        rec.recipients[1].codes,
        vec![ErrorCode::E21, ErrorCode::T10]
    );
    assert_eq!(rec.recipients[0].state, DeliveryState::Routed);
}

async fn group_commit_isolates_a_refused_batch(store: &mut Under) {
    let good1 = delivered(3000, 1, T0);
    let bad = vec![apply(3000, 9, 0, Event::Routed, T0)];
    let good2 = delivered(3000, 2, T0);
    let before = store.write_transactions();
    let results = store.commit_group(&[&good1, &bad, &good2]).await.unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(StoreError::UnknownMessage { .. })));
    assert_eq!(store.write_transactions(), before + 1);
    assert!(store.get(HerId(3000), &msg(1)).await.unwrap().is_some());
    assert!(store.get(HerId(3000), &msg(2)).await.unwrap().is_some());
}

async fn overdue_reads_only_what_waits_too_long(store: &mut Under) {
    let timeout = Duration::hours(96);
    store.commit_batch(&delivered(3000, 1, T0)).await.unwrap();
    store
        .commit_batch(&delivered(3000, 2, T0 + Duration::hours(10)))
        .await
        .unwrap();
    // Message 3: only received, never delivered: not awaiting an AppRec.
    store
        .commit_batch(&[Change::Create(record(3000, 3, T0))])
        .await
        .unwrap();
    // Message 4: the primary answered already, the copy still waits.
    let mut m4 = delivered(3000, 4, T0);
    m4.push(apply(3000, 4, 0, Event::AppRecOk, T0 + Duration::hours(2)));
    store.commit_batch(&m4).await.unwrap();

    assert!(store
        .overdue(T0 + Duration::hours(95), timeout)
        .await
        .unwrap()
        .is_empty());
    // The clock starts at GenDate (one minute before receipt), HIS 80415:2012 §3.2.
    let due = store
        .overdue(T0 + timeout - Duration::minutes(1), timeout)
        .await
        .unwrap();
    let keys: Vec<_> = due
        .iter()
        .map(|o| (o.msg_id.clone(), o.recipient, o.her))
        .collect();
    assert_eq!(
        keys,
        vec![
            (msg(1), 0, Some(HerId(1001))),
            (msg(1), 1, Some(HerId(2001))),
            (msg(4), 1, Some(HerId(2001)))
        ]
    );
    // Marking them overdue takes them out of the awaiting index...
    let marks: Vec<Change> = due
        .iter()
        .map(|o| {
            apply(
                3000,
                o.msg_id.0[24..].parse().unwrap(),
                o.recipient,
                Event::Overdue,
                T0 + timeout,
            )
        })
        .collect();
    store.commit_batch(&marks).await.unwrap();
    let later = store
        .overdue(T0 + Duration::hours(200), timeout)
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|o| o.msg_id.clone()).collect::<Vec<_>>(),
        vec![msg(2), msg(2)]
    );
    // ...and a late AppRec still counts (HIS 80415:2012 Errata 4).
    store
        .commit_batch(&[apply(
            3000,
            1,
            0,
            Event::AppRecOk,
            T0 + Duration::hours(120),
        )])
        .await
        .unwrap();
    let rec = store.get(HerId(3000), &msg(1)).await.unwrap().unwrap();
    assert_eq!(rec.recipients[0].state, DeliveryState::AppRecOk);
    assert_eq!(rec.recipients[1].state, DeliveryState::Overdue);
}

async fn prune_removes_old_records_and_their_index_entries(store: &mut Under) {
    store.commit_batch(&delivered(3000, 1, T0)).await.unwrap();
    store
        .commit_batch(&delivered(3000, 2, T0 + Duration::days(10)))
        .await
        .unwrap();
    store
        .commit_batch(&[Change::Create(record(4000, 1, T0 + Duration::days(1)))])
        .await
        .unwrap();
    let now = T0 + Duration::days(35);
    assert_eq!(store.prune(now, Duration::days(30)).await.unwrap(), 2);
    assert!(store.get(HerId(3000), &msg(1)).await.unwrap().is_none());
    assert!(store.find(&msg(1)).await.unwrap().is_empty());
    assert!(store.get(HerId(3000), &msg(2)).await.unwrap().is_some());
    assert!(store
        .overdue(now, Duration::hours(96))
        .await
        .unwrap()
        .iter()
        .all(|o| o.msg_id == msg(2)));
    assert_eq!(store.prune(now, Duration::days(30)).await.unwrap(), 0);
    // The same key may be recorded again after pruning.
    store
        .commit_batch(&[Change::Create(record(3000, 1, now))])
        .await
        .unwrap();
}

async fn group_commit_sees_earlier_batches_of_the_same_group(store: &mut Under) {
    // Callers of one group may touch the same message: a later batch sees what an earlier one
    // wrote, a duplicate create in the same group is refused, and a refused batch's changes are
    // not seen by the batches after it.
    let create = delivered(3000, 1, T0);
    let again = vec![Change::Create(record(3000, 1, T0))];
    let answer = vec![apply(3000, 1, 0, Event::AppRecOk, T0 + Duration::hours(1))];
    let refused = vec![
        apply(3000, 1, 1, Event::AppRecOk, T0),
        apply(3000, 1, 1, Event::AppRecOk, T0),
    ];
    let copy = vec![apply(3000, 1, 1, Event::AppRecRejected, T0)];
    let results = store
        .commit_group(&[&create, &again, &answer, &refused, &copy])
        .await
        .unwrap();
    assert!(
        results[0].is_ok() && results[2].is_ok() && results[4].is_ok(),
        "{results:?}"
    );
    assert!(matches!(
        results[1],
        Err(StoreError::Duplicate {
            same_content: true,
            ..
        })
    ));
    assert!(matches!(
        results[3],
        Err(StoreError::Illegal { index: 1, .. })
    ));
    let rec = store.get(HerId(3000), &msg(1)).await.unwrap().unwrap();
    assert_eq!(rec.recipients[0].state, DeliveryState::AppRecOk);
    assert_eq!(rec.recipients[1].state, DeliveryState::AppRecRejected);
    assert!(store
        .overdue(T0 + Duration::days(9), Duration::hours(96))
        .await
        .unwrap()
        .is_empty());
}

// ---- the handle (what the gateway holds), on both backends ----

async fn through_the_handle(handle: StoreHandle) {
    let handle = Arc::new(handle);
    let before = handle.write_transactions();
    let callers = 300u32;
    let mut tasks = Vec::new();
    for n in 0..callers {
        let h = Arc::clone(&handle);
        tasks.push(tokio::spawn(async move {
            h.commit(delivered(3000, n, T0)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let transactions = handle.write_transactions() - before;
    eprintln!(
        "{}: {callers} commits in {transactions} transactions",
        handle.backend_name()
    );
    assert!(
        transactions < u64::from(callers),
        "{transactions} transactions for {callers} callers"
    );
    let err = handle
        .commit(vec![apply(3000, 99_999, 0, Event::Routed, T0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownMessage { .. }) && !err.is_infrastructure());
    let recorded = handle
        .record(vec![Change::Create(record(3000, 5, T0))])
        .await
        .unwrap();
    assert!(matches!(
        recorded.outcome().await,
        Err(StoreError::Duplicate { .. })
    ));
    assert!(handle.get(HerId(3000), msg(5)).await.unwrap().is_some());
    assert_eq!(handle.find(msg(6)).await.unwrap().len(), 1);
    let due = handle
        .overdue(T0 + Duration::days(5), Duration::hours(96))
        .await
        .unwrap();
    assert_eq!(due.len(), 2 * callers as usize);
    assert_eq!(handle.size().await.unwrap().records, u64::from(callers));
    assert!(handle.periodic_lease().await.unwrap());
    assert_eq!(
        handle
            .prune(T0 + Duration::days(31), Duration::days(30))
            .await
            .unwrap(),
        callers as usize
    );
    assert_eq!(handle.size().await.unwrap().records, 0);
    assert_eq!(*handle.health().borrow(), StoreHealth::Available);
    Arc::try_unwrap(handle)
        .ok()
        .expect("the only handle")
        .shutdown()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::open(&crate::config::StoreBackend::Redb, dir.path(), 256)
        .await
        .unwrap();
    through_the_handle(handle).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handle_on_postgres() {
    TestDb::with(|db| async move {
        let backend = crate::config::StoreBackend::Postgres { url: db.url() };
        let handle = StoreHandle::open(&backend, Path::new("/nonexistent"), 256)
            .await
            .unwrap();
        through_the_handle(handle).await;
    })
    .await;
}

// ---- PostgreSQL only: schema, several instances, lost connections, migrate-store ----

#[tokio::test]
async fn migrations_are_applied_once_and_reported() {
    TestDb::with(|db| async move {
        let status = pg::schema_status(&db.config()).await.unwrap();
        assert_eq!(status.applied, 0);
        assert_eq!(status.pending.len(), pg::MIGRATIONS.len());
        assert!(status.to_string().contains("pending migration"), "{status}");
        // A reader refuses a database without the schema rather than creating it.
        let err = PgStore::open_existing(&db.config()).await.unwrap_err();
        assert!(matches!(err, StoreError::Schema(_)), "{err}");
        // Two instances starting at once: each migration is applied once.
        let config = db.config();
        let (a, b) = tokio::join!(PgStore::open(&config), PgStore::open(&config));
        a.unwrap();
        b.unwrap();
        let status = pg::schema_status(&db.config()).await.unwrap();
        assert_eq!(status.applied, pg::known_version());
        assert!(status.pending.is_empty());
        assert!(status.to_string().contains("no pending migrations"), "{status}");
        PgStore::open_existing(&db.config()).await.unwrap();
        // A schema newer than this program is refused.
        let admin = pg::connect(&db.config()).await.unwrap();
        admin
            .execute(
                "INSERT INTO helsemelding_schema_migrations (version, description) VALUES ($1, 'future')",
                &[&(pg::known_version() + 1)],
            )
            .await
            .unwrap();
        let err = PgStore::open(&db.config()).await.unwrap_err();
        assert!(err.is_infrastructure() && err.to_string().contains("newer"), "{err}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_apply_each_change_once() {
    TestDb::with(|db| async move {
        let mut a = PgStore::open(&db.config()).await.unwrap();
        let mut b = PgStore::open(&db.config()).await.unwrap();
        // Both create the same 40 records at once: each is created once, the other sees a duplicate.
        let mut created = 0;
        let mut duplicates = 0;
        for n in 0..40 {
            let batch = delivered(3000, n, T0);
            let (ra, rb) = tokio::join!(a.commit_batch(&batch), b.commit_batch(&batch));
            for r in [ra, rb] {
                match r {
                    Ok(()) => created += 1,
                    Err(StoreError::Duplicate {
                        same_content: true, ..
                    }) => duplicates += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert_eq!((created, duplicates), (40, 40));
        // Both answer the same recipient at once: one AppRec is accepted, the other is illegal.
        let mut accepted = 0;
        for n in 0..40 {
            let answer = [apply(3000, n, 0, Event::AppRecOk, T0 + Duration::hours(1))];
            let (ra, rb) = tokio::join!(a.commit_batch(&answer), b.commit_batch(&answer));
            for r in [ra, rb] {
                match r {
                    Ok(()) => accepted += 1,
                    Err(StoreError::Illegal { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            let rec = a.get(HerId(3000), &msg(n)).await.unwrap().unwrap();
            assert_eq!(rec.recipients[0].events.len(), 3, "one AppRec event only");
        }
        assert_eq!(accepted, 40);
        // Pruning from both: each record is counted once.
        let now = T0 + Duration::days(40);
        let (pa, pb) = tokio::join!(
            a.prune(now, Duration::days(30)),
            b.prune(now, Duration::days(30))
        );
        assert_eq!(pa.unwrap() + pb.unwrap(), 40);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_at_a_time_holds_the_periodic_lease() {
    TestDb::with(|db| async move {
        let backend = crate::config::StoreBackend::Postgres { url: db.url() };
        let first = StoreHandle::open(&backend, Path::new("/nonexistent"), 16)
            .await
            .unwrap();
        let second = StoreHandle::open(&backend, Path::new("/nonexistent"), 16)
            .await
            .unwrap();
        assert!(first.periodic_lease().await.unwrap());
        assert!(!second.periodic_lease().await.unwrap());
        assert!(first.periodic_lease().await.unwrap(), "kept by its holder");
        // The holder stops (or dies): its session ends and the other instance takes over.
        first.shutdown().await;
        let mut taken = false;
        for _ in 0..200 {
            if second.periodic_lease().await.unwrap() {
                taken = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert!(taken, "the lease passes on when its holder's session ends");
        second.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_an_infrastructure_fault_and_the_handle_recovers() {
    TestDb::with(|db| async move {
        let mut store = PgStore::open(&db.config()).await.unwrap();
        store.commit_batch(&delivered(3000, 1, T0)).await.unwrap();
        assert!(db.cut_connections().await >= 1);
        let err = store.get(HerId(3000), &msg(1)).await.unwrap_err();
        assert!(err.is_infrastructure() && err.is_connection_lost(), "{err}");
        let err = store
            .commit_batch(&delivered(3000, 2, T0))
            .await
            .unwrap_err();
        assert!(err.is_infrastructure() && err.is_connection_lost(), "{err}");
        assert!(store.is_closed());

        // Nobody listening: also an infrastructure fault, never a refusal.
        let err = PgStore::open(&pg::parse_url("postgres://postgres@127.0.0.1:1/test").unwrap())
            .await
            .unwrap_err();
        assert!(err.is_infrastructure() && err.is_connection_lost(), "{err}");

        // The handle reconnects: a write under way when the connection broke may fail with an
        // infrastructure error (its outcome unknown), later ones succeed.
        let backend = crate::config::StoreBackend::Postgres { url: db.url() };
        let handle = StoreHandle::open(&backend, Path::new("/nonexistent"), 16)
            .await
            .unwrap();
        handle.commit(delivered(3000, 3, T0)).await.unwrap();
        assert!(db.cut_connections().await >= 2);
        for n in 4..8 {
            if let Err(e) = handle.commit(delivered(3000, n, T0)).await {
                assert!(e.is_infrastructure(), "{e}");
            }
        }
        handle.commit(delivered(3000, 8, T0)).await.unwrap();
        let got = match handle.get(HerId(3000), msg(3)).await {
            Ok(r) => r,
            Err(e) => {
                assert!(e.is_infrastructure(), "{e}");
                handle.get(HerId(3000), msg(3)).await.unwrap()
            }
        };
        assert!(got.is_some());
        assert!(handle.get(HerId(3000), msg(8)).await.unwrap().is_some());
        assert_eq!(*handle.health().borrow(), StoreHealth::Available);
        handle.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn migrate_store_copies_redb_into_postgres_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    {
        let redb = DeliveryStore::open(dir.path()).unwrap();
        for n in 0..2500 {
            let mut batch = delivered(3000 + n % 3, n, T0 + Duration::minutes(i64::from(n)));
            if n % 4 == 0 {
                batch.push(apply(
                    3000 + n % 3,
                    n,
                    0,
                    Event::AppRecOk,
                    T0 + Duration::hours(3),
                ));
            }
            redb.commit_batch(&batch).unwrap();
        }
        redb.commit_batch(&[Change::Create(record(4000, 1, T0))])
            .unwrap();
    }
    let from = dir.path().to_path_buf();
    TestDb::with(|db| async move {
        let first = migrate::migrate_store(&from, &db.url()).await.unwrap();
        assert_eq!(
            (
                first.source,
                first.inserted,
                first.identical,
                first.target_total
            ),
            (2501, 2501, 2501, 2501)
        );
        assert!(first.verified());
        let second = migrate::migrate_store(&from, &db.url()).await.unwrap();
        assert_eq!(
            (
                second.source,
                second.inserted,
                second.identical,
                second.target_total
            ),
            (2501, 0, 2501, 2501),
            "a second run changes nothing"
        );
        let redb = DeliveryStore::open_read_only(&from).unwrap();
        let mut pg = PgStore::open_existing(&db.config()).await.unwrap();
        for (s, n) in [(3000, 0), (3001, 1), (3002, 2500 - 2), (4000, 1)] {
            assert_eq!(
                pg.get(HerId(s), &msg(n)).await.unwrap(),
                redb.get(HerId(s), &msg(n)).unwrap()
            );
        }
        // The copied records behave as before: overdue finds the same recipients.
        let now = T0 + Duration::days(10);
        assert_eq!(
            pg.overdue(now, Duration::hours(96)).await.unwrap(),
            redb.overdue(now, Duration::hours(96)).unwrap()
        );
        // A record that moved on in PostgreSQL is a mismatch, not silently overwritten.
        pg.commit_batch(&[apply(3001, 1, 1, Event::AppRecOk, now)])
            .await
            .unwrap();
        let third = migrate::migrate_store(&from, &db.url()).await.unwrap();
        assert_eq!((third.inserted, third.identical), (0, 2500));
        assert!(!third.verified());
    })
    .await;
}

// ---- one suite, both backends: every function below runs against redb and PostgreSQL ----

/// The store under test.
enum Under {
    Redb(DeliveryStore),
    Postgres(PgStore),
}

impl Under {
    async fn commit_batch(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        match self {
            Under::Redb(s) => s.commit_batch(changes),
            Under::Postgres(s) => s.commit_batch(changes).await,
        }
    }

    async fn commit_group(
        &mut self,
        batches: &[&[Change]],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        match self {
            Under::Redb(s) => s.commit_group(batches),
            Under::Postgres(s) => s.commit_group(batches).await,
        }
    }

    async fn get(
        &self,
        sender: HerId,
        msg_id: &MsgId,
    ) -> Result<Option<MessageRecord>, StoreError> {
        match self {
            Under::Redb(s) => s.get(sender, msg_id),
            Under::Postgres(s) => s.get(sender, msg_id).await,
        }
    }

    async fn find(&self, msg_id: &MsgId) -> Result<Vec<MessageRecord>, StoreError> {
        match self {
            Under::Redb(s) => s.find(msg_id),
            Under::Postgres(s) => s.find(msg_id).await,
        }
    }

    async fn overdue(
        &self,
        now: Timestamp,
        timeout: Duration,
    ) -> Result<Vec<OverdueRecipient>, StoreError> {
        match self {
            Under::Redb(s) => s.overdue(now, timeout),
            Under::Postgres(s) => s.overdue(now, timeout).await,
        }
    }

    async fn prune(&self, now: Timestamp, retention: Duration) -> Result<usize, StoreError> {
        match self {
            Under::Redb(s) => s.prune(now, retention),
            Under::Postgres(s) => s.prune(now, retention).await,
        }
    }

    fn write_transactions(&self) -> u64 {
        match self {
            Under::Redb(s) => s.write_transactions(),
            Under::Postgres(s) => s.write_transactions(),
        }
    }
}

/// The PostgreSQL of every machine of this project (trust authentication).
const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database of its own for one test, dropped afterwards (also when the test fails).
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let (name, url) = pg::create_scratch_database(ADMIN_URL, "hm_test")
            .await
            .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, database test)");
        TestDb { name, url }
    }

    fn url(&self) -> String {
        self.url.clone()
    }

    fn config(&self) -> pg::PgConfig {
        pg::parse_url(&self.url).unwrap()
    }

    /// Ends every other session on this database (a restarted or unreachable server, as the
    /// clients see it).
    async fn cut_connections(&self) -> u64 {
        let admin = pg::connect(&pg::parse_url(ADMIN_URL).unwrap())
            .await
            .unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                &[&self.name],
            )
            .await
            .unwrap()
            .len() as u64
    }

    /// Runs `test` with a fresh database, then drops it whether the test passed or not.
    async fn with<F, Fut>(test: F)
    where
        F: FnOnce(TestDb) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let db = TestDb::create().await;
        let name = db.name.clone();
        let outcome = tokio::spawn(test(db)).await;
        pg::drop_scratch_database(ADMIN_URL, &name).await.unwrap();
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Instantiates each suite function for both backends.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(
                #[tokio::test]
                async fn $name() {
                    let dir = tempfile::tempdir().unwrap();
                    let mut store = super::Under::Redb(super::DeliveryStore::open(dir.path()).unwrap());
                    super::$name(&mut store).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::TestDb::with(|db| async move {
                        let mut store = super::Under::Postgres(super::PgStore::open(&db.config()).await.unwrap());
                        super::$name(&mut store).await;
                    })
                    .await;
                }
            )*
        }
    };
}

both_backends!(
    records_round_trip_and_are_found_by_msg_id,
    a_batch_is_all_or_nothing,
    refused_changes_say_why,
    a_rejection_records_every_code,
    group_commit_isolates_a_refused_batch,
    group_commit_sees_earlier_batches_of_the_same_group,
    overdue_reads_only_what_waits_too_long,
    prune_removes_old_records_and_their_index_entries,
);

#[test]
fn a_gen_date_in_the_future_does_not_postpone_the_clock() {
    let mut r = record(3000, 1, T0);
    r.gen_date = Some(T0 + Duration::days(30));
    assert_eq!(r.clock_start(), T0);
    r.gen_date = None;
    assert_eq!(r.clock_start(), T0);
}

#[test]
fn reopening_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = DeliveryStore::open(dir.path()).unwrap();
        store.commit_batch(&delivered(3000, 1, T0)).unwrap();
    }
    let store = DeliveryStore::open(dir.path()).unwrap();
    assert_eq!(
        store.get(HerId(3000), &msg(1)).unwrap().unwrap().recipients[0].state,
        DeliveryState::Delivered
    );
    drop(store);
    let ro = DeliveryStore::open_read_only(dir.path()).unwrap();
    assert_eq!(ro.find(&msg(1)).unwrap().len(), 1);
    assert!(matches!(
        ro.commit_batch(&delivered(3000, 2, T0)),
        Err(StoreError::ReadOnly)
    ));
}

#[test]
fn forgetting_the_store_without_shutdown_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    store.commit_batch(&delivered(3000, 1, T0)).unwrap();
    // No destructor runs: the file is left as an abrupt stop leaves it (and stays locked by this
    // process, so reopen through a copy of the file, as a restarted process would see it).
    std::mem::forget(store);
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join(FILE_NAME), copy.path().join(FILE_NAME)).unwrap();
    let store = DeliveryStore::open(copy.path()).unwrap();
    assert!(store.get(HerId(3000), &msg(1)).unwrap().is_some());
}

#[test]
fn a_corrupt_record_is_an_infrastructure_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let db = store.writer().unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(MESSAGES)
        .unwrap()
        .insert((3000, msg(1).as_str()), &b"{not json"[..])
        .unwrap();
    txn.commit().unwrap();
    let err = store.get(HerId(3000), &msg(1)).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { .. }) && err.is_infrastructure(),
        "{err}"
    );
}

#[test]
fn missing_state_directory_is_created_and_a_bad_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("var/state");
    DeliveryStore::open(&nested).unwrap();
    assert!(nested.join(FILE_NAME).exists());
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = DeliveryStore::open(&file).unwrap_err();
    assert!(err.to_string().contains("plain-file"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_transactions_and_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let handle =
        Arc::new(StoreHandle::start(DeliveryStore::open(dir.path()).unwrap(), 256).unwrap());
    let before = handle.write_transactions();
    let callers = 400u32;
    let mut tasks = Vec::new();
    for n in 0..callers {
        let h = Arc::clone(&handle);
        tasks.push(tokio::spawn(async move {
            h.commit(delivered(3000, n, T0)).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let transactions = handle.write_transactions() - before;
    eprintln!("{callers} commits in {transactions} write transactions");
    assert!(
        transactions < u64::from(callers),
        "{transactions} transactions for {callers} callers"
    );
    // A refused batch in the queue fails only its caller.
    let err = handle
        .commit(vec![apply(3000, 99_999, 0, Event::Routed, T0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnknownMessage { .. }));
    assert!(handle.get(HerId(3000), msg(5)).await.unwrap().is_some());
    assert_eq!(handle.find(msg(6)).await.unwrap().len(), 1);
    assert_eq!(
        handle
            .overdue(T0 + Duration::days(5), Duration::hours(96))
            .await
            .unwrap()
            .len(),
        2 * callers as usize
    );
    let handle = Arc::try_unwrap(handle).ok().expect("the only handle");
    handle.shutdown().await;

    let store = DeliveryStore::open(dir.path()).unwrap();
    for n in 0..callers {
        let rec = store
            .get(HerId(3000), &msg(n))
            .unwrap()
            .expect("durable after reopen");
        assert!(rec
            .recipients
            .iter()
            .all(|r| r.state == DeliveryState::Delivered));
    }
}

#[tokio::test]
async fn prune_through_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::start(DeliveryStore::open(dir.path()).unwrap(), 4).unwrap();
    handle.commit(delivered(3000, 1, T0)).await.unwrap();
    assert_eq!(
        handle
            .prune(T0 + Duration::days(31), Duration::days(30))
            .await
            .unwrap(),
        1
    );
    handle.shutdown().await;
}

#[test]
fn applying_in_memory_gives_the_record_a_commit_stores() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let changes = delivered(3000, 7, T0);
    let mut in_memory = record(3000, 7, T0);
    for c in &changes[1..] {
        let Change::Apply(t) = c else {
            panic!("only transitions after the create")
        };
        in_memory.apply(t).unwrap();
    }
    store.commit_batch(&changes).unwrap();
    assert_eq!(store.get(HerId(3000), &msg(7)).unwrap().unwrap(), in_memory);
    // An illegal move is refused and leaves the record as it was.
    let before = in_memory.clone();
    let Change::Apply(t) = apply(3000, 7, 0, Event::Routed, T0) else {
        unreachable!()
    };
    assert!(matches!(
        in_memory.apply(&t),
        Err(StoreError::Illegal { .. })
    ));
    let Change::Apply(t) = apply(3000, 7, 5, Event::Routed, T0) else {
        unreachable!()
    };
    assert!(matches!(
        in_memory.apply(&t),
        Err(StoreError::UnknownRecipient { .. })
    ));
    assert_eq!(in_memory, before);
}

mod encoding {
    use proptest::prelude::*;

    use super::*;
    use crate::store::record;

    fn any_code() -> impl Strategy<Value = ErrorCode> {
        proptest::sample::select(ErrorCode::ALL.to_vec())
    }

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Routed),
            Just(Event::Delivered),
            any_code().prop_map(Event::Rejected),
            Just(Event::AppRecOk),
            Just(Event::AppRecRejected),
            Just(Event::Overdue),
        ]
    }

    fn any_state() -> impl Strategy<Value = DeliveryState> {
        prop_oneof![
            Just(DeliveryState::Received),
            Just(DeliveryState::Routed),
            Just(DeliveryState::Delivered),
            Just(DeliveryState::AppRecOk),
            Just(DeliveryState::AppRecRejected),
            Just(DeliveryState::Overdue),
            any_code().prop_map(DeliveryState::Rejected),
        ]
    }

    /// Milliseconds, as the store keeps times, over several centuries either side of 1970.
    fn any_time() -> impl Strategy<Value = Timestamp> {
        (-10_000_000_000_000i64..10_000_000_000_000).prop_map(|ms| {
            Timestamp::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
        })
    }

    fn any_recipient() -> impl Strategy<Value = RecipientRecord> {
        (
            proptest::option::of(any::<u32>().prop_map(HerId)),
            prop_oneof![Just(RecipientRole::Primary), Just(RecipientRole::Copy)],
            any_state(),
            proptest::collection::vec(any_code(), 0..4),
            proptest::option::of(".{0,40}".prop_map(MsgId)),
            proptest::collection::vec(
                (any_event(), any_time()).prop_map(|(event, at)| StampedEvent { event, at }),
                0..6,
            ),
        )
            .prop_map(
                |(her, role, state, codes, apprec_id, events)| RecipientRecord {
                    her,
                    role,
                    state,
                    codes,
                    apprec_id,
                    events,
                },
            )
    }

    fn any_record() -> impl Strategy<Value = MessageRecord> {
        (
            any::<u32>().prop_map(HerId),
            ".{0,60}".prop_map(MsgId),
            ".{0,30}",
            any::<[u8; 32]>(),
            any_time(),
            proptest::option::of(any_time()),
            proptest::collection::vec(any_recipient(), 0..5),
        )
            .prop_map(
                |(sender, msg_id, msg_type, content_sha256, received_at, gen_date, recipients)| {
                    MessageRecord {
                        sender,
                        msg_id,
                        msg_type,
                        content_sha256,
                        received_at,
                        gen_date,
                        recipients,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn every_record_round_trips_and_json_from_older_versions_still_reads(rec in any_record()) {
            let bytes = record::encode(&rec);
            prop_assert_eq!(bytes[0], record::VERSION);
            prop_assert_eq!(record::decode(&bytes), Ok(rec.clone()));
            let json = serde_json::to_vec(&rec).unwrap();
            prop_assert_eq!(record::decode(&json), Ok(rec));
        }

        #[test]
        fn a_damaged_record_is_an_error_never_a_panic(rec in any_record(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
            let bytes = record::encode(&rec);
            let short = &bytes[..cut.index(bytes.len())];
            prop_assert!(record::decode(short).is_err());
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 1 << bit;
            let _ = record::decode(&flipped);
        }
    }

    #[test]
    fn a_json_record_written_by_an_earlier_version_is_read_and_rewritten_compactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeliveryStore::open(dir.path()).unwrap();
        let rec = record(3000, 1, T0);
        let json = serde_json::to_vec(&rec).unwrap();
        {
            let txn = store.writer().unwrap().begin_write().unwrap();
            let mut t = Tables::open(&txn).unwrap();
            t.messages
                .insert((3000, msg(1).as_str()), json.as_slice())
                .unwrap();
            t.by_msg_id.insert(msg(1).as_str(), 3000).unwrap();
            drop(t);
            txn.commit().unwrap();
        }
        assert_eq!(store.get(HerId(3000), &msg(1)).unwrap(), Some(rec.clone()));
        store
            .commit_batch(&[apply(3000, 1, 0, Event::Routed, T0)])
            .unwrap();
        let txn = store.begin_read().unwrap();
        let raw = txn
            .open_table(MESSAGES)
            .unwrap()
            .get((3000, msg(1).as_str()))
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        assert_eq!(raw[0], record::VERSION);
        assert!(
            raw.len() < json.len() / 2,
            "{} bytes, JSON had {}",
            raw.len(),
            json.len()
        );
        assert_eq!(
            store.get(HerId(3000), &msg(1)).unwrap().unwrap().recipients[0].state,
            DeliveryState::Routed
        );
    }
}

/// DESIGN §3 step 2 has no flush of its own: a record waits for the next commit and is written in
/// its transaction (one flush for both); a record alone is written after the linger, visible to
/// readers (`status` shows a message in flight).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_shares_the_next_commits_flush_or_is_written_alone_after_the_linger() {
    let dir = tempfile::tempdir().unwrap();
    let handle = StoreHandle::start(DeliveryStore::open(dir.path()).unwrap(), 64).unwrap();
    let before = handle.write_transactions();
    let routed = vec![
        Change::Create(record(3000, 1, T0)),
        apply(3000, 1, 0, Event::Routed, T0),
        apply(3000, 1, 1, Event::Routed, T0),
    ];
    let recorded = handle.record(routed).await.unwrap();
    let delivered = vec![
        apply(3000, 1, 0, Event::Delivered, T0),
        apply(3000, 1, 1, Event::Delivered, T0),
    ];
    let (committed, recorded) = tokio::join!(handle.commit(delivered), recorded.outcome());
    committed.unwrap();
    recorded.unwrap();
    assert_eq!(
        handle.write_transactions() - before,
        1,
        "record and commit share one transaction"
    );
    let alone = handle
        .record(vec![Change::Create(record(3000, 2, T0))])
        .await
        .unwrap();
    alone.outcome().await.unwrap();
    assert_eq!(handle.write_transactions() - before, 2);
    let rec = handle.get(HerId(3000), msg(2)).await.unwrap();
    assert!(rec.is_some(), "a record alone is written and readable");
    handle.shutdown().await;
}
