//! Synthetic benchmark messages: dialogmeldinger (Dialogmelding 1.0 forespørsel, a GP person of the
//! office 82000 → nursing home 81001) and PLO messages (PLO 1.6 Pasientlogistikk "innlagt pasient",
//! a service of the hospital 80000 → nursing home 81001), in the shape of
//! `fixtures/messages/delivered/`, grown to a chosen size with synthetic free text, each with its
//! own MsgId and signed by its sender's key of the synthetic test PKI (`fixtures/gateway-pki/parties/`).
//!
//! The traffic comes from [`senders`]: the shipped register's fastlege 82001 and Medisinsk klinikk
//! 80001 first, then as many more GP persons (830xx under 82000) and hospital services (801xx under
//! 80000) as asked for. The extra ones are registered by [`extra_parties`] and sign with the
//! certificate of their kind's shipped party, as every person and service of a Norwegian
//! organisation signs with the organisation's enterprise certificate. A hub serves hundreds of
//! senders; the gateway keeps each sender's order (one message in flight per sender), so the
//! number of senders decides how much it can do at once.
//!
//! Both kinds are valid against the official schemas and route to a delivered recipient of the
//! shipped register (`config/parties.toml`) plus [`extra_parties`]; the tests below hold that.
//! Invented parties and an invented patient only (the identity number's check digit is
//! deliberately invalid).
//!
//! The MsgId is inside the signed content, so every message is signed on its own: signing
//! (RSA-3072) is slow, and happens before any timed part, on all cores.

use std::path::Path;

use helsemelding::amqp::headers::{ContentType, MessageHeaders};
use helsemelding::cms::Signer;
use helsemelding::ids::{HerId, MsgId, Timestamp};

use super::BenchError;

/// Which standard a benchmark message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Dialogmelding 1.0 DIALOG_FORESPORSEL from the fastlege 82001 to the nursing home 81001.
    Dialog,
    /// PLO 1.6 LOG_INNLAGT from the hospital's Medisinsk klinikk 80001 to the nursing home 81001.
    Plo,
}

impl Kind {
    /// The shipped register's sending party of this kind (whose key signs every message of it).
    pub fn sender(self) -> HerId {
        match self {
            Kind::Dialog => HerId(82001),
            Kind::Plo => HerId(80001),
        }
    }

    /// The recipient whose `{her}_async` queue it is delivered to.
    pub fn recipient(self) -> HerId {
        HerId(81001)
    }

    pub fn msg_type(self) -> &'static str {
        match self {
            Kind::Dialog => "DIALOG_FORESPORSEL",
            Kind::Plo => "LOG_INNLAGT",
        }
    }

    /// The organisation its senders belong to.
    fn organisation(self) -> HerId {
        match self {
            Kind::Dialog => HerId(82000),
            Kind::Plo => HerId(80000),
        }
    }

    /// The first HER-id of the extra senders of this kind.
    fn extra_base(self) -> u32 {
        match self {
            Kind::Dialog => 83000,
            Kind::Plo => 80100,
        }
    }
}

/// The benchmark's `n` senders (at least one): dialogue and PLO alternating, the shipped
/// register's two first, then the extra ones of [`extra_parties`].
pub fn senders(n: usize) -> Vec<(Kind, HerId)> {
    (0..n.max(1))
        .map(|i| {
            let kind = if i % 2 == 0 { Kind::Dialog } else { Kind::Plo };
            let k = i / 2;
            let her = if k == 0 {
                kind.sender()
            } else {
                HerId(kind.extra_base() + k as u32)
            };
            (kind, her)
        })
        .collect()
}

/// `[[party]]` entries (TOML, for appending to a register) for the senders of [`senders`]`(n)`
/// that the shipped register lacks; certificate paths under `pki` (the test PKI directory).
pub fn extra_parties(n: usize, pki: &Path) -> String {
    extra_parties_signing_with(n, |kind| {
        pki.join(format!("parties/{}-sign.pem", kind.sender()))
    })
}

