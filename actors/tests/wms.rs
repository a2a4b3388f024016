//! The warehouse executor through the actor: tours, routes, cartons, carriers, short picks,
//! putaway and replenishment, with bins checked against on_hand after every step.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use conductor_actors::clock::ManualClock;
use conductor_actors::warehouse::{ReleaseMode, Task, TaskKind, WorkerConfig};
use conductor_actors::{Conductor, Config};
use conductor_engine::fulfilment::forecast::{DemandClass, ForecastMethod};
use conductor_engine::fulfilment::layout::{Layout, Location, Side};
use conductor_engine::fulfilment::routing::optimal_route;
use conductor_engine::ids::{OrderId, Qty, SkuId, StockPointId};
use conductor_engine::order::OrderStatus;
use conductor_engine::time::Timestamp;

const DAY_MS: u64 = 86_400_000;

async fn start_with(configure: impl FnOnce(&mut Config)) -> System {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = config(dir.path());
    configure(&mut config);
    let (conductor, _) = Conductor::start(config).await.expect("start");
    System { conductor, dir }
}

/// Every unit of each SKU is in a bin or an area, and they add up to on_hand.
async fn check_bins(c: &Conductor, sp: StockPointId, skus: &[SkuId]) {
    let view = c.bin_stock(sp).await.unwrap();
    let inventory = c.inventory(sp).await.unwrap();
    for &sku in skus {
        let on_hand = inventory.position(sku).map_or(Qty::ZERO, |p| p.on_hand);
        view.check(sku, on_hand)
            .unwrap_or_else(|e| panic!("{e}: {view:?}"));
    }
}

fn location(bin: &str) -> Location {
    let mut parts = bin.split('-');
    let aisle = parts.next().unwrap()[1..].parse().unwrap();
    let slot = parts.next().unwrap()[1..].parse().unwrap();
    let side = if parts.next() == Some("L") {
        Side::Left
    } else {
        Side::Right
    };
    Location::new(aisle, slot, side)
}

