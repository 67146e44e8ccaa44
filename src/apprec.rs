//! AppRec — the application receipt (HIS 80415:2004 v1.0, HIS 80415:2012 v1.1, HITS 1168):
//! reading the ones receivers send back, and building the ones the gateway issues for a recipient
//! it could not deliver to.
//!
//! Input: AppRec bytes ([`AppRec::parse`]) or an [`AppRecInput`] built from a parsed
//! [`MsgHead`] ([`build_apprec`]). Output: the typed [`AppRec`], or AppRec XML text that validates
//! against the official schema of the chosen version.
//!
//! Failure modes: parsing fails with [`ModelError`] (T01 unreadable, T10 not an AppRec namespace,
//! T02 a required element missing). Building cannot fail: every value is XML-escaped and every
//! element the schemas require is always written; keeping Status and Errors consistent (a
//! negative AppRec carries at least one Error, HIS 80415:2012 §3.3) is the caller's decision.
//!
//! Mirroring (HIS 80415:2012 §3.5, HITS 1168 §6.1, §11, NOTES.md §4): the AppRec's Sender is the
//! recipient we answer for *as it was addressed* — every identifier, even a wrong one (Systemtest
//! #19–20) — and its Receiver is the original Sender.

use std::fmt::Write as _;

use crate::address::{PartyAddress, RecipientRole};
use crate::codes::{AppRecStatus, ErrorCode, OID_8221};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::msghead::{
    parse_datetime, Code, HealthcareProfessional, Ident, ModelError, MsgHead, Organisation, Party,
    PayloadStandard,
};
use crate::xml::tree::{Element, Tree};
use crate::xml::{XmlDocument, XmlLimits};

/// AppRec v1.0 namespace.
pub const NS_APPREC_1_0: &str = "http://www.kith.no/xmlstds/apprec/2004-11-21";
/// AppRec v1.1 namespace.
pub const NS_APPREC_1_1: &str = "http://www.kith.no/xmlstds/apprec/2012-02-15";

/// Which AppRec version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AppRecVersion {
    V1_0,
    V1_1,
}

impl AppRecVersion {
    /// The version to answer a fagmelding with, decided by the payload standard (HITS 1168
    /// §8.2–8.3, NOTES.md §1): Dialogmelding 1.0 → 1.0 ("unless agreed otherwise"), Dialogmelding 1.1
    /// → 1.1, PLO 1.5 → 1.0, PLO 1.6 → 1.1. PLO 2.0 is newer than 1.6 and builds on the same
    /// generation of standards, so it gets 1.1. Anything unknown gets 1.0, the version every
    /// receiver in the network understands (NAV dialog and older standards use 1.0).
    pub fn for_payload(p: &PayloadStandard) -> AppRecVersion {
        match p {
            PayloadStandard::Dialogmelding1_1
            | PayloadStandard::Plo1_6
            | PayloadStandard::Plo2_0 => Self::V1_1,
            PayloadStandard::Dialogmelding1_0
            | PayloadStandard::Plo1_5
            | PayloadStandard::Other(_)
            | PayloadStandard::NoContent => Self::V1_0,
        }
    }
    pub fn namespace(self) -> &'static str {
        match self {
            Self::V1_0 => NS_APPREC_1_0,
            Self::V1_1 => NS_APPREC_1_1,
        }
    }
    /// The schemas' default `MIGversion` (v1.0 has no "v").
    pub fn mig_version(self) -> &'static str {
        match self {
            Self::V1_0 => "1.0 2004-11-21",
            Self::V1_1 => "v1.1 2012-02-15",
        }
    }
    pub fn from_namespace(ns: &str) -> Option<AppRecVersion> {
        match ns {
            NS_APPREC_1_0 => Some(Self::V1_0),
            NS_APPREC_1_1 => Some(Self::V1_1),
            _ => None,
        }
    }
}

/// `AdditionalId` {Id, Type}.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AdditionalId {
    pub id: String,
    pub kind: Code,
}

/// One identified unit (`Inst`, `Dept`, `HCPerson`, `HCProf`): name, main id, more ids.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    pub name: Option<String>,
    pub id: Option<String>,
    pub type_id: Option<Code>,
    pub additional_ids: Vec<AdditionalId>,
}

