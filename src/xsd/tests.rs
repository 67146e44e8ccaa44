use std::path::Path;
use std::sync::{Arc, OnceLock};

use super::*;

fn schemas() -> &'static Schemas {
    static S: OnceLock<Schemas> = OnceLock::new();
    S.get_or_init(|| {
        match Schemas::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/xsd"))
        {
            Ok(s) => s,
            Err(e) => panic!("official schemas load: {e}"),
        }
    })
}

fn base() -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/xsd/apprec-1.1-ok.xml"),
    )
    .expect("fixture")
}

fn verdict(doc: &str) -> Verdict {
    schemas().validate(doc.as_bytes(), &XmlLimits::default())
}

fn violation(doc: &str) -> Violation {
    match verdict(doc) {
        Verdict::Invalid {
            set: SchemaSet::AppRec11,
            violation,
        } => violation,
        other => panic!("expected INVALID against AppRec 1.1, got {other:?}"),
    }
}

#[test]
fn schemas_are_send_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Schemas>();
    let shared = Arc::new(Schemas {
        sets: schemas().sets.clone(),
    });
    let t = std::thread::spawn(move || {
        shared
            .validate(base().as_bytes(), &XmlLimits::default())
            .label()
    });
    assert_eq!(t.join().expect("thread"), "VALID");
}

#[test]
fn the_fixture_is_valid() {
    assert_eq!(
        verdict(&base()),
        Verdict::Valid {
            set: SchemaSet::AppRec11
        }
    );
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
    let v = violation(&base().replace(
        "<Status V=\"1\" DN=\"OK\"/>",
        "<Status V=\"1\" DN=\"OK\"> </Status>",
    ));
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
    let doc = base()
        .replace("<IssueDate>2026-01-15T09:00:00", "<IssueDate>1991-12-4")
        .replace("</AppRec>", "");
    assert!(matches!(verdict(&doc), Verdict::NotWellFormed(_)));
    let doctype = base().replace("<AppRec ", "<!DOCTYPE AppRec [<!ENTITY x 'y'>]><AppRec ");
    assert!(matches!(
        verdict(&doctype),
        Verdict::NotWellFormed(XmlError {
            kind: crate::xml::XmlErrorKind::Doctype,
            ..
        })
    ));
}

#[test]
fn unknown_roots_and_namespaces_are_unsupported() {
    let v = verdict("<Foo xmlns='urn:x'/>");
    assert_eq!(v.label(), "UNSUPPORTED");
    assert_eq!(v.apprec_code(), Some(crate::codes::ErrorCode::T10));
    assert_eq!(
        verdict("<Foo>").apprec_code(),
        Some(crate::codes::ErrorCode::T01)
    );
    assert_eq!(verdict(&base()).apprec_code(), None);
    let v = verdict(&base().replace("apprec/2012-02-15", "apprec/2099-01-01"));
    assert!(
        matches!(&v, Verdict::Unsupported { detail } if detail.contains("2099")),
        "{v:?}"
    );
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
    assert_eq!(
        set(&[MSGHEAD_NS, DIALOG11_NS, DIALOG10_NS]),
        SchemaSet::Dialogmelding11
    );
    assert_eq!(
        set(&[
            DIALOG11_NS,
            "http://www.kith.no/xmlstds/po/poKomponent/2009-06-30"
        ]),
        SchemaSet::Plo15
    );
    assert_eq!(
        set(&["http://ehelse.no/xmlstds/po/Sammenfatning/2016-05-30"]),
        SchemaSet::Plo20
    );
}

