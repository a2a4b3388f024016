//! Where records go: the [`Storage`] trait the writer thread writes through, its sled
//! implementation [`SledStorage`], and [`Durability`], the one place that makes sled's writes
//! durable and remembers a failed flush.
//!
//! sled's `flush` on Linux ends in `sync_file_range`, which writes the pages out but neither
//! flushes the device cache nor the file's metadata (its size, after the file grew). So every
//! flush is followed by `fdatasync` of sled's data file `<dir>/db`, through a handle we keep.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::record::{Seq, RECORD_BYTES_MAX};

/// The sled tree that holds the log: key = big-endian seq, value = an events record.
pub const LOG_TREE: &str = "conductor.log";
/// The sled tree that holds snapshots: key = name, NUL, big-endian chunk index.
pub const SNAPSHOT_TREE: &str = "conductor.snapshots";
/// The sled tree for the log's own bookkeeping (how far compaction went).
pub const META_TREE: &str = "conductor.meta";
/// sled's data file inside the log directory (sled 0.34 layout).
pub const SLED_DATA_FILE: &str = "db";

/// sled 0.34 splits a leaf node once it holds more than 16 entries (`Node::should_split`), so a
/// leaf holds at most 17 values before the split.
pub const SLED_LEAF_ENTRIES_MAX: usize = 17;

/// sled's segment size for our database. sled writes a message larger than a quarter of a
/// segment as an unsynced blob file; the largest message we cause is a consolidated leaf of
/// [`SLED_LEAF_ENTRIES_MAX`] records plus keys and node overhead, so the segment is sized to keep
/// that under a quarter with a margin of almost two. The default (512 KiB) would turn a leaf of
/// three 64 KiB records into a blob. This is stored in sled's `conf` file when the database is
/// created and must not change for an existing log.
pub const SLED_SEGMENT_BYTES: usize = 8 * 1024 * 1024;

const _: () = assert!(SLED_LEAF_ENTRIES_MAX * (RECORD_BYTES_MAX + 64) < SLED_SEGMENT_BYTES / 4);
// sled refuses segments above 16 MiB and requires a power of two.
const _: () = assert!(SLED_SEGMENT_BYTES <= 1 << 24);
const _: () = assert!(SLED_SEGMENT_BYTES.is_power_of_two());

/// Durable storage as the group commit sees it: the writer thread writes through it, the syncer
/// thread syncs through its [`Storage::syncer`] while the writer goes on writing. Tests
/// implement it with a fake that records the order of writes, syncs and acknowledgements, and
/// that can fail a sync.
pub trait Storage: Send + 'static {
    type Syncer: Syncer;

    /// Writes `records` (log order, consecutive seqs). They need not be durable yet, but they
    /// must be atomic across a crash: after a restart either all of them or none are present.
    /// After a crash, the records present must be a prefix of those written.
    fn write_records(&mut self, records: &[(Seq, Vec<u8>)]) -> io::Result<()>;

    /// The handle the syncer thread makes writes durable with.
    fn syncer(&self) -> Self::Syncer;
}

/// Makes records durable, on the syncer thread, concurrently with later writes.
pub trait Syncer: Send + 'static {
    /// Makes every record whose `write_records` returned before this call began durable. An
    /// error is fatal: the caller poisons the log and never calls `sync` again.
    fn sync(&mut self) -> io::Result<()>;
}

/// Makes sled's writes durable, for the writer thread and for snapshots and compaction alike.
///
/// All syncs go through one mutex. If one caller's fsync fails, the kernel may have dropped
/// dirty pages that belonged to another caller's writes, and a later fsync would report
/// success for them; serialising syncs and checking the poisoned flag inside the lock means no
/// sync can succeed after one failed.
pub(crate) struct Durability {
    db: sled::Db,
    /// Kept open so that each flush costs one `fdatasync`, not an open and a close.
    data_file: File,
    /// Guards the syncs; the bool is "poisoned".
    gate: Mutex<bool>,
    /// A copy of the poisoned bit that producers read without taking the lock.
    poisoned: AtomicBool,
}

