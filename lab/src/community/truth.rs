//! The truth file: the indicator values the generator planted, computed from its own plan
//! (`super::plan`: the episodes, admissions, discharges and questions it decided), never from the
//! messages and never with `helsemelding::insight`'s indicator code — so the end-to-end test that
//! compares `indicators.csv` with it can fail.
//!
//! Definitions: `../shared/research/health-community-indicators.md` §3 (USK days: calendar days
//! `end − start`, a day counting when the patient is USK at its start; a segment starts at
//! `max(USK date, arrival)`; avmelding ends one and the days before it count; no `LOG_UTSKREVET`
//! for 90 days after the last message closes the episode as unresolved, its running segment ended
//! at that last message) and §6 (I1–I12 per receiving municipality or asked organisation, per
//! month; I4 over the three months ending with the month; I10 also by direction — the planned
//! sides of the asking and the asked organisation — and by the planned TypeForesp; I12 also by
//! sending organisation). The "now" is the latest message sent.
//! The suppression rule is the note's, applied here on its own terms: a share needs a denominator
//! ≥ 5 and a numerator 0 or ≥ 5, a count 0 or ≥ 5, a sum (and a mean of daily counts) ≥ 5
//! contributing episodes, a median or p90 n ≥ 10; one hidden cell in a row that adds up (the units
//! of a count or sum; a unit's I7 outcomes; a unit's I10 shares by direction or by TypeForesp,
//! smallest by questions; a unit's I12 counts by sender) hides the next-smallest visible one (the
//! first of equals), again until nothing changes; a hidden month falls back to its quarter, then
//! to its 12 months, where those show.
//!
//! Output: rows with the columns of `indicators.csv`, the same number formatting (integers bare,
//! other values with at most four decimals) and an empty value, numerator, denominator and n where
//! a cell is suppressed.

use std::collections::{BTreeMap, BTreeSet};

use time::{Date, Duration, Month, OffsetDateTime, Weekday};

use super::plan::{Community, Episode, Fate, Leaves, Local, Question, Side};

/// How a figure is formed (decides its suppression rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Count,
    Share,
    Sum,
    Mean,
    Quantile,
}

/// One row of the truth (and of `indicators.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub indicator: String,
    pub period: String,
    pub unit: u32,
    pub value: Option<f64>,
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub n: u64,
    pub suppressed: bool,
    form: Form,
}

impl Row {
    fn new(indicator: impl Into<String>, p: &Span, unit: u32, form: Form) -> Row {
        Row {
            indicator: indicator.into(),
            period: p.label.clone(),
            unit,
            value: None,
            numerator: None,
            denominator: None,
            n: 0,
            suppressed: false,
            form,
        }
    }

    fn count(ind: impl Into<String>, p: &Span, unit: u32, k: usize) -> Row {
        let mut r = Row::new(ind, p, unit, Form::Count);
        r.value = Some(k as f64);
        r.numerator = Some(k as f64);
        r.n = k as u64;
        r
    }

    fn share(ind: impl Into<String>, p: &Span, unit: u32, k: usize, of: usize) -> Row {
        let mut r = Row::new(ind, p, unit, Form::Share);
        r.numerator = Some(k as f64);
        r.denominator = Some(of as f64);
        r.value = (of > 0).then(|| k as f64 / of as f64);
        r.n = of as u64;
        r
    }

    fn quantile(ind: impl Into<String>, p: &Span, unit: u32, v: Option<f64>, n: usize) -> Row {
        let mut r = Row::new(ind, p, unit, Form::Quantile);
        r.value = v;
        r.n = n as u64;
        r
    }
}

/// A period: `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    label: String,
    from: Date,
    to: Date,
    /// I4's window reaches two months back (months only).
    rolling3: bool,
}

fn month_start(d: Date) -> Date {
    d.replace_day(1).unwrap_or(d)
}

fn months_later(d: Date, k: i32) -> Date {
    let idx = d.year() * 12 + d.month() as i32 - 1 + k;
    let m = Month::try_from((idx.rem_euclid(12) + 1) as u8).unwrap_or(Month::January);
    Date::from_calendar_date(idx.div_euclid(12), m, 1).unwrap_or(d)
}

