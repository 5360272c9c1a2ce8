//! Power loss: the `warren` binary runs on forgetfs (`tools/forgetfs`), a FUSE filesystem
//! that keeps what is written in memory and forgets, on command, everything not fsynced or
//! fdatasynced (and every name whose directory was not fsynced). Each round publishes with
//! confirms and consumes (`support::lab`), kills the broker with SIGKILL at a random moment,
//! then cuts the power: the unsynced data is dropped and the filesystem mounted again. After
//! several rounds on one data directory, a last start drains everything: every confirmed
//! message that was not acked is there, and every durable queue declared before a confirm.
//!
//! Needs root and /dev/fuse (CI has both). `WARREN_POWER_ROUNDS` sets the number of rounds
//! (default 5). The summary line (`power loss: rounds=...`) is printed with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use forgetfs::ForgetFs;
use support::lab::{Cut, Lab};

fn rounds() -> usize {
    support::env_or("WARREN_POWER_ROUNDS", 5)
}

/// `rounds()` rounds of publish, consume, SIGKILL and power cut on one data directory, then a
/// drain that must find every confirmed message not acked. `torn`: each cut keeps a random
/// prefix of the last unsynced write (a record cut mid-way: recovery must find it by its
/// checksum and cut it off, never deliver it).
async fn power_cuts(torn: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let mut fs = ForgetFs::mount(&mount).expect("mount forgetfs (needs root and /dev/fuse)");
    // The data directory is created by the broker inside the mount: its name must be synced too.
    let log = dir.path().join("broker.log");
    let mut lab = Lab::new(&mount.join("warren-data"), &log);
    for _ in 0..rounds() {
        lab.round(1000..=3000, Cut::PowerLoss { fs: &mut fs, torn })
            .await;
    }
    let summary = lab.drain().await;
    let st = fs.stats();
    // What recovery found of the torn writes that landed in a queue's log.
    let cut = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .matches("torn record at the end of a queue's log")
        .count();
    eprintln!(
        "power loss{}: {} | forgetfs: {} fdatasync, {} fsync, {} dir fsync, {} MB written, \
         {} MB unsynced dropped, {} names dropped, {} torn writes ({} bytes of them kept), {} torn log records cut \
         at recovery",
        if torn { " (torn writes)" } else { "" },
        summary.line,
        st.fdatasyncs,
        st.fsyncs,
        st.dir_syncs,
        st.bytes_written >> 20,
        st.bytes_lost >> 20,
        st.names_lost,
        st.torn_writes,
        st.torn_bytes_kept,
        cut
    );
    summary.assert_kept(&lab.rounds, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_mid_stream_loses_no_confirmed_message() {
    power_cuts(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_with_torn_writes_loses_nothing_confirmed_and_serves_nothing_corrupt() {
    power_cuts(true).await;
}
