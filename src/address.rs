//! How a MsgHead addresses a party, reduced to what routing needs (HIS 1153-2:2016 AD2.1–AD2.8,
//! NOTES.md §3): the level-1 HER-id (the organisation, `Organisation/Ident[TypeId/@V='HER']`) and the
//! level-2 HER-id (a service, `Organisation/Organisation/Ident[HER]`, or a person,
//! `Organisation/HealthcareProfessional/Ident[HER]`), and the role the party was addressed in.
//!
//! The full address (names, every identifier) stays in the message model, because an AppRec must
//! mirror all of it; this is only the routing key.

use crate::ids::HerId;

/// In which role a recipient was addressed: the MsgHead `Receiver`, or an `OtherReceiver`
/// (copy recipient, `RoleReceiver` V="COP", code list 8112).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum RecipientRole {
    Primary,
    Copy,
}

/// The two HER-id levels of one addressed party. Either may be missing in a broken message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct PartyAddress {
    pub level1: Option<HerId>,
    pub level2: Option<HerId>,
}

impl PartyAddress {
    /// The communication party's HER-id: level 2 if present, else level 1 (HIS 1153-2 AD2.1).
    pub fn communication_party(&self) -> Option<HerId> {
        self.level2.or(self.level1)
    }
}

/// One recipient as addressed in the MsgHead (`Receiver` or one `OtherReceiver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct AddressedRecipient {
    pub role: RecipientRole,
    pub address: PartyAddress,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_two_wins_over_level_one() {
        let a = PartyAddress {
            level1: Some(HerId(1)),
            level2: Some(HerId(2)),
        };
        assert_eq!(a.communication_party(), Some(HerId(2)));
        let b = PartyAddress {
            level1: Some(HerId(1)),
            level2: None,
        };
        assert_eq!(b.communication_party(), Some(HerId(1)));
        assert_eq!(PartyAddress::default().communication_party(), None);
    }
}
