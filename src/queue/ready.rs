//! A queue's ready messages: a head in RAM and, past the queue's RAM budget, a tail on disk.
//!
//! Messages enter at the back and leave from the front, so a deep queue keeps its oldest
//! messages in RAM (about to be delivered) and everything after the first message that did
//! not fit in its page file ([`super::page_file`]), appended and read back in order: a tail
//! message costs no RAM. When the head runs dry the next chunk is read back. A queue
//! recovered at start also has a tail of persistent records in the store (a seq range read
//! back from sled); it comes before anything paged since.

use std::collections::VecDeque;
use std::sync::Arc;

use super::page_file::PageFile;
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
    pub fn put(&self, seq: u64, message: Arc<Message>, persistent: bool, expires_at: u64) {
        self.store
            .put_message(self.qid, seq, message, persistent, expires_at);
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
    tail: Tail,
    /// Messages past the budget, in order, on disk (opened when first needed).
    pages: Option<PageFile>,
    /// Recovered messages with a seq up to this were delivered before the restart.
    delivered_before: Option<u64>,
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

impl Ready {
    pub fn new(disk: Disk, budget: usize, max_priority: Option<u8>) -> Self {
        Ready {
            levels: max_priority.map(|p| Levels {
                by_priority: (0..=p).map(|_| VecDeque::new()).collect(),
                len: 0,
            }),
            disk,
            budget,
            head: VecDeque::new(),
            head_cost: 0,
            head_bytes: 0,
            tail: Tail::default(),
            pages: None,
            delivered_before: None,
        }
    }

    /// A queue recovered at start: its head (already in order), tail, and delivery watermark.
    pub fn restore(&mut self, head: Vec<QueuedMessage>, tail: Tail, delivered: Option<u64>) {
        for m in head {
            self.add_to_head_back(m);
        }
        self.tail = tail;
        self.delivered_before = delivered;
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
    pub fn front_expiry(&mut self) -> Option<u64> {
        if let Some(l) = &self.levels {
            return l.front().map(|m| m.expires_at).filter(|&e| e != 0);
        }
        if self.head.is_empty() && (self.tail.count > 0 || self.paged() > 0) {
            self.page_in();
        }
        self.head.front().map(|m| m.expires_at).filter(|&e| e != 0)
    }

    fn paged(&self) -> usize {
        self.pages.as_ref().map_or(0, |p| p.count)
    }

    /// Appends a new message (its `seq` is higher than any stored). Past the budget, or
    /// behind messages already on disk, it goes to the page file.
    pub fn push(&mut self, m: QueuedMessage) {
        let cost = m.message.ram_cost();
        let fits =
            self.tail.count == 0 && self.paged() == 0 && self.head_cost + cost <= self.budget;
        if self.levels.is_some() || fits {
            self.add_to_head_back(m);
            return;
        }
        if let Err(e) = self.page_out(&m) {
            // A full or failing disk: keep it in RAM rather than lose it.
            tracing::error!(qid = self.disk.qid, "cannot page a message out: {e}");
            self.add_to_head_back(m);
        }
    }

    fn page_out(&mut self, m: &QueuedMessage) -> std::io::Result<()> {
        if self.pages.is_none() {
            let path = self
                .disk
                .store
                .pages_dir()
                .join(format!("{:016x}.pg", self.disk.qid));
            self.pages = Some(PageFile::create(path)?);
        }
        match &mut self.pages {
            Some(p) => p.push(m),
            None => Ok(()),
        }
    }

    /// Takes the next message to deliver.
    pub fn pop(&mut self) -> Option<QueuedMessage> {
        let m = if let Some(l) = &mut self.levels {
            let m = l.by_priority.iter_mut().rev().find_map(|q| q.pop_front())?;
            l.len -= 1;
            m
        } else {
            if self.head.is_empty() && (self.tail.count > 0 || self.paged() > 0) {
                self.page_in();
            }
            self.head.pop_front()?
        };
        self.head_cost -= m.message.ram_cost();
        self.head_bytes -= m.message.size();
        Some(m)
    }

    /// Moves the next chunk of the tail into the head: the store's recovered records first,
    /// then the page file.
    fn page_in(&mut self) {
        const CHUNK: usize = 4 << 20;
        let chunk = (self.budget / 4).clamp(1, CHUNK);
        let mut cost = 0;
        while cost < chunk && self.tail.count > 0 {
            let (qid, from, to) = (self.disk.qid, self.tail.from, self.tail.to);
            let read = match self.disk.store.read_messages(qid, from, to, chunk - cost) {
                Ok(r) => r,
                Err(e) => {
                    // The messages stay where they are; the next pop tries again.
                    tracing::error!(qid, "{e}");
                    return;
                }
            };
            if read.is_empty() {
                // Records that vanished (damaged ones are dropped) leave no phantom count.
                self.tail = Tail::default();
                break;
            }
            for (seq, message, expires_at) in read {
                cost += message.ram_cost();
                let redelivered = self.delivered_before.is_some_and(|d| seq <= d);
                self.take_from_tail(QueuedMessage {
                    seq,
                    message: Arc::new(message),
                    redelivered,
                    on_disk: true,
                    expires_at,
                    deliveries: 0,
                });
            }
        }
        if cost > 0 {
            return;
        }
        let Some(pages) = &mut self.pages else { return };
        match pages.pop_chunk(chunk) {
            Ok(ms) => {
                for m in ms {
                    self.add_to_head_back(m);
                }
            }
            Err(e) => {
                // Unreadable scratch: those messages are lost (persistent ones come back
                // from the store at the next start). Said loudly; the queue goes on.
                tracing::error!(qid = self.disk.qid, lost = pages.count, "page file: {e}");
                let _ = pages.clear();
            }
        }
    }

    fn take_from_tail(&mut self, m: QueuedMessage) {
        self.tail.from = m.seq + 1;
        self.tail.count = self.tail.count.saturating_sub(1);
        self.tail.bytes = self.tail.bytes.saturating_sub(m.message.size());
        self.add_to_head_back(m);
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
        // Everything from the first record on disk on is ready (never delivered): its records
        // go by range.
        let from = match (&self.pages, self.tail.count) {
            (_, n) if n > 0 => Some(self.tail.from),
            (Some(p), _) if p.count > 0 => Some(p.floor),
            _ => None,
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
        if let Some(p) = &mut self.pages {
            let _ = p.clear();
        }
        self.head_cost = 0;
        self.head_bytes = 0;
        self.tail = Tail::default();
        n
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.count + self.paged() + self.levels.as_ref().map_or(0, |l| l.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Body bytes of the ready messages.
    pub fn bytes(&self) -> usize {
        self.head_bytes + self.tail.bytes + self.pages.as_ref().map_or(0, |p| p.bytes)
    }

    /// Body bytes of ready messages held in RAM, and of those only on disk.
    pub fn bytes_in_ram(&self) -> usize {
        self.head_bytes
    }
}
