//! The group-commit writer over a fake storage that journals writes, syncs and acks: ordering,
//! batching, backpressure, and fail-stop after a failed sync.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{event, events, TestEvent};
use conductor_persistence::testsuite::{check_acks_follow_syncs, FakeStorage, Journal, Step};
use conductor_persistence::writer::WRITTEN_BATCHES_QUEUED_MAX;
use conductor_persistence::{GroupCommit, Seq, WalConfig, WalError};

fn start(storage: FakeStorage, config: WalConfig) -> GroupCommit<TestEvent> {
    GroupCommit::start(storage, Seq::new(1), &config).unwrap()
}

/// A writer over a fake storage whose writes wait at a gate: each send on `release` lets one
/// through (dropping it lets all through), and `held` counts the writes waiting there.
struct Gated {
    journal: Journal,
    release: crossbeam_channel::Sender<()>,
    held: Arc<AtomicUsize>,
    writer: GroupCommit<TestEvent>,
}

fn gated(config: WalConfig) -> Gated {
    let journal = Journal::default();
    let (release, gate) = crossbeam_channel::unbounded();
    let storage = FakeStorage::new(journal.clone()).write_gate(gate);
    let held = storage.writes_held();
    let writer = start(storage, config);
    Gated {
        journal,
        release,
        held,
        writer,
    }
}

#[test]
fn no_ack_precedes_the_sync_of_its_record() {
    let journal = Journal::default();
    let writer = start(FakeStorage::new(journal.clone()), WalConfig::default());
    std::thread::scope(|scope| {
        for producer in 0..4u64 {
            let appender = writer.appender();
            let journal = journal.clone();
            scope.spawn(move || {
                for n in 0..250u64 {
                    let journal = journal.clone();
                    let id = producer * 1_000 + n;
                    appender
                        .append(vec![event(id)], move |result| journal.ack(&result))
                        .unwrap();
                }
            });
        }
    });
    writer.close();
    let steps = journal.steps();
    check_acks_follow_syncs(&steps).unwrap();
    let acks = steps.iter().filter(|s| matches!(s, Step::AckOk(_))).count();
    assert_eq!(acks, 1_000);
}

#[test]
fn appends_written_during_a_sync_share_the_next_sync() {
    let journal = Journal::default();
    let (release, gate) = crossbeam_channel::unbounded();
    let storage = FakeStorage::new(journal.clone()).sync_gate(gate);
    let written = storage.events_written();
    let syncs_held = storage.syncs_held();
    let writer = start(storage, WalConfig::default());
    let appender = writer.appender();
    // The first append is written, and its sync waits at the gate.
    appender.append(events(0, 1), |_| {}).unwrap();
    wait_until(|| syncs_held.load(Ordering::SeqCst) == 1);
    // A writer that wakes for every append writes each as a batch of its own, and at most
    // WRITTEN_BATCHES_QUEUED_MAX written batches wait for a sync: stay below that bound.
    let appends = WRITTEN_BATCHES_QUEUED_MAX as u64 - 4;
    for id in 1..=appends {
        let journal = journal.clone();
        appender
            .append(vec![event(id)], move |result| journal.ack(&result))
            .unwrap();
    }
    // The writer does not wait for the sync: they are all written while it is held. The gate
    // opens before any assertion, so that a failure cannot leave the writer waiting for it.
    let all_written = eventually(|| written.load(Ordering::SeqCst) == 1 + appends);
    let durable_while_held = writer.stats().durable_seq;
    drop(release);
    writer.close();
    assert!(all_written, "written: {}", written.load(Ordering::SeqCst));
    assert_eq!(durable_while_held, Seq::ZERO);
    let steps = journal.steps();
    check_acks_follow_syncs(&steps).unwrap();
    let syncs = steps.iter().filter(|s| **s == Step::SyncOk).count();
    assert_eq!(
        syncs, 2,
        "one sync for the first append, one for the rest: {steps:?}"
    );
    let first_ack = steps.iter().position(|s| matches!(s, Step::AckOk(_)));
    let second_sync = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Step::SyncOk)
        .nth(1)
        .map(|(i, _)| i);
    assert!(first_ack > second_sync, "{steps:?}");
}

