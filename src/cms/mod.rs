//! Signed envelopes: verify and produce CMS SignedData (RFC 5652) around MsgHead/AppRec XML.
//!
//! Every message helsemelding carries is a DER `ContentInfo` with `SignedData` whose encapsulated
//! content is the XML, signed with the sender's enterprise certificate (SEID 2.0
//! virksomhetssertifikat, RSA-3072; SEID 1, RSA-2048). This module is the `verify` stage of
//! DESIGN.md §2 and the gateway's own signing:
//!
//! - [`verify`]`(bytes, &TrustStore, now) -> Result<Verified, VerifyError>`: parses the envelope,
//!   checks the signer certificate ([`TrustStore`]: chain to an anchor, validity at `now`, key usage
//!   digitalSignature/nonRepudiation, RSA 2048–4096, not revoked per a current CRL), then the
//!   signature: with signed attributes, contentType and messageDigest are checked (RFC 5652 §5.4)
//!   and the signature covers the attributes; without them it covers the content. RSA PKCS#1 v1.5
//!   and PSS with SHA-256/384/512.
//! - [`Signer`]: signs content into DER SignedData (attached, signed attributes, RSA-SHA256).
//! - [`certificate_fingerprint`]: the SHA-256 the address register compares with
//!   [`SignerIdentity::fingerprint_sha256`].
//! - [`pki`]: the test PKI generator behind `helsemelding dev-pki`.
//!
//! Trust directory layout (`config/trust` by default):
//!
//! ```text
//! anchors/*.pem        trusted roots
//! intermediates/*.pem  intermediate CAs
//! crls/*.crl           CRLs, DER or PEM — every CA in anchors/ and intermediates/ that issues
//!                      certificates must have a current one, or verification is retried later
//! ```
//! Party signing certificates live elsewhere (e.g. `config/trust/parties/<herId>-sign.pem`, listed
//! by the address register); they are matched by fingerprint, not trusted as anchors.
//!
//! Failure modes ([`VerifyError`]): T01 unreadable envelope; S01 signature; S02 certificate
//! (untrusted, expired, not yet valid, wrong usage, unacceptable key, missing); S03 revoked;
//! retryable (no AppRec) when revocation data is missing, stale or unusable. The certificate is
//! checked before the signature, so the first fault found is the certificate's.
//! Bounds: envelopes up to [`MAX_ENVELOPE_BYTES`], [`signed_data::MAX_CERTIFICATES`] certificates,
//! [`signed_data::MAX_ATTRIBUTES`] signed attributes, one signer; the DER walk does not recurse.

pub mod cli;
mod der;
mod error;
pub mod pki;
mod sign;
mod signed_data;
mod trust;
pub(crate) use trust::certificates_in;

use std::borrow::Cow;
use std::fmt;

use x509_parser::prelude::{FromDer, X509Certificate};

pub use error::{FingerprintError, SignError, TrustError, VerifyError};
pub use sign::Signer;
pub use trust::{TrustStore, CACHE_LIMIT, MAX_RSA_BITS, MIN_RSA_BITS};

use crate::ids::Timestamp;
use der::Reader;
use signed_data::{oid, AlgorithmId, ParseError, SignedData, SignerId};
use trust::CheckedSigner;

/// Largest envelope accepted (the intake's own limit, 35 MB by default, is lower).
pub const MAX_ENVELOPE_BYTES: usize = 64 << 20;

/// Who signed: from the signer certificate that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerIdentity {
    /// Subject distinguished name (RFC 4514 style, as x509-parser renders it).
    pub subject: String,
    /// Norwegian organisation number (`NTRNO-` stripped), when the certificate carries one.
    pub organisation_number: Option<String>,
    /// Lowercase hex SHA-256 of the certificate DER.
    pub fingerprint_sha256: String,
}

/// A verified envelope: the content (MsgHead or AppRec XML bytes), who signed it and when they say.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified {
    pub content: Vec<u8>,
    pub signer: SignerIdentity,
    /// The `signingTime` signed attribute, if present (the sender's claim, not a timestamp).
    pub signing_time: Option<Timestamp>,
    /// SHA-256 of `content`, when verification computed it anyway (SHA-256 digest with signed
    /// attributes, the usual case), so that callers need not hash the content again.
    pub content_sha256: Option<[u8; 32]>,
}

