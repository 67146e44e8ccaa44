//! Shared by `tests/store_crash.rs` and `benches/store_commit.rs` (which includes this file by
//! path, so it uses nothing else of the support tree): the changes the pipeline
//! commits for one good message (a primary and a copy recipient, both routed and delivered).

use helsemelding::address::RecipientRole;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::store::{Change, Event, MessageRecord, Transition};
use time::macros::datetime;

/// The sender of every generated message.
pub const SENDER: HerId = HerId(80300);

/// A distinct UUID-shaped MsgId per number.
pub fn msg(n: u32) -> MsgId {
    MsgId(format!("00000000-0000-4000-8000-{n:012}"))
}

/// Create + Routed + Delivered for both recipients of message `n`.
pub fn delivered_batch(n: u32) -> Vec<Change> {
    let at = datetime!(2026-01-05 10:00 UTC);
    let rec = MessageRecord::new(
        SENDER,
        msg(n),
        "DIALOG_FORESPORSEL",
        format!("synthetic {n}").as_bytes(),
        at,
        Some(at),
        [
            (Some(HerId(80101)), RecipientRole::Primary),
            (Some(HerId(80201)), RecipientRole::Copy),
        ],
    );
    let mut changes = vec![Change::Create(rec)];
    for recipient in 0..2 {
        for event in [Event::Routed, Event::Delivered] {
            changes.push(Change::Apply(Transition {
                sender: SENDER,
                msg_id: msg(n),
                recipient,
                event,
                at,
                apprec_id: None,
                codes: vec![],
            }));
        }
    }
    changes
}
