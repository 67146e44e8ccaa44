//! Pure functions from observations to indicator cells: I1–I12 of the research note
//! (`../shared/research/health-community-indicators.md` §6), per unit and period.
//!
//! The order is the note's: (1) clean the traffic — duplicates once (same sender and MsgId), a
//! cancellation (Forsendelsesstatus C, list 7309) erases the message its RefToParent names and
//! itself, an update (M Endring, O Oppdatert og erstatter) replaces the message it names; (2) build
//! USK episodes per patient pseudonym (§3); (3) count.
//!
//! Episodes (§3): an episode opens at the first `LOG_UTSKRIVNINGSKLAR` (Hendelsekode 3) of a
//! patient with none open; its unit is that message's receiving organisation (level-1 HER-id).
//! A USK segment starts at `max(USK date, arrival date)` — payment runs from the day the
//! municipality was notified, and a future-dated estimate starts on its date, not before
//! (forskrift om kommunal betaling for utskrivningsklare pasienter §11; note §3 pitfalls). A later
//! USK message while a segment runs moves its start ("code 3 of the latest non-cancelled USK
//! message"); after an avmelding one starts a new segment. A segment ends at Hendelsekode 4
//! (avmelding; the days before it count) or 2 (utskrevet, which closes the episode with its
//! outcome from UtskrevetTil). Days are calendar days, `end − start` (same day = 0, SSB
//! *liggedager*), each attributed to the month it falls in. An episode with no `LOG_UTSKREVET` for
//! 90 days after its last message is closed as *unresolved* on that 90th day; its running segment is
//! ended at its last message (no days are counted without evidence). Times are the messages' own
//! (GenDate, event dates; zone-less = Europe/Oslo), so replayed traffic gives the same cells; the
//! "now" of an open episode is `as_of`, the latest message time in the data.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime};

use super::observation::Observation;
use super::oslo;

/// How a cell's value was formed, which decides its suppression rule (`suppress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// A count of episodes or messages.
    Count,
    /// numerator ÷ denominator.
    Share,
    /// A sum of days over episodes (n = episodes that contributed).
    Sum,
    /// A mean over days of a count of episodes (n = episodes that contributed).
    Mean,
    /// A median or p90 (n = observations).
    Quantile,
    /// A sum of days per 1,000 inhabitants (n = episodes that contributed; `population`).
    Rate,
}

/// One figure of one indicator for one unit and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// `I1` … `I12`, with a suffix where an indicator has several figures (`I4_median`).
    pub indicator: String,
    /// `YYYY-MM`, `YYYY-Qn` or `YYYY-MM/12m` (the 12 months ending there).
    pub period: String,
    /// The unit's level-1 HER-id (a municipality's organisation, a GP office, a hospital trust).
    pub unit: u32,
    pub kind: Kind,
    pub value: Option<f64>,
    pub numerator: Option<f64>,
    pub denominator: Option<f64>,
    pub n: u64,
    pub suppressed: bool,
}

impl Cell {
    fn new(indicator: impl Into<String>, p: &Period, unit: u32, kind: Kind) -> Cell {
        Cell {
            indicator: indicator.into(),
            period: p.label.clone(),
            unit,
            kind,
            value: None,
            numerator: None,
            denominator: None,
            n: 0,
            suppressed: false,
        }
    }

    fn count(indicator: impl Into<String>, p: &Period, unit: u32, n: u64) -> Cell {
        let mut c = Cell::new(indicator, p, unit, Kind::Count);
        c.value = Some(n as f64);
        c.numerator = Some(n as f64);
        c.n = n;
        c
    }

    fn share(indicator: impl Into<String>, p: &Period, unit: u32, num: u64, den: u64) -> Cell {
        let mut c = Cell::new(indicator, p, unit, Kind::Share);
        c.numerator = Some(num as f64);
        c.denominator = Some(den as f64);
        c.value = (den > 0).then(|| num as f64 / den as f64);
        c.n = den;
        c
    }

    fn quantile(
        indicator: impl Into<String>,
        p: &Period,
        unit: u32,
        v: Option<f64>,
        n: u64,
    ) -> Cell {
        let mut c = Cell::new(indicator, p, unit, Kind::Quantile);
        c.value = v;
        c.n = n;
        c
    }
}

/// A reporting period: `[from, to)` in Oslo calendar dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub label: String,
    pub from: Date,
    pub to: Date,
    /// I4 looks back over the two months before a month as well ("rolling 3 months").
    pub rolling3: bool,
}

fn first_of(y: i32, m: Month) -> Date {
    Date::from_calendar_date(y, m, 1).unwrap_or(Date::MIN)
}

fn add_months(d: Date, n: i32) -> Date {
    let idx = d.year() * 12 + (d.month() as i32 - 1) + n;
    let (y, m) = (idx.div_euclid(12), idx.rem_euclid(12) as u8 + 1);
    first_of(y, Month::try_from(m).unwrap_or(Month::January))
}

impl Period {
    /// The month `YYYY-MM`.
    pub fn month(y: i32, m: Month) -> Period {
        let from = first_of(y, m);
        Period {
            label: format!("{y:04}-{:02}", m as u8),
            from,
            to: add_months(from, 1),
            rolling3: true,
        }
    }

    /// The quarter containing month `m`.
    pub fn quarter(y: i32, m: Month) -> Period {
        let q = (m as u8 - 1) / 3;
        let from = first_of(y, Month::try_from(q * 3 + 1).unwrap_or(Month::January));
        Period {
            label: format!("{y:04}-Q{}", q + 1),
            from,
            to: add_months(from, 3),
            rolling3: false,
        }
    }

    /// The 12 months ending with month `m`.
    pub fn twelve(y: i32, m: Month) -> Period {
        let to = add_months(first_of(y, m), 1);
        Period {
            label: format!("{y:04}-{:02}/12m", m as u8),
            from: add_months(to, -12),
            to,
            rolling3: false,
        }
    }

    /// Every month from `from` to `to` inclusive (`YYYY-MM` each); `None` if either is malformed.
    pub fn months(from: &str, to: &str) -> Option<Vec<Period>> {
        let (a, b) = (parse_month(from)?, parse_month(to)?);
        let mut out = Vec::new();
        let mut d = a;
        while d <= b && out.len() < 1200 {
            out.push(Period::month(d.year(), d.month()));
            d = add_months(d, 1);
        }
        Some(out)
    }

    fn contains(&self, d: Date) -> bool {
        d >= self.from && d < self.to
    }

    /// The window I4 uses: the period, or the three months ending with it.
    fn i4_window(&self) -> (Date, Date) {
        if self.rolling3 {
            (add_months(self.from, -2), self.to)
        } else {
            (self.from, self.to)
        }
    }
}

/// `YYYY-MM` → its first day.
pub fn parse_month(s: &str) -> Option<Date> {
    let (y, m) = s.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    let m = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Some(first_of(y.parse().ok()?, m))
}

/// `YYYY-MM` of an instant, in Oslo.
pub fn month_of(t: OffsetDateTime) -> String {
    let d = oslo::local(t).date();
    format!("{:04}-{:02}", d.year(), d.month() as u8)
}

