//! The three-instance deployment exactly as shipped (`deploy/three-instances/`: three configurations
//! and the systemd template unit), run as the README installs it, against the real local RabbitMQ
//! and PostgreSQL.
//!
//! The test lays out an installation root like `/opt/helsemelding` in a temporary directory: the
//! binary, the three shipped configuration files and the unit (links, not copies: what runs is what
//! ships), the synthetic register, keys and schemas beside them. It reads the unit's `ExecStartPre=`
//! and `ExecStart=` and runs those command lines for instances a, b and c (with `%i` and the
//! installation root put in, as systemd does), giving each the environment variables the
//! configurations name (`url_env`) for a vhost and a PostgreSQL database of its own.
//!
//! Then: senders publish as EHRs do (signed, encrypted to the hub), most through the intake exchange
//! (the broker hashes them to partitions 1–6), one per partition straight to that partition's queue,
//! so that every partition carries traffic and its owner is known. It checks that the broker makes
//! each instance active on the partitions its `prefer_partitions` names (its consumer list, mapped
//! to our processes through their sockets), that each of those senders was served by that instance
//! (its routing log), and that every message arrives exactly once and in its sender's order. Then
//! instance b gets SIGTERM while traffic flows: it exits 0, its partitions move to a and c, and the
//! rest arrives, still exactly once and in order.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helsemelding::amqp::connection::connect;
use helsemelding::amqp::headers::{ContentType, MessageHeaders};
use helsemelding::amqp::publisher::{Publisher, Route};
use helsemelding::amqp::testing::TestVhost;
use helsemelding::amqp::topology::Topology;
use helsemelding::cms::envelope::RecipientCert;
use helsemelding::cms::Signer;
use helsemelding::gateway::cli::{headers_for, Overrides};
use helsemelding::ids::{HerId, MsgId};
use lapin::options::BasicGetOptions;
use support::gateway::{fixture_with_msg_id, with_gen_date};
use support::postgres::ScratchDb;
use support::repo;

/// Where the unit expects the installation (replaced by the test's own root).
const PREFIX: &str = "/opt/helsemelding";
const INSTANCES: [&str; 3] = ["a", "b", "c"];
const RECIPIENT: HerId = HerId(81001);
/// Senders through the intake exchange: the shipped GP, and GP persons 83001… of the same office.
const HASHED_SENDERS: u32 = 10;
/// Messages per sender before the stop, while it happens, and after it.
const ROUNDS_BEFORE: usize = 10;
const ROUNDS_DURING: usize = 6;
const ROUNDS_AFTER: usize = 6;

fn deploy_dir() -> PathBuf {
    repo().join("deploy/three-instances")
}

/// The unit's command line for `key` (`ExecStartPre`, `ExecStart`), as systemd would run it for
/// `instance` with the installation at `root`.
fn unit_command(key: &str, instance: &str, root: &Path) -> Command {
    let unit = std::fs::read_to_string(deploy_dir().join("helsemelding@.service")).unwrap();
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect();
    assert_eq!(lines.len(), 1, "one {key}= in the unit: {lines:?}");
    let args: Vec<PathBuf> = lines[0]
        .replace("%i", instance)
        .split_whitespace()
        .map(|a| match a.strip_prefix(PREFIX) {
            Some(rest) => root.join(rest.trim_start_matches('/')),
            None => PathBuf::from(a),
        })
        .collect();
    assert_eq!(
        args[0],
        root.join("bin/helsemelding"),
        "{key} runs the installed binary"
    );
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..]);
    cmd
}

/// `systemd-analyze verify` on the unit as instance `a`, its paths moved into `root`: no directive
/// it does not know, no command that is not there. Said and passed over where systemd is not
/// installed (a container without it).
fn verify_unit(root: &Path) {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit's syntax is not verified here");
        return;
    };
    assert!(version.status.success());
    let unit = std::fs::read_to_string(deploy_dir().join("helsemelding@.service"))
        .unwrap()
        .replace(PREFIX, &root.display().to_string());
    let dir = root.join("systemd");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("helsemelding@a.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
}

