//! CRLs that keep themselves current (issue 16, item 1): for every CA of the trust directory the
//! gateway fetches its CRL over HTTP from the distribution points named in the certificates it
//! trusts, verifies it against the CA, keeps the last good copy on disk (`<state>/crls/`, read at the
//! next start by `TrustStore::load_with_copies`) and swaps a new trust store in between messages;
//! files dropped into the trust directory's `crls/` are picked up too.
//!
//! When a CA's CRL is fetched: when there is none; at half of its validity window
//! (`thisUpdate + (nextUpdate − thisUpdate)/2`); at once when it is stale; and at least every
//! [`RevocationSettings::refresh`]. Requests are conditional (`If-None-Match` / `If-Modified-Since`
//! from the last answer), bounded by [`RevocationSettings::timeout`]; after a failure the next attempt
//! waits [`RevocationSettings::retry_min`], doubling up to [`RevocationSettings::retry_max`].
//!
//! Input: the current trust store (through [`TrustHolder`]) and the clock. Output: new trust stores,
//! the last-good copies on disk, and [`CrlStatus`] for `/metrics`. Failures are logged once per CA
//! (when fetching starts to fail, and when it works again), never once per attempt, and counted.
//! A stale CRL is never rejected or accepted here: verification answers "retry" for it
//! (`VerifyError::RevocationStale`) until a current one is in. OCSP is not checked.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use tracing::{info, warn};

use crate::cms::{Crl, TrustStore};
use crate::ids::Timestamp;

/// Largest CRL accepted from a distribution point.
pub const MAX_CRL_BYTES: usize = 16 << 20;

/// How CRLs are kept current.
#[derive(Debug, Clone)]
pub struct RevocationSettings {
    /// Fetch from distribution points at all (dropped files are picked up either way).
    pub fetch: bool,
    /// Longest time between two fetches of one CA's CRL (a CA may publish before its half-window).
    pub refresh: Duration,
    /// Pause after a failed fetch, doubled per further failure up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// One fetch (connect, request, whole body) at most this long.
    pub timeout: Duration,
    /// How often `crls/` of the trust directory is looked at for new files.
    pub watch: Duration,
    /// Where the last good fetched copies are kept (`<state>/crls`).
    pub copies: PathBuf,
}

impl RevocationSettings {
    /// Defaults: refresh hourly, retry from 30 s up to 15 min, 10 s timeout, look at `crls/` every 30 s.
    pub fn new(copies: PathBuf) -> RevocationSettings {
        RevocationSettings {
            fetch: true,
            refresh: Duration::from_secs(3600),
            retry_min: Duration::from_secs(30),
            retry_max: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
            watch: Duration::from_secs(30),
            copies,
        }
    }
}

/// Where the trust store messages are verified against lives; the gateway's implementation swaps
/// it between messages (each assessment takes one snapshot).
pub trait TrustHolder: Send + Sync + 'static {
    /// The trust store in use now.
    fn current(&self) -> Option<Arc<TrustStore>>;
    /// Replaces the trust store with `derive(current)` (nothing when it returns `None`); writers
    /// are serialised, so nothing installed meanwhile is lost.
    fn replace(&self, derive: &mut dyn FnMut(&TrustStore) -> Option<TrustStore>);
}

/// Per CA, what `/metrics` shows.
#[derive(Debug, Clone, Default)]
pub struct CaFigures {
    /// `nextUpdate` of the CRL in use (unix seconds), if any.
    pub next_update: Option<i64>,
    pub stale: bool,
    /// New CRLs installed (fetched or dropped).
    pub updates: u64,
    pub fetches: u64,
    pub fetch_failures: u64,
    /// 1 while the last fetch failed.
    pub failing: bool,
}

/// The figures of every CA, keyed by its name.
#[derive(Debug, Default)]
pub struct CrlStatus(Mutex<BTreeMap<String, CaFigures>>);

/// A metric family of the CRL status: name, Prometheus type, help, and its figure of one CA.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    fn(&CaFigures) -> Option<i64>,
);

