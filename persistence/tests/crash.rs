//! A real crash test: run `wal-crash-writer`, SIGKILL it at a random moment, reopen the log and
//! check that every append it reported as acknowledged is present and intact. Repeated on the
//! same directory, so each run also recovers from the previous kill.
//!
//! The seed is printed; rerun a failure with `WAL_CRASH_SEED=<seed>`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError};

const KILLS: u64 = 20;
const WRITER_THREADS: u64 = 4;
/// Kill moments are drawn from 0..KILL_AFTER_MS_MAX after the spawn, so some land during open
/// and recovery and most during appends.
const KILL_AFTER_MS_MAX: u64 = 600;

#[path = "support/crash_event.rs"]
mod crash_event;
use crash_event::CrashEvent;

#[derive(Default)]
struct Found {
    /// id -> (seq, intact)
    events: HashMap<u64, (Seq, bool)>,
    duplicates: Vec<u64>,
}

impl Recover<CrashEvent> for Found {
    fn restore(&mut self, _snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        Ok(())
    }

    fn replay(&mut self, seq: Seq, event: CrashEvent) {
        let intact = event == CrashEvent::new(event.id);
        if self.events.insert(event.id, (seq, intact)).is_some() {
            self.duplicates.push(event.id);
        }
    }
}

/// xorshift64*: enough randomness for kill moments, and reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Reads the child's stdout to the end; keeps only complete lines (a kill can cut the last).
fn read_acks(stdout: std::process::ChildStdout) -> Vec<(Seq, Vec<u64>)> {
    let mut reader = BufReader::new(stdout);
    let mut acks = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return acks,
            Ok(_) if line.last() != Some(&b'\n') => return acks,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line);
        let mut words = text.split_whitespace();
        if words.next() != Some("ack") {
            continue;
        }
        let seq = Seq::new(words.next().unwrap().parse().unwrap());
        let ids = words.map(|word| word.parse().unwrap()).collect();
        acks.push((seq, ids));
    }
}

#[test]
fn every_acknowledged_append_survives_sigkill() {
    let seed = std::env::var("WAL_CRASH_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed: {seed} (rerun with WAL_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    // id -> seq of the acknowledgement, over all runs.
    let mut acked: HashMap<u64, Seq> = HashMap::new();
    for run in 0..KILLS {
        let kill_after = Duration::from_millis(rng.next() % KILL_AFTER_MS_MAX);
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(dir.path())
            .arg(run.to_string())
            .arg(WRITER_THREADS.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || read_acks(stdout));
        std::thread::sleep(kill_after);
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        for (seq, ids) in &acks {
            for id in ids {
                acked.insert(*id, *seq);
            }
        }

        let wal = Wal::<CrashEvent>::open(dir.path(), WalConfig::default()).unwrap();
        let mut found = Found::default();
        let report = wal
            .recover(&mut found)
            .unwrap_or_else(|error| panic!("seed {seed} run {run}: recovery failed: {error}"));
        wal.close();
        println!(
            "run {run}: killed after {kill_after:?}, {} acks this run, {} acked in total, {} records, {} truncated",
            acks.len(),
            acked.len(),
            report.records,
            report.truncated_records
        );
        assert!(
            found.duplicates.is_empty(),
            "seed {seed}: duplicated ids {:?}",
            found.duplicates
        );
        for (id, acked_seq) in &acked {
            let Some((seq, intact)) = found.events.get(id) else {
                panic!("seed {seed} run {run}: acknowledged id {id} (seq {acked_seq}) is lost");
            };
            assert!(intact, "seed {seed} run {run}: id {id} is damaged");
            assert!(
                seq <= acked_seq,
                "seed {seed} run {run}: id {id} found at seq {seq}, after its ack seq {acked_seq}"
            );
        }
    }
    assert!(
        !acked.is_empty(),
        "seed {seed}: no run got as far as an acknowledgement"
    );
}
