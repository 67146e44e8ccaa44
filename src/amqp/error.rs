//! Errors of the AMQP transport, each saying what the caller should do about it.
//!
//! Input: `lapin::Error`s and broker close reasons. Output: [`AmqpError`] (connection, topology,
//! channels) and [`PublishError`] (one publish). Every error answers one question:
//! *retry (transient)* or *fix the configuration (do not loop silently)*.

use lapin::ErrorKind;

/// What the caller should do with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Broker unreachable, connection or channel lost: retry with backoff.
    Transient,
    /// Refused access, unknown vhost, queue declared with other arguments, bad URL or TLS file:
    /// retrying will not help until an operator fixes something. Log loudly, back off long.
    Configuration,
}

/// A connection, channel or topology failure.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("bad AMQP URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot read TLS CA file {path}: {reason}")]
    TlsCaFile { path: String, reason: String },
    #[error("TLS: broker {url} refused: {reason} ({ca_file})")]
    TlsCertificateRejected {
        url: String,
        ca_file: String,
        reason: String,
    },
    #[error("AMQP broker {endpoint} unreachable: {source}")]
    Unreachable {
        endpoint: String,
        source: lapin::Error,
    },
    #[error("AMQP connection lost during {operation}: {source}")]
    ConnectionLost {
        operation: &'static str,
        source: lapin::Error,
    },
    #[error(
        "AMQP broker refused access during {operation} (user {user}, vhost {vhost}): {reason}"
    )]
    AccessRefused {
        operation: &'static str,
        user: String,
        vhost: String,
        reason: String,
    },
    #[error("queue {queue} already exists with a different argument {argument}: {detail}")]
    QueueArgumentMismatch {
        queue: String,
        argument: String,
        detail: String,
    },
    /// The broker does not know an exchange type the topology needs: a plugin is off.
    #[error("the AMQP broker has no exchange type {exchange_type} (needed for {needed}): enable its plugin on every node, `rabbitmq-plugins enable {plugin}`; broker said: {detail}")]
    ExchangeTypeUnknown {
        exchange_type: String,
        needed: &'static str,
        plugin: &'static str,
        detail: String,
    },
    #[error("AMQP precondition failed during {operation}: {detail}")]
    PreconditionFailed {
        operation: &'static str,
        detail: String,
    },
    #[error("AMQP object not found during {operation}: {detail}")]
    NotFound {
        operation: &'static str,
        detail: String,
    },
    #[error("AMQP channel failed during {operation}: {source}")]
    Channel {
        operation: &'static str,
        source: lapin::Error,
    },
    #[error("AMQP session shut down")]
    Shutdown,
}

impl AmqpError {
    /// Retry, or fix the configuration?
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::BadUrl { .. }
            | Self::TlsCaFile { .. }
            | Self::TlsCertificateRejected { .. }
            | Self::AccessRefused { .. }
            | Self::QueueArgumentMismatch { .. }
            | Self::ExchangeTypeUnknown { .. }
            | Self::PreconditionFailed { .. } => FaultKind::Configuration,
            // A missing queue/exchange at our own declare-then-use is a configuration fault
            // (someone deleted it, or the vhost does not exist).
            Self::NotFound { .. } => FaultKind::Configuration,
            Self::Unreachable { .. }
            | Self::ConnectionLost { .. }
            | Self::Channel { .. }
            | Self::Shutdown => FaultKind::Transient,
        }
    }

    /// Shorthand for `kind() == FaultKind::Configuration`.
    pub fn is_configuration(&self) -> bool {
        self.kind() == FaultKind::Configuration
    }

    /// Classify a lapin error from `operation` (e.g. `"queue.declare gateway_inbound"`).
    /// `user`/`vhost` name the login, for access errors.
    pub(crate) fn classify(
        operation: &'static str,
        user: &str,
        vhost: &str,
        e: lapin::Error,
    ) -> Self {
        if let ErrorKind::ProtocolError(amqp) = e.kind() {
            let text = amqp.get_message().to_string();
            // Reply codes from AMQP 0-9-1 §1.4.2: 403 access-refused, 404 not-found,
            // 406 precondition-failed, 530 not-allowed (RabbitMQ: unknown vhost).
            match amqp.get_id() {
                403 | 530 => {
                    return Self::AccessRefused {
                        operation,
                        user: user.to_owned(),
                        vhost: vhost.to_owned(),
                        reason: text,
                    }
                }
                404 => {
                    return Self::NotFound {
                        operation,
                        detail: text,
                    }
                }
                406 => {
                    return match parse_inequivalent_arg(&text) {
                        Some((argument, queue)) => Self::QueueArgumentMismatch {
                            queue,
                            argument,
                            detail: text,
                        },
                        None => Self::PreconditionFailed {
                            operation,
                            detail: text,
                        },
                    }
                }
                _ => {}
            }
        }
        if e.is_io_error() || matches!(e.kind(), ErrorKind::MissingHeartbeatError) {
            return Self::ConnectionLost {
                operation,
                source: e,
            };
        }
        if e.is_amqp_hard_error() || matches!(e.kind(), ErrorKind::InvalidConnectionState(_)) {
            return Self::ConnectionLost {
                operation,
                source: e,
            };
        }
        Self::Channel {
            operation,
            source: e,
        }
    }
}

