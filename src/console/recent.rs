//! Recent routing decisions for the console: a bounded ring fed by following the routing-log file,
//! per-minute counts by outcome and by partner, and search (the ring, or the whole file on request).
//!
//! Input: the JSON-lines file the gateway appends to (`paths.routing_log`), read from its last
//! [`TAIL_BYTES`] at start and then followed (a rotated or truncated file is read from its start).
//! Output: [`Recent::search`], [`Recent::per_minute`]. Lines that are not decisions are skipped.
//! Memory is bounded: [`RING`] decisions, [`MINUTES`] minutes of counts, [`PARTNERS_PER_MINUTE`]
//! partners per minute (the rest are counted as "other"), and a file search keeps at most its limit.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::gateway::metrics::{OUTCOMES, OUTCOME_COUNT};
use crate::gateway::routing_log::{Decision, Outcome};
use crate::ids::HerId;

/// Decisions kept in memory.
pub const RING: usize = 20_000;
/// Minutes of per-minute counts kept.
pub const MINUTES: usize = 60;
/// Partners counted one by one per minute; more are added up as "other".
pub const PARTNERS_PER_MINUTE: usize = 500;
/// How much of the end of the file is read at start.
pub const TAIL_BYTES: u64 = 8 << 20;

/// The snake_case name of an outcome, as in the routing log and the metrics.
pub fn outcome_name(o: Outcome) -> &'static str {
    OUTCOMES
        .iter()
        .find(|(x, _)| *x == o)
        .map_or("?", |(_, name)| name)
}

/// The outcome named `s` (as in the routing log).
pub fn outcome_named(s: &str) -> Option<Outcome> {
    OUTCOMES
        .iter()
        .find(|(_, name)| *name == s)
        .map(|(o, _)| *o)
}

/// Counts of one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Minute {
    pub by_outcome: [u64; OUTCOME_COUNT],
    /// Per sender HER-id (`None`: unknown sender, or more partners than [`PARTNERS_PER_MINUTE`]).
    pub by_partner: HashMap<Option<HerId>, [u64; OUTCOME_COUNT]>,
}

fn slot(o: Outcome) -> usize {
    OUTCOMES.iter().position(|(x, _)| *x == o).unwrap_or(0)
}

/// What to look for. Empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Matches the sender or the receiver.
    pub her: Option<HerId>,
    pub msg_id: Option<String>,
    /// Message type (code list 8279), exact, case-insensitive.
    pub msg_type: Option<String>,
    pub outcome: Option<Outcome>,
    /// Decisions at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Decisions at or before this time.
    pub until: Option<OffsetDateTime>,
}

fn parse_ts(ts: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(ts, &Rfc3339).ok()
}

impl Filter {
    pub fn matches(&self, d: &Decision) -> bool {
        if let Some(h) = self.her {
            if d.from_her != Some(h) && d.to_her != Some(h) {
                return false;
            }
        }
        if let Some(m) = &self.msg_id {
            if d.msg_id.as_ref().map(|x| x.as_str()) != Some(m.as_str()) {
                return false;
            }
        }
        if let Some(t) = &self.msg_type {
            if !d
                .msg_type
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(t))
            {
                return false;
            }
        }
        if self.outcome.is_some_and(|o| o != d.outcome) {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(at) = parse_ts(&d.ts) else {
                return false;
            };
            if self.since.is_some_and(|s| at < s) || self.until.is_some_and(|u| at > u) {
                return false;
            }
        }
        true
    }
}

struct Inner {
    ring: VecDeque<Decision>,
    /// Unix minute → counts.
    minutes: BTreeMap<i64, Minute>,
    /// Whether decisions older than the ring exist in the file.
    dropped: bool,
}

/// The recent decisions and their counts. Shared between the follower and the pages.
pub struct Recent {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl Recent {
    pub fn new(path: PathBuf) -> Recent {
        Recent {
            path,
            inner: Mutex::new(Inner {
                ring: VecDeque::new(),
                minutes: BTreeMap::new(),
                dropped: false,
            }),
        }
    }

    /// The routing-log file followed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Adds one line of the routing log (skipped when it is not a decision).
    pub fn push_line(&self, line: &str) {
        if let Ok(d) = serde_json::from_str::<Decision>(line) {
            self.push(d);
        }
    }

