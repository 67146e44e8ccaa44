//! The broker's TLS material for a test cluster: a CA made for the run, a server certificate it
//! signs for `localhost` and `127.0.0.1` (what the gateway's `amqps://` URL names), and a second,
//! unrelated CA — the "wrong CA" a gateway must refuse the broker with.
//!
//! Input: a directory. Output: [`BrokerPki`] with the paths of the PEM files written there.
//! Failure: [`std::io::Error`] naming the file, or an `rcgen` error as `InvalidData`. ECDSA P-256
//! keys: generated in microseconds, and accepted by both Erlang's TLS and rustls.

use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The PEM files of a test broker's TLS.
#[derive(Debug, Clone)]
pub struct BrokerPki {
    /// The CA that signs the broker's certificate (what `tls_ca_file` must name).
    pub ca: PathBuf,
    /// The broker's certificate (SAN `localhost`, `127.0.0.1`).
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// A CA that signed nothing of the broker's.
    pub wrong_ca: PathBuf,
}

fn rcgen_error(what: &str, e: rcgen::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"))
}

fn ca(cn: &str) -> io::Result<(CertificateParams, KeyPair, String)> {
    let key = KeyPair::generate().map_err(|e| rcgen_error("CA key", e))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Helsemelding lab");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let pem = p
        .self_signed(&key)
        .map_err(|e| rcgen_error("CA certificate", e))?
        .pem();
    Ok((p, key, pem))
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    std::fs::write(path, text)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

impl BrokerPki {
    /// Makes the CA, the server certificate and the wrong CA under `dir`.
    pub fn generate(dir: &Path) -> io::Result<BrokerPki> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let (ca_params, ca_key, ca_pem) = ca("Helsemelding lab broker CA")?;
        let (_, _, wrong_pem) = ca("Helsemelding lab unrelated CA")?;
        let key = KeyPair::generate().map_err(|e| rcgen_error("server key", e))?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "localhost");
        p.distinguished_name = dn;
        p.subject_alt_names = vec![
            SanType::DnsName(
                "localhost"
                    .try_into()
                    .map_err(|e| rcgen_error("SAN localhost", e))?,
            ),
            SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        ];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let cert = p
            .signed_by(&key, &issuer)
            .map_err(|e| rcgen_error("server certificate", e))?;
        let pki = BrokerPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            wrong_ca: dir.join("wrong-ca.pem"),
        };
        write(&pki.ca, &ca_pem)?;
        write(&pki.server_cert, &cert.pem())?;
        write(&pki.server_key, &key.serialize_pem())?;
        write(&pki.wrong_ca, &wrong_pem)?;
        Ok(pki)
    }
}
