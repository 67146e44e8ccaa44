//! Benchmarks: `helsemelding-lab bench` — how close the gateway comes to what the broker itself can
//! move (the figures of issue 6), printed as a table; never a timed assertion.
//!
//! | module     | job |
//! |------------|-----|
//! | `relay`    | the baseline: a bare consume → publish+confirm → ack relay (also `cargo bench --bench relay`) |
//! | `messages` | synthetic signed dialogmeldinger and PLO messages of a chosen size, each with its own MsgId |
//! | `gateway`  | the real daemon (`helsemelding-lab serve` as a child) in its own vhost: throughput, latency, RSS, CPU per stage |
//! | `cli`      | the subcommand: runs relay and gateway for each size, prints the table with the load average |
//!
//! Every figure is printed with `/proc/loadavg`: the machine is shared, and a figure measured
//! under load is depressed. Failure: [`BenchError`] — a broker fault, a lost or refused message,
//! a gateway child that would not start; a run that lost a message prints no rate.

pub mod cli;
pub mod gateway;
pub mod messages;
pub mod relay;

use helsemelding::amqp::{AmqpError, PublishError};

/// Why a benchmark run stopped without figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("broker: {0}")]
    Amqp(#[from] AmqpError),
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
    #[error("broker: {0}")]
    Broker(String),
    #[error("messages lost or unsettled: {0}")]
    Lost(String),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("setup: {0}")]
    Setup(String),
}

impl BenchError {
    pub(crate) fn join(e: tokio::task::JoinError) -> BenchError {
        BenchError::Lost(format!("a benchmark task failed: {e}"))
    }
}

/// The first three fields of `/proc/loadavg` ("1.02 0.87 0.55"), or "unknown".
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

/// Runs `f` with the URL of a vhost made for it, and deletes the vhost afterwards whatever `f`
/// returned (each part of the bench has a broker namespace of its own).
pub async fn in_own_vhost<T, Fut>(f: impl FnOnce(String) -> Fut) -> Result<T, BenchError>
where
    Fut: std::future::Future<Output = Result<T, BenchError>>,
{
    let vhost = helsemelding::amqp::testing::TestVhost::create()
        .await
        .map_err(|e| BenchError::Setup(format!("vhost: {e}")))?;
    let result = f(vhost.url().to_owned()).await;
    let _ = vhost.delete().await;
    result
}

