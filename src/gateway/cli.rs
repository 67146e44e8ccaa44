//! Operator commands of the gateway: `serve`, `reload`, `replay` and `tail`.
//!
//! `serve` loads and checks everything before it touches the broker — configuration and register
//! (every problem at once, as `check-config`), the installed schemas against `xsd/MANIFEST.toml`,
//! the trust store, every party's certificates and the gateway's signing key — and refuses to start
//! with any problem. It holds `<state>/helsemelding.pid` while it runs (`pidfile.rs`), and on SIGHUP
//! reloads (`reload.rs`). `reload` sends that SIGHUP. `replay` signs files as a sender would and
//! publishes them to the intake.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::amqp::connection::{connect, AmqpSettings};
use crate::amqp::headers::{ContentType, MessageHeaders};
use crate::amqp::publisher::{Publisher, Route};
use crate::amqp::topology::Topology;
use crate::apprec::AppRec;
use crate::cms::{RecipientCert, Signer};
use crate::config::{self, GatewayConfig};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::msghead::MsgHead;
use crate::xml::XmlLimits;

use super::assess::{Context, Policy};
use super::server::{Gateway, Settings};

/// Everything `serve` needs, loaded and checked.
pub struct Loaded {
    pub config: GatewayConfig,
    pub context: Context,
    pub signer: Signer,
    /// The certificates the hub depends on, with their expiry.
    pub certificates: Vec<crate::certs::InUse>,
}

/// Loads and checks everything (`crate::setup::load`, what `check-config` runs) and builds the
/// assessment context from it; returns every problem found.
pub fn load(config_path: &Path) -> Result<Loaded, Vec<String>> {
    let l = crate::setup::load(config_path)?;
    let max_bytes = usize::try_from(l.config.policy.max_message_bytes).unwrap_or(usize::MAX);
    let policy = Policy {
        max_message_bytes: max_bytes,
        require_signature: l.config.policy.require_signature,
        require_encryption: l.config.policy.require_encryption,
        route: l.config.policy.route_policy(),
        xml: XmlLimits {
            max_bytes,
            ..XmlLimits::default()
        },
    };
    let context = Context {
        schemas: Arc::new(l.schemas),
        trust: l.trust.map(Arc::new),
        register: Arc::new(l.register),
        fingerprints: l.fingerprints,
        encryption: Arc::new(super::assess::Encryption {
            hub: l.hub_keys,
            recipients: Arc::new(l.recipient_certs),
        }),
        policy,
        gateway_her: l.config.gateway.her_id,
    };
    Ok(Loaded {
        config: l.config,
        context,
        signer: l.signer,
        certificates: l.certificates,
    })
}

/// The gateway's runtime settings from its configuration.
pub fn settings(config: &GatewayConfig) -> Settings {
    let mut amqp = AmqpSettings::new(config.amqp.url.clone(), "serve");
    amqp.fallback_urls = config.amqp.fallback_urls.clone();
    amqp.tls_ca_file = config.amqp.tls_ca_file.clone();
    amqp.prefetch = config.amqp.prefetch;
    amqp.max_inflight_bytes = config.amqp.max_inflight_bytes;
    amqp.max_message_bytes = config.policy.max_message_bytes;
    amqp.heartbeat =
        std::time::Duration::from_secs(config.amqp.heartbeat.whole_seconds().max(0) as u64);
    let mut s = Settings::new(amqp, config.paths.state.clone());
    s.store_backend = config.store.clone();
    s.routing_log = Some(config.paths.routing_log.clone());
    s.metrics_addr = config.paths.http_listen;
    s.apprec_timeout = config.policy.apprec_timeout;
    s.retention = config.policy.retention;
    let r = &config.revocation;
    let secs =
        |d: time::Duration| std::time::Duration::from_millis(d.whole_milliseconds().max(0) as u64);
    s.revocation = Some(crate::revocation::RevocationSettings {
        fetch: r.fetch,
        refresh: secs(r.refresh),
        retry_min: secs(r.retry_min),
        retry_max: secs(r.retry_max),
        timeout: secs(r.timeout),
        watch: secs(r.watch),
        copies: crate::revocation::copies_dir(&config.paths.state),
    });
    s.topology.hnmsg_exchange = config.amqp.hnmsg_exchange.clone();
    s.topology.partitions = config.amqp.partitions;
    s.topology.prefer_partitions = config.amqp.prefer_partitions.clone();
    s.config = Some(config.clone());
    s.insight = insight_settings(config);
    s
}

