//! The soak (issue 16, item 4): the real gateway (`helsemelding-lab serve`) under a long stream of
//! signed messages, with its clock running faster than the wall clock
//! (`helsemelding::gateway::fast_clock`), so that in one run AppRecs go overdue (HIS 80415:2012
//! §3.2: 96 hours), records are pruned past retention, and the CRL of the senders' CA turns
//! stale and is refreshed from a local HTTP server — while its resident set, open files, threads
//! and store size are sampled from `/proc` every few seconds.
//!
//! | module    | job |
//! |-----------|-----|
//! | `traffic` | sign while the gateway runs, publish with confirms; the nursing home's AppRecs |
//! | `ledger`  | what was published and what came out, streaming: lost, duplicates, inversions, second AppRecs |
//! | `sample`  | `/proc` and `/metrics` samples, the table, the verdict |
//! | `cli`     | `helsemelding-lab soak`: prints the table, writes the JSON report, exit 1 on a failed verdict |
//!
//! The run: a vhost and directory of its own; a CA made on the spot (`crate::pki::crl`) whose
//! RSA-2048 certificates the senders and the nursing home sign with, its CRL served on 127.0.0.1
//! and re-signed in the gateway's time (valid [`CRL_WINDOW_WALL`] of wall time; every third CRL is
//! withheld until the gateway reports it stale, then published); the shipped configuration with
//! `apprec_timeout` 96 h, `retention` [`RETENTION`] and quick CRL retries; the load; then a wait
//! until retention has passed for the last message, the gateway's SIGTERM, and the store opened to
//! count what is left (must be nothing). Failure: [`SoakError`] when the run cannot be carried
//! out; what it finds wrong goes into the [`Verdict`].

pub mod cli;
pub mod ledger;
pub mod sample;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::{async_queue, error_queue, Topology, DEAD_LETTER_QUEUE};
use helsemelding::amqp::{connect, Consumer, Publisher, Settlement};
use helsemelding::cms::Signer;
use helsemelding::gateway::fast_clock::{FastClock, ENV as CLOCK_ENV};
use helsemelding::ids::HerId;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::bench::messages::{self, Kind};
use crate::chaos::process::GatewayProcess;
use crate::pki::crl::{trust_dir_with, CrlServer, TestCa, CA_NAME};
use ledger::{Ledger, Queue, Tally};
use sample::{Sample, Verdict};
use traffic::{ToAnswer, ANSWERING, SILENT};

/// `policy.apprec_timeout` of the soak: the standard's 96 hours (HIS 80415:2012 §3.2).
pub const APPREC_TIMEOUT: time::Duration = time::Duration::hours(96);
/// `policy.retention` of the soak: a day past the AppRec timeout, so overdue comes before pruning.
pub const RETENTION: time::Duration = time::Duration::hours(120);
/// How long (wall time) each CRL of the soak's CA is valid.
pub const CRL_WINDOW_WALL: Duration = Duration::from_secs(20);

/// Why a soak could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    #[error("setting up: {0}")]
    Setup(String),
    #[error("broker: {0}")]
    Broker(String),
    #[error("the gateway {0}")]
    Gateway(String),
    #[error("publish: {0}")]
    Publish(#[from] helsemelding::amqp::PublishError),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// The binary whose `serve` runs the gateway (`helsemelding-lab`: the fast clock needs it).
    pub exe: PathBuf,
    /// The repository root: `config/`, `fixtures/`.
    pub base: PathBuf,
    pub schemas: PathBuf,
    pub messages: usize,
    /// How many times faster than the wall clock the gateway's clock runs.
    pub clock_speed: u32,
    pub sample_every: Duration,
    pub senders: usize,
    /// Size of each message's XML, bytes.
    pub size: usize,
    /// The nursing home answers one in this many of the messages it gets.
    pub answer_every: usize,
    /// Stop waiting for the last arrivals after this long without any progress.
    pub stall: Duration,
    /// Keep the run's directory (configuration, gateway stderr, state) here instead of deleting it.
    pub keep: Option<PathBuf>,
}

/// Everything a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub messages: usize,
    pub senders: usize,
    pub clock_speed: u32,
    pub xml_bytes: usize,
    pub apprec_timeout_h: i64,
    pub retention_h: i64,
    /// Wall seconds from the first publish until the last message and AppRec were in.
    pub load_s: f64,
    /// Messages per wall second over the load.
    pub rate: f64,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub tally: Tally,
    pub samples: Vec<Sample>,
    pub verdict: Verdict,
}

