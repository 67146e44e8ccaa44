//! The chaos scenarios, and [`Run`]: one gateway child process in a vhost and state directory of
//! its own, fed by a confirmed sender and drained like the parties' EHR systems would.
//!
//! Every scenario follows the same course: sign the batch, start the gateway, start draining,
//! publish the batch as a stream while the fault is inflicted, wait until every confirmed message
//! has come out where it belongs and the intake is empty, stop the gateway with SIGTERM (it must
//! exit 0 and leave nothing unacked), and count ([`super::ledger::figures`]).
//!
//! Faults: `kill9` (`kill -9` at random moments, seeded), `close-connection` (`rabbitmqctl
//! close_connection` on the gateway's connections), `reject-publish` (a recipient queue limited by
//! a policy `max-length` + `overflow=reject-publish`, drained only later), `broker-restart`
//! (`stop_app`/`start_app`, then a hard `stop` and `rabbitmq-server -detached`) and `alarm` (memory
//! and disk alarms). The last two disturb everybody on the broker: never in the default set.
//! `disk-full` puts the gateway's state directory on a small tmpfs ([`super::disk`], needs root)
//! and fills it while messages flow, then frees it: the gateway must hold its messages unacked
//! while its delivery store cannot be written and carry on by itself afterwards.
//! Failure: [`ChaosError`] when a run cannot be set up or the gateway will not run; a run that
//! loses messages is not an error but a [`Report`] whose figures say so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::disk::SmallDisk;
use super::ledger::{figures, Drain, Figures, Ledger};
use super::process::GatewayProcess;
use super::traffic::{batch, send, Confirmed, Outgoing, SendPlan};
use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::{async_queue, error_queue, DEAD_LETTER_QUEUE, INBOUND_QUEUE};
use helsemelding::config::scratch::write_config;
use helsemelding::gateway::crash::CrashPoint;

/// A scenario of `helsemelding-lab chaos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// `kill -9` of the gateway, restarted each time: a third at random moments from outside, the
    /// rest dealt by the gateway itself between publish and commit and between commit and ack.
    Kill9,
    /// `rabbitmqctl close_connection` on the gateway's connections, repeatedly.
    CloseConnection,
    /// A recipient queue refusing messages (`x-overflow=reject-publish`) until it is drained.
    RejectPublish,
    /// `stop_app`/`start_app` and a hard stop/start of the broker (disturbs everybody).
    BrokerRestart,
    /// A memory alarm and a disk alarm on the broker (disturbs everybody).
    Alarm,
    /// The gateway's own state disk full (ENOSPC) for a while, then freed (needs root: tmpfs).
    DiskFull,
    /// Three instances on PostgreSQL and a 3-node broker cluster; `kill -9` of one instance after
    /// another, each restarted ([`super::cluster`]).
    ClusterKill9,
    /// Three instances on PostgreSQL and a 3-node broker cluster; a broker node some instances are
    /// on is stopped and started again ([`super::cluster`]).
    ClusterNodeStop,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Kill9 => "kill9",
            Scenario::CloseConnection => "close-connection",
            Scenario::RejectPublish => "reject-publish",
            Scenario::BrokerRestart => "broker-restart",
            Scenario::Alarm => "alarm",
            Scenario::DiskFull => "disk-full",
            Scenario::ClusterKill9 => "cluster-kill9",
            Scenario::ClusterNodeStop => "cluster-node-stop",
        }
    }
}

/// What a run is made of.
#[derive(Debug, Clone)]
pub struct Options {
    /// The binary whose `serve` runs the gateway (`helsemelding-lab`: crash points need it).
    pub exe: PathBuf,
    /// The repository root: `config/`, `fixtures/`.
    pub base: PathBuf,
    /// The installed official schemas.
    pub schemas: PathBuf,
    /// Messages per scenario.
    pub messages: usize,
    /// Faults per scenario (kills, connection closes).
    pub faults: u32,
    /// Seed of the random moments.
    pub seed: u64,
    /// How long to wait for everything to come out once the faults are over.
    pub settle: Duration,
}

