//! Test helper for `tests/crash.rs`, not a tool: appends to a log as fast as it can from
//! several threads and prints every acknowledged append on stdout, so that the test can SIGKILL
//! it at a random moment and check that everything it printed survived.
//!
//! Usage: `wal-crash-writer DIR RUN THREADS`. Prints `ready` once the log is open and recovered,
//! then one line per acknowledged append: `ack SEQ ID [ID...]`, flushed at once. Ids are
//! `RUN << 40 | THREAD << 32 | N`, unique across runs. Exits by itself after
//! `RUN_SECONDS_MAX` in case nobody kills it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError};

/// The helper stops on its own after this long, so a test that died cannot leave it running.
const RUN_SECONDS_MAX: u64 = 20;

/// The most events in one append.
const APPEND_EVENTS_MAX: u64 = 3;

#[path = "../../tests/support/crash_event.rs"]
mod crash_event;
use crash_event::CrashEvent;

/// Recovery here only has to run (and truncate a torn tail); the test checks the content.
struct Count(u64);

impl Recover<CrashEvent> for Count {
    fn restore(&mut self, _snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        Ok(())
    }

    fn replay(&mut self, _seq: Seq, _event: CrashEvent) {
        self.0 += 1;
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(Ok(run)), Some(Ok(threads))) = (
        args.get(1).map(PathBuf::from),
        args.get(2).map(|a| a.parse::<u64>()),
        args.get(3).map(|a| a.parse::<u64>()),
    ) else {
        eprintln!("usage: wal-crash-writer DIR RUN THREADS");
        return ExitCode::from(2);
    };
    let wal = match Wal::<CrashEvent>::open(&dir, WalConfig::default()) {
        Ok(wal) => wal,
        Err(error) => {
            eprintln!("open failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = wal.recover(&mut Count(0)) {
        eprintln!("recovery failed: {error}");
        return ExitCode::FAILURE;
    }
    println!("ready");
    let deadline = Instant::now() + Duration::from_secs(RUN_SECONDS_MAX);
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let appender = wal.appender();
            scope.spawn(move || {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let count = 1 + (n % APPEND_EVENTS_MAX);
                    let ids: Vec<u64> = (n..n + count)
                        .map(|n| run << 40 | thread << 32 | n)
                        .collect();
                    n += count;
                    let events = ids.iter().map(|&id| CrashEvent::new(id)).collect();
                    match appender.append_and_wait(events) {
                        Ok(seq) => {
                            let line: Vec<String> = ids.iter().map(u64::to_string).collect();
                            let mut out = std::io::stdout().lock();
                            // A closed stdout means the test is gone; stop quietly.
                            if writeln!(out, "ack {seq} {}", line.join(" "))
                                .and_then(|()| out.flush())
                                .is_err()
                            {
                                return;
                            }
                        }
                        Err(WalError::Busy { .. }) => continue,
                        Err(error) => {
                            eprintln!("append failed: {error}");
                            return;
                        }
                    }
                }
            });
        }
    });
    wal.close();
    ExitCode::SUCCESS
}
