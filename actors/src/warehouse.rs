//! The warehouse actor, the WMS executor of one stock point: it turns released fulfilments into
//! pick tours, pack and ship tasks, takes completions (from staff over the API or from simulated
//! workers), puts received units away, and confirms each step back to the order. The decisions
//! are the engine's ([`conductor_engine::fulfilment`]); this actor keeps the live state and
//! drives them.
//!
//! # Where units are
//! Every unit the stock point counts in on_hand is in exactly one place here: a storage bin of
//! the layout, or one of four areas per SKU: the receiving **dock** (received, waiting for a
//! putaway task), **overflow** (received when no bin had room; picked from last), **outbound**
//! (picked into a carton, not shipped yet) and **unfound** (on the books, but a picker found the
//! bin short; written off from on_hand, reason `ShortPick`, as far as no short line still has
//! to report them and the stock point has not committed them). So `bins + dock + overflow + outbound + unfound = on_hand` per SKU
//! ([`StockView::check`]).
//!
//! It stays equal because the actor reconciles each SKU against the stock point's on_hand (read
//! from the availability board) whenever on_hand may have changed: after a receipt, a return
//! restock or an adjustment (the conductor tells it which), and after each of its own steps that
//! changes on_hand (a shipment, a short pick). Reconciliation is by level, not by delta, so a
//! missed or reordered notice is repaired by the next one:
//! * on_hand above the sum: receipts and restocks go to the dock and become putaway tasks (by
//!   velocity class, [`choose_putaway`]); an adjustment up is slotted straight into bins by the
//!   same rule.
//! * on_hand below the sum (beyond the decrements still in flight from this actor's own steps):
//!   the missing units are taken from unfound first (a short pick written off), then overflow,
//!   then free bin stock in removal order ([`choose_bins`]), then the dock.
//!
//! # Picking
//! At release each line's units are reserved in bins by removal (FIFO/FEFO, closest, emptiest)
//! and the fulfilment is cartonized ([`cartonize`]) so each pick goes into its final carton. The
//! picks join pick tours: waveless, a new fulfilment is inserted into an open tour when that is
//! cheaper than a tour of its own ([`insert_order`]); with timed waves the pool is batched
//! (seed and savings, the better kept: [`batch_orders`]) off the runtime's threads. Every tour is
//! routed optimally (Ratliff & Rosenthal, [`optimal_route`]) and its pick tasks carry their route
//! position. A pick that comes up short empties its bin (the rest becomes unfound), is retried
//! from other bins, and only what no bin has is reported short to the order, which re-sources it.
//!
//! Tasks are derived state: after a restart they are rebuilt from the orders, and bins are
//! slotted afresh from on_hand.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conductor_engine::fulfilment::batching::{
    batch_orders, insert_order, BatchOrder, Batching, Insertion, OpenTour, PickLine, ToteCapacity,
    LINES_PER_ORDER_MAX, ORDERS_PER_BATCHING_MAX,
};
use conductor_engine::fulfilment::cartonization::{
    cartonize, BoxType, Dims, PackItem, UNITS_PER_PACKING_MAX,
};
use conductor_engine::fulfilment::forecast::{
    forecast, reorder_point, DemandClass, ForecastMethod, ForecastOptions,
};
use conductor_engine::fulfilment::layout::{
    check_on_hand, BinStock, Layout, Location, Lot, Side, SlottingError,
};
use conductor_engine::fulfilment::putaway::{choose_putaway, VelocityClass};
use conductor_engine::fulfilment::removal::{choose_bins, RemovalPolicy, RemovalRequest};
use conductor_engine::fulfilment::routing::optimal_route;
use conductor_engine::hash::{FxHashMap, FxHashSet};
use conductor_engine::ids::{FulfilmentId, OrderId, Qty, SkuId, StockPointId};
use conductor_engine::inventory::{AdjustReason, Adjustment};
use conductor_engine::network::StockPointKind;
use conductor_engine::order::{Fulfilment, FulfilmentStatus};
use conductor_engine::time::Timestamp;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tracing::warn;

use crate::board::Board;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{invalid, Answer, Refusal};
use crate::mailbox::Ticket;
use crate::orders::{DeskMsg, OrderMsg, Step};
use crate::stock_point::{reply, reply_or_unavailable, Reply, StockCommand, StockPointMsg};

/// Completed tasks remembered so that completing one again is a clear 409.
pub const COMPLETED_TASKS_KEPT_MAX: usize = 100_000;
/// Fulfilments one timed wave batches; the rest wait for the next wave. Savings keeps an n × n
/// table of routed merges, so this bounds the wave's work (it runs off the runtime's threads).
pub const WAVE_ORDERS_MAX: usize = 100;
/// Open tours a waveless insertion tries (the most recent ones). Each try routes the tour twice,
/// so this keeps a release well under a millisecond.
pub const OPEN_TOURS_CONSIDERED_MAX: usize = 8;
/// Days of demand history kept per SKU for the forecast.
pub const DEMAND_DAYS_MAX: u64 = 365;
/// Attempts at reporting a line to its order before the actor gives up and logs it.
pub const REPORT_ATTEMPTS_MAX: u32 = 10;
/// Wait between report attempts.
const REPORT_RETRY_MS: u64 = 1_000;
const DAY_MS: u64 = 86_400_000;
/// A task's sequence is `block << POSITION_BITS | position`: a tour is one block, so its picks
/// stay together in route order and re-routing an open tour does not move it in the queue.
const POSITION_BITS: u32 = 16;
/// Bins of one layout are far fewer; this bounds a tour's positions to its block.
const POSITIONS_PER_BLOCK_MAX: usize = 1 << POSITION_BITS;
/// Unit weight up to which a one-carton shipment goes by post.
const POST_WEIGHT_G_MAX: u64 = 2_000;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Pick,
    Pack,
    Ship,
    /// Moves received (or returned) units from the dock into a storage bin.
    Putaway,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Completing,
    Completed,
}

/// Where a pick takes from or a putaway puts to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    Bin(Location),
    Overflow,
}

#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// `F-<fulfilment>.<kind>[.<line>[.<n>]]`, or `P-<n>.putaway`: derived, so a rebuilt task
    /// keeps its id.
    pub id: String,
    pub kind: TaskKind,
    /// For putaways of received stock, which belong to no order: `O-0` and `F-0`.
    pub order: OrderId,
    pub fulfilment: FulfilmentId,
    pub stock_point: StockPointId,
    /// Position in this warehouse's work queue; lower first.
    pub sequence: u64,
    pub sku: Option<SkuId>,
    pub qty: Qty,
    /// Where to pick from or put to, `A<aisle>-S<slot>-<L|R>`, or `OVERFLOW`.
    pub bin: Option<String>,
    /// Position of the bin on the pick path (the same as `route_position`).
    pub path_position: Option<u32>,
    pub status: TaskStatus,
    /// Units actually picked, once completed.
    pub done_qty: Option<Qty>,
    /// The pick tour this pick belongs to.
    pub tour: Option<u64>,
    /// 0-based position in the tour's optimal route.
    pub route_position: Option<u32>,
    /// Walk from the previous stop (the depot for the first), plus the walk back to the depot
    /// for the last pick of a tour, in centimetres.
    pub walk_cm: Option<u64>,
    /// Picks: the carton the units go into; packs: every carton of the shipment, `+`-joined.
    pub carton: Option<String>,
    /// Ship tasks: the carrier chosen by rule and the dock it loads at.
    pub carrier: Option<String>,
    pub dock: Option<String>,
    /// Ship tasks: the carrier's tracking number, once labelled.
    pub tracking: Option<String>,
    #[serde(skip)]
    place: Option<Place>,
    /// Index into the fulfilment's planned lines (picks only).
    #[serde(skip)]
    line: usize,
}

/// How fast simulated workers complete tasks.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    pub pick_ms: u64,
    pub pack_ms: u64,
    pub ship_ms: u64,
    pub putaway_ms: u64,
    /// Walking pace, milliseconds per metre (800 is 1.25 m/s); 0 walks instantly.
    pub walk_ms_per_m: u64,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            pick_ms: 200,
            pack_ms: 300,
            ship_ms: 300,
            putaway_ms: 300,
            walk_ms_per_m: 800,
        }
    }
}

/// When released fulfilments reach the floor.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ReleaseMode {
    /// Every `interval_ms` (or sooner, when [`WAVE_ORDERS_MAX`] wait) the pool is batched.
    Waves { interval_ms: u64 },
    /// Each fulfilment goes to the floor at once, joining a tour that is still open (not
    /// started, younger than `cut_off_ms`) when that is cheaper than a tour of its own.
    Waveless { cut_off_ms: u64 },
}

/// What a shipment looks like to a carrier.
#[derive(Clone, Debug)]
pub struct ShipmentRequest {
    pub order: OrderId,
    pub fulfilment: FulfilmentId,
    pub carrier: String,
    pub cartons: usize,
    pub weight_g: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub carrier: String,
    pub tracking: String,
}

/// A carrier adapter: labels a shipment and returns its tracking number.
pub trait Carrier: Send + Sync + 'static {
    fn label(&self, shipment: &ShipmentRequest) -> Label;
}

/// A carrier that needs no network: the tracking number is derived from the order and the
/// fulfilment (with a mod-10 check digit), so it is stable across retries.
pub struct SimulatedCarrier;

impl Carrier for SimulatedCarrier {
    fn label(&self, shipment: &ShipmentRequest) -> Label {
        let prefix = if shipment.carrier == CARRIER_POST {
            "SP"
        } else {
            "SC"
        };
        let digits = format!(
            "{:08}{:08}",
            shipment.order.0 % 100_000_000,
            shipment.fulfilment.0 % 100_000_000
        );
        let check = digits.bytes().map(|b| u32::from(b - b'0')).sum::<u32>() % 10;
        Label {
            carrier: shipment.carrier.clone(),
            tracking: format!("{prefix}{digits}{check}"),
        }
    }
}

