//! Issue 4's last test: the real gateway binary is killed with `kill -9` in the middle of a batch,
//! started again, and nothing is lost — every message on every recipient queue it belongs to,
//! duplicates only with the same MsgId, and exactly one AppRec per rejected message (a re-published
//! AppRec after the crash carries the same deterministic Id, DESIGN §3). Then SIGTERM in the middle
//! of a second batch: exit code 0, every in-flight message finished (no record left half-way in
//! the store), and a restart finishes the rest.
//!
//! Each test runs the gateway as a child process in its own vhost and state directory
//! (`helsemelding_lab::chaos::scenario::Run`); the figures are printed.

mod support;

use std::sync::Arc;
use std::time::Duration;

use helsemelding::gateway::decide::apprec_id_for;
use helsemelding::ids::MsgId;
use helsemelding::store::state::DeliveryState;
use helsemelding::store::DeliveryStore;
use helsemelding_lab::chaos::ledger::{figures, Figures};
use helsemelding_lab::chaos::scenario::{output_queues, Run};
use helsemelding_lab::chaos::traffic::{batch, send, Confirmed, Outgoing, SendPlan};
use support::chaos_options;

async fn signed_batch(n: usize, tag: &str) -> Arc<Vec<Outgoing>> {
    let base = support::repo();
    let tag = tag.to_owned();
    Arc::new(
        tokio::task::spawn_blocking(move || batch(&base, n, &tag, time::OffsetDateTime::now_utc()))
            .await
            .unwrap()
            .expect("batch"),
    )
}

fn print(label: &str, f: &Figures) {
    println!(
        "{label}: sent {} delivered {} lost {} duplicated {} apprecs {} second-apprecs {} misplaced {} inversions {}",
        f.sent, f.delivered, f.lost, f.duplicated, f.apprecs, f.second_apprecs, f.misplaced, f.inversions
    );
}

/// Every AppRec that came out carries the deterministic Id of `apprec_id_for` (the only AppRec
/// the gateway can ever issue for that message and recipient).
fn assert_deterministic_apprecs(run: &Run, msgs: &[Outgoing]) {
    let seen = run.ledger.snapshot();
    let apprecs: Vec<_> = seen.iter().filter(|s| s.msg_type == "APPREC").collect();
    assert!(!apprecs.is_empty());
    for a in apprecs {
        let original = a.original.as_deref().expect("an AppRec names its original");
        let m = msgs
            .iter()
            .find(|m| m.msg_id.as_str() == original)
            .unwrap_or_else(|| panic!("AppRec for unknown {original}"));
        assert_eq!(
            a.message_id,
            apprec_id_for(m.sender, &MsgId::new(original), 0).as_str(),
            "AppRec Id for {original}"
        );
    }
}

