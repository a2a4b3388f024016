//! Lets a one-shot callback be handed to someone who may refuse it (the log, a full mailbox)
//! and still be called here in that case: exactly one of the two halves runs it.

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
