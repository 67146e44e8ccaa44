//! Configuration: `config/gateway.toml` (the gateway) and the address register it names
//! (`config/parties.toml`), DESIGN §4.
//!
//! Input: the path of `gateway.toml`. Output: a [`GatewayConfig`] with every path resolved and every
//! default filled in, and the [`Register`]. [`check`] reports **every** problem at once
//! ([`ConfigProblem`]: file, line where TOML gives one, key, what is wrong), never just the first —
//! an operator fixing a config should not need ten restarts.
//!
//! Parsing is strict: each section is a serde struct with `deny_unknown_fields`. To find all
//! problems, each section (and each `[[party]]`) is deserialized on its own; when serde stops at a
//! bad key, that key is recorded and removed, and the section is read again.
//!
//! Decisions:
//! - **Relative paths** (in both files, including party certificates) resolve against the parent of
//!   the directory holding `gateway.toml` — the repository root for `config/gateway.toml`, so the
//!   paths in the files read the same as from a shell at the root, whatever the working directory.
//! - **Secrets** are never inline: `signing_key` is a file path (a PEM pasted into the value is
//!   refused); the AMQP URL (which may carry a password) can come from the environment with
//!   `url_env = "HELSEMELDING_AMQP_URL"` instead of `url` — exactly one of the two; so can the
//!   PostgreSQL store's (`[store] url_env`). `tail` and `reload` read the file without them
//!   ([`GatewayConfig::load_paths`]).
//! - **Extension point**: schema installation and trust-store loading are checked by their own
//!   stages; they report through [`ProblemKind::Schemas`] and [`ProblemKind::TrustStore`], which
//!   `check-config` prints like any other problem (see [`ConfigProblem::new`]).

mod cli;
mod duration;
pub mod scratch;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use crate::ids::HerId;
use crate::register::{Party, Register, RegisterError};
use crate::route::RoutePolicy;

pub use cli::{check_tls_brokers, run_check_config, CheckConfigArgs};
pub use duration::{parse_duration, BadDuration, ConfigDuration};

/// Where the CLI looks for the configuration unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "config/gateway.toml";

/// `[amqp]`: the broker connection.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpConfig {
    /// The broker URL (from `url`, or from the environment variable named by `url_env`, or the
    /// first of `urls`).
    pub url: String,
    /// The other nodes of a broker cluster (`urls` after the first), tried in turn when `url`
    /// cannot be reached: a gateway survives losing the node it is connected to.
    pub fallback_urls: Vec<String>,
    /// PEM file with the CA certificate(s) that sign the brokers' TLS certificates (`amqps://`).
    pub tls_ca_file: Option<PathBuf>,
    /// Consumer prefetch: how many unacknowledged deliveries may be in flight (bounded, never 0).
    pub prefetch: u16,
    /// AMQP heartbeat interval.
    pub heartbeat: time::Duration,
    /// Bytes of inbound message bodies in flight at once: the gateway stops taking deliveries
    /// rather than growing (never below `policy.max_message_bytes`).
    pub max_inflight_bytes: u64,
    /// `hnmsg_exchange`: the direct exchange through which Helsenorge.Messaging senders address a
    /// receiver's queue by namespace (`/exchange/{name}/{herId}_async`); bound to the intake.
    pub hnmsg_exchange: Option<String>,
    /// `partitions`: intake partitions for several instances (0: one intake queue; DESIGN §6,
    /// `amqp::topology`).
    pub partitions: u16,
    /// `prefer_partitions`: partitions (0 ..= `partitions`) this instance subscribes to at once;
    /// the others after a standby delay. `None`: all at once.
    pub prefer_partitions: Option<Vec<u16>>,
}

impl fmt::Debug for AmqpConfig {
    // The URL may carry a password: print everything but it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact_url(&self.url))
            .field(
                "fallback_urls",
                &self
                    .fallback_urls
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("tls_ca_file", &self.tls_ca_file)
            .field("prefetch", &self.prefetch)
            .field("heartbeat", &self.heartbeat)
            .field("max_inflight_bytes", &self.max_inflight_bytes)
            .field("hnmsg_exchange", &self.hnmsg_exchange)
            .field("partitions", &self.partitions)
            .field("prefer_partitions", &self.prefer_partitions)
            .finish()
    }
}

/// The URL with any password replaced by `***`, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, None), |(a, p)| (a, Some(p)));
    let redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{redacted}/{p}"),
        None => format!("{scheme}://{redacted}"),
    }
}

/// `[gateway]`: the gateway's own identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayIdentity {
    /// The gateway's own party (it signs the AppRecs it issues); must be in the register.
    pub her_id: HerId,
    /// PEM private key file for signing.
    pub signing_key: PathBuf,
    /// PEM certificate file matching `signing_key`.
    pub signing_cert: PathBuf,
    /// `encryption_keys`: the keys senders encrypt to (CMS EnvelopedData), each with its certificate;
    /// several during a rotation (the RecipientInfo of a message names the one it used).
    pub encryption_keys: Vec<EncryptionKeyFiles>,
}

/// One of the gateway's decryption keys and its certificate (`[gateway] encryption_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyFiles {
    /// PEM (PKCS#8) RSA private key file (a path, never the key itself).
    pub key: PathBuf,
    /// PEM certificate of that key (keyUsage keyEncipherment); senders encrypt to it.
    pub cert: PathBuf,
}

/// `[paths]`, resolved (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathsConfig {
    pub register: PathBuf,
    pub trust_dir: PathBuf,
    pub schemas: PathBuf,
    pub state: PathBuf,
    /// The routing log file `helsemelding tail` follows (JSON lines; also printed on stdout).
    pub routing_log: PathBuf,
    /// Local address of the `/metrics` and `/health` endpoint; empty = off.
    pub http_listen: Option<std::net::SocketAddr>,
}

/// `[policy]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// Largest accepted message in bytes (default 35 MiB, like NHN's bus).
    pub max_message_bytes: u64,
    /// No AppRec from a recipient within this long makes the message overdue (HIS 80415 §3.2: 96 h).
    pub apprec_timeout: time::Duration,
    /// How long delivery state is kept before pruning.
    pub retention: time::Duration,
    /// Refuse unsigned (`application/xml`) traffic.
    pub require_signature: bool,
    /// Refuse unencrypted traffic (DESIGN §1 "Encryption"), and encrypt everything the gateway sends.
    /// Default false (a configuration without the key keeps its behaviour); the shipped one says true.
    pub require_encryption: bool,
    /// E21 for an unknown/missing level-2 party at a known organisation (KAN, "must be configurable
    /// by the customer", HIS 80415 / NOTES §7), else deliver to the organisation.
    pub reject_unknown_level2: bool,
}

impl PolicyConfig {
    /// The part of the policy routing needs.
    pub fn route_policy(&self) -> RoutePolicy {
        RoutePolicy {
            reject_unknown_level2: self.reject_unknown_level2,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_message_bytes: 36_700_160,
            apprec_timeout: time::Duration::hours(96),
            retention: time::Duration::days(30),
            require_signature: true,
            require_encryption: false,
            reject_unknown_level2: true,
        }
    }
}

