//! One observation per committed message: the facts the indicators need and nothing that says who
//! the patient is (DESIGN §7; research note §2, §6).
//!
//! Input: a [`Seed`] the gateway hands over after the commit (what it already parsed: type, ids,
//! parties, conversation references, AppRec status and codes) plus, for a fagmelding, the content
//! it delivered; the recorder thread reads the payload itself, off the hot path, for the patient's
//! identity number (turned into a pseudonym at once), the PLO discharge facts and TypeForesp.
//! Output: an [`Observation`]. Never kept: names, identity numbers, free text (BeskrivelseAvHendelse,
//! Merknad, Sporsmal, …). A payload that cannot be read gives an observation without those facts.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::key::{Keys, Pseudonym};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::msghead::{MsgHead, Party};
use crate::xml::{XmlDocument, XmlEvent, XmlLimits};

/// What the gateway hands to the recorder for one committed message.
#[derive(Debug, Clone)]
pub struct Seed {
    /// When the gateway committed it (the gateway's clock).
    pub received: Timestamp,
    pub kind: SeedKind,
}

/// The two kinds of traffic observed.
#[derive(Debug, Clone)]
pub enum SeedKind {
    /// A fagmelding that was delivered to at least one recipient.
    Message {
        sender: HerId,
        head: Box<HeadFacts>,
        /// The body as it came in and whether it is a CMS SignedData (else bare XML).
        body: Bytes,
        signed: bool,
    },
    /// A receiver's AppRec, forwarded; `sent` is the time its envelope carries.
    AppRec { facts: AppRecFacts, sent: Timestamp },
}

/// The SignedData the hub opened, shared with the plan rather than copied (it may be as large as
/// the size limit).
struct Opened(Arc<Vec<u8>>);

impl AsRef<[u8]> for Opened {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Seed {
    /// The seed of a plan, when it is one the indicators use: a fagmelding delivered to at least
    /// one recipient, or a receiver's AppRec. Only small clones; the body is shared, not copied.
    pub fn of_plan(
        plan: &crate::gateway::assess::Plan,
        body: &Bytes,
        now: Timestamp,
    ) -> Option<Seed> {
        use crate::gateway::assess::{Packaging, Plan, RecipientPlan};
        let kind = match plan {
            Plan::Message(p)
                if p.recipients
                    .iter()
                    .any(|r| matches!(r, RecipientPlan::Deliver { .. })) =>
            {
                // An encrypted message's facts are in the SignedData the hub opened, not in the
                // delivery's body (an EnvelopedData only the hub can read).
                let (body, signed) = match &p.seal.signed {
                    Some(opened) => (Bytes::from_owner(Opened(Arc::clone(opened))), true),
                    None => (body.clone(), p.envelope.packaging == Packaging::Signed),
                };
                SeedKind::Message {
                    sender: p.sender,
                    head: Box::new(HeadFacts::of(&p.head)),
                    body,
                    signed,
                }
            }
            Plan::AppRec(a) => SeedKind::AppRec {
                facts: AppRecFacts {
                    apprec_id: a.apprec_id.as_str().to_owned(),
                    from: a.from.0,
                    original_sender: a.original_sender.0,
                    original_msg_id: a.original_msg_id.as_str().to_owned(),
                    status: a.status.code().to_owned(),
                    codes: a.codes.iter().map(|c| c.code().to_owned()).collect(),
                },
                sent: a.envelope.application_timestamp,
            },
            _ => return None,
        };
        Some(Seed {
            received: now,
            kind,
        })
    }
}

/// What the MsgHead already told the gateway (no patient data: [`MsgHead`] holds none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadFacts {
    pub msg_id: MsgId,
    pub msg_type: String,
    pub gen_date: String,
    pub sender: Unit,
    pub receiver: Unit,
    pub ref_to_parent: Option<String>,
    pub ref_to_conversation: Option<String>,
}

impl HeadFacts {
    /// The facts of a parsed MsgHead (a few small clones; the payload is not read here).
    pub fn of(head: &MsgHead) -> HeadFacts {
        let unit = |p: &Party| {
            let a = p.address();
            Unit {
                org: a.level1.map(|h| h.0),
                service: a.level2.map(|h| h.0),
            }
        };
        HeadFacts {
            msg_id: head.msg_id.clone(),
            msg_type: head.msg_type.v.clone(),
            gen_date: head.gen_date.clone(),
            sender: unit(&head.sender),
            receiver: unit(&head.receiver),
            ref_to_parent: head
                .conversation_ref
                .as_ref()
                .map(|c| c.ref_to_parent.clone())
                .filter(|s| !s.trim().is_empty()),
            ref_to_conversation: head
                .conversation_ref
                .as_ref()
                .map(|c| c.ref_to_conversation.clone())
                .filter(|s| !s.trim().is_empty()),
        }
    }
}