impl Span {
    fn month(d: Date) -> Span {
        let from = month_start(d);
        Span {
            label: format!("{:04}-{:02}", from.year(), from.month() as u8),
            from,
            to: months_later(from, 1),
            rolling3: true,
        }
    }

    fn quarter(d: Date) -> Span {
        let q = (d.month() as u8 - 1) / 3;
        let from = months_later(month_start(d), -(((d.month() as u8 - 1) % 3) as i32));
        Span {
            label: format!("{:04}-Q{}", d.year(), q + 1),
            from,
            to: months_later(from, 3),
            rolling3: false,
        }
    }

    fn twelve(d: Date) -> Span {
        let to = months_later(month_start(d), 1);
        Span {
            label: format!("{:04}-{:02}/12m", d.year(), d.month() as u8),
            from: months_later(to, -12),
            to,
            rolling3: false,
        }
    }

    fn has(&self, d: Date) -> bool {
        d >= self.from && d < self.to
    }
}

/// An Oslo wall-clock time as an instant.
fn instant(l: Local) -> OffsetDateTime {
    helsemelding::insight::oslo::from_local(l)
}

/// Median (mean of the middle two for an even count) and p90 (the ⌈0.9·n⌉-th smallest).
fn median_p90(mut v: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
    (Some(median), Some(v[rank - 1]))
}

/// Norwegian public holidays (helligdager and the two statutory days, 1 and 17 May) that fall on a
/// weekday, 2024–2028, written out from the calendar rather than computed: the report computes them
/// from Easter (`helsemelding::insight::oslo`), and the truth must not share that code.
const HOLIDAYS: &[(i32, u8, u8)] = &[
    (2024, 1, 1),
    (2024, 3, 28),
    (2024, 3, 29),
    (2024, 4, 1),
    (2024, 5, 1),
    (2024, 5, 9),
    (2024, 5, 17),
    (2024, 5, 20),
    (2024, 12, 25),
    (2024, 12, 26),
    (2025, 1, 1),
    (2025, 4, 17),
    (2025, 4, 18),
    (2025, 4, 21),
    (2025, 5, 1),
    (2025, 5, 29),
    (2025, 6, 9),
    (2025, 12, 25),
    (2025, 12, 26),
    (2026, 1, 1),
    (2026, 4, 2),
    (2026, 4, 3),
    (2026, 4, 6),
    (2026, 5, 1),
    (2026, 5, 14),
    (2026, 5, 25),
    (2026, 12, 25),
    (2027, 1, 1),
    (2027, 3, 25),
    (2027, 3, 26),
    (2027, 3, 29),
    (2027, 5, 6),
    (2027, 5, 17),
    (2028, 4, 13),
    (2028, 4, 14),
    (2028, 4, 17),
    (2028, 5, 1),
    (2028, 5, 17),
    (2028, 5, 25),
    (2028, 6, 5),
    (2028, 12, 25),
    (2028, 12, 26),
];

/// Years [`HOLIDAYS`] covers.
pub const HOLIDAY_YEARS: std::ops::RangeInclusive<i32> = 2024..=2028;

/// Whether `d` is a working day for I10's "within 5 virkedager": Monday–Friday and not a holiday.
fn is_working_day(d: Date) -> bool {
    assert!(
        HOLIDAY_YEARS.contains(&d.year()),
        "the community's truth knows Norwegian public holidays for {HOLIDAY_YEARS:?} only, not {d}"
    );
    !matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
        && !HOLIDAYS.contains(&(d.year(), u8::from(d.month()), d.day()))
}

/// `t` plus five working days, same wall-clock time.
fn five_working_days_after(t: Local) -> Local {
    let mut d = t.date();
    let mut left = 5;
    while left > 0 {
        d = d.next_day().unwrap_or(d);
        if is_working_day(d) {
            left -= 1;
        }
    }
    Local::new(d, t.time())
}

/// An episode as the report date sees it: closed (discharged, or unresolved after 90 days of
/// silence) or still open.
struct Seen<'a> {
    e: &'a Episode,
    segments: Vec<(Date, Date)>,
    running: Option<Date>,
    closed: Option<Date>,
    /// `None`: unresolved (when closed) or open.
    leaves: Option<Leaves>,
}

