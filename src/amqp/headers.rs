//! The wire contract's message properties and headers (DESIGN §1), typed.
//!
//! Input: AMQP `BasicProperties` (with its header `FieldTable`) of a delivery, or a
//! [`MessageHeaders`] to publish. Output: the other one. Failure: [`HeaderError`] naming the
//! header and what was expected; garbled values never panic.
//!
//! Mapping (compatible with Helsenorge.Messaging / NHN bus names):
//! - property `message_id` = MsgHead `MsgInfo/MsgId`;
//! - property `content_type` = `application/pkcs7-mime; smime-type=signed-data` or `application/xml`;
//! - property `type` = MsgHead `MsgInfo/Type` (code list 8279); a header `type` is accepted on input
//!   when the property is absent, as some senders put it there;
//! - headers `fromHerId`, `toHerId` (long string or integer of any width: EHRs send both),
//!   `applicationTimeStamp` (RFC 3339 text, or an AMQP timestamp in seconds);
//! - error-queue headers `errorCondition`, `errorDescription`, `originalMessageId`;
//! - property `delivery_mode` = 2 (persistent) on everything we publish;
//! - property `user_id` is read from deliveries only: RabbitMQ rejects a publish whose `user_id`
//!   differs from the connection's user, so it identifies the publishing account.

use std::fmt;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use time::format_description::well_known::Rfc3339;

use crate::ids::{HerId, MsgId, Timestamp};

/// Header name: sender's HER-id.
pub const FROM_HER_ID: &str = "fromHerId";
/// Header name: receiver's HER-id.
pub const TO_HER_ID: &str = "toHerId";
/// Header name: when the sending application made the message.
pub const APPLICATION_TIMESTAMP: &str = "applicationTimeStamp";
/// Header (fallback) / property name: MsgHead message function.
pub const TYPE: &str = "type";
/// Error-queue header: machine-readable condition, e.g. `transport:not-well-formed-xml`.
pub const ERROR_CONDITION: &str = "errorCondition";
/// Error-queue header: human-readable description (no patient data).
pub const ERROR_DESCRIPTION: &str = "errorDescription";
/// Error-queue header: MsgId of the message the error is about.
pub const ORIGINAL_MESSAGE_ID: &str = "originalMessageId";
/// AMQP delivery mode "persistent".
pub const PERSISTENT: u8 = 2;

/// The body's media type (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// DER CMS SignedData: `application/pkcs7-mime; smime-type=signed-data`.
    SignedCms,
    /// Unsigned MsgHead XML, only where the config allows unsigned traffic.
    Xml,
}

impl ContentType {
    /// The exact string we put on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignedCms => "application/pkcs7-mime; smime-type=signed-data",
            Self::Xml => "application/xml",
        }
    }

    /// Parse a media type leniently in form (case, spaces, quotes, extra parameters such as
    /// `charset`) but strictly in meaning: pkcs7-mime must say `smime-type=signed-data`.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let bad = || HeaderError::Invalid {
            header: "content_type",
            value: s.to_owned(),
            expected: "application/pkcs7-mime; smime-type=signed-data or application/xml",
        };
        let mut parts = s.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut smime_type = None;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("smime-type") {
                    smime_type = Some(v.trim().trim_matches('"').to_ascii_lowercase());
                }
            }
        }
        match media.as_str() {
            "application/pkcs7-mime" if smime_type.as_deref() == Some("signed-data") => {
                Ok(Self::SignedCms)
            }
            "application/xml" | "text/xml" => Ok(Self::Xml),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A header or property that is missing or cannot be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("AMQP header/property {header} is missing")]
    Missing { header: &'static str },
    #[error("AMQP header {header} has type {found}, expected {expected}")]
    WrongType {
        header: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error("AMQP header/property {header} = {value:?} is invalid, expected {expected}")]
    Invalid {
        header: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "AMQP property {header} is {len} bytes, longer than the 255 an AMQP short string holds"
    )]
    TooLong { header: &'static str, len: usize },
}

/// Everything the wire contract puts on a message besides the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeaders {
    pub from_her_id: HerId,
    pub to_her_id: HerId,
    /// MsgHead `MsgInfo/Type` V, e.g. `DIALOG_FORESPORSEL` (code list 8279).
    pub msg_type: String,
    pub message_id: MsgId,
    pub application_timestamp: Timestamp,
    pub content_type: ContentType,
    /// Error-queue messages only.
    pub error_condition: Option<String>,
    pub error_description: Option<String>,
    pub original_message_id: Option<MsgId>,
}