/// [`extra_parties`] whose certificate per kind is `cert(kind)`.
pub fn extra_parties_signing_with(n: usize, cert: impl Fn(Kind) -> std::path::PathBuf) -> String {
    senders(n)
        .into_iter()
        .filter(|(kind, her)| *her != kind.sender())
        .map(|(kind, her)| {
            let cert = cert(kind);
            format!(
                "\n[[party]]\nher_id = {her}\nname = \"Benchmark sender {her}\"\norganisation_her_id = {org}\naccepts = [\"APPREC\"]\ncertificates = [{cert:?}]\namqp_users = [\"guest\"]\n",
                org = kind.organisation(),
                cert = cert.display().to_string()
            )
        })
        .collect()
}

const HER_OID: &str = "2.16.578.1.12.4.1.1.9051";

fn her(id: u32) -> String {
    format!(r#"<Ident><Id>{id}</Id><TypeId V="HER" DN="HER-id" S="{HER_OID}"/></Ident>"#)
}

/// Synthetic free text of at least `bytes` bytes (ASCII, nothing to escape).
fn filler(bytes: usize) -> String {
    const SENTENCE: &str = "Syntetisk testtekst for ytelsesmaaling: pasienten er mobil med rullator, trenger hjelp til \
        morgenstell og legemiddelhandtering, og har faste kontroller av blodtrykk og blodsukker. ";
    let mut s = String::with_capacity(bytes + SENTENCE.len());
    let mut i = 0;
    while s.len() < bytes {
        i += 1;
        s.push_str(&format!("[{i}] "));
        s.push_str(SENTENCE);
    }
    s
}

/// The XML of one message of `kind` with `msg_id` generated at `now` (its GenDate: the AppRec clock
/// of HIS 80415:2012 §3.2 starts there, so a fixed date would make every message overdue at once
/// some days later), grown with free text to about `size` bytes (never smaller than the bare message).
pub fn xml(kind: Kind, sender: HerId, msg_id: &MsgId, size: usize, now: Timestamp) -> String {
    xml_to(kind, sender, kind.recipient(), msg_id, size, now)
}

/// [`xml`] addressed to `recipient`, a level-2 service of the municipality 81000 (the nursing home
/// 81001 or the home care 81002 of the shipped register).
pub fn xml_to(
    kind: Kind,
    sender: HerId,
    recipient: HerId,
    msg_id: &MsgId,
    size: usize,
    now: Timestamp,
) -> String {
    // A time that RFC 3339 cannot express (never one of this era) leaves GenDate empty: the message
    // is then refused by the schema, loudly, instead of carrying a made-up date.
    let gen_date = now
        .replace_nanosecond(0)
        .unwrap_or(now)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let bare = render(kind, sender, recipient, msg_id, &gen_date, "");
    let text = filler(size.saturating_sub(bare.len()));
    render(kind, sender, recipient, msg_id, &gen_date, &text)
}

fn render(
    kind: Kind,
    sender: HerId,
    recipient: HerId,
    msg_id: &MsgId,
    gen_date: &str,
    text: &str,
) -> String {
    let patient = r#"<Patient><FamilyName>Testpasient</FamilyName><GivenName>Syntetisk</GivenName><Ident><Id>01019900000</Id><TypeId V="FNR" DN="Fødselsnummer" S="2.16.578.1.12.4.1.1.8116"/></Ident></Patient>"#;
    let service = if recipient == HerId(81002) {
        "Hjemmetjenesten"
    } else {
        "Sykehjemmet"
    };
    let nursing_home = format!(
        "<Organisation><OrganisationName>Testkommune</OrganisationName>{}<Organisation><OrganisationName>Testkommune, {service}</OrganisationName>{}</Organisation></Organisation>",
        her(81000),
        her(recipient.0)
    );
    let (type_dn, sender, payload) = match kind {
        Kind::Dialog => (
            "Forespørsel",
            format!(
                "<Organisation><OrganisationName>Testlegekontoret AS</OrganisationName>{}<HealthcareProfessional><FamilyName>Fastlege</FamilyName><GivenName>Test</GivenName>{}</HealthcareProfessional></Organisation>",
                her(82000),
                her(sender.0)
            ),
            format!(
                r#"<Dialogmelding xmlns="http://www.kith.no/xmlstds/dialog/2006-10-11"><Foresporsel><TypeForesp V="99" DN="Annen henvendelse" S="2.16.578.1.12.4.1.1.9152"/><Sporsmal>Syntetisk testforespørsel: ber om oppdatert legemiddelliste. {text}</Sporsmal></Foresporsel></Dialogmelding>"#
            ),
        ),
        Kind::Plo => (
            "Melding om innlagt pasient",
            format!(
                "<Organisation><OrganisationName>Testsykehuset HF</OrganisationName>{}<Organisation><OrganisationName>Testsykehuset HF, Medisinsk klinikk</OrganisationName>{}</Organisation></Organisation>",
                her(80000),
                her(sender.0)
            ),
            format!(
                r#"<p1:Pasientlogistikk xmlns:p1="http://www.kith.no/xmlstds/po/Pasientlogistikk/2012-04-01" xmlns="http://www.kith.no/xmlstds/po/poKomponent/2012-04-01" xmlns:fk1="http://www.kith.no/xmlstds/felleskomponent1">
  <InformasjonOmForsendelsen><Forsendelsesstatus V="N" DN="Ny"/></InformasjonOmForsendelsen>
  <TilknyttetEnhet><Kontaktenhet><fk1:OrganisationName>Testsykehuset HF, Medisinsk klinikk</fk1:OrganisationName><fk1:Ident><fk1:Id>MEDTEST</fk1:Id><fk1:TypeId V="LAV" DN="Lokal identifikator for avdelinger" S="{HER_OID}"/></fk1:Ident></Kontaktenhet></TilknyttetEnhet>
  <AnsvarForRapport><AnsvarligRapport><fk1:TypeHealthcareProfessional V="SP" DN="Sykepleier"/><fk1:RoleToPatient V="9" DN="Primærkontakt" S="2.16.578.1.12.4.1.1.9034"/><fk1:FamilyName>Sykepleier</fk1:FamilyName><fk1:GivenName>Test</fk1:GivenName><fk1:Ident><fk1:Id>9999999</fk1:Id><fk1:TypeId V="HPR" DN="HPR-nummer" S="2.16.578.1.12.4.1.1.8116"/></fk1:Ident></AnsvarligRapport></AnsvarForRapport>
  <p1:MeldingInnlagtPasient><TidsfestetHendelse><Hendelsekode V="1" DN="Pasient innlagt" S="2.16.578.1.12.4.1.1.9121"/><BeskrivelseAvHendelse>Pasienten ble innlagt ved Medisinsk klinikk. {text}</BeskrivelseAvHendelse><TidspunktForHendelse V="2026-11-23T09:00:00"/><Anslag>false</Anslag></TidsfestetHendelse></p1:MeldingInnlagtPasient>
</p1:Pasientlogistikk>"#
            ),
        ),
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Synthetic benchmark message written for helsemelding; invented parties and patient. -->
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="{ty}" DN="{type_dn}"/>
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>{gen_date}</GenDate>
    <MsgId>{msg_id}</MsgId>
    <Sender>{sender}</Sender>
    <Receiver>{nursing_home}</Receiver>
    {patient}
  </MsgInfo>
  <Document>
    <RefDoc>
      <IssueDate V="{gen_date}"/>
      <MsgType V="XML" DN="XML-instans"/>
      <Content>{payload}</Content>
    </RefDoc>
  </Document>
</MsgHead>
"#,
        ty = kind.msg_type()
    )
}

/// One signed message, ready to publish to the intake.
#[derive(Debug, Clone)]
pub struct Signed {
    pub kind: Kind,
    pub headers: MessageHeaders,
    /// The DER CMS SignedData envelope.
    pub body: Vec<u8>,
}

/// Loads the signing keys of both senders from the test PKI under `pki`.
pub fn signers(pki: &Path) -> Result<[(Kind, Signer); 2], BenchError> {
    let load = |kind: Kind| {
        let stem = pki.join(format!("parties/{}-sign", kind.sender()));
        Signer::from_pem_files(&stem.with_extension("key"), &stem.with_extension("pem"))
            .map(|s| (kind, s))
            .map_err(|e| BenchError::Setup(format!("signing key {}: {e}", stem.display())))
    };
    Ok([load(Kind::Dialog)?, load(Kind::Plo)?])
}

/// `n` messages of about `size` bytes, from `senders` in turn (see [`senders`]), each with a fresh
/// MsgId, signed on all available cores.
pub fn sign_many(
    signers: &[(Kind, Signer); 2],
    senders: &[(Kind, HerId)],
    n: usize,
    size: usize,
    now: Timestamp,
) -> Result<Vec<Signed>, BenchError> {
    if senders.is_empty() {
        return Err(BenchError::Setup("no senders to sign for".into()));
    }
    let one = |i: usize| -> Result<Signed, BenchError> {
        let (kind, from) = senders[i % senders.len()];
        let signer = signers
            .iter()
            .find_map(|(k, s)| (*k == kind).then_some(s))
            .ok_or_else(|| BenchError::Setup(format!("no signing key for {kind:?}")))?;
        let msg_id = MsgId::random();
        let body = signer
            .sign(xml(kind, from, &msg_id, size, now).as_bytes(), now)
            .map_err(|e| BenchError::Setup(format!("signing: {e}")))?;
        let headers = MessageHeaders::new(
            (from, kind.recipient()),
            kind.msg_type(),
            msg_id,
            now,
            ContentType::SignedCms,
        );
        Ok(Signed {
            kind,
            headers,
            body,
        })
    };
    crate::on_all_cores(n, one, || {
        BenchError::Setup("a signing thread panicked".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use helsemelding::msghead::MsgHead;

    #[test]
    fn senders_are_distinct_and_the_extra_ones_registered() {
        let s = senders(5);
        assert_eq!(
            s,
            vec![
                (Kind::Dialog, HerId(82001)),
                (Kind::Plo, HerId(80001)),
                (Kind::Dialog, HerId(83001)),
                (Kind::Plo, HerId(80101)),
                (Kind::Dialog, HerId(83002)),
            ]
        );
        assert_eq!(senders(0), vec![(Kind::Dialog, HerId(82001))]);
        let toml = extra_parties(5, Path::new("/pki"));
        assert_eq!(toml.matches("[[party]]").count(), 3, "{toml}");
        assert!(toml.contains("organisation_her_id = 80000"));
        assert!(toml.contains("\"/pki/parties/82001-sign.pem\""));
    }

    #[test]
    fn messages_reach_the_size_and_keep_their_addresses() {
        for kind in [Kind::Dialog, Kind::Plo] {
            for size in [4096, 51200] {
                let id = MsgId::random();
                let now = time::macros::datetime!(2026-12-02 16:30:00.25 UTC);
                let x = xml(kind, kind.sender(), &id, size, now);
                assert!(
                    x.len() >= size && x.len() < size + 400,
                    "{kind:?} {size}: {} bytes",
                    x.len()
                );
                let head = MsgHead::parse(x.as_bytes()).expect("parses as a MsgHead");
                assert_eq!(head.msg_id, id);
                assert_eq!(head.msg_type.v, kind.msg_type());
                assert_eq!(
                    head.gen_date_parsed,
                    Some(time::macros::datetime!(2026-12-02 16:30:00 UTC))
                );
                assert_eq!(
                    head.sender_address().communication_party(),
                    Some(kind.sender())
                );
                assert_eq!(
                    head.receiver.address().communication_party(),
                    Some(kind.recipient())
                );
            }
        }
    }
}
