//! Planner tests over a small network: one `check` helper, many small cases.

use super::*;
use crate::ids::{Code, IncomingId, Qty, SkuId, StockPointId};
use crate::inventory::{Incoming, Source, StockEvent, StockPointInventory};
use crate::network::{Capability, Channel, Location, Network, StockPoint, StockPointKind};
use crate::time::Timestamp;

const A: SkuId = SkuId(0);
const B: SkuId = SkuId(1);

struct World {
    network: Network,
    inventories: Vec<StockPointInventory>,
}

/// Three warehouses and a store: WH1 (priority 1, Paris, 900c), WH2 (priority 2, Lyon, 400c),
/// WH3 (priority 3, Lille, 600c), ST1 (store, Paris, pickup and ship).
fn world(stock: &[(&str, SkuId, u64)]) -> World {
    let mut network = Network::default();
    let sites = [
        ("WH1", StockPointKind::Warehouse, 1, 48.85, 2.35, 900),
        ("WH2", StockPointKind::Warehouse, 2, 45.76, 4.83, 400),
        ("WH3", StockPointKind::Warehouse, 3, 50.63, 3.06, 600),
        ("ST1", StockPointKind::Store, 4, 48.86, 2.34, 700),
    ];
    for (i, (code, kind, priority, lat, lon, cost)) in sites.into_iter().enumerate() {
        network.upsert(StockPoint {
            id: StockPointId(i as u32),
            code: Code::parse(code).unwrap(),
            kind,
            name: code.to_lowercase(),
            location: Location { lat, lon },
            priority,
            channels: vec![Channel::Web, Channel::Store],
            capabilities: vec![Capability::Ship, Capability::Pickup, Capability::Returns],
            cost_per_shipment: cost,
            tags: vec![],
        });
    }
    let mut inventories: Vec<_> = (0..4)
        .map(|i| StockPointInventory::new(StockPointId(i)))
        .collect();
    for (code, sku, qty) in stock {
        let sp = network
            .iter()
            .find(|sp| sp.code.as_str() == *code)
            .unwrap()
            .id;
        inventories[sp.index()].apply(&StockEvent::OnHandSet {
            sku: *sku,
            on_hand: Qty(*qty),
            reason: crate::inventory::AdjustReason::Adjustment,
        });
    }
    World {
        network,
        inventories,
    }
}

fn rule_set(json: &str, network: &Network) -> CompiledRuleSet {
    RuleSet {
        version: 7,
        rules: serde_json::from_str(json).unwrap(),
    }
    .compile(network)
    .unwrap()
}

struct Ask {
    lines: Vec<(SkuId, u64)>,
    ship_to: Option<Location>,
    pickup_at: Option<StockPointId>,
    options: PlanOptions,
}

fn ask(lines: &[(SkuId, u64)]) -> Ask {
    Ask {
        lines: lines.to_vec(),
        ship_to: None,
        pickup_at: None,
        options: PlanOptions {
            allow_split: true,
            allow_partial: false,
            allow_backorder: false,
        },
    }
}

/// Plans `ask` with `rules` and renders the allocations as "line:SP:qty:source" strings.
fn check(world: &World, rules: &str, ask: &Ask) -> Result<Vec<String>, Vec<Shortage>> {
    let rules = rule_set(rules, &world.network);
    let codes = ["A", "B"];
    let lines: Vec<PlanLine<'_>> = ask
        .lines
        .iter()
        .map(|(sku, qty)| PlanLine {
            sku: *sku,
            code: codes[sku.index()],
            qty: Qty(*qty),
        })
        .collect();
    let request = PlanRequest {
        channel: Channel::Web,
        lines: &lines,
        ship_to: ask.ship_to,
        pickup_at: ask.pickup_at,
        tags: &[],
        exclude: &[],
        options: ask.options,
        now: Timestamp(0),
    };
    match plan(
        &rules,
        &world.network,
        world.inventories.as_slice(),
        &request,
    )
    .unwrap()
    {
        PlanOutcome::Planned(plan) => Ok(plan
            .allocations
            .iter()
            .map(|a| {
                let code = world.network.get(a.stock_point).unwrap().code.as_str();
                let source = if a.source == Source::OnHand {
                    "on_hand"
                } else {
                    "incoming"
                };
                format!("{}:{code}:{}:{source}", a.line, a.qty)
            })
            .collect()),
        PlanOutcome::Insufficient { shortages, .. } => Err(shortages),
    }
}

const PRIORITY: &str = r#"[{"name":"p","strategy":"priority"}]"#;

#[test]
fn priority_takes_the_lowest_rank_that_covers_the_line() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 10)]);
    assert_eq!(
        check(&w, PRIORITY, &ask(&[(A, 3)])),
        Ok(vec!["0:WH1:3:on_hand".into()])
    );
    assert_eq!(
        check(&w, PRIORITY, &ask(&[(A, 7)])),
        Ok(vec!["0:WH2:7:on_hand".into()])
    );
}

