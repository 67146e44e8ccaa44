//! The streaming validator: one pass over [`XmlEvent`]s with a stack of open elements, each
//! carrying its type and its position set in the content-model automaton (XML Schema Part 1
//! §3.3.4 Element Locally Valid, §3.4.4 Complex Type, §3.2.4 Attribute, §3.14.4 Simple Type).
//!
//! Input: a compiled [`SetModel`] and decoded text. Output: `Ok(())` or the first violation.
//! Memory is the element stack (bounded by `max_depth`) plus the text of the element being
//! read when it has simple content.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use super::model::*;
use super::types::{normalize_ws, Builtin, WhiteSpace};
use super::{SchemaSet, Violation};
use crate::xml::{split_qname, StartTag, XmlError, XmlEvent, XmlLimits, XmlReader, XSI_NS};

enum Failure {
    Invalid(Violation),
}

/// What one pass over a document found.
pub struct Outcome {
    /// Namespace and local name of the root element.
    pub root: Option<(Arc<str>, String)>,
    /// Every element namespace in the document (decides the MsgHead schema set).
    pub seen: Vec<Arc<str>>,
    /// The set the pass validated against (None: the root has no schema; nothing validated).
    pub used: Option<SchemaSet>,
    /// The first violation, if any.
    pub violation: Option<Violation>,
}

/// Picks the model for a root element (namespace, local name).
pub type Chooser<'s> = dyn Fn(&str, &str) -> Option<(SchemaSet, &'s SetModel)> + 's;

static EMPTY: LazyLock<SetModel> = LazyLock::new(SetModel::default);

enum Kind {
    Simple(TypeId),
    Empty,
    Elements {
        ty: TypeId,
        states: Vec<u32>,
        mixed: bool,
    },
    /// Validated as `xs:anyType`: children with a global declaration are validated, the rest
    /// laxly again (libxml2 does the same for a lax wildcard without a declaration).
    Lax,
    Skip,
}

struct Frame<'a> {
    local: &'a str,
    kind: Kind,
    /// Character content of a simple-content element; borrowed from the input when it is a
    /// single run (the common case), so most values are never copied.
    text: Cow<'a, str>,
    decl: Option<ElemId>,
    nil: bool,
}

struct V<'m, 'a> {
    m: &'m SetModel,
    /// Position-set vectors of closed frames, reused so that entering an element allocates
    /// nothing in the steady state.
    spare: Vec<Vec<u32>>,
    scratch: Vec<u32>,
    r: XmlReader<'a>,
    stack: Vec<Frame<'a>>,
    ids: HashSet<String>,
}

/// Checks a value against a simple type; `Err` says why not.
pub fn check_simple(
    m: &SetModel,
    t: TypeId,
    raw: &str,
    ids: &mut HashSet<String>,
) -> Result<(), String> {
    let TypeDef::Simple(st) = &m.types[t] else {
        return Err(format!("type '{}' is not a simple type", m.type_name(t)));
    };
    match &st.variety {
        Variety::Atomic if raw.contains('\r') && st.ws != WhiteSpace::Collapse => {
            // The reader hands over text with line ends as written; where the whitespace rule
            // keeps them they must first be normalised (XML 1.0 §2.11). Under `collapse` a CR
            // is whitespace like LF, so the result is the same without this copy.
            let mut eol = String::with_capacity(raw.len());
            let mut chars = raw.chars().peekable();
            while let Some(c) = chars.next() {
                if c == '\r' {
                    chars.next_if_eq(&'\n');
                    eol.push('\n');
                } else {
                    eol.push(c);
                }
            }
            check_simple(m, t, &eol, ids)
        }
        Variety::Atomic => {
            // Attachments are megabytes of base64: check them in place rather than collapsing a
            // copy first (collapsing changes only whitespace, which base64 ignores).
            let raw_ok = st.builtin == Builtin::Base64Binary
                && st.facets.enumeration.is_none()
                && st.facets.patterns.is_empty();
            let v = if raw_ok {
                std::borrow::Cow::Borrowed(raw)
            } else {
                normalize_ws(raw, st.ws)
            };
            st.builtin.check(&v)?;
            st.facets.check(&v, st.builtin)?;
            if st.builtin == Builtin::Id && !ids.insert(v.to_string()) {
                // §3.3.4 / Validation Rule: ID values are unique within a document.
                return Err(format!(
                    "'{v}' is not unique: an ID with this value already exists"
                ));
            }
            Ok(())
        }
        Variety::List(item) => {
            let v = normalize_ws(raw, WhiteSpace::Collapse);
            for tok in v.split(' ').filter(|s| !s.is_empty()) {
                check_simple(m, *item, tok, ids)?;
            }
            let n = v.split(' ').filter(|s| !s.is_empty()).count();
            let f = &st.facets;
            if f.length.is_some_and(|l| n != l)
                || f.min_length.is_some_and(|l| n < l)
                || f.max_length.is_some_and(|l| n > l)
            {
                return Err(format!(
                    "'{v}' has {n} items, which the length facets do not allow"
                ));
            }
            Ok(())
        }
        Variety::Union(members) => {
            let ok = members
                .iter()
                .any(|&mt| check_simple(m, mt, raw, &mut ids.clone()).is_ok());
            if !ok {
                let v = normalize_ws(raw, WhiteSpace::Collapse);
                return Err(format!(
                    "'{v}' is not a valid value of the union type '{}'",
                    st.name
                ));
            }
            let v = normalize_ws(raw, WhiteSpace::Collapse);
            st.facets.check(&v, Builtin::String)
        }
    }
}

