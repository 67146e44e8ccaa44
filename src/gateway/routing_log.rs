//! The routing log: one JSON line per routing decision, for operators (DESIGN §5).
//!
//! Input: a [`Decision`] — identifiers, parties, outcome, AppRec code, latency. Output: one line of
//! JSON on stdout and, when configured, appended to a file that `helsemelding tail` follows.
//! Never names, fødselsnummer or message content: the type has no field that could hold them.
//! A write failure is reported once to the diagnostic log and does not stop the gateway: the
//! delivery state in the store remains the record of truth.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::codes::ErrorCode;
use crate::ids::{HerId, MsgId, Timestamp};

/// What happened to a message for one recipient (or, for faults found before routing, for the
/// whole message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Published to the recipient's `{her}_async` queue and confirmed.
    Delivered,
    /// A negative AppRec was issued to the sender for this recipient.
    Rejected,
    /// Same sender + MsgId seen before: settled without a second delivery or AppRec.
    Duplicate,
    /// Not addressed to any party of ours: an error-queue entry, no AppRec (HITS 1168 §5.3).
    NotForUs,
    /// The sender could not be determined or was not believed: error queue / dead letter.
    ErrorQueue,
    /// Dead-lettered after repeated infrastructure failures, or as poison.
    DeadLettered,
    /// A receiver's AppRec forwarded to the original sender.
    AppRecForwarded,
    /// A receiver's AppRec that was refused (second one, unknown original, wrong party).
    AppRecRefused,
    /// A recipient has not answered within the AppRec timeout.
    Overdue,
    /// An infrastructure fault: the delivery goes back to the broker for a later attempt.
    Retry,
    /// An operator moved dead letters back to the intake (the reason says who and how many).
    Redriven,
}

/// One routing decision. Every field is an identifier, a code or a measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// RFC 3339 time of the decision.
    pub ts: String,
    pub msg_id: Option<MsgId>,
    #[serde(rename = "type")]
    pub msg_type: Option<String>,
    pub from_her: Option<HerId>,
    pub to_her: Option<HerId>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    /// A short machine-readable reason (`transport:unknown-receiver`, `duplicate`, …). Built by the
    /// gateway from its own error texts, which never quote message content.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub elapsed_ms: f64,
}

/// What a decision (or a refusal) is about, as far as it is known: a message known only by a
/// garbled envelope has none of these.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRef {
    pub msg_id: Option<MsgId>,
    pub msg_type: Option<String>,
    pub from_her: Option<HerId>,
    pub to_her: Option<HerId>,
}

impl Decision {
    /// The one way a decision is made: at `at` (the gateway's injected clock), about `about`,
    /// with `outcome`; code, reason and latency are added with the methods below.
    pub fn new(at: Timestamp, outcome: Outcome, about: &MessageRef) -> Decision {
        Decision {
            ts: crate::ids::rfc3339(at),
            msg_id: about.msg_id.clone(),
            msg_type: about.msg_type.clone(),
            from_her: about.from_her,
            to_her: about.to_her,
            outcome,
            code: None,
            reason: None,
            elapsed_ms: 0.0,
        }
    }

    /// For one recipient of the message (`to_her` as addressed).
    pub fn to(mut self, her: Option<HerId>) -> Decision {
        self.to_her = her;
        self
    }

    pub fn code(mut self, code: Option<ErrorCode>) -> Decision {
        self.code = code;
        self
    }

    /// A reason; an empty one is left out.
    pub fn reason(mut self, reason: impl Into<String>) -> Decision {
        let r = reason.into();
        self.reason = (!r.is_empty()).then_some(r);
        self
    }

    /// Wall time since the delivery was taken, in milliseconds (two decimals).
    pub fn elapsed(mut self, since: std::time::Instant) -> Decision {
        self.elapsed_ms = (since.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
        self
    }
}

/// Writes decisions as JSON lines to stdout and optionally to a file.
pub struct RoutingLog {
    stdout: bool,
    file: Option<Mutex<FileSink>>,
}

/// The file and its failure state: a full disk is reported once, not once per line, with the
/// number of lines lost when writing works again.
struct FileSink {
    file: File,
    /// Lines not written since the last successful write.
    lost: u64,
}

impl RoutingLog {
    /// `file`: where `tail` reads from; created (with parents) if missing, appended to.
    pub fn open(file: Option<&Path>, stdout: bool) -> std::io::Result<RoutingLog> {
        let file = match file {
            Some(p) => {
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                Some(Mutex::new(FileSink {
                    file: OpenOptions::new().create(true).append(true).open(p)?,
                    lost: 0,
                }))
            }
            None => None,
        };
        Ok(RoutingLog { stdout, file })
    }

