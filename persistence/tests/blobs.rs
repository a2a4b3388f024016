//! sled 0.34 writes any message above a quarter segment as a separate blob file that it never
//! fsyncs. These tests write large batches and large snapshots and check that no blob appears,
//! which is what `RECORD_BYTES_MAX` and `SLED_SEGMENT_BYTES` are chosen for.

mod common;

use std::path::Path;

use common::{open, recover_all, TestEvent};
use conductor_persistence::testsuite::incompressible_text;
use conductor_persistence::Seq;

fn blob_files(dir: &Path) -> Vec<String> {
    match std::fs::read_dir(dir.join("blobs")) {
        Ok(entries) => entries
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(error) => panic!("reading blobs/: {error}"),
    }
}

/// About 100 encoded bytes that do not compress, so the log's records are stored whole, as
/// large as they get.
fn fat_event(id: u64) -> TestEvent {
    TestEvent {
        entity: (id % 13) as u32,
        id,
        amount: id as i64,
        note: incompressible_text(91, id),
    }
}

#[test]
fn large_batches_and_large_snapshots_write_no_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    // One 20k-event batch (about 2 MB, 30+ records), then enough further records that sled
    // consolidates and splits full leaves of 64 KiB values several times.
    let batch: Vec<TestEvent> = (0..20_000).map(fat_event).collect();
    let mut last = appender.append_and_wait(batch).unwrap();
    assert!(last.get() > 30);
    for round in 1..=5u64 {
        let batch: Vec<TestEvent> = (round * 20_000..(round + 1) * 20_000)
            .map(fat_event)
            .collect();
        last = appender.append_and_wait(batch).unwrap();
    }
    // A 3 MB snapshot, saved twice so that its chunks' leaves are rewritten.
    let state: Vec<u64> = (0..400_000).collect();
    wal.save_snapshot("big", last, &state).unwrap();
    wal.save_snapshot("big", last, &state).unwrap();
    wal.close();
    assert_eq!(blob_files(dir.path()), Vec::<String>::new());

    let (collect, report) = recover_all(dir.path()).unwrap();
    assert_eq!(report.snapshots, 1);
    assert_eq!(collect.snapshots[0].1, last);
    assert_eq!(collect.events.len(), 0, "the snapshot covers every record");
    let decoded: Vec<u64> =
        bincode_decode(&collect.snapshots[0].2).expect("snapshot state decodes");
    assert_eq!(decoded, state);
    assert_eq!(blob_files(dir.path()), Vec::<String>::new());
    assert!(last > Seq::new(150));
}

fn bincode_decode(bytes: &[u8]) -> Option<Vec<u64>> {
    let (value, used) = bincode::serde::decode_from_slice::<Vec<u64>, _>(
        bytes,
        conductor_persistence::record::bincode_config::<
            { conductor_persistence::SNAPSHOT_BYTES_MAX },
        >(),
    )
    .ok()?;
    (used == bytes.len()).then_some(value)
}
