//! The filesystem's state, in memory, in two versions.
//!
//! Every file has what programs see (`cur`, changed by each write at once) and what a power
//! cut would leave (`dur`, brought up to date only by an fsync or fdatasync of that file).
//! Every directory likewise has its current entries and its durable ones (brought up to date
//! only by an fsync of the directory). This is stricter than ext4 in one way (a new file's
//! name survives only once its directory is synced, as POSIX promises and no more) and the
//! same as a drive with a volatile cache in the other (nothing unsynced survives).
//!
//! [`Model::power_cut`] makes `dur` the new `cur` everywhere; in torn mode the last write
//! not yet synced reaches the durable version only in part (a random prefix of it).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

pub const ROOT: u64 = 1;

/// Why an operation failed, as the errno FUSE will answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NoSpace,
    Invalid,
}

impl Fail {
    pub fn errno(self) -> i32 {
        match self {
            Fail::NotFound => libc::ENOENT,
            Fail::Exists => libc::EEXIST,
            Fail::NotDir => libc::ENOTDIR,
            Fail::IsDir => libc::EISDIR,
            Fail::NotEmpty => libc::ENOTEMPTY,
            Fail::NoSpace => libc::ENOSPC,
            Fail::Invalid => libc::EINVAL,
        }
    }
}

pub type Result<T> = std::result::Result<T, Fail>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
}

/// Sorted, disjoint byte ranges `[start, end)` of a file written since its last sync.
#[derive(Debug, Default, Clone)]
struct Dirty(Vec<(u64, u64)>);

impl Dirty {
    fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        // Merge every range that overlaps or touches [s, e).
        let first = self.0.partition_point(|&(_, re)| re < s);
        let mut last = first;
        while last < self.0.len() && self.0[last].0 <= e {
            s = s.min(self.0[last].0);
            e = e.max(self.0[last].1);
            last += 1;
        }
        self.0.splice(first..last, [(s, e)]);
    }

    fn clip(&mut self, len: u64) {
        self.0.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
    }

    fn bytes(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }
}

#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    pub perm: u16,
    pub mtime: SystemTime,
    /// File contents as programs see them, and as a power cut would leave them.
    cur: Vec<u8>,
    dur: Vec<u8>,
    dirty: Dirty,
    /// Directory entries, current and durable.
    entries: BTreeMap<OsString, u64>,
    durable_entries: BTreeMap<OsString, u64>,
    /// Current and durable directory entries naming this node, and open handles on it: it
    /// exists while any is non-zero.
    links: u32,
    durable_links: u32,
    open: u32,
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Node {
        Node {
            kind,
            perm,
            mtime: SystemTime::now(),
            cur: Vec::new(),
            dur: Vec::new(),
            dirty: Dirty::default(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            links: 0,
            durable_links: 0,
            open: 0,
        }
    }

    pub fn size(&self) -> u64 {
        match self.kind {
            Kind::File => self.cur.len() as u64,
            Kind::Dir => 4096,
        }
    }

    pub fn entries(&self) -> impl Iterator<Item = (&OsString, &u64)> {
        self.entries.iter()
    }
}

/// Counts since the filesystem was created, for test reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub fdatasyncs: u64,
    pub dir_syncs: u64,
    pub bytes_synced: u64,
    /// ENOSPC answered (short writes included).
    pub enospc: u64,
    pub power_cuts: u64,
    /// Unsynced bytes thrown away by power cuts.
    pub bytes_lost: u64,
    /// Names that existed only in a directory's current version when the power went.
    pub names_lost: u64,
    /// Power cuts that tore a write (kept a prefix of the last unsynced one).
    pub torn_writes: u64,
    /// Bytes of torn writes that did reach the durable version.
    pub torn_bytes_kept: u64,
}

pub struct Model {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Bytes of file contents the filesystem may hold (None: no limit).
    pub capacity: Option<u64>,
    /// Bytes of current file contents.
    used: u64,
    /// The last write not yet synced: (ino, offset, length), for torn power cuts.
    last_write: Option<(u64, u64, u64)>,
    /// Files whose name ends with `.0` are slow: each read and write of one waits `.1`.
    pub slow: Option<(String, std::time::Duration)>,
    slow_files: std::collections::HashSet<u64>,
    pub stats: Stats,
}

