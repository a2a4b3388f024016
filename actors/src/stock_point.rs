//! The stock point actor: the only writer of one stock point's inventory. It decides with the
//! engine, hands the event to the log, applies it in memory, publishes the new figures to the
//! board, and answers only when the log says the event is durable.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use conductor_engine::ids::{IncomingId, OrderId, Qty, ReservationId, ReturnId, SkuId};
use conductor_engine::inventory::{
    AdjustReason, Adjustment, HoldOutcome, HoldRequest, Incoming, ReleaseReason, StockEvent,
    StockLine, StockPointInventory, StockRefusal, StockShortage,
};
use conductor_engine::reservation::{Reservation, ReservationEvent};
use conductor_engine::state::Event;
use conductor_engine::time::Timestamp;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tracing::{debug, info};

use crate::board::Board;
use crate::clock::Clock;
use crate::error::{Answer, CommandError, Refusal};
use crate::mailbox::Ticket;
use crate::once::Join;
use crate::Log;

/// A one-shot answer, run where the answer becomes known (often on the log's syncer thread,
/// between two syncs): keep it cheap.
pub type Reply<T> = Box<dyn FnOnce(T) + Send + 'static>;

pub fn reply<T: Send + 'static>(f: impl FnOnce(T) + Send + 'static) -> Reply<T> {
    Box::new(f)
}

/// A reply that answers `if_dropped()` if it is dropped unanswered: when its message could not
/// be sent, or was lost in the mailbox of an actor that failed. For callers that are actors
/// themselves, whose bookkeeping (a reservation being placed, a confirmation, a task in flight)
/// would otherwise wait for an answer that never comes.
pub fn reply_or<T: Send + 'static>(
    f: impl FnOnce(T) + Send + 'static,
    if_dropped: impl FnOnce() -> T + Send + 'static,
) -> Reply<T> {
    // One box: the guard holds both closures inline (a box each cost two more allocations per
    // hold on the hot path).
    let guard = AnswerOnDrop(Some((f, if_dropped)), PhantomData);
    Box::new(move |answer| guard.answer(answer))
}

/// [`reply_or`] answering "unavailable" (the outcome is unknown only if the actor failed while
/// handling the message, as for any caller whose actor fails).
pub fn reply_or_unavailable<T: Send + 'static>(
    f: impl FnOnce(Answer<T>) + Send + 'static,
) -> Reply<Answer<T>> {
    reply_or(f, || Err(stopped_before_answering()))
}

pub fn stopped_before_answering() -> CommandError {
    CommandError::Unavailable("the actor stopped before answering".into())
}

struct AnswerOnDrop<T, F: FnOnce(T), D: FnOnce() -> T>(Option<(F, D)>, PhantomData<fn(T)>);

impl<T, F: FnOnce(T), D: FnOnce() -> T> AnswerOnDrop<T, F, D> {
    fn answer(mut self, answer: T) {
        if let Some((f, _)) = self.0.take() {
            f(answer);
        }
    }
}

impl<T, F: FnOnce(T), D: FnOnce() -> T> Drop for AnswerOnDrop<T, F, D> {
    fn drop(&mut self) {
        if let Some((f, if_dropped)) = self.0.take() {
            f(if_dropped());
        }
    }
}

#[derive(Debug)]
pub enum HoldAnswer {
    /// Placed and durable.
    Placed,
    /// Not enough units; nothing was held.
    Insufficient(Vec<StockShortage>),
    Failed(CommandError),
}

/// A change of inventory that follows the common path: decide, log, apply, answer when durable.
#[derive(Clone, Debug)]
pub enum StockCommand {
    Release {
        reservation: ReservationId,
        reason: ReleaseReason,
    },
    Allocate {
        order: OrderId,
        lines: Vec<StockLine>,
    },
    ReleaseAllocation {
        order: OrderId,
    },
    /// A fulfilment's units leaving the building, all its lines at once.
    Ship {
        order: OrderId,
        lines: Vec<(SkuId, Qty)>,
    },
    ShortPick {
        order: OrderId,
        sku: SkuId,
        missing: Qty,
    },
    Adjust {
        sku: SkuId,
        adjustment: Adjustment,
        reason: AdjustReason,
    },
    SafetyStock {
        sku: SkuId,
        qty: Qty,
    },
    NonSellable {
        sku: SkuId,
        qty: Qty,
    },
    Expect {
        sku: SkuId,
        incoming: Incoming,
    },
    Receive {
        sku: SkuId,
        qty: Qty,
        incoming: Option<IncomingId>,
    },
    /// A return's units back on the shelf here, all its lines at once.
    Restock {
        ret: ReturnId,
        lines: Vec<(SkuId, Qty)>,
    },
}

