//! Calls waited for with a deadline but without a timer of their own.
//!
//! Every call has a timeout, and a tokio timer per call cost more than anything else on the
//! hot path: registering and cancelling it in the runtime's timer wheel, and a worker that
//! parks with timers pending, took 14 % of the CPU per hold of a sale (actor-holds, hot SKU:
//! 2.9 → 2.5 µs per hold with no timer at all). Here a call registers its answer cell in one
//! table (a lock, a slot) and removes it when it ends; one thread, `call-deadlines`, looks
//! every [`SWEEP_EVERY`] for calls past their deadline and answers them "timed out". Time is
//! counted in the thread's sweeps, so a call reads no clock: it times out between its timeout
//! and two sweeps later.
//!
//! The table is process-wide, like a runtime's timer, and serves every runtime in the process
//! (tests start many): its thread needs no runtime, and waking a task works from any thread.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::CommandError;

/// How often the deadline thread looks for calls past their deadline.
pub const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// How many slots the deadline thread checks per hold of the table's lock, so that a long
/// table does not stall the calls starting and ending meanwhile.
const SWEEP_SLOTS_PER_LOCK: usize = 4_096;

/// The answer of one call, filled once: by the reply, by the reply's guard when it is dropped
/// unanswered, or by the deadline thread. The first one wins.
struct Cell<T> {
    state: Mutex<State<T>>,
}

enum State<T> {
    Waiting(Option<Waker>),
    Answered(T),
    Taken,
}

impl<T> Cell<T> {
    fn fill(&self, answer: T) {
        let waker = {
            let mut state = lock(&self.state);
            match &mut *state {
                State::Waiting(waker) => {
                    let waker = waker.take();
                    *state = State::Answered(answer);
                    waker
                }
                State::Answered(_) | State::Taken => return,
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// What the deadline thread does to a call past its deadline.
trait Expire: Send + Sync {
    fn expire(&self);
}

impl<U: Send> Expire for Cell<Result<U, CommandError>> {
    fn expire(&self) {
        self.fill(Err(CommandError::Timeout));
    }
}

/// The calls in flight: a slab of slots, each with the id of the call in it, so that a call
/// ending after the deadline thread took its slot (and the slot went to another call) removes
/// nothing of the other call's.
#[derive(Default)]
struct Table {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    next_id: u64,
}

struct Entry {
    id: u64,
    /// The sweep from which on the call is past its deadline.
    deadline: u64,
    cell: Arc<dyn Expire>,
}

impl Table {
    fn insert(&mut self, deadline: u64, cell: Arc<dyn Expire>) -> (usize, u64) {
        let id = self.next_id;
        self.next_id += 1;
        let entry = Some(Entry { id, deadline, cell });
        let slot = match self.free.pop() {
            Some(slot) => {
                debug_assert!(self.slots[slot].is_none());
                self.slots[slot] = entry;
                slot
            }
            None => {
                self.slots.push(entry);
                self.slots.len() - 1
            }
        };
        (slot, id)
    }

    fn remove(&mut self, slot: usize, id: u64) {
        if let Some(entry) = self.slots.get_mut(slot) {
            if entry.as_ref().is_some_and(|e| e.id == id) {
                *entry = None;
                self.free.push(slot);
            }
        }
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// The calls in flight and the deadline thread's clock: how many sweeps it has begun.
#[derive(Default)]
struct Deadlines {
    table: Mutex<Table>,
    sweeps: AtomicU64,
}

fn deadlines() -> &'static Deadlines {
    static DEADLINES: OnceLock<&'static Deadlines> = OnceLock::new();
    DEADLINES.get_or_init(|| {
        let deadlines: &'static Deadlines = Box::leak(Box::default());
        // Without the thread calls still end when answered, but none would time out; the
        // process cannot promise its timeouts then, so it says so loudly.
        if let Err(error) = std::thread::Builder::new()
            .name("call-deadlines".into())
            .spawn(move || sweep_forever(deadlines))
        {
            tracing::error!(%error, "could not start the call-deadlines thread; calls will not time out");
        }
        deadlines
    })
}

fn table() -> &'static Mutex<Table> {
    &deadlines().table
}

fn sweep_forever(deadlines: &'static Deadlines) {
    let table = &deadlines.table;
    let mut expired = Vec::new();
    loop {
        std::thread::sleep(SWEEP_EVERY);
        let now = deadlines.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut start = 0;
        loop {
            let more = {
                let mut table = lock(table);
                let end = (start + SWEEP_SLOTS_PER_LOCK).min(table.slots.len());
                for slot in start..end {
                    if let Some(entry) = table.slots[slot].take_if(|entry| entry.deadline <= now) {
                        expired.push(entry.cell);
                        table.free.push(slot);
                    }
                }
                start = end;
                end < table.slots.len()
            };
            // Answered outside the lock: a wake may run other code. A panic there must not end
            // the thread, or no call would time out again.
            for cell in expired.drain(..) {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cell.expire())).is_err()
                {
                    tracing::error!("a call's timeout panicked while waking its caller");
                }
            }
            if !more {
                break;
            }
        }
    }
}

/// A new call: the reply to hand to whoever answers, and the future that waits for the answer
/// at least `timeout` and at most two sweeps longer. A reply dropped unanswered answers
/// `if_dropped()`.
pub fn call<U: Send + 'static>(
    timeout: Duration,
    if_dropped: fn() -> CommandError,
) -> (Filler<U>, Answer<U>) {
    let cell = Arc::new(Cell {
        state: Mutex::new(State::Waiting(None)),
    });
    let deadlines = deadlines();
    // The sweep under way may be about to end: one more makes sure `timeout` has passed.
    let sweeps = timeout.as_nanos().div_ceil(SWEEP_EVERY.as_nanos()) as u64 + 1;
    let deadline = deadlines.sweeps.load(Ordering::Relaxed) + sweeps;
    let (slot, id) = lock(&deadlines.table).insert(deadline, cell.clone());
    let filler = Filler {
        cell: Some(cell.clone()),
        if_dropped,
    };
    (filler, Answer { cell, slot, id })
}

/// The answering side of a call.
pub struct Filler<U> {
    cell: Option<Arc<Cell<Result<U, CommandError>>>>,
    if_dropped: fn() -> CommandError,
}

impl<U> Filler<U> {
    pub fn fill(mut self, answer: Result<U, CommandError>) {
        if let Some(cell) = self.cell.take() {
            cell.fill(answer);
        }
    }
}

impl<U> Drop for Filler<U> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.fill(Err((self.if_dropped)()));
        }
    }
}

