//! Inventory at one stock point: positions per SKU, holds with their expiry, and allocations of
//! confirmed orders. A stock point actor owns exactly one [`StockPointInventory`] and is its only
//! writer.
//!
//! Every change is a [`StockEvent`]. Decisions (`decide_*`) read the state and return either an
//! event or a business "no" as a value; [`StockPointInventory::apply`] is the only function that
//! mutates, and it is the same live and on replay.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::expiry::ExpiryIndex;
use crate::hash::{FxHashMap, SeqHashMap};
use crate::ids::{IncomingId, OrderId, Qty, ReservationId, ReturnId, SkuId, StockPointId};
use crate::time::Timestamp;

/// Holds expired by one call of [`StockPointInventory::decide_expiries`]; the rest wait for the
/// next tick, so that one tick never blocks the actor for long.
pub const EXPIRIES_PER_TICK_MAX: usize = 4_096;

/// Where the units of a hold or allocation come from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Units on the shelf now.
    OnHand,
    /// Units promised against expected stock (a backorder).
    Incoming,
}

/// Expected stock: a purchase order line with its ETA.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Incoming {
    pub id: IncomingId,
    pub qty: Qty,
    pub eta: Timestamp,
}

/// The numbers for one (stock point, SKU).
///
/// Invariants, asserted after every apply:
/// - `held + allocated + non_sellable <= on_hand` (what is promised from the shelf is on it);
/// - `held_incoming + allocated_incoming <= incoming total` (backorders never exceed what is on
///   its way).
///
/// Safety stock only lowers what new holds may take: raising it never revokes a hold.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Position {
    pub on_hand: Qty,
    /// Units in checkout holds that have not expired.
    pub held: Qty,
    /// Units of confirmed orders not yet shipped.
    pub allocated: Qty,
    pub safety_stock: Qty,
    /// Damaged or quality-control units: counted in on_hand, never sellable.
    pub non_sellable: Qty,
    /// Expected restocks, ordered by ETA so that the earliest is promised first.
    pub incoming: Vec<Incoming>,
    pub held_incoming: Qty,
    pub allocated_incoming: Qty,
}

impl Position {
    /// Units a new hold may take from the shelf.
    pub fn available(&self) -> Qty {
        self.on_hand
            .saturating_sub(self.held)
            .saturating_sub(self.allocated)
            .saturating_sub(self.safety_stock)
            .saturating_sub(self.non_sellable)
    }

    pub fn incoming_total(&self) -> Qty {
        self.incoming.iter().map(|i| i.qty).sum()
    }

    /// Incoming units arriving by `horizon` that no backorder has promised yet.
    pub fn incoming_available(&self, horizon: Timestamp) -> Qty {
        let arriving: Qty = self
            .incoming
            .iter()
            .filter(|i| i.eta <= horizon)
            .map(|i| i.qty)
            .sum();
        arriving
            .saturating_sub(self.held_incoming)
            .saturating_sub(self.allocated_incoming)
    }

    fn check(&self) {
        debug_assert!(
            self.held + self.allocated + self.non_sellable <= self.on_hand,
            "shelf over-promised: {self:?}"
        );
        debug_assert!(
            self.held_incoming + self.allocated_incoming <= self.incoming_total(),
            "incoming over-promised: {self:?}"
        );
    }

    fn add(&mut self, source: Source, qty: Qty, bucket: Bucket) {
        let field = match (source, bucket) {
            (Source::OnHand, Bucket::Held) => &mut self.held,
            (Source::OnHand, Bucket::Allocated) => &mut self.allocated,
            (Source::Incoming, Bucket::Held) => &mut self.held_incoming,
            (Source::Incoming, Bucket::Allocated) => &mut self.allocated_incoming,
        };
        *field += qty;
    }

    fn remove(&mut self, source: Source, qty: Qty, bucket: Bucket) {
        let field = match (source, bucket) {
            (Source::OnHand, Bucket::Held) => &mut self.held,
            (Source::OnHand, Bucket::Allocated) => &mut self.allocated,
            (Source::Incoming, Bucket::Held) => &mut self.held_incoming,
            (Source::Incoming, Bucket::Allocated) => &mut self.allocated_incoming,
        };
        *field -= qty;
    }
}

