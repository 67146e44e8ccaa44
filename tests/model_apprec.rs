//! AppRec parse and build. Every AppRec built here is checked by libxml2 against the official
//! schema (`../shared/tools/xsd-oracle`), and read back with `AppRec::parse`.
//! Test names cite the Directorate's AppRec system tests (`standards/testcases/apprec-systemtest.tsv`).

mod support;

use helsemelding::address::{PartyAddress, RecipientRole};
use helsemelding::apprec::*;
use helsemelding::codes::{AppRecStatus, ErrorCode};
use helsemelding::ids::{HerId, MsgId};
use helsemelding::msghead::{MsgHead, Party};
use std::path::PathBuf;
use support::model::*;
use support::xsd::oracle_verdicts;

const PLO_COP: &str = "plo-v1.5/sarepta-akseptansetest/Testcase-mottak-Pasientlogistikk_dodsfall-v1_5/Case1-19-Pasientlogistikk_dodsfall-v1_5.xml";
const DIALOG_SVAR: &str =
    "dialogmelding-v1.0/sarepta-eksempel/Dialogmelding_svar_foresporsel_PLO_v1-0.xml";
const KS_SERVICE: &str = "dialogmelding-v1.1/ks-no-fiks-nhn-client/samsvar-test-message.xml";
const WITH_ADDRESS: &str = "dialogmelding-v1.0/sarepta-test/Case2_1-Dialogmelding-Foresporsel-Konsultasjon_fra_fastlegen.xml";
const HELSENORGE: &str = "dialogmelding-v1.1/helsenorge-messaging/Helsenorge_Message.xml";

fn msghead(rel: &str) -> MsgHead {
    MsgHead::parse(&corpus(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn now() -> time::OffsetDateTime {
    time::macros::datetime!(2026-11-23 12:00:00 UTC)
}

fn input<'a>(
    m: &'a MsgHead,
    which: usize,
    version: AppRecVersion,
    status: AppRecStatus,
    errors: Vec<AppRecError>,
) -> AppRecInput<'a> {
    let (r, party) = m.recipients().into_iter().nth(which).expect("recipient");
    AppRecInput {
        version,
        original: m,
        recipient: party,
        role: r.role,
        status,
        errors,
        id: MsgId::random(),
        now: now(),
        software_name: "helsemelding".into(),
        software_version: "0.1.0".into(),
        v1_0_primary_role: PrimaryRoleV1_0::default(),
    }
}

/// Writes every document and asks libxml2 about all of them in one run.
fn assert_all_valid(docs: &[(String, String)]) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = docs
        .iter()
        .enumerate()
        .map(|(i, (name, xml))| {
            let p = dir.path().join(format!("{i:03}-{name}.xml"));
            std::fs::write(&p, xml).unwrap();
            p
        })
        .collect();
    for (v, (name, xml)) in oracle_verdicts(&files).iter().zip(docs) {
        assert_eq!(
            v.verdict, "VALID",
            "{name}: {} (schema {})\n{xml}",
            v.error, v.schema
        );
        assert!(v.schema.starts_with("apprec-"), "{name}: {}", v.schema);
    }
}

fn e(code: ErrorCode, ot: Option<&str>) -> AppRecError {
    AppRecError {
        code,
        ot: ot.map(Into::into),
    }
}