const CARRIER_POST: &str = "sim-post";
const CARRIER_COURIER: &str = "sim-courier";

/// How the warehouses work; one configuration for all of them.
#[derive(Clone)]
pub struct WmsConfig {
    pub release: ReleaseMode,
    pub tote: ToteCapacity,
    /// The box set cartonization chooses from.
    pub boxes: Vec<BoxType>,
    pub removal: RemovalPolicy,
    /// Replenishment: supplier lead time, service factor (1.65 ≈ 95% cycle service) and the
    /// smoothing constant of the forecast.
    pub lead_time_days: f64,
    pub service_factor: f64,
    pub alpha: f64,
    pub carrier: Arc<dyn Carrier>,
}

impl Default for WmsConfig {
    fn default() -> WmsConfig {
        let size = |name: &str, l, w, h, kg: u32| BoxType {
            name: name.into(),
            inner: Dims::new(l, w, h),
            max_weight_g: kg * 1_000,
        };
        WmsConfig {
            release: ReleaseMode::Waveless { cut_off_ms: 60_000 },
            tote: ToteCapacity {
                volume_cm3_max: Some(30_000),
                lines_max: Some(12),
            },
            boxes: vec![
                size("XS", 250, 150, 100, 5),
                size("S", 300, 200, 150, 10),
                size("M", 400, 300, 200, 15),
                size("L", 500, 400, 300, 20),
                size("XL", 600, 400, 400, 25),
            ],
            removal: RemovalPolicy::Fifo,
            lead_time_days: 3.0,
            service_factor: 1.65,
            alpha: 0.1,
            carrier: Arc::new(SimulatedCarrier),
        }
    }
}

/// Why on_hand changed, which decides where surplus units go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum OnHandCause {
    /// A receipt or a return restock: units arrive at the dock and are put away by task.
    Receipt,
    /// A stock adjustment: the count is corrected in the bins directly.
    Adjustment,
}

pub enum WarehouseMsg {
    Release {
        order: OrderId,
        fulfilment: Box<Fulfilment>,
        ticket: Ticket,
    },
    Cancelled {
        order: OrderId,
        ticket: Ticket,
    },
    /// Every fulfilment open here, by the orders' durable state: the work is made to match.
    Open {
        open: Vec<(OrderId, Fulfilment)>,
        ticket: Ticket,
    },
    Tasks {
        open_only: bool,
        reply: RpcReplyPort<Vec<Task>>,
    },
    Complete {
        task: String,
        qty: Option<Qty>,
        answer: Reply<Answer<Task>>,
        ticket: Ticket,
    },
    /// The order's answer to a pack or ship step.
    StepDone {
        task: String,
        result: Answer<()>,
        answer: Reply<Answer<Task>>,
    },
    /// The order's answer to a line's pick report; `waiter` is the completion that finished the
    /// line, answered when the order has taken the report.
    LineReported {
        fulfilment: FulfilmentId,
        line: usize,
        result: Answer<()>,
        waiter: Option<(String, Reply<Answer<Task>>)>,
    },
    RetryReport {
        fulfilment: FulfilmentId,
        line: usize,
    },
    /// The stock point's answer to writing off `qty` unfound units of `sku`.
    WrittenOff {
        sku: SkuId,
        qty: u64,
        result: Answer<()>,
    },
    /// on_hand of `sku` may have changed at the stock point.
    OnHandChanged {
        sku: SkuId,
        cause: OnHandCause,
        ticket: Ticket,
    },
    /// Time to batch the wave pool.
    WaveDue,
    /// A wave's batching, computed off the actor.
    WaveBatched {
        members: Vec<FulfilmentId>,
        batching: Option<Batching>,
    },
    Stock(RpcReplyPort<StockView>),
    Replenishment(RpcReplyPort<Vec<Replenishment>>),
    /// A simulated worker is free for the next task.
    WorkerFree,
    /// Test hook: the actor panics, to exercise supervision.
    Crash,
}

/// Units of one SKU outside the storage bins.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct AreaStock {
    pub sku: SkuId,
    pub dock: Qty,
    pub overflow: Qty,
    pub outbound: Qty,
    pub unfound: Qty,
}

impl AreaStock {
    pub fn total(&self) -> Qty {
        self.dock + self.overflow + self.outbound + self.unfound
    }
}

/// Where every unit of a warehouse is.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StockView {
    pub bins: Vec<BinStock>,
    pub areas: Vec<AreaStock>,
}

impl StockView {
    pub fn area(&self, sku: SkuId) -> AreaStock {
        self.areas
            .iter()
            .find(|a| a.sku == sku)
            .copied()
            .unwrap_or(AreaStock {
                sku,
                ..AreaStock::default()
            })
    }

    /// The pairing check with the stock point: bins plus areas hold exactly `on_hand`.
    pub fn check(&self, sku: SkuId, on_hand: Qty) -> Result<(), SlottingError> {
        let staged = self.area(sku).total();
        let in_bins = on_hand
            .checked_sub(staged)
            .ok_or(SlottingError::OnHandMismatch {
                sku,
                in_bins: staged,
                on_hand,
            })?;
        check_on_hand(&self.bins, sku, in_bins)
    }
}

/// A suggested reorder point for one SKU.
#[derive(Clone, Debug, Serialize)]
pub struct Replenishment {
    pub sku: SkuId,
    pub on_hand: Qty,
    pub class: DemandClass,
    pub method: ForecastMethod,
    /// Expected units per day.
    pub per_day: f64,
    pub reorder_point: u64,
    /// on_hand is at or below the reorder point.
    pub reorder: bool,
    pub history_days: usize,
}

pub struct WarehouseActor;

pub struct WarehouseArgs {
    pub stock_point: StockPointId,
    /// Decides the layout: stores get the small back room + shop floor one.
    pub kind: StockPointKind,
    /// The order desk of the moment: the supervisor puts a restarted one here.
    pub desk: Arc<Mutex<Option<ActorRef<DeskMsg>>>>,
    /// Where unfound units are written off from on_hand.
    pub stock_points: Arc<Directory<StockPointMsg>>,
    /// Fulfilments already released here, to rebuild tasks after a restart.
    pub released: Vec<(OrderId, Fulfilment)>,
    /// on_hand per SKU at start, slotted into bins.
    pub on_hand: Vec<(SkuId, Qty)>,
    /// Where the actor reads on_hand when it reconciles.
    pub board: Arc<Board>,
    pub clock: Arc<dyn Clock>,
    pub config: WmsConfig,
    pub workers: Option<WorkerConfig>,
}

/// One storage bin's content; a bin holds one SKU.
#[derive(Clone, Copy, Debug)]
struct Slot {
    sku: SkuId,
    qty: u64,
    /// Units promised to open pick tasks.
    reserved: u64,
    /// Units on their way in by open putaway tasks; counted against capacity.
    incoming: u64,
    /// One lot per bin: a receipt merged into a bin keeps the older date (FIFO errs towards
    /// picking the bin early, never late).
    lot: Lot,
}