/// The whole of `gateway.toml`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// The file it was read from.
    pub config_path: PathBuf,
    /// What relative paths were resolved against (parent of the config file's directory).
    pub base_dir: PathBuf,
    pub amqp: AmqpConfig,
    pub gateway: GatewayIdentity,
    pub paths: PathsConfig,
    pub policy: PolicyConfig,
    pub console: ConsoleConfig,
    pub revocation: RevocationConfig,
    pub insight: InsightConfig,
    /// `[store]`: where delivery state is kept.
    pub store: StoreBackend,
}

/// `[store]`: the delivery store's backend (DESIGN §3, §6).
#[derive(Clone, PartialEq, Eq, Default)]
pub enum StoreBackend {
    /// The embedded redb file in `paths.state` (the default: one instance, nothing to install).
    #[default]
    Redb,
    /// PostgreSQL, shared by several gateway instances (`url = "postgres://user@host/db"`).
    Postgres { url: String },
}

impl std::fmt::Debug for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redb => write!(f, "Redb"),
            // The URL may carry a password.
            Self::Postgres { url } => write!(f, "Postgres({})", redact_url(url)),
        }
    }
}

impl std::fmt::Display for StoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redb => write!(f, "redb"),
            Self::Postgres { url } => write!(f, "postgres {}", redact_url(url)),
        }
    }
}

/// `[insight]`: what the health community learns from the traffic (src/insight, DESIGN §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InsightConfig {
    /// Record observations after each commit (off unless configured).
    pub enabled: bool,
    /// The pseudonymisation keys, lines `insight HEX` (0600; the last line is the newest).
    pub key_file: Option<PathBuf>,
    /// Observations and pseudonyms of episodes closed longer than this are deleted.
    pub retention: time::Duration,
    /// Inhabitants per municipality and year (CSV `kommunenummer,year,population`), for I2 per
    /// 1,000 inhabitants (`insight::population`); optional.
    pub population_file: Option<PathBuf>,
}

impl Default for InsightConfig {
    fn default() -> Self {
        InsightConfig {
            enabled: false,
            key_file: None,
            retention: time::Duration::days(30),
            population_file: None,
        }
    }
}

/// `[revocation]`: keeping CRLs current (`crate::revocation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationConfig {
    /// Fetch CRLs from the distribution points named in the trusted certificates.
    pub fetch: bool,
    /// At most this long between two fetches of a CA's CRL (sooner at half its validity window).
    pub refresh: time::Duration,
    /// First pause after a failed fetch; doubled per failure up to `retry_max`.
    pub retry_min: time::Duration,
    pub retry_max: time::Duration,
    /// Longest a fetch may take.
    pub timeout: time::Duration,
    /// How often `crls/` of the trust directory is looked at for new files.
    pub watch: time::Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        RevocationConfig {
            fetch: true,
            refresh: time::Duration::hours(1),
            retry_min: time::Duration::seconds(30),
            retry_max: time::Duration::minutes(15),
            timeout: time::Duration::seconds(10),
            watch: time::Duration::seconds(30),
        }
    }
}

/// `[console]`: who may use the operator console on `paths.http_listen` (src/console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// A file holding one bearer token (at least 32 characters), for `Authorization: Bearer`.
    pub token_file: Option<PathBuf>,
    /// A file of `name:$argon2id$…` lines (PHC strings), for `Authorization: Basic`.
    pub password_file: Option<PathBuf>,
    /// How often the console's pages reload themselves.
    pub refresh: time::Duration,
}

impl ConsoleConfig {
    /// Whether any credentials are configured (required for a bind beyond loopback, and for redrive).
    pub fn has_credentials(&self) -> bool {
        self.token_file.is_some() || self.password_file.is_some()
    }
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            token_file: None,
            password_file: None,
            refresh: time::Duration::seconds(5),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file the problem is in (or that is missing).
    pub file: PathBuf,
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// The key, e.g. `amqp.prefetch` or `party[3].certificates`, where there is one.
    pub key: Option<String>,
    pub kind: ProblemKind,
}

/// What kind of problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// Not valid TOML.
    Syntax(String),
    /// A key or section this version does not know (strict: a typo must not silently fall back to a default).
    UnknownKey(String),
    /// A key is required but absent.
    Missing(String),
    /// A value of the wrong type or out of range.
    BadValue(String),
    /// A file or directory named by the configuration cannot be used.
    MissingFile { path: PathBuf, reason: String },
    /// A certificate file does not parse as PEM X.509.
    BadCertificate { path: PathBuf, reason: String },
    /// A secret was written into the file instead of referenced.
    InlineSecret(String),
    /// The address register is inconsistent.
    Register(RegisterError),
    /// `gateway.her_id` is not a party of the register.
    GatewayNotInRegister(HerId),
    /// Extension point (schema stage): the configured schemas are not installed or do not compile.
    Schemas(String),
    /// Extension point (verify stage): the trust store does not load.
    TrustStore(String),
}

impl ConfigProblem {
    /// A problem in `file` (at `line`, about `key`, where known). For stages that add their own
    /// checks to `check-config` (schemas, trust store).
    pub fn new(
        file: impl Into<PathBuf>,
        line: Option<usize>,
        key: Option<&str>,
        kind: ProblemKind,
    ) -> Self {
        ConfigProblem {
            file: file.into(),
            line,
            key: key.map(str::to_owned),
            kind,
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax(m) => write!(f, "not valid TOML: {m}"),
            Self::UnknownKey(m) | Self::Missing(m) | Self::BadValue(m) => f.write_str(m),
            Self::MissingFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            Self::BadCertificate { path, reason } => {
                write!(f, "certificate {}: {reason}", path.display())
            }
            Self::InlineSecret(m) => write!(f, "secret written inline: {m}"),
            Self::Register(e) => write!(f, "{e}"),
            Self::GatewayNotInRegister(her) => {
                write!(
                    f,
                    "the gateway's own HER-id {her} is not a party in the address register"
                )
            }
            Self::Schemas(m) => write!(f, "schemas: {m}"),
            Self::TrustStore(m) => write!(f, "trust store: {m}"),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.kind)
    }
}

// ---- raw file shapes (strict) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGatewayFile {
    #[allow(dead_code)]
    amqp: IgnoredAny,
    #[allow(dead_code)]
    gateway: IgnoredAny,
    #[allow(dead_code)]
    paths: IgnoredAny,
    #[allow(dead_code)]
    #[serde(default)]
    policy: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[serde(default)]
    console: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[serde(default)]
    revocation: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[serde(default)]
    insight: Option<IgnoredAny>,
    #[allow(dead_code)]
    #[serde(default)]
    store: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAmqp {
    url: Option<String>,
    url_env: Option<String>,
    /// The nodes of a broker cluster, tried in this order (instead of `url`/`url_env`).
    urls: Option<Vec<String>>,
    tls_ca_file: Option<PathBuf>,
    #[serde(default = "default_prefetch")]
    prefetch: u16,
    #[serde(default = "default_heartbeat")]
    heartbeat: ConfigDuration,
    /// `None`: [`default_max_inflight_bytes`], raised with partitions (see there).
    max_inflight_bytes: Option<u64>,
    #[serde(default)]
    hnmsg_exchange: Option<String>,
    #[serde(default)]
    partitions: u16,
    prefer_partitions: Option<Vec<u16>>,
}

