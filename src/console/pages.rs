//! The console's pages: HTML built from identifiers, codes, states and counts, every value escaped
//! by [`esc`]. No script; the stylesheet is [`STYLE`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use hyper::StatusCode;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::auth::Who;
use super::recent::{outcome_name, outcome_named, Filter};
use super::Console;
use crate::address::RecipientRole;
use crate::amqp::topology::{async_queue, error_queue};
use crate::gateway::metrics::{Metrics, OUTCOMES, OUTCOME_COUNT};
use crate::gateway::routing_log::{Decision, MessageRef, Outcome};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::store::{MessageRecord, StoreError};

/// The stylesheet, served at `/console/style.css`: large type, high contrast, red for trouble.
pub const STYLE: &str = r#"
body{font:15px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#111}
header{background:#1d2b3a;color:#fff;padding:.5em 1em;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none;font-weight:600}
header a.here{text-decoration:underline}
header form{margin-left:auto}
main{padding:1em 1.5em}
h1{font-size:1.4em;margin:.2em 0 .6em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;background:#fff;margin-bottom:1em}
th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#e8ecf1}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bad{background:#fde2e2;color:#8a0000;font-weight:600}
.warn{background:#fff3cd}
.ok{background:#e3f6e5}
.tiles{display:flex;gap:1em;flex-wrap:wrap}
.tile{background:#fff;border:1px solid #ccd;padding:.6em 1em;min-width:12em}
.tile b{display:block;font-size:1.3em}
.note{color:#555}
.err{background:#fde2e2;border:1px solid #d99;padding:.6em 1em}
input,select,button{font:inherit;padding:.2em .4em}
code{font-size:.95em}
"#;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What is percent-encoded in a path segment: all but letters, digits and `-._~` (so a UUID
/// MsgId reads as itself in the address bar).
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` as one path segment.
pub fn url_part(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SEGMENT).to_string()
}

/// A finished page: status and HTML.
pub struct Page(pub StatusCode, pub String);

const NAV: [(&str, &str); 4] = [
    ("/console/", "Overview"),
    ("/console/decisions", "Decisions"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/overdue", "Overdue AppRecs"),
];

impl Page {
    /// The layout around `body`; `refresh` reloads the page every so many seconds.
    fn new(status: StatusCode, title: &str, here: &str, refresh: Option<u64>, body: &str) -> Page {
        let mut s = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
        if let Some(secs) = refresh {
            let _ = write!(s, "<meta http-equiv=\"refresh\" content=\"{secs}\">");
        }
        let _ = write!(
            s,
            "<title>{} · helsemelding</title><link rel=\"stylesheet\" href=\"/console/style.css\"></head><body><header><span>helsemelding</span>",
            esc(title)
        );
        for (href, name) in NAV {
            let class = if href == here { " class=\"here\"" } else { "" };
            let _ = write!(s, "<a href=\"{href}\"{class}>{name}</a>");
        }
        s.push_str("<form action=\"/console/message\" method=\"get\"><input name=\"id\" placeholder=\"MsgId\" size=\"38\" aria-label=\"MsgId\"> <button>Find message</button></form></header><main>");
        let _ = write!(s, "<h1>{}</h1>", esc(title));
        s.push_str(body);
        let _ = write!(
            s,
            "<p class=\"note\">Shown at {}{}. Identifiers, states and codes only: no message content.</p></main></body></html>",
            esc(&crate::ids::rfc3339(time::OffsetDateTime::now_utc())),
            refresh.map_or(String::new(), |r| format!("; reloads every {r} s"))
        );
        Page(status, s)
    }

    pub fn error(status: StatusCode, title: &str, why: &str) -> Page {
        Page::new(
            status,
            title,
            "",
            None,
            &format!("<p class=\"err\">{}</p>", esc(why)),
        )
    }
}

/// The body of a 401.
pub fn refused(why: &str) -> String {
    Page::error(StatusCode::UNAUTHORIZED, "Credentials required", why).1
}

fn refresh(c: &Console) -> Option<u64> {
    Some(c.refresh.as_secs().max(1))
}

fn when(t: Timestamp) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

fn her(h: Option<HerId>) -> String {
    h.map_or_else(|| "?".into(), |h| h.to_string())
}

/// A store read's error as the page shows it.
fn store_error(e: StoreError) -> String {
    format!("store read failed: {e}")
}

/// Free space of the file system holding `dir`: (free bytes, total bytes).
fn disk(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only the struct we pass, which lives for the call; `c` is a valid
    // NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

fn tile(s: &mut String, class: &str, label: &str, value: &str, note: &str) {
    let _ = write!(
        s,
        "<div class=\"tile {class}\">{}<b>{}</b><span class=\"note\">{}</span></div>",
        esc(label),
        esc(value),
        esc(note)
    );
}

/// `/console/`: health, queue depths, decisions per minute by outcome and by partner.
pub async fn overview(c: &Console, metrics: &Metrics) -> Page {
    let mut b = String::new();
    b.push_str("<h2>Health</h2><div class=\"tiles\">");
    let broker = metrics.broker_connected.load(Ordering::Relaxed);
    let blocked = metrics.broker_blocked.load(Ordering::Relaxed);
    let (class, value) = match (broker, blocked) {
        (true, false) => ("ok", "connected"),
        (true, true) => ("bad", "blocked (alarm)"),
        (false, _) => ("bad", "not connected"),
    };
    tile(&mut b, class, "Broker", value, "the gateway's session");
    match metrics.store_problem() {
        None => tile(&mut b, "ok", "Delivery store", "writable", ""),
        Some(why) => tile(&mut b, "bad", "Delivery store", "cannot be written", &why),
    }
    match disk(&c.state_dir) {
        Some((free, total)) => {
            let pct = (free * 100).checked_div(total).unwrap_or(0);
            let class = if pct < 5 {
                "bad"
            } else if pct < 15 {
                "warn"
            } else {
                "ok"
            };
            tile(
                &mut b,
                class,
                "Disk (state)",
                &format!("{:.1} GB free ({pct} %)", free as f64 / 1e9),
                &c.state_dir.display().to_string(),
            );
        }
        None => tile(
            &mut b,
            "warn",
            "Disk (state)",
            "unknown",
            "cannot stat the state directory",
        ),
    }
    tile(
        &mut b,
        "",
        "Since start",
        &format!(
            "{} received, {} acked",
            metrics.received.load(Ordering::Relaxed),
            metrics.acked.load(Ordering::Relaxed)
        ),
        &format!(
            "{} requeued, {} reconnects",
            metrics.requeued.load(Ordering::Relaxed),
            metrics.reconnects.load(Ordering::Relaxed)
        ),
    );
    b.push_str("</div>");

    b.push_str("<h2>Queues</h2>");
    match &c.broker {
        None => b.push_str("<p class=\"err\">No broker link for the console.</p>"),
        Some(br) => {
            let mut names = vec![br.topology.inbound.clone(), br.topology.dead_letter.clone()];
            // Intake partitions 1..K: part of the intake, so always shown like it.
            names.extend(br.topology.intake_queues().into_iter().skip(1));
            let always = names.len();
            let parties = (c.parties)();
            for p in &parties {
                names.push(async_queue(*p));
                names.push(error_queue(*p));
            }
            match br.depths(&names).await {
                Err(e) => {
                    let _ = write!(b, "<p class=\"err\">Broker: {}</p>", esc(&e));
                }
                Ok(depths) => {
                    // The intake (with its partitions) and the dead-letter queue always; a party's
                    // queues when they hold something (or cannot be read), so a hub with many
                    // parties stays one screen, and only those count as the quiet party queues.
                    b.push_str("<table><tr><th>queue</th><th>messages</th></tr>");
                    let mut quiet = 0;
                    for (i, (name, d)) in names.iter().zip(depths).enumerate() {
                        let (class, text) = match d {
                            Ok(0) if i >= always => {
                                quiet += 1;
                                continue;
                            }
                            Ok(0) => ("ok", "0".to_owned()),
                            // The intake and party inboxes may hold some; the DLQ and error queues never should.
                            Ok(n) if i == 1 || name.ends_with("_error") => ("bad", n.to_string()),
                            Ok(n) => ("warn", n.to_string()),
                            Err(e) => ("bad", e),
                        };
                        let _ = write!(
                            b,
                            "<tr><td><code>{}</code></td><td class=\"n {class}\">{}</td></tr>",
                            esc(name),
                            esc(&text)
                        );
                    }
                    b.push_str("</table>");
                    if quiet > 0 {
                        let _ = write!(
                            b,
                            "<p class=\"note\">The other {quiet} party queues ({{her}}_async, {{her}}_error of {} parties) are empty.</p>",
                            parties.len()
                        );
                    }
                }
            }
        }
    }

    let minutes = c.recent.per_minute(OffsetDateTime::now_utc(), 10);
    b.push_str("<h2>Decisions per minute (last 10 minutes, newest first, from the routing log)</h2><table><tr><th>minute (UTC)</th>");
    for (_, name) in OUTCOMES {
        let _ = write!(b, "<th>{name}</th>");
    }
    b.push_str("</tr>");
    for (m, counts) in minutes.iter().rev() {
        let label = OffsetDateTime::from_unix_timestamp(m * 60)
            .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
            .unwrap_or_default();
        let _ = write!(b, "<tr><td>{label}</td>");
        for (i, n) in counts.by_outcome.iter().enumerate() {
            let class = bad_outcome_class(OUTCOMES[i].0, *n);
            let _ = write!(b, "<td class=\"n {class}\">{n}</td>");
        }
        b.push_str("</tr>");
    }
    b.push_str("</table>");

    let mut partners: HashMap<Option<HerId>, [u64; OUTCOME_COUNT]> = HashMap::new();
    for (_, m) in &minutes {
        for (p, counts) in &m.by_partner {
            let e = partners.entry(*p).or_default();
            for (i, n) in counts.iter().enumerate() {
                e[i] += n;
            }
        }
    }
    let mut partners: Vec<_> = partners.into_iter().collect();
    partners.sort_by_key(|(p, counts)| {
        (
            std::cmp::Reverse(counts.iter().sum::<u64>()),
            p.map(|h| h.0),
        )
    });
    b.push_str("<h2>By sending partner (last 10 minutes, top 30)</h2>");
    if partners.is_empty() {
        b.push_str("<p class=\"note\">No decisions in the last 10 minutes.</p>");
    } else {
        b.push_str("<table><tr><th>from HER-id</th><th>per minute</th>");
        for (_, name) in OUTCOMES {
            let _ = write!(b, "<th>{name}</th>");
        }
        b.push_str("</tr>");
        for (p, counts) in partners.iter().take(30) {
            let label = match p {
                Some(h) => format!("<a href=\"/console/decisions?her={h}\">{h}</a>"),
                None => "unknown / other".into(),
            };
            let total: u64 = counts.iter().sum();
            let _ = write!(
                b,
                "<tr><td>{label}</td><td class=\"n\">{:.1}</td>",
                total as f64 / 10.0
            );
            for (i, n) in counts.iter().enumerate() {
                let class = bad_outcome_class(OUTCOMES[i].0, *n);
                let _ = write!(b, "<td class=\"n {class}\">{n}</td>");
            }
            b.push_str("</tr>");
        }
        b.push_str("</table>");
    }
    Page::new(StatusCode::OK, "Overview", "/console/", refresh(c), &b)
}

fn bad_outcome_class(o: Outcome, n: u64) -> &'static str {
    match o {
        _ if n == 0 => "",
        Outcome::DeadLettered | Outcome::ErrorQueue | Outcome::Overdue | Outcome::AppRecRefused => {
            "bad"
        }
        Outcome::Rejected | Outcome::Retry | Outcome::NotForUs | Outcome::Redriven => "warn",
        _ => "",
    }
}

fn decision_table(b: &mut String, ds: &[Decision]) {
    b.push_str("<table><tr><th>time (UTC)</th><th>outcome</th><th>type</th><th>from</th><th>to</th><th>MsgId</th><th>code</th><th>reason</th><th>ms</th></tr>");
    for d in ds {
        let msg = match &d.msg_id {
            Some(m) => format!(
                "<a href=\"/console/message/{}\">{}</a>",
                url_part(m.as_str()),
                esc(m.as_str())
            ),
            None => "?".into(),
        };
        let code = d
            .code
            .map_or(String::new(), |c| format!("{} ({})", c.code(), c.text()));
        let _ = write!(
            b,
            "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{msg}</code></td><td>{}</td><td>{}</td><td class=\"n\">{:.1}</td></tr>",
            esc(&d.ts),
            bad_outcome_class(d.outcome, 1),
            outcome_name(d.outcome),
            esc(d.msg_type.as_deref().unwrap_or("?")),
            her(d.from_her),
            her(d.to_her),
            esc(&code),
            esc(d.reason.as_deref().unwrap_or("")),
            d.elapsed_ms
        );
    }
    b.push_str("</table>");
}

/// Parses a time given as RFC 3339 or `YYYY-MM-DDTHH:MM` / `YYYY-MM-DD HH:MM` (UTC).
fn parse_when(s: &str) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    time::PrimitiveDateTime::parse(&s.replacen('T', " ", 1), &fmt)
        .map(|t| t.assume_utc())
        .map_err(|_| format!("{s:?} is not a time: give 2026-11-23T10:00 (UTC) or RFC 3339"))
}

/// Reads the search form; every problem is said.
fn filter_from(params: &HashMap<String, String>) -> (Filter, Vec<String>) {
    let mut f = Filter::default();
    let mut problems = Vec::new();
    let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(h) = get("her") {
        match h.parse::<u32>() {
            Ok(n) if n > 0 => f.her = Some(HerId(n)),
            _ => problems.push(format!("HER-id {h:?} is not a number above 0")),
        }
    }
    if let Some(m) = get("msg") {
        f.msg_id = Some(m.to_owned());
    }
    if let Some(t) = get("type") {
        f.msg_type = Some(t.to_owned());
    }
    if let Some(o) = get("outcome") {
        match outcome_named(o) {
            Some(o) => f.outcome = Some(o),
            None => problems.push(format!(
                "outcome {o:?} is not one of the routing log's outcomes"
            )),
        }
    }
    for (key, slot) in [("since", &mut f.since), ("until", &mut f.until)] {
        if let Some(v) = get(key) {
            match parse_when(v) {
                Ok(t) => *slot = Some(t),
                Err(e) => problems.push(format!("{key}: {e}")),
            }
        }
    }
    (f, problems)
}

/// `/console/decisions`: the searchable list of recent decisions.
pub async fn decisions(c: &Console, params: &HashMap<String, String>) -> Page {
    const LIMIT: usize = 200;
    let (filter, problems) = filter_from(params);
    let older = params.get("older").is_some_and(|v| v == "1");
    let value = |k: &str| esc(params.get(k).map_or("", |v| v.as_str()));
    let mut b = String::new();
    let _ = write!(
        b,
        "<form method=\"get\" action=\"/console/decisions\">\
         <label>HER-id (from or to) <input name=\"her\" value=\"{}\" size=\"8\"></label> \
         <label>MsgId <input name=\"msg\" value=\"{}\" size=\"38\"></label> \
         <label>type <input name=\"type\" value=\"{}\" size=\"20\" placeholder=\"DIALOG_NOTAT\"></label> \
         <label>outcome <select name=\"outcome\"><option value=\"\">any</option>",
        value("her"),
        value("msg"),
        value("type")
    );
    let chosen = params.get("outcome").map_or("", |v| v.as_str());
    for (_, name) in OUTCOMES {
        let sel = if name == chosen { " selected" } else { "" };
        let _ = write!(b, "<option{sel}>{name}</option>");
    }
    let _ = write!(
        b,
        "</select></label> <label>since <input name=\"since\" value=\"{}\" size=\"16\" placeholder=\"2026-11-23T10:00\"></label> \
         <label>until <input name=\"until\" value=\"{}\" size=\"16\"></label> \
         <label><input type=\"checkbox\" name=\"older\" value=\"1\"{}> whole routing-log file</label> \
         <button>Search</button></form>",
        value("since"),
        value("until"),
        if older { " checked" } else { "" }
    );
    if !problems.is_empty() {
        b.push_str("<div class=\"err\">");
        for p in &problems {
            let _ = write!(b, "<p>{}</p>", esc(p));
        }
        b.push_str("</div>");
        return Page::new(
            StatusCode::BAD_REQUEST,
            "Decisions",
            "/console/decisions",
            None,
            &b,
        );
    }
    let (found, has_older) = if older {
        let recent = c.recent.clone();
        let f = filter.clone();
        match tokio::task::spawn_blocking(move || recent.search_file(&f, LIMIT)).await {
            Ok(Ok(found)) => (found, false),
            Ok(Err(e)) => {
                let _ = write!(
                    b,
                    "<p class=\"err\">Cannot read the routing log {}: {}</p>",
                    esc(&c.recent.path().display().to_string()),
                    esc(&e.to_string())
                );
                (Vec::new(), false)
            }
            Err(e) => {
                let _ = write!(
                    b,
                    "<p class=\"err\">Search failed: {}</p>",
                    esc(&e.to_string())
                );
                (Vec::new(), false)
            }
        }
    } else {
        c.recent.search(&filter, LIMIT)
    };
    let _ = write!(
        b,
        "<p>{} decision(s), newest first{}{}.</p>",
        found.len(),
        if found.len() == LIMIT {
            " (the newest 200)"
        } else {
            ""
        },
        if has_older {
            "; older ones are only in the file: tick \u{201c}whole routing-log file\u{201d}"
        } else {
            ""
        }
    );
    decision_table(&mut b, &found);
    // A search result is a view the operator is reading: refresh only the unfiltered list.
    let auto = if params.values().all(|v| v.trim().is_empty()) {
        refresh(c)
    } else {
        None
    };
    Page::new(StatusCode::OK, "Decisions", "/console/decisions", auto, &b)
}

fn role(r: RecipientRole) -> &'static str {
    match r {
        RecipientRole::Primary => "PRIM",
        RecipientRole::Copy => "COP",
    }
}

fn record_html(b: &mut String, r: &MessageRecord) {
    let _ = write!(
        b,
        "<h2>From {} · {} </h2><table><tr><th>received</th><td>{}</td></tr><tr><th>GenDate</th><td>{}</td></tr><tr><th>content SHA-256</th><td><code>{}</code></td></tr></table>",
        r.sender,
        esc(&r.msg_type),
        when(r.received_at),
        r.gen_date.map_or_else(|| "-".into(), when),
        &hex::encode(r.content_sha256)[..16],
    );
    b.push_str("<table><tr><th>recipient</th><th>role</th><th>state</th><th>codes</th><th>since</th><th>AppRec Id</th><th>history</th></tr>");
    for rec in &r.recipients {
        let codes = rec
            .codes
            .iter()
            .map(|c| format!("{} ({})", c.code(), c.text()))
            .collect::<Vec<_>>()
            .join(", ");
        let state = rec.state.name();
        let class = match rec.state {
            crate::store::DeliveryState::Overdue
            | crate::store::DeliveryState::Rejected(_)
            | crate::store::DeliveryState::AppRecRejected => "bad",
            crate::store::DeliveryState::AppRecOk => "ok",
            _ => "",
        };
        let history = rec
            .events
            .iter()
            .map(|e| format!("{:?} {}", e.event, when(e.at)))
            .collect::<Vec<_>>()
            .join("<br>");
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"state {class}\">{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{history}</td></tr>",
            her(rec.her),
            role(rec.role),
            esc(&state),
            esc(&codes),
            rec.since().map_or_else(|| "-".into(), when),
            esc(rec.apprec_id.as_ref().map_or("-", MsgId::as_str)),
        );
    }
    b.push_str("</table>");
}

/// `/console/message/{MsgId}`: the store's record(s) and the routing log's decisions for it.
pub async fn message(c: &Console, id: &str) -> Page {
    let title = format!("Message {id}");
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Page::error(
            StatusCode::BAD_REQUEST,
            &title,
            "a MsgId is at most 200 printable characters",
        );
    }
    let msg_id = MsgId::new(id);
    let lookup = msg_id.clone();
    let records = c.store.find(lookup).await.map_err(store_error);
    let filter = Filter {
        msg_id: Some(id.to_owned()),
        ..Filter::default()
    };
    let (mut ds, older) = c.recent.search(&filter, 100);
    if ds.is_empty() && older {
        let recent = c.recent.clone();
        let f = filter.clone();
        if let Ok(Ok(found)) =
            tokio::task::spawn_blocking(move || recent.search_file(&f, 100)).await
        {
            ds = found;
        }
    }
    let mut b = String::new();
    let status = match &records {
        Ok(rs) if rs.is_empty() && ds.is_empty() => {
            let _ = write!(b, "<p class=\"err\">Unknown MsgId {}: not in the delivery store and not in the routing log.</p>", esc(id));
            StatusCode::NOT_FOUND
        }
        Ok(rs) => {
            if rs.is_empty() {
                b.push_str("<p class=\"warn\">Not in the delivery store (refused before it was recorded, or pruned); the routing log's decisions follow.</p>");
            }
            for r in rs {
                record_html(&mut b, r);
            }
            StatusCode::OK
        }
        Err(e) => {
            let _ = write!(b, "<p class=\"err\">Delivery store: {}</p>", esc(e));
            StatusCode::OK
        }
    };
    if !ds.is_empty() {
        b.push_str("<h2>Routing decisions</h2>");
        decision_table(&mut b, &ds);
    }
    Page::new(status, &title, "", refresh(c), &b)
}

/// `/console/dead-letters`: the dead-letter queue's depth, and why messages went there.
pub async fn dead_letters(c: &Console) -> Page {
    let mut b = String::new();
    match &c.broker {
        Some(br) => match br
            .depths(std::slice::from_ref(&br.topology.dead_letter))
            .await
        {
            Ok(d) => match d.first() {
                Some(Ok(n)) => {
                    let _ = write!(
                        b,
                        "<div class=\"tiles\"><div class=\"tile {}\"><code>{}</code><b>{n} message(s)</b></div></div>",
                        if *n > 0 { "bad" } else { "ok" },
                        esc(&br.topology.dead_letter)
                    );
                    if *n > 0 {
                        if c.credentials.is_some() {
                            b.push_str("<form method=\"get\" action=\"/console/redrive\"><button>Redrive to the intake…</button> <span class=\"note\">(asks for confirmation)</span></form>");
                        } else {
                            b.push_str("<p class=\"note\">Redrive from the console needs credentials ([console] token_file or password_file); or run <code>helsemelding redrive</code>.</p>");
                        }
                    }
                }
                Some(Err(e)) => {
                    let _ = write!(
                        b,
                        "<p class=\"err\">{}: {}</p>",
                        esc(&br.topology.dead_letter),
                        esc(e)
                    );
                }
                None => {}
            },
            Err(e) => {
                let _ = write!(b, "<p class=\"err\">Broker: {}</p>", esc(&e));
            }
        },
        None => b.push_str("<p class=\"err\">No broker link for the console.</p>"),
    }
    b.push_str(
        "<h2>Dead-lettered and error-queue decisions, with their reasons (routing log)</h2>",
    );
    let mut ds = Vec::new();
    for o in [
        Outcome::DeadLettered,
        Outcome::ErrorQueue,
        Outcome::NotForUs,
    ] {
        let f = Filter {
            outcome: Some(o),
            ..Filter::default()
        };
        ds.extend(c.recent.search(&f, 200).0);
    }
    ds.sort_by(|a, b| b.ts.cmp(&a.ts));
    ds.truncate(200);
    recent_decisions(&mut b, &ds);
    Page::new(
        StatusCode::OK,
        "Dead letters",
        "/console/dead-letters",
        refresh(c),
        &b,
    )
}

/// The recent decisions found, or a note that there are none.
fn recent_decisions(b: &mut String, ds: &[Decision]) {
    if ds.is_empty() {
        b.push_str("<p class=\"note\">None among the recent decisions.</p>");
    } else {
        decision_table(b, ds);
    }
}

/// `/console/overdue`: recipients without an AppRec past the timeout.
pub async fn overdue(c: &Console) -> Page {
    let mut b = String::new();
    let timeout = c.apprec_timeout;
    let now = OffsetDateTime::now_utc();
    let _ = write!(
        b,
        "<p>AppRec timeout: {} h (HIS 80415 §3.2). Recipients past it that the overdue sweep has not marked yet, then the ones it marked (routing log).</p>",
        timeout.whole_hours()
    );
    match c.store.overdue(now, timeout).await.map_err(store_error) {
        Ok(list) if list.is_empty() => {
            b.push_str("<p class=\"ok\">None waiting past the timeout.</p>")
        }
        Ok(list) => {
            b.push_str("<table><tr><th>sender</th><th>MsgId</th><th>recipient</th><th>clock started</th></tr>");
            for o in list.iter().take(500) {
                let _ = write!(
                    b,
                    "<tr><td>{}</td><td><a href=\"/console/message/{}\"><code>{}</code></a></td><td class=\"bad\">{}</td><td>{}</td></tr>",
                    o.sender,
                    url_part(o.msg_id.as_str()),
                    esc(o.msg_id.as_str()),
                    her(o.her),
                    when(o.clock_start)
                );
            }
            b.push_str("</table>");
        }
        Err(e) => {
            let _ = write!(b, "<p class=\"err\">Delivery store: {}</p>", esc(&e));
        }
    }
    let f = Filter {
        outcome: Some(Outcome::Overdue),
        ..Filter::default()
    };
    let (ds, _) = c.recent.search(&f, 200);
    b.push_str("<h2>Marked overdue (recent routing log)</h2>");
    recent_decisions(&mut b, &ds);
    Page::new(
        StatusCode::OK,
        "Overdue AppRecs",
        "/console/overdue",
        refresh(c),
        &b,
    )
}

/// Redrive asked for without credentials configured.
pub fn redrive_needs_credentials() -> Page {
    Page::error(
        StatusCode::FORBIDDEN,
        "Redrive",
        "redrive from the console needs credentials: set [console] token_file and/or password_file in the configuration (or run `helsemelding redrive` on the machine)",
    )
}

/// `GET /console/redrive`: the confirmation page, with a one-time token for `who`.
pub async fn redrive_confirm(c: &Console, who: &Who) -> Page {
    let Some(br) = &c.broker else {
        return Page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Redrive",
            "no broker link for the console",
        );
    };
    let depth = match br
        .depths(std::slice::from_ref(&br.topology.dead_letter))
        .await
    {
        Ok(d) => match d.into_iter().next() {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Page::error(StatusCode::SERVICE_UNAVAILABLE, "Redrive", &e),
            None => 0,
        },
        Err(e) => return Page::error(StatusCode::SERVICE_UNAVAILABLE, "Redrive", &e),
    };
    if depth == 0 {
        return Page::error(
            StatusCode::OK,
            "Redrive",
            "the dead-letter queue is empty: nothing to redrive",
        );
    }
    let token = c.issue_confirmation(who);
    let b = format!(
        "<p>{depth} message(s) are on <code>{}</code>. Redrive moves them back to <code>{}</code> (same MsgIds; the delivery store deduplicates), as <b>{}</b>; this is logged.</p>\
         <form method=\"post\" action=\"/console/redrive\"><input type=\"hidden\" name=\"token\" value=\"{}\">\
         <p><label>How many (at most) <input name=\"limit\" value=\"{depth}\" size=\"8\"></label></p>\
         <p><label>Type <b>redrive</b> to confirm <input name=\"confirm\" autocomplete=\"off\" size=\"10\"></label></p>\
         <p><button>Redrive now</button> <a href=\"/console/dead-letters\">cancel</a></p></form>\
         <p class=\"note\">The confirmation is valid for 5 minutes and once.</p>",
        esc(&br.topology.dead_letter),
        esc(&br.topology.inbound),
        esc(who.as_str()),
        esc(&token)
    );
    Page::new(StatusCode::OK, "Redrive dead letters", "", None, &b)
}

/// `POST /console/redrive`: checks the confirmation, moves the messages, logs who did it.
pub async fn redrive_run(c: &Console, who: &Who, form: &HashMap<String, String>) -> Page {
    let title = "Redrive dead letters";
    let token = form.get("token").map_or("", |s| s.as_str());
    if !c.take_confirmation(token, who) {
        return Page::error(StatusCode::FORBIDDEN, title, "the confirmation is missing, used, expired or someone else's: start again from the dead-letters page");
    }
    if form.get("confirm").map(|s| s.trim()) != Some("redrive") {
        return Page::error(
            StatusCode::BAD_REQUEST,
            title,
            "not confirmed: type the word redrive in the confirmation field; nothing was moved",
        );
    }
    let limit = match form.get("limit").map(|s| s.trim().parse::<u64>()) {
        Some(Ok(n)) if (1..=1_000_000).contains(&n) => n,
        _ => {
            return Page::error(
                StatusCode::BAD_REQUEST,
                title,
                "how many: a number from 1 to 1000000; nothing was moved",
            )
        }
    };
    let Some(br) = &c.broker else {
        return Page::error(
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            "no broker link for the console",
        );
    };
    let started = std::time::Instant::now();
    let result = br.redrive(limit).await;
    let (moved, text, ok) = match &result {
        Ok(r) => (
            r.moved,
            format!(
                "moved {} message(s) to {}{}",
                r.moved,
                br.topology.inbound,
                if r.republished_not_acked > 0 {
                    format!("; {} republished but still on the dead-letter queue (they will appear twice, same MsgId)", r.republished_not_acked)
                } else {
                    String::new()
                }
            ),
            true,
        ),
        Err(e) => (0, format!("redrive failed: {e}"), false),
    };
    tracing::warn!(who = %who, limit, moved, ok, "console: dead letters redriven to the intake");
    if let Some(log) = &c.audit {
        log.record(
            &Decision::new(
                time::OffsetDateTime::now_utc(),
                Outcome::Redriven,
                &MessageRef::default(),
            )
            .reason(format!("console-redrive by {who}: {text}"))
            .elapsed(started),
        );
    }
    let b = format!(
        "<p class=\"{}\">{}</p><p><a href=\"/console/dead-letters\">back to the dead letters</a></p>",
        if ok { "ok" } else { "err" },
        esc(&text)
    );
    Page::new(
        if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        },
        title,
        "",
        None,
        &b,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn the_search_form_says_every_problem() {
        let params: HashMap<String, String> = [
            ("her", "abc"),
            ("outcome", "<b>"),
            ("since", "yesterday"),
            ("until", "2026-11-23T10:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (f, problems) = filter_from(&params);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("HER-id \"abc\""));
        assert_eq!(f.until, Some(time::macros::datetime!(2026-11-23 10:00 UTC)));
    }
}
