//! API keys: bearer tokens with scopes, bound to stock points for fulfilment, rate limited per
//! key, stored hashed in `<data-dir>/keys.json`.
//!
//! A key is `ck_` and 64 hex digits of a random 32-byte secret; only its SHA-256 is kept, so a
//! stolen `keys.json` grants nothing. The file is replaced atomically (write a temporary file,
//! fsync it, rename it over, fsync the directory) so that a crash leaves the old or the new
//! list, never half of one.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::http::StatusCode;
use conductor_engine::ids::Code;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::problem::{ApiResult, Problem};

/// Keys one server keeps; creating more is refused (a bound on the file and the map).
pub const KEYS_MAX: usize = 10_000;
/// Stock points one fulfilment key may be bound to.
pub const KEY_STOCK_POINTS_MAX: usize = 1_000;
/// The highest per-key rate accepted, requests per second.
pub const RATE_PER_S_MAX: u32 = 10_000_000;
/// The bootstrap admin key's id.
pub const BOOTSTRAP_ID: &str = "admin";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Checkout,
    Fulfilment,
    Admin,
}

/// What `keys.json` holds for one key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    /// Hex SHA-256 of the key.
    pub sha256: String,
    pub scopes: Vec<Scope>,
    #[serde(default)]
    pub stock_points: Vec<Code>,
    #[serde(default)]
    pub rate_per_s: Option<u32>,
    pub created_at: String,
}

/// A token bucket: `rate` tokens a second, holding at most one second's worth, so a client may
/// burst its per-second rate and no more.
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A key as the server uses it: its record and, when limited, its bucket.
pub struct Key {
    pub record: KeyRecord,
    pub bootstrap: bool,
    bucket: Option<Mutex<Bucket>>,
}

impl Key {
    fn new(record: KeyRecord, bootstrap: bool) -> Key {
        let bucket = record.rate_per_s.map(|rate| {
            Mutex::new(Bucket {
                tokens: f64::from(rate.max(1)),
                at: Instant::now(),
            })
        });
        Key {
            record,
            bootstrap,
            bucket,
        }
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn is_admin(&self) -> bool {
        self.record.scopes.contains(&Scope::Admin)
    }

    /// 403 unless the key has `scope` (admin has every scope).
    pub fn require(&self, scope: Scope) -> ApiResult<()> {
        if self.is_admin() || self.record.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this key lacks the {} scope",
                serde_json::to_value(scope)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            )))
        }
    }

    /// 403 unless the key may act for the stock point: admin always; fulfilment only where
    /// bound.
    pub fn require_stock_point(&self, code: &str) -> ApiResult<()> {
        if self.is_admin() {
            return Ok(());
        }
        self.require(Scope::Fulfilment)?;
        if self.record.stock_points.iter().any(|c| c.as_str() == code) {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "this key is not bound to stock point {code}"
            )))
        }
    }

    pub fn bound_to(&self, code: &str) -> bool {
        self.is_admin() || self.record.stock_points.iter().any(|c| c.as_str() == code)
    }

    /// Takes one token, or says how many seconds until one is there.
    fn admit(&self) -> Result<(), u64> {
        let (Some(bucket), Some(rate)) = (&self.bucket, self.record.rate_per_s) else {
            return Ok(());
        };
        let rate = f64::from(rate.max(1));
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

pub struct KeyStore {
    path: PathBuf,
    by_hash: RwLock<HashMap<[u8; 32], Arc<Key>>>,
    /// Serialises writers of the file; readers never wait on it.
    writing: Mutex<()>,
}

pub fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(hex(&buf))
}