#[derive(Clone, Copy, Debug, Default)]
struct Areas {
    dock: u64,
    overflow: u64,
    overflow_reserved: u64,
    outbound: u64,
    unfound: u64,
    /// on_hand decrements this actor has asked for (shipments, short picks) whose answer has
    /// not come back: the stock point may or may not have applied them yet.
    in_flight: u64,
    /// Unfound units this actor has asked the stock point to write off, answer pending (also
    /// counted in `in_flight`); one write-off at a time per SKU.
    writing_off: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Report {
    Pending,
    InFlight,
    Done,
}

#[derive(Clone, Debug)]
struct LineWork {
    /// Index of the line in the fulfilment (task ids name it).
    index: usize,
    sku: SkuId,
    want: u64,
    picked: u64,
    /// Units no bin had; reported short. `picked + short + reserved by open picks = want`.
    short: u64,
    open: usize,
    picks_made: u32,
    report: Report,
    attempts: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stage {
    Picking,
    Packing,
    Shipping,
}

#[derive(Clone, Debug)]
struct PlannedCarton {
    label: String,
    skus: Vec<SkuId>,
}

#[derive(Clone, Debug)]
struct Work {
    order: OrderId,
    lines: Vec<LineWork>,
    cartons: Vec<PlannedCarton>,
    tour: Option<u64>,
    stage: Stage,
}

#[derive(Clone, Debug)]
struct Tour {
    block: u64,
    fulfilments: Vec<FulfilmentId>,
    picks: Vec<String>,
    closes_at: Timestamp,
    /// A picker has set off with it; nothing joins any more.
    started: bool,
}

pub struct WarehouseState {
    stock_point: StockPointId,
    desk: Arc<Mutex<Option<ActorRef<DeskMsg>>>>,
    stock_points: Arc<Directory<StockPointMsg>>,
    board: Arc<Board>,
    clock: Arc<dyn Clock>,
    config: WmsConfig,
    layout: Layout,
    tasks: FxHashMap<String, Task>,
    /// Tasks on the floor (open and completing) by sequence, so the list comes out in work
    /// order. Picks planned for a wave that has not run yet are in `tasks` only.
    queue: BTreeMap<u64, String>,
    completed: VecDeque<String>,
    next_block: u64,
    next_tour: u64,
    next_putaway: u64,
    works: FxHashMap<FulfilmentId, Work>,
    tours: BTreeMap<u64, Tour>,
    /// Fulfilments waiting for the next timed wave, in arrival order.
    pool: Vec<FulfilmentId>,
    wave_armed: bool,
    /// Ordered so that listings and removal candidates are deterministic.
    slots: BTreeMap<Location, Slot>,
    areas: FxHashMap<SkuId, Areas>,
    /// Units shipped per SKU per day (day number since the epoch).
    demand: FxHashMap<SkuId, BTreeMap<u64, u64>>,
    workers: Option<WorkerConfig>,
    worker_busy: bool,
}

impl Actor for WarehouseActor {
    type Msg = WarehouseMsg;
    type State = WarehouseState;
    type Arguments = WarehouseArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<WarehouseMsg>,
        args: WarehouseArgs,
    ) -> Result<WarehouseState, ActorProcessingErr> {
        let layout = match args.kind {
            StockPointKind::Store => Layout::store(),
            StockPointKind::Warehouse | StockPointKind::Dropship => Layout::standard_grid(),
        };
        let mut state = WarehouseState {
            stock_point: args.stock_point,
            desk: args.desk,
            stock_points: args.stock_points,
            board: args.board,
            clock: args.clock,
            config: args.config,
            layout,
            tasks: FxHashMap::default(),
            queue: BTreeMap::new(),
            completed: VecDeque::new(),
            next_block: 0,
            next_tour: 1,
            next_putaway: 1,
            works: FxHashMap::default(),
            tours: BTreeMap::new(),
            pool: Vec::new(),
            wave_armed: false,
            slots: BTreeMap::new(),
            areas: FxHashMap::default(),
            demand: FxHashMap::default(),
            workers: args.workers,
            worker_busy: false,
        };
        // Units picked but not shipped are in cartons, not in bins.
        for (_, f) in &args.released {
            for line in &f.lines {
                state.area(line.sku).outbound += line.picked.0.saturating_sub(line.shipped.0);
            }
        }
        let mut on_hand = args.on_hand;
        on_hand.sort();
        for (sku, qty) in on_hand {
            let outbound = state.area(sku).outbound;
            state.place_direct(sku, qty.0.saturating_sub(outbound));
        }
        for (order, fulfilment) in args.released {
            state.rebuild(&myself, order, &fulfilment);
        }
        state.wake_worker(&myself);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<WarehouseMsg>,
        message: WarehouseMsg,
        state: &mut WarehouseState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            WarehouseMsg::Release {
                order,
                fulfilment,
                ticket,
            } => {
                drop(ticket);
                state.rebuild(&myself, order, &fulfilment);
            }
            WarehouseMsg::Cancelled { order, ticket } => {
                drop(ticket);
                state.cancel(&myself, order);
            }
            WarehouseMsg::Open { open, ticket } => {
                drop(ticket);
                state.reconcile_work(&myself, open);
            }
            WarehouseMsg::Tasks { open_only, reply } => {
                let mut tasks: Vec<Task> = state
                    .queue
                    .values()
                    .filter_map(|id| state.tasks.get(id).cloned())
                    .collect();
                if !open_only {
                    tasks.extend(
                        state
                            .completed
                            .iter()
                            .filter_map(|id| state.tasks.get(id).cloned()),
                    );
                }
                let _ = reply.send(tasks);
            }
            WarehouseMsg::Complete {
                task,
                qty,
                answer,
                ticket,
            } => {
                drop(ticket);
                state.complete(&myself, task, qty, answer);
            }
            WarehouseMsg::StepDone {
                task,
                result,
                answer,
            } => {
                let outcome = state.step_done(&task, result);
                answer(outcome);
            }
            WarehouseMsg::LineReported {
                fulfilment,
                line,
                result,
                waiter,
            } => {
                state.line_reported(&myself, fulfilment, line, result, waiter);
            }
            WarehouseMsg::RetryReport { fulfilment, line } => {
                let ready = state
                    .works
                    .get(&fulfilment)
                    .and_then(|w| w.lines.get(line))
                    .is_some_and(|l| l.open == 0 && l.report == Report::Pending);
                if ready {
                    state.report(&myself, fulfilment, line, None);
                }
            }
            WarehouseMsg::WrittenOff { sku, qty, result } => {
                state.written_off(&myself, sku, qty, result);
            }
            WarehouseMsg::OnHandChanged { sku, cause, ticket } => {
                drop(ticket);
                state.reconcile(sku, cause);
            }
            WarehouseMsg::WaveDue => {
                state.wave_armed = false;
                state.run_wave(&myself);
            }
            WarehouseMsg::WaveBatched { members, batching } => {
                state.wave_batched(&myself, members, batching)
            }
            WarehouseMsg::Stock(reply) => {
                let _ = reply.send(state.stock_view());
            }
            WarehouseMsg::Replenishment(reply) => {
                let _ = reply.send(state.replenishment());
            }
            WarehouseMsg::WorkerFree => {
                state.worker_busy = false;
            }
            WarehouseMsg::Crash => panic!("crash requested by a test hook"),
        }
        state.wake_worker(&myself);
        Ok(())
    }
}

/// A fixed bit mixer (splitmix64's finaliser), so slotting and SKU profiles are deterministic
/// functions of the SKU id.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A SKU's velocity class when first seen: 20% A, 30% B, 50% C by a hash of its id, matching the
/// zone shares of putaway. The catalog has no sales history to do better at that point.
fn velocity_of(sku: SkuId) -> VelocityClass {
    match mix(u64::from(sku.0)) % 100 {
        0..=19 => VelocityClass::A,
        20..=49 => VelocityClass::B,
        _ => VelocityClass::C,
    }
}

/// A SKU's unit size and weight. The catalog does not carry dimensions yet, so they are derived
/// from the id: half small, three in ten medium, one in ten large, one in ten bulky.
fn sku_profile(sku: SkuId) -> (Dims, u32) {
    match mix(u64::from(sku.0) ^ 0x5a5a) % 10 {
        0..=4 => (Dims::new(120, 80, 50), 200),
        5..=7 => (Dims::new(200, 150, 100), 600),
        8 => (Dims::new(300, 200, 150), 1_500),
        _ => (Dims::new(400, 300, 250), 4_000),
    }
}

fn unit_volume_cm3(sku: SkuId) -> u64 {
    sku_profile(sku).0.volume_mm3().div_ceil(1_000)
}

fn place_name(place: Place) -> String {
    match place {
        Place::Bin(l) => format!(
            "A{}-S{}-{}",
            l.aisle,
            l.slot,
            if l.side == Side::Left { "L" } else { "R" }
        ),
        Place::Overflow => "OVERFLOW".into(),
    }
}

/// The carrier rule: one light carton goes by post, everything else by courier.
fn carrier_for(cartons: usize, weight_g: u64) -> &'static str {
    if cartons <= 1 && weight_g <= POST_WEIGHT_G_MAX {
        CARRIER_POST
    } else {
        CARRIER_COURIER
    }
}

fn dock_for(carrier: &str) -> &'static str {
    if carrier == CARRIER_POST {
        "D1"
    } else {
        "D2"
    }
}

fn blank_task(id: String, kind: TaskKind, stock_point: StockPointId) -> Task {
    Task {
        id,
        kind,
        order: OrderId(0),
        fulfilment: FulfilmentId(0),
        stock_point,
        sequence: 0,
        sku: None,
        qty: Qty::ZERO,
        bin: None,
        path_position: None,
        status: TaskStatus::Open,
        done_qty: None,
        tour: None,
        route_position: None,
        walk_cm: None,
        carton: None,
        carrier: None,
        dock: None,
        tracking: None,
        place: None,
        line: 0,
    }
}

impl WarehouseState {
    fn area(&mut self, sku: SkuId) -> &mut Areas {
        self.areas.entry(sku).or_default()
    }

    fn on_hand(&self, sku: SkuId) -> u64 {
        let sp = self.stock_point;
        self.board.with_figures(sku, |figures| {
            figures
                .iter()
                .find(|f| f.stock_point == sp)
                .map_or(0, |f| f.on_hand.0)
        })
    }

