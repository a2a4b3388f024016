//! Criterion benchmarks live in `benches/`; the bench binaries in `src/bin/` share the helpers
//! here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

/// CPU time this process has used so far, all threads, user and system. Per hold it is the
/// figure a noisy disk does not move: throughput is bounded by two cores over it, and by holds
/// per fsync over the fsync time.
pub fn process_cpu() -> Duration {
    // SAFETY: getrusage writes into the struct we hand it and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Runtime worker threads for a bench binary: `CONDUCTOR_RUNTIME_THREADS` if set (the server's
/// setting, for A/B runs), else the live system's default (one core fewer than the cores).
pub fn runtime_threads() -> usize {
    std::env::var("CONDUCTOR_RUNTIME_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(conductor_actors::process::default_runtime_threads)
}

/// Latencies recorded by many tasks into one histogram per thread. A histogram per requester
/// (256 of them, 280 KiB each) made every record a cache miss and their zeroing a burst of page
/// faults: 18 % of the runtime worker in the hot-SKU bench, time the system under test lost.
/// Threads take slots in turn; a slot's lock is uncontended unless more threads record than
/// there are slots.
pub struct Latencies {
    slots: Vec<Mutex<Histogram<u64>>>,
}

/// Slots for recording threads: the runtime's workers and the open-loop launcher fit.
const LATENCY_SLOTS: usize = 16;

/// The largest latency recorded, in µs; larger ones are saturated to it.
pub const LATENCY_US_MAX: u64 = 60_000_000;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SLOT: usize = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % LATENCY_SLOTS;
}

/// An empty latency histogram, µs from 1 to [`LATENCY_US_MAX`], three significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds")
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            slots: (0..LATENCY_SLOTS)
                .map(|_| Mutex::new(latency_histogram()))
                .collect(),
        }
    }

    /// Records `count` answers that each took `micros`.
    pub fn record_n(&self, micros: u64, count: u64) {
        let slot = SLOT.with(|s| *s);
        // A recorder that panicked mid-record left a histogram that is still whole.
        let mut histogram = self.slots[slot].lock().unwrap_or_else(|e| e.into_inner());
        histogram.saturating_record_n(micros.max(1), count);
    }

    pub fn record(&self, micros: u64) {
        self.record_n(micros, 1);
    }

    /// Every slot's latencies in one histogram.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = latency_histogram();
        for slot in &self.slots {
            let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
            all.add(&*slot).expect("same bounds");
        }
        all
    }
}

impl Default for Latencies {
    fn default() -> Latencies {
        Latencies::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_recorded_on_several_threads_merge_into_one_histogram() {
        let latencies = Latencies::new();
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let latencies = &latencies;
                scope.spawn(move || {
                    latencies.record(100 * (t + 1));
                    latencies.record_n(1_000, 10);
                });
            }
        });
        let all = latencies.merged();
        assert_eq!(all.len(), 44);
        assert_eq!(all.count_at(1_000), 40);
        assert_eq!(all.min(), 100);
    }

    #[test]
    fn a_latency_beyond_the_bound_is_saturated_and_zero_counts_as_one_microsecond() {
        let latencies = Latencies::new();
        latencies.record(0);
        latencies.record(LATENCY_US_MAX * 10);
        let all = latencies.merged();
        assert_eq!(all.len(), 2);
        assert_eq!(all.min(), 1);
        assert!(all.max() >= LATENCY_US_MAX);
    }
}
