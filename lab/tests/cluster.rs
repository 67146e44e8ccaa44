//! Issue 14 item 3: a real 3-node RabbitMQ cluster on this machine (extra nodes of their own,
//! started and stopped by the test; the machine's broker on 5672 is not touched), three gateway
//! instances on PostgreSQL, and faults while messages flow: `kill -9` of instances, a broker node
//! stopped. Lost 0, no second AppRec, no inversion, duplicates only with the same MsgId, a graceful
//! stop of every instance. And TLS: node 1 listens with a certificate of a CA made by the test; a
//! client with that CA connects over `amqps://`, one with another CA is refused with an error that
//! names the URL and says the certificate is not signed by the configured CA — in `connect` and in
//! `check-config`.

mod support;

use helsemelding::amqp::{connect, AmqpError, AmqpSettings};
use helsemelding_lab::chaos::scenario::{run, Report, Scenario};
use helsemelding_lab::cluster::Cluster;
use support::{chaos_options, print_report};

/// One cluster at a time: three nodes and three gateways already fill the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every message confirmed, none lost, no second AppRec, nothing misplaced (a duplicate with
/// another MsgId would be), no inversion, one AppRec per rejected message, a graceful stop.
fn assert_nothing_lost(r: &Report, sent: usize) {
    let f = &r.figures;
    assert_eq!(f.sent, sent, "every message confirmed into the intake");
    assert_eq!(
        f.lost,
        0,
        "lost: {:?} (kept {})",
        f.problems,
        r.dir.display()
    );
    assert_eq!(f.second_apprecs, 0, "a second AppRec: {:?}", f.problems);
    assert_eq!(f.misplaced, 0, "misplaced: {:?}", f.problems);
    assert_eq!(f.inversions, 0, "inversions: {:?}", f.problems);
    assert_eq!(
        f.apprecs,
        sent * 75 / 200,
        "one AppRec per rejected message (E21, E10)"
    );
    r.graceful_stop
        .as_ref()
        .expect("SIGTERM to every instance: exit 0, nothing left unacked");
}

