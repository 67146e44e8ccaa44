//! `report.html`: one self-contained page (inline CSS and SVG, no script, no external reference)
//! with Norwegian labels — per chart indicator a ranked bar chart of the units for the last month
//! and a trend line per unit over the months (the norm as a dashed line where one exists), then a
//! table per indicator with suppressed cells marked; the splits (I10 by direction and by
//! TypeForesp, I12 by sending organisation) as one table per figure and split, a row per unit and
//! split value (`<tr data-indicator>`), not as charts; then the coverage.

use std::fmt::Write as _;

use super::{Cell, Kind, Report};

/// Norwegian name of an organisation kind as I10's directions name it.
fn kind_label(token: &str) -> &str {
    match token {
        "hospital" => "sykehus",
        "municipality" => "kommune",
        "gp" => "legekontor",
        "other" => "annen/ukjent",
        t => t,
    }
}

/// `gp_municipality` → "fra fastlegekontor til kommune".
fn direction_label(dir: &str) -> String {
    match dir.split_once('_') {
        Some((a, b)) => format!("fra {} til {}", kind_label(a), kind_label(b)),
        None => dir.to_owned(),
    }
}

/// `8` → "type 8"; `none` → "type ikke oppgitt" (TypeForesp; short, so the table fits A4).
fn type_label(code: &str) -> String {
    if code == "none" {
        "type ikke oppgitt".into()
    } else {
        format!("type {code}")
    }
}

/// A split indicator: (the figure's indicator, which split, the split value).
/// `I10_within_5d_dir_gp_municipality` → (`I10_within_5d`, Direction, `gp_municipality`);
/// `I10_median_h_T8` → (`I10_median_h`, Type, `8`); `I12_from_70000` → (`I12_total`, Sender,
/// `70000`).
fn split_of(ind: &str) -> Option<(&'static str, Split, &str)> {
    if let Some(her) = ind.strip_prefix("I12_from_") {
        return Some(("I12_total", Split::Sender, her));
    }
    for figure in I10_FIGURES {
        let Some(rest) = ind.strip_prefix(figure) else {
            continue;
        };
        if let Some(dir) = rest.strip_prefix("_dir_") {
            return Some((figure, Split::Direction, dir));
        }
        if let Some(code) = rest.strip_prefix("_T") {
            return Some((figure, Split::Type, code));
        }
    }
    None
}

const I10_FIGURES: [&str; 4] = [
    "I10_median_h",
    "I10_p90_h",
    "I10_within_5d",
    "I10_unanswered_14d",
];

/// How a figure is split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Split {
    Direction,
    Type,
    Sender,
}

impl Split {
    fn title(self) -> &'static str {
        match self {
            Split::Direction => "etter retning (hvem spør hvem)",
            Split::Type => "etter forespørselstype (TypeForesp)",
            Split::Sender => "etter avsenderorganisasjon",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Split::Direction => "dir",
            Split::Type => "type",
            Split::Sender => "from",
        }
    }
}

/// Norwegian label of an indicator.
fn label(ind: &str) -> String {
    if let Some((figure, split, value)) = split_of(ind) {
        return match split {
            Split::Direction => format!("{}, {}", label(figure), direction_label(value)),
            Split::Type => format!("{}, forespørsels{}", label(figure), type_label(value)),
            Split::Sender => format!("I12 Meldinger mottatt fra HER-id {value} (antall)"),
        };
    }
    let l = match ind {
        "I1" => "I1 USK-episoder startet (antall)",
        "I2" => "I2 USK-døgn i måneden (sum)",
        "I2_per_1000" => "I2 USK-døgn per 1 000 innbyggere",
        "I3" => "I3 Avsluttede episoder uten USK-døgn (andel)",
        "I4_median" => "I4 USK-døgn per avsluttet episode, median (3 mnd)",
        "I4_p90" => "I4 USK-døgn per avsluttet episode, 90-persentil (3 mnd)",
        "I5" => "I5 Utskrivningsklare pasienter inneliggende, snitt per dag",
        "I6" => "I6 Episoder med avmelding (andel)",
        "I7_home" => "I7 Utfall: hjem",
        "I7_institution" => "I7 Utfall: sykehjem eller KAD",
        "I7_other_hf" => "I7 Utfall: annen helseinstitusjon",
        "I7_dead" => "I7 Utfall: død",
        "I7_other" => "I7 Utfall: annet",
        "I7_unresolved" => "I7 Utfall: uavklart (ingen utskrivning på 90 dager)",
        "I8" => "I8 Innlagt igjen 1–30 dager etter utskrivning (andel)",
        "I9_innleggelsesrapport" => "I9 Innleggelsesrapport innen 24 timer (andel)",
        "I9_utskrivningsrapport" => "I9 Utskrivningsrapport samme dag som utskrevet (andel)",
        "I10_median_h" => "I10 Svartid dialogmelding, median (timer)",
        "I10_p90_h" => "I10 Svartid dialogmelding, 90-persentil (timer)",
        "I10_within_5d" => "I10 Besvart innen 5 virkedager (andel)",
        "I10_unanswered_14d" => "I10 Ubesvart etter 14 dager (andel)",
        "I11_rejected" => "I11 Avviste applikasjonskvitteringer (andel)",
        "I11_missing_4d" => "I11 Uten applikasjonskvittering etter 4 dager (andel)",
        "I11_median_h" => "I11 Tid til applikasjonskvittering, median (timer)",
        "I12_total" => "I12 Meldinger mottatt (antall)",
        other => {
            if let Some(code) = other.strip_prefix("I11_rejected_") {
                return format!("I11 Kvitteringer med feilkode {code} (andel)");
            }
            if let Some(t) = other.strip_prefix("I12_") {
                return format!("I12 Meldinger av typen {t} (antall)");
            }
            other
        }
    };
    l.to_owned()
}