impl fmt::Debug for Verified {
    // Content is patient data: print its size and hash only (CONVENTIONS.md, logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hash = ring::digest::digest(&ring::digest::SHA256, &self.content);
        f.debug_struct("Verified")
            .field("content_len", &self.content.len())
            .field("content_sha256", &hex::encode(&hash.as_ref()[..8]))
            .field("signer", &self.signer)
            .field("signing_time", &self.signing_time)
            .finish()
    }
}

/// Lowercase hex SHA-256 of a certificate given as PEM (exactly one CERTIFICATE block) or DER.
pub fn certificate_fingerprint(pem_or_der: &[u8]) -> Result<String, FingerprintError> {
    let certs = trust::certificates_in(pem_or_der).map_err(FingerprintError)?;
    if certs.len() != 1 {
        return Err(FingerprintError(format!(
            "expected one certificate, found {}",
            certs.len()
        )));
    }
    X509Certificate::from_der(&certs[0])
        .map_err(|e| FingerprintError(format!("not X.509: {e}")))?;
    Ok(trust::fingerprint_of(&certs[0]))
}

/// Verifies a DER CMS SignedData envelope against the trust store at time `now`.
pub fn verify(bytes: &[u8], trust: &TrustStore, now: Timestamp) -> Result<Verified, VerifyError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(VerifyError::Malformed {
            problem: format!(
                "{} bytes exceeds the limit of {MAX_ENVELOPE_BYTES}",
                bytes.len()
            ),
        });
    }
    let sd = signed_data::parse(bytes).map_err(|e| match e {
        ParseError::Der(e) => VerifyError::Malformed {
            problem: e.to_string(),
        },
        ParseError::NotSignedData => VerifyError::NotSignedData,
        ParseError::TooMany { what, found, limit } => VerifyError::Malformed {
            problem: format!("more than {limit} {what} (found at least {found})"),
        },
        ParseError::SignerCount(n) => VerifyError::Malformed {
            problem: format!("expected exactly one SignerInfo, found {n}"),
        },
    })?;
    let content = sd.content.ok_or(VerifyError::NoContent)?;
    let signer_cert = find_signer_certificate(&sd)?;
    let others: Vec<&[u8]> = sd
        .certificates
        .iter()
        .copied()
        .filter(|c| c.as_ptr() != signer_cert.as_ptr())
        .collect();
    let checked = trust.check_signer(signer_cert, &others, now)?;

    let hash = Hash::from_oid(sd.signer.digest_algorithm.oid).ok_or_else(|| {
        VerifyError::UnsupportedAlgorithm {
            what: "digest",
            oid: oid_string(sd.signer.digest_algorithm.oid),
        }
    })?;
    let mut content_sha256 = None;
    let (signed_bytes, signing_time): (Cow<'_, [u8]>, Option<Timestamp>) =
        match sd.signer.signed_attrs_raw {
            Some(raw) => {
                let signing_time =
                    check_signed_attributes(&sd, content, hash, &mut content_sha256)?;
                // RFC 5652 §5.4: the signature covers the DER of SignedAttrs with the EXPLICIT SET OF
                // tag, not the IMPLICIT [0] it has in the SignerInfo.
                let mut tbs = raw.to_vec();
                tbs[0] = der::SET;
                (Cow::Owned(tbs), signing_time)
            }
            None => {
                if sd.content_type != oid::DATA {
                    return Err(VerifyError::SignedAttributesRequired);
                }
                (Cow::Borrowed(content), None)
            }
        };
    verify_signature(
        &sd.signer.signature_algorithm,
        hash,
        &checked,
        &signed_bytes,
        sd.signer.signature,
    )?;
    Ok(Verified {
        content: content.to_vec(),
        signer: checked.identity.clone(),
        signing_time,
        content_sha256,
    })
}

/// The hash functions accepted for CMS digests and RSA signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    fn from_oid(oid: &[u8]) -> Option<Hash> {
        match oid {
            oid::SHA256 => Some(Hash::Sha256),
            oid::SHA384 => Some(Hash::Sha384),
            oid::SHA512 => Some(Hash::Sha512),
            _ => None,
        }
    }
    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Hash::Sha256 => &ring::digest::SHA256,
            Hash::Sha384 => &ring::digest::SHA384,
            Hash::Sha512 => &ring::digest::SHA512,
        }
    }
}