    pub fn push(&self, d: Decision) {
        let minute = parse_ts(&d.ts).map(|t| t.unix_timestamp().div_euclid(60));
        let mut g = self.lock();
        if let Some(m) = minute {
            let newest = g.minutes.keys().next_back().copied().unwrap_or(m).max(m);
            if m > newest - MINUTES as i64 {
                let e = g.minutes.entry(m).or_default();
                e.by_outcome[slot(d.outcome)] += 1;
                let key = if e.by_partner.len() < PARTNERS_PER_MINUTE
                    || e.by_partner.contains_key(&d.from_her)
                {
                    d.from_her
                } else {
                    None
                };
                e.by_partner.entry(key).or_default()[slot(d.outcome)] += 1;
            }
            while g
                .minutes
                .keys()
                .next()
                .is_some_and(|k| *k <= newest - MINUTES as i64)
            {
                g.minutes.pop_first();
            }
        }
        if g.ring.len() == RING {
            g.ring.pop_front();
            g.dropped = true;
        }
        g.ring.push_back(d);
    }

    /// The newest decisions matching `filter`, newest first, at most `limit`; and whether older
    /// decisions exist only in the file.
    pub fn search(&self, filter: &Filter, limit: usize) -> (Vec<Decision>, bool) {
        let g = self.lock();
        let found = g
            .ring
            .iter()
            .rev()
            .filter(|d| filter.matches(d))
            .take(limit)
            .cloned()
            .collect();
        (found, g.dropped)
    }

    /// Searches the whole file (older than the ring too): the newest `limit` matches, newest
    /// first. Streams the file; memory stays at `limit` decisions.
    pub fn search_file(&self, filter: &Filter, limit: usize) -> std::io::Result<Vec<Decision>> {
        let f = File::open(&self.path)?;
        let mut kept: VecDeque<Decision> = VecDeque::with_capacity(limit.min(4096));
        let mut reader = BufReader::new(f);
        let mut buf = String::new();
        loop {
            buf.clear();
            if reader.read_line(&mut buf)? == 0 {
                break;
            }
            let Ok(d) = serde_json::from_str::<Decision>(buf.trim_end()) else {
                continue;
            };
            if filter.matches(&d) {
                if kept.len() == limit {
                    kept.pop_front();
                }
                kept.push_back(d);
            }
        }
        Ok(kept.into_iter().rev().collect())
    }

