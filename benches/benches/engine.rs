//! The engine's hot paths on a national network: 50 stock points × 100,000 SKUs.
//!
//! - `plan/*`: [`sourcing::plan`] for a one-line order (priority, closest) and a five-line order
//!   (fewest-shipments), through two availability views: the `[StockPointInventory]` slice the
//!   engine implements (one hash lookup per stock point per SKU) and a per-SKU index shaped like
//!   the live board (SKU → the stock points that hold it).
//! - `apply/*`: [`StockPointInventory::apply`] per event (hold placed, hold released, on_hand
//!   set) and [`StockPointInventory::hold`] (decide and apply).
//! - `checkout_prepare/*`: [`checkout::prepare`] end to end for a one-line reservation.
//!
//! Each network comes in two stockings: `sparse` (every SKU at 10 random stock points, 1M
//! positions, the realistic case) and `dense` (every SKU everywhere, 5M positions, the worst
//! case for a view that asks every stock point). The world is built once, deterministically from
//! a fixed seed, and shared by every bench; only the call under test is timed.
//!
//! Run with `cargo bench -p conductor-benches --bench engine`; results are in
//! `benches/ENGINE_BENCH.md`.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use conductor_engine::checkout::{self, CheckoutContext, Prepared, ReserveRequest};
use conductor_engine::ids::{Code, Interner, Qty, ReservationId, SkuId, StockPointId};
use conductor_engine::inventory::{
    AdjustReason, Hold, HoldOutcome, HoldRequest, ReleaseReason, Source, StockEvent, StockLine,
    StockPointInventory,
};
use conductor_engine::network::{
    Capability, Channel, Location, Network, StockPoint, StockPointKind,
};
use conductor_engine::reservation::ReservationBook;
use conductor_engine::sourcing::{
    self, AvailabilityView, CompiledRuleSet, Constraints, PlanLine, PlanOptions, PlanOutcome,
    PlanRequest, Rule, RuleMatch, RuleSet, StockAt, Strategy,
};
use conductor_engine::time::Timestamp;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};

const SEED: u64 = 0x00c0_ffee_2024;
const STOCK_POINTS: u32 = 50;
const WAREHOUSES: u32 = 8;
const SKUS: u32 = 100_000;
/// Stock points that carry each SKU in the sparse stocking.
const SPARSE_STOCK_POINTS_PER_SKU: usize = 10;
const ON_HAND_MAX: u64 = 200;
/// Distinct requests or events cycled through by a bench, so that the caches see a spread of
/// SKUs as they would live, and so that at most this many holds are outstanding at once.
const POOL_LEN: usize = 4_096;
/// Requests planned untimed before each bench, to check that the bench measures success paths.
const SANITY_CHECKS: usize = 64;
const NOW: Timestamp = Timestamp(1_700_000_000_000);

/// SplitMix64 (Steele, Lea and Flood): tiny, fast and good enough to spread SKUs and places.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `0..n` for n far below 2^32.
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn between(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + unit * (high - low)
    }

    /// A point in metropolitan France's bounding box.
    fn location(&mut self) -> Location {
        Location {
            lat: self.between(43.0, 51.0),
            lon: self.between(-1.5, 7.5),
        }
    }
}

/// The per-SKU index the live board keeps: for each SKU, what each stock point that carries it
/// has, in stock point order. One vector lookup replaces a hash lookup per stock point.
struct SkuIndex {
    /// Indexed by `SkuId`; there is no incoming stock in this world, so the horizon is moot.
    by_sku: Vec<Vec<StockAt>>,
}

impl SkuIndex {
    fn build(inventories: &[StockPointInventory]) -> SkuIndex {
        let mut by_sku: Vec<Vec<StockAt>> = vec![Vec::new(); SKUS as usize];
        for inventory in inventories {
            for (sku, position) in inventory.positions() {
                by_sku[sku.index()].push(StockAt {
                    stock_point: inventory.id,
                    available: position.available(),
                    incoming: position.incoming_available(Timestamp(u64::MAX)),
                });
            }
        }
        SkuIndex { by_sku }
    }
}

