//! The group-commit writer: one thread that owns every write to sled and the segments.
//!
//! It blocks for the first op, then takes everything else already waiting (no timer: an idle
//! broker commits one op at once; a busy one commits thousands per sync, because ops pile up
//! while the previous sync runs). One commit = one `apply_batch` + one sync (segments
//! `fdatasync`, sled `flush`, `fdatasync` of `sled/db`: see `durable`), then the
//! connections waiting on it are told. An op that must see the database as it is (a range
//! or prefix delete) first applies what came before it, so order is kept. A prefix delete
//! (a gone queue's or exchange's records) takes at most [`DELETE_CHUNK`] records per
//! commit and carries the rest to the next ones: deleting a queue with 10,000 bindings must
//! not hold every other connection's confirm behind one long commit.
//!
//! A commit that fails (a full disk, an I/O error) loses nothing it should keep:
//! - the message writes it held are dropped (their bodies cut back out of the segment), and
//!   every sync wait that could cover them is failed: a failure bumps the store's failure
//!   epoch, and a wait succeeds only if no failure happened since its connection started the
//!   batch whose writes it covers (`Op::Notify`'s `epoch`), whichever commit holds the wait;
//! - everything idempotent it held (definitions, deletes, delivery marks) is replayed, in
//!   order, at the start of the next commit;
//! - if sled was touched, sled is reopened before the next commit (sled 0.34 refuses every
//!   write after an I/O error until it is reopened), at most every [`REOPEN_EVERY`] and only
//!   once the disk has [`REOPEN_MIN_FREE`] free, so publishing resumes once there is room.

use crate::metrics::Counter;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info};

use super::durable::SledFiles;
use super::gate::Gate;
use super::records::{self, MessageKey};
use super::segments::{Segments, EXTERNAL_BODY_MIN};
use super::{open_sled, DbSlot, Op, SyncDone};

/// Ops taken per commit at most (bounds a commit's memory and latency).
const MAX_OPS: usize = 64 * 1024;
/// Records a prefix delete removes per commit (about 3 ms of sled's time here).
const DELETE_CHUNK: usize = 512;
/// A broken sled is reopened at most this often...
const REOPEN_EVERY: Duration = Duration::from_millis(250);
/// ... and only with this much free space on its filesystem.
const REOPEN_MIN_FREE: u64 = 4 << 20;
/// Ops kept for replay after failed commits; past this, message deletes are dropped (the
/// messages may come back after a restart: at-least-once) so a long outage stays bounded.
const MAX_REPLAY: usize = 1 << 20;

/// What the writer thread starts with.
pub(super) struct Setup {
    pub slot: Arc<DbSlot>,
    pub files: SledFiles,
    pub sled_dir: PathBuf,
    pub cache_bytes: u64,
    pub rx: Receiver<Op>,
    pub backlog: Arc<Gate>,
    pub definitions: Arc<Gate>,
    pub epoch: Arc<AtomicU64>,
    pub segments: Segments,
}

