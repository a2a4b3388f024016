//! Pick routes: tours from the depot through every pick location and back.
//!
//! * [`optimal_route`]: the exact Ratliff & Rosenthal (1983) dynamic programme for a
//!   single-block layout, linear in the number of aisles.
//! * [`s_shape_route`], [`largest_gap_route`], [`combined_route`]: the classic heuristics as
//!   Roodbergen & de Koster define them, kept as baselines.
//! * [`brute_force_route`]: every visiting order of at most [`BRUTE_FORCE_STOPS_MAX`] distinct
//!   locations, with closed-form shortest paths; the oracle the tests hold the DP to.
//!
//! Every method returns a [`Route`] with its length, the visiting order of the picks (so pick
//! tasks can carry their position in the tour) and the waypoints walked, such that the
//! shortest-path distances between consecutive waypoints add up to the length exactly.
//!
//! # The Ratliff & Rosenthal programme
//!
//! The layout becomes a graph: per aisle `j` a front vertex `a_j` (on the front cross aisle),
//! a back vertex `b_j`, and a vertex per distinct pick position in between. A tour is a
//! connected multigraph over these edges with even degrees that touches every pick and the
//! depot; its Euler circuit is the walk. The programme sweeps left to right. `L_j^-` is the
//! partial subgraph with everything left of aisle `j` plus the cross-aisle edges into `j`;
//! `L_j^+` adds aisle `j`'s vertical edges. What matters for completing a partial subgraph is
//! only the degree class of `a_j` and `b_j` (zero, even, odd) and how its components touch them,
//! which gives R&R's seven equivalence classes ([`Class`]). Cross-aisle edges are used 0, 1 or 2
//! times; inside an aisle six configurations suffice (traverse, double traverse, skip the
//! largest gap, enter from the back only, enter from the front only, nothing).
//!
//! Rather than transcribing the paper's transition tables, each transition applies the edge
//! choice to the class's frontier (degrees plus a two-node union-find) and classifies the
//! result, so the tables are derived, not typed. A depot that is not in front of an aisle gets
//! a virtual column at its x that has no vertical edges and a front vertex that must be used.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::{Layout, LayoutError, Location, Point};

/// Pick lines one route may hold. The programme is linear, so this bounds memory, not time.
pub const PICKS_PER_ROUTE_MAX: usize = 10_000;
/// Distinct locations [`brute_force_route`] accepts: 10! orders is the most a test should try.
pub const BRUTE_FORCE_STOPS_MAX: usize = 10;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMethod {
    SShape,
    LargestGap,
    Combined,
    Optimal,
    BruteForce,
}

impl RoutingMethod {
    pub const BASELINES: [RoutingMethod; 3] = [
        RoutingMethod::SShape,
        RoutingMethod::LargestGap,
        RoutingMethod::Combined,
    ];
}

/// A tour from the depot through every pick and back.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Route {
    pub method: RoutingMethod,
    pub distance_cm: u64,
    /// Indices into the pick list, in the order the picker first reaches them. Picks at the
    /// same point (same bin, or facing bins) are consecutive, in input order.
    pub sequence: Vec<usize>,
    /// Depot first and last, with picks and turning points between; the shortest paths between
    /// neighbours add up to `distance_cm`.
    pub waypoints: Vec<Point>,
}