pub(crate) fn oid_string(oid: &[u8]) -> String {
    x509_parser::der_parser::oid::Oid::new(Cow::Borrowed(oid)).to_id_string()
}

/// Issuer `Name` DER and serial contents octets of a certificate, read without a full parse.
fn issuer_and_serial(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader::new(cert);
    let mut c = r.read(der::SEQUENCE, "Certificate").ok()?.contents();
    let mut tbs = c.read(der::SEQUENCE, "TBSCertificate").ok()?.contents();
    tbs.read_optional(der::context(0)).ok()?;
    let serial = tbs.read(der::INTEGER, "serialNumber").ok()?.value;
    tbs.read(der::SEQUENCE, "signature").ok()?;
    let issuer = tbs.read(der::SEQUENCE, "issuer").ok()?.raw;
    Some((issuer, serial))
}

fn find_signer_certificate<'a>(sd: &SignedData<'a>) -> Result<&'a [u8], VerifyError> {
    let found = match sd.signer.sid {
        SignerId::IssuerAndSerial { issuer, serial } => {
            sd.certificates.iter().copied().find(|c| issuer_and_serial(c) == Some((issuer, serial)))
        }
        SignerId::SubjectKeyId(ski) => sd.certificates.iter().copied().find(|c| {
            X509Certificate::from_der(c).ok().is_some_and(|(_, cert)| {
                cert.extensions().iter().any(|ext| {
                    matches!(ext.parsed_extension(), x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) if k.0 == ski)
                })
            })
        }),
    };
    found.ok_or_else(|| VerifyError::SignerCertificateMissing {
        sid: match sd.signer.sid {
            SignerId::IssuerAndSerial { serial, .. } => format!("serial {}", hex::encode(serial)),
            SignerId::SubjectKeyId(ski) => format!("subjectKeyIdentifier {}", hex::encode(ski)),
        },
    })
}

/// The single value of a signed attribute that must occur exactly once.
fn single_value<'a>(
    sd: &SignedData<'a>,
    attr_oid: &[u8],
    name: &'static str,
) -> Result<Option<der::Tlv<'a>>, VerifyError> {
    let bad = |problem: &str| VerifyError::BadAttribute {
        attribute: name,
        problem: problem.into(),
    };
    let mut matching = sd.signer.signed_attrs.iter().filter(|a| a.oid == attr_oid);
    let Some(attr) = matching.next() else {
        return Ok(None);
    };
    if matching.next().is_some() {
        return Err(bad("occurs more than once"));
    }
    let mut values = attr.values.contents();
    let value = values.read_any().map_err(|e| bad(&e.to_string()))?;
    if !values.is_empty() {
        return Err(bad("has more than one value"));
    }
    Ok(Some(value))
}

/// Checks contentType and messageDigest (RFC 5652 §5.3, §5.4); returns signingTime if present.
/// A SHA-256 content digest is left in `sha256` for the caller.
fn check_signed_attributes(
    sd: &SignedData<'_>,
    content: &[u8],
    hash: Hash,
    sha256: &mut Option<[u8; 32]>,
) -> Result<Option<Timestamp>, VerifyError> {
    let content_type = single_value(sd, oid::CONTENT_TYPE, "contentType")?.ok_or(
        VerifyError::MissingAttribute {
            attribute: "contentType",
        },
    )?;
    if content_type.tag != der::OID || content_type.value != sd.content_type {
        return Err(VerifyError::ContentTypeMismatch);
    }
    let digest = single_value(sd, oid::MESSAGE_DIGEST, "messageDigest")?.ok_or(
        VerifyError::MissingAttribute {
            attribute: "messageDigest",
        },
    )?;
    if digest.tag != der::OCTET_STRING {
        return Err(VerifyError::BadAttribute {
            attribute: "messageDigest",
            problem: "not an OCTET STRING".into(),
        });
    }
    let computed = ring::digest::digest(hash.ring(), content);
    if computed.as_ref() != digest.value {
        return Err(VerifyError::DigestMismatch);
    }
    if hash == Hash::Sha256 {
        *sha256 = computed.as_ref().try_into().ok();
    }
    match single_value(sd, oid::SIGNING_TIME, "signingTime")? {
        None => Ok(None),
        Some(t) => parse_time(t.tag, t.value)
            .map(Some)
            .ok_or_else(|| VerifyError::BadAttribute {
                attribute: "signingTime",
                problem: "not a DER UTCTime/GeneralizedTime".into(),
            }),
    }
}

