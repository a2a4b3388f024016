//! Shared helpers for the gateway's integration tests: start the real `conductor` binary on a
//! free loopback port with a temporary data dir, and a tiny JSON client over reqwest.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::{json, Value};

pub const ADMIN: &str = "test-admin-key";

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: PathBuf,
    pub client: Client,
    /// Keeps the temporary dir alive as long as the server.
    _tmp: Option<tempfile::TempDir>,
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Asserts a problem+json with this status and `type`.
    #[track_caller]
    pub fn problem(&self, status: u16, kind: &str) -> &Reply {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        assert_eq!(
            self.body["type"],
            json!(format!("/problems/{kind}")),
            "{}",
            self.text
        );
        assert_eq!(self.body["status"], json!(status), "{}", self.text);
        assert!(
            self.body["title"].is_string() && self.body["detail"].is_string(),
            "{}",
            self.text
        );
        self
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        &self.body
    }
}

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("conductor.json");
    std::fs::write(
        &path,
        r#"{"wave_window_ms": 20, "request_timeout_ms": 10000}"#,
    )
    .expect("config");
    path
}

impl Server {
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("data");
        let mut server = Server::start_in(&dir, &[]);
        server._tmp = Some(tmp);
        server
    }

    /// Starts (or restarts) the binary on `dir`, on a port the OS picks.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        std::fs::create_dir_all(dir).expect("data dir");
        let config = config_file(dir.parent().unwrap_or(dir));
        let mut child = Command::new(env!("CARGO_BIN_EXE_conductor"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--config")
            .arg(&config)
            .args(extra)
            .env("CONDUCTOR_ADMIN_KEY", ADMIN)
            .env("CONDUCTOR_LOG", "info")
            .env("NO_COLOR", "1")
            .env("CONDUCTOR_EXIT_ON_STDIN_EOF", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn conductor");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find("listen=") {
                    let addr: String = line[at + 7..]
                        .chars()
                        .take_while(|c| !c.is_whitespace())
                        .collect();
                    let _ = tx.send(addr);
                }
                if std::env::var("GATEWAY_TEST_LOGS").is_ok() {
                    eprintln!("server: {line}");
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server printed its address");
        let server = Server {
            child,
            base: format!("http://{addr}"),
            dir: dir.to_owned(),
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            _tmp: None,
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(format!("{}/readyz", self.base)).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server not ready in time");
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = req.send().expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends a raw body with a content type (for malformed input).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let response = req.send().expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            text,
        }
    }

    pub fn get(&self, path: &str, key: &str) -> Reply {
        self.request("GET", path, Some(key), None, &[])
    }

    pub fn post(&self, path: &str, key: &str, body: Value) -> Reply {
        self.request("POST", path, Some(key), Some(&body), &[])
    }

    pub fn put(&self, path: &str, key: &str, body: Value) -> Reply {
        self.request("PUT", path, Some(key), Some(&body), &[])
    }

    pub fn delete(&self, path: &str, key: &str) -> Reply {
        self.request("DELETE", path, Some(key), None, &[])
    }

    /// A new API key with these scopes (and stock points, rate).
    pub fn key(&self, scopes: &[&str], stock_points: &[&str], rate: Option<u32>) -> String {
        let mut body = json!({"scopes": scopes, "stock_points": stock_points});
        if let Some(rate) = rate {
            body["rate_per_s"] = json!(rate);
        }
        let r = self.post("/v1/api-keys", ADMIN, body);
        r.ok(201)["key"].as_str().expect("key").to_owned()
    }

    pub fn stock_point(&self, code: &str, kind: &str, channels: &[&str], lat: f64, lon: f64) {
        let r = self.put(
            &format!("/v1/stock-points/{code}"),
            ADMIN,
            json!({"kind": kind, "name": code.to_lowercase(), "location": {"lat": lat, "lon": lon}, "priority": 1,
                   "channels": channels, "capabilities": ["ship", "pickup", "returns"]}),
        );
        r.ok(200);
    }

    pub fn set_stock(&self, sp: &str, sku: &str, qty: u64) {
        self.post("/v1/inventory/adjustments", ADMIN, json!({"adjustments": [{"stock_point": sp, "sku": sku, "set_on_hand": qty}], "reason": "cycle-count"}))
            .ok(200);
    }

    pub fn available(&self, sku: &str) -> u64 {
        let r = self.get(&format!("/v1/availability?sku={sku}"), ADMIN);
        r.ok(200)["items"][0]["available"]
            .as_u64()
            .expect("available")
    }

    pub fn kill9(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.dir.clone()
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn reserve_body(sku: &str, qty: u64) -> Value {
    json!({"channel": "web", "lines": [{"sku": sku, "qty": qty}], "ttl_seconds": 600})
}

/// Polls until `check` holds, for up to ten seconds.
#[track_caller]
pub fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for: {what}");
}
