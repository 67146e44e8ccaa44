//! The planned messages as MsgHead documents (KITH MsgHead 1.2 with PLO 1.6 or Dialogmelding 1.0
//! content), in the shape of `fixtures/make_insight.py` and the benchmark's messages
//! (`crate::bench::messages`): the parties of the plan with their HER-ids, the synthetic patient,
//! GenDate as the plan's Oslo time (zone-less) or in UTC with `Z`, ConversationRef for an answer,
//! an update or a cancellation. Free text is synthetic and says so; the hub must never store it.
//!
//! [`Fate::Invalid`] messages carry an element the PLO schema does not allow, so the gateway
//! refuses them at validation.

use super::plan::{Body, Community, Fate, Party, Planned, Zone};

const HER_OID: &str = "2.16.578.1.12.4.1.1.9051";
const PLO_NS: &str = r#"xmlns="http://www.kith.no/xmlstds/po/poKomponent/2012-04-01""#;

fn ident(her: u32) -> String {
    format!(r#"<Ident><Id>{her}</Id><TypeId V="HER" DN="HER-id" S="{HER_OID}"/></Ident>"#)
}

/// A party as MsgHead's `Sender` or `Receiver` content: its organisation with the service or
/// person inside.
fn address(c: &Community, her: u32) -> String {
    let unknown = Party {
        her,
        name: format!("HER-id {her}"),
        org: None,
        municipality: None,
        side: super::plan::Side::Hospital,
        person: false,
    };
    let p = c.party(her).unwrap_or(&unknown);
    let Some(org) = p.org.and_then(|o| c.party(o)) else {
        return format!(
            "<Organisation><OrganisationName>{}</OrganisationName>{}</Organisation>",
            p.name,
            ident(p.her)
        );
    };
    let inner = if p.person {
        format!(
            "<HealthcareProfessional><FamilyName>{}</FamilyName><GivenName>Syntetisk</GivenName>{}</HealthcareProfessional>",
            p.name,
            ident(p.her)
        )
    } else {
        format!(
            "<Organisation><OrganisationName>{}</OrganisationName>{}</Organisation>",
            p.name,
            ident(p.her)
        )
    };
    format!(
        "<Organisation><OrganisationName>{}</OrganisationName>{}{inner}</Organisation>",
        org.name,
        ident(org.her)
    )
}

fn gen_date(m: &Planned) -> String {
    match m.zone {
        Zone::Oslo => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:00",
            m.at.year(),
            m.at.month() as u8,
            m.at.day(),
            m.at.hour(),
            m.at.minute()
        ),
        Zone::Utc => {
            let u = helsemelding::insight::oslo::from_local(m.at).to_offset(time::UtcOffset::UTC);
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:00Z",
                u.year(),
                u.month() as u8,
                u.day(),
                u.hour(),
                u.minute()
            )
        }
    }
}

fn status_dn(s: &str) -> &'static str {
    match s {
        "M" => "Endring",
        "C" => "Kansellering",
        _ => "Ny",
    }
}

fn event_dn(code: &str) -> &'static str {
    match code {
        "1" => "Pasient innlagt",
        "2" => "Pasient utskrevet",
        "3" => "Pasient utskrivningsklar",
        "4" => "Avmeldt som utskrivningsklar",
        _ => "Hendelse",
    }
}

fn plo_element(msg_type: &str) -> &'static str {
    match msg_type {
        "LOG_UTSKRIVNINGSKLAR" => "MeldingUtskrivningsklarPasient",
        "LOG_AVMELDING" => "AvmeldingUtskrivningsklarPasient",
        "LOG_UTSKREVET" => "MeldingOmUtskrevetPasient",
        _ => "MeldingInnlagtPasient",
    }
}

fn type_dn(msg_type: &str) -> &'static str {
    match msg_type {
        "LOG_INNLAGT" => "Melding om innlagt pasient",
        "LOG_UTSKRIVNINGSKLAR" => "Melding om utskrivningsklar pasient",
        "LOG_AVMELDING" => "Avmelding av utskrivningsklar pasient",
        "LOG_UTSKREVET" => "Melding om utskrevet pasient",
        "INNLEGGELSESRAPPORT" => "Innleggelsesrapport",
        "UTSKRIVNINGSRAPPORT" => "Utskrivningsrapport",
        "DIALOG_FORESPORSEL" => "Forespørsel",
        "DIALOG_SVAR" => "Svar på forespørsel",
        _ => "Melding",
    }
}

fn forsendelse(status: &str) -> String {
    format!(
        r#"<InformasjonOmForsendelsen><Forsendelsesstatus V="{status}" DN="{}"/></InformasjonOmForsendelsen>"#,
        status_dn(status)
    )
}

