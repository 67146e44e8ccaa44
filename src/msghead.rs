//! Typed extraction from a MsgHead 1.2 document (HIS 80601, NOTES.md §2–§3): message type,
//! ids, dates, conversation reference, the full addresses of sender and every recipient (an AppRec
//! mirrors them, HITS 1168 §6.1, §11), a *summary* of how the patient is identified, and which
//! standard the payload is.
//!
//! Input: the bytes of a MsgHead document, normally already schema-validated. Output: [`MsgHead`].
//! Failure modes ([`ModelError`]): not well-formed / DTD / entities (T01), not a MsgHead or a
//! required element missing (T02). Elements are matched by namespace URI and local name, never by
//! prefix. The patient's identifiers, names and dates are never kept: only which kinds are present.
//! Clinicians' names are addresses and are kept.

use std::fmt;

use crate::address::{AddressedRecipient, PartyAddress, RecipientRole};
use crate::codes::ErrorCode;
use crate::ids::{HerId, MsgId, Timestamp};
use crate::xml::tree::{Element, Tree};
use crate::xml::{XmlDocument, XmlError, XmlLimits};

/// MsgHead v1.2 namespace (HIS 80601).
pub const NS_MSGHEAD: &str = "http://www.kith.no/xmlstds/msghead/2006-05-24";

/// Why a document could not be turned into the model. Always a message fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The hardened reader refused the document (not well-formed, DTD, entity, depth, encoding).
    #[error("not well-formed XML at {0}")]
    Xml(#[from] XmlError),
    #[error("root element is {{{found_ns}}}{found}, expected {{{expected_ns}}}{expected}")]
    WrongRoot {
        expected: &'static str,
        expected_ns: String,
        found: String,
        found_ns: String,
    },
    #[error("required element {path} is missing")]
    Missing { path: String },
    #[error("element {path} (line {line}) has an invalid value: {problem}")]
    Invalid {
        path: String,
        line: usize,
        problem: String,
    },
}

impl ModelError {
    /// The AppRec error code (list 8221) for this fault (NOTES.md §7).
    pub fn apprec_code(&self) -> ErrorCode {
        match self {
            Self::Xml(_) => ErrorCode::T01,
            Self::WrongRoot { .. } => ErrorCode::T10,
            Self::Missing { .. } | Self::Invalid { .. } => ErrorCode::T02,
        }
    }
}

/// A coded value as written (`CS`/`CV`): `V`, `S`, `DN`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Code {
    pub v: String,
    pub s: Option<String>,
    pub dn: Option<String>,
}

impl Code {
    fn from(el: Element<'_>) -> Code {
        Code {
            v: el.attr("V").unwrap_or_default().trim().to_owned(),
            s: el.attr("S").map(str::to_owned),
            dn: el.attr("DN").map(str::to_owned),
        }
    }
}

/// `Ident` {Id, TypeId} of an organisation or clinician.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ident {
    pub id: String,
    pub type_id: Code,
}

impl Ident {
    /// A HER-id ident: `TypeId/@V = HER`, whatever `S` says (NOTES.md §3: S is 8116 in HIS 1153-2,
    /// 9051 in official samples).
    pub fn is_her(&self) -> bool {
        self.type_id.v == "HER"
    }
}

/// The first ident with `TypeId V=HER` whose Id is a valid HER-id. An Id that is not a valid
/// HER-id counts as missing (NOTES.md §3), so a later, valid HER ident still counts.
pub fn her_of(idents: &[Ident]) -> Option<HerId> {
    idents
        .iter()
        .filter(|i| i.is_her())
        .find_map(|i| i.id.parse::<HerId>().ok())
}

/// A postal address (`Address`), kept for mirroring.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PostalAddress {
    pub kind: Option<Code>,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub postbox: Option<String>,
    pub county: Option<Code>,
    pub country: Option<Code>,
}

/// `HealthcareProfessional` as an address: names and idents (HPR, HER, ...). A clinician's name is
/// an address, not patient data.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct HealthcareProfessional {
    pub kind: Option<Code>,
    pub role_to_patient: Option<Code>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub given_name: Option<String>,
    pub idents: Vec<Ident>,
}

