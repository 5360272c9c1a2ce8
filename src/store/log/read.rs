//! Reading a queue's log back in order (the pager's tail reads, recovery's scans), on any
//! thread but the runtime's: every call here is file I/O.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tracing::error;

use super::{list_segments, parse_header, segment_path, LogError, Settled, HEADER};
use crate::message::Message;
use crate::store::records;

/// Reads at least this much at a time (records are small; one syscall covers thousands).
const READ_AHEAD: usize = 256 * 1024;

/// A message read back: `(seq, message, expires_at)`.
pub type Read = (u64, Message, u64);

/// One record as found in a segment.
pub enum Found<'a> {
    Record {
        seq: u64,
        payload: &'a [u8],
        size: u64,
    },
    /// The segment ends here (cleanly, or with a record still being written).
    End,
    /// A record here is damaged (bad length or checksum).
    Damaged,
}

/// One segment file, read through a buffer.
pub struct SegmentFile {
    pub first: u64,
    path: PathBuf,
    file: File,
    /// File length as last looked at (the writer may have appended since).
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
}

impl SegmentFile {
    pub fn open(dir: &Path, first: u64) -> std::io::Result<SegmentFile> {
        let path = segment_path(dir, first);
        let file = File::open(&path)?;
        let len = file.metadata()?.len();
        Ok(SegmentFile {
            first,
            path,
            file,
            len,
            buf: Vec::new(),
            buf_at: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// `n` bytes at `off`, or `None` if the file is shorter.
    fn bytes_at(&mut self, off: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        if off + n as u64 > self.len {
            self.len = self.file.metadata()?.len();
            if off + n as u64 > self.len {
                return Ok(None);
            }
        }
        let have = off >= self.buf_at && off + n as u64 <= self.buf_at + self.buf.len() as u64;
        if !have {
            let want = n.max(READ_AHEAD).min((self.len - off) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.buf_at = off;
        }
        let start = (off - self.buf_at) as usize;
        Ok(self.buf.get(start..start + n))
    }

    /// The record at `off`; `check`: verify its checksum (a skipped record need not be).
    pub fn record_at(&mut self, off: u64, check: bool) -> std::io::Result<Found<'_>> {
        let Some(h) = self.bytes_at(off, HEADER)? else {
            return Ok(Found::End);
        };
        let Some((len, crc)) = parse_header(h) else {
            return Ok(Found::Damaged);
        };
        let seq = u64::from_be_bytes(h[8..16].try_into().unwrap_or_default());
        let size = 8 + len as u64;
        if !check {
            if off + size > self.len {
                self.len = self.file.metadata()?.len();
                if off + size > self.len {
                    return Ok(Found::End);
                }
            }
            return Ok(Found::Record {
                seq,
                payload: &[],
                size,
            });
        }
        let Some(all) = self.bytes_at(off, size as usize)? else {
            return Ok(Found::End);
        };
        if crc32fast::hash(&all[8..]) != crc {
            return Ok(Found::Damaged);
        }
        Ok(Found::Record {
            seq,
            payload: &all[HEADER..],
            size,
        })
    }
}

/// Where a reader stands in a queue's log.
struct Cursor {
    seg: SegmentFile,
    /// Offset of the next record.
    offset: u64,
    /// Every record before `offset` has a seq below this.
    passed: u64,
}

/// Reads one queue's log forward, remembering where it stopped (so reading a deep tail
/// chunk by chunk reads each byte once).
pub struct LogReader {
    dir: PathBuf,
    at: Option<Cursor>,
}

impl LogReader {
    pub fn new(dir: PathBuf) -> LogReader {
        LogReader { dir, at: None }
    }

    /// Messages with a seq in `from..to` and not in `settled`, in order, about `max_cost`
    /// bytes of RAM ([`Message::ram_cost`], at least one message). A damaged record ends
    /// its segment (reported with the file and offset); reading goes on with the next one.
    pub fn read(
        &mut self,
        from: u64,
        to: u64,
        max_cost: usize,
        settled: &Settled,
    ) -> Result<Vec<Read>, LogError> {
        let mut out = Vec::new();
        let mut cost = 0;
        let mut want = from;
        if self.at.as_ref().map_or(true, |c| c.passed > want) && !self.seek(want)? {
            return Ok(out);
        }
        while cost < max_cost && want < to {
            // Nothing the cursor has passed is wanted (a segment holds no seq below its
            // first; moving to the next one passes the gap).
            want = want.max(self.passed());
            let Some(c) = self.at.as_mut() else { break };
            let offset = c.offset;
            // Only records that will be returned are checked (and decoded).
            let found = match c.seg.record_at(offset, false) {
                Ok(Found::Record { seq, size, .. }) => Ok(Some(Some((seq, size)))),
                Ok(Found::End) => Ok(Some(None)),
                Ok(Found::Damaged) => Ok(None),
                Err(e) => Err(e),
            };
            let peek = match found {
                Ok(Some(p)) => p,
                Ok(None) => {
                    if self.damaged(offset)? {
                        continue;
                    }
                    break;
                }
                Err(e) => {
                    return Err(LogError::Io {
                        path: c.seg.path.clone(),
                        source: e,
                    })
                }
            };
            let Some((seq, size)) = peek else {
                if self.next_segment()? {
                    continue;
                }
                break;
            };
            if seq >= to {
                break;
            }
            let c = self.at.as_mut().ok_or_else(|| LogError::Io {
                path: self.dir.clone(),
                source: std::io::Error::other("no segment"),
            })?;
            if seq < want || settled.contains(seq) {
                c.offset += size;
                c.passed = c.passed.max(seq + 1);
                continue;
            }
            let decoded = match c.seg.record_at(offset, true) {
                Ok(Found::Record { payload, .. }) => Some(decode(payload)),
                Ok(_) => None,
                Err(e) => {
                    return Err(LogError::Io {
                        path: c.seg.path.clone(),
                        source: e,
                    })
                }
            };
            match decoded {
                Some(Some((message, expires_at))) => {
                    c.offset += size;
                    c.passed = seq + 1;
                    want = seq + 1;
                    cost += message.ram_cost();
                    out.push((seq, message, expires_at));
                }
                // A checksum that fails, or a record that checks but does not decode.
                Some(None) | None => {
                    if !self.damaged(offset)? {
                        break;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Seqs below this are behind the cursor (0 without one).
    fn passed(&self) -> u64 {
        self.at.as_ref().map_or(0, |c| c.passed)
    }

    /// Positions the cursor at the segment holding `seq` (or the first after it); false if
    /// there is none.
    fn seek(&mut self, seq: u64) -> Result<bool, LogError> {
        let io = |e| LogError::Io {
            path: self.dir.clone(),
            source: e,
        };
        let firsts = list_segments(&self.dir).map_err(io)?;
        let i = firsts.partition_point(|&f| f <= seq);
        let pick = if i > 0 {
            firsts[i - 1]
        } else {
            firsts.first().copied().unwrap_or(u64::MAX)
        };
        if pick == u64::MAX {
            self.at = None;
            return Ok(false);
        }
        self.open(pick)
    }

    /// Opens segment `first` at its start (a segment deleted meanwhile was settled: the
    /// next one is tried).
    fn open(&mut self, first: u64) -> Result<bool, LogError> {
        match SegmentFile::open(&self.dir, first) {
            Ok(seg) => {
                self.at = Some(Cursor {
                    seg,
                    offset: 0,
                    passed: first,
                });
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.at = None;
                self.after(first)
            }
            Err(e) => Err(LogError::Io {
                path: segment_path(&self.dir, first),
                source: e,
            }),
        }
    }

    /// Moves to the segment after the current one; false if there is none (yet).
    fn next_segment(&mut self) -> Result<bool, LogError> {
        let Some(first) = self.at.as_ref().map(|c| c.seg.first) else {
            return Ok(false);
        };
        let moved = self.after(first)?;
        Ok(moved)
    }

    fn after(&mut self, first: u64) -> Result<bool, LogError> {
        let firsts = list_segments(&self.dir).map_err(|e| LogError::Io {
            path: self.dir.clone(),
            source: e,
        })?;
        match firsts.into_iter().find(|&f| f > first) {
            Some(next) => self.open(next),
            // Stay at the end of this one: the writer may append to it.
            None => Ok(false),
        }
    }

    /// A damaged record at `offset`: in the last segment it may be one being written (the
    /// read stops: false); in an earlier one it is reported and the segment's rest skipped.
    fn damaged(&mut self, offset: u64) -> Result<bool, LogError> {
        let Some(c) = self.at.as_ref() else {
            return Ok(false);
        };
        let (first, path, len) = (c.seg.first, c.seg.path.clone(), c.seg.len);
        let last = list_segments(&self.dir)
            .map_err(|e| LogError::Io {
                path: self.dir.clone(),
                source: e,
            })?
            .into_iter()
            .all(|f| f <= first);
        if last {
            return Ok(false);
        }
        error!(
            file = %path.display(),
            offset,
            skipped = len.saturating_sub(offset),
            "damaged record in a queue's log: the rest of this segment is skipped"
        );
        self.after(first)
    }
}

/// A record's message, or `None` if it does not decode.
pub fn decode(payload: &[u8]) -> Option<(Message, u64)> {
    let m = records::decode_message(payload).ok()?;
    if m.flags & records::PERSISTENT == 0 {
        return None;
    }
    // A large body keeps a buffer of its own (as `Message::from_content` does); a small one
    // is copied in with the rest.
    let message = if m.body.len() >= crate::message::INLINE_BODY_BELOW {
        Message::from_parts_shared(
            &m.exchange,
            &m.routing_key,
            m.properties,
            bytes::Bytes::copy_from_slice(m.body),
        )
    } else {
        Message::from_parts(&m.exchange, &m.routing_key, m.properties, m.body)
    }?;
    Some((message, m.expires_at))
}

/// What a scan of a segment's records from `offset` found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    pub count: u64,
    pub bytes: u64,
    /// One past the last seq found (0: none).
    pub end: u64,
    /// Where the valid records end.
    pub valid_len: u64,
    /// The file goes on past `valid_len` (a torn or damaged record there).
    pub damaged: bool,
}

/// Checks every record of `seg` from `offset` on (recovery: what a crash left past the
/// last synced extent, or a segment with none).
pub fn scan(seg: &mut SegmentFile, offset: u64) -> std::io::Result<Scan> {
    let mut s = Scan {
        valid_len: offset,
        ..Scan::default()
    };
    loop {
        match seg.record_at(s.valid_len, true)? {
            Found::Record { seq, payload, size } => {
                let Ok(m) = records::decode_message(payload) else {
                    s.damaged = true;
                    break;
                };
                s.count += 1;
                s.bytes += m.body.len() as u64;
                s.end = s.end.max(seq + 1);
                s.valid_len += size;
            }
            Found::End => {
                s.damaged = seg.len() > s.valid_len;
                break;
            }
            Found::Damaged => {
                s.damaged = true;
                break;
            }
        }
    }
    Ok(s)
}
