//! The gateway as a child process: `helsemelding-lab serve --config <file>` (the operators'
//! `serve`, fault injection allowed), killed hard (`kill -9`) or stopped gracefully (SIGTERM), and
//! started again.
//!
//! Input: the path of the `helsemelding-lab` binary, a configuration, and a directory for its output
//! (`gateway.stdout` = the routing log, `gateway.stderr` = diagnostics; appended across restarts).
//! Output: a [`GatewayProcess`] that is killed on drop, so a failing scenario never leaves a
//! gateway running. Failure: [`std::io::Error`]s from spawning or signalling, and
//! [`StopError`] when a graceful stop is not graceful.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Why [`GatewayProcess::terminate`] did not end in a clean exit.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("signalling the gateway (pid {pid}): {source}")]
    Signal { pid: u32, source: io::Error },
    #[error("the gateway (pid {pid}) did not stop within {within:?} of SIGTERM; killed it")]
    Timeout { pid: u32, within: Duration },
    #[error("the gateway (pid {pid}) had already exited ({status}) before SIGTERM")]
    AlreadyExited { pid: u32, status: ExitStatus },
}

/// A running (or killed) gateway child process.
pub struct GatewayProcess {
    exe: PathBuf,
    config: PathBuf,
    out_dir: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
    /// Environment of every start (the soak's `HELSEMELDING_CLOCK_SPEED`, `RUST_LOG`).
    env: Vec<(String, String)>,
    /// Keep stdout (the routing log) in `gateway.stdout`; otherwise it is discarded.
    keep_stdout: bool,
}

impl GatewayProcess {
    /// Starts `exe serve --config config`.
    pub fn spawn(exe: &Path, config: &Path, out_dir: &Path) -> io::Result<GatewayProcess> {
        GatewayProcess::spawn_with(exe, config, out_dir, Vec::new(), true)
    }

    /// [`Self::spawn`] with `env` set in the child and, unless `keep_stdout`, its stdout (the
    /// routing log, a line per decision) discarded.
    pub fn spawn_with(
        exe: &Path,
        config: &Path,
        out_dir: &Path,
        env: Vec<(String, String)>,
        keep_stdout: bool,
    ) -> io::Result<GatewayProcess> {
        let mut g = GatewayProcess {
            exe: exe.to_path_buf(),
            config: config.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            child: None,
            starts: 0,
            env,
            keep_stdout,
        };
        g.start(None)?;
        Ok(g)
    }

    /// Starts the child; `crash_at` arms a crash point in it (`HELSEMELDING_CRASH_AT`, see
    /// [`helsemelding::gateway::crash`]).
    fn start(&mut self, crash_at: Option<&str>) -> io::Result<()> {
        let open = |name: &str| {
            let p = self.out_dir.join(name);
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", p.display())))
        };
        let mut cmd = Command::new(&self.exe);
        match crash_at {
            Some(at) => cmd.env(helsemelding::gateway::crash::ENV, at),
            None => cmd.env_remove(helsemelding::gateway::crash::ENV),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        let stdout = if self.keep_stdout {
            Stdio::from(open("gateway.stdout")?)
        } else {
            Stdio::null()
        };
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(open("gateway.stderr")?)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("starting {}: {e}", self.exe.display()))
            })?;
        self.child = Some(child);
        self.starts += 1;
        Ok(())
    }

    /// The process id of the current child, if one is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `Some(status)` if the child has exited by itself (e.g. refused its configuration).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL (`kill -9`): no chance to finish anything; waits until the process is gone.
    pub fn kill9(&mut self) -> io::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Starts the gateway again (after [`Self::kill9`] or [`Self::terminate`]).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9()?;
        self.start(None)
    }

    /// Starts the gateway again with a crash point armed: it kills itself (`kill -9`) when the
    /// message named by `crash_at` (`publish-commit:7`) reaches that point.
    pub fn restart_armed(&mut self, crash_at: &str) -> io::Result<()> {
        self.kill9()?;
        self.start(Some(crash_at))
    }

    /// SIGTERM, then waits up to `within` for the exit. A gateway that does not stop in time is
    /// killed and reported as [`StopError::Timeout`].
    pub async fn terminate(&mut self, within: Duration) -> Result<ExitStatus, StopError> {
        let Some(mut c) = self.child.take() else {
            return Err(StopError::Signal {
                pid: 0,
                source: io::Error::other("no gateway running"),
            });
        };
        let pid = c.id();
        if let Ok(Some(status)) = c.try_wait() {
            return Err(StopError::AlreadyExited { pid, status });
        }
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|source| StopError::Signal { pid, source })?;
        if !sent.success() {
            return Err(StopError::Signal {
                pid,
                source: io::Error::other(format!("kill -TERM exited with {sent}")),
            });
        }
        let deadline = Instant::now() + within;
        loop {
            match c.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(None) => {
                    let _ = c.kill();
                    let _ = c.wait();
                    return Err(StopError::Timeout { pid, within });
                }
                Err(source) => return Err(StopError::Signal { pid, source }),
            }
        }
    }

    /// The gateway's diagnostics so far (for a failure message).
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.out_dir.join("gateway.stderr")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.kill9();
    }
}
