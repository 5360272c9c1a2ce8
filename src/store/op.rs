//! The writer's ops: one unit of work each, sent over the store's channel in the order the
//! changes they record took effect, and what each weighs in the writer's backlog.

use std::sync::mpsc;
use std::sync::Arc;

use super::SyncDone;
use crate::message::Message;

/// One unit of work for the writer.
pub(crate) enum Op {
    /// A persistent message, appended to its durable queue's log.
    PutMessage {
        qid: u64,
        seq: u64,
        message: Arc<Message>,
        /// ms since the epoch, 0 = never.
        expires_at: u64,
    },
    /// A logged message was settled; `bytes`: its body size.
    DeleteMessage {
        qid: u64,
        seq: u64,
        bytes: u64,
    },
    /// Messages `from..to` of a queue's log (a purged tail).
    DeleteMessages {
        qid: u64,
        from: u64,
        to: u64,
    },
    /// A durable queue is gone: its log goes (its records by prefix).
    DropLog(u64),
    /// Highest delivered seq of a durable queue (recovery marks those redelivered).
    Delivered {
        qid: u64,
        seq: u64,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete(Vec<u8>),
    /// Every key under a prefix (a queue's messages, the bindings to a queue or exchange).
    /// Only for incarnations that are gone (ids are never reused): nothing sent later falls
    /// under the prefix, so the writer may finish it over several commits.
    DeletePrefix(Vec<u8>),
    /// Calls `done` once everything sent before this is durable (`true`) or could not be
    /// made so (`false`). `epoch`: the store's failure epoch when the caller began the batch
    /// this covers (see `writer`). The caller owns what `done` does: the store knows nothing
    /// of connections.
    Notify {
        epoch: u64,
        done: SyncDone,
    },
    /// Answer once everything sent before this is durable (shutdown, tests).
    Barrier(mpsc::Sender<bool>),
    /// Commit what came before, then end the writer.
    Stop,
}

impl Op {
    /// Its weight in the bytes backlog: a message's RAM; deletes of messages and the rest
    /// nothing (they must never pause an acking consumer).
    pub(crate) fn cost(&self) -> usize {
        match self {
            Op::PutMessage { message, .. } => message.ram_cost(),
            _ => 0,
        }
    }

    /// A definition (declare, bind, delete): counted in the definitions backlog, so a client
    /// pipelining a million binds pauses like a publisher does, or every other client's
    /// confirm waits behind its queued writes (measured: seconds while 1M bindings were made).
    pub(crate) fn is_definition(&self) -> bool {
        matches!(self, Op::Put { .. } | Op::Delete(_) | Op::DeletePrefix(_))
    }
}
