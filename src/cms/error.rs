//! The errors of the signed-envelope stage: [`VerifyError`] (a message fault with its AppRec code,
//! or an infrastructure fault to retry), [`TrustError`] (the trust directory cannot be loaded),
//! [`SignError`] (the gateway cannot sign) and [`FingerprintError`].

use std::path::PathBuf;

use crate::codes::ErrorCode;
use crate::ids::Timestamp;

pub(crate) fn rfc3339(t: &Timestamp) -> String {
    crate::ids::rfc3339(*t)
}

/// Why a signed envelope was not accepted. Message faults map to AppRec codes S01/S02/S03/T01
/// (list 8221, HIS 80415 §3.3); revocation data problems are the operator's, so they are
/// retryable and produce no AppRec (DESIGN.md §2, verify).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VerifyError {
    // ---- T01: the envelope cannot be read ----
    #[error("envelope is not readable DER SignedData: {problem}")]
    Malformed { problem: String },
    #[error("envelope is a CMS ContentInfo but not SignedData")]
    NotSignedData,
    #[error("SignedData carries no encapsulated content (detached signatures are not accepted)")]
    NoContent,

    // ---- S01: the signature ----
    #[error("unsupported {what} algorithm {oid}")]
    UnsupportedAlgorithm { what: &'static str, oid: String },
    #[error("signed attribute {attribute} is missing (RFC 5652 §5.3)")]
    MissingAttribute { attribute: &'static str },
    #[error("signed attribute {attribute} is malformed: {problem}")]
    BadAttribute {
        attribute: &'static str,
        problem: String,
    },
    #[error("messageDigest attribute does not match the digest of the content (RFC 5652 §5.4)")]
    DigestMismatch,
    #[error("contentType attribute does not match eContentType (RFC 5652 §5.3)")]
    ContentTypeMismatch,
    #[error("content type is not id-data, so signed attributes are required (RFC 5652 §5.3)")]
    SignedAttributesRequired,
    #[error("signature by {subject} does not verify ({algorithm})")]
    SignatureInvalid {
        subject: String,
        algorithm: &'static str,
    },

    // ---- S02: the signer certificate ----
    #[error("signer certificate ({sid}) is not in the message")]
    SignerCertificateMissing { sid: String },
    #[error("signer certificate is unreadable: {problem}")]
    CertificateUnreadable { problem: String },
    #[error("signer certificate {subject} expired at {} (checked at {})", rfc3339(.not_after), rfc3339(.checked_at))]
    CertificateExpired {
        subject: String,
        not_after: Timestamp,
        checked_at: Timestamp,
    },
    #[error("signer certificate {subject} is not valid before {} (checked at {})", rfc3339(.not_before), rfc3339(.checked_at))]
    CertificateNotYetValid {
        subject: String,
        not_before: Timestamp,
        checked_at: Timestamp,
    },
    #[error("signer certificate {subject} may not sign: key usage is {key_usage} (needs digitalSignature or nonRepudiation)")]
    WrongKeyUsage { subject: String, key_usage: String },
    #[error("signer certificate {subject} has an unacceptable key: {problem}")]
    KeyNotAcceptable { subject: String, problem: String },
    #[error("signer certificate {subject} (issuer {issuer}) does not chain to a trust anchor")]
    Untrusted { subject: String, issuer: String },
    #[error("certificate chain of {subject} is invalid: {problem}")]
    ChainInvalid { subject: String, problem: String },

    // ---- S03 ----
    #[error("signer certificate {subject} (serial {serial}) is revoked")]
    Revoked { subject: String, serial: String },

    // ---- retry: not the sender's fault ----
    #[error("revocation list {issuer} is stale since {} (checked at {}); fetch a current CRL", rfc3339(.next_update), rfc3339(.checked_at))]
    RevocationStale {
        issuer: String,
        next_update: Timestamp,
        checked_at: Timestamp,
    },
    #[error("no revocation list in the trust directory for an issuer in the chain of {subject}")]
    RevocationMissing { subject: String },
    #[error("revocation list cannot be used for {subject}: {problem}")]
    RevocationUnusable { subject: String, problem: String },
}

impl VerifyError {
    /// The AppRec error code (list 8221) for a message fault; `None` for a retryable fault.
    pub fn apprec_code(&self) -> Option<ErrorCode> {
        use VerifyError::*;
        match self {
            Malformed { .. } | NotSignedData | NoContent => Some(ErrorCode::T01),
            UnsupportedAlgorithm { .. }
            | MissingAttribute { .. }
            | BadAttribute { .. }
            | DigestMismatch
            | ContentTypeMismatch
            | SignedAttributesRequired
            | SignatureInvalid { .. } => Some(ErrorCode::S01),
            SignerCertificateMissing { .. }
            | CertificateUnreadable { .. }
            | CertificateExpired { .. }
            | CertificateNotYetValid { .. }
            | WrongKeyUsage { .. }
            | KeyNotAcceptable { .. }
            | Untrusted { .. }
            | ChainInvalid { .. } => Some(ErrorCode::S02),
            Revoked { .. } => Some(ErrorCode::S03),
            RevocationStale { .. } | RevocationMissing { .. } | RevocationUnusable { .. } => None,
        }
    }

    /// True when the message should be retried later (requeued), with no AppRec.
    pub fn is_retryable(&self) -> bool {
        self.apprec_code().is_none()
    }
}

/// The trust directory cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", .path.display())]
    Unreadable { path: PathBuf, problem: String },
    #[error("no trust anchors in {} (expected anchors/*.pem)", .dir.display())]
    NoAnchors { dir: PathBuf },
}

/// The gateway cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", .path.display())]
    Unreadable { path: PathBuf, problem: String },
    #[error("private key {} does not belong to certificate {}", .key.display(), .cert.display())]
    KeyCertMismatch { key: PathBuf, cert: PathBuf },
    #[error("RSA signing failed")]
    Crypto,
}

/// The input is neither a PEM nor a DER certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a certificate: {0}")]
pub struct FingerprintError(pub String);
