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
//!   differs from the connection's user, so it identifies the publishing account;
//! - header `cpaId` (optional): the Helsenorge.Messaging collaboration agreement, carried on.
//!
//! AMQP 1.0 clients (Helsenorge.Messaging, DESIGN §1): RabbitMQ 3.10's plugin hands their
//! application-properties to us only inside the header `x-amqp-1.0-app-properties` and their
//! subject (the message function) inside `x-amqp-1.0-properties`, and sets `type = "binary"` for a
//! data-section body. So on input a field missing from the plain headers is taken from those
//! sections ([`amqp10`](super::amqp10)), and the message function from the subject when `type` is
//! the plugin's marker; on output every message carries both forms, with all application-properties
//! as strings in HN.Msg's formats (`research/hnmsg-interop.md` §1, §3).

use std::fmt;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use time::format_description::well_known::Rfc3339;

use super::amqp10::{self, Properties10};
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
/// Header (optional): Helsenorge.Messaging's collaboration-agreement id.
pub const CPA_ID: &str = "cpaId";
/// Error-queue header: when the receiver refused the message (HN.Msg: `MM/dd/yyyy HH:mm:ss`, UTC).
pub const RECEIVER_TIMESTAMP: &str = "receiverTimeStamp";
/// Error-queue header: details of the condition, each item followed by `;` (HN.Msg).
pub const ERROR_CONDITION_DATA: &str = "errorConditionData";
/// Header holding an AMQP 1.0 client's encoded `properties` section (RabbitMQ's AMQP 1.0 plugin),
/// and the one a 1.0 receiver gets its properties (subject!) from.
pub const AMQP10_PROPERTIES: &str = "x-amqp-1.0-properties";
/// Header holding an encoded `application-properties` section, both ways.
pub const AMQP10_APP_PROPERTIES: &str = "x-amqp-1.0-app-properties";
/// AMQP delivery mode "persistent".
pub const PERSISTENT: u8 = 2;

/// The body's media type (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// DER CMS SignedData: `application/pkcs7-mime; smime-type=signed-data`.
    SignedCms,
    /// DER CMS EnvelopedData around the SignedData (sign, then encrypt; DESIGN §1 "Encryption"):
    /// `application/pkcs7-mime; smime-type=signed-and-enveloped-data`, as Helsenorge.Messaging
    /// writes it (`research/hnmsg-interop.md` §1 "Message"). `enveloped-data` (RFC 8551 §3.2.2) and
    /// `authEnveloped-data` (RFC 8551 §3.2.2, AES-GCM) are read as the same.
    EnvelopedCms,
    /// Unsigned MsgHead XML, only where the config allows unsigned traffic.
    Xml,
}

