//! The group-commit writer: one thread that owns every write to sled and the queues' logs.
//!
//! It blocks for the first op, then takes everything else already waiting (no timer: an idle
//! broker commits one op at once; a busy one commits thousands per sync, because ops pile up
//! while the previous sync runs). One commit = one `pwrite` per queue log written + one sync
//! (each written log segment `fdatasync`ed, or the journal; then `logs/meta` if a log record
//! changed; then, only if the commit changed a definition, its `apply_batch`, sled `flush`
//! and `fdatasync` of `sled/db`: see `durable`), then the connections waiting on it are told. An op that must see the database as it is (a range
//! or prefix delete) first applies what came before it, so order is kept; a prefix delete
//! may take several commits (`deletes`).
//!
//! A commit that fails (a full disk, an I/O error) loses nothing it should keep:
//! - the message writes it held are dropped (cut back out of their logs), and
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
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, error, info};

mod deletes;

use super::durable::SledFiles;
use super::gate::Gate;
use super::log::Logs;
use super::reclaim::Reclaim;
use super::{open_sled, DbSlot, Op, SyncDone};
use deletes::DELETE_CHUNK;

/// Ops taken per commit at most (bounds a commit's memory and latency).
const MAX_OPS: usize = 64 * 1024;
/// A broken sled is reopened at most this often...
const REOPEN_EVERY: Duration = Duration::from_millis(250);
/// ... and only with this much free space on its filesystem.
const REOPEN_MIN_FREE: u64 = 4 << 20;
/// Ops kept for replay after failed commits; past this, message deletes are dropped (the
/// messages may come back after a restart: at-least-once) so a long outage stays bounded.
const MAX_REPLAY: usize = 1 << 20;
/// An idle writer looks this often for drained logs whose last segment can go.
const IDLE_SWEEP: Duration = Duration::from_secs(1);

