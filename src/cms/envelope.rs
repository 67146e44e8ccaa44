//! Encrypted envelopes: CMS EnvelopedData (RFC 5652 §6) and AuthEnvelopedData (RFC 5083) around
//! the sender's SignedData — "sign, then encrypt", as Helsenorge.Messaging does
//! (`research/hnmsg-interop.md` §2; DESIGN §1 "Encryption").
//!
//! - [`HubKeys::open`]`(bytes) -> Result<Opened, OpenError>`: finds the `KeyTransRecipientInfo`
//!   addressed to one of the hub's keys (several, for rotation; matched by issuer and serial or by
//!   subjectKeyIdentifier), unwraps the content-encryption key (RSA PKCS#1 v1.5 or RSAES-OAEP with
//!   SHA-1/256/384/512, RFC 3560) and decrypts the content (AES-128/192/256-CBC, RFC 3565; or
//!   AES-128/192/256-GCM in AuthEnvelopedData, RFC 5084). The result is the inner SignedData, which
//!   the `verify` stage then checks exactly as an unencrypted one.
//! - [`RecipientCert::seal`]: the other way, for what the hub sends: the SignedData bytes, unchanged,
//!   in an EnvelopedData to one recipient's encryption certificate (AES-256-CBC, RSA PKCS#1 v1.5 key
//!   transport, IssuerAndSerialNumber — what HN.Msg's `EnvelopedCms` writes and reads by default).
//!
//! Failure: [`OpenError`] has three outcomes only. `NotForUs` depends on public fields alone (no
//! RecipientInfo names a hub key). Every other fault — structure, unsupported algorithm, RSA padding,
//! wrong key length, AES padding, GCM tag — is one `Undecryptable`, with no detail, reached by the
//! same work: a failed RSA unwrap continues with a random key of the right length ("implicit
//! rejection"), so a padding oracle (Bleichenbacher; Marvin, RUSTSEC-2023-0071) learns nothing from
//! either the outcome or the time. RSA runs in aws-lc-rs (AWS-LC's constant-time code), never in the
//! `rsa` crate.
//! Bounds: the envelope is at most [`super::MAX_ENVELOPE_BYTES`]; at most [`MAX_RECIPIENTS`]
//! RecipientInfos are looked at.

use std::path::Path;

use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
    AES_128, AES_192, AES_256,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{
    OaepAlgorithm, OaepPrivateDecryptingKey, Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256,
    OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use subtle::{ConditionallySelectable, ConstantTimeEq};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{self, constructed, tlv, Reader, Tlv};
use super::signed_data::{oid, read_algorithm, AlgorithmId};

/// More RecipientInfos than this are not looked at (HN.Msg writes one).
pub const MAX_RECIPIENTS: usize = 16;

/// OIDs of the encryption side (contents octets).
pub mod enc_oid {
    /// id-envelopedData 1.2.840.113549.1.7.3 (RFC 5652 §6.1).
    pub const ENVELOPED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x03];
    /// id-ct-authEnvelopedData 1.2.840.113549.1.9.16.1.23 (RFC 5083 §1).
    pub const AUTH_ENVELOPED_DATA: &[u8] = &[
        0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x10, 0x01, 0x17,
    ];
    /// id-RSAES-OAEP 1.2.840.113549.1.1.7 (RFC 3560 §2.2).
    pub const RSAES_OAEP: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x07];
    /// id-sha1 1.3.14.3.2.26 (the RSAES-OAEP default, RFC 3560 §3).
    pub const SHA1: &[u8] = &[0x2B, 0x0E, 0x03, 0x02, 0x1A];
    /// id-pSpecified 1.2.840.113549.1.1.9.
    pub const P_SPECIFIED: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x09];
    /// AES arc 2.16.840.1.101.3.4.1 (RFC 3565 §4.1, RFC 5084 §3.2); the last byte names mode and size.
    pub const AES_ARC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];
    /// aes256-CBC 2.16.840.1.101.3.4.1.42: what the hub writes (HN.Msg's default).
    pub const AES256_CBC: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2A];
}

