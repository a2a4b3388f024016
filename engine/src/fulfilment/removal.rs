//! Removal: which bins a pick of `qty` units of a SKU takes from.
//!
//! Candidates are ranked by lot first (FIFO: oldest receipt; FEFO: earliest expiry, lots that
//! never expire last, then oldest receipt), then by distance from the depot (a shorter walk),
//! then emptiest bin first (emptying bins frees them for putaway), then by address so the
//! choice is deterministic. The pick takes greedily in that order and may span several bins;
//! what the warehouse cannot cover is reported as a shortfall, which is data, not an error: a
//! short pick goes back to the orchestrator to re-source.

use serde::{Deserialize, Serialize};

use super::layout::{BinStock, Layout, LayoutError, Location, Lot, BIN_STOCK_RECORDS_MAX};
use crate::ids::{Qty, SkuId};
use crate::time::Timestamp;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemovalPolicy {
    /// First in, first out: oldest receipt first.
    Fifo,
    /// First expired, first out: earliest expiry first; lots without expiry after all others.
    Fefo,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct RemovalRequest {
    pub sku: SkuId,
    pub qty: Qty,
    pub policy: RemovalPolicy,
    /// Lots that expire at or before `now` are never picked; they are counted in
    /// [`Removal::expired`] so the caller can raise a write-off.
    pub now: Timestamp,
}

/// Units taken from one lot in one bin.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Take {
    pub location: Location,
    pub lot: Lot,
    pub qty: Qty,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Removal {
    /// In picking-priority order; their quantities add up to `qty − shortfall`.
    pub takes: Vec<Take>,
    /// Units asked for that the warehouse does not have in pickable lots.
    pub shortfall: Qty,
    /// Units of this SKU skipped because their lot has expired.
    pub expired: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemovalError {
    #[error("more than {BIN_STOCK_RECORDS_MAX} stock records")]
    TooManyRecords,
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Chooses the bins for a pick; see the module doc for the ranking.
pub fn choose_bins(
    layout: &Layout,
    stock: &[BinStock],
    request: &RemovalRequest,
) -> Result<Removal, RemovalError> {
    if stock.len() > BIN_STOCK_RECORDS_MAX {
        return Err(RemovalError::TooManyRecords);
    }
    let mut expired = 0u64;
    let mut candidates: Vec<(LotKey, u64, u64, Location, &BinStock)> = Vec::new();
    for record in stock
        .iter()
        .filter(|s| s.sku == request.sku && !s.qty.is_zero())
    {
        if record.lot.expires_at.is_some_and(|at| at <= request.now) {
            expired = expired.saturating_add(record.qty.0);
            continue;
        }
        let distance = layout.depot_distance_cm(record.location)?;
        let key = lot_key(record.lot, request.policy);
        candidates.push((key, distance, record.qty.0, record.location, record));
    }
    candidates.sort_by_key(|c| (c.0, c.1, c.2, c.3));
    let mut remaining = request.qty.0;
    let mut takes = Vec::new();
    for (.., record) in candidates {
        if remaining == 0 {
            break;
        }
        let qty = remaining.min(record.qty.0);
        remaining -= qty;
        takes.push(Take {
            location: record.location,
            lot: record.lot,
            qty: Qty(qty),
        });
    }
    debug_assert_eq!(
        takes.iter().map(|t| t.qty.0).sum::<u64>() + remaining,
        request.qty.0
    );
    Ok(Removal {
        takes,
        shortfall: Qty(remaining),
        expired: Qty(expired),
    })
}

/// Sort key for a lot: smaller goes first.
type LotKey = (u64, u64);

fn lot_key(lot: Lot, policy: RemovalPolicy) -> LotKey {
    match policy {
        RemovalPolicy::Fifo => (lot.received_at.0, 0),
        // `u64::MAX` puts never-expiring lots after every dated one.
        RemovalPolicy::Fefo => (
            lot.expires_at.map_or(u64::MAX, |at| at.0),
            lot.received_at.0,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fulfilment::layout::Side;

    const SKU: SkuId = SkuId(7);

    fn record(aisle: u32, slot: u32, qty: u64, received: u64, expires: Option<u64>) -> BinStock {
        BinStock {
            location: Location::new(aisle, slot, Side::Left),
            sku: SKU,
            qty: Qty(qty),
            lot: Lot {
                received_at: Timestamp(received),
                expires_at: expires.map(Timestamp),
            },
        }
    }

    fn check(
        stock: &[BinStock],
        qty: u64,
        policy: RemovalPolicy,
        expect: &[(u32, u32, u64)],
        short: u64,
    ) {
        let request = RemovalRequest {
            sku: SKU,
            qty: Qty(qty),
            policy,
            now: Timestamp(1_000),
        };
        let removal = choose_bins(&Layout::standard_grid(), stock, &request).unwrap();
        let got: Vec<(u32, u32, u64)> = removal
            .takes
            .iter()
            .map(|t| (t.location.aisle, t.location.slot, t.qty.0))
            .collect();
        assert_eq!(got, expect);
        assert_eq!(removal.shortfall, Qty(short));
    }

    #[test]
    fn fifo_takes_the_oldest_lot_even_if_it_is_far() {
        let stock = [record(0, 0, 5, 200, None), record(9, 29, 5, 100, None)];
        check(&stock, 3, RemovalPolicy::Fifo, &[(9, 29, 3)], 0);
    }

    #[test]
    fn fefo_takes_the_earliest_expiry_and_never_expiring_last() {
        let stock = [
            record(0, 0, 5, 100, None),
            record(5, 5, 5, 300, Some(5_000)),
            record(6, 6, 5, 200, Some(9_000)),
        ];
        check(
            &stock,
            12,
            RemovalPolicy::Fefo,
            &[(5, 5, 5), (6, 6, 5), (0, 0, 2)],
            0,
        );
    }

    #[test]
    fn same_lot_goes_nearest_first_then_emptiest_first() {
        let stock = [
            record(3, 0, 5, 100, None),
            record(1, 0, 9, 100, None),
            record(1, 0, 2, 100, None),
        ];
        check(
            &stock,
            12,
            RemovalPolicy::Fifo,
            &[(1, 0, 2), (1, 0, 9), (3, 0, 1)],
            0,
        );
    }

    #[test]
    fn not_enough_stock_is_a_shortfall_not_an_error() {
        let stock = [record(2, 2, 4, 100, None)];
        check(&stock, 10, RemovalPolicy::Fifo, &[(2, 2, 4)], 6);
        check(&[], 1, RemovalPolicy::Fefo, &[], 1);
    }

    #[test]
    fn expired_lots_are_skipped_and_counted() {
        let stock = [
            record(0, 0, 5, 100, Some(1_000)),
            record(4, 4, 5, 100, Some(2_000)),
        ];
        let request = RemovalRequest {
            sku: SKU,
            qty: Qty(3),
            policy: RemovalPolicy::Fefo,
            now: Timestamp(1_000),
        };
        let removal = choose_bins(&Layout::standard_grid(), &stock, &request).unwrap();
        assert_eq!(removal.expired, Qty(5));
        assert_eq!(removal.takes.len(), 1);
        assert_eq!(removal.takes[0].location.aisle, 4);
    }

    #[test]
    fn a_bin_outside_the_layout_is_an_error() {
        let stock = [record(99, 0, 5, 100, None)];
        let request = RemovalRequest {
            sku: SKU,
            qty: Qty(1),
            policy: RemovalPolicy::Fifo,
            now: Timestamp(0),
        };
        assert!(choose_bins(&Layout::standard_grid(), &stock, &request).is_err());
    }
}
