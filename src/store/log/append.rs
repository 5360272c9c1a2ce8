//! The writer's side of the queues' logs: appends, settles, and the segment records that
//! describe them. Only the store's writer thread touches this.
//!
//! One commit: [`Logs::append`]s buffer records per queue; [`Logs::write_pending`] writes
//! each queue's buffer with one `pwrite` at the length its active segment has on file
//! (never in append mode: a write that fails part way is cut back, so later records land
//! where their extent says); [`Logs::records`] puts the changed extents and settled sets
//! in `logs/meta` ([`MetaLog`], written at the sync) and deletes the segments nothing live
//! is left in; [`Logs::sync`] `fdatasync`s every segment written, `fsync`s the directories
//! that gained or lost a file, then writes and syncs `logs/meta`; then [`Logs::committed`] or, if the
//! commit failed, [`Logs::rollback`], which cuts every segment back to where the commit
//! found it and remembers the seqs it did not write (their acks must not count).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use tracing::warn;

use super::journal::Journal;
use super::meta::MetaLog;
use super::read::SegmentFile;
use super::{
    encode_record, queue_dir, segment_path, Extent, Settled, SettledRecord, RECYCLE_ACTIVE,
    SEGMENT_SIZE,
};
use crate::message::Message;
use crate::store::durable::sync_dir;
use crate::store::records;

/// A queue's buffer is written once it holds this much (a commit's memory stays bounded).
const PENDING_MAX: usize = 4 << 20;

/// One segment as the writer knows it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Seg {
    pub extent: Extent,
    pub settled: SettledRecord,
}

impl Seg {
    fn drained(&self) -> bool {
        self.settled.count >= self.extent.count
    }
}

/// The segment being appended to.
struct Active {
    first: u64,
    file: File,
    /// Bytes on file (the extent's `len` also counts what is buffered).
    written: u64,
    /// Written since the last sync.
    unsynced: bool,
    /// Appended to since its extent was last recorded. An active segment's extent is
    /// recorded only when the writer goes idle (or the segment fills): recovery scans the
    /// segment past its recorded length anyway, and a commit of appends alone then costs
    /// one `fdatasync` (the segment's), not two (and no `logs/meta` write).
    unrecorded: bool,
}

/// One durable queue's log.
#[derive(Default)]
pub(crate) struct QueueLog {
    segs: BTreeMap<u64, Seg>,
    active: Option<Active>,
    pending: Vec<u8>,
    /// Segments this commit appended to: their extent before it, and whether it made them.
    begun: Vec<(u64, Extent, bool)>,
    /// Files written this commit (synced by it; the active one stays open).
    unsynced: Vec<(u64, File)>,
    /// Seqs a failed commit did not write: settling them must not count.
    unwritten: Settled,
    /// In `Logs::touched` (appended to by the commit under way).
    in_commit: bool,
}

impl QueueLog {
    /// A queue's log as recovery found it; `active`: its last segment, open for appends.
    pub(crate) fn recovered(segs: BTreeMap<u64, Seg>, active: Option<(u64, File, u64)>) -> Self {
        QueueLog {
            segs,
            active: active.map(|(first, file, written)| Active {
                first,
                file,
                written,
                unsynced: false,
                unrecorded: true,
            }),
            ..QueueLog::default()
        }
    }
}

pub(crate) struct Logs {
    root: PathBuf,
    queues: HashMap<u64, QueueLog>,
    /// Queues appended to in this commit.
    touched: Vec<u64>,
    /// Segments whose settled set changed (its record is rewritten).
    dirty: HashSet<(u64, u64)>,
    /// ... and those of them this commit's batch holds (dirty again if it fails).
    recorded: Vec<(u64, u64)>,
    /// Queue directories that gained or lost a file, and whether `root` did.
    dirs_unsynced: HashSet<u64>,
    root_unsynced: bool,
    /// Where a commit that appends to more than one queue makes them durable at once.
    journal: Journal,
    /// The segments' extents and settled sets, the queues' delivered watermarks.
    meta: MetaLog,
}