fn short(header: &'static str, s: &str) -> Result<ShortString, HeaderError> {
    ShortString::try_new(s).map_err(|_| HeaderError::TooLong {
        header,
        len: s.len(),
    })
}

impl MessageHeaders {
    /// The AMQP properties for publishing: persistent, with every header of DESIGN §1.
    pub fn to_properties(&self) -> Result<BasicProperties, HeaderError> {
        let mut t = FieldTable::default();
        t.insert(
            FROM_HER_ID.into(),
            AMQPValue::LongString(self.from_her_id.to_string().into()),
        );
        t.insert(
            TO_HER_ID.into(),
            AMQPValue::LongString(self.to_her_id.to_string().into()),
        );
        let ts = self
            .application_timestamp
            .format(&Rfc3339)
            .map_err(|e| HeaderError::Invalid {
                header: APPLICATION_TIMESTAMP,
                value: e.to_string(),
                expected: "a time RFC 3339 can express",
            })?;
        t.insert(
            APPLICATION_TIMESTAMP.into(),
            AMQPValue::LongString(ts.into()),
        );
        let mut opt = |name: &'static str, v: &Option<String>| {
            if let Some(v) = v {
                t.insert(name.into(), AMQPValue::LongString(v.as_str().into()));
            }
        };
        opt(ERROR_CONDITION, &self.error_condition);
        opt(ERROR_DESCRIPTION, &self.error_description);
        opt(
            ORIGINAL_MESSAGE_ID,
            &self.original_message_id.as_ref().map(|m| m.0.clone()),
        );
        Ok(BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(short("message_id", self.message_id.as_str())?)
            .with_content_type(self.content_type.as_str().into())
            .with_type(short(TYPE, &self.msg_type)?)
            .with_headers(t))
    }

    /// Parse the properties of a delivery. Required: `message_id`, `content_type`, `type`,
    /// `fromHerId`, `toHerId`, `applicationTimeStamp`.
    pub fn from_properties(p: &BasicProperties) -> Result<Self, HeaderError> {
        let empty = FieldTable::default();
        let t = p.headers().as_ref().unwrap_or(&empty);
        let message_id = p
            .message_id()
            .as_ref()
            .map(|m| MsgId::new(m.as_str()))
            .filter(|m| !m.as_str().is_empty())
            .ok_or(HeaderError::Missing {
                header: "message_id",
            })?;
        let content_type = ContentType::parse(
            p.content_type()
                .as_ref()
                .ok_or(HeaderError::Missing {
                    header: "content_type",
                })?
                .as_str(),
        )?;
        let msg_type = match p.kind() {
            Some(k) => k.as_str().to_owned(),
            None => text(t, TYPE)?.ok_or(HeaderError::Missing { header: TYPE })?,
        };
        check_msg_type(&msg_type)?;
        Ok(Self {
            from_her_id: her_id(t, FROM_HER_ID)?,
            to_her_id: her_id(t, TO_HER_ID)?,
            msg_type,
            message_id,
            application_timestamp: timestamp(t, APPLICATION_TIMESTAMP)?,
            content_type,
            error_condition: text(t, ERROR_CONDITION)?,
            error_description: text(t, ERROR_DESCRIPTION)?,
            original_message_id: text(t, ORIGINAL_MESSAGE_ID)?.map(MsgId::new),
        })
    }
}

/// Code list 8279 values are upper-case words joined by underscores; anything else is garbled.
fn check_msg_type(s: &str) -> Result<(), HeaderError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(HeaderError::Invalid {
            header: TYPE,
            value: s.chars().take(80).collect(),
            expected: "a message function from code list 8279 (e.g. DIALOG_FORESPORSEL)",
        })
    }
}

fn type_name(v: &AMQPValue) -> String {
    format!("{:?}", v.get_type())
}

/// A text header: long string (or the deprecated short string). Absent → `None`.
fn text(t: &FieldTable, name: &'static str) -> Result<Option<String>, HeaderError> {
    match t.inner().get(name) {
        None | Some(AMQPValue::Void) => Ok(None),
        Some(AMQPValue::LongString(s)) => std::str::from_utf8(s.as_bytes())
            .map(|s| Some(s.to_owned()))
            .map_err(|_| HeaderError::Invalid {
                header: name,
                value: lossy(s),
                expected: "UTF-8 text",
            }),
        Some(AMQPValue::ShortString(s)) => Ok(Some(s.as_str().to_owned())),
        Some(v) => Err(HeaderError::WrongType {
            header: name,
            found: type_name(v),
            expected: "a string",
        }),
    }
}

