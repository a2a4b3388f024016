//! Bounded admission to an actor's mailbox. ractor's mailboxes are unbounded, so every sender
//! outside the actor takes a [`Ticket`] first; at the limit the sender is told "busy" at once
//! instead of queueing without bound. The ticket is given back when the message is handled
//! (or dropped), so the count is also the mailbox depth that metrics report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::CommandError;

/// Messages that may wait in one actor's mailbox.
pub const MAILBOX_DEPTH_MAX: usize = 65_536;

#[derive(Clone, Default)]
pub struct Gate {
    depth: Arc<AtomicUsize>,
}

impl Gate {
    pub fn ticket(&self) -> Result<Ticket, CommandError> {
        let before = self.depth.fetch_add(1, Ordering::AcqRel);
        if before >= MAILBOX_DEPTH_MAX {
            self.depth.fetch_sub(1, Ordering::AcqRel);
            return Err(CommandError::Busy("mailbox full"));
        }
        Ok(Ticket {
            depth: self.depth.clone(),
        })
    }

    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }
}

/// A place in a mailbox; dropping it frees the place.
pub struct Ticket {
    depth: Arc<AtomicUsize>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.depth.fetch_sub(1, Ordering::AcqRel);
    }
}
