//! Large message bodies live outside sled, appended to segment files (`bodies/*.seg`, up to
//! 64 MiB each); sled keeps a small record with the body's place and checksum.
//!
//! Why: sled keeps values in its tree nodes and its memory grows with the data it holds (a
//! 655 MB backlog of 4 KiB bodies cost ~0.6 GB of RSS), which defeats paging a deep queue
//! out of RAM. A segment costs nothing in RAM but a live-body counter.
//!
//! The writer owns the segments: it appends the bodies of a commit with one write, syncs the
//! file before sled (so a record never points at bytes that are not durable... and if sled's
//! own log reached the disk first, the checksum catches it at read), and counts the live
//! bodies of each segment so that a segment whose bodies are all deleted is removed. The
//! directory is fsynced after a segment is created (before any record naming it is synced)
//! and after one is removed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

/// Bodies at least this big go to a segment.
pub const EXTERNAL_BODY_MIN: usize = 1024;
/// A segment is closed for appends once it reaches this size.
const SEGMENT_SIZE: u64 = 64 << 20;
/// Bodies buffered before a write.
const PENDING_MAX: usize = 4 << 20;

/// Where a body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
    pub crc: u32,
}

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.seg"))
}

/// Reads a body back (any thread). `file` caches the last segment opened.
pub fn read_body(
    dir: &Path,
    r: BodyRef,
    file: &mut Option<(u64, File)>,
) -> std::io::Result<Vec<u8>> {
    if !matches!(file, Some((id, _)) if *id == r.segment) {
        *file = Some((r.segment, File::open(segment_path(dir, r.segment))?));
    }
    let mut body = vec![0u8; r.len as usize];
    if let Some((_, f)) = file {
        f.read_exact_at(&mut body, r.offset)?;
    }
    if crc32fast::hash(&body) != r.crc {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("checksum mismatch in segment {:016x}", r.segment),
        ));
    }
    Ok(body)
}

/// The writer's side: the segment being appended to, bodies of the current commit, and
/// live-body counts.
///
/// Bodies are written with `pwrite` at the offset the segment's recorded length says, never
/// in append mode: a write that fails part way (a full disk) is cut back to that length, so
/// every later body still lands exactly where its record says. A commit that fails as a
/// whole is rolled back with [`Segments::rollback`].
pub struct Segments {
    dir: PathBuf,
    /// The segment being appended to: id, file, bytes written to it.
    active: Option<(u64, File, u64)>,
    next_id: u64,
    /// Bodies of the current commit, written at [`Segments::write_pending`].
    pending: Vec<u8>,
    live: HashMap<u64, u64>,
    unsynced: bool,
    /// A segment file was created or removed: the directory needs an fsync.
    dir_unsynced: bool,
    /// Where the active segment stood when the commit began, and the bodies the commit
    /// appended, per segment (for [`Segments::rollback`]).
    begun: Option<(u64, u64)>,
    appended: Vec<(u64, u64)>,
}

