//! The pure half of the pipeline (`gateway::assess`), without a broker: for each kind of input,
//! the plan the gateway makes. The end-to-end tests (gateway_e2e.rs) show the same plans carried
//! out over RabbitMQ; these cover the refusals that need no queue to observe.

mod support;

use helsemelding::amqp::headers::{ContentType, HeaderError, MessageHeaders};
use helsemelding::cms::Signer;
use helsemelding::codes::ErrorCode;
use helsemelding::gateway::assess::{assess, condition, Context, Inbound, Plan, RecipientPlan};
use helsemelding::gateway::cli::load;
use helsemelding::gateway::envelope_of;
use helsemelding::ids::{HerId, MsgId};
use support::gateway::*;

fn context() -> Context {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "amqp://guest:guest@127.0.0.1:5672/%2f");
    load(&config).unwrap_or_else(|ps| panic!("{ps:#?}")).context
}

fn signer(her: u32) -> Signer {
    let p = repo().join("fixtures/gateway-pki/parties");
    Signer::from_pem_files(
        &p.join(format!("{her}-sign.key")),
        &p.join(format!("{her}-sign.pem")),
    )
    .unwrap()
}

fn headers(from: u32, to: u32, content_type: ContentType) -> MessageHeaders {
    MessageHeaders::new(
        (HerId(from), HerId(to)),
        "DIALOG_FORESPORSEL",
        MsgId::new("6a1f0c2e-0001-4d6e-9a51-000000000001"),
        time::OffsetDateTime::now_utc(),
        content_type,
    )
}

fn plan(
    ctx: &Context,
    body: &[u8],
    h: Result<MessageHeaders, HeaderError>,
    user: Option<&str>,
) -> Plan {
    assess(
        &Inbound {
            body,
            envelope: envelope_of(&h).as_ref().map_err(String::as_str),
            user_id: user,
        },
        ctx,
        time::OffsetDateTime::now_utc(),
    )
}

/// The plan for `xml` signed by the GP 82001 and addressed to the nursing home 81001.
fn plan_signed_by_gp(ctx: &Context, xml: &[u8]) -> Plan {
    let body = signer(82001)
        .sign(xml, time::OffsetDateTime::now_utc())
        .unwrap();
    plan(
        ctx,
        &body,
        Ok(headers(82001, 81001, ContentType::SignedCms)),
        Some("guest"),
    )
}

