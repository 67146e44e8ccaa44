//! The operator commands of this area, run as the real binary: `check-config` and `status`.

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding::address::RecipientRole;
use helsemelding::codes::ErrorCode;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::store::{Change, DeliveryStore, Event, MessageRecord, Transition};
use time::macros::datetime;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_helsemelding"))
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A gateway.toml in `root/config/` whose state directory is `root/var/state`.
fn config_in(root: &Path) -> PathBuf {
    let dir = root.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(repo().join("config/gateway.toml")).unwrap();
    let fixtures = repo().join("fixtures");
    let text = text.replace("\"fixtures/", &format!("\"{}/", fixtures.display()));
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_the_shipped_configuration() {
    let out = bin()
        .args(["check-config", "--config"])
        .arg(repo().join("config/gateway.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("configuration OK: 9 parties"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("guest:guest"),
        "the password is not printed: {stdout}"
    );
}

#[test]
fn check_config_prints_every_problem_and_fails() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("prefetch = 256", "prefetch = 256\nprefetsh = 1");
    let trust = format!(
        "trust_dir = \"{}/gateway-pki\"",
        repo().join("fixtures").display()
    );
    let text = text.replace(&trust, "trust_dir = \"config/trust\"");
    std::fs::write(&path, text).unwrap();
    // No parties.toml and no trust dir under this root.
    let out = bin()
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("amqp.prefetsh: unknown field")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.contains("paths.trust_dir")),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("paths.register") && l.contains("parties.toml")),
        "{stdout}"
    );
}

#[test]
fn status_shows_each_recipient_and_fails_for_unknown_ids() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let id = MsgId::new("3f2504e0-4f89-41d3-9a0c-0305e82c3301");
    let at = datetime!(2026-01-05 10:00 UTC);
    {
        let store = DeliveryStore::open(&root.path().join("var/state")).unwrap();
        let rec = MessageRecord::new(
            HerId(80301),
            id.clone(),
            "DIALOG_FORESPORSEL",
            b"synthetic",
            at,
            Some(at),
            [
                (Some(HerId(80101)), RecipientRole::Primary),
                (Some(HerId(80299)), RecipientRole::Copy),
            ],
        );
        let tr = |recipient, event, codes: Vec<ErrorCode>| {
            Change::Apply(Transition {
                sender: HerId(80301),
                msg_id: id.clone(),
                recipient,
                event,
                at,
                apprec_id: None,
                codes,
            })
        };
        store
            .commit_batch(&[
                Change::Create(rec),
                tr(0, Event::Routed, vec![]),
                tr(0, Event::Delivered, vec![]),
                tr(1, Event::Rejected(ErrorCode::E21), vec![ErrorCode::E21]),
            ])
            .unwrap();
    }
    let out = bin()
        .args(["status", "--config"])
        .arg(&path)
        .arg(id.as_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].contains(id.as_str())
            && lines[0].contains("80301")
            && lines[0].contains("DIALOG_FORESPORSEL"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("80101") && lines[1].contains("PRIM") && lines[1].contains("Delivered"),
        "{stdout}"
    );
    assert!(
        lines[2].contains("80299")
            && lines[2].contains("COP")
            && lines[2].contains("Rejected(E21)")
            && lines[2].contains("code E21"),
        "{stdout}"
    );
    assert!(lines[1].contains("2026-01-05T10:00:00Z"), "{stdout}");

    let out = bin()
        .args(["status", "--config"])
        .arg(&path)
        .arg("no-such-id")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown MsgId no-such-id"));
}

#[test]
fn status_without_a_store_says_so() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let out = bin()
        .args(["status", "--config"])
        .arg(&path)
        .arg("x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no delivery store at") && stderr.contains("delivery.redb"),
        "{stderr}"
    );
}

#[test]
fn status_reads_while_the_gateway_holds_the_store_open() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let id = MsgId::new("3f2504e0-4f89-41d3-9a0c-0305e82c3302");
    let at = datetime!(2026-01-05 10:00 UTC);
    let store = DeliveryStore::open(&root.path().join("var/state")).unwrap();
    let rec = MessageRecord::new(
        HerId(80301),
        id.clone(),
        "DIALOG_SVAR",
        b"s",
        at,
        None,
        [(Some(HerId(80101)), RecipientRole::Primary)],
    );
    store.commit_batch(&[Change::Create(rec)]).unwrap();
    let out = bin()
        .args(["status", "--config"])
        .arg(&path)
        .arg(id.as_str())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("Received"), "{stdout}");
    drop(store);
}