impl RawAmqp {
    /// The in-flight byte budget: as set, or the default — which with partitions is raised so that
    /// every intake partition can hold [`DEFAULT_PARTITION_WINDOW`] messages of the largest size at
    /// once (each partition's consumer has a fixed window, its share of the budget over
    /// `max_message_bytes`: `Consumer::open_partitioned`, `budget::partition_window`).
    fn max_inflight_bytes(&self, max_message_bytes: u64) -> u64 {
        self.max_inflight_bytes.unwrap_or_else(|| {
            default_max_inflight_bytes().max(
                partitions_floor(self.partitions, max_message_bytes)
                    .saturating_mul(DEFAULT_PARTITION_WINDOW),
            )
        })
    }
}

/// Messages each intake partition's consumer may hold at once with the default budget. One would
/// keep an instance to K + 1 messages in flight in all (measured: 229 msg/s at 4 KB for two
/// instances with K = 4, against 2,880 with a large window); four give each partition room to
/// overlap one message's commit with the next ones' verification, for a memory bound of
/// (K + 1) x 4 x `max_message_bytes` that real traffic (mostly 4-50 KB) comes nowhere near.
pub const DEFAULT_PARTITION_WINDOW: u64 = 4;

/// Bytes that `partitions + 1` intake queues, each holding one message of `max_message_bytes`,
/// take at once.
fn partitions_floor(partitions: u16, max_message_bytes: u64) -> u64 {
    if partitions == 0 {
        0
    } else {
        (u64::from(partitions) + 1).saturating_mul(max_message_bytes)
    }
}

/// Why `name` cannot be the HN.Msg exchange: RabbitMQ's rules for exchange names (at most 255
/// bytes; `amq.` is reserved), and it must differ from the gateway's own `helsemelding` exchange.
fn bad_exchange_name(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("empty: leave hnmsg_exchange out instead".into())
    } else if name.len() > 255 {
        Some(format!("{} bytes, RabbitMQ allows at most 255", name.len()))
    } else if name.starts_with("amq.") {
        Some(format!(
            "{name:?}: names starting with amq. are reserved by RabbitMQ"
        ))
    } else if name == crate::amqp::topology::EXCHANGE {
        Some(format!("{name:?} is the gateway's own intake exchange; use the HN.Msg namespace (the connection string's path, e.g. NHNTestServiceBus)"))
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        Some(format!("{name:?}: use letters, digits and - _ . : only (it is the last path segment of HN.Msg's connection string)"))
    } else {
        None
    }
}

fn default_max_inflight_bytes() -> u64 {
    crate::amqp::connection::DEFAULT_MAX_INFLIGHT_BYTES
}

fn default_prefetch() -> u16 {
    256
}

fn default_heartbeat() -> ConfigDuration {
    ConfigDuration(time::Duration::seconds(10))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    // Optional here only so that one bad key does not hide the others; absence is reported.
    her_id: Option<HerId>,
    signing_key: Option<PathBuf>,
    signing_cert: Option<PathBuf>,
    #[serde(default)]
    encryption_keys: Vec<EncryptionKeyFiles>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    // Optional here only so that one bad key does not hide the others; absence is reported.
    register: Option<PathBuf>,
    trust_dir: Option<PathBuf>,
    #[serde(default = "default_schemas")]
    schemas: PathBuf,
    #[serde(default = "default_state")]
    state: PathBuf,
    #[serde(default = "default_routing_log")]
    routing_log: PathBuf,
    #[serde(default = "default_http_listen")]
    http_listen: String,
}

fn default_routing_log() -> PathBuf {
    PathBuf::from("var/routing.jsonl")
}

fn default_http_listen() -> String {
    "127.0.0.1:9464".into()
}

fn default_schemas() -> PathBuf {
    PathBuf::from("xsd")
}

fn default_state() -> PathBuf {
    PathBuf::from("var/state")
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawPolicy {
    max_message_bytes: Option<u64>,
    apprec_timeout: Option<ConfigDuration>,
    retention: Option<ConfigDuration>,
    require_signature: Option<bool>,
    require_encryption: Option<bool>,
    reject_unknown_level2: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConsole {
    token_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
    refresh: Option<ConfigDuration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawInsight {
    enabled: Option<bool>,
    key_file: Option<PathBuf>,
    retention: Option<ConfigDuration>,
    population_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawStore {
    backend: Option<String>,
    url: Option<String>,
    url_env: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRevocation {
    fetch: Option<bool>,
    refresh: Option<ConfigDuration>,
    retry_min: Option<ConfigDuration>,
    retry_max: Option<ConfigDuration>,
    timeout: Option<ConfigDuration>,
    watch: Option<ConfigDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartiesFile {
    #[allow(dead_code)]
    party: Vec<IgnoredAny>,
}

// ---- reading TOML and collecting every problem ----

/// One TOML file being read, and the problems found in it so far.
struct Reader<'s, 'p> {
    file: PathBuf,
    src: &'s str,
    problems: &'p mut Vec<ConfigProblem>,
}

impl<'s> Reader<'s, '_> {
    fn line_of(&self, offset: usize) -> usize {
        self.src
            .get(..offset)
            .map_or(1, |s| s.matches('\n').count() + 1)
    }

    fn push(&mut self, line: Option<usize>, key: Option<String>, kind: ProblemKind) {
        self.problems.push(ConfigProblem {
            file: self.file.clone(),
            line,
            key,
            kind,
        });
    }

    /// Parses the file; syntax errors are recorded. `None` if nothing usable came out.
    fn parse(&mut self) -> Option<Spanned<DeTable<'s>>> {
        let (table, errors) = DeTable::parse_recoverable(self.src);
        let had_errors = !errors.is_empty();
        for e in errors {
            let line = e.span().map(|s| self.line_of(s.start));
            self.push(line, None, ProblemKind::Syntax(e.message().to_owned()));
        }
        (!had_errors).then_some(table)
    }

    /// Deserializes `value` (a table) as `T`, recording every problem serde finds: after each one
    /// the offending key is removed and the table read again. `prefix` names the table in keys.
    fn read<T: DeserializeOwned>(
        &mut self,
        prefix: &str,
        mut value: Spanned<DeValue<'s>>,
    ) -> Option<T> {
        let mut removed: Vec<String> = Vec::new();
        loop {
            let err = match T::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(t) => return Some(t),
                Err(e) => e,
            };
            let message = err.message().to_owned();
            let missing = field_named(&message, "missing field `");
            if missing.is_some_and(|m| removed.iter().any(|r| r == m)) {
                // Already reported as a bad value; "missing" would only repeat it.
                return None;
            }
            let line = err.span().map(|s| self.line_of(s.start));
            let culprit = err.span().and_then(|s| remove_key_at(&mut value, &s));
            let key_name = culprit.clone().or_else(|| missing.map(str::to_owned));
            let key = match key_name {
                Some(k) if prefix.is_empty() => Some(k),
                Some(k) => Some(format!("{prefix}.{k}")),
                None => (!prefix.is_empty()).then(|| prefix.to_owned()),
            };
            let kind = if message.starts_with("unknown field") {
                ProblemKind::UnknownKey(message)
            } else if missing.is_some() {
                ProblemKind::Missing(message)
            } else {
                ProblemKind::BadValue(message)
            };
            self.push(line, key, kind);
            match culprit {
                Some(k) => removed.push(k),
                None => return None,
            }
        }
    }
}

/// The name between `` ` `` quotes after `lead` in a serde message.
fn field_named<'m>(message: &'m str, lead: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(lead)?;
    rest.split('`').next()
}

/// Removes the top-level key of the table `value` whose key or value span contains `span`;
/// returns its name.
fn remove_key_at(
    value: &mut Spanned<DeValue<'_>>,
    span: &std::ops::Range<usize>,
) -> Option<String> {
    let DeValue::Table(table) = value.get_mut() else {
        return None;
    };
    let inside =
        |r: std::ops::Range<usize>| r.start <= span.start && span.end <= r.end && r != (0..0);
    let key = table
        .iter()
        .find(|(k, v)| inside(k.span()) || inside(v.span()))
        .map(|(k, _)| k.clone())?;
    table.remove(&key);
    Some(key.get_ref().to_string())
}

fn section<'t, 's>(table: &'t DeTable<'s>, name: &str) -> Option<&'t Spanned<DeValue<'s>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == name)
        .map(|(_, v)| v)
}

