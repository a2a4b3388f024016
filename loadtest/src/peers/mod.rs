//! What shops use today, run side by side with Conductor: [`redis`] (Lua over its own
//! protocol), [`postgres`] (a conditional UPDATE and an INSERT), and [`service`] (either behind
//! a thin axum checkout service). [`compare`] runs them all from the same workload.

pub mod compare;
pub mod postgres;
pub mod redis;
pub mod service;
