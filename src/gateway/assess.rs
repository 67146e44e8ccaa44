//! Assessment: the CPU half of the pipeline as typed stages — [`admit`] (decode: envelope, sender,
//! user, size) → [`verify`] (CMS signature, certificate, signer ⇔ sender) → [`validate`] (one
//! reading pass: schema verdict and the MsgHead/AppRec extracted from the same events) →
//! [`route`] (recipients per HIS 1153) — composed by [`assess`] into a [`Plan`] of effects
//! (DESIGN §2). Each stage takes what the previous one produced, so none can be skipped; a stage
//! that ends the pipeline early returns the [`Plan`] for it (a refusal or a retry) as its error.
//!
//! Input: plain values — the body, the [`Envelope`] the transport read (who claims to send, to whom,
//! what) and the broker-validated `user_id`. Output: what must happen, decided before anything happens:
//! - [`Plan::Message`]: a fagmelding, with one [`RecipientPlan`] per addressed recipient (deliver,
//!   reject with a negative AppRec, or not ours);
//! - [`Plan::AppRec`]: a receiver's application receipt to check against the store and forward;
//! - [`Plan::Refuse`]: no AppRec is possible or proper — an error-queue entry or a dead letter
//!   with `errorCondition` (sender unknowable, spoofing, AppRec faults: never answer an AppRec
//!   with an AppRec, NOTES §5);
//! - [`Plan::Retry`]: an infrastructure fault (stale revocation data); not the sender's fault.
//!
//! Encrypted envelopes are opened at the start of [`verify`] (DESIGN §1 "Encryption"): the SignedData
//! inside is then verified exactly as an unencrypted one, and travels on in the plan's [`Seal`] so
//! that each recipient gets it, byte for byte, encrypted to its own certificate.
//!
//! Nothing here performs I/O or reads the clock: `now` is passed in, so the same delivery always
//! gives the same plan — which is what makes redelivery after a crash idempotent.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::metrics::{thread_cpu_nanos, Stage, StageTimes};
use super::routing_log::MessageRef;
use crate::address::{AddressedRecipient, RecipientRole};
use crate::apprec::{AppRec, AppRecError, AppRecVersion};
use crate::cms::{self, HubKeys, OpenError, RecipientCert, TrustStore};
use crate::codes::{AppRecStatus, ErrorCode};
use crate::ids::{HerId, MsgId, Timestamp};
use crate::msghead::{Code, Ident, MsgHead, Organisation, Party, PatientSummary, PayloadStandard};
use crate::register::Register;
use crate::route::{self, Decision, RoutePolicy};
use crate::xml::tree::{Tree, TreeBuilder};
use crate::xml::{XmlDocument, XmlLimits};
use crate::xsd::{SchemaSet, Schemas, Verdict};

/// Error conditions for error-queue entries and dead letters (DESIGN §1 `errorCondition`).
pub mod condition {
    pub const INVALID_HEADERS: &str = "transport:invalid-headers";
    pub const TOO_LARGE: &str = "transport:message-too-large";
    pub const INVALID_ENVELOPE: &str = "transport:invalid-envelope";
    pub const UNSIGNED: &str = "transport:unsigned-message";
    /// Plaintext (SignedData or XML not inside an EnvelopedData) under `policy.require_encryption`.
    pub const UNENCRYPTED: &str = "transport:unencrypted-message";
    /// Encrypted to the hub but not decryptable: one condition for every reason (padding, key,
    /// structure), so that the outcome says nothing about why (`cms::envelope`).
    pub const UNDECRYPTABLE: &str = "transport:undecryptable";
    /// Encrypted to a certificate that is none of the hub's encryption certificates.
    pub const WRONG_RECIPIENT: &str = "transport:wrong-recipient";
    pub const NOT_WELL_FORMED: &str = "transport:not-well-formed-xml";
    pub const UNKNOWN_RECEIVER: &str = "transport:unknown-receiver";
    pub const UNKNOWN_SENDER: &str = "abuse:unknown-sender";
    pub const SPOOFING: &str = "abuse:spoofing-attack";
    pub const REVOKED: &str = "transport:revoked-certificate";
    pub const INVALID_CERTIFICATE: &str = "transport:invalid-certificate";
    pub const INVALID_SIGNATURE: &str = "transport:invalid-signature";
    pub const INVALID_APPREC: &str = "transport:invalid-apprec";
    pub const UNKNOWN_ORIGINAL: &str = "transport:apprec-unknown-original";
    pub const SECOND_APPREC: &str = "transport:apprec-already-received";
    pub const MSGID_REUSED: &str = "transport:msgid-reused-with-different-content";
    pub const UNDELIVERABLE: &str = "transport:undeliverable";
    pub const RETRIES_EXHAUSTED: &str = "transport:retries-exhausted";
}

