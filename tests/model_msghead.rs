//! MsgHead extraction over the real corpus (`../shared/corpus/`): every schema-valid MsgHead parses,
//! and spot checks against the files' text.

mod support;

use helsemelding::address::RecipientRole;
use helsemelding::ids::HerId;
use helsemelding::msghead::{Ack, ModelError, MsgHead, Party, PayloadStandard};
use support::model::*;
use support::xsd::oracle_verdicts;

fn parse(rel: &str) -> MsgHead {
    MsgHead::parse(&corpus(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn every_schema_valid_msghead_in_the_corpus_parses() {
    let files = corpus_files(&[
        "dialogmelding-v1.0",
        "dialogmelding-v1.1",
        "plo-v1.5",
        "plo-v1.6",
        "nav-fellesformat",
    ]);
    let verdicts = oracle_verdicts(&files);
    let valid: Vec<_> = verdicts
        .iter()
        .filter(|v| v.verdict == "VALID" && v.schema.starts_with("drivers/msghead"))
        .collect();
    assert!(
        valid.len() >= 190,
        "expected the corpus' ~190 valid MsgHeads, oracle found {}",
        valid.len()
    );
    let mut by_payload = std::collections::BTreeMap::new();
    for v in &valid {
        let bytes = std::fs::read(&v.path).unwrap();
        let m = MsgHead::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", v.path.display()));
        assert!(!m.msg_id.as_str().is_empty(), "{}", v.path.display());
        assert!(!m.msg_type.v.is_empty(), "{}", v.path.display());
        // The oracle picks the driver schema by payload namespace; our classification must agree.
        let expected = match v.schema.as_str() {
            "drivers/msghead+dialogmelding-v1.0.xsd" => Some(PayloadStandard::Dialogmelding1_0),
            "drivers/msghead+dialogmelding-v1.1.xsd" => Some(PayloadStandard::Dialogmelding1_1),
            "drivers/msghead+plo-v1.5.xsd" => Some(PayloadStandard::Plo1_5),
            "drivers/msghead+plo-v1.6.xsd" => Some(PayloadStandard::Plo1_6),
            _ => None,
        };
        if let Some(e) = expected {
            // Helsenorge files declare Dialogmelding 1.1 somewhere but may carry another payload first.
            if !matches!(m.payload, PayloadStandard::Other(_)) {
                assert_eq!(m.payload, e, "{}", v.path.display());
            }
        }
        *by_payload.entry(m.payload.to_string()).or_insert(0) += 1;
        // Debug output never carries patient data: there is none in the model.
        let dbg = format!("{m:?}");
        assert!(
            !dbg.contains("Patient {") && !dbg.contains("DateOfBirth"),
            "{}",
            v.path.display()
        );
    }
    println!("parsed {} valid MsgHeads: {by_payload:?}", valid.len());
    assert!(by_payload.contains_key("PLO 1.5") && by_payload.contains_key("PLO 1.6"));
    assert!(
        by_payload.contains_key("Dialogmelding 1.0")
            && by_payload.contains_key("Dialogmelding 1.1")
    );
}

#[test]
fn plo_copy_recipient_and_invalid_her_ids() {
    let m = parse("plo-v1.5/sarepta-akseptansetest/Testcase-mottak-Pasientlogistikk_dodsfall-v1_5/Case1-19-Pasientlogistikk_dodsfall-v1_5.xml");
    assert_eq!(m.msg_type.v, "LOG_DOD");
    assert_eq!(m.msg_type.dn.as_deref(), Some("Orientering om dødsfall"));
    assert_eq!(m.msg_id.as_str(), "141d4a13-7ab4-11df-8c4a-0800200c9a66");
    assert!(m.msg_id.is_uuid());
    assert_eq!(m.gen_date, "2007-01-20T04:30:47.0Z");
    assert_eq!(
        m.gen_date_parsed,
        Some(time::macros::datetime!(2007-01-20 04:30:47 UTC))
    );
    assert_eq!(m.gen_date_unzoned, None);
    assert_eq!(m.mig_version, "v1.2 2006-05-24");
    assert_eq!(m.payload, PayloadStandard::Plo1_5);
    // HER "369.767" on the clinician is not a HER-id: level 2 counts as missing.
    assert_eq!(m.sender_address().level1, Some(HerId(56704)));
    assert_eq!(m.sender_address().level2, None);
    let r = m.recipients();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].0.role, RecipientRole::Primary);
    assert_eq!(r[1].0.role, RecipientRole::Copy);
    assert_eq!(m.other_receivers[0].role.v, "COP");
    assert_eq!(r[1].0.address.level1, Some(HerId(56704)));
    let Party::Organisation(cop) = r[1].1 else {
        panic!("copy recipient is an organisation")
    };
    let hcp = cop
        .professional
        .as_ref()
        .expect("clinician kept as address");
    assert_eq!(hcp.display_name(), "Magnar Koman");
    // The patient is identified by an H-number only: kinds are kept, values are not.
    assert!(m.patient.present);
    assert_eq!(m.patient.ident_kinds, vec!["HNR".to_string()]);
    assert!(m.patient.has_family_name && m.patient.has_given_name);
    assert!(!m.patient.sufficiently_identified());
    let dbg = format!("{m:?}");
    assert!(
        !dbg.contains("15476500548") && !dbg.contains("Gundersen") && !dbg.contains("Roland"),
        "{dbg}"
    );
}

#[test]
fn dialog_svar_conversation_ref_and_levels() {
    let m =
        parse("dialogmelding-v1.0/sarepta-eksempel/Dialogmelding_svar_foresporsel_PLO_v1-0.xml");
    assert_eq!(m.msg_type.v, "DIALOG_SVAR");
    assert_eq!(m.msg_id.as_str(), "42001f60-0117-11e8-8f1a-0800200c9a66");
    let c = m.conversation_ref.as_ref().expect("ConversationRef");
    assert_eq!(c.ref_to_parent, "f0f88210-0111-11e8-8f1a-0800200c9a66");
    assert_eq!(
        c.ref_to_conversation,
        "f0f88210-0111-11e8-8f1a-0800200c9a66"
    );
    assert_eq!(m.gen_date, "2018-01-24T15:30:36");
    assert_eq!(m.gen_date_parsed, None, "no offset");
    assert_eq!(
        m.gen_date_unzoned,
        Some(time::macros::datetime!(2018-01-24 15:30:36))
    );
    // Sender: level 2 is a person (HealthcareProfessional); receiver: level 2 is a service.
    assert_eq!(
        (m.sender_address().level1, m.sender_address().level2),
        (Some(HerId(91096)), Some(HerId(91101)))
    );
    let r = m.recipients();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].0.address.level1, r[0].0.address.level2),
        (Some(HerId(99387)), Some(HerId(5078)))
    );
    assert_eq!(m.payload, PayloadStandard::Dialogmelding1_0);
    assert!(m.patient.sufficiently_identified());
    assert_eq!(m.patient.ident_kinds, vec!["FNR".to_string()]);
    assert!(m.patient.has_birth_date && m.patient.has_sex);
    assert!(!format!("{m:?}").contains("Danser"));
}

