//! Time, as the engine sees it: a number passed in by the caller, never read from a clock.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn plus_ms(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    pub fn plus_seconds(self, seconds: u64) -> Timestamp {
        self.plus_ms(seconds.saturating_mul(1000))
    }
}
