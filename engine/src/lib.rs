//! Conductor's domain engine: pure and deterministic. It does no I/O, reads no clock (time is
//! an argument) and spawns nothing; the actors, the log and the gateway move its events around.

pub mod ids;
pub mod limits;
pub mod time;
pub mod network;
pub mod order;
pub mod returns;
pub mod hash;
pub mod inventory;
pub mod sourcing;
pub mod checkout;
pub mod state;
pub mod idempotency;
pub mod reservation;
pub mod fulfilment;
