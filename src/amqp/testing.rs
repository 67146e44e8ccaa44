//! A throw-away RabbitMQ vhost for tests that talk to the real local broker.
//!
//! Input: nothing (or the environment: `HELSEMELDING_TEST_AMQP_HOST`, default `127.0.0.1:5672`;
//! `RABBITMQCTL`, default `rabbitmqctl`). Output: a [`TestVhost`] whose `url()` reaches a fresh,
//! uniquely named vhost where `guest` has all permissions; the vhost (and every queue in it) is
//! deleted on [`TestVhost::delete`] or drop. Failure: [`TestVhostError`] with rabbitmqctl's output.
//! Test support only; public so end-to-end tests of other modules can use it.

use std::process::Output;

use super::connection::AmqpSettings;

/// `rabbitmqctl` failed or is missing.
#[derive(Debug, thiserror::Error)]
#[error("rabbitmqctl {args}: {detail}")]
pub struct TestVhostError {
    pub args: String,
    pub detail: String,
}

fn ctl_path() -> String {
    std::env::var("RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into())
}

async fn ctl(args: &[&str]) -> Result<String, TestVhostError> {
    let out = tokio::process::Command::new(ctl_path())
        .args(args)
        .output()
        .await;
    check(args, out)
}

fn check(args: &[&str], out: std::io::Result<Output>) -> Result<String, TestVhostError> {
    let err = |detail: String| TestVhostError {
        args: args.join(" "),
        detail,
    };
    let out = out.map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "exit {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A vhost of our own on the local broker, deleted on drop.
#[derive(Debug)]
pub struct TestVhost {
    name: String,
    url: String,
    deleted: bool,
}

impl TestVhost {
    /// Create `hm-test-<pid>-<random>` and grant `guest` configure/write/read on it.
    pub async fn create() -> Result<Self, TestVhostError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("hm-test-{}-{}", std::process::id(), &id[..12]);
        ctl(&["add_vhost", &name]).await?;
        let vhost = Self {
            url: format!(
                "amqp://guest:guest@{}/{}",
                std::env::var("HELSEMELDING_TEST_AMQP_HOST")
                    .unwrap_or_else(|_| "127.0.0.1:5672".into()),
                name
            ),
            name,
            deleted: false,
        };
        ctl(&[
            "set_permissions",
            "-p",
            &vhost.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ])
        .await?;
        Ok(vhost)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `amqp://guest:guest@host/<vhost>` (the name needs no escaping: letters, digits, `-`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Settings for this vhost with a short heartbeat and a small prefetch.
    pub fn settings(&self, role: &str) -> AmqpSettings {
        let mut s = AmqpSettings::new(self.url.clone(), role);
        s.heartbeat = std::time::Duration::from_secs(5);
        s.prefetch = 16;
        s
    }

    /// `(name, pid, client_properties)` of the client connections in this vhost
    /// (`rabbitmqctl list_connections name pid vhost client_properties`). RabbitMQ 3.10 shows
    /// our connection name (`helsemelding <role> <host>`) inside `client_properties`.
    pub async fn connections(&self) -> Result<Vec<(String, String, String)>, TestVhostError> {
        let out = ctl(&[
            "list_connections",
            "-q",
            "--no-table-headers",
            "name",
            "pid",
            "vhost",
            "client_properties",
        ])
        .await?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let cols: Vec<&str> = l.splitn(4, '\t').collect();
                (cols.len() == 4 && cols[2] == self.name)
                    .then(|| (cols[0].to_owned(), cols[1].to_owned(), cols[3].to_owned()))
            })
            .collect())
    }

    /// Force-close every connection in this vhost whose name (or client-provided connection name)
    /// contains `name_part` (`rabbitmqctl close_connection <pid> <reason>`), as an operator or a
    /// failing node would. Returns how many were closed.
    pub async fn close_connections(
        &self,
        name_part: &str,
        reason: &str,
    ) -> Result<usize, TestVhostError> {
        let mut n = 0;
        for (name, pid, props) in self.connections().await? {
            if name.contains(name_part) || props.contains(name_part) {
                ctl(&["close_connection", &pid, reason]).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Messages ready in a queue of this vhost right now (`None` if there is no such queue).
    /// Asked over AMQP (passive declare), because `rabbitmqctl list_queues` reports statistics
    /// that lag by seconds.
    pub async fn queue_len(&self, queue: &str) -> Result<Option<u32>, TestVhostError> {
        let err = |detail: String| TestVhostError {
            args: format!("queue.declare passive {queue}"),
            detail,
        };
        let conn = super::connection::connect(&self.settings("test-probe"))
            .await
            .map_err(|e| err(e.to_string()))?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| err(e.to_string()))?;
        let opts = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let r = match ch
            .queue_declare(queue.into(), opts, lapin::types::FieldTable::default())
            .await
        {
            Ok(q) => Ok(Some(q.message_count())),
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(p) if p.get_id() == 404) => {
                Ok(None)
            }
            Err(e) => Err(err(e.to_string())),
        };
        let _ = conn.close(200, "probe done".into()).await;
        r
    }

    /// Delete the vhost now (and everything in it).
    pub async fn delete(mut self) -> Result<(), TestVhostError> {
        self.deleted = true;
        ctl(&["delete_vhost", &self.name]).await.map(|_| ())
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        if !self.deleted {
            // Blocking is acceptable here: test teardown, and a leaked vhost is worse.
            let args = ["delete_vhost", self.name.as_str()];
            let _ = check(
                &args,
                std::process::Command::new(ctl_path()).args(args).output(),
            );
        }
    }
}
