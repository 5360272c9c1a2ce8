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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_mid_stream_loses_no_confirmed_message() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let mut fs = ForgetFs::mount(&mount).expect("mount forgetfs (needs root and /dev/fuse)");
    // The data directory is created by the broker inside the mount: its name must be synced too.
    let mut lab = Lab::new(&mount.join("warren-data"), &dir.path().join("broker.log"));
    for _ in 0..rounds() {
        lab.round(
            1000..=3000,
            Cut::PowerLoss {
                fs: &mut fs,
                torn: false,
            },
        )
        .await;
    }
    let summary = lab.drain().await;
    let st = fs.stats();
    eprintln!(
        "power loss: {} | forgetfs: {} fdatasync, {} fsync, {} dir fsync, {} MB written, \
         {} MB unsynced dropped, {} names dropped",
        summary.line,
        st.fdatasyncs,
        st.fsyncs,
        st.dir_syncs,
        st.bytes_written >> 20,
        st.bytes_lost >> 20,
        st.names_lost
    );
    summary.assert_kept(&lab.rounds, 1000);
}
