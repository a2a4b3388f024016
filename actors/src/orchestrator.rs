//! The orchestrator: plans reservations with the sourcing rules against the board, places the
//! holds at the stock points of the plan, re-plans when a hold loses a race, and rolls back
//! partial holds so that a failed reservation leaves nothing behind. It also confirms
//! reservations into orders, expires reservations, re-sources short picks, and owns the
//! network, the SKU catalog, the rules and the flash-sale limits.
//!
//! Nothing here waits inside a handler: answers from stock points and from the log come back
//! as messages (or go straight to the caller from the log's thread).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use conductor_engine::checkout::{
    self, CheckoutContext, LineShortage, PlanMemo, Prepared, ReserveRequest,
};
use conductor_engine::hash::FxHashMap;
use conductor_engine::ids::{
    Code, FulfilmentId, Interner, OrderId, Qty, ReservationId, SkuId, StockPointId,
};
use conductor_engine::inventory::{Incoming, ReleaseReason, StockLine, StockShortage};
use conductor_engine::network::{Network, StockPoint};
use conductor_engine::order::{Order, OrderEvent, ResourceRequest};
use conductor_engine::reservation::{Reservation, ReservationBook, ReservationEvent};
use conductor_engine::sourcing::{
    plan, CompiledRuleSet, PlanLine, PlanOptions, PlanOutcome, PlanRequest, Rule, RuleSet,
};
use conductor_engine::state::{Event, NextIds};
use conductor_engine::time::Timestamp;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, warn};

use crate::board::Board;
use crate::clock::Clock;
use crate::directory::Directory;
use crate::error::{invalid, Answer, CommandError, Refusal};
use crate::intake::{Intake, Queued, Ring};
use crate::mailbox::Ticket;
use crate::stock_point::{
    reply, reply_or, reply_or_unavailable, BatchedHold, HoldAnswer, Reply, StockCommand,
    StockPointMsg,
};
use crate::Log;

/// Plans tried for one reservation before answering "insufficient": a hold that loses a race
/// makes the orchestrator re-plan against the updated board.
pub const RESERVE_ATTEMPTS_MAX: u32 = 3;
/// Reservations expired per timer tick; the rest wait for the next tick.
pub const EXPIRIES_PER_TICK_MAX: usize = 4_096;
/// How long finished reservations stay readable after their expiry.
pub const RESERVATION_RETENTION_MS: u64 = 24 * 60 * 60 * 1000;
/// Finished reservations forgotten per timer tick.
pub const PRUNES_PER_TICK_MAX: usize = 16_384;
/// Holds the orchestrator sends a stock point at once out of one collection: it sends each
/// share as soon as it is this big, so that the stock point and the log start on it while the
/// rest is planned.
pub const STOCK_POINT_CHUNK: usize = 64;

pub enum OrchestratorMsg {
    /// Reservations are waiting in the intake: take them (the doorbell of [`crate::intake`]).
    Collect,
    Release {
        id: ReservationId,
        answer: Reply<Answer<()>>,
        ticket: Ticket,
    },
    Confirm {
        id: ReservationId,
        customer_ref: Option<String>,
        answer: Reply<Answer<Order>>,
        ticket: Ticket,
    },
    Get(ReservationId, RpcReplyPort<Option<Reservation>>),
    /// Re-sources the missing units of a short pick; answers the new allocations, each with
    /// the id of the fulfilment it becomes.
    Resource {
        request: ResourceRequest,
        answer: Reply<Answer<Vec<(FulfilmentId, StockPointId, Qty)>>>,
    },
    PutStockPoint {
        stock_point: Box<StockPointSpec>,
        answer: Reply<Answer<StockPoint>>,
    },
    ListStockPoints(RpcReplyPort<Vec<StockPoint>>),
    /// Interns SKU codes, defining new ones durably; answers their ids in order.
    DefineSkus {
        codes: Vec<Code>,
        answer: Reply<Answer<Vec<SkuId>>>,
    },
    PutRules {
        rules: Vec<Rule>,
        answer: Reply<Answer<RuleSet>>,
    },
    GetRules(RpcReplyPort<RuleSet>),
    SetCustomerLimit {
        sku: SkuId,
        max_per_customer: Option<Qty>,
        answer: Reply<Answer<()>>,
    },
    ExpectIncoming {
        stock_point: StockPointId,
        sku: SkuId,
        qty: Qty,
        eta: Timestamp,
        answer: Reply<Answer<Incoming>>,
    },
    NextIds(RpcReplyPort<NextIds>),
    // Answers coming back from stock points and the log.
    HoldAnswered {
        id: ReservationId,
        stock_point: StockPointId,
        answer: HoldAnswer,
    },
    ReservationDurable {
        id: ReservationId,
        result: Result<(), CommandError>,
    },
    /// A single-stock-point hold lost its race: re-plan or answer.
    Lost {
        id: ReservationId,
        request: Box<ReserveRequest>,
        attempt: u32,
        shortages: Vec<StockShortage>,
        answer: Reply<Answer<Arc<Reservation>>>,
    },
    /// A single-stock-point hold failed (log or mailbox); its caller has been told.
    Abandoned(ReservationId),
    AllocationAnswered {
        id: ReservationId,
        stock_point: StockPointId,
        result: Answer<()>,
    },
    ConfirmDurable {
        id: ReservationId,
        result: Result<(), CommandError>,
    },
    ExpireDue,
    /// Test hook: the actor panics, to exercise supervision.
    Crash,
}

/// What an operator says about a stock point; the orchestrator gives it its id.
#[derive(Clone, Debug)]
pub struct StockPointSpec {
    pub code: Code,
    pub kind: conductor_engine::network::StockPointKind,
    pub name: String,
    pub location: conductor_engine::network::Location,
    pub priority: u32,
    pub channels: Vec<conductor_engine::network::Channel>,
    pub capabilities: Vec<conductor_engine::network::Capability>,
    pub cost_per_shipment: u32,
    pub tags: Vec<String>,
}

