//! The soak's traffic: messages signed while the gateway runs, published to the intake, and the
//! AppRecs the answering recipient sends back.
//!
//! Signing RSA for a million messages is most of a core for many minutes, so it is not done
//! beforehand: [`sign`] runs on its own threads (one per core, each owning a share of the senders,
//! so each sender's messages leave in order) and feeds a bounded channel that [`publish`] drains
//! with pipelined publisher confirms; the gateway works meanwhile. The senders sign with the soak
//! CA's RSA-2048 certificates (`super::pki`), whose CRL the soak serves.
//!
//! Message `i` goes from sender `i mod senders` to the nursing home 81001, except every fourth
//! round of senders, which goes to the home care 81002. The nursing home answers every
//! `answer_every`-th message it gets with a positive AppRec ([`answer`]); home care never answers:
//! its messages, and the nursing home's unanswered ones, go overdue.
//!
//! Input: the signers, the gateway's clock (GenDate and signing time are the gateway's time, so
//! the AppRec clock of HIS 80415:2012 §3.2 runs in it). Output: publishes; every message is in the
//! [`Ledger`] before its publish. Failure: [`SoakError`] — a signing failure, a publish the broker
//! refused or did not confirm.

use std::sync::{Arc, Mutex};

use helsemelding::address::RecipientRole;
use helsemelding::amqp::headers::{ContentType, MessageHeaders};
use helsemelding::amqp::topology::Topology;
use helsemelding::amqp::{PublishError, Publisher, Route};
use helsemelding::apprec::{build_apprec, AppRecInput, AppRecVersion, PrimaryRoleV1_0};
use helsemelding::cms::Signer;
use helsemelding::codes::AppRecStatus;
use helsemelding::gateway::fast_clock::FastClock;
use helsemelding::ids::{HerId, MsgId, Timestamp};
use helsemelding::msghead::MsgHead;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ledger::{key, Expected, Ledger};
use super::SoakError;
use crate::bench::messages::{self, Kind};

/// The nursing home: gets three rounds of four and answers some.
pub const ANSWERING: HerId = HerId(81001);
/// Home care: gets every fourth round and never answers.
pub const SILENT: HerId = HerId(81002);

/// One signed message on its way to the intake.
pub struct Outgoing {
    pub id: u128,
    pub expected: Expected,
    pub headers: MessageHeaders,
    pub body: Vec<u8>,
}

/// What the signing threads need.
pub struct Plan {
    pub messages: usize,
    /// (kind, HER-id) of every sender.
    pub senders: Vec<(Kind, HerId)>,
    /// The signer of each kind's senders.
    pub signers: Vec<(Kind, Arc<Signer>)>,
    pub size: usize,
    pub answer_every: usize,
    pub clock: FastClock,
}

impl Plan {
    fn recipient(&self, i: usize) -> HerId {
        if (i / self.senders.len()) % 4 == 3 {
            SILENT
        } else {
            ANSWERING
        }
    }
}

/// The gateway's time now.
pub fn gateway_now(clock: &FastClock) -> Timestamp {
    clock.at(time::OffsetDateTime::now_utc())
}

/// Signs the plan's messages on `threads` threads into `out` (bounded: signing waits for the
/// publisher). Returns when every message is signed or `out` is closed.
pub fn sign(plan: Arc<Plan>, threads: usize, out: mpsc::Sender<Result<Outgoing, SoakError>>) {
    let threads = threads.clamp(1, plan.senders.len().max(1));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (plan, out) = (plan.clone(), out.clone());
            std::thread::Builder::new()
                .name(format!("soak-sign-{t}"))
                .spawn(move || sign_share(&plan, t, threads, &out))
        })
        .collect();
    for h in handles.into_iter().flatten() {
        let _ = h.join();
    }
}

