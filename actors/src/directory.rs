//! Where to find the actor of each stock point (its inventory actor, or its warehouse actor).
//! The supervisor writes it when it starts or restarts one; everyone else reads it to send.

use std::sync::RwLock;

use conductor_engine::ids::StockPointId;
use ractor::ActorRef;

use crate::error::CommandError;
use crate::mailbox::{Gate, Ticket};

pub struct Handle<M> {
    pub actor: ActorRef<M>,
    pub gate: Gate,
}

impl<M> Clone for Handle<M> {
    fn clone(&self) -> Self {
        Handle {
            actor: self.actor.clone(),
            gate: self.gate.clone(),
        }
    }
}

pub struct Directory<M> {
    /// Index = stock point id; `None` while an actor is down (restarting or given up on).
    points: RwLock<Vec<Option<Handle<M>>>>,
}

impl<M> Default for Directory<M> {
    fn default() -> Self {
        Directory {
            points: RwLock::new(Vec::new()),
        }
    }
}

impl<M: ractor::Message> Directory<M> {
    pub fn set(&self, id: StockPointId, handle: Option<Handle<M>>) {
        let mut points = self.points.write().unwrap_or_else(|e| e.into_inner());
        if points.len() <= id.index() {
            points.resize(id.index() + 1, None);
        }
        points[id.index()] = handle;
    }

    pub fn get(&self, id: StockPointId) -> Option<Handle<M>> {
        self.points
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id.index())
            .cloned()
            .flatten()
    }

    /// The stock point whose actor is `actor`, if it is still registered.
    pub fn find(&self, actor: ractor::ActorId) -> Option<StockPointId> {
        self.all()
            .into_iter()
            .find(|(_, h)| h.actor.get_id() == actor)
            .map(|(id, _)| id)
    }

    pub fn all(&self) -> Vec<(StockPointId, Handle<M>)> {
        self.points
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.clone().map(|h| (StockPointId(i as u32), h)))
            .collect()
    }

    /// Sends a message built around an admission ticket; busy or down is an error at once.
    pub fn send(
        &self,
        id: StockPointId,
        message: impl FnOnce(Ticket) -> M,
    ) -> Result<(), CommandError> {
        self.send_with(id, (), |(), ticket| message(ticket))
            .map_err(|(error, _)| error)
    }

    /// As [`Self::send`], building the message from `payload` once a ticket is in hand. When
    /// the message is refused before it is built (the actor down, its mailbox full), the payload
    /// comes back with the reason, so that its replies can be answered with that reason; a
    /// message built and then not delivered is dropped, payload and all.
    pub fn send_with<P>(
        &self,
        id: StockPointId,
        payload: P,
        build: impl FnOnce(P, Ticket) -> M,
    ) -> Result<(), (CommandError, Option<P>)> {
        let Some(handle) = self.get(id) else {
            let error = CommandError::Unavailable(format!("actor of stock point {id:?} is down"));
            return Err((error, Some(payload)));
        };
        let ticket = match handle.gate.ticket() {
            Ok(ticket) => ticket,
            Err(error) => return Err((error, Some(payload))),
        };
        handle
            .actor
            .send_message(build(payload, ticket))
            .map_err(|_| {
                let error =
                    CommandError::Unavailable(format!("actor of stock point {id:?} stopped"));
                (error, None)
            })
    }

    /// The deepest mailbox, for metrics.
    pub fn deepest_mailbox(&self) -> usize {
        self.all()
            .iter()
            .map(|(_, h)| h.gate.depth())
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;
    use crate::mailbox::MAILBOX_DEPTH_MAX;

    struct Sink;

    impl Actor for Sink {
        type Msg = u32;
        type State = ();
        type Arguments = ();

        async fn pre_start(&self, _: ActorRef<u32>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    fn first(payload: Vec<u32>, _: Ticket) -> u32 {
        payload[0]
    }

    #[tokio::test]
    async fn a_message_refused_before_it_is_built_gives_its_payload_back_with_the_reason() {
        let directory = Directory::<u32>::default();
        let sp = StockPointId(0);
        let down = directory.send_with(sp, vec![1], first);
        assert!(matches!(down, Err((CommandError::Unavailable(_), Some(p))) if p == vec![1]));

        let (actor, running) = Actor::spawn(None, Sink, ()).await.expect("spawned");
        let gate = Gate::default();
        directory.set(
            sp,
            Some(Handle {
                actor: actor.clone(),
                gate: gate.clone(),
            }),
        );
        let full: Vec<Ticket> = (0..MAILBOX_DEPTH_MAX)
            .map(|_| gate.ticket().expect("room"))
            .collect();
        let busy = directory.send_with(sp, vec![2], first);
        assert!(matches!(busy, Err((CommandError::Busy(_), Some(p))) if p == vec![2]));
        drop(full);
        assert!(directory.send_with(sp, vec![3], first).is_ok());

        actor.stop(None);
        running.await.expect("stopped");
        let stopped = directory.send_with(sp, vec![4], first);
        assert!(matches!(stopped, Err((CommandError::Unavailable(_), None))));
    }
}
