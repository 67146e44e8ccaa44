//! Issue 16, item 1 and its tests (item 5): CRLs that keep themselves current, against real parts —
//! a CA of the test's own publishing its CRL over HTTP on 127.0.0.1 (`support::crl`), the real
//! broker and the gateway with refresh intervals of a second.
//!
//! - the CA revokes the GP's certificate and publishes a new CRL: the GP's next message is
//!   answered S03 within one refresh interval, without a restart;
//! - the CRL server goes down while the CRL turns stale: the GP's message is retried (never
//!   rejected, never delivered), the failures are counted; once the server is back with a current
//!   CRL the message is delivered;
//! - the fetched CRL is kept on disk, and a CRL file dropped into `crls/` is picked up;
//! - a reload (SIGHUP, issue 16 item 2) re-reads the trust directory without undoing the refresher:
//!   the CRL it fetched stays in use even where no file has it any more.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use helsemelding::codes::ErrorCode;
use helsemelding::gateway::cli::Overrides;
use helsemelding::gateway::routing_log::Outcome;
use helsemelding::ids::HerId;
use helsemelding::revocation::RevocationSettings;
use support::crl::{trust_dir_with, CrlServer, TestCa, CA_NAME};
use support::gateway::*;
use time::OffsetDateTime;

const GP: HerId = HerId(82001);
const NURSING_HOME: HerId = HerId(81001);
const FILE: &str = "delivered/foresporsel-gp-to-nursing-home.xml";
const GP_SERIAL: u64 = 0x4242;
const REFRESH: Duration = Duration::from_secs(1);

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// A gateway whose trust directory also trusts `ca`, with the GP's registered certificate issued
/// by `ca` (its key at the returned stem), and CRL refresh in seconds.
async fn start(ca: &TestCa, pki: &Path) -> (Harness, PathBuf) {
    let gp = ca.issue(
        pki,
        "82001-sign",
        "Testlegekontoret AS (HER 82001)",
        GP_SERIAL,
    );
    let trust = trust_dir_with(pki, ca);
    let gp_pem = gp.with_extension("pem");
    let h = Harness::start_configured(
        |dir, config| {
            set_trust_dir(config, &trust);
            let parties = dir.join("parties.toml");
            let text = std::fs::read_to_string(&parties).unwrap();
            let old = repo().join("fixtures/gateway-pki/parties/82001-sign.pem");
            let old = format!("{:?}", old.display().to_string());
            assert!(
                text.contains(&old),
                "the scratch register names the GP's certificate"
            );
            std::fs::write(
                &parties,
                text.replace(&old, &format!("{:?}", gp_pem.display().to_string())),
            )
            .unwrap();
        },
        |s| {
            let mut r = RevocationSettings::new(s.store_dir.join("crls"));
            r.refresh = REFRESH;
            r.retry_min = Duration::from_millis(200);
            r.retry_max = Duration::from_secs(1);
            r.timeout = Duration::from_secs(2);
            r.watch = Duration::from_millis(300);
            s.revocation = Some(r);
        },
    )
    .await;
    (h, gp)
}

fn updates(h: &Harness) -> u64 {
    h.gateway
        .metrics()
        .crls
        .get(CA_NAME)
        .map_or(0, |f| f.updates)
}