/// Why an envelope could not be opened. Deliberately without detail (module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Not a ContentInfo with EnvelopedData or AuthEnvelopedData at all.
    #[error("not a CMS EnvelopedData or AuthEnvelopedData")]
    NotEnveloped,
    /// No RecipientInfo is addressed to a key of the hub.
    #[error("encrypted to a certificate that is not the hub's encryption certificate")]
    NotForUs,
    /// Addressed to the hub but cannot be decrypted (one outcome for every reason).
    #[error("the encrypted content cannot be decrypted")]
    Undecryptable,
}

/// A decrypted envelope.
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's SignedData (a DER ContentInfo), as it was encrypted.
    pub signed: Vec<u8>,
    /// Which hub key opened it (its position in the configured list).
    pub key_index: usize,
}

impl std::fmt::Debug for Opened {
    // The content is patient data: its size only (CONVENTIONS.md, logs).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("signed_len", &self.signed.len())
            .field("key_index", &self.key_index)
            .finish()
    }
}

/// A problem loading an encryption key or certificate (a configuration fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct KeyError {
    pub path: String,
    pub problem: String,
}

fn key_error(path: &Path, problem: impl Into<String>) -> KeyError {
    KeyError {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

/// What identifies a certificate in a RecipientInfo (RFC 5652 §6.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CertId {
    /// DER of the issuer Name.
    issuer: Vec<u8>,
    /// Contents octets of the serial number.
    serial: Vec<u8>,
    /// The subjectKeyIdentifier extension's value, when present.
    ski: Option<Vec<u8>>,
}

/// A parsed encryption certificate: its identifiers, key usage, validity and RSA public key.
#[derive(Debug, Clone)]
pub struct EncryptionCertificate {
    id: CertId,
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// Subject DN, for messages.
    pub subject: String,
    /// Whether keyUsage allows keyEncipherment (or there is no keyUsage extension at all).
    pub key_encipherment: bool,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
    /// DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
}

impl EncryptionCertificate {
    /// Parses the single certificate in `bytes` (PEM or DER).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<EncryptionCertificate, KeyError> {
        let certs = super::trust::certificates_in(bytes).map_err(|e| key_error(path, e))?;
        if certs.len() != 1 {
            return Err(key_error(
                path,
                format!("expected one certificate, found {}", certs.len()),
            ));
        }
        let der = certs[0].as_ref().to_vec();
        let (_, cert) = X509Certificate::from_der(&der)
            .map_err(|e| key_error(path, format!("not X.509: {e}")))?;
        let ski = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                    Some(k.0.to_vec())
                }
                _ => None,
            });
        let key_encipherment = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.key_encipherment(),
            Ok(None) => true,
            Err(_) => false,
        };
        let t = |ts: i64| {
            time::OffsetDateTime::from_unix_timestamp(ts)
                .map_err(|e| key_error(path, format!("validity out of range: {e}")))
        };
        Ok(EncryptionCertificate {
            id: CertId {
                issuer: cert.tbs_certificate.issuer.as_raw().to_vec(),
                serial: cert.tbs_certificate.raw_serial().to_vec(),
                ski,
            },
            subject: cert.subject().to_string(),
            key_encipherment,
            not_before: t(cert.validity().not_before.timestamp())?,
            not_after: t(cert.validity().not_after.timestamp())?,
            spki: cert.tbs_certificate.subject_pki.raw.to_vec(),
            der: der.clone(),
        })
    }

    /// Reads and parses a certificate file.
    pub fn from_file(path: &Path) -> Result<EncryptionCertificate, KeyError> {
        let bytes =
            std::fs::read(path).map_err(|e| key_error(path, format!("cannot read: {e}")))?;
        EncryptionCertificate::parse(path, &bytes)
    }

    /// What is wrong with it for encrypting at `now`, if anything (check-config, startup).
    pub fn problem_at(&self, now: time::OffsetDateTime) -> Option<String> {
        if !self.key_encipherment {
            return Some(format!(
                "certificate {} does not allow keyEncipherment (keyUsage)",
                self.subject
            ));
        }
        if now > self.not_after {
            return Some(format!(
                "certificate {} expired at {}",
                self.subject,
                crate::ids::rfc3339(self.not_after)
            ));
        }
        if now < self.not_before {
            return Some(format!(
                "certificate {} is not valid before {}",
                self.subject,
                crate::ids::rfc3339(self.not_before)
            ));
        }
        None
    }
}

