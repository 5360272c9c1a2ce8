//! Hostile and careless peers: each finding of the hostile-input review, as a test that
//! fails on the broker before the fix. Deep tables are in `bad_input.rs`, the alarms in
//! `alarm.rs`; here: exponential topic matching, memory a peer could grow without bound
//! (returns to a client that never reads, unfinished messages on many channels, one huge
//! message), connection-level limits, and the consumer timeout.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{connection as conn, AMQPClass};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use support::child::{rss_of, run_binary, ChildBroker, Spawn};
use support::raw::{content_frames, publish_frames_mandatory, Raw, Read, PROTOCOL_HEADER};
use support::TestBroker;
use support::{code, text, within};

/// The largest RSS of `pid` sampled every 20 ms while `f` runs.
async fn peak_rss<F: std::future::Future>(pid: u32, f: F) -> (u64, F::Output) {
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let s = sampling.clone();
    let sampler = tokio::spawn(async move {
        let mut peak = 0;
        while s.load(std::sync::atomic::Ordering::Relaxed) {
            peak = peak.max(rss_of(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        peak
    });
    let out = f.await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    (sampler.await.unwrap().max(rss_of(pid)), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_topic_bindings_cost_polynomial_time() {
    // Eight `#` and a 60-word key that does not match: seconds per publish (and, at seven,
    // a frozen broker) when each `#` tried every way to take words.
    let b = TestBroker::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    let pattern = ["#"; 8].join(".") + ".nomatch";
    support::bind(&ch, &q, "amq.topic", &pattern).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let key = (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(".");
    for _ in 0..50 {
        let confirm = within(support::send(
            &ch,
            "amq.topic",
            &key,
            b"x",
            BasicProperties::default(),
        ))
        .await;
        assert!(within(confirm).await.unwrap().is_ack());
    }
    // Another client is still served.
    let other = b.connect().await;
    let och = other.create_channel().await.unwrap();
    support::sync(&och).await;
    let depth = support::message_count(&ch, &q).await;
    assert_eq!(depth, 0, "the key does not match the binding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_to_a_client_that_never_reads_stop_its_input_not_our_memory() {
    // Mandatory publishes to nowhere come back as basic.return, body and all. A client that
    // never reads them used to grow the broker's output without bound (it kept reading).
    let b = ChildBroker::in_temp_dir(Spawn::default()).await;
    let addr = b.addr();
    let pid = b.pid();
    let before = rss_of(pid);
    let mut r = Raw::open(&addr).await;
    // Writes time out after 3 s.
    r.set_write_timeout(Duration::from_secs(3));
    let body = vec![5u8; 64 * 1024];
    let mut frames = Vec::new();
    publish_frames_mandatory("", "nowhere", &body, &mut frames);
    let mut sent = 0usize;
    // Until the broker stops reading (our write times out), or 2 GB.
    while sent < 2_000_000_000 {
        if r.try_write(&frames).await.is_err() {
            break;
        }
        sent += body.len();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let grew = rss_of(pid).saturating_sub(before);
    eprintln!(
        "hostile: sent {} MB of unroutable mandatory publishes without reading; broker RSS +{} MB",
        sent >> 20,
        grew >> 20
    );
    assert!(
        sent < 1_000_000_000,
        "the broker kept reading a client that never reads"
    );
    assert!(grew < 200 << 20, "RSS grew by {} MB", grew >> 20);
    drop(r);
    drop(b);
}

#[tokio::test]
async fn unfinished_messages_on_many_channels_are_capped() {
    // 43 channels each announcing a 128 MiB message and sending all but its last byte held
    // 5.6 GB. The bytes of unfinished messages on one connection are capped at twice the
    // largest message allowed: past it, 506 RESOURCE_ERROR (here with 1 MiB messages).
    let b = TestBroker::start_with(|c| c.max_message_size = 1 << 20).await;
    let mut r = Raw::open(b.addr).await;
    for ch in 2..45u16 {
        r.open_channel(ch).await;
    }
    let almost = vec![1u8; (1 << 20) - 1];
    let mut close = None;
    for ch in 2..45u16 {
        let mut frames = Vec::new();
        content_frames(ch, ("", "q", false), 1 << 20, &almost, &mut frames);
        if r.try_write(&frames).await.is_err() {
            break;
        }
        close = r.recv_within(Duration::from_millis(1)).await;
        if close.is_some() {
            break;
        }
    }
    let close = match close {
        Some(f) => f,
        None => r
            .recv_within(Duration::from_secs(5))
            .await
            .expect("a connection.close"),
    };
    match close {
        AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Close(c))) => {
            assert_eq!(c.reply_code, 506, "{c:?}");
            assert!(
                c.reply_text.as_str().contains("unfinished messages"),
                "{c:?}"
            );
        }
        other => panic!("expected connection.close 506, got {other:?}"),
    }
    // Others are served.
    let other = b.connect().await;
    let ch = other.create_channel().await.unwrap();
    support::sync(&ch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_128_mib_message_costs_at_most_about_twice_its_size() {
    // One 128 MiB message raised RSS by 660 MB (about 5x): its size reserved up front,
    // then copied into the consumer's output buffer.
    let b = ChildBroker::in_temp_dir(Spawn::default()).await;
    let pid = b.pid();
    let (pc, pch) = support::lab::open(&b.uri()).await;
    let (_cc, cch) = support::lab::open(&b.uri()).await;
    pch.queue_declare(
        "big".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut consumer = support::consume(&cch, "big", "c", true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_of(pid);
    let size = 128usize << 20;
    let body = vec![9u8; size];
    let (peak, got) = peak_rss(pid, async {
        support::send(&pch, "", "big", &body, BasicProperties::default()).await;
        tokio::time::timeout(Duration::from_secs(60), consumer.next())
            .await
            .expect("the message within 60 s")
            .unwrap()
            .unwrap()
    })
    .await;
    assert_eq!(got.data.len(), size);
    let grew = peak.saturating_sub(before);
    eprintln!(
        "hostile: one 128 MiB message: broker RSS +{} MiB at its peak",
        grew >> 20
    );
    assert!(
        grew <= 2 * size as u64 + (32 << 20),
        "RSS grew by {} MiB for a 128 MiB message",
        grew >> 20
    );
    drop(pc);
}

#[tokio::test]
async fn connections_in_their_handshake_are_capped() {
    // 8,000 sockets holding a partial frame cost +500 MiB until the handshake timeout. Now
    // frames before tune-ok are at most 8 KiB, and past `max_handshakes` such sockets are
    // closed at once; those that log in are served.
    let b = TestBroker::start_with(|c| c.max_handshakes = 20).await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..40 {
        let mut r = Raw::tcp(b.addr).await;
        let _ = r.try_write(PROTOCOL_HEADER).await;
        match r.next_within(Duration::from_millis(300)).await {
            // connection.start: in the handshake, held.
            Some(Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Start(_)),
            ))) => held.push(r),
            _ => refused += 1,
        }
    }
    assert_eq!(held.len(), 20, "{refused} refused");
    assert_eq!(refused, 20);
    // A partial frame larger than 8 KiB before login is refused at its header (after
    // connection.start, read above): connection.close 501.
    let mut r = held.into_iter().next().unwrap();
    let mut header = vec![1u8, 0, 0];
    header.extend_from_slice(&(128u32 * 1024).to_be_bytes());
    r.write(&header).await;
    let close = r.expect_close().await;
    assert_eq!(close.reply_code, 501, "{close:?}");
    // Once the others are gone, logins work again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = b.connect().await;
    let ch = c.create_channel().await.unwrap();
    support::sync(&ch).await;
}

#[tokio::test]
async fn accept_errors_at_the_open_files_limit_are_logged_once_a_second() {
    // At the open-files limit "accept failed" was logged 20 times a second.
    let mut b = ChildBroker::in_temp_dir(Spawn {
        open_files: Some(48),
        ..Spawn::default()
    })
    .await;
    let mut socks = Vec::new();
    for _ in 0..100 {
        if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", b.port)) {
            socks.push(s);
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    b.kill();
    let text = std::fs::read_to_string(b.log()).unwrap();
    let lines = text.matches("accept failed").count();
    assert!(lines >= 1, "the limit was never reached:\n{text}");
    assert!(lines <= 5, "{lines} accept-failed lines in 3 s:\n{text}");
    assert!(text.contains("errors="), "{text}");
}

#[tokio::test]
async fn an_unacked_delivery_past_the_consumer_timeout_closes_its_channel_with_406() {
    // RabbitMQ 3.10.8's words (checked with pika and consumer_timeout = 3000; it checks once
    // a minute, Warren once a second).
    let b = TestBroker::start_with(|c| c.consumer_timeout = Some(500)).await;
    let conn = b.connect().await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    support::publish(&ch, "", &q, b"late").await;
    let mut consumer = support::consume(&ch, &q, "slow", false).await;
    let _d = support::next_delivery(&mut consumer).await;
    let started = Instant::now();
    let e = support::next_error(&mut events).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(code(&e), Some(406), "{e:?}");
    assert_eq!(
        text(&e),
        "PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value \
         used: 500 ms. This timeout value can be configured, see consumers doc guide to learn more"
    );

    // x-consumer-timeout on the queue wins; a basic.get's delivery counts too.
    let conn = b.connect().await;
    let mut events = conn.events_listener();
    let ch = conn.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert("x-consumer-timeout".into(), AMQPValue::LongLongInt(300));
    ch.queue_declare(
        "timed".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        args,
    )
    .await
    .unwrap();
    support::publish(&ch, "", "timed", b"got").await;
    let got = ch
        .basic_get("timed".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap();
    assert!(got.is_some());
    let e = support::next_error(&mut events).await;
    assert!(text(&e).contains("Timeout value used: 300 ms"), "{e:?}");

    // Acked in time: nothing happens.
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    support::publish(&ch, "", &q, b"prompt").await;
    let m = ch
        .basic_get(q.as_str().into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
}

#[test]
fn a_frame_max_outside_its_bounds_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["0", "4096", "4294967295"] {
        let path = dir.path().join("w.toml");
        std::fs::write(&path, format!("frame_max = {bad}\n")).unwrap();
        let out = run_binary(
            &dir.path().join("data"),
            &["--config", path.to_str().unwrap()],
        );
        assert_eq!(out.status.code(), Some(2), "frame_max = {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("frame_max"), "frame_max = {bad}: {err}");
    }
}
