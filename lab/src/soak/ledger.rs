//! The soak's ledger: what was published and what came out, kept as it streams (a million
//! messages are never held in memory, only their ids and a few figures each).
//!
//! Input: every message handed to the intake ([`Ledger::expect`]), every AppRec a recipient sends
//! ([`Ledger::answered`]), and every message taken from a queue ([`Ledger::seen`]). Output:
//! [`Tally`] — published, delivered, duplicated, lost, inversions, AppRecs sent and forwarded,
//! second AppRecs, refused and misplaced messages. Failure: none; anything unexpected is counted
//! and the first few are named.
//!
//! Order: each sender's messages must first arrive at each recipient in the order the sender
//! published them (DESIGN §3, order); a first arrival with a lower sequence number than one seen
//! before on that (sender, recipient) is an inversion. A second copy of a MsgId is a duplicate
//! (the protocol's only allowed repeat), never an inversion. An AppRec is final (HIS 80415:2012
//! §3.2): a second, different AppRec forwarded for one message is a failure.

use std::collections::{HashMap, HashSet};

use helsemelding::ids::HerId;

/// A MsgId as the ledger keeps it: the UUID's 128 bits (every soak id is a UUID).
pub fn key(id: &str) -> Option<u128> {
    uuid::Uuid::parse_str(id).ok().map(|u| u.as_u128())
}

/// What the ledger remembers of one published message until it arrives.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub sender: HerId,
    pub recipient: HerId,
    /// The sender's own publish sequence number.
    pub seq: u64,
    /// Whether the recipient answers it with an AppRec.
    pub answer: bool,
}

/// The figures so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub published: u64,
    pub delivered: u64,
    pub duplicated: u64,
    /// Published and not (yet) on its recipient's queue.
    pub outstanding: u64,
    pub inversions: u64,
    pub apprecs_sent: u64,
    pub apprecs_forwarded: u64,
    /// AppRecs sent and not (yet) forwarded to the original sender.
    pub apprecs_outstanding: u64,
    /// A second, different AppRec for one message on the sender's queue.
    pub second_apprecs: u64,
    /// Anything on an error queue or the dead-letter queue.
    pub refused: u64,
    /// A message on a queue it does not belong to, or one the ledger never sent.
    pub misplaced: u64,
}

/// Where a message was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    /// `{her}_async`.
    Inbox(HerId),
    /// `{her}_error` or `gateway_dead_letter`.
    Refused,
}

/// The ledger (behind a mutex in the run; every call is short).
#[derive(Debug, Default)]
pub struct Ledger {
    pending: HashMap<u128, Expected>,
    arrived: HashSet<u128>,
    last_seq: HashMap<(HerId, HerId), u64>,
    /// AppRec id → (original MsgId, the original's sender).
    apprecs: HashMap<u128, (u128, HerId)>,
    /// Original MsgId → the AppRec forwarded for it.
    forwarded: HashMap<u128, u128>,
    tally: Tally,
    /// The first few problems, named.
    pub problems: Vec<String>,
}

const MAX_PROBLEMS: usize = 20;

