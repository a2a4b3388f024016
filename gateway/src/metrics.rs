//! Prometheus text for `/metrics`, hand-written: request latency histograms per route, business
//! counters, rejections by problem type, and the live system's own figures (WAL, mailboxes,
//! restarts) read at scrape time.
//!
//! The counters are process-global so that [`crate::problem::Problem`] can count a rejection
//! wherever it is built; the hot path only touches atomics and a read lock.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use conductor_actors::Conductor;

/// Upper bounds of the latency buckets, in seconds: 100 µs to 5 s, so that both a cached
/// availability read and a timed-out command land in a finite bucket.
const BUCKETS_S: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS_S.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
    /// Responses by status class: index 0 is 1xx ... 4 is 5xx.
    classes: [AtomicU64; 5],
}

#[derive(Default)]
pub struct Metrics {
    /// By route template, then method: found with borrowed strings, so that recording a request
    /// allocates nothing.
    routes: RwLock<HashMap<String, HashMap<String, Arc<Histogram>>>>,
    pub reservations_created: AtomicU64,
    pub reservations_released: AtomicU64,
    pub orders_created: AtomicU64,
    pub idempotent_replays: AtomicU64,
    pub sse_clients: AtomicU64,
    pub sse_resyncs: AtomicU64,
    rejections: Mutex<BTreeMap<&'static str, u64>>,
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// Counts a problem response by its type name.
pub fn rejected(name: &'static str) {
    let mut map = METRICS.rejections.lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(name).or_default() += 1;
}

pub fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Records one request's latency and status under its route template (`/v1/reservations/{id}`).
pub fn observe(method: &str, route: &str, status: u16, elapsed: Duration) {
    let existing = METRICS
        .routes
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .and_then(|by_method| by_method.get(method))
        .cloned();
    let histogram = match existing {
        Some(h) => h,
        None => METRICS
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(route.to_owned())
            .or_default()
            .entry(method.to_owned())
            .or_default()
            .clone(),
    };
    let seconds = elapsed.as_secs_f64();
    if let Some(i) = BUCKETS_S.iter().position(|b| seconds <= *b) {
        histogram.buckets[i].fetch_add(1, Ordering::Relaxed);
    }
    histogram.count.fetch_add(1, Ordering::Relaxed);
    histogram
        .sum_nanos
        .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    let class = usize::from(status / 100).clamp(1, 5) - 1;
    histogram.classes[class].fetch_add(1, Ordering::Relaxed);
}

/// The whole exposition, for one scrape.
pub fn render(conductor: Option<&Conductor>, ready: bool) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let m = &*METRICS;
    let _ = writeln!(
        out,
        "# HELP conductor_http_request_duration_seconds Request latency by route."
    );
    let _ = writeln!(
        out,
        "# TYPE conductor_http_request_duration_seconds histogram"
    );
    let routes = m.routes.read().unwrap_or_else(|e| e.into_inner());
    // Sorted by method, then route, so that scrapes list them in a stable order.
    let mut histograms: Vec<(&str, &str, &Histogram)> = routes
        .iter()
        .flat_map(|(route, by_method)| {
            by_method
                .iter()
                .map(move |(method, h)| (method.as_str(), route.as_str(), &**h))
        })
        .collect();
    histograms.sort_by_key(|&(method, route, _)| (method, route));
    for &(method, route, h) in &histograms {
        let labels = format!("method=\"{method}\",route=\"{route}\"");
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            cumulative += h.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "conductor_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = h.count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "conductor_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "conductor_http_request_duration_seconds_sum{{{labels}}} {}",
            h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "conductor_http_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP conductor_http_responses_total Responses by route and status class."
    );
    let _ = writeln!(out, "# TYPE conductor_http_responses_total counter");
    for &(method, route, h) in &histograms {
        for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let n = h.classes[i].load(Ordering::Relaxed);
            if n > 0 {
                let _ = writeln!(
                    out,
                    "conductor_http_responses_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {n}"
                );
            }
        }
    }
    drop(routes);
    let counters = [
        (
            "conductor_reservations_created_total",
            "Reservations held (201).",
            &m.reservations_created,
        ),
        (
            "conductor_reservations_released_total",
            "Reservations released by DELETE.",
            &m.reservations_released,
        ),
        (
            "conductor_orders_created_total",
            "Orders created, by confirm or in one step.",
            &m.orders_created,
        ),
        (
            "conductor_idempotent_replays_total",
            "Responses replayed for a repeated Idempotency-Key.",
            &m.idempotent_replays,
        ),
        (
            "conductor_sse_resyncs_total",
            "Stream clients that lagged and were resynchronised.",
            &m.sse_resyncs,
        ),
    ];
    for (name, help, value) in counters {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            value.load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(
        out,
        "# HELP conductor_sse_clients Open availability streams.\n# TYPE conductor_sse_clients gauge\nconductor_sse_clients {}",
        m.sse_clients.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP conductor_rejections_total Problem responses by type."
    );
    let _ = writeln!(out, "# TYPE conductor_rejections_total counter");
    for (name, n) in m
        .rejections
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        let _ = writeln!(
            out,
            "conductor_rejections_total{{type=\"/problems/{name}\"}} {n}"
        );
    }
    let _ = writeln!(out, "# HELP conductor_ready Whether the server is recovered and accepting.\n# TYPE conductor_ready gauge\nconductor_ready {}", u8::from(ready));
    if let Some(c) = conductor {
        let wal = c.log_stats();
        let gauges: [(&str, &str, &str, f64); 13] = [
            (
                "conductor_wal_records_written_total",
                "counter",
                "Records written to the log.",
                wal.records_written as f64,
            ),
            (
                "conductor_wal_events_written_total",
                "counter",
                "Events written to the log.",
                wal.events_written as f64,
            ),
            (
                "conductor_wal_appends_acknowledged_total",
                "counter",
                "Appends acknowledged durable.",
                wal.appends_acknowledged as f64,
            ),
            (
                "conductor_wal_flushes_total",
                "counter",
                "Group commits (flush plus fdatasync).",
                wal.flushes as f64,
            ),
            (
                "conductor_wal_fsync_seconds_total",
                "counter",
                "Time spent in flush plus fdatasync.",
                wal.sync_nanos_total as f64 / 1e9,
            ),
            (
                "conductor_wal_last_batch_events",
                "gauge",
                "Events in the last group commit.",
                wal.last_batch_events as f64,
            ),
            (
                "conductor_wal_last_batch_records",
                "gauge",
                "Records in the last group commit.",
                wal.last_batch_records as f64,
            ),
            (
                "conductor_wal_appends_rejected_busy_total",
                "counter",
                "Appends refused because the queue was full.",
                wal.appends_rejected_busy as f64,
            ),
            (
                "conductor_wal_durable_seq",
                "gauge",
                "Highest durable log sequence number.",
                u64::from_be_bytes(wal.durable_seq.to_key()) as f64,
            ),
            (
                "conductor_wal_poisoned",
                "gauge",
                "1 once a flush failed and the log takes no writes.",
                f64::from(u8::from(wal.poisoned)),
            ),
            (
                "conductor_mailbox_depth_max",
                "gauge",
                "Deepest actor mailbox right now.",
                c.deepest_mailbox() as f64,
            ),
            (
                "conductor_actor_restarts_total",
                "counter",
                "Actor failures the supervisor handled.",
                c.restarts() as f64,
            ),
            (
                "conductor_checkpoints_total",
                "counter",
                "Snapshots taken while running (the log folded and compacted).",
                c.checkpoints() as f64,
            ),
        ];
        for (name, kind, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let batch = if wal.flushes > 0 {
            wal.events_written as f64 / wal.flushes as f64
        } else {
            0.0
        };
        let _ = writeln!(out, "# HELP conductor_wal_batch_events_mean Mean events per group commit.\n# TYPE conductor_wal_batch_events_mean gauge\nconductor_wal_batch_events_mean {batch}");
        let _ = writeln!(out, "# HELP conductor_board_publications_total Availability board updates.\n# TYPE conductor_board_publications_total counter\nconductor_board_publications_total {}", c.board().published());
    }
    out
}
