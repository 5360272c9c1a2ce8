//! `logs/meta`: the small keyed records that describe the logs (each segment's extent and
//! settled set, each queue's delivered watermark: the `l`, `a` and `d` keys of `records`),
//! as an append-only file of puts and removes, with the live set in RAM.
//!
//! Why not sled: these records change with every commit that settles or delivers, and sled
//! is log-structured. Its file keeps its high-water mark: after a 10M-message backlog was
//! drained, `sled/db` stayed 2.7 MB (the data directory was 0.03 MB before). Here a commit
//! appends its changes and `fdatasync`s them (instead of sled's flush and `fdatasync`), and
//! the file is rewritten with only the live records (written beside it, synced, renamed
//! over it, the directory synced) once it is [`COMPACT_RATIO`] times their size, or, when
//! the writer is idle, twice: a drained backlog leaves it empty.
//!
//! An entry is `len:u32 crc:u32 op:u8 key_len:u16 key value` (`open_frame`; op 1 puts
//! `value`, 0 removes). Start-up reads entries up to the first that fails its length or
//! checksum (a crash mid-write: it was never committed) and cuts the file there.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use super::{open_frame, open_or_create, seal_frame, MAX_RECORD};
use crate::store::durable::sync_dir;

/// The file is rewritten once it is this many times its live records' size...
const COMPACT_RATIO: u64 = 4;
/// ... and at least this long (a rewrite of a few records every few commits is waste).
const COMPACT_MIN: u64 = 1 << 20;
const PUT: u8 = 1;
const REMOVE: u8 = 0;

pub fn meta_path(root: &Path) -> PathBuf {
    root.join("meta")
}

fn new_path(root: &Path) -> PathBuf {
    root.join("meta.new")
}

pub(crate) struct MetaLog {
    root: PathBuf,
    file: File,
    /// Bytes on file, all committed.
    len: u64,
    live: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Encoded size of `live` (what a rewrite writes).
    live_bytes: u64,
    /// This commit's entries, not yet written.
    pending: Vec<u8>,
    /// How to undo this commit's changes to `live`: each key's value before it.
    undo: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// A rewrite's rename whose directory sync failed: `sync` retries it first.
    dir_unsynced: bool,
}

fn entry_size(key: &[u8], value: &[u8]) -> u64 {
    (8 + 3 + key.len() + value.len()) as u64
}

fn encode(out: &mut Vec<u8>, op: u8, key: &[u8], value: &[u8]) {
    let start = open_frame(out);
    out.push(op);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    seal_frame(out, start);
}

/// One entry's payload: `(op, key, value)`.
fn decode(payload: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let op = *payload.first()?;
    let klen = u16::from_be_bytes(payload.get(1..3)?.try_into().ok()?) as usize;
    let key = payload.get(3..3 + klen)?;
    let value = payload.get(3 + klen..)?;
    Some((op, key, value))
}

impl MetaLog {
    /// Reads (or creates, durably) `root/meta`; a torn last entry is cut off.
    pub(crate) fn open(root: &Path) -> std::io::Result<MetaLog> {
        // A rewrite that did not reach its rename: the old file is whole.
        match std::fs::remove_file(new_path(root)) {
            Ok(()) => sync_dir(root)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let path = meta_path(root);
        let file = open_or_create(root, &path)?;
        let bytes = std::fs::read(&path)?;
        let mut live = BTreeMap::new();
        let mut off = 0usize;
        while let Some(h) = bytes.get(off..off + 8) {
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
            let crc = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
            if !(3..=MAX_RECORD).contains(&len) {
                break;
            }
            let Some(payload) = bytes.get(off + 8..off + 8 + len as usize) else {
                break;
            };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Some((op, key, value)) = decode(payload) else {
                break;
            };
            if op == PUT {
                live.insert(key.to_vec(), value.to_vec());
            } else {
                live.remove(key);
            }
            off += 8 + len as usize;
        }
        if off < bytes.len() {
            warn!(
                file = %path.display(),
                offset = off,
                cut = bytes.len() - off,
                "torn entry at the end of the logs' metadata: cut"
            );
            file.set_len(off as u64)?;
            file.sync_data()?;
        }
        let live_bytes = live.iter().map(|(k, v)| entry_size(k, v)).sum();
        Ok(MetaLog {
            root: root.to_path_buf(),
            file,
            len: off as u64,
            live,
            live_bytes,
            pending: Vec::new(),
            undo: Vec::new(),
            dir_unsynced: false,
        })
    }

    /// The live records whose key starts with `prefix`, in key order.
    pub(crate) fn scan<'a>(
        &'a self,
        prefix: &'a [u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.live
            .range(prefix.to_vec()..)
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        if self.live.get(key).is_some_and(|v| v == value) {
            return;
        }
        encode(&mut self.pending, PUT, key, value);
        self.live_bytes += entry_size(key, value);
        let old = self.live.insert(key.to_vec(), value.to_vec());
        if let Some(v) = &old {
            self.live_bytes -= entry_size(key, v);
        }
        self.undo.push((key.to_vec(), old));
    }