impl Logs {
    /// The writer's logs (`queues` and `meta` as recovery found them; the journal already
    /// replayed).
    pub(crate) fn new(
        root: PathBuf,
        queues: HashMap<u64, QueueLog>,
        meta: MetaLog,
    ) -> std::io::Result<Logs> {
        let journal = Journal::open(&root)?;
        Ok(Logs {
            journal,
            meta,
            root,
            queues,
            touched: Vec::new(),
            dirty: HashSet::new(),
            recorded: Vec::new(),
            dirs_unsynced: HashSet::new(),
            root_unsynced: false,
        })
    }

    /// Buffers the record of `seq` (higher than any of this queue's before it).
    pub(crate) fn append(
        &mut self,
        qid: u64,
        seq: u64,
        message: &Message,
        expires_at: u64,
    ) -> std::io::Result<()> {
        let full = self.queues.get(&qid).is_some_and(|q| {
            q.active
                .as_ref()
                .and_then(|a| q.segs.get(&a.first))
                .is_some_and(|s| s.extent.len >= SEGMENT_SIZE)
        });
        if full {
            self.write_queue(qid, false)?;
            if let Some(q) = self.queues.get_mut(&qid) {
                if let Some(a) = q.active.take() {
                    if a.unsynced {
                        q.unsynced.push((a.first, a.file));
                    }
                }
            }
        }
        if self.queues.get(&qid).map_or(true, |q| q.active.is_none()) {
            self.start_segment(qid, seq)?;
        }
        let Some(q) = self.queues.get_mut(&qid) else {
            return Err(std::io::Error::other("no log"));
        };
        let Some(first) = q.active.as_ref().map(|a| a.first) else {
            return Err(std::io::Error::other("no active segment"));
        };
        let seg = q.segs.entry(first).or_default();
        if !q.begun.iter().any(|(f, _, _)| *f == first) {
            q.begun.push((first, seg.extent, false));
        }
        // A flag, not a search of `touched`: a commit over 1,000 queues appends to each.
        if !q.in_commit {
            q.in_commit = true;
            self.touched.push(qid);
        }
        if let Some(a) = q.active.as_mut() {
            a.unrecorded = true;
        }
        let before = q.pending.len();
        encode_record(seq, message, expires_at, &mut q.pending);
        seg.extent.len += (q.pending.len() - before) as u64;
        seg.extent.count += 1;
        seg.extent.bytes += message.size() as u64;
        seg.extent.end = seg.extent.end.max(seq + 1);
        if q.pending.len() >= PENDING_MAX {
            self.write_queue(qid, false)?;
        }
        Ok(())
    }

