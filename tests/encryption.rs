//! Encrypted envelopes end to end, against OpenSSL in both directions (issue 12, items 3 and 6): a
//! gateway with the shipped policy `require_encryption = true` and the shipped keys
//! (fixtures/gateway-pki/encryption, `helsemelding-lab dev-pki --encryption-only`) in its own
//! vhost; senders sign like an EHR and encrypt with `openssl cms -encrypt`; what the gateway
//! delivers and the AppRecs it issues must open with `openssl cms -decrypt` (the recipient's key)
//! and verify with `openssl cms -verify`.

mod support;

use helsemelding::amqp::headers::ContentType;
use helsemelding::apprec::AppRec;
use helsemelding::codes::{AppRecStatus, ErrorCode};
use helsemelding::ids::HerId;
use support::gateway::*;
use support::openssl;

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);
const HUB_CERT: &str = "encryption/90000-enc.pem";
const TO_NURSING_HOME: &str = "delivered/foresporsel-gp-to-nursing-home.xml";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_openssl_encrypts_to_the_hub_is_delivered_encrypted_to_the_recipient() {
    let h = Harness::start_encrypted().await;
    // Every content cipher and key transport OpenSSL writes that the hub reads, and the previous hub
    // key of a rotation (both are in [gateway] encryption_keys).
    let variants: &[(&[&str], &str)] = &[
        (&["-aes256"], HUB_CERT),
        (&["-aes128"], HUB_CERT),
        (&["-aes192"], HUB_CERT),
        (&["-aes256", "-keyopt", "rsa_padding_mode:oaep"], HUB_CERT),
        (
            &[
                "-aes256",
                "-keyopt",
                "rsa_padding_mode:oaep",
                "-keyopt",
                "rsa_oaep_md:sha256",
                "-keyopt",
                "rsa_mgf1_md:sha256",
            ],
            HUB_CERT,
        ),
        (&["-aes-256-gcm"], HUB_CERT),
        (&["-aes-128-gcm"], HUB_CERT),
        (&["-aes256"], "encryption/90000-enc-previous.pem"),
    ];
    let mut sent = Vec::new();
    for (options, cert) in variants {
        let (xml, o) = fresh_fixture(TO_NURSING_HOME);
        let (headers, signed) = h
            .send_sealed(xml.as_bytes(), "parties/82001-sign", &o, |s| {
                openssl::encrypt(s, options, cert)
            })
            .await;
        sent.push((headers.message_id, signed, options, cert));
    }
    let got = h.take(NURSING_HOME, sent.len()).await;
    for (id, signed, options, cert) in &sent {
        let m = got
            .iter()
            .find(|m| &m.headers.message_id == id)
            .unwrap_or_else(|| panic!("{options:?} to {cert}: not delivered"));
        assert_eq!(m.headers.content_type, ContentType::EnvelopedCms);
        assert_eq!(
            (m.headers.from_her_id, m.headers.to_her_id),
            (GP, NURSING_HOME)
        );
        let inner = openssl::decrypt(&m.body, "encryption/81001-enc")
            .unwrap_or_else(|e| panic!("{options:?}: the nursing home cannot open its copy: {e}"));
        assert_eq!(
            &inner, signed,
            "{options:?}: the sender's SignedData, byte for byte"
        );
        openssl::verify(&inner)
            .unwrap_or_else(|e| panic!("{options:?}: openssl rejects the signature: {e}"));
        assert!(
            openssl::decrypt(&m.body, "encryption/90000-enc").is_err(),
            "the copy is encrypted to the recipient, not to the hub"
        );
    }
    h.assert_empty(GP).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_apprecs_are_signed_then_encrypted_to_the_sender() {
    let h = Harness::start_encrypted().await;
    let (xml, o) = fresh_fixture("rejected/E21-unknown-level2-service.xml");
    let (headers, _) = h
        .send_sealed(xml.as_bytes(), "parties/82001-sign", &o, |s| {
            openssl::encrypt(s, &["-aes256"], HUB_CERT)
        })
        .await;
    let got = h.take(GP, 1).await;
    let m = &got[0];
    assert_eq!(m.headers.msg_type, "APPREC");
    assert_eq!(m.headers.content_type, ContentType::EnvelopedCms);
    let signed = openssl::decrypt(&m.body, "encryption/82001-enc")
        .unwrap_or_else(|e| panic!("the GP cannot open the AppRec: {e}"));
    let content = openssl::verify(&signed)
        .unwrap_or_else(|e| panic!("openssl rejects the hub's signature: {e}"));
    let rec = AppRec::parse(&content).expect("AppRec parses");
    assert_eq!(rec.status(), Some(AppRecStatus::Rejected));
    assert_eq!(rec.original.id, headers.message_id);
    assert!(
        rec.errors.iter().any(|e| e.code() == Some(ErrorCode::E21)),
        "{:?}",
        rec.errors
    );
    h.assert_empty(NURSING_HOME).await;
    h.stop().await;
}

/// `der` with one bit flipped at `at`.
fn flipped(mut der: Vec<u8>, at: usize) -> Vec<u8> {
    der[at] ^= 0x01;
    der
}

/// Where the RSA-2048 encryptedKey's contents start: after `rsaEncryption NULL` and the
/// `OCTET STRING` header of 256 bytes (RFC 5652 §6.2.1).
fn encrypted_key_at(der: &[u8]) -> usize {
    let header = [0x05, 0x00, 0x04, 0x82, 0x01, 0x00];
    find(der, &header).expect("a PKCS#1 v1.5 KeyTransRecipientInfo") + header.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_misaddressed_and_plaintext_messages_go_to_the_senders_error_queue() {
    let h = Harness::start_encrypted().await;
    type Seal = Box<dyn Fn(&[u8]) -> Vec<u8>>;
    let cases: Vec<(&str, Seal, &str)> = vec![
        (
            "a bit flipped in the last block of the AES-CBC ciphertext",
            Box::new(|s| {
                let der = openssl::encrypt(s, &["-aes256"], HUB_CERT);
                let at = der.len() - 5;
                flipped(der, at)
            }),
            "transport:undecryptable",
        ),
        (
            "a bit flipped in the RSA-wrapped key (PKCS#1 v1.5)",
            Box::new(|s| {
                let der = openssl::encrypt(s, &["-aes256"], HUB_CERT);
                let at = encrypted_key_at(&der) + 100;
                flipped(der, at)
            }),
            "transport:undecryptable",
        ),
        (
            "a bit flipped in the AES-GCM tag",
            Box::new(|s| {
                let der = openssl::encrypt(s, &["-aes-256-gcm"], HUB_CERT);
                let at = der.len() - 1;
                flipped(der, at)
            }),
            "transport:undecryptable",
        ),
        (
            "encrypted to the nursing home instead of the hub",
            Box::new(|s| openssl::encrypt(s, &["-aes256"], "encryption/81001-enc.pem")),
            "transport:wrong-recipient",
        ),
        (
            "signed but not encrypted, labelled as encrypted",
            Box::new(|s| s.to_vec()),
            "transport:undecryptable",
        ),
    ];
    let mut expected = Vec::new();
    for (what, seal, condition) in &cases {
        let (xml, o) = fresh_fixture(TO_NURSING_HOME);
        let (headers, _) = h
            .send_sealed(xml.as_bytes(), "parties/82001-sign", &o, seal)
            .await;
        expected.push((headers.message_id, *what, *condition));
    }
    // Plaintext under require_encryption, labelled as what it is.
    let (xml, o) = fresh_fixture(TO_NURSING_HOME);
    let plain = h
        .send_xml_signed_by(&xml, "parties/82001-sign", &o, None)
        .await;
    expected.push((
        plain.message_id,
        "a signed message that is not encrypted",
        "transport:unencrypted-message",
    ));
    let errs = h.take_queue(&format!("{GP}_error"), expected.len()).await;
    for (id, what, condition) in &expected {
        let e = errs
            .iter()
            .find(|e| &e.headers.message_id == id)
            .unwrap_or_else(|| panic!("{what}: no error-queue entry"));
        assert_eq!(e.error_condition.as_deref(), Some(*condition), "{what}");
    }
    h.assert_empty(NURSING_HOME).await;
    h.assert_empty(GP).await;
    h.stop().await;
}
