//! A read-only element tree over the hardened reader, for the message model (`msghead`,
//! `apprec`): they look elements up by name rather than follow a stream.
//!
//! Input: an [`XmlDocument`] (size-checked and decoded). Output: a [`Tree`] whose elements carry
//! their namespace URI and local name (prefixes are resolved away, never matched on), their
//! unprefixed attributes and their text. Failure: the reader's [`XmlError`], so everything the
//! reader refuses (DTDs, entities, depth, encodings, …) is refused here too.
//!
//! Built for a message of a few kilobytes read once: the elements live in one vector linked by
//! index, names, attribute values and most texts are borrowed from the document, and a subtree in
//! a namespace other than the root's (the payload in `RefDoc/Content`, `ds:Signature`) is kept as
//! one childless, textless node — the model needs its namespace, never its content, which also
//! keeps patient data in the payload out of memory. The reader still reads those subtrees, so
//! the whole document is checked.

use std::borrow::Cow;
use std::sync::Arc;

use super::{decode, XmlAttr, XmlDocument, XmlError, XmlEvent};

const NONE: u32 = u32::MAX;

struct Node<'a> {
    ns: Arc<str>,
    local: &'a str,
    attrs: Vec<XmlAttr<'a>>,
    text: Cow<'a, str>,
    first_child: u32,
    last_child: u32,
    next_sibling: u32,
    /// Byte offset of the start tag in the decoded text (for line numbers in errors).
    offset: usize,
}

/// The elements of one document; [`Tree::root`] is where lookups start.
pub(crate) struct Tree<'a> {
    text: &'a str,
    nodes: Vec<Node<'a>>,
}

impl<'a> Tree<'a> {
    /// Reads the whole document.
    pub(crate) fn read(doc: &'a XmlDocument<'_>) -> Result<Tree<'a>, XmlError> {
        let mut r = doc.reader();
        let mut builder = TreeBuilder::default();
        loop {
            let ev = r.next_event()?;
            builder.event(&ev);
            match ev {
                XmlEvent::Start(tag) => r.recycle(tag),
                XmlEvent::Eof => break,
                _ => {}
            }
        }
        // The reader reports Eof only after a root element has closed.
        builder.finish(doc.text()).ok_or(XmlError {
            line: 1,
            column: 1,
            kind: super::XmlErrorKind::NoRoot,
        })
    }

    /// The root element.
    pub(crate) fn root(&self) -> Element<'_> {
        Element {
            tree: self,
            index: 0,
        }
    }
}

/// Builds a [`Tree`] from the events of one pass over a document — [`Tree::read`]'s own pass, or
/// the schema validator's (`xsd::Schemas::validate_text`), so that a message is read once.
#[derive(Default)]
pub(crate) struct TreeBuilder<'a> {
    nodes: Vec<Node<'a>>,
    /// Open elements that are kept, innermost last.
    open: Vec<u32>,
    /// Depth inside a foreign subtree, counting its root (0 = not inside one).
    skipping: usize,
}

impl<'a> TreeBuilder<'a> {
    /// Takes the next event of the document, in order.
    pub(crate) fn event(&mut self, ev: &XmlEvent<'a>) {
        match ev {
            XmlEvent::Start(tag) => {
                if self.skipping > 0 {
                    self.skipping += 1;
                    return;
                }
                let nodes = &mut self.nodes;
                let foreign = nodes
                    .first()
                    .is_some_and(|root| !same_ns(&root.ns, &tag.ns));
                let index = u32::try_from(nodes.len()).unwrap_or(NONE);
                if let Some(&parent) = self.open.last() {
                    match nodes[parent as usize].last_child {
                        NONE => nodes[parent as usize].first_child = index,
                        last => nodes[last as usize].next_sibling = index,
                    }
                    nodes[parent as usize].last_child = index;
                }
                let attrs = if foreign {
                    Vec::new()
                } else {
                    tag.attrs.clone()
                };
                nodes.push(Node {
                    ns: tag.ns.clone(),
                    local: tag.local,
                    attrs,
                    text: Cow::Borrowed(""),
                    first_child: NONE,
                    last_child: NONE,
                    next_sibling: NONE,
                    offset: tag.offset,
                });
                if foreign {
                    self.skipping = 1;
                } else {
                    self.open.push(index);
                }
            }
            XmlEvent::Text(t) => {
                if self.skipping > 0 {
                    return;
                }
                if let Some(&top) = self.open.last() {
                    let text = &mut self.nodes[top as usize].text;
                    // The validator's reader hands over line ends as written (XML 1.0 §2.11 is
                    // applied here, where the model needs it).
                    if t.contains('\r') {
                        text.to_mut()
                            .push_str(&t.replace("\r\n", "\n").replace('\r', "\n"));
                    } else if text.is_empty() {
                        *text = t.clone();
                    } else {
                        text.to_mut().push_str(t);
                    }
                }
            }
            XmlEvent::End => {
                if self.skipping > 0 {
                    self.skipping -= 1;
                } else {
                    self.open.pop();
                }
            }
            XmlEvent::Eof => {}
        }
    }

