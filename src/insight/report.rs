//! The health community's report (issue 13 item 4): `helsemelding report --from YYYY-MM --to
//! YYYY-MM --out DIR` writes `report.html`, `indicators.csv` and `indicators.xlsx`; the running
//! gateway serves the same HTML read-only at `/report`.
//!
//! Input: the observations (`store`), the register (names, municipalities, level-1 organisations),
//! the months. Output: cells with suppression applied (`suppress`), months whose observations were
//! deleted by retention taken from their frozen cells, the coverage (messages observed and messages
//! not recorded per month). A suppressed cell prints nothing but the mark: its value, numerator,
//! denominator and n are all left empty, since any of them would give the hidden number away.
//!
//! The HTML is self-contained (inline CSS and SVG, no script, no external reference), Norwegian,
//! and prints well (`@media print`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::indicators::{self, Cell, Input, Kind, Period};
use super::population::Population;
use super::store::{InsightError, ObservationStore, RedbStore};
use super::suppress;
use crate::register::Register;

/// A unit as the report names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    pub name: String,
    pub municipality: Option<String>,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub months: Vec<String>,
    /// Monthly cells, suppression applied.
    pub cells: Vec<Cell>,
    /// Quarter and 12-month cells, suppression applied (rule 5's fallbacks).
    pub wider: Vec<Cell>,
    pub units: BTreeMap<u32, UnitInfo>,
    /// Messages observed per month (by the messages' own times).
    pub observed: BTreeMap<String, u64>,
    /// Messages delivered but not recorded, per month.
    pub gaps: BTreeMap<String, u64>,
    /// Months whose cells come from frozen aggregates (their observations are deleted).
    pub frozen: BTreeSet<String>,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Store(#[from] InsightError),
    #[error("period: {0}")]
    Period(String),
    #[error("writing {path}: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Builds the report for the months `from..=to` (`YYYY-MM`).
pub fn build(
    store: &dyn ObservationStore,
    register: &Register,
    from: &str,
    to: &str,
) -> Result<Report, ReportError> {
    let months = Period::months(from, to)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ReportError::Period(format!(
                "--from {from} --to {to}: expected YYYY-MM, from ≤ to"
            ))
        })?;
    let obs = store.observations()?;
    let org_of = |h: u32| {
        register
            .organisation_of(crate::ids::HerId(h))
            .map_or(h, |o| o.0)
    };
    let kind_of = |h: u32| {
        register
            .kind_of(crate::ids::HerId(h))
            .map_or("other", crate::register::OrgKind::token)
    };
    let input = Input {
        observations: &obs,
        org_of: &org_of,
        kind_of: &kind_of,
    };
    let mut cells = indicators::compute(&input, &months);
    let aggregates = store.aggregates()?;
    let mut frozen = BTreeSet::new();
    for m in &months {
        if let Some(json) = aggregates.get(&m.label) {
            if let Ok(kept) = serde_json::from_slice::<Vec<Cell>>(json) {
                cells.retain(|c| c.period != m.label);
                cells.extend(kept);
                frozen.insert(m.label.clone());
            }
        }
    }
    suppress::apply(&mut cells);
    let mut wider_periods = Vec::new();
    for m in &months {
        let (y, mo) = (m.from.year(), m.from.month());
        for p in [Period::quarter(y, mo), Period::twelve(y, mo)] {
            if !wider_periods.contains(&p) {
                wider_periods.push(p);
            }
        }
    }
    let mut wider = indicators::compute(&input, &wider_periods);
    suppress::apply(&mut wider);
    let mut units = BTreeMap::new();
    // The units, and the sending organisations I12's pairs name (`I12_from_{her}`).
    let senders = cells
        .iter()
        .chain(&wider)
        .filter_map(|c| c.indicator.strip_prefix("I12_from_")?.parse::<u32>().ok());
    for her in cells.iter().chain(&wider).map(|c| c.unit).chain(senders) {
        units.entry(her).or_insert_with(|| {
            let p = register.get(crate::ids::HerId(her));
            UnitInfo {
                name: p.map_or_else(|| format!("HER-id {her}"), |p| p.name.clone()),
                municipality: p.and_then(|p| p.municipality.clone()),
            }
        });
    }
    let mut observed = BTreeMap::new();
    for o in &obs {
        *observed
            .entry(indicators::month_of(o.time()))
            .or_insert(0u64) += 1;
    }
    Ok(Report {
        months: months.iter().map(|m| m.label.clone()).collect(),
        cells,
        wider,
        units,
        observed,
        gaps: store.gaps()?,
        frozen,
    })
}

