//! The order lifecycle: an event-sourced state machine from allocation to delivery.
//!
//! This module owns [`Order`], its [`Fulfilment`]s (the part of an order one stock point
//! fulfils) and every [`OrderEvent`] that changes them. It follows the engine's decide/apply
//! split:
//!
//! - *decision functions* ([`create`], [`release`], [`start_pick`], [`pick`], [`pack`], [`ship`],
//!   [`deliver`], [`fill_backorder`], [`resource`], [`write_off_shortage`], [`cancel`],
//!   [`open_return`]) read an order, validate a command and return the event to record, or a
//!   typed [`OrderError`] when the command is illegal in the current state;
//! - [`apply`] (and [`Order::from_created`] for the first event) changes the order. It is the
//!   only code that mutates an order, and it runs both live and on replay, so that recovery
//!   cannot drift from live behaviour.
//!
//! The order's API status ([`OrderStatus`]) is never stored: it is derived from the fulfilments
//! by [`Order::status`], so it cannot disagree with them.
//!
//! A short pick does not re-source anything here: it records a [`Shortage`] and hands a
//! [`ResourceRequest`] to the orchestrator, which plans against the network and comes back with
//! [`resource`] (a new fulfilment elsewhere) or [`write_off_shortage`] (nowhere to get it).

use serde::{Deserialize, Serialize};

use crate::ids::{FulfilmentId, OrderId, Qty, ReservationId, ReturnId, SkuId, StockPointId};
use crate::limits::{LINE_QTY_MAX, REQUEST_LINES_MAX};
use crate::network::Channel;
use crate::time::Timestamp;

/// Fulfilments one order may have, counting those added by re-sourcing short picks. Every line
/// may be split across [`crate::limits::SPLITS_MAX`] stock points and re-sourced a few times;
/// beyond this bound something is looping.
pub const ORDER_FULFILMENTS_MAX: usize = 4_096;
/// Returns one order may have.
pub const ORDER_RETURNS_MAX: usize = 1_000;
/// Longest carrier name or tracking number, in bytes.
pub const SHIPMENT_FIELD_BYTES_MAX: usize = 128;

/// One line of the order as the customer asked for it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: SkuId,
    pub qty: Qty,
}

pub use crate::inventory::Source;

/// One stock point's share of an order line, as the sourcing plan allocated it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Allocation {
    pub sku: SkuId,
    pub qty: Qty,
    pub source: Source,
}

/// One SKU of a fulfilment and how far its units have got.
///
/// Invariants (checked by [`Order::check_invariants`]): `picked + short <= qty` and
/// `shipped <= picked`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FulfilmentLine {
    pub sku: SkuId,
    /// Units allocated at this stock point.
    pub qty: Qty,
    /// Units confirmed picked.
    pub picked: Qty,
    /// Units found missing at pick time; they moved to a [`Shortage`] of the order. Kept here
    /// (rather than shrinking `qty`) so the fulfilment still shows what was asked of it.
    pub short: Qty,
    /// Units that left with the shipment; equal to `picked` once shipped, zero before.
    pub shipped: Qty,
    pub source: Source,
}

impl FulfilmentLine {
    /// Units still to be picked or reported short.
    pub fn remaining(&self) -> Qty {
        self.qty.saturating_sub(self.picked + self.short)
    }
}

/// Where a fulfilment is in its life. The order's [`OrderStatus`] is derived from these.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfilmentStatus {
    /// Allocated on hand, not yet released to the stock point.
    Allocated,
    /// At least one line waits for incoming stock; cannot be released yet.
    Backordered,
    /// Released to the stock point; its tasks are in the task list.
    Released,
    /// Picking has started.
    Picking,
    /// Every line is picked or reported short, and at least one unit was picked.
    Picked,
    Packed,
    Shipped,
    Delivered,
    /// Cancelled with the order, or every unit was short at pick time.
    Cancelled,
}

impl FulfilmentStatus {
    /// Shipped or beyond: the units have left and can no longer be cancelled.
    pub fn has_shipped(self) -> bool {
        matches!(
            self,
            FulfilmentStatus::Shipped | FulfilmentStatus::Delivered
        )
    }

    /// Still holding an allocation at its stock point that a cancellation must release.
    pub fn is_cancellable(self) -> bool {
        !self.has_shipped() && self != FulfilmentStatus::Cancelled
    }
}

/// The carrier's handle on a shipped fulfilment.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Shipment {
    pub carrier: String,
    pub tracking: String,
}

/// The part of an order that one stock point fulfils. SKUs are unique within a fulfilment, so
/// a (fulfilment, SKU) pair names one line.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Fulfilment {
    pub id: FulfilmentId,
    pub stock_point: StockPointId,
    pub lines: Vec<FulfilmentLine>,
    pub status: FulfilmentStatus,
    /// Set exactly when the status is shipped or delivered.
    pub shipment: Option<Shipment>,
}

impl Fulfilment {
    /// A fresh fulfilment for a sourcing plan's allocations at one stock point: backordered if
    /// any line waits for incoming stock, allocated otherwise.
    pub fn new(id: FulfilmentId, stock_point: StockPointId, allocations: &[Allocation]) -> Self {
        let lines: Vec<FulfilmentLine> = allocations
            .iter()
            .map(|a| FulfilmentLine {
                sku: a.sku,
                qty: a.qty,
                picked: Qty::ZERO,
                short: Qty::ZERO,
                shipped: Qty::ZERO,
                source: a.source,
            })
            .collect();
        let status = initial_status(&lines);
        Fulfilment {
            id,
            stock_point,
            lines,
            status,
            shipment: None,
        }
    }

    pub fn line(&self, sku: SkuId) -> Option<&FulfilmentLine> {
        self.lines.iter().find(|l| l.sku == sku)
    }

    fn line_mut(&mut self, sku: SkuId) -> Option<&mut FulfilmentLine> {
        self.lines.iter_mut().find(|l| l.sku == sku)
    }

    fn picked_total(&self) -> Qty {
        self.lines.iter().map(|l| l.picked).sum()
    }
}

fn initial_status(lines: &[FulfilmentLine]) -> FulfilmentStatus {
    if lines.iter().any(|l| l.source == Source::Incoming) {
        FulfilmentStatus::Backordered
    } else {
        FulfilmentStatus::Allocated
    }
}

/// Units found missing at pick time, waiting for the orchestrator to re-source them.
///
/// A shortage is never removed, only closed, so that for every SKU the sum over fulfilments of
/// `qty - short` plus the sum over shortages of `missing - resourced` equals the ordered
/// quantity at all times (see [`Order::check_invariants`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Shortage {
    /// The fulfilment that came up short; with `sku` it names the shortage.
    pub from: FulfilmentId,
    pub sku: SkuId,
    pub missing: Qty,
    /// Units since allocated to new fulfilments by [`OrderEvent::Resourced`].
    pub resourced: Qty,
    /// Written off, or cancelled with the order: nothing more will be re-sourced.
    pub closed: bool,
}

impl Shortage {
    /// Units still waiting to be re-sourced.
    pub fn outstanding(&self) -> Qty {
        if self.closed {
            Qty::ZERO
        } else {
            self.missing.saturating_sub(self.resourced)
        }
    }
}

/// A return opened against this order, as far as the order is concerned: which units came back.
/// Where they go and the refund are the return's own record ([`crate::returns`]).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderReturn {
    pub id: ReturnId,
    pub lines: Vec<OrderLine>,
}

/// One recorded event and when it happened, in the order applied.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OrderHistoryEntry {
    pub at: Timestamp,
    pub event: OrderEvent,
}

/// A confirmed order. Built only by [`Order::from_created`] and changed only by [`apply`].
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    /// The reservation it was confirmed from; `None` for orders placed in one step.
    pub reservation: Option<ReservationId>,
    pub channel: Channel,
    pub customer_ref: Option<String>,
    /// What the customer ordered, one line per SKU.
    pub lines: Vec<OrderLine>,
    /// In creation order; re-sourced fulfilments are appended.
    pub fulfilments: Vec<Fulfilment>,
    pub shortages: Vec<Shortage>,
    pub returns: Vec<OrderReturn>,
    /// The customer or operator cancelled. Fulfilments already shipped stay shipped.
    pub cancelled: bool,
    pub created_at: Timestamp,
    /// Every event applied, the `Created` event first; the API's `events` and the replay source.
    pub history: Vec<OrderHistoryEntry>,
}

/// The order's status in the API, derived from its fulfilments by [`Order::status`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Allocated,
    Released,
    Picking,
    Packed,
    PartiallyShipped,
    Shipped,
    Delivered,
    Cancelled,
    Backordered,
}

