//! Where a queue keeps its ready messages. The queue talks to this trait only, so a durable
//! store (sled) can stand in for the in-memory one without touching dispatch.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::message::Message;

/// A message in a queue: its position (`seq`, increasing per queue) and delivery history.
#[derive(Clone)]
pub struct QueuedMessage {
    pub seq: u64,
    pub message: Arc<Message>,
    /// True once the message has been delivered and given back.
    pub redelivered: bool,
}

pub trait MessageStore: Send {
    /// Appends a new message (its `seq` is higher than any stored).
    fn push(&mut self, m: QueuedMessage);
    /// Takes the next message to deliver.
    fn pop(&mut self) -> Option<QueuedMessage>;
    /// Gives a delivered message back, in its original place (by `seq`).
    fn requeue(&mut self, m: QueuedMessage);
    /// A delivered message was settled for good (acked, or rejected without requeue).
    fn settle(&mut self, _seq: u64) {}
    /// Drops every ready message; returns how many there were.
    fn purge(&mut self) -> usize;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Body bytes of the ready messages.
    fn bytes(&self) -> usize;
}

/// Ready messages in memory, ordered by `seq`.
#[derive(Default)]
pub struct MemoryStore {
    ready: VecDeque<QueuedMessage>,
    bytes: usize,
}

impl MessageStore for MemoryStore {
    fn push(&mut self, m: QueuedMessage) {
        self.bytes += m.message.size();
        self.ready.push_back(m);
    }

    fn pop(&mut self) -> Option<QueuedMessage> {
        let m = self.ready.pop_front()?;
        self.bytes -= m.message.size();
        Some(m)
    }

    fn requeue(&mut self, m: QueuedMessage) {
        self.bytes += m.message.size();
        // Usually it goes back at (or near) the front.
        let at = self.ready.partition_point(|x| x.seq < m.seq);
        self.ready.insert(at, m);
    }

    fn purge(&mut self) -> usize {
        let n = self.ready.len();
        self.ready.clear();
        self.bytes = 0;
        n
    }

    fn len(&self) -> usize {
        self.ready.len()
    }

    fn bytes(&self) -> usize {
        self.bytes
    }
}