impl Unit {
    /// The unit's HER-id: `Id` with `TypeId V=HER`, else an `AdditionalId` of type HER.
    pub fn her_id(&self) -> Option<HerId> {
        let main = (self.type_id.as_ref().is_some_and(|t| t.v == "HER"))
            .then_some(self.id.as_deref())
            .flatten();
        main.and_then(|i| i.parse().ok()).or_else(|| {
            self.additional_ids
                .iter()
                .filter(|a| a.kind.v == "HER")
                .find_map(|a| a.id.parse().ok())
        })
    }
}

/// `HCP/Inst` with its departments and persons.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Inst {
    pub unit: Unit,
    pub depts: Vec<Unit>,
    pub persons: Vec<Unit>,
}

/// `HCP`: an institution or a lone professional.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Hcp {
    Inst(Inst),
    Prof(Unit),
}

/// AppRec `Sender` or `Receiver`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppRecParty {
    /// `Role` (8112 in v1.1: PRIM, COP, AVS; v1.0: REQ, SPR, COP, RECEIVER).
    pub role: Option<Code>,
    pub hcp: Hcp,
}

impl AppRecParty {
    /// HER-id levels: Inst HER = level 1, Dept HER (else HCPerson HER) = level 2; a lone HCProf
    /// has only a level 2.
    pub fn address(&self) -> PartyAddress {
        match &self.hcp {
            Hcp::Inst(i) => PartyAddress {
                level1: i.unit.her_id(),
                level2: i
                    .depts
                    .iter()
                    .find_map(Unit::her_id)
                    .or_else(|| i.persons.iter().find_map(Unit::her_id)),
            },
            Hcp::Prof(p) => PartyAddress {
                level1: None,
                level2: p.her_id(),
            },
        }
    }
}

/// One `Error` as written (CV: V, S, DN, OT).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorEntry {
    pub v: String,
    pub s: Option<String>,
    pub dn: Option<String>,
    pub ot: Option<String>,
}

impl ErrorEntry {
    /// The code, when it is one of list 8221 (some senders use other lists, e.g. 8223).
    pub fn code(&self) -> Option<ErrorCode> {
        if self.s.as_deref().is_some_and(|s| s != OID_8221) {
            return None;
        }
        self.v.parse().ok()
    }
}

/// `OriginalMsgId`: which message this AppRec answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OriginalMsgId {
    /// The original `MsgInfo/Type` (V, DN).
    pub msg_type: Code,
    /// The original `GenDate`, as written.
    pub issue_date: String,
    pub id: MsgId,
}

/// A parsed AppRec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRec {
    pub version: AppRecVersion,
    pub msg_type: Code,
    pub mig_version: String,
    pub software_name: Option<String>,
    pub software_version: Option<String>,
    pub gen_date: String,
    pub gen_date_parsed: Option<Timestamp>,
    pub id: MsgId,
    pub sender: AppRecParty,
    pub receiver: AppRecParty,
    /// `Status` as written; [`AppRec::status`] maps it to list 8258.
    pub status_code: Code,
    pub errors: Vec<ErrorEntry>,
    pub original: OriginalMsgId,
}

fn missing(path: &str) -> ModelError {
    ModelError::Missing {
        path: path.to_owned(),
    }
}

fn code_of(el: Element<'_>) -> Code {
    Code {
        v: el.attr("V").unwrap_or_default().trim().to_owned(),
        s: el.attr("S").map(str::to_owned),
        dn: el.attr("DN").map(str::to_owned),
    }
}

fn text_of(el: Element<'_>, local: &str) -> Option<String> {
    el.child_text(local).map(str::to_owned)
}

fn unit_of(el: Element<'_>) -> Unit {
    Unit {
        name: text_of(el, "Name"),
        id: text_of(el, "Id"),
        type_id: el.child("TypeId").map(code_of),
        additional_ids: el
            .children_named("AdditionalId")
            .map(|a| AdditionalId {
                id: a.child_text("Id").unwrap_or_default().to_owned(),
                kind: a.child("Type").map(code_of).unwrap_or_default(),
            })
            .collect(),
    }
}