/// Why a scenario could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("setting up: {0}")]
    Setup(String),
    #[error("the gateway {0}")]
    Gateway(String),
    #[error("rabbitmqctl {0}")]
    Broker(String),
}

/// The outcome of one scenario.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: Scenario,
    pub figures: Figures,
    /// The final SIGTERM ended in exit code 0 and left no message unacked in the intake.
    pub graceful_stop: Result<(), String>,
    /// What happened on the way (faults inflicted, retries seen, time taken).
    pub notes: Vec<String>,
    /// The scenario's directory (kept when the run failed: config, state, gateway output).
    pub dir: PathBuf,
    /// `kill9` only: where the kills fell.
    pub kills: Option<Kills>,
}

/// Where the kills of a `kill9` run fell.
#[derive(Debug, Clone, Default)]
pub struct Kills {
    /// `kill -9` from outside at a random moment.
    pub outside: u32,
    /// Of those, how many came while messages were coming out.
    pub mid_flight: u32,
    /// Dealt by the gateway itself after `Routed` was handed to the store, before publishing.
    pub record_publish: u32,
    /// Dealt by the gateway itself after every copy was confirmed, before `Delivered` was recorded.
    pub publish_commit: u32,
    /// Dealt by the gateway itself after `Delivered` was recorded, before the ack.
    pub commit_ack: u32,
    /// Armed restarts that did not reach their point in time (killed from outside instead).
    pub missed: u32,
    /// Redeliveries the gateway found settled already (routing log `duplicate`): the trace of a
    /// crash between commit and ack.
    pub settled_redeliveries: usize,
}

impl Report {
    /// Nothing lost, no second AppRec, nothing misplaced, no inversion, and a clean final stop.
    pub fn passed(&self) -> bool {
        self.figures.ok() && self.graceful_stop.is_ok()
    }
}

