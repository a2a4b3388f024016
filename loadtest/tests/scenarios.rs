//! Every scenario, briefly, against an embedded server (and in-process): the invariant check
//! passes and the figures are produced.

mod common;

use common::*;

#[test]
fn a_flash_sale_over_http_sells_exactly_the_stock_and_reports_every_figure() {
    let dir = temp();
    let (json_path, svg) = (path(&dir, "flash.json"), path(&dir, "flash.svg"));
    let output = harness(&[
        "flash-sale",
        "-q",
        "-d",
        "20",
        "-c",
        "16",
        "--stock",
        "300",
        "--max-qty",
        "3",
        "--confirm-share",
        "0.3",
        "--seed",
        "7",
        "--json",
        json_path.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "reserve");
    assert_eq!(report["system"], "conductor http");
    assert_eq!(report["model"], "closed");
    assert!(op(&report, "confirm")["count"].as_u64().unwrap() > 0);
    let sku = &report["invariant"]["skus"][0];
    assert_eq!(sku["initial"], 300);
    assert_eq!(sku["acknowledged"], 300, "sold out: {sku}");
    assert_eq!(sku["available"], 0);
    let plot = std::fs::read_to_string(&svg).expect("the plot was written");
    assert!(plot.starts_with("<svg") && plot.contains("latency by percentile"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("p99.99 µs") && stdout.contains("invariant PASSED"),
        "{stdout}"
    );
}

#[test]
fn the_open_model_paces_requests_in_process() {
    let dir = temp();
    let json_path = path(&dir, "open.json");
    let output = harness(&[
        "flash-sale",
        "-q",
        "--target",
        "in-process",
        "-d",
        "2",
        "-c",
        "16",
        "--rate",
        "300",
        "--skus",
        "3",
        "--stock",
        "100000",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "reserve");
    assert_eq!(report["model"], "open");
    let count = op(&report, "reserve")["count"].as_u64().unwrap();
    // 300/s for 2 s: the schedule, not the workers' speed, decides how many are sent.
    assert!(
        (300..=620).contains(&count),
        "{count} holds sent at 300/s for 2 s"
    );
}

#[test]
fn unconfirmed_holds_expire_and_their_units_come_back() {
    let dir = temp();
    let json_path = path(&dir, "expiry.json");
    let output = harness(&[
        "flash-sale",
        "-q",
        "--target",
        "in-process",
        "-d",
        "5",
        "-c",
        "8",
        "--stock",
        "40",
        "--confirm-share",
        "0.5",
        "--ttl",
        "1",
        "--wait-expiry",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "reserve");
    let sku = &report["invariant"]["skus"][0];
    assert!(
        sku["acknowledged"].as_u64().unwrap() < 40,
        "only confirmed units stay: {sku}"
    );
}

#[test]
fn availability_reads_run_alongside_the_sale() {
    let dir = temp();
    let json_path = path(&dir, "avail.json");
    let output = harness(&[
        "availability",
        "-q",
        "-d",
        "3",
        "-c",
        "8",
        "--skus",
        "4",
        "--stock",
        "100000",
        "--read-rate",
        "200",
        "--readers",
        "4",
        "--batch-share",
        "0.5",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "availability");
    assert!(op(&report, "availability-batch")["count"].as_u64().unwrap() > 0);
    assert!(op(&report, "reserve")["count"].as_u64().unwrap() > 0);
}

#[test]
fn omnichannel_orders_are_picked_packed_shipped_and_returned() {
    let dir = temp();
    let json_path = path(&dir, "omni.json");
    let output = harness(&[
        "omnichannel",
        "-q",
        "-d",
        "3",
        "-c",
        "4",
        "--skus",
        "5",
        "--stock",
        "200",
        "--seed",
        "11",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "web-order");
    assert!(op(&report, "task")["count"].as_u64().unwrap() > 0);
    assert!(op(&report, "pickup-order")["count"].as_u64().unwrap() > 0);
}

#[test]
fn killed_servers_keep_every_acknowledged_hold() {
    let dir = temp();
    let json_path = path(&dir, "crash.json");
    let output = harness(&[
        "crash",
        "-q",
        "-c",
        "16",
        "--stock",
        "5000",
        "--kills",
        "2",
        "--max-uptime",
        "1.5",
        "--seed",
        "42",
        "--json",
        json_path.to_str().unwrap(),
    ]);
    let report = json(&json_path);
    assert_run(&output, &report, "reserve");
    assert_eq!(op(&report, "restart")["count"], 2);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("seed 42"), "the seed is printed: {stdout}");
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for args in [
        &["flash-sale", "-c", "0", "--target", "in-process"][..],
        &["flash-sale", "--target", "ftp://nowhere"][..],
        &[
            "flash-sale",
            "--target",
            "in-process",
            "--confirm-share",
            "2",
        ][..],
    ] {
        let output = harness(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("error:"));
    }
}
