//! The one place where the message model reads XML: a small, namespace-resolved element tree
//! built with quick-xml, used by `msghead` and `apprec`. When the hardened reader (`src/xml/`)
//! lands, only this file changes.
//!
//! Input: the bytes of one document (UTF-8, or ISO-8859-1 as declared in the XML declaration).
//! Output: the root [`Element`] with each element's namespace URI and local name (prefixes are
//! resolved away, never matched on), its unprefixed attributes, and its text.
//!
//! Conservative by construction (DESIGN §2 decode: no DTDs, no entity expansion, bounded depth):
//! a `<!DOCTYPE` is refused, the only references resolved are character references and the five
//! predefined entities, nesting is limited to [`MAX_DEPTH`], and end tags must match. Subtrees in a
//! namespace other than the root's (the payload in `RefDoc/Content`, `ds:Signature`) are kept as
//! one childless, textless node: the model needs their namespace, never their content — which also
//! keeps patient data in the payload out of memory.

use std::borrow::Cow;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use crate::xml::XmlErrorKind;

/// Deepest element nesting accepted. MsgHead with nested Organisation needs about 8.
pub const MAX_DEPTH: usize = 64;

/// One element.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Element {
    pub ns: String,
    pub local: String,
    /// Unprefixed attributes (`V`, `S`, `DN`, `OT`); namespaced ones (`xsi:*`) are not needed.
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
    /// 1-based line of the start tag, for error messages.
    pub line: usize,
}

// Deliberately opaque: an element may hold patient data (MsgInfo/Patient) before extraction.
impl std::fmt::Debug for Element {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({{{}}}{}, {} children)", self.ns, self.local, self.children.len())
    }
}

impl Element {
    /// The first child with this local name in this element's namespace.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local == local && c.ns == self.ns)
    }
    /// Every child with this local name in this element's namespace.
    pub fn children_named<'a>(&'a self, local: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.local == local && c.ns == self.ns)
    }
    /// The trimmed text of the named child.
    pub fn child_text(&self, local: &str) -> Option<&str> {
        self.child(local).map(|c| c.text.trim())
    }
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Why a document could not be read. All are faults of the document (AppRec T01).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML at line {line} (byte {position}): {message}")]
    NotWellFormed { position: u64, line: usize, message: String },
    #[error("document type declarations (DTD) are refused (line {line})")]
    Dtd { line: usize },
    #[error("entity reference &{name}; is refused (line {line}): only character references and the predefined entities are allowed")]
    Entity { name: String, line: usize },
    #[error("elements nested deeper than {MAX_DEPTH} (line {line})")]
    TooDeep { line: usize },
    #[error("unsupported character encoding {0:?} (expected UTF-8, ISO-8859-1 or windows-1252)")]
    Encoding(String),
    #[error("not valid UTF-8 at byte {0}")]
    Utf8(usize),
    #[error("no root element")]
    Empty,
    #[error("element prefix {0:?} is not bound to a namespace")]
    UnboundPrefix(String),
}