/// Line numbers of keys (`section.key`, `party[i].key`) in a parsed file, for problems found
/// after parsing (missing files, register errors).
fn key_lines(reader: &Reader<'_, '_>, table: &DeTable<'_>) -> HashMap<String, usize> {
    let mut lines = HashMap::new();
    for (k, v) in table.iter() {
        let name = k.get_ref().to_string();
        lines.insert(name.clone(), reader.line_of(k.span().start));
        match v.get_ref() {
            DeValue::Table(t) => {
                for (k2, _) in t.iter() {
                    lines.insert(
                        format!("{name}.{}", k2.get_ref()),
                        reader.line_of(k2.span().start),
                    );
                }
            }
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    lines.insert(format!("{name}[{i}]"), reader.line_of(item.span().start));
                    if let DeValue::Table(t) = item.get_ref() {
                        for (k2, _) in t.iter() {
                            lines.insert(
                                format!("{name}[{i}].{}", k2.get_ref()),
                                reader.line_of(k2.span().start),
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    lines
}

/// Reads a whole file, or records why it cannot be read.
fn read_file(
    path: &Path,
    key: Option<String>,
    at: Option<(&Path, Option<usize>)>,
    problems: &mut Vec<ConfigProblem>,
) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(src) => Some(src),
        Err(e) => {
            let (file, line) = at.map_or((path.to_path_buf(), None), |(f, l)| (f.to_path_buf(), l));
            problems.push(ConfigProblem {
                file,
                line,
                key,
                kind: ProblemKind::MissingFile {
                    path: path.to_path_buf(),
                    reason: format!("cannot read: {e}"),
                },
            });
            None
        }
    }
}

/// What relative paths are resolved against: the parent of the config file's directory.
pub fn base_dir(config_path: &Path) -> PathBuf {
    let abs = std::path::absolute(config_path).unwrap_or_else(|_| config_path.to_path_buf());
    let dir = abs
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    dir.parent().map_or(dir.clone(), Path::to_path_buf)
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

impl GatewayConfig {
    /// Reads `gateway.toml` alone (no register, no file checks): what `status` needs.
    pub fn load(config_path: &Path) -> Result<GatewayConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let config = read_gateway(
            config_path,
            &mut problems,
            &mut HashMap::new(),
            Secrets::Read,
        )
        .and_then(|p| p.config);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(problems),
        }
    }

    /// Reads `gateway.toml` for its `[paths]` alone: what `tail` and `reload` need. The
    /// environment variables that `url_env` keys name are not read, so an operator's shell, which
    /// does not hold the service's secrets, can use them; every other problem is still reported.
    pub fn load_paths(config_path: &Path) -> Result<PathsConfig, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let paths = read_gateway(
            config_path,
            &mut problems,
            &mut HashMap::new(),
            Secrets::Skip,
        )
        .and_then(|p| p.paths);
        match paths {
            Some(p) if problems.is_empty() => Ok(p),
            _ => Err(problems),
        }
    }
}

/// Whether the environment variables named by `url_env` keys are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    /// Read them; one that is unset is a problem (serve, check-config, status, replay).
    Read,
    /// Leave them alone (tail, reload): the configuration then has no URL, and says nothing of it.
    Skip,
}

/// The value of the environment variable `var` that a `url_env` key names: `Ok(None)` when
/// `secrets` says not to read it, `Err` (what to say) when it is unset or empty.
fn from_env(var: &str, secrets: Secrets) -> Result<Option<String>, String> {
    if secrets == Secrets::Skip {
        return Ok(None);
    }
    match std::env::var(var) {
        Ok(u) if !u.trim().is_empty() => Ok(Some(u)),
        _ => Err(format!("environment variable {var} is not set (or empty)")),
    }
}

