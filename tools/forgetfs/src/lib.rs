//! forgetfs: a FUSE filesystem that keeps written data in memory and forgets, on command,
//! everything that was not synced. It lets a test cut the power under a real program.
//!
//! - [`model`]: the state, with a current and a durable version of every file and directory,
//!   and the rules (what fsync, fdatasync and a directory fsync make durable; what a power
//!   cut leaves; ENOSPC past a capacity, after a short write).
//! - [`fuse`]: the kernel's requests answered from the model (direct I/O, so the kernel's
//!   page cache holds nothing a cut should have taken).
//!
//! [`ForgetFs::power_cut`] unmounts (the program using it must be dead by then: kill it
//! first), applies the cut, and mounts the survivors again at the same place.

pub mod fuse;
pub mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fuser::{BackgroundSession, MountOption};

use model::Model;
pub use model::Stats;

/// A mounted forgetfs. Dropping it unmounts.
pub struct ForgetFs {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

/// What a power cut did.
#[derive(Debug, Clone, Copy)]
pub struct Cut {
    /// Unsynced bytes thrown away.
    pub bytes_lost: u64,
}

impl ForgetFs {
    /// Mounts an empty forgetfs at `mountpoint` (an existing, empty directory). Needs root
    /// (or fusermount3) and /dev/fuse.
    pub fn mount(mountpoint: &Path) -> io::Result<ForgetFs> {
        let mut fs = ForgetFs {
            model: Arc::new(Mutex::new(Model::default())),
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        fs.attach()?;
        Ok(fs)
    }

    fn attach(&mut self) -> io::Result<()> {
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            MountOption::FSName("forgetfs".into()),
            MountOption::DefaultPermissions,
        ];
        let fs = fuse::Fuse {
            model: self.model.clone(),
        };
        self.session = Some(fuser::spawn_mount(fs, &self.mountpoint, &config)?);
        Ok(())
    }

    fn detach(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(s) => s.umount_and_join(),
            None => Ok(()),
        }
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The power goes and comes back: unmount, keep only what was synced (with `torn`, a
    /// random prefix of the last unsynced write survives too), mount again.
    pub fn power_cut(&mut self, torn: bool) -> io::Result<Cut> {
        self.detach()?;
        let bytes_lost = self.model().power_cut(torn);
        self.attach()?;
        Ok(Cut { bytes_lost })
    }

    /// Limits the bytes of file contents the filesystem holds (None: unlimited). Writes past
    /// it are cut short, then refused with ENOSPC.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.model().capacity = bytes;
    }

    /// Makes every read and write of a file created from now on whose name ends with
    /// `suffix` wait `delay` (a slow disk under one kind of file); None: none is slow.
    pub fn set_slow(&self, slow: Option<(&str, Duration)>) {
        self.model().slow = slow.map(|(s, d)| (s.to_string(), d));
    }

    /// Bytes of file contents held now.
    pub fn used(&self) -> u64 {
        self.model().used()
    }

    /// Bytes written and not yet synced.
    pub fn unsynced_bytes(&self) -> u64 {
        self.model().unsynced_bytes()
    }

    pub fn stats(&self) -> Stats {
        self.model().stats
    }
}

impl Drop for ForgetFs {
    fn drop(&mut self) {
        let _ = self.detach();
    }
}