    /// A log that writes nowhere (tests that only look at queues and the store).
    pub fn discard() -> RoutingLog {
        RoutingLog {
            stdout: false,
            file: None,
        }
    }

    pub fn record(&self, d: &Decision) {
        let mut line = match serde_json::to_string(d) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "routing log: cannot serialise a decision");
                return;
            }
        };
        line.push('\n');
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
        if let Some(f) = &self.file {
            let mut f = match f.lock() {
                Ok(f) => f,
                Err(poisoned) => poisoned.into_inner(),
            };
            // After a failure the last line may be torn: start on a fresh line.
            let result = if f.lost > 0 {
                f.file.write_all(format!("\n{line}").as_bytes())
            } else {
                f.file.write_all(line.as_bytes())
            };
            match result {
                Ok(()) if f.lost > 0 => {
                    tracing::warn!(lost = f.lost, "routing log: writing to the file works again; the lost lines are only in stdout and the delivery store");
                    f.lost = 0;
                }
                Ok(()) => {}
                Err(e) => {
                    if f.lost == 0 {
                        tracing::error!(error = %e, "routing log: write to file failed; lines are counted until it works again (the delivery store keeps the state)");
                    }
                    f.lost += 1;
                }
            }
        }
    }
}

/// Renders one routing-log line for people (used by `helsemelding tail`). Lines that are not
/// decisions are returned unchanged, so nothing in the file is hidden from the operator.
pub fn render(line: &str) -> String {
    let d: Decision = match serde_json::from_str(line) {
        Ok(d) => d,
        Err(_) => return line.to_owned(),
    };
    let her = |h: Option<HerId>| h.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
    let mut s = format!(
        "{}  {:<16} {:<22} {} -> {}  msg {}",
        d.ts,
        format!("{:?}", d.outcome).to_uppercase(),
        d.msg_type.as_deref().unwrap_or("?"),
        her(d.from_her),
        her(d.to_her),
        d.msg_id.as_ref().map(|m| m.as_str()).unwrap_or("?"),
    );
    if let Some(c) = d.code {
        s.push_str(&format!("  {} ({})", c, c.text()));
    }
    if let Some(r) = &d.reason {
        s.push_str(&format!("  [{r}]"));
    }
    s.push_str(&format!("  {:.1} ms", d.elapsed_ms));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision() -> Decision {
        Decision {
            ts: "2026-11-23T10:00:00Z".into(),
            msg_id: Some(MsgId::new("3f2504e0-4f89-11d3-9a0c-0305e82c3301")),
            msg_type: Some("DIALOG_FORESPORSEL".into()),
            from_her: Some(HerId(81234)),
            to_her: Some(HerId(81300)),
            outcome: Outcome::Rejected,
            code: Some(ErrorCode::E21),
            reason: Some("level-2 HER-id 81399 unknown".into()),
            elapsed_ms: 3.25,
        }
    }

    #[test]
    fn a_decision_is_one_json_line_with_the_agreed_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log/routing.jsonl");
        let log = RoutingLog::open(Some(&path), false).unwrap();
        log.record(&decision());
        log.record(&decision());
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        for key in [
            "ts",
            "msg_id",
            "type",
            "from_her",
            "to_her",
            "outcome",
            "code",
            "elapsed_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {}", lines[0]);
        }
        assert_eq!(v["outcome"], "rejected");
        assert_eq!(v["code"], "E21");
        assert_eq!(v["from_her"], 81234);
    }

    #[test]
    fn render_is_readable_and_keeps_unknown_lines() {
        let line = serde_json::to_string(&decision()).unwrap();
        let r = render(&line);
        assert!(
            r.contains("REJECTED")
                && r.contains("81234 -> 81300")
                && r.contains("E21 (Mottaker finnes ikke)"),
            "{r}"
        );
        assert_eq!(render("not json"), "not json");
    }
}
