//! The hardened XML reader every stage that looks inside a message uses.
//!
//! Input: the raw bytes of a message and [`XmlLimits`]. Output: a pull stream of [`XmlEvent`]s
//! (start tag with namespace-resolved name and attributes, text with references resolved, end
//! tag) over quick-xml. It refuses what a gateway must refuse (DESIGN.md §2 "decode": no DTDs,
//! no entity expansion, bounded depth and size), each refusal an [`XmlError`] naming line and
//! column:
//!
//! - a `<!DOCTYPE` (so no internal subset, no external entity: XXE and billion laughs are
//!   impossible by construction) and processing instructions other than the XML declaration;
//! - entity references other than the five predefined ones (XML 1.0 §4.6) and character
//!   references to characters that are not XML `Char`s (§2.2);
//! - more than one root element, text outside the root, end of input with elements open,
//!   mismatched end tags, undeclared namespace prefixes (Namespaces in XML 1.0 §5);
//! - nesting deeper than [`XmlLimits::max_depth`], input larger than [`XmlLimits::max_bytes`];
//! - bytes that are not valid in the document's encoding (UTF-8; UTF-16 LE or BE, told by its
//!   byte-order mark or first bytes, XML 1.0 Appendix F; ISO-8859-1, windows-1252), a declaration
//!   that names another encoding than the one the document is in, and encodings it does not know.
//!
//! Memory is bounded by the input size plus the open-element stack (which `max_depth` bounds).
//!
//! `tree` builds a small element tree over this reader for the message model (`msghead`,
//! `apprec`), so that every stage reads XML through the same hardened rules.

mod decode;
pub(crate) mod tree;

use std::borrow::Cow;
use std::sync::Arc;

use quick_xml::events::Event;
use quick_xml::XmlVersion;

pub use decode::{decode, detected_encoding, Encoding};

/// The namespace of `xsi:` attributes (XML Schema Part 1 §3.2.7).
pub const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";
const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Bounds on what the reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    /// Largest accepted input in bytes (default 35 MiB, NHN's message size limit).
    pub max_bytes: usize,
    /// Deepest accepted element nesting; the root is depth 1 (default 64).
    pub max_depth: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        XmlLimits {
            max_bytes: 36_700_160,
            max_depth: 64,
        }
    }
}

/// Why a document is refused as not well-formed or not acceptable XML.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct XmlError {
    /// 1-based line of the offending markup.
    pub line: usize,
    /// 1-based column (in characters) of the offending markup.
    pub column: usize,
    /// What is wrong.
    pub kind: XmlErrorKind,
}

/// The families of refusal; each message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlErrorKind {
    #[error("input is {size} bytes, more than the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("elements nested deeper than the limit of {limit}")]
    TooDeep { limit: usize },
    #[error("a DOCTYPE declaration is not allowed (no DTDs in health messages)")]
    Doctype,
    #[error("processing instruction <?{0}?> is not allowed")]
    ProcessingInstruction(String),
    #[error("entity reference &{0}; is not allowed (only &lt; &gt; &amp; &apos; &quot; and character references)")]
    EntityReference(String),
    #[error("character reference &{0}; does not name an XML character")]
    InvalidCharReference(String),
    #[error("character U+{0:04X} is not allowed in XML")]
    InvalidChar(u32),
    #[error("a second root element <{0}>; a document has exactly one")]
    SecondRoot(String),
    #[error("text outside the root element")]
    TextOutsideRoot,
    #[error("no root element")]
    NoRoot,
    #[error("end of input with element <{0}> still open")]
    UnclosedElement(String),
    #[error("end tag </{found}> does not match start tag <{expected}>")]
    MismatchedEndTag { expected: String, found: String },
    #[error("end tag </{0}> without a start tag")]
    UnexpectedEndTag(String),
    #[error("namespace prefix '{0}' is not declared")]
    UndeclaredPrefix(String),
    #[error("duplicate attribute '{0}'")]
    DuplicateAttribute(String),
    #[error("'<' in the value of attribute '{0}'")]
    LtInAttribute(String),
    #[error("the XML declaration is only allowed at the very start")]
    MisplacedDeclaration,
    #[error("input is not valid UTF-8")]
    InvalidUtf8,
    #[error(
        "unknown or unsupported encoding '{0}' (accepted: UTF-8, UTF-16, ISO-8859-1, windows-1252)"
    )]
    UnknownEncoding(String),
    #[error("the XML declaration names encoding '{declared}' but the document is {found} (XML 1.0 §4.3.3)")]
    EncodingMismatch {
        declared: String,
        found: &'static str,
    },
    #[error("byte 0x{byte:02X} is not defined in {encoding}")]
    UnmappableByte { byte: u8, encoding: &'static str },
    #[error("UTF-16 code unit 0x{unit:04X} is half of a surrogate pair without its other half")]
    UnpairedSurrogate { unit: u16 },
    #[error("UTF-16 input of {bytes} bytes (after any byte-order mark) ends in half a code unit")]
    Utf16OddLength { bytes: usize },
    #[error("malformed markup: {0}")]
    Syntax(String),
}

