//! Helsenorge.Messaging clients over AMQP 1.0 (issue 12 item 1, DESIGN §1): an emulator
//! (python-qpid-proton, `tests/hnmsg/emulator.py`) sends and receives through RabbitMQ's
//! `rabbitmq_amqp1_0` plugin against an in-process gateway in its own vhost:
//!
//! - a 1.0 sender's valid signed message (one data section, string application-properties,
//!   subject = message function, not durable) sent to `/amq/queue/gateway_inbound` is delivered,
//!   and a 1.0 receiver on `/amq/queue/{herId}_async` sees subject, ids and application-properties;
//! - a negative AppRec the gateway issues reaches a 1.0 receiver with subject `APPREC` and its
//!   application-properties;
//! - an error-queue entry (spoofing) reaches a 1.0 receiver on `/amq/queue/{herId}_error` with
//!   HN.Msg's property list and errorCondition.
//!
//! - under `require_encryption` (issue 12 item 6), a message signed, then encrypted as HN.Msg does
//!   (AES-256-CBC, RSA PKCS#1 v1.5, to the hub's encryption certificate; encrypted here with
//!   `openssl cms`) is delivered encrypted to the receiver's certificate, the gateway's AppRec comes
//!   back encrypted to the sender, and plaintext is refused with HN.Msg's errorCondition.
//!
//! Needs the plugin (`rabbitmq-plugins enable rabbitmq_amqp1_0`) and `target/venv` (`.ci/run`).

mod support;

use helsemelding::amqp::headers::ContentType;
use helsemelding::gateway::cli::Overrides;
use helsemelding::ids::{HerId, MsgId};
use sha2::{Digest, Sha256};
use support::gateway::{fixture_with_msg_id, fresh_fixture, Harness};
use support::{hnmsg, openssl};

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_senders_message_is_delivered_and_a_1_0_receiver_sees_its_properties() {
    one_1_0_message_is_delivered_with_its_properties(Harness::start().await).await;
}

/// With the intake in partitions (DESIGN §6) an AMQP 1.0 sender still addresses
/// `gateway_inbound` by name: it is partition 0, consumed like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_senders_message_is_delivered_with_the_intake_in_partitions() {
    let h = Harness::start_with(None, |s| s.topology.partitions = 3).await;
    assert_eq!(
        h.vhost.queue_len("gateway_inbound.3").await.unwrap(),
        Some(0)
    );
    one_1_0_message_is_delivered_with_its_properties(h).await;
}

