//! The soak's samples and its verdict.
//!
//! Input: the gateway's pid (`/proc/<pid>/status` for the resident set and threads,
//! `/proc/<pid>/fd` for open files), its state directory (the delivery store's size on disk), its
//! `/metrics` text, and the ledger's [`Tally`]. Output: one [`Sample`] every few seconds, and the
//! [`Verdict`] over all of them. Failure: a figure that cannot be read is 0 in its sample (a gone
//! process reads as 0 everywhere, which no verdict passes).
//!
//! "Flat" (resident set, open files, threads): after warm-up (two retention periods of the
//! gateway's clock, so the store has been filled and pruned at least once), no sample of the load
//! exceeds the first one after warm-up by more than 10 % (rounded up to a whole count: 10 threads
//! after 9 is within). Falling is not a leak and does not count against it.
//!
//! "Bounded by retention" (the store, issue 16 item 4): at every sample after warm-up the store
//! holds no more records than the gateway received within the last retention period (plus a few
//! seconds of slack for the pass that prunes), and once retention has passed for the last message
//! it holds none; its file stops growing (the highest size in the second half after warm-up is not
//! above the highest in the first half). The file is not held to 10 %: redb grows it by doubling
//! while it is under 4 GiB and trims only a free tail, so a steady store can sit at either side of
//! a power of two (a 1,000,000-message soak went 50 → 101 → 75 MB with the records flat).

use std::path::Path;

use serde::Serialize;

use super::ledger::Tally;

/// The figures at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    /// Wall seconds since the first publish.
    pub t: f64,
    /// The gateway's time (RFC 3339).
    pub gateway_time: String,
    pub rss_kb: u64,
    pub fds: u64,
    pub threads: u64,
    /// Bytes of every file under the state directory (the delivery store, the CRL copies).
    pub store_bytes: u64,
    /// Records in the delivery store (`helsemelding_store_records`, as of the gateway's last
    /// housekeeping pass).
    pub store_records: u64,
    /// Messages the gateway received so far (`helsemelding_received_total`).
    pub received: u64,
    pub overdue: u64,
    pub pruned: u64,
    pub crl_updates: u64,
    pub crl_stale: bool,
    pub requeued: u64,
    pub published: u64,
    pub delivered: u64,
    pub apprecs_forwarded: u64,
    /// Still in the load (publishing or waiting for the last arrivals), not the final wait.
    pub load: bool,
}

/// Open file descriptors of `pid`.
pub fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Bytes of every regular file under `dir`, recursively.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The value of the sample line `name value` in Prometheus text (labels part of `name`), or 0.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0, |v| v.max(0.0) as u64)
}

/// The gateway's figures from `/proc` and `/metrics` into `s`.
pub fn fill(s: &mut Sample, pid: u32, state: &Path, metrics: &str, tally: &Tally, ca: &str) {
    s.rss_kb = crate::bench::proc_status_kb(pid, "VmRSS").unwrap_or(0);
    s.threads = crate::bench::proc_status_kb(pid, "Threads").unwrap_or(0);
    s.fds = fds(pid);
    s.store_bytes = dir_bytes(state);
    s.store_records = metric(metrics, "helsemelding_store_records");
    s.received = metric(metrics, "helsemelding_received_total");
    s.overdue = metric(metrics, "helsemelding_decisions_total{outcome=\"overdue\"}");
    s.pruned = metric(metrics, "helsemelding_pruned_total");
    s.requeued = metric(metrics, "helsemelding_requeued_total");
    s.crl_updates = metric(
        metrics,
        &format!("helsemelding_crl_updates_total{{ca=\"{ca}\"}}"),
    );
    s.crl_stale = metric(metrics, &format!("helsemelding_crl_stale{{ca=\"{ca}\"}}")) == 1;
    s.published = tally.published;
    s.delivered = tally.delivered;
    s.apprecs_forwarded = tally.apprecs_forwarded;
}

/// One figure's course after warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct Flatness {
    pub figure: &'static str,
    /// The first sample after warm-up, the highest and the last of the load after it.
    pub at_warm_up: u64,
    pub max: u64,
    pub end: u64,
    /// (max − at_warm_up) / at_warm_up, in per cent.
    pub growth_pct: f64,
    pub flat: bool,
}

