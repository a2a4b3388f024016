//! [`Wal`]: the log over sled, tying together the writer thread, snapshots, compaction and
//! recovery.
//!
//! Lifecycle: [`Wal::open`], then [`Wal::recover`] (optional, at most before the first
//! appender), then [`Wal::appender`] for producers, and [`Wal::close`] (or drop) at shutdown.
//! While producers append, [`Wal::replay_through`] replays up to a durable seq (a barrier's,
//! from [`crate::Appender::try_barrier`]) to rebuild a failed actor's state.
//! The writer thread is spawned by `open` but takes its first sequence number only when the
//! first appender is handed out, so that a tail truncated by recovery is never written over
//! with a gap.

use std::fs;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::{info, warn};

use crate::config::WalConfig;
use crate::error::WalError;
use crate::record::Seq;
use crate::recovery::{self, Recover, RecoveryReport, Trees};
use crate::snapshot;
use crate::storage::{
    open_db, sync_dir, Durability, SledStorage, LOG_TREE, META_TREE, SNAPSHOT_TREE,
};
use crate::writer::{Appender, GroupCommit, Shared, WalStats};

/// Key in the meta tree: the seq through which compaction removed records (big-endian u64).
const COMPACTED_THROUGH_KEY: &[u8] = b"compacted_through";

/// The most records compaction removes in one sled batch, so that compacting a long log does
/// not build one huge batch in memory or hold sled's write lock for long.
pub const COMPACT_BATCH_RECORDS_MAX: usize = 4096;

/// What a compaction removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactReport {
    pub records_removed: u64,
    /// Records at or below this seq are gone (the oldest snapshot's covered seq).
    pub compacted_through: Seq,
    pub elapsed: Duration,
}