impl Route {
    /// For each pick (by input index), its 0-based position in the visiting order, so a pick
    /// task can carry it.
    pub fn positions(&self) -> Vec<usize> {
        let mut positions = vec![0; self.sequence.len()];
        for (position, &pick) in self.sequence.iter().enumerate() {
            positions[pick] = position;
        }
        positions
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error("a route holds at most {max} picks, got {count}")]
    TooManyPicks { count: usize, max: usize },
    #[error("the sequence names pick {index}, which is not in the pick list")]
    NoSuchPick { index: usize },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// Routes `picks` with `method`.
pub fn route(
    layout: &Layout,
    picks: &[Location],
    method: RoutingMethod,
) -> Result<Route, RoutingError> {
    match method {
        RoutingMethod::SShape => s_shape_route(layout, picks),
        RoutingMethod::LargestGap => largest_gap_route(layout, picks),
        RoutingMethod::Combined => combined_route(layout, picks),
        RoutingMethod::Optimal => optimal_route(layout, picks),
        RoutingMethod::BruteForce => brute_force_route(layout, picks),
    }
}

/// Length of the tour depot → picks in `sequence` order → depot, with shortest paths between
/// neighbours. This is how a route's claimed length is checked independently of its method.
pub fn sequence_distance_cm(
    layout: &Layout,
    picks: &[Location],
    sequence: &[usize],
) -> Result<u64, RoutingError> {
    let mut points = Vec::with_capacity(sequence.len() + 2);
    points.push(layout.depot());
    for &index in sequence {
        let location = picks.get(index).ok_or(RoutingError::NoSuchPick { index })?;
        points.push(layout.point(*location)?);
    }
    points.push(layout.depot());
    Ok(waypoints_distance_cm(layout, &points))
}

/// Sum of shortest-path distances between consecutive waypoints.
pub fn waypoints_distance_cm(layout: &Layout, waypoints: &[Point]) -> u64 {
    waypoints
        .windows(2)
        .map(|pair| layout.distance_cm(pair[0], pair[1]))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Preparing a pick list.

/// One distinct pick position and the input picks there.
#[derive(Clone, Debug)]
struct Stop {
    y: u32,
    picks: Vec<usize>,
}

/// An aisle with at least one pick, its stops sorted front to back.
#[derive(Clone, Debug)]
struct PickAisle {
    x: u32,
    stops: Vec<Stop>,
}

/// Picks grouped by aisle, aisles left to right.
#[derive(Clone, Debug)]
struct Prepared {
    aisle_length: u32,
    depot: Point,
    aisles: Vec<PickAisle>,
    pick_count: usize,
}

fn prepare(layout: &Layout, picks: &[Location]) -> Result<Prepared, RoutingError> {
    if picks.len() > PICKS_PER_ROUTE_MAX {
        return Err(RoutingError::TooManyPicks {
            count: picks.len(),
            max: PICKS_PER_ROUTE_MAX,
        });
    }
    let mut by_aisle: BTreeMap<u32, BTreeMap<u32, Vec<usize>>> = BTreeMap::new();
    for (index, &location) in picks.iter().enumerate() {
        let point = layout.point(location)?;
        by_aisle
            .entry(point.x_cm)
            .or_default()
            .entry(point.y_cm)
            .or_default()
            .push(index);
    }
    let aisles = by_aisle
        .into_iter()
        .map(|(x, stops)| PickAisle {
            x,
            stops: stops
                .into_iter()
                .map(|(y, picks)| Stop { y, picks })
                .collect(),
        })
        .collect();
    Ok(Prepared {
        aisle_length: layout.aisle_length_cm(),
        depot: layout.depot(),
        aisles,
        pick_count: picks.len(),
    })
}

/// A waypoint and, if it is a stop, which one (aisle index, stop index into `Prepared`).
type Step = (Point, Option<(usize, usize)>);

/// Turns a walk into a [`Route`]: length by shortest paths between waypoints, sequence by first
/// visit of each stop.
fn finish(layout: &Layout, prepared: &Prepared, method: RoutingMethod, steps: &[Step]) -> Route {
    let mut seen: Vec<Vec<bool>> = prepared
        .aisles
        .iter()
        .map(|a| vec![false; a.stops.len()])
        .collect();
    let mut sequence = Vec::with_capacity(prepared.pick_count);
    let mut waypoints: Vec<Point> = Vec::with_capacity(steps.len());
    for (i, &(point, stop)) in steps.iter().enumerate() {
        if let Some((a, s)) = stop {
            if !seen[a][s] {
                seen[a][s] = true;
                sequence.extend_from_slice(&prepared.aisles[a].stops[s].picks);
            }
        }
        if waypoints.last() == Some(&point) {
            continue;
        }
        // Drop a pass-through corner when walking straight past it is just as long: it keeps
        // waypoint lists short (the Euler walk names every cross-aisle vertex) without changing
        // the length, because the kept leg is a shortest path of the same length.
        let is_end = i == 0 || i + 1 == steps.len();
        if stop.is_none() && !is_end {
            if let (Some(&prev), Some(&(next, _))) = (waypoints.last(), steps.get(i + 1)) {
                let through = layout.distance_cm(prev, point) + layout.distance_cm(point, next);
                if through == layout.distance_cm(prev, next) {
                    continue;
                }
            }
        }
        waypoints.push(point);
    }
    if waypoints.len() == 1 {
        // An empty tour is the depot twice, so the shape is the same for every route.
        waypoints.push(prepared.depot);
    }
    debug_assert_eq!(sequence.len(), prepared.pick_count, "every pick visited");
    let distance_cm = waypoints_distance_cm(layout, &waypoints);
    Route {
        method,
        distance_cm,
        sequence,
        waypoints,
    }
}

fn empty_route(layout: &Layout, method: RoutingMethod) -> Route {
    Route {
        method,
        distance_cm: 0,
        sequence: Vec::new(),
        waypoints: vec![layout.depot(), layout.depot()],
    }
}

// ---------------------------------------------------------------------------------------------
// Heuristics. Each builds a walk out of aisle passes; `finish` measures it.

/// How one aisle is worked on a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// Walk the whole aisle, from the side the picker is on to the other.
    Traverse,
    /// Enter from the front, go up to the `count` lowest stops' last one, come back.
    ReturnFront { count: usize },
    /// Enter from the back, go down to the `count` highest stops' last one, come back.
    ReturnBack { count: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Front,
    Back,
}

/// Walks `plan` (aisle index into `prepared`, pass) from the depot and back.
fn walk(prepared: &Prepared, plan: &[(usize, Pass)]) -> Vec<Step> {
    let l = prepared.aisle_length;
    let mut steps: Vec<Step> = vec![(prepared.depot, None)];
    let mut end = End::Front;
    let mut last_x = prepared.depot.x_cm;
    for &(a, pass) in plan {
        let aisle = &prepared.aisles[a];
        let front = Point {
            x_cm: aisle.x,
            y_cm: 0,
        };
        let back = Point {
            x_cm: aisle.x,
            y_cm: l,
        };
        let stop = |s: usize| {
            (
                Point {
                    x_cm: aisle.x,
                    y_cm: aisle.stops[s].y,
                },
                Some((a, s)),
            )
        };
        let n = aisle.stops.len();
        // Reach the aisle along the cross aisle the picker is on.
        let entry = if end == End::Front { front } else { back };
        steps.push((entry, None));
        match pass {
            Pass::Traverse => {
                if end == End::Front {
                    steps.extend((0..n).map(stop));
                    steps.push((back, None));
                    end = End::Back;
                } else {
                    steps.extend((0..n).rev().map(stop));
                    steps.push((front, None));
                    end = End::Front;
                }
            }
            Pass::ReturnFront { count } => {
                debug_assert_eq!(end, End::Front);
                steps.extend((0..count.min(n)).map(stop));
                steps.push((front, None));
            }
            Pass::ReturnBack { count } => {
                debug_assert_eq!(end, End::Back);
                steps.extend((n - count.min(n)..n).rev().map(stop));
                steps.push((back, None));
            }
        }
        last_x = aisle.x;
    }
    if end == End::Back {
        // Back to the front through the last aisle worked.
        steps.push((
            Point {
                x_cm: last_x,
                y_cm: 0,
            },
            None,
        ));
    }
    steps.push((prepared.depot, None));
    steps
}

/// Runs `plan_for` over the aisles left to right and right to left; keeps the shorter walk.
/// Trying both sweeps makes the heuristics sensible for a depot in the middle of the front.
fn best_sweep(
    layout: &Layout,
    picks: &[Location],
    method: RoutingMethod,
    plan_for: impl Fn(&Prepared, &[usize]) -> Vec<(usize, Pass)>,
) -> Result<Route, RoutingError> {
    let prepared = prepare(layout, picks)?;
    if prepared.aisles.is_empty() {
        return Ok(empty_route(layout, method));
    }
    let left_to_right: Vec<usize> = (0..prepared.aisles.len()).collect();
    let right_to_left: Vec<usize> = left_to_right.iter().rev().copied().collect();
    let mut best: Option<Route> = None;
    for order in [left_to_right, right_to_left] {
        let steps = walk(&prepared, &plan_for(&prepared, &order));
        let candidate = finish(layout, &prepared, method, &steps);
        match &best {
            Some(b) if b.distance_cm <= candidate.distance_cm => {}
            _ => best = Some(candidate),
        }
    }
    Ok(best.expect("two sweeps were tried"))
}

/// S-shape (traversal): every aisle with a pick is walked end to end; if that leaves the
/// picker at the back after the last aisle (an odd number of aisles), the last one is entered
/// from the front and left the same way instead.
pub fn s_shape_route(layout: &Layout, picks: &[Location]) -> Result<Route, RoutingError> {
    best_sweep(layout, picks, RoutingMethod::SShape, |prepared, order| {
        let k = order.len();
        order
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                if i + 1 == k && k % 2 == 1 {
                    let count = prepared.aisles[a].stops.len();
                    (a, Pass::ReturnFront { count })
                } else {
                    (a, Pass::Traverse)
                }
            })
            .collect()
    })
}

