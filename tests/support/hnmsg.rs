//! The Helsenorge.Messaging emulator (`tests/hnmsg/emulator.py`, python-qpid-proton from the
//! virtualenv `.ci/run` creates in `target/venv`): sends and receives over AMQP 1.0 through
//! RabbitMQ's `rabbitmq_amqp1_0` plugin, as HN.Msg does.

use std::path::PathBuf;
use std::process::Command;

use helsemelding::amqp::headers::MessageHeaders;

use super::repo;

fn python() -> PathBuf {
    let p = repo().join("target/venv/bin/python");
    assert!(
        p.exists(),
        "{} missing: run .ci/run (it creates the virtualenv with python-qpid-proton)",
        p.display()
    );
    p
}

fn run(args: &[String]) -> std::process::Output {
    Command::new(python())
        .arg(repo().join("tests/hnmsg/emulator.py"))
        .args(args)
        .output()
        .expect("emulator runs")
}

/// Sends `body` to `address` in `vhost` as HN.Msg would send a message with these headers: the
/// message function as subject, every application-property a string, not durable.
pub fn send(vhost: &str, address: &str, body: &[u8], h: &MessageHeaders, dir: &std::path::Path) {
    let file = dir.join(format!("{}.body", h.message_id.as_str()));
    std::fs::write(&file, body).unwrap();
    let ts = helsemelding::amqp::headers::hnmsg_timestamp(h.application_timestamp);
    let args: Vec<String> = [
        "send",
        "--vhost",
        vhost,
        "--address",
        address,
        "--body",
        file.to_str().unwrap(),
        "--message-id",
        h.message_id.as_str(),
        "--subject",
        &h.msg_type,
        "--content-type",
        h.content_type.as_str(),
        "--prop",
        &format!("fromHerId={}", h.from_her_id),
        "--prop",
        &format!("toHerId={}", h.to_her_id),
        "--prop",
        &format!("applicationTimeStamp={ts}"),
        "--prop",
        "cpaId=4f6c2b1e-0c1d-4b7a-9d7e-000000000001",
        // The test parties are registered with amqp_users = ["guest"]; HN.Msg itself sets no
        // user-id, so its parties must be registered without amqp_users (README).
        "--user-id",
        "guest",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(&args);
    assert!(
        out.status.success(),
        "emulator send failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One message as an AMQP 1.0 receiver saw it.
#[derive(Debug)]
pub struct Received {
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub body_sha256: String,
    /// The data section itself.
    pub body: Vec<u8>,
    json: serde_json::Value,
}

impl Received {
    /// An application-property that must be there and be a string.
    pub fn prop(&self, name: &str) -> String {
        let v = &self.json["application_properties"][name];
        assert_eq!(
            v[0].as_str(),
            Some("string"),
            "application-property {name} is not a string: {}",
            self.json
        );
        v[1].as_str().unwrap().to_owned()
    }

    pub fn has_prop(&self, name: &str) -> bool {
        !self.json["application_properties"][name].is_null()
    }
}

/// Takes `count` messages from `address` (accepting them), waiting up to 60 s.
pub fn receive(vhost: &str, address: &str, count: usize) -> Vec<Received> {
    let args: Vec<String> = [
        "receive",
        "--vhost",
        vhost,
        "--address",
        address,
        "--count",
        &count.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let out = run(&args);
    assert!(
        out.status.success(),
        "emulator receive from {address} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let json: serde_json::Value = serde_json::from_str(l).expect("emulator JSON");
            let s = |k: &str| json[k].as_str().map(str::to_owned);
            Received {
                subject: s("subject"),
                message_id: s("message_id"),
                correlation_id: s("correlation_id"),
                content_type: s("content_type"),
                body_sha256: s("body_sha256").unwrap_or_default(),
                body: hex::decode(s("body_hex").unwrap_or_default()).expect("body_hex is hex"),
                json,
            }
        })
        .collect()
}