/// Runs a soak; `progress` sees every sample as it is taken.
pub async fn run(o: &SoakOptions, progress: impl FnMut(&Sample)) -> Result<SoakReport, SoakError> {
    let vhost = TestVhost::create()
        .await
        .map_err(|e| SoakError::Broker(format!("vhost: {e}")))?;
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "hm-soak-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
    };
    let result = run_in(o, &vhost, &dir, progress).await;
    let _ = vhost.delete().await;
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Sets `key = value` in `[section]` of a TOML text whose keys are one per line.
fn set_key(toml: &str, section: &str, key: &str, value: &str) -> Result<String, SoakError> {
    let mut out = String::with_capacity(toml.len() + 64);
    let (mut current, mut done) = (String::new(), false);
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            current = t.trim_matches(['[', ']']).to_owned();
        }
        if current == section
            && t.split('=').next().map(str::trim) == Some(key)
            && !t.starts_with('#')
        {
            out.push_str(&format!("{key} = {value}\n"));
            done = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !done {
        return Err(SoakError::Setup(format!(
            "no {section}.{key} in the shipped configuration"
        )));
    }
    Ok(out)
}

fn setup_err(what: &Path) -> impl Fn(std::io::Error) -> SoakError + '_ {
    move |e| SoakError::Setup(format!("{}: {e}", what.display()))
}

/// What [`prepare`] made: the configuration's path, the senders' signers per kind, the nursing
/// home's signer.
type Prepared = (PathBuf, Vec<(Kind, Arc<Signer>)>, Arc<Signer>);

/// The configuration, trust directory and register of the soak under `dir`.
fn prepare(
    o: &SoakOptions,
    dir: &Path,
    url: &str,
    port: u16,
    ca: &TestCa,
) -> Result<Prepared, SoakError> {
    std::fs::create_dir_all(dir).map_err(setup_err(dir))?;
    let config = helsemelding::config::scratch::write(
        &o.base,
        dir,
        &helsemelding::config::scratch::Scratch {
            url,
            schemas: &o.schemas,
            prefetch: None,
            metrics_port: Some(port),
        },
    )
    .map_err(|e| SoakError::Setup(e.to_string()))?;
    let trust =
        trust_dir_with(&o.base.join("fixtures/gateway-pki"), dir, ca).map_err(setup_err(dir))?;
    let pki = dir.join("soak-pki");
    let issue = |name: &str, cn: &str, serial: u64| {
        let stem = ca.issue(&pki, name, cn, serial);
        Signer::from_pem_files(&stem.with_extension("key"), &stem.with_extension("pem"))
            .map(|s| (stem.with_extension("pem"), Arc::new(s)))
            .map_err(|e| SoakError::Setup(format!("signer {}: {e}", stem.display())))
    };
    let (dialog_cert, dialog) = issue("gp-office", "Soak GP office", 4001)?;
    let (plo_cert, plo) = issue("hospital", "Soak hospital", 4002)?;
    let (home_cert, home) = issue("nursing-home", "Soak nursing home", 4003)?;

    let mut text = std::fs::read_to_string(&config).map_err(setup_err(&config))?;
    let quoted = |p: &Path| format!("{:?}", p.display().to_string());
    for (section, key, value) in [
        ("paths", "trust_dir", quoted(&trust)),
        (
            "policy",
            "apprec_timeout",
            format!("\"{}h\"", APPREC_TIMEOUT.whole_hours()),
        ),
        (
            "policy",
            "retention",
            format!("\"{}h\"", RETENTION.whole_hours()),
        ),
        ("revocation", "retry_min", "\"1s\"".to_owned()),
        ("revocation", "retry_max", "\"4s\"".to_owned()),
        ("revocation", "timeout", "\"5s\"".to_owned()),
        ("revocation", "watch", "\"1s\"".to_owned()),
    ] {
        text = set_key(&text, section, key, &value)?;
    }
    std::fs::write(&config, text).map_err(setup_err(&config))?;

    // The soak's senders (not the shipped register's two, whose certificates are the fixtures')
    // and the nursing home's soak certificate next to its own.
    let register = dir.join("parties.toml");
    let mut parties = std::fs::read_to_string(&register).map_err(setup_err(&register))?;
    let shipped_home = "parties/81001-sign.pem\"]";
    if !parties.contains(shipped_home) {
        return Err(SoakError::Setup(format!(
            "no 81001 certificate in {}",
            register.display()
        )));
    }
    parties = parties.replace(
        shipped_home,
        &format!("parties/81001-sign.pem\", {}]", quoted(&home_cert)),
    );
    parties.push_str(&messages::extra_parties_signing_with(
        o.senders + 2,
        |k| match k {
            Kind::Dialog => dialog_cert.clone(),
            Kind::Plo => plo_cert.clone(),
        },
    ));
    std::fs::write(&register, parties).map_err(setup_err(&register))?;
    Ok((config, vec![(Kind::Dialog, dialog), (Kind::Plo, plo)], home))
}

