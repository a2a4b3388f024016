//! Checkout: turning a reservation request into a plan, the holds each stock point must place,
//! and the reservation record. The orchestrator actor runs exactly these functions; the holds
//! themselves are placed by the stock points, which re-check availability.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::idempotency::IdempotencyKey;
use crate::ids::{Code, FulfilmentId, Interner, OrderId, Qty, ReservationId, SkuId, StockPointId};
use crate::inventory::{HoldRequest, Source, StockLine};
use crate::limits::{HOLD_TTL_SECONDS_MAX, LINE_QTY_MAX, REQUEST_LINES_MAX};
use crate::network::{Channel, Location, Network};
use crate::order::{self, Allocation, Fulfilment, OrderError, OrderEvent, OrderLine};
use crate::reservation::{
    Reservation, ReservationBook, ReservationRefusal, ReservationStatus, ReservedAllocation,
    ReservedLine, CUSTOMER_REF_BYTES_MAX,
};
use crate::sourcing::{
    plan, AvailabilityView, CompiledRuleSet, PlanError, PlanLine, PlanOptions, PlanOutcome,
    PlanRequest, SourcingPlan,
};
use crate::time::Timestamp;

/// A checkout's request, validated: every field within its limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReserveRequest {
    pub channel: Channel,
    pub lines: Vec<(Code, Qty)>,
    pub ship_to: Option<Location>,
    pub pickup_at: Option<StockPointId>,
    pub ttl_seconds: u64,
    pub allow_split: bool,
    pub allow_partial: bool,
    pub allow_backorder: bool,
    pub customer_ref: Option<String>,
    pub tags: Vec<String>,
    /// The caller's idempotency key and request fingerprint. Kept in the reservation record, in
    /// the same log record as the holds, so that a retry finds the first reservation even
    /// after a crash that lost the caller's answer.
    #[serde(default)]
    pub idempotency: Option<(IdempotencyKey, u64)>,
}

/// A field of a request that is out of range; the gateway answers 422 naming it.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidRequest {
    pub field: String,
    pub message: String,
}

impl ReserveRequest {
    /// A web checkout of `lines` held for `ttl_seconds`, with the API's defaults for the rest:
    /// may split across stock points, no partial fill, no backorder, no customer, no tags, no
    /// idempotency key.
    pub fn web(lines: Vec<(Code, Qty)>, ttl_seconds: u64) -> ReserveRequest {
        ReserveRequest {
            channel: Channel::Web,
            lines,
            ship_to: None,
            pickup_at: None,
            ttl_seconds,
            allow_split: true,
            allow_partial: false,
            allow_backorder: false,
            customer_ref: None,
            tags: Vec::new(),
            idempotency: None,
        }
    }

    pub fn validate(&self) -> Result<(), InvalidRequest> {
        let bad = |field: String, message: String| Err(InvalidRequest { field, message });
        if self.lines.is_empty() || self.lines.len() > REQUEST_LINES_MAX {
            return bad("lines".into(), format!("1 to {REQUEST_LINES_MAX} lines"));
        }
        for (i, (_, qty)) in self.lines.iter().enumerate() {
            if qty.is_zero() || qty.0 > LINE_QTY_MAX {
                return bad(format!("lines[{i}].qty"), format!("1 to {LINE_QTY_MAX}"));
            }
        }
        if self.ttl_seconds == 0 || self.ttl_seconds > HOLD_TTL_SECONDS_MAX {
            return bad("ttl_seconds".into(), format!("1 to {HOLD_TTL_SECONDS_MAX}"));
        }
        if let Some(to) = &self.ship_to {
            if !to.is_valid() {
                return bad(
                    "ship_to".into(),
                    "latitude -90..90 and longitude -180..180".into(),
                );
            }
        }
        if let Some(customer) = &self.customer_ref {
            if customer.is_empty() || customer.len() > CUSTOMER_REF_BYTES_MAX {
                return bad(
                    "customer_ref".into(),
                    format!("1 to {CUSTOMER_REF_BYTES_MAX} bytes"),
                );
            }
        }
        Ok(())
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct LineShortage {
    pub sku: Code,
    pub requested: Qty,
    pub available: Qty,
}

/// What checkout decided before any hold is placed.
#[derive(Clone, Debug)]
pub enum Prepared {
    /// Place these holds, then record the reservation.
    Reserve {
        reservation: Arc<Reservation>,
        holds: HoldRequests,
    },
    Insufficient(Vec<LineShortage>),
    LimitExceeded(ReservationRefusal),
}

/// The read-only pieces of the world checkout needs.
pub struct CheckoutContext<'a, V: AvailabilityView + ?Sized> {
    pub skus: &'a Interner,
    pub network: &'a Network,
    pub rules: &'a CompiledRuleSet,
    pub view: &'a V,
    pub book: &'a ReservationBook,
}

pub fn prepare<V: AvailabilityView + ?Sized>(
    ctx: &CheckoutContext<'_, V>,
    request: &ReserveRequest,
    id: ReservationId,
    now: Timestamp,
) -> Result<Prepared, PlanError> {
    prepare_with(ctx, request, id, now, None)
}

/// The last plan made, for the next request with the same planning inputs: a collection of
/// identical checkouts (a flash sale's) is planned once. Meant to live for one pass over a
/// collection, planned against one view: a plan is advice that the stock points re-check, and
/// the view does not move while one actor plans a collection, so planning again would give the
/// same answer.
#[derive(Default)]
pub struct PlanMemo {
    /// The last request's inputs, and its plan once a second request asked for the same (so
    /// that a stream of different requests does not pay for a copy of every plan).
    last: Option<(PlanInputs, Option<PlanOutcome>)>,
    /// Requests answered from the memo.
    pub hits: u64,
}

/// What the planner reads of a request (the rest, customer, time to live and idempotency key,
/// does not change the plan).
struct PlanInputs {
    channel: Channel,
    lines: Vec<(Code, Qty)>,
    ship_to: Option<Location>,
    pickup_at: Option<StockPointId>,
    tags: Vec<String>,
    options: (bool, bool, bool),
    now: Timestamp,
}

impl PlanInputs {
    fn of(request: &ReserveRequest, now: Timestamp) -> PlanInputs {
        PlanInputs {
            channel: request.channel,
            lines: request.lines.clone(),
            ship_to: request.ship_to,
            pickup_at: request.pickup_at,
            tags: request.tags.clone(),
            options: Self::options(request),
            now,
        }
    }