#[test]
fn corpus_apprecs_parse() {
    let files = corpus_files(&["apprec-v1.0", "apprec-v1.1"]);
    let verdicts = oracle_verdicts(&files);
    let mut n = 0;
    for v in verdicts.iter().filter(|v| v.verdict == "VALID") {
        let a = AppRec::parse(&std::fs::read(&v.path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", v.path.display()));
        assert_eq!(a.msg_type.v, "APPREC", "{}", v.path.display());
        n += 1;
    }
    assert!(n >= 12, "{n}");

    let a = AppRec::parse(&corpus("apprec-v1.1/ks-no-fiks-nhn-client/all-data.xml")).unwrap();
    assert_eq!(a.version, AppRecVersion::V1_1);
    assert_eq!(a.id.as_str(), "f6d24037-a43f-4509-8dfa-88b578554858");
    assert_eq!(a.gen_date, "2025-05-26T00:00:00");
    assert_eq!(a.status(), Some(AppRecStatus::Ok));
    assert_eq!(
        a.sender.address(),
        PartyAddress {
            level1: Some(HerId(8142987)),
            level2: Some(HerId(8143060))
        }
    );
    assert_eq!(
        a.receiver.address(),
        PartyAddress {
            level1: Some(HerId(998877)),
            level2: Some(HerId(555111))
        }
    );
    let Hcp::Inst(i) = &a.sender.hcp else {
        panic!()
    };
    assert_eq!(i.persons[0].name.as_deref(), Some("Test Testperson"));
    assert_eq!(a.original.msg_type.v, "DIALOG_HELSEFAGLIG");
    assert_eq!(a.original.issue_date, "2025-05-25T00:00:00");
    assert_eq!(
        a.original.id.as_str(),
        "5d79bd68-a58c-4599-a4e7-9db28ea20099"
    );

    let a = AppRec::parse(&corpus("apprec-v1.0/sarepta-eksempel/apprec-eksempel.xml")).unwrap();
    assert_eq!(a.version, AppRecVersion::V1_0);
    assert_eq!(a.status(), Some(AppRecStatus::OkPartialError));
    assert!(a.errors.len() >= 4);
    assert_eq!(a.errors[0].v, "53");
    assert_eq!(a.errors[0].code(), None, "list 8223 is not 8221");
    assert_eq!(a.sender.address().level1, None, "ENH is not a HER-id");

    for f in [
        "apprec-v1.0/ks-no-fiks-nhn-client/example-avvist.xml",
        "apprec-v1.1/ks-no-fiks-nhn-client/example-avvist.xml",
    ] {
        let a = AppRec::parse(&corpus(f)).unwrap();
        assert_eq!(a.status(), Some(AppRecStatus::Rejected), "{f}");
        assert!(!a.errors.is_empty(), "{f}");
    }
    let e = AppRec::parse(&corpus(DIALOG_SVAR)).unwrap_err();
    assert_eq!(e.apprec_code(), ErrorCode::T10);
}

#[test]
fn every_built_apprec_validates_both_versions_all_recipients() {
    let sources = [
        PLO_COP,
        DIALOG_SVAR,
        KS_SERVICE,
        HELSENORGE,
        WITH_ADDRESS,
        "plo-v1.6/sarepta-eksempel/Innleggelsesrapport_v1-6_Ny.xml",
        "dialogmelding-v1.1/sarepta-eksempel/Helsefaglig dialog.xml",
        "dialogmelding-v1.0/ks-no-fiks-nhn-client/dialog-notat-webmed-test.xml",
    ];
    let mut docs = Vec::new();
    for src in sources {
        let m = msghead(src);
        for which in 0..m.recipients().len() {
            for version in [AppRecVersion::V1_0, AppRecVersion::V1_1] {
                for (status, errors) in [
                    (AppRecStatus::Ok, vec![]),
                    (
                        AppRecStatus::Rejected,
                        vec![
                            e(
                                ErrorCode::E21,
                                Some("Tjenesten er overført til <St. Olavs> & \"co\""),
                            ),
                            e(ErrorCode::T02, None),
                            e(ErrorCode::X99, Some("linje 1\nlinje 2 'sitat'")),
                        ],
                    ),
                ] {
                    let inp = input(&m, which, version, status, errors.clone());
                    let xml = build_apprec(&inp);
                    // parse(build(x)) gives x back.
                    let a = AppRec::parse(xml.as_bytes())
                        .unwrap_or_else(|e| panic!("{src}: {e}\n{xml}"));
                    assert_eq!(a.version, version);
                    assert_eq!(a.id, inp.id);
                    assert_eq!(a.status(), Some(status));
                    assert_eq!(a.gen_date_parsed, Some(now()));
                    assert_eq!(a.mig_version, version.mig_version());
                    assert_eq!(a.software_name.as_deref(), Some("helsemelding"));
                    assert_eq!(a.errors.len(), errors.len());
                    for (got, want) in a.errors.iter().zip(&errors) {
                        assert_eq!(got.code(), Some(want.code));
                        assert_eq!(got.ot, want.ot);
                        assert_eq!(got.dn.as_deref(), Some(want.code.text()));
                    }
                    assert_eq!(a.original.id, m.msg_id);
                    assert_eq!(a.original.issue_date, m.gen_date);
                    assert_eq!(
                        a.original.msg_type,
                        helsemelding::msghead::Code {
                            s: None,
                            ..m.msg_type.clone()
                        }
                    );
                    let (r, _) = m.recipients().into_iter().nth(which).unwrap();
                    assert_eq!(
                        a.sender.address(),
                        r.address,
                        "{src}: AppRec sender = the recipient as addressed"
                    );
                    assert_eq!(
                        a.receiver.address(),
                        m.sender_address(),
                        "{src}: AppRec receiver = original sender"
                    );
                    docs.push((
                        format!(
                            "{}-{which}-{version:?}-{status:?}",
                            src.rsplit('/').next().unwrap().replace(' ', "_")
                        ),
                        xml,
                    ));
                }
            }
        }
    }
    assert!(docs.len() >= 30);
    assert_all_valid(&docs);
}

/// Systemtest #2–4: OriginalMsgId = original MsgId, MsgType (V and DN), GenDate.
#[test]
fn systemtest_2_to_4_original_msg_id() {
    let m = msghead(DIALOG_SVAR);
    let xml = build_apprec(&input(&m, 0, AppRecVersion::V1_0, AppRecStatus::Ok, vec![]));
    assert!(xml.contains("<OriginalMsgId>\n    <MsgType V=\"DIALOG_SVAR\" DN=\"Svar på forespørsel\"/>\n    <IssueDate>2018-01-24T15:30:36</IssueDate>\n    <Id>42001f60-0117-11e8-8f1a-0800200c9a66</Id>"), "{xml}");
}

/// Systemtest #5: addresses mirrored, with names, every identifier and the address.
#[test]
fn systemtest_5_mirrored_addresses() {
    let m = msghead(HELSENORGE);
    let a = AppRec::parse(
        build_apprec(&input(&m, 0, AppRecVersion::V1_1, AppRecStatus::Ok, vec![])).as_bytes(),
    )
    .unwrap();
    // Sender of the AppRec = Receiver of the fagmelding: Nanset Legekontor, HER 109989, ENH as
    // AdditionalId, the GP as HCPerson.
    let Hcp::Inst(s) = &a.sender.hcp else {
        panic!()
    };
    assert_eq!(s.unit.name.as_deref(), Some("Nanset Legekontor"));
    assert_eq!(
        (
            s.unit.id.as_deref(),
            s.unit.type_id.as_ref().map(|t| t.v.as_str())
        ),
        (Some("109989"), Some("HER"))
    );
    assert_eq!(s.unit.additional_ids.len(), 1);
    assert_eq!(
        (
            s.unit.additional_ids[0].id.as_str(),
            s.unit.additional_ids[0].kind.v.as_str()
        ),
        ("971318864", "ENH")
    );
    assert_eq!(s.persons[0].name.as_deref(), Some("August September"));
    assert_eq!(s.persons[0].her_id(), Some(HerId(91095)));
    // Receiver of the AppRec = Sender of the fagmelding: Helsedirektoratet (ENH) / Helsenorge.no (HER).
    let Hcp::Inst(r) = &a.receiver.hcp else {
        panic!()
    };
    assert_eq!(r.unit.name.as_deref(), Some("Helsedirektoratet"));
    assert_eq!(r.depts[0].name.as_deref(), Some("Helsenorge.no"));
    assert_eq!(r.depts[0].her_id(), Some(HerId(109989)));
    let xml = build_apprec(&input(
        &msghead(WITH_ADDRESS),
        0,
        AppRecVersion::V1_0,
        AppRecStatus::Ok,
        vec![],
    ));
    assert!(
        xml.contains("<Address>\n        <Type/>\n        <StreetAdr>Alveveien 99</StreetAdr>\n        <PostalCode>2560</PostalCode>\n        <City>Alvdal</City>"),
        "the postal address is mirrored:\n{xml}"
    );
}

/// Systemtest #7 (v1.1 PRIM), #8 (v1.0 REQ), #9 (v1.0 SPR), #10 (COP), receiver roles AVS / RECEIVER
/// (apprec-enhetstest #9).
#[test]
fn systemtest_7_to_10_roles() {
    let m = msghead(PLO_COP);
    let role = |xml: &str| AppRec::parse(xml.as_bytes()).unwrap();
    let a = role(&build_apprec(&input(
        &m,
        0,
        AppRecVersion::V1_1,
        AppRecStatus::Ok,
        vec![],
    )));
    assert_eq!(a.sender.role.as_ref().map(|r| r.v.as_str()), Some("PRIM"));
    assert_eq!(a.receiver.role.as_ref().map(|r| r.v.as_str()), Some("AVS"));
    let mut i = input(&m, 0, AppRecVersion::V1_0, AppRecStatus::Ok, vec![]);
    i.v1_0_primary_role = PrimaryRoleV1_0::Req;
    let a = role(&build_apprec(&i));
    assert_eq!(
        a.sender
            .role
            .as_ref()
            .map(|r| (r.v.as_str(), r.dn.as_deref())),
        Some(("REQ", Some("Rekvirent")))
    );
    assert_eq!(
        a.receiver.role.as_ref().map(|r| r.v.as_str()),
        Some("RECEIVER")
    );
    i.v1_0_primary_role = PrimaryRoleV1_0::Spr;
    let a = role(&build_apprec(&i));
    assert_eq!(
        a.sender
            .role
            .as_ref()
            .map(|r| (r.v.as_str(), r.dn.as_deref())),
        Some(("SPR", Some("Tjenesteyter")))
    );
    for v in [AppRecVersion::V1_0, AppRecVersion::V1_1] {
        let a = role(&build_apprec(&input(&m, 1, v, AppRecStatus::Ok, vec![])));
        assert_eq!(
            a.sender
                .role
                .as_ref()
                .map(|r| (r.v.as_str(), r.dn.as_deref())),
            Some(("COP", Some("Kopimottaker"))),
            "{v:?}"
        );
        // The copy recipient (Magnar Koman), not the primary, is the AppRec sender.
        let Hcp::Inst(s) = &a.sender.hcp else {
            panic!()
        };
        assert_eq!(s.persons[0].name.as_deref(), Some("Magnar Koman"));
    }
}

/// Systemtest #11 and #40: primary and copy in the same organisation get one AppRec each, with their
/// own role and own address; #35–39: the same for negative AppRecs (E21).
#[test]
fn systemtest_11_35_to_40_one_apprec_per_recipient() {
    let m = msghead(PLO_COP);
    for (status, errors) in [
        (AppRecStatus::Ok, vec![]),
        (AppRecStatus::Rejected, vec![e(ErrorCode::E21, None)]),
    ] {
        let built: Vec<AppRec> = m
            .recipients()
            .iter()
            .enumerate()
            .map(|(i, _)| {
                AppRec::parse(
                    build_apprec(&input(&m, i, AppRecVersion::V1_1, status, errors.clone()))
                        .as_bytes(),
                )
                .unwrap()
            })
            .collect();
        assert_eq!(built.len(), 2);
        assert_eq!(built[0].sender.role.as_ref().unwrap().v, "PRIM");
        assert_eq!(built[1].sender.role.as_ref().unwrap().v, "COP");
        assert_ne!(built[0].id, built[1].id);
        assert_ne!(built[0].sender, built[1].sender);
        for a in &built {
            assert_eq!(a.status(), Some(status));
            assert_eq!(
                a.errors.iter().map(|e| e.code()).collect::<Vec<_>>(),
                errors.iter().map(|e| Some(e.code)).collect::<Vec<_>>()
            );
        }
    }
}

/// Systemtest #19 (unknown person) and #20 (unknown service): every identifier as received is
/// returned, even an invalid one ("369.767" is no HER-id).
#[test]
fn systemtest_19_20_all_identifiers_returned_even_when_wrong() {
    let m = msghead(PLO_COP);
    let xml = build_apprec(&input(
        &m,
        0,
        AppRecVersion::V1_0,
        AppRecStatus::Rejected,
        vec![e(ErrorCode::E21, None)],
    ));
    let a = AppRec::parse(xml.as_bytes()).unwrap();
    let Hcp::Inst(s) = &a.sender.hcp else {
        panic!()
    };
    let p = &s.persons[0];
    assert_eq!(p.name.as_deref(), Some("August September"));
    assert_eq!(
        (p.id.as_deref(), p.type_id.as_ref().map(|t| t.v.as_str())),
        (Some("369.767"), Some("HER"))
    );
    assert_eq!(
        (
            p.additional_ids[0].id.as_str(),
            p.additional_ids[0].kind.v.as_str()
        ),
        ("9144897", "HPR")
    );
    assert_eq!(s.unit.additional_ids[0].id, "971318864");

    // An unknown level-2 service (#20): a made-up service id is mirrored as Dept.
    let text = String::from_utf8(corpus(KS_SERVICE))
        .unwrap()
        .replace("<Id>8143060</Id>", "<Id>99999999</Id>");
    let m = MsgHead::parse(text.as_bytes()).unwrap();
    let a = AppRec::parse(
        build_apprec(&input(
            &m,
            0,
            AppRecVersion::V1_1,
            AppRecStatus::Rejected,
            vec![e(ErrorCode::E21, None)],
        ))
        .as_bytes(),
    )
    .unwrap();
    let Hcp::Inst(s) = &a.sender.hcp else {
        panic!()
    };
    assert_eq!(s.depts[0].id.as_deref(), Some("99999999"));
    assert_eq!(
        s.depts[0].name.as_deref(),
        Some("Saksbehandling pasientopplysninger")
    );
}

/// Systemtest #26: one Error per distinct fault, OT escaped and preserved.
#[test]
fn systemtest_26_several_errors() {
    let m = msghead(KS_SERVICE);
    let errors = vec![
        e(ErrorCode::E10, None),
        e(ErrorCode::E21, Some("a<b & \"c\" > 'd'")),
        e(ErrorCode::X99, Some("annen feil")),
    ];
    let xml = build_apprec(&input(
        &m,
        0,
        AppRecVersion::V1_1,
        AppRecStatus::Rejected,
        errors,
    ));
    assert!(xml.contains(r#"<Error V="E21" S="2.16.578.1.12.4.1.1.8221" DN="Mottaker finnes ikke" OT="a&lt;b &amp; &quot;c&quot; &gt; &apos;d&apos;"/>"#), "{xml}");
    let a = AppRec::parse(xml.as_bytes()).unwrap();
    assert_eq!(
        a.errors.iter().filter_map(|e| e.code()).collect::<Vec<_>>(),
        vec![ErrorCode::E10, ErrorCode::E21, ErrorCode::X99]
    );
    assert_eq!(a.errors[1].ot.as_deref(), Some("a<b & \"c\" > 'd'"));
}

/// A clinician addressed directly as OtherReceiver becomes HCP/HCProf; names with markup are escaped.
#[test]
fn lone_professional_and_hostile_names() {
    let text = String::from_utf8(corpus(KS_SERVICE)).unwrap().replace(
        "</Receiver>",
        "</Receiver><OtherReceiver><RoleReceiver V=\"COP\"/><HealthcareProfessional><FamilyName>O'Brien &amp; &lt;Sønn&gt;</FamilyName><GivenName>Kari</GivenName><Ident><Id>12345</Id><TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.8116\"/></Ident></HealthcareProfessional></OtherReceiver>",
    );
    let m = MsgHead::parse(text.as_bytes()).unwrap();
    assert!(matches!(m.recipients()[1].1, Party::Professional(_)));
    let mut docs = Vec::new();
    for v in [AppRecVersion::V1_0, AppRecVersion::V1_1] {
        let xml = build_apprec(&input(
            &m,
            1,
            v,
            AppRecStatus::Rejected,
            vec![e(ErrorCode::E21, None)],
        ));
        let a = AppRec::parse(xml.as_bytes()).unwrap();
        let Hcp::Prof(p) = &a.sender.hcp else {
            panic!()
        };
        assert_eq!(p.name.as_deref(), Some("Kari O'Brien & <Sønn>"));
        assert_eq!(
            a.sender.address(),
            PartyAddress {
                level1: None,
                level2: Some(HerId(12345))
            }
        );
        assert_eq!(a.sender.role.as_ref().unwrap().v, "COP");
        docs.push((format!("hcprof-{v:?}"), xml));
    }
    assert_all_valid(&docs);
}

#[test]
fn recipient_role_of_recipients_is_what_build_uses() {
    let m = msghead(PLO_COP);
    let r = m.recipients();
    assert_eq!(r[0].0.role, RecipientRole::Primary);
    assert_eq!(r[1].0.role, RecipientRole::Copy);
}

/// Systemtest #6 (HITS 1168 §11.2): the original sender's signing clinician is not mirrored when
/// the sender's service (level 2) is given; without a service, the clinician *is* the level 2.
#[test]
fn systemtest_6_signing_clinician_not_mapped_with_service_address() {
    let text = String::from_utf8(corpus(KS_SERVICE)).unwrap();
    let signer = "<HealthcareProfessional><FamilyName>Signer</FamilyName><GivenName>Sara</GivenName><Ident><Id>7654321</Id><TypeId V=\"HPR\" S=\"2.16.578.1.12.4.1.1.8116\"/></Ident></HealthcareProfessional>";
    let sender_end = text.find("</Sender>").unwrap();
    let org_end = text[..sender_end].rfind("</Organisation>").unwrap();
    let with_signer = format!("{}{signer}{}", &text[..org_end], &text[org_end..]);
    let m = MsgHead::parse(with_signer.as_bytes()).unwrap();
    let Party::Organisation(o) = &m.sender else {
        panic!()
    };
    assert!(
        o.professional.is_some() && o.organisation.is_some(),
        "fixture has service and signer"
    );
    let mut docs = Vec::new();
    for v in [AppRecVersion::V1_0, AppRecVersion::V1_1] {
        let xml = build_apprec(&input(&m, 0, v, AppRecStatus::Ok, vec![]));
        assert!(!xml.contains("Signer") && !xml.contains("7654321"), "{xml}");
        let a = AppRec::parse(xml.as_bytes()).unwrap();
        assert_eq!(a.receiver.address(), m.sender_address());
        let Hcp::Inst(r) = &a.receiver.hcp else {
            panic!()
        };
        assert_eq!(r.depts[0].name.as_deref(), Some("Meldingsvalidering"));
        docs.push((format!("signer-{v:?}"), xml));
    }
    assert_all_valid(&docs);
    // Without a service, the sender's clinician is its level 2 and is mirrored (DIALOG_SVAR's GP).
    let m = msghead(DIALOG_SVAR);
    let a = AppRec::parse(
        build_apprec(&input(&m, 0, AppRecVersion::V1_0, AppRecStatus::Ok, vec![])).as_bytes(),
    )
    .unwrap();
    let Hcp::Inst(r) = &a.receiver.hcp else {
        panic!()
    };
    assert_eq!(r.persons.len(), 1);
    assert_eq!(a.receiver.address().level2, Some(HerId(91101)));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
    /// Any reason text survives build → parse, minus the characters XML 1.0 cannot carry.
    #[test]
    fn any_ot_text_round_trips(ot in "\\PC*|[<>&\"'\\t\\n\\r\\u{1}\\u{FFFE} a-zæøå]*") {
        let m = msghead(KS_SERVICE);
        let xml = build_apprec(&input(&m, 0, AppRecVersion::V1_1, AppRecStatus::Rejected, vec![e(ErrorCode::X99, Some(&ot))]));
        let a = AppRec::parse(xml.as_bytes()).map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{e}\n{xml}")))?;
        let expected: String = ot.chars().filter(|&c| ((c as u32) >= 0x20 || matches!(c, '\t' | '\n' | '\r')) && c != '\u{FFFE}' && c != '\u{FFFF}').collect();
        proptest::prop_assert_eq!(a.errors[0].ot.as_deref(), Some(expected.as_str()));
    }
}

#[test]
fn incomplete_apprecs_name_the_missing_element() {
    let text = String::from_utf8(corpus("apprec-v1.1/ks-no-fiks-nhn-client/all-data.xml")).unwrap();
    let start = text.find("<OriginalMsgId>").unwrap();
    let end = text.find("</OriginalMsgId>").unwrap() + "</OriginalMsgId>".len();
    let e = AppRec::parse(format!("{}{}", &text[..start], &text[end..]).as_bytes()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "required element AppRec/OriginalMsgId is missing"
    );
    assert_eq!(e.apprec_code(), ErrorCode::T02);
    let e = AppRec::parse(
        text.replace("<HCP>", "<HCPx>")
            .replace("</HCP>", "</HCPx>")
            .as_bytes(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "required element AppRec/Sender/HCP is missing"
    );
}
