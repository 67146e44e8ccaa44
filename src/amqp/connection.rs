//! Opening one AMQP connection from settings.
//!
//! Input: [`AmqpSettings`] (URL `amqp://` or `amqps://`, heartbeat, optional CA file for TLS,
//! the role naming the connection). Output: a `lapin::Connection` named
//! `helsemelding <role> <hostname>` (visible in `rabbitmqctl list_connections name`).
//! Failure: [`AmqpError`], classified as transient (unreachable) or configuration (bad URL,
//! refused login, unknown vhost, unreadable CA file).
//!
//! TLS is rustls on aws-lc-rs with no built-in root store: an `amqps://` broker is trusted through the
//! CA certificate(s) in `tls_ca_file` (PEM). This is deliberate: the gateway trusts the bus it was
//! configured for, not any public CA. A broker whose certificate does not chain to that CA is a
//! configuration fault ([`AmqpError::TlsCertificateRejected`], naming the URL and the CA file),
//! never retried quietly as if the network were down.
//!
//! A broker cluster is several URLs (`url` then `fallback_urls`): [`AmqpSettings::at`] gives the
//! settings of one of them; the supervisor goes through them in turn.

use std::path::PathBuf;
use std::time::Duration;

use lapin::tcp::OwnedTLSConfig;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{Connection, ConnectionProperties};

use super::budget::PrefetchWindow;
use super::error::AmqpError;

/// How to reach the broker.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:port/vhost` or `amqps://…` (vhost URL-encoded, `%2f` for `/`).
    pub url: String,
    /// Other nodes of the same broker cluster, tried in turn after `url` (empty: one broker).
    pub fallback_urls: Vec<String>,
    /// Heartbeat interval negotiated with the broker (whole seconds; 0 disables).
    pub heartbeat: Duration,
    /// Consumer prefetch (basic.qos): how many unacked deliveries may be in flight, at most.
    pub prefetch: u16,
    /// Bytes of message bodies the pipeline may hold at once (the in-flight budget,
    /// [`super::budget`]); the count window shrinks below `prefetch` to keep to it.
    pub max_inflight_bytes: u64,
    /// The largest body the pipeline accepts (`[policy] max_message_bytes`): the size the first
    /// count window is fitted to, before any delivery has been seen.
    pub max_message_bytes: u64,
    /// PEM file with the CA certificate(s) that sign the broker's TLS certificate (`amqps://`).
    pub tls_ca_file: Option<PathBuf>,
    /// Who connects (`serve`, `redrive`, `bench`, `test`): part of the connection name.
    pub role: String,
}

impl AmqpSettings {
    /// Settings with the defaults of DESIGN §4 (`prefetch = 256`, `heartbeat = "10s"`,
    /// `max_inflight_bytes` = [`DEFAULT_MAX_INFLIGHT_BYTES`], `max_message_bytes` = 35 MiB).
    pub fn new(url: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            fallback_urls: Vec::new(),
            heartbeat: Duration::from_secs(10),
            prefetch: 256,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            tls_ca_file: None,
            role: role.into(),
        }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// Parse the URL and apply the heartbeat.
    pub fn uri(&self) -> Result<AMQPUri, AmqpError> {
        let mut uri: AMQPUri = self
            .url
            .parse()
            .map_err(|reason: String| AmqpError::BadUrl {
                url: self.redacted_url(),
                reason,
            })?;
        // AMQP negotiates whole seconds and 0 means "off": round a sub-second value up, never
        // silently disable the heartbeat.
        let mut secs = self.heartbeat.as_secs();
        if secs == 0 && !self.heartbeat.is_zero() {
            secs = 1;
        }
        let secs = u16::try_from(secs).map_err(|_| AmqpError::BadUrl {
            url: self.redacted_url(),
            reason: format!("heartbeat {:?} is longer than 65535 s", self.heartbeat),
        })?;
        uri.query.heartbeat = Some(secs);
        Ok(uri)
    }

    /// How many broker URLs there are (`url` and the fallbacks).
    pub fn url_count(&self) -> usize {
        1 + self.fallback_urls.len()
    }

    /// The settings of the `i`-th broker URL (0 = `url`; taken modulo [`Self::url_count`]), with
    /// no fallbacks of its own.
    pub fn at(&self, i: usize) -> Self {
        let i = i % self.url_count();
        let url = if i == 0 {
            self.url.clone()
        } else {
            self.fallback_urls[i - 1].clone()
        };
        Self {
            url,
            fallback_urls: Vec::new(),
            ..self.clone()
        }
    }

    /// The name the broker shows for our connection.
    pub fn connection_name(&self) -> String {
        format!("helsemelding {} {}", self.role, hostname())
    }

    /// The same settings for the session's consuming connection (named `<role> consume`).
    pub fn for_consuming(&self) -> Self {
        Self {
            role: format!("{} consume", self.role),
            ..self.clone()
        }
    }

