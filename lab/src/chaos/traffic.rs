//! The traffic of a chaos run: a batch of signed messages as EHR systems would send them, each
//! with what must come out of the gateway for it, and a sender that publishes them to the intake
//! with pipelined publisher confirms, across broker faults.
//!
//! Input: the fixtures (`fixtures/messages/`, named by outcome) and the synthetic party keys
//! (`fixtures/gateway-pki/parties/<her>-sign.{key,pem}`). Every message gets a MsgId of its own
//! (a fresh UUID; a non-UUID for the E10 shape). Output: [`Outgoing`] messages with their
//! [`Expect`]ations; [`send`] marks each one confirmed once the broker has taken responsibility for
//! it. Failure: [`TrafficError`] for unreadable fixtures or keys; broker faults are retried (a
//! publish whose confirm was lost is published again, byte for byte: a duplicate the gateway must
//! recognise by MsgId).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use tokio::task::JoinSet;

use helsemelding::amqp::connection::{connect, AmqpSettings};
use helsemelding::amqp::publisher::{Publisher, Route};
use helsemelding::amqp::topology::{async_queue, Topology};
use helsemelding::cms::Signer;
use helsemelding::gateway::cli::{headers_for, Overrides};
use helsemelding::ids::{HerId, MsgId, Timestamp};

/// What must come out of the gateway for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// The original signed envelope on this recipient queue.
    Deliver { queue: String },
    /// Exactly one (distinct) gateway-issued AppRec on the sender's queue.
    AppRec { queue: String },
}

/// One message of the batch, signed and ready to publish.
#[derive(Clone)]
pub struct Outgoing {
    pub msg_id: MsgId,
    pub sender: HerId,
    /// The fixture it was made from.
    pub shape: &'static str,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
    pub expect: Vec<Expect>,
}

/// A message shape of the mix: a fixture, who signs it, what the gateway must do with it.
struct Shape {
    file: &'static str,
    signer: HerId,
    deliver_to: &'static [u32],
    /// A negative AppRec to the sender (E21, E10).
    apprec: bool,
    /// The MsgId must stay a non-UUID (the E10 case).
    non_uuid: bool,
}

const GP: u32 = 82001;
/// The mix, cycled: five of eight delivered (one with a copy recipient), three rejected.
const MIX: [Shape; 8] = [
    Shape {
        file: "delivered/foresporsel-gp-to-nursing-home.xml",
        signer: HerId(GP),
        deliver_to: &[81001],
        apprec: false,
        non_uuid: false,
    },
    Shape {
        file: "delivered/foresporsel-with-copy-to-home-care.xml",
        signer: HerId(GP),
        deliver_to: &[81001, 81002],
        apprec: false,
        non_uuid: false,
    },
    Shape {
        file: "rejected/E21-unknown-level2-service.xml",
        signer: HerId(GP),
        deliver_to: &[],
        apprec: true,
        non_uuid: false,
    },
    Shape {
        file: "delivered/notat-hospital-to-nursing-home.xml",
        signer: HerId(80001),
        deliver_to: &[81001],
        apprec: false,
        non_uuid: false,
    },
    Shape {
        file: "delivered/notat-nursing-home-to-gp-person.xml",
        signer: HerId(81001),
        deliver_to: &[GP],
        apprec: false,
        non_uuid: false,
    },
    Shape {
        file: "rejected/E10-msgid-not-uuid.xml",
        signer: HerId(GP),
        deliver_to: &[],
        apprec: true,
        non_uuid: true,
    },
    Shape {
        file: "delivered/foresporsel-gp-to-nursing-home.xml",
        signer: HerId(GP),
        deliver_to: &[81001],
        apprec: false,
        non_uuid: false,
    },
    Shape {
        file: "rejected/E21-unknown-level2-service.xml",
        signer: HerId(GP),
        deliver_to: &[],
        apprec: true,
        non_uuid: false,
    },
];

/// Fixtures or keys that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("fixture {path}: {reason}")]
    Fixture { path: PathBuf, reason: String },
    #[error("signing identity {her}: {reason}")]
    Signer { her: HerId, reason: String },
}

/// `xml` with the content of its (first) `<MsgId>` replaced.
pub fn with_msg_id(xml: &str, msg_id: &str) -> Option<String> {
    let start = xml.find("<MsgId>")? + "<MsgId>".len();
    let end = xml[start..].find("</MsgId>")? + start;
    Some(format!("{}{}{}", &xml[..start], msg_id, &xml[end..]))
}

