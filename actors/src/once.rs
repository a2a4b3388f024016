//! One-shot callbacks: [`split`] lets a callback be handed to someone who may refuse it (the
//! log, a full mailbox) and still be called here in that case; [`join`] runs a callback once
//! several parts have finished (or one that will never report has failed them all).

use std::sync::{Arc, Mutex};

pub fn split<T: Send + 'static>(
    f: impl FnOnce(T) + Send + 'static,
) -> (
    impl FnOnce(T) + Send + 'static,
    impl FnOnce(T) + Send + 'static,
) {
    let cell = Arc::new(Mutex::new(Some(f)));
    let other = cell.clone();
    (
        move |value: T| {
            let f = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f {
                f(value)
            }
        },
        move |value: T| {
            let f = other.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(f) = f {
                f(value)
            }
        },
    )
}

/// Waits for `parts` results and then runs `done` once, with the first error if any.
pub fn join<E: Send + 'static>(
    parts: usize,
    done: impl FnOnce(Result<(), E>) + Send + 'static,
) -> Join<E> {
    Join {
        inner: Arc::new(Mutex::new(JoinState {
            left: parts,
            error: None,
            done: Some(Box::new(done)),
        })),
    }
}

type Done<E> = Box<dyn FnOnce(Result<(), E>) + Send>;

struct JoinState<E> {
    left: usize,
    error: Option<E>,
    done: Option<Done<E>>,
}

pub struct Join<E> {
    inner: Arc<Mutex<JoinState<E>>>,
}

impl<E> Clone for Join<E> {
    fn clone(&self) -> Self {
        Join {
            inner: self.inner.clone(),
        }
    }
}

impl<E: Send + 'static> Join<E> {
    /// One part finished; the last one runs `done`.
    pub fn done(&self, result: Result<(), E>) {
        self.finish(result, false);
    }

    /// Ends the wait with `error` (unless an earlier part failed first) without waiting for
    /// the parts still to come: one of them will never report (the log refused an append).
    pub fn fail(&self, error: E) {
        self.finish(Err(error), true);
    }

    fn finish(&self, result: Result<(), E>, all: bool) {
        let finished = {
            let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = result {
                state.error.get_or_insert(error);
            }
            state.left = if all { 0 } else { state.left.saturating_sub(1) };
            if state.left == 0 {
                state.done.take().map(|done| (done, state.error.take()))
            } else {
                None
            }
        };
        if let Some((done, error)) = finished {
            done(error.map_or(Ok(()), Err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Seen = Arc<Mutex<Vec<Result<(), &'static str>>>>;

    fn recorder() -> (Seen, impl FnOnce(Result<(), &'static str>) + Send + 'static) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        (seen, move |r| into.lock().unwrap().push(r))
    }

    #[test]
    fn a_join_runs_once_the_last_part_is_done_with_the_first_error() {
        let (seen, done) = recorder();
        let join = join(3, done);
        join.done(Ok(()));
        join.done(Err("first"));
        assert!(seen.lock().unwrap().is_empty());
        join.done(Err("second"));
        assert_eq!(*seen.lock().unwrap(), vec![Err("first")]);
    }

    #[test]
    fn a_failed_join_runs_at_once_and_ignores_the_parts_that_come_after() {
        let (seen, done) = recorder();
        let join = join(2, done);
        join.fail("refused");
        assert_eq!(*seen.lock().unwrap(), vec![Err("refused")]);
        join.done(Ok(()));
        assert_eq!(seen.lock().unwrap().len(), 1);
    }
}
