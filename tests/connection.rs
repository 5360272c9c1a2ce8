//! Connections through lapin (and a raw client where lapin hides the wire): refused logins
//! and vhosts, tune negotiation as lapin sees it, heartbeats, many channels, close from
//! either side, and server shutdown closing every client with 320.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{channel as chan, connection as c, AMQPClass};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ErrorKind};
use support::raw::{channel_open, client_close, close_ok, Raw};
use support::{code, drain, is_hard, next_error, publish, uniq, within, Env};

async fn connect_uri(uri: &str) -> lapin::Result<Connection> {
    within(Connection::connect(uri, ConnectionProperties::default())).await
}

#[tokio::test]
async fn wrong_credentials_are_refused_with_403() {
    let env = Env::start().await;
    let addr = env.addr();
    for uri in [
        format!("amqp://guest:wrong@{addr}/%2f"),
        format!("amqp://nobody:guest@{addr}/%2f"),
    ] {
        match connect_uri(&uri).await {
            // lapin asks for authentication_failure_close, so the refusal is a
            // connection.close with ACCESS_REFUSED rather than a dropped socket.
            Err(e) => {
                assert_eq!(code(&e), Some(403), "{uri}: {e:?}");
                assert!(
                    support::text(&e).starts_with("ACCESS_REFUSED - Login was refused"),
                    "{e:?}"
                );
            }
            Ok(_) => panic!("{uri}: connected"),
        }
    }
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let env = Env::start().await;
    let uri = format!("amqp://guest:guest@{}/{}", env.addr(), uniq("vhost"));
    match connect_uri(&uri).await {
        Err(e) => {
            assert_eq!(code(&e), Some(530), "{e:?}");
            assert!(is_hard(&e), "{e:?}");
        }
        Ok(_) => panic!("connected to a missing vhost"),
    }
}

#[tokio::test]
async fn lapin_takes_the_servers_limits_by_default() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let cfg = conn.configuration();
    assert_eq!(
        (cfg.channel_max(), cfg.frame_max(), cfg.heartbeat()),
        (2047, 131072, 60)
    );
}

#[tokio::test]
async fn lower_client_limits_win_and_are_honoured() {
    let env = Env::start().await;
    let uri = format!(
        "amqp://guest:guest@{}/%2f?frame_max=8192&channel_max=10&heartbeat=5",
        env.addr()
    );
    let conn = connect_uri(&uri).await.unwrap();
    let cfg = conn.configuration();
    assert_eq!(
        (cfg.channel_max(), cfg.frame_max(), cfg.heartbeat()),
        (10, 8192, 5)
    );
    // Ten channels, no more (lapin enforces the negotiated maximum itself).
    let mut chans = Vec::new();
    for _ in 0..10 {
        chans.push(within(conn.create_channel()).await.unwrap());
    }
    let r = within(conn.create_channel()).await;
    assert!(
        matches!(
            r.as_ref().map_err(|e| e.kind()),
            Err(ErrorKind::ChannelsLimitReached)
        ),
        "{r:?}"
    );
    // 100 KiB each way in 8 KiB frames: the broker accepts the client's frames at that size
    // and splits its own deliveries to fit.
    let ch = &chans[9];
    let q = within(support::server_named_queue(ch)).await;
    let body: Vec<u8> = (0..100 * 1024).map(|i| (i % 253) as u8).collect();
    publish(ch, "", q.as_str(), &body).await;
    let got = within(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("a message");
    assert!(got.delivery.data == body, "body differs");
}

#[tokio::test]
async fn configured_limits_reach_the_client() {
    let b = support::TestBroker::start_with(|c| {
        c.channel_max = 16;
        c.frame_max = 16384;
        c.heartbeat = 7;
    })
    .await;
    let conn = b.connect().await;
    let cfg = conn.configuration();
    assert_eq!(
        (cfg.channel_max(), cfg.frame_max(), cfg.heartbeat()),
        (16, 16384, 7)
    );
    // With heartbeats off on the server, lapin (asking for none) has none either.
    let b = support::TestBroker::start_with(|c| c.heartbeat = 0).await;
    let conn = b.connect().await;
    assert_eq!(conn.configuration().heartbeat(), 0);
}

#[tokio::test]
async fn channel_numbers_are_bounded_by_the_negotiated_channel_max() {
    let env = Env::start().await;
    let close = within(async {
        let mut raw = Raw::login_with(env.addr(), |t| c::TuneOk {
            channel_max: 3,
            ..t
        })
        .await;
        for n in [1u16, 3, 2] {
            raw.send(&channel_open(n)).await;
            match raw.recv().await {
                AMQPFrame::Method(m, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_))) if m == n => {
                }
                other => panic!("channel.open {n}: got {other:?}"),
            }
        }
        raw.send(&channel_open(4)).await;
        raw.expect_close_frame().await
    })
    .await;
    assert_eq!(close.reply_code, 504, "{close:?}");
    assert!(
        close.reply_text.as_str().starts_with("CHANNEL_ERROR"),
        "{close:?}"
    );
}

