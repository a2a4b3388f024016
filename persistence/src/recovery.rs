//! Recovery: restore every snapshot, then replay the log after the oldest one, through the
//! [`Recover`] trait; truncate a corrupt tail, stop at corruption in the middle. A live replay
//! ([`crate::Wal::replay_through`]) reads only through a durable seq, changes nothing, and
//! treats any damaged record as corruption.
//!
//! A record that fails its checks is a torn or corrupt *tail* when no intact record follows it:
//! those records are removed with a warning (they can only be the last flush group, which was
//! never acknowledged unless the disk lied). If an intact record follows, the damage is in the
//! middle of acknowledged history and recovery stops with [`WalError::Corrupt`] naming the seq.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::error::{RecordError, WalError};
use crate::record::{check_events_record, check_record, decode_events_payload, Seq};
use crate::snapshot::{self, SnapshotView};
use crate::storage::Durability;

/// Log progress every this many records.
pub const RECOVERY_PROGRESS_RECORDS: u64 = 64 * 1024;

/// The most records a tail truncation may remove. A torn tail is at most one flush group; more
/// damaged records than this at the end is not a torn write but a damaged disk, and is reported
/// as corruption for a person to look at.
pub const TAIL_TRUNCATE_RECORDS_MAX: usize = 4096;

/// What recovery feeds the state back into.
pub trait Recover<E> {
    /// Called once per stored snapshot, before any replay. `snapshot.decode::<S>()` decodes the
    /// state saved with [`crate::Wal::save_snapshot`].
    fn restore(&mut self, snapshot: SnapshotView<'_>) -> Result<(), WalError>;

    /// Called for every event in the records after the oldest snapshot, in log order. Events
    /// at or below a snapshot's `covered` seq are already in that snapshot: the implementer
    /// skips them for that snapshot's entities.
    fn replay(&mut self, seq: Seq, event: E);
}

/// What a recovery found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    pub snapshots: u64,
    /// Records replayed.
    pub records: u64,
    /// Events replayed.
    pub events: u64,
    /// The first seq replayed from: one past the oldest snapshot's covered seq, or past the
    /// compaction point.
    pub replayed_from: Seq,
    /// The last intact record (after truncation), or the covered seq when no record is left.
    pub last_seq: Seq,
    /// Corrupt tail records removed.
    pub truncated_records: u64,
    pub elapsed: Duration,
}

pub(crate) struct Trees<'a> {
    pub(crate) log: &'a sled::Tree,
    pub(crate) snapshots: &'a sled::Tree,
    pub(crate) durability: &'a Durability,
}

/// How far a replay reads, and what it may do about a damaged record.
#[derive(Clone, Copy)]
pub(crate) enum Reach {
    /// At start-up: to the end of the log, truncating a corrupt tail.
    Recover,
    /// While appends go on: up to and including this seq, which is durable, changing nothing.
    /// A damaged record is corruption, since everything read was acknowledged.
    Through(Seq),
}

pub(crate) fn run<E: DeserializeOwned>(
    trees: Trees<'_>,
    compacted_through: Seq,
    reach: Reach,
    target: &mut impl Recover<E>,
) -> Result<RecoveryReport, WalError> {
    let started = Instant::now();
    let manifests = snapshot::manifests(trees.snapshots)?;
    let mut oldest_covered: Option<Seq> = None;
    for (key, manifest) in &manifests {
        let stored = snapshot::read(trees.snapshots, key, manifest)?;
        info!(key = %stored.key, covered = %stored.covered, bytes = stored.state.len(), "restoring snapshot");
        target.restore(stored.view())?;
        oldest_covered = Some(oldest_covered.map_or(stored.covered, |seq| seq.min(stored.covered)));
    }
    let replay_after = oldest_covered.unwrap_or(Seq::ZERO).max(compacted_through);
    let replayed_from = replay_after.next();
    info!(snapshots = manifests.len(), replayed_from = %replayed_from, "replaying log");

    let mut report = RecoveryReport {
        snapshots: manifests.len() as u64,
        records: 0,
        events: 0,
        replayed_from,
        last_seq: replay_after,
        truncated_records: 0,
        elapsed: Duration::ZERO,
    };
    let mut expected = replayed_from;
    let mut next_progress = RECOVERY_PROGRESS_RECORDS;
    for entry in trees.log.range(replayed_from.to_key()..) {
        let (key, value) = entry?;
        let seq = Seq::from_key(&key).map_err(|reason| WalError::Corrupt {
            seq: expected,
            reason,
        })?;
        if matches!(reach, Reach::Through(through) if seq > through) {
            break;
        }
        if seq != expected {
            return Err(WalError::Corrupt {
                seq: expected,
                reason: RecordError::Missing,
            });
        }
        let payload = match check_events_record(&value) {
            Ok(payload) => payload,
            Err(reason) => match reach {
                // Only damage is a torn tail: a record whose checksum holds was written whole,
                // so one that still does not read (it does not decompress, say) is acknowledged
                // history that this build cannot read, not something to cut off.
                Reach::Recover if !written_whole(&value) => {
                    report.truncated_records = truncate_tail(&trees, seq, reason)?;
                    break;
                }
                Reach::Recover | Reach::Through(_) => {
                    return Err(WalError::Corrupt { seq, reason })
                }
            },
        };
        let events: Vec<E> = decode_events_payload(seq, &payload)?;
        report.records += 1;
        report.events += events.len() as u64;
        for event in events {
            target.replay(seq, event);
        }
        report.last_seq = seq;
        if report.records >= next_progress {
            next_progress += RECOVERY_PROGRESS_RECORDS;
            info!(records = report.records, events = report.events, seq = %seq, "replay progress");
        }
        expected = seq.next();
    }
    report.elapsed = started.elapsed();
    info!(
        snapshots = report.snapshots,
        records = report.records,
        events = report.events,
        last_seq = %report.last_seq,
        truncated_records = report.truncated_records,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "recovery finished"
    );
    Ok(report)
}

/// Whether a stored record's header and checksum hold: it was written whole, whatever it holds.
fn written_whole(value: &[u8]) -> bool {
    check_record(value).is_ok()
}

/// `first` failed its checks. Removes it and everything after it if nothing after it is
/// intact; otherwise reports `first` as corrupt.
fn truncate_tail(trees: &Trees<'_>, first: Seq, reason: RecordError) -> Result<u64, WalError> {
    let mut doomed = Vec::new();
    for entry in trees.log.range(first.to_key()..) {
        let (key, value) = entry?;
        if written_whole(&value) {
            // An intact record after a damaged one: acknowledged history is damaged.
            return Err(WalError::Corrupt { seq: first, reason });
        }
        if doomed.len() == TAIL_TRUNCATE_RECORDS_MAX {
            return Err(WalError::Corrupt { seq: first, reason });
        }
        doomed.push(key);
    }
    let count = doomed.len() as u64;
    warn!(first_seq = %first, records = count, %reason, "truncating corrupt log tail");
    let mut batch = sled::Batch::default();
    for key in doomed {
        batch.remove(key);
    }
    trees.log.apply_batch(batch)?;
    trees
        .durability
        .sync()
        .map_err(|error| WalError::failed(&error))?;
    Ok(count)
}
