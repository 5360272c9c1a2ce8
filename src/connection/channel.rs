//! A channel's state inside its connection task: content assembly, consumers, unacked
//! deliveries (ordered by delivery tag, with their consumer-timeout deadlines), confirm and
//! transaction modes.

use std::collections::{HashMap, VecDeque};
use std::hash::Hasher;

use super::confirms::Confirms;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warren_codec::ContentAssembler;

use crate::error::{AmqpError, AmqpResult};
use crate::exchange::Exchange;
use crate::queue::consumer::{ChannelCredit, Consumer};
use crate::queue::ready::QueuedMessage;
use crate::queue::Queue;

/// A delivery the client has not settled yet.
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub message: QueuedMessage,
    /// None for basic.get.
    pub consumer: Option<Arc<Consumer>>,
    /// When the consumer timeout closes the channel if it is still unacked, and the
    /// timeout (ms) that gave it.
    pub deadline: Option<(Instant, u64)>,
}

/// Work a transaction holds until commit.
pub enum TxOp {
    Publish(warren_codec::Content),
    Ack(Vec<Unacked>),
    Reject {
        deliveries: Vec<Unacked>,
        requeue: bool,
    },
}

#[derive(Clone)]
pub struct CachedExchange {
    pub exchange: Arc<Exchange>,
    /// The broker's access generation when write on it was permitted.
    pub generation: u64,
    /// It is a topic exchange the user has topic permissions on: each key is checked.
    pub topic_rules: bool,
}

pub struct Channel {
    pub id: u16,
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    pub closing: bool,
    pub content: ContentAssembler,
    pub consumers: HashMap<String, (Arc<Consumer>, Arc<Queue>)>,
    pub credit: Arc<ChannelCredit>,
    /// basic.qos global=false: the limit given to consumers started from now on.
    pub consumer_prefetch: u32,
    next_tag: u64,
    pub unacked: VecDeque<Unacked>,
    pub confirms: Option<Confirms>,
    pub tx: Option<Vec<TxOp>>,
    /// tx.commit-oks waiting for the sync token of the commit's persistent messages.
    pub commits_waiting: VecDeque<u64>,
    /// The last queue declared on this channel (for methods naming the queue "").
    pub last_queue: Option<String>,
    /// Direct reply-to: this channel's token and reply consumer tag.
    pub reply_to: Option<(String, String)>,
    /// The exchange of the last publish, re-used while its name matches, it lives, and
    /// the access generation its write permission was checked at is current.
    pub exchange_cache: Option<CachedExchange>,
    /// No unacked delivery's deadline is earlier than this (a lower bound: see
    /// [`Channel::timed_out`]).
    pub earliest_deadline: Option<Instant>,
}

impl Channel {
    pub fn new(id: u16) -> Self {
        Channel {
            id,
            closing: false,
            content: ContentAssembler::default(),
            consumers: HashMap::new(),
            credit: Arc::new(ChannelCredit::default()),
            consumer_prefetch: 0,
            next_tag: 0,
            unacked: VecDeque::new(),
            confirms: None,
            tx: None,
            commits_waiting: VecDeque::new(),
            last_queue: None,
            reply_to: None,
            exchange_cache: None,
            earliest_deadline: None,
        }
    }

    /// Records an unacked delivery (with its consumer timeout, if any).
    pub fn push_unacked(&mut self, mut u: Unacked, timeout_ms: Option<u64>, now: Instant) {
        if let Some(ms) = timeout_ms.filter(|&ms| ms > 0) {
            let at = now + Duration::from_millis(ms);
            u.deadline = Some((at, ms));
            self.earliest_deadline = Some(self.earliest_deadline.map_or(at, |e| e.min(at)));
        }
        self.unacked.push_back(u);
    }

    /// The consumer timeout (ms) of a delivery unacked past its deadline, if any. Scans the
    /// unacked deliveries only once the earliest deadline has passed, and then finds the
    /// next one.
    pub fn timed_out(&mut self, now: Instant) -> Option<u64> {
        if self.earliest_deadline.map_or(true, |e| e > now) {
            return None;
        }
        let mut next: Option<Instant> = None;
        for u in &self.unacked {
            if let Some((at, ms)) = u.deadline {
                if at <= now {
                    return Some(ms);
                }
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        self.earliest_deadline = next;
        None
    }

    pub fn next_delivery_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Removes the deliveries an ack/nack/reject names: `tag` exactly, or with `multiple`
    /// everything up to it (`0` + multiple = all). An unknown tag is 406, as RabbitMQ.
    pub fn take_unacked(&mut self, tag: u64, multiple: bool) -> AmqpResult<Vec<Unacked>> {
        if multiple && tag == 0 {
            return Ok(self.unacked.drain(..).collect());
        }
        let i = self.unacked.partition_point(|u| u.tag < tag);
        if self.unacked.get(i).map(|u| u.tag) != Some(tag) {
            return Err(AmqpError::precondition_failed(format!(
                "unknown delivery tag {tag}"
            )));
        }
        if multiple {
            Ok(self.unacked.drain(..=i).collect())
        } else {
            Ok(self.unacked.remove(i).into_iter().collect())
        }
    }

    /// Puts deliveries back as unacked (a rolled-back transaction), keeping tag order.
    pub fn restore_unacked(&mut self, deliveries: Vec<Unacked>) {
        for d in deliveries {
            let i = self.unacked.partition_point(|u| u.tag < d.tag);
            self.unacked.insert(i, d);
        }
    }
}

/// Channel numbers are small, distinct integers chosen by the client: they are their own hash
/// (SipHash showed up at ~4% of a publish-heavy profile).
#[derive(Default)]
pub(super) struct ChannelHasher(u64);

impl Hasher for ChannelHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }

    fn write_u16(&mut self, n: u16) {
        self.0 = u64::from(n);
    }
}
