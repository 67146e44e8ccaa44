//! Issue 16, item 2 and its tests (item 5): reloading the configuration, the register and the
//! trust directory without a restart, against the real broker (a vhost per test).
//!
//! - a reload adds a party: a message to it, answered E21 before, is now delivered to its new
//!   queue, which the reload declared;
//! - a broken register (a syntax error; a duplicate HER-id with an unreadable certificate) is
//!   refused with every problem at `file:line`, the metrics say so, and the old register keeps
//!   routing; the fixed register is then taken;
//! - with `hnmsg_exchange`, a party added gets its HN.Msg binding and a party removed loses it,
//!   while its queues stay (they may hold messages);
//! - `helsemelding serve` holds a pid file, `helsemelding reload` sends it SIGHUP (the outcome and
//!   every problem in the gateway's log), a second gateway on the same state directory is refused,
//!   and without a running gateway `reload` says so (no pid file, stale pid file).

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;

use helsemelding::amqp::testing::TestVhost;
use helsemelding::codes::ErrorCode;
use helsemelding::gateway::cli::Overrides;
use helsemelding::ids::{HerId, MsgId};
use support::gateway::*;
use support::serve::{helsemelding, Serve};

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);
const HOME_CARE: HerId = HerId(81002);
/// From the GP to the nursing home (81001, a level-2 service of 81000).
const FILE: &str = "delivered/foresporsel-gp-to-nursing-home.xml";

/// The register `text` without the `[[party]]` entry of `her`.
fn without_party(text: &str, her: HerId) -> String {
    let entries: Vec<&str> = text.split("[[party]]").collect();
    let kept: Vec<&str> = entries
        .iter()
        .copied()
        .filter(|e| !e.contains(&format!("\nher_id = {her}\n")))
        .collect();
    assert_eq!(kept.len() + 1, entries.len(), "one entry for {her}");
    kept.join("[[party]]")
}

/// The shipped register as the scratch configuration has it (certificate paths made absolute).
fn shipped_register() -> String {
    std::fs::read_to_string(support::repo().join("config/parties.toml"))
        .unwrap()
        .replace(
            "\"fixtures/",
            &format!("\"{}/fixtures/", support::repo().display()),
        )
}

/// 1-based line of the first `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).unwrap_or_else(|| panic!("{needle:?}"));
    text[..at].matches('\n').count() + 1
}

/// A party entry whose HER-id is already registered and whose certificate does not exist.
fn broken_entry(her: HerId) -> String {
    format!(
        "\n[[party]]\nher_id = {her}\nname = \"registered twice\"\naccepts = [\"APPREC\"]\ncertificates = [\"/nonexistent/reload-test.pem\"]\n"
    )
}