/// Every change to an order. Events are facts: [`apply`] trusts them, the decision functions
/// are what refuse illegal commands.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
// Externally tagged (serde's default) because the log's bincode cannot read internally
// tagged enums; the gateway renders `{"at","type",..}` for the API.
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// The order was confirmed with its initial allocation, one fulfilment per stock point.
    Created {
        id: OrderId,
        reservation: Option<ReservationId>,
        channel: Channel,
        customer_ref: Option<String>,
        lines: Vec<OrderLine>,
        fulfilments: Vec<Fulfilment>,
    },
    /// Handed to its stock point; its tasks appear in the task list.
    Released {
        fulfilment: FulfilmentId,
    },
    PickStarted {
        fulfilment: FulfilmentId,
    },
    /// `qty` more units of `sku` were picked.
    Picked {
        fulfilment: FulfilmentId,
        sku: SkuId,
        qty: Qty,
    },
    /// The picker found only `picked` of the units still asked for; `missing` go to a shortage.
    ShortPicked {
        fulfilment: FulfilmentId,
        sku: SkuId,
        picked: Qty,
        missing: Qty,
    },
    /// A new fulfilment at another stock point covers (part of) the shortage of `from`.
    Resourced {
        from: FulfilmentId,
        fulfilment: Fulfilment,
    },
    /// The orchestrator found nowhere to re-source the shortage; the customer gets fewer units.
    ShortageWrittenOff {
        from: FulfilmentId,
        sku: SkuId,
        qty: Qty,
    },
    /// Incoming stock for a backordered line was received; the line is now on hand.
    BackorderFilled {
        fulfilment: FulfilmentId,
        sku: SkuId,
    },
    Packed {
        fulfilment: FulfilmentId,
    },
    Shipped {
        fulfilment: FulfilmentId,
        carrier: String,
        tracking: String,
    },
    Delivered {
        fulfilment: FulfilmentId,
    },
    /// The order was cancelled; these fulfilments (every one not yet shipped) are cancelled.
    Cancelled {
        fulfilments: Vec<FulfilmentId>,
    },
    /// The customer is sending these units back.
    ReturnOpened {
        ret: ReturnId,
        lines: Vec<OrderLine>,
    },
}

/// What a command was trying to do, for [`OrderError::InvalidTransition`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderCommand {
    Release,
    StartPick,
    Pick,
    Pack,
    Ship,
    Deliver,
    FillBackorder,
}

/// Why a command was refused. Every variant is a business "no" (HTTP 404, 409 or 422), never a
/// bug.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum OrderError {
    #[error("the order has no lines")]
    NoLines,
    #[error("the order has more than {REQUEST_LINES_MAX} lines")]
    TooManyLines,
    #[error("sku {0:?} appears on more than one order line")]
    DuplicateLine(SkuId),
    #[error("quantity {qty} for sku {sku:?} is outside 1..={LINE_QTY_MAX}")]
    QtyOutOfRange { sku: SkuId, qty: Qty },
    #[error("the order has no fulfilments")]
    NoFulfilments,
    #[error("the order would have more than {ORDER_FULFILMENTS_MAX} fulfilments")]
    TooManyFulfilments,
    #[error("fulfilment {0} appears twice")]
    DuplicateFulfilment(FulfilmentId),
    #[error("fulfilment {fulfilment} has sku {sku:?} on more than one line")]
    DuplicateFulfilmentLine {
        fulfilment: FulfilmentId,
        sku: SkuId,
    },
    #[error("fulfilment {0} is not a fresh allocation")]
    NotFreshFulfilment(FulfilmentId),
    #[error(
        "sku {sku:?}: fulfilments allocate {allocated} units but the order asks for {ordered}"
    )]
    AllocationMismatch {
        sku: SkuId,
        ordered: Qty,
        allocated: Qty,
    },
    #[error("no fulfilment {0} on this order")]
    UnknownFulfilment(FulfilmentId),
    #[error("fulfilment {fulfilment} has no line for sku {sku:?}")]
    UnknownLine {
        fulfilment: FulfilmentId,
        sku: SkuId,
    },
    #[error("cannot {command:?} fulfilment {fulfilment} while it is {status:?}")]
    InvalidTransition {
        fulfilment: FulfilmentId,
        command: OrderCommand,
        status: FulfilmentStatus,
    },
    #[error("fulfilment {fulfilment} sku {sku:?}: {qty} units picked but only {remaining} remain")]
    PickExceedsRemaining {
        fulfilment: FulfilmentId,
        sku: SkuId,
        remaining: Qty,
        qty: Qty,
    },
    #[error("fulfilment {fulfilment} sku {sku:?} is not waiting for incoming stock")]
    NotBackordered {
        fulfilment: FulfilmentId,
        sku: SkuId,
    },
    #[error("carrier and tracking must be 1 to {SHIPMENT_FIELD_BYTES_MAX} bytes")]
    InvalidShipment,
    #[error("no outstanding shortage of sku {sku:?} from fulfilment {from}")]
    NoShortage { from: FulfilmentId, sku: SkuId },
    #[error("sku {sku:?}: {qty} units re-sourced but only {outstanding} are short")]
    ResourceExceedsShortage {
        sku: SkuId,
        outstanding: Qty,
        qty: Qty,
    },
    #[error("the order is already cancelled")]
    AlreadyCancelled,
    #[error("the order is fully shipped; nothing is left to cancel")]
    FullyShipped,
    #[error("return {0} already exists")]
    DuplicateReturn(ReturnId),
    #[error("the order has more than {ORDER_RETURNS_MAX} returns")]
    TooManyReturns,
    #[error("sku {sku:?}: {requested} units returned but only {returnable} shipped and not yet returned")]
    ReturnExceedsShipped {
        sku: SkuId,
        returnable: Qty,
        requested: Qty,
    },
}

/// A pick confirmation's outcome: either the units asked for, or a short pick that the
/// orchestrator must re-source.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickOutcome {
    /// Record `event` ([`OrderEvent::Picked`]).
    Picked(OrderEvent),
    /// Record `event` ([`OrderEvent::ShortPicked`]) and send `request` to the orchestrator.
    Short {
        event: OrderEvent,
        request: ResourceRequest,
    },
}

/// Units the orchestrator must find elsewhere after a short pick.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ResourceRequest {
    pub order: OrderId,
    /// The fulfilment that came up short; [`resource`] names it as `from`.
    pub from: FulfilmentId,
    pub sku: SkuId,
    pub missing: Qty,
    /// Stock points that already came up short for this SKU on this order: the plan must not
    /// send the picker back to an empty shelf. Sorted, without duplicates.
    pub exclude: Vec<StockPointId>,
}

/// An allocation that a cancellation hands back to its stock point.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AllocationRelease {
    pub stock_point: StockPointId,
    pub sku: SkuId,
    /// Allocated units minus those already reported short (a short pick settled those).
    pub qty: Qty,
    /// Whether the units were promised from the shelf or from incoming stock.
    pub source: Source,
}

impl Order {
    /// Builds an order from its `Created` event; `None` for any other event.
    pub fn from_created(event: &OrderEvent, at: Timestamp) -> Option<Order> {
        let OrderEvent::Created {
            id,
            reservation,
            channel,
            customer_ref,
            lines,
            fulfilments,
        } = event
        else {
            return None;
        };
        let order = Order {
            id: *id,
            reservation: *reservation,
            channel: *channel,
            customer_ref: customer_ref.clone(),
            lines: lines.clone(),
            fulfilments: fulfilments.clone(),
            shortages: Vec::new(),
            returns: Vec::new(),
            cancelled: false,
            created_at: at,
            history: vec![OrderHistoryEntry {
                at,
                event: event.clone(),
            }],
        };
        debug_assert_eq!(order.check_invariants(), Ok(()));
        Some(order)
    }

    /// Rebuilds an order from its recorded history (the `Created` event first); `None` if the
    /// history does not start with `Created`.
    pub fn replay(history: &[OrderHistoryEntry]) -> Option<Order> {
        let (first, rest) = history.split_first()?;
        let mut order = Order::from_created(&first.event, first.at)?;
        for entry in rest {
            apply(&mut order, &entry.event, entry.at);
        }
        Some(order)
    }

    pub fn fulfilment(&self, id: FulfilmentId) -> Option<&Fulfilment> {
        self.fulfilments.iter().find(|f| f.id == id)
    }

    fn fulfilment_mut(&mut self, id: FulfilmentId) -> &mut Fulfilment {
        self.fulfilments
            .iter_mut()
            .find(|f| f.id == id)
            .unwrap_or_else(|| panic!("event names fulfilment {id}, which the order lacks"))
    }

    fn shortage_mut(&mut self, from: FulfilmentId, sku: SkuId) -> &mut Shortage {
        self.shortages
            .iter_mut()
            .find(|s| s.from == from && s.sku == sku)
            .unwrap_or_else(|| {
                panic!("event names a shortage of {sku:?} from {from}, which the order lacks")
            })
    }