fn read_gateway(
    config_path: &Path,
    problems: &mut Vec<ConfigProblem>,
    lines: &mut HashMap<String, usize>,
    secrets: Secrets,
) -> Option<GatewayParts> {
    let src = read_file(config_path, None, None, problems)?;
    let mut r = Reader {
        file: config_path.to_path_buf(),
        src: &src,
        problems,
    };
    let doc = r.parse()?;
    *lines = key_lines(&r, doc.get_ref());
    r.read::<RawGatewayFile>(
        "",
        Spanned::new(doc.span(), DeValue::Table(doc.get_ref().clone())),
    );
    let table = doc.get_ref();
    let amqp = section(table, "amqp").and_then(|v| r.read::<RawAmqp>("amqp", v.clone()));
    let gateway =
        section(table, "gateway").and_then(|v| r.read::<RawGateway>("gateway", v.clone()));
    let paths = section(table, "paths").and_then(|v| r.read::<RawPaths>("paths", v.clone()));
    let policy = match section(table, "policy") {
        Some(v) => r.read::<RawPolicy>("policy", v.clone()),
        None => Some(RawPolicy::default()),
    };
    let console = match section(table, "console") {
        Some(v) => r.read::<RawConsole>("console", v.clone()),
        None => Some(RawConsole::default()),
    };
    let revocation = match section(table, "revocation") {
        Some(v) => r.read::<RawRevocation>("revocation", v.clone()),
        None => Some(RawRevocation::default()),
    };
    let insight = match section(table, "insight") {
        Some(v) => r.read::<RawInsight>("insight", v.clone()),
        None => Some(RawInsight::default()),
    };
    let store = match section(table, "store") {
        Some(v) => r.read::<RawStore>("store", v.clone()),
        None => Some(RawStore::default()),
    };
    let line = |k: &str| lines.get(k).copied();
    let store = store.and_then(|raw| {
        // The URL as given, or from the environment (`url_env`), and the key it came from.
        let url = match (raw.url, raw.url_env) {
            (Some(_), Some(_)) => {
                r.push(
                    line("store.url"),
                    Some("store.url".into()),
                    ProblemKind::BadValue("give exactly one of `url` and `url_env`, not both".into()),
                );
                return None;
            }
            (Some(u), None) => Some((u, "store.url")),
            (None, Some(_)) if raw.backend.as_deref().unwrap_or("redb") == "redb" => {
                r.push(
                    line("store.url_env"),
                    Some("store.url_env".into()),
                    ProblemKind::BadValue("url_env is only for backend = \"postgres\" (redb keeps its file in paths.state)".into()),
                );
                return None;
            }
            (None, Some(var)) => match from_env(&var, secrets) {
                Ok(Some(u)) => Some((u, "store.url_env")),
                // Not read (`Secrets::Skip`): no backend, and no problem either.
                Ok(None) => return None,
                Err(why) => {
                    r.push(
                        line("store.url_env"),
                        Some("store.url_env".into()),
                        ProblemKind::BadValue(why),
                    );
                    return None;
                }
            },
            (None, None) => None,
        };
        let backend = match (raw.backend.as_deref().unwrap_or("redb"), url) {
            ("redb", None) => Some(StoreBackend::Redb),
            ("redb", Some((_, key))) => {
                r.push(
                    line(key),
                    Some(key.into()),
                    ProblemKind::BadValue(format!("{} is only for backend = \"postgres\" (redb keeps its file in paths.state)", key.trim_start_matches("store."))),
                );
                None
            }
            ("postgres", Some((url, key))) => match crate::store::pg::parse_url(&url) {
                Ok(_) => Some(StoreBackend::Postgres { url }),
                Err(e) => {
                    let what = if key == "store.url_env" {
                        // The value is a secret: name the variable, not what it holds.
                        "the value of the environment variable it names is not a PostgreSQL connection URL"
                    } else {
                        "not a PostgreSQL connection URL"
                    };
                    r.push(
                        line(key),
                        Some(key.into()),
                        ProblemKind::BadValue(format!("{what}: {e}")),
                    );
                    None
                }
            },
            ("postgres", None) => {
                r.push(
                    line("store.backend"),
                    Some("store.url".into()),
                    ProblemKind::Missing("backend = \"postgres\" needs url = \"postgres://user@host:5432/database\" or url_env = \"NAME_OF_A_VARIABLE_HOLDING_IT\"".into()),
                );
                None
            }
            (other, _) => {
                r.push(
                    line("store.backend"),
                    Some("store.backend".into()),
                    ProblemKind::BadValue(format!("{other:?}: expected \"redb\" or \"postgres\"")),
                );
                None
            }
        };
        backend
    });
    let revocation = revocation.map(|v| {
        let d = RevocationConfig::default();
        let c = RevocationConfig {
            fetch: v.fetch.unwrap_or(d.fetch),
            refresh: v.refresh.map_or(d.refresh, |x| x.0),
            retry_min: v.retry_min.map_or(d.retry_min, |x| x.0),
            retry_max: v.retry_max.map_or(d.retry_max, |x| x.0),
            timeout: v.timeout.map_or(d.timeout, |x| x.0),
            watch: v.watch.map_or(d.watch, |x| x.0),
        };
        for (key, value) in [
            ("revocation.refresh", c.refresh),
            ("revocation.retry_min", c.retry_min),
            ("revocation.retry_max", c.retry_max),
            ("revocation.timeout", c.timeout),
            ("revocation.watch", c.watch),
        ] {
            if value < time::Duration::milliseconds(100) {
                r.push(
                    line(key),
                    Some(key.into()),
                    ProblemKind::BadValue("must be at least 100ms".into()),
                );
            }
        }
        if c.retry_max < c.retry_min {
            r.push(
                line("revocation.retry_max"),
                Some("revocation.retry_max".into()),
                ProblemKind::BadValue("is shorter than revocation.retry_min".into()),
            );
        }
        c
    });

    // Exactly one of `url`, `url_env` and `urls`; the key each URL came from, for its problems.
    let given = amqp.as_ref().map_or(0, |a| {
        usize::from(a.url.is_some())
            + usize::from(a.url_env.is_some())
            + usize::from(a.urls.is_some())
    });
    let urls: Option<Vec<(String, String)>> =
        amqp.as_ref()
            .and_then(|a| match (&a.url, &a.url_env, &a.urls) {
                _ if given > 1 => {
                    let key = if a.url.is_some() {
                        "amqp.url"
                    } else {
                        "amqp.url_env"
                    };
                    r.push(
                        line(key),
                        Some(key.into()),
                        ProblemKind::BadValue(
                            "give exactly one of `url`, `url_env` and `urls`, not several".into(),
                        ),
                    );
                    None
                }
                (Some(u), None, None) => Some(vec![("amqp.url".to_owned(), u.clone())]),
                (None, Some(var), None) => match from_env(var, secrets) {
                    Ok(u) => u.map(|u| vec![("amqp.url_env".to_owned(), u)]),
                    Err(why) => {
                        r.push(
                            line("amqp.url_env"),
                            Some("amqp.url_env".into()),
                            ProblemKind::BadValue(why),
                        );
                        None
                    }
                },
                (None, None, Some(list)) if list.is_empty() => {
                    r.push(
                        line("amqp.urls"),
                        Some("amqp.urls".into()),
                        ProblemKind::BadValue(
                            "is empty: list the broker nodes (amqp://… or amqps://…), at least one"
                                .into(),
                        ),
                    );
                    None
                }
                (None, None, Some(list)) => Some(
                    list.iter()
                        .enumerate()
                        .map(|(i, u)| (format!("amqp.urls[{i}]"), u.clone()))
                        .collect(),
                ),
                _ => {
                    r.push(
                        line("amqp"),
                        Some("amqp.url".into()),
                        ProblemKind::Missing(
                            "missing `url`, `url_env` or `urls` (exactly one)".into(),
                        ),
                    );
                    None
                }
            });
    let mut urls_ok = urls.is_some();
    for (i, (key, u)) in urls.iter().flatten().enumerate() {
        let line_key = if key.starts_with("amqp.urls") {
            "amqp.urls"
        } else {
            key.as_str()
        };
        if !(u.starts_with("amqp://") || u.starts_with("amqps://")) {
            urls_ok = false;
            r.push(
                line(line_key),
                Some(key.clone()),
                ProblemKind::BadValue(format!(
                    "not an AMQP URL: {:?} (expected amqp://… or amqps://…)",
                    redact_url(u)
                )),
            );
        } else if urls
            .iter()
            .flatten()
            .take(i)
            .any(|(_, earlier)| earlier == u)
        {
            urls_ok = false;
            r.push(
                line(line_key),
                Some(key.clone()),
                ProblemKind::BadValue(format!("{:?} is listed twice", redact_url(u))),
            );
        }
    }
    let tls_ca_file = amqp
        .as_ref()
        .and_then(|a| a.tls_ca_file.as_ref())
        .map(|p| resolve(&base_dir(config_path), p));
    match &tls_ca_file {
        Some(ca) => {
            if let Err(reason) = check_certificate(ca) {
                urls_ok = false;
                r.push(
                    line("amqp.tls_ca_file"),
                    Some("amqp.tls_ca_file".into()),
                    ProblemKind::BadCertificate {
                        path: ca.clone(),
                        reason,
                    },
                );
            }
        }
        None => {
            if let Some((key, u)) = urls
                .iter()
                .flatten()
                .find(|(_, u)| u.starts_with("amqps://"))
            {
                urls_ok = false;
                let line_key = if key.starts_with("amqp.urls") {
                    "amqp.urls"
                } else {
                    key.as_str()
                };
                r.push(
                    line(line_key),
                    Some("amqp.tls_ca_file".into()),
                    ProblemKind::Missing(format!(
                        "{:?} is amqps://: give tls_ca_file (PEM CA that signs the broker's certificate)",
                        redact_url(u)
                    )),
                );
            }
        }
    }
    let url = urls.filter(|_| urls_ok);
    if amqp.as_ref().is_some_and(|a| a.prefetch == 0) {
        r.push(
            line("amqp.prefetch"),
            Some("amqp.prefetch".into()),
            ProblemKind::BadValue(
                "prefetch 0 means unlimited in AMQP; give a bound (default 256)".into(),
            ),
        );
    }
    let required = |section: &str, key: &str, present: bool, r: &mut Reader<'_, '_>| {
        let full = format!("{section}.{key}");
        if !present
            && lines.contains_key(section)
            && !r
                .problems
                .iter()
                .any(|p| p.key.as_deref() == Some(full.as_str()))
        {
            r.push(
                lines.get(section).copied(),
                Some(full),
                ProblemKind::Missing(format!("missing key `{key}`")),
            );
        }
    };
    if let Some(g) = &gateway {
        required("gateway", "her_id", g.her_id.is_some(), &mut r);
        required("gateway", "signing_key", g.signing_key.is_some(), &mut r);
        required("gateway", "signing_cert", g.signing_cert.is_some(), &mut r);
    }
    if let Some(p) = &paths {
        required("paths", "register", p.register.is_some(), &mut r);
        required("paths", "trust_dir", p.trust_dir.is_some(), &mut r);
    }
    if let Some(g) = &gateway {
        if g.her_id.is_some_and(|h| h.0 == 0) {
            r.push(
                line("gateway.her_id"),
                Some("gateway.her_id".into()),
                ProblemKind::BadValue("HER-id 0 is not a HER-id".into()),
            );
        }
        if g.signing_key
            .as_ref()
            .is_some_and(|k| k.to_string_lossy().contains("-----BEGIN"))
        {
            r.push(
                line("gateway.signing_key"),
                Some("gateway.signing_key".into()),
                ProblemKind::InlineSecret(
                    "`signing_key` must be the path of a PEM file, not the key itself".into(),
                ),
            );
        }
    }
    let mut policy_cfg = PolicyConfig::default();
    if let Some(p) = &paths {
        let listen = p.http_listen.trim();
        if !listen.is_empty() && listen.parse::<std::net::SocketAddr>().is_err() {
            r.push(
                line("paths.http_listen"),
                Some("paths.http_listen".into()),
                ProblemKind::BadValue(format!("{listen:?} is not an address like 127.0.0.1:9464 (empty turns the endpoint off)")),
            );
        }
    }
    if let Some(p) = &policy {
        if p.max_message_bytes == Some(0) {
            r.push(
                line("policy.max_message_bytes"),
                Some("policy.max_message_bytes".into()),
                ProblemKind::BadValue("must be larger than 0".into()),
            );
        }
        policy_cfg = PolicyConfig {
            max_message_bytes: p.max_message_bytes.unwrap_or(policy_cfg.max_message_bytes),
            apprec_timeout: p.apprec_timeout.map_or(policy_cfg.apprec_timeout, |d| d.0),
            retention: p.retention.map_or(policy_cfg.retention, |d| d.0),
            require_signature: p.require_signature.unwrap_or(policy_cfg.require_signature),
            require_encryption: p
                .require_encryption
                .unwrap_or(policy_cfg.require_encryption),
            reject_unknown_level2: p
                .reject_unknown_level2
                .unwrap_or(policy_cfg.reject_unknown_level2),
        };
        if policy_cfg.retention < policy_cfg.apprec_timeout {
            r.push(line("policy.retention"), Some("policy.retention".into()), ProblemKind::BadValue("retention is shorter than apprec_timeout: state would be pruned before a message can become overdue".into()));
        }
    }
    if let Some(a) = amqp.as_ref() {
        if let Some(why) = a.hnmsg_exchange.as_deref().and_then(bad_exchange_name) {
            r.push(
                line("amqp.hnmsg_exchange"),
                Some("amqp.hnmsg_exchange".into()),
                ProblemKind::BadValue(why),
            );
        }
        let budget = a.max_inflight_bytes(policy_cfg.max_message_bytes);
        let floor = partitions_floor(a.partitions, policy_cfg.max_message_bytes);
        if budget < policy_cfg.max_message_bytes {
            r.push(
                line("amqp.max_inflight_bytes"),
                Some("amqp.max_inflight_bytes".into()),
                ProblemKind::BadValue(format!(
                    "{budget} is smaller than policy.max_message_bytes ({}): the largest message allowed could never be taken in",
                    policy_cfg.max_message_bytes
                )),
            );
        } else if budget < floor {
            r.push(
                line("amqp.max_inflight_bytes"),
                Some("amqp.max_inflight_bytes".into()),
                ProblemKind::BadValue(format!(
                    "{budget} is smaller than {floor}: with partitions = {} the gateway consumes {} intake queues, each may hold one message of policy.max_message_bytes ({}); raise it to at least {floor} or leave it out (the default is fitted)",
                    a.partitions,
                    a.partitions + 1,
                    policy_cfg.max_message_bytes
                )),
            );
        }
        if a.partitions > crate::amqp::topology::MAX_PARTITIONS {
            r.push(
                line("amqp.partitions"),
                Some("amqp.partitions".into()),
                ProblemKind::BadValue(format!(
                    "{} partitions: at most {} (each is a replicated queue on every broker node; a handful per instance is plenty)",
                    a.partitions,
                    crate::amqp::topology::MAX_PARTITIONS
                )),
            );
        }
        if let Some(prefer) = &a.prefer_partitions {
            let why = if a.partitions == 0 {
                Some("needs partitions > 0: without partitions there is one intake queue and nothing to prefer".to_owned())
            } else {
                prefer.iter().find(|n| **n > a.partitions).map(|n| {
                    format!(
                        "partition {n} does not exist: partitions = {} gives 0 (gateway_inbound) to {}",
                        a.partitions, a.partitions
                    )
                })
            };
            if let Some(why) = why {
                r.push(
                    line("amqp.prefer_partitions"),
                    Some("amqp.prefer_partitions".into()),
                    ProblemKind::BadValue(why),
                );
            }
        }
    }
    let base = base_dir(config_path);
    let console = console.map(|c| ConsoleConfig {
        token_file: c.token_file.map(|p| resolve(&base, &p)),
        password_file: c.password_file.map(|p| resolve(&base, &p)),
        refresh: c.refresh.map_or(ConsoleConfig::default().refresh, |d| d.0),
    });
    if let Some(c) = &console {
        if c.refresh < time::Duration::seconds(1) {
            r.push(
                line("console.refresh"),
                Some("console.refresh".into()),
                ProblemKind::BadValue("must be at least 1s (pages reload this often)".into()),
            );
        }
        let listen = paths
            .as_ref()
            .and_then(|p| p.http_listen.trim().parse::<std::net::SocketAddr>().ok());
        if let Some(addr) = listen.filter(|a| !a.ip().is_loopback()) {
            if !c.has_credentials() {
                r.push(
                    line("paths.http_listen"),
                    Some("paths.http_listen".into()),
                    ProblemKind::BadValue(format!(
                        "{addr} is not a loopback address: the operator console there needs credentials; \
                         set [console] token_file (a bearer token) and/or password_file (argon2 hashes), \
                         or bind to 127.0.0.1"
                    )),
                );
            }
        }
    }
    let signing = gateway
        .as_ref()
        .and_then(|g| Some((g.signing_key.as_ref()?, g.signing_cert.as_ref()?)));
    let signing = signing.map(|(k, c)| (resolve(&base, k), resolve(&base, c)));
    let encryption_keys: Vec<EncryptionKeyFiles> = gateway
        .as_ref()
        .map(|g| {
            g.encryption_keys
                .iter()
                .map(|k| EncryptionKeyFiles {
                    key: resolve(&base, &k.key),
                    cert: resolve(&base, &k.cert),
                })
                .collect()
        })
        .unwrap_or_default();
    if policy_cfg.require_encryption && encryption_keys.is_empty() && gateway.is_some() {
        r.push(
            line("policy.require_encryption"),
            Some("policy.require_encryption".into()),
            ProblemKind::BadValue(
                "require_encryption = true, but [gateway] has no encryption_keys: senders could not encrypt to the hub".into(),
            ),
        );
    }
    if encryption_keys
        .iter()
        .any(|k| k.key.to_string_lossy().contains("-----BEGIN"))
    {
        r.push(
            line("gateway.encryption_keys"),
            Some("gateway.encryption_keys".into()),
            ProblemKind::InlineSecret(
                "`encryption_keys` entries must name PEM files, not hold the key itself".into(),
            ),
        );
    }
    let identity = gateway
        .as_ref()
        .and_then(|g| g.her_id)
        .zip(signing.clone())
        .map(|(her_id, (signing_key, signing_cert))| GatewayIdentity {
            her_id,
            signing_key,
            signing_cert,
            encryption_keys: encryption_keys.clone(),
        });
    let paths = paths.and_then(|p| {
        Some(PathsConfig {
            register: resolve(&base, p.register.as_ref()?),
            trust_dir: resolve(&base, p.trust_dir.as_ref()?),
            schemas: resolve(&base, &p.schemas),
            state: resolve(&base, &p.state),
            routing_log: resolve(&base, &p.routing_log),
            http_listen: if p.http_listen.trim().is_empty() {
                None
            } else {
                p.http_listen.trim().parse().ok()
            },
        })
    });
    let insight = insight.map(|i| InsightConfig {
        enabled: i.enabled.unwrap_or(false),
        key_file: i.key_file.map(|p| resolve(&base, &p)),
        retention: i
            .retention
            .map_or(InsightConfig::default().retention, |d| d.0),
        population_file: i.population_file.map(|p| resolve(&base, &p)),
    });
    if let Some(i) = &insight {
        if i.enabled && i.key_file.is_none() {
            r.push(
                line("insight.enabled"),
                Some("insight.key_file".into()),
                ProblemKind::Missing(
                    "[insight] enabled needs key_file (the pseudonymisation keys)".into(),
                ),
            );
        }
    }
    let config = match (amqp, url, &identity, &paths, console, revocation, store) {
        (
            Some(amqp),
            Some(url),
            Some(identity),
            Some(paths),
            Some(console),
            Some(revocation),
            Some(store),
        ) => Some(GatewayConfig {
            config_path: config_path.to_path_buf(),
            base_dir: base.clone(),
            amqp: AmqpConfig {
                url: url[0].1.clone(),
                fallback_urls: url[1..].iter().map(|(_, u)| u.clone()).collect(),
                tls_ca_file,
                prefetch: amqp.prefetch,
                heartbeat: amqp.heartbeat.0,
                max_inflight_bytes: amqp.max_inflight_bytes(policy_cfg.max_message_bytes),
                hnmsg_exchange: amqp.hnmsg_exchange.clone(),
                partitions: amqp.partitions,
                prefer_partitions: amqp.prefer_partitions.clone(),
            },
            gateway: identity.clone(),
            paths: paths.clone(),
            policy: policy_cfg,
            console,
            revocation,
            insight: insight.unwrap_or_default(),
            store,
        }),
        _ => None,
    };
    Some(GatewayParts {
        config,
        signing,
        gateway_her: gateway.and_then(|g| g.her_id),
        paths,
        base,
    })
}

