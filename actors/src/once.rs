//! One-shot callbacks: [`split`] lets a callback be handed to someone who may refuse it (the
//! log, a full mailbox) and still be called here in that case; [`join`] runs a callback once
//! several parts have finished.

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
        let finished = {
            let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(error) = result {
                state.error.get_or_insert(error);
            }
            state.left = state.left.saturating_sub(1);
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