/// An attribute of a start tag, namespace-resolved (an unprefixed attribute is in no namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlAttr<'a> {
    /// Namespace URI, `""` for none.
    pub ns: Arc<str>,
    /// Local name.
    pub local: &'a str,
    /// Normalised value (XML 1.0 §3.3.3), references resolved.
    pub value: Cow<'a, str>,
}

/// A start tag (an empty-element tag is reported as a start tag followed by an end tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartTag<'a> {
    /// Namespace URI, `""` for none.
    pub ns: Arc<str>,
    /// Local name.
    pub local: &'a str,
    /// The attributes, without namespace declarations.
    pub attrs: Vec<XmlAttr<'a>>,
    /// Byte offset of the `<` in the decoded text (see [`XmlReader::position`]).
    pub offset: usize,
}

/// One step of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlEvent<'a> {
    Start(StartTag<'a>),
    /// Character data (a text run, a CDATA section or one resolved reference).
    Text(Cow<'a, str>),
    End,
    /// End of the document (reported once, after the root has closed).
    Eof,
}

/// The pull reader. Create it over decoded text with [`XmlReader::new`] (after
/// [`XmlReader::check_size`] and [`decode`]), or use [`XmlDocument`] which does all three.
pub struct XmlReader<'a> {
    text: &'a str,
    inner: quick_xml::Reader<&'a [u8]>,
    limits: XmlLimits,
    /// Open elements: qualified name, and how many namespace bindings it pushed.
    open: Vec<(&'a str, usize)>,
    bindings: Vec<(&'a str, Arc<str>)>,
    root_seen: bool,
    pending_end: bool,
    allow_doctype: bool,
    empty_ns: Arc<str>,
    xml_ns: Arc<str>,
    last_offset: usize,
    scanned: bool,
    raw_eol: bool,
    /// An attribute vector handed back by [`XmlReader::recycle`].
    attr_pool: Vec<XmlAttr<'a>>,
    /// Attributes of the tag being read, kept to reuse the allocation.
    plain: Vec<(&'a str, Cow<'a, str>)>,
}

/// Decoded input that owns what the reader borrows.
pub struct XmlDocument<'b> {
    text: Cow<'b, str>,
    limits: XmlLimits,
}

impl<'b> XmlDocument<'b> {
    /// Checks the size limit and decodes `bytes` to UTF-8.
    pub fn new(bytes: &'b [u8], limits: &XmlLimits) -> Result<Self, XmlError> {
        XmlReader::check_size(bytes, limits)?;
        Ok(XmlDocument {
            text: decode(bytes)?,
            limits: *limits,
        })
    }
    /// The decoded text.
    pub fn text(&self) -> &str {
        &self.text
    }
    /// A reader over the decoded text.
    pub fn reader(&self) -> XmlReader<'_> {
        XmlReader::new(&self.text, self.limits)
    }
}

fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

impl<'a> XmlReader<'a> {
    /// Refuses input beyond `limits.max_bytes` before anything is parsed.
    pub fn check_size(bytes: &[u8], limits: &XmlLimits) -> Result<(), XmlError> {
        if bytes.len() > limits.max_bytes {
            return Err(XmlError {
                line: 1,
                column: 1,
                kind: XmlErrorKind::TooLarge {
                    size: bytes.len(),
                    limit: limits.max_bytes,
                },
            });
        }
        Ok(())
    }