/// What could be read of `gateway.toml`: the whole configuration, or at least the sections the
/// file checks need, so that a bad `[amqp]` does not hide problems in the register.
struct GatewayParts {
    config: Option<GatewayConfig>,
    /// (signing_key, signing_cert), resolved, when both were given.
    signing: Option<(PathBuf, PathBuf)>,
    gateway_her: Option<HerId>,
    paths: Option<PathsConfig>,
    base: PathBuf,
}

/// Parties read, their (index among `[[party]]`, line), and the line of every key.
type PartiesRead = (Vec<Party>, Vec<(usize, usize)>, HashMap<String, usize>);

/// Reads the parties of the register file; each party's problems are recorded, and the parties
/// that could be read are returned with their place in the file (index among `[[party]]`, line).
fn read_parties(
    path: &Path,
    base: &Path,
    at: (&Path, Option<usize>),
    problems: &mut Vec<ConfigProblem>,
) -> Option<PartiesRead> {
    let src = read_file(path, Some("paths.register".into()), Some(at), problems)?;
    let mut r = Reader {
        file: path.to_path_buf(),
        src: &src,
        problems,
    };
    let doc = r.parse()?;
    let lines = key_lines(&r, doc.get_ref());
    r.read::<RawPartiesFile>(
        "",
        Spanned::new(doc.span(), DeValue::Table(doc.get_ref().clone())),
    );
    let mut parties = Vec::new();
    let mut places = Vec::new();
    if let Some(DeValue::Array(items)) = section(doc.get_ref(), "party").map(Spanned::get_ref) {
        for (i, item) in items.iter().enumerate() {
            if let Some(mut p) = r.read::<Party>(&format!("party[{i}]"), item.clone()) {
                for c in &mut p.certificates {
                    *c = resolve(base, c);
                }
                if let Some(c) = p.encryption_certificate.as_mut() {
                    *c = resolve(base, c);
                }
                parties.push(p);
                places.push((i, r.line_of(item.span().start)));
            }
        }
    }
    Some((parties, places, lines))
}

