//! Warehouse geometry: a single-block layout, bin addresses, per-bin stock and the travel metric.
//!
//! The block has `aisles` parallel vertical pick aisles, numbered left to right, joined by a
//! front cross aisle (y = 0) and a back cross aisle (y = [`Layout::aisle_length_cm`]). Each aisle
//! has `slots_per_aisle` slots on each of its two sides, slot 0 nearest the front. The depot sits
//! on the front cross aisle.
//!
//! **Distance metric.** A picker walks along the centre line of an aisle and picks from both
//! sides without a sideways step, so a bin's [`Point`] is on the aisle's centre line and left and
//! right bins at the same slot share a point. Travel is rectilinear along aisle and cross-aisle
//! centre lines only: changing aisle means walking to a cross aisle, along it, and into the
//! other aisle. [`Layout::distance_cm`] is the closed-form shortest path in that network.
//!
//! All lengths are whole centimetres, so route lengths add up exactly and tests compare them
//! with `==`.

use serde::{Deserialize, Serialize};

use crate::ids::{Qty, SkuId};
use crate::time::Timestamp;

/// Aisles in one block; more than any real single-block pick area.
pub const AISLES_MAX: u32 = 256;
/// Slots on each side of one aisle.
pub const SLOTS_PER_AISLE_MAX: u32 = 1_000;
/// Upper bound for each geometry length (aisle spacing, slot depth, cross-aisle width), 100 m.
/// With the other limits this keeps every route length far inside `u64`.
pub const GEOMETRY_CM_MAX: u32 = 10_000;
/// Slot depth below this would put slot 0 on the front cross aisle's centre line.
pub const SLOT_DEPTH_CM_MIN: u32 = 2;
/// Stock records (bin, SKU, lot) the checks accept in one call.
pub const BIN_STOCK_RECORDS_MAX: usize = 1_000_000;

/// Which side of the aisle a bin faces. Travel ignores it (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// A bin address: the unit that holds stock and that a pick or a putaway names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Location {
    pub aisle: u32,
    /// 0 is the slot nearest the front cross aisle.
    pub slot: u32,
    pub side: Side,
}

impl Location {
    pub fn new(aisle: u32, slot: u32, side: Side) -> Location {
        Location { aisle, slot, side }
    }
}

/// A point on the walking network, in centimetres. `x` grows to the right (aisle 0 at x = 0),
/// `y` grows from the front cross aisle (y = 0) to the back one. A point with `0 < y < L` must
/// lie on an aisle's centre line; points on a cross aisle (y = 0 or y = L) may have any `x`
/// inside the block.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct Point {
    pub x_cm: u32,
    pub y_cm: u32,
}

/// What an operator configures. Validated into a [`Layout`] by [`Layout::new`].
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LayoutConfig {
    pub aisles: u32,
    pub slots_per_aisle: u32,
    /// Centre line to centre line of neighbouring aisles.
    pub aisle_spacing_cm: u32,
    /// Length of one slot along the aisle.
    pub slot_depth_cm: u32,
    /// Width of each cross aisle; half of it lies between a cross aisle's centre line and the
    /// first slot, which is why the aisle length includes one full width.
    pub cross_aisle_cm: u32,
    /// Where the depot sits on the front cross aisle; `None` is in front of aisle 0.
    #[serde(default)]
    pub depot_x_cm: Option<u32>,
    /// Units one bin holds, the same for every bin of the block.
    pub bin_capacity: Qty,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("a layout needs 1 to {AISLES_MAX} aisles, got {0}")]
    Aisles(u32),
    #[error("a layout needs 1 to {SLOTS_PER_AISLE_MAX} slots per aisle, got {0}")]
    Slots(u32),
    #[error("{name} must be between {min} and {GEOMETRY_CM_MAX} cm, got {value}")]
    Geometry {
        name: &'static str,
        min: u32,
        value: u32,
    },
    #[error("the depot must be on the front cross aisle, between x = 0 and x = {max_cm} cm")]
    DepotOutside { max_cm: u32 },
    #[error("bin {0:?} is not in this layout")]
    NoSuchBin(Location),
}

