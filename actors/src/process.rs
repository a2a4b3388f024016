//! Process-wide settings the live system wants from the operating system.

/// Turns transparent huge pages off for this process.
///
/// The binaries' allocator (mimalloc) asks the kernel for huge pages on its arenas. During a
/// sale memory grows by tens of MiB per second and the allocator hands pages back and takes
/// them again, and every first touch of a huge page zeroes 2 MiB on the thread that touched it,
/// often the log writer's: measured, a fifth of all CPU time went to zeroing pages, and
/// holds/s rose by about a fifth with huge pages off (README, "Actors"). Returns whether the
/// kernel took the setting; on other systems, or if it refuses, nothing changes.
pub fn disable_transparent_huge_pages() -> bool {
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

/// Whether transparent huge pages are off for this process.
pub fn transparent_huge_pages_disabled() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: as above; PR_GET_THP_DISABLE only reads the process's flag.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn huge_pages_are_off_once_disabled() {
        assert!(disable_transparent_huge_pages());
        assert!(transparent_huge_pages_disabled());
    }
}
