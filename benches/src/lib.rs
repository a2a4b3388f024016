//! Criterion benchmarks live in `benches/`; the bench binaries in `src/bin/` share the helpers
//! here.

use std::time::Duration;

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
