//! The one error type of the crate, [`WalError`], and [`RecordError`], the reason a stored
//! record failed its checks.
//!
//! A flush failure is fail-stop: it poisons the log ([`WalError::Failed`] for the appends that
//! were waiting on it, [`WalError::Poisoned`] for everything after). Busy and too-large are
//! ordinary, expected outcomes that a caller can act on; corruption names the sequence number so
//! an operator can find the record with `conductor wal inspect`.

use std::io;
use std::time::Duration;

use crate::record::Seq;

/// Everything that can go wrong in the write-ahead log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// The append queue stayed full for the whole enqueue timeout (or, for
    /// [`crate::Appender::try_append`], was full right now). Nothing was enqueued and the
    /// callback will not run: the caller decides whether to retry or to answer "busy".
    #[error("wal is busy: the append queue stayed full for {waited:?}")]
    Busy { waited: Duration },

    /// A flush failed while these events were waiting on it. Their durability is unknown, the
    /// log is poisoned and accepts nothing more; the process should stop and recover.
    #[error("wal flush failed, the log is poisoned: {kind:?}: {message}")]
    Failed {
        kind: io::ErrorKind,
        message: String,
    },

    /// An earlier flush failed, so the log accepts nothing more. We never retry an fsync: after
    /// a failed fsync the kernel may have dropped the dirty pages, and a retry could "succeed".
    #[error("wal is poisoned by an earlier flush failure")]
    Poisoned,

    /// The log was closed (or its writer thread is gone) before these events were written.
    #[error("wal is closed")]
    Closed,

    /// An append carried no events. An empty append has no sequence number to acknowledge.
    #[error("an append must carry at least one event")]
    EmptyAppend,

    /// An append carried more events than [`crate::APPEND_EVENTS_MAX`].
    #[error("an append carries {events} events, more than the limit of {events_max}")]
    AppendTooLarge { events: usize, events_max: usize },

    /// One encoded event does not fit into a single record.
    #[error("an event encodes to {bytes} bytes, more than the limit of {bytes_max}")]
    EventTooLarge { bytes: usize, bytes_max: usize },

    /// An encoded snapshot is larger than [`crate::SNAPSHOT_BYTES_MAX`].
    #[error("snapshot {key:?} encodes to {bytes} bytes, more than the limit of {bytes_max}")]
    SnapshotTooLarge {
        key: String,
        bytes: usize,
        bytes_max: usize,
    },

    /// A snapshot key is empty, too long, or contains a NUL byte (NUL separates the key from the
    /// chunk index in sled).
    #[error("invalid snapshot key {key:?}: {reason}")]
    InvalidSnapshotKey { key: String, reason: &'static str },

    /// A snapshot claims to cover records that are not durable yet, or that compaction already
    /// removed; either would make replay skip or miss events.
    #[error("snapshot {key:?} covers seq {covered}, outside the valid range {floor}..={durable}")]
    SnapshotOutOfRange {
        key: String,
        covered: Seq,
        floor: Seq,
        durable: Seq,
    },

    /// A replay of the live log was asked to read past what is durable.
    #[error("cannot replay through seq {through}: only {durable} is durable")]
    ReplayBeyondDurable { through: Seq, durable: Seq },

    /// A replay of the live log was asked to stop before a snapshot it would restore.
    #[error("cannot replay through seq {through}: a snapshot covers up to {newest}")]
    ReplayBehindSnapshot { through: Seq, newest: Seq },

    /// A stored snapshot failed its checks.
    #[error("snapshot {key:?} is corrupt: {reason}")]
    SnapshotCorrupt { key: String, reason: String },

    /// The configuration breaks one of the crate's limits.
    #[error("invalid wal configuration: {0}")]
    InvalidConfig(&'static str),

    /// `recover` was called after an appender was handed out. Replay must see a log that nobody
    /// writes to, and the writer must start after any tail truncation.
    #[error("recovery must run before the first appender is created")]
    AppendsStarted,

    /// A stored record in the middle of the log failed its checks. Replay stopped before it.
    #[error("record {seq} is corrupt: {reason}")]
    Corrupt { seq: Seq, reason: RecordError },

    /// A record passed its checksum but its payload does not decode as the event type: the
    /// format or the event type changed incompatibly. Nothing is truncated.
    #[error("record {seq} does not decode: {source}")]
    Decode {
        seq: Seq,
        #[source]
        source: bincode::error::DecodeError,
    },

    /// A snapshot restore reported a failure.
    #[error("restoring snapshot {key:?} failed: {message}")]
    Restore { key: String, message: String },

    /// Serializing an event or a snapshot failed.
    #[error("encoding failed: {0}")]
    Encode(#[from] bincode::error::EncodeError),

    /// The directory holds no log (inspection and verification never create one).
    #[error("no wal found at {0}")]
    NotFound(std::path::PathBuf),

    /// sled reported an error.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),

    /// A file-system operation outside sled failed.
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl WalError {
    /// The error handed to every append that waited on a failed flush.
    pub(crate) fn failed(error: &io::Error) -> WalError {
        WalError::Failed {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

/// Why a stored record failed its checks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record has {bytes} bytes, shorter than its header")]
    TooShort { bytes: usize },
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record kind {found:?} where {expected:?} was expected")]
    UnexpectedKind {
        expected: crate::record::RecordKind,
        found: crate::record::RecordKind,
    },
    #[error("header says {header} payload bytes, record holds {actual}")]
    LengthMismatch { header: usize, actual: usize },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error("key of {bytes} bytes is not a valid 8-byte sequence number")]
    BadKey { bytes: usize },
    #[error("record is missing (the log has a gap)")]
    Missing,
    #[error("event count prefix is unreadable")]
    BadEventCount,
    #[error("compressed events do not decompress: {0}")]
    BadCompression(String),
}
