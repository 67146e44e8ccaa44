//! `helsemelding-lab bench`: the bare relay and the full gateway against the same broker, each in a
//! vhost of its own, for each message size; prints one table with the gateway/relay ratio and the
//! load average, so a reader can judge figures taken on a shared machine — or, with `--json`, one
//! JSON object on stdout for a program to read ([`json`]; progress then goes to stderr).
//!
//! Large sizes (up to 1 MiB and beyond) are bounded by `--max-mb`: each part of a size sends at
//! most that many megabytes, so 1 MiB messages run with fewer messages instead of holding
//! gigabytes in the broker and in this process; the counts used are printed and in the JSON.
//!
//! `--compare-stores` (with `--store-postgres`) runs the gateway part alone in three setups per
//! size — one instance on redb, one on PostgreSQL, two on PostgreSQL sharing the intake and the
//! database — and prints them as one table ([`compare_json`] for `--json`). CPU per message is the
//! gateway processes' together, and on PostgreSQL also the server's backends serving the run's
//! database: work the store hands over that redb does in the gateway's own writer thread.

use std::path::PathBuf;
use std::process::ExitCode;

use super::gateway::{self, median, GatewayBench, GatewayReport};
use super::relay::{self, RelayLatency, RelayReport};
use super::{in_own_vhost, loadavg, BenchError};

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
    /// Senders whose traffic the gateway part interleaves (dialogue and PLO alternating; beyond the
    /// shipped register's two, extra GP persons and hospital services are registered for the run).
    /// The gateway keeps each sender's order with one message in flight per sender, so this is how
    /// much it may do at once; a hub serves hundreds.
    #[arg(long, default_value_t = 16)]
    pub senders: usize,
    /// Consumer prefetch of the relay and the gateway (the shipped default is 256).
    #[arg(long, default_value_t = 256)]
    pub prefetch: u16,
    /// Only the gateway part (no relay baseline).
    #[arg(long)]
    pub gateway_only: bool,
    /// Run the gateway on the PostgreSQL delivery store at this URL (a server database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/test`: the run gets a database of its own in it,
    /// dropped afterwards) instead of redb.
    #[arg(long)]
    pub store_postgres: Option<String>,
    /// Compare the delivery stores side by side instead (needs `--store-postgres`): for each size
    /// the gateway alone (no relay) as one instance on redb, one on PostgreSQL and two on
    /// PostgreSQL sharing the intake; one table (or the JSON's `compare_stores`).
    #[arg(long, requires = "store_postgres")]
    pub compare_stores: bool,
    /// The official schemas (layout of ../shared/standards/xsd).
    #[arg(long, default_value = "../shared/standards/xsd")]
    pub schemas: PathBuf,
    /// The repository root (config/, fixtures/gateway-pki/).
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// At most this many MB of messages per part (throughput, latency) and size: large sizes get
    /// fewer messages.
    #[arg(long, default_value_t = 256)]
    pub max_mb: usize,
    /// The latency part in this many rounds (`--latency-messages` split among them), each
    /// gateway round followed by the bare relay at the same rate and count: on a machine whose
    /// speed drifts from minute to minute one pair of runs cannot compare p99s, the median of
    /// several alternating ones can (the table and JSON give each round and the medians).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub rounds: u16,
    /// Print one JSON object on stdout instead of the tables (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    /// Messages per part for `size`: the asked number, bounded by `--max-mb` (at least 10, so a
    /// p99 still means something).
    pub fn messages_for(&self, asked: usize, size: usize) -> usize {
        asked
            .min((self.max_mb << 20) / size.max(1))
            .max(10.min(asked))
    }
}

