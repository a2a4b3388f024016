//! The data file is written with zeros ahead of the log (vendor/README.md, sled patch 4), so
//! the log's writes overwrite allocated blocks instead of growing the file; the log must read
//! back whole over such a file, however often it is reopened.

mod common;

use std::os::unix::io::AsRawFd;
use std::path::Path;

use common::{events, open, recover_all, TestEvent};
use conductor_persistence::storage::{SLED_DATA_FILE, SLED_SEGMENT_BYTES};
use conductor_persistence::Wal;

/// Appends `records` records of 1,000 events each from `first` on, each waited for.
fn append_records(wal: &Wal<TestEvent>, first: u64, records: u64) {
    let appender = wal.appender();
    for record in 0..records {
        appender
            .append_and_wait(events(first + record * 1_000, 1_000))
            .expect("append");
    }
}

/// The data file's length and the offset of its first hole (its length when it has none).
fn length_and_first_hole(dir: &Path) -> (u64, u64) {
    let file = std::fs::File::open(dir.join(SLED_DATA_FILE)).expect("open sled's data file");
    let length = file.metadata().expect("metadata").len();
    // SAFETY: lseek on an open descriptor; it reads no memory of ours.
    let hole = unsafe { libc::lseek(file.as_raw_fd(), 0, libc::SEEK_HOLE) };
    assert!(hole >= 0, "SEEK_HOLE failed");
    (length, hole as u64)
}

#[test]
fn the_data_file_is_written_through_the_segment_after_the_log_s_end() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    append_records(&wal, 0, 20);
    let segment = SLED_SEGMENT_BYTES as u64;
    // The zeros go out paced, on a thread of their own: give them time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let (length, hole) = loop {
        let (length, hole) = length_and_first_hole(dir.path());
        if (length % segment == 0 && length >= 2 * segment) || std::time::Instant::now() > deadline
        {
            break (length, hole);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    wal.close();
    // The zeros reach the end of the segment after the one the log ends in, and they are
    // written blocks (a sparse file would leave the log's syncs growing extents again).
    assert_eq!(length % segment, 0, "length {length}");
    assert!(length >= 2 * segment, "length {length}");
    assert_eq!(hole, length, "a hole at {hole} of {length}");
}

#[test]
fn a_log_over_zeroed_segments_reads_back_whole_after_every_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = 0;
    // Each round writes more than a segment, so the log runs into zeros written in the round
    // before, and each reopen recovers over zeroed segments at the file's end.
    for _ in 0..3 {
        let wal = open(dir.path());
        append_records(&wal, expected, 250);
        wal.close();
        expected += 250 * 1_000;
        let (collect, report) = recover_all(dir.path()).unwrap();
        assert_eq!(collect.ids(), (0..expected).collect::<Vec<_>>());
        assert_eq!(report.truncated_records, 0);
    }
}
