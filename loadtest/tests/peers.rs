//! The side-by-side comparison with Redis-Lua and PostgreSQL. Needs `redis-server` and
//! PostgreSQL installed (`apt-get install -y redis-server postgresql`), so it runs only with
//! CONDUCTOR_PEERS=1 (as `.ci/run` does when they install).

mod common;

use common::*;

fn wanted() -> bool {
    let on = std::env::var("CONDUCTOR_PEERS").is_ok_and(|v| v == "1");
    if !on {
        println!("CONDUCTOR_PEERS is not 1: the peers are not run");
    }
    on
}

#[test]
fn every_system_is_run_twice_interleaved_and_checked() {
    if !wanted() {
        return;
    }
    let dir = temp();
    let (json_path, svg) = (path(&dir, "compare.json"), path(&dir, "compare.svg"));
    let output = harness(&[
        "compare",
        "-q",
        "-d",
        "1.5",
        "-c",
        "16",
        "--stock",
        "3000",
        "--runs",
        "2",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{:?}", output.status);
    let comparison = json(&json_path);
    let rows = comparison["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 8, "{rows:?}");
    for row in rows {
        assert_eq!(row["runs"], 2, "{row}");
        assert_eq!(row["voided"], 0, "{row}");
        assert!(row["holds_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{row}");
    }
    let runs = comparison["runs"].as_array().expect("runs");
    // Interleaved: the second run of the first system comes after the first of the last.
    assert_eq!(runs[0]["system"], runs[8]["system"]);
    assert!(comparison["fsync"]["p50_us"].as_u64().is_some());
    assert_eq!(comparison["ratios"].as_array().map(Vec::len), Some(6));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NON-DURABLE"), "{stdout}");
}