/// What the gateway needs to know to assess a message: loaded at startup, replaced as a whole
/// between messages ([`ContextCell`]) when a CRL changes.
#[derive(Clone)]
pub struct Context {
    pub schemas: Arc<Schemas>,
    /// `None` only when the configuration allows unsigned traffic and no trust directory is set.
    pub trust: Option<Arc<TrustStore>>,
    pub register: Arc<Register>,
    /// SHA-256 fingerprints of the signing certificates each party may use.
    pub fingerprints: HashMap<HerId, HashSet<String>>,
    /// The hub's decryption keys and the parties' encryption certificates.
    pub encryption: Arc<Encryption>,
    pub policy: Policy,
    /// The gateway's own HER-id (answers for recipients whose HER-id is unknown).
    pub gateway_her: HerId,
}

/// The [`Context`] in use: each assessment takes one snapshot ([`ContextCell::load`]), so a
/// change (a new CRL) takes effect between messages, never in the middle of one.
pub struct ContextCell {
    current: std::sync::RwLock<Arc<Context>>,
    /// Serialises writers, so that two changes made at once are both kept.
    writer: std::sync::Mutex<()>,
}

impl ContextCell {
    pub fn new(ctx: Context) -> ContextCell {
        ContextCell {
            current: std::sync::RwLock::new(Arc::new(ctx)),
            writer: std::sync::Mutex::new(()),
        }
    }

    pub fn load(&self) -> Arc<Context> {
        match self.current.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Replaces the context with `derive(current)`, unless it returns `None`.
    pub fn update(&self, derive: impl FnOnce(&Context) -> Option<Context>) {
        let _w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let cur = self.load();
        if let Some(new) = derive(&cur) {
            match self.current.write() {
                Ok(mut g) => *g = Arc::new(new),
                Err(p) => *p.into_inner() = Arc::new(new),
            }
        }
    }
}

impl crate::revocation::TrustHolder for ContextCell {
    fn current(&self) -> Option<Arc<TrustStore>> {
        self.load().trust.clone()
    }
    fn replace(&self, derive: &mut dyn FnMut(&TrustStore) -> Option<TrustStore>) {
        self.update(|ctx| {
            let trust = derive(ctx.trust.as_deref()?)?;
            Some(Context {
                trust: Some(Arc::new(trust)),
                ..ctx.clone()
            })
        });
    }
}

/// What encryption needs (DESIGN §1 "Encryption"): the hub's keys, to open what senders encrypted
/// to it, and each party's encryption certificate, to encrypt what the hub sends it.
#[derive(Debug, Default)]
pub struct Encryption {
    pub hub: HubKeys,
    pub recipients: Arc<HashMap<HerId, Arc<RecipientCert>>>,
}

/// How what the gateway sends about one message is packaged: the sender's SignedData (if it came
/// encrypted, the hub opened it), and whether copies and AppRecs are encrypted to their recipients.
#[derive(Clone)]
pub struct Seal {
    /// The sender's SignedData, byte for byte, when it arrived inside an EnvelopedData (the
    /// delivery's body is then that EnvelopedData, which no recipient can open).
    pub signed: Option<Arc<Vec<u8>>>,
    /// Encrypt to each recipient's encryption certificate: under `policy.require_encryption`, and
    /// whenever the sender encrypted (confidentiality it asked for is kept where a certificate allows).
    pub encrypt: bool,
    pub recipients: Arc<HashMap<HerId, Arc<RecipientCert>>>,
}

impl std::fmt::Debug for Seal {
    // The SignedData is patient data: its size only.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seal")
            .field("signed_len", &self.signed.as_ref().map(|s| s.len()))
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

impl Seal {
    /// The encryption certificate to use for `her`, if what is sent to it is to be encrypted.
    pub fn certificate_for(&self, her: HerId) -> Option<&RecipientCert> {
        if self.encrypt {
            self.recipients.get(&her).map(|c| c.as_ref())
        } else {
            None
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_message_bytes: usize,
    pub require_signature: bool,
    /// Refuse what is not encrypted to the hub (`transport:unencrypted-message`).
    pub require_encryption: bool,
    pub route: RoutePolicy,
    pub xml: XmlLimits,
}

/// How the body is packaged (the transport's content type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// DER CMS SignedData around the MsgHead XML.
    Signed,
    /// DER CMS EnvelopedData (to the hub) around that SignedData.
    Encrypted,
    /// Bare MsgHead XML (only where the configuration allows unsigned traffic).
    Plain,
}

/// What the transport says about a message before anyone has looked inside: the claims the
/// pipeline checks against the signer and the MsgHead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from_her_id: HerId,
    pub to_her_id: HerId,
    /// The message function as claimed (code list 8279).
    pub msg_type: String,
    pub message_id: MsgId,
    pub application_timestamp: Timestamp,
    pub packaging: Packaging,
    /// Helsenorge.Messaging's collaboration-agreement id, carried to the recipients.
    pub cpa_id: Option<String>,
}

impl Envelope {
    /// What a decision about a message known only by its envelope is about.
    pub fn message_ref(&self) -> MessageRef {
        MessageRef {
            msg_id: Some(self.message_id.clone()),
            msg_type: Some(self.msg_type.clone()),
            from_her: Some(self.from_her_id),
            to_her: Some(self.to_her_id),
        }
    }
}

/// One inbound delivery, as the pipeline sees it.
pub struct Inbound<'a> {
    pub body: &'a [u8],
    /// The envelope, or why the transport could not read it.
    pub envelope: Result<&'a Envelope, &'a str>,
    /// AMQP `user_id`, validated by RabbitMQ against the publishing connection's user.
    pub user_id: Option<&'a str>,
}

/// What must happen to one inbound delivery.
#[derive(Debug)]
pub enum Plan {
    Message(Box<MessagePlan>),
    AppRec(Box<AppRecPlan>),
    Refuse(Refusal),
    Retry { reason: String },
}

/// An error-queue entry (`{her}_error`) or, when no party can be trusted with it, a dead letter.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// `Some(her)`: the party's error queue; `None`: `gateway_dead_letter`.
    pub to: Option<HerId>,
    pub condition: &'static str,
    pub description: String,
    /// The message the refusal is about, as far as it is known.
    pub about: MessageRef,
}