/// Every queue the gateway can put something on: the parties' `_async` and `_error`, dead letters.
pub fn output_queues(config: &Path) -> Result<Vec<String>, ChaosError> {
    let (c, register) = helsemelding::config::check(config).map_err(|ps| {
        ChaosError::Setup(
            ps.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let mut hers: Vec<_> = register.parties().iter().map(|p| p.her_id).collect();
    if !hers.contains(&c.gateway.her_id) {
        hers.push(c.gateway.her_id);
    }
    let mut q: Vec<String> = hers
        .iter()
        .flat_map(|h| [async_queue(*h), error_queue(*h)])
        .collect();
    q.push(DEAD_LETTER_QUEUE.to_owned());
    Ok(q)
}

/// One gateway child process in its own vhost and state directory, with a drain on its output.
pub struct Run {
    pub vhost: TestVhost,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub gateway: GatewayProcess,
    pub ledger: Ledger,
    /// The small disk under the state directory (disk-full), unmounted when the run is dropped.
    pub state_disk: Option<SmallDisk>,
    drains: Vec<Drain>,
    held: Vec<String>,
    queues: Vec<String>,
}

impl Run {
    /// Creates the vhost and directory (with the state directory on a tmpfs of `state_disk` bytes
    /// when given), lets `prepare(vhost name, vhost URL)` declare things before the gateway starts,
    /// starts the gateway and waits until it has declared its topology, and starts draining every
    /// output queue except `held`.
    pub async fn start<F, Fut>(
        o: &Options,
        label: &str,
        held: &[String],
        state_disk: Option<u64>,
        prepare: F,
    ) -> Result<Run, ChaosError>
    where
        F: FnOnce(String, String) -> Fut,
        Fut: std::future::Future<Output = Result<(), ChaosError>>,
    {
        let vhost = TestVhost::create()
            .await
            .map_err(|e| ChaosError::Broker(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!(
            "hm-chaos-{label}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ChaosError::Setup(format!("{}: {e}", dir.display())))?;
        let config = write_config(&o.base, &dir, vhost.url(), &o.schemas)
            .map_err(|e| ChaosError::Setup(e.to_string()))?;
        let queues = output_queues(&config)?;
        let state_disk = match state_disk {
            Some(bytes) => Some(
                SmallDisk::mount(&dir.join("state"), bytes)
                    .map_err(|e| ChaosError::Setup(e.to_string()))?,
            ),
            None => None,
        };
        prepare(vhost.name().to_owned(), vhost.url().to_owned()).await?;
        let gateway = GatewayProcess::spawn(&o.exe, &config, &dir)
            .map_err(|e| ChaosError::Gateway(e.to_string()))?;
        let mut run = Run {
            vhost,
            dir,
            config,
            gateway,
            ledger: Ledger::default(),
            state_disk,
            drains: Vec::new(),
            held: held.to_vec(),
            queues,
        };
        run.wait_ready(Duration::from_secs(60)).await?;
        let drained: Vec<String> = run
            .queues
            .iter()
            .filter(|q| !run.held.contains(q))
            .cloned()
            .collect();
        run.drains
            .push(Drain::spawn(run.vhost.url(), drained, run.ledger.clone()));
        Ok(run)
    }

    /// The broker URL of this run's vhost.
    pub fn url(&self) -> &str {
        self.vhost.url()
    }

    /// Waits until the gateway has declared its queues (it is up and consuming).
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), ChaosError> {
        let deadline = Instant::now() + within;
        let probe = async_queue(helsemelding::ids::HerId(82001));
        loop {
            if let Some(status) = self.gateway.exited() {
                return Err(ChaosError::Gateway(format!(
                    "exited with {status} while starting:\n{}",
                    self.gateway.stderr_tail(20)
                )));
            }
            if self.vhost.queue_len(&probe).await.ok().flatten().is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ChaosError::Gateway(format!(
                    "did not declare its queues within {within:?}:\n{}",
                    self.gateway.stderr_tail(20)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts draining the held queues too.
    pub fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        if !held.is_empty() {
            self.drains
                .push(Drain::spawn(self.vhost.url(), held, self.ledger.clone()));
        }
    }

    /// Messages ready in the intake (`None` if the broker cannot be asked right now).
    pub async fn intake_len(&self) -> Option<u32> {
        self.vhost.queue_len(INBOUND_QUEUE).await.ok().flatten()
    }

    /// Waits until `ledger.len()` exceeds `since` (the gateway is making progress), up to `within`.
    pub async fn progress_after(&self, since: usize, within: Duration) -> bool {
        self.ledger.grows_past(since, within).await
    }

    /// Waits until at least `must_send` messages of `msgs` are confirmed, every confirmed one has
    /// come out where it belongs, and the intake is empty — or `within` has passed; returns the
    /// figures at that moment.
    pub async fn wait_complete(
        &mut self,
        msgs: &[Outgoing],
        confirmed: &Confirmed,
        must_send: usize,
        within: Duration,
    ) -> Result<Figures, ChaosError> {
        let mut wait = CompletionWait::new(within);
        loop {
            if let Some(status) = self.gateway.exited() {
                return Err(ChaosError::Gateway(format!(
                    "exited by itself with {status}:\n{}",
                    self.gateway.stderr_tail(20)
                )));
            }
            let f = figures(msgs, confirmed, &self.ledger.snapshot());
            let intake_empty = self.intake_len().await == Some(0);
            if wait.over(&f, self.ledger.len(), must_send, intake_empty) {
                return Ok(f);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// SIGTERM to a gateway that is up (connected, so the stop exercises the running path):
    /// exit code 0 within `within`, and afterwards nothing of the intake left unacked (with the
    /// gateway gone, an unacked delivery would be back in the queue).
    pub async fn graceful_stop(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let conns = self.vhost.connections().await.unwrap_or_default();
            if conns.iter().any(|(name, _, props)| {
                name.contains("helsemelding serve") || props.contains("helsemelding serve")
            }) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the gateway did not connect before the stop:\n{}",
                    self.gateway.stderr_tail(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let status = self
            .gateway
            .terminate(within)
            .await
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!(
                "exited with {status} after SIGTERM:\n{}",
                self.gateway.stderr_tail(20)
            ));
        }
        match self.intake_len().await {
            Some(0) => Ok(()),
            Some(n) => Err(format!(
                "{n} message(s) back in {INBOUND_QUEUE} after the graceful stop"
            )),
            None => Err(format!("cannot read {INBOUND_QUEUE} after the stop")),
        }
    }

    /// Stops draining and deletes the vhost; the directory is removed when `keep_dir` is false.
    pub async fn finish(mut self, keep_dir: bool) {
        self.drains.clear();
        let _ = self.gateway.kill9();
        // Unmount before the directory goes (the kept directory then shows the state as it was
        // only when no small disk was used).
        self.state_disk = None;
        let _ = self.vhost.delete().await;
        if !keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// When the wait of [`Run::wait_complete`] is over, for one gateway or several.
pub(super) struct CompletionWait {
    deadline: Instant,
    last_len: usize,
    last_change: Instant,
}

impl CompletionWait {
    pub(super) fn new(within: Duration) -> Self {
        CompletionWait {
            deadline: Instant::now() + within,
            last_len: usize::MAX,
            last_change: Instant::now(),
        }
    }

    /// Everything is out (nothing lost, `must_send` sent, the intake empty), or nothing has come
    /// out for a while with the intake empty, or the time is up.
    pub(super) fn over(
        &mut self,
        f: &Figures,
        ledger_len: usize,
        must_send: usize,
        intake_empty: bool,
    ) -> bool {
        if ledger_len != self.last_len {
            (self.last_len, self.last_change) = (ledger_len, Instant::now());
        }
        if f.lost == 0 && f.sent >= must_send && intake_empty {
            return true;
        }
        // Nothing left to take and nothing more coming out for a while: what is missing now
        // will not come (the gateway retries a refused publish within 10 s).
        let stalled = f.sent >= must_send && intake_empty && self.last_change.elapsed() > STALL;
        stalled || Instant::now() > self.deadline
    }
}

async fn ctl(args: &[&str]) -> Result<String, ChaosError> {
    let out = tokio::process::Command::new(
        std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into()),
    )
    .args(args)
    .output()
    .await
    .map_err(|e| ChaosError::Broker(format!("{}: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(ChaosError::Broker(format!(
            "{}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How long nothing may come out, with the intake empty, before a wait gives up.
const STALL: Duration = Duration::from_secs(25);

/// The recipient queue the reject-publish scenario limits: home care, the copy recipient.
const LIMITED_QUEUE: &str = "81002_async";
/// Its limit: small, so it is full within the first copies.
const LIMITED_LENGTH: u32 = 3;

/// Declares `queue` exactly as the gateway does (durable quorum, no other arguments — so the
/// gateway's own declare is equivalent and succeeds) and limits it with a policy: `max-length`
/// with `overflow = reject-publish`, the way an operator limits a queue on a running broker.
async fn limit_queue(
    vhost: &str,
    url: &str,
    queue: &str,
    max_length: u32,
) -> Result<(), ChaosError> {
    let conn = helsemelding::amqp::connection::connect(
        &helsemelding::amqp::connection::AmqpSettings::new(url.to_owned(), "chaos-setup"),
    )
    .await
    .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| ChaosError::Setup(e.to_string()))?;
    helsemelding::amqp::topology::declare_quorum_queue(
        &ch,
        queue,
        lapin::types::FieldTable::default(),
    )
    .await
    .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let _ = conn.close(200, "declared".into()).await;
    let definition = format!("{{\"max-length\":{max_length},\"overflow\":\"reject-publish\"}}");
    ctl(&[
        "set_policy",
        "-p",
        vhost,
        "--apply-to",
        "queues",
        "chaos-limit",
        &format!("^{queue}$"),
        &definition,
    ])
    .await?;
    Ok(())
}

/// The size of the small state disk in the disk-full scenario: room for the delivery store of a
/// scenario with some to spare, so the disk is full only when the filler makes it so.
const STATE_DISK_BYTES: u64 = 64 << 20;

/// How often the gateway's diagnostics (in `dir`) contain `needle` so far.
pub(super) fn diagnostics(dir: &Path, needle: &str) -> usize {
    std::fs::read_to_string(dir.join("gateway.stderr"))
        .unwrap_or_default()
        .matches(needle)
        .count()
}

/// The gateway's diagnostic when its delivery store cannot be written, and when it can again.
const STORE_DOWN: &str = "delivery store cannot be written";
const STORE_UP: &str = "delivery store can be written again";

/// Runs one scenario end to end.
pub async fn run(scenario: Scenario, o: &Options) -> Result<Report, ChaosError> {
    if matches!(scenario, Scenario::ClusterKill9 | Scenario::ClusterNodeStop) {
        return super::cluster::run(scenario, o).await;
    }
    let started = Instant::now();
    let n = o.messages;
    let (base, tag) = (o.base.clone(), format!("{}-{:x}", scenario.name(), o.seed));
    let msgs =
        tokio::task::spawn_blocking(move || batch(&base, n, &tag, time::OffsetDateTime::now_utc()))
            .await
            .map_err(|e| ChaosError::Setup(e.to_string()))?
            .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let msgs = Arc::new(msgs);
    let held: Vec<String> = if scenario == Scenario::RejectPublish {
        vec![LIMITED_QUEUE.to_owned()]
    } else {
        Vec::new()
    };
    let state_disk = (scenario == Scenario::DiskFull).then_some(STATE_DISK_BYTES);
    let mut run = Run::start(
        o,
        scenario.name(),
        &held,
        state_disk,
        |vhost, url| async move {
            if scenario == Scenario::RejectPublish {
                limit_queue(&vhost, &url, LIMITED_QUEUE, LIMITED_LENGTH).await?;
            }
            Ok(())
        },
    )
    .await?;
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let confirmed = Confirmed::new(n);
    // A stream, not a burst: spread over roughly the time the faults take.
    // (kill9: restart, recovery, progress and a random delay take about 3.5 s per kill; close-connection
    // rounds take about 2.5 s: two rabbitmqctl calls and a random pause.)
    let pace = match scenario {
        Scenario::Kill9 => Duration::from_millis((3500 * u64::from(o.faults)) / n.max(1) as u64),
        Scenario::CloseConnection => {
            Duration::from_millis((2500 * u64::from(o.faults)) / n.max(1) as u64)
        }
        Scenario::BrokerRestart | Scenario::Alarm | Scenario::DiskFull => {
            Duration::from_millis(30_000 / n.max(1) as u64)
        }
        Scenario::RejectPublish => Duration::ZERO,
        // Never get here (run by super::cluster, above).
        Scenario::ClusterKill9 | Scenario::ClusterNodeStop => Duration::ZERO,
    };
    let plan = SendPlan {
        pace,
        ..SendPlan::default()
    };
    let sender = tokio::spawn(send(
        run.url().to_owned(),
        msgs.clone(),
        0..n,
        confirmed.clone(),
        plan,
    ));
    let mut notes = Vec::new();
    let mut kills = None;
    let faults = disturb(scenario, &mut run, o, &mut rng, &mut notes, &mut kills).await;
    let retried = sender.await.unwrap_or(0);
    if retried > 0 {
        notes.push(format!(
            "sender published {retried} unconfirmed message(s) again"
        ));
    }
    if let Err(e) = faults {
        run.finish(true).await;
        return Err(e);
    }
    // The gateway must be up for the rest (a fault may have left it down).
    if run.gateway.pid().is_none() || run.gateway.exited().is_some() {
        run.gateway
            .restart()
            .map_err(|e| ChaosError::Gateway(e.to_string()))?;
    }
    run.release_held();
    let waited = run.wait_complete(&msgs, &confirmed, n, o.settle).await;
    let graceful_stop = match &waited {
        Ok(_) => run.graceful_stop(Duration::from_secs(40)).await,
        Err(e) => Err(e.to_string()),
    };
    // Late copies (a duplicate published just before the stop) are counted too.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = run.ledger.snapshot();
    let mut figures = figures(&msgs, &confirmed, &seen);
    let log = std::fs::read_to_string(run.dir.join("routing.jsonl")).unwrap_or_default();
    super::ledger::confirmed_not_arrived(&mut figures, &msgs, &seen, &log);
    if figures.confirmed_not_arrived > 0 {
        notes.push(format!(
            "{} of the lost were logged as delivered (confirmed) by the gateway and never arrived",
            figures.confirmed_not_arrived
        ));
    }
    if let Some(k) = &mut kills {
        k.settled_redeliveries = super::ledger::settled_redeliveries(&log);
        notes.push(format!(
            "{} redelivered message(s) were found delivered already and acknowledged without sending anything again",
            k.settled_redeliveries
        ));
    }
    let b = diagnostics(&run.dir, "publish not confirmed; backing off");
    if b > 0 {
        notes.push(format!("gateway backed off and retried {b} publish(es)"));
    }
    notes.push(format!(
        "gateway started {} time(s); {:.1} s",
        run.gateway.starts,
        started.elapsed().as_secs_f64()
    ));
    let report = Report {
        scenario,
        figures,
        graceful_stop,
        notes,
        kills,
        dir: run.dir.clone(),
    };
    let keep = !report.passed() || std::env::var_os("HELSEMELDING_CHAOS_KEEP").is_some();
    run.finish(keep).await;
    Ok(report)
}

/// Inflicts the scenario's faults while the sender streams; notes what was done.
async fn disturb(
    scenario: Scenario,
    run: &mut Run,
    o: &Options,
    rng: &mut fastrand::Rng,
    notes: &mut Vec<String>,
    kills: &mut Option<Kills>,
) -> Result<(), ChaosError> {
    match scenario {
        Scenario::Kill9 => {
            // Every fourth kill comes from outside at a random moment; the others are dealt by the
            // gateway itself at one of the three crash points of the protocol (gateway::crash),
            // so each is hit in every run, not only when luck has it.
            let cycle = [
                None,
                Some(CrashPoint::RecordPublish),
                Some(CrashPoint::PublishCommit),
                Some(CrashPoint::CommitAck),
            ];
            let mut k = Kills::default();
            for i in 0..o.faults as usize {
                match cycle[i % cycle.len()] {
                    None => {
                        // A random moment while the gateway is at work: after it has produced
                        // something since its (re)start, plus a random delay.
                        let since = run.ledger.len();
                        if run.progress_after(since, Duration::from_secs(5)).await {
                            k.mid_flight += 1;
                        }
                        tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
                        run.gateway
                            .kill9()
                            .map_err(|e| ChaosError::Gateway(format!("kill -9: {e}")))?;
                        k.outside += 1;
                    }
                    Some(point) => {
                        // Started armed at the end of the last round: wait for it to kill itself.
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while run.gateway.exited().is_none() && Instant::now() < deadline {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        if run.gateway.exited().is_some() {
                            match point {
                                CrashPoint::RecordPublish => k.record_publish += 1,
                                CrashPoint::PublishCommit => k.publish_commit += 1,
                                CrashPoint::CommitAck => k.commit_ack += 1,
                            }
                        } else {
                            k.missed += 1;
                        }
                        run.gateway
                            .kill9()
                            .map_err(|e| ChaosError::Gateway(format!("kill -9: {e}")))?;
                    }
                }
                tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
                let next = cycle[(i + 1) % cycle.len()].filter(|_| i + 1 < o.faults as usize);
                let restarted = match next {
                    Some(point) => {
                        let at = format!("{}:{}", point.name(), rng.u64(1..=20));
                        run.gateway.restart_armed(&at)
                    }
                    None => run.gateway.restart(),
                };
                restarted.map_err(|e| ChaosError::Gateway(format!("restart: {e}")))?;
            }
            notes.push(format!(
                "{} kill -9: {} from outside at random moments ({} while messages were coming out), \
                 {} dealt between record and publish, {} between publish and commit, {} between commit and ack{}",
                o.faults,
                k.outside,
                k.mid_flight,
                k.record_publish,
                k.publish_commit,
                k.commit_ack,
                if k.missed > 0 { format!(", {} armed restart(s) never reached their point", k.missed) } else { String::new() }
            ));
            *kills = Some(k);
        }
        Scenario::CloseConnection => {
            let mut closed = 0;
            for _ in 0..o.faults {
                tokio::time::sleep(Duration::from_millis(rng.u64(200..1100))).await;
                closed += run
                    .vhost
                    .close_connections("helsemelding serve", "chaos: close-connection")
                    .await
                    .map_err(|e| ChaosError::Broker(e.to_string()))?;
            }
            notes.push(format!(
                "{closed} gateway connection(s) closed by rabbitmqctl in {} round(s)",
                o.faults
            ));
        }
        Scenario::RejectPublish => {
            // Let the limited queue fill up and the gateway retry against it for a while.
            tokio::time::sleep(Duration::from_secs(12)).await;
            let len = run
                .vhost
                .queue_len(LIMITED_QUEUE)
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
            // Independent of the drain: how many publishes to that queue the broker had confirmed
            // to the gateway by now (its routing log), against what the queue holds.
            let log = std::fs::read_to_string(run.dir.join("routing.jsonl")).unwrap_or_default();
            let her = LIMITED_QUEUE.trim_end_matches("_async");
            let confirmed = super::ledger::confirmed_deliveries(&log)
                .iter()
                .filter(|(_, h)| h == her)
                .count();
            notes.push(format!(
                "{LIMITED_QUEUE} held {len} message(s) (limit {LIMITED_LENGTH}, reject-publish) before it was drained; the broker had confirmed {confirmed} to the gateway"
            ));
        }
        Scenario::BrokerRestart => {
            let since = run.ledger.len();
            run.progress_after(since, Duration::from_secs(20)).await;
            ctl(&["stop_app"]).await?;
            tokio::time::sleep(Duration::from_secs(3)).await;
            ctl(&["start_app"]).await?;
            ctl(&["await_startup"]).await?;
            notes.push("stop_app / start_app".into());
            let since = run.ledger.len();
            run.progress_after(since, Duration::from_secs(60)).await;
            ctl(&["stop"]).await?;
            let started = tokio::process::Command::new("rabbitmq-server")
                .arg("-detached")
                .status()
                .await
                .map_err(|e| ChaosError::Broker(format!("rabbitmq-server -detached: {e}")))?;
            if !started.success() {
                return Err(ChaosError::Broker(format!(
                    "rabbitmq-server -detached exited with {started}"
                )));
            }
            // await_startup needs the node process to be there first.
            let deadline = Instant::now() + Duration::from_secs(120);
            while ctl(&["await_startup", "--timeout", "10"]).await.is_err() {
                if Instant::now() > deadline {
                    return Err(ChaosError::Broker(
                        "the broker did not come back within 120 s".into(),
                    ));
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            notes.push("stop / rabbitmq-server -detached".into());
        }
        Scenario::Alarm => {
            // Restore exactly what the broker had, read from `rabbitmqctl status` first.
            let status = ctl(&["status"]).await?;
            let (memory, disk) = alarm_settings(&status).ok_or_else(|| {
                ChaosError::Broker(
                    "cannot read the memory and disk watermarks from rabbitmqctl status".into(),
                )
            })?;
            let since = run.ledger.len();
            run.progress_after(since, Duration::from_secs(20)).await;
            ctl(&["set_vm_memory_high_watermark", "0.0001"]).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            ctl(&["set_vm_memory_high_watermark", &memory]).await?;
            notes.push(format!(
                "memory alarm for 5 s (watermark 0.0001, restored to {memory})"
            ));
            let since = run.ledger.len();
            run.progress_after(since, Duration::from_secs(20)).await;
            ctl(&["set_disk_free_limit", "1000GB"]).await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            ctl(&["set_disk_free_limit", &disk]).await?;
            notes.push(format!(
                "disk alarm for 5 s (limit 1000GB, restored to {disk} bytes)"
            ));
        }
        Scenario::ClusterKill9 | Scenario::ClusterNodeStop => {
            return Err(ChaosError::Setup(format!(
                "{} runs on a cluster of its own (chaos::cluster), not in a single-gateway run",
                scenario.name()
            )));
        }
        Scenario::DiskFull => {
            let since = run.ledger.len();
            run.progress_after(since, Duration::from_secs(20)).await;
            let disk = run
                .state_disk
                .as_ref()
                .ok_or_else(|| ChaosError::Setup("no small state disk".into()))?;
            let filled = disk
                .fill()
                .map_err(|e| ChaosError::Setup(format!("filling the state disk: {e}")))?;
            // The gateway meets the full disk at its next commit that needs room.
            let deadline = Instant::now() + Duration::from_secs(30);
            while diagnostics(&run.dir, STORE_DOWN) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let met = diagnostics(&run.dir, STORE_DOWN) > 0;
            // Held for a while: the sender goes on publishing into the intake meanwhile.
            let during = run.ledger.len();
            tokio::time::sleep(Duration::from_secs(8)).await;
            let came_out = run.ledger.len() - during;
            disk.free()
                .map_err(|e| ChaosError::Setup(format!("freeing the state disk: {e}")))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            while diagnostics(&run.dir, STORE_UP) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            notes.push(format!(
                "state disk filled ({} MiB of filler) for 8 s: the gateway {} it, {came_out} output(s) meanwhile; {}",
                filled >> 20,
                if met { "met" } else { "did NOT meet" },
                if diagnostics(&run.dir, STORE_UP) > 0 { "it recovered by itself after the disk was freed" } else { "it did NOT report recovery" }
            ));
        }
    }
    Ok(())
}

/// The memory watermark (a fraction) and the disk free limit (bytes) from `rabbitmqctl status`
/// ("Memory high watermark setting: 0.4 of available memory, …", "Low free disk space
/// watermark: 0.05 gb"), as arguments for `set_vm_memory_high_watermark` / `set_disk_free_limit`.
fn alarm_settings(status: &str) -> Option<(String, String)> {
    let after = |label: &str| {
        status
            .lines()
            .find_map(|l| l.trim().strip_prefix(label).map(str::trim))
    };
    let memory = after("Memory high watermark setting:")?;
    let memory = memory
        .strip_suffix("of available memory")
        .or_else(|| memory.split(" of available memory").next())?
        .trim();
    let fraction: f64 = memory.parse().ok()?;
    let disk = after("Low free disk space watermark:")?;
    let (value, unit) = disk.split_once(' ')?;
    let value: f64 = value.parse().ok()?;
    let factor = match unit.trim() {
        "gb" => 1e9,
        "mb" => 1e6,
        "kb" => 1e3,
        "bytes" | "b" => 1.0,
        _ => return None,
    };
    Some((
        fraction.to_string(),
        format!("{}", (value * factor).round() as u64),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alarm_settings_are_read_from_rabbitmqctl_status() {
        let status = "Alarms\n\n(none)\n\nMemory high watermark setting: 0.4 of available memory, computed to: 10.1106 gb\n\nFree Disk Space\n\nLow free disk space watermark: 0.05 gb\nFree disk space: 52.7245 gb\n";
        assert_eq!(
            alarm_settings(status),
            Some(("0.4".into(), "50000000".into()))
        );
        assert_eq!(
            alarm_settings("Memory high watermark setting: 0.4 of available memory"),
            None,
            "no disk line"
        );
        assert_eq!(
            alarm_settings(
                "Memory high watermark setting: lots\nLow free disk space watermark: 1 gb"
            ),
            None
        );
    }
}