async fn open(c: &Conductor, sp: StockPointId, kind: TaskKind) -> Vec<Task> {
    c.tasks(sp, true)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_batched_into_a_routed_tour_packed_into_cartons_and_shipped() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let names = ["A", "B", "C", "D"];
    let mut skus = Vec::new();
    for name in names {
        let sku = sku(c, name).await;
        stock(c, wh1, sku, 150).await;
        skus.push(sku);
    }
    check_bins(c, wh1, &skus).await;
    let first = c
        .place_order(request(&[("A", 2), ("C", 1)]))
        .await
        .unwrap()
        .unwrap();
    let second = c
        .place_order(request(&[("B", 1), ("D", 3)]))
        .await
        .unwrap()
        .unwrap();
    eventually("picks of both orders", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 4
    })
    .await;
    let picks = open(c, wh1, TaskKind::Pick).await;
    // Waveless: the second order joined the first one's open tour (it can only add less than
    // a tour of its own), and the tour's picks come out in route order.
    let tour = picks[0].tour.expect("picks belong to a tour");
    assert!(picks.iter().all(|t| t.tour == Some(tour)), "{picks:#?}");
    let positions: Vec<u32> = picks.iter().map(|t| t.route_position.unwrap()).collect();
    assert_eq!(positions, (0..4).collect::<Vec<_>>());
    assert!(
        picks.iter().all(|t| t.carton.is_some()),
        "each pick goes into its final carton"
    );
    // The walk is the exact optimal tour over the bins.
    let bins: Vec<Location> = picks
        .iter()
        .map(|t| location(t.bin.as_deref().unwrap()))
        .collect();
    let walked: u64 = picks.iter().map(|t| t.walk_cm.unwrap()).sum();
    assert_eq!(
        walked,
        optimal_route(&Layout::standard_grid(), &bins)
            .unwrap()
            .distance_cm
    );
    for task in picks {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    check_bins(c, wh1, &skus).await;
    let packs = open(c, wh1, TaskKind::Pack).await;
    assert_eq!(packs.len(), 2);
    for pack in packs {
        assert!(
            pack.carton
                .as_deref()
                .is_some_and(|c| c.starts_with(&pack.fulfilment.to_string())),
            "{pack:?}"
        );
        c.complete_task(wh1, pack.id, None).await.unwrap().unwrap();
    }
    let ships = open(c, wh1, TaskKind::Ship).await;
    assert_eq!(ships.len(), 2);
    for ship in ships {
        assert!(ship.carrier.is_some() && ship.dock.is_some(), "{ship:?}");
        let done = c.complete_task(wh1, ship.id, None).await.unwrap().unwrap();
        let order = c.order(done.order).await.unwrap().unwrap();
        let shipment = order.fulfilments[0].shipment.clone().expect("shipped");
        assert_eq!(Some(shipment.carrier), done.carrier);
        assert_eq!(Some(shipment.tracking), done.tracking);
    }
    for id in [first.id, second.id] {
        assert_eq!(
            c.order(id).await.unwrap().unwrap().status(),
            OrderStatus::Shipped
        );
    }
    check_bins(c, wh1, &skus).await;
    assert_eq!(
        c.inventory(wh1)
            .await
            .unwrap()
            .position(skus[3])
            .unwrap()
            .on_hand,
        Qty(147)
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_wave_batches_the_orders_released_since_the_last_one() {
    let system =
        start_with(|config| config.wms.release = ReleaseMode::Waves { interval_ms: 300 }).await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    for name in ["A", "B", "C"] {
        let sku = sku(c, name).await;
        stock(c, wh1, sku, 10).await;
    }
    for name in ["A", "B", "C"] {
        c.place_order(request(&[(name, 1)])).await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        open(c, wh1, TaskKind::Pick).await.is_empty(),
        "picks wait for the wave"
    );
    eventually("the wave releases the picks", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 3
    })
    .await;
    let picks = open(c, wh1, TaskKind::Pick).await;
    let mut tours: Vec<u64> = picks.iter().map(|t| t.tour.unwrap()).collect();
    tours.dedup();
    assert_eq!(
        tours.len(),
        1,
        "three small orders share one tote: {picks:#?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pick_is_recovered_from_another_bin_in_the_same_warehouse() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, wh2, _] = network(c).await;
    let a = sku(c, "A").await;
    // More than one bin holds: the SKU lives in two bins.
    stock(c, wh1, a, 150).await;
    stock(c, wh2, a, 10).await;
    let bins = c.bin_stock(wh1).await.unwrap().bins;
    assert_eq!(bins.len(), 2, "{bins:?}");
    let order = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    eventually("the pick appears", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 1
    })
    .await;
    let pick = open(c, wh1, TaskKind::Pick).await.remove(0);
    let emptied = location(pick.bin.as_deref().unwrap());
    let recorded = bins.iter().find(|b| b.location == emptied).unwrap().qty;
    // The bin is empty: nothing picked.
    c.complete_task(wh1, pick.id.clone(), Some(Qty(0)))
        .await
        .unwrap()
        .unwrap();
    let again = open(c, wh1, TaskKind::Pick).await;
    assert_eq!(again.len(), 1, "a new pick from the other bin");
    assert_ne!(again[0].bin, pick.bin);
    assert_eq!(again[0].qty, Qty(3));
    let view = c.bin_stock(wh1).await.unwrap();
    assert!(
        view.bins.iter().all(|b| b.location != emptied),
        "the empty bin holds nothing now"
    );
    // The units the bin should have held are unfound, and written off from on_hand so that
    // they are not sold again (nobody has to report them short: the order is covered).
    eventually("the unfound units are written off", || async {
        let on_hand = c.inventory(wh1).await.unwrap().position(a).unwrap().on_hand;
        let unfound = c.bin_stock(wh1).await.unwrap().area(a).unfound;
        (on_hand, unfound) == (Qty(150 - recorded.0), Qty(0))
    })
    .await;
    check_bins(c, wh1, &[a]).await;
    c.complete_task(wh1, again[0].id.clone(), None)
        .await
        .unwrap()
        .unwrap();
    let order = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(
        order.fulfilments.len(),
        1,
        "nothing was re-sourced: {order:?}"
    );
    assert_eq!(order.fulfilments[0].lines[0].picked, Qty(3));
    assert_eq!(open(c, wh1, TaskKind::Pack).await.len(), 1);
    assert_eq!(
        c.inventory(wh2)
            .await
            .unwrap()
            .position(a)
            .unwrap()
            .allocated,
        Qty(0)
    );
    check_bins(c, wh1, &[a]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pick_goes_to_the_order_when_no_bin_has_stock() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, wh2, _] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 3).await;
    stock(c, wh2, a, 3).await;
    let order = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    eventually("the pick appears", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 1
    })
    .await;
    let pick = open(c, wh1, TaskKind::Pick).await.remove(0);
    c.complete_task(wh1, pick.id, Some(Qty(1)))
        .await
        .unwrap()
        .unwrap();
    assert!(
        open(c, wh1, TaskKind::Pick).await.is_empty(),
        "no other bin to try"
    );
    let order = c.order(order.id).await.unwrap().unwrap();
    let resourced: Vec<_> = order
        .fulfilments
        .iter()
        .filter(|f| f.stock_point == wh2)
        .collect();
    assert_eq!(resourced.len(), 1, "{order:?}");
    assert_eq!(resourced[0].lines[0].qty, Qty(2));
    let p1 = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!(p1.on_hand, Qty(1));
    let view = c.bin_stock(wh1).await.unwrap();
    assert_eq!(
        view.area(a).unfound,
        Qty(0),
        "the short units were written off with on_hand"
    );
    assert_eq!(view.area(a).outbound, Qty(1));
    check_bins(c, wh1, &[a]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_units_wait_on_the_dock_until_put_away_near_their_velocity_zone() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 5).await;
    assert!(
        c.tasks(wh1, true).await.unwrap().is_empty(),
        "an adjustment is slotted directly"
    );
    c.receive(wh1, a, Qty(20), None).await.unwrap().unwrap();
    eventually("a putaway task", || async {
        !open(c, wh1, TaskKind::Putaway).await.is_empty()
    })
    .await;
    let putaways = open(c, wh1, TaskKind::Putaway).await;
    assert_eq!(putaways.iter().map(|t| t.qty.0).sum::<u64>(), 20);
    assert_eq!(c.bin_stock(wh1).await.unwrap().area(a).dock, Qty(20));
    check_bins(c, wh1, &[a]).await;
    for task in putaways {
        assert!(task.bin.is_some());
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    let view = c.bin_stock(wh1).await.unwrap();
    assert_eq!(view.area(a).dock, Qty(0));
    // Consolidated with the units already there: one bin.
    assert_eq!(
        view.bins
            .iter()
            .filter(|b| b.sku == a)
            .map(|b| b.qty.0)
            .collect::<Vec<_>>(),
        vec![25]
    );
    check_bins(c, wh1, &[a]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_workers_ship_every_day_and_the_forecast_suggests_a_reorder_point() {
    let clock = Arc::new(ManualClock::new(Timestamp(20_000 * DAY_MS)));
    let shared = clock.clone();
    let system = start_with(move |config| {
        config.clock = shared;
        config.workers = Some(WorkerConfig {
            pick_ms: 1,
            pack_ms: 1,
            ship_ms: 1,
            putaway_ms: 1,
            walk_ms_per_m: 0,
        });
    })
    .await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 30).await;
    for _ in 0..5 {
        let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
        eventually("simulated workers ship it", || async {
            c.order(order.id).await.unwrap().unwrap().status() == OrderStatus::Shipped
        })
        .await;
        check_bins(c, wh1, &[a]).await;
        clock.advance_ms(DAY_MS);
    }
    let suggestions = c.replenishment(wh1).await.unwrap();
    assert_eq!(suggestions.len(), 1, "{suggestions:?}");
    let s = &suggestions[0];
    assert_eq!((s.sku, s.on_hand), (a, Qty(20)));
    // Five days of 2, today none yet: regular demand, smoothed.
    assert_eq!(s.class, DemandClass::Smooth);
    assert_eq!(s.method, ForecastMethod::Ses);
    assert_eq!(s.history_days, 6);
    assert!(s.reorder_point >= 3 && s.reorder_point < 20, "{s:?}");
    assert!(!s.reorder);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_picked_for_a_cancelled_order_go_back_to_storage_by_putaway() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    let b = sku(c, "B").await;
    stock(c, wh1, a, 10).await;
    stock(c, wh1, b, 10).await;
    let order = c
        .place_order(request(&[("A", 2), ("B", 1)]))
        .await
        .unwrap()
        .unwrap();
    eventually("picks appear", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 2
    })
    .await;
    let pick = open(c, wh1, TaskKind::Pick)
        .await
        .into_iter()
        .find(|t| t.sku == Some(a))
        .unwrap();
    c.complete_task(wh1, pick.id, None).await.unwrap().unwrap();
    assert_eq!(c.bin_stock(wh1).await.unwrap().area(a).outbound, Qty(2));
    c.cancel_order(order.id).await.unwrap().unwrap();
    eventually("the picked units are put away", || async {
        let tasks = c.tasks(wh1, true).await.unwrap();
        tasks.len() == 1 && tasks[0].kind == TaskKind::Putaway
    })
    .await;
    let putaway = c.tasks(wh1, true).await.unwrap().remove(0);
    assert_eq!(
        (putaway.sku, putaway.qty, putaway.order),
        (Some(a), Qty(2), order.id)
    );
    check_bins(c, wh1, &[a, b]).await;
    c.complete_task(wh1, putaway.id, None)
        .await
        .unwrap()
        .unwrap();
    let view = c.bin_stock(wh1).await.unwrap();
    assert_eq!((view.area(a).outbound, view.area(a).dock), (Qty(0), Qty(0)));
    check_bins(c, wh1, &[a, b]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_picked_units_stay_outbound_and_the_pack_task_comes_back() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    let order = c.place_order(request(&[("A", 4)])).await.unwrap().unwrap();
    eventually("the pick appears", || async {
        open(&c, wh1, TaskKind::Pick).await.len() == 1
    })
    .await;
    let pick = open(&c, wh1, TaskKind::Pick).await.remove(0);
    c.complete_task(wh1, pick.id, None).await.unwrap().unwrap();
    let system = restart(system).await;
    let c = system.conductor.clone();
    let tasks = c.tasks(wh1, true).await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:#?}");
    assert_eq!(
        (tasks[0].kind, tasks[0].order, tasks[0].qty),
        (TaskKind::Pack, order.id, Qty(4))
    );
    assert!(tasks[0].carton.is_some(), "re-cartonized at restart");
    assert_eq!(c.bin_stock(wh1).await.unwrap().area(a).outbound, Qty(4));
    check_bins(&c, wh1, &[a]).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_has_its_own_small_layout() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, _, st1] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, st1, a, 60).await;
    stock(c, wh1, a, 60).await;
    let store = Layout::store();
    let bins = c.bin_stock(st1).await.unwrap().bins;
    assert!(bins.iter().all(|b| store.contains(b.location)), "{bins:?}");
    assert_eq!(
        bins.len(),
        2,
        "store bins hold {} units",
        store.bin_capacity()
    );
    assert_eq!(c.bin_stock(wh1).await.unwrap().bins.len(), 1);
    check_bins(c, st1, &[a]).await;
    c.shutdown().await;
}

