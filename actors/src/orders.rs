//! Orders: one actor per live order drives its lifecycle; the desk routes messages to them,
//! starts an actor when a message arrives for an order that has none, and keeps the state of
//! orders whose actor has gone idle (passivated), so that a million open orders do not need a
//! million live tasks. The desk also keeps customer returns.
//!
//! An order actor handles one command at a time and waits (asynchronously, with a timeout) for
//! each durable step, so an order's events are logged in the order they were decided.
//!
//! Supervision: each live order has a durable copy ([`DurableOrder`]), shared with the desk and
//! updated by the log's acknowledgement, so it holds exactly what is durable even when the actor
//! timed out waiting; it also counts the appends still in flight. An actor that panics is
//! restarted from that copy once nothing is in flight, at most
//! [`RESTARTS_MAX`](crate::conductor::RESTARTS_MAX) times in
//! [`RESTART_WINDOW`](crate::conductor::RESTART_WINDOW); then the order stays down and refuses commands until the next start (or a restart of the
//! desk, which rebuilds every order from the log).
//! Passivation is the desk's decision: an idle actor asks, and the desk stops it only if it is
//! still that order's actor, has handled every message the desk routed there, and has nothing
//! in flight, so that no command is lost in a stopping mailbox and no late acknowledgement is
//! lost with it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use conductor_engine::hash::FxHashMap;
use conductor_engine::ids::{FulfilmentId, OrderId, Qty, ReturnId, SkuId, StockPointId};
use conductor_engine::inventory::Source;
use conductor_engine::network::{Location, Network};
use conductor_engine::order::{
    self, Allocation, Fulfilment, FulfilmentStatus, Order, OrderError, OrderEvent, PickOutcome,
};
use conductor_engine::returns::{self, ReturnEvent, ReturnLine, ReturnPolicy, ReturnRecord};
use conductor_engine::state::Event;
use conductor_engine::time::Timestamp;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{debug, error, warn};

use crate::call::{ask, log_durably_then, poll_until, CALL_TIMEOUT};
use crate::clock::Clock;
use crate::conductor::may_restart;
use crate::directory::Directory;
use crate::error::{invalid, Answer, CommandError, Refusal};
use crate::orchestrator::OrchestratorMsg;
use crate::stock_point::{reply, OnDurable, Reply, StockCommand, StockPointMsg};
use crate::warehouse::WarehouseMsg;
use crate::Log;

/// How long an order actor waits without a message before it passivates, by default.
pub const ORDER_IDLE_DEFAULT: Duration = Duration::from_secs(30);
/// How long a failed release or re-sourcing, or a notice a warehouse could not take, waits
/// before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A notice for a warehouse that could not be delivered (it was down or restarting): sent again
/// with the next retry. At most one per fulfilment and stock point of the order.
#[derive(Clone, Copy, Debug)]
enum Undelivered {
    Release(FulfilmentId),
    Cancelled(StockPointId),
}

/// A step reported by a warehouse.
#[derive(Clone, Debug)]
pub enum Step {
    Picked {
        fulfilment: FulfilmentId,
        sku: SkuId,
        qty: Qty,
    },
    Packed {
        fulfilment: FulfilmentId,
    },
    Shipped {
        fulfilment: FulfilmentId,
        carrier: String,
        tracking: String,
    },
}

pub enum OrderMsg {
    /// Hand every allocated fulfilment to its warehouse (the wave for this order).
    Release,
    Step {
        step: Step,
        answer: Reply<Answer<()>>,
    },
    Cancel {
        answer: Reply<Answer<Order>>,
    },
    OpenReturn {
        ret: ReturnId,
        lines: Vec<ReturnLine>,
        drop_off: Option<StockPointId>,
        answer: Reply<Answer<ReturnRecord>>,
    },
    /// The order, answered to the desk's caller directly (the desk does not wait for it).
    Get(RpcReplyPort<Option<Order>>),
    IdleCheck,
    /// A failed release, re-sourcing or notice, tried again (sent by the actor to itself, not
    /// routed by the desk).
    Retry,
    /// Re-source what short picks left outstanding: sent by the desk when it starts, for the
    /// orders whose re-sourcing a crash cut short.
    Resume,
    /// Test hook: the actor panics, to exercise supervision.
    Crash,
}

pub enum DeskMsg {
    /// A confirmed order, durable: start it and release it after the wave window.
    Start(Order),
    /// Sends to an order's actor, starting it from its passivated state if needed.
    ToOrder(OrderId, OrderMsg),
    Get(OrderId, RpcReplyPort<Option<Order>>),
    /// An order's actor (`actor`) has been idle; `handled` counts the messages it has handled.
    Idle {
        order: OrderId,
        actor: ActorId,
        handled: u64,
    },
    OpenReturn {
        order: OrderId,
        lines: Vec<ReturnLine>,
        drop_off: Option<StockPointId>,
        answer: Reply<Answer<ReturnRecord>>,
    },
    ReturnOpened(ReturnRecord),
    ReceiveReturn {
        ret: ReturnId,
        answer: Reply<Answer<ReturnRecord>>,
    },
    GetReturn(ReturnId, RpcReplyPort<Option<ReturnRecord>>),
    StockPointAdded(Box<conductor_engine::network::StockPoint>),
    /// Live and passivated order counts.
    Counts(RpcReplyPort<OrderCounts>),
    /// Test hook: makes a live order's actor panic.
    CrashOrder(OrderId),
    /// Test hook: makes the desk itself panic.
    Crash,
    /// The fulfilments a stock point's warehouse has open, to rebuild its tasks.
    ReleasedAt(StockPointId, RpcReplyPort<Vec<(OrderId, Fulfilment)>>),
}