fn sign_share(
    plan: &Plan,
    share: usize,
    shares: usize,
    out: &mpsc::Sender<Result<Outgoing, SoakError>>,
) {
    let n = plan.senders.len();
    let mut answered_so_far = 0usize;
    for i in 0..plan.messages {
        let s = i % n;
        let recipient = plan.recipient(i);
        if recipient == ANSWERING {
            answered_so_far += 1;
        }
        if s % shares != share {
            continue;
        }
        let (kind, sender) = plan.senders[s];
        let msg = (|| {
            let signer = plan
                .signers
                .iter()
                .find_map(|(k, sg)| (*k == kind).then_some(sg))
                .ok_or_else(|| SoakError::Setup(format!("no signer for {kind:?}")))?;
            let msg_id = MsgId::random();
            let id = key(msg_id.as_str())
                .ok_or_else(|| SoakError::Setup(format!("MsgId {msg_id} is not a UUID")))?;
            let now = gateway_now(&plan.clock);
            let xml = messages::xml_to(kind, sender, recipient, &msg_id, plan.size, now);
            let body = signer
                .sign(xml.as_bytes(), now)
                .map_err(|e| SoakError::Setup(format!("signing: {e}")))?;
            Ok(Outgoing {
                id,
                expected: Expected {
                    sender,
                    recipient,
                    seq: (i / n) as u64,
                    answer: recipient == ANSWERING
                        && answered_so_far.is_multiple_of(plan.answer_every.max(1)),
                },
                headers: MessageHeaders::new(
                    (sender, recipient),
                    kind.msg_type(),
                    msg_id,
                    now,
                    ContentType::SignedCms,
                ),
                body,
            })
        })();
        if out.blocking_send(msg).is_err() {
            return;
        }
    }
}

/// Publishes `m` to the intake as the broker user `guest` (a future to spawn).
fn publish_one(
    publisher: &Publisher,
    headers: &MessageHeaders,
    body: Vec<u8>,
) -> Result<impl std::future::Future<Output = Result<(), PublishError>> + Send + 'static, SoakError>
{
    let props = headers
        .to_properties()
        .map_err(|e| SoakError::Broker(format!("headers: {e}")))?
        .with_user_id("guest".into());
    let (p, t) = (publisher.clone(), Topology::default());
    Ok(async move {
        p.publish_with_properties(Route::intake(&t), props, &body)
            .await
    })
}

/// Publishes what arrives on `signed` in that order (each into the ledger first), at most
/// `window` unconfirmed and at most `ahead` published and not yet arrived: a steady stream at the
/// gateway's pace, not a backlog in the intake (which would hold messages past their AppRec
/// timeout and fill the broker's memory).
pub async fn publish(
    publisher: Publisher,
    mut signed: mpsc::Receiver<Result<Outgoing, SoakError>>,
    ledger: Arc<Mutex<Ledger>>,
    window: usize,
    ahead: usize,
) -> Result<(), SoakError> {
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    while let Some(m) = signed.recv().await {
        let m = m?;
        while ledger.lock().unwrap_or_else(|p| p.into_inner()).in_flight() >= ahead {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        while set.len() >= window {
            if let Some(r) = set.join_next().await {
                r.map_err(|e| SoakError::Broker(format!("publish task: {e}")))??;
            }
        }
        ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expect(m.id, m.expected);
        // The first poll puts the frames on the channel (amqp::publisher, module comment): done
        // here, in signing order, so each sender's messages reach the intake in its order; a
        // spawned task's first poll could come after a later one's. The confirm is awaited apart.
        let mut publish = Box::pin(publish_one(&publisher, &m.headers, m.body)?);
        match futures_lite::future::poll_once(&mut publish).await {
            Some(done) => set.spawn(std::future::ready(done)),
            None => set.spawn(publish),
        };
        while let Some(r) = set.try_join_next() {
            r.map_err(|e| SoakError::Broker(format!("publish task: {e}")))??;
        }
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| SoakError::Broker(format!("publish task: {e}")))??;
    }
    Ok(())
}

