//! Each durable queue's persistent messages, in publish order, in a log of its own:
//! `DATA_DIR/logs/<qid>/<first-seq>.log`, segment files of up to [`SEGMENT_SIZE`], appended
//! by the store's writer and read back by anyone (the queue's pager, recovery).
//!
//! Why not sled: sled keeps RAM for every record it holds (3M persistent 16 B messages cost
//! 426 MB of RSS) and a deep queue was stored twice (sled and the page file). A log costs
//! no RAM per message: the writer keeps, per segment, its extent (seqs, count, bytes,
//! length) and its settled seqs as ranges ([`Settled`]); both are small records (`l`, `a`:
//! see `records`) in `logs/meta` ([`meta`], not sled: see there why), written by the
//! commit that changes them (an active segment's extent only when the writer is idle).
//! Start-up reads those, not the messages: only a segment's bytes past its recorded length
//! (what was appended since its extent was last recorded) are scanned. A segment whose every message is settled
//! is deleted; so is an active one, once drained, past [`RECYCLE_ACTIVE`] or when the
//! writer is idle, so a drained backlog gives its disk back.
//!
//! A record is `len:u32 crc:u32 seq:u64 message` (big-endian; `len` counts from `seq`;
//! the CRC32 covers `seq` and the message, itself `records::encode_message`). A torn
//! record (a crash mid-write) fails its length or checksum: recovery cuts the segment
//! there. A damaged record in the middle is reported with the file and offset, and the
//! rest of that segment is skipped; the queue goes on with the next segment.
//!
//! The layout is what a stream queue or a replica needs: records addressed by a queue's
//! seq, in order, in self-checking segments named by their first seq.

mod append;
pub mod journal;
pub(crate) mod meta;
mod read;
mod recover;
mod settled;

pub(crate) use append::{Logs, QueueLog};
pub(crate) use meta::MetaLog;
pub use read::LogReader;
pub(crate) use recover::recover_queue;
pub use settled::Settled;

use std::path::{Path, PathBuf};

use thiserror::Error;

/// A segment takes no more appends once it is this long.
pub const SEGMENT_SIZE: u64 = 16 << 20;
/// A fully settled active segment is deleted at the next commit once it is this long (else
/// when the writer goes idle): a consumer that keeps up never makes a file per commit.
pub const RECYCLE_ACTIVE: u64 = 1 << 20;
/// Bytes before a record's message: `len`, `crc`, `seq`.
pub const HEADER: usize = 16;
/// No record is longer (a message is bounded by the broker's max message size, 512 MiB at
/// most); a longer `len` is damage, not an allocation.
pub const MAX_RECORD: u32 = (512 << 20) + 4096;

pub fn queue_dir(root: &Path, qid: u64) -> PathBuf {
    root.join(format!("{qid:016x}"))
}

pub fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:016x}.log"))
}

/// The first seqs of a queue's segment files, in order (none if the directory is missing).
pub fn list_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if let Ok(first) = u64::from_str_radix(stem, 16) {
            out.push(first);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Appends one record for `seq` to `out`.
pub fn encode_record(
    seq: u64,
    message: &crate::message::Message,
    expires_at: u64,
    out: &mut Vec<u8>,
) {
    let start = open_frame(out);
    out.extend_from_slice(&seq.to_be_bytes());
    super::records::encode_message(message, super::records::PERSISTENT, expires_at, out);
    seal_frame(out, start);
}

/// Starts a `len:u32 crc:u32 payload` frame (a log record, a journal entry) at the end of
/// `out`; returns where it starts, for [`seal_frame`] once the payload is appended.
pub(crate) fn open_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; 8]);
    start
}

/// Fills in the length and CRC32 of the frame begun at `start` (both cover the payload).
pub(crate) fn seal_frame(out: &mut [u8], start: usize) {
    let len = (out.len() - start - 8) as u32;
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Opens `dir`'s file `path` to read and write, creating it if missing; a created file's
/// directory is synced, so the file itself survives a power cut.
pub(crate) fn open_or_create(dir: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    let existed = path.exists();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    if !existed {
        crate::store::durable::sync_dir(dir)?;
    }
    Ok(file)
}

/// A record's header, checked for plausibility: `(len, crc)`.
pub fn parse_header(h: &[u8]) -> Option<(u32, u32)> {
    let len = u32::from_be_bytes(h.get(..4)?.try_into().ok()?);
    let crc = u32::from_be_bytes(h.get(4..8)?.try_into().ok()?);
    (8..=MAX_RECORD).contains(&len).then_some((len, crc))
}

/// What a segment holds, as its `l` record says (and the writer keeps in RAM).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extent {
    /// One past its last seq.
    pub end: u64,
    /// Records and their body bytes.
    pub count: u64,
    pub bytes: u64,
    /// Bytes of valid records.
    pub len: u64,
}

impl Extent {
    pub fn encode(&self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&self.end.to_be_bytes());
        b[8..16].copy_from_slice(&self.count.to_be_bytes());
        b[16..24].copy_from_slice(&self.bytes.to_be_bytes());
        b[24..].copy_from_slice(&self.len.to_be_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Extent> {
        let u = |i: usize| -> Option<u64> {
            Some(u64::from_be_bytes(b.get(i..i + 8)?.try_into().ok()?))
        };
        Some(Extent {
            end: u(0)?,
            count: u(8)?,
            bytes: u(16)?,
            len: u(24)?,
        })
    }
}

/// A segment's settled seqs with their count and body bytes (its `a` record).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettledRecord {
    pub seqs: Settled,
    pub count: u64,
    pub bytes: u64,
}

impl SettledRecord {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.bytes.to_be_bytes());
        self.seqs.encode(out);
    }

    pub fn decode(b: &[u8]) -> Option<SettledRecord> {
        let count = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let bytes = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        let (seqs, _) = Settled::decode(b.get(16..)?)?;
        Some(SettledRecord { seqs, count, bytes })
    }
}

/// Why part of a log could not be read.
#[derive(Debug, Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn extents_and_settled_records_round_trip() {
        let e = Extent {
            end: 9,
            count: 3,
            bytes: 48,
            len: 200,
        };
        assert_eq!(Extent::decode(&e.encode()), Some(e));
        let mut r = SettledRecord::default();
        r.seqs.insert(4);
        r.count = 1;
        r.bytes = 16;
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(SettledRecord::decode(&b), Some(r));
    }
}