/// How an episode ended (lists 8431 Uttilstand and 8408 UtTil).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Open,
    /// Alive, to home (UtTil 1).
    Home,
    /// Alive, to a nursing home (11) or KAD (21).
    Institution,
    /// Alive, to another hospital trust or another unit of the own (3, 7, 8).
    OtherHf,
    /// Uttilstand 2 (dead) or 3 (suicide).
    Dead,
    /// Any other UtTil, or none given.
    Other,
    /// No `LOG_UTSKREVET` within 90 days of the last message.
    Unresolved,
}

impl Outcome {
    fn of(state: Option<&str>, to: Option<&str>) -> Outcome {
        if matches!(state, Some("2") | Some("3")) {
            return Outcome::Dead;
        }
        match to {
            Some("1") => Outcome::Home,
            Some("11") | Some("21") => Outcome::Institution,
            Some("3") | Some("7") | Some("8") => Outcome::OtherHf,
            _ => Outcome::Other,
        }
    }
}

/// One USK episode of one patient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub patient: String,
    pub unit: u32,
    /// The start of its first segment (I1's month).
    pub opened: Date,
    /// Ended segments `[start, end)`.
    pub segments: Vec<(Date, Date)>,
    /// The start of the segment still running, if any.
    pub running: Option<Date>,
    pub avmeldt: bool,
    pub closed: Option<Date>,
    pub outcome: Outcome,
    /// Date of its last message.
    pub last: Date,
}

impl Episode {
    /// USK days, counting a running segment up to `until`.
    pub fn usk_days(&self, until: Date) -> i64 {
        self.days().map(|(s, e)| segment_days(s, e, until)).sum()
    }

    fn days(&self) -> impl Iterator<Item = (Date, Date)> + '_ {
        self.segments
            .iter()
            .copied()
            .chain(self.running.map(|s| (s, Date::MAX)))
    }

    fn is_closed_resolved(&self) -> bool {
        self.closed.is_some() && self.outcome != Outcome::Unresolved
    }
}

fn segment_days(s: Date, e: Date, until: Date) -> i64 {
    let e = e.min(until);
    (e - s).whole_days().max(0)
}

/// Whether a message is of one of the PLO status values that replace their parent (list 7309).
fn replaces(o: &Observation) -> bool {
    matches!(
        o.plo.as_ref().and_then(|p| p.status.as_deref()),
        Some("M") | Some("O")
    )
}

fn cancels(o: &Observation) -> bool {
    o.plo.as_ref().and_then(|p| p.status.as_deref()) == Some("C")
}

/// Step 1: duplicates once, cancellations erase, updates replace. Sorted by the messages' times.
pub fn clean(obs: &[Observation]) -> Vec<Observation> {
    let mut seen = HashSet::new();
    let mut unique: Vec<&Observation> = Vec::new();
    let mut sorted: Vec<&Observation> = obs.iter().collect();
    sorted.sort_by_key(|o| (o.received, o.time()));
    for o in sorted {
        if seen.insert((o.from, o.msg_id.as_str())) {
            unique.push(o);
        }
    }
    let mut erased: HashSet<&str> = HashSet::new();
    for o in &unique {
        if let Some(parent) = o.ref_to_parent.as_deref() {
            if cancels(o) {
                erased.insert(parent);
                erased.insert(o.msg_id.as_str());
            } else if replaces(o) {
                erased.insert(parent);
            }
        }
    }
    let mut out: Vec<Observation> = unique
        .into_iter()
        .filter(|o| !erased.contains(o.msg_id.as_str()))
        .cloned()
        .collect();
    out.sort_by_key(|o| (o.time(), o.received));
    out
}

fn event<'a>(o: &'a Observation, code: &str) -> Option<&'a str> {
    o.plo
        .as_ref()?
        .events
        .iter()
        .find(|e| e.code == code)
        .map(|e| e.time.as_str())
}

fn date_of_msg(o: &Observation) -> Date {
    oslo::local(o.time()).date()
}

/// The latest message time in the data (the "now" of open episodes), or `None` when empty.
pub fn as_of(obs: &[Observation]) -> Option<OffsetDateTime> {
    obs.iter().map(Observation::time).max()
}

/// Step 2: USK episodes from cleaned observations (see the module documentation).
pub fn episodes(clean: &[Observation], as_of: Date) -> Vec<Episode> {
    let mut by_patient: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
    for o in clean {
        if let (Some(p), Some(_)) = (o.patient.as_deref(), o.plo.as_ref()) {
            by_patient.entry(p).or_default().push(o);
        }
    }
    let mut out = Vec::new();
    for (patient, msgs) in by_patient {
        let mut open: Option<Episode> = None;
        for o in msgs {
            let arrival = date_of_msg(o);
            // An episode silent for 90 days is closed as unresolved before anything new is read.
            if open
                .as_ref()
                .is_some_and(|e| arrival >= e.last + Duration::days(90))
            {
                out.extend(close_unresolved(open.take()));
            }
            match o.msg_type.as_str() {
                "LOG_UTSKRIVNINGSKLAR" => {
                    let Some(usk) = event(o, "3").and_then(oslo::date_of) else {
                        continue;
                    };
                    let start = usk.max(arrival);
                    match open.as_mut() {
                        Some(e) => {
                            // The latest USK message decides where the running segment starts;
                            // after an avmelding it starts a new one.
                            e.running = Some(start);
                            e.last = arrival;
                        }
                        None => {
                            open = Some(Episode {
                                patient: patient.to_owned(),
                                unit: o.receiver.org.unwrap_or(0),
                                opened: start,
                                segments: Vec::new(),
                                running: Some(start),
                                avmeldt: false,
                                closed: None,
                                outcome: Outcome::Open,
                                last: arrival,
                            })
                        }
                    }
                }
                "LOG_AVMELDING" => {
                    if let Some(e) = open.as_mut() {
                        let at = event(o, "4").and_then(oslo::date_of).unwrap_or(arrival);
                        if let Some(s) = e.running.take() {
                            e.segments.push((s, at.max(s)));
                        }
                        e.avmeldt = true;
                        e.last = arrival;
                    }
                }
                "LOG_UTSKREVET" => {
                    if let Some(mut e) = open.take() {
                        let at = event(o, "2").and_then(oslo::date_of).unwrap_or(arrival);
                        if let Some(s) = e.running.take() {
                            e.segments.push((s, at.max(s)));
                        }
                        let plo = o.plo.as_ref();
                        e.outcome = Outcome::of(
                            plo.and_then(|p| p.out_state.as_deref()),
                            plo.and_then(|p| p.out_to.as_deref()),
                        );
                        e.closed = Some(at);
                        e.last = arrival;
                        out.push(e);
                    }
                }
                _ => {}
            }
        }
        if let Some(e) = open {
            if as_of >= e.last + Duration::days(90) {
                out.extend(close_unresolved(Some(e)));
            } else {
                out.push(e);
            }
        }
    }
    out
}