/// The environment variables the shipped configurations name for the broker and the store URL
/// (the same in all three).
fn url_env_names() -> (String, String) {
    let names: HashSet<(String, String)> = INSTANCES
        .iter()
        .map(|i| {
            let text =
                std::fs::read_to_string(deploy_dir().join(format!("gateway-{i}.toml"))).unwrap();
            let v: toml::Table = toml::from_str(&text).unwrap();
            let name = |section: &str| {
                v[section]["url_env"]
                    .as_str()
                    .unwrap_or_else(|| panic!("gateway-{i}.toml: {section}.url_env"))
                    .to_owned()
            };
            (name("amqp"), name("store"))
        })
        .collect();
    assert_eq!(
        names.len(),
        1,
        "the three name the same variables: {names:?}"
    );
    names.into_iter().next().unwrap()
}

/// `prefer_partitions` and `http_listen` port of each shipped configuration, and `partitions`.
fn shipped_shares() -> (u16, BTreeMap<&'static str, (Vec<u16>, u16)>) {
    let mut k = None;
    let mut shares = BTreeMap::new();
    for i in INSTANCES {
        let text = std::fs::read_to_string(deploy_dir().join(format!("gateway-{i}.toml"))).unwrap();
        let v: toml::Table = toml::from_str(&text).unwrap();
        let partitions = v["amqp"]["partitions"].as_integer().unwrap() as u16;
        assert_eq!(
            *k.get_or_insert(partitions),
            partitions,
            "same K everywhere"
        );
        let prefer = v["amqp"]["prefer_partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_integer().unwrap() as u16)
            .collect();
        let listen = v["paths"]["http_listen"].as_str().unwrap();
        let port = listen.rsplit_once(':').unwrap().1.parse().unwrap();
        shares.insert(i, (prefer, port));
    }
    (k.unwrap(), shares)
}

/// The sender published straight to partition `p`'s queue (so its owner is known).
fn direct_sender(p: u16) -> HerId {
    HerId(83101 + u32::from(p))
}

fn hashed_senders() -> Vec<HerId> {
    std::iter::once(HerId(82001))
        .chain((1..=HASHED_SENDERS).map(|n| HerId(83000 + n)))
        .collect()
}

/// An installation root like `/opt/helsemelding`: the binary, the shipped configurations (links),
/// and the site's own files — the synthetic register (with the extra GP persons), the hub's keys
/// and trust directory from the test PKI, the schemas.
fn install_root(root: &Path, k: u16) {
    let link = |from: &Path, to: &str| {
        let to = root.join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(from, &to)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", to.display(), from.display()));
    };
    let fixtures = repo().join("fixtures");
    let pki = fixtures.join("gateway-pki");
    link(
        Path::new(env!("CARGO_BIN_EXE_helsemelding")),
        "bin/helsemelding",
    );
    for i in INSTANCES {
        link(
            &deploy_dir().join(format!("gateway-{i}.toml")),
            &format!("config/gateway-{i}.toml"),
        );
    }
    for (from, to) in [
        ("parties/90000-sign.key", "config/gateway-sign.key"),
        ("parties/90000-sign.pem", "config/gateway-sign.pem"),
        ("encryption/90000-enc.key", "config/gateway-enc.key"),
        ("encryption/90000-enc.pem", "config/gateway-enc.pem"),
    ] {
        link(&pki.join(from), to);
    }
    link(&pki, "config/trust");
    link(&repo().join("xsd"), "xsd");
    let mut parties = std::fs::read_to_string(repo().join("config/parties.toml"))
        .unwrap()
        .replace("\"fixtures/", &format!("\"{}/", fixtures.display()));
    let extra = hashed_senders()
        .into_iter()
        .skip(1)
        .chain((0..=k).map(direct_sender));
    for her in extra {
        parties.push_str(&format!(
            "\n[[party]]\nher_id = {her}\nname = \"Testlegekontoret AS, fastlege {her}\"\norganisation_her_id = 82000\naccepts = [\"DIALOG_FORESPORSEL\", \"APPREC\"]\ncertificates = [{:?}]\namqp_users = [\"guest\"]\nencryption_certificate = {:?}\n",
            pki.join("parties/82001-sign.pem").display().to_string(),
            pki.join("encryption/82001-enc.pem").display().to_string(),
        ));
    }
    std::fs::write(root.join("config/parties.toml"), parties).unwrap();
}

/// One running instance (`ExecStart=`), stopped with SIGTERM on drop.
struct Instance {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Instance {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("instance {} exited ({status}):\n{}", self.name, self.log());
        }
    }

    /// SIGTERM, then the exit code.
    fn terminate(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().unwrap().code()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

async fn ctl(args: &[&str]) -> String {
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .await
        .expect("rabbitmqctl runs");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The local TCP ports of `pid`'s sockets (from /proc: its descriptors' socket inodes, looked up
/// in the kernel's TCP tables).
fn local_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                if let Some(port) = cols[1]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                {
                    ports.insert(port);
                }
            }
        }
    }
    ports
}

