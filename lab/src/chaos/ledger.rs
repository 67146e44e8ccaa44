//! What came out of the gateway, and the figures of a run.
//!
//! Input: the parties' queues (`{her}_async`, `{her}_error`) and `gateway_dead_letter`, drained
//! by [`Drain`] (its own connection, no-ack consumers, reconnecting after broker faults), and the
//! batch with its [`Expect`]ations and its publish order. Output: [`Figures`] — sent, delivered,
//! lost, duplicated, AppRecs, second AppRecs, misplaced, inversions — with the first few failures
//! named. Failure: none; a queue that cannot be consumed is retried until the drain is dropped.
//!
//! Order ([`inversions`]): for each sender and recipient queue, the MsgIds must first arrive in
//! the order the sender published them to the intake — the order the broker gives them to the
//! gateway (DESIGN §3). A later copy of a MsgId (a duplicate) does not count; a message that
//! arrives before one published earlier does, once per such pair.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use tokio::task::JoinHandle;

use super::traffic::{Confirmed, Expect, Outgoing};
use helsemelding::amqp::connection::{connect, AmqpSettings};

/// One message taken from a queue.
#[derive(Debug, Clone)]
pub struct Seen {
    pub queue: String,
    /// `message_id`: the MsgId (deliveries) or the AppRec's own Id (AppRecs).
    pub message_id: String,
    pub msg_type: String,
    /// `originalMessageId` header (AppRecs and error-queue entries).
    pub original: Option<String>,
    pub error_condition: Option<String>,
}

/// Everything drained so far (shared with the drain tasks).
#[derive(Clone, Default)]
pub struct Ledger(Arc<Mutex<Vec<Seen>>>);

impl Ledger {
    pub fn snapshot(&self) -> Vec<Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Waits until more than `since` entries are in, up to `within`: has the gateway made progress?
    pub async fn grows_past(&self, since: usize, within: Duration) -> bool {
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if self.len() > since {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
    fn push(&self, s: Seen) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(s);
    }
}

fn header(props: &lapin::BasicProperties, name: &str) -> Option<String> {
    props
        .headers()
        .as_ref()
        .and_then(|t| t.inner().get(name).cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            AMQPValue::ShortString(s) => Some(s.to_string()),
            _ => None,
        })
}

/// Consumers on some queues, feeding a [`Ledger`]; stopped on drop.
pub struct Drain {
    task: JoinHandle<()>,
}

impl Drain {
    /// Starts consuming `queues` (no-ack: the drain is the recipients' EHR systems taking
    /// everything) and keeps doing so across reconnects.
    pub fn spawn(url: &str, queues: Vec<String>, ledger: Ledger) -> Drain {
        let url = url.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let _ = drain_session(&url, &queues, &ledger).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        Drain { task }
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection's worth of draining; returns when any consumer ends (connection lost).
async fn drain_session(url: &str, queues: &[String], ledger: &Ledger) -> Result<(), String> {
    let mut settings = AmqpSettings::new(url.to_owned(), "chaos-drain");
    settings.heartbeat = Duration::from_secs(5);
    let conn = connect(&settings).await.map_err(|e| e.to_string())?;
    let mut tasks = tokio::task::JoinSet::new();
    for q in queues {
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        let mut consumer = ch
            .basic_consume(
                q.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
        let ledger = ledger.clone();
        let queue = q.clone();
        tasks.spawn(async move {
            let _ch = ch;
            while let Some(Ok(d)) = consumer.next().await {
                let p = &d.properties;
                ledger.push(Seen {
                    queue: queue.clone(),
                    message_id: p
                        .message_id()
                        .as_ref()
                        .map(|m| m.to_string())
                        .unwrap_or_default(),
                    msg_type: header(p, "type")
                        .or_else(|| p.kind().as_ref().map(|k| k.to_string()))
                        .unwrap_or_default(),
                    original: header(p, "originalMessageId"),
                    error_condition: header(p, "errorCondition"),
                });
            }
        });
    }
    let _ = tasks.join_next().await;
    tasks.abort_all();
    let _ = conn.close(200, "drain reconnecting".into()).await;
    Ok(())
}

/// The figures of one run. Counting unit: a (message, destination) pair — a recipient copy, or
/// the sender's AppRec for a rejected message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Messages the broker confirmed into the intake.
    pub sent: usize,
    /// (message, destination) pairs that arrived.
    pub delivered: usize,
    /// (message, destination) pairs of confirmed messages that never arrived where they belong.
    pub lost: usize,
    /// Extra copies (same MsgId, or the same AppRec Id) beyond the first.
    pub duplicated: usize,
    /// Distinct gateway-issued AppRecs.
    pub apprecs: usize,
    /// (message, recipient) pairs answered with more than one distinct AppRec: never allowed.
    pub second_apprecs: usize,
    /// Messages that came out where nothing was expected (error queues, dead letters, a wrong
    /// recipient).
    pub misplaced: usize,
    /// Of `lost`: deliveries the gateway believed confirmed (its routing log says `delivered`)
    /// that never arrived — the worst kind of loss, because nobody retries it (see
    /// [`confirmed_not_arrived`]).
    pub confirmed_not_arrived: usize,
    /// Pairs of messages of one sender that first arrived at one recipient in the opposite order
    /// of their publication (see [`inversions`]): never allowed.
    pub inversions: usize,
    /// The first few problems, named.
    pub problems: Vec<String>,
}

impl Figures {
    /// The column names of [`Self::tsv`].
    pub const TSV_HEADER: &'static str = "sent\tdelivered\tlost\tduplicated\tapprecs\tinversions";

    /// Nothing lost, no second AppRec, nothing misplaced, no inversion.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.second_apprecs == 0 && self.misplaced == 0 && self.inversions == 0
    }

    /// `sent<TAB>delivered<TAB>lost<TAB>duplicated<TAB>apprecs<TAB>inversions`.
    pub fn tsv(&self) -> String {
        format!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            self.sent, self.delivered, self.lost, self.duplicated, self.apprecs, self.inversions
        )
    }
}

