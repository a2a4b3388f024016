//! Stopping and crashing: acknowledged changes survive, nothing leaks.

mod common;

use std::time::Duration;

use common::*;
use conductor_actors::error::CommandError;
use conductor_actors::orders::OrderCounts;
use conductor_engine::ids::{Qty, ReservationId};
use conductor_engine::order::OrderStatus;
use conductor_engine::reservation::ReservationStatus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_holds_orders_and_stock_survive_a_restart() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, wh2, _] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    stock(&c, wh2, a, 10).await;
    let held = c.reserve(request(&[("A", 3)])).await.unwrap().unwrap();
    let order = c.place_order(request(&[("A", 12)])).await.unwrap().unwrap();
    let system = restart(system).await;
    let c = system.conductor.clone();
    let r = c
        .reservation(held.id)
        .await
        .unwrap()
        .expect("the reservation is still there");
    assert_eq!(r.status_at(c.now()), ReservationStatus::Held);
    let o = c
        .order(order.id)
        .await
        .unwrap()
        .expect("the order is still there");
    assert_eq!(o.lines, order.lines);
    let p1 = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    let p2 = c.inventory(wh2).await.unwrap().position(a).unwrap().clone();
    assert_eq!(p1.held + p2.held, Qty(3));
    assert_eq!(p1.allocated + p2.allocated, Qty(12));
    // Ids keep counting after a restart: a new reservation never reuses an old id.
    let again = c.reserve(request(&[("A", 1)])).await.unwrap().unwrap();
    assert!(again.id > held.id);
    // The restarted system confirms what it held before.
    let confirmed = c
        .confirm(held.id, Some("bob".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(confirmed.id > order.id);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_released_before_a_restart_get_their_tasks_back() {
    let system = start().await;
    let c = system.conductor.clone();
    let (order, wh1) = released_order(&c).await;
    let before = c.tasks(wh1, true).await.unwrap();
    let system = restart(system).await;
    let c = system.conductor.clone();
    let after = c.tasks(wh1, true).await.unwrap();
    assert_eq!(task_ids(&before), task_ids(&after));
    for task in after {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    assert_eq!(
        c.order(order.id).await.unwrap().unwrap().status(),
        OrderStatus::Picking
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_stock_point_restarts_from_its_durable_state_without_leaking_holds() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    let mut holds = Vec::new();
    for _ in 0..4 {
        holds.push(c.reserve(request(&[("A", 1)])).await.unwrap().unwrap());
    }
    let before = c.inventory(wh1).await.unwrap();
    c.crash_stock_point(wh1);
    eventually("the supervisor restarts it", || async {
        c.restarts() == 1 && c.inventory(wh1).await.is_ok()
    })
    .await;
    let after = c.inventory(wh1).await.unwrap();
    assert_eq!(
        after, before,
        "the restarted stock point has exactly the acknowledged state"
    );
    after.audit().unwrap();
    // It takes writes again, and the holds it had are still releasable exactly once.
    c.reserve(request(&[("A", 1)])).await.unwrap().unwrap();
    c.release(holds[0].id).await.unwrap().unwrap();
    assert!(c.release(holds[0].id).await.unwrap().is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(available(&c, wh1, a).await, 10 - 4);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_point_failing_under_load_keeps_every_acknowledged_hold() {
    // Checkpoints run all the while: the restart's replay may find a newer snapshot than its
    // barrier and must try again.
    let system =
        start_configured(|config| config.checkpoint_every = Some(Duration::from_millis(50))).await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 1_000_000).await;
    let buyers = Buyers::start(&c, 64, |_| &[("A", 1)]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.crash_stock_point(wh1);
    eventually("the supervisor restarts it", || async {
        c.restarts() == 1 && c.inventory(wh1).await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acknowledged = buyers.stop().await;
    assert!(acknowledged.len() > 100, "{} holds", acknowledged.len());
    let inventory = c.inventory(wh1).await.unwrap();
    inventory.audit().unwrap();
    for id in &acknowledged {
        assert!(
            inventory.find_hold(*id).is_some(),
            "the acknowledged hold of {id} is lost"
        );
    }
    // Nothing is held that was not acknowledged, or whose reservation is not held.
    for hold in inventory.holds() {
        let r = c.reservation(hold.reservation).await.unwrap();
        assert!(
            r.is_some_and(|r| r.status == ReservationStatus::Held),
            "a hold of {} is not a held reservation",
            hold.reservation
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_lost_with_a_failed_stock_point_leave_no_customer_over_a_limit() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 1_000).await;
    c.set_customer_limit(a, Some(Qty(1)))
        .await
        .unwrap()
        .unwrap();
    // Each customer holds one unit and lets it go, over and over, while the stock point fails:
    // a hold lost in its mailbox must not go on counting against its customer.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut customers = Vec::new();
    for n in 0..32 {
        let c = c.clone();
        let stop = stop.clone();
        customers.push(tokio::spawn(async move {
            let mut mine = request(&[("A", 1)]);
            mine.customer_ref = Some(format!("customer-{n}"));
            // Holds acknowledged whose release did not go through while the stock point failed.
            let mut unreleased = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Ok(r)) = c.reserve(mine.clone()).await {
                    if !matches!(c.release(r.id).await, Ok(Ok(()))) {
                        unreleased.push(r.id);
                    }
                }
            }
            (mine, unreleased)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.crash_stock_point(wh1);
    eventually("the supervisor restarts it", || async {
        c.restarts() == 1 && c.inventory(wh1).await.is_ok()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for customer in customers {
        let (mine, unreleased) = customer.await.unwrap();
        for id in unreleased {
            let _ = c.release(id).await;
        }
        // Nothing of this customer's is held now: the one unit is theirs to hold.
        let answer = c.reserve(mine.clone()).await.unwrap();
        assert!(answer.is_ok(), "{:?}: {answer:?}", mine.customer_ref);
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_point_that_keeps_failing_is_left_down_and_refuses_writes() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    for n in 1..=6u64 {
        c.crash_stock_point(wh1);
        eventually("the failure is counted", || async { c.restarts() == n }).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = c
        .adjust(
            wh1,
            a,
            conductor_engine::inventory::Adjustment::Delta(1),
            conductor_engine::inventory::AdjustReason::Adjustment,
        )
        .await;
    assert!(refused.is_err(), "{refused:?}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_warehouse_restarts_with_the_tasks_of_its_open_fulfilments() {
    let system = start().await;
    let c = system.conductor.clone();
    let (order, wh1) = released_order(&c).await;
    let before = c.tasks(wh1, true).await.unwrap();
    c.crash_warehouse(wh1);
    eventually("the supervisor restarts it", || async {
        c.restarts() == 1 && c.tasks(wh1, true).await.is_ok()
    })
    .await;
    let after = c.tasks(wh1, true).await.unwrap();
    assert_eq!(task_ids(&before), task_ids(&after));
    for task in after {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    assert_eq!(
        c.order(order.id).await.unwrap().unwrap().status(),
        OrderStatus::Picking
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_sourcing_cut_short_by_a_failed_orchestrator_resumes_at_the_next_start() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, wh2, _] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 3).await;
    stock(&c, wh2, a, 3).await;
    let order = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    eventually("the pick task appears", || async {
        !c.tasks(wh1, true).await.unwrap().is_empty()
    })
    .await;
    let up = || async { c.reservation(ReservationId(999)).await.is_ok() };
    for n in 1..=6u64 {
        c.crash_orchestrator().unwrap();
        eventually("the failure is counted", || async { c.restarts() == n }).await;
        if n < 6 {
            eventually("it is back", up).await;
        }
    }
    assert!(!up().await, "the orchestrator stays down");
    let reported = pick_first_task(&c, wh1, Qty(1)).await;
    assert!(reported.is_err(), "{reported:?}");
    let short = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(short.shortages[0].outstanding(), Qty(2));
    assert!(short.fulfilments.iter().all(|f| f.stock_point == wh1));

    let system = restart(system).await;
    let c = system.conductor.clone();
    eventually("the shortage is re-sourced to WH2", || async {
        let order = c.order(order.id).await.unwrap().unwrap();
        order.shortages[0].outstanding().is_zero()
            && order.fulfilments.iter().any(|f| f.stock_point == wh2)
    })
    .await;
    let p2 = c.inventory(wh2).await.unwrap().position(a).unwrap().clone();
    assert_eq!(p2.allocated, Qty(2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_that_keeps_failing_is_left_down() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, wh2, _] = network(&c).await;
    for n in 1..=6u64 {
        c.crash_warehouse(wh1);
        eventually("the failure is counted", || async { c.restarts() == n }).await;
        if n < 6 {
            eventually("it is back", || async { c.tasks(wh1, true).await.is_ok() }).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(c.tasks(wh1, true).await.is_err(), "wh1 stays down");
    assert!(c.tasks(wh2, true).await.is_ok(), "the others go on");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_orchestrator_restarts_from_the_log_with_every_acknowledged_change() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, wh2, _] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    stock(&c, wh2, a, 10).await;
    let single = c.reserve(request(&[("A", 2)])).await.unwrap().unwrap();
    // 12 units need both warehouses: the multi-stock-point path.
    let multi = c.reserve(request(&[("A", 12)])).await.unwrap().unwrap();
    let order = c.place_order(request(&[("A", 1)])).await.unwrap().unwrap();
    let restarts = c.restarts();
    c.crash_orchestrator().unwrap();
    eventually("the failure is counted", || async {
        c.restarts() == restarts + 1
    })
    .await;
    eventually("the orchestrator is back", || async { c.takes_writes() }).await;
    for held in [&single, &multi] {
        let r = c.reservation(held.id).await.unwrap().expect("still there");
        assert_eq!(r.status, ReservationStatus::Held);
        assert_eq!(r.lines, held.lines);
    }
    assert_eq!(c.order(order.id).await.unwrap().unwrap().lines, order.lines);
    // Nothing was given back or held twice: 2 + 12 + 1 of 20 are taken.
    assert_eq!(available(&c, wh1, a).await + available(&c, wh2, a).await, 5);
    // It goes on where the failed one stopped: a confirmation, a release, a new hold with an
    // id never handed out before.
    let confirmed = c.confirm(multi.id, None).await.unwrap().unwrap();
    assert_eq!(confirmed.lines.len(), multi.lines.len());
    c.release(single.id).await.unwrap().unwrap();
    let next = c.reserve(request(&[("A", 1)])).await.unwrap().unwrap();
    assert!(next.id > multi.id && next.id > single.id, "{next:?}");
    assert_eq!(available(&c, wh1, a).await + available(&c, wh2, a).await, 6);
    // And all of it survives a restart of the whole system.
    let system = restart(system).await;
    let c = system.conductor.clone();
    assert_eq!(
        c.reservation(next.id).await.unwrap().unwrap().status,
        ReservationStatus::Held
    );
    assert_eq!(
        c.reservation(single.id).await.unwrap().unwrap().status,
        ReservationStatus::Released
    );
    assert_eq!(available(&c, wh1, a).await + available(&c, wh2, a).await, 6);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_failing_under_load_loses_no_acknowledged_hold_and_leaks_none() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, wh2, _] = network(&c).await;
    let a = sku(&c, "A").await;
    let b = sku(&c, "B").await;
    stock(&c, wh1, a, 100_000).await;
    stock(&c, wh2, b, 100_000).await;
    // Half single-stock-point, half across both warehouses.
    let buyers = Buyers::start(&c, 64, |n| {
        if n % 2 == 0 {
            &[("A", 1)]
        } else {
            &[("A", 1), ("B", 1)]
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.crash_orchestrator().unwrap();
    eventually("the orchestrator is back", || async { c.takes_writes() }).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acknowledged = buyers.stop().await;
    assert!(acknowledged.len() > 100, "{} holds", acknowledged.len());
    for id in &acknowledged {
        let r = c.reservation(*id).await.unwrap();
        assert!(
            r.is_some_and(|r| r.status == ReservationStatus::Held),
            "acknowledged {id} is lost"
        );
    }
    // Every hold at a stock point belongs to a held reservation: the failed actor's partial
    // holds were given back.
    for sp in [wh1, wh2] {
        let inventory = c.inventory(sp).await.unwrap();
        for hold in inventory.holds() {
            let r = c.reservation(hold.reservation).await.unwrap();
            assert!(
                r.is_some_and(|r| r.status == ReservationStatus::Held),
                "a hold of {} leaked at {sp:?}",
                hold.reservation
            );
        }
        inventory.audit().unwrap();
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_failing_too_often_stays_down_and_refuses_writes_at_once() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    c.reserve(request(&[("A", 1)])).await.unwrap().unwrap();
    for failures in 1..=5 {
        c.crash_orchestrator().unwrap();
        eventually("the failure is counted", || async {
            c.restarts() == failures
        })
        .await;
        eventually("it is back", || async { c.takes_writes() }).await;
    }
    c.crash_orchestrator().unwrap();
    eventually("the sixth failure is counted", || async {
        c.restarts() == 6
    })
    .await;
    eventually("writes are refused", || async { !c.takes_writes() }).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!c.takes_writes(), "it was not restarted a sixth time");
    // Refused before anything is queued for it: a second call is refused the same way, not
    // left waiting behind the first in the intake until the call times out.
    for _ in 0..2 {
        let refused = c.reserve(request(&[("A", 1)])).await;
        assert!(
            matches!(refused, Err(CommandError::Unavailable(_))),
            "{refused:?}"
        );
    }
    // Reads that do not need it go on.
    assert_eq!(available(&c, wh1, a).await, 9);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_order_desk_restarts_from_the_log_and_orders_go_on() {
    let system = start().await;
    let c = system.conductor.clone();
    let (released, wh1) = released_order(&c).await;
    let a = c.board().sku_id("A").expect("A is defined");
    let allocated = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    let before = c.tasks(wh1, true).await.unwrap();
    let restarts = c.restarts();
    c.crash_desk().unwrap();
    eventually("the failure is counted", || async {
        c.restarts() == restarts + 1
    })
    .await;
    eventually("the order desk is back", || async { c.takes_writes() }).await;
    // The open fulfilments sent again to the warehouse add no task twice.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let again = c.tasks(wh1, true).await.unwrap();
    assert_eq!(
        tasks_of(&before, released.id),
        tasks_of(&again, released.id)
    );
    // Both orders are there as the log has them; the warehouse's tasks still report to them.
    assert_eq!(
        c.order(released.id).await.unwrap().unwrap().status(),
        OrderStatus::Released
    );
    for task in c.tasks(wh1, true).await.unwrap() {
        if task.order == released.id {
            c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
        }
    }
    assert_eq!(
        c.order(released.id).await.unwrap().unwrap().status(),
        OrderStatus::Picking
    );
    // Commands work, stock comes back, and new orders reach the new desk.
    let cancelled = c.cancel_order(allocated.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(available(&c, wh1, a).await, 8);
    let placed = c.place_order(request(&[("A", 1)])).await.unwrap().unwrap();
    assert!(c.order(placed.id).await.unwrap().is_some());
    let system = restart(system).await;
    let c = system.conductor.clone();
    assert_eq!(
        c.order(allocated.id).await.unwrap().unwrap().status(),
        OrderStatus::Cancelled
    );
    assert!(c.order(placed.id).await.unwrap().is_some());
    assert_eq!(available(&c, wh1, a).await, 7);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_desk_failing_too_often_stays_down_and_refuses_order_commands() {
    let system = start().await;
    let c = system.conductor.clone();
    let (order, _) = released_order(&c).await;
    for failures in 1..=5 {
        c.crash_desk().unwrap();
        eventually("the failure is counted", || async {
            c.restarts() == failures
        })
        .await;
        eventually("it is back", || async { c.takes_writes() }).await;
    }
    c.crash_desk().unwrap();
    eventually("the sixth failure is counted", || async {
        c.restarts() == 6
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!c.takes_writes(), "it was not restarted a sixth time");
    let refused = c.cancel_order(order.id).await;
    assert!(
        matches!(refused, Err(CommandError::Unavailable(_))),
        "{refused:?}"
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_order_is_passivated_and_comes_back_on_its_next_message() {
    let system = start_configured(|config| config.order_idle = Duration::from_millis(100)).await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    let passivated = OrderCounts {
        live: 0,
        passivated: 1,
        down: 0,
    };
    eventually("the idle order is passivated", || async {
        c.order_counts().await.ok() == Some(passivated)
    })
    .await;
    let resting = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(resting.status(), OrderStatus::Released);
    // The next command starts it again from what was kept, and the desk still routes.
    let cancelled = c.cancel_order(order.id).await.unwrap().unwrap();
    assert_eq!(cancelled.status(), OrderStatus::Cancelled);
    assert_eq!(available(&c, wh1, a).await, 10);
    eventually("it is passivated again", || async {
        c.order_counts().await.ok() == Some(passivated)
    })
    .await;
    assert_eq!(
        c.order(order.id).await.unwrap().unwrap().status(),
        OrderStatus::Cancelled
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_order_actor_restarts_from_its_durable_state() {
    let system = start_configured(|config| config.order_idle = Duration::from_secs(1)).await;
    let c = system.conductor.clone();
    let (order, wh1) = released_order(&c).await;
    let before = c.order(order.id).await.unwrap().unwrap();
    c.crash_order(order.id).unwrap();
    eventually("the desk restarts it", || async { c.restarts() == 1 }).await;
    let after = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(
        after, before,
        "the restarted order has exactly the durable state"
    );
    // The restarted actor goes idle and is passivated like any other.
    eventually("the restarted order is passivated", || async {
        c.order_counts()
            .await
            .is_ok_and(|n| (n.live, n.passivated) == (0, 1))
    })
    .await;
    // The warehouse's confirmations reach the restarted actor.
    for task in c.tasks(wh1, true).await.unwrap() {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    assert_eq!(
        c.order(order.id).await.unwrap().unwrap().status(),
        OrderStatus::Picking
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_actor_that_keeps_failing_stays_down_and_refuses_commands() {
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    let order = c.place_order(request(&[("A", 2)])).await.unwrap().unwrap();
    for n in 1..=6u64 {
        c.crash_order(order.id).unwrap();
        eventually("the failure is counted", || async { c.restarts() == n }).await;
    }
    let counts = c.order_counts().await.unwrap();
    assert_eq!((counts.live, counts.down), (0, 1), "{counts:?}");
    let refused = c.cancel_order(order.id).await;
    assert!(
        matches!(refused, Err(CommandError::Unavailable(_))),
        "{refused:?}"
    );
    // Still readable, and its stock still held.
    assert!(c.order(order.id).await.unwrap().is_some());
    assert_eq!(available(&c, wh1, a).await, 8);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_reservation_with_the_same_key_has_one_effect_also_after_a_restart() {
    use conductor_actors::error::Refusal;
    use conductor_engine::idempotency::IdempotencyKey;
    let system = start().await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 10).await;
    let key = IdempotencyKey::new("key-1", "checkout-42").unwrap();
    let mut keyed = request(&[("A", 2)]);
    keyed.idempotency = Some((key.clone(), 7));
    let first = c.reserve(keyed.clone()).await.unwrap().unwrap();
    let again = c.reserve(keyed.clone()).await.unwrap().unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(available(&c, wh1, a).await, 8);
    // The caller's answer was lost in a crash; the retry after the restart still finds it.
    let system = restart(system).await;
    let c = system.conductor.clone();
    let after = c.reserve(keyed.clone()).await.unwrap().unwrap();
    assert_eq!(after.id, first.id);
    assert_eq!(available(&c, wh1, a).await, 8);
    let mut other = keyed.clone();
    other.idempotency = Some((key, 8));
    assert!(matches!(
        c.reserve(other).await.unwrap(),
        Err(Refusal::Invalid { .. })
    ));
    // Retrying a place-order whose first attempt was confirmed answers the same order.
    let mut order_request = request(&[("A", 1)]);
    order_request.idempotency = Some((IdempotencyKey::new("key-1", "order-1").unwrap(), 1));
    let order = c.place_order(order_request.clone()).await.unwrap().unwrap();
    let retried = c.place_order(order_request).await.unwrap().unwrap();
    assert_eq!(order.id, retried.id);
    assert_eq!(available(&c, wh1, a).await, 7);
    c.shutdown().await;
}

/// The ids of `order`'s tasks, in list order.
fn tasks_of(
    tasks: &[conductor_actors::warehouse::Task],
    order: conductor_engine::ids::OrderId,
) -> Vec<String> {
    tasks
        .iter()
        .filter(|t| t.order == order)
        .map(|t| t.id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_pack_or_ship_report_is_answered_again_and_recorded_once() {
    let system = start().await;
    let c = system.conductor.clone();
    let (order, wh1) = released_order(&c).await;
    let a = c.board().sku_id("A").expect("A is defined");
    let fulfilment = order.fulfilments[0].id;
    // Each report is repeated, the way a warehouse repeats one whose first answer was lost
    // with an order actor that failed after recording it.
    for task in c.tasks(wh1, true).await.unwrap() {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    let pack = c.tasks(wh1, true).await.unwrap().remove(0);
    c.complete_task(wh1, pack.id, None).await.unwrap().unwrap();
    let packed = conductor_actors::orders::Step::Packed { fulfilment };
    c.report_step(order.id, packed).await.unwrap().unwrap();
    let packed = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(packed.status(), OrderStatus::Packed);
    let ship = c.tasks(wh1, true).await.unwrap().remove(0);
    c.complete_task(wh1, ship.id, None).await.unwrap().unwrap();
    let shipped = conductor_actors::orders::Step::Shipped {
        fulfilment,
        carrier: "acme".into(),
        tracking: "T-2".into(),
    };
    c.report_step(order.id, shipped).await.unwrap().unwrap();
    let shipped = c.order(order.id).await.unwrap().unwrap();
    assert_eq!(shipped.status(), OrderStatus::Shipped);
    // Shipped once: 10 on hand, 2 shipped; the first report's tracking stands.
    let p = c.inventory(wh1).await.unwrap().position(a).unwrap().clone();
    assert_eq!((p.on_hand, p.allocated), (Qty(8), Qty(0)));
    assert_ne!(
        shipped.fulfilments[0]
            .shipment
            .as_ref()
            .map(|s| s.tracking.as_str()),
        Some("T-2")
    );
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_system_folds_its_log_into_snapshots_and_starts_from_the_last() {
    let system =
        start_configured(|config| config.checkpoint_every = Some(Duration::from_millis(100))).await;
    let c = system.conductor.clone();
    let [wh1, ..] = network(&c).await;
    let a = sku(&c, "A").await;
    stock(&c, wh1, a, 1_000).await;
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(c.reserve(request(&[("A", 1)])).await.unwrap().unwrap().id);
    }
    let logged = c.log_stats().durable_seq;
    eventually("a checkpoint covers the holds", || async {
        c.snapshot_covered() >= logged
    })
    .await;
    let taken = c.checkpoints();
    assert!(taken >= 1);
    // With nothing new logged, the next ones are skipped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c.checkpoints(), taken);
    c.shutdown().await;
    let (c, recovered) = conductor_actors::Conductor::start(config(system.dir.path()))
        .await
        .expect("restart");
    // The snapshot holds the 200 holds: the start replays (almost) nothing after it.
    assert!(
        recovered.records < 20,
        "{} records replayed",
        recovered.records
    );
    for id in held {
        assert_eq!(
            c.reservation(id).await.unwrap().unwrap().status,
            ReservationStatus::Held
        );
    }
    assert_eq!(available(&c, wh1, a).await, 800);
    c.shutdown().await;
}
