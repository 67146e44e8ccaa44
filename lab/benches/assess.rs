//! CPU per message of the pure pipeline (`gateway::assess`: verify, validate, parse, route) on the
//! messages `helsemelding-lab bench` sends: `cargo bench -p helsemelding-lab --bench assess`. Prints figures; asserts
//! nothing about speed.
//!
//! The context is the shipped one (`config/gateway.toml`: register, test PKI, schemas installed in
//! `xsd/`); the messages are `bench::messages` (Dialogmelding 1.0 and PLO 1.6 alternating, each
//! signed). Per-stage figures are the gateway's own stage clock (`StageTimes`, thread CPU time).
//!
//! Environment: `ASSESS_SIZE` (bytes, default 4096), `ASSESS_MESSAGES` (distinct messages,
//! default 40), `ASSESS_SECONDS` (CPU seconds to run, default 3), `ASSESS_ROUNDS` (a fixed number
//! of rounds instead; e.g. 3 under `valgrind --tool=callgrind
//! --toggle-collect=helsemelding::gateway::assess::assess_timed`, where instructions per call are
//! the figure that does not depend on the machine's load). `ASSESS_IN_FLIGHT=N` runs each
//! assessment as the gateway does (`tokio::task::spawn_blocking` per delivery, N deliveries in
//! flight, like the prefetch) instead of in a loop on one thread, to show what that costs.

use helsemelding::gateway::assess::{assess_timed, Envelope, Inbound, Plan, RecipientPlan};
use helsemelding::gateway::cli::load;
use helsemelding::gateway::envelope_of;
use helsemelding::gateway::metrics::{thread_cpu_nanos, Stage, StageTimes};
use helsemelding_lab::bench::messages::{senders, sign_many, signers};

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn main() {
    let repo = helsemelding_lab::repo_root();
    let size: usize = env("ASSESS_SIZE").unwrap_or(4096);
    let n: usize = env("ASSESS_MESSAGES").unwrap_or(40);
    let secs: f64 = env("ASSESS_SECONDS").unwrap_or(3.0);
    let rounds: Option<usize> = env("ASSESS_ROUNDS");

    let loaded = match load(&repo.join("config/gateway.toml")) {
        Ok(l) => l,
        Err(problems) => {
            eprintln!(
                "cannot load config/gateway.toml (schemas installed in xsd/?):\n  {}",
                problems.join("\n  ")
            );
            std::process::exit(2);
        }
    };
    let ctx = loaded.context;
    let now = time::OffsetDateTime::now_utc();
    let keys = signers(&repo.join("fixtures/gateway-pki")).unwrap_or_else(|e| panic!("{e}"));
    let msgs = sign_many(&keys, &senders(2), n, size, now).unwrap_or_else(|e| panic!("{e}"));
    let headers: Vec<_> = msgs
        .iter()
        .map(|m| envelope_of(&Ok(m.headers.clone())))
        .collect();
    let envelope = msgs.iter().map(|m| m.body.len()).sum::<usize>() / n.max(1);

    // Every message must be planned for delivery, or the figures measure a refusal.
    for (m, h) in msgs.iter().zip(&headers) {
        match assess_timed(&inbound(&m.body, h), &ctx, now, None) {
            Plan::Message(p)
                if p.recipients
                    .iter()
                    .all(|r| matches!(r, RecipientPlan::Deliver { .. })) => {}
            other => panic!("{:?} message not planned for delivery: {other:?}", m.kind),
        }
    }

    if let Some(in_flight) = env::<usize>("ASSESS_IN_FLIGHT") {
        gateway_like(ctx, msgs, now, in_flight, secs);
        return;
    }

    let stages = StageTimes::default();
    let cpu0 = thread_cpu_nanos();
    let mut done = 0usize;
    let mut round = 0usize;
    loop {
        let finished = match rounds {
            Some(r) => round >= r,
            None => (thread_cpu_nanos() - cpu0) as f64 / 1e9 >= secs,
        };
        if finished {
            break;
        }
        for (m, h) in msgs.iter().zip(&headers) {
            let plan = assess_timed(&inbound(&m.body, h), &ctx, now, Some(&stages));
            done += usize::from(matches!(plan, Plan::Message(_)));
        }
        round += 1;
    }
    let total = (thread_cpu_nanos() - cpu0) as f64 / 1e3 / done.max(1) as f64;
    println!(
        "assess: {done} messages ({n} distinct, {size} B of XML, {envelope} B signed), load {}",
        helsemelding_lab::bench::loadavg()
    );
    println!("  total   {total:7.1} µs CPU/message");
    for s in Stage::ALL {
        let (cpu, calls) = stages.get(s);
        println!(
            "  {:<7} {:7.1} µs",
            s.name(),
            cpu * 1e6 / calls.max(1) as f64
        );
    }
}