/// Inversions of one run: for each (sender, recipient queue), the MsgIds in the order of their
/// first arrival, compared with `published` (batch indices in the order they went on the wire,
/// [`super::traffic::Confirmed::publish_order`]). Every pair that first arrived in the opposite
/// order of publication is one inversion. Only the sender's own messages count (deliveries, not
/// the AppRecs the gateway issues), and only those published once: a retried publish may have
/// reached the intake at either attempt, so its place is not known. Returns the count and the
/// first few inverted pairs, named.
pub fn inversions(msgs: &[Outgoing], published: &[usize], seen: &[Seen]) -> (usize, Vec<String>) {
    let mut attempts: HashMap<usize, usize> = HashMap::new();
    for &i in published {
        *attempts.entry(i).or_default() += 1;
    }
    // MsgId → (position in the wire order, batch index), for messages published exactly once.
    let mut position: HashMap<&str, (usize, usize)> = HashMap::new();
    for (pos, &i) in published.iter().enumerate() {
        if attempts.get(&i) == Some(&1) {
            if let Some(m) = msgs.get(i) {
                position.insert(m.msg_id.as_str(), (pos, i));
            }
        }
    }
    // (sender, queue) → wire positions in the order of first arrival.
    let mut arrivals: HashMap<(u32, &str), Vec<(usize, usize)>> = HashMap::new();
    let mut first: HashSet<(&str, &str)> = HashSet::new();
    for s in seen {
        if s.msg_type == "APPREC" || s.error_condition.is_some() || !s.queue.ends_with("_async") {
            continue;
        }
        let Some(&(pos, i)) = position.get(s.message_id.as_str()) else {
            continue;
        };
        let expected = msgs[i]
            .expect
            .iter()
            .any(|e| matches!(e, Expect::Deliver { queue } if *queue == s.queue));
        if expected && first.insert((s.queue.as_str(), s.message_id.as_str())) {
            arrivals
                .entry((msgs[i].sender.0, s.queue.as_str()))
                .or_default()
                .push((pos, i));
        }
    }
    let mut count = 0;
    let mut named = Vec::new();
    let mut pairs: Vec<_> = arrivals.into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    for ((sender, queue), order) in pairs {
        for (k, &(later_pos, later)) in order.iter().enumerate() {
            for &(earlier_pos, earlier) in &order[k + 1..] {
                if earlier_pos < later_pos {
                    count += 1;
                    if named.len() < MAX_PROBLEMS {
                        named.push(format!(
                            "inversion: {sender} → {queue}: {} (published #{}) arrived before {} (published #{})",
                            msgs[later].msg_id,
                            later_pos + 1,
                            msgs[earlier].msg_id,
                            earlier_pos + 1
                        ));
                    }
                }
            }
        }
    }
    (count, named)
}

const MAX_PROBLEMS: usize = 10;