fn close_unresolved(e: Option<Episode>) -> Option<Episode> {
    let mut e = e?;
    if let Some(s) = e.running.take() {
        e.segments.push((s, e.last.max(s)));
    }
    e.closed = Some(e.last + Duration::days(90));
    e.outcome = Outcome::Unresolved;
    Some(e)
}

/// Median (mean of the two middle values for even n) and p90 (nearest rank: the ⌈0.9·n⌉-th value).
pub fn median_p90(mut v: Vec<f64>) -> (Option<f64>, Option<f64>) {
    if v.is_empty() {
        return (None, None);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    let rank = ((0.9 * n as f64).ceil() as usize).clamp(1, n);
    (Some(median), Some(v[rank - 1]))
}

/// Everything the indicators are computed from.
pub struct Input<'a> {
    pub observations: &'a [Observation],
    /// A communication party's level-1 organisation (the register); itself when it is one.
    pub org_of: &'a dyn Fn(u32) -> u32,
    /// An organisation's kind as I10's directions name it (`hospital`, `municipality`, `gp`,
    /// `other`; the register's `kind`, `other` where it has none).
    pub kind_of: &'a dyn Fn(u32) -> &'static str,
}

/// Step 3: every cell of I1–I12 for `periods`, before suppression.
pub fn compute(input: &Input<'_>, periods: &[Period]) -> Vec<Cell> {
    let clean = clean(input.observations);
    let Some(now) = as_of(&clean) else {
        return Vec::new();
    };
    let today = oslo::local(now).date();
    let eps = episodes(&clean, today);
    let mut cells = Vec::new();
    for p in periods {
        usk_cells(&eps, &clean, p, today, &mut cells);
        flow_cells(&clean, p, now, input, &mut cells);
    }
    cells
}

fn units_of(eps: &[Episode]) -> BTreeSet<u32> {
    eps.iter().map(|e| e.unit).collect()
}

/// I1–I8.
fn usk_cells(eps: &[Episode], clean: &[Observation], p: &Period, today: Date, out: &mut Vec<Cell>) {
    let end = p.to.min(today + Duration::days(1));
    // LOG_INNLAGT by patient, for I8 (a probe per episode instead of a scan of all traffic).
    let mut admissions: HashMap<&str, Vec<&Observation>> = HashMap::new();
    for o in clean.iter().filter(|o| o.msg_type == "LOG_INNLAGT") {
        if let Some(patient) = o.patient.as_deref() {
            admissions.entry(patient).or_default().push(o);
        }
    }
    for unit in units_of(eps) {
        let mine: Vec<&Episode> = eps.iter().filter(|e| e.unit == unit).collect();
        // I1: opened in the period.
        let opened: Vec<&Episode> = mine
            .iter()
            .copied()
            .filter(|e| p.contains(e.opened))
            .collect();
        out.push(Cell::count("I1", p, unit, opened.len() as u64));
        // I2: days falling in the period, from the episodes that contributed any.
        let mut days = 0i64;
        let mut contributed = 0u64;
        for e in &mine {
            let mut d_e = 0;
            for (s, x) in e.days() {
                let s2 = s.max(p.from);
                let x2 = x.min(end);
                if x2 > s2 {
                    d_e += (x2 - s2).whole_days();
                }
            }
            days += d_e;
            contributed += u64::from(d_e > 0);
        }
        let mut i2 = Cell::new("I2", p, unit, Kind::Sum);
        i2.value = Some(days as f64);
        i2.numerator = Some(days as f64);
        i2.n = contributed;
        out.push(i2);
        // I5: episodes USK at 08:00 each day, averaged over the period's days so far. A day of a
        // segment [start, end) is a day the patient is in hospital as USK at 08:00, so the sum of
        // those counts over the days is I2's sum of days.
        let span = (end - p.from).whole_days().max(0);
        let mut i5 = Cell::new("I5", p, unit, Kind::Mean);
        i5.value = (span > 0).then(|| days as f64 / span as f64);
        i5.numerator = Some(days as f64);
        i5.denominator = Some(span as f64);
        i5.n = contributed;
        out.push(i5);
        // I3, I7, I8: episodes closed in the period.
        let closed: Vec<&Episode> = mine
            .iter()
            .copied()
            .filter(|e| e.closed.is_some_and(|c| p.contains(c)))
            .collect();
        let resolved: Vec<&Episode> = closed
            .iter()
            .copied()
            .filter(|e| e.is_closed_resolved())
            .collect();
        let zero = resolved.iter().filter(|e| e.usk_days(today) == 0).count();
        out.push(Cell::share(
            "I3",
            p,
            unit,
            zero as u64,
            resolved.len() as u64,
        ));
        // I4: resolved episodes closed in the window (three months for a month).
        let (w0, w1) = p.i4_window();
        let v: Vec<f64> = mine
            .iter()
            .filter(|e| e.is_closed_resolved() && e.closed.is_some_and(|c| c >= w0 && c < w1))
            .map(|e| e.usk_days(today) as f64)
            .collect();
        let n = v.len() as u64;
        let (med, p90) = median_p90(v);
        out.push(Cell::quantile("I4_median", p, unit, med, n));
        out.push(Cell::quantile("I4_p90", p, unit, p90, n));
        // I6: opened in the period with at least one avmelding.
        let av = opened.iter().filter(|e| e.avmeldt).count();
        out.push(Cell::share("I6", p, unit, av as u64, opened.len() as u64));
        // I7: outcomes of the episodes closed in the period.
        let all = closed.len() as u64;
        for (name, outcome) in [
            ("I7_home", Outcome::Home),
            ("I7_institution", Outcome::Institution),
            ("I7_other_hf", Outcome::OtherHf),
            ("I7_dead", Outcome::Dead),
            ("I7_other", Outcome::Other),
            ("I7_unresolved", Outcome::Unresolved),
        ] {
            let k = closed.iter().filter(|e| e.outcome == outcome).count() as u64;
            out.push(Cell::share(name, p, unit, k, all));
        }
        // I8: admitted again 1–30 days after a discharge alive (all admissions, not only ø-hjelp).
        let alive: Vec<&Episode> = resolved
            .iter()
            .copied()
            .filter(|e| e.outcome != Outcome::Dead)
            .collect();
        let back = alive
            .iter()
            .filter(|e| {
                let Some(c) = e.closed else { return false };
                admissions.get(e.patient.as_str()).is_some_and(|adm| {
                    adm.iter().any(|o| {
                        event(o, "1")
                            .and_then(oslo::date_of)
                            .or(Some(date_of_msg(o)))
                            .is_some_and(|d| {
                                d >= c + Duration::days(1) && d <= c + Duration::days(30)
                            })
                    })
                })
            })
            .count();
        out.push(Cell::share("I8", p, unit, back as u64, alive.len() as u64));
    }
}

