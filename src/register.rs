//! The address register: the communication parties this gateway serves (HIS 1153-2:2016, NOTES §3).
//!
//! Input: the `[[party]]` entries of `config/parties.toml` (see [`crate::config`]), already parsed.
//! Output: a [`Register`] answering the questions routing and verification ask — is this HER-id ours,
//! is it an organisation (level 1) or a service/person (level 2), which organisation does a service
//! belong to, does the party accept this message type, which signing certificates and AMQP users may
//! act for it.
//!
//! Failure modes: [`Register::from_parties`] returns *every* inconsistency at once ([`RegisterError`]):
//! duplicate HER-ids, an `organisation_her_id` naming no party or naming a party that is itself a
//! level-2 party (the address model has exactly two levels, HIS 1153-2 AD2.1), a party that accepts no
//! message type, a message type that is not in code list 8279. Lookups never fail; an unknown HER-id
//! is simply "not ours".

use std::collections::HashMap;
use std::path::PathBuf;

use crate::ids::HerId;
use crate::msg_type;

/// One communication party of the register (one `[[party]]` entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    /// The party's own HER-id (an organisation, a service or a person).
    pub her_id: HerId,
    /// Display name, as in Adresseregisteret. Used in logs and `status`, never for routing.
    pub name: String,
    /// The level-1 organisation this party belongs to, when it is a level-2 service or person.
    #[serde(default)]
    pub organisation_her_id: Option<HerId>,
    /// Message functions it accepts (code list 8279, MsgHead `MsgInfo/Type`), e.g. `DIALOG_FORESPORSEL`.
    #[serde(default)]
    pub accepts: Vec<String>,
    /// Signing certificates (PEM files) the party may sign with. Relative paths are resolved by
    /// [`crate::config`] before the register is built.
    #[serde(default)]
    pub certificates: Vec<PathBuf>,
    /// AMQP user names (RabbitMQ-validated `user_id`) allowed to publish as this party.
    #[serde(default)]
    pub amqp_users: Vec<String>,
    /// The certificate (PEM, keyUsage keyEncipherment) the gateway encrypts this party's messages
    /// to — its deliveries and the AppRecs it is sent (DESIGN §1 "Encryption"). Required for every
    /// party but the gateway itself when `policy.require_encryption` is on.
    #[serde(default)]
    pub encryption_certificate: Option<PathBuf>,
    /// Kommunenummer (4 digits) of an organisation: the unit of the insight indicators
    /// (src/insight; DESIGN §4, §7). Optional.
    #[serde(default)]
    pub municipality: Option<String>,
    /// What kind of organisation a level-1 party is (`hospital`, `municipality`, `gp_office`,
    /// `other`): the direction of the insight report's dialogue figures (I10 "hospital →
    /// municipality", src/insight). Optional; only on organisations.
    #[serde(default)]
    pub kind: Option<OrgKind>,
}

/// The kind of a level-1 organisation, as the insight report names directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    /// A hospital trust (helseforetak) or a private hospital.
    Hospital,
    /// A municipality's organisation (its nursing homes, home care, KAD are its services).
    Municipality,
    /// A GP office (legekontor); its doctors are level-2 persons.
    GpOffice,
    /// Anything else (a pharmacy, a laboratory, a specialist outside a hospital).
    Other,
}

impl OrgKind {
    /// The word an indicator name uses for it (`I10_within_5d_dir_gp_municipality`).
    pub fn token(self) -> &'static str {
        match self {
            OrgKind::Hospital => "hospital",
            OrgKind::Municipality => "municipality",
            OrgKind::GpOffice => "gp",
            OrgKind::Other => "other",
        }
    }
}

