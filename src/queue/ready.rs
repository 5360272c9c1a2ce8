//! A queue's ready messages: a head in RAM and, past the queue's RAM budget, a tail on disk.
//!
//! Messages enter at the back and leave from the front, so a deep queue keeps its oldest
//! messages in RAM (about to be delivered) and everything after the first message that did
//! not fit on disk: a tail message costs no RAM. A persistent message of a durable queue is
//! in the queue's log already (the store wrote it for durability), so the tail is first a
//! range of that log, read back from it, and nothing is written twice; a message that is
//! not logged (transient), and every one after it until the paged ones have been read back,
//! goes to the queue's page file ([`super::page_file`]) instead, which is read after the
//! logged range. A queue recovered at start has its whole backlog as a logged range.
//!
//! None of that disk I/O happens here, under the queue's lock: messages bound for the tail
//! gather in `outgoing` and go to the [`Pager`] as one write job; when the head falls under
//! half its budget the next chunk is asked for ahead of need, and arrives through
//! [`Ready::refilled`]. Meanwhile this side only counts what is on disk.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use super::pager::{Job, Pager, Refill};
use super::Queue;
use crate::message::Message;
use crate::store::Store;

/// A message in a queue: its position (`seq`, increasing per queue) and delivery history.
#[derive(Clone)]
pub struct QueuedMessage {
    pub seq: u64,
    pub message: Arc<Message>,
    /// True once the message has been delivered and given back.
    pub redelivered: bool,
    /// A record of it is (or is on its way to being) in the store: settling it deletes that.
    pub on_disk: bool,
    /// When it expires (ms since the epoch); 0: never.
    pub expires_at: u64,
    /// Times it was delivered and given back (`x-delivery-count`).
    pub deliveries: u32,
}

/// The disk side of a queue: the store its records go to, under its id.
#[derive(Clone)]
pub struct Disk {
    pub store: Arc<Store>,
    pub qid: u64,
}

impl Disk {
    /// Logs a persistent message of a durable queue.
    pub fn put(&self, seq: u64, message: Arc<Message>, expires_at: u64) {
        self.store.put_message(self.qid, seq, message, expires_at);
    }
}

/// What a queue found on disk at start: its tail range (see the store's recovery).
pub use crate::store::recovery::TailRange as Tail;

pub struct Ready {
    disk: Disk,
    /// RAM the head may take (see [`Message::ram_cost`]).
    budget: usize,
    head: VecDeque<QueuedMessage>,
    head_cost: usize,
    head_bytes: usize,
    /// Bound for the tail, not handed to the pager yet (they follow everything on disk).
    outgoing: Vec<QueuedMessage>,
    outgoing_bytes: usize,
    /// Messages on disk (handed to the pager, not read back), and their body bytes.
    on_disk: usize,
    on_disk_bytes: usize,
    /// Of those, the ones in the page file (not the log): while any are, nothing joins the
    /// logged range (it is read first).
    paged: usize,
    /// No message on disk has a seq below this (a purge deletes their records from here).
    disk_floor: u64,
    /// A read is on its way.
    reading: bool,
    /// Bumped by a purge or delete: a read asked for before it is stale.
    generation: u64,
    /// Made when the tail is first needed (most queues never page).
    pager: Option<Arc<Pager>>,
    /// The queue this is part of (the pager's reads go to it).
    queue: Weak<Queue>,
    /// A priority queue (`x-max-priority`): one FIFO per priority, highest first, all in
    /// RAM (it does not page), instead of `head` and the tail.
    levels: Option<Levels>,
}

struct Levels {
    by_priority: Vec<VecDeque<QueuedMessage>>,
    len: usize,
}

impl Levels {
    fn level(&self, m: &QueuedMessage) -> usize {
        let max = self.by_priority.len() - 1;
        (m.message.properties().priority().unwrap_or(0) as usize).min(max)
    }

    fn front(&self) -> Option<&QueuedMessage> {
        self.by_priority.iter().rev().find_map(|q| q.front())
    }
}

/// `outgoing` goes to the pager once it holds this many body bytes.
const WRITE_BATCH: usize = 256 * 1024;
/// A read asks for at most this much RAM's worth of messages.
const READ_CHUNK: usize = 4 << 20;

impl Ready {
    /// The ready messages of `queue` (the one being built: see `Arc::new_cyclic`).
    pub fn new(disk: Disk, budget: usize, max_priority: Option<u8>, queue: Weak<Queue>) -> Self {
        Ready {
            levels: max_priority.map(|p| Levels {
                by_priority: (0..=p).map(|_| VecDeque::new()).collect(),
                len: 0,
            }),
            pager: None,
            queue,
            disk,
            budget,
            head: VecDeque::new(),
            head_cost: 0,
            head_bytes: 0,
            outgoing: Vec::new(),
            outgoing_bytes: 0,
            on_disk: 0,
            on_disk_bytes: 0,
            paged: 0,
            disk_floor: 0,
            reading: false,
            generation: 0,
        }
    }