/// Per intake queue: the consumers the broker has (active first), each named by the instance
/// whose process holds its connection.
async fn consumers(
    vhost: &str,
    instances: &[(&'static str, u32)],
) -> BTreeMap<String, (Option<&'static str>, Vec<&'static str>)> {
    let consumer_rows = rows(
        &ctl(&[
            "list_consumers",
            "-q",
            "--no-table-headers",
            "-p",
            vhost,
            "queue_name",
            "channel_pid",
            "active",
        ])
        .await,
    );
    let channels: HashMap<String, String> = rows(
        &ctl(&[
            "list_channels",
            "-q",
            "--no-table-headers",
            "-p",
            vhost,
            "pid",
            "connection",
        ])
        .await,
    )
    .into_iter()
    .filter(|r| r.len() == 2)
    .map(|r| (r[0].clone(), r[1].clone()))
    .collect();
    let connections: HashMap<String, u16> = rows(
        &ctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "pid",
            "peer_port",
            "vhost",
        ])
        .await,
    )
    .into_iter()
    .filter(|r| r.len() == 3 && r[2] == vhost)
    .filter_map(|r| Some((r[0].clone(), r[1].parse().ok()?)))
    .collect();
    let ports: Vec<(&'static str, HashSet<u16>)> = instances
        .iter()
        .map(|(name, pid)| (*name, local_ports(*pid)))
        .collect();
    let owner = |channel: &str| {
        let port = connections.get(channels.get(channel)?)?;
        ports
            .iter()
            .find(|(_, ps)| ps.contains(port))
            .map(|(n, _)| *n)
    };
    let mut out: BTreeMap<String, (Option<&'static str>, Vec<&'static str>)> = BTreeMap::new();
    for r in consumer_rows.into_iter().filter(|r| r.len() == 3) {
        if !r[0].starts_with("gateway_inbound") {
            continue;
        }
        let who = owner(&r[1]).unwrap_or("?");
        let e = out.entry(r[0].clone()).or_default();
        e.1.push(who);
        if r[2] == "true" {
            e.0 = Some(who);
        }
    }
    out
}

/// `queue: instance` for each intake queue, for the test's output.
fn placement(c: &BTreeMap<String, (Option<&'static str>, Vec<&'static str>)>) -> String {
    c.iter()
        .map(|(q, (active, _))| format!("{q}: {}", active.unwrap_or("none")))
        .collect::<Vec<_>>()
        .join(", ")
}

fn partition_queue(p: u16) -> String {
    Topology::default().partition_queue(p)
}

/// Polls the broker until `ok` holds for the consumer list (up to `limit`); returns the last list.
async fn wait_for_consumers(
    vhost: &str,
    instances: &mut [Instance],
    limit: Duration,
    what: &str,
    ok: impl Fn(&BTreeMap<String, (Option<&'static str>, Vec<&'static str>)>) -> bool,
) -> BTreeMap<String, (Option<&'static str>, Vec<&'static str>)> {
    let deadline = Instant::now() + limit;
    loop {
        for i in instances.iter_mut() {
            i.assert_running();
        }
        let pids: Vec<(&'static str, u32)> =
            instances.iter().map(|i| (i.name, i.child.id())).collect();
        let c = consumers(vhost, &pids).await;
        if ok(&c) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{what} not seen within {limit:?}; the broker's consumers: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A message as an EHR sends it: the fixture from `sender` (a GP person of office 82000) with
/// `msg_id`, signed with the office's certificate and encrypted to the hub.
fn sealed(
    sender: HerId,
    msg_id: &MsgId,
    signer: &Signer,
    hub: &RecipientCert,
) -> (MessageHeaders, Vec<u8>) {
    let now = time::OffsetDateTime::now_utc();
    let xml = with_gen_date(
        &fixture_with_msg_id(
            "delivered/foresporsel-gp-to-nursing-home.xml",
            msg_id.as_str(),
        ),
        now,
    )
    .replace("<Id>82001</Id>", &format!("<Id>{sender}</Id>"));
    let o = Overrides {
        msg_id: Some(msg_id.clone()),
        ..Default::default()
    };
    let mut headers = headers_for("deploy", xml.as_bytes(), &o, true, now).expect("headers");
    assert_eq!(headers.from_her_id, sender);
    let signed = signer.sign(xml.as_bytes(), now).expect("sign");
    headers.content_type = ContentType::EnvelopedCms;
    (headers, hub.seal(&signed).expect("seal"))
}

/// Every sender's next message, in rounds: `(sender, queue or None for the exchange, id, headers,
/// body)`.
type Batch = Vec<(HerId, Option<String>, MsgId, MessageHeaders, Vec<u8>)>;

fn batch(rounds: usize, k: u16, signer: &Signer, hub: &RecipientCert) -> Batch {
    let mut out = Vec::new();
    for _ in 0..rounds {
        for s in hashed_senders() {
            let id = MsgId::random();
            let (h, b) = sealed(s, &id, signer, hub);
            out.push((s, None, id, h, b));
        }
        for p in 0..=k {
            let id = MsgId::random();
            let (h, b) = sealed(direct_sender(p), &id, signer, hub);
            out.push((direct_sender(p), Some(partition_queue(p)), id, h, b));
        }
    }
    out
}

/// Publishes in order, each confirmed before the next (so the intake holds each sender's
/// messages in the order of `sent`).
async fn publish(publisher: &Publisher, batch: &Batch) {
    let t = Topology::default();
    for (_, queue, _, headers, body) in batch {
        let props = headers
            .to_properties()
            .unwrap()
            .with_user_id("guest".into());
        let route = match queue {
            Some(q) => Route::Queue(q),
            None => Route::intake(&t),
        };
        publisher
            .publish_with_properties(route, props, body)
            .await
            .expect("intake publish confirmed");
    }
}

/// Takes messages from the recipient's queue until `n` more have arrived (up to `limit`),
/// appending `(fromHerId, MsgId)` in arrival order.
async fn receive(
    ch: &lapin::Channel,
    n: usize,
    limit: Duration,
    got: &mut Vec<(HerId, String)>,
    instances: &mut [Instance],
) {
    let queue = format!("{RECIPIENT}_async");
    let want = got.len() + n;
    let deadline = Instant::now() + limit;
    while got.len() < want {
        match ch
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            Some(m) => {
                let h = MessageHeaders::from_properties(&m.delivery.properties).expect("headers");
                got.push((h.from_her_id, h.message_id.as_str().to_owned()));
            }
            None => {
                for i in instances.iter_mut() {
                    i.assert_running();
                }
                assert!(
                    Instant::now() < deadline,
                    "{queue}: {} of {want} arrived within {limit:?}",
                    got.len()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Every message of `sent` arrived exactly once, and each sender's in the order sent.
fn assert_exactly_once_in_order(sent: &[(HerId, MsgId)], got: &[(HerId, String)]) {
    let mut seen = HashSet::new();
    for (_, id) in got {
        assert!(seen.insert(id.clone()), "{id} arrived twice");
    }
    let sent_ids: HashSet<&str> = sent.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(seen.len(), sent.len(), "arrived: {}", got.len());
    assert!(got.iter().all(|(_, id)| sent_ids.contains(id.as_str())));
    let order = |list: Vec<(HerId, &str)>| {
        let mut by: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for (s, id) in list {
            by.entry(s.0).or_default().push(id.to_owned());
        }
        by
    };
    let sent_order = order(sent.iter().map(|(s, id)| (*s, id.as_str())).collect());
    let got_order = order(got.iter().map(|(s, id)| (*s, id.as_str())).collect());
    for (s, ids) in &sent_order {
        assert_eq!(
            got_order.get(s),
            Some(ids),
            "sender {s}: arrival order differs from the order sent"
        );
    }
}

/// The senders that `instance`'s routing log shows delivered.
fn served_by(root: &Path, instance: &str) -> HashSet<u32> {
    std::fs::read_to_string(root.join(format!("var/{instance}/routing.jsonl")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["outcome"] == "delivered")
        .filter_map(|v| v["from_her"].as_u64())
        .map(|h| h as u32)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_as_shipped_share_the_partitions_and_survive_a_stop() {
    let (k, shares) = shipped_shares();
    let owner_of = |p: u16| {
        shares
            .iter()
            .find(|(_, (prefer, _))| prefer.contains(&p))
            .map(|(i, _)| *i)
            .unwrap_or_else(|| panic!("partition {p} is in no prefer_partitions"))
    };
    for p in 0..=k {
        owner_of(p);
    }
    for (i, (_, port)) in &shares {
        assert!(
            TcpListener::bind(("127.0.0.1", *port)).is_ok(),
            "port {port} (gateway-{i}.toml http_listen) is taken on this machine; the test needs it free"
        );
    }
    let (amqp_var, store_var) = url_env_names();
    let vhost = TestVhost::create().await.expect("vhost");
    let db = ScratchDb::create();
    let root = tempfile::tempdir().unwrap();
    install_root(root.path(), k);
    verify_unit(root.path());
    let env = [
        (amqp_var.as_str(), vhost.url()),
        (store_var.as_str(), db.url.as_str()),
    ];

    // ExecStartPre: check-config, for each instance.
    for i in INSTANCES {
        let out = unit_command("ExecStartPre", i, root.path())
            .envs(env)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "check-config of {i}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("store postgres"), "{stdout}");
    }

    // ExecStart: the three together, as at boot.
    let mut instances: Vec<Instance> = INSTANCES
        .iter()
        .map(|i| {
            let log = root.path().join(format!("{i}.stderr"));
            let child = unit_command("ExecStart", i, root.path())
                .envs(env)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            Instance {
                name: i,
                child,
                log,
            }
        })
        .collect();

    // Every instance on every partition (the standby subscriptions come 5 s after the preferred
    // ones), and the broker's active one on each is the instance that prefers it.
    let all_queues: Vec<String> = (0..=k).map(partition_queue).collect();
    let c = wait_for_consumers(
        vhost.name(),
        &mut instances,
        Duration::from_secs(120),
        "three consumers on every intake partition",
        |c| {
            all_queues
                .iter()
                .all(|q| c.get(q).is_some_and(|(_, all)| all.len() == 3))
        },
    )
    .await;
    println!("active instance per partition at start: {}", placement(&c));
    for p in 0..=k {
        let (active, all) = &c[&partition_queue(p)];
        assert_eq!(
            *active,
            Some(owner_of(p)),
            "partition {p}: active consumer (consumers {all:?}); whole list {c:?}"
        );
    }

    // Traffic from every sender; all of it arrives once, in each sender's order.
    let pki = repo().join("fixtures/gateway-pki");
    let signer = Signer::from_pem_files(
        &pki.join("parties/82001-sign.key"),
        &pki.join("parties/82001-sign.pem"),
    )
    .unwrap();
    let hub = RecipientCert::from_file(&pki.join("encryption/90000-enc.pem")).unwrap();
    let before = tokio::task::block_in_place(|| batch(ROUNDS_BEFORE, k, &signer, &hub));
    let during = tokio::task::block_in_place(|| batch(ROUNDS_DURING, k, &signer, &hub));
    let after = tokio::task::block_in_place(|| batch(ROUNDS_AFTER, k, &signer, &hub));
    let conn = connect(&vhost.settings("deploy-test")).await.unwrap();
    let publisher = Publisher::open(&conn).await.unwrap();
    let reader = conn.create_channel().await.unwrap();
    publish(&publisher, &before).await;
    let mut got = Vec::new();
    receive(
        &reader,
        before.len(),
        Duration::from_secs(180),
        &mut got,
        &mut instances,
    )
    .await;
    let sent: Vec<(HerId, MsgId)> = before.iter().map(|m| (m.0, m.2.clone())).collect();
    assert_exactly_once_in_order(&sent, &got);
    // Each partition's sender was served by the instance active on it, and by no other.
    for p in 0..=k {
        let s = direct_sender(p).0;
        for i in INSTANCES {
            assert_eq!(
                served_by(root.path(), i).contains(&s),
                i == owner_of(p),
                "partition {p}'s sender {s} in the routing log of {i}"
            );
        }
    }
    // The hashed senders went through the exchange to partitions 1..K: none to partition 0, and
    // every instance that owns one of 1..K may have served some; together they served all.
    let served: HashSet<u32> = INSTANCES
        .iter()
        .flat_map(|i| served_by(root.path(), i))
        .collect();
    assert!(hashed_senders().iter().all(|s| served.contains(&s.0)));

    // SIGTERM to b while a batch flows: it exits 0, its partitions move to a and c.
    let publishing = {
        let publisher = publisher.clone();
        let during = during.clone();
        tokio::spawn(async move { publish(&publisher, &during).await })
    };
    receive(
        &reader,
        during.len() / 4,
        Duration::from_secs(180),
        &mut got,
        &mut instances,
    )
    .await;
    let b = instances.iter().position(|i| i.name == "b").unwrap();
    let mut stopped = instances.remove(b);
    let code = stopped.terminate();
    assert_eq!(code, Some(0), "b's exit after SIGTERM:\n{}", stopped.log());
    let b_queues: Vec<String> = shares["b"].0.iter().map(|p| partition_queue(*p)).collect();
    let c = wait_for_consumers(
        vhost.name(),
        &mut instances,
        Duration::from_secs(60),
        "b's partitions taken over by a or c",
        |c| {
            all_queues.iter().all(|q| {
                c.get(q).is_some_and(|(active, all)| {
                    all.len() == 2 && matches!(active, Some("a" | "c"))
                })
            })
        },
    )
    .await;
    println!(
        "active instance per partition after b stopped: {}",
        placement(&c)
    );
    for q in &b_queues {
        assert!(matches!(c[q].0, Some("a" | "c")), "{q}: {c:?}");
    }
    publishing.await.unwrap();
    // And traffic goes on: every sender again, b's partitions now served by a or c.
    publish(&publisher, &after).await;
    let rest = before.len() + during.len() + after.len() - got.len();
    receive(
        &reader,
        rest,
        Duration::from_secs(180),
        &mut got,
        &mut instances,
    )
    .await;
    // Nothing more comes: no message twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for q in &all_queues {
        assert_eq!(vhost.queue_len(q).await.unwrap(), Some(0), "{q} drained");
    }
    assert_eq!(
        vhost
            .queue_len(&format!("{RECIPIENT}_async"))
            .await
            .unwrap(),
        Some(0),
        "no copy beyond one per message"
    );
    let sent: Vec<(HerId, MsgId)> = before
        .iter()
        .chain(during.iter())
        .chain(after.iter())
        .map(|m| (m.0, m.2.clone()))
        .collect();
    assert_exactly_once_in_order(&sent, &got);
    // b's partitions' senders were served after the stop by the instance now active there.
    for p in &shares["b"].0 {
        let s = direct_sender(*p).0;
        let now = c[&partition_queue(*p)].0.unwrap();
        assert!(
            served_by(root.path(), now).contains(&s),
            "partition {p}'s sender {s} served by {now} after b stopped"
        );
    }

    for mut i in instances {
        let code = i.terminate();
        assert_eq!(
            code,
            Some(0),
            "{}'s exit after SIGTERM:\n{}",
            i.name,
            i.log()
        );
    }
    let _ = conn.close(200, "done".into()).await;
    vhost.delete().await.unwrap();
    drop(db);
}