#[derive(Clone, Copy)]
enum Bucket {
    Held,
    Allocated,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StockLine {
    pub sku: SkuId,
    pub qty: Qty,
    pub source: Source,
}

/// A hold's lines: a flash sale's hold has one.
pub type HeldLines = SmallVec<[StockLine; 1]>;

/// A checkout hold at this stock point: the part of one reservation that this stock point serves.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hold {
    pub reservation: ReservationId,
    pub lines: HeldLines,
    pub expires_at: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The customer or the checkout let it go.
    Released,
    /// Its TTL ran out.
    Expired,
    /// The orchestrator undid it because another part of the same reservation failed.
    RolledBack,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustReason {
    Adjustment,
    CycleCount,
    ShortPick,
}

/// Every change of a stock point's inventory.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum StockEvent {
    HoldPlaced(Hold),
    HoldReleased {
        reservation: ReservationId,
        reason: ReleaseReason,
    },
    /// A hold became an order's allocation (held → allocated, line by line).
    HoldAllocated {
        reservation: ReservationId,
        order: OrderId,
    },
    /// Units allocated straight to an order, e.g. when a short pick is re-sourced here.
    Allocated {
        order: OrderId,
        lines: Vec<StockLine>,
    },
    /// An order's unshipped allocation given back (cancellation).
    AllocationReleased {
        order: OrderId,
        lines: Vec<StockLine>,
    },
    /// Units left the building: allocated and on_hand both go down.
    Shipped {
        order: OrderId,
        sku: SkuId,
        qty: Qty,
    },
    /// A picker found fewer units than the system thought: the allocation and on_hand shrink by
    /// the missing units, which the order re-sources elsewhere.
    ShortPicked {
        order: OrderId,
        sku: SkuId,
        missing: Qty,
    },
    OnHandSet {
        sku: SkuId,
        on_hand: Qty,
        reason: AdjustReason,
    },
    SafetyStockSet {
        sku: SkuId,
        qty: Qty,
    },
    NonSellableSet {
        sku: SkuId,
        qty: Qty,
    },
    IncomingExpected {
        sku: SkuId,
        incoming: Incoming,
    },
    /// Units arrived. With an incoming id, that expected line is reduced and backorders against
    /// it become on-hand allocations.
    Received {
        sku: SkuId,
        qty: Qty,
        incoming: Option<IncomingId>,
    },
    /// Returned units put back on the shelf.
    Restocked {
        sku: SkuId,
        qty: Qty,
        ret: ReturnId,
    },
}

/// A request to hold lines at this stock point for one reservation.
#[derive(Clone, Debug)]
pub struct HoldRequest {
    pub reservation: ReservationId,
    pub lines: HeldLines,
    pub expires_at: Timestamp,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct StockShortage {
    pub sku: SkuId,
    pub requested: Qty,
    pub available: Qty,
}

/// The answer to a hold request. A "no" is a value, not an error.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HoldOutcome {
    Placed(StockEvent),
    /// This reservation already holds here (a retried message): nothing changes.
    AlreadyHeld,
    /// Someone got there first: nothing is held.
    Insufficient(Vec<StockShortage>),
}

/// Why a request to this stock point was refused; a business "no", returned as a value.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum StockRefusal {
    #[error("no hold for reservation {0} here")]
    UnknownHold(ReservationId),
    #[error("no allocation for order {0} here")]
    UnknownAllocation(OrderId),
    #[error("order {order} has {allocated} units of the SKU allocated here, not {requested}")]
    AllocationTooSmall {
        order: OrderId,
        allocated: Qty,
        requested: Qty,
    },
    #[error(
        "on_hand would be {would_be} but {committed} units are held, allocated or non-sellable"
    )]
    WouldStrandCommitted { would_be: i128, committed: Qty },
    #[error("on_hand cannot go below zero (would be {0})")]
    NegativeOnHand(i128),
    #[error("non-sellable units cannot exceed what is on hand and not promised")]
    NonSellableTooLarge,
    #[error("unknown incoming {0}")]
    UnknownIncoming(IncomingId),
    #[error("receipt of {qty} exceeds the {expected} units still expected on {incoming}")]
    ReceiptExceedsIncoming {
        incoming: IncomingId,
        qty: Qty,
        expected: Qty,
    },
}

/// A change of on_hand requested by an operator.
#[derive(Clone, Copy, Debug)]
pub enum Adjustment {
    Set(Qty),
    Delta(i64),
}

/// The live inventory of one stock point.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StockPointInventory {
    pub id: StockPointId,
    positions: FxHashMap<SkuId, Position>,
    holds: SeqHashMap<ReservationId, Hold>,
    /// Ordered by expiry so that expiring pops from the front.
    expiries: ExpiryIndex,
    /// Unshipped units per order, per SKU and source.
    allocations: FxHashMap<OrderId, Vec<StockLine>>,
}

impl StockPointInventory {
    pub fn new(id: StockPointId) -> StockPointInventory {
        StockPointInventory {
            id,
            ..StockPointInventory::default()
        }
    }

    pub fn position(&self, sku: SkuId) -> Option<&Position> {
        self.positions.get(&sku)
    }

