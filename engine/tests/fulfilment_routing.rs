//! Routing properties on random single-block instances: the Ratliff & Rosenthal programme
//! equals the brute-force optimum on every instance with at most 10 picks, no heuristic is ever
//! shorter, and every route's waypoints and sequence measure to the length it claims.

use conductor_engine::fulfilment::layout::{Layout, LayoutConfig, Location, Side};
use conductor_engine::fulfilment::routing::{
    brute_force_route, optimal_route, route, sequence_distance_cm, waypoints_distance_cm,
    RoutingMethod,
};
use conductor_engine::ids::Qty;
use proptest::prelude::*;

/// A random layout (1–8 aisles, 1–12 slots, varied geometry, depot anywhere on the front
/// cross aisle) and up to `picks_max` random picks in it.
fn instance(picks_max: usize) -> impl Strategy<Value = (Layout, Vec<Location>)> {
    (
        1u32..=8,
        1u32..=12,
        1u32..=600,
        2u32..=300,
        0u32..=400,
        0u32..=1000,
        any::<bool>(),
    )
        .prop_flat_map(
            move |(aisles, slots, spacing, depth, cross, depot_frac, on_aisle)| {
                let width = (aisles - 1) * spacing;
                let depot_x = if on_aisle {
                    (depot_frac % aisles) * spacing
                } else {
                    width * depot_frac / 1000
                };
                let layout = Layout::new(LayoutConfig {
                    aisles,
                    slots_per_aisle: slots,
                    aisle_spacing_cm: spacing,
                    slot_depth_cm: depth,
                    cross_aisle_cm: cross,
                    depot_x_cm: Some(depot_x),
                    bin_capacity: Qty(10),
                })
                .expect("generated within limits");
                let pick = (0..aisles, 0..slots, any::<bool>()).prop_map(|(a, s, right)| {
                    Location::new(a, s, if right { Side::Right } else { Side::Left })
                });
                (Just(layout), prop::collection::vec(pick, 0..=picks_max))
            },
        )
}

fn check_route_measures(layout: &Layout, picks: &[Location], method: RoutingMethod) -> u64 {
    let r = route(layout, picks, method).expect("valid instance");
    // The waypoints, joined by shortest paths, are exactly as long as claimed.
    assert_eq!(
        waypoints_distance_cm(layout, &r.waypoints),
        r.distance_cm,
        "{method:?}"
    );
    assert_eq!(r.waypoints.first(), Some(&layout.depot()));
    assert_eq!(r.waypoints.last(), Some(&layout.depot()));
    // The sequence is a permutation of the picks.
    let mut sorted = r.sequence.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..picks.len()).collect::<Vec<_>>(), "{method:?}");
    // Walking the sequence point to point never takes longer than the route itself.
    let direct = sequence_distance_cm(layout, picks, &r.sequence).expect("valid sequence");
    assert!(
        direct <= r.distance_cm,
        "{method:?}: {direct} > {}",
        r.distance_cm
    );
    r.distance_cm
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn optimal_equals_brute_force_and_no_heuristic_beats_it((layout, picks) in instance(10)) {
        let optimal = optimal_route(&layout, &picks).expect("valid instance");
        let brute = brute_force_route(&layout, &picks).expect("at most 10 distinct stops");
        prop_assert_eq!(optimal.distance_cm, brute.distance_cm, "layout {:?} picks {:?}", layout, picks);
        // The optimal sequence, walked point to point, is exactly the optimal length.
        let direct = sequence_distance_cm(&layout, &picks, &optimal.sequence).expect("valid");
        prop_assert_eq!(direct, optimal.distance_cm);
        check_route_measures(&layout, &picks, RoutingMethod::Optimal);
        for method in RoutingMethod::BASELINES {
            let length = check_route_measures(&layout, &picks, method);
            prop_assert!(length >= optimal.distance_cm, "{:?} beat the optimum", method);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Larger pick lists, where brute force is out of reach: the programme still yields a
    /// measurable tour no heuristic beats.
    #[test]
    fn large_pick_lists_stay_consistent((layout, picks) in instance(60)) {
        let optimal = check_route_measures(&layout, &picks, RoutingMethod::Optimal);
        let direct = sequence_distance_cm(
            &layout,
            &picks,
            &optimal_route(&layout, &picks).expect("valid").sequence,
        )
        .expect("valid");
        prop_assert_eq!(direct, optimal);
        for method in RoutingMethod::BASELINES {
            prop_assert!(check_route_measures(&layout, &picks, method) >= optimal);
        }
    }
}

#[test]
fn routes_on_the_standard_grid_follow_the_textbook_ordering() {
    // On the report grid, S-shape ≥ combined is not guaranteed per instance, but every
    // heuristic is ≥ optimal and S-shape on a single full aisle equals a traversal.
    let layout = Layout::standard_grid();
    let picks: Vec<Location> = (0..30).map(|s| Location::new(4, s, Side::Left)).collect();
    let optimal = optimal_route(&layout, &picks).expect("valid");
    let l = u64::from(layout.aisle_length_cm());
    // Whole aisle: up and back down is 2 × (x + the highest pick), which beats a detour.
    assert_eq!(optimal.distance_cm, 2 * 1200 + 2 * (l - 150));
}