fn lossy(s: &LongString) -> String {
    String::from_utf8_lossy(&s.as_bytes()[..s.len().min(80)]).into_owned()
}

/// A HER-id header: decimal text or an integer of any AMQP width.
fn her_id(t: &FieldTable, name: &'static str) -> Result<HerId, HeaderError> {
    let invalid = |value: String| HeaderError::Invalid {
        header: name,
        value,
        expected: "a positive HER-id",
    };
    let int = |n: i128| -> Result<HerId, HeaderError> {
        u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(HerId)
            .ok_or_else(|| invalid(n.to_string()))
    };
    match t.inner().get(name) {
        None | Some(AMQPValue::Void) => Err(HeaderError::Missing { header: name }),
        Some(AMQPValue::ShortShortInt(n)) => int((*n).into()),
        Some(AMQPValue::ShortShortUInt(n)) => int((*n).into()),
        Some(AMQPValue::ShortInt(n)) => int((*n).into()),
        Some(AMQPValue::ShortUInt(n)) => int((*n).into()),
        Some(AMQPValue::LongInt(n)) => int((*n).into()),
        Some(AMQPValue::LongUInt(n)) => int((*n).into()),
        Some(AMQPValue::LongLongInt(n)) => int((*n).into()),
        Some(AMQPValue::LongString(_) | AMQPValue::ShortString(_)) => {
            let s = text(t, name)?.unwrap_or_default();
            s.parse::<HerId>()
                .map_err(|_| invalid(s.chars().take(80).collect()))
        }
        Some(v) => Err(HeaderError::WrongType {
            header: name,
            found: type_name(v),
            expected: "a string or an integer",
        }),
    }
}

