//! The trust store: trust anchors, intermediates and CRLs read once from the trust directory, and
//! the check of a signer certificate against them (chain, validity, key usage, revocation), with a
//! bounded cache of successful checks.
//!
//! Input: the signer certificate DER, any other certificates the message carries, and `now`.
//! Output: a [`CheckedSigner`] (identity and RSA public key). Failure: [`VerifyError`] with S02/S03,
//! or a retryable revocation error.
//!
//! Revocation rule: every certificate of the path below the anchor must have its status in a
//! current CRL from its issuer — so every CA that issues signer or intermediate certificates
//! (the roots in `anchors/` and the CAs in `intermediates/`) must have a CRL in `crls/`. A missing
//! CRL or one past its `nextUpdate` is a retryable fault (DESIGN.md §2: "revocation data stale or
//! missing = retry later, not reject").
//!
//! Anchors are trust inputs (RFC 5280 §6.1.1 d): their own validity dates are not checked, as in
//! webpki; intermediates' are. Extended key usage is not constrained (SEID certificates differ);
//! the keyUsage bits are, here, because webpki does not look at them.
//!
//! Cache: a successful check is kept per (signer fingerprint, other certificates in the message)
//! together with the window in which it stays true: the intersection of the validity of the
//! certificates in the path and the `nextUpdate` of the CRLs used. Outside that window the full
//! check runs again (and gives the precise error). A new CRL (fetched or dropped into `crls/`,
//! `crate::revocation`) means a new `TrustStore` ([`TrustStore::with_crls`]), and so a fresh cache. The cache holds at most [`CACHE_LIMIT`] entries and is
//! emptied when full (a gateway has a few hundred parties, so this is a safety bound, not a policy).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, ExpirationPolicy, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{self, Reader};
use super::error::{rfc3339, TrustError, VerifyError};
use super::signed_data::oid;
use super::SignerIdentity;
use crate::ids::Timestamp;

/// Most cached signer checks kept before the cache is emptied.
pub const CACHE_LIMIT: usize = 4096;
/// Smallest and largest RSA modulus accepted (SEID 2.0 uses 3072, SEID 1 2048).
pub const MIN_RSA_BITS: usize = 2048;
pub const MAX_RSA_BITS: usize = 4096;
/// A certificate or CRL file larger than this in the trust directory is refused.
const MAX_TRUST_FILE_BYTES: u64 = 16 << 20;

/// A signer certificate that passed every check, valid for verification in `[valid_from, valid_until)`.
#[derive(Debug)]
pub(crate) struct CheckedSigner {
    pub identity: SignerIdentity,
    /// `RSAPublicKey` DER (PKCS#1), as ring wants it.
    pub rsa_public_key: Vec<u8>,
    /// The key parsed for PKCS#1 v1.5 verification with SHA-256, SHA-384, SHA-512 (by
    /// [`CheckedSigner::pkcs1_key`]), made on first use: parsing it and setting up its Montgomery
    /// context cost about a tenth of a verification, once per signer instead of per message.
    pkcs1_keys: [std::sync::OnceLock<Option<aws_lc_rs::signature::ParsedPublicKey>>; 3],
    valid_from: Timestamp,
    valid_until: Timestamp,
}

impl CheckedSigner {
    /// The public key, parsed for `alg` (one of the three PKCS#1 v1.5 parameter sets, `slot` 0–2
    /// in the order SHA-256, SHA-384, SHA-512); `None` when the key does not parse for it.
    pub(crate) fn pkcs1_key(
        &self,
        slot: usize,
        alg: &'static aws_lc_rs::signature::RsaParameters,
    ) -> Option<&aws_lc_rs::signature::ParsedPublicKey> {
        self.pkcs1_keys
            .get(slot)?
            .get_or_init(|| {
                aws_lc_rs::signature::ParsedPublicKey::new(alg, &self.rsa_public_key).ok()
            })
            .as_ref()
    }
}