/// One recipient's encryption certificate, ready to encrypt to.
#[derive(Debug, Clone)]
pub struct RecipientCert {
    pub certificate: EncryptionCertificate,
    key: PublicEncryptingKey,
}

impl RecipientCert {
    /// From a parsed certificate; fails unless it holds an RSA key of 2048–8192 bits.
    pub fn new(path: &Path, certificate: EncryptionCertificate) -> Result<RecipientCert, KeyError> {
        let key = PublicEncryptingKey::from_der(&certificate.spki)
            .map_err(|e| key_error(path, format!("not a usable RSA public key: {e}")))?;
        Ok(RecipientCert { certificate, key })
    }

    /// Reads a certificate file.
    pub fn from_file(path: &Path) -> Result<RecipientCert, KeyError> {
        RecipientCert::new(path, EncryptionCertificate::from_file(path)?)
    }

    /// `signed` (a DER ContentInfo, carried unchanged) in a DER EnvelopedData to this certificate:
    /// AES-256-CBC with a fresh key and IV, the key under RSA PKCS#1 v1.5, the recipient named by
    /// issuer and serial (RFC 5652 §6.1, §6.2.1; RFC 3565 §2.3 for the IV parameter).
    pub fn seal(&self, signed: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut cek = [0u8; 32];
        aws_lc_rs::rand::fill(&mut cek).map_err(|_| SealError)?;
        let key = UnboundCipherKey::new(&AES_256, &cek).map_err(|_| SealError)?;
        let enc = PaddedBlockEncryptingKey::cbc_pkcs7(key).map_err(|_| SealError)?;
        let mut content = signed.to_vec();
        let ctx = enc.encrypt(&mut content).map_err(|_| SealError)?;
        let iv: &[u8] = (&ctx).try_into().map_err(|_| SealError)?;
        let rsa = Pkcs1PublicEncryptingKey::new(self.key.clone()).map_err(|_| SealError)?;
        let mut wrapped = vec![0u8; rsa.ciphertext_size()];
        let wrapped = rsa.encrypt(&cek, &mut wrapped).map_err(|_| SealError)?;
        let id = &self.certificate.id;
        let ktri = constructed(
            der::SEQUENCE,
            &[
                &tlv(der::INTEGER, &[0]),
                &constructed(der::SEQUENCE, &[&id.issuer, &tlv(der::INTEGER, &id.serial)]),
                &constructed(
                    der::SEQUENCE,
                    &[&tlv(der::OID, oid::RSA_ENCRYPTION), &tlv(der::NULL, &[])],
                ),
                &tlv(der::OCTET_STRING, wrapped),
            ],
        );
        let eci = constructed(
            der::SEQUENCE,
            &[
                &tlv(der::OID, oid::DATA),
                &constructed(
                    der::SEQUENCE,
                    &[
                        &tlv(der::OID, enc_oid::AES256_CBC),
                        &tlv(der::OCTET_STRING, iv),
                    ],
                ),
                &tlv(der::context_primitive(0), &content),
            ],
        );
        let enveloped = constructed(
            der::SEQUENCE,
            &[&tlv(der::INTEGER, &[0]), &tlv(der::SET, &ktri), &eci],
        );
        Ok(constructed(
            der::SEQUENCE,
            &[
                &tlv(der::OID, enc_oid::ENVELOPED_DATA),
                &tlv(der::context(0), &enveloped),
            ],
        ))
    }
}

/// Encrypting failed (the random source or the cipher): an infrastructure fault, never the sender's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("encrypting for the recipient failed")]
pub struct SealError;

struct HubKey {
    certificate: EncryptionCertificate,
    key: PrivateDecryptingKey,
}

/// The hub's decryption keys (`[gateway] encryption_keys`): the current one and any still accepted
/// during a rotation. A message is opened with whichever its RecipientInfo names.
#[derive(Default)]
pub struct HubKeys {
    keys: Vec<HubKey>,
}

impl std::fmt::Debug for HubKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| &k.certificate.subject))
            .finish()
    }
}