/// Signs `xml` as the party `signer` would and gives the wire properties an EHR would publish
/// it with (headers from the MsgHead, AMQP `user_id` = `user`).
pub fn envelope(
    xml: &[u8],
    signer: &Signer,
    user: &str,
    now: Timestamp,
) -> Result<(MsgId, BasicProperties, Vec<u8>), String> {
    let headers =
        headers_for("chaos", xml, &Overrides::default(), true, now).map_err(|e| e.to_string())?;
    let body = signer.sign(xml, now).map_err(|e| e.to_string())?;
    let props = headers
        .to_properties()
        .map_err(|e| e.to_string())?
        .with_user_id(user.into());
    Ok((headers.message_id, props, body))
}

/// `n` signed messages cycling through the mix; `tag` makes the non-UUID MsgIds unique per run.
/// CPU-bound (one RSA signature each): call it from a blocking task.
pub fn batch(
    base: &Path,
    n: usize,
    tag: &str,
    now: Timestamp,
) -> Result<Vec<Outgoing>, TrafficError> {
    let mut texts = Vec::new();
    for s in &MIX {
        let path = base.join("fixtures/messages").join(s.file);
        let text = std::fs::read_to_string(&path).map_err(|e| TrafficError::Fixture {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if !text.contains("<MsgId>") {
            return Err(TrafficError::Fixture {
                path,
                reason: "no <MsgId> to vary".into(),
            });
        }
        texts.push(text);
    }
    let mut signers: Vec<(HerId, Signer)> = Vec::new();
    for s in &MIX {
        if signers.iter().any(|(h, _)| *h == s.signer) {
            continue;
        }
        let stem = base
            .join("fixtures/gateway-pki/parties")
            .join(format!("{}-sign", s.signer));
        let signer =
            Signer::from_pem_files(&stem.with_extension("key"), &stem.with_extension("pem"))
                .map_err(|e| TrafficError::Signer {
                    her: s.signer,
                    reason: e.to_string(),
                })?;
        signers.push((s.signer, signer));
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let shape = &MIX[i % MIX.len()];
        let id = if shape.non_uuid {
            format!("CHAOS-{tag}-{i:06}")
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        let xml = with_msg_id(&texts[i % MIX.len()], &id).unwrap_or_default();
        let signer = &signers
            .iter()
            .find(|(h, _)| *h == shape.signer)
            .map(|(_, s)| s)
            .ok_or(TrafficError::Signer {
                her: shape.signer,
                reason: "not loaded".into(),
            })?;
        let (msg_id, properties, body) =
            envelope(xml.as_bytes(), signer, "guest", now).map_err(|reason| {
                TrafficError::Fixture {
                    path: base.join(shape.file),
                    reason,
                }
            })?;
        let mut expect: Vec<Expect> = shape
            .deliver_to
            .iter()
            .map(|h| Expect::Deliver {
                queue: async_queue(HerId(*h)),
            })
            .collect();
        if shape.apprec {
            expect.push(Expect::AppRec {
                queue: async_queue(shape.signer),
            });
        }
        out.push(Outgoing {
            msg_id,
            sender: shape.signer,
            shape: shape.file,
            properties,
            body,
            expect,
        });
    }
    Ok(out)
}

/// Which messages of a batch the broker has confirmed into the intake, and the order in which
/// they were published: the order the broker puts them in the intake, so the order the gateway
/// must keep per sender and recipient (DESIGN §3; checked by [`super::ledger::inversions`]).
#[derive(Clone)]
pub struct Confirmed {
    confirmed: Arc<Vec<AtomicBool>>,
    /// Every publish attempt (batch index), in the order its frames went onto the channel.
    published: Arc<Mutex<Vec<usize>>>,
}

impl Confirmed {
    pub fn new(n: usize) -> Confirmed {
        Confirmed {
            confirmed: Arc::new((0..n).map(|_| AtomicBool::new(false)).collect()),
            published: Arc::default(),
        }
    }
    pub fn is(&self, i: usize) -> bool {
        self.confirmed[i].load(Ordering::Acquire)
    }
    pub fn count(&self) -> usize {
        self.confirmed
            .iter()
            .filter(|b| b.load(Ordering::Acquire))
            .count()
    }
    /// Every publish attempt so far (batch indices in wire order; a retried message appears
    /// more than once).
    pub fn publish_order(&self) -> Vec<usize> {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    fn set(&self, i: usize) {
        self.confirmed[i].store(true, Ordering::Release);
    }
    /// Records that message `i` was handed to the channel now.
    pub fn published(&self, i: usize) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(i);
    }
    #[cfg(test)]
    pub(crate) fn set_for_test(&self, i: usize) {
        self.set(i);
    }
}

/// How the sender publishes.
#[derive(Debug, Clone)]
pub struct SendPlan {
    /// Most publishes awaiting their confirm at once (pipelined confirms).
    pub window: usize,
    /// Pause between two publishes (`ZERO`: as fast as confirms allow) — a stream, not a burst.
    pub pace: Duration,
    /// Give up after this long (the report then shows the unconfirmed ones as not sent).
    pub deadline: Duration,
}

impl Default for SendPlan {
    fn default() -> Self {
        SendPlan {
            window: 64,
            pace: Duration::ZERO,
            deadline: Duration::from_secs(300),
        }
    }
}

/// Publishes `msgs[range]` to the intake exchange as user `guest`, in order on one channel at a
/// time, recording each publish in `confirmed` and marking each confirmed one. Reconnects after
/// broker faults (only once every publish on the old channel is answered, so the wire order holds
/// across reconnects) and publishes unconfirmed messages again. Returns how many publishes were
/// retried.
pub async fn send(
    url: String,
    msgs: Arc<Vec<Outgoing>>,
    range: std::ops::Range<usize>,
    confirmed: Confirmed,
    plan: SendPlan,
) -> usize {
    let topology = Topology::default();
    let started = Instant::now();
    let mut pending: std::collections::VecDeque<usize> = range.collect();
    let mut retried = 0;
    let mut publisher: Option<(lapin::Connection, Publisher)> = None;
    let mut in_flight: JoinSet<(usize, bool)> = JoinSet::new();
    while (!pending.is_empty() || !in_flight.is_empty()) && started.elapsed() < plan.deadline {
        let broken = publisher.as_ref().is_none_or(|(_, p)| !p.is_open());
        if broken && in_flight.is_empty() {
            publisher = None;
            let mut settings = AmqpSettings::new(url.clone(), "chaos-sender");
            settings.heartbeat = Duration::from_secs(5);
            match connect(&settings).await {
                Ok(c) => match Publisher::open(&c).await {
                    Ok(p) => publisher = Some((c, p)),
                    Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                },
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
            continue;
        }
        let can_send = !broken && in_flight.len() < plan.window && !pending.is_empty();
        if can_send {
            if let (Some(i), Some((_, p))) = (pending.pop_front(), publisher.as_ref()) {
                let p = p.clone();
                let msgs = msgs.clone();
                let ex = topology.exchange.clone();
                let rk = topology.inbound.clone();
                let mut publish = Box::pin(async move {
                    let m = &msgs[i];
                    let r = p
                        .publish_with_properties(
                            Route::Exchange {
                                exchange: &ex,
                                routing_key: &rk,
                            },
                            m.properties.clone(),
                            &m.body,
                        )
                        .await;
                    (i, r.is_ok())
                });
                // The first poll puts the frames on the channel (amqp::publisher, module comment):
                // done here, in batch order, so the recorded order is the wire order — a spawned
                // task's first poll could come after a later one's. The confirm is awaited apart.
                let first = futures_lite::future::poll_once(&mut publish).await;
                confirmed.published(i);
                match first {
                    Some(done) => in_flight.spawn(std::future::ready(done)),
                    None => in_flight.spawn(publish),
                };
                if !plan.pace.is_zero() {
                    tokio::time::sleep(plan.pace).await;
                }
                continue;
            }
        }
        match in_flight.join_next().await {
            Some(Ok((i, true))) => confirmed.set(i),
            Some(Ok((i, false))) => {
                // Not confirmed (nacked, returned, or the connection went): an EHR sends it again.
                retried += 1;
                pending.push_back(i);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(Err(_)) | None => {}
        }
    }
    in_flight.abort_all();
    if let Some((c, _)) = publisher {
        let _ = c.close(200, "chaos sender done".into()).await;
    }
    retried
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_varies_msg_ids_and_says_what_must_come_out() {
        let base = crate::repo_root();
        let b = batch(&base, 16, "t", time::OffsetDateTime::now_utc()).unwrap();
        let ids: std::collections::HashSet<_> = b.iter().map(|m| m.msg_id.clone()).collect();
        assert_eq!(ids.len(), 16, "every message has a MsgId of its own");
        let e10: Vec<_> = b.iter().filter(|m| m.shape.contains("E10")).collect();
        assert_eq!(e10.len(), 2);
        assert!(e10.iter().all(|m| !m.msg_id.is_uuid()
            && m.expect
                == vec![Expect::AppRec {
                    queue: "82001_async".into()
                }]));
        let copy = b.iter().find(|m| m.shape.contains("copy")).unwrap();
        assert_eq!(copy.expect.len(), 2);
        assert!(b
            .iter()
            .filter(|m| !m.shape.contains("E10"))
            .all(|m| m.msg_id.is_uuid()));
    }

    #[test]
    fn missing_fixtures_are_named() {
        let err = batch(
            Path::new("/nonexistent"),
            1,
            "t",
            time::OffsetDateTime::now_utc(),
        )
        .err()
        .unwrap();
        assert!(
            err.to_string().contains("/nonexistent/fixtures/messages"),
            "{err}"
        );
    }
}
