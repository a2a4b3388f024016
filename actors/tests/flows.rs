//! Every flow of the live system, end to end through the actors, on a real log.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use conductor_actors::error::Refusal;
use conductor_actors::warehouse::TaskKind;
use conductor_engine::ids::Qty;
use conductor_engine::order::OrderStatus;
use conductor_engine::reservation::ReservationStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_sale_sells_exactly_the_stock_to_concurrent_buyers() {
    let system = start().await;
    let c = Arc::new(system.conductor.clone());
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "HOT").await;
    stock(&c, wh1, a, 100).await;
    let mut buyers = Vec::new();
    for _ in 0..1_000 {
        let c = c.clone();
        buyers.push(tokio::spawn(async move {
            c.reserve(request(&[("HOT", 1)])).await
        }));
    }
    let mut held = 0;
    let mut refused = 0;
    for buyer in buyers {
        match buyer.await.unwrap().unwrap() {
            Ok(_) => held += 1,
            Err(Refusal::Insufficient(_)) => refused += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!((held, refused), (100, 900));
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!((p.on_hand, p.held), (Qty(100), Qty(100)));
    c.shutdown().await;
}

/// The log's acknowledgement can reach the caller before the stock point actor has published
/// the change (CI once saw a reservation refused right after its stock was set): every answer
/// waits for both, so what a caller was told is done is on the board the storefront and the
/// planner read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_caller_is_told_is_done_is_on_the_board_when_it_hears_back() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    let on_board = |field: fn(&conductor_actors::board::Figures) -> Qty| {
        c.board().with_figures(a, |figures| {
            figures.iter().find(|f| f.stock_point == wh1).map(field)
        })
    };
    for n in 1..=200u64 {
        stock(&c, wh1, a, n).await;
        assert_eq!(on_board(|f| f.on_hand), Some(Qty(n)), "after setting {n}");
        c.reserve(request(&[("A", 1)]))
            .await
            .expect("no error")
            .expect("held");
        assert_eq!(on_board(|f| f.held), Some(Qty(n)), "after hold {n}");
    }
    c.shutdown().await;
}