/// An inconsistency in the register. All of them are configuration faults: the gateway must not
/// start with a register that could route a message to the wrong party.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("HER-id {her} is registered twice (parties #{first} and #{second}, counting from 1)")]
    DuplicateHerId {
        her: HerId,
        first: usize,
        second: usize,
    },
    #[error("party {party}: organisation_her_id {organisation} names no party in the register")]
    UnknownOrganisation {
        index: usize,
        party: HerId,
        organisation: HerId,
    },
    #[error("party {party}: organisation_her_id {organisation} is itself a level-2 party (of {its_organisation}); only two address levels exist (HIS 1153-2 AD2.1)")]
    OrganisationNotLevel1 {
        index: usize,
        party: HerId,
        organisation: HerId,
        its_organisation: HerId,
    },
    #[error("party {party}: organisation_her_id names the party itself")]
    OwnOrganisation { index: usize, party: HerId },
    #[error("party {party}: `accepts` is empty; a party that accepts nothing could only ever be answered with T10")]
    NoAccepts { index: usize, party: HerId },
    #[error("party {party}: municipality {value:?} is not a kommunenummer (4 digits)")]
    BadMunicipality {
        index: usize,
        party: HerId,
        value: String,
    },
    #[error("party {party}: `kind` is set on a level-2 party (of {organisation}); it belongs on the organisation")]
    KindOnService {
        index: usize,
        party: HerId,
        organisation: HerId,
    },
    #[error("party {party}: accepts {code:?}, which is not a message function of code list 8279")]
    UnknownMessageType {
        index: usize,
        party: HerId,
        code: String,
    },
}

impl RegisterError {
    /// The position (0-based) in the list given to [`Register::from_parties`] of the party entry
    /// the problem belongs to (the second one for a duplicate), for locating it in the file.
    pub fn index(&self) -> usize {
        match self {
            Self::DuplicateHerId { second, .. } => second - 1,
            Self::UnknownOrganisation { index, .. }
            | Self::OrganisationNotLevel1 { index, .. }
            | Self::OwnOrganisation { index, .. }
            | Self::NoAccepts { index, .. }
            | Self::BadMunicipality { index, .. }
            | Self::KindOnService { index, .. }
            | Self::UnknownMessageType { index, .. } => *index,
        }
    }
}

/// The validated address register. Cheap to share (`Arc<Register>`); immutable once built.
#[derive(Debug, Clone)]
pub struct Register {
    parties: Vec<Party>,
    by_her: HashMap<HerId, usize>,
    children: HashMap<HerId, Vec<HerId>>,
}

impl Register {
    /// Builds the register, reporting every inconsistency (see the module documentation).
    pub fn from_parties(parties: Vec<Party>) -> Result<Register, Vec<RegisterError>> {
        let mut problems = Vec::new();
        let mut by_her: HashMap<HerId, usize> = HashMap::new();
        for (i, p) in parties.iter().enumerate() {
            if let Some(&first) = by_her.get(&p.her_id) {
                problems.push(RegisterError::DuplicateHerId {
                    her: p.her_id,
                    first: first + 1,
                    second: i + 1,
                });
            } else {
                by_her.insert(p.her_id, i);
            }
        }
        let mut children: HashMap<HerId, Vec<HerId>> = HashMap::new();
        for (index, p) in parties.iter().enumerate() {
            if p.accepts.is_empty() {
                problems.push(RegisterError::NoAccepts {
                    index,
                    party: p.her_id,
                });
            }
            for code in &p.accepts {
                if !msg_type::is_known(code) {
                    problems.push(RegisterError::UnknownMessageType {
                        index,
                        party: p.her_id,
                        code: code.clone(),
                    });
                }
            }
            if let Some(m) = &p.municipality {
                if m.len() != 4 || !m.bytes().all(|b| b.is_ascii_digit()) {
                    problems.push(RegisterError::BadMunicipality {
                        index,
                        party: p.her_id,
                        value: m.clone(),
                    });
                }
            }
            let Some(org) = p.organisation_her_id else {
                continue;
            };
            if p.kind.is_some() && org != p.her_id {
                problems.push(RegisterError::KindOnService {
                    index,
                    party: p.her_id,
                    organisation: org,
                });
            }
            if org == p.her_id {
                problems.push(RegisterError::OwnOrganisation {
                    index,
                    party: p.her_id,
                });
                continue;
            }
            match by_her.get(&org).map(|&i| &parties[i]) {
                None => problems.push(RegisterError::UnknownOrganisation {
                    index,
                    party: p.her_id,
                    organisation: org,
                }),
                Some(o) => match o.organisation_her_id {
                    Some(its) if its != o.her_id => {
                        problems.push(RegisterError::OrganisationNotLevel1 {
                            index,
                            party: p.her_id,
                            organisation: org,
                            its_organisation: its,
                        })
                    }
                    _ => children.entry(org).or_default().push(p.her_id),
                },
            }
        }
        if problems.is_empty() {
            Ok(Register {
                parties,
                by_her,
                children,
            })
        } else {
            Err(problems)
        }
    }

