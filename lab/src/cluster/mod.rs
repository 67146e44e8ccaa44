//! A real 3-node RabbitMQ cluster on this machine for the tests and the chaos rig: *extra* nodes
//! (`hmc1-<tag>@localhost` …) with their own AMQP and distribution ports, mnesia/log/config
//! directories and Erlang cookie under a directory of the run, joined into one cluster; node 1 also
//! listens with TLS (a CA and server certificate made for the run, [`tls`]). The machine's own
//! broker (`rabbit@…` on 5672) is never touched.
//!
//! Input: a parent directory for the run's files. Output: a [`Cluster`] that stops its nodes
//! (`rabbitmqctl stop`, then SIGKILL to what is left) when [`Cluster::stop`] is called, and kills
//! them when dropped — a failed test never leaves a node running. Quorum queues declared on it get
//! a member on every node ([`Cluster::quorum_members`] says where).
//! Failure: [`ClusterError`] with the command that failed and its output (or the node's log).
//!
//! | module | job |
//! |--------|-----|
//! | `node` | one node process: its files, start, `rabbitmqctl -n`, stop, kill |
//! | `tls`  | the broker's CA and server certificate, and an unrelated "wrong" CA |

pub mod node;
pub mod tls;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use node::{Node, NodeSpec};
use tls::BrokerPki;

/// Why a cluster could not be set up or changed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster setup: {0}")]
    Setup(String),
    #[error("cluster broker: {0}")]
    Broker(String),
}

/// How many nodes (a quorum queue of 3 survives losing one).
pub const NODES: usize = 3;

/// How long a node may take to start (three at once on two shared cores).
const STARTUP: Duration = Duration::from_secs(120);

/// A running cluster of [`NODES`] extra nodes.
pub struct Cluster {
    pub dir: PathBuf,
    pub pki: BrokerPki,
    nodes: Vec<Node>,
    /// Leave the directory (logs) behind when dropped: set when something failed.
    pub keep_dir: bool,
}

/// The strings of a JSON array (none if it is not one).
fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A port nobody listens on now (the kernel's choice for port 0).
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::Setup(format!("finding a free port: {e}")))
}

impl Cluster {
    /// Starts the nodes under `<parent>/hm-cluster-<tag>/` and joins nodes 2 and 3 to node 1.
    pub fn start(parent: &Path) -> Result<Cluster, ClusterError> {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let dir = parent.join(format!("hm-cluster-{tag}"));
        let pki = BrokerPki::generate(&dir.join("pki"))
            .map_err(|e| ClusterError::Setup(format!("broker PKI: {e}")))?;
        // The cookie is the cluster's shared secret: random, and only in this run's files.
        let cookie = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let mut nodes = Vec::new();
        for i in 1..=NODES {
            let spec = NodeSpec {
                name: format!("hmc{i}-{tag}@localhost"),
                amqp_port: free_port()?,
                dist_port: free_port()?,
                tls_port: if i == 1 { Some(free_port()?) } else { None },
                dir: dir.join(format!("node{i}")),
            };
            nodes.push(Node::prepare(spec, &cookie, Some(&pki))?);
        }
        let mut cluster = Cluster {
            dir,
            pki,
            nodes,
            keep_dir: false,
        };
        let formed = cluster.form();
        if formed.is_err() {
            cluster.keep_dir = true;
        }
        formed.map(|_| cluster)
    }

    fn form(&mut self) -> Result<(), ClusterError> {
        // All three boot at once (each takes seconds of CPU); then the join, one at a time.
        for n in &mut self.nodes {
            n.start()?;
        }
        for n in &mut self.nodes {
            n.await_startup(STARTUP)?;
        }
        let first = self.nodes[0].spec.name.clone();
        for n in &mut self.nodes[1..] {
            n.ctl(&["stop_app"])?;
            n.ctl(&["join_cluster", &first])?;
            // start_app can find its listener port not yet released by stop_app: try again.
            let mut tries = 0;
            while let Err(e) = n.ctl(&["start_app"]) {
                tries += 1;
                if tries >= 5 {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_secs(1));
            }
            n.await_startup(STARTUP)?;
        }
        let running = self.running_nodes()?;
        if running.len() != NODES {
            return Err(ClusterError::Broker(format!(
                "after joining, {} node(s) run in the cluster: {running:?}",
                running.len()
            )));
        }
        Ok(())
    }