/// The waiting side of a call: resolves to the answer, or to "timed out" past the deadline.
/// Dropping it (the caller gave up) ends the call.
pub struct Answer<U> {
    cell: Arc<Cell<Result<U, CommandError>>>,
    slot: usize,
    id: u64,
}

impl<U> Future for Answer<U> {
    type Output = Result<U, CommandError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = lock(&self.cell.state);
        match std::mem::replace(&mut *state, State::Taken) {
            State::Answered(answer) => Poll::Ready(answer),
            State::Waiting(waker) => {
                let waker = match waker {
                    Some(waker) if waker.will_wake(cx.waker()) => waker,
                    _ => cx.waker().clone(),
                };
                *state = State::Waiting(Some(waker));
                Poll::Pending
            }
            State::Taken => panic!("a call's answer polled after it was taken"),
        }
    }
}

impl<U> Drop for Answer<U> {
    fn drop(&mut self) {
        lock(table()).remove(self.slot, self.id);
    }
}

/// A poisoned lock here only means a panic elsewhere while holding it; the table and the cells
/// are consistent at every step, so carry on.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped() -> CommandError {
        CommandError::Unavailable("stopped".into())
    }

    /// Calls in flight in the whole process (other tests' calls included).
    fn in_flight() -> usize {
        lock(table()).in_flight()
    }

    #[tokio::test]
    async fn an_answered_call_resolves_to_its_answer() {
        let (filler, answer) = call::<u32>(Duration::from_secs(5), stopped);
        let waiting = tokio::spawn(answer);
        tokio::task::yield_now().await;
        filler.fill(Ok(7));
        assert_eq!(waiting.await.unwrap(), Ok(7));
    }

    #[tokio::test]
    async fn an_unanswered_call_times_out_after_its_deadline_and_a_late_answer_is_ignored() {
        let started = std::time::Instant::now();
        let (filler, answer) = call::<u32>(Duration::from_millis(50), stopped);
        assert_eq!(answer.await, Err(CommandError::Timeout));
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(50),
            "timed out early: {waited:?}"
        );
        assert!(
            waited < Duration::from_millis(50) + SWEEP_EVERY * 2 + Duration::from_secs(1),
            "timed out late: {waited:?}"
        );
        filler.fill(Ok(1));
    }

    #[tokio::test]
    async fn a_reply_dropped_unanswered_answers_what_the_call_said() {
        let (filler, answer) = call::<u32>(Duration::from_secs(5), stopped);
        drop(filler);
        assert_eq!(answer.await, Err(stopped()));
    }

    #[test]
    fn a_slot_taken_by_the_deadline_thread_and_reused_is_not_removed_by_its_first_call() {
        let mut table = Table::default();
        let cell: Arc<dyn Expire> = Arc::new(Cell::<Result<(), CommandError>> {
            state: Mutex::new(State::Waiting(None)),
        });
        let (slot, first) = table.insert(0, cell.clone());
        table.slots[slot] = None;
        table.free.push(slot);
        let (reused, second) = table.insert(0, cell);
        assert_eq!(reused, slot);
        table.remove(slot, first);
        assert!(table.slots[slot].as_ref().is_some_and(|e| e.id == second));
        table.remove(slot, second);
        assert_eq!(table.in_flight(), 0);
    }

    #[tokio::test]
    async fn calls_that_end_leave_no_slot_behind() {
        for _ in 0..1_000 {
            let (filler, answer) = call::<u32>(Duration::from_secs(5), stopped);
            filler.fill(Ok(1));
            assert_eq!(answer.await, Ok(1));
            let (_filler, answer) = call::<u32>(Duration::from_secs(5), stopped);
            drop(answer);
        }
        // Other tests run calls of their own concurrently; ours all ended, so the table holds
        // at most theirs, not a thousand of ours.
        assert!(
            in_flight() < 1_000,
            "{} calls still registered",
            in_flight()
        );
    }
}
