//! Conductor's live system: actors on ractor that hold state in memory and log every change
//! before they acknowledge it.
//!
//! - [`conductor`]: the in-process handle ([`Conductor`]) with every operation of the API; start
//!   (recovery), supervision and stop.
//! - [`stock_point`]: the stock point actor, only writer of one stock point's inventory.
//! - [`orchestrator`]: plans and places reservations, confirms them into orders, expires them,
//!   re-sources short picks; owns the network, SKU catalog, rules and limits.
//! - [`orders`]: one actor per live order, and the desk that routes to them and passivates them.
//! - [`warehouse`]: the WMS executor of one stock point: pick, pack and ship tasks.
//! - [`board`]: the availability board, read lock-free by planners and storefronts.
//! - [`directory`], [`mailbox`], [`call`], [`deadlines`], [`once`]: finding actors, bounded
//!   admission, waiting with timeouts (without a timer per call), one-shot callbacks.
//! - [`intake`]: where concurrent checkouts queue, to reach the orchestrator as one batch.
//! - [`clock`], [`error`]: time, and errors versus business refusals.
//! - [`process`]: process-wide settings the binaries apply at start (huge pages off).

pub mod board;
pub mod call;
pub mod clock;
pub mod conductor;
pub mod deadlines;
pub mod directory;
pub mod error;
pub mod intake;
pub mod mailbox;
pub mod once;
pub mod orchestrator;
pub mod orders;
pub mod process;
pub mod stock_point;
pub mod warehouse;

pub use conductor::{Conductor, Config};

/// The producer side of the write-ahead log of engine events.
pub type Log = conductor_persistence::Appender<conductor_engine::state::Event>;
