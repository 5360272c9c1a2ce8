//! Resource alarms. With an alarm raised, clients that advertise `connection.blocked` get
//! connection.blocked, publishing connections stop being read (their messages wait in the
//! socket, nothing is lost), others go on; clearing it sends connection.unblocked. First
//! with the test hook, then for real: the broker (a child process) pushed past a low memory
//! watermark by real publishes, and past a disk free limit on forgetfs.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{queue, AMQPClass};
use support::raw::{publish_frames, Raw};

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Ready messages in `q`, asked over a raw connection that never publishes.
async fn ready(addr: &str, q: &str) -> u32 {
    let mut r = Raw::open(addr).await;
    r.send(&AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: q.into(),
            passive: true,
            ..Default::default()
        })),
    ))
    .await;
    match r.recv().await {
        AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => {
            ok.message_count
        }
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

async fn publish(r: &mut Raw, q: &str, body: &[u8]) {
    let mut out = Vec::new();
    publish_frames("", q, body, &mut out);
    r.write(&out).await;
}

#[tokio::test]
async fn an_alarm_blocks_a_connection_when_it_publishes_and_clearing_it_unblocks() {
    // As RabbitMQ 3.10.8 does (checked with pika): a raised alarm blocks a connection, and
    // tells it connection.blocked "low on memory", only when it publishes; a connection that
    // does not publish is neither blocked nor told.
    let b = support::TestBroker::start().await;
    let addr = b.addr.to_string();
    // lapin connections: lapin advertises the connection.blocked capability.
    let listener = b.connect().await;
    let publisher = b.connect().await;
    let pch = publisher.create_channel().await.unwrap();
    pch.queue_declare("q".into(), Default::default(), Default::default())
        .await
        .unwrap();
    let send = |body: &'static [u8]| {
        let pch = pch.clone();
        async move {
            // lapin holds a publish back while blocked: don't wait for it to go out.
            tokio::spawn(async move {
                let _ = pch
                    .basic_publish(
                        "".into(),
                        "q".into(),
                        Default::default(),
                        body,
                        Default::default(),
                    )
                    .await;
            });
        }
    };
    let count = |a: String| async move { ready(&a, "q").await };
    send(b"before").await;
    let a = addr.clone();
    for _ in 0..100 {
        if count(a.clone()).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(a.clone()).await, 1);

    b.handle.set_alarm(Some("low on memory"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !listener.status().blocked(),
        "a connection that never published was told"
    );
    assert!(
        !publisher.status().blocked(),
        "blocked before publishing during the alarm"
    );
    // This publish is taken (RabbitMQ reads the frame that blocks it), then the connection
    // is blocked; what it sends next waits.
    send(b"during").await;
    until("connection.blocked", || publisher.status().blocked()).await;
    send(b"held back").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count(a.clone()).await, 2);
    assert!(!listener.status().blocked());

    // A raw client without the capability is blocked too, silently.
    let mut raw = Raw::open(&addr).await;
    publish(&mut raw, "q", b"raw during").await;
    // The publish that blocks it is taken (as the lapin one above). Only then the next one:
    // sent at once, both could come in one read (the blocking client of old ran on a thread
    // of its own, so the broker read between its writes).
    for _ in 0..100 {
        if count(a.clone()).await == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    publish(&mut raw, "q", b"raw after").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let during = count(addr.clone()).await;
    assert!(
        during <= 3,
        "a blocked raw publisher was read on: {during} ready"
    );

    b.handle.set_alarm(None);
    until("connection.unblocked", || !publisher.status().blocked()).await;
    for _ in 0..300 {
        if count(a.clone()).await == 5 {
            publish(&mut raw, "q", b"after").await;
            drop(raw);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the messages held back during the alarm never arrived: {} ready",
        count(a.clone()).await
    );
}

// ---- the real monitors --------------------------------------------------------------------

use futures_lite::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use support::child::{rss_of, try_http_get, ChildBroker, Spawn};
use support::durable;
use support::lab::open;

/// A metric's value from the broker's /metrics (retried while the endpoint comes up).
async fn metric(port: u16, name: &str) -> Option<f64> {
    for _ in 0..100 {
        if let Some(v) = metric_once(port, name).await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn metric_once(port: u16, name: &str) -> Option<f64> {
    support::child::metric(&try_http_get(port, "/metrics").await?, name)
}

/// Waits (up to `secs`) until `f` holds.
async fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a publisher grows the broker's memory in [`memory_scenario`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Growth {
    /// A queue nobody consumes (it does not page: a large RAM budget).
    Queue,
    /// A consumer with prefetch 0 that never acks: everything is unacked, in RAM.
    Unacked,
    /// A transaction never committed: its publishes wait in the channel.
    Transaction,
}

/// A broker (child process) with its memory watermark 150 MiB above its idle RSS, and a
/// publisher sending 256 KiB messages that grow it `growth`'s way: the publisher must be
/// blocked (connection.blocked) with RSS bounded. Returns the broker, its idle RSS, the
/// metrics port, the publisher's connection and task.
async fn memory_scenario(
    dir: &std::path::Path,
    growth: Growth,
) -> (
    ChildBroker,
    u64,
    u16,
    lapin::Connection,
    tokio::task::JoinHandle<()>,
) {
    let log = dir.join("broker.log");
    // Idle first, to set the watermark 150 MiB above what the broker needs to start.
    let idle = {
        let b = ChildBroker::start(&dir.join("probe"), &log, &[]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        rss_of(b.pid())
    };
    let watermark = format!("{}", idle + (150 << 20));
    let b = ChildBroker::spawn(
        &dir.join("data"),
        &log,
        Spawn {
            env: &[
                ("WARREN_MEMORY_HIGH_WATERMARK", watermark.as_str()),
                // Ready messages stay in RAM: the queue does not page them out.
                ("WARREN_QUEUE_RAM_BYTES", "4000000000"),
            ],
            metrics: true,
            ..Spawn::default()
        },
    )
    .await;
    let metrics_port = b.metrics();
    assert_eq!(
        metric(metrics_port, "rabbitmq_resident_memory_limit_bytes").await,
        Some((idle + (150 << 20)) as f64)
    );
    let (pconn, pub_ch) = open(&b.uri()).await;
    pub_ch
        .queue_declare("mem-q".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    if growth == Growth::Unacked {
        let (c, ch) = open(&b.uri()).await;
        let mut d = support::consume(&ch, "mem-q", "hoarder", false).await;
        tokio::spawn(async move {
            // Takes everything, acks nothing.
            let _c = c;
            while let Some(Ok(_)) = d.next().await {}
        });
    }
    if growth == Growth::Transaction {
        pub_ch.tx_select().await.unwrap();
    }
    let body = vec![7u8; 256 * 1024];
    let publisher = tokio::spawn(async move {
        for _ in 0..4000 {
            let r = pub_ch
                .basic_publish(
                    "".into(),
                    "mem-q".into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default(),
                )
                .await;
            if r.is_err() {
                break;
            }
        }
    });
    let status = pconn.status().clone();
    eventually(30, "the publisher to be blocked", || status.blocked()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_of(b.pid());
    eprintln!(
        "alarm: {growth:?}: blocked at {} MiB (watermark {} MiB, idle {} MiB)",
        rss >> 20,
        (idle >> 20) + 150,
        idle >> 20
    );
    assert_eq!(
        metric(metrics_port, "rabbitmq_alarms_memory_used_watermark").await,
        Some(1.0)
    );
    assert!(
        rss < idle + (400 << 20),
        "{growth:?}: RSS went to {} MiB with a watermark at {} MiB",
        rss >> 20,
        (idle >> 20) + 150
    );
    (b, idle, metrics_port, pconn, publisher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_past_the_memory_watermark_blocks_and_draining_unblocks() {
    let dir = tempfile::tempdir().unwrap();
    let (b, _idle, metrics_port, pconn, publisher) =
        memory_scenario(dir.path(), Growth::Queue).await;
    // A consumer drains (it never published, so it is not blocked): memory comes back.
    let (_cconn, cons_ch) = open(&b.uri()).await;
    let mut deliveries = support::consume(&cons_ch, "mem-q", "drain", true).await;
    let drainer = tokio::spawn(async move { while let Some(Ok(_)) = deliveries.next().await {} });
    let status = pconn.status().clone();
    eventually(30, "the publisher to be unblocked", || !status.blocked()).await;
    assert_eq!(
        metric(metrics_port, "rabbitmq_alarms_memory_used_watermark").await,
        Some(0.0)
    );
    let text = std::fs::read_to_string(dir.path().join("broker.log")).unwrap();
    assert!(text.contains("memory resource limit alarm set"), "{text}");
    assert!(
        text.contains("memory resource limit alarm cleared"),
        "{text}"
    );
    publisher.abort();
    drainer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_deliveries_and_uncommitted_transactions_count_toward_the_memory_alarm() {
    // Each grew the broker to 5.6 GB before (the publisher was never slowed).
    for growth in [Growth::Unacked, Growth::Transaction] {
        let dir = tempfile::tempdir().unwrap();
        let (_b, _idle, _port, _conn, publisher) = memory_scenario(dir.path(), growth).await;
        publisher.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filling_the_disk_past_its_free_limit_blocks_and_room_unblocks() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("mnt");
    std::fs::create_dir(&mount).unwrap();
    let fs = forgetfs::ForgetFs::mount(&mount).expect("mount forgetfs (needs root and /dev/fuse)");
    let log = dir.path().join("broker.log");
    let b = ChildBroker::spawn(
        &mount.join("data"),
        &log,
        Spawn {
            env: &[("WARREN_DISK_FREE_LIMIT", "20MB")],
            metrics: true,
            ..Spawn::default()
        },
    )
    .await;
    let metrics_port = b.metrics();
    fs.set_capacity(Some(fs.used() + 40_000_000));
    let (pconn, ch) = open(&b.uri()).await;
    ch.queue_declare("disk-q".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let body = vec![3u8; 64 * 1024];
    // Publishes until blocked: the disk may fill (nacks) before the monitor's next look.
    let publisher = tokio::spawn(async move {
        loop {
            let confirm = ch
                .basic_publish(
                    "".into(),
                    "disk-q".into(),
                    BasicPublishOptions::default(),
                    &body,
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await;
            match confirm {
                Ok(c) => {
                    let _ = c.await;
                }
                Err(_) => break,
            }
        }
    });
    let status = pconn.status().clone();
    eventually(30, "the publisher to be blocked", || status.blocked()).await;
    assert_eq!(
        metric(metrics_port, "rabbitmq_alarms_free_disk_space_watermark").await,
        Some(1.0)
    );
    assert_eq!(
        metric(metrics_port, "rabbitmq_disk_space_available_limit_bytes").await,
        Some(20_000_000.0)
    );
    fs.set_capacity(None);
    eventually(10, "the publisher to be unblocked", || !status.blocked()).await;
    assert_eq!(
        metric(metrics_port, "rabbitmq_alarms_free_disk_space_watermark").await,
        Some(0.0)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("disk resource limit alarm set"), "{text}");
    assert!(text.contains("disk resource limit alarm cleared"), "{text}");
    publisher.abort();
}
