//! [`WalConfig`], the knobs of the group-commit writer, and the hard limits they must stay
//! under.

use std::time::Duration;

use crate::error::WalError;

/// The most appends that may wait in the writer's channel, whatever the configuration says.
pub const QUEUE_APPENDS_MAX: usize = 1 << 16;

/// The most events the writer puts into one flush, whatever the configuration says.
pub const BATCH_EVENTS_MAX: usize = 1 << 20;

/// The longest the writer may wait for more appends before writing a batch.
pub const BATCH_WAIT_MAX: Duration = Duration::from_millis(10);

/// The longest the syncer may wait for a write in progress before it syncs.
pub const WRITE_WAIT_MAX: Duration = Duration::from_secs(1);

/// The longest a producer may be told to wait for room in the queue.
pub const ENQUEUE_TIMEOUT_MAX: Duration = Duration::from_secs(60);

/// The most events in one append. An append is written atomically in one flush, so this also
/// bounds how far one append can stretch a batch beyond `batch_events_max`.
pub const APPEND_EVENTS_MAX: usize = 1 << 16;

/// How the group-commit writer batches and how producers wait.
#[derive(Debug, Clone)]
pub struct WalConfig {
    /// Capacity of the channel between producers and the writer thread, in appends. Bounded so
    /// that a slow disk shows up as [`WalError::Busy`] instead of unbounded memory.
    pub queue_appends_max: usize,
    /// The writer stops collecting a batch once it holds this many events. Appends are never
    /// split across flushes, so a batch can exceed this by at most one append.
    pub batch_events_max: usize,
    /// After the queue runs empty, how long the writer waits for more appends before writing.
    /// Zero (the default) writes at once: appends that arrive while a flush runs are batched
    /// anyway, and waiting only adds latency when the producers are few.
    pub batch_wait: Duration,
    /// How long the syncer, about to sync, waits for appends the writer holds or has queued
    /// (at most one more written batch): a write takes microseconds, and appends that miss a
    /// sync wait for all of the next one. Zero syncs at once.
    pub write_wait: Duration,
    /// How long `append` waits for room in a full queue before returning [`WalError::Busy`].
    pub enqueue_timeout: Duration,
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            queue_appends_max: 4096,
            batch_events_max: 16 * 1024,
            batch_wait: Duration::ZERO,
            write_wait: Duration::from_micros(50),
            enqueue_timeout: Duration::from_secs(1),
        }
    }
}

impl WalConfig {
    pub(crate) fn validate(&self) -> Result<(), WalError> {
        if self.queue_appends_max == 0 || self.queue_appends_max > QUEUE_APPENDS_MAX {
            return Err(WalError::InvalidConfig(
                "queue_appends_max must be in 1..=QUEUE_APPENDS_MAX",
            ));
        }
        if self.batch_events_max == 0 || self.batch_events_max > BATCH_EVENTS_MAX {
            return Err(WalError::InvalidConfig(
                "batch_events_max must be in 1..=BATCH_EVENTS_MAX",
            ));
        }
        if self.batch_wait > BATCH_WAIT_MAX {
            return Err(WalError::InvalidConfig(
                "batch_wait must be at most BATCH_WAIT_MAX",
            ));
        }
        if self.write_wait > WRITE_WAIT_MAX {
            return Err(WalError::InvalidConfig(
                "write_wait must be at most WRITE_WAIT_MAX",
            ));
        }
        if self.enqueue_timeout > ENQUEUE_TIMEOUT_MAX {
            return Err(WalError::InvalidConfig(
                "enqueue_timeout must be at most ENQUEUE_TIMEOUT_MAX",
            ));
        }
        Ok(())
    }
}
