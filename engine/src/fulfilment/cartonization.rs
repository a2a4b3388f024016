//! Cartonization: which cartons a shipment's units go into, and where in each carton.
//!
//! First-fit decreasing with real 3D placement. Units are sorted by volume, largest first
//! (big units are the hard ones; small ones fill the holes). Each unit goes into the first open
//! carton where it fits, trying that carton's extreme points (Crainic, Perboli & Tadei 2008)
//! lowest first and every allowed rotation; a unit that fits nowhere opens the largest box type
//! that can take it, so later units find room. Once everything is placed, each carton is
//! downsized to the smallest box type its contents can be re-packed into. A placement never
//! overlaps another, never leaves the box and never pushes a carton over its weight limit.
//!
//! Extreme points: after a unit is placed at (x, y, z) with size (l, w, h), the corners
//! (x + l, y, z), (x, y + w, z) and (x, y, z + h) become candidate positions, together with
//! their projections onto the nearest face below or behind them (so units rest on something
//! instead of floating, and gaps next to earlier units get used).
//!
//! Coordinates are millimetres from the box's inner corner: x along its length, y along its
//! width, z up.

use serde::{Deserialize, Serialize};

use crate::ids::SkuId;

/// Units (item quantity summed) one call packs.
pub const UNITS_PER_PACKING_MAX: usize = 2_000;
/// Box types in one configured box set.
pub const BOX_TYPES_MAX: usize = 64;
/// Longest side of an item or a box, 10 m.
pub const DIMENSION_MM_MAX: u32 = 10_000;
/// Heaviest unit or box limit, 1 t.
pub const WEIGHT_G_MAX: u32 = 1_000_000;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Dims {
    pub length_mm: u32,
    pub width_mm: u32,
    pub height_mm: u32,
}

impl Dims {
    pub fn new(length_mm: u32, width_mm: u32, height_mm: u32) -> Dims {
        Dims {
            length_mm,
            width_mm,
            height_mm,
        }
    }

    pub fn volume_mm3(&self) -> u64 {
        u64::from(self.length_mm) * u64::from(self.width_mm) * u64::from(self.height_mm)
    }

    fn valid(&self) -> bool {
        [self.length_mm, self.width_mm, self.height_mm]
            .iter()
            .all(|d| (1..=DIMENSION_MM_MAX).contains(d))
    }

    /// Distinct orientations: all six axis permutations, or only the two that keep the height
    /// vertical for an item that must stay upright.
    fn rotations(&self, keep_upright: bool) -> Vec<Dims> {
        let (l, w, h) = (self.length_mm, self.width_mm, self.height_mm);
        let mut all = if keep_upright {
            vec![Dims::new(l, w, h), Dims::new(w, l, h)]
        } else {
            vec![
                Dims::new(l, w, h),
                Dims::new(w, l, h),
                Dims::new(l, h, w),
                Dims::new(h, l, w),
                Dims::new(w, h, l),
                Dims::new(h, w, l),
            ]
        };
        let mut seen = Vec::with_capacity(all.len());
        all.retain(|d| {
            let fresh = !seen.contains(d);
            seen.push(*d);
            fresh
        });
        all
    }

    fn holds(&self, other: &Dims) -> bool {
        other.length_mm <= self.length_mm
            && other.width_mm <= self.width_mm
            && other.height_mm <= self.height_mm
    }
}

/// A carton size in the configured box set.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct BoxType {
    pub name: String,
    pub inner: Dims,
    pub max_weight_g: u32,
}

/// Units of one SKU to pack.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PackItem {
    pub sku: SkuId,
    pub dims: Dims,
    pub weight_g: u32,
    pub qty: u32,
    /// "This side up": only rotations about the vertical axis.
    #[serde(default)]
    pub keep_upright: bool,
}

/// One unit in a carton: which item (index into the input), where, and in which orientation.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Placement {
    pub item: usize,
    pub x_mm: u32,
    pub y_mm: u32,
    pub z_mm: u32,
    /// The unit's size as placed (after rotation).
    pub dims: Dims,
}

