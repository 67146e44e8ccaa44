//! Fault injection for `helsemelding-lab chaos`: the gateway deals itself a `kill -9` (SIGKILL, no
//! destructor, no flush) at a chosen point of the delivery protocol (DESIGN §3), so the two crash
//! windows that matter are hit on purpose instead of by luck:
//!
//! - `record-publish`: `Received`/`Routed` handed to the store (DESIGN §3 step 2, no flush of its
//!   own), nothing published yet. The redelivery finds no record or a `Routed` one and publishes.
//! - `publish-commit`: every recipient copy confirmed by the broker, `Delivered` not yet recorded.
//!   The redelivery publishes again: the protocol's only allowed duplicate, with the same MsgId.
//! - `commit-ack`: `Delivered` recorded, the inbound delivery not yet acknowledged. The redelivery
//!   finds everything settled and is acknowledged as a duplicate; nothing goes out again.
//!
//! Armed by the environment variable `HELSEMELDING_CRASH_AT=<point>[:<n>]` (crash when the n-th
//! message reaches the point; n = 1 by default), and only where two things hold:
//!
//! 1. the crate is built with the cargo feature `fault-injection` (off by default, so the release
//!    build of the operators' binary has no SIGKILL code at all); and
//! 2. the process asked for it with [`allow`] — only `helsemelding-lab serve` does. A workspace
//!    build unifies features, so the `helsemelding` binary built next to the lab carries the code;
//!    it still never acts on the variable.
//!
//! Anywhere else [`CrashAt::from_env`] logs a warning naming the variable and why it is ignored,
//! and returns `None`. Where injection is on, `serve` logs a warning when it is armed and refuses
//! to start when the value cannot be read.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a crash point.
pub const ENV: &str = "HELSEMELDING_CRASH_AT";

#[cfg(feature = "fault-injection")]
static ALLOWED: AtomicBool = AtomicBool::new(false);

/// Lets this process act on [`ENV`]: called by `helsemelding-lab serve` before it runs the gateway.
#[cfg(feature = "fault-injection")]
pub fn allow() {
    ALLOWED.store(true, Ordering::Relaxed);
}

/// Why this process does not act on [`ENV`], or `None` when it does.
pub fn unavailable() -> Option<&'static str> {
    #[cfg(feature = "fault-injection")]
    {
        if ALLOWED.load(Ordering::Relaxed) {
            None
        } else {
            Some("only helsemelding-lab serve injects faults")
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        Some("this build has no fault injection (cargo feature fault-injection is off)")
    }
}

/// Where in the delivery protocol the crash comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// After step 2 was handed to the store, before anything is published.
    RecordPublish,
    /// After the broker confirmed every recipient copy, before `Delivered` is committed.
    PublishCommit,
    /// After `Delivered` is committed, before the inbound delivery is acknowledged.
    CommitAck,
}

impl CrashPoint {
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::RecordPublish => "record-publish",
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
        let point = [
            CrashPoint::RecordPublish,
            CrashPoint::PublishCommit,
            CrashPoint::CommitAck,
        ]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                format!(
                    "{ENV}={value}: unknown crash point '{name}' (record-publish, publish-commit or commit-ack)"
                )
            })?;
        Ok(CrashAt {
            point,
            nth,
            reached: AtomicU64::new(0),
        })
    }

    /// The crash point armed in the environment, if any. Where fault injection is unavailable
    /// ([`unavailable`]) a set variable is ignored with a warning, whatever its value.
    pub fn from_env() -> Result<Option<CrashAt>, String> {
        let value = match std::env::var(ENV) {
            Ok(v) if v.trim().is_empty() => return Ok(None),
            Ok(v) => Ok(v),
            Err(std::env::VarError::NotPresent) => return Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!("{ENV} is not valid UTF-8")),
        };
        if let Some(why) = unavailable() {
            tracing::warn!("{ENV} is set, but {why}: ignored, no crash point is armed");
            return Ok(None);
        }
        value.and_then(|v| CrashAt::parse(&v)).map(Some)
    }

    /// Counts one message at `point`; true when this is the one to crash at.
    pub fn is_due(&self, point: CrashPoint) -> bool {
        point == self.point && self.reached.fetch_add(1, Ordering::Relaxed) + 1 == self.nth
    }

    /// Counts one message at `point` and, when it is the n-th, kills the process with SIGKILL.
    /// Without the `fault-injection` feature it only counts: the kill is not compiled in.
    pub fn reached(&self, point: CrashPoint) {
        let due = self.is_due(point);
        #[cfg(feature = "fault-injection")]
        if due {
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
        #[cfg(not(feature = "fault-injection"))]
        let _ = due;
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
        assert_eq!(
            CrashAt::parse("record-publish:2").unwrap().point,
            CrashPoint::RecordPublish
        );
        assert!(CrashAt::parse("commit-ack:0")
            .unwrap_err()
            .contains("whole number"));
        assert!(CrashAt::parse("before-lunch")
            .unwrap_err()
            .contains("unknown crash point 'before-lunch'"));
    }

    #[test]
    fn without_the_lab_serve_a_crash_point_is_never_armed() {
        // Nothing in the library calls allow(): the reason is given whichever way it was built.
        let why = unavailable().expect("not allowed in the library's own tests");
        if cfg!(feature = "fault-injection") {
            assert!(why.contains("only helsemelding-lab serve"), "{why}");
        } else {
            assert!(why.contains("no fault injection"), "{why}");
        }
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