/// Runs once a record is durable, on the log's syncer thread: keep it cheap.
pub type OnDurable = Box<dyn FnOnce() + Send + 'static>;

/// One hold of a [`StockPointMsg::HoldBatch`], with its answer.
pub struct BatchedHold {
    pub request: HoldRequest,
    /// The reservation's record, when this is its only stock point: logged in the hold's
    /// record, so that one fsync covers both.
    pub record: Option<Arc<Reservation>>,
    pub answer: Reply<HoldAnswer>,
}

/// Holds in one batch message.
pub const HOLD_BATCH_MAX: usize = 4_096;

pub enum StockPointMsg {
    /// Places one hold, exactly as a batch of one.
    Hold {
        hold: BatchedHold,
        ticket: Ticket,
    },
    /// Many holds in one message, logged as one append: the batch interface of the hot path.
    HoldBatch {
        holds: Vec<BatchedHold>,
        ticket: Ticket,
    },
    /// Turns a hold into an order's allocation; `also` as for `Hold`.
    AllocateHold {
        reservation: ReservationId,
        order: OrderId,
        also: Vec<Event>,
        answer: Reply<Answer<()>>,
        ticket: Ticket,
    },
    Command {
        command: StockCommand,
        answer: Reply<Answer<()>>,
        ticket: Ticket,
    },
    /// A change logged in one record with the events that explain it (an order's "shipped"
    /// with the units leaving, a return's arrival with its restock): no crash keeps one and
    /// loses the other, so a repeated report finds both done or neither. `on_durable` runs once
    /// the record is durable, before `answer`; it is dropped unrun if nothing was logged.
    Explained {
        command: StockCommand,
        also: Vec<Event>,
        on_durable: OnDurable,
        answer: Reply<Answer<()>>,
        ticket: Ticket,
    },
    /// Releases the holds whose expiry has passed; sent by this actor's own timer.
    ExpireDue,
    Inspect(RpcReplyPort<StockPointInventory>),
    /// Test hook: panics inside the handler, to exercise supervision.
    Crash,
}

pub struct StockPointActor;

pub struct StockPointArgs {
    pub inventory: StockPointInventory,
    pub board: Arc<Board>,
    pub log: Log,
    pub clock: Arc<dyn Clock>,
}

pub struct StockPointState {
    inventory: StockPointInventory,
    board: Arc<Board>,
    log: Log,
    clock: Arc<dyn Clock>,
    /// The expiry the pending timer is set for, so that we arm a new one only when an earlier
    /// expiry appears. One timer per actor, not one per hold.
    armed: Option<Timestamp>,
    /// Where the answers of a batch of holds run when the log's acknowledgement completes
    /// them (see [`crate::call::on_runtime`]).
    runtime: tokio::runtime::Handle,
}

