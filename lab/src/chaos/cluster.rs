//! The cluster scenarios: three gateway instances on one PostgreSQL database (a scratch database
//! of the run) and a real 3-node RabbitMQ cluster ([`crate::cluster`]), with `[amqp] urls` listing
//! every node (each instance starts on a node of its own) and the intake split into
//! [`PARTITIONS`] partition queues; traffic flows while
//!
//! - `cluster-kill9`: one instance after another is killed with `kill -9` and started again — its
//!   partitions move to the others (single-active-consumer) and back;
//! - `cluster-node-stop`: the broker node some instances are connected to is stopped
//!   (`rabbitmqctl stop`) and started again — they reconnect to the next node of their list, the
//!   quorum queues keep their majority.
//!
//! The sender and the drains (the parties' EHR systems) stay on node 1, which is never stopped.
//! The same figures as every scenario (lost, duplicates, second AppRecs, inversions), from the
//! same [`super::ledger`].
//!
//! Input: [`super::scenario::Options`]. Output: a [`Report`]. Failure: [`ChaosError`] when the
//! cluster, the database or a gateway cannot be set up.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::ledger::{figures, Drain, Figures, Ledger};
use super::process::GatewayProcess;
use super::scenario::{
    diagnostics, output_queues, ChaosError, CompletionWait, Options, Report, Scenario,
};
use super::traffic::{batch, send, Confirmed, Outgoing, SendPlan};
use crate::cluster::{Cluster, ClusterError};
use helsemelding::amqp::topology::Topology;
use helsemelding::config::scratch::write_config;

/// Gateway instances.
pub const INSTANCES: usize = 3;

/// Partition queues of the intake (`[amqp] partitions`): more than instances, so that each
/// instance is active on two and a dead one's move to the living.
pub const PARTITIONS: u16 = 6;

/// The server's administrative database (every machine of the project runs it, DESIGN §6).
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The node the cluster-node-stop scenario stops first: node 2 (index 1); node 1 carries the
/// sender and the drains.
const STOPPED_NODES: [usize; 2] = [1, 2];

fn broker(e: ClusterError) -> ChaosError {
    ChaosError::Broker(e.to_string())
}

/// The intake queues: `gateway_inbound` and its partitions `gateway_inbound.1` … `.K`.
pub fn intake_queues(partitions: u16) -> Vec<String> {
    Topology {
        partitions,
        ..Topology::default()
    }
    .intake_queues()
}

/// The partitions instance `i` of `n` subscribes to at once (the others after the standby delay):
/// every `n`-th, so each instance is active on its own share when all are up.
fn preferred(i: usize, n: usize, partitions: u16) -> Vec<u16> {
    (0..=partitions).filter(|p| *p as usize % n == i).collect()
}