impl HubKeys {
    /// Loads `(key, certificate)` pairs: PKCS#8 PEM RSA keys and their certificates; fails if a key
    /// does not belong to its certificate.
    pub fn load(pairs: &[(&Path, &Path)]) -> Result<HubKeys, KeyError> {
        let mut keys = Vec::with_capacity(pairs.len());
        for (key_path, cert_path) in pairs {
            let certificate = EncryptionCertificate::from_file(cert_path)?;
            let pem = std::fs::read(key_path)
                .map_err(|e| key_error(key_path, format!("cannot read: {e}")))?;
            let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(&pem)
                .map_err(|e| key_error(key_path, format!("not a PEM PKCS#8 PRIVATE KEY: {e}")))?;
            let key = PrivateDecryptingKey::from_pkcs8(pkcs8.secret_pkcs8_der())
                .map_err(|e| key_error(key_path, format!("not a usable RSA key: {e}")))?;
            use aws_lc_rs::encoding::AsDer;
            let public = key
                .public_key()
                .as_der()
                .map_err(|_| key_error(key_path, "cannot encode its public key"))?;
            if public.as_ref() != certificate.spki.as_slice() {
                return Err(key_error(
                    key_path,
                    format!(
                        "this key does not belong to certificate {}",
                        cert_path.display()
                    ),
                ));
            }
            keys.push(HubKey { certificate, key });
        }
        Ok(HubKeys { keys })
    }

    /// Whether any key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The certificates, in configured order.
    pub fn certificates(&self) -> impl Iterator<Item = &EncryptionCertificate> {
        self.keys.iter().map(|k| &k.certificate)
    }

    /// Opens an encrypted envelope (module documentation).
    pub fn open(&self, bytes: &[u8]) -> Result<Opened, OpenError> {
        if bytes.len() > super::MAX_ENVELOPE_BYTES {
            return Err(OpenError::Undecryptable);
        }
        let parsed = parse(bytes)?;
        // The first RecipientInfo that names one of our keys (HN.Msg writes exactly one).
        let found = parsed.recipients.iter().find_map(|ri| {
            self.keys
                .iter()
                .position(|k| ri.rid.names(&k.certificate.id))
                .map(|i| (ri, i))
        });
        let Some((ri, key_index)) = found else {
            return Err(OpenError::NotForUs);
        };
        let Some(content) = parsed.content else {
            return Err(OpenError::Undecryptable);
        };
        let key_len = content.cipher.key_len();
        let cek = unwrap_key(&self.keys[key_index].key, ri, key_len);
        let plain = content
            .decrypt(&cek[..key_len])
            .ok_or(OpenError::Undecryptable)?;
        let signed = if parsed.content_type == oid::SIGNED_DATA {
            // S/MIME nesting proper: the content is the SignedData itself, not a ContentInfo.
            constructed(
                der::SEQUENCE,
                &[
                    &tlv(der::OID, oid::SIGNED_DATA),
                    &tlv(der::context(0), &plain),
                ],
            )
        } else if parsed.content_type == oid::DATA {
            // HN.Msg and `openssl cms -encrypt` encrypt the whole SignedData ContentInfo as data.
            plain
        } else {
            return Err(OpenError::Undecryptable);
        };
        Ok(Opened { signed, key_index })
    }
}

/// Whether `bytes` is a ContentInfo of EnvelopedData or AuthEnvelopedData (the content type of the
/// DER, whatever the transport's header says).
pub fn is_enveloped(bytes: &[u8]) -> bool {
    content_info_type(bytes)
        .is_some_and(|t| t == enc_oid::ENVELOPED_DATA || t == enc_oid::AUTH_ENVELOPED_DATA)
}

fn content_info_type(bytes: &[u8]) -> Option<&[u8]> {
    let mut top = Reader::new(bytes);
    let ci = top.read(der::SEQUENCE, "ContentInfo").ok()?;
    let mut c = ci.contents();
    Some(c.read(der::OID, "contentType").ok()?.value)
}