impl Default for Model {
    fn default() -> Self {
        let mut nodes = HashMap::new();
        let mut root = Node::new(Kind::Dir, 0o755);
        root.links = 1;
        root.durable_links = 1;
        nodes.insert(ROOT, root);
        Model {
            nodes,
            next_ino: ROOT + 1,
            capacity: None,
            used: 0,
            last_write: None,
            slow: None,
            slow_files: Default::default(),
            stats: Stats::default(),
        }
    }
}

impl Model {
    pub fn node(&self, ino: u64) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Fail::NotFound)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or(Fail::NotFound)
    }

    fn dir(&self, ino: u64) -> Result<&Node> {
        let n = self.node(ino)?;
        if n.kind != Kind::Dir {
            return Err(Fail::NotDir);
        }
        Ok(n)
    }

    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64> {
        self.dir(parent)?
            .entries
            .get(name)
            .copied()
            .ok_or(Fail::NotFound)
    }

    /// Bytes of current file contents, and the capacity's free bytes.
    pub fn used(&self) -> u64 {
        self.used
    }

    pub fn free(&self) -> Option<u64> {
        self.capacity.map(|c| c.saturating_sub(self.used))
    }

    /// Bytes written and not yet synced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        self.nodes.values().map(|n| n.dirty.bytes()).sum()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// A new file or directory named `name` in `parent`.
    pub fn create(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64> {
        if self.dir(parent)?.entries.contains_key(name) {
            return Err(Fail::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let mut node = Node::new(kind, perm);
        node.links = 1;
        self.nodes.insert(ino, node);
        if let Some((suffix, _)) = &self.slow {
            if name.to_string_lossy().ends_with(suffix.as_str()) {
                self.slow_files.insert(ino);
            }
        }
        let p = self.node_mut(parent)?;
        p.entries.insert(name.to_os_string(), ino);
        p.mtime = SystemTime::now();
        Ok(ino)
    }

    /// How long a read or write of `ino` waits (see [`Model::slow`]).
    pub fn delay_of(&self, ino: u64) -> Option<std::time::Duration> {
        let (_, delay) = self.slow.as_ref()?;
        self.slow_files.contains(&ino).then_some(*delay)
    }

    pub fn opened(&mut self, ino: u64) -> Result<()> {
        self.node_mut(ino)?.open += 1;
        Ok(())
    }

    pub fn released(&mut self, ino: u64) {
        if let Ok(n) = self.node_mut(ino) {
            n.open = n.open.saturating_sub(1);
        }
        self.maybe_free(ino);
    }

    /// Removes a name (a file, or an empty directory when `dir`).
    pub fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        let n = self.node(ino)?;
        match (dir, n.kind) {
            (true, Kind::File) => return Err(Fail::NotDir),
            (false, Kind::Dir) => return Err(Fail::IsDir),
            (true, Kind::Dir) if !n.entries.is_empty() => return Err(Fail::NotEmpty),
            _ => {}
        }
        let p = self.node_mut(parent)?;
        p.entries.remove(name);
        p.mtime = SystemTime::now();
        let n = self.node_mut(ino)?;
        n.links = n.links.saturating_sub(1);
        self.maybe_free(ino);
        Ok(())
    }

    pub fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        noreplace: bool,
    ) -> Result<()> {
        let ino = self.lookup(parent, name)?;
        self.dir(newparent)?;
        if let Ok(old) = self.lookup(newparent, newname) {
            if old == ino {
                return Ok(());
            }
            if noreplace {
                return Err(Fail::Exists);
            }
            let (src, dst) = (self.node(ino)?.kind, self.node(old)?.kind);
            match (src, dst) {
                (Kind::File, Kind::Dir) => return Err(Fail::IsDir),
                (Kind::Dir, Kind::File) => return Err(Fail::NotDir),
                (Kind::Dir, Kind::Dir) if !self.node(old)?.entries.is_empty() => {
                    return Err(Fail::NotEmpty)
                }
                _ => {}
            }
            let o = self.node_mut(old)?;
            o.links = o.links.saturating_sub(1);
            self.maybe_free(old);
        }
        self.node_mut(parent)?.entries.remove(name);
        self.node_mut(newparent)?
            .entries
            .insert(newname.to_os_string(), ino);
        Ok(())
    }

    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<&[u8]> {
        let n = self.node(ino)?;
        if n.kind == Kind::Dir {
            return Err(Fail::IsDir);
        }
        let start = (offset as usize).min(n.cur.len());
        let end = start.saturating_add(size as usize).min(n.cur.len());
        Ok(&n.cur[start..end])
    }

    /// Bytes a file may grow by before the capacity is reached.
    fn room(&self) -> u64 {
        self.free().unwrap_or(u64::MAX)
    }

    /// Writes `data` at `offset` (`append`: at the end). Past the capacity only a prefix is
    /// written (a short write), and nothing at all is ENOSPC.
    pub fn write(&mut self, ino: u64, offset: u64, data: &[u8], append: bool) -> Result<u32> {
        let room = self.room();
        let n = self.nodes.get_mut(&ino).ok_or(Fail::NotFound)?;
        if n.kind == Kind::Dir {
            return Err(Fail::IsDir);
        }
        let len = n.cur.len() as u64;
        let offset = if append { len } else { offset };
        // The most the file may reach: what it is, plus the room left.
        let limit = len.saturating_add(room);
        let end = offset.saturating_add(data.len() as u64).min(limit);
        if end <= offset && !data.is_empty() {
            self.stats.enospc += 1;
            return Err(Fail::NoSpace);
        }
        let take = (end - offset) as usize;
        if take < data.len() {
            self.stats.enospc += 1;
        }
        if end > len {
            n.cur.resize(end as usize, 0);
        }
        n.cur[offset as usize..end as usize].copy_from_slice(&data[..take]);
        // Zeros between the old end and a write beyond it are unsynced too.
        n.dirty.add(offset.min(len), end);
        n.mtime = SystemTime::now();
        let grown = end.saturating_sub(len);
        self.used += grown;
        self.stats.writes += 1;
        self.stats.bytes_written += take as u64;
        self.last_write = Some((ino, offset, take as u64));
        Ok(take as u32)
    }

    /// Truncates or extends (with zeros) a file.
    pub fn set_len(&mut self, ino: u64, size: u64) -> Result<()> {
        let room = self.room();
        let n = self.nodes.get_mut(&ino).ok_or(Fail::NotFound)?;
        if n.kind == Kind::Dir {
            return Err(Fail::IsDir);
        }
        let len = n.cur.len() as u64;
        if size > len && size - len > room {
            self.stats.enospc += 1;
            return Err(Fail::NoSpace);
        }
        n.cur.resize(size as usize, 0);
        n.dirty.clip(size);
        if size > len {
            n.dirty.add(len, size);
        }
        n.mtime = SystemTime::now();
        self.used = self.used + size.saturating_sub(len) - len.saturating_sub(size);
        if self.last_write.is_some_and(|(i, _, _)| i == ino) {
            self.last_write = None;
        }
        Ok(())
    }

    /// fsync / fdatasync of a file: its contents and size become durable.
    pub fn sync_file(&mut self, ino: u64, datasync: bool) -> Result<()> {
        let n = self.nodes.get_mut(&ino).ok_or(Fail::NotFound)?;
        if n.kind == Kind::Dir {
            return self.sync_dir(ino);
        }
        let mut synced = 0;
        n.dur.resize(n.cur.len(), 0);
        for &(s, e) in &n.dirty.0 {
            let (s, e) = (s as usize, (e as usize).min(n.cur.len()));
            if s < e {
                n.dur[s..e].copy_from_slice(&n.cur[s..e]);
                synced += (e - s) as u64;
            }
        }
        n.dirty.0.clear();
        if self.last_write.is_some_and(|(i, _, _)| i == ino) {
            self.last_write = None;
        }
        if datasync {
            self.stats.fdatasyncs += 1;
        } else {
            self.stats.fsyncs += 1;
        }
        self.stats.bytes_synced += synced;
        Ok(())
    }

    /// fsync of a directory: its entries (names) become durable.
    pub fn sync_dir(&mut self, ino: u64) -> Result<()> {
        let d = self.dir(ino)?;
        let before: Vec<u64> = d.durable_entries.values().copied().collect();
        let after: Vec<u64> = d.entries.values().copied().collect();
        let entries = d.entries.clone();
        self.node_mut(ino)?.durable_entries = entries;
        for i in before {
            if let Ok(n) = self.node_mut(i) {
                n.durable_links = n.durable_links.saturating_sub(1);
            }
        }
        for i in &after {
            if let Ok(n) = self.node_mut(*i) {
                n.durable_links += 1;
            }
        }
        // Nodes that lost their last durable name may now be gone.
        let maybe: Vec<u64> = self.nodes.keys().copied().collect();
        for i in maybe {
            self.maybe_free(i);
        }
        self.stats.dir_syncs += 1;
        Ok(())
    }

    fn maybe_free(&mut self, ino: u64) {
        if ino == ROOT {
            return;
        }
        let Some(n) = self.nodes.get(&ino) else {
            return;
        };
        if n.links == 0 && n.durable_links == 0 && n.open == 0 {
            self.used = self.used.saturating_sub(n.cur.len() as u64);
            if self.last_write.is_some_and(|(i, _, _)| i == ino) {
                self.last_write = None;
            }
            self.nodes.remove(&ino);
        }
    }

    pub fn set_perm(&mut self, ino: u64, perm: u16) -> Result<()> {
        self.node_mut(ino)?.perm = perm;
        Ok(())
    }

    /// The power goes: every node takes its durable version; nodes no durable name reaches
    /// are gone. With `torn`, a random prefix of the last unsynced write survives first.
    /// Returns the bytes of file contents that were lost.
    pub fn power_cut(&mut self, torn: bool) -> u64 {
        if let (true, Some((ino, offset, len))) = (torn, self.last_write.take()) {
            if let Some(n) = self.nodes.get_mut(&ino) {
                let keep = if len == 0 {
                    0
                } else {
                    rand::random_range(0..len)
                };
                let end = (offset + keep) as usize;
                if end > n.dur.len() {
                    n.dur.resize(end, 0);
                }
                let (s, e) = (offset as usize, end.min(n.cur.len()));
                if s < e {
                    n.dur[s..e].copy_from_slice(&n.cur[s..e]);
                }
                self.stats.torn_writes += 1;
                self.stats.torn_bytes_kept += keep;
            }
        }
        let lost = self.unsynced_bytes();
        let mut names_lost = 0;
        for n in self.nodes.values_mut() {
            names_lost += n
                .entries
                .keys()
                .filter(|k| !n.durable_entries.contains_key(*k))
                .count() as u64;
            n.cur = n.dur.clone();
            n.dirty.0.clear();
            n.entries = n.durable_entries.clone();
            n.links = 0;
            n.open = 0;
        }
        // Keep what the durable names reach from the root; recount links.
        let mut reached = vec![ROOT];
        let mut stack = vec![ROOT];
        while let Some(d) = stack.pop() {
            let children: Vec<u64> = self
                .nodes
                .get(&d)
                .map(|n| n.entries.values().copied().collect())
                .unwrap_or_default();
            for c in children {
                if let Some(n) = self.nodes.get_mut(&c) {
                    n.links += 1;
                    if n.links == 1 {
                        reached.push(c);
                        if n.kind == Kind::Dir {
                            stack.push(c);
                        }
                    }
                }
            }
        }
        let keep: std::collections::HashSet<u64> = reached.into_iter().collect();
        self.nodes.retain(|i, _| keep.contains(i));
        for n in self.nodes.values_mut() {
            n.durable_links = n.links;
        }
        if let Some(root) = self.nodes.get_mut(&ROOT) {
            root.links = 1;
            root.durable_links = 1;
        }
        self.used = self.nodes.values().map(|n| n.cur.len() as u64).sum();
        self.last_write = None;
        self.stats.power_cuts += 1;
        self.stats.bytes_lost += lost;
        self.stats.names_lost += names_lost;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn dirty_ranges_merge() {
        let mut d = Dirty::default();
        d.add(10, 20);
        d.add(30, 40);
        d.add(20, 30);
        assert_eq!(d.0, vec![(10, 40)]);
        d.add(0, 5);
        d.add(50, 60);
        d.add(4, 51);
        assert_eq!(d.0, vec![(0, 60)]);
        d.clip(25);
        assert_eq!(d.0, vec![(0, 25)]);
    }

    #[test]
    fn unsynced_data_and_names_are_lost() {
        let mut m = Model::default();
        let f = m.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        m.write(f, 0, b"hello", false).unwrap();
        m.sync_file(f, true).unwrap();
        m.write(f, 5, b" world", false).unwrap();
        // The name was never synced: a cut loses the file altogether.
        let mut lost = Model::default();
        let g = lost.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        lost.write(g, 0, b"x", false).unwrap();
        lost.sync_file(g, false).unwrap();
        lost.power_cut(false);
        assert_eq!(lost.lookup(ROOT, name("a")), Err(Fail::NotFound));

        m.sync_dir(ROOT).unwrap();
        assert_eq!(m.power_cut(false), 6);
        let f = m.lookup(ROOT, name("a")).unwrap();
        assert_eq!(m.read(f, 0, 100).unwrap(), b"hello");
    }

    #[test]
    fn removals_come_back_unless_the_directory_was_synced() {
        let mut m = Model::default();
        let f = m.create(ROOT, name("seg"), Kind::File, 0o644).unwrap();
        m.write(f, 0, b"body", false).unwrap();
        m.sync_file(f, false).unwrap();
        m.sync_dir(ROOT).unwrap();
        m.remove(ROOT, name("seg"), false).unwrap();
        m.power_cut(false);
        let f = m.lookup(ROOT, name("seg")).unwrap();
        assert_eq!(m.read(f, 0, 10).unwrap(), b"body");
        m.remove(ROOT, name("seg"), false).unwrap();
        m.sync_dir(ROOT).unwrap();
        m.power_cut(false);
        assert!(m.lookup(ROOT, name("seg")).is_err());
        assert_eq!(m.node_count(), 1);
    }

    #[test]
    fn a_full_disk_writes_a_prefix_then_refuses() {
        let mut m = Model {
            capacity: Some(10),
            ..Model::default()
        };
        let f = m.create(ROOT, name("f"), Kind::File, 0o644).unwrap();
        assert_eq!(m.write(f, 0, b"0123456", false), Ok(7));
        assert_eq!(m.write(f, 7, b"789abc", false), Ok(3));
        assert_eq!(m.write(f, 10, b"x", false), Err(Fail::NoSpace));
        // Overwriting needs no room.
        assert_eq!(m.write(f, 0, b"ab", false), Ok(2));
        assert_eq!(m.set_len(f, 11), Err(Fail::NoSpace));
        m.set_len(f, 4).unwrap();
        assert_eq!(m.free(), Some(6));
    }

    #[test]
    fn a_torn_cut_keeps_a_prefix_of_the_last_write() {
        for _ in 0..50 {
            let mut m = Model::default();
            let f = m.create(ROOT, name("log"), Kind::File, 0o644).unwrap();
            m.sync_dir(ROOT).unwrap();
            m.write(f, 0, b"synced|", false).unwrap();
            m.sync_file(f, true).unwrap();
            m.write(f, 7, b"0123456789", false).unwrap();
            m.power_cut(true);
            let f = m.lookup(ROOT, name("log")).unwrap();
            let got = m.read(f, 0, 100).unwrap().to_vec();
            assert!(got.starts_with(b"synced|"));
            assert!(b"synced|0123456789".starts_with(&got));
            assert!(got.len() < 17, "the whole torn write survived");
        }
    }

    #[test]
    fn rename_moves_a_name_and_replaces_the_target() {
        let mut m = Model::default();
        let a = m.create(ROOT, name("a"), Kind::File, 0o644).unwrap();
        let b = m.create(ROOT, name("b"), Kind::File, 0o644).unwrap();
        m.rename(ROOT, name("a"), ROOT, name("b"), false).unwrap();
        assert_eq!(m.lookup(ROOT, name("b")), Ok(a));
        assert!(m.node(b).is_err());
        assert!(m.lookup(ROOT, name("a")).is_err());
        let d = m.create(ROOT, name("d"), Kind::Dir, 0o755).unwrap();
        m.create(d, name("x"), Kind::File, 0o644).unwrap();
        assert_eq!(m.remove(ROOT, name("d"), true), Err(Fail::NotEmpty));
    }
}