    /// A reader over already decoded text.
    pub fn new(text: &'a str, limits: XmlLimits) -> Self {
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let mut inner = quick_xml::Reader::from_str(text);
        let config = inner.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.allow_unmatched_ends = false;
        config.expand_empty_elements = false;
        XmlReader {
            text,
            inner,
            limits,
            open: Vec::new(),
            bindings: Vec::new(),
            root_seen: false,
            pending_end: false,
            allow_doctype: false,
            empty_ns: Arc::from(""),
            xml_ns: Arc::from(XML_NS),
            last_offset: 0,
            scanned: false,
            plain: Vec::new(),
            raw_eol: false,
            attr_pool: Vec::new(),
        }
    }

    /// For trusted local files only (the official schemas): skip a DOCTYPE instead of refusing
    /// it. Entity references other than the predefined ones are still refused, so nothing the
    /// DOCTYPE declares is ever expanded.
    pub fn skip_doctype(mut self) -> Self {
        self.allow_doctype = true;
        self
    }

    /// The namespace a prefix (None = the default namespace) is bound to at the current point:
    /// after a start tag, including that tag's own declarations. Used for QName-valued content
    /// such as `xsi:type` and schema `type="kith:CS"` attributes.
    pub fn resolve_prefix(&self, prefix: Option<&str>) -> Option<Arc<str>> {
        match prefix {
            None => Some(
                self.resolve(None, false, 0)
                    .unwrap_or_else(|_| self.empty_ns.clone()),
            ),
            Some(p) => self.resolve(Some(p), false, 0).ok(),
        }
    }

    /// Report text with its line ends as written (`\r\n` not turned into `\n`, XML 1.0 §2.11),
    /// saving a copy of every multi-line text. For consumers that normalise later or ignore the
    /// difference (the schema validator normalises where a type's whitespace rule keeps it).
    pub fn raw_line_ends(mut self) -> Self {
        self.raw_eol = true;
        self
    }

    /// Hands a start tag back once it has been used, so its attribute vector is reused for the
    /// next tag (optional; saves an allocation per element in tight loops).
    pub fn recycle(&mut self, tag: StartTag<'a>) {
        self.attr_pool = tag.attrs;
    }

    /// Current nesting depth (number of open elements).
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    /// Byte offset of the start of the last event in the decoded text.
    pub fn position(&self) -> usize {
        self.last_offset
    }

    /// Byte offset just after everything read so far (after an `End`, the end of that end tag).
    pub fn consumed(&self) -> usize {
        usize::try_from(self.inner.buffer_position()).unwrap_or(usize::MAX)
    }

