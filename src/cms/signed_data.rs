//! Parsing of a CMS `ContentInfo` carrying `SignedData` (RFC 5652 §3, §5.1–§5.3) into borrowed views.
//!
//! Input: the envelope bytes. Output: [`SignedData`] whose fields point into the input, so the exact
//! signed-attribute bytes and certificate DER are kept for verification. Failure: [`DerError`]
//! (becomes T01). Limits: at most [`MAX_CERTIFICATES`] certificates, [`MAX_ATTRIBUTES`] signed
//! attributes and exactly one `SignerInfo` (a helsemelding envelope has one sender).

use super::der::{self, DerError, Reader, Tlv};

/// More certificates than this in one message is refused (a chain is 1–3 deep in practice).
pub const MAX_CERTIFICATES: usize = 16;
/// More signed attributes than this is refused (senders use 3–5).
pub const MAX_ATTRIBUTES: usize = 32;

pub mod oid {
    //! OID contents octets (the value of the DER OBJECT IDENTIFIER).
    pub const SIGNED_DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x02];
    pub const DATA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
    pub const CONTENT_TYPE: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x03];
    pub const MESSAGE_DIGEST: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x04];
    pub const SIGNING_TIME: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x05];
    pub const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];
    pub const SHA384: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02];
    pub const SHA512: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03];
    pub const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
    pub const MGF1: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x08];
    pub const RSASSA_PSS: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0A];
    pub const SHA256_WITH_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0B];
    pub const SHA384_WITH_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0C];
    pub const SHA512_WITH_RSA: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x0D];
}

/// `AlgorithmIdentifier`: the OID and the raw parameters, if any.
#[derive(Debug, Clone, Copy)]
pub struct AlgorithmId<'a> {
    pub oid: &'a [u8],
    pub params: Option<Tlv<'a>>,
}

/// How the `SignerInfo` names its certificate (RFC 5652 §5.3).
#[derive(Debug, Clone, Copy)]
pub enum SignerId<'a> {
    /// Raw DER of the issuer `Name` and the serial number's contents octets.
    IssuerAndSerial { issuer: &'a [u8], serial: &'a [u8] },
    /// The `subjectKeyIdentifier` value.
    SubjectKeyId(&'a [u8]),
}

/// One signed attribute: its type and the single value (RFC 5652 §5.3 requires exactly one for
/// contentType, messageDigest and signingTime).
#[derive(Debug, Clone, Copy)]
pub struct Attribute<'a> {
    pub oid: &'a [u8],
    pub values: Tlv<'a>,
}

#[derive(Debug, Clone)]
pub struct SignerInfo<'a> {
    pub sid: SignerId<'a>,
    pub digest_algorithm: AlgorithmId<'a>,
    /// The whole `[0] IMPLICIT SignedAttributes` element as received.
    pub signed_attrs_raw: Option<&'a [u8]>,
    pub signed_attrs: Vec<Attribute<'a>>,
    pub signature_algorithm: AlgorithmId<'a>,
    pub signature: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct SignedData<'a> {
    pub content_type: &'a [u8],
    /// The encapsulated content (`eContent`); `None` for a detached signature.
    pub content: Option<&'a [u8]>,
    /// DER of each certificate carried in the message.
    pub certificates: Vec<&'a [u8]>,
    pub signer: SignerInfo<'a>,
}

/// Why the outer `ContentInfo` is not a SignedData with content.
#[derive(Debug, Clone)]
pub enum ParseError {
    Der(DerError),
    NotSignedData,
    TooMany {
        what: &'static str,
        found: usize,
        limit: usize,
    },
    SignerCount(usize),
}

impl From<DerError> for ParseError {
    fn from(e: DerError) -> Self {
        ParseError::Der(e)
    }
}

pub fn read_algorithm<'a>(r: &mut Reader<'a>, what: &str) -> Result<AlgorithmId<'a>, DerError> {
    let seq = r.read(der::SEQUENCE, what)?;
    let mut c = seq.contents();
    let oid = c.read(der::OID, "algorithm OID")?.value;
    let params = if c.is_empty() {
        None
    } else {
        Some(c.read_any()?)
    };
    c.finish(what)?;
    Ok(AlgorithmId { oid, params })
}