/// Where new stock points and confirmed orders go.
pub trait Downstream: Send + Sync + 'static {
    /// A stock point was defined for the first time: start its actors.
    fn stock_point_added(&self, stock_point: &StockPoint);
    /// The network changed (a stock point was added or redefined).
    fn network_changed(&self, network: &Network);
    /// An order was confirmed and is durable: start its lifecycle.
    fn order_confirmed(&self, order: Order);
}

pub struct OrchestratorArgs {
    pub skus: Interner,
    pub network: Network,
    pub rules: RuleSet,
    pub book: ReservationBook,
    pub next: NextIds,
    pub board: Arc<Board>,
    pub directory: Arc<Directory<StockPointMsg>>,
    pub log: Log,
    pub clock: Arc<dyn Clock>,
    pub downstream: Arc<dyn Downstream>,
    pub intake: Arc<Intake>,
}

/// Single-stock-point reservations that are durable and answered but not yet in the book. The
/// log's acknowledgement puts them here before it answers the caller, and the orchestrator
/// moves them into the book before it handles any message, so a caller's next request always
/// finds its reservation, without a message per reservation. Bounded by the holds in flight.
#[derive(Default)]
struct Settled {
    /// Each with the request it was made from, kept for a re-plan until the hold was placed and
    /// dropped by the orchestrator: freed on the thread that allocated it, not on the log's acks
    /// thread (mimalloc takes back blocks freed by another thread one at a time, on the
    /// allocating thread's next allocations: 7 % of the runtime worker for the hot SKU).
    reservations: Mutex<Vec<(Arc<Reservation>, ReserveRequest)>>,
}

impl Settled {
    fn push(&self, reservation: Arc<Reservation>, request: ReserveRequest) {
        self.reservations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((reservation, request));
    }

    /// Swaps the queue with `out` (empty): both keep their capacity, so neither side
    /// reallocates once they have grown to the holds in flight.
    fn take_into(&self, out: &mut Vec<(Arc<Reservation>, ReserveRequest)>) {
        debug_assert!(out.is_empty());
        std::mem::swap(
            &mut *self.reservations.lock().unwrap_or_else(|e| e.into_inner()),
            out,
        );
    }
}

/// A reservation being placed: its holds are out at the stock points.
struct Pending {
    request: ReserveRequest,
    reservation: Arc<Reservation>,
    attempt: u32,
    /// Stock points yet to answer.
    outstanding: Vec<StockPointId>,
    placed: Vec<StockPointId>,
    shortages: Vec<LineShortage>,
    failure: Option<CommandError>,
    answer: Reply<Answer<Arc<Reservation>>>,
}

/// A confirmation in progress: allocations are out at the stock points.
struct Confirming {
    order: Order,
    created: OrderEvent,
    outstanding: Vec<StockPointId>,
    allocated: Vec<StockPointId>,
    refused: Option<Refusal>,
    failure: Option<CommandError>,
    /// Whether the stock point logs the confirmation in its record (single stock point).
    logged_with_allocation: bool,
    answer: Reply<Answer<Order>>,
}

/// What a hold's answer says when its message was lost with a stock point that failed: the
/// hold was not placed (the stock point logs and answers a hold in one step), so the
/// reservation is rolled back or refused, and nothing waits for it.
fn lost_hold() -> HoldAnswer {
    HoldAnswer::Failed(crate::stock_point::stopped_before_answering())
}

pub struct Orchestrator;

pub struct OrchestratorState {
    skus: Interner,
    network: Network,
    rules: RuleSet,
    compiled: CompiledRuleSet,
    book: ReservationBook,
    next: NextIds,
    board: Arc<Board>,
    directory: Arc<Directory<StockPointMsg>>,
    log: Log,
    clock: Arc<dyn Clock>,
    downstream: Arc<dyn Downstream>,
    intake: Arc<Intake>,
    /// The buffer a collection is taken into; empty between collections, capacity kept.
    collected: Vec<Queued>,
    settled: Arc<Settled>,
    /// The buffer settled reservations are taken into; empty between messages.
    settling: Vec<(Arc<Reservation>, ReserveRequest)>,
    pending: FxHashMap<ReservationId, Pending>,
    /// Units of single-stock-point reservations still being placed, per customer, so that
    /// concurrent requests cannot slip past a per-customer limit.
    customer_pending: FxHashMap<ReservationId, (String, Vec<(SkuId, Qty)>)>,
    confirming: FxHashMap<ReservationId, Confirming>,
    armed: Option<Timestamp>,
}