fn party_of(el: Element<'_>, path: &str) -> Result<AppRecParty, ModelError> {
    let hcp = el
        .child("HCP")
        .ok_or_else(|| missing(&format!("{path}/HCP")))?;
    let hcp = if let Some(i) = hcp.child("Inst") {
        Hcp::Inst(Inst {
            unit: unit_of(i),
            depts: i.children_named("Dept").map(unit_of).collect(),
            persons: i.children_named("HCPerson").map(unit_of).collect(),
        })
    } else if let Some(p) = hcp.child("HCProf") {
        Hcp::Prof(unit_of(p))
    } else {
        return Err(missing(&format!("{path}/HCP/Inst")));
    };
    Ok(AppRecParty {
        role: el.child("Role").map(code_of),
        hcp,
    })
}

impl AppRec {
    /// Reads an AppRec 1.0 or 1.1 (version by namespace).
    pub fn parse(xml: &[u8]) -> Result<AppRec, ModelError> {
        // As for MsgHead: the reader's depth limit, no size limit of its own (the intake bounds it).
        let doc = XmlDocument::new(
            xml,
            &XmlLimits {
                max_bytes: usize::MAX,
                ..XmlLimits::default()
            },
        )?;
        let tree = Tree::read(&doc)?;
        Self::from_tree(tree.root())
    }

    /// Reads an AppRec already read into a tree (the gateway builds it during schema validation).
    pub(crate) fn from_tree(root: Element<'_>) -> Result<AppRec, ModelError> {
        let version = match AppRecVersion::from_namespace(root.ns()) {
            Some(v) if root.local() == "AppRec" => v,
            _ => {
                return Err(ModelError::WrongRoot {
                    expected: "AppRec",
                    expected_ns: format!("{NS_APPREC_1_0} or {NS_APPREC_1_1}"),
                    found: root.local().to_owned(),
                    found_ns: root.ns().to_owned(),
                })
            }
        };
        let req = |local: &str| {
            root.child(local)
                .ok_or_else(|| missing(&format!("AppRec/{local}")))
        };
        let orig = req("OriginalMsgId")?;
        let oreq = |local: &str| {
            orig.child(local)
                .ok_or_else(|| missing(&format!("AppRec/OriginalMsgId/{local}")))
        };
        let gen_date = req("GenDate")?.text().trim().to_owned();
        Ok(AppRec {
            version,
            msg_type: code_of(req("MsgType")?),
            mig_version: text_of(root, "MIGversion").unwrap_or_default(),
            software_name: text_of(root, "SoftwareName"),
            software_version: text_of(root, "SoftwareVersion"),
            gen_date_parsed: parse_datetime(&gen_date),
            gen_date,
            id: MsgId::new(req("Id")?.text().to_owned()),
            sender: party_of(req("Sender")?, "AppRec/Sender")?,
            receiver: party_of(req("Receiver")?, "AppRec/Receiver")?,
            status_code: code_of(req("Status")?),
            errors: root
                .children_named("Error")
                .map(|e| ErrorEntry {
                    v: e.attr("V").unwrap_or_default().trim().to_owned(),
                    s: e.attr("S").map(str::to_owned),
                    dn: e.attr("DN").map(str::to_owned),
                    ot: e.attr("OT").map(str::to_owned),
                })
                .collect(),
            original: OriginalMsgId {
                msg_type: code_of(oreq("MsgType")?),
                issue_date: oreq("IssueDate")?.text().trim().to_owned(),
                id: MsgId::new(oreq("Id")?.text().to_owned()),
            },
        })
    }

    /// Status per list 8258; `None` for a value outside it.
    pub fn status(&self) -> Option<AppRecStatus> {
        AppRecStatus::from_code(&self.status_code.v)
    }
}

/// One fault to report (one per distinct fault, Systemtest #26). `ot` is the free-text reason
/// shown to the user (required in practice for X99, NOTES.md §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecError {
    pub code: ErrorCode,
    pub ot: Option<String>,
}