/// The recorder's settings when `[insight]` is enabled and its keys load (`check-config` has
/// already refused a bad key file; a key file that went bad since is logged and insight stays off).
fn insight_settings(config: &GatewayConfig) -> Option<crate::insight::InsightSettings> {
    let i = &config.insight;
    if !i.enabled {
        return None;
    }
    match crate::insight::key::Keys::load(i.key_file.as_deref()?) {
        Ok(keys) => Some(crate::insight::InsightSettings {
            store_dir: config.paths.state.clone(),
            keys,
            retention: i.retention,
            queue: crate::insight::QUEUE,
        }),
        Err(e) => {
            tracing::error!(error = %e, "insight stays off");
            None
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The gateway configuration (see the comments in it for every key).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
}

/// `helsemelding serve`: runs until SIGTERM or SIGINT, then stops gracefully and exits 0. SIGHUP
/// reloads the configuration, the register and the trust directory (`reload.rs`).
pub fn run_serve(args: &ServeArgs) -> ExitCode {
    init_diagnostics();
    // Once the pid file names this process, `reload` may send SIGHUP, whose default action ends
    // the process: ignored until `Hangup::install` catches it (the files are read after that).
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to "ignore" runs no code in the signal's context.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    // The pid file (one gateway per state directory; `reload` finds the process by it). A
    // configuration that cannot be read is reported in full by `load` below.
    let pid_file = match GatewayConfig::load(&args.config) {
        Ok(c) => match super::pidfile::PidFile::acquire(&c.paths.state) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("helsemelding: not starting: pid file: {e}");
                return ExitCode::from(2);
            }
        },
        Err(_) => None,
    };
    let code = serve(args);
    if let Some(p) = pid_file {
        p.release();
    }
    code
}