    fn options(request: &ReserveRequest) -> (bool, bool, bool) {
        (
            request.allow_split,
            request.allow_partial,
            request.allow_backorder,
        )
    }

    fn matches(&self, request: &ReserveRequest, now: Timestamp) -> bool {
        self.now == now
            && self.channel == request.channel
            && self.lines == request.lines
            && self.ship_to == request.ship_to
            && self.pickup_at == request.pickup_at
            && self.tags == request.tags
            && self.options == Self::options(request)
    }
}

impl PlanMemo {
    /// The plan for `request`: the memo's when it has one for the same inputs, else `plan()`'s,
    /// kept in the memo once a second request asks for the same. Lent, not copied: the
    /// reservation and its holds are built from it.
    fn plan<'m>(
        &'m mut self,
        request: &ReserveRequest,
        now: Timestamp,
        plan: impl FnOnce() -> Result<PlanOutcome, PlanError>,
        fresh: &'m mut Option<PlanOutcome>,
    ) -> Result<&'m PlanOutcome, PlanError> {
        let same = matches!(&self.last, Some((inputs, _)) if inputs.matches(request, now));
        if !same {
            self.last = Some((PlanInputs::of(request, now), None));
            return Ok(fresh.insert(plan()?));
        }
        match &mut self.last {
            Some((_, Some(outcome))) => {
                self.hits += 1;
                Ok(outcome)
            }
            Some((_, kept)) => Ok(kept.insert(plan()?)),
            None => Ok(fresh.insert(plan()?)),
        }
    }
}

