//! The compiled schema components of one schema set (XML Schema Part 1 §2.2), in arenas
//! indexed by [`TypeId`] and [`ElemId`], and the content-model automaton.
//!
//! Content models are compiled to a position automaton (Glushkov construction over the
//! particle tree, occurrence bounds unrolled). The validator simulates it on the set of
//! current positions, so it is exact for every content model, deterministic or not; for the
//! official schemas (which satisfy Unique Particle Attribution, §3.8.6) the set has one member.

use std::collections::HashMap;

use super::types::{Builtin, Facets, WhiteSpace};

pub type TypeId = usize;
pub type ElemId = usize;

/// How a wildcard treats what it matches (§3.10.1 {process contents}).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    Strict,
    Lax,
    Skip,
}

/// The namespace constraint of a wildcard (§3.10.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NsConstraint {
    Any,
    /// `##other`: any namespace but this one, and not "no namespace" (§3.10.4 clause 3).
    Not(String),
    /// An explicit list; `""` stands for `##local`.
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wildcard {
    pub ns: NsConstraint,
    pub process: Process,
}

impl Wildcard {
    /// Whether an item in namespace `ns` (`""` for none) is allowed (§3.10.4 cvc-wildcard-namespace).
    pub fn allows(&self, ns: &str) -> bool {
        match &self.ns {
            NsConstraint::Any => true,
            NsConstraint::Not(t) => !ns.is_empty() && ns != t,
            NsConstraint::List(l) => l.iter().any(|x| x == ns),
        }
    }