/// I9–I12: message flows, per receiving (I9, I11 receipts, I12) or asked (I10) organisation.
///
/// The splits the research note asks for (§6: I10 "by direction and TypeForesp", I12 "by
/// organisation pair") keep the cell's unit and name the split in the indicator:
/// `I10_{figure}_dir_{asker}_{asked}` with the organisations' kinds (`hospital`, `municipality`,
/// `gp`, `other`; [`Input::kind_of`]), `I10_{figure}_T{code}` with the question's TypeForesp
/// ([`type_token`]), and `I12_from_{her}` with the sending organisation's level-1 HER-id (a
/// doctor's messages count for the office: rule 6).
fn flow_cells(
    clean: &[Observation],
    p: &Period,
    now: OffsetDateTime,
    input: &Input<'_>,
    out: &mut Vec<Cell>,
) {
    let org = |o: &Observation| (input.org_of)(o.receiver.org.unwrap_or(o.from));
    let in_p = |o: &Observation| p.contains(date_of_msg(o));
    // Indexes over the whole traffic, so that each lookup below is a probe, not a scan of every
    // message (a year of a health community is 10⁵ messages; scanning made the report quadratic).
    let mut answers: HashMap<&str, OffsetDateTime> = HashMap::new();
    let mut receipts: HashMap<(&str, u32), OffsetDateTime> = HashMap::new();
    let mut by_patient: PatientIndex<'_> = HashMap::new();
    let earliest = |slot: &mut OffsetDateTime, t: OffsetDateTime| *slot = (*slot).min(t);
    for o in clean {
        let t = o.time();
        if let (true, Some(parent)) = (o.msg_type == "DIALOG_SVAR", o.ref_to_parent.as_deref()) {
            answers
                .entry(parent)
                .and_modify(|x| earliest(x, t))
                .or_insert(t);
        }
        if let Some(r) = &o.apprec {
            receipts
                .entry((r.original_msg_id.as_str(), r.original_sender))
                .and_modify(|x| earliest(x, t))
                .or_insert(t);
        }
        if let Some(patient) = o.patient.as_deref() {
            by_patient
                .entry((o.msg_type.as_str(), patient))
                .or_default()
                .push(o);
        }
    }
    let mut units: BTreeSet<u32> = BTreeSet::new();
    for o in clean.iter().filter(|o| in_p(o)) {
        units.insert(org(o));
    }
    for unit in units {
        let mine: Vec<&Observation> = clean.iter().filter(|o| in_p(o) && org(o) == unit).collect();
        // I9: Innleggelsesrapport within 24 h of LOG_INNLAGT (HIS 80704:2014 Table 1), and
        // Utskrivningsrapport on the day of LOG_UTSKREVET (research note §6).
        let (k, n) = followed(
            &mine,
            &by_patient,
            "LOG_INNLAGT",
            "INNLEGGELSESRAPPORT",
            |o, r| {
                r.sender.org == o.receiver.org
                    && r.time() >= o.time()
                    && r.time() - o.time() <= Duration::hours(24)
            },
        );
        out.push(Cell::share("I9_innleggelsesrapport", p, unit, k, n));
        let (k, n) = followed(
            &mine,
            &by_patient,
            "LOG_UTSKREVET",
            "UTSKRIVNINGSRAPPORT",
            |o, r| r.receiver.org == o.receiver.org && date_of_msg(r) == date_of_msg(o),
        );
        out.push(Cell::share("I9_utskrivningsrapport", p, unit, k, n));
        // I10: FORESPORSEL → SVAR (RefToParent); the asked organisation is the unit. Overall,
        // then by direction (the kinds of the asking and the asked organisation), then by
        // TypeForesp.
        let asked: Vec<&Observation> = mine
            .iter()
            .copied()
            .filter(|o| o.msg_type == "DIALOG_FORESPORSEL")
            .collect();
        dialogue_cells("", &asked, &answers, now, p, unit, out);
        let mut by_direction: BTreeMap<String, Vec<&Observation>> = BTreeMap::new();
        let mut by_type: BTreeMap<String, Vec<&Observation>> = BTreeMap::new();
        for &q in &asked {
            let asker = (input.org_of)(q.sender.org.unwrap_or(q.from));
            let direction = format!("{}_{}", (input.kind_of)(asker), (input.kind_of)(unit));
            by_direction.entry(direction).or_default().push(q);
            by_type
                .entry(type_token(q.type_foresp.as_deref()))
                .or_default()
                .push(q);
        }
        for (direction, qs) in &by_direction {
            dialogue_cells(
                &format!("_dir_{direction}"),
                qs,
                &answers,
                now,
                p,
                unit,
                out,
            );
        }
        for (code, qs) in &by_type {
            dialogue_cells(&format!("_T{code}"), qs, &answers, now, p, unit, out);
        }
        // I11: receipts for the messages this unit received (HIS 80415:2012 §3.2: within 4 days).
        let fag: Vec<&&Observation> = mine.iter().filter(|o| o.apprec.is_none()).collect();
        let mut latency = Vec::new();
        let (mut missing, mut mature) = (0u64, 0u64);
        for m in &fag {
            let rec = receipts.get(&(m.msg_id.as_str(), m.from)).copied();
            if let Some(r) = rec {
                latency.push((r - m.time()).as_seconds_f64() / 3600.0);
            }
            if now >= m.time() + Duration::days(4) {
                mature += 1;
                if rec.is_none_or(|r| r > m.time() + Duration::days(4)) {
                    missing += 1;
                }
            }
        }
        out.push(Cell::share("I11_missing_4d", p, unit, missing, mature));
        let n = latency.len() as u64;
        let (med, _) = median_p90(latency);
        out.push(Cell::quantile("I11_median_h", p, unit, med, n));
        // AppRecs sent by this unit's parties: share rejected, and by error code (list 8221).
        let recs: Vec<&Observation> = clean
            .iter()
            .filter(|o| {
                in_p(o)
                    && o.apprec
                        .as_ref()
                        .is_some_and(|a| (input.org_of)(a.from) == unit)
            })
            .collect();
        let rejected = recs
            .iter()
            .filter(|o| o.apprec.as_ref().is_some_and(|a| a.status == "2"))
            .count();
        out.push(Cell::share(
            "I11_rejected",
            p,
            unit,
            rejected as u64,
            recs.len() as u64,
        ));
        let mut codes: BTreeMap<&str, u64> = BTreeMap::new();
        for r in &recs {
            if let Some(a) = &r.apprec {
                for c in a.codes.iter().collect::<BTreeSet<_>>() {
                    *codes.entry(c.as_str()).or_default() += 1;
                }
            }
        }
        for (code, k) in codes {
            out.push(Cell::share(
                format!("I11_rejected_{code}"),
                p,
                unit,
                k,
                recs.len() as u64,
            ));
        }
        // I12: volumes by message function (list 8279), DIALOG_AVVIK among them.
        let mut types: BTreeMap<&str, u64> = BTreeMap::new();
        for o in &mine {
            *types.entry(o.msg_type.as_str()).or_default() += 1;
        }
        out.push(Cell::count("I12_total", p, unit, mine.len() as u64));
        for (t, k) in types {
            out.push(Cell::count(format!("I12_{t}"), p, unit, k));
        }
        // I12 by organisation pair: from each sending organisation (never a single doctor: a
        // GP's messages count for the office, research note §6 rule 6).
        let mut senders: BTreeMap<u32, u64> = BTreeMap::new();
        for o in &mine {
            *senders
                .entry((input.org_of)(o.sender.org.unwrap_or(o.from)))
                .or_default() += 1;
        }
        for (from, k) in senders {
            out.push(Cell::count(format!("I12_from_{from}"), p, unit, k));
        }
    }
}