/// The soak's judgement.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub lost: u64,
    pub apprecs_lost: u64,
    pub second_apprecs: u64,
    pub inversions: u64,
    pub refused: u64,
    pub misplaced: u64,
    /// New CRLs of the soak's CA taken into use by the gateway (`helsemelding_crl_updates_total`).
    pub crl_updates: u64,
    /// Times the CRL was seen stale in `/metrics` and then replaced.
    pub crl_stale_refreshed: u64,
    /// Recipients reported overdue: at least every message not answered.
    pub overdue: u64,
    pub unanswered: u64,
    pub pruned: u64,
    /// Records left in the store once retention had passed for the last message (must be 0).
    pub records_left: Option<u64>,
    /// Wall seconds of warm-up; `None` when the load ended before it (flatness not judged).
    pub warm_up_s: f64,
    pub flatness: Vec<Flatness>,
    pub store: StoreBound,
    /// Everything that holds at any length: lost 0, no second AppRec, no inversion, nothing
    /// refused or misplaced, the CRL turned stale and was refreshed, at least as many overdue as
    /// unanswered, pruning happened and nothing outlived retention.
    pub invariants_hold: bool,
    /// Resident set, open files and threads flat within 10 % after warm-up, and the store bounded
    /// by retention (false when the load was shorter than warm-up).
    pub flat: bool,
    pub passed: bool,
    pub problems: Vec<String>,
}

/// Flatness of `figure` over the load samples from `warm_up_s` on.
pub fn flatness(
    samples: &[Sample],
    warm_up_s: f64,
    figure: &'static str,
    f: fn(&Sample) -> u64,
) -> Option<Flatness> {
    let after: Vec<u64> = samples
        .iter()
        .filter(|s| s.load && s.t >= warm_up_s)
        .map(f)
        .collect();
    let (first, last) = (*after.first()?, *after.last()?);
    if after.len() < 2 {
        return None;
    }
    let max = after.iter().copied().max().unwrap_or(first);
    let growth_pct = if first == 0 {
        if max == 0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        (max as f64 - first as f64) * 100.0 / first as f64
    };
    Some(Flatness {
        figure,
        at_warm_up: first,
        max,
        end: last,
        growth_pct,
        // Rounded up to a whole count: one more thread than 9 is not a leak.
        flat: max <= first + first.div_ceil(10),
    })
}

/// The store after warm-up (see the module documentation).
#[derive(Debug, Clone, Default, Serialize)]
pub struct StoreBound {
    /// Samples judged (after warm-up, during the load, a retention period of samples before them).
    pub samples: usize,
    /// The most records any of them held, and what the bound allowed at that sample.
    pub max_records: u64,
    pub allowed_at_max: u64,
    /// Samples holding more records than the gateway received within retention (+ slack).
    pub over_bound: usize,
    /// The highest file size in the first and the second half after warm-up.
    pub file_first_half_max: u64,
    pub file_second_half_max: u64,
    pub bounded: bool,
}

/// Wall seconds of slack on the retention window: the prune runs every housekeeping pass, and the
/// record count is as of the last one.
const PRUNE_SLACK_S: f64 = 5.0;

/// Whether the store stays within retention after `warm_up_s` (`retention_s`: retention in wall
/// seconds). `None` when too few samples came after warm-up to judge.
pub fn store_bound(samples: &[Sample], warm_up_s: f64, retention_s: f64) -> Option<StoreBound> {
    let load: Vec<&Sample> = samples.iter().filter(|s| s.load).collect();
    let after: Vec<&Sample> = load.iter().copied().filter(|s| s.t >= warm_up_s).collect();
    if after.len() < 2 {
        return None;
    }
    let mut b = StoreBound::default();
    for s in &after {
        // Received before the window began: the latest sample at or before its start (an
        // earlier sample received less, so the bound only grows by it).
        let window_start = s.t - retention_s - PRUNE_SLACK_S;
        let Some(before) = load.iter().rev().find(|e| e.t <= window_start) else {
            continue;
        };
        let allowed = s.received.saturating_sub(before.received);
        b.samples += 1;
        if s.store_records >= b.max_records {
            b.max_records = s.store_records;
            b.allowed_at_max = allowed;
        }
        if s.store_records > allowed {
            b.over_bound += 1;
        }
    }
    let (first, second) = after.split_at(after.len() / 2);
    b.file_first_half_max = first.iter().map(|s| s.store_bytes).max().unwrap_or(0);
    b.file_second_half_max = second.iter().map(|s| s.store_bytes).max().unwrap_or(0);
    b.bounded =
        b.samples > 0 && b.over_bound == 0 && b.file_second_half_max <= b.file_first_half_max;
    Some(b)
}