#[test]
fn helsenorge_and_ks_services() {
    let m = parse("dialogmelding-v1.1/helsenorge-messaging/Helsenorge_Message.xml");
    assert_eq!(m.msg_type.v, "DIALOG_INNBYGGER_EKONTAKT");
    assert_eq!(m.msg_id.as_str(), "8325fcba-89a9-11e3-baa8-0800200c9a66");
    // Sender identified by ENH only at level 1: level 1 HER-id missing.
    assert_eq!(
        (m.sender_address().level1, m.sender_address().level2),
        (None, Some(HerId(109989)))
    );
    // Receiver's person HER-id has S=8116: matched on V="HER" regardless.
    assert_eq!(m.recipients()[0].0.address.level2, Some(HerId(91095)));
    assert_eq!(m.recipients()[0].0.address.level1, Some(HerId(109989)));

    let k = parse("dialogmelding-v1.1/ks-no-fiks-nhn-client/samsvar-test-message.xml");
    assert_eq!(k.msg_type.v, "DIALOG_HELSEFAGLIG");
    assert_eq!(k.msg_id.as_str(), "615aba81-6a88-41d1-a9f5-90b28cfc8b73");
    assert_eq!(
        (k.sender_address().level1, k.sender_address().level2),
        (Some(HerId(112374)), Some(HerId(8094866)))
    );
    let r = k.recipients();
    assert_eq!(
        (r[0].0.address.level1, r[0].0.address.level2),
        (Some(HerId(8142987)), Some(HerId(8143060)))
    );
    let Party::Organisation(o) = r[0].1 else {
        panic!()
    };
    assert_eq!(o.name, "KS-DIGITALE FELLESTJENESTER AS");
    assert_eq!(
        o.organisation.as_ref().unwrap().name,
        "Saksbehandling pasientopplysninger"
    );
    assert_eq!(k.payload, PayloadStandard::Dialogmelding1_1);
    assert_eq!(k.ack, None);
}