/// The norm drawn in a trend chart, where a standard gives one.
fn norm(ind: &str) -> Option<(f64, &'static str)> {
    match ind {
        // HIS 80704:2014 Table 1: "senest innen et døgn".
        "I9_innleggelsesrapport" => Some((1.0, "krav: innen et døgn")),
        // Kjøreregler for dialogmeldinger: svar innen 3–5 virkedager.
        "I10_within_5d" => Some((1.0, "kjøreregel: innen 5 virkedager")),
        // HIS 80415:2012 §3.2: senest innen 4 dager.
        "I11_missing_4d" => Some((0.0, "krav: kvittering innen 4 dager")),
        _ => None,
    }
}

const CHARTS: &[&str] = &[
    "I1",
    "I2",
    "I2_per_1000",
    "I3",
    "I4_median",
    "I5",
    "I6",
    "I8",
    "I9_innleggelsesrapport",
    "I10_within_5d",
    "I11_missing_4d",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A value as a Norwegian reader reads it: shares in per cent, others with a decimal comma.
fn show(c: &Cell) -> String {
    let Some(v) = c.value else {
        return "–".into();
    };
    match c.kind {
        Kind::Share => format!("{:.0} %", v * 100.0),
        Kind::Count | Kind::Sum => format!("{v:.0}"),
        _ => format!("{v:.1}").replace('.', ","),
    }
}

/// The value a chart plots (shares in per cent).
fn plotted(c: &Cell) -> Option<f64> {
    if c.suppressed {
        return None;
    }
    c.value
        .map(|v| if c.kind == Kind::Share { v * 100.0 } else { v })
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}\
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}\
th:first-child,td:first-child{text-align:left}td.s{color:#888;font-style:italic}.fb,.lg{white-space:nowrap}.fb,.k{font-size:.85em}\
.charts{display:flex;flex-wrap:wrap;gap:1.5em}figure{margin:0;max-width:420px}figcaption{font-size:.85em;color:#444}\
svg text{font-size:11px;fill:#222}.note{font-size:.85em;color:#444}\
@media print{body{margin:0;max-width:none;font-size:10pt}h2{break-after:avoid}.charts{display:block}\
figure{break-inside:avoid;margin-bottom:1em}table{font-size:7pt;width:100%}th,td{padding:.1em .2em}\
tr{break-inside:avoid}thead{display:table-header-group}}";

/// The page's own policy, so that a saved copy opened from disk fetches nothing either: no
/// script, no request of any kind; only its inline styles. `/report` sends the same as a header.
pub const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

const COLOURS: &[&str] = &[
    "#1f5f8b", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#16a085", "#7f8c8d", "#2c3e50",
];

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut s = String::new();
    let first = r.months.first().cloned().unwrap_or_default();
    let last = r.months.last().cloned().unwrap_or_default();
    let _ = write!(
        s,
        "<!DOCTYPE html><html lang=\"nb\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><meta name=\"viewport\" content=\"width=device-width\"><title>Helsefellesskapet: indikatorer {first} – {last}</title><style>{STYLE}</style></head><body>"
    );
    let _ = write!(
        s,
        "<h1>Hva helsefellesskapet lærer av meldingstrafikken</h1><p>Periode {first} – {last}. \
         Tallene bygger på meldingenes egne tidspunkter (Europe/Oslo). Celler med for få pasienter \
         eller episoder er <em>skjult</em> for å verne personvernet (nevner under 5, teller 1–4, \
         summer fra færre enn 5 episoder, median og persentil fra færre enn 10); da vises kvartal \
         eller siste 12 måneder i tabellen der det er mulig.</p>"
    );
    let indicators: Vec<String> = {
        let mut v: Vec<String> = r.cells.iter().map(|c| c.indicator.clone()).collect();
        v.sort_by_key(|i| (super::indicator_number(i), i.clone()));
        v.dedup();
        v
    };
    let units: Vec<u32> = {
        let mut u: Vec<u32> = r.cells.iter().map(|c| c.unit).collect();
        u.sort();
        u.dedup();
        u
    };
    s.push_str("<section><h2>Figurer</h2><div class=\"charts\">");
    for ind in CHARTS.iter().filter(|i| indicators.iter().any(|x| x == *i)) {
        bars(&mut s, r, ind, &last, &units);
        trend(&mut s, r, ind, &units);
    }
    s.push_str("</div></section>");
    let (split, whole): (Vec<&String>, Vec<&String>) =
        indicators.iter().partition(|i| split_of(i).is_some());
    for ind in whole {
        table(&mut s, r, ind, &units);
    }
    // One table per figure and split: (figure, split) → its indicators.
    let mut groups: std::collections::BTreeMap<(u32, &str, Split), Vec<&str>> =
        std::collections::BTreeMap::new();
    for ind in split {
        if let Some((figure, how, _)) = split_of(ind) {
            groups
                .entry((super::indicator_number(figure), figure, how))
                .or_default()
                .push(ind.as_str());
        }
    }
    for ((_, figure, how), inds) in groups {
        split_table(&mut s, r, figure, how, &inds, &units);
    }
    coverage(&mut s, r);
    s.push_str("</body></html>\n");
    s
}

/// Ranked bar chart of the units for `month`.
fn bars(s: &mut String, r: &Report, ind: &str, month: &str, units: &[u32]) {
    let mut rows: Vec<(String, Option<f64>, String)> = units
        .iter()
        .filter_map(|&u| {
            r.cell(ind, month, u)
                .map(|c| (r.name(u), plotted(c), show(c)))
        })
        .collect();
    rows.sort_by(|a, b| b.1.unwrap_or(f64::MIN).total_cmp(&a.1.unwrap_or(f64::MIN)));
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let h = 22 * rows.len().max(1) + 10;
    let _ = write!(
        s,
        "<figure data-chart=\"bars\" data-indicator=\"{ind}\"><svg role=\"img\" width=\"420\" height=\"{h}\" viewBox=\"0 0 420 {h}\"><title>{} – {month}</title>",
        esc(&label(ind))
    );
    for (i, (name, v, shown)) in rows.iter().enumerate() {
        let y = 5 + i * 22;
        let _ = write!(
            s,
            "<text x=\"0\" y=\"{}\">{}</text>",
            y + 14,
            esc(&truncate(name, 26))
        );
        match v {
            Some(v) => {
                let w = (v / max * 200.0).max(1.0);
                let _ = write!(
                    s,
                    "<rect x=\"170\" y=\"{y}\" width=\"{w:.1}\" height=\"16\" fill=\"#1f5f8b\"></rect><text x=\"{:.1}\" y=\"{}\">{}</text>",
                    175.0 + w,
                    y + 13,
                    esc(shown)
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<text x=\"170\" y=\"{}\" font-style=\"italic\">skjult</text>",
                    y + 13
                );
            }
        }
    }
    let _ = write!(
        s,
        "</svg><figcaption>{} – {month}, rangert</figcaption></figure>",
        esc(&label(ind))
    );
}

/// Trend lines per unit over the report's months (at most the last 12), with the norm.
fn trend(s: &mut String, r: &Report, ind: &str, units: &[u32]) {
    let months: Vec<&String> = r.months.iter().rev().take(12).rev().collect();
    // Lines and legend for the units this indicator has cells for, coloured in that order.
    let units: Vec<u32> = units
        .iter()
        .copied()
        .filter(|&u| months.iter().any(|m| r.cell(ind, m, u).is_some()))
        .collect();
    let (w, h, left, top, bottom) = (420.0, 200.0, 40.0, 10.0, 30.0);
    let mut max: f64 = units
        .iter()
        .flat_map(|&u| {
            months
                .iter()
                .filter_map(move |m| r.cell(ind, m, u))
                .filter_map(plotted)
        })
        .fold(0.0, f64::max);
    let n = norm(ind);
    if let Some((v, _)) = n {
        max = max.max(v * 100.0);
    }
    let max = if max <= 0.0 { 1.0 } else { max * 1.1 };
    let step = if months.len() > 1 {
        (w - left - 10.0) / (months.len() - 1) as f64
    } else {
        0.0
    };
    let x = |i: usize| left + step * i as f64;
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / max);
    let _ = write!(
        s,
        "<figure data-chart=\"trend\" data-indicator=\"{ind}\"><svg role=\"img\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"><title>{} – utvikling</title>",
        esc(&label(ind))
    );
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"></line><text x=\"0\" y=\"{}\">{}</text><text x=\"0\" y=\"{}\">0</text>",
        y(0.0), w - 10.0, y(0.0), top + 10.0, fmt_axis(max), y(0.0)
    );
    for (i, m) in months.iter().enumerate() {
        // The first month's label starts at its point, the last one's ends there: both stay
        // inside the drawing.
        if i == 0 {
            let _ = write!(s, "<text x=\"{:.1}\" y=\"{}\">{m}</text>", x(i), h - 8.0);
        } else if i + 1 == months.len() {
            let _ = write!(
                s,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"end\">{m}</text>",
                x(i),
                h - 8.0
            );
        }
    }
    if let Some((v, what)) = n {
        let _ = write!(
            s,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"></line><text x=\"{2}\" y=\"{3:.1}\" fill=\"#c0392b\">{4}</text>",
            y(v * 100.0), w - 10.0, left + 5.0, y(v * 100.0) - 3.0, esc(what)
        );
    }
    for (k, &u) in units.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        // A suppressed month breaks the line.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, m) in months.iter().enumerate() {
            match r.cell(ind, m, u).and_then(plotted) {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push((x(i), y(v)));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"></polyline>",
                pts.join(" ")
            );
            for (a, b) in run {
                let _ = write!(
                    s,
                    "<circle cx=\"{a:.1}\" cy=\"{b:.1}\" r=\"2.5\" fill=\"{colour}\"></circle>"
                );
            }
        }
    }
    let legend: Vec<String> = units
        .iter()
        .enumerate()
        .map(|(k, &u)| {
            format!(
                "<span class=\"lg\"><span style=\"color:{}\">■</span> {}</span>",
                COLOURS[k % COLOURS.len()],
                esc(&r.name(u))
            )
        })
        .collect();
    let _ = write!(
        s,
        "</svg><figcaption>{} – utvikling{}<br>{}</figcaption></figure>",
        esc(&label(ind)),
        if ind.starts_with("I3")
            || ind.starts_with("I6")
            || ind.starts_with("I8")
            || ind.starts_with("I9")
            || ind.contains("within")
            || ind.contains("missing")
        {
            " (prosent)"
        } else {
            ""
        },
        legend.join(" ")
    );
}