impl Actor for Orchestrator {
    type Msg = OrchestratorMsg;
    type State = OrchestratorState;
    type Arguments = OrchestratorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        args: OrchestratorArgs,
    ) -> Result<OrchestratorState, ActorProcessingErr> {
        let compiled = args.rules.compile(&args.network).or_else(|error| {
            // Rules valid when set stay valid: stock points are never removed. Fall back to the
            // default rather than refuse to start.
            warn!(%error, "stored rules do not compile; using the default rules");
            RuleSet::default().compile(&args.network)
        })?;
        let mut state = OrchestratorState {
            skus: args.skus,
            network: args.network,
            rules: args.rules,
            compiled,
            book: args.book,
            next: args.next,
            board: args.board,
            directory: args.directory,
            log: args.log,
            clock: args.clock,
            downstream: args.downstream,
            intake: args.intake,
            collected: Vec::new(),
            settled: Arc::default(),
            settling: Vec::new(),
            pending: FxHashMap::default(),
            customer_pending: FxHashMap::default(),
            confirming: FxHashMap::default(),
            armed: None,
        };
        state.arm(&myself);
        Ok(state)
    }

    async fn post_start(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        state: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        // A restarted orchestrator: requests pushed while its predecessor failed found the
        // intake non-empty and rang nobody. Take them.
        if state.intake.depth() > 0 {
            let _ = myself.send_message(OrchestratorMsg::Collect);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<OrchestratorMsg>,
        message: OrchestratorMsg,
        state: &mut OrchestratorState,
    ) -> Result<(), ActorProcessingErr> {
        state.record_settled();
        match message {
            OrchestratorMsg::Collect => {
                // The first push rings us and tokio runs the woken actor next, from its LIFO
                // slot, before the other requesters on this worker have pushed: without this
                // yield a take held 1.6 requests on average, with it 28 to 36 (actor-holds,
                // hot SKU, 256 requesters). Yielding lets the queue fill; it costs one poll.
                tokio::task::yield_now().await;
                let mut requests = std::mem::take(&mut state.collected);
                if state.intake.take_into(&mut requests) == Ring::Ring {
                    // Stopping means the system is going down; the callers time out.
                    let _ = myself.send_message(OrchestratorMsg::Collect);
                }
                state.reserve_batch(&myself, requests.drain(..));
                state.collected = requests;
            }
            OrchestratorMsg::HoldAnswered {
                id,
                stock_point,
                answer,
            } => state.hold_answered(&myself, id, stock_point, answer),
            OrchestratorMsg::ReservationDurable { id, result } => {
                if let Some(pending) = state.pending.remove(&id) {
                    match result {
                        Ok(()) => {
                            let reservation = pending.reservation;
                            state.book.insert_created(reservation.clone());
                            (pending.answer)(Ok(Ok(reservation)));
                        }
                        Err(error) => (pending.answer)(Err(error)),
                    }
                }
            }
            OrchestratorMsg::Lost {
                id,
                request,
                attempt,
                shortages,
                answer,
            } => {
                state.customer_pending.remove(&id);
                if attempt < RESERVE_ATTEMPTS_MAX {
                    debug!(reservation = %id, attempt, "hold lost a race; re-planning");
                    let next = ReservationId(state.next.reservation);
                    state.next.reservation += 1;
                    state.start_reserve(&myself, next, *request, attempt + 1, answer);
                } else {
                    let shortages = state.line_shortages(shortages);
                    answer(Ok(Err(Refusal::Insufficient(shortages))));
                }
            }
            OrchestratorMsg::Abandoned(id) => {
                state.customer_pending.remove(&id);
            }
            OrchestratorMsg::Release { id, answer, ticket } => {
                drop(ticket);
                state.release(id, answer);
            }
            OrchestratorMsg::Confirm {
                id,
                customer_ref,
                answer,
                ticket,
            } => {
                drop(ticket);
                state.start_confirm(&myself, id, customer_ref, answer);
            }
            OrchestratorMsg::AllocationAnswered {
                id,
                stock_point,
                result,
            } => state.allocation_answered(&myself, id, stock_point, result),
            OrchestratorMsg::ConfirmDurable { id, result } => state.confirm_durable(id, result),
            OrchestratorMsg::Get(id, reply) => {
                // The caller may have timed out; nobody to tell then.
                let _ = reply.send(state.book.get(id).cloned());
            }
            OrchestratorMsg::Resource { request, answer } => state.resource(request, answer),
            OrchestratorMsg::PutStockPoint {
                stock_point,
                answer,
            } => state.put_stock_point(*stock_point, answer),
            OrchestratorMsg::ListStockPoints(reply) => {
                let _ = reply.send(state.network.iter().cloned().collect());
            }
            OrchestratorMsg::DefineSkus { codes, answer } => state.define_skus(codes, answer),
            OrchestratorMsg::PutRules { rules, answer } => state.put_rules(rules, answer),
            OrchestratorMsg::GetRules(reply) => {
                let _ = reply.send(state.rules.clone());
            }
            OrchestratorMsg::SetCustomerLimit {
                sku,
                max_per_customer,
                answer,
            } => {
                let event = Event::CustomerLimitSet {
                    sku,
                    max_per_customer,
                };
                if state.log_then(vec![event], answer_unit(answer)) {
                    state.book.set_limit(sku, max_per_customer);
                }
            }
            OrchestratorMsg::ExpectIncoming {
                stock_point,
                sku,
                qty,
                eta,
                answer,
            } => {
                let incoming = Incoming {
                    id: conductor_engine::ids::IncomingId(state.next.incoming),
                    qty,
                    eta,
                };
                state.next.incoming += 1;
                let echo = incoming.clone();
                let command = StockCommand::Expect { sku, incoming };
                let sent = state
                    .directory
                    .send(stock_point, |ticket| StockPointMsg::Command {
                        command,
                        answer: reply(move |r: Answer<()>| answer(r.map(|r| r.map(|()| echo)))),
                        ticket,
                    });
                if let Err(error) = sent {
                    warn!(%error, "incoming not sent");
                }
            }
            OrchestratorMsg::NextIds(reply) => {
                let _ = reply.send(state.next);
            }
            OrchestratorMsg::Crash => panic!("crash requested by a test hook"),
            OrchestratorMsg::ExpireDue => {
                state.armed = None;
                state.expire_due();
                let now = state.now();
                state
                    .book
                    .prune(now, RESERVATION_RETENTION_MS, PRUNES_PER_TICK_MAX);
            }
        }
        state.arm(&myself);
        Ok(())
    }
}

/// Adapts a unit answer to the log's completion.
fn answer_unit(
    answer: Reply<Answer<()>>,
) -> impl FnOnce(Result<(), CommandError>) + Send + 'static {
    move |r| answer(r.map(Ok))
}