impl HealthcareProfessional {
    /// "Given Middle Family", as AppRec `HCPerson/Name` wants it (NOTES.md §4).
    pub fn display_name(&self) -> String {
        [&self.given_name, &self.middle_name, &self.family_name]
            .iter()
            .filter_map(|n| n.as_deref().map(str::trim).filter(|n| !n.is_empty()))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `Organisation`, with a nested level-2 `Organisation` (service) and/or a `HealthcareProfessional`.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Organisation {
    pub name: String,
    pub kind: Option<Code>,
    pub idents: Vec<Ident>,
    pub address: Option<PostalAddress>,
    /// `TeleCom/TeleAddress/@V` values (e.g. `tel:…`, `mailto:…`).
    pub telecom: Vec<String>,
    pub organisation: Option<Box<Organisation>>,
    pub professional: Option<HealthcareProfessional>,
}

/// An addressed party: the `Organisation` of Sender/Receiver, or what an `OtherReceiver` names.
// A message has a handful of parties; boxing the common variant would only complicate matching.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Party {
    Organisation(Organisation),
    /// An `OtherReceiver` naming a clinician without an organisation.
    Professional(HealthcareProfessional),
    /// An `OtherReceiver` naming a private person or the patient: not a routable party, and its
    /// data is not kept.
    PrivatePerson,
    /// An `OtherReceiver` that names nobody (the schema allows it).
    Nobody,
}

impl Party {
    /// The HER-id levels (HIS 1153-2 AD2.1–AD2.8, NOTES.md §3): level 1 =
    /// `Organisation/Ident[HER]`; level 2 = `Organisation/Organisation/Ident[HER]`, else
    /// `Organisation/HealthcareProfessional/Ident[HER]`. A clinician addressed without an
    /// organisation has only a level 2 (its level 1 is missing, E21 for the gateway).
    pub fn address(&self) -> PartyAddress {
        match self {
            Party::Organisation(o) => PartyAddress {
                level1: her_of(&o.idents),
                level2: o
                    .organisation
                    .as_deref()
                    .and_then(|sub| her_of(&sub.idents))
                    .or_else(|| o.professional.as_ref().and_then(|p| her_of(&p.idents))),
            },
            Party::Professional(p) => PartyAddress {
                level1: None,
                level2: her_of(&p.idents),
            },
            Party::PrivatePerson | Party::Nobody => PartyAddress::default(),
        }
    }
}

/// One `OtherReceiver`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OtherReceiver {
    /// `RoleReceiver` (list 8112; `COP` = kopimottaker).
    pub role: Code,
    pub party: Party,
}

/// `ConversationRef` (RefToParent comes first in the schema).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConversationRef {
    pub ref_to_parent: String,
    pub ref_to_conversation: String,
}

/// `MsgInfo/Ack` (list 7304). Ignored for the AppRec decision (NOTES.md §5), but accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ack {
    /// J = Ja
    Yes,
    /// N = Nei
    No,
    /// F = Kun ved feil
    OnError,
    /// A value outside list 7304, as written.
    Other(String),
}

/// What the MsgHead says about the patient — kinds only, never values (DESIGN §3, CONVENTIONS).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct PatientSummary {
    /// Whether `MsgInfo/Patient` is present at all.
    pub present: bool,
    /// `Ident/TypeId/@V` of every patient ident (list 8116: FNR, DNR, HNR, FHN, DUF, …), in order.
    pub ident_kinds: Vec<String>,
    pub has_family_name: bool,
    pub has_given_name: bool,
    pub has_birth_date: bool,
    pub has_sex: bool,
}

impl PatientSummary {
    /// HITS 1168 / NOTES.md §7 (E36): the patient is sufficiently identified by name + fødselsnummer,
    /// name + D-nummer, name + FH-nummer, or name + birth date + sex. "Name" = family name.
    pub fn sufficiently_identified(&self) -> bool {
        let has = |k: &str| self.ident_kinds.iter().any(|i| i == k);
        self.present
            && self.has_family_name
            && (has("FNR") || has("DNR") || has("FHN") || (self.has_birth_date && self.has_sex))
    }
}

