#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The hand-written frame writers, read back with amq-protocol's parser (what a client such as
//! lapin sees) and with our own decoder: content split at frame_max, properties re-sent byte
//! for byte, deliver / get-ok / return / confirms.

use amq_protocol::frame::{parse_frame, AMQPFrame};
use amq_protocol::protocol::{basic, AMQPClass, BasicProperties};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Bytes, BytesMut};
use warren_codec::decode::decode_frame;
use warren_codec::{encode, Frame, Properties, FRAME_OVERHEAD};

/// Every frame in `buf`, parsed by amq-protocol.
fn parse_all(mut buf: &[u8]) -> Vec<AMQPFrame> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (rest, f) = parse_frame(buf).unwrap_or_else(|e| panic!("{e:?}"));
        out.push(f);
        buf = rest;
    }
    out
}

/// The sizes of the frames in `buf`, from their headers.
fn frame_sizes(buf: &[u8]) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        let size = u32::from_be_bytes([buf[i + 3], buf[i + 4], buf[i + 5], buf[i + 6]]) as usize;
        sizes.push(size + FRAME_OVERHEAD);
        i += size + FRAME_OVERHEAD;
    }
    assert_eq!(i, buf.len());
    sizes
}

fn full_props() -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-trace"),
        AMQPValue::LongString(LongString::from("abc")),
    );
    headers.insert(ShortString::from("n"), AMQPValue::LongLongInt(-5));
    BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_content_encoding("utf-8".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(4)
        .with_correlation_id("c-1".into())
        .with_reply_to("replies".into())
        .with_expiration("5000".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_234_567_890)
        .with_type("t".into())
        .with_user_id("guest".into())
        .with_app_id("app".into())
        .with_cluster_id("cl".into())
}