impl AvailabilityView for SkuIndex {
    fn stock_of(&self, sku: SkuId, _incoming_horizon: Timestamp, out: &mut Vec<StockAt>) {
        if let Some(stock) = self.by_sku.get(sku.index()) {
            out.extend_from_slice(stock);
        }
    }
}

/// One stocking of the network, with both views of it.
struct Stocking {
    name: &'static str,
    inventories: Vec<StockPointInventory>,
    index: SkuIndex,
}

struct World {
    network: Network,
    /// `SKU-000000` to `SKU-099999`, indexed by `SkuId`.
    codes: Vec<String>,
    skus: Interner,
    sparse: Stocking,
    dense: Stocking,
}

fn network(rng: &mut SplitMix64) -> Network {
    let mut network = Network::default();
    for i in 0..STOCK_POINTS {
        let warehouse = i < WAREHOUSES;
        let code = if warehouse {
            format!("WH{i:02}")
        } else {
            format!("ST{i:02}")
        };
        network.upsert(StockPoint {
            id: StockPointId(i),
            code: Code::parse(&code).expect("valid code"),
            kind: if warehouse {
                StockPointKind::Warehouse
            } else {
                StockPointKind::Store
            },
            name: code.to_lowercase(),
            location: rng.location(),
            // Warehouses first, then stores, so that priority prefers the big sites.
            priority: i + 1,
            channels: vec![Channel::Web, Channel::Store],
            capabilities: if warehouse {
                vec![Capability::Ship, Capability::Returns]
            } else {
                vec![Capability::Ship, Capability::Pickup, Capability::Returns]
            },
            cost_per_shipment: 300 + rng.below(700) as u32,
            tags: vec![],
        });
    }
    network
}

fn stock(inventories: &mut [StockPointInventory], sp: usize, sku: u32, rng: &mut SplitMix64) {
    inventories[sp].apply(&StockEvent::OnHandSet {
        sku: SkuId(sku),
        on_hand: Qty(1 + rng.below(ON_HAND_MAX)),
        reason: AdjustReason::Adjustment,
    });
}

fn stocking(name: &'static str, per_sku: usize, rng: &mut SplitMix64) -> Stocking {
    let started = Instant::now();
    let mut inventories: Vec<StockPointInventory> = (0..STOCK_POINTS)
        .map(|i| StockPointInventory::new(StockPointId(i)))
        .collect();
    let mut places: Vec<usize> = (0..STOCK_POINTS as usize).collect();
    for sku in 0..SKUS {
        if per_sku >= places.len() {
            for sp in 0..places.len() {
                stock(&mut inventories, sp, sku, rng);
            }
        } else {
            // A partial Fisher-Yates shuffle picks `per_sku` distinct stock points.
            for k in 0..per_sku {
                let j = k + rng.below((places.len() - k) as u64) as usize;
                places.swap(k, j);
                stock(&mut inventories, places[k], sku, rng);
            }
        }
    }
    let index = SkuIndex::build(&inventories);
    let positions: usize = inventories.iter().map(|i| i.positions().count()).sum();
    eprintln!(
        "built {name}: {positions} positions in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Stocking {
        name,
        inventories,
        index,
    }
}

fn world() -> World {
    let mut rng = SplitMix64(SEED);
    let network = network(&mut rng);
    let codes: Vec<String> = (0..SKUS).map(|i| format!("SKU-{i:06}")).collect();
    let mut skus = Interner::default();
    for (i, code) in codes.iter().enumerate() {
        skus.define(i as u32, Code::parse(code).expect("valid code"));
    }
    let sparse = stocking("sparse", SPARSE_STOCK_POINTS_PER_SKU, &mut rng);
    let dense = stocking("dense", STOCK_POINTS as usize, &mut rng);
    World {
        network,
        codes,
        skus,
        sparse,
        dense,
    }
}

