//! Routing decisions: for every recipient a MsgHead addresses, deliver it, answer it with a negative
//! AppRec, or recognise that it is not for this network (HIS 1153-2:2016 AD2.1–AD2.8, HITS 1168 §5.3,
//! NOTES §3, DESIGN §2 "route").
//!
//! Input: the addressed recipients in MsgHead order (`Receiver` first, then each `OtherReceiver`),
//! the `toHerId` transport header, the message function (code list 8279), the [`Register`] and the
//! [`RoutePolicy`]. Output: a [`RoutePlan`] with exactly one [`Decision`] per addressed recipient, in
//! the same order. Pure: no I/O, no clock, cannot fail — every odd address is a decision.
//!
//! Rules, checked in this order for each recipient:
//! 1. the same communication party (level 2 else level 1) was already addressed, or resolves to a
//!    party that already gets the message → [`Decision::Duplicate`]: one delivery and one AppRec only
//!    (HITS 1168 §5.4, Systemtest #40, #41);
//! 2. level-1 HER-id missing → E21 (Systemtest #17);
//! 3. level 1 and level 2 both unknown (or level 1 unknown and no level 2) → [`Decision::NotForUs`]:
//!    no AppRec, the caller puts `transport:unknown-receiver` on the sender's error queue (HITS 1168
//!    §5.3, Systemtest #21);
//! 4. level 2 known but belonging to another organisation than level 1 (or level 1 unknown) → E21;
//! 5. level 1 known, level 2 unknown — or missing while the organisation has registered services or
//!    persons, i.e. the address is not service-based → E21 when `reject_unknown_level2` (Systemtest
//!    #18–20; E21 is KAN, "must be configurable by the customer", NOTES §7), else deliver to level 1;
//! 6. for the primary recipient: its communication party ≠ the `toHerId` header → E21 (Systemtest #22,
//!    envelope and fagmelding disagree). No header = nothing to compare (the intake enforces headers);
//! 7. the party does not accept this message function → T10;
//! 8. otherwise deliver to the resolved party's `{her}_async` queue.

use crate::address::{AddressedRecipient, RecipientRole};
use crate::codes::ErrorCode;
use crate::ids::HerId;
use crate::register::Register;

/// The customer-configurable routing choices (`[policy]` in `gateway.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Reject (E21) a message whose level-2 service/person is unknown or missing at a known
    /// organisation, instead of delivering it to the organisation (level 1).
    pub reject_unknown_level2: bool,
}

impl Default for RoutePolicy {
    fn default() -> Self {
        RoutePolicy {
            reject_unknown_level2: true,
        }
    }
}

/// What happens for one addressed recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish the original envelope to `{her}_async`.
    Deliver { her: HerId, role: RecipientRole },
    /// Answer *for* this recipient with a negative AppRec carrying `code` (and `reason` as `OT`).
    Reject {
        role: RecipientRole,
        code: ErrorCode,
        reason: String,
    },
    /// Neither level is ours: no AppRec (HITS 1168 §5.3); an error-queue entry for the sender.
    NotForUs { role: RecipientRole, reason: String },
    /// Addressed again (same party as an earlier recipient of this message): nothing to deliver and
    /// no AppRec, the earlier recipient's outcome covers it (HITS 1168 §5.4).
    Duplicate { role: RecipientRole, her: HerId },
}

impl Decision {
    pub fn role(&self) -> RecipientRole {
        match self {
            Decision::Deliver { role, .. }
            | Decision::Reject { role, .. }
            | Decision::NotForUs { role, .. }
            | Decision::Duplicate { role, .. } => *role,
        }
    }
}

/// One decision per addressed recipient, in MsgHead order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    pub decisions: Vec<Decision>,
}

impl RoutePlan {
    /// The parties to publish to, in order.
    pub fn deliveries(&self) -> impl Iterator<Item = (HerId, RecipientRole)> + '_ {
        self.decisions.iter().filter_map(|d| match d {
            Decision::Deliver { her, role } => Some((*her, *role)),
            _ => None,
        })
    }
}

/// Decides every recipient (see the module documentation for the rules and their order).
pub fn route(
    recipients: &[AddressedRecipient],
    to_her_header: Option<HerId>,
    msg_type: &str,
    register: &Register,
    policy: &RoutePolicy,
) -> RoutePlan {
    let mut seen: Vec<HerId> = Vec::with_capacity(recipients.len() * 2);
    let mut decisions = Vec::with_capacity(recipients.len());
    for r in recipients {
        let d = decide(r, to_her_header, msg_type, register, policy, &seen);
        if let Some(addressed) = r.address.communication_party() {
            seen.push(addressed);
        }
        if let Decision::Deliver { her, .. } = d {
            seen.push(her);
        }
        decisions.push(d);
    }
    RoutePlan { decisions }
}