impl Refusal {
    /// The one way a refusal is made.
    pub fn new(
        to: Option<HerId>,
        condition: &'static str,
        description: impl Into<String>,
        about: MessageRef,
    ) -> Refusal {
        Refusal {
            to,
            condition,
            description: description.into(),
            about,
        }
    }
}

/// A fagmelding and what happens for each of its recipients.
#[derive(Debug)]
pub struct MessagePlan {
    /// The sending communication party (header `fromHerId`, checked against the signer and the MsgHead).
    pub sender: HerId,
    pub msg_id: MsgId,
    pub msg_type: String,
    pub gen_date: Option<Timestamp>,
    /// The MsgHead as far as it could be read; for unreadable messages a stand-in built from the
    /// headers and the register, so an AppRec can still mirror addresses (HITS 1168 §6.1).
    pub head: MsgHead,
    pub apprec_version: AppRecVersion,
    pub recipients: Vec<RecipientPlan>,
    /// SHA-256 of the message itself (the MsgHead XML inside the envelope): a re-send in a new
    /// envelope is the same message (HITS 1168 §5.4); the same MsgId over other content is not.
    pub content_sha256: [u8; 32],
    /// The envelope it came in (its time and packaging travel on with each copy).
    pub envelope: Envelope,
    /// What copies and AppRecs are made of.
    pub seal: Seal,
}

/// One addressed recipient's fate.
// `Reject` carries the recipient's whole Party for its AppRec; plans live for one delivery, a few
// per message, so boxing it would buy nothing measurable.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RecipientPlan {
    /// Publish the original envelope to `{her}_async`.
    Deliver { her: HerId, role: RecipientRole },
    /// Answer for this recipient with a negative AppRec (one `Error` per distinct fault).
    Reject {
        her: Option<HerId>,
        role: RecipientRole,
        party: Party,
        errors: Vec<AppRecError>,
    },
    /// Not ours at either level: no AppRec; an error-queue entry for the sender (HITS 1168 §5.3).
    NotForUs { role: RecipientRole, reason: String },
    /// The same party addressed twice: covered by its first recipient (HITS 1168 §5.4).
    Duplicate { her: HerId, role: RecipientRole },
}

impl RecipientPlan {
    /// The recipients the store keeps state for: those we deliver to or answer for.
    pub fn is_ours(&self) -> bool {
        matches!(
            self,
            RecipientPlan::Deliver { .. } | RecipientPlan::Reject { .. }
        )
    }
}

/// A receiver's AppRec, verified and validated, to be checked against the delivery state.
#[derive(Debug)]
pub struct AppRecPlan {
    /// The party that answers (header `fromHerId` = AppRec Sender's communication party).
    pub from: HerId,
    /// The fagmelding's sender (AppRec Receiver's communication party), whom it is forwarded to.
    pub original_sender: HerId,
    pub original_msg_id: MsgId,
    pub apprec_id: MsgId,
    pub status: AppRecStatus,
    pub codes: Vec<ErrorCode>,
    /// The envelope it came in.
    pub envelope: Envelope,
    /// What the forwarded AppRec is made of.
    pub seal: Seal,
}

impl Plan {
    /// An error-queue entry for `to` (or a dead letter), about the message `env` describes.
    fn refuse(
        to: Option<HerId>,
        condition: &'static str,
        description: impl Into<String>,
        env: &Envelope,
    ) -> Plan {
        Plan::Refuse(Refusal::new(to, condition, description, env.message_ref()))
    }
}