impl ContentType {
    /// The exact string we put on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignedCms => "application/pkcs7-mime; smime-type=signed-data",
            Self::EnvelopedCms => "application/pkcs7-mime; smime-type=signed-and-enveloped-data",
            Self::Xml => "application/xml",
        }
    }

    /// Parse a media type leniently in form (case, spaces, quotes, extra parameters such as
    /// `charset`) but strictly in meaning: pkcs7-mime must say `smime-type=signed-data` or one of
    /// the enveloped types.
    pub fn parse(s: &str) -> Result<Self, HeaderError> {
        let bad = || {
            HeaderError::Invalid {
            header: "content_type",
            value: s.to_owned(),
            expected: "application/pkcs7-mime; smime-type=signed-data|signed-and-enveloped-data|enveloped-data|authEnveloped-data, or application/xml",
        }
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
            "application/pkcs7-mime"
                if matches!(
                    smime_type.as_deref(),
                    Some("signed-and-enveloped-data" | "enveloped-data" | "authenveloped-data")
                ) =>
            {
                Ok(Self::EnvelopedCms)
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
    /// Helsenorge.Messaging's `cpaId`, when the sender gave one: carried to the recipients.
    pub cpa_id: Option<String>,
}

fn short(header: &'static str, s: &str) -> Result<ShortString, HeaderError> {
    ShortString::try_new(s).map_err(|_| HeaderError::TooLong {
        header,
        len: s.len(),
    })
}

/// `applicationTimeStamp` as Helsenorge.Messaging writes it: `yyyy-MM-ddTHH:mm:ssK` (whole
/// seconds; `Z` for UTC, else the offset).
pub fn hnmsg_timestamp(t: Timestamp) -> String {
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// `receiverTimeStamp` as Helsenorge.Messaging writes it: `MM/dd/yyyy HH:mm:ss` (we write UTC).
pub fn hnmsg_receiver_timestamp(t: Timestamp) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[month]/[day]/[year] [hour]:[minute]:[second]"
    ))
    .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// The two AMQP 1.0 sections a 1.0 receiver reads (through RabbitMQ's plugin) as properties and
/// application-properties, encoded, ready to be the `x-amqp-1.0-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amqp10Sections {
    pub properties: Properties10,
    /// Name and value of each application-property, all strings (HN.Msg reads nothing else).
    pub application_properties: Vec<(&'static str, String)>,
}

impl Amqp10Sections {
    /// Puts both sections into `t` as `x-amqp-1.0-properties` / `x-amqp-1.0-app-properties`,
    /// replacing whatever a delivery brought.
    pub fn insert_into(&self, t: &mut FieldTable) -> Result<(), HeaderError> {
        let bad = |header: &'static str, e: amqp10::Amqp10Error| HeaderError::Invalid {
            header,
            value: e.to_string(),
            expected: "values AMQP 1.0 can encode",
        };
        let props = self
            .properties
            .encode()
            .map_err(|e| bad(AMQP10_PROPERTIES, e))?;
        let app = amqp10::encode_application_properties(&self.application_properties)
            .map_err(|e| bad(AMQP10_APP_PROPERTIES, e))?;
        t.insert(
            AMQP10_PROPERTIES.into(),
            AMQPValue::LongString(props.into()),
        );
        t.insert(
            AMQP10_APP_PROPERTIES.into(),
            AMQPValue::LongString(app.into()),
        );
        Ok(())
    }
}

impl MessageHeaders {
    /// The headers of an ordinary message (no error condition, no original message, no cpaId): what
    /// a sender gives the intake and the gateway gives each copy.
    pub fn new(
        (from_her_id, to_her_id): (HerId, HerId),
        msg_type: impl Into<String>,
        message_id: MsgId,
        application_timestamp: Timestamp,
        content_type: ContentType,
    ) -> MessageHeaders {
        MessageHeaders {
            from_her_id,
            to_her_id,
            msg_type: msg_type.into(),
            message_id,
            application_timestamp,
            content_type,
            error_condition: None,
            error_description: None,
            original_message_id: None,
            cpa_id: None,
        }
    }

    /// What an AMQP 1.0 receiver sees: subject = the message function, message-id, content-type,
    /// correlation-id (the message answered, else the message itself), and as application-properties
    /// fromHerId, toHerId, applicationTimeStamp, and those of cpaId, originalMessageId,
    /// errorCondition and errorDescription that are set.
    pub fn amqp10_sections(&self) -> Amqp10Sections {
        let mut app = vec![
            (FROM_HER_ID, self.from_her_id.to_string()),
            (TO_HER_ID, self.to_her_id.to_string()),
            (
                APPLICATION_TIMESTAMP,
                hnmsg_timestamp(self.application_timestamp),
            ),
        ];
        let optional = [
            (CPA_ID, self.cpa_id.clone()),
            (
                ORIGINAL_MESSAGE_ID,
                self.original_message_id.as_ref().map(|m| m.0.clone()),
            ),
            (ERROR_CONDITION, self.error_condition.clone()),
            (ERROR_DESCRIPTION, self.error_description.clone()),
        ];
        app.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        Amqp10Sections {
            properties: Properties10 {
                message_id: Some(self.message_id.0.clone()),
                to: None,
                subject: Some(self.msg_type.clone()),
                reply_to: None,
                correlation_id: Some(
                    self.original_message_id
                        .as_ref()
                        .unwrap_or(&self.message_id)
                        .0
                        .clone(),
                ),
                content_type: Some(self.content_type.as_str().into()),
            },
            application_properties: app,
        }
    }

