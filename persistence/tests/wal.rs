//! The log over real sled in a temporary directory: round trip, ordering, reopening, damage,
//! snapshots, compaction, and the lifecycle rules.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{damage_record, event, events, open, recover_all, stored_seqs, Collect, TestEvent};
use conductor_persistence::{
    inspect, verify, RecordError, Recover, Seq, SnapshotView, Wal, WalConfig, WalError,
    APPEND_EVENTS_MAX,
};

#[test]
fn appends_come_back_in_log_order_with_their_seqs() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    let mut acked = Vec::new();
    for first in (0..50).step_by(5) {
        let seq = appender.append_and_wait(events(first, 5)).unwrap();
        acked.push((seq, first));
    }
    // Sequential appends each get their own record.
    assert_eq!(
        acked.iter().map(|(seq, _)| seq.get()).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
    wal.close();

    let (collect, report) = recover_all(dir.path()).unwrap();
    assert_eq!(collect.ids(), (0..50).collect::<Vec<_>>());
    assert_eq!(collect.events, {
        let mut expected = Vec::new();
        for (seq, first) in acked {
            expected.extend(events(first, 5).into_iter().map(|e| (seq, e)));
        }
        expected
    });
    assert_eq!(report.records, 10);
    assert_eq!(report.events, 50);
    assert_eq!(report.truncated_records, 0);
    assert_eq!(report.last_seq, Seq::new(10));
}

#[test]
fn concurrent_producers_keep_their_own_order_and_every_ack_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let acked = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for producer in 0..4u64 {
            let appender = wal.appender();
            let acked = acked.clone();
            scope.spawn(move || {
                for n in 0..100u64 {
                    let id = producer * 1_000_000 + n;
                    let seq = appender.append_and_wait(vec![event(id)]).unwrap();
                    acked.lock().unwrap().push((seq, id));
                }
            });
        }
    });
    let stats = wal.stats();
    assert_eq!(stats.events_written, 400);
    assert_eq!(stats.appends_acknowledged, 400);
    assert!(stats.flushes <= 400);
    wal.close();

    let (collect, _) = recover_all(dir.path()).unwrap();
    let found: BTreeMap<u64, Seq> = collect.events.iter().map(|(s, e)| (e.id, *s)).collect();
    for (seq, id) in acked.lock().unwrap().iter() {
        assert_eq!(found.get(id), Some(seq), "id {id}");
    }
    // Each producer's events appear in the order it appended them.
    for producer in 0..4u64 {
        let mine: Vec<u64> = collect
            .ids()
            .into_iter()
            .filter(|id| id / 1_000_000 == producer)
            .collect();
        assert_eq!(
            mine,
            (0..100)
                .map(|n| producer * 1_000_000 + n)
                .collect::<Vec<_>>()
        );
    }
    // Seqs never go down in replay.
    assert!(collect.events.windows(2).all(|w| w[0].0 <= w[1].0));
}

#[test]
fn a_large_append_is_split_and_acknowledged_with_its_last_record() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    let first = appender.append_and_wait(events(0, 1)).unwrap();
    let last = appender.append_and_wait(events(1, 5_000)).unwrap();
    assert_eq!(first, Seq::new(1));
    assert!(
        last.get() >= 3,
        "5,000 events of ~30 bytes span several 64 KiB records"
    );
    let stats = wal.stats();
    assert_eq!(stats.records_written, last.get());
    assert_eq!(stats.last_batch_records, last.get() - 1);
    wal.close();
    let (collect, report) = recover_all(dir.path()).unwrap();
    assert_eq!(collect.ids(), (0..5_001).collect::<Vec<_>>());
    assert_eq!(report.last_seq, last);
    assert!(collect.events.iter().all(|(seq, _)| *seq <= last));
}