fn rules(network: &Network, strategy: Strategy) -> CompiledRuleSet {
    RuleSet {
        version: 1,
        rules: vec![Rule {
            name: "bench".into(),
            matches: RuleMatch::default(),
            strategy,
            constraints: Constraints::default(),
        }],
    }
    .compile(network)
    .expect("valid rules")
}

/// An order as the planner sees it. Lines borrow their codes from the world, which lives for
/// the whole process, so building a request costs nothing inside the timed loop.
struct Order {
    lines: Vec<PlanLine<'static>>,
    ship_to: Location,
}

/// A pool of orders: `lines` random SKUs of one unit each, with a random ship-to point.
fn orders(world: &'static World, rng: &mut SplitMix64, lines: usize) -> Vec<Order> {
    (0..POOL_LEN)
        .map(|_| {
            let lines = (0..lines)
                .map(|_| {
                    let sku = SkuId(rng.below(u64::from(SKUS)) as u32);
                    PlanLine {
                        sku,
                        code: world.codes[sku.index()].as_str(),
                        qty: Qty(1),
                    }
                })
                .collect();
            Order {
                lines,
                ship_to: rng.location(),
            }
        })
        .collect()
}

fn plan_one(
    world: &World,
    rules: &CompiledRuleSet,
    view: &(impl AvailabilityView + ?Sized),
    order: &Order,
) -> PlanOutcome {
    let request = PlanRequest {
        channel: Channel::Web,
        lines: &order.lines,
        ship_to: Some(order.ship_to),
        pickup_at: None,
        tags: &[],
        exclude: &[],
        options: PlanOptions {
            allow_split: true,
            allow_partial: false,
            allow_backorder: false,
        },
        now: NOW,
    };
    sourcing::plan(rules, &world.network, view, &request).expect("plannable")
}

fn bench_plan_view(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    world: &World,
    rules: &CompiledRuleSet,
    view: &(impl AvailabilityView + ?Sized),
    orders: &[Order],
) {
    let planned = orders[..SANITY_CHECKS]
        .iter()
        .filter(|order| matches!(plan_one(world, rules, view, order), PlanOutcome::Planned(_)))
        .count();
    assert_eq!(planned, SANITY_CHECKS, "every SKU is stocked somewhere");
    let mut next = 0usize;
    group.bench_function(id, |b| {
        b.iter(|| {
            next = (next + 1) % orders.len();
            black_box(plan_one(world, rules, view, &orders[next]))
        })
    });
}

fn bench_plan(c: &mut Criterion, world: &'static World) {
    let cases = [
        ("one_line_priority", Strategy::Priority, 1),
        ("one_line_closest", Strategy::Closest, 1),
        ("five_lines_fewest_shipments", Strategy::FewestShipments, 5),
    ];
    let mut group = c.benchmark_group("plan");
    group.throughput(Throughput::Elements(1));
    for (name, strategy, lines) in cases {
        let rules = rules(&world.network, strategy);
        let orders = orders(world, &mut SplitMix64(SEED ^ lines as u64), lines);
        for stocking in [&world.sparse, &world.dense] {
            let id = |view: &str| BenchmarkId::new(name, format!("{}/{view}", stocking.name));
            let inventories = stocking.inventories.as_slice();
            bench_plan_view(
                &mut group,
                id("inventories"),
                world,
                &rules,
                inventories,
                &orders,
            );
            bench_plan_view(
                &mut group,
                id("sku_index"),
                world,
                &rules,
                &stocking.index,
                &orders,
            );
        }
    }
    group.finish();
}