    fn in_bins(&self, sku: SkuId) -> u64 {
        self.slots
            .values()
            .filter(|s| s.sku == sku)
            .map(|s| s.qty)
            .sum()
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // --- stock ------------------------------------------------------------------------------

    /// Brings the units of `sku` here in line with on_hand; see the module doc.
    fn reconcile(&mut self, sku: SkuId, cause: OnHandCause) {
        let on_hand = self.on_hand(sku);
        let a = *self.area(sku);
        let here = self.in_bins(sku) + a.dock + a.overflow + a.outbound + a.unfound;
        if on_hand > here {
            match cause {
                OnHandCause::Receipt => self.receive_to_dock(sku, on_hand - here, None),
                OnHandCause::Adjustment => self.place_direct(sku, on_hand - here),
            }
        } else if on_hand + a.in_flight < here {
            self.remove_units(sku, here - a.in_flight - on_hand);
        }
    }

    /// Putaway candidates see every occupied bin, with units on their way in counted.
    fn occupancy(&self) -> Vec<BinStock> {
        self.slots
            .iter()
            .filter(|(_, s)| s.qty + s.incoming + s.reserved > 0)
            .map(|(location, s)| BinStock {
                location: *location,
                sku: s.sku,
                qty: Qty((s.qty + s.incoming).max(1)),
                lot: s.lot,
            })
            .collect()
    }

    /// Slots `qty` units straight into bins by velocity class; what does not fit goes to overflow.
    fn place_direct(&mut self, sku: SkuId, qty: u64) {
        if qty == 0 {
            return;
        }
        let lot = Lot {
            received_at: self.now(),
            expires_at: None,
        };
        match choose_putaway(
            &self.layout,
            &self.occupancy(),
            sku,
            Qty(qty),
            velocity_of(sku),
        ) {
            Ok(putaway) => {
                for put in putaway.puts {
                    let slot = self.slots.entry(put.location).or_insert(Slot {
                        sku,
                        qty: 0,
                        reserved: 0,
                        incoming: 0,
                        lot,
                    });
                    slot.qty += put.qty.0;
                }
                self.area(sku).overflow += putaway.unplaced.0;
            }
            Err(error) => {
                warn!(stock_point = ?self.stock_point, ?sku, %error, "putaway failed; units kept in overflow");
                self.area(sku).overflow += qty;
            }
        }
    }

    /// Units arrive at the dock; putaway tasks move them to bins chosen by velocity class.
    /// `from` names the order and fulfilment whose cancelled picks they were.
    fn receive_to_dock(&mut self, sku: SkuId, qty: u64, from: Option<(OrderId, FulfilmentId)>) {
        if qty == 0 {
            return;
        }
        self.area(sku).dock += qty;
        let putaway = match choose_putaway(
            &self.layout,
            &self.occupancy(),
            sku,
            Qty(qty),
            velocity_of(sku),
        ) {
            Ok(p) => p,
            Err(error) => {
                warn!(stock_point = ?self.stock_point, ?sku, %error, "putaway failed; units kept in overflow");
                let a = self.area(sku);
                a.dock -= qty;
                a.overflow += qty;
                return;
            }
        };
        let lot = Lot {
            received_at: self.now(),
            expires_at: None,
        };
        for put in putaway.puts {
            let slot = self.slots.entry(put.location).or_insert(Slot {
                sku,
                qty: 0,
                reserved: 0,
                incoming: 0,
                lot,
            });
            slot.incoming += put.qty.0;
            let mut task = blank_task(
                format!("P-{}.putaway", self.next_putaway),
                TaskKind::Putaway,
                self.stock_point,
            );
            self.next_putaway += 1;
            if let Some((order, fulfilment)) = from {
                task.order = order;
                task.fulfilment = fulfilment;
            }
            task.sku = Some(sku);
            task.qty = put.qty;
            task.place = Some(Place::Bin(put.location));
            task.bin = Some(place_name(Place::Bin(put.location)));
            task.walk_cm = self
                .layout
                .depot_distance_cm(put.location)
                .ok()
                .map(|d| 2 * d);
            self.enqueue_alone(task);
        }
        let a = self.area(sku);
        a.dock -= putaway.unplaced.0;
        a.overflow += putaway.unplaced.0;
    }

    /// Takes `qty` units of `sku` off the books here (on_hand went down without a step of ours).
    fn remove_units(&mut self, sku: SkuId, qty: u64) {
        let mut left = qty;
        let a = self.area(sku);
        let from_unfound = left.min(a.unfound);
        a.unfound -= from_unfound;
        left -= from_unfound;
        let free_overflow = a.overflow - a.overflow_reserved.min(a.overflow);
        let from_overflow = left.min(free_overflow);
        a.overflow -= from_overflow;
        left -= from_overflow;
        if left > 0 {
            let stock = self.free_bin_stock(sku, None);
            let request = RemovalRequest {
                sku,
                qty: Qty(left),
                policy: self.config.removal,
                now: self.now(),
            };
            if let Ok(removal) = choose_bins(&self.layout, &stock, &request) {
                for take in removal.takes {
                    self.take(Place::Bin(take.location), take.qty.0);
                    left -= take.qty.0;
                }
            }
        }
        // The dock last: its units already have putaway tasks, which shrink.
        let putaways: Vec<String> = self
            .queue
            .values()
            .filter(|id| {
                self.tasks.get(*id).is_some_and(|t| {
                    t.kind == TaskKind::Putaway
                        && t.sku == Some(sku)
                        && t.status == TaskStatus::Open
                })
            })
            .cloned()
            .collect();
        for id in putaways.into_iter().rev() {
            if left == 0 {
                break;
            }
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            let cut = left.min(task.qty.0);
            task.qty = Qty(task.qty.0 - cut);
            left -= cut;
            let (place, emptied) = (task.place, task.qty.is_zero());
            if let Some(Place::Bin(location)) = place {
                if let Some(slot) = self.slots.get_mut(&location) {
                    slot.incoming = slot.incoming.saturating_sub(cut);
                }
                self.free_if_empty(location);
            }
            let a = self.area(sku);
            a.dock = a.dock.saturating_sub(cut);
            if emptied {
                self.drop_task(&id);
            }
        }
        if left > 0 {
            warn!(stock_point = ?self.stock_point, ?sku, units = left, "on_hand fell below what is picked and reserved here");
            let reserved: Vec<Location> = self
                .slots
                .iter()
                .filter(|(_, s)| s.sku == sku && s.qty > 0)
                .map(|(l, _)| *l)
                .collect();
            for location in reserved {
                let take = left.min(self.slots[&location].qty);
                self.take(Place::Bin(location), take);
                left -= take;
            }
        }
    }

    /// Asks the stock point to take unfound units of `sku` off on_hand, so that it stops
    /// selling units a picker found missing. Units that short lines still have to report are
    /// left (their reports take them off), and so are units the stock point has committed
    /// (held or allocated): the orders they are committed to come up short and report them.
    /// Without this, every unit of a bin found short stays available at the stock point, each
    /// order allocated against one is reported short with nothing picked, and the order is
    /// re-sourced to stock points in the same state until its line is written off.
    fn write_off_unfound(&mut self, myself: &ActorRef<WarehouseMsg>, sku: SkuId) {
        let a = *self.area(sku);
        if a.unfound == 0 || a.writing_off > 0 {
            return;
        }
        let to_report: u64 = self
            .works
            .values()
            .flat_map(|w| w.lines.iter())
            .filter(|l| l.sku == sku && l.report != Report::Done)
            .map(|l| l.short)
            .sum();
        let sp = self.stock_point;
        let uncommitted = self.board.with_figures(sku, |figures| {
            figures.iter().find(|f| f.stock_point == sp).map_or(0, |f| {
                let committed = f.held + f.allocated + f.non_sellable;
                f.on_hand.0.saturating_sub(committed.0)
            })
        });
        let qty = a.unfound.saturating_sub(to_report).min(uncommitted);
        let Ok(delta) = i64::try_from(qty) else {
            return;
        };
        if qty == 0 {
            return;
        }
        let a = self.area(sku);
        a.writing_off = qty;
        a.in_flight += qty;
        let me = myself.clone();
        let sent = self.stock_points.send(sp, |ticket| StockPointMsg::Command {
            command: StockCommand::Adjust {
                sku,
                adjustment: Adjustment::Delta(-delta),
                reason: AdjustReason::ShortPick,
            },
            answer: reply(move |result| {
                let _ = me.send_message(WarehouseMsg::WrittenOff { sku, qty, result });
            }),
            ticket,
        });
        if let Err(error) = sent {
            warn!(stock_point = ?sp, ?sku, %error, "unfound units not written off");
            let a = self.area(sku);
            a.writing_off = 0;
            a.in_flight = a.in_flight.saturating_sub(qty);
        }
    }

    fn written_off(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        sku: SkuId,
        qty: u64,
        result: Answer<()>,
    ) {
        let a = self.area(sku);
        a.writing_off = 0;
        a.in_flight = a.in_flight.saturating_sub(qty);
        match result {
            Ok(Ok(())) => {
                // on_hand went down by `qty`: reconciling takes the units from unfound.
                self.reconcile(sku, OnHandCause::Adjustment);
                self.write_off_unfound(myself, sku);
            }
            // Committed in the meantime (or the log refused): the next short pick, report or
            // cancellation of this SKU tries again.
            Ok(Err(refusal)) => {
                warn!(stock_point = ?self.stock_point, ?sku, ?refusal, "unfound units not written off")
            }
            Err(error) => {
                warn!(stock_point = ?self.stock_point, ?sku, %error, "unfound units not written off")
            }
        }
    }

    /// Bin stock of `sku` not promised to a pick, as removal sees it.
    fn free_bin_stock(&self, sku: SkuId, exclude: Option<Place>) -> Vec<BinStock> {
        self.slots
            .iter()
            .filter(|(l, s)| s.sku == sku && s.qty > s.reserved && exclude != Some(Place::Bin(**l)))
            .map(|(l, s)| BinStock {
                location: *l,
                sku,
                qty: Qty(s.qty - s.reserved),
                lot: s.lot,
            })
            .collect()
    }

    /// Removes `qty` units from a place (a pick or a write-off).
    fn take(&mut self, place: Place, qty: u64) {
        match place {
            Place::Bin(location) => {
                if let Some(slot) = self.slots.get_mut(&location) {
                    slot.qty = slot.qty.saturating_sub(qty);
                }
                self.free_if_empty(location);
            }
            Place::Overflow => {}
        }
    }

    fn free_if_empty(&mut self, location: Location) {
        if self
            .slots
            .get(&location)
            .is_some_and(|s| s.qty == 0 && s.reserved == 0 && s.incoming == 0)
        {
            self.slots.remove(&location);
        }
    }

    fn reserve(&mut self, place: Place, sku: SkuId, qty: u64) {
        match place {
            Place::Bin(location) => {
                if let Some(slot) = self.slots.get_mut(&location) {
                    slot.reserved += qty;
                }
            }
            Place::Overflow => self.area(sku).overflow_reserved += qty,
        }
    }

    fn unreserve(&mut self, place: Place, sku: SkuId, qty: u64) {
        match place {
            Place::Bin(location) => {
                if let Some(slot) = self.slots.get_mut(&location) {
                    slot.reserved = slot.reserved.saturating_sub(qty);
                }
                self.free_if_empty(location);
            }
            Place::Overflow => {
                let a = self.area(sku);
                a.overflow_reserved = a.overflow_reserved.saturating_sub(qty);
            }
        }
    }

    fn stock_view(&self) -> StockView {
        let bins = self
            .slots
            .iter()
            .filter(|(_, s)| s.qty > 0)
            .map(|(l, s)| BinStock {
                location: *l,
                sku: s.sku,
                qty: Qty(s.qty),
                lot: s.lot,
            })
            .collect();
        let mut areas: Vec<AreaStock> = self
            .areas
            .iter()
            .map(|(sku, a)| AreaStock {
                sku: *sku,
                dock: Qty(a.dock),
                overflow: Qty(a.overflow),
                outbound: Qty(a.outbound),
                unfound: Qty(a.unfound),
            })
            .collect();
        areas.sort_by_key(|a| a.sku);
        StockView { bins, areas }
    }

    // --- release, planning and tours --------------------------------------------------------

    /// Creates the work a fulfilment needs next, given how far it has got.
    fn rebuild(&mut self, myself: &ActorRef<WarehouseMsg>, order: OrderId, f: &Fulfilment) {
        if self.works.contains_key(&f.id) {
            return;
        }
        match f.status {
            FulfilmentStatus::Released | FulfilmentStatus::Picking => self.admit(myself, order, f),
            FulfilmentStatus::Picked | FulfilmentStatus::Packed => {
                let lines = f
                    .lines
                    .iter()
                    .enumerate()
                    .map(|(index, l)| LineWork {
                        index,
                        sku: l.sku,
                        want: l.picked.0,
                        picked: l.picked.0,
                        short: 0,
                        open: 0,
                        picks_made: 0,
                        report: Report::Done,
                        attempts: 0,
                    })
                    .collect();
                self.works.insert(
                    f.id,
                    Work {
                        order,
                        lines,
                        cartons: Vec::new(),
                        tour: None,
                        stage: Stage::Picking,
                    },
                );
                if f.status == FulfilmentStatus::Picked {
                    self.after_lines(f.id);
                } else {
                    self.add_ship(f.id);
                }
            }
            _ => {}
        }
    }

    /// Plans a released fulfilment: reserve bins, cartonize, send the picks to the floor.
    fn admit(&mut self, myself: &ActorRef<WarehouseMsg>, order: OrderId, f: &Fulfilment) {
        let lines: Vec<LineWork> = f
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.remaining().is_zero())
            .map(|(index, l)| LineWork {
                index,
                sku: l.sku,
                want: l.remaining().0,
                picked: 0,
                short: 0,
                open: 0,
                picks_made: 0,
                report: Report::Pending,
                attempts: 0,
            })
            .collect();
        let wanted: Vec<(SkuId, u64)> = lines.iter().map(|l| (l.sku, l.want)).collect();
        let cartons = self.plan_cartons(f.id, &wanted);
        let count = lines.len();
        self.works.insert(
            f.id,
            Work {
                order,
                lines,
                cartons,
                tour: None,
                stage: Stage::Picking,
            },
        );
        let mut picks = Vec::new();
        for line in 0..count {
            let want = self.works[&f.id].lines[line].want;
            picks.extend(self.plan_picks(f.id, line, want, None));
        }
        if !picks.is_empty() {
            match self.config.release {
                ReleaseMode::Waveless { cut_off_ms } => {
                    self.insert_waveless(f.id, picks, cut_off_ms)
                }
                ReleaseMode::Waves { interval_ms } => {
                    self.pool.push(f.id);
                    if self.pool.len() >= WAVE_ORDERS_MAX {
                        self.run_wave(myself);
                    } else if !self.wave_armed {
                        self.wave_armed = true;
                        myself.send_after(Duration::from_millis(interval_ms), || {
                            WarehouseMsg::WaveDue
                        });
                    }
                }
            }
        }
        self.report_idle_lines(myself, f.id);
        if count == 0 {
            self.after_lines(f.id);
        }
    }