/// `(MsgId, recipient HER-id)` pairs the gateway's routing log (JSON lines) records as
/// `delivered`: the broker confirmed those publishes.
pub fn confirmed_deliveries(routing_log: &str) -> HashSet<(String, String)> {
    routing_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "delivered")
        .filter_map(|v| {
            Some((
                v["msg_id"].as_str()?.to_owned(),
                v["to_her"].as_u64()?.to_string(),
            ))
        })
        .collect()
}

/// Redeliveries the gateway found settled already: routing-log lines with the outcome
/// `duplicate` (the sender streams each message once, so in a chaos run each is the redelivery of
/// a message whose ack a crash prevented).
pub fn settled_redeliveries(routing_log: &str) -> usize {
    routing_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "duplicate")
        .count()
}

/// Sets `f.confirmed_not_arrived`: the lost deliveries whose publish the gateway had counted as
/// confirmed. Once seen as "the broker confirmed and dropped it" under reject-publish; the cause
/// was a confirm resolving the wrong publish in the client (`amqp::publisher`, module comment).
pub fn confirmed_not_arrived(f: &mut Figures, msgs: &[Outgoing], seen: &[Seen], routing_log: &str) {
    let confirmed = confirmed_deliveries(routing_log);
    let arrived: HashSet<(&str, &str)> = seen
        .iter()
        .map(|s| (s.queue.as_str(), s.message_id.as_str()))
        .collect();
    f.confirmed_not_arrived = 0;
    for m in msgs {
        for e in &m.expect {
            if let Expect::Deliver { queue } = e {
                let her = queue.trim_end_matches("_async").to_owned();
                if !arrived.contains(&(queue.as_str(), m.msg_id.as_str()))
                    && confirmed.contains(&(m.msg_id.as_str().to_owned(), her))
                {
                    f.confirmed_not_arrived += 1;
                }
            }
        }
    }
}