impl Seen<'_> {
    fn opened(&self) -> Date {
        self.segments
            .first()
            .map(|s| s.0)
            .or(self.running)
            .unwrap_or(self.e.last)
    }

    fn resolved(&self) -> bool {
        self.leaves.is_some()
    }

    fn usk_days(&self, today: Date) -> i64 {
        let closed: i64 = self
            .segments
            .iter()
            .map(|(s, e)| (*e - *s).whole_days())
            .sum();
        closed + self.running.map_or(0, |s| (today - s).whole_days().max(0))
    }

    /// Days falling in `[from, to)`: a running segment counts every day from its start up to and
    /// including `today` (the patient is USK at that morning).
    fn days_in(&self, from: Date, to: Date, today: Date) -> i64 {
        let end = to.min(today + Duration::days(1));
        let tail = self.running.map(|s| (s, end));
        self.segments
            .iter()
            .copied()
            .chain(tail)
            .map(|(s, e)| {
                let (a, b) = (s.max(from), e.min(end));
                if b > a {
                    (b - a).whole_days()
                } else {
                    0
                }
            })
            .sum()
    }
}

fn seen(e: &Episode, today: Date) -> Seen<'_> {
    if let Some((day, how)) = e.discharged {
        return Seen {
            e,
            segments: e.segments.clone(),
            running: None,
            closed: Some(day),
            leaves: Some(how),
        };
    }
    if today >= e.last + Duration::days(90) {
        let mut segments = e.segments.clone();
        if let Some(s) = e.running {
            segments.push((s, e.last.max(s)));
        }
        return Seen {
            e,
            segments,
            running: None,
            closed: Some(e.last + Duration::days(90)),
            leaves: None,
        };
    }
    Seen {
        e,
        segments: e.segments.clone(),
        running: e.running,
        closed: None,
        leaves: None,
    }
}