    /// Node `i` (0-based).
    pub fn node(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// The node names, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.spec.name.clone()).collect()
    }

    /// `amqp://guest:guest@127.0.0.1:<port of node i>/<vhost>` (vhost URL-encoded, `%2f` = `/`).
    pub fn url(&self, i: usize, vhost: &str) -> String {
        format!(
            "amqp://guest:guest@127.0.0.1:{}/{vhost}",
            self.nodes[i].spec.amqp_port
        )
    }

    /// Every node's URL, node 1's first.
    pub fn urls(&self, vhost: &str) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i, vhost)).collect()
    }

    /// `amqps://guest:guest@localhost:<TLS port of node 1>/<vhost>`: the host name the server
    /// certificate is made for.
    pub fn tls_url(&self, vhost: &str) -> String {
        let port = self.nodes[0].spec.tls_port.unwrap_or_default();
        format!("amqps://guest:guest@localhost:{port}/{vhost}")
    }

    /// `rabbitmqctl args…` on the first node that is running.
    pub fn ctl(&mut self, args: &[&str]) -> Result<String, ClusterError> {
        let mut last = None;
        for n in &mut self.nodes {
            if n.running() {
                match n.ctl(args) {
                    Ok(out) => return Ok(out),
                    Err(e) => last = Some(e),
                }
            }
        }
        Err(last.unwrap_or_else(|| ClusterError::Broker("no node is running".into())))
    }

    /// The nodes the cluster reports running (`cluster_status`).
    pub fn running_nodes(&mut self) -> Result<Vec<String>, ClusterError> {
        let out = self.ctl(&["cluster_status", "--formatter", "json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
            ClusterError::Broker(format!("cluster_status is not JSON ({e}): {out}"))
        })?;
        Ok(strings(&v["running_nodes"]))
    }

    /// The nodes holding a member of quorum queue `queue` in `vhost`.
    pub fn quorum_members(
        &mut self,
        vhost: &str,
        queue: &str,
    ) -> Result<Vec<String>, ClusterError> {
        let out = self.ctl(&[
            "list_queues",
            "-p",
            vhost,
            "name",
            "members",
            "--formatter",
            "json",
        ])?;
        let v: serde_json::Value = serde_json::from_str(&out)
            .map_err(|e| ClusterError::Broker(format!("list_queues is not JSON ({e}): {out}")))?;
        let q = v
            .as_array()
            .and_then(|a| a.iter().find(|q| q["name"] == queue))
            .ok_or_else(|| ClusterError::Broker(format!("no queue {queue} in vhost {vhost}")))?;
        Ok(strings(&q["members"]))
    }

    /// Stops node `i` (`rabbitmqctl stop`): its clients lose their connections.
    pub fn stop_node(&mut self, i: usize) -> Result<(), ClusterError> {
        self.nodes[i].stop()
    }

    /// Starts node `i` again (same files: it rejoins as the member it was) and waits for it.
    pub fn start_node(&mut self, i: usize) -> Result<(), ClusterError> {
        self.nodes[i].start()?;
        self.nodes[i].await_startup(STARTUP)
    }

    /// Stops every node (`rabbitmqctl stop`, the last one last; leftovers killed).
    pub fn stop(mut self) -> Result<(), ClusterError> {
        let mut first_error = None;
        for n in self.nodes.iter_mut().rev() {
            if n.running() {
                if let Err(e) = n.stop() {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => {
                self.keep_dir = true;
                Err(e)
            }
            None => Ok(()),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if !self.keep_dir && std::env::var_os("HELSEMELDING_CLUSTER_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