    /// Reserves `qty` units for a line, bins first (removal order), overflow last, and creates
    /// the pick tasks (not yet on the floor). What nobody has is added to the line's short.
    fn plan_picks(
        &mut self,
        f: FulfilmentId,
        line: usize,
        qty: u64,
        exclude: Option<Place>,
    ) -> Vec<String> {
        let Some(sku) = self
            .works
            .get(&f)
            .and_then(|w| w.lines.get(line))
            .map(|l| l.sku)
        else {
            return Vec::new();
        };
        let stock = self.free_bin_stock(sku, exclude);
        let request = RemovalRequest {
            sku,
            qty: Qty(qty),
            policy: self.config.removal,
            now: self.now(),
        };
        let mut takes: Vec<(Place, u64)> = match choose_bins(&self.layout, &stock, &request) {
            Ok(removal) => removal
                .takes
                .iter()
                .map(|t| (Place::Bin(t.location), t.qty.0))
                .collect(),
            Err(error) => {
                warn!(stock_point = ?self.stock_point, ?sku, %error, "removal failed");
                Vec::new()
            }
        };
        let mut left = qty - takes.iter().map(|(_, q)| q).sum::<u64>();
        if left > 0 && exclude != Some(Place::Overflow) {
            let a = self.area(sku);
            let from_overflow = left.min(a.overflow.saturating_sub(a.overflow_reserved));
            if from_overflow > 0 {
                takes.push((Place::Overflow, from_overflow));
                left -= from_overflow;
            }
        }
        let mut ids = Vec::with_capacity(takes.len());
        for (place, units) in takes {
            self.reserve(place, sku, units);
            ids.push(self.new_pick(f, line, place, units));
        }
        if let Some(l) = self.works.get_mut(&f).and_then(|w| w.lines.get_mut(line)) {
            l.short += left;
        }
        ids
    }

    fn new_pick(&mut self, f: FulfilmentId, line: usize, place: Place, qty: u64) -> String {
        let work = self
            .works
            .get_mut(&f)
            .expect("planning a pick of known work");
        let order = work.order;
        let carton = work
            .cartons
            .iter()
            .find(|c| c.skus.contains(&work.lines[line].sku))
            .map(|c| c.label.clone());
        let l = &mut work.lines[line];
        let id = match l.picks_made {
            0 => format!("{f}.pick.{}", l.index),
            n => format!("{f}.pick.{}.{n}", l.index),
        };
        l.picks_made += 1;
        l.open += 1;
        let mut task = blank_task(id.clone(), TaskKind::Pick, self.stock_point);
        task.order = order;
        task.fulfilment = f;
        task.sku = Some(l.sku);
        task.qty = Qty(qty);
        task.bin = Some(place_name(place));
        task.place = Some(place);
        task.line = line;
        task.carton = carton;
        self.tasks.insert(id.clone(), task);
        id
    }

    fn batch_order(&self, f: FulfilmentId) -> Option<BatchOrder> {
        let lines: Vec<PickLine> = self
            .tasks
            .values()
            .filter(|t| {
                t.fulfilment == f && t.kind == TaskKind::Pick && t.status == TaskStatus::Open
            })
            .filter_map(|t| match (t.place, t.sku) {
                (Some(Place::Bin(location)), Some(sku)) => Some(PickLine {
                    location,
                    volume_cm3: unit_volume_cm3(sku) * t.qty.0,
                }),
                _ => None,
            })
            .collect();
        (!lines.is_empty() && lines.len() <= LINES_PER_ORDER_MAX)
            .then_some(BatchOrder { id: f, lines })
    }

    /// Waveless release: join the open tour that grows least, if that beats a tour of its own.
    fn insert_waveless(&mut self, f: FulfilmentId, picks: Vec<String>, cut_off_ms: u64) {
        let now = self.now();
        if let Some(order) = self.batch_order(f) {
            let mut candidates: Vec<(u64, OpenTour)> = Vec::new();
            for (&id, tour) in self.tours.iter().rev() {
                if candidates.len() == OPEN_TOURS_CONSIDERED_MAX {
                    break;
                }
                if tour.started || tour.closes_at <= now {
                    continue;
                }
                let orders: Option<Vec<BatchOrder>> = tour
                    .fulfilments
                    .iter()
                    .map(|m| self.batch_order(*m))
                    .collect();
                if let Some(orders) = orders {
                    candidates.push((
                        id,
                        OpenTour {
                            orders,
                            closes_at: tour.closes_at,
                        },
                    ));
                }
            }
            let open: Vec<OpenTour> = candidates.iter().map(|(_, t)| t.clone()).collect();
            if let Ok(Insertion::Existing { tour, .. }) =
                insert_order(&self.layout, &open, &order, &self.config.tote, now)
            {
                let id = candidates[tour].0;
                if let Some(t) = self.tours.get_mut(&id) {
                    t.fulfilments.push(f);
                    t.picks.extend(picks);
                }
                if let Some(w) = self.works.get_mut(&f) {
                    w.tour = Some(id);
                }
                self.route_tour(id);
                return;
            }
        }
        self.new_tour(vec![f], picks, now.plus_ms(cut_off_ms));
    }

    fn new_tour(
        &mut self,
        fulfilments: Vec<FulfilmentId>,
        picks: Vec<String>,
        closes_at: Timestamp,
    ) -> u64 {
        let id = self.next_tour;
        self.next_tour += 1;
        let block = self.next_block;
        self.next_block += 1;
        for f in &fulfilments {
            if let Some(w) = self.works.get_mut(f) {
                w.tour = Some(id);
            }
        }
        self.tours.insert(
            id,
            Tour {
                block,
                fulfilments,
                picks,
                closes_at,
                started: false,
            },
        );
        self.route_tour(id);
        id
    }

    /// Routes a tour's open picks optimally and (re)places them on the floor in route order.
    /// Overflow picks come first: overflow is staged at the depot.
    fn route_tour(&mut self, id: u64) {
        let Some(tour) = self.tours.get(&id) else {
            return;
        };
        let block = tour.block;
        let open: Vec<String> = tour
            .picks
            .iter()
            .filter(|p| {
                self.tasks
                    .get(*p)
                    .is_some_and(|t| t.status == TaskStatus::Open)
            })
            .cloned()
            .collect();
        let (binned, overflow): (Vec<String>, Vec<String>) = open
            .into_iter()
            .partition(|p| matches!(self.tasks[p].place, Some(Place::Bin(_))));
        let locations: Vec<Location> = binned
            .iter()
            .filter_map(|p| match self.tasks[p].place {
                Some(Place::Bin(l)) => Some(l),
                _ => None,
            })
            .collect();
        let sequence: Vec<usize> = match optimal_route(&self.layout, &locations) {
            Ok(route) => route.sequence,
            Err(error) => {
                warn!(stock_point = ?self.stock_point, %error, "routing failed; picking in planned order");
                (0..locations.len()).collect()
            }
        };
        let depot = self.layout.depot();
        let mut ordered: Vec<(String, u64)> = overflow.into_iter().map(|p| (p, 0)).collect();
        let mut at = depot;
        for &index in &sequence {
            let point = self.layout.point(locations[index]).unwrap_or(depot);
            ordered.push((binned[index].clone(), self.layout.distance_cm(at, point)));
            at = point;
        }
        if let Some(last) = ordered.last_mut() {
            last.1 += self.layout.distance_cm(at, depot);
        }
        debug_assert!(ordered.len() < POSITIONS_PER_BLOCK_MAX);
        for (position, (pick, walk_cm)) in ordered.into_iter().enumerate() {
            let Some(task) = self.tasks.get_mut(&pick) else {
                continue;
            };
            if self.queue.get(&task.sequence) == Some(&pick) {
                self.queue.remove(&task.sequence);
            }
            task.sequence = (block << POSITION_BITS) | position as u64;
            task.tour = Some(id);
            task.route_position = Some(position as u32);
            task.path_position = Some(position as u32);
            task.walk_cm = Some(walk_cm);
            self.queue.insert(task.sequence, pick);
        }
    }