#[test]
fn content_splits_bodies_at_frame_max() {
    let props = Properties::from_amqp(&full_props()).unwrap();
    for frame_max in [4096u32, 8192, 131_072] {
        let chunk = frame_max as usize - FRAME_OVERHEAD;
        for len in [0, 1, chunk - 1, chunk, chunk + 1, 2 * chunk, 3 * chunk + 5] {
            let body: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let mut out = BytesMut::new();
            encode::content(&mut out, 3, props.raw(), &body, frame_max);
            let sizes = frame_sizes(&out);
            assert!(
                sizes.iter().all(|&s| s <= frame_max as usize),
                "{frame_max}/{len}: {sizes:?}"
            );
            let body_frames = len.div_ceil(chunk);
            assert_eq!(sizes.len(), 1 + body_frames, "{frame_max}/{len}: {sizes:?}");
            // Every body frame but the last is full.
            if sizes.len() > 2 {
                for s in &sizes[1..sizes.len() - 1] {
                    assert_eq!(*s, frame_max as usize);
                }
            }

            // What a client sees.
            let frames = parse_all(&out);
            let AMQPFrame::Header(3, h) = &frames[0] else {
                panic!("{:?}", frames[0])
            };
            assert_eq!(h.class_id, 60);
            assert_eq!(h.body_size, len as u64);
            assert_eq!(h.properties, full_props());
            let mut got = Vec::new();
            for f in &frames[1..] {
                let AMQPFrame::Body(3, b) = f else {
                    panic!("{f:?}")
                };
                got.extend_from_slice(b);
            }
            assert!(got == body, "{frame_max}/{len}: body differs");

            // And our decoder, at the same frame_max.
            let mut buf = out.clone();
            let Some(Frame::Header(3, ours)) = decode_frame(&mut buf, frame_max).unwrap() else {
                panic!("no header")
            };
            assert_eq!(ours.properties.raw(), props.raw());
            let mut n = 0;
            while let Some(f) = decode_frame(&mut buf, frame_max).unwrap() {
                assert!(matches!(f, Frame::Body(3, _)), "{f:?}");
                n += 1;
            }
            assert_eq!(n, body_frames);
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn properties_are_resent_byte_for_byte() {
    // A header decoded off the wire and written back by `encode::content` carries the very
    // property bytes the publisher sent.
    let mut published = BytesMut::new();
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    let (buf, _) = amq_protocol::frame::gen_frame(&AMQPFrame::Header(
        1,
        amq_protocol::frame::AMQPContentHeader {
            class_id: 60,
            body_size: 2,
            properties: full_props(),
        },
    ))(ctx)
    .unwrap()
    .into_inner();
    published.extend_from_slice(&buf);
    let Some(Frame::Header(1, h)) = decode_frame(&mut published, 131_072).unwrap() else {
        panic!("no header")
    };
    let mut out = BytesMut::new();
    encode::content(&mut out, 1, h.properties.raw(), b"hi", 131_072);
    let header_len = frame_sizes(&out)[0];
    assert_eq!(&out[..header_len], &buf[..]);
    // to_amqp agrees with what was published.
    assert_eq!(h.properties.to_amqp().unwrap(), full_props());
}

#[test]
fn empty_properties() {
    let mut out = BytesMut::new();
    encode::content(&mut out, 1, Properties::empty().raw(), b"", 131_072);
    assert_eq!(
        &out[..],
        &[2, 0, 1, 0, 0, 0, 14, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xCE]
    );
    let frames = parse_all(&out);
    let AMQPFrame::Header(1, h) = &frames[0] else {
        panic!()
    };
    assert_eq!(h.properties, BasicProperties::default());
}

fn basic(f: &AMQPFrame) -> (u16, &basic::AMQPMethod) {
    match f {
        AMQPFrame::Method(ch, AMQPClass::Basic(m)) => (*ch, m),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deliver_as_a_client_reads_it() {
    let long = "r".repeat(255);
    for (tag, redelivered, exchange, rk) in [
        (1u64, false, "", "q"),
        (u64::MAX, true, "amq.topic", long.as_str()),
    ] {
        let mut out = BytesMut::new();
        encode::deliver(
            &mut out,
            7,
            b"amq.ctag-1",
            tag,
            redelivered,
            exchange.as_bytes(),
            rk.as_bytes(),
        );
        let frames = parse_all(&out);
        assert_eq!(
            basic(&frames[0]),
            (
                7,
                &basic::AMQPMethod::Deliver(basic::Deliver {
                    consumer_tag: "amq.ctag-1".into(),
                    delivery_tag: tag,
                    redelivered,
                    exchange: exchange.into(),
                    routing_key: rk.into(),
                })
            )
        );
    }
}

#[test]
fn get_ok_as_a_client_reads_it() {
    let mut out = BytesMut::new();
    encode::get_ok(&mut out, 2, 9, true, b"x", b"k", 41);
    let frames = parse_all(&out);
    assert_eq!(
        basic(&frames[0]),
        (
            2,
            &basic::AMQPMethod::GetOk(basic::GetOk {
                delivery_tag: 9,
                redelivered: true,
                exchange: "x".into(),
                routing_key: "k".into(),
                message_count: 41,
            })
        )
    );
}

#[test]
fn return_as_a_client_reads_it() {
    let mut out = BytesMut::new();
    encode::basic_return(&mut out, 3, 312, "NO_ROUTE", b"ex", b"rk");
    let frames = parse_all(&out);
    assert_eq!(
        basic(&frames[0]),
        (
            3,
            &basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "ex".into(),
                routing_key: "rk".into(),
            })
        )
    );
}

#[test]
fn confirms_as_a_client_reads_them() {
    for (tag, multiple) in [(1u64, false), (1 << 40, true)] {
        let mut out = BytesMut::new();
        encode::basic_ack(&mut out, 4, tag, multiple);
        encode::basic_nack(&mut out, 4, tag, multiple);
        let frames = parse_all(&out);
        assert_eq!(
            basic(&frames[0]),
            (
                4,
                &basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: tag,
                    multiple
                })
            )
        );
        assert_eq!(
            basic(&frames[1]),
            (
                4,
                &basic::AMQPMethod::Nack(basic::Nack {
                    delivery_tag: tag,
                    multiple,
                    requeue: false,
                })
            )
        );
    }
}

#[test]
fn a_whole_delivery_reads_back_as_one_message() {
    let props = Properties::from_amqp(&full_props()).unwrap();
    let body = Bytes::from(vec![0xAB; 20_000]);
    let mut out = BytesMut::new();
    encode::deliver(&mut out, 1, b"c", 5, false, b"", b"q");
    encode::content(&mut out, 1, props.raw(), &body, 8192);
    let frames = parse_all(&out);
    assert!(matches!(basic(&frames[0]).1, basic::AMQPMethod::Deliver(_)));
    assert!(matches!(&frames[1], AMQPFrame::Header(1, h) if h.body_size == 20_000));
    assert_eq!(frames.len(), 2 + 20_000usize.div_ceil(8184));
}
