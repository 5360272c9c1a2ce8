//! Reading the store back at start: definitions, then every queue's messages in order.
//!
//! Transient records (bodies paged out of RAM) and messages of queues that no longer exist
//! are deleted on the way. A damaged definition stops the start with an error naming the
//! file and the key; a damaged message record is logged and dropped.

use std::collections::HashMap;

use tracing::{error, info};

use super::records::{self, BindingDef, DestKind, ExchangeDef, QueueDef};
use super::{Op, Store, StoreError};
use crate::message::Message;

/// A message read back, as plain data (the queue layer makes its own entries of these).
pub struct StoredEntry {
    pub seq: u64,
    pub message: Message,
    /// ms since the epoch, 0 = never.
    pub expires_at: u64,
    /// Delivered before the restart: it comes back redelivered.
    pub redelivered: bool,
}

/// Messages of a queue left on disk: seqs in `from..to`, `count` of them.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TailRange {
    pub from: u64,
    pub to: u64,
    pub count: usize,
    /// Their body bytes.
    pub bytes: usize,
}

/// A durable queue as found on disk.
pub struct RecoveredQueue {
    pub def: QueueDef,
    /// The oldest messages, up to the RAM budget, in order.
    pub head: Vec<StoredEntry>,
    /// The rest, left on disk.
    pub tail: TailRange,
    /// Seqs up to this were delivered before (they come back redelivered).
    pub delivered: Option<u64>,
    pub next_seq: u64,
}

pub struct Recovered {
    pub vhosts: Vec<String>,
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<RecoveredQueue>,
    /// Bindings whose ends both exist (by id).
    pub bindings: Vec<BindingDef>,
    pub messages: usize,
    /// The highest queue or exchange id found (new ids start past it).
    pub max_id: u64,
}