impl Placement {
    fn overlaps(&self, other: &Placement) -> bool {
        let apart = |a: u32, al: u32, b: u32, bl: u32| a + al <= b || b + bl <= a;
        !(apart(
            self.x_mm,
            self.dims.length_mm,
            other.x_mm,
            other.dims.length_mm,
        ) || apart(
            self.y_mm,
            self.dims.width_mm,
            other.y_mm,
            other.dims.width_mm,
        ) || apart(
            self.z_mm,
            self.dims.height_mm,
            other.z_mm,
            other.dims.height_mm,
        ))
    }
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Carton {
    /// Index into the box set.
    pub box_type: usize,
    pub placements: Vec<Placement>,
    pub weight_g: u64,
    pub item_volume_mm3: u64,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Packing {
    pub cartons: Vec<Carton>,
    /// No packing can use fewer cartons: the volume bound or the weight bound (total weight
    /// over the largest weight limit, rounded up), whichever is more.
    pub lower_bound: usize,
    /// Total unit volume over the largest box volume, rounded up.
    pub volume_lower_bound: usize,
    pub item_volume_mm3: u64,
    pub carton_volume_mm3: u64,
    /// Unit volume over carton volume, 0 to 1.
    pub fill_rate: f64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CartonizationError {
    #[error("the box set must hold 1 to {BOX_TYPES_MAX} box types")]
    BoxSet,
    #[error("box type {0} has a side outside 1..={DIMENSION_MM_MAX} mm or a weight limit outside 1..={WEIGHT_G_MAX} g")]
    BoxType(usize),
    #[error(
        "item {0} has a side outside 1..={DIMENSION_MM_MAX} mm or a weight over {WEIGHT_G_MAX} g"
    )]
    Item(usize),
    #[error("at most {UNITS_PER_PACKING_MAX} units per packing")]
    TooManyUnits,
    #[error("item {0} fits no box type, by size or by weight")]
    FitsNoBox(usize),
}

/// One unit to place.
#[derive(Clone, Copy, Debug)]
struct Unit {
    item: usize,
    dims: Dims,
    weight_g: u64,
    keep_upright: bool,
}

/// A carton being filled.
#[derive(Clone, Debug)]
struct Open {
    box_type: usize,
    inner: Dims,
    max_weight_g: u64,
    placements: Vec<Placement>,
    /// Candidate positions, kept sorted lowest first (z, then y, then x) so units settle low
    /// and to the back.
    points: Vec<(u32, u32, u32)>,
    weight_g: u64,
    volume_mm3: u64,
}

impl Open {
    fn new(box_type: usize, spec: &BoxType) -> Open {
        Open {
            box_type,
            inner: spec.inner,
            max_weight_g: u64::from(spec.max_weight_g),
            placements: Vec::new(),
            points: vec![(0, 0, 0)],
            weight_g: 0,
            volume_mm3: 0,
        }
    }

    fn try_place(&mut self, unit: &Unit) -> bool {
        if self.weight_g + unit.weight_g > self.max_weight_g {
            return false;
        }
        if self.volume_mm3 + unit.dims.volume_mm3() > self.inner.volume_mm3() {
            return false;
        }
        let rotations = unit.dims.rotations(unit.keep_upright);
        for (at, &(z, y, x)) in self.points.iter().enumerate() {
            for dims in &rotations {
                let candidate = Placement {
                    item: unit.item,
                    x_mm: x,
                    y_mm: y,
                    z_mm: z,
                    dims: *dims,
                };
                let inside = x + dims.length_mm <= self.inner.length_mm
                    && y + dims.width_mm <= self.inner.width_mm
                    && z + dims.height_mm <= self.inner.height_mm;
                if inside && !self.placements.iter().any(|p| p.overlaps(&candidate)) {
                    self.points.remove(at);
                    self.place(candidate, unit.weight_g);
                    return true;
                }
            }
        }
        false
    }