fn decide(
    r: &AddressedRecipient,
    to_her_header: Option<HerId>,
    msg_type: &str,
    register: &Register,
    policy: &RoutePolicy,
    seen: &[HerId],
) -> Decision {
    let role = r.role;
    let reject = |code, reason: String| Decision::Reject { role, code, reason };
    if let Some(addressed) = r.address.communication_party() {
        if seen.contains(&addressed) {
            return Decision::Duplicate {
                role,
                her: addressed,
            };
        }
    }
    let Some(l1) = r.address.level1 else {
        return reject(
            ErrorCode::E21,
            "level-1 (organisation) HER-id missing in the address".into(),
        );
    };
    let l1_known = register.contains(l1);
    let target = match r.address.level2 {
        None if !l1_known => {
            return Decision::NotForUs {
                role,
                reason: format!("HER-id {l1} is not in the address register"),
            };
        }
        None if register.children(l1).is_empty() => l1,
        None => {
            if policy.reject_unknown_level2 {
                return reject(
                    ErrorCode::E21,
                    format!("level-2 HER-id missing; organisation {l1} is addressed by service or person"),
                );
            }
            l1
        }
        Some(l2) => match (l1_known, register.contains(l2)) {
            (false, false) => {
                return Decision::NotForUs {
                    role,
                    reason: format!("neither level-1 HER-id {l1} nor level-2 HER-id {l2} is in the address register"),
                };
            }
            (_, true) if register.organisation_of(l2) != Some(l1) => {
                return reject(
                    ErrorCode::E21,
                    format!("level-2 HER-id {l2} does not belong to organisation {l1}"),
                );
            }
            (_, true) => l2,
            (true, false) => {
                if policy.reject_unknown_level2 {
                    return reject(
                        ErrorCode::E21,
                        format!("level-2 HER-id {l2} is unknown at organisation {l1}"),
                    );
                }
                l1
            }
        },
    };
    if role == RecipientRole::Primary {
        if let (Some(header), Some(addressed)) = (to_her_header, r.address.communication_party()) {
            if header != addressed {
                return reject(
                    ErrorCode::E21,
                    format!(
                        "envelope toHerId {header} differs from the MsgHead receiver {addressed}"
                    ),
                );
            }
        }
    }
    if seen.contains(&target) {
        return Decision::Duplicate { role, her: target };
    }
    if !register.accepts(target, msg_type) {
        return reject(
            ErrorCode::T10,
            format!("HER-id {target} does not accept message type {msg_type}"),
        );
    }
    Decision::Deliver { her: target, role }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::PartyAddress;
    use crate::register::tests::sample;
    use RecipientRole::{Copy as Cop, Primary as Prim};

    fn to(role: RecipientRole, l1: Option<u32>, l2: Option<u32>) -> AddressedRecipient {
        AddressedRecipient {
            role,
            address: PartyAddress {
                level1: l1.map(HerId),
                level2: l2.map(HerId),
            },
        }
    }

    /// Expected outcome, compact: D(her) deliver, R(code) reject, N not for us, Dup(her).
    #[derive(Debug, PartialEq)]
    enum E {
        D(u32),
        R(ErrorCode),
        N,
        Dup(u32),
    }

    fn outcome(d: &Decision) -> E {
        match d {
            Decision::Deliver { her, .. } => E::D(her.0),
            Decision::Reject { code, .. } => E::R(*code),
            Decision::NotForUs { .. } => E::N,
            Decision::Duplicate { her, .. } => E::Dup(her.0),
        }
    }

    #[test]
    fn routing_table() {
        use E::*;
        let strict = RoutePolicy {
            reject_unknown_level2: true,
        };
        let lenient = RoutePolicy {
            reject_unknown_level2: false,
        };
        // (case, recipients, toHerId header, type, policy, expected per recipient)
        type Case = (
            &'static str,
            Vec<AddressedRecipient>,
            Option<u32>,
            &'static str,
            RoutePolicy,
            Vec<E>,
        );
        let table: Vec<Case> = vec![
            (
                "#1 service-addressed, known",
                vec![to(Prim, Some(1000), Some(1001))],
                Some(1001),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(1001)],
            ),
            (
                "person party (fastlege)",
                vec![to(Prim, Some(2000), Some(2001))],
                Some(2001),
                "DIALOG_SVAR",
                strict,
                vec![D(2001)],
            ),
            (
                "single-level party",
                vec![to(Prim, Some(3000), None)],
                Some(3000),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(3000)],
            ),
            (
                "#17 level-1 HER-id missing",
                vec![to(Prim, None, Some(1001))],
                Some(1001),
                "DIALOG_FORESPORSEL",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#17 no HER-id at all",
                vec![to(Prim, None, None)],
                None,
                "DIALOG_FORESPORSEL",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#18 level-2 missing at a service-addressed organisation",
                vec![to(Prim, Some(1000), None)],
                Some(1000),
                "APPREC",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#18 lenient: deliver to level 1",
                vec![to(Prim, Some(1000), None)],
                Some(1000),
                "APPREC",
                lenient,
                vec![D(1000)],
            ),
            (
                "#19 unknown person at known GP office",
                vec![to(Prim, Some(2000), Some(2999))],
                Some(2999),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#20 unknown service at known hospital",
                vec![to(Prim, Some(1000), Some(1999))],
                Some(1999),
                "APPREC",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#20 lenient: deliver to level 1",
                vec![to(Prim, Some(1000), Some(1999))],
                Some(1999),
                "APPREC",
                lenient,
                vec![D(1000)],
            ),
            (
                "#21 both levels unknown: no AppRec",
                vec![to(Prim, Some(8000), Some(8001))],
                Some(8001),
                "DIALOG_SVAR",
                strict,
                vec![N],
            ),
            (
                "#21 only level 1, unknown",
                vec![to(Prim, Some(8000), None)],
                Some(8000),
                "DIALOG_SVAR",
                strict,
                vec![N],
            ),
            (
                "level 2 of another organisation",
                vec![to(Prim, Some(2000), Some(1001))],
                Some(1001),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "level 2 known, level 1 unknown",
                vec![to(Prim, Some(8000), Some(1001))],
                Some(1001),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#22 envelope toHerId mismatch",
                vec![to(Prim, Some(1000), Some(1001))],
                Some(1002),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::E21)],
            ),
            (
                "#22 mismatch only concerns the primary",
                vec![
                    to(Prim, Some(1000), Some(1001)),
                    to(Cop, Some(2000), Some(2001)),
                ],
                Some(2001),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::E21), D(2001)],
            ),
            (
                "no header: nothing to compare",
                vec![to(Prim, Some(1000), Some(1001))],
                None,
                "DIALOG_SVAR",
                strict,
                vec![D(1001)],
            ),
            (
                "#33 type not accepted: T10",
                vec![to(Prim, Some(1000), Some(1002))],
                Some(1002),
                "DIALOG_SVAR",
                strict,
                vec![R(ErrorCode::T10)],
            ),
            (
                "#7/#10 primary and copy",
                vec![
                    to(Prim, Some(1000), Some(1001)),
                    to(Cop, Some(2000), Some(2001)),
                ],
                Some(1001),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(1001), D(2001)],
            ),
            (
                "#39 copy rejected, primary delivered",
                vec![
                    to(Prim, Some(1000), Some(1001)),
                    to(Cop, Some(2000), Some(2999)),
                ],
                Some(1001),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(1001), R(ErrorCode::E21)],
            ),
            (
                "#35 primary rejected, copy delivered",
                vec![
                    to(Prim, Some(1000), Some(1999)),
                    to(Cop, Some(2000), Some(2001)),
                ],
                Some(1999),
                "DIALOG_FORESPORSEL",
                strict,
                vec![R(ErrorCode::E21), D(2001)],
            ),
            (
                "#11/#40 PRIM and COP to the same party",
                vec![
                    to(Prim, Some(1000), Some(1001)),
                    to(Cop, Some(1000), Some(1001)),
                ],
                Some(1001),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(1001), Dup(1001)],
            ),
            (
                "#40 PRIM and COP to the same unknown service: one AppRec",
                vec![
                    to(Prim, Some(1000), Some(1999)),
                    to(Cop, Some(1000), Some(1999)),
                ],
                Some(1999),
                "DIALOG_FORESPORSEL",
                strict,
                vec![R(ErrorCode::E21), Dup(1999)],
            ),
            (
                "lenient fallback onto a party already addressed",
                vec![to(Prim, Some(1000), None), to(Cop, Some(1000), Some(1999))],
                Some(1000),
                "APPREC",
                lenient,
                vec![D(1000), Dup(1000)],
            ),
            (
                "copy to a party outside the network",
                vec![to(Prim, Some(3000), None), to(Cop, Some(8000), Some(8001))],
                Some(3000),
                "DIALOG_FORESPORSEL",
                strict,
                vec![D(3000), N],
            ),
        ];
        let reg = sample();
        for (case, recipients, header, ty, policy, expected) in table {
            let plan = route(&recipients, header.map(HerId), ty, &reg, &policy);
            let got: Vec<E> = plan.decisions.iter().map(outcome).collect();
            assert_eq!(got, expected, "case {case}");
            let roles: Vec<_> = plan.decisions.iter().map(Decision::role).collect();
            let want: Vec<_> = recipients.iter().map(|r| r.role).collect();
            assert_eq!(
                roles, want,
                "case {case}: one decision per recipient, in order"
            );
        }
    }

    #[test]
    fn reasons_name_the_her_ids() {
        let plan = route(
            &[to(Prim, Some(1000), Some(1999))],
            None,
            "APPREC",
            &sample(),
            &RoutePolicy::default(),
        );
        let Decision::Reject { reason, .. } = &plan.decisions[0] else {
            panic!("expected a rejection")
        };
        assert!(
            reason.contains("1999") && reason.contains("1000"),
            "{reason}"
        );
        let plan = route(
            &[
                to(Prim, Some(1000), Some(1001)),
                to(Cop, Some(2000), Some(2001)),
            ],
            Some(HerId(1001)),
            "DIALOG_SVAR",
            &sample(),
            &RoutePolicy::default(),
        );
        assert_eq!(
            plan.deliveries().collect::<Vec<_>>(),
            vec![(HerId(1001), Prim), (HerId(2001), Cop)]
        );
    }
}
