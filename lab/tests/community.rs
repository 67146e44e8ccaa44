//! Issue 13 item 5: a synthetic health community (`helsemelding-lab community`) through the real
//! gateway (own vhost, real RabbitMQ, `[insight]` on with a key file), then `helsemelding report`:
//! its `indicators.csv` must equal the truth the generator planted in every cell — the same set
//! of cells, the same values, numerators, denominators and n, the same suppression marks.
//!
//! The truth is computed from the generator's plan (`community::truth`), not from the messages
//! and not with the report's indicator code, so a wrong report (or a wrong generator) fails here.
//! The same traffic replayed in another order through a fresh gateway gives the same report (the
//! research note's pitfall "replay gives the same report", end to end).
//! Smaller than the CLI's default (fewer stays a day) for test time, but the same 120 days, six
//! municipalities and twenty GP offices, over the spring's public holidays. The cells include I10
//! by direction and by TypeForesp and I12 by sending organisation, with their own secondary
//! suppression.

mod support;

use std::time::Duration;

use helsemelding_lab::community::plan::{make, Fate, Shape};
use helsemelding_lab::community::run::{through_gateway, RunOptions};
use helsemelding_lab::community::{differences, truth};

fn shape() -> Shape {
    Shape {
        seed: 7,
        days: 120,
        // March to June: Easter, 1 May, Ascension and Whit Monday fall inside, so I10's "within
        // 5 working days" is checked across public holidays (the report computes them from Easter,
        // the truth has them written out).
        last_day: time::macros::date!(2026 - 06 - 30),
        municipalities: 6,
        gp_offices: 20,
        admissions_per_day: 4.0,
        questions_per_day: 8.0,
    }
}

