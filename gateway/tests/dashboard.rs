//! The dashboard in a real browser: headless Chromium, driven over the DevTools protocol by
//! `tests/dashboard.mjs`, loads `/` from a real server, types the API key and a SKU, and must
//! show the availability number, then its change through the event stream.
//!
//! Needs `node` and `chromium` (`.ci/run` installs Chromium); without them the test says so
//! and passes, so that a developer machine without a browser still runs the rest.

mod common;

use std::process::Command;

use common::*;

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_dashboard_shows_live_availability_in_headless_chromium() {
    if !have("node") || !have("chromium") {
        eprintln!("skipping: node or chromium is not installed");
        return;
    }
    let s = Server::start();
    s.stock_point("WH1", "warehouse", &["web"], 48.85, 2.35);
    s.stock_point("ST1", "store", &["web"], 45.76, 4.83);
    s.set_stock("WH1", "DASH-A", 42);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard.mjs");
    let out = Command::new("node")
        .arg("--experimental-websocket")
        .arg("--no-warnings")
        .arg(script)
        .args([s.base.as_str(), ADMIN, "DASH-A", "42", "41"])
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("dashboard ok"), "{stdout}");
}