/// Checks a certificate file: readable, and at least one PEM `CERTIFICATE` block, each of which
/// parses as X.509. `Err` says why not.
fn check_certificate(path: &Path) -> Result<usize, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut count = 0;
    for pem in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
        let pem = pem.map_err(|e| format!("not PEM: {e}"))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        pem.parse_x509()
            .map_err(|e| format!("PEM block #{} is not an X.509 certificate: {e}", count + 1))?;
        count += 1;
    }
    if count == 0 {
        return Err("no PEM CERTIFICATE block found".into());
    }
    Ok(count)
}

/// Validates everything: both files, every referenced file, the certificates, the register.
/// Returns the configuration and register, or every problem found (sorted by file and line).
pub fn check(config_path: &Path) -> Result<(GatewayConfig, Register), Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let mut lines = HashMap::new();
    let parts = read_gateway(config_path, &mut problems, &mut lines, Secrets::Read);
    let mut register = None;
    let line = |k: &str| lines.get(k).copied();
    let file_problem = |key: &str, path: &Path, reason: String| ConfigProblem {
        file: config_path.to_path_buf(),
        line: line(key),
        key: Some(key.to_owned()),
        kind: ProblemKind::MissingFile {
            path: path.to_path_buf(),
            reason,
        },
    };
    for (i, k) in parts
        .as_ref()
        .and_then(|p| p.config.as_ref())
        .map(|c| c.gateway.encryption_keys.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if let Err(reason) = check_certificate(&k.cert) {
            problems.push(ConfigProblem {
                file: config_path.to_path_buf(),
                line: line("gateway.encryption_keys"),
                key: Some(format!("gateway.encryption_keys[{i}].cert")),
                kind: ProblemKind::BadCertificate {
                    path: k.cert.clone(),
                    reason,
                },
            });
        }
        match std::fs::read_to_string(&k.key) {
            Ok(s) if s.contains("PRIVATE KEY-----") => {}
            Ok(_) => problems.push(file_problem(
                "gateway.encryption_keys",
                &k.key,
                "no PEM PRIVATE KEY block found".into(),
            )),
            Err(e) => problems.push(file_problem(
                "gateway.encryption_keys",
                &k.key,
                format!("cannot read: {e}"),
            )),
        }
    }
    if let Some((signing_key, signing_cert)) = parts.as_ref().and_then(|p| p.signing.as_ref()) {
        if let Err(reason) = check_certificate(signing_cert) {
            problems.push(ConfigProblem {
                file: config_path.to_path_buf(),
                line: line("gateway.signing_cert"),
                key: Some("gateway.signing_cert".into()),
                kind: ProblemKind::BadCertificate {
                    path: signing_cert.clone(),
                    reason,
                },
            });
        }
        match std::fs::read_to_string(signing_key) {
            Ok(s) if s.contains("PRIVATE KEY-----") => {}
            Ok(_) => problems.push(file_problem(
                "gateway.signing_key",
                signing_key,
                "no PEM PRIVATE KEY block found".into(),
            )),
            Err(e) => problems.push(file_problem(
                "gateway.signing_key",
                signing_key,
                format!("cannot read: {e}"),
            )),
        }
    }
    if let (Some(paths), Some(base)) = (
        parts.as_ref().and_then(|p| p.paths.as_ref()),
        parts.as_ref().map(|p| &p.base),
    ) {
        if !paths.trust_dir.is_dir() {
            problems.push(file_problem(
                "paths.trust_dir",
                &paths.trust_dir,
                "not a directory".into(),
            ));
        }
        if paths.state.exists() && !paths.state.is_dir() {
            problems.push(file_problem(
                "paths.state",
                &paths.state,
                "exists but is not a directory".into(),
            ));
        }
        let gateway_her = parts.as_ref().and_then(|p| p.gateway_her);
        let at = (config_path, line("paths.register"));
        if let Some((parties, places, plines)) =
            read_parties(&paths.register, base, at, &mut problems)
        {
            let reg_file = paths.register.clone();
            for (i, p) in parties.iter().enumerate() {
                for (j, c) in p.certificates.iter().enumerate() {
                    if let Err(reason) = check_certificate(c) {
                        let (file_index, start) = places[i];
                        let key = format!("party[{file_index}].certificates");
                        problems.push(ConfigProblem {
                            file: reg_file.clone(),
                            line: plines.get(&key).copied().or(Some(start)),
                            key: Some(format!("{key}[{j}]")),
                            kind: ProblemKind::BadCertificate {
                                path: c.clone(),
                                reason,
                            },
                        });
                    }
                }
            }
            let require_encryption = parts
                .as_ref()
                .and_then(|p| p.config.as_ref())
                .is_some_and(|c| c.policy.require_encryption);
            for (i, p) in parties.iter().enumerate() {
                let (file_index, start) = places[i];
                let key = format!("party[{file_index}].encryption_certificate");
                let at = plines.get(&key).copied().or(Some(start));
                match &p.encryption_certificate {
                    Some(c) => {
                        if let Err(reason) = check_certificate(c) {
                            problems.push(ConfigProblem {
                                file: reg_file.clone(),
                                line: at,
                                key: Some(key),
                                kind: ProblemKind::BadCertificate {
                                    path: c.clone(),
                                    reason,
                                },
                            });
                        }
                    }
                    None if require_encryption && Some(p.her_id) != gateway_her => {
                        problems.push(ConfigProblem {
                            file: reg_file.clone(),
                            line: Some(start),
                            key: Some(key),
                            kind: ProblemKind::Missing(format!(
                                "party {} has no encryption_certificate, but policy.require_encryption is on: the gateway could not encrypt its messages",
                                p.her_id
                            )),
                        });
                    }
                    None => {}
                }
            }
            match Register::from_parties(parties.clone()) {
                Ok(reg) => {
                    if let Some(her) = gateway_her.filter(|h| !reg.contains(*h)) {
                        problems.push(ConfigProblem {
                            file: config_path.to_path_buf(),
                            line: line("gateway.her_id"),
                            key: Some("gateway.her_id".into()),
                            kind: ProblemKind::GatewayNotInRegister(her),
                        });
                    }
                    register = Some(reg);
                }
                Err(errors) => {
                    for e in errors {
                        let (file_index, start) =
                            places.get(e.index()).copied().unwrap_or((e.index(), 0));
                        let field = match e {
                            RegisterError::DuplicateHerId { .. } => ".her_id",
                            RegisterError::NoAccepts { .. }
                            | RegisterError::UnknownMessageType { .. } => ".accepts",
                            _ => ".organisation_her_id",
                        };
                        let key = format!("party[{file_index}]{field}");
                        problems.push(ConfigProblem {
                            file: reg_file.clone(),
                            line: plines.get(&key).copied().or((start > 0).then_some(start)),
                            key: Some(key),
                            kind: ProblemKind::Register(e),
                        });
                    }
                }
            }
            if !plines.contains_key("party") {
                problems.push(ConfigProblem {
                    file: reg_file,
                    line: None,
                    key: Some("party".into()),
                    kind: ProblemKind::Missing(
                        "no [[party]] entries: the register is empty".into(),
                    ),
                });
            }
        }
    }
    if let Some(c) = parts.as_ref().and_then(|p| p.config.as_ref()) {
        for (key, reason) in crate::console::auth::Credentials::problems(&c.console) {
            problems.push(ConfigProblem {
                file: config_path.to_path_buf(),
                line: line(key),
                key: Some(key.to_owned()),
                kind: ProblemKind::BadValue(reason),
            });
        }
    }
    if let Some(c) = parts.as_ref().and_then(|p| p.config.as_ref()) {
        if let (true, Some(k)) = (c.insight.enabled, &c.insight.key_file) {
            for reason in crate::insight::key::Keys::problems(k) {
                problems.push(ConfigProblem {
                    file: config_path.to_path_buf(),
                    line: line("insight.key_file"),
                    key: Some("insight.key_file".into()),
                    kind: ProblemKind::BadValue(reason),
                });
            }
        }
    }
    if let Some(path) = parts
        .as_ref()
        .and_then(|p| p.config.as_ref())
        .and_then(|c| c.insight.population_file.as_ref())
    {
        for reason in crate::insight::population::Population::problems(path) {
            problems.push(ConfigProblem {
                file: config_path.to_path_buf(),
                line: line("insight.population_file"),
                key: Some("insight.population_file".into()),
                kind: ProblemKind::BadValue(reason),
            });
        }
    }
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    problems.dedup();
    match (parts.and_then(|p| p.config), register) {
        (Some(c), Some(r)) if problems.is_empty() => Ok((c, r)),
        _ => Err(problems),
    }
}

#[cfg(test)]
mod tests;
