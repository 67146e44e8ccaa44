//! A certificate authority that publishes its CRL over HTTP, for the CRL-refresh tests of the main
//! crate (`tests/crl_refresh.rs`, which compiles this file in by path) and `helsemelding-lab soak`:
//! an ECDSA P-256 CA (instant to make) issuing RSA-2048 signing certificates whose CRL distribution
//! point is the caller's own [`CrlServer`] on 127.0.0.1, and CRLs listing whatever is revoked.
//!
//! Test and lab tooling only: a CA or CRL that rcgen cannot make, or a certificate file that cannot
//! be written, panics with what failed. Nothing here may name the lab crate (`crate::`): the main
//! crate's tests compile it as one of their own modules.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

/// The CA's common name; its subject as x509-parser prints it is [`CA_NAME`].
pub const CA_CN: &str = "Helsemelding CRL Test CA";
pub const CA_NAME: &str = "C=NO, O=Helsemelding Test PKI, CN=Helsemelding CRL Test CA";

pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    pub cert_pem: String,
    pub url: String,
    number: AtomicU64,
}

impl TestCa {
    /// A CA whose certificates name `url` as their CRL distribution point.
    pub fn new(url: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "NO");
        dn.push(DnType::OrganizationName, "Helsemelding Test PKI");
        dn.push(DnType::CommonName, CA_CN);
        p.distinguished_name = dn;
        p.serial_number = Some(SerialNumber::from(1u64));
        p.not_before = time::macros::datetime!(2020-01-01 00:00 UTC);
        p.not_after = time::macros::datetime!(2100-01-01 00:00 UTC);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.self_signed(&key).expect("CA certificate");
        TestCa {
            cert_pem: cert.pem(),
            key,
            params: p,
            url: url.to_owned(),
            number: AtomicU64::new(0),
        }
    }

    /// Issues a signing certificate with serial `serial` for `cn`; writes `<stem>.pem` and
    /// `<stem>.key` and returns `stem` (what the harness signs with).
    pub fn issue(&self, dir: &Path, name: &str, cn: &str, serial: u64) -> PathBuf {
        use aws_lc_rs::encoding::AsDer;
        let rsa =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
        let der = rsa.as_der().expect("PKCS#8");
        let pkcs8 = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_ref().to_vec());
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256)
            .expect("key pair");
        let pem = key.serialize_pem();
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "NO");
        dn.push(DnType::OrganizationName, "Testlegekontoret AS");
        dn.push(DnType::CustomDnType(vec![2, 5, 4, 97]), "NTRNO-999999901");
        dn.push(DnType::CommonName, cn);
        p.distinguished_name = dn;
        p.serial_number = Some(SerialNumber::from(serial));
        p.not_before = time::macros::datetime!(2024-01-01 00:00 UTC);
        p.not_after = time::macros::datetime!(2099-12-31 23:59:59 UTC);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::ContentCommitment];
        p.use_authority_key_identifier_extension = true;
        p.key_identifier_method = KeyIdMethod::Sha256;
        p.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![self.url.clone()],
        }];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = p.signed_by(&key, &issuer).expect("certificate");
        std::fs::create_dir_all(dir).unwrap();
        let stem = dir.join(name);
        std::fs::write(stem.with_extension("pem"), cert.pem()).unwrap();
        std::fs::write(stem.with_extension("key"), pem).unwrap();
        stem
    }

    /// A DER CRL issued at `this_update`, valid until `next_update`, listing `revoked` serials;
    /// each CRL gets the next cRLNumber.
    pub fn crl(
        &self,
        revoked: &[u64],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Vec<u8> {
        let n = self.number.fetch_add(1, Ordering::Relaxed) + 1;
        let issuer = Issuer::from_params(&self.params, &self.key);
        CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from(n),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: this_update,
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&issuer)
        .expect("CRL")
        .der()
        .to_vec()
    }
}

/// A trust directory under `dir`: the anchors, intermediates and CRLs of the synthetic test PKI
/// `pki` (`fixtures/gateway-pki`) plus `ca` as an anchor.
pub fn trust_dir_with(pki: &Path, dir: &Path, ca: &TestCa) -> std::io::Result<PathBuf> {
    let to = dir.join("trust");
    for sub in ["anchors", "intermediates", "crls"] {
        std::fs::create_dir_all(to.join(sub))?;
        for e in std::fs::read_dir(pki.join(sub))?.flatten() {
            std::fs::copy(e.path(), to.join(sub).join(e.file_name()))?;
        }
    }
    std::fs::write(to.join("anchors/crl-test-ca.pem"), &ca.cert_pem)?;
    Ok(to)
}

/// What the server answers: the current CRL, or 503 while it is "down".
#[derive(Default)]
struct Published {
    crl: Option<Vec<u8>>,
}

/// A test-only HTTP server on 127.0.0.1 publishing one CRL at every path, with an ETag (the
/// CRL's number of publications) so that conditional requests get 304.
pub struct CrlServer {
    pub addr: SocketAddr,
    published: Arc<Mutex<Published>>,
    version: Arc<AtomicU64>,
    pub requests: Arc<AtomicU64>,
    pub not_modified: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CrlServer {
    pub async fn start() -> CrlServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let published = Arc::new(Mutex::new(Published::default()));
        let version = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let not_modified = Arc::new(AtomicU64::new(0));
        let (p, v, r, nm) = (
            published.clone(),
            version.clone(),
            requests.clone(),
            not_modified.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (p, v, r, nm) = (p.clone(), v.clone(), r.clone(), nm.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            r.fetch_add(1, Ordering::Relaxed);
                            let etag = format!("\"v{}\"", v.load(Ordering::Relaxed));
                            let body = p.lock().unwrap().crl.clone();
                            let resp = match body {
                                None => hyper::Response::builder()
                                    .status(503)
                                    .body(Full::new(Bytes::new())),
                                Some(_)
                                    if req
                                        .headers()
                                        .get("if-none-match")
                                        .and_then(|h| h.to_str().ok())
                                        == Some(etag.as_str()) =>
                                {
                                    nm.fetch_add(1, Ordering::Relaxed);
                                    hyper::Response::builder()
                                        .status(304)
                                        .header("etag", etag)
                                        .body(Full::new(Bytes::new()))
                                }
                                Some(b) => hyper::Response::builder()
                                    .header("etag", etag)
                                    .header("content-type", "application/pkix-crl")
                                    .body(Full::new(Bytes::from(b))),
                            };
                            async move { Ok::<_, Infallible>(resp.unwrap()) }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        CrlServer {
            addr,
            published,
            version,
            requests,
            not_modified,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/crl-test-ca.crl", self.addr)
    }

    /// Publishes a new CRL (a new ETag).
    pub fn publish(&self, der: Vec<u8>) {
        let mut g = self.published.lock().unwrap();
        g.crl = Some(der);
        self.version.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers 503 from now on.
    pub fn go_down(&self) {
        self.published.lock().unwrap().crl = None;
    }
}

impl Drop for CrlServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