fn fmt_axis(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}").replace('.', ",")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let t: String = s.chars().take(n - 1).collect();
        format!("{t}…")
    }
}

/// One table: units × months, suppressed cells marked.
fn table(s: &mut String, r: &Report, ind: &str, units: &[u32]) {
    let _ = write!(
        s,
        "<section data-indicator=\"{}\"><h2>{}</h2><table><thead><tr><th>Enhet</th>",
        esc(ind),
        esc(&label(ind))
    );
    month_heads(s, r);
    let mut has_fallback = false;
    for &u in units {
        if !r.months.iter().any(|m| r.cell(ind, m, u).is_some()) {
            continue;
        }
        let _ = write!(s, "<tr><td>{}</td>", esc(&r.name(u)));
        has_fallback |= month_cells(s, r, ind, u);
        s.push_str("</tr>");
    }
    table_end(s, has_fallback);
}

/// One figure split by direction, TypeForesp or sender: a row per unit and split value, the split
/// value under the unit's name (a column of its own would not fit A4 beside 12 months).
fn split_table(s: &mut String, r: &Report, figure: &str, how: Split, inds: &[&str], units: &[u32]) {
    let _ = write!(
        s,
        "<section data-split=\"{}_{}\"><h2>{}, {}</h2><table><thead><tr><th>Enhet — {}</th>",
        esc(figure),
        how.key(),
        esc(&label(figure)),
        how.title(),
        match how {
            Split::Direction => "retning",
            Split::Type => "type",
            Split::Sender => "fra",
        }
    );
    month_heads(s, r);
    let mut has_fallback = false;
    for &u in units {
        for &ind in inds {
            if !r.months.iter().any(|m| r.cell(ind, m, u).is_some()) {
                continue;
            }
            let value = split_of(ind).map_or("", |(_, _, v)| v);
            let what = match how {
                Split::Direction => direction_label(value),
                Split::Type => type_label(value),
                Split::Sender => value
                    .parse()
                    .map_or_else(|_| value.to_owned(), |h| r.name(h)),
            };
            let _ = write!(
                s,
                "<tr data-indicator=\"{}\" title=\"{}\"><td>{}<br><span class=\"k\">{}</span></td>",
                esc(ind),
                esc(&label(ind)),
                esc(&r.name(u)),
                esc(&what)
            );
            has_fallback |= month_cells(s, r, ind, u);
            s.push_str("</tr>");
        }
    }
    table_end(s, has_fallback);
}