impl CrlStatus {
    fn with(&self, ca: &str, f: impl FnOnce(&mut CaFigures)) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(g.entry(ca.to_owned()).or_default());
    }

    pub fn get(&self, ca: &str) -> Option<CaFigures> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(ca)
            .cloned()
    }

    /// Sum over every CA (tests and the soak read these).
    pub fn totals(&self) -> CaFigures {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut t = CaFigures::default();
        for f in g.values() {
            t.updates += f.updates;
            t.fetches += f.fetches;
            t.fetch_failures += f.fetch_failures;
            t.stale |= f.stale;
            t.failing |= f.failing;
        }
        t
    }

    /// Prometheus text for every CA.
    pub fn render(&self, s: &mut String) {
        use std::fmt::Write as _;
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let label = |ca: &str| ca.replace(['\\', '"', '\n'], "_");
        let families: [Family; 6] = [
            (
                "helsemelding_crl_next_update_timestamp_seconds",
                "gauge",
                "nextUpdate of the CRL in use per CA (unix time).",
                |f| f.next_update,
            ),
            (
                "helsemelding_crl_stale",
                "gauge",
                "1 while the CA's CRL is past nextUpdate (its certificates' messages are retried).",
                |f| Some(i64::from(f.stale)),
            ),
            (
                "helsemelding_crl_fetch_failing",
                "gauge",
                "1 while the last fetch of the CA's CRL failed.",
                |f| Some(i64::from(f.failing)),
            ),
            (
                "helsemelding_crl_fetches_total",
                "counter",
                "Fetches of the CA's CRL from its distribution points.",
                |f| Some(f.fetches as i64),
            ),
            (
                "helsemelding_crl_fetch_failures_total",
                "counter",
                "Failed fetches of the CA's CRL.",
                |f| Some(f.fetch_failures as i64),
            ),
            (
                "helsemelding_crl_updates_total",
                "counter",
                "New CRLs of the CA taken into use (fetched or dropped into crls/).",
                |f| Some(f.updates as i64),
            ),
        ];
        for (name, kind, help, value) in families {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (ca, f) in g.iter() {
                if let Some(v) = value(f) {
                    let _ = writeln!(s, "{name}{{ca=\"{}\"}} {v}", label(ca));
                }
            }
        }
    }
}

/// What one fetch gave.
#[derive(Debug)]
enum Fetched {
    NotModified,
    Body {
        bytes: Bytes,
        etag: Option<String>,
        last_modified: Option<String>,
    },
}