/// I10's four figures for the questions `asked` of one unit, named `I10_{figure}{suffix}`: median
/// and p90 of the hours to the first answer, the share answered within 5 working days (of those
/// answered or 5 working days old), the share unanswered after 14 days (of those 14 days old).
fn dialogue_cells(
    suffix: &str,
    asked: &[&Observation],
    answers: &HashMap<&str, OffsetDateTime>,
    now: OffsetDateTime,
    p: &Period,
    unit: u32,
    out: &mut Vec<Cell>,
) {
    let mut hours = Vec::new();
    let (mut within, mut mature5, mut unanswered, mut mature14) = (0u64, 0u64, 0u64, 0u64);
    for q in asked {
        let answer = answers.get(q.msg_id.as_str()).copied();
        let t = q.time();
        let deadline = oslo::add_working_days(t, 5);
        if let Some(a) = answer {
            hours.push((a - t).as_seconds_f64() / 3600.0);
        }
        if answer.is_some_and(|a| a <= deadline) {
            within += 1;
            mature5 += 1;
        } else if now >= deadline {
            mature5 += 1;
        }
        if now >= t + Duration::days(14) {
            mature14 += 1;
            if answer.is_none_or(|a| a > t + Duration::days(14)) {
                unanswered += 1;
            }
        }
    }
    let n = hours.len() as u64;
    let (med, p90) = median_p90(hours);
    out.push(Cell::quantile(
        format!("I10_median_h{suffix}"),
        p,
        unit,
        med,
        n,
    ));
    out.push(Cell::quantile(
        format!("I10_p90_h{suffix}"),
        p,
        unit,
        p90,
        n,
    ));
    out.push(Cell::share(
        format!("I10_within_5d{suffix}"),
        p,
        unit,
        within,
        mature5,
    ));
    out.push(Cell::share(
        format!("I10_unanswered_14d{suffix}"),
        p,
        unit,
        unanswered,
        mature14,
    ));
}

/// TypeForesp as an indicator name carries it: the code when it is 1–8 ASCII letters or digits
/// (lists 9152, 9065, 7601, … give such codes), otherwise `none` (not given, or not a plain
/// code: nothing from outside goes into a CSV field unchecked).
pub fn type_token(code: Option<&str>) -> String {
    match code.map(str::trim) {
        Some(c) if (1..=8).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            c.to_owned()
        }
        _ => "none".to_owned(),
    }
}

/// Messages by (message function, patient pseudonym).
type PatientIndex<'a> = HashMap<(&'a str, &'a str), Vec<&'a Observation>>;

/// Of `mine`'s messages of type `first`: how many have a `then` message about the same patient
/// for which `fits(first, then)` holds, and how many there are.
fn followed(
    mine: &[&Observation],
    by_patient: &PatientIndex<'_>,
    first: &str,
    then: &str,
    fits: impl Fn(&Observation, &Observation) -> bool,
) -> (u64, u64) {
    let asked: Vec<&&Observation> = mine.iter().filter(|o| o.msg_type == first).collect();
    let done = asked
        .iter()
        .filter(|o| {
            o.patient
                .as_deref()
                .and_then(|p| by_patient.get(&(then, p)))
                .is_some_and(|rs| rs.iter().any(|r| fits(o, r)))
        })
        .count();
    (done as u64, asked.len() as u64)
}

/// What one retention pass deletes and keeps.
#[derive(Debug, Default)]
pub struct RetentionPlan {
    /// Months (`YYYY-MM`) whose cells are frozen now, as JSON `Vec<Cell>`.
    pub frozen: Vec<(String, Vec<u8>)>,
    /// Observations to delete: (sender, MsgId).
    pub observations: Vec<(u32, String)>,
    /// Pseudonyms to delete.
    pub patients: Vec<String>,
}