#[test]
fn reopening_continues_after_the_highest_seq() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3u64 {
        let wal = open(dir.path());
        let mut collect = Collect::default();
        wal.recover(&mut collect).unwrap();
        assert_eq!(collect.events.len() as u64, round * 2);
        let appender = wal.appender();
        assert_eq!(
            appender.append_and_wait(events(round * 2, 1)).unwrap(),
            Seq::new(round * 2 + 1)
        );
        assert_eq!(
            appender.append_and_wait(events(round * 2 + 1, 1)).unwrap(),
            Seq::new(round * 2 + 2)
        );
        // No close: drop must drain and flush just the same.
        drop(wal);
    }
    let (collect, _) = recover_all(dir.path()).unwrap();
    assert_eq!(collect.ids(), (0..6).collect::<Vec<_>>());
}

fn write_records(dir: &std::path::Path, count: u64) {
    let wal = open(dir);
    let appender = wal.appender();
    for id in 0..count {
        appender.append_and_wait(vec![event(id)]).unwrap();
    }
    wal.close();
}

#[test]
fn damage_in_the_middle_stops_recovery_naming_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 5);
    // Flip one payload byte of record 3.
    damage_record(dir.path(), 3, |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
    });
    let error = recover_all(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            WalError::Corrupt {
                seq,
                reason: RecordError::ChecksumMismatch { .. }
            } if seq == Seq::new(3)
        ),
        "{error}"
    );
    // Nothing was truncated: the damaged record and those after it are still there.
    assert_eq!(stored_seqs(dir.path()), vec![1, 2, 3, 4, 5]);
    let report = verify(dir.path()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.corrupt_total, 1);
    assert_eq!(report.corrupt[0].0, Seq::new(3));
    assert_eq!(report.records, 5);
    assert_eq!(
        report.events, 4,
        "the damaged record's events are not counted"
    );
}

#[test]
fn a_damaged_tail_record_is_truncated_and_appends_continue_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 5);
    damage_record(dir.path(), 5, |bytes| bytes[HEADER_PAYLOAD_BYTE] ^= 0xff);

    let wal = open(dir.path());
    let mut collect = Collect::default();
    let report = wal.recover(&mut collect).unwrap();
    assert_eq!(report.truncated_records, 1);
    assert_eq!(report.last_seq, Seq::new(4));
    assert_eq!(collect.ids(), vec![0, 1, 2, 3]);
    // The next append takes the truncated seq.
    assert_eq!(
        wal.appender().append_and_wait(events(100, 1)).unwrap(),
        Seq::new(5)
    );
    wal.close();

    let (collect, report) = recover_all(dir.path()).unwrap();
    assert_eq!(collect.ids(), vec![0, 1, 2, 3, 100]);
    assert_eq!(report.truncated_records, 0);
    assert!(verify(dir.path()).unwrap().is_ok());
}

/// The first payload byte of a record (the header is 10 bytes).
const HEADER_PAYLOAD_BYTE: usize = 10;

#[test]
fn a_torn_tail_of_several_records_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 6);
    // Record 5 lost its second half; record 6 is only a header.
    damage_record(dir.path(), 5, |bytes| bytes.truncate(bytes.len() / 2));
    damage_record(dir.path(), 6, |bytes| bytes.truncate(4));
    let (collect, report) = recover_all(dir.path()).unwrap();
    assert_eq!(report.truncated_records, 2);
    assert_eq!(collect.ids(), vec![0, 1, 2, 3]);
    assert_eq!(stored_seqs(dir.path()), vec![1, 2, 3, 4]);
}

#[test]
fn a_damaged_header_in_the_middle_is_corruption_too() {
    for (byte, expected) in [
        (0usize, "unsupported format version"),
        (1, "unknown record kind"),
        (3, "payload bytes"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 3);
        damage_record(dir.path(), 2, |bytes| bytes[byte] ^= 0x80);
        let error = recover_all(dir.path()).unwrap_err();
        assert!(
            matches!(error, WalError::Corrupt { seq, .. } if seq == Seq::new(2)),
            "{error}"
        );
        assert!(error.to_string().contains(expected), "{error}");
    }
}