    /// Line and column (1-based) of a byte offset in the decoded text.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        decode::line_col(self.text.as_bytes(), offset)
    }

    fn err(&self, offset: usize, kind: XmlErrorKind) -> XmlError {
        let (line, column) = self.line_col(offset);
        XmlError { line, column, kind }
    }

    /// XML 1.0 §2.2: the whole document (markup, comments and text alike) consists of `Char`s.
    /// One scan of the text before parsing is cheaper than checking every event. Valid UTF-8
    /// cannot hold surrogates, so the only non-characters to find are C0 controls and
    /// U+FFFE/U+FFFF (UTF-8 `EF BF BE`/`EF BF BF`).
    fn check_all_chars(&self) -> Result<(), XmlError> {
        // 32 bytes at a time, written without early exit so that it vectorises; only a chunk
        // holding a control character or an 0xEF lead byte is looked at byte by byte.
        for (k, chunk) in self.text.as_bytes().chunks(32).enumerate() {
            let mut suspect = false;
            for &c in chunk {
                suspect |= (c < 0x20) & (c != b'\t') & (c != b'\n') & (c != b'\r') | (c == 0xEF);
            }
            if suspect {
                self.check_chars_at(k * 32, k * 32 + chunk.len())?;
            }
        }
        Ok(())
    }

    fn check_chars_at(&self, from: usize, to: usize) -> Result<(), XmlError> {
        let b = self.text.as_bytes();
        for i in from..to {
            let c = b[i];
            if c < 0x20 && c != b'\t' && c != b'\n' && c != b'\r' {
                return Err(self.err(i, XmlErrorKind::InvalidChar(u32::from(c))));
            }
            if c == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF))
            {
                let cp = if b[i + 2] == 0xBE { 0xFFFE } else { 0xFFFF };
                return Err(self.err(i, XmlErrorKind::InvalidChar(cp)));
            }
        }
        Ok(())
    }

    fn resolve(
        &self,
        prefix: Option<&str>,
        for_attr: bool,
        offset: usize,
    ) -> Result<Arc<str>, XmlError> {
        match prefix {
            None if for_attr => Ok(self.empty_ns.clone()),
            None => Ok(self
                .bindings
                .iter()
                .rev()
                .find(|(p, _)| p.is_empty())
                .map_or_else(|| self.empty_ns.clone(), |(_, u)| u.clone())),
            Some("xml") => Ok(self.xml_ns.clone()),
            Some(p) => self
                .bindings
                .iter()
                .rev()
                .find(|(bp, _)| *bp == p)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| self.err(offset, XmlErrorKind::UndeclaredPrefix(p.to_string()))),
        }
    }

    fn map_qx(&self, e: quick_xml::Error, offset: usize) -> XmlError {
        use quick_xml::errors::IllFormedError;
        let pos = usize::try_from(self.inner.error_position()).unwrap_or(offset);
        let kind = match e {
            quick_xml::Error::IllFormed(IllFormedError::MismatchedEndTag { expected, found }) => {
                XmlErrorKind::MismatchedEndTag { expected, found }
            }
            quick_xml::Error::IllFormed(IllFormedError::UnmatchedEndTag(name)) => {
                XmlErrorKind::UnexpectedEndTag(name)
            }
            other => XmlErrorKind::Syntax(other.to_string()),
        };
        self.err(pos, kind)
    }

    fn start_tag(
        &mut self,
        e: &quick_xml::events::BytesStart<'_>,
        offset: usize,
    ) -> Result<StartTag<'a>, XmlError> {
        if self.open.is_empty() && self.root_seen {
            return Err(self.err(
                offset,
                XmlErrorKind::SecondRoot(
                    String::from_utf8_lossy(e.name().as_ref().as_bytes()).into(),
                ),
            ));
        }
        if self.open.len() + 1 > self.limits.max_depth {
            return Err(self.err(
                offset,
                XmlErrorKind::TooDeep {
                    limit: self.limits.max_depth,
                },
            ));
        }
        self.root_seen = true;
        // Tie the borrowed name to the input text rather than the event.
        let raw: &'a str = slice_of(self.text, e.name().as_ref());
        let mut pushed = 0;
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        for a in e.attributes().with_checks(true) {
            let a = a.map_err(|err| match err {
                quick_xml::events::attributes::AttrError::Duplicated(at, _) => self.err(
                    offset,
                    XmlErrorKind::DuplicateAttribute(format!("at byte {at} of the tag")),
                ),
                other => self.err(offset, XmlErrorKind::Syntax(other.to_string())),
            })?;
            let key: &'a str = slice_of(self.text, a.key.as_ref());
            if a.value.contains('<') {
                return Err(self.err(offset, XmlErrorKind::LtInAttribute(key.to_string())));
            }
            let value = self.attr_value(&a, offset)?;
            if key == "xmlns" {
                self.bindings.push(("", Arc::from(value.as_ref())));
                pushed += 1;
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                if value.is_empty() {
                    // Namespaces in XML 1.0 §2.2: a prefix cannot be undeclared.
                    return Err(self.err(offset, XmlErrorKind::UndeclaredPrefix(p.to_string())));
                }
                self.bindings.push((p, Arc::from(value.as_ref())));
                pushed += 1;
            } else {
                plain.push((key, value));
            }
        }
        self.open.push((raw, pushed));
        let (prefix, local) = split_qname(raw);
        let ns = self.resolve(prefix, false, offset)?;
        let mut attrs = std::mem::take(&mut self.attr_pool);
        attrs.clear();
        for (key, value) in plain.drain(..) {
            let (p, l) = split_qname(key);
            let ans = self.resolve(p, true, offset)?;
            if p.is_some() && attrs.iter().any(|x: &XmlAttr| x.local == l && x.ns == ans) {
                return Err(self.err(offset, XmlErrorKind::DuplicateAttribute(key.to_string())));
            }
            attrs.push(XmlAttr {
                ns: ans,
                local: l,
                value,
            });
        }
        self.plain = plain;
        Ok(StartTag {
            ns,
            local,
            attrs,
            offset,
        })
    }

    fn attr_value(
        &self,
        a: &quick_xml::events::attributes::Attribute<'_>,
        offset: usize,
    ) -> Result<Cow<'a, str>, XmlError> {
        let raw = &a.value;
        if raw.contains('&') {
            // Resolve references ourselves so the rule "predefined and character references
            // only" has one implementation for text and attributes.
            // XML 1.0 §3.3.3: literal whitespace becomes a space, but a character reference
            // appends the character itself (`&#9;` stays a tab), so normalise before resolving.
            let mut out = String::with_capacity(raw.len());
            let mut rest: &str = raw;
            while let Some(amp) = rest.find('&') {
                push_attr_ws_normalized(&mut out, &rest[..amp]);
                let after = &rest[amp + 1..];
                let semi = after.find(';').ok_or_else(|| {
                    self.err(
                        offset,
                        XmlErrorKind::Syntax("unterminated reference in attribute".into()),
                    )
                })?;
                out.push(self.resolve_ref(&after[..semi], offset)?);
                rest = &after[semi + 1..];
            }
            push_attr_ws_normalized(&mut out, rest);
            return Ok(Cow::Owned(out));
        }
        let v = a
            .normalized_value(XmlVersion::Explicit1_0)
            .map_err(|e| self.err(offset, XmlErrorKind::Syntax(e.to_string())))?;
        Ok(match v {
            Cow::Borrowed(b) => Cow::Borrowed(slice_of(self.text, b)),
            Cow::Owned(o) => Cow::Owned(o),
        })
    }

    fn resolve_ref(&self, name: &str, offset: usize) -> Result<char, XmlError> {
        match name {
            "lt" => Ok('<'),
            "gt" => Ok('>'),
            "amp" => Ok('&'),
            "apos" => Ok('\''),
            "quot" => Ok('"'),
            _ => {
                if let Some(num) = name.strip_prefix('#') {
                    let code = match num.strip_prefix('x') {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse::<u32>().ok(),
                    };
                    match code.and_then(char::from_u32).filter(|&c| is_xml_char(c)) {
                        Some(c) => Ok(c),
                        None => {
                            Err(self
                                .err(offset, XmlErrorKind::InvalidCharReference(name.to_string())))
                        }
                    }
                } else {
                    Err(self.err(offset, XmlErrorKind::EntityReference(name.to_string())))
                }
            }
        }
    }

    fn close(&mut self) {
        if let Some((_, pushed)) = self.open.pop() {
            let keep = self.bindings.len() - pushed;
            self.bindings.truncate(keep);
        }
    }

    /// The next event, or the reason the document is refused.
    pub fn next_event(&mut self) -> Result<XmlEvent<'a>, XmlError> {
        if !self.scanned {
            self.scanned = true;
            self.check_all_chars()?;
        }
        if self.pending_end {
            self.pending_end = false;
            self.close();
            return Ok(XmlEvent::End);
        }
        loop {
            let offset = usize::try_from(self.inner.buffer_position()).unwrap_or(usize::MAX);
            self.last_offset = offset;
            let ev = self
                .inner
                .read_event()
                .map_err(|e| self.map_qx(e, offset))?;
            match ev {
                Event::Start(e) => return Ok(XmlEvent::Start(self.start_tag(&e, offset)?)),
                Event::Empty(e) => {
                    let tag = self.start_tag(&e, offset)?;
                    self.pending_end = true;
                    return Ok(XmlEvent::Start(tag));
                }
                Event::End(_) => {
                    self.close();
                    return Ok(XmlEvent::End);
                }
                Event::Text(t) => {
                    let s = match crlf_indent(&t) {
                        Some(ws) => Cow::Borrowed(ws),
                        None if self.raw_eol => t.into_inner(),
                        None => t.xml10_content(),
                    };
                    if self.open.is_empty() {
                        if !s.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                            return Err(self.err(offset, XmlErrorKind::TextOutsideRoot));
                        }
                        continue;
                    }
                    if s.contains(']') && s.contains("]]>") {
                        return Err(self.err(offset, XmlErrorKind::Syntax("']]>' in text".into())));
                    }
                    return Ok(XmlEvent::Text(s));
                }
                Event::CData(t) => {
                    if self.open.is_empty() {
                        return Err(self.err(offset, XmlErrorKind::TextOutsideRoot));
                    }
                    return Ok(XmlEvent::Text(t.xml10_content()));
                }
                Event::GeneralRef(r) => {
                    if self.open.is_empty() {
                        return Err(self.err(offset, XmlErrorKind::TextOutsideRoot));
                    }
                    let c = self.resolve_ref(&r, offset)?;
                    let text = match c {
                        '<' => Cow::Borrowed("<"),
                        '>' => Cow::Borrowed(">"),
                        '&' => Cow::Borrowed("&"),
                        '\'' => Cow::Borrowed("'"),
                        '"' => Cow::Borrowed("\""),
                        other => Cow::Owned(other.to_string()),
                    };
                    return Ok(XmlEvent::Text(text));
                }
                Event::Comment(_) => continue,
                Event::Decl(_) => {
                    if offset != 0 {
                        return Err(self.err(offset, XmlErrorKind::MisplacedDeclaration));
                    }
                    continue;
                }
                Event::PI(p) => {
                    return Err(self.err(
                        offset,
                        XmlErrorKind::ProcessingInstruction(p.target().to_string()),
                    ));
                }
                Event::DocType(_) => {
                    if self.allow_doctype && !self.root_seen {
                        continue;
                    }
                    return Err(self.err(offset, XmlErrorKind::Doctype));
                }
                Event::Eof => {
                    if let Some((name, _)) = self.open.last() {
                        let name = name.to_string();
                        return Err(self.err(self.text.len(), XmlErrorKind::UnclosedElement(name)));
                    }
                    if !self.root_seen {
                        return Err(self.err(self.text.len(), XmlErrorKind::NoRoot));
                    }
                    return Ok(XmlEvent::Eof);
                }
            }
        }
    }
}