    /// The counts of the last `n` minutes up to the minute of `now`, oldest first (empty minutes included).
    pub fn per_minute(&self, now: OffsetDateTime, n: usize) -> Vec<(i64, Minute)> {
        let g = self.lock();
        let last = now.unix_timestamp().div_euclid(60);
        (0..n as i64)
            .rev()
            .map(|back| {
                let m = last - back;
                (m, g.minutes.get(&m).cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Reads the end of the file, then follows it for as long as the task runs. A missing file is
    /// waited for (the gateway creates it on its first decision).
    pub async fn follow(self: std::sync::Arc<Self>) {
        let mut pos: Option<u64> = None;
        let mut partial = String::new();
        loop {
            let me = self.clone();
            let start = pos;
            let carried = std::mem::take(&mut partial);
            let step = tokio::task::spawn_blocking(move || me.read_from(start, carried)).await;
            match step {
                Ok(Ok((p, rest))) => {
                    pos = Some(p);
                    partial = rest;
                }
                Ok(Err(_)) | Err(_) => pos = None,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// One pass of [`Recent::follow`]: from `start` (None: the last [`TAIL_BYTES`]) to the end.
    /// Returns the new position and an unfinished last line.
    fn read_from(&self, start: Option<u64>, mut partial: String) -> std::io::Result<(u64, String)> {
        let mut f = File::open(&self.path)?;
        let len = f.metadata()?.len();
        let (mut pos, skip_first) = match start {
            Some(p) if p <= len => (p, false),
            Some(_) => {
                partial.clear();
                (0, false) // truncated or replaced
            }
            None => {
                let p = len.saturating_sub(TAIL_BYTES);
                if p > 0 {
                    self.lock().dropped = true;
                }
                (p, p > 0)
            }
        };
        if pos == len {
            return Ok((pos, partial));
        }
        f.seek(SeekFrom::Start(pos))?;
        let mut reader = BufReader::new(f);
        let mut buf = String::new();
        let mut first = skip_first;
        loop {
            buf.clear();
            let n = reader.read_line(&mut buf)?;
            if n == 0 {
                break;
            }
            pos += n as u64;
            if !buf.ends_with('\n') {
                partial.push_str(&buf);
                continue;
            }
            if first {
                first = false; // starts mid-line
                continue;
            }
            partial.push_str(buf.trim_end_matches('\n'));
            self.push_line(&partial);
            partial.clear();
        }
        Ok((pos, partial))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::MsgId;
    use std::io::Write;

    fn decision(i: u32, outcome: Outcome, ts: &str) -> Decision {
        Decision {
            ts: ts.into(),
            msg_id: Some(MsgId::new(format!("m{i}"))),
            msg_type: Some("DIALOG_NOTAT".into()),
            from_her: Some(HerId(1000 + i % 3)),
            to_her: Some(HerId(2000)),
            outcome,
            code: None,
            reason: None,
            elapsed_ms: 1.5,
        }
    }

    #[test]
    fn search_filters_and_the_ring_is_bounded() {
        let r = Recent::new("/nonexistent".into());
        for i in 0..(RING as u32 + 10) {
            let o = if i % 2 == 0 {
                Outcome::Delivered
            } else {
                Outcome::Rejected
            };
            r.push(decision(i, o, "2026-11-23T10:00:30Z"));
        }
        let (all, older) = r.search(&Filter::default(), usize::MAX);
        assert_eq!(all.len(), RING);
        assert!(older);
        assert_eq!(
            all[0].msg_id.as_ref().unwrap().as_str(),
            format!("m{}", RING + 9)
        );
        let f = Filter {
            her: Some(HerId(1001)),
            outcome: Some(Outcome::Rejected),
            ..Filter::default()
        };
        let (found, _) = r.search(&f, 5);
        assert_eq!(found.len(), 5);
        assert!(found
            .iter()
            .all(|d| d.from_her == Some(HerId(1001)) && d.outcome == Outcome::Rejected));
        let f = Filter {
            since: parse_ts("2026-11-23T10:01:00Z"),
            ..Filter::default()
        };
        assert!(r.search(&f, 5).0.is_empty());
    }

    #[test]
    fn per_minute_counts_by_outcome_and_partner_and_forgets_old_minutes() {
        let r = Recent::new("/nonexistent".into());
        r.push(decision(0, Outcome::Delivered, "2026-11-23T10:00:01Z"));
        r.push(decision(3, Outcome::Delivered, "2026-11-23T10:00:59Z"));
        r.push(decision(1, Outcome::Rejected, "2026-11-23T10:01:00Z"));
        let now = parse_ts("2026-11-23T10:01:30Z").unwrap();
        let m = r.per_minute(now, 3);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1].1.by_outcome[slot(Outcome::Delivered)], 2);
        assert_eq!(
            m[1].1.by_partner[&Some(HerId(1000))][slot(Outcome::Delivered)],
            2
        );
        assert_eq!(m[2].1.by_outcome[slot(Outcome::Rejected)], 1);
        assert_eq!(m[0].1, Minute::default());
        r.push(decision(1, Outcome::Rejected, "2026-11-23T12:00:00Z"));
        assert!(r
            .per_minute(now, 3)
            .iter()
            .all(|(_, m)| *m == Minute::default()));
    }

    #[test]
    fn follows_the_file_and_searches_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("routing.jsonl");
        let mut f = std::fs::File::create(&p).unwrap();
        let line = |i| {
            serde_json::to_string(&decision(i, Outcome::Delivered, "2026-11-23T10:00:00Z")).unwrap()
        };
        writeln!(f, "{}", line(1)).unwrap();
        writeln!(f, "not a decision").unwrap();
        write!(f, "{}", &line(2)[..10]).unwrap();
        let r = Recent::new(p.clone());
        let (pos, partial) = r.read_from(None, String::new()).unwrap();
        assert_eq!(r.search(&Filter::default(), 10).0.len(), 1);
        writeln!(f, "{}", &line(2)[10..]).unwrap();
        let (pos2, partial) = r.read_from(Some(pos), partial).unwrap();
        assert!(pos2 > pos && partial.is_empty());
        let (found, older) = r.search(&Filter::default(), 10);
        assert_eq!(found.len(), 2);
        assert!(!older);
        assert_eq!(found[0].msg_id.as_ref().unwrap().as_str(), "m2");
        let f2 = Filter {
            msg_id: Some("m1".into()),
            ..Filter::default()
        };
        assert_eq!(r.search_file(&f2, 10).unwrap().len(), 1);
        // Truncated: read again from the start.
        std::fs::write(&p, format!("{}\n", line(3))).unwrap();
        r.read_from(Some(pos2), String::new()).unwrap();
        assert_eq!(
            r.search(&Filter::default(), 10).0[0]
                .msg_id
                .as_ref()
                .unwrap()
                .as_str(),
            "m3"
        );
    }
}
