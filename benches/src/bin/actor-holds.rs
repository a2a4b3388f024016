//! In-process throughput of durable holds through the actors (issue 4's figures).
//!
//! `cargo run --release -p conductor-benches --bin actor-holds -- [seconds] [requesters]`
//! (`SCENARIO=hot|spread|reads|batch` runs one scenario only; `RATE=<holds/s>` runs the single
//! hold scenarios open loop instead: holds are offered at that rate whatever the answers do)
//!
//! Scenarios, each on a fresh data dir, closed loop (every requester sends its next hold as
//! soon as the previous one is acknowledged, i.e. durable):
//! - one hot SKU at one warehouse;
//! - 100 SKUs over 10 stock points;
//! - the hot SKU again with storefront reads of the board running on their own thread;
//! - the hot SKU with 100 holds per call (`Conductor::reserve_batch`).
//!
//! Prints holds/s, latency percentiles (HdrHistogram), events per fsync, fsync time, and process
//! CPU time per hold (all threads; the reads scenario's includes its reader thread); on stderr,
//! the cores each thread (pool) used during the run, for the breakdown of where a hold goes. Open loop,
//! each hold runs on its own task and its latency counts from the moment it was due, not from
//! when it was sent, so a stall shows in the percentiles instead of lowering the offered load
//! (no coordinated omission); holds that would exceed [`OPEN_OUTSTANDING_MAX`] in flight are
//! counted as refused, not sent.
//! With `RESTART=1`, also restarts on each run's data and prints recovery times;
//! `CHECKPOINT_MS=<ms>` takes snapshots of the running system that often during the run.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conductor_actors::error::Answer;
use conductor_actors::orchestrator::StockPointSpec;
use conductor_actors::{Conductor, Config};
use conductor_benches::{process_cpu, Latencies};
use conductor_engine::checkout::ReserveRequest;
use conductor_engine::ids::{Code, Qty, SkuId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::network::{Capability, Channel, Location, StockPointKind};
use conductor_engine::reservation::Reservation;
use hdrhistogram::Histogram;

struct Figures {
    holds: u64,
    refused: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    events: u64,
    flushes: u64,
    sync_nanos: u64,
    reads: u64,
    /// Process CPU time (user + system, all threads) during the run.
    cpu: Duration,
    /// Cores per thread (pool) during the run, busiest first.
    threads: String,
}

/// CPU time per thread name so far (user + system, in clock ticks), from `/proc/self/task`;
/// numbered pools (`sled-io-3`) count as one. Threads that ended are not in it.
fn thread_cpu() -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            continue;
        };
        // The fields after the parenthesised name: state is the first, utime the 12th.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let name = comm.trim().trim_end_matches(|c: char| c.is_ascii_digit());
        *by_name
            .entry(name.trim_end_matches('-').to_owned())
            .or_insert(0) += ticks(11) + ticks(12);
    }
    by_name
}

