//! The log's own ceiling in the shape of the actors' hold bench: `requesters` tasks on a
//! two-worker runtime, closed loop, each appending one record per "hold" straight to the log
//! and waiting for its durable acknowledgement. No orchestrator, no stock point, no planning:
//! whatever the actors add comes on top of this, so `actor-holds` run in the same go can be
//! read as a ratio against it.
//!
//! `cargo run --release -p conductor-benches --bin wal-ceiling -- [seconds] [requesters] [bytes]`
//! (`bytes`: the size of each hold's event; 160 is about a hold plus its reservation record).
//! The events are pseudo-random bytes, which the log's compression cannot shorten, so `bytes`
//! is what each hold costs the log, as in the figures measured before records were compressed.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conductor_benches::{process_cpu, Latencies};
use conductor_persistence::{Wal, WalConfig};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    conductor_actors::process::prepare();
    let seconds = arg(1, 5);
    let requesters = arg(2, 256);
    let bytes = arg(3, 160) as usize;
    let dir = tempfile::tempdir().expect("temp dir");
    let wal: Wal<Vec<u8>> = Wal::open(dir.path(), WalConfig::default()).expect("open log");
    let appender = wal.appender();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(conductor_benches::runtime_threads())
        .enable_all()
        .build()
        .expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let holds = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(Latencies::new());
    let before = wal.stats();
    let cpu_before = process_cpu();
    let started = Instant::now();
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..requesters {
            let appender = appender.clone();
            let (stop, holds, latency) = (stop.clone(), holds.clone(), latency.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let appended = appender.try_append(vec![noise(bytes)], move |r| {
                        let _ = tx.send(r.is_ok());
                    });
                    if appended.is_err() || !matches!(rx.await, Ok(true)) {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    latency.record(sent.elapsed().as_micros() as u64);
                    holds.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
    });
    let elapsed = started.elapsed();
    let cpu = process_cpu() - cpu_before;
    let after = wal.stats();
    let n = holds.load(Ordering::Relaxed);
    let latency = latency.merged();
    let flushes = (after.flushes - before.flushes).max(1);
    println!(
        "log alone: {requesters} requesters, {bytes} B per hold, {seconds} s closed loop, durable acks"
    );
    println!("| holds/s | p50 µs | p99 µs | p99.9 µs | holds/fsync | µs/sync | CPU µs/hold |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {:.0} | {} | {} | {} | {:.1} | {:.0} | {:.1} |",
        n as f64 / elapsed.as_secs_f64(),
        latency.value_at_quantile(0.5),
        latency.value_at_quantile(0.99),
        latency.value_at_quantile(0.999),
        (after.events_written - before.events_written) as f64 / flushes as f64,
        (after.sync_nanos_total - before.sync_nanos_total) as f64 / flushes as f64 / 1000.0,
        cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
    );
    drop(runtime);
    wal.close();
}

/// `bytes` bytes that LZ4 cannot shorten: a splitmix64 sequence from a per-thread counter.
fn noise(bytes: usize) -> Vec<u8> {
    thread_local! {
        static STATE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    STATE.with(|state| {
        (0..bytes)
            .map(|_| {
                let x = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
                state.set(x);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u8
            })
            .collect()
    })
}