impl OrchestratorState {
    /// Moves the settled single-stock-point reservations into the book.
    fn record_settled(&mut self) {
        let mut settled = std::mem::take(&mut self.settling);
        self.settled.take_into(&mut settled);
        for (reservation, _request) in settled.drain(..) {
            self.customer_pending.remove(&reservation.id);
            self.book.insert_created(reservation);
        }
        // Room for a collection's worth; a burst's peak is given back.
        settled.shrink_to(crate::intake::COLLECT_MAX);
        self.settling = settled;
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Appends `events`; `done` runs when they are durable. Returns false (and has told
    /// `done`) when the log refused, in which case the caller must not apply them.
    fn log_then(
        &self,
        events: Vec<Event>,
        done: impl FnOnce(Result<(), CommandError>) + Send + 'static,
    ) -> bool {
        let (for_log, here) = crate::once::split(done);
        match self.log.try_append(events, move |r| {
            for_log(r.map(|_| ()).map_err(CommandError::from))
        }) {
            Ok(()) => true,
            Err(error) => {
                here(Err(CommandError::from(error)));
                false
            }
        }
    }

    fn customer_pending_units(&self, customer: &str, sku: SkuId) -> Qty {
        let multi: Qty = self
            .pending
            .values()
            .filter(|p| p.reservation.customer_ref.as_deref() == Some(customer))
            .flat_map(|p| &p.reservation.lines)
            .filter(|l| l.sku == sku)
            .map(|l| l.reserved())
            .sum();
        let single: Qty = self
            .customer_pending
            .values()
            .filter(|(c, _)| c == customer)
            .flat_map(|(_, units)| units)
            .filter(|(s, _)| *s == sku)
            .map(|(_, q)| *q)
            .sum();
        multi + single
    }

    fn line_shortages(&self, shortages: Vec<StockShortage>) -> Vec<LineShortage> {
        shortages
            .into_iter()
            .filter_map(|s| {
                self.skus.code(s.sku.0).cloned().map(|sku| LineShortage {
                    sku,
                    requested: s.requested,
                    available: s.available,
                })
            })
            .collect()
    }

    fn start_reserve(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        request: ReserveRequest,
        attempt: u32,
        answer: Reply<Answer<Arc<Reservation>>>,
    ) {
        if let Some(replay) = self.replay_by_key(&request) {
            return answer(replay);
        }
        let now = self.now();
        let mut answer = Some(answer);
        let prepared = self.prepare_or_answer(id, &request, now, None, |a| {
            if let Some(answer) = answer.take() {
                answer(a)
            }
        });
        let (Some((reservation, holds)), Some(answer)) = (prepared, answer) else {
            return;
        };
        if holds.len() == 1 {
            return self.start_single(myself, id, request, attempt, reservation, holds, answer);
        }
        self.place_multi(myself, id, request, attempt, reservation, holds, answer);
    }

    /// A request whose idempotency key already made a reservation gets that reservation back
    /// (or a refusal, if the key came with a different request): the key is in the reservation
    /// record itself, so this holds across a crash that lost the first answer.
    fn replay_by_key(&self, request: &ReserveRequest) -> Option<Answer<Arc<Reservation>>> {
        let (key, fingerprint) = request.idempotency.as_ref()?;
        let existing = self.book.by_key(key)?;
        let same = existing
            .idempotency
            .as_ref()
            .is_some_and(|(_, f)| f == fingerprint);
        Some(Ok(if same {
            Ok(existing.clone())
        } else {
            Err(invalid(
                "Idempotency-Key",
                "already used with a different request",
            ))
        }))
    }

    /// Plans a request and checks the per-customer limits; on a "no", answers it and returns
    /// `None`.
    #[allow(clippy::type_complexity)]
    fn prepare_or_answer(
        &self,
        id: ReservationId,
        request: &ReserveRequest,
        now: Timestamp,
        memo: Option<&mut PlanMemo>,
        answer: impl FnOnce(Answer<Arc<Reservation>>),
    ) -> Option<(Arc<Reservation>, conductor_engine::checkout::HoldRequests)> {
        let ctx = CheckoutContext {
            skus: &self.skus,
            network: &self.network,
            rules: &self.compiled,
            view: &*self.board,
            book: &self.book,
        };
        let (reservation, holds) = match checkout::prepare_with(&ctx, request, id, now, memo) {
            Err(error) => {
                answer(Ok(Err(invalid("pickup_at", error.to_string()))));
                return None;
            }
            Ok(Prepared::Insufficient(shortages)) => {
                answer(Ok(Err(Refusal::Insufficient(shortages))));
                return None;
            }
            Ok(Prepared::LimitExceeded(refusal)) => {
                answer(Ok(Err(Refusal::LimitExceeded(refusal.to_string()))));
                return None;
            }
            Ok(Prepared::Reserve { reservation, holds }) => (reservation, holds),
        };
        if let Some(customer) = &request.customer_ref {
            // Reservations still being placed count against the customer's limit too, so that
            // concurrent requests cannot slip past it.
            for line in &reservation.lines {
                let Some(max) = self.book.limit(line.sku) else {
                    continue;
                };
                let total = self.book.customer_units(customer, line.sku)
                    + self.customer_pending_units(customer, line.sku)
                    + line.reserved();
                if total > max {
                    answer(Ok(Err(Refusal::LimitExceeded(format!(
                        "at most {max} units of this SKU per customer"
                    )))));
                    return None;
                }
            }
        }
        Some((reservation, holds))
    }

    /// Places the holds of a plan over several stock points; the reservation record is logged
    /// once every hold is durable.
    #[allow(clippy::too_many_arguments)]
    fn place_multi(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        request: ReserveRequest,
        attempt: u32,
        reservation: Arc<Reservation>,
        holds: conductor_engine::checkout::HoldRequests,
        answer: Reply<Answer<Arc<Reservation>>>,
    ) {
        let outstanding: Vec<StockPointId> = holds.iter().map(|(sp, _)| *sp).collect();
        self.pending.insert(
            id,
            Pending {
                request,
                reservation,
                attempt,
                outstanding,
                placed: Vec::new(),
                shortages: Vec::new(),
                failure: None,
                answer,
            },
        );
        for (sp, hold) in holds {
            let me = myself.clone();
            let (for_sp, here) = crate::once::split(move |answer| {
                // The orchestrator stopping means the system is going down; nothing to tell.
                let _ = me.send_message(OrchestratorMsg::HoldAnswered {
                    id,
                    stock_point: sp,
                    answer,
                });
            });
            let sent = self.directory.send(sp, |ticket| StockPointMsg::Hold {
                hold: BatchedHold {
                    request: hold,
                    record: None,
                    answer: reply_or(for_sp, lost_hold),
                },
                ticket,
            });
            if let Err(error) = sent {
                here(HoldAnswer::Failed(error));
            }
        }
    }

    /// The hot path: one stock point serves the whole reservation. The reservation record rides
    /// in the hold's log record, so one fsync acknowledges both, and the caller is answered
    /// straight from the log's acknowledgement; the orchestrator records it afterwards
    /// ([`Settled`]), before any later request of that caller can reach it.
    #[allow(clippy::too_many_arguments)]
    fn start_single(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        request: ReserveRequest,
        attempt: u32,
        reservation: Arc<Reservation>,
        holds: conductor_engine::checkout::HoldRequests,
        answer: Reply<Answer<Arc<Reservation>>>,
    ) {
        let Some((sp, hold)) =
            self.single_hold(myself, id, request, attempt, reservation, holds, answer)
        else {
            return;
        };
        let sent = self
            .directory
            .send_with(sp, hold, |hold, ticket| StockPointMsg::Hold {
                hold,
                ticket,
            });
        if let Err((error, Some(hold))) = sent {
            (hold.answer)(HoldAnswer::Failed(error));
        }
    }

    /// Builds the hold of a single-stock-point reservation, with the reservation record to log
    /// alongside and the answer that settles it.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn single_hold(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        request: ReserveRequest,
        attempt: u32,
        reservation: Arc<Reservation>,
        mut holds: conductor_engine::checkout::HoldRequests,
        answer: Reply<Answer<Arc<Reservation>>>,
    ) -> Option<(StockPointId, BatchedHold)> {
        let (sp, hold) = holds.pop()?;
        if let Some(customer) = &reservation.customer_ref {
            let units = reservation
                .lines
                .iter()
                .map(|l| (l.sku, l.reserved()))
                .collect();
            self.customer_pending.insert(id, (customer.clone(), units));
        }
        // Shared with the stock point, which logs it and drops it before the answer comes back,
        // so the answer takes the record back without copying it.
        let record = Some(reservation.clone());
        let me = myself.clone();
        let settled = self.settled.clone();
        let on_answer = move |outcome: HoldAnswer| {
            let message = match outcome {
                HoldAnswer::Placed => {
                    // Queued for the book before the caller hears back, so the caller's next
                    // request finds it. The book and the caller share the record.
                    settled.push(reservation.clone(), request);
                    return answer(Ok(Ok(reservation)));
                }
                HoldAnswer::Insufficient(shortages) => OrchestratorMsg::Lost {
                    id,
                    request: Box::new(request),
                    attempt,
                    shortages,
                    answer,
                },
                HoldAnswer::Failed(error) => {
                    let _ = me.send_message(OrchestratorMsg::Abandoned(id));
                    return answer(Err(error));
                }
            };
            let _ = me.send_message(message);
        };
        // Answered "failed" if the message is lost with a failed stock point; a message refused
        // before it is built comes back and is answered with the reason (`send_holds`).
        Some((
            sp,
            BatchedHold {
                request: hold,
                record,
                answer: reply_or(on_answer, lost_hold),
            },
        ))
    }

    fn reserve_batch(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        requests: impl Iterator<Item = Queued>,
    ) {
        let now = self.now();
        // Identical requests of one collection are planned once: a plan is advice that the
        // stock point re-checks, and the board barely moves while this loop runs.
        let mut memo = PlanMemo::default();
        let mut per_stock_point: FxHashMap<StockPointId, Vec<BatchedHold>> = FxHashMap::default();
        for (request, answer) in requests {
            if let Err(e) = request.validate() {
                answer(Ok(Err(invalid(e.field, e.message))));
                continue;
            }
            if let Some(replay) = self.replay_by_key(&request) {
                answer(replay);
                continue;
            }
            let id = ReservationId(self.next.reservation);
            self.next.reservation += 1;
            let mut answer = Some(answer);
            let prepared = self.prepare_or_answer(id, &request, now, Some(&mut memo), |a| {
                if let Some(answer) = answer.take() {
                    answer(a)
                }
            });
            let (Some((reservation, holds)), Some(answer)) = (prepared, answer) else {
                continue;
            };
            if holds.len() != 1 {
                self.place_multi(myself, id, request, 1, reservation, holds, answer);
                continue;
            }
            if let Some((sp, hold)) =
                self.single_hold(myself, id, request, 1, reservation, holds, answer)
            {
                let items = per_stock_point.entry(sp).or_default();
                items.push(hold);
                if items.len() >= STOCK_POINT_CHUNK {
                    let items = std::mem::take(items);
                    self.send_holds(sp, items);
                }
            }
        }
        for (sp, items) in per_stock_point {
            if !items.is_empty() {
                self.send_holds(sp, items);
            }
        }
    }

    /// Sends a stock point its holds of a collection. A message refused before it is built
    /// (busy, or the stock point down) comes back, and each hold is answered with the reason;
    /// one lost with a failed stock point is answered by the holds' guards ("failed").
    fn send_holds(&self, sp: StockPointId, holds: Vec<BatchedHold>) {
        let sent = self
            .directory
            .send_with(sp, holds, |holds, ticket| StockPointMsg::HoldBatch {
                holds,
                ticket,
            });
        if let Err((error, Some(holds))) = sent {
            for hold in holds {
                (hold.answer)(HoldAnswer::Failed(error.clone()));
            }
        }
    }

    fn hold_answered(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        stock_point: StockPointId,
        answer: HoldAnswer,
    ) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        pending.outstanding.retain(|sp| *sp != stock_point);
        match answer {
            HoldAnswer::Placed => pending.placed.push(stock_point),
            HoldAnswer::Insufficient(shortages) => {
                let shortages = shortages.into_iter().filter_map(|s| {
                    self.skus.code(s.sku.0).cloned().map(|sku| LineShortage {
                        sku,
                        requested: s.requested,
                        available: s.available,
                    })
                });
                pending.shortages.extend(shortages);
            }
            HoldAnswer::Failed(error) => pending.failure = Some(error),
        }
        if !pending.outstanding.is_empty() {
            return;
        }
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        let all_placed = pending.shortages.is_empty() && pending.failure.is_none();
        if all_placed {
            let event = Event::Reservation {
                at: self.now(),
                event: ReservationEvent::Created(pending.reservation.clone()),
            };
            let me = myself.clone();
            self.pending.insert(id, pending);
            self.log_then(vec![event], move |result| {
                let _ = me.send_message(OrchestratorMsg::ReservationDurable { id, result });
            });
            return;
        }
        // Some hold lost: leave nothing behind, then re-plan, or answer once the rollbacks are
        // durable (so that a read after the "no" sees the units available again).
        let retry = pending.failure.is_none() && pending.attempt < RESERVE_ATTEMPTS_MAX;
        if retry {
            for sp in &pending.placed {
                self.send_release(id, *sp, ReleaseReason::RolledBack);
            }
            debug!(reservation = %id, attempt = pending.attempt, "hold lost a race; re-planning");
            let next = ReservationId(self.next.reservation);
            self.next.reservation += 1;
            return self.start_reserve(
                myself,
                next,
                pending.request,
                pending.attempt + 1,
                pending.answer,
            );
        }
        let outcome = match pending.failure {
            Some(error) => Err(error),
            None => Ok(Err(Refusal::Insufficient(pending.shortages))),
        };
        let answer = pending.answer;
        let join = crate::once::join(pending.placed.len(), move |r: Result<(), CommandError>| {
            if let Err(error) = r {
                warn!(reservation = %id, %error, "rollback not durable; recovery or expiry releases it");
            }
            answer(outcome);
        });
        if pending.placed.is_empty() {
            return join.done(Ok(()));
        }
        for sp in &pending.placed {
            let join = join.clone();
            self.send_release_then(id, *sp, ReleaseReason::RolledBack, move |r| join.done(r));
        }
    }

