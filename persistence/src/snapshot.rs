//! Snapshots: named, checksummed, chunked state images in their own sled tree, each tagged with
//! the last seq it covers.
//!
//! A snapshot named `name` is stored as records under the keys `name ++ 0x00 ++ index` (index a
//! big-endian u32): index 0 is a [`RecordKind::SnapshotManifest`] naming the covered seq, the
//! chunk count and a checksum of the whole state; indexes `1..=chunks` are
//! [`RecordKind::SnapshotChunk`] records of at most [`RECORD_BYTES_MAX`] bytes each, so that a
//! large state never becomes an unsynced sled blob. A save replaces the whole set in one atomic
//! sled batch.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::WalError;
use crate::record::{
    bincode_config, check_record_kind, encode_record, RecordKind, Seq, PAYLOAD_BYTES_MAX,
    RECORD_BYTES_MAX, RECORD_DECODE_CLAIM_BYTES_MAX,
};

/// The largest encoded snapshot state. Also the decode limit, so a corrupt length prefix inside
/// a snapshot cannot make a restore allocate without bound.
pub const SNAPSHOT_BYTES_MAX: usize = 1 << 30;

/// The longest snapshot key, in bytes.
pub const SNAPSHOT_KEY_BYTES_MAX: usize = 200;

/// The most chunks a snapshot can have; follows from [`SNAPSHOT_BYTES_MAX`].
pub const SNAPSHOT_CHUNKS_MAX: usize = SNAPSHOT_BYTES_MAX.div_ceil(PAYLOAD_BYTES_MAX);

/// What index 0 of a snapshot says about the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The last seq whose events the state includes.
    pub(crate) covered: u64,
    pub(crate) chunks: u32,
    pub(crate) state_bytes: u64,
    /// crc32c of the whole state, checked after the chunks are joined: it catches a chunk that
    /// is intact on its own but belongs to another save.
    pub(crate) state_crc: u32,
}

/// One stored snapshot, handed to [`crate::Recover::restore`].
#[derive(Debug)]
pub struct SnapshotView<'a> {
    key: &'a str,
    covered: Seq,
    state: &'a [u8],
}

impl<'a> SnapshotView<'a> {
    pub fn key(&self) -> &'a str {
        self.key
    }

    /// The last seq whose events the state includes: replay skips them for this snapshot's
    /// entities.
    pub fn covered(&self) -> Seq {
        self.covered
    }

    /// The encoded state, as `save_snapshot` stored it.
    pub fn bytes(&self) -> &'a [u8] {
        self.state
    }

    /// Decodes the state with the crate's bincode configuration.
    pub fn decode<S: DeserializeOwned>(&self) -> Result<S, WalError> {
        let (state, used) = bincode::serde::decode_from_slice::<S, _>(
            self.state,
            bincode_config::<SNAPSHOT_BYTES_MAX>(),
        )
        .map_err(|error| WalError::SnapshotCorrupt {
            key: self.key.to_owned(),
            reason: format!("state does not decode: {error}"),
        })?;
        if used != self.state.len() {
            return Err(WalError::SnapshotCorrupt {
                key: self.key.to_owned(),
                reason: format!("{} trailing bytes after the state", self.state.len() - used),
            });
        }
        Ok(state)
    }
}

pub(crate) fn validate_key(key: &str) -> Result<(), WalError> {
    let reason = if key.is_empty() {
        "empty"
    } else if key.len() > SNAPSHOT_KEY_BYTES_MAX {
        "longer than SNAPSHOT_KEY_BYTES_MAX"
    } else if key.as_bytes().contains(&0) {
        "contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(WalError::InvalidSnapshotKey {
        key: key.to_owned(),
        reason,
    })
}

/// `key ++ 0x00`: every chunk key of `key` starts with it, and no other key does (keys have no
/// NUL).
fn key_prefix(key: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(key.len() + 1);
    prefix.extend_from_slice(key.as_bytes());
    prefix.push(0);
    prefix
}

fn chunk_key(key: &str, index: u32) -> Vec<u8> {
    let mut bytes = key_prefix(key);
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes
}

/// Splits a stored key into snapshot name and chunk index.
fn parse_chunk_key(bytes: &[u8]) -> Option<(&str, u32)> {
    let split = bytes.len().checked_sub(5)?;
    let (name, rest) = bytes.split_at(split);
    if rest[0] != 0 {
        return None;
    }
    let index = u32::from_be_bytes(rest[1..5].try_into().ok()?);
    Some((std::str::from_utf8(name).ok()?, index))
}

