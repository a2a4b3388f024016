//! Conductor's patch (vendor/README.md): the data file is written with zeros ahead of the log.
//!
//! sled appends its log at the end of its data file, so every flush of a growing file writes
//! past the end: the fdatasync that makes it durable must then commit the new size and newly
//! allocated extents through the ext4 journal, about twice the time of an fdatasync that only
//! overwrites allocated blocks (on this project's VM, 175-200 µs against about 100 µs for an
//! 8 KiB write). A thread of its own keeps the file written with zeros a segment ahead of where
//! the log writes, so the log's writes overwrite and its syncs stay short.
//!
//! Zeros are what sled itself writes into a segment it frees (`MessageKind::Corrupted` is 0):
//! at recovery a zeroed segment is a free one, reused before the file grows again.
//!
//! Safety of the data: every log write calls [`Prewriter::ensure`] for the end of its range and
//! waits until the zeros reach it, so the zeros are written before any log byte in their range,
//! never after. `written_to` only grows; the zeros start at it, above every log write that has
//! passed `ensure`. A truncation by sled (of free segments at the end) leaves `written_to`
//! above the file's end: writes there extend the file as they would without this patch.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::LogOffset;

/// Zeros written per system call; each chunk is written out to the device before the next, so
/// that an fdatasync of the log never waits for more than one chunk of zeros.
const CHUNK_BYTES: usize = 64 * 1024;

/// The pause after a chunk while the zeros are more than half a segment ahead of the log
/// (64 MiB/s at most): every byte of zeros is one the device must also make durable, so they
/// go out evenly rather than in bursts that lengthen the log's syncs meanwhile.
const PACE: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) struct Prewriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    file: crate::Arc<File>,
    segment: LogOffset,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// How far the zeros reach: a log write ending below it goes ahead, one above it waits.
    /// The file's length at the first `ensure` (`None` before), then only grows.
    written_to: Option<LogOffset>,
    /// Where the thread is asked to write zeros to.
    wanted_to: LogOffset,
    /// The end of the furthest log write so far.
    log_end: LogOffset,
    /// The first failure; every later `ensure` reports it.
    failed: Option<(io::ErrorKind, String)>,
    closed: bool,
}

impl Prewriter {
    pub(crate) fn start(file: crate::Arc<File>, segment_size: usize) -> io::Result<Prewriter> {
        let shared = Arc::new(Shared {
            file,
            segment: segment_size as LogOffset,
            state: Mutex::new(State {
                written_to: None,
                wanted_to: 0,
                log_end: 0,
                failed: None,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("sled.prewrite".into())
            .spawn({
                let shared = shared.clone();
                move || shared.run()
            })?;
        Ok(Prewriter { shared, thread: Some(thread) })
    }

    /// Returns once the file is written up to `end` (at once, unless the thread has fallen
    /// behind), and asks for the next segment when `end` enters a new one.
    pub(crate) fn ensure(&self, end: LogOffset) -> io::Result<()> {
        let shared = &*self.shared;
        let mut state = shared.lock();
        let written_to = match state.written_to {
            Some(to) => to,
            None => {
                let len = shared.file.metadata()?.len();
                state.written_to = Some(len);
                state.wanted_to = len;
                len
            }
        };
        state.log_end = state.log_end.max(end);
        // Through the end of the segment after the one `end` is in.
        let ahead = (end / shared.segment + 2) * shared.segment;
        if ahead > state.wanted_to && ahead - state.wanted_to >= shared.segment {
            state.wanted_to = ahead;
            shared.changed.notify_all();
        }
        if end <= written_to {
            return Ok(());
        }
        loop {
            if let Some((kind, message)) = &state.failed {
                return Err(io::Error::new(*kind, message.clone()));
            }
            if state.closed {
                return Err(io::Error::other("sled's prewrite thread stopped"));
            }
            if state.written_to.is_some_and(|to| to >= end) {
                return Ok(());
            }
            state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Prewriter {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn run(&self) {
        let zeros = vec![0u8; CHUNK_BYTES];
        loop {
            let (from, to) = {
                let mut state = self.lock();
                loop {
                    if state.closed || state.failed.is_some() {
                        return;
                    }
                    match state.written_to {
                        Some(from) if state.wanted_to > from => {
                            break (from, state.wanted_to)
                        }
                        _ => {
                            state = self
                                .changed
                                .wait(state)
                                .unwrap_or_else(|e| e.into_inner())
                        }
                    }
                }
            };
            let mut at = from;
            while at < to {
                if self.lock().closed {
                    return;
                }
                let n = std::cmp::min(CHUNK_BYTES as LogOffset, to - at);
                let written = self
                    .file
                    .write_all_at(&zeros[..n as usize], at)
                    .and_then(|()| write_out(&self.file, at, n));
                if !self.publish(written.map(|()| at + n)) {
                    return;
                }
                at += n;
                if at < to && at > self.lock().log_end + self.segment / 2 {
                    std::thread::sleep(PACE);
                }
            }
            // The new size and extents, committed here rather than by the log's next sync.
            if !self.publish(self.file.sync_data().map(|()| to)) {
                return;
            }
        }
    }

    /// Records how far the zeros reach (a log write may overwrite them as soon as they are in
    /// the page cache: a crash that loses them leaves a hole, which reads as zeros too), or the
    /// failure; false if the thread must stop.
    fn publish(&self, written: io::Result<LogOffset>) -> bool {
        let mut state = self.lock();
        let ok = match written {
            Ok(to) => {
                state.written_to = Some(to);
                true
            }
            Err(error) => {
                state.failed = Some((error.kind(), error.to_string()));
                false
            }
        };
        self.changed.notify_all();
        ok
    }
}

/// Writes a range's dirty pages to the device and waits, so that they are clean before the
/// log's next fdatasync (which would otherwise wait for them).
fn write_out(file: &File, at: LogOffset, len: LogOffset) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let ret = unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                at as i64,
                len as i64,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )
        };
        if ret < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, at, len);
    Ok(())
}