/// AppRec 1.0 has no PRIM: the primary recipient answers as `REQ` (Rekvirent) or `SPR`
/// (Tjenesteyter) — Directorate's test cases (apprec-enhetstest #9, Systemtest #8–9, #37–38).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrimaryRoleV1_0 {
    /// `REQ` Rekvirent: the recipient is the one who requested the service.
    Req,
    /// `SPR` Tjenesteyter: the recipient provides the service — the usual case for a recipient
    /// of a fagmelding, hence the default.
    #[default]
    Spr,
}

/// Everything needed to build one AppRec.
#[derive(Debug, Clone)]
pub struct AppRecInput<'a> {
    pub version: AppRecVersion,
    /// The fagmelding answered.
    pub original: &'a MsgHead,
    /// The recipient we answer for, as addressed in `original` (Receiver or an OtherReceiver).
    pub recipient: &'a Party,
    /// Whether it was addressed as primary (`Receiver`) or copy (`OtherReceiver`).
    pub role: RecipientRole,
    pub status: AppRecStatus,
    pub errors: Vec<AppRecError>,
    /// The AppRec's own new Id.
    pub id: MsgId,
    /// GenDate of the AppRec.
    pub now: Timestamp,
    pub software_name: String,
    pub software_version: String,
    /// Which v1.0 role a primary recipient answers with (ignored for v1.1).
    pub v1_0_primary_role: PrimaryRoleV1_0,
}

/// Escapes text and attribute values; drops characters XML 1.0 cannot carry; keeps line breaks
/// and tabs in attributes as character references so attribute normalisation does not eat them.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Writes a coded element (`CS`: V and DN only — TypeId and Role are CS in both AppRec versions).
fn cs(out: &mut String, indent: &str, name: &str, v: &str, dn: Option<&str>) {
    let _ = write!(out, "{indent}<{name} V=\"{}\"", esc(v));
    if let Some(dn) = dn {
        let _ = write!(out, " DN=\"{}\"", esc(dn));
    }
    out.push_str("/>\n");
}

fn text_el(out: &mut String, indent: &str, name: &str, text: &str) {
    let _ = writeln!(out, "{indent}<{name}>{}</{name}>", esc(text));
}

/// Main ident (the HER-id if there is one, HIS 1153 addressing), then the others.
fn split_idents(idents: &[Ident]) -> (Option<&Ident>, Vec<&Ident>) {
    let main = idents
        .iter()
        .position(Ident::is_her)
        .or(if idents.is_empty() { None } else { Some(0) });
    let rest = idents
        .iter()
        .enumerate()
        .filter(|(i, _)| Some(*i) != main)
        .map(|(_, x)| x)
        .collect();
    (main.map(|i| &idents[i]), rest)
}

/// Name?, Id?, TypeId? of a unit, in schema order; returns the idents left for AdditionalId.
fn unit_head<'a>(out: &mut String, ind: &str, name: &str, idents: &'a [Ident]) -> Vec<&'a Ident> {
    if !name.trim().is_empty() {
        text_el(out, ind, "Name", name);
    }
    let (main, rest) = split_idents(idents);
    if let Some(m) = main {
        text_el(out, ind, "Id", &m.id);
        cs(out, ind, "TypeId", &m.type_id.v, m.type_id.dn.as_deref());
    }
    rest
}

fn additional_ids(out: &mut String, ind: &str, rest: &[&Ident]) {
    for a in rest {
        let _ = writeln!(out, "{ind}<AdditionalId>");
        text_el(out, &format!("{ind}  "), "Id", &a.id);
        cs(
            out,
            &format!("{ind}  "),
            "Type",
            &a.type_id.v,
            a.type_id.dn.as_deref(),
        );
        let _ = writeln!(out, "{ind}</AdditionalId>");
    }
}

