//! `helsemelding serve` as a child process with its stderr in a file (reload.rs): started from
//! a scratch configuration, waited on by conditions (a queue declared, a line logged), stopped
//! with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use helsemelding::amqp::testing::TestVhost;

/// A running `helsemelding serve`.
pub struct Serve {
    pub child: Child,
    pub stderr_path: PathBuf,
}

/// Runs `helsemelding ARGS` to completion.
pub fn helsemelding(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_helsemelding"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("helsemelding runs")
}

impl Serve {
    /// Starts `serve --config CONFIG`, logging to `<dir>/<name>.stderr`.
    pub fn start(config: &Path, dir: &Path, name: &str) -> Serve {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = Command::new(env!("CARGO_BIN_EXE_helsemelding"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("helsemelding serve starts");
        Serve { child, stderr_path }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (up to 60 s, while the process lives) until `done` holds.
    pub async fn wait_until<F: std::future::Future<Output = bool>>(
        &mut self,
        what: &str,
        mut done: impl FnMut() -> F,
    ) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !done().await {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "serve exited while waiting for {what}: {}",
                self.stderr()
            );
            assert!(
                Instant::now() < deadline,
                "{what} not seen within 60 s: {}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `queue` exists in `vhost`.
    pub async fn wait_for_queue(&mut self, vhost: &TestVhost, queue: &str) {
        self.wait_until(&format!("queue {queue}"), || async {
            vhost.queue_len(queue).await.ok().flatten().is_some()
        })
        .await;
    }

    /// Waits until the log holds `needle` `times` times.
    pub async fn wait_for_log(&mut self, needle: &str, times: usize) {
        let path = self.stderr_path.clone();
        self.wait_until(&format!("{times}× {needle:?} in the log"), || {
            let n = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .matches(needle)
                .count();
            async move { n >= times }
        })
        .await;
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<i32> {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().unwrap().code()
    }
}

impl Drop for Serve {
    /// A failed test leaves no gateway behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}
