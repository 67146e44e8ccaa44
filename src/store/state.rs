//! The delivery state of one recipient of one message, and the one pure function that changes it
//! (DESIGN §3, CONVENTIONS "State changes go through one pure function").
//!
//! ```text
//! Received ──Routed──▶ Routed ──Delivered──▶ Delivered ──AppRecOk───────▶ AppRecOk        (final)
//!    │                                          │      ──AppRecRejected─▶ AppRecRejected  (final)
//!    │                                          └─Overdue─▶ Overdue ──AppRecOk / AppRecRejected──▶ …
//!    └──Rejected(code)──▶ Rejected(code)                                                   (final)
//! ```
//!
//! `Overdue` is not final: HIS 80415:2012 Errata 4 lets a receiver that takes a message in manually
//! after 96 hours still send a positive AppRec, and the sender must get it, so a late AppRec (either
//! status) is forwarded and recorded. A second AppRec for the same recipient is an
//! [`IllegalTransition`]: an AppRec is final (HIS 80415:2012 §3.2, Systemtest #41), so the gateway
//! refuses to forward another one. Input: a state and an [`Event`]; output: the next state or the
//! illegal move as an error. Never panics.

use crate::codes::ErrorCode;

/// Where one recipient's copy of a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DeliveryState {
    /// Consumed from intake and recorded; nothing published yet.
    Received,
    /// Routing decided to deliver to this recipient.
    Routed,
    /// Published to `{her}_async` and confirmed by the broker; waiting for the recipient's AppRec.
    Delivered,
    /// The recipient's positive AppRec was forwarded to the sender. Final.
    AppRecOk,
    /// The recipient's negative AppRec was forwarded to the sender. Final.
    AppRecRejected,
    /// No AppRec within the timeout (96 h by default, HIS 80415:2012 §3.2, Systemtest #42).
    /// A late AppRec still moves it on.
    Overdue,
    /// The gateway answered for this recipient with a negative AppRec; the code is the first
    /// `Error` of that AppRec (all codes are in the recipient record). Final.
    Rejected(ErrorCode),
}

/// Something that happened to one recipient's copy of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// Routing decided `Deliver` for this recipient.
    Routed,
    /// The broker confirmed the publish to the recipient's queue.
    Delivered,
    /// The gateway issued a negative AppRec for this recipient (decode/verify/validate/route fault).
    Rejected(ErrorCode),
    /// A positive AppRec (status 1, or 3) from the recipient was checked and forwarded.
    AppRecOk,
    /// A negative AppRec (status 2) from the recipient was checked and forwarded.
    AppRecRejected,
    /// The AppRec timeout passed while the recipient was `Delivered`.
    Overdue,
}

/// A move the state machine does not allow. The state is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("illegal delivery-state transition: {event:?} in state {from:?}")]
pub struct IllegalTransition {
    pub from: DeliveryState,
    pub event: Event,
}

impl DeliveryState {
    /// The only way a state changes. Illegal moves are errors, not panics.
    pub fn on(self, event: Event) -> Result<DeliveryState, IllegalTransition> {
        use DeliveryState as S;
        use Event as E;
        match (self, event) {
            (S::Received, E::Routed) => Ok(S::Routed),
            (S::Received, E::Rejected(code)) => Ok(S::Rejected(code)),
            (S::Routed, E::Delivered) => Ok(S::Delivered),
            (S::Delivered | S::Overdue, E::AppRecOk) => Ok(S::AppRecOk),
            (S::Delivered | S::Overdue, E::AppRecRejected) => Ok(S::AppRecRejected),
            (S::Delivered, E::Overdue) => Ok(S::Overdue),
            (from, event) => Err(IllegalTransition { from, event }),
        }
    }

    /// No event moves a final state.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::AppRecOk | Self::AppRecRejected | Self::Rejected(_)
        )
    }

    /// Delivered and waiting for the recipient's AppRec (what the overdue sweep looks at).
    pub fn awaits_apprec(self) -> bool {
        self == Self::Delivered
    }

    /// Short readable name for `status` and logs.
    pub fn name(self) -> String {
        match self {
            Self::Rejected(code) => format!("Rejected({code})"),
            other => format!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CODES: [ErrorCode; 4] = [
        ErrorCode::E21,
        ErrorCode::T02,
        ErrorCode::S01,
        ErrorCode::T10,
    ];

    fn any_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            Just(Event::Routed),
            Just(Event::Delivered),
            (0..CODES.len()).prop_map(|i| Event::Rejected(CODES[i])),
            Just(Event::AppRecOk),
            Just(Event::AppRecRejected),
            Just(Event::Overdue),
        ]
    }

    #[test]
    fn the_happy_paths() {
        let s = DeliveryState::Received
            .on(Event::Routed)
            .and_then(|s| s.on(Event::Delivered));
        assert_eq!(s, Ok(DeliveryState::Delivered));
        let s = s
            .and_then(|s| s.on(Event::Overdue))
            .and_then(|s| s.on(Event::AppRecOk));
        assert_eq!(
            s,
            Ok(DeliveryState::AppRecOk),
            "a late positive AppRec still counts (Errata 4)"
        );
        assert_eq!(
            DeliveryState::Received.on(Event::Rejected(ErrorCode::E21)),
            Ok(DeliveryState::Rejected(ErrorCode::E21))
        );
    }

    #[test]
    fn a_second_apprec_is_illegal() {
        let err = DeliveryState::AppRecOk
            .on(Event::AppRecRejected)
            .unwrap_err();
        assert_eq!(
            err,
            IllegalTransition {
                from: DeliveryState::AppRecOk,
                event: Event::AppRecRejected
            }
        );
        assert!(err.to_string().contains("AppRecRejected"));
        assert!(
            DeliveryState::Received.on(Event::Delivered).is_err(),
            "not published before routed"
        );
        assert!(DeliveryState::Routed
            .on(Event::Rejected(ErrorCode::T02))
            .is_err());
        assert!(DeliveryState::Overdue.on(Event::Overdue).is_err());
    }

    proptest! {
        #[test]
        fn random_event_sequences(events in proptest::collection::vec(any_event(), 0..40)) {
            let mut state = DeliveryState::Received;
            let mut accepted = Vec::new();
            let mut was_routed = false;
            for e in events {
                match state.on(e) {
                    Ok(next) => {
                        prop_assert!(!state.is_final(), "left final state {:?} on {:?}", state, e);
                        if next == DeliveryState::Delivered {
                            prop_assert!(was_routed, "Delivered without Routed");
                            prop_assert_eq!(state, DeliveryState::Routed);
                        }
                        was_routed |= next == DeliveryState::Routed;
                        accepted.push(e);
                        state = next;
                    }
                    Err(err) => {
                        prop_assert_eq!(err, IllegalTransition { from: state, event: e });
                    }
                }
            }
            // Replaying the accepted events from the start (what a restart does) gives the same state.
            let replayed = accepted.iter().try_fold(DeliveryState::Received, |s, e| s.on(*e));
            prop_assert_eq!(replayed, Ok(state));
        }
    }
}