/// DER UTCTime `YYMMDDHHMMSSZ` or GeneralizedTime `YYYYMMDDHHMMSS[.f]Z` (RFC 5652 §11.3).
fn parse_time(tag: u8, value: &[u8]) -> Option<Timestamp> {
    let s = std::str::from_utf8(value).ok()?;
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        der::UTC_TIME => {
            let yy: i32 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        der::GENERALIZED_TIME => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let rest = rest.split('.').next()?;
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| rest[i..i + 2].parse::<u8>().ok();
    let month = time::Month::try_from(n(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(2)?).ok()?;
    let time = time::Time::from_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(time::PrimitiveDateTime::new(date, time).assume_utc())
}

/// Verifies the RSA signature over `message` with the signer's public key.
fn verify_signature(
    alg: &AlgorithmId<'_>,
    hash: Hash,
    signer: &CheckedSigner,
    message: &[u8],
    signature: &[u8],
) -> Result<(), VerifyError> {
    let (rsa_public_key, subject) = (&signer.rsa_public_key, &signer.identity.subject);
    let unsupported = |oid: &[u8]| VerifyError::UnsupportedAlgorithm {
        what: "signature",
        oid: oid_string(oid),
    };
    let named_hash = match alg.oid {
        oid::RSA_ENCRYPTION => Some(hash),
        oid::SHA256_WITH_RSA => Some(Hash::Sha256),
        oid::SHA384_WITH_RSA => Some(Hash::Sha384),
        oid::SHA512_WITH_RSA => Some(Hash::Sha512),
        oid::RSASSA_PSS => None,
        other => return Err(unsupported(other)),
    };
    let invalid = |algorithm: &'static str| VerifyError::SignatureInvalid {
        subject: subject.to_owned(),
        algorithm,
    };
    match named_hash {
        Some(h) => {
            if h != hash {
                return Err(VerifyError::UnsupportedAlgorithm {
                    what: "signature (hash differs from digestAlgorithm)",
                    oid: oid_string(alg.oid),
                });
            }
            // The RSA public-key operation is the hot path of the whole gateway (one per message).
            // aws-lc-rs (AWS-LC's assembly) runs it faster than ring on this kind of machine; same API.
            use aws_lc_rs::signature as sig;
            let (slot, alg, name): (usize, &'static sig::RsaParameters, _) = match h {
                Hash::Sha256 => (
                    0,
                    &sig::RSA_PKCS1_2048_8192_SHA256,
                    "RSA PKCS#1 v1.5 SHA-256",
                ),
                Hash::Sha384 => (
                    1,
                    &sig::RSA_PKCS1_2048_8192_SHA384,
                    "RSA PKCS#1 v1.5 SHA-384",
                ),
                Hash::Sha512 => (
                    2,
                    &sig::RSA_PKCS1_2048_8192_SHA512,
                    "RSA PKCS#1 v1.5 SHA-512",
                ),
            };
            // The key parsed once per signer (cached with the checked certificate).
            signer
                .pkcs1_key(slot, alg)
                .ok_or_else(|| invalid(name))?
                .verify_sig(message, signature)
                .map_err(|_| invalid(name))
        }
        None => {
            let salt = pss_salt_length(alg, hash).ok_or_else(|| VerifyError::UnsupportedAlgorithm {
                what: "RSASSA-PSS parameters (hash and MGF1 hash must equal digestAlgorithm, trailer 1)",
                oid: oid_string(alg.oid),
            })?;
            verify_pss(hash, salt, rsa_public_key, message, signature)
                .map_err(|_| invalid("RSASSA-PSS"))
        }
    }
}

/// RSASSA-PSS with any salt length (OpenSSL signs with the maximum by default; ring only verifies
/// salt = hash length), so PSS goes through the RustCrypto `rsa` crate (public-key operation only).
fn verify_pss(
    hash: Hash,
    salt: usize,
    rsa_public_key: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), ()> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let key = rsa::RsaPublicKey::from_pkcs1_der(rsa_public_key).map_err(|_| ())?;
    let hashed = ring::digest::digest(hash.ring(), message);
    let scheme = match hash {
        Hash::Sha256 => rsa::Pss::new_with_salt::<sha2::Sha256>(salt),
        Hash::Sha384 => rsa::Pss::new_with_salt::<sha2::Sha384>(salt),
        Hash::Sha512 => rsa::Pss::new_with_salt::<sha2::Sha512>(salt),
    };
    key.verify(scheme, hashed.as_ref(), signature)
        .map_err(|_| ())
}

