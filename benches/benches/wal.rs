//! Write-ahead log benchmarks: durable appends per second as a function of events per flush,
//! next to the raw cost of one fsync on the same disk, then (outside criterion, since one run
//! takes seconds) the time to recover a million events and the log's size on disk.
//!
//! Run: `cargo bench -p conductor-benches --bench wal`. Figures are in
//! `persistence/BENCHMARKS.md`.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use serde::{Deserialize, Serialize};

/// About 40 bytes encoded: the size of a typical hold or release event.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct BenchEvent {
    id: u64,
    at_ms: u64,
    sku: String,
    qty: u32,
}

fn event(id: u64) -> BenchEvent {
    BenchEvent {
        id: 1_000_000_000 + id,
        at_ms: 1_700_000_000_000 + id,
        sku: format!("SKU-{:014}", id % 10_000),
        qty: 1 + (id % 5) as u32,
    }
}

fn events(count: usize) -> Vec<BenchEvent> {
    (0..count as u64).map(event).collect()
}

const EVENTS_PER_FLUSH: [usize; 4] = [1, 16, 256, 4096];

/// Recovery is measured over this many events.
const RECOVERY_EVENTS: usize = 1_000_000;

/// Events per append when filling the log for the recovery measurement.
const FILL_APPEND_EVENTS: usize = 4096;

/// Where to put files: the same disk as the target dir, not a tmpfs.
fn bench_dir() -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("bench-tmp");
    std::fs::create_dir_all(&base).expect("create bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn fsync_4k(c: &mut Criterion) {
    let dir = bench_dir();
    let file: File = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("fsync-probe"))
        .expect("open probe file");
    let page = vec![0xa5u8; 4096];
    // Allocate the block once, so that the loop measures an overwrite plus fdatasync.
    file.write_all_at(&page, 0).unwrap();
    file.sync_all().unwrap();
    let mut group = c.benchmark_group("fsync");
    group.throughput(Throughput::Elements(1));
    group.bench_function("write_4k_fdatasync", |b| {
        b.iter(|| {
            file.write_all_at(black_box(&page), 0).unwrap();
            file.sync_data().unwrap();
        })
    });
    group.finish();
}

fn durable_appends(c: &mut Criterion) {
    let dir = bench_dir();
    let wal = Wal::<BenchEvent>::open(dir.path(), WalConfig::default()).expect("open wal");
    let appender = wal.appender();
    let mut group = c.benchmark_group("wal_append");
    for &per_flush in &EVENTS_PER_FLUSH {
        let batch = events(per_flush);
        group.throughput(Throughput::Elements(per_flush as u64));
        // One producer appending and waiting: every iteration is exactly one flush of
        // `per_flush` events, the figure group commit reaches when that many are queued.
        group.bench_with_input(
            BenchmarkId::new("events_per_flush", per_flush),
            &batch,
            |b, batch| {
                b.iter_batched(
                    || batch.clone(),
                    |batch| appender.append_and_wait(batch).expect("append"),
                    BatchSize::SmallInput,
                )
            },
        );
    }
    group.finish();
    let stats = wal.stats();
    println!(
        "wal stats: {} flushes, {} records, mean sync {:.0} us",
        stats.flushes,
        stats.records_written,
        stats.sync_nanos_total as f64 / stats.flushes.max(1) as f64 / 1_000.0
    );
    wal.close();
}

struct Count {
    events: u64,
    ids: u64,
}

impl Recover<BenchEvent> for Count {
    fn restore(&mut self, _snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        Ok(())
    }

    fn replay(&mut self, _seq: Seq, event: BenchEvent) {
        self.events += 1;
        self.ids = self.ids.wrapping_add(black_box(event).id);
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() {
            dir_bytes(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Fills a log with a million events, then opens and recovers it three times; prints the
/// median. Not a criterion benchmark: one sample takes about a second.
fn recovery() {
    let dir = bench_dir();
    let started = Instant::now();
    {
        let wal = Wal::<BenchEvent>::open(dir.path(), WalConfig::default()).expect("open wal");
        let appender = wal.appender();
        let mut id = 0u64;
        while (id as usize) < RECOVERY_EVENTS {
            let batch: Vec<BenchEvent> = (id..id + FILL_APPEND_EVENTS as u64)
                .take(RECOVERY_EVENTS - id as usize)
                .map(event)
                .collect();
            id += batch.len() as u64;
            appender.append_and_wait(batch).expect("append");
        }
        wal.close();
    }
    let fill = started.elapsed();
    let bytes = dir_bytes(dir.path());
    let mut runs: Vec<(Duration, u64)> = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let wal = Wal::<BenchEvent>::open(dir.path(), WalConfig::default()).expect("open wal");
        let mut count = Count { events: 0, ids: 0 };
        let report = wal.recover(&mut count).expect("recover");
        let elapsed = started.elapsed();
        assert_eq!(count.events, RECOVERY_EVENTS as u64);
        runs.push((elapsed, report.records));
        wal.close();
    }
    runs.sort();
    let (median, records) = runs[1];
    println!(
        "recovery: {RECOVERY_EVENTS} events in {records} records: open+replay median {:.3} s \
         ({:.2} M events/s); fill took {:.2} s",
        median.as_secs_f64(),
        RECOVERY_EVENTS as f64 / median.as_secs_f64() / 1e6,
        fill.as_secs_f64()
    );
    println!(
        "size on disk: {:.1} MiB per million events (directory total {} bytes)",
        bytes as f64 / (1024.0 * 1024.0) / (RECOVERY_EVENTS as f64 / 1e6),
        bytes
    );
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    fsync_4k(&mut criterion);
    durable_appends(&mut criterion);
    criterion.final_summary();
    // `cargo test --benches` runs this binary without `--bench`: skip the slow part there.
    if std::env::args().any(|arg| arg == "--bench") {
        recovery();
    }
}