/// A fresh secret key: `ck_` and 64 hex digits.
pub fn generate_key() -> std::io::Result<String> {
    Ok(format!("ck_{}", random_hex(32)?))
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl KeyStore {
    /// Loads `keys.json` and installs the bootstrap admin key (from `env_key` if given, else
    /// from `admin.key`, else a new one written there).
    pub fn open(data_dir: &Path, env_key: Option<String>) -> std::io::Result<KeyStore> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join("keys.json");
        let mut by_hash = HashMap::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let records: Vec<KeyRecord> = serde_json::from_slice(&bytes)
                    .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
                for record in records {
                    match unhex(&record.sha256) {
                        Some(h) => {
                            by_hash.insert(h, Arc::new(Key::new(record, false)));
                        }
                        None => warn!(key = %record.id, "skipping a key with a malformed hash"),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let admin = match env_key.filter(|k| !k.is_empty()) {
            Some(key) => {
                info!("bootstrap admin key from conductor_admin_key");
                key
            }
            None => {
                let file = data_dir.join("admin.key");
                match std::fs::read_to_string(&file) {
                    Ok(key) if !key.trim().is_empty() => {
                        info!(path = %file.display(), "bootstrap admin key read");
                        key.trim().to_owned()
                    }
                    _ => {
                        let key = generate_key()?;
                        write_atomically(&file, format!("{key}\n").as_bytes(), 0o600)?;
                        info!(path = %file.display(), "bootstrap admin key generated");
                        key
                    }
                }
            }
        };
        let record = KeyRecord {
            id: BOOTSTRAP_ID.into(),
            sha256: hex(&hash(&admin)),
            scopes: vec![Scope::Admin],
            stock_points: Vec::new(),
            rate_per_s: None,
            created_at: String::new(),
        };
        by_hash.insert(hash(&admin), Arc::new(Key::new(record, true)));
        Ok(KeyStore {
            path,
            by_hash: RwLock::new(by_hash),
            writing: Mutex::new(()),
        })
    }

    /// The key a bearer token names, after its rate limit: 401 unknown, 429 over the limit.
    pub fn authenticate(&self, token: &str) -> ApiResult<Arc<Key>> {
        let key = self
            .by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash(token))
            .cloned()
            .ok_or_else(|| Problem::unauthorized("unknown API key"))?;
        key.admit().map_err(|seconds| {
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limited",
                format!(
                    "this key may make {} requests a second",
                    key.record.rate_per_s.unwrap_or_default()
                ),
            )
            .retry_after(seconds)
        })?;
        Ok(key)
    }

    pub fn list(&self) -> Vec<KeyRecord> {
        let mut out: Vec<KeyRecord> = self
            .by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|k| !k.bootstrap)
            .map(|k| k.record.clone())
            .collect();
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        out
    }

    /// Creates a key and persists the list; returns the record and the secret (shown once).
    pub fn create(
        &self,
        scopes: Vec<Scope>,
        stock_points: Vec<Code>,
        rate_per_s: Option<u32>,
        created_at: String,
    ) -> std::io::Result<(KeyRecord, String)> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let secret = generate_key()?;
        let record = KeyRecord {
            id: format!("key_{}", random_hex(8)?),
            sha256: hex(&hash(&secret)),
            scopes,
            stock_points,
            rate_per_s,
            created_at,
        };
        let mut records = self.list();
        if records.len() >= KEYS_MAX {
            return Err(std::io::Error::other("too many keys"));
        }
        records.push(record.clone());
        self.persist(&records)?;
        self.by_hash
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(hash(&secret), Arc::new(Key::new(record.clone(), false)));
        Ok((record, secret))
    }

    /// Revokes a key; `false` if there is none with that id.
    pub fn revoke(&self, id: &str) -> std::io::Result<bool> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let records: Vec<KeyRecord> = self.list().into_iter().filter(|r| r.id != id).collect();
        let known = self
            .by_hash
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|k| !k.bootstrap && k.record.id == id);
        if !known {
            return Ok(false);
        }
        self.persist(&records)?;
        self.by_hash
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, k| k.bootstrap || k.record.id != id);
        Ok(true)
    }

    fn persist(&self, records: &[KeyRecord]) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(records).map_err(std::io::Error::other)?;
        write_atomically(&self.path, &bytes, 0o600)
    }
}
