//! The checkout intake: concurrent `reserve` calls queue here, and one message tells the
//! orchestrator to collect everything queued, so that a burst of checkouts costs the
//! orchestrator one message, each stock point one batch and the log one append per stock point,
//! instead of one of each per reservation. At low load a batch is a single reservation, so
//! nothing waits for a batch to fill.
//!
//! The doorbell: only the push that finds the queue empty sends the message; the pushes after
//! it ride on that message until the orchestrator takes the queue, and the first push after
//! that rings again. Pushing and taking share one lock, so no push is left without a message
//! on its way.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use conductor_engine::checkout::ReserveRequest;
use conductor_engine::reservation::Reservation;

use crate::error::{Answer, CommandError};
use crate::stock_point::Reply;

/// Reservations that may wait in the intake; at the limit `reserve` answers "busy" at once.
pub const INTAKE_DEPTH_MAX: usize = crate::mailbox::MAILBOX_DEPTH_MAX;

/// The most reservations the orchestrator takes per message, so that one collection never
/// builds a stock point batch above [`crate::stock_point::HOLD_BATCH_MAX`].
pub const COLLECT_MAX: usize = crate::stock_point::HOLD_BATCH_MAX;

pub type Queued = (ReserveRequest, Reply<Answer<Arc<Reservation>>>);

#[derive(Default)]
pub struct Intake {
    /// A ring buffer that keeps its capacity: a queue handed out whole and grown again from
    /// nothing cost a reallocation per doubling on every collection, and a long one was split
    /// with a fresh allocation and a copy of the rest on every take.
    queue: Mutex<VecDeque<Queued>>,
}

/// Whether a push must send the orchestrator a message.
#[derive(Debug, PartialEq, Eq)]
pub enum Ring {
    Ring,
    AlreadyRung,
}

impl Intake {
    /// Queues a reservation; says whether the caller must ring the orchestrator.
    pub fn push(&self, item: Queued) -> Result<Ring, CommandError> {
        self.admit(1, |queue| queue.push_back(item))
    }

    /// Queues reservations together, all or none; says whether the caller must ring.
    pub fn push_all(&self, items: Vec<Queued>) -> Result<Ring, CommandError> {
        self.admit(items.len(), |queue| queue.extend(items))
    }

    fn admit(
        &self,
        count: usize,
        add: impl FnOnce(&mut VecDeque<Queued>),
    ) -> Result<Ring, CommandError> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() + count > INTAKE_DEPTH_MAX {
            return Err(CommandError::Busy("checkout intake full"));
        }
        let was_empty = queue.is_empty();
        add(&mut queue);
        Ok(if was_empty && !queue.is_empty() {
            Ring::Ring
        } else {
            Ring::AlreadyRung
        })
    }

    /// Moves up to [`COLLECT_MAX`] reservations, oldest first, into `out` (the taker's buffer,
    /// which keeps its capacity from one collection to the next) and says whether more remain
    /// (then the taker must ring itself again: later pushes see a non-empty queue and do not).
    pub fn take_into(&self, out: &mut Vec<Queued>) -> Ring {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = queue.len().min(COLLECT_MAX);
        out.extend(queue.drain(..n));
        if queue.is_empty() {
            // After a burst up to the limit, keep room for one collection, not for the burst.
            queue.shrink_to(COLLECT_MAX);
            Ring::AlreadyRung
        } else {
            Ring::Ring
        }
    }

    /// Answers everything queued with `why` and empties the intake: what a failed orchestrator
    /// left behind, which nobody will take.
    pub fn refuse_all(&self, why: &CommandError) -> usize {
        let queued = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()));
        let refused = queued.len();
        for (_, answer) in queued {
            answer(Err(why.clone()));
        }
        refused
    }

    pub fn depth(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(n: u64) -> Queued {
        (ReserveRequest::web(Vec::new(), n), Box::new(|_| {}))
    }

    fn take(intake: &Intake) -> (Vec<Queued>, Ring) {
        let mut taken = Vec::new();
        let more = intake.take_into(&mut taken);
        (taken, more)
    }

    #[test]
    fn only_the_push_into_an_empty_intake_rings() {
        let intake = Intake::default();
        assert_eq!(intake.push(queued(1)).ok(), Some(Ring::Ring));
        assert_eq!(intake.push(queued(2)).ok(), Some(Ring::AlreadyRung));
        let (taken, more) = take(&intake);
        assert_eq!(taken.len(), 2);
        assert_eq!(more, Ring::AlreadyRung);
        assert_eq!(intake.push(queued(3)).ok(), Some(Ring::Ring));
    }

    #[test]
    fn a_long_queue_is_taken_in_bounded_batches_oldest_first() {
        let intake = Intake::default();
        for n in 0..(COLLECT_MAX as u64 + 10) {
            assert!(intake.push(queued(n)).is_ok());
        }
        let (first, more) = take(&intake);
        assert_eq!(first.len(), COLLECT_MAX);
        assert_eq!(first[0].0.ttl_seconds, 0);
        assert_eq!(more, Ring::Ring);
        let (second, more) = take(&intake);
        assert_eq!(second.len(), 10);
        assert_eq!(second[0].0.ttl_seconds, COLLECT_MAX as u64);
        assert_eq!(more, Ring::AlreadyRung);
    }

    #[test]
    fn a_batch_enters_whole_or_not_at_all() {
        let intake = Intake::default();
        assert!(intake.push(queued(0)).is_ok());
        let too_many = (1..INTAKE_DEPTH_MAX as u64 + 1).map(queued).collect();
        assert!(matches!(
            intake.push_all(too_many),
            Err(CommandError::Busy(_))
        ));
        assert_eq!(intake.depth(), 1);
        let (taken, _) = take(&intake);
        assert_eq!(taken.len(), 1);
        assert_eq!(
            intake.push_all((0..3).map(queued).collect()).ok(),
            Some(Ring::Ring)
        );
        assert_eq!(intake.depth(), 3);
    }

    #[test]
    fn a_full_intake_answers_busy() {
        let intake = Intake::default();
        for n in 0..INTAKE_DEPTH_MAX as u64 {
            assert!(intake.push(queued(n)).is_ok());
        }
        assert!(matches!(intake.push(queued(0)), Err(CommandError::Busy(_))));
        assert_eq!(intake.depth(), INTAKE_DEPTH_MAX);
    }
}
