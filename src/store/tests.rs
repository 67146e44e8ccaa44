use time::macros::datetime;
use time::Duration;

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
fn records_round_trip_and_are_found_by_msg_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    store.commit_batch(&delivered(3000, 1, T0)).unwrap();
    // Another sender reusing the same MsgId is a different message.
    store
        .commit_batch(&[Change::Create(record(4000, 1, T0))])
        .unwrap();

    let got = store.get(HerId(3000), &msg(1)).unwrap().expect("recorded");
    assert_eq!(got.recipients[0].state, DeliveryState::Delivered);
    assert_eq!(got.recipients[1].events.len(), 2);
    assert_eq!(got.recipients[1].since(), Some(T0));
    assert_eq!(got.gen_date, Some(T0 - Duration::minutes(1)));
    assert!(got.same_content(b"synthetic body 1"));
    assert!(!got.same_content(b"synthetic body 2"));
    assert_eq!(got.recipient_index(HerId(2001)), Some(1));

    let found = store.find(&msg(1)).unwrap();
    assert_eq!(
        found.iter().map(|r| r.sender).collect::<Vec<_>>(),
        vec![HerId(3000), HerId(4000)]
    );
    assert!(store.find(&msg(99)).unwrap().is_empty());
    assert!(store.get(HerId(3000), &msg(99)).unwrap().is_none());
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

#[test]
fn a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let mut batch = delivered(3000, 1, T0);
    batch.push(apply(3000, 1, 0, Event::Routed, T0)); // Delivered → Routed: illegal
    let err = store.commit_batch(&batch).unwrap_err();
    assert!(matches!(err, StoreError::Illegal { index: 0, .. }), "{err}");
    assert!(
        err.to_string().contains("Routed") && err.to_string().contains(msg(1).as_str()),
        "{err}"
    );
    assert!(!err.is_infrastructure());
    assert!(
        store.get(HerId(3000), &msg(1)).unwrap().is_none(),
        "nothing of the failed batch is written"
    );
    assert!(
        store.find(&msg(1)).unwrap().is_empty(),
        "nor of its index entries"
    );
}

#[test]
fn refused_changes_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    store.commit_batch(&delivered(3000, 1, T0)).unwrap();

    let same = store
        .commit_batch(&[Change::Create(record(3000, 1, T0))])
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
    let different = store.commit_batch(&[Change::Create(other)]).unwrap_err();
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
        .unwrap_err();
    assert!(
        matches!(unknown, StoreError::UnknownMessage { .. }),
        "{unknown}"
    );
    let no_such = store
        .commit_batch(&[apply(3000, 1, 5, Event::AppRecOk, T0)])
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
    let err = store.commit_batch(&[Change::Create(stale)]).unwrap_err();
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
    store.commit_batch(std::slice::from_ref(&ok)).unwrap();
    assert!(matches!(
        store.commit_batch(&[ok]).unwrap_err(),
        StoreError::Illegal { .. }
    ));
    let rec = store.get(HerId(3000), &msg(1)).unwrap().unwrap();
    assert_eq!(rec.recipients[0].apprec_id, Some(msg(500)));
}

#[test]
fn a_rejection_records_every_code() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
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
    store.commit_batch(&batch).unwrap();
    let rec = store.get(HerId(3000), &msg(1)).unwrap().unwrap();
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

#[test]
fn group_commit_isolates_a_refused_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let good1 = delivered(3000, 1, T0);
    let bad = vec![apply(3000, 9, 0, Event::Routed, T0)];
    let good2 = delivered(3000, 2, T0);
    let results = store.commit_group(&[&good1, &bad, &good2]).unwrap();
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(StoreError::UnknownMessage { .. })));
    assert_eq!(store.write_transactions(), 1);
    assert!(store.get(HerId(3000), &msg(1)).unwrap().is_some());
    assert!(store.get(HerId(3000), &msg(2)).unwrap().is_some());
}

#[test]
fn overdue_reads_only_what_waits_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    let timeout = Duration::hours(96);
    store.commit_batch(&delivered(3000, 1, T0)).unwrap();
    store
        .commit_batch(&delivered(3000, 2, T0 + Duration::hours(10)))
        .unwrap();
    // Message 3: only received, never delivered: not awaiting an AppRec.
    store
        .commit_batch(&[Change::Create(record(3000, 3, T0))])
        .unwrap();
    // Message 4: the primary answered already, the copy still waits.
    let mut m4 = delivered(3000, 4, T0);
    m4.push(apply(3000, 4, 0, Event::AppRecOk, T0 + Duration::hours(2)));
    store.commit_batch(&m4).unwrap();

    assert!(store
        .overdue(T0 + Duration::hours(95), timeout)
        .unwrap()
        .is_empty());
    // The clock starts at GenDate (one minute before receipt), HIS 80415:2012 §3.2.
    let due = store
        .overdue(T0 + timeout - Duration::minutes(1), timeout)
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
    store.commit_batch(&marks).unwrap();
    let later = store.overdue(T0 + Duration::hours(200), timeout).unwrap();
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
        .unwrap();
    let rec = store.get(HerId(3000), &msg(1)).unwrap().unwrap();
    assert_eq!(rec.recipients[0].state, DeliveryState::AppRecOk);
    assert_eq!(rec.recipients[1].state, DeliveryState::Overdue);
}

#[test]
fn a_gen_date_in_the_future_does_not_postpone_the_clock() {
    let mut r = record(3000, 1, T0);
    r.gen_date = Some(T0 + Duration::days(30));
    assert_eq!(r.clock_start(), T0);
    r.gen_date = None;
    assert_eq!(r.clock_start(), T0);
}

#[test]
fn prune_removes_old_records_and_their_index_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = DeliveryStore::open(dir.path()).unwrap();
    store.commit_batch(&delivered(3000, 1, T0)).unwrap();
    store
        .commit_batch(&delivered(3000, 2, T0 + Duration::days(10)))
        .unwrap();
    store
        .commit_batch(&[Change::Create(record(4000, 1, T0 + Duration::days(1)))])
        .unwrap();
    let now = T0 + Duration::days(35);
    assert_eq!(store.prune(now, Duration::days(30)).unwrap(), 2);
    assert!(store.get(HerId(3000), &msg(1)).unwrap().is_none());
    assert!(store.find(&msg(1)).unwrap().is_empty());
    assert!(store.get(HerId(3000), &msg(2)).unwrap().is_some());
    assert!(store
        .overdue(now, Duration::hours(96))
        .unwrap()
        .iter()
        .all(|o| o.msg_id == msg(2)));
    assert_eq!(store.prune(now, Duration::days(30)).unwrap(), 0);
    // The same key may be recorded again after pruning.
    store
        .commit_batch(&[Change::Create(record(3000, 1, now))])
        .unwrap();
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
