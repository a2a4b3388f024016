//! Conductor's domain engine: pure and deterministic. It does no I/O, reads no clock (time is
//! an argument) and spawns nothing; the actors, the log and the gateway move its events around.

pub mod checkout;
pub mod expiry;
pub mod fulfilment;
pub mod hash;
pub mod idempotency;
pub mod ids;
pub mod inventory;
pub mod limits;
pub mod network;
pub mod order;
pub mod reservation;
pub mod returns;
pub mod sourcing;
pub mod state;
pub mod time;