struct LoadedCrl {
    crl: CertRevocationList<'static>,
    issuer_raw: Vec<u8>,
    issuer: String,
    this_update: Timestamp,
    next_update: Option<Timestamp>,
    /// The cRLNumber extension, big-endian without leading zeros (RFC 5280 §5.2.3), if present.
    number: Option<Vec<u8>>,
    der: Vec<u8>,
}

/// One certificate revocation list, parsed; cheap to clone and shared between trust stores.
#[derive(Clone)]
pub struct Crl(Arc<LoadedCrl>);

impl std::fmt::Debug for Crl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crl")
            .field("issuer", &self.0.issuer)
            .field("this_update", &rfc3339(&self.0.this_update))
            .field("next_update", &self.0.next_update.map(|t| rfc3339(&t)))
            .finish()
    }
}

impl Crl {
    /// Parses a CRL given as DER or PEM (`X509 CRL`). The signature is not checked here
    /// ([`TrustStore::check_crl`] does that against the issuing CA).
    pub fn parse(bytes: &[u8]) -> Result<Crl, String> {
        let der = if bytes.first() == Some(&der::SEQUENCE) {
            bytes.to_vec()
        } else {
            CertificateRevocationListDer::from_pem_slice(bytes)
                .map_err(|e| format!("neither DER nor PEM X509 CRL: {e}"))?
                .as_ref()
                .to_vec()
        };
        let (_, parsed) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der)
            .map_err(|e| format!("not a CRL: {e}"))?;
        let issuer_raw = parsed.tbs_cert_list.issuer.as_raw().to_vec();
        let issuer = parsed.issuer().to_string();
        let this_update = parsed.last_update().to_datetime();
        let next_update = parsed.next_update().map(|t| t.to_datetime());
        let number = parsed.crl_number().map(|n| n.to_bytes_be());
        let crl = OwnedCertRevocationList::from_der(&der)
            .map_err(|e| format!("CRL not usable: {e:?}"))?;
        Ok(Crl(Arc::new(LoadedCrl {
            crl: crl.into(),
            issuer_raw,
            issuer,
            this_update,
            next_update,
            number,
            der,
        })))
    }

    /// The issuer's distinguished name, readable.
    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }
    /// The issuer's distinguished name as encoded (what certificates' issuer fields are compared with).
    pub fn issuer_raw(&self) -> &[u8] {
        &self.0.issuer_raw
    }
    pub fn this_update(&self) -> Timestamp {
        self.0.this_update
    }
    /// `nextUpdate`: after it the CRL is stale (revocation status unknown, a retryable fault).
    pub fn next_update(&self) -> Option<Timestamp> {
        self.0.next_update
    }
    /// The CRL as DER (what is written to the last-good copy on disk).
    pub fn der(&self) -> &[u8] {
        &self.0.der
    }

    /// Whether this CRL supersedes `other` from the same issuer: issued later (`thisUpdate`), or
    /// at the same second with a higher cRLNumber (RFC 5280 §5.2.3: numbers increase).
    pub fn supersedes(&self, other: &Crl) -> bool {
        let num = |c: &Crl| {
            c.0.number.as_ref().map(|n| {
                let n = &n[n.iter().take_while(|b| **b == 0).count()..];
                (n.len(), n.to_vec())
            })
        };
        (self.0.this_update, num(self)) > (other.0.this_update, num(other))
    }

    /// Whether it is past `nextUpdate` at `now` (a CRL without one never turns stale).
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.0.next_update.is_some_and(|n| now >= n)
    }
}

/// Keeps, per issuer, the CRL that supersedes the others (a fetched copy, a file dropped into
/// `crls/` and an older file for the same CA may all be present).
pub fn newest_per_issuer(crls: impl IntoIterator<Item = Crl>) -> Vec<Crl> {
    let mut by_issuer: std::collections::BTreeMap<Vec<u8>, Crl> = Default::default();
    for c in crls {
        match by_issuer.entry(c.issuer_raw().to_vec()) {
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(c);
            }
            std::collections::btree_map::Entry::Occupied(mut o) => {
                if c.supersedes(o.get()) {
                    o.insert(c);
                }
            }
        }
    }
    by_issuer.into_values().collect()
}