impl Actor for StockPointActor {
    type Msg = StockPointMsg;
    type State = StockPointState;
    type Arguments = StockPointArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<StockPointMsg>,
        args: StockPointArgs,
    ) -> Result<StockPointState, ActorProcessingErr> {
        let mut state = StockPointState {
            inventory: args.inventory,
            board: args.board,
            log: args.log,
            clock: args.clock,
            armed: None,
            runtime: tokio::runtime::Handle::current(),
        };
        for (sku, position) in state.inventory.positions() {
            state.board.publish(state.inventory.id, sku, position);
        }
        state.arm(&myself);
        debug!(stock_point = ?state.inventory.id, "stock point started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<StockPointMsg>,
        message: StockPointMsg,
        state: &mut StockPointState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            StockPointMsg::Hold { hold, ticket } => {
                drop(ticket);
                state.hold_batch(std::iter::once(hold));
            }
            StockPointMsg::HoldBatch { holds, ticket } => {
                drop(ticket);
                state.hold_batch(holds.into_iter());
            }
            StockPointMsg::AllocateHold {
                reservation,
                order,
                also,
                answer,
                ticket,
            } => {
                drop(ticket);
                match state.inventory.decide_allocate_hold(reservation, order) {
                    Ok(event) => state.commit(vec![event], also, move |r| answer(r.map(Ok))),
                    Err(refusal) => answer(Ok(Err(refusal_of(refusal)))),
                }
            }
            StockPointMsg::Command {
                command,
                answer,
                ticket,
            } => {
                drop(ticket);
                state.change(command, Vec::new(), None, answer);
            }
            StockPointMsg::Explained {
                command,
                also,
                on_durable,
                answer,
                ticket,
            } => {
                drop(ticket);
                state.change(command, also, Some(on_durable), answer);
            }
            StockPointMsg::ExpireDue => {
                state.armed = None;
                let now = state.clock.now();
                let due = state.inventory.decide_expiries(now);
                if !due.is_empty() {
                    info!(stock_point = ?state.inventory.id, n_holds = due.len(), "holds expired");
                }
                for event in due {
                    state.commit(vec![event], Vec::new(), |r| {
                        if let Err(error) = r {
                            tracing::error!(%error, "expiry not durable");
                        }
                    });
                }
            }
            StockPointMsg::Inspect(reply) => {
                // The caller may have given up waiting; nothing to do then.
                let _ = reply.send(state.inventory.clone());
            }
            StockPointMsg::Crash => panic!("crash requested by a test hook"),
        }
        state.arm(&myself);
        Ok(())
    }
}

fn refusal_of(refusal: StockRefusal) -> Refusal {
    match refusal {
        StockRefusal::UnknownHold(r) => Refusal::NotFound(format!("hold for {r}")),
        StockRefusal::UnknownAllocation(o) => Refusal::NotFound(format!("allocation for {o}")),
        StockRefusal::UnknownIncoming(i) => Refusal::NotFound(format!("incoming {i}")),
        other => Refusal::Conflict(other.to_string()),
    }
}

impl StockPointState {
    fn decide(&self, command: StockCommand) -> Result<Vec<StockEvent>, StockRefusal> {
        let inv = &self.inventory;
        let one = match command {
            StockCommand::Release {
                reservation,
                reason,
            } => inv.decide_release(reservation, reason),
            StockCommand::Allocate { order, lines } => match inv.decide_allocate(order, lines) {
                HoldOutcome::Placed(event) => Ok(event),
                HoldOutcome::AlreadyHeld => unreachable!("allocations are not holds"),
                HoldOutcome::Insufficient(s) => Err(StockRefusal::AllocationTooSmall {
                    order,
                    allocated: s.first().map_or(Qty::ZERO, |s| s.available),
                    requested: s.first().map_or(Qty::ZERO, |s| s.requested),
                }),
            },
            StockCommand::ReleaseAllocation { order } => inv.decide_release_allocation(order),
            StockCommand::Ship { order, lines } => return inv.decide_shipment(order, &lines),
            StockCommand::ShortPick {
                order,
                sku,
                missing,
            } => inv.decide_short_pick(order, sku, missing),
            StockCommand::Adjust {
                sku,
                adjustment,
                reason,
            } => inv.decide_adjust(sku, adjustment, reason),
            StockCommand::SafetyStock { sku, qty } => Ok(StockEvent::SafetyStockSet { sku, qty }),
            StockCommand::NonSellable { sku, qty } => inv.decide_non_sellable(sku, qty),
            StockCommand::Expect { sku, incoming } => {
                Ok(StockEvent::IncomingExpected { sku, incoming })
            }
            StockCommand::Receive { sku, qty, incoming } => inv.decide_receipt(sku, qty, incoming),
            StockCommand::Restock { ret, lines } => {
                return Ok(lines
                    .into_iter()
                    .map(|(sku, qty)| StockEvent::Restocked { sku, qty, ret })
                    .collect())
            }
        };
        one.map(|event| vec![event])
    }