/// Runs the benchmark and prints the table; exit 1 when a part failed.
pub fn run(args: &BenchArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("helsemelding-lab bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run_all(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helsemelding-lab bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Progress for people: stdout with the tables, stderr when stdout is the JSON.
fn say(args: &BenchArgs, line: String) {
    if args.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// The figures: the JSON object on stdout with `--json`, else the tables after a blank line.
fn print(
    args: &BenchArgs,
    json: impl FnOnce() -> serde_json::Value,
    table: impl FnOnce() -> String,
) {
    if args.json {
        println!("{}", json());
    } else {
        println!();
        print!("{}", table());
    }
}

/// This executable (the gateway the runs start), the repository root and the schemas, absolute.
fn paths(args: &BenchArgs) -> Result<(PathBuf, PathBuf, PathBuf), BenchError> {
    let exe =
        std::env::current_exe().map_err(|e| BenchError::Setup(format!("own executable: {e}")))?;
    let abs = |p: &PathBuf| {
        std::fs::canonicalize(p).map_err(|e| BenchError::Setup(format!("{}: {e}", p.display())))
    };
    Ok((exe, abs(&args.repo)?, abs(&args.schemas)?))
}

async fn run_all(args: &BenchArgs) -> Result<(), BenchError> {
    if args.compare_stores {
        return compare_stores(args).await;
    }
    let say = |line: String| say(args, line);
    let paths = paths(args)?;
    say(format!(
        "helsemelding-lab bench: {} messages per size (+{} for latency; at most {} MB per part) from {} senders, prefetch {}, quorum queues, {} cores, delivery store {}",
        args.messages,
        args.latency_messages,
        args.max_mb,
        args.senders.max(1),
        args.prefetch,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        if args.store_postgres.is_some() { "PostgreSQL" } else { "redb" },
    ));
    let mut rows = Vec::new();
    for &size in &args.sizes {
        let messages = args.messages_for(args.messages, size);
        let latency_messages = args.messages_for(args.latency_messages, size);
        let relay = if args.gateway_only {
            None
        } else {
            let load = loadavg();
            let r = in_own_vhost(|url| async move {
                relay::run(&url, messages as u64, size, args.prefetch).await
            })
            .await?;
            say(format!(
                "  relay   {:>7} B: {:>7.0} msg/s   ({messages} messages; load {load})",
                size, r.relay_rate
            ));
            Some((r, load))
        };
        let load = loadavg();
        let b = GatewayBench {
            relay_rounds: args.rounds > 1 && !args.gateway_only,
            ..gateway_bench(args, &paths, size)
        };
        let g = gateway::run(&b).await?;
        say(format!(
            "  gateway {:>7} B: {:>7.0} msg/s   ({messages} messages; load {load}; signing took {:.1} s)",
            size, g.throughput, g.signing_seconds
        ));
        // The broker's share of that latency: the bare relay fed at the very same rate — in
        // rounds alternating with the gateway's (their medians), or once after it.
        let relay_latency = if args.gateway_only {
            None
        } else if args.rounds > 1 {
            let l = rounds_median(&g);
            if let Some(l) = &l {
                for (n, r) in g.rounds.iter().enumerate() {
                    say(format!(
                        "  round {}: gateway p99 {:.1} ms, relay p99 {} ms",
                        n + 1,
                        r.p99_ms,
                        r.relay_p99_ms.map_or("-".into(), |v| format!("{v:.1}"))
                    ));
                }
                say(format!(
                    "  {size:>7} B, medians of {} rounds at {:.0} msg/s: gateway p99 {:.1} ms, relay p99 {:.1} ms",
                    g.rounds.len(),
                    l.rate,
                    g.p99_median_of_rounds().unwrap_or(0.0),
                    l.p99_ms
                ));
            }
            l
        } else {
            let (envelope, rate) = (g.envelope_bytes, g.latency_rate);
            let l = in_own_vhost(|url| async move {
                relay::latency(&url, latency_messages as u64, envelope, args.prefetch, rate).await
            })
            .await?;
            say(format!(
                "  relay   {:>7} B at {:.0} msg/s: p50 {:.1} ms, p99 {:.1} ms",
                size, l.rate, l.p50_ms, l.p99_ms
            ));
            Some(l)
        };
        rows.push((relay, g, load, relay_latency));
    }
    print(args, || json(args, &rows), || table(&rows));
    Ok(())
}

/// The gateway part for `size` as `args` ask: one instance on the store asked for, the budget as
/// shipped, the latency in `--rounds` rounds without the relay between them.
fn gateway_bench(
    args: &BenchArgs,
    (exe, repo, schemas): &(PathBuf, PathBuf, PathBuf),
    size: usize,
) -> GatewayBench {
    GatewayBench {
        exe: exe.clone(),
        repo: repo.clone(),
        schemas: schemas.clone(),
        messages: args.messages_for(args.messages, size),
        latency_messages: args.messages_for(args.latency_messages, size),
        size,
        prefetch: args.prefetch,
        senders: args.senders.max(1),
        store_postgres: args.store_postgres.clone(),
        instances: 1,
        default_budget: true,
        latency_rounds: usize::from(args.rounds),
        relay_rounds: false,
    }
}

/// The relay's side of the rounds as one [`RelayLatency`]: the medians of its rounds' p50 and
/// p99 (`None` when the relay did not run alternately).
fn rounds_median(g: &GatewayReport) -> Option<RelayLatency> {
    let p99 = median(g.rounds.iter().filter_map(|r| r.relay_p99_ms))?;
    Some(RelayLatency {
        rate: g.latency_rate,
        messages: g.rounds.iter().map(|r| r.messages).sum(),
        p50_ms: median(g.rounds.iter().filter_map(|r| r.relay_p50_ms)).unwrap_or(0.0),
        p99_ms: p99,
    })
}

/// The figures as one JSON object: `{"sizes": [{"xml_bytes", "relay_msgs_per_s",
/// "gateway_msgs_per_s", "p50_ms", "p99_ms", "relay_p99_ms_same_rate", "cpu_us_per_msg": {"total",
/// "verify", "validate", …}, "peak_rss_mb", …}], …}`; a part that was not run (`--gateway-only`)
/// is `null`. Rates in messages per second, times in ms, CPU in µs per message.
pub fn json(args: &BenchArgs, rows: &[Row]) -> serde_json::Value {
    use serde_json::json;
    let sizes: Vec<serde_json::Value> = rows
        .iter()
        .map(|(relay, g, load, relay_latency)| {
            let mut cpu = serde_json::Map::new();
            cpu.insert("total".into(), json!(g.cpu.total_us));
            for (name, us) in &g.cpu.stages {
                cpu.insert((*name).into(), json!(us));
            }
            cpu.insert("store_commit".into(), json!(g.cpu.store_commit_us));
            cpu.insert("amqp_io".into(), json!(g.cpu.amqp_io_us));
            cpu.insert("rest".into(), json!(g.cpu.rest_us));
            cpu.insert(
                "target_1_5x_verify_validate".into(),
                json!(g.cpu.target_us()),
            );
            cpu.insert("floor_stages_and_amqp_io".into(), json!(g.cpu.floor_us()));
            let phases: serde_json::Map<String, serde_json::Value> = g
                .phase_ms
                .iter()
                .map(|(name, ms)| ((*name).to_owned(), json!(ms)))
                .collect();
            json!({
                "xml_bytes": g.size,
                "envelope_bytes": g.envelope_bytes,
                "messages": g.messages,
                "relay_msgs_per_s": relay.as_ref().map(|(r, _)| r.relay_rate),
                "gateway_msgs_per_s": g.throughput,
                "gateway_to_relay": relay.as_ref().map(|(r, _)| g.throughput / r.relay_rate),
                "latency_msgs_per_s": g.latency_rate,
                "latency_messages": g.latency_messages,
                "p50_ms": g.p50_ms,
                "p99_ms": g.p99_ms,
                "max_ms": g.max_ms,
                "inside_p50_ms": g.inside_p50_ms,
                "inside_p99_ms": g.inside_p99_ms,
                "relay_p50_ms_same_rate": relay_latency.as_ref().map(|l| l.p50_ms),
                "relay_p99_ms_same_rate": relay_latency.as_ref().map(|l| l.p99_ms),
                "latency_rounds": g.rounds.iter().map(|r| json!({
                    "messages": r.messages,
                    "p50_ms": r.p50_ms,
                    "p99_ms": r.p99_ms,
                    "relay_p50_ms": r.relay_p50_ms,
                    "relay_p99_ms": r.relay_p99_ms,
                })).collect::<Vec<_>>(),
                "p99_ms_median_of_rounds": g.p99_median_of_rounds(),
                "cpu_us_per_msg": cpu,
                "broker_cpu_us_per_msg": g.broker_cpu_us,
                "client_cpu_us_per_msg": g.client_cpu_us,
                "relay_broker_cpu_us_per_msg": relay.as_ref().and_then(|(r, _)| r.broker_cpu_us),
                "relay_cpu_us_per_msg": relay.as_ref().map(|(r, _)| r.relay_cpu_us),
                "phase_ms": phases,
                "peak_rss_mb": g.peak_rss_kb as f64 / 1024.0,
                "signing_seconds": g.signing_seconds,
                "loadavg": {
                    "relay": relay.as_ref().map(|(_, l)| l.as_str()),
                    "gateway": load,
                },
            })
        })
        .collect();
    json!({
        "cores": std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        "prefetch": args.prefetch,
        "senders": args.senders.max(1),
        "max_mb": args.max_mb,
        "sizes": sizes,
    })
}

/// One size: the relay's report and load average (unless skipped), the gateway's, its load average,
/// and the relay's latency at the gateway's half rate (unless skipped).
pub type Row = (
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
    if rows.iter().any(|(_, g, _, _)| g.rounds.len() > 1) {
        let _ = writeln!(s);
        let _ = writeln!(s, "The latency part in rounds, each gateway round followed by the bare relay at the same rate and count (the relay column above is the median of these):");
        let _ = writeln!(s, "| size | p99 ms of each round: gateway / relay | median p99: gateway / relay | ratio |");
        let _ = writeln!(s, "|---|---|---|---|");
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        for (_, g, _, _) in rows.iter().filter(|(_, g, _, _)| g.rounds.len() > 1) {
            let each: Vec<String> = g
                .rounds
                .iter()
                .map(|r| format!("{:.1} / {}", r.p99_ms, ms(r.relay_p99_ms)))
                .collect();
            let gm = g.p99_median_of_rounds();
            let rm = rounds_median(g).map(|l| l.p99_ms);
            let ratio = gm
                .zip(rm)
                .map_or("-".to_owned(), |(a, b)| format!("{:.2}", a / b.max(1e-9)));
            let _ = writeln!(
                s,
                "| {} B | {} | {} / {} | {ratio} |",
                g.size,
                each.join(", "),
                ms(gm),
                ms(rm)
            );
        }
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
        "{header} store commit (writer thread) | AMQP client I/O threads | AMQP on the runtime, store reads, runtime, log (rest) | target: 1.5 × (verify + validate) | floor: stages + AMQP I/O |"
    );
    let _ = writeln!(s, "{rule}---|---|---|---|---|");
    for (_, g, _, _) in rows {
        let mut line = format!("| {} B | {:.0} |", g.size, g.cpu.total_us);
        for (_, us) in &g.cpu.stages {
            let _ = write!(line, " {us:.0} |");
        }
        let _ = writeln!(
            s,
            "{line} {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            g.cpu.store_commit_us,
            g.cpu.amqp_io_us,
            g.cpu.rest_us,
            g.cpu.target_us(),
            g.cpu.floor_us()
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

/// The setups `--compare-stores` runs for each size: (label, on PostgreSQL, instances, the
/// default byte budget). Two instances run twice: with the budget raised so that every partition
/// has the full prefetch (comparing the stores, not the window), and as shipped, where each
/// partition's window is `config::DEFAULT_PARTITION_WINDOW`.
pub const COMPARED: [(&str, bool, usize, bool); 4] = [
    ("redb, 1 instance", false, 1, true),
    ("PostgreSQL, 1 instance", true, 1, true),
    ("PostgreSQL, 2 instances", true, 2, false),
    ("PostgreSQL, 2 instances, default budget", true, 2, true),
];

/// `--compare-stores`: each size through each of [`COMPARED`], one after the other on the same
/// broker and server (each in a vhost, state directory and database of its own), printed as one
/// table or one JSON object.
async fn compare_stores(args: &BenchArgs) -> Result<(), BenchError> {
    let say = |line: String| say(args, line);
    let paths = paths(args)?;
    say(format!(
        "helsemelding-lab bench --compare-stores: {} messages per size (+{} for latency) from {} senders, prefetch {}, {} cores",
        args.messages,
        args.latency_messages,
        args.senders.max(1),
        args.prefetch,
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
    ));
    let mut rows = Vec::new();
    for &size in &args.sizes {
        for (label, postgres, instances, default_budget) in COMPARED {
            let load = loadavg();
            let b = GatewayBench {
                instances,
                default_budget,
                ..gateway_bench(args, &paths, size)
            };
            let b = GatewayBench {
                store_postgres: b.store_postgres.filter(|_| postgres),
                ..b
            };
            let g = gateway::run(&b).await?;
            say(format!(
                "  {size:>7} B, {label}: {:.0} msg/s, {:.0} µs CPU per message, p99 {:.1} ms, acked per instance {:?} (load {load})",
                g.throughput,
                g.cpu.total_us + g.store_server_cpu_us.unwrap_or(0.0),
                g.p99_ms,
                g.acked_per_instance
            ));
            rows.push((label, g, load));
        }
    }
    print(args, || compare_json(args, &rows), || compare_table(&rows));
    Ok(())
}

/// One compared run: its label, the figures, the load average before it.
pub type CompareRow = (&'static str, GatewayReport, String);

/// `{"compare_stores": [{"xml_bytes", "setup", "instances", "msgs_per_s", "cpu_us_per_msg":
/// {"gateway", "store_server", "total"}, "p50_ms", "p99_ms", "latency_msgs_per_s", "peak_rss_mb",
/// "loadavg"}], …}`; `store_server` is `null` on redb.
pub fn compare_json(args: &BenchArgs, rows: &[CompareRow]) -> serde_json::Value {
    use serde_json::json;
    let list: Vec<serde_json::Value> = rows
        .iter()
        .map(|(label, g, load)| {
            json!({
                "xml_bytes": g.size,
                "envelope_bytes": g.envelope_bytes,
                "setup": label,
                "instances": g.instances,
                "partitions": g.partitions,
                "acked_per_instance": g.acked_per_instance,
                "messages": g.messages,
                "msgs_per_s": g.throughput,
                "cpu_us_per_msg": {
                    "gateway": g.cpu.total_us,
                    "store_writer": g.cpu.store_commit_us,
                    "store_server": g.store_server_cpu_us,
                    "total": g.cpu.total_us + g.store_server_cpu_us.unwrap_or(0.0),
                },
                "latency_msgs_per_s": g.latency_rate,
                "latency_messages": g.latency_messages,
                "p50_ms": g.p50_ms,
                "p99_ms": g.p99_ms,
                "peak_rss_mb": g.peak_rss_kb as f64 / 1024.0,
                "loadavg": load,
            })
        })
        .collect();
    json!({
        "cores": std::thread::available_parallelism().map(|p| p.get()).unwrap_or(1),
        "prefetch": args.prefetch,
        "senders": args.senders.max(1),
        "compare_stores": list,
    })
}

fn compare_table(rows: &[CompareRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "| size (XML / signed) | setup | msg/s | CPU µs/msg: gateway (of it store writer) + PostgreSQL server = total | p50 / p99 ms (at msg/s) | peak RSS MB (largest instance) | load avg |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for (label, g, load) in rows {
        let server = g
            .store_server_cpu_us
            .map_or("-".to_owned(), |us| format!("{us:.0}"));
        let _ = writeln!(
            s,
            "| {} / {} B | {label} | {:.0} | {:.0} ({:.0}) + {server} = {:.0} | {:.1} / {:.1} ({:.0}) | {:.1} | {load} |",
            g.size,
            g.envelope_bytes,
            g.throughput,
            g.cpu.total_us,
            g.cpu.store_commit_us,
            g.cpu.total_us + g.store_server_cpu_us.unwrap_or(0.0),
            g.p50_ms,
            g.p99_ms,
            g.latency_rate,
            g.peak_rss_kb as f64 / 1024.0
        );
    }
    if let Some((_, g, _)) = rows.iter().find(|(_, g, _)| g.partitions > 0) {
        let _ = writeln!(
            s,
            "\n{} instances share the intake in [amqp] partitions = {} (each preferring its share; the bench publishes through the exchange, so partition 0, gateway_inbound, stays idle).",
            g.instances, g.partitions
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn args(extra: &[&str]) -> BenchArgs {
        Cli::parse_from(std::iter::once("bench").chain(extra.iter().copied())).bench
    }

    fn gateway(size: usize) -> GatewayReport {
        GatewayReport {
            size,
            envelope_bytes: size + 3000,
            messages: 100,
            fill_rate: 900.0,
            throughput: 400.0,
            cpu: super::super::gateway::CpuSplit {
                total_us: 2000.0,
                stages: vec![("verify", 700.0), ("validate", 300.0)],
                store_commit_us: 100.0,
                amqp_io_us: 60.0,
                rest_us: 840.0,
            },
            broker_cpu_us: Some(800.0),
            client_cpu_us: 50.0,
            latency_rate: 200.0,
            latency_messages: 50,
            p50_ms: 4.0,
            p99_ms: 20.0,
            max_ms: 25.0,
            inside_p50_ms: 3.0,
            inside_p99_ms: 9.0,
            phase_ms: vec![("assess", 1.5)],
            peak_rss_kb: 40 * 1024,
            signing_seconds: 0.5,
            instances: 1,
            partitions: 0,
            acked_per_instance: vec![100],
            store_server_cpu_us: None,
            rounds: vec![super::super::gateway::LatencyRound {
                messages: 50,
                p50_ms: 4.0,
                p99_ms: 20.0,
                relay_p50_ms: None,
                relay_p99_ms: None,
            }],
        }
    }

    #[test]
    fn sizes_up_to_a_mebibyte_are_accepted_and_bounded_in_bytes() {
        let a = args(&["--sizes", "4096,1048576", "--json"]);
        assert_eq!(a.sizes, [4096, 1048576]);
        assert!(a.json);
        assert_eq!(a.messages_for(4000, 4096), 4000);
        assert_eq!(a.messages_for(4000, 1048576), 256, "256 MB per part");
        let tight = args(&["--max-mb", "1"]);
        assert_eq!(tight.messages_for(1500, 1048576), 10, "never fewer than 10");
        assert_eq!(tight.messages_for(3, 1048576), 3);
    }

    #[test]
    fn rounds_give_each_pair_and_the_medians() {
        use super::super::gateway::LatencyRound;
        assert_eq!(median([]), None);
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(args(&[]).rounds, 1);
        assert_eq!(args(&["--rounds", "5"]).rounds, 5);
        assert!(Cli::try_parse_from(["x", "--rounds", "0"]).is_err());

        let mut g = gateway(4096);
        g.rounds = [(30.0, 6.0), (12.0, 90.0), (18.0, 7.0)]
            .iter()
            .map(|&(gw, relay)| LatencyRound {
                messages: 100,
                p50_ms: gw / 4.0,
                p99_ms: gw,
                relay_p50_ms: Some(relay / 4.0),
                relay_p99_ms: Some(relay),
            })
            .collect();
        // One slow relay round (90 ms) moves the relay's median to 7, not to a mean of 34.
        let l = rounds_median(&g).expect("the relay ran in rounds");
        assert_eq!((l.p99_ms, l.p50_ms, l.messages), (7.0, 1.75, 300));
        assert!(rounds_median(&gateway(4096)).is_none(), "no relay rounds");

        let rows: Vec<Row> = vec![(None, g, "0.5".into(), Some(l))];
        let v = json(&args(&[]), &rows);
        let s = &v["sizes"][0];
        assert_eq!(s["latency_rounds"].as_array().map(Vec::len), Some(3));
        assert_eq!(s["latency_rounds"][1]["relay_p99_ms"], 90.0);
        assert_eq!(s["p99_ms_median_of_rounds"], 18.0);
        assert_eq!(s["relay_p99_ms_same_rate"], 7.0);
        let t = table(&rows);
        assert!(
            t.contains("| 4096 B | 30.0 / 6.0, 12.0 / 90.0, 18.0 / 7.0 | 18.0 / 7.0 | 2.57 |"),
            "{t}"
        );
    }

    #[test]
    fn json_has_the_figures_a_program_reads_and_null_for_parts_not_run() {
        let relay = RelayReport {
            messages: 100,
            size: 4096,
            prefetch: 256,
            fill_rate: 5000.0,
            relay_rate: 800.0,
            relay_seconds: 0.125,
            broker_cpu_us: None,
            relay_cpu_us: 90.0,
        };
        let lat = RelayLatency {
            rate: 200.0,
            messages: 50,
            p50_ms: 1.0,
            p99_ms: 6.5,
        };
        let rows: Vec<Row> = vec![
            (
                Some((relay, "0.5 0.4 0.3".into())),
                gateway(4096),
                "0.6 0.4 0.3".into(),
                Some(lat),
            ),
            (None, gateway(1048576), "1.0 0.5 0.3".into(), None),
        ];
        let v = json(&args(&[]), &rows);
        let text = v.to_string();
        let back: serde_json::Value = serde_json::from_str(&text).expect("one JSON object");
        let s = &back["sizes"];
        assert_eq!(s.as_array().map(Vec::len), Some(2));
        assert_eq!(s[0]["xml_bytes"], 4096);
        assert_eq!(s[0]["relay_msgs_per_s"], 800.0);
        assert_eq!(s[0]["gateway_msgs_per_s"], 400.0);
        assert_eq!(s[0]["gateway_to_relay"], 0.5);
        assert_eq!(
            (s[0]["p50_ms"].clone(), s[0]["p99_ms"].clone()),
            (4.0.into(), 20.0.into())
        );
        assert_eq!(s[0]["relay_p99_ms_same_rate"], 6.5);
        assert_eq!(s[0]["cpu_us_per_msg"]["total"], 2000.0);
        assert_eq!(s[0]["cpu_us_per_msg"]["verify"], 700.0);
        assert_eq!(s[0]["cpu_us_per_msg"]["validate"], 300.0);
        assert_eq!(s[0]["cpu_us_per_msg"]["amqp_io"], 60.0);
        assert_eq!(
            s[0]["cpu_us_per_msg"]["target_1_5x_verify_validate"],
            1500.0
        );
        assert_eq!(s[0]["cpu_us_per_msg"]["floor_stages_and_amqp_io"], 1060.0);
        assert_eq!(s[0]["peak_rss_mb"], 40.0);
        assert!(s[0]["relay_broker_cpu_us_per_msg"].is_null());
        assert_eq!(s[1]["xml_bytes"], 1048576);
        assert!(s[1]["relay_msgs_per_s"].is_null() && s[1]["relay_p99_ms_same_rate"].is_null());
        assert_eq!(back["prefetch"], 256);
    }
}