#[test]
fn prefixed_documents_and_ack_values() {
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<mh:MsgHead xmlns:mh="http://www.kith.no/xmlstds/msghead/2006-05-24">
 <mh:MsgInfo>
  <mh:Type V="DIALOG_NOTAT" DN="Notat"/><mh:MIGversion>v1.2 2006-05-24</mh:MIGversion>
  <mh:GenDate>2024-01-02T03:04:05+01:00</mh:GenDate><mh:MsgId>not-a-uuid</mh:MsgId>
  <mh:Ack V="F" DN="Kun ved feil"/>
  <mh:Sender><mh:Organisation><mh:OrganisationName>A &amp; B</mh:OrganisationName><mh:Ident><mh:Id>10</mh:Id><mh:TypeId V="HER"/></mh:Ident></mh:Organisation></mh:Sender>
  <mh:Receiver><mh:Organisation><mh:OrganisationName>C</mh:OrganisationName><mh:Ident><mh:Id>20</mh:Id><mh:TypeId V="HER"/></mh:Ident></mh:Organisation></mh:Receiver>
  <mh:OtherReceiver><mh:RoleReceiver V="COP"/><mh:HealthcareProfessional><mh:FamilyName>Lege</mh:FamilyName><mh:Ident><mh:Id>30</mh:Id><mh:TypeId V="HER"/></mh:Ident></mh:HealthcareProfessional></mh:OtherReceiver>
  <mh:OtherReceiver><mh:RoleReceiver V="XYZ"/><mh:Person><mh:FamilyName>Privat</mh:FamilyName></mh:Person></mh:OtherReceiver>
 </mh:MsgInfo>
 <mh:Document><mh:RefDoc><mh:MsgType V="XML"/><mh:Content><d:Dialogmelding xmlns:d="http://www.kith.no/xmlstds/dialog/2006-10-11"/></mh:Content></mh:RefDoc></mh:Document>
</mh:MsgHead>"#;
    let m = MsgHead::parse(xml).unwrap();
    assert_eq!(m.ack, Some(Ack::OnError));
    assert!(!m.msg_id.is_uuid());
    assert!(m.gen_date_parsed.is_some());
    assert_eq!(m.payload, PayloadStandard::Dialogmelding1_0);
    let Party::Organisation(s) = &m.sender else {
        panic!()
    };
    assert_eq!(s.name, "A & B");
    assert!(!m.patient.present);
    let r = m.recipients();
    assert_eq!(r.len(), 3);
    assert_eq!(
        (r[1].0.role, r[1].0.address.level1, r[1].0.address.level2),
        (RecipientRole::Copy, None, Some(HerId(30)))
    );
    assert_eq!(
        r[2].1,
        &Party::PrivatePerson,
        "a private person is not kept"
    );
    assert!(!format!("{m:?}").contains("Privat\""));
}

#[test]
fn bad_documents_get_specific_errors() {
    let e =
        MsgHead::parse(&corpus("apprec-v1.1/ks-no-fiks-nhn-client/example-ok.xml")).unwrap_err();
    assert!(matches!(e, ModelError::WrongRoot { .. }), "{e}");
    assert_eq!(e.apprec_code().code(), "T10");
    let e = MsgHead::parse(b"<MsgHead xmlns=\"http://www.kith.no/xmlstds/msghead/2006-05-24\"><MsgInfo><Type V=\"X\"/></MsgInfo></MsgHead>").unwrap_err();
    assert_eq!(
        e.to_string(),
        "required element MsgHead/MsgInfo/GenDate is missing"
    );
    assert_eq!(e.apprec_code().code(), "T02");
    let e = MsgHead::parse(b"<MsgHead><oops></MsgHead>").unwrap_err();
    assert_eq!(e.apprec_code().code(), "T01");
    let e = MsgHead::parse(
        b"<!DOCTYPE MsgHead [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><MsgHead>&x;</MsgHead>",
    )
    .unwrap_err();
    assert_eq!(e.apprec_code().code(), "T01");
}

#[test]
fn conversation_ref_parent_and_conversation_are_not_swapped() {
    let m = parse("plo-v1.6/sarepta-eksempel/Innleggelsesrapport_v1-6_Kansellering.xml");
    let c = m.conversation_ref.expect("ConversationRef");
    assert_eq!(c.ref_to_parent, "c5718400-0663-11e8-b566-0800200c9a66");
    assert_eq!(
        c.ref_to_conversation,
        "13a5da20-05c6-11e8-8f1a-0800200c9a66"
    );
    assert_eq!(m.payload, PayloadStandard::Plo1_6);
    // NAV test data writes RefToConversation first (schema-invalid, NOTES §8); extraction is by
    // name, so the values still land in the right fields.
    let text = String::from_utf8(corpus(
        "plo-v1.6/sarepta-eksempel/Innleggelsesrapport_v1-6_Kansellering.xml",
    ))
    .unwrap();
    let swapped = text.replace(
        "<RefToParent>c5718400-0663-11e8-b566-0800200c9a66</RefToParent>",
        "",
    ).replace(
        "<RefToConversation>13a5da20-05c6-11e8-8f1a-0800200c9a66</RefToConversation>",
        "<RefToConversation>13a5da20-05c6-11e8-8f1a-0800200c9a66</RefToConversation><RefToParent>c5718400-0663-11e8-b566-0800200c9a66</RefToParent>",
    );
    assert_ne!(swapped, text);
    let c = MsgHead::parse(swapped.as_bytes())
        .unwrap()
        .conversation_ref
        .unwrap();
    assert_eq!(c.ref_to_parent, "c5718400-0663-11e8-b566-0800200c9a66");
    assert_eq!(
        c.ref_to_conversation,
        "13a5da20-05c6-11e8-8f1a-0800200c9a66"
    );
}
