//! Conductor as a child process: the embedded server of the default target, and the crash
//! scenario's victim. It is the real `conductor` binary, started on a free loopback port with
//! a data dir of its own, so that a kill -9 is a real crash (sled's crash tests do the same).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::target::{err, Error};

/// How long a start (recovery included) may take before the harness gives up.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the harness kills the server.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the `conductor` binary is: `--server-bin`, `$CONDUCTOR_BIN`, or beside this binary in
/// the same target dir (also from `target/*/deps`, where test binaries live).
pub fn find_binary(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("CONDUCTOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(format!("conductor{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        dir = d.parent();
    }
    Err(err(
        "the `conductor` binary was not found beside this one: build it with \
         `cargo build -p conductor-gateway --bin conductor` (same profile), or pass --server-bin",
    ))
}

/// A free loopback port. Another process could take it before the server binds it; the
/// start fails then and is retried with a new port.
pub fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running (or killed) `conductor serve`.
pub struct Server {
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub port: u16,
    pub key: String,
    pub demo: bool,
    /// Snapshots of the running server this often (its `checkpoint_every_s`); `None` keeps the
    /// server's default.
    pub checkpoint_every_s: Option<u64>,
    child: Option<Child>,
    /// The server's stdout and stderr, for the message when it fails.
    pub log: PathBuf,
    /// Keeps the temp dir (data and log) alive; `None` when the caller owns the dir.
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh temp dir and waits until it is ready.
    pub async fn start_temp(
        binary: PathBuf,
        demo: bool,
        checkpoint_every_s: Option<u64>,
    ) -> Result<Server, Error> {
        let dir = tempfile::Builder::new().prefix("conductor-lt-").tempdir()?;
        let mut server = Server {
            binary,
            data_dir: dir.path().join("data"),
            port: 0,
            key: admin_key(),
            demo,
            checkpoint_every_s,
            child: None,
            log: dir.path().join("server.log"),
            _dir: Some(dir),
        };
        server.restart().await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)starts on the same data dir, on a new port, and waits for /readyz.
    pub async fn restart(&mut self) -> Result<Duration, Error> {
        let started = Instant::now();
        let mut last = err("not started");
        for _ in 0..3 {
            self.port = free_port()?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)?;
            let mut command = Command::new(&self.binary);
            command
                .arg("serve")
                .arg("--data-dir")
                .arg(&self.data_dir)
                .arg("--listen")
                .arg(format!("127.0.0.1:{}", self.port))
                .env("CONDUCTOR_ADMIN_KEY", &self.key)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if self.demo {
                command.arg("--demo");
            }
            if let Some(every) = self.checkpoint_every_s {
                let config = self.log.with_file_name("conductor.json");
                std::fs::write(&config, format!(r#"{{"checkpoint_every_s": {every}}}"#))?;
                // The checkpoints are counted from the log's info lines.
                command
                    .arg("--config")
                    .arg(config)
                    .env("CONDUCTOR_LOG", "info");
            }
            let child = command
                .spawn()
                .map_err(|e| err(format!("starting {}: {e}", self.binary.display())))?;
            self.child = Some(child);
            match self.wait_ready().await {
                Ok(()) => return Ok(started.elapsed()),
                Err(e) => {
                    last = e;
                    self.kill();
                }
            }
        }
        Err(err(format!("{last} (server log: {})", self.log.display())))
    }

    async fn wait_ready(&mut self) -> Result<(), Error> {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.url());
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    return Err(err(format!("the server exited at start: {status}")));
                }
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(err("the server was not ready in time"))
    }

    /// SIGKILL: no flush, no goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the graceful stop (kill if it takes too long).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            // SAFETY: kill(2) on the pid of our own child, which we have not reaped yet.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A random bootstrap admin key for a server the harness starts.
fn admin_key() -> String {
    let mut bytes = [0u8; 16];
    // A key for a loopback test server: if the OS has no randomness, time is good enough.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    let mut rng = crate::load::Rng::new(seed ^ u64::from(std::process::id()));
    for b in &mut bytes {
        *b = rng.next_u64() as u8;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("lt-{hex}")
}