fn wait_until(condition: impl Fn() -> bool) {
    assert!(eventually(condition), "condition never became true");
}

/// Whether `condition` holds within 10 s.
fn eventually(condition: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[test]
fn a_failed_sync_poisons_the_log_and_nothing_after_it_is_acknowledged() {
    let journal = Journal::default();
    let storage = FakeStorage::new(journal.clone()).fail_sync_number(3);
    let durable = storage.durable();
    let writer = start(storage, WalConfig::default());
    let appender = writer.appender();
    let mut results = Vec::new();
    for id in 0..6u64 {
        let journal = journal.clone();
        let result = appender.append_and_wait(vec![event(id)]);
        if let Ok(seq) = &result {
            journal.push(Step::AckOk(*seq));
        }
        results.push(result);
    }
    assert!(matches!(results[0], Ok(seq) if seq == Seq::new(1)));
    assert!(matches!(results[1], Ok(seq) if seq == Seq::new(2)));
    assert!(
        matches!(&results[2], Err(WalError::Failed { message, .. }) if message.contains("injected")),
        "{:?}",
        results[2]
    );
    for result in &results[3..] {
        assert!(matches!(result, Err(WalError::Poisoned)), "{result:?}");
    }
    let steps = journal.steps();
    check_acks_follow_syncs(&steps).unwrap();
    // No sync is ever tried again after the failure.
    let after_failure = steps.iter().skip_while(|s| **s != Step::SyncFailed).skip(1);
    assert!(after_failure
        .clone()
        .all(|s| !matches!(s, Step::SyncOk | Step::SyncFailed | Step::Write { .. })));
    assert!(writer.stats().poisoned);
    assert_eq!(durable.lock().unwrap().len(), 2);
    writer.close();
}

#[test]
fn every_waiting_append_gets_the_failure() {
    let journal = Journal::default();
    let (release, gate) = crossbeam_channel::unbounded();
    let storage = FakeStorage::new(journal.clone())
        .fail_sync_number(1)
        .sync_gate(gate);
    let writer = start(storage, WalConfig::default());
    let appender = writer.appender();
    let answers = Arc::new(Mutex::new(Vec::new()));
    for id in 0..50u64 {
        let answers = answers.clone();
        appender
            .append(vec![event(id)], move |result| {
                answers.lock().unwrap().push(result)
            })
            .unwrap();
    }
    drop(release);
    writer.close();
    let answers = answers.lock().unwrap();
    assert_eq!(answers.len(), 50);
    assert!(answers
        .iter()
        .all(|a| matches!(a, Err(WalError::Failed { .. } | WalError::Poisoned))));
}

#[test]
fn a_full_queue_answers_busy_and_drops_nothing() {
    let Gated {
        journal: _,
        release,
        held,
        writer,
    } = gated(WalConfig {
        queue_appends_max: 2,
        enqueue_timeout: Duration::from_millis(50),
        ..WalConfig::default()
    });
    let appender = writer.appender();
    let answers = Arc::new(Mutex::new(0u32));
    let count = |answers: &Arc<Mutex<u32>>| {
        let answers = answers.clone();
        move |result: Result<Seq, WalError>| {
            assert!(result.is_ok());
            *answers.lock().unwrap() += 1;
        }
    };
    appender.append(events(0, 1), count(&answers)).unwrap();
    // Wait until the writer holds the first append in its write; then two fill the queue.
    wait_until(|| held.load(Ordering::SeqCst) == 1);
    appender.append(events(1, 1), count(&answers)).unwrap();
    appender.append(events(2, 1), count(&answers)).unwrap();

    let started = Instant::now();
    let busy = appender.append(events(3, 1), |_| {
        panic!("a refused append must not be answered")
    });
    assert!(matches!(busy, Err(WalError::Busy { .. })), "{busy:?}");
    assert!(started.elapsed() >= Duration::from_millis(50));
    let started = Instant::now();
    let busy = appender.try_append(events(4, 1), |_| {
        panic!("a refused append must not be answered")
    });
    assert!(matches!(busy, Err(WalError::Busy { .. })), "{busy:?}");
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(writer.stats().appends_rejected_busy, 2);

    drop(release);
    writer.close();
    assert_eq!(*answers.lock().unwrap(), 3);
}

#[test]
fn a_panicking_callback_does_not_stop_the_writer() {
    let journal = Journal::default();
    let writer = start(FakeStorage::new(journal.clone()), WalConfig::default());
    let appender = writer.appender();
    appender
        .append(events(0, 1), |_| panic!("callback panics on purpose"))
        .unwrap();
    // The writer lives on: later appends are written and acknowledged.
    let first = appender.append_and_wait(events(1, 1)).unwrap();
    let second = appender.append_and_wait(events(2, 1)).unwrap();
    assert!(second > first);
    writer.close();
    check_acks_follow_syncs(&journal.steps()).unwrap();
}

#[test]
fn batches_respect_the_event_limit() {
    let Gated {
        journal,
        release,
        held,
        writer,
    } = gated(WalConfig {
        batch_events_max: 10,
        ..WalConfig::default()
    });
    let appender = writer.appender();
    appender.append(events(0, 1), |_| {}).unwrap();
    wait_until(|| held.load(Ordering::SeqCst) == 1);
    for id in 1..=40u64 {
        appender.append(events(id, 1), |_| {}).unwrap();
    }
    drop(release);
    writer.close();
    let writes = journal
        .steps()
        .iter()
        .filter(|s| matches!(s, Step::Write { .. }))
        .count();
    // 1 + 40 events in batches of at most 10 after the first.
    assert_eq!(writes, 5);
}

#[test]
fn a_slow_callback_holds_up_the_next_sync_and_answers_stay_in_log_order() {
    let journal = Journal::default();
    let writer = start(FakeStorage::new(journal.clone()), WalConfig::default());
    let appender = writer.appender();
    let (unblock, blocked) = crossbeam_channel::bounded::<()>(0);
    let (running, callback_runs) = crossbeam_channel::bounded::<()>(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let first_order = order.clone();
    appender
        .append(events(0, 1), move |_| {
            // Holds the syncer, which runs the callbacks, until the test lets go.
            let _ = running.send(());
            let _ = blocked.recv();
            first_order.lock().unwrap().push(0);
        })
        .unwrap();
    callback_runs.recv_timeout(Duration::from_secs(10)).unwrap();
    let second_order = order.clone();
    appender
        .append(events(1, 1), move |_| second_order.lock().unwrap().push(1))
        .unwrap();
    // Callbacks run between syncs: the second append is written but not synced while the first
    // callback runs...
    wait_until(|| {
        journal
            .steps()
            .iter()
            .filter(|s| matches!(s, Step::Write { .. }))
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(writer.stats().durable_seq, Seq::new(1));
    assert!(order.lock().unwrap().is_empty());
    // ...and once it ends, the second is synced and answered after the first.
    unblock.send(()).unwrap();
    writer.close();
    assert_eq!(*order.lock().unwrap(), vec![0, 1]);
}

#[test]
fn a_barrier_is_answered_after_every_earlier_append_and_writes_nothing() {
    let journal = Journal::default();
    let (release, gate) = crossbeam_channel::unbounded();
    let storage = FakeStorage::new(journal.clone()).sync_gate(gate);
    let written = storage.events_written();
    let syncs_held = storage.syncs_held();
    let writer = start(storage, WalConfig::default());
    let appender = writer.appender();
    let answered: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let note = |name: &'static str| {
        let answered = answered.clone();
        let journal = journal.clone();
        move |result: Result<Seq, WalError>| {
            journal.ack(&result);
            answered.lock().unwrap().push(name);
        }
    };
    appender.append(events(0, 1), note("first")).unwrap();
    wait_until(|| syncs_held.load(Ordering::SeqCst) == 1);
    appender.append(events(1, 2), note("second")).unwrap();
    let (barrier_seq, seq_rx) = crossbeam_channel::bounded(1);
    let barrier = note("barrier");
    appender
        .try_barrier(move |result| {
            let _ = barrier_seq.send(result.as_ref().ok().copied());
            barrier(result);
        })
        .unwrap();
    // The sync of the first append is held: neither the second append nor the barrier may be
    // answered yet.
    let early = seq_rx.recv_timeout(Duration::from_millis(50));
    drop(release);
    let seq = seq_rx.recv_timeout(Duration::from_secs(10));
    writer.close();
    assert!(
        early.is_err(),
        "the barrier overtook a held sync: {early:?}"
    );
    // The barrier stands after the second append's record (seq 2) and wrote nothing itself.
    assert_eq!(seq.unwrap(), Some(Seq::new(2)));
    assert_eq!(written.load(Ordering::SeqCst), 3);
    assert_eq!(*answered.lock().unwrap(), ["first", "second", "barrier"]);
    check_acks_follow_syncs(&journal.steps()).unwrap();
}

#[test]
fn a_barrier_after_a_failed_sync_gets_the_failure() {
    let journal = Journal::default();
    let writer = start(
        FakeStorage::new(journal.clone()).fail_sync_number(1),
        WalConfig::default(),
    );
    let appender = writer.appender();
    let failed = appender.append_and_wait(events(0, 1));
    assert!(matches!(failed, Err(WalError::Failed { .. })), "{failed:?}");
    let refused = appender.try_barrier(|_| {});
    assert!(matches!(refused, Err(WalError::Poisoned)), "{refused:?}");
    writer.close();
}

#[test]
fn appends_after_a_barrier_never_share_a_record_with_those_before_it() {
    let Gated {
        journal: _,
        release,
        held: writes_held,
        writer,
    } = gated(WalConfig::default());
    let appender = writer.appender();
    // The first write waits at the gate, so the next three are taken as one batch.
    appender.append(events(0, 1), |_| {}).unwrap();
    wait_until(|| writes_held.load(Ordering::SeqCst) == 1);
    let seqs: Arc<Mutex<Vec<(&'static str, Seq)>>> = Arc::default();
    let note = |name: &'static str| {
        let seqs = seqs.clone();
        move |result: Result<Seq, WalError>| seqs.lock().unwrap().push((name, result.unwrap()))
    };
    appender.append(events(1, 1), note("before")).unwrap();
    appender.try_barrier(note("barrier")).unwrap();
    appender.append(events(2, 1), note("after")).unwrap();
    drop(release);
    writer.close();
    let seqs = seqs.lock().unwrap().clone();
    assert_eq!(
        seqs,
        [
            ("before", Seq::new(2)),
            ("barrier", Seq::new(2)),
            ("after", Seq::new(3))
        ]
    );
}

#[test]
fn a_sync_waits_for_a_write_in_progress_and_covers_it() {
    let Gated {
        journal,
        release,
        held,
        writer,
    } = gated(WalConfig {
        write_wait: Duration::from_secs(1),
        ..WalConfig::default()
    });
    let appender = writer.appender();
    let ack = |journal: &Journal| {
        let journal = journal.clone();
        move |result: Result<Seq, WalError>| journal.ack(&result)
    };
    // The first append waits in its write while the second queues behind it.
    appender.append(events(0, 1), ack(&journal)).unwrap();
    wait_until(|| held.load(Ordering::SeqCst) == 1);
    appender.append(events(1, 1), ack(&journal)).unwrap();
    // The first is written and handed to the syncer, and the second waits in its write: the
    // syncer waits for it instead of syncing the first alone. Held long enough that a syncer
    // that did not wait would have synced by then.
    release.send(()).unwrap();
    let writes = |journal: &Journal| {
        let steps = journal.steps();
        steps
            .iter()
            .filter(|s| matches!(s, Step::Write { .. }))
            .count()
    };
    wait_until(|| writes(&journal) == 1 && held.load(Ordering::SeqCst) == 1);
    std::thread::sleep(Duration::from_millis(50));
    drop(release);
    writer.close();
    let steps = journal.steps();
    check_acks_follow_syncs(&steps).unwrap();
    let syncs = steps.iter().filter(|s| **s == Step::SyncOk).count();
    assert_eq!(syncs, 1, "one sync for both writes: {steps:?}");
    assert!(
        matches!(
            steps[..],
            [
                Step::Write { .. },
                Step::Write { .. },
                Step::SyncOk,
                Step::AckOk(_),
                Step::AckOk(_)
            ]
        ),
        "{steps:?}"
    );
}

#[test]
fn the_wait_for_a_write_in_progress_is_bounded() {
    let Gated {
        journal,
        release,
        held,
        writer,
    } = gated(WalConfig {
        write_wait: Duration::from_millis(20),
        ..WalConfig::default()
    });
    let appender = writer.appender();
    let (first_tx, first_rx) = crossbeam_channel::bounded(1);
    appender
        .append(events(0, 1), move |result| {
            let _ = first_tx.send(result);
        })
        .unwrap();
    wait_until(|| held.load(Ordering::SeqCst) == 1);
    appender.append(events(1, 1), |_| {}).unwrap();
    release.send(()).unwrap();
    // The second write cannot finish while the gate stays shut; the first is acknowledged
    // anyway once the wait runs out, synced alone.
    let first = first_rx.recv_timeout(Duration::from_secs(10));
    let steps_then = journal.steps();
    drop(release);
    writer.close();
    assert!(matches!(first, Ok(Ok(_))), "{first:?}");
    let count = |want: fn(&Step) -> bool| steps_then.iter().filter(|s| want(s)).count();
    assert_eq!(
        count(|s| matches!(s, Step::Write { .. })),
        1,
        "{steps_then:?}"
    );
    assert_eq!(count(|s| *s == Step::SyncOk), 1, "{steps_then:?}");
}

#[test]
fn refused_appends_leave_no_wait_behind() {
    let Gated {
        journal: _,
        release,
        held,
        writer,
    } = gated(WalConfig {
        queue_appends_max: 1,
        enqueue_timeout: Duration::from_millis(1),
        write_wait: Duration::from_secs(1),
        ..WalConfig::default()
    });
    let appender = writer.appender();
    appender.append(events(0, 1), |_| {}).unwrap();
    wait_until(|| held.load(Ordering::SeqCst) == 1);
    appender.append(events(1, 1), |_| {}).unwrap();
    // The queue is full: each way in is refused, and each must take back its count.
    let refused = |result: Result<(), WalError>| matches!(result, Err(WalError::Busy { .. }));
    assert!(refused(appender.append(events(2, 1), |_| {})));
    assert!(refused(appender.try_append(events(3, 1), |_| {})));
    assert!(refused(appender.try_barrier(|_| {})));
    drop(release);
    // Both held appends are written and synced; a count left behind would make every later
    // sync wait the whole second for appends that never come.
    appender.append_and_wait(events(4, 1)).unwrap();
    let started = Instant::now();
    appender.append_and_wait(events(5, 1)).unwrap();
    let took = started.elapsed();
    writer.close();
    assert!(
        took < Duration::from_millis(500),
        "a lone append took {took:?}"
    );
}

#[test]
fn a_write_wait_over_the_limit_is_refused() {
    let config = WalConfig {
        write_wait: conductor_persistence::config::WRITE_WAIT_MAX + Duration::from_micros(1),
        ..WalConfig::default()
    };
    let started =
        GroupCommit::<TestEvent>::start(FakeStorage::new(Journal::default()), Seq::new(1), &config);
    assert!(matches!(started, Err(WalError::InvalidConfig(_))));
}
