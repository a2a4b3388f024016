//! The warehouse actor, the WMS executor of one stock point: it turns released fulfilments into
//! pick, pack and ship tasks in sequence, takes completions (from staff over the API or from
//! simulated workers), and confirms each step back to the order.
//!
//! Sequencing is deliberately simple here: pick tasks follow an S-shaped walk over bins derived
//! from the SKU. Tasks are derived state: after a restart they are rebuilt from the orders.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use conductor_engine::hash::FxHashMap;
use conductor_engine::ids::{FulfilmentId, OrderId, Qty, SkuId, StockPointId};
use conductor_engine::order::{Fulfilment, FulfilmentStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tracing::warn;

use crate::error::{invalid, Answer, Refusal};
use crate::mailbox::Ticket;
use crate::orders::{DeskMsg, OrderMsg, Step};
use crate::stock_point::{reply, Reply};

/// Completed tasks remembered so that completing one again is a clear 409.
pub const COMPLETED_TASKS_KEPT_MAX: usize = 100_000;
/// Aisles and slots of the simple layout used to place SKUs in bins.
const AISLES: u32 = 10;
const SLOTS_PER_AISLE: u32 = 30;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Pick,
    Pack,
    Ship,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Open,
    Completing,
    Completed,
}

#[derive(Clone, Debug, Serialize)]
pub struct Task {
    /// `F-<fulfilment>.<kind>[.<line>]`: derived, so a rebuilt task keeps its id.
    pub id: String,
    pub kind: TaskKind,
    pub order: OrderId,
    pub fulfilment: FulfilmentId,
    pub stock_point: StockPointId,
    /// Position in this warehouse's work queue; lower first.
    pub sequence: u64,
    pub sku: Option<SkuId>,
    pub qty: Qty,
    /// Where to pick from, `A<aisle>-S<slot>`.
    pub bin: Option<String>,
    /// Position of the bin on the pick path.
    pub path_position: Option<u32>,
    pub status: TaskStatus,
    /// Units actually picked, once completed.
    pub done_qty: Option<Qty>,
}

/// How fast simulated workers complete tasks.
#[derive(Clone, Copy, Debug)]
pub struct WorkerConfig {
    pub pick_ms: u64,
    pub pack_ms: u64,
    pub ship_ms: u64,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            pick_ms: 200,
            pack_ms: 300,
            ship_ms: 300,
        }
    }
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
    StepDone {
        task: String,
        qty: Qty,
        result: Answer<()>,
        answer: Reply<Answer<Task>>,
    },
    /// A simulated worker is free for the next task.
    WorkerFree,
}

pub struct WarehouseActor;

pub struct WarehouseArgs {
    pub stock_point: StockPointId,
    pub desk: ActorRef<DeskMsg>,
    /// Fulfilments already released here, to rebuild tasks after a restart.
    pub released: Vec<(OrderId, Fulfilment)>,
    pub workers: Option<WorkerConfig>,
}

pub struct WarehouseState {
    stock_point: StockPointId,
    desk: ActorRef<DeskMsg>,
    tasks: FxHashMap<String, Task>,
    /// Open and completing tasks by sequence, so the list comes out in work order.
    queue: BTreeMap<u64, String>,
    completed: std::collections::VecDeque<String>,
    next_sequence: u64,
    /// Units picked so far per fulfilment, and picks still open.
    picking: FxHashMap<FulfilmentId, (Qty, usize)>,
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
        let mut state = WarehouseState {
            stock_point: args.stock_point,
            desk: args.desk,
            tasks: FxHashMap::default(),
            queue: BTreeMap::new(),
            completed: std::collections::VecDeque::new(),
            next_sequence: 0,
            picking: FxHashMap::default(),
            workers: args.workers,
            worker_busy: false,
        };
        for (order, fulfilment) in args.released {
            state.rebuild(order, &fulfilment);
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
                state.rebuild(order, &fulfilment);
            }
            WarehouseMsg::Cancelled { order, ticket } => {
                drop(ticket);
                let gone: Vec<String> = state
                    .tasks
                    .values()
                    .filter(|t| t.order == order && t.status == TaskStatus::Open)
                    .map(|t| t.id.clone())
                    .collect();
                for id in gone {
                    if let Some(task) = state.tasks.remove(&id) {
                        state.queue.remove(&task.sequence);
                        state.picking.remove(&task.fulfilment);
                    }
                }
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
                qty,
                result,
                answer,
            } => {
                let outcome = state.step_done(&task, qty, result);
                answer(outcome);
                if state.workers.is_some() {
                    state.worker_busy = false;
                }
            }
            WarehouseMsg::WorkerFree => {
                state.worker_busy = false;
            }
        }
        state.wake_worker(&myself);
        Ok(())
    }
}

