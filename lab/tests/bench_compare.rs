//! `helsemelding-lab bench --compare-stores` (issue 14, item 5) on a tiny count, as the binary: one
//! run prints one table with a row for each setup — one instance on redb, one on PostgreSQL, two on
//! PostgreSQL with the byte budget raised and two as shipped (the default budget) — with its
//! figures, and the same four in `--json`. Asserted is that each setup ran
//! (its messages all arrived, its figures are there, PostgreSQL's server work is counted only where
//! it exists, two instances share the intake in partitions), never a rate or a time: the figures
//! are the benchmark's to print.

mod support;

use std::process::Command;

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const LABELS: [&str; 4] = [
    "redb, 1 instance",
    "PostgreSQL, 1 instance",
    "PostgreSQL, 2 instances",
    "PostgreSQL, 2 instances, default budget",
];

fn bench(json: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_helsemelding-lab"));
    cmd.args(["bench", "--compare-stores", "--store-postgres", ADMIN_URL])
        .args([
            "--sizes",
            "4096",
            "--messages",
            "40",
            "--latency-messages",
            "20",
        ])
        .args(["--senders", "4", "--repo"])
        .arg(support::repo())
        .arg("--schemas")
        .arg(support::schemas());
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().expect("helsemelding-lab runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn compare_stores_prints_one_row_per_setup() {
    let table = bench(false);
    println!("{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| 4096 / "))
        .collect();
    assert_eq!(rows.len(), 4, "{table}");
    for (row, label) in rows.iter().zip(LABELS) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[2], label, "{row}");
        let rate: f64 = cells[3].parse().unwrap_or_else(|_| panic!("{row}"));
        assert!(rate > 0.0, "{row}");
        // CPU: gateway (writer) + server = total; the server's part only on PostgreSQL.
        let server = cells[4]
            .split('+')
            .nth(1)
            .and_then(|s| s.split('=').next())
            .map(str::trim)
            .unwrap_or_else(|| panic!("{row}"));
        assert_eq!(server == "-", label.starts_with("redb"), "{row}");
    }

    let json: serde_json::Value = serde_json::from_str(&bench(true)).expect("one JSON object");
    let list = json["compare_stores"].as_array().expect("compare_stores");
    assert_eq!(list.len(), 4, "{json}");
    for (r, label) in list.iter().zip(LABELS) {
        assert_eq!(r["setup"], label, "{r}");
        assert_eq!(r["messages"], 40, "{r}");
        assert_eq!(
            r["instances"],
            if label.contains("2 instances") { 2 } else { 1 },
            "{r}"
        );
        // Two instances share the intake in partitions, as deployed; one has none.
        assert_eq!(
            r["partitions"],
            if label.contains("2 instances") { 4 } else { 0 },
            "{r}"
        );
        assert!(r["msgs_per_s"].as_f64().unwrap() > 0.0, "{r}");
        // Measured in clock ticks (10 ms): on 40 messages it may well be 0; it must be there.
        assert!(
            r["cpu_us_per_msg"]["gateway"].as_f64().unwrap() >= 0.0,
            "{r}"
        );
        assert_eq!(
            r["cpu_us_per_msg"]["store_server"].is_null(),
            label.starts_with("redb"),
            "{r}"
        );
        assert!(
            r["p99_ms"].as_f64().unwrap() >= r["p50_ms"].as_f64().unwrap(),
            "{r}"
        );
    }
}