/// `count` records of twenty similar events each: stored compressed.
fn write_compressed_records(dir: &std::path::Path, count: u64) {
    let wal = open(dir);
    let appender = wal.appender();
    for record in 0..count {
        appender.append_and_wait(events(record * 20, 20)).unwrap();
    }
    wal.close();
    for seq in 1..=count {
        let db = conductor_persistence::storage::open_db(dir).unwrap();
        let log = db
            .open_tree(conductor_persistence::storage::LOG_TREE)
            .unwrap();
        let stored = log.get(Seq::new(seq).to_key()).unwrap().unwrap();
        assert_eq!(
            conductor_persistence::record::check_record(&stored)
                .unwrap()
                .kind,
            conductor_persistence::record::RecordKind::EventsLz4
        );
    }
}

#[test]
fn damage_before_compressed_records_stops_recovery_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_compressed_records(dir.path(), 4);
    damage_record(dir.path(), 2, |bytes| {
        bytes[HEADER_PAYLOAD_BYTE + 6] ^= 0x01
    });
    let error = recover_all(dir.path()).unwrap_err();
    assert!(
        matches!(error, WalError::Corrupt { seq, .. } if seq == Seq::new(2)),
        "{error}"
    );
    assert_eq!(stored_seqs(dir.path()), vec![1, 2, 3, 4]);
}

#[test]
fn a_whole_tail_record_that_does_not_decompress_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    write_compressed_records(dir.path(), 3);
    // Record 3 replaced by one whose checksum holds but whose block is not LZ4: written
    // whole, so not torn; a build that cannot read it must not cut it off.
    damage_record(dir.path(), 3, |bytes| {
        let payload = [200u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff];
        let mut record = vec![1, 4];
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
        record.extend_from_slice(&payload);
        *bytes = record;
    });
    let error = recover_all(dir.path()).unwrap_err();
    assert!(
        matches!(
            error,
            WalError::Corrupt {
                seq,
                reason: RecordError::BadCompression(_)
            } if seq == Seq::new(3)
        ),
        "{error}"
    );
    assert_eq!(stored_seqs(dir.path()), vec![1, 2, 3]);
}

#[test]
fn a_missing_record_in_the_middle_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 4);
    {
        let db = conductor_persistence::storage::open_db(dir.path()).unwrap();
        let log = db
            .open_tree(conductor_persistence::storage::LOG_TREE)
            .unwrap();
        log.remove(Seq::new(2).to_key()).unwrap();
        db.flush().unwrap();
    }
    let error = recover_all(dir.path()).unwrap_err();
    assert!(
        matches!(error, WalError::Corrupt { seq, reason: RecordError::Missing } if seq == Seq::new(2)),
        "{error}"
    );
}

/// A tiny state machine: per entity, the sum of amounts and the number of events.
type Balances = BTreeMap<u32, (i64, u64)>;

fn apply(state: &mut Balances, event: &TestEvent) {
    let entry = state.entry(event.entity).or_default();
    entry.0 += event.amount;
    entry.1 += 1;
}

/// Two snapshots, one per half of the entities, at different seqs: the shape an actor system
/// has, where each stock point snapshots on its own schedule.
#[derive(Default)]
struct Halves {
    state: Balances,
    /// covered seq of the snapshot owning even (0) and odd (1) entities.
    covered: [Seq; 2],
    restored: Vec<String>,
}

impl Recover<TestEvent> for Halves {
    fn restore(&mut self, snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        let half: Balances = snapshot.decode()?;
        let index = match snapshot.key() {
            "even" => 0,
            "odd" => 1,
            other => {
                return Err(WalError::Restore {
                    key: other.to_owned(),
                    message: "unknown snapshot".to_owned(),
                })
            }
        };
        self.covered[index] = snapshot.covered();
        self.state.extend(half);
        self.restored.push(snapshot.key().to_owned());
        Ok(())
    }

    fn replay(&mut self, seq: Seq, event: TestEvent) {
        if seq > self.covered[(event.entity % 2) as usize] {
            apply(&mut self.state, &event);
        }
    }
}