/// Compares what came out with what each confirmed message must produce.
pub fn figures(msgs: &[Outgoing], confirmed: &Confirmed, seen: &[Seen]) -> Figures {
    // (queue, MsgId) → copies; (queue, original MsgId) → AppRec Id → copies.
    let mut copies: HashMap<(&str, &str), usize> = HashMap::new();
    let mut apprecs: HashMap<(&str, &str), HashMap<&str, usize>> = HashMap::new();
    let mut stray: Vec<&Seen> = Vec::new();
    for s in seen {
        if s.queue.ends_with("_async") && s.error_condition.is_none() {
            if s.msg_type == "APPREC" {
                let orig = s.original.as_deref().unwrap_or("");
                *apprecs
                    .entry((s.queue.as_str(), orig))
                    .or_default()
                    .entry(s.message_id.as_str())
                    .or_default() += 1;
            } else {
                *copies
                    .entry((s.queue.as_str(), s.message_id.as_str()))
                    .or_default() += 1;
            }
        } else {
            stray.push(s);
        }
    }
    let mut f = Figures::default();
    let problem = |f: &mut Figures, p: String| {
        if f.problems.len() < MAX_PROBLEMS {
            f.problems.push(p);
        }
    };
    let mut expected_copies: HashSet<(&str, &str)> = HashSet::new();
    let mut expected_apprecs: HashSet<(&str, &str)> = HashSet::new();
    for (i, m) in msgs.iter().enumerate() {
        let confirmed = confirmed.is(i);
        f.sent += usize::from(confirmed);
        for e in &m.expect {
            match e {
                Expect::Deliver { queue } => {
                    expected_copies.insert((queue.as_str(), m.msg_id.as_str()));
                    let n = copies
                        .get(&(queue.as_str(), m.msg_id.as_str()))
                        .copied()
                        .unwrap_or(0);
                    if n > 0 {
                        f.delivered += 1;
                        f.duplicated += n - 1;
                    } else if confirmed {
                        f.lost += 1;
                        problem(
                            &mut f,
                            format!("lost: {} ({}) never reached {queue}", m.msg_id, m.shape),
                        );
                    }
                }
                Expect::AppRec { queue } => {
                    expected_apprecs.insert((queue.as_str(), m.msg_id.as_str()));
                    let ids = apprecs.get(&(queue.as_str(), m.msg_id.as_str()));
                    let distinct = ids.map_or(0, HashMap::len);
                    let total: usize = ids.map_or(0, |i| i.values().sum());
                    f.apprecs += distinct;
                    f.duplicated += total.saturating_sub(distinct);
                    if distinct > 0 {
                        f.delivered += 1;
                    } else if confirmed {
                        f.lost += 1;
                        problem(
                            &mut f,
                            format!("lost: no AppRec for {} ({}) on {queue}", m.msg_id, m.shape),
                        );
                    }
                    if distinct > 1 {
                        f.second_apprecs += 1;
                        let ids: Vec<&str> =
                            ids.map(|i| i.keys().copied().collect()).unwrap_or_default();
                        problem(
                            &mut f,
                            format!(
                                "second AppRec: {} got {distinct} different AppRecs {ids:?}",
                                m.msg_id
                            ),
                        );
                    }
                }
            }
        }
    }
    for ((queue, id), n) in &copies {
        if !expected_copies.contains(&(*queue, *id)) {
            f.misplaced += n;
            problem(&mut f, format!("misplaced: {id} on {queue}"));
        }
    }
    for ((queue, id), ids) in &apprecs {
        if !expected_apprecs.contains(&(*queue, *id)) {
            f.misplaced += ids.values().sum::<usize>();
            problem(&mut f, format!("misplaced: an AppRec for {id} on {queue}"));
        }
    }
    let (count, named) = inversions(msgs, &confirmed.publish_order(), seen);
    f.inversions = count;
    for n in named {
        problem(&mut f, n);
    }
    for s in stray {
        f.misplaced += 1;
        problem(
            &mut f,
            format!(
                "misplaced: {} on {} ({})",
                s.message_id,
                s.queue,
                s.error_condition.as_deref().unwrap_or("no errorCondition")
            ),
        );
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding::ids::{HerId, MsgId};

    fn msg(id: &str, expect: Vec<Expect>) -> Outgoing {
        Outgoing {
            msg_id: MsgId::new(id),
            sender: HerId(82001),
            shape: "t",
            properties: lapin::BasicProperties::default(),
            body: Vec::new(),
            expect,
        }
    }

    fn seen(queue: &str, id: &str, kind: &str, original: Option<&str>) -> Seen {
        Seen {
            queue: queue.into(),
            message_id: id.into(),
            msg_type: kind.into(),
            original: original.map(Into::into),
            error_condition: None,
        }
    }

    fn deliver(q: &str) -> Expect {
        Expect::Deliver { queue: q.into() }
    }

    #[test]
    fn figures_count_lost_duplicated_second_apprecs_and_misplaced() {
        let msgs = vec![
            msg("a", vec![deliver("81001_async"), deliver("81002_async")]),
            msg(
                "b",
                vec![Expect::AppRec {
                    queue: "82001_async".into(),
                }],
            ),
            msg(
                "c",
                vec![Expect::AppRec {
                    queue: "82001_async".into(),
                }],
            ),
            msg("d", vec![deliver("81001_async")]),
        ];
        let confirmed = Confirmed::new(4);
        for i in 0..4 {
            confirmed.set_for_test(i);
        }
        let out = vec![
            seen("81001_async", "a", "DIALOG_FORESPORSEL", None),
            seen("81001_async", "a", "DIALOG_FORESPORSEL", None), // duplicate, same MsgId
            // a never reaches 81002_async: lost
            seen("82001_async", "x1", "APPREC", Some("b")),
            seen("82001_async", "x1", "APPREC", Some("b")), // the same AppRec again: a duplicate
            seen("82001_async", "y1", "APPREC", Some("c")),
            seen("82001_async", "y2", "APPREC", Some("c")), // a second, different AppRec
            seen("81002_async", "d", "DIALOG_NOTAT", None), // wrong recipient: misplaced, and d is lost
        ];
        let f = figures(&msgs, &confirmed, &out);
        assert_eq!(f.sent, 4);
        assert_eq!(f.delivered, 3, "a@81001, b, c");
        assert_eq!(f.lost, 2, "a@81002 and d@81001: {:?}", f.problems);
        assert_eq!(f.duplicated, 2);
        assert_eq!(f.apprecs, 3);
        assert_eq!(f.second_apprecs, 1);
        assert_eq!(f.misplaced, 1);
        assert!(!f.ok());
        assert_eq!(f.inversions, 0, "nothing was recorded as published");
        assert_eq!(f.tsv(), "4\t3\t2\t2\t3\t0");
        // The gateway's routing log: a@81002 was taken as confirmed (and never arrived), d@81001
        // never was.
        let log = "{\"msg_id\":\"a\",\"to_her\":81002,\"outcome\":\"delivered\"}\n{\"msg_id\":\"d\",\"to_her\":81001,\"outcome\":\"retry\"}\nnot json\n";
        let mut f = f;
        confirmed_not_arrived(&mut f, &msgs, &out, log);
        assert_eq!(f.confirmed_not_arrived, 1);
    }

    /// Four messages of 82001 to 81001 and one of 80001 to 81001, published in this order.
    fn ordered_batch() -> (Vec<Outgoing>, Vec<usize>) {
        let mut msgs: Vec<Outgoing> = ["m0", "m1", "m2", "m3"]
            .iter()
            .map(|id| msg(id, vec![deliver("81001_async")]))
            .collect();
        let mut other = msg("h0", vec![deliver("81001_async")]);
        other.sender = HerId(80001);
        msgs.push(other);
        (msgs, vec![0, 1, 4, 2, 3])
    }

    fn arrived(ids: &[&str]) -> Vec<Seen> {
        ids.iter()
            .map(|id| seen("81001_async", id, "DIALOG_FORESPORSEL", None))
            .collect()
    }

    #[test]
    fn messages_in_publish_order_have_no_inversion() {
        let (msgs, published) = ordered_batch();
        // Another sender's message in between is no inversion: order is per sender.
        let (n, named) = inversions(&msgs, &published, &arrived(&["h0", "m0", "m1", "m2", "m3"]));
        assert_eq!((n, named.len()), (0, 0), "{named:?}");
    }

    #[test]
    fn every_pair_out_of_publish_order_is_one_inversion_and_is_named() {
        let (msgs, published) = ordered_batch();
        // m3 overtakes m1 and m2: two pairs; m2 before m1: a third.
        let (n, named) = inversions(&msgs, &published, &arrived(&["m0", "m3", "m2", "m1", "h0"]));
        assert_eq!(n, 3, "{named:?}");
        assert_eq!(
            named,
            [
                "inversion: 82001 → 81001_async: m3 (published #5) arrived before m2 (published #4)",
                "inversion: 82001 → 81001_async: m3 (published #5) arrived before m1 (published #2)",
                "inversion: 82001 → 81001_async: m2 (published #4) arrived before m1 (published #2)",
            ]
        );
        // The figures carry it, and it fails the run.
        let confirmed = Confirmed::new(msgs.len());
        for &i in &published {
            confirmed.published(i);
            confirmed.set_for_test(i);
        }
        let f = figures(&msgs, &confirmed, &arrived(&["m0", "m3", "m2", "m1", "h0"]));
        assert_eq!((f.lost, f.inversions), (0, 3));
        assert!(!f.ok());
        assert!(f.tsv().ends_with("\t3"), "{}", f.tsv());
    }

    #[test]
    fn a_duplicate_after_the_first_arrival_is_no_inversion() {
        let (msgs, published) = ordered_batch();
        // m1 again after m3 (a republish after a crash): allowed, it is the same MsgId.
        let seen = arrived(&["m0", "m1", "m2", "m1", "m3", "m1", "h0"]);
        assert_eq!(inversions(&msgs, &published, &seen).0, 0);
        // But a duplicate that comes first still places that MsgId first.
        let seen = arrived(&["m0", "m2", "m1", "m2", "m3"]);
        assert_eq!(inversions(&msgs, &published, &seen).0, 1);
    }

    #[test]
    fn retried_publishes_and_apprecs_are_not_ordered() {
        let (msgs, _) = ordered_batch();
        // m1 published twice (a lost confirm): its place in the intake is not known.
        let published = vec![0, 1, 2, 1, 3, 4];
        let seen = arrived(&["m0", "m2", "m3", "m1"]);
        assert_eq!(inversions(&msgs, &published, &seen).0, 0);
        // AppRecs and error-queue entries are the gateway's, not the sender's messages.
        let mut seen = arrived(&["m2", "m0"]);
        seen[0].msg_type = "APPREC".into();
        assert_eq!(inversions(&msgs, &[0, 1, 2, 3, 4], &seen).0, 0);
    }

    #[test]
    fn unconfirmed_messages_are_not_sent_and_not_lost_and_error_queues_are_misplaced() {
        let msgs = vec![msg("a", vec![deliver("81001_async")])];
        let mut e = seen("82001_error", "a", "DIALOG_FORESPORSEL", Some("a"));
        e.error_condition = Some("transport:unknown-receiver".into());
        let f = figures(&msgs, &Confirmed::new(1), &[e]);
        assert_eq!((f.sent, f.lost, f.misplaced), (0, 0, 1));
        assert!(
            f.problems[0].contains("transport:unknown-receiver"),
            "{:?}",
            f.problems
        );
    }
}
