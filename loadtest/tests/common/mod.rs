//! Running the harness binary as a user would, and reading its JSON.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

pub const HARNESS: &str = env!("CARGO_BIN_EXE_conductor-loadtest");

/// Makes sure the `conductor` binary the embedded target starts is beside the harness: cargo
/// builds a package's own binaries for its tests, not its dependencies' ones.
pub fn ensure_server() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        if std::env::var_os("CONDUCTOR_BIN").is_some() {
            return;
        }
        let dir = Path::new(HARNESS).parent().expect("target dir");
        if dir.join("conductor").is_file() {
            return;
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "conductor-gateway", "--bin", "conductor"]);
        if dir.ends_with("release") {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the conductor binary failed");
    });
}

/// Runs the harness with `args`; answers its output (and prints it, for failing tests).
pub fn harness(args: &[&str]) -> Output {
    ensure_server();
    let output = Command::new(HARNESS)
        .args(args)
        .output()
        .expect("the harness runs");
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

pub fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the JSON report was written");
    serde_json::from_str(&text).expect("valid JSON")
}

/// The op's figures from a run report.
pub fn op<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["ops"]
        .as_array()
        .and_then(|ops| ops.iter().find(|o| o["op"] == name))
        .unwrap_or_else(|| panic!("no figures for {name}: {report}"))
}

/// Asserts a run passed its invariant and produced latency figures for `main_op`.
pub fn assert_run(output: &Output, report: &serde_json::Value, main_op: &str) {
    assert!(
        output.status.success(),
        "the harness failed: {:?}",
        output.status
    );
    assert_eq!(
        report["invariant"]["passed"], true,
        "{}",
        report["invariant"]
    );
    let figures = op(report, main_op);
    assert!(figures["count"].as_u64().unwrap_or(0) > 0, "{figures}");
    for field in [
        "p50_us", "p90_us", "p99_us", "p999_us", "p9999_us", "max_us",
    ] {
        assert!(figures[field].as_u64().is_some(), "{field} in {figures}");
    }
    assert!(figures["p50_us"].as_u64() <= figures["max_us"].as_u64());
}