async fn one_1_0_message_is_delivered_with_its_properties(h: Harness) {
    let id = MsgId::random();
    let xml = fixture_with_msg_id("delivered/foresporsel-gp-to-nursing-home.xml", id.as_str());
    let o = Overrides {
        msg_id: Some(id.clone()),
        ..Overrides::default()
    };
    let (headers, body) = Harness::sign(xml.as_bytes(), "parties/82001-sign", &o);
    let vhost = h.vhost.name().to_owned();
    hnmsg::send(
        &vhost,
        "/amq/queue/gateway_inbound",
        &body,
        &headers,
        h.dir.path(),
    );

    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{NURSING_HOME}_async"), 1);
    let m = &got[0];
    assert_eq!(m.subject.as_deref(), Some("DIALOG_FORESPORSEL"), "{m:?}");
    assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(
        m.content_type.as_deref(),
        Some("application/pkcs7-mime; smime-type=signed-data")
    );
    assert_eq!(m.prop("fromHerId"), GP.to_string());
    assert_eq!(m.prop("toHerId"), NURSING_HOME.to_string());
    assert_eq!(
        m.prop("applicationTimeStamp"),
        helsemelding::amqp::headers::hnmsg_timestamp(headers.application_timestamp)
    );
    // The sender's agreement id travels on to the recipient.
    assert_eq!(m.prop("cpaId"), "4f6c2b1e-0c1d-4b7a-9d7e-000000000001");
    // The sender's signed envelope, byte for byte, as one data section.
    assert_eq!(m.body_sha256, sha256_hex(&body));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_receiver_sees_the_gateways_apprec_with_its_properties() {
    let h = Harness::start().await;
    let id = MsgId::random();
    let o = Overrides {
        msg_id: Some(id.clone()),
        ..Overrides::default()
    };
    let xml = fixture_with_msg_id("rejected/T10-type-not-accepted.xml", id.as_str());
    let (headers, body) = Harness::sign(xml.as_bytes(), "parties/82001-sign", &o);
    let vhost = h.vhost.name().to_owned();
    hnmsg::send(
        &vhost,
        "/amq/queue/gateway_inbound",
        &body,
        &headers,
        h.dir.path(),
    );

    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{GP}_async"), 1);
    let m = &got[0];
    assert_eq!(m.subject.as_deref(), Some("APPREC"), "{m:?}");
    assert_eq!(m.prop("toHerId"), GP.to_string());
    assert_eq!(m.prop("fromHerId"), headers.to_her_id.to_string());
    assert_eq!(m.prop("originalMessageId"), id.as_str());
    assert_eq!(m.correlation_id.as_deref(), Some(id.as_str()));
    assert!(m.has_prop("applicationTimeStamp"));
    assert!(
        m.message_id.as_deref().is_some_and(|i| i != id.as_str()),
        "{m:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_0_receiver_sees_an_error_entry_with_hnmsgs_property_list() {
    let h = Harness::start().await;
    let id = MsgId::random();
    let o = Overrides {
        msg_id: Some(id.clone()),
        ..Overrides::default()
    };
    // Claims to be from the GP but is signed with the nursing home's certificate: spoofing.
    let xml = fixture_with_msg_id("delivered/foresporsel-gp-to-nursing-home.xml", id.as_str());
    let (headers, body) = Harness::sign(xml.as_bytes(), "parties/81001-sign", &o);
    assert_eq!(headers.from_her_id, GP);
    let vhost = h.vhost.name().to_owned();
    hnmsg::send(
        &vhost,
        "/amq/queue/gateway_inbound",
        &body,
        &headers,
        h.dir.path(),
    );

    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{GP}_error"), 1);
    let m = &got[0];
    assert_eq!(m.subject.as_deref(), Some("DIALOG_FORESPORSEL"), "{m:?}");
    // HN.Msg's error message goes from the original's receiver to its sender.
    assert_eq!(m.prop("fromHerId"), NURSING_HOME.to_string());
    assert_eq!(m.prop("toHerId"), GP.to_string());
    assert_eq!(m.prop("originalMessageId"), id.as_str());
    assert_eq!(m.prop("errorCondition"), "abuse:spoofing-attack");
    assert_eq!(m.prop("errorConditionData"), "abuse:spoofing-attack;");
    assert!(
        m.prop("errorDescription")
            .contains("not a certificate registered"),
        "{m:?}"
    );
    // MM/dd/yyyy HH:mm:ss
    let rts = m.prop("receiverTimeStamp");
    assert!(
        time::PrimitiveDateTime::parse(
            &rts,
            time::macros::format_description!("[month]/[day]/[year] [hour]:[minute]:[second]")
        )
        .is_ok(),
        "{rts}"
    );
    assert!(m.has_prop("applicationTimeStamp"));
    assert_ne!(m.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(m.correlation_id.as_deref(), Some(id.as_str()));
    // The refused envelope itself stays with the entry (operators can inspect it).
    assert_eq!(m.body_sha256, sha256_hex(&body));
    h.stop().await;
}

/// HN.Msg with a namespace sends to `/exchange/{namespace}/{herId}_async`: with `hnmsg_exchange`
/// that exchange routes the message to the gateway's intake (never straight to the receiver's
/// queue, which would skip every check), and the receiver reads it from `/amq/queue/{herId}_async`.
/// A party taken out of the register loses its binding on the next re-sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_sender_reaches_the_intake_through_the_hnmsg_exchange() {
    let h = Harness::start_with(None, |s| {
        s.topology.hnmsg_exchange = Some("NHNTestServiceBus".into())
    })
    .await;
    let id = MsgId::random();
    let xml = fixture_with_msg_id("delivered/foresporsel-gp-to-nursing-home.xml", id.as_str());
    let o = Overrides {
        msg_id: Some(id.clone()),
        ..Overrides::default()
    };
    let (headers, body) = Harness::sign(xml.as_bytes(), "parties/82001-sign", &o);
    let vhost = h.vhost.name().to_owned();
    hnmsg::send(
        &vhost,
        &format!("/exchange/NHNTestServiceBus/{NURSING_HOME}_async"),
        &body,
        &headers,
        h.dir.path(),
    );
    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{NURSING_HOME}_async"), 1);
    assert_eq!(got[0].message_id.as_deref(), Some(id.as_str()));
    assert_eq!(got[0].subject.as_deref(), Some("DIALOG_FORESPORSEL"));
    assert_eq!(
        h.gateway
            .metrics()
            .received
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The register loses the nursing home: its routing key no longer reaches the intake.
    let conn = helsemelding::amqp::connect(&h.vhost.settings("test-resync"))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let topology = helsemelding::amqp::Topology {
        hnmsg_exchange: Some("NHNTestServiceBus".into()),
        ..Default::default()
    };
    topology
        .sync_hnmsg_bindings(&ch, &[GP, NURSING_HOME], &[GP])
        .await
        .unwrap();
    let publisher = helsemelding::amqp::Publisher::open(&conn).await.unwrap();
    let to = |her: HerId| format!("{her}_async");
    let publish = |rk: String| {
        let publisher = &publisher;
        async move {
            publisher
                .publish_with_properties(
                    helsemelding::amqp::Route::Exchange {
                        exchange: "NHNTestServiceBus",
                        routing_key: &rk,
                    },
                    lapin::BasicProperties::default(),
                    b"not a message",
                )
                .await
        }
    };
    // Mandatory publishing: an unbound routing key comes back as a failure.
    assert!(publish(to(NURSING_HOME)).await.is_err());
    assert!(publish(to(GP)).await.is_ok());
    let _ = conn.close(200, "done".into()).await;
    h.stop().await;
}

/// What an HN.Msg sender under the shipped `require_encryption = true` sends: `xml` signed by the
/// GP, then encrypted to the hub (AES-256-CBC, RSA PKCS#1 v1.5: `EnvelopedCms`'s defaults,
/// research/hnmsg-interop.md §2). Returns its MsgId and the SignedData inside.
/// Signs `rel` as the GP, encrypts it to the hub with openssl and sends it as HN.Msg does, to
/// `address` (the intake's queue, or the HN.Msg exchange with the receiver's queue name).
fn send_encrypted(h: &Harness, rel: &str, address: &str) -> (MsgId, Vec<u8>) {
    let (xml, o) = fresh_fixture(rel);
    let (mut headers, signed) = Harness::sign(xml.as_bytes(), "parties/82001-sign", &o);
    headers.content_type = ContentType::EnvelopedCms;
    let body = openssl::encrypt(&signed, &["-aes256"], "encryption/90000-enc.pem");
    let vhost = h.vhost.name().to_owned();
    hnmsg::send(&vhost, address, &body, &headers, h.dir.path());
    (headers.message_id, signed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypting_1_0_sender_is_delivered_answered_and_refused_encrypted() {
    let h = Harness::start_configured(
        |_, config| {
            let text = std::fs::read_to_string(config).unwrap();
            assert!(text.contains("require_encryption = false"));
            let text = text.replace("require_encryption = false", "require_encryption = true");
            std::fs::write(config, text).unwrap();
        },
        |s| s.topology.hnmsg_exchange = Some("NHNTestServiceBus".into()),
    )
    .await;
    // The HN.Msg bindings are declared once the gateway's broker session is up.
    h.wait_for(|m| {
        m.broker_connected
            .load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    let vhost = h.vhost.name().to_owned();
    const ENVELOPED: &str = "application/pkcs7-mime; smime-type=signed-and-enveloped-data";

    let (id, signed) = send_encrypted(
        &h,
        "delivered/foresporsel-gp-to-nursing-home.xml",
        "/amq/queue/gateway_inbound",
    );
    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{NURSING_HOME}_async"), 1);
    let m = &got[0];
    assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
    assert_eq!(m.content_type.as_deref(), Some(ENVELOPED), "{m:?}");
    let inner = openssl::decrypt(&m.body, "encryption/81001-enc")
        .unwrap_or_else(|e| panic!("the receiver cannot open its copy: {e}"));
    assert_eq!(inner, signed, "the sender's SignedData, byte for byte");

    // The same through the HN.Msg exchange, addressed by the receiver's queue name.
    let (id, signed) = send_encrypted(
        &h,
        "delivered/foresporsel-gp-to-nursing-home.xml",
        &format!("/exchange/NHNTestServiceBus/{NURSING_HOME}_async"),
    );
    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{NURSING_HOME}_async"), 1);
    assert_eq!(got[0].message_id.as_deref(), Some(id.as_str()));
    let inner = openssl::decrypt(&got[0].body, "encryption/81001-enc")
        .unwrap_or_else(|e| panic!("the receiver cannot open its copy: {e}"));
    assert_eq!(
        inner, signed,
        "through the exchange too: the SignedData, byte for byte"
    );

    let (id, _) = send_encrypted(
        &h,
        "rejected/T10-type-not-accepted.xml",
        "/amq/queue/gateway_inbound",
    );
    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{GP}_async"), 1);
    let m = &got[0];
    assert_eq!(m.subject.as_deref(), Some("APPREC"), "{m:?}");
    assert_eq!(m.prop("originalMessageId"), id.as_str());
    assert_eq!(m.content_type.as_deref(), Some(ENVELOPED), "{m:?}");
    let apprec = openssl::decrypt(&m.body, "encryption/82001-enc")
        .unwrap_or_else(|e| panic!("the sender cannot open the AppRec: {e}"));
    openssl::verify(&apprec).unwrap_or_else(|e| panic!("the AppRec's signature: {e}"));

    // Signed but not encrypted: refused, in HN.Msg's words.
    let (xml, o) = fresh_fixture("delivered/foresporsel-gp-to-nursing-home.xml");
    let (headers, body) = Harness::sign(xml.as_bytes(), "parties/82001-sign", &o);
    hnmsg::send(
        &vhost,
        "/amq/queue/gateway_inbound",
        &body,
        &headers,
        h.dir.path(),
    );
    let got = hnmsg::receive(&vhost, &format!("/amq/queue/{GP}_error"), 1);
    let m = &got[0];
    assert_eq!(m.prop("originalMessageId"), headers.message_id.as_str());
    assert_eq!(m.prop("errorCondition"), "transport:invalid-certificate");
    assert_eq!(
        m.prop("errorConditionData"),
        "transport:unencrypted-message;"
    );
    h.assert_empty(NURSING_HOME).await;
    h.stop().await;
}