impl Store {
    /// Everything durable, with each queue's head filled up to `budget(def)` bytes of RAM
    /// (the caller knows which queues keep everything: the store reads no arguments).
    /// Also returns the live bodies per segment file, for the writer.
    pub(super) fn recover(
        &self,
        budget: &dyn Fn(&QueueDef) -> usize,
    ) -> Result<(Recovered, HashMap<u64, u64>), StoreError> {
        let started = std::time::Instant::now();
        let db = self
            .db()
            .ok_or_else(|| self.read_error(sled::Error::ReportableBug("no db".into())))?;
        let mut vhosts = Vec::new();
        for (k, _) in self.scan(&db, &[records::VHOST])? {
            vhosts.push(String::from_utf8_lossy(k.get(2..).unwrap_or_default()).into_owned());
        }
        let mut max_id = 0;
        // Two incarnations of one name can both be on disk only if the older one's delete
        // did not reach the disk before the power went: the newer (higher id) one wins.
        let mut exchanges: HashMap<(String, String), ExchangeDef> = HashMap::new();
        let mut stale = 0usize;
        for (k, v) in self.scan(&db, &[records::EXCHANGE])? {
            let x = records::decode_exchange(&k, &v).map_err(|e| self.damaged(&k, e))?;
            max_id = max_id.max(x.id);
            let name = (x.vhost.clone(), x.name.clone());
            if let Some(old) = exchanges.get(&name) {
                let gone = old.id.min(x.id);
                self.send(Op::Delete(records::exchange_key(gone)));
                stale += 1;
                if old.id > x.id {
                    continue;
                }
            }
            exchanges.insert(name, x);
        }
        let mut delivered = HashMap::new();
        for (k, v) in self.scan(&db, &[records::DELIVERED])? {
            let qid = k
                .get(1..9)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            let seq = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes);
            if let (Some(qid), Some(seq)) = (qid, seq) {
                delivered.insert(qid, seq);
            }
        }
        let mut by_name: HashMap<(String, String), QueueDef> = HashMap::new();
        for (k, v) in self.scan(&db, &[records::QUEUE])? {
            let def = records::decode_queue(&k, &v).map_err(|e| self.damaged(&k, e))?;
            max_id = max_id.max(def.qid);
            let name = (def.vhost.clone(), def.name.clone());
            if let Some(old) = by_name.get(&name) {
                let gone = old.qid.min(def.qid);
                self.send(Op::Delete(records::queue_key(gone)));
                stale += 1;
                if old.qid > def.qid {
                    continue;
                }
            }
            by_name.insert(name, def);
        }
        let exchange_ids: std::collections::HashSet<u64> =
            exchanges.values().map(|x| x.id).collect();
        let mut queues: Vec<RecoveredQueue> = Vec::new();
        let mut budgets: Vec<usize> = Vec::new();
        let mut by_qid = HashMap::new();
        for def in by_name.into_values() {
            by_qid.insert(def.qid, queues.len());
            budgets.push(budget(&def));
            queues.push(RecoveredQueue {
                delivered: delivered.get(&def.qid).copied(),
                def,
                head: Vec::new(),
                tail: TailRange::default(),
                next_seq: 0,
            });
        }
        let mut bindings = Vec::new();
        for (k, _) in self.scan(&db, &[records::BINDING])? {
            let b = records::decode_binding(&k).map_err(|e| self.damaged(&k, e))?;
            let dest_exists = match b.dest_kind {
                DestKind::Queue => by_qid.contains_key(&b.dest),
                DestKind::Exchange => exchange_ids.contains(&b.dest),
            };
            if dest_exists && exchange_ids.contains(&b.source) {
                bindings.push(b);
            } else {
                // An end was deleted while this binding was being made: it goes too.
                self.send(Op::Delete(k.to_vec()));
                stale += 1;
            }
        }
        let mut exchanges: Vec<ExchangeDef> = exchanges.into_values().collect();
        exchanges.sort_by_key(|x| x.id);
        let (mut messages, mut dropped, mut damaged) = (0, 0, 0);
        let mut head_cost: HashMap<u64, usize> = HashMap::new();
        let mut gone = std::collections::HashSet::new();
        let mut live: HashMap<u64, u64> = HashMap::new();
        let mut file = None;
        for item in db.scan_prefix([records::MESSAGE]) {
            let (k, v) = item.map_err(|source| self.read_error(source))?;
            let Some((qid, seq)) = records::parse_message_key(&k) else {
                continue;
            };
            max_id = max_id.max(qid);
            let Some(&i) = by_qid.get(&qid) else {
                // A queue that is gone (or was never durable): its records go too, at once.
                if gone.insert(qid) {
                    self.send(Op::DeletePrefix(
                        records::queue_messages_prefix(qid).to_vec(),
                    ));
                }
                dropped += 1;
                continue;
            };
            let delete = || {
                self.send(Op::DeleteMessage {
                    key: records::message_key(qid, seq),
                    external: false,
                })
            };
            let (flags, expires_at) = match records::decode_message(&v) {
                Ok(m) => (m.flags, m.expires_at),
                Err(e) => {
                    error!(path = %self.path.display(), qid, seq, "{e}: dropped");
                    delete();
                    damaged += 1;
                    continue;
                }
            };
            if flags & records::PERSISTENT == 0 {
                delete();
                dropped += 1;
                continue;
            }
            let q = &mut queues[i];
            let budget = budgets[i];
            let into_head = q.tail.count == 0 && head_cost.get(&qid).copied().unwrap_or(0) < budget;
            let message = if into_head {
                match self.load_message(&v, &mut file) {
                    Ok(l) => Some(l.message),
                    Err(e) => {
                        error!(path = %self.path.display(), qid, seq, "damaged message record ({e}): dropped");
                        delete();
                        damaged += 1;
                        continue;
                    }
                }
            } else {
                None
            };
            if let Some(segment) = records::external_segment(&v) {
                *live.entry(segment).or_default() += 1;
            }
            messages += 1;
            q.next_seq = seq + 1;
            match message {
                Some(m) => {
                    *head_cost.entry(qid).or_default() += m.ram_cost();
                    q.head.push(StoredEntry {
                        seq,
                        message: m,
                        expires_at,
                        redelivered: q.delivered.is_some_and(|d| seq <= d),
                    });
                }
                None => {
                    if q.tail.count == 0 {
                        q.tail.from = seq;
                    }
                    q.tail.count += 1;
                    q.tail.bytes += stored_body_len(&v);
                    q.tail.to = seq + 1;
                }
            }
        }
        if damaged > 0 {
            error!(
                damaged,
                path = %self.path.display(),
                "recovery dropped damaged message records"
            );
        }
        info!(
            messages,
            dropped,
            damaged,
            stale,
            queues = queues.len(),
            exchanges = exchanges.len(),
            bindings = bindings.len(),
            ms = started.elapsed().as_millis() as u64,
            "recovered from {}",
            self.path.display()
        );
        Ok((
            Recovered {
                vhosts,
                exchanges,
                queues,
                bindings,
                messages,
                max_id,
            },
            live,
        ))
    }

    fn scan(
        &self,
        db: &sled::Db,
        prefix: &[u8],
    ) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        db.scan_prefix(prefix)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| self.read_error(source))
    }

    fn damaged(&self, key: &[u8], source: records::RecordError) -> StoreError {
        StoreError::Record {
            path: self.path.clone(),
            key: String::from_utf8_lossy(key).into_owned(),
            source,
        }
    }
}

/// A record's body size, without reading an external body.
fn stored_body_len(v: &[u8]) -> usize {
    match records::decode_message(v).map(|m| m.body) {
        Ok(records::Body::Inline(b)) => b.len(),
        Ok(records::Body::External(r)) => r.len as usize,
        Err(_) => 0,
    }
}