    /// Timed wave: batch the pool off the actor; the answer comes back as `WaveBatched`.
    fn run_wave(&mut self, myself: &ActorRef<WarehouseMsg>) {
        let take = self
            .pool
            .len()
            .min(WAVE_ORDERS_MAX.min(ORDERS_PER_BATCHING_MAX));
        let members: Vec<FulfilmentId> = self
            .pool
            .drain(..take)
            .filter(|f| self.works.contains_key(f))
            .collect();
        if !self.pool.is_empty() && !self.wave_armed {
            if let ReleaseMode::Waves { interval_ms } = self.config.release {
                self.wave_armed = true;
                myself.send_after(Duration::from_millis(interval_ms), || WarehouseMsg::WaveDue);
            }
        }
        if members.is_empty() {
            return;
        }
        let (batchable, alone): (Vec<FulfilmentId>, Vec<FulfilmentId>) =
            members.into_iter().partition(|f| {
                self.batch_order(*f).is_some_and(|o| {
                    let volume: u64 = o.lines.iter().map(|l| l.volume_cm3).sum();
                    self.config
                        .tote
                        .volume_cm3_max
                        .is_none_or(|max| volume <= max)
                        && self
                            .config
                            .tote
                            .lines_max
                            .is_none_or(|max| o.lines.len() <= max)
                })
            });
        let now = self.now();
        for f in alone {
            let picks = self.unrouted_picks(f);
            self.new_tour(vec![f], picks, now);
        }
        let orders: Vec<BatchOrder> = batchable
            .iter()
            .filter_map(|f| self.batch_order(*f))
            .collect();
        let (layout, tote, me) = (self.layout, self.config.tote, myself.clone());
        tokio::task::spawn_blocking(move || {
            let batching = batch_orders(&layout, &orders, &tote)
                .map_err(|error| warn!(%error, "wave batching failed; one tour per fulfilment"))
                .ok();
            let _ = me.send_message(WarehouseMsg::WaveBatched {
                members: batchable,
                batching,
            });
        });
    }

    fn unrouted_picks(&self, f: FulfilmentId) -> Vec<String> {
        let mut picks: Vec<String> = self
            .tasks
            .values()
            .filter(|t| {
                t.fulfilment == f
                    && t.kind == TaskKind::Pick
                    && t.status == TaskStatus::Open
                    && t.tour.is_none()
            })
            .map(|t| t.id.clone())
            .collect();
        picks.sort();
        picks
    }

    fn wave_batched(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        members: Vec<FulfilmentId>,
        batching: Option<Batching>,
    ) {
        let now = self.now();
        let mut groups: Vec<Vec<FulfilmentId>> = match batching {
            Some(b) => b.batches.into_iter().map(|batch| batch.orders).collect(),
            None => members.iter().map(|f| vec![*f]).collect(),
        };
        // Fulfilments cancelled while the wave was being batched are gone.
        for group in &mut groups {
            group.retain(|f| self.works.contains_key(f));
        }
        for group in groups.into_iter().filter(|g| !g.is_empty()) {
            let picks: Vec<String> = group.iter().flat_map(|f| self.unrouted_picks(*f)).collect();
            self.new_tour(group, picks, now);
        }
        self.wake_worker(myself);
    }

    fn plan_cartons(&self, f: FulfilmentId, lines: &[(SkuId, u64)]) -> Vec<PlannedCarton> {
        let units: u64 = lines.iter().map(|(_, q)| q).sum();
        if units == 0 || units > UNITS_PER_PACKING_MAX as u64 {
            return Vec::new();
        }
        let items: Vec<PackItem> = lines
            .iter()
            .filter(|(_, q)| *q > 0)
            .map(|(sku, qty)| {
                let (dims, weight_g) = sku_profile(*sku);
                PackItem {
                    sku: *sku,
                    dims,
                    weight_g,
                    qty: *qty as u32,
                    keep_upright: false,
                }
            })
            .collect();
        match cartonize(&self.config.boxes, &items) {
            Ok(packing) => packing
                .cartons
                .iter()
                .enumerate()
                .map(|(n, carton)| {
                    let mut skus: Vec<SkuId> = carton
                        .placements
                        .iter()
                        .map(|p| items[p.item].sku)
                        .collect();
                    skus.sort();
                    skus.dedup();
                    PlannedCarton {
                        label: format!("{f}/{}:{}", n + 1, self.config.boxes[carton.box_type].name),
                        skus,
                    }
                })
                .collect(),
            Err(error) => {
                warn!(stock_point = ?self.stock_point, %f, %error, "cartonization failed; packing by hand");
                Vec::new()
            }
        }
    }

    // --- completing tasks -------------------------------------------------------------------

    fn complete(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        id: String,
        qty: Option<Qty>,
        answer: Reply<Answer<Task>>,
    ) {
        let Some(task) = self.tasks.get(&id) else {
            return answer(Ok(Err(Refusal::NotFound(format!("task {id}")))));
        };
        match task.status {
            TaskStatus::Completed => {
                return answer(Ok(Err(Refusal::Conflict(format!(
                    "task {id} is already complete"
                )))))
            }
            TaskStatus::Completing => {
                return answer(Ok(Err(Refusal::Conflict(format!(
                    "task {id} is being completed"
                )))))
            }
            TaskStatus::Open => {}
        }
        if self.queue.get(&task.sequence) != Some(&id) {
            return answer(Ok(Err(Refusal::Conflict(format!(
                "task {id} waits for its wave"
            )))));
        }
        let done = qty.unwrap_or(task.qty);
        if done > task.qty {
            return answer(Ok(Err(invalid(
                "qty",
                format!("at most {} for this task", task.qty),
            ))));
        }
        if task.kind != TaskKind::Pick && qty.is_some_and(|q| q != task.qty) {
            return answer(Ok(Err(invalid("qty", "only pick tasks take a quantity"))));
        }
        match task.kind {
            TaskKind::Pick => self.complete_pick(myself, id, done.0, answer),
            TaskKind::Putaway => self.complete_putaway(id, answer),
            TaskKind::Pack | TaskKind::Ship => self.send_step(myself, id, answer),
        }
    }

    fn finish_task(&mut self, id: &str, done: Qty) -> Option<Task> {
        let task = self.tasks.get_mut(id)?;
        task.status = TaskStatus::Completed;
        task.done_qty = Some(done);
        let done = task.clone();
        self.queue.remove(&done.sequence);
        self.completed.push_back(done.id.clone());
        while self.completed.len() > COMPLETED_TASKS_KEPT_MAX {
            if let Some(old) = self.completed.pop_front() {
                self.tasks.remove(&old);
            }
        }
        Some(done)
    }

    /// Removes an open task that will not be done (cancelled or re-planned).
    fn drop_task(&mut self, id: &str) {
        let Some(task) = self.tasks.remove(id) else {
            return;
        };
        if self.queue.get(&task.sequence).map(String::as_str) == Some(id) {
            self.queue.remove(&task.sequence);
        }
        if let Some(tour) = task.tour.and_then(|t| self.tours.get_mut(&t)) {
            tour.picks.retain(|p| p != id);
        }
    }

    /// A pick is a physical fact: it is applied at once. A shortfall empties the bin (the rest
    /// of its recorded units become unfound), re-plans other picks that counted on that bin,
    /// and is picked again from other bins; only when the line has nothing left open is it
    /// reported to the order.
    fn complete_pick(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        id: String,
        done: u64,
        answer: Reply<Answer<Task>>,
    ) {
        let task = self.tasks[&id].clone();
        let (Some(place), Some(sku)) = (task.place, task.sku) else {
            return answer(Ok(Err(Refusal::Conflict(format!("task {id} has no bin")))));
        };
        let (f, line) = (task.fulfilment, task.line);
        if let Some(tour) = task.tour.and_then(|t| self.tours.get_mut(&t)) {
            tour.started = true;
        }
        self.unreserve(place, sku, task.qty.0);
        let missing = task.qty.0 - done;
        if missing > 0 {
            self.found_short(myself, place, sku, done, &id);
        }
        match place {
            Place::Bin(_) => self.take(place, done),
            Place::Overflow => {
                let a = self.area(sku);
                a.overflow = a.overflow.saturating_sub(done);
            }
        }
        self.area(sku).outbound += done;
        let Some(finished) = self.finish_task(&id, Qty(done)) else {
            return;
        };
        if let Some(l) = self.works.get_mut(&f).and_then(|w| w.lines.get_mut(line)) {
            l.picked += done;
            l.open = l.open.saturating_sub(1);
        }
        if missing > 0 {
            let again = self.plan_picks(f, line, missing, Some(place));
            if !again.is_empty() {
                // The picker is already out: the rest is a small tour of its own, closed to others.
                let now = self.now();
                self.new_tour(vec![f], again, now);
            }
        }
        self.retire_tour(task.tour);
        let ready = self
            .works
            .get(&f)
            .and_then(|w| w.lines.get(line))
            .is_some_and(|l| l.open == 0 && l.report == Report::Pending);
        if ready {
            self.report(myself, f, line, Some((id, answer)));
        } else {
            answer(Ok(Ok(finished)));
        }
    }