    fn place(&mut self, placed: Placement, weight_g: u64) {
        self.placements.push(placed);
        self.weight_g += weight_g;
        self.volume_mm3 += placed.dims.volume_mm3();
        let (x, y, z) = (placed.x_mm, placed.y_mm, placed.z_mm);
        let d = placed.dims;
        // Points now covered by the new unit can never host another.
        let covers = |&(pz, py, px): &(u32, u32, u32)| {
            (x..x + d.length_mm).contains(&px)
                && (y..y + d.width_mm).contains(&py)
                && (z..z + d.height_mm).contains(&pz)
        };
        self.points.retain(|p| !covers(p));
        let corners = [
            (x + d.length_mm, y, z),
            (x, y + d.width_mm, z),
            (x, y, z + d.height_mm),
        ];
        for (axis, corner) in corners.into_iter().enumerate() {
            self.add_point(corner);
            for other in 0..3 {
                if other != axis {
                    let projected = self.project(corner, other);
                    self.add_point(projected);
                }
            }
        }
    }

    /// Slides `point` towards 0 along `axis` (0 = x, 1 = y, 2 = z) until it meets a unit's far
    /// face or the wall.
    fn project(&self, point: (u32, u32, u32), axis: usize) -> (u32, u32, u32) {
        let coords = [point.0, point.1, point.2];
        let mut reach = 0;
        for p in &self.placements {
            let start = [p.x_mm, p.y_mm, p.z_mm];
            let size = [p.dims.length_mm, p.dims.width_mm, p.dims.height_mm];
            let in_line = (0..3)
                .filter(|&k| k != axis)
                .all(|k| start[k] <= coords[k] && coords[k] < start[k] + size[k]);
            let end = start[axis] + size[axis];
            if in_line && end <= coords[axis] {
                reach = reach.max(end);
            }
        }
        let mut projected = coords;
        projected[axis] = reach;
        (projected[0], projected[1], projected[2])
    }

    fn add_point(&mut self, (x, y, z): (u32, u32, u32)) {
        if x >= self.inner.length_mm || y >= self.inner.width_mm || z >= self.inner.height_mm {
            return;
        }
        let key = (z, y, x);
        if let Err(at) = self.points.binary_search(&key) {
            self.points.insert(at, key);
        }
    }

    fn into_carton(self) -> Carton {
        Carton {
            box_type: self.box_type,
            placements: self.placements,
            weight_g: self.weight_g,
            item_volume_mm3: self.volume_mm3,
        }
    }
}

fn validate(boxes: &[BoxType], items: &[PackItem]) -> Result<(), CartonizationError> {
    if boxes.is_empty() || boxes.len() > BOX_TYPES_MAX {
        return Err(CartonizationError::BoxSet);
    }
    for (index, spec) in boxes.iter().enumerate() {
        if !spec.inner.valid() || !(1..=WEIGHT_G_MAX).contains(&spec.max_weight_g) {
            return Err(CartonizationError::BoxType(index));
        }
    }
    let mut units = 0usize;
    for (index, item) in items.iter().enumerate() {
        if !item.dims.valid() || item.weight_g > WEIGHT_G_MAX {
            return Err(CartonizationError::Item(index));
        }
        units = units.saturating_add(item.qty as usize);
        if units > UNITS_PER_PACKING_MAX {
            return Err(CartonizationError::TooManyUnits);
        }
    }
    Ok(())
}

/// Packs `items` into cartons from `boxes`; see the module doc.
pub fn cartonize(boxes: &[BoxType], items: &[PackItem]) -> Result<Packing, CartonizationError> {
    validate(boxes, items)?;
    let mut units: Vec<Unit> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let unit = Unit {
            item: index,
            dims: item.dims,
            weight_g: u64::from(item.weight_g),
            keep_upright: item.keep_upright,
        };
        for _ in 0..item.qty {
            units.push(unit);
        }
    }
    // Largest first; ties by longest side, then input order, so the result is deterministic.
    units.sort_by_key(|u| {
        let longest = u.dims.length_mm.max(u.dims.width_mm).max(u.dims.height_mm);
        (
            std::cmp::Reverse(u.dims.volume_mm3()),
            std::cmp::Reverse(longest),
            u.item,
        )
    });
    // Box types, largest first, for opening; smallest first, for downsizing.
    let mut largest_first: Vec<usize> = (0..boxes.len()).collect();
    largest_first.sort_by_key(|&b| (std::cmp::Reverse(boxes[b].inner.volume_mm3()), b));
    let smallest_first: Vec<usize> = largest_first.iter().rev().copied().collect();

