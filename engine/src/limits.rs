//! Every limit the engine enforces, in one place, unit last in the name.

/// Units on one request line.
pub const LINE_QTY_MAX: u64 = 1_000_000;
/// Lines in one reservation, order or return.
pub const REQUEST_LINES_MAX: usize = 1_000;
/// How long a hold may live before it expires.
pub const HOLD_TTL_SECONDS_MAX: u64 = 86_400;
/// Rules in one rule set.
pub const RULES_MAX: usize = 256;
/// Stock points one line may be split across, whatever a rule says.
pub const SPLITS_MAX: usize = 16;
/// How long an idempotency key is remembered.
pub const IDEMPOTENCY_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