/// Every cell of one period, before suppression.
fn cells(c: &Community, p: &Span, now: OffsetDateTime, today: Date, out: &mut Vec<Row>) {
    let eps: Vec<Seen> = c.episodes.iter().map(|e| seen(e, today)).collect();
    let usk_units: BTreeSet<u32> = eps.iter().map(|s| s.e.unit).collect();
    for &unit in &usk_units {
        let mine: Vec<&Seen> = eps.iter().filter(|s| s.e.unit == unit).collect();
        let opened: Vec<&&Seen> = mine.iter().filter(|s| p.has(s.opened())).collect();
        out.push(Row::count("I1", p, unit, opened.len()));
        let per: Vec<i64> = mine
            .iter()
            .map(|s| s.days_in(p.from, p.to, today))
            .collect();
        let days: i64 = per.iter().sum();
        let contributed = per.iter().filter(|d| **d > 0).count() as u64;
        let mut i2 = Row::new("I2", p, unit, Form::Sum);
        i2.value = Some(days as f64);
        i2.numerator = Some(days as f64);
        i2.n = contributed;
        out.push(i2);
        let span = (p.to.min(today + Duration::days(1)) - p.from)
            .whole_days()
            .max(0);
        let mut i5 = Row::new("I5", p, unit, Form::Mean);
        i5.value = (span > 0).then(|| days as f64 / span as f64);
        i5.numerator = Some(days as f64);
        i5.denominator = Some(span as f64);
        i5.n = contributed;
        out.push(i5);
        let closed: Vec<&&Seen> = mine
            .iter()
            .filter(|s| s.closed.is_some_and(|d| p.has(d)))
            .collect();
        let resolved: Vec<&&&Seen> = closed.iter().filter(|s| s.resolved()).collect();
        let zero = resolved.iter().filter(|s| s.usk_days(today) == 0).count();
        out.push(Row::share("I3", p, unit, zero, resolved.len()));
        let w0 = if p.rolling3 {
            months_later(p.from, -2)
        } else {
            p.from
        };
        let v: Vec<f64> = mine
            .iter()
            .filter(|s| s.resolved() && s.closed.is_some_and(|d| d >= w0 && d < p.to))
            .map(|s| s.usk_days(today) as f64)
            .collect();
        let n = v.len();
        let (med, p90) = median_p90(v);
        out.push(Row::quantile("I4_median", p, unit, med, n));
        out.push(Row::quantile("I4_p90", p, unit, p90, n));
        let av = opened.iter().filter(|s| s.e.avmeldt).count();
        out.push(Row::share("I6", p, unit, av, opened.len()));
        let all = closed.len();
        let outcome =
            |f: &dyn Fn(Option<Leaves>) -> bool| closed.iter().filter(|s| f(s.leaves)).count();
        let rows: [(&str, usize); 6] = [
            ("I7_home", outcome(&|l| l == Some(Leaves::Home))),
            (
                "I7_institution",
                outcome(&|l| matches!(l, Some(Leaves::NursingHome | Leaves::Kad))),
            ),
            ("I7_other_hf", outcome(&|l| l == Some(Leaves::OtherHf))),
            ("I7_dead", outcome(&|l| l == Some(Leaves::Dead))),
            ("I7_other", 0),
            ("I7_unresolved", outcome(&|l| l.is_none())),
        ];
        for (name, k) in rows {
            out.push(Row::share(name, p, unit, k, all));
        }
        let alive: Vec<&Seen> = resolved
            .iter()
            .map(|s| ***s)
            .filter(|s| s.leaves != Some(Leaves::Dead))
            .collect();
        let back = alive
            .iter()
            .filter(|s| {
                let Some(day) = s.closed else { return false };
                c.admissions.iter().any(|a| {
                    a.patient == s.e.patient
                        && a.admitted >= day + Duration::days(1)
                        && a.admitted <= day + Duration::days(30)
                })
            })
            .count();
        out.push(Row::share("I8", p, unit, back, alive.len()));
    }

    // I9–I12: by the receiving (or asked) organisation of the messages of the period.
    let counted: Vec<_> = c
        .messages
        .iter()
        .filter(|m| m.fate == Fate::Counted && p.has(m.at.date()))
        .collect();
    let flow_units: BTreeSet<u32> = counted.iter().map(|m| c.org_of(m.to)).collect();
    for unit in flow_units {
        let ins: Vec<_> = c
            .admissions
            .iter()
            .filter(|a| a.unit == unit && p.has(a.at.date()))
            .collect();
        let timely = ins
            .iter()
            .filter(|a| {
                c.admissions.iter().any(|b| {
                    b.patient == a.patient
                        && b.report.is_some_and(|r| {
                            r >= a.at && instant(r) - instant(a.at) <= Duration::hours(24)
                        })
                })
            })
            .count();
        out.push(Row::share(
            "I9_innleggelsesrapport",
            p,
            unit,
            timely,
            ins.len(),
        ));
        let outs: Vec<_> = c
            .discharges
            .iter()
            .filter(|d| d.unit == unit && p.has(d.at.date()))
            .collect();
        let same_day = outs
            .iter()
            .filter(|d| {
                c.discharges.iter().any(|e| {
                    e.patient == d.patient && e.report.is_some_and(|r| r.date() == d.at.date())
                })
            })
            .count();
        out.push(Row::share(
            "I9_utskrivningsrapport",
            p,
            unit,
            same_day,
            outs.len(),
        ));
        // I10 overall, then by direction (asking side → asked side), then by TypeForesp.
        let asked: Vec<&Question> = c
            .questions
            .iter()
            .filter(|q| q.unit == unit && p.has(q.asked.date()))
            .collect();
        answer_rows("", &asked, now, p, unit, out);
        let side = |her: u32| match c.party(her).map(|p| p.side) {
            Some(Side::Hospital) => "hospital",
            Some(Side::Municipality) => "municipality",
            Some(Side::Gp) => "gp",
            None => "other",
        };
        let mut directions: BTreeMap<String, Vec<&Question>> = BTreeMap::new();
        let mut kinds: BTreeMap<&str, Vec<&Question>> = BTreeMap::new();
        for &q in &asked {
            directions
                .entry(format!("{}_{}", side(q.asker), side(q.unit)))
                .or_default()
                .push(q);
            kinds.entry(q.type_foresp).or_default().push(q);
        }
        for (d, qs) in &directions {
            answer_rows(&format!("_dir_{d}"), qs, now, p, unit, out);
        }
        for (t, qs) in &kinds {
            answer_rows(&format!("_T{t}"), qs, now, p, unit, out);
        }
        // No receiver of this community sends AppRecs: every message four days old lacks one.
        let mine: Vec<_> = counted.iter().filter(|m| c.org_of(m.to) == unit).collect();
        let mature = mine
            .iter()
            .filter(|m| now >= instant(m.at) + Duration::days(4))
            .count();
        out.push(Row::share("I11_missing_4d", p, unit, mature, mature));
        out.push(Row::quantile("I11_median_h", p, unit, None, 0));
        out.push(Row::share("I11_rejected", p, unit, 0, 0));
        out.push(Row::count("I12_total", p, unit, mine.len()));
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for m in &mine {
            *types.entry(m.msg_type).or_default() += 1;
        }
        for (t, k) in types {
            out.push(Row::count(format!("I12_{t}"), p, unit, k));
        }
        let mut from: BTreeMap<u32, usize> = BTreeMap::new();
        for m in &mine {
            *from.entry(c.org_of(m.from)).or_default() += 1;
        }
        for (org, k) in from {
            out.push(Row::count(format!("I12_from_{org}"), p, unit, k));
        }
    }
}