/// A party as HER-ids: its level-1 organisation and level-2 service or person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Unit {
    pub org: Option<u32>,
    pub service: Option<u32>,
}

/// An AppRec's facts (code lists 8258 and 8221).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRecFacts {
    pub apprec_id: String,
    /// The party answering.
    pub from: u32,
    pub original_sender: u32,
    pub original_msg_id: String,
    /// 8258: 1 OK, 2 Avvist, 3 OK with an error in a part-message.
    pub status: String,
    /// 8221 error codes.
    pub codes: Vec<String>,
}

/// One PLO `TidsfestetHendelse` (list 9121), its time as written and `Anslag`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PloEvent {
    pub code: String,
    pub time: String,
    pub estimate: Option<bool>,
}

/// The discharge facts of a PLO message (research note §2).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PloFacts {
    /// `Forsendelsesstatus` (7309): N, M, O, A, C, …
    pub status: Option<String>,
    pub events: Vec<PloEvent>,
    /// `UtskrevetTil/Uttilstand` (8431) and `UtskrevetTil/UtTil` (8408).
    pub out_state: Option<String>,
    pub out_to: Option<String>,
}

/// What is stored for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub msg_id: String,
    /// The communication party that sent it (header `fromHerId`).
    pub from: u32,
    /// Committed by the gateway (Unix seconds, UTC).
    pub received: i64,
    /// `GenDate` as written (a zone-less value is Oslo time, see `oslo`).
    pub gen_date: String,
    pub msg_type: String,
    pub sender: Unit,
    pub receiver: Unit,
    pub ref_to_parent: Option<String>,
    pub ref_to_conversation: Option<String>,
    pub apprec: Option<AppRecFacts>,
    pub plo: Option<PloFacts>,
    /// Dialogmelding `Foresporsel/TypeForesp` (9152 and others), the code only.
    pub type_foresp: Option<String>,
    /// The patient's pseudonym ([`super::key`]), when the MsgHead names an FNR or DNR.
    pub patient: Option<Pseudonym>,
}

impl Observation {
    /// The message's own time: GenDate, else when the gateway committed it.
    pub fn time(&self) -> Timestamp {
        super::oslo::parse(&self.gen_date).unwrap_or_else(|| {
            time::OffsetDateTime::from_unix_timestamp(self.received)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        })
    }
}

/// What the payload gave: the patient's identity number (kept only until hashed) and the facts.
#[derive(Default)]
struct PayloadFacts {
    patient_id: Option<String>,
    plo: Option<PloFacts>,
    type_foresp: Option<String>,
}

/// The reader's limits for the recorder's own parse (the gateway's intake already bounded size).
const LIMITS: XmlLimits = XmlLimits {
    max_bytes: usize::MAX,
    max_depth: 64,
};

/// Builds the observation. `link` picks the pseudonym among the candidates (newest key first):
/// the store's answer to "which of these have I seen".
pub fn observe(
    seed: &Seed,
    keys: &Keys,
    link: impl FnOnce(&[Pseudonym]) -> Pseudonym,
) -> Observation {
    let received = seed.received.unix_timestamp();
    match &seed.kind {
        SeedKind::AppRec { facts: a, sent } => Observation {
            msg_id: a.apprec_id.clone(),
            from: a.from,
            received,
            gen_date: crate::ids::rfc3339(*sent),
            msg_type: "APPREC".into(),
            sender: Unit {
                org: Some(a.from),
                service: None,
            },
            receiver: Unit {
                org: Some(a.original_sender),
                service: None,
            },
            ref_to_parent: Some(a.original_msg_id.clone()),
            ref_to_conversation: None,
            apprec: Some(a.clone()),
            plo: None,
            type_foresp: None,
            patient: None,
        },
        SeedKind::Message {
            sender,
            head,
            body,
            signed,
        } => {
            let content = if *signed {
                crate::cms::unverified_content(body)
            } else {
                Some(body.to_vec())
            };
            let facts = content.as_deref().map(payload_facts).unwrap_or_default();
            let patient = facts
                .patient_id
                .as_deref()
                .and_then(|id| keys.pseudonyms(id))
                .map(|c| link(&c));
            Observation {
                msg_id: head.msg_id.as_str().to_owned(),
                from: sender.0,
                received,
                gen_date: head.gen_date.clone(),
                msg_type: head.msg_type.clone(),
                sender: head.sender,
                receiver: head.receiver,
                ref_to_parent: head.ref_to_parent.clone(),
                ref_to_conversation: head.ref_to_conversation.clone(),
                apprec: None,
                plo: facts.plo,
                type_foresp: facts.type_foresp,
                patient,
            }
        }
    }
}