    pub fn positions(&self) -> impl Iterator<Item = (SkuId, &Position)> {
        self.positions.iter().map(|(sku, p)| (*sku, p))
    }

    pub fn find_hold(&self, reservation: ReservationId) -> Option<&Hold> {
        self.holds.get(&reservation)
    }

    pub fn holds(&self) -> impl Iterator<Item = &Hold> {
        self.holds.values()
    }

    pub fn allocations(&self) -> impl Iterator<Item = (OrderId, &[StockLine])> {
        self.allocations
            .iter()
            .map(|(order, lines)| (*order, lines.as_slice()))
    }

    pub fn allocation(&self, order: OrderId) -> Option<&[StockLine]> {
        self.allocations.get(&order).map(Vec::as_slice)
    }

    /// The earliest expiry still pending, for the actor's timer.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiries.first().map(|(at, _)| at)
    }

    pub fn available(&self, sku: SkuId) -> Qty {
        self.positions
            .get(&sku)
            .map_or(Qty::ZERO, Position::available)
    }

    pub fn decide_hold(&self, request: &HoldRequest) -> HoldOutcome {
        if self.holds.contains_key(&request.reservation) {
            return HoldOutcome::AlreadyHeld;
        }
        let mut shortages = Vec::new();
        for (i, line) in request.lines.iter().enumerate() {
            // Lines for the same SKU add up against one position.
            let earlier: Qty = request.lines[..i]
                .iter()
                .filter(|l| l.sku == line.sku && l.source == line.source)
                .map(|l| l.qty)
                .sum();
            let requested = earlier + line.qty;
            let position = self.positions.get(&line.sku);
            let available = match (position, line.source) {
                (None, _) => Qty::ZERO,
                (Some(p), Source::OnHand) => p.available(),
                (Some(p), Source::Incoming) => p.incoming_available(Timestamp(u64::MAX)),
            };
            if requested > available {
                shortages.retain(|s: &StockShortage| s.sku != line.sku);
                shortages.push(StockShortage {
                    sku: line.sku,
                    requested,
                    available,
                });
            }
        }
        if shortages.is_empty() {
            HoldOutcome::Placed(StockEvent::HoldPlaced(Hold {
                reservation: request.reservation,
                lines: request.lines.clone(),
                expires_at: request.expires_at,
            }))
        } else {
            HoldOutcome::Insufficient(shortages)
        }
    }

    pub fn decide_release(
        &self,
        reservation: ReservationId,
        reason: ReleaseReason,
    ) -> Result<StockEvent, StockRefusal> {
        if !self.holds.contains_key(&reservation) {
            return Err(StockRefusal::UnknownHold(reservation));
        }
        Ok(StockEvent::HoldReleased {
            reservation,
            reason,
        })
    }

    /// Holds whose expiry is at or before `now`, oldest first, at most
    /// [`EXPIRIES_PER_TICK_MAX`]. Each comes out once: applying the event removes it.
    pub fn decide_expiries(&self, now: Timestamp) -> Vec<StockEvent> {
        self.expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(EXPIRIES_PER_TICK_MAX)
            .map(|(_, reservation)| StockEvent::HoldReleased {
                reservation,
                reason: ReleaseReason::Expired,
            })
            .collect()
    }

    pub fn decide_allocate_hold(
        &self,
        reservation: ReservationId,
        order: OrderId,
    ) -> Result<StockEvent, StockRefusal> {
        if !self.holds.contains_key(&reservation) {
            return Err(StockRefusal::UnknownHold(reservation));
        }
        Ok(StockEvent::HoldAllocated { reservation, order })
    }

    /// Allocates straight to an order (no checkout hold first), e.g. for re-sourcing.
    pub fn decide_allocate(&self, order: OrderId, lines: Vec<StockLine>) -> HoldOutcome {
        let probe = HoldRequest {
            reservation: ReservationId(u64::MAX),
            lines: lines.into(),
            expires_at: Timestamp(0),
        };
        match self.decide_hold(&probe) {
            HoldOutcome::Placed(_) | HoldOutcome::AlreadyHeld => {
                HoldOutcome::Placed(StockEvent::Allocated {
                    order,
                    lines: probe.lines.into_vec(),
                })
            }
            insufficient => insufficient,
        }
    }

    /// Gives back everything still allocated to `order` here.
    pub fn decide_release_allocation(&self, order: OrderId) -> Result<StockEvent, StockRefusal> {
        let lines = self
            .allocations
            .get(&order)
            .ok_or(StockRefusal::UnknownAllocation(order))?;
        Ok(StockEvent::AllocationReleased {
            order,
            lines: lines.clone(),
        })
    }

    fn allocated_on_hand(&self, order: OrderId, sku: SkuId) -> Qty {
        self.allocations
            .get(&order)
            .map(|lines| {
                lines
                    .iter()
                    .filter(|l| l.sku == sku && l.source == Source::OnHand)
                    .map(|l| l.qty)
                    .sum()
            })
            .unwrap_or(Qty::ZERO)
    }

    pub fn decide_ship(
        &self,
        order: OrderId,
        sku: SkuId,
        qty: Qty,
    ) -> Result<StockEvent, StockRefusal> {
        let allocated = self.allocated_on_hand(order, sku);
        if !self.allocations.contains_key(&order) {
            return Err(StockRefusal::UnknownAllocation(order));
        }
        if qty > allocated || qty.is_zero() {
            return Err(StockRefusal::AllocationTooSmall {
                order,
                allocated,
                requested: qty,
            });
        }
        Ok(StockEvent::Shipped { order, sku, qty })
    }

    /// A whole fulfilment leaving the building: one [`StockEvent::Shipped`] per SKU, decided
    /// together (lines of the same SKU are added up before they are checked against the
    /// allocation), so that a shipment is logged whole or not at all.
    pub fn decide_shipment(
        &self,
        order: OrderId,
        lines: &[(SkuId, Qty)],
    ) -> Result<Vec<StockEvent>, StockRefusal> {
        let mut per_sku: Vec<(SkuId, Qty)> = Vec::with_capacity(lines.len());
        for &(sku, qty) in lines {
            match per_sku.iter_mut().find(|(s, _)| *s == sku) {
                Some((_, total)) => *total += qty,
                None => per_sku.push((sku, qty)),
            }
        }
        per_sku
            .into_iter()
            .map(|(sku, qty)| self.decide_ship(order, sku, qty))
            .collect()
    }

    pub fn decide_short_pick(
        &self,
        order: OrderId,
        sku: SkuId,
        missing: Qty,
    ) -> Result<StockEvent, StockRefusal> {
        let allocated = self.allocated_on_hand(order, sku);
        if missing > allocated || missing.is_zero() {
            return Err(StockRefusal::AllocationTooSmall {
                order,
                allocated,
                requested: missing,
            });
        }
        Ok(StockEvent::ShortPicked {
            order,
            sku,
            missing,
        })
    }

    pub fn decide_adjust(
        &self,
        sku: SkuId,
        adjustment: Adjustment,
        reason: AdjustReason,
    ) -> Result<StockEvent, StockRefusal> {
        let position = self.positions.get(&sku).cloned().unwrap_or_default();
        let would_be: i128 = match adjustment {
            Adjustment::Set(qty) => i128::from(qty.0),
            Adjustment::Delta(delta) => i128::from(position.on_hand.0) + i128::from(delta),
        };
        if would_be < 0 {
            return Err(StockRefusal::NegativeOnHand(would_be));
        }
        let committed = position.held + position.allocated + position.non_sellable;
        if would_be < i128::from(committed.0) {
            return Err(StockRefusal::WouldStrandCommitted {
                would_be,
                committed,
            });
        }
        let on_hand =
            u64::try_from(would_be).map_err(|_| StockRefusal::NegativeOnHand(would_be))?;
        Ok(StockEvent::OnHandSet {
            sku,
            on_hand: Qty(on_hand),
            reason,
        })
    }

    pub fn decide_non_sellable(&self, sku: SkuId, qty: Qty) -> Result<StockEvent, StockRefusal> {
        let position = self.positions.get(&sku).cloned().unwrap_or_default();
        if position.held + position.allocated + qty > position.on_hand {
            return Err(StockRefusal::NonSellableTooLarge);
        }
        Ok(StockEvent::NonSellableSet { sku, qty })
    }

    pub fn decide_receipt(
        &self,
        sku: SkuId,
        qty: Qty,
        incoming: Option<IncomingId>,
    ) -> Result<StockEvent, StockRefusal> {
        if let Some(id) = incoming {
            let expected = self
                .positions
                .get(&sku)
                .and_then(|p| p.incoming.iter().find(|i| i.id == id))
                .map(|i| i.qty)
                .ok_or(StockRefusal::UnknownIncoming(id))?;
            if qty > expected {
                return Err(StockRefusal::ReceiptExceedsIncoming {
                    incoming: id,
                    qty,
                    expected,
                });
            }
        }
        Ok(StockEvent::Received { sku, qty, incoming })
    }

    /// The only function that changes this inventory; the same live and on replay.
    pub fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::HoldPlaced(hold) => {
                for line in &hold.lines {
                    self.position_mut(line.sku)
                        .add(line.source, line.qty, Bucket::Held);
                }
                self.expiries.insert((hold.expires_at, hold.reservation));
                let previous = self.holds.insert(hold.reservation, hold.clone());
                debug_assert!(previous.is_none(), "hold placed twice");
            }
            StockEvent::HoldReleased { reservation, .. } => {
                let Some(hold) = self.holds.remove(reservation) else {
                    debug_assert!(false, "release of unknown hold {reservation}");
                    return;
                };
                self.expiries.remove(&(hold.expires_at, hold.reservation));
                for line in &hold.lines {
                    self.position_mut(line.sku)
                        .remove(line.source, line.qty, Bucket::Held);
                }
            }
            StockEvent::HoldAllocated { reservation, order } => {
                let Some(hold) = self.holds.remove(reservation) else {
                    debug_assert!(false, "allocation of unknown hold {reservation}");
                    return;
                };
                self.expiries.remove(&(hold.expires_at, hold.reservation));
                for line in &hold.lines {
                    let position = self.position_mut(line.sku);
                    position.remove(line.source, line.qty, Bucket::Held);
                    position.add(line.source, line.qty, Bucket::Allocated);
                }
                self.allocations
                    .entry(*order)
                    .or_default()
                    .extend(hold.lines.iter().copied());
            }
            StockEvent::Allocated { order, lines } => {
                for line in lines {
                    self.position_mut(line.sku)
                        .add(line.source, line.qty, Bucket::Allocated);
                }
                self.allocations
                    .entry(*order)
                    .or_default()
                    .extend(lines.iter().copied());
            }
            StockEvent::AllocationReleased { order, lines } => {
                for line in lines {
                    self.take_allocation(*order, line.sku, line.source, line.qty);
                    self.position_mut(line.sku)
                        .remove(line.source, line.qty, Bucket::Allocated);
                }
            }
            StockEvent::Shipped { order, sku, qty } => {
                self.take_allocation(*order, *sku, Source::OnHand, *qty);
                let position = self.position_mut(*sku);
                position.allocated -= *qty;
                position.on_hand -= *qty;
            }
            StockEvent::ShortPicked {
                order,
                sku,
                missing,
            } => {
                self.take_allocation(*order, *sku, Source::OnHand, *missing);
                let position = self.position_mut(*sku);
                position.allocated -= *missing;
                position.on_hand -= *missing;
            }
            StockEvent::OnHandSet { sku, on_hand, .. } => {
                self.position_mut(*sku).on_hand = *on_hand;
            }
            StockEvent::SafetyStockSet { sku, qty } => {
                self.position_mut(*sku).safety_stock = *qty;
            }
            StockEvent::NonSellableSet { sku, qty } => {
                self.position_mut(*sku).non_sellable = *qty;
            }
            StockEvent::IncomingExpected { sku, incoming } => {
                let position = self.position_mut(*sku);
                let at = position.incoming.partition_point(|i| i.eta <= incoming.eta);
                position.incoming.insert(at, incoming.clone());
            }
            StockEvent::Received { sku, qty, incoming } => {
                self.receive(*sku, *qty, *incoming);
            }
            StockEvent::Restocked { sku, qty, .. } => {
                self.position_mut(*sku).on_hand += *qty;
            }
        }
        self.check_after(event);
    }

    /// Applies a receipt: on_hand grows; an expected line shrinks, and backorders that no longer
    /// fit in what is still expected move onto the shelf, allocations before holds.
    fn receive(&mut self, sku: SkuId, qty: Qty, incoming: Option<IncomingId>) {
        let position = self.position_mut(sku);
        position.on_hand += qty;
        let Some(id) = incoming else { return };
        if let Some(at) = position.incoming.iter().position(|i| i.id == id) {
            let line = &mut position.incoming[at];
            line.qty = line.qty.saturating_sub(qty);
            if line.qty.is_zero() {
                position.incoming.remove(at);
            }
        }
        let expected = position.incoming_total();
        let mut excess =
            (position.held_incoming + position.allocated_incoming).saturating_sub(expected);
        let move_allocated = excess.min(position.allocated_incoming);
        position.allocated_incoming -= move_allocated;
        position.allocated += move_allocated;
        excess -= move_allocated;
        let move_held = excess.min(position.held_incoming);
        position.held_incoming -= move_held;
        position.held += move_held;
        let (mut allocated_left, mut held_left) = (move_allocated, move_held);
        for lines in self.allocations.values_mut() {
            convert_to_on_hand(lines, sku, &mut allocated_left);
        }
        for hold in self.holds.values_mut() {
            convert_to_on_hand(&mut hold.lines, sku, &mut held_left);
        }
        debug_assert!(allocated_left.is_zero() && held_left.is_zero());
    }

    fn take_allocation(&mut self, order: OrderId, sku: SkuId, source: Source, qty: Qty) {
        let Some(lines) = self.allocations.get_mut(&order) else {
            debug_assert!(false, "no allocation for {order}");
            return;
        };
        let mut left = qty;
        for line in lines
            .iter_mut()
            .filter(|l| l.sku == sku && l.source == source)
        {
            let take = left.min(line.qty);
            line.qty -= take;
            left -= take;
        }
        debug_assert!(left.is_zero(), "took more than {order} had allocated");
        lines.retain(|l| !l.qty.is_zero());
        if lines.is_empty() {
            self.allocations.remove(&order);
        }
    }

    fn position_mut(&mut self, sku: SkuId) -> &mut Position {
        self.positions.entry(sku).or_default()
    }

    fn check_after(&self, event: &StockEvent) {
        if cfg!(debug_assertions) {
            let skus: Vec<SkuId> = match event {
                StockEvent::HoldPlaced(hold) => hold.lines.iter().map(|l| l.sku).collect(),
                StockEvent::Allocated { lines, .. }
                | StockEvent::AllocationReleased { lines, .. } => {
                    lines.iter().map(|l| l.sku).collect()
                }
                StockEvent::Shipped { sku, .. }
                | StockEvent::ShortPicked { sku, .. }
                | StockEvent::OnHandSet { sku, .. }
                | StockEvent::SafetyStockSet { sku, .. }
                | StockEvent::NonSellableSet { sku, .. }
                | StockEvent::IncomingExpected { sku, .. }
                | StockEvent::Received { sku, .. }
                | StockEvent::Restocked { sku, .. } => vec![*sku],
                StockEvent::HoldReleased { .. } | StockEvent::HoldAllocated { .. } => Vec::new(),
            };
            for sku in skus {
                if let Some(position) = self.positions.get(&sku) {
                    position.check();
                }
            }
        }
    }

    /// Recomputes held and allocated from the holds and allocations and compares them with the
    /// positions. Property tests and recovery call it; it is too slow for every event.
    pub fn audit(&self) -> Result<(), String> {
        let mut expected: FxHashMap<(SkuId, Source), (Qty, Qty)> = FxHashMap::default();
        for hold in self.holds.values() {
            for line in &hold.lines {
                expected.entry((line.sku, line.source)).or_default().0 += line.qty;
            }
            if !self.expiries.contains(&(hold.expires_at, hold.reservation)) {
                return Err(format!(
                    "hold {} missing from the expiry index",
                    hold.reservation
                ));
            }
        }
        if self.expiries.len() != self.holds.len() {
            return Err("expiry index and holds disagree".into());
        }
        for lines in self.allocations.values() {
            for line in lines {
                expected.entry((line.sku, line.source)).or_default().1 += line.qty;
            }
        }
        for (sku, p) in &self.positions {
            let (held, allocated) = expected
                .get(&(*sku, Source::OnHand))
                .copied()
                .unwrap_or_default();
            let (held_in, allocated_in) = expected
                .get(&(*sku, Source::Incoming))
                .copied()
                .unwrap_or_default();
            if (p.held, p.allocated, p.held_incoming, p.allocated_incoming)
                != (held, allocated, held_in, allocated_in)
            {
                return Err(format!("{sku:?}: position {p:?} but holds/allocations say held {held}, allocated {allocated}, held incoming {held_in}, allocated incoming {allocated_in}"));
            }
            if p.held + p.allocated + p.non_sellable > p.on_hand {
                return Err(format!("{sku:?}: over-promised shelf {p:?}"));
            }
            if p.held_incoming + p.allocated_incoming > p.incoming_total() {
                return Err(format!("{sku:?}: over-promised incoming {p:?}"));
            }
        }
        Ok(())
    }

    /// Decides and applies in one step; the event to log is returned.
    pub fn hold(&mut self, request: &HoldRequest) -> HoldOutcome {
        let outcome = self.decide_hold(request);
        if let HoldOutcome::Placed(event) = &outcome {
            self.apply(event);
        }
        outcome
    }
}