/// Assesses one delivery. Pure: same input, same plan.
pub fn assess(input: &Inbound<'_>, ctx: &Context, now: Timestamp) -> Plan {
    assess_timed(input, ctx, now, None)
}

/// [`assess`], adding each stage's CPU time to `stages` (the plan is the same either way).
pub fn assess_timed(
    input: &Inbound<'_>,
    ctx: &Context,
    now: Timestamp,
    stages: Option<&StageTimes>,
) -> Plan {
    let mut clock = StageClock::start(stages);
    let mut run = || -> Result<Plan, Plan> {
        let admitted = admit(input, ctx)?;
        let verified = verify(admitted, ctx, now, &mut clock)?;
        let validated = validate(&verified, ctx, &mut clock)?;
        Ok(route(validated, ctx, &mut clock))
    };
    run().unwrap_or_else(|early| early)
}

/// A delivery whose envelope is readable, whose sender is registered and allowed to use this AMQP
/// user, and whose size is within the limit.
pub struct Admitted<'a> {
    pub env: &'a Envelope,
    pub body: &'a [u8],
}

/// Stage 1, decode: the envelope, the sender, the AMQP user, the size.
pub fn admit<'a>(input: &Inbound<'a>, ctx: &Context) -> Result<Admitted<'a>, Plan> {
    let env = match input.envelope {
        Ok(env) => env,
        // Without readable headers nobody can be told: dead letter, with the reason.
        Err(why) => {
            return Err(Plan::Refuse(Refusal::new(
                None,
                condition::INVALID_HEADERS,
                why,
                MessageRef::default(),
            )))
        }
    };
    let from = env.from_her_id;
    let Some(party) = ctx.register.get(from) else {
        return Err(Plan::refuse(
            None,
            condition::UNKNOWN_SENDER,
            format!("fromHerId {from} is not in the address register"),
            env,
        ));
    };
    // DESIGN §2 verify: the AMQP user (validated by RabbitMQ) must be allowed to send for fromHerId.
    // A party registered without amqp_users is not restricted by user.
    if !party.amqp_users.is_empty() {
        match input.user_id {
            Some(u) if ctx.register.amqp_user_allowed(from, u) => {}
            Some(u) => {
                return Err(Plan::refuse(
                    Some(from),
                    condition::SPOOFING,
                    format!("AMQP user {u:?} may not send for HER-id {from}"),
                    env,
                ))
            }
            None => {
                return Err(Plan::refuse(
                    Some(from),
                    condition::SPOOFING,
                    format!("no AMQP user_id on a message for HER-id {from}, which only its registered users may send"),
                    env,
                ))
            }
        }
    }
    if input.body.len() > ctx.policy.max_message_bytes {
        return Err(Plan::refuse(
            Some(from),
            condition::TOO_LARGE,
            format!(
                "{} bytes, the limit is {}",
                input.body.len(),
                ctx.policy.max_message_bytes
            ),
            env,
        ));
    }
    Ok(Admitted {
        env,
        body: input.body,
    })
}

/// The content of an admitted delivery, with the signature's verdict.
pub struct Verified<'a> {
    pub env: &'a Envelope,
    /// The MsgHead XML (the signed content, or the body itself when unsigned).
    pub content: Cow<'a, [u8]>,
    /// S01–S03 (or another signature fault) when the content could be read but not trusted: the
    /// message is still answered with an AppRec, which needs its addresses (Systemtest #29–31).
    pub signature_fault: Option<AppRecError>,
    /// SHA-256 of `content`.
    pub content_sha256: [u8; 32],
    pub seal: Seal,
}

