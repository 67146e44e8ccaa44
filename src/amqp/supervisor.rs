//! The reconnect supervisor: one task owns the connection and keeps a session alive.
//!
//! Input: [`AmqpSettings`], the [`Topology`] and parties to declare, and optionally a queue to
//! consume. Output: a [`SupervisorHandle`] (clonable) giving the current [`Session`]'s
//! [`Publisher`], the link state, and connection `blocked` alarms; and a [`Deliveries`] stream that
//! carries on across reconnects (each delivery tagged with its session generation).
//!
//! Lifecycle: connect → declare topology → open publisher and consumer channels → publish the
//! session (generation n) → wait for loss (connection error, a channel of ours closed, shutdown) →
//! back off (100 ms doubling to 10 s, ±50 % jitter; configuration faults: a long fixed delay,
//! logged as errors) → reconnect as generation n+1. Deliveries of a dead channel are never acked
//! by us (their ack reports `NotSettled`); the broker redelivers them. Each transition is one log
//! line carrying the attempt number and the delay.
//!
//! A session that consumes has two connections: one publishes (and declares), the other carries
//! the deliveries and their acks. On one TCP connection both directions are single byte streams
//! served by one lapin I/O thread and one broker reader: a 1 MB delivery coming in is ahead of the
//! confirms behind it, a 1 MB publish going out is ahead of the acks behind it, and a broker that
//! throttles the connection's publishes (credit flow, alarms) stops reading its acks too. Apart,
//! a full byte budget (deliveries waiting) never holds up a publish. Either connection lost ends
//! the session.
//!
//! A broker cluster (several URLs, [`AmqpSettings::at`]): each (re)connect starts with the URL of
//! the last session and, when it fails, tries the next at once, so losing the node we were on costs
//! one failed connect, not a backoff; only a round in which every URL failed backs off. Both
//! connections of a session go to the same node.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::{Connection, Event};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::budget::{ByteBudget, Held, PrefetchWindow};
use super::connection::{connect, AmqpSettings};
use super::consumer::{Consumer, Delivery};
use super::error::{AmqpError, FaultKind};
use super::publisher::Publisher;
use super::topology::Topology;
use crate::ids::HerId;

/// How long closing a connection may wait for the broker's close-ok.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

