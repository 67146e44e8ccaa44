//! The pure step between assessment and effects: a [`Plan`] and the message's record as stored
//! turn into an [`Action`] — every message to publish (queue, headers, body, the gateway's signed
//! AppRec), the state changes each publish makes true, the routing-log lines — before anything
//! happens. The effects (`deliver.rs`) then only publish, commit and acknowledge.
//!
//! Input: the plan, the stored record of the message it concerns (`None`: never seen), the
//! gateway's own [`Identity`] and `now`. Output: an [`Action`]. Failure: only the gateway's own
//! signing or encrypting can fail here, which is an infrastructure fault ([`Action::Retry`]), never
//! the sender's. Runs on the assessment threads when it signs or encrypts, inline otherwise.
//!
//! Idempotence: a redelivery after a crash meets the record the first handling left, so it
//! publishes only what is still owed; an AppRec the gateway issues has a deterministic Id and the
//! record's time as GenDate, so a crash can only repeat the *same* AppRec (DESIGN §3).

use crate::address::RecipientRole;
use crate::amqp::headers::{ContentType, MessageHeaders};
use crate::amqp::topology::{async_queue, error_queue};
use crate::apprec::{build_apprec, AppRecInput, PrimaryRoleV1_0};
use crate::cms::Signer;
use crate::codes::{AppRecStatus, ErrorCode};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::store::state::{DeliveryState, Event};
use crate::store::{Change, MessageRecord, Transition};

use super::assess::{
    condition, AppRecPlan, MessagePlan, Packaging, Plan, RecipientPlan, Refusal, Seal,
};
use super::routing_log::{Decision, MessageRef, Outcome};

/// What the gateway itself is, for what it sends in its own name.
pub struct Identity {
    /// Its HER-id: the AppRec sender for a recipient whose HER-id is unknown.
    pub her: HerId,
    pub signer: Signer,
    /// Where messages go that no party can be told about.
    pub dead_letter: String,
}

/// What to do with one delivery.
pub enum Action {
    /// Nothing can be decided now (an infrastructure fault): hold the delivery and try again.
    Retry(String),
    Carry(Carry),
}

/// Everything to do for one delivery, in the order of DESIGN §3.
pub struct Carry {
    /// Step 2: recorded before publishing, without a flush of its own.
    pub record: Vec<Change>,
    /// Step 3: published all at once, each until confirmed.
    pub sends: Vec<Send>,
    /// Routing-log lines that do not depend on a send (a duplicate: nothing to send).
    pub decisions: Vec<Decision>,
}

/// What one publish is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendKind {
    /// The sender's original envelope to a recipient's `{her}_async`.
    Copy,
    /// A negative AppRec the gateway issues for a recipient, to the sender's `{her}_async`.
    AppRec,
    /// A receiver's AppRec on its way to the original sender.
    Forward,
    /// The original message on an error queue or the dead-letter queue, with the reason.
    ErrorEntry,
}

/// The message body to publish.
pub enum Body {
    /// The delivery's own body, unchanged (the sender's signature travels with it).
    Original,
    /// A document the gateway made (its signed AppRec).
    Issued(Vec<u8>),
}

/// The properties to publish with.
pub enum Properties {
    /// The wire-contract headers (DESIGN §1).
    Headers(MessageHeaders),
    /// The delivery's own properties plus `errorCondition`, `errorDescription` and
    /// `originalMessageId`.
    Error {
        condition: &'static str,
        description: String,
        original: Option<MsgId>,
    },
}

/// One publish and what it makes true.
pub struct Send {
    pub kind: SendKind,
    pub queue: String,
    pub properties: Properties,
    pub body: Body,
    /// State changes that hold once this publish is confirmed (step 4).
    pub confirmed: Vec<Change>,
    /// Its routing-log line, written once those are durable.
    pub decision: Decision,
}

impl Carry {
    fn sends(sends: Vec<Send>) -> Carry {
        Carry {
            record: Vec::new(),
            sends,
            decisions: Vec::new(),
        }
    }
}

impl Plan {
    /// The record a plan concerns: the message itself, or for a receiver's AppRec the message it
    /// answers. Deliveries with the same key are handled one at a time.
    pub fn record_key(&self) -> Option<(HerId, MsgId)> {
        match self {
            Plan::Message(p) => Some((p.sender, p.msg_id.clone())),
            Plan::AppRec(p) => Some((p.original_sender, p.original_msg_id.clone())),
            Plan::Refuse(_) | Plan::Retry { .. } => None,
        }
    }

