//! A queue's log at start: its segments' extents and settled sets come from `logs/meta`;
//! only what lies past a segment's recorded length (the active segment's appends since its
//! extent was last recorded, or a whole segment whose extent never was) is read and checked. A torn
//! last record is cut off the last segment; the messages themselves stay on disk but for a
//! head read up to the caller's budget.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;

use tracing::{error, warn};

use super::append::{QueueLog, Seg};
use super::read::{scan, Read, SegmentFile};
use super::{list_segments, queue_dir, Extent, LogReader, Settled, SettledRecord, SEGMENT_SIZE};

/// One queue's log, recovered.
pub(crate) struct RecoveredLog {
    /// The writer's state for it.
    pub log: QueueLog,
    /// The oldest live messages, up to the budget.
    pub head: Vec<Read>,
    /// The live messages after the head: seqs `from..to`, how many, their body bytes.
    pub tail: (u64, u64, usize, usize),
    /// Every settled seq (a tail reader skips them).
    pub settled: Settled,
    /// One past the highest seq in the log.
    pub next_seq: u64,
    /// Segments whose records are stale (no file, or drained and removed).
    pub stale: Vec<u64>,
}

pub(crate) fn recover_queue(
    root: &Path,
    qid: u64,
    mut extents: BTreeMap<u64, Extent>,
    mut settled: BTreeMap<u64, SettledRecord>,
    head_budget: usize,
) -> std::io::Result<RecoveredLog> {
    let dir = queue_dir(root, qid);
    let firsts = list_segments(&dir)?;
    let mut segs = BTreeMap::new();
    let mut stale = Vec::new();
    let mut active = None;
    let n = firsts.len();
    for (i, &first) in firsts.iter().enumerate() {
        let last = i + 1 == n;
        let mut file = SegmentFile::open(&dir, first)?;
        let recorded = extents.remove(&first).filter(|e| e.len <= file.len());
        let from = recorded.map_or(0, |e| e.len);
        let s = scan(&mut file, from)?;
        let mut extent = recorded.unwrap_or_default();
        extent.count += s.count;
        extent.bytes += s.bytes;
        extent.end = extent.end.max(s.end).max(first);
        extent.len = s.valid_len;
        if s.damaged {
            if last {
                // A crash mid-write: the torn record was never confirmed.
                warn!(
                    file = %file.path().display(),
                    offset = s.valid_len,
                    cut = file.len() - s.valid_len,
                    "torn record at the end of a queue's log: cut"
                );
                let f = OpenOptions::new().write(true).open(file.path())?;
                f.set_len(s.valid_len)?;
                f.sync_data()?;
            } else {
                error!(
                    file = %file.path().display(),
                    offset = s.valid_len,
                    "damaged record in a queue's log: the rest of this segment is lost"
                );
            }
        }
        let seg = Seg {
            extent,
            settled: settled.remove(&first).unwrap_or_default(),
        };
        if last && extent.len < SEGMENT_SIZE {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(file.path())?;
            active = Some((first, f, extent.len));
        } else if seg.settled.count >= seg.extent.count {
            // Drained, but its delete did not reach the disk.
            std::fs::remove_file(file.path())?;
            stale.push(first);
            continue;
        }
        segs.insert(first, seg);
    }
    // Records of segments whose files are gone.
    stale.extend(extents.into_keys());
    stale.extend(settled.into_keys());
    let mut all_settled = Settled::default();
    let (mut live, mut live_bytes, mut next_seq) = (0usize, 0usize, 0);
    for seg in segs.values() {
        all_settled.extend(&seg.settled.seqs);
        live += seg.extent.count.saturating_sub(seg.settled.count) as usize;
        live_bytes += seg.extent.bytes.saturating_sub(seg.settled.bytes) as usize;
        next_seq = next_seq.max(seg.extent.end);
    }
    let first = segs.keys().next().copied().unwrap_or(next_seq);
    let head = if live > 0 && head_budget > 0 {
        match LogReader::new(dir.clone()).read(first, next_seq, head_budget, &all_settled) {
            Ok(h) => h,
            Err(e) => {
                error!(qid, "cannot read a queue's log: {e}");
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let head_bytes: usize = head.iter().map(|(_, m, _)| m.size()).sum();
    let tail_from = head.last().map_or(first, |(seq, _, _)| seq + 1);
    let tail_count = live.saturating_sub(head.len());
    Ok(RecoveredLog {
        log: QueueLog::recovered(segs, active),
        head,
        tail: (
            tail_from,
            next_seq,
            tail_count,
            if tail_count == 0 {
                0
            } else {
                live_bytes.saturating_sub(head_bytes)
            },
        ),
        settled: all_settled,
        next_seq,
        stale,
    })
}

#[cfg(test)]
#[path = "recover_tests.rs"]
mod tests;