    /// The AMQP properties for publishing: persistent, with every header of DESIGN §1, in both the
    /// plain (0-9-1) and the AMQP 1.0 form.
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
        opt(CPA_ID, &self.cpa_id);
        self.amqp10_sections().insert_into(&mut t)?;
        Ok(BasicProperties::default()
            .with_delivery_mode(PERSISTENT)
            .with_message_id(short("message_id", self.message_id.as_str())?)
            .with_content_type(self.content_type.as_str().into())
            .with_type(short(TYPE, &self.msg_type)?)
            .with_headers(t))
    }

    /// Parse the properties of a delivery. Required: `message_id`, `content_type`, the message
    /// function, `fromHerId`, `toHerId`, `applicationTimeStamp` — each from the plain property or
    /// header, or else from an AMQP 1.0 client's sections (module doc).
    pub fn from_properties(p: &BasicProperties) -> Result<Self, HeaderError> {
        let wire = Wire::of(p)?;
        let t = &wire.table;
        let one = wire.properties.as_ref();
        let message_id = p
            .message_id()
            .as_ref()
            .map(|m| m.as_str().to_owned())
            .or_else(|| one.and_then(|o| o.message_id.clone()))
            .map(MsgId::new)
            .filter(|m| !m.as_str().is_empty())
            .ok_or(HeaderError::Missing {
                header: "message_id",
            })?;
        let content_type = p
            .content_type()
            .as_ref()
            .map(|c| c.as_str().to_owned())
            .or_else(|| one.and_then(|o| o.content_type.clone()))
            .ok_or(HeaderError::Missing {
                header: "content_type",
            })?;
        let content_type = ContentType::parse(&content_type)?;
        // RabbitMQ's AMQP 1.0 plugin marks a 1.0 body with `type` = its section kind; the
        // message function is then the subject (research/hnmsg-interop.md §3).
        let property_type = p
            .kind()
            .as_ref()
            .map(|k| k.as_str())
            .filter(|k| !PLUGIN_TYPE_MARKERS.contains(k));
        let msg_type = match (property_type, one.and_then(|o| o.subject.as_deref())) {
            (Some(k), _) => k.to_owned(),
            (None, Some(subject)) => subject.to_owned(),
            (None, None) => text(t, TYPE)?.ok_or(HeaderError::Missing { header: TYPE })?,
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
            cpa_id: text(t, CPA_ID)?,
        })
    }
}

/// `type` values RabbitMQ's AMQP 1.0 plugin sets on messages from 1.0 clients (`binary` for one
/// data section, `amqp-1.0` for other bodies): not message functions.
const PLUGIN_TYPE_MARKERS: [&str; 2] = ["binary", "amqp-1.0"];

/// A delivery's headers as one table: the plain headers, plus each application-property of an
/// AMQP 1.0 client that no plain header of the same name overrides; and its 1.0 properties.
struct Wire {
    table: FieldTable,
    properties: Option<Properties10>,
}