/// A sampled figure by name.
type Figure = (&'static str, fn(&Sample) -> u64);

/// The verdict over the samples, the final tally and what else the run saw.
pub fn verdict(
    samples: &[Sample],
    tally: &Tally,
    crl_stale_refreshed: u64,
    records_left: Option<u64>,
    (warm_up_s, retention_s): (f64, f64),
    mut problems: Vec<String>,
) -> Verdict {
    let last = samples.last().cloned().unwrap_or_default();
    let figures: [Figure; 3] = [
        ("rss_kb", |s| s.rss_kb),
        ("fds", |s| s.fds),
        ("threads", |s| s.threads),
    ];
    let flatness: Vec<Flatness> = figures
        .iter()
        .filter_map(|(name, f)| flatness(samples, warm_up_s, name, *f))
        .collect();
    let store = store_bound(samples, warm_up_s, retention_s);
    let store_bounded = store.as_ref().is_some_and(|b| b.bounded);
    let flat = flatness.len() == figures.len() && flatness.iter().all(|f| f.flat) && store_bounded;
    let lost = tally.outstanding;
    let unanswered = tally.published.saturating_sub(tally.apprecs_sent);
    let checks = [
        (lost == 0, format!("{lost} message(s) lost")),
        (
            tally.apprecs_outstanding == 0,
            format!("{} AppRec(s) not forwarded", tally.apprecs_outstanding),
        ),
        (
            tally.second_apprecs == 0,
            format!("{} second AppRec(s)", tally.second_apprecs),
        ),
        (
            tally.inversions == 0,
            format!("{} inversion(s)", tally.inversions),
        ),
        (
            tally.refused == 0,
            format!("{} refused or dead-lettered", tally.refused),
        ),
        (
            tally.misplaced == 0,
            format!("{} misplaced", tally.misplaced),
        ),
        (
            last.crl_updates >= 2,
            format!(
                "the CRL was taken into use {} time(s), not refreshed",
                last.crl_updates
            ),
        ),
        (
            crl_stale_refreshed >= 1,
            "the CRL never turned stale and was refreshed".to_owned(),
        ),
        // At least: an AppRec later than the timeout (a loaded machine, a fast clock) makes an
        // answered message overdue too, which is right.
        (
            last.overdue >= 1 && last.overdue >= unanswered,
            format!("{} overdue of {unanswered} unanswered", last.overdue),
        ),
        (last.pruned >= 1, "nothing was pruned".to_owned()),
        (
            records_left == Some(0),
            format!("records left past retention: {records_left:?}"),
        ),
    ];
    let mut invariants_hold = true;
    for (ok, why) in checks {
        if !ok {
            invariants_hold = false;
            problems.push(why);
        }
    }
    for f in flatness.iter().filter(|f| !f.flat) {
        problems.push(format!(
            "{} grew {:.1} % after warm-up",
            f.figure, f.growth_pct
        ));
    }
    match &store {
        Some(b) if b.over_bound > 0 => problems.push(format!(
            "the store held more records than retention allows at {} sample(s) (at most {} where {} were received within retention)",
            b.over_bound, b.max_records, b.allowed_at_max
        )),
        Some(b) if b.file_second_half_max > b.file_first_half_max => problems.push(format!(
            "the store's file kept growing: {} bytes at most in the first half after warm-up, {} in the second",
            b.file_first_half_max, b.file_second_half_max
        )),
        Some(b) if b.samples == 0 => {
            problems.push("no sample had a retention period of load before it".into())
        }
        Some(_) => {}
        None => problems.push("too few samples after warm-up to judge the store".into()),
    }
    Verdict {
        lost,
        apprecs_lost: tally.apprecs_outstanding,
        second_apprecs: tally.second_apprecs,
        inversions: tally.inversions,
        refused: tally.refused,
        misplaced: tally.misplaced,
        crl_updates: last.crl_updates,
        crl_stale_refreshed,
        overdue: last.overdue,
        unanswered,
        pruned: last.pruned,
        records_left,
        warm_up_s,
        flatness,
        store: store.unwrap_or_default(),
        invariants_hold,
        flat,
        passed: invariants_hold && flat,
        problems,
    }
}

/// The table header and one row per sample.
pub fn table_header() -> String {
    format!(
        "{:>7} {:>20} {:>9} {:>9} {:>8} {:>5} {:>4} {:>10} {:>8} {:>8} {:>8} {:>5} {:>5}",
        "t_s",
        "gateway_time",
        "published",
        "delivered",
        "rss_mb",
        "fds",
        "thr",
        "store_kb",
        "records",
        "overdue",
        "pruned",
        "crl",
        "stale"
    )
}

pub fn table_row(s: &Sample) -> String {
    format!(
        "{:>7.0} {:>20} {:>9} {:>9} {:>8.1} {:>5} {:>4} {:>10} {:>8} {:>8} {:>8} {:>5} {:>5}",
        s.t,
        s.gateway_time.get(..19).unwrap_or(&s.gateway_time),
        s.published,
        s.delivered,
        s.rss_kb as f64 / 1024.0,
        s.fds,
        s.threads,
        s.store_bytes / 1024,
        s.store_records,
        s.overdue,
        s.pruned,
        s.crl_updates,
        if s.crl_stale { "yes" } else { "no" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, rss: u64) -> Sample {
        Sample {
            t,
            rss_kb: rss,
            fds: 20,
            threads: 9,
            store_bytes: 1000,
            load: true,
            ..Sample::default()
        }
    }

    #[test]
    fn growth_after_warm_up_is_judged_and_falling_is_not_a_leak() {
        let samples = vec![s(0.0, 10), s(10.0, 100), s(20.0, 105), s(30.0, 80)];
        let f = flatness(&samples, 10.0, "rss_kb", |s| s.rss_kb).unwrap();
        assert_eq!((f.at_warm_up, f.max, f.end), (100, 105, 80));
        assert!(f.flat, "{f:?}");
        let samples = vec![s(10.0, 9), s(20.0, 10)];
        assert!(
            flatness(&samples, 10.0, "threads", |s| s.rss_kb)
                .unwrap()
                .flat
        );
        let samples = vec![s(10.0, 100), s(20.0, 111)];
        assert!(
            !flatness(&samples, 10.0, "rss_kb", |s| s.rss_kb)
                .unwrap()
                .flat
        );
        assert!(flatness(&samples, 50.0, "rss_kb", |s| s.rss_kb).is_none());
    }

    /// A sample at `t` with `received` so far, `records` in the store and a `file` of that size.
    fn st(t: f64, received: u64, records: u64, file: u64) -> Sample {
        Sample {
            t,
            received,
            store_records: records,
            store_bytes: file,
            load: true,
            ..Sample::default()
        }
    }

    #[test]
    fn the_store_is_judged_by_retention_and_its_file_by_its_trend() {
        // 100 messages a second, retention 10 s: up to ~1,500 records (window + slack) allowed.
        let run = |records: u64, files: [u64; 4]| {
            let mut v: Vec<Sample> = (0..=3)
                .map(|i| st(i as f64 * 10.0, i * 1000, (i * 1000).min(1000), 50))
                .collect();
            v.extend(
                (4..=7).map(|i| st(i as f64 * 10.0, i * 1000, records, files[i as usize - 4])),
            );
            store_bound(&v, 40.0, 10.0).unwrap()
        };
        // Steady records; the file doubled once, then was trimmed: bounded.
        let b = run(1000, [50, 100, 75, 75]);
        assert!(b.bounded, "{b:?}");
        assert_eq!(
            (b.samples, b.max_records, b.allowed_at_max),
            (4, 1000, 2000)
        );
        // More records than were received within retention: a record outlived it.
        let b = run(2500, [50, 50, 50, 50]);
        assert!(!b.bounded && b.over_bound == 4, "{b:?}");
        // The file still growing in the second half.
        let b = run(1000, [50, 50, 100, 100]);
        assert!(!b.bounded, "{b:?}");
        // Nothing after warm-up: not judged.
        assert!(store_bound(&[st(0.0, 0, 0, 0)], 40.0, 10.0).is_none());
    }

    #[test]
    fn metrics_are_read_by_full_name() {
        let text = "helsemelding_pruned_total 12\nhelsemelding_crl_stale{ca=\"X\"} 1\n";
        assert_eq!(metric(text, "helsemelding_pruned_total"), 12);
        assert_eq!(metric(text, "helsemelding_crl_stale{ca=\"X\"}"), 1);
        assert_eq!(metric(text, "helsemelding_crl_stale"), 0);
    }
}