/// A validated single-block layout. Immutable; every accessor is cheap arithmetic.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "LayoutConfig", into = "LayoutConfig")]
pub struct Layout {
    config: LayoutConfig,
    /// Resolved from `config.depot_x_cm` once, so hot loops never re-read the option.
    depot_x_cm: u32,
}

impl TryFrom<LayoutConfig> for Layout {
    type Error = LayoutError;
    fn try_from(config: LayoutConfig) -> Result<Layout, LayoutError> {
        Layout::new(config)
    }
}

impl From<Layout> for LayoutConfig {
    fn from(layout: Layout) -> LayoutConfig {
        layout.config
    }
}

impl Layout {
    pub fn new(config: LayoutConfig) -> Result<Layout, LayoutError> {
        if !(1..=AISLES_MAX).contains(&config.aisles) {
            return Err(LayoutError::Aisles(config.aisles));
        }
        if !(1..=SLOTS_PER_AISLE_MAX).contains(&config.slots_per_aisle) {
            return Err(LayoutError::Slots(config.slots_per_aisle));
        }
        let lengths = [
            ("aisle_spacing_cm", 1, config.aisle_spacing_cm),
            ("slot_depth_cm", SLOT_DEPTH_CM_MIN, config.slot_depth_cm),
            ("cross_aisle_cm", 0, config.cross_aisle_cm),
        ];
        for (name, min, value) in lengths {
            if !(min..=GEOMETRY_CM_MAX).contains(&value) {
                return Err(LayoutError::Geometry { name, min, value });
            }
        }
        let width_cm = (config.aisles - 1) * config.aisle_spacing_cm;
        let depot_x_cm = config.depot_x_cm.unwrap_or(0);
        if depot_x_cm > width_cm {
            return Err(LayoutError::DepotOutside { max_cm: width_cm });
        }
        Ok(Layout { config, depot_x_cm })
    }

    /// The grid the report benchmarks on: 10 aisles × 30 slots × 2 sides, 3 m between aisle
    /// centre lines, 1 m slots, 2 m cross aisles, depot in front of aisle 0.
    pub fn standard_grid() -> Layout {
        Layout::new(LayoutConfig {
            aisles: 10,
            slots_per_aisle: 30,
            aisle_spacing_cm: 300,
            slot_depth_cm: 100,
            cross_aisle_cm: 200,
            depot_x_cm: None,
            bin_capacity: Qty(100),
        })
        .expect("the standard grid is within every limit")
    }

    /// A store: aisle 0 is the back room, aisle 1 the shop floor, the till (depot) between them.
    pub fn store() -> Layout {
        Layout::new(LayoutConfig {
            aisles: 2,
            slots_per_aisle: 8,
            aisle_spacing_cm: 400,
            slot_depth_cm: 120,
            cross_aisle_cm: 200,
            depot_x_cm: Some(200),
            bin_capacity: Qty(40),
        })
        .expect("the store layout is within every limit")
    }

    pub fn config(&self) -> &LayoutConfig {
        &self.config
    }

    pub fn aisles(&self) -> u32 {
        self.config.aisles
    }

    pub fn slots_per_aisle(&self) -> u32 {
        self.config.slots_per_aisle
    }

    pub fn bin_capacity(&self) -> Qty {
        self.config.bin_capacity
    }

    pub fn aisle_x_cm(&self, aisle: u32) -> u32 {
        aisle * self.config.aisle_spacing_cm
    }

    /// From the front cross aisle's centre line to the back one's.
    pub fn aisle_length_cm(&self) -> u32 {
        self.config.slots_per_aisle * self.config.slot_depth_cm + self.config.cross_aisle_cm
    }

    pub fn depot(&self) -> Point {
        Point {
            x_cm: self.depot_x_cm,
            y_cm: 0,
        }
    }

    pub fn contains(&self, location: Location) -> bool {
        location.aisle < self.config.aisles && location.slot < self.config.slots_per_aisle
    }