/// Publishes a CRL valid from a minute ago (the gateway's time) for `window`.
fn publish_crl(
    server: &CrlServer,
    ca: &TestCa,
    clock: &FastClock,
    window: time::Duration,
) -> time::OffsetDateTime {
    let this = traffic::gateway_now(clock) - time::Duration::minutes(1);
    let next = this + window;
    server.publish(ca.crl(&[], this, next));
    next
}

/// Keeps the CRL current in the gateway's time; every third one is left to turn stale and
/// replaced only once `/metrics` shows it stale. Counts those stale-then-refreshed cycles.
async fn rotate_crls(
    server: Arc<CrlServer>,
    ca: Arc<TestCa>,
    clock: FastClock,
    port: u16,
    mut next: time::OffsetDateTime,
    stale_refreshed: Arc<AtomicU64>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let window = time::Duration::try_from(CRL_WINDOW_WALL).unwrap_or(time::Duration::seconds(20))
        * clock.factor;
    let stale_metric = format!("helsemelding_crl_stale{{ca=\"{CA_NAME}\"}}");
    for cycle in 1u64.. {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = traffic::gateway_now(&clock);
            if cycle % 3 != 1 {
                // Before the gateway's half-window fetch, so it finds a newer one.
                if now >= next - window * 0.6 {
                    break;
                }
            } else if now >= next {
                let m = crate::bench::gateway::scrape(port)
                    .await
                    .unwrap_or_default();
                if sample::metric(&m, &stale_metric) == 1 {
                    stale_refreshed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                if now >= next + window {
                    problems
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!(
                            "the gateway did not report the CRL stale within a window past {next}"
                        ));
                    break;
                }
            }
        }
        next = publish_crl(&server, &ca, &clock, window);
    }
}

/// Consumes `queue` on `conn` until dropped, feeding the ledger; messages to answer go to `answer`.
async fn drain(
    conn: Arc<lapin::Connection>,
    queue: String,
    kind: Queue,
    ledger: Arc<Mutex<Ledger>>,
    answer: mpsc::UnboundedSender<ToAnswer>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let note = |p: String| problems.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    let mut consumer = match Consumer::open(&conn, &queue, 512).await {
        Ok(c) => c,
        Err(e) => return note(format!("consuming {queue}: {e}")),
    };
    let mut acks = JoinSet::new();
    while let Some(d) = consumer.next().await {
        let id = d.message_id().unwrap_or("").to_owned();
        let first = ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .seen(kind, &id);
        if let Some(e) = first.filter(|e| e.answer) {
            let _ = answer.send(ToAnswer {
                msg_id: id,
                sender: e.sender,
                body: d.body().clone(),
            });
        }
        acks.spawn(d.ack());
        while let Some(r) = acks.try_join_next() {
            if !matches!(r, Ok(Settlement::Settled)) {
                note(format!("an ack on {queue} was not settled"));
            }
        }
    }
    note(format!("the consumer of {queue} ended"));
}