/// The RSA unwrap with implicit rejection: always `32` bytes out, the real key only when the
/// unwrap succeeded with exactly `key_len` bytes, random bytes otherwise — chosen in constant time,
/// so what follows (the content decryption, which then fails) is the same work either way.
fn unwrap_key(key: &PrivateDecryptingKey, ri: &KeyTrans<'_>, key_len: usize) -> [u8; 32] {
    let mut fallback = [0u8; 32];
    // Without randomness the fallback stays zero: still a wrong key, still the same outcome.
    let _ = aws_lc_rs::rand::fill(&mut fallback);
    let mut out = vec![0u8; key.key_size_bytes().max(64)];
    let unwrapped: Option<&mut [u8]> = match ri.scheme {
        KeyTransport::Pkcs1 => Pkcs1PrivateDecryptingKey::new(key.clone())
            .ok()
            .and_then(|k| k.decrypt(ri.encrypted_key, &mut out).ok()),
        KeyTransport::Oaep(alg) => OaepPrivateDecryptingKey::new(key.clone())
            .ok()
            .and_then(|k| k.decrypt(alg, ri.encrypted_key, &mut out, None).ok()),
        KeyTransport::Unsupported => None,
    };
    let (len, bytes): (usize, &[u8]) = match unwrapped {
        Some(b) => (b.len(), b),
        None => (0, &[]),
    };
    let mut candidate = [0u8; 32];
    let n = len.min(32);
    candidate[..n].copy_from_slice(&bytes[..n]);
    let ok = (len as u64).ct_eq(&(key_len as u64));
    let mut cek = [0u8; 32];
    for i in 0..32 {
        cek[i] = u8::conditional_select(&fallback[i], &candidate[i], ok);
    }
    out.iter_mut().for_each(|b| *b = 0);
    cek
}

/// How the content-encryption key is wrapped.
#[derive(Clone, Copy)]
enum KeyTransport {
    Pkcs1,
    Oaep(&'static OaepAlgorithm),
    /// Any other algorithm: decrypted as if the unwrap failed (one outcome).
    Unsupported,
}

/// How a RecipientInfo names the recipient.
enum Rid<'a> {
    IssuerSerial { issuer: &'a [u8], serial: &'a [u8] },
    Ski(&'a [u8]),
}

impl Rid<'_> {
    fn names(&self, id: &CertId) -> bool {
        match self {
            Rid::IssuerSerial { issuer, serial } => {
                *issuer == id.issuer.as_slice() && *serial == id.serial.as_slice()
            }
            Rid::Ski(s) => id.ski.as_deref() == Some(*s),
        }
    }
}

struct KeyTrans<'a> {
    rid: Rid<'a>,
    scheme: KeyTransport,
    encrypted_key: &'a [u8],
}

#[derive(Clone, Copy)]
enum Cipher {
    Cbc(&'static aws_lc_rs::cipher::Algorithm, usize, [u8; 16]),
    Gcm(&'static aws_lc_rs::aead::Algorithm, [u8; 12]),
}

impl Cipher {
    fn key_len(&self) -> usize {
        match self {
            Cipher::Cbc(_, n, _) => *n,
            Cipher::Gcm(a, _) => a.key_len(),
        }
    }
}

struct Content<'a> {
    cipher: Cipher,
    ciphertext: Vec<u8>,
    /// AuthEnvelopedData: the MAC (GCM tag) and the DER of authAttrs (the AAD, RFC 5083 §2.2).
    mac: Option<&'a [u8]>,
    aad: Vec<u8>,
}

impl Content<'_> {
    fn decrypt(mut self, cek: &[u8]) -> Option<Vec<u8>> {
        match self.cipher {
            Cipher::Cbc(alg, _, iv) => {
                let key = UnboundCipherKey::new(alg, cek).ok()?;
                let dec = PaddedBlockDecryptingKey::cbc_pkcs7(key).ok()?;
                let n = dec
                    .decrypt(
                        &mut self.ciphertext,
                        DecryptionContext::Iv128(FixedLength::from(iv)),
                    )
                    .ok()?
                    .len();
                self.ciphertext.truncate(n);
                Some(self.ciphertext)
            }
            Cipher::Gcm(alg, nonce) => {
                use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
                let key = LessSafeKey::new(UnboundKey::new(alg, cek).ok()?);
                let mac = self.mac?;
                let n = key
                    .open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(self.aad.as_slice()),
                        mac,
                        &mut self.ciphertext,
                    )
                    .ok()?
                    .len();
                // open_in_place_separate_tag leaves the plaintext where the ciphertext was.
                self.ciphertext.truncate(n);
                Some(self.ciphertext)
            }
        }
    }
}

