//! The benchmark's synthetic messages are what the benchmark claims: signed, schema-valid and
//! delivered to the nursing home 81001 by the gateway's own assessment under the shipped
//! configuration, for both kinds and both sizes (a benchmark of rejected messages would measure
//! the wrong path).

use helsemelding::config::scratch::{write, Scratch};
use helsemelding::gateway::assess::{assess, Inbound, Plan, RecipientPlan};
use helsemelding::gateway::cli::load;
use helsemelding::gateway::envelope_of;
use helsemelding_lab::bench::messages::{sign_many, signers, Kind};

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
    let loaded = load(&config).unwrap_or_else(|ps| panic!("config problems: {ps:#?}"));
    let signers = signers(&repo.join("fixtures/gateway-pki")).unwrap();
    let now = time::OffsetDateTime::now_utc();
    for size in [4096, 51200] {
        let msgs = sign_many(&signers, 4, size, now).unwrap();
        assert_eq!(msgs.iter().filter(|m| m.kind == Kind::Plo).count(), 2);
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
