//! Offline tools over a log directory: [`inspect`] prints every record for a person, [`verify`]
//! checks every checksum without knowing the event type. Both open sled, which takes an
//! exclusive lock, so they run against a stopped process (`conductor wal inspect|verify DIR`).

use std::fmt::Debug;
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{RecordError, WalError};
use crate::record::{check_events_record, check_record, decode_events_payload, event_count, Seq};
use crate::snapshot;
use crate::storage::{open_db, LOG_TREE, SLED_DATA_FILE, SNAPSHOT_TREE};

/// `inspect` prints at most this many events of each record.
pub const INSPECT_EVENTS_PER_RECORD_MAX: usize = 8;

/// `inspect` cuts each event's Debug form to this many characters.
pub const INSPECT_EVENT_CHARS_MAX: usize = 160;

/// `verify` lists at most this many damaged records (it counts them all).
pub const VERIFY_CORRUPT_LISTED_MAX: usize = 100;

/// What `verify` found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub events: u64,
    pub bytes: u64,
    pub first_seq: Option<Seq>,
    pub last_seq: Option<Seq>,
    pub snapshots: u64,
    /// Damaged records, in log order (at most [`VERIFY_CORRUPT_LISTED_MAX`]).
    pub corrupt: Vec<(Seq, RecordError)>,
    pub corrupt_total: u64,
    /// Snapshots that failed their checks, with the reason.
    pub corrupt_snapshots: Vec<(String, String)>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.corrupt_total == 0 && self.corrupt_snapshots.is_empty()
    }
}

fn open_existing(dir: &Path) -> Result<sled::Db, WalError> {
    // sled would happily create an empty database; an offline tool must not.
    if !dir.join(SLED_DATA_FILE).is_file() {
        return Err(WalError::NotFound(dir.to_owned()));
    }
    Ok(open_db(dir)?)
}

/// Checks every record and snapshot in the log at `dir`. Damage is reported in the result, not
/// as an error; errors are for a log that cannot be read at all.
pub fn verify(dir: &Path) -> Result<VerifyReport, WalError> {
    let db = open_existing(dir)?;
    let log = db.open_tree(LOG_TREE)?;
    let mut report = VerifyReport::default();
    let mut expected: Option<Seq> = None;
    for entry in log.iter() {
        let (key, value) = entry?;
        let seq = match Seq::from_key(&key) {
            Ok(seq) => seq,
            Err(reason) => {
                damage(expected.unwrap_or(Seq::ZERO), reason, &mut report);
                continue;
            }
        };
        if let Some(expected) = expected.filter(|&expected| expected != seq) {
            damage(expected, RecordError::Missing, &mut report);
        }
        expected = Some(seq.next());
        report.first_seq.get_or_insert(seq);
        report.last_seq = Some(seq);
        report.records += 1;
        report.bytes += value.len() as u64;
        match check_events_record(&value).and_then(|payload| event_count(&payload)) {
            Ok(count) => report.events += count,
            Err(reason) => damage(seq, reason, &mut report),
        }
    }
    let snapshots = db.open_tree(SNAPSHOT_TREE)?;
    match snapshot::manifests(&snapshots) {
        Ok(manifests) => {
            for (key, manifest) in manifests {
                report.snapshots += 1;
                if let Err(error) = snapshot::read(&snapshots, &key, &manifest) {
                    report.corrupt_snapshots.push((key, error.to_string()));
                }
            }
        }
        Err(error) => report
            .corrupt_snapshots
            .push(("(manifests)".to_owned(), error.to_string())),
    }
    Ok(report)
}

/// Prints every record of the log at `dir`: seq, kind, event count, bytes, whether the checksum
/// holds, and the first events in Debug form (cut to [`INSPECT_EVENT_CHARS_MAX`] characters),
/// then the snapshots.
pub fn inspect<E: Debug + DeserializeOwned>(
    dir: &Path,
    out: &mut impl Write,
) -> Result<(), WalError> {
    let db = open_existing(dir)?;
    let log = db.open_tree(LOG_TREE)?;
    for entry in log.iter() {
        let (key, value) = entry?;
        let seq = match Seq::from_key(&key) {
            Ok(seq) => seq.to_string(),
            Err(reason) => format!("?({reason})"),
        };
        match check_record(&value) {
            Err(reason) => {
                writeln!(
                    out,
                    "seq={seq} bytes={} checksum=bad ({reason})",
                    value.len()
                )?;
            }
            Ok(record) => {
                let payload = match record.events_payload() {
                    Ok(payload) => payload,
                    Err(reason) => {
                        writeln!(
                            out,
                            "seq={seq} kind={} bytes={} checksum=ok ({reason})",
                            record.kind.name(),
                            value.len()
                        )?;
                        continue;
                    }
                };
                let count = event_count(&payload)
                    .map(|count| count.to_string())
                    .unwrap_or_else(|_| "?".to_owned());
                writeln!(
                    out,
                    "seq={seq} kind={} events={count} bytes={} checksum=ok crc={:#010x}",
                    record.kind.name(),
                    value.len(),
                    record.crc
                )?;
                let seq_number = Seq::from_key(&key).unwrap_or(Seq::ZERO);
                match decode_events_payload::<E>(seq_number, &payload) {
                    Ok(events) => {
                        for event in events.iter().take(INSPECT_EVENTS_PER_RECORD_MAX) {
                            writeln!(out, "  {}", truncated(&format!("{event:?}")))?;
                        }
                        if events.len() > INSPECT_EVENTS_PER_RECORD_MAX {
                            writeln!(
                                out,
                                "  ... {} more",
                                events.len() - INSPECT_EVENTS_PER_RECORD_MAX
                            )?;
                        }
                    }
                    Err(error) => writeln!(out, "  (does not decode: {error})")?,
                }
            }
        }
    }
    let snapshots = db.open_tree(SNAPSHOT_TREE)?;
    match snapshot::manifests(&snapshots) {
        Ok(manifests) => {
            for (key, manifest) in manifests {
                let status = match snapshot::read(&snapshots, &key, &manifest) {
                    Ok(_) => "ok".to_owned(),
                    Err(error) => format!("bad ({error})"),
                };
                writeln!(
                    out,
                    "snapshot key={key:?} covered={} bytes={} chunks={} checksum={status}",
                    manifest.covered, manifest.state_bytes, manifest.chunks
                )?;
            }
        }
        Err(error) => writeln!(out, "snapshots unreadable: {error}")?,
    }
    Ok(())
}

fn damage(seq: Seq, reason: RecordError, report: &mut VerifyReport) {
    report.corrupt_total += 1;
    if report.corrupt.len() < VERIFY_CORRUPT_LISTED_MAX {
        report.corrupt.push((seq, reason));
    }
}

fn truncated(text: &str) -> String {
    match text.char_indices().nth(INSPECT_EVENT_CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}