    /// Makes `<seq>.log` the queue's active segment (and its directory, the first time).
    fn start_segment(&mut self, qid: u64, seq: u64) -> std::io::Result<()> {
        let dir = queue_dir(&self.root, qid);
        if !self.queues.contains_key(&qid) || !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            self.root_unsynced = true;
        }
        let q = self.queues.entry(qid).or_default();
        let file = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(segment_path(&dir, seq))?;
        q.segs.insert(seq, Seg::default());
        q.begun.push((seq, Extent::default(), true));
        q.active = Some(Active {
            first: seq,
            file,
            written: 0,
            unsynced: false,
            unrecorded: true,
        });
        self.dirs_unsynced.insert(qid);
        Ok(())
    }

    /// Writes every queue's buffered records (before the `logs/meta` records that describe them).
    /// A commit appending to more than one queue journals them: one `fdatasync` of the
    /// journal then covers every segment (a checkpoint syncs those later, see `journal`).
    pub(crate) fn write_pending(&mut self) -> std::io::Result<()> {
        let journal = self.touched.len() > 1;
        for i in 0..self.touched.len() {
            self.write_queue(self.touched[i], journal)?;
        }
        Ok(())
    }

    /// `journal`: the bytes go to the journal too, and the segment is not synced by this
    /// commit; else the segment is.
    fn write_queue(&mut self, qid: u64, journal: bool) -> std::io::Result<()> {
        let Some(q) = self.queues.get_mut(&qid) else {
            return Ok(());
        };
        let Some(a) = q.active.as_mut() else {
            return Ok(());
        };
        if q.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = a.file.write_all_at(&q.pending, a.written) {
            // Cut a partial write back, so the next record lands where its extent says.
            let _ = a.file.set_len(a.written);
            return Err(e);
        }
        if journal {
            self.journal.add(qid, a.first, a.written, &q.pending)?;
        } else {
            a.unsynced = true;
        }
        a.written += q.pending.len() as u64;
        q.pending.clear();
        Ok(())
    }

    /// A message of the log was settled (acked, rejected, expired, dropped); `bytes`: its
    /// body size.
    pub(crate) fn settle(&mut self, qid: u64, seq: u64, bytes: u64) {
        let Some(q) = self.queues.get_mut(&qid) else {
            return;
        };
        if q.unwritten.contains(seq) {
            return;
        }
        let Some((&first, seg)) = q.segs.range_mut(..=seq).next_back() else {
            return;
        };
        if seq >= seg.extent.end {
            return;
        }
        if seg.settled.seqs.insert(seq) {
            seg.settled.count += 1;
            seg.settled.bytes += bytes;
            self.dirty.insert((qid, first));
        }
    }

    /// Every message of the log in `from..to` is settled (a purge): whole segments at once,
    /// the one `from` falls in by reading its records.
    pub(crate) fn settle_range(&mut self, qid: u64, from: u64, to: u64) -> std::io::Result<()> {
        self.write_queue(qid, false)?;
        let dir = queue_dir(&self.root, qid);
        let Some(q) = self.queues.get_mut(&qid) else {
            return Ok(());
        };
        for (&first, seg) in q.segs.range_mut(..to) {
            if seg.extent.end <= from {
                continue;
            }
            if first >= from && seg.extent.end <= to {
                seg.settled.seqs.insert_range(first, seg.extent.end);
                seg.settled.count = seg.extent.count;
                seg.settled.bytes = seg.extent.bytes;
            } else {
                let mut file = SegmentFile::open(&dir, first)?;
                let mut off = 0;
                while off < seg.extent.len {
                    let super::read::Found::Record { seq, payload, size } =
                        file.record_at(off, true)?
                    else {
                        break;
                    };
                    off += size;
                    if (from..to).contains(&seq)
                        && !q.unwritten.contains(seq)
                        && seg.settled.seqs.insert(seq)
                    {
                        let body = records::decode_message(payload).map_or(0, |m| m.body.len());
                        seg.settled.count += 1;
                        seg.settled.bytes += body as u64;
                    }
                }
            }
            self.dirty.insert((qid, first));
        }
        Ok(())
    }

    /// The queue is gone: its log goes with it, and its records.
    pub(crate) fn drop_queue(&mut self, qid: u64) {
        for kind in [records::EXTENT, records::SETTLED, records::DELIVERED] {
            self.meta.remove_prefix(&records::queue_prefix(kind, qid));
        }
        self.queues.remove(&qid);
        self.touched.retain(|&q| q != qid);
        self.dirty.retain(|&(q, _)| q != qid);
        self.dirs_unsynced.remove(&qid);
        let dir = queue_dir(&self.root, qid);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => self.root_unsynced = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(dir = %dir.display(), "cannot remove a queue's log: {e}"),
        }
    }

    /// Records the highest seq of `qid` delivered so far (its messages up to it come back
    /// redelivered after a restart).
    pub(crate) fn delivered(&mut self, qid: u64, seq: u64) {
        self.meta
            .put(&records::delivered_key(qid), &seq.to_be_bytes());
    }

    /// Records this commit's extents and settled sets, and deletes the segments left with
    /// nothing live (an active one only past [`RECYCLE_ACTIVE`], or at any size when
    /// `idle`). The file goes first (its directory synced before the records are written):
    /// a crash in between leaves records without a file, which recovery drops. When idle,
    /// a queue left with no segment loses its directory and watermark too.
    pub(crate) fn records(&mut self, idle: bool) {
        let mut segs: Vec<(u64, u64)> = self.dirty.drain().collect();
        self.recorded.extend_from_slice(&segs);
        // A segment appended to: its extent once it is no longer the active one.
        for &qid in &self.touched {
            if let Some(q) = self.queues.get(&qid) {
                let active = q.active.as_ref().map(|a| a.first);
                segs.extend(
                    q.begun
                        .iter()
                        .filter(|&&(f, _, _)| Some(f) != active)
                        .map(|&(f, _, _)| (qid, f)),
                );
            }
        }
        if idle {
            for (&qid, q) in &self.queues {
                segs.extend(q.active.as_ref().map(|a| (qid, a.first)));
            }
        }
        segs.sort_unstable();
        segs.dedup();
        let mut value = Vec::new();
        for (qid, first) in segs {
            let Some(q) = self.queues.get_mut(&qid) else {
                continue;
            };
            let Some(seg) = q.segs.get(&first) else {
                continue;
            };
            let active = q.active.as_ref().is_some_and(|a| a.first == first);
            let removable = seg.drained()
                && (!active
                    || (q.pending.is_empty() && (idle || seg.extent.len >= RECYCLE_ACTIVE)));
            let (extent_key, settled_key) = (
                records::segment_key(records::EXTENT, qid, first),
                records::segment_key(records::SETTLED, qid, first),
            );
            if removable {
                match std::fs::remove_file(segment_path(&queue_dir(&self.root, qid), first)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(qid, first, "cannot remove a drained log segment: {e}");
                        continue;
                    }
                }
                q.segs.remove(&first);
                q.unsynced.retain(|(f, _)| *f != first);
                q.begun.retain(|(f, _, _)| *f != first);
                if active {
                    q.active = None;
                }
                self.dirs_unsynced.insert(qid);
                self.meta.remove(&extent_key);
                self.meta.remove(&settled_key);
                continue;
            }
            self.meta.put(&extent_key, &seg.extent.encode());
            if let Some(a) = q.active.as_mut().filter(|a| a.first == first) {
                a.unrecorded = false;
            }
            if seg.settled.count > 0 {
                value.clear();
                seg.settled.encode(&mut value);
                self.meta.put(&settled_key, &value);
            }
        }
        if idle {
            self.forget_empty();
        }
    }

    /// Queues whose every segment is gone: their directory and watermark go too (nothing
    /// of theirs is left to come back redelivered), so a drained backlog leaves the data
    /// directory as it found it.
    fn forget_empty(&mut self) {
        let empty: Vec<u64> = self
            .queues
            .iter()
            .filter(|(_, q)| Self::is_empty(q))
            .map(|(&qid, _)| qid)
            .collect();
        for qid in empty {
            let dir = queue_dir(&self.root, qid);
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    warn!(dir = %dir.display(), "cannot remove a drained queue's log: {e}");
                    continue;
                }
            }
            self.queues.remove(&qid);
            self.dirs_unsynced.remove(&qid);
            self.root_unsynced = true;
            self.meta.remove(&records::delivered_key(qid));
        }
    }

    fn is_empty(q: &QueueLog) -> bool {
        q.segs.is_empty() && q.active.is_none() && q.pending.is_empty() && !q.in_commit
    }

    /// A sweep when idle has work: a drained active segment to delete, an active
    /// segment's extent to record, the journal to checkpoint.
    pub(crate) fn idle_work(&self) -> bool {
        self.journal.due(true)
            || self.meta.compaction_due(true)
            || self.queues.values().any(|q| {
                Self::is_empty(q)
                    || q.active.as_ref().is_some_and(|a| {
                        a.unrecorded
                            || q.segs
                                .get(&a.first)
                                .is_some_and(|s| s.extent.count > 0 && s.drained())
                    })
            })
    }

    /// This commit wrote to a segment, the journal or the records (it must be synced).
    pub(crate) fn written(&self) -> bool {
        !self.touched.is_empty()
            || !self.dirs_unsynced.is_empty()
            || self.root_unsynced
            || self.meta.changed()
    }

    /// `fdatasync` of the journal if this commit wrote to it, and of every segment written
    /// since the last sync and not journaled, then `fsync` of every directory that gained
    /// or lost a file.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        self.journal.sync()?;
        for &qid in &self.touched {
            if let Some(q) = self.queues.get_mut(&qid) {
                for (first, f) in &q.unsynced {
                    f.sync_data()?;
                    self.journal.synced(qid, *first);
                }
                if let Some(a) = q.active.as_mut().filter(|a| a.unsynced) {
                    a.file.sync_data()?;
                    a.unsynced = false;
                    self.journal.synced(qid, a.first);
                }
            }
        }
        for &qid in &self.dirs_unsynced {
            let dir = queue_dir(&self.root, qid);
            if dir.exists() {
                sync_dir(&dir)?;
            }
        }
        if self.root_unsynced {
            sync_dir(&self.root)?;
        }
        // Last: a record must not reach the disk before the bytes it describes.
        self.meta.sync()
    }

    /// The commit is durable (`idle`: the writer had nothing else to do).
    pub(crate) fn committed(&mut self, idle: bool) {
        self.meta.committed(idle);
        for qid in self.touched.drain(..) {
            if let Some(q) = self.queues.get_mut(&qid) {
                q.begun.clear();
                q.unsynced.clear();
                q.in_commit = false;
            }
        }
        self.dirs_unsynced.clear();
        self.root_unsynced = false;
        self.recorded.clear();
        self.journal.committed();
    }

    /// Between commits: empties the journal if it is long (or the writer idle), after
    /// syncing the segments it covers. A failure keeps it (it is tried again).
    pub(crate) fn checkpoint_if_due(&mut self, idle: bool) {
        if self.journal.due(idle) {
            if let Err(e) = self.journal.checkpoint() {
                warn!("cannot checkpoint the commit journal: {e}");
            }
        }
    }

    /// The commit failed: its records are cut back out of every segment it wrote, and its
    /// seqs are remembered as never written. Settles it held are replayed by the writer.
    pub(crate) fn rollback(&mut self) {
        self.journal.rollback();
        self.meta.rollback();
        self.dirty.extend(self.recorded.drain(..));
        let dir_of = |qid| queue_dir(&self.root, qid);
        for qid in std::mem::take(&mut self.touched) {
            let dir = dir_of(qid);
            let Some(q) = self.queues.get_mut(&qid) else {
                continue;
            };
            q.pending.clear();
            q.unsynced.clear();
            q.in_commit = false;
            for (first, before, created) in std::mem::take(&mut q.begun).into_iter().rev() {
                let end = q.segs.get(&first).map_or(before.end, |s| s.extent.end);
                q.unwritten.insert_range(before.end.max(first), end);
                let active = q.active.as_ref().is_some_and(|a| a.first == first);
                if created {
                    q.segs.remove(&first);
                    if active {
                        q.active = None;
                    }
                    let _ = std::fs::remove_file(segment_path(&dir, first));
                    continue;
                }
                if let Some(s) = q.segs.get_mut(&first) {
                    s.extent = Extent {
                        end: s.extent.end,
                        ..before
                    };
                }
                match q.active.as_mut().filter(|a| a.first == first) {
                    Some(a) => {
                        if a.file.set_len(before.len).is_ok() {
                            a.written = before.len;
                        } else {
                            q.active = None;
                        }
                    }
                    None => {
                        // A segment left full in this commit: cut it back by path.
                        let cut = OpenOptions::new()
                            .write(true)
                            .open(segment_path(&dir, first))
                            .and_then(|f| f.set_len(before.len));
                        if let Err(e) = cut {
                            warn!(qid, first, "cannot cut a failed commit out of a log: {e}");
                        }
                    }
                }
            }
        }
        // The directories' changes stay to be synced by the next commit.
    }
}
