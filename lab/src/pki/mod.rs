//! The test PKI generator behind `helsemelding-lab dev-pki` ([`cli`]): a root CA, an intermediate, one good
//! RSA-3072 signing certificate (with its PKCS#8 key) per test party named by HER-id, the gateway's
//! own, and the bad ones each verification error needs, written in the trust-directory layout.
//!
//! Output (under `out`):
//!
//! ```text
//! anchors/helsemelding-test-root-ca.pem
//! intermediates/helsemelding-test-intermediate-ca.pem
//! crls/helsemelding-test-root-ca.crl            PEM, empty, current
//! crls/helsemelding-test-intermediate-ca.crl    DER, lists bad/revoked, current
//! parties/<her>-sign.pem|.key                   good signers (parties and the gateway)
//! legacy/seid1-rsa2048-sign.pem|.key            good, SEID 1 style: RSA-2048, orgnr in serialNumber
//! bad/expired-sign.pem|.key                     valid 2015–2019
//! bad/not-yet-valid-sign.pem|.key               valid 2090–2099
//! bad/revoked-sign.pem|.key                     listed in the intermediate's CRL
//! bad/encryption-only-sign.pem|.key             keyUsage keyEncipherment only
//! bad/untrusted-sign.pem|.key                   issued by untrusted/untrusted-root-ca.pem
//! bad/weak-rsa1024-sign.pem|.key                RSA-1024 (below the 2048-bit floor)
//! untrusted/untrusted-root-ca.pem               a CA that is not an anchor
//! variants/stale-crl/{anchors,intermediates,crls}    same CAs, intermediate CRL stale since 2024-02-01
//! variants/missing-crl/{anchors,intermediates,crls}  same CAs, no CRL for the intermediate
//! encryption/…                                   encryption certificates, see [`generate_encryption`]
//! ```
//!
//! Good certificates are valid 2024-01-01 to 2099-12-31 and the CRLs' `nextUpdate` is
//! 2099-12-31, so nothing rots; tests inject `now` to reach expiry. Names and organisation numbers
//! are synthetic (999999xxx). RSA keys come from the RustCrypto `rsa` crate (ring cannot generate
//! RSA keys); rcgen writes the certificates and CRLs, signing through ring. CA keys are not
//! written: to change the PKI, regenerate all of it.
//!
//! [`crl`] is the other half: a CA made on the spot whose certificates name a local HTTP server as
//! their CRL distribution point, and that server (the soak and the CRL-refresh tests).

pub mod cli;
pub mod crl;

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams, SerialNumber,
    SubjectPublicKeyInfo,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use time::macros::datetime;
use time::OffsetDateTime;

/// What to generate.
#[derive(Debug, Clone)]
pub struct DevPkiOptions {
    pub out: PathBuf,
    /// HER-ids of the test parties that get a good signing certificate.
    pub parties: Vec<u32>,
    /// The gateway's own HER-id (it gets a good signing certificate too).
    pub gateway_her: u32,
}

/// The generator failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot write {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating {what}: {problem}")]
    Generate { what: String, problem: String },
}

fn gen_err(what: &str) -> impl Fn(String) -> PkiError + '_ {
    move |problem| PkiError::Generate {
        what: what.to_owned(),
        problem,
    }
}

/// Serial of the revoked certificate (listed in the intermediate's CRL).
const REVOKED_SERIAL: u64 = 0x203;
const GOOD_FROM: OffsetDateTime = datetime!(2024-01-01 00:00 UTC);
const GOOD_UNTIL: OffsetDateTime = datetime!(2099-12-31 23:59:59 UTC);

struct Key {
    signing: KeyPair,
    pkcs8_pem: String,
}

/// An RSA key of `bits`; ring signs with it where it can (2048+), rcgen only needs its public half
/// otherwise.
fn rsa_key(bits: usize, what: &str) -> Result<(rsa::RsaPrivateKey, String), PkiError> {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits)
        .map_err(|e| gen_err(what)(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| gen_err(what)(e.to_string()))?
        .to_string();
    Ok((key, pem))
}

fn signing_key(bits: usize, what: &str) -> Result<Key, PkiError> {
    let (key, pkcs8_pem) = rsa_key(bits, what)?;
    let der = key
        .to_pkcs8_der()
        .map_err(|e| gen_err(what)(e.to_string()))?;
    let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
    let signing = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| gen_err(what)(e.to_string()))?;
    Ok(Key { signing, pkcs8_pem })
}

