//! The HTTP port of the gateway: `/metrics`, `/health` and the read-only operator console
//! under `/console/` (DESIGN §5, issue 15).
//!
//! Input: a bound listener and [`Endpoints`] (the metrics, and optionally a [`Console`]: the
//! routing-log ring, the delivery store directory, a broker link, the credentials). Output: HTTP/1.1
//! answers. HTTP is hyper 1 (one connection per task, keep-alive, 5 s to send the headers, 16 KiB
//! of headers, 8 KiB of form body, at most [`MAX_CONNECTIONS`] at once) instead of the hand-written
//! reader this port had: the console needs query strings, POST forms, `Authorization` headers and
//! percent-decoding, which a scrape target did not.
//!
//! What the console shows is only what the routing log and the delivery store hold — ids, parties,
//! types, times, states, codes — never message content. Every value is HTML-escaped; the pages
//! carry no script at all, so the Content-Security-Policy forbids every script, and the only
//! stylesheet is served by the binary (`/console/style.css`). Pages reload themselves with a
//! `<meta http-equiv="refresh">`.
//!
//! Who may see it ([`auth`]): with no credentials configured the console answers everyone who can
//! reach the port, which configuration allows only for a loopback bind; with credentials every
//! `/console/` request needs them. `/metrics` and `/health` answer as before, without credentials
//! (counts and states only). Redriving dead letters needs credentials, a confirmation page with a
//! one-time token bound to the user, and the word `redrive` typed; it is logged with who did it.

pub mod auth;
pub mod broker;
mod pages;
pub mod recent;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::gateway::metrics::Metrics;
use crate::gateway::routing_log::RoutingLog;
use crate::ids::{HerId, MsgId, Timestamp};
use crate::store::{MessageRecord, OverdueRecipient, StoreError};
use futures_util::future::BoxFuture;

pub use auth::{Credentials, Who};
pub use broker::BrokerView;
pub use recent::Recent;

/// Connections served at once; more wait in the listen backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Largest form body accepted (the redrive confirmation is a few dozen bytes).
pub const MAX_BODY: usize = 8192;
/// How long a redrive confirmation stays valid.
pub const CONFIRM_VALID: Duration = Duration::from_secs(300);

/// What the HTTP port serves.
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// `None`: only `/metrics` and `/health` (what tests that start a bare gateway get).
    pub console: Option<Console>,
}

/// The parties whose queues the console shows, read at each page (the gateway's list, which a
/// reload changes).
pub type PartyList = Arc<dyn Fn() -> Vec<HerId> + Send + Sync>;

/// The delivery-store reads the console's pages make (a message's records, overdue recipients),
/// through the running gateway's own store handle: the same on redb and on PostgreSQL.
pub trait StoreReads: Send + Sync {
    fn find(&self, msg_id: MsgId) -> BoxFuture<'_, Result<Vec<MessageRecord>, StoreError>>;
    fn overdue(
        &self,
        now: Timestamp,
        timeout: time::Duration,
    ) -> BoxFuture<'_, Result<Vec<OverdueRecipient>, StoreError>>;
}

/// Everything the console reads, as handles the gateway already has.
pub struct Console {
    pub recent: Arc<Recent>,
    /// The state directory (the free-space tile).
    pub state_dir: PathBuf,
    /// The delivery store, read through the gateway's handle.
    pub store: Arc<dyn StoreReads>,
    /// Depths and redrive; `None` shows "no broker link" where the depths would be.
    pub broker: Option<BrokerView>,
    /// Every party whose queues are shown (the register's parties and the gateway itself), as of
    /// now: a reload that adds a party shows its queues.
    pub parties: PartyList,
    pub apprec_timeout: time::Duration,
    pub refresh: Duration,
    /// `None`: no credentials (loopback only; redrive disabled).
    pub credentials: Option<Arc<Credentials>>,
    /// Where a console redrive is recorded (the routing-log file, appended to).
    pub audit: Option<RoutingLog>,
    /// One-time redrive confirmations: token → (who, issued).
    confirmations: Mutex<HashMap<String, (String, Instant)>>,
    /// The health community's report at `/report` (same credentials as the console); `None`:
    /// `[insight]` is off.
    pub report: Option<Arc<crate::insight::report::ReportView>>,
}

