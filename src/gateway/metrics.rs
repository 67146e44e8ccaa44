//! Counters for operators, served in the Prometheus text format with a health check on a local
//! HTTP port (DESIGN §5): `GET /metrics` and `GET /health`.
//!
//! The HTTP server is [`crate::console::serve`] (which also serves the operator console). Health is 200 while the
//! gateway holds a broker connection and can write its delivery store, and 503 with the reason
//! otherwise, so a supervisor can tell "up but cut off" or "up but its disk is full".

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;

use super::routing_log::Outcome;

/// Every outcome with its name in the metrics and the routing log, in the order pages show them.
/// How many outcomes there are (the length of every per-outcome table).
pub const OUTCOME_COUNT: usize = 11;

pub const OUTCOMES: [(Outcome, &str); OUTCOME_COUNT] = [
    (Outcome::Delivered, "delivered"),
    (Outcome::Rejected, "rejected"),
    (Outcome::Duplicate, "duplicate"),
    (Outcome::NotForUs, "not_for_us"),
    (Outcome::ErrorQueue, "error_queue"),
    (Outcome::DeadLettered, "dead_lettered"),
    (Outcome::AppRecForwarded, "apprec_forwarded"),
    (Outcome::AppRecRefused, "apprec_refused"),
    (Outcome::Overdue, "overdue"),
    (Outcome::Retry, "retry"),
    (Outcome::Redriven, "redriven"),
];

/// Process-wide counters. Cheap to bump from any task.
#[derive(Default)]
pub struct Metrics {
    outcomes: [AtomicU64; OUTCOME_COUNT],
    /// Inbound deliveries taken from `gateway_inbound`.
    pub received: AtomicU64,
    /// Negative AppRecs the gateway itself issued (confirmed by the broker).
    pub apprecs_issued: AtomicU64,
    /// Inbound deliveries acknowledged to the broker after their outcome was durable.
    pub acked: AtomicU64,
    /// `ack()` answered "not sent" (channel closed): the broker will redeliver.
    pub ack_not_sent: AtomicU64,
    /// Deliveries returned to the queue for a later attempt (infrastructure faults).
    pub requeued: AtomicU64,
    /// Reconnects of the broker session since start.
    pub reconnects: AtomicU64,
    /// Store group commits and the messages they carried.
    pub store_commits: AtomicU64,
    /// Delivery records deleted past retention by the housekeeping pass.
    pub pruned: AtomicU64,
    /// Records in the delivery store and its file's size, as of the last housekeeping pass.
    pub store_records: AtomicU64,
    pub store_file_bytes: AtomicU64,
    pub broker_connected: AtomicBool,
    pub broker_blocked: AtomicBool,
    /// Why the delivery store cannot be written (a full disk), while that lasts; `None` when it can.
    pub store_unavailable: std::sync::Mutex<Option<String>>,
    /// CPU time of the assessment stages (where the time goes; `helsemelding-lab bench` reads them).
    pub stages: StageTimes,
    /// Wall time of each phase of a delivered message (where the latency goes).
    pub phases: PhaseTimes,
    /// Days until each certificate the hub depends on expires: (what it is, days; negative once
    /// expired). Set by the housekeeping pass (issue 16).
    pub certificate_days: std::sync::Mutex<Vec<(String, i64)>>,
    /// Per CA: its CRL's nextUpdate, staleness, fetches and failures (`crate::revocation`).
    pub crls: Arc<crate::revocation::CrlStatus>,
    /// Outcomes of `SIGHUP` reloads (`reload.rs`).
    pub reload: ReloadStatus,
    /// Messages delivered but not recorded for insight (queue full, recorder failed; src/insight).
    pub insight_not_recorded: Arc<AtomicU64>,
}

/// What `/metrics` says about reloads: whether the last one was applied, when, and how many failed.
pub struct ReloadStatus {
    /// `false` while the last reload failed (the configuration before it is still in use).
    pub last_ok: AtomicBool,
    /// When the last reload finished (unix seconds); 0 before the first.
    pub last_at: std::sync::atomic::AtomicI64,
    /// Reloads attempted, and those that failed.
    pub attempts: AtomicU64,
    pub failures: AtomicU64,
}

