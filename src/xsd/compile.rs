//! Loading and compiling the official XSD files of one schema set into a [`SetModel`].
//!
//! Input: the schema directory (layout of `../shared/standards/xsd/`) and the set's root
//! imports. Output: the compiled model, or a [`SchemaError`] naming the file, the line and
//! what is wrong (including `UNSUPPORTED: <construct>` for XSD features these schemas do not
//! use and this compiler does not implement: `xs:all`, `xs:redefine`, substitution groups,
//! `xs:include`, identity constraints, `\p{Is..}` pattern blocks).
//!
//! Imports are resolved like libxml2 with `catalog-local.xml`: relative `schemaLocation`s
//! against the importing file; the two remote locations the KITH schemas use are mapped to the
//! local copies the catalog names; and the first document loaded for a namespace wins (libxml2
//! skips later imports of an already imported namespace: "Skipping import ... since the
//! namespace was already imported").

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::*;
use super::pattern;
use super::types::{Builtin, Facets, WhiteSpace};
use super::SchemaError;
use crate::xml::{split_qname, XmlEvent, XmlLimits, XmlReader};

pub const XSD_NS: &str = "http://www.w3.org/2001/XMLSchema";

/// The remote schema locations of the official files and the local copies that stand for
/// them (exactly the mapping of `standards/xsd/catalog-local.xml`).
const CATALOG: &[(&str, &str)] = &[
    (
        "http://www.w3.org/TR/xmldsig-core/xmldsig-core-schema.xsd",
        "msghead-v1.2/xmldsig-core-schema.xsd",
    ),
    (
        "http://www.kith.no/xmlstds/kith.xsd",
        "apprec-v1.1/kith.xsd",
    ),
];

/// An element of a schema document (XSD namespace only; annotations dropped).
#[derive(Debug)]
struct XNode {
    local: String,
    attrs: Vec<(String, String)>,
    /// QName-valued attributes resolved to (namespace, local) at parse time.
    qnames: Vec<(String, Vec<(String, String)>)>,
    children: Vec<XNode>,
    line: usize,
}

impl XNode {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn qname(&self, name: &str) -> Option<&(String, String)> {
        self.qnames
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.first())
    }
    fn qnames(&self, name: &str) -> &[(String, String)] {
        self.qnames
            .iter()
            .find(|(k, _)| k == name)
            .map_or(&[], |(_, v)| v.as_slice())
    }
    fn kids(&self) -> impl Iterator<Item = &XNode> {
        self.children.iter().filter(|c| c.local != "annotation")
    }
}

struct Doc {
    path: PathBuf,
    target: String,
    elem_qualified: bool,
    attr_qualified: bool,
    root: XNode,
}