/// Stage 2, verify: the CMS signature, the signer's certificate, and that the signer is a
/// certificate registered for the claimed sender.
pub fn verify<'a>(
    a: Admitted<'a>,
    ctx: &Context,
    now: Timestamp,
    clock: &mut StageClock<'_>,
) -> Result<Verified<'a>, Plan> {
    let env = a.env;
    let from = env.from_her_id;
    // Sign, then encrypt (DESIGN §1): an EnvelopedData is opened first, whatever the header says.
    let encrypted = env.packaging == Packaging::Encrypted
        || (env.packaging == Packaging::Signed && cms::is_enveloped(a.body));
    let mut seal = Seal {
        signed: None,
        encrypt: ctx.policy.require_encryption || encrypted,
        recipients: Arc::clone(&ctx.encryption.recipients),
    };
    if encrypted {
        let opened = ctx.encryption.hub.open(a.body);
        clock.lap(Stage::Verify);
        match opened {
            Ok(o) => seal.signed = Some(Arc::new(o.signed)),
            Err(OpenError::NotForUs) => return Err(Plan::refuse(
                Some(from),
                condition::WRONG_RECIPIENT,
                "encrypted to a certificate that is not one of the hub's encryption certificates",
                env,
            )),
            Err(OpenError::Undecryptable | OpenError::NotEnveloped) => {
                return Err(Plan::refuse(
                    Some(from),
                    condition::UNDECRYPTABLE,
                    "the encrypted content cannot be decrypted",
                    env,
                ))
            }
        }
    } else if ctx.policy.require_encryption {
        return Err(Plan::refuse(
            Some(from),
            condition::UNENCRYPTED,
            "unencrypted message, but the gateway requires messages encrypted to its certificate (policy.require_encryption)",
            env,
        ));
    }
    let opened = seal.signed.clone();
    let packaging = if encrypted {
        Packaging::Signed
    } else {
        env.packaging
    };
    match packaging {
        Packaging::Signed | Packaging::Encrypted => {
            let body: &[u8] = opened.as_deref().map_or(a.body, |s| s.as_slice());
            let Some(trust) = ctx.trust.as_deref() else {
                return Err(Plan::Retry {
                    reason: "a signed message arrived but no trust store is loaded".into(),
                });
            };
            let verified = cms::verify(body, trust, now);
            clock.lap(Stage::Verify);
            match verified {
                Ok(v) => {
                    let allowed = ctx
                        .fingerprints
                        .get(&from)
                        .is_some_and(|f| f.contains(&v.signer.fingerprint_sha256));
                    if !allowed {
                        return Err(Plan::refuse(
                            Some(from),
                            condition::SPOOFING,
                            format!(
                                "signed by {} (certificate {}), which is not a certificate registered for HER-id {from}",
                                v.signer.subject,
                                &v.signer.fingerprint_sha256[..16.min(v.signer.fingerprint_sha256.len())]
                            ),
                            env,
                        ));
                    }
                    let content_sha256 = v
                        .content_sha256
                        .unwrap_or_else(|| Sha256::digest(&v.content).into());
                    Ok(Verified {
                        env,
                        content: Cow::Owned(v.content),
                        signature_fault: None,
                        content_sha256,
                        seal,
                    })
                }
                Err(e) if e.is_retryable() => Err(Plan::Retry {
                    reason: e.to_string(),
                }),
                Err(e) => {
                    let code = e.apprec_code().unwrap_or(ErrorCode::S99);
                    // S01–S03 are answered with an AppRec (SKAL, Systemtest #29–31) when the content
                    // can still be read to address it; an unreadable envelope cannot be answered.
                    match cms::unverified_content(body) {
                        Some(c) if code != ErrorCode::T01 => {
                            let content_sha256 = Sha256::digest(&c).into();
                            Ok(Verified {
                                env,
                                content: Cow::Owned(c),
                                signature_fault: Some(AppRecError {
                                    code,
                                    ot: Some(e.to_string()),
                                }),
                                content_sha256,
                                seal,
                            })
                        }
                        _ => Err(Plan::refuse(
                            Some(from),
                            condition::INVALID_ENVELOPE,
                            e.to_string(),
                            env,
                        )),
                    }
                }
            }
        }
        Packaging::Plain => {
            if ctx.policy.require_signature {
                return Err(Plan::refuse(
                    Some(from),
                    condition::UNSIGNED,
                    "unsigned message (application/xml) but the gateway requires signed envelopes (policy.require_signature)",
                    env,
                ));
            }
            Ok(Verified {
                env,
                content: Cow::Borrowed(a.body),
                signature_fault: None,
                content_sha256: Sha256::digest(a.body).into(),
                seal,
            })
        }
    }
}

/// A fagmelding whose MsgHead has been read (or stood in for), with every message fault found so
/// far (each becomes an `Error` of the negative AppRec).
pub struct Validated<'a> {
    pub env: &'a Envelope,
    pub head: MsgHead,
    pub msg_id: MsgId,
    pub faults: Vec<AppRecError>,
    pub content_sha256: [u8; 32],
    pub seal: Seal,
}

