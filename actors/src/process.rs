//! Process-wide settings the live system wants from the operating system, and how many runtime
//! workers to start.

/// Turns transparent huge pages off for this process.
///
/// The binaries' allocator (mimalloc) asks the kernel for huge pages on its arenas. During a
/// sale memory grows by tens of MiB per second and the allocator hands pages back and takes
/// them again, and every first touch of a huge page zeroes 2 MiB on the thread that touched it,
/// often the log writer's: measured, a fifth of all CPU time went to zeroing pages, and
/// holds/s rose by about a fifth with huge pages off (README, "Actors"). Returns whether the
/// kernel took the setting; on other systems, or if it refuses, nothing changes.
fn disable_transparent_huge_pages() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers and touches no memory of
        // ours.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`; the `-sys` crate names
/// no constant for it). The test below pins it by the option's documented default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Settings for a process that runs the live system: huge pages off (above), and mimalloc
/// keeps the pages it frees instead of handing them back to the kernel.
///
/// By default mimalloc returns memory that has been free for a second; a sale frees and
/// allocates the same few hundred MiB over and over (reservation records, log batches, hold
/// maps), so the pages came straight back, each first touch zeroed by the kernel
/// (`clear_page_erms` ~10 % of CPU in a batch run). Keeping them, alternating runs: batches
/// 234–264 k vs 200–236 k holds/s, hot SKU median 176 k vs 164 k (README, "Actors"). The
/// price is that resident memory stays at its peak: 1 M passivated orders 1.09 GiB, not 0.94.
pub fn prepare() {
    disable_transparent_huge_pages();
    // SAFETY: mi_option_set stores an integer in mimalloc's option table; any value is valid
    // for purge_delay (-1 = never purge) and it may be called at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// How many tokio worker threads a process that runs the live system should start: one core
/// fewer than the machine has, at least one.
///
/// The log's threads (writer, syncer) and sled's IO threads work off the runtime on every
/// durable change; with a worker on every core they queue behind the workers for a core, and the
/// workers wake and steal from each other for every burst of answers. On 2 cores one worker
/// measured more than two, alternating runs in one go (README, "The live system" and "The HTTP
/// gateway"): over HTTP 38.6–39.3 k vs 32.8–34.8 k durable holds/s at 64 connections, 32–33 vs
/// 39–41 µs of server CPU per hold; in process, hot SKU 213–231 k vs 193–201 k holds/s.
pub fn default_runtime_threads() -> usize {
    runtime_threads_for(std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn runtime_threads_for(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_leaves_one_core_to_the_log_but_always_has_a_worker() {
        assert_eq!(runtime_threads_for(0), 1);
        assert_eq!(runtime_threads_for(1), 1);
        assert_eq!(runtime_threads_for(2), 1);
        assert_eq!(runtime_threads_for(16), 15);
        assert!(default_runtime_threads() >= 1);
    }

    /// Whether transparent huge pages are off for this process.
    #[cfg(target_os = "linux")]
    fn transparent_huge_pages_disabled() -> bool {
        // SAFETY: PR_GET_THP_DISABLE takes plain integers and only reads the process's flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }

    #[test]
    fn the_purge_delay_option_is_the_one_prepare_sets() {
        // mimalloc documents purge_delay's default as 1000 ms, and no other option defaults
        // to 1000: if the enum moved, this index names another option and this fails.
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads mimalloc's option table.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000);
        prepare();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, -1);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_off_once_disabled() {
        assert!(disable_transparent_huge_pages());
        assert!(transparent_huge_pages_disabled());
    }
}
