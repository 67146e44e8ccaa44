//! `helsemelding-lab community --days 120 --seed N --out DIR`: makes the community, writes
//! `DIR/truth.csv` (the planted cells, the columns of `indicators.csv`) and `DIR/register.toml`
//! (its parties), then — unless `--truth-only` — runs it through a gateway of its own
//! (`DIR/gateway/`), writes the report to `DIR/report/` and compares: exit 0 when the report
//! equals the truth in every cell, 1 when not (the differences are printed), 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::plan::{make, Shape};
use super::run::{register_toml, through_gateway, RunOptions};
use super::{differences, truth};

#[derive(clap::Args, Debug)]
pub struct CommunityArgs {
    /// Days of traffic (at least 120 for a community worth reporting on).
    #[arg(long, default_value_t = 120)]
    pub days: u32,
    /// The seed: the same seed gives the same community.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The last day of traffic, YYYY-MM-DD (default: yesterday, so every GenDate is in the past).
    #[arg(long)]
    pub last_day: Option<String>,
    #[arg(long, default_value_t = 6)]
    pub municipalities: usize,
    #[arg(long, default_value_t = 20)]
    pub gp_offices: usize,
    /// New hospital stays per day.
    #[arg(long, default_value_t = 10.0)]
    pub admissions_per_day: f64,
    /// New dialogue questions per day.
    #[arg(long, default_value_t = 8.0)]
    pub questions_per_day: f64,
    /// Write the truth and the register only; do not run a gateway.
    #[arg(long)]
    pub truth_only: bool,
    /// Where to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// The shape the arguments ask for, or what is wrong with them.
pub fn shape(a: &CommunityArgs) -> Result<Shape, String> {
    if a.days == 0 || a.municipalities == 0 || a.gp_offices == 0 {
        return Err("--days, --municipalities and --gp-offices must be at least 1".into());
    }
    if a.municipalities > 99 {
        return Err("--municipalities: at most 99 (kommunenummer 9901–9999)".into());
    }
    let last_day = match &a.last_day {
        Some(s) => time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|e| format!("--last-day {s:?}: expected YYYY-MM-DD ({e})"))?,
        None => (time::OffsetDateTime::now_utc() - time::Duration::days(1)).date(),
    };
    // The truth counts I10's working days with its own table of public holidays; a question's
    // five working days may run a few weeks past the last day.
    let years = super::truth::HOLIDAY_YEARS;
    let first_day = last_day - time::Duration::days(i64::from(a.days));
    if !years.contains(&first_day.year())
        || !years.contains(&(last_day + time::Duration::days(31)).year())
    {
        return Err(format!(
            "--days/--last-day: the community must lie within {}–{} less a month (the truth's table of Norwegian public holidays); got {first_day} to {last_day}",
            years.start(),
            years.end()
        ));
    }
    Ok(Shape {
        seed: a.seed,
        days: a.days,
        last_day,
        municipalities: a.municipalities,
        gp_offices: a.gp_offices,
        admissions_per_day: a.admissions_per_day,
        questions_per_day: a.questions_per_day,
    })
}

pub fn run_community(a: &CommunityArgs) -> ExitCode {
    let shape = match shape(a) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("helsemelding-lab community: {e}");
            return ExitCode::from(2);
        }
    };
    let c = make(&shape);
    let truth = truth::csv(&c);
    let repo = crate::repo_root();
    let written = std::fs::create_dir_all(&a.out)
        .and_then(|()| std::fs::write(a.out.join("truth.csv"), &truth))
        .and_then(|()| {
            std::fs::write(
                a.out.join("register.toml"),
                register_toml(&c, &repo.join("fixtures/gateway-pki")),
            )
        });
    if let Err(e) = written {
        eprintln!(
            "helsemelding-lab community: writing {}: {e}",
            a.out.display()
        );
        return ExitCode::FAILURE;
    }
    println!(
        "{} parties, {} patients, {} episodes, {} messages ({} refused by design), {} truth rows -> {}",
        c.parties.len(),
        c.patients.len(),
        c.episodes.len(),
        c.messages.len(),
        super::run::expected_refused(&c),
        truth.lines().count() - 1,
        a.out.join("truth.csv").display()
    );
    if a.truth_only {
        return ExitCode::SUCCESS;
    }
    let o = RunOptions {
        repo: repo.clone(),
        schemas: repo.join("../shared/standards/xsd"),
        dir: a.out.clone(),
        stall: Duration::from_secs(180),
        reversed: false,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("helsemelding-lab community: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(through_gateway(&c, &o)) {
        Ok(r) => {
            println!(
                "recorded {} of {} delivered, refused {} of {}; report in {}",
                r.observed,
                r.expected,
                r.refused,
                r.expected_refused,
                r.report_dir.display()
            );
            let d = differences(&truth, &r.report_csv);
            if d.is_empty() {
                println!(
                    "report = truth in every cell ({} cells)",
                    truth.lines().count() - 1
                );
                ExitCode::SUCCESS
            } else {
                println!("{} differences:", d.len());
                for l in d {
                    println!("  {l}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("helsemelding-lab community: {e}");
            ExitCode::FAILURE
        }
    }
}
