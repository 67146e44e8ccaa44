use super::*;

fn read_all(doc: &[u8]) -> Result<usize, XmlError> {
    read_with(doc, XmlLimits::default())
}

fn read_with(doc: &[u8], limits: XmlLimits) -> Result<usize, XmlError> {
    let d = XmlDocument::new(doc, &limits)?;
    let mut r = d.reader();
    let mut n = 0;
    while r.next_event()? != XmlEvent::Eof {
        n += 1;
    }
    Ok(n)
}

fn kind(doc: &[u8]) -> XmlErrorKind {
    read_all(doc).expect_err("must be refused").kind
}

#[test]
fn billion_laughs_is_refused_at_the_doctype() {
    let doc = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<lolz>&lol3;</lolz>"#;
    let e = read_all(doc).unwrap_err();
    assert_eq!(e.kind, XmlErrorKind::Doctype);
    assert_eq!((e.line, e.column), (2, 1));
}

#[test]
fn xxe_system_file_and_url_are_refused() {
    let file =
        br#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
    assert_eq!(kind(file), XmlErrorKind::Doctype);
    let url = br#"<?xml version="1.0"?><!DOCTYPE r SYSTEM "http://evil.example/x.dtd"><r/>"#;
    assert_eq!(kind(url), XmlErrorKind::Doctype);
}

#[test]
fn undeclared_entity_without_doctype_is_refused() {
    assert_eq!(
        kind(b"<r>a &x; b</r>"),
        XmlErrorKind::EntityReference("x".into())
    );
    assert_eq!(
        kind(b"<r a='&x;'/>"),
        XmlErrorKind::EntityReference("x".into())
    );
}