impl Console {
    /// A console over these handles. Refuses a bind beyond loopback without credentials.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bind: SocketAddr,
        recent: Arc<Recent>,
        state_dir: PathBuf,
        store: Arc<dyn StoreReads>,
        broker: Option<BrokerView>,
        parties: PartyList,
        apprec_timeout: time::Duration,
        refresh: Duration,
        credentials: Option<Credentials>,
        audit: Option<RoutingLog>,
    ) -> Result<Console, String> {
        if !bind.ip().is_loopback() && credentials.is_none() {
            return Err(format!(
                "the console on {bind} (not a loopback address) needs credentials: set [console] token_file and/or password_file, or bind to 127.0.0.1"
            ));
        }
        Ok(Console {
            recent,
            state_dir,
            store,
            broker,
            parties,
            apprec_timeout,
            refresh,
            credentials: credentials.map(Arc::new),
            audit,
            confirmations: Mutex::new(HashMap::new()),
            report: None,
        })
    }

    /// Issues a one-time redrive confirmation token for `who`.
    fn issue_confirmation(&self, who: &Who) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let mut g = match self.confirmations.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.retain(|_, (_, at)| at.elapsed() < CONFIRM_VALID);
        if g.len() >= 64 {
            // Bounded: the oldest gives way.
            if let Some(oldest) = g
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
            {
                g.remove(&oldest);
            }
        }
        g.insert(token.clone(), (who.as_str().to_owned(), Instant::now()));
        token
    }

    /// Takes (uses up) a confirmation token; true when it was issued to `who` and is still valid.
    fn take_confirmation(&self, token: &str, who: &Who) -> bool {
        let mut g = match self.confirmations.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match g.remove(token) {
            Some((w, at)) => w == who.as_str() && at.elapsed() < CONFIRM_VALID,
            None => false,
        }
    }
}

type Body = Full<Bytes>;

/// Security headers on every console answer.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = respond(status, "text/html; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/metrics` and `/health` exactly as the hand-written endpoint answered them: plain text, and the
/// connection closed after the answer.
fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut r = respond(status, "text/plain; version=0.0.4", body);
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Serves `endpoints` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (sock, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "http endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let endpoints = endpoints.clone();
                async move { Ok::<_, Infallible>(handle(&endpoints, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(sock), service);
            let _ = conn.await;
            drop(permit);
        });
    }
}

async fn handle(endpoints: &Endpoints, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => plain(StatusCode::OK, endpoints.metrics.render()),
        (&Method::GET, "/health") => match endpoints.metrics.health() {
            (true, text) => plain(StatusCode::OK, text),
            (false, text) => plain(StatusCode::SERVICE_UNAVAILABLE, text),
        },
        (_, p) if p == "/console" || p.starts_with("/console/") || p == "/report" => {
            match &endpoints.console {
                Some(c) => console(c, &endpoints.metrics, req).await,
                None => plain(
                    StatusCode::NOT_FOUND,
                    "the console is not enabled on this port\n".into(),
                ),
            }
        }
        (&Method::GET, _) => plain(
            StatusCode::NOT_FOUND,
            "try /metrics, /health or /console/\n".into(),
        ),
        _ => plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into()),
    }
}

async fn console(c: &Console, metrics: &Metrics, req: Request<Incoming>) -> Response<Body> {
    if req.method() == Method::GET && req.uri().path() == "/console/style.css" {
        // Static and free of data: served without credentials, so the refusal page is styled too.
        let mut r = respond(StatusCode::OK, "text/css; charset=utf-8", pages::STYLE);
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        return r;
    }
    let who = match &c.credentials {
        Some(creds) => {
            let header = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(HeaderValue::as_bytes);
            match creds.check(header).await {
                Ok(who) => Some(who),
                Err(refusal) => {
                    let mut r = html(StatusCode::UNAUTHORIZED, pages::refused(refusal.text()));
                    r.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(creds.challenge()),
                    );
                    return r;
                }
            }
        }
        None => None,
    };
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let method = req.method().clone();
    if path == "/report" {
        return report(c, &method, &params).await;
    }
    let page = match (&method, path.trim_end_matches('/')) {
        (&Method::GET, "/console") => pages::overview(c, metrics).await,
        (&Method::GET, "/console/decisions") => pages::decisions(c, &params).await,
        (&Method::GET, "/console/message") => match params.get("id") {
            Some(id) if !id.trim().is_empty() => {
                let mut r = html(StatusCode::SEE_OTHER, String::new());
                let to = format!(
                    "/console/message/{}",
                    percent_encoding::utf8_percent_encode(
                        id.trim(),
                        percent_encoding::NON_ALPHANUMERIC
                    )
                );
                if let Ok(v) = HeaderValue::from_str(&to) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                return r;
            }
            _ => pages::Page::error(
                StatusCode::BAD_REQUEST,
                "Message",
                "give a MsgId to look up",
            ),
        },
        (&Method::GET, p) if p.starts_with("/console/message/") => {
            let raw = &p["/console/message/".len()..];
            let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            pages::message(c, &id).await
        }
        (&Method::GET, "/console/dead-letters") => pages::dead_letters(c).await,
        (&Method::GET, "/console/overdue") => pages::overdue(c).await,
        (&Method::GET, "/console/redrive") => match &who {
            Some(who) => pages::redrive_confirm(c, who).await,
            None => pages::redrive_needs_credentials(),
        },
        (&Method::POST, "/console/redrive") => match &who {
            Some(who) => {
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => {
                        return html(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            pages::Page::error(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "Redrive",
                                "the form is larger than 8 KiB",
                            )
                            .1,
                        )
                    }
                };
                let form: HashMap<String, String> =
                    form_urlencoded::parse(&body).into_owned().collect();
                pages::redrive_run(c, who, &form).await
            }
            None => pages::redrive_needs_credentials(),
        },
        (&Method::GET, _) => {
            pages::Page::error(StatusCode::NOT_FOUND, "Not found", "no such console page")
        }
        _ => pages::Page::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "Not allowed",
            "GET only (POST only for a confirmed redrive)",
        ),
    };
    html(page.0, page.1)
}