/// Decodes the document to text with the hardened reader's decoder (`crate::xml::decode`: UTF-8,
/// ISO-8859-1, windows-1252), so that every document the validator could read is readable here too.
///
/// This reader once had its own decoder: it knew no windows-1252, so a valid windows-1252 message
/// passed validation and was then answered with an AppRec because its MsgHead "could not be read"
/// (hostile corpus: fixtures/hostile/enc-windows-1252); and its declaration scan sliced inside a
/// multi-byte character where a quote was expected and panicked (cargo fuzz:
/// fixtures/fuzz-regressions/model_parse-encoding-multibyte-quote.bin).
fn decode(xml: &[u8]) -> Result<Cow<'_, str>, XmlError> {
    crate::xml::decode(xml).map_err(|e| match e.kind {
        XmlErrorKind::InvalidUtf8 => XmlError::Utf8(std::str::from_utf8(xml).err().map_or(0, |u| u.valid_up_to())),
        XmlErrorKind::UnknownEncoding(name) => XmlError::Encoding(name),
        other => XmlError::NotWellFormed { position: 0, line: e.line, message: other.to_string() },
    })
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Parses a whole document into its root element.
pub(crate) fn parse(xml: &[u8]) -> Result<Element, XmlError> {
    let text = decode(xml)?;
    let text: &str = &text;
    let mut reader = NsReader::from_str(text);
    {
        let c = reader.config_mut();
        c.check_end_names = true;
        c.expand_empty_elements = false;
        c.trim_text_start = false;
        c.trim_text_end = false;
    }
    // Positions only grow, so lines are counted incrementally: a document with large attachments
    // must not be rescanned from the start for every element (that would be quadratic).
    let counted = std::cell::Cell::new((0usize, 1usize));
    let line_of = |pos: u64| {
        let pos = (pos as usize).min(text.len());
        let (from, mut line) = counted.get();
        if pos < from {
            return text.as_bytes()[..pos].iter().filter(|&&b| b == b'\n').count() + 1;
        }
        line += text.as_bytes()[from..pos].iter().filter(|&&b| b == b'\n').count();
        counted.set((pos, line));
        line
    };
    let wf = |reader: &NsReader<&[u8]>, e: quick_xml::Error| XmlError::NotWellFormed {
        position: reader.error_position(),
        line: line_of(reader.error_position()),
        message: e.to_string(),
    };

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    // Depth inside a foreign-namespace subtree being skipped (0 = not skipping).
    let mut skipping = 0usize;
    loop {
        let pos = reader.buffer_position();
        let (ns, ev) = match reader.read_resolved_event() {
            Ok(x) => x,
            Err(e) => return Err(wf(&reader, e)),
        };
        if let ResolveResult::Unknown(p) = &ns {
            if matches!(ev, Event::Start(_) | Event::Empty(_)) {
                return Err(XmlError::UnboundPrefix(p.clone()));
            }
        }
        match ev {
            Event::DocType(_) => return Err(XmlError::Dtd { line: line_of(pos) }),
            Event::Start(ref s) | Event::Empty(ref s) => {
                let is_empty = matches!(ev, Event::Empty(_));
                if skipping > 0 {
                    if !is_empty {
                        skipping += 1;
                    }
                    continue;
                }
                // Only elements that are kept need their namespace as an owned string: the
                // events of a skipped payload allocate nothing.
                let ns_uri = match &ns {
                    ResolveResult::Bound(n) => Some(n.as_ref().to_owned()),
                    ResolveResult::Unbound => Some(String::new()),
                    ResolveResult::Unknown(_) => None,
                };
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep { line: line_of(pos) });
                }
                if root.is_some() {
                    return Err(XmlError::NotWellFormed { position: pos, line: line_of(pos), message: "content after the root element".into() });
                }
                let ns_uri = ns_uri.unwrap_or_default();
                let foreign = stack.first().is_some_and(|r| r.ns != ns_uri);
                let el = Element {
                    attrs: if foreign { Vec::new() } else { attributes(s).map_err(|m| XmlError::NotWellFormed { position: pos, line: line_of(pos), message: m })? },
                    local: s.local_name().as_ref().to_owned(),
                    ns: ns_uri,
                    text: String::new(),
                    children: Vec::new(),
                    line: line_of(pos),
                };
                if foreign && !is_empty {
                    skipping = 1;
                }
                if is_empty || foreign {
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => root = Some(el),
                    }
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                if skipping > 0 {
                    skipping -= 1;
                    continue;
                }
                let Some(done) = stack.pop() else {
                    return Err(XmlError::NotWellFormed { position: pos, line: line_of(pos), message: "unexpected end tag".into() });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                if skipping == 0 {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t.xml10_content());
                    } else if !t.xml10_content().trim().is_empty() {
                        return Err(XmlError::NotWellFormed { position: pos, line: line_of(pos), message: "text outside the root element".into() });
                    }
                }
            }
            Event::CData(c) => {
                if skipping == 0 {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&c.into_inner());
                    }
                }
            }
            Event::GeneralRef(r) => {
                let name: String = r.as_ref().to_owned();
                let ch = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => predefined(&name).ok_or(XmlError::Entity { name: name.clone(), line: line_of(pos) })?,
                    Err(e) => return Err(XmlError::NotWellFormed { position: pos, line: line_of(pos), message: e.to_string() }),
                };
                if skipping == 0 {
                    if let Some(top) = stack.last_mut() {
                        top.text.push(ch);
                    }
                }
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::NotWellFormed { position: text.len() as u64, line: line_of(text.len() as u64), message: format!("unclosed element <{}>", stack[stack.len() - 1].local) });
    }
    root.ok_or(XmlError::Empty)
}