/// A certificate authority of the trust directory (an anchor or an intermediate) and where the
/// certificates it trusts say its CRL is published.
#[derive(Debug, Clone)]
pub struct Authority {
    /// Subject distinguished name, readable.
    pub name: String,
    /// Subject as encoded (a CRL's issuer must equal it).
    pub subject_raw: Vec<u8>,
    /// `http://` CRL distribution points (RFC 5280 §4.2.1.13) named in certificates this CA
    /// issued — intermediates, party certificates — in the order first seen, without duplicates.
    pub distribution_points: Vec<String>,
    der: Vec<u8>,
}

/// Trust anchors, intermediates and CRLs from a trust directory:
///
/// ```text
/// DIR/anchors/*.pem        trusted root certificates
/// DIR/intermediates/*.pem  intermediate CA certificates (messages may carry more)
/// DIR/crls/*.crl           CRLs, DER or PEM: one current CRL per issuing CA (roots included)
/// ```
pub struct TrustStore {
    dir: PathBuf,
    anchors: Vec<TrustAnchor<'static>>,
    intermediates: Vec<CertificateDer<'static>>,
    authorities: Vec<Authority>,
    crls: Vec<Crl>,
    cache: RwLock<HashMap<[u8; 32], Arc<CheckedSigner>>>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("dir", &self.dir)
            .field("anchors", &self.anchors.len())
            .field("intermediates", &self.intermediates.len())
            .field("crls", &self.crls.len())
            .finish()
    }
}

