//! Reading the store back at start: definitions, then every durable queue's log (its
//! segments' extents and settled sets, and a head of messages up to the caller's budget;
//! the rest stays on disk, `log::recover_queue`).
//!
//! Logs and log records of queues that no longer exist are deleted on the way. A damaged
//! definition stops the start with an error naming the file and the key; a damaged log
//! record is logged and skipped (see `log`).

use std::collections::{BTreeMap, HashMap};

use tracing::info;

use super::log::{self, Extent, MetaLog, QueueLog, Settled, SettledRecord};
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
    /// Settled seqs of its log (a reader of the tail skips them).
    pub settled: Settled,
    /// Seqs up to this were delivered before (they come back redelivered).
    pub delivered: Option<u64>,
    pub next_seq: u64,
}

pub struct Recovered {
    /// Each vhost's name and record (see `Store::put_vhost`).
    pub vhosts: Vec<(String, Vec<u8>)>,
    /// The access and policy records, by kind (`records::USER`, `PERMISSION`,
    /// `TOPIC_PERMISSION`, `POLICY`, `OPERATOR_POLICY`):
    /// their values (which name what they are about).
    pub access: Vec<(u8, Vec<u8>)>,
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
    /// Also returns each durable queue's log, for the writer.
    pub(super) fn recover(
        &self,
        budget: &dyn Fn(&QueueDef) -> usize,
        meta: &mut MetaLog,
    ) -> Result<(Recovered, HashMap<u64, QueueLog>), StoreError> {
        let started = std::time::Instant::now();
        let db = self
            .db()
            .ok_or_else(|| self.read_error(sled::Error::ReportableBug("no db".into())))?;
        let mut vhosts = Vec::new();
        for (k, v) in self.scan(&db, &[records::VHOST])? {
            let name = String::from_utf8_lossy(k.get(2..).unwrap_or_default()).into_owned();
            vhosts.push((name, v.to_vec()));
        }
        let mut access = Vec::new();
        for kind in [
            records::USER,
            records::PERMISSION,
            records::TOPIC_PERMISSION,
            records::POLICY,
            records::OPERATOR_POLICY,
        ] {
            for (_, v) in self.scan(&db, &[kind])? {
                access.push((kind, v.to_vec()));
            }
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
        for (k, v) in meta.scan(&[records::DELIVERED]) {
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
                settled: Settled::default(),
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
        let (messages, dropped, logs) = self.recover_logs(meta, &mut queues, &by_qid, &budgets)?;
        info!(
            messages,
            dropped,
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
                access,
                exchanges,
                queues,
                bindings,
                messages,
                max_id,
            },
            logs,
        ))
    }

    /// Every durable queue's log; logs and records of queues that are gone are deleted.
    /// Returns the live messages found, the logs dropped, and the writer's state.
    fn recover_logs(
        &self,
        meta: &mut MetaLog,
        queues: &mut [RecoveredQueue],
        by_qid: &HashMap<u64, usize>,
        budgets: &[usize],
    ) -> Result<(usize, usize, HashMap<u64, QueueLog>), StoreError> {
        type Segs<T> = HashMap<u64, BTreeMap<u64, T>>;
        let mut extents: Segs<Extent> = HashMap::new();
        let mut settled: Segs<SettledRecord> = HashMap::new();
        let mut gone = Vec::new();
        for kind in [records::EXTENT, records::SETTLED, records::DELIVERED] {
            for (k, v) in meta.scan(&[kind]) {
                let qid = k
                    .get(1..9)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes);
                let Some(qid) = qid else {
                    gone.push(k.to_vec());
                    continue;
                };
                if !by_qid.contains_key(&qid) {
                    gone.push(k.to_vec());
                    continue;
                }
                if kind == records::DELIVERED {
                    continue;
                }
                let Some((_, first)) = records::parse_segment_key(k) else {
                    gone.push(k.to_vec());
                    continue;
                };
                // A record that does not decode is treated as missing: the segment is
                // scanned from its start, or its acks are lost (redelivered, not lost).
                if kind == records::EXTENT {
                    match log::Extent::decode(v) {
                        Some(e) => {
                            extents.entry(qid).or_default().insert(first, e);
                        }
                        None => gone.push(k.to_vec()),
                    }
                } else {
                    match SettledRecord::decode(v) {
                        Some(r) => {
                            settled.entry(qid).or_default().insert(first, r);
                        }
                        None => gone.push(k.to_vec()),
                    }
                }
            }
        }
        for k in gone {
            meta.remove(&k);
        }
        // What the last commits journaled goes into its segments before anything reads them.
        log::journal::replay(&self.logs).map_err(|e| StoreError::Log {
            path: log::journal::journal_path(&self.logs),
            source: e,
        })?;
        // Logs of queues that are gone.
        let mut dropped = 0;
        if let Ok(entries) = std::fs::read_dir(&self.logs) {
            for e in entries.flatten() {
                if !e.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let qid = e
                    .file_name()
                    .to_str()
                    .and_then(|n| u64::from_str_radix(n, 16).ok());
                if qid.map_or(true, |q| !by_qid.contains_key(&q)) {
                    let _ = std::fs::remove_dir_all(e.path());
                    dropped += 1;
                }
            }
            if dropped > 0 {
                let _ = super::durable::sync_dir(&self.logs);
            }
        }
        let mut logs = HashMap::new();
        let mut messages = 0;
        for (&qid, &i) in by_qid {
            let r = log::recover_queue(
                &self.logs,
                qid,
                extents.remove(&qid).unwrap_or_default(),
                settled.remove(&qid).unwrap_or_default(),
                budgets[i],
            )
            .map_err(|e| StoreError::Log {
                path: log::queue_dir(&self.logs, qid),
                source: e,
            })?;
            for first in r.stale {
                for kind in [records::EXTENT, records::SETTLED] {
                    meta.remove(&records::segment_key(kind, qid, first));
                }
            }
            let q = &mut queues[i];
            messages += r.head.len() + r.tail.2;
            // Past every seq delivered too: a new message must not come back redelivered.
            q.next_seq = r.next_seq.max(q.delivered.map_or(0, |d| d + 1));
            q.head = r
                .head
                .into_iter()
                .map(|(seq, message, expires_at)| StoredEntry {
                    seq,
                    message,
                    expires_at,
                    redelivered: q.delivered.is_some_and(|d| seq <= d),
                })
                .collect();
            q.tail = TailRange {
                from: r.tail.0,
                to: r.tail.1,
                count: r.tail.2,
                bytes: r.tail.3,
            };
            q.settled = r.settled;
            if r.next_seq > 0 {
                logs.insert(qid, r.log);
            }
        }
        // The stale records' removal, durable before the writer's first commit.
        meta.sync().map_err(|e| StoreError::Log {
            path: log::meta::meta_path(&self.logs),
            source: e,
        })?;
        meta.committed(false);
        Ok((messages, dropped, logs))
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