    /// The tree of a document whose every event was given; `text` is the decoded document the
    /// events borrow from. `None` when no element was seen.
    pub(crate) fn finish(self, text: &'a str) -> Option<Tree<'a>> {
        if self.nodes.is_empty() {
            return None;
        }
        Some(Tree {
            text: text.strip_prefix('\u{FEFF}').unwrap_or(text),
            nodes: self.nodes,
        })
    }
}

fn same_ns(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || **a == **b
}

/// One element of a [`Tree`].
#[derive(Clone, Copy)]
pub(crate) struct Element<'t> {
    tree: &'t Tree<'t>,
    index: u32,
}

// Deliberately opaque: an element may hold patient data (MsgInfo/Patient) before extraction.
impl std::fmt::Debug for Element<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Element({{{}}}{})", self.ns(), self.local())
    }
}

impl<'t> Element<'t> {
    fn node(self) -> &'t Node<'t> {
        &self.tree.nodes[self.index as usize]
    }

    /// Namespace URI, `""` for none.
    pub(crate) fn ns(self) -> &'t str {
        &self.node().ns
    }

    pub(crate) fn local(self) -> &'t str {
        self.node().local
    }

    /// The element's own character data, as written (references resolved, line ends
    /// normalised); empty for an element of a foreign subtree.
    pub(crate) fn text(self) -> &'t str {
        &self.node().text
    }

    /// 1-based line of the start tag.
    pub(crate) fn line(self) -> usize {
        decode::line_col(self.tree.text.as_bytes(), self.node().offset).0
    }

    /// An unprefixed attribute's value (`V`, `S`, `DN`, `OT`); namespaced ones are not matched.
    pub(crate) fn attr(self, name: &str) -> Option<&'t str> {
        self.node()
            .attrs
            .iter()
            .find(|a| a.ns.is_empty() && a.local == name)
            .map(|a| a.value.as_ref())
    }

    /// Every child element, in document order, whatever its namespace.
    pub(crate) fn children(self) -> impl Iterator<Item = Element<'t>> {
        let tree = self.tree;
        let mut next = self.node().first_child;
        std::iter::from_fn(move || {
            let index = next;
            if index == NONE {
                return None;
            }
            next = tree.nodes[index as usize].next_sibling;
            Some(Element { tree, index })
        })
    }

    /// Every child with this local name in this element's namespace.
    pub(crate) fn children_named(self, local: &'t str) -> impl Iterator<Item = Element<'t>> {
        let ns = &self.node().ns;
        self.children()
            .filter(move |c| c.node().local == local && same_ns(&c.node().ns, ns))
    }

    /// The first child with this local name in this element's namespace.
    pub(crate) fn child(self, local: &str) -> Option<Element<'t>> {
        let ns = &self.node().ns;
        self.children()
            .find(|c| c.node().local == local && same_ns(&c.node().ns, ns))
    }

    /// The trimmed text of the named child.
    pub(crate) fn child_text(self, local: &str) -> Option<&'t str> {
        self.child(local).map(|c| c.text().trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::{XmlErrorKind, XmlLimits};

    fn with_root<T>(xml: &[u8], f: impl FnOnce(Element<'_>) -> T) -> Result<T, XmlError> {
        let doc = XmlDocument::new(xml, &XmlLimits::default())?;
        let tree = Tree::read(&doc)?;
        Ok(f(tree.root()))
    }

    #[test]
    fn resolves_namespaces_not_prefixes() {
        let a = with_root(
            br#"<a:R xmlns:a="urn:x"><a:C V="1">t&amp;&#65;</a:C></a:R>"#,
            |r| {
                (
                    r.ns().to_owned(),
                    r.child_text("C").map(str::to_owned),
                    r.child("C").and_then(|c| c.attr("V")).map(str::to_owned),
                )
            },
        );
        assert_eq!(
            a,
            Ok(("urn:x".into(), Some("t&A".into()), Some("1".into())))
        );
        let other = with_root(br#"<R xmlns="urn:x" xmlns:o="urn:y"><o:C/></R>"#, |r| {
            r.child("C").is_none()
        });
        assert_eq!(
            other,
            Ok(true),
            "a child in another namespace is not matched by local name"
        );
        let prefixed_attr = with_root(br#"<R xmlns:o="urn:y" o:V="x"/>"#, |r| {
            r.attr("V").is_none()
        });
        assert_eq!(
            prefixed_attr,
            Ok(true),
            "a namespaced attribute is not matched by local name"
        );
    }

    #[test]
    fn refuses_what_the_reader_refuses() {
        let kind = |xml: &[u8]| with_root(xml, |_| ()).map_err(|e| e.kind);
        assert!(matches!(
            kind(b"<!DOCTYPE r [<!ENTITY e \"x\">]><r>&e;</r>"),
            Err(XmlErrorKind::Doctype)
        ));
        assert!(matches!(
            kind(b"<r>&e;</r>"),
            Err(XmlErrorKind::EntityReference(_))
        ));
        let deep = format!("{}{}", "<a>".repeat(65), "</a>".repeat(65));
        assert!(matches!(
            kind(deep.as_bytes()),
            Err(XmlErrorKind::TooDeep { .. })
        ));
        assert!(matches!(
            kind(b"<a><b></a>"),
            Err(XmlErrorKind::MismatchedEndTag { .. })
        ));
        assert!(matches!(
            kind(b"<a>"),
            Err(XmlErrorKind::UnclosedElement(_))
        ));
        assert!(matches!(kind(b""), Err(XmlErrorKind::NoRoot)));
        assert!(matches!(
            kind(b"<?xml version=\"1.0\" encoding=\"UTF-16\"?><a/>"),
            Err(XmlErrorKind::EncodingMismatch { .. })
        ));
        assert!(kind(b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><a>\x80</a>").is_ok());
    }

    #[test]
    fn foreign_subtrees_are_kept_as_empty_nodes_and_latin1_decodes() {
        let xml = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><R xmlns=\"urn:x\"><C><P xmlns=\"urn:p\"><Name>secret</Name><P/></P></C><D>\xf8</D></R>";
        let got = with_root(xml, |r| {
            let p = r.child("C").and_then(|c| c.children().next()).map(|p| {
                (
                    p.ns().to_owned(),
                    p.local().to_owned(),
                    p.children().count(),
                    p.text().to_owned(),
                )
            });
            (p, r.child_text("D").map(str::to_owned))
        });
        assert_eq!(
            got,
            Ok((
                Some(("urn:p".into(), "P".into(), 0, String::new())),
                Some("ø".into())
            ))
        );
    }

    #[test]
    fn elements_carry_line_numbers_and_text_in_pieces_is_joined() {
        let got = with_root(b"<a>\n<b/>\n\n<c>x&lt;<![CDATA[y]]>z\r\n</c></a>", |r| {
            let lines: Vec<usize> = std::iter::once(r.line())
                .chain(r.children().map(Element::line))
                .collect();
            (lines, r.child("c").map(|c| c.text().to_owned()))
        });
        assert_eq!(got, Ok((vec![1, 2, 4], Some("x<yz\n".into()))));
    }
}