/// Reads the MsgHead document once more, off the hot path, for what the gateway does not keep.
/// A streaming pass (the model's element tree keeps no payload content, by design): element names
/// are matched by local name within the context the standards give them (HIS 80601 MsgInfo/Patient;
/// HIS 1149 §3 Pasientlogistikk; Dialogmelding Foresporsel/TypeForesp). Text is looked at only for
/// the patient's `Ident/Id` and `Anslag`; no other text is read.
fn payload_facts(xml: &[u8]) -> PayloadFacts {
    let Ok(doc) = XmlDocument::new(xml, &LIMITS) else {
        return PayloadFacts::default();
    };
    let mut r = doc.reader();
    let mut out = PayloadFacts::default();
    let mut path: Vec<String> = Vec::new();
    // The patient idents: (TypeId V, Id).
    let mut idents: Vec<(String, String)> = Vec::new();
    let mut plo: Option<PloFacts> = None;
    let mut event: Option<PloEvent> = None;
    let mut content_seen = false;
    loop {
        let ev = match r.next_event() {
            Ok(e) => e,
            Err(_) => return PayloadFacts::default(),
        };
        match ev {
            XmlEvent::Start(tag) => {
                let local = tag.local;
                let attr = |name: &str| {
                    tag.attrs
                        .iter()
                        .find(|a| a.ns.is_empty() && a.local == name)
                        .map(|a| a.value.trim().to_owned())
                };
                let parent = path.last().map(String::as_str).unwrap_or("");
                let in_patient = path.len() >= 3 && path[1] == "MsgInfo" && path[2] == "Patient";
                if in_patient && parent == "Ident" && local == "TypeId" {
                    if let Some(last) = idents.last_mut() {
                        last.0 = attr("V").unwrap_or_default();
                    }
                }
                if in_patient && parent == "Patient" && local == "Ident" {
                    idents.push((String::new(), String::new()));
                }
                if parent == "Content" && !content_seen {
                    content_seen = true;
                    if local == "Pasientlogistikk" {
                        plo = Some(PloFacts::default());
                    }
                }
                if content_seen {
                    match (parent, local) {
                        ("Foresporsel", "TypeForesp") if out.type_foresp.is_none() => {
                            out.type_foresp = attr("V");
                        }
                        (_, "Forsendelsesstatus") => {
                            let f = plo.get_or_insert_with(PloFacts::default);
                            if f.status.is_none() {
                                f.status = attr("V");
                            }
                        }
                        (_, "TidsfestetHendelse") => {
                            event = Some(PloEvent {
                                code: String::new(),
                                time: String::new(),
                                estimate: None,
                            });
                        }
                        ("TidsfestetHendelse", "Hendelsekode") => {
                            if let Some(e) = event.as_mut() {
                                e.code = attr("V").unwrap_or_default();
                            }
                        }
                        ("TidsfestetHendelse", "TidspunktForHendelse") => {
                            if let Some(e) = event.as_mut() {
                                e.time = attr("V").unwrap_or_default();
                            }
                        }
                        ("UtskrevetTil", "Uttilstand") => {
                            if let Some(f) = plo.as_mut() {
                                f.out_state = attr("V");
                            }
                        }
                        ("UtskrevetTil", "UtTil") => {
                            if let Some(f) = plo.as_mut() {
                                f.out_to = attr("V");
                            }
                        }
                        _ => {}
                    }
                }
                path.push(local.to_owned());
            }
            XmlEvent::Text(t) => {
                let here = path.last().map(String::as_str).unwrap_or("");
                let parent = path.len().checked_sub(2).map_or("", |i| path[i].as_str());
                let in_patient = path.len() >= 3 && path[1] == "MsgInfo" && path[2] == "Patient";
                if in_patient && here == "Id" && parent == "Ident" {
                    if let Some(last) = idents.last_mut() {
                        last.1.push_str(t.trim());
                    }
                }
                if here == "Anslag" && parent == "TidsfestetHendelse" {
                    if let Some(e) = event.as_mut() {
                        e.estimate = Some(t.trim() == "true");
                    }
                }
            }
            XmlEvent::End => {
                if path.pop().as_deref() == Some("TidsfestetHendelse") {
                    if let (Some(e), Some(f)) = (event.take(), plo.as_mut()) {
                        if !e.code.is_empty() && !e.time.is_empty() {
                            f.events.push(e);
                        }
                    }
                }
            }
            XmlEvent::Eof => break,
        }
    }
    let id_of = |kind: &str| {
        idents
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, id)| id.clone())
    };
    // HIS 80601 MsgInfo/Patient/Ident; FNR before DNR when both are given.
    out.patient_id = id_of("FNR").or_else(|| id_of("DNR"));
    out.plo = plo;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLO: &str = r#"<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24"><MsgInfo>
