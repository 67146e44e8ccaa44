//! `helsemelding-lab bench --rounds N` as the binary, on a tiny count: the latency part runs in N
//! rounds, each gateway round followed by the bare relay at the same rate and count, and the JSON
//! gives every round of both and the medians the comparison is made on. Asserted is that the
//! rounds ran and the medians are the rounds' medians, never a rate or a time: the figures are the
//! benchmark's to print.

mod support;

use std::process::Command;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[test]
fn latency_in_rounds_alternates_gateway_and_relay_and_gives_the_medians() {
    let out = Command::new(env!("CARGO_BIN_EXE_helsemelding-lab"))
        .args(["bench", "--sizes", "4096", "--messages", "40"])
        .args([
            "--latency-messages",
            "30",
            "--rounds",
            "3",
            "--senders",
            "4",
        ])
        .arg("--repo")
        .arg(support::repo())
        .arg("--schemas")
        .arg(support::schemas())
        .arg("--json")
        .output()
        .expect("helsemelding-lab runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("medians of 3 rounds"), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON object");
    let size = &json["sizes"][0];
    let rounds = size["latency_rounds"].as_array().expect("latency_rounds");
    assert_eq!(rounds.len(), 3, "{size}");
    let (mut gateway, mut relay) = (Vec::new(), Vec::new());
    for r in rounds {
        assert_eq!(r["messages"], 10, "{r}");
        let p99 = r["p99_ms"].as_f64().expect("gateway p99");
        let relay_p99 = r["relay_p99_ms"]
            .as_f64()
            .expect("the relay ran in this round");
        assert!(p99 > 0.0 && relay_p99 > 0.0, "{r}");
        assert!(p99 >= r["p50_ms"].as_f64().unwrap(), "{r}");
        gateway.push(p99);
        relay.push(relay_p99);
    }
    assert_eq!(size["latency_messages"], 30, "{size}");
    assert_eq!(
        size["p99_ms_median_of_rounds"].as_f64(),
        Some(median(gateway)),
        "{size}"
    );
    assert_eq!(
        size["relay_p99_ms_same_rate"].as_f64(),
        Some(median(relay)),
        "{size}"
    );
}