/// Each assessment on tokio's blocking pool, `in_flight` at a time, as `gateway::server` runs
/// them; per-stage figures from the same stage clock, total from the process's CPU time.
fn gateway_like(
    ctx: helsemelding::gateway::assess::Context,
    msgs: Vec<helsemelding_lab::bench::messages::Signed>,
    now: time::OffsetDateTime,
    in_flight: usize,
    secs: f64,
) {
    use std::sync::Arc;
    let ctx = Arc::new(ctx);
    let msgs = Arc::new(msgs);
    let stages = Arc::new(StageTimes::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pid = std::process::id();
    let cpu0 = helsemelding_lab::bench::proc_cpu_seconds(pid, None).unwrap_or(0.0);
    let start = std::time::Instant::now();
    let done = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(in_flight));
        let mut tasks = tokio::task::JoinSet::new();
        let (mut sent, mut done) = (0usize, 0usize);
        while (helsemelding_lab::bench::proc_cpu_seconds(pid, None).unwrap_or(0.0) - cpu0) < secs
            || sent == 0
        {
            for i in 0..msgs.len() {
                let permit = sem.clone().acquire_owned().await.expect("semaphore");
                let (ctx, msgs, stages) = (ctx.clone(), msgs.clone(), stages.clone());
                tasks.spawn(async move {
                    let ok = tokio::task::spawn_blocking(move || {
                        let m = &msgs[i];
                        let h = envelope_of(&Ok(m.headers.clone()));
                        let body = m.body.clone();
                        matches!(
                            assess_timed(&inbound(&body, &h), &ctx, now, Some(&stages)),
                            Plan::Message(_)
                        )
                    })
                    .await
                    .unwrap_or(false);
                    drop(permit);
                    ok
                });
                sent += 1;
            }
            while let Some(r) = tasks.try_join_next() {
                done += usize::from(r.unwrap_or(false));
            }
        }
        while let Some(r) = tasks.join_next().await {
            done += usize::from(r.unwrap_or(false));
        }
        done
    });
    let cpu = helsemelding_lab::bench::proc_cpu_seconds(pid, None).unwrap_or(0.0) - cpu0;
    println!(
        "assess via spawn_blocking, {in_flight} in flight: {done} messages in {:.1} s, load {}",
        start.elapsed().as_secs_f64(),
        helsemelding_lab::bench::loadavg()
    );
    println!(
        "  process {:7.1} µs CPU/message",
        cpu * 1e6 / done.max(1) as f64
    );
    for s in Stage::ALL {
        let (c, calls) = stages.get(s);
        println!("  {:<7} {:7.1} µs", s.name(), c * 1e6 / calls.max(1) as f64);
    }
}

/// A benchmark message as the pipeline takes it (published by the broker-validated user `guest`).
fn inbound<'a>(body: &'a [u8], envelope: &'a Result<Envelope, String>) -> Inbound<'a> {
    Inbound {
        body,
        envelope: envelope.as_ref().map_err(String::as_str),
        user_id: Some("guest"),
    }
}
