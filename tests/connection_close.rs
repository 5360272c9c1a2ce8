//! A client's connection.close: after close-ok the broker, like RabbitMQ, leaves the socket
//! open (discarding input) until the client hangs up, so frames the client had queued behind
//! its close (amqplib sends channel 0 ahead of a channel's pending publishes) neither fail
//! its writes nor reset the socket under the close-ok.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel as chan, connection as c, AMQPClass};
use support::Env;

fn put(f: &AMQPFrame, out: &mut Vec<u8>) {
    let (b, _) = gen_frame(f)(WriteContext::from(Vec::new()))
        .unwrap()
        .into_inner();
    out.extend_from_slice(&b);
}

fn send(s: &mut TcpStream, f: &AMQPFrame) {
    let mut out = Vec::new();
    put(f, &mut out);
    s.write_all(&out).unwrap();
}

fn recv(s: &mut TcpStream, buf: &mut Vec<u8>) -> AMQPFrame {
    loop {
        if let Ok((rest, f)) = parse_frame(&buf[..]) {
            let used = buf.len() - rest.len();
            buf.drain(..used);
            return f;
        }
        let mut chunk = [0u8; 8192];
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "server closed the socket");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn conn(m: c::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(m))
}

#[tokio::test]
async fn frames_pipelined_after_close_are_drained_until_the_client_hangs_up() {
    let env = Env::start().await;
    let addr = env.addr();
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
        assert!(matches!(
            recv(&mut s, &mut buf),
            AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::Start(_)))
        ));
        send(
            &mut s,
            &conn(c::AMQPMethod::StartOk(c::StartOk {
                client_properties: Default::default(),
                mechanism: "PLAIN".into(),
                response: "\0guest\0guest".into(),
                locale: "en_US".into(),
            })),
        );
        let AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::Tune(tune))) =
            recv(&mut s, &mut buf)
        else {
            panic!("expected connection.tune");
        };
        send(
            &mut s,
            &conn(c::AMQPMethod::TuneOk(c::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            })),
        );
        send(
            &mut s,
            &conn(c::AMQPMethod::Open(c::Open {
                virtual_host: "/".into(),
            })),
        );
        assert!(matches!(
            recv(&mut s, &mut buf),
            AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::OpenOk(_)))
        ));
        send(
            &mut s,
            &AMQPFrame::Method(1, AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {}))),
        );
        assert!(matches!(
            recv(&mut s, &mut buf),
            AMQPFrame::Method(1, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_)))
        ));

        // connection.close, then ~256 KiB of publishes in the same write.
        let mut out = Vec::new();
        put(
            &conn(c::AMQPMethod::Close(c::Close {
                reply_code: 200,
                reply_text: "bye".into(),
                class_id: 0,
                method_id: 0,
            })),
            &mut out,
        );
        let body = vec![b'x'; 1024];
        for _ in 0..256 {
            put(
                &AMQPFrame::Method(
                    1,
                    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                        exchange: "".into(),
                        routing_key: "nowhere".into(),
                        mandatory: false,
                        immediate: false,
                    })),
                ),
                &mut out,
            );
            put(
                &AMQPFrame::Header(
                    1,
                    AMQPContentHeader {
                        class_id: 60,
                        body_size: body.len() as u64,
                        properties: AMQPProperties::default(),
                    },
                ),
                &mut out,
            );
            put(&AMQPFrame::Body(1, body.clone()), &mut out);
        }
        s.write_all(&out)
            .expect("frames after close are read, not refused");
        assert!(matches!(
            recv(&mut s, &mut buf),
            AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::CloseOk(_)))
        ));
        // The broker does not hang up first...
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut chunk = [0u8; 64];
        match s.read(&mut chunk) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            other => panic!("expected the socket to stay open after close-ok, got {other:?}"),
        }
        // ...and closes once the client has (RabbitMQ's sockets linger 0: a reset).
        s.shutdown(std::net::Shutdown::Write).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        match s.read(&mut chunk) {
            Ok(0) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            other => panic!("expected the broker to close the socket, got {other:?}"),
        }
        assert!(t.elapsed() < Duration::from_secs(2));
    })
    .await
    .unwrap();
}