fn half(state: &Balances, parity: u32) -> Balances {
    state
        .iter()
        .filter(|(entity, _)| *entity % 2 == parity)
        .map(|(k, v)| (*k, *v))
        .collect()
}

#[test]
fn snapshots_plus_replay_equal_a_full_replay_and_compaction_keeps_it_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut live = Balances::new();
    {
        let wal = open(dir.path());
        let appender = wal.appender();
        for round in 0..30u64 {
            let batch = events(round * 10, 10);
            let seq = appender.append_and_wait(batch.clone()).unwrap();
            for event in &batch {
                apply(&mut live, event);
            }
            if seq == Seq::new(10) {
                wal.save_snapshot("even", seq, &half(&live, 0)).unwrap();
            }
            if seq == Seq::new(20) {
                wal.save_snapshot("odd", seq, &half(&live, 1)).unwrap();
            }
        }
        let report = wal.compact().unwrap();
        assert_eq!(report.records_removed, 10);
        assert_eq!(report.compacted_through, Seq::new(10));
        // A snapshot below the compaction point would need records that are gone.
        assert!(matches!(
            wal.save_snapshot("even", Seq::new(5), &half(&live, 0)),
            Err(WalError::SnapshotOutOfRange { .. })
        ));
        wal.close();
    }
    assert_eq!(stored_seqs(dir.path()), (11..=30).collect::<Vec<_>>());

    let wal = open(dir.path());
    let mut halves = Halves::default();
    let report = wal.recover(&mut halves).unwrap();
    assert_eq!(halves.restored, vec!["even", "odd"]);
    assert_eq!(report.snapshots, 2);
    assert_eq!(report.replayed_from, Seq::new(11));
    assert_eq!(report.records, 20);
    assert_eq!(halves.state, live);
    // New records continue after 30.
    assert_eq!(
        wal.appender().append_and_wait(events(1_000, 1)).unwrap(),
        Seq::new(31)
    );
    wal.close();
}

#[test]
fn compacting_everything_still_continues_the_seq_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = open(dir.path());
        let last = wal.appender().append_and_wait(events(0, 3)).unwrap();
        // Without snapshots there is nothing to compact.
        assert_eq!(wal.compact().unwrap().records_removed, 0);
        wal.save_snapshot("all", last, &3u64).unwrap();
        assert_eq!(wal.compact().unwrap().records_removed, 1);
        wal.close();
    }
    assert!(stored_seqs(dir.path()).is_empty());
    let wal = open(dir.path());
    let mut collect = Collect::default();
    let report = wal.recover(&mut collect).unwrap();
    assert_eq!(collect.snapshots.len(), 1);
    assert!(collect.events.is_empty());
    assert_eq!(report.last_seq, Seq::new(1));
    assert_eq!(
        wal.appender().append_and_wait(events(3, 1)).unwrap(),
        Seq::new(2)
    );
    wal.close();
}

#[test]
fn a_snapshot_cannot_cover_what_is_not_durable() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    wal.appender().append_and_wait(events(0, 1)).unwrap();
    assert!(matches!(
        wal.save_snapshot("s", Seq::new(2), &0u8),
        Err(WalError::SnapshotOutOfRange { .. })
    ));
    assert!(matches!(
        wal.save_snapshot("a\0b", Seq::new(1), &0u8),
        Err(WalError::InvalidSnapshotKey { .. })
    ));
    wal.save_snapshot("s", Seq::new(1), &0u8).unwrap();
    wal.close();
}

#[test]
fn recovery_after_the_first_appender_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let _appender = wal.appender();
    assert!(matches!(
        wal.recover(&mut Collect::default()),
        Err(WalError::AppendsStarted)
    ));
}

#[test]
fn close_answers_every_queued_append_and_later_ones_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    let answers = Arc::new(Mutex::new(Vec::new()));
    for id in 0..500u64 {
        let answers = answers.clone();
        appender
            .append(vec![event(id)], move |result| {
                answers
                    .lock()
                    .unwrap()
                    .push(result.map_err(|e| e.to_string()));
            })
            .unwrap();
    }
    wal.close();
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), 500);
    assert!(answers.iter().all(|answer| answer.is_ok()), "{answers:?}");
    assert!(matches!(
        appender.append_and_wait(events(9, 1)),
        Err(WalError::Closed)
    ));
    let (collect, _) = recover_all(dir.path()).unwrap();
    assert_eq!(collect.ids(), (0..500).collect::<Vec<_>>());
}