/// RabbitMQ's text for a redeclare with other arguments:
/// `PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'gateway_inbound' in vhost '/': …`.
/// Returns (argument, queue).
fn parse_inequivalent_arg(text: &str) -> Option<(String, String)> {
    let rest = text.split("inequivalent arg '").nth(1)?;
    let (arg, rest) = rest.split_once('\'')?;
    let rest = rest.split("for queue '").nth(1)?;
    let (queue, _) = rest.split_once('\'')?;
    Some((arg.to_owned(), queue.to_owned()))
}

/// One publish did not end with the broker taking responsibility for the message.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// `mandatory` publish that no queue accepted (no such queue / no binding): the message is
    /// NOT stored anywhere. For a recipient queue this is a routing or topology fault.
    #[error("message {message_id} returned unroutable by the broker (exchange {exchange:?}, routing key {routing_key}): {reply_code} {reply_text}")]
    Returned {
        message_id: String,
        exchange: String,
        routing_key: String,
        reply_code: u16,
        reply_text: String,
    },
    /// The broker refused the message (publisher-confirm nack: queue overflow with
    /// `reject-publish`, internal error). Not stored; retry later.
    #[error("message {message_id} nacked by the broker (exchange {exchange:?}, routing key {routing_key})")]
    Nacked {
        message_id: String,
        exchange: String,
        routing_key: String,
    },
    /// Channel or connection went away before the confirm arrived: outcome unknown. Retrying
    /// may produce a duplicate with the same MsgId, which receivers deduplicate (DESIGN §3).
    #[error("publish of message {message_id} unconfirmed, channel or connection lost: {source}")]
    Lost {
        message_id: String,
        source: lapin::Error,
    },
    /// The channel was not in confirm mode: a programming error, never a success.
    #[error("publish of message {message_id} was not confirmed (channel not in confirm mode)")]
    NotConfirmed { message_id: String },
    /// The headers cannot be put on the wire (e.g. a MsgId longer than an AMQP short string).
    #[error(transparent)]
    Headers(#[from] super::headers::HeaderError),
}

impl PublishError {
    /// Retry (transient) or fix something (configuration / programming)?
    pub fn kind(&self) -> FaultKind {
        match self {
            Self::Nacked { .. } | Self::Lost { .. } => FaultKind::Transient,
            Self::Returned { .. } | Self::NotConfirmed { .. } | Self::Headers(_) => {
                FaultKind::Configuration
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inequivalent_arg_names_queue_and_argument() {
        let t = "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue 'gateway_inbound' in vhost 'v': received the value '20' of type 'signedint' but current is none";
        assert_eq!(
            parse_inequivalent_arg(t),
            Some(("x-delivery-limit".to_owned(), "gateway_inbound".to_owned()))
        );
        assert_eq!(
            parse_inequivalent_arg("PRECONDITION_FAILED - something else"),
            None
        );
    }
}