/// Parses `bytes` as a DER `ContentInfo` with a `SignedData` inside.
pub fn parse(bytes: &[u8]) -> Result<SignedData<'_>, ParseError> {
    let mut top = Reader::new(bytes);
    let ci = top.read(der::SEQUENCE, "ContentInfo SEQUENCE")?;
    top.finish("ContentInfo")?;
    let mut ci = ci.contents();
    if ci.read(der::OID, "ContentInfo contentType")?.value != oid::SIGNED_DATA {
        return Err(ParseError::NotSignedData);
    }
    let explicit = ci.read(der::context(0), "ContentInfo [0] content")?;
    ci.finish("ContentInfo content")?;
    let mut ex = explicit.contents();
    let sd = ex.read(der::SEQUENCE, "SignedData SEQUENCE")?;
    ex.finish("SignedData")?;

    let mut sd = sd.contents();
    sd.read(der::INTEGER, "SignedData version")?;
    sd.read(der::SET, "SignedData digestAlgorithms")?;

    let eci = sd.read(der::SEQUENCE, "EncapsulatedContentInfo")?;
    let mut eci = eci.contents();
    let content_type = eci.read(der::OID, "eContentType")?.value;
    let content = match eci.read_optional(der::context(0))? {
        Some(ex) => {
            let mut ex = ex.contents();
            let octets = ex.read(der::OCTET_STRING, "eContent OCTET STRING (primitive, DER)")?;
            ex.finish("eContent")?;
            Some(octets.value)
        }
        None => None,
    };
    eci.finish("EncapsulatedContentInfo")?;

    let mut certificates = Vec::new();
    if let Some(certs) = sd.read_optional(der::context(0))? {
        let mut c = certs.contents();
        while !c.is_empty() {
            // Only plain X.509 certificates (a SEQUENCE); attribute certificates and the like
            // ([1]..[3]) cannot sign a helsemelding envelope, so they are skipped, not trusted.
            let cert = c.read_any()?;
            if cert.tag == der::SEQUENCE {
                certificates.push(cert.raw);
                if certificates.len() > MAX_CERTIFICATES {
                    return Err(ParseError::TooMany {
                        what: "certificates",
                        found: certificates.len(),
                        limit: MAX_CERTIFICATES,
                    });
                }
            }
        }
    }
    // Embedded CRLs are not used: revocation comes from the operator's trust directory only.
    sd.read_optional(der::context(1))?;
    let signer_infos = sd.read(der::SET, "SignerInfos SET")?;
    sd.finish("SignedData")?;

    let mut sis = signer_infos.contents();
    let mut signers = Vec::with_capacity(1);
    while !sis.is_empty() {
        let si = sis.read(der::SEQUENCE, "SignerInfo")?;
        signers.push(si);
        if signers.len() > 1 {
            break;
        }
    }
    if signers.len() != 1 {
        let mut n = signers.len();
        while !sis.is_empty() {
            sis.read_any()?;
            n += 1;
        }
        return Err(ParseError::SignerCount(n));
    }
    let signer = parse_signer_info(signers[0])?;
    Ok(SignedData {
        content_type,
        content,
        certificates,
        signer,
    })
}

fn parse_signer_info(si: Tlv<'_>) -> Result<SignerInfo<'_>, ParseError> {
    let mut r = si.contents();
    r.read(der::INTEGER, "SignerInfo version")?;
    let sid = match r.peek_tag() {
        Some(der::SEQUENCE) => {
            let ias = r.read_any()?;
            let mut c = ias.contents();
            let issuer = c.read(der::SEQUENCE, "issuer Name")?.raw;
            let serial = c.read(der::INTEGER, "serialNumber")?.value;
            c.finish("IssuerAndSerialNumber")?;
            SignerId::IssuerAndSerial { issuer, serial }
        }
        _ => SignerId::SubjectKeyId(r.read(der::context_primitive(0), "SignerIdentifier")?.value),
    };
    let digest_algorithm = read_algorithm(&mut r, "digestAlgorithm")?;
    let mut signed_attrs = Vec::new();
    let signed_attrs_raw = match r.read_optional(der::context(0))? {
        Some(attrs) => {
            let mut a = attrs.contents();
            while !a.is_empty() {
                let attr = a.read(der::SEQUENCE, "Attribute")?;
                let mut c = attr.contents();
                let oid = c.read(der::OID, "attrType")?.value;
                let values = c.read(der::SET, "attrValues SET")?;
                c.finish("Attribute")?;
                signed_attrs.push(Attribute { oid, values });
                if signed_attrs.len() > MAX_ATTRIBUTES {
                    return Err(ParseError::TooMany {
                        what: "signed attributes",
                        found: signed_attrs.len(),
                        limit: MAX_ATTRIBUTES,
                    });
                }
            }
            Some(attrs.raw)
        }
        None => None,
    };
    let signature_algorithm = read_algorithm(&mut r, "signatureAlgorithm")?;
    let signature = r.read(der::OCTET_STRING, "signature OCTET STRING")?.value;
    r.read_optional(der::context(1))?;
    r.finish("SignerInfo")?;
    Ok(SignerInfo {
        sid,
        digest_algorithm,
        signed_attrs_raw,
        signed_attrs,
        signature_algorithm,
        signature,
    })
}