pub(super) fn run(setup: Setup) {
    let Setup {
        slot,
        files,
        sled_dir,
        cache_bytes,
        rx,
        backlog,
        definitions,
        epoch,
        segments,
    } = setup;
    let db = slot.read().clone();
    let mut w = Writer {
        db,
        files: Some(files),
        slot,
        sled_dir,
        cache_bytes,
        broken: false,
        last_reopen: None,
        segments,
        releases: Vec::new(),
        backlog,
        definitions,
        taken: 0,
        taken_definitions: 0,
        batch: sled::Batch::default(),
        dirty: false,
        applied: false,
        kept: Vec::new(),
        replay: Vec::new(),
        carry: Vec::new(),
        finish: false,
        notify: Vec::new(),
        barriers: Vec::new(),
        delivered: HashMap::new(),
        ok: true,
        unsynced: false,
        epoch: epoch.load(Ordering::Acquire),
        epoch_shared: epoch,
        failures: 0,
        last_logged: None,
        value: Vec::new(),
    };
    let mut ops = Vec::with_capacity(1024);
    // Collection rounds owed to sled's garbage, two per op applied (see `reclaim`).
    let mut owed = 0usize;
    loop {
        let first = loop {
            match rx.try_recv() {
                Ok(op) => break Some(op),
                Err(TryRecvError::Disconnected) => break None,
                // Deletes carried over: commit the next chunk rather than wait.
                Err(TryRecvError::Empty) if !w.carry.is_empty() => break Some(Op::Carry),
                // A slice at a time: an op that comes meanwhile waits for one slice only.
                Err(TryRecvError::Empty) if owed >= RECLAIM_FROM => {
                    reclaim(RECLAIM_SLICE);
                    owed -= RECLAIM_SLICE;
                    // Under the mark is what steady traffic leaves, and sled's own pins
                    // collect that: only a burst's excess is paid.
                    if owed < RECLAIM_FROM {
                        owed = 0;
                    }
                }
                Err(TryRecvError::Empty) => break rx.recv().ok(),
            }
        };
        let Some(first) = first else { break };
        w.take(&first);
        ops.push(first);
        while ops.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(op) => {
                    w.take(&op);
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        owed += 2 * ops.len();
        if w.commit(&mut ops) {
            break;
        }
        // During a burst, too: what the burst leaves uncollected until it ends is RSS the
        // allocator keeps afterwards (100,000 queues: 3.3 KB each, 2.4 KB with this).
        if owed >= BURST_FROM {
            reclaim(RECLAIM_SLICE);
            owed -= RECLAIM_SLICE;
        }
    }
    debug!("store writer stopped");
}

/// Rounds owed (4,096 ops) from which an idle writer collects sled's garbage.
const RECLAIM_FROM: usize = 8192;
/// Rounds owed past which a busy writer pays a slice after each commit.
const BURST_FROM: usize = RECLAIM_FROM;
/// Collection rounds between two looks at the channel.
const RECLAIM_SLICE: usize = 512;

/// sled frees the nodes a write replaces through crossbeam-epoch, which runs a few bags of
/// deferred frees each time a thread pins, once every thread has moved on. A burst of
/// writes followed by quiet leaves them all waiting: 100,000 queues declared by a
/// pipelining client held 4.5 KB of heap each (6.3 KB in all instead of 1.8) until later
/// writes happened to collect it. So a writer about to wait, after many ops, flushes its
/// bag and collects, two rounds per op (each round frees at most 8 bags of 64).
fn reclaim(rounds: usize) {
    for _ in 0..rounds {
        crossbeam_epoch::pin().flush();
    }
}

struct Writer {
    /// `None` while sled is being reopened (or could not be).
    db: Option<sled::Db>,
    files: Option<SledFiles>,
    /// The handle readers use; replaced when sled is reopened.
    slot: Arc<DbSlot>,
    sled_dir: PathBuf,
    cache_bytes: u64,
    /// sled saw an I/O error (or a commit that touched it failed): reopen before writing.
    broken: bool,
    last_reopen: Option<Instant>,
    segments: Segments,
    /// Segments that lost a body in this commit (released once it is synced).
    releases: Vec<u64>,
    /// The store's count of message bytes not yet applied (see `Store::backlog`).
    backlog: Arc<Gate>,
    /// ... and of definition ops.
    definitions: Arc<Gate>,
    /// Backlog taken off the channel for this commit (see `Op::cost`), and definitions.
    taken: usize,
    taken_definitions: usize,
    batch: sled::Batch,
    /// `batch` holds something.
    dirty: bool,
    /// Something of this commit reached sled (so a failure leaves sled changed).
    applied: bool,
    /// This commit's idempotent ops, replayed if it fails.
    kept: Vec<Op>,
    /// Ops of failed commits, replayed first by the next one.
    replay: Vec<Op>,
    /// Prefix deletes left unfinished by [`DELETE_CHUNK`], continued by the next commit.
    carry: Vec<Op>,
    /// This commit holds a barrier or a stop: carried deletes are finished in it.
    finish: bool,
    notify: Vec<(u64, SyncDone)>,
    barriers: Vec<Sender<bool>>,
    delivered: HashMap<u64, u64>,
    /// Everything in this commit so far succeeded.
    ok: bool,
    /// Something was applied since the last sync.
    unsynced: bool,
    /// Failed commits so far (shared: connections read it when a batch starts).
    epoch: u64,
    epoch_shared: Arc<AtomicU64>,
    /// Failures since the last one logged, and when that was.
    failures: u64,
    last_logged: Option<Instant>,
    value: Vec<u8>,
}

impl Writer {
    /// Counts `op` as taken off the channel (replayed ops were counted when they first came).
    fn take(&mut self, op: &Op) {
        self.taken += op.cost();
        self.taken_definitions += usize::from(op.is_definition());
    }

    /// Commits `ops` (drained), after whatever failed commits left to replay; true if a
    /// stop was asked for.
    fn commit(&mut self, ops: &mut Vec<Op>) -> bool {
        let started = Instant::now();
        let n = ops.len();
        let mut all = std::mem::take(&mut self.replay);
        all.append(&mut self.carry);
        all.append(ops);
        self.finish = all.iter().any(|op| matches!(op, Op::Barrier(_) | Op::Stop));
        if !self.ensure_open() {
            self.ok = false;
        }
        // A message written and deleted (acked) within one commit never touches the disk.
        let cancelled = cancelled_pairs(&all);
        self.segments.begin();
        let mut stop = false;
        for op in all {
            if self.step(op, &cancelled) {
                stop = true;
                break;
            }
        }
        if self.ok {
            for (&qid, &seq) in &self.delivered {
                self.batch
                    .insert(&records::delivered_key(qid)[..], &seq.to_be_bytes()[..]);
                self.dirty = true;
            }
            self.apply();
        }
        if self.ok && std::mem::take(&mut self.unsynced) {
            self.sync();
        }
        self.backlog.taken(std::mem::take(&mut self.taken));
        self.definitions
            .taken(std::mem::take(&mut self.taken_definitions));
        let ok = std::mem::replace(&mut self.ok, true);
        let touched_sled = std::mem::take(&mut self.applied);
        if ok {
            for segment in self.releases.drain(..) {
                self.segments.release(segment);
            }
            self.delivered.clear();
            self.kept.clear();
        } else {
            self.epoch += 1;
            self.epoch_shared.store(self.epoch, Ordering::Release);
            self.segments.rollback();
            self.releases.clear();
            self.batch = sled::Batch::default();
            self.dirty = false;
            self.unsynced = false;
            // Unsynced changes in sled's memory must not reach the disk by a later flush
            // (their bodies were just cut back out): reopen, which forgets them.
            if touched_sled {
                self.broken = true;
            }
            self.replay = std::mem::take(&mut self.kept);
            for (qid, seq) in self.delivered.drain() {
                self.replay.push(Op::Delivered { qid, seq });
            }
            if self.replay.len() > MAX_REPLAY {
                let before = self.replay.len();
                self.replay
                    .retain(|op| !matches!(op, Op::DeleteMessage { .. }));
                error!(
                    dropped = before - self.replay.len(),
                    "the store has failed for long: message deletes dropped (those messages \
                     may be delivered again after a restart)"
                );
            }
        }
        for (epoch, done) in self.notify.drain(..) {
            done(ok && epoch == self.epoch);
        }
        for b in self.barriers.drain(..) {
            let _ = b.send(ok);
        }
        metrics::histogram!(crate::metrics::STORE_FLUSH_SECONDS)
            .record(started.elapsed().as_secs_f64());
        crate::metrics::count(Counter::StoreOps, n as u64);
        stop
    }

    /// One op of a commit; true if it asks the writer to stop. Once the commit has failed,
    /// nothing more is written, but idempotent ops are still kept for the replay.
    fn step(&mut self, op: Op, cancelled: &HashSet<MessageKey>) -> bool {
        match op {
            Op::PutMessage {
                key,
                message,
                persistent,
                expires_at,
            } => {
                if !self.ok || cancelled.contains(&key) {
                    return false;
                }
                self.value.clear();
                let flags = if persistent { records::PERSISTENT } else { 0 };
                let external = if message.body().len() >= EXTERNAL_BODY_MIN {
                    match self.segments.append(message.body()) {
                        Ok(r) => Some(r),
                        Err(e) => {
                            self.fail(format_args!("cannot append to a body segment: {e}"));
                            return false;
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
                if cancelled.contains(&key) {
                    return false;
                }
                if self.ok {
                    if external {
                        self.note_release(&key);
                    }
                    self.batch.remove(&key[..]);
                    self.dirty = true;
                }
                self.kept.push(op);
            }
            Op::DeleteMessages { qid, from, to } => {
                if self.apply() {
                    let range = records::message_key(qid, from)..records::message_key(qid, to);
                    if let Some(db) = self.db.clone() {
                        self.delete_records(db.range(range), usize::MAX);
                    }
                }
                self.kept.push(op);
            }
            Op::DeletePrefix(ref prefix) => {
                let limit = if self.finish {
                    usize::MAX
                } else {
                    DELETE_CHUNK
                };
                let mut more = false;
                if self.apply() {
                    if let Some(db) = self.db.clone() {
                        more = self.delete_records(db.scan_prefix(prefix), limit);
                    }
                }
                if more && self.ok {
                    // Nothing later falls under the prefix (see `Op::DeletePrefix`): the
                    // rest may follow the ops after it.
                    self.carry.push(Op::DeletePrefix(prefix.clone()));
                }
                self.kept.push(op);
            }
            Op::Carry => {}
            Op::Delivered { qid, seq } => {
                let e = self.delivered.entry(qid).or_insert(seq);
                *e = (*e).max(seq);
            }
            Op::Put { ref key, ref value } => {
                if self.ok {
                    self.batch.insert(&key[..], &value[..]);
                    self.dirty = true;
                }
                self.kept.push(op);
            }
            Op::Delete(ref key) => {
                // A queue deleted later in this commit must not get its watermark back.
                if let Some(qid) = delivered_qid(key) {
                    self.delivered.remove(&qid);
                }
                if self.ok {
                    self.batch.remove(&key[..]);
                    self.dirty = true;
                }
                self.kept.push(op);
            }
            Op::Notify { epoch, done } => self.notify.push((epoch, done)),
            Op::Barrier(tx) => self.barriers.push(tx),
            Op::Stop => return true,
        }
        false
    }

    /// Reopens sled if an earlier failure left it refusing writes; false if it is still
    /// unusable (the commit then fails and is replayed later).
    fn ensure_open(&mut self) -> bool {
        if !self.broken {
            return true;
        }
        if self.last_reopen.is_some_and(|t| t.elapsed() < REOPEN_EVERY) {
            return false;
        }
        self.last_reopen = Some(Instant::now());
        if fs2::available_space(&self.sled_dir).is_ok_and(|free| free < REOPEN_MIN_FREE) {
            return false;
        }
        // sled holds a lock on its file: every handle must go before it can open again.
        self.db = None;
        self.files = None;
        *self.slot.write() = None;
        match open_sled(&self.sled_dir, self.cache_bytes) {
            Ok((db, files)) => {
                *self.slot.write() = Some(db.clone());
                self.db = Some(db);
                self.files = Some(files);
                self.broken = false;
                info!(
                    path = %self.sled_dir.display(),
                    "store reopened after a failure; writes resume"
                );
                true
            }
            Err(e) => {
                self.fail(format_args!("cannot reopen the store: {e}"));
                false
            }
        }
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

    /// A sled call failed: it refuses writes until reopened.
    fn sled_failed(&mut self, what: std::fmt::Arguments<'_>) {
        self.broken = true;
        self.fail(what);
    }

    /// Applies the pending batch; returns false if the commit has failed (now or before).
    fn apply(&mut self) -> bool {
        if !self.ok {
            return false;
        }
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
        let Some(db) = self.db.as_ref() else {
            self.ok = false;
            return false;
        };
        self.applied = true;
        match db.apply_batch(batch) {
            Ok(()) => {
                self.unsynced = true;
                true
            }
            Err(e) => {
                self.sled_failed(format_args!("store write failed: {e}"));
                false
            }
        }
    }

    /// Segments `fdatasync` (and their directory), sled's flush, then `fdatasync` of
    /// `sled/db`: only then is the commit durable.
    fn sync(&mut self) {
        if let Err(e) = self.segments.sync() {
            self.fail(format_args!("body segment sync failed: {e}"));
            return;
        }
        let Some(db) = self.db.as_ref() else {
            self.ok = false;
            return;
        };
        if let Err(e) = db.flush() {
            self.sled_failed(format_args!("store flush failed: {e}"));
            return;
        }
        let synced = match self.files.as_mut() {
            Some(f) => f.sync(),
            None => Err(std::io::Error::other("the store's files are not open")),
        };
        if let Err(e) = synced {
            self.sled_failed(format_args!("store sync failed: {e}"));
        }
    }

    /// A message record about to be deleted: its body's segment loses a live body.
    fn note_release(&mut self, key: &[u8]) {
        let Some(db) = self.db.as_ref() else { return };
        if let Ok(Some(v)) = db.get(key) {
            if let Some(segment) = records::external_segment(&v) {
                self.releases.push(segment);
            }
        }
    }

    /// Deletes the records `items` yields, `limit` at most (releasing segment bodies of
    /// message records); true if it stopped at `limit` with more to come.
    fn delete_records(
        &mut self,
        items: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
        limit: usize,
    ) -> bool {
        let mut batch = sled::Batch::default();
        let mut releases = Vec::new();
        let mut items = items.peekable();
        let mut n = 0;
        while n < limit {
            let Some(item) = items.next() else { break };
            n += 1;
            match item {
                Ok((k, v)) => {
                    if k.first() == Some(&records::MESSAGE) {
                        if let Some(segment) = records::external_segment(&v) {
                            releases.push(segment);
                        }
                    }
                    batch.remove(k);
                }
                Err(e) => {
                    self.sled_failed(format_args!("store scan failed: {e}"));
                    return false;
                }
            }
        }
        let more = n == limit && items.peek().is_some();
        let Some(db) = self.db.as_ref() else {
            return false;
        };
        self.applied = true;
        match db.apply_batch(batch) {
            Ok(()) => {
                self.unsynced = true;
                self.releases.extend(releases);
                more
            }
            Err(e) => {
                self.sled_failed(format_args!("store delete failed: {e}"));
                false
            }
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::time::{Duration, Instant};

    use amq_protocol::types::FieldTable;

    use super::DELETE_CHUNK;
    use crate::store::records::{self, DestKind};
    use crate::store::{Store, StoreConfig};

    fn bindings_to(store: &Store, qid: u64) -> usize {
        let db = store.db.read().clone().unwrap();
        db.scan_prefix(records::bindings_to_prefix(DestKind::Queue, qid))
            .count()
    }

    /// A queue with `n` bindings (from exchange 1), and another queue (`qid + 1`) with one.
    fn store_with_bindings(qid: u64, n: usize) -> (tempfile::TempDir, std::sync::Arc<Store>) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            cache_bytes: 16 << 20,
        };
        let (store, _) = Store::open(dir.path(), &config, &|_| 0).unwrap();
        let none = FieldTable::default();
        for i in 0..n {
            store.put_binding(DestKind::Queue, qid, 1, &format!("k{i}"), &none);
        }
        store.put_binding(DestKind::Queue, qid + 1, 1, "other", &none);
        assert!(store.sync());
        assert_eq!(bindings_to(&store, qid), n);
        (dir, store)
    }

    #[test]
    fn a_prefix_delete_over_several_commits_finishes_without_more_ops() {
        let (_dir, store) = store_with_bindings(5, 3 * DELETE_CHUNK + 7);
        store.delete_queue(5, true);
        // No barrier and nothing else sent: the writer must carry on by itself.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bindings_to(&store, 5) > 0 {
            assert!(Instant::now() < deadline, "{} left", bindings_to(&store, 5));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(bindings_to(&store, 6), 1, "another queue's binding stays");
    }

    #[test]
    fn a_barrier_after_a_prefix_delete_covers_all_of_it() {
        let (_dir, store) = store_with_bindings(5, 3 * DELETE_CHUNK + 7);
        store.delete_queue(5, true);
        assert!(store.sync());
        assert_eq!(bindings_to(&store, 5), 0);
        assert_eq!(bindings_to(&store, 6), 1);
    }
}