impl Ledger {
    fn problem(&mut self, p: String) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(p);
        }
    }

    /// A message about to be published (recorded first, so its arrival can never come before).
    pub fn expect(&mut self, id: u128, e: Expected) {
        self.pending.insert(id, e);
        self.tally.published += 1;
    }

    /// An AppRec about to be published by `e.recipient` for `original`.
    pub fn answered(&mut self, apprec: u128, original: u128, sender: HerId) {
        self.apprecs.insert(apprec, (original, sender));
        self.tally.apprecs_sent += 1;
    }

    /// A message taken from `queue`: `id` is its `message_id`. Returns the expectation of a
    /// message arriving for the first time at its recipient (the recipient answers those marked).
    pub fn seen(&mut self, queue: Queue, id: &str) -> Option<Expected> {
        let her = match queue {
            Queue::Refused => {
                self.tally.refused += 1;
                self.problem(format!("refused: {id}"));
                return None;
            }
            Queue::Inbox(her) => her,
        };
        let Some(k) = key(id) else {
            self.tally.misplaced += 1;
            self.problem(format!("not a soak id on {her}_async: {id}"));
            return None;
        };
        if let Some((original, sender)) = self.apprecs.get(&k).copied() {
            if sender != her {
                self.tally.misplaced += 1;
                self.problem(format!("AppRec {id} on {her}_async, not {sender}_async"));
                return None;
            }
            match self.forwarded.get(&original) {
                None => {
                    self.forwarded.insert(original, k);
                    self.tally.apprecs_forwarded += 1;
                }
                Some(first) if *first == k => self.tally.duplicated += 1,
                Some(_) => {
                    self.tally.second_apprecs += 1;
                    self.problem(format!("second AppRec {id} for one message"));
                }
            }
            return None;
        }
        if let Some(e) = self.pending.get(&k).copied() {
            if e.recipient != her {
                self.tally.misplaced += 1;
                self.problem(format!("{id} on {her}_async, not {}_async", e.recipient));
                return None;
            }
            self.pending.remove(&k);
            self.arrived.insert(k);
            self.tally.delivered += 1;
            let last = self.last_seq.entry((e.sender, e.recipient)).or_insert(0);
            if e.seq < *last {
                self.tally.inversions += 1;
                let p = format!(
                    "inversion: {id} (#{} of {}) after #{} at {}",
                    e.seq, e.sender, last, e.recipient
                );
                self.problem(p);
            } else {
                *last = e.seq;
            }
            return Some(e);
        }
        if self.arrived.contains(&k) {
            self.tally.duplicated += 1;
        } else {
            self.tally.misplaced += 1;
            self.problem(format!("unknown message {id} on {her}_async"));
        }
        None
    }

    /// Published and not yet arrived.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    pub fn tally(&self) -> Tally {
        let mut t = self.tally.clone();
        t.outstanding = self.pending.len() as u64;
        t.apprecs_outstanding = t.apprecs_sent.saturating_sub(t.apprecs_forwarded);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> String {
        uuid::Uuid::from_u128(n).to_string()
    }

    #[test]
    fn arrivals_duplicates_inversions_and_second_apprecs_are_counted() {
        let (gp, home) = (HerId(83001), HerId(81001));
        let mut l = Ledger::default();
        for seq in 1..=3u64 {
            let answer = seq == 1;
            l.expect(
                seq as u128,
                Expected {
                    sender: gp,
                    recipient: home,
                    seq,
                    answer,
                },
            );
        }
        assert!(l.seen(Queue::Inbox(home), &id(1)).is_some_and(|e| e.answer));
        assert!(l.seen(Queue::Inbox(home), &id(3)).is_some());
        assert!(l.seen(Queue::Inbox(home), &id(2)).is_some());
        assert!(l.seen(Queue::Inbox(home), &id(2)).is_none());
        l.answered(100, 1, gp);
        l.answered(101, 1, gp);
        l.seen(Queue::Inbox(gp), &id(100));
        l.seen(Queue::Inbox(gp), &id(100));
        l.seen(Queue::Inbox(gp), &id(101));
        l.seen(Queue::Inbox(home), "not-a-uuid");
        l.seen(Queue::Refused, &id(7));
        let t = l.tally();
        assert_eq!(
            (t.published, t.delivered, t.outstanding, t.inversions),
            (3, 3, 0, 1)
        );
        assert_eq!(
            (t.duplicated, t.second_apprecs, t.apprecs_forwarded),
            (2, 1, 1)
        );
        assert_eq!((t.apprecs_sent, t.apprecs_outstanding), (2, 1));
        assert_eq!((t.misplaced, t.refused), (1, 1));
        assert!(
            l.problems.iter().any(|p| p.starts_with("inversion")),
            "{:?}",
            l.problems
        );
    }
}
