//! Waiting for answers, always with a timeout: a missing answer is "outcome unknown", which an
//! idempotent retry resolves.

use std::time::Duration;

use conductor_engine::state::Event;
use conductor_persistence::Seq;
use tokio::sync::oneshot;

use crate::error::{Answer, CommandError};
use crate::stock_point::{reply, stopped_before_answering, Reply};
use crate::Log;

/// How long any caller waits for an actor's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Sends with `send`, handing it a reply; waits for the reply, or times out after
/// [`CALL_TIMEOUT`] and up to two of the deadline thread's sweeps more (no timer of its own: see
/// [`crate::deadlines`]). A reply dropped unanswered means the actor stopped before answering.
pub async fn ask<T: Send + 'static>(
    send: impl FnOnce(Reply<Answer<T>>) -> Result<(), CommandError>,
) -> Answer<T> {
    let (filler, answer) = crate::deadlines::call(CALL_TIMEOUT, stopped_before_answering);
    send(reply(move |a| filler.fill(a)))?;
    answer.await
}

/// Asks an actor a question (ractor's `call`) with [`CALL_TIMEOUT`]; `stopped` says who, for
/// the error when it has stopped.
pub async fn query<M: ractor::Message, T: Send + 'static>(
    actor: &ractor::ActorRef<M>,
    message: impl FnOnce(ractor::RpcReplyPort<T>) -> M,
    stopped: impl Into<String>,
) -> Result<T, CommandError> {
    match actor.call(message, Some(CALL_TIMEOUT)).await {
        Ok(ractor::rpc::CallResult::Success(value)) => Ok(value),
        Ok(ractor::rpc::CallResult::Timeout) => Err(CommandError::Timeout),
        _ => Err(CommandError::Unavailable(stopped.into())),
    }
}

/// One completion for many answers (the batch interface): each item's reply fills its slot,
/// and the waiter wakes once, when the last one is in, instead of once per item with a timer
/// each. A reply dropped unanswered (its message lost with a failed actor) fills its slot
/// with "the actor stopped before answering", as a dropped oneshot would.
pub struct Answers<T> {
    slots: std::sync::Mutex<Vec<Option<Answer<T>>>>,
    remaining: std::sync::atomic::AtomicUsize,
    all_in: tokio::sync::Notify,
}

impl<T: Send + 'static> Answers<T> {
    /// `n` slots, and a reply for each, in order.
    pub fn new(n: usize) -> (std::sync::Arc<Answers<T>>, Vec<Reply<Answer<T>>>) {
        let answers = std::sync::Arc::new(Answers {
            slots: std::sync::Mutex::new((0..n).map(|_| None).collect()),
            remaining: std::sync::atomic::AtomicUsize::new(n),
            all_in: tokio::sync::Notify::new(),
        });
        let replies = (0..n)
            .map(|index| {
                let slot = Slot {
                    answers: answers.clone(),
                    index,
                    filled: false,
                };
                reply(move |answer| slot.fill(answer))
            })
            .collect();
        (answers, replies)
    }

    /// Waits at most [`CALL_TIMEOUT`] for every answer; a slot still empty then is a timeout.
    pub async fn wait(&self) -> Vec<Answer<T>> {
        if self.remaining.load(std::sync::atomic::Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout(CALL_TIMEOUT, self.all_in.notified()).await;
        }
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .iter_mut()
            .map(|slot| slot.take().unwrap_or(Err(CommandError::Timeout)))
            .collect()
    }
}

struct Slot<T> {
    answers: std::sync::Arc<Answers<T>>,
    index: usize,
    filled: bool,
}

impl<T> Slot<T> {
    fn fill(mut self, answer: Answer<T>) {
        self.put(answer);
    }

    fn put(&mut self, answer: Answer<T>) {
        self.filled = true;
        {
            let mut slots = self.answers.slots.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = slots.get_mut(self.index) {
                *slot = Some(answer);
            }
        }
        if self
            .answers
            .remaining
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            // Stores a permit if the waiter is not waiting yet.
            self.answers.all_in.notify_one();
        }
    }
}

impl<T> Drop for Slot<T> {
    fn drop(&mut self) {
        if !self.filled {
            self.put(Err(CommandError::Unavailable(
                "the actor stopped before answering".into(),
            )));
        }
    }
}

