//! `helsemelding-lab community` (issue 13 item 5): a synthetic health community to try the insight
//! report on — one hospital trust with departments, municipalities with a nursing home and home
//! care, GP offices, synthetic patients — whose traffic over a number of days goes through the real
//! gateway, and a truth file of the indicator values the generator planted.
//!
//! | module  | job |
//! |---------|-----|
//! | `plan`  | the seeded plan: parties, stays, USK episodes (updates, cancellations, avmelding, deaths, transfers, no discharge message), dialogue with delays and no answers, refused messages; the messages that tell it |
//! | `xml`   | a planned message as its MsgHead document (PLO 1.6, Dialogmelding 1.0) |
//! | `truth` | the indicator cells I1–I12 computed from the plan (not from the messages, not with the report's code), suppressed by the research note's rule |
//! | `run`   | the community through a gateway of its own with `[insight]` on, then `helsemelding report` |
//! | `cli`   | the subcommand |
//!
//! [`differences`] compares the report's `indicators.csv` with the truth, cell by cell.

pub mod cli;
pub mod plan;
pub mod run;
pub mod truth;
pub mod xml;

use std::collections::BTreeSet;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum CommunityError {
    #[error("setup: {0}")]
    Setup(String),
    #[error("broker: {0}")]
    Broker(String),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("stalled: {0}")]
    Stalled(String),
}

impl From<helsemelding::amqp::PublishError> for CommunityError {
    fn from(e: helsemelding::amqp::PublishError) -> Self {
        CommunityError::Broker(format!("publish: {e}"))
    }
}

/// The lines of `report` that `truth` lacks (`-`) and those it has that the report lacks (`+`),
/// header excluded; empty when every cell agrees.
pub fn differences(truth: &str, report: &str) -> Vec<String> {
    let lines = |s: &str| -> BTreeSet<String> {
        s.lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect()
    };
    let (t, r) = (lines(truth), lines(report));
    let mut out: Vec<String> = r
        .difference(&t)
        .map(|l| format!("report only: {l}"))
        .collect();
    out.extend(t.difference(&r).map(|l| format!("truth only:  {l}")));
    out.sort_by(|a, b| a[13..].cmp(&b[13..]));
    out
}
