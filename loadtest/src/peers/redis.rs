//! Redis + Lua: the hold as shops write it today. One script checks and decrements the stock
//! and records the hold, atomically (Redis runs a script alone); with `appendfsync always` the
//! reply is sent after the AOF write is fsynced, so an acknowledged hold is durable, as with
//! Conductor. `everysec` acknowledges before the fsync and is labelled non-durable.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use crate::target::{err, Answer, Error, Level};

/// KEYS: stock, held units, hold id sequence, holds hash. ARGV: qty, expiry (unix ms).
/// Answers `{1, hold id}` or `{0, units left}`.
pub const HOLD_SCRIPT: &str = r"
local n = tonumber(ARGV[1])
local left = tonumber(redis.call('GET', KEYS[1]) or '0')
if left < n then return {0, left} end
redis.call('DECRBY', KEYS[1], n)
redis.call('INCRBY', KEYS[2], n)
local id = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[4], id, ARGV[1] .. ':' .. ARGV[2])
return {1, id}
";

pub fn stock_key(sku: &str) -> String {
    format!("stock:{sku}")
}

pub fn held_key(sku: &str) -> String {
    format!("held:{sku}")
}

pub const SEQ_KEY: &str = "hold_seq";
pub const HOLDS_KEY: &str = "holds";

/// A Redis the harness can talk to.
pub struct RedisStore {
    pub client: redis::Client,
    pub url: String,
}

impl RedisStore {
    pub fn new(url: &str) -> Result<RedisStore, Error> {
        Ok(RedisStore {
            client: redis::Client::open(url)?,
            url: url.to_owned(),
        })
    }

    pub async fn setup(&self, skus: &[String], stock: u64) -> Result<(), Error> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let mut pipe = redis::pipe();
        for sku in skus {
            pipe.set(stock_key(sku), stock).ignore();
            pipe.set(held_key(sku), 0).ignore();
            pipe.set(format!("initial:{sku}"), stock).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    pub async fn session(&self, skus: Arc<Vec<String>>) -> Result<RedisSession, Error> {
        Ok(RedisSession {
            // One connection per worker: 256 buyers are 256 clients, each waiting for its
            // answer before the next request, as with every other system.
            conn: self.client.get_multiplexed_async_connection().await?,
            script: Arc::new(redis::Script::new(HOLD_SCRIPT)),
            skus,
        })
    }

    pub async fn levels(&self, skus: &[String]) -> Result<Vec<Level>, Error> {
        let mut conn = self.client.get_multiplexed_async_connection().await?;
        let mut levels = Vec::new();
        for sku in skus {
            let (left, held): (Option<u64>, Option<u64>) = redis::pipe()
                .get(stock_key(sku))
                .get(held_key(sku))
                .query_async(&mut conn)
                .await?;
            let (left, held) = (left.unwrap_or(0), held.unwrap_or(0));
            // Redis keeps no on_hand of its own: what it implies is what is left plus held.
            levels.push(Level {
                sku: sku.clone(),
                on_hand: left + held,
                held,
                allocated: 0,
                available: left,
            });
        }
        Ok(levels)
    }
}

pub struct RedisSession {
    conn: MultiplexedConnection,
    script: Arc<redis::Script>,
    skus: Arc<Vec<String>>,
}

impl RedisSession {
    pub async fn reserve(&mut self, sku: usize, qty: u64, ttl_s: u64) -> Answer<String> {
        let name = &self.skus[sku];
        hold(&mut self.conn, &self.script, name, qty, ttl_s)
            .await
            .map_or_else(
                |e| Answer::Failed {
                    kind: redis_kind(&e),
                    in_doubt: true,
                },
                |outcome| match outcome {
                    Ok(id) => Answer::Ok(format!("H-{id}")),
                    Err(_) => Answer::Refused("insufficient-stock".into()),
                },
            )
    }
}

/// Runs the script: `Ok(Ok(hold id))` or `Ok(Err(units left))`.
pub async fn hold(
    conn: &mut MultiplexedConnection,
    script: &redis::Script,
    sku: &str,
    qty: u64,
    ttl_s: u64,
) -> redis::RedisResult<Result<i64, i64>> {
    let expires_ms = unix_ms() + ttl_s * 1000;
    let answer: Vec<i64> = script
        .key(stock_key(sku))
        .key(held_key(sku))
        .key(SEQ_KEY)
        .key(HOLDS_KEY)
        .arg(qty)
        .arg(expires_ms)
        .invoke_async(conn)
        .await?;
    Ok(match answer.as_slice() {
        [1, id] => Ok(*id),
        [_, left] => Err(*left),
        _ => Err(0),
    })
}

fn redis_kind(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "io".into()
    } else {
        "redis".into()
    }
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A `redis-server` the harness started on loopback, with its own temp dir.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    pub fsync: String,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// `fsync` is `always` or `everysec`.
    pub async fn start(
        fsync: &str,
        dir_in: Option<&std::path::Path>,
    ) -> Result<RedisServer, Error> {
        let dir = match dir_in {
            Some(d) => tempfile::Builder::new().prefix("redis-lt-").tempdir_in(d)?,
            None => tempfile::Builder::new().prefix("redis-lt-").tempdir()?,
        };
        let port = crate::server::free_port()?;
        let log = std::fs::File::create(dir.path().join("redis.log"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--appendonly", "yes", "--appendfsync", fsync])
            // No RDB snapshots: their fork would steal a core in the middle of a run.
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .args(["--maxclients", "4096", "--logfile", ""])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                err(format!(
                    "starting redis-server: {e} (install it: apt-get install -y redis-server)"
                ))
            })?;
        let server = RedisServer {
            child,
            port,
            fsync: fsync.to_owned(),
            _dir: dir,
        };
        let store = RedisStore::new(&server.url())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut conn) = store.client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
                {
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(err("redis-server did not answer PING in time"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Empties the store between runs, so that each starts from the same state.
    pub async fn flush(&self) -> Result<(), Error> {
        let store = RedisStore::new(&self.url())?;
        let mut conn = store.client.get_multiplexed_async_connection().await?;
        redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
        Ok(())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