async fn send(h: &Harness, gp: &Path, msg_id: &str) -> helsemelding::amqp::headers::MessageHeaders {
    let xml = fixture_with_msg_id(FILE, msg_id);
    h.send_xml_signed_by(&xml, gp.to_str().unwrap(), &Overrides::default(), None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_published_by_the_ca_is_answered_s03_without_a_restart() {
    let server = CrlServer::start().await;
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&server.url());
    server.publish(ca.crl(
        &[],
        now() - time::Duration::minutes(1),
        now() + time::Duration::hours(1),
    ));
    let (h, gp) = start(&ca, pki.path()).await;
    // No CRL for the new CA in the trust directory: the first one comes from the server.
    h.wait_for(|m| m.crls.get(CA_NAME).is_some_and(|f| f.updates >= 1))
        .await;
    send(&h, &gp, "6a1f0c2e-1601-4d6e-9a51-000000001601").await;
    let got = h.take(NURSING_HOME, 1).await;
    assert_eq!(got[0].headers.from_her_id, GP);
    // The copy is kept for a restart without network.
    let copies: Vec<_> = std::fs::read_dir(h.dir.path().join("state/crls"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(copies.len(), 1, "one last-good copy");

    // The CA revokes the GP's certificate.
    server.publish(ca.crl(&[GP_SERIAL], now(), now() + time::Duration::hours(1)));
    let published = Instant::now();
    h.wait_for(|m| m.crls.get(CA_NAME).is_some_and(|f| f.updates >= 2))
        .await;
    let took = published.elapsed();
    println!("revocation in use {took:?} after publication (refresh interval {REFRESH:?})");
    assert!(
        took < REFRESH * 3,
        "within one refresh interval (and a tick): {took:?}"
    );
    let sent = send(&h, &gp, "6a1f0c2e-1602-4d6e-9a51-000000001602").await;
    let apprecs = h.take(GP, 1).await;
    assert_eq!(
        apprecs[0].headers.original_message_id.as_ref(),
        Some(&sent.message_id)
    );
    let codes: Vec<_> = h
        .open_apprec(&apprecs[0])
        .errors
        .iter()
        .filter_map(|e| e.code())
        .collect();
    assert!(
        codes.contains(&ErrorCode::S03),
        "expected S03, got {codes:?}"
    );
    h.assert_empty(NURSING_HOME).await;
    // Conditional requests: the unchanged CRL is answered 304 on later refreshes.
    h.wait_for(|_| {
        server
            .not_modified
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    })
    .await;
    let text = h.gateway.metrics().render();
    assert!(
        text.contains(&format!(
            "helsemelding_crl_updates_total{{ca=\"{CA_NAME}\"}} 2"
        )),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_crl_while_the_server_is_down_means_retries_then_delivery_once_it_is_back() {
    let server = CrlServer::start().await;
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&server.url());
    // Valid for 4 s: half of it has passed after 1 s, stale after 3 s.
    server.publish(ca.crl(
        &[],
        now() - time::Duration::seconds(1),
        now() + time::Duration::seconds(3),
    ));
    let (h, gp) = start(&ca, pki.path()).await;
    h.wait_for(|m| m.crls.get(CA_NAME).is_some_and(|f| f.updates >= 1))
        .await;
    server.go_down();
    h.wait_for(|m| {
        m.crls
            .get(CA_NAME)
            .is_some_and(|f| f.stale && f.fetch_failures >= 2)
    })
    .await;
    let sent = send(&h, &gp, "6a1f0c2e-1603-4d6e-9a51-000000001603").await;
    h.wait_for(|m| m.outcome(Outcome::Retry) >= 2).await;
    assert_eq!(
        h.vhost.queue_len("81001_async").await.unwrap(),
        Some(0),
        "not delivered while stale"
    );
    assert_eq!(
        h.vhost.queue_len("82001_async").await.unwrap(),
        Some(0),
        "not rejected while stale"
    );
    let failing = h.gateway.metrics().crls.get(CA_NAME).unwrap();
    assert!(failing.failing, "{failing:?}");

    server.publish(ca.crl(&[], now(), now() + time::Duration::hours(1)));
    let got = h.take(NURSING_HOME, 1).await;
    assert_eq!(got[0].headers.message_id, sent.message_id);
    let f = h.gateway.metrics().crls.get(CA_NAME).unwrap();
    assert!(!f.failing && !f.stale && f.updates >= 2, "{f:?}");
    println!(
        "fetches {} failures {} retries {}",
        f.fetches,
        f.fetch_failures,
        h.gateway.metrics().outcome(Outcome::Retry)
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crl_dropped_into_crls_is_picked_up_without_a_restart() {
    let server = CrlServer::start().await;
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&server.url());
    server.publish(ca.crl(
        &[],
        now() - time::Duration::minutes(1),
        now() + time::Duration::hours(1),
    ));
    let (h, gp) = start(&ca, pki.path()).await;
    h.wait_for(|m| m.crls.get(CA_NAME).is_some_and(|f| f.updates >= 1))
        .await;
    // The server keeps the old CRL; an operator drops the revoking one into crls/.
    let dropped = ca.crl(&[GP_SERIAL], now(), now() + time::Duration::hours(1));
    std::fs::write(pki.path().join("trust/crls/crl-test-ca-new.crl"), dropped).unwrap();
    // And a broken file next to it, which is reported and left out.
    std::fs::write(pki.path().join("trust/crls/broken.crl"), b"not a CRL").unwrap();
    h.wait_for(|_| updates(&h) >= 2).await;
    let sent = send(&h, &gp, "6a1f0c2e-1604-4d6e-9a51-000000001604").await;
    let apprecs = h.take(GP, 1).await;
    assert_eq!(
        apprecs[0].headers.original_message_id.as_ref(),
        Some(&sent.message_id)
    );
    let codes: Vec<_> = h
        .open_apprec(&apprecs[0])
        .errors
        .iter()
        .filter_map(|e| e.code())
        .collect();
    assert!(
        codes.contains(&ErrorCode::S03),
        "expected S03, got {codes:?}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_the_crl_the_refresher_fetched() {
    let server = CrlServer::start().await;
    let pki = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&server.url());
    server.publish(ca.crl(
        &[],
        now() - time::Duration::minutes(1),
        now() + time::Duration::hours(1),
    ));
    let (h, gp) = start(&ca, pki.path()).await;
    h.wait_for(|m| m.crls.get(CA_NAME).is_some_and(|f| f.updates >= 1))
        .await;
    // Nowhere to read it again: the server is down and the last-good copy is gone, so the trust
    // directory as a reload reads it has no CRL for this CA.
    server.go_down();
    for copy in std::fs::read_dir(h.dir.path().join("state/crls"))
        .unwrap()
        .flatten()
    {
        std::fs::remove_file(copy.path()).unwrap();
    }
    let r = h
        .gateway
        .reload(&h.dir.path().join("config/gateway.toml"))
        .await
        .expect("reload applied");
    assert_eq!(r.crls_changed, 0, "{r:?}");
    // Without the fetched CRL the GP's message would be retried, never delivered.
    let sent = send(&h, &gp, "6a1f0c2e-1605-4d6e-9a51-000000001605").await;
    let got = h.take(NURSING_HOME, 1).await;
    assert_eq!(got[0].headers.message_id, sent.message_id);
    h.stop().await;
}
