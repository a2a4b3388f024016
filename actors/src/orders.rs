//! Orders: one actor per live order drives its lifecycle; the desk routes messages to them,
//! starts an actor when a message arrives for an order that has none, and keeps the state of
//! orders whose actor has gone idle (passivated), so that a million open orders do not need a
//! million live tasks. The desk also keeps customer returns.
//!
//! An order actor handles one command at a time and waits (asynchronously, with a timeout) for
//! each durable step, so an order's events are logged in the order they were decided.

use std::sync::Arc;
use std::time::Duration;

use conductor_engine::hash::FxHashMap;
use conductor_engine::ids::{FulfilmentId, OrderId, Qty, ReturnId, SkuId, StockPointId};
use conductor_engine::inventory::Source;
use conductor_engine::network::{Location, Network};
use conductor_engine::order::{
    self, Allocation, Fulfilment, FulfilmentStatus, Order, OrderError, OrderEvent, PickOutcome,
};
use conductor_engine::returns::{self, ReturnLine, ReturnPolicy, ReturnRecord};
use conductor_engine::state::Event;
use conductor_engine::time::Timestamp;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use crate::call::{ask, log_durably};
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{invalid, Answer, CommandError, Refusal};
use crate::orchestrator::OrchestratorMsg;
use crate::stock_point::{reply, Reply, StockCommand, StockPointMsg};
use crate::warehouse::WarehouseMsg;
use crate::Log;

/// How long an order actor waits without a message before it passivates.
pub const ORDER_IDLE_MS: u64 = 30_000;

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
    Get(RpcReplyPort<Order>),
    IdleCheck,
}

pub enum DeskMsg {
    /// A confirmed order, durable: start it and release it after the wave window.
    Start(Order),
    /// Sends to an order's actor, starting it from its passivated state if needed.
    ToOrder(OrderId, OrderMsg),
    Get(OrderId, RpcReplyPort<Option<Order>>),
    /// An order actor went idle; keep its state.
    Passivated(Order),
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
    Counts(RpcReplyPort<(usize, usize)>),
}

/// What every order actor shares.
#[derive(Clone)]
pub struct OrderContext {
    pub stock_points: Arc<Directory<StockPointMsg>>,
    pub warehouses: Arc<Directory<WarehouseMsg>>,
    pub orchestrator: ActorRef<OrchestratorMsg>,
    pub log: Log,
    pub clock: Arc<dyn Clock>,
    pub wave_window: Duration,
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
    live: FxHashMap<OrderId, ActorRef<OrderMsg>>,
    resting: FxHashMap<OrderId, Order>,
    returns: FxHashMap<ReturnId, ReturnRecord>,
    next_return: u64,
    network: Network,
    policy: ReturnPolicy,
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
            returns: args.returns,
            next_return: args.next_return,
            network: args.network,
            policy: args.policy,
        })
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
                let actor = state.spawn(&myself, order).await?;
                actor.send_after(state.context.wave_window, || OrderMsg::Release);
                debug!(order = %id, "order started");
            }
            DeskMsg::ToOrder(id, message) => match state.actor(&myself, id).await? {
                Some(actor) => {
                    if let Err(error) = actor.send_message(message) {
                        warn!(order = %id, %error, "order actor gone");
                    }
                }
                None => refuse_missing(id, message),
            },
            DeskMsg::Get(id, reply) => {
                let order = match state.live.get(&id) {
                    Some(actor) => ractor::call_t!(actor, OrderMsg::Get, 5_000).ok(),
                    None => state.resting.get(&id).cloned(),
                };
                let _ = reply.send(order);
            }
            DeskMsg::Passivated(order) => {
                state.live.remove(&order.id);
                state.resting.insert(order.id, order);
            }
            DeskMsg::OpenReturn {
                order,
                lines,
                drop_off,
                answer,
            } => {
                let ret = ReturnId(state.next_return);
                state.next_return += 1;
                match state.actor(&myself, order).await? {
                    Some(actor) => {
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
                        if actor.send_message(message).is_err() {
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
                let _ = reply.send(state.returns.get(&ret).cloned());
            }
            DeskMsg::StockPointAdded(sp) => state.network.upsert(*sp),
            DeskMsg::Counts(reply) => {
                let _ = reply.send((state.live.len(), state.resting.len()));
            }
        }
        Ok(())
    }
}