async fn wait_ready(gateway: &mut GatewayProcess, port: u16) -> Result<(), SoakError> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = gateway.exited() {
            return Err(SoakError::Gateway(format!(
                "exited with {status} while starting:\n{}",
                gateway.stderr_tail(20)
            )));
        }
        let m = crate::bench::gateway::scrape(port)
            .await
            .unwrap_or_default();
        if sample::metric(&m, "helsemelding_broker_connected") == 1 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SoakError::Gateway(format!(
                "not connected to the broker within 90 s:\n{}",
                gateway.stderr_tail(20)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run_in(
    o: &SoakOptions,
    vhost: &TestVhost,
    dir: &Path,
    mut progress: impl FnMut(&Sample),
) -> Result<SoakReport, SoakError> {
    if o.clock_speed == 0 || o.senders == 0 || o.messages == 0 {
        return Err(SoakError::Setup(
            "messages, senders and clock speed must be at least 1".into(),
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| SoakError::Setup(format!("a free port: {e}")))?
        .port();
    let clock = FastClock {
        factor: o.clock_speed,
        origin: time::OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .map_err(|e| SoakError::Setup(e.to_string()))?,
    };
    let server = Arc::new(CrlServer::start().await);
    let ca = Arc::new(TestCa::new(&server.url()));
    let (config, signers, home) = {
        let (dir, url, ca2) = (dir.to_path_buf(), vhost.url().to_owned(), ca.clone());
        let o2 = o.clone();
        tokio::task::spawn_blocking(move || prepare(&o2, &dir, &url, port, &ca2))
            .await
            .map_err(|e| SoakError::Setup(format!("preparing: {e}")))??
    };
    let window = time::Duration::try_from(CRL_WINDOW_WALL).unwrap_or(time::Duration::seconds(20))
        * clock.factor;
    let first_next = publish_crl(&server, &ca, &clock, window);

    // Every queue something can come out on, declared before the gateway runs.
    let all_senders: Vec<(Kind, HerId)> = messages::senders(o.senders + 2)
        .into_iter()
        .filter(|(k, h)| *h != k.sender())
        .collect();
    let mut parties: Vec<HerId> = all_senders.iter().map(|(_, h)| *h).collect();
    parties.extend([ANSWERING, SILENT]);
    let conn = connect(&vhost.settings("soak-sender"))
        .await
        .map_err(|e| SoakError::Broker(e.to_string()))?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| SoakError::Broker(e.to_string()))?;
    Topology::default()
        .declare(&ch, &parties)
        .await
        .map_err(|e| SoakError::Broker(e.to_string()))?;
    let publisher = Publisher::open(&conn)
        .await
        .map_err(|e| SoakError::Broker(e.to_string()))?;

    let mut gateway = GatewayProcess::spawn_with(
        &o.exe,
        &config,
        dir,
        vec![
            (CLOCK_ENV.to_owned(), clock.env_value()),
            // The per-message overdue warnings would be most of the log; the counts are in /metrics.
            (
                "RUST_LOG".to_owned(),
                "info,helsemelding::gateway::server=error".to_owned(),
            ),
        ],
        false,
    )
    .map_err(|e| SoakError::Gateway(e.to_string()))?;
    wait_ready(&mut gateway, port).await?;
    let pid = gateway
        .pid()
        .ok_or_else(|| SoakError::Gateway("no process id".into()))?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let problems: Arc<Mutex<Vec<String>>> = Arc::default();
    let (answer_tx, answer_rx) = mpsc::unbounded_channel();
    let mut background = JoinSet::new();
    let mut queues: Vec<(String, Queue)> = parties
        .iter()
        .map(|h| (async_queue(*h), Queue::Inbox(*h)))
        .collect();
    queues.extend(parties.iter().map(|h| (error_queue(*h), Queue::Refused)));
    queues.push((DEAD_LETTER_QUEUE.to_owned(), Queue::Refused));
    let drain_conn = Arc::new(
        connect(&vhost.settings("soak-drain"))
            .await
            .map_err(|e| SoakError::Broker(e.to_string()))?,
    );
    for (q, kind) in queues {
        background.spawn(drain(
            drain_conn.clone(),
            q,
            kind,
            ledger.clone(),
            answer_tx.clone(),
            problems.clone(),
        ));
    }
    drop(answer_tx);
    let stale_refreshed = Arc::new(AtomicU64::new(0));
    background.spawn(rotate_crls(
        server.clone(),
        ca.clone(),
        clock,
        port,
        first_next,
        stale_refreshed.clone(),
        problems.clone(),
    ));
    background.spawn(traffic::answer(
        publisher.clone(),
        home,
        clock,
        answer_rx,
        ledger.clone(),
        problems.clone(),
    ));

    let plan = Arc::new(traffic::Plan {
        messages: o.messages,
        senders: all_senders,
        signers,
        size: o.size,
        answer_every: o.answer_every,
        clock,
    });
    let (signed_tx, signed_rx) = mpsc::channel(1024);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let signing = std::thread::spawn(move || traffic::sign(plan, threads, signed_tx));
    let publishing = tokio::spawn(traffic::publish(
        publisher,
        signed_rx,
        ledger.clone(),
        1024,
        4096,
    ));

    let loadavg_start = crate::bench::loadavg();
    let started = Instant::now();
    let retention_wall = (RETENTION / clock.factor).as_seconds_f64();
    let state = dir.join("state");
    let mut samples: Vec<Sample> = Vec::new();
    let (mut last_progress, mut last_count) = (Instant::now(), 0u64);
    let mut load_end: Option<f64> = None;
    let mut failure: Option<String> = None;
    let mut next_sample = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if Instant::now() < next_sample {
            continue;
        }
        next_sample += o.sample_every;
        if let Some(status) = gateway.exited() {
            failure = Some(format!(
                "the gateway exited with {status}:\n{}",
                gateway.stderr_tail(20)
            ));
            break;
        }
        let tally = ledger.lock().unwrap_or_else(|p| p.into_inner()).tally();
        let metrics = crate::bench::gateway::scrape(port)
            .await
            .unwrap_or_default();
        let mut s = Sample {
            t: started.elapsed().as_secs_f64(),
            gateway_time: helsemelding::ids::rfc3339(traffic::gateway_now(&clock)),
            load: load_end.is_none(),
            ..Sample::default()
        };
        sample::fill(&mut s, pid, &state, &metrics, &tally, CA_NAME);
        progress(&s);
        let count = tally.delivered + tally.apprecs_forwarded + s.overdue + s.pruned;
        let (overdue, pruned) = (s.overdue, s.pruned);
        samples.push(s);
        if count != last_count {
            (last_count, last_progress) = (count, Instant::now());
        }
        if load_end.is_none() {
            let all_in = publishing.is_finished()
                && tally.published as usize == o.messages
                && tally.outstanding == 0
                && tally.apprecs_outstanding == 0;
            if all_in {
                load_end = Some(started.elapsed().as_secs_f64());
            } else if publishing.is_finished() && tally.published as usize != o.messages {
                failure = Some(format!(
                    "publishing stopped after {} of {} messages",
                    tally.published, o.messages
                ));
                break;
            }
        } else if overdue >= tally.published.saturating_sub(tally.apprecs_sent)
            && pruned >= tally.published
            && stale_refreshed.load(Ordering::Relaxed) >= 1
        {
            // Every unanswered message reported overdue, every record pruned past retention, and
            // at least one CRL turned stale and was refreshed.
            break;
        }
        if last_progress.elapsed() > o.stall {
            failure = Some(format!(
                "no progress for {:?} ({})",
                o.stall,
                if load_end.is_none() {
                    "load"
                } else {
                    "overdue, pruning or the CRL cycle"
                }
            ));
            break;
        }
    }
    if failure.is_some() {
        // A stalled publisher may wait for ever; its end closes the signing threads' channel.
        publishing.abort();
    }
    let published = match publishing.await {
        Ok(r) => r,
        Err(e) => Err(SoakError::Broker(format!("publisher: {e}"))),
    };
    let _ = signing.join();
    background.abort_all();
    let stopped = gateway.terminate(Duration::from_secs(60)).await;
    let loadavg_end = crate::bench::loadavg();
    let records_left = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            helsemelding::store::DeliveryStore::open_read_only(&state).and_then(|s| s.records())
        })
        .await
        .ok()
        .and_then(|r| r.ok())
    };
    let tally = ledger.lock().unwrap_or_else(|p| p.into_inner()).tally();
    let mut found: Vec<String> = ledger
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .problems
        .clone();
    found.extend(
        problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .take(20)
            .cloned(),
    );
    if let Some(f) = failure {
        found.push(f);
    }
    if let Err(e) = published {
        found.push(format!("publishing: {e}"));
    }
    if let Err(e) = stopped {
        found.push(format!("stopping the gateway: {e}"));
    }
    let load_s = load_end.unwrap_or(started.elapsed().as_secs_f64());
    let warm_up = (2.0 * retention_wall).max(o.sample_every.as_secs_f64() * 3.0);
    let verdict = sample::verdict(
        &samples,
        &tally,
        stale_refreshed.load(Ordering::Relaxed),
        records_left,
        (warm_up, retention_wall),
        found,
    );
    Ok(SoakReport {
        messages: o.messages,
        senders: o.senders,
        clock_speed: o.clock_speed,
        xml_bytes: o.size,
        apprec_timeout_h: APPREC_TIMEOUT.whole_hours(),
        retention_h: RETENTION.whole_hours(),
        load_s,
        rate: tally.delivered as f64 / load_s.max(0.001),
        loadavg_start,
        loadavg_end,
        tally,
        samples,
        verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_set_in_their_own_section_only() {
        let toml =
            "[console]\nrefresh = \"5s\"\n[revocation]\n# refresh = \"x\"\nrefresh = \"1h\"\n";
        let out = set_key(toml, "revocation", "refresh", "\"2s\"").unwrap();
        assert_eq!(
            out,
            "[console]\nrefresh = \"5s\"\n[revocation]\n# refresh = \"x\"\nrefresh = \"2s\"\n"
        );
        assert!(set_key(toml, "policy", "retention", "\"1d\"").is_err());
    }
}
