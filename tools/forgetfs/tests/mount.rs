//! forgetfs mounted for real: std::fs through the kernel, then a power cut.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;

use forgetfs::ForgetFs;

fn sync_dir(p: &std::path::Path) {
    File::open(p).unwrap().sync_all().unwrap();
}

#[test]
fn only_synced_data_and_names_survive_a_power_cut() {
    let dir = tempfile::tempdir().unwrap();
    let mut fs = ForgetFs::mount(dir.path()).expect("mount forgetfs (needs root and /dev/fuse)");
    let root = fs.path().to_path_buf();
    fs::create_dir(root.join("d")).unwrap();
    sync_dir(&root);
    let mut kept = File::create(root.join("d/kept")).unwrap();
    kept.write_all(b"durable").unwrap();
    kept.sync_data().unwrap();
    kept.write_all(b" and not").unwrap();
    drop(kept);
    let mut lost = File::create(root.join("d/lost")).unwrap();
    lost.write_all(b"never named durably").unwrap();
    lost.sync_all().unwrap();
    drop(lost);
    // Only the directory fsync makes the names durable: sync "d", then add one more name.
    let kept2 = root.join("d/kept2");
    sync_dir(&root.join("d"));
    fs::remove_file(root.join("d/lost")).unwrap();
    File::create(&kept2).unwrap();
    // sync_file_range writes back page-cache pages; there are none (direct I/O): no effect.
    let f = OpenOptions::new()
        .write(true)
        .open(root.join("d/kept"))
        .unwrap();
    f.write_all_at(b"XX", 0).unwrap();
    drop(f);

    let cut = fs.power_cut(false).unwrap();
    assert!(cut.bytes_lost >= 10);
    let mut s = String::new();
    File::open(root.join("d/kept"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "durable");
    // "lost" was removed after the directory sync: the removal is undone.
    assert!(root.join("d/lost").exists());
    assert!(!kept2.exists());
    let st = fs.stats();
    assert_eq!(st.power_cuts, 1);
    assert!(st.fdatasyncs >= 1 && st.dir_syncs >= 2);
}

#[test]
fn a_full_filesystem_answers_enospc_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = ForgetFs::mount(dir.path()).expect("mount forgetfs");
    fs.set_capacity(Some(64 * 1024));
    let path = fs.path().join("big");
    let mut f = File::create(&path).unwrap();
    let chunk = vec![7u8; 10_000];
    let mut written = 0;
    let err = loop {
        match f.write_all(&chunk) {
            Ok(()) => written += chunk.len(),
            Err(e) => break e,
        }
    };
    assert_eq!(err.raw_os_error(), Some(28), "{err:?}");
    assert!((60_000..=64 * 1024).contains(&written));
    let vfs = fs::metadata(&path).unwrap().len();
    assert_eq!(
        vfs,
        64 * 1024,
        "the short write filled the file to capacity"
    );
    fs.set_capacity(None);
    f.write_all(&chunk).unwrap();
    assert!(matches!(
        OpenOptions::new().create_new(true).write(true).open(&path),
        Err(e) if e.kind() == ErrorKind::AlreadyExists
    ));
}