#[test]
fn schema_errors_name_the_file() {
    let e = Schemas::load(Path::new("/nonexistent/xsd")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/xsd"), "{e}");
    // A directory missing an imported file names the importing file and the missing one.
    let dir = tempfile::tempdir().expect("tempdir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/xsd");
    std::fs::create_dir_all(dir.path().join("msghead-v1.2")).expect("mkdir");
    std::fs::copy(
        src.join("msghead-v1.2/MsgHead-v1_2.xsd"),
        dir.path().join("msghead-v1.2/MsgHead-v1_2.xsd"),
    )
    .expect("copy");
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

/// Constructs the official schemas use (or could), on a small synthetic schema compiled with
/// the same compiler: xsi:type, abstract types, wildcards, mixed content, fixed values, IDs,
/// lists, unions, occurrence bounds and facets.
mod constructs {
    use super::super::{compile, validate};
    use crate::xml::XmlLimits;

    const XSD: &str = r###"<?xml version="1.0"?>
<schema xmlns="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:t" targetNamespace="urn:t" elementFormDefault="qualified">
  <complexType name="base" abstract="true"/>
  <complexType name="Code"><complexContent><extension base="t:base">
    <attribute name="V" type="t:Digits" use="required"/></extension></complexContent></complexType>
  <simpleType name="Digits"><restriction base="token"><pattern value="\d{2,3}"/></restriction></simpleType>
  <simpleType name="Small"><restriction base="integer"><minInclusive value="1"/><maxExclusive value="10"/></restriction></simpleType>
  <simpleType name="Names"><list itemType="NCName"/></simpleType>
  <simpleType name="When"><union memberTypes="date gYear"/></simpleType>
  <simpleType name="Short"><restriction base="string"><maxLength value="3"/></restriction></simpleType>
  <complexType name="Amount"><simpleContent><extension base="decimal"><attribute name="U" type="string"/></extension></simpleContent></complexType>
  <complexType name="SmallAmount"><simpleContent><restriction base="t:Amount"><totalDigits value="3"/><fractionDigits value="1"/></restriction></simpleContent></complexType>
  <element name="r">
    <complexType>
      <sequence>
        <element name="c" type="t:base" minOccurs="0"/>
        <element name="n" type="t:Small" minOccurs="0"/>
        <element name="l" type="t:Names" minOccurs="0"/>
        <element name="w" type="t:When" minOccurs="0"/>
        <element name="s" type="t:Short" minOccurs="0"/>
        <element name="a" type="t:SmallAmount" minOccurs="0"/>
        <element name="f" type="string" fixed="v1" minOccurs="0"/>
        <element name="m" minOccurs="0"><complexType mixed="true"><sequence><element name="b" type="string" minOccurs="0" maxOccurs="2"/></sequence></complexType></element>
        <choice minOccurs="0" maxOccurs="2"><element name="x" type="string"/><element name="y" type="string"/></choice>
        <element name="id" minOccurs="0" maxOccurs="unbounded"><complexType><attribute name="Id" type="ID"/></complexType></element>
        <element name="strict" minOccurs="0"><complexType><sequence><any namespace="##other" processContents="strict"/></sequence></complexType></element>
        <element name="lax" minOccurs="0"><complexType><sequence><any namespace="##other" processContents="lax" maxOccurs="unbounded"/></sequence></complexType></element>
        <element name="skip" minOccurs="0"><complexType><sequence><any namespace="##any" processContents="skip"/></sequence></complexType></element>
      </sequence>
    </complexType>
  </element>
  <element name="g" type="string"/>
</schema>"###;

    fn check(body: &str) -> Result<(), String> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("t.xsd"), XSD).expect("write");
        let m = compile::compile_set(dir.path(), &[("urn:t", "t.xsd")])
            .map_err(|e| format!("schema: {e}"))?;
        let doc = format!("<r xmlns='urn:t' xmlns:t='urn:t' xmlns:o='urn:o' xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance'>{body}</r>");
        let chooser = |_: &str, _: &str| Some((super::SchemaSet::MsgHeadOnly, m.as_ref()));
        let out = validate::run(&doc, XmlLimits::default(), &chooser, &mut |_| {})
            .map_err(|e| format!("xml: {e}"))?;
        match out.violation {
            None => Ok(()),
            Some(v) => Err(v.to_string()),
        }
    }

    #[test]
    fn abstract_types_need_xsi_type_of_a_derived_type() {
        assert!(check("<c V='12'/>").unwrap_err().contains("abstract"));
        assert!(check("<c xsi:type='t:Code' V='12'/>").is_ok());
        assert!(check("<c xsi:type='t:Code' V='1'/>")
            .unwrap_err()
            .contains("pattern"));
        assert!(check("<c xsi:type='t:Code'/>")
            .unwrap_err()
            .contains("required attribute 'V'"));
        assert!(check("<c xsi:type='t:Small'/>")
            .unwrap_err()
            .contains("derived from"));
    }

    #[test]
    fn ranges_lists_unions_lengths_and_digits() {
        assert!(check("<n>9</n>").is_ok());
        assert!(check("<n>10</n>").is_err());
        assert!(check("<n>0</n>").is_err());
        assert!(check("<l> a  b\n c </l>").is_ok());
        assert!(check("<l>a 1b</l>").is_err());
        assert!(check("<w>2024</w>").is_ok());
        assert!(check("<w>2024-02-30</w>").is_err());
        assert!(check("<s>abc</s>").is_ok());
        assert!(check("<s>abcd</s>").is_err());
        assert!(
            check("<s>a\r\nb</s>").is_ok(),
            "CRLF is one line end (XML 1.0 §2.11) before maxLength"
        );
        assert!(check("<s>a\r\nbc</s>").is_err());
        assert!(check("<a U='kg'>12.5</a>").is_ok());
        assert!(check("<a>12.55</a>").is_err());
        assert!(check("<a>1234</a>").is_err());
    }

    #[test]
    fn fixed_mixed_choice_and_ids() {
        assert!(check("<f>v1</f>").is_ok());
        assert!(
            check("<f/>").is_ok(),
            "an empty element takes the fixed value"
        );
        assert!(check("<f>v2</f>").unwrap_err().contains("fixed"));
        assert!(check("<m>text <b>x</b> more <b/> end</m>").is_ok());
        assert!(check("<m><b/><b/><b/></m>").is_err());
        assert!(check("<x/><y/>").is_ok());
        assert!(check("<x/><y/><x/>").is_err());
        assert!(check("<id Id='a'/><id Id='b'/>").is_ok());
        assert!(check("<id Id='a'/><id Id='a'/>")
            .unwrap_err()
            .contains("unique"));
    }

    #[test]
    fn wildcards_follow_namespace_and_process_contents() {
        assert!(check("<strict><o:g/></strict>")
            .unwrap_err()
            .contains("strict"));
        assert!(
            check("<strict><t:g/></strict>").is_err(),
            "##other excludes the target namespace"
        );
        assert!(check("<lax><o:anything><o:deep a='1'/></o:anything></lax>").is_ok());
        assert!(check("<skip><t:g><t:nonsense/></t:g></skip>").is_ok());
        assert!(
            check("<lax><g xmlns=''/></lax>").is_err(),
            "##other excludes no-namespace elements"
        );
    }
}
