//! Putaway: which bins received units go to, by velocity class.
//!
//! Bins are ranked by walking distance from the depot and split into zones: the nearest
//! [`ZONE_A_PERCENT`] of bins are zone A, the next [`ZONE_B_PERCENT`] zone B, the rest zone C.
//! Fast movers (class A) belong near the depot because every pick of them walks there; slow
//! movers go to the back. Units of a class go to bins of its own zone first and spill into the
//! neighbouring zones only when it is full; within a zone, bins already holding the SKU come
//! first (consolidation keeps pick lists short), then nearer bins. Spilling into a zone nearer
//! the depot takes its farthest bins first, so slow movers do not crowd out fast ones. Capacity
//! is respected and a bin never mixes SKUs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::{BinStock, Layout, LayoutError, Location, BIN_STOCK_RECORDS_MAX};
use crate::ids::{Qty, SkuId};

/// Share of bins, nearest to the depot, that make up zone A.
pub const ZONE_A_PERCENT: usize = 20;
/// Share of bins, after zone A, that make up zone B; the rest is zone C.
pub const ZONE_B_PERCENT: usize = 30;

/// How fast a SKU moves (ABC analysis on picks); decides its zone.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub enum VelocityClass {
    A,
    B,
    C,
}

impl VelocityClass {
    fn rank(self) -> usize {
        self as usize
    }
}

/// Every bin of the layout, nearest to the depot first (ties by address).
pub fn bins_by_depot_distance(layout: &Layout) -> Vec<Location> {
    let depot = layout.depot();
    let mut bins: Vec<(u64, Location)> = layout
        .bins()
        .map(|location| {
            // `bins()` only yields bins of the layout, so `point` cannot fail here.
            let distance = layout
                .point(location)
                .map_or(u64::MAX, |p| layout.distance_cm(depot, p));
            (distance, location)
        })
        .collect();
    bins.sort_unstable();
    bins.into_iter().map(|(_, location)| location).collect()
}

