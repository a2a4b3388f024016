//! Order batching: which orders share a pick tour (one tote), and waveless insertion of a new
//! order into a tour that is still open.
//!
//! Every batch is routed with the exact programme ([`optimal_route`]), so the methods compete on
//! batch composition only. Two constructive methods run and [`batch_orders`] keeps the one with
//! the shorter total route:
//!
//! * **Seed** ([`seed_batching`]): the seed is the unassigned order whose farthest pick is
//!   farthest from the depot (then the one touching most aisles): far orders set the tour's
//!   extent, and nearer orders ride along cheaply. Orders are then added by smallest added route
//!   length, ties to the largest aisle overlap, until nothing more fits the tote.
//! * **Savings** ([`savings_batching`]): Clarke–Wright. Start with one tour per order; merge the
//!   pair of tours with the largest saving `d(A) + d(B) − d(A ∪ B)` that fits the tote, recompute
//!   the merged tour's savings, repeat while some saving is positive.
//!
//! [`single_order_picking`] (each order its own tour, first come first served) is the baseline
//! the report compares against.

use serde::{Deserialize, Serialize};

use super::layout::{Layout, Location};
use super::routing::{optimal_route, Route, RoutingError};
use crate::ids::FulfilmentId;
use crate::time::Timestamp;

/// Orders one batching call considers. Savings keeps an n × n table, so this bounds memory.
pub const ORDERS_PER_BATCHING_MAX: usize = 500;
/// Pick lines on one order.
pub const LINES_PER_ORDER_MAX: usize = 200;
/// Open tours one insertion considers.
pub const OPEN_TOURS_MAX: usize = 1_000;

/// One pick line: where to pick and how much tote volume it takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PickLine {
    pub location: Location,
    pub volume_cm3: u64,
}

/// An order to batch (in practice a fulfilment: the part of an order one warehouse serves).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BatchOrder {
    pub id: FulfilmentId,
    pub lines: Vec<PickLine>,
}

impl BatchOrder {
    fn volume_cm3(&self) -> u64 {
        self.lines
            .iter()
            .fold(0u64, |sum, l| sum.saturating_add(l.volume_cm3))
    }
}

/// What one tote holds. Either limit may be `None` (unbounded) but not usually both.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ToteCapacity {
    pub volume_cm3_max: Option<u64>,
    pub lines_max: Option<usize>,
}

impl ToteCapacity {
    fn admits(&self, volume_cm3: u64, lines: usize) -> bool {
        self.volume_cm3_max.is_none_or_le(volume_cm3) && self.lines_max.is_none_or_le(lines)
    }
}

/// `Option::is_none_or` is newer than the workspace's minimum Rust version.
trait NoneOrAtLeast<T> {
    fn is_none_or_le(&self, value: T) -> bool;
}