/// Reads a whole document, only checking that it is acceptable (well-formed under the rules
/// above). Useful for stages that need the verdict without the events.
pub fn check_well_formed(bytes: &[u8], limits: &XmlLimits) -> Result<(), XmlError> {
    let doc = XmlDocument::new(bytes, limits)?;
    let mut r = doc.reader();
    while r.next_event()? != XmlEvent::Eof {}
    Ok(())
}

/// Indentation after a CRLF line end (`"\r\n"` and spaces or tabs), the most common text in
/// messages written on Windows, normalised (XML 1.0 §2.11) without allocating: a slice of a
/// static string.
fn crlf_indent(raw: &str) -> Option<&'static str> {
    const SPACES: &str = concat!(
        "\n",
        "                                                                ",
        "                                                                "
    );
    const TABS: &str = "\n\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t";
    let rest = raw.strip_prefix("\r\n")?;
    let fill = if rest.bytes().all(|b| b == b' ') {
        SPACES
    } else if rest.bytes().all(|b| b == b'\t') {
        TABS
    } else {
        return None;
    };
    fill.get(..rest.len() + 1)
}

/// Appends literal attribute text with its whitespace characters replaced by spaces (XML 1.0
/// §3.3.3; a `\r\n` line end, already one `\n` after §2.11, becomes one space).
fn push_attr_ws_normalized(out: &mut String, s: &str) {
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push(' ');
            }
            '\t' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
}

/// `(prefix, local)` of a qualified name.
pub fn split_qname(q: &str) -> (Option<&str>, &str) {
    match q.split_once(':') {
        Some((p, l)) => (Some(p), l),
        None => (None, q),
    }
}

/// Re-borrows `part` (a sub-slice of `whole` handed out by quick-xml) with `whole`'s lifetime.
fn slice_of<'a>(whole: &'a str, part: &str) -> &'a str {
    let base = whole.as_ptr() as usize;
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    match whole.get(start..start + part.len()) {
        Some(s) if start <= whole.len() => s,
        // quick-xml borrows from the input for a slice reader; should it ever hand out an owned
        // copy, leak nothing and fall back to searching (names are short).
        _ => whole.find(part).map_or("", |i| &whole[i..i + part.len()]),
    }
}

#[cfg(test)]
mod tests;