/// Index of the largest gap of an aisle: gaps are front→stop 0, stop i→stop i+1, last
/// stop→back, numbered 0..=n. Stops below the gap are worked from the front, the rest from the
/// back. Ties go to the lowest index, so the choice is deterministic.
fn largest_gap(aisle: &PickAisle, l: u32) -> usize {
    let n = aisle.stops.len();
    let mut best = (0, aisle.stops[0].y);
    for g in 1..=n {
        let upper = if g == n { l } else { aisle.stops[g].y };
        let gap = upper - aisle.stops[g - 1].y;
        if gap > best.1 {
            best = (g, gap);
        }
    }
    best.0
}

/// Largest gap: traverse the first aisle to the back, work each middle aisle from the back up to
/// its largest gap, traverse the last aisle to the front, then work the middle aisles from the
/// front on the way home. One pick aisle: in from the front and back out.
pub fn largest_gap_route(layout: &Layout, picks: &[Location]) -> Result<Route, RoutingError> {
    best_sweep(
        layout,
        picks,
        RoutingMethod::LargestGap,
        |prepared, order| {
            let l = prepared.aisle_length;
            let stops = |a: usize| prepared.aisles[a].stops.len();
            if order.len() == 1 {
                return vec![(
                    order[0],
                    Pass::ReturnFront {
                        count: stops(order[0]),
                    },
                )];
            }
            let (first, last) = (order[0], order[order.len() - 1]);
            let middle = &order[1..order.len() - 1];
            let mut plan = vec![(first, Pass::Traverse)];
            for &a in middle {
                let g = largest_gap(&prepared.aisles[a], l);
                if g < stops(a) {
                    plan.push((
                        a,
                        Pass::ReturnBack {
                            count: stops(a) - g,
                        },
                    ));
                }
            }
            plan.push((last, Pass::Traverse));
            for &a in middle.iter().rev() {
                let g = largest_gap(&prepared.aisles[a], l);
                if g > 0 {
                    plan.push((a, Pass::ReturnFront { count: g }));
                }
            }
            plan
        },
    )
}