#[test]
fn a_line_no_single_stock_point_covers_is_split_in_rank_order() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 4), ("WH3", A, 4)]);
    assert_eq!(
        check(&w, PRIORITY, &ask(&[(A, 11)])),
        Ok(vec![
            "0:WH1:5:on_hand".into(),
            "0:WH2:4:on_hand".into(),
            "0:WH3:2:on_hand".into()
        ])
    );
}

#[test]
fn split_limits_and_no_split_requests_turn_into_shortages() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 4), ("WH3", A, 4)]);
    let two = r#"[{"name":"p","strategy":"priority","constraints":{"max_splits":2}}]"#;
    let shortage = check(&w, two, &ask(&[(A, 11)])).unwrap_err();
    assert_eq!(
        shortage,
        vec![Shortage {
            sku: A,
            requested: Qty(11),
            available: Qty(13)
        }]
    );
    let mut no_split = ask(&[(A, 6)]);
    no_split.options.allow_split = false;
    assert!(check(&w, PRIORITY, &no_split).is_err());
}

#[test]
fn closest_ships_from_the_nearest_stock_point() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 5), ("WH3", A, 5)]);
    let closest = r#"[{"name":"c","strategy":"closest","constraints":{"kinds":["warehouse"]}}]"#;
    let mut near_lille = ask(&[(A, 1)]);
    near_lille.ship_to = Some(Location {
        lat: 50.6,
        lon: 3.0,
    });
    assert_eq!(
        check(&w, closest, &near_lille),
        Ok(vec!["0:WH3:1:on_hand".into()])
    );
    let mut near_lyon = ask(&[(A, 1)]);
    near_lyon.ship_to = Some(Location {
        lat: 45.7,
        lon: 4.8,
    });
    assert_eq!(
        check(&w, closest, &near_lyon),
        Ok(vec!["0:WH2:1:on_hand".into()])
    );
}

#[test]
fn lowest_cost_prefers_the_cheapest_shipment() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 5), ("WH3", A, 5)]);
    let cheap = r#"[{"name":"c","strategy":"lowest-cost"}]"#;
    assert_eq!(
        check(&w, cheap, &ask(&[(A, 1)])),
        Ok(vec!["0:WH2:1:on_hand".into()])
    );
}

#[test]
fn fewest_shipments_prefers_one_stock_point_that_has_every_line() {
    let w = world(&[("WH1", A, 5), ("WH2", B, 5), ("WH3", A, 5), ("WH3", B, 5)]);
    let fewest = r#"[{"name":"f","strategy":"fewest-shipments"}]"#;
    assert_eq!(
        check(&w, fewest, &ask(&[(A, 1), (B, 1)])),
        Ok(vec!["0:WH3:1:on_hand".into(), "1:WH3:1:on_hand".into()])
    );
    // Priority alone would have split the order over two parcels.
    assert_eq!(
        check(&w, PRIORITY, &ask(&[(A, 1), (B, 1)])),
        Ok(vec!["0:WH1:1:on_hand".into(), "1:WH2:1:on_hand".into()])
    );
}

#[test]
fn balance_draws_from_the_deepest_stock() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 50), ("WH3", A, 20)]);
    let balance = r#"[{"name":"b","strategy":"balance"}]"#;
    assert_eq!(
        check(&w, balance, &ask(&[(A, 2)])),
        Ok(vec!["0:WH2:2:on_hand".into()])
    );
}

#[test]
fn min_remaining_keeps_a_floor_at_every_stock_point() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 10)]);
    let floor = r#"[{"name":"p","strategy":"priority","constraints":{"min_remaining":3}}]"#;
    assert_eq!(
        check(&w, floor, &ask(&[(A, 3)])),
        Ok(vec!["0:WH2:3:on_hand".into()])
    );
}

#[test]
fn excluded_and_ineligible_kinds_are_never_used() {
    let w = world(&[("WH1", A, 5), ("ST1", A, 5)]);
    let no_wh1 = r#"[{"name":"p","strategy":"priority","constraints":{"exclude":["WH1"],"kinds":["warehouse"]}}]"#;
    assert!(check(&w, no_wh1, &ask(&[(A, 1)])).is_err());
    let ship_from_store =
        r#"[{"name":"p","strategy":"priority","constraints":{"exclude":["WH1"]}}]"#;
    assert_eq!(
        check(&w, ship_from_store, &ask(&[(A, 1)])),
        Ok(vec!["0:ST1:1:on_hand".into()])
    );
}

