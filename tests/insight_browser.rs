//! The health community's report looked at as a person would (issue 13 item 6): a year of
//! synthetic traffic of one hospital trust and seven municipalities is put into `insight.redb`,
//! `helsemelding report` writes `report.html` and `indicators.csv`, and Debian's Chromium
//! (headless, through chromedriver) opens the file from disk and then the same report served at
//! `/report` by the real `helsemelding serve`.
//!
//! Checked, against the CSV of the same run: every chart the report should have is there, drew
//! (an SVG with a size on screen), and holds one bar per visible cell of the last month, a "skjult"
//! mark per hidden one, one point per visible month of its trend, and the norm line where a
//! standard gives one; every table marks exactly the hidden cells; the page is Norwegian; it
//! fetched nothing (no resource loaded, CSP on); the browser console shows no error, warning or
//! CSP violation; printed to A4 nothing is wider than the paper and figures do not break across
//! pages. `/report` serves the file's bytes under its own CSP, and draws the same way.
//!
//! Written: `target/insight-screenshots/report.png` (the file), `report-served.png` (`/report`)
//! and `report.pdf` (the file printed).
//!
//! The observations are made here, not sent through the gateway (tests/insight_gateway.rs does
//! that): this test is about what a reader sees. Patients are pseudonyms of a counter; no
//! identity number exists anywhere in it. Needs `chromium` and `chromedriver` (see
//! `support::browser`), and RabbitMQ for the `/report` half.

mod support;

use std::path::{Path, PathBuf};

use helsemelding::insight::observation::{AppRecFacts, Observation, PloEvent, PloFacts, Unit};
use helsemelding::insight::store::{ObservationStore, RedbStore};
use serde_json::Value;
use support::browser::{browser_test, http, Browser, BrowserTest};
use support::repo;
use support::serve::Serve;
use time::{Duration as Span, PrimitiveDateTime};

/// The hospital trust and the department that sends the PLO messages (the shipped register).
const HOSPITAL: u32 = 80000;
const DEPARTMENT: u32 = 80001;

/// The municipalities: organisation HER-id, name, kommunenummer, USK episodes a month (0 = a few).
/// 81000 is the shipped register's; the others are added to the test's register.
const MUNICIPALITIES: &[(u32, &str, &str, u32)] = &[
    (81000, "Testkommune", "5501", 24),
    (81100, "Fjordvik kommune", "5502", 18),
    (81200, "Bakkeli kommune", "5503", 28),
    (81300, "Storøy kommune", "5504", 15),
    (81400, "Elvedal kommune", "5505", 20),
    (81500, "Lyngnes kommune", "5506", 16),
    // Small: its cells are hidden, which the charts and tables must show.
    (81600, "Småvik kommune", "5507", 0),
];

