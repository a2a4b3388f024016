//! Warehouse execution, the pure part: where stock sits, which bins a pick takes from, how a
//! picker walks, how orders share a tote, how units go into cartons and how much to keep.
//!
//! * [`layout`]: single-block warehouse geometry, bin addresses, per-bin stock and the
//!   rectilinear travel metric; checks that bins add up to on_hand.
//! * [`routing`]: pick tours: the exact Ratliff & Rosenthal programme, S-shape, largest gap and
//!   combined heuristics, and a brute-force oracle for tests.
//! * [`removal`]: which bins a pick takes from (FIFO/FEFO, then nearest, then emptiest).
//! * [`putaway`]: which bins received units go to, by velocity class.
//! * [`batching`]: orders into tote-bounded pick tours (seed and Clarke–Wright savings), and
//!   waveless insertion into open tours.
//! * [`cartonization`]: cartons for a shipment, first-fit decreasing with 3D extreme-point
//!   placement.
//! * [`forecast`]: demand classification (ADI / CV²), SES and Syntetos–Boylan forecasts,
//!   reorder points, MASE and bias.
//!
//! **Architecture Invariant:** nothing here reads a clock, does I/O or draws random numbers;
//! times are [`crate::time::Timestamp`] arguments and every result depends only on the inputs.

pub mod batching;
pub mod cartonization;
pub mod forecast;
pub mod layout;
pub mod putaway;
pub mod removal;
pub mod routing;