    fn pager_mut(&mut self) -> &Arc<Pager> {
        let (disk, queue) = (&self.disk, &self.queue);
        self.pager
            .get_or_insert_with(|| Pager::new(disk.clone(), queue.clone()))
    }

    /// A queue recovered at start: its head (already in order), tail (in its log, with
    /// the `settled` seqs to skip), and delivery watermark.
    pub fn restore(
        &mut self,
        head: Vec<QueuedMessage>,
        tail: Tail,
        settled: crate::store::log::Settled,
        delivered: Option<u64>,
    ) {
        for m in head {
            self.add_to_head_back(m);
        }
        if tail.count > 0 {
            self.pager_mut().restore(tail, settled, delivered);
        }
        self.on_disk = tail.count;
        self.on_disk_bytes = tail.bytes;
        self.disk_floor = tail.from;
        self.read_ahead();
    }

    pub fn disk(&self) -> &Disk {
        &self.disk
    }

    fn add_to_head_back(&mut self, m: QueuedMessage) {
        self.head_cost += m.message.ram_cost();
        self.head_bytes += m.message.size();
        if let Some(l) = &mut self.levels {
            let i = l.level(&m);
            l.by_priority[i].push_back(m);
            l.len += 1;
            return;
        }
        self.head.push_back(m);
    }

    /// When the message that would be delivered next expires (0 = never → `None`).
    pub fn front_expiry(&self) -> Option<u64> {
        let front = match &self.levels {
            Some(l) => l.front(),
            None => self.head.front(),
        };
        front.map(|m| m.expires_at).filter(|&e| e != 0)
    }

    /// Appends a new message (its `seq` is higher than any stored). Past the budget, or
    /// behind messages bound for disk, it goes to the tail.
    pub fn push(&mut self, m: QueuedMessage) {
        let cost = m.message.ram_cost();
        let fits =
            self.on_disk == 0 && self.outgoing.is_empty() && self.head_cost + cost <= self.budget;
        if self.levels.is_some() || fits {
            self.add_to_head_back(m);
            return;
        }
        self.outgoing_bytes += m.message.size();
        self.outgoing.push(m);
        if self.outgoing_bytes >= WRITE_BATCH.min(self.budget / 4) {
            self.write_outgoing();
        }
    }

    /// Hands `outgoing` to the pager: from now on it counts as on disk. While nothing is
    /// paged, its logged messages up to the first one that is not join the logged range
    /// (no write); the rest is written to the page file.
    fn write_outgoing(&mut self) {
        if self.outgoing.is_empty() {
            return;
        }
        if self.on_disk == 0 {
            self.disk_floor = self.outgoing[0].seq;
        }
        self.on_disk += self.outgoing.len();
        self.on_disk_bytes += self.outgoing_bytes;
        self.outgoing_bytes = 0;
        let mut batch = std::mem::take(&mut self.outgoing);
        let logged = if self.paged == 0 {
            batch.iter().take_while(|m| m.on_disk).count()
        } else {
            0
        };
        if logged > 0 {
            let range = Tail {
                from: batch[0].seq,
                to: batch[logged - 1].seq + 1,
                count: logged,
                bytes: batch[..logged].iter().map(|m| m.message.size()).sum(),
            };
            self.pager_mut().submit(Job::Logged(range));
            batch.drain(..logged);
        }
        if !batch.is_empty() {
            self.paged += batch.len();
            self.pager_mut().submit(Job::Write(batch));
        }
    }

    /// Takes the next message to deliver. `None` also while the head is empty and its next
    /// messages are on their way from disk ([`Ready::refilling`]).
    pub fn pop(&mut self) -> Option<QueuedMessage> {
        let m = if let Some(l) = &mut self.levels {
            let m = l.by_priority.iter_mut().rev().find_map(|q| q.pop_front())?;
            l.len -= 1;
            m
        } else {
            if self.head.is_empty() && self.on_disk == 0 && !self.outgoing.is_empty() {
                // Nothing on disk comes before them: they move up without a disk in between.
                self.outgoing_bytes = 0;
                for m in std::mem::take(&mut self.outgoing) {
                    self.add_to_head_back(m);
                }
            }
            let m = self.head.pop_front();
            self.read_ahead();
            m?
        };
        self.head_cost -= m.message.ram_cost();
        self.head_bytes -= m.message.size();
        Some(m)
    }

