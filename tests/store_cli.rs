//! The operator commands of this area, run as the real binary: `check-config` and `status`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use helsemelding::address::RecipientRole;
use helsemelding::codes::ErrorCode;
use helsemelding::ids::{HerId, MsgId};
use helsemelding::store::{Change, DeliveryStore, Event, MessageRecord, Transition};
use support::postgres::ScratchDb;
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

/// The shipped register in `root/config/`, its certificate paths made absolute.
fn write_register(root: &Path) {
    let parties = std::fs::read_to_string(repo().join("config/parties.toml"))
        .unwrap()
        .replace(
            "\"fixtures/",
            &format!("\"{}/", repo().join("fixtures").display()),
        );
    std::fs::write(root.join("config/parties.toml"), parties).unwrap();
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

/// A redb store in `state` with one message `id`: a primary recipient delivered, a copy rejected.
fn seed(state: &Path, id: &MsgId) {
    let at = datetime!(2026-01-05 10:00 UTC);
    let store = DeliveryStore::open(state).unwrap();
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

#[test]
fn status_shows_each_recipient_and_fails_for_unknown_ids() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let id = MsgId::new("3f2504e0-4f89-41d3-9a0c-0305e82c3301");
    seed(&root.path().join("var/state"), &id);
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

fn run(args: &[&str], config: Option<&Path>) -> (Option<i32>, String, String) {
    run_env(args, config, &[])
}

/// `run` with extra environment variables.
fn run_env(
    args: &[&str],
    config: Option<&Path>,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let mut cmd = bin();
    cmd.args(&args[..1]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .args(&args[1..])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn migrate_store_copies_into_postgres_and_status_and_check_config_read_it() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let state = root.path().join("var/state");
    let id = MsgId::new("3f2504e0-4f89-41d3-9a0c-0305e82c3303");
    seed(&state, &id);
    let (code, on_redb, err) = run(&["status", id.as_str()], Some(&path));
    assert_eq!(code, Some(0), "{err}");
    let db = ScratchDb::create();
    let from = state.to_str().unwrap();

    let (code, out, err) = run(&["migrate-store", "--from", from, "--to", &db.url], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(": 1 records"), "{out}");
    assert!(out.contains("inserted: 1, already present: 0"), "{out}");
    assert!(out.contains("verified: 1 of 1 identical"), "{out}");
    // Idempotent: a second run changes nothing and still verifies.
    let (code, out, err) = run(&["migrate-store", "--from", from, "--to", &db.url], None);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("inserted: 0, already present: 1"), "{out}");
    assert!(out.contains("verified: 1 of 1 identical"), "{out}");

    // status prints the same from PostgreSQL as from redb.
    let (code, on_pg, err) = run(&["status", "--store-url", &db.url, id.as_str()], None);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(on_pg, on_redb);
    let (code, _, err) = run(&["status", "--store-url", &db.url, "no-such-id"], None);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown MsgId no-such-id"), "{err}");

    // A whole configuration on PostgreSQL: check-config reports the schema, status reads it.
    write_register(root.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "schemas = \"xsd\"",
            &format!("schemas = {:?}", repo().join("xsd").display().to_string()),
        )
        .replace(
            "backend = \"redb\"",
            &format!("backend = \"postgres\"\nurl = {:?}", db.url),
        );
    std::fs::write(&path, text).unwrap();
    let (code, out, err) = run(&["check-config"], Some(&path));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("store postgres")
            && out.contains("schema version 1 of 1, no pending migrations"),
        "{out}"
    );
    let (code, on_configured, err) = run(&["status", id.as_str()], Some(&path));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(on_configured, on_redb);

    // A database that cannot be reached is a problem of the configuration.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(&db.url, "postgres://postgres@127.0.0.1:1/none");
    std::fs::write(&path, text).unwrap();
    let (code, out, _) = run(&["check-config"], Some(&path));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("store.url") && out.contains("connecting"),
        "{out}"
    );
    // And a bad [store] section is reported like any other key.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("backend = \"postgres\"", "backend = \"sqlite\"");
    std::fs::write(&path, text).unwrap();
    let (code, out, _) = run(&["check-config"], Some(&path));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("store.backend") && out.contains("\"sqlite\""),
        "{out}"
    );
    // postgres needs a url; redb takes none.
    let text = std::fs::read_to_string(&path).unwrap();
    let no_url: String = text
        .lines()
        .filter(|l| !l.starts_with("url = \"postgres://"))
        .map(|l| format!("{l}\n"))
        .collect::<String>()
        .replace("backend = \"sqlite\"", "backend = \"postgres\"");
    std::fs::write(&path, no_url).unwrap();
    let (code, out, _) = run(&["check-config"], Some(&path));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("store.url") && out.contains("needs url"),
        "{out}"
    );
    std::fs::write(
        &path,
        text.replace("backend = \"sqlite\"", "backend = \"redb\""),
    )
    .unwrap();
    let (code, out, _) = run(&["check-config"], Some(&path));
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("store.url") && out.contains("only for backend"),
        "{out}"
    );
}