fn refused(p: Plan) -> (Option<HerId>, &'static str, String) {
    match p {
        Plan::Refuse(r) => (r.to, r.condition, r.description),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_good_message_is_planned_for_delivery() {
    let ctx = context();
    let xml = fixture("delivered/foresporsel-with-copy-to-home-care.xml");
    match plan_signed_by_gp(&ctx, &xml) {
        Plan::Message(m) => {
            assert_eq!(m.sender, HerId(82001));
            let to: Vec<_> = m
                .recipients
                .iter()
                .map(|r| match r {
                    RecipientPlan::Deliver { her, .. } => *her,
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(to, vec![HerId(81001), HerId(81002)]);
        }
        other => panic!("{other:?}"),
    }
}

/// A signed UTF-16 document is well-formed (XML 1.0 §4.3.3: every processor reads UTF-16) and is
/// delivered, not answered T01; its MsgHead is read through the transcoded text, and the content
/// hash (duplicate detection) is over the bytes as signed, not over the transcoded text: a
/// signature covers those bytes, so a resend of them is the same message.
#[test]
fn a_signed_utf16_message_is_delivered() {
    let ctx = context();
    let text = String::from_utf8(fixture("delivered/foresporsel-gp-to-nursing-home.xml"))
        .unwrap()
        .replace(r#"encoding="UTF-8""#, r#"encoding="UTF-16""#);
    for (name, bom, big_endian) in [("LE", [0xFF, 0xFE], false), ("BE", [0xFE, 0xFF], true)] {
        let xml = support::utf16(&text, big_endian, &bom);
        match plan_signed_by_gp(&ctx, &xml) {
            Plan::Message(m) => {
                assert_eq!(m.sender, HerId(82001), "{name}");
                assert_eq!(m.msg_type, "DIALOG_FORESPORSEL", "{name}");
                assert_eq!(m.head.msg_type.dn.as_deref(), Some("Forespørsel"), "{name}");
                assert!(m.msg_id.is_uuid(), "{name}");
                assert!(
                    matches!(m.recipients.as_slice(), [RecipientPlan::Deliver { her, .. }] if *her == HerId(81001)),
                    "{name}: {:?}",
                    m.recipients
                );
                assert_eq!(
                    m.content_sha256,
                    helsemelding::store::content_sha256(&xml),
                    "{name}: hash over the signed bytes"
                );
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn unreadable_headers_are_dead_lettered_with_the_reason() {
    let ctx = context();
    let (to, cond, why) = refused(plan(
        &ctx,
        b"x",
        Err(HeaderError::Missing {
            header: "fromHerId",
        }),
        None,
    ));
    assert_eq!((to, cond), (None, condition::INVALID_HEADERS));
    assert!(why.contains("fromHerId"), "{why}");
}

#[test]
fn an_unknown_sender_is_dead_lettered() {
    let ctx = context();
    let (to, cond, _) = refused(plan(
        &ctx,
        b"x",
        Ok(headers(12345, 81001, ContentType::SignedCms)),
        Some("guest"),
    ));
    assert_eq!((to, cond), (None, condition::UNKNOWN_SENDER));
}

#[test]
fn an_amqp_user_not_registered_for_the_sender_is_spoofing() {
    let ctx = context();
    let (to, cond, why) = refused(plan(
        &ctx,
        b"x",
        Ok(headers(82001, 81001, ContentType::SignedCms)),
        Some("mallory"),
    ));
    assert_eq!((to, cond), (Some(HerId(82001)), condition::SPOOFING));
    assert!(why.contains("mallory"), "{why}");
    let (_, cond, _) = refused(plan(
        &ctx,
        b"x",
        Ok(headers(82001, 81001, ContentType::SignedCms)),
        None,
    ));
    assert_eq!(cond, condition::SPOOFING);
}

#[test]
fn unsigned_messages_are_refused_when_signatures_are_required() {
    let ctx = context();
    let xml = fixture("delivered/foresporsel-gp-to-nursing-home.xml");
    let (to, cond, _) = refused(plan(
        &ctx,
        &xml,
        Ok(headers(82001, 81001, ContentType::Xml)),
        Some("guest"),
    ));
    assert_eq!((to, cond), (Some(HerId(82001)), condition::UNSIGNED));
}

#[test]
fn a_body_over_the_limit_is_refused_before_it_is_parsed() {
    let mut ctx = context();
    ctx.policy.max_message_bytes = 1000;
    let (_, cond, why) = refused(plan(
        &ctx,
        &vec![b'<'; 1001],
        Ok(headers(82001, 81001, ContentType::SignedCms)),
        Some("guest"),
    ));
    assert_eq!(cond, condition::TOO_LARGE);
    assert!(why.contains("1001"), "{why}");
}

#[test]
fn garbage_instead_of_cms_goes_to_the_senders_error_queue() {
    let ctx = context();
    let (to, cond, _) = refused(plan(
        &ctx,
        b"\x30\x03garbage",
        Ok(headers(82001, 81001, ContentType::SignedCms)),
        Some("guest"),
    ));
    assert_eq!(
        (to, cond),
        (Some(HerId(82001)), condition::INVALID_ENVELOPE)
    );
}

#[test]
fn several_faults_give_one_error_each() {
    // E10 (MsgId not a UUID) and E21 (unknown level-2 service) at once: one AppRec, two Errors
    // (HIS 80415:2012 §3.3.4, Systemtest #26).
    let ctx = context();
    let xml = String::from_utf8(fixture("rejected/E21-unknown-level2-service.xml"))
        .unwrap()
        .replace("6a1f0c2e-0105-4d6e-9a51-000000000105", "NOT-A-UUID-42");
    let body = signer(82001)
        .sign(xml.as_bytes(), time::OffsetDateTime::now_utc())
        .unwrap();
    match plan(
        &ctx,
        &body,
        Ok(headers(82001, 81999, ContentType::SignedCms)),
        Some("guest"),
    ) {
        Plan::Message(m) => match &m.recipients[0] {
            RecipientPlan::Reject { errors, .. } => {
                let codes: Vec<_> = errors.iter().map(|e| e.code).collect();
                assert_eq!(codes, vec![ErrorCode::E10, ErrorCode::E21]);
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}