/// `Organisation` → `Inst` (NOTES.md §4): nested Organisations (level 2, and deeper levels in old
/// messages) → `Dept`, HealthcareProfessional (of any level) → `HCPerson`, extra idents →
/// `AdditionalId`. With `drop_signer`, clinicians are left out when a service (nested
/// Organisation) is addressed: HITS 1168 §11.2 / Systemtest #6 — the signing clinician of the
/// original *sender* is not mirrored when the service address is given.
fn write_inst(out: &mut String, ind: &str, o: &Organisation, drop_signer: bool) {
    let _ = writeln!(out, "{ind}<Inst>");
    let i2 = format!("{ind}  ");
    let rest = unit_head(out, &i2, &o.name, &o.idents);
    let mut subs = Vec::new();
    let mut profs: Vec<&HealthcareProfessional> = o.professional.iter().collect();
    let mut cur = o.organisation.as_deref();
    while let Some(sub) = cur {
        subs.push(sub);
        profs.extend(sub.professional.iter());
        cur = sub.organisation.as_deref();
    }
    if drop_signer && !subs.is_empty() {
        profs.clear();
    }
    for sub in subs {
        let _ = writeln!(out, "{i2}<Dept>");
        let i3 = format!("{i2}  ");
        let r = unit_head(out, &i3, &sub.name, &sub.idents);
        additional_ids(out, &i3, &r);
        let _ = writeln!(out, "{i2}</Dept>");
    }
    additional_ids(out, &i2, &rest);
    for p in profs {
        let _ = writeln!(out, "{i2}<HCPerson>");
        let i3 = format!("{i2}  ");
        let r = unit_head(out, &i3, &p.display_name(), &p.idents);
        additional_ids(out, &i3, &r);
        let _ = writeln!(out, "{i2}</HCPerson>");
    }
    let _ = writeln!(out, "{ind}</Inst>");
}

/// `HCP/Address` from the organisation's address and telecom (Systemtest #5: "HERid, navn og
/// adresse" at least). AppRec has no Postbox; it goes to StreetAdr when there is no street.
fn write_address(out: &mut String, ind: &str, o: &Organisation) {
    let tele: Vec<&String> = o
        .telecom
        .iter()
        .filter(|t| !t.is_empty() && !t.chars().any(char::is_whitespace))
        .collect();
    if o.address.is_none() && tele.is_empty() {
        return;
    }
    let a = o.address.clone().unwrap_or_default();
    let _ = writeln!(out, "{ind}<Address>");
    let i2 = format!("{ind}  ");
    match &a.kind {
        Some(k) => cs(out, &i2, "Type", &k.v, k.dn.as_deref()),
        None => {
            let _ = writeln!(out, "{i2}<Type/>");
        }
    }
    if let Some(s) = a.street.as_ref().or(a.postbox.as_ref()) {
        text_el(out, &i2, "StreetAdr", s);
    }
    if let Some(s) = &a.postal_code {
        text_el(out, &i2, "PostalCode", s);
    }
    if let Some(s) = &a.city {
        text_el(out, &i2, "City", s);
    }
    if let Some(c) = &a.county {
        cs(out, &i2, "County", &c.v, c.dn.as_deref());
    }
    if let Some(c) = &a.country {
        cs(out, &i2, "Country", &c.v, c.dn.as_deref());
    }
    for t in tele {
        let _ = writeln!(out, "{i2}<TeleAddress V=\"{}\"/>", esc(t));
    }
    let _ = writeln!(out, "{ind}</Address>");
}

fn write_party(out: &mut String, name: &str, role: (&str, &str), party: &Party, drop_signer: bool) {
    let _ = writeln!(out, "  <{name}>");
    cs(out, "    ", "Role", role.0, Some(role.1));
    let _ = writeln!(out, "    <HCP>");
    match party {
        Party::Organisation(o) => {
            write_inst(out, "      ", o, drop_signer);
            write_address(out, "      ", o);
        }
        Party::Professional(p) => {
            let _ = writeln!(out, "      <HCProf>");
            if let Some(k) = &p.kind {
                cs(out, "        ", "Type", &k.v, k.dn.as_deref());
            }
            let r = unit_head(out, "        ", &p.display_name(), &p.idents);
            additional_ids(out, "        ", &r);
            let _ = writeln!(out, "      </HCProf>");
        }
        // Not a party the gateway answers for; written so the document stays valid.
        Party::PrivatePerson | Party::Nobody => out.push_str("      <Inst/>\n"),
    }
    let _ = writeln!(out, "    </HCP>");
    let _ = writeln!(out, "  </{name}>");
}