    /// Whether deciding will sign an AppRec or encrypt (then it belongs on the assessment threads).
    pub fn signs(&self) -> bool {
        match self {
            Plan::Message(p) => {
                p.recipients
                    .iter()
                    .any(|r| matches!(r, RecipientPlan::Reject { .. }))
                    || p.seal.encrypt
            }
            Plan::AppRec(p) => p.seal.encrypt,
            Plan::Refuse(_) | Plan::Retry { .. } => false,
        }
    }
}

/// Decides everything to do for a delivery. Pure but for the gateway's signature.
pub fn decide(plan: Plan, stored: Option<MessageRecord>, me: &Identity, now: Timestamp) -> Action {
    match plan {
        Plan::Retry { reason } => Action::Retry(reason),
        Plan::Refuse(r) => Action::Carry(Carry::sends(vec![refusal(&r, me, now)])),
        Plan::Message(p) => message(*p, stored, me, now),
        Plan::AppRec(p) => forward(*p, stored, me, now),
    }
}

/// An error-queue entry (or a dead letter) for a refusal.
pub fn refusal(r: &Refusal, me: &Identity, now: Timestamp) -> Send {
    let (queue, outcome) = match r.to {
        Some(her) => (error_queue(her), Outcome::ErrorQueue),
        None => (me.dead_letter.clone(), Outcome::DeadLettered),
    };
    Send {
        kind: SendKind::ErrorEntry,
        queue,
        properties: Properties::Error {
            condition: r.condition,
            description: r.description.clone(),
            original: r.about.msg_id.clone(),
        },
        body: Body::Original,
        confirmed: Vec::new(),
        decision: Decision::new(now, outcome, &r.about)
            .reason(format!("{}: {}", r.condition, r.description)),
    }
}