/// `RSASSA-PSS-params` (RFC 4055 §3.1): the salt length, if hash and MGF1 hash are `hash`.
fn pss_salt_length(alg: &AlgorithmId<'_>, hash: Hash) -> Option<usize> {
    let params = alg.params?;
    if params.tag != der::SEQUENCE {
        return None;
    }
    let mut r = params.contents();
    let hash_of = |t: der::Tlv<'_>| -> Option<Hash> {
        let mut c = t.contents();
        let a = signed_data::read_algorithm(&mut c, "hashAlgorithm").ok()?;
        Hash::from_oid(a.oid)
    };
    // The defaults (SHA-1, MGF1-SHA-1, salt 20) are refused by requiring the explicit fields.
    let h = hash_of(r.read(der::context(0), "hashAlgorithm").ok()?)?;
    let mgf = r.read(der::context(1), "maskGenAlgorithm").ok()?;
    let mut m = mgf.contents();
    let mgf_alg = signed_data::read_algorithm(&mut m, "maskGenAlgorithm").ok()?;
    if mgf_alg.oid != oid::MGF1 {
        return None;
    }
    let mut mgf_params = Reader::new(mgf_alg.params?.raw);
    let mgf_hash = Hash::from_oid(
        signed_data::read_algorithm(&mut mgf_params, "MGF1 hash")
            .ok()?
            .oid,
    )?;
    let salt = match r.read_optional(der::context(2)).ok()? {
        Some(t) => {
            let v = t.contents().read(der::INTEGER, "saltLength").ok()?.value;
            if v.len() > 2 {
                return None;
            }
            v.iter().fold(0usize, |acc, b| (acc << 8) | *b as usize)
        }
        None => 20,
    };
    if let Some(t) = r.read_optional(der::context(3)).ok()? {
        if t.contents().read(der::INTEGER, "trailerField").ok()?.value != [1] {
            return None;
        }
    }
    (h == hash && mgf_hash == hash && r.is_empty()).then_some(salt)
}

/// The encapsulated content of a SignedData **without** any check of signature or certificate.
///
/// Only for answering a message whose verification failed (S01–S03 are answered with an AppRec,
/// HIS 80415:2012 §3.3, Systemtest #29–31): the gateway reads the MsgHead to address that AppRec
/// and never delivers or trusts the content. `None` when the envelope cannot be read at all.
pub fn unverified_content(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return None;
    }
    signed_data::parse(bytes).ok()?.content.map(|c| c.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_per_rfc5652() {
        let t = parse_time(der::UTC_TIME, b"260601120000Z").expect("utc");
        assert_eq!(t.year(), 2026);
        let t = parse_time(der::UTC_TIME, b"990601120000Z").expect("utc 1999");
        assert_eq!(t.year(), 1999);
        let t = parse_time(der::GENERALIZED_TIME, b"20600601120000Z").expect("gt");
        assert_eq!(t.year(), 2060);
        assert!(parse_time(der::UTC_TIME, b"2606011200Z").is_none());
        assert!(parse_time(der::UTC_TIME, b"261301120000Z").is_none());
        assert!(parse_time(der::UTC_TIME, b"260601120000").is_none());
    }

    #[test]
    fn fingerprint_refuses_non_certificates() {
        assert!(certificate_fingerprint(b"hello").is_err());
        assert!(certificate_fingerprint(&[0x30, 0x03, 0x02, 0x01, 0x01]).is_err());
    }
}