    /// The party with this HER-id, if it is in the register.
    pub fn get(&self, her: HerId) -> Option<&Party> {
        self.by_her.get(&her).map(|&i| &self.parties[i])
    }

    /// Whether this HER-id is one of ours.
    pub fn contains(&self, her: HerId) -> bool {
        self.by_her.contains_key(&her)
    }

    /// All parties, in file order.
    pub fn parties(&self) -> &[Party] {
        &self.parties
    }

    /// Whether `her` is a level-1 party: one that others name as their organisation, or that names
    /// none itself. False for HER-ids not in the register.
    pub fn is_organisation(&self, her: HerId) -> bool {
        self.children.contains_key(&her)
            || self
                .get(her)
                .is_some_and(|p| p.organisation_her_id.is_none())
    }

    /// The level-1 organisation of a level-2 party (`None` for organisations and unknown HER-ids).
    pub fn organisation_of(&self, her: HerId) -> Option<HerId> {
        self.get(her).and_then(|p| p.organisation_her_id)
    }

    /// The kind of the organisation `her` is or belongs to, when the register says (`kind`).
    pub fn kind_of(&self, her: HerId) -> Option<OrgKind> {
        let org = self.organisation_of(her).unwrap_or(her);
        self.get(org).and_then(|p| p.kind)
    }

