//! Test helpers, behind the `testsuite` feature: [`FakeStorage`], a [`Storage`] that journals
//! every write and sync next to the acknowledgements the test records, can fail a chosen sync,
//! and can hold syncs until the test releases them; and [`check_acks_follow_syncs`], the
//! ordering property every group-commit test asserts.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Receiver;

use crate::record::Seq;
use crate::storage::Storage;

/// One thing that happened, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Records `first..=last` were written (not yet durable).
    Write {
        first: Seq,
        last: Seq,
    },
    SyncOk,
    SyncFailed,
    /// A callback ran with `Ok(seq)`.
    AckOk(Seq),
    /// A callback ran with an error.
    AckErr(String),
}

/// A shared, ordered log of [`Step`]s.
#[derive(Debug, Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Step>>>);

impl Journal {
    pub fn push(&self, step: Step) {
        lock(&self.0).push(step);
    }

    pub fn steps(&self) -> Vec<Step> {
        lock(&self.0).clone()
    }

    /// Records how an append's callback was answered.
    pub fn ack(&self, result: &Result<Seq, crate::WalError>) {
        self.push(match result {
            Ok(seq) => Step::AckOk(*seq),
            Err(error) => Step::AckErr(error.to_string()),
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// An in-memory [`Storage`].
pub struct FakeStorage {
    journal: Journal,
    /// Written but not yet synced.
    pending: BTreeMap<Seq, Vec<u8>>,
    /// Survived a successful sync: what a crash would leave.
    durable: Arc<Mutex<BTreeMap<Seq, Vec<u8>>>>,
    syncs: u64,
    /// Fail the sync with this 1-based number.
    fail_sync_number: Option<u64>,
    /// When set, every sync first waits for one message from here (or its disconnection).
    sync_gate: Option<Receiver<()>>,
}

impl FakeStorage {
    pub fn new(journal: Journal) -> FakeStorage {
        FakeStorage {
            journal,
            pending: BTreeMap::new(),
            durable: Arc::default(),
            syncs: 0,
            fail_sync_number: None,
            sync_gate: None,
        }
    }

    /// Makes the `number`th sync (1-based) fail.
    pub fn fail_sync_number(mut self, number: u64) -> FakeStorage {
        self.fail_sync_number = Some(number);
        self
    }

    /// Holds every sync until the test sends on (or drops) the gate's sender.
    pub fn sync_gate(mut self, gate: Receiver<()>) -> FakeStorage {
        self.sync_gate = Some(gate);
        self
    }

    /// A handle on the records that survived a sync, readable while the writer runs.
    pub fn durable(&self) -> Arc<Mutex<BTreeMap<Seq, Vec<u8>>>> {
        self.durable.clone()
    }
}

impl Storage for FakeStorage {
    fn write_records(&mut self, records: &[(Seq, Vec<u8>)]) -> io::Result<()> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        self.journal.push(Step::Write {
            first: first.0,
            last: last.0,
        });
        for (seq, bytes) in records {
            self.pending.insert(*seq, bytes.clone());
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(gate) = &self.sync_gate {
            let _ = gate.recv();
        }
        self.syncs += 1;
        if self.fail_sync_number == Some(self.syncs) {
            self.journal.push(Step::SyncFailed);
            // Like a kernel that dropped the dirty pages: the pending writes are lost.
            self.pending.clear();
            return Err(io::Error::other("injected sync failure"));
        }
        lock(&self.durable).append(&mut self.pending);
        self.journal.push(Step::SyncOk);
        Ok(())
    }
}

/// Checks the group-commit ordering in `steps`: every `AckOk(seq)` comes after a `SyncOk` that
/// follows the `Write` holding `seq`, acknowledged seqs never go down, and nothing is
/// acknowledged after a failed sync. Returns a description of the first violation.
pub fn check_acks_follow_syncs(steps: &[Step]) -> Result<(), String> {
    // The highest seq written before the latest successful sync.
    let mut synced_through: Option<Seq> = None;
    let mut written_through: Option<Seq> = None;
    let mut last_acked: Option<Seq> = None;
    let mut failed = false;
    for (index, step) in steps.iter().enumerate() {
        match step {
            Step::Write { last, .. } => written_through = Some(*last),
            Step::SyncOk => {
                if failed {
                    return Err(format!("step {index}: a sync succeeded after one failed"));
                }
                synced_through = written_through;
            }
            Step::SyncFailed => failed = true,
            Step::AckOk(seq) => {
                if failed {
                    return Err(format!(
                        "step {index}: seq {seq} acknowledged after a failed sync"
                    ));
                }
                if !matches!(synced_through, Some(synced) if *seq <= synced) {
                    return Err(format!(
                        "step {index}: seq {seq} acknowledged before its sync"
                    ));
                }
                if last_acked.is_some_and(|last| *seq < last) {
                    return Err(format!(
                        "step {index}: seq {seq} acknowledged out of log order"
                    ));
                }
                last_acked = Some(*seq);
            }
            Step::AckErr(_) => {}
        }
    }
    Ok(())
}