/// The zone of the bin at position `rank` (0 = nearest) among `bins` bins.
pub fn zone_of_rank(rank: usize, bins: usize) -> VelocityClass {
    // Compare rank·100 against the cut-offs instead of dividing, so small layouts still get
    // a zone A as soon as they have 5 bins.
    let scaled = rank.saturating_mul(100);
    if scaled < ZONE_A_PERCENT.saturating_mul(bins) {
        VelocityClass::A
    } else if scaled < (ZONE_A_PERCENT + ZONE_B_PERCENT).saturating_mul(bins) {
        VelocityClass::B
    } else {
        VelocityClass::C
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Put {
    pub location: Location,
    pub qty: Qty,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Putaway {
    pub puts: Vec<Put>,
    /// Units no bin could take: the block is full for this SKU. Data, not an error: the
    /// caller parks them in overflow or refuses the receipt.
    pub unplaced: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PutawayError {
    #[error("more than {BIN_STOCK_RECORDS_MAX} stock records")]
    TooManyRecords,
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Chooses bins for `qty` received units of `sku`, a SKU of velocity `class`.
pub fn choose_putaway(
    layout: &Layout,
    stock: &[BinStock],
    sku: SkuId,
    qty: Qty,
    class: VelocityClass,
) -> Result<Putaway, PutawayError> {
    if stock.len() > BIN_STOCK_RECORDS_MAX {
        return Err(PutawayError::TooManyRecords);
    }
    // What each bin holds now: (units, Some(sku) if exactly one SKU, None if mixed).
    let mut held: BTreeMap<Location, (u64, Option<SkuId>)> = BTreeMap::new();
    for record in stock.iter().filter(|r| !r.qty.is_zero()) {
        if !layout.contains(record.location) {
            return Err(LayoutError::NoSuchBin(record.location).into());
        }
        let entry = held.entry(record.location).or_insert((0, Some(record.sku)));
        entry.0 = entry.0.saturating_add(record.qty.0);
        if entry.1 != Some(record.sku) {
            entry.1 = None;
        }
    }
    let capacity = layout.bin_capacity().0;
    let ranked = bins_by_depot_distance(layout);
    let total = ranked.len();
    // Sort key: zone distance from the class, consolidation, then nearer (or, spilling towards
    // the depot, farther) first, then rank for determinism.
    let mut candidates: Vec<((usize, bool, usize), Location, u64)> = Vec::new();
    for (rank, &location) in ranked.iter().enumerate() {
        let (units, owner) = held.get(&location).copied().unwrap_or((0, Some(sku)));
        let free = capacity.saturating_sub(units);
        let same_sku = units > 0 && owner == Some(sku);
        if free == 0 || !(units == 0 || same_sku) {
            continue;
        }
        let zone = zone_of_rank(rank, total).rank();
        let order = if zone < class.rank() {
            total - rank
        } else {
            rank
        };
        let key = (zone.abs_diff(class.rank()), !same_sku, order);
        candidates.push((key, location, free));
    }
    candidates.sort_unstable_by_key(|c| c.0);
    let mut remaining = qty.0;
    let mut puts = Vec::new();
    for (_, location, free) in candidates {
        if remaining == 0 {
            break;
        }
        let put = remaining.min(free);
        remaining -= put;
        puts.push(Put {
            location,
            qty: Qty(put),
        });
    }
    Ok(Putaway {
        puts,
        unplaced: Qty(remaining),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fulfilment::layout::{check_slotting, Lot};

    fn apply(stock: &mut Vec<BinStock>, sku: SkuId, putaway: &Putaway) {
        for put in &putaway.puts {
            stock.push(BinStock {
                location: put.location,
                sku,
                qty: put.qty,
                lot: Lot::default(),
            });
        }
    }

    #[test]
    fn fast_movers_go_near_the_depot_and_slow_movers_far() {
        let layout = Layout::standard_grid();
        let a = choose_putaway(&layout, &[], SkuId(1), Qty(10), VelocityClass::A).unwrap();
        let c = choose_putaway(&layout, &[], SkuId(2), Qty(10), VelocityClass::C).unwrap();
        let distance = |p: &Putaway| layout.depot_distance_cm(p.puts[0].location).unwrap();
        assert!(distance(&a) < distance(&c));
        assert_eq!(a.puts[0].location, bins_by_depot_distance(&layout)[0]);
    }

    #[test]
    fn capacity_is_respected_and_the_rest_spills_or_is_unplaced() {
        let layout = Layout::store(); // 32 bins of 40 units
        let mut stock = Vec::new();
        let first = choose_putaway(&layout, &stock, SkuId(1), Qty(100), VelocityClass::A).unwrap();
        assert_eq!(first.puts.iter().map(|p| p.qty.0).sum::<u64>(), 100);
        assert!(first.puts.iter().all(|p| p.qty.0 <= 40));
        apply(&mut stock, SkuId(1), &first);
        assert_eq!(check_slotting(&layout, &stock), Ok(()));
        let huge =
            choose_putaway(&layout, &stock, SkuId(2), Qty(10_000), VelocityClass::B).unwrap();
        assert_eq!(huge.unplaced, Qty(10_000 - (32 - 3) * 40));
        apply(&mut stock, SkuId(2), &huge);
        assert_eq!(check_slotting(&layout, &stock), Ok(()));
    }

    #[test]
    fn a_partly_filled_bin_of_the_same_sku_is_topped_up_first() {
        let layout = Layout::standard_grid();
        let zone_a_bin = bins_by_depot_distance(&layout)[10];
        let stock = [BinStock {
            location: zone_a_bin,
            sku: SkuId(1),
            qty: Qty(95),
            lot: Lot::default(),
        }];
        let putaway = choose_putaway(&layout, &stock, SkuId(1), Qty(8), VelocityClass::A).unwrap();
        assert_eq!(
            putaway.puts[0],
            Put {
                location: zone_a_bin,
                qty: Qty(5)
            }
        );
        assert_eq!(putaway.puts[1].qty, Qty(3));
    }

    #[test]
    fn zones_split_twenty_thirty_fifty() {
        let zones: Vec<VelocityClass> = (0..10).map(|r| zone_of_rank(r, 10)).collect();
        use VelocityClass::{A, B, C};
        assert_eq!(zones, vec![A, A, B, B, B, C, C, C, C, C]);
    }
}