/// Cores each thread (pool) used between two [`thread_cpu`] readings `elapsed` apart, busiest
/// first.
fn thread_cores(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
    elapsed: Duration,
) -> String {
    // SAFETY: sysconf reads a constant of the running system.
    let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut cores: Vec<(f64, &str)> = after
        .iter()
        .map(|(name, t)| {
            let used = t.saturating_sub(before.get(name).copied().unwrap_or(0));
            (
                used as f64 / ticks_per_s / elapsed.as_secs_f64(),
                name.as_str(),
            )
        })
        .filter(|(c, _)| *c >= 0.005)
        .collect();
    cores.sort_by(|a, b| b.0.total_cmp(&a.0));
    cores
        .iter()
        .map(|(c, name)| format!("{name} {c:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn code(s: &str) -> Code {
    Code::parse(s).expect("valid code")
}

async fn setup(
    c: &Conductor,
    stock_points: u32,
    skus: u32,
    stock: u64,
) -> Vec<(StockPointId, SkuId)> {
    let mut sps = Vec::new();
    for i in 0..stock_points {
        let sp = c
            .put_stock_point(StockPointSpec {
                code: code(&format!("WH{i}")),
                kind: StockPointKind::Warehouse,
                name: format!("warehouse {i}"),
                location: Location {
                    lat: 45.0 + f64::from(i) * 0.3,
                    lon: 2.0 + f64::from(i) * 0.2,
                },
                priority: i,
                channels: vec![Channel::Web],
                capabilities: vec![Capability::Ship],
                cost_per_shipment: 500,
                tags: vec![],
            })
            .await
            .expect("no error")
            .expect("accepted");
        sps.push(sp.id);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let codes: Vec<Code> = (0..skus).map(|i| code(&format!("SKU{i}"))).collect();
    let ids = c
        .define_skus(codes)
        .await
        .expect("no error")
        .expect("defined");
    let mut placed = Vec::new();
    for (i, sku) in ids.iter().enumerate() {
        let sp = sps[i % sps.len()];
        c.adjust(
            sp,
            *sku,
            Adjustment::Set(Qty(stock)),
            AdjustReason::Adjustment,
        )
        .await
        .expect("no error")
        .expect("adjusted");
        placed.push((sp, *sku));
    }
    placed
}

/// Holds per call in the batch scenario.
const BATCH_HOLDS: usize = 100;

/// Open loop: the most holds in flight at once; the intake's own bound is 65,536.
const OPEN_OUTSTANDING_MAX: usize = 65_536;

/// How the holds are offered.
#[derive(Clone, Copy)]
enum Load {
    /// `requesters` callers, each sending its next hold when the previous one is answered.
    Closed,
    /// Holds offered at this many per second, each on its own task.
    Open(f64),
}

#[allow(clippy::too_many_arguments)]
async fn run(
    label: &str,
    load: Load,
    seconds: u64,
    requesters: usize,
    stock_points: u32,
    skus: u32,
    readers: bool,
) -> Figures {
    run_with(
        label,
        load,
        seconds,
        requesters,
        stock_points,
        skus,
        readers,
        1,
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn run_with(
    label: &str,
    load: Load,
    seconds: u64,
    requesters: usize,
    stock_points: u32,
    skus: u32,
    readers: bool,
    batch: usize,
) -> Figures {
    let dir = tempfile::tempdir().expect("temp dir");
    let (c, _) = Conductor::start(bench_config(dir.path()))
        .await
        .expect("start");
    let c = Arc::new(c);
    let placed = setup(&c, stock_points, skus, u64::MAX / 4).await;
    let before = c.log_stats();
    let stop = Arc::new(AtomicBool::new(false));
    let latency = Arc::new(Latencies::new());
    let holds = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let failure_told = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = readers.then(|| {
        let (board, stop, reads) = (c.board().clone(), stop.clone(), reads.clone());
        let skus: Vec<SkuId> = placed.iter().map(|p| p.1).collect();
        std::thread::spawn(move || {
            // Paced at READS_PER_S_TARGET on its own thread: storefront reads never touch the
            // runtime's workers, and a flat-out spin would only measure core stealing. In 1 ms
            // slices: storefront reads arrive spread out, and a burst of 50,000 every 10 ms
            // (0.4 ms of reading) preempted the sale's threads for as long (p99 ×1.07–1.2).
            const READS_PER_S_TARGET: u64 = 5_000_000;
            const READS_PER_SLICE: u64 = 5_000;
            let slice = Duration::from_nanos(1_000_000_000 * READS_PER_SLICE / READS_PER_S_TARGET);
            let mut n = 0u64;
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                for i in 0..READS_PER_SLICE {
                    let sku = skus[(i as usize) % skus.len()];
                    n += board.with_figures(sku, |f| f.iter().map(|x| x.available.0).sum::<u64>())
                        & 1;
                }
                reads.fetch_add(READS_PER_SLICE, Ordering::Relaxed);
                next += slice;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            n
        })
    });
    let started = Instant::now();
    let cpu_before = process_cpu();
    let threads_before = thread_cpu();
    let mut tasks = Vec::new();
    if let Load::Open(rate) = load {
        let sku_codes: Vec<Code> = (0..skus).map(|i| code(&format!("SKU{i}"))).collect();
        offer(&c, rate, seconds, &sku_codes, &latency, &holds, &refused).await;
    }
    let closed_requesters = if matches!(load, Load::Closed) {
        requesters
    } else {
        0
    };
    for r in 0..closed_requesters {
        let (c, stop, latency, holds, refused, failure_told) = (
            c.clone(),
            stop.clone(),
            latency.clone(),
            holds.clone(),
            refused.clone(),
            failure_told.clone(),
        );
        let sku_codes: Vec<Code> = (0..skus).map(|i| code(&format!("SKU{i}"))).collect();
        tasks.push(tokio::spawn(async move {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let mut request = || {
                    let code = sku_codes[i % sku_codes.len()].clone();
                    i += 7;
                    ReserveRequest::web(vec![(code, Qty(1))], 3_600)
                };
                let mut failed = None;
                let mut placed = 0;
                let mut tally = |answer: Answer<Arc<Reservation>>| match answer {
                    Ok(Ok(_)) => placed += 1,
                    Ok(Err(_)) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        failed.get_or_insert(error);
                    }
                };
                // One hold is one `reserve` call, with no list around it either way: the bench
                // should cost what a caller's own work costs, not more.
                let t;
                if batch == 1 {
                    let request = request();
                    t = Instant::now();
                    tally(c.reserve(request).await);
                } else {
                    let requests = (0..batch).map(|_| request()).collect();
                    t = Instant::now();
                    match c.reserve_batch(requests).await {
                        Ok(answers) => answers.into_iter().for_each(&mut tally),
                        Err(e) => tally(Err(e)),
                    }
                }
                let micros = t.elapsed().as_micros() as u64;
                if placed > 0 {
                    holds.fetch_add(placed, Ordering::Relaxed);
                    latency.record_n(micros, placed);
                }
                if let Some(error) = failed {
                    if !failure_told.swap(true, Ordering::Relaxed) {
                        eprintln!("a call failed (later failures are only counted): {error}");
                    }
                    // A system that fails every call at once (an actor stopped) would keep these
                    // tasks from ever waiting; then the workers never turn the timer that ends
                    // the run, and the bench spins instead of reporting.
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    if matches!(load, Load::Closed) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let threads = thread_cores(&threads_before, &thread_cpu(), elapsed);
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    let after = c.log_stats();
    // How well the actors batch: each append is one stock point message's holds.
    let appends = after.appends_acknowledged - before.appends_acknowledged;
    let flushes = (after.flushes - before.flushes).max(1);
    // Holds, not events: a hold is one event or two (`Event::Reserved`, or the hold and the
    // reservation record when the reservation is split), and the goal is stated in holds.
    eprintln!(
        "appends per fsync, {label}: {:.1}; holds per fsync: {:.1}",
        appends as f64 / flushes as f64,
        holds.load(Ordering::Relaxed) as f64 / flushes as f64
    );
    c.shutdown().await;
    let latency = latency.merged();
    let figures = Figures {
        holds: holds.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        elapsed,
        latency,
        events: after.events_written - before.events_written,
        flushes: after.flushes - before.flushes,
        sync_nanos: after.sync_nanos_total - before.sync_nanos_total,
        reads: reads.load(Ordering::Relaxed),
        cpu,
        threads,
    };
    print(label, &figures);
    if std::env::var("RESTART").is_ok() {
        restart_figures(dir.path()).await;
    }
    figures
}

/// Offers `rate` holds per second for `seconds`, each on its own task, and waits for the last
/// answer. Latency counts from the moment each hold was due. The holds are launched from a
/// thread of their own that sleeps to each due time: the runtime's timer has 1 ms ticks, which
/// would add up to a millisecond to every latency.
async fn offer(
    c: &Arc<Conductor>,
    rate: f64,
    seconds: u64,
    sku_codes: &[Code],
    latency: &Arc<Latencies>,
    holds: &Arc<AtomicU64>,
    refused: &Arc<AtomicU64>,
) {
    let total = (rate * seconds as f64) as u64;
    let in_flight = Arc::new(AtomicU64::new(0));
    let runtime = tokio::runtime::Handle::current();
    let launcher = {
        let (c, latencies, holds, refused, in_flight) = (
            c.clone(),
            latency.clone(),
            holds.clone(),
            refused.clone(),
            in_flight.clone(),
        );
        let sku_codes = sku_codes.to_vec();
        std::thread::spawn(move || {
            let start = Instant::now();
            for n in 0..total {
                let due_at = start + Duration::from_secs_f64(n as f64 / rate);
                if let Some(wait) = due_at.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if in_flight.load(Ordering::Relaxed) >= OPEN_OUTSTANDING_MAX as u64 {
                    refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let sku = sku_codes[n as usize % sku_codes.len()].clone();
                let (c, latencies, holds, refused, in_flight) = (
                    c.clone(),
                    latencies.clone(),
                    holds.clone(),
                    refused.clone(),
                    in_flight.clone(),
                );
                runtime.spawn(async move {
                    let answer = c
                        .reserve(ReserveRequest::web(vec![(sku, Qty(1))], 3_600))
                        .await;
                    if matches!(answer, Ok(Ok(_))) {
                        holds.fetch_add(1, Ordering::Relaxed);
                        latencies.record(due_at.elapsed().as_micros() as u64);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
            }
        })
    };
    while !launcher.is_finished() || in_flight.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = launcher.join();
}

/// The system's defaults, with `CHECKPOINT_MS=<ms>` for snapshots of the running system that
/// often (by default the first comes after 5 minutes, past any run here).
fn bench_config(dir: &std::path::Path) -> Config {
    let mut config = Config::new(dir);
    if let Some(ms) = std::env::var("CHECKPOINT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.checkpoint_every = Some(Duration::from_millis(ms));
    }
    config
}

/// Restarts twice on the data the run left: the first replays the log since the snapshot taken
/// at the previous start (every event of the run), the second opens from the snapshot that the
/// first one saved.
async fn restart_figures(dir: &std::path::Path) {
    for what in ["replay of the whole run", "open from a snapshot"] {
        let started = Instant::now();
        let (c, recovered) = Conductor::start(Config::new(dir)).await.expect("restart");
        let elapsed = started.elapsed();
        c.shutdown().await;
        println!(
            "restart ({what}): {} events in {} records replayed, ready in {:.2} s",
            recovered.events,
            recovered.records,
            elapsed.as_secs_f64()
        );
    }
}

fn print(label: &str, f: &Figures) {
    let secs = f.elapsed.as_secs_f64();
    let l = &f.latency;
    println!(
        "| {label} | {:.0} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.1} | {} | {:.2}M |",
        f.holds as f64 / secs,
        l.value_at_quantile(0.5),
        l.value_at_quantile(0.9),
        l.value_at_quantile(0.99),
        l.value_at_quantile(0.999),
        l.max(),
        f.events as f64 / f.flushes.max(1) as f64,
        f.sync_nanos as f64 / f.flushes.max(1) as f64 / 1_000.0,
        f.cpu.as_secs_f64() * 1e6 / f.holds.max(1) as f64,
        f.refused,
        f.reads as f64 / secs / 1e6,
    );
    // On stderr, so that stdout stays one table.
    eprintln!("cores per thread, {label}: {}", f.threads);
}

fn main() {
    conductor_actors::process::prepare();
    // Warnings and errors of the live system (an actor failed, a log write failed) on stderr,
    // beside the figures; `CONDUCTOR_LOG` as for the server.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONDUCTOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let seconds: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    let requesters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(conductor_benches::runtime_threads())
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let rate: Option<f64> = std::env::var("RATE").ok().and_then(|r| r.parse().ok());
        let load = rate.map_or(Load::Closed, Load::Open);
        match rate {
            None => println!("{requesters} requesters, {seconds} s each, closed loop, durable acks"),
            Some(rate) => println!("{rate:.0} holds/s offered, {seconds} s each, open loop, durable acks (batches stay closed loop)"),
        }
        println!("| scenario | holds/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | events/fsync | µs/sync | CPU µs/hold | refused | board reads/s |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
        let only = std::env::var("SCENARIO").ok();
        let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
        if wanted("hot") {
            run("1 hot SKU, 1 warehouse", load, seconds, requesters, 1, 1, false).await;
        }
        if wanted("spread") {
            run("100 SKUs, 10 stock points", load, seconds, requesters, 10, 100, false).await;
        }
        if wanted("reads") {
            run("1 hot SKU + board reads", load, seconds, requesters, 1, 1, true).await;
        }
        if wanted("batch") {
            let label = format!("1 hot SKU, {BATCH_HOLDS} holds per call");
            let requesters = (requesters / 16).max(1);
            run_with(&label, Load::Closed, seconds, requesters, 1, 1, false, BATCH_HOLDS).await;
        }
    });
}