#[test]
fn pickup_in_store_is_served_by_that_store_only() {
    let w = world(&[("WH1", A, 5), ("ST1", A, 1)]);
    let mut pickup = ask(&[(A, 1)]);
    pickup.pickup_at = Some(StockPointId(3));
    assert_eq!(
        check(&w, PRIORITY, &pickup),
        Ok(vec!["0:ST1:1:on_hand".into()])
    );
    let mut too_many = ask(&[(A, 2)]);
    too_many.pickup_at = Some(StockPointId(3));
    assert!(check(&w, PRIORITY, &too_many).is_err());
}

#[test]
fn pickup_at_a_warehouse_is_an_error_not_a_shortage() {
    let w = world(&[("WH1", A, 5)]);
    let rules = rule_set(PRIORITY, &w.network);
    let lines = [PlanLine {
        sku: A,
        code: "A",
        qty: Qty(1),
    }];
    let request = PlanRequest {
        channel: Channel::Web,
        lines: &lines,
        ship_to: None,
        pickup_at: Some(StockPointId(0)),
        tags: &[],
        exclude: &[],
        options: ask(&[]).options,
        now: Timestamp(0),
    };
    assert_eq!(
        plan(&rules, &w.network, w.inventories.as_slice(), &request),
        Err(PlanError::NotAPickupPoint(StockPointId(0)))
    );
}

#[test]
fn partial_plans_take_what_there_is_when_allowed() {
    let w = world(&[("WH1", A, 2)]);
    let mut partial = ask(&[(A, 5)]);
    partial.options.allow_partial = true;
    assert_eq!(
        check(&w, PRIORITY, &partial),
        Ok(vec!["0:WH1:2:on_hand".into()])
    );
    let none = world(&[]);
    assert!(check(&none, PRIORITY, &partial).is_err());
}

#[test]
fn backorders_promise_incoming_stock_within_the_horizon() {
    let mut w = world(&[("WH1", A, 2)]);
    w.inventories[1].apply(&StockEvent::IncomingExpected {
        sku: A,
        incoming: Incoming {
            id: IncomingId(1),
            qty: Qty(10),
            eta: Timestamp(3 * 86_400_000),
        },
    });
    let mut backorder = ask(&[(A, 5)]);
    backorder.options.allow_backorder = true;
    assert_eq!(
        check(&w, PRIORITY, &backorder),
        Ok(vec!["0:WH1:2:on_hand".into(), "0:WH2:3:incoming".into()])
    );
    let short_horizon =
        r#"[{"name":"p","strategy":"priority","constraints":{"promise_incoming_days":1}}]"#;
    assert!(check(&w, short_horizon, &backorder).is_err());
    assert!(check(&w, PRIORITY, &ask(&[(A, 5)])).is_err());
}

#[test]
fn two_lines_of_one_sku_do_not_count_the_same_units_twice() {
    let w = world(&[("WH1", A, 5)]);
    assert!(check(&w, PRIORITY, &ask(&[(A, 3), (A, 3)])).is_err());
    assert!(check(&w, PRIORITY, &ask(&[(A, 3), (A, 2)])).is_ok());
}

#[test]
fn lines_go_to_the_first_rule_that_matches_them() {
    let w = world(&[("WH1", A, 5), ("WH1", B, 5), ("WH2", A, 5), ("WH2", B, 5)]);
    let rules = r#"[{"name":"b-from-wh2","match":{"sku_prefix":"B"},"strategy":"priority","constraints":{"stock_points":["WH2"]}},
                    {"name":"rest","strategy":"priority"}]"#;
    assert_eq!(
        check(&w, rules, &ask(&[(A, 1), (B, 1)])),
        Ok(vec!["1:WH2:1:on_hand".into(), "0:WH1:1:on_hand".into()])
    );
}

#[test]
fn the_explanation_names_rule_version_candidates_and_tie_breaks() {
    let w = world(&[("WH1", A, 5), ("WH2", A, 5)]);
    let rules = rule_set(r#"[{"name":"flat","strategy":"balance"}]"#, &w.network);
    let lines = [PlanLine {
        sku: A,
        code: "A",
        qty: Qty(1),
    }];
    let request = PlanRequest {
        channel: Channel::Web,
        lines: &lines,
        ship_to: None,
        pickup_at: None,
        tags: &[],
        exclude: &[],
        options: ask(&[]).options,
        now: Timestamp(0),
    };
    let PlanOutcome::Planned(plan) =
        plan(&rules, &w.network, w.inventories.as_slice(), &request).unwrap()
    else {
        panic!("expected a plan");
    };
    let group = &plan.explanation.groups[0];
    assert_eq!(plan.explanation.rule_set_version, 7);
    assert_eq!(&*group.rule_name, "flat");
    assert_eq!(group.candidates[0].stock_point, StockPointId(0));
    assert!(group.candidates[0].chosen);
    assert!(!group.candidates[1].chosen);
    assert!(group.tie_break.is_some());
}
