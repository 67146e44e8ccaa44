//! `helsemelding-lab soak`: runs [`super::run`], prints a table row per sample as it goes and the
//! verdict at the end, and writes the whole report (options, samples, tally, verdict) as JSON to
//! `--report`. Exit 0 when the verdict passed, 1 when it did not, 2 when the soak could not run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::{run, sample, SoakOptions};

#[derive(clap::Args, Debug)]
pub struct SoakArgs {
    /// Messages to run through the gateway.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Where the JSON report goes.
    #[arg(long)]
    pub report: PathBuf,
    /// How many times faster than the wall clock the gateway's clock runs (the AppRec timeout of
    /// 96 h and the retention of 120 h pass in 96/N and 120/N hours of wall time).
    #[arg(long, default_value_t = 2880)]
    pub clock_speed: u32,
    /// Seconds between two samples.
    #[arg(long, default_value_t = 10)]
    pub sample_every: u64,
    /// How many senders the traffic comes from (GP persons and hospital services, alternating).
    #[arg(long, default_value_t = 64)]
    pub senders: usize,
    /// Size of each message's XML in bytes.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// The nursing home answers one in this many of its messages with an AppRec (home care never).
    #[arg(long, default_value_t = 4)]
    pub answer_every: usize,
    /// The shipped configuration the soak copies (its broker URL, paths and timeouts are replaced).
    #[arg(long, default_value = "config/gateway.toml")]
    pub config: PathBuf,
    /// Installed schemas (default: the configuration's `paths.schemas`).
    #[arg(long)]
    pub schemas: Option<PathBuf>,
    /// Keep the run's directory (configuration, gateway stderr, state) here.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

pub fn run_soak(args: &SoakArgs) -> ExitCode {
    let fail = |what: String| {
        eprintln!("helsemelding-lab soak: {what}");
        ExitCode::from(2)
    };
    let crate::RunPaths { base, schemas, .. } =
        match crate::RunPaths::resolve(&args.config, args.schemas.as_deref()) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return fail(format!("cannot find this executable: {e}")),
    };
    let o = SoakOptions {
        exe,
        base,
        schemas,
        messages: args.messages,
        clock_speed: args.clock_speed,
        sample_every: Duration::from_secs(args.sample_every.max(1)),
        senders: args.senders,
        size: args.size,
        answer_every: args.answer_every,
        stall: Duration::from_secs(300),
        keep: args.keep.clone(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("runtime: {e}")),
    };
    println!(
        "# soak: {} messages from {} senders, clock x{}, load {}",
        o.messages,
        o.senders,
        o.clock_speed,
        crate::bench::loadavg()
    );
    println!("{}", sample::table_header());
    let report = match rt.block_on(run(&o, |s| println!("{}", sample::table_row(s)))) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let v = &report.verdict;
    println!(
        "# {} messages in {:.0} s ({:.0} msg/s), load {} → {}",
        report.tally.delivered,
        report.load_s,
        report.rate,
        report.loadavg_start,
        report.loadavg_end
    );
    println!(
        "# tally: {}",
        serde_json::to_string(&report.tally).unwrap_or_default()
    );
    for f in &v.flatness {
        println!(
            "# {:<12} at warm-up {:>10}  max {:>10}  end {:>10}  growth {:>6.1} %  {}",
            f.figure,
            f.at_warm_up,
            f.max,
            f.end,
            f.growth_pct,
            if f.flat { "flat" } else { "GROWS" }
        );
    }
    let b = &v.store;
    println!(
        "# store        records at most {} (received within retention then: {}), over the bound at {} of {} samples; file at most {} then {} bytes (first/second half)  {}",
        b.max_records,
        b.allowed_at_max,
        b.over_bound,
        b.samples,
        b.file_first_half_max,
        b.file_second_half_max,
        if b.bounded { "bounded" } else { "NOT BOUNDED" }
    );
    println!(
        "# verdict: {} (invariants {}, flat {}); lost {}, second AppRecs {}, inversions {}, CRL updates {} (stale→refreshed {}), overdue {}, pruned {}, records left {:?}",
        if v.passed { "PASS" } else { "FAIL" },
        v.invariants_hold,
        v.flat,
        v.lost,
        v.second_apprecs,
        v.inversions,
        v.crl_updates,
        v.crl_stale_refreshed,
        v.overdue,
        v.pruned,
        v.records_left
    );
    for p in &v.problems {
        println!("# problem: {p}");
    }
    match serde_json::to_string_pretty(&report) {
        Ok(json) => {
            if let Err(e) = std::fs::write(&args.report, json) {
                return fail(format!("{}: {e}", args.report.display()));
            }
        }
        Err(e) => return fail(format!("report: {e}")),
    }
    if v.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