    /// Asks for the next chunk from disk once the head is under half its budget.
    fn read_ahead(&mut self) {
        if self.reading || self.on_disk == 0 || self.head_cost > self.budget / 2 {
            return;
        }
        self.reading = true;
        let job = Job::Read {
            generation: self.generation,
            max_cost: (self.budget / 4).clamp(1, READ_CHUNK),
        };
        self.pager_mut().submit(job);
    }

    /// The head is empty and messages are on their way from disk.
    pub fn refilling(&self) -> bool {
        self.head.is_empty() && self.on_disk > 0
    }

    /// The pager, to wait on (see [`Pager::wait_idle`]).
    pub(super) fn pager(&self) -> Option<Arc<Pager>> {
        self.pager.clone()
    }

    /// A read came back: its messages join the back of the head (everything there is older).
    /// False if it was stale (asked for before a purge) and so dropped.
    pub(super) fn refilled(&mut self, r: Refill) -> bool {
        if r.generation != self.generation {
            return false;
        }
        self.reading = false;
        self.paged = self.paged.saturating_sub(r.paged);
        let progress = !r.messages.is_empty() || r.dropped > 0;
        self.on_disk = self.on_disk.saturating_sub(r.messages.len() + r.dropped);
        self.on_disk_bytes = self.on_disk_bytes.saturating_sub(r.dropped_bytes);
        for m in r.messages {
            self.on_disk_bytes = self.on_disk_bytes.saturating_sub(m.message.size());
            self.disk_floor = m.seq + 1;
            self.add_to_head_back(m);
        }
        if self.on_disk == 0 {
            self.on_disk_bytes = 0;
        }
        if progress {
            // A read that failed is not retried at once (the next pop does).
            self.read_ahead();
        }
        true
    }

    /// Gives a delivered message back, in its original place (by `seq`), which is in the
    /// head: it left from there, and everything in the tail is newer.
    pub fn requeue(&mut self, m: QueuedMessage) {
        self.head_cost += m.message.ram_cost();
        self.head_bytes += m.message.size();
        let head = match &mut self.levels {
            Some(l) => {
                l.len += 1;
                let i = l.level(&m);
                &mut l.by_priority[i]
            }
            None => &mut self.head,
        };
        let at = head.partition_point(|x| x.seq < m.seq);
        head.insert(at, m);
    }

    /// A delivered message was settled for good (acked, or rejected without requeue).
    pub fn settle(&self, m: &QueuedMessage) {
        if m.on_disk {
            self.disk
                .store
                .delete_message(self.disk.qid, m.seq, m.message.size());
        }
    }

    /// Drops every ready message, from RAM and disk; returns how many there were.
    pub fn purge(&mut self) -> usize {
        for m in &self.head {
            self.settle(m);
        }
        if let Some(l) = &self.levels {
            for m in l.by_priority.iter().flatten() {
                self.settle(m);
            }
        }
        // Everything past the head is ready (never delivered): its records go by range, sent
        // now, under the lock, so no later publish's record can be in it.
        let from = match self.outgoing.first() {
            _ if self.on_disk > 0 => Some(self.disk_floor),
            Some(m) => Some(m.seq),
            None => None,
        };
        if let Some(from) = from {
            self.disk
                .store
                .delete_messages(self.disk.qid, from, u64::MAX);
        }
        self.discard()
    }

    /// Forgets every ready message (the queue is deleted: its records go by prefix).
    pub fn discard(&mut self) -> usize {
        let n = self.len();
        self.head.clear();
        if let Some(l) = &mut self.levels {
            l.by_priority.iter_mut().for_each(VecDeque::clear);
            l.len = 0;
        }
        if let Some(p) = self
            .pager
            .as_ref()
            .filter(|_| self.on_disk > 0 || self.reading)
        {
            p.submit(Job::Clear);
        }
        self.outgoing.clear();
        self.outgoing_bytes = 0;
        self.on_disk = 0;
        self.on_disk_bytes = 0;
        self.paged = 0;
        self.reading = false;
        self.generation += 1;
        self.head_cost = 0;
        self.head_bytes = 0;
        n
    }

    pub fn len(&self) -> usize {
        self.head.len()
            + self.outgoing.len()
            + self.on_disk
            + self.levels.as_ref().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Body bytes of the ready messages.
    pub fn bytes(&self) -> usize {
        self.head_bytes + self.outgoing_bytes + self.on_disk_bytes
    }

    /// Body bytes of ready messages held in RAM here (the head and what waits to be written).
    pub fn bytes_in_ram(&self) -> usize {
        self.head_bytes + self.outgoing_bytes
    }
}
