//! Conductor's patch (vendor/README.md): the data file is written with zeros ahead of the log.
//!
//! sled appends its log at the end of its data file, so every flush of a growing file writes
//! past the end: the fdatasync that makes it durable must then commit the new size and newly
//! allocated extents through the ext4 journal, about twice the time of an fdatasync that only
//! overwrites allocated blocks (on this project's VM, 175-200 µs against about 100 µs for an
//! 8 KiB write). A thread of its own keeps the file written with zeros a segment ahead of where
//! the log writes, so the log's writes overwrite and its syncs stay short.
//!
//! Zeros are what sled itself writes into free segments at recovery (`MessageKind::Corrupted`
//! is 0): at recovery a zeroed segment is a free one, reused before the file grows again.
//!
//! Safety of the data: every log write calls [`Prewriter::ensure`] for the end of its range and
//! waits until the zeros reach it, so the zeros are written before any log byte in their range,
//! never after. `written_to` only grows between truncations; the zeros start at it, above every log write that has
//! passed `ensure`. A truncation by sled (of free segments at the end) calls
//! [`Rewind::rewind`] before any log write can go past the new end: `written_to` comes back to
//! it, and a chunk still being written for the range cut off is not counted.
//!
//! The zeros go through a handle of the thread's own, so that a writeback error of the log's
//! pages is reported to sled's handle, not consumed by ours. Each chunk is written out to the
//! device before the next, so that the log's fdatasync (which waits for every page of the file
//! under writeback) never waits for more than one chunk of zeros. (`O_DIRECT` zeros cost less
//! CPU but slowed the log: a direct write that extends the file holds the inode's lock through
//! the IO, and sled's buffered writes wait for it.) If the zeros fail (a full disk, say), the
//! thread stops and the log writes past the file's end as it would without this patch.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::LogOffset;

/// Zeros written and then written out to the device at a time (chunks end at multiples of
/// it; each goes to the file in writes of [`PAGE_BYTES`]).
const CHUNK_BYTES: usize = 64 * 1024;

/// The pause after a chunk while the zeros are more than half a segment ahead of the log
/// (64 MiB/s at most): every byte of zeros is one the device must also make durable, so they
/// go out evenly rather than in bursts that lengthen the log's syncs meanwhile.
const PACE: std::time::Duration = std::time::Duration::from_millis(1);