#[test]
fn the_plan_has_what_the_issue_asks_for() {
    let c = make(&shape());
    assert_eq!(c.municipalities.len(), 6);
    assert_eq!(c.gp_offices.len(), 20);
    assert!(c.departments.len() >= 2);
    for id in &c.patients {
        assert!(
            !helsemelding_lab::community::plan::second_check_digit_valid(id),
            "{id} could be a real identity number"
        );
    }
    let has = |t: &str| c.messages.iter().any(|m| m.msg_type == t);
    for t in [
        "LOG_INNLAGT",
        "INNLEGGELSESRAPPORT",
        "LOG_UTSKRIVNINGSKLAR",
        "LOG_AVMELDING",
        "LOG_UTSKREVET",
        "UTSKRIVNINGSRAPPORT",
        "DIALOG_FORESPORSEL",
        "DIALOG_SVAR",
    ] {
        assert!(has(t), "no {t}");
    }
    let status = |s: &str| {
        c.messages.iter().any(|m| {
            matches!(&m.body, helsemelding_lab::community::plan::Body::Plo { status, .. } if *status == s)
        })
    };
    assert!(status("C") && status("M"), "cancellations and updates");
    assert!(c.messages.iter().any(|m| m.fate == Fate::Spoofed));
    assert!(c.messages.iter().any(|m| m.fate == Fate::Invalid));
    assert!(c.messages.iter().any(|m| m.again), "a sender's retry");
    assert!(c.questions.iter().any(|q| q.answered.is_none()));
    // Questions whose five working days run across Easter 2026 (2, 3 and 6 April).
    let before_easter = time::macros::date!(2026 - 03 - 27)..=time::macros::date!(2026 - 04 - 01);
    assert!(c
        .questions
        .iter()
        .any(|q| before_easter.contains(&q.asked.date())));
    // Dialogue in four directions, with several TypeForesp codes (I10's splits).
    let side = |her: u32| c.party(her).map(|p| format!("{:?}", p.side));
    let directions: std::collections::BTreeSet<_> = c
        .questions
        .iter()
        .map(|q| (side(q.asker), side(q.unit)))
        .collect();
    assert_eq!(directions.len(), 4, "{directions:?}");
    let codes: std::collections::BTreeSet<_> = c.questions.iter().map(|q| q.type_foresp).collect();
    assert!(codes.len() >= 4, "{codes:?}");
    assert!(c.episodes.iter().any(|e| e.discharged.is_none()));
    assert!(c.episodes.iter().any(|e| e.avmeldt));
    let first = c.messages.first().unwrap().at.date();
    let last = c.messages.last().unwrap().at.date();
    assert!((last - first).whole_days() >= 119, "{first} … {last}");
    // Same seed, same community.
    assert_eq!(truth::csv(&c), truth::csv(&make(&shape())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_synthetic_community_equals_its_truth_in_every_cell() {
    let c = make(&shape());
    let dir = tempfile::tempdir().unwrap();
    let o = RunOptions {
        repo: support::repo(),
        schemas: support::schemas(),
        dir: dir.path().to_path_buf(),
        stall: Duration::from_secs(120),
        reversed: false,
    };
    let r = through_gateway(&c, &o).await.expect("the community runs");
    assert_eq!(
        r.observed, r.expected,
        "one observation per delivered message"
    );
    assert_eq!(
        r.refused, r.expected_refused,
        "the refused messages were refused"
    );
    let want = truth::csv(&c);
    let d = differences(&want, &r.report_csv);
    assert!(
        d.is_empty(),
        "{} of {} cells differ:\n{}",
        d.len(),
        want.lines().count() - 1,
        d.join("\n")
    );
    // Not vacuous: shown and suppressed cells of every indicator family are in it.
    for ind in [
        "I1,",
        "I2,",
        "I3,",
        "I4_median,",
        "I5,",
        "I6,",
        "I7_home,",
        "I8,",
        "I9_innleggelsesrapport,",
        "I10_median_h,",
        "I11_missing_4d,",
        "I12_total,",
        "I10_within_5d_dir_gp_municipality,",
        "I10_median_h_dir_",
        "I10_unanswered_14d_T",
        "I10_p90_h_T",
        "I12_from_",
    ] {
        assert!(
            want.lines()
                .any(|l| l.starts_with(ind) && l.ends_with(",false")),
            "no shown {ind} cell"
        );
    }
    assert!(want.lines().any(|l| l.ends_with(",true")));
    // The splits' own suppression: hidden cells of each, and cells hidden only because a partner
    // in their row was (secondary suppression: large enough on their own).
    for split in ["_dir_", "_T", "I12_from_"] {
        assert!(
            want.lines()
                .any(|l| l.contains(split) && l.starts_with('I') && l.ends_with(",true")),
            "no hidden {split} cell"
        );
    }
    let planted = truth::rows(&c);
    // Shown by rule 1 alone: a count 0 or ≥ 5, a share's denominator ≥ 5 and numerator 0 or ≥ 5.
    let large = |r: &&truth::Row| {
        r.suppressed
            && r.numerator.is_some_and(|k| k == 0.0 || k >= 5.0)
            && r.denominator.is_none_or(|d| d >= 5.0)
    };
    for split in ["I10_within_5d_dir_", "I10_within_5d_T", "I12_from_"] {
        assert!(
            planted
                .iter()
                .filter(|r| r.indicator.starts_with(split))
                .any(|r| large(&r)),
            "no {split} cell hidden by secondary suppression"
        );
    }

    // Replayed: the same messages through a fresh gateway, published in reverse order (answers
    // before questions, updates and cancellations before what they point to), at another time.
    // Indicators use the messages' own times, so the report is the same, byte for byte.
    let again = tempfile::tempdir().unwrap();
    let replay = through_gateway(
        &c,
        &RunOptions {
            dir: again.path().to_path_buf(),
            reversed: true,
            ..o
        },
    )
    .await
    .expect("the replay runs");
    assert_eq!(replay.observed, replay.expected);
    assert_eq!(
        replay.report_csv, r.report_csv,
        "a replay gives the same report"
    );
}
