use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::*;

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| match Schemas::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/xsd")) {
        Ok(s) => s,
        Err(e) => panic!("official schemas load: {e}"),
    })
}

fn base() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/xsd/apprec-1.1-ok.xml")).expect("fixture")
}

fn verdict(doc: &str) -> Verdict {
    schemas().validate(doc.as_bytes(), &XmlLimits::default())
}

fn violation(doc: &str) -> Violation {
    match verdict(doc) {
        Verdict::Invalid { set: SchemaSet::AppRec11, violation } => violation,
        other => panic!("expected INVALID against AppRec 1.1, got {other:?}"),
    }
}

#[test]
fn schemas_are_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Schemas>();
    let shared = Arc::new(Schemas { sets: schemas().sets.clone() });
    let t = std::thread::spawn(move || shared.validate(base().as_bytes(), &XmlLimits::default()).label());
    assert_eq!(t.join().expect("thread"), "VALID");
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(verdict(&base()), Verdict::Valid { set: SchemaSet::AppRec11 });
}

#[test]
fn a_date_without_leading_zero_is_invalid_and_named() {
    let v = violation(&base().replace("<IssueDate>2026-01-15T09:00:00", "<IssueDate>1991-12-4"));
    assert_eq!(v.path, "/AppRec/OriginalMsgId/IssueDate");
    assert_eq!(v.line, 31);
    assert!(v.found.contains("1991-12-4"), "{v}");
}

#[test]
fn whitespace_in_empty_content_is_invalid() {
    // XSD 1.0 §3.4.4 cvc-complex-type 2.1 (libxml2 agrees): even whitespace is content.
    let v = violation(&base().replace("<Status V=\"1\" DN=\"OK\"/>", "<Status V=\"1\" DN=\"OK\"> </Status>"));
    assert_eq!(v.path, "/AppRec/Status");
    assert!(v.expected.contains("empty"), "{v}");
}

#[test]
fn missing_and_unexpected_elements_say_what_was_expected() {
    let v = violation(&base().replace("  <MIGversion>v1.1 2012-02-15</MIGversion>\n", ""));
    assert_eq!(v.path, "/AppRec/GenDate");
    assert!(v.expected.contains("MIGversion"), "{v}");
    let v = violation(&base().replace("<Status V=\"1\" DN=\"OK\"/>", ""));
    assert!(v.expected.contains("Status"), "{v}");
    assert!(v.found.contains("OriginalMsgId"), "{v}");
}

#[test]
fn attributes_are_checked() {
    let v = violation(&base().replace("<Role V=\"AVS\"/>", "<Role V=\"AVS\" X=\"1\"/>"));
    assert!(v.found.contains("'X'"), "{v}");
    // kith:CS makes V optional, so an empty code element is valid (libxml2 agrees).
    assert!(verdict(&base().replace("<MsgType V=\"APPREC\"/>", "<MsgType/>")).is_valid());
}

#[test]
fn fixed_element_value_is_enforced_through_default_rules() {
    // AppRec 1.1 gives MIGversion a default, not a fixed value: another version is valid.
    assert!(verdict(&base().replace("v1.1 2012-02-15", "anything")).is_valid());
}

#[test]
fn not_well_formed_wins_over_invalid() {
    let doc = base().replace("<IssueDate>2026-01-15T09:00:00", "<IssueDate>1991-12-4").replace("</AppRec>", "");
    assert!(matches!(verdict(&doc), Verdict::NotWellFormed(_)));
    let doctype = base().replace("<AppRec ", "<!DOCTYPE AppRec [<!ENTITY x 'y'>]><AppRec ");
    assert!(matches!(verdict(&doctype), Verdict::NotWellFormed(XmlError { kind: crate::xml::XmlErrorKind::Doctype, .. })));
}

#[test]
fn unknown_roots_and_namespaces_are_unsupported() {
    let v = verdict("<Foo xmlns='urn:x'/>");
    assert_eq!(v.label(), "UNSUPPORTED");
    let v = verdict(&base().replace("apprec/2012-02-15", "apprec/2099-01-01"));
    assert!(matches!(&v, Verdict::Unsupported { detail } if detail.contains("2099")), "{v:?}");
}

#[test]
fn latin1_documents_are_read() {
    let doc = base().replace("UTF-8", "ISO-8859-1");
    let bytes: Vec<u8> = doc.chars().map(|c| c as u32 as u8).collect();
    assert!(schemas().validate(&bytes, &XmlLimits::default()).is_valid());
}

#[test]
fn msghead_set_selection_follows_the_oracle() {
    let set = |ns: &[&str]| SchemaSet::for_msghead(ns.iter().copied());
    assert_eq!(set(&[MSGHEAD_NS]), SchemaSet::MsgHeadOnly);
    assert_eq!(set(&[MSGHEAD_NS, DIALOG10_NS]), SchemaSet::Dialogmelding10);
    assert_eq!(set(&[MSGHEAD_NS, DIALOG11_NS, DIALOG10_NS]), SchemaSet::Dialogmelding11);
    assert_eq!(set(&[DIALOG11_NS, "http://www.kith.no/xmlstds/po/poKomponent/2009-06-30"]), SchemaSet::Plo15);
    assert_eq!(set(&["http://ehelse.no/xmlstds/po/Sammenfatning/2016-05-30"]), SchemaSet::Plo20);
}

#[test]
fn schema_errors_name_the_file() {
    let e = Schemas::load(Path::new("/nonexistent/xsd")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/xsd"), "{e}");
    // A directory missing an imported file names the importing file and the missing one.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/xsd");
    std::fs::create_dir_all(dir.path().join("msghead-v1.2")).expect("mkdir");
    std::fs::copy(src.join("msghead-v1.2/MsgHead-v1_2.xsd"), dir.path().join("msghead-v1.2/MsgHead-v1_2.xsd")).expect("copy");
    let e = Schemas::load(dir.path()).unwrap_err();
    assert!(e.file.ends_with("MsgHead-v1_2.xsd"), "{e}");
    assert!(e.message.contains("does not exist"), "{e}");
}

#[test]
fn unsupported_constructs_are_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("msghead-v1.2")).expect("mkdir");
    std::fs::write(
        dir.path().join("msghead-v1.2/MsgHead-v1_2.xsd"),
        r#"<schema xmlns="http://www.w3.org/2001/XMLSchema" targetNamespace="http://www.kith.no/xmlstds/msghead/2006-05-24">
             <element name="MsgHead"><complexType><all><element name="a"/></all></complexType></element></schema>"#,
    )
    .expect("write");
    let e = Schemas::load(dir.path()).unwrap_err();
    assert!(e.message.contains("UNSUPPORTED: xs:all"), "{e}");
    assert_eq!(e.line, 2);
}