    fn send_release(&self, id: ReservationId, sp: StockPointId, reason: ReleaseReason) {
        self.send_release_then(id, sp, reason, move |r| {
            if let Err(error) = r {
                warn!(reservation = %id, %error, "release not durable; recovery or expiry releases it");
            }
        });
    }

    /// Releases the hold at `sp`; `done` runs once the release is durable (a hold already gone,
    /// e.g. expired meanwhile, counts as released).
    fn send_release_then(
        &self,
        id: ReservationId,
        sp: StockPointId,
        reason: ReleaseReason,
        done: impl FnOnce(Result<(), CommandError>) + Send + 'static,
    ) {
        let (for_sp, here) = crate::once::split(done);
        let sent = self.directory.send(sp, |ticket| StockPointMsg::Command {
            command: StockCommand::Release {
                reservation: id,
                reason,
            },
            answer: reply_or_unavailable(move |r: Answer<()>| for_sp(r.map(|_| ()))),
            ticket,
        });
        if let Err(error) = sent {
            here(Err(error));
        }
    }

    fn release(&mut self, id: ReservationId, answer: Reply<Answer<()>>) {
        if self.confirming.contains_key(&id) {
            return answer(Ok(Err(Refusal::Conflict(format!(
                "{id} is being confirmed"
            )))));
        }
        let now = self.now();
        let event = match self.book.decide_release(id, now) {
            Ok(event) => event,
            Err(conductor_engine::reservation::ReservationRefusal::Unknown(_)) => {
                return answer(Ok(Err(Refusal::NotFound(id.to_string()))))
            }
            Err(refusal) => return answer(Ok(Err(Refusal::Conflict(refusal.to_string())))),
        };
        let stock_points = self
            .book
            .get(id)
            .map(Reservation::stock_points)
            .unwrap_or_default();
        // The caller hears back once the record and every stock point's release are durable,
        // so that a read after the answer already sees the units available again.
        let join = crate::once::join(1 + stock_points.len(), answer_unit(answer));
        let for_log = join.clone();
        let logged = self.log_then(
            vec![Event::Reservation {
                at: now,
                event: event.clone(),
            }],
            move |r| for_log.done(r),
        );
        if logged {
            self.book.apply(&event);
            for sp in stock_points {
                let join = join.clone();
                self.send_release_then(id, sp, ReleaseReason::Released, move |r| join.done(r));
            }
        }
    }

