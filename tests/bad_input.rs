#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input on raw sockets against a real broker: each case asserts the exact reply (reply
//! code and the class/method it names), that the socket then closes, and that the broker and
//! its other connections carry on untouched.
//!
//! The expected replies are RabbitMQ's, checked against a RabbitMQ node (3.10) and its
//! current source. Where RabbitMQ departs from the AMQP spec, we follow RabbitMQ:
//! - a heartbeat on a non-zero channel is 505 UNEXPECTED_FRAME (the spec says 501);
//! - a method it cannot decode is 501 FRAME_ERROR "cannot decode" (not 502);
//! - channel_max bounds how many channels are open, not their numbers;
//! - a frame's payload may be as large as frame_max itself (RabbitMQ's "fudge").
//!
//! One deliberate difference: an unknown class or method gets a 540 connection.close, where
//! RabbitMQ's reader crashes and drops the socket without a word.

mod support;

use std::time::{Duration, Instant};

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, connection as conn, queue, AMQPClass};
use support::raw::{
    channel_open, conn_frame, encode, header_frame, method_payload, method_with_table,
    nested_table, publish_frame, raw_frame, short, Raw, Read, PROTOCOL_HEADER,
};
use support::{drain, publish, server_named_queue, within, TestBroker};

/// The broker still serves: `other`, opened before the bad input, and a new connection both
/// declare a queue, publish to it and get the message back.
async fn assert_still_serving(b: &TestBroker, other: &lapin::Connection) {
    assert!(other.status().connected(), "{:?}", other.status());
    let fresh = within(b.connect()).await;
    for (i, c) in [other, &fresh].into_iter().enumerate() {
        let ch = within(c.create_channel()).await.unwrap();
        let q = within(server_named_queue(&ch)).await;
        let body = format!("still here {i}");
        publish(&ch, "", &q, body.as_bytes()).await;
        assert_eq!(drain(&ch, &q).await, [body]);
    }
    let _ = within(fresh.close(200, "bye".into())).await;
}

/// A broker, and a lapin connection to it opened before any bad input.
async fn setup() -> (TestBroker, lapin::Connection) {
    let b = TestBroker::start().await;
    let other = within(b.connect()).await;
    (b, other)
}

/// One bad input on a connection of its own: logged in (with channel 1 open when `ch1`),
/// then `writes`, one write each. The broker must close the connection with `code`, naming
/// `ids` (class, method).
struct Bad {
    case: &'static str,
    ch1: bool,
    writes: Vec<Vec<u8>>,
    code: u16,
    ids: (u16, u16),
}

fn bad(case: &'static str, ch1: bool, writes: Vec<Vec<u8>>, code: u16, ids: (u16, u16)) -> Bad {
    Bad {
        case,
        ch1,
        writes,
        code,
        ids,
    }
}

/// Each case against one broker, then that the broker and a connection opened before any of
/// them still serve. Returns the texts of the closes, in order; a failing case names itself.
async fn check<const N: usize>(cases: [Bad; N]) -> [String; N] {
    let (b, other) = setup().await;
    let mut texts = Vec::new();
    for c in cases {
        let mut r = if c.ch1 {
            Raw::open(b.addr).await
        } else {
            Raw::login(b.addr).await
        };
        for w in &c.writes {
            r.write(w).await;
        }
        texts.push(r.expect_close_with(c.case, c.code, c.ids).await);
    }
    assert_still_serving(&b, &other).await;
    texts.try_into().unwrap()
}

/// The handshake up to connection.tune, answered with `tune_ok` of the server's tune; the
/// broker must refuse it with 530 naming connection.tune. Returns the close's text.
async fn tune_ok_refused(
    b: &TestBroker,
    case: &str,
    tune_ok: impl FnOnce(conn::Tune) -> conn::TuneOk,
) -> String {
    let mut r = Raw::start(b.addr).await;
    r.start_ok("guest", false).await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(tune_ok(tune))))
        .await;
    // RabbitMQ names connection.tune in this close.
    r.expect_close_with(case, 530, (10, 30)).await
}

fn qos(ch: u16) -> Vec<u8> {
    encode(&AMQPFrame::Method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    ))
}

// ---- the protocol header -------------------------------------------------------------------