/// Builds an AppRec document (UTF-8 text, with XML declaration).
pub fn build_apprec(input: &AppRecInput<'_>) -> String {
    let v = input.version;
    let sender_role = match (v, input.role) {
        (_, RecipientRole::Copy) => ("COP", "Kopimottaker"),
        (AppRecVersion::V1_1, RecipientRole::Primary) => ("PRIM", "Primærmottaker"),
        (AppRecVersion::V1_0, RecipientRole::Primary) => match input.v1_0_primary_role {
            PrimaryRoleV1_0::Req => ("REQ", "Rekvirent"),
            PrimaryRoleV1_0::Spr => ("SPR", "Tjenesteyter"),
        },
    };
    let receiver_role = match v {
        AppRecVersion::V1_0 => ("RECEIVER", "Mottaker"),
        AppRecVersion::V1_1 => ("AVS", "Avsender"),
    };
    let gen_date = crate::ids::rfc3339(input.now);
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<AppRec xmlns=\"{}\">", v.namespace());
    cs(
        &mut out,
        "  ",
        "MsgType",
        "APPREC",
        Some("Applikasjonskvittering"),
    );
    text_el(&mut out, "  ", "MIGversion", v.mig_version());
    if !input.software_name.is_empty() {
        text_el(&mut out, "  ", "SoftwareName", &input.software_name);
    }
    if !input.software_version.is_empty() {
        text_el(&mut out, "  ", "SoftwareVersion", &input.software_version);
    }
    text_el(&mut out, "  ", "GenDate", &gen_date);
    text_el(&mut out, "  ", "Id", input.id.as_str());
    // The recipient is mirrored with everything it was addressed with (Systemtest #19–20).
    write_party(&mut out, "Sender", sender_role, input.recipient, false);
    write_party(
        &mut out,
        "Receiver",
        receiver_role,
        &input.original.sender,
        true,
    );
    cs(
        &mut out,
        "  ",
        "Status",
        input.status.code(),
        Some(input.status.text()),
    );
    for e in &input.errors {
        let _ = write!(
            out,
            "  <Error V=\"{}\" S=\"{OID_8221}\" DN=\"{}\"",
            e.code.code(),
            esc(e.code.text())
        );
        if let Some(ot) = &e.ot {
            let _ = write!(out, " OT=\"{}\"", esc(ot));
        }
        out.push_str("/>\n");
    }
    out.push_str("  <OriginalMsgId>\n");
    let mt = &input.original.msg_type;
    cs(&mut out, "    ", "MsgType", &mt.v, mt.dn.as_deref());
    text_el(&mut out, "    ", "IssueDate", &input.original.gen_date);
    text_el(&mut out, "    ", "Id", input.original.msg_id.as_str());
    out.push_str("  </OriginalMsgId>\n</AppRec>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_per_payload_standard() {
        use PayloadStandard as P;
        assert_eq!(
            AppRecVersion::for_payload(&P::Dialogmelding1_0),
            AppRecVersion::V1_0
        );
        assert_eq!(
            AppRecVersion::for_payload(&P::Dialogmelding1_1),
            AppRecVersion::V1_1
        );
        assert_eq!(AppRecVersion::for_payload(&P::Plo1_5), AppRecVersion::V1_0);
        assert_eq!(AppRecVersion::for_payload(&P::Plo1_6), AppRecVersion::V1_1);
        assert_eq!(AppRecVersion::for_payload(&P::Plo2_0), AppRecVersion::V1_1);
        assert_eq!(
            AppRecVersion::for_payload(&P::Other("urn:x".into())),
            AppRecVersion::V1_0
        );
        assert_eq!(
            AppRecVersion::for_payload(&P::NoContent),
            AppRecVersion::V1_0
        );
    }

    #[test]
    fn escaping() {
        assert_eq!(esc("a<&\"'>b\n\u{1}"), "a&lt;&amp;&quot;&apos;&gt;b&#10;");
    }
}