impl Wire {
    fn of(p: &BasicProperties) -> Result<Wire, HeaderError> {
        let mut table = p.headers().clone().unwrap_or_default();
        let section = |name: &'static str| -> Result<Option<Vec<u8>>, HeaderError> {
            match table.inner().get(name) {
                None | Some(AMQPValue::Void) => Ok(None),
                Some(AMQPValue::LongString(s)) => Ok(Some(s.as_bytes().to_vec())),
                Some(AMQPValue::ByteArray(b)) => Ok(Some(b.as_slice().to_vec())),
                Some(v) => Err(HeaderError::WrongType {
                    header: name,
                    found: type_name(v),
                    expected: "an encoded AMQP 1.0 section (long string)",
                }),
            }
        };
        let invalid = |header: &'static str, e: amqp10::Amqp10Error| HeaderError::Invalid {
            header,
            value: e.to_string(),
            expected: "an AMQP 1.0 section as RabbitMQ's AMQP 1.0 plugin writes it",
        };
        let properties = section(AMQP10_PROPERTIES)?
            .map(|b| Properties10::decode(&b).map_err(|e| invalid(AMQP10_PROPERTIES, e)))
            .transpose()?;
        if let Some(b) = section(AMQP10_APP_PROPERTIES)? {
            let app = amqp10::decode_application_properties(&b)
                .map_err(|e| invalid(AMQP10_APP_PROPERTIES, e))?;
            for (k, v) in app {
                let key: ShortString = match ShortString::try_new(k) {
                    Ok(k) => k,
                    // A name longer than any header we read cannot matter to us.
                    Err(_) => continue,
                };
                if !table.inner().contains_key(key.as_str()) {
                    table.insert(key, amqp091(v));
                }
            }
        }
        Ok(Wire { table, properties })
    }
}