fn message(p: MessagePlan, stored: Option<MessageRecord>, me: &Identity, now: Timestamp) -> Action {
    let about = MessageRef {
        msg_id: Some(p.msg_id.clone()),
        msg_type: Some(p.msg_type.clone()),
        from_her: Some(p.sender),
        to_her: Some(p.envelope.to_her_id),
    };
    let ours: Vec<&RecipientPlan> = p.recipients.iter().filter(|r| r.is_ours()).collect();
    let fresh = stored.is_none();
    let mut record = Vec::new();
    let rec = match stored {
        Some(rec) if rec.content_sha256 != p.content_sha256 => {
            // HIS 80601: a MsgId identifies one message. Same id, other content: refuse the
            // newcomer through the sender's error queue; the first one's AppRec stands.
            let r = Refusal::new(
                Some(p.sender),
                condition::MSGID_REUSED,
                format!(
                    "MsgId {} was already received from HER-id {} with different content",
                    p.msg_id, p.sender
                ),
                about,
            );
            return Action::Carry(Carry::sends(vec![refusal(&r, me, now)]));
        }
        Some(rec) => rec,
        // Not ours at all (HITS 1168 §5.3): no state, no AppRec; the sender hears of it through
        // its error queue.
        None if ours.is_empty() => {
            return Action::Carry(Carry::sends(not_for_us(&p, &about, me, now)))
        }
        None => {
            let mut rec = MessageRecord::new(
                p.sender,
                p.msg_id.clone(),
                p.msg_type.clone(),
                &[],
                now,
                p.gen_date,
                ours.iter().map(|r| match r {
                    RecipientPlan::Deliver { her, role } => (Some(*her), *role),
                    RecipientPlan::Reject { her, role, .. } => (*her, *role),
                    _ => (None, RecipientRole::Primary),
                }),
            );
            rec.content_sha256 = p.content_sha256;
            let mut routed = rec.clone();
            record.push(Change::Create(rec));
            for (i, r) in ours.iter().enumerate() {
                if matches!(r, RecipientPlan::Deliver { .. }) {
                    let t = transition(&p, i, Event::Routed, now);
                    // The record as step 2 stores it, so step 3 below decides on it.
                    if let Err(e) = routed.apply(&t) {
                        return Action::Retry(format!("delivery state: {e}"));
                    }
                    record.push(Change::Apply(t));
                }
            }
            routed
        }
    };
    if rec.recipients.len() != ours.len() {
        // The register changed between two deliveries of the same message: keep what was decided
        // the first time (the record), and say so.
        tracing::warn!("recipients differ from the first assessment; keeping the recorded ones");
    }
    let mut sends = Vec::new();
    for (i, (plan, state)) in ours.iter().zip(rec.recipients.iter()).enumerate() {
        match (plan, state.state) {
            (RecipientPlan::Deliver { her, .. }, DeliveryState::Routed) => {
                let (body, content_type) = match sealed_copy(&p.seal, *her, p.envelope.packaging) {
                    Ok(b) => b,
                    Err(e) => return Action::Retry(format!("{e}: HER-id {her}")),
                };
                sends.push(Send {
                    kind: SendKind::Copy,
                    queue: async_queue(*her),
                    properties: with_cpa_id(
                        headers(
                            (p.sender, *her),
                            &p.msg_type,
                            &p.msg_id,
                            p.envelope.application_timestamp,
                            content_type,
                            None,
                        ),
                        &p.envelope.cpa_id,
                    ),
                    body,
                    confirmed: vec![Change::Apply(transition(&p, i, Event::Delivered, now))],
                    decision: Decision::new(now, Outcome::Delivered, &about).to(Some(*her)),
                })
            }
            (
                RecipientPlan::Reject {
                    her,
                    role,
                    party,
                    errors,
                },
                DeliveryState::Received,
            ) => {
                let apprec_id = apprec_id_for(p.sender, &p.msg_id, i);
                let xml = build_apprec(&AppRecInput {
                    version: p.apprec_version,
                    original: &p.head,
                    recipient: party,
                    role: *role,
                    status: AppRecStatus::Rejected,
                    errors: errors.clone(),
                    id: apprec_id.clone(),
                    // The record's time, so a rebuilt AppRec is identical to the first one.
                    now: rec.received_at,
                    software_name: "helsemelding".into(),
                    software_version: env!("CARGO_PKG_VERSION").into(),
                    v1_0_primary_role: PrimaryRoleV1_0::default(),
                });
                let signed = match me.signer.sign(xml.as_bytes(), rec.received_at) {
                    Ok(s) => s,
                    Err(e) => return Action::Retry(format!("signing the AppRec failed: {e}")),
                };
                // Signed, then encrypted to the sender (DESIGN §1 "Encryption").
                let (signed, apprec_type) = match p.seal.certificate_for(p.sender) {
                    Some(cert) => match cert.seal(&signed) {
                        Ok(e) => (e, ContentType::EnvelopedCms),
                        Err(e) => return Action::Retry(format!("{e}: HER-id {}", p.sender)),
                    },
                    None => (signed, ContentType::SignedCms),
                };
                let code = errors.first().map(|e| e.code).unwrap_or(ErrorCode::X99);
                let mut t = transition(&p, i, Event::Rejected(code), now);
                t.apprec_id = Some(apprec_id.clone());
                t.codes = errors.iter().map(|e| e.code).collect();
                let reason = errors
                    .iter()
                    .filter_map(|e| e.ot.as_deref())
                    .collect::<Vec<_>>()
                    .join("; ");
                sends.push(Send {
                    kind: SendKind::AppRec,
                    queue: async_queue(p.sender),
                    properties: headers(
                        (her.unwrap_or(me.her), p.sender),
                        "APPREC",
                        &apprec_id,
                        rec.received_at,
                        apprec_type,
                        Some(&p.msg_id),
                    ),
                    body: Body::Issued(signed),
                    confirmed: vec![Change::Apply(t)],
                    // Logged with the HER-id as addressed, also when it is not ours (E21).
                    decision: Decision::new(now, Outcome::Rejected, &about)
                        .to(her.or_else(|| party.address().communication_party()))
                        .code(Some(code))
                        .reason(reason),
                });
            }
            _ => {}
        }
    }
    let mut decisions = Vec::new();
    if sends.is_empty() {
        // Everything was settled before: a duplicate (HITS 1168 §5.4, Systemtest #12, #41) — no
        // second delivery, no second AppRec.
        decisions.push(Decision::new(now, Outcome::Duplicate, &about));
    }
    // Entries for recipients that are not ours go out with the first handling (or its redelivery
    // after a crash), not again for every duplicate.
    if fresh || !sends.is_empty() {
        sends.extend(not_for_us(&p, &about, me, now));
    }
    Action::Carry(Carry {
        record,
        sends,
        decisions,
    })
}

