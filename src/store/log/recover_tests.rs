//! Recovery of one queue's log from files written by hand: a torn last record, a damaged
//! middle segment.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use super::recover_queue;
use crate::message::Message;
use crate::store::log::{encode_record, queue_dir, segment_path, Extent, LogReader, Settled};

const QID: u64 = 7;

fn message(seq: u64) -> Message {
    Message::from_parts("", "q", &[0, 0], format!("body-{seq}").as_bytes()).unwrap()
}

/// Writes a segment holding `seqs`; returns its bytes and each record's offset.
fn write_segment(root: &Path, first: u64, seqs: std::ops::Range<u64>) -> (Vec<u8>, Vec<usize>) {
    let dir = queue_dir(root, QID);
    std::fs::create_dir_all(&dir).unwrap();
    let mut b = Vec::new();
    let mut offsets = Vec::new();
    for seq in seqs {
        offsets.push(b.len());
        encode_record(seq, &message(seq), 0, &mut b);
    }
    std::fs::write(segment_path(&dir, first), &b).unwrap();
    (b, offsets)
}

fn seqs_and_bodies(head: &[super::Read]) -> Vec<(u64, Vec<u8>)> {
    head.iter()
        .map(|(seq, m, _)| (*seq, m.body().to_vec()))
        .collect()
}

#[test]
fn a_torn_last_record_is_cut_off_and_never_served() {
    let root = tempfile::tempdir().unwrap();
    let (b, offsets) = write_segment(root.path(), 1, 1..11);
    // The crash tore record 10: only part of it reached the disk.
    let torn = offsets[9] + (b.len() - offsets[9]) / 2;
    let path = segment_path(&queue_dir(root.path(), QID), 1);
    std::fs::write(&path, &b[..torn]).unwrap();
    // Sled knew records 1..=4 (the last synced extent); the rest is scanned.
    let extents = BTreeMap::from([(
        1,
        Extent {
            end: 5,
            count: 4,
            bytes: 4 * 6,
            len: offsets[4] as u64,
        },
    )]);
    let r = recover_queue(root.path(), QID, extents, BTreeMap::new(), usize::MAX).unwrap();
    let want: Vec<(u64, Vec<u8>)> = (1..10).map(|s| (s, format!("body-{s}").into())).collect();
    assert_eq!(seqs_and_bodies(&r.head), want);
    assert_eq!(r.next_seq, 10, "the torn record's seq is free again");
    assert_eq!(r.tail.2, 0, "nothing left to read");
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        offsets[9] as u64,
        "the torn bytes were cut off the file"
    );
}

#[test]
fn a_damaged_middle_segment_is_skipped_from_the_damage_and_the_rest_is_served() {
    let root = tempfile::tempdir().unwrap();
    let (mut b, offsets) = write_segment(root.path(), 1, 1..11);
    let (b2, _) = write_segment(root.path(), 11, 11..21);
    // A bit flips inside record 5's body, in a segment with a full recorded extent.
    let at = offsets[5] - 2;
    b[at] ^= 0x40;
    let dir = queue_dir(root.path(), QID);
    std::fs::write(segment_path(&dir, 1), &b).unwrap();
    let extent = |end, len| Extent {
        end,
        count: 10,
        bytes: 10 * 6,
        len,
    };
    let extents = BTreeMap::from([
        (1, extent(11, b.len() as u64)),
        (11, extent(21, b2.len() as u64)),
    ]);
    let r = recover_queue(root.path(), QID, extents, BTreeMap::new(), usize::MAX).unwrap();
    let served: Vec<u64> = r.head.iter().map(|(s, _, _)| *s).collect();
    let want: Vec<u64> = (1..5).chain(11..21).collect();
    assert_eq!(
        served, want,
        "records before the damage and every later segment"
    );
    assert!(seqs_and_bodies(&r.head)
        .iter()
        .all(|(s, body)| *body == format!("body-{s}").into_bytes()));
    // A reader of the same range later (the pager's tail read) skips the same way.
    let mut reader = LogReader::new(dir);
    let read = reader.read(3, 21, usize::MAX, &Settled::default()).unwrap();
    let served: Vec<u64> = read.iter().map(|(s, _, _)| *s).collect();
    assert_eq!(served, (3..5).chain(11..21).collect::<Vec<_>>());
}