/// `/report`: the insight report's HTML, read-only, months from `from`/`to` (`YYYY-MM`) or the
/// last 12. Its own CSP: the page carries its styles inline and no script at all.
async fn report(c: &Console, method: &Method, params: &HashMap<String, String>) -> Response<Body> {
    if method != Method::GET {
        let p = pages::Page::error(StatusCode::METHOD_NOT_ALLOWED, "Not allowed", "GET only");
        return html(p.0, p.1);
    }
    let Some(view) = c.report.clone() else {
        let p = pages::Page::error(
            StatusCode::NOT_FOUND,
            "Report",
            "the insight report is off: set [insight] enabled = true",
        );
        return html(p.0, p.1);
    };
    let (from, to) = (params.get("from").cloned(), params.get("to").cloned());
    let made = tokio::task::spawn_blocking(move || view.page(from.as_deref(), to.as_deref())).await;
    match made {
        Ok(Ok(page)) => {
            let mut r = html(StatusCode::OK, page);
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
                ),
            );
            r
        }
        Ok(Err(e)) => {
            let p = pages::Page::error(StatusCode::BAD_REQUEST, "Report", &e.to_string());
            html(p.0, p.1)
        }
        Err(e) => {
            let p = pages::Page::error(StatusCode::INTERNAL_SERVER_ERROR, "Report", &e.to_string());
            html(p.0, p.1)
        }
    }
}

/// Starts the HTTP port of `serve` with the console: follows the routing log, opens the console's
/// own broker link lazily, and serves `listener` until the returned task is aborted. This is the
/// whole wiring the daemon needs (called from `helsemelding serve`).
#[allow(clippy::too_many_arguments)]
pub fn start(
    bind: SocketAddr,
    listener: TcpListener,
    config: &crate::config::GatewayConfig,
    parties: PartyList,
    store: Arc<dyn StoreReads>,
    mut amqp: crate::amqp::connection::AmqpSettings,
    topology: crate::amqp::topology::Topology,
    metrics: Arc<Metrics>,
    report: Option<Arc<crate::insight::report::ReportView>>,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let credentials = Credentials::load(&config.console).map_err(|ps| ps.join("; "))?;
    let gateway_her = config.gateway.her_id;
    let parties: PartyList = Arc::new(move || {
        let mut list = parties();
        if !list.contains(&gateway_her) {
            list.push(gateway_her);
        }
        list.sort();
        list
    });
    amqp.role = "console".into();
    let recent = Arc::new(Recent::new(config.paths.routing_log.clone()));
    let audit = RoutingLog::open(Some(&config.paths.routing_log), false)
        .map_err(|e| format!("routing log {}: {e}", config.paths.routing_log.display()))?;
    let mut console = Console::new(
        bind,
        recent.clone(),
        config.paths.state.clone(),
        store,
        Some(BrokerView::new(amqp, topology)),
        parties,
        config.policy.apprec_timeout,
        Duration::from_secs(config.console.refresh.whole_seconds().max(1) as u64),
        credentials,
        Some(audit),
    )?;
    console.report = report;
    tracing::info!(%bind, credentials = console.credentials.is_some(), "metrics, health and console listening (/console/)");
    let endpoints = Arc::new(Endpoints {
        metrics,
        console: Some(console),
    });
    Ok(tokio::spawn(async move {
        // Aborting this task drops the guard, which stops the follower too.
        let _follower = AbortOnDrop(tokio::spawn(recent.follow()));
        serve(listener, endpoints).await;
    }))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