fn content(m: &Planned) -> String {
    let invalid = if m.fate == Fate::Invalid {
        "<Ukjent>ikke i skjemaet</Ukjent>"
    } else {
        ""
    };
    match &m.body {
        Body::Plo {
            status,
            events,
            leaves,
        } => {
            let el = plo_element(m.msg_type);
            let out = leaves.map_or(String::new(), |l| {
                let (state, to) = l.codes();
                format!(
                    r#"<UtskrevetTil><Uttilstand V="{state}" S="2.16.578.1.12.4.1.1.8431"/><UtTil V="{to}" S="2.16.578.1.12.4.1.1.8408"/></UtskrevetTil>"#
                )
            });
            let events: String = events
                .iter()
                .map(|(code, at, anslag)| {
                    format!(
                        r#"<TidsfestetHendelse><Hendelsekode V="{code}" DN="{}" S="2.16.578.1.12.4.1.1.9121"/><BeskrivelseAvHendelse>Syntetisk fritekst som ikke skal lagres</BeskrivelseAvHendelse><TidspunktForHendelse V="{at}"/><Anslag>{anslag}</Anslag></TidsfestetHendelse>"#,
                        event_dn(code)
                    )
                })
                .collect();
            format!(
                r#"<p1:Pasientlogistikk xmlns:p1="http://www.kith.no/xmlstds/po/Pasientlogistikk/2012-04-01" {PLO_NS}>{}{invalid}<p1:{el}>{out}{events}</p1:{el}></p1:Pasientlogistikk>"#,
                forsendelse(status)
            )
        }
        Body::Innleggelsesrapport => format!(
            r#"<p7:Innleggelsesrapport xmlns:p7="http://www.kith.no/xmlstds/po/Innleggelsesrapport/2012-04-01" {PLO_NS}>{}</p7:Innleggelsesrapport>"#,
            forsendelse("N")
        ),
        Body::Utskrivningsrapport => format!(
            r#"<p8:TverrfagligEpikrise xmlns:p8="http://www.kith.no/xmlstds/po/TverrfagligEpikrise/2012-04-01" {PLO_NS}>{}<TypeInnholdIMelding><TypeInnhold V="11" DN="Utskrivningsrapport" S="2.16.578.1.12.4.1.1.9139"/></TypeInnholdIMelding></p8:TverrfagligEpikrise>"#,
            forsendelse("N")
        ),
        Body::Foresporsel { type_foresp } => format!(
            r#"<Dialogmelding xmlns="http://www.kith.no/xmlstds/dialog/2006-10-11"><Foresporsel><TypeForesp V="{type_foresp}" S="2.16.578.1.12.4.1.1.9152"/><Sporsmal>Syntetisk forespørsel som ikke skal lagres.</Sporsmal></Foresporsel></Dialogmelding>"#
        ),
        Body::Svar { type_foresp } => format!(
            r#"<Dialogmelding xmlns="http://www.kith.no/xmlstds/dialog/2006-10-11"><Notat><TemaKodet V="5" DN="Svar på forespørsel" S="2.16.578.1.12.4.1.1.9069"/><TekstNotatInnhold>Syntetisk svar som ikke skal lagres.</TekstNotatInnhold><Foresporsel><TypeForesp V="{type_foresp}" S="2.16.578.1.12.4.1.1.9152"/><Sporsmal>Syntetisk forespørsel.</Sporsmal></Foresporsel></Notat></Dialogmelding>"#
        ),
    }
}

/// The MsgHead document of one planned message.
pub fn render(c: &Community, m: &Planned) -> String {
    let gen = gen_date(m);
    let conv = m.parent.as_deref().map_or(String::new(), |p| {
        format!("<ConversationRef><RefToParent>{p}</RefToParent><RefToConversation>{p}</RefToConversation></ConversationRef>")
    });
    let fnr = c.patients.get(m.patient).map_or("", String::as_str);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Synthetic message of helsemelding-lab community; invented parties and patient. -->
<MsgHead xmlns="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <MsgInfo>
    <Type V="{ty}" DN="{dn}"/>
    <MIGversion>v1.2 2006-05-24</MIGversion>
    <GenDate>{gen}</GenDate>
    <MsgId>{id}</MsgId>
    {conv}
    <Sender>{from}</Sender>
    <Receiver>{to}</Receiver>
    <Patient><FamilyName>Testpasient</FamilyName><GivenName>Syntetisk</GivenName><Ident><Id>{fnr}</Id><TypeId V="FNR" DN="Fødselsnummer" S="2.16.578.1.12.4.1.1.8116"/></Ident></Patient>
  </MsgInfo>
  <Document>
    <RefDoc>
      <IssueDate V="{gen}"/>
      <MsgType V="XML" DN="XML-instans"/>
      <Content>{body}</Content>
    </RefDoc>
  </Document>
</MsgHead>
"#,
        ty = m.msg_type,
        dn = type_dn(m.msg_type),
        id = m.msg_id,
        from = address(c, m.from),
        to = address(c, m.to),
        body = content(m),
    )
}