/// Completes the open tasks of `sp` as they come, as staff would, until every order in `orders`
/// has shipped; an order cancelled on the way fails the test.
async fn work_until_shipped(c: &Conductor, sp: StockPointId, orders: &[OrderId]) {
    for _ in 0..2_000 {
        let mut all_shipped = true;
        for id in orders {
            let status = c.order(*id).await.unwrap().unwrap().status();
            assert_ne!(status, OrderStatus::Cancelled, "{id} was cancelled");
            all_shipped &= status == OrderStatus::Shipped;
        }
        if all_shipped {
            return;
        }
        let tasks = c.tasks(sp, true).await.unwrap();
        if tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for task in tasks {
            // A task listed a moment ago can be gone or completing: the next round sees it.
            let _ = c.complete_task(sp, task.id, None).await.unwrap();
        }
    }
    panic!("orders not shipped in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_of_a_bin_found_short_are_not_sold_again() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    // Two bins of 100; no other stock point has any, so nothing can be re-sourced.
    stock(c, wh1, a, 200).await;
    let first = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    eventually("the pick appears", || async {
        open(c, wh1, TaskKind::Pick).await.len() == 1
    })
    .await;
    // One unit where 2 were expected: the bin is empty, its other 99 units are unfound, and the
    // missing unit is picked from the other bin.
    let pick = open(c, wh1, TaskKind::Pick).await.remove(0);
    c.complete_task(wh1, pick.id, Some(Qty(1)))
        .await
        .unwrap()
        .unwrap();
    work_until_shipped(c, wh1, &[first.id]).await;
    // The stock point stops counting the units found missing: 200 − 2 shipped − 99 unfound.
    eventually("the unfound units are written off", || async {
        let p = c
            .inventory(wh1)
            .await
            .unwrap()
            .position(a)
            .cloned()
            .unwrap();
        p.on_hand == Qty(99)
    })
    .await;
    assert_eq!(c.bin_stock(wh1).await.unwrap().area(a).unfound, Qty(0));
    check_bins(c, wh1, &[a]).await;
    // Concurrent orders for more than is left: those accepted all ship, none comes up short.
    let mut placing = Vec::new();
    for _ in 0..60 {
        let c = c.clone();
        placing.push(tokio::spawn(async move {
            c.place_order(request(&[("A", 2)])).await.unwrap()
        }));
    }
    let mut orders = Vec::new();
    for placed in placing {
        match placed.await.unwrap() {
            Ok(order) => orders.push(order.id),
            Err(refusal) => assert!(is_insufficient(&Err::<(), _>(refusal))),
        }
    }
    assert_eq!(orders.len(), 49, "99 units left, 2 per order");
    work_until_shipped(c, wh1, &orders).await;
    for id in &orders {
        let order = c.order(*id).await.unwrap().unwrap();
        assert_eq!(order.fulfilments.len(), 1, "nothing re-sourced: {order:?}");
        assert_eq!(order.fulfilments[0].lines[0].picked, Qty(2));
    }
    check_bins(c, wh1, &[a]).await;
    c.shutdown().await;
}
