//! What makes a write durable, in one place: `fdatasync` of the files a confirm depends on,
//! `fsync` of the directories whose entries changed.
//!
//! sled 0.34's `flush()` writes its log with `pwrite` and then calls `sync_file_range`,
//! which waits for page writeback of a range but does not make the file's size, its block
//! allocation or the drive's cache durable (sled falls back to a real sync only where
//! `sync_file_range` is missing). So after every flush the writer calls `fdatasync` on its own
//! handle of `sled/db` ([`SledFiles::sync`]); the kernel syncs the inode, whichever
//! descriptor wrote it. sled writes a few other files without syncing them: `conf` and its
//! snapshot (renamed into place) when it opens, and, for a page too large for its log, a
//! blob file; those are synced here too, with their directories.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// fsync of a directory: the names created, renamed or removed in it become durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and missing parents), syncing each parent whose entries changed.
pub fn create_dir_all_synced(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_synced(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

/// The files of a sled database that the writer syncs itself.
pub struct SledFiles {
    dir: PathBuf,
    db: File,
    /// `blobs/`'s modification time when it was last looked at (a new blob changes it).
    blobs_seen: Option<SystemTime>,
}

impl SledFiles {
    /// After `sled::Config::open`: makes what sled wrote while opening durable (`conf`, the
    /// snapshot it renamed into place, the database file's name) and keeps `db` open.
    pub fn open(dir: &Path) -> io::Result<SledFiles> {
        let db = File::open(dir.join("db"))?;
        db.sync_all()?;
        if let Ok(conf) = File::open(dir.join("conf")) {
            conf.sync_all()?;
        }
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let is_snapshot = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snap."));
            if is_snapshot {
                File::open(&path)?.sync_all()?;
            }
        }
        sync_dir(dir)?;
        let mut files = SledFiles {
            dir: dir.to_path_buf(),
            db,
            blobs_seen: None,
        };
        files.sync_blobs()?;
        Ok(files)
    }

    /// After `sled::Db::flush`: the log (and any new blob) on disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.db.sync_data()?;
        self.sync_blobs()
    }

    /// Blob files are rare (pages over ~128 KiB); a stat of the directory tells whether one
    /// appeared since the last look.
    fn sync_blobs(&mut self) -> io::Result<()> {
        let blobs = self.dir.join("blobs");
        let Ok(modified) = std::fs::metadata(&blobs).and_then(|m| m.modified()) else {
            return Ok(());
        };
        if self.blobs_seen == Some(modified) {
            return Ok(());
        }
        for entry in std::fs::read_dir(&blobs)? {
            File::open(entry?.path())?.sync_all()?;
        }
        sync_dir(&blobs)?;
        // A blob created within the same clock tick as this look would not change the time:
        // a recent time is looked at again next time.
        let settled = SystemTime::now()
            .duration_since(modified)
            .is_ok_and(|age| age.as_secs() >= 1);
        self.blobs_seen = settled.then_some(modified);
        Ok(())
    }
}
