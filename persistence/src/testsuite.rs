//! Test helpers, behind the `testsuite` feature: [`FakeStorage`], a [`Storage`] that journals
//! every write and sync next to the acknowledgements the test records, can fail a chosen sync,
//! and can hold writes or syncs until the test releases them; and [`check_acks_follow_syncs`], the
//! ordering property every group-commit test asserts; [`incompressible_text`], for records the
//! log's compression cannot shorten.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::Receiver;

use crate::record::{check_events_record, event_count, Seq};
use crate::storage::{Storage, Syncer};

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

/// An in-memory [`Storage`]; its [`Syncer`] shares its state.
pub struct FakeStorage {
    state: Arc<Mutex<FakeState>>,
    /// When set, every write first waits for one message from here (or its disconnection).
    write_gate: Option<Receiver<()>>,
    /// Writes waiting at the gate right now.
    writes_held: Arc<AtomicUsize>,
    /// Events in the records written so far.
    events_written: Arc<AtomicU64>,
}

struct FakeState {
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
    /// Syncs waiting at the gate right now.
    syncs_held: Arc<AtomicUsize>,
}

impl FakeStorage {
    pub fn new(journal: Journal) -> FakeStorage {
        FakeStorage {
            state: Arc::new(Mutex::new(FakeState {
                journal,
                pending: BTreeMap::new(),
                durable: Arc::default(),
                syncs: 0,
                fail_sync_number: None,
                sync_gate: None,
                syncs_held: Arc::default(),
            })),
            write_gate: None,
            writes_held: Arc::default(),
            events_written: Arc::default(),
        }
    }

    /// Makes the `number`th sync (1-based) fail.
    pub fn fail_sync_number(self, number: u64) -> FakeStorage {
        lock(&self.state).fail_sync_number = Some(number);
        self
    }

    /// Holds every sync until the test sends on (or drops) the gate's sender.
    pub fn sync_gate(self, gate: Receiver<()>) -> FakeStorage {
        lock(&self.state).sync_gate = Some(gate);
        self
    }

    /// How many syncs wait at the sync gate right now, readable while the writer runs.
    pub fn syncs_held(&self) -> Arc<AtomicUsize> {
        lock(&self.state).syncs_held.clone()
    }

    /// Holds every write until the test sends on (or drops) the gate's sender.
    pub fn write_gate(mut self, gate: Receiver<()>) -> FakeStorage {
        self.write_gate = Some(gate);
        self
    }

    /// How many writes wait at the write gate right now, readable while the writer runs.
    pub fn writes_held(&self) -> Arc<AtomicUsize> {
        self.writes_held.clone()
    }

    /// How many events the records written so far hold, readable while the writer runs.
    pub fn events_written(&self) -> Arc<AtomicU64> {
        self.events_written.clone()
    }

    /// A handle on the records that survived a sync, readable while the writer runs.
    pub fn durable(&self) -> Arc<Mutex<BTreeMap<Seq, Vec<u8>>>> {
        lock(&self.state).durable.clone()
    }
}

impl Storage for FakeStorage {
    type Syncer = FakeSyncer;

    fn write_records(&mut self, records: &[(Seq, Vec<u8>)]) -> io::Result<()> {
        if let Some(gate) = &self.write_gate {
            self.writes_held.fetch_add(1, Ordering::SeqCst);
            let _ = gate.recv();
            self.writes_held.fetch_sub(1, Ordering::SeqCst);
        }
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let mut state = lock(&self.state);
        state.journal.push(Step::Write {
            first: first.0,
            last: last.0,
        });
        for (seq, bytes) in records {
            let events = check_events_record(bytes)
                .and_then(|payload| event_count(&payload))
                .map_err(|e| io::Error::other(format!("the writer wrote a bad record: {e}")))?;
            self.events_written.fetch_add(events, Ordering::SeqCst);
            state.pending.insert(*seq, bytes.clone());
        }
        Ok(())
    }

    fn syncer(&self) -> FakeSyncer {
        FakeSyncer {
            state: self.state.clone(),
        }
    }
}

/// The [`Syncer`] of a [`FakeStorage`].
pub struct FakeSyncer {
    state: Arc<Mutex<FakeState>>,
}

impl Syncer for FakeSyncer {
    fn sync(&mut self) -> io::Result<()> {
        // Waits outside the lock, so that writes go on while a sync is held.
        let (gate, held) = {
            let state = lock(&self.state);
            (state.sync_gate.clone(), state.syncs_held.clone())
        };
        if let Some(gate) = gate {
            held.fetch_add(1, Ordering::SeqCst);
            let _ = gate.recv();
            held.fetch_sub(1, Ordering::SeqCst);
        }
        // One lock for taking the pending writes and journaling the sync: no write lands in
        // the journal between them, so the journal's SyncOk covers exactly the writes before it.
        let mut state = lock(&self.state);
        state.syncs += 1;
        if state.fail_sync_number == Some(state.syncs) {
            state.journal.push(Step::SyncFailed);
            // Like a kernel that dropped the dirty pages: the pending writes are lost.
            state.pending.clear();
            return Err(io::Error::other("injected sync failure"));
        }
        let mut pending = std::mem::take(&mut state.pending);
        lock(&state.durable).append(&mut pending);
        state.journal.push(Step::SyncOk);
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

/// `len` printable characters that LZ4 cannot shorten (splitmix64's letters from `seed`): for
/// tests of records stored whole, as large as they get.
pub fn incompressible_text(len: usize, seed: u64) -> String {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            char::from(b'!' + ((z ^ (z >> 31)) % 90) as u8)
        })
        .collect()
}
