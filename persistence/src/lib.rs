//! Conductor's write-ahead log: every event is durable on disk before anyone is told "yes".
//!
//! The log is generic over the event type `E` (the engine's `Event` in production); events are
//! stored as bincode, in checksummed, versioned records, in sled 0.34.
//!
//! Modules, and what each owns:
//!
//! - [`wal`]: [`Wal`], the log over sled: open, recover, hand out appenders, save snapshots,
//!   compact, close.
//! - [`writer`]: group commit. The "wal-writer" thread, the bounded queue that feeds it, the
//!   [`Appender`] producers hold, acknowledgement in log order, poisoning after a failed flush,
//!   and the [`WalStats`] counters.
//! - [`record`]: the byte format of a record (header, crc32c, bincode payload), [`Seq`], the
//!   one bincode configuration, and the record size limit that keeps sled from writing blobs.
//! - `handoff`: the bounded queues between the log's threads (they sleep at once when they
//!   wait, where crossbeam's channel yields the core four times first).
//! - [`storage`]: the [`Storage`] trait the writer writes through, its sled implementation, and
//!   the flush-plus-fdatasync that makes sled durable.
//! - [`snapshot`]: named, chunked, checksummed snapshots tagged with the seq they cover.
//! - [`recovery`]: the [`Recover`] trait, restoring snapshots, replaying the log, truncating a
//!   torn tail, refusing damage in the middle.
//! - [`inspect`]: offline [`inspect()`] and [`verify()`] of a log directory.
//! - [`config`]: [`WalConfig`] and the hard limits it must stay under.
//! - [`error`]: [`WalError`] and [`RecordError`].
//! - `testsuite` (feature `testsuite`): a fake [`Storage`] that journals writes, syncs and
//!   acknowledgements and can fail a sync, for tests here and in the crates above.
//!
//! **Durability invariant:** an append's callback runs with `Ok(seq)` only after sled's flush
//! *and* an `fdatasync` of sled's data file returned success for a write that contained it.
//! A failed flush is never retried; the log is poisoned instead.
//!
//! **Format invariant:** what a record holds is fixed by `tests/golden/`; a change that alters
//! those bytes needs a new [`record::FORMAT_VERSION`] and a reader for the old one
//! (regenerate the files with `UPDATE_GOLDEN=1 cargo test -p conductor-persistence --test
//! golden`).
//!
//! Tests: `tests/wal.rs` (sled round trips, damage, snapshots, compaction), `tests/group_commit.rs`
//! (ordering and fail-stop over a fake storage), `tests/blobs.rs` (no sled blob files),
//! `tests/golden.rs` (byte format), `tests/crash.rs` (SIGKILLs the `wal-crash-writer` helper
//! binary and checks every acknowledged append; `WAL_CRASH_SEED` replays a run).

pub mod config;
pub mod error;
mod handoff;
pub mod inspect;
pub mod record;
pub mod recovery;
pub mod snapshot;
pub mod storage;
#[cfg(any(test, feature = "testsuite"))]
pub mod testsuite;
pub mod wal;
pub mod writer;

pub use config::{WalConfig, APPEND_EVENTS_MAX};
pub use error::{RecordError, WalError};
pub use inspect::{inspect, verify, VerifyReport};
pub use record::{Seq, RECORD_BYTES_MAX};
pub use recovery::{Recover, RecoveryReport};
pub use snapshot::{SnapshotView, SNAPSHOT_BYTES_MAX};
pub use storage::{SledStorage, SledSyncer, Storage, Syncer};
pub use wal::{CompactReport, Wal};
pub use writer::{Appender, GroupCommit, WalStats};
