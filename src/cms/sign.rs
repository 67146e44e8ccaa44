//! The gateway's own signing: content → DER CMS SignedData (RFC 5652 §5), attached content,
//! signed attributes contentType, signingTime and messageDigest, RSA PKCS#1 v1.5 with SHA-256,
//! signer identified by issuer and serial number, the signer certificate included.
//!
//! Input: a PKCS#8 RSA key and its certificate (PEM), content bytes and `now`.
//! Failure: [`SignError`] (unreadable files, key not matching the certificate).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivatePkcs8KeyDer;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::der::{self, constructed, set_of, tlv};
use super::error::SignError;
use super::signed_data::oid;
use crate::ids::Timestamp;

/// Signs envelopes with one key and certificate.
pub struct Signer {
    key: aws_lc_rs::signature::RsaKeyPair,
    cert: Vec<u8>,
    issuer: Vec<u8>,
    serial: Vec<u8>,
    rng: aws_lc_rs::rand::SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field(
                "certificate_sha256",
                &super::trust::fingerprint_of(&self.cert),
            )
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, SignError> {
    std::fs::read(path).map_err(|source| SignError::Io {
        path: path.to_owned(),
        source,
    })
}

impl Signer {
    /// Loads a PKCS#8 RSA private key (PEM `PRIVATE KEY`, 2048–4096 bits) and its certificate (PEM
    /// or DER); fails if the key does not belong to the certificate.
    pub fn from_pem_files(key: &Path, cert: &Path) -> Result<Signer, SignError> {
        let key_bytes = read(key)?;
        let cert_bytes = read(cert)?;
        let pkcs8 =
            PrivatePkcs8KeyDer::from_pem_slice(&key_bytes).map_err(|e| SignError::Unreadable {
                path: key.to_owned(),
                problem: format!("not a PEM PKCS#8 PRIVATE KEY: {e}"),
            })?;
        let key_pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8.secret_pkcs8_der())
            .map_err(|e| SignError::Unreadable {
                path: key.to_owned(),
                problem: format!("not a usable RSA key: {e}"),
            })?;
        let certs = super::trust::certificates_in(&cert_bytes).map_err(|problem| {
            SignError::Unreadable {
                path: cert.to_owned(),
                problem,
            }
        })?;
        let cert_der = certs[0].as_ref().to_vec();
        let signer = Signer::new(key_pair, cert_der).map_err(|problem| SignError::Unreadable {
            path: cert.to_owned(),
            problem,
        })?;
        let (_, parsed) =
            X509Certificate::from_der(&signer.cert).map_err(|e| SignError::Unreadable {
                path: cert.to_owned(),
                problem: e.to_string(),
            })?;
        use aws_lc_rs::signature::KeyPair;
        if parsed
            .tbs_certificate
            .subject_pki
            .subject_public_key
            .data
            .as_ref()
            != signer.key.public_key().as_ref()
        {
            return Err(SignError::KeyCertMismatch {
                key: key.to_owned(),
                cert: cert.to_owned(),
            });
        }
        Ok(signer)
    }

    fn new(key: aws_lc_rs::signature::RsaKeyPair, cert: Vec<u8>) -> Result<Signer, String> {
        let (_, parsed) = X509Certificate::from_der(&cert)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let issuer = parsed.tbs_certificate.issuer.as_raw().to_vec();
        let serial = parsed.tbs_certificate.raw_serial().to_vec();
        Ok(Signer {
            key,
            cert,
            issuer,
            serial,
            rng: aws_lc_rs::rand::SystemRandom::new(),
        })
    }

    /// The signer certificate's DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.cert
    }

    /// Signs `content` at time `now` (the signingTime attribute) into a DER ContentInfo.
    pub fn sign(&self, content: &[u8], now: Timestamp) -> Result<Vec<u8>, SignError> {
        let sha256 = constructed(der::SEQUENCE, &[&tlv(der::OID, oid::SHA256)]);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, content);
        let attribute = |attr_oid: &[u8], value: Vec<u8>| {
            constructed(
                der::SEQUENCE,
                &[&tlv(der::OID, attr_oid), &tlv(der::SET, &value)],
            )
        };
        let attrs = set_of(vec![
            attribute(oid::CONTENT_TYPE, tlv(der::OID, oid::DATA)),
            attribute(oid::SIGNING_TIME, encode_time(now)),
            attribute(oid::MESSAGE_DIGEST, tlv(der::OCTET_STRING, digest.as_ref())),
        ]);
        // RFC 5652 §5.4: the signature is over the SET OF encoding; the SignerInfo carries it as [0].
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                &attrs,
                &mut signature,
            )
            .map_err(|_| SignError::Crypto)?;
        let mut implicit_attrs = attrs;
        implicit_attrs[0] = der::context(0);

        let signer_info = constructed(
            der::SEQUENCE,
            &[
                &tlv(der::INTEGER, &[1]),
                &constructed(
                    der::SEQUENCE,
                    &[&self.issuer, &tlv(der::INTEGER, &self.serial)],
                ),
                &sha256,
                &implicit_attrs,
                &constructed(
                    der::SEQUENCE,
                    &[&tlv(der::OID, oid::SHA256_WITH_RSA), &tlv(der::NULL, &[])],
                ),
                &tlv(der::OCTET_STRING, &signature),
            ],
        );
        let signed_data = constructed(
            der::SEQUENCE,
            &[
                &tlv(der::INTEGER, &[1]),
                &tlv(der::SET, &sha256),
                &constructed(
                    der::SEQUENCE,
                    &[
                        &tlv(der::OID, oid::DATA),
                        &constructed(der::context(0), &[&tlv(der::OCTET_STRING, content)]),
                    ],
                ),
                &tlv(der::context(0), &self.cert),
                &tlv(der::SET, &signer_info),
            ],
        );
        Ok(constructed(
            der::SEQUENCE,
            &[
                &tlv(der::OID, oid::SIGNED_DATA),
                &tlv(der::context(0), &signed_data),
            ],
        ))
    }
}

/// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5652 §11.3).
fn encode_time(t: Timestamp) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let rest = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&t.year()) {
        tlv(
            der::UTC_TIME,
            format!("{:02}{rest}", t.year() % 100).as_bytes(),
        )
    } else {
        tlv(
            der::GENERALIZED_TIME,
            format!("{:04}{rest}", t.year()).as_bytes(),
        )
    }
}