    fn start_confirm(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        customer_ref: Option<String>,
        answer: Reply<Answer<Order>>,
    ) {
        if self.confirming.contains_key(&id) {
            return answer(Ok(Err(Refusal::Conflict(format!(
                "{id} is being confirmed"
            )))));
        }
        let now = self.now();
        let order_id = OrderId(self.next.order);
        let confirm = match self.book.decide_confirm(id, order_id, now) {
            Ok(event) => event,
            Err(conductor_engine::reservation::ReservationRefusal::Unknown(_)) => {
                return answer(Ok(Err(Refusal::NotFound(id.to_string()))))
            }
            Err(refusal) => return answer(Ok(Err(Refusal::Conflict(refusal.to_string())))),
        };
        let Some(reservation) = self.book.get(id).cloned() else {
            return;
        };
        let mut created = match checkout::order_from_reservation(
            &reservation,
            order_id,
            FulfilmentId(self.next.fulfilment),
        ) {
            Ok(created) => created,
            Err(error) => return answer(Ok(Err(Refusal::Conflict(error.to_string())))),
        };
        if let (
            OrderEvent::Created {
                customer_ref: slot, ..
            },
            Some(customer),
        ) = (&mut created, customer_ref)
        {
            *slot = Some(customer);
        }
        let Some(order) = Order::from_created(&created, now) else {
            return;
        };
        self.next.order += 1;
        self.next.fulfilment += order.fulfilments.len() as u64;
        let stock_points = reservation.stock_points();
        let single = stock_points.len() == 1;
        let also = if single {
            vec![
                Event::Reservation {
                    at: now,
                    event: confirm,
                },
                Event::Order {
                    order: order_id,
                    at: now,
                    event: Box::new(created.clone()),
                },
            ]
        } else {
            Vec::new()
        };
        self.confirming.insert(
            id,
            Confirming {
                order: order.clone(),
                created,
                outstanding: stock_points.clone(),
                allocated: Vec::new(),
                refused: None,
                failure: None,
                logged_with_allocation: single,
                answer,
            },
        );
        for sp in stock_points {
            let me = myself.clone();
            let also = also.clone();
            // A single stock point logs the order with its allocation: once that is durable the
            // order exists, and the desk hears of it from here, whatever becomes of this actor.
            let durable_order = single.then(|| (self.downstream.clone(), order.clone()));
            let (for_sp, here) = crate::once::split(move |result: Answer<()>| {
                if let (Ok(Ok(())), Some((downstream, order))) = (&result, durable_order) {
                    downstream.order_confirmed(order);
                }
                let _ = me.send_message(OrchestratorMsg::AllocationAnswered {
                    id,
                    stock_point: sp,
                    result,
                });
            });
            let sent = self
                .directory
                .send(sp, |ticket| StockPointMsg::AllocateHold {
                    reservation: id,
                    order: order_id,
                    also,
                    answer: reply_or_unavailable(for_sp),
                    ticket,
                });
            if let Err(error) = sent {
                here(Err(error));
            }
        }
    }