impl Report {
    /// Adds `I2_per_1000` (USK days per 1,000 inhabitants of the unit's municipality) to the
    /// months and the quarter and 12-month fallbacks, from the optional population table. A unit
    /// without a kommunenummer in the register, or a municipality without a row, gets none.
    pub fn add_rates(&mut self, population: &Population) {
        let units = &self.units;
        let municipality = |u: u32| units.get(&u).and_then(|i| i.municipality.clone());
        let monthly = population.rates(&self.cells, municipality);
        let wider = population.rates(&self.wider, municipality);
        self.cells.extend(monthly);
        self.wider.extend(wider);
    }

    fn name(&self, unit: u32) -> String {
        match self.units.get(&unit) {
            Some(u) => match &u.municipality {
                Some(m) => format!("{} ({m})", u.name),
                None => u.name.clone(),
            },
            None => format!("HER-id {unit}"),
        }
    }

    /// The rows of the CSV and XLSX: every monthly cell, then for each suppressed one the quarter
    /// or 12-month cell that may be shown instead (rule 5).
    pub fn rows(&self) -> Vec<&Cell> {
        let mut rows: Vec<&Cell> = self.cells.iter().collect();
        let mut extra: Vec<&Cell> = Vec::new();
        for c in self.cells.iter().filter(|c| c.suppressed) {
            let Some(m) = indicators::parse_month(&c.period) else {
                continue;
            };
            let q = Period::quarter(m.year(), m.month()).label;
            let t = Period::twelve(m.year(), m.month()).label;
            if let Some(f) = suppress::fallback(c, &self.wider, &q, &t) {
                if !extra.iter().any(|e| std::ptr::eq(*e, f)) {
                    extra.push(f);
                }
            }
        }
        rows.sort_by_key(|c| order(c));
        extra.sort_by_key(|c| order(c));
        rows.extend(extra);
        rows
    }

    /// `indicators.csv`: `indicator,period,unit_her_id,unit_name,value,numerator,denominator,n,suppressed`.
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "indicator,period,unit_her_id,unit_name,value,numerator,denominator,n,suppressed\n",
        );
        for c in self.rows() {
            let [value, num, den, n] = fields(c);
            let _ = writeln!(
                s,
                "{},{},{},{},{value},{num},{den},{n},{}",
                c.indicator,
                c.period,
                c.unit,
                csv_quote(&self.name(c.unit)),
                c.suppressed
            );
        }
        s
    }

    /// `indicators.xlsx`: the CSV's table, and a sheet with the coverage.
    pub fn xlsx(&self, path: &Path) -> Result<(), ReportError> {
        use rust_xlsxwriter::{Format, Workbook};
        let err = |e: rust_xlsxwriter::XlsxError| ReportError::Write {
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut wb = Workbook::new();
        let bold = Format::new().set_bold();
        let sheet = wb.add_worksheet();
        sheet.set_name("Indikatorer").map_err(err)?;
        let head = [
            "indicator",
            "period",
            "unit_her_id",
            "unit_name",
            "value",
            "numerator",
            "denominator",
            "n",
            "suppressed",
        ];
        for (i, h) in head.iter().enumerate() {
            sheet
                .write_with_format(0, i as u16, *h, &bold)
                .map_err(err)?;
        }
        for (r, c) in self.rows().into_iter().enumerate() {
            let r = r as u32 + 1;
            sheet.write(r, 0, c.indicator.as_str()).map_err(err)?;
            sheet.write(r, 1, c.period.as_str()).map_err(err)?;
            sheet.write(r, 2, c.unit).map_err(err)?;
            sheet.write(r, 3, self.name(c.unit)).map_err(err)?;
            if !c.suppressed {
                for (col, v) in [(4, c.value), (5, c.numerator), (6, c.denominator)] {
                    if let Some(v) = v {
                        sheet.write(r, col, v).map_err(err)?;
                    }
                }
                sheet.write(r, 7, c.n as f64).map_err(err)?;
            }
            sheet.write(r, 8, c.suppressed).map_err(err)?;
        }
        let cov = wb.add_worksheet();
        cov.set_name("Dekning").map_err(err)?;
        for (i, h) in ["month", "observed", "not_recorded"].iter().enumerate() {
            cov.write_with_format(0, i as u16, *h, &bold).map_err(err)?;
        }
        for (r, m) in self.months.iter().enumerate() {
            let r = r as u32 + 1;
            cov.write(r, 0, m.as_str()).map_err(err)?;
            cov.write(r, 1, *self.observed.get(m).unwrap_or(&0) as f64)
                .map_err(err)?;
            cov.write(r, 2, *self.gaps.get(m).unwrap_or(&0) as f64)
                .map_err(err)?;
        }
        wb.save(path).map_err(err)
    }

    /// `report.html`.
    pub fn html(&self) -> String {
        html::page(self)
    }

    fn cell(&self, indicator: &str, period: &str, unit: u32) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|c| c.indicator == indicator && c.period == period && c.unit == unit)
    }
}