/// `POOL_LEN` one-line holds of one unit on distinct SKUs that `inventory` has in stock.
fn hold_requests(inventory: &StockPointInventory, rng: &mut SplitMix64) -> Vec<HoldRequest> {
    let mut used = vec![false; SKUS as usize];
    let mut out = Vec::with_capacity(POOL_LEN);
    while out.len() < POOL_LEN {
        let sku = SkuId(rng.below(u64::from(SKUS)) as u32);
        if used[sku.index()] || inventory.available(sku).is_zero() {
            continue;
        }
        used[sku.index()] = true;
        out.push(HoldRequest {
            reservation: ReservationId(out.len() as u64 + 1),
            lines: smallvec::smallvec![StockLine {
                sku,
                qty: Qty(1),
                source: Source::OnHand,
            }],
            expires_at: NOW.plus_seconds(600 + rng.below(600)),
        });
    }
    out
}

/// Times `timed` over pool entries, running `untimed` on each entry after every pass so that
/// `state` returns to where it started. Returns the time spent in `timed` only.
fn iter_pooled<S, T>(
    iters: u64,
    state: &mut S,
    pool: &[T],
    timed: impl Fn(&mut S, &T),
    untimed: impl Fn(&mut S, &T),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters as usize;
    while left > 0 {
        let batch = &pool[..left.min(pool.len())];
        let started = Instant::now();
        for item in batch {
            timed(state, item);
        }
        total += started.elapsed();
        for item in batch {
            untimed(state, item);
        }
        left -= batch.len();
    }
    total
}

fn bench_apply(c: &mut Criterion, world: &World) {
    // A copy of the busiest kind of inventory (100,000 positions), so the planner's world stays
    // untouched.
    let mut inventory = world.dense.inventories[0].clone();
    let mut rng = SplitMix64(SEED ^ 0xa991);
    let requests = hold_requests(&inventory, &mut rng);
    let placed: Vec<StockEvent> = requests
        .iter()
        .map(|r| {
            StockEvent::HoldPlaced(Hold {
                reservation: r.reservation,
                lines: r.lines.clone(),
                expires_at: r.expires_at,
            })
        })
        .collect();
    let released: Vec<StockEvent> = requests
        .iter()
        .map(|r| StockEvent::HoldReleased {
            reservation: r.reservation,
            reason: ReleaseReason::Released,
        })
        .collect();
    let release = |inventory: &mut StockPointInventory, reservation: ReservationId| {
        inventory.apply(&StockEvent::HoldReleased {
            reservation,
            reason: ReleaseReason::Released,
        })
    };

    let mut group = c.benchmark_group("apply");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hold_placed", |b| {
        b.iter_custom(|iters| {
            iter_pooled(
                iters,
                &mut inventory,
                &placed,
                |inventory, event| inventory.apply(black_box(event)),
                |inventory, event| match event {
                    StockEvent::HoldPlaced(hold) => release(inventory, hold.reservation),
                    _ => unreachable!("only holds are placed"),
                },
            )
        })
    });
    group.bench_function("hold_released", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters as usize;
            while left > 0 {
                let n = left.min(placed.len());
                for event in &placed[..n] {
                    inventory.apply(event);
                }
                let started = Instant::now();
                for event in &released[..n] {
                    inventory.apply(black_box(event));
                }
                total += started.elapsed();
                left -= n;
            }
            total
        })
    });
    group.bench_function("hold_placed_then_released", |b| {
        let mut next = 0usize;
        b.iter(|| {
            next = (next + 1) % placed.len();
            inventory.apply(black_box(&placed[next]));
            inventory.apply(black_box(&released[next]));
        })
    });
    let on_hand_set: Vec<StockEvent> = (0..POOL_LEN)
        .map(|_| StockEvent::OnHandSet {
            sku: SkuId(rng.below(u64::from(SKUS)) as u32),
            on_hand: Qty(1 + rng.below(ON_HAND_MAX)),
            reason: AdjustReason::CycleCount,
        })
        .collect();
    group.bench_function("on_hand_set", |b| {
        let mut next = 0usize;
        b.iter(|| {
            next = (next + 1) % on_hand_set.len();
            inventory.apply(black_box(&on_hand_set[next]));
        })
    });
    group.bench_function("hold_decide_and_apply", |b| {
        b.iter_custom(|iters| {
            iter_pooled(
                iters,
                &mut inventory,
                &requests,
                |inventory, request| {
                    let outcome = inventory.hold(black_box(request));
                    debug_assert!(matches!(outcome, HoldOutcome::Placed(_)));
                    black_box(outcome);
                },
                |inventory, request| release(inventory, request.reservation),
            )
        })
    });
    group.finish();
    inventory
        .audit()
        .expect("every hold was released and the positions add up");
}