/// Where a SKU lives in the simple layout: aisle, slot, and its position on an S-shaped path
/// (up odd aisles, down even ones).
fn bin_of(sku: SkuId) -> (String, u32) {
    let aisle = sku.0 % AISLES;
    let slot = (sku.0 / AISLES) % SLOTS_PER_AISLE;
    let along = if aisle % 2 == 0 {
        slot
    } else {
        SLOTS_PER_AISLE - 1 - slot
    };
    (format!("A{aisle}-S{slot}"), aisle * SLOTS_PER_AISLE + along)
}

impl WarehouseState {
    fn add(&mut self, mut task: Task) {
        if self.tasks.contains_key(&task.id) {
            return;
        }
        task.sequence = self.next_sequence;
        self.next_sequence += 1;
        self.queue.insert(task.sequence, task.id.clone());
        self.tasks.insert(task.id.clone(), task);
    }

    fn task(&self, order: OrderId, f: &Fulfilment, kind: TaskKind, suffix: &str) -> Task {
        let name = match kind {
            TaskKind::Pick => "pick",
            TaskKind::Pack => "pack",
            TaskKind::Ship => "ship",
        };
        Task {
            id: format!("{}.{name}{suffix}", f.id),
            kind,
            order,
            fulfilment: f.id,
            stock_point: self.stock_point,
            sequence: 0,
            sku: None,
            qty: f.lines.iter().map(|l| l.picked).sum(),
            bin: None,
            path_position: None,
            status: TaskStatus::Open,
            done_qty: None,
        }
    }