/// Waits until a quarter of what must come out has come out.
async fn wait_for_a_quarter(run: &Run, total: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while run.ledger.len() < total / 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the gateway made no progress:\n{}",
            run.gateway.stderr_tail(20)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// After the gateway has stopped (it publishes nothing more), waits until the drain has taken
/// everything off the output queues and handed it to the ledger: every queue at 0 ready and the
/// ledger no longer growing between two looks, so the figures count every published message.
async fn wait_drained(run: &Run) {
    let queues = output_queues(&run.config).expect("output queues of the configuration");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last_len = usize::MAX;
    loop {
        let mut left = Vec::new();
        for q in &queues {
            match run.vhost.queue_len(q).await {
                Ok(Some(0) | None) => {}
                Ok(Some(n)) => left.push(format!("{q}: {n}")),
                Err(e) => left.push(format!("{q}: {e}")),
            }
        }
        let len = run.ledger.len();
        if left.is_empty() && len == last_len {
            return;
        }
        last_len = len;
        assert!(
            std::time::Instant::now() < deadline,
            "the drain did not empty the output queues within 60 s: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pairs(msgs: &[Outgoing]) -> usize {
    msgs.iter().map(|m| m.expect.len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_middle_of_a_batch_loses_nothing_and_never_answers_twice() {
    let o = chaos_options(240, 1, 0);
    let msgs = signed_batch(o.messages, "restart").await;
    let mut run = Run::start(&o, "restart", &[], None, |_, _| async { Ok(()) })
        .await
        .expect("gateway runs");
    let confirmed = Confirmed::new(msgs.len());
    let sender = tokio::spawn(send(
        run.url().to_owned(),
        msgs.clone(),
        0..msgs.len(),
        confirmed.clone(),
        SendPlan::default(),
    ));

    // Kill when about a quarter has come out: some done, most not.
    let total = pairs(&msgs);
    wait_for_a_quarter(&run, total).await;
    run.gateway.kill9().unwrap();
    let at_kill = figures(&msgs, &confirmed, &run.ledger.snapshot());
    print("at kill -9", &at_kill);
    assert!(
        at_kill.delivered > 0 && at_kill.delivered < total,
        "the kill must come in the middle: {} of {total}",
        at_kill.delivered
    );

    run.gateway.restart().unwrap();
    run.wait_ready(Duration::from_secs(60)).await.unwrap();
    sender.await.unwrap();
    let f = run
        .wait_complete(&msgs, &confirmed, msgs.len(), Duration::from_secs(120))
        .await
        .unwrap();
    run.graceful_stop(Duration::from_secs(40))
        .await
        .expect("SIGTERM: exit 0, nothing left unacked");
    wait_drained(&run).await;
    let f2 = figures(&msgs, &confirmed, &run.ledger.snapshot());
    print("after restart", &f2);
    assert_eq!(f.lost, 0);
    assert_eq!(
        f2.sent,
        msgs.len(),
        "every message confirmed into the intake"
    );
    assert_eq!(f2.lost, 0, "lost: {:?}", f2.problems);
    assert_eq!(
        f2.second_apprecs, 0,
        "a second, different AppRec: {:?}",
        f2.problems
    );
    assert_eq!(f2.misplaced, 0, "misplaced: {:?}", f2.problems);
    assert_eq!(f2.delivered, total);
    assert_eq!(
        f2.apprecs,
        msgs.iter()
            .filter(|m| m.shape.starts_with("rejected/"))
            .count(),
        "one AppRec per rejected message"
    );
    assert_deterministic_apprecs(&run, &msgs);
    run.finish(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_the_middle_of_a_batch_finishes_in_flight_messages_and_exits_0() {
    // More than the prefetch (256): the gateway finishes what it has begun, the rest waits.
    let o = chaos_options(400, 1, 0);
    let msgs = signed_batch(o.messages, "sigterm").await;
    let mut run = Run::start(&o, "sigterm", &[], None, |_, _| async { Ok(()) })
        .await
        .expect("gateway runs");
    let confirmed = Confirmed::new(msgs.len());
    let resent = send(
        run.url().to_owned(),
        msgs.clone(),
        0..msgs.len(),
        confirmed.clone(),
        SendPlan::default(),
    )
    .await;
    assert_eq!(confirmed.count(), msgs.len());
    println!("sender published {resent} unconfirmed message(s) again");

    let total = pairs(&msgs);
    wait_for_a_quarter(&run, total).await;
    let status = run
        .gateway
        .terminate(Duration::from_secs(40))
        .await
        .expect("stops within the grace period");
    assert_eq!(
        status.code(),
        Some(0),
        "graceful stop exits 0:\n{}",
        run.gateway.stderr_tail(20)
    );
    let at_stop = figures(&msgs, &confirmed, &run.ledger.snapshot());
    print("at SIGTERM", &at_stop);
    assert!(
        at_stop.delivered < total,
        "the stop must come in the middle"
    );

    // Every message the gateway had begun reached a safe point: no recipient is left Routed
    // (published, not recorded) or Received (AppRec owed), and each recorded message is acked —
    // what is left in the intake are messages it never began.
    let store =
        DeliveryStore::open_read_only(&run.dir.join("state")).expect("store opens after the stop");
    let mut recorded = 0;
    for m in msgs.iter() {
        if let Some(rec) = store.get(m.sender, &m.msg_id).unwrap() {
            recorded += 1;
            for r in &rec.recipients {
                assert!(
                    !matches!(r.state, DeliveryState::Routed | DeliveryState::Received),
                    "{} left {:?} by the graceful stop",
                    m.msg_id,
                    r.state
                );
            }
        }
    }
    drop(store);
    let left = run.intake_len().await.expect("intake readable");
    println!(
        "graceful stop: {recorded} messages recorded, {left} left in the intake for the next start"
    );
    assert!(
        recorded > 0 && left > 0,
        "the stop must come in the middle (recorded {recorded}, left {left})"
    );
    // Nothing vanished: each message finished (recorded) or is back in the intake. A few can be
    // both: AMQP acks are not confirmed, and one sent in the last instant before the connection
    // closes may not be applied by the queue (seen: 4 and 47 of 400). Such a message is finished in
    // the store, so the restart below must only ack it: `duplicated == 0` at the end checks that.
    assert!(
        recorded + left as usize >= msgs.len(),
        "every message either finished or back in the intake"
    );
    println!(
        "finished but redelivered (ack not applied before the close): {}",
        recorded + left as usize - msgs.len()
    );

    run.gateway.restart().unwrap();
    run.wait_ready(Duration::from_secs(60)).await.unwrap();
    run.wait_complete(&msgs, &confirmed, msgs.len(), Duration::from_secs(120))
        .await
        .unwrap();
    run.graceful_stop(Duration::from_secs(40))
        .await
        .expect("second SIGTERM: exit 0, nothing left unacked");
    wait_drained(&run).await;
    let f = figures(&msgs, &confirmed, &run.ledger.snapshot());
    print("after restart", &f);
    assert_eq!(
        (f.lost, f.second_apprecs, f.misplaced),
        (0, 0, 0),
        "{:?}",
        f.problems
    );
    assert_eq!(f.duplicated, 0, "a graceful stop never causes a duplicate");
    assert_deterministic_apprecs(&run, &msgs);
    run.finish(false).await;
}

/// SIGTERM at any moment of the start — while the configuration and schemas load, while it
/// connects — is a clean stop with exit code 0 (before the fix it died by the signal when it came
/// during loading: found by `helsemelding-lab chaos`, a stop right after a restart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_starting_exits_0() {
    use helsemelding_lab::chaos::process::GatewayProcess;
    let o = chaos_options(1, 0, 0);
    let dir = tempfile::tempdir().unwrap();
    // A vhost that does not exist: the gateway that gets past loading keeps trying to connect.
    let config = support::write_config(
        dir.path(),
        "amqp://guest:guest@127.0.0.1:5672/hm-no-such-vhost",
    );
    for delay_ms in [20, 150, 600, 1500] {
        let mut g = GatewayProcess::spawn(&o.exe, &config, dir.path()).unwrap();
        // This pause is the point: the signal is to meet the start at different moments
        // (loading, connecting), which no observable condition marks from outside.
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        let status = g.terminate(Duration::from_secs(30)).await.expect("stops");
        assert_eq!(
            status.code(),
            Some(0),
            "SIGTERM {delay_ms} ms after the start: {status}\n{}",
            g.stderr_tail(10)
        );
    }
}