/// Stage 3, validate: one reading pass — the validator's events also build the tree the MsgHead
/// (or AppRec) is extracted from. A receiver's AppRec ends here (its plan is the result); a
/// fagmelding goes on to routing with its faults (T01/T02/T10, E10, S0x).
pub fn validate<'a>(
    v: &Verified<'a>,
    ctx: &Context,
    clock: &mut StageClock<'_>,
) -> Result<Validated<'a>, Plan> {
    let env = v.env;
    let from = env.from_her_id;
    clock.lap_unrecorded();
    let doc = XmlDocument::new(&v.content, &ctx.policy.xml);
    let mut tree = TreeBuilder::default();
    let verdict = match &doc {
        Ok(d) => ctx
            .schemas
            .validate_text(d.text(), &ctx.policy.xml, &mut |ev| tree.event(ev)),
        Err(e) => Verdict::NotWellFormed(e.clone()),
    };
    // The tree is complete whenever the verdict is not NotWellFormed.
    let tree = match (&doc, &verdict) {
        (Ok(d), Verdict::Valid { .. } | Verdict::Invalid { .. } | Verdict::Unsupported { .. }) => {
            tree.finish(d.text())
        }
        _ => None,
    };
    clock.lap(Stage::Validate);
    if let Verdict::Valid {
        set: SchemaSet::AppRec10 | SchemaSet::AppRec11,
    } = verdict
    {
        return Err(match &v.signature_fault {
            Some(fault) => Plan::refuse(
                Some(from),
                condition::INVALID_SIGNATURE,
                format!(
                    "AppRec: {}",
                    fault.ot.as_deref().unwrap_or("signature fault")
                ),
                env,
            ),
            None => assess_apprec(tree.as_ref(), env, v.seal.clone()),
        });
    }
    if looks_like_apprec(&v.content) {
        // Never answer an AppRec with an AppRec (NOTES §5): tell the sender through its error queue.
        return Err(Plan::refuse(
            Some(from),
            condition::INVALID_APPREC,
            format!("AppRec rejected: {}", verdict.detail()),
            env,
        ));
    }
    let mut faults: Vec<AppRecError> = v.signature_fault.iter().cloned().collect();
    // NOTES §7: not well-formed T01, not valid against the declared schema T02, unsupported T10.
    if let Some(code) = verdict.apprec_code() {
        faults.push(AppRecError {
            code,
            ot: Some(verdict.detail()),
        });
    }

    let parsed = tree
        .as_ref()
        .and_then(|t| MsgHead::from_tree(t.root()).ok());
    clock.lap(Stage::Parse);
    let head = match parsed {
        Some(head) => head,
        None => {
            // Unreadable as a MsgHead: the sender is known (headers checked against user and
            // signer above), so answer with what the headers and the register say (T01 is KAN
            // "only possible if the sender can be found", NOTES §7).
            if faults.is_empty() {
                faults.push(AppRecError {
                    code: ErrorCode::T02,
                    ot: Some("the MsgHead cannot be read".into()),
                });
            }
            stand_in_head(env, &ctx.register).ok_or_else(|| {
                Plan::refuse(
                    Some(from),
                    condition::UNKNOWN_RECEIVER,
                    format!(
                        "unreadable message ({}) for toHerId {}, which is not ours",
                        verdict.detail(),
                        env.to_her_id
                    ),
                    env,
                )
            })?
        }
    };
    // The MsgHead's sender must be the party the envelope claims (and the signer belongs to).
    let claimed = head.sender_address().communication_party();
    if claimed != Some(from) {
        return Err(Plan::refuse(
            Some(from),
            condition::SPOOFING,
            format!(
                "MsgHead sender is HER-id {} but the envelope says fromHerId {from}",
                claimed
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "(none)".into())
            ),
            env,
        ));
    }
    // HIS 80601: MsgId shall be a UUID — E10 is SKAL (NOTES §7, Systemtest #28).
    if !head.msg_id.is_uuid() && !head.msg_id.as_str().is_empty() {
        faults.push(AppRecError {
            code: ErrorCode::E10,
            ot: Some(format!("MsgId {:?} is not a UUID", head.msg_id.as_str())),
        });
    }
    let msg_id = if head.msg_id.as_str().is_empty() {
        env.message_id.clone()
    } else {
        head.msg_id.clone()
    };
    Ok(Validated {
        env,
        head,
        msg_id,
        faults,
        content_sha256: v.content_sha256,
        seal: v.seal.clone(),
    })
}

/// Stage 4, route: one [`RecipientPlan`] per addressed recipient (HIS 1153: level 2 if present,
/// else level 1, plus every copy recipient); any message fault turns a delivery into a negative
/// AppRec for that recipient.
pub fn route(v: Validated<'_>, ctx: &Context, clock: &mut StageClock<'_>) -> Plan {
    let Validated {
        env,
        head,
        msg_id,
        faults,
        content_sha256,
        seal,
    } = v;
    let recipients = head.recipients();
    let addressed: Vec<AddressedRecipient> = recipients.iter().map(|(a, _)| *a).collect();
    let plan = route::route(
        &addressed,
        Some(env.to_her_id),
        &head.msg_type.v,
        &ctx.register,
        &ctx.policy.route,
    );
    let mut out = Vec::with_capacity(plan.decisions.len());
    for ((addr, party), decision) in recipients.iter().zip(plan.decisions) {
        let her = addr.address.communication_party();
        out.push(match decision {
            Decision::NotForUs { role, reason } => RecipientPlan::NotForUs { role, reason },
            Decision::Duplicate { role, her } => RecipientPlan::Duplicate { her, role },
            Decision::Deliver { her: to, role } if faults.is_empty() => {
                RecipientPlan::Deliver { her: to, role }
            }
            Decision::Deliver { her: to, role } => RecipientPlan::Reject {
                her: Some(to),
                role,
                party: (*party).clone(),
                errors: faults.clone(),
            },
            Decision::Reject { role, code, reason } => {
                let mut errors = faults.clone();
                if !errors.iter().any(|e| e.code == code) {
                    errors.push(AppRecError {
                        code,
                        ot: Some(reason),
                    });
                }
                RecipientPlan::Reject {
                    her: known(her, &ctx.register),
                    role,
                    party: (*party).clone(),
                    errors,
                }
            }
        });
    }
    let apprec_version = AppRecVersion::for_payload(&head.payload);
    clock.lap(Stage::Route);
    Plan::Message(Box::new(MessagePlan {
        sender: env.from_her_id,
        msg_id,
        msg_type: head.msg_type.v.clone(),
        gen_date: gen_date_of(&head),
        head,
        apprec_version,
        recipients: out,
        content_sha256,
        envelope: env.clone(),
        seal,
    }))
}