impl Segments {
    /// `live`: bodies per segment still referenced (counted at recovery). Segment files
    /// nobody references are removed.
    pub fn open(dir: PathBuf, live: HashMap<u64, u64>) -> std::io::Result<Segments> {
        let created = !dir.exists();
        std::fs::create_dir_all(&dir)?;
        if created {
            if let Some(parent) = dir.parent() {
                super::durable::sync_dir(parent)?;
            }
        }
        let mut next_id = 0;
        let mut removed = false;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| u64::from_str_radix(s, 16).ok())
            else {
                continue;
            };
            next_id = next_id.max(id + 1);
            if !live.contains_key(&id) {
                debug!(segment = id, "removing unreferenced segment");
                let _ = std::fs::remove_file(&path);
                removed = true;
            }
        }
        if removed {
            super::durable::sync_dir(&dir)?;
        }
        Ok(Segments {
            dir,
            active: None,
            next_id,
            pending: Vec::new(),
            live,
            unsynced: false,
            dir_unsynced: false,
            begun: None,
            appended: Vec::new(),
        })
    }

    /// A commit begins: remember where the active segment stands.
    pub fn begin(&mut self) {
        self.begun = self.active.as_ref().map(|(id, _, len)| (*id, *len));
        self.appended.clear();
    }

    /// Places `body` in the current commit's append; its bytes are written by
    /// [`Segments::write_pending`].
    pub fn append(&mut self, body: &[u8]) -> std::io::Result<BodyRef> {
        let full = self
            .active
            .as_ref()
            .is_some_and(|(_, _, len)| *len + self.pending.len() as u64 >= SEGMENT_SIZE);
        if full {
            self.write_pending()?;
            self.sync()?;
            self.active = None;
        }
        if self.active.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let f = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(segment_path(&self.dir, id))?;
            self.active = Some((id, f, 0));
            self.dir_unsynced = true;
        }
        let (id, _, len) = self
            .active
            .as_ref()
            .ok_or_else(|| std::io::Error::other("no segment"))?;
        let r = BodyRef {
            segment: *id,
            offset: *len + self.pending.len() as u64,
            len: body.len() as u32,
            crc: crc32fast::hash(body),
        };
        if body.len() >= PENDING_MAX {
            // A large body goes straight to the file, not through the buffer (one copy less
            // of a 128 MiB message).
            self.write_pending()?;
            self.write_at_end(body)?;
        } else {
            self.pending.extend_from_slice(body);
        }
        *self.live.entry(r.segment).or_default() += 1;
        match self.appended.last_mut() {
            Some((s, n)) if *s == r.segment => *n += 1,
            _ => self.appended.push((r.segment, 1)),
        }
        // Written as we go past a few MiB, so the buffer stays small whatever the commit.
        if self.pending.len() >= PENDING_MAX {
            self.write_pending()?;
        }
        Ok(r)
    }

    /// Writes the commit's bodies (before the sled records that point at them are applied).
    /// On failure the segment is cut back to its recorded length (or, if even that fails,
    /// left for good: the next body starts a new segment).
    pub fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let r = self.write_at_end(&pending);
        self.pending = pending;
        self.pending.clear();
        r
    }

    /// Appends `bytes` at the active segment's recorded end, or cuts a partial write back.
    fn write_at_end(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let Some((_, f, len)) = self.active.as_mut() else {
            return Ok(());
        };
        if let Err(e) = f.write_all_at(bytes, *len) {
            if f.set_len(*len).is_err() {
                self.active = None;
            }
            return Err(e);
        }
        *len += bytes.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Syncs the active segment (earlier ones were synced before they were left), then the
    /// directory if a segment was created or removed since the last sync.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            if let Some((_, f, _)) = &self.active {
                f.sync_data()?;
            }
            self.unsynced = false;
        }
        if self.dir_unsynced {
            super::durable::sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// The commit failed: its records will not be written, so its bodies are forgotten (the
    /// active segment cut back to where the commit found it) and no longer count as live.
    pub fn rollback(&mut self) {
        self.pending.clear();
        for (segment, n) in std::mem::take(&mut self.appended) {
            if let Some(live) = self.live.get_mut(&segment) {
                *live = live.saturating_sub(n);
            }
            self.maybe_remove(segment);
        }
        let Some((id, f, len)) = self.active.as_mut() else {
            return;
        };
        let back_to = match self.begun {
            Some((b, at)) if b == *id => at,
            // The segment was started by this commit.
            _ => 0,
        };
        if *len > back_to {
            if f.set_len(back_to).is_ok() {
                *len = back_to;
            } else {
                self.active = None;
            }
        }
    }

    /// A body was deleted; its segment goes when it holds no live body and isn't active.
    pub fn release(&mut self, segment: u64) {
        let Some(n) = self.live.get_mut(&segment) else {
            return;
        };
        *n = n.saturating_sub(1);
        self.maybe_remove(segment);
    }

    fn maybe_remove(&mut self, segment: u64) {
        let active = self.active.as_ref().map(|(id, _, _)| *id);
        if self.live.get(&segment).is_some_and(|n| *n == 0) && active != Some(segment) {
            self.live.remove(&segment);
            match std::fs::remove_file(segment_path(&self.dir, segment)) {
                Ok(()) => self.dir_unsynced = true,
                Err(e) => warn!(segment, "cannot remove segment: {e}"),
            }
        }
    }

    /// Bytes of segment files on disk.
    pub fn size_on_disk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}