/// A message written and settled in one commit (never touches the disk).
type MessageId = (u64, u64);

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
    pub logs: Logs,
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
        logs,
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
        logs,
        idle: false,
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
        notify: Vec::new(),
        barriers: Vec::new(),
        delivered: HashMap::new(),
        ok: true,
        unsynced: false,
        epoch: epoch.load(Ordering::Acquire),
        epoch_shared: epoch,
        failures: 0,
        last_logged: None,
    };
    let mut ops = Vec::with_capacity(1024);
    let mut garbage = Reclaim::default();
    loop {
        let first = loop {
            match rx.try_recv() {
                Ok(op) => break Some(Some(op)),
                Err(TryRecvError::Disconnected) => break None,
                // Deletes carried over: commit their next chunk rather than wait.
                Err(TryRecvError::Empty) if !w.carry.is_empty() => break Some(None),
                Err(TryRecvError::Empty) if garbage.pay_slice() => {}
                Err(TryRecvError::Empty) => match rx.recv_timeout(IDLE_SWEEP) {
                    Ok(op) => break Some(Some(op)),
                    // Idle: a drained log's last segment can go (see `Logs::records`).
                    Err(RecvTimeoutError::Timeout) if w.logs.idle_work() => {
                        w.idle = true;
                        break Some(None);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break None,
                },
            }
        };
        // `Some(None)`: nothing came, but carried deletes are due.
        let Some(first) = first else { break };
        if let Some(op) = first {
            w.take(&op);
            ops.push(op);
        }
        while ops.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(op) => {
                    w.take(&op);
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        garbage.owe(ops.len());
        if w.commit(&mut ops) {
            break;
        }
        garbage.pay_slice();
    }
    debug!("store writer stopped");
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
    logs: Logs,
    /// This commit runs because the writer was idle: drained logs give back their last
    /// segment whatever its size.
    idle: bool,
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
        if !self.ensure_open() {
            self.ok = false;
        }
        // A message written and deleted (acked) within one commit never touches the disk.
        let cancelled = cancelled_pairs(&all);
        let mut stop = false;
        for op in all {
            if self.step(op, &cancelled) {
                stop = true;
                break;
            }
        }
        // A barrier or a stop answers for everything sent before it: carried deletes too.
        if stop || !self.barriers.is_empty() {
            self.finish_carried();
        }
        if self.ok {
            for (&qid, &seq) in &self.delivered {
                self.logs.delivered(qid, seq);
            }
            self.apply();
        }
        let sled_unsynced = std::mem::take(&mut self.unsynced);
        if self.ok && (sled_unsynced || self.logs.written()) {
            self.sync(sled_unsynced);
        }
        self.backlog.taken(std::mem::take(&mut self.taken));
        self.definitions
            .taken(std::mem::take(&mut self.taken_definitions));
        let ok = std::mem::replace(&mut self.ok, true);
        let touched_sled = std::mem::take(&mut self.applied);
        let idle = std::mem::take(&mut self.idle);
        if ok {
            self.logs.committed(idle);
            self.logs.checkpoint_if_due(idle);
            self.delivered.clear();
            self.kept.clear();
        } else {
            self.epoch += 1;
            self.epoch_shared.store(self.epoch, Ordering::Release);
            self.logs.rollback();
            self.batch = sled::Batch::default();
            self.dirty = false;
            self.unsynced = false;
            // Unsynced changes in sled's memory must not reach the disk by a later flush
            // (the extents of records just cut back out of the logs): reopen, which
            // forgets them.
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
    fn step(&mut self, op: Op, cancelled: &HashSet<MessageId>) -> bool {
        match op {
            Op::PutMessage {
                qid,
                seq,
                ref message,
                expires_at,
            } => {
                if !self.ok || cancelled.contains(&(qid, seq)) {
                    return false;
                }
                if let Err(e) = self.logs.append(qid, seq, message, expires_at) {
                    self.fail(format_args!("cannot append to a queue's log: {e}"));
                }
            }
            Op::DeleteMessage { qid, seq, bytes } => {
                if cancelled.contains(&(qid, seq)) {
                    return false;
                }
                self.logs.settle(qid, seq, bytes);
                self.kept.push(op);
            }
            Op::DeleteMessages { qid, from, to } => {
                if let Err(e) = self.logs.settle_range(qid, from, to) {
                    self.fail(format_args!("cannot purge a queue's log: {e}"));
                }
                self.kept.push(op);
            }
            Op::DropLog(qid) => {
                // A queue deleted later in this commit must not get its watermark back.
                self.delivered.remove(&qid);
                self.logs.drop_queue(qid);
                self.kept.push(op);
            }
            Op::DeletePrefix(ref prefix) => {
                self.delete_prefix(prefix, DELETE_CHUNK);
                self.kept.push(op);
            }
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

    /// Writes the logs and applies the pending batch; returns false if the commit has
    /// failed (now or before).
    fn apply(&mut self) -> bool {
        if !self.ok {
            return false;
        }
        // Records first: an extent must never say more than its segment holds.
        if let Err(e) = self.logs.write_pending() {
            self.fail(format_args!("cannot write a queue's log: {e}"));
            return false;
        }
        self.logs.records(self.idle);
        if !self.dirty {
            return true;
        }
        self.dirty = false;
        let batch = std::mem::take(&mut self.batch);
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

    /// Log segments `fdatasync` (and their directories), then, if `sled` (the commit
    /// wrote to it), sled's flush and `fdatasync` of `sled/db`: only then is the commit
    /// durable. A commit of appends alone (publishes, no consumer) skips sled entirely.
    fn sync(&mut self, sled: bool) {
        if let Err(e) = self.logs.sync() {
            self.fail(format_args!("queue log sync failed: {e}"));
            return;
        }
        if !sled {
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
}

/// Messages both written and settled among `ops`.
fn cancelled_pairs(ops: &[Op]) -> HashSet<MessageId> {
    // A commit of publishes alone (no consumer yet) cancels nothing: skip hashing every put.
    if !ops.iter().any(|op| matches!(op, Op::DeleteMessage { .. })) {
        return HashSet::new();
    }
    let mut puts = HashSet::new();
    let mut both = HashSet::new();
    for op in ops {
        match op {
            Op::PutMessage { qid, seq, .. } => {
                puts.insert((*qid, *seq));
            }
            Op::DeleteMessage { qid, seq, .. } if puts.contains(&(*qid, *seq)) => {
                both.insert((*qid, *seq));
            }
            _ => {}
        }
    }
    both
}
