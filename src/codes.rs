//! Code lists the gateway writes and reads (Volven, see `../shared/standards/codes/`):
//! 8221 AppRec error codes and 8258 AppRec status. OIDs are `2.16.578.1.12.4.1.1.<list>`.
//!
//! Source: HIS 80415:2012 AppRec v1.1 §3.3 and the 8221 table (NOTES.md §7).

use std::fmt;
use std::str::FromStr;

pub const OID_8221: &str = "2.16.578.1.12.4.1.1.8221";
pub const OID_8258: &str = "2.16.578.1.12.4.1.1.8258";
pub const OID_8279: &str = "2.16.578.1.12.4.1.1.8279";
pub const OID_8112: &str = "2.16.578.1.12.4.1.1.8112";

/// AppRec error code, list 8221 ("Feilmeldinger for applikasjonskvittering – Generelle").
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ErrorCode {
    T01,
    T02,
    T10,
    T99,
    S01,
    S02,
    S03,
    S99,
    E10,
    E20,
    E21,
    E30,
    E31,
    E32,
    E33,
    E34,
    E35,
    E36,
    E53,
    E54,
    X99,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 21] = [
        Self::T01,
        Self::T02,
        Self::T10,
        Self::T99,
        Self::S01,
        Self::S02,
        Self::S03,
        Self::S99,
        Self::E10,
        Self::E20,
        Self::E21,
        Self::E30,
        Self::E31,
        Self::E32,
        Self::E33,
        Self::E34,
        Self::E35,
        Self::E36,
        Self::E53,
        Self::E54,
        Self::X99,
    ];

    /// The code value (`V`).
    pub fn code(self) -> &'static str {
        match self {
            Self::T01 => "T01",
            Self::T02 => "T02",
            Self::T10 => "T10",
            Self::T99 => "T99",
            Self::S01 => "S01",
            Self::S02 => "S02",
            Self::S03 => "S03",
            Self::S99 => "S99",
            Self::E10 => "E10",
            Self::E20 => "E20",
            Self::E21 => "E21",
            Self::E30 => "E30",
            Self::E31 => "E31",
            Self::E32 => "E32",
            Self::E33 => "E33",
            Self::E34 => "E34",
            Self::E35 => "E35",
            Self::E36 => "E36",
            Self::E53 => "E53",
            Self::E54 => "E54",
            Self::X99 => "X99",
        }
    }

    /// The code text (`DN`) from Volven list 8221.
    pub fn text(self) -> &'static str {
        match self {
            Self::T01 => "Ikke XML / ikke 'well formed' / uleselig",
            Self::T02 => "XML validerer ikke",
            Self::T10 => "Støtter ikke meldingsformatet",
            Self::T99 => "Annen feil på format",
            Self::S01 => "Feil på signatur",
            Self::S02 => "Ugyldig sertifikat",
            Self::S03 => "Tilbaketrukket sertifikat",
            Self::S99 => "Annen feil på signatur eller sertifikat",
            Self::E10 => "Ugyldig meldingsidentifikator",
            Self::E20 => "Lege finnes ikke",
            Self::E21 => "Mottaker finnes ikke",
            Self::E30 => "Pasientens fødselsnummer mangler",
            Self::E31 => "Pasientens fødselsnummer er feil",
            Self::E32 => "Pasientens navn mangler",
            Self::E33 => "Pasientens etternavn mangler",
            Self::E34 => "Pasientens fornavn mangler",
            Self::E35 => "Pasienten finnes ikke i mottakersystemet",
            Self::E36 => "Pasientopplysninger er utilstrekkelige",
            Self::E53 => {
                "Pasientens fødselsnummer eller D-nummer finnes ikke registrert i Folkeregisteret."
            }
            Self::E54 => "Pasientens fødselsnummer er ikke registrert i mottagersystemet",
            Self::X99 => "Annen feil",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an AppRec error code of list 8221: {0:?}")]
pub struct UnknownErrorCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|c| c.code() == s.trim())
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
    }
}

/// AppRec status, list 8258.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AppRecStatus {
    /// 1 OK
    Ok,
    /// 2 Avvist
    Rejected,
    /// 3 OK, feil i delmelding (only Behandlerkrav to Helfo)
    OkPartialError,
}

impl AppRecStatus {
    pub fn code(self) -> &'static str {
        match self {
            Self::Ok => "1",
            Self::Rejected => "2",
            Self::OkPartialError => "3",
        }
    }
    pub fn text(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Rejected => "Avvist",
            Self::OkPartialError => "OK, feil i delmelding",
        }
    }
    pub fn from_code(v: &str) -> Option<Self> {
        match v.trim() {
            "1" => Some(Self::Ok),
            "2" => Some(Self::Rejected),
            "3" => Some(Self::OkPartialError),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_round_trips() {
        for c in ErrorCode::ALL {
            assert_eq!(c.code().parse::<ErrorCode>(), Ok(c));
            assert!(!c.text().is_empty());
        }
        assert!("T03".parse::<ErrorCode>().is_err());
    }

    #[test]
    fn status_codes() {
        assert_eq!(AppRecStatus::from_code("2"), Some(AppRecStatus::Rejected));
        assert_eq!(AppRecStatus::from_code("4"), None);
    }
}
