//! Durations as operators write them in `gateway.toml`: `"10s"`, `"96h"`, `"30d"`, `"1h30m"`,
//! `"500ms"`. One or more `<whole number><unit>` parts, units `ms`, `s`, `m`, `h`, `d`; no spaces,
//! no signs, no fractions, and the total must be positive. A dozen lines do not justify a crate.

use std::fmt;

/// Why a duration text was refused; the message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a duration: {text:?} ({why}; expected e.g. \"10s\", \"96h\", \"30d\", \"1h30m\" with units ms, s, m, h, d)")]
pub struct BadDuration {
    pub text: String,
    pub why: &'static str,
}

/// Parses a duration text (see the module documentation).
pub fn parse_duration(text: &str) -> Result<time::Duration, BadDuration> {
    let bad = |why| BadDuration {
        text: text.to_owned(),
        why,
    };
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = text;
    let mut total_ms: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("a number must come before each unit"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_ms: i64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        rest = &rest[unit_len..];
        total_ms = n
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| bad("too large"))?;
    }
    if total_ms == 0 {
        return Err(bad("must be longer than zero"));
    }
    Ok(time::Duration::milliseconds(total_ms))
}

/// A duration read from TOML (a string parsed with [`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub time::Duration);

impl<'de> serde::Deserialize<'de> for ConfigDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ConfigDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"10s\", \"96h\" or \"30d\"")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ConfigDuration, E> {
                parse_duration(s).map(ConfigDuration).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn good_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::seconds(10)));
        assert_eq!(parse_duration("96h"), Ok(Duration::hours(96)));
        assert_eq!(parse_duration("30d"), Ok(Duration::days(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::milliseconds(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        for (text, why) in [
            ("", "empty"),
            ("10", "missing unit"),
            ("h", "a number must come before each unit"),
            ("10 s", "missing unit"),
            ("1.5h", "missing unit"),
            ("-5s", "a number must come before each unit"),
            ("3w", "unknown unit"),
            ("0s", "must be longer than zero"),
            ("99999999999999999999d", "number too large"),
            ("9999999999999d", "too large"),
        ] {
            assert_eq!(parse_duration(text).unwrap_err().why, why, "{text:?}");
        }
        assert!(parse_duration("3w")
            .unwrap_err()
            .to_string()
            .contains("\"3w\""));
    }
}