/// Combined: each pick aisle is visited once, in sweep order, and either traversed or entered
/// and left on the side the picker is on; a small programme over "picker at front / at back"
/// chooses, counting the walk to the next aisle (Roodbergen & de Koster 2001).
pub fn combined_route(layout: &Layout, picks: &[Location]) -> Result<Route, RoutingError> {
    best_sweep(layout, picks, RoutingMethod::Combined, |prepared, order| {
        let l = u64::from(prepared.aisle_length);
        // cost[e] = best length so far with the picker at end e (0 front, 1 back) of the
        // previous aisle; choice[i][e] = (pass, previous end) that achieved it.
        let mut cost = [0u64, u64::MAX];
        let mut prev_x = prepared.depot.x_cm;
        let mut choices: Vec<[(Pass, usize); 2]> = Vec::with_capacity(order.len());
        for &a in order {
            let aisle = &prepared.aisles[a];
            let n = aisle.stops.len();
            let (lowest, highest) = (u64::from(aisle.stops[0].y), u64::from(aisle.stops[n - 1].y));
            let dx = u64::from(aisle.x.abs_diff(prev_x));
            let mut next = [u64::MAX; 2];
            let mut choice = [(Pass::Traverse, 0); 2];
            let mut offer = |end: usize, value: u64, pass: Pass, from: usize| {
                if value < next[end] {
                    next[end] = value;
                    choice[end] = (pass, from);
                }
            };
            if cost[0] != u64::MAX {
                let at = cost[0] + dx;
                offer(1, at + l, Pass::Traverse, 0);
                offer(0, at + 2 * highest, Pass::ReturnFront { count: n }, 0);
            }
            if cost[1] != u64::MAX {
                let at = cost[1] + dx;
                offer(0, at + l, Pass::Traverse, 1);
                offer(1, at + 2 * (l - lowest), Pass::ReturnBack { count: n }, 1);
            }
            cost = next;
            choices.push(choice);
            prev_x = aisle.x;
        }
        // Finishing at the back costs one more aisle length to get to the front.
        let mut end = if cost[1] != u64::MAX && cost[1] + l < cost[0] {
            1
        } else {
            0
        };
        let mut plan = vec![(0, Pass::Traverse); order.len()];
        for i in (0..order.len()).rev() {
            let (pass, from) = choices[i][end];
            plan[i] = (order[i], pass);
            end = from;
        }
        plan
    })
}

// ---------------------------------------------------------------------------------------------
// The exact programme.

/// Degree of a frontier vertex in a partial tour subgraph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Degree {
    Zero,
    Even,
    Odd,
}

impl Degree {
    fn add(self, edges: u8) -> Degree {
        match (self, edges) {
            (d, 0) => d,
            (Degree::Odd, e) if e % 2 == 1 => Degree::Even,
            (Degree::Odd, _) => Degree::Odd,
            (_, e) if e % 2 == 1 => Degree::Odd,
            _ => Degree::Even,
        }
    }

    fn of(edges: u8) -> Degree {
        Degree::Zero.add(edges)
    }

    fn is_odd(self) -> bool {
        self == Degree::Odd
    }
}

/// R&R's seven equivalence classes of a partial tour subgraph `L_j^±`, named by the degrees of
/// `a_j`, `b_j` (U uneven, E even and non-zero, 0 zero) and the number of components.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// (U, U, 1C)
    OddOdd,
    /// (E, 0, 1C)
    EvenZero,
    /// (0, E, 1C)
    ZeroEven,
    /// (E, E, 1C)
    EvenEvenJoined,
    /// (E, E, 2C): one component at `a_j`, another at `b_j`; they must meet further right.
    EvenEvenSplit,
    /// (0, 0, 0C): nothing yet.
    Empty,
    /// (0, 0, 1C): a finished tour lies to the left; nothing more may be added.
    Done,
}

const CLASSES: [Class; 7] = [
    Class::OddOdd,
    Class::EvenZero,
    Class::ZeroEven,
    Class::EvenEvenJoined,
    Class::EvenEvenSplit,
    Class::Empty,
    Class::Done,
];

impl Class {
    fn index(self) -> usize {
        self as usize
    }

    /// Degrees of `a`, `b`, and whether they are in one component (meaningful when both are
    /// non-zero).
    fn frontier(self) -> (Degree, Degree, bool) {
        match self {
            Class::OddOdd => (Degree::Odd, Degree::Odd, true),
            Class::EvenZero => (Degree::Even, Degree::Zero, false),
            Class::ZeroEven => (Degree::Zero, Degree::Even, false),
            Class::EvenEvenJoined => (Degree::Even, Degree::Even, true),
            Class::EvenEvenSplit => (Degree::Even, Degree::Even, false),
            Class::Empty | Class::Done => (Degree::Zero, Degree::Zero, false),
        }
    }

    /// Classifies a frontier; `None` for one no tour can complete (odd with even, or two odd
    /// vertices in different components: each component needs an even number of odd vertices).
    fn classify(a: Degree, b: Degree, joined: bool) -> Option<Class> {
        use Degree::{Even, Odd, Zero};
        match (a, b) {
            (Odd, Odd) if joined => Some(Class::OddOdd),
            (Even, Zero) => Some(Class::EvenZero),
            (Zero, Even) => Some(Class::ZeroEven),
            (Even, Even) if joined => Some(Class::EvenEvenJoined),
            (Even, Even) => Some(Class::EvenEvenSplit),
            (Zero, Zero) => Some(Class::Empty),
            _ => None,
        }
    }
}

/// Four-node union-find for the frontier transitions (nodes: old a, old b, new a, new b).
struct Union4([usize; 4]);

impl Union4 {
    fn new() -> Union4 {
        Union4([0, 1, 2, 3])
    }
    fn find(&self, mut x: usize) -> usize {
        while self.0[x] != x {
            x = self.0[x];
        }
        x
    }
    fn union(&mut self, x: usize, y: usize) {
        let (rx, ry) = (self.find(x), self.find(y));
        self.0[rx] = ry;
    }
}