impl OrderMsg {
    /// Whether the desk sent it (and counts it as routed): the actor's own timers and the test
    /// hook are not.
    fn is_routed(&self) -> bool {
        !matches!(
            self,
            OrderMsg::IdleCheck | OrderMsg::Retry | OrderMsg::Crash
        )
    }
}

/// How many orders have an actor, how many are passivated, how many are down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderCounts {
    pub live: usize,
    pub passivated: usize,
    pub down: usize,
}

/// What every order actor shares.
#[derive(Clone)]
pub struct OrderContext {
    pub stock_points: Arc<Directory<StockPointMsg>>,
    pub warehouses: Arc<Directory<WarehouseMsg>>,
    /// The orchestrator of the moment: the supervisor puts a restarted one here.
    pub orchestrator: Arc<Mutex<Option<ActorRef<OrchestratorMsg>>>>,
    pub log: Log,
    pub clock: Arc<dyn Clock>,
    pub wave_window: Duration,
    pub order_idle: Duration,
    /// Failed actors, counted for the metrics (shared with the supervisor's count).
    pub failures: Arc<AtomicU64>,
    /// Order actors whose task has not ended yet: a restarted desk waits until its failed
    /// predecessor's actors are all gone before it reads the log.
    pub actors: Arc<AtomicUsize>,
}

