//! Resident memory of one million open orders held passivated: the state the order desk keeps
//! for an order whose actor has stopped (issue 4: under 2 GiB).
//!
//! `cargo run --release -p conductor-benches --bin orders-memory -- [orders]`
//!
//! Each order is a realistic two-line web order from one warehouse, built with the same engine
//! functions the orchestrator uses, and kept in the same map type as the desk.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use conductor_engine::checkout::order_from_reservation;
use conductor_engine::hash::FxHashMap;
use conductor_engine::ids::{FulfilmentId, OrderId, Qty, ReservationId, SkuId, StockPointId};
use conductor_engine::inventory::Source;
use conductor_engine::network::Channel;
use conductor_engine::order::Order;
use conductor_engine::reservation::{
    Reservation, ReservationStatus, ReservedAllocation, ReservedLine,
};
use conductor_engine::sourcing::Explanation;
use conductor_engine::time::Timestamp;

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    conductor_actors::process::prepare();
    let count: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let before = resident_bytes();
    let mut orders: FxHashMap<OrderId, Order> = FxHashMap::default();
    for i in 0..count {
        let line = |sku: u32, qty: u64| ReservedLine {
            sku: SkuId(sku),
            requested: Qty(qty),
            allocations: vec![ReservedAllocation {
                stock_point: StockPointId((i % 50) as u32),
                qty: Qty(qty),
                source: Source::OnHand,
            }]
            .into(),
        };
        let reservation = Reservation {
            id: ReservationId(i),
            channel: Channel::Web,
            customer_ref: Some(format!("customer-{}", i % 100_000)),
            lines: vec![
                line((i % 100_000) as u32, 1),
                line(((i * 7) % 100_000) as u32 + 1, 2),
            ]
            .into(),
            created_at: Timestamp(1_700_000_000_000 + i),
            expires_at: Timestamp(1_700_000_600_000 + i),
            status: ReservationStatus::Held,
            order: None,
            explanation: std::sync::Arc::new(Explanation {
                rule_set_version: 1,
                groups: Vec::new(),
            }),
            idempotency: None,
        };
        let created =
            order_from_reservation(&reservation, OrderId(i), FulfilmentId(i)).expect("valid order");
        let order =
            Order::from_created(&created, Timestamp(1_700_000_000_000 + i)).expect("created");
        orders.insert(order.id, order);
    }
    let after = resident_bytes();
    let per_order = (after - before) as f64 / count as f64;
    println!(
        "{count} passivated orders: {:.0} MiB resident ({per_order:.0} bytes per order); 1,000,000 would take {:.2} GiB",
        (after - before) as f64 / (1 << 20) as f64,
        per_order * 1e6 / (1u64 << 30) as f64
    );
    std::hint::black_box(&orders);
}
