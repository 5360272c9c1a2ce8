//! The journal: a commit over several queues syncs only the journal; a power cut that
//! loses the segments' unsynced bytes is repaired by the replay; a torn entry ends it.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;

use super::{journal_path, replay};
use crate::message::Message;
use crate::store::log::{queue_dir, recover_queue, segment_path, Logs, MetaLog};

fn message(seq: u64) -> Message {
    Message::from_parts("", "q", &[0, 0], format!("body-{seq}").as_bytes()).unwrap()
}

/// One commit appending seqs 1..=n to queues 1 and 2 (journaled: two queues touched).
fn commit_two_queues(root: &std::path::Path, n: u64) -> Logs {
    let meta = MetaLog::open(root).unwrap();
    let mut logs = Logs::new(root.to_path_buf(), HashMap::new(), meta).unwrap();
    for seq in 1..=n {
        for qid in [1, 2] {
            logs.append(qid, seq, &message(seq), 0).unwrap();
        }
    }
    logs.write_pending().unwrap();
    logs.records(false);
    logs.sync().unwrap();
    logs.committed(false);
    logs
}

/// What a power cut leaves of a segment whose last bytes were never synced: `keep` bytes.
fn forget_segment_tail(root: &std::path::Path, qid: u64, keep: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(segment_path(&queue_dir(root, qid), 1))
        .unwrap();
    f.set_len(keep).unwrap();
}

fn served(root: &std::path::Path, qid: u64) -> Vec<u64> {
    let r = recover_queue(root, qid, BTreeMap::new(), BTreeMap::new(), usize::MAX).unwrap();
    r.head.iter().map(|(s, _, _)| *s).collect()
}

#[test]
fn a_commit_over_two_queues_survives_losing_their_unsynced_segment_bytes() {
    let root = tempfile::tempdir().unwrap();
    let logs = commit_two_queues(root.path(), 50);
    drop(logs);
    // The segments were not synced by the commit (the journal was): the power cut takes
    // their bytes.
    forget_segment_tail(root.path(), 1, 0);
    forget_segment_tail(root.path(), 2, 100);
    let r = replay(root.path()).unwrap();
    assert_eq!(r.entries, 2);
    assert!(!r.torn);
    let want: Vec<u64> = (1..=50).collect();
    assert_eq!(served(root.path(), 1), want);
    assert_eq!(served(root.path(), 2), want);
    assert_eq!(
        std::fs::metadata(journal_path(root.path())).unwrap().len(),
        0
    );
    // Replaying again (a crash right after a replay) changes nothing.
    assert_eq!(replay(root.path()).unwrap().entries, 0);
    assert_eq!(served(root.path(), 1), want);
}

#[test]
fn a_checkpoint_syncs_the_segments_and_empties_the_journal() {
    let root = tempfile::tempdir().unwrap();
    let mut logs = commit_two_queues(root.path(), 10);
    assert!(std::fs::metadata(journal_path(root.path())).unwrap().len() > 0);
    logs.checkpoint_if_due(true);
    assert_eq!(
        std::fs::metadata(journal_path(root.path())).unwrap().len(),
        0
    );
    assert_eq!(served(root.path(), 1), (1..=10).collect::<Vec<_>>());
}

#[test]
fn a_torn_journal_entry_ends_the_replay() {
    let root = tempfile::tempdir().unwrap();
    drop(commit_two_queues(root.path(), 20));
    let path = journal_path(root.path());
    let len = std::fs::metadata(&path).unwrap().len();
    // The last entry (queue 2's) only partly reached the disk, nor did queue 2's segment.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    forget_segment_tail(root.path(), 2, 0);
    let r = replay(root.path()).unwrap();
    assert_eq!((r.entries, r.torn), (1, true));
    assert_eq!(served(root.path(), 1), (1..=20).collect::<Vec<_>>());
    assert!(
        served(root.path(), 2).is_empty(),
        "nothing of a torn entry is served"
    );
}