/// Validators of the last answer of one URL, for conditional requests.
#[derive(Debug, Default, Clone)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// `GET url` over HTTP/1.1 with the validators as conditions, within `timeout`.
async fn get(url: &str, v: &Validators, timeout: Duration) -> Result<Fetched, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err("only http:// distribution points are fetched".into());
    }
    let host = uri.host().ok_or("URL without host")?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let path = uri
        .path_and_query()
        .map_or("/".to_owned(), |p| p.to_string());
    let work = async move {
        let stream = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        let conn = tokio::spawn(conn);
        let mut req = hyper::Request::get(path)
            .header(hyper::header::HOST, authority)
            .header(
                hyper::header::USER_AGENT,
                concat!("helsemelding/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(e) = &v.etag {
            req = req.header(hyper::header::IF_NONE_MATCH, e);
        }
        if let Some(m) = &v.last_modified {
            req = req.header(hyper::header::IF_MODIFIED_SINCE, m);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let header = |h| {
            resp.headers()
                .get(h)
                .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let out = if status == hyper::StatusCode::NOT_MODIFIED {
            Ok(Fetched::NotModified)
        } else if status == hyper::StatusCode::OK {
            let etag = header(hyper::header::ETAG);
            let last_modified = header(hyper::header::LAST_MODIFIED);
            let body = Limited::new(resp.into_body(), MAX_CRL_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the body (at most {MAX_CRL_BYTES} bytes): {e}"))?
                .to_bytes();
            Ok(Fetched::Body {
                bytes: body,
                etag,
                last_modified,
            })
        } else {
            Err(format!("HTTP status {status}"))
        };
        conn.abort();
        out
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

/// One CA's fetching state.
#[derive(Debug, Default)]
struct CaState {
    /// No attempt before this (backoff, or the pause after a fetch that brought nothing new).
    not_before: Option<Instant>,
    last_fetch: Option<Instant>,
    /// Failed attempts in a row (0 once one works).
    failures: u32,
    /// Fetches in a row that brought nothing newer while a new CRL was due.
    nothing_new: u32,
    validators: HashMap<String, Validators>,
}

fn backoff(s: &RevocationSettings, n: u32) -> Duration {
    s.retry_min
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(s.retry_max)
}

/// Where the last good fetched CRLs are kept under the state directory.
pub fn copies_dir(state: &Path) -> PathBuf {
    state.join("crls")
}

/// Whether a fetch of this CA's CRL is due (see the module documentation).
pub fn fetch_due(
    crl: Option<&Crl>,
    now: Timestamp,
    last_fetch: Option<Instant>,
    wall: Instant,
    refresh: Duration,
) -> bool {
    let Some(c) = crl else { return true };
    if let Some(next) = c.next_update() {
        let half = c.this_update() + (next - c.this_update()) / 2;
        if now >= half {
            return true;
        }
    }
    last_fetch.is_none_or(|t| wall >= t + refresh)
}

/// The last-good copy's file name for a CA: a digest of its subject, so that two CAs never share one.
fn copy_name(subject_raw: &[u8]) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, subject_raw);
    format!("{}.crl", hex::encode(&d.as_ref()[..12]))
}

/// Writes `bytes` to `path` atomically (a temporary file renamed over it, after fsync).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("crl.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// What `crls/` held when last looked at (name, length, modification time).
type DirSignature = Vec<(PathBuf, u64, Option<std::time::SystemTime>)>;

fn dir_signature(dir: &Path) -> DirSignature {
    let mut out: DirSignature = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "crl"))
        .filter_map(|e| {
            let m = e.metadata().ok()?;
            Some((e.path(), m.len(), m.modified().ok()))
        })
        .collect();
    out.sort();
    out
}

/// The refresher: runs until the task is dropped.
pub struct Refresher {
    pub settings: RevocationSettings,
    pub holder: Arc<dyn TrustHolder>,
    pub clock: Arc<dyn Fn() -> Timestamp + Send + Sync>,
    pub status: Arc<CrlStatus>,
}

impl Refresher {
    pub async fn run(self) {
        let mut states: HashMap<Vec<u8>, CaState> = HashMap::new();
        let mut dropped = self
            .holder
            .current()
            .map(|t| dir_signature(&t.dir().join("crls")))
            .unwrap_or_default();
        let mut last_watch = Instant::now();
        let mut bad_files: HashMap<PathBuf, Option<std::time::SystemTime>> = HashMap::new();
        let tick = [
            self.settings.watch,
            self.settings.retry_min,
            self.settings.refresh,
        ]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(1))
        .clamp(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let Some(trust) = self.holder.current() else {
                tokio::time::sleep(tick).await;
                continue;
            };
            if last_watch.elapsed() >= self.settings.watch {
                last_watch = Instant::now();
                let now_sig = dir_signature(&trust.dir().join("crls"));
                if now_sig != dropped {
                    self.pick_up_dropped(&now_sig, &mut bad_files);
                    dropped = now_sig;
                }
            }
            if self.settings.fetch {
                let trust = self.holder.current().unwrap_or(trust);
                for ca in trust.authorities() {
                    if ca.distribution_points.is_empty() {
                        continue;
                    }
                    let st = states.entry(ca.subject_raw.clone()).or_default();
                    let wall = Instant::now();
                    if st.not_before.is_some_and(|t| wall < t) {
                        continue;
                    }
                    let current = trust.crl_of(&ca.subject_raw).cloned();
                    if !fetch_due(
                        current.as_ref(),
                        (self.clock)(),
                        st.last_fetch,
                        wall,
                        self.settings.refresh,
                    ) {
                        continue;
                    }
                    self.fetch_one(ca, current, st).await;
                }
            }
            self.update_status();
            tokio::time::sleep(tick).await;
        }
    }

    /// Re-reads `crls/`; every readable CRL whose signature verifies is merged in.
    fn pick_up_dropped(
        &self,
        sig: &DirSignature,
        bad: &mut HashMap<PathBuf, Option<std::time::SystemTime>>,
    ) {
        let mut good = Vec::new();
        let Some(trust) = self.holder.current() else {
            return;
        };
        for (path, len, modified) in sig {
            let read = if *len as usize > MAX_CRL_BYTES {
                Err(format!("{len} bytes is too large"))
            } else {
                std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| Crl::parse(&b))
                    .and_then(|c| trust.check_crl(&c).map(|()| c))
            };
            match read {
                Ok(c) => {
                    bad.remove(path);
                    good.push(c);
                }
                Err(e) => {
                    if bad.get(path) != Some(modified) {
                        warn!(file = %path.display(), error = %e, "CRL file in crls/ not used");
                        bad.insert(path.clone(), *modified);
                    }
                }
            }
        }
        self.install(good, "crls/ directory");
    }

    /// Swaps in `crls` where they supersede the CRLs in use; counts and logs what changed.
    fn install(&self, crls: Vec<Crl>, source: &str) {
        let mut changed: Vec<Crl> = Vec::new();
        self.holder.replace(&mut |t| {
            // Checked again against the store it goes into: a reload (gateway/reload.rs) may have
            // replaced the trust directory since the CRL was checked.
            changed = crls
                .iter()
                .filter(|c| t.crl_of(c.issuer_raw()).is_none_or(|old| c.supersedes(old)))
                .filter(|c| t.check_crl(c).is_ok())
                .cloned()
                .collect();
            (!changed.is_empty()).then(|| t.with_crls(changed.iter().cloned()))
        });
        for c in changed {
            self.status.with(c.issuer(), |f| f.updates += 1);
            info!(
                ca = c.issuer(),
                source,
                this_update = %crate::ids::rfc3339(c.this_update()),
                next_update = %c.next_update().map_or("-".into(), crate::ids::rfc3339),
                "new CRL in use"
            );
        }
    }

    async fn fetch_one(&self, ca: &crate::cms::Authority, current: Option<Crl>, st: &mut CaState) {
        let wall = Instant::now();
        st.last_fetch = Some(wall);
        self.status.with(&ca.name, |f| f.fetches += 1);
        let mut problems = Vec::new();
        let mut outcome = None;
        for url in &ca.distribution_points {
            let v = st.validators.get(url).cloned().unwrap_or_default();
            match get(url, &v, self.settings.timeout).await {
                Ok(Fetched::NotModified) => {
                    outcome = Some(None);
                    break;
                }
                Ok(Fetched::Body {
                    bytes,
                    etag,
                    last_modified,
                }) => {
                    let checked = Crl::parse(&bytes).and_then(|c| {
                        if c.issuer_raw() != ca.subject_raw.as_slice() {
                            return Err(format!("issued by {}, not by this CA", c.issuer()));
                        }
                        let trust = self.holder.current().ok_or("no trust store")?;
                        trust.check_crl(&c)?;
                        Ok(c)
                    });
                    match checked {
                        Ok(c) => {
                            st.validators.insert(
                                url.clone(),
                                Validators {
                                    etag,
                                    last_modified,
                                },
                            );
                            outcome = Some(Some(c));
                            break;
                        }
                        Err(e) => problems.push(format!("{url}: {e}")),
                    }
                }
                Err(e) => problems.push(format!("{url}: {e}")),
            }
        }
        match outcome {
            Some(got) => {
                if st.failures > 0 {
                    info!(ca = %ca.name, failed_attempts = st.failures, "CRL fetched again");
                }
                st.failures = 0;
                self.status.with(&ca.name, |f| f.failing = false);
                let newer = got.filter(|c| current.as_ref().is_none_or(|old| c.supersedes(old)));
                match newer {
                    Some(c) => {
                        st.nothing_new = 0;
                        st.not_before = None;
                        let path = self.settings.copies.join(copy_name(&ca.subject_raw));
                        if let Err(e) = write_atomically(&path, c.der()) {
                            warn!(ca = %ca.name, file = %path.display(), error = %e, "cannot keep the last good CRL on disk; it is in use, but a restart without network will not have it");
                        }
                        self.install(vec![c], "distribution point");
                    }
                    None => {
                        // Nothing newer: only a CRL due for renewal makes this a reason to wait longer.
                        let due = current.as_ref().is_none_or(|c| {
                            fetch_due(Some(c), (self.clock)(), None, wall, Duration::MAX)
                        });
                        if due {
                            st.nothing_new += 1;
                            st.not_before = Some(wall + backoff(&self.settings, st.nothing_new));
                        }
                    }
                }
            }
            None => {
                st.failures += 1;
                self.status.with(&ca.name, |f| {
                    f.fetch_failures += 1;
                    f.failing = true;
                });
                if st.failures == 1 {
                    warn!(ca = %ca.name, problems = %problems.join("; "), "cannot fetch the CA's CRL; retrying with backoff (logged again only once it works)");
                }
                st.not_before = Some(wall + backoff(&self.settings, st.failures));
            }
        }
    }

    /// Stale flags and nextUpdate per CA; a warning when a CA's CRL turns stale.
    fn update_status(&self) {
        let Some(trust) = self.holder.current() else {
            return;
        };
        let now = (self.clock)();
        for ca in trust.authorities() {
            let crl = trust.crl_of(&ca.subject_raw);
            let stale = crl.is_none_or(|c| c.is_stale(now));
            let mut was = false;
            self.status.with(&ca.name, |f| {
                was = f.stale;
                f.stale = stale;
                f.next_update = crl
                    .and_then(|c| c.next_update())
                    .map(|t| t.unix_timestamp());
            });
            if stale && !was {
                warn!(ca = %ca.name, "no current CRL for this CA: messages signed with certificates it issued are retried until one is in");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_limit() {
        let mut s = RevocationSettings::new(PathBuf::new());
        s.retry_min = Duration::from_secs(30);
        s.retry_max = Duration::from_secs(100);
        assert_eq!(backoff(&s, 1), Duration::from_secs(30));
        assert_eq!(backoff(&s, 2), Duration::from_secs(60));
        assert_eq!(backoff(&s, 3), Duration::from_secs(100));
        assert_eq!(backoff(&s, 40), Duration::from_secs(100));
    }

    #[test]
    fn no_crl_means_fetch_now() {
        assert!(fetch_due(
            None,
            time::OffsetDateTime::now_utc(),
            Some(Instant::now()),
            Instant::now(),
            Duration::MAX
        ));
    }

    #[tokio::test]
    async fn a_closed_port_is_a_clear_error_within_the_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = get(
            &format!("http://{addr}/x.crl"),
            &Validators::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.starts_with("connect:"), "{e}");
        let e = get(
            "https://example.invalid/x.crl",
            &Validators::default(),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(e.contains("only http://"), "{e}");
    }
}
