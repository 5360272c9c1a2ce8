//! The commit journal, `logs/journal`: one file that a commit appending to several queues'
//! logs makes durable with one `fdatasync`, instead of one per segment it wrote (1,000
//! queues touched by one commit cost 1,000 `fdatasync`s: ~100 ms here, so a publisher
//! spreading over them got ~5,000 confirms/s).
//!
//! An entry is `len:u32 crc:u32 qid:u64 first:u64 offset:u64 bytes` (big-endian; `len`
//! counts from `qid`; the CRC32 covers `qid` to the end): the exact bytes a commit wrote to
//! segment `first` of queue `qid` at `offset`. Segments are append-only and an offset is
//! written again only after a failed commit cut it back (cutting the journal with it), so
//! replaying an entry writes what the segment already holds or should: replay is
//! idempotent. A checkpoint `fdatasync`s every segment journaled since the last one, then
//! empties the journal; start-up replays it before anything reads a segment.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{open_frame, open_or_create, queue_dir, seal_frame, segment_path, MAX_RECORD};

/// The journal is emptied (a checkpoint) once it is this long, or when the writer is idle.
pub const JOURNAL_MAX: u64 = 64 << 20;
/// A commit's journal bytes are written (not synced) once this many are buffered.
const BUFFER_MAX: usize = 4 << 20;
const ENTRY_HEADER: usize = 32;
/// The longest entry: a queue's whole write buffer (`append::PENDING_MAX`, 4 MiB, passed by
/// at most one record) and its header.
const ENTRY_MAX: u64 = MAX_RECORD as u64 + (8 << 20);

pub fn journal_path(root: &Path) -> PathBuf {
    root.join("journal")
}

pub(crate) struct Journal {
    file: File,
    /// Bytes on file.
    len: u64,
    /// Its length when the commit began (a failed commit cuts back to it).
    begun: u64,
    buf: Vec<u8>,
    /// Segments with journaled bytes not yet synced in the segment itself.
    segments: HashSet<(u64, u64)>,
    root: PathBuf,
}

impl Journal {
    /// Opens (or creates, durably) the journal under `root`: empty after a replay.
    pub(crate) fn open(root: &Path) -> std::io::Result<Journal> {
        let file = open_or_create(root, &journal_path(root))?;
        let len = file.metadata()?.len();
        Ok(Journal {
            file,
            len,
            begun: len,
            buf: Vec::new(),
            segments: HashSet::new(),
            root: root.to_path_buf(),
        })
    }

    /// Journals `bytes`, just written to segment `first` of `qid` at `offset`.
    pub(crate) fn add(
        &mut self,
        qid: u64,
        first: u64,
        offset: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        let start = open_frame(&mut self.buf);
        self.buf.extend_from_slice(&qid.to_be_bytes());
        self.buf.extend_from_slice(&first.to_be_bytes());
        self.buf.extend_from_slice(&offset.to_be_bytes());
        self.buf.extend_from_slice(bytes);
        seal_frame(&mut self.buf, start);
        self.segments.insert((qid, first));
        if self.buf.len() >= BUFFER_MAX {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all_at(&self.buf, self.len) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes and `fdatasync`s what this commit journaled; false if it journaled nothing.
    pub(crate) fn sync(&mut self) -> std::io::Result<bool> {
        self.write()?;
        if self.len == self.begun {
            return Ok(false);
        }
        self.file.sync_data()?;
        Ok(true)
    }

    pub(crate) fn committed(&mut self) {
        self.begun = self.len;
    }

    /// The commit failed: its entries are cut off (its segments are cut back too).
    pub(crate) fn rollback(&mut self) {
        self.buf.clear();
        if self.len != self.begun {
            match self.file.set_len(self.begun) {
                Ok(()) => self.len = self.begun,
                Err(e) => warn!("cannot cut a failed commit out of the journal: {e}"),
            }
        }
    }

    /// A segment was synced by itself (or deleted): a checkpoint need not sync it.
    pub(crate) fn synced(&mut self, qid: u64, first: u64) {
        self.segments.remove(&(qid, first));
    }

    /// A checkpoint is due: the journal is long, or the writer idle and it is not empty.
    pub(crate) fn due(&self, idle: bool) -> bool {
        self.len >= JOURNAL_MAX || (idle && self.len > 0)
    }

    /// `fdatasync` of every segment journaled since the last checkpoint, then the journal
    /// emptied (and that synced). Between commits only.
    pub(crate) fn checkpoint(&mut self) -> std::io::Result<()> {
        for &(qid, first) in &self.segments {
            let path = segment_path(&queue_dir(&self.root, qid), first);
            match File::open(&path) {
                Ok(f) => f.sync_data()?,
                // Drained and deleted, or its queue's log dropped.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.segments.clear();
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.len = 0;
        self.begun = 0;
        Ok(())
    }
}

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub entries: u64,
    pub bytes: u64,
    /// A torn or damaged entry ended the journal (a commit that was never confirmed).
    pub torn: bool,
}

/// Start-up, before any segment is read: writes every entry of the journal into its
/// segment (whose file exists: a missing one was deleted on purpose), syncs them, then
/// empties the journal.
pub fn replay(root: &Path) -> std::io::Result<Replayed> {
    let path = journal_path(root);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let mut r = Replayed::default();
    let mut at = 0u64;
    // Segments written, synced at the end (reopened: a long journal names thousands).
    let mut written: HashSet<(u64, u64)> = HashSet::new();
    let mut open: Option<((u64, u64), Option<File>)> = None;
    let mut header = [0u8; ENTRY_HEADER];
    while at + ENTRY_HEADER as u64 <= len {
        file.read_exact_at(&mut header, at)?;
        let n = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        // A segment write is at most a queue's buffer plus one record; the length is
        // checked against the file before anything is allocated.
        if n < 24 || u64::from(n) > ENTRY_MAX || at + 8 + u64::from(n) > len {
            r.torn = true;
            break;
        }
        let mut entry = vec![0u8; n as usize];
        file.read_exact_at(&mut entry, at + 8)?;
        if crc32fast::hash(&entry) != crc {
            r.torn = true;
            break;
        }
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&entry[i..i + 8]);
            u64::from_be_bytes(b)
        };
        let (qid, first, offset) = (word(0), word(8), word(16));
        if open.as_ref().map(|(k, _)| *k) != Some((qid, first)) {
            let seg = segment_path(&queue_dir(root, qid), first);
            let f = match OpenOptions::new().write(true).open(&seg) {
                Ok(f) => Some(f),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            open = Some(((qid, first), f));
        }
        if let Some((_, Some(f))) = open.as_ref() {
            f.write_all_at(&entry[24..], offset)?;
            written.insert((qid, first));
            r.bytes += entry.len() as u64 - 24;
        }
        r.entries += 1;
        at += 8 + u64::from(n);
    }
    if at < len {
        r.torn = true;
    }
    drop(open);
    for &(qid, first) in &written {
        File::open(segment_path(&queue_dir(root, qid), first))?.sync_data()?;
    }
    if len > 0 {
        file.set_len(0)?;
        file.sync_data()?;
        info!(
            entries = r.entries,
            bytes = r.bytes,
            torn = r.torn,
            "replayed the commit journal into the queues' logs"
        );
    }
    Ok(r)
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