impl Default for ReloadStatus {
    fn default() -> Self {
        ReloadStatus {
            // The configuration loaded at start is the last one applied.
            last_ok: AtomicBool::new(true),
            last_at: std::sync::atomic::AtomicI64::new(0),
            attempts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }
}

impl ReloadStatus {
    /// Records one finished reload.
    pub fn record(&self, ok: bool, at: crate::ids::Timestamp) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.last_ok.store(ok, Ordering::Relaxed);
        self.last_at.store(at.unix_timestamp(), Ordering::Relaxed);
    }

    fn render(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "# HELP helsemelding_reload_last_success 0 while the last reload (SIGHUP) failed and the configuration before it stays in use; 1 otherwise.\n# TYPE helsemelding_reload_last_success gauge\nhelsemelding_reload_last_success {}",
            u8::from(self.last_ok.load(Ordering::Relaxed))
        );
        let _ = writeln!(
            s,
            "# HELP helsemelding_reload_last_timestamp_seconds When the last reload finished (unix time; 0: none since start).\n# TYPE helsemelding_reload_last_timestamp_seconds gauge\nhelsemelding_reload_last_timestamp_seconds {}",
            self.last_at.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP helsemelding_reloads_total Reloads attempted since start.\n# TYPE helsemelding_reloads_total counter\nhelsemelding_reloads_total {}",
            self.attempts.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            s,
            "# HELP helsemelding_reload_failures_total Reloads refused since start (problems logged; nothing changed).\n# TYPE helsemelding_reload_failures_total counter\nhelsemelding_reload_failures_total {}",
            self.failures.load(Ordering::Relaxed)
        );
    }
}

/// A phase of handling a message that is delivered, timed by the wall clock (waiting included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for an assessment thread, and the assessment.
    Assess,
    /// The per-message lock and the store lookup.
    Lookup,
    /// Recording `Received`/`Routed` (a group commit).
    Record,
    /// Publishing to every recipient until confirmed.
    Publish,
    /// Recording `Delivered` (a group commit).
    Commit,
    /// The ack of the inbound delivery.
    Ack,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Assess,
        Phase::Lookup,
        Phase::Record,
        Phase::Publish,
        Phase::Commit,
        Phase::Ack,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Assess => "assess",
            Phase::Lookup => "lookup",
            Phase::Record => "record",
            Phase::Publish => "publish",
            Phase::Commit => "commit",
            Phase::Ack => "ack",
        }
    }
}

/// Wall seconds and count per [`Phase`].
#[derive(Default)]
pub struct PhaseTimes(Tally<6>);

impl PhaseTimes {
    /// Charges the time since `*since` to `phase` and restarts `*since`.
    pub fn lap(&self, phase: Phase, since: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        self.0.add(
            phase as usize,
            u64::try_from(now.duration_since(*since).as_nanos()).unwrap_or(u64::MAX),
        );
        *since = now;
    }

    /// (wall seconds, count) of a phase so far.
    pub fn get(&self, phase: Phase) -> (f64, u64) {
        self.0.get(phase as usize)
    }
}

/// Nanoseconds and calls in `N` slots, added with relaxed atomics from any thread.
pub struct Tally<const N: usize> {
    nanos: [AtomicU64; N],
    calls: [AtomicU64; N],
}

impl<const N: usize> Default for Tally<N> {
    fn default() -> Self {
        Tally {
            nanos: std::array::from_fn(|_| AtomicU64::new(0)),
            calls: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl<const N: usize> Tally<N> {
    fn add(&self, slot: usize, nanos: u64) {
        self.nanos[slot].fetch_add(nanos, Ordering::Relaxed);
        self.calls[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// (seconds, calls) of a slot.
    fn get(&self, slot: usize) -> (f64, u64) {
        (
            self.nanos[slot].load(Ordering::Relaxed) as f64 / 1e9,
            self.calls[slot].load(Ordering::Relaxed),
        )
    }
}

/// A CPU-bound stage of the assessment, timed by [`StageTimes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Verify,
    Validate,
    Parse,
    Route,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Verify, Stage::Validate, Stage::Parse, Stage::Route];

    /// The `stage` label in the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Verify => "verify",
            Stage::Validate => "validate",
            Stage::Parse => "parse",
            Stage::Route => "route",
        }
    }
}

/// CPU time (the calling thread's CPU clock, so a loaded machine does not inflate it) and calls
/// per [`Stage`]. Two relaxed atomic adds per stage and message: cheap enough to stay on.
#[derive(Default)]
pub struct StageTimes(Tally<4>);

impl StageTimes {
    pub fn add(&self, stage: Stage, nanos: u64) {
        self.0.add(stage as usize, nanos);
    }