    /// Where the picker stands to reach `location` (the slot's middle, on the centre line).
    pub fn point(&self, location: Location) -> Result<Point, LayoutError> {
        if !self.contains(location) {
            return Err(LayoutError::NoSuchBin(location));
        }
        let depth = self.config.slot_depth_cm;
        Ok(Point {
            x_cm: self.aisle_x_cm(location.aisle),
            y_cm: self.config.cross_aisle_cm / 2 + location.slot * depth + depth / 2,
        })
    }

    /// Every bin, aisle by aisle, slot by slot, left before right.
    pub fn bins(&self) -> impl Iterator<Item = Location> + '_ {
        let (aisles, slots) = (self.config.aisles, self.config.slots_per_aisle);
        (0..aisles).flat_map(move |aisle| {
            (0..slots).flat_map(move |slot| {
                [Side::Left, Side::Right]
                    .into_iter()
                    .map(move |side| Location { aisle, slot, side })
            })
        })
    }

    /// Whether `x_cm` is some aisle's centre line.
    pub fn is_aisle_x(&self, x_cm: u32) -> bool {
        let spacing = self.config.aisle_spacing_cm;
        x_cm.is_multiple_of(spacing) && x_cm / spacing < self.config.aisles
    }

    /// Shortest walking distance between two points of the network (see the module doc).
    ///
    /// Closed form: in the same aisle it is the difference in y. Otherwise the walk changes x
    /// on one cross aisle, so it is the x difference plus the cheaper of going via the front
    /// (y1 + y2) or via the back (2L − y1 − y2). The one exception is a point on the front
    /// cross aisle between aisles and another on the back one: the walk needs an aisle to climb,
    /// so it detours to the nearest one.
    pub fn distance_cm(&self, p: Point, q: Point) -> u64 {
        let l = u64::from(self.aisle_length_cm());
        let (x1, y1, x2, y2) = (
            u64::from(p.x_cm),
            u64::from(p.y_cm),
            u64::from(q.x_cm),
            u64::from(q.y_cm),
        );
        let p_on_aisle = self.is_aisle_x(p.x_cm);
        let q_on_aisle = self.is_aisle_x(q.x_cm);
        if x1 == x2 && (p_on_aisle || y1 == y2) {
            return y1.abs_diff(y2);
        }
        let dx = x1.abs_diff(x2);
        let reaches_front = |on_aisle: bool, y: u64| on_aisle || y == 0;
        let reaches_back = |on_aisle: bool, y: u64| on_aisle || y == l;
        let mut best = u64::MAX;
        if reaches_front(p_on_aisle, y1) && reaches_front(q_on_aisle, y2) {
            best = best.min(dx + y1 + y2);
        }
        if reaches_back(p_on_aisle, y1) && reaches_back(q_on_aisle, y2) {
            best = best.min(dx + (l - y1) + (l - y2));
        }
        if best == u64::MAX {
            // One is on the front cross aisle, the other on the back one, neither on an aisle:
            // walk to the aisle that minimises the horizontal detour and climb it.
            let spacing = u64::from(self.config.aisle_spacing_cm);
            let (lo, hi) = (x1.min(x2), x1.max(x2));
            let last = u64::from(self.config.aisles - 1) * spacing;
            let first_at_or_after_lo = lo.div_ceil(spacing) * spacing;
            let horizontal = if first_at_or_after_lo <= hi && first_at_or_after_lo <= last {
                dx
            } else {
                // No aisle inside [lo, hi]: the nearest is just left of lo or just right of hi.
                let left = (lo / spacing) * spacing;
                let right = first_at_or_after_lo.min(last);
                let via_left = (lo - left) * 2 + dx;
                let via_right = right.abs_diff(hi) * 2 + dx;
                via_left.min(via_right)
            };
            best = horizontal + l;
        }
        best
    }

    /// Distance from the depot, used to rank bins (removal, putaway, ABC slotting).
    pub fn depot_distance_cm(&self, location: Location) -> Result<u64, LayoutError> {
        Ok(self.distance_cm(self.depot(), self.point(location)?))
    }
}

/// When a lot arrived and, for perishables, when it expires. FIFO and FEFO rank by these.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Default, Serialize, Deserialize,
)]
pub struct Lot {
    pub received_at: Timestamp,
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
}