    /// Decides `command`; a change is committed with `also`, `on_durable` runs once it is
    /// durable and before `answer`; a refusal is answered at once.
    fn change(
        &mut self,
        command: StockCommand,
        also: Vec<Event>,
        on_durable: Option<OnDurable>,
        answer: Reply<Answer<()>>,
    ) {
        match self.decide(command) {
            Ok(events) => self.commit(events, also, move |r| {
                if let (Ok(()), Some(on_durable)) = (&r, on_durable) {
                    on_durable();
                }
                answer(r.map(Ok))
            }),
            Err(refusal) => answer(Ok(Err(refusal_of(refusal)))),
        }
    }

    /// Logs `changes` (with `also`) as one record, applies them, publishes, and arranges for
    /// `done` to run once the record is durable. If the log refuses, nothing is applied and
    /// `done` runs at once with the error.
    fn commit(
        &mut self,
        changes: Vec<StockEvent>,
        also: Vec<Event>,
        done: impl FnOnce(Result<(), CommandError>) + Send + 'static,
    ) {
        let at = self.clock.now();
        let mut touched = Vec::new();
        let mut events = Vec::with_capacity(changes.len() + also.len());
        for event in &changes {
            self.touched(event, &mut touched);
            events.push(Event::Stock {
                stock_point: self.inventory.id,
                at,
                event: event.clone(),
            });
        }
        touched.sort();
        touched.dedup();
        events.extend(also);
        let answer = crate::once::join(2, done);
        if let Err(error) = self.append(events, &answer) {
            answer.fail(error);
            return;
        }
        for event in &changes {
            self.inventory.apply(event);
        }
        self.publish(touched);
        answer.done(Ok(()));
    }

    /// Hands `events` to the log as `answer`'s first part; the second is this actor's, once the
    /// board shows the change. The answer waits for both, whichever comes last: the log's
    /// acknowledgement can overtake this actor, and a caller who reads or plans against the
    /// board after the answer must see what it was told is done. If the log refuses, its part
    /// never comes: the caller fails the answer.
    fn append(&self, events: Vec<Event>, answer: &Join<CommandError>) -> Result<(), CommandError> {
        let for_log = answer.clone();
        self.log
            .try_append(events, move |r| {
                for_log.done(r.map(|_| ()).map_err(CommandError::from));
            })
            .map_err(CommandError::from)
    }

    fn publish(&self, skus: Vec<SkuId>) {
        for sku in skus {
            if let Some(position) = self.inventory.position(sku) {
                self.board.publish(self.inventory.id, sku, position);
            }
        }
    }

    /// Decides and applies each hold in turn (each sees the ones before it), then logs all placed
    /// holds as one append. If the log refuses, the placed holds are taken back out of memory
    /// (they were never logged) and every one is answered with the error.
    fn hold_batch(&mut self, holds: impl ExactSizeIterator<Item = BatchedHold>) {
        debug_assert!(holds.len() <= HOLD_BATCH_MAX);
        let now = self.clock.now();
        let mut events = Vec::with_capacity(holds.len() * 2);
        let mut placed = Vec::with_capacity(holds.len());
        let mut answers = Vec::with_capacity(holds.len());
        let mut touched = Vec::new();
        for hold in holds {
            match self.inventory.decide_hold(&hold.request) {
                HoldOutcome::Placed(event) => {
                    self.touched(&event, &mut touched);
                    self.inventory.apply(&event);
                    placed.push(hold.request.reservation);
                    self.log_hold(now, event, hold.record, &mut events);
                    answers.push(hold.answer);
                }
                HoldOutcome::AlreadyHeld => (hold.answer)(HoldAnswer::Placed),
                HoldOutcome::Insufficient(shortages) => {
                    (hold.answer)(HoldAnswer::Insufficient(shortages))
                }
            }
        }
        if placed.is_empty() {
            return;
        }
        touched.sort();
        touched.dedup();
        let runtime = self.runtime.clone();
        let answer = crate::once::join(2, move |r: Result<(), CommandError>| {
            crate::call::on_runtime(&runtime, move || {
                for answer in answers {
                    answer(match &r {
                        Ok(()) => HoldAnswer::Placed,
                        Err(e) => HoldAnswer::Failed(e.clone()),
                    });
                }
            })
        });
        let refused = self.append(events, &answer).err();
        if refused.is_some() {
            for reservation in placed.into_iter().rev() {
                self.inventory.apply(&StockEvent::HoldReleased {
                    reservation,
                    reason: ReleaseReason::RolledBack,
                });
            }
        }
        self.publish(touched);
        match refused {
            None => answer.done(Ok(())),
            Some(error) => answer.fail(error),
        }
    }