fn order(c: &Cell) -> (u32, String, String, u32) {
    (
        indicator_number(&c.indicator),
        c.indicator.clone(),
        c.period.clone(),
        c.unit,
    )
}

/// `I10_median_h` → 10, so I10 sorts after I9.
fn indicator_number(ind: &str) -> u32 {
    ind.trim_start_matches('I')
        .split('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(99)
}

/// value, numerator, denominator, n as the CSV writes them: all empty when suppressed.
fn fields(c: &Cell) -> [String; 4] {
    if c.suppressed {
        return Default::default();
    }
    let num = |v: Option<f64>| v.map(fmt_num).unwrap_or_default();
    [
        num(c.value),
        num(c.numerator),
        num(c.denominator),
        c.n.to_string(),
    ]
}

/// A number without needless decimals (shares keep four).
fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

mod html;

/// `helsemelding report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// First month, `YYYY-MM`.
    #[arg(long)]
    pub from: String,
    /// Last month, `YYYY-MM` (inclusive).
    #[arg(long)]
    pub to: String,
    /// Directory to write report.html, indicators.csv and indicators.xlsx into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// The gateway configuration (its state directory holds insight.redb; its register names units).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
}

/// Runs `helsemelding report`: 0 written, 1 a failure, 2 a bad configuration or period.
pub fn run(args: &ReportArgs) -> ExitCode {
    let (config, register) = match crate::config::check(&args.config) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!(
                "helsemelding report: {} problem(s) with {}:",
                problems.len(),
                args.config.display()
            );
            for p in problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    let store = match RedbStore::open_read_only(&config.paths.state) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("helsemelding report: {e} (is [insight] enabled, and has the gateway recorded anything?)");
            return ExitCode::FAILURE;
        }
    };
    let population = match &config.insight.population_file {
        Some(path) => match Population::load(path) {
            Ok(p) => Some(p),
            Err(problems) => {
                for p in problems {
                    eprintln!("helsemelding report: {}: {p}", path.display());
                }
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let mut report = match build(&store, &register, &args.from, &args.to) {
        Ok(r) => r,
        Err(e @ ReportError::Period(_)) => {
            eprintln!("helsemelding report: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("helsemelding report: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(p) = &population {
        report.add_rates(p);
    }
    match write_all(&report, &args.out) {
        Ok(()) => {
            println!(
                "wrote {}/report.html, indicators.csv, indicators.xlsx ({} cells, {} suppressed)",
                args.out.display(),
                report.cells.len(),
                report.cells.iter().filter(|c| c.suppressed).count()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("helsemelding report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes the three files into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> Result<(), ReportError> {
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| ReportError::Write {
            path,
            reason: e.to_string(),
        })
    };
    std::fs::create_dir_all(dir).map_err(|e| ReportError::Write {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    write("report.html", report.html().as_bytes())?;
    write("indicators.csv", report.csv().as_bytes())?;
    report.xlsx(&dir.join("indicators.xlsx"))
}

/// What `/report` reads: the running recorder's store and the register.
pub struct ReportView {
    pub store: std::sync::Arc<RedbStore>,
    pub register: std::sync::Arc<Register>,
    /// `[insight] population_file`, read at start.
    pub population: Option<Population>,
}

impl ReportView {
    /// The HTML for the 12 months ending with the current one (or `from`/`to` when given).
    pub fn page(&self, from: Option<&str>, to: Option<&str>) -> Result<String, ReportError> {
        let now = time::OffsetDateTime::now_utc();
        let to = to.map_or_else(|| indicators::month_of(now), str::to_owned);
        let from = match from {
            Some(f) => f.to_owned(),
            None => {
                let last = indicators::parse_month(&to)
                    .ok_or_else(|| ReportError::Period(format!("to={to}: expected YYYY-MM")))?;
                let first = Period::twelve(last.year(), last.month()).from;
                format!("{:04}-{:02}", first.year(), first.month() as u8)
            }
        };
        let mut report = build(self.store.as_ref(), &self.register, &from, &to)?;
        if let Some(p) = &self.population {
            report.add_rates(p);
        }
        Ok(report.html())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(ind: &str, unit: u32, value: f64, suppressed: bool) -> Cell {
        Cell {
            indicator: ind.into(),
            period: "2026-03".into(),
            unit,
            kind: Kind::Count,
            value: Some(value),
            numerator: Some(value),
            denominator: None,
            n: value as u64,
            suppressed,
        }
    }

    fn report(cells: Vec<Cell>) -> Report {
        Report {
            months: vec!["2026-03".into()],
            cells,
            wider: Vec::new(),
            units: BTreeMap::from([(
                81000,
                UnitInfo {
                    name: "Testkommune, \"sør\"".into(),
                    municipality: Some("5501".into()),
                },
            )]),
            observed: BTreeMap::new(),
            gaps: BTreeMap::new(),
            frozen: BTreeSet::new(),
        }
    }

    #[test]
    fn csv_has_exactly_the_columns_and_suppressed_cells_print_nothing() {
        let r = report(vec![
            cell("I1", 81000, 7.0, false),
            cell("I12_total", 81000, 3.0, true),
        ]);
        let csv = r.csv();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "indicator,period,unit_her_id,unit_name,value,numerator,denominator,n,suppressed"
        );
        assert_eq!(
            lines[1],
            "I1,2026-03,81000,\"Testkommune, \"\"sør\"\" (5501)\",7,7,,7,false"
        );
        assert_eq!(
            lines[2],
            "I12_total,2026-03,81000,\"Testkommune, \"\"sør\"\" (5501)\",,,,,true"
        );
    }

    #[test]
    fn html_is_self_contained_and_marks_suppressed_cells() {
        let r = report(vec![
            cell("I1", 81000, 7.0, false),
            cell("I12_total", 81000, 3.0, true),
        ]);
        let h = r.html();
        assert!(h.contains("<svg"));
        assert!(h.contains("skjult"));
        assert!(!h.contains("<script"));
        assert!(!h.contains("http://") && !h.contains("https://"));
        assert!(h.contains("@media print"));
    }

    #[test]
    fn the_served_page_reads_the_recorders_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = RedbStore::open(dir.path()).unwrap();
        let o = crate::insight::observation::Observation {
            msg_id: "m1".into(),
            from: 80001,
            received: 0,
            gen_date: "2026-03-02T10:00:00".into(),
            msg_type: "DIALOG_NOTAT".into(),
            sender: Default::default(),
            receiver: crate::insight::observation::Unit {
                org: Some(81000),
                service: None,
            },
            ref_to_parent: None,
            ref_to_conversation: None,
            apprec: None,
            plo: None,
            type_foresp: None,
            patient: None,
        };
        store.put(&[o]).unwrap();
        store.add_gap("2026-03", 2).unwrap();
        let register = crate::register::Register::from_parties(vec![]).unwrap();
        let view = ReportView {
            store: std::sync::Arc::new(store),
            register: std::sync::Arc::new(register),
            population: None,
        };
        let page = view.page(Some("2026-02"), Some("2026-03")).unwrap();
        assert!(page.contains("HER-id 81000"));
        assert!(
            page.contains("<td>2026-03</td><td>1</td><td>2</td>"),
            "coverage with the gap"
        );
        assert!(matches!(
            view.page(Some("2026-13"), None),
            Err(ReportError::Period(_))
        ));
    }

    #[test]
    fn split_cells_are_tables_with_norwegian_labels_not_charts() {
        let mut within = cell("I10_within_5d_dir_gp_municipality", 81000, 0.8, false);
        within.kind = Kind::Share;
        let r = report(vec![
            cell("I1", 81000, 7.0, false),
            within,
            cell("I10_median_h_T8", 81000, 30.0, true),
            cell("I12_from_80000", 81000, 12.0, false),
        ]);
        let h = r.html();
        assert!(h.contains("<section data-split=\"I10_within_5d_dir\">"));
        assert!(h.contains("fra legekontor til kommune"));
        assert!(h.contains("<section data-split=\"I10_median_h_type\">"));
        assert!(h.contains("forespørselstype 8"));
        assert!(h.contains("<section data-split=\"I12_total_from\">"));
        assert!(h.contains("<tr data-indicator=\"I12_from_80000\""));
        assert!(!h.contains("data-indicator=\"I10_within_5d_dir_gp_municipality\"><svg"));
        assert!(!h.contains("<figure data-chart=\"bars\" data-indicator=\"I12_from"));
        assert!(!h.contains("<section data-indicator=\"I12_from_80000\""));
    }

    #[test]
    fn numbers_are_written_plainly() {
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(1.0 / 3.0), "0.3333");
    }
}