    /// The picker found only `found` units at `place`: it is empty after this pick.
    fn found_short(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        place: Place,
        sku: SkuId,
        found: u64,
        picking: &str,
    ) {
        let lost = match place {
            Place::Bin(location) => match self.slots.get_mut(&location) {
                Some(slot) => {
                    let lost = slot.qty.saturating_sub(found);
                    slot.qty = found.min(slot.qty);
                    lost
                }
                None => 0,
            },
            Place::Overflow => {
                let a = self.area(sku);
                // This pick's reservation is already released; other picks counting on the
                // overflow are re-planned below, so everything not found is lost.
                let lost = a.overflow.saturating_sub(found);
                a.overflow -= lost;
                lost
            }
        };
        self.area(sku).unfound += lost;
        let others: Vec<String> = self
            .tasks
            .values()
            .filter(|t| {
                t.kind == TaskKind::Pick
                    && t.status == TaskStatus::Open
                    && t.place == Some(place)
                    && t.id != picking
            })
            .map(|t| t.id.clone())
            .collect();
        for other in others {
            let task = self.tasks[&other].clone();
            self.unreserve(place, sku, task.qty.0);
            self.drop_task(&other);
            let (f, line) = (task.fulfilment, task.line);
            if let Some(l) = self.works.get_mut(&f).and_then(|w| w.lines.get_mut(line)) {
                l.open = l.open.saturating_sub(1);
            }
            let again = self.plan_picks(f, line, task.qty.0, Some(place));
            if !again.is_empty() {
                let now = self.now();
                self.new_tour(vec![f], again, now);
            }
            self.retire_tour(task.tour);
            self.report_idle_lines(myself, f);
        }
        self.write_off_unfound(myself, sku);
    }

    /// Forgets a tour once none of its picks is open.
    fn retire_tour(&mut self, tour: Option<u64>) {
        let Some(id) = tour else { return };
        let done = self.tours.get(&id).is_some_and(|t| {
            t.picks.iter().all(|p| {
                self.tasks
                    .get(p)
                    .is_none_or(|x| x.status != TaskStatus::Open)
            })
        });
        if done {
            self.tours.remove(&id);
        }
    }

    fn complete_putaway(&mut self, id: String, answer: Reply<Answer<Task>>) {
        let task = self.tasks[&id].clone();
        let (Some(Place::Bin(location)), Some(sku)) = (task.place, task.sku) else {
            return answer(Ok(Err(Refusal::Conflict(format!("task {id} has no bin")))));
        };
        let lot = Lot {
            received_at: self.now(),
            expires_at: None,
        };
        let slot = self.slots.entry(location).or_insert(Slot {
            sku,
            qty: 0,
            reserved: 0,
            incoming: 0,
            lot,
        });
        slot.incoming = slot.incoming.saturating_sub(task.qty.0);
        slot.qty += task.qty.0;
        let a = self.area(sku);
        a.dock = a.dock.saturating_sub(task.qty.0);
        match self.finish_task(&id, task.qty) {
            Some(done) => answer(Ok(Ok(done))),
            None => answer(Ok(Err(Refusal::NotFound(format!("task {id}"))))),
        }
    }

    /// Reports lines with nothing left to pick that have not been reported yet.
    fn report_idle_lines(&mut self, myself: &ActorRef<WarehouseMsg>, f: FulfilmentId) {
        let idle: Vec<usize> = self
            .works
            .get(&f)
            .map(|w| {
                (0..w.lines.len())
                    .filter(|&i| w.lines[i].open == 0 && w.lines[i].report == Report::Pending)
                    .collect()
            })
            .unwrap_or_default();
        for line in idle {
            self.report(myself, f, line, None);
        }
    }

    /// Tells the order how many units of a line were picked; fewer than asked is a short pick,
    /// which the order re-sources (and the stock point takes the missing units off on_hand).
    fn report(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        f: FulfilmentId,
        line: usize,
        waiter: Option<(String, Reply<Answer<Task>>)>,
    ) {
        let Some(work) = self.works.get_mut(&f) else {
            return;
        };
        let order = work.order;
        let l = &mut work.lines[line];
        debug_assert_eq!(
            l.picked + l.short,
            l.want,
            "every unit is picked or short once no pick is open"
        );
        l.report = Report::InFlight;
        let (sku, picked, short) = (l.sku, l.picked, l.short);
        self.area(sku).in_flight += short;
        let me = myself.clone();
        let message = OrderMsg::Step {
            step: Step::Picked {
                fulfilment: f,
                sku,
                qty: Qty(picked),
            },
            answer: reply_or_unavailable(move |result| {
                let _ = me.send_message(WarehouseMsg::LineReported {
                    fulfilment: f,
                    line,
                    result,
                    waiter,
                });
            }),
        };
        self.to_order(order, message);
    }

    fn line_reported(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        f: FulfilmentId,
        line: usize,
        result: Answer<()>,
        waiter: Option<(String, Reply<Answer<Task>>)>,
    ) {
        let task = waiter
            .as_ref()
            .and_then(|(id, _)| self.tasks.get(id).cloned());
        let answer = |outcome: Answer<Task>| {
            if let Some((_, answer)) = waiter {
                answer(outcome);
            }
        };
        let Some(l) = self.works.get_mut(&f).and_then(|w| w.lines.get_mut(line)) else {
            return answer(Ok(Err(Refusal::NotFound(f.to_string()))));
        };
        let (sku, short) = (l.sku, l.short);
        match result {
            Ok(Ok(())) => {
                l.report = Report::Done;
                let a = self.area(sku);
                a.in_flight = a.in_flight.saturating_sub(short);
                // The short units left on_hand at the stock point: write them off here too.
                self.reconcile(sku, OnHandCause::Adjustment);
                if short > 0 {
                    self.write_off_unfound(myself, sku);
                }
                self.after_lines(f);
                match task {
                    Some(task) => answer(Ok(Ok(task))),
                    None => answer(Ok(Err(Refusal::NotFound(format!("task of {f}"))))),
                }
            }
            Ok(Err(refusal)) => {
                warn!(fulfilment = %f, ?refusal, "the order refused a pick report");
                l.report = Report::Done;
                let a = self.area(sku);
                a.in_flight = a.in_flight.saturating_sub(short);
                if short > 0 {
                    self.write_off_unfound(myself, sku);
                }
                self.after_lines(f);
                answer(Ok(Err(refusal)));
            }
            Err(error) => {
                l.report = Report::Pending;
                l.attempts += 1;
                let attempts = l.attempts;
                let a = self.area(sku);
                a.in_flight = a.in_flight.saturating_sub(short);
                if attempts < REPORT_ATTEMPTS_MAX {
                    myself.send_after(Duration::from_millis(REPORT_RETRY_MS), move || {
                        WarehouseMsg::RetryReport {
                            fulfilment: f,
                            line,
                        }
                    });
                } else {
                    warn!(fulfilment = %f, %error, "pick report given up; the order needs staff");
                }
                answer(Err(error));
            }
        }
    }

    /// Once every line is reported: a pack task for what was picked, or nothing if all of it
    /// came up short (the order re-sourced it).
    fn after_lines(&mut self, f: FulfilmentId) {
        let Some(work) = self.works.get(&f) else {
            return;
        };
        if work.stage != Stage::Picking || work.lines.iter().any(|l| l.report != Report::Done) {
            return;
        }
        let picked: u64 = work.lines.iter().map(|l| l.picked).sum();
        if picked == 0 {
            self.works.remove(&f);
            return;
        }
        let as_planned = !work.cartons.is_empty() && work.lines.iter().all(|l| l.picked == l.want);
        let cartons = if as_planned {
            work.cartons.clone()
        } else {
            // Fewer units than planned (or a restart): the pack bench re-cartonizes what it got.
            let lines: Vec<(SkuId, u64)> = work.lines.iter().map(|l| (l.sku, l.picked)).collect();
            self.plan_cartons(f, &lines)
        };
        let order = work.order;
        let mut task = blank_task(format!("{f}.pack"), TaskKind::Pack, self.stock_point);
        task.order = order;
        task.fulfilment = f;
        task.qty = Qty(picked);
        task.carton = (!cartons.is_empty()).then(|| {
            cartons
                .iter()
                .map(|c| c.label.clone())
                .collect::<Vec<_>>()
                .join("+")
        });
        if let Some(w) = self.works.get_mut(&f) {
            w.stage = Stage::Packing;
            w.cartons = cartons;
        }
        self.enqueue_alone(task);
    }

    fn add_ship(&mut self, f: FulfilmentId) {
        let Some(work) = self.works.get_mut(&f) else {
            return;
        };
        work.stage = Stage::Shipping;
        let weight_g: u64 = work
            .lines
            .iter()
            .map(|l| u64::from(sku_profile(l.sku).1) * l.picked)
            .sum();
        let carrier = carrier_for(work.cartons.len().max(1), weight_g);
        let mut task = blank_task(format!("{f}.ship"), TaskKind::Ship, self.stock_point);
        task.order = work.order;
        task.fulfilment = f;
        task.qty = Qty(work.lines.iter().map(|l| l.picked).sum());
        task.carton = (!work.cartons.is_empty()).then(|| {
            work.cartons
                .iter()
                .map(|c| c.label.clone())
                .collect::<Vec<_>>()
                .join("+")
        });
        task.carrier = Some(carrier.into());
        task.dock = Some(dock_for(carrier).into());
        self.enqueue_alone(task);
    }