/// The payload standard, by the namespace of the first `Document/RefDoc/Content` element.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PayloadStandard {
    /// `http://www.kith.no/xmlstds/dialog/2006-10-11`
    Dialogmelding1_0,
    /// `http://www.kith.no/xmlstds/dialog/2013-01-23`
    Dialogmelding1_1,
    /// `http://www.kith.no/xmlstds/po/<Msg>/2009-06-30`
    Plo1_5,
    /// `http://www.kith.no/xmlstds/po/<Msg>/2012-04-01`
    Plo1_6,
    /// `http://ehelse.no/xmlstds/po/<Msg>/2016-05-30`
    Plo2_0,
    /// Any other payload namespace (e.g. a Base64Container, a Helsenorge payload).
    Other(String),
    /// The first Document carries no XML content (FileReference, or empty).
    NoContent,
}

impl PayloadStandard {
    /// Classifies a payload root namespace (NOTES.md §1).
    pub fn from_namespace(ns: &str) -> PayloadStandard {
        let po = |prefix: &str, date: &str| {
            ns.strip_prefix(prefix).is_some_and(|rest| {
                rest.strip_suffix(date).is_some_and(|m| {
                    m.len() > 1 && m.ends_with('/') && !m[..m.len() - 1].contains('/')
                })
            })
        };
        match ns {
            "http://www.kith.no/xmlstds/dialog/2006-10-11" => Self::Dialogmelding1_0,
            "http://www.kith.no/xmlstds/dialog/2013-01-23" => Self::Dialogmelding1_1,
            _ if po("http://www.kith.no/xmlstds/po/", "2009-06-30") => Self::Plo1_5,
            _ if po("http://www.kith.no/xmlstds/po/", "2012-04-01") => Self::Plo1_6,
            _ if po("http://ehelse.no/xmlstds/po/", "2016-05-30") => Self::Plo2_0,
            _ => Self::Other(ns.to_owned()),
        }
    }
}

impl fmt::Display for PayloadStandard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Dialogmelding1_0 => f.write_str("Dialogmelding 1.0"),
            Self::Dialogmelding1_1 => f.write_str("Dialogmelding 1.1"),
            Self::Plo1_5 => f.write_str("PLO 1.5"),
            Self::Plo1_6 => f.write_str("PLO 1.6"),
            Self::Plo2_0 => f.write_str("PLO 2.0"),
            Self::Other(ns) => write!(f, "other ({ns})"),
            Self::NoContent => f.write_str("no XML content"),
        }
    }
}

/// A MsgHead, as far as the gateway needs it. Holds no patient data, so `Debug` is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgHead {
    /// `MsgInfo/Type` (list 8279), `V` and `DN` as written; AppRec copies both.
    pub msg_type: Code,
    pub mig_version: String,
    /// `MsgInfo/GenDate` exactly as written (AppRec `OriginalMsgId/IssueDate` echoes it).
    pub gen_date: String,
    /// `GenDate` parsed, when it carries an offset (`Z` or `±hh:mm`).
    pub gen_date_parsed: Option<Timestamp>,
    /// `GenDate` parsed when it has *no* offset (xs:dateTime allows that; most Norwegian EHRs
    /// write the sender's local time). The gateway decides how to place it in time.
    pub gen_date_unzoned: Option<time::PrimitiveDateTime>,
    /// `MsgInfo/MsgId` as written; [`MsgId::is_uuid`] is the gateway's E10 check.
    pub msg_id: MsgId,
    pub ack: Option<Ack>,
    pub conversation_ref: Option<ConversationRef>,
    pub sender: Party,
    pub receiver: Party,
    pub other_receivers: Vec<OtherReceiver>,
    pub patient: PatientSummary,
    pub payload: PayloadStandard,
    /// How many `Document`s (main document + attachments).
    pub documents: usize,
}

fn required<'t>(el: Element<'t>, local: &str, path: &str) -> Result<Element<'t>, ModelError> {
    el.child(local).ok_or_else(|| ModelError::Missing {
        path: format!("{path}/{local}"),
    })
}

