//! The bounded queues between the log's threads (appenders → writer → syncer): a
//! mutex-guarded `VecDeque` whose waits sleep on a condvar at once.
//!
//! Why not crossbeam's channel: its blocking `recv` spins and then calls `sched_yield` four
//! times before it parks. The log's threads wait on every cycle, and on two busy cores each of
//! those yields hands the core to another thread: perf counted `sched_yield` at about 5 % of the
//! server's CPU over HTTP, and the syncer and (then) acks threads at six to seven context switches per
//! sync where one would do. Here a waiter sleeps at once and a sender only calls into the
//! kernel when someone is asleep.
//!
//! The API is the subset of crossbeam's the writer used, with crossbeam's error types, so the
//! semantics did not change: many senders, one receiver; a send fails once the receiver is
//! gone; `recv` fails once every sender is gone and the queue is empty. Items still queued when
//! the receiver drops are dropped then (their guards answer them), not when the last sender
//! goes.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub(crate) use crossbeam_channel::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver_alive: bool,
    receiver_waiting: bool,
    senders_waiting: usize,
}

struct Inner<T> {
    state: Mutex<State<T>>,
    not_empty: Condvar,
    not_full: Condvar,
    bound: usize,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // No code panics while holding the lock, and the state is consistent between any two
        // statements anyway: a poisoned lock is still good.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A bounded queue of at most `bound` items (at least 1).
pub(crate) fn bounded<T>(bound: usize) -> (Sender<T>, Receiver<T>) {
    assert!(bound > 0, "a handoff holds at least one item");
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(bound.min(1024)),
            senders: 1,
            receiver_alive: true,
            receiver_waiting: false,
            senders_waiting: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
        bound,
    });
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

pub(crate) struct Sender<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Sender<T> {
    /// Waits as long as it takes for room.
    pub(crate) fn send(&self, item: T) -> Result<(), SendError<T>> {
        self.send_until(item, None)
            .map_err(|e| SendError(e.into_inner()))
    }

    pub(crate) fn send_timeout(&self, item: T, wait: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_until(item, Instant::now().checked_add(wait))
    }

    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let state = self.inner.lock();
        if !state.receiver_alive {
            return Err(TrySendError::Disconnected(item));
        }
        if state.items.len() >= self.inner.bound {
            return Err(TrySendError::Full(item));
        }
        self.push(state, item);
        Ok(())
    }

    /// `deadline` None: no deadline.
    fn send_until(&self, item: T, deadline: Option<Instant>) -> Result<(), SendTimeoutError<T>> {
        let mut state = self.inner.lock();
        loop {
            if !state.receiver_alive {
                return Err(SendTimeoutError::Disconnected(item));
            }
            if state.items.len() < self.inner.bound {
                self.push(state, item);
                return Ok(());
            }
            state.senders_waiting += 1;
            let waited = wait_until(&self.inner.not_full, state, deadline);
            let timed_out = waited.is_err();
            state = waited.unwrap_or_else(|state| state);
            state.senders_waiting -= 1;
            if timed_out {
                return Err(SendTimeoutError::Timeout(item));
            }
        }
    }

    fn push(&self, mut state: MutexGuard<'_, State<T>>, item: T) {
        debug_assert!(state.items.len() < self.inner.bound);
        state.items.push_back(item);
        let wake = state.receiver_waiting;
        // Notified after unlocking, so the receiver does not wake into a held lock; it cannot
        // miss the notification, since it registered as waiting under the lock.
        drop(state);
        if wake {
            self.inner.not_empty.notify_one();
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inner.lock().senders += 1;
        Sender {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.senders -= 1;
        let wake = state.senders == 0 && state.receiver_waiting;
        drop(state);
        if wake {
            self.inner.not_empty.notify_one();
        }
    }
}

/// The one receiving end (not `Clone`).
pub(crate) struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Receiver<T> {
    /// The next item; `Err` once the queue is empty and every sender is gone.
    pub(crate) fn recv(&self) -> Result<T, RecvError> {
        self.recv_until(None).map_err(|_| RecvError)
    }

    pub(crate) fn recv_deadline(&self, deadline: Instant) -> Result<T, RecvTimeoutError> {
        self.recv_until(Some(deadline))
    }

    pub(crate) fn try_recv(&self) -> Result<T, TryRecvError> {
        let mut state = self.inner.lock();
        match state.items.pop_front() {
            Some(item) => {
                self.popped(state);
                Ok(item)
            }
            None if state.senders == 0 => Err(TryRecvError::Disconnected),
            None => Err(TryRecvError::Empty),
        }
    }

    /// What is queued now, without waiting.
    pub(crate) fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv().ok())
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut state = self.inner.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.popped(state);
                return Ok(item);
            }
            if state.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            state.receiver_waiting = true;
            let waited = wait_until(&self.inner.not_empty, state, deadline);
            let timed_out = waited.is_err();
            state = waited.unwrap_or_else(|state| state);
            state.receiver_waiting = false;
            if timed_out {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }

    fn popped(&self, state: MutexGuard<'_, State<T>>) {
        let wake = state.senders_waiting > 0;
        drop(state);
        if wake {
            self.inner.not_full.notify_one();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.receiver_alive = false;
        let queued = std::mem::take(&mut state.items);
        drop(state);
        self.inner.not_full.notify_all();
        // Outside the lock: dropping an item may run its guard's callback.
        drop(queued);
    }
}