#[test]
fn store_url_env_for_check_config_and_status_while_tail_and_reload_need_no_secrets() {
    let root = tempfile::tempdir().unwrap();
    let path = config_in(root.path());
    let state = root.path().join("var/state");
    let id = MsgId::new("3f2504e0-4f89-41d3-9a0c-0305e82c3304");
    seed(&state, &id);
    let db = ScratchDb::create();
    let (code, out, err) = run(
        &[
            "migrate-store",
            "--from",
            state.to_str().unwrap(),
            "--to",
            &db.url,
        ],
        None,
    );
    assert_eq!(code, Some(0), "{out}{err}");
    write_register(root.path());
    // Both URLs from the environment, as a service's unit gives them.
    let (amqp_var, store_var) = ("HM_TEST_CLI_AMQP_URL", "HM_TEST_CLI_STORE_URL");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "schemas = \"xsd\"",
            &format!("schemas = {:?}", repo().join("xsd").display().to_string()),
        )
        .replace(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!("url_env = \"{amqp_var}\""),
        )
        .replace(
            "backend = \"redb\"",
            &format!("backend = \"postgres\"\nurl_env = \"{store_var}\""),
        );
    std::fs::write(&path, text).unwrap();
    let env = [
        (amqp_var, "amqp://guest:guest@127.0.0.1:5672/%2f"),
        (store_var, db.url.as_str()),
    ];

    // Unset: check-config names both variables and fails.
    let (code, out, _) = run_env(&["check-config"], Some(&path), &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("store.url_env") && l.contains(store_var) && l.contains("not set")),
        "{out}"
    );
    assert!(out.contains(amqp_var), "{out}");
    // Set: the store is reached and reported; status reads the record from it.
    let (code, out, err) = run_env(&["check-config"], Some(&path), &env);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("store postgres") && out.contains("no pending migrations"),
        "{out}"
    );
    let (code, out, err) = run_env(&["status", id.as_str()], Some(&path), &env);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("80101") && out.contains("Delivered"), "{out}");

    // tail and reload read only [paths]: an operator's shell without the secrets can use them.
    let line = r#"{"ts":"2026-01-05T10:00:00Z","msg_id":"3f2504e0-4f89-41d3-9a0c-0305e82c3304","type":"DIALOG_FORESPORSEL","from_her":80301,"to_her":80101,"outcome":"delivered","elapsed_ms":3.5}"#;
    std::fs::write(root.path().join("var/routing.jsonl"), format!("{line}\n")).unwrap();
    let (code, out, err) = run_env(&["tail"], Some(&path), &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("DELIVERED") && out.contains("80301 -> 80101"),
        "rendered, not raw: {out}"
    );
    let (code, _, err) = run_env(&["reload"], Some(&path), &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no pid file at"), "{err}");
}
