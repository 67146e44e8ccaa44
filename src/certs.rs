//! Certificates the hub depends on and when they expire (issue 16, item 3): the gateway's own
//! signing and encryption certificates and every party's certificates in the register. A certificate that expires
//! stops messages — a party's, because its signatures are then answered S02; the hub's, because its
//! AppRecs no longer verify — so operators are warned from [`WARN_BEFORE`] ahead: `check-config`
//! lists them, `serve` logs a warning at start and once a day, and `/metrics` has the days left.
//!
//! Input: certificate files (PEM or DER). Output: [`InUse`] entries. Failure: an unreadable file is
//! the caller's problem to report (the loader already reports it for fingerprints).

use std::path::{Path, PathBuf};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ids::{HerId, Timestamp};

/// From how long before expiry operators are warned.
pub const WARN_BEFORE: time::Duration = time::Duration::days(30);

/// What a certificate is used for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The gateway's own signing certificate (its AppRecs).
    GatewaySigning,
    /// A party's signing certificate (the register's `certificates`).
    PartySigning(HerId),
    /// One of the gateway's encryption certificates (`[gateway] encryption_keys`): senders encrypt
    /// to it, so once it expires they can no longer reach the hub.
    GatewayEncryption,
    /// A party's encryption certificate (the register's `encryption_certificate`): the gateway can
    /// no longer encrypt to it once it expires.
    PartyEncryption(HerId),
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::GatewaySigning => f.write_str("gateway signing"),
            Role::PartySigning(her) => write!(f, "party {her} signing"),
            Role::GatewayEncryption => f.write_str("gateway encryption"),
            Role::PartyEncryption(her) => write!(f, "party {her} encryption"),
        }
    }
}

/// One certificate in use.
#[derive(Debug, Clone)]
pub struct InUse {
    pub role: Role,
    pub path: PathBuf,
    pub subject: String,
    pub not_after: Timestamp,
}

impl InUse {
    /// Reads the one certificate in `bytes` (PEM or DER) found at `path`.
    pub fn read(role: Role, path: &Path, bytes: &[u8]) -> Result<InUse, String> {
        let der = match crate::cms::certificates_in(bytes) {
            Ok(certs) if certs.len() == 1 => certs.into_iter().next().map(|c| c.to_vec()),
            Ok(certs) => return Err(format!("expected one certificate, found {}", certs.len())),
            Err(e) => return Err(e),
        }
        .unwrap_or_default();
        let (_, cert) = X509Certificate::from_der(&der).map_err(|e| format!("not X.509: {e}"))?;
        let not_after =
            time::OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
                .map_err(|e| format!("notAfter out of range: {e}"))?;
        Ok(InUse {
            role,
            path: path.to_path_buf(),
            subject: cert.subject().to_string(),
            not_after,
        })
    }

    /// Whole days left at `now` (negative once expired).
    pub fn days_left(&self, now: Timestamp) -> i64 {
        (self.not_after - now).whole_days()
    }

    /// Whether operators should hear of it at `now`: expired, or expiring within [`WARN_BEFORE`].
    pub fn due(&self, now: Timestamp) -> bool {
        self.not_after - now <= WARN_BEFORE
    }

    /// The operator's line for it.
    pub fn warning(&self, now: Timestamp) -> String {
        let days = self.days_left(now);
        let when = crate::ids::rfc3339(self.not_after);
        if days < 0 || self.not_after <= now {
            format!(
                "certificate EXPIRED: {} ({}, {}) expired at {when}; renew it and replace the file",
                self.role,
                self.subject,
                self.path.display()
            )
        } else {
            format!(
                "certificate expires in {days} day(s): {} ({}, {}) at {when}; renew it before then",
                self.role,
                self.subject,
                self.path.display()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway_cert() -> InUse {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gateway-pki/parties/90000-sign.pem");
        let bytes = std::fs::read(&path).unwrap();
        InUse::read(Role::GatewaySigning, &path, &bytes).unwrap()
    }

    #[test]
    fn days_left_and_the_warning_window() {
        let c = gateway_cert();
        let long_before = c.not_after - time::Duration::days(400);
        assert!(!c.due(long_before));
        let soon = c.not_after - time::Duration::days(10) - time::Duration::hours(1);
        assert!(c.due(soon));
        assert_eq!(c.days_left(soon), 10);
        assert!(
            c.warning(soon).contains("expires in 10 day(s)"),
            "{}",
            c.warning(soon)
        );
        let after = c.not_after + time::Duration::days(2);
        assert!(c.due(after));
        assert!(c.warning(after).contains("EXPIRED"), "{}", c.warning(after));
        assert!(c.warning(after).contains("90000-sign.pem"));
    }

    #[test]
    fn a_file_with_two_certificates_or_none_is_refused() {
        let path = PathBuf::from("x.pem");
        let one = std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/gateway-pki/parties/90000-sign.pem"),
        )
        .unwrap();
        let two = [one.clone(), one].concat();
        assert!(InUse::read(Role::GatewaySigning, &path, &two)
            .unwrap_err()
            .contains("found 2"));
        assert!(InUse::read(Role::GatewaySigning, &path, b"nothing").is_err());
    }
}
