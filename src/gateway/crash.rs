//! Fault injection for `helsemelding chaos`: the gateway deals itself a `kill -9` (SIGKILL, no
//! destructor, no flush) at a chosen point of the delivery protocol (DESIGN §3), so the two crash
//! windows that matter are hit on purpose instead of by luck:
//!
//! - `publish-commit`: every recipient copy confirmed by the broker, `Delivered` not yet recorded.
//!   The redelivery publishes again: the protocol's only allowed duplicate, with the same MsgId.
//! - `commit-ack`: `Delivered` recorded, the inbound delivery not yet acknowledged. The redelivery
//!   finds everything settled and is acknowledged as a duplicate; nothing goes out again.
//!
//! Armed only by the environment variable `HELSEMELDING_CRASH_AT=<point>[:<n>]` (crash when the
//! n-th message reaches the point; n = 1 by default). `serve` logs a warning when it is armed, and
//! refuses to start when the value cannot be read. Never set it in production.

use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const ENV: &str = "HELSEMELDING_CRASH_AT";

/// Where in the delivery protocol the crash comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After the broker confirmed every recipient copy, before `Delivered` is committed.
    PublishCommit,
    /// After `Delivered` is committed, before the inbound delivery is acknowledged.
    CommitAck,
}

impl CrashPoint {
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::PublishCommit => "publish-commit",
            CrashPoint::CommitAck => "commit-ack",
        }
    }
}

/// An armed crash point: kills the process when the `nth` message reaches `point`.
#[derive(Debug)]
pub struct CrashAt {
    pub point: CrashPoint,
    pub nth: u64,
    reached: AtomicU64,
}

impl CrashAt {
    /// Reads `<point>[:<n>]`, e.g. `publish-commit`, `commit-ack:17`.
    pub fn parse(value: &str) -> Result<CrashAt, String> {
        let (name, nth) = match value.split_once(':') {
            Some((name, n)) => {
                let nth = n
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        format!("{ENV}={value}: the count after ':' must be a whole number from 1")
                    })?;
                (name.trim(), nth)
            }
            None => (value.trim(), 1),
        };
        let point = [CrashPoint::PublishCommit, CrashPoint::CommitAck]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "{ENV}={value}: unknown crash point '{name}' (publish-commit or commit-ack)"
                )
            })?;
        Ok(CrashAt {
            point,
            nth,
            reached: AtomicU64::new(0),
        })
    }

    /// The crash point armed in the environment, if any.
    pub fn from_env() -> Result<Option<CrashAt>, String> {
        match std::env::var(ENV) {
            Ok(v) if v.trim().is_empty() => Ok(None),
            Ok(v) => CrashAt::parse(&v).map(Some),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{ENV} is not valid UTF-8")),
        }
    }

    /// Counts one message at `point`; true when this is the one to crash at.
    pub fn is_due(&self, point: CrashPoint) -> bool {
        point == self.point && self.reached.fetch_add(1, Ordering::Relaxed) + 1 == self.nth
    }

    /// Counts one message at `point` and, when it is the n-th, kills the process with SIGKILL.
    pub fn reached(&self, point: CrashPoint) {
        if self.is_due(point) {
            eprintln!(
                "helsemelding: {ENV}: kill -9 at {} (message {})",
                point.name(),
                self.nth
            );
            // SAFETY: kill(2) on our own pid with a valid signal number; it does not return.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_and_counts_are_read_and_nonsense_is_refused() {
        let c = CrashAt::parse("commit-ack:3").unwrap();
        assert_eq!((c.point, c.nth), (CrashPoint::CommitAck, 3));
        assert_eq!(CrashAt::parse("publish-commit").unwrap().nth, 1);
        assert!(CrashAt::parse("commit-ack:0")
            .unwrap_err()
            .contains("whole number"));
        assert!(CrashAt::parse("before-lunch")
            .unwrap_err()
            .contains("unknown crash point 'before-lunch'"));
    }

    #[test]
    fn only_the_nth_message_at_the_armed_point_is_due() {
        let c = CrashAt::parse("commit-ack:2").unwrap();
        assert!(!c.is_due(CrashPoint::PublishCommit));
        assert!(!c.is_due(CrashPoint::CommitAck));
        assert!(c.is_due(CrashPoint::CommitAck));
        assert!(!c.is_due(CrashPoint::CommitAck));
    }
}
