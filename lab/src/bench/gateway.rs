//! The gateway under load: the real daemon, `helsemelding-lab serve` (the operators' `serve`, fault injection allowed) started as a child process from
//! the shipped configuration (in its own vhost and state directory, metrics on a local port), so
//! its peak resident set (`VmHWM`) and CPU time are its own and not the load generator's.
//!
//! 1. sign: `n + latency_n` distinct messages (half dialogmeldinger, half PLO) before anything
//!    is timed;
//! 2. fill: `n` of them go to the intake with pipelined confirms before the gateway starts;
//! 3. throughput: the gateway starts and drains the intake — verify, validate, route, store,
//!    publish with confirms, commit, ack; a consumer on the recipient's queue counts arrivals.
//!    The rate runs from the first arrival to the last, so start-up is not in it;
//! 4. latency: the other `latency_n` are published one by one at half that rate; latency is the
//!    time from a publish to its arrival on the recipient's queue;
//! 5. figures: CPU per message of the whole process, of each assessment stage (from the
//!    gateway's `/metrics`), of the store's writer thread; peak RSS; then SIGTERM.
//!
//! Failure: [`BenchError`] — a message that does not arrive within the time limit, a gateway that
//! exits early (its stderr is quoted), a broker fault.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::messages::{self, Kind, Signed};
use super::{proc_cpu_seconds, proc_status_kb, quantile, thread_cpu_by_name, BenchError};
use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::{async_queue, Topology};
use helsemelding::amqp::{connect, Consumer, PublishError, Publisher, Route, Settlement};
use helsemelding::config::scratch::{write as write_config, Scratch};
use helsemelding::gateway::metrics::{Phase, Stage};

/// What to run.
#[derive(Debug, Clone)]
pub struct GatewayBench {
    /// The executable to run `serve` with (normally this very binary, `helsemelding-lab`).
    pub exe: PathBuf,
    /// The repository root: `config/`, `fixtures/gateway-pki/`.
    pub repo: PathBuf,
    /// The official schemas (layout of `../shared/standards/xsd`).
    pub schemas: PathBuf,
    pub messages: usize,
    pub latency_messages: usize,
    pub size: usize,
    pub prefetch: u16,
    /// How many senders the traffic comes from ([`messages::senders`]).
    pub senders: usize,
    /// Run on the PostgreSQL delivery store: a database of its own is made on the server this URL
    /// names, and dropped afterwards. `None`: redb in the run's state directory.
    pub store_postgres: Option<String>,
    /// Gateway instances on the run's vhost and store (more than one only with `store_postgres`),
    /// each with its own state directory and metrics port, as in `deploy/three-instances/`.
    pub instances: usize,
    /// With several instances (in partitions): leave `max_inflight_bytes` to its default, as
    /// `deploy/three-instances/` does, so each partition's window is the default's
    /// (`config::DEFAULT_PARTITION_WINDOW`), instead of raising the budget to [`PARTITIONED_BUDGET`]
    /// for the full prefetch on every partition.
    pub default_budget: bool,
    /// The latency part in this many rounds (at least 1), `latency_messages` split among them;
    /// with `relay_rounds`, each gateway round is followed by the bare relay at the same rate
    /// and count in a vhost of its own, so the two are compared round by round on a machine
    /// whose speed drifts ([`GatewayReport::rounds`]).
    pub latency_rounds: usize,
    pub relay_rounds: bool,
}