#[tokio::test]
async fn wrong_protocol_header_gets_ours_and_a_closed_socket() {
    let (b, other) = setup().await;
    for header in [
        &b"AMQP\x00\x00\x09\x02"[..],
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x01\x01\x00\x0a",
        b"HTTP/1.1",
        b"\x16\x03\x01\x02\x00\x01\x00\x01", // a TLS client hello
    ] {
        let mut r = Raw::tcp(b.addr).await;
        r.write(header).await;
        assert_eq!(r.read_to_close().await, PROTOCOL_HEADER, "{header:?}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn amqp_0_9_header_is_taken_as_0_9_1() {
    let (b, other) = setup().await;
    let mut r = Raw::tcp(b.addr).await;
    r.write(b"AMQP\x01\x01\x00\x09").await;
    let start = r.expect_start().await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    // And the connection works from there.
    r.start_ok("guest", false).await;
    r.finish_login(|t| t).await;
    r.open_channel(1).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn no_protocol_header_within_the_handshake_timeout_closes_the_socket() {
    let b = TestBroker::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let other = within(b.connect()).await;

    // Silence.
    let t0 = Instant::now();
    let mut r = Raw::tcp(b.addr).await;
    assert_eq!(r.read_to_close().await, b"");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Half a header.
    let mut r = Raw::tcp(b.addr).await;
    r.write(b"AMQ").await;
    assert_eq!(r.read_to_close().await, b"");

    // A header, then nothing: connection.start, then the socket closes.
    let t0 = Instant::now();
    let mut r = Raw::start(b.addr).await;
    r.expect_eof().await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    assert_still_serving(&b, &other).await;
}

// ---- framing -------------------------------------------------------------------------------

/// The 7-byte header of a frame of `kind` on channel 1 announcing `size` bytes of payload.
fn frame_header(kind: u8, size: u32) -> Vec<u8> {
    let mut header = vec![kind, 0, 1];
    header.extend_from_slice(&size.to_be_bytes());
    header
}

#[tokio::test]
async fn oversized_frame_is_501_before_its_payload_arrives() {
    // Only the 7-byte header of a method frame one byte over frame_max: the broker answers
    // without waiting for the payload.
    check([bad(
        "a method frame of 131,073 bytes",
        false,
        vec![frame_header(1, 131_073)],
        501,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn oversized_frame_after_a_lower_negotiated_frame_max_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::login_with(b.addr, |t| conn::TuneOk {
        frame_max: 8192,
        ..t
    })
    .await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&header_frame(1, 10_000)).await;
    r.write(&frame_header(3, 8193)).await;
    r.expect_close_with("a body frame of 8,193 bytes, frame_max 8,192", 501, (0, 0))
        .await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn payload_as_large_as_frame_max_passes_the_size_check_as_in_rabbitmq() {
    // RabbitMQ tolerates clients that forget the 8 bytes of framing: a payload of frame_max
    // bytes gets through. Sent on a channel with no publish, it then fails as content
    // out of order (505), which shows the frame itself was accepted.
    check([bad(
        "a body of frame_max bytes",
        true,
        vec![raw_frame(3, 1, &vec![0u8; 131_072])],
        505,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let mut f = encode(&channel_open(1));
    *f.last_mut().unwrap() = 0xCF;
    let [text] = check([bad("frame end 0xCF", false, vec![f], 501, (0, 0))]).await;
    assert!(text.contains("frame end"), "{text}");
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    check([bad(
        "frame type 9",
        false,
        vec![raw_frame(9, 0, b"")],
        501,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn garbage_after_the_handshake_is_501() {
    check([bad(
        "text",
        false,
        vec![b"hello, this is not AMQP at all\r\n".to_vec()],
        501,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn heartbeat_on_a_nonzero_channel_is_505_as_in_rabbitmq() {
    // The spec asks for 501; RabbitMQ answers 505 UNEXPECTED_FRAME, and so do we.
    check([bad(
        "heartbeat on channel 1",
        false,
        vec![encode(&AMQPFrame::InvalidHeartbeat(1))],
        505,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn heartbeat_with_a_payload_is_501() {
    check([bad(
        "heartbeat with 2 bytes",
        false,
        vec![raw_frame(8, 0, b"xx")],
        501,
        (0, 0),
    )])
    .await;
}

#[tokio::test]
async fn truncated_frame_then_eof_just_drops_the_connection() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    let f = encode(&publish_frame(1, "q"));
    r.write(&f[..f.len() / 2]).await;
    r.shutdown_write().await;
    // No reply at all: the broker just hangs up.
    assert_eq!(r.read_to_close().await, b"");
    assert_still_serving(&b, &other).await;
}

// ---- methods ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_class_is_540() {
    check([
        bad(
            "on an open channel",
            true,
            vec![raw_frame(1, 1, &method_payload(99, 10, b""))],
            540,
            (99, 10),
        ),
        bad(
            "on channel 0",
            false,
            vec![raw_frame(1, 0, &method_payload(99, 10, b"\0\0"))],
            540,
            (99, 10),
        ),
    ])
    .await;
}

#[tokio::test]
async fn unknown_method_in_a_known_class_is_540() {
    check([
        bad(
            "queue method 99",
            true,
            vec![raw_frame(1, 1, &method_payload(50, 99, b""))],
            540,
            (50, 99),
        ),
        // basic has no method 130 either, even on a channel never opened.
        bad(
            "basic method 130 on an unopened channel",
            false,
            vec![raw_frame(1, 5, &method_payload(60, 130, b""))],
            540,
            (60, 130),
        ),
    ])
    .await;
}

#[tokio::test]
async fn truncated_method_arguments_are_501_naming_the_method() {
    // RabbitMQ: 501 FRAME_ERROR "cannot decode", with the method's ids.
    check([
        // queue.declare whose queue name claims 5 bytes and has 2
        bad(
            "queue.declare",
            true,
            vec![raw_frame(1, 1, &method_payload(50, 10, b"\0\0\x05ab"))],
            501,
            (50, 10),
        ),
        // basic.ack (parsed by hand) without its bits
        bad(
            "basic.ack",
            true,
            vec![raw_frame(1, 1, &method_payload(60, 80, &[0; 8]))],
            501,
            (60, 80),
        ),
    ])
    .await;
}

#[tokio::test]
async fn method_on_an_unopened_channel_is_504() {
    let declare = AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            ..Default::default()
        })),
    );
    let [text] = check([bad(
        "queue.declare",
        false,
        vec![encode(&declare)],
        504,
        (50, 10),
    )])
    .await;
    assert!(text.contains("expected 'channel.open'"), "{text}");
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let [text] = check([bad(
        "channel.open on channel 1 again",
        true,
        vec![encode(&channel_open(1))],
        504,
        (20, 10),
    )])
    .await;
    assert!(text.contains("second 'channel.open'"), "{text}");
}

#[tokio::test]
async fn channel_number_above_channel_max_is_504() {
    // The spec bounds channel numbers by channel_max; RabbitMQ 3.10 would open channel 11 on
    // a connection tuned to 10 and only limits how many are open (530, tests/connection.rs).
    // Warren refuses the number with 504 CHANNEL_ERROR, as the project asks.
    let (b, other) = setup().await;
    for ch in [11, 2048, 65535] {
        let mut r = Raw::login_with(b.addr, |t| conn::TuneOk {
            channel_max: 10,
            ..t
        })
        .await;
        r.open_channel(10).await;
        r.send(&channel_open(ch)).await;
        let case = format!("channel {ch}");
        let text = r.expect_close_with(&case, 504, (20, 10)).await;
        assert!(text.contains("channel_max"), "{case}: {text}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn tune_ok_with_no_limit_is_530() {
    // RabbitMQ refuses frame_max = 0 or channel_max = 0 ("no limit") when it has limits.
    let (b, other) = setup().await;
    for (channel_max, frame_max) in [(0, 131072), (2047, 0)] {
        let case = format!("channel_max {channel_max}, frame_max {frame_max}");
        let text = tune_ok_refused(&b, &case, |_| conn::TuneOk {
            channel_max,
            frame_max,
            heartbeat: 0,
        })
        .await;
        assert!(text.contains("= 0"), "{case}: {text}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn connection_methods_out_of_place_are_504() {
    // RabbitMQ: CHANNEL_ERROR - unexpected method in connection state running.
    let out_of_place =
        |case, frame: AMQPFrame, ids| bad(case, false, vec![encode(&frame)], 504, ids);
    let texts = check([
        out_of_place(
            "close-ok",
            conn_frame(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
            (10, 51),
        ),
        out_of_place(
            "open",
            conn_frame(conn::AMQPMethod::Open(conn::Open {
                virtual_host: "/".into(),
            })),
            (10, 40),
        ),
        out_of_place(
            "tune-ok",
            conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
                channel_max: 10,
                frame_max: 8192,
                heartbeat: 0,
            })),
            (10, 31),
        ),
        // Not a connection method, on channel 0.
        out_of_place("channel.open on 0", channel_open(0), (20, 10)),
        out_of_place(
            "basic.ack on 0",
            AMQPFrame::Method(
                0,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 1,
                    multiple: false,
                })),
            ),
            (60, 80),
        ),
    ])
    .await;
    for (case, text) in [
        "close-ok",
        "open",
        "tune-ok",
        "channel.open on 0",
        "basic.ack on 0",
    ]
    .iter()
    .zip(texts)
    {
        assert_eq!(
            text, "CHANNEL_ERROR - unexpected method in connection state running",
            "{case}"
        );
    }
}

// ---- content -------------------------------------------------------------------------------

#[tokio::test]
async fn body_before_header_is_505() {
    let [text] = check([bad(
        "publish, body",
        true,
        vec![
            encode(&publish_frame(1, "q")),
            encode(&AMQPFrame::Body(1, b"hello".to_vec())),
        ],
        505,
        (60, 40),
    )])
    .await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    );
}

#[tokio::test]
async fn header_without_a_publish_is_505() {
    let [text, _] = check([
        bad(
            "a lone header",
            true,
            vec![encode(&header_frame(1, 5))],
            505,
            (0, 0),
        ),
        // A lone body frame, likewise.
        bad(
            "a lone body",
            true,
            vec![encode(&AMQPFrame::Body(1, b"hello".to_vec()))],
            505,
            (0, 0),
        ),
    ])
    .await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
    );
}

#[tokio::test]
async fn method_in_the_middle_of_content_is_505() {
    // The close names the publish whose content was cut, as RabbitMQ's does.
    let [_, text] = check([
        bad(
            "between the publish and its header",
            true,
            vec![encode(&publish_frame(1, "q")), qos(1)],
            505,
            (60, 40),
        ),
        bad(
            "between two body frames",
            true,
            vec![
                encode(&publish_frame(1, "q")),
                encode(&header_frame(1, 10)),
                encode(&AMQPFrame::Body(1, b"12345".to_vec())),
                encode(&publish_frame(1, "q")),
            ],
            505,
            (60, 40),
        ),
    ])
    .await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
    );
}

#[tokio::test]
async fn content_on_another_channel_in_between_is_fine() {
    // Content is assembled per channel: interleaving channels is legal.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(2).await;
    r.send(&publish_frame(1, "nowhere")).await;
    r.send(&publish_frame(2, "nowhere")).await;
    r.send(&header_frame(2, 1)).await;
    r.send(&header_frame(1, 1)).await;
    r.send(&AMQPFrame::Body(1, b"a".to_vec())).await;
    r.send(&AMQPFrame::Body(2, b"b".to_vec())).await;
    // Both channels still work: a round trip on each.
    for ch in [1, 2] {
        r.write(&qos(ch)).await;
        assert!(
            matches!(
                r.next().await,
                Read::Frame(AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))) if c == ch
            ),
            "channel {ch}"
        );
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn body_larger_than_declared_is_501() {
    // RabbitMQ: FRAME_ERROR - content body frame exceeds remaining content size.
    check([bad(
        "11 bytes of body for 5",
        true,
        vec![
            encode(&publish_frame(1, "q")),
            encode(&header_frame(1, 5)),
            encode(&AMQPFrame::Body(1, b"hello world".to_vec())),
        ],
        501,
        (60, 40),
    )])
    .await;
}

// ---- the handshake -----------------------------------------------------------------------

#[tokio::test]
async fn tune_ok_frame_max_out_of_bounds_is_530() {
    let (b, other) = setup().await;
    for frame_max in [4096u32, 8191, 131_073, u32::MAX] {
        let case = format!("frame_max {frame_max}");
        let text = tune_ok_refused(&b, &case, |tune| {
            assert_eq!(tune.frame_max, 131_072);
            conn::TuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            }
        })
        .await;
        assert!(
            text.contains(&format!("frame_max = {frame_max}")),
            "{case}: {text}"
        );
    }
    // The bounds themselves are fine.
    for frame_max in [8192u32, 131_072] {
        let mut r = Raw::login_with(b.addr, |t| conn::TuneOk { frame_max, ..t }).await;
        r.open_channel(1).await;
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn tune_ok_channel_max_above_the_servers_is_530() {
    let (b, other) = setup().await;
    tune_ok_refused(&b, "channel_max + 1", |tune| conn::TuneOk {
        channel_max: tune.channel_max + 1,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })
    .await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn wrong_password_with_authentication_failure_close_is_403() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("not-the-password", true).await;
    let text = r.expect_close_with("wrong password", 403, (0, 0)).await;
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn wrong_password_without_the_capability_just_closes_the_socket() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("not-the-password", false).await;
    assert_eq!(r.read_to_close().await, b"");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("guest", false).await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    r.send_open("no-such-vhost").await;
    let text = r.expect_close_with("no-such-vhost", 530, (10, 40)).await;
    assert_eq!(text, "NOT_ALLOWED - vhost no-such-vhost not found");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn heartbeats_are_sent_and_a_silent_client_is_dropped() {
    let (b, other) = setup().await;
    let mut r = Raw::login_with(b.addr, |t| conn::TuneOk { heartbeat: 1, ..t }).await;
    // From now on the client says nothing. The broker sends heartbeats (and nothing else),
    // then, after two intervals without a byte from us, drops the socket without a close.
    let t0 = Instant::now();
    let mut beats = 0;
    loop {
        match r.next_raw().await {
            Read::Frame(AMQPFrame::Heartbeat) => beats += 1,
            Read::Frame(f) => panic!("expected only heartbeats, got {f:?}"),
            Read::Closed => break,
        }
    }
    let silent = t0.elapsed();
    assert!(beats >= 1, "no heartbeat in {silent:?}");
    assert!(
        silent >= Duration::from_millis(1500) && silent < Duration::from_millis(4500),
        "dropped after {silent:?}"
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn a_client_that_heartbeats_is_kept() {
    let (b, other) = setup().await;
    let mut r = Raw::login_with(b.addr, |t| conn::TuneOk { heartbeat: 1, ..t }).await;
    // 3 s of heartbeats only, well past the 2 s the silent client above gets.
    for _ in 0..6 {
        r.send(&AMQPFrame::Heartbeat).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.open_channel(1).await;
    assert_still_serving(&b, &other).await;
}

// ---- field tables nested without bound ------------------------------------------------------

#[tokio::test]
async fn a_table_nested_2500_deep_before_login_is_501_and_the_broker_lives() {
    // The frame that overflowed the stack, before any login: client-properties nested deep.
    // Before tune-ok the broker takes frames of at most 8 KiB (RabbitMQ's FRAME_MIN_SIZE),
    // so the 17 KB one is refused by size, and one that fits (1,100 deep) by depth.
    let (b, other) = setup().await;
    for (depth, text) in [(2_500, "frame too large"), (1_100, "nested deeper than 64")] {
        let mut r = Raw::start(b.addr).await;
        let mut args = nested_table(depth, false);
        args.extend(short("PLAIN"));
        args.extend_from_slice(&11u32.to_be_bytes());
        args.extend_from_slice(b"\0guest\0guest");
        args.extend(short("en_US"));
        r.write(&raw_frame(1, 0, &method_payload(10, 11, &args)))
            .await;
        let close = r.expect_close().await;
        assert_eq!(close.reply_code, 501, "depth {depth}: {close:?}");
        assert!(
            close.reply_text.as_str().contains(text),
            "depth {depth}: {close:?}"
        );
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn deep_tables_in_method_arguments_are_501_and_shallow_ones_pass() {
    let (b, other) = setup().await;
    for (class, method) in [(50, 10), (40, 10), (50, 20), (60, 20)] {
        for array in [false, true] {
            let mut r = Raw::open(b.addr).await;
            let frame = raw_frame(
                1,
                1,
                &method_with_table(class, method, &nested_table(2_000, array)),
            );
            r.write(&frame).await;
            let case = format!("{class}.{method}, array {array}");
            let text = r.expect_close_with(&case, 501, (class, method)).await;
            assert!(text.contains("nested deeper than 64"), "{case}: {text}");
        }
    }
    // Nested a little (10 deep, unknown x-arguments are ignored): declared as usual.
    let mut r = Raw::open(b.addr).await;
    r.write(&raw_frame(
        1,
        1,
        &method_with_table(50, 10, &nested_table(10, false)),
    ))
    .await;
    match r.next().await {
        Read::Frame(AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn deep_publish_headers_are_refused_even_through_the_default_exchange() {
    let (b, other) = setup().await;
    for array in [false, true] {
        let mut r = Raw::open(b.addr).await;
        r.send(&publish_frame(1, "nowhere")).await;
        // Content header: class 60, weight 0, body size 0, flags = headers, the table.
        let mut h = vec![0, 60, 0, 0];
        h.extend_from_slice(&0u64.to_be_bytes());
        h.extend_from_slice(&(1u16 << 13).to_be_bytes());
        h.extend_from_slice(&nested_table(2_000, array));
        r.write(&raw_frame(2, 1, &h)).await;
        let c = r.expect_close().await;
        assert_eq!(c.reply_code, 502, "array {array}: {c:?}");
        assert!(
            c.reply_text.as_str().contains("nested deeper than 64"),
            "array {array}: {c:?}"
        );
    }
    assert_still_serving(&b, &other).await;
}