    fn allocation_answered(
        &mut self,
        myself: &ActorRef<OrchestratorMsg>,
        id: ReservationId,
        stock_point: StockPointId,
        result: Answer<()>,
    ) {
        let Some(confirming) = self.confirming.get_mut(&id) else {
            return;
        };
        confirming.outstanding.retain(|sp| *sp != stock_point);
        match result {
            Ok(Ok(())) => confirming.allocated.push(stock_point),
            Ok(Err(_)) => {
                confirming.refused = Some(Refusal::Conflict(format!("{id} has expired")));
            }
            Err(error) => confirming.failure = Some(error),
        }
        if !confirming.outstanding.is_empty() {
            return;
        }
        let ok = confirming.refused.is_none() && confirming.failure.is_none();
        if ok && confirming.logged_with_allocation {
            return self.confirm_durable(id, Ok(()));
        }
        if ok {
            let now = self.clock.now();
            let order_id = confirming.order.id;
            let events = vec![
                Event::Reservation {
                    at: now,
                    event: ReservationEvent::Confirmed {
                        id,
                        order: order_id,
                    },
                },
                Event::Order {
                    order: order_id,
                    at: now,
                    event: Box::new(confirming.created.clone()),
                },
            ];
            let me = myself.clone();
            let downstream = self.downstream.clone();
            let order = confirming.order.clone();
            self.log_then(events, move |result| {
                // As for a single stock point: the desk hears of a durable order from here.
                if result.is_ok() {
                    downstream.order_confirmed(order);
                }
                let _ = me.send_message(OrchestratorMsg::ConfirmDurable { id, result });
            });
            return;
        }
        let Some(confirming) = self.confirming.remove(&id) else {
            return;
        };
        // Give back what was allocated (the reservation stays as it was, and expires), then
        // answer: a read after the "no" sees the units as they were.
        let answer = confirming.answer;
        let outcome = match (confirming.failure, confirming.refused) {
            (Some(error), _) => Err(error),
            (None, Some(refusal)) => Ok(Err(refusal)),
            (None, None) => unreachable!("a failed confirmation has a reason"),
        };
        let order = confirming.order.id;
        let join = crate::once::join(
            confirming.allocated.len(),
            move |r: Result<(), CommandError>| {
                if let Err(error) = r {
                    warn!(%order, %error, "allocation rollback not durable; recovery will release it");
                }
                answer(outcome);
            },
        );
        if confirming.allocated.is_empty() {
            join.done(Ok(()));
            return;
        }
        for sp in &confirming.allocated {
            let (for_sp, here) = crate::once::split({
                let join = join.clone();
                move |r: Result<(), CommandError>| join.done(r)
            });
            let sent = self.directory.send(*sp, |ticket| StockPointMsg::Command {
                command: StockCommand::ReleaseAllocation { order },
                answer: reply_or_unavailable(move |r: Answer<()>| for_sp(r.map(|_| ()))),
                ticket,
            });
            if let Err(error) = sent {
                here(Err(error));
            }
        }
    }

    fn confirm_durable(&mut self, id: ReservationId, result: Result<(), CommandError>) {
        let Some(confirming) = self.confirming.remove(&id) else {
            return;
        };
        match result {
            Ok(()) => {
                self.book.apply(&ReservationEvent::Confirmed {
                    id,
                    order: confirming.order.id,
                });
                (confirming.answer)(Ok(Ok(confirming.order)));
            }
            Err(error) => (confirming.answer)(Err(error)),
        }
    }

