//! Crash safety: the `warren` binary killed with SIGKILL in the middle of a confirmed
//! publishing stream, several times over, on one data directory (the rounds and what is
//! checked: `support::lab`).
//!
//! What this cannot see: SIGKILL ends the process, not the machine, so whatever the broker
//! handed to the kernel survives even unsynced. It checks the order of things (the write
//! before the confirm, before the ack's delete) and recovery; a missing fsync shows only in
//! `power_loss.rs`, where forgetfs drops what was not synced.
//!
//! `WARREN_CRASH_ROUNDS` sets the number of rounds (default 5). The summary line
//! (`crash: rounds=...`) is printed with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use support::lab::{Cut, Lab};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_confirmed_message() {
    let rounds: usize = support::env_or("WARREN_CRASH_ROUNDS", 5);
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(&dir.path().join("data"), &dir.path().join("broker.log"));
    for _ in 0..rounds {
        lab.round(300..=1500, Cut::Kill).await;
    }
    let summary = lab.drain().await;
    eprintln!("crash: {}", summary.line);
    summary.assert_kept(&lab.rounds, 1000);
}