    let fits_alone = |b: usize, unit: &Unit| {
        u64::from(boxes[b].max_weight_g) >= unit.weight_g
            && unit
                .dims
                .rotations(unit.keep_upright)
                .iter()
                .any(|d| boxes[b].inner.holds(d))
    };
    let mut open: Vec<Open> = Vec::new();
    let mut contents: Vec<Vec<Unit>> = Vec::new();
    for unit in &units {
        if let Some(at) = open.iter_mut().position(|c| c.try_place(unit)) {
            contents[at].push(*unit);
            continue;
        }
        let Some(&b) = largest_first.iter().find(|&&b| fits_alone(b, unit)) else {
            return Err(CartonizationError::FitsNoBox(unit.item));
        };
        let mut carton = Open::new(b, &boxes[b]);
        let placed = carton.try_place(unit);
        debug_assert!(placed, "a box that holds a unit alone takes it when empty");
        open.push(carton);
        contents.push(vec![*unit]);
    }

    // Downsize: re-pack each carton's units into the smallest box type that takes them all.
    let mut cartons = Vec::with_capacity(open.len());
    for (carton, packed) in open.into_iter().zip(contents) {
        let current = boxes[carton.box_type].inner.volume_mm3();
        let mut best = carton;
        for &b in &smallest_first {
            let spec = &boxes[b];
            if spec.inner.volume_mm3() >= current {
                break;
            }
            if spec.inner.volume_mm3() < best.volume_mm3
                || u64::from(spec.max_weight_g) < best.weight_g
            {
                continue;
            }
            let mut trial = Open::new(b, spec);
            if packed.iter().all(|u| trial.try_place(u)) {
                best = trial;
                break;
            }
        }
        cartons.push(best.into_carton());
    }

    let item_volume_mm3: u64 = units.iter().map(|u| u.dims.volume_mm3()).sum();
    let item_weight_g: u64 = units.iter().map(|u| u.weight_g).sum();
    let carton_volume_mm3: u64 = cartons
        .iter()
        .map(|c| boxes[c.box_type].inner.volume_mm3())
        .sum();
    let max_volume = boxes
        .iter()
        .map(|b| b.inner.volume_mm3())
        .max()
        .unwrap_or(1);
    let max_weight = boxes
        .iter()
        .map(|b| u64::from(b.max_weight_g))
        .max()
        .unwrap_or(1);
    let volume_lower_bound = item_volume_mm3.div_ceil(max_volume) as usize;
    let lower_bound = volume_lower_bound.max(item_weight_g.div_ceil(max_weight) as usize);
    let fill_rate = if carton_volume_mm3 == 0 {
        0.0
    } else {
        item_volume_mm3 as f64 / carton_volume_mm3 as f64
    };
    Ok(Packing {
        cartons,
        lower_bound,
        volume_lower_bound,
        item_volume_mm3,
        carton_volume_mm3,
        fill_rate,
    })
}

