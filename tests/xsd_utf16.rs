//! UTF-16 messages, differentially: each variant (little- and big-endian, with a byte-order mark
//! or only a declaration in UTF-16, and broken ones) is written from a UTF-8 fixture at test time,
//! and our verdict must equal libxml2's (`../shared/tools/xsd-oracle`). XML 1.0 §4.3.3 requires
//! every processor to read UTF-16; the expected verdict is asserted too, so a broken oracle cannot
//! make the test pass.

mod support;

use std::path::PathBuf;

use helsemelding::msghead::MsgHead;
use helsemelding::xml::XmlLimits;
use support::utf16;

const GOOD: &str = "fixtures/messages/delivered/foresporsel-gp-to-nursing-home.xml";
const T02: &str = "fixtures/messages/rejected/T02-msgid-missing.xml";

fn fixture_text(rel: &str) -> String {
    String::from_utf8(std::fs::read(support::repo().join(rel)).unwrap()).unwrap()
}

const LE: &[u8] = &[0xFF, 0xFE];
const BE: &[u8] = &[0xFE, 0xFF];

/// The variants: name, bytes, the verdict libxml2 is expected to give, and why where it is not
/// obvious.
fn variants() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = fixture_text(GOOD);
    assert!(good.contains(r#"encoding="UTF-8""#) && !good.is_ascii());
    let declared =
        |name: &str| good.replace(r#"encoding="UTF-8""#, &format!(r#"encoding="{name}""#));
    let utf16_decl = declared("UTF-16");
    let no_encoding = good.replace(r#" encoding="UTF-8""#, "");
    let no_decl = good.split_once("?>").unwrap().1.trim_start().to_owned();
    // "Forespørsel" in the MsgHead: the ø is where the broken variants break.
    let at = utf16(&utf16_decl[..utf16_decl.find('ø').unwrap()], false, LE).len();
    let with_unit_at_ø = |unit: [u8; 2]| {
        let mut b = utf16(&utf16_decl, false, LE);
        b[at..at + 2].copy_from_slice(&unit);
        b
    };
    let mut odd = utf16(&utf16_decl, false, LE);
    odd.push(0x0A);
    vec![
        ("le-bom", utf16(&utf16_decl, false, LE), "VALID"),
        ("be-bom", utf16(&utf16_decl, true, BE), "VALID"),
        (
            "le-declaration-only",
            utf16(&utf16_decl, false, &[]),
            "VALID",
        ),
        (
            "be-declaration-only",
            utf16(&utf16_decl, true, &[]),
            "VALID",
        ),
        ("le-bom-no-declaration", utf16(&no_decl, false, LE), "VALID"),
        (
            "le-bom-declaration-without-encoding",
            utf16(&no_encoding, false, LE),
            "VALID",
        ),
        // Without a mark and without an encoding name: libxml2 (and expat) go by the first bytes.
        (
            "le-no-bom-declaration-without-encoding",
            utf16(&no_encoding, false, &[]),
            "VALID",
        ),
        (
            "le-bom-declares-utf-16le",
            utf16(&declared("UTF-16LE"), false, LE),
            "VALID",
        ),
        (
            "be-bom-declares-utf-16be",
            utf16(&declared("UTF-16BE"), true, BE),
            "VALID",
        ),
        (
            "le-bom-schema-invalid",
            utf16(&fixture_text(T02).replace("UTF-8", "UTF-16"), false, LE),
            "INVALID",
        ),
        (
            "le-lone-high-surrogate",
            with_unit_at_ø([0x00, 0xD8]),
            "NOT-WELL-FORMED",
        ),
        (
            "le-lone-low-surrogate",
            with_unit_at_ø([0x00, 0xDC]),
            "NOT-WELL-FORMED",
        ),
        (
            "be-bom-declares-utf-16le",
            utf16(&declared("UTF-16LE"), true, BE),
            "NOT-WELL-FORMED",
        ),
        (
            "le-bom-declares-iso-8859-1",
            utf16(&declared("ISO-8859-1"), false, LE),
            "NOT-WELL-FORMED",
        ),
        // XML 1.0 §4.3.3 makes the contradiction a fatal error; the oracle's expat refuses it,
        // xmllint alone would let the mark win.
        (
            "le-bom-declares-utf-8",
            utf16(&good, false, LE),
            "NOT-WELL-FORMED",
        ),
        (
            "utf-8-declares-utf-16",
            utf16_decl.clone().into_bytes(),
            "NOT-WELL-FORMED",
        ),
        // Without mark or declaration a document is UTF-8 (§4.3.3): NULs, not characters.
        (
            "le-no-bom-no-declaration",
            utf16(&no_decl, false, &[]),
            "NOT-WELL-FORMED",
        ),
        // Half a code unit at the end: expat refuses it, xmllint alone would drop it silently;
        // a message whose last byte is cut off is not the one that was signed as well-formed.
        ("le-bom-odd-byte-count", odd, "NOT-WELL-FORMED"),
    ]
}

#[test]
fn utf16_variants_agree_with_libxml2() {
    let dir = tempfile::tempdir().unwrap();
    let variants = variants();
    let files: Vec<PathBuf> = variants
        .iter()
        .map(|(name, bytes, _)| {
            let p = dir.path().join(format!("{name}.xml"));
            std::fs::write(&p, bytes).unwrap();
            p
        })
        .collect();
    let oracle = support::xsd::oracle(&files);
    let schemas = support::xsd::schemas();
    let mut bad = Vec::new();
    for ((name, bytes, expected), f) in variants.iter().zip(&files) {
        let ours = schemas.validate(bytes, &XmlLimits::default());
        let (theirs, their_error) = &oracle[f];
        println!("{name:<40} libxml2 {theirs:<16} ours {}", ours.label());
        if ours.label() != theirs || theirs != expected {
            bad.push(format!(
                "{name}: expected {expected}\n    libxml2: {theirs} {their_error}\n    ours:    {} {}",
                ours.label(),
                ours.detail()
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn a_utf16_msghead_reads_the_same_as_its_utf8_original() {
    let good = fixture_text(GOOD);
    let utf16_decl = good.replace(r#"encoding="UTF-8""#, r#"encoding="UTF-16""#);
    let original = MsgHead::parse(good.as_bytes()).unwrap();
    for (name, bytes) in [
        ("LE", utf16(&utf16_decl, false, LE)),
        ("BE", utf16(&utf16_decl, true, BE)),
    ] {
        let head = MsgHead::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(head, original, "{name}");
        assert_eq!(head.msg_type.dn.as_deref(), Some("Forespørsel"), "{name}");
    }
}
