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
        let handle = self.get(id).ok_or_else(|| {
            CommandError::Unavailable(format!("actor of stock point {id:?} is down"))
        })?;
        let ticket = handle.gate.ticket()?;
        handle
            .actor
            .send_message(message(ticket))
            .map_err(|_| CommandError::Unavailable(format!("actor of stock point {id:?} stopped")))
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