fn month_heads(s: &mut String, r: &Report) {
    for m in &r.months {
        let _ = write!(s, "<th>{m}</th>");
    }
    s.push_str("</tr></thead><tbody>");
}

fn table_end(s: &mut String, has_fallback: bool) {
    s.push_str("</tbody></table>");
    if has_fallback {
        s.push_str("<p class=\"note\">«kv.»: kvartalet måneden hører til; «12 mnd»: de 12 månedene som ender med måneden — vist der måneden alene er skjult.</p>");
    }
    s.push_str("</section>");
}

/// The month cells of one indicator and unit; whether a fallback was shown.
fn month_cells(s: &mut String, r: &Report, ind: &str, u: u32) -> bool {
    let mut has_fallback = false;
    for m in &r.months {
        match r.cell(ind, m, u) {
            None => s.push_str("<td>–</td>"),
            Some(c) if c.suppressed => {
                let fb = super::indicators::parse_month(m).and_then(|d| {
                    let q = super::Period::quarter(d.year(), d.month()).label;
                    let t = super::Period::twelve(d.year(), d.month()).label;
                    super::suppress::fallback(c, &r.wider, &q, &t)
                });
                has_fallback |= fb.is_some();
                match fb {
                    Some(f) => {
                        let wider = if f.period.contains('Q') {
                            "kv."
                        } else {
                            "12 mnd"
                        };
                        let _ = write!(s, "<td class=\"s\" title=\"skjult for måneden; vist for {0}\">skjult<br><span class=\"fb\">{wider} {1}</span></td>", esc(&f.period), esc(&show(f)));
                    }
                    None => s.push_str("<td class=\"s\" title=\"for få til å vises\">skjult</td>"),
                }
            }
            Some(c) => {
                let _ = write!(s, "<td>{}</td>", esc(&show(c)));
            }
        }
    }
    has_fallback
}

/// What the report covers and what it cannot see.
fn coverage(s: &mut String, r: &Report) {
    s.push_str("<section><h2>Dekning</h2><table><thead><tr><th>Måned</th><th>Meldinger observert</th><th>Levert, men ikke registrert</th><th>Kilde</th></tr></thead><tbody>");
    for m in &r.months {
        let _ = write!(
            s,
            "<tr><td>{m}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.observed.get(m).copied().unwrap_or(0),
            r.gaps.get(m).copied().unwrap_or(0),
            if r.frozen.contains(m) {
                "lagrede aggregater"
            } else {
                "observasjoner"
            }
        );
    }
    s.push_str("</tbody></table><p class=\"note\">Meldinger som ikke går gjennom dette knutepunktet, er usynlige \
        for rapporten. «Levert, men ikke registrert» er meldinger som ble levert, men som ikke kom med i \
        grunnlaget (kø full eller lagringsfeil). Resultatene kan avvike ±1 døgn fra NPR og fakturering; \
        årstall bør avstemmes mot Samdata. Ingen navn, fødselsnumre eller fritekst lagres; pasienter \
        kobles med et nøkkelbasert pseudonym som slettes 30 dager etter avsluttet episode.</p></section>");
}