impl Durability {
    pub(crate) fn new(db: sled::Db, dir: &Path) -> io::Result<Durability> {
        let data_file = File::open(dir.join(SLED_DATA_FILE))?;
        Ok(Durability {
            db,
            data_file,
            gate: Mutex::new(false),
            poisoned: AtomicBool::new(false),
        })
    }

    /// sled's flush, then `fdatasync` of its data file. Never retried: the first error poisons
    /// and every later call fails.
    pub(crate) fn sync(&self) -> io::Result<()> {
        // A panic while holding the gate cannot leave the flag half-set, so a poisoned mutex
        // is still usable.
        let mut poisoned = self.gate.lock().unwrap_or_else(|e| e.into_inner());
        if *poisoned {
            return Err(poisoned_error());
        }
        let result = self
            .db
            .flush()
            .map_err(io::Error::from)
            .and_then(|_| self.data_file.sync_data());
        if result.is_err() {
            *poisoned = true;
            self.poisoned.store(true, Ordering::SeqCst);
        }
        result
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }
}

pub(crate) fn poisoned_error() -> io::Error {
    io::Error::other("an earlier flush failed; the log is poisoned")
}

/// The production [`Storage`]: one sled insert per write of a single record, one atomic sled
/// batch per write of several, and [`Durability::sync`] to make them durable.
pub struct SledStorage {
    log: sled::Tree,
    durability: std::sync::Arc<Durability>,
}

impl SledStorage {
    pub(crate) fn new(log: sled::Tree, durability: std::sync::Arc<Durability>) -> SledStorage {
        SledStorage { log, durability }
    }
}

impl Storage for SledStorage {
    type Syncer = SledSyncer;

    fn write_records(&mut self, records: &[(Seq, Vec<u8>)]) -> io::Result<()> {
        // A single record is a plain insert: sled's batches take its global write lock, which
        // waits for the flush in progress and so would undo the overlap of writing and syncing.
        if let [(seq, bytes)] = records {
            debug_assert!(bytes.len() <= RECORD_BYTES_MAX);
            return self
                .log
                .insert(seq.to_key(), bytes.as_slice())
                .map(drop)
                .map_err(io::Error::from);
        }
        let mut batch = sled::Batch::default();
        for (seq, bytes) in records {
            debug_assert!(bytes.len() <= RECORD_BYTES_MAX);
            batch.insert(&seq.to_key(), bytes.as_slice());
        }
        // sled applies a batch atomically across a crash, so a group split into several
        // records is never half present after a restart.
        self.log.apply_batch(batch).map_err(io::Error::from)
    }

    fn syncer(&self) -> SledSyncer {
        SledSyncer(self.durability.clone())
    }
}

/// Syncs the log's sled database: sled's flush covers every insert that finished before it.
pub struct SledSyncer(std::sync::Arc<Durability>);

impl Syncer for SledSyncer {
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
}

/// How long [`open_db`] keeps retrying while sled's file lock is still held. sled 0.34 lets a
/// dropped database's background threads hold the lock briefly after the last handle is gone
/// (its own test build blocks on the lock for the same reason), so a close followed at once by
/// an open, as in a restart, can find it taken. Another live process holding the log keeps it
/// longer than this and is reported.
pub const OPEN_LOCK_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// sled's page cache. The log is written during a sale and read back only at start-up and by
/// checkpoints, so caching what was just written (sled's default keeps up to 1 GiB) only grows
/// the process: inserts append to the last leaf, which stays cached.
pub const SLED_CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// Opens (or creates) sled in `dir` with the settings this crate depends on. Tools and tests
/// that look at the raw trees open it through here too.
pub fn open_db(dir: &Path) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        let result = sled::Config::new()
            .path(dir)
            .segment_size(SLED_SEGMENT_BYTES)
            .cache_capacity(SLED_CACHE_BYTES)
            .open();
        match result {
            Err(sled::Error::Io(error))
                if error.to_string().contains("could not acquire lock")
                    && started.elapsed() < OPEN_LOCK_WAIT_MAX =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// fsyncs a directory, so that files created in it (sled's `db`, `conf`, the directory itself
/// in its parent) are found after a power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