fn opt_text(el: Element<'_>, local: &str) -> Option<String> {
    el.child_text(local)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn idents(el: Element<'_>) -> Vec<Ident> {
    el.children_named("Ident")
        .map(|i| Ident {
            id: i.child_text("Id").unwrap_or_default().to_owned(),
            type_id: i.child("TypeId").map(Code::from).unwrap_or_default(),
        })
        .collect()
}

fn postal_address(el: Element<'_>) -> PostalAddress {
    PostalAddress {
        kind: el.child("Type").map(Code::from),
        street: opt_text(el, "StreetAdr"),
        postal_code: opt_text(el, "PostalCode"),
        city: opt_text(el, "City"),
        postbox: opt_text(el, "Postbox"),
        county: el.child("County").map(Code::from),
        country: el.child("Country").map(Code::from),
    }
}

fn professional(el: Element<'_>) -> HealthcareProfessional {
    HealthcareProfessional {
        kind: el.child("TypeHealthcareProfessional").map(Code::from),
        role_to_patient: el.child("RoleToPatient").map(Code::from),
        family_name: opt_text(el, "FamilyName"),
        middle_name: opt_text(el, "MiddleName"),
        given_name: opt_text(el, "GivenName"),
        idents: idents(el),
    }
}

fn organisation(el: Element<'_>) -> Organisation {
    Organisation {
        name: el
            .child_text("OrganisationName")
            .unwrap_or_default()
            .to_owned(),
        kind: el.child("TypeOrganisation").map(Code::from),
        idents: idents(el),
        address: el.child("Address").map(postal_address),
        telecom: el
            .children_named("TeleCom")
            .filter_map(|t| {
                t.child("TeleAddress")
                    .and_then(|a| a.attr("V"))
                    .map(str::to_owned)
            })
            .collect(),
        organisation: el.child("Organisation").map(|o| Box::new(organisation(o))),
        professional: el.child("HealthcareProfessional").map(professional),
    }
}

fn patient_summary(el: Option<Element<'_>>) -> PatientSummary {
    let Some(p) = el else {
        return PatientSummary::default();
    };
    PatientSummary {
        present: true,
        ident_kinds: p
            .children_named("Ident")
            .map(|i| {
                i.child("TypeId")
                    .and_then(|t| t.attr("V"))
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            })
            .collect(),
        has_family_name: p.child_text("FamilyName").is_some_and(|t| !t.is_empty()),
        has_given_name: p.child_text("GivenName").is_some_and(|t| !t.is_empty()),
        has_birth_date: p.child_text("DateOfBirth").is_some_and(|t| !t.is_empty()),
        has_sex: p.child("Sex").is_some(),
    }
}

/// What the model's reader accepts: the reader's depth limit; no size limit of its own, because
/// the gateway's intake (`policy.max_message_bytes`) bounds what reaches it and may be configured
/// above the reader's default.
const MODEL_LIMITS: XmlLimits = XmlLimits {
    max_bytes: usize::MAX,
    max_depth: 64,
};

/// Parses an xs:dateTime into its date-time fields and, when written, its offset (`Z` or
/// `±hh:mm`). `None` when it does not parse; the text is always kept as written anyway.
pub(crate) fn parse_xs_datetime(
    s: &str,
) -> Option<(time::PrimitiveDateTime, Option<time::UtcOffset>)> {
    let s = s.trim();
    let (body, offset) = if let Some(b) = s.strip_suffix('Z') {
        (b, Some(time::UtcOffset::UTC))
    } else if s.len() > 6
        && matches!(s.as_bytes()[s.len() - 6], b'+' | b'-')
        && s.as_bytes()[s.len() - 3] == b':'
    {
        let (b, o) = s.split_at(s.len() - 6);
        let off = time::UtcOffset::parse(
            o,
            time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .ok()?;
        (b, Some(off))
    } else {
        (s, None)
    };
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    let dt = time::PrimitiveDateTime::parse(body, fmt).ok()?;
    Some((dt, offset))
}

/// An xs:dateTime with an offset as a [`Timestamp`]; `None` without offset or when unparseable.
pub(crate) fn parse_datetime(s: &str) -> Option<Timestamp> {
    parse_xs_datetime(s).and_then(|(dt, off)| off.map(|o| dt.assume_offset(o)))
}

impl MsgHead {
    /// Extracts the model from a MsgHead document. See the module documentation for failures.
    pub fn parse(xml: &[u8]) -> Result<MsgHead, ModelError> {
        let doc = XmlDocument::new(xml, &MODEL_LIMITS)?;
        let tree = Tree::read(&doc)?;
        Self::from_tree(tree.root())
    }

    /// Extracts the model from a document already read into a tree (the gateway builds it during
    /// schema validation, so the message is read once).
    pub(crate) fn from_tree(root: Element<'_>) -> Result<MsgHead, ModelError> {
        if root.ns() != NS_MSGHEAD || root.local() != "MsgHead" {
            return Err(ModelError::WrongRoot {
                expected: "MsgHead",
                expected_ns: NS_MSGHEAD.to_owned(),
                found: root.local().to_owned(),
                found_ns: root.ns().to_owned(),
            });
        }
        let info = required(root, "MsgInfo", "MsgHead")?;
        let p = "MsgHead/MsgInfo";
        let msg_type = Code::from(required(info, "Type", p)?);
        if msg_type.v.is_empty() {
            return Err(ModelError::Invalid {
                path: format!("{p}/Type"),
                line: info.line(),
                problem: "no V attribute".into(),
            });
        }
        let gen_date = required(info, "GenDate", p)?.text().trim().to_owned();
        let msg_id = MsgId::new(required(info, "MsgId", p)?.text().to_owned());
        let party_of = |local: &str| -> Result<Party, ModelError> {
            let holder = required(info, local, p)?;
            let org = required(holder, "Organisation", &format!("{p}/{local}"))?;
            Ok(Party::Organisation(organisation(org)))
        };
        let other_receivers = info
            .children_named("OtherReceiver")
            .map(|o| OtherReceiver {
                role: o.child("RoleReceiver").map(Code::from).unwrap_or_default(),
                party: if let Some(org) = o.child("Organisation") {
                    Party::Organisation(organisation(org))
                } else if let Some(hcp) = o.child("HealthcareProfessional") {
                    Party::Professional(professional(hcp))
                } else if o.child("Person").is_some() || o.child("Patient").is_some() {
                    Party::PrivatePerson
                } else {
                    Party::Nobody
                },
            })
            .collect();
        let documents: Vec<Element<'_>> = root.children_named("Document").collect();
        // Registry reports carry PatientReport/Document instead (HIS 80601).
        let documents: Vec<Element<'_>> = if documents.is_empty() {
            root.children_named("PatientReport")
                .flat_map(|r| r.children_named("Document"))
                .collect()
        } else {
            documents
        };
        let payload = documents
            .first()
            .and_then(|d| d.child("RefDoc"))
            .and_then(|r| r.child("Content"))
            .and_then(|c| c.children().next())
            .map(|payload_root| PayloadStandard::from_namespace(payload_root.ns()))
            .unwrap_or(PayloadStandard::NoContent);
        Ok(MsgHead {
            mig_version: info.child_text("MIGversion").unwrap_or_default().to_owned(),
            gen_date_parsed: parse_datetime(&gen_date),
            gen_date_unzoned: parse_xs_datetime(&gen_date)
                .filter(|(_, o)| o.is_none())
                .map(|(dt, _)| dt),
            gen_date,
            msg_id,
            ack: info
                .child("Ack")
                .map(|a| match a.attr("V").unwrap_or_default().trim() {
                    "J" => Ack::Yes,
                    "N" => Ack::No,
                    "F" => Ack::OnError,
                    other => Ack::Other(other.to_owned()),
                }),
            conversation_ref: info.child("ConversationRef").map(|c| ConversationRef {
                ref_to_parent: c.child_text("RefToParent").unwrap_or_default().to_owned(),
                ref_to_conversation: c
                    .child_text("RefToConversation")
                    .unwrap_or_default()
                    .to_owned(),
            }),
            sender: party_of("Sender")?,
            receiver: party_of("Receiver")?,
            other_receivers,
            patient: patient_summary(info.child("Patient")),
            payload,
            documents: documents.len(),
            msg_type,
        })
    }

    /// Every recipient with its routing key: the `Receiver` as `Primary`, then each
    /// `OtherReceiver` as `Copy` (COP, or any other role — a copy is never the primary).
    pub fn recipients(&self) -> Vec<(AddressedRecipient, &Party)> {
        let mut out = vec![(
            AddressedRecipient {
                role: RecipientRole::Primary,
                address: self.receiver.address(),
            },
            &self.receiver,
        )];
        for o in &self.other_receivers {
            out.push((
                AddressedRecipient {
                    role: RecipientRole::Copy,
                    address: o.party.address(),
                },
                &o.party,
            ));
        }
        out
    }

    /// The sender's HER-id levels.
    pub fn sender_address(&self) -> PartyAddress {
        self.sender.address()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_namespaces() {
        use PayloadStandard as P;
        assert_eq!(
            P::from_namespace("http://www.kith.no/xmlstds/dialog/2006-10-11"),
            P::Dialogmelding1_0
        );
        assert_eq!(
            P::from_namespace("http://www.kith.no/xmlstds/dialog/2013-01-23"),
            P::Dialogmelding1_1
        );
        assert_eq!(
            P::from_namespace("http://www.kith.no/xmlstds/dialog/2013-01-10"),
            P::Other("http://www.kith.no/xmlstds/dialog/2013-01-10".into())
        );
        assert_eq!(
            P::from_namespace("http://www.kith.no/xmlstds/po/pasientlogistikk/2009-06-30"),
            P::Plo1_5
        );
        assert_eq!(
            P::from_namespace("http://www.kith.no/xmlstds/po/innleggelsesrapport/2012-04-01"),
            P::Plo1_6
        );
        assert_eq!(
            P::from_namespace("http://ehelse.no/xmlstds/po/pasientlogistikk/2016-05-30"),
            P::Plo2_0
        );
        assert!(matches!(
            P::from_namespace("http://www.kith.no/xmlstds/po/2009-06-30"),
            P::Other(_)
        ));
        assert!(matches!(
            P::from_namespace("http://www.kith.no/xmlstds/base64container"),
            P::Other(_)
        ));
    }

    #[test]
    fn her_ids_match_on_v_and_skip_invalid_ids() {
        let id = |id: &str, v: &str, s: Option<&str>| Ident {
            id: id.into(),
            type_id: Code {
                v: v.into(),
                s: s.map(Into::into),
                dn: None,
            },
        };
        assert_eq!(
            her_of(&[
                id("971318864", "ENH", None),
                id("56704", "HER", Some("2.16.578.1.12.4.1.1.9051"))
            ]),
            Some(HerId(56704))
        );
        assert_eq!(
            her_of(&[id("56704", "HER", Some("2.16.578.1.12.4.1.1.8116"))]),
            Some(HerId(56704))
        );
        assert_eq!(her_of(&[id("369.767", "HER", None)]), None);
        assert_eq!(
            her_of(&[id("369.767", "HER", None), id("42", "HER", None)]),
            Some(HerId(42))
        );
        assert_eq!(her_of(&[id("42", "her", None)]), None);
    }

    #[test]
    fn xs_datetimes() {
        use time::macros::datetime;
        assert_eq!(
            parse_datetime("2007-01-20T04:30:47.0Z"),
            Some(datetime!(2007-01-20 04:30:47 UTC))
        );
        assert_eq!(
            parse_datetime("2024-01-02T03:04:05+01:00"),
            Some(datetime!(2024-01-02 03:04:05 +01:00))
        );
        assert_eq!(
            parse_datetime("2009-09-10T11:31:54.148-02:30"),
            Some(datetime!(2009-09-10 11:31:54.148 -02:30))
        );
        assert_eq!(parse_datetime("2018-01-24T15:30:36"), None);
        assert_eq!(
            parse_xs_datetime("2018-01-24T15:30:36"),
            Some((datetime!(2018-01-24 15:30:36), None))
        );
        assert_eq!(parse_xs_datetime("1991-12-4T10:00:00"), None);
        assert_eq!(parse_xs_datetime("yesterday"), None);
    }

    #[test]
    fn patient_sufficiency_rule() {
        let mut p = PatientSummary {
            present: true,
            has_family_name: true,
            ident_kinds: vec!["FNR".into()],
            ..Default::default()
        };
        assert!(p.sufficiently_identified());
        p.ident_kinds = vec!["HNR".into()];
        assert!(!p.sufficiently_identified());
        p.has_birth_date = true;
        p.has_sex = true;
        assert!(p.sufficiently_identified());
        p.has_family_name = false;
        assert!(!p.sufficiently_identified());
        assert!(!PatientSummary::default().sufficiently_identified());
    }
}