fn name(
    cn: &str,
    org: &str,
    organisation_identifier: Option<&str>,
    seid1_serial: Option<&str>,
) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "NO");
    dn.push(DnType::OrganizationName, org);
    if let Some(id) = organisation_identifier {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 97]), id);
    }
    if let Some(serial) = seid1_serial {
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, serial: u64, path_len: Option<u8>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name(cn, "Helsemelding Test PKI", Some("NTRNO-999999998"), None);
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = datetime!(2020-01-01 00:00 UTC);
    p.not_after = datetime!(2100-12-31 23:59:59 UTC);
    p.is_ca = IsCa::Ca(path_len.map_or(
        BasicConstraints::Unconstrained,
        BasicConstraints::Constrained,
    ));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

struct Leaf<'a> {
    cn: &'a str,
    org: &'a str,
    orgnr: &'a str,
    seid1: bool,
    serial: u64,
    from: OffsetDateTime,
    until: OffsetDateTime,
    usages: Vec<KeyUsagePurpose>,
}

fn leaf_params(l: &Leaf<'_>) -> CertificateParams {
    let mut p = CertificateParams::default();
    let org_id = format!("NTRNO-{}", l.orgnr);
    p.distinguished_name = if l.seid1 {
        name(l.cn, l.org, None, Some(l.orgnr))
    } else {
        name(l.cn, l.org, Some(&org_id), None)
    };
    p.serial_number = Some(SerialNumber::from(l.serial));
    p.not_before = l.from;
    p.not_after = l.until;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = l.usages.clone();
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::Sha256;
    p
}

struct Writer {
    root: PathBuf,
    written: Vec<PathBuf>,
}

impl Writer {
    fn write(&mut self, rel: &str, bytes: &[u8]) -> Result<(), PkiError> {
        let path = self.root.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| PkiError::Io {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, bytes).map_err(|source| PkiError::Io {
            path: path.clone(),
            source,
        })?;
        self.written.push(path);
        Ok(())
    }
}

