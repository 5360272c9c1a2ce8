//! A channel's state inside its connection task: content assembly, consumers, unacked
//! deliveries (ordered by delivery tag), confirm and transaction modes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use warren_codec::ContentAssembler;

use crate::error::{AmqpError, AmqpResult};
use crate::exchange::Exchange;
use crate::queue::consumer::{ChannelCredit, Consumer};
use crate::queue::store::QueuedMessage;
use crate::queue::Queue;

/// A delivery the client has not settled yet.
pub struct Unacked {
    pub tag: u64,
    pub queue: Arc<Queue>,
    pub message: QueuedMessage,
    /// None for basic.get.
    pub consumer: Option<Arc<Consumer>>,
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

/// Publisher-confirm bookkeeping: sequence numbers and acks not yet written.
#[derive(Default)]
pub struct Confirms {
    /// Sequence number of the last publish (the first is 1).
    pub last_seq: u64,
    /// Highest seq confirmed but not yet written, and how many that covers.
    pending: Option<(u64, u64)>,
}

impl Confirms {
    pub fn next(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Records an ack for `seq` (acks are recorded in order).
    pub fn ack(&mut self, seq: u64) {
        self.pending = Some(match self.pending {
            Some((_, n)) => (seq, n + 1),
            None => (seq, 1),
        });
    }

    /// The pending acks as one `(tag, multiple)` basic.ack.
    pub fn take_pending(&mut self) -> Option<(u64, bool)> {
        self.pending.take().map(|(seq, n)| (seq, n > 1))
    }
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
    /// The last queue declared on this channel (for methods naming the queue "").
    pub last_queue: Option<String>,
    /// The exchange of the last publish, re-used while its name matches and it lives.
    pub exchange_cache: Option<Arc<Exchange>>,
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
            last_queue: None,
            exchange_cache: None,
        }
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