/// Adds `x` copies of `a_j–a_{j+1}` and `y` copies of `b_j–b_{j+1}` to a subgraph in class `from`
/// at column `j`, closing `a_j` and `b_j`. `a_required`: `a_j` is the depot and must be used.
fn cross(from: Class, x: u8, y: u8, a_required: bool) -> Option<Class> {
    if from == Class::Done {
        return (x == 0 && y == 0 && !a_required).then_some(Class::Done);
    }
    let (a, b, joined) = from.frontier();
    // a_j and b_j get no edges after these, so their final degrees must be even.
    if a.add(x).is_odd() || b.add(y).is_odd() {
        return None;
    }
    if a_required && a.add(x) == Degree::Zero {
        return None;
    }
    let mut uf = Union4::new();
    if a != Degree::Zero && b != Degree::Zero && joined {
        uf.union(0, 1);
    }
    if x > 0 {
        uf.union(0, 2);
    }
    if y > 0 {
        uf.union(1, 3);
    }
    let active = [
        a != Degree::Zero || x > 0,
        b != Degree::Zero || y > 0,
        x > 0,
        y > 0,
    ];
    let open = |node: usize| {
        (active[2] && uf.find(2) == uf.find(node)) || (active[3] && uf.find(3) == uf.find(node))
    };
    // A component that no longer reaches the frontier is finished: fine only if it is the only
    // component there is, which makes the tour complete.
    let closed = (0..2)
        .filter(|&n| active[n] && !open(n))
        .map(|n| uf.find(n));
    let closed: Vec<usize> = {
        let mut roots: Vec<usize> = closed.collect();
        roots.dedup();
        roots
    };
    if !closed.is_empty() {
        let anything_open = active[2] || active[3];
        return (closed.len() == 1 && !anything_open).then_some(Class::Done);
    }
    let joined = x > 0 && y > 0 && uf.find(2) == uf.find(3);
    Class::classify(Degree::of(x), Degree::of(y), joined)
}

/// The six ways R&R let a tour use one aisle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Vertical {
    /// Every segment once: joins `a` and `b`.
    Traverse,
    /// Every segment twice: joins `a` and `b` with even degrees.
    DoubleTraverse,
    /// Every segment twice except the largest gap: `a` and `b` stay apart.
    Gap,
    /// From `b` down to the lowest pick and back.
    FromBack,
    /// From `a` up to the highest pick and back.
    FromFront,
    None,
}

const VERTICALS: [Vertical; 6] = [
    Vertical::Traverse,
    Vertical::DoubleTraverse,
    Vertical::Gap,
    Vertical::FromBack,
    Vertical::FromFront,
    Vertical::None,
];

/// One column of the sweep: a pick aisle, an aisle without picks, or the depot's virtual column.
#[derive(Clone, Debug)]
struct Column {
    x: u32,
    /// False for the depot's virtual column: no aisle to walk, so only `Vertical::None`.
    has_aisle: bool,
    /// Index into `Prepared::aisles`, if the column has picks.
    picks: Option<usize>,
    depot: bool,
}

/// What a vertical configuration does to one aisle.
#[derive(Clone, Debug)]
struct AisleEdges {
    /// Multiplicity of each segment: front→stop 0, stop 0→stop 1, …, last stop→back.
    segments: Vec<u8>,
    cost: u64,
    /// Edges the configuration adds at `a` (front) and `b` (back).
    at_a: u8,
    at_b: u8,
    /// Whether it connects `a` and `b` inside the aisle.
    joins: bool,
}

/// The edges `config` puts on `column`'s aisle; `None` if the configuration is not allowed for
/// this column or duplicates another.
fn vertical_edges(prepared: &Prepared, column: &Column, config: Vertical) -> Option<AisleEdges> {
    let l = prepared.aisle_length;
    let stops: &[Stop] = column
        .picks
        .map(|a| prepared.aisles[a].stops.as_slice())
        .unwrap_or(&[]);
    let n = stops.len();
    let segment_len = |k: usize| {
        let lower = if k == 0 { 0 } else { stops[k - 1].y };
        let upper = if k == n { l } else { stops[k].y };
        u64::from(upper - lower)
    };
    let uniform = |m: u8| vec![m; n + 1];
    let (segments, joins) = match config {
        Vertical::None => {
            return (n == 0).then(|| AisleEdges {
                segments: uniform(0),
                cost: 0,
                at_a: 0,
                at_b: 0,
                joins: false,
            });
        }
        _ if !column.has_aisle => return None,
        Vertical::Traverse => (uniform(1), true),
        Vertical::DoubleTraverse => (uniform(2), true),
        // Without picks these three are `None` again; skip the duplicates.
        _ if n == 0 => return None,
        Vertical::Gap => {
            let g = column
                .picks
                .map(|a| largest_gap(&prepared.aisles[a], l))
                .unwrap_or(0);
            let mut m = uniform(2);
            m[g] = 0;
            (m, false)
        }
        Vertical::FromBack => {
            let mut m = uniform(2);
            m[0] = 0;
            (m, false)
        }
        Vertical::FromFront => {
            let mut m = uniform(2);
            m[n] = 0;
            (m, false)
        }
    };
    let cost = (0..=n)
        .map(|k| u64::from(segments[k]) * segment_len(k))
        .sum();
    let (at_a, at_b) = (segments[0], segments[n]);
    Some(AisleEdges {
        segments,
        cost,
        at_a,
        at_b,
        joins,
    })
}

/// Applies a vertical configuration to class `from`.
fn climb(from: Class, at_a: u8, at_b: u8, joins: bool) -> Option<Class> {
    if from == Class::Done {
        return (at_a == 0 && at_b == 0).then_some(Class::Done);
    }
    let (a, b, joined) = from.frontier();
    let (na, nb) = (a.add(at_a), b.add(at_b));
    let was_joined = a != Degree::Zero && b != Degree::Zero && joined;
    Class::classify(na, nb, was_joined || joins)
}