    /// Units of `sku` that have shipped, over all fulfilments.
    pub fn shipped(&self, sku: SkuId) -> Qty {
        self.fulfilments
            .iter()
            .filter_map(|f| f.line(sku))
            .map(|l| l.shipped)
            .sum()
    }

    /// Units of `sku` already covered by returns.
    pub fn returned(&self, sku: SkuId) -> Qty {
        self.returns
            .iter()
            .flat_map(|r| &r.lines)
            .filter(|l| l.sku == sku)
            .map(|l| l.qty)
            .sum()
    }

    /// The API status, derived from the fulfilments that are still live (not cancelled) and
    /// from outstanding shortages, which count as allocated work the orchestrator owes. The
    /// first rule that holds wins:
    ///
    /// 1. nothing live → `cancelled`
    /// 2. all delivered → `delivered`
    /// 3. all shipped or delivered → `shipped`
    /// 4. some shipped or delivered → `partially_shipped`
    /// 5. all packed → `packed`
    /// 6. any picking, picked or packed → `picking`
    /// 7. any released → `released`
    /// 8. any backordered → `backordered` (so backordered only while nothing is released)
    /// 9. otherwise → `allocated`
    pub fn status(&self) -> OrderStatus {
        use FulfilmentStatus as F;
        let mut live: Vec<F> = self
            .fulfilments
            .iter()
            .map(|f| f.status)
            .filter(|s| *s != F::Cancelled)
            .collect();
        if self.shortages.iter().any(|s| !s.outstanding().is_zero()) {
            live.push(F::Allocated);
        }
        let all = |p: fn(F) -> bool| live.iter().all(|s| p(*s));
        let any = |p: fn(F) -> bool| live.iter().any(|s| p(*s));
        if live.is_empty() {
            OrderStatus::Cancelled
        } else if all(|s| s == F::Delivered) {
            OrderStatus::Delivered
        } else if all(F::has_shipped) {
            OrderStatus::Shipped
        } else if any(F::has_shipped) {
            OrderStatus::PartiallyShipped
        } else if all(|s| s == F::Packed) {
            OrderStatus::Packed
        } else if any(|s| matches!(s, F::Picking | F::Picked | F::Packed)) {
            OrderStatus::Picking
        } else if any(|s| s == F::Released) {
            OrderStatus::Released
        } else if any(|s| s == F::Backordered) {
            OrderStatus::Backordered
        } else {
            OrderStatus::Allocated
        }
    }

    /// Checks every invariant of the order; `Err` names the first one broken. [`apply`] asserts
    /// this in debug builds, and the property tests call it after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        use FulfilmentStatus as F;
        for (i, f) in self.fulfilments.iter().enumerate() {
            if self.fulfilments[..i].iter().any(|g| g.id == f.id) {
                return Err(format!("fulfilment {} appears twice", f.id));
            }
            if f.lines.is_empty() {
                return Err(format!("fulfilment {} has no lines", f.id));
            }
            for (j, line) in f.lines.iter().enumerate() {
                let at = format!("fulfilment {} sku {:?}", f.id, line.sku);
                if f.lines[..j].iter().any(|l| l.sku == line.sku) {
                    return Err(format!("{at}: sku on two lines"));
                }
                if line.qty.is_zero() {
                    return Err(format!("{at}: zero quantity"));
                }
                if line.picked + line.short > line.qty {
                    return Err(format!("{at}: picked + short > qty"));
                }
                if line.shipped > line.picked {
                    return Err(format!("{at}: shipped > picked"));
                }
                if f.status.has_shipped() && line.shipped != line.picked {
                    return Err(format!("{at}: shipped fulfilment left picked units behind"));
                }
                if !f.status.has_shipped() && !line.shipped.is_zero() {
                    return Err(format!("{at}: units shipped before the fulfilment shipped"));
                }
                if matches!(f.status, F::Allocated | F::Backordered | F::Released)
                    && !(line.picked + line.short).is_zero()
                {
                    return Err(format!("{at}: picked before picking started"));
                }
                if matches!(f.status, F::Picked | F::Packed | F::Shipped | F::Delivered)
                    && !line.remaining().is_zero()
                {
                    return Err(format!("{at}: units left to pick after picking ended"));
                }
                let waits = line.source == Source::Incoming;
                if waits && !matches!(f.status, F::Backordered | F::Cancelled) {
                    return Err(format!("{at}: incoming line in status {:?}", f.status));
                }
            }
            let incoming = f.lines.iter().any(|l| l.source == Source::Incoming);
            if f.status == F::Backordered && !incoming {
                return Err(format!(
                    "fulfilment {}: backordered with every line on hand",
                    f.id
                ));
            }
            if matches!(f.status, F::Picked | F::Packed | F::Shipped | F::Delivered)
                && f.picked_total().is_zero()
            {
                return Err(format!(
                    "fulfilment {}: {:?} with nothing picked",
                    f.id, f.status
                ));
            }
            if f.shipment.is_some() != f.status.has_shipped() {
                return Err(format!(
                    "fulfilment {}: shipment does not match status",
                    f.id
                ));
            }
        }
        for s in &self.shortages {
            if s.resourced > s.missing {
                return Err(format!(
                    "shortage {:?} from {}: over-resourced",
                    s.sku, s.from
                ));
            }
        }
        // Units are conserved: every ordered unit is allocated somewhere, or in a shortage.
        for line in &self.lines {
            let allocated: Qty = self
                .fulfilments
                .iter()
                .filter_map(|f| f.line(line.sku))
                .map(|l| l.qty - l.short)
                .sum();
            let short: Qty = self
                .shortages
                .iter()
                .filter(|s| s.sku == line.sku)
                .map(|s| s.missing - s.resourced)
                .sum();
            if allocated + short != line.qty {
                return Err(format!(
                    "sku {:?}: ordered units are not conserved",
                    line.sku
                ));
            }
            if self.returned(line.sku) > self.shipped(line.sku) {
                return Err(format!("sku {:?}: returned more than shipped", line.sku));
            }
        }
        for f in &self.fulfilments {
            for l in &f.lines {
                if !self.lines.iter().any(|o| o.sku == l.sku) {
                    return Err(format!(
                        "fulfilment {}: sku {:?} was not ordered",
                        f.id, l.sku
                    ));
                }
            }
        }
        if self.cancelled {
            if self.fulfilments.iter().any(|f| f.status.is_cancellable()) {
                return Err("cancelled order with a live unshipped fulfilment".into());
            }
            if self.shortages.iter().any(|s| !s.outstanding().is_zero()) {
                return Err("cancelled order with an outstanding shortage".into());
            }
        }
        Ok(())
    }
}

/// Applies one event. The same code runs live and on replay. Events come from the decision
/// functions (or the log they were written to), so an event that does not fit the order is a
/// bug, and it panics rather than guess.
pub fn apply(order: &mut Order, event: &OrderEvent, at: Timestamp) {
    use FulfilmentStatus as F;
    match event {
        OrderEvent::Created { .. } => panic!("order {} is already created", order.id),
        OrderEvent::Released { fulfilment } => {
            set_status(order.fulfilment_mut(*fulfilment), F::Allocated, F::Released);
        }
        OrderEvent::PickStarted { fulfilment } => {
            set_status(order.fulfilment_mut(*fulfilment), F::Released, F::Picking);
        }
        OrderEvent::Picked {
            fulfilment,
            sku,
            qty,
        } => {
            let f = order.fulfilment_mut(*fulfilment);
            assert_eq!(f.status, F::Picking, "picked outside picking");
            let line = f.line_mut(*sku).expect("picked an unknown line");
            line.picked += *qty;
            debug_assert!(line.picked + line.short <= line.qty);
            finish_picking_if_done(f);
        }
        OrderEvent::ShortPicked {
            fulfilment,
            sku,
            picked,
            missing,
        } => {
            let f = order.fulfilment_mut(*fulfilment);
            assert_eq!(f.status, F::Picking, "short-picked outside picking");
            let line = f.line_mut(*sku).expect("short-picked an unknown line");
            line.picked += *picked;
            line.short += *missing;
            debug_assert!(line.remaining().is_zero(), "a short pick closes its line");
            finish_picking_if_done(f);
            order.shortages.push(Shortage {
                from: *fulfilment,
                sku: *sku,
                missing: *missing,
                resourced: Qty::ZERO,
                closed: false,
            });
        }
        OrderEvent::Resourced { from, fulfilment } => {
            for line in &fulfilment.lines {
                let shortage = order.shortage_mut(*from, line.sku);
                shortage.resourced += line.qty;
                debug_assert!(shortage.resourced <= shortage.missing);
            }
            order.fulfilments.push(fulfilment.clone());
        }
        OrderEvent::ShortageWrittenOff { from, sku, qty } => {
            let shortage = order.shortage_mut(*from, *sku);
            debug_assert_eq!(shortage.outstanding(), *qty);
            shortage.closed = true;
        }
        OrderEvent::BackorderFilled { fulfilment, sku } => {
            let f = order.fulfilment_mut(*fulfilment);
            assert_eq!(
                f.status,
                F::Backordered,
                "filled a fulfilment not backordered"
            );
            let line = f.line_mut(*sku).expect("filled an unknown line");
            debug_assert_eq!(line.source, Source::Incoming);
            line.source = Source::OnHand;
            f.status = initial_status(&f.lines);
        }
        OrderEvent::Packed { fulfilment } => {
            set_status(order.fulfilment_mut(*fulfilment), F::Picked, F::Packed);
        }
        OrderEvent::Shipped {
            fulfilment,
            carrier,
            tracking,
        } => {
            let f = order.fulfilment_mut(*fulfilment);
            set_status(f, F::Packed, F::Shipped);
            for line in &mut f.lines {
                line.shipped = line.picked;
            }
            f.shipment = Some(Shipment {
                carrier: carrier.clone(),
                tracking: tracking.clone(),
            });
        }
        OrderEvent::Delivered { fulfilment } => {
            set_status(order.fulfilment_mut(*fulfilment), F::Shipped, F::Delivered);
        }
        OrderEvent::Cancelled { fulfilments } => {
            for id in fulfilments {
                let f = order.fulfilment_mut(*id);
                assert!(
                    f.status.is_cancellable(),
                    "cancelled {id} in {:?}",
                    f.status
                );
                f.status = F::Cancelled;
            }
            // Nothing more will be re-sourced for a cancelled order.
            for shortage in &mut order.shortages {
                shortage.closed = true;
            }
            order.cancelled = true;
        }
        OrderEvent::ReturnOpened { ret, lines } => {
            order.returns.push(OrderReturn {
                id: *ret,
                lines: lines.clone(),
            });
        }
    }
    order.history.push(OrderHistoryEntry {
        at,
        event: event.clone(),
    });
    debug_assert_eq!(order.check_invariants(), Ok(()));
}