#[test]
fn appends_that_cannot_be_stored_are_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    assert!(matches!(
        appender.append_and_wait(Vec::new()),
        Err(WalError::EmptyAppend)
    ));
    assert!(matches!(
        appender.append_and_wait(events(0, APPEND_EVENTS_MAX as u64 + 1)),
        Err(WalError::AppendTooLarge { .. })
    ));
    let mut huge = event(1);
    huge.note = "x".repeat(70_000);
    assert!(matches!(
        appender.append_and_wait(vec![huge]),
        Err(WalError::EventTooLarge { .. })
    ));
    // The log is unharmed.
    assert_eq!(appender.append_and_wait(events(2, 1)).unwrap(), Seq::new(1));
    wal.close();
}

#[test]
fn invalid_configuration_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = WalConfig {
        queue_appends_max: 0,
        ..WalConfig::default()
    };
    assert!(matches!(
        Wal::<TestEvent>::open(dir.path(), config),
        Err(WalError::InvalidConfig(_))
    ));
}

#[test]
fn inspect_prints_records_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = open(dir.path());
        let appender = wal.appender();
        appender.append_and_wait(events(0, 3)).unwrap();
        let seq = appender.append_and_wait(events(3, 20)).unwrap();
        wal.save_snapshot("counts", seq, &vec![1u32, 2, 3]).unwrap();
        wal.close();
    }
    let mut out = Vec::new();
    inspect::<TestEvent>(dir.path(), &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    // Similar events compress: both records are stored compressed.
    assert!(text.contains("seq=1 kind=events-lz4 events=3"), "{text}");
    assert!(text.contains("seq=2 kind=events-lz4 events=20"), "{text}");
    assert!(text.contains("note: \"event number 0\""), "{text}");
    assert!(text.contains("... 12 more"), "{text}");
    assert!(text.contains("snapshot key=\"counts\" covered=2"), "{text}");
    let report = verify(dir.path()).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(
        (report.records, report.events, report.snapshots),
        (2, 23, 1)
    );

    let missing = dir.path().join("nothing-here");
    assert!(matches!(verify(&missing), Err(WalError::NotFound(_))));
    assert!(!missing.exists(), "verify must not create a log");
}

#[test]
fn a_live_replay_reads_snapshots_and_records_through_a_barrier_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path());
    let appender = wal.appender();
    let mut live = Balances::new();
    for round in 0..10u64 {
        let batch = events(round * 10, 10);
        let seq = appender.append_and_wait(batch.clone()).unwrap();
        for event in &batch {
            apply(&mut live, event);
        }
        if seq == Seq::new(4) {
            wal.save_snapshot("even", seq, &half(&live, 0)).unwrap();
            wal.save_snapshot("odd", seq, &half(&live, 1)).unwrap();
        }
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    appender
        .try_barrier(move |result| {
            let _ = tx.send(result);
        })
        .unwrap();
    let through = rx.recv().unwrap().unwrap();
    assert_eq!(through, Seq::new(10));
    // Appends after the barrier are not part of the replay.
    appender.append_and_wait(events(5_000, 3)).unwrap();
    let mut halves = Halves::default();
    let report = wal.replay_through(through, &mut halves).unwrap();
    assert_eq!(halves.state, live);
    assert_eq!(report.snapshots, 2);
    assert_eq!(report.replayed_from, Seq::new(5));
    assert_eq!(report.last_seq, Seq::new(10));
    // Nothing beyond what is durable.
    assert!(matches!(
        wal.replay_through(Seq::new(12), &mut Halves::default()),
        Err(WalError::ReplayBeyondDurable { .. })
    ));
    wal.close();
}