/// One `transport:unknown-receiver` entry on the sender's error queue per recipient that is not
/// ours (HITS 1168 §5.3: no AppRec, but never silence).
fn not_for_us(p: &MessagePlan, about: &MessageRef, me: &Identity, now: Timestamp) -> Vec<Send> {
    p.recipients
        .iter()
        .filter_map(|r| match r {
            RecipientPlan::NotForUs { reason, .. } => {
                let r = Refusal::new(
                    Some(p.sender),
                    condition::UNKNOWN_RECEIVER,
                    reason.clone(),
                    about.clone(),
                );
                let mut send = refusal(&r, me, now);
                send.decision.outcome = Outcome::NotForUs;
                Some(send)
            }
            _ => None,
        })
        .collect()
}

/// A receiver's AppRec: forwarded to the original sender if it answers a message delivered to that
/// receiver and is the first one; refused otherwise (HIS 80415:2012 §3.2, Systemtest #13, #41).
fn forward(
    p: AppRecPlan,
    original: Option<MessageRecord>,
    me: &Identity,
    now: Timestamp,
) -> Action {
    let about = MessageRef {
        msg_id: Some(p.apprec_id.clone()),
        msg_type: Some("APPREC".into()),
        from_her: Some(p.from),
        to_her: Some(p.original_sender),
    };
    let refuse = |condition: &'static str, description: String| {
        let r = Refusal::new(Some(p.from), condition, description, about.clone());
        Carry::sends(vec![refusal(&r, me, now)])
    };
    let Some(record) = original else {
        return Action::Carry(refuse(
            condition::UNKNOWN_ORIGINAL,
            format!(
                "AppRec {} refers to MsgId {} from HER-id {}, which the gateway never carried",
                p.apprec_id, p.original_msg_id, p.original_sender
            ),
        ));
    };
    let Some(index) = record.recipient_index(p.from) else {
        return Action::Carry(refuse(
            condition::SPOOFING,
            format!(
                "AppRec from HER-id {} for MsgId {}, which was not delivered to that party",
                p.from, p.original_msg_id
            ),
        ));
    };
    let rec = &record.recipients[index];
    use DeliveryState as S;
    match rec.state {
        S::Routed | S::Delivered | S::Overdue => {}
        S::AppRecOk | S::AppRecRejected if rec.apprec_id.as_ref() == Some(&p.apprec_id) => {
            // The same AppRec again (a redelivery after a crash between forward and ack).
            return Action::Carry(Carry {
                record: Vec::new(),
                sends: Vec::new(),
                decisions: vec![
                    Decision::new(now, Outcome::Duplicate, &about).reason(format!(
                        "AppRec for {} already forwarded",
                        p.original_msg_id
                    )),
                ],
            });
        }
        S::AppRecOk | S::AppRecRejected => {
            // An AppRec is final (HIS 80415:2012 §3.2, Systemtest #13): a second one is dropped,
            // and the recipient's system is told through its error queue.
            let mut carry = refuse(
                condition::SECOND_APPREC,
                format!(
                    "a second AppRec from HER-id {} for MsgId {}; the first one stands",
                    p.from, p.original_msg_id
                ),
            );
            carry.decisions.push(
                Decision::new(now, Outcome::AppRecRefused, &about)
                    .reason(format!("second AppRec for {}", p.original_msg_id)),
            );
            return Action::Carry(carry);
        }
        S::Received | S::Rejected(_) => {
            return Action::Carry(refuse(
                condition::SPOOFING,
                format!("AppRec from HER-id {} for MsgId {}, which the gateway rejected and never delivered", p.from, p.original_msg_id),
            ));
        }
    }
    let mut t = Transition {
        sender: record.sender,
        msg_id: record.msg_id.clone(),
        recipient: index,
        event: Event::Delivered,
        at: now,
        apprec_id: None,
        codes: Vec::new(),
    };
    let mut confirmed = Vec::new();
    if rec.state == S::Routed {
        // The AppRec proves the delivery whose confirm a crash cut off.
        confirmed.push(Change::Apply(t.clone()));
    }
    t.event = if p.status == AppRecStatus::Rejected {
        Event::AppRecRejected
    } else {
        Event::AppRecOk
    };
    t.apprec_id = Some(p.apprec_id.clone());
    t.codes = p.codes.clone();
    confirmed.push(Change::Apply(t));
    // The receiver's signed AppRec travels on unchanged (DESIGN §2: the gateway forwards it),
    // encrypted to the original sender where the seal says so.
    let (body, content_type) = match sealed_copy(&p.seal, p.original_sender, p.envelope.packaging) {
        Ok(b) => b,
        Err(e) => return Action::Retry(format!("{e}: HER-id {}", p.original_sender)),
    };
    Action::Carry(Carry::sends(vec![Send {
        kind: SendKind::Forward,
        queue: async_queue(p.original_sender),
        properties: headers(
            (p.from, p.original_sender),
            "APPREC",
            &p.apprec_id,
            p.envelope.application_timestamp,
            content_type,
            Some(&p.original_msg_id),
        ),
        body,
        confirmed,
        decision: Decision::new(now, Outcome::AppRecForwarded, &about)
            .code(p.codes.first().copied())
            .reason(format!(
                "status {} for {}",
                p.status.code(),
                p.original_msg_id
            )),
    }]))
}