/// Counts an order actor from its start until its state is dropped, which is when its task
/// ends, whether it stopped, failed or was killed with its desk.
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(actors: &Arc<AtomicUsize>) -> Alive {
        actors.fetch_add(1, Ordering::AcqRel);
        Alive(actors.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub struct OrderDesk;

pub struct DeskArgs {
    pub context: OrderContext,
    pub orders: FxHashMap<OrderId, Order>,
    pub returns: FxHashMap<ReturnId, ReturnRecord>,
    pub next_return: u64,
    pub network: Network,
    pub policy: ReturnPolicy,
}

pub struct DeskState {
    context: OrderContext,
    live: FxHashMap<OrderId, LiveOrder>,
    resting: FxHashMap<OrderId, Order>,
    /// Orders whose actor failed too often: readable, refusing commands.
    down: FxHashMap<OrderId, Order>,
    returns: FxHashMap<ReturnId, ReturnRecord>,
    /// Returns whose last change's answer was lost: settled before their next change.
    unsettled: FxHashMap<ReturnId, Arc<Landing>>,
    next_return: u64,
    network: Network,
    policy: ReturnPolicy,
}

/// An order with an actor.
struct LiveOrder {
    actor: ActorRef<OrderMsg>,
    /// What is durable of the order: the actor's restart point.
    durable: Arc<DurableOrder>,
    /// Messages sent to this actor (it counts those it handles).
    routed: u64,
    /// When its actors failed recently.
    failures: Vec<Instant>,
}

/// What the log has acknowledged of an order, how many of its appends are still in flight,
/// and how many of the messages the desk routed to its actor the actor has handled.
struct DurableOrder {
    order: Mutex<Order>,
    in_flight: AtomicU64,
    handled: AtomicU64,
}

impl DurableOrder {
    fn new(order: Order) -> DurableOrder {
        DurableOrder {
            order: Mutex::new(order),
            in_flight: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> Order {
        lock(&self.order).clone()
    }

    fn settled(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Waits (at most [`CALL_TIMEOUT`]) until no append is in flight; false if one still is.
    async fn wait_settled(&self) -> bool {
        poll_until(Instant::now() + CALL_TIMEOUT, || self.settled()).await
    }

    fn handled(&self) -> u64 {
        self.handled.load(Ordering::Acquire)
    }

    fn count_handled(&self) {
        self.handled.fetch_add(1, Ordering::AcqRel);
    }
}

/// One append of an order, counted in flight from creation until dropped: after its
/// acknowledgement is applied, or with the callback when the log refuses or fails the append.
struct InFlight(Arc<DurableOrder>);

impl InFlight {
    fn new(durable: Arc<DurableOrder>) -> InFlight {
        durable.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(durable)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Actor for OrderDesk {
    type Msg = DeskMsg;
    type State = DeskState;
    type Arguments = DeskArgs;

    async fn pre_start(
        &self,
        _: ActorRef<DeskMsg>,
        args: DeskArgs,
    ) -> Result<DeskState, ActorProcessingErr> {
        Ok(DeskState {
            context: args.context,
            live: FxHashMap::default(),
            resting: args.orders,
            down: FxHashMap::default(),
            returns: args.returns,
            unsettled: FxHashMap::default(),
            next_return: args.next_return,
            network: args.network,
            policy: args.policy,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<DeskMsg>,
        state: &mut DeskState,
    ) -> Result<(), ActorProcessingErr> {
        let owed = state
            .resting
            .values()
            .filter(|o| o.shortages.iter().any(|s| !s.outstanding().is_zero()) && !o.cancelled);
        for order in owed {
            let _ = myself.send_message(DeskMsg::ToOrder(order.id, OrderMsg::Resume));
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<DeskMsg>,
        message: DeskMsg,
        state: &mut DeskState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            DeskMsg::Start(order) => {
                let id = order.id;
                if state.knows(id) {
                    // A restarted desk read it from the log and was also handed it.
                    return Ok(());
                }
                let wave_window = state.context.wave_window;
                let live = state.spawn(&myself, order, Vec::new()).await?;
                live.routed += 1;
                live.actor.send_after(wave_window, || OrderMsg::Release);
                debug!(order = %id, "order started");
            }
            DeskMsg::ToOrder(id, message) => {
                if state.down.contains_key(&id) {
                    decline(message, || Declined::Failed(down(id)));
                } else {
                    match state.actor(&myself, id).await? {
                        Some(live) => {
                            live.routed += 1;
                            if let Err(error) = live.actor.send_message(message) {
                                warn!(order = %id, %error, "order actor gone");
                            }
                        }
                        None => {
                            decline(message, || missing(id));
                        }
                    }
                }
            }
            DeskMsg::Get(id, reply) => match state.live.get_mut(&id) {
                Some(live) => {
                    live.routed += 1;
                    if let Err(error) = live.actor.send_message(OrderMsg::Get(reply)) {
                        warn!(order = %id, %error, "order actor gone");
                    }
                }
                None => {
                    let order = state.resting.get(&id).or_else(|| state.down.get(&id));
                    let _ = reply.send(order.cloned());
                }
            },
            DeskMsg::Idle {
                order,
                actor,
                handled,
            } => state.passivate(order, actor, handled),
            DeskMsg::OpenReturn {
                order,
                lines,
                drop_off,
                answer,
            } => {
                if state.down.contains_key(&order) {
                    answer(Err(down(order)));
                    return Ok(());
                }
                let ret = ReturnId(state.next_return);
                state.next_return += 1;
                match state.actor(&myself, order).await? {
                    Some(live) => {
                        let me = myself.clone();
                        let message = OrderMsg::OpenReturn {
                            ret,
                            lines,
                            drop_off,
                            answer: reply(move |r: Answer<ReturnRecord>| {
                                if let Ok(Ok(record)) = &r {
                                    let _ = me.send_message(DeskMsg::ReturnOpened(record.clone()));
                                }
                                answer(r)
                            }),
                        };
                        live.routed += 1;
                        if live.actor.send_message(message).is_err() {
                            warn!(%order, "order actor gone");
                        }
                    }
                    None => answer(Ok(Err(Refusal::NotFound(order.to_string())))),
                }
            }
            DeskMsg::ReturnOpened(record) => {
                state.returns.insert(record.id, record);
            }
            DeskMsg::ReceiveReturn { ret, answer } => {
                let result = state.receive_return(ret).await;
                answer(result);
            }
            DeskMsg::GetReturn(ret, reply) => {
                // Still unsettled: the record as last known.
                let _ = state.settle(ret);
                let _ = reply.send(state.returns.get(&ret).cloned());
            }
            DeskMsg::StockPointAdded(sp) => state.network.upsert(*sp),
            DeskMsg::Counts(reply) => {
                let _ = reply.send(OrderCounts {
                    live: state.live.len(),
                    passivated: state.resting.len(),
                    down: state.down.len(),
                });
            }
            DeskMsg::ReleasedAt(sp, reply) => {
                let mut released =
                    released_at(state.resting.values().chain(state.down.values()), sp);
                let live: Vec<(Arc<DurableOrder>, u64)> = state
                    .live
                    .values()
                    .map(|l| (l.durable.clone(), l.routed))
                    .collect();
                // Every message routed so far, a failed warehouse's last reports among them,
                // handled and durable first; off the desk, which goes on routing meanwhile.
                tokio::spawn(async move {
                    // Half the caller's timeout, so that the answer comes before it gives up.
                    let deadline = Instant::now() + CALL_TIMEOUT / 2;
                    for (durable, routed) in &live {
                        let caught_up = poll_until(deadline, || {
                            durable.handled() >= *routed && durable.settled()
                        })
                        .await;
                        if !caught_up {
                            warn!("an order had not caught up when its warehouse's work was read");
                        }
                        released.extend(released_at(std::iter::once(&durable.snapshot()), sp));
                    }
                    released.sort_by_key(|(_, f)| f.id);
                    let _ = reply.send(released);
                });
            }
            DeskMsg::Crash => panic!("crash requested by a test hook"),
            DeskMsg::CrashOrder(id) => {
                if let Some(live) = state.live.get(&id) {
                    let _ = live.actor.send_message(OrderMsg::Crash);
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<DeskMsg>,
        event: SupervisionEvent,
        state: &mut DeskState,
    ) -> Result<(), ActorProcessingErr> {
        // ractor's default stops the desk when any order actor stops, passivation included.
        let SupervisionEvent::ActorFailed(cell, reason) = event else {
            return Ok(());
        };
        state.context.failures.fetch_add(1, Ordering::Relaxed);
        let failed = state
            .live
            .iter()
            .find(|(_, live)| live.actor.get_id() == cell.get_id())
            .map(|(id, _)| *id);
        let Some(live) = failed.and_then(|id| state.live.remove(&id)) else {
            error!(actor = ?cell.get_id(), %reason, "an order actor the desk no longer routes to failed");
            return Ok(());
        };
        // Appends the failed actor made may still be on their way: their acknowledgements update
        // this same copy, which the restarted actor shares.
        if !live.durable.wait_settled().await {
            warn!(actor = ?cell.get_id(), "an order's append is still in flight after the wait");
        }
        let order = live.durable.snapshot();
        let id = order.id;
        let mut failures = live.failures;
        if !may_restart(&mut failures) {
            error!(order = %id, %reason, "order actor failed too often; the order stays down and refuses commands");
            state.down.insert(id, order);
            return Ok(());
        }
        error!(order = %id, %reason, "order actor failed; restarting from its durable state");
        // Messages in the failed mailbox are lost (their callers time out: outcome unknown), the
        // wave's release among them: release again after a wave window (a confirmed order's
        // first wave may still be open), which releases only what is still allocated.
        let wave_window = state.context.wave_window;
        let restarted = state.start(&myself, live.durable, failures).await?;
        restarted.routed += 1;
        restarted
            .actor
            .send_after(wave_window, || OrderMsg::Release);
        Ok(())
    }
}

/// The fulfilments of `orders` that `sp`'s warehouse has open (released and not yet shipped),
/// by id: what its tasks are rebuilt from.
pub fn released_at<'a>(
    orders: impl Iterator<Item = &'a Order>,
    sp: StockPointId,
) -> Vec<(OrderId, Fulfilment)> {
    let mut out: Vec<_> = orders
        .flat_map(|o| o.fulfilments.iter().map(move |f| (o.id, f)))
        .filter(|(_, f)| {
            f.stock_point == sp
                && matches!(
                    f.status,
                    FulfilmentStatus::Released
                        | FulfilmentStatus::Picking
                        | FulfilmentStatus::Picked
                        | FulfilmentStatus::Packed
                )
        })
        .map(|(o, f)| (o, f.clone()))
        .collect();
    out.sort_by_key(|(_, f)| f.id);
    out
}

/// Why a command will not be carried out: a business refusal or a failure.
enum Declined {
    Refused(Refusal),
    Failed(CommandError),
}

impl Declined {
    fn answer<T>(self) -> Answer<T> {
        match self {
            Declined::Refused(refusal) => Ok(Err(refusal)),
            Declined::Failed(error) => Err(error),
        }
    }
}

/// Answers a command (step, cancel, return) with `why`; any other message is given back.
fn decline(message: OrderMsg, why: impl FnOnce() -> Declined) -> Option<OrderMsg> {
    match message {
        OrderMsg::Step { answer, .. } => answer(why().answer()),
        OrderMsg::Cancel { answer } => answer(why().answer()),
        OrderMsg::OpenReturn { answer, .. } => answer(why().answer()),
        other => return Some(other),
    }
    None
}

fn missing(id: OrderId) -> Declined {
    Declined::Refused(Refusal::NotFound(id.to_string()))
}

fn down(id: OrderId) -> CommandError {
    CommandError::Unavailable(format!(
        "order {id} failed too often and takes no commands until the system or its desk restarts"
    ))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The copy is only ever replaced whole or changed by `apply`, which cannot leave it half
    // done for a panic elsewhere to expose.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl DeskState {
    async fn spawn(
        &mut self,
        desk: &ActorRef<DeskMsg>,
        order: Order,
        failures: Vec<Instant>,
    ) -> Result<&mut LiveOrder, ActorProcessingErr> {
        self.start(desk, Arc::new(DurableOrder::new(order)), failures)
            .await
    }

    /// Whether this desk already has order `id` (live, passivated or down).
    fn knows(&self, id: OrderId) -> bool {
        self.live.contains_key(&id) || self.resting.contains_key(&id) || self.down.contains_key(&id)
    }

    /// Starts an actor on `durable`: a new copy, or the one a failed actor left.
    async fn start(
        &mut self,
        desk: &ActorRef<DeskMsg>,
        durable: Arc<DurableOrder>,
        failures: Vec<Instant>,
    ) -> Result<&mut LiveOrder, ActorProcessingErr> {
        let order = durable.snapshot();
        let id = order.id;
        let args = OrderArgs {
            order,
            durable: durable.clone(),
            context: self.context.clone(),
            desk: desk.clone(),
            network: self.network.clone(),
            policy: self.policy.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, OrderActor, args, desk.get_cell()).await?;
        // A copy a failed actor left has counted what that actor handled; the new actor counts on
        // from there (what was routed to the failed one and not handled is lost with it).
        let routed = durable.handled();
        let live = LiveOrder {
            actor,
            durable,
            routed,
            failures,
        };
        Ok(self.live.entry(id).insert_entry(live).into_mut())
    }

    async fn actor(
        &mut self,
        desk: &ActorRef<DeskMsg>,
        id: OrderId,
    ) -> Result<Option<&mut LiveOrder>, ActorProcessingErr> {
        if self.live.contains_key(&id) {
            return Ok(self.live.get_mut(&id));
        }
        match self.resting.remove(&id) {
            Some(order) => Ok(Some(self.spawn(desk, order, Vec::new()).await?)),
            None => Ok(None),
        }
    }

    /// Stops an idle actor and keeps its order, unless the actor has been replaced since it
    /// asked, a message is still on its way to it, or an append of it is still in flight.
    fn passivate(&mut self, id: OrderId, actor: ActorId, handled: u64) {
        let Some(live) = self.live.get(&id) else {
            return;
        };
        if live.actor.get_id() != actor || live.routed != handled || !live.durable.settled() {
            return;
        }
        if let Some(live) = self.live.remove(&id) {
            live.actor.stop(Some("passivated".into()));
            self.resting.insert(id, live.durable.snapshot());
        }
    }

    /// Receives a return: each stock point it restocks at logs its restock in one record with
    /// the return's `Restocked` there (the last one also with `Received` and the refund), so a
    /// receipt retried after a crash or a lost answer restocks only where it did not happen.
    async fn receive_return(&mut self, ret: ReturnId) -> Answer<ReturnRecord> {
        self.settle(ret)?;
        let Some(record) = self.returns.get(&ret) else {
            return Ok(Err(Refusal::NotFound(ret.to_string())));
        };
        let (received, restocks) = match returns::receive(record) {
            Ok(x) => x,
            Err(error) => return Ok(Err(Refusal::Conflict(error.to_string()))),
        };
        let mut last = record.clone();
        returns::apply(&mut last, &received, self.context.clock.now());
        let mut finish = vec![received];
        if let Ok(refund) = returns::issue_refund(&last) {
            finish.push(refund);
        }
        let mut per_stock_point: Vec<(StockPointId, Vec<(SkuId, Qty)>)> = Vec::new();
        for r in restocks {
            match per_stock_point.last_mut() {
                Some((sp, lines)) if *sp == r.stock_point => lines.push((r.sku, r.qty)),
                _ => per_stock_point.push((r.stock_point, vec![(r.sku, r.qty)])),
            }
        }
        if per_stock_point.is_empty() {
            if let Err(refusal) = self
                .log_return(ret, None, std::mem::take(&mut finish))
                .await?
            {
                return Ok(Err(refusal));
            }
        }
        let steps = per_stock_point.len();
        for (i, (sp, lines)) in per_stock_point.into_iter().enumerate() {
            let mut events = vec![ReturnEvent::Restocked { stock_point: sp }];
            if i + 1 == steps {
                events.append(&mut finish);
            }
            let command = StockCommand::Restock { ret, lines };
            if let Err(refusal) = self.log_return(ret, Some((sp, command)), events).await? {
                return Ok(Err(refusal));
            }
        }
        match self.returns.get(&ret) {
            Some(record) => Ok(Ok(record.clone())),
            None => Ok(Err(Refusal::NotFound(ret.to_string()))),
        }
    }

    /// Logs a return's `events`, with stock point `sp`'s change in the same record if given,
    /// and applies them once durable. An unknown outcome (a timeout) leaves a [`Landing`] that
    /// [`Self::settle`] reads before the return's next change.
    async fn log_return(
        &mut self,
        ret: ReturnId,
        change: Option<(StockPointId, StockCommand)>,
        events: Vec<ReturnEvent>,
    ) -> Answer<()> {
        let now = self.context.clock.now();
        let logged = events
            .iter()
            .map(|e| Event::Return {
                ret,
                at: now,
                event: Box::new(e.clone()),
            })
            .collect();
        let landing = Arc::new(Landing::new(events, now));
        let landed = LandingGuard(landing.clone());
        let on_durable: OnDurable = Box::new(move || landed.land());
        let result = match change {
            None => log_durably_then(&self.context.log, logged, on_durable)
                .await
                .map(Ok),
            Some((sp, command)) => {
                let stock_points = self.context.stock_points.clone();
                ask(|answer| {
                    stock_points.send(sp, |ticket| StockPointMsg::Explained {
                        command,
                        also: logged,
                        on_durable,
                        answer,
                        ticket,
                    })
                })
                .await
            }
        };
        match &result {
            Ok(Ok(())) => self.apply_landed(ret, &landing),
            Ok(Err(_)) => {}
            Err(_) => {
                self.unsettled.insert(ret, landing);
            }
        }
        result
    }

    /// Takes in what became of the return's last change whose answer was lost; refuses while
    /// the log has not yet said.
    fn settle(&mut self, ret: ReturnId) -> Result<(), CommandError> {
        let Some(landing) = self.unsettled.get(&ret).cloned() else {
            return Ok(());
        };
        match *lock(&landing.landed) {
            None => {
                return Err(CommandError::Unavailable(
                    "the return's last change is not yet confirmed by the log; retry".into(),
                ))
            }
            Some(true) => self.apply_landed(ret, &landing),
            Some(false) => {}
        }
        self.unsettled.remove(&ret);
        Ok(())
    }

    fn apply_landed(&mut self, ret: ReturnId, landing: &Landing) {
        if let Some(record) = self.returns.get_mut(&ret) {
            for event in &landing.events {
                returns::apply(record, event, landing.at);
            }
        }
    }
}

/// A return's change sent to the log: whether it landed (`Some(true)`), was never logged
/// (`Some(false)`), or is still on its way (`None`).
struct Landing {
    events: Vec<ReturnEvent>,
    at: Timestamp,
    landed: Mutex<Option<bool>>,
}

impl Landing {
    fn new(events: Vec<ReturnEvent>, at: Timestamp) -> Landing {
        Landing {
            events,
            at,
            landed: Mutex::new(None),
        }
    }
}

/// Says "landed" when the record is durable, "never logged" when dropped before that.
struct LandingGuard(Arc<Landing>);

impl LandingGuard {
    fn land(self) {
        *lock(&self.0.landed) = Some(true);
    }
}

impl Drop for LandingGuard {
    fn drop(&mut self) {
        lock(&self.0.landed).get_or_insert(false);
    }
}

pub struct OrderActor;

pub struct OrderArgs {
    order: Order,
    durable: Arc<DurableOrder>,
    context: OrderContext,
    desk: ActorRef<DeskMsg>,
    network: Network,
    policy: ReturnPolicy,
}

pub struct OrderState {
    /// The working copy: equal to `durable` between messages, unless a wait for the log failed.
    order: Order,
    /// Shared with the desk; the log's acknowledgements apply to it.
    durable: Arc<DurableOrder>,
    /// A wait for the log failed: before deciding anything else, wait until nothing is in
    /// flight and take the durable copy.
    stale: bool,
    /// A failed release will be tried again; an actor with one pending does not passivate.
    retry_pending: bool,
    /// Warehouse notices to send again with the retry.
    undelivered: Vec<Undelivered>,
    context: OrderContext,
    desk: ActorRef<DeskMsg>,
    network: Network,
    policy: ReturnPolicy,
    last_message: Timestamp,
    _alive: Alive,
}

impl Actor for OrderActor {
    type Msg = OrderMsg;
    type State = OrderState;
    type Arguments = OrderArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OrderMsg>,
        args: OrderArgs,
    ) -> Result<OrderState, ActorProcessingErr> {
        myself.send_interval(args.context.order_idle, || OrderMsg::IdleCheck);
        Ok(OrderState {
            _alive: Alive::new(&args.context.actors),
            last_message: args.context.clock.now(),
            order: args.order,
            durable: args.durable,
            stale: false,
            retry_pending: false,
            undelivered: Vec::new(),
            context: args.context,
            desk: args.desk,
            network: args.network,
            policy: args.policy,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<OrderMsg>,
        message: OrderMsg,
        state: &mut OrderState,
    ) -> Result<(), ActorProcessingErr> {
        let now = state.context.clock.now();
        let routed = message.is_routed();
        if state.stale {
            if state.durable.wait_settled().await {
                state.order = state.durable.snapshot();
                state.stale = false;
            } else {
                // Deciding against a copy that misses an acknowledged change could log it twice.
                state.refuse_unsettled(&myself, message);
                if routed {
                    state.durable.count_handled();
                }
                return Ok(());
            }
        }
        match message {
            OrderMsg::IdleCheck => {
                let idle_ms = now.0.saturating_sub(state.last_message.0);
                let idle_for =
                    u64::try_from(state.context.order_idle.as_millis()).unwrap_or(u64::MAX);
                if idle_ms >= idle_for && !state.retry_pending {
                    let _ = state.desk.send_message(DeskMsg::Idle {
                        order: state.order.id,
                        actor: myself.get_id(),
                        handled: state.durable.handled(),
                    });
                }
                return Ok(());
            }
            OrderMsg::Crash => panic!("crash requested by a test hook"),
            OrderMsg::Retry => {
                state.retry_pending = false;
                state.release_or_retry(&myself).await;
                state.resume_or_retry(&myself).await;
            }
            OrderMsg::Resume => {
                state.resume_or_retry(&myself).await;
            }
            OrderMsg::Release => {
                state.release_or_retry(&myself).await;
            }
            OrderMsg::Step { step, answer } => {
                answer(state.step(step).await);
            }
            OrderMsg::Cancel { answer } => {
                answer(state.cancel().await);
            }
            OrderMsg::OpenReturn {
                ret,
                lines,
                drop_off,
                answer,
            } => {
                answer(state.open_return(ret, lines, drop_off).await);
            }
            OrderMsg::Get(reply) => {
                let _ = reply.send(Some(state.order.clone()));
            }
        }
        let owed = state
            .order
            .shortages
            .iter()
            .any(|s| !s.outstanding().is_zero());
        if owed && !state.retry_pending {
            state.retry(&myself);
        }
        if !state.undelivered.is_empty() {
            state.deliver();
            if !state.undelivered.is_empty() && !state.retry_pending {
                warn!(order = %state.order.id, "a warehouse could not take a notice; retrying");
                state.retry(&myself);
            }
        }
        // Counted once handled, its appends durable: what passivation and a warehouse's
        // restart wait for.
        if routed {
            state.durable.count_handled();
        }
        state.last_message = now;
        Ok(())
    }
}

fn refusal(error: OrderError) -> Refusal {
    Refusal::Conflict(error.to_string())
}

impl OrderState {
    /// Logs `events`, applies them to the durable copy with `apply` once durable, and waits. If
    /// the wait fails the working copy may be behind: it is taken from the durable copy again.
    async fn log_then(
        &mut self,
        events: Vec<Event>,
        apply: impl FnOnce(&mut Order) + Send + 'static,
    ) -> Result<(), CommandError> {
        let result = log_durably_then(&self.context.log, events, self.on_durable(apply)).await;
        if result.is_err() {
            self.stale = true;
        }
        result
    }

    /// Counts an append of this order in flight until it is durable (or dropped unlogged), and
    /// then applies it to the durable copy with `apply`, on the log's syncer thread.
    fn on_durable(&self, apply: impl FnOnce(&mut Order) + Send + 'static) -> OnDurable {
        let in_flight = InFlight::new(self.durable.clone());
        Box::new(move || {
            apply(&mut lock(&in_flight.0.order));
            drop(in_flight);
        })
    }

    /// Answers a message that arrived while an earlier append's outcome is still unknown.
    fn refuse_unsettled(&mut self, myself: &ActorRef<OrderMsg>, message: OrderMsg) {
        let unsettled = || {
            Declined::Failed(CommandError::Unavailable(
                "the order's last change is not yet confirmed by the log; retry".into(),
            ))
        };
        match decline(message, unsettled) {
            Some(OrderMsg::Get(reply)) => {
                let _ = reply.send(Some(self.durable.snapshot()));
            }
            Some(OrderMsg::Release | OrderMsg::Retry | OrderMsg::Resume) => self.retry(myself),
            _ => {}
        }
    }

    fn retry(&mut self, myself: &ActorRef<OrderMsg>) {
        self.retry_pending = true;
        myself.send_after(RETRY_AFTER, || OrderMsg::Retry);
    }

    async fn release_or_retry(&mut self, myself: &ActorRef<OrderMsg>) {
        // Notices it leaves undelivered are sent (and retried) at the end of the message.
        if let Err(error) = self.release_all().await {
            warn!(order = %self.order.id, %error, "release failed; retrying");
            self.retry(myself);
        }
    }

    /// Re-sources every outstanding shortage (one a crash or a failed call cut short).
    async fn resume_or_retry(&mut self, myself: &ActorRef<OrderMsg>) {
        for request in order::outstanding_resources(&self.order) {
            if let Err(error) = self.resource(request).await {
                warn!(order = %self.order.id, %error, "re-sourcing failed; retrying");
                self.retry(myself);
                return;
            }
        }
    }

    /// Sends the undelivered notices; those a warehouse still cannot take stay for the retry.
    fn deliver(&mut self) {
        let order = self.order.id;
        for notice in std::mem::take(&mut self.undelivered) {
            let sent = match notice {
                Undelivered::Release(f) => match self.order.fulfilment(f) {
                    // Only while it is still the warehouse's to start: a later step or a cancel
                    // has settled it otherwise.
                    Some(fulfilment) if fulfilment.status == FulfilmentStatus::Released => self
                        .context
                        .warehouses
                        .send(fulfilment.stock_point, |ticket| WarehouseMsg::Release {
                            order,
                            fulfilment: Box::new(fulfilment.clone()),
                            ticket,
                        }),
                    _ => Ok(()),
                },
                Undelivered::Cancelled(sp) => self
                    .context
                    .warehouses
                    .send(sp, |ticket| WarehouseMsg::Cancelled { order, ticket }),
            };
            if sent.is_err() {
                self.undelivered.push(notice);
            }
        }
    }

    /// Decides nothing itself: logs `events` (already decided against this order), waits until
    /// they are durable, then applies them.
    async fn record(&mut self, events: Vec<OrderEvent>) -> Result<(), CommandError> {
        let now = self.context.clock.now();
        let logged = self.logged(&events, now);
        let applied = events.clone();
        self.log_then(logged, move |order| {
            for event in &applied {
                order::apply(order, event, now);
            }
        })
        .await?;
        for event in &events {
            order::apply(&mut self.order, event, now);
        }
        Ok(())
    }

    /// This order's `events` as the log records them.
    fn logged(&self, events: &[OrderEvent], at: Timestamp) -> Vec<Event> {
        let order = self.order.id;
        events
            .iter()
            .map(|e| Event::Order {
                order,
                at,
                event: Box::new(e.clone()),
            })
            .collect()
    }

    async fn stock(&self, sp: StockPointId, command: StockCommand) -> Answer<()> {
        let stock_points = self.context.stock_points.clone();
        ask(|answer| {
            stock_points.send(sp, |ticket| StockPointMsg::Command {
                command,
                answer,
                ticket,
            })
        })
        .await
    }

    /// Has stock point `sp` log `command`'s change together with `events` (already decided
    /// against this order) as one record, then applies them as [`Self::record`] does: a crash
    /// can keep both or neither, so a report repeated after it finds the stock and the order
    /// agreeing. A refusal logs nothing.
    async fn stock_explained(
        &mut self,
        sp: StockPointId,
        command: StockCommand,
        events: Vec<OrderEvent>,
    ) -> Answer<()> {
        let now = self.context.clock.now();
        let also = self.logged(&events, now);
        let applied = events.clone();
        let on_durable = self.on_durable(move |order| {
            for event in &applied {
                order::apply(order, event, now);
            }
        });
        let stock_points = self.context.stock_points.clone();
        let answer = ask(|answer| {
            stock_points.send(sp, |ticket| StockPointMsg::Explained {
                command,
                also,
                on_durable,
                answer,
                ticket,
            })
        })
        .await;
        match answer {
            Ok(Ok(())) => {
                for event in &events {
                    order::apply(&mut self.order, event, now);
                }
            }
            Ok(Err(_)) => {}
            // Outcome unknown: the durable copy learns it when the log does.
            Err(_) => self.stale = true,
        }
        answer
    }

    async fn release_all(&mut self) -> Result<(), CommandError> {
        let ready: Vec<FulfilmentId> = self
            .order
            .fulfilments
            .iter()
            .filter(|f| f.status == FulfilmentStatus::Allocated)
            .map(|f| f.id)
            .collect();
        for f in ready {
            self.release_one(f).await?;
        }
        Ok(())
    }

    async fn release_one(&mut self, f: FulfilmentId) -> Result<(), CommandError> {
        let Ok(event) = order::release(&self.order, f) else {
            return Ok(());
        };
        self.record(vec![event]).await?;
        self.undelivered.push(Undelivered::Release(f));
        Ok(())
    }

    async fn step(&mut self, step: Step) -> Answer<()> {
        match step {
            Step::Picked {
                fulfilment,
                sku,
                qty,
            } => self.picked(fulfilment, sku, qty).await,
            // A report repeated after the first was recorded (the warehouse heard "unavailable"
            // because the actor that recorded it failed before answering) is answered again.
            Step::Packed { fulfilment } if self.reached(fulfilment, FulfilmentStatus::Packed) => {
                Ok(Ok(()))
            }
            Step::Shipped { fulfilment, .. }
                if self.reached(fulfilment, FulfilmentStatus::Shipped) =>
            {
                Ok(Ok(()))
            }
            Step::Packed { fulfilment } => {
                let event = match order::pack(&self.order, fulfilment) {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(refusal(e))),
                };
                self.record(vec![event]).await?;
                Ok(Ok(()))
            }
            Step::Shipped {
                fulfilment,
                carrier,
                tracking,
            } => {
                let event = match order::ship(&self.order, fulfilment, &carrier, &tracking) {
                    Ok(e) => e,
                    Err(e) => return Ok(Err(refusal(e))),
                };
                let Some(f) = self.order.fulfilment(fulfilment) else {
                    return Ok(Err(Refusal::NotFound(fulfilment.to_string())));
                };
                let lines: Vec<(SkuId, Qty)> = f
                    .lines
                    .iter()
                    .filter(|l| !l.picked.is_zero())
                    .map(|l| (l.sku, l.picked))
                    .collect();
                let sp = f.stock_point;
                if lines.is_empty() {
                    self.record(vec![event]).await?;
                    return Ok(Ok(()));
                }
                let command = StockCommand::Ship {
                    order: self.order.id,
                    lines,
                };
                self.stock_explained(sp, command, vec![event]).await
            }
        }
    }

    /// Whether fulfilment `f` is at `status` or past it (packed, shipped, delivered).
    fn reached(&self, f: FulfilmentId, status: FulfilmentStatus) -> bool {
        use FulfilmentStatus as F;
        let rank = |s: F| match s {
            F::Packed => 1,
            F::Shipped => 2,
            F::Delivered => 3,
            _ => 0,
        };
        self.order
            .fulfilment(f)
            .is_some_and(|x| rank(status) > 0 && rank(x.status) >= rank(status))
    }

    async fn picked(&mut self, f: FulfilmentId, sku: SkuId, qty: Qty) -> Answer<()> {
        let mut events = Vec::new();
        if self
            .order
            .fulfilment(f)
            .is_some_and(|x| x.status == FulfilmentStatus::Released)
        {
            match order::start_pick(&self.order, f) {
                Ok(e) => {
                    // Applied on a scratch copy so that `pick` decides against the new status.
                    events.push(e);
                }
                Err(e) => return Ok(Err(refusal(e))),
            }
        }
        let mut scratch = self.order.clone();
        let now = self.context.clock.now();
        for e in &events {
            order::apply(&mut scratch, e, now);
        }
        match order::pick(&scratch, f, sku, qty) {
            Ok(PickOutcome::Picked(e)) => {
                events.push(e);
                self.record(events).await?;
                Ok(Ok(()))
            }
            Ok(PickOutcome::Short { event, request }) => {
                let Some(sp) = self.order.fulfilment(f).map(|x| x.stock_point) else {
                    return Ok(Err(Refusal::NotFound(f.to_string())));
                };
                let command = StockCommand::ShortPick {
                    order: self.order.id,
                    sku,
                    missing: request.missing,
                };
                events.push(event);
                if let Err(refused) = self.stock_explained(sp, command, events).await? {
                    return Ok(Err(refused));
                }
                self.resource(request).await?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(refusal(e))),
        }
    }

    /// Finds the missing units elsewhere; what cannot be found is written off.
    async fn resource(&mut self, request: order::ResourceRequest) -> Result<(), CommandError> {
        let orchestrator = lock(&self.context.orchestrator)
            .clone()
            .ok_or_else(|| CommandError::Unavailable("orchestrator stopped".into()))?;
        let found = ask(|answer| {
            orchestrator
                .send_message(OrchestratorMsg::Resource {
                    request: request.clone(),
                    answer,
                })
                .map_err(|_| CommandError::Unavailable("orchestrator stopped".into()))
        })
        .await?
        .unwrap_or_default();
        let mut left = request.missing;
        for (id, sp, qty) in found {
            let fulfilment = Fulfilment::new(
                id,
                sp,
                &[Allocation {
                    sku: request.sku,
                    qty,
                    source: Source::OnHand,
                }],
            );
            match order::resource(&self.order, request.from, fulfilment) {
                Ok(event) => {
                    self.record(vec![event]).await?;
                    left = left.saturating_sub(qty);
                    self.release_one(id).await?;
                }
                Err(error) => warn!(order = %self.order.id, %error, "re-sourced units not taken"),
            }
        }
        if !left.is_zero() {
            if let Ok(event) = order::write_off_shortage(&self.order, request.from, request.sku) {
                self.record(vec![event]).await?;
            }
        }
        Ok(())
    }

    async fn cancel(&mut self) -> Answer<Order> {
        let (event, releases) = match order::cancel(&self.order) {
            Ok(x) => x,
            Err(e) => return Ok(Err(refusal(e))),
        };
        self.record(vec![event]).await?;
        let mut stock_points: Vec<StockPointId> = releases.iter().map(|r| r.stock_point).collect();
        stock_points.sort();
        stock_points.dedup();
        for sp in stock_points {
            // A stock point with nothing left allocated (all shipped or short) has nothing to give back.
            let _ = self
                .stock(
                    sp,
                    StockCommand::ReleaseAllocation {
                        order: self.order.id,
                    },
                )
                .await?;
            self.undelivered.push(Undelivered::Cancelled(sp));
        }
        Ok(Ok(self.order.clone()))
    }

    async fn open_return(
        &mut self,
        ret: ReturnId,
        lines: Vec<ReturnLine>,
        drop_off: Option<StockPointId>,
    ) -> Answer<ReturnRecord> {
        let origin = self
            .order
            .fulfilments
            .iter()
            .find(|f| f.lines.iter().any(|l| !l.shipped.is_zero()))
            .map(|f| f.stock_point);
        let Some(origin) = origin else {
            return Ok(Err(Refusal::Conflict(
                "nothing has shipped on this order yet".into(),
            )));
        };
        let opened = match order::open_return(&self.order, ret, returns::order_lines(&lines)) {
            Ok(e) => e,
            Err(e) => return Ok(Err(refusal(e))),
        };
        let dispositions = match returns::dispose(
            &self.policy,
            &self.network,
            &lines,
            drop_off,
            None::<Location>,
            origin,
        ) {
            Ok(d) => d,
            Err(e) => return Ok(Err(invalid("lines", e.to_string()))),
        };
        let now = self.context.clock.now();
        let event = returns::open(ret, self.order.id, lines, dispositions);
        let Some(record) = ReturnRecord::from_opened(&event, now) else {
            return Err(CommandError::Unavailable(
                "return could not be opened".into(),
            ));
        };
        let id = self.order.id;
        let logged = vec![
            Event::Order {
                order: id,
                at: now,
                event: Box::new(opened.clone()),
            },
            Event::Return {
                ret,
                at: now,
                event: Box::new(event),
            },
        ];
        let applied = opened.clone();
        self.log_then(logged, move |order| order::apply(order, &applied, now))
            .await?;
        order::apply(&mut self.order, &opened, now);
        Ok(Ok(record))
    }
}
