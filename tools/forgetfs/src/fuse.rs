//! The FUSE side: each kernel request answered from the [`Model`].
//!
//! Files are opened with `FOPEN_DIRECT_IO`, so the kernel's page cache holds nothing: every
//! write reaches the model at once, and `sync_file_range` (which only writes back cached
//! pages) does nothing here, exactly as on a drive whose cache loses power.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Fail, Kind, Model};

/// Entries and attributes may be cached this long (the model only changes through the
/// kernel, and a power cut remounts, which drops every cache).
const TTL: Duration = Duration::from_secs(1);
const BLOCK: u64 = 4096;

pub struct Fuse {
    pub model: Arc<Mutex<Model>>,
}

fn errno(f: Fail) -> Errno {
    Errno::from_i32(f.errno())
}

impl Fuse {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock would already have failed the test.
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slow file's read or write waits first (the model's lock is not held meanwhile).
    fn wait_if_slow(&self, ino: u64) {
        let delay = self.model().delay_of(ino);
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
    }

    fn attr(m: &Model, ino: u64) -> Result<FileAttr, Fail> {
        let n = m.node(ino)?;
        let (kind, nlink) = match n.kind {
            Kind::File => (FileType::RegularFile, 1),
            Kind::Dir => (FileType::Directory, 2),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size: n.size(),
            blocks: n.size().div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind,
            perm: n.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        })
    }

    fn entry(m: &Model, ino: Result<u64, Fail>, reply: ReplyEntry) {
        match ino.and_then(|i| Self::attr(m, i)) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(r: Result<(), Fail>, reply: ReplyEmpty) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for Fuse {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let m = self.model();
        let ino = m.lookup(parent.0, name);
        Self::entry(&m, ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Self::attr(&self.model(), ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut m = self.model();
        let mut r = Ok(());
        if let Some(size) = size {
            r = m.set_len(ino.0, size);
        }
        if let (Ok(()), Some(mode)) = (r, mode) {
            r = m.set_perm(ino.0, (mode & 0o7777) as u16);
        }
        match r.and_then(|()| Self::attr(&m, ino.0)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            reply.error(Errno::EPERM);
            return;
        }
        let mut m = self.model();
        let ino = m.create(parent.0, name, Kind::File, (mode & !umask & 0o7777) as u16);
        Self::entry(&m, ino, reply);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut m = self.model();
        let ino = m.create(parent.0, name, Kind::Dir, (mode & !umask & 0o7777) as u16);
        Self::entry(&m, ino, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.model().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.model().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if flags.contains(RenameFlags::RENAME_EXCHANGE)
            || flags.contains(RenameFlags::RENAME_WHITEOUT)
        {
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        Self::empty(
            self.model()
                .rename(parent.0, name, newparent.0, newname, noreplace),
            reply,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut m = self.model();
        let mut r = m.opened(ino.0);
        if r.is_ok() && flags.0 & libc::O_TRUNC != 0 {
            r = m.set_len(ino.0, 0);
        }
        match r {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.wait_if_slow(ino.0);
        match self.model().read(ino.0, offset, size) {
            Ok(d) => reply.data(d),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.wait_if_slow(ino.0);
        let append = flags.0 & libc::O_APPEND != 0;
        match self.model().write(ino.0, offset, data, append) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().released(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.model().sync_file(ino.0, datasync), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().node(ino.0) {
            Ok(n) if n.kind == Kind::Dir => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let m = self.model();
        let dir = match m.node(ino.0) {
            Ok(d) if d.kind == Kind::Dir => d,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(errno(e)),
        };
        let mut all: Vec<(u64, FileType, std::ffi::OsString)> = vec![
            (ino.0, FileType::Directory, ".".into()),
            (ino.0, FileType::Directory, "..".into()),
        ];
        for (name, &child) in dir.entries() {
            let kind = match m.node(child).map(|n| n.kind) {
                Ok(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name.clone()));
        }
        for (i, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), (i + 1) as u64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        Self::empty(self.model().sync_dir(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let m = self.model();
        let total = m.capacity.unwrap_or(1 << 42);
        let free = m.free().unwrap_or(total.saturating_sub(m.used()));
        let files = 1 << 20;
        reply.statfs(
            total / BLOCK,
            free / BLOCK,
            free / BLOCK,
            files,
            files.saturating_sub(m.node_count() as u64),
            BLOCK as u32,
            255,
            BLOCK as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        Self::empty(self.model().node(ino.0).map(|_| ()), reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut m = self.model();
        let ino = match m.lookup(parent.0, name) {
            Ok(_) if flags & libc::O_EXCL != 0 => Err(Fail::Exists),
            Ok(i) => {
                if flags & libc::O_TRUNC != 0 {
                    m.set_len(i, 0).map(|()| i)
                } else {
                    Ok(i)
                }
            }
            Err(_) => m.create(parent.0, name, Kind::File, (mode & !umask & 0o7777) as u16),
        };
        let r = ino.and_then(|i| {
            m.opened(i)?;
            Self::attr(&m, i)
        });
        match r {
            Ok(a) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(Errno::from_i32(libc::EOPNOTSUPP));
            return;
        }
        let mut m = self.model();
        let r = m.node(ino.0).map(|n| n.size()).and_then(|size| {
            let end = offset.saturating_add(length);
            if end > size {
                m.set_len(ino.0, end)
            } else {
                Ok(())
            }
        });
        Self::empty(r, reply);
    }
}