/// One DP cell: best cost and how it was reached.
#[derive(Clone, Copy, Debug)]
struct Cell<T: Copy> {
    cost: u64,
    from: Class,
    choice: T,
}

type Row<T> = [Option<Cell<T>>; 7];

/// Exact shortest tour for a single-block layout (Ratliff & Rosenthal 1983).
pub fn optimal_route(layout: &Layout, picks: &[Location]) -> Result<Route, RoutingError> {
    let prepared = prepare(layout, picks)?;
    if prepared.aisles.is_empty() {
        return Ok(empty_route(layout, RoutingMethod::Optimal));
    }
    let columns = columns(layout, &prepared);
    let verticals: Vec<Vec<Option<AisleEdges>>> = columns
        .iter()
        .map(|c| {
            VERTICALS
                .iter()
                .map(|&v| vertical_edges(&prepared, c, v))
                .collect()
        })
        .collect();

    // plus[j]: classes of L_j^+; minus[j]: classes of L_j^- (minus[0] is the empty graph).
    let mut plus: Vec<Row<usize>> = Vec::with_capacity(columns.len());
    let mut minus: Vec<Row<(u8, u8)>> = Vec::with_capacity(columns.len());
    let mut start: Row<(u8, u8)> = [None; 7];
    start[Class::Empty.index()] = Some(Cell {
        cost: 0,
        from: Class::Empty,
        choice: (0, 0),
    });
    minus.push(start);
    for j in 0..columns.len() {
        if j > 0 {
            let dx = u64::from(columns[j].x - columns[j - 1].x);
            let mut row: Row<(u8, u8)> = [None; 7];
            for from in CLASSES {
                let Some(cell) = plus[j - 1][from.index()] else {
                    continue;
                };
                for x in 0..3u8 {
                    for y in 0..3u8 {
                        let Some(to) = cross(from, x, y, columns[j - 1].depot) else {
                            continue;
                        };
                        let cost = cell.cost + u64::from(x + y) * dx;
                        relax(&mut row, to, cost, from, (x, y));
                    }
                }
            }
            minus.push(row);
        }
        let mut row: Row<usize> = [None; 7];
        for from in CLASSES {
            let Some(cell) = minus[j][from.index()] else {
                continue;
            };
            for (v, edges) in verticals[j].iter().enumerate() {
                let Some(edges) = edges else {
                    continue;
                };
                let Some(to) = climb(from, edges.at_a, edges.at_b, edges.joins) else {
                    continue;
                };
                relax(&mut row, to, cell.cost + edges.cost, from, v);
            }
        }
        plus.push(row);
    }

    // The last column closes too: even degrees, one component, the depot used.
    let last = columns.len() - 1;
    let mut best: Option<(u64, Class)> = None;
    for class in CLASSES {
        let Some(cell) = plus[last][class.index()] else {
            continue;
        };
        if cross(class, 0, 0, columns[last].depot) != Some(Class::Done) {
            continue;
        }
        match best {
            Some((cost, _)) if cost <= cell.cost => {}
            _ => best = Some((cell.cost, class)),
        }
    }
    let (cost, mut class) = best.expect("a tour always exists: every pick aisle can be traversed");

    // Walk the choices back into edge multiplicities.
    let mut graph = TourGraph::new(&prepared, &columns);
    for j in (0..columns.len()).rev() {
        let cell = plus[j][class.index()].expect("reconstruction follows stored cells");
        if let Some(edges) = &verticals[j][cell.choice] {
            graph.add_aisle(j, &edges.segments);
        }
        class = cell.from;
        if j > 0 {
            let cell = minus[j][class.index()].expect("reconstruction follows stored cells");
            graph.add_cross(j - 1, cell.choice);
            class = cell.from;
        }
    }
    let steps = graph.euler_walk();
    let route = finish(layout, &prepared, RoutingMethod::Optimal, &steps);
    debug_assert_eq!(
        route.distance_cm, cost,
        "the Euler walk has the programme's length"
    );
    Ok(route)
}

fn relax<T: Copy>(row: &mut Row<T>, to: Class, cost: u64, from: Class, choice: T) {
    let slot = &mut row[to.index()];
    match slot {
        Some(cell) if cell.cost <= cost => {}
        _ => *slot = Some(Cell { cost, from, choice }),
    }
}

/// The sweep's columns: aisles from the leftmost of (depot, first pick aisle) to the rightmost
/// of (depot, last pick aisle), plus a virtual column for a depot between aisles. Aisles beyond
/// that range never carry an edge of a shortest tour: nothing there needs visiting and no walk
/// gets shorter by going further out.
fn columns(layout: &Layout, prepared: &Prepared) -> Vec<Column> {
    let depot_x = prepared.depot.x_cm;
    let first_x = prepared.aisles[0].x.min(depot_x);
    let last_x = prepared.aisles[prepared.aisles.len() - 1].x.max(depot_x);
    let mut columns: Vec<Column> = Vec::new();
    let mut pick_aisles = prepared.aisles.iter().enumerate().peekable();
    for aisle in 0..layout.aisles() {
        let x = layout.aisle_x_cm(aisle);
        if x < first_x || x > last_x {
            continue;
        }
        let picks = match pick_aisles.peek() {
            Some(&(index, a)) if a.x == x => {
                pick_aisles.next();
                Some(index)
            }
            _ => None,
        };
        columns.push(Column {
            x,
            has_aisle: true,
            picks,
            depot: x == depot_x,
        });
    }
    if !layout.is_aisle_x(depot_x) {
        let at = columns.partition_point(|c| c.x < depot_x);
        columns.insert(
            at,
            Column {
                x: depot_x,
                has_aisle: false,
                picks: None,
                depot: true,
            },
        );
    }
    columns
}