    /// Creates the tasks a fulfilment needs next, given how far it has got.
    fn rebuild(&mut self, order: OrderId, f: &Fulfilment) {
        match f.status {
            FulfilmentStatus::Released | FulfilmentStatus::Picking => {
                let mut picks: Vec<(u32, Task)> = f
                    .lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !l.remaining().is_zero())
                    .map(|(i, line)| {
                        let (bin, position) = bin_of(line.sku);
                        let mut task = self.task(order, f, TaskKind::Pick, &format!(".{i}"));
                        task.sku = Some(line.sku);
                        task.qty = line.remaining();
                        task.bin = Some(bin);
                        task.path_position = Some(position);
                        (position, task)
                    })
                    .collect();
                picks.sort_by_key(|(position, _)| *position);
                let picked: Qty = f.lines.iter().map(|l| l.picked).sum();
                self.picking.insert(f.id, (picked, picks.len()));
                if picks.is_empty() {
                    self.after_picks(order, f.id);
                }
                for (_, task) in picks {
                    self.add(task);
                }
            }
            FulfilmentStatus::Picked => self.add(self.task(order, f, TaskKind::Pack, "")),
            FulfilmentStatus::Packed => self.add(self.task(order, f, TaskKind::Ship, "")),
            _ => {}
        }
    }

    fn after_picks(&mut self, order: OrderId, f: FulfilmentId) {
        let Some((picked, _)) = self.picking.remove(&f) else {
            return;
        };
        // Nothing picked at all: the whole fulfilment came up short and was re-sourced.
        if picked.is_zero() {
            return;
        }
        let mut task = Task {
            id: format!("{f}.pack"),
            kind: TaskKind::Pack,
            order,
            fulfilment: f,
            stock_point: self.stock_point,
            sequence: 0,
            sku: None,
            qty: picked,
            bin: None,
            path_position: None,
            status: TaskStatus::Open,
            done_qty: None,
        };
        task.qty = picked;
        self.add(task);
    }

    fn complete(
        &mut self,
        myself: &ActorRef<WarehouseMsg>,
        id: String,
        qty: Option<Qty>,
        answer: Reply<Answer<Task>>,
    ) {
        let Some(task) = self.tasks.get_mut(&id) else {
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
        task.status = TaskStatus::Completing;
        let step = match task.kind {
            TaskKind::Pick => Step::Picked {
                fulfilment: task.fulfilment,
                sku: task.sku.unwrap_or(SkuId(0)),
                qty: done,
            },
            TaskKind::Pack => Step::Packed {
                fulfilment: task.fulfilment,
            },
            TaskKind::Ship => Step::Shipped {
                fulfilment: task.fulfilment,
                carrier: carrier_for(task.qty).into(),
                tracking: format!("SIM{}{}", task.order.0, task.fulfilment.0),
            },
        };
        let me = myself.clone();
        let order = task.order;
        let message = OrderMsg::Step {
            step,
            answer: reply(move |result| {
                let _ = me.send_message(WarehouseMsg::StepDone {
                    task: id,
                    qty: done,
                    result,
                    answer,
                });
            }),
        };
        if let Err(error) = self.desk.send_message(DeskMsg::ToOrder(order, message)) {
            warn!(%order, %error, "order desk stopped");
        }
    }

    fn step_done(&mut self, id: &str, qty: Qty, result: Answer<()>) -> Answer<Task> {
        let Some(task) = self.tasks.get_mut(id) else {
            return Ok(Err(Refusal::NotFound(format!("task {id}"))));
        };
        match result {
            Ok(Ok(())) => {}
            other => {
                task.status = TaskStatus::Open;
                return other.map(|r| r.map(|()| task.clone()));
            }
        }
        task.status = TaskStatus::Completed;
        task.done_qty = Some(qty);
        let done = task.clone();
        self.queue.remove(&done.sequence);
        self.completed.push_back(done.id.clone());
        while self.completed.len() > COMPLETED_TASKS_KEPT_MAX {
            if let Some(old) = self.completed.pop_front() {
                self.tasks.remove(&old);
            }
        }
        match done.kind {
            TaskKind::Pick => {
                let finished = match self.picking.get_mut(&done.fulfilment) {
                    Some((picked, open)) => {
                        *picked += qty;
                        *open = open.saturating_sub(1);
                        *open == 0
                    }
                    None => false,
                };
                if finished {
                    self.after_picks(done.order, done.fulfilment);
                }
            }
            TaskKind::Pack => {
                let mut ship = done.clone();
                ship.id = format!("{}.ship", done.fulfilment);
                ship.kind = TaskKind::Ship;
                ship.status = TaskStatus::Open;
                ship.done_qty = None;
                self.add(ship);
            }
            TaskKind::Ship => {}
        }
        Ok(Ok(done))
    }

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
        let delay = match task.kind {
            TaskKind::Pick => config.pick_ms,
            TaskKind::Pack => config.pack_ms,
            TaskKind::Ship => config.ship_ms,
        };
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
                answer: reply(move |r: Answer<Task>| {
                    if !matches!(r, Ok(Ok(_))) {
                        let _ = free.send_message(WarehouseMsg::WorkerFree);
                    }
                }),
                ticket,
            };
            let _ = me.send_message(message);
        });
    }
}

/// The simulated carrier adapter's rule: small parcels by post, the rest by courier.
fn carrier_for(units: Qty) -> &'static str {
    if units.0 <= 3 {
        "sim-post"
    } else {
        "sim-courier"
    }
}

/// Shared so that the conductor can wait on the warehouses at shutdown.
pub type Warehouses = Arc<crate::directory::Directory<WarehouseMsg>>;