pub(crate) struct Prewriter {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// What sled's truncation holds to tell the prewriter the file is shorter.
#[derive(Clone)]
pub(crate) struct Rewind(Arc<Shared>);

struct Shared {
    file: File,
    segment: LogOffset,
    state: Mutex<State>,
    changed: Condvar,
}

struct State {
    /// How far the zeros reach: a log write ending below it goes ahead, one above it waits.
    /// The file's length when the thread started (or longer, if a truncation sled began while
    /// opening was still running: log writes below it then extend the file, as without this
    /// patch), then grows, and comes back on a truncation.
    written_to: LogOffset,
    /// Where the thread is asked to write zeros to.
    wanted_to: LogOffset,
    /// The furthest end passed to `ensure` (writes still waiting included), lowered on a
    /// truncation: how far ahead the zeros are, for the pacing.
    log_end: LogOffset,
    /// Counts truncations: a chunk written for an earlier one is not counted.
    generation: u64,
    /// The zeros failed or the thread ended: log writes no longer wait for them.
    stopped: bool,
    closed: bool,
}

impl Prewriter {
    /// Starts the thread for sled's data file at `path`.
    pub(crate) fn start(path: &Path, segment_size: usize) -> io::Result<Prewriter> {
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        let shared = Arc::new(Shared {
            file,
            segment: segment_size as LogOffset,
            state: Mutex::new(State {
                written_to: len,
                wanted_to: len,
                log_end: 0,
                generation: 0,
                stopped: false,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("sled.prewrite".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let _stop = StopOnExit(&shared);
                    shared.run()
                }
            })?;
        Ok(Prewriter { shared, thread: Some(thread) })
    }

    pub(crate) fn rewind_handle(&self) -> Rewind {
        Rewind(self.shared.clone())
    }

    /// Returns once the file is written up to `end` (at once, unless the thread has fallen
    /// behind), and asks for the next segment when `end` enters a new one.
    pub(crate) fn ensure(&self, end: LogOffset) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        state.log_end = state.log_end.max(end);
        // Through the end of the segment after the one `end` is in.
        let ahead = (end / shared.segment + 2) * shared.segment;
        if ahead > state.wanted_to && ahead - state.wanted_to >= shared.segment {
            state.wanted_to = ahead;
            shared.changed.notify_all();
        }
        while end > state.written_to && !state.stopped && !state.closed {
            state = shared.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl std::fmt::Debug for Rewind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Rewind")
    }
}

impl Rewind {
    /// The file was cut to `at`, before any log write past `at`.
    pub(crate) fn rewind(&self, at: LogOffset) {
        let mut state = self.0.lock();
        state.written_to = state.written_to.min(at);
        state.wanted_to = state.wanted_to.min(at);
        state.log_end = state.log_end.min(at);
        state.generation += 1;
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

/// Whatever ends the thread (a failure, or a panic), log writes stop waiting for it.
struct StopOnExit<'a>(&'a Shared);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        self.0.lock().stopped = true;
        self.0.changed.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes zeros whenever asked to, until closed or a write fails.
    fn run(&self) {
        let zeros = vec![0u8; CHUNK_BYTES];
        loop {
            let (from, to, generation) = {
                let mut state = self.lock();
                while !state.closed && state.wanted_to <= state.written_to {
                    state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                }
                if state.closed {
                    return;
                }
                (state.written_to, state.wanted_to, state.generation)
            };
            let mut at = from;
            loop {
                let mut state = self.lock();
                if state.closed {
                    return;
                }
                if state.generation != generation {
                    break;
                }
                state.written_to = state.written_to.max(at);
                if at == to {
                    break;
                }
                let pace = at > from && at > state.log_end + self.segment / 2;
                drop(state);
                self.changed.notify_all();
                if pace {
                    std::thread::sleep(PACE);
                }
                // Up to the next multiple of a chunk: whole pages after the first chunk.
                let chunk = CHUNK_BYTES as LogOffset;
                let n = std::cmp::min(chunk - at % chunk, to - at);
                let written = write_in_pages(&self.file, &zeros[..n as usize], at)
                    .and_then(|()| write_out(&self.file, at, n));
                if written.is_err() {
                    return;
                }
                at += n;
            }
            self.changed.notify_all();
            // The new size and extents, committed here rather than by the log's next sync.
            if self.file.sync_data().is_err() {
                return;
            }
        }
    }
}

/// The size of the writes the zeros go out in.
///
/// A buffered write creates page-cache folios as large as itself (ext4 has large folios since
/// Linux 6.16), and a folio is dirtied and written back whole: zeros written 64 KiB at a time
/// made every later log write of a few hundred bytes dirty 64 KiB, and every sync write all of
/// it back (measured: the syncer's writeback 365 MB/s for 20 MB/s written). Written a page at
/// a time, a sync writes back the pages the log touched.
const PAGE_BYTES: usize = 4096;

/// Writes `zeros` at `at` in writes of at most [`PAGE_BYTES`], each ending on a page boundary.
fn write_in_pages(file: &File, zeros: &[u8], at: LogOffset) -> io::Result<()> {
    let mut done = 0;
    while done < zeros.len() {
        let offset = at + done as LogOffset;
        let page = PAGE_BYTES as LogOffset;
        let n = std::cmp::min((page - offset % page) as usize, zeros.len() - done);
        file.write_all_at(&zeros[done..done + n], offset)?;
        done += n;
    }
    Ok(())
}

/// Writes a range's dirty pages to the device and waits: clean before the log's next
/// fdatasync, which would otherwise wait for them.
fn write_out(file: &File, at: LogOffset, len: LogOffset) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    #[allow(unsafe_code)]
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
    Ok(())
}
