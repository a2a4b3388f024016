//! Helpers shared by the integration tests: a small event type, a `Recover` that collects what
//! it is given, and a way to damage stored records through sled directly.
#![allow(dead_code)] // Each test binary uses a different subset.

use std::path::Path;

use conductor_persistence::storage::{open_db, LOG_TREE};
use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TestEvent {
    pub entity: u32,
    pub id: u64,
    pub amount: i64,
    pub note: String,
}

pub fn event(id: u64) -> TestEvent {
    TestEvent {
        entity: (id % 7) as u32,
        id,
        amount: (id as i64 % 11) - 5,
        note: format!("event number {id}"),
    }
}

/// Events `first..first + count`.
pub fn events(first: u64, count: u64) -> Vec<TestEvent> {
    (first..first + count).map(event).collect()
}

/// Everything recovery handed over, in order.
#[derive(Default, Debug)]
pub struct Collect {
    pub snapshots: Vec<(String, Seq, Vec<u8>)>,
    pub events: Vec<(Seq, TestEvent)>,
}

impl Recover<TestEvent> for Collect {
    fn restore(&mut self, snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        self.snapshots.push((
            snapshot.key().to_owned(),
            snapshot.covered(),
            snapshot.bytes().to_vec(),
        ));
        Ok(())
    }

    fn replay(&mut self, seq: Seq, event: TestEvent) {
        self.events.push((seq, event));
    }
}

impl Collect {
    pub fn ids(&self) -> Vec<u64> {
        self.events.iter().map(|(_, event)| event.id).collect()
    }
}

pub fn open(dir: &Path) -> Wal<TestEvent> {
    Wal::open(dir, WalConfig::default()).expect("open wal")
}

/// Opens, recovers everything, closes.
pub fn recover_all(
    dir: &Path,
) -> Result<(Collect, conductor_persistence::RecoveryReport), WalError> {
    let wal = open(dir);
    let mut collect = Collect::default();
    let report = wal.recover(&mut collect)?;
    wal.close();
    Ok((collect, report))
}

/// Rewrites the stored record `seq` of a closed log with `damage`.
pub fn damage_record(dir: &Path, seq: u64, damage: impl FnOnce(&mut Vec<u8>)) {
    let db = open_db(dir).expect("open sled");
    let log = db.open_tree(LOG_TREE).expect("open log tree");
    let key = Seq::new(seq).to_key();
    let mut bytes = log.get(key).expect("read").expect("record exists").to_vec();
    damage(&mut bytes);
    log.insert(key, bytes).expect("write");
    db.flush().expect("flush");
}

/// Record seqs present in the log of a closed log.
pub fn stored_seqs(dir: &Path) -> Vec<u64> {
    let db = open_db(dir).expect("open sled");
    let log = db.open_tree(LOG_TREE).expect("open log tree");
    log.iter()
        .keys()
        .map(|key| Seq::from_key(&key.expect("key")).expect("seq").get())
        .collect()
}