    /// The count window of a fresh consumer: fitted to the budget and the largest message.
    pub fn initial_window(&self) -> PrefetchWindow {
        PrefetchWindow::new(
            self.max_inflight_bytes,
            self.prefetch,
            self.max_message_bytes,
        )
    }
}

/// Default in-flight budget: 64 MiB of message bodies.
pub const DEFAULT_MAX_INFLIGHT_BYTES: u64 = 64 << 20;
/// Default largest message (DESIGN §4, like NHN's): 35 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 35 << 20;

fn redact(url: &str) -> String {
    // scheme://user:pass@rest → scheme://user:***@rest
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_owned()
}

/// The machine's name, for the connection name; never fails.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Open a connection. Does not retry: the [`super::supervisor`] does that.
pub async fn connect(settings: &AmqpSettings) -> Result<Connection, AmqpError> {
    let uri = settings.uri()?;
    let endpoint = format!("{}:{}", uri.authority.host, uri.authority.port);
    let user = uri.authority.userinfo.username.clone();
    let vhost = uri.vhost.clone();
    let mut tls = OwnedTLSConfig::default();
    if uri.scheme == AMQPScheme::AMQPS {
        if let Some(path) = &settings.tls_ca_file {
            let pem = std::fs::read_to_string(path).map_err(|e| AmqpError::TlsCaFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(AmqpError::TlsCaFile {
                    path: path.display().to_string(),
                    reason: "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into(),
                });
            }
            tls.cert_chain = Some(pem);
        } else {
            return Err(AmqpError::BadUrl {
                url: settings.redacted_url(),
                reason: "amqps:// needs tls_ca_file (PEM CA of the broker): this build has no public root store".into(),
            });
        }
    }
    let ca_file = settings.tls_ca_file.clone();
    let props =
        ConnectionProperties::default().with_connection_name(settings.connection_name().into());
    let runtime = lapin::runtime::default_runtime().map_err(|e| AmqpError::Unreachable {
        endpoint: endpoint.clone(),
        source: e,
    })?;
    Connection::connect_uri_with_config(uri, props, tls, runtime)
        .await
        .map_err(|e| {
            if let Some(reason) = certificate_rejection(&e) {
                return AmqpError::TlsCertificateRejected {
                    url: settings.redacted_url(),
                    ca_file: ca_file
                        .as_ref()
                        .map_or_else(String::new, |p| p.display().to_string()),
                    reason,
                };
            }
            match AmqpError::classify("connect", &user, &vhost, e) {
                AmqpError::ConnectionLost { source, .. } | AmqpError::Channel { source, .. } => {
                    AmqpError::Unreachable { endpoint, source }
                }
                other => other,
            }
        })
}

/// Why rustls refused the broker's certificate, if that is what `e` is (the TLS handshake's error
/// reaches us as an I/O error wrapping a `rustls::Error`, possibly wrapped again).
fn certificate_rejection(e: &lapin::Error) -> Option<String> {
    let lapin::ErrorKind::IOError(io) = e.kind() else {
        return None;
    };
    let mut source: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|r| r as _);
    while let Some(err) = source {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(why) => Some(match why {
                    rustls::CertificateError::UnknownIssuer => {
                        "the broker's certificate is not signed by the CA in tls_ca_file (unknown issuer)".to_owned()
                    }
                    rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. } => {
                        format!("the broker's certificate is not valid for the host name in the URL ({why:?})")
                    }
                    other => format!("the broker's certificate was refused: {other:?}"),
                }),
                _ => None,
            };
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>() {
            if let Some(r) = inner.get_ref() {
                source = Some(r as _);
                continue;
            }
        }
        source = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_and_heartbeat_applied() {
        let s = AmqpSettings::new("amqp://guest:secret@127.0.0.1:5672/%2f", "test");
        assert_eq!(s.redacted_url(), "amqp://guest:***@127.0.0.1:5672/%2f");
        let uri = s.uri().unwrap();
        assert_eq!(uri.query.heartbeat, Some(10));
        assert_eq!(uri.vhost, "/");
        assert!(s.connection_name().starts_with("helsemelding test "));
    }

    #[test]
    fn bad_url_is_configuration_error() {
        let s = AmqpSettings::new("http://nope", "test");
        let e = s.uri().unwrap_err();
        assert!(e.is_configuration(), "{e}");
    }

    #[tokio::test]
    async fn amqps_without_ca_is_configuration_error() {
        let s = AmqpSettings::new("amqps://guest:guest@127.0.0.1:5671/%2f", "test");
        let e = connect(&s).await.unwrap_err();
        assert!(
            e.is_configuration() && e.to_string().contains("tls_ca_file"),
            "{e}"
        );
        let mut s = s;
        s.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let e = connect(&s).await.unwrap_err();
        assert!(matches!(e, AmqpError::TlsCaFile { .. }), "{e}");
    }
}