    /// The level-2 services and persons registered under an organisation, in file order.
    pub fn children(&self, organisation: HerId) -> &[HerId] {
        self.children
            .get(&organisation)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Whether the party accepts this message function (code list 8279). False for unknown parties.
    pub fn accepts(&self, her: HerId, msg_type: &str) -> bool {
        self.get(her)
            .is_some_and(|p| p.accepts.iter().any(|a| a == msg_type))
    }

    /// The signing certificate files the party may use (empty for unknown parties).
    pub fn certificates(&self, her: HerId) -> &[PathBuf] {
        self.get(her)
            .map(|p| p.certificates.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the AMQP user (RabbitMQ-validated `user_id`) may publish as this party. A mismatch is
    /// spoofing (DESIGN §2 "verify").
    pub fn amqp_user_allowed(&self, her: HerId, user: &str) -> bool {
        self.get(her)
            .is_some_and(|p| p.amqp_users.iter().any(|u| u == user))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn party(her: u32, org: Option<u32>, accepts: &[&str]) -> Party {
        Party {
            her_id: HerId(her),
            name: format!("Synthetic party {her}"),
            organisation_her_id: org.map(HerId),
            accepts: accepts.iter().map(|s| s.to_string()).collect(),
            certificates: vec![PathBuf::from(format!("certs/{her}.pem"))],
            amqp_users: vec![format!("ehr-{her}")],
            encryption_certificate: None,
            municipality: None,
            kind: None,
        }
    }

    /// Hospital 1000 with services 1001 (accepts dialog) and 1002 (accepts PLO only); GP office 2000
    /// with person 2001; single-level party 3000.
    pub(crate) fn sample() -> Register {
        Register::from_parties(vec![
            party(1000, None, &["APPREC"]),
            party(
                1001,
                Some(1000),
                &["DIALOG_FORESPORSEL", "DIALOG_SVAR", "APPREC"],
            ),
            party(1002, Some(1000), &["INNLEGGELSESRAPPORT", "APPREC"]),
            party(2000, None, &["APPREC"]),
            party(
                2001,
                Some(2000),
                &["DIALOG_FORESPORSEL", "DIALOG_SVAR", "APPREC"],
            ),
            party(3000, None, &["DIALOG_FORESPORSEL", "APPREC"]),
        ])
        .expect("the sample register is consistent")
    }

    #[test]
    fn a_municipality_is_four_digits() {
        let mut p = party(1000, None, &["APPREC"]);
        p.municipality = Some("5501".into());
        assert!(Register::from_parties(vec![p.clone()]).is_ok());
        p.municipality = Some("551".into());
        let e = Register::from_parties(vec![p]).unwrap_err();
        assert!(matches!(e[0], RegisterError::BadMunicipality { .. }));
    }

    #[test]
    fn a_kind_is_read_on_the_organisation_and_refused_on_a_service() {
        let toml = "her_id = 1000\nname = \"HF\"\naccepts = [\"APPREC\"]\nkind = \"gp_office\"\n";
        let mut org: Party = toml::from_str(toml).unwrap();
        assert_eq!(org.kind, Some(OrgKind::GpOffice));
        let service = party(1001, Some(1000), &["APPREC"]);
        let r = Register::from_parties(vec![org.clone(), service.clone()]).unwrap();
        assert_eq!(r.kind_of(HerId(1001)), Some(OrgKind::GpOffice));
        assert_eq!(r.kind_of(HerId(1000)).map(OrgKind::token), Some("gp"));
        assert_eq!(r.kind_of(HerId(9999)), None);
        org.kind = None;
        let mut wrong = service;
        wrong.kind = Some(OrgKind::Hospital);
        let e = Register::from_parties(vec![org, wrong]).unwrap_err();
        assert!(matches!(e[0], RegisterError::KindOnService { .. }));
        assert!(toml::from_str::<Party>(&toml.replace("gp_office", "legekontor")).is_err());
    }

    #[test]
    fn lookups() {
        let r = sample();
        assert!(r.is_organisation(HerId(1000)));
        assert!(r.is_organisation(HerId(3000)));
        assert!(!r.is_organisation(HerId(1001)));
        assert!(!r.is_organisation(HerId(9999)));
        assert_eq!(r.children(HerId(1000)), &[HerId(1001), HerId(1002)]);
        assert!(r.children(HerId(3000)).is_empty());
        assert_eq!(r.organisation_of(HerId(2001)), Some(HerId(2000)));
        assert!(r.accepts(HerId(1001), "DIALOG_SVAR"));
        assert!(!r.accepts(HerId(1002), "DIALOG_SVAR"));
        assert!(!r.accepts(HerId(9999), "APPREC"));
        assert_eq!(
            r.certificates(HerId(1001)),
            &[PathBuf::from("certs/1001.pem")]
        );
        assert!(r.certificates(HerId(9999)).is_empty());
        assert!(r.amqp_user_allowed(HerId(1001), "ehr-1001"));
        assert!(!r.amqp_user_allowed(HerId(1001), "ehr-1002"));
        assert!(!r.amqp_user_allowed(HerId(9999), "ehr-9999"));
    }

    #[test]
    fn every_inconsistency_is_reported() {
        let errs = Register::from_parties(vec![
            party(1, None, &["APPREC"]),
            party(1, None, &["APPREC"]),
            party(2, Some(77), &["APPREC"]),
            party(3, Some(1), &[]),
            party(4, Some(3), &["NOT_A_TYPE"]),
            party(5, Some(5), &["APPREC"]),
        ])
        .unwrap_err();
        assert_eq!(
            errs,
            vec![
                RegisterError::DuplicateHerId {
                    her: HerId(1),
                    first: 1,
                    second: 2
                },
                RegisterError::UnknownOrganisation {
                    index: 2,
                    party: HerId(2),
                    organisation: HerId(77)
                },
                RegisterError::NoAccepts {
                    index: 3,
                    party: HerId(3)
                },
                RegisterError::UnknownMessageType {
                    index: 4,
                    party: HerId(4),
                    code: "NOT_A_TYPE".into()
                },
                RegisterError::OrganisationNotLevel1 {
                    index: 4,
                    party: HerId(4),
                    organisation: HerId(3),
                    its_organisation: HerId(1)
                },
                RegisterError::OwnOrganisation {
                    index: 5,
                    party: HerId(5)
                },
            ]
        );
        assert_eq!(errs[0].index(), 1);
        assert_eq!(errs[4].index(), 4);
    }
}