/// Reconnect delays.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay after a transient failure.
    pub initial: Duration,
    /// Cap for transient failures.
    pub max: Duration,
    /// Delay after a configuration fault (refused access, mismatched queue arguments).
    pub configuration: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            configuration: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempt` (1-based) after a fault of `kind`: exponential, capped,
    /// with jitter in [50 %, 150 %) so a fleet of gateways does not reconnect in lock-step.
    pub fn delay(&self, attempt: u32, kind: FaultKind) -> Duration {
        let base = match kind {
            FaultKind::Configuration => return self.configuration,
            FaultKind::Transient => {
                let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
                self.initial.saturating_mul(factor).min(self.max)
            }
        };
        base.mul_f64(0.5 + fastrand::f64()).min(self.max)
    }
}

/// What the supervisor sets up on every connection.
#[derive(Debug, Clone)]
pub struct SessionPlan {
    pub topology: Topology,
    pub parties: Vec<HerId>,
    /// Queue to consume (normally the intake; with `topology.partitions > 0`, naming the intake
    /// means every intake partition), or `None` for a publish-only client.
    pub consume: Option<String>,
    pub backoff: Backoff,
}

impl SessionPlan {
    /// Default topology, these parties, consuming the intake queue.
    pub fn gateway(parties: Vec<HerId>) -> Self {
        let topology = Topology::default();
        let consume = Some(topology.inbound.clone());
        Self {
            topology,
            parties,
            consume,
            backoff: Backoff::default(),
        }
    }
}

/// One live connection with its publisher. Dropped sessions close nothing by themselves: the
/// supervisor closes the connection.
#[derive(Debug)]
pub struct Session {
    pub generation: u64,
    /// Publishes (and topology).
    connection: Connection,
    /// Deliveries, when the plan consumes a queue.
    consuming: Option<Connection>,
    publisher: Publisher,
}

impl Session {
    /// The publisher of this session (a clone sharing the channel).
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }
    /// The publishing connection (e.g. to open an extra channel).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Both connections of the session: the publishing one, then the consuming one if any.
    fn connections(&self) -> impl Iterator<Item = &Connection> {
        std::iter::once(&self.connection).chain(self.consuming.as_ref())
    }

    fn all_connected(&self) -> bool {
        self.connections().all(|c| c.status().connected())
    }

    async fn close(&self, code: u16, reason: &str) {
        for c in self.connections() {
            if c.status().connected() {
                // A connection to a broker node that has just gone away can still look connected
                // (its reset not read yet) and then wait for a close-ok forever: found by the
                // cluster-node-stop chaos scenario, where it held the reconnect to the next node.
                if tokio::time::timeout(CLOSE_WAIT, c.close(code, reason.into()))
                    .await
                    .is_err()
                {
                    warn!(
                        wait_ms = CLOSE_WAIT.as_millis() as u64,
                        "AMQP connection close not answered; dropping it"
                    );
                }
            }
        }
    }
}

/// State of the link to the broker, as seen by the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting, or waiting `delay` before attempt `attempt` after `reason`.
    Down {
        attempt: u32,
        reason: String,
    },
    Up {
        generation: u64,
    },
    ShutDown,
}

/// Clonable access to the supervised link. Dropping every handle stops the supervisor, like
/// [`SupervisorHandle::shutdown`].
#[derive(Clone, Debug)]
pub struct SupervisorHandle {
    sessions: watch::Receiver<Option<Arc<Session>>>,
    state: watch::Receiver<LinkState>,
    blocked: watch::Receiver<Option<String>>,
    shutdown: watch::Sender<bool>,
    /// The parties whose queues every new session declares (a reload changes it).
    parties: Arc<std::sync::Mutex<Vec<HerId>>>,
}

impl SupervisorHandle {
    /// The parties whose queues the next session declares (the current one is not touched: a
    /// reload declares what is new itself).
    pub fn set_parties(&self, parties: Vec<HerId>) {
        *self.parties.lock().unwrap_or_else(|e| e.into_inner()) = parties;
    }

    /// The parties whose queues a new session declares.
    pub fn parties(&self) -> Vec<HerId> {
        self.parties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The current session, if the link is up.
    pub fn current(&self) -> Option<Arc<Session>> {
        self.sessions.borrow().clone()
    }

    /// Wait until a session is up and return it (`Err(Shutdown)` after shutdown).
    pub async fn session(&self) -> Result<Arc<Session>, AmqpError> {
        let mut rx = self.sessions.clone();
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return Ok(s);
            }
            if *self.shutdown.borrow() || rx.changed().await.is_err() {
                return Err(AmqpError::Shutdown);
            }
        }
    }

    /// Wait for a live session and return its publisher.
    pub async fn publisher(&self) -> Result<Publisher, AmqpError> {
        Ok(self.session().await?.publisher())
    }

    /// Link state (watch it to log or export health).
    pub fn state(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// `Some(reason)` while the broker blocks publishing (memory or disk alarm).
    pub fn blocked(&self) -> watch::Receiver<Option<String>> {
        self.blocked.clone()
    }

    /// Stop: close the connection and end the task. Unacked deliveries return to the queue.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Hand-off of the newest session's consumer to the pipeline. A consumer the pipeline has not
/// taken yet is replaced (it belongs to a dead session).
#[derive(Debug, Default)]
struct ConsumerSlot {
    consumer: std::sync::Mutex<Option<Consumer>>,
    fresh: tokio::sync::Notify,
}

impl ConsumerSlot {
    fn put(&self, c: Consumer) {
        *self.consumer.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
        self.fresh.notify_one();
    }
    fn take(&self) -> Option<Consumer> {
        self.consumer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

/// Deliveries from the consumed queue, across reconnects. Not clonable: one pipeline owns it.
///
/// Every delivery it yields holds its bytes of the in-flight budget ([`super::budget`]) until it
/// is settled or dropped, and the consumer's window follows the sizes seen.
#[derive(Debug)]
pub struct Deliveries {
    slot: Arc<ConsumerSlot>,
    current: Option<Consumer>,
    broken: mpsc::UnboundedSender<u64>,
    shutdown: watch::Receiver<bool>,
    budget: ByteBudget,
    window: PrefetchWindow,
    /// Taken from the consumer, waiting for its bytes (kept here so that a caller who stops
    /// waiting, e.g. in a `select!`, loses nothing: the next call yields it).
    pending: Option<Delivery>,
}

impl Deliveries {
    /// The next delivery, waiting through reconnects and until its bytes fit in the budget.
    /// `None` only after shutdown. Cancel-safe.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if self.pending.is_none() {
                self.pending = Some(self.take().await?);
            }
            let size = self.pending.as_ref().map_or(0, |d| d.body().len() as u64);
            tokio::select! {
                permit = self.budget.acquire(size) => {
                    let mut d = self.pending.take()?;
                    d.hold(permit);
                    return Some(d);
                }
                r = self.shutdown.changed() => if r.is_err() || *self.shutdown.borrow() { return None },
            }
        }
    }

    /// What the pipeline holds of the budget now, and the most it ever held.
    pub fn held(&self) -> Held {
        self.budget.held()
    }

    /// The budget's limit in bytes.
    pub fn budget_limit(&self) -> u64 {
        self.budget.limit()
    }

    /// The count window (prefetch) of the current consumer.
    pub fn window(&self) -> u16 {
        self.window.current()
    }

    async fn take(&mut self) -> Option<Delivery> {
        loop {
            if let Some(c) = self.current.as_mut() {
                if let Some(d) = c.next().await {
                    if let Some(w) = self.window.observe(d.body().len() as u64) {
                        debug!(
                            window = w,
                            size = d.body().len(),
                            budget = self.budget.limit(),
                            "AMQP consumer window fitted to the in-flight byte budget"
                        );
                        c.request_prefetch(w);
                    }
                    return Some(d);
                }
                // Consumer ended (channel or connection closed): make sure the supervisor knows,
                // then wait for the next session's consumer.
                let _ = self.broken.send(c.generation());
                self.current = None;
            }
            if let Some(mut c) = self.slot.take() {
                c.request_prefetch(self.window.current());
                self.current = Some(c);
                continue;
            }
            if *self.shutdown.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.slot.fresh.notified() => {}
                r = self.shutdown.changed() => if r.is_err() || *self.shutdown.borrow() { return None },
            }
        }
    }
}

/// The supervisor task itself.
#[derive(Debug)]
pub struct Supervisor {
    pub handle: SupervisorHandle,
    /// `Some` when the plan consumes a queue.
    pub deliveries: Option<Deliveries>,
    pub task: JoinHandle<()>,
}

impl Supervisor {
    /// Start the supervisor task (it connects in the background; use
    /// [`SupervisorHandle::session`] to wait for the link).
    pub fn spawn(settings: AmqpSettings, plan: SessionPlan) -> Self {
        let (sessions_tx, sessions) = watch::channel(None);
        let (state_tx, state) = watch::channel(LinkState::Down {
            attempt: 0,
            reason: "starting".into(),
        });
        let (blocked_tx, blocked) = watch::channel(None);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let (broken_tx, broken_rx) = mpsc::unbounded_channel();
        let slot = Arc::new(ConsumerSlot::default());
        let window = settings.initial_window();
        let parties = Arc::new(std::sync::Mutex::new(plan.parties.clone()));
        let deliveries = plan.consume.as_ref().map(|_| Deliveries {
            slot: slot.clone(),
            current: None,
            broken: broken_tx.clone(),
            shutdown: shutdown_rx.clone(),
            budget: ByteBudget::new(settings.max_inflight_bytes),
            window: window.clone(),
            pending: None,
        });
        let run = Run {
            settings,
            plan,
            sessions_tx,
            state_tx,
            blocked_tx,
            shutdown_rx,
            broken_tx,
            broken_rx,
            slot,
            parties: parties.clone(),
            node: 0,
        };
        let task = tokio::spawn(run.run());
        Self {
            handle: SupervisorHandle {
                sessions,
                state,
                blocked,
                shutdown,
                parties,
            },
            deliveries,
            task,
        }
    }
}

struct Run {
    settings: AmqpSettings,
    plan: SessionPlan,
    sessions_tx: watch::Sender<Option<Arc<Session>>>,
    state_tx: watch::Sender<LinkState>,
    blocked_tx: watch::Sender<Option<String>>,
    shutdown_rx: watch::Receiver<bool>,
    broken_tx: mpsc::UnboundedSender<u64>,
    broken_rx: mpsc::UnboundedReceiver<u64>,
    slot: Arc<ConsumerSlot>,
    /// `plan.parties`, as a reload last set it.
    parties: Arc<std::sync::Mutex<Vec<HerId>>>,
    /// Which of the broker URLs ([`AmqpSettings::at`]) the next connect goes to.
    node: usize,
}

type EventStream = std::pin::Pin<Box<dyn futures_lite::Stream<Item = Event> + Send>>;

struct Live {
    session: Arc<Session>,
    consumer_open: Option<lapin::ChannelStatus>,
    /// Events of both connections, merged.
    events: EventStream,
}

impl Run {
    async fn run(mut self) {
        let mut generation = 0u64;
        let mut attempt = 0u32;
        // URLs that failed since the last round began (cluster: the next is tried at once).
        let mut failed_in_round = 0usize;
        loop {
            if *self.shutdown_rx.borrow() {
                break;
            }
            if failed_in_round == 0 {
                attempt += 1;
            }
            let url = self.settings.at(self.node).redacted_url();
            match self.establish(generation + 1).await {
                Ok(live) => {
                    failed_in_round = 0;
                    generation += 1;
                    info!(generation, attempt, url = %url, "AMQP session up");
                    let _ = self.state_tx.send(LinkState::Up { generation });
                    let reason = self.watch(generation, live).await;
                    let _ = self.sessions_tx.send(None);
                    let _ = self.blocked_tx.send(None);
                    let Some(reason) = reason else { break };
                    // The first reconnect after a loss also waits (the initial delay), so a broker
                    // that drops us at once is not hammered.
                    attempt = 0;
                    let delay = self.plan.backoff.delay(1, FaultKind::Transient);
                    warn!(generation, delay_ms = delay.as_millis() as u64, reason = %reason, "AMQP session lost; reconnecting");
                    let _ = self.state_tx.send(LinkState::Down { attempt: 0, reason });
                    if self.sleep(delay).await {
                        break;
                    }
                }
                Err(e) => {
                    let kind = e.kind();
                    let count = self.settings.url_count();
                    self.node = (self.node + 1) % count;
                    failed_in_round += 1;
                    if failed_in_round < count {
                        let next = self.settings.at(self.node).redacted_url();
                        match kind {
                            FaultKind::Configuration => {
                                error!(attempt, url = %url, next = %next, error = %e, "AMQP CONFIGURATION PROBLEM with this broker node, not a network glitch: fix it; trying the next node")
                            }
                            FaultKind::Transient => {
                                warn!(attempt, url = %url, next = %next, error = %e, "AMQP connect failed; trying the next broker node")
                            }
                        }
                        continue;
                    }
                    failed_in_round = 0;
                    let delay = self.plan.backoff.delay(attempt, kind);
                    let _ = self.state_tx.send(LinkState::Down {
                        attempt,
                        reason: e.to_string(),
                    });
                    match kind {
                        FaultKind::Configuration => error!(
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            url = %url,
                            error = %e,
                            "AMQP CONFIGURATION PROBLEM, not a network glitch: fix it; retrying slowly"
                        ),
                        FaultKind::Transient => warn!(
                            attempt,
                            delay_ms = delay.as_millis() as u64,
                            url = %url,
                            error = %e,
                            "AMQP connect failed; retrying"
                        ),
                    }
                    if self.sleep(delay).await {
                        break;
                    }
                }
            }
        }
        let _ = self.sessions_tx.send(None);
        let _ = self.state_tx.send(LinkState::ShutDown);
        info!("AMQP supervisor stopped");
    }

    /// Sleep, or return `true` early when shutdown is requested.
    async fn sleep(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.shutdown_rx.borrow(),
            _ = self.shutdown_rx.changed() => true,
        }
    }

    async fn establish(&mut self, generation: u64) -> Result<Live, AmqpError> {
        let settings = self.settings.at(self.node);
        let connection = connect(&settings).await?;
        let mut events: EventStream = Box::pin(connection.events_listener());
        let consuming = match &self.plan.consume {
            // Deliveries get a connection of their own (module comment: why).
            Some(_) => match connect(&settings.for_consuming()).await {
                Ok(c) => {
                    events = Box::pin(events.or(c.events_listener()));
                    Some(c)
                }
                Err(e) => {
                    let _ = connection.close(200, "setup failed".into()).await;
                    return Err(e);
                }
            },
            None => None,
        };
        match self
            .open_channels(&connection, consuming.as_ref(), generation)
            .await
        {
            Ok((publisher, consumer, declared)) => {
                // Drop "broken" notices from earlier generations.
                while self.broken_rx.try_recv().is_ok() {}
                let consumer_open = consumer.as_ref().map(|c| c.channel_status());
                let session = Arc::new(Session {
                    generation,
                    connection,
                    consuming,
                    publisher,
                });
                let _ = self.sessions_tx.send(Some(session.clone()));
                self.declare_since(&session.connection, &declared).await;
                if let Some(c) = consumer {
                    self.slot.put(c);
                }
                Ok(Live {
                    session,
                    consumer_open,
                    events,
                })
            }
            Err(e) => {
                let _ = connection.close(200, "setup failed".into()).await;
                if let Some(c) = &consuming {
                    let _ = c.close(200, "setup failed".into()).await;
                }
                Err(e)
            }
        }
    }

    async fn open_channels(
        &mut self,
        connection: &Connection,
        consuming: Option<&Connection>,
        generation: u64,
    ) -> Result<(Publisher, Option<Consumer>, Vec<HerId>), AmqpError> {
        let setup = connection
            .create_channel()
            .await
            .map_err(|e| AmqpError::classify("channel.open (topology)", "", "", e))?;
        let parties = self
            .parties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.plan.topology.declare(&setup, &parties).await?;
        let _ = setup.close(200, "topology declared".into()).await;
        let publisher = Publisher::open(connection)
            .await?
            .attach(generation, self.broken_tx.clone());
        let topology = &self.plan.topology;
        let consumer = match (&self.plan.consume, consuming) {
            // A partitioned intake: every partition, each with a fixed window fitted to its share
            // of the byte budget (Consumer::open_partitioned says why the window cannot follow).
            (Some(queue), Some(consuming))
                if topology.partitions > 0 && *queue == topology.inbound =>
            {
                let queues = topology.preferred();
                let window = super::budget::partition_window(
                    self.settings.max_inflight_bytes,
                    queues.len(),
                    self.settings.prefetch,
                    self.settings.max_message_bytes,
                );
                Some(
                    Consumer::open_partitioned(consuming, &queues, window)
                        .await?
                        .with_generation(generation),
                )
            }
            (Some(queue), Some(consuming)) => Some(
                Consumer::open(consuming, queue, self.settings.initial_window().current())
                    .await?
                    .with_generation(generation),
            ),
            _ => None,
        };
        Ok((publisher, consumer, parties))
    }

    /// Declares what a reload added to the party list while this session was being set up: such
    /// a reload found no session to declare on, and the list this session declared is older.
    /// Called once the session is visible to reloads, so every later reload declares on it itself.
    async fn declare_since(&self, connection: &Connection, declared: &[HerId]) {
        let now = self
            .parties
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if now == declared {
            return;
        }
        let added: Vec<HerId> = now
            .iter()
            .filter(|h| !declared.contains(h))
            .copied()
            .collect();
        let result = async {
            let channel = connection
                .create_channel()
                .await
                .map_err(|e| AmqpError::classify("channel.open (topology)", "", "", e))?;
            self.plan
                .topology
                .ensure_party_queues(&channel, &added)
                .await?;
            self.plan
                .topology
                .sync_hnmsg_bindings(&channel, declared, &now)
                .await?;
            let _ = channel.close(200, "topology declared".into()).await;
            Ok::<(), AmqpError>(())
        }
        .await;
        if let Err(e) = result {
            // The next session declares every party's queues before it consumes.
            warn!(error = %e, "declaring the parties a reload added during session setup failed");
        }
    }

    /// Wait until the session is lost (`Some(reason)`) or shutdown is requested (`None`).
    async fn watch(&mut self, generation: u64, mut live: Live) -> Option<String> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let reason = loop {
            tokio::select! {
                _ = self.shutdown_rx.changed() => {
                    live.session.close(200, "helsemelding shutting down").await;
                    return None;
                }
                ev = live.events.next() => match ev {
                    Some(Event::ConnectionBlocked(why)) => {
                        warn!(generation, reason = %why, "AMQP connection BLOCKED by the broker (resource alarm); publishes wait");
                        let _ = self.blocked_tx.send(Some(why));
                    }
                    Some(Event::ConnectionUnblocked) => {
                        info!(generation, "AMQP connection unblocked");
                        let _ = self.blocked_tx.send(None);
                    }
                    Some(Event::Error(e)) if !live.session.all_connected() => break format!("connection error: {e}"),
                    Some(_) => {}
                    None => break "connection event stream ended".to_owned(),
                },
                g = self.broken_rx.recv() => {
                    if g == Some(generation) {
                        break "a channel of the session closed".to_owned();
                    }
                }
                _ = tick.tick() => {
                    if !live.session.all_connected() {
                        break "connection no longer connected".to_owned();
                    }
                    if let Some(st) = &live.consumer_open {
                        if !st.connected() {
                            break "consumer channel closed".to_owned();
                        }
                    }
                }
            }
        };
        let _ = self.sessions_tx.send(None);
        live.session
            .close(320, "helsemelding: session lost, reconnecting")
            .await;
        Some(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let b = Backoff::default();
        for attempt in 1..40 {
            let d = b.delay(attempt, FaultKind::Transient);
            let base = Duration::from_millis(100)
                .saturating_mul(2u32.saturating_pow((attempt - 1).min(20)))
                .min(b.max);
            assert!(
                d >= base.mul_f64(0.5) && d <= b.max,
                "attempt {attempt}: {d:?}"
            );
        }
        assert!(b.delay(1, FaultKind::Transient) < Duration::from_millis(150));
        assert!(b.delay(30, FaultKind::Transient) >= Duration::from_secs(5));
        assert_eq!(
            b.delay(1, FaultKind::Configuration),
            Duration::from_secs(60)
        );
        let distinct: std::collections::HashSet<_> =
            (0..20).map(|_| b.delay(5, FaultKind::Transient)).collect();
        assert!(distinct.len() > 1, "jitter");
    }
}