    /// Adds the log's record of a placed hold, and of the reservation record that rides with
    /// it, to `events`: one [`Event::Reserved`] when the hold is exactly the reservation's hold
    /// here (a reservation served by this stock point alone, the hot path), two events
    /// otherwise.
    fn log_hold(
        &self,
        now: Timestamp,
        event: StockEvent,
        record: Option<Arc<Reservation>>,
        events: &mut Vec<Event>,
    ) {
        let stock_point = self.inventory.id;
        match (event, record) {
            (StockEvent::HoldPlaced(hold), Some(reservation))
                if reservation.hold_at(stock_point) == hold =>
            {
                events.push(Event::Reserved {
                    stock_point,
                    reservation,
                })
            }
            (event, record) => {
                events.push(Event::Stock {
                    stock_point,
                    at: now,
                    event,
                });
                events.extend(record.map(|reservation| Event::Reservation {
                    at: reservation.created_at,
                    event: ReservationEvent::Created(reservation),
                }));
            }
        }
    }

    /// Adds to `out` the SKUs whose figures `event` changes; read before applying, while the
    /// hold still exists. (Into the caller's list: a batch of holds makes one list, not one each.)
    fn touched(&self, event: &StockEvent, out: &mut Vec<SkuId>) {
        match event {
            StockEvent::HoldPlaced(hold) => out.extend(hold.lines.iter().map(|l| l.sku)),
            StockEvent::HoldReleased { reservation, .. }
            | StockEvent::HoldAllocated { reservation, .. } => {
                if let Some(hold) = self.inventory.find_hold(*reservation) {
                    out.extend(hold.lines.iter().map(|l| l.sku));
                }
            }
            StockEvent::Allocated { lines, .. } | StockEvent::AllocationReleased { lines, .. } => {
                out.extend(lines.iter().map(|l| l.sku))
            }
            StockEvent::Shipped { sku, .. }
            | StockEvent::ShortPicked { sku, .. }
            | StockEvent::OnHandSet { sku, .. }
            | StockEvent::SafetyStockSet { sku, .. }
            | StockEvent::NonSellableSet { sku, .. }
            | StockEvent::IncomingExpected { sku, .. }
            | StockEvent::Received { sku, .. }
            | StockEvent::Restocked { sku, .. } => out.push(*sku),
        }
    }

    fn arm(&mut self, myself: &ActorRef<StockPointMsg>) {
        let Some(next) = self.inventory.next_expiry() else {
            return;
        };
        if self.armed.is_some_and(|armed| armed <= next) {
            return;
        }
        self.armed = Some(next);
        let delay = Duration::from_millis(next.0.saturating_sub(self.clock.now().0));
        myself.send_after(delay, || StockPointMsg::ExpireDue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answers = Arc<std::sync::Mutex<Vec<Answer<u32>>>>;

    fn recorder() -> (Answers, Reply<Answer<u32>>) {
        let answers = Answers::default();
        let seen = answers.clone();
        let reply = reply_or_unavailable(move |answer| seen.lock().unwrap().push(answer));
        (answers, reply)
    }

    #[test]
    fn a_reply_dropped_unanswered_answers_unavailable_once() {
        let (answers, reply) = recorder();
        drop(reply);
        let answers = answers.lock().unwrap();
        assert_eq!(answers.len(), 1);
        assert!(matches!(answers[0], Err(CommandError::Unavailable(_))));
    }

    #[test]
    fn an_answered_reply_answers_only_that() {
        let (answers, reply) = recorder();
        reply(Ok(Ok(7)));
        assert!(matches!(answers.lock().unwrap()[..], [Ok(Ok(7))]));
    }
}