type Guard<'a, T> = MutexGuard<'a, State<T>>;

/// Waits on `condvar` until notified (or woken spuriously) or until `deadline` (None: no
/// deadline); `Err` at once, without waiting, if the deadline has passed. Callers re-check
/// their condition either way.
fn wait_until<'a, T>(
    condvar: &Condvar,
    state: Guard<'a, T>,
    deadline: Option<Instant>,
) -> Result<Guard<'a, T>, Guard<'a, T>> {
    let Some(deadline) = deadline else {
        return Ok(condvar.wait(state).unwrap_or_else(PoisonError::into_inner));
    };
    match deadline.checked_duration_since(Instant::now()) {
        Some(left) if !left.is_zero() => Ok(condvar
            .wait_timeout(state, left)
            .unwrap_or_else(PoisonError::into_inner)
            .0),
        _ => Err(state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn items_arrive_in_order_across_threads() {
        let (tx, rx) = bounded(4);
        let producer = std::thread::spawn(move || {
            for i in 0..10_000u32 {
                tx.send(i).expect("receiver alive");
            }
        });
        let got: Vec<u32> = std::iter::from_fn(|| rx.recv().ok()).collect();
        producer.join().expect("producer");
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_refuses_try_send_and_times_out_send() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).expect("room");
        tx.try_send(2).expect("room");
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert!(matches!(
            tx.send_timeout(3, Duration::from_millis(5)),
            Err(SendTimeoutError::Timeout(3))
        ));
        assert_eq!(rx.try_recv(), Ok(1));
        tx.send_timeout(3, Duration::from_millis(5))
            .expect("room again");
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn a_blocked_sender_is_woken_by_a_receive() {
        let (tx, rx) = bounded(1);
        tx.send(0).expect("room");
        let sender = std::thread::spawn(move || tx.send(1).is_ok());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(rx.recv(), Ok(0));
        assert!(sender.join().expect("sender"));
        assert_eq!(rx.recv(), Ok(1));
        assert_eq!(rx.recv(), Err(RecvError));
    }

    #[test]
    fn recv_ends_when_the_last_sender_goes_after_the_queue_drains() {
        let (tx, rx) = bounded(8);
        let second = tx.clone();
        tx.send(1).expect("room");
        drop(tx);
        second.send(2).expect("room");
        let waiter = std::thread::spawn(move || std::iter::from_fn(|| rx.recv().ok()).count());
        std::thread::sleep(Duration::from_millis(20));
        drop(second);
        assert_eq!(waiter.join().expect("waiter"), 2);
    }

    #[test]
    fn recv_deadline_times_out_on_an_empty_queue() {
        let (_tx, rx) = bounded::<u8>(1);
        let started = Instant::now();
        assert_eq!(
            rx.recv_deadline(started + Duration::from_millis(10)),
            Err(RecvTimeoutError::Timeout)
        );
        assert!(started.elapsed() >= Duration::from_millis(10));
    }

    #[derive(Debug)]
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn dropping_the_receiver_drops_what_is_queued_and_fails_blocked_senders() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = bounded(2);
        tx.send(Counted(dropped.clone())).expect("room");
        tx.send(Counted(dropped.clone())).expect("room");
        let blocked = {
            let tx = tx.clone();
            let dropped = dropped.clone();
            std::thread::spawn(move || tx.send(Counted(dropped)).is_err())
        };
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert!(blocked.join().expect("sender"), "the blocked send fails");
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
        assert!(matches!(
            tx.try_send(Counted(dropped.clone())),
            Err(TrySendError::Disconnected(_))
        ));
    }
}
