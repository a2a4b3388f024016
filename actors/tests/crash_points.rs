//! A crash can stop the system after any record of the log: every prefix of a log that went
//! through every flow must recover to a state in which the stock points and the orders agree.
//! So a change and the record that explains it (units shipped and the order's "shipped", a
//! short pick and the order's shortage, a restock and the return's arrival) are one record.

mod common;

use std::collections::BTreeMap;

use common::*;
use conductor_actors::conductor::Rebuild;
use conductor_actors::warehouse::TaskKind;
use conductor_engine::ids::{Qty, ReturnId, StockPointId};
use conductor_engine::inventory::StockEvent;
use conductor_engine::order::OrderStatus;
use conductor_engine::returns::Action;
use conductor_engine::state::Event;
use conductor_engine::time::Timestamp;
use conductor_persistence::{Recover, Seq, SnapshotView, Wal, WalConfig, WalError};

/// The state a start-up would rebuild from a prefix of the log, and what the prefix says of
/// restocks: each (return, stock point) and how many restock records it has.
#[derive(Default)]
struct Prefix {
    rebuild: Rebuild,
    seqs: Vec<Seq>,
    restocks: BTreeMap<(ReturnId, StockPointId), u32>,
}

impl Recover<Event> for Prefix {
    fn restore(&mut self, snapshot: SnapshotView<'_>) -> Result<(), WalError> {
        self.rebuild.restore(snapshot)
    }

    fn replay(&mut self, seq: Seq, event: Event) {
        if seq <= self.rebuild.covered {
            return;
        }
        if self.seqs.last() != Some(&seq) {
            self.seqs.push(seq);
        }
        if let Event::Stock {
            stock_point,
            event: StockEvent::Restocked { ret, .. },
            ..
        } = &event
        {
            *self.restocks.entry((*ret, *stock_point)).or_default() += 1;
        }
        self.rebuild.replay(seq, event);
    }
}

/// Ships, short-picks and re-sources, cancels and takes back a return, then stops.
async fn every_flow(c: &conductor_actors::Conductor) {
    let [wh1, wh2, st1] = network(c).await;
    let a = sku(c, "A").await;
    let b = sku(c, "B").await;
    stock(c, wh1, a, 10).await;
    stock(c, wh1, b, 10).await;
    stock(c, wh2, a, 5).await;

    // Two lines, picked, packed and shipped: one shipment.
    let shipped = c
        .place_order(request(&[("A", 2), ("B", 1)]))
        .await
        .unwrap()
        .unwrap();
    eventually("pick tasks appear", || async {
        c.tasks(wh1, true).await.unwrap().len() == 2
    })
    .await;
    for task in c.tasks(wh1, true).await.unwrap() {
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    for kind in [TaskKind::Pack, TaskKind::Ship] {
        let task = c.tasks(wh1, true).await.unwrap().remove(0);
        assert_eq!(task.kind, kind);
        c.complete_task(wh1, task.id, None).await.unwrap().unwrap();
    }
    let order = c.order(shipped.id).await.unwrap().unwrap();
    assert_eq!(order.status(), OrderStatus::Shipped);

    // A short pick at WH1, re-sourced to WH2.
    let short = c.place_order(request(&[("A", 3)])).await.unwrap().unwrap();
    pick_first_task(c, wh1, Qty(1)).await.unwrap().unwrap();
    let order = c.order(short.id).await.unwrap().unwrap();
    assert!(order.fulfilments.iter().any(|f| f.stock_point == wh2));

    // Cancelled before it ships.
    let cancelled = c.place_order(request(&[("B", 2)])).await.unwrap().unwrap();
    c.cancel_order(cancelled.id).await.unwrap().unwrap();

    // Part of the shipment comes back to a store, which restocks it.
    let ret = return_one_resellable(c, shipped.id, (a, "A"), st1).await;
    c.receive_return(ret.id).await.unwrap().unwrap();
    assert_eq!(available(c, st1, a).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_prefix_of_the_log_recovers_with_stock_and_orders_agreeing() {
    let system = start_configured(|config| config.checkpoint_every = None).await;
    every_flow(&system.conductor).await;
    system.conductor.shutdown().await;

    let wal = Wal::<Event>::open(system.dir.path(), WalConfig::default()).unwrap();
    let mut whole = Prefix::default();
    wal.recover(&mut whole).unwrap();
    assert!(whole.seqs.len() > 20, "{} records", whole.seqs.len());
    assert!(whole.restocks.values().all(|n| *n == 1));
    for seq in whole.seqs {
        let mut prefix = Prefix::default();
        wal.replay_through(seq, &mut prefix).unwrap();
        for event in prefix.rebuild.state.reconcile(Timestamp(0)) {
            prefix.rebuild.state.apply(&event);
        }
        if let Err(problem) = prefix.rebuild.state.audit() {
            panic!(
                "a crash after record {seq} recovers to a state that fails its audit: {problem}"
            );
        }
        for record in prefix.rebuild.state.returns.values() {
            let restocked: Vec<StockPointId> = prefix
                .restocks
                .keys()
                .filter(|(ret, _)| *ret == record.id)
                .map(|(_, sp)| *sp)
                .collect();
            assert_eq!(
                restocked, record.restocked_at,
                "after record {seq}: {} restocked at {restocked:?}, its record says {:?}",
                record.id, record.restocked_at
            );
            if record.received() {
                for d in record
                    .dispositions
                    .iter()
                    .filter(|d| d.action == Action::Restock)
                {
                    assert!(record.restocked_at.contains(&d.stock_point), "{record:?}");
                }
            }
        }
    }
}
