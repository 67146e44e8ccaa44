//! Loading and checking everything a gateway is configured with — configuration and register
//! (every problem at once), the installed schemas against `xsd/MANIFEST.toml` (and that they
//! compile), the trust store, every party's signing and encryption certificates and the gateway's
//! own signing identity and encryption keys (key matches certificate, keyEncipherment, valid now). `check-config` prints what this finds; `serve` refuses to start on any of it.
//!
//! Input: the path of `gateway.toml`. Output: [`Loaded`], the checked parts, or every problem as a
//! line an operator can act on (file, key, what is wrong, what to do).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::certs::{InUse, Role};
use crate::cms::{self, EncryptionCertificate, HubKeys, RecipientCert, Signer, TrustStore};
use crate::config::{self, GatewayConfig};
use crate::ids::HerId;
use crate::register::Register;
use crate::xsd::Schemas;

/// Everything the configuration names, loaded and checked.
pub struct Loaded {
    pub config: GatewayConfig,
    pub register: Register,
    pub schemas: Schemas,
    /// `None` only when unsigned traffic is allowed and no trust store could be loaded.
    pub trust: Option<TrustStore>,
    /// SHA-256 fingerprints of the signing certificates each party may use.
    pub fingerprints: HashMap<HerId, HashSet<String>>,
    pub signer: Signer,
    /// The gateway's decryption keys (`[gateway] encryption_keys`; empty when none are configured).
    pub hub_keys: HubKeys,
    /// Each party's encryption certificate (the register's `encryption_certificate`).
    pub recipient_certs: HashMap<HerId, Arc<RecipientCert>>,
    /// Every certificate the hub depends on, with its expiry (`certs`).
    pub certificates: Vec<InUse>,
}

/// Loads the configuration and everything it names; returns every problem found.
pub fn load(config_path: &Path) -> Result<Loaded, Vec<String>> {
    let (config, register) = config::check(config_path)
        .map_err(|ps| ps.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
    let mut problems = Vec::new();
    if let Err(ps) = crate::schemas::verify_installed(&config.paths.schemas) {
        let hint = format!(
            "install them: helsemelding install-schemas --from ../shared/standards/xsd --to {}",
            config.paths.schemas.display()
        );
        let missing = ps
            .iter()
            .filter(|p| matches!(p, crate::schemas::ManifestProblem::Missing { .. }))
            .count();
        if missing > 3 {
            // A fresh checkout: one line, not one per file.
            problems.push(format!(
                "{missing} of the schema files in xsd/MANIFEST.toml are missing in {} ({hint})",
                config.paths.schemas.display()
            ));
            problems.extend(
                ps.iter()
                    .filter(|p| !matches!(p, crate::schemas::ManifestProblem::Missing { .. }))
                    .map(|p| p.to_string()),
            );
        } else {
            problems.extend(ps.iter().map(|p| format!("{p} ({hint})")));
        }
    }
    let schemas = if problems.is_empty() {
        match Schemas::load(&config.paths.schemas) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("schemas: {e}"));
                None
            }
        }
    } else {
        None
    };
    // The last good CRLs fetched from distribution points (`revocation`) count as well: a restart
    // without network starts with them.
    let copies = crate::revocation::copies_dir(&config.paths.state);
    let trust = match TrustStore::load_with_copies(&config.paths.trust_dir, Some(&copies)) {
        Ok(t) => Some(t),
        Err(e) if config.policy.require_signature => {
            problems.push(format!("trust store: {e}"));
            None
        }
        Err(_) => None,
    };
    let mut fingerprints: HashMap<HerId, HashSet<String>> = HashMap::new();
    let mut certificates = Vec::new();
    for party in register.parties() {
        for cert in &party.certificates {
            let path = resolve(&config.base_dir, cert);
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    let f = cms::certificate_fingerprint(&b).map_err(|e| e.to_string())?;
                    let c = InUse::read(Role::PartySigning(party.her_id), &path, &b)?;
                    Ok((f, c))
                }) {
                Ok((f, c)) => {
                    fingerprints.entry(party.her_id).or_default().insert(f);
                    certificates.push(c);
                }
                Err(e) => problems.push(format!(
                    "party {}: certificate {}: {e}",
                    party.her_id,
                    path.display()
                )),
            }
        }
    }
    // An unreadable certificate is reported by the signer below.
    if let Ok(c) = std::fs::read(&config.gateway.signing_cert)
        .map_err(|e| e.to_string())
        .and_then(|b| InUse::read(Role::GatewaySigning, &config.gateway.signing_cert, &b))
    {
        certificates.push(c);
    }
    let signer =
        match Signer::from_pem_files(&config.gateway.signing_key, &config.gateway.signing_cert) {
            Ok(s) => Some(s),
            Err(e) => {
                problems.push(format!("gateway signing identity: {e}"));
                None
            }
        };
    // Encryption (DESIGN §1): the hub's keys must match their certificates; every certificate used
    // for encryption must allow keyEncipherment and be valid now (an expired one is refused here,
    // one that expires soon is a warning of check-config and `serve`).
    let now = time::OffsetDateTime::now_utc();
    let pairs: Vec<(&Path, &Path)> = config
        .gateway
        .encryption_keys
        .iter()
        .map(|k| (k.key.as_path(), k.cert.as_path()))
        .collect();
    let hub_keys = match HubKeys::load(&pairs) {
        Ok(keys) => {
            for (c, files) in keys.certificates().zip(&config.gateway.encryption_keys) {
                if let Some(p) = c.problem_at(now) {
                    problems.push(format!(
                        "gateway encryption key {}: {p}",
                        files.cert.display()
                    ));
                }
                if let Ok(u) = InUse::read(Role::GatewayEncryption, &files.cert, &c.der) {
                    certificates.push(u);
                }
            }
            Some(keys)
        }
        Err(e) => {
            problems.push(format!("gateway encryption key: {e}"));
            None
        }
    };
    let mut recipient_certs = HashMap::new();
    for party in register.parties() {
        let Some(path) = &party.encryption_certificate else {
            continue;
        };
        let path = resolve(&config.base_dir, path);
        match EncryptionCertificate::from_file(&path).and_then(|c| RecipientCert::new(&path, c)) {
            Ok(rc) => {
                if let Some(p) = rc.certificate.problem_at(now) {
                    problems.push(format!(
                        "party {}: encryption certificate {}: {p}",
                        party.her_id,
                        path.display()
                    ));
                }
                if let Ok(u) = InUse::read(
                    Role::PartyEncryption(party.her_id),
                    &path,
                    &rc.certificate.der,
                ) {
                    certificates.push(u);
                }
                recipient_certs.insert(party.her_id, Arc::new(rc));
            }
            Err(e) => problems.push(format!(
                "party {}: encryption certificate: {e}",
                party.her_id
            )),
        }
    }
    let mut trust = trust;
    if let Some(t) = trust.as_mut() {
        // Party certificates name where their CA publishes its CRL.
        let ders: Vec<Vec<u8>> = certificates
            .iter()
            .filter_map(|c: &InUse| std::fs::read(&c.path).ok())
            .filter_map(|b| cms::certificates_in(&b).ok())
            .flatten()
            .map(|c| c.to_vec())
            .collect();
        t.note_issued(ders.iter().map(Vec::as_slice));
    }
    match (schemas, signer, hub_keys) {
        (Some(schemas), Some(signer), Some(hub_keys)) if problems.is_empty() => Ok(Loaded {
            config,
            register,
            schemas,
            trust,
            fingerprints,
            signer,
            hub_keys,
            recipient_certs,
            certificates,
        }),
        _ => Err(problems),
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
