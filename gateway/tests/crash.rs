//! Crash and restart: a hold acknowledged with 201 survives `kill -9`; keys survive restarts;
//! SIGTERM drains and exits 0; the offline WAL tools read what the server wrote.

mod common;

use std::process::Command;

use common::*;
use serde_json::json;

#[test]
fn an_acknowledged_hold_survives_kill_9_and_sigterm_exits_cleanly() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    let s = Server::start_in(&dir, &[]);
    s.stock_point("WH1", "warehouse", &["web"], 48.85, 2.35);
    s.set_stock("WH1", "CRASH-A", 10);
    let checkout = s.key(&["checkout"], &[], None);
    let created = s.post("/v1/reservations", &checkout, reserve_body("CRASH-A", 3));
    let id = created.ok(201)["id"].as_str().expect("id").to_owned();
    let order = s.post("/v1/orders", &checkout, reserve_body("CRASH-A", 2));
    let oid = order.ok(201)["id"].as_str().expect("id").to_owned();
    s.kill9();

    let s = Server::start_in(&dir, &[]);
    let got = s.get(&format!("/v1/reservations/{id}"), &checkout);
    assert_eq!(
        got.ok(200)["status"],
        "held",
        "the hold and the key survived kill -9"
    );
    assert_eq!(got.body["lines"][0]["allocations"][0]["qty"], 3);
    assert!(s.get(&format!("/v1/orders/{oid}"), &checkout).ok(200)["id"] == json!(oid));
    let item = s.get("/v1/availability?sku=CRASH-A", ADMIN).ok(200)["items"][0].clone();
    assert_eq!(
        (
            item["held"].as_u64(),
            item["allocated"].as_u64(),
            item["available"].as_u64()
        ),
        (Some(3), Some(2), Some(5))
    );
    // A new reservation after the restart gets a fresh id.
    let again = s.post("/v1/reservations", &checkout, reserve_body("CRASH-A", 1));
    assert_ne!(again.ok(201)["id"], json!(id));

    let status = s.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");

    let verify = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["wal", "verify"])
        .arg(&dir)
        .output()
        .expect("verify");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert!(String::from_utf8_lossy(&verify.stdout).contains("corrupt 0"));
    let inspect = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["wal", "inspect"])
        .arg(&dir)
        .output()
        .expect("inspect");
    assert!(inspect.status.success());
    assert!(!inspect.stdout.is_empty());
    let keys = std::fs::read_to_string(dir.join("keys.json")).expect("keys.json");
    assert!(!keys.contains(&checkout), "keys are stored hashed");
}

#[test]
fn a_generated_admin_key_is_written_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .env_remove("CONDUCTOR_ADMIN_KEY")
        .env("CONDUCTOR_EXIT_ON_STDIN_EOF", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let path = dir.join("admin.key");
    eventually("admin.key is written", || path.exists());
    let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let key = std::fs::read_to_string(&path).expect("key");
    assert!(
        key.trim().starts_with("ck_") && key.trim().len() == 67,
        "{key}"
    );
    let _ = child.kill();
    let _ = child.wait();
}