/// Stock lines edited in place: an allocation's (`Vec`) or a hold's (`HeldLines`).
trait StockLines: std::ops::DerefMut<Target = [StockLine]> + Extend<StockLine> {
    fn drop_empty(&mut self);
}

impl StockLines for Vec<StockLine> {
    fn drop_empty(&mut self) {
        self.retain(|l| !l.qty.is_zero());
    }
}

impl StockLines for HeldLines {
    fn drop_empty(&mut self) {
        self.retain(|l| !l.qty.is_zero());
    }
}

/// Turns up to `left` units of `sku` in `lines` from incoming to on-hand.
fn convert_to_on_hand(lines: &mut impl StockLines, sku: SkuId, left: &mut Qty) {
    if left.is_zero() {
        return;
    }
    let mut converted = Vec::new();
    for line in lines
        .iter_mut()
        .filter(|l| l.sku == sku && l.source == Source::Incoming)
    {
        let take = (*left).min(line.qty);
        if take.is_zero() {
            break;
        }
        line.qty -= take;
        *left -= take;
        converted.push(StockLine {
            sku,
            qty: take,
            source: Source::OnHand,
        });
    }
    lines.drop_empty();
    lines.extend(converted);
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SkuId = SkuId(0);

    fn stocked(on_hand: u64) -> StockPointInventory {
        let mut inventory = StockPointInventory::new(StockPointId(0));
        let event = inventory
            .decide_adjust(A, Adjustment::Set(Qty(on_hand)), AdjustReason::Adjustment)
            .unwrap();
        inventory.apply(&event);
        inventory
    }

    fn request(reservation: u64, qty: u64, expires_at: u64) -> HoldRequest {
        HoldRequest {
            reservation: ReservationId(reservation),
            lines: smallvec::smallvec![StockLine {
                sku: A,
                qty: Qty(qty),
                source: Source::OnHand,
            }],
            expires_at: Timestamp(expires_at),
        }
    }

    #[test]
    fn a_hold_takes_units_out_of_available() {
        let mut inventory = stocked(10);
        assert!(matches!(
            inventory.hold(&request(1, 4, 100)),
            HoldOutcome::Placed(_)
        ));
        assert_eq!(inventory.available(A), Qty(6));
        assert_eq!(inventory.position(A).unwrap().held, Qty(4));
    }

    #[test]
    fn a_hold_larger_than_available_is_refused_and_changes_nothing() {
        let mut inventory = stocked(3);
        let before = inventory.clone();
        let outcome = inventory.hold(&request(1, 4, 100));
        assert_eq!(
            outcome,
            HoldOutcome::Insufficient(vec![StockShortage {
                sku: A,
                requested: Qty(4),
                available: Qty(3)
            }])
        );
        assert_eq!(inventory, before);
    }

    #[test]
    fn two_lines_of_one_sku_add_up_against_one_position() {
        let inventory = stocked(5);
        let mut req = request(1, 3, 100);
        req.lines.push(req.lines[0]);
        assert!(matches!(
            inventory.decide_hold(&req),
            HoldOutcome::Insufficient(_)
        ));
    }

    #[test]
    fn safety_stock_and_non_sellable_units_are_never_available() {
        let mut inventory = stocked(10);
        inventory.apply(&StockEvent::SafetyStockSet {
            sku: A,
            qty: Qty(2),
        });
        let event = inventory.decide_non_sellable(A, Qty(3)).unwrap();
        inventory.apply(&event);
        assert_eq!(inventory.available(A), Qty(5));
    }

    #[test]
    fn a_retried_hold_for_the_same_reservation_is_a_no_op() {
        let mut inventory = stocked(10);
        inventory.hold(&request(1, 4, 100));
        assert_eq!(
            inventory.hold(&request(1, 4, 100)),
            HoldOutcome::AlreadyHeld
        );
        assert_eq!(inventory.available(A), Qty(6));
    }

    #[test]
    fn holds_expire_once_in_expiry_order() {
        let mut inventory = stocked(10);
        inventory.hold(&request(1, 1, 300));
        inventory.hold(&request(2, 1, 100));
        inventory.hold(&request(3, 1, 200));
        let due = inventory.decide_expiries(Timestamp(250));
        let ids: Vec<_> = due
            .iter()
            .map(|e| match e {
                StockEvent::HoldReleased { reservation, .. } => reservation.0,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids, vec![2, 3]);
        for event in &due {
            inventory.apply(event);
        }
        assert!(inventory.decide_expiries(Timestamp(250)).is_empty());
        assert_eq!(inventory.next_expiry(), Some(Timestamp(300)));
        assert_eq!(inventory.available(A), Qty(9));
    }

    /// 10 of A on hand, 4 of them held for reservation 1 and then allocated to order 9.
    fn four_allocated_to_order_9() -> StockPointInventory {
        let mut inventory = stocked(10);
        inventory.hold(&request(1, 4, 100));
        let event = inventory
            .decide_allocate_hold(ReservationId(1), OrderId(9))
            .unwrap();
        inventory.apply(&event);
        inventory
    }

    #[test]
    fn confirming_moves_units_from_held_to_allocated_and_shipping_takes_them_off_the_shelf() {
        let mut inventory = four_allocated_to_order_9();
        let p = inventory.position(A).unwrap();
        assert_eq!((p.held, p.allocated), (Qty(0), Qty(4)));
        assert!(inventory.decide_expiries(Timestamp(1_000)).is_empty());
        let ship = inventory.decide_ship(OrderId(9), A, Qty(4)).unwrap();
        inventory.apply(&ship);
        let p = inventory.position(A).unwrap();
        assert_eq!((p.on_hand, p.allocated), (Qty(6), Qty(0)));
        assert!(inventory.allocation(OrderId(9)).is_none());
        assert!(inventory.decide_ship(OrderId(9), A, Qty(1)).is_err());
    }

    #[test]
    fn a_shipment_adds_up_its_lines_of_one_sku_before_it_checks_the_allocation() {
        let inventory = four_allocated_to_order_9();
        assert!(inventory
            .decide_shipment(OrderId(9), &[(A, Qty(3)), (A, Qty(2))])
            .is_err());
        let events = inventory
            .decide_shipment(OrderId(9), &[(A, Qty(3)), (A, Qty(1))])
            .unwrap();
        assert_eq!(
            events,
            vec![StockEvent::Shipped {
                order: OrderId(9),
                sku: A,
                qty: Qty(4)
            }]
        );
    }

    #[test]
    fn adjustments_cannot_go_negative_or_strand_held_units() {
        let mut inventory = stocked(10);
        inventory.hold(&request(1, 4, 100));
        assert_eq!(
            inventory.decide_adjust(A, Adjustment::Delta(-11), AdjustReason::Adjustment),
            Err(StockRefusal::NegativeOnHand(-1))
        );
        assert!(matches!(
            inventory.decide_adjust(A, Adjustment::Set(Qty(3)), AdjustReason::CycleCount),
            Err(StockRefusal::WouldStrandCommitted { .. })
        ));
        assert!(inventory
            .decide_adjust(A, Adjustment::Delta(-6), AdjustReason::Adjustment)
            .is_ok());
    }

    #[test]
    fn a_backorder_against_incoming_becomes_on_hand_when_received() {
        let mut inventory = StockPointInventory::new(StockPointId(0));
        inventory.apply(&StockEvent::IncomingExpected {
            sku: A,
            incoming: Incoming {
                id: IncomingId(1),
                qty: Qty(5),
                eta: Timestamp(1_000),
            },
        });
        let backorder = HoldRequest {
            reservation: ReservationId(1),
            lines: smallvec::smallvec![StockLine {
                sku: A,
                qty: Qty(3),
                source: Source::Incoming,
            }],
            expires_at: Timestamp(500),
        };
        assert!(matches!(inventory.hold(&backorder), HoldOutcome::Placed(_)));
        let confirm = inventory
            .decide_allocate_hold(ReservationId(1), OrderId(1))
            .unwrap();
        inventory.apply(&confirm);
        let receipt = inventory
            .decide_receipt(A, Qty(5), Some(IncomingId(1)))
            .unwrap();
        inventory.apply(&receipt);
        let p = inventory.position(A).unwrap();
        assert_eq!(
            (p.on_hand, p.allocated, p.allocated_incoming),
            (Qty(5), Qty(3), Qty(0))
        );
        assert_eq!(p.available(), Qty(2));
        inventory.audit().unwrap();
    }

    #[test]
    fn a_receipt_for_more_than_expected_is_refused() {
        let mut inventory = StockPointInventory::new(StockPointId(0));
        inventory.apply(&StockEvent::IncomingExpected {
            sku: A,
            incoming: Incoming {
                id: IncomingId(1),
                qty: Qty(5),
                eta: Timestamp(1_000),
            },
        });
        assert!(inventory
            .decide_receipt(A, Qty(6), Some(IncomingId(1)))
            .is_err());
        assert!(inventory
            .decide_receipt(A, Qty(6), Some(IncomingId(2)))
            .is_err());
        assert!(inventory.decide_receipt(A, Qty(6), None).is_ok());
    }

    #[test]
    fn a_short_pick_shrinks_allocation_and_on_hand() {
        let mut inventory = stocked(10);
        let event = match inventory.decide_allocate(
            OrderId(1),
            vec![StockLine {
                sku: A,
                qty: Qty(4),
                source: Source::OnHand,
            }],
        ) {
            HoldOutcome::Placed(event) => event,
            other => panic!("{other:?}"),
        };
        inventory.apply(&event);
        let short = inventory.decide_short_pick(OrderId(1), A, Qty(1)).unwrap();
        inventory.apply(&short);
        let p = inventory.position(A).unwrap();
        assert_eq!((p.on_hand, p.allocated), (Qty(9), Qty(3)));
        inventory.audit().unwrap();
    }
}