/// The tour's multigraph, built from the programme's choices, walked as an Euler circuit.
struct TourGraph {
    points: Vec<Point>,
    stops: Vec<Option<(usize, usize)>>,
    /// Per column: front vertex, back vertex, then one vertex per stop.
    front: Vec<usize>,
    back: Vec<usize>,
    chain: Vec<Vec<usize>>,
    edges: Vec<(usize, usize)>,
    depot: usize,
}

impl TourGraph {
    fn new(prepared: &Prepared, columns: &[Column]) -> TourGraph {
        let mut graph = TourGraph {
            points: Vec::new(),
            stops: Vec::new(),
            front: Vec::new(),
            back: Vec::new(),
            chain: Vec::new(),
            edges: Vec::new(),
            depot: 0,
        };
        for column in columns {
            let mut add = |point: Point, stop: Option<(usize, usize)>| {
                graph.points.push(point);
                graph.stops.push(stop);
                graph.points.len() - 1
            };
            let front = add(
                Point {
                    x_cm: column.x,
                    y_cm: 0,
                },
                None,
            );
            let back = add(
                Point {
                    x_cm: column.x,
                    y_cm: prepared.aisle_length,
                },
                None,
            );
            let mut chain = vec![front];
            if let Some(a) = column.picks {
                for (s, stop) in prepared.aisles[a].stops.iter().enumerate() {
                    chain.push(add(
                        Point {
                            x_cm: column.x,
                            y_cm: stop.y,
                        },
                        Some((a, s)),
                    ));
                }
            }
            chain.push(back);
            if column.depot {
                graph.depot = front;
            }
            graph.front.push(front);
            graph.back.push(back);
            graph.chain.push(chain);
        }
        graph
    }

    fn add_aisle(&mut self, column: usize, segments: &[u8]) {
        for (k, &m) in segments.iter().enumerate() {
            let (u, v) = (self.chain[column][k], self.chain[column][k + 1]);
            for _ in 0..m {
                self.edges.push((u, v));
            }
        }
    }

    fn add_cross(&mut self, left: usize, (x, y): (u8, u8)) {
        let (fa, fb) = (self.front[left], self.front[left + 1]);
        let (ba, bb) = (self.back[left], self.back[left + 1]);
        for _ in 0..x {
            self.edges.push((fa, fb));
        }
        for _ in 0..y {
            self.edges.push((ba, bb));
        }
    }

    /// Hierholzer's algorithm from the depot; every degree is even and the graph connected by
    /// construction.
    fn euler_walk(&self) -> Vec<Step> {
        let mut adjacency: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.points.len()];
        for (e, &(u, v)) in self.edges.iter().enumerate() {
            adjacency[u].push((v, e));
            adjacency[v].push((u, e));
        }
        let mut used = vec![false; self.edges.len()];
        let mut next = vec![0usize; self.points.len()];
        let mut stack = vec![self.depot];
        let mut circuit = Vec::with_capacity(self.edges.len() + 1);
        while let Some(&u) = stack.last() {
            let mut advanced = false;
            while next[u] < adjacency[u].len() {
                let (v, e) = adjacency[u][next[u]];
                next[u] += 1;
                if !used[e] {
                    used[e] = true;
                    stack.push(v);
                    advanced = true;
                    break;
                }
            }
            if !advanced {
                circuit.push(u);
                stack.pop();
            }
        }
        debug_assert!(used.iter().all(|&u| u), "the tour graph is connected");
        circuit.reverse();
        circuit
            .into_iter()
            .map(|node| (self.points[node], self.stops[node]))
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Brute force.

/// Exact shortest tour by trying every visiting order of the distinct pick locations (with
/// branch and bound, which prunes orders that cannot win but never a possible winner). The
/// oracle for [`optimal_route`]; at most [`BRUTE_FORCE_STOPS_MAX`] distinct locations.
pub fn brute_force_route(layout: &Layout, picks: &[Location]) -> Result<Route, RoutingError> {
    let prepared = prepare(layout, picks)?;
    let stops: Vec<(Point, (usize, usize))> = prepared
        .aisles
        .iter()
        .enumerate()
        .flat_map(|(a, aisle)| {
            aisle.stops.iter().enumerate().map(move |(s, stop)| {
                (
                    Point {
                        x_cm: aisle.x,
                        y_cm: stop.y,
                    },
                    (a, s),
                )
            })
        })
        .collect();
    if stops.len() > BRUTE_FORCE_STOPS_MAX {
        return Err(RoutingError::TooManyPicks {
            count: stops.len(),
            max: BRUTE_FORCE_STOPS_MAX,
        });
    }
    if stops.is_empty() {
        return Ok(empty_route(layout, RoutingMethod::BruteForce));
    }
    // Node 0 is the depot, node i + 1 is stop i.
    let mut nodes = vec![prepared.depot];
    nodes.extend(stops.iter().map(|s| s.0));
    let n = nodes.len();
    let dist: Vec<Vec<u64>> = nodes
        .iter()
        .map(|&p| nodes.iter().map(|&q| layout.distance_cm(p, q)).collect())
        .collect();

    struct Search<'a> {
        dist: &'a [Vec<u64>],
        order: Vec<usize>,
        used: Vec<bool>,
        best: u64,
        best_order: Vec<usize>,
    }
    fn extend(search: &mut Search<'_>, at: usize, length: u64) {
        if length >= search.best {
            return;
        }
        if search.order.len() + 1 == search.used.len() {
            let total = length + search.dist[at][0];
            if total < search.best {
                search.best = total;
                search.best_order = search.order.clone();
            }
            return;
        }
        for next in 1..search.used.len() {
            if search.used[next] {
                continue;
            }
            search.used[next] = true;
            search.order.push(next);
            let step = search.dist[at][next];
            extend(search, next, length + step);
            search.order.pop();
            search.used[next] = false;
        }
    }
    let mut search = Search {
        dist: &dist,
        order: Vec::with_capacity(n),
        used: vec![false; n],
        best: u64::MAX,
        best_order: Vec::new(),
    };
    search.used[0] = true;
    extend(&mut search, 0, 0);