fn crl(
    issuer: &Issuer<'_, &KeyPair>,
    revoked: &[u64],
    next_update: OffsetDateTime,
    what: &str,
) -> Result<rcgen::CertificateRevocationList, PkiError> {
    CertificateRevocationListParams {
        this_update: datetime!(2024-01-01 00:00 UTC),
        next_update,
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: revoked
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(*s),
                revocation_time: datetime!(2024-06-01 00:00 UTC),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .map_err(|e| gen_err(what)(e.to_string()))
}

/// Generates the whole test PKI under `opts.out`; returns the files written.
pub fn generate(opts: &DevPkiOptions) -> Result<Vec<PathBuf>, PkiError> {
    let mut w = Writer {
        root: opts.out.clone(),
        written: Vec::new(),
    };
    let e = |what: &'static str| {
        move |err: rcgen::Error| PkiError::Generate {
            what: what.into(),
            problem: err.to_string(),
        }
    };

    let root_key = signing_key(3072, "root CA key")?;
    let root_params = ca_params("Helsemelding Test Root CA", 1, None);
    let root_cert = root_params
        .self_signed(&root_key.signing)
        .map_err(e("root CA"))?;
    let root = Issuer::from_params(&root_params, &root_key.signing);

    let inter_key = signing_key(3072, "intermediate CA key")?;
    let inter_params = ca_params("Helsemelding Test Intermediate CA", 2, Some(0));
    let inter_cert = inter_params
        .signed_by(&inter_key.signing, &root)
        .map_err(e("intermediate CA"))?;
    let inter = Issuer::from_params(&inter_params, &inter_key.signing);

    let untrusted_key = signing_key(3072, "untrusted CA key")?;
    let untrusted_params = ca_params("Helsemelding Untrusted Test CA", 3, None);
    let untrusted_cert = untrusted_params
        .self_signed(&untrusted_key.signing)
        .map_err(e("untrusted CA"))?;
    let untrusted = Issuer::from_params(&untrusted_params, &untrusted_key.signing);

    let root_crl = crl(&root, &[], GOOD_UNTIL, "root CRL")?;
    let inter_crl = crl(&inter, &[REVOKED_SERIAL], GOOD_UNTIL, "intermediate CRL")?;
    let stale_crl = crl(
        &inter,
        &[REVOKED_SERIAL],
        datetime!(2024-02-01 00:00 UTC),
        "stale intermediate CRL",
    )?;

    let root_pem = root_cert.pem();
    let inter_pem = inter_cert.pem();
    let root_crl_pem = root_crl.pem().map_err(e("root CRL PEM"))?;
    for prefix in ["", "variants/stale-crl/", "variants/missing-crl/"] {
        w.write(
            &format!("{prefix}anchors/helsemelding-test-root-ca.pem"),
            root_pem.as_bytes(),
        )?;
        w.write(
            &format!("{prefix}intermediates/helsemelding-test-intermediate-ca.pem"),
            inter_pem.as_bytes(),
        )?;
        w.write(
            &format!("{prefix}crls/helsemelding-test-root-ca.crl"),
            root_crl_pem.as_bytes(),
        )?;
    }
    w.write(
        "crls/helsemelding-test-intermediate-ca.crl",
        inter_crl.der(),
    )?;
    w.write(
        "variants/stale-crl/crls/helsemelding-test-intermediate-ca.crl",
        stale_crl.der(),
    )?;
    w.write(
        "untrusted/untrusted-root-ca.pem",
        untrusted_cert.pem().as_bytes(),
    )?;

    const SIGN: &[KeyUsagePurpose] = &[KeyUsagePurpose::ContentCommitment];
    const PARTY_NAMES: [&str; 4] = [
        "Testlegekontoret AS",
        "Testsykehjemmet KF",
        "Testsykehuset HF",
        "Testhjemmetjenesten KF",
    ];

    let issue = |w: &mut Writer,
                 rel: &str,
                 leaf: Leaf<'_>,
                 issuer: &Issuer<'_, &KeyPair>,
                 bits: usize|
     -> Result<(), PkiError> {
        let key = signing_key(bits, rel)?;
        let cert = leaf_params(&leaf)
            .signed_by(&key.signing, issuer)
            .map_err(|err| gen_err(rel)(err.to_string()))?;
        w.write(&format!("{rel}.pem"), cert.pem().as_bytes())?;
        w.write(&format!("{rel}.key"), key.pkcs8_pem.as_bytes())
    };

    for (i, her) in opts.parties.iter().enumerate() {
        let org = PARTY_NAMES[i % PARTY_NAMES.len()];
        let orgnr = format!("{}", 999_999_990 - i as u64 % 900);
        let cn = format!("{org} (HER {her})");
        let leaf = Leaf {
            cn: &cn,
            org,
            orgnr: &orgnr,
            seid1: false,
            serial: 0x100 + i as u64,
            from: GOOD_FROM,
            until: GOOD_UNTIL,
            usages: SIGN.to_vec(),
        };
        issue(&mut w, &format!("parties/{her}-sign"), leaf, &inter, 3072)?;
    }
    let gw_cn = format!("Helsemelding Testgateway (HER {})", opts.gateway_her);
    let gw = Leaf {
        cn: &gw_cn,
        org: "Helsemelding Testgateway AS",
        orgnr: "999999000",
        seid1: false,
        serial: 0x1FF,
        from: GOOD_FROM,
        until: GOOD_UNTIL,
        usages: SIGN.to_vec(),
    };
    issue(
        &mut w,
        &format!("parties/{}-sign", opts.gateway_her),
        gw,
        &inter,
        3072,
    )?;

    let bad = |cn: &'static str, serial: u64| Leaf {
        cn,
        org: "Testlegekontoret AS",
        orgnr: "999999901",
        seid1: false,
        serial,
        from: GOOD_FROM,
        until: GOOD_UNTIL,
        usages: SIGN.to_vec(),
    };
    issue(
        &mut w,
        "legacy/seid1-rsa2048-sign",
        Leaf {
            seid1: true,
            usages: vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::ContentCommitment,
            ],
            ..bad("Testlegekontoret AS SEID1", 0x207)
        },
        &inter,
        2048,
    )?;
    issue(
        &mut w,
        "bad/expired-sign",
        Leaf {
            from: datetime!(2015-01-01 00:00 UTC),
            until: datetime!(2019-12-31 23:59:59 UTC),
            ..bad("Expired Testlegekontoret AS", 0x201)
        },
        &inter,
        3072,
    )?;
    issue(
        &mut w,
        "bad/not-yet-valid-sign",
        Leaf {
            from: datetime!(2090-01-01 00:00 UTC),
            ..bad("Future Testlegekontoret AS", 0x202)
        },
        &inter,
        3072,
    )?;
    issue(
        &mut w,
        "bad/revoked-sign",
        bad("Revoked Testlegekontoret AS", REVOKED_SERIAL),
        &inter,
        3072,
    )?;
    issue(
        &mut w,
        "bad/encryption-only-sign",
        Leaf {
            usages: vec![KeyUsagePurpose::KeyEncipherment],
            ..bad("Encryption Testlegekontoret AS", 0x204)
        },
        &inter,
        3072,
    )?;
    issue(
        &mut w,
        "bad/untrusted-sign",
        bad("Untrusted Testlegekontoret AS", 0x205),
        &untrusted,
        3072,
    )?;

    // ring refuses RSA keys below 2048 bits, so the weak certificate is issued for a public key only;
    // its PKCS#8 key is for openssl, which still signs with RSA-1024.
    let (weak, weak_pem) = rsa_key(1024, "weak key")?;
    let spki_der = weak
        .to_public_key()
        .to_public_key_der()
        .map_err(|err| gen_err("weak key")(err.to_string()))?;
    let spki = SubjectPublicKeyInfo::from_der(spki_der.as_bytes()).map_err(e("weak key SPKI"))?;
    let weak_cert = leaf_params(&bad("Weak Testlegekontoret AS", 0x206))
        .signed_by(&spki, &inter)
        .map_err(e("weak certificate"))?;
    w.write("bad/weak-rsa1024-sign.pem", weak_cert.pem().as_bytes())?;
    w.write("bad/weak-rsa1024-sign.key", weak_pem.as_bytes())?;

    let mut written = w.written;
    written.extend(generate_encryption(opts)?);
    Ok(written)
}