#[tokio::test]
async fn the_broker_sends_heartbeats_at_the_negotiated_rate() {
    let env = Env::start().await;
    let beats = within(async {
        let mut raw = Raw::login_with(env.addr(), |t| c::TuneOk { heartbeat: 1, ..t }).await;
        let start = std::time::Instant::now();
        let mut beats = 0;
        // An idle connection with a 1 s heartbeat hears from the broker within the second.
        while start.elapsed() < Duration::from_millis(1200) {
            match raw.recv_within(Duration::from_millis(1200)).await {
                Some(AMQPFrame::Heartbeat) => {
                    beats += 1;
                    // Answer, so the broker does not give up on us.
                    raw.send(&AMQPFrame::Heartbeat).await;
                }
                Some(other) => panic!("unexpected frame {other:?}"),
                None => break,
            }
        }
        beats
    })
    .await;
    assert!(beats >= 1, "no heartbeat from the broker in 1.2 s");
}

#[tokio::test]
async fn many_channels_on_one_connection() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let mut chans = Vec::new();
    for _ in 0..300 {
        chans.push(within(conn.create_channel()).await.unwrap());
    }
    let mut ids: Vec<u16> = chans.iter().map(|c| c.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    // Each channel works on its own queue.
    let mut queues = Vec::new();
    for (i, ch) in chans.iter().enumerate() {
        let q = within(support::server_named_queue(ch)).await;
        publish(ch, "", q.as_str(), format!("from {i}").as_bytes()).await;
        queues.push(q.as_str().to_string());
    }
    for (i, (ch, q)) in chans.iter().zip(&queues).enumerate() {
        assert_eq!(drain(ch, q).await, [format!("from {i}")]);
    }
    // Closing half of them leaves the others alone, and new ones open.
    for ch in chans.iter().step_by(2) {
        within(ch.close(200, "OK".into())).await.unwrap();
    }
    for ch in chans.iter().skip(1).step_by(2) {
        support::sync(ch).await;
    }
    for _ in 0..150 {
        let ch = within(conn.create_channel()).await.unwrap();
        support::sync(&ch).await;
    }
}

#[tokio::test]
async fn client_close_is_answered_and_leaves_other_connections_alone() {
    let env = Env::start().await;
    let (a, ach) = env.open().await;
    let (b, bch) = env.open().await;
    within(a.close(200, "bye".into())).await.unwrap();
    assert!(a.status().closed(), "{:?}", a.status());
    assert!(within(ach.basic_qos(1, Default::default())).await.is_err());
    assert!(within(a.create_channel()).await.is_err());
    support::sync(&bch).await;
    within(b.close(200, "bye".into())).await.unwrap();
}

#[tokio::test]
async fn raw_client_close_gets_close_ok() {
    let env = Env::start().await;
    let reply = within(async {
        let mut raw = Raw::open(env.addr()).await;
        raw.send(&client_close()).await;
        raw.recv().await
    })
    .await;
    match reply {
        AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::CloseOk(_))) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
}

#[tokio::test]
async fn server_close_waits_for_close_ok_then_hangs_up() {
    let env = Env::start().await;
    let mut raw = Raw::open(env.addr()).await;
    // A second channel.open on channel 1 is a connection error (504 CHANNEL_ERROR).
    raw.send(&channel_open(1)).await;
    let close = match raw.recv().await {
        AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::Close(close))) => close,
        other => panic!("expected connection.close, got {other:?}"),
    };
    // Anything but close-ok is ignored now.
    raw.send(&channel_open(2)).await;
    assert!(
        raw.recv_within(Duration::from_millis(200)).await.is_none(),
        "broker answered after its connection.close"
    );
    raw.send(&close_ok()).await;
    let eof = raw.wait_eof(Duration::from_secs(2)).await;
    assert_eq!(close.reply_code, 504, "{close:?}");
    assert_eq!((close.class_id, close.method_id), (20, 10), "{close:?}");
    assert!(eof.is_ok(), "socket still open after close-ok");
}