/// Retention (DESIGN §7): a patient's observations and pseudonym go once none of its episodes is
/// open and the last closed more than `retention` ago (and none of its messages is younger than
/// that); messages without a patient go `retention` + 90 days after they were sent. Months that
/// ended before the oldest deleted message are frozen first, so their aggregates stay.
pub fn retention_plan(
    obs: &[Observation],
    now: OffsetDateTime,
    retention: time::Duration,
) -> RetentionPlan {
    let cut = oslo::local(now - retention).date();
    let today = oslo::local(now).date();
    let cleaned = clean(obs);
    let eps = episodes(&cleaned, today);
    let mut last_of: HashMap<&str, Date> = HashMap::new();
    for o in obs {
        if let Some(p) = o.patient.as_deref() {
            let d = date_of_msg(o);
            let e = last_of.entry(p).or_insert(d);
            *e = (*e).max(d);
        }
    }
    let mut gone: HashSet<&str> = HashSet::new();
    for (p, last) in &last_of {
        let mine: Vec<&Episode> = eps.iter().filter(|e| e.patient == *p).collect();
        let all_closed = mine.iter().all(|e| e.closed.is_some_and(|c| c < cut));
        if all_closed && *last < cut {
            gone.insert(p);
        }
    }
    let mut plan = RetentionPlan::default();
    let loose_cut = cut - Duration::days(90);
    for o in obs {
        let delete = match o.patient.as_deref() {
            Some(p) => gone.contains(p),
            None => date_of_msg(o) < loose_cut,
        };
        if delete {
            plan.observations.push((o.from, o.msg_id.clone()));
        }
    }
    plan.patients = gone.iter().map(|p| (*p).to_owned()).collect();
    if let Some(oldest) = obs
        .iter()
        .filter(|o| {
            plan.observations
                .iter()
                .any(|(f, m)| *f == o.from && *m == o.msg_id)
        })
        .map(date_of_msg)
        .max()
    {
        // Freeze every month up to the one holding the latest deleted message.
        let first = obs.iter().map(date_of_msg).min().unwrap_or(oldest);
        let months = Period::months(
            &format!("{:04}-{:02}", first.year(), first.month() as u8),
            &format!("{:04}-{:02}", oldest.year(), oldest.month() as u8),
        )
        .unwrap_or_default();
        let identity = |h: u32| h;
        let input = Input {
            observations: obs,
            org_of: &identity,
            kind_of: &|_| "other",
        };
        let cells = compute(&input, &months);
        for m in &months {
            let mine: Vec<&Cell> = cells.iter().filter(|c| c.period == m.label).collect();
            if let Ok(json) = serde_json::to_vec(&mine) {
                plan.frozen.push((m.label.clone(), json));
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insight::observation::{PloEvent, PloFacts, Unit};
    use time::macros::date;

    const KOMMUNE: u32 = 81000;

    /// A PLO observation for patient `p`, sent at `gen` (zone-less, Oslo), with `events`.
    fn plo(
        id: &str,
        p: &str,
        ty: &str,
        gen: &str,
        status: &str,
        events: &[(&str, &str)],
    ) -> Observation {
        Observation {
            msg_id: id.into(),
            from: 80001,
            received: oslo::parse(gen).unwrap().unix_timestamp(),
            gen_date: gen.into(),
            msg_type: ty.into(),
            sender: Unit {
                org: Some(80000),
                service: Some(80001),
            },
            receiver: Unit {
                org: Some(KOMMUNE),
                service: Some(81001),
            },
            ref_to_parent: None,
            ref_to_conversation: None,
            apprec: None,
            plo: Some(PloFacts {
                status: Some(status.into()),
                events: events
                    .iter()
                    .map(|(c, t)| PloEvent {
                        code: (*c).into(),
                        time: (*t).into(),
                        estimate: Some(false),
                    })
                    .collect(),
                out_state: (ty == "LOG_UTSKREVET").then(|| "1".into()),
                out_to: (ty == "LOG_UTSKREVET").then(|| "1".into()),
            }),
            type_foresp: None,
            patient: Some(p.into()),
        }
    }

    fn usk(id: &str, p: &str, gen: &str, date: &str) -> Observation {
        plo(
            id,
            p,
            "LOG_UTSKRIVNINGSKLAR",
            gen,
            "N",
            &[("1", "2026-02-20"), ("3", date)],
        )
    }

    fn out(id: &str, p: &str, gen: &str, date: &str) -> Observation {
        plo(id, p, "LOG_UTSKREVET", gen, "N", &[("2", date)])
    }

    fn days_of(obs: &[Observation]) -> Vec<i64> {
        let c = clean(obs);
        let today = oslo::local(as_of(&c).unwrap()).date();
        episodes(&c, today)
            .iter()
            .map(|e| e.usk_days(today))
            .collect()
    }

    #[test]
    fn usk_days_are_calendar_days_and_same_day_discharge_is_zero() {
        assert_eq!(
            days_of(&[
                usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
                out("b", "p1", "2026-03-04T12:00:00", "2026-03-04")
            ]),
            vec![3]
        );
        assert_eq!(
            days_of(&[
                usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
                out("b", "p1", "2026-03-01T15:00:00", "2026-03-01")
            ]),
            vec![0]
        );
    }

    #[test]
    fn a_cancellation_erases_what_it_points_to() {
        let mut c = plo(
            "c",
            "p1",
            "LOG_UTSKRIVNINGSKLAR",
            "2026-03-02T09:00:00",
            "C",
            &[],
        );
        c.ref_to_parent = Some("a".into());
        let obs = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            c,
            out("b", "p1", "2026-03-04T12:00:00", "2026-03-04"),
        ];
        assert!(clean(&obs).iter().all(|o| o.msg_id == "b"));
        assert!(
            days_of(&obs).is_empty(),
            "no USK message is left, so no episode"
        );
    }

    #[test]
    fn an_update_replaces_its_parent() {
        let mut m = plo(
            "m",
            "p1",
            "LOG_UTSKRIVNINGSKLAR",
            "2026-03-02T09:00:00",
            "M",
            &[("3", "2026-03-02")],
        );
        m.ref_to_parent = Some("a".into());
        let obs = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            m,
            out("b", "p1", "2026-03-04T12:00:00", "2026-03-04"),
        ];
        let ids: Vec<String> = clean(&obs).into_iter().map(|o| o.msg_id).collect();
        assert_eq!(ids, vec!["m", "b"]);
        assert_eq!(days_of(&obs), vec![2]);
    }

    #[test]
    fn a_future_dated_usk_starts_at_its_date_and_a_late_one_at_arrival() {
        // Sent 1 March, USK estimated for 5 March: max(5 March, 1 March) = 5 March.
        let future = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-05"),
            out("b", "p1", "2026-03-08T12:00:00", "2026-03-08"),
        ];
        assert_eq!(days_of(&future), vec![3]);
        // Sent 6 March about USK since 1 March: max(1 March, 6 March) = 6 March.
        let late = [
            usk("a", "p1", "2026-03-06T09:00:00", "2026-03-01"),
            out("b", "p1", "2026-03-08T12:00:00", "2026-03-08"),
        ];
        assert_eq!(days_of(&late), vec![2]);
    }

    #[test]
    fn an_episode_without_utskrevet_closes_unresolved_after_90_days() {
        let other = out("z", "p2", "2026-06-10T12:00:00", "2026-06-10");
        let obs = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            other.clone(),
        ];
        let c = clean(&obs);
        let eps = episodes(&c, date!(2026 - 06 - 10));
        assert_eq!(eps.len(), 1);
        assert_eq!(eps[0].outcome, Outcome::Unresolved);
        assert_eq!(eps[0].closed, Some(date!(2026 - 05 - 30)));
        // 89 days on it is still open.
        let eps = episodes(&c, date!(2026 - 05 - 29));
        assert_eq!(eps[0].outcome, Outcome::Open);
        assert_eq!(eps[0].usk_days(date!(2026 - 05 - 29)), 89);
    }

    #[test]
    fn duplicates_count_once() {
        let a = usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01");
        let mut again = a.clone();
        again.received += 600;
        let obs = [
            a,
            again,
            out("b", "p1", "2026-03-04T12:00:00", "2026-03-04"),
        ];
        assert_eq!(clean(&obs).len(), 2);
        let cells = compute(
            &Input {
                observations: &obs,
                org_of: &|h| h,
                kind_of: &|_| "other",
            },
            &[Period::month(2026, Month::March)],
        );
        let i12 = cells
            .iter()
            .find(|c| c.indicator == "I12_LOG_UTSKRIVNINGSKLAR")
            .unwrap();
        assert_eq!(i12.value, Some(1.0));
    }

    #[test]
    fn replayed_traffic_gives_the_same_cells() {
        // Live: as sent. Replayed: the same messages 40 days later, in reverse order (a
        // cancellation and an update before what they point to), one of them twice.
        let mut c = plo(
            "c",
            "p2",
            "LOG_UTSKRIVNINGSKLAR",
            "2026-03-03T11:00:00",
            "C",
            &[],
        );
        c.ref_to_parent = Some("u2".into());
        let mut m = plo(
            "m",
            "p1",
            "LOG_UTSKRIVNINGSKLAR",
            "2026-03-02T09:00:00",
            "M",
            &[("3", "2026-03-03")],
        );
        m.ref_to_parent = Some("a".into());
        let live = vec![
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            m,
            out("b", "p1", "2026-03-09T12:00:00", "2026-03-09"),
            usk("u2", "p2", "2026-03-03T09:00:00", "2026-03-05"),
            c,
            usk("u3", "p2", "2026-03-06T09:00:00", "2026-03-06"),
            out("d", "p2", "2026-04-02T12:00:00", "2026-04-02"),
        ];
        let mut replayed: Vec<Observation> = live
            .iter()
            .rev()
            .cloned()
            .map(|mut o| {
                o.received += 40 * 86_400;
                o
            })
            .collect();
        replayed.push(replayed[2].clone());
        let periods = Period::months("2026-02", "2026-05").unwrap();
        let cells = |obs: &[Observation]| {
            compute(
                &Input {
                    observations: obs,
                    org_of: &|h| h,
                    kind_of: &|_| "other",
                },
                &periods,
            )
        };
        let (a, b) = (cells(&live), cells(&replayed));
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn zone_less_times_are_read_as_oslo_time() {
        // 23:30 Oslo on 31 March is 21:30 UTC: the message belongs to March, not April.
        let a = usk("a", "p1", "2026-03-31T23:30:00", "2026-03-31");
        assert_eq!(date_of_msg(&a), date!(2026 - 03 - 31));
        let mut utc = a.clone();
        utc.gen_date = "2026-03-31T22:30:00Z".into();
        assert_eq!(date_of_msg(&utc), date!(2026 - 04 - 01));
    }

    #[test]
    fn avmelding_ends_a_segment_and_the_days_before_it_count() {
        let av = plo(
            "v",
            "p1",
            "LOG_AVMELDING",
            "2026-03-03T09:00:00",
            "N",
            &[("4", "2026-03-03")],
        );
        let again = usk("c", "p1", "2026-03-10T09:00:00", "2026-03-10");
        let obs = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            av,
            again,
            out("b", "p1", "2026-03-12T12:00:00", "2026-03-12"),
        ];
        assert_eq!(days_of(&obs), vec![4]);
        let cells = compute(
            &Input {
                observations: &obs,
                org_of: &|h| h,
                kind_of: &|_| "other",
            },
            &[Period::month(2026, Month::March)],
        );
        let i6 = cells.iter().find(|c| c.indicator == "I6").unwrap();
        assert_eq!((i6.numerator, i6.denominator), (Some(1.0), Some(1.0)));
    }

    #[test]
    fn days_are_split_over_months() {
        let obs = [
            usk("a", "p1", "2026-02-27T09:00:00", "2026-02-27"),
            out("b", "p1", "2026-03-03T12:00:00", "2026-03-03"),
        ];
        let ps = Period::months("2026-02", "2026-03").unwrap();
        let cells = compute(
            &Input {
                observations: &obs,
                org_of: &|h| h,
                kind_of: &|_| "other",
            },
            &ps,
        );
        let i2: Vec<(String, Option<f64>)> = cells
            .iter()
            .filter(|c| c.indicator == "I2")
            .map(|c| (c.period.clone(), c.value))
            .collect();
        assert_eq!(
            i2,
            vec![("2026-02".into(), Some(2.0)), ("2026-03".into(), Some(2.0))]
        );
    }

    #[test]
    fn retention_deletes_closed_episodes_only_and_freezes_their_months() {
        let obs = [
            usk("a", "p1", "2026-03-01T09:00:00", "2026-03-01"),
            out("b", "p1", "2026-03-04T12:00:00", "2026-03-04"),
            usk("c", "p2", "2026-04-01T09:00:00", "2026-04-01"),
        ];
        // 30 days after p1's discharge: kept; after 40 days: p1 goes, p2 (still open) stays.
        let at = |s: &str| oslo::parse(s).unwrap();
        let keep = retention_plan(&obs, at("2026-04-02T12:00:00"), Duration::days(30));
        assert!(keep.observations.is_empty() && keep.frozen.is_empty());
        let plan = retention_plan(&obs, at("2026-04-14T12:00:00"), Duration::days(30));
        let gone: Vec<&str> = plan.observations.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(gone, vec!["a", "b"]);
        assert_eq!(plan.patients, vec!["p1".to_owned()]);
        assert_eq!(plan.frozen.len(), 1);
        assert_eq!(plan.frozen[0].0, "2026-03");
        let cells: Vec<Cell> = serde_json::from_slice(&plan.frozen[0].1).unwrap();
        let i1 = cells.iter().find(|c| c.indicator == "I1").unwrap();
        assert_eq!(i1.value, Some(1.0));
    }

    #[test]
    fn dialogue_answers_and_receipts_are_timed_from_the_messages_own_times() {
        let mut ask = plo(
            "q",
            "p1",
            "DIALOG_FORESPORSEL",
            "2026-03-02T10:00:00",
            "N",
            &[],
        );
        ask.plo = None;
        let mut answer = ask.clone();
        answer.msg_id = "s".into();
        answer.msg_type = "DIALOG_SVAR".into();
        answer.gen_date = "2026-03-03T16:00:00".into();
        answer.ref_to_parent = Some("q".into());
        let mut unanswered = ask.clone();
        unanswered.msg_id = "q2".into();
        let mut rec = ask.clone();
        rec.msg_id = "r".into();
        rec.msg_type = "APPREC".into();
        rec.gen_date = "2026-03-02T12:00:00".into();
        rec.apprec = Some(crate::insight::observation::AppRecFacts {
            apprec_id: "r".into(),
            from: 81001,
            original_sender: 80001,
            original_msg_id: "q".into(),
            status: "2".into(),
            codes: vec!["E21".into()],
        });
        let late = plo(
            "x",
            "p9",
            "LOG_UTSKREVET",
            "2026-03-30T10:00:00",
            "N",
            &[("2", "2026-03-30")],
        );
        let obs = [ask, answer, unanswered, rec, late];
        let org = |h: u32| if h == 81001 { KOMMUNE } else { h };
        let cells = compute(
            &Input {
                observations: &obs,
                org_of: &org,
                kind_of: &|_| "other",
            },
            &[Period::month(2026, Month::March)],
        );
        let get = |i: &str| {
            cells
                .iter()
                .find(|c| c.indicator == i && c.unit == KOMMUNE)
                .unwrap()
        };
        assert_eq!(get("I10_median_h").value, Some(30.0));
        assert_eq!(get("I10_median_h").n, 1);
        // Both asks are 28 days old at as_of: one answered within 5 working days, one never.
        assert_eq!(
            (
                get("I10_within_5d").numerator,
                get("I10_within_5d").denominator
            ),
            (Some(1.0), Some(2.0))
        );
        assert_eq!(get("I10_unanswered_14d").numerator, Some(1.0));
        assert_eq!(get("I11_rejected").value, Some(1.0));
        assert_eq!(get("I11_rejected_E21").numerator, Some(1.0));
        assert_eq!(get("I11_median_h").value, Some(2.0));
    }

    /// A dialogue message of type `ty` from `(org, service)` to `(org, service)`.
    fn dialog(
        id: &str,
        ty: &str,
        (from, to): ((u32, u32), (u32, u32)),
        gen: &str,
        parent: Option<&str>,
    ) -> Observation {
        let mut o = plo(id, "p1", ty, gen, "N", &[]);
        o.plo = None;
        o.from = from.1;
        o.sender = Unit {
            org: Some(from.0),
            service: Some(from.1),
        };
        o.receiver = Unit {
            org: Some(to.0),
            service: Some(to.1),
        };
        o.ref_to_parent = parent.map(str::to_owned);
        o
    }

    /// Questions to the municipality: 6 from GP office 82000's doctor (TypeForesp 8 and 99), 3 from
    /// the hospital (TypeForesp 8), each answered by the nursing home 26 hours later, and one more
    /// from the hospital never answered.
    fn asked_by_two_kinds() -> Vec<Observation> {
        let (gp, hf, home) = ((82000, 82001), (80000, 80001), (KOMMUNE, 81001));
        let asker = |k: usize| if k < 6 { gp } else { hf };
        let mut obs = Vec::new();
        for k in 0..10 {
            let mut q = dialog(
                &format!("q{k}"),
                "DIALOG_FORESPORSEL",
                (asker(k), home),
                &format!("2026-03-{:02}T10:00:00", 2 + k),
                None,
            );
            q.type_foresp = Some(if k == 4 || k == 5 { "99" } else { "8" }.into());
            obs.push(q);
        }
        for k in 0..9 {
            obs.push(dialog(
                &format!("s{k}"),
                "DIALOG_SVAR",
                (home, asker(k)),
                &format!("2026-03-{:02}T12:00:00", 3 + k),
                Some(&format!("q{k}")),
            ));
        }
        // Something late in the month, so every question is 14 days old.
        obs.push(out("x", "p9", "2026-03-30T10:00:00", "2026-03-30"));
        obs
    }

    fn kinds(h: u32) -> &'static str {
        match h {
            80000 => "hospital",
            KOMMUNE => "municipality",
            82000 => "gp",
            _ => "other",
        }
    }

    fn split_cells(obs: &[Observation]) -> Vec<Cell> {
        let org = |h: u32| match h {
            81001 => KOMMUNE,
            80001 => 80000,
            82001 => 82000,
            h => h,
        };
        compute(
            &Input {
                observations: obs,
                org_of: &org,
                kind_of: &kinds,
            },
            &[Period::month(2026, Month::March)],
        )
    }

    fn find<'a>(cells: &'a [Cell], ind: &str, unit: u32) -> &'a Cell {
        cells
            .iter()
            .find(|c| c.indicator == ind && c.unit == unit)
            .unwrap_or_else(|| panic!("no {ind} for {unit}"))
    }

    #[test]
    fn i10_is_split_by_direction_from_the_organisations_kinds() {
        let cells = split_cells(&asked_by_two_kinds());
        let gp = find(&cells, "I10_within_5d_dir_gp_municipality", KOMMUNE);
        assert_eq!((gp.numerator, gp.denominator), (Some(6.0), Some(6.0)));
        let hf = find(&cells, "I10_within_5d_dir_hospital_municipality", KOMMUNE);
        assert_eq!((hf.numerator, hf.denominator), (Some(3.0), Some(4.0)));
        let hf14 = find(
            &cells,
            "I10_unanswered_14d_dir_hospital_municipality",
            KOMMUNE,
        );
        assert_eq!((hf14.numerator, hf14.denominator), (Some(1.0), Some(4.0)));
        let med = find(&cells, "I10_median_h_dir_gp_municipality", KOMMUNE);
        assert_eq!((med.value, med.n), (Some(26.0), 6));
        // The parts add up to the whole.
        let all = find(&cells, "I10_within_5d", KOMMUNE);
        assert_eq!((all.numerator, all.denominator), (Some(9.0), Some(10.0)));
        assert!(!cells.iter().any(|c| c.indicator.contains("_dir_other")));
    }

    #[test]
    fn i10_is_split_by_typeforesp_and_odd_codes_are_not_written() {
        let mut obs = asked_by_two_kinds();
        obs[5].type_foresp = Some("9,9".into());
        let cells = split_cells(&obs);
        let t8 = find(&cells, "I10_within_5d_T8", KOMMUNE);
        assert_eq!((t8.numerator, t8.denominator), (Some(7.0), Some(8.0)));
        let t99 = find(&cells, "I10_median_h_T99", KOMMUNE);
        assert_eq!((t99.value, t99.n), (Some(26.0), 1));
        let none = find(&cells, "I10_within_5d_Tnone", KOMMUNE);
        assert_eq!(none.denominator, Some(1.0));
        assert!(!cells.iter().any(|c| c.indicator.contains(',')));
        assert_eq!(type_token(Some(" 99 ")), "99");
        assert_eq!(type_token(Some("KT")), "KT");
        assert_eq!(type_token(Some("")), "none");
        assert_eq!(type_token(Some("123456789")), "none");
        assert_eq!(type_token(None), "none");
    }

    #[test]
    fn i12_counts_per_sending_organisation_never_per_doctor() {
        let cells = split_cells(&asked_by_two_kinds());
        assert_eq!(find(&cells, "I12_from_82000", KOMMUNE).value, Some(6.0));
        assert_eq!(find(&cells, "I12_from_80000", KOMMUNE).value, Some(5.0));
        // The answers go the other way: to the GP office and the hospital, from the municipality.
        assert_eq!(find(&cells, "I12_from_81000", 82000).value, Some(6.0));
        assert_eq!(find(&cells, "I12_from_81000", 80000).value, Some(3.0));
        assert!(!cells.iter().any(|c| c.indicator == "I12_from_82001"));
        let total: f64 = cells
            .iter()
            .filter(|c| c.unit == KOMMUNE && c.indicator.starts_with("I12_from_"))
            .filter_map(|c| c.value)
            .sum();
        assert_eq!(Some(total), find(&cells, "I12_total", KOMMUNE).value);
    }

    #[test]
    fn split_cells_are_suppressed_by_the_rule_and_hide_a_partner() {
        let mut cells = split_cells(&asked_by_two_kinds());
        crate::insight::suppress::apply(&mut cells);
        let hidden = |ind: &str, unit: u32| find(&cells, ind, unit).suppressed;
        // Hospital → municipality: 3 of 4 (denominator under 5); GP → municipality (6 of 6)
        // is shown alone, but the overall 9 of 10 minus it would give the hospital's away.
        assert!(hidden("I10_within_5d_dir_hospital_municipality", KOMMUNE));
        assert!(hidden("I10_within_5d_dir_gp_municipality", KOMMUNE));
        assert!(!hidden("I10_within_5d", KOMMUNE));
        // TypeForesp 99: 2 questions (hidden), so TypeForesp 8 (8 questions) goes too.
        assert!(hidden("I10_within_5d_T99", KOMMUNE));
        assert!(hidden("I10_within_5d_T8", KOMMUNE));
        // Medians need 10: the split ones have 6 and 3.
        assert!(hidden("I10_median_h_dir_gp_municipality", KOMMUNE));
        // I12 by sender: 6 from the GP office, 5 from the hospital — both shown. The hospital
        // got 3 answers from the municipality (hidden); the GP office's 6 go with them, or what
        // the municipality sent would give the 3 away.
        assert!(!hidden("I12_from_82000", KOMMUNE));
        assert!(!hidden("I12_from_80000", KOMMUNE));
        assert!(hidden("I12_from_81000", 80000));
        assert!(hidden("I12_from_81000", 82000));
    }

    #[test]
    fn quantiles_are_median_and_nearest_rank_p90() {
        let (m, p) = median_p90((1..=10).map(f64::from).collect());
        assert_eq!((m, p), (Some(5.5), Some(9.0)));
        assert_eq!(median_p90(vec![]), (None, None));
    }
}
