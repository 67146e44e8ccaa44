//! Identifiers every stage shares: HER-ids (the address register's party ids, HIS 1153),
//! MsgIds (MsgHead `MsgInfo/MsgId`, which must be a UUID — HIS 80601, AppRec error E10),
//! and the timestamp type used wherever time is injected.
//!
//! Parsing is strict and never panics: an id that does not parse is an error the caller maps to
//! its own failure (E21 for a HER-id, E10 for a MsgId).

use std::fmt;
use std::str::FromStr;

/// Point in time. Always passed in (`now`), never read from the clock inside a stage.
pub type Timestamp = time::OffsetDateTime;

/// `t` as RFC 3339 (`2026-12-03T18:20:00Z`), the one way every part of the gateway writes a time
/// (routing log, headers, AppRec GenDate, `status`, error texts).
///
/// RFC 3339 cannot express years outside 0000–9999 or offsets with seconds: such a time is written
/// in UTC, and one that is still out of range as its Unix time in seconds — never an empty string,
/// so a bad clock shows up in the output instead of hiding.
pub fn rfc3339(t: Timestamp) -> String {
    use time::format_description::well_known::Rfc3339;
    t.format(&Rfc3339)
        .or_else(|_| t.to_offset(time::UtcOffset::UTC).format(&Rfc3339))
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A HER-id from the national address register (Adresseregisteret): a positive integer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct HerId(pub u32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a HER-id: {0:?} (expected a positive whole number)")]
pub struct BadHerId(pub String);

impl FromStr for HerId {
    type Err = BadHerId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BadHerId(s.to_owned()));
        }
        match t.parse::<u32>() {
            Ok(0) | Err(_) => Err(BadHerId(s.to_owned())),
            Ok(n) => Ok(HerId(n)),
        }
    }
}

impl fmt::Display for HerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A MsgHead `MsgId`. Kept as the sender wrote it (trimmed), because AppRec `OriginalMsgId/Id`
/// must echo it exactly; [`MsgId::is_uuid`] tells whether it satisfies the standard (E10 if not).
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct MsgId(pub String);

impl MsgId {
    pub fn new(s: impl Into<String>) -> Self {
        MsgId(s.into().trim().to_owned())
    }
    /// A fresh random (v4) UUID, for messages the gateway itself issues (AppRecs).
    pub fn random() -> Self {
        MsgId(uuid::Uuid::new_v4().to_string())
    }
    /// HIS 80601 §MsgInfo: MsgId "skal være en GUID". Braces and either case are accepted,
    /// as real EHR systems (Windows GUIDs) send both.
    pub fn is_uuid(&self) -> bool {
        let s = self.0.trim_start_matches('{').trim_end_matches('}');
        s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn her_ids_parse_strictly() {
        assert_eq!("81234".parse::<HerId>(), Ok(HerId(81234)));
        assert_eq!(" 42 ".parse::<HerId>(), Ok(HerId(42)));
        assert!("0".parse::<HerId>().is_err());
        assert!("-5".parse::<HerId>().is_err());
        assert!("12a".parse::<HerId>().is_err());
        assert!("".parse::<HerId>().is_err());
        assert!("99999999999".parse::<HerId>().is_err());
    }

    #[test]
    fn msg_ids_must_be_uuids() {
        assert!(MsgId::new("3f2504e0-4f89-11d3-9a0c-0305e82c3301").is_uuid());
        assert!(MsgId::new("{3F2504E0-4F89-11D3-9A0C-0305E82C3301}").is_uuid());
        assert!(!MsgId::new("12345").is_uuid());
        assert!(!MsgId::new("3f2504e04f8911d39a0c0305e82c3301").is_uuid());
        assert!(MsgId::random().is_uuid());
    }
}