    let mut steps: Vec<Step> = vec![(prepared.depot, None)];
    steps.extend(
        search
            .best_order
            .iter()
            .map(|&node| (nodes[node], Some(stops[node - 1].1))),
    );
    steps.push((prepared.depot, None));
    let route = finish(layout, &prepared, RoutingMethod::BruteForce, &steps);
    debug_assert_eq!(route.distance_cm, search.best);
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fulfilment::layout::{LayoutConfig, Side};
    use crate::ids::Qty;

    fn loc(aisle: u32, slot: u32) -> Location {
        Location::new(aisle, slot, Side::Left)
    }

    fn check_all(layout: &Layout, picks: &[Location]) -> u64 {
        let optimal = optimal_route(layout, picks).unwrap();
        let brute = brute_force_route(layout, picks).unwrap();
        assert_eq!(optimal.distance_cm, brute.distance_cm, "picks {picks:?}");
        for method in RoutingMethod::BASELINES {
            let r = route(layout, picks, method).unwrap();
            assert!(
                r.distance_cm >= optimal.distance_cm,
                "{method:?} beat the optimum"
            );
            assert_eq!(waypoints_distance_cm(layout, &r.waypoints), r.distance_cm);
        }
        assert_eq!(
            sequence_distance_cm(layout, picks, &optimal.sequence).unwrap(),
            optimal.distance_cm
        );
        optimal.distance_cm
    }

    #[test]
    fn empty_pick_list_is_a_zero_tour() {
        let layout = Layout::standard_grid();
        for method in RoutingMethod::BASELINES {
            assert_eq!(route(&layout, &[], method).unwrap().distance_cm, 0);
        }
        assert_eq!(optimal_route(&layout, &[]).unwrap().distance_cm, 0);
    }

    #[test]
    fn single_pick_is_there_and_back() {
        let layout = Layout::standard_grid();
        let picks = [loc(3, 0)];
        assert_eq!(check_all(&layout, &picks), 2 * (900 + 150));
    }

    #[test]
    fn one_aisle_near_the_back_is_cheaper_to_traverse_than_double_back() {
        let layout = Layout::standard_grid();
        let l = u64::from(layout.aisle_length_cm());
        // Picks at the back of aisles 0 and 1: in aisle 0 to the back, across, down aisle 1.
        let picks = [loc(0, 29), loc(1, 29)];
        assert_eq!(check_all(&layout, &picks), 2 * l + 2 * 300);
    }

    #[test]
    fn depot_between_aisles_is_served() {
        let config = LayoutConfig {
            depot_x_cm: Some(450),
            ..*Layout::standard_grid().config()
        };
        let layout = Layout::new(config).unwrap();
        let picks = [loc(0, 3), loc(4, 10), loc(2, 28), loc(2, 1)];
        check_all(&layout, &picks);
        check_all(&Layout::store(), &[loc(0, 7), loc(1, 2)]);
    }

    #[test]
    fn duplicate_and_facing_picks_share_a_stop_and_stay_in_the_sequence() {
        let layout = Layout::standard_grid();
        let picks = [
            loc(2, 5),
            Location::new(2, 5, Side::Right),
            loc(2, 5),
            loc(6, 20),
        ];
        let route = optimal_route(&layout, &picks).unwrap();
        let mut sorted = route.sequence.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        check_all(&layout, &picks);
        let positions = route.positions();
        assert_eq!(positions.len(), 4);
    }

    #[test]
    fn unknown_bins_are_typed_errors() {
        let layout = Layout::store();
        let err = optimal_route(&layout, &[loc(7, 0)]).unwrap_err();
        assert!(matches!(
            err,
            RoutingError::Layout(LayoutError::NoSuchBin(_))
        ));
    }

    #[test]
    fn brute_force_refuses_more_than_its_limit() {
        let layout = Layout::standard_grid();
        let picks: Vec<Location> = (0..11).map(|s| loc(0, s)).collect();
        assert!(matches!(
            brute_force_route(&layout, &picks),
            Err(RoutingError::TooManyPicks { .. })
        ));
    }

    #[test]
    fn the_seven_classes_close_only_as_complete_tours() {
        // Only even, connected frontiers may end the sweep.
        let closes: Vec<bool> = CLASSES
            .iter()
            .map(|&c| cross(c, 0, 0, false) == Some(Class::Done))
            .collect();
        assert_eq!(closes, vec![false, true, true, true, false, false, true]);
    }

    #[test]
    fn layout_with_bin_capacity_is_irrelevant_to_routing() {
        let config = LayoutConfig {
            bin_capacity: Qty(1),
            ..*Layout::standard_grid().config()
        };
        let layout = Layout::new(config).unwrap();
        check_all(&layout, &[loc(1, 1), loc(8, 8)]);
    }
}