fn set_status(f: &mut Fulfilment, from: FulfilmentStatus, to: FulfilmentStatus) {
    assert_eq!(
        f.status, from,
        "fulfilment {} moved to {to:?} from the wrong status",
        f.id
    );
    f.status = to;
}

/// Picking ends when every line is picked or reported short. A fulfilment whose every unit was
/// short has nothing to pack, so it ends cancelled; its units live on in shortages.
fn finish_picking_if_done(f: &mut Fulfilment) {
    if f.lines.iter().all(|l| l.remaining().is_zero()) {
        f.status = if f.picked_total().is_zero() {
            FulfilmentStatus::Cancelled
        } else {
            FulfilmentStatus::Picked
        };
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------------------------

/// Validates a confirmed order and its initial allocation: lines within limits, one line per
/// SKU, fresh fulfilments with unique ids and one line per SKU each, and for every SKU the
/// fulfilments allocate exactly the ordered quantity.
pub fn create(
    id: OrderId,
    reservation: Option<ReservationId>,
    channel: Channel,
    customer_ref: Option<String>,
    lines: Vec<OrderLine>,
    fulfilments: Vec<Fulfilment>,
) -> Result<OrderEvent, OrderError> {
    validate_lines(&lines)?;
    if fulfilments.is_empty() {
        return Err(OrderError::NoFulfilments);
    }
    if fulfilments.len() > ORDER_FULFILMENTS_MAX {
        return Err(OrderError::TooManyFulfilments);
    }
    for (i, f) in fulfilments.iter().enumerate() {
        if fulfilments[..i].iter().any(|g| g.id == f.id) {
            return Err(OrderError::DuplicateFulfilment(f.id));
        }
        validate_fresh(f)?;
    }
    for line in &lines {
        let allocated: Qty = fulfilments
            .iter()
            .filter_map(|f| f.line(line.sku))
            .map(|l| l.qty)
            .sum();
        if allocated != line.qty {
            return Err(OrderError::AllocationMismatch {
                sku: line.sku,
                ordered: line.qty,
                allocated,
            });
        }
    }
    for f in &fulfilments {
        if let Some(l) = f
            .lines
            .iter()
            .find(|l| !lines.iter().any(|o| o.sku == l.sku))
        {
            return Err(OrderError::AllocationMismatch {
                sku: l.sku,
                ordered: Qty::ZERO,
                allocated: l.qty,
            });
        }
    }
    Ok(OrderEvent::Created {
        id,
        reservation,
        channel,
        customer_ref,
        lines,
        fulfilments,
    })
}

fn validate_lines(lines: &[OrderLine]) -> Result<(), OrderError> {
    if lines.is_empty() {
        return Err(OrderError::NoLines);
    }
    if lines.len() > REQUEST_LINES_MAX {
        return Err(OrderError::TooManyLines);
    }
    for (i, line) in lines.iter().enumerate() {
        if line.qty.is_zero() || line.qty.0 > LINE_QTY_MAX {
            return Err(OrderError::QtyOutOfRange {
                sku: line.sku,
                qty: line.qty,
            });
        }
        if lines[..i].iter().any(|l| l.sku == line.sku) {
            return Err(OrderError::DuplicateLine(line.sku));
        }
    }
    Ok(())
}

/// A fulfilment from a sourcing plan: nothing picked or shipped yet, its status the one
/// [`Fulfilment::new`] would give, and one line per SKU with a quantity in range.
fn validate_fresh(f: &Fulfilment) -> Result<(), OrderError> {
    let fresh = !f.lines.is_empty()
        && f.shipment.is_none()
        && f.status == initial_status(&f.lines)
        && f.lines.iter().all(|l| {
            (l.picked + l.short + l.shipped).is_zero()
                && !l.qty.is_zero()
                && l.qty.0 <= LINE_QTY_MAX
        });
    if !fresh {
        return Err(OrderError::NotFreshFulfilment(f.id));
    }
    for (j, line) in f.lines.iter().enumerate() {
        if f.lines[..j].iter().any(|l| l.sku == line.sku) {
            return Err(OrderError::DuplicateFulfilmentLine {
                fulfilment: f.id,
                sku: line.sku,
            });
        }
    }
    Ok(())
}

fn find(order: &Order, f: FulfilmentId) -> Result<&Fulfilment, OrderError> {
    order.fulfilment(f).ok_or(OrderError::UnknownFulfilment(f))
}

/// Finds `f` and checks it is in `expected`, or says why the command is refused.
fn expect_status(
    order: &Order,
    f: FulfilmentId,
    command: OrderCommand,
    expected: FulfilmentStatus,
) -> Result<&Fulfilment, OrderError> {
    let fulfilment = find(order, f)?;
    if fulfilment.status != expected {
        return Err(OrderError::InvalidTransition {
            fulfilment: f,
            command,
            status: fulfilment.status,
        });
    }
    Ok(fulfilment)
}

/// Releases an allocated fulfilment to its stock point. A backordered one waits for its stock.
pub fn release(order: &Order, f: FulfilmentId) -> Result<OrderEvent, OrderError> {
    expect_status(order, f, OrderCommand::Release, FulfilmentStatus::Allocated)?;
    Ok(OrderEvent::Released { fulfilment: f })
}

/// The stock point starts picking a released fulfilment.
pub fn start_pick(order: &Order, f: FulfilmentId) -> Result<OrderEvent, OrderError> {
    expect_status(
        order,
        f,
        OrderCommand::StartPick,
        FulfilmentStatus::Released,
    )?;
    Ok(OrderEvent::PickStarted { fulfilment: f })
}

/// A picker confirms `qty` units of `sku`. The pick task asks for every unit still to pick;
/// confirming fewer is a short pick: the rest becomes a shortage and a [`ResourceRequest`].
/// Confirming more than remain, or confirming a line already done, is refused.
pub fn pick(
    order: &Order,
    f: FulfilmentId,
    sku: SkuId,
    qty: Qty,
) -> Result<PickOutcome, OrderError> {
    let fulfilment = expect_status(order, f, OrderCommand::Pick, FulfilmentStatus::Picking)?;
    let line = fulfilment
        .line(sku)
        .ok_or(OrderError::UnknownLine { fulfilment: f, sku })?;
    let remaining = line.remaining();
    if remaining.is_zero() || qty > remaining {
        return Err(OrderError::PickExceedsRemaining {
            fulfilment: f,
            sku,
            remaining,
            qty,
        });
    }
    if qty == remaining {
        return Ok(PickOutcome::Picked(OrderEvent::Picked {
            fulfilment: f,
            sku,
            qty,
        }));
    }
    let missing = remaining - qty;
    let exclude = came_up_short(order, sku, fulfilment.stock_point);
    Ok(PickOutcome::Short {
        event: OrderEvent::ShortPicked {
            fulfilment: f,
            sku,
            picked: qty,
            missing,
        },
        request: ResourceRequest {
            order: order.id,
            from: f,
            sku,
            missing,
            exclude,
        },
    })
}

/// Every stock point that has come up short for `sku` on this order, and `also`; sorted.
fn came_up_short(order: &Order, sku: SkuId, also: StockPointId) -> Vec<StockPointId> {
    let mut short: Vec<StockPointId> = order
        .fulfilments
        .iter()
        .filter(|g| g.line(sku).is_some_and(|l| !l.short.is_zero()))
        .map(|g| g.stock_point)
        .chain([also])
        .collect();
    short.sort();
    short.dedup();
    short
}

/// The re-sourcing this order is still owed: one request per outstanding shortage, as its short
/// pick asked (for one that a crash or a failed call to the orchestrator cut short).
pub fn outstanding_resources(order: &Order) -> Vec<ResourceRequest> {
    order
        .shortages
        .iter()
        .filter(|s| !s.outstanding().is_zero())
        .filter_map(|s| {
            let at = order.fulfilment(s.from)?.stock_point;
            Some(ResourceRequest {
                order: order.id,
                from: s.from,
                sku: s.sku,
                missing: s.outstanding(),
                exclude: came_up_short(order, s.sku, at),
            })
        })
        .collect()
}

/// Packs a fulfilment whose picking is done.
pub fn pack(order: &Order, f: FulfilmentId) -> Result<OrderEvent, OrderError> {
    expect_status(order, f, OrderCommand::Pack, FulfilmentStatus::Picked)?;
    Ok(OrderEvent::Packed { fulfilment: f })
}

/// Hands a packed fulfilment to a carrier.
pub fn ship(
    order: &Order,
    f: FulfilmentId,
    carrier: &str,
    tracking: &str,
) -> Result<OrderEvent, OrderError> {
    expect_status(order, f, OrderCommand::Ship, FulfilmentStatus::Packed)?;
    let valid = |s: &str| !s.trim().is_empty() && s.len() <= SHIPMENT_FIELD_BYTES_MAX;
    if !valid(carrier) || !valid(tracking) {
        return Err(OrderError::InvalidShipment);
    }
    Ok(OrderEvent::Shipped {
        fulfilment: f,
        carrier: carrier.to_owned(),
        tracking: tracking.to_owned(),
    })
}

/// The carrier reports a shipped fulfilment delivered.
pub fn deliver(order: &Order, f: FulfilmentId) -> Result<OrderEvent, OrderError> {
    expect_status(order, f, OrderCommand::Deliver, FulfilmentStatus::Shipped)?;
    Ok(OrderEvent::Delivered { fulfilment: f })
}

/// Incoming stock for a backordered line was received at the fulfilment's stock point.
pub fn fill_backorder(
    order: &Order,
    f: FulfilmentId,
    sku: SkuId,
) -> Result<OrderEvent, OrderError> {
    let fulfilment = expect_status(
        order,
        f,
        OrderCommand::FillBackorder,
        FulfilmentStatus::Backordered,
    )?;
    let line = fulfilment
        .line(sku)
        .ok_or(OrderError::UnknownLine { fulfilment: f, sku })?;
    if line.source != Source::Incoming {
        return Err(OrderError::NotBackordered { fulfilment: f, sku });
    }
    Ok(OrderEvent::BackorderFilled { fulfilment: f, sku })
}

/// The orchestrator re-sourced (part of) the shortage of `from` as a new fulfilment, typically
/// built with [`Fulfilment::new`]. Each of its lines must fit an outstanding shortage of `from`.
pub fn resource(
    order: &Order,
    from: FulfilmentId,
    fulfilment: Fulfilment,
) -> Result<OrderEvent, OrderError> {
    if order.cancelled {
        return Err(OrderError::AlreadyCancelled);
    }
    if order.fulfilments.len() >= ORDER_FULFILMENTS_MAX {
        return Err(OrderError::TooManyFulfilments);
    }
    if order.fulfilment(fulfilment.id).is_some() {
        return Err(OrderError::DuplicateFulfilment(fulfilment.id));
    }
    validate_fresh(&fulfilment)?;
    for line in &fulfilment.lines {
        let outstanding = order
            .shortages
            .iter()
            .find(|s| s.from == from && s.sku == line.sku)
            .map(Shortage::outstanding)
            .unwrap_or(Qty::ZERO);
        if outstanding.is_zero() {
            return Err(OrderError::NoShortage {
                from,
                sku: line.sku,
            });
        }
        if line.qty > outstanding {
            return Err(OrderError::ResourceExceedsShortage {
                sku: line.sku,
                outstanding,
                qty: line.qty,
            });
        }
    }
    Ok(OrderEvent::Resourced { from, fulfilment })
}

/// The orchestrator could not re-source what is left of a shortage; the customer receives
/// fewer units (and is refunded outside the engine).
pub fn write_off_shortage(
    order: &Order,
    from: FulfilmentId,
    sku: SkuId,
) -> Result<OrderEvent, OrderError> {
    let outstanding = order
        .shortages
        .iter()
        .find(|s| s.from == from && s.sku == sku)
        .map(Shortage::outstanding)
        .unwrap_or(Qty::ZERO);
    if outstanding.is_zero() {
        return Err(OrderError::NoShortage { from, sku });
    }
    Ok(OrderEvent::ShortageWrittenOff {
        from,
        sku,
        qty: outstanding,
    })
}

/// Cancels everything not yet shipped, and says which allocations to hand back to their stock
/// points. Allowed while partially shipped (shipped fulfilments stay shipped); refused once
/// cancelled or once everything has shipped.
pub fn cancel(order: &Order) -> Result<(OrderEvent, Vec<AllocationRelease>), OrderError> {
    if order.cancelled {
        return Err(OrderError::AlreadyCancelled);
    }
    let cancellable: Vec<&Fulfilment> = order
        .fulfilments
        .iter()
        .filter(|f| f.status.is_cancellable())
        .collect();
    let owed = order.shortages.iter().any(|s| !s.outstanding().is_zero());
    if cancellable.is_empty() && !owed {
        return Err(OrderError::FullyShipped);
    }
    let releases = cancellable
        .iter()
        .flat_map(|f| {
            f.lines.iter().filter_map(|l| {
                let qty = l.qty - l.short;
                (!qty.is_zero()).then_some(AllocationRelease {
                    stock_point: f.stock_point,
                    sku: l.sku,
                    qty,
                    source: l.source,
                })
            })
        })
        .collect();
    let event = OrderEvent::Cancelled {
        fulfilments: cancellable.iter().map(|f| f.id).collect(),
    };
    Ok((event, releases))
}

/// Opens a return of `lines`. Per SKU, the units returned (summed over the request's lines)
/// must not exceed the units shipped minus those already returned.
pub fn open_return(
    order: &Order,
    ret: ReturnId,
    lines: Vec<OrderLine>,
) -> Result<OrderEvent, OrderError> {
    if lines.is_empty() {
        return Err(OrderError::NoLines);
    }
    if lines.len() > REQUEST_LINES_MAX {
        return Err(OrderError::TooManyLines);
    }
    if order.returns.iter().any(|r| r.id == ret) {
        return Err(OrderError::DuplicateReturn(ret));
    }
    if order.returns.len() >= ORDER_RETURNS_MAX {
        return Err(OrderError::TooManyReturns);
    }
    for line in &lines {
        if line.qty.is_zero() || line.qty.0 > LINE_QTY_MAX {
            return Err(OrderError::QtyOutOfRange {
                sku: line.sku,
                qty: line.qty,
            });
        }
    }
    for line in &lines {
        let requested: Qty = lines
            .iter()
            .filter(|l| l.sku == line.sku)
            .map(|l| l.qty)
            .sum();
        let returnable = order
            .shipped(line.sku)
            .saturating_sub(order.returned(line.sku));
        if requested > returnable {
            return Err(OrderError::ReturnExceedsShipped {
                sku: line.sku,
                returnable,
                requested,
            });
        }
    }
    Ok(OrderEvent::ReturnOpened { ret, lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SkuId = SkuId(0);
    const B: SkuId = SkuId(1);
    const WH1: StockPointId = StockPointId(0);
    const WH2: StockPointId = StockPointId(1);
    const STORE: StockPointId = StockPointId(2);
    const F1: FulfilmentId = FulfilmentId(1);
    const F2: FulfilmentId = FulfilmentId(2);
    const F3: FulfilmentId = FulfilmentId(3);
    const F4: FulfilmentId = FulfilmentId(4);

    fn line(sku: SkuId, qty: u64) -> OrderLine {
        OrderLine { sku, qty: Qty(qty) }
    }

    fn on_hand(sku: SkuId, qty: u64) -> Allocation {
        Allocation {
            sku,
            qty: Qty(qty),
            source: Source::OnHand,
        }
    }

    fn incoming(sku: SkuId, qty: u64) -> Allocation {
        Allocation {
            sku,
            qty: Qty(qty),
            source: Source::Incoming,
        }
    }

    /// An order for 3 A and 2 B: F-1 ships 3 A from WH1, F-2 ships 2 B from WH2.
    fn two_fulfilments() -> Order {
        build(
            vec![line(A, 3), line(B, 2)],
            vec![
                Fulfilment::new(F1, WH1, &[on_hand(A, 3)]),
                Fulfilment::new(F2, WH2, &[on_hand(B, 2)]),
            ],
        )
    }

    fn build(lines: Vec<OrderLine>, fulfilments: Vec<Fulfilment>) -> Order {
        let event = create(
            OrderId(1),
            Some(ReservationId(7)),
            Channel::Web,
            None,
            lines,
            fulfilments,
        )
        .expect("a valid order");
        Order::from_created(&event, Timestamp(1_000)).expect("a created event")
    }

    /// Decides, then applies with [`apply_next`]; a macro so that the decision's shared borrow
    /// of the order ends before the mutable one begins.
    macro_rules! step {
        ($order:expr, $decided:expr) => {{
            let decided = $decided;
            apply_next(&mut $order, decided)
        }};
    }

    /// Applies a decided event at the next millisecond; panics if the command was refused.
    fn apply_next(order: &mut Order, decided: Result<OrderEvent, OrderError>) {
        let at = Timestamp(order.history.last().map_or(0, |e| e.at.0) + 1);
        apply(order, &decided.expect("command accepted"), at);
    }

    fn pick_all(order: &mut Order, f: FulfilmentId) {
        let lines: Vec<(SkuId, Qty)> = order
            .fulfilment(f)
            .unwrap()
            .lines
            .iter()
            .filter(|l| !l.remaining().is_zero())
            .map(|l| (l.sku, l.remaining()))
            .collect();
        for (sku, qty) in lines {
            match pick(order, f, sku, qty).unwrap() {
                PickOutcome::Picked(event) => step!(*order, Ok(event)),
                PickOutcome::Short { .. } => panic!("a full pick is not short"),
            }
        }
    }

    /// Takes `f` from allocated through `last` (one of picked, packed, shipped, delivered).
    fn advance(order: &mut Order, f: FulfilmentId, last: FulfilmentStatus) {
        use FulfilmentStatus as S;
        step!(*order, release(order, f));
        step!(*order, start_pick(order, f));
        pick_all(order, f);
        if last == S::Picked {
            return;
        }
        step!(*order, pack(order, f));
        if last == S::Packed {
            return;
        }
        step!(*order, ship(order, f, "ups", "1Z999"));
        if last == S::Shipped {
            return;
        }
        step!(*order, deliver(order, f));
    }

    fn status_of(order: &Order, f: FulfilmentId) -> FulfilmentStatus {
        order.fulfilment(f).unwrap().status
    }

    fn refused(order: &Order, f: FulfilmentId, command: OrderCommand) -> OrderError {
        OrderError::InvalidTransition {
            fulfilment: f,
            command,
            status: status_of(order, f),
        }
    }

    fn short_pick(order: &mut Order, f: FulfilmentId, sku: SkuId, qty: u64) -> ResourceRequest {
        match pick(order, f, sku, Qty(qty)).unwrap() {
            PickOutcome::Short { event, request } => {
                step!(*order, Ok(event));
                request
            }
            PickOutcome::Picked(_) => panic!("expected a short pick"),
        }
    }

    #[test]
    fn a_created_order_is_allocated_and_remembers_its_creation() {
        let order = two_fulfilments();
        assert_eq!(order.status(), OrderStatus::Allocated);
        assert_eq!(order.created_at, Timestamp(1_000));
        assert_eq!(order.history.len(), 1);
        assert!(matches!(order.history[0].event, OrderEvent::Created { .. }));
        assert_eq!(order.reservation, Some(ReservationId(7)));
    }

    #[test]
    fn creation_refuses_allocations_that_do_not_add_up_to_the_lines() {
        let under = create(
            OrderId(1),
            None,
            Channel::Web,
            None,
            vec![line(A, 3)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 2)])],
        );
        assert_eq!(
            under,
            Err(OrderError::AllocationMismatch {
                sku: A,
                ordered: Qty(3),
                allocated: Qty(2)
            })
        );
        let unordered = create(
            OrderId(1),
            None,
            Channel::Web,
            None,
            vec![line(A, 1)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 1), on_hand(B, 1)])],
        );
        assert!(matches!(
            unordered,
            Err(OrderError::AllocationMismatch { sku: B, .. })
        ));
    }

    #[test]
    fn creation_refuses_malformed_lines_and_fulfilments() {
        let make = |lines: Vec<OrderLine>, fulfilments: Vec<Fulfilment>| {
            create(OrderId(1), None, Channel::Web, None, lines, fulfilments)
        };
        let f = |id, allocations: &[Allocation]| Fulfilment::new(id, WH1, allocations);
        assert_eq!(
            make(vec![], vec![f(F1, &[on_hand(A, 1)])]),
            Err(OrderError::NoLines)
        );
        assert_eq!(
            make(vec![line(A, 1)], vec![]),
            Err(OrderError::NoFulfilments)
        );
        assert_eq!(
            make(vec![line(A, 0)], vec![f(F1, &[on_hand(A, 1)])]),
            Err(OrderError::QtyOutOfRange {
                sku: A,
                qty: Qty(0)
            })
        );
        assert_eq!(
            make(
                vec![line(A, LINE_QTY_MAX + 1)],
                vec![f(F1, &[on_hand(A, 1)])]
            ),
            Err(OrderError::QtyOutOfRange {
                sku: A,
                qty: Qty(LINE_QTY_MAX + 1)
            })
        );
        assert_eq!(
            make(vec![line(A, 1), line(A, 1)], vec![f(F1, &[on_hand(A, 2)])]),
            Err(OrderError::DuplicateLine(A))
        );
        assert_eq!(
            make(
                vec![line(A, 2)],
                vec![f(F1, &[on_hand(A, 1)]), f(F1, &[on_hand(A, 1)])]
            ),
            Err(OrderError::DuplicateFulfilment(F1))
        );
        assert_eq!(
            make(
                vec![line(A, 2)],
                vec![f(F1, &[on_hand(A, 1), on_hand(A, 1)])]
            ),
            Err(OrderError::DuplicateFulfilmentLine {
                fulfilment: F1,
                sku: A
            })
        );
        let mut half_picked = f(F1, &[on_hand(A, 1)]);
        half_picked.lines[0].picked = Qty(1);
        assert_eq!(
            make(vec![line(A, 1)], vec![half_picked]),
            Err(OrderError::NotFreshFulfilment(F1))
        );
    }

    #[test]
    fn a_fulfilment_waiting_for_incoming_stock_is_backordered_and_cannot_be_released() {
        let order = build(
            vec![line(A, 2)],
            vec![Fulfilment::new(F1, WH1, &[incoming(A, 2)])],
        );
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Backordered);
        assert_eq!(order.status(), OrderStatus::Backordered);
        assert_eq!(
            release(&order, F1),
            Err(refused(&order, F1, OrderCommand::Release))
        );
    }

    #[test]
    fn filling_every_backordered_line_makes_the_fulfilment_releasable() {
        let mut order = build(
            vec![line(A, 2), line(B, 1)],
            vec![Fulfilment::new(F1, WH1, &[incoming(A, 2), incoming(B, 1)])],
        );
        step!(order, fill_backorder(&order, F1, A));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Backordered);
        assert_eq!(
            fill_backorder(&order, F1, A),
            Err(OrderError::NotBackordered {
                fulfilment: F1,
                sku: A
            })
        );
        step!(order, fill_backorder(&order, F1, B));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Allocated);
        assert_eq!(order.status(), OrderStatus::Allocated);
        step!(order, release(&order, F1));
        assert_eq!(
            fill_backorder(&order, F1, A),
            Err(refused(&order, F1, OrderCommand::FillBackorder))
        );
    }

    #[test]
    fn an_order_is_backordered_only_while_nothing_is_released() {
        let mut order = build(
            vec![line(A, 2), line(B, 1)],
            vec![
                Fulfilment::new(F1, WH1, &[incoming(A, 2)]),
                Fulfilment::new(F2, WH2, &[on_hand(B, 1)]),
            ],
        );
        assert_eq!(order.status(), OrderStatus::Backordered);
        step!(order, release(&order, F2));
        assert_eq!(order.status(), OrderStatus::Released);
    }

    #[test]
    fn releasing_moves_an_allocated_fulfilment_to_released_once() {
        let mut order = two_fulfilments();
        step!(order, release(&order, F1));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Released);
        assert_eq!(order.status(), OrderStatus::Released);
        assert_eq!(
            release(&order, F1),
            Err(refused(&order, F1, OrderCommand::Release))
        );
    }

    #[test]
    fn every_command_refuses_an_unknown_fulfilment() {
        let order = two_fulfilments();
        let unknown = FulfilmentId(99);
        let expected = Err(OrderError::UnknownFulfilment(unknown));
        assert_eq!(release(&order, unknown), expected);
        assert_eq!(start_pick(&order, unknown), expected);
        assert_eq!(
            pick(&order, unknown, A, Qty(1)).map(|_| ()),
            Err(OrderError::UnknownFulfilment(unknown))
        );
        assert_eq!(pack(&order, unknown), expected);
        assert_eq!(ship(&order, unknown, "ups", "1"), expected);
        assert_eq!(deliver(&order, unknown), expected);
        assert_eq!(fill_backorder(&order, unknown, A), expected);
    }

    #[test]
    fn picking_starts_only_once_released() {
        let mut order = two_fulfilments();
        assert_eq!(
            start_pick(&order, F1),
            Err(refused(&order, F1, OrderCommand::StartPick))
        );
        step!(order, release(&order, F1));
        assert_eq!(
            pick(&order, F1, A, Qty(3)).map(|_| ()),
            Err(refused(&order, F1, OrderCommand::Pick))
        );
        step!(order, start_pick(&order, F1));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Picking);
        assert_eq!(order.status(), OrderStatus::Picking);
        assert_eq!(
            start_pick(&order, F1),
            Err(refused(&order, F1, OrderCommand::StartPick))
        );
    }

    #[test]
    fn a_full_pick_of_every_line_ends_picking() {
        let mut order = build(
            vec![line(A, 3), line(B, 2)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 3), on_hand(B, 2)])],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        let PickOutcome::Picked(event) = pick(&order, F1, A, Qty(3)).unwrap() else {
            panic!("a full pick");
        };
        step!(order, Ok(event));
        assert_eq!(
            status_of(&order, F1),
            FulfilmentStatus::Picking,
            "B is still to pick"
        );
        pick_all(&mut order, F1);
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Picked);
        assert_eq!(
            order.fulfilment(F1).unwrap().line(B).unwrap().picked,
            Qty(2)
        );
    }

    #[test]
    fn picking_more_than_asked_or_a_line_already_picked_is_refused() {
        let mut order = two_fulfilments();
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        assert_eq!(
            pick(&order, F1, A, Qty(4)).map(|_| ()),
            Err(OrderError::PickExceedsRemaining {
                fulfilment: F1,
                sku: A,
                remaining: Qty(3),
                qty: Qty(4)
            })
        );
        assert_eq!(
            pick(&order, F1, B, Qty(1)).map(|_| ()),
            Err(OrderError::UnknownLine {
                fulfilment: F1,
                sku: B
            })
        );
        pick_all(&mut order, F1);
        assert_eq!(
            pick(&order, F1, A, Qty(0)).map(|_| ()),
            Err(refused(&order, F1, OrderCommand::Pick)),
            "completing a pick twice"
        );
    }

    #[test]
    fn a_short_pick_records_a_shortage_and_asks_the_orchestrator_to_resource_it() {
        let mut order = two_fulfilments();
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        let request = short_pick(&mut order, F1, A, 1);
        assert_eq!(
            request,
            ResourceRequest {
                order: OrderId(1),
                from: F1,
                sku: A,
                missing: Qty(2),
                exclude: vec![WH1],
            }
        );
        let f1 = order.fulfilment(F1).unwrap();
        assert_eq!(
            f1.status,
            FulfilmentStatus::Picked,
            "the picked unit can still ship"
        );
        assert_eq!((f1.lines[0].picked, f1.lines[0].short), (Qty(1), Qty(2)));
        assert_eq!(order.shortages[0].outstanding(), Qty(2));
        assert_eq!(order.status(), OrderStatus::Picking);
        assert_eq!(
            outstanding_resources(&order),
            vec![request],
            "a re-sourcing cut short asks again for the same"
        );
        step!(order, write_off_shortage(&order, F1, A));
        assert!(outstanding_resources(&order).is_empty());
    }

    #[test]
    fn a_short_pick_of_every_unit_cancels_the_fulfilment_but_not_the_order() {
        let mut order = build(
            vec![line(A, 3)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 3)])],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 0);
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Cancelled);
        assert_eq!(
            order.status(),
            OrderStatus::Allocated,
            "the shortage is still owed"
        );
        assert!(!order.cancelled);
    }

    #[test]
    fn a_resourced_fulfilment_covers_the_shortage_and_runs_like_any_other() {
        let mut order = two_fulfilments();
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 1);
        step!(
            order,
            resource(&order, F1, Fulfilment::new(F3, STORE, &[on_hand(A, 1)]))
        );
        assert_eq!(order.shortages[0].outstanding(), Qty(1));
        step!(
            order,
            resource(&order, F1, Fulfilment::new(F4, WH2, &[on_hand(A, 1)]))
        );
        assert_eq!(order.shortages[0].outstanding(), Qty::ZERO);
        for f in [F1, F2, F3, F4] {
            if f != F1 {
                advance(&mut order, f, FulfilmentStatus::Picked);
            }
            step!(order, pack(&order, f));
            step!(order, ship(&order, f, "dhl", "JD01"));
        }
        assert_eq!(order.status(), OrderStatus::Shipped);
        assert_eq!(order.shipped(A), Qty(3));
    }

    #[test]
    fn resourcing_is_refused_beyond_the_shortage_or_without_one() {
        let mut order = two_fulfilments();
        assert_eq!(
            resource(&order, F1, Fulfilment::new(F3, WH2, &[on_hand(A, 1)])),
            Err(OrderError::NoShortage { from: F1, sku: A })
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 1);
        assert_eq!(
            resource(&order, F1, Fulfilment::new(F3, WH2, &[on_hand(A, 3)])),
            Err(OrderError::ResourceExceedsShortage {
                sku: A,
                outstanding: Qty(2),
                qty: Qty(3)
            })
        );
        assert_eq!(
            resource(&order, F1, Fulfilment::new(F2, WH2, &[on_hand(A, 1)])),
            Err(OrderError::DuplicateFulfilment(F2))
        );
        assert_eq!(
            resource(&order, F1, Fulfilment::new(F3, WH2, &[on_hand(B, 1)])),
            Err(OrderError::NoShortage { from: F1, sku: B })
        );
    }

    #[test]
    fn a_second_short_pick_excludes_every_stock_point_that_came_up_short() {
        let mut order = build(
            vec![line(A, 2)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 2)])],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 0);
        step!(
            order,
            resource(&order, F1, Fulfilment::new(F2, WH2, &[on_hand(A, 2)]))
        );
        step!(order, release(&order, F2));
        step!(order, start_pick(&order, F2));
        let request = short_pick(&mut order, F2, A, 1);
        assert_eq!(request.exclude, vec![WH1, WH2]);
        assert_eq!((request.from, request.missing), (F2, Qty(1)));
    }

    #[test]
    fn a_written_off_shortage_is_no_longer_owed() {
        let mut order = build(
            vec![line(A, 2)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 2)])],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 1);
        step!(order, write_off_shortage(&order, F1, A));
        assert_eq!(
            write_off_shortage(&order, F1, A),
            Err(OrderError::NoShortage { from: F1, sku: A })
        );
        step!(order, pack(&order, F1));
        step!(order, ship(&order, F1, "ups", "1Z"));
        assert_eq!(order.status(), OrderStatus::Shipped);
    }

    #[test]
    fn packing_before_picking_ends_is_refused() {
        let mut order = two_fulfilments();
        assert_eq!(
            pack(&order, F1),
            Err(refused(&order, F1, OrderCommand::Pack))
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        assert_eq!(
            pack(&order, F1),
            Err(refused(&order, F1, OrderCommand::Pack))
        );
        pick_all(&mut order, F1);
        step!(order, pack(&order, F1));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Packed);
        assert_eq!(
            pack(&order, F1),
            Err(refused(&order, F1, OrderCommand::Pack)),
            "packing twice"
        );
    }

    #[test]
    fn an_order_is_packed_only_when_every_fulfilment_is() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Packed);
        assert_eq!(order.status(), OrderStatus::Picking);
        advance(&mut order, F2, FulfilmentStatus::Packed);
        assert_eq!(order.status(), OrderStatus::Packed);
    }

    #[test]
    fn shipping_before_packing_is_refused() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Picked);
        assert_eq!(
            ship(&order, F1, "ups", "1Z"),
            Err(refused(&order, F1, OrderCommand::Ship))
        );
    }

    #[test]
    fn shipping_records_the_carrier_and_every_picked_unit() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Shipped);
        let f1 = order.fulfilment(F1).unwrap();
        assert_eq!(
            f1.shipment,
            Some(Shipment {
                carrier: "ups".into(),
                tracking: "1Z999".into()
            })
        );
        assert_eq!(f1.lines[0].shipped, Qty(3));
        assert_eq!(order.status(), OrderStatus::PartiallyShipped);
        assert_eq!(
            ship(&order, F1, "ups", "1Z"),
            Err(refused(&order, F1, OrderCommand::Ship))
        );
    }

    #[test]
    fn shipping_without_a_carrier_or_tracking_number_is_refused() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Packed);
        assert_eq!(
            ship(&order, F1, " ", "1Z"),
            Err(OrderError::InvalidShipment)
        );
        let long = "x".repeat(SHIPMENT_FIELD_BYTES_MAX + 1);
        assert_eq!(
            ship(&order, F1, "ups", &long),
            Err(OrderError::InvalidShipment)
        );
    }

    #[test]
    fn delivery_follows_shipping_and_happens_once() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Packed);
        assert_eq!(
            deliver(&order, F1),
            Err(refused(&order, F1, OrderCommand::Deliver))
        );
        step!(order, ship(&order, F1, "ups", "1Z"));
        step!(order, deliver(&order, F1));
        assert_eq!(
            deliver(&order, F1),
            Err(refused(&order, F1, OrderCommand::Deliver))
        );
        assert_eq!(order.status(), OrderStatus::PartiallyShipped);
        advance(&mut order, F2, FulfilmentStatus::Shipped);
        assert_eq!(order.status(), OrderStatus::Shipped);
        step!(order, deliver(&order, F2));
        assert_eq!(order.status(), OrderStatus::Delivered);
    }

    #[test]
    fn cancelling_before_shipping_releases_every_allocation() {
        let mut order = build(
            vec![line(A, 3), line(B, 2)],
            vec![
                Fulfilment::new(F1, WH1, &[on_hand(A, 3)]),
                Fulfilment::new(F2, WH2, &[incoming(B, 2)]),
            ],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        let (event, releases) = cancel(&order).unwrap();
        assert_eq!(
            event,
            OrderEvent::Cancelled {
                fulfilments: vec![F1, F2]
            }
        );
        assert_eq!(
            releases,
            vec![
                AllocationRelease {
                    stock_point: WH1,
                    sku: A,
                    qty: Qty(3),
                    source: Source::OnHand
                },
                AllocationRelease {
                    stock_point: WH2,
                    sku: B,
                    qty: Qty(2),
                    source: Source::Incoming
                },
            ]
        );
        step!(order, Ok(event));
        assert_eq!(order.status(), OrderStatus::Cancelled);
        assert!(order.cancelled);
    }

    #[test]
    fn cancelling_releases_only_what_a_short_pick_left_allocated() {
        let mut order = build(
            vec![line(A, 3)],
            vec![Fulfilment::new(F1, WH1, &[on_hand(A, 3)])],
        );
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 1);
        let (event, releases) = cancel(&order).unwrap();
        assert_eq!(releases[0].qty, Qty(1));
        step!(order, Ok(event));
        assert_eq!(
            order.shortages[0].outstanding(),
            Qty::ZERO,
            "nothing to resource any more"
        );
        assert_eq!(
            resource(&order, F1, Fulfilment::new(F2, WH2, &[on_hand(A, 1)])),
            Err(OrderError::AlreadyCancelled)
        );
    }

    #[test]
    fn cancelling_a_partially_shipped_order_cancels_only_the_unshipped_fulfilments() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Shipped);
        let (event, releases) = cancel(&order).unwrap();
        assert_eq!(
            event,
            OrderEvent::Cancelled {
                fulfilments: vec![F2]
            }
        );
        assert_eq!(releases.len(), 1);
        assert_eq!((releases[0].stock_point, releases[0].sku), (WH2, B));
        step!(order, Ok(event));
        assert_eq!(status_of(&order, F1), FulfilmentStatus::Shipped);
        assert_eq!(order.status(), OrderStatus::Shipped);
        step!(order, deliver(&order, F1));
        assert_eq!(order.status(), OrderStatus::Delivered);
    }

    #[test]
    fn cancelling_is_refused_once_fully_shipped_or_already_cancelled() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Shipped);
        advance(&mut order, F2, FulfilmentStatus::Delivered);
        assert_eq!(cancel(&order).map(|_| ()), Err(OrderError::FullyShipped));

        let mut order = two_fulfilments();
        let (event, _) = cancel(&order).unwrap();
        step!(order, Ok(event));
        assert_eq!(
            cancel(&order).map(|_| ()),
            Err(OrderError::AlreadyCancelled)
        );
    }

    #[test]
    fn a_cancelled_fulfilment_refuses_every_further_step() {
        let mut order = two_fulfilments();
        let (event, _) = cancel(&order).unwrap();
        step!(order, Ok(event));
        assert_eq!(
            release(&order, F1),
            Err(refused(&order, F1, OrderCommand::Release))
        );
        assert_eq!(
            start_pick(&order, F1),
            Err(refused(&order, F1, OrderCommand::StartPick))
        );
        assert_eq!(
            pack(&order, F1),
            Err(refused(&order, F1, OrderCommand::Pack))
        );
        assert_eq!(
            ship(&order, F1, "ups", "1"),
            Err(refused(&order, F1, OrderCommand::Ship))
        );
        assert_eq!(
            deliver(&order, F1),
            Err(refused(&order, F1, OrderCommand::Deliver))
        );
    }

    #[test]
    fn returns_are_limited_to_units_shipped_and_not_yet_returned() {
        let mut order = two_fulfilments();
        assert_eq!(
            open_return(&order, ReturnId(1), vec![line(A, 1)]),
            Err(OrderError::ReturnExceedsShipped {
                sku: A,
                returnable: Qty(0),
                requested: Qty(1)
            }),
            "nothing shipped yet"
        );
        advance(&mut order, F1, FulfilmentStatus::Delivered);
        assert_eq!(
            open_return(&order, ReturnId(1), vec![line(A, 2), line(A, 2)]),
            Err(OrderError::ReturnExceedsShipped {
                sku: A,
                returnable: Qty(3),
                requested: Qty(4)
            }),
            "lines of one SKU add up"
        );
        step!(order, open_return(&order, ReturnId(1), vec![line(A, 2)]));
        assert_eq!(order.returned(A), Qty(2));
        assert_eq!(
            open_return(&order, ReturnId(2), vec![line(A, 2)]),
            Err(OrderError::ReturnExceedsShipped {
                sku: A,
                returnable: Qty(1),
                requested: Qty(2)
            })
        );
        assert_eq!(
            open_return(&order, ReturnId(1), vec![line(A, 1)]),
            Err(OrderError::DuplicateReturn(ReturnId(1)))
        );
        assert_eq!(
            open_return(&order, ReturnId(2), vec![]),
            Err(OrderError::NoLines)
        );
        assert_eq!(
            open_return(&order, ReturnId(2), vec![line(A, 0)]),
            Err(OrderError::QtyOutOfRange {
                sku: A,
                qty: Qty(0)
            })
        );
        step!(order, open_return(&order, ReturnId(2), vec![line(A, 1)]));
        assert_eq!(
            order.status(),
            OrderStatus::PartiallyShipped,
            "a return does not change status"
        );
    }

    #[test]
    fn replaying_the_history_rebuilds_the_same_order() {
        let mut order = two_fulfilments();
        step!(order, release(&order, F1));
        step!(order, start_pick(&order, F1));
        short_pick(&mut order, F1, A, 2);
        step!(
            order,
            resource(&order, F1, Fulfilment::new(F3, STORE, &[on_hand(A, 1)]))
        );
        step!(order, pack(&order, F1));
        step!(order, ship(&order, F1, "ups", "1Z"));
        step!(order, open_return(&order, ReturnId(1), vec![line(A, 1)]));
        let (event, _) = cancel(&order).unwrap();
        step!(order, Ok(event));
        assert_eq!(Order::replay(&order.history).as_ref(), Some(&order));
    }

    #[test]
    fn events_and_orders_round_trip_through_json() {
        let mut order = two_fulfilments();
        advance(&mut order, F1, FulfilmentStatus::Delivered);
        let json = serde_json::to_string(&order).unwrap();
        let back: Order = serde_json::from_str(&json).unwrap();
        assert_eq!(back, order);
        let status = serde_json::to_string(&OrderStatus::PartiallyShipped).unwrap();
        assert_eq!(status, "\"partially_shipped\"");
        assert_eq!(
            serde_json::to_string(&Source::OnHand).unwrap(),
            "\"on_hand\""
        );
    }

    #[test]
    fn replay_needs_a_created_event_first() {
        let order = two_fulfilments();
        assert_eq!(Order::replay(&[]), None);
        let entry = OrderHistoryEntry {
            at: Timestamp(1),
            event: OrderEvent::Released { fulfilment: F1 },
        };
        assert_eq!(Order::replay(&[entry]), None);
        assert!(Order::replay(&order.history).is_some());
    }
}
