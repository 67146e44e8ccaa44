//! `helsemelding bench`: the bare relay and the full gateway against the same broker, each in a
//! vhost of its own, for each message size; prints one table with the gateway/relay ratio and the
//! load average, so a reader can judge figures taken on a shared machine.

use std::path::PathBuf;
use std::process::ExitCode;

use super::gateway::{self, GatewayBench, GatewayReport};
use super::relay::{self, RelayLatency, RelayReport};
use super::{loadavg, BenchError};
use crate::amqp::testing::TestVhost;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Messages through the relay and the gateway per size (throughput part).
    #[arg(long, default_value_t = 4000)]
    pub messages: usize,
    /// Messages published at half the measured rate for the latency part.
    #[arg(long, default_value_t = 1500)]
    pub latency_messages: usize,
    /// Message sizes in bytes (XML before signing), comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [4096usize, 51200])]
    pub sizes: Vec<usize>,
    /// Consumer prefetch of the relay and the gateway (the shipped default is 256).
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// Only the gateway part (no relay baseline).
    #[arg(long)]
    pub gateway_only: bool,
    /// The official schemas (layout of ../shared/standards/xsd).
    #[arg(long, default_value = "../shared/standards/xsd")]
    pub schemas: PathBuf,
    /// The repository root (config/, fixtures/gateway-pki/).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
}

/// Runs the benchmark and prints the table; exit 1 when a part failed.
pub fn run(args: &BenchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("helsemelding bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_all(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helsemelding bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_all(args: &BenchArgs) -> Result<(), BenchError> {
    let exe =
        std::env::current_exe().map_err(|e| BenchError::Setup(format!("own executable: {e}")))?;
    let abs = |p: &PathBuf| {
        std::fs::canonicalize(p).map_err(|e| BenchError::Setup(format!("{}: {e}", p.display())))
    };
    let (repo, schemas) = (abs(&args.repo)?, abs(&args.schemas)?);
    println!(
        "helsemelding bench: {} messages per size (+{} for latency), prefetch {}, quorum queues, {} cores",
        args.messages,
        args.latency_messages,
        args.prefetch,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1)
    );
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let relay = if args.gateway_only {
            None
        } else {
            let load = loadavg();
            let vhost = TestVhost::create()
                .await
                .map_err(|e| BenchError::Setup(format!("vhost: {e}")))?;
            let r = relay::run(vhost.url(), args.messages as u64, size, args.prefetch).await;
            let _ = vhost.delete().await;
            let r = r?;
            println!(
                "  relay   {:>6} B: {:>7.0} msg/s   (load {load})",
                size, r.relay_rate
            );
            Some((r, load))
        };
        let load = loadavg();
        let b = GatewayBench {
            exe: exe.clone(),
            repo: repo.clone(),
            schemas: schemas.clone(),
            messages: args.messages,
            latency_messages: args.latency_messages,
            size,
            prefetch: args.prefetch,
        };
        let g = gateway::run(&b).await?;
        println!(
            "  gateway {:>6} B: {:>7.0} msg/s   (load {load}; signing took {:.1} s)",
            size, g.throughput, g.signing_seconds
        );
        // The broker's share of that latency: the bare relay fed at the very same rate.
        let relay_latency = if args.gateway_only {
            None
        } else {
            let vhost = TestVhost::create()
                .await
                .map_err(|e| BenchError::Setup(format!("vhost: {e}")))?;
            let l = relay::latency(
                vhost.url(),
                args.latency_messages as u64,
                g.envelope_bytes,
                args.prefetch,
                g.latency_rate,
            )
            .await;
            let _ = vhost.delete().await;
            let l = l?;
            println!(
                "  relay   {:>6} B at {:.0} msg/s: p50 {:.1} ms, p99 {:.1} ms",
                size, l.rate, l.p50_ms, l.p99_ms
            );
            Some(l)
        };
        rows.push((relay, g, load, relay_latency));
    }
    println!();
    print!("{}", table(&rows));
    Ok(())
}

/// One size: the relay's report and load average (unless skipped), the gateway's, its load average,
/// and the relay's latency at the gateway's half rate (unless skipped).
type Row = (
    Option<(RelayReport, String)>,
    GatewayReport,
    String,
    Option<RelayLatency>,
);

fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "| size (XML / signed) | relay msg/s | gateway msg/s | gateway/relay | latency p50 / p99 / max ms (at msg/s) | of it inside the gateway p50 / p99 ms | bare relay at that rate p50 / p99 ms | peak RSS MB | load avg (relay; gateway) |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for (relay, g, load, relay_latency) in rows {
        let (rr, rl, ratio) = match relay {
            Some((r, l)) => (
                format!("{:.0}", r.relay_rate),
                l.as_str(),
                format!("{:.0} %", 100.0 * g.throughput / r.relay_rate),
            ),
            None => ("-".into(), "-", "-".into()),
        };
        let relay_lat = relay_latency
            .as_ref()
            .map_or("-".into(), |l| format!("{:.1} / {:.1}", l.p50_ms, l.p99_ms));
        let _ = writeln!(
            s,
            "| {} / {} B | {rr} | {:.0} | {ratio} | {:.1} / {:.1} / {:.1} ({:.0}, n={}) | {:.1} / {:.1} | {relay_lat} | {:.1} | {rl}; {load} |",
            g.size,
            g.envelope_bytes,
            g.throughput,
            g.p50_ms,
            g.p99_ms,
            g.max_ms,
            g.latency_rate,
            g.latency_messages,
            g.inside_p50_ms,
            g.inside_p99_ms,
            g.peak_rss_kb as f64 / 1024.0
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "CPU per message in the gateway process (µs), throughput part:"
    );
    let mut header = String::from("| size | total |");
    let mut rule = String::from("|---|---|");
    if let Some((_, g, _, _)) = rows.first() {
        for (name, _) in &g.cpu.stages {
            let _ = write!(header, " {name} |");
            rule.push_str("---|");
        }
    }
    let _ = writeln!(
        s,
        "{header} store commit (writer thread) | AMQP, store reads, runtime, log (rest) |"
    );
    let _ = writeln!(s, "{rule}---|---|");
    for (_, g, _, _) in rows {
        let mut line = format!("| {} B | {:.0} |", g.size, g.cpu.total_us);
        for (_, us) in &g.cpu.stages {
            let _ = write!(line, " {us:.0} |");
        }
        let _ = writeln!(
            s,
            "{line} {:.0} | {:.0} |",
            g.cpu.store_commit_us, g.cpu.rest_us
        );
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Where the latency goes inside the gateway, mean wall ms per phase at half rate (waits included):");
    if let Some((_, g, _, _)) = rows.first() {
        let names: Vec<&str> = g.phase_ms.iter().map(|(n, _)| *n).collect();
        let _ = writeln!(s, "| size | {} |", names.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(names.len()));
    }
    for (_, g, _, _) in rows {
        let cells: Vec<String> = g
            .phase_ms
            .iter()
            .map(|(_, ms)| format!("{ms:.2}"))
            .collect();
        let _ = writeln!(s, "| {} B | {} |", g.size, cells.join(" | "));
    }
    let _ = writeln!(s);
    let cores = std::thread::available_parallelism()
        .map(|p| p.get())
        .unwrap_or(1) as f64;
    let _ = writeln!(
        s,
        "CPU budget per message (µs) on this {cores:.0}-core machine: what the broker, the forwarding process and the benchmark's own \
         clients each spend; the ceiling is cores × 1 s / their sum, the rate if every core did nothing else:"
    );
    let _ = writeln!(s, "| size | path | broker | forwarding process | benchmark clients | sum | ceiling msg/s | measured msg/s |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.0}"));
    for (relay, g, _, _) in rows {
        if let Some((r, _)) = relay {
            let sum = r.broker_cpu_us.map(|b| b + r.relay_cpu_us);
            let _ = writeln!(
                s,
                "| {} B | relay (relay + drain in one process) | {} | {:.0} | (included) | {} | {} | {:.0} |",
                r.size,
                fmt(r.broker_cpu_us),
                r.relay_cpu_us,
                fmt(sum),
                fmt(sum.map(|t| cores * 1e6 / t)),
                r.relay_rate
            );
        }
        let sum = g
            .broker_cpu_us
            .map(|b| b + g.cpu.total_us + g.client_cpu_us);
        let _ = writeln!(
            s,
            "| {} B | gateway | {} | {:.0} | {:.0} | {} | {} | {:.0} |",
            g.size,
            fmt(g.broker_cpu_us),
            g.cpu.total_us,
            g.client_cpu_us,
            fmt(sum),
            fmt(sum.map(|t| cores * 1e6 / t)),
            g.throughput
        );
    }
    s
}
