//! The benchmark's synthetic messages are what the benchmark claims: signed, schema-valid and
//! delivered to the nursing home 81001 by the gateway's own assessment under the shipped
//! configuration plus the benchmark's extra senders, for both kinds, both sizes and every sender (a
//! benchmark of rejected messages would measure the wrong path).

use helsemelding::config::scratch::{write, Scratch};
use helsemelding::gateway::assess::{assess, Inbound, Plan, RecipientPlan};
use helsemelding::gateway::cli::load;
use helsemelding::gateway::envelope_of;
use helsemelding_lab::bench::messages::{extra_parties, senders, sign_many, signers, Kind};

#[test]
fn benchmark_messages_are_delivered_by_the_assessment() {
    let repo = helsemelding_lab::repo_root();
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        &repo,
        dir.path(),
        &Scratch {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f",
            schemas: &repo.join("../shared/standards/xsd"),
            prefetch: Some(256),
            metrics_port: Some(9),
        },
    )
    .unwrap();
    let pki = repo.join("fixtures/gateway-pki");
    let register = dir.path().join("parties.toml");
    let mut parties = std::fs::read_to_string(&register).unwrap();
    parties.push_str(&extra_parties(6, &pki));
    std::fs::write(&register, parties).unwrap();
    let loaded = load(&config).unwrap_or_else(|ps| panic!("config problems: {ps:#?}"));
    let signers = signers(&pki).unwrap();
    let from = senders(6);
    let now = time::OffsetDateTime::now_utc();
    for size in [4096, 51200] {
        let msgs = sign_many(&signers, &from, 6, size, now).unwrap();
        assert_eq!(msgs.iter().filter(|m| m.kind == Kind::Plo).count(), 3);
        let distinct: std::collections::HashSet<_> =
            msgs.iter().map(|m| m.headers.from_her_id).collect();
        assert_eq!(distinct.len(), 6, "one message from each sender");
        for m in &msgs {
            let envelope = envelope_of(&Ok(m.headers.clone()));
            let plan = assess(
                &Inbound {
                    body: &m.body,
                    envelope: envelope.as_ref().map_err(String::as_str),
                    user_id: Some("guest"),
                },
                &loaded.context,
                now,
            );
            match plan {
                Plan::Message(p) => {
                    assert_eq!(p.msg_id, m.headers.message_id);
                    let delivered: Vec<_> = p
                        .recipients
                        .iter()
                        .filter_map(|r| match r {
                            RecipientPlan::Deliver { her, .. } => Some(*her),
                            _ => None,
                        })
                        .collect();
                    assert_eq!(
                        delivered,
                        vec![m.kind.recipient()],
                        "{:?} {size}: {:?}",
                        m.kind,
                        p.recipients
                    );
                }
                other => panic!("{:?} {size}: {other:?}", m.kind),
            }
        }
    }
}