/// Instance `i`'s configuration: the shipped one with `urls` (its own node first), PostgreSQL,
/// and the partitions.
fn write_instance_config(
    o: &Options,
    dir: &Path,
    urls: &[String],
    store_url: &str,
    i: usize,
) -> Result<PathBuf, ChaosError> {
    let config = write_config(&o.base, dir, &urls[0], &o.schemas)
        .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let text = std::fs::read_to_string(&config)
        .map_err(|e| ChaosError::Setup(format!("{}: {e}", config.display())))?;
    let mut amqp = format!(
        "urls = [{}]",
        urls.iter()
            .map(|u| format!("{u:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if PARTITIONS > 0 {
        amqp.push_str(&format!(
            "\npartitions = {PARTITIONS}\nprefer_partitions = {:?}",
            preferred(i, INSTANCES, PARTITIONS)
        ));
    }
    let url_line = format!("url = {:?}", urls[0]);
    if !text.contains(&url_line) {
        return Err(ChaosError::Setup(format!(
            "{}: no `{url_line}` line to replace",
            config.display()
        )));
    }
    // The shipped max_inflight_bytes is below what K + 1 intake queues need (check-config says
    // so): left out, the default is fitted to the partitions.
    let text: String = text
        .lines()
        .filter(|l| PARTITIONS == 0 || !l.trim_start().starts_with("max_inflight_bytes"))
        .map(|l| format!("{l}\n"))
        .collect();
    let text = text.replacen(&url_line, &amqp, 1).replacen(
        "backend = \"redb\"",
        &format!("backend = \"postgres\"\nurl = {store_url:?}"),
        1,
    );
    std::fs::write(&config, text)
        .map_err(|e| ChaosError::Setup(format!("{}: {e}", config.display())))?;
    Ok(config)
}

/// What a cluster run is made of while it runs.
struct ClusterRun {
    cluster: Arc<Mutex<Option<Cluster>>>,
    /// The URL of node 1 (the sender's, the drains', the probes').
    url: String,
    dirs: Vec<PathBuf>,
    gateways: Vec<GatewayProcess>,
    ledger: Ledger,
    _drain: Drain,
}

impl ClusterRun {
    /// Messages ready in all intake queues (`None` if the broker cannot be asked right now).
    async fn intake_len(&self) -> Option<u32> {
        let mut settings = helsemelding::amqp::AmqpSettings::new(self.url.clone(), "chaos-probe");
        settings.heartbeat = Duration::from_secs(5);
        let conn = helsemelding::amqp::connect(&settings).await.ok()?;
        let mut total = 0;
        for q in intake_queues(PARTITIONS) {
            let ch = conn.create_channel().await.ok()?;
            let opts = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let d = ch
                .queue_declare(q.as_str().into(), opts, lapin::types::FieldTable::default())
                .await
                .ok()?;
            total += d.message_count();
            let _ = ch.close(200, "probed".into()).await;
        }
        let _ = conn.close(200, "probe done".into()).await;
        Some(total)
    }

    /// Runs `f` on the cluster on a blocking thread (rabbitmqctl calls take seconds).
    async fn with_cluster<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Cluster) -> Result<T, ClusterError> + Send + 'static,
    ) -> Result<T, ChaosError> {
        let cluster = self.cluster.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = cluster
                .lock()
                .map_err(|_| ChaosError::Broker("cluster lock poisoned".into()))?;
            let c = guard
                .as_mut()
                .ok_or_else(|| ChaosError::Broker("the cluster is gone".into()))?;
            f(c).map_err(broker)
        })
        .await
        .map_err(|e| ChaosError::Broker(e.to_string()))?
    }

    /// Waits until every instance has logged a session up since its last start.
    async fn wait_sessions(&mut self, within: Duration) -> Result<(), ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            let mut all = true;
            for (g, dir) in self.gateways.iter_mut().zip(&self.dirs) {
                if let Some(status) = g.exited() {
                    return Err(ChaosError::Gateway(format!(
                        "in {} exited with {status} while starting:\n{}",
                        dir.display(),
                        g.stderr_tail(20)
                    )));
                }
                if diagnostics(dir, "AMQP session up") < g.starts as usize {
                    all = false;
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ChaosError::Gateway(format!(
                    "instances did not all connect within {within:?}:\n{}",
                    self.gateways
                        .iter()
                        .map(|g| g.stderr_tail(8))
                        .collect::<Vec<_>>()
                        .join("\n---\n")
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// As [`super::scenario::Run::wait_complete`], over all instances and intake queues.
    async fn wait_complete(
        &mut self,
        msgs: &[Outgoing],
        confirmed: &Confirmed,
        must_send: usize,
        within: Duration,
    ) -> Result<Figures, ChaosError> {
        let mut wait = CompletionWait::new(within);
        loop {
            for g in &mut self.gateways {
                if let Some(status) = g.exited() {
                    return Err(ChaosError::Gateway(format!(
                        "exited by itself with {status}:\n{}",
                        g.stderr_tail(20)
                    )));
                }
            }
            let f = figures(msgs, confirmed, &self.ledger.snapshot());
            let intake_empty = self.intake_len().await == Some(0);
            if wait.over(&f, self.ledger.len(), must_send, intake_empty) {
                return Ok(f);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// SIGTERM to every instance: each must exit 0; then nothing may be back in the intake.
    async fn graceful_stop(&mut self, within: Duration) -> Result<(), String> {
        for (i, g) in self.gateways.iter_mut().enumerate() {
            let status = g
                .terminate(within)
                .await
                .map_err(|e| format!("instance {}: {e}", i + 1))?;
            if !status.success() {
                return Err(format!(
                    "instance {} exited with {status} after SIGTERM:\n{}",
                    i + 1,
                    g.stderr_tail(20)
                ));
            }
        }
        match self.intake_len().await {
            Some(0) => Ok(()),
            Some(n) => Err(format!(
                "{n} message(s) back in the intake after the graceful stop"
            )),
            None => Err("cannot read the intake after the stop".into()),
        }
    }

    /// Every instance's routing log, one after the other.
    fn routing_logs(&self) -> String {
        self.dirs
            .iter()
            .map(|d| std::fs::read_to_string(d.join("routing.jsonl")).unwrap_or_default())
            .collect()
    }
}

/// Runs a cluster scenario end to end: cluster, database, three instances, traffic, faults,
/// figures; everything is taken down afterwards (kept on failure: the run's directory).
pub async fn run(scenario: Scenario, o: &Options) -> Result<Report, ChaosError> {
    let started = Instant::now();
    let root = std::env::temp_dir().join(format!(
        "hm-chaos-{}-{}",
        scenario.name(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    ));
    std::fs::create_dir_all(&root)
        .map_err(|e| ChaosError::Setup(format!("{}: {e}", root.display())))?;
    let parent = root.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&parent))
        .await
        .map_err(|e| ChaosError::Broker(e.to_string()))?
        .map_err(broker)?;
    let cluster_up = started.elapsed();
    let (db, store_url) =
        helsemelding::store::pg::create_scratch_database(PG_ADMIN_URL, "hm_chaos")
            .await
            .map_err(|e| ChaosError::Setup(format!("PostgreSQL: {e}")))?;
    let outcome = run_on(scenario, o, cluster, &root, &store_url, cluster_up, started).await;
    if let Err(e) = helsemelding::store::pg::drop_scratch_database(PG_ADMIN_URL, &db).await {
        eprintln!("chaos: dropping the database {db}: {e}");
    }
    let keep = match &outcome {
        Ok(r) => !r.passed(),
        Err(_) => true,
    } || std::env::var_os("HELSEMELDING_CHAOS_KEEP").is_some();
    if !keep {
        let _ = std::fs::remove_dir_all(&root);
    }
    outcome
}

async fn run_on(
    scenario: Scenario,
    o: &Options,
    cluster: Cluster,
    root: &Path,
    store_url: &str,
    cluster_up: Duration,
    started: Instant,
) -> Result<Report, ChaosError> {
    let node_urls = cluster.urls("%2f");
    let url = node_urls[0].clone();
    let cluster = Arc::new(Mutex::new(Some(cluster)));
    let n = o.messages;
    let (base, tag) = (o.base.clone(), format!("{}-{:x}", scenario.name(), o.seed));
    let msgs =
        tokio::task::spawn_blocking(move || batch(&base, n, &tag, time::OffsetDateTime::now_utc()))
            .await
            .map_err(|e| ChaosError::Setup(e.to_string()))?
            .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let msgs = Arc::new(msgs);
    let mut dirs = Vec::new();
    let mut gateways = Vec::new();
    let mut queues = Vec::new();
    for i in 0..INSTANCES {
        let dir = root.join(format!("gateway{}", i + 1));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ChaosError::Setup(format!("{}: {e}", dir.display())))?;
        // Instance i starts on node i: every node carries clients.
        let mut urls = node_urls.clone();
        urls.rotate_left(i % node_urls.len());
        let config = write_instance_config(o, &dir, &urls, store_url, i)?;
        if queues.is_empty() {
            queues = output_queues(&config)?;
        }
        gateways.push(
            GatewayProcess::spawn(&o.exe, &config, &dir)
                .map_err(|e| ChaosError::Gateway(e.to_string()))?,
        );
        dirs.push(dir);
    }
    let ledger = Ledger::default();
    let mut run = ClusterRun {
        cluster: cluster.clone(),
        url: url.clone(),
        dirs,
        gateways,
        ledger: ledger.clone(),
        _drain: Drain::spawn(&url, queues, ledger),
    };
    let mut notes = vec![format!(
        "3-node cluster up in {:.1} s; {INSTANCES} instances on PostgreSQL, partitions = {PARTITIONS}",
        cluster_up.as_secs_f64()
    )];
    let ready = run.wait_sessions(Duration::from_secs(90)).await;
    let outcome = match ready {
        Ok(()) => drive(scenario, o, &mut run, &msgs, &mut notes).await,
        Err(e) => Err(e),
    };
    let outcome = outcome.map(|(figures, graceful_stop)| {
        notes.push(format!(
            "instances started {} time(s); {:.1} s",
            run.gateways.iter().map(|g| g.starts).sum::<u32>(),
            started.elapsed().as_secs_f64()
        ));
        Report {
            scenario,
            figures,
            graceful_stop,
            notes,
            kills: None,
            dir: root.to_path_buf(),
        }
    });
    for g in &mut run.gateways {
        let _ = g.kill9();
    }
    // The nodes go down in order, and are killed if they will not.
    let stopped = tokio::task::spawn_blocking(move || {
        let taken = cluster.lock().ok().and_then(|mut c| c.take());
        taken.map_or(Ok(()), Cluster::stop)
    })
    .await;
    match (outcome, stopped) {
        (Ok(mut report), Ok(Err(e))) => {
            report.notes.push(format!("stopping the cluster: {e}"));
            Ok(report)
        }
        (outcome, _) => outcome,
    }
}

/// Traffic, faults, the wait and the stop; the figures and the outcome of the graceful stop.
async fn drive(
    scenario: Scenario,
    o: &Options,
    run: &mut ClusterRun,
    msgs: &Arc<Vec<Outgoing>>,
    notes: &mut Vec<String>,
) -> Result<(Figures, Result<(), String>), ChaosError> {
    let n = msgs.len();
    let mut rng = fastrand::Rng::with_seed(o.seed);
    let confirmed = Confirmed::new(n);
    // A stream over roughly the time the faults take (a kill round about 4 s, a node stop about 20 s).
    let per_fault = match scenario {
        Scenario::ClusterNodeStop => 20_000,
        _ => 4_000,
    };
    let pace = Duration::from_millis((per_fault * u64::from(o.faults.max(1))) / n.max(1) as u64);
    let sender = tokio::spawn(send(
        run.url.clone(),
        msgs.clone(),
        0..n,
        confirmed.clone(),
        SendPlan {
            pace,
            ..SendPlan::default()
        },
    ));
    let faults = disturb(scenario, o, run, &mut rng, notes).await;
    let retried = sender.await.unwrap_or(0);
    if retried > 0 {
        notes.push(format!(
            "sender published {retried} unconfirmed message(s) again"
        ));
    }
    faults?;
    for g in &mut run.gateways {
        if g.pid().is_none() || g.exited().is_some() {
            g.restart()
                .map_err(|e| ChaosError::Gateway(e.to_string()))?;
        }
    }
    let waited = run.wait_complete(msgs, &confirmed, n, o.settle).await;
    let graceful_stop = match &waited {
        Ok(_) => run.graceful_stop(Duration::from_secs(40)).await,
        Err(e) => Err(e.to_string()),
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let seen = run.ledger.snapshot();
    let mut f = figures(msgs, &confirmed, &seen);
    super::ledger::confirmed_not_arrived(&mut f, msgs, &seen, &run.routing_logs());
    if f.confirmed_not_arrived > 0 {
        notes.push(format!(
            "{} of the lost were logged as delivered (confirmed) by an instance and never arrived",
            f.confirmed_not_arrived
        ));
    }
    let settled = super::ledger::settled_redeliveries(&run.routing_logs());
    notes.push(format!(
        "{settled} redelivered message(s) were found delivered already (by this or another instance) and acknowledged without sending anything again"
    ));
    let moved = run
        .dirs
        .iter()
        .map(|d| diagnostics(d, "trying the next broker node"))
        .sum::<usize>();
    if moved > 0 {
        notes.push(format!(
            "instances moved to the next broker node {moved} time(s)"
        ));
    }
    Ok((f, graceful_stop))
}

/// The faults of the scenario, while the sender streams.
async fn disturb(
    scenario: Scenario,
    o: &Options,
    run: &mut ClusterRun,
    rng: &mut fastrand::Rng,
    notes: &mut Vec<String>,
) -> Result<(), ChaosError> {
    match scenario {
        Scenario::ClusterNodeStop => {
            for k in 0..o.faults as usize {
                let node = STOPPED_NODES[k % STOPPED_NODES.len()];
                let since = run.ledger.len();
                run.ledger.grows_past(since, Duration::from_secs(20)).await;
                tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
                let t = Instant::now();
                run.with_cluster(move |c| c.stop_node(node)).await?;
                // Carry on without it for a while: the instances that were on it must move.
                let during = run.ledger.len();
                tokio::time::sleep(Duration::from_secs(6)).await;
                let came_out = run.ledger.len() - during;
                run.with_cluster(move |c| c.start_node(node)).await?;
                let members = run.with_cluster(|c| c.running_nodes()).await?.len();
                notes.push(format!(
                    "node {} stopped for {:.1} s ({came_out} output(s) meanwhile); {members} node(s) running after its restart",
                    node + 1,
                    t.elapsed().as_secs_f64()
                ));
            }
        }
        _ => {
            let mut kills = vec![0u32; INSTANCES];
            for _ in 0..o.faults {
                let victim = rng.usize(0..INSTANCES);
                let since = run.ledger.len();
                run.ledger.grows_past(since, Duration::from_secs(5)).await;
                tokio::time::sleep(Duration::from_millis(rng.u64(0..800))).await;
                run.gateways[victim]
                    .kill9()
                    .map_err(|e| ChaosError::Gateway(format!("kill -9: {e}")))?;
                kills[victim] += 1;
                // Down long enough for the broker to hand its partitions to the others.
                tokio::time::sleep(Duration::from_millis(rng.u64(500..2500))).await;
                run.gateways[victim]
                    .restart()
                    .map_err(|e| ChaosError::Gateway(format!("restart: {e}")))?;
            }
            notes.push(format!(
                "{} kill -9 at random moments (instances 1-3: {:?}), each restarted after 0.5-2.5 s",
                o.faults, kills
            ));
        }
    }
    Ok(())
}