    pub(crate) fn remove(&mut self, key: &[u8]) {
        let Some(old) = self.live.remove(key) else {
            return;
        };
        encode(&mut self.pending, REMOVE, key, &[]);
        self.live_bytes -= entry_size(key, &old);
        self.undo.push((key.to_vec(), Some(old)));
    }

    pub(crate) fn remove_prefix(&mut self, prefix: &[u8]) {
        let keys: Vec<Vec<u8>> = self.scan(prefix).map(|(k, _)| k.to_vec()).collect();
        for k in keys {
            self.remove(&k);
        }
    }

    /// This commit changed something (it must be written and synced).
    pub(crate) fn changed(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes this commit's entries and `fdatasync`s them. On an error the file is cut back
    /// (the caller rolls the commit back).
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        if self.dir_unsynced {
            sync_dir(&self.root)?;
            self.dir_unsynced = false;
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let res = self
            .file
            .write_all_at(&self.pending, self.len)
            .and_then(|()| self.file.sync_data());
        if res.is_err() {
            let _ = self.file.set_len(self.len);
        }
        res
    }

    /// The commit is durable; the file is rewritten if it has grown long (or, `idle`,
    /// twice its live size). A failed rewrite leaves the old file, whole.
    pub(crate) fn committed(&mut self, idle: bool) {
        self.len += self.pending.len() as u64;
        self.pending.clear();
        self.undo.clear();
        if self.compaction_due(idle) {
            if let Err(e) = self.rewrite() {
                warn!("cannot rewrite the logs' metadata: {e}");
            }
        }
    }

    /// A rewrite would be done now (`idle`: the writer has nothing else to do).
    pub(crate) fn compaction_due(&self, idle: bool) -> bool {
        if idle {
            self.len > 2 * self.live_bytes
        } else {
            self.len >= COMPACT_MIN && self.len > COMPACT_RATIO * self.live_bytes
        }
    }

    /// The commit failed: its changes to the live set are undone (the file was cut back).
    pub(crate) fn rollback(&mut self) {
        self.pending.clear();
        for (key, old) in std::mem::take(&mut self.undo).into_iter().rev() {
            if let Some(v) = self.live.get(&key) {
                self.live_bytes -= entry_size(&key, v);
            }
            match old {
                Some(v) => {
                    self.live_bytes += entry_size(&key, &v);
                    self.live.insert(key, v);
                }
                None => {
                    self.live.remove(&key);
                }
            }
        }
    }

    fn rewrite(&mut self) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(self.live_bytes as usize);
        for (k, v) in &self.live {
            encode(&mut out, PUT, k, v);
        }
        let tmp = new_path(&self.root);
        // Only written from here on (`open` reads the file by path).
        let file = File::create(&tmp)?;
        let res = file
            .write_all_at(&out, 0)
            .and_then(|()| file.sync_data())
            .and_then(|()| std::fs::rename(&tmp, meta_path(&self.root)));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // Renamed: `meta` is the new file from now on, whatever comes next (writing on to
        // the old one would write to an unlinked file). Until `logs/` is synced the rename
        // may not survive a power cut, so no commit counts as durable before it is.
        self.file = file;
        self.len = out.len() as u64;
        self.dir_unsynced = true;
        sync_dir(&self.root)?;
        self.dir_unsynced = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn reopen(dir: &Path) -> MetaLog {
        MetaLog::open(dir).unwrap()
    }

    #[test]
    fn puts_and_removes_survive_a_reopen_and_a_failed_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = reopen(dir.path());
        m.put(b"a1", b"x");
        m.put(b"a2", b"y");
        m.put(b"b1", b"z");
        m.sync().unwrap();
        m.committed(false);
        m.remove(b"a1");
        m.put(b"a2", b"w");
        m.sync().unwrap();
        m.committed(false);
        m.put(b"a3", b"lost");
        m.remove(b"b1");
        m.rollback();
        assert_eq!(m.scan(b"a").count(), 1);
        assert_eq!(m.scan(b"b").count(), 1);
        let m = reopen(dir.path());
        let got: Vec<_> = m.scan(b"").map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (b"a2".to_vec(), b"w".to_vec()),
                (b"b1".to_vec(), b"z".to_vec())
            ]
        );
    }

    #[test]
    fn a_torn_last_entry_is_cut_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = reopen(dir.path());
        m.put(b"k1", b"v1");
        m.put(b"k2", b"v2");
        m.sync().unwrap();
        m.committed(false);
        let path = meta_path(dir.path());
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let m = reopen(dir.path());
        assert_eq!(m.scan(b"k").count(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), m.len);
    }

    #[test]
    fn an_idle_rewrite_leaves_only_the_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = reopen(dir.path());
        for i in 0..1000u32 {
            m.put(b"s", &i.to_be_bytes());
            m.sync().unwrap();
            m.committed(false);
        }
        m.remove(b"s");
        m.sync().unwrap();
        m.committed(true);
        assert_eq!(std::fs::metadata(meta_path(dir.path())).unwrap().len(), 0);
        m.put(b"t", b"1");
        m.sync().unwrap();
        m.committed(false);
        let m = reopen(dir.path());
        assert_eq!(m.scan(b"").count(), 1);
        assert!(!new_path(dir.path()).exists());
    }
}
