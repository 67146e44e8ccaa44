//! One extra RabbitMQ node of a test cluster: `rabbitmq-server` run by us (as whoever runs the
//! test) with a node name, ports, mnesia/log/config directories and Erlang cookie of its own, so
//! the machine's own broker (`rabbit@…` on 5672, user `rabbitmq`, its own cookie) is never touched.
//!
//! Input: a [`NodeSpec`]. Output: a [`Node`] whose process group is killed on drop. The CLI
//! (`rabbitmqctl -n NODE …`) is run with the same `HOME` (hence the same cookie).
//! Failure: [`ClusterError`] with the command and its output, or the tail of the node's log.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ClusterError;

/// Where the RabbitMQ scripts are: the real ones, not `/usr/sbin`'s wrappers (those switch to
/// user `rabbitmq`, whose `HOME` holds the main broker's cookie). `HELSEMELDING_RABBITMQ_BIN`
/// overrides.
pub fn rabbitmq_bin() -> PathBuf {
    std::env::var_os("HELSEMELDING_RABBITMQ_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/rabbitmq/bin"))
}

/// What makes a node its own.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// `hmc1-…@localhost`.
    pub name: String,
    pub amqp_port: u16,
    pub dist_port: u16,
    /// `amqps://` listener (with `server_cert`/`server_key` of the cluster's PKI), if any.
    pub tls_port: Option<u16>,
    /// The node's own directory: `home/.erlang.cookie`, `mnesia/`, `log/`, `rabbitmq.conf`.
    pub dir: PathBuf,
}

/// A node process (running or stopped).
pub struct Node {
    pub spec: NodeSpec,
    child: Option<Child>,
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> ClusterError {
    ClusterError::Setup(format!("{what} {}: {e}", path.display()))
}

impl Node {
    /// Writes the node's files (the cookie, config and plugins) — once; a restart reuses them,
    /// and its mnesia directory, so it comes back as the same cluster member.
    pub fn prepare(
        spec: NodeSpec,
        cookie: &str,
        tls: Option<&super::tls::BrokerPki>,
    ) -> Result<Node, ClusterError> {
        let home = spec.dir.join("home");
        for d in [home.clone(), spec.dir.join("mnesia"), spec.dir.join("log")] {
            std::fs::create_dir_all(&d).map_err(|e| io_error("creating", &d, e))?;
        }
        let cookie_path = home.join(".erlang.cookie");
        std::fs::write(&cookie_path, cookie).map_err(|e| io_error("writing", &cookie_path, e))?;
        // Erlang refuses a cookie file others can read.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie_path, std::fs::Permissions::from_mode(0o400))
            .map_err(|e| io_error("chmod 400", &cookie_path, e))?;
        let mut conf = format!(
            "listeners.tcp.local = 127.0.0.1:{}\n\
             # The scenarios stop nodes on purpose: a quorum queue keeps its majority, and a\n\
             # stopped node must not make the others pause.\n\
             cluster_partition_handling = ignore\n",
            spec.amqp_port
        );
        if let (Some(port), Some(pki)) = (spec.tls_port, tls) {
            conf.push_str(&format!(
                "listeners.ssl.local = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\n\
                 ssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\n\
                 ssl_options.verify = verify_none\n\
                 ssl_options.fail_if_no_peer_cert = false\n",
                pki.ca.display(),
                pki.server_cert.display(),
                pki.server_key.display()
            ));
        }
        let conf_path = spec.dir.join("rabbitmq.conf");
        std::fs::write(&conf_path, conf).map_err(|e| io_error("writing", &conf_path, e))?;
        let plugins = spec.dir.join("enabled_plugins");
        std::fs::write(
            &plugins,
            "[rabbitmq_amqp1_0,rabbitmq_consistent_hash_exchange].\n",
        )
        .map_err(|e| io_error("writing", &plugins, e))?;
        Ok(Node { spec, child: None })
    }

    /// The environment every command for this node runs with: its own HOME (cookie), and none of
    /// the machine's `rabbitmq-env.conf` (which names the main node).
    fn env(&self, c: &mut Command) {
        let d = &self.spec.dir;
        c.env("HOME", d.join("home"))
            .env("RABBITMQ_CONF_ENV_FILE", "/dev/null")
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env_remove("ERL_FLAGS")
            .env_remove("RABBITMQ_NODENAME");
    }

    /// Starts the node process (returns at once; [`Self::await_startup`] waits for it).
    pub fn start(&mut self) -> Result<(), ClusterError> {
        let d = self.spec.dir.clone();
        let out = d.join("server.out");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .map_err(|e| io_error("opening", &out, e))?;
        let err = log.try_clone().map_err(|e| io_error("opening", &out, e))?;
        let mut c = Command::new(rabbitmq_bin().join("rabbitmq-server"));
        self.env(&mut c);
        c.env("RABBITMQ_NODENAME", &self.spec.name)
            .env("RABBITMQ_DIST_PORT", self.spec.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", d.join("node.pid"))
            // Erlang distribution on loopback only, like every server of the tests.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err);
        // A group of its own: a leftover of the node (erl_child_setup, inet_gethost) dies with it.
        use std::os::unix::process::CommandExt;
        c.process_group(0);
        let child = c.spawn().map_err(|e| {
            ClusterError::Setup(format!(
                "{}: {e}",
                rabbitmq_bin().join("rabbitmq-server").display()
            ))
        })?;
        self.child = Some(child);
        Ok(())
    }

    /// `rabbitmqctl -n NODE args…`: its stdout, or an error with the command and its output.
    pub fn ctl(&self, args: &[&str]) -> Result<String, ClusterError> {
        let mut c = Command::new(rabbitmq_bin().join("rabbitmqctl"));
        self.env(&mut c);
        c.arg("-n").arg(&self.spec.name).args(args);
        let out = c.output().map_err(|e| {
            ClusterError::Broker(format!(
                "rabbitmqctl -n {} {}: {e}",
                self.spec.name,
                args.join(" ")
            ))
        })?;
        if !out.status.success() {
            return Err(ClusterError::Broker(format!(
                "rabbitmqctl -n {} {}: {}{}",
                self.spec.name,
                args.join(" "),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the node runs (its app started), up to `within`.
    pub fn await_startup(&mut self, within: Duration) -> Result<(), ClusterError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(ClusterError::Broker(format!(
                    "node {} exited with {status} while starting:\n{}",
                    self.spec.name,
                    self.log_tail(15)
                )));
            }
            // await_startup fails at once while the node is not yet registered with epmd.
            match self.ctl(&["await_startup", "--timeout", "10"]) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() > deadline => {
                    return Err(ClusterError::Broker(format!(
                        "node {} did not start within {within:?}: {e}\n{}",
                        self.spec.name,
                        self.log_tail(15)
                    )))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// `rabbitmqctl stop` (the node halts), then waits for the process; kills it if it lingers.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        let stopped = self.ctl(&["stop"]);
        let deadline = Instant::now() + Duration::from_secs(30);
        if let Some(child) = self.child.as_mut() {
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        self.kill();
        stopped.map(|_| ())
    }

    /// SIGKILL to the node's process group, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: a plain kill(2) of the group we created for this child; no memory involved.
            unsafe {
                libc::kill(-(child.id() as i32), libc::SIGKILL);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Is the node process there?
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// The last `n` lines of the node's console output and its log.
    pub fn log_tail(&self, n: usize) -> String {
        let tail = |p: PathBuf| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let log = self
            .spec
            .dir
            .join("log")
            .join(format!("{}.log", self.spec.name));
        format!("{}\n{}", tail(self.spec.dir.join("server.out")), tail(log))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
