//! Soak under hostility: for about a minute a normal client publishes persistent messages
//! with confirms and consumes them, while other connections send mutated frames, hold
//! slowloris handshakes, declare with deep tables, bind adversarial topic patterns and
//! publish long keys through them, and churn connections. The normal client's round trip
//! (publish to delivery) stays under 50 ms at the 99th percentile, the broker lives, and
//! every confirmed message is delivered.
//!
//! Not part of the default `cargo test` run (`test = false` in Cargo.toml): the README's test
//! command runs it against the release build (`WARREN_TEST_BIN=target/release/warren cargo
//! test --test soak`), since the latency bound is about the broker as shipped.
//! `WARREN_SOAK_SECS` sets the duration (default 45).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{connection as conn, queue, AMQPClass};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use support::child::{assert_no_panic, ChildBroker};
use support::raw::{
    channel_open, conn_frame, encode, method_with_table, nested_table, raw_frame, Raw,
    PROTOCOL_HEADER,
};

/// The bytes of a whole login and a few methods, for mutating.
fn valid_session() -> Vec<u8> {
    let mut v = PROTOCOL_HEADER.to_vec();
    v.extend(encode(&conn_frame(conn::AMQPMethod::StartOk(
        conn::StartOk {
            client_properties: FieldTable::default(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0guest".into(),
            locale: "en_US".into(),
        },
    ))));
    v.extend(encode(&conn_frame(conn::AMQPMethod::TuneOk(
        conn::TuneOk {
            channel_max: 16,
            frame_max: 131_072,
            heartbeat: 0,
        },
    ))));
    v.extend(encode(&conn_frame(conn::AMQPMethod::Open(conn::Open {
        virtual_host: "/".into(),
    }))));
    v.extend(encode(&channel_open(1)));
    v.extend(encode(&AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "fuzzed".into(),
            ..Default::default()
        })),
    )));
    v
}

/// Hostile connection loops, until `stop`; each counts what it did in `done`.
fn hostile(
    port: u16,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    let addr = format!("127.0.0.1:{port}");
    let mut threads = Vec::new();
    // Mutated sessions: random bytes flipped, cut short or repeated.
    {
        let (addr, stop, done) = (addr.clone(), stop.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let base = valid_session();
            while !stop.load(Ordering::Relaxed) {
                let mut v = base.clone();
                for _ in 0..rand::random_range(1..6) {
                    let i = rand::random_range(0..v.len());
                    v[i] = rand::random();
                }
                v.truncate(rand::random_range(8..=v.len()));
                if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
                    let _ = s.write_all(&v);
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Slowloris: 300 sockets that dribble a protocol header and a partial frame.
    {
        let (addr, stop, done) = (addr.clone(), stop.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut socks = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if socks.len() < 300 {
                    if let Ok(s) = std::net::TcpStream::connect(&addr) {
                        socks.push((s, 0usize));
                    }
                }
                let dribble = b"AMQP\x00\x00\x09\x01\x01\x00\x00\x00\x00\x20\x00";
                for (s, at) in socks.iter_mut() {
                    if *at < dribble.len() {
                        let _ = s.write_all(&dribble[*at..*at + 1]);
                        *at += 1;
                    }
                }
                socks.retain(|(s, _)| s.peer_addr().is_ok());
                done.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // Deep tables in queue.declare after a real login.
    {
        let (addr, stop, done) = (addr.clone(), stop.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let deep = raw_frame(1, 1, &method_with_table(50, 10, &nested_table(2500, false)));
                while !stop.load(Ordering::Relaxed) {
                    // A broker that died must fail the test's own checks, not this thread: a
                    // login that panics ends only its task.
                    let Ok(mut r) = tokio::spawn(Raw::open(addr.clone())).await else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    let _ = r.try_write(&deep).await;
                    let _ = r.recv_within(Duration::from_millis(200)).await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }));
    }
    threads
}

/// Adversarial topic traffic through lapin until `stop`.
async fn adversarial_topic(uri: String, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let (c, ch) = support::lab::open(&uri).await;
    let q = support::server_named_queue(&ch).await;
    for n in 6..10 {
        let pattern = vec!["#"; n].join(".") + ".nomatch";
        support::bind(&ch, &q, "amq.topic", &pattern).await;
    }
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = (0..60)
            .map(|w| format!("{}", (w + i) % 7))
            .collect::<Vec<_>>()
            .join(".");
        let _ = ch
            .basic_publish(
                "amq.topic".into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                b"x",
                BasicProperties::default(),
            )
            .await;
        i += 1;
        done.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_client_is_served_while_others_attack() {
    let secs: u64 = support::env_or("WARREN_SOAK_SECS", 45);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let b = ChildBroker::start(&dir.path().join("data"), &log, &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let attacks = Arc::new(AtomicU64::new(0));
    let threads = hostile(b.port, stop.clone(), attacks.clone());
    // Two, on two connections: one busy worker thread would not starve a 2-thread runtime.
    let topics = [
        tokio::spawn(adversarial_topic(b.uri(), stop.clone(), attacks.clone())),
        tokio::spawn(adversarial_topic(b.uri(), stop.clone(), attacks.clone())),
    ];

    // The normal client: publish (persistent, confirmed), receive it, again.
    let (pc, pch) = support::lab::open(&b.uri()).await;
    let (cc, cch) = support::lab::open(&b.uri()).await;
    pch.queue_declare("soak".into(), support::durable(), FieldTable::default())
        .await
        .unwrap();
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut deliveries = support::consume(&cch, "soak", "soaker", true).await;
    let mut round_trips = Vec::new();
    let mut confirmed = HashSet::new();
    let mut received = HashSet::new();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(secs) {
        let id = format!("m{n}");
        n += 1;
        let sent = Instant::now();
        let confirm = tokio::time::timeout(
            Duration::from_secs(10),
            pch.basic_publish(
                "".into(),
                "soak".into(),
                BasicPublishOptions::default(),
                id.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            ),
        )
        .await
        .expect("publish in time")
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("the message back within 10 s")
            .unwrap()
            .unwrap();
        round_trips.push(sent.elapsed());
        received.insert(String::from_utf8_lossy(&got.data).into_owned());
        if tokio::time::timeout(Duration::from_secs(10), confirm)
            .await
            .expect("confirm in time")
            .unwrap()
            .is_ack()
        {
            confirmed.insert(id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    for t in topics {
        t.await.unwrap();
    }
    round_trips.sort();
    let p =
        |q: f64| round_trips[((round_trips.len() as f64 * q) as usize).min(round_trips.len() - 1)];
    let lost: Vec<_> = confirmed.difference(&received).collect();
    eprintln!(
        "soak: {secs}s, {} round trips (p50 {:?}, p99 {:?}, max {:?}), {} confirmed, {} lost; \
         {} hostile actions",
        round_trips.len(),
        p(0.5),
        p(0.99),
        round_trips.last().unwrap(),
        confirmed.len(),
        lost.len(),
        attacks.load(Ordering::Relaxed)
    );
    assert!(pc.status().connected() && cc.status().connected());
    assert!(lost.is_empty(), "confirmed but never delivered: {lost:?}");
    assert!(
        p(0.99) < Duration::from_millis(50),
        "p99 round trip {:?} under attack",
        p(0.99)
    );
    drop(b);
    assert_no_panic(&log, "the soak");
}