/// Publishes `n` messages one by one at `rate` per second and returns each one's latency in ms,
/// from its publish to its arrival on `arrivals` (`(id, when)` from the consumer at the far end),
/// sorted. `publish(i)` gives message `i`'s id and its publish; `alive` is asked while waiting, so a
/// dead forwarding process ends the wait with its reason. Waits at most 60 s for the last arrivals.
pub async fn paced_latencies<F>(
    n: usize,
    rate: f64,
    mut publish: impl FnMut(usize) -> Result<(String, F), BenchError>,
    arrivals: &mut tokio::sync::mpsc::UnboundedReceiver<(String, std::time::Instant)>,
    mut alive: impl FnMut() -> Result<(), BenchError>,
) -> Result<Vec<f64>, BenchError>
where
    F: std::future::Future<Output = Result<(), PublishError>> + Send + 'static,
{
    use std::time::{Duration, Instant};
    let mut sent: std::collections::HashMap<String, Instant> =
        std::collections::HashMap::with_capacity(n);
    let mut latencies = Vec::with_capacity(n);
    let mut arrived =
        |sent: &mut std::collections::HashMap<String, Instant>, id: String, at: Instant| {
            if let Some(s) = sent.remove(&id) {
                latencies.push(at.duration_since(s).as_secs_f64() * 1000.0);
            }
        };
    let mut set = tokio::task::JoinSet::new();
    let started = tokio::time::Instant::now();
    for i in 0..n {
        tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate.max(1.0))).await;
        while let Ok((id, at)) = arrivals.try_recv() {
            arrived(&mut sent, id, at);
        }
        let (id, fut) = publish(i)?;
        sent.insert(id, Instant::now());
        set.spawn(fut);
        while let Some(r) = set.try_join_next() {
            r.map_err(BenchError::join)??;
        }
    }
    while let Some(r) = set.join_next().await {
        r.map_err(BenchError::join)??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sent.is_empty() {
        match tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await {
            Ok(Some((id, at))) => arrived(&mut sent, id, at),
            Ok(None) => return Err(BenchError::Lost("the recipient's consumer ended".into())),
            Err(_) => {}
        }
        alive()?;
        if Instant::now() > deadline {
            return Err(BenchError::Lost(format!(
                "{} of {n} paced messages did not arrive",
                sent.len()
            )));
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

/// The value at quantile `q` (0..=1) of `sorted` (nearest rank); 0 for an empty slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A process's CPU seconds (user + system) from `/proc/<pid>/stat`, or of one of its threads
/// when `task` is given.
pub fn proc_cpu_seconds(pid: u32, task: Option<u32>) -> Option<f64> {
    let path = match task {
        Some(t) => format!("/proc/{pid}/task/{t}/stat"),
        None => format!("/proc/{pid}/stat"),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks / if hz > 0 { hz as f64 } else { 100.0 })
}

/// The CPU seconds of the local RabbitMQ node (its Erlang VM, `beam.smp` with `rabbit` on the
/// command line), or `None` when it does not run on this machine.
pub fn broker_cpu_seconds() -> Option<f64> {
    let dir = std::fs::read_dir("/proc").ok()?;
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        if std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "beam.smp")
            && std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c.windows(6).any(|w| w == b"rabbit"))
        {
            return proc_cpu_seconds(pid, None);
        }
    }
    None
}

/// CPU seconds of this very process (the benchmark's own publishers and consumers).
pub fn own_cpu_seconds() -> f64 {
    proc_cpu_seconds(std::process::id(), None).unwrap_or(0.0)
}

/// CPU seconds of the broker and of this process, read together at the start of a phase.
#[derive(Debug, Clone, Copy)]
pub struct CpuMark {
    broker: Option<f64>,
    own: f64,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        CpuMark {
            broker: broker_cpu_seconds(),
            own: own_cpu_seconds(),
        }
    }

    /// (broker, this process) µs per message since the mark, over `messages`.
    pub fn per_message_us(&self, messages: f64) -> (Option<f64>, f64) {
        let end = CpuMark::now();
        let per = |a: f64, b: f64| (b - a) * 1e6 / messages.max(1.0);
        (
            self.broker.zip(end.broker).map(|(a, b)| per(a, b)),
            per(self.own, end.own),
        )
    }
}

/// CPU seconds per thread name of a process (`/proc/<pid>/task/*/comm`), summed over threads
/// of the same name.
pub fn thread_cpu_by_name(pid: u32) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let name = std::fs::read_to_string(e.path().join("comm"))
            .unwrap_or_default()
            .trim()
            .to_owned();
        if let Some(cpu) = proc_cpu_seconds(pid, Some(tid)) {
            match out.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += cpu,
                None => out.push((name, cpu)),
            }
        }
    }
    out
}

/// A `/proc/<pid>/status` field in kB (e.g. `VmHWM`, the peak resident set).
pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&xs, 0.5), 50.0);
        assert_eq!(quantile(&xs, 0.99), 99.0);
        assert_eq!(quantile(&xs, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn own_process_figures_are_read_from_proc() {
        let pid = std::process::id();
        assert!(proc_status_kb(pid, "VmHWM").is_some_and(|kb| kb > 0));
        assert!(proc_status_kb(pid, "NoSuchField").is_none());
        assert!(proc_cpu_seconds(pid, None).is_some());
        assert!(!thread_cpu_by_name(pid).is_empty());
        assert_eq!(loadavg().split_whitespace().count(), 3);
    }
}