#[test]
fn predefined_and_character_references_are_resolved() {
    let d = XmlDocument::new(
        "<r a='&lt;&#65;&#x42;'>&amp;&quot;&#xE6;</r>".as_bytes(),
        &XmlLimits::default(),
    )
    .unwrap();
    let mut r = d.reader();
    let XmlEvent::Start(t) = r.next_event().unwrap() else {
        panic!("start")
    };
    assert_eq!(t.attrs[0].value, "<AB");
    let mut text = String::new();
    loop {
        match r.next_event().unwrap() {
            XmlEvent::Text(s) => text.push_str(&s),
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    assert_eq!(text, "&\"æ");
    assert_eq!(
        kind(b"<r>&#0;</r>"),
        XmlErrorKind::InvalidCharReference("#0".into())
    );
}

#[test]
fn processing_instructions_are_refused_but_the_declaration_is_not() {
    assert!(read_all(b"<?xml version='1.0'?><r/>").is_ok());
    assert_eq!(
        kind(b"<?xml version='1.0'?><?evil x?><r/>"),
        XmlErrorKind::ProcessingInstruction("evil".into())
    );
    assert_eq!(
        kind(b"<r><?pi?></r>"),
        XmlErrorKind::ProcessingInstruction("pi".into())
    );
}

#[test]
fn one_root_only_and_no_text_outside_it() {
    assert_eq!(kind(b"<a/><b/>"), XmlErrorKind::SecondRoot("b".into()));
    assert_eq!(kind(b"<a/>x"), XmlErrorKind::TextOutsideRoot);
    assert_eq!(kind(b"  "), XmlErrorKind::NoRoot);
    assert!(read_all(b"<a/>\n  <!-- c -->\n").is_ok());
}

#[test]
fn unclosed_and_mismatched_elements() {
    let e = read_all(b"<a>\n<b>").unwrap_err();
    assert_eq!(e.kind, XmlErrorKind::UnclosedElement("b".into()));
    assert_eq!(e.line, 2);
    assert!(matches!(
        kind(b"<a><b></a>"),
        XmlErrorKind::MismatchedEndTag { .. }
    ));
    assert!(matches!(
        kind(b"<a></a></b>"),
        XmlErrorKind::UnexpectedEndTag(_) | XmlErrorKind::Syntax(_)
    ));
}

#[test]
fn depth_limit() {
    let limits = XmlLimits {
        max_depth: 3,
        ..XmlLimits::default()
    };
    assert!(read_with(b"<a><b><c/></b></a>", limits).is_ok());
    assert_eq!(
        read_with(b"<a><b><c><d/></c></b></a>", limits)
            .unwrap_err()
            .kind,
        XmlErrorKind::TooDeep { limit: 3 }
    );
}

#[test]
fn a_million_nested_tags_fail_fast_at_the_depth_limit() {
    let mut doc = Vec::with_capacity(3_000_000);
    for _ in 0..1_000_000 {
        doc.extend_from_slice(b"<a>");
    }
    let start = std::time::Instant::now();
    let e = read_all(&doc).unwrap_err();
    assert_eq!(e.kind, XmlErrorKind::TooDeep { limit: 64 });
    assert_eq!(e.column, 64 * 3 + 1);
    // Not a timing assertion on speed, a sanity bound: the reader stops at tag 65, it does not
    // walk three megabytes (generous for debug builds on a loaded machine).
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn size_limit() {
    let limits = XmlLimits {
        max_bytes: 10,
        ..XmlLimits::default()
    };
    assert_eq!(
        read_with(b"<a>0123456789</a>", limits).unwrap_err().kind,
        XmlErrorKind::TooLarge {
            size: 17,
            limit: 10
        }
    );
    assert_eq!(XmlLimits::default().max_bytes, 36_700_160);
}

#[test]
fn encodings() {
    let latin1 = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><r a=\"\xe6\">bl\xe5b\xe6r</r>";
    let d = XmlDocument::new(latin1, &XmlLimits::default()).unwrap();
    assert_eq!(d.text().chars().filter(|c| "æå".contains(*c)).count(), 3);
    let cp1252 = b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><r>\x80</r>";
    assert!(XmlDocument::new(cp1252, &XmlLimits::default())
        .unwrap()
        .text()
        .contains('€'));
    let undefined = b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><r>\x81</r>";
    assert!(matches!(
        kind(undefined),
        XmlErrorKind::UnmappableByte { byte: 0x81, .. }
    ));
    assert_eq!(
        kind(b"<?xml version='1.0' encoding='EBCDIC-X'?><r/>"),
        XmlErrorKind::UnknownEncoding("ebcdic-x".into())
    );
    let e = read_all(b"<r>\n ok \xff</r>").unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (XmlErrorKind::InvalidUtf8, 2, 5)
    );
    assert!(read_all("<r>blåbær</r>".as_bytes()).is_ok());
    assert!(read_all(b"\xef\xbb\xbf<r/>").is_ok());
}

/// `text` in UTF-16 with the given byte order, after `prefix` (a byte-order mark or nothing).
fn utf16(text: &str, big_endian: bool, prefix: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for u in text.encode_utf16() {
        out.extend(if big_endian {
            u.to_be_bytes()
        } else {
            u.to_le_bytes()
        });
    }
    out
}

const UTF16_DOC: &str =
    "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<r a=\"bl\u{e5}\">\n  \u{1F600} \u{e6}\u{f8}</r>";

#[test]
fn utf16_with_a_byte_order_mark_or_a_utf16_declaration_is_read() {
    for (name, bytes) in [
        ("LE, BOM", utf16(UTF16_DOC, false, &[0xFF, 0xFE])),
        ("BE, BOM", utf16(UTF16_DOC, true, &[0xFE, 0xFF])),
        ("LE, declaration only", utf16(UTF16_DOC, false, &[])),
        ("BE, declaration only", utf16(UTF16_DOC, true, &[])),
    ] {
        let d = XmlDocument::new(&bytes, &XmlLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(d.text(), UTF16_DOC, "{name}");
        let as_utf8 = UTF16_DOC.replace("UTF-16", "UTF-8");
        assert_eq!(read_all(&bytes), read_all(as_utf8.as_bytes()), "{name}");
    }
    // A byte-order mark and no declaration, or a declaration naming the byte order that is there.
    for doc in [
        "<r/>",
        "<?xml version=\"1.0\"?><r/>",
        "<?xml version='1.0' encoding='utf-16le'?><r/>",
    ] {
        assert!(read_all(&utf16(doc, false, &[0xFF, 0xFE])).is_ok(), "{doc}");
    }
    assert!(read_all(&utf16(
        "<?xml version='1.0' encoding='UTF-16BE'?><r/>",
        true,
        &[0xFE, 0xFF]
    ))
    .is_ok());
    assert_eq!(
        detected_encoding(&utf16("<r/>", true, &[0xFE, 0xFF])),
        Ok(Encoding::Utf16Be)
    );
}

#[test]
fn broken_utf16_is_refused_with_line_and_column() {
    // A lone high surrogate: line 3, after two spaces.
    let mut lone_high = utf16("<r>\n<a/>\n  ", false, &[0xFF, 0xFE]);
    lone_high.extend([0x00, 0xD8, b'x', 0x00]);
    lone_high.extend(utf16("</r>", false, &[]));
    let e = read_all(&lone_high).unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (XmlErrorKind::UnpairedSurrogate { unit: 0xD800 }, 3, 3)
    );
    // A lone low surrogate, big-endian: line 1, column 4.
    let mut lone_low = utf16("<r>", true, &[0xFE, 0xFF]);
    lone_low.extend([0xDC, 0x00]);
    lone_low.extend(utf16("</r>", true, &[]));
    let e = read_all(&lone_low).unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (XmlErrorKind::UnpairedSurrogate { unit: 0xDC00 }, 1, 4)
    );
    // A high surrogate at the very end.
    let mut cut_pair = utf16("<r/>", false, &[0xFF, 0xFE]);
    cut_pair.extend([0x3D, 0xD8]);
    assert!(matches!(
        kind(&cut_pair),
        XmlErrorKind::UnpairedSurrogate { unit: 0xD83D }
    ));
    // An odd byte count: half a code unit at the end, reported where the text ends.
    let mut odd = utf16("<r>\n</r>", false, &[0xFF, 0xFE]);
    odd.push(0x0A);
    let e = read_all(&odd).unwrap_err();
    assert_eq!(
        (e.kind, e.line, e.column),
        (XmlErrorKind::Utf16OddLength { bytes: 17 }, 2, 5)
    );
}

#[test]
fn a_declaration_that_contradicts_the_encoding_is_refused() {
    for (doc, big_endian, prefix, declared) in [
        (
            "<?xml version='1.0' encoding='UTF-8'?><r/>",
            false,
            &[0xFF, 0xFE][..],
            "utf-8",
        ),
        (
            "<?xml version='1.0' encoding='ISO-8859-1'?><r/>",
            false,
            &[0xFF, 0xFE],
            "iso-8859-1",
        ),
        (
            "<?xml version='1.0' encoding='UTF-16LE'?><r/>",
            true,
            &[0xFE, 0xFF],
            "utf-16le",
        ),
        (
            "<?xml version='1.0' encoding='UTF-16BE'?><r/>",
            false,
            &[],
            "utf-16be",
        ),
    ] {
        match kind(&utf16(doc, big_endian, prefix)) {
            XmlErrorKind::EncodingMismatch { declared: d, .. } => assert_eq!(d, declared, "{doc}"),
            other => panic!("{doc}: {other:?}"),
        }
    }
    // Single-byte text that calls itself UTF-16 (XML 1.0 §4.3.3: UTF-16 starts with a mark).
    assert!(matches!(
        kind(b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><r/>"),
        XmlErrorKind::EncodingMismatch { .. }
    ));
    // UTF-16 without a mark and without a declaration is not recognised: read as UTF-8, its NULs
    // are not XML characters.
    assert!(matches!(
        kind(&utf16("<r/>", false, &[])),
        XmlErrorKind::InvalidChar(0)
    ));
}

#[test]
fn namespaces_are_resolved_and_undeclared_prefixes_refused() {
    let d = XmlDocument::new(
        b"<m:a xmlns:m='urn:m' xmlns='urn:d'><b m:x='1' y='2'/></m:a>",
        &XmlLimits::default(),
    )
    .unwrap();
    let mut r = d.reader();
    let XmlEvent::Start(a) = r.next_event().unwrap() else {
        panic!()
    };
    assert_eq!((&*a.ns, a.local), ("urn:m", "a"));
    assert!(
        a.attrs.is_empty(),
        "namespace declarations are not attributes"
    );
    let XmlEvent::Start(b) = r.next_event().unwrap() else {
        panic!()
    };
    assert_eq!(&*b.ns, "urn:d");
    assert_eq!((&*b.attrs[0].ns, b.attrs[0].local), ("urn:m", "x"));
    assert_eq!(
        &*b.attrs[1].ns, "",
        "unprefixed attributes are in no namespace"
    );
    assert_eq!(kind(b"<p:a/>"), XmlErrorKind::UndeclaredPrefix("p".into()));
}

#[test]
fn malformed_attributes_and_characters() {
    assert!(matches!(
        kind(b"<a x='1' x='2'/>"),
        XmlErrorKind::DuplicateAttribute(_)
    ));
    assert_eq!(kind(b"<a x='<'/>"), XmlErrorKind::LtInAttribute("x".into()));
    assert_eq!(kind(b"<a>\x01</a>"), XmlErrorKind::InvalidChar(1));
    assert_eq!(
        kind("<a>0123456789abcdef\u{FFFE}</a>".as_bytes()),
        XmlErrorKind::InvalidChar(0xFFFE)
    );
    assert_eq!(
        kind(b"<a>\t\r\n0123456789abcdef\x1f</a>"),
        XmlErrorKind::InvalidChar(0x1F)
    );
    assert!(read_all("<a>\t\r\n blåbær \u{EFFF}\u{FFFD}</a>".as_bytes()).is_ok());
}

#[test]
fn crlf_text_is_normalised() {
    let d = XmlDocument::new(b"<a>\r\n  <b>x\r\ny</b>\r\n\t</a>", &XmlLimits::default()).unwrap();
    let mut r = d.reader();
    let mut texts = Vec::new();
    loop {
        match r.next_event().unwrap() {
            XmlEvent::Text(t) => texts.push(t.into_owned()),
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    assert_eq!(texts, ["\n  ", "x\ny", "\n\t"]);
    let mut r = d.reader().raw_line_ends();
    let mut raw = Vec::new();
    loop {
        match r.next_event().unwrap() {
            XmlEvent::Text(t) => raw.push(t.into_owned()),
            XmlEvent::Eof => break,
            _ => {}
        }
    }
    assert_eq!(raw, ["\n  ", "x\r\ny", "\n\t"]);
}

#[test]
fn errors_name_line_and_column() {
    let e = read_all(b"<a>\n  <b>\n  </c>\n</a>").unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.to_string().starts_with("line 3, column"), "{e}");
}

#[test]
fn attribute_character_references_are_not_normalised_away() {
    // XML 1.0 §3.3.3: literal tabs and line ends become spaces, `&#9;`/`&#10;` stay what they
    // name. Found when the AppRec model moved onto this reader: an `OT="&#9;"` read back as " ".
    let d = XmlDocument::new(
        b"<r a=\"x&#9;y&#10;z\tw\r\nv&amp;\"/>",
        &XmlLimits::default(),
    )
    .unwrap();
    let mut r = d.reader();
    match r.next_event().unwrap() {
        XmlEvent::Start(t) => assert_eq!(t.attrs[0].value, "x\ty\nz w v&"),
        other => panic!("{other:?}"),
    }
}