    /// (CPU seconds, calls) of a stage so far.
    pub fn get(&self, stage: Stage) -> (f64, u64) {
        self.0.get(stage as usize)
    }
}

/// The CPU time the calling thread has used, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`); 0 where
/// the clock is unavailable, which makes every stage read as 0 rather than wrong.
pub fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec we pass, which lives for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

impl Metrics {
    pub fn count(&self, outcome: Outcome) {
        if let Some(i) = OUTCOMES.iter().position(|(o, _)| *o == outcome) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn outcome(&self, outcome: Outcome) -> u64 {
        OUTCOMES
            .iter()
            .position(|(o, _)| *o == outcome)
            .map(|i| self.outcomes[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Why the delivery store cannot be written, while it cannot.
    pub fn store_problem(&self) -> Option<String> {
        match self.store_unavailable.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// `/health`: (healthy, text). Ready needs a broker session and a writable delivery store.
    pub fn health(&self) -> (bool, String) {
        let broker = self.broker_connected.load(Ordering::Relaxed);
        match (broker, self.store_problem()) {
            (true, None) => (true, "ok: broker connected, delivery store writable\n".to_owned()),
            (false, None) => (false, "not ready: no broker connection\n".to_owned()),
            (b, Some(why)) => (
                false,
                format!(
                    "not ready: delivery store cannot be written ({why}); messages are held unacknowledged{}\n",
                    if b { "" } else { "; no broker connection" }
                ),
            ),
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP helsemelding_decisions_total Routing decisions by outcome."
        );
        let _ = writeln!(s, "# TYPE helsemelding_decisions_total counter");
        for (i, (_, name)) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(
                s,
                "helsemelding_decisions_total{{outcome=\"{name}\"}} {}",
                self.outcomes[i].load(Ordering::Relaxed)
            );
        }
        let counters = [
            (
                "helsemelding_received_total",
                "Inbound deliveries taken from the intake queue.",
                &self.received,
            ),
            (
                "helsemelding_apprecs_issued_total",
                "Negative AppRecs issued by the gateway.",
                &self.apprecs_issued,
            ),
            (
                "helsemelding_acked_total",
                "Inbound deliveries acknowledged after their outcome was durable.",
                &self.acked,
            ),
            (
                "helsemelding_ack_not_sent_total",
                "Acks the closed channel did not send (broker redelivers).",
                &self.ack_not_sent,
            ),
            (
                "helsemelding_requeued_total",
                "Deliveries returned to the intake for a later attempt (infrastructure faults).",
                &self.requeued,
            ),
            (
                "helsemelding_reconnects_total",
                "Broker reconnects since start.",
                &self.reconnects,
            ),
            (
                "helsemelding_pruned_total",
                "Delivery records deleted past retention (policy.retention).",
                &self.pruned,
            ),
            (
                "helsemelding_store_commits_total",
                "Durable group commits of delivery state.",
                &self.store_commits,
            ),
        ];
        let insight = (
            "helsemelding_insight_not_recorded_total",
            "Messages delivered but not recorded for the insight report (queue full or recorder failed).",
            &*self.insight_not_recorded,
        );
        for (name, help, v) in counters.into_iter().chain([insight]) {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        let gauges = [
            (
                "helsemelding_broker_connected",
                "1 while a broker session is open.",
                &self.broker_connected,
            ),
            (
                "helsemelding_broker_blocked",
                "1 while the broker blocks publishing (memory/disk alarm).",
                &self.broker_blocked,
            ),
        ];
        let store_ok = self.store_problem().is_none();
        let _ = writeln!(
            s,
            "# HELP helsemelding_store_available 0 while the delivery store cannot be written (messages are held unacked).\n# TYPE helsemelding_store_available gauge\nhelsemelding_store_available {}",
            u8::from(store_ok)
        );
        for (name, help, v) in [
            (
                "helsemelding_store_records",
                "Message records in the delivery store (bounded by policy.retention), as of the last housekeeping pass.",
                &self.store_records,
            ),
            (
                "helsemelding_store_file_bytes",
                "Size of the delivery store's file; redb grows it by doubling and trims a free tail, so it moves in steps.",
                &self.store_file_bytes,
            ),
        ] {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(
                s,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}",
                u8::from(v.load(Ordering::Relaxed))
            );
        }
        let _ = writeln!(
            s,
            "# HELP helsemelding_stage_cpu_seconds_total CPU time spent in each assessment stage."
        );
        let _ = writeln!(s, "# TYPE helsemelding_stage_cpu_seconds_total counter");
        for stage in Stage::ALL {
            let _ = writeln!(
                s,
                "helsemelding_stage_cpu_seconds_total{{stage=\"{}\"}} {:.9}",
                stage.name(),
                self.stages.get(stage).0
            );
        }
        let _ = writeln!(s, "# HELP helsemelding_phase_seconds_total Wall time of each phase of handling a message (waits included).");
        let _ = writeln!(s, "# TYPE helsemelding_phase_seconds_total counter");
        for phase in Phase::ALL {
            let (secs, calls) = self.phases.get(phase);
            let _ = writeln!(
                s,
                "helsemelding_phase_seconds_total{{phase=\"{}\"}} {secs:.9}",
                phase.name()
            );
            let _ = writeln!(
                s,
                "helsemelding_phase_calls_total{{phase=\"{}\"}} {calls}",
                phase.name()
            );
        }
        let _ = writeln!(s, "# HELP helsemelding_certificate_days_left Whole days until a certificate the hub depends on expires (negative: expired).");
        let _ = writeln!(s, "# TYPE helsemelding_certificate_days_left gauge");
        let days = match self.certificate_days.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for (certificate, left) in days {
            let _ = writeln!(
                s,
                "helsemelding_certificate_days_left{{certificate=\"{}\"}} {left}",
                certificate.replace(['\\', '"', '\n'], "_")
            );
        }
        self.crls.render(&mut s);
        self.reload.render(&mut s);
        let _ = writeln!(s, "# HELP helsemelding_stage_calls_total Messages that went through each assessment stage.");
        let _ = writeln!(s, "# TYPE helsemelding_stage_calls_total counter");
        for stage in Stage::ALL {
            let _ = writeln!(
                s,
                "helsemelding_stage_calls_total{{stage=\"{}\"}} {}",
                stage.name(),
                self.stages.get(stage).1
            );
        }
        s
    }
}

/// Serves `/metrics` and `/health` on `listener` until the task is dropped (the HTTP server of
/// [`crate::console`], without the console pages).
pub async fn serve_http(listener: TcpListener, metrics: Arc<Metrics>) {
    crate::console::serve(
        listener,
        Arc::new(crate::console::Endpoints {
            metrics,
            console: None,
        }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[test]
    fn stage_times_add_up_per_stage() {
        let t = StageTimes::default();
        t.add(Stage::Parse, 1_500_000_000);
        t.add(Stage::Parse, 500_000_000);
        assert_eq!(t.get(Stage::Parse), (2.0, 2));
        assert_eq!(t.get(Stage::Verify), (0.0, 0));
        let a = thread_cpu_nanos();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(
            thread_cpu_nanos() > a,
            "the thread CPU clock advances while this thread works"
        );
    }

    #[tokio::test]
    async fn metrics_and_health_over_http() {
        let m = Arc::new(Metrics::default());
        m.count(Outcome::Delivered);
        m.count(Outcome::Delivered);
        m.count(Outcome::Rejected);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(serve_http(l, m.clone()));
        let body = get(addr, "/metrics").await;
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        assert!(
            body.contains("helsemelding_decisions_total{outcome=\"delivered\"} 2"),
            "{body}"
        );
        assert!(
            body.contains("helsemelding_decisions_total{outcome=\"rejected\"} 1"),
            "{body}"
        );
        assert!(
            body.contains("helsemelding_stage_calls_total{stage=\"verify\"} 0"),
            "{body}"
        );
        assert!(get(addr, "/health").await.starts_with("HTTP/1.1 503"));
        m.broker_connected.store(true, Ordering::Relaxed);
        assert!(get(addr, "/health").await.starts_with("HTTP/1.1 200"));
        // A full state disk: not ready, with the reason; the gauge says so too.
        *m.store_unavailable.lock().unwrap() =
            Some("since 03:12: No space left on device (os error 28)".into());
        let health = get(addr, "/health").await;
        assert!(
            health.starts_with("HTTP/1.1 503")
                && health.contains("No space left on device")
                && health.contains("held unacknowledged"),
            "{health}"
        );
        assert!(get(addr, "/metrics")
            .await
            .contains("helsemelding_store_available 0"));
        *m.store_unavailable.lock().unwrap() = None;
        assert!(get(addr, "/metrics")
            .await
            .contains("helsemelding_store_available 1"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    }
}