/// The wire-contract headers of a message the gateway publishes (DESIGN §1): `(from, to)`, the
/// message function, its id and time, and for an AppRec the MsgId it answers.
fn headers(
    (from, to): (HerId, HerId),
    msg_type: &str,
    message_id: &MsgId,
    application_timestamp: Timestamp,
    content_type: ContentType,
    answers: Option<&MsgId>,
) -> Properties {
    Properties::Headers(MessageHeaders {
        original_message_id: answers.cloned(),
        ..MessageHeaders::new(
            (from, to),
            msg_type,
            message_id.clone(),
            application_timestamp,
            content_type,
        )
    })
}

/// A copy carries the sender's `cpaId` on (the recipient's HN.Msg looks its agreement up by it).
fn with_cpa_id(mut props: Properties, cpa_id: &Option<String>) -> Properties {
    if let Properties::Headers(h) = &mut props {
        h.cpa_id.clone_from(cpa_id);
    }
    props
}

fn content_type(p: Packaging) -> ContentType {
    match p {
        Packaging::Signed => ContentType::SignedCms,
        Packaging::Encrypted => ContentType::EnvelopedCms,
        Packaging::Plain => ContentType::Xml,
    }
}

/// What a recipient gets of the sender's SignedData (DESIGN §1 "Encryption"): encrypted to its
/// certificate where the seal says so; else the SignedData the hub opened; else the delivery's body
/// unchanged. The SignedData inside is the sender's, byte for byte, in every case.
fn sealed_copy(
    seal: &Seal,
    her: HerId,
    packaging: Packaging,
) -> Result<(Body, ContentType), crate::cms::SealError> {
    Ok(match (seal.certificate_for(her), &seal.signed) {
        (Some(cert), Some(signed)) => (Body::Issued(cert.seal(signed)?), ContentType::EnvelopedCms),
        (None, Some(signed)) => (Body::Issued(signed.to_vec()), ContentType::SignedCms),
        (_, None) => (Body::Original, content_type(packaging)),
    })
}

fn transition(p: &MessagePlan, recipient: usize, event: Event, at: Timestamp) -> Transition {
    Transition {
        sender: p.sender,
        msg_id: p.msg_id.clone(),
        recipient,
        event,
        at,
        apprec_id: None,
        codes: Vec::new(),
    }
}

/// A deterministic AppRec Id for the AppRec the gateway issues for recipient `index` of a
/// message: a redelivery after a crash rebuilds the very same AppRec, never a second one.
pub fn apprec_id_for(sender: HerId, msg_id: &MsgId, index: usize) -> MsgId {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("helsemelding-apprec\0{sender}\0{msg_id}\0{index}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    MsgId(uuid::Builder::from_random_bytes(b).into_uuid().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apprec_ids_are_deterministic_uuids() {
        let a = apprec_id_for(HerId(1), &MsgId::new("m"), 0);
        assert_eq!(a, apprec_id_for(HerId(1), &MsgId::new("m"), 0));
        assert_ne!(a, apprec_id_for(HerId(1), &MsgId::new("m"), 1));
        assert_ne!(a, apprec_id_for(HerId(2), &MsgId::new("m"), 0));
        assert!(a.is_uuid(), "{a}");
    }
}