/// GenDate as a point in time. xs:dateTime may omit the offset; Norwegian EHRs then write local
/// time, taken here as CET (UTC+01:00). In summer time that starts the 96-hour clock one hour late;
/// the store never starts it later than the time of receipt, which bounds the error.
fn gen_date_of(head: &MsgHead) -> Option<Timestamp> {
    head.gen_date_parsed.or_else(|| {
        head.gen_date_unzoned
            .map(|d| d.assume_offset(time::macros::offset!(+1)))
    })
}

/// Laps of the thread CPU clock between stages; does nothing without [`StageTimes`].
pub struct StageClock<'a> {
    stages: Option<&'a StageTimes>,
    last: u64,
}

impl<'a> StageClock<'a> {
    pub fn start(stages: Option<&'a StageTimes>) -> Self {
        let last = if stages.is_some() {
            thread_cpu_nanos()
        } else {
            0
        };
        StageClock { stages, last }
    }

    /// Charges the time since the previous lap to `stage`.
    fn lap(&mut self, stage: Stage) {
        if let Some(s) = self.stages {
            let now = thread_cpu_nanos();
            s.add(stage, now.saturating_sub(self.last));
            self.last = now;
        }
    }

    /// Starts the next lap here without charging the time since the previous one to any stage.
    fn lap_unrecorded(&mut self) {
        if self.stages.is_some() {
            self.last = thread_cpu_nanos();
        }
    }
}

fn known(her: Option<HerId>, register: &Register) -> Option<HerId> {
    her.filter(|h| register.contains(*h))
}

/// Cheap sniff for an AppRec root, used only to keep AppRec faults away from AppRec answers.
fn looks_like_apprec(content: &[u8]) -> bool {
    let head = &content[..content.len().min(4096)];
    // Byte search: both needles are ASCII, so this matches exactly what a search in the lossily
    // decoded text would, without copying 4 KB of every message into a String.
    let has = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
    has(b"xmlstds/apprec/") && has(b"AppRec")
}

fn assess_apprec(tree: Option<&Tree<'_>>, h: &Envelope, seal: Seal) -> Plan {
    // A valid AppRec always has its tree; `None` would be a bug, answered like an unreadable one.
    let rec = match tree.map(|t| AppRec::from_tree(t.root())) {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            return Plan::refuse(
                Some(h.from_her_id),
                condition::INVALID_APPREC,
                e.to_string(),
                h,
            )
        }
        None => {
            return Plan::refuse(
                Some(h.from_her_id),
                condition::INVALID_APPREC,
                "the AppRec could not be read",
                h,
            )
        }
    };
    let answering = rec.sender.address().communication_party();
    if answering != Some(h.from_her_id) {
        return Plan::refuse(
            Some(h.from_her_id),
            condition::SPOOFING,
            format!(
                "AppRec sender is HER-id {} but the envelope says fromHerId {}",
                answering
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "(none)".into()),
                h.from_her_id
            ),
            h,
        );
    }
    let Some(original_sender) = rec.receiver.address().communication_party() else {
        return Plan::refuse(
            Some(h.from_her_id),
            condition::INVALID_APPREC,
            "the AppRec's Receiver carries no HER-id",
            h,
        );
    };
    let Some(status) = rec.status() else {
        return Plan::refuse(
            Some(h.from_her_id),
            condition::INVALID_APPREC,
            format!(
                "AppRec status {:?} is not in code list 8258",
                rec.status_code.v
            ),
            h,
        );
    };
    Plan::AppRec(Box::new(AppRecPlan {
        from: h.from_her_id,
        original_sender,
        original_msg_id: rec.original.id.clone(),
        apprec_id: rec.id.clone(),
        status,
        codes: rec.errors.iter().filter_map(|e| e.code()).collect(),
        envelope: h.clone(),
        seal,
    }))
}