/// The hot path's record: a reservation that one stock point serves is logged as one event
/// (its hold and its record together), and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_served_by_one_stock_point_is_one_event_in_the_log() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 5).await;
    let before = c.log_stats().events_written;
    let r = c.reserve(request(&[("A", 2)])).await.unwrap().unwrap();
    assert_eq!(c.log_stats().events_written - before, 1);
    let system = restart(system).await;
    let c = &system.conductor;
    let back = c.reservation(r.id).await.unwrap().expect("durable");
    assert_eq!(back, *r);
    assert_eq!(available(c, wh1, a).await, 3);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_once_and_their_units_come_back() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 5).await;
    let mut short = request(&[("A", 2)]);
    short.ttl_seconds = 1;
    let r = c.reserve(short).await.unwrap().unwrap();
    assert_eq!(available(c, wh1, a).await, 3);
    eventually("the hold expires", || async {
        available(c, wh1, a).await == 5
    })
    .await;
    let status = c
        .reservation(r.id)
        .await
        .unwrap()
        .unwrap()
        .status_at(c.now());
    assert_eq!(status, ReservationStatus::Expired);
    assert!(matches!(
        c.confirm(r.id, None).await.unwrap(),
        Err(Refusal::Conflict(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_order_is_picked_packed_and_shipped_through_the_task_list() {
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
    assert_eq!(order.status(), OrderStatus::Allocated);
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!((p.held, p.allocated), (Qty(0), Qty(2)));
    eventually("pick tasks appear", || async {
        c.tasks(wh1, true).await.unwrap().len() == 2
    })
    .await;
    let picks = c.tasks(wh1, true).await.unwrap();
    assert!(picks.iter().all(|t| t.kind == TaskKind::Pick));
    assert!(
        picks[0].path_position <= picks[1].path_position,
        "picks follow the path"
    );
    for task in picks {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    let pack = c.tasks(wh1, true).await.unwrap().remove(0);
    assert_eq!(pack.kind, TaskKind::Pack);
    c.complete_task(wh1, pack.id.clone(), None)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        c.complete_task(wh1, pack.id, None).await.unwrap(),
        Err(Refusal::Conflict(_))
    ));
    let ship = c.tasks(wh1, true).await.unwrap().remove(0);
    assert_eq!(ship.kind, TaskKind::Ship);
    c.complete_task(wh1, ship.id, None).await.unwrap().unwrap();
    let shipped = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(shipped.status(), OrderStatus::Shipped);
    assert!(shipped.fulfilments[0].shipment.is_some());
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!((p.on_hand, p.allocated), (Qty(8), Qty(0)));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_pick_is_re_sourced_to_another_stock_point() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, wh2, _] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 3).await;
    stock(c, wh2, a, 3).await;
    let order = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    assert_eq!(order.fulfilments[0].stock_point, wh1);
    pick_first_task(c, wh1, Qty(1)).await.unwrap().unwrap();
    let order = c.order(order.id).await.unwrap().unwrap();
    let resourced: Vec<_> = order
        .fulfilments
        .iter()
        .filter(|f| f.stock_point == wh2)
        .collect();
    assert_eq!(resourced.len(), 1, "{order:?}");
    assert_eq!(resourced[0].lines[0].qty, Qty(2));
    let p1 = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!(
        (p1.on_hand, p1.allocated),
        (Qty(1), Qty(1)),
        "the missing units left on_hand"
    );
    assert_eq!(
        c.inventory(wh2)
            .await
            .unwrap()
            .position(a)
            .unwrap()
            .allocated,
        Qty(2)
    );
    eventually("WH2 gets a pick task", || async {
        !c.tasks(wh2, true).await.unwrap().is_empty()
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_before_shipping_gives_the_stock_back() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 4).await;
    let order = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    assert_eq!(available(c, wh1, a).await, 1);
    let cancelled = c.cancel_order(order.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(available(c, wh1, a).await, 4);
    eventually("no open tasks", || async {
        c.tasks(wh1, true).await.unwrap().is_empty()
    })
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_online_pick_up_in_store_is_served_by_the_store() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, _, st1] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 10).await;
    stock(c, st1, a, 1).await;
    let mut pickup = request(&[("A", 1)]);
    pickup.pickup_at = Some(st1);
    let r = c.reserve(pickup.clone()).await.unwrap().unwrap();
    assert_eq!(r.lines[0].allocations[0].stock_point, st1);
    assert!(
        is_insufficient(&c.reserve(pickup).await.unwrap()),
        "the store has no more"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ship_from_store_when_the_warehouses_are_empty() {
    let system = start().await;
    let c = &system.conductor;
    let [_, _, st1] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, st1, a, 2).await;
    let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    assert_eq!(order.fulfilments[0].stock_point, st1);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backorder_against_incoming_stock_ships_after_the_receipt() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    let eta = c.now().plus_seconds(3_600);
    let incoming = c
        .expect_incoming(wh1, a, Qty(5), eta)
        .await
        .unwrap()
        .unwrap();
    let mut backorder = request(&[("A", 2)]);
    assert!(is_insufficient(
        &c.reserve(backorder.clone()).await.unwrap()
    ));
    backorder.allow_backorder = true;
    let order = c.place_order(backorder).await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Backordered);
    c.receive(wh1, a, Qty(5), Some(incoming.id))
        .await
        .unwrap()
        .unwrap();
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!(
        (p.on_hand, p.allocated, p.allocated_incoming),
        (Qty(5), Qty(2), Qty(0))
    );
    assert_eq!(p.available(), Qty(3));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_return_to_a_store_is_restocked_there_and_refunded() {
    let system = start_with_workers().await;
    let c = &system.conductor;
    let [wh1, _, st1] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 5).await;
    let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    eventually("simulated workers ship the order", || async {
        c.order(order.id).await.unwrap().unwrap().status() == OrderStatus::Shipped
    })
    .await;
    let ret = return_one_resellable(c, order.id, (a, "A"), st1).await;
    assert_eq!(ret.dispositions[0].stock_point, st1);
    assert_eq!(format!("{:?}", ret.refund.status), "Pending");
    let received = c.receive_return(ret.id).await.unwrap().unwrap();
    assert_eq!(format!("{:?}", received.refund.status), "Issued");
    assert_eq!(available(c, st1, a).await, 1);
    assert!(matches!(
        c.receive_return(ret.id).await.unwrap(),
        Err(Refusal::Conflict(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_line_all_or_nothing_orders_leave_no_stray_holds() {
    let system = start().await;
    let c = Arc::new(system.conductor.clone());
    let [wh1, wh2, _] = network(&c).await;
    let a = sku(&c, "A").await;
    let b = sku(&c, "B").await;
    stock(&c, wh1, a, 50).await;
    stock(&c, wh2, b, 30).await;
    let mut buyers = Vec::new();
    for _ in 0..200 {
        let c = c.clone();
        buyers.push(tokio::spawn(async move {
            c.reserve(request(&[("A", 1), ("B", 1)])).await
        }));
    }
    let mut held = 0;
    for buyer in buyers {
        if buyer.await.unwrap().unwrap().is_ok() {
            held += 1;
        }
    }
    assert_eq!(held, 30, "B runs out first");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pa = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    let pb = c.inventory(wh2).await.unwrap().position(b).unwrap().clone();
    assert_eq!(
        (pa.held, pb.held),
        (Qty(30), Qty(30)),
        "every A hold has its B hold"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_customer_limits_cap_a_flash_sale() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, ..] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 100).await;
    c.set_customer_limit(a, Some(Qty(2)))
        .await
        .unwrap()
        .unwrap();
    let mut mine = request(&[("A", 2)]);
    mine.customer_ref = Some("alice".into());
    c.reserve(mine.clone()).await.unwrap().unwrap();
    mine.lines[0].1 = Qty(1);
    assert!(matches!(
        c.reserve(mine).await.unwrap(),
        Err(Refusal::LimitExceeded(_))
    ));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checkouts_of_one_customer_stay_within_the_limit() {
    let system = start().await;
    let c = Arc::new(system.conductor.clone());
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 1_000).await;
    c.set_customer_limit(a, Some(Qty(3)))
        .await
        .unwrap()
        .unwrap();
    // Concurrent calls reach the orchestrator together, through the intake, as one batch or a
    // few: the limit must count the reservations of the same batch that are not durable yet.
    let mut checkouts = Vec::new();
    for _ in 0..200 {
        let c = c.clone();
        checkouts.push(tokio::spawn(async move {
            let mut mine = request(&[("A", 1)]);
            mine.customer_ref = Some("alice".into());
            c.reserve(mine).await
        }));
    }
    let mut held = Vec::new();
    for checkout in checkouts {
        match checkout.await.unwrap().unwrap() {
            Ok(reservation) => held.push(reservation.id),
            Err(Refusal::LimitExceeded(_)) => {}
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    assert_eq!(held.len(), 3);
    // Each answered reservation is in the book at once: its caller can confirm it.
    for id in held {
        c.confirm(id, None).await.unwrap().unwrap();
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_reservations_sells_exactly_the_stock_and_each_gets_its_answer() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, wh2, _] = network(c).await;
    let a = sku(c, "A").await;
    let b = sku(c, "B").await;
    stock(c, wh1, a, 100).await;
    stock(c, wh1, b, 1).await;
    stock(c, wh2, b, 1).await;
    let mut requests: Vec<_> = (0..300).map(|_| request(&[("A", 1)])).collect();
    // One that needs two stock points goes the multi-stock-point way inside the same batch.
    requests.push(request(&[("B", 2)]));
    let answers = c.reserve_batch(requests).await.unwrap();
    assert_eq!(answers.len(), 301);
    let held: Vec<_> = answers[..300]
        .iter()
        .filter_map(|a| a.as_ref().ok().and_then(|r| r.as_ref().ok()))
        .collect();
    assert_eq!(held.len(), 100);
    assert!(
        answers[..300]
            .iter()
            .filter(|a| matches!(a, Ok(Err(Refusal::Insufficient(_)))))
            .count()
            == 200
    );
    assert!(matches!(&answers[300], Ok(Ok(r)) if r.stock_points().len() == 2));
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!(p.held, Qty(100));
    for r in held {
        assert!(
            c.reservation(r.id).await.unwrap().is_some(),
            "{} is recorded",
            r.id
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_after_a_release_or_a_refusal_already_sees_the_units_back() {
    let system = start().await;
    let c = &system.conductor;
    let [wh1, wh2, _] = network(c).await;
    let a = sku(c, "A").await;
    stock(c, wh1, a, 2).await;
    stock(c, wh2, a, 2).await;
    for _ in 0..20 {
        // Split over both warehouses, then released: both are whole again at once.
        let r = c.reserve(request(&[("A", 3)])).await.unwrap().unwrap();
        assert_eq!(r.stock_points().len(), 2);
        c.release(r.id).await.unwrap().unwrap();
        assert_eq!(
            (available(c, wh1, a).await, available(c, wh2, a).await),
            (2, 2)
        );
        // A one-step order whose confirmation is refused gives its hold back before answering.
        let o = c.place_order(request(&[("A", 4)])).await.unwrap().unwrap();
        c.cancel_order(o.id).await.unwrap().unwrap();
        assert_eq!(
            (available(c, wh1, a).await, available(c, wh2, a).await),
            (2, 2)
        );
    }
    c.shutdown().await;
}