fn files_in(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, TrustError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(TrustError::Io {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| TrustError::Io {
                path: dir.to_owned(),
                source,
            })?
            .path();
        if path.extension().and_then(|e| e.to_str()) == Some(extension) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TrustError> {
    let meta = std::fs::metadata(path).map_err(|source| TrustError::Io {
        path: path.to_owned(),
        source,
    })?;
    if meta.len() > MAX_TRUST_FILE_BYTES {
        return Err(TrustError::Unreadable {
            path: path.to_owned(),
            problem: format!("{} bytes is too large", meta.len()),
        });
    }
    std::fs::read(path).map_err(|source| TrustError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file (or the one certificate of a DER file).
pub(crate) fn certificates_in(bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    if bytes.first() == Some(&der::SEQUENCE) {
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(certs)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TrustError> {
    let bytes = read_bounded(path)?;
    let certs = certificates_in(&bytes).map_err(|problem| TrustError::Unreadable {
        path: path.to_owned(),
        problem,
    })?;
    for c in &certs {
        X509Certificate::from_der(c).map_err(|e| TrustError::Unreadable {
            path: path.to_owned(),
            problem: format!("not an X.509 certificate: {e}"),
        })?;
    }
    Ok(certs)
}

fn load_crl(path: &Path) -> Result<Crl, TrustError> {
    let bytes = read_bounded(path)?;
    Crl::parse(&bytes).map_err(|problem| TrustError::Unreadable {
        path: path.to_owned(),
        problem,
    })
}

/// The `http://` URIs of a certificate's CRL distribution points (full names only; points with a
/// cRLIssuer — indirect CRLs, which webpki refuses — are left out).
pub(crate) fn distribution_points(cert: &X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
    let mut out = Vec::new();
    for ext in cert.extensions() {
        let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() else {
            continue;
        };
        for p in points.iter() {
            if p.crl_issuer.is_some() {
                continue;
            }
            if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                for n in names {
                    if let GeneralName::URI(uri) = n {
                        if uri
                            .get(..7)
                            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
                        {
                            out.push((*uri).to_owned());
                        }
                    }
                }
            }
        }
    }
    out
}

/// Accepts any extended key usage: CMS signing is governed by the key usage bits, which
/// [`check_key_usage`] checks (webpki checks EKU only).
struct AnyExtendedKeyUsage;
impl webpki::ExtendedKeyUsageValidator for AnyExtendedKeyUsage {
    fn validate(&self, _iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        Ok(())
    }
}

fn unix_time(now: Timestamp) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(now.unix_timestamp().max(0) as u64))
}

fn unix_text(t: UnixTime) -> String {
    Timestamp::from_unix_timestamp(t.as_secs() as i64)
        .map_or_else(|_| format!("unix time {}", t.as_secs()), |t| rfc3339(&t))
}

/// Lowercase hex SHA-256 of a certificate's DER.
pub(crate) fn fingerprint_of(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

/// The organisation number: `organizationIdentifier` (2.5.4.97) `NTRNO-<orgnr>` (SEID 2.0), else a
/// nine-digit subject `serialNumber` (2.5.4.5, SEID 1).
fn organisation_number(cert: &X509Certificate<'_>) -> Option<String> {
    let mut seid1 = None;
    for attr in cert.subject().iter_attributes() {
        let Ok(value) = attr.as_str() else { continue };
        match attr.attr_type().to_id_string().as_str() {
            "2.5.4.97" => {
                if let Some(n) = value.strip_prefix("NTRNO-") {
                    return Some(n.to_owned());
                }
            }
            "2.5.4.5" if value.len() == 9 && value.bytes().all(|b| b.is_ascii_digit()) => {
                seid1 = Some(value.to_owned())
            }
            _ => {}
        }
    }
    seid1
}

fn check_key_usage(cert: &X509Certificate<'_>, subject: &str) -> Result<(), VerifyError> {
    let ku = cert
        .key_usage()
        .map_err(|e| VerifyError::CertificateUnreadable {
            problem: format!("keyUsage of {subject}: {e}"),
        })?;
    match ku {
        Some(ku) if ku.value.digital_signature() || ku.value.non_repudiation() => Ok(()),
        // SEID certificates always carry keyUsage; one without it is not a signing certificate.
        Some(ku) => Err(VerifyError::WrongKeyUsage {
            subject: subject.to_owned(),
            key_usage: ku.value.to_string(),
        }),
        None => Err(VerifyError::WrongKeyUsage {
            subject: subject.to_owned(),
            key_usage: "absent".into(),
        }),
    }
}

/// The RSA public key (PKCS#1 DER) of a certificate, refusing other algorithms and sizes outside
/// [`MIN_RSA_BITS`]..=[`MAX_RSA_BITS`].
fn rsa_public_key(cert: &X509Certificate<'_>, subject: &str) -> Result<Vec<u8>, VerifyError> {
    let not_acceptable = |problem: String| VerifyError::KeyNotAcceptable {
        subject: subject.to_owned(),
        problem,
    };
    let spki = &cert.tbs_certificate.subject_pki;
    if spki.algorithm.algorithm.as_bytes() != oid::RSA_ENCRYPTION {
        return Err(not_acceptable(format!(
            "algorithm {} is not RSA",
            spki.algorithm.algorithm
        )));
    }
    let key = spki.subject_public_key.data.as_ref();
    let bits =
        rsa_modulus_bits(key).ok_or_else(|| not_acceptable("RSAPublicKey is malformed".into()))?;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(not_acceptable(format!(
            "RSA-{bits} is outside {MIN_RSA_BITS}..={MAX_RSA_BITS} bits"
        )));
    }
    Ok(key.to_vec())
}

pub(crate) fn rsa_modulus_bits(rsa_public_key: &[u8]) -> Option<usize> {
    let mut r = Reader::new(rsa_public_key);
    let mut seq = r.read(der::SEQUENCE, "RSAPublicKey").ok()?.contents();
    let n = seq.read(der::INTEGER, "modulus").ok()?.value;
    let n = &n[n.iter().take_while(|b| **b == 0).count()..];
    let first = *n.first()?;
    Some(n.len() * 8 - first.leading_zeros() as usize)
}

fn cache_key(fingerprint: &[u8], other_certs: &[&[u8]]) -> [u8; 32] {
    let mut key = [0u8; 32];
    if other_certs.is_empty() {
        key.copy_from_slice(fingerprint);
    } else {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(fingerprint);
        for c in other_certs {
            ctx.update(&(c.len() as u64).to_be_bytes());
            ctx.update(c);
        }
        key.copy_from_slice(ctx.finish().as_ref());
    }
    key
}

impl TrustStore {
    /// Reads the trust directory (layout in the type's documentation). Fails when a file cannot be
    /// read or parsed, or when there is no anchor; a missing `intermediates/` or `crls/` is allowed
    /// at load (a missing CRL then shows up as a retryable error for the chains that need it).
    pub fn load(dir: &Path) -> Result<TrustStore, TrustError> {
        Self::load_with_copies(dir, None)
    }

    /// [`TrustStore::load`], plus the last good CRLs fetched from distribution points, kept in
    /// `copies` (`<state>/crls`): per CA the CRL that supersedes the others is used, wherever it
    /// came from. Every CRL whose issuer is a CA of the directory must verify against that CA.
    pub fn load_with_copies(dir: &Path, copies: Option<&Path>) -> Result<TrustStore, TrustError> {
        let mut anchors = Vec::new();
        let mut ca_certs = Vec::new();
        for path in files_in(&dir.join("anchors"), "pem")? {
            for cert in load_certs(&path)? {
                let anchor = webpki::anchor_from_trusted_cert(&cert)
                    .map_err(|e| TrustError::Unreadable {
                        path: path.clone(),
                        problem: format!("not a usable trust anchor: {e:?}"),
                    })?
                    .to_owned();
                anchors.push(anchor);
                ca_certs.push(cert);
            }
        }
        if anchors.is_empty() {
            return Err(TrustError::NoAnchors {
                dir: dir.to_owned(),
            });
        }
        let mut intermediates = Vec::new();
        for path in files_in(&dir.join("intermediates"), "pem")? {
            intermediates.extend(load_certs(&path)?);
        }
        ca_certs.extend(intermediates.iter().cloned());
        let mut store = TrustStore {
            dir: dir.to_owned(),
            anchors,
            intermediates,
            authorities: Vec::new(),
            crls: Vec::new(),
            cache: RwLock::new(HashMap::new()),
        };
        for der in &ca_certs {
            if let Ok((_, c)) = X509Certificate::from_der(der) {
                if !store
                    .authorities
                    .iter()
                    .any(|a| a.subject_raw == c.subject().as_raw())
                {
                    store.authorities.push(Authority {
                        name: c.subject().to_string(),
                        subject_raw: c.subject().as_raw().to_vec(),
                        distribution_points: Vec::new(),
                        der: der.to_vec(),
                    });
                }
            }
        }
        store.note_issued(ca_certs.iter().map(|c| c.as_ref()));
        let mut crls = Vec::new();
        for crl_dir in std::iter::once(dir.join("crls")).chain(copies.map(Path::to_path_buf)) {
            for path in files_in(&crl_dir, "crl")? {
                let crl = load_crl(&path)?;
                store
                    .check_crl(&crl)
                    .map_err(|problem| TrustError::Unreadable {
                        path: path.clone(),
                        problem,
                    })?;
                crls.push(crl);
            }
        }
        store.crls = newest_per_issuer(crls);
        Ok(store)
    }

    /// Records the CRL distribution points named in `certs` (DER; the party certificates of the
    /// register, say) for the CAs that issued them. Unreadable certificates are skipped: they are
    /// reported where they are loaded.
    pub fn note_issued<'c>(&mut self, certs: impl IntoIterator<Item = &'c [u8]>) {
        for der in certs {
            let Ok((_, c)) = X509Certificate::from_der(der) else {
                continue;
            };
            let points = distribution_points(&c);
            if let Some(ca) = self
                .authorities
                .iter_mut()
                .find(|a| a.subject_raw == c.issuer().as_raw())
            {
                for p in points {
                    if !ca.distribution_points.contains(&p) {
                        ca.distribution_points.push(p);
                    }
                }
            }
        }
    }

    /// The CAs of the trust directory (anchors first), with their distribution points.
    pub fn authorities(&self) -> &[Authority] {
        &self.authorities
    }

    /// The CRLs in use, one per issuer.
    pub fn crls(&self) -> &[Crl] {
        &self.crls
    }

    /// The CRL in use for the CA with this subject, if any.
    pub fn crl_of(&self, subject_raw: &[u8]) -> Option<&Crl> {
        self.crls.iter().find(|c| c.issuer_raw() == subject_raw)
    }

    /// Checks that `crl` was issued and signed by one of the directory's CAs. A CRL from an issuer
    /// that is not a CA here is accepted as it is (it can revoke nothing webpki looks at).
    pub fn check_crl(&self, crl: &Crl) -> Result<(), String> {
        let Some(ca) = self
            .authorities
            .iter()
            .find(|a| a.subject_raw == crl.issuer_raw())
        else {
            return Ok(());
        };
        let (_, ca_cert) = X509Certificate::from_der(&ca.der)
            .map_err(|e| format!("CA certificate of {}: {e}", ca.name))?;
        let (_, parsed) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(crl.der())
                .map_err(|e| format!("not a CRL: {e}"))?;
        parsed
            .verify_signature(ca_cert.public_key())
            .map_err(|e| format!("signature does not verify against CA {}: {e}", ca.name))
    }

    /// A trust store with the same CAs and `crls` merged into the current ones (per issuer the one
    /// that supersedes the others), and an empty cache: revocations take effect at once.
    pub fn with_crls(&self, crls: impl IntoIterator<Item = Crl>) -> TrustStore {
        TrustStore {
            dir: self.dir.clone(),
            anchors: self.anchors.clone(),
            intermediates: self.intermediates.clone(),
            authorities: self.authorities.clone(),
            crls: newest_per_issuer(self.crls.iter().cloned().chain(crls)),
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// The directory this store was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks the signer certificate (cached when possible). `other_certs` are the message's other
    /// certificates, usable as intermediates.
    pub(crate) fn check_signer(
        &self,
        cert_der: &[u8],
        other_certs: &[&[u8]],
        now: Timestamp,
    ) -> Result<Arc<CheckedSigner>, VerifyError> {
        let fingerprint = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert_der);
        let key = cache_key(fingerprint.as_ref(), other_certs);
        if let Ok(cache) = self.cache.read() {
            if let Some(hit) = cache.get(&key) {
                if hit.valid_from <= now && now < hit.valid_until {
                    return Ok(Arc::clone(hit));
                }
            }
        }
        let checked =
            Arc::new(self.check_uncached(cert_der, hex::encode(fingerprint), other_certs, now)?);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(key, Arc::clone(&checked));
        }
        Ok(checked)
    }

    fn check_uncached(
        &self,
        cert_der: &[u8],
        fingerprint_sha256: String,
        other_certs: &[&[u8]],
        now: Timestamp,
    ) -> Result<CheckedSigner, VerifyError> {
        let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| {
            VerifyError::CertificateUnreadable {
                problem: e.to_string(),
            }
        })?;
        let subject = cert.subject().to_string();
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        if now > not_after {
            return Err(VerifyError::CertificateExpired {
                subject,
                not_after,
                checked_at: now,
            });
        }
        if now < not_before {
            return Err(VerifyError::CertificateNotYetValid {
                subject,
                not_before,
                checked_at: now,
            });
        }
        check_key_usage(&cert, &subject)?;
        let rsa_public_key = rsa_public_key(&cert, &subject)?;

        if self.crls.is_empty() {
            return Err(VerifyError::RevocationMissing { subject });
        }
        let crl_refs: Vec<&CertRevocationList<'static>> =
            self.crls.iter().map(|c| &c.0.crl).collect();
        let revocation = RevocationOptionsBuilder::new(&crl_refs)
            .map_err(|_| VerifyError::RevocationMissing {
                subject: subject.clone(),
            })?
            .with_depth(RevocationCheckDepth::Chain)
            .with_status_policy(UnknownStatusPolicy::Deny)
            .with_expiration_policy(ExpirationPolicy::Enforce)
            .build();
        let ee_der = CertificateDer::from(cert_der);
        let ee =
            EndEntityCert::try_from(&ee_der).map_err(|e| VerifyError::CertificateUnreadable {
                problem: format!("{subject}: {e:?}"),
            })?;
        let mut intermediates: Vec<CertificateDer<'_>> = self
            .intermediates
            .iter()
            .map(|c| CertificateDer::from(c.as_ref()))
            .collect();
        intermediates.extend(other_certs.iter().map(|c| CertificateDer::from(*c)));

        let path = ee
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &self.anchors,
                &intermediates,
                unix_time(now),
                AnyExtendedKeyUsage,
                Some(revocation),
                None,
            )
            .map_err(|e| self.map_webpki_error(e, &cert, &subject, now))?;

        // The window in which this result stays true (see the module documentation).
        let mut valid_from = not_before;
        let mut valid_until = not_after;
        let mut issuers = vec![cert.issuer().as_raw().to_vec()];
        for inter in path.intermediate_certificates() {
            let der = inter.der();
            if let Ok((_, c)) = X509Certificate::from_der(der.as_ref()) {
                valid_from = valid_from.max(c.validity().not_before.to_datetime());
                valid_until = valid_until.min(c.validity().not_after.to_datetime());
                issuers.push(c.issuer().as_raw().to_vec());
            }
        }
        for crl in &self.crls {
            if issuers.contains(&crl.0.issuer_raw) {
                if let Some(next) = crl.0.next_update {
                    valid_until = valid_until.min(next);
                }
            }
        }
        let identity = SignerIdentity {
            organisation_number: organisation_number(&cert),
            subject,
            fingerprint_sha256,
        };
        Ok(CheckedSigner {
            identity,
            rsa_public_key,
            pkcs1_keys: Default::default(),
            valid_from,
            valid_until,
        })
    }

    fn map_webpki_error(
        &self,
        e: webpki::Error,
        cert: &X509Certificate<'_>,
        subject: &str,
        now: Timestamp,
    ) -> VerifyError {
        let subject = subject.to_owned();
        match e {
            webpki::Error::CertRevoked => VerifyError::Revoked {
                subject,
                serial: cert.raw_serial_as_string(),
            },
            webpki::Error::UnknownIssuer => VerifyError::Untrusted {
                subject,
                issuer: cert.issuer().to_string(),
            },
            webpki::Error::UnknownRevocationStatus => VerifyError::RevocationMissing { subject },
            webpki::Error::CrlExpired { next_update, .. } => {
                let next =
                    Timestamp::from_unix_timestamp(next_update.as_secs() as i64).unwrap_or(now);
                let issuer = self
                    .crls
                    .iter()
                    .find(|c| {
                        c.0.next_update.map(|t| t.unix_timestamp()) == Some(next.unix_timestamp())
                    })
                    .map(|c| c.0.issuer.clone())
                    .unwrap_or_else(|| "(unknown issuer)".into());
                VerifyError::RevocationStale {
                    issuer,
                    next_update: next,
                    checked_at: now,
                }
            }
            e @ (webpki::Error::InvalidCrlSignatureForPublicKey
            | webpki::Error::IssuerNotCrlSigner
            | webpki::Error::UnsupportedCrlSignatureAlgorithmContext(_)
            | webpki::Error::UnsupportedCrlSignatureAlgorithmForPublicKeyContext(_)
            | webpki::Error::UnsupportedCrlVersion
            | webpki::Error::UnsupportedDeltaCrl
            | webpki::Error::UnsupportedIndirectCrl
            | webpki::Error::UnsupportedCrlIssuingDistributionPoint
            | webpki::Error::UnsupportedRevocationReasonsPartitioning) => {
                VerifyError::RevocationUnusable {
                    subject,
                    problem: format!("{e:?}"),
                }
            }
            webpki::Error::CertExpired { not_after, .. } => VerifyError::ChainInvalid {
                subject,
                problem: format!(
                    "an intermediate certificate expired at {} (checked at {})",
                    unix_text(not_after),
                    rfc3339(&now)
                ),
            },
            webpki::Error::CertNotValidYet { not_before, .. } => VerifyError::ChainInvalid {
                subject,
                problem: format!(
                    "an intermediate certificate is not valid before {} (checked at {})",
                    unix_text(not_before),
                    rfc3339(&now)
                ),
            },
            other => VerifyError::ChainInvalid {
                subject,
                problem: format!("{other:?}"),
            },
        }
    }
}