/// A MsgHead stand-in for a message that cannot be read, from the envelope headers and the
/// register, so that an AppRec can still be addressed; `None` when `toHerId` is not ours.
fn stand_in_head(h: &Envelope, register: &Register) -> Option<MsgHead> {
    register.get(h.to_her_id)?;
    let party = |her: HerId| -> Party {
        let p = register.get(her);
        let name = p.map(|p| p.name.clone()).unwrap_or_default();
        let org_of = p.and_then(|p| p.organisation_her_id);
        match org_of.and_then(|o| register.get(o)) {
            Some(org) => Party::Organisation(Organisation {
                name: org.name.clone(),
                kind: None,
                idents: vec![her_ident(org.her_id)],
                address: None,
                telecom: Vec::new(),
                organisation: Some(Box::new(Organisation {
                    name,
                    kind: None,
                    idents: vec![her_ident(her)],
                    address: None,
                    telecom: Vec::new(),
                    organisation: None,
                    professional: None,
                })),
                professional: None,
            }),
            None => Party::Organisation(Organisation {
                name,
                kind: None,
                idents: vec![her_ident(her)],
                address: None,
                telecom: Vec::new(),
                organisation: None,
                professional: None,
            }),
        }
    };
    let gen = h.application_timestamp;
    Some(MsgHead {
        msg_type: Code {
            v: h.msg_type.clone(),
            s: Some(crate::codes::OID_8279.into()),
            dn: None,
        },
        mig_version: "v1.2 2006-05-24".into(),
        gen_date: crate::ids::rfc3339(gen),
        gen_date_parsed: Some(gen),
        gen_date_unzoned: None,
        msg_id: h.message_id.clone(),
        ack: None,
        conversation_ref: None,
        sender: party(h.from_her_id),
        receiver: party(h.to_her_id),
        other_receivers: Vec::new(),
        patient: PatientSummary::default(),
        payload: PayloadStandard::NoContent,
        documents: 0,
    })
}

fn her_ident(her: HerId) -> Ident {
    Ident {
        id: her.to_string(),
        type_id: Code {
            v: "HER".into(),
            s: Some("2.16.578.1.12.4.1.1.9051".into()),
            dn: Some("HER-id".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn schemas() -> &'static Schemas {
        static S: OnceLock<Schemas> = OnceLock::new();
        S.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/standards/xsd");
            Schemas::load(&dir).unwrap_or_else(|e| panic!("schemas: {e}"))
        })
    }

    fn code_of(fixture: &str) -> Option<ErrorCode> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(fixture);
        let doc = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        schemas()
            .validate(&doc, &XmlLimits::default())
            .apprec_code()
    }

    /// The MsgHead the gateway extracts from the validator's pass is the one `MsgHead::parse`
    /// reads on its own, also where the validator's reader keeps line ends as written (CRLF).
    #[test]
    fn the_validation_pass_yields_the_same_msghead_as_parse() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/messages/delivered");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let lf = std::fs::read(entry.path()).unwrap();
            let crlf = String::from_utf8(lf.clone())
                .unwrap()
                .replace('\n', "\r\n")
                .replace("Testlege", "Test\r\nlege")
                .into_bytes();
            for doc in [lf, crlf] {
                let limits = XmlLimits::default();
                let d = XmlDocument::new(&doc, &limits).unwrap();
                let mut builder = TreeBuilder::default();
                let verdict =
                    schemas().validate_text(d.text(), &limits, &mut |ev| builder.event(ev));
                assert!(
                    verdict.is_valid(),
                    "{}: {}",
                    entry.path().display(),
                    verdict.detail()
                );
                let tree = builder.finish(d.text()).unwrap();
                assert_eq!(
                    MsgHead::from_tree(tree.root()),
                    MsgHead::parse(&doc),
                    "{}",
                    entry.path().display()
                );
                checked += 1;
            }
        }
        assert!(checked >= 4);
    }

    #[test]
    fn a_payload_namespace_without_a_schema_is_t10_not_t02() {
        // Systemtest #33 "Fagmeldingen benytter ukjent XML-skjema" → T10.
        assert_eq!(
            code_of("hostile/t10-unknown-payload-namespace.bin"),
            Some(ErrorCode::T10)
        );
    }

    #[test]
    fn schema_faults_in_known_standards_stay_t02_t01_and_valid_is_none() {
        assert_eq!(
            code_of("hostile/t02-payload-unknown-element.bin"),
            Some(ErrorCode::T02)
        );
        assert_eq!(
            code_of("hostile/t02-msginfo-twice.bin"),
            Some(ErrorCode::T02)
        );
        assert_eq!(code_of("hostile/xml-xxe-file.bin"), Some(ErrorCode::T01));
        assert_eq!(
            code_of("hostile/t10-unknown-root.bin"),
            Some(ErrorCode::T10)
        );
        assert_eq!(
            code_of("messages/delivered/foresporsel-gp-to-nursing-home.xml"),
            None
        );
    }
}