/// A time header: RFC 3339 text, or an AMQP timestamp (seconds since the Unix epoch).
fn timestamp(t: &FieldTable, name: &'static str) -> Result<Timestamp, HeaderError> {
    match t.inner().get(name) {
        None | Some(AMQPValue::Void) => Err(HeaderError::Missing { header: name }),
        Some(AMQPValue::Timestamp(secs)) => i64::try_from(*secs)
            .ok()
            .and_then(|s| Timestamp::from_unix_timestamp(s).ok())
            .ok_or(HeaderError::Invalid {
                header: name,
                value: secs.to_string(),
                expected: "a timestamp in range",
            }),
        Some(AMQPValue::LongString(_) | AMQPValue::ShortString(_)) => {
            let s = text(t, name)?.unwrap_or_default();
            Timestamp::parse(s.trim(), &Rfc3339).map_err(|_| HeaderError::Invalid {
                header: name,
                value: s.chars().take(80).collect(),
                expected: "an RFC 3339 date-time, e.g. 2026-11-23T14:52:46Z",
            })
        }
        Some(v) => Err(HeaderError::WrongType {
            header: name,
            found: type_name(v),
            expected: "RFC 3339 text or an AMQP timestamp",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> MessageHeaders {
        MessageHeaders {
            from_her_id: HerId(81234),
            to_her_id: HerId(90000),
            msg_type: "DIALOG_FORESPORSEL".into(),
            message_id: MsgId::new("3f2504e0-4f89-11d3-9a0c-0305e82c3301"),
            application_timestamp: datetime!(2026-11-23 14:00:00 UTC),
            content_type: ContentType::SignedCms,
            error_condition: Some("transport:not-well-formed-xml".into()),
            error_description: Some("line 3".into()),
            original_message_id: Some(MsgId::new("abc")),
        }
    }

    #[test]
    fn round_trip_through_properties() {
        let h = sample();
        let p = h.to_properties().unwrap();
        assert_eq!(*p.delivery_mode(), Some(PERSISTENT));
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/pkcs7-mime; smime-type=signed-data"
        );
        assert_eq!(MessageHeaders::from_properties(&p).unwrap(), h);
    }

    fn with_header(name: &str, v: AMQPValue) -> BasicProperties {
        let p = sample().to_properties().unwrap();
        let mut t = p.headers().clone().unwrap();
        t.insert(name.into(), v);
        p.with_headers(t)
    }

    #[test]
    fn her_ids_as_integers_of_any_width() {
        for (v, expect) in [
            (AMQPValue::ShortShortUInt(42), 42),
            (AMQPValue::ShortUInt(4242), 4242),
            (AMQPValue::LongInt(81234), 81234),
            (AMQPValue::LongUInt(81234), 81234),
            (AMQPValue::LongLongInt(81234), 81234),
        ] {
            let h = MessageHeaders::from_properties(&with_header(FROM_HER_ID, v)).unwrap();
            assert_eq!(h.from_her_id, HerId(expect));
        }
        let h = MessageHeaders::from_properties(&with_header(
            TO_HER_ID,
            AMQPValue::ShortString("42".into()),
        ))
        .unwrap();
        assert_eq!(h.to_her_id, HerId(42));
    }

    #[test]
    fn garbled_values_are_clear_errors() {
        let e =
            MessageHeaders::from_properties(&with_header(FROM_HER_ID, AMQPValue::LongLongInt(-5)))
                .unwrap_err();
        assert!(
            matches!(
                e,
                HeaderError::Invalid {
                    header: FROM_HER_ID,
                    ..
                }
            ),
            "{e}"
        );
        let e = MessageHeaders::from_properties(&with_header(
            FROM_HER_ID,
            AMQPValue::LongLongInt(1 << 40),
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                HeaderError::Invalid {
                    header: FROM_HER_ID,
                    ..
                }
            ),
            "{e}"
        );
        let e = MessageHeaders::from_properties(&with_header(TO_HER_ID, AMQPValue::Boolean(true)))
            .unwrap_err();
        assert!(
            matches!(
                e,
                HeaderError::WrongType {
                    header: TO_HER_ID,
                    ..
                }
            ),
            "{e}"
        );
        let e = MessageHeaders::from_properties(&with_header(
            TO_HER_ID,
            AMQPValue::LongString("12x".into()),
        ))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "AMQP header/property toHerId = \"12x\" is invalid, expected a positive HER-id"
        );
        let e = MessageHeaders::from_properties(&with_header(
            TO_HER_ID,
            AMQPValue::LongString(vec![0xff, 0xfe].into()),
        ))
        .unwrap_err();
        assert!(
            matches!(
                e,
                HeaderError::Invalid {
                    expected: "UTF-8 text",
                    ..
                }
            ),
            "{e}"
        );
        let e = MessageHeaders::from_properties(&with_header(
            APPLICATION_TIMESTAMP,
            AMQPValue::LongString("yesterday".into()),
        ))
        .unwrap_err();
        assert!(e.to_string().contains("RFC 3339"), "{e}");
        let h = MessageHeaders::from_properties(&with_header(
            APPLICATION_TIMESTAMP,
            AMQPValue::Timestamp(1_700_000_000),
        ))
        .unwrap();
        assert_eq!(h.application_timestamp.unix_timestamp(), 1_700_000_000);
    }

    #[test]
    fn missing_and_bad_properties() {
        let p = sample().to_properties().unwrap();
        let t = p.headers().clone().unwrap();
        let no_from: FieldTable = t
            .inner()
            .iter()
            .filter(|(k, _)| k.as_str() != FROM_HER_ID)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into();
        let e = MessageHeaders::from_properties(&p.clone().with_headers(no_from)).unwrap_err();
        assert_eq!(
            e,
            HeaderError::Missing {
                header: FROM_HER_ID
            }
        );
        let e = MessageHeaders::from_properties(&p.clone().with_type("dialog; drop".into()))
            .unwrap_err();
        assert!(matches!(e, HeaderError::Invalid { header: TYPE, .. }));
        let e = MessageHeaders::from_properties(
            &p.clone()
                .with_content_type("application/pkcs7-mime; smime-type=enveloped-data".into()),
        )
        .unwrap_err();
        assert!(matches!(
            e,
            HeaderError::Invalid {
                header: "content_type",
                ..
            }
        ));
        let e = MessageHeaders::from_properties(&BasicProperties::default()).unwrap_err();
        assert_eq!(
            e,
            HeaderError::Missing {
                header: "message_id"
            }
        );
        let mut long = sample();
        long.message_id = MsgId::new("x".repeat(300));
        assert_eq!(
            long.to_properties().unwrap_err(),
            HeaderError::TooLong {
                header: "message_id",
                len: 300
            }
        );
    }

    #[test]
    fn content_type_forms() {
        assert_eq!(
            ContentType::parse("Application/PKCS7-MIME;smime-type=\"signed-data\"").unwrap(),
            ContentType::SignedCms
        );
        assert_eq!(
            ContentType::parse("application/xml; charset=utf-8").unwrap(),
            ContentType::Xml
        );
        assert!(ContentType::parse("application/pkcs7-mime").is_err());
        assert!(ContentType::parse("").is_err());
    }
}