#[tokio::test]
async fn lapin_sees_a_server_close_and_the_connection_ends() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let mut events = conn.events_listener();
    let q = within(support::server_named_queue(&ch)).await;
    let _first = within(support::consume(&ch, &q, "tag", false)).await;
    // A reused consumer tag is a connection error (530).
    let r = within(ch.basic_consume(
        q.as_str().into(),
        "tag".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    let e = r.map(|c| c.tag()).unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    let e = next_error(&mut events).await;
    support::assert_hard(&e, 530);
    assert!(within(conn.create_channel()).await.is_err());
}

#[tokio::test]
async fn shutdown_closes_every_client_with_320() {
    let b = support::TestBroker::start().await;
    let uri = b.uri();
    let conns = [b.connect().await, b.connect().await];
    let mut events: Vec<_> = conns.iter().map(|c| c.events_listener()).collect();
    let ch = within(conns[0].create_channel()).await.unwrap();
    support::sync(&ch).await;
    within(b.handle.shutdown()).await;
    for ev in &mut events {
        let e = next_error(ev).await;
        assert_eq!(code(&e), Some(320), "{e:?}");
        assert!(is_hard(&e), "{e:?}");
        assert!(support::text(&e).starts_with("CONNECTION_FORCED"), "{e:?}");
    }
    assert!(within(ch.basic_qos(1, Default::default())).await.is_err());
    // Nobody listens any more.
    assert!(connect_uri(&uri).await.is_err());
}

/// An AMQPLAIN response (a field table without its length) from `entries`, in order.
fn amqplain(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in entries {
        out.push(key.len() as u8);
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// A LOGIN or PASSWORD given twice in AMQPLAIN: the first counts, as RabbitMQ reads it.
#[tokio::test]
async fn amqplain_with_a_repeated_key_takes_the_first() {
    let env = Env::start().await;
    for (entries, accepted) in [
        (
            [
                ("LOGIN", "guest"),
                ("PASSWORD", "guest"),
                ("PASSWORD", "wrong"),
            ],
            true,
        ),
        (
            [
                ("LOGIN", "guest"),
                ("PASSWORD", "wrong"),
                ("PASSWORD", "guest"),
            ],
            false,
        ),
        (
            [
                ("LOGIN", "nobody"),
                ("LOGIN", "guest"),
                ("PASSWORD", "guest"),
            ],
            false,
        ),
    ] {
        let mut r = Raw::start(env.addr()).await;
        r.send(&support::raw::conn_frame(c::AMQPMethod::StartOk(
            c::StartOk {
                client_properties: support::raw::client_properties(true),
                mechanism: "AMQPLAIN".into(),
                response: String::from_utf8(amqplain(&entries)).unwrap().into(),
                locale: "en_US".into(),
            },
        )))
        .await;
        match r.next().await {
            support::raw::Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(c::AMQPMethod::Tune(_)),
            )) => assert!(accepted, "{entries:?}: logged in"),
            support::raw::Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(c::AMQPMethod::Close(close)),
            )) => {
                assert!(!accepted, "{entries:?}: refused: {close:?}");
                assert_eq!(close.reply_code, 403);
            }
            other => panic!("{entries:?}: {other:?}"),
        }
    }
}

/// Wrong passwords from one address are answered ever later (100 ms more per recent
/// failure, at most 1 s), still with RabbitMQ's 403: guessing is slow.
#[tokio::test]
async fn repeated_wrong_passwords_are_refused_ever_more_slowly() {
    let env = Env::start().await;
    let uri = format!("amqp://guest:wrong@{}/%2f", env.addr());
    let started = std::time::Instant::now();
    for _ in 0..5 {
        match connect_uri(&uri).await {
            Err(e) => assert_eq!(code(&e), Some(403), "{e:?}"),
            Ok(_) => panic!("a wrong password connected"),
        }
    }
    // 100 + 200 + 300 + 400 + 500 ms at least (more if other tests here failed logins too).
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "5 refusals took {took:?}"
    );
    // The right password still gets in at once.
    let ok = connect_uri(&format!("amqp://guest:guest@{}/%2f", env.addr())).await;
    assert!(ok.is_ok(), "{ok:?}");
}
