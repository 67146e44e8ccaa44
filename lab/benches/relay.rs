//! Baseline for the transport's throughput: a bare pass-through relay over the local RabbitMQ
//! (the code is [`helsemelding_lab::bench::relay`], shared with `helsemelding-lab bench`).
//!
//! `cargo bench -p helsemelding-lab --bench relay -- [N] [PREFETCH] [SIZE]` (defaults 20000, 256, 4096);
//! `HELSEMELDING_BENCH_AMQP_URL` overrides `amqp://guest:guest@127.0.0.1:5672/%2f`.

use helsemelding_lab::bench::{loadavg, relay};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let prefetch: u16 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let size: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4096);
    let url = std::env::var("HELSEMELDING_BENCH_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let load_before = loadavg();
    match relay::run(&url, n, size, prefetch).await {
        Ok(r) => {
            println!("relay bench: {n} persistent {size}-byte messages, quorum queues, prefetch {prefetch}");
            println!("  fill  (pipelined confirms): {:>8.0} msg/s", r.fill_rate);
            println!(
                "  relay (consume -> publish+confirm -> ack, drained): {:>8.0} msg/s  ({:.2} s, {} arrived)",
                r.relay_rate, r.relay_seconds, r.messages
            );
            println!("  load average before: {load_before}; after: {}", loadavg());
        }
        Err(e) => {
            eprintln!("relay bench failed: {e}");
            std::process::exit(1);
        }
    }
}