struct Parsed<'a> {
    recipients: Vec<KeyTrans<'a>>,
    content_type: &'a [u8],
    /// `None` when the structure is unusable: the outcome is then `Undecryptable`, decided only
    /// after the recipient is known (so that a wrong recipient is still told as such).
    content: Option<Content<'a>>,
}

fn parse(bytes: &[u8]) -> Result<Parsed<'_>, OpenError> {
    let mut top = Reader::new(bytes);
    let ci = top
        .read(der::SEQUENCE, "ContentInfo")
        .map_err(|_| OpenError::NotEnveloped)?;
    let mut c = ci.contents();
    let ty = c
        .read(der::OID, "contentType")
        .map_err(|_| OpenError::NotEnveloped)?
        .value;
    let auth = if ty == enc_oid::ENVELOPED_DATA {
        false
    } else if ty == enc_oid::AUTH_ENVELOPED_DATA {
        true
    } else {
        return Err(OpenError::NotEnveloped);
    };
    let u = OpenError::Undecryptable;
    if !top.is_empty() {
        return Err(u);
    }
    let explicit = c.read(der::context(0), "content").map_err(|_| u)?;
    let mut e = explicit.contents();
    let body = e.read(der::SEQUENCE, "EnvelopedData").map_err(|_| u)?;
    let mut b = body.contents();
    b.read(der::INTEGER, "version").map_err(|_| u)?;
    b.read_optional(der::context(0)).map_err(|_| u)?; // originatorInfo
    let set = b.read(der::SET, "recipientInfos").map_err(|_| u)?;
    let mut ris = set.contents();
    let mut recipients = Vec::new();
    let mut seen = 0;
    while !ris.is_empty() && seen < MAX_RECIPIENTS {
        seen += 1;
        let ri = ris.read_any().map_err(|_| u)?;
        // KeyTransRecipientInfo is the only untagged choice (RFC 5652 §6.2); others are skipped.
        if ri.tag != der::SEQUENCE {
            continue;
        }
        if let Some(k) = key_trans(ri) {
            recipients.push(k);
        }
    }
    let content = encrypted_content(&mut b, auth);
    Ok(Parsed {
        recipients,
        content_type: content.as_ref().map_or(&[][..], |(t, _)| t),
        content: content.map(|(_, c)| c),
    })
}

