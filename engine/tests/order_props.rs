//! Property test of the order state machine through its public API: random command sequences,
//! decided and applied, never break an invariant, and replaying the recorded events (also after
//! a JSON round trip) rebuilds an identical order.

use conductor_engine::ids::{FulfilmentId, OrderId, Qty, ReturnId, SkuId, StockPointId};
use conductor_engine::network::Channel;
use conductor_engine::order::{
    self, Allocation, Fulfilment, FulfilmentStatus, Order, OrderError, OrderEvent, OrderLine,
    OrderStatus, PickOutcome, Source,
};
use conductor_engine::time::Timestamp;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Command {
    /// The next natural step for a fulfilment, whatever its status: keeps random runs moving
    /// towards shipping instead of bouncing off refusals.
    Advance(usize),
    Release(usize),
    StartPick(usize),
    Pick {
        f: usize,
        line: usize,
        qty: u64,
    },
    Pack(usize),
    Ship(usize),
    Deliver(usize),
    FillBackorder {
        f: usize,
        line: usize,
    },
    Resource {
        shortage: usize,
        stock_point: u32,
        qty: u64,
        incoming: bool,
    },
    WriteOff(usize),
    Cancel,
    Return {
        sku: u32,
        qty: u64,
    },
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        20 => (0..6usize).prop_map(Command::Advance),
        3 => (0..6usize).prop_map(Command::Release),
        3 => (0..6usize).prop_map(Command::StartPick),
        6 => (0..6usize, 0..3usize, 0..8u64).prop_map(|(f, line, qty)| Command::Pick { f, line, qty }),
        3 => (0..6usize).prop_map(Command::Pack),
        3 => (0..6usize).prop_map(Command::Ship),
        2 => (0..6usize).prop_map(Command::Deliver),
        2 => (0..6usize, 0..3usize).prop_map(|(f, line)| Command::FillBackorder { f, line }),
        6 => (0..4usize, 0..4u32, 1..3u64, any::<bool>()).prop_map(
            |(shortage, stock_point, qty, incoming)| Command::Resource { shortage, stock_point, qty, incoming }
        ),
        1 => (0..4usize).prop_map(Command::WriteOff),
        // Rare: a cancellation ends most of the interesting paths.
        1 => Just(Command::Cancel),
        2 => (0..3u32, 1..4u64).prop_map(|(sku, qty)| Command::Return { sku, qty }),
    ]
}

/// Per SKU, up to three parts (qty, incoming); part `j` is allocated at stock point `j`.
fn allocation() -> impl Strategy<Value = Vec<Vec<(u64, bool)>>> {
    prop::collection::vec(
        prop::collection::vec((1..5u64, any::<bool>()), 1..=3),
        1..=3,
    )
}

fn created(parts: &[Vec<(u64, bool)>]) -> Order {
    let lines: Vec<OrderLine> = parts
        .iter()
        .enumerate()
        .map(|(sku, p)| OrderLine {
            sku: SkuId(sku as u32),
            qty: Qty(p.iter().map(|(q, _)| q).sum()),
        })
        .collect();
    let mut fulfilments = Vec::new();
    for point in 0..3 {
        let allocations: Vec<Allocation> = parts
            .iter()
            .enumerate()
            .filter_map(|(sku, p)| {
                p.get(point).map(|&(qty, incoming)| Allocation {
                    sku: SkuId(sku as u32),
                    qty: Qty(qty),
                    source: if incoming {
                        Source::Incoming
                    } else {
                        Source::OnHand
                    },
                })
            })
            .collect();
        if !allocations.is_empty() {
            let id = FulfilmentId(fulfilments.len() as u64 + 1);
            fulfilments.push(Fulfilment::new(
                id,
                StockPointId(point as u32),
                &allocations,
            ));
        }
    }
    let event = order::create(
        OrderId(1),
        None,
        Channel::Web,
        Some("c-1".into()),
        lines,
        fulfilments,
    )
    .expect("generated orders are valid");
    Order::from_created(&event, Timestamp(0)).unwrap()
}