<Type V="LOG_UTSKREVET"/><GenDate>2026-03-02T10:00:00</GenDate><MsgId>m1</MsgId>
<Patient><FamilyName>Syntetisk</FamilyName><Ident><Id>01019900000</Id><TypeId V="FNR"/></Ident></Patient>
</MsgInfo><Document><RefDoc><Content>
<p1:Pasientlogistikk xmlns:p1="http://www.kith.no/xmlstds/po/Pasientlogistikk/2012-04-01" xmlns="http://www.kith.no/xmlstds/po/poKomponent/2012-04-01">
<InformasjonOmForsendelsen><Forsendelsesstatus V="N"/></InformasjonOmForsendelsen>
<p1:MeldingOmUtskrevetPasient><UtskrevetTil><Uttilstand V="1"/><UtTil V="11"/></UtskrevetTil>
<TidsfestetHendelse><Hendelsekode V="2"/><BeskrivelseAvHendelse>fri tekst</BeskrivelseAvHendelse>
<TidspunktForHendelse V="2026-03-02"/><Anslag>false</Anslag></TidsfestetHendelse>
</p1:MeldingOmUtskrevetPasient></p1:Pasientlogistikk></Content></RefDoc></Document></MsgHead>"#;

    #[test]
    fn plo_facts_are_read_and_the_identity_number_only_hashed() {
        let f = payload_facts(PLO.as_bytes());
        assert_eq!(f.patient_id.as_deref(), Some("01019900000"));
        let plo = f.plo.unwrap();
        assert_eq!(plo.status.as_deref(), Some("N"));
        assert_eq!(plo.out_state.as_deref(), Some("1"));
        assert_eq!(plo.out_to.as_deref(), Some("11"));
        assert_eq!(
            plo.events,
            vec![PloEvent {
                code: "2".into(),
                time: "2026-03-02".into(),
                estimate: Some(false)
            }]
        );
        let seed = Seed {
            received: time::macros::datetime!(2026-03-02 09:05 UTC),
            kind: SeedKind::Message {
                sender: HerId(80001),
                head: Box::new(HeadFacts {
                    msg_id: MsgId::new("m1"),
                    msg_type: "LOG_UTSKREVET".into(),
                    gen_date: "2026-03-02T10:00:00".into(),
                    sender: Unit::default(),
                    receiver: Unit::default(),
                    ref_to_parent: None,
                    ref_to_conversation: None,
                }),
                body: Bytes::from_static(PLO.as_bytes()),
                signed: false,
            },
        };
        let keys = Keys::from_bytes(&[&[1; 32]]);
        let o = observe(&seed, &keys, |c| c[0].clone());
        let json = serde_json::to_string(&o).unwrap();
        assert!(!json.contains("01019900000"));
        assert!(!json.contains("Syntetisk"));
        assert!(!json.contains("fri tekst"));
        assert_eq!(
            o.patient,
            keys.pseudonyms("01019900000").map(|p| p[0].clone())
        );
    }

    #[test]
    fn an_unreadable_payload_gives_an_observation_without_payload_facts() {
        let f = payload_facts(b"<not xml");
        assert!(f.patient_id.is_none() && f.plo.is_none());
    }
}