fn key_trans(ri: Tlv<'_>) -> Option<KeyTrans<'_>> {
    let mut r = ri.contents();
    r.read(der::INTEGER, "version").ok()?;
    let rid = match r.peek_tag()? {
        der::SEQUENCE => {
            let ias = r.read(der::SEQUENCE, "IssuerAndSerialNumber").ok()?;
            let mut i = ias.contents();
            let issuer = i.read(der::SEQUENCE, "issuer").ok()?.raw;
            let serial = i.read(der::INTEGER, "serial").ok()?.value;
            Rid::IssuerSerial { issuer, serial }
        }
        t if t == der::context_primitive(0) => Rid::Ski(r.read_any().ok()?.value),
        _ => return None,
    };
    let alg = read_algorithm(&mut r, "keyEncryptionAlgorithm").ok()?;
    let encrypted_key = r.read(der::OCTET_STRING, "encryptedKey").ok()?.value;
    Some(KeyTrans {
        rid,
        scheme: key_transport(&alg),
        encrypted_key,
    })
}

fn key_transport(alg: &AlgorithmId<'_>) -> KeyTransport {
    if alg.oid == oid::RSA_ENCRYPTION {
        return KeyTransport::Pkcs1;
    }
    if alg.oid != enc_oid::RSAES_OAEP {
        return KeyTransport::Unsupported;
    }
    oaep_params(alg.params).map_or(KeyTransport::Unsupported, KeyTransport::Oaep)
}

/// RSAES-OAEP-params (RFC 3560 §3): hash and MGF1 hash must be the same (what aws-lc-rs offers),
/// and the label empty (pSourceFunc absent or pSpecified with an empty OCTET STRING).
fn oaep_params(params: Option<Tlv<'_>>) -> Option<&'static OaepAlgorithm> {
    let hash_of = |oid: &[u8]| -> Option<u8> {
        match oid {
            o if o == enc_oid::SHA1 => Some(1),
            o if o == oid::SHA256 => Some(2),
            o if o == oid::SHA384 => Some(3),
            o if o == oid::SHA512 => Some(5),
            _ => None,
        }
    };
    let (mut hash, mut mgf_hash) = (1u8, 1u8);
    if let Some(p) = params.filter(|p| p.tag == der::SEQUENCE) {
        let mut r = p.contents();
        if let Some(h) = r.read_optional(der::context(0)).ok()? {
            let mut c = h.contents();
            hash = hash_of(read_algorithm(&mut c, "hashFunc").ok()?.oid)?;
        }
        if let Some(m) = r.read_optional(der::context(1)).ok()? {
            let mut c = m.contents();
            let mgf = read_algorithm(&mut c, "maskGenFunc").ok()?;
            if mgf.oid != oid::MGF1 {
                return None;
            }
            let mut inner = Reader::new(mgf.params?.raw);
            mgf_hash = hash_of(read_algorithm(&mut inner, "MGF1 hash").ok()?.oid)?;
        }
        if let Some(s) = r.read_optional(der::context(2)).ok()? {
            let mut c = s.contents();
            let src = read_algorithm(&mut c, "pSourceFunc").ok()?;
            if src.oid != enc_oid::P_SPECIFIED || src.params.is_some_and(|l| !l.value.is_empty()) {
                return None;
            }
        }
        if !r.is_empty() {
            return None;
        }
    }
    if hash != mgf_hash {
        return None;
    }
    Some(match hash {
        1 => &OAEP_SHA1_MGF1SHA1,
        2 => &OAEP_SHA256_MGF1SHA256,
        3 => &OAEP_SHA384_MGF1SHA384,
        _ => &OAEP_SHA512_MGF1SHA512,
    })
}

/// EncryptedContentInfo (and for AuthEnvelopedData the authAttrs and mac after it).
fn encrypted_content<'a>(b: &mut Reader<'a>, auth: bool) -> Option<(&'a [u8], Content<'a>)> {
    let eci = b.read(der::SEQUENCE, "EncryptedContentInfo").ok()?;
    let mut r = eci.contents();
    let content_type = r.read(der::OID, "contentType").ok()?.value;
    let alg = read_algorithm(&mut r, "contentEncryptionAlgorithm").ok()?;
    let ciphertext = match r.peek_tag()? {
        t if t == der::context_primitive(0) => r.read_any().ok()?.value.to_vec(),
        // BER's constructed form: the OCTET STRING in primitive pieces (one level, RFC 5652 §6.1
        // allows it and some toolkits write it).
        t if t == der::context(0) => {
            let outer = r.read_any().ok()?;
            let mut parts = outer.contents();
            let mut out = Vec::new();
            while !parts.is_empty() {
                out.extend_from_slice(parts.read(der::OCTET_STRING, "segment").ok()?.value);
            }
            out
        }
        _ => return None,
    };
    let last = alg.oid.strip_prefix(enc_oid::AES_ARC)?;
    let params = alg.params?;
    let cipher = match (last, auth) {
        ([2 | 22 | 42], false) => {
            let iv: [u8; 16] = (params.tag == der::OCTET_STRING)
                .then_some(params.value)?
                .try_into()
                .ok()?;
            let (a, n) = match last[0] {
                2 => (&AES_128, 16),
                22 => (&AES_192, 24),
                _ => (&AES_256, 32),
            };
            Cipher::Cbc(a, n, iv)
        }
        ([6 | 26 | 46], true) => {
            // GCMParameters (RFC 5084 §3.2): a 12-byte nonce; the ICV length must be 16 (the only
            // tag length aws-lc-rs checks, and what OpenSSL writes).
            let mut p = params.contents();
            let nonce: [u8; 12] = p
                .read(der::OCTET_STRING, "aes-nonce")
                .ok()?
                .value
                .try_into()
                .ok()?;
            let icv = p.read(der::INTEGER, "aes-ICVlen").ok()?.value;
            if icv != [16] || !p.is_empty() {
                return None;
            }
            let a = match last[0] {
                6 => &aws_lc_rs::aead::AES_128_GCM,
                26 => &aws_lc_rs::aead::AES_192_GCM,
                _ => &aws_lc_rs::aead::AES_256_GCM,
            };
            Cipher::Gcm(a, nonce)
        }
        _ => return None,
    };
    let (mut mac, mut aad) = (None, Vec::new());
    if auth {
        if let Some(attrs) = b.read_optional(der::context(1)).ok()? {
            // RFC 5083 §2.2: the AAD is the DER of authAttrs with the SET OF tag.
            aad = attrs.raw.to_vec();
            aad[0] = der::SET;
        }
        mac = Some(b.read(der::OCTET_STRING, "mac").ok()?.value);
    }
    Some((
        content_type,
        Content {
            cipher,
            ciphertext,
            mac,
            aad,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(rel: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/gateway-pki/encryption")
            .join(rel)
    }

    fn hub(stem: &str) -> HubKeys {
        let (key, cert) = (enc(&format!("{stem}.key")), enc(&format!("{stem}.pem")));
        HubKeys::load(&[(key.as_path(), cert.as_path())]).expect("hub key")
    }

    #[test]
    fn oaep_defaults_are_sha1() {
        assert_eq!(oaep_params(None).unwrap().id(), OAEP_SHA1_MGF1SHA1.id());
    }

    #[test]
    fn what_is_sealed_opens_with_that_key_only_and_not_when_tampered() {
        let signed = b"not really a SignedData, but carried byte for byte".to_vec();
        let to_hub = RecipientCert::from_file(&enc("90000-enc.pem")).unwrap();
        let sealed = to_hub.seal(&signed).unwrap();
        assert!(is_enveloped(&sealed));
        let opened = hub("90000-enc").open(&sealed).unwrap();
        assert_eq!((opened.signed, opened.key_index), (signed, 0));
        assert_eq!(
            hub("90000-enc-previous").open(&sealed).unwrap_err(),
            OpenError::NotForUs
        );
        for at in [sealed.len() - 1, sealed.len() - 20, sealed.len() / 2] {
            let mut bad = sealed.clone();
            bad[at] ^= 1;
            assert_eq!(
                hub("90000-enc").open(&bad).unwrap_err(),
                OpenError::Undecryptable,
                "bit flipped at {at}"
            );
        }
    }

    #[test]
    fn a_key_must_match_its_certificate() {
        let (key, cert) = (enc("90000-enc-previous.key"), enc("90000-enc.pem"));
        let e = HubKeys::load(&[(key.as_path(), cert.as_path())]).unwrap_err();
        assert!(e.problem.contains("does not belong"), "{e}");
    }

    #[test]
    fn usage_and_validity_are_checked() {
        let now = time::OffsetDateTime::now_utc();
        let good = EncryptionCertificate::from_file(&enc("80001-enc.pem")).unwrap();
        assert_eq!(good.problem_at(now), None);
        let sign_only = EncryptionCertificate::from_file(&enc("bad/sign-only-enc.pem")).unwrap();
        assert!(sign_only
            .problem_at(now)
            .unwrap()
            .contains("keyEncipherment"));
        let expired = EncryptionCertificate::from_file(&enc("bad/expired-enc.pem")).unwrap();
        assert!(expired.problem_at(now).unwrap().contains("expired"));
    }

    #[test]
    fn other_content_is_not_enveloped() {
        let signed = constructed(
            der::SEQUENCE,
            &[
                &tlv(der::OID, oid::SIGNED_DATA),
                &tlv(der::context(0), &[0x30, 0]),
            ],
        );
        assert!(!is_enveloped(&signed));
        let keys = HubKeys::default();
        assert_eq!(keys.open(&signed).unwrap_err(), OpenError::NotEnveloped);
        assert_eq!(keys.open(b"garbage").unwrap_err(), OpenError::NotEnveloped);
    }
}