fn qn(ns: &str, local: &str) -> String {
    if ns.is_empty() {
        local.to_string()
    } else {
        format!("{{{ns}}}{local}")
    }
}

impl<'m, 'a> V<'m, 'a> {
    fn path(&self, extra: Option<&str>) -> String {
        let mut p: String = self.stack.iter().map(|f| format!("/{}", f.local)).collect();
        if let Some(e) = extra {
            p.push('/');
            p.push_str(e);
        }
        if p.is_empty() {
            p.push('/');
        }
        p
    }

    fn violation(
        &self,
        offset: usize,
        extra: Option<&str>,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Failure {
        let (line, column) = self.r.line_col(offset);
        Failure::Invalid(Violation {
            line,
            column,
            path: self.path(extra),
            expected: expected.into(),
            found: found.into(),
        })
    }

    fn expected_list(&self, ty: TypeId, states: &[u32]) -> String {
        let TypeDef::Complex(ComplexType {
            content: Content::Elements { auto, .. },
            ..
        }) = &self.m.types[ty]
        else {
            return "nothing".into();
        };
        let mut names: Vec<String> = Vec::new();
        for &s in states {
            for &(leaf, _) in &auto.trans[s as usize] {
                let n = match &auto.leaves[leaf as usize] {
                    Leaf::Elem(e) => qn(&self.m.elems[*e].ns, &self.m.elems[*e].local),
                    Leaf::Any(w) => w.describe(),
                };
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        if names.is_empty() {
            "no more child elements".into()
        } else {
            format!("( {} )", names.join(", "))
        }
    }

    /// The frame kind for an element of type `t`.
    fn kind_for(&mut self, t: TypeId) -> Kind {
        match &self.m.types[t] {
            TypeDef::Simple(_) => Kind::Simple(t),
            TypeDef::Complex(c) => match &c.content {
                Content::Empty => Kind::Empty,
                Content::Simple(s) => Kind::Simple(*s),
                Content::Elements { mixed, .. } => {
                    let mut states = self.spare.pop().unwrap_or_default();
                    states.clear();
                    states.push(0);
                    Kind::Elements {
                        ty: t,
                        states,
                        mixed: *mixed,
                    }
                }
                Content::Any => Kind::Lax,
            },
            TypeDef::Pending => Kind::Skip,
        }
    }

    fn check_attrs(&mut self, t: TypeId, tag: &StartTag<'a>) -> Result<(), Failure> {
        let name = tag.local;
        let (uses, wild): (&[AttrUse], Option<&Wildcard>) = match &self.m.types[t] {
            TypeDef::Complex(c) => (&c.attrs, c.attr_wildcard.as_ref()),
            _ => (&[], None),
        };
        for a in &tag.attrs {
            if &*a.ns == XSI_NS {
                continue;
            }
            match uses.iter().find(|u| u.local == a.local && u.ns == *a.ns) {
                Some(u) => {
                    if let Err(e) = check_simple(self.m, u.ty, &a.value, &mut self.ids) {
                        return Err(self.violation(
                            tag.offset,
                            Some(name),
                            format!(
                                "attribute '{}' of type '{}'",
                                a.local,
                                self.m.type_name(u.ty)
                            ),
                            e,
                        ));
                    }
                    if let Some(f) = &u.fixed {
                        let ws = match &self.m.types[u.ty] {
                            TypeDef::Simple(s) => s.ws,
                            _ => WhiteSpace::Preserve,
                        };
                        if normalize_ws(&a.value, ws) != normalize_ws(f, ws) {
                            let by = if u.fixed_on_ref {
                                " (by the attribute reference, XSD 1.0 §3.2.2)"
                            } else {
                                ""
                            };
                            return Err(self.violation(
                                tag.offset,
                                Some(name),
                                format!("attribute '{}' fixed{by} to '{f}'", a.local),
                                format!("'{}'", a.value),
                            ));
                        }
                    }
                }
                None => {
                    let allowed =
                        wild.is_some_and(|w| w.allows(&a.ns) && w.process != Process::Strict);
                    if !allowed {
                        return Err(self.violation(
                            tag.offset,
                            Some(name),
                            format!(
                                "one of the declared attributes ({})",
                                uses.iter()
                                    .map(|u| qn(&u.ns, &u.local))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            format!("attribute '{}' which is not allowed", qn(&a.ns, a.local)),
                        ));
                    }
                }
            }
        }
        for u in uses.iter().filter(|u| u.required) {
            if !tag
                .attrs
                .iter()
                .any(|a| a.local == u.local && *a.ns == *u.ns)
            {
                return Err(self.violation(
                    tag.offset,
                    Some(name),
                    format!("required attribute '{}'", qn(&u.ns, &u.local)),
                    "it is missing",
                ));
            }
        }
        Ok(())
    }

    /// Validates a start tag against declaration `d` and pushes its frame.
    fn enter(&mut self, d: ElemId, tag: &StartTag<'a>) -> Result<(), Failure> {
        let decl = &self.m.elems[d];
        let mut ty = decl.ty;
        if decl.is_abstract {
            return Err(self.violation(
                tag.offset,
                Some(tag.local),
                "a non-abstract element",
                "an abstract element declaration",
            ));
        }
        let mut nil = false;
        for a in tag.attrs.iter().filter(|a| &*a.ns == XSI_NS) {
            match a.local {
                "type" => {
                    let (p, l) = split_qname(a.value.trim());
                    let ns = self
                        .r
                        .resolve_prefix(p)
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    let Some(xt) = self.m.named_type(&ns, l) else {
                        return Err(self.violation(
                            tag.offset,
                            Some(tag.local),
                            "xsi:type naming a type of the schema",
                            format!("'{}'", a.value),
                        ));
                    };
                    if !self.m.derives_from(xt, ty) {
                        return Err(self.violation(
                            tag.offset,
                            Some(tag.local),
                            format!("a type derived from '{}'", self.m.type_name(ty)),
                            format!("xsi:type '{}'", a.value),
                        ));
                    }
                    ty = xt;
                }
                "nil" => {
                    let v = a.value.trim();
                    if !decl.nillable {
                        return Err(self.violation(
                            tag.offset,
                            Some(tag.local),
                            "no xsi:nil (the element is not nillable)",
                            format!("xsi:nil='{v}'"),
                        ));
                    }
                    nil = v == "true" || v == "1";
                }
                "schemaLocation" | "noNamespaceSchemaLocation" => {}
                other => {
                    return Err(self.violation(
                        tag.offset,
                        Some(tag.local),
                        "only xsi:type, xsi:nil, xsi:schemaLocation",
                        format!("xsi:{other}"),
                    ));
                }
            }
        }
        if let TypeDef::Complex(c) = &self.m.types[ty] {
            if c.is_abstract {
                return Err(self.violation(
                    tag.offset,
                    Some(tag.local),
                    "a non-abstract type",
                    format!("abstract type '{}'", c.name),
                ));
            }
        }
        self.check_attrs(ty, tag)?;
        let kind = if nil { Kind::Empty } else { self.kind_for(ty) };
        self.stack.push(Frame {
            local: tag.local,
            kind,
            text: Cow::Borrowed(""),
            decl: Some(d),
            nil,
        });
        Ok(())
    }

    fn start(&mut self, tag: &StartTag<'a>) -> Result<(), Failure> {
        enum Pk {
            Root,
            Skip,
            Lax,
            Simple,
            Empty(bool),
            Elements(TypeId),
        }
        let pk = match self.stack.last() {
            None => Pk::Root,
            Some(f) => match &f.kind {
                Kind::Skip => Pk::Skip,
                Kind::Lax => Pk::Lax,
                Kind::Simple(_) => Pk::Simple,
                Kind::Empty => Pk::Empty(f.nil),
                Kind::Elements { ty, .. } => Pk::Elements(*ty),
            },
        };
        let push_plain = |v: &mut Self, tag: &StartTag<'a>, kind: Kind| {
            v.stack.push(Frame {
                local: tag.local,
                kind,
                text: Cow::Borrowed(""),
                decl: None,
                nil: false,
            });
            Ok(())
        };
        match pk {
            Pk::Root => match self.m.global(&tag.ns, tag.local) {
                Some(d) => self.enter(d, tag),
                None => Err(self.violation(
                    tag.offset,
                    Some(tag.local),
                    "a globally declared root element",
                    format!("no declaration for {}", qn(&tag.ns, tag.local)),
                )),
            },
            Pk::Skip => push_plain(self, tag, Kind::Skip),
            Pk::Lax => match self.m.global(&tag.ns, tag.local) {
                Some(d) => self.enter(d, tag),
                None => push_plain(self, tag, Kind::Lax),
            },
            Pk::Simple => Err(self.violation(
                tag.offset,
                Some(tag.local),
                "no child elements (the content type is a simple type)",
                format!("element {}", qn(&tag.ns, tag.local)),
            )),
            Pk::Empty(nil) => {
                let why = if nil {
                    "the element is nil"
                } else {
                    "the content type is empty"
                };
                Err(self.violation(
                    tag.offset,
                    Some(tag.local),
                    format!("no child elements ({why})"),
                    format!("element {}", qn(&tag.ns, tag.local)),
                ))
            }
            Pk::Elements(ty) => {
                let m = self.m;
                let states: &[u32] = match self.stack.last() {
                    Some(Frame {
                        kind: Kind::Elements { states, .. },
                        ..
                    }) => states,
                    _ => &[],
                };
                let TypeDef::Complex(ComplexType {
                    content: Content::Elements { auto, .. },
                    ..
                }) = &m.types[ty]
                else {
                    return Err(self.violation(
                        tag.offset,
                        Some(tag.local),
                        "a compiled content model",
                        "none",
                    ));
                };
                let mut next = std::mem::take(&mut self.scratch);
                next.clear();
                let mut chosen: Option<&Leaf> = None;
                for &s in states {
                    for &(leaf, target) in &auto.trans[s as usize] {
                        let l = &auto.leaves[leaf as usize];
                        let hit = match l {
                            Leaf::Elem(e) => {
                                let d = &m.elems[*e];
                                d.local == tag.local && d.ns == *tag.ns
                            }
                            Leaf::Any(w) => w.allows(&tag.ns),
                        };
                        if hit {
                            if !next.contains(&target) {
                                next.push(target);
                            }
                            // Prefer an element declaration over a wildcard (UPA makes this moot
                            // for conforming schemas).
                            if chosen.is_none()
                                || (matches!(l, Leaf::Elem(_))
                                    && matches!(chosen, Some(Leaf::Any(_))))
                            {
                                chosen = Some(l);
                            }
                        }
                    }
                }
                let Some(chosen) = chosen else {
                    let expected = self.expected_list(ty, states);
                    return Err(self.violation(
                        tag.offset,
                        Some(tag.local),
                        expected,
                        format!(
                            "element {} which is not expected here",
                            qn(&tag.ns, tag.local)
                        ),
                    ));
                };
                if let Some(Frame {
                    kind: Kind::Elements { states, .. },
                    ..
                }) = self.stack.last_mut()
                {
                    std::mem::swap(states, &mut next);
                }
                self.scratch = next;
                match chosen {
                    Leaf::Elem(e) => self.enter(*e, tag),
                    Leaf::Any(w) => match (w.process, m.global(&tag.ns, tag.local)) {
                        (Process::Skip, _) => push_plain(self, tag, Kind::Skip),
                        (_, Some(d)) => self.enter(d, tag),
                        (Process::Strict, None) => Err(self.violation(
                            tag.offset,
                            Some(tag.local),
                            super::EXPECTED_DECLARED_BY_WILDCARD,
                            format!(
                                "{} which no schema of this set declares",
                                qn(&tag.ns, tag.local)
                            ),
                        )),
                        (Process::Lax, None) => push_plain(self, tag, Kind::Lax),
                    },
                }
            }
        }
    }

    fn text(&mut self, t: Cow<'a, str>) -> Result<(), Failure> {
        let offset = self.r.position();
        let Some(f) = self.stack.last_mut() else {
            return Ok(());
        };
        let problem = match &f.kind {
            Kind::Simple(_) => {
                if f.text.is_empty() {
                    f.text = t;
                } else {
                    f.text.to_mut().push_str(&t);
                }
                return Ok(());
            }
            // §3.4.4 cvc-complex-type 2.1: no character children at all, whitespace included.
            Kind::Empty if f.nil => Some("nothing (the element is nil)"),
            Kind::Empty => Some("no character content (the content type is empty)"),
            Kind::Elements { mixed: false, .. }
                if !t.chars().all(|c| matches!(c, ' ' | '\t' | '\n' | '\r')) =>
            {
                Some("only whitespace between child elements (element-only content)")
            }
            _ => None,
        };
        match problem {
            Some(what) => Err(self.violation(offset, None, what, format!("text '{}'", t.trim()))),
            None => Ok(()),
        }
    }

    fn end(&mut self) -> Result<(), Failure> {
        let offset = self.r.position();
        let Some(f) = self.stack.last() else {
            return Ok(());
        };
        match &f.kind {
            Kind::Simple(t) => {
                let decl = f.decl.map(|d| &self.m.elems[d]);
                let value: &str = if f.text.is_empty() {
                    // §3.3.4 clause 5.1: an empty element takes its declaration's default/fixed value.
                    decl.and_then(|d| d.fixed.as_deref().or(d.default.as_deref()))
                        .unwrap_or("")
                } else {
                    &f.text
                };
                let mut ids = std::mem::take(&mut self.ids);
                let res = check_simple(self.m, *t, value, &mut ids);
                self.ids = ids;
                if let Err(e) = res {
                    return Err(self.violation(
                        offset,
                        None,
                        format!("a value of type '{}'", self.m.type_name(*t)),
                        e,
                    ));
                }
                if let Some(fixed) = decl.and_then(|d| d.fixed.as_deref()) {
                    let ws = match &self.m.types[*t] {
                        TypeDef::Simple(s) => s.ws,
                        _ => WhiteSpace::Preserve,
                    };
                    if normalize_ws(value, ws) != normalize_ws(fixed, ws) {
                        return Err(self.violation(
                            offset,
                            None,
                            format!("the fixed value '{fixed}'"),
                            format!("'{value}'"),
                        ));
                    }
                }
            }
            Kind::Elements { ty, states, .. } => {
                let TypeDef::Complex(ComplexType {
                    content: Content::Elements { auto, .. },
                    ..
                }) = &self.m.types[*ty]
                else {
                    return Ok(());
                };
                if !states.iter().any(|&s| auto.accept[s as usize]) {
                    let expected = self.expected_list(*ty, states);
                    return Err(self.violation(
                        offset,
                        None,
                        expected,
                        "the end of the element (missing child elements)",
                    ));
                }
            }
            _ => {}
        }
        if let Some(Frame {
            kind: Kind::Elements { states, .. },
            ..
        }) = self.stack.pop()
        {
            self.spare.push(states);
        }
        Ok(())
    }
}

/// Reads the whole document once: checks well-formedness (an error here wins over any
/// violation, as in the oracle), collects element namespaces, and validates against the model
/// `choose` gives for the root until the first violation. Every event is shown to `observe`
/// first (the message model builds its tree from them).
pub fn run<'a>(
    text: &'a str,
    limits: XmlLimits,
    choose: &Chooser<'_>,
    observe: &mut dyn FnMut(&XmlEvent<'a>),
) -> Result<Outcome, XmlError> {
    let mut v = V {
        m: &EMPTY,
        spare: Vec::new(),
        scratch: Vec::new(),
        r: XmlReader::new(text, limits).raw_line_ends(),
        stack: Vec::with_capacity(32),
        ids: HashSet::new(),
    };
    let mut out = Outcome {
        root: None,
        seen: Vec::new(),
        used: None,
        violation: None,
    };
    // Validation runs while `active`; afterwards the rest is only read for well-formedness.
    let mut active = false;
    loop {
        let ev = v.r.next_event()?;
        observe(&ev);
        let res = match ev {
            XmlEvent::Start(tag) => {
                // Elements of one namespace share the Arc of their binding: pointer first.
                if !out.seen.iter().any(|s| Arc::ptr_eq(s, &tag.ns))
                    && !out.seen.iter().any(|s| **s == *tag.ns)
                {
                    out.seen.push(tag.ns.clone());
                }
                if out.root.is_none() {
                    out.root = Some((tag.ns.clone(), tag.local.to_string()));
                    if let Some((set, m)) = choose(&tag.ns, tag.local) {
                        v.m = m;
                        out.used = Some(set);
                        active = true;
                    }
                }
                let res = if active { v.start(&tag) } else { Ok(()) };
                v.r.recycle(tag);
                res
            }
            XmlEvent::Text(t) if active => v.text(t),
            XmlEvent::End if active => v.end(),
            XmlEvent::Eof => return Ok(out),
            _ => Ok(()),
        };
        if let Err(Failure::Invalid(violation)) = res {
            out.violation = Some(violation);
            active = false;
        }
    }
}