/// What checkout reads, with the view under test.
struct Checkout<'a, V: AvailabilityView + ?Sized> {
    world: &'a World,
    rules: &'a CompiledRuleSet,
    book: &'a ReservationBook,
    view: &'a V,
}

fn bench_prepare_view<V: AvailabilityView + ?Sized>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: BenchmarkId,
    checkout: &Checkout<'_, V>,
    requests: &[ReserveRequest],
) {
    let ctx = CheckoutContext {
        skus: &checkout.world.skus,
        network: &checkout.world.network,
        rules: checkout.rules,
        view: checkout.view,
        book: checkout.book,
    };
    for (i, request) in requests[..SANITY_CHECKS].iter().enumerate() {
        let prepared = checkout::prepare(&ctx, request, ReservationId(i as u64 + 1), NOW);
        assert!(
            matches!(prepared, Ok(Prepared::Reserve { .. })),
            "every SKU is stocked"
        );
    }
    let mut next = 0usize;
    group.bench_function(id, |b| {
        b.iter(|| {
            next = (next + 1) % requests.len();
            let id = ReservationId(next as u64 + 1);
            black_box(checkout::prepare(&ctx, black_box(&requests[next]), id, NOW))
        })
    });
}

fn bench_checkout(c: &mut Criterion, world: &World) {
    let rules = rules(&world.network, Strategy::Closest);
    let book = ReservationBook::default();
    let mut rng = SplitMix64(SEED ^ 0xc4ec);
    let requests: Vec<ReserveRequest> = (0..POOL_LEN)
        .map(|_| {
            let sku = rng.below(u64::from(SKUS)) as usize;
            ReserveRequest {
                channel: Channel::Web,
                lines: vec![(Code::parse(&world.codes[sku]).expect("valid code"), Qty(1))],
                ship_to: Some(rng.location()),
                pickup_at: None,
                ttl_seconds: 600,
                allow_split: true,
                allow_partial: false,
                allow_backorder: false,
                customer_ref: Some(format!("customer-{}", rng.below(1_000))),
                tags: vec![],
                idempotency: None,
            }
        })
        .collect();
    let mut group = c.benchmark_group("checkout_prepare");
    group.throughput(Throughput::Elements(1));
    for stocking in [&world.sparse, &world.dense] {
        let id =
            |view: &str| BenchmarkId::new("one_line_closest", format!("{}/{view}", stocking.name));
        let inventories = Checkout {
            world,
            rules: &rules,
            book: &book,
            view: stocking.inventories.as_slice(),
        };
        bench_prepare_view(&mut group, id("inventories"), &inventories, &requests);
        let index = Checkout {
            world,
            rules: &rules,
            book: &book,
            view: &stocking.index,
        };
        bench_prepare_view(&mut group, id("sku_index"), &index, &requests);
    }
    group.finish();
}

/// Built once; `'static` so that the pooled plan lines can borrow their codes from it.
static WORLD: OnceLock<World> = OnceLock::new();

fn main() {
    let world = WORLD.get_or_init(world);
    let mut c = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_plan(&mut c, world);
    bench_apply(&mut c, world);
    bench_checkout(&mut c, world);
    c.final_summary();
}