    /// Puts a task that is not part of a tour at the end of the queue.
    fn enqueue_alone(&mut self, mut task: Task) {
        if self.tasks.contains_key(&task.id) {
            return;
        }
        task.sequence = self.next_block << POSITION_BITS;
        self.next_block += 1;
        self.queue.insert(task.sequence, task.id.clone());
        self.tasks.insert(task.id.clone(), task);
    }

    /// Pack and ship tasks confirm to the order first and count as done only once it agrees.
    fn send_step(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        id: String,
        answer: Reply<Answer<Task>>,
    ) {
        let task = self.tasks[&id].clone();
        let f = task.fulfilment;
        let Some(work) = self.works.get(&f) else {
            self.drop_task(&id);
            return answer(Ok(Err(Refusal::NotFound(f.to_string()))));
        };
        let step = match task.kind {
            TaskKind::Ship => {
                let carrier = task
                    .carrier
                    .clone()
                    .unwrap_or_else(|| CARRIER_COURIER.into());
                let weight_g = work
                    .lines
                    .iter()
                    .map(|l| u64::from(sku_profile(l.sku).1) * l.picked)
                    .sum();
                let label = self.config.carrier.label(&ShipmentRequest {
                    order: task.order,
                    fulfilment: f,
                    carrier,
                    cartons: work.cartons.len().max(1),
                    weight_g,
                });
                let lines: Vec<(SkuId, u64)> =
                    work.lines.iter().map(|l| (l.sku, l.picked)).collect();
                for (sku, picked) in lines {
                    self.area(sku).in_flight += picked;
                }
                if let Some(t) = self.tasks.get_mut(&id) {
                    t.tracking = Some(label.tracking.clone());
                }
                Step::Shipped {
                    fulfilment: f,
                    carrier: label.carrier,
                    tracking: label.tracking,
                }
            }
            _ => Step::Packed { fulfilment: f },
        };
        if let Some(t) = self.tasks.get_mut(&id) {
            t.status = TaskStatus::Completing;
        }
        let me = myself.clone();
        let order = task.order;
        let message = OrderMsg::Step {
            step,
            answer: reply_or_unavailable(move |result| {
                let _ = me.send_message(WarehouseMsg::StepDone {
                    task: id,
                    result,
                    answer,
                });
            }),
        };
        self.to_order(order, message);
    }

    /// Sends a report to its order through the desk of the moment. The reports' replies answer
    /// "unavailable" when dropped unanswered (`reply_or_unavailable`), so a report that cannot
    /// be sent, or is lost in a failed mailbox, puts its task back to open instead of leaving
    /// it in flight.
    fn to_order(&self, order: OrderId, message: OrderMsg) {
        let desk = self.desk.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let sent =
            desk.is_some_and(|desk| desk.send_message(DeskMsg::ToOrder(order, message)).is_ok());
        if !sent {
            warn!(%order, "order desk stopped; the report goes back to open");
        }
    }

    fn step_done(&mut self, id: &str, result: Answer<()>) -> Answer<Task> {
        let Some(task) = self.tasks.get(id).cloned() else {
            return Ok(Err(Refusal::NotFound(format!("task {id}"))));
        };
        let f = task.fulfilment;
        let lines: Vec<(SkuId, u64)> = self
            .works
            .get(&f)
            .map(|w| w.lines.iter().map(|l| (l.sku, l.picked)).collect())
            .unwrap_or_default();
        if task.kind == TaskKind::Ship {
            for (sku, picked) in &lines {
                let a = self.area(*sku);
                a.in_flight = a.in_flight.saturating_sub(*picked);
            }
        }
        if !matches!(result, Ok(Ok(()))) {
            if !self.works.contains_key(&f) {
                self.drop_task(id);
            } else if let Some(t) = self.tasks.get_mut(id) {
                t.status = TaskStatus::Open;
                t.tracking = None;
            }
            return result.map(|r| r.map(|()| task));
        }
        let done = self.finish_task(id, task.qty).unwrap_or(task);
        match done.kind {
            TaskKind::Pack => self.add_ship(f),
            TaskKind::Ship => {
                let day = self.now().0 / DAY_MS;
                for (sku, picked) in lines {
                    let a = self.area(sku);
                    a.outbound = a.outbound.saturating_sub(picked);
                    if picked > 0 {
                        let history = self.demand.entry(sku).or_default();
                        *history.entry(day).or_default() += picked;
                        history.retain(|d, _| d + DEMAND_DAYS_MAX > day);
                    }
                    self.reconcile(sku, OnHandCause::Adjustment);
                }
                self.works.remove(&f);
            }
            TaskKind::Pick | TaskKind::Putaway => {}
        }
        Ok(Ok(done))
    }

    /// The order was cancelled: its open work goes, and units already picked go back to
    /// storage through the dock.
    fn cancel(&mut self, myself: &ActorRef<WarehouseMsg>, order: OrderId) {
        let mut gone: Vec<FulfilmentId> = self
            .works
            .iter()
            .filter(|(_, w)| w.order == order)
            .map(|(f, _)| *f)
            .collect();
        gone.sort();
        for f in gone {
            self.drop_work(myself, f);
        }
    }

    /// Makes the work match the fulfilments the orders say are open here: admits the missing
    /// ones (as a release would) and drops work no order has open any more (as a cancel
    /// would). Sent by a restarted order desk, whose killed order actors may have held release
    /// or cancel notices this warehouse never got.
    fn reconcile_work(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        open: Vec<(OrderId, Fulfilment)>,
    ) {
        let keep: FxHashSet<FulfilmentId> = open.iter().map(|(_, f)| f.id).collect();
        let mut gone: Vec<FulfilmentId> = self
            .works
            .keys()
            .filter(|f| !keep.contains(f))
            .copied()
            .collect();
        gone.sort();
        for f in gone {
            self.drop_work(myself, f);
        }
        for (order, fulfilment) in &open {
            self.rebuild(myself, *order, fulfilment);
        }
    }

    /// Drops a fulfilment's work: its open tasks go, and what was picked for it goes back.
    fn drop_work(&mut self, myself: &ActorRef<WarehouseMsg>, f: FulfilmentId) {
        {
            let open: Vec<Task> = self
                .tasks
                .values()
                .filter(|t| {
                    t.fulfilment == f && t.kind != TaskKind::Putaway && t.status == TaskStatus::Open
                })
                .cloned()
                .collect();
            for task in open {
                if let (TaskKind::Pick, Some(place), Some(sku)) = (task.kind, task.place, task.sku)
                {
                    self.unreserve(place, sku, task.qty.0);
                }
                self.drop_task(&task.id);
                self.retire_tour(task.tour);
            }
            let Some(work) = self.works.remove(&f) else {
                return;
            };
            let order = work.order;
            for line in work.lines.iter().filter(|l| l.picked > 0) {
                let a = self.area(line.sku);
                a.outbound = a.outbound.saturating_sub(line.picked);
                self.receive_to_dock(line.sku, line.picked, Some((order, f)));
            }
            // Short units this order will not report now, and its allocation is released.
            for line in work.lines.iter().filter(|l| l.short > 0) {
                self.write_off_unfound(myself, line.sku);
            }
            self.pool.retain(|p| *p != f);
            for tour in self.tours.values_mut() {
                tour.fulfilments.retain(|p| *p != f);
            }
        }
    }

    // --- replenishment ----------------------------------------------------------------------

    /// Per SKU with demand: classify, forecast by class, suggest a reorder point.
    fn replenishment(&self) -> Vec<Replenishment> {
        let today = self.now().0 / DAY_MS;
        let options = ForecastOptions {
            alpha: self.config.alpha,
        };
        let mut out: Vec<Replenishment> = self
            .demand
            .iter()
            .filter_map(|(sku, days)| {
                let first = *days.keys().next()?;
                let history: Vec<u64> = (first..=today.max(first))
                    .map(|d| days.get(&d).copied().unwrap_or(0))
                    .collect();
                let fc = forecast(&history, &options).ok()?;
                let point =
                    reorder_point(&fc, self.config.lead_time_days, self.config.service_factor)
                        .ok()?;
                let on_hand = self.on_hand(*sku);
                Some(Replenishment {
                    sku: *sku,
                    on_hand: Qty(on_hand),
                    class: fc.profile.class,
                    method: fc.method,
                    per_day: fc.per_period,
                    reorder_point: point,
                    reorder: on_hand <= point,
                    history_days: history.len(),
                })
            })
            .collect();
        out.sort_by_key(|r| r.sku);
        out
    }

    // --- simulated workers ------------------------------------------------------------------

    fn wake_worker(&mut self, myself: &ActorRef<WarehouseMsg>) {
        let Some(config) = self.workers else { return };
        if self.worker_busy {
            return;
        }
        let next = self
            .queue
            .values()
            .filter_map(|id| self.tasks.get(id))
            .find(|t| t.status == TaskStatus::Open);
        let Some(task) = next else { return };
        self.worker_busy = true;
        let walk_ms = task.walk_cm.unwrap_or(0) * config.walk_ms_per_m / 100;
        let delay = match task.kind {
            TaskKind::Pick => config.pick_ms + walk_ms,
            TaskKind::Putaway => config.putaway_ms + walk_ms,
            TaskKind::Pack => config.pack_ms,
            TaskKind::Ship => config.ship_ms,
        };
        if let Some(tour) = task.tour.and_then(|t| self.tours.get_mut(&t)) {
            tour.started = true;
        }
        let id = task.id.clone();
        let gate = crate::mailbox::Gate::default();
        let me = myself.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let Ok(ticket) = gate.ticket() else { return };
            let free = me.clone();
            let message = WarehouseMsg::Complete {
                task: id,
                qty: None,
                answer: reply(move |_: Answer<Task>| {
                    let _ = free.send_message(WarehouseMsg::WorkerFree);
                }),
                ticket,
            };
            let _ = me.send_message(message);
        });
    }
}

/// Shared so that the conductor can wait on the warehouses at shutdown.
pub type Warehouses = Arc<crate::directory::Directory<WarehouseMsg>>;