/// The encryption certificates (keyUsage keyEncipherment) and their PKCS#8 keys, under
/// `opts.out/encryption/` (`helsemelding-lab dev-pki --encryption-only` writes just these):
///
/// ```text
/// encryption/helsemelding-test-encryption-ca.pem  their CA (its key is not kept)
/// encryption/<her>-enc.pem|.key                   one per party and the gateway
/// encryption/<gateway>-enc-previous.pem|.key      the gateway's previous key (rotation)
/// encryption/bad/sign-only-enc.pem|.key           keyUsage nonRepudiation only (not for encryption)
/// encryption/bad/expired-enc.pem|.key             valid 2015–2019
/// ```
///
/// They have a CA of their own so that they can be added to an existing PKI without touching its
/// signing certificates (the gateway does not chain-validate encryption certificates: the register
/// names them; check-config checks usage, validity and that a key matches its certificate).
pub fn generate_encryption(opts: &DevPkiOptions) -> Result<Vec<PathBuf>, PkiError> {
    let mut w = Writer {
        root: opts.out.join("encryption"),
        written: Vec::new(),
    };
    let ca_key = signing_key(3072, "encryption CA key")?;
    let ca_params = ca_params("Helsemelding Test Encryption CA", 0x50, Some(0));
    let ca_cert = ca_params
        .self_signed(&ca_key.signing)
        .map_err(|e| gen_err("encryption CA")(e.to_string()))?;
    let ca = Issuer::from_params(&ca_params, &ca_key.signing);
    w.write(
        "helsemelding-test-encryption-ca.pem",
        ca_cert.pem().as_bytes(),
    )?;
    const ENCRYPT: &[KeyUsagePurpose] = &[KeyUsagePurpose::KeyEncipherment];
    let mut issue = |rel: &str,
                     cn: &str,
                     serial: u64,
                     usages: &[KeyUsagePurpose],
                     until: OffsetDateTime|
     -> Result<(), PkiError> {
        let key = signing_key(2048, rel)?;
        let leaf = Leaf {
            cn,
            org: "Helsemelding Test PKI",
            orgnr: "999999997",
            seid1: false,
            serial,
            from: if until == GOOD_UNTIL {
                GOOD_FROM
            } else {
                datetime!(2015-01-01 00:00 UTC)
            },
            until,
            usages: usages.to_vec(),
        };
        let cert = leaf_params(&leaf)
            .signed_by(&key.signing, &ca)
            .map_err(|err| gen_err(rel)(err.to_string()))?;
        w.write(&format!("{rel}.pem"), cert.pem().as_bytes())?;
        w.write(&format!("{rel}.key"), key.pkcs8_pem.as_bytes())
    };
    let mut hers = opts.parties.clone();
    hers.push(opts.gateway_her);
    for (i, her) in hers.iter().enumerate() {
        let cn = format!("Encryption (HER {her})");
        issue(
            &format!("{her}-enc"),
            &cn,
            0x500 + i as u64,
            ENCRYPT,
            GOOD_UNTIL,
        )?;
    }
    let gw = opts.gateway_her;
    issue(
        &format!("{gw}-enc-previous"),
        &format!("Previous encryption (HER {gw})"),
        0x5FF,
        ENCRYPT,
        GOOD_UNTIL,
    )?;
    issue(
        "bad/sign-only-enc",
        "Signing only, not for encryption",
        0x601,
        &[KeyUsagePurpose::ContentCommitment],
        GOOD_UNTIL,
    )?;
    issue(
        "bad/expired-enc",
        "Expired encryption",
        0x602,
        ENCRYPT,
        datetime!(2019-12-31 23:59:59 UTC),
    )?;
    Ok(w.written)
}