/// [`prepare`], reusing `memo`'s plan when this request plans the same as the last one (without
/// a memo, a lone request keeps no copy of its inputs).
pub fn prepare_with<V: AvailabilityView + ?Sized>(
    ctx: &CheckoutContext<'_, V>,
    request: &ReserveRequest,
    id: ReservationId,
    now: Timestamp,
    memo: Option<&mut PlanMemo>,
) -> Result<Prepared, PlanError> {
    // A SKU nobody ever stocked has nothing available anywhere: no need to plan. Each code is
    // looked up once.
    let mut unknown = Vec::new();
    let mut lines: SmallVec<[PlanLine<'_>; 1]> = SmallVec::with_capacity(request.lines.len());
    for (code, qty) in &request.lines {
        match ctx.skus.get(code.as_str()) {
            Some(sku) => lines.push(PlanLine {
                sku: SkuId(sku),
                code: code.as_str(),
                qty: *qty,
            }),
            None => unknown.push(LineShortage {
                sku: code.clone(),
                requested: *qty,
                available: Qty::ZERO,
            }),
        }
    }
    if !unknown.is_empty() && !request.allow_partial {
        return Ok(Prepared::Insufficient(unknown));
    }
    if let Some(customer) = request.customer_ref.as_deref() {
        let known: Vec<(SkuId, Qty)> = lines.iter().map(|l| (l.sku, l.qty)).collect();
        if let Err(refusal) = ctx.book.check_limits(Some(customer), &known) {
            return Ok(Prepared::LimitExceeded(refusal));
        }
    }
    if lines.is_empty() {
        return Ok(Prepared::Insufficient(unknown));
    }
    let plan_request = PlanRequest {
        channel: request.channel,
        lines: &lines,
        ship_to: request.ship_to,
        pickup_at: request.pickup_at,
        tags: &request.tags,
        exclude: &[],
        options: PlanOptions {
            allow_split: request.allow_split,
            allow_partial: request.allow_partial,
            allow_backorder: request.allow_backorder,
        },
        now,
    };
    let expires_at = now.plus_seconds(request.ttl_seconds);
    let planned = || plan(ctx.rules, ctx.network, ctx.view, &plan_request);
    let mut fresh = None;
    let outcome = match memo {
        Some(memo) => memo.plan(request, now, planned, &mut fresh)?,
        None => fresh.insert(planned()?),
    };
    match outcome {
        PlanOutcome::Planned(plan) => {
            let holds = hold_requests(plan, id, expires_at);
            let reservation = reservation_from_plan(id, request, &lines, plan, now, expires_at);
            Ok(Prepared::Reserve {
                reservation: Arc::new(reservation),
                holds,
            })
        }
        PlanOutcome::Insufficient { shortages, .. } => Ok(Prepared::Insufficient(
            shortages
                .iter()
                .map(|s| LineShortage {
                    sku: ctx
                        .skus
                        .code(s.sku.0)
                        .cloned()
                        .expect("planned SKUs come from the interner"),
                    requested: s.requested,
                    available: s.available,
                })
                .chain(unknown)
                .collect(),
        )),
    }
}

/// A reservation's hold requests, one per stock point: most reservations have one.
pub type HoldRequests = SmallVec<[(StockPointId, HoldRequest); 1]>;

/// One hold request per stock point in the plan.
pub fn hold_requests(
    plan: &SourcingPlan,
    reservation: ReservationId,
    expires_at: Timestamp,
) -> HoldRequests {
    let mut out = HoldRequests::new();
    for a in &plan.allocations {
        let line = StockLine {
            sku: a.sku,
            qty: a.qty,
            source: a.source,
        };
        match out.iter_mut().find(|(sp, _)| *sp == a.stock_point) {
            Some((_, request)) => request.lines.push(line),
            None => out.push((
                a.stock_point,
                HoldRequest {
                    reservation,
                    lines: smallvec::smallvec![line],
                    expires_at,
                },
            )),
        }
    }
    out
}

fn reservation_from_plan(
    id: ReservationId,
    request: &ReserveRequest,
    lines: &[PlanLine<'_>],
    plan: &SourcingPlan,
    now: Timestamp,
    expires_at: Timestamp,
) -> Reservation {
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, line)| ReservedLine {
            sku: line.sku,
            requested: line.qty,
            allocations: plan
                .allocations
                .iter()
                .filter(|a| a.line == i)
                .map(|a| ReservedAllocation {
                    stock_point: a.stock_point,
                    qty: a.qty,
                    source: a.source,
                })
                .collect(),
        })
        .collect();
    Reservation {
        id,
        channel: request.channel,
        customer_ref: request.customer_ref.clone(),
        lines,
        created_at: now,
        expires_at,
        status: ReservationStatus::Held,
        order: None,
        explanation: plan.explanation.clone(),
        idempotency: request.idempotency.clone(),
    }
}

/// The order a confirmed reservation becomes: one line per SKU, one fulfilment per stock point
/// with ids from `first_fulfilment` on.
pub fn order_from_reservation(
    reservation: &Reservation,
    order: OrderId,
    first_fulfilment: FulfilmentId,
) -> Result<OrderEvent, OrderError> {
    let mut lines: Vec<OrderLine> = Vec::new();
    // One fulfilment per stock point and source: units on the shelf ship now, backordered
    // units ship when the stock arrives.
    let mut per_stock_point: Vec<((StockPointId, Source), Vec<Allocation>)> = Vec::new();
    for line in &reservation.lines {
        let reserved = line.reserved();
        if reserved.is_zero() {
            continue;
        }
        match lines.iter_mut().find(|l| l.sku == line.sku) {
            Some(existing) => existing.qty += reserved,
            None => lines.push(OrderLine {
                sku: line.sku,
                qty: reserved,
            }),
        }
        for a in &line.allocations {
            let key = (a.stock_point, a.source);
            let allocations = match per_stock_point.iter_mut().find(|(k, _)| *k == key) {
                Some((_, allocations)) => allocations,
                None => {
                    per_stock_point.push((key, Vec::new()));
                    &mut per_stock_point.last_mut().expect("just pushed").1
                }
            };
            match allocations.iter_mut().find(|x| x.sku == line.sku) {
                Some(existing) => existing.qty += a.qty,
                None => allocations.push(Allocation {
                    sku: line.sku,
                    qty: a.qty,
                    source: a.source,
                }),
            }
        }
    }
    let fulfilments = per_stock_point
        .iter()
        .enumerate()
        .map(|(i, ((sp, _), allocations))| {
            Fulfilment::new(
                FulfilmentId(first_fulfilment.0 + i as u64),
                *sp,
                allocations,
            )
        })
        .collect();
    order::create(
        order,
        Some(reservation.id),
        reservation.channel,
        reservation.customer_ref.clone(),
        lines,
        fulfilments,
    )
}