/// Encodes `state` and stores it under `key`, replacing any older snapshot of that name, in one
/// atomic batch. The caller makes it durable.
pub(crate) fn write(
    tree: &sled::Tree,
    key: &str,
    covered: Seq,
    state: &impl Serialize,
) -> Result<Manifest, WalError> {
    validate_key(key)?;
    let bytes = bincode::serde::encode_to_vec(state, bincode_config::<SNAPSHOT_BYTES_MAX>())?;
    if bytes.len() > SNAPSHOT_BYTES_MAX {
        return Err(WalError::SnapshotTooLarge {
            key: key.to_owned(),
            bytes: bytes.len(),
            bytes_max: SNAPSHOT_BYTES_MAX,
        });
    }
    let chunks = bytes.chunks(PAYLOAD_BYTES_MAX).count();
    debug_assert!(chunks <= SNAPSHOT_CHUNKS_MAX);
    let manifest = Manifest {
        covered: covered.get(),
        // Bounded by SNAPSHOT_CHUNKS_MAX, far below u32::MAX.
        chunks: chunks as u32,
        state_bytes: bytes.len() as u64,
        state_crc: crc32c::crc32c(&bytes),
    };
    let manifest_payload =
        bincode::serde::encode_to_vec(manifest, bincode_config::<PAYLOAD_BYTES_MAX>())?;
    let mut batch = sled::Batch::default();
    batch.insert(
        chunk_key(key, 0),
        encode_record(RecordKind::SnapshotManifest, &manifest_payload),
    );
    for (index, chunk) in bytes.chunks(PAYLOAD_BYTES_MAX).enumerate() {
        let record = encode_record(RecordKind::SnapshotChunk, chunk);
        debug_assert!(record.len() <= RECORD_BYTES_MAX);
        batch.insert(chunk_key(key, index as u32 + 1), record);
    }
    // Chunks of an older, larger save of the same name.
    for entry in tree.scan_prefix(key_prefix(key)) {
        let (stored_key, _) = entry?;
        if let Some((_, index)) = parse_chunk_key(&stored_key) {
            if index > manifest.chunks {
                batch.remove(stored_key);
            }
        }
    }
    tree.apply_batch(batch)?;
    Ok(manifest)
}

/// A snapshot read back and checked.
pub(crate) struct Stored {
    pub(crate) key: String,
    pub(crate) covered: Seq,
    pub(crate) state: Vec<u8>,
}

impl Stored {
    pub(crate) fn view(&self) -> SnapshotView<'_> {
        SnapshotView {
            key: &self.key,
            covered: self.covered,
            state: &self.state,
        }
    }
}

fn corrupt(key: &str, reason: impl Into<String>) -> WalError {
    WalError::SnapshotCorrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Reads the manifest of every snapshot: (name, manifest), in key order.
pub(crate) fn manifests(tree: &sled::Tree) -> Result<Vec<(String, Manifest)>, WalError> {
    let mut found = Vec::new();
    for entry in tree.iter() {
        let (stored_key, value) = entry?;
        let Some((name, index)) = parse_chunk_key(&stored_key) else {
            return Err(corrupt(
                &String::from_utf8_lossy(&stored_key),
                "malformed snapshot key",
            ));
        };
        if index != 0 {
            continue;
        }
        let payload = check_record_kind(&value, RecordKind::SnapshotManifest)
            .map_err(|reason| corrupt(name, format!("manifest: {reason}")))?;
        let (manifest, _): (Manifest, usize) = bincode::serde::decode_from_slice(
            payload,
            bincode_config::<RECORD_DECODE_CLAIM_BYTES_MAX>(),
        )
        .map_err(|error| corrupt(name, format!("manifest does not decode: {error}")))?;
        // Same rule as for log keys: a covered seq of u64::MAX cannot be real.
        if manifest.covered == u64::MAX {
            return Err(corrupt(name, "manifest covers seq u64::MAX"));
        }
        found.push((name.to_owned(), manifest));
    }
    Ok(found)
}

/// Reads and checks one snapshot's chunks.
pub(crate) fn read(tree: &sled::Tree, key: &str, manifest: &Manifest) -> Result<Stored, WalError> {
    let state_bytes = usize::try_from(manifest.state_bytes)
        .ok()
        .filter(|&bytes| bytes <= SNAPSHOT_BYTES_MAX)
        .ok_or_else(|| corrupt(key, "state size over SNAPSHOT_BYTES_MAX"))?;
    let mut state = Vec::with_capacity(state_bytes);
    for index in 1..=manifest.chunks {
        let value = tree
            .get(chunk_key(key, index))?
            .ok_or_else(|| corrupt(key, format!("chunk {index} is missing")))?;
        let payload = check_record_kind(&value, RecordKind::SnapshotChunk)
            .map_err(|reason| corrupt(key, format!("chunk {index}: {reason}")))?;
        if state.len() + payload.len() > state_bytes {
            return Err(corrupt(
                key,
                "chunks hold more bytes than the manifest says",
            ));
        }
        state.extend_from_slice(payload);
    }
    if state.len() != state_bytes {
        return Err(corrupt(
            key,
            "chunks hold fewer bytes than the manifest says",
        ));
    }
    if crc32c::crc32c(&state) != manifest.state_crc {
        return Err(corrupt(key, "state checksum mismatch"));
    }
    Ok(Stored {
        key: key.to_owned(),
        covered: Seq::new(manifest.covered),
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_round_trip_and_group_by_name() {
        let key = chunk_key("stock", 7);
        assert_eq!(parse_chunk_key(&key), Some(("stock", 7)));
        // "stock" chunks must not be found under the prefix of "sto".
        assert!(!key.starts_with(&key_prefix("sto")));
        assert!(validate_key("a\0b").is_err());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(SNAPSHOT_KEY_BYTES_MAX + 1)).is_err());
    }

    #[test]
    fn large_state_is_chunked_and_replaced_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("s").unwrap();
        let big: Vec<u64> = (0..100_000).collect();
        let manifest = write(&tree, "big", Seq::new(5), &big).unwrap();
        assert!(manifest.chunks > 5);
        let small = vec![1u64, 2, 3];
        let manifest_small = write(&tree, "big", Seq::new(9), &small).unwrap();
        assert_eq!(manifest_small.chunks, 1);
        // The older save's extra chunks are gone.
        assert_eq!(tree.scan_prefix(key_prefix("big")).count(), 2);
        let found = manifests(&tree).unwrap();
        assert_eq!(found.len(), 1);
        let stored = read(&tree, "big", &found[0].1).unwrap();
        assert_eq!(stored.covered, Seq::new(9));
        assert_eq!(stored.view().decode::<Vec<u64>>().unwrap(), small);
    }
}