/// Checks a packing's physical promises: every unit inside its box, no two overlapping, weight
/// within the limit, every unit of every item packed exactly once. For tests and for callers
/// that accept packings from elsewhere.
pub fn check_packing(
    boxes: &[BoxType],
    items: &[PackItem],
    packing: &Packing,
) -> Result<(), String> {
    let mut counts = vec![0u64; items.len()];
    for (c, carton) in packing.cartons.iter().enumerate() {
        let spec = boxes
            .get(carton.box_type)
            .ok_or(format!("carton {c}: unknown box type"))?;
        let mut weight = 0u64;
        for (i, p) in carton.placements.iter().enumerate() {
            let item = items
                .get(p.item)
                .ok_or(format!("carton {c}: unknown item"))?;
            counts[p.item] += 1;
            weight += u64::from(item.weight_g);
            if !item.dims.rotations(item.keep_upright).contains(&p.dims) {
                return Err(format!(
                    "carton {c}: unit {i} is not a rotation of its item"
                ));
            }
            let inside = p.x_mm + p.dims.length_mm <= spec.inner.length_mm
                && p.y_mm + p.dims.width_mm <= spec.inner.width_mm
                && p.z_mm + p.dims.height_mm <= spec.inner.height_mm;
            if !inside {
                return Err(format!("carton {c}: unit {i} sticks out"));
            }
            if carton.placements[..i].iter().any(|q| q.overlaps(p)) {
                return Err(format!("carton {c}: unit {i} overlaps another"));
            }
        }
        if weight > u64::from(spec.max_weight_g) {
            return Err(format!("carton {c}: {weight} g over the limit"));
        }
    }
    for (index, item) in items.iter().enumerate() {
        if counts[index] != u64::from(item.qty) {
            return Err(format!(
                "item {index}: {} of {} units packed",
                counts[index], item.qty
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxes() -> Vec<BoxType> {
        vec![
            BoxType {
                name: "S".into(),
                inner: Dims::new(200, 200, 200),
                max_weight_g: 10_000,
            },
            BoxType {
                name: "M".into(),
                inner: Dims::new(400, 300, 200),
                max_weight_g: 20_000,
            },
            BoxType {
                name: "L".into(),
                inner: Dims::new(600, 400, 400),
                max_weight_g: 30_000,
            },
        ]
    }

    fn item(l: u32, w: u32, h: u32, weight_g: u32, qty: u32) -> PackItem {
        PackItem {
            sku: SkuId(0),
            dims: Dims::new(l, w, h),
            weight_g,
            qty,
            keep_upright: false,
        }
    }

    fn check(items: &[PackItem]) -> Packing {
        let packing = cartonize(&boxes(), items).unwrap();
        check_packing(&boxes(), items, &packing).unwrap();
        assert!(packing.cartons.len() >= packing.lower_bound);
        packing
    }

    #[test]
    fn eight_cubes_fill_the_small_box_exactly() {
        let packing = check(&[item(100, 100, 100, 100, 8)]);
        assert_eq!(packing.cartons.len(), 1);
        assert_eq!(packing.cartons[0].box_type, 0);
        assert!((packing.fill_rate - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_long_item_is_rotated_to_fit() {
        // 350 long only fits the medium box lying along its length.
        let packing = check(&[item(100, 350, 100, 100, 1)]);
        assert_eq!(packing.cartons[0].box_type, 1);
        assert_eq!(packing.cartons[0].placements[0].dims.length_mm, 350);
    }

    #[test]
    fn upright_items_keep_their_height() {
        let mut tall = item(100, 100, 450, 100, 1);
        tall.keep_upright = true;
        assert_eq!(
            cartonize(&boxes(), &[tall]),
            Err(CartonizationError::FitsNoBox(0))
        );
        tall.keep_upright = false;
        check(&[tall]);
    }

    #[test]
    fn weight_limit_splits_cartons() {
        // 4 × 9 kg: volume fits one box, weight needs two large ones.
        let packing = check(&[item(100, 100, 100, 9_000, 4)]);
        assert_eq!(packing.lower_bound, 2);
        assert_eq!(packing.cartons.len(), 2);
    }

    #[test]
    fn mixed_items_pack_without_overlap() {
        let packing = check(&[
            item(300, 200, 150, 2_000, 3),
            item(120, 80, 60, 300, 10),
            item(50, 50, 50, 50, 20),
        ]);
        assert!(packing.fill_rate > 0.3);
    }

    #[test]
    fn invalid_input_is_a_typed_error() {
        assert_eq!(
            cartonize(&[], &[item(1, 1, 1, 1, 1)]),
            Err(CartonizationError::BoxSet)
        );
        assert_eq!(
            cartonize(&boxes(), &[item(0, 1, 1, 1, 1)]),
            Err(CartonizationError::Item(0))
        );
        assert_eq!(
            cartonize(&boxes(), &[item(1, 1, 1, 1, 5_000)]),
            Err(CartonizationError::TooManyUnits)
        );
        assert_eq!(
            cartonize(&boxes(), &[item(10, 10, 10, 40_000, 1)]),
            Err(CartonizationError::FitsNoBox(0))
        );
        let empty = cartonize(&boxes(), &[]).unwrap();
        assert!(empty.cartons.is_empty());
        assert_eq!(empty.lower_bound, 0);
    }
}