/// I10's four rows (`I10_median_h{suffix}`, …) for the questions `asked` of one unit.
fn answer_rows(
    suffix: &str,
    asked: &[&Question],
    now: OffsetDateTime,
    p: &Span,
    unit: u32,
    out: &mut Vec<Row>,
) {
    let mut hours = Vec::new();
    let (mut within, mut mature5, mut unanswered, mut mature14) = (0, 0, 0, 0);
    for q in asked {
        let t = instant(q.asked);
        let a = q.answered.map(instant);
        let deadline = instant(five_working_days_after(q.asked));
        if let Some(a) = a {
            hours.push((a - t).as_seconds_f64() / 3600.0);
        }
        if a.is_some_and(|a| a <= deadline) {
            within += 1;
            mature5 += 1;
        } else if now >= deadline {
            mature5 += 1;
        }
        if now >= t + Duration::days(14) {
            mature14 += 1;
            if a.is_none_or(|a| a > t + Duration::days(14)) {
                unanswered += 1;
            }
        }
    }
    let n = hours.len();
    let (med, p90) = median_p90(hours);
    out.push(Row::quantile(
        format!("I10_median_h{suffix}"),
        p,
        unit,
        med,
        n,
    ));
    out.push(Row::quantile(format!("I10_p90_h{suffix}"), p, unit, p90, n));
    out.push(Row::share(
        format!("I10_within_5d{suffix}"),
        p,
        unit,
        within,
        mature5,
    ));
    out.push(Row::share(
        format!("I10_unanswered_14d{suffix}"),
        p,
        unit,
        unanswered,
        mature14,
    ));
}

/// Rules 1–3.
fn primary(r: &Row) -> bool {
    let few = |x: f64| (1.0..5.0).contains(&x);
    match r.form {
        Form::Share => r.denominator.is_none_or(|d| d < 5.0) || r.numerator.is_none_or(few),
        Form::Count => r.value.is_none_or(few),
        Form::Sum | Form::Mean => r.n < 5,
        Form::Quantile => r.n < 10 || r.value.is_none(),
    }
}

/// The group a split row of one unit adds up in, and whether its size is the denominator:
/// a unit's I10 shares by direction (`I10_within_5d_dir_…`) or by TypeForesp (`…_T8`), sized by
/// their questions; a unit's I12 counts by sending organisation, sized by their count.
fn unit_group(ind: &str) -> Option<(String, bool)> {
    if ind.starts_with("I12_from_") {
        return Some(("I12_from".to_owned(), false));
    }
    for figure in ["I10_within_5d_", "I10_unanswered_14d_"] {
        if let Some(rest) = ind.strip_prefix(figure) {
            if rest.starts_with("dir_") {
                return Some((format!("{figure}dir"), true));
            }
            if rest.starts_with('T') {
                return Some((format!("{figure}T"), true));
            }
        }
    }
    None
}