/// Units of one SKU, from one lot, in one bin. A SKU may live in several bins and a bin may hold
/// several lots; the per-bin quantities of a SKU must add up to its on_hand at the stock point
/// ([`check_on_hand`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct BinStock {
    pub location: Location,
    pub sku: SkuId,
    pub qty: Qty,
    #[serde(default)]
    pub lot: Lot,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlottingError {
    #[error("SKU {sku:?}: bins hold {in_bins} units but on_hand is {on_hand}")]
    OnHandMismatch {
        sku: SkuId,
        in_bins: Qty,
        on_hand: Qty,
    },
    #[error("bin {location:?} holds {held} units, over its capacity of {capacity}")]
    OverCapacity {
        location: Location,
        held: Qty,
        capacity: Qty,
    },
    #[error("bin {location:?} holds more than one SKU")]
    MixedBin { location: Location },
    #[error("more than {BIN_STOCK_RECORDS_MAX} stock records")]
    TooManyRecords,
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Units of `sku` over all its bins. Saturates instead of overflowing: each record is bounded at
/// the edge, so saturation would only show up as a mismatch in [`check_on_hand`].
pub fn units_in_bins(stock: &[BinStock], sku: SkuId) -> Qty {
    Qty(stock
        .iter()
        .filter(|s| s.sku == sku)
        .fold(0u64, |sum, s| sum.saturating_add(s.qty.0)))
}

/// The pairing check between the WMS's bins and the OMS's position: per-bin quantities of `sku`
/// must add up to exactly `on_hand`.
pub fn check_on_hand(stock: &[BinStock], sku: SkuId, on_hand: Qty) -> Result<(), SlottingError> {
    let in_bins = units_in_bins(stock, sku);
    if in_bins != on_hand {
        return Err(SlottingError::OnHandMismatch {
            sku,
            in_bins,
            on_hand,
        });
    }
    Ok(())
}

/// Every record names a bin of `layout`, no bin is over capacity and no bin mixes SKUs (one SKU
/// per bin keeps picking unambiguous; several lots of that SKU may share it).
pub fn check_slotting(layout: &Layout, stock: &[BinStock]) -> Result<(), SlottingError> {
    if stock.len() > BIN_STOCK_RECORDS_MAX {
        return Err(SlottingError::TooManyRecords);
    }
    let mut per_bin: std::collections::BTreeMap<Location, (SkuId, u64)> = Default::default();
    for record in stock {
        if !layout.contains(record.location) {
            return Err(LayoutError::NoSuchBin(record.location).into());
        }
        let entry = per_bin.entry(record.location).or_insert((record.sku, 0));
        if entry.0 != record.sku {
            return Err(SlottingError::MixedBin {
                location: record.location,
            });
        }
        entry.1 = entry.1.saturating_add(record.qty.0);
    }
    let capacity = layout.bin_capacity();
    for (location, (_, held)) in per_bin {
        if held > capacity.0 {
            return Err(SlottingError::OverCapacity {
                location,
                held: Qty(held),
                capacity,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(aisle: u32, slot: u32) -> Location {
        Location::new(aisle, slot, Side::Left)
    }

    #[test]
    fn points_sit_between_the_cross_aisles() {
        let layout = Layout::standard_grid();
        let l = layout.aisle_length_cm();
        assert_eq!(l, 3200);
        assert_eq!(
            layout.point(loc(0, 0)).unwrap(),
            Point { x_cm: 0, y_cm: 150 }
        );
        let last = layout.point(loc(9, 29)).unwrap();
        assert_eq!(
            last,
            Point {
                x_cm: 2700,
                y_cm: 3050
            }
        );
        assert!(layout.point(loc(10, 0)).is_err());
        assert!(layout.point(loc(0, 30)).is_err());
        // Left and right bins share the picker's point.
        let right = layout.point(Location::new(3, 4, Side::Right)).unwrap();
        assert_eq!(layout.point(loc(3, 4)).unwrap(), right);
    }

    #[test]
    fn distance_is_rectilinear_along_aisles_and_cross_aisles() {
        let layout = Layout::standard_grid();
        let p = |a, s| layout.point(loc(a, s)).unwrap();
        // Same aisle: straight along it.
        assert_eq!(layout.distance_cm(p(2, 3), p(2, 10)), 700);
        // Different aisles, both near the front: via the front.
        assert_eq!(layout.distance_cm(p(0, 0), p(2, 0)), 600 + 150 + 150);
        // Both near the back: via the back.
        assert_eq!(layout.distance_cm(p(0, 29), p(1, 29)), 300 + 150 + 150);
        assert_eq!(layout.distance_cm(layout.depot(), p(4, 0)), 1200 + 150);
        // Symmetric.
        assert_eq!(
            layout.distance_cm(p(1, 20), p(5, 2)),
            layout.distance_cm(p(5, 2), p(1, 20))
        );
    }

    #[test]
    fn front_to_back_between_aisles_detours_through_the_nearest_aisle() {
        let layout = Layout::standard_grid();
        let l = u64::from(layout.aisle_length_cm());
        let front = Point { x_cm: 100, y_cm: 0 };
        let back = Point {
            x_cm: 200,
            y_cm: layout.aisle_length_cm(),
        };
        assert_eq!(layout.distance_cm(front, back), 100 + 2 * 100 + l);
    }

    #[test]
    fn layout_rejects_out_of_range_configuration() {
        let mut config = *Layout::standard_grid().config();
        config.aisles = 0;
        assert_eq!(Layout::new(config), Err(LayoutError::Aisles(0)));
        let mut config = *Layout::standard_grid().config();
        config.depot_x_cm = Some(5000);
        assert!(matches!(
            Layout::new(config),
            Err(LayoutError::DepotOutside { .. })
        ));
        let mut config = *Layout::standard_grid().config();
        config.slot_depth_cm = 1;
        assert!(matches!(
            Layout::new(config),
            Err(LayoutError::Geometry { .. })
        ));
        let json = serde_json::to_string(&config).unwrap();
        assert!(serde_json::from_str::<Layout>(&json).is_err());
    }

    #[test]
    fn layouts_round_trip_through_json() {
        let layout = Layout::store();
        let json = serde_json::to_string(&layout).unwrap();
        assert_eq!(serde_json::from_str::<Layout>(&json).unwrap(), layout);
        assert_eq!(layout.bins().count(), 2 * 8 * 2);
    }

    #[test]
    fn on_hand_must_equal_the_sum_over_bins() {
        let sku = SkuId(1);
        let stock = [
            BinStock {
                location: loc(0, 1),
                sku,
                qty: Qty(5),
                lot: Lot::default(),
            },
            BinStock {
                location: loc(1, 1),
                sku,
                qty: Qty(7),
                lot: Lot::default(),
            },
            BinStock {
                location: loc(1, 2),
                sku: SkuId(2),
                qty: Qty(3),
                lot: Lot::default(),
            },
        ];
        assert_eq!(check_on_hand(&stock, sku, Qty(12)), Ok(()));
        assert!(matches!(
            check_on_hand(&stock, sku, Qty(11)),
            Err(SlottingError::OnHandMismatch { .. })
        ));
        assert_eq!(check_slotting(&Layout::standard_grid(), &stock), Ok(()));
    }

    #[test]
    fn slotting_check_catches_capacity_and_mixing() {
        let layout = Layout::store();
        let over = [BinStock {
            location: loc(0, 0),
            sku: SkuId(1),
            qty: Qty(41),
            lot: Lot::default(),
        }];
        assert!(matches!(
            check_slotting(&layout, &over),
            Err(SlottingError::OverCapacity { .. })
        ));
        let mixed = [
            BinStock {
                location: loc(0, 0),
                sku: SkuId(1),
                qty: Qty(1),
                lot: Lot::default(),
            },
            BinStock {
                location: loc(0, 0),
                sku: SkuId(2),
                qty: Qty(1),
                lot: Lot::default(),
            },
        ];
        assert!(matches!(
            check_slotting(&layout, &mixed),
            Err(SlottingError::MixedBin { .. })
        ));
    }
}
