//! A deep queue's page file on a bad disk.
//!
//! A slow disk: paging (page file writes and reads) runs off the queue's lock and off the
//! runtime's workers, so it never stalls the other connections.
//!
//! The `warren` binary runs on forgetfs (`tools/forgetfs`) with one runtime worker
//! (`TOKIO_WORKER_THREADS=1`: any blocking call on it stalls every connection), and every
//! read and write of a page file (`*.pg`) takes [`DELAY`]. One connection fills a queue far
//! past its RAM budget and drains it; meanwhile another connection's round trips (a passive
//! declare, which touches no disk) must stay well under [`DELAY`]. With paging done under
//! the queue's lock, each page write and read stalls them by at least [`DELAY`].
//!
//! A full disk: page file writes that fail keep their messages in RAM, in order, and the
//! queue delivers every message once, in order, before and after the disk has room again.
//!
//! Needs root and /dev/fuse (CI has both).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use forgetfs::ForgetFs;
use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use support::child::{assert_no_panic, ChildBroker, Spawn};
use support::lab::open;

/// Publishes `count` transient messages numbered from `from` (the number leads the body),
/// each confirmed.
async fn publish_numbered(ch: &lapin::Channel, queue: &str, from: usize, count: usize) {
    for i in from..from + count {
        let mut body = format!("{i:06}").into_bytes();
        body.resize(BODY, b'.');
        ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

/// Consumes `count` messages (no-ack) and checks they are numbered 0.. in order.
async fn drain_in_order(ch: &lapin::Channel, queue: &str, count: usize) {
    let mut consumer = ch
        .basic_consume(
            queue.into(),
            "drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..count {
        let d = tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .expect("a delivery within 60 s")
            .expect("the consumer is open")
            .expect("a delivery");
        assert_eq!(
            String::from_utf8_lossy(&d.data[..6]),
            format!("{i:06}"),
            "message {i}"
        );
    }
}

/// Each page file read and write waits this long.
const DELAY: Duration = Duration::from_millis(200);
/// The deep queue's RAM budget, and what is published to it (most of it goes to disk).
const BUDGET: usize = 1 << 20;
const MESSAGES: usize = 768;
const BODY: usize = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_queue_on_a_slow_disk_does_not_stall_other_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let fs = ForgetFs::mount(&mount).expect("mount forgetfs (needs root and /dev/fuse)");
    fs.set_slow(Some((".pg", DELAY)));
    let log = dir.path().join("broker.log");
    let budget = BUDGET.to_string();
    let broker = ChildBroker::spawn(
        &mount.join("data"),
        &log,
        Spawn {
            env: &[("TOKIO_WORKER_THREADS", "1")],
            args: &["--queue-ram-bytes", &budget],
            ..Spawn::default()
        },
    )
    .await;

    // The prober: round trips on a connection of its own, until the deep queue is drained.
    let (_pconn, pch) = open(&broker.uri()).await;
    pch.queue_declare(
        "light".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn({
        let done = done.clone();
        async move {
            let (mut worst, mut trips) = (Duration::ZERO, 0u32);
            while !done.load(Ordering::Acquire) {
                let t = Instant::now();
                pch.queue_declare(
                    "light".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap();
                worst = worst.max(t.elapsed());
                trips += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (worst, trips)
        }
    });

    // The deep queue: filled past its budget (transient messages: only paging touches the
    // disk), then drained by a consumer; every message comes back once, in order.
    let (_conn, ch) = open(&broker.uri()).await;
    ch.queue_declare(
        "deep".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let started = Instant::now();
    publish_numbered(&ch, "deep", 0, MESSAGES).await;
    drain_in_order(&ch, "deep", MESSAGES).await;
    let elapsed = started.elapsed();
    done.store(true, Ordering::Release);
    let (worst, trips) = prober.await.unwrap();
    eprintln!(
        "slow disk: {MESSAGES} x {BODY} B through a {BUDGET} B budget in {elapsed:?} \
         ({DELAY:?} per page I/O); prober: {trips} round trips, worst {worst:?}"
    );
    assert_no_panic(&log, "the slow-disk run");
    // The run took many page I/Os' worth of time (the disk really was in the way) ...
    assert!(elapsed > DELAY * 4, "paging took only {elapsed:?}");
    // ... and none of it reached the other connection.
    assert!(
        worst < DELAY / 2,
        "a round trip took {worst:?} while a deep queue paged ({DELAY:?} per page I/O)"
    );
    broker.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_writes_on_a_full_disk_keep_their_messages_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let fs = ForgetFs::mount(&mount).expect("mount forgetfs (needs root and /dev/fuse)");
    let log = dir.path().join("broker.log");
    // A 256 KiB budget: the tail goes out 64 KiB at a time.
    let broker = ChildBroker::spawn(
        &mount.join("data"),
        &log,
        Spawn {
            args: &["--queue-ram-bytes", "262144"],
            ..Spawn::default()
        },
    )
    .await;
    let (_conn, ch) = open(&broker.uri()).await;
    ch.queue_declare(
        "deep".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Room for a few page writes, then none: the rest of 2.4 MB fails to page out.
    fs.set_capacity(Some(fs.used() + 200 * 1024));
    publish_numbered(&ch, "deep", 0, 600).await;
    // Page writes run after the confirms, on the pager's thread: wait for the refusal.
    let refused =
        || std::fs::read_to_string(&log).is_ok_and(|s| s.contains("cannot page messages out"));
    let waited = Instant::now();
    while !refused() && waited.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        refused(),
        "the disk never refused a page write:\n{}",
        support::child::tail(&log)
    );
    // Room again: later messages still queue behind those kept in RAM.
    fs.set_capacity(None);
    publish_numbered(&ch, "deep", 600, 200).await;
    drain_in_order(&ch, "deep", 800).await;
    assert_no_panic(&log, "the full-disk paging run");
    broker.stop();
}
