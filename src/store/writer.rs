//! The group-commit writer: one thread that owns every write to sled.
//!
//! It blocks for the first op, then takes everything else already waiting (no timer: an idle
//! broker commits one op at once; a busy one commits thousands per sync, because ops pile up
//! while the previous sync runs). One commit = one `apply_batch` + one sync, then the
//! connections waiting on it are told. An op that must see the database as it is (a range
//! or prefix delete) first applies what came before it, so order is kept.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error};

use super::records::{self, DestKind, MessageKey};
use super::segments::{Segments, EXTERNAL_BODY_MIN};
use super::Op;
use crate::connection::ConnEvent;

/// Ops taken per commit at most (bounds a commit's memory and latency).
const MAX_OPS: usize = 64 * 1024;

pub(super) fn run(db: sled::Db, rx: Receiver<Op>, backlog: Arc<AtomicUsize>, segments: Segments) {
    let mut w = Writer {
        db,
        segments,
        releases: Vec::new(),
        backlog,
        taken: 0,
        batch: sled::Batch::default(),
        dirty: false,
        notify: Vec::new(),
        barriers: Vec::new(),
        delivered: HashMap::new(),
        ok: true,
        unsynced: false,
        failures: 0,
        last_logged: None,
        value: Vec::new(),
    };
    let mut ops = Vec::with_capacity(1024);
    loop {
        let Ok(first) = rx.recv() else { break };
        ops.push(first);
        while ops.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let stop = w.commit(&mut ops);
        if stop {
            break;
        }
    }
    let _ = w.db.flush();
    debug!("store writer stopped");
}

struct Writer {
    db: sled::Db,
    segments: Segments,
    /// Segments that lost a body in this commit (released once it is synced).
    releases: Vec<u64>,
    /// The store's count of message bytes not yet applied (see `Store::backlog`).
    backlog: Arc<AtomicUsize>,
    /// Message bytes taken off the channel in this commit.
    taken: usize,
    batch: sled::Batch,
    /// `batch` holds something.
    dirty: bool,
    notify: Vec<(u64, UnboundedSender<ConnEvent>)>,
    barriers: Vec<Sender<bool>>,
    delivered: HashMap<u64, u64>,
    /// Every apply in this commit succeeded.
    ok: bool,
    /// Something was applied since the last sync.
    unsynced: bool,
    /// Failures since the last one logged, and when that was.
    failures: u64,
    last_logged: Option<Instant>,
    value: Vec<u8>,
}

