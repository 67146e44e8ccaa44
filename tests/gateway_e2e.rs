//! End-to-end: the gateway against the real local RabbitMQ, each test in its own vhost with its own
//! state directory. Messages are our fixtures (fixtures/messages/, named by expected outcome),
//! signed with the synthetic test PKI (fixtures/gateway-pki/) exactly as a sender would.
//!
//! What is checked is what the parties see on their queues: deliveries (headers and the unchanged
//! signed envelope), the gateway's AppRecs (signature, code, OriginalMsgId, mirrored addresses),
//! error-queue entries — and the delivery state in the store.

mod support;

use std::sync::atomic::Ordering;

use std::time::Duration;

use helsemelding::amqp::headers::ContentType;
use helsemelding::apprec::{
    build_apprec, AppRecError, AppRecInput, AppRecVersion, PrimaryRoleV1_0,
};
use helsemelding::codes::{AppRecStatus, ErrorCode};
use helsemelding::gateway::cli::Overrides;
use helsemelding::gateway::routing_log::Outcome;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::msghead::MsgHead;
use helsemelding::store::state::DeliveryState;
use support::gateway::*;

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);
const HOME_CARE: HerId = HerId(81002);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_level_two_service_person_and_copies() {
    let h = Harness::start().await;
    h.send_fixture("delivered/foresporsel-gp-to-nursing-home.xml", GP)
        .await;
    h.send_fixture(
        "delivered/notat-nursing-home-to-gp-person.xml",
        NURSING_HOME,
    )
    .await;
    h.send_fixture("delivered/foresporsel-with-copy-to-home-care.xml", GP)
        .await;
    h.send_fixture("delivered/notat-hospital-to-nursing-home.xml", HerId(80001))
        .await;

    let at_home = h.take(NURSING_HOME, 3).await;
    let ids: Vec<&str> = at_home
        .iter()
        .map(|m| m.headers.message_id.as_str())
        .collect();
    for id in [
        "6a1f0c2e-0001-4d6e-9a51-000000000001",
        "6a1f0c2e-0003-4d6e-9a51-000000000003",
        "6a1f0c2e-0004-4d6e-9a51-000000000004",
    ] {
        assert!(
            ids.contains(&id),
            "{id} missing at the nursing home: {ids:?}"
        );
    }
    let m = at_home
        .iter()
        .find(|m| m.headers.message_id.as_str().ends_with("0001"))
        .unwrap();
    assert_eq!(
        (m.headers.from_her_id, m.headers.to_her_id),
        (GP, NURSING_HOME)
    );
    assert_eq!(m.headers.msg_type, "DIALOG_FORESPORSEL");
    assert_eq!(m.headers.content_type, ContentType::SignedCms);
    // The original signed envelope, unchanged (DESIGN §2 deliver).
    assert_eq!(m.body, h.sent_body("6a1f0c2e-0001-4d6e-9a51-000000000001"));

    let at_gp = h.take(GP, 1).await;
    assert_eq!(
        at_gp[0].headers.message_id.as_str(),
        "6a1f0c2e-0002-4d6e-9a51-000000000002"
    );
    let copy = h.take(HOME_CARE, 1).await;
    assert_eq!(
        copy[0].headers.message_id.as_str(),
        "6a1f0c2e-0003-4d6e-9a51-000000000003"
    );
    assert_eq!(copy[0].headers.to_her_id, HOME_CARE);

    h.assert_empty(GP).await; // no AppRec for delivered messages: the receivers answer
    let rec = h.status(GP, "6a1f0c2e-0003-4d6e-9a51-000000000003").await;
    assert_eq!(rec.recipients.len(), 2);
    assert!(
        rec.recipients
            .iter()
            .all(|r| r.state == DeliveryState::Delivered),
        "{rec:?}"
    );
    assert_eq!(h.gateway.metrics().outcome(Outcome::Delivered), 5);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_fault_gets_its_apprec_code() {
    let h = Harness::start().await;
    let cases: &[(&str, ErrorCode)] = &[
        ("rejected/T02-msgid-missing.xml", ErrorCode::T02),
        ("rejected/T02-wrong-mig-version.xml", ErrorCode::T02),
        ("rejected/E10-msgid-not-uuid.xml", ErrorCode::E10),
        ("rejected/E21-unknown-level2-service.xml", ErrorCode::E21),
        ("rejected/E21-level1-her-missing.xml", ErrorCode::E21),
        ("rejected/T10-type-not-accepted.xml", ErrorCode::T10),
    ];
    let mut sent = Vec::new();
    for (file, _) in cases {
        let mut o = Overrides {
            msg_id: Some(MsgId::random()),
            ..Overrides::default()
        };
        if file.contains("msgid-missing") {
            // Without a MsgId the MsgHead cannot be read: the envelope says who and what.
            o.from_her = Some(GP);
            o.to_her = Some(NURSING_HOME);
            o.msg_type = Some("DIALOG_FORESPORSEL".into());
        }
        sent.push(h.send_fixture_with(file, GP, &o).await);
    }
    // T01: unreadable, so the envelope headers say who and what (T01 is KAN "only possible if the
    // sender can be found", NOTES §7 — here it can: the signer and the user are checked).
    let t01 = Overrides {
        from_her: Some(GP),
        to_her: Some(NURSING_HOME),
        msg_type: Some("DIALOG_FORESPORSEL".into()),
        msg_id: Some(MsgId::random()),
    };
    let t01_headers = h
        .send_fixture_with("rejected/T01-not-well-formed.xml", GP, &t01)
        .await;

    let apprecs = h.take(GP, cases.len() + 1).await;
    for ((file, code), headers) in cases.iter().zip(&sent) {
        // The E10 fixture keeps its non-UUID MsgId in the content; the AppRec refers to that one.
        let expected = if file.contains("E10") {
            MsgId::new("LEGEKONTOR-2026-000042")
        } else {
            headers.message_id.clone()
        };
        let a = apprecs
            .iter()
            .find(|a| a.headers.original_message_id.as_ref() == Some(&expected))
            .unwrap_or_else(|| panic!("no AppRec for {file}"));
        let rec = h.open_apprec(a);
        assert_eq!(rec.status(), Some(AppRecStatus::Rejected), "{file}");
        let codes: Vec<_> = rec.errors.iter().filter_map(|e| e.code()).collect();
        assert!(
            codes.contains(code),
            "{file}: expected {code}, got {codes:?}"
        );
        assert_eq!(a.headers.msg_type, "APPREC");
        assert_eq!(a.headers.to_her_id, GP);
        // AppRec Receiver = the original sender (mirrored, HITS 1168 §6.1).
        assert_eq!(
            rec.receiver.address().communication_party(),
            Some(GP),
            "{file}"
        );
    }
    // E10: OriginalMsgId/Id echoes the MsgId exactly as written (Systemtest #28).
    let e10 = apprecs
        .iter()
        .find(|a| a.headers.original_message_id == Some(MsgId::new("LEGEKONTOR-2026-000042")))
        .unwrap();
    assert_eq!(
        h.open_apprec(e10).original.id.as_str(),
        "LEGEKONTOR-2026-000042"
    );
    // E21 on level 2: the AppRec answers for the addressed (unknown) service with all its ids
    // (Systemtest #19–20).
    let e21 = apprecs
        .iter()
        .find(|a| a.headers.original_message_id == Some(sent[3].message_id.clone()))
        .unwrap();
    let e21 = h.open_apprec(e21);
    assert_eq!(e21.sender.address().level2, Some(HerId(81999)));
    assert_eq!(e21.sender.address().level1, Some(HerId(81000)));
    // Dialogmelding 1.0 is answered with AppRec 1.0 (HITS 1168 §8.2).
    assert_eq!(e21.version, AppRecVersion::V1_0);
    let t01 = apprecs
        .iter()
        .find(|a| a.headers.original_message_id == Some(t01_headers.message_id.clone()))
        .unwrap();
    let t01 = h.open_apprec(t01);
    assert!(t01.errors.iter().any(|e| e.code() == Some(ErrorCode::T01)));
    assert_eq!(
        t01.sender.address().communication_party(),
        Some(NURSING_HOME)
    );

    // Nothing reached a recipient.
    h.assert_empty(NURSING_HOME).await;
    h.assert_empty(HOME_CARE).await;
    let st = h.status(GP, headers_id(&sent[3])).await;
    assert!(
        matches!(
            st.recipients[0].state,
            DeliveryState::Rejected(ErrorCode::E21)
        ),
        "{st:?}"
    );
    h.stop().await;
}

fn headers_id(h: &helsemelding::amqp::headers::MessageHeaders) -> &str {
    h.message_id.as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_faults_are_answered_s01_s02_s03() {
    let h = Harness::start().await;
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    // S02: an expired certificate (fixtures/gateway-pki/bad/expired-sign.*).
    let s02 = h
        .send_fixture_signed_by(
            file,
            "bad/expired-sign",
            &Overrides {
                msg_id: None,
                ..Default::default()
            },
            None,
        )
        .await;
    // S03: a revoked certificate (listed in the intermediate's CRL). Different MsgId.
    let xml = fixture_with_msg_id(file, "6a1f0c2e-0303-4d6e-9a51-000000000303");
    let s03 = h
        .send_xml_signed_by(&xml, "bad/revoked-sign", &Overrides::default(), None)
        .await;
    // S01: the signed content altered after signing.
    let xml = fixture_with_msg_id(file, "6a1f0c2e-0301-4d6e-9a51-000000000301");
    let s01 = h
        .send_xml_signed_by(
            &xml,
            "parties/82001-sign",
            &Overrides::default(),
            Some(&|body: &mut Vec<u8>| {
                let i = find(body, b"legemiddelliste").expect("payload text in the envelope");
                body[i] = b'L';
            }),
        )
        .await;
    let apprecs = h.take(GP, 3).await;
    for (headers, code) in [
        (&s02, ErrorCode::S02),
        (&s03, ErrorCode::S03),
        (&s01, ErrorCode::S01),
    ] {
        let a = apprecs
            .iter()
            .find(|a| a.headers.original_message_id.as_ref() == Some(&headers.message_id))
            .unwrap();
        let codes: Vec<_> = h
            .open_apprec(a)
            .errors
            .iter()
            .filter_map(|e| e.code())
            .collect();
        assert!(codes.contains(&code), "expected {code}, got {codes:?}");
    }
    h.assert_empty(NURSING_HOME).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_levels_unknown_gets_no_apprec_but_an_error_queue_entry() {
    let h = Harness::start().await;
    let sent = h
        .send_fixture("not-for-us/both-levels-unknown.xml", GP)
        .await;
    let errs = h.take_queue(&format!("{GP}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("transport:unknown-receiver")
    );
    assert_eq!(errs[0].headers.message_id, sent.message_id);
    h.assert_empty(GP).await; // HITS 1168 §5.3, Systemtest #21: no AppRec
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_routed_once_and_answered_once() {
    let h = Harness::start().await;
    let sent = h
        .send_fixture("delivered/foresporsel-gp-to-nursing-home.xml", GP)
        .await;
    let first_body = h.sent_body(sent.message_id.as_str());
    let sent_first_body =
        |_: &Harness, _: &helsemelding::amqp::headers::MessageHeaders| first_body.clone();
    let first_done = time::OffsetDateTime::now_utc();
    h.take(NURSING_HOME, 1).await;
    // The same signed envelope again (a resend), and a freshly signed copy of the same message.
    h.resend(&sent.message_id).await;
    // Re-signed in a later second, so the envelope (signingTime, whole seconds; signature)
    // differs: still the same message. The first was signed before `first_done`.
    let later = first_done.unix_timestamp() + 1;
    while time::OffsetDateTime::now_utc().unix_timestamp() < later {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = h
        .send_fixture("delivered/foresporsel-gp-to-nursing-home.xml", GP)
        .await;
    assert_ne!(
        h.sent_body(again.message_id.as_str()),
        sent_first_body(&h, &sent),
        "a new envelope"
    );
    // A rejected message twice: one AppRec only (HITS 1168 §5.4, Systemtest #12, #41).
    let e21 = h
        .send_fixture("rejected/E21-unknown-level2-service.xml", GP)
        .await;
    h.take(GP, 1).await;
    h.resend(&e21.message_id).await;
    h.wait_for(|m| m.outcome(Outcome::Duplicate) >= 3).await;
    h.assert_empty(NURSING_HOME).await;
    h.assert_empty(GP).await;
    // Same MsgId, different content: refused through the sender's error queue, first one stands.
    let o = Overrides::default();
    let reused = fixture_with_msg_id(
        "delivered/foresporsel-gp-to-nursing-home.xml",
        "6a1f0c2e-0001-4d6e-9a51-000000000001",
    )
    .replace("oppdatert legemiddelliste", "oppdatert medisinliste");
    h.send_xml_signed_by(&reused, "parties/82001-sign", &o, None)
        .await;
    let errs = h.take_queue(&format!("{GP}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("transport:msgid-reused-with-different-content")
    );
    h.assert_empty(NURSING_HOME).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_apprecs_are_checked_forwarded_and_a_second_one_refused() {
    let h = Harness::start().await;
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    let sent = h.send_fixture(file, GP).await;
    let delivered = h.take(NURSING_HOME, 1).await;
    assert_eq!(delivered[0].headers.message_id, sent.message_id);

    // The nursing home's EHR answers with a positive AppRec, signed with its own certificate.
    let original = MsgHead::parse(&fixture(file)).unwrap();
    let (_, party) = original.recipients().into_iter().next().unwrap();
    let mk = |id: MsgId, status: AppRecStatus| {
        build_apprec(&AppRecInput {
            version: AppRecVersion::V1_0,
            original: &original,
            recipient: party,
            role: helsemelding::address::RecipientRole::Primary,
            status,
            errors: if status == AppRecStatus::Rejected {
                vec![AppRecError {
                    code: ErrorCode::E35,
                    ot: None,
                }]
            } else {
                vec![]
            },
            id,
            now: time::OffsetDateTime::now_utc(),
            software_name: "Test-EPJ".into(),
            software_version: "1".into(),
            v1_0_primary_role: PrimaryRoleV1_0::Spr,
        })
    };
    let ok = mk(MsgId::random(), AppRecStatus::Ok);
    let first = h
        .send_xml_signed_by(&ok, "parties/81001-sign", &Overrides::default(), None)
        .await;
    let forwarded = h.take(GP, 1).await;
    assert_eq!(forwarded[0].headers.msg_type, "APPREC");
    assert_eq!(forwarded[0].headers.from_her_id, NURSING_HOME);
    assert_eq!(forwarded[0].headers.message_id, first.message_id);
    assert_eq!(
        forwarded[0].body,
        h.sent_body(first.message_id.as_str()),
        "forwarded unchanged"
    );
    let st = h.status(GP, sent.message_id.as_str()).await;
    assert_eq!(st.recipients[0].state, DeliveryState::AppRecOk);

    // A second AppRec for the same message and recipient is final-refused (Systemtest #13).
    let second = mk(MsgId::random(), AppRecStatus::Rejected);
    h.send_xml_signed_by(&second, "parties/81001-sign", &Overrides::default(), None)
        .await;
    let errs = h.take_queue(&format!("{NURSING_HOME}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("transport:apprec-already-received")
    );
    h.assert_empty(GP).await;
    assert_eq!(
        h.status(GP, sent.message_id.as_str()).await.recipients[0].state,
        DeliveryState::AppRecOk
    );

    // An AppRec for a message that never existed.
    let mut ghost = original.clone();
    ghost.msg_id = MsgId::random();
    let ghost_xml = build_apprec(&AppRecInput {
        version: AppRecVersion::V1_0,
        original: &ghost,
        recipient: party,
        role: helsemelding::address::RecipientRole::Primary,
        status: AppRecStatus::Ok,
        errors: vec![],
        id: MsgId::random(),
        now: time::OffsetDateTime::now_utc(),
        software_name: "Test-EPJ".into(),
        software_version: "1".into(),
        v1_0_primary_role: PrimaryRoleV1_0::Spr,
    });
    h.send_xml_signed_by(
        &ghost_xml,
        "parties/81001-sign",
        &Overrides::default(),
        None,
    )
    .await;
    let errs = h.take_queue(&format!("{NURSING_HOME}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("transport:apprec-unknown-original")
    );
    h.assert_empty(GP).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofing_is_refused_through_the_error_queue() {
    let h = Harness::start().await;
    // A message claiming to be from the GP but signed with the nursing home's certificate.
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    let sent = h
        .send_fixture_signed_by(file, "parties/81001-sign", &Overrides::default(), None)
        .await;
    let errs = h.take_queue(&format!("{GP}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("abuse:spoofing-attack")
    );
    assert_eq!(errs[0].headers.message_id, sent.message_id);
    // Envelope says another sender than the MsgHead (signed correctly for the envelope's party).
    let o = Overrides {
        from_her: Some(NURSING_HOME),
        msg_id: Some(MsgId::random()),
        ..Overrides::default()
    };
    h.send_fixture_signed_by(file, "parties/81001-sign", &o, None)
        .await;
    let errs = h.take_queue(&format!("{NURSING_HOME}_error"), 1).await;
    assert_eq!(
        errs[0].error_condition.as_deref(),
        Some("abuse:spoofing-attack")
    );
    h.assert_empty(NURSING_HOME).await;
    h.assert_empty(GP).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_recipient_makes_the_message_overdue() {
    let h = Harness::start().await;
    let file = "delivered/foresporsel-gp-to-nursing-home.xml";
    let now = time::OffsetDateTime::now_utc();
    let key = format!("parties/{GP}-sign");
    let fresh = with_gen_date(&String::from_utf8(fixture(file)).unwrap(), now);
    let sent = h
        .send_xml_signed_by(&fresh, &key, &Overrides::default(), None)
        .await;
    h.take(NURSING_HOME, 1).await;
    h.housekeep().await;
    assert_eq!(
        h.status(GP, sent.message_id.as_str()).await.recipients[0].state,
        DeliveryState::Delivered
    );

    // Generated 100 hours ago (the sender's queue held it): the 96 hours already ran out on arrival,
    // so the first sweep after delivery finds it overdue.
    let old = with_gen_date(
        &fixture_with_msg_id(file, MsgId::random().as_str()),
        now - time::Duration::hours(100),
    );
    let late = h
        .send_xml_signed_by(&old, &key, &Overrides::default(), None)
        .await;
    h.take(NURSING_HOME, 1).await;
    // The copy is taken once published; the sweep needs its Delivered commit (step 4), which
    // follows the publish confirm: wait for the gateway to settle the delivery first.
    h.settle().await;
    h.housekeep().await;
    assert_eq!(
        h.status(GP, late.message_id.as_str()).await.recipients[0].state,
        DeliveryState::Overdue
    );
    assert_eq!(
        h.status(GP, sent.message_id.as_str()).await.recipients[0].state,
        DeliveryState::Delivered
    );

    h.advance(Duration::from_secs(97 * 3600));
    h.housekeep().await;
    assert_eq!(
        h.status(GP, sent.message_id.as_str()).await.recipients[0].state,
        DeliveryState::Overdue
    );
    assert_eq!(h.gateway.metrics().outcome(Outcome::Overdue), 2);

    // The store's size in /metrics, as of the last pass; past retention both records go.
    let m = h.gateway.metrics();
    assert_eq!(m.store_records.load(Ordering::Relaxed), 2);
    assert!(m.store_file_bytes.load(Ordering::Relaxed) > 0);
    assert!(m.render().contains("\nhelsemelding_store_records 2\n"));
    h.advance(Duration::from_secs(31 * 24 * 3600));
    h.housekeep().await;
    assert_eq!(m.pruned.load(Ordering::Relaxed), 2);
    assert_eq!(m.store_records.load(Ordering::Relaxed), 0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_revocation_data_is_retried_then_dead_lettered_with_its_reason() {
    // The intermediate CA's CRL is past nextUpdate: not the sender's fault, so no AppRec (DESIGN §2
    // verify) — retried with backoff, and dead-lettered with the reason before the broker's own
    // delivery limit would drop the reason.
    let h = Harness::start_with(Some("variants/stale-crl"), |s| {
        s.topology.delivery_limit = 4
    })
    .await;
    let sent = h
        .send_fixture("delivered/foresporsel-gp-to-nursing-home.xml", GP)
        .await;
    let dead = h.take_queue("gateway_dead_letter", 1).await;
    assert_eq!(dead[0].headers.message_id, sent.message_id);
    assert_eq!(
        dead[0].error_condition.as_deref(),
        Some("transport:retries-exhausted")
    );
    assert!(h.gateway.metrics().outcome(Outcome::Retry) >= 2);
    h.assert_empty(GP).await; // never an AppRec for an infrastructure fault
    h.assert_empty(NURSING_HOME).await;
    h.stop().await;
}