/// The cluster forms, a quorum queue declared through node 2 has a member on all three nodes, and
/// node 1's TLS listener takes the right CA and refuses another one clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_replicates_quorum_queues_and_refuses_a_wrong_ca() {
    let _serial = SERIAL.lock().await;
    let mut cluster = tokio::task::spawn_blocking(|| Cluster::start(&std::env::temp_dir()))
        .await
        .unwrap()
        .expect("3-node cluster starts");
    let names = cluster.node_names();
    let mut running = cluster.running_nodes().unwrap();
    running.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(running, expected, "all three nodes run in one cluster");

    let conn = connect(&AmqpSettings::new(cluster.url(1, "%2f"), "test"))
        .await
        .expect("node 2 takes AMQP");
    let ch = conn.create_channel().await.unwrap();
    helsemelding::amqp::topology::declare_quorum_queue(
        &ch,
        "cluster_probe",
        lapin::types::FieldTable::default(),
    )
    .await
    .unwrap();
    let _ = conn.close(200, "declared".into()).await;
    let mut members = cluster.quorum_members("/", "cluster_probe").unwrap();
    members.sort();
    assert_eq!(
        members, expected,
        "a quorum queue has a member on every node"
    );

    // TLS on node 1: the CA that signed its certificate is trusted...
    let mut right = AmqpSettings::new(cluster.tls_url("%2f"), "test");
    right.tls_ca_file = Some(cluster.pki.ca.clone());
    let c = connect(&right)
        .await
        .expect("amqps:// with the broker's CA");
    // ...and the connection is TLS indeed (the broker says so), not plain AMQP on another port.
    let conns = tokio::task::block_in_place(|| {
        cluster.ctl(&[
            "list_connections",
            "ssl",
            "ssl_protocol",
            "--formatter",
            "json",
        ])
    })
    .unwrap();
    let conns: serde_json::Value = serde_json::from_str(&conns).unwrap();
    let conns = conns.as_array().cloned().unwrap_or_default();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(conns[0]["ssl"], true, "{conns:?}");
    println!("TLS connection: {}", conns[0]);
    let _ = c.close(200, "ok".into()).await;
    // ...another CA is refused, as a configuration fault naming the URL and the CA file.
    let mut wrong = right.clone();
    wrong.tls_ca_file = Some(cluster.pki.wrong_ca.clone());
    let e = connect(&wrong)
        .await
        .expect_err("a broker certificate of another CA");
    println!("wrong CA: {e}");
    assert!(
        matches!(e, AmqpError::TlsCertificateRejected { .. }),
        "{e:?}"
    );
    assert!(e.is_configuration(), "{e}");
    let text = e.to_string();
    assert!(text.contains(&right.redacted_url()), "{text}");
    assert!(
        text.contains("not signed by the CA in tls_ca_file"),
        "{text}"
    );
    assert!(
        text.contains(&cluster.pki.wrong_ca.display().to_string()),
        "{text}"
    );

    // check-config connects to each amqps:// node: the wrong CA is a problem naming the key.
    let dir = tempfile::tempdir().unwrap();
    let config = support::write_config(dir.path(), "amqp://guest:guest@127.0.0.1:5672/%2f");
    let with_tls = |ca: &std::path::Path| {
        let text = std::fs::read_to_string(&config).unwrap().replacen(
            "url = \"amqp://guest:guest@127.0.0.1:5672/%2f\"",
            &format!(
                "urls = [{:?}, {:?}]\ntls_ca_file = {:?}",
                cluster.tls_url("%2f"),
                cluster.tls_url("%2f").replace("localhost", "127.0.0.1"),
                ca.display().to_string()
            ),
            1,
        );
        std::fs::write(&config, text).unwrap();
        helsemelding::config::GatewayConfig::load(&config).expect("valid configuration")
    };
    let good = with_tls(&cluster.pki.ca);
    let (problems, warnings) =
        tokio::task::spawn_blocking(move || helsemelding::config::check_tls_brokers(&good))
            .await
            .unwrap();
    assert!(
        problems.is_empty() && warnings.is_empty(),
        "{problems:?} {warnings:?}"
    );
    support::write_config(dir.path(), "amqp://guest:guest@127.0.0.1:5672/%2f");
    let bad = with_tls(&cluster.pki.wrong_ca);
    let (problems, _) =
        tokio::task::spawn_blocking(move || helsemelding::config::check_tls_brokers(&bad))
            .await
            .unwrap();
    println!("check-config: {problems:?}");
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("amqp.urls[0]: ")
            && problems[0].contains("not signed by the CA in tls_ca_file"),
        "{problems:?}"
    );

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .unwrap()
        .expect("the nodes stop");
}

/// Three instances, `kill -9` one after another while 150 messages flow: the partitions they were
/// active on move to the others and back; nothing lost, each sender's order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_kill9_of_instances_loses_nothing_and_keeps_order() {
    let _serial = SERIAL.lock().await;
    let r = run(Scenario::ClusterKill9, &chaos_options(200, 4, 0xc105))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r, 200);
    assert!(
        r.notes.iter().any(|n| n.contains("4 kill -9")),
        "{:?}",
        r.notes
    );
}

/// A broker node the instances are on is stopped and started again (twice, two different nodes):
/// they move to the next node of `[amqp] urls`; the quorum queues keep their majority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_node_stop_moves_instances_to_another_node_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let r = run(Scenario::ClusterNodeStop, &chaos_options(200, 2, 0xc105))
        .await
        .expect("scenario runs");
    print_report(&r);
    assert_nothing_lost(&r, 200);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("moved to the next broker node")),
        "an instance on a stopped node must move: {:?}",
        r.notes
    );
    assert!(
        r.notes
            .iter()
            .filter(|n| n.contains("3 node(s) running after its restart"))
            .count()
            == 2,
        "{:?}",
        r.notes
    );
}