/// Decides one command against `order`; `Err` is a refusal, which must leave it untouched.
fn decide(
    order: &Order,
    command: &Command,
    next_return: &mut u64,
) -> Result<OrderEvent, OrderError> {
    let nth = |i: usize| order.fulfilments[i % order.fulfilments.len()].clone();
    match *command {
        Command::Advance(i) => {
            let f = nth(i);
            match f.status {
                FulfilmentStatus::Backordered => {
                    let line = f
                        .lines
                        .iter()
                        .find(|l| l.source == Source::Incoming)
                        .unwrap();
                    order::fill_backorder(order, f.id, line.sku)
                }
                FulfilmentStatus::Allocated => order::release(order, f.id),
                FulfilmentStatus::Released => order::start_pick(order, f.id),
                FulfilmentStatus::Picking => {
                    let line = f.lines.iter().find(|l| !l.remaining().is_zero()).unwrap();
                    match order::pick(order, f.id, line.sku, line.remaining()) {
                        Ok(PickOutcome::Picked(event)) => Ok(event),
                        other => panic!("a full pick is not short: {other:?}"),
                    }
                }
                FulfilmentStatus::Picked => order::pack(order, f.id),
                FulfilmentStatus::Packed => order::ship(order, f.id, "dhl", "JD1"),
                FulfilmentStatus::Shipped => order::deliver(order, f.id),
                FulfilmentStatus::Delivered | FulfilmentStatus::Cancelled => {
                    order::deliver(order, f.id)
                }
            }
        }
        Command::Release(i) => order::release(order, nth(i).id),
        Command::StartPick(i) => order::start_pick(order, nth(i).id),
        Command::Pick { f, line, qty } => {
            let f = nth(f);
            let sku = f.lines[line % f.lines.len()].sku;
            order::pick(order, f.id, sku, Qty(qty)).map(|outcome| match outcome {
                PickOutcome::Picked(event) => event,
                PickOutcome::Short { event, request } => {
                    assert!(request.exclude.contains(&f.stock_point));
                    assert_eq!(request.from, f.id);
                    event
                }
            })
        }
        Command::Pack(i) => order::pack(order, nth(i).id),
        Command::Ship(i) => order::ship(order, nth(i).id, "ups", "1Z"),
        Command::Deliver(i) => order::deliver(order, nth(i).id),
        Command::FillBackorder { f, line } => {
            let f = nth(f);
            order::fill_backorder(order, f.id, f.lines[line % f.lines.len()].sku)
        }
        Command::Resource {
            shortage,
            stock_point,
            qty,
            incoming,
        } => {
            let Some(s) = order.shortages.get(shortage % order.shortages.len().max(1)) else {
                return Err(OrderError::NoShortage {
                    from: FulfilmentId(0),
                    sku: SkuId(0),
                });
            };
            let id = FulfilmentId(order.fulfilments.iter().map(|f| f.id.0).max().unwrap() + 1);
            let source = if incoming {
                Source::Incoming
            } else {
                Source::OnHand
            };
            let new = Fulfilment::new(
                id,
                StockPointId(stock_point),
                &[Allocation {
                    sku: s.sku,
                    qty: Qty(qty),
                    source,
                }],
            );
            order::resource(order, s.from, new)
        }
        Command::WriteOff(shortage) => {
            let Some(s) = order.shortages.get(shortage % order.shortages.len().max(1)) else {
                return Err(OrderError::NoShortage {
                    from: FulfilmentId(0),
                    sku: SkuId(0),
                });
            };
            order::write_off_shortage(order, s.from, s.sku)
        }
        Command::Cancel => order::cancel(order).map(|(event, releases)| {
            for r in &releases {
                assert!(!r.qty.is_zero());
            }
            event
        }),
        Command::Return { sku, qty } => {
            *next_return += 1;
            order::open_return(
                order,
                ReturnId(*next_return),
                vec![OrderLine {
                    sku: SkuId(sku),
                    qty: Qty(qty),
                }],
            )
        }
    }
}

/// The derived status agrees with the fulfilments it is derived from.
fn check_status(order: &Order) {
    use FulfilmentStatus as F;
    let live: Vec<F> = order
        .fulfilments
        .iter()
        .map(|f| f.status)
        .filter(|s| *s != F::Cancelled)
        .collect();
    let owed = order.shortages.iter().any(|s| !s.outstanding().is_zero());
    let shipped = live.iter().filter(|s| s.has_shipped()).count();
    match order.status() {
        OrderStatus::Cancelled => assert!(live.is_empty() && !owed),
        OrderStatus::Delivered => assert!(!owed && live.iter().all(|s| *s == F::Delivered)),
        OrderStatus::Shipped => assert!(!owed && shipped == live.len()),
        OrderStatus::PartiallyShipped => assert!(shipped > 0 && (shipped < live.len() || owed)),
        OrderStatus::Backordered => {
            assert!(live.contains(&F::Backordered));
            assert!(!live
                .iter()
                .any(|s| matches!(s, F::Released | F::Picking | F::Picked | F::Packed)));
        }
        _ => assert_eq!(shipped, 0),
    }
    if order.cancelled && order.status() != OrderStatus::Cancelled {
        assert!(
            shipped > 0,
            "a cancelled order shows progress only for what shipped"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_commands_never_break_an_invariant_and_replay_rebuilds_the_order(
        parts in allocation(),
        commands in prop::collection::vec(command(), 0..60),
    ) {
        let mut order = created(&parts);
        let mut next_return = 0;
        for (i, command) in commands.iter().enumerate() {
            let before = order.clone();
            let Ok(event) = decide(&order, command, &mut next_return) else {
                continue;
            };
            order::apply(&mut order, &event, Timestamp(i as u64 + 1));
            prop_assert_eq!(order.check_invariants(), Ok(()));
            check_status(&order);
            prop_assert_eq!(order.history.len(), before.history.len() + 1);
            // Units only move forward: picked and shipped never shrink.
            for f in &before.fulfilments {
                let now = order.fulfilment(f.id).unwrap();
                for (old, new) in f.lines.iter().zip(&now.lines) {
                    prop_assert!(new.picked >= old.picked && new.shipped >= old.shipped);
                }
            }
        }
        prop_assert_eq!(Order::replay(&order.history), Some(order.clone()));
        let json = serde_json::to_string(&order.history).unwrap();
        let history: Vec<order::OrderHistoryEntry> = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(Order::replay(&history), Some(order));
    }
}