    fn expire_due(&mut self) {
        let now = self.now();
        let due: Vec<ReservationEvent> = self
            .book
            .decide_expiries(now, EXPIRIES_PER_TICK_MAX)
            .into_iter()
            .filter(|e| match e {
                ReservationEvent::Expired { id } => !self.confirming.contains_key(id),
                _ => true,
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let events = due
            .iter()
            .map(|event| Event::Reservation {
                at: now,
                event: event.clone(),
            })
            .collect();
        if self.log_then(events, |r| {
            if let Err(error) = r {
                warn!(%error, "reservation expiries not durable");
            }
        }) {
            for event in &due {
                self.book.apply(event);
            }
        }
    }

    fn arm(&mut self, myself: &ActorRef<OrchestratorMsg>) {
        let Some(next) = self.book.next_expiry() else {
            return;
        };
        if self.armed.is_some_and(|armed| armed <= next) {
            return;
        }
        self.armed = Some(next);
        let delay = Duration::from_millis(next.0.saturating_sub(self.now().0));
        myself.send_after(delay, || OrchestratorMsg::ExpireDue);
    }

    fn resource(
        &mut self,
        request: ResourceRequest,
        answer: Reply<Answer<Vec<(FulfilmentId, StockPointId, Qty)>>>,
    ) {
        let Some(code) = self.skus.code(request.sku.0).cloned() else {
            return answer(Ok(Err(Refusal::NotFound(format!("{:?}", request.sku)))));
        };
        let lines = [PlanLine {
            sku: request.sku,
            code: code.as_str(),
            qty: request.missing,
        }];
        let plan_request = PlanRequest {
            channel: conductor_engine::network::Channel::Web,
            lines: &lines,
            ship_to: None,
            pickup_at: None,
            tags: &[],
            exclude: &request.exclude,
            options: PlanOptions {
                allow_split: true,
                allow_partial: true,
                allow_backorder: false,
            },
            now: self.now(),
        };
        let allocations = match plan(&self.compiled, &self.network, &*self.board, &plan_request) {
            Ok(PlanOutcome::Planned(plan)) => plan.allocations,
            Ok(PlanOutcome::Insufficient { .. }) => Vec::new(),
            Err(error) => return answer(Ok(Err(Refusal::Conflict(error.to_string())))),
        };
        if allocations.is_empty() {
            return answer(Ok(Ok(Vec::new())));
        }
        // Allocate at each planned stock point; answer when all have answered.
        let results = Arc::new(std::sync::Mutex::new((
            allocations.len(),
            Vec::new(),
            Some(answer),
        )));
        for a in allocations {
            let results = results.clone();
            let (sp, qty) = (a.stock_point, a.qty);
            let fulfilment = FulfilmentId(self.next.fulfilment);
            self.next.fulfilment += 1;
            let lines = vec![StockLine {
                sku: a.sku,
                qty: a.qty,
                source: a.source,
            }];
            let finish = move |r: Answer<()>| {
                let mut guard = results.lock().unwrap_or_else(|e| e.into_inner());
                guard.0 -= 1;
                if matches!(r, Ok(Ok(()))) {
                    guard.1.push((fulfilment, sp, qty));
                }
                if guard.0 == 0 {
                    let done = std::mem::take(&mut guard.1);
                    if let Some(answer) = guard.2.take() {
                        answer(Ok(Ok(done)));
                    }
                }
            };
            let (for_sp, here) = crate::once::split(finish);
            let sent = self.directory.send(sp, |ticket| StockPointMsg::Command {
                command: StockCommand::Allocate {
                    order: request.order,
                    lines,
                },
                answer: reply_or_unavailable(for_sp),
                ticket,
            });
            if let Err(error) = sent {
                here(Err(error));
            }
        }
    }

    fn put_stock_point(&mut self, spec: StockPointSpec, answer: Reply<Answer<StockPoint>>) {
        let existing = self
            .network
            .iter()
            .find(|sp| sp.code == spec.code)
            .map(|sp| sp.id);
        let id = existing.unwrap_or(StockPointId(self.network.len() as u32));
        let stock_point = StockPoint {
            id,
            code: spec.code,
            kind: spec.kind,
            name: spec.name,
            location: spec.location,
            priority: spec.priority,
            channels: spec.channels,
            capabilities: spec.capabilities,
            cost_per_shipment: spec.cost_per_shipment,
            tags: spec.tags,
        };
        let echo = stock_point.clone();
        let event = Event::StockPointDefined(Box::new(stock_point.clone()));
        if self.log_then(vec![event], move |r| answer(r.map(|()| Ok(echo)))) {
            self.network.upsert(stock_point.clone());
            if let Ok(compiled) = self.rules.compile(&self.network) {
                self.compiled = compiled;
            }
            if existing.is_none() {
                self.downstream.stock_point_added(&stock_point);
            }
            self.downstream.network_changed(&self.network);
        }
    }

    fn define_skus(&mut self, codes: Vec<Code>, answer: Reply<Answer<Vec<SkuId>>>) {
        let mut ids = Vec::with_capacity(codes.len());
        let mut events = Vec::new();
        for code in codes {
            match self.skus.get(code.as_str()) {
                Some(id) => ids.push(SkuId(id)),
                None => {
                    let id = SkuId(self.skus.next_id());
                    self.skus.define(id.0, code.clone());
                    self.board.define_sku(id, code.clone());
                    events.push(Event::SkuDefined { sku: id, code });
                    ids.push(id);
                }
            }
        }
        if events.is_empty() {
            return answer(Ok(Ok(ids)));
        }
        // Defined in memory before durable: a failed log stops all writes anyway, and the
        // stock events that use these ids come later in the same log.
        self.log_then(events, move |r| answer(r.map(|()| Ok(ids))));
    }

    fn put_rules(&mut self, rules: Vec<Rule>, answer: Reply<Answer<RuleSet>>) {
        let set = RuleSet {
            version: self.rules.version + 1,
            rules,
        };
        let compiled = match set.compile(&self.network) {
            Ok(compiled) => compiled,
            Err(error) => return answer(Ok(Err(invalid(error.path, error.message)))),
        };
        let echo = set.clone();
        if self.log_then(vec![Event::RulesReplaced(set.clone())], move |r| {
            answer(r.map(|()| Ok(echo)))
        }) {
            self.rules = set;
            self.compiled = compiled;
        }
    }
}
