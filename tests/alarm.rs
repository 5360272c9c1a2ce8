//! Resource-alarm plumbing: with an alarm raised (the test hook stands in for the memory and
//! disk monitors of a later issue), clients that advertise `connection.blocked` get
//! connection.blocked, publishing connections stop being read (their messages wait in the
//! socket, nothing is lost), others go on; clearing it sends connection.unblocked.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
mod support;

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{queue, AMQPClass};
use support::raw::Raw;

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
fn ready(addr: &str, q: &str) -> u32 {
    let mut r = Raw::open(addr);
    r.send(&AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: q.into(),
            passive: true,
            ..Default::default()
        })),
    ));
    match r.recv() {
        AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => {
            ok.message_count
        }
        other => panic!("expected declare-ok, got {other:?}"),
    }
}

fn publish(r: &mut Raw, q: &str, body: &[u8]) {
    let mut out = Vec::new();
    r.publish_frames("", q, body, &mut out);
    r.send_bytes(&out);
}

#[tokio::test]
async fn an_alarm_blocks_publishers_and_clearing_it_unblocks_them() {
    let b = common::TestBroker::start().await;
    let addr = b.addr.to_string();
    // A lapin connection: lapin advertises the connection.blocked capability.
    let listener = b.connect().await;
    let (a, mut publisher) = {
        let a = addr.clone();
        tokio::task::spawn_blocking(move || {
            let mut p = Raw::open(&a);
            p.send(&AMQPFrame::Method(
                1,
                AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                    queue: "q".into(),
                    ..Default::default()
                })),
            ));
            assert!(matches!(
                p.recv(),
                AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))
            ));
            publish(&mut p, "q", b"before");
            (a, p)
        })
        .await
        .unwrap()
    };
    let count = |a: String| async move {
        tokio::task::spawn_blocking(move || ready(&a, "q"))
            .await
            .unwrap()
    };
    for _ in 0..100 {
        if count(a.clone()).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(count(a.clone()).await, 1);

    b.handle.set_alarm(Some("low on memory (test)"));
    until("connection.blocked", || listener.status().blocked()).await;
    let mut publisher = tokio::task::spawn_blocking(move || {
        publish(&mut publisher, "q", b"during");
        publisher
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The publisher is not read; a connection that never published still is.
    assert_eq!(count(a.clone()).await, 1);

    b.handle.set_alarm(None);
    until("connection.unblocked", || !listener.status().blocked()).await;
    for _ in 0..100 {
        if count(a.clone()).await == 2 {
            publisher = tokio::task::spawn_blocking(move || {
                publish(&mut publisher, "q", b"after");
                publisher
            })
            .await
            .unwrap();
            drop(publisher);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the message published during the alarm never arrived");
}
