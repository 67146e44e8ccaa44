//! Operator commands of the gateway: `serve`, `replay` and `tail`.
//!
//! `serve` loads and checks everything before it touches the broker — configuration and register
//! (every problem at once, as `check-config`), the installed schemas against `xsd/MANIFEST.toml`,
//! the trust store, every party's certificates and the gateway's signing key — and refuses to start
//! with any problem. `replay` signs files as a sender would and publishes them to the intake.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use crate::amqp::connection::{connect, AmqpSettings};
use crate::amqp::headers::{ContentType, MessageHeaders};
use crate::amqp::publisher::{Publisher, Route};
use crate::amqp::topology::Topology;
use crate::apprec::AppRec;
use crate::cms::{self, Signer, TrustStore};
use crate::config::{self, GatewayConfig};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::msghead::MsgHead;
use crate::xml::XmlLimits;
use crate::xsd::Schemas;

use super::assess::{Context, Policy};
use super::server::{Clock, Gateway, Settings};

/// Everything `serve` needs, loaded and checked.
pub struct Loaded {
    pub config: GatewayConfig,
    pub context: Context,
    pub signer: Signer,
}

/// Loads the configuration and everything it names; returns every problem found.
pub fn load(config_path: &Path) -> Result<Loaded, Vec<String>> {
    let (config, register) = config::check(config_path)
        .map_err(|ps| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    if let Err(ps) = crate::schemas::verify_installed(&config.paths.schemas) {
        let hint = format!(
            "install them: helsemelding install-schemas --from ../shared/standards/xsd --to {}",
            config.paths.schemas.display()
        );
        let missing = ps
            .iter()
            .filter(|p| matches!(p, crate::schemas::ManifestProblem::Missing { .. }))
            .count();
        if missing > 3 {
            // A fresh checkout: one line, not one per file.
            problems.push(format!(
                "{missing} of the schema files in xsd/MANIFEST.toml are missing in {} ({hint})",
                config.paths.schemas.display()
            ));
            problems.extend(
                ps.iter()
                    .filter(|p| !matches!(p, crate::schemas::ManifestProblem::Missing { .. }))
                    .map(|p| p.to_string()),
            );
        } else {
            problems.extend(ps.iter().map(|p| format!("{p} ({hint})")));
        }
    }
    let schemas = if problems.is_empty() {
        match Schemas::load(&config.paths.schemas) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("schemas: {e}"));
                None
            }
        }
    } else {
        None
    };
    let trust = match TrustStore::load(&config.paths.trust_dir) {
        Ok(t) => Some(t),
        Err(e) if config.policy.require_signature => {
            problems.push(format!("trust store: {e}"));
            None
        }
        Err(_) => None,
    };
    let mut fingerprints: HashMap<HerId, HashSet<String>> = HashMap::new();
    for party in register.parties() {
        for cert in &party.certificates {
            let path = resolve(&config.base_dir, cert);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| cms::certificate_fingerprint(&b).map_err(|e| e.to_string()))
            {
                Ok(f) => {
                    fingerprints.entry(party.her_id).or_default().insert(f);
                }
                Err(e) => problems.push(format!(
                    "party {}: certificate {}: {e}",
                    party.her_id,
                    path.display()
                )),
            }
        }
    }
    let signer =
        match Signer::from_pem_files(&config.gateway.signing_key, &config.gateway.signing_cert) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("gateway signing identity: {e}"));
                None
            }
        };
    match (schemas, signer) {
        (Some(schemas), Some(signer)) if problems.is_empty() => {
            let policy = Policy {
                max_message_bytes: usize::try_from(config.policy.max_message_bytes)
                    .unwrap_or(usize::MAX),
                require_signature: config.policy.require_signature,
                route: config.policy.route_policy(),
                xml: XmlLimits {
                    max_bytes: usize::try_from(config.policy.max_message_bytes)
                        .unwrap_or(usize::MAX),
                    ..XmlLimits::default()
                },
            };
            let context = Context {
                schemas: Arc::new(schemas),
                trust: trust.map(Arc::new),
                register: Arc::new(register),
                fingerprints,
                policy,
                gateway_her: config.gateway.her_id,
            };
            Ok(Loaded {
                config,
                context,
                signer,
            })
        }
        _ => Err(problems),
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The gateway's runtime settings from its configuration.
pub fn settings(config: &GatewayConfig) -> Settings {
    let mut amqp = AmqpSettings::new(config.amqp.url.clone(), "serve");
    amqp.prefetch = config.amqp.prefetch;
    amqp.heartbeat =
        std::time::Duration::from_secs(config.amqp.heartbeat.whole_seconds().max(0) as u64);
    let mut s = Settings::new(amqp, config.paths.state.clone());
    s.routing_log = Some(config.paths.routing_log.clone());
    s.metrics_addr = config.paths.http_listen;
    s.apprec_timeout = config.policy.apprec_timeout;
    s.retention = config.policy.retention;
    s
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The gateway configuration (see the comments in it for every key).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
}

/// `helsemelding serve`: runs until SIGTERM or SIGINT, then stops gracefully and exits 0.
pub fn run_serve(args: &ServeArgs) -> ExitCode {
    init_diagnostics();
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
        let parties: Vec<HerId> = loaded.context.register.parties().iter().map(|p| p.her_id).collect();
        let amqp = settings.amqp.clone();
        let topology = settings.topology.clone();
        let gateway =
            match Gateway::start(settings, loaded.context, loaded.signer, Clock::system()).await {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("helsemelding: cannot start: {e}");
                    return ExitCode::FAILURE;
                }
            };
        let http_task = match http {
            Some((addr, listener)) => {
                match crate::console::start(addr, listener, &loaded.config, parties, amqp, topology, gateway.metrics()) {
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
        stop.wait().await;
        tracing::info!("signal received: stopping intake, finishing in-flight messages");
        if let Some(t) = http_task {
            t.abort();
        }
        gateway.shutdown().await;
        ExitCode::SUCCESS
    })
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
    Ok(MessageHeaders {
        from_her_id: from,
        to_her_id: to,
        msg_type,
        message_id,
        application_timestamp: now,
        content_type: if signed {
            ContentType::SignedCms
        } else {
            ContentType::Xml
        },
        error_condition: None,
        error_description: None,
        original_message_id: None,
    })
}

/// Signs (when a signer is given) and publishes one file's content to the intake exchange, as
/// the AMQP user `user` (RabbitMQ checks it against the connection's user).
// One caller (`replay`); each parameter is an independent input of the replay.
#[allow(clippy::too_many_arguments)]
pub async fn replay_one(
    publisher: &Publisher,
    topology: &Topology,
    signer: Option<&Signer>,
    name: &str,
    xml: &[u8],
    overrides: &Overrides,
    user: Option<&str>,
    now: Timestamp,
) -> Result<MessageHeaders, ReplayError> {
    let headers = headers_for(name, xml, overrides, signer.is_some(), now)?;
    let body = match signer {
        Some(s) => s.sign(xml, now)?,
        None => xml.to_vec(),
    };
    let mut props = headers
        .to_properties()
        .map_err(crate::amqp::error::PublishError::from)?;
    if let Some(u) = user {
        props = props.with_user_id(u.into());
    }
    publisher
        .publish_with_properties(
            Route::Exchange {
                exchange: &topology.exchange,
                routing_key: &topology.inbound,
            },
            props,
            &body,
        )
        .await?;
    Ok(headers)
}

/// The user name in an AMQP URL (`amqp://user:pass@host/vhost`), percent-decoded.
pub fn url_user(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let user = userinfo.split(':').next()?;
    let mut out = Vec::new();
    let b = user.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&user[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok().filter(|u| !u.is_empty())
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
    let url = match &args.url {
        Some(u) => u.clone(),
        None => match GatewayConfig::load(&args.config) {
            Ok(c) => c.amqp.url,
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
        None => match GatewayConfig::load(&args.config) {
            Ok(c) => c.paths.routing_log,
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
    fn url_user_is_decoded() {
        assert_eq!(
            url_user("amqp://guest:guest@127.0.0.1:5672/%2f").as_deref(),
            Some("guest")
        );
        assert_eq!(url_user("amqps://ehr%2Dx:p@h/v").as_deref(), Some("ehr-x"));
        assert_eq!(url_user("amqp://127.0.0.1:5672/%2f"), None);
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