/// Unprefixed attributes with predefined/character references resolved; any other entity refused.
fn attributes(s: &BytesStart<'_>) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for a in s.attributes() {
        let a = a.map_err(|e| e.to_string())?;
        let key = a.key;
        if key.prefix().is_some() || key.as_ref().starts_with("xmlns") {
            continue;
        }
        let v = a.normalized_value(quick_xml::XmlVersion::Implicit1_0).map_err(|e| e.to_string())?;
        out.push((key.as_ref().to_owned(), v.into_owned()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let a = parse(br#"<a:R xmlns:a="urn:x"><a:C V="1">t&amp;&#65;</a:C></a:R>"#).unwrap();
        let b = parse(br#"<R xmlns="urn:x"><C V="1">t&amp;A</C></R>"#).unwrap();
        assert_eq!(a.ns, "urn:x");
        assert_eq!(a.child("C").unwrap().text, "t&A");
        assert_eq!(a.child("C").unwrap().attr("V"), Some("1"));
        assert_eq!(a.child("C"), b.child("C").map(|c| { let mut c = c.clone(); c.line = 1; c }).as_ref());
        let other = parse(br#"<R xmlns="urn:x" xmlns:o="urn:y"><o:C/></R>"#).unwrap();
        assert!(other.child("C").is_none(), "a child in another namespace is not matched by local name");
    }

    #[test]
    fn refuses_dtds_entities_and_depth() {
        assert!(matches!(parse(b"<!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;</r>"), Err(XmlError::Dtd { .. })));
        assert!(matches!(parse(b"<r>&e;</r>"), Err(XmlError::Entity { .. })));
        let deep = format!("{}{}", "<a>".repeat(MAX_DEPTH + 1), "</a>".repeat(MAX_DEPTH + 1));
        assert!(matches!(parse(deep.as_bytes()), Err(XmlError::TooDeep { .. })));
        assert!(matches!(parse(b"<a><b></a>"), Err(XmlError::NotWellFormed { .. })));
        assert!(matches!(parse(b"<a>"), Err(XmlError::NotWellFormed { .. })));
        assert!(matches!(parse(b""), Err(XmlError::Empty)));
        assert!(matches!(parse(b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>"), Err(XmlError::Encoding(_))));
        // windows-1252 as the validator reads it (0x80 is the euro sign there), and no panic on a
        // declaration whose "quote" is a multi-byte character (fuzz regression).
        assert!(parse(b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><a>\x80</a>").is_ok());
        let _ = parse("<?xml version=\"1.0\" encoding=\u{7aa}-8\"?><a/>".as_bytes());
    }

    #[test]
    fn foreign_subtrees_are_kept_as_empty_nodes_and_latin1_decodes() {
        let r = parse(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><R xmlns=\"urn:x\"><C><P xmlns=\"urn:p\"><Name>secret</Name><P/></P></C><D>\xf8</D></R>").unwrap();
        let p = &r.child("C").unwrap().children[0];
        assert_eq!((p.ns.as_str(), p.local.as_str(), p.children.len(), p.text.as_str()), ("urn:p", "P", 0, ""));
        assert_eq!(r.child_text("D"), Some("ø"));
    }

    #[test]
    fn errors_and_elements_carry_line_numbers() {
        let r = parse(b"<a>\n<b/>\n\n<c>\n</c></a>").unwrap();
        assert_eq!((r.line, r.children[0].line, r.children[1].line), (1, 2, 4));
        match parse(b"<a>\n\n<b></c></a>") {
            Err(XmlError::NotWellFormed { line, .. }) => assert_eq!(line, 3),
            other => panic!("{other:?}"),
        }
    }
}