fn refuse_missing(id: OrderId, message: OrderMsg) {
    let missing = || Refusal::NotFound(id.to_string());
    match message {
        OrderMsg::Step { answer, .. } => answer(Ok(Err(missing()))),
        OrderMsg::Cancel { answer } => answer(Ok(Err(missing()))),
        OrderMsg::OpenReturn { answer, .. } => answer(Ok(Err(missing()))),
        OrderMsg::Release | OrderMsg::Get(_) | OrderMsg::IdleCheck => {}
    }
}

impl DeskState {
    async fn spawn(
        &mut self,
        desk: &ActorRef<DeskMsg>,
        order: Order,
    ) -> Result<ActorRef<OrderMsg>, ActorProcessingErr> {
        let id = order.id;
        let args = OrderArgs {
            order,
            context: self.context.clone(),
            desk: desk.clone(),
            network: self.network.clone(),
            policy: self.policy.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, OrderActor, args, desk.get_cell()).await?;
        self.live.insert(id, actor.clone());
        Ok(actor)
    }

    async fn actor(
        &mut self,
        desk: &ActorRef<DeskMsg>,
        id: OrderId,
    ) -> Result<Option<ActorRef<OrderMsg>>, ActorProcessingErr> {
        if let Some(actor) = self.live.get(&id) {
            return Ok(Some(actor.clone()));
        }
        match self.resting.remove(&id) {
            Some(order) => Ok(Some(self.spawn(desk, order).await?)),
            None => Ok(None),
        }
    }

    async fn receive_return(&mut self, ret: ReturnId) -> Answer<ReturnRecord> {
        let Some(record) = self.returns.get(&ret) else {
            return Ok(Err(Refusal::NotFound(ret.to_string())));
        };
        let (event, restocks) = match returns::receive(record) {
            Ok(x) => x,
            Err(error) => return Ok(Err(Refusal::Conflict(error.to_string()))),
        };
        for restock in &restocks {
            let command = StockCommand::Restock {
                sku: restock.sku,
                qty: restock.qty,
                ret,
            };
            let stock_points = self.context.stock_points.clone();
            let sp = restock.stock_point;
            if let Err(refusal) = ask(|answer| {
                stock_points.send(sp, |ticket| StockPointMsg::Command {
                    command,
                    answer,
                    ticket,
                })
            })
            .await?
            {
                return Ok(Err(refusal));
            }
        }
        let now = self.context.clock.now();
        let mut events = vec![Event::Return {
            ret,
            at: now,
            event: Box::new(event.clone()),
        }];
        let record = self.returns.get_mut(&ret).expect("checked above");
        returns::apply(record, &event, now);
        if let Ok(refund) = returns::issue_refund(record) {
            returns::apply(record, &refund, now);
            events.push(Event::Return {
                ret,
                at: now,
                event: Box::new(refund),
            });
        }
        log_durably(&self.context.log, events).await?;
        Ok(Ok(record.clone()))
    }
}

pub struct OrderActor;

pub struct OrderArgs {
    order: Order,
    context: OrderContext,
    desk: ActorRef<DeskMsg>,
    network: Network,
    policy: ReturnPolicy,
}