/// A message the nursing home is to answer.
#[derive(Debug, Clone)]
pub struct ToAnswer {
    pub msg_id: String,
    pub sender: HerId,
    /// The delivered envelope (its content is the original MsgHead).
    pub body: bytes::Bytes,
}

/// The nursing home's EHR: for each message handed to it, a positive AppRec (HIS 80415:2012, v1.0
/// for Dialogmelding 1.0 and PLO), signed with its certificate and published to the intake.
/// Runs until `todo` closes.
pub async fn answer(
    publisher: Publisher,
    signer: Arc<Signer>,
    clock: FastClock,
    mut todo: mpsc::UnboundedReceiver<ToAnswer>,
    ledger: Arc<Mutex<Ledger>>,
    problems: Arc<Mutex<Vec<String>>>,
) {
    let note = |p: String| problems.lock().unwrap_or_else(|e| e.into_inner()).push(p);
    let settled = |r: Result<Result<(), PublishError>, tokio::task::JoinError>| match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("AppRec publish: {e}")),
        Err(e) => Some(format!("AppRec publish task: {e}")),
    };
    let mut set: JoinSet<Result<(), PublishError>> = JoinSet::new();
    while let Some(a) = todo.recv().await {
        let signer = signer.clone();
        let built = tokio::task::spawn_blocking(move || apprec_for(&a, &signer, &clock)).await;
        let (apprec_id, original, sender, headers, body) = match built {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                note(e);
                continue;
            }
            Err(e) => {
                note(format!("AppRec task: {e}"));
                continue;
            }
        };
        ledger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .answered(apprec_id, original, sender);
        match publish_one(&publisher, &headers, body) {
            Ok(f) => {
                set.spawn(f);
            }
            Err(e) => note(e.to_string()),
        }
        while let Some(r) = set.try_join_next() {
            if let Some(p) = settled(r) {
                note(p);
            }
        }
    }
    while let Some(r) = set.join_next().await {
        if let Some(p) = settled(r) {
            note(p);
        }
    }
}

type Built = (u128, u128, HerId, MessageHeaders, Vec<u8>);

fn apprec_for(a: &ToAnswer, signer: &Signer, clock: &FastClock) -> Result<Built, String> {
    let content = helsemelding::cms::unverified_content(&a.body)
        .ok_or_else(|| format!("{}: the delivered envelope carries no content", a.msg_id))?;
    let original = MsgHead::parse(&content).map_err(|e| format!("{}: {e}", a.msg_id))?;
    let party = original
        .recipients()
        .into_iter()
        .next()
        .map(|(_, p)| p)
        .ok_or_else(|| format!("{}: no recipient", a.msg_id))?;
    let now = gateway_now(clock);
    let id = MsgId::random();
    let xml = build_apprec(&AppRecInput {
        version: AppRecVersion::V1_0,
        original: &original,
        recipient: party,
        role: RecipientRole::Primary,
        status: AppRecStatus::Ok,
        errors: vec![],
        id: id.clone(),
        now,
        software_name: "helsemelding-lab soak".into(),
        software_version: env!("CARGO_PKG_VERSION").into(),
        v1_0_primary_role: PrimaryRoleV1_0::Spr,
    });
    let body = signer
        .sign(xml.as_bytes(), now)
        .map_err(|e| format!("signing an AppRec: {e}"))?;
    let (apprec, orig) = (
        key(id.as_str()).ok_or("AppRec id is not a UUID")?,
        key(&a.msg_id).ok_or("MsgId is not a UUID")?,
    );
    let headers = MessageHeaders {
        original_message_id: Some(MsgId::new(a.msg_id.clone())),
        ..MessageHeaders::new(
            (ANSWERING, a.sender),
            "APPREC",
            id,
            now,
            ContentType::SignedCms,
        )
    };
    Ok((apprec, orig, a.sender, headers, body))
}