/// A small deterministic generator (xorshift64*): the same community every run.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }

    /// True with probability `p` per cent.
    fn chance(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// Builds the observations one message at a time.
struct Community {
    obs: Vec<Observation>,
    next_id: u64,
    dice: Dice,
}

fn gen(t: PrimitiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn day(t: PrimitiveDateTime) -> String {
    gen(t)[..10].to_owned()
}

fn unit(org: u32, service: u32) -> Unit {
    Unit {
        org: Some(org),
        service: Some(service),
    }
}

fn plo(status: &str, events: &[(&str, PrimitiveDateTime)]) -> Option<PloFacts> {
    Some(PloFacts {
        status: Some(status.into()),
        events: events
            .iter()
            .map(|(code, t)| PloEvent {
                code: (*code).into(),
                time: day(*t),
                estimate: Some(false),
            })
            .collect(),
        out_state: None,
        out_to: None,
    })
}

impl Community {
    /// One message from `from` (its organisation `from_org`) to `to`, at Oslo time `at`, and the
    /// receiver's AppRec for it (OK mostly, some rejected, a few never sent); returns its MsgId.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &mut self,
        msg_type: &str,
        from: (u32, u32),
        to: (u32, u32),
        at: PrimitiveDateTime,
        patient: Option<&str>,
        plo: Option<PloFacts>,
        parent: Option<&str>,
    ) -> String {
        self.next_id += 1;
        let msg_id = format!("5e1f0000-0000-4000-8000-{:012}", self.next_id);
        let received = helsemelding::insight::oslo::from_local(at).unix_timestamp() + 3;
        self.obs.push(Observation {
            msg_id: msg_id.clone(),
            from: from.1,
            received,
            gen_date: gen(at),
            msg_type: msg_type.into(),
            sender: unit(from.0, from.1),
            receiver: unit(to.0, to.1),
            ref_to_parent: parent.map(str::to_owned),
            ref_to_conversation: parent.map(str::to_owned),
            apprec: None,
            plo,
            type_foresp: (msg_type == "DIALOG_FORESPORSEL").then(|| "8".into()),
            patient: patient.map(str::to_owned),
        });
        if !self.dice.chance(4) {
            let after = Span::minutes(self.dice.range(1, 600));
            let rejected = self.dice.chance(6);
            self.next_id += 1;
            let apprec_id = format!("a9900000-0000-4000-8000-{:012}", self.next_id);
            let sent = at + after;
            self.obs.push(Observation {
                msg_id: apprec_id.clone(),
                from: to.0,
                received: helsemelding::insight::oslo::from_local(sent).unix_timestamp() + 2,
                gen_date: gen(sent),
                msg_type: "APPREC".into(),
                sender: Unit {
                    org: Some(to.0),
                    service: None,
                },
                receiver: Unit {
                    org: Some(from.1),
                    service: None,
                },
                ref_to_parent: Some(msg_id.clone()),
                ref_to_conversation: None,
                apprec: Some(AppRecFacts {
                    apprec_id,
                    from: to.0,
                    original_sender: from.1,
                    original_msg_id: msg_id.clone(),
                    status: if rejected { "2" } else { "1" }.into(),
                    codes: if rejected { vec!["E21".into()] } else { vec![] },
                }),
                plo: None,
                type_foresp: None,
                patient: None,
            });
        }
        msg_id
    }

    /// One USK episode: admitted, reported, declared discharge-ready (sometimes avmeldt and
    /// declared again), discharged with an outcome, sometimes admitted again within 30 days.
    fn episode(&mut self, m: u32, patient: &str, admitted: PrimitiveDateTime) {
        let hf = (HOSPITAL, DEPARTMENT);
        let home = (m, m + 1);
        self.send(
            "LOG_INNLAGT",
            hf,
            home,
            admitted,
            Some(patient),
            plo("N", &[("1", admitted)]),
            None,
        );
        let report_after = Span::hours(if self.dice.chance(85) {
            self.dice.range(1, 22)
        } else {
            self.dice.range(26, 60)
        });
        self.send(
            "INNLEGGELSESRAPPORT",
            home,
            hf,
            admitted + report_after,
            Some(patient),
            plo("N", &[]),
            None,
        );
        let mut usk = admitted + Span::days(self.dice.range(1, 6)) + Span::hours(2);
        self.send(
            "LOG_UTSKRIVNINGSKLAR",
            hf,
            home,
            usk,
            Some(patient),
            plo("N", &[("1", admitted), ("3", usk)]),
            None,
        );
        if self.dice.chance(25) {
            let off = usk + Span::days(self.dice.range(0, 2)) + Span::hours(1);
            self.send(
                "LOG_AVMELDING",
                hf,
                home,
                off,
                Some(patient),
                plo("N", &[("4", off)]),
                None,
            );
            usk = off + Span::days(self.dice.range(2, 5));
            self.send(
                "LOG_UTSKRIVNINGSKLAR",
                hf,
                home,
                usk,
                Some(patient),
                plo("N", &[("1", admitted), ("3", usk)]),
                None,
            );
        }
        // Samdata: most USK patients have no overliggerdøgn, the mean is a few days.
        let days = if self.dice.chance(35) {
            0
        } else {
            self.dice.range(1, 9)
        };
        let out = usk + Span::days(days) + Span::hours(2);
        let mut facts = plo("N", &[("2", out)]);
        if let Some(f) = facts.as_mut() {
            let r = self.dice.range(0, 99);
            let (state, to) = match r {
                0..=49 => ("1", "1"),
                50..=84 => ("1", "11"),
                85..=89 => ("1", "21"),
                90..=94 => ("1", "3"),
                _ => ("2", "1"),
            };
            f.out_state = Some(state.into());
            f.out_to = Some(to.into());
        }
        self.send("LOG_UTSKREVET", hf, home, out, Some(patient), facts, None);
        let report_day = if self.dice.chance(80) {
            out + Span::hours(3)
        } else {
            out + Span::days(1)
        };
        self.send(
            "UTSKRIVNINGSRAPPORT",
            hf,
            home,
            report_day,
            Some(patient),
            plo("N", &[]),
            None,
        );
        // Samdata 2022: 21.7 % readmitted within 30 days (ø-hjelp only; this counts all).
        if self.dice.chance(25) {
            let back = out + Span::days(self.dice.range(2, 28));
            self.send(
                "LOG_INNLAGT",
                hf,
                home,
                back,
                Some(patient),
                plo("N", &[("1", back)]),
                None,
            );
        }
    }

    /// A dialogue question to the municipality, answered after hours or days, or never.
    fn dialogue(&mut self, m: u32, at: PrimitiveDateTime) {
        let q = self.send(
            "DIALOG_FORESPORSEL",
            (HOSPITAL, DEPARTMENT),
            (m, m + 1),
            at,
            None,
            None,
            None,
        );
        if !self.dice.chance(10) {
            let after = Span::hours(self.dice.range(1, 160));
            self.send(
                "DIALOG_SVAR",
                (m, m + 1),
                (HOSPITAL, DEPARTMENT),
                at + after,
                None,
                None,
                Some(&q),
            );
        }
    }
}

/// A year of traffic (episodes admitted 2026-01-01 … 2026-12-10).
fn community() -> Vec<Observation> {
    let mut c = Community {
        obs: Vec::new(),
        next_id: 0,
        dice: Dice(0x5eed_1234_abcd_0001),
    };
    let mut patient = 0u64;
    for month in 1..=12u8 {
        let first = PrimitiveDateTime::new(
            time::Date::from_calendar_date(2026, time::Month::try_from(month).unwrap(), 1).unwrap(),
            time::Time::MIDNIGHT,
        );
        let last_day = if month == 12 { 10 } else { 28 };
        for &(m, _, _, per_month) in MUNICIPALITIES {
            let n = if per_month == 0 {
                c.dice.range(1, 3)
            } else {
                per_month as i64 + c.dice.range(-2, 2)
            };
            for _ in 0..n {
                patient += 1;
                let at = first
                    + Span::days(c.dice.range(0, last_day - 1))
                    + Span::hours(c.dice.range(0, 23))
                    + Span::minutes(c.dice.range(0, 59));
                let pseudonym = format!("{patient:064x}");
                c.episode(m, &pseudonym, at);
            }
            for _ in 0..(if per_month == 0 { 2 } else { 8 }) {
                let at = first
                    + Span::days(c.dice.range(0, last_day - 1))
                    + Span::hours(c.dice.range(8, 15));
                c.dialogue(m, at);
            }
        }
    }
    c.obs
}

/// The register entries of the municipalities the shipped register lacks, each with its
/// nursing home (`her + 1`) as a service (they sign with Testkommune's test certificate; nothing
/// here is signed).
fn extra_parties() -> String {
    let cert = format!(
        "{:?}",
        repo()
            .join("fixtures/gateway-pki/parties/81000-sign.pem")
            .display()
            .to_string()
    );
    let mut s = String::new();
    for &(her, name, kommune, _) in MUNICIPALITIES.iter().skip(1) {
        s.push_str(&format!(
            "\n[[party]]\nher_id = {her}\nname = {name:?}\nmunicipality = {kommune:?}\nkind = \"municipality\"\n\
             accepts = [\"APPREC\"]\ncertificates = [{cert}]\namqp_users = []\n\
             \n[[party]]\nher_id = {}\nname = \"{name}, sykehjemmet\"\norganisation_her_id = {her}\n\
             accepts = [\"LOG_INNLAGT\", \"APPREC\"]\ncertificates = [{cert}]\namqp_users = []\n",
            her + 1
        ));
    }
    s
}

fn population() -> String {
    let mut s = String::from("kommunenummer,year,population\n");
    for (i, &(_, _, kommune, per_month)) in MUNICIPALITIES.iter().enumerate() {
        let people = 4000 + 3000 * per_month as u64 + 170 * i as u64;
        s.push_str(&format!(
            "{kommune},2025,{}\n{kommune},2026,{people}\n",
            people - 60
        ));
    }
    s
}

/// The test's configuration: the shipped one with this vhost, the console on `port`, insight on
/// with a key file and the population table, and the added municipalities in the register.
fn write_config(dir: &Path, url: &str, port: u16) -> PathBuf {
    let schemas = std::env::var_os("HELSEMELDING_XSD")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("xsd"));
    let path = helsemelding::config::scratch::write(
        &repo(),
        dir,
        &helsemelding::config::scratch::Scratch {
            url,
            schemas: &schemas,
            prefetch: None,
            metrics_port: Some(port),
        },
    )
    .expect("config written");
    let key = dir.join("insight.key");
    std::fs::write(&key, format!("insight {}\n", "5a".repeat(32))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let people = dir.join("population.csv");
    std::fs::write(&people, population()).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\nenabled = false\n"),
        "the shipped [insight] section"
    );
    let text = text.replace(
        "\nenabled = false\n",
        &format!(
            "\nenabled = true\nkey_file = {:?}\npopulation_file = {:?}\n",
            key.display().to_string(),
            people.display().to_string()
        ),
    );
    std::fs::write(&path, text).unwrap();
    let register = dir.join("parties.toml");
    let mut parties = std::fs::read_to_string(&register).unwrap();
    parties.push_str(&extra_parties());
    std::fs::write(&register, parties).unwrap();
    path
}