/// Runs `f` on `runtime`: right here on one of its threads, else as one task. For the
/// completions of many callers at once that the log's syncer thread would run: each of them
/// waking its caller from outside the runtime takes a lock on the runtime's queue and often a
/// wake-up of its worker; as one task, the callers wake from inside, in one go (hot SKU: 8 %
/// less CPU per hold; 100 holds per call: ×1.12 holds/s). If the runtime has shut down, `f`
/// is dropped unrun, and whatever answers it carried answer as dropped replies do. Work handed
/// over here may take effect after callbacks the log runs later (those of the next sync): the
/// answers of a batch of holds reach only their own callers and the orchestrator's queue of
/// settled reservations, and nothing waits on their order.
pub fn on_runtime(runtime: &tokio::runtime::Handle, f: impl FnOnce() + Send + 'static) {
    if tokio::runtime::Handle::try_current().is_ok() {
        f()
    } else {
        runtime.spawn(async move { f() });
    }
}

/// Polls `done` every millisecond until it holds (true) or `deadline` passes (false): for the
/// waits on counters that the log's acknowledgements bring down, which have no waker.
pub async fn poll_until(deadline: std::time::Instant, done: impl Fn() -> bool) -> bool {
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    true
}

/// Appends events to the log and waits until they are durable.
pub async fn log_durably(log: &Log, events: Vec<Event>) -> Result<(), CommandError> {
    log_durably_then(log, events, || {}).await
}

/// Appends events to the log, runs `on_durable` once they are durable (on the log's syncer
/// thread, before anyone is answered), and waits for that. A timeout leaves `on_durable` to run
/// later, when the events do become durable: that is what makes a durable copy updated there
/// exact, whatever the waiter saw. If the log refuses or fails the append, `on_durable` is
/// dropped without running.
pub async fn log_durably_then(
    log: &Log,
    events: Vec<Event>,
    on_durable: impl FnOnce() + Send + 'static,
) -> Result<(), CommandError> {
    let (tx, rx) = oneshot::channel();
    log.try_append(events, move |r| {
        if r.is_ok() {
            on_durable();
        }
        let _ = tx.send(r.map(|_| ()));
    })?;
    log_answer(rx).await
}

/// Waits until everything appended to the log so far is durable and acknowledged; returns the
/// seq of the last record written before.
pub async fn log_barrier(log: &Log) -> Result<Seq, CommandError> {
    // A full queue is likeliest just when an actor fails: wait for room (at most the call
    // timeout), as a blocking append would, without blocking the runtime.
    let deadline = std::time::Instant::now() + CALL_TIMEOUT;
    loop {
        let (tx, rx) = oneshot::channel();
        match log.try_barrier(move |result| {
            let _ = tx.send(result);
        }) {
            Ok(()) => return log_answer(rx).await,
            Err(conductor_persistence::WalError::Busy { .. })
                if std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The log's answer, waited for at most [`CALL_TIMEOUT`].
async fn log_answer<T>(
    rx: oneshot::Receiver<Result<T, conductor_persistence::WalError>>,
) -> Result<T, CommandError> {
    match tokio::time::timeout(CALL_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(CommandError::from),
        Ok(Err(_)) => Err(CommandError::LogFailed(
            "the log stopped before answering".into(),
        )),
        Err(_) => Err(CommandError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Refusal;

    #[tokio::test]
    async fn work_handed_over_from_outside_the_runtime_runs_on_it() {
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            assert!(tokio::runtime::Handle::try_current().is_err());
            on_runtime(&runtime, move || {
                let _ = tx.send(tokio::runtime::Handle::try_current().is_ok());
            });
        });
        assert_eq!(rx.await, Ok(true));
    }

    #[tokio::test]
    async fn a_batch_s_answers_come_back_in_order_and_a_dropped_reply_is_unavailable() {
        let (answers, replies) = Answers::<u32>::new(3);
        let mut replies = replies.into_iter();
        let (first, second, third) = (
            replies.next().unwrap(),
            replies.next().unwrap(),
            replies.next().unwrap(),
        );
        let waiting = tokio::spawn({
            let answers = answers.clone();
            async move { answers.wait().await }
        });
        third(Ok(Err(Refusal::NotFound("x".into()))));
        drop(second);
        first(Ok(Ok(7)));
        let got = waiting.await.unwrap();
        assert_eq!(got[0], Ok(Ok(7)));
        assert!(matches!(got[1], Err(CommandError::Unavailable(_))));
        assert_eq!(got[2], Ok(Err(Refusal::NotFound("x".into()))));
    }
}