/// One round of the latency part: the gateway's p50/p99 and, when the relay ran alternately,
/// the relay's at the same rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyRound {
    pub messages: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub relay_p50_ms: Option<f64>,
    pub relay_p99_ms: Option<f64>,
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// CPU per message of the gateway process, split where it can be told apart.
#[derive(Debug, Clone, Default)]
pub struct CpuSplit {
    /// The whole process, µs per message.
    pub total_us: f64,
    /// (stage, µs per message) for verify, validate, parse, route.
    pub stages: Vec<(&'static str, f64)>,
    /// The delivery store's writer thread (group commits: serialisation, B-tree, fsync calls).
    pub store_commit_us: f64,
    /// The AMQP client's own I/O threads (lapin's `lapin-io-loop`, one per connection): reading and
    /// writing the sockets, framing.
    pub amqp_io_us: f64,
    /// Everything else: the AMQP client's work on the runtime (deliveries, publishes, confirms,
    /// acks), store reads, the runtime itself, the routing log.
    pub rest_us: f64,
}

/// What one gateway run measured.
#[derive(Debug, Clone)]
pub struct GatewayReport {
    pub size: usize,
    /// Mean size of the signed envelopes on the wire.
    pub envelope_bytes: usize,
    pub messages: usize,
    pub fill_rate: f64,
    pub throughput: f64,
    pub cpu: CpuSplit,
    /// CPU µs per message during the throughput part: the broker's, and the benchmark's own
    /// (the consumer draining the recipient queue).
    pub broker_cpu_us: Option<f64>,
    pub client_cpu_us: f64,
    pub latency_rate: f64,
    pub latency_messages: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The part of the latency spent inside the gateway (routing log `elapsed_ms`), p50 and p99.
    pub inside_p50_ms: f64,
    pub inside_p99_ms: f64,
    /// Mean wall ms per phase inside the gateway during the latency part.
    pub phase_ms: Vec<(&'static str, f64)>,
    pub peak_rss_kb: u64,
    pub signing_seconds: f64,
    /// How many gateway instances shared the work (CPU and counters above are their sums; peak
    /// RSS the largest).
    pub instances: usize,
    /// `[amqp] partitions` of the instances (0 for one instance).
    pub partitions: u16,
    /// Messages each instance acknowledged in the throughput part (how the partitions spread).
    pub acked_per_instance: Vec<u64>,
    /// CPU µs per message of the PostgreSQL server processes serving the run's database during the
    /// throughput part (`None` on redb): the store's work that the gateway hands to the server.
    pub store_server_cpu_us: Option<f64>,
    /// The latency part round by round (one round unless asked for more); `p50_ms`/`p99_ms`
    /// above are over all rounds' messages together.
    pub rounds: Vec<LatencyRound>,
}

impl GatewayReport {
    /// The median of the rounds' p99s (`None` without rounds).
    pub fn p99_median_of_rounds(&self) -> Option<f64> {
        median(self.rounds.iter().map(|r| r.p99_ms))
    }
}

/// Runs the gateway benchmark in a vhost of its own; cleans up vhost, state and child.
pub async fn run(b: &GatewayBench) -> Result<GatewayReport, BenchError> {
    let vhost = TestVhost::create()
        .await
        .map_err(|e| BenchError::Setup(format!("vhost: {e}")))?;
    let dir = std::env::temp_dir().join(format!(
        "helsemelding-bench-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    ));
    let scratch = match &b.store_postgres {
        Some(admin) => Some(
            helsemelding::store::pg::create_scratch_database(admin, "hm_bench")
                .await
                .map_err(|e| BenchError::Setup(format!("PostgreSQL: {e}")))?,
        ),
        None => None,
    };
    let result = run_in(
        b,
        &vhost,
        &dir,
        scratch
            .as_ref()
            .map(|(name, url)| (name.as_str(), url.as_str())),
    )
    .await;
    if let (Some(admin), Some((name, _))) = (&b.store_postgres, &scratch) {
        if let Err(e) = helsemelding::store::pg::drop_scratch_database(admin, name).await {
            eprintln!("bench: dropping the database {name}: {e}");
        }
    }
    let _ = vhost.delete().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The gateway child; SIGTERM and wait on drop, so no run leaves a daemon behind.
struct Daemon {
    child: Child,
    stderr: PathBuf,
}

impl Daemon {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                let tail: Vec<&str> = err.lines().rev().take(15).collect();
                Some(format!(
                    "helsemelding serve exited ({status}): {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ))
            }
            _ => None,
        }
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// GET `/metrics` from the child.
pub(crate) async fn scrape(port: u16) -> Result<String, BenchError> {
    let err =
        |e: std::io::Error| BenchError::Gateway(format!("metrics endpoint 127.0.0.1:{port}: {e}"));
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(err)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: bench\r\n\r\n")
        .await
        .map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.map_err(err)?;
    Ok(out)
}

/// The value of a sample line `name value` (labels included in `name`).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The publish of one signed message to the intake exchange, as the sender `guest` (a future to
/// spawn; errors in its headers come out at once).
fn publish_signed(
    publisher: &Publisher,
    t: &Topology,
    m: &Signed,
) -> Result<impl std::future::Future<Output = Result<(), PublishError>> + Send + 'static, BenchError>
{
    let props = m
        .headers
        .to_properties()
        .map_err(PublishError::from)?
        .with_user_id("guest".into());
    let (p, body, t) = (publisher.clone(), m.body.clone(), t.clone());
    Ok(async move {
        p.publish_with_properties(Route::intake(&t), props, &body)
            .await
    })
}

async fn publish_all(publisher: &Publisher, msgs: &[Signed]) -> Result<(), BenchError> {
    let t = Topology::default();
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    for m in msgs {
        if set.len() >= 1024 {
            if let Some(r) = set.join_next().await {
                r.map_err(BenchError::join)??;
            }
        }
        set.spawn(publish_signed(publisher, &t, m)?);
    }
    while let Some(r) = set.join_next().await {
        r.map_err(BenchError::join)??;
    }
    Ok(())
}

/// `[amqp] max_inflight_bytes` of partitioned runs: 64 GiB, room for the full prefetch of 256
/// on each of up to 7 partitions at a largest message of 35 MiB (see [`with_partitions`]).
const PARTITIONED_BUDGET: u64 = 64 << 30;

/// Intake partitions for `instances` gateways: none for one, two per instance otherwise.
fn partitions_for(instances: usize) -> u16 {
    if instances > 1 {
        u16::try_from(2 * instances).unwrap_or(u16::MAX)
    } else {
        0
    }
}

/// `text` (a configuration) with `[amqp] partitions = k` and instance `n`'s (1-based) share of
/// the partitions 0..=k as `prefer_partitions`, contiguous and as even as can be, and
/// `max_inflight_bytes` raised to [`PARTITIONED_BUDGET`] (`raise`) or left out, so that its
/// default is fitted to the partitions; unchanged for `k` = 0.
fn with_partitions(text: &str, k: u16, instances: usize, n: usize, raise: bool) -> String {
    if k == 0 {
        return text.to_owned();
    }
    let share: Vec<String> = (0..=k)
        .filter(|p| usize::from(*p) * instances / (usize::from(k) + 1) == n - 1)
        .map(|p| p.to_string())
        .collect();
    text.lines()
        .filter(|l| raise || !l.starts_with("max_inflight_bytes = "))
        .map(|l| {
            if l.starts_with("prefetch = ") {
                format!(
                    "{l}\npartitions = {k}\nprefer_partitions = [{}]\n",
                    share.join(", ")
                )
            } else if l.starts_with("max_inflight_bytes = ") {
                // Each partition's count window is fixed at its share of this budget divided by
                // policy.max_message_bytes (35 MiB): with the default budget, (K + 1) × 35 MiB,
                // that is one message per partition, which measures the window, not the store.
                // So the budget is set high enough for the full prefetch on every partition; the
                // bench's messages are small, so memory stays small.
                format!("max_inflight_bytes = {PARTITIONED_BUDGET}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// A free local port for a gateway's metrics.
fn free_port() -> Result<u16, BenchError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BenchError::Setup(format!("a free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| BenchError::Setup(e.to_string()))?
        .port())
}

/// CPU seconds (user + system) of the PostgreSQL server processes serving `database`: the
/// backends whose process title (`postgres: … user database host(port) state`) names it.
fn pg_server_cpu_seconds(database: &str) -> f64 {
    let needle = format!(" {database} ");
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                        let title = String::from_utf8_lossy(&c).replace('\0', " ");
                        title.starts_with("postgres: ") && title.contains(&needle)
                    })
                })
                .filter_map(|pid| proc_cpu_seconds(pid, None))
                .sum()
        })
        .unwrap_or(0.0)
}

async fn run_in(
    b: &GatewayBench,
    vhost: &TestVhost,
    dir: &Path,
    store: Option<(&str, &str)>,
) -> Result<GatewayReport, BenchError> {
    let store_url = store.map(|(_, url)| url);
    let port = free_port()?;
    let config = write_config(
        &b.repo,
        dir,
        &Scratch {
            url: vhost.url(),
            schemas: &b.schemas,
            prefetch: Some(b.prefetch),
            metrics_port: Some(port),
        },
    )
    .map_err(|e| BenchError::Setup(e.to_string()))?;
    if let Some(url) = store_url {
        let text = std::fs::read_to_string(&config)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", config.display())))?;
        let text = text.replace(
            "backend = \"redb\"",
            &format!("backend = \"postgres\"\nurl = {url:?}"),
        );
        std::fs::write(&config, text)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", config.display())))?;
    }
    // Several instances share the intake as deploy/three-instances does: in partitions, each
    // instance preferring its own share of them (gateway_inbound, partition 0, stays empty here:
    // the bench publishes through the exchange).
    let partitions = partitions_for(b.instances);
    let text = std::fs::read_to_string(&config)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", config.display())))?;
    if partitions > 0 {
        std::fs::write(
            &config,
            with_partitions(&text, partitions, b.instances, 1, !b.default_budget),
        )
        .map_err(|e| BenchError::Setup(format!("{}: {e}", config.display())))?;
    }
    // Further instances: the same configuration with their own state, routing log and port.
    let mut configs = vec![(config.clone(), port, dir.join("routing.jsonl"))];
    for n in 2..=b.instances {
        let port_n = free_port()?;
        let log = dir.join(format!("routing-{n}.jsonl"));
        let state = dir.join("state");
        let text = text
            .replace(
                &format!("state = {:?}", state.display().to_string()),
                &format!(
                    "state = {:?}",
                    dir.join(format!("state-{n}")).display().to_string()
                ),
            )
            .replace(
                &format!("{:?}", dir.join("routing.jsonl").display().to_string()),
                &format!("{:?}", log.display().to_string()),
            )
            .replace(
                &format!("http_listen = \"127.0.0.1:{port}\""),
                &format!("http_listen = \"127.0.0.1:{port_n}\""),
            );
        let text = with_partitions(&text, partitions, b.instances, n, !b.default_budget);
        let path = dir.join(format!("config/gateway-{n}.toml"));
        std::fs::write(&path, text)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", path.display())))?;
        configs.push((path, port_n, log));
    }
    // The extra senders join the scratch register.
    let pki = b.repo.join("fixtures/gateway-pki");
    let register = dir.join("parties.toml");
    let mut parties = std::fs::read_to_string(&register)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", register.display())))?;
    parties.push_str(&messages::extra_parties(b.senders, &pki));
    std::fs::write(&register, parties)
        .map_err(|e| BenchError::Setup(format!("{}: {e}", register.display())))?;

    // 1. sign (not timed).
    let signers = messages::signers(&pki)?;
    let senders = messages::senders(b.senders);
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    let all = tokio::task::block_in_place(|| {
        messages::sign_many(
            &signers,
            &senders,
            b.messages + b.latency_messages,
            b.size,
            now,
        )
    })?;
    let signing_seconds = started.elapsed().as_secs_f64();
    let envelope_bytes = all.iter().map(|m| m.body.len()).sum::<usize>() / all.len().max(1);
    let (bulk, paced) = all.split_at(b.messages);

    // 2. fill the intake before the gateway runs.
    let conn = connect(&vhost.settings("bench-sender")).await?;
    let ch = conn
        .create_channel()
        .await
        .map_err(|e| BenchError::Broker(e.to_string()))?;
    let recipients = [Kind::Dialog.recipient(), Kind::Plo.recipient()];
    let topology = Topology {
        partitions,
        ..Topology::default()
    };
    topology.declare(&ch, &recipients).await?;
    let publisher = Publisher::open(&conn).await?;
    let started = Instant::now();
    publish_all(&publisher, bulk).await?;
    let fill_rate = bulk.len() as f64 / started.elapsed().as_secs_f64();

    // The recipient's queue: every arrival reported with its time; acks go out concurrently.
    let (tx, mut arrivals) = mpsc::unbounded_channel::<(String, Instant)>();
    let drain_conn = connect(&vhost.settings("bench-drain")).await?;
    let mut drain =
        Consumer::open(&drain_conn, &async_queue(Kind::Dialog.recipient()), 1024).await?;
    let drain_task = tokio::spawn(async move {
        let mut acks = JoinSet::new();
        while let Some(d) = drain.next().await {
            let at = Instant::now();
            let _ = tx.send((d.message_id().unwrap_or("").to_owned(), at));
            acks.spawn(d.ack());
            while let Some(r) = acks.try_join_next() {
                if !matches!(r, Ok(Settlement::Settled)) {
                    return;
                }
            }
        }
    });

    // 3. throughput.
    let mut daemons = Vec::with_capacity(configs.len());
    for (n, (config, _, _)) in configs.iter().enumerate() {
        let stderr = dir.join(format!("serve-{}.stderr", n + 1));
        let err_file = std::fs::File::create(&stderr)
            .map_err(|e| BenchError::Setup(format!("{}: {e}", stderr.display())))?;
        let child = Command::new(&b.exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .map_err(|e| {
                BenchError::Gateway(format!("cannot start {} serve: {e}", b.exe.display()))
            })?;
        daemons.push(Daemon { child, stderr });
    }
    let pids: Vec<u32> = daemons.iter().map(Daemon::pid).collect();
    let ports: Vec<u16> = configs.iter().map(|(_, p, _)| *p).collect();
    let exited = |daemons: &mut Vec<Daemon>| daemons.iter_mut().find_map(Daemon::exited);
    let limit = Duration::from_secs(60) + Duration::from_millis(20 * b.messages as u64);
    let deadline = Instant::now() + limit;
    let mut seen = 0usize;
    let (mut first, mut last) = (None::<Instant>, Instant::now());
    let (mut cpu0, mut threads0) = (Vec::new(), Vec::new());
    let mut server0 = 0.0;
    let mut outside = super::CpuMark::now();
    while seen < bulk.len() {
        match tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await {
            Ok(Some((_, at))) => {
                seen += 1;
                last = at;
                if first.is_none() {
                    first = Some(at);
                    cpu0 = pids
                        .iter()
                        .map(|p| proc_cpu_seconds(*p, None).unwrap_or(0.0))
                        .collect();
                    threads0 = pids.iter().map(|p| thread_cpu_by_name(*p)).collect();
                    server0 = store.map_or(0.0, |(name, _)| pg_server_cpu_seconds(name));
                    outside = super::CpuMark::now();
                }
            }
            Ok(None) => return Err(BenchError::Lost("the recipient's consumer ended".into())),
            Err(_) => {}
        }
        if let Some(why) = exited(&mut daemons) {
            return Err(BenchError::Gateway(why));
        }
        if Instant::now() > deadline {
            return Err(BenchError::Lost(format!(
                "{seen} of {} arrived within {limit:?}",
                bulk.len()
            )));
        }
    }
    let cpu1: Vec<f64> = pids
        .iter()
        .map(|p| proc_cpu_seconds(*p, None).unwrap_or(0.0))
        .collect();
    let threads1: Vec<_> = pids.iter().map(|p| thread_cpu_by_name(*p)).collect();
    let server1 = store.map(|(name, _)| pg_server_cpu_seconds(name));
    let first = first.unwrap_or(last);
    let counted = (bulk.len() - 1).max(1) as f64;
    let store_server_cpu_us = server1.map(|s1| (s1 - server0) * 1e6 / counted);
    let (broker_cpu_us, client_cpu_us) = outside.per_message_us(counted);
    let throughput = counted / last.duration_since(first).as_secs_f64().max(1e-9);
    // Wait until every one is acked (durable) before reading the per-stage counters.
    let acked_by = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let mut all = Vec::with_capacity(ports.len());
        for p in &ports {
            all.push(scrape(*p).await?);
        }
        let acked: f64 = all
            .iter()
            .map(|m| sample(m, "helsemelding_acked_total"))
            .sum();
        if acked as usize >= bulk.len() || Instant::now() > acked_by {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let acked_per_instance: Vec<u64> = metrics
        .iter()
        .map(|m| sample(m, "helsemelding_acked_total") as u64)
        .collect();
    // Each instance's share of the work, over all the messages: the sum is the whole.
    let cpu = (0..pids.len())
        .map(|i| {
            split(
                &metrics[i],
                bulk.len(),
                counted,
                cpu1[i] - cpu0[i],
                &threads0[i],
                &threads1[i],
            )
        })
        .reduce(CpuSplit::plus)
        .unwrap_or_default();

    // 4. latency at half the rate just measured (with the gateway's phase clocks before and after).
    let scrape_all = || async {
        let mut all = Vec::with_capacity(ports.len());
        for p in &ports {
            all.push(scrape(*p).await?);
        }
        Ok::<_, BenchError>(all)
    };
    let phases_before = scrape_all().await?;
    let rate = (throughput / 2.0).max(1.0);
    let t = Topology::default();
    let per_round = paced.len().div_ceil(b.latency_rounds.max(1)).max(1);
    let mut latencies = Vec::with_capacity(paced.len());
    let mut rounds = Vec::new();
    for chunk in paced.chunks(per_round) {
        let round = super::paced_latencies(
            chunk.len(),
            rate,
            |i| {
                let m = &chunk[i];
                let publish = publish_signed(&publisher, &t, m)?;
                Ok((m.headers.message_id.as_str().to_owned(), publish))
            },
            &mut arrivals,
            || exited(&mut daemons).map_or(Ok(()), |why| Err(BenchError::Gateway(why))),
        )
        .await?;
        // The bare relay at the same rate and count, right after (the gateway idles meanwhile).
        let relay = if b.relay_rounds {
            let n = chunk.len() as u64;
            Some(
                super::in_own_vhost(|url| async move {
                    super::relay::latency(&url, n, envelope_bytes, b.prefetch, rate).await
                })
                .await?,
            )
        } else {
            None
        };
        rounds.push(LatencyRound {
            messages: chunk.len(),
            p50_ms: quantile(&round, 0.50),
            p99_ms: quantile(&round, 0.99),
            relay_p50_ms: relay.as_ref().map(|l| l.p50_ms),
            relay_p99_ms: relay.as_ref().map(|l| l.p99_ms),
        });
        latencies.extend(round);
    }
    latencies.sort_by(f64::total_cmp);
    // Let the last ones be recorded, then: mean wall ms per phase over the paced messages.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let phases_after = scrape_all().await?;
    let phase_ms: Vec<(&'static str, f64)> = Phase::ALL
        .iter()
        .map(|ph| {
            let secs = |all: &[String]| {
                let name = format!(
                    "helsemelding_phase_seconds_total{{phase=\"{}\"}}",
                    ph.name()
                );
                all.iter().map(|m| sample(m, &name)).sum::<f64>()
            };
            let calls = |all: &[String]| {
                let name = format!("helsemelding_phase_calls_total{{phase=\"{}\"}}", ph.name());
                all.iter().map(|m| sample(m, &name)).sum::<f64>()
            };
            let n = calls(&phases_after) - calls(&phases_before);
            (
                ph.name(),
                if n > 0.0 {
                    (secs(&phases_after) - secs(&phases_before)) * 1000.0 / n
                } else {
                    0.0
                },
            )
        })
        .collect();
    // Of that, the time inside the gateway (its routing log: delivery taken → delivered and
    // recorded), for the paced messages only: the rest is the broker's (two queues, two confirms).
    let paced_ids: std::collections::HashSet<&str> = paced
        .iter()
        .map(|m| m.headers.message_id.as_str())
        .collect();
    let log: String = configs
        .iter()
        .map(|(_, _, log)| std::fs::read_to_string(log).unwrap_or_default())
        .collect();
    let mut inside: Vec<f64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| {
            v["outcome"] == "delivered"
                && v["msg_id"]
                    .as_str()
                    .is_some_and(|id| paced_ids.contains(id))
        })
        .filter_map(|v| v["elapsed_ms"].as_f64())
        .collect();
    inside.sort_by(f64::total_cmp);

    // 5. peak RSS, then stop.
    let peak_rss_kb = pids
        .iter()
        .filter_map(|p| proc_status_kb(*p, "VmHWM"))
        .max()
        .unwrap_or(0);
    for d in &mut daemons {
        d.stop();
    }
    drain_task.abort();
    let _ = drain_conn.close(200, "bench done".into()).await;
    let _ = conn.close(200, "bench done".into()).await;
    Ok(GatewayReport {
        size: b.size,
        envelope_bytes,
        messages: bulk.len(),
        fill_rate,
        broker_cpu_us,
        client_cpu_us,
        throughput,
        cpu,
        latency_rate: rate,
        latency_messages: paced.len(),
        p50_ms: quantile(&latencies, 0.50),
        p99_ms: quantile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(0.0),
        inside_p50_ms: quantile(&inside, 0.50),
        inside_p99_ms: quantile(&inside, 0.99),
        phase_ms,
        peak_rss_kb,
        signing_seconds,
        instances: pids.len(),
        partitions,
        acked_per_instance,
        store_server_cpu_us,
        rounds,
    })
}

impl CpuSplit {
    /// Two instances' shares added up (stages by name, in `self`'s order).
    fn plus(self, other: CpuSplit) -> CpuSplit {
        CpuSplit {
            total_us: self.total_us + other.total_us,
            stages: self
                .stages
                .iter()
                .map(|(name, us)| (*name, us + other.stage(name)))
                .collect(),
            store_commit_us: self.store_commit_us + other.store_commit_us,
            amqp_io_us: self.amqp_io_us + other.amqp_io_us,
            rest_us: self.rest_us + other.rest_us,
        }
    }

    /// One stage's µs per message by name (0 when it was not measured).
    fn stage(&self, name: &str) -> f64 {
        self.stages
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, us)| *us)
    }

    /// Issue 11's CPU target: 1.5 × (verify + validate).
    pub fn target_us(&self) -> f64 {
        1.5 * (self.stage("verify") + self.stage("validate"))
    }

    /// What the gateway cannot do without on this AMQP client: its four stages (the work that makes
    /// a gateway worth having) and the client's own I/O threads, which the bare relay pays too.
    /// Above [`CpuSplit::target_us`], the target is out of reach whatever the rest costs.
    pub fn floor_us(&self) -> f64 {
        self.stages.iter().map(|(_, us)| us).sum::<f64>() + self.amqp_io_us
    }
}

/// CPU per message: the process total over the timed window (`counted` messages), the stages
/// from the gateway's counters (all `n` messages), the store writer thread from `/proc`.
fn split(
    metrics: &str,
    n: usize,
    counted: f64,
    process_cpu: f64,
    threads0: &[(String, f64)],
    threads1: &[(String, f64)],
) -> CpuSplit {
    let per = |seconds: f64, over: f64| seconds * 1e6 / over.max(1.0);
    let stages: Vec<(&'static str, f64)> = Stage::ALL
        .iter()
        .map(|s| {
            (
                s.name(),
                per(
                    sample(
                        metrics,
                        &format!(
                            "helsemelding_stage_cpu_seconds_total{{stage=\"{}\"}}",
                            s.name()
                        ),
                    ),
                    n as f64,
                ),
            )
        })
        .collect();
    let thread = |list: &[(String, f64)], name: &str| {
        list.iter()
            .filter(|(n, _)| n.starts_with(name))
            .map(|(_, c)| c)
            .sum::<f64>()
    };
    // Thread names are cut to 15 bytes by the kernel: "delivery-store-".
    let store_commit_us = per(
        thread(threads1, "delivery-store") - thread(threads0, "delivery-store"),
        counted,
    );
    let amqp_io_us = per(
        thread(threads1, "lapin-io-loop") - thread(threads0, "lapin-io-loop"),
        counted,
    );
    let total_us = per(process_cpu, counted);
    let rest_us =
        (total_us - stages.iter().map(|(_, us)| us).sum::<f64>() - store_commit_us - amqp_io_us)
            .max(0.0);
    CpuSplit {
        total_us,
        stages,
        store_commit_us,
        amqp_io_us,
        rest_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_instances_split_the_partitions_between_them() {
        let text = "[amqp]\nprefetch = 256\nmax_inflight_bytes = 67108864\n";
        assert_eq!(partitions_for(1), 0);
        assert_eq!(with_partitions(text, 0, 1, 1, true), text);
        assert_eq!(with_partitions(text, 0, 1, 1, false), text);
        assert_eq!(
            with_partitions(text, partitions_for(2), 2, 1, true),
            format!("[amqp]\nprefetch = 256\npartitions = 4\nprefer_partitions = [0, 1, 2]\nmax_inflight_bytes = {PARTITIONED_BUDGET}\n"),
            "the budget raised so that each partition has its full prefetch"
        );
        assert!(with_partitions(text, 4, 2, 2, true).contains("prefer_partitions = [3, 4]\n"));
        assert_eq!(
            with_partitions(text, 4, 2, 2, false),
            "[amqp]\nprefetch = 256\npartitions = 4\nprefer_partitions = [3, 4]\n",
            "the budget left to its default"
        );
    }

    #[test]
    fn samples_are_read_by_full_name() {
        let m = "# HELP x\nhelsemelding_acked_total 42\nhelsemelding_stage_cpu_seconds_total{stage=\"verify\"} 0.500000000\n";
        assert_eq!(sample(m, "helsemelding_acked_total"), 42.0);
        assert_eq!(
            sample(m, "helsemelding_stage_cpu_seconds_total{stage=\"verify\"}"),
            0.5
        );
        assert_eq!(sample(m, "helsemelding_acked"), 0.0);
    }

    #[test]
    fn cpu_split_charges_the_remainder_to_the_rest() {
        let m = "helsemelding_stage_cpu_seconds_total{stage=\"verify\"} 0.1\nhelsemelding_stage_cpu_seconds_total{stage=\"parse\"} 0.2\n";
        let t0 = vec![
            ("delivery-store-".to_owned(), 1.0),
            ("lapin-io-loop".to_owned(), 2.0),
        ];
        let t1 = vec![
            ("delivery-store-".to_owned(), 1.05),
            ("lapin-io-loop".to_owned(), 2.03),
        ];
        let s = split(m, 1000, 1000.0, 1.0, &t0, &t1);
        assert!((s.total_us - 1000.0).abs() < 1e-6);
        assert!((s.stages[0].1 - 100.0).abs() < 1e-6, "{s:?}");
        assert!((s.stages[2].1 - 200.0).abs() < 1e-6, "{s:?}");
        assert!((s.store_commit_us - 50.0).abs() < 1e-6, "{s:?}");
        assert!((s.amqp_io_us - 30.0).abs() < 1e-6, "{s:?}");
        assert!((s.rest_us - 620.0).abs() < 1e-6, "{s:?}");
        // verify 100, validate 0 (not in the sample): the target 150; the floor 100 + 200 + 30.
        assert!((s.target_us() - 150.0).abs() < 1e-6, "{s:?}");
        assert!((s.floor_us() - 330.0).abs() < 1e-6, "{s:?}");
    }
}