fn read_doc(path: &Path) -> Result<Doc, SchemaError> {
    let err = |line: usize, message: String| SchemaError {
        file: path.to_path_buf(),
        line,
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(0, format!("cannot read: {e}")))?;
    let limits = XmlLimits {
        max_bytes: 16 * 1024 * 1024,
        max_depth: 256,
    };
    let text = crate::xml::decode(&bytes).map_err(|e| err(e.line, e.kind.to_string()))?;
    let mut r = XmlReader::new(&text, limits).skip_doctype();
    let mut stack: Vec<XNode> = Vec::new();
    // Depth inside a subtree we drop (annotations, foreign elements).
    let mut skipping = 0usize;
    let mut root = None;
    loop {
        let ev = r
            .next_event()
            .map_err(|e| err(e.line, e.kind.to_string()))?;
        match ev {
            XmlEvent::Start(tag) => {
                if skipping > 0 || &*tag.ns != XSD_NS || tag.local == "annotation" {
                    skipping += 1;
                    continue;
                }
                let line = r.line_col(tag.offset).0;
                let mut attrs = Vec::new();
                let mut qnames = Vec::new();
                for a in &tag.attrs {
                    if !a.ns.is_empty() {
                        continue;
                    }
                    let v = a.value.trim().to_string();
                    if matches!(
                        a.local,
                        "type" | "ref" | "base" | "itemType" | "memberTypes" | "substitutionGroup"
                    ) {
                        let mut list = Vec::new();
                        for q in v.split_whitespace() {
                            let (p, l) = split_qname(q);
                            let ns = r.resolve_prefix(p).ok_or_else(|| {
                                err(
                                    line,
                                    format!(
                                        "prefix '{}' in {}=\"{}\" is not declared",
                                        p.unwrap_or(""),
                                        a.local,
                                        v
                                    ),
                                )
                            })?;
                            list.push((ns.to_string(), l.to_string()));
                        }
                        qnames.push((a.local.to_string(), list));
                    }
                    attrs.push((a.local.to_string(), v));
                }
                stack.push(XNode {
                    local: tag.local.to_string(),
                    attrs,
                    qnames,
                    children: Vec::new(),
                    line,
                });
            }
            XmlEvent::End => {
                if skipping > 0 {
                    skipping -= 1;
                    continue;
                }
                let Some(node) = stack.pop() else {
                    return Err(err(0, "unbalanced document".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            XmlEvent::Text(_) => {}
            XmlEvent::Eof => break,
        }
    }
    let root = root.ok_or_else(|| err(0, "no xs:schema root element".into()))?;
    if root.local != "schema" {
        return Err(err(
            root.line,
            format!("root element is xs:{}, expected xs:schema", root.local),
        ));
    }
    Ok(Doc {
        path: path.to_path_buf(),
        target: root.attr("targetNamespace").unwrap_or("").to_string(),
        elem_qualified: root.attr("elementFormDefault") == Some("qualified"),
        attr_qualified: root.attr("attributeFormDefault") == Some("qualified"),
        root,
    })
}

/// Loads the documents of a set: `roots` are (namespace, path relative to `dir`) in the order
/// the driver imports them.
fn load_docs(dir: &Path, roots: &[(&str, &str)]) -> Result<Vec<Doc>, SchemaError> {
    let mut docs = Vec::new();
    let mut loaded: HashMap<String, PathBuf> = HashMap::new();
    // (namespace, file, importing file and line)
    type Pending = (String, PathBuf, Option<(PathBuf, usize)>);
    let mut queue: Vec<Pending> = roots
        .iter()
        .rev()
        .map(|(ns, p)| (ns.to_string(), dir.join(p), None))
        .collect();
    // Depth-first in document order, like libxml2's import processing.
    while let Some((ns, path, from)) = queue.pop() {
        if loaded.contains_key(&ns) {
            continue;
        }
        if !path.is_file() {
            let (file, line) = from.unwrap_or_else(|| (path.clone(), 0));
            return Err(SchemaError {
                file,
                line,
                message: format!("imported schema {} does not exist", path.display()),
            });
        }
        let doc = read_doc(&path)?;
        if doc.target != ns {
            return Err(SchemaError {
                file: path.clone(),
                line: doc.root.line,
                message: format!(
                    "targetNamespace is '{}', but it is imported for namespace '{}'",
                    doc.target, ns
                ),
            });
        }
        loaded.insert(ns, path.clone());
        let base = path.parent().unwrap_or(dir).to_path_buf();
        let mut imports = Vec::new();
        for n in doc.root.kids() {
            match n.local.as_str() {
                "import" => {
                    let ins = n.attr("namespace").unwrap_or("").to_string();
                    let Some(loc) = n.attr("schemaLocation") else {
                        return Err(SchemaError {
                            file: path.clone(),
                            line: n.line,
                            message: format!("import of '{ins}' without schemaLocation"),
                        });
                    };
                    let target = match CATALOG.iter().find(|(remote, _)| *remote == loc) {
                        Some((_, local)) => dir.join(local),
                        None if loc.contains("://") => {
                            return Err(SchemaError {
                                file: path.clone(),
                                line: n.line,
                                message: format!(
                                    "remote schemaLocation '{loc}' is not in the catalog"
                                ),
                            })
                        }
                        None => base.join(loc),
                    };
                    imports.push((ins, target, Some((path.clone(), n.line))));
                }
                "include" | "redefine" => {
                    return Err(SchemaError {
                        file: path.clone(),
                        line: n.line,
                        message: format!("UNSUPPORTED: xs:{}", n.local),
                    })
                }
                _ => {}
            }
        }
        queue.extend(imports.into_iter().rev());
        docs.push(doc);
    }
    Ok(docs)
}

type Key = (String, String);

struct Compiler<'d> {
    docs: &'d [Doc],
    m: SetModel,
    type_src: HashMap<TypeId, (usize, &'d XNode)>,
    type_slot: HashMap<Key, TypeId>,
    elem_slot: HashMap<Key, (ElemId, usize, &'d XNode)>,
    attrs: HashMap<Key, (usize, &'d XNode)>,
    attr_groups: HashMap<Key, (usize, &'d XNode)>,
    groups: HashMap<Key, (usize, &'d XNode)>,
    /// Content particles of compiled complex types, for extension.
    particles: HashMap<TypeId, Option<Particle>>,
    in_progress: Vec<TypeId>,
}

fn parse_occurs(n: &XNode, name: &str, default: u32, d: &Doc) -> Result<u32, SchemaError> {
    match n.attr(name) {
        None => Ok(default),
        Some("unbounded") if name == "maxOccurs" => Ok(u32::MAX),
        Some(v) => v.parse().map_err(|_| SchemaError {
            file: d.path.clone(),
            line: n.line,
            message: format!("{name}=\"{v}\" is not a count"),
        }),
    }
}

fn is_empty_particle(p: &Option<Particle>) -> bool {
    match p {
        None => true,
        Some(p) => p.max == 0 || matches!(&p.term, Term::Seq(v) if v.is_empty()),
    }
}

impl<'d> Compiler<'d> {
    fn err(&self, doc: usize, n: &XNode, message: impl Into<String>) -> SchemaError {
        SchemaError {
            file: self.docs[doc].path.clone(),
            line: n.line,
            message: message.into(),
        }
    }

    fn new(docs: &'d [Doc]) -> Result<Self, SchemaError> {
        let mut c = Compiler {
            docs,
            m: SetModel::default(),
            type_src: HashMap::new(),
            type_slot: HashMap::new(),
            elem_slot: HashMap::new(),
            attrs: HashMap::new(),
            attr_groups: HashMap::new(),
            groups: HashMap::new(),
            particles: HashMap::new(),
            in_progress: Vec::new(),
        };
        // anyType first, then the built-in simple types, all under the XSD namespace.
        c.m.any_type = c.m.types.len();
        c.m.types.push(TypeDef::Complex(ComplexType {
            name: "xs:anyType".into(),
            is_abstract: false,
            base: None,
            attrs: Vec::new(),
            attr_wildcard: Some(Wildcard {
                ns: NsConstraint::Any,
                process: Process::Lax,
            }),
            content: Content::Any,
        }));
        c.type_slot
            .insert((XSD_NS.into(), "anyType".into()), c.m.any_type);
        for name in BUILTIN_NAMES {
            let Some(b) = Builtin::by_name(name) else {
                continue;
            };
            let id = c.m.types.len();
            c.m.types.push(TypeDef::Simple(SimpleType {
                name: format!("xs:{name}"),
                variety: Variety::Atomic,
                builtin: b,
                facets: Facets::default(),
                ws: b.white_space(),
                base: None,
            }));
            c.type_slot.insert((XSD_NS.into(), name.to_string()), id);
        }
        for (di, d) in docs.iter().enumerate() {
            for n in d.root.kids() {
                let Some(name) = n.attr("name") else { continue };
                let key = (d.target.clone(), name.to_string());
                match n.local.as_str() {
                    "simpleType" | "complexType" => {
                        if c.type_slot.contains_key(&key) {
                            return Err(c.err(di, n, format!("type '{name}' is defined twice")));
                        }
                        let id = c.m.types.len();
                        c.m.types.push(TypeDef::Pending);
                        c.type_slot.insert(key, id);
                        c.type_src.insert(id, (di, n));
                    }
                    "element" => {
                        let id = c.m.elems.len();
                        c.m.elems.push(ElemDecl {
                            ns: d.target.clone(),
                            local: name.to_string(),
                            ty: c.m.any_type,
                            fixed: None,
                            default: None,
                            nillable: false,
                            is_abstract: false,
                        });
                        c.elem_slot.insert(key, (id, di, n));
                    }
                    "attribute" => {
                        c.attrs.insert(key, (di, n));
                    }
                    "attributeGroup" => {
                        c.attr_groups.insert(key, (di, n));
                    }
                    "group" => {
                        c.groups.insert(key, (di, n));
                    }
                    _ => {}
                }
            }
        }
        Ok(c)
    }

    fn compile_all(mut self) -> Result<SetModel, SchemaError> {
        let mut ids: Vec<TypeId> = self.type_src.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.ensure(id)?;
        }
        let mut globals: Vec<(Key, (ElemId, usize, &XNode))> = self
            .elem_slot
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        globals.sort_by_key(|(_, (id, _, _))| *id);
        for (key, (id, di, n)) in globals {
            let decl = self.element_decl(di, n, true)?;
            self.m.elems[id] = decl;
            self.m.globals.entry(key.0).or_default().insert(key.1, id);
        }
        for ((ns, local), id) in &self.type_slot {
            self.m
                .type_names
                .entry(ns.clone())
                .or_default()
                .insert(local.clone(), *id);
        }
        Ok(self.m)
    }

    fn type_ref(&self, di: usize, n: &XNode, q: &(String, String)) -> Result<TypeId, SchemaError> {
        self.type_slot.get(q).copied().ok_or_else(|| {
            self.err(
                di,
                n,
                format!("type {{{}}}{} is not defined in this schema set", q.0, q.1),
            )
        })
    }

    /// Compiles a named type (and, first, its base) if it is not compiled yet.
    fn ensure(&mut self, id: TypeId) -> Result<(), SchemaError> {
        if !matches!(self.m.types[id], TypeDef::Pending) {
            return Ok(());
        }
        let Some(&(di, n)) = self.type_src.get(&id) else {
            return Ok(());
        };
        if self.in_progress.contains(&id) {
            return Err(self.err(di, n, "circular type derivation"));
        }
        self.in_progress.push(id);
        let name = format!(
            "{{{}}}{}",
            self.docs[di].target,
            n.attr("name").unwrap_or("")
        );
        let def = if n.local == "simpleType" {
            TypeDef::Simple(self.simple_type(di, n, name)?)
        } else {
            let (ct, particle) = self.complex_type(di, n, name)?;
            self.particles.insert(id, particle);
            TypeDef::Complex(ct)
        };
        self.m.types[id] = def;
        self.in_progress.retain(|&x| x != id);
        Ok(())
    }

    fn push_type(&mut self, def: TypeDef) -> TypeId {
        self.m.types.push(def);
        self.m.types.len() - 1
    }

    fn simple(&self, id: TypeId) -> Option<&SimpleType> {
        match &self.m.types[id] {
            TypeDef::Simple(s) => Some(s),
            _ => None,
        }
    }

    /// The simple type named by `base=` or given inline as a child of `n`.
    fn simple_base(&mut self, di: usize, n: &'d XNode, attr: &str) -> Result<TypeId, SchemaError> {
        if let Some(q) = n.qname(attr) {
            let id = self.type_ref(di, n, &q.clone())?;
            self.ensure(id)?;
            return Ok(id);
        }
        let inline = n.kids().find(|k| k.local == "simpleType").ok_or_else(|| {
            self.err(
                di,
                n,
                format!("xs:{} needs {attr}= or an inline xs:simpleType", n.local),
            )
        })?;
        let st = self.simple_type(di, inline, "(anonymous)".into())?;
        Ok(self.push_type(TypeDef::Simple(st)))
    }

    fn simple_type(
        &mut self,
        di: usize,
        n: &'d XNode,
        name: String,
    ) -> Result<SimpleType, SchemaError> {
        let body = n
            .kids()
            .next()
            .ok_or_else(|| self.err(di, n, "empty xs:simpleType"))?;
        match body.local.as_str() {
            "restriction" => {
                let base = self.simple_base(di, body, "base")?;
                let b = self.simple(base).cloned().ok_or_else(|| {
                    self.err(
                        di,
                        body,
                        "restriction base of a simple type must be a simple type",
                    )
                })?;
                let mut st = SimpleType {
                    name,
                    base: Some(base),
                    ..b
                };
                self.apply_facets(di, body, &mut st)?;
                Ok(st)
            }
            "list" => {
                let item = self.simple_base(di, body, "itemType")?;
                Ok(SimpleType {
                    name,
                    variety: Variety::List(item),
                    builtin: Builtin::AnySimpleType,
                    facets: Facets::default(),
                    ws: WhiteSpace::Collapse,
                    base: None,
                })
            }
            "union" => {
                let mut members = Vec::new();
                for q in body.qnames("memberTypes").to_vec() {
                    let id = self.type_ref(di, body, &q)?;
                    self.ensure(id)?;
                    members.push(id);
                }
                for k in body.kids().filter(|k| k.local == "simpleType") {
                    let st = self.simple_type(di, k, "(anonymous)".into())?;
                    members.push(self.push_type(TypeDef::Simple(st)));
                }
                Ok(SimpleType {
                    name,
                    variety: Variety::Union(members),
                    builtin: Builtin::AnySimpleType,
                    facets: Facets::default(),
                    ws: WhiteSpace::Collapse,
                    base: None,
                })
            }
            other => Err(self.err(
                di,
                body,
                format!("UNSUPPORTED: xs:{other} in xs:simpleType"),
            )),
        }
    }

    fn apply_facets(&self, di: usize, r: &XNode, st: &mut SimpleType) -> Result<(), SchemaError> {
        let mut enums: Vec<String> = Vec::new();
        let mut pats = Vec::new();
        for f in r.kids() {
            let v = || {
                f.attr("value")
                    .map(str::to_string)
                    .ok_or_else(|| self.err(di, f, format!("facet xs:{} without value", f.local)))
            };
            let num = || -> Result<usize, SchemaError> {
                v()?.parse()
                    .map_err(|_| self.err(di, f, format!("facet xs:{} needs a count", f.local)))
            };
            match f.local.as_str() {
                "simpleType" => {}
                "enumeration" => {
                    // Enumeration values are compared after the type's whitespace processing.
                    let raw = f
                        .attrs
                        .iter()
                        .find(|(k, _)| k == "value")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    enums.push(super::types::normalize_ws(&raw, st.ws).into_owned());
                }
                "pattern" => {
                    let raw = f
                        .attrs
                        .iter()
                        .find(|(k, _)| k == "value")
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default();
                    let re = pattern::compile(&raw).map_err(|e| self.err(di, f, e))?;
                    pats.push((raw, re));
                }
                "length" => st.facets.length = Some(num()?),
                "minLength" => st.facets.min_length = Some(num()?),
                "maxLength" => st.facets.max_length = Some(num()?),
                "totalDigits" => st.facets.total_digits = Some(num()?),
                "fractionDigits" => st.facets.fraction_digits = Some(num()?),
                "minInclusive" => st.facets.min_inclusive = Some(v()?),
                "maxInclusive" => st.facets.max_inclusive = Some(v()?),
                "minExclusive" => st.facets.min_exclusive = Some(v()?),
                "maxExclusive" => st.facets.max_exclusive = Some(v()?),
                "whiteSpace" => {
                    st.ws = match v()?.as_str() {
                        "preserve" => WhiteSpace::Preserve,
                        "replace" => WhiteSpace::Replace,
                        _ => WhiteSpace::Collapse,
                    }
                }
                other => return Err(self.err(di, f, format!("UNSUPPORTED: facet xs:{other}"))),
            }
        }
        if st.facets.has_range()
            && !(st.builtin.is_numeric() || matches!(st.builtin, Builtin::Double | Builtin::Float))
        {
            return Err(self.err(
                di,
                r,
                format!("UNSUPPORTED: range facets on xs:{}", st.builtin.name()),
            ));
        }
        if !enums.is_empty() {
            st.facets.enumeration = Some(enums);
        }
        if !pats.is_empty() {
            st.facets.patterns.push(pats);
        }
        Ok(())
    }

    fn complex_type(
        &mut self,
        di: usize,
        n: &'d XNode,
        name: String,
    ) -> Result<(ComplexType, Option<Particle>), SchemaError> {
        let mut mixed = n.attr("mixed") == Some("true");
        let is_abstract = n.attr("abstract") == Some("true");
        let mut ct = ComplexType {
            name,
            is_abstract,
            base: Some(self.m.any_type),
            attrs: Vec::new(),
            attr_wildcard: None,
            content: Content::Empty,
        };
        let body = n
            .kids()
            .find(|k| k.local == "simpleContent" || k.local == "complexContent");
        let particle;
        match body {
            Some(sc) if sc.local == "simpleContent" => {
                let d = sc
                    .kids()
                    .next()
                    .ok_or_else(|| self.err(di, sc, "empty xs:simpleContent"))?;
                let base = self.type_ref(
                    di,
                    d,
                    &d.qname("base")
                        .cloned()
                        .ok_or_else(|| self.err(di, d, "missing base="))?,
                )?;
                self.ensure(base)?;
                ct.base = Some(base);
                let (base_simple, base_attrs, base_wild) = match &self.m.types[base] {
                    TypeDef::Simple(_) => (base, Vec::new(), None),
                    TypeDef::Complex(bc) => match bc.content {
                        Content::Simple(s) => (s, bc.attrs.clone(), bc.attr_wildcard.clone()),
                        _ => return Err(self.err(di, d, "UNSUPPORTED: simpleContent derived from a complex type without simple content")),
                    },
                    TypeDef::Pending => return Err(self.err(di, d, "base type not compiled")),
                };
                let (local_attrs, wild) = self.attributes(di, d)?;
                if d.local == "extension" {
                    ct.content = Content::Simple(base_simple);
                    ct.attrs = base_attrs;
                    ct.attrs.extend(
                        local_attrs
                            .into_iter()
                            .filter_map(|(a, prohibited)| (!prohibited).then_some(a)),
                    );
                    ct.attr_wildcard = wild.or(base_wild);
                } else {
                    let inner = match d.kids().find(|k| k.local == "simpleType") {
                        Some(st) => {
                            let s = self.simple_type(di, st, "(anonymous)".into())?;
                            self.push_type(TypeDef::Simple(s))
                        }
                        None => base_simple,
                    };
                    let mut st = self
                        .simple(inner)
                        .cloned()
                        .ok_or_else(|| self.err(di, d, "not a simple type"))?;
                    st.base = Some(inner);
                    self.apply_facets(di, d, &mut st)?;
                    ct.content = Content::Simple(self.push_type(TypeDef::Simple(st)));
                    ct.attrs = merge_restricted(base_attrs, local_attrs);
                    ct.attr_wildcard = wild;
                }
                return Ok((ct, None));
            }
            Some(cc) => {
                if let Some(m) = cc.attr("mixed") {
                    mixed = m == "true";
                }
                let d = cc
                    .kids()
                    .next()
                    .ok_or_else(|| self.err(di, cc, "empty xs:complexContent"))?;
                let base = self.type_ref(
                    di,
                    d,
                    &d.qname("base")
                        .cloned()
                        .ok_or_else(|| self.err(di, d, "missing base="))?,
                )?;
                self.ensure(base)?;
                ct.base = Some(base);
                let local = self.particle_of(di, d)?;
                let (local_attrs, wild) = self.attributes(di, d)?;
                let (base_attrs, base_wild) = match &self.m.types[base] {
                    TypeDef::Complex(bc) => (bc.attrs.clone(), bc.attr_wildcard.clone()),
                    _ => return Err(self.err(di, d, "complexContent base must be a complex type")),
                };
                if d.local == "extension" {
                    if base == self.m.any_type {
                        return Err(self.err(
                            di,
                            d,
                            "UNSUPPORTED: complexContent extension of xs:anyType",
                        ));
                    }
                    if matches!(
                        self.m.types[base],
                        TypeDef::Complex(ComplexType {
                            content: Content::Simple(_),
                            ..
                        })
                    ) {
                        return Err(self.err(
                            di,
                            d,
                            "UNSUPPORTED: complexContent extension of a simple-content type",
                        ));
                    }
                    let bp = self.particles.get(&base).cloned().flatten();
                    particle = match (
                        is_empty_particle(&Some(bp.clone()).flatten()),
                        is_empty_particle(&local),
                    ) {
                        (true, _) => local,
                        (false, true) => bp,
                        (false, false) => Some(Particle {
                            min: 1,
                            max: 1,
                            term: Term::Seq(vec![
                                bp.ok_or_else(|| self.err(di, d, "base particle"))?,
                                local.ok_or_else(|| self.err(di, d, "particle"))?,
                            ]),
                        }),
                    };
                    ct.attrs = base_attrs;
                    ct.attrs.extend(
                        local_attrs
                            .into_iter()
                            .filter_map(|(a, prohibited)| (!prohibited).then_some(a)),
                    );
                    ct.attr_wildcard = wild.or(base_wild);
                } else {
                    particle = local;
                    ct.attrs = if base == self.m.any_type {
                        Vec::new()
                    } else {
                        base_attrs
                    };
                    ct.attrs = merge_restricted(ct.attrs, local_attrs);
                    ct.attr_wildcard = wild;
                }
            }
            None => {
                particle = self.particle_of(di, n)?;
                let (local_attrs, wild) = self.attributes(di, n)?;
                ct.attrs = local_attrs
                    .into_iter()
                    .filter_map(|(a, prohibited)| (!prohibited).then_some(a))
                    .collect();
                ct.attr_wildcard = wild;
            }
        }
        ct.content = if is_empty_particle(&particle) && !mixed {
            Content::Empty
        } else {
            let p = if is_empty_particle(&particle) {
                None
            } else {
                particle.as_ref()
            };
            Content::Elements {
                auto: Automaton::build(p).map_err(|e| self.err(di, n, e))?,
                mixed,
            }
        };
        Ok((ct, particle))
    }

    /// The content particle among the children of `n` (sequence, choice, group, all).
    fn particle_of(&mut self, di: usize, n: &'d XNode) -> Result<Option<Particle>, SchemaError> {
        for k in n.kids() {
            match k.local.as_str() {
                "sequence" | "choice" | "group" => return Ok(Some(self.particle(di, k)?)),
                "all" => return Err(self.err(di, k, "UNSUPPORTED: xs:all")),
                _ => {}
            }
        }
        Ok(None)
    }

    fn particle(&mut self, di: usize, n: &'d XNode) -> Result<Particle, SchemaError> {
        let d = &self.docs[di];
        let min = parse_occurs(n, "minOccurs", 1, d)?;
        let max = parse_occurs(n, "maxOccurs", 1, d)?;
        let term = match n.local.as_str() {
            "sequence" | "choice" => {
                let mut parts = Vec::new();
                for k in n.kids() {
                    match k.local.as_str() {
                        "element" | "sequence" | "choice" | "any" | "group" => {
                            parts.push(self.particle(di, k)?)
                        }
                        "all" => return Err(self.err(di, k, "UNSUPPORTED: xs:all")),
                        other => {
                            return Err(self.err(
                                di,
                                k,
                                format!("UNSUPPORTED: xs:{other} in a model group"),
                            ))
                        }
                    }
                }
                if n.local == "sequence" {
                    Term::Seq(parts)
                } else {
                    Term::Choice(parts)
                }
            }
            "element" => Term::Elem(self.element_particle(di, n)?),
            "any" => Term::Any(self.wildcard(di, n)),
            "group" => {
                let q = n
                    .qname("ref")
                    .cloned()
                    .ok_or_else(|| self.err(di, n, "xs:group without ref="))?;
                let &(gdi, g) = self.groups.get(&q).ok_or_else(|| {
                    self.err(di, n, format!("group {{{}}}{} is not defined", q.0, q.1))
                })?;
                let inner = self
                    .particle_of(gdi, g)?
                    .ok_or_else(|| self.err(gdi, g, "empty xs:group"))?;
                Term::Seq(vec![inner])
            }
            other => return Err(self.err(di, n, format!("UNSUPPORTED: xs:{other} as a particle"))),
        };
        Ok(Particle { min, max, term })
    }

    fn wildcard(&self, di: usize, n: &XNode) -> Wildcard {
        let target = &self.docs[di].target;
        let ns = match n.attr("namespace").unwrap_or("##any") {
            "##any" => NsConstraint::Any,
            "##other" => NsConstraint::Not(target.clone()),
            list => NsConstraint::List(
                list.split_whitespace()
                    .map(|t| match t {
                        "##local" => String::new(),
                        "##targetNamespace" => target.clone(),
                        other => other.to_string(),
                    })
                    .collect(),
            ),
        };
        let process = match n.attr("processContents") {
            Some("lax") => Process::Lax,
            Some("skip") => Process::Skip,
            _ => Process::Strict,
        };
        Wildcard { ns, process }
    }

    fn element_particle(&mut self, di: usize, n: &'d XNode) -> Result<ElemId, SchemaError> {
        if let Some(q) = n.qname("ref") {
            return self.elem_slot.get(q).map(|(id, _, _)| *id).ok_or_else(|| {
                self.err(
                    di,
                    n,
                    format!(
                        "element {{{}}}{} is not declared in this schema set",
                        q.0, q.1
                    ),
                )
            });
        }
        let decl = self.element_decl(di, n, false)?;
        self.m.elems.push(decl);
        Ok(self.m.elems.len() - 1)
    }

    fn element_decl(
        &mut self,
        di: usize,
        n: &'d XNode,
        global: bool,
    ) -> Result<ElemDecl, SchemaError> {
        let d = &self.docs[di];
        let name = n
            .attr("name")
            .ok_or_else(|| self.err(di, n, "xs:element without name="))?
            .to_string();
        let qualified = global
            || n.attr("form")
                .map_or(d.elem_qualified, |f| f == "qualified");
        let ns = if qualified {
            d.target.clone()
        } else {
            String::new()
        };
        if n.attr("substitutionGroup").is_some() {
            return Err(self.err(di, n, "UNSUPPORTED: substitutionGroup"));
        }
        if let Some(k) = n
            .kids()
            .find(|k| matches!(k.local.as_str(), "unique" | "key" | "keyref"))
        {
            return Err(self.err(
                di,
                k,
                format!("UNSUPPORTED: identity constraint xs:{}", k.local),
            ));
        }
        let ty = if let Some(q) = n.qname("type") {
            self.type_ref(di, n, &q.clone())?
        } else if let Some(k) = n.kids().find(|k| k.local == "complexType") {
            let (ct, _) = self.complex_type(di, k, format!("(anonymous type of {name})"))?;
            self.push_type(TypeDef::Complex(ct))
        } else if let Some(k) = n.kids().find(|k| k.local == "simpleType") {
            let st = self.simple_type(di, k, format!("(anonymous type of {name})"))?;
            self.push_type(TypeDef::Simple(st))
        } else {
            self.m.any_type
        };
        Ok(ElemDecl {
            ns,
            local: name,
            ty,
            fixed: n.attr("fixed").map(str::to_string),
            default: n.attr("default").map(str::to_string),
            nillable: n.attr("nillable") == Some("true"),
            is_abstract: n.attr("abstract") == Some("true"),
        })
    }

    /// Attribute uses (with a "prohibited" flag) and the attribute wildcard among `n`'s children.
    #[allow(clippy::type_complexity)]
    fn attributes(
        &mut self,
        di: usize,
        n: &'d XNode,
    ) -> Result<(Vec<(AttrUse, bool)>, Option<Wildcard>), SchemaError> {
        let mut out = Vec::new();
        let mut wild = None;
        for k in n.kids() {
            match k.local.as_str() {
                "attribute" => out.push(self.attribute(di, k)?),
                "attributeGroup" => {
                    let q = k
                        .qname("ref")
                        .cloned()
                        .ok_or_else(|| self.err(di, k, "xs:attributeGroup without ref="))?;
                    let &(gdi, g) = self.attr_groups.get(&q).ok_or_else(|| {
                        self.err(
                            di,
                            k,
                            format!("attribute group {{{}}}{} is not defined", q.0, q.1),
                        )
                    })?;
                    let (a, w) = self.attributes(gdi, g)?;
                    out.extend(a);
                    wild = wild.or(w);
                }
                "anyAttribute" => wild = Some(self.wildcard(di, k)),
                _ => {}
            }
        }
        Ok((out, wild))
    }

    fn attribute(&mut self, di: usize, n: &'d XNode) -> Result<(AttrUse, bool), SchemaError> {
        let use_ = n.attr("use").unwrap_or("optional");
        let (decl_di, decl, ns) = if let Some(q) = n.qname("ref") {
            let &(gdi, g) = self.attrs.get(q).ok_or_else(|| {
                self.err(
                    di,
                    n,
                    format!("attribute {{{}}}{} is not declared", q.0, q.1),
                )
            })?;
            (gdi, g, q.0.clone())
        } else {
            let d = &self.docs[di];
            let qualified = n
                .attr("form")
                .map_or(d.attr_qualified, |f| f == "qualified");
            (
                di,
                n,
                if qualified {
                    d.target.clone()
                } else {
                    String::new()
                },
            )
        };
        let local = decl
            .attr("name")
            .ok_or_else(|| self.err(decl_di, decl, "xs:attribute without name="))?
            .to_string();
        let ty = if let Some(q) = decl.qname("type") {
            let id = self.type_ref(decl_di, decl, &q.clone())?;
            self.ensure(id)?;
            id
        } else if let Some(k) = decl.kids().find(|k| k.local == "simpleType") {
            let st = self.simple_type(decl_di, k, format!("(anonymous type of @{local})"))?;
            self.push_type(TypeDef::Simple(st))
        } else {
            self.type_slot[&(XSD_NS.to_string(), "anySimpleType".to_string())]
        };
        if !matches!(self.m.types[ty], TypeDef::Simple(_)) {
            return Err(self.err(
                decl_di,
                decl,
                format!("attribute '{local}' has a complex type"),
            ));
        }
        let fixed_on_ref =
            n.qname("ref").is_some() && n.attr("fixed").is_some() && decl.attr("fixed").is_none();
        let fixed = n
            .attr("fixed")
            .or_else(|| decl.attr("fixed"))
            .map(str::to_string);
        Ok((
            AttrUse {
                ns,
                local,
                ty,
                required: use_ == "required",
                fixed,
                fixed_on_ref,
            },
            use_ == "prohibited",
        ))
    }
}

/// Attribute uses of a restriction: the base's, overridden by the restriction's own, without
/// the prohibited ones (§3.4.2, complex type definition with complex content, restriction).
fn merge_restricted(base: Vec<AttrUse>, local: Vec<(AttrUse, bool)>) -> Vec<AttrUse> {
    let mut out = base;
    for (a, prohibited) in local {
        out.retain(|b| !(b.ns == a.ns && b.local == a.local));
        if !prohibited {
            out.push(a);
        }
    }
    out
}

const BUILTIN_NAMES: &[&str] = &[
    "anySimpleType",
    "string",
    "normalizedString",
    "token",
    "language",
    "NMTOKEN",
    "Name",
    "NCName",
    "ID",
    "IDREF",
    "boolean",
    "decimal",
    "integer",
    "nonNegativeInteger",
    "positiveInteger",
    "nonPositiveInteger",
    "negativeInteger",
    "long",
    "int",
    "short",
    "byte",
    "unsignedLong",
    "unsignedInt",
    "unsignedShort",
    "unsignedByte",
    "double",
    "float",
    "date",
    "dateTime",
    "time",
    "gYear",
    "gYearMonth",
    "gMonth",
    "gDay",
    "gMonthDay",
    "duration",
    "anyURI",
    "base64Binary",
    "hexBinary",
    "QName",
];

/// Loads and compiles one schema set.
pub fn compile_set(dir: &Path, roots: &[(&str, &str)]) -> Result<Arc<SetModel>, SchemaError> {
    let docs = load_docs(dir, roots)?;
    let c = Compiler::new(&docs)?;
    Ok(Arc::new(c.compile_all()?))
}