impl Writer {
    /// Commits `ops` (drained); true if a stop was asked for.
    fn commit(&mut self, ops: &mut Vec<Op>) -> bool {
        let started = Instant::now();
        let n = ops.len();
        // A message written and deleted (acked) within one commit never touches the disk.
        let cancelled = cancelled_pairs(ops);
        let mut stop = false;
        for op in ops.drain(..) {
            match op {
                Op::PutMessage {
                    key,
                    message,
                    persistent,
                    expires_at,
                } => {
                    self.taken += message.ram_cost();
                    if cancelled.contains(&key) {
                        continue;
                    }
                    self.value.clear();
                    let flags = if persistent { records::PERSISTENT } else { 0 };
                    let external = if message.body().len() >= EXTERNAL_BODY_MIN {
                        match self.segments.append(message.body()) {
                            Ok(r) => Some(r),
                            Err(e) => {
                                self.fail(format_args!("cannot append to a body segment: {e}"));
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    records::encode_message(&message, flags, expires_at, external, &mut self.value);
                    self.batch.insert(&key[..], &self.value[..]);
                    self.dirty = true;
                }
                Op::DeleteMessage { key, external } => {
                    if !cancelled.contains(&key) {
                        if external {
                            self.note_release(&key);
                        }
                        self.batch.remove(&key[..]);
                        self.dirty = true;
                    }
                }
                Op::DeleteMessages { qid, from, to } => {
                    self.apply();
                    let range = records::message_key(qid, from)..records::message_key(qid, to);
                    self.delete_records(self.db.range(range));
                }
                Op::Delivered { qid, seq } => {
                    let e = self.delivered.entry(qid).or_insert(seq);
                    *e = (*e).max(seq);
                }
                Op::Put { key, value } => {
                    self.batch.insert(key, value);
                    self.dirty = true;
                }
                Op::Delete(key) => {
                    // A queue deleted later in this commit must not get its watermark back.
                    if let Some(qid) = delivered_qid(&key) {
                        self.delivered.remove(&qid);
                    }
                    self.batch.remove(key);
                    self.dirty = true;
                }
                Op::DeletePrefix(prefix) => {
                    self.apply();
                    self.delete_records(self.db.scan_prefix(&prefix));
                }
                Op::DeleteBindingsTo { vhost, kind, dest } => {
                    self.apply();
                    self.delete_bindings_to(&vhost, kind, &dest);
                }
                Op::Notify { token, to } => self.notify.push((token, to)),
                Op::Barrier(tx) => self.barriers.push(tx),
                Op::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        for (qid, seq) in std::mem::take(&mut self.delivered) {
            self.batch
                .insert(&records::delivered_key(qid)[..], &seq.to_be_bytes()[..]);
            self.dirty = true;
        }
        self.apply();
        self.backlog
            .fetch_sub(std::mem::take(&mut self.taken), Ordering::Relaxed);
        let synced = !std::mem::take(&mut self.unsynced) || self.sync();
        let ok = std::mem::replace(&mut self.ok, true) && synced;
        if synced {
            for segment in self.releases.drain(..) {
                self.segments.release(segment);
            }
        }
        for (token, to) in self.notify.drain(..) {
            let _ = to.send(ConnEvent::Durable { token, ok });
        }
        for b in self.barriers.drain(..) {
            let _ = b.send(ok);
        }
        metrics::histogram!(crate::metrics::STORE_FLUSH_SECONDS)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(crate::metrics::STORE_OPS).increment(n as u64);
        stop
    }

    /// Logs a store failure, at most once a second (a full disk fails every write), and
    /// marks the commit failed.
    fn fail(&mut self, what: std::fmt::Arguments<'_>) {
        self.ok = false;
        self.failures += 1;
        let now = Instant::now();
        if self
            .last_logged
            .map_or(true, |t| now.duration_since(t).as_secs() >= 1)
        {
            error!(failures = self.failures, "{what}");
            self.last_logged = Some(now);
            self.failures = 0;
        }
    }

    /// Applies the pending batch; returns false if it failed (logged; `ok` is cleared).
    fn apply(&mut self) -> bool {
        if !self.dirty {
            return true;
        }
        self.dirty = false;
        let batch = std::mem::take(&mut self.batch);
        // Bodies first: a record must never be readable before the bytes it points at.
        if let Err(e) = self.segments.write_pending() {
            self.fail(format_args!("cannot write a body segment: {e}"));
            return false;
        }
        match self.db.apply_batch(batch) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e) => {
                self.fail(format_args!("store write failed: {e}"));
                false
            }
        }
    }

    fn sync(&mut self) -> bool {
        if let Err(e) = self.segments.sync() {
            self.fail(format_args!("body segment sync failed: {e}"));
            return false;
        }
        match self.db.flush() {
            Ok(_) => true,
            Err(e) => {
                self.fail(format_args!("store sync failed: {e}"));
                false
            }
        }
    }

    /// A message record about to be deleted: its body's segment loses a live body.
    fn note_release(&mut self, key: &[u8]) {
        if let Ok(Some(v)) = self.db.get(key) {
            if let Some(segment) = records::external_segment(&v) {
                self.releases.push(segment);
            }
        }
    }

    /// Deletes the records `items` yields (releasing segment bodies of message records).
    fn delete_records(
        &mut self,
        items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) {
        let mut batch = sled::Batch::default();
        for item in items {
            match item {
                Ok((k, v)) => {
                    if k.first() == Some(&records::MESSAGE) {
                        if let Some(segment) = records::external_segment(&v) {
                            self.releases.push(segment);
                        }
                    }
                    batch.remove(k);
                }
                Err(e) => {
                    self.fail(format_args!("store scan failed: {e}"));
                    break;
                }
            }
        }
        match self.db.apply_batch(batch) {
            Ok(()) => self.unsynced = true,
            Err(e) => {
                self.fail(format_args!("store delete failed: {e}"));
            }
        }
    }

    fn delete_bindings_to(&mut self, vhost: &str, kind: DestKind, dest: &str) {
        let prefix = records::named_key(records::BINDING, &[vhost]);
        let doomed: Vec<_> = self
            .db
            .scan_prefix(prefix)
            .filter(|item| match item {
                Ok((k, _)) => records::decode_binding(k)
                    .map(|b| b.dest_kind == kind && b.dest == dest)
                    .unwrap_or(false),
                Err(_) => true,
            })
            .collect();
        self.delete_records(doomed.into_iter());
    }
}

/// Message keys both written and deleted among `ops`.
fn cancelled_pairs(ops: &[Op]) -> HashSet<MessageKey> {
    // A commit of publishes alone (no consumer yet) cancels nothing: skip hashing every put.
    if !ops.iter().any(|op| matches!(op, Op::DeleteMessage { .. })) {
        return HashSet::new();
    }
    let mut puts = HashSet::new();
    let mut both = HashSet::new();
    for op in ops {
        match op {
            Op::PutMessage { key, .. } => {
                puts.insert(*key);
            }
            Op::DeleteMessage { key, .. } if puts.contains(key) => {
                both.insert(*key);
            }
            _ => {}
        }
    }
    both
}

fn delivered_qid(key: &[u8]) -> Option<u64> {
    if key.len() == 9 && key[0] == records::DELIVERED {
        Some(u64::from_be_bytes(key[1..].try_into().ok()?))
    } else {
        None
    }
}