impl<T: PartialOrd + Copy> NoneOrAtLeast<T> for Option<T> {
    fn is_none_or_le(&self, value: T) -> bool {
        match self {
            Some(max) => value <= *max,
            None => true,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchingMethod {
    Seed,
    Savings,
    SingleOrder,
}

/// One pick tour: the orders in its tote and its optimal route over all their lines. The route's
/// pick indices refer to the lines of `orders` concatenated in order.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Batch {
    pub orders: Vec<FulfilmentId>,
    pub route: Route,
    pub volume_cm3: u64,
    pub lines: usize,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Batching {
    pub method: BatchingMethod,
    pub batches: Vec<Batch>,
    pub distance_cm: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchingError {
    #[error("at most {ORDERS_PER_BATCHING_MAX} orders per batching, got {0}")]
    TooManyOrders(usize),
    #[error("at most {OPEN_TOURS_MAX} open tours, got {0}")]
    TooManyOpenTours(usize),
    #[error("order {0} has no lines or more than {LINES_PER_ORDER_MAX}")]
    Lines(FulfilmentId),
    #[error("order {0} does not fit in one tote on its own; split it first")]
    OrderExceedsTote(FulfilmentId),
    #[error("order {0} appears twice")]
    DuplicateOrder(FulfilmentId),
    #[error(transparent)]
    Routing(#[from] RoutingError),
}

/// A tour under construction: its orders (indices) and the running totals.
#[derive(Clone, Debug)]
struct Group {
    members: Vec<usize>,
    locations: Vec<Location>,
    volume_cm3: u64,
    lines: usize,
    distance_cm: u64,
}

fn validate(orders: &[BatchOrder], capacity: &ToteCapacity) -> Result<(), BatchingError> {
    if orders.len() > ORDERS_PER_BATCHING_MAX {
        return Err(BatchingError::TooManyOrders(orders.len()));
    }
    let mut ids: Vec<FulfilmentId> = orders.iter().map(|o| o.id).collect();
    ids.sort_unstable();
    if let Some(pair) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(BatchingError::DuplicateOrder(pair[0]));
    }
    for order in orders {
        validate_order(order, capacity)?;
    }
    Ok(())
}

fn validate_order(order: &BatchOrder, capacity: &ToteCapacity) -> Result<(), BatchingError> {
    if order.lines.is_empty() || order.lines.len() > LINES_PER_ORDER_MAX {
        return Err(BatchingError::Lines(order.id));
    }
    if !capacity.admits(order.volume_cm3(), order.lines.len()) {
        return Err(BatchingError::OrderExceedsTote(order.id));
    }
    Ok(())
}

fn locations(order: &BatchOrder) -> impl Iterator<Item = Location> + '_ {
    order.lines.iter().map(|l| l.location)
}

fn group_of(layout: &Layout, orders: &[BatchOrder], index: usize) -> Result<Group, BatchingError> {
    let order = &orders[index];
    let locations: Vec<Location> = locations(order).collect();
    let distance_cm = optimal_route(layout, &locations)?.distance_cm;
    Ok(Group {
        members: vec![index],
        locations,
        volume_cm3: order.volume_cm3(),
        lines: order.lines.len(),
        distance_cm,
    })
}

/// `group` with `other`'s orders added, routed; `None` if the tote cannot take it.
fn merged(
    layout: &Layout,
    capacity: &ToteCapacity,
    group: &Group,
    other: &Group,
) -> Result<Option<Group>, BatchingError> {
    let volume_cm3 = group.volume_cm3.saturating_add(other.volume_cm3);
    let lines = group.lines + other.lines;
    if !capacity.admits(volume_cm3, lines) {
        return Ok(None);
    }
    let mut locations = group.locations.clone();
    locations.extend_from_slice(&other.locations);
    let distance_cm = optimal_route(layout, &locations)?.distance_cm;
    let mut members = group.members.clone();
    members.extend_from_slice(&other.members);
    Ok(Some(Group {
        members,
        locations,
        volume_cm3,
        lines,
        distance_cm,
    }))
}

fn aisles_of(order: &BatchOrder) -> Vec<u32> {
    let mut aisles: Vec<u32> = order.lines.iter().map(|l| l.location.aisle).collect();
    aisles.sort_unstable();
    aisles.dedup();
    aisles
}

fn overlap(a: &[u32], b: &[u32]) -> usize {
    a.iter().filter(|x| b.binary_search(x).is_ok()).count()
}

/// Turns groups into routed batches.
fn finish(
    layout: &Layout,
    orders: &[BatchOrder],
    method: BatchingMethod,
    groups: Vec<Group>,
) -> Result<Batching, BatchingError> {
    let mut batches = Vec::with_capacity(groups.len());
    for group in groups {
        let route = optimal_route(layout, &group.locations)?;
        debug_assert_eq!(route.distance_cm, group.distance_cm);
        batches.push(Batch {
            orders: group.members.iter().map(|&i| orders[i].id).collect(),
            route,
            volume_cm3: group.volume_cm3,
            lines: group.lines,
        });
    }
    let distance_cm = batches.iter().map(|b| b.route.distance_cm).sum();
    Ok(Batching {
        method,
        batches,
        distance_cm,
    })
}

/// Each order its own tour, in arrival order: the baseline.
pub fn single_order_picking(
    layout: &Layout,
    orders: &[BatchOrder],
    capacity: &ToteCapacity,
) -> Result<Batching, BatchingError> {
    validate(orders, capacity)?;
    let groups = (0..orders.len())
        .map(|i| group_of(layout, orders, i))
        .collect::<Result<Vec<_>, _>>()?;
    finish(layout, orders, BatchingMethod::SingleOrder, groups)
}

/// Seed batching; see the module doc.
pub fn seed_batching(
    layout: &Layout,
    orders: &[BatchOrder],
    capacity: &ToteCapacity,
) -> Result<Batching, BatchingError> {
    validate(orders, capacity)?;
    let singles = (0..orders.len())
        .map(|i| group_of(layout, orders, i))
        .collect::<Result<Vec<_>, _>>()?;
    let aisles: Vec<Vec<u32>> = orders.iter().map(aisles_of).collect();
    let mut farthest = Vec::with_capacity(orders.len());
    for order in orders {
        let mut far = 0;
        for location in locations(order) {
            far = far.max(
                layout
                    .depot_distance_cm(location)
                    .map_err(RoutingError::from)?,
            );
        }
        farthest.push(far);
    }
    let mut unassigned: Vec<usize> = (0..orders.len()).collect();
    let mut groups = Vec::new();
    while !unassigned.is_empty() {
        // Largest (farthest pick, aisle count); `max_by_key` keeps the last of equals, so
        // compare on the reversed position to prefer the earliest order.
        let (at, &seed) = unassigned
            .iter()
            .enumerate()
            .max_by_key(|&(at, &i)| (farthest[i], aisles[i].len(), std::cmp::Reverse(at)))
            .expect("loop runs while orders remain");
        unassigned.remove(at);
        let mut group = singles[seed].clone();
        let mut group_aisles = aisles[seed].clone();
        loop {
            let mut best: Option<(u64, std::cmp::Reverse<usize>, usize, Group)> = None;
            for (at, &candidate) in unassigned.iter().enumerate() {
                let Some(next) = merged(layout, capacity, &group, &singles[candidate])? else {
                    continue;
                };
                let added = next.distance_cm - group.distance_cm.min(next.distance_cm);
                let shared = std::cmp::Reverse(overlap(&group_aisles, &aisles[candidate]));
                let better = match &best {
                    Some((a, s, _, _)) => (added, shared) < (*a, *s),
                    None => true,
                };
                if better {
                    best = Some((added, shared, at, next));
                }
            }
            let Some((_, _, at, next)) = best else { break };
            let added = unassigned.remove(at);
            group = next;
            group_aisles.extend_from_slice(&aisles[added]);
            group_aisles.sort_unstable();
            group_aisles.dedup();
        }
        groups.push(group);
    }
    finish(layout, orders, BatchingMethod::Seed, groups)
}

/// Clarke–Wright savings with recalculation; see the module doc.
pub fn savings_batching(
    layout: &Layout,
    orders: &[BatchOrder],
    capacity: &ToteCapacity,
) -> Result<Batching, BatchingError> {
    validate(orders, capacity)?;
    let mut groups: Vec<Option<Group>> = (0..orders.len())
        .map(|i| group_of(layout, orders, i).map(Some))
        .collect::<Result<Vec<_>, _>>()?;
    let n = groups.len();
    // saving[i][j] for i < j: the saving of merging groups i and j and the merged group;
    // `None` when they do not fit one tote or save nothing.
    let mut saving: Vec<Vec<Option<(u64, Group)>>> = vec![vec![None; n]; n];
    let pair = |a: &Group, b: &Group| -> Result<Option<(u64, Group)>, BatchingError> {
        let Some(m) = merged(layout, capacity, a, b)? else {
            return Ok(None);
        };
        let apart = a.distance_cm + b.distance_cm;
        Ok((m.distance_cm < apart).then(|| (apart - m.distance_cm, m)))
    };
    for i in 0..n {
        for j in i + 1..n {
            if let (Some(a), Some(b)) = (&groups[i], &groups[j]) {
                saving[i][j] = pair(a, b)?;
            }
        }
    }
    loop {
        let mut best: Option<(u64, usize, usize)> = None;
        for (i, row) in saving.iter().enumerate() {
            for (j, cell) in row.iter().enumerate().skip(i + 1) {
                if let Some((s, _)) = cell {
                    if best.is_none_or_lt(*s) {
                        best = Some((*s, i, j));
                    }
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        let (_, merged_group) = saving[i][j].take().expect("best names a stored saving");
        groups[i] = Some(merged_group);
        groups[j] = None;
        for k in 0..n {
            saving[k.min(j)][k.max(j)] = None;
            if k == i {
                continue;
            }
            let (lo, hi) = (k.min(i), k.max(i));
            saving[lo][hi] = match (&groups[lo], &groups[hi]) {
                (Some(a), Some(b)) => pair(a, b)?,
                _ => None,
            };
        }
    }
    finish(
        layout,
        orders,
        BatchingMethod::Savings,
        groups.into_iter().flatten().collect(),
    )
}

/// Strictly-larger comparison on the first field, so ties keep the earliest pair.
trait NoneOrLess {
    fn is_none_or_lt(&self, value: u64) -> bool;
}

impl NoneOrLess for Option<(u64, usize, usize)> {
    fn is_none_or_lt(&self, value: u64) -> bool {
        match self {
            Some((best, _, _)) => *best < value,
            None => true,
        }
    }
}

/// Seed and savings both run; the batching with the shorter total route wins (seed on a tie).
pub fn batch_orders(
    layout: &Layout,
    orders: &[BatchOrder],
    capacity: &ToteCapacity,
) -> Result<Batching, BatchingError> {
    let seed = seed_batching(layout, orders, capacity)?;
    let savings = savings_batching(layout, orders, capacity)?;
    Ok(if savings.distance_cm < seed.distance_cm {
        savings
    } else {
        seed
    })
}

/// Travel of a batching against single-order picking of the same orders.
#[derive(Clone, Copy, PartialEq, Debug, Serialize, Deserialize)]
pub struct BatchingSavings {
    pub orders: usize,
    pub tours: usize,
    pub distance_per_order_cm: f64,
    pub single_order_distance_per_order_cm: f64,
    /// 1 − batched / single-order travel; 0.3 means 30% less walking.
    pub saving: f64,
}

pub fn compare_with_single_order(batching: &Batching, single: &Batching) -> BatchingSavings {
    let orders: usize = batching.batches.iter().map(|b| b.orders.len()).sum();
    let per_order = |d: u64| {
        if orders == 0 {
            0.0
        } else {
            d as f64 / orders as f64
        }
    };
    let saving = if single.distance_cm == 0 {
        0.0
    } else {
        1.0 - batching.distance_cm as f64 / single.distance_cm as f64
    };
    BatchingSavings {
        orders,
        tours: batching.batches.len(),
        distance_per_order_cm: per_order(batching.distance_cm),
        single_order_distance_per_order_cm: per_order(single.distance_cm),
        saving,
    }
}

/// A tour already started in waveless picking: it accepts more orders until `closes_at` (the
/// cut-off, when the picker is released with it).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct OpenTour {
    pub orders: Vec<BatchOrder>,
    pub closes_at: Timestamp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Insertion {
    /// Add the order to `tours[tour]`; its route grows by `added_cm`.
    Existing { tour: usize, added_cm: u64 },
    /// No open tour takes it more cheaply than a tour of its own of `distance_cm`.
    NewTour { distance_cm: u64 },
}

/// Waveless insertion: the open tour (still before its cut-off at `now`, with room in the tote)
/// whose route grows least by taking `order`, if that growth is smaller than the order's own
/// tour; otherwise a new tour.
pub fn insert_order(
    layout: &Layout,
    tours: &[OpenTour],
    order: &BatchOrder,
    capacity: &ToteCapacity,
    now: Timestamp,
) -> Result<Insertion, BatchingError> {
    if tours.len() > OPEN_TOURS_MAX {
        return Err(BatchingError::TooManyOpenTours(tours.len()));
    }
    validate_order(order, capacity)?;
    let own: Vec<Location> = locations(order).collect();
    let alone_cm = optimal_route(layout, &own)?.distance_cm;
    let mut best = Insertion::NewTour {
        distance_cm: alone_cm,
    };
    let mut best_added = alone_cm;
    for (index, tour) in tours.iter().enumerate() {
        if now >= tour.closes_at {
            continue;
        }
        let volume = tour
            .orders
            .iter()
            .fold(order.volume_cm3(), |v, o| v.saturating_add(o.volume_cm3()));
        let lines = tour.orders.iter().map(|o| o.lines.len()).sum::<usize>() + order.lines.len();
        if !capacity.admits(volume, lines) {
            continue;
        }
        let mut picks: Vec<Location> = tour.orders.iter().flat_map(locations).collect();
        let before = optimal_route(layout, &picks)?.distance_cm;
        picks.extend_from_slice(&own);
        let after = optimal_route(layout, &picks)?.distance_cm;
        let added_cm = after.saturating_sub(before);
        if added_cm < best_added {
            best_added = added_cm;
            best = Insertion::Existing {
                tour: index,
                added_cm,
            };
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fulfilment::layout::Side;

    fn order(id: u64, picks: &[(u32, u32)]) -> BatchOrder {
        BatchOrder {
            id: FulfilmentId(id),
            lines: picks
                .iter()
                .map(|&(a, s)| PickLine {
                    location: Location::new(a, s, Side::Left),
                    volume_cm3: 1_000,
                })
                .collect(),
        }
    }

    const TOTE: ToteCapacity = ToteCapacity {
        volume_cm3_max: Some(4_000),
        lines_max: Some(10),
    };

    fn orders() -> Vec<BatchOrder> {
        vec![
            order(1, &[(0, 5), (1, 5)]),
            order(2, &[(8, 20)]),
            order(3, &[(0, 6)]),
            order(4, &[(8, 22), (9, 1)]),
            order(5, &[(1, 2)]),
        ]
    }

    fn check_partition(batching: &Batching, orders: &[BatchOrder]) {
        let mut ids: Vec<u64> = batching
            .batches
            .iter()
            .flat_map(|b| b.orders.iter().map(|o| o.0))
            .collect();
        ids.sort_unstable();
        assert_eq!(ids, orders.iter().map(|o| o.id.0).collect::<Vec<_>>());
        for batch in &batching.batches {
            assert!(TOTE.admits(batch.volume_cm3, batch.lines));
        }
        let sum: u64 = batching.batches.iter().map(|b| b.route.distance_cm).sum();
        assert_eq!(sum, batching.distance_cm);
    }

    #[test]
    fn both_methods_partition_the_orders_within_capacity_and_beat_single_order() {
        let layout = Layout::standard_grid();
        let orders = orders();
        let single = single_order_picking(&layout, &orders, &TOTE).unwrap();
        for batching in [
            seed_batching(&layout, &orders, &TOTE).unwrap(),
            savings_batching(&layout, &orders, &TOTE).unwrap(),
        ] {
            check_partition(&batching, &orders);
            assert!(
                batching.distance_cm < single.distance_cm,
                "{:?}",
                batching.method
            );
        }
        let best = batch_orders(&layout, &orders, &TOTE).unwrap();
        let report = compare_with_single_order(&best, &single);
        assert!(report.saving > 0.0);
        assert_eq!(report.orders, 5);
    }

    #[test]
    fn near_orders_share_a_tote_and_far_ones_another() {
        let layout = Layout::standard_grid();
        let best = batch_orders(&layout, &orders(), &TOTE).unwrap();
        let together = |a: u64, b: u64| {
            best.batches
                .iter()
                .any(|x| x.orders.contains(&FulfilmentId(a)) && x.orders.contains(&FulfilmentId(b)))
        };
        assert!(together(2, 4));
        assert!(together(1, 3));
    }

    #[test]
    fn invalid_orders_are_typed_errors() {
        let layout = Layout::standard_grid();
        let too_big = order(9, &[(0, 1), (0, 2), (0, 3), (0, 4), (0, 5)]);
        assert_eq!(
            seed_batching(&layout, &[too_big], &TOTE),
            Err(BatchingError::OrderExceedsTote(FulfilmentId(9)))
        );
        let twice = [order(1, &[(0, 1)]), order(1, &[(0, 2)])];
        assert_eq!(
            savings_batching(&layout, &twice, &TOTE),
            Err(BatchingError::DuplicateOrder(FulfilmentId(1)))
        );
        assert_eq!(
            seed_batching(&layout, &[order(3, &[])], &TOTE),
            Err(BatchingError::Lines(FulfilmentId(3)))
        );
    }

    #[test]
    fn waveless_insertion_joins_a_nearby_open_tour_before_its_cut_off() {
        let layout = Layout::standard_grid();
        let tours = vec![
            OpenTour {
                orders: vec![order(1, &[(8, 20)])],
                closes_at: Timestamp(1_000),
            },
            OpenTour {
                orders: vec![order(2, &[(0, 3)])],
                closes_at: Timestamp(1_000),
            },
        ];
        let new = order(3, &[(8, 21)]);
        let at = |now| insert_order(&layout, &tours, &new, &TOTE, Timestamp(now)).unwrap();
        // One slot deeper in the same aisle: 2 × 100 cm more, far less than a tour of its own.
        assert_eq!(
            at(500),
            Insertion::Existing {
                tour: 0,
                added_cm: 200
            }
        );
        // After the cut-off the order opens its own tour.
        assert!(matches!(at(1_000), Insertion::NewTour { .. }));
        // A full tote refuses it too.
        let full = vec![OpenTour {
            orders: vec![order(1, &[(8, 20), (8, 19), (8, 18), (8, 17)])],
            closes_at: Timestamp(1_000),
        }];
        assert!(matches!(
            insert_order(&layout, &full, &new, &TOTE, Timestamp(0)).unwrap(),
            Insertion::NewTour { .. }
        ));
    }
}