async fn send(h: &Harness, msg_id: &str) {
    h.send_fixture_with(
        FILE,
        GP,
        &Overrides {
            msg_id: Some(MsgId::new(msg_id)),
            ..Overrides::default()
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_a_party_whose_messages_are_then_delivered_to_its_new_queue() {
    let h = Harness::start_configured(
        |dir, _| {
            let parties = dir.join("parties.toml");
            let text = std::fs::read_to_string(&parties).unwrap();
            std::fs::write(&parties, without_party(&text, NURSING_HOME)).unwrap();
        },
        |_| {},
    )
    .await;
    let config = h.dir.path().join("config/gateway.toml");
    let parties = h.dir.path().join("parties.toml");
    assert_eq!(h.vhost.queue_len("81001_async").await.unwrap(), None);

    // Not in the register: a level-2 service unknown at a known organisation is E21.
    send(&h, "6a1f0c2e-1602-4d6e-9a51-000000000001").await;
    let answer = h.take(GP, 1).await;
    let rec = h.open_apprec(&answer[0]);
    assert!(
        rec.errors.iter().any(|e| e.code() == Some(ErrorCode::E21)),
        "{:?}",
        rec.errors
    );

    // The console's party list (its queue table) follows the gateway's.
    let console_parties = h.gateway.party_list();
    assert!(!console_parties().contains(&NURSING_HOME));

    // The operator adds the party and reloads.
    let full = shipped_register();
    std::fs::write(&parties, full).unwrap();
    let r = h.gateway.reload(&config).await.expect("reload applied");
    assert_eq!(r.added, [NURSING_HOME]);
    assert!(r.removed.is_empty() && r.needs_restart.is_empty(), "{r:?}");
    assert_eq!(
        h.vhost.queue_len("81001_async").await.unwrap(),
        Some(0),
        "the reload declared the new party's queue"
    );
    assert!(console_parties().contains(&NURSING_HOME));

    send(&h, "6a1f0c2e-1602-4d6e-9a51-000000000002").await;
    let got = h.take(NURSING_HOME, 1).await;
    assert_eq!(got[0].headers.from_her_id, GP);
    assert_eq!(got[0].headers.to_her_id, NURSING_HOME);
    let m = h.gateway.metrics();
    assert!(m.reload.last_ok.load(Ordering::Relaxed));
    assert_eq!(m.reload.attempts.load(Ordering::Relaxed), 1);
    assert!(m
        .render()
        .contains("\nhelsemelding_reload_last_success 1\n"));
    assert!(m
        .render()
        .contains("\nhelsemelding_reload_failures_total 0\n"));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_register_is_refused_with_every_problem_and_the_old_one_keeps_routing() {
    let h = Harness::start().await;
    let config = h.dir.path().join("config/gateway.toml");
    let parties = h.dir.path().join("parties.toml");
    let good = std::fs::read_to_string(&parties).unwrap();
    let at = |line: usize| format!("{}:{line}: ", parties.display());

    // 1. Not TOML.
    let broken = format!("{good}\n[[party]\nher_id = 83001\n");
    std::fs::write(&parties, &broken).unwrap();
    let f = h.gateway.reload(&config).await.expect_err("refused");
    let line = line_of(&broken, "[[party]\nher_id = 83001");
    assert!(
        f.problems
            .iter()
            .any(|p| p.starts_with(&at(line)) && p.contains("not valid TOML")),
        "{:#?}",
        f.problems
    );
    let m = h.gateway.metrics();
    assert!(!m.reload.last_ok.load(Ordering::Relaxed));
    assert!(m
        .render()
        .contains("\nhelsemelding_reload_last_success 0\n"));
    assert!(m
        .render()
        .contains("\nhelsemelding_reload_failures_total 1\n"));
    assert!(m.reload.last_at.load(Ordering::Relaxed) > 0);

    // The register in use is the old one: the nursing home still gets its messages.
    send(&h, "6a1f0c2e-1603-4d6e-9a51-000000000001").await;
    assert_eq!(h.take(NURSING_HOME, 1).await[0].headers.from_her_id, GP);

    // 2. Valid TOML, but a HER-id registered twice, with a certificate that does not exist.
    let broken = format!("{good}{}", broken_entry(HOME_CARE));
    std::fs::write(&parties, &broken).unwrap();
    let f = h.gateway.reload(&config).await.expect_err("refused");
    let entry = broken.rfind("[[party]]").unwrap();
    let her_line = line_of(&broken[entry..], "her_id") + broken[..entry].matches('\n').count();
    let cert_line =
        line_of(&broken[entry..], "certificates") + broken[..entry].matches('\n').count();
    assert!(
        f.problems
            .iter()
            .any(|p| p.starts_with(&at(her_line)) && p.contains("registered twice")),
        "{:#?}",
        f.problems
    );
    assert!(
        f.problems
            .iter()
            .any(|p| p.starts_with(&at(cert_line)) && p.contains("/nonexistent/reload-test.pem")),
        "{:#?}",
        f.problems
    );
    assert_eq!(m.reload.failures.load(Ordering::Relaxed), 2);
    send(&h, "6a1f0c2e-1603-4d6e-9a51-000000000002").await;
    assert_eq!(h.take(NURSING_HOME, 1).await[0].headers.from_her_id, GP);

    // 3. Fixed: taken, and the metrics say so.
    std::fs::write(&parties, &good).unwrap();
    let r = h.gateway.reload(&config).await.expect("reload applied");
    assert_eq!(r.summary(), "no change to parties, certificates or CRLs");
    assert!(m.reload.last_ok.load(Ordering::Relaxed));
    assert_eq!(m.reload.attempts.load(Ordering::Relaxed), 3);
    assert_eq!(m.reload.failures.load(Ordering::Relaxed), 2);
    send(&h, "6a1f0c2e-1603-4d6e-9a51-000000000003").await;
    assert_eq!(h.take(NURSING_HOME, 1).await[0].headers.from_her_id, GP);
    h.stop().await;
}

/// `helsemelding reload`, failing with `expect` on stderr.
fn reload_refused(config: &Path, expect: &str) {
    let out = helsemelding(&["reload"], config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(expect), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reload_command_signals_the_running_gateway_and_says_when_there_is_none() {
    let vhost = TestVhost::create()
        .await
        .expect("test vhost (is RabbitMQ running?)");
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), vhost.url());
    let parties = dir.path().join("parties.toml");
    let good = std::fs::read_to_string(&parties).unwrap();
    std::fs::write(&parties, without_party(&good, HOME_CARE)).unwrap();
    let pid_file = dir.path().join("state/helsemelding.pid");
    reload_refused(&config, "no pid file at");

    let mut serve = Serve::start(&config, dir.path(), "serve");
    serve.wait_for_queue(&vhost, "81001_async").await;
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        serve.pid().to_string()
    );
    // One gateway per state directory.
    let second = helsemelding(&["serve"], &config);
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains(&format!(
        "another gateway (pid {}) is running with this state directory",
        serve.pid()
    )));

    // A broken register: refused, every problem in the log at file:line.
    let broken = format!("{good}{}", broken_entry(NURSING_HOME));
    std::fs::write(&parties, &broken).unwrap();
    let out = helsemelding(&["reload"], &config);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains(&format!("sent SIGHUP to the gateway (pid {})", serve.pid())));
    serve.wait_for_log("reload failed", 1).await;
    let entry = broken.rfind("[[party]]").unwrap();
    let her_line = line_of(&broken[entry..], "her_id") + broken[..entry].matches('\n').count();
    let log = serve.stderr();
    assert!(
        log.contains(&format!(
            "reload problem: {}:{her_line}: party[",
            parties.display()
        )),
        "{log}"
    );
    assert!(log.contains("/nonexistent/reload-test.pem"), "{log}");
    assert_eq!(vhost.queue_len("81002_async").await.unwrap(), None);

    // Fixed, with home care added: its queues are declared and the change logged. A setting only
    // a restart applies is named, and its running value stays.
    std::fs::write(&parties, &good).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nprefetch = 256\n"));
    std::fs::write(
        &config,
        text.replace("\nprefetch = 256\n", "\nprefetch = 16\n"),
    )
    .unwrap();
    assert!(helsemelding(&["reload"], &config).status.success());
    serve
        .wait_for_log("configuration reloaded: parties added: 81002", 1)
        .await;
    serve
        .wait_for_log(
            "changed, but only a restart applies them (the running values stay): amqp.prefetch",
            1,
        )
        .await;
    serve.wait_for_queue(&vhost, "81002_async").await;
    assert_eq!(vhost.queue_len("81002_error").await.unwrap(), Some(0));

    assert_eq!(serve.stop(), Some(0), "clean stop");
    assert!(
        !pid_file.exists(),
        "the pid file is removed at a clean stop"
    );
    reload_refused(&config, "no pid file at");
    // Left behind by a gateway that died: no process has this pid (above the kernel's pid_max).
    std::fs::write(&pid_file, "2147483632\n").unwrap();
    reload_refused(
        &config,
        "names process 2147483632, which is not a running gateway",
    );
    let _ = vhost.delete().await;
}

/// Publishes to the HN.Msg exchange with `routing_key`, mandatory: `false` when nothing is bound.
async fn routed(publisher: &helsemelding::amqp::Publisher, routing_key: &str) -> bool {
    publisher
        .publish_with_properties(
            helsemelding::amqp::Route::Exchange {
                exchange: "NHNTestServiceBus",
                routing_key,
            },
            lapin::BasicProperties::default(),
            b"routing probe",
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_binds_added_parties_to_the_hnmsg_exchange_and_unbinds_removed_ones() {
    let h = Harness::start_configured(
        |dir, config| {
            let text = std::fs::read_to_string(config).unwrap();
            let commented = "# hnmsg_exchange = \"NHNTestServiceBus\"";
            assert!(text.contains(commented), "the shipped config names it");
            std::fs::write(config, text.replace(commented, &commented[2..])).unwrap();
            let parties = dir.join("parties.toml");
            let text = std::fs::read_to_string(&parties).unwrap();
            std::fs::write(&parties, without_party(&text, NURSING_HOME)).unwrap();
        },
        |_| {},
    )
    .await;
    let config = h.dir.path().join("config/gateway.toml");
    let parties = h.dir.path().join("parties.toml");
    let conn = helsemelding::amqp::connect(&h.vhost.settings("test-probe"))
        .await
        .unwrap();
    let publisher = helsemelding::amqp::Publisher::open(&conn).await.unwrap();
    // The session is up once the whole topology, bindings included, is declared.
    h.wait_for(|m| m.broker_connected.load(Ordering::Relaxed))
        .await;
    assert!(!routed(&publisher, "81001_async").await);
    assert!(routed(&publisher, "81002_async").await);

    // The nursing home in, home care out.
    let text = shipped_register();
    std::fs::write(&parties, without_party(&text, HOME_CARE)).unwrap();
    let r = h.gateway.reload(&config).await.expect("reload applied");
    assert_eq!(
        (r.added.as_slice(), r.removed.as_slice()),
        (&[NURSING_HOME][..], &[HOME_CARE][..])
    );
    assert!(routed(&publisher, "81001_async").await);
    assert!(!routed(&publisher, "81002_async").await);
    // Home care's queues stay.
    assert_eq!(h.vhost.queue_len("81002_async").await.unwrap(), Some(0));
    assert_eq!(h.vhost.queue_len("81002_error").await.unwrap(), Some(0));
    let _ = conn.close(200, "done".into()).await;
    h.stop().await;
}
