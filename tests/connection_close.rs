//! A client's connection.close: after close-ok the broker, like RabbitMQ, leaves the socket
//! open (discarding input) until the client hangs up, so frames the client had queued behind
//! its close (amqplib sends channel 0 ahead of a channel's pending publishes) neither fail
//! its writes nor reset the socket under the close-ok.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{connection as c, AMQPClass};
use support::raw::{client_close, publish_frames, put, Raw, Read};
use support::Env;

#[tokio::test]
async fn frames_pipelined_after_close_are_drained_until_the_client_hangs_up() {
    let env = Env::start().await;
    let mut r = Raw::open(env.addr()).await;

    // connection.close, then ~256 KiB of publishes in the same write.
    let mut out = Vec::new();
    put(&client_close(), &mut out);
    let body = vec![b'x'; 1024];
    for _ in 0..256 {
        publish_frames("", "nowhere", &body, &mut out);
    }
    r.try_write(&out)
        .await
        .expect("frames after close are read, not refused");
    assert!(matches!(
        r.recv().await,
        AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::CloseOk(_)))
    ));
    // The broker does not hang up first...
    if let Some(got) = r.next_within(Duration::from_millis(300)).await {
        panic!("expected the socket to stay open after close-ok, got {got:?}");
    }
    // ...and closes once the client has (RabbitMQ's sockets linger 0: a reset).
    r.shutdown_write().await;
    let t = Instant::now();
    match r.next_within(Duration::from_secs(5)).await {
        Some(Read::Closed) => {}
        other => panic!("expected the broker to close the socket, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(2));
}