pub struct OrderState {
    order: Order,
    context: OrderContext,
    desk: ActorRef<DeskMsg>,
    network: Network,
    policy: ReturnPolicy,
    last_message: Timestamp,
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
        myself.send_interval(Duration::from_millis(ORDER_IDLE_MS), || OrderMsg::IdleCheck);
        Ok(OrderState {
            last_message: args.context.clock.now(),
            order: args.order,
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
        match message {
            OrderMsg::IdleCheck => {
                if now.0.saturating_sub(state.last_message.0) >= ORDER_IDLE_MS {
                    let _ = state
                        .desk
                        .send_message(DeskMsg::Passivated(state.order.clone()));
                    myself.stop(Some("passivated".into()));
                }
                return Ok(());
            }
            OrderMsg::Release => {
                if let Err(error) = state.release_all().await {
                    warn!(order = %state.order.id, %error, "release failed; retrying");
                    myself.send_after(Duration::from_secs(1), || OrderMsg::Release);
                }
            }
            OrderMsg::Step { step, answer } => answer(state.step(step).await),
            OrderMsg::Cancel { answer } => answer(state.cancel().await),
            OrderMsg::OpenReturn {
                ret,
                lines,
                drop_off,
                answer,
            } => answer(state.open_return(ret, lines, drop_off).await),
            OrderMsg::Get(reply) => {
                let _ = reply.send(state.order.clone());
            }
        }
        state.last_message = now;
        Ok(())
    }
}

fn refusal(error: OrderError) -> Refusal {
    Refusal::Conflict(error.to_string())
}

impl OrderState {
    /// Decides nothing itself: logs `events` (already decided against this order), waits until
    /// they are durable, then applies them.
    async fn record(&mut self, events: Vec<OrderEvent>) -> Result<(), CommandError> {
        let now = self.context.clock.now();
        let id = self.order.id;
        let logged = events
            .iter()
            .map(|e| Event::Order {
                order: id,
                at: now,
                event: Box::new(e.clone()),
            })
            .collect();
        log_durably(&self.context.log, logged).await?;
        for event in &events {
            order::apply(&mut self.order, event, now);
        }
        Ok(())
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
        let Some(fulfilment) = self.order.fulfilment(f).cloned() else {
            return Ok(());
        };
        let order = self.order.id;
        self.context
            .warehouses
            .send(fulfilment.stock_point, |ticket| WarehouseMsg::Release {
                order,
                fulfilment: Box::new(fulfilment.clone()),
                ticket,
            })
    }

    async fn step(&mut self, step: Step) -> Answer<()> {
        match step {
            Step::Picked {
                fulfilment,
                sku,
                qty,
            } => self.picked(fulfilment, sku, qty).await,
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
                let Some(f) = self.order.fulfilment(fulfilment).cloned() else {
                    return Ok(Err(Refusal::NotFound(fulfilment.to_string())));
                };
                // Units leave the building first; the order records the shipment after.
                for line in f.lines.iter().filter(|l| !l.picked.is_zero()) {
                    let command = StockCommand::Ship {
                        order: self.order.id,
                        sku: line.sku,
                        qty: line.picked,
                    };
                    if let Err(refused) = self.stock(f.stock_point, command).await? {
                        return Ok(Err(refused));
                    }
                }
                self.record(vec![event]).await?;
                Ok(Ok(()))
            }
        }
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
                if let Err(refused) = self.stock(sp, command).await? {
                    return Ok(Err(refused));
                }
                events.push(event);
                self.record(events).await?;
                self.resource(request).await?;
                Ok(Ok(()))
            }
            Err(e) => Ok(Err(refusal(e))),
        }
    }

    /// Finds the missing units elsewhere; what cannot be found is written off.
    async fn resource(&mut self, request: order::ResourceRequest) -> Result<(), CommandError> {
        let orchestrator = self.context.orchestrator.clone();
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
            let _ = self
                .context
                .warehouses
                .send(sp, |ticket| WarehouseMsg::Cancelled {
                    order: self.order.id,
                    ticket,
                });
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
        log_durably(&self.context.log, logged).await?;
        order::apply(&mut self.order, &opened, now);
        Ok(Ok(record))
    }
}
