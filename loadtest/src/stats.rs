//! What a run measures: one HdrHistogram per operation, refusals and errors by kind, and
//! throughput over time.
//!
//! Workers record into a [`Local`] of their own (no lock on the hot path) and merge it into the
//! [`Recorder`] when they stop; the live counters are atomics, read by the progress bar and the
//! throughput sampler.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// The largest latency a histogram holds, in microseconds (two minutes); slower answers are
/// recorded as this value rather than dropped, so that a stall still shows in the maximum.
pub const LATENCY_US_MAX: u64 = 120_000_000;
/// Significant figures of every histogram: 0.1 % resolution at any magnitude.
const HISTOGRAM_SIGFIGS: u8 = 3;
/// The quantiles reported for every operation.
pub const QUANTILES: [(&str, f64); 5] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that new_with_bounds accepts; a failure here is a programming error.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, HISTOGRAM_SIGFIGS).expect("valid bounds")
}

/// One worker's figures, merged into the recorder at the end.
#[derive(Default)]
pub struct Local {
    pub latency: BTreeMap<&'static str, Histogram<u64>>,
    /// Business refusals ("insufficient-stock"): answers, not failures.
    pub refusals: BTreeMap<String, u64>,
    /// Failures by kind ("timeout", "http-503", "connect").
    pub errors: BTreeMap<String, u64>,
}

impl Local {
    /// Records one successful operation of kind `op` that took `took`.
    pub fn ok(&mut self, live: &Live, op: &'static str, took: Duration) {
        let micros = (took.as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latency
            .entry(op)
            .or_insert_with(histogram)
            .saturating_record(micros);
        live.ops.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&mut self, live: &Live, op: &'static str, kind: &str) {
        *self.refusals.entry(format!("{op}: {kind}")).or_default() += 1;
        live.refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&mut self, live: &Live, op: &'static str, kind: &str) {
        *self.errors.entry(format!("{op}: {kind}")).or_default() += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn merge(&mut self, other: Local) {
        for (op, h) in other.latency {
            let mine = self.latency.entry(op).or_insert_with(histogram);
            // Both come from `histogram()`, with the same bounds: add cannot fail.
            let _ = mine.add(&h);
        }
        for (k, n) in other.refusals {
            *self.refusals.entry(k).or_default() += n;
        }
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
    }
}

/// Counters every worker bumps, read while the run goes on.
#[derive(Default)]
pub struct Live {
    pub ops: AtomicU64,
    pub refusals: AtomicU64,
    pub errors: AtomicU64,
}

/// Everything a run records.
pub struct Recorder {
    pub live: Live,
    merged: Mutex<Local>,
    /// (seconds since start, successful operations per second in the slice before it).
    timeline: Mutex<Vec<(f64, f64)>>,
    pub started: Instant,
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder {
            live: Live::default(),
            merged: Mutex::new(Local::default()),
            timeline: Mutex::new(Vec::new()),
            started: Instant::now(),
        }
    }
}

impl Recorder {
    pub fn merge(&self, local: Local) {
        lock(&self.merged).merge(local);
    }

    pub fn sample(&self, at: f64, per_s: f64) {
        lock(&self.timeline).push((at, per_s));
    }

    pub fn take(&self) -> (Local, Vec<(f64, f64)>) {
        (
            std::mem::take(&mut *lock(&self.merged)),
            std::mem::take(&mut *lock(&self.timeline)),
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The figures of one operation, as printed and written to JSON.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct OpFigures {
    pub op: String,
    pub count: u64,
    pub per_s: f64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub p9999_us: u64,
    pub max_us: u64,
    /// (percentile, microseconds) points of the whole distribution, for the plot.
    pub curve: Vec<(f64, u64)>,
}

pub fn figures(op: &str, h: &Histogram<u64>, elapsed: Duration) -> OpFigures {
    let q = |x: f64| h.value_at_quantile(x);
    // Percentiles 0, 50, 75, 87.5, ... up to 99.999: the shape HdrHistogram plots use.
    let mut curve = Vec::new();
    let mut remaining = 1.0f64;
    while remaining > 1e-5 {
        let quantile = 1.0 - remaining;
        curve.push((quantile * 100.0, q(quantile)));
        remaining /= 2.0;
    }
    curve.push((100.0, h.max()));
    OpFigures {
        op: op.to_owned(),
        count: h.len(),
        per_s: h.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        mean_us: h.mean(),
        p50_us: q(QUANTILES[0].1),
        p90_us: q(QUANTILES[1].1),
        p99_us: q(QUANTILES[2].1),
        p999_us: q(QUANTILES[3].1),
        p9999_us: q(QUANTILES[4].1),
        max_us: h.max(),
        curve,
    }
}