/// One CSV row.
#[derive(Debug, Clone)]
struct Row {
    indicator: String,
    period: String,
    value: String,
    suppressed: bool,
}

fn read_csv(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            // unit_name may be quoted and hold commas: the fields around it are plain.
            let head: Vec<&str> = l.splitn(4, ',').collect();
            let tail: Vec<&str> = l.rsplitn(6, ',').collect();
            Row {
                indicator: head[0].into(),
                period: head[1].into(),
                value: tail[4].into(),
                suppressed: tail[0] == "true",
            }
        })
        .collect()
}

/// What a chart or table of the page holds, read in the browser.
const READ_PAGE: &str = r#"
const figs = [...document.querySelectorAll('figure[data-chart]')].map(f => {
  const svg = f.querySelector('svg');
  const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  const drawn = el => { const b = el.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  return {
    chart: f.dataset.chart,
    indicator: f.dataset.indicator,
    width: box.width, height: box.height,
    bars: svg ? [...svg.querySelectorAll('rect')].filter(drawn).length : 0,
    hidden: svg ? [...svg.querySelectorAll('text')].filter(t => t.textContent === 'skjult').length : 0,
    points: svg ? [...svg.querySelectorAll('circle')].filter(drawn).length : 0,
    lines: svg ? [...svg.querySelectorAll('polyline')].filter(p => p.points.length >= 1).length : 0,
    norm: svg ? svg.querySelectorAll('line[stroke-dasharray]').length : 0,
    caption: (f.querySelector('figcaption') || {}).textContent || '',
  };
});
const tables = [...document.querySelectorAll('section[data-indicator]')].map(s => ({
  indicator: s.dataset.indicator,
  hidden: s.querySelectorAll('td.s').length,
  cells: s.querySelectorAll('tbody td').length,
}));
const splitTables = document.querySelectorAll('section[data-split]').length;
const splitRows = [...document.querySelectorAll('section[data-split] tr[data-indicator]')].map(r => ({
  indicator: r.dataset.indicator,
  hidden: r.querySelectorAll('td.s').length,
}));
return {
  figs, tables, splitTables, splitRows,
  lang: document.documentElement.lang,
  title: document.title,
  h1: document.querySelector('h1').textContent,
  headers: [...document.querySelectorAll('th')].map(t => t.textContent),
  resources: performance.getEntriesByType('resource').map(r => r.name),
  scripts: document.scripts.length,
  printRules: [...document.styleSheets].flatMap(s => [...s.cssRules])
    .filter(r => r.media && [...r.media].includes('print')).length,
};
"#;

/// Checks the page in `browser` against the CSV's cells; returns the number of figures.
fn check_page(browser: &Browser, rows: &[Row], months: &[String], what: &str) -> usize {
    let page = browser.eval(READ_PAGE);
    let last = months.last().unwrap();
    assert_eq!(page["lang"], "nb", "{what}: Norwegian page");
    assert_eq!(page["scripts"], 0, "{what}: no script");
    assert!(
        page["h1"]
            .as_str()
            .unwrap()
            .contains("Hva helsefellesskapet lærer"),
        "{what}: {}",
        page["h1"]
    );
    let headers: Vec<&str> = page["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        headers.contains(&"Enhet") && headers.contains(&"Måned"),
        "{what}: Norwegian table heads {headers:?}"
    );
    assert_eq!(
        page["resources"].as_array().unwrap().len(),
        0,
        "{what}: fetched nothing: {}",
        page["resources"]
    );
    assert!(
        page["printRules"].as_u64().unwrap() >= 1,
        "{what}: a print stylesheet"
    );

    // The charts the report should have: those of its chart list with data in the CSV.
    let monthly = |r: &&Row| months.contains(&r.period);
    let indicators_in_csv: std::collections::BTreeSet<&str> = rows
        .iter()
        .filter(monthly)
        .map(|r| r.indicator.as_str())
        .collect();
    let charted = [
        ("I1", false),
        ("I2", false),
        ("I2_per_1000", false),
        ("I3", false),
        ("I4_median", false),
        ("I5", false),
        ("I6", false),
        ("I8", false),
        ("I9_innleggelsesrapport", true),
        ("I10_within_5d", true),
        ("I11_missing_4d", true),
    ];
    for (ind, _) in charted {
        assert!(
            indicators_in_csv.contains(ind),
            "the community gives every charted indicator data: {ind} missing"
        );
    }
    let figs = page["figs"].as_array().unwrap();
    assert_eq!(
        figs.len(),
        2 * charted.len(),
        "{what}: a ranked bar chart and a trend per charted indicator: {figs:#?}"
    );
    for (ind, has_norm) in charted {
        let fig = |chart: &str| {
            figs.iter()
                .find(|f| f["chart"] == chart && f["indicator"] == ind)
                .unwrap_or_else(|| panic!("{what}: no {chart} chart of {ind}"))
        };
        let (bars, trend) = (fig("bars"), fig("trend"));
        for f in [bars, trend] {
            assert!(
                f["width"].as_f64().unwrap() > 100.0 && f["height"].as_f64().unwrap() > 20.0,
                "{what}: {ind} {} did not draw: {f}",
                f["chart"]
            );
        }
        let count = |period: &str, hidden: bool| {
            rows.iter()
                .filter(|r| r.indicator == ind && r.period == period && r.suppressed == hidden)
                .count()
        };
        let (shown, hidden) = (count(last, false), count(last, true));
        assert!(
            shown + hidden >= MUNICIPALITIES.len(),
            "{ind}: a bar or a mark per unit"
        );
        assert_eq!(
            (
                bars["bars"].as_u64().unwrap() as usize,
                bars["hidden"].as_u64().unwrap() as usize
            ),
            (shown, hidden),
            "{what}: {ind} bars for {last} (visible, hidden) as in the CSV"
        );
        let points: usize = months.iter().rev().take(12).map(|m| count(m, false)).sum();
        assert_eq!(
            trend["points"].as_u64().unwrap() as usize,
            points,
            "{what}: {ind} trend points = visible monthly cells"
        );
        assert!(
            points >= 24,
            "{ind}: the community gives the trend data ({points})"
        );
        assert!(trend["lines"].as_u64().unwrap() >= 1, "{what}: {ind} lines");
        assert_eq!(
            trend["norm"].as_u64().unwrap(),
            u64::from(has_norm),
            "{what}: {ind} norm line"
        );
    }

    // One table per indicator, its hidden cells exactly the CSV's hidden monthly cells; the
    // splits (I10 by direction and TypeForesp, I12 by sender) as rows of a table per figure
    // and split, their hidden cells exactly the CSV's too.
    let split = |ind: &str| {
        ind.starts_with("I12_from_")
            || (ind.starts_with("I10_") && (ind.contains("_dir_") || ind.contains("_T")))
    };
    let tables = page["tables"].as_array().unwrap();
    assert_eq!(
        tables.len(),
        indicators_in_csv.iter().filter(|i| !split(i)).count(),
        "{what}: a table per indicator"
    );
    let split_rows = page["splitRows"].as_array().unwrap();
    let split_in_csv: Vec<&str> = indicators_in_csv
        .iter()
        .copied()
        .filter(|i| split(i))
        .collect();
    for kind in ["_dir_", "_T", "I12_from_"] {
        assert!(
            split_in_csv.iter().any(|i| i.contains(kind)),
            "the community gives the {kind} split data"
        );
    }
    for ind in &split_in_csv {
        let rows_of: Vec<&Value> = split_rows
            .iter()
            .filter(|r| r["indicator"] == *ind)
            .collect();
        assert!(!rows_of.is_empty(), "{what}: no row of {ind}");
        let hidden_shown: u64 = rows_of.iter().map(|r| r["hidden"].as_u64().unwrap()).sum();
        let hidden = rows
            .iter()
            .filter(monthly)
            .filter(|r| r.indicator == *ind && r.suppressed)
            .count();
        assert_eq!(
            hidden_shown as usize, hidden,
            "{what}: hidden cells of {ind}"
        );
    }
    assert!(
        page["splitTables"].as_u64().unwrap() >= 9,
        "{what}: four I10 figures by direction and by TypeForesp, I12 by sender: {}",
        page["splitTables"]
    );
    let mut any_hidden = 0;
    for t in tables {
        let ind = t["indicator"].as_str().unwrap();
        let hidden = rows
            .iter()
            .filter(monthly)
            .filter(|r| r.indicator == ind && r.suppressed)
            .count();
        any_hidden += hidden;
        assert_eq!(
            t["hidden"].as_u64().unwrap() as usize,
            hidden,
            "{what}: hidden cells of {ind}"
        );
    }
    assert!(any_hidden > 20, "the small municipality's cells are hidden");
    figs.len()
}

/// Nothing in the browser's console: no script error, no CSP violation, no failed load.
fn assert_quiet_console(browser: &Browser, what: &str) {
    let log = browser.console_log();
    let loud: Vec<&(String, String)> = log
        .iter()
        .filter(|(level, _)| level == "SEVERE" || level == "WARNING")
        .collect();
    assert!(loud.is_empty(), "{what}: the console shows {loud:#?}");
}

/// Printed on A4 (19 cm between the default margins: 718 CSS px), nothing is wider than the
/// paper and no figure or table row is split across pages.
fn check_print(browser: &Browser) {
    // The scroll bar takes some of the window; the page gets 718 px or a little less.
    browser.resize(733, 1000);
    browser.cdp(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"media": "print"}),
    );
    let v = browser.eval(
        r#"
const inner = document.documentElement.clientWidth;
const wide = [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > inner + 0.5)
  .slice(0, 5).map(e => { const s = e.closest('section'); const where = s ? (s.dataset.indicator || s.dataset.split || '') : '';
    return e.tagName + ' ' + (e.dataset.indicator || where) + ' ' + Math.round(e.getBoundingClientRect().right); });
const avoid = [...document.querySelectorAll('figure')]
  .every(f => getComputedStyle(f).breakInside === 'avoid');
return {inner, wide, avoid, scroll: document.documentElement.scrollWidth};
"#,
    );
    assert!(
        (700.0..=718.0).contains(&v["inner"].as_f64().unwrap()),
        "the page is as wide as A4 between its margins: {v}"
    );
    assert_eq!(
        v["wide"].as_array().unwrap().len(),
        0,
        "printed, these stick out of the page: {v}"
    );
    assert_eq!(v["avoid"], true, "figures are not split across pages: {v}");
    browser.cdp(
        "Emulation.setEmulatedMedia",
        serde_json::json!({"media": ""}),
    );
    let pdf = browser.print_pdf("report");
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    // Page objects (`/Type /Page`, not the `/Type /Pages` tree node).
    let pages = pdf
        .windows(12)
        .filter(|w| &w[..11] == b"/Type /Page" && w[11] != b's')
        .count();
    assert!(pages >= 2, "the report prints on several pages ({pages})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_in_a_real_browser() {
    let Some(BrowserTest {
        chromium,
        chromedriver,
        vhost,
        dir,
        port,
    }) = browser_test().await
    else {
        return;
    };
    let config = write_config(dir.path(), vhost.url(), port);

    // A year of a health community's traffic in the store the gateway would have written.
    let obs = community();
    assert!(obs.len() > 5000, "{} observations", obs.len());
    {
        let store = RedbStore::open(&dir.path().join("state")).unwrap();
        for chunk in obs.chunks(512) {
            store.put(chunk).unwrap();
        }
    }

    let out = repo().join("target/insight-screenshots");
    std::fs::create_dir_all(&out).unwrap();
    // Kept for a person to open (next to the screenshots).
    let report_dir = out.join("report");
    let made = support::serve::helsemelding(
        &[
            "report",
            "--from",
            "2026-01",
            "--to",
            "2026-12",
            "--out",
            report_dir.to_str().unwrap(),
        ],
        &config,
    );
    assert!(
        made.status.success(),
        "{}{}",
        String::from_utf8_lossy(&made.stdout),
        String::from_utf8_lossy(&made.stderr)
    );
    let rows = read_csv(&report_dir.join("indicators.csv"));
    for r in &rows {
        assert_eq!(
            r.suppressed,
            r.value.is_empty(),
            "a value exactly when shown: {r:?}"
        );
    }
    let months: Vec<String> = (1..=12).map(|m| format!("2026-{m:02}")).collect();
    let html = std::fs::read_to_string(report_dir.join("report.html")).unwrap();

    let browser = tokio::task::block_in_place(|| Browser::start(&chromium, &chromedriver, &out));
    tokio::task::block_in_place(|| {
        // The file, opened from disk as a committee member would open an attachment.
        browser.go(&format!(
            "file://{}",
            report_dir.join("report.html").display()
        ));
        let figures = check_page(&browser, &rows, &months, "report.html");
        println!("report.html: {figures} figures drew, as the CSV says they should");
        assert_quiet_console(&browser, "report.html");
        let height = browser
            .eval("return document.documentElement.scrollHeight")
            .as_u64()
            .unwrap();
        browser.resize(1400, height.clamp(1000, 15000) as u32);
        browser.screenshot("report");
        check_print(&browser);
        assert_quiet_console(&browser, "report.html printed");
    });

    // The same report at /report on the running gateway (its own CSP header).
    let mut gateway = Serve::start(&config, dir.path(), "gateway");
    gateway
        .wait_until("/health", || async move {
            tokio::task::block_in_place(|| {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    && http(port, "GET", "/health", &[], b"").0 == 200
            })
        })
        .await;
    tokio::task::block_in_place(|| {
        let path = "/report?from=2026-01&to=2026-12";
        let (status, head, body) = http(port, "GET", path, &[], b"");
        assert_eq!(status, 200, "{head}{body}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-security-policy: default-src 'none'"),
            "{head}"
        );
        assert!(
            body == html,
            "/report serves the bytes `helsemelding report` wrote"
        );
        browser.resize(1400, 1000);
        browser.go(&format!("http://127.0.0.1:{port}{path}"));
        check_page(&browser, &rows, &months, "/report");
        assert_quiet_console(&browser, "/report");
        browser.screenshot("report-served");
    });
    drop(browser);
    assert_eq!(gateway.stop(), Some(0));
    let _ = vhost.delete().await;
}