/// Rules 1–4 over the cells of one set of periods. Rule 4's groups: one indicator's counts or
/// sums over the units of a period; a unit's I7 outcomes; a unit's I10 splits and I12 senders.
/// A cell may sit in two groups, so the groups are gone through again until nothing changes.
fn suppress(rows: &mut [Row]) {
    for r in rows.iter_mut() {
        r.suppressed = primary(r);
    }
    let mut groups: BTreeMap<(String, String, u32), (Vec<usize>, bool)> = BTreeMap::new();
    for (i, r) in rows.iter().enumerate() {
        if matches!(r.form, Form::Count | Form::Sum) {
            groups
                .entry((r.indicator.clone(), r.period.clone(), 0))
                .or_default()
                .0
                .push(i);
        }
        let own = if r.form == Form::Share && r.indicator.starts_with("I7_") {
            Some(("I7".to_owned(), false))
        } else {
            unit_group(&r.indicator)
        };
        if let Some((g, by_den)) = own {
            let e = groups.entry((g, r.period.clone(), r.unit)).or_default();
            e.0.push(i);
            e.1 = by_den;
        }
    }
    loop {
        let mut changed = false;
        for (idx, by_den) in groups.values() {
            if idx.iter().filter(|&&i| rows[i].suppressed).count() != 1 {
                continue;
            }
            let size = |r: &Row| {
                if *by_den {
                    r.denominator.unwrap_or(0.0)
                } else {
                    r.numerator.or(r.value).unwrap_or(0.0)
                }
            };
            let mut best: Option<usize> = None;
            for &i in idx {
                if rows[i].suppressed || size(&rows[i]) <= 0.0 {
                    continue;
                }
                if best.is_none_or(|b| size(&rows[i]) < size(&rows[b])) {
                    best = Some(i);
                }
            }
            if let Some(i) = best {
                rows[i].suppressed = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// The planted cells for the months of the plan, with suppression and fallbacks, as the report
/// lists them.
pub fn rows(c: &Community) -> Vec<Row> {
    let Some(last) = c
        .messages
        .iter()
        .filter(|m| m.fate == Fate::Counted)
        .map(|m| m.at)
        .max()
    else {
        return Vec::new();
    };
    let now = instant(last);
    let today = last.date();
    let mut months = Vec::new();
    let mut d = month_start(c.first_day());
    while d <= c.shape.last_day {
        months.push(Span::month(d));
        d = months_later(d, 1);
    }
    let mut monthly = Vec::new();
    for p in &months {
        cells(c, p, now, today, &mut monthly);
    }
    suppress(&mut monthly);
    let mut wider_spans: Vec<Span> = Vec::new();
    for p in &months {
        for w in [Span::quarter(p.from), Span::twelve(p.from)] {
            if !wider_spans.contains(&w) {
                wider_spans.push(w);
            }
        }
    }
    let mut wider = Vec::new();
    for p in &wider_spans {
        cells(c, p, now, today, &mut wider);
    }
    suppress(&mut wider);
    let mut extra: Vec<Row> = Vec::new();
    for r in monthly.iter().filter(|r| r.suppressed) {
        let Some(m) = months.iter().find(|m| m.label == r.period) else {
            continue;
        };
        let fall = [Span::quarter(m.from).label, Span::twelve(m.from).label]
            .into_iter()
            .find_map(|label| {
                wider.iter().find(|w| {
                    w.period == label
                        && w.indicator == r.indicator
                        && w.unit == r.unit
                        && !w.suppressed
                })
            });
        if let Some(f) = fall {
            if !extra.contains(f) {
                extra.push(f.clone());
            }
        }
    }
    monthly.extend(extra);
    monthly
}

/// A number as the CSV writes it: an integer bare, otherwise at most four decimals.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The unit's name as the report prints it: the register's name and its kommunenummer.
pub fn unit_name(c: &Community, unit: u32) -> String {
    match c.party(unit) {
        Some(p) => match &p.municipality {
            Some(m) => format!("{} ({m})", p.name),
            None => p.name.clone(),
        },
        None => format!("HER-id {unit}"),
    }
}

fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The header of `indicators.csv` and of the truth file.
pub const HEADER: &str =
    "indicator,period,unit_her_id,unit_name,value,numerator,denominator,n,suppressed";

/// The truth as CSV lines (the header first).
pub fn csv(c: &Community) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows(c) {
        let f = |v: Option<f64>| {
            if r.suppressed {
                String::new()
            } else {
                v.map(number).unwrap_or_default()
            }
        };
        let n = if r.suppressed {
            String::new()
        } else {
            r.n.to_string()
        };
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{n},{}\n",
            r.indicator,
            r.period,
            r.unit,
            quote(&unit_name(c, r.unit)),
            f(r.value),
            f(r.numerator),
            f(r.denominator),
            r.suppressed
        ));
    }
    s
}
