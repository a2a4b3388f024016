//! Idempotency: a retried request with the same key has exactly one effect. The table records
//! each key's request fingerprint and first response; a retry gets that response back, and a
//! key reused for a different request is refused.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::hash::FxHashMap;
use crate::limits::IDEMPOTENCY_RETENTION_MS;
use crate::time::Timestamp;

/// The longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 255;
/// The largest response body remembered for a key.
pub const IDEMPOTENT_RESPONSE_BYTES_MAX: usize = 256 * 1024;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_BYTES_MAX} visible ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Keys are scoped by the caller (e.g. the API key's id) so that two clients cannot collide.
    pub fn new(scope: &str, key: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        if key.is_empty()
            || key.len() > IDEMPOTENCY_KEY_BYTES_MAX
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(InvalidIdempotencyKey);
        }
        Ok(IdempotencyKey(format!("{scope}/{key}")))
    }
}

/// FNV-1a over the request: method, path and body. Stable across versions and platforms, which
/// a std `Hasher` is not.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct IdempotencyEntry {
    pub fingerprint: u64,
    pub response: StoredResponse,
    pub at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum IdempotencyEvent {
    Recorded {
        key: IdempotencyKey,
        entry: IdempotencyEntry,
    },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Lookup<'a> {
    /// First time: go ahead, then record the response.
    New,
    /// Seen with the same request: answer this, do nothing else.
    Replay(&'a StoredResponse),
    /// Seen with a different request: refuse.
    Mismatch,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyTable {
    entries: FxHashMap<IdempotencyKey, IdempotencyEntry>,
    /// Ordered by time so that forgetting old keys pops from the front.
    by_time: BTreeSet<(Timestamp, IdempotencyKey)>,
}

impl IdempotencyTable {
    pub fn lookup(&self, key: &IdempotencyKey, fingerprint: u64, now: Timestamp) -> Lookup<'_> {
        match self.entries.get(key) {
            Some(entry) if now.0.saturating_sub(entry.at.0) < IDEMPOTENCY_RETENTION_MS => {
                if entry.fingerprint == fingerprint {
                    Lookup::Replay(&entry.response)
                } else {
                    Lookup::Mismatch
                }
            }
            _ => Lookup::New,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn apply(&mut self, event: &IdempotencyEvent) {
        match event {
            IdempotencyEvent::Recorded { key, entry } => {
                if let Some(old) = self.entries.insert(key.clone(), entry.clone()) {
                    self.by_time.remove(&(old.at, key.clone()));
                }
                self.by_time.insert((entry.at, key.clone()));
            }
        }
    }

    /// Forgets keys older than the retention. Time-derived, so replay forgets the same keys.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let cutoff = Timestamp(now.0.saturating_sub(IDEMPOTENCY_RETENTION_MS));
        let mut pruned = 0;
        while let Some((at, key)) = self.by_time.first().cloned() {
            if at >= cutoff {
                break;
            }
            self.by_time.pop_first();
            self.entries.remove(&key);
            pruned += 1;
        }
        pruned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(table: &mut IdempotencyTable, key: &IdempotencyKey, fp: u64, at: u64) {
        table.apply(&IdempotencyEvent::Recorded {
            key: key.clone(),
            entry: IdempotencyEntry {
                fingerprint: fp,
                response: StoredResponse {
                    status: 201,
                    body: b"{}".to_vec(),
                },
                at: Timestamp(at),
            },
        });
    }

    #[test]
    fn a_retry_with_the_same_request_replays_the_first_response() {
        let key = IdempotencyKey::new("k1", "abc").unwrap();
        let mut table = IdempotencyTable::default();
        assert_eq!(table.lookup(&key, 1, Timestamp(0)), Lookup::New);
        record(&mut table, &key, 1, 0);
        assert!(
            matches!(table.lookup(&key, 1, Timestamp(10)), Lookup::Replay(r) if r.status == 201)
        );
        assert_eq!(table.lookup(&key, 2, Timestamp(10)), Lookup::Mismatch);
    }

    #[test]
    fn keys_are_forgotten_after_the_retention() {
        let key = IdempotencyKey::new("k1", "abc").unwrap();
        let mut table = IdempotencyTable::default();
        record(&mut table, &key, 1, 0);
        let later = Timestamp(IDEMPOTENCY_RETENTION_MS + 1);
        assert_eq!(table.lookup(&key, 1, later), Lookup::New);
        assert_eq!(table.prune(later), 1);
        assert!(table.is_empty());
    }

    #[test]
    fn keys_are_scoped_and_validated() {
        assert_ne!(
            IdempotencyKey::new("a", "x").unwrap(),
            IdempotencyKey::new("b", "x").unwrap()
        );
        assert!(IdempotencyKey::new("a", "").is_err());
        assert!(IdempotencyKey::new("a", "has space").is_err());
        assert!(IdempotencyKey::new("a", &"x".repeat(256)).is_err());
    }

    #[test]
    fn fingerprints_separate_parts() {
        assert_ne!(fingerprint(&[b"ab", b"c"]), fingerprint(&[b"a", b"bc"]));
        assert_eq!(
            fingerprint(&[b"POST", b"/v1"]),
            fingerprint(&[b"POST", b"/v1"])
        );
    }
}