fn serve(args: &ServeArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("helsemelding: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        // Catch SIGTERM/SIGINT before anything else: a stop requested while the configuration
        // and schemas are still loading is a clean stop (exit 0), not death by the signal's
        // default action (found by `helsemelding chaos`: a SIGTERM right after a restart).
        let mut stop = StopSignal::install();
        // SIGHUP's default action ends the process: caught from here on, a SIGHUP while starting
        // is a reload once the gateway runs.
        let mut hangup = Hangup::install();
        let loaded = match load(&args.config) {
            Ok(l) => l,
            Err(problems) => {
                eprintln!(
                    "helsemelding: not starting, {} problem(s) with {}:",
                    problems.len(),
                    args.config.display()
                );
                for p in problems {
                    eprintln!("  {p}");
                }
                return ExitCode::from(2);
            }
        };
        if stop.already_requested().await {
            tracing::info!("signal received while starting: not starting");
            return ExitCode::SUCCESS;
        }
        let mut settings = settings(&loaded.config);
        settings.certificates = loaded.certificates;
        match crate::gateway::crash::CrashAt::from_env() {
            Ok(None) => {}
            Ok(Some(c)) => {
                tracing::warn!(
                    point = c.point.name(),
                    nth = c.nth,
                    "fault injection armed ({}): this process will kill itself; never set it in production",
                    crate::gateway::crash::ENV
                );
                settings.crash_at = Some(c);
            }
            Err(e) => {
                eprintln!("helsemelding: not starting: {e}");
                return ExitCode::from(2);
            }
        }
        let clock = match super::fast_clock::from_env() {
            Ok((clock, 1)) => clock,
            Ok((clock, factor)) => {
                // Housekeeping every minute of the gateway's time, so that overdue and prune keep
                // pace with a clock that runs `factor` times faster than the wall clock.
                settings.housekeeping_every = (settings.housekeeping_every / factor)
                    .max(std::time::Duration::from_millis(200));
                clock
            }
            Err(e) => {
                eprintln!("helsemelding: not starting: {e}");
                return ExitCode::from(2);
            }
        };
        tracing::info!(
            config = %args.config.display(),
            broker = %config::redact_url(&loaded.config.amqp.url),
            her_id = %loaded.config.gateway.her_id,
            parties = loaded.context.register.parties().len(),
            "helsemelding starting"
        );
        // The HTTP port (metrics, health and the console) is served here, not by Gateway::start,
        // so that the console can be given the configuration it reads.
        let http = match settings.metrics_addr.take() {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => Some((addr, l)),
                Err(e) => {
                    eprintln!("helsemelding: cannot start: http endpoint {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let population = match &loaded.config.insight.population_file {
            Some(path) => match crate::insight::population::Population::load(path) {
                Ok(p) => Some(p),
                Err(problems) => {
                    eprintln!("helsemelding: not starting: [insight] population_file {}: {}", path.display(), problems.join("; "));
                    return ExitCode::from(2);
                }
            },
            None => None,
        };
        let amqp = settings.amqp.clone();
        let topology = settings.topology.clone();
        let register = loaded.context.register.clone();
        let gateway =
            match Gateway::start(settings, loaded.context, loaded.signer, clock).await {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("helsemelding: cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let http_task = match http {
            Some((addr, listener)) => {
                let report = gateway.insight().map(|r| {
                    Arc::new(crate::insight::report::ReportView { store: r.store(), register, population: population.clone() })
                });
                match crate::console::start(addr, listener, &loaded.config, gateway.party_list(), gateway.store_reads(), amqp, topology, gateway.metrics(), report) {
                    Ok(task) => Some(task),
                    Err(e) => {
                        eprintln!("helsemelding: cannot start: {e}");
                        gateway.shutdown().await;
                        return ExitCode::from(2);
                    }
                }
            }
            None => None,
        };
        loop {
            tokio::select! {
                _ = stop.wait() => break,
                // Logged and counted in the metrics by `reload` itself.
                _ = hangup.wait() => { let _ = gateway.reload(&args.config).await; }
            }
        }
        tracing::info!("signal received: stopping intake, finishing in-flight messages");
        if let Some(t) = http_task {
            t.abort();
        }
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// SIGHUP, caught from the moment [`Hangup::install`] is called.
struct Hangup {
    #[cfg(unix)]
    hup: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let hup = signal(SignalKind::hangup()).ok();
            if hup.is_none() {
                tracing::warn!("cannot catch SIGHUP: reloading needs a restart");
            }
            Hangup { hup }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// Waits for the next SIGHUP (forever where none can come). Cancel-safe.
    async fn wait(&mut self) {
        #[cfg(unix)]
        recv(&mut self.hup).await;
        #[cfg(not(unix))]
        std::future::pending::<()>().await;
    }
}

/// `helsemelding reload --help`.
pub const RELOAD_HELP: &str =
    "Tell the running gateway to re-read its configuration, the address register and the \
trust directory (it sends SIGHUP to the process named in <paths.state>/helsemelding.pid).\n\n\
The gateway checks everything exactly as `helsemelding check-config` does. If all is well it \
swaps the new set in between messages, declares the queues of new parties and logs one line \
saying what changed (\"configuration reloaded: …\"). If anything is wrong it keeps running with \
the configuration it had, logs every problem (\"reload problem: file:line: …\") and /metrics \
shows helsemelding_reload_last_success 0. Run `helsemelding check-config` first to see the \
problems here instead of in the gateway's log.\n\n\
Reloaded: the register (parties, certificates, message types, users), the trust directory \
(anchors, intermediates, CRLs), paths.register, paths.trust_dir, paths.schemas, \
policy.require_signature, policy.reject_unknown_level2. Everything else (broker URL, listen \
address, state directory, signing key, …) needs a restart; the gateway logs which of those \
differ and keeps their running values.\n\n\
Exit status: 0 when the signal was sent; 1 when no gateway runs with this configuration (no pid \
file, or one left behind by a gateway that did not stop cleanly) or the signal could not be sent; \
2 when the configuration cannot be read.";

/// Arguments of `reload`.
#[derive(clap::Args, Debug)]
pub struct ReloadArgs {
    /// The configuration the gateway was started with (its paths.state names the pid file).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
}

/// `helsemelding reload`: exit 0 once SIGHUP is sent; 1 when no gateway runs; 2 when the
/// configuration cannot tell where its state directory is.
pub fn run_reload(args: &ReloadArgs) -> ExitCode {
    // Only `[paths]`: the operator's shell need not hold the service's secrets (url_env).
    let paths = match GatewayConfig::load_paths(&args.config) {
        Ok(p) => p,
        Err(problems) => {
            eprintln!(
                "helsemelding reload: cannot read {} to find the gateway's state directory:",
                args.config.display()
            );
            for p in problems {
                eprintln!("  {p}");
            }
            return ExitCode::from(2);
        }
    };
    let path = super::pidfile::path_in(&paths.state);
    match super::pidfile::read(&path) {
        Ok(None) => {
            eprintln!(
                "helsemelding reload: no pid file at {}: no gateway is running with this configuration (paths.state = {}); start one with `helsemelding serve --config {}`",
                path.display(),
                paths.state.display(),
                args.config.display()
            );
            ExitCode::FAILURE
        }
        Ok(Some(super::pidfile::Holder::Stale(pid))) => {
            eprintln!(
                "helsemelding reload: the pid file {} names process {pid}, which is not a running gateway (it did not stop cleanly); nothing to reload — start it with `helsemelding serve --config {}`",
                path.display(),
                args.config.display()
            );
            ExitCode::FAILURE
        }
        Ok(Some(super::pidfile::Holder::Running(pid))) => match send_hangup(pid) {
            Ok(()) => {
                println!(
                    "sent SIGHUP to the gateway (pid {pid}); it logs the outcome (\"configuration reloaded: …\" or \"reload failed\" with every problem), and /metrics shows helsemelding_reload_last_success"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "helsemelding reload: cannot signal process {pid} (from {}): {e}",
                    path.display()
                );
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("helsemelding reload: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
fn send_hangup(pid: u32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(std::io::Error::other)?;
    // SAFETY: kill(2) with a pid read from the gateway's pid file and checked to be a gateway.
    if unsafe { libc::kill(pid, libc::SIGHUP) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn send_hangup(_pid: u32) -> std::io::Result<()> {
    Err(std::io::Error::other("signals are a Unix feature"))
}

/// SIGTERM and SIGINT, caught from the moment [`StopSignal::install`] is called.
struct StopSignal {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

#[cfg(unix)]
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

impl StopSignal {
    fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            // Registered now (not on first poll), so no signal between here and `wait` is missed.
            StopSignal {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    /// Whether a signal has already arrived (does not wait).
    async fn already_requested(&mut self) -> bool {
        futures_lite::future::poll_once(self.wait()).await.is_some()
    }

    /// Waits for the first signal.
    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            if self.term.is_none() && self.int.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = recv(&mut self.term) => {}
                _ = recv(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Diagnostics (not the routing log) go to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_diagnostics() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
        // lapin logs a returned message's body at WARN: message content must never reach a log.
        .add_directive(
            crate::amqp::LAPIN_LOG_DIRECTIVE
                .parse()
                .expect("a valid directive"),
        );
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

// ---------------------------------------------------------------------------------------------
// replay

/// What a replayed file is published with, where the file itself does not say.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub from_her: Option<HerId>,
    pub to_her: Option<HerId>,
    pub msg_type: Option<String>,
    pub msg_id: Option<MsgId>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("{0}: cannot tell {1}; give it with --{2}")]
    Missing(String, &'static str, &'static str),
    #[error("signing failed: {0}")]
    Sign(#[from] crate::cms::SignError),
    #[error("{0}")]
    Seal(crate::cms::SealError),
    #[error("publish failed: {0}")]
    Publish(#[from] crate::amqp::error::PublishError),
}

/// The wire headers a sender would put on `xml`: from the MsgHead (or AppRec) where it can be
/// read, else from `overrides` — so broken fixtures can be replayed too.
pub fn headers_for(
    name: &str,
    xml: &[u8],
    overrides: &Overrides,
    signed: bool,
    now: Timestamp,
) -> Result<MessageHeaders, ReplayError> {
    let (mut from, mut to, mut kind, mut id) = (None, None, None, None);
    if let Ok(h) = MsgHead::parse(xml) {
        from = h.sender_address().communication_party();
        to = h.receiver.address().communication_party();
        kind = Some(h.msg_type.v.clone());
        id = Some(h.msg_id.clone()).filter(|m| !m.as_str().is_empty());
    } else if let Ok(a) = AppRec::parse(xml) {
        from = a.sender.address().communication_party();
        to = a.receiver.address().communication_party();
        kind = Some("APPREC".to_owned());
        id = Some(a.id.clone());
    }
    let from = overrides
        .from_her
        .or(from)
        .ok_or_else(|| ReplayError::Missing(name.into(), "the sender HER-id", "from-her"))?;
    let to = overrides
        .to_her
        .or(to)
        .ok_or_else(|| ReplayError::Missing(name.into(), "the receiver HER-id", "to-her"))?;
    let msg_type = overrides
        .msg_type
        .clone()
        .or(kind)
        .ok_or_else(|| ReplayError::Missing(name.into(), "the message type", "type"))?;
    let message_id = overrides
        .msg_id
        .clone()
        .or(id)
        .unwrap_or_else(MsgId::random);
    let content_type = if signed {
        ContentType::SignedCms
    } else {
        ContentType::Xml
    };
    Ok(MessageHeaders::new(
        (from, to),
        msg_type,
        message_id,
        now,
        content_type,
    ))
}

/// Signs (when a signer is given), encrypts (when a certificate to encrypt to is given) and
/// publishes one file's content to the intake exchange, as the AMQP user `user` (RabbitMQ checks
/// it against the connection's user).
// One caller (`replay`); each parameter is an independent input of the replay.
#[allow(clippy::too_many_arguments)]
pub async fn replay_one(
    publisher: &Publisher,
    topology: &Topology,
    signer: Option<&Signer>,
    encrypt_to: Option<&RecipientCert>,
    name: &str,
    xml: &[u8],
    overrides: &Overrides,
    user: Option<&str>,
    now: Timestamp,
) -> Result<MessageHeaders, ReplayError> {
    let mut headers = headers_for(name, xml, overrides, signer.is_some(), now)?;
    let mut body = match signer {
        Some(s) => s.sign(xml, now)?,
        None => xml.to_vec(),
    };
    if let Some(cert) = encrypt_to {
        body = cert.seal(&body).map_err(ReplayError::Seal)?;
        headers.content_type = ContentType::EnvelopedCms;
    }
    let mut props = headers
        .to_properties()
        .map_err(crate::amqp::error::PublishError::from)?;
    if let Some(u) = user {
        props = props.with_user_id(u.into());
    }
    publisher
        .publish_with_properties(Route::intake(topology), props, &body)
        .await?;
    Ok(headers)
}

/// The user lapin authenticates as for this AMQP URL (`amqp://user:pass@host/vhost`): the URL's
/// user, percent-decoded by lapin's own URI parser (so it is the name RabbitMQ compares `user_id`
/// with), or lapin's default `guest` when the URL names none. `None` when lapin cannot parse the URL
/// (a connection to it would have failed already).
pub fn url_user(url: &str) -> Option<String> {
    url.parse::<lapin::uri::AMQPUri>()
        .ok()
        .map(|uri| uri.authority.userinfo.username)
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Configuration to take the broker URL from.
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Broker URL (instead of the configuration's).
    #[arg(long)]
    pub url: Option<String>,
    /// PEM PKCS#8 private key of the sender identity to sign with.
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// PEM certificate of that identity.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Publish unsigned (application/xml); the gateway accepts this only with require_signature = false.
    #[arg(long, conflicts_with_all = ["key", "cert"])]
    pub unsigned: bool,
    /// Encrypt (after signing) to this certificate, as HN.Msg does. Default: the configuration's
    /// first `[gateway] encryption_keys` certificate when its `[policy] require_encryption` is on.
    #[arg(long, conflicts_with = "plaintext")]
    pub encrypt_to: Option<PathBuf>,
    /// Do not encrypt, whatever the configuration requires (to see such a message refused).
    #[arg(long)]
    pub plaintext: bool,
    /// fromHerId when the file does not say (e.g. a not-well-formed fixture).
    #[arg(long)]
    pub from_her: Option<HerId>,
    /// toHerId when the file does not say.
    #[arg(long)]
    pub to_her: Option<HerId>,
    /// Message type (code list 8279) when the file does not say.
    #[arg(long = "type")]
    pub msg_type: Option<String>,
    /// message_id when the file does not say (default: a new UUID).
    #[arg(long)]
    pub msg_id: Option<String>,
    /// Files to publish.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// `helsemelding replay`: one line per file, `path<TAB>published|FAILED<TAB>detail`; exit 1 if any failed.
pub fn run_replay(args: &ReplayArgs) -> ExitCode {
    let config = GatewayConfig::load(&args.config);
    let url = match &args.url {
        Some(u) => u.clone(),
        None => match &config {
            Ok(c) => c.amqp.url.clone(),
            Err(ps) => {
                eprintln!(
                    "helsemelding replay: cannot read {}:",
                    args.config.display()
                );
                for p in ps {
                    eprintln!("  {p}");
                }
                return ExitCode::from(2);
            }
        },
    };
    let signer = match (&args.key, &args.cert, args.unsigned) {
        (Some(k), Some(c), false) => match Signer::from_pem_files(k, c) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("helsemelding replay: {e}");
                return ExitCode::from(2);
            }
        },
        (_, _, true) => None,
        _ => {
            eprintln!(
                "helsemelding replay: give --key and --cert of the sender identity, or --unsigned"
            );
            return ExitCode::from(2);
        }
    };
    let encrypt_to = match (&args.encrypt_to, args.plaintext, &config) {
        (_, true, _) => None,
        (Some(path), false, _) => Some(path.clone()),
        (None, false, Ok(c)) if c.policy.require_encryption => {
            c.gateway.encryption_keys.first().map(|k| k.cert.clone())
        }
        _ => None,
    };
    let encrypt_to = match encrypt_to.map(|p| RecipientCert::from_file(&p)) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            eprintln!("helsemelding replay: certificate to encrypt to: {e}");
            return ExitCode::from(2);
        }
    };
    let overrides = Overrides {
        from_her: args.from_her,
        to_her: args.to_her,
        msg_type: args.msg_type.clone(),
        msg_id: args.msg_id.clone().map(MsgId::new),
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("helsemelding replay: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let settings = AmqpSettings::new(url.clone(), "replay");
        let connection = match connect(&settings).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("helsemelding replay: {e}");
                return ExitCode::FAILURE;
            }
        };
        let publisher = match Publisher::open(&connection).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("helsemelding replay: {e}");
                return ExitCode::FAILURE;
            }
        };
        let user = url_user(&url);
        let topology = Topology::default();
        let mut failed = 0;
        for f in &args.files {
            let name = f.display().to_string();
            let outcome = match std::fs::read(f) {
                Ok(xml) => replay_one(
                    &publisher,
                    &topology,
                    signer.as_ref(),
                    encrypt_to.as_ref(),
                    &name,
                    &xml,
                    &overrides,
                    user.as_deref(),
                    time::OffsetDateTime::now_utc(),
                )
                .await
                .map(|h| {
                    format!(
                        "msg {} {} {} -> {}",
                        h.message_id, h.msg_type, h.from_her_id, h.to_her_id
                    )
                })
                .map_err(|e| e.to_string()),
                Err(e) => Err(format!("cannot read: {e}")),
            };
            match outcome {
                Ok(d) => println!("{name}\tpublished\t{d}"),
                Err(e) => {
                    failed += 1;
                    println!("{name}\tFAILED\t{e}");
                }
            }
        }
        let _ = connection.close(200, "replay done".into()).await;
        if failed > 0 {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}

// ---------------------------------------------------------------------------------------------
// tail

#[derive(clap::Args, Debug)]
pub struct TailArgs {
    /// Configuration naming the routing log (paths.routing_log).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Read this routing log file instead.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// How many earlier decisions to show first.
    #[arg(short = 'n', long, default_value_t = 20)]
    pub lines: usize,
    /// Keep following new decisions (like tail -f).
    #[arg(short, long)]
    pub follow: bool,
}

pub fn run_tail(args: &TailArgs) -> ExitCode {
    let path = match &args.file {
        Some(f) => f.clone(),
        // Only `[paths]`: the operator's shell need not hold the service's secrets (url_env).
        None => match GatewayConfig::load_paths(&args.config) {
            Ok(p) => p.routing_log,
            Err(ps) => {
                eprintln!("helsemelding tail: cannot read {}:", args.config.display());
                for p in ps {
                    eprintln!("  {p}");
                }
                return ExitCode::from(2);
            }
        },
    };
    match super::tail::tail(&path, args.lines, args.follow, &mut std::io::stdout()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helsemelding tail: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_user_is_decoded_by_lapins_parser_without_panicking() {
        assert_eq!(
            url_user("amqp://guest:guest@127.0.0.1:5672/%2f").as_deref(),
            Some("guest")
        );
        assert_eq!(url_user("amqps://ehr%2Dx:p@h/v").as_deref(), Some("ehr-x"));
        // No user in the URL: lapin logs in as its default user, and that is who RabbitMQ checks.
        assert_eq!(
            url_user("amqp://127.0.0.1:5672/%2f").as_deref(),
            Some("guest")
        );
        // `%` followed by a non-ASCII character (the old hand decoder sliced inside it and panicked).
        assert_eq!(
            url_user("amqp://%x\u{e9}:p@h/v").as_deref(),
            Some("%x\u{e9}")
        );
        assert_eq!(url_user("amqp://%\u{e9}:p@h/v").as_deref(), Some("%\u{e9}"));
        // A truncated escape stays as it is.
        assert_eq!(url_user("amqp://ab%4:p@h/v").as_deref(), Some("ab%4"));
        // A percent escape that decodes to invalid UTF-8 and a URL that is no URL: no user, no panic.
        assert_eq!(url_user("amqp://%ff:p@h/v"), None);
        assert_eq!(url_user("not a url"), None);
    }

    #[test]
    fn replay_headers_come_from_the_file_or_the_overrides() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let xml = std::fs::read("fixtures/messages/delivered/foresporsel-gp-to-nursing-home.xml")
            .unwrap();
        let h = headers_for("f", &xml, &Overrides::default(), true, now).unwrap();
        assert_eq!((h.from_her_id, h.to_her_id), (HerId(82001), HerId(81001)));
        assert_eq!(h.msg_type, "DIALOG_FORESPORSEL");
        assert_eq!(h.content_type, ContentType::SignedCms);
        let broken = std::fs::read("fixtures/messages/rejected/T01-not-well-formed.xml").unwrap();
        let err = headers_for("b", &broken, &Overrides::default(), true, now).unwrap_err();
        assert!(err.to_string().contains("--from-her"), "{err}");
        let o = Overrides {
            from_her: Some(HerId(82001)),
            to_her: Some(HerId(81001)),
            msg_type: Some("DIALOG_FORESPORSEL".into()),
            msg_id: None,
        };
        let h = headers_for("b", &broken, &o, false, now).unwrap();
        assert!(h.message_id.is_uuid());
        assert_eq!(h.content_type, ContentType::Xml);
    }
}