/// An application-property's value in 0-9-1 terms, so one reader serves both forms. Values of
/// types no header of ours has keep a type that readers report as wrong.
fn amqp091(v: amqp10::Value) -> AMQPValue {
    use amqp10::Value as V;
    match v {
        V::Null => AMQPValue::Void,
        V::String(s) | V::Symbol(s) => AMQPValue::LongString(s.into()),
        V::Bool(b) => AMQPValue::Boolean(b),
        V::Ubyte(n) => AMQPValue::ShortShortUInt(n),
        V::Ushort(n) => AMQPValue::ShortUInt(n),
        V::Uint(n) => AMQPValue::LongUInt(n),
        V::Ulong(n) => i64::try_from(n)
            .map(AMQPValue::LongLongInt)
            .unwrap_or(AMQPValue::Double(n as f64)),
        V::Byte(n) => AMQPValue::ShortShortInt(n),
        V::Short(n) => AMQPValue::ShortInt(n),
        V::Int(n) => AMQPValue::LongInt(n),
        V::Long(n) => AMQPValue::LongLongInt(n),
        // AMQP 1.0 timestamps are milliseconds, 0-9-1's are seconds.
        V::Timestamp(ms) => u64::try_from(ms.div_euclid(1000))
            .map(AMQPValue::Timestamp)
            .unwrap_or(AMQPValue::LongLongInt(ms)),
        V::Binary(b) => AMQPValue::ByteArray(b.into()),
        other => AMQPValue::ByteArray(other.type_name().as_bytes().to_vec().into()),
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

/// A time header: RFC 3339 text, Helsenorge.Messaging's forms (`yyyy-MM-ddTHH:mm:ssK`, where a
/// .NET time of unspecified kind has no offset; `MM/dd/yyyy HH:mm:ss`), both without an offset
/// read as UTC, or an AMQP timestamp (seconds since the Unix epoch).
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
            parse_time_text(s.trim()).ok_or_else(|| HeaderError::Invalid {
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

/// The text forms [`timestamp`] accepts.
fn parse_time_text(s: &str) -> Option<Timestamp> {
    use time::macros::format_description;
    if let Ok(t) = Timestamp::parse(s, &Rfc3339) {
        return Some(t);
    }
    let local = [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[month]/[day]/[year] [hour]:[minute]:[second]"),
    ];
    local
        .iter()
        .find_map(|f| time::PrimitiveDateTime::parse(s, f).ok())
        .map(|t| t.assume_utc())
}

/// The `errorCondition` Helsenorge.Messaging uses for a gateway condition of the same meaning
/// (`research/hnmsg-interop.md` §1 "errorCondition"); a condition HN.Msg has no word for is itself.
/// HN.Msg reports header and HER-id faults as `invalid-field-value`, every security fault it has no
/// closer word for as `invalid-certificate`, and failures to pass a message on as `internal-error`.
pub fn hnmsg_error_condition(condition: &str) -> &str {
    match condition {
        "transport:invalid-headers" | "transport:unknown-receiver" | "abuse:unknown-sender" => {
            "transport:invalid-field-value"
        }
        // Encryption faults too: HN.Msg's decryption failure is a security fault it has no closer
        // word for (research/hnmsg-interop.md §1 "errorCondition"; not checked in its source).
        "transport:invalid-signature"
        | "transport:unsigned-message"
        | "transport:unencrypted-message"
        | "transport:undecryptable"
        | "transport:wrong-recipient" => "transport:invalid-certificate",
        "transport:invalid-envelope" => "transport:unsupported-message",
        "transport:undeliverable" | "transport:retries-exhausted" => "transport:internal-error",
        same => same,
    }
}

/// Most characters of an `errorDescription` (the gateway's own texts, bounded so a header never
/// grows without limit).
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// The properties of an error-queue entry or dead letter about the delivery with properties
/// `original` (its body travels with it). Keeps the original's properties and headers (so
/// `helsemelding redrive` can put a dead letter back as it came), adds the plain headers
/// `errorCondition` (the gateway's condition), `errorDescription`, `originalMessageId` and
/// `receiverTimeStamp`, and writes the AMQP 1.0 sections a Helsenorge.Messaging error-queue reader
/// expects: a new message-id, the original's subject, and as application-properties fromHerId (the
/// original's toHerId), toHerId (its sender), applicationTimeStamp, originalMessageId,
/// receiverTimeStamp, errorCondition (HN.Msg's word, [`hnmsg_error_condition`]), errorDescription
/// and errorConditionData (the gateway's own condition, followed by `;`).
pub fn error_entry_properties(
    original: &BasicProperties,
    condition: &str,
    description: &str,
    original_id: Option<&MsgId>,
    now: Timestamp,
) -> BasicProperties {
    let mut t: FieldTable = original.headers().clone().unwrap_or_default();
    let description: String = description.chars().take(MAX_DESCRIPTION_CHARS).collect();
    let receiver_ts = hnmsg_receiver_timestamp(now);
    // What can be read of the original, in whichever form it came (it may be unreadable: that
    // can be why it is refused).
    let wire = Wire::of(original).ok();
    let table = wire.as_ref().map(|w| &w.table);
    let her = |name| table.and_then(|t| her_id(t, name).ok());
    let (from, to) = (her(FROM_HER_ID), her(TO_HER_ID));
    let subject = wire
        .as_ref()
        .and_then(|w| w.properties.as_ref())
        .and_then(|p| p.subject.clone())
        .or_else(|| {
            original
                .kind()
                .as_ref()
                .map(|k| k.as_str().to_owned())
                .filter(|k| !PLUGIN_TYPE_MARKERS.contains(&k.as_str()))
        });
    let original_id = original_id
        .map(|m| m.0.clone())
        .or_else(|| original.message_id().as_ref().map(|m| m.to_string()));
    // An AMQP 1.0 sender's fields become plain headers too, so a redriven dead letter reads as it
    // came whatever the (replaced) sections say.
    for name in [FROM_HER_ID, TO_HER_ID, APPLICATION_TIMESTAMP, CPA_ID] {
        if let (Some(v), false) = (
            table.and_then(|w| w.inner().get(name)),
            t.inner().contains_key(name),
        ) {
            t.insert(name.into(), v.clone());
        }
    }
    let mut plain = |name: &'static str, v: &str| {
        t.insert(name.into(), AMQPValue::LongString(v.into()));
    };
    plain(ERROR_CONDITION, condition);
    plain(ERROR_DESCRIPTION, &description);
    plain(RECEIVER_TIMESTAMP, &receiver_ts);
    if let Some(o) = &original_id {
        plain(ORIGINAL_MESSAGE_ID, o);
    }
    let mut app: Vec<(&'static str, String)> = Vec::new();
    if let Some(to) = to {
        app.push((FROM_HER_ID, to.to_string()));
    }
    if let Some(from) = from {
        app.push((TO_HER_ID, from.to_string()));
    }
    app.push((APPLICATION_TIMESTAMP, hnmsg_timestamp(now)));
    if let Some(o) = &original_id {
        app.push((ORIGINAL_MESSAGE_ID, o.clone()));
    }
    app.push((RECEIVER_TIMESTAMP, receiver_ts));
    app.push((ERROR_CONDITION, hnmsg_error_condition(condition).to_owned()));
    app.push((ERROR_DESCRIPTION, description));
    app.push((ERROR_CONDITION_DATA, format!("{condition};")));
    let sections = Amqp10Sections {
        properties: Properties10 {
            message_id: Some(error_entry_id(original_id.as_deref(), condition)),
            to: from.map(|f| format!("{f}_error")),
            subject,
            reply_to: None,
            correlation_id: original_id,
            content_type: original.content_type().as_ref().map(|c| c.to_string()),
        },
        application_properties: app,
    };
    if let Err(e) = sections.insert_into(&mut t) {
        // Only strings go in, which always encode; should that ever change, the plain headers
        // still say everything.
        tracing::warn!(error = %e, "cannot encode the AMQP 1.0 sections of an error entry");
    }
    original
        .clone()
        .with_headers(t)
        .with_delivery_mode(PERSISTENT)
}

/// The message-id of an error entry: new (HN.Msg gives error messages their own id) but the same
/// for the same refusal, so a redelivery repeats the same entry rather than a second one.
fn error_entry_id(original: Option<&str>, condition: &str) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!(
        "helsemelding-error\0{}\0{condition}",
        original.unwrap_or("")
    ));
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid().to_string()
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
            cpa_id: None,
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
            // Neither the plain header nor the AMQP 1.0 section (which would stand in for it).
            .filter(|(k, _)| k.as_str() != FROM_HER_ID && k.as_str() != AMQP10_APP_PROPERTIES)
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
                .with_content_type("application/pkcs7-mime; smime-type=compressed-data".into()),
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
        for enveloped in [
            "application/pkcs7-mime; smime-type=signed-and-enveloped-data",
            "application/pkcs7-mime; smime-type=enveloped-data",
            "application/pkcs7-mime; smime-type=authEnveloped-data",
        ] {
            assert_eq!(
                ContentType::parse(enveloped).unwrap(),
                ContentType::EnvelopedCms
            );
        }
        assert_eq!(
            ContentType::parse("application/xml; charset=utf-8").unwrap(),
            ContentType::Xml
        );
        assert!(ContentType::parse("application/pkcs7-mime").is_err());
        assert!(ContentType::parse("").is_err());
    }

    /// Properties as RabbitMQ 3.10's AMQP 1.0 plugin gives them to us for an HN.Msg sender: ids and
    /// content type mapped, `type = "binary"`, everything else only in the two sections.
    fn from_amqp10_client(app: &[(&str, String)], subject: &str) -> BasicProperties {
        let mut t = FieldTable::default();
        Amqp10Sections {
            properties: Properties10 {
                message_id: Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301".into()),
                subject: Some(subject.into()),
                ..Properties10::default()
            },
            application_properties: app.iter().map(|(k, v)| (hn_name(k), v.clone())).collect(),
        }
        .insert_into(&mut t)
        .unwrap();
        BasicProperties::default()
            .with_message_id("3f2504e0-4f89-11d3-9a0c-0305e82c3301".into())
            .with_content_type("application/pkcs7-mime; smime-type=signed-data".into())
            .with_type("binary".into())
            .with_delivery_mode(1)
            .with_headers(t)
    }

    fn hn_name(k: &str) -> &'static str {
        [FROM_HER_ID, TO_HER_ID, APPLICATION_TIMESTAMP, CPA_ID]
            .into_iter()
            .find(|n| *n == k)
            .unwrap()
    }

    #[test]
    fn an_amqp10_clients_fields_come_from_its_sections() {
        let p = from_amqp10_client(
            &[
                ("fromHerId", "81234".into()),
                ("toHerId", "90000".into()),
                ("applicationTimeStamp", "2026-11-23T15:00:00+01:00".into()),
                ("cpaId", "c0ffee".into()),
            ],
            "DIALOG_FORESPORSEL",
        );
        let h = MessageHeaders::from_properties(&p).unwrap();
        assert_eq!(h.from_her_id, HerId(81234));
        assert_eq!(h.to_her_id, HerId(90000));
        assert_eq!(h.msg_type, "DIALOG_FORESPORSEL");
        assert_eq!(h.application_timestamp, datetime!(2026-11-23 14:00:00 UTC));
        assert_eq!(h.cpa_id.as_deref(), Some("c0ffee"));
        // A plain header wins over the section.
        let mut t = p.headers().clone().unwrap();
        t.insert(TO_HER_ID.into(), AMQPValue::LongString("81001".into()));
        let h = MessageHeaders::from_properties(&p.clone().with_headers(t)).unwrap();
        assert_eq!(h.to_her_id, HerId(81001));
    }

    #[test]
    fn hnmsg_timestamp_forms() {
        for (text, expect) in [
            ("2026-11-23T14:00:00Z", datetime!(2026-11-23 14:00:00 UTC)),
            ("2026-11-23T14:00:00", datetime!(2026-11-23 14:00:00 UTC)),
            (
                "2026-11-23T14:00:00.25",
                datetime!(2026-11-23 14:00:00.25 UTC),
            ),
            ("11/23/2026 14:00:00", datetime!(2026-11-23 14:00:00 UTC)),
        ] {
            assert_eq!(parse_time_text(text), Some(expect), "{text}");
        }
        assert_eq!(parse_time_text("23.11.2026 14:00"), None);
        assert_eq!(
            hnmsg_timestamp(datetime!(2026-11-23 14:00:00.5 UTC)),
            "2026-11-23T14:00:00Z"
        );
        assert_eq!(
            hnmsg_receiver_timestamp(datetime!(2026-11-23 15:00:00 +1)),
            "11/23/2026 14:00:00"
        );
    }

    #[test]
    fn a_section_missing_a_field_or_garbled_is_a_clear_error() {
        let p = from_amqp10_client(&[("fromHerId", "81234".into())], "DIALOG_FORESPORSEL");
        assert_eq!(
            MessageHeaders::from_properties(&p).unwrap_err(),
            HeaderError::Missing { header: TO_HER_ID }
        );
        let mut t = p.headers().clone().unwrap();
        t.insert(
            AMQP10_APP_PROPERTIES.into(),
            AMQPValue::LongString(vec![0x00, 0x53, 0x74, 0xc1, 9].into()),
        );
        let e = MessageHeaders::from_properties(&p.clone().with_headers(t)).unwrap_err();
        assert!(
            matches!(
                e,
                HeaderError::Invalid {
                    header: AMQP10_APP_PROPERTIES,
                    ..
                }
            ),
            "{e}"
        );
        // "binary" is the plugin's marker, never a message function; without a subject it is missing.
        let bare = p.clone().with_headers(FieldTable::default());
        assert_eq!(
            MessageHeaders::from_properties(&bare).unwrap_err(),
            HeaderError::Missing { header: TYPE }
        );
    }

    #[test]
    fn everything_published_carries_the_amqp10_sections() {
        let h = sample();
        let p = h.to_properties().unwrap();
        let t = p.headers().as_ref().unwrap();
        let Some(AMQPValue::LongString(b)) = t.inner().get(AMQP10_PROPERTIES) else {
            panic!("no {AMQP10_PROPERTIES}")
        };
        let props = Properties10::decode(b.as_bytes()).unwrap();
        assert_eq!(props.subject.as_deref(), Some("DIALOG_FORESPORSEL"));
        assert_eq!(props.message_id.as_deref(), Some(h.message_id.as_str()));
        let Some(AMQPValue::LongString(b)) = t.inner().get(AMQP10_APP_PROPERTIES) else {
            panic!("no {AMQP10_APP_PROPERTIES}")
        };
        let app = amqp10::decode_application_properties(b.as_bytes()).unwrap();
        let get = |k: &str| app.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get(FROM_HER_ID),
            Some(amqp10::Value::String("81234".into()))
        );
        assert_eq!(get(TO_HER_ID), Some(amqp10::Value::String("90000".into())));
        assert_eq!(
            get(APPLICATION_TIMESTAMP),
            Some(amqp10::Value::String("2026-11-23T14:00:00Z".into()))
        );
        assert_eq!(
            get(ERROR_CONDITION),
            Some(amqp10::Value::String(
                "transport:not-well-formed-xml".into()
            ))
        );
    }

    #[test]
    fn error_entries_speak_hnmsg() {
        let original = from_amqp10_client(
            &[
                ("fromHerId", "81234".into()),
                ("toHerId", "90000".into()),
                ("applicationTimeStamp", "2026-11-23T15:00:00+01:00".into()),
            ],
            "DIALOG_FORESPORSEL",
        );
        let now = datetime!(2026-11-23 14:05:00 UTC);
        let p = error_entry_properties(
            &original,
            "transport:unknown-receiver",
            "no such party",
            None,
            now,
        );
        let t = p.headers().as_ref().unwrap();
        // Plain headers: the gateway's condition, and the original's HER-ids for a redrive.
        assert_eq!(
            text(t, ERROR_CONDITION).unwrap().as_deref(),
            Some("transport:unknown-receiver")
        );
        assert_eq!(text(t, FROM_HER_ID).unwrap().as_deref(), Some("81234"));
        let Some(AMQPValue::LongString(b)) = t.inner().get(AMQP10_APP_PROPERTIES) else {
            panic!("no sections")
        };
        let app = amqp10::decode_application_properties(b.as_bytes()).unwrap();
        let get = |k: &str| app.iter().find(|(n, _)| n == k).map(|(_, v)| v.to_string());
        assert_eq!(get(FROM_HER_ID).as_deref(), Some("90000"));
        assert_eq!(get(TO_HER_ID).as_deref(), Some("81234"));
        assert_eq!(
            get(ERROR_CONDITION).as_deref(),
            Some("transport:invalid-field-value")
        );
        assert_eq!(
            get(ERROR_CONDITION_DATA).as_deref(),
            Some("transport:unknown-receiver;")
        );
        assert_eq!(
            get(RECEIVER_TIMESTAMP).as_deref(),
            Some("11/23/2026 14:05:00")
        );
        assert_eq!(
            get(ORIGINAL_MESSAGE_ID).as_deref(),
            Some("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
        );
        // Still readable as the original (redrive): plain headers first, type from the subject.
        let h = MessageHeaders::from_properties(&p).unwrap();
        assert_eq!((h.from_her_id, h.to_her_id), (HerId(81234), HerId(90000)));
        assert_eq!(h.msg_type, "DIALOG_FORESPORSEL");
        // The same refusal gets the same entry id.
        assert_eq!(
            error_entry_properties(&original, "transport:unknown-receiver", "x", None, now)
                .headers()
                .as_ref()
                .unwrap()
                .inner()
                .get(AMQP10_PROPERTIES),
            t.inner().get(AMQP10_PROPERTIES)
        );
    }
}