    /// libxml2-style description for "expected" lists.
    pub fn describe(&self) -> String {
        match &self.ns {
            NsConstraint::Any => "##any".into(),
            NsConstraint::Not(t) => format!("##other{{{t}}}*"),
            NsConstraint::List(l) => l
                .iter()
                .map(|n| format!("{{{n}}}*"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Variety {
    Atomic,
    List(TypeId),
    Union(Vec<TypeId>),
}

#[derive(Debug, Clone)]
pub struct SimpleType {
    pub name: String,
    pub variety: Variety,
    /// The primitive/built-in the atomic value space comes from.
    pub builtin: Builtin,
    pub facets: Facets,
    pub ws: WhiteSpace,
    pub base: Option<TypeId>,
}

#[derive(Debug, Clone)]
pub struct AttrUse {
    pub ns: String,
    pub local: String,
    pub ty: TypeId,
    pub required: bool,
    pub fixed: Option<String>,
    /// The fixed value comes from `<attribute ref=".." fixed="..">`, not from the declaration.
    /// libxml2 2.9 ignores such value constraints; we follow XSD 1.0 §3.2.2 (see the named
    /// test `libxml2_ignores_fixed_on_attribute_references`).
    pub fixed_on_ref: bool,
}

#[derive(Debug, Clone)]
pub enum Content {
    Empty,
    Simple(TypeId),
    Elements {
        auto: Automaton,
        mixed: bool,
    },
    /// `xs:anyType`: anything, children validated laxly (§3.4.7).
    Any,
}

#[derive(Debug, Clone)]
pub struct ComplexType {
    pub name: String,
    pub is_abstract: bool,
    pub base: Option<TypeId>,
    pub attrs: Vec<AttrUse>,
    pub attr_wildcard: Option<Wildcard>,
    pub content: Content,
}

#[derive(Debug, Clone)]
pub enum TypeDef {
    Simple(SimpleType),
    Complex(ComplexType),
    /// A slot allocated for a named type not compiled yet.
    Pending,
}

#[derive(Debug, Clone)]
pub struct ElemDecl {
    pub ns: String,
    pub local: String,
    pub ty: TypeId,
    pub fixed: Option<String>,
    pub default: Option<String>,
    pub nillable: bool,
    pub is_abstract: bool,
}

/// A particle before automaton construction.
#[derive(Debug, Clone)]
pub struct Particle {
    pub min: u32,
    /// `u32::MAX` is unbounded.
    pub max: u32,
    pub term: Term,
}

#[derive(Debug, Clone)]
pub enum Term {
    Elem(ElemId),
    Any(Wildcard),
    Seq(Vec<Particle>),
    Choice(Vec<Particle>),
}

#[derive(Debug, Clone)]
pub enum Leaf {
    Elem(ElemId),
    Any(Wildcard),
}

/// Position automaton: state 0 is the start; every other state is "just matched leaf k".
#[derive(Debug, Clone, Default)]
pub struct Automaton {
    pub leaves: Vec<Leaf>,
    /// Per state: (leaf index, next state).
    pub trans: Vec<Vec<(u32, u32)>>,
    pub accept: Vec<bool>,
}

/// The most positions an unrolled content model may have; beyond it a schema is refused as
/// UNSUPPORTED rather than risking memory (the official schemas need a few hundred at most).
const MAX_POSITIONS: usize = 20_000;

struct Nfa {
    eps: Vec<Vec<u32>>,
    edge: Vec<Option<(u32, u32)>>,
    leaves: Vec<Leaf>,
}

impl Nfa {
    fn node(&mut self) -> u32 {
        self.eps.push(Vec::new());
        self.edge.push(None);
        (self.eps.len() - 1) as u32
    }

    /// Builds a fragment for `p`; returns (entry, exit).
    fn build(&mut self, p: &Particle) -> Result<(u32, u32), String> {
        if self.eps.len() > MAX_POSITIONS * 4 {
            return Err(
                "UNSUPPORTED: content model too large once occurrence bounds are unrolled".into(),
            );
        }
        let start = self.node();
        let mut cur = start;
        for _ in 0..p.min {
            let (s, e) = self.term(&p.term)?;
            self.eps[cur as usize].push(s);
            cur = e;
        }
        if p.max == u32::MAX {
            let (s, e) = self.term(&p.term)?;
            let end = self.node();
            self.eps[cur as usize].push(s);
            self.eps[cur as usize].push(end);
            self.eps[e as usize].push(s);
            self.eps[e as usize].push(end);
            return Ok((start, end));
        }
        let end = self.node();
        for _ in p.min..p.max {
            let (s, e) = self.term(&p.term)?;
            self.eps[cur as usize].push(s);
            self.eps[cur as usize].push(end);
            cur = e;
        }
        self.eps[cur as usize].push(end);
        Ok((start, end))
    }

    fn term(&mut self, t: &Term) -> Result<(u32, u32), String> {
        match t {
            Term::Elem(_) | Term::Any(_) => {
                let s = self.node();
                let e = self.node();
                let leaf = match t {
                    Term::Elem(id) => Leaf::Elem(*id),
                    Term::Any(w) => Leaf::Any(w.clone()),
                    _ => unreachable!("matched above"),
                };
                self.leaves.push(leaf);
                self.edge[s as usize] = Some(((self.leaves.len() - 1) as u32, e));
                Ok((s, e))
            }
            Term::Seq(ps) => {
                let s = self.node();
                let mut cur = s;
                for p in ps {
                    let (ps_, pe) = self.build(p)?;
                    self.eps[cur as usize].push(ps_);
                    cur = pe;
                }
                Ok((s, cur))
            }
            Term::Choice(ps) => {
                let s = self.node();
                let e = self.node();
                if ps.is_empty() {
                    // An empty choice matches nothing (§3.8.4): no path from s to e.
                    return Ok((s, e));
                }
                for p in ps {
                    let (ps_, pe) = self.build(p)?;
                    self.eps[s as usize].push(ps_);
                    self.eps[pe as usize].push(e);
                }
                Ok((s, e))
            }
        }
    }

    fn closure(&self, from: u32, seen: &mut [bool], out: &mut Vec<u32>) {
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            if seen[n as usize] {
                continue;
            }
            seen[n as usize] = true;
            out.push(n);
            stack.extend(self.eps[n as usize].iter().copied());
        }
    }
}

impl Automaton {
    /// Compiles a particle (None = empty content model).
    pub fn build(p: Option<&Particle>) -> Result<Automaton, String> {
        let Some(p) = p else {
            return Ok(Automaton {
                leaves: Vec::new(),
                trans: vec![Vec::new()],
                accept: vec![true],
            });
        };
        let mut nfa = Nfa {
            eps: Vec::new(),
            edge: Vec::new(),
            leaves: Vec::new(),
        };
        let (entry, exit) = nfa.build(p)?;
        // Positions: the entry node, then the target node of every leaf edge.
        let mut pos_of_node: HashMap<u32, u32> = HashMap::new();
        let mut nodes = vec![entry];
        pos_of_node.insert(entry, 0);
        for e in nfa.edge.iter().flatten() {
            if let std::collections::hash_map::Entry::Vacant(v) = pos_of_node.entry(e.1) {
                v.insert(nodes.len() as u32);
                nodes.push(e.1);
            }
        }
        if nodes.len() > MAX_POSITIONS {
            return Err(
                "UNSUPPORTED: content model too large once occurrence bounds are unrolled".into(),
            );
        }
        let mut trans = Vec::with_capacity(nodes.len());
        let mut accept = Vec::with_capacity(nodes.len());
        let mut seen = vec![false; nfa.eps.len()];
        let mut reach = Vec::new();
        for &n in &nodes {
            seen.iter_mut().for_each(|s| *s = false);
            reach.clear();
            nfa.closure(n, &mut seen, &mut reach);
            let mut t: Vec<(u32, u32)> = reach
                .iter()
                .filter_map(|&r| nfa.edge[r as usize])
                .map(|(leaf, target)| (leaf, pos_of_node[&target]))
                .collect();
            t.sort_unstable();
            t.dedup();
            trans.push(t);
            accept.push(reach.contains(&exit));
        }
        Ok(Automaton {
            leaves: nfa.leaves,
            trans,
            accept,
        })
    }
}

/// One compiled schema set: everything reachable from its root documents.
#[derive(Debug, Default)]
pub struct SetModel {
    pub types: Vec<TypeDef>,
    pub elems: Vec<ElemDecl>,
    /// Global element declarations: namespace → local name → declaration.
    pub globals: HashMap<String, HashMap<String, ElemId>>,
    /// Named types, for `xsi:type`: namespace → local name → type.
    pub type_names: HashMap<String, HashMap<String, TypeId>>,
    pub any_type: TypeId,
}

impl SetModel {
    pub fn global(&self, ns: &str, local: &str) -> Option<ElemId> {
        self.globals.get(ns).and_then(|m| m.get(local)).copied()
    }
    pub fn named_type(&self, ns: &str, local: &str) -> Option<TypeId> {
        self.type_names.get(ns).and_then(|m| m.get(local)).copied()
    }
    pub fn type_name(&self, t: TypeId) -> &str {
        match &self.types[t] {
            TypeDef::Simple(s) => &s.name,
            TypeDef::Complex(c) => &c.name,
            TypeDef::Pending => "?",
        }
    }
    /// Base type of `t` (None for anyType).
    pub fn base_of(&self, t: TypeId) -> Option<TypeId> {
        match &self.types[t] {
            TypeDef::Simple(s) => s.base.or(Some(self.any_type)).filter(|&b| b != t),
            TypeDef::Complex(c) => c.base.filter(|&b| b != t),
            TypeDef::Pending => None,
        }
    }
    /// Whether `derived` is `base` or derived from it (§3.4.6 Type Derivation OK, ignoring `block`).
    pub fn derives_from(&self, derived: TypeId, base: TypeId) -> bool {
        let mut cur = Some(derived);
        let mut steps = 0;
        while let Some(c) = cur {
            if c == base {
                return true;
            }
            steps += 1;
            if steps > 256 {
                return false;
            }
            cur = self.base_of(c);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elem(i: usize, min: u32, max: u32) -> Particle {
        Particle {
            min,
            max,
            term: Term::Elem(i),
        }
    }

    fn run(a: &Automaton, input: &[usize]) -> bool {
        let mut states = vec![0u32];
        for &x in input {
            let mut next = Vec::new();
            for &s in &states {
                for &(leaf, t) in &a.trans[s as usize] {
                    if matches!(a.leaves[leaf as usize], Leaf::Elem(e) if e == x)
                        && !next.contains(&t)
                    {
                        next.push(t);
                    }
                }
            }
            if next.is_empty() {
                return false;
            }
            states = next;
        }
        states.iter().any(|&s| a.accept[s as usize])
    }

    #[test]
    fn sequence_with_bounds() {
        let p = Particle {
            min: 1,
            max: 1,
            term: Term::Seq(vec![elem(1, 1, 1), elem(2, 0, u32::MAX), elem(3, 2, 3)]),
        };
        let a = Automaton::build(Some(&p)).unwrap();
        assert!(run(&a, &[1, 3, 3]));
        assert!(run(&a, &[1, 2, 2, 3, 3, 3]));
        assert!(!run(&a, &[1, 3]));
        assert!(!run(&a, &[1, 3, 3, 3, 3]));
        assert!(!run(&a, &[2, 3, 3]));
    }

    #[test]
    fn choice_repeated() {
        let p = Particle {
            min: 0,
            max: u32::MAX,
            term: Term::Choice(vec![elem(1, 1, 1), elem(2, 1, 1)]),
        };
        let a = Automaton::build(Some(&p)).unwrap();
        assert!(run(&a, &[]));
        assert!(run(&a, &[2, 1, 2]));
        assert!(!run(&a, &[3]));
    }

    #[test]
    fn empty_model_accepts_only_nothing() {
        let a = Automaton::build(None).unwrap();
        assert!(run(&a, &[]));
        assert!(!run(&a, &[1]));
    }
}