/// The durable write-ahead log of events `E`.
pub struct Wal<E> {
    dir: PathBuf,
    log: sled::Tree,
    snapshots: sled::Tree,
    meta: sled::Tree,
    durability: Arc<Durability>,
    shared: Arc<Shared>,
    writer: Option<GroupCommit<E>>,
    /// Before the first appender: the seq the writer will start at, and the channel that tells
    /// it. `None` once appends started.
    start: Mutex<Option<(Seq, Sender<Seq>)>>,
    /// Serialises snapshot saves and compaction, which read and then write several keys.
    maintenance: Mutex<()>,
    /// Held so that sled stays open as long as the log (the trees keep it alive too, but this
    /// states it); declared last so that it drops after the writer has stopped.
    _db: sled::Db,
    _events: PhantomData<fn(E)>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The data behind our mutexes stays consistent across a panic (an Option taken, or
    // nothing at all), so a poisoned mutex is still usable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E> Wal<E>
where
    E: Serialize + DeserializeOwned + Send + 'static,
{
    /// Opens the log in `dir`, creating it if needed, and spawns the writer thread (which waits
    /// for the first [`Wal::appender`]).
    pub fn open(dir: &Path, config: WalConfig) -> Result<Wal<E>, WalError> {
        config.validate()?;
        let created = !dir.exists();
        fs::create_dir_all(dir)?;
        let db = open_db(dir)?;
        // sled may just have created `db` and `conf`: make their directory entries durable,
        // and the directory's own entry in its parent if we created it.
        sync_dir(dir)?;
        if created {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let log = db.open_tree(LOG_TREE)?;
        let snapshots = db.open_tree(SNAPSHOT_TREE)?;
        let meta = db.open_tree(META_TREE)?;
        let durability = Arc::new(Durability::new(db.clone(), dir)?);

        let last_record = match log.last()? {
            Some((key, _)) => Seq::from_key(&key).map_err(|reason| WalError::Corrupt {
                seq: Seq::ZERO,
                reason,
            })?,
            None => Seq::ZERO,
        };
        let compacted_through = read_compacted_through(&meta)?;
        let newest_covered = snapshot::manifests(&snapshots)?
            .iter()
            .map(|(_, manifest)| Seq::new(manifest.covered))
            .max()
            .unwrap_or(Seq::ZERO);
        // After compaction the log can be empty while snapshots cover records: new records must
        // still come after everything ever written.
        let durable = last_record.max(compacted_through).max(newest_covered);
        let shared = Arc::new(Shared::new(durable));
        let storage = SledStorage::new(log.clone(), durability.clone());
        let (writer, go) = GroupCommit::spawn(storage, &config, shared.clone())?;
        info!(dir = %dir.display(), last_record = %last_record, next_seq = %durable.next(), "wal opened");
        Ok(Wal {
            dir: dir.to_owned(),
            log,
            snapshots,
            meta,
            durability,
            shared,
            writer: Some(writer),
            start: Mutex::new(Some((durable.next(), go))),
            maintenance: Mutex::new(()),
            _db: db,
            _events: PhantomData,
        })
    }

    /// Restores snapshots and replays the log into `target`. Must run before the first
    /// [`Wal::appender`] (it returns [`WalError::AppendsStarted`] after), so that replay sees
    /// a log nobody writes to. Truncates a corrupt tail; see [`crate::recovery`].
    pub fn recover(&self, target: &mut impl Recover<E>) -> Result<RecoveryReport, WalError> {
        let mut start = lock(&self.start);
        let Some((next_seq, _)) = start.as_mut() else {
            return Err(WalError::AppendsStarted);
        };
        let result = recovery::run(
            Trees {
                log: &self.log,
                snapshots: &self.snapshots,
                durability: &self.durability,
            },
            read_compacted_through(&self.meta)?,
            recovery::Reach::Recover,
            target,
        );
        self.note_poison();
        let report = result?;
        if report.truncated_records > 0 {
            // Continue right after the last intact record, so that the log has no gap.
            let durable = report.last_seq.max(self.newest_covered()?);
            *next_seq = durable.next();
            self.shared
                .durable_seq
                .store(durable.get(), Ordering::SeqCst);
        }
        Ok(report)
    }

    /// Restores snapshots and replays the log up to and including `through` into `target`,
    /// while appends go on: how a live system rebuilds one actor's state from what is durable.
    /// `through` must be durable (a barrier's seq). Changes nothing: a damaged record is
    /// [`WalError::Corrupt`]. Snapshot saves and compaction wait until it is done, so that
    /// nothing it reads is removed under it.
    pub fn replay_through(
        &self,
        through: Seq,
        target: &mut impl Recover<E>,
    ) -> Result<RecoveryReport, WalError> {
        let _maintenance = lock(&self.maintenance);
        let durable = Seq::new(self.shared.durable_seq.load(Ordering::SeqCst));
        if through > durable {
            return Err(WalError::ReplayBeyondDurable { through, durable });
        }
        // A snapshot saved after the barrier would bring in what came after it.
        let newest = self.newest_covered()?;
        if newest > through {
            return Err(WalError::ReplayBehindSnapshot { through, newest });
        }
        recovery::run(
            Trees {
                log: &self.log,
                snapshots: &self.snapshots,
                durability: &self.durability,
            },
            read_compacted_through(&self.meta)?,
            recovery::Reach::Through(through),
            target,
        )
    }

    /// A handle for producers. The first call starts the writer: after it, `recover` refuses.
    pub fn appender(&self) -> Appender<E> {
        let writer = self.writer.as_ref().expect("the writer lives until close");
        if let Some((next_seq, go)) = lock(&self.start).take() {
            // The thread only ends after the Wal drops, so it is still waiting for this.
            if go.send(next_seq).is_err() {
                warn!("wal writer thread is gone; appends will fail with closed");
            }
        }
        writer.appender()
    }

    /// Stores `state` under `key` as a snapshot including every event up to and including seq
    /// `covered`, replacing the previous snapshot of that key, and makes it durable before
    /// returning. `covered` must be durable already and not below the compaction point.
    pub fn save_snapshot(
        &self,
        key: &str,
        covered: Seq,
        state: &impl Serialize,
    ) -> Result<(), WalError> {
        let _maintenance = lock(&self.maintenance);
        if self.durability.is_poisoned() || self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(WalError::Poisoned);
        }
        let floor = read_compacted_through(&self.meta)?;
        let durable = Seq::new(self.shared.durable_seq.load(Ordering::SeqCst));
        if covered < floor || covered > durable {
            return Err(WalError::SnapshotOutOfRange {
                key: key.to_owned(),
                covered,
                floor,
                durable,
            });
        }
        let manifest = snapshot::write(&self.snapshots, key, covered, state)?;
        self.sync()?;
        info!(key, covered = %covered, bytes = manifest.state_bytes, chunks = manifest.chunks, "snapshot saved");
        Ok(())
    }

    /// Removes the log records that every snapshot covers (seq at or below the smallest
    /// `covered`). Without snapshots it removes nothing.
    pub fn compact(&self) -> Result<CompactReport, WalError> {
        let _maintenance = lock(&self.maintenance);
        let started = Instant::now();
        if self.durability.is_poisoned() || self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(WalError::Poisoned);
        }
        let floor = read_compacted_through(&self.meta)?;
        let Some(oldest_covered) = snapshot::manifests(&self.snapshots)?
            .iter()
            .map(|(_, manifest)| Seq::new(manifest.covered))
            .min()
        else {
            return Ok(CompactReport {
                records_removed: 0,
                compacted_through: floor,
                elapsed: started.elapsed(),
            });
        };
        let through = oldest_covered.max(floor);
        // Record the compaction point first and make it durable: if we crash half-way, replay
        // still starts after it and the leftover records below it are ignored.
        self.meta.insert(COMPACTED_THROUGH_KEY, &through.to_key())?;
        self.sync()?;
        let mut records_removed = 0u64;
        loop {
            let mut batch = sled::Batch::default();
            let mut in_batch = 0;
            for entry in self
                .log
                .range(..=through.to_key())
                .take(COMPACT_BATCH_RECORDS_MAX)
            {
                let (key, _) = entry?;
                batch.remove(key);
                in_batch += 1;
            }
            if in_batch == 0 {
                break;
            }
            self.log.apply_batch(batch)?;
            records_removed += in_batch as u64;
        }
        self.sync()?;
        let report = CompactReport {
            records_removed,
            compacted_through: through,
            elapsed: started.elapsed(),
        };
        info!(records_removed, compacted_through = %through, elapsed_ms = report.elapsed.as_millis() as u64, "log compacted");
        Ok(report)
    }

    /// The writer's counters.
    pub fn stats(&self) -> WalStats {
        self.shared.stats()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes and flushes every append queued so far, stops the writer thread and closes sled.
    /// Appends made through surviving appenders afterwards get [`WalError::Closed`].
    pub fn close(mut self) {
        self.stop();
    }

    fn newest_covered(&self) -> Result<Seq, WalError> {
        Ok(snapshot::manifests(&self.snapshots)?
            .iter()
            .map(|(_, manifest)| Seq::new(manifest.covered))
            .max()
            .unwrap_or(Seq::ZERO))
    }

    /// Makes sled durable; a failure poisons the whole log.
    fn sync(&self) -> Result<(), WalError> {
        let result = self.durability.sync();
        self.note_poison();
        result.map_err(|error| WalError::failed(&error))
    }

    /// Carries a failed sync outside the writer over to the appenders.
    fn note_poison(&self) {
        if self.durability.is_poisoned() {
            self.shared.poisoned.store(true, Ordering::SeqCst);
        }
    }
}

impl<E> Wal<E> {
    fn stop(&mut self) {
        // Dropping the start channel releases a writer that never got an appender.
        drop(lock(&self.start).take());
        if let Some(writer) = self.writer.take() {
            writer.close();
        }
    }
}

impl<E> Drop for Wal<E> {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_compacted_through(meta: &sled::Tree) -> Result<Seq, WalError> {
    match meta.get(COMPACTED_THROUGH_KEY)? {
        Some(bytes) => Seq::from_key(&bytes).map_err(|reason| WalError::Corrupt {
            seq: Seq::ZERO,
            reason,
        }),
        None => Ok(Seq::ZERO),
    }
}
