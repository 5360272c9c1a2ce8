#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Content assembly (method + header + bodies) and its errors, as RabbitMQ's command
//! assembler words them: a frame out of order is 505 UNEXPECTED_FRAME, a body frame past the
//! declared size 501 FRAME_ERROR; once a `basic.publish` has started the content, the error
//! names it (60, 40).

use amq_protocol::protocol::BasicProperties;
use bytes::{Bytes, BytesMut};
use warren_codec::decode::decode_frame;
use warren_codec::{
    reply, ContentAssembler, ContentHeader, Frame, FrameError, Properties, Publish, ShortStr,
};

const NO_LIMIT: u64 = u64::MAX;

fn publish(rk: &str) -> Publish {
    Publish {
        exchange: ShortStr::new("").unwrap(),
        routing_key: ShortStr::new(rk).unwrap(),
        mandatory: false,
        immediate: false,
    }
}

fn header(body_size: u64) -> ContentHeader {
    ContentHeader {
        class_id: 60,
        body_size,
        properties: Properties::empty(),
    }
}

fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 256) as u8).collect()
}

fn check(e: FrameError, code: u16, ids: (u16, u16), text: &str) {
    assert_eq!(e.code, code, "{e}");
    assert_eq!((e.class_id, e.method_id), ids, "{e}");
    assert_eq!(e.text, text);
}

const EXPECTED_METHOD: &str = "expected method frame, got non method frame instead";
const EXPECTED_HEADER: &str =
    "expected content header for class 60, got non content header frame instead";
const EXPECTED_BODY: &str = "expected content body, got non content body frame instead";

#[test]
fn header_before_any_method_is_505() {
    let mut a = ContentAssembler::default();
    let e = a.header(header(5), NO_LIMIT).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (0, 0), EXPECTED_METHOD);
    assert!(!a.in_progress());
}

#[test]
fn body_before_any_method_is_505() {
    let mut a = ContentAssembler::default();
    let e = a.body(Bytes::from_static(b"hello")).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (0, 0), EXPECTED_METHOD);
}

#[test]
fn body_before_header_is_505_naming_publish() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    assert!(a.in_progress());
    let e = a.body(Bytes::from_static(b"hello")).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (60, 40), EXPECTED_HEADER);
}

#[test]
fn a_method_where_content_was_expected_is_505() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    check(
        a.out_of_order(),
        reply::UNEXPECTED_FRAME,
        (60, 40),
        EXPECTED_HEADER,
    );
    let e = a.start(publish("again")).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (60, 40), EXPECTED_HEADER);

    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    assert_eq!(a.header(header(10), NO_LIMIT).unwrap(), None);
    assert_eq!(a.body(Bytes::from_static(b"12345")).unwrap(), None);
    let e = a.start(publish("again")).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (60, 40), EXPECTED_BODY);
    // A second header mid-body, likewise.
    let e = a.header(header(10), NO_LIMIT).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (60, 40), EXPECTED_BODY);
}

#[test]
fn header_for_another_class_is_505() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    let mut h = header(5);
    h.class_id = 50;
    let e = a.header(h, NO_LIMIT).unwrap_err();
    check(
        e,
        reply::UNEXPECTED_FRAME,
        (60, 40),
        "expected content header for class 60, got one for class 50 instead",
    );
}

#[test]
fn body_bigger_than_declared_is_501() {
    let text = "content body frame exceeds remaining content size";
    // In one frame.
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(header(5), NO_LIMIT).unwrap();
    let e = a.body(Bytes::from_static(b"hello world")).unwrap_err();
    check(e, reply::FRAME_ERROR, (60, 40), text);
    // In the last of several.
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(header(10), NO_LIMIT).unwrap();
    assert_eq!(a.body(Bytes::from_static(b"1234")).unwrap(), None);
    assert_eq!(a.body(Bytes::from_static(b"5678")).unwrap(), None);
    let e = a.body(Bytes::from_static(b"9ab")).unwrap_err();
    check(e, reply::FRAME_ERROR, (60, 40), text);
}

#[test]
fn declared_size_over_the_limit_is_406_for_the_channel() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    let e = a.header(header(1001), 1000).unwrap_err();
    assert_eq!(e.code, reply::PRECONDITION_FAILED, "{e}");
    assert_eq!((e.class_id, e.method_id), (60, 40));
    assert_eq!(
        e.text,
        "message size 1001 is larger than configured max size 1000"
    );
    // Exactly the limit is fine.
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    assert_eq!(a.header(header(1000), 1000).unwrap(), None);
}

#[test]
fn zero_size_body_completes_at_the_header() {
    let mut a = ContentAssembler::default();
    a.start(publish("empty")).unwrap();
    let c = a.header(header(0), NO_LIMIT).unwrap().expect("complete");
    assert!(c.body.is_empty());
    assert_eq!(c.publish, publish("empty"));
    assert!(!a.in_progress());
    // So an empty body frame afterwards is out of order.
    let e = a.body(Bytes::new()).unwrap_err();
    check(e, reply::UNEXPECTED_FRAME, (0, 0), EXPECTED_METHOD);
}

#[test]
fn single_frame_body_is_kept_without_a_copy() {
    // The assembler shares the frame's bytes; the broker decides what to copy (message.rs).
    for size in [16usize, 4096, 64 * 1024] {
        let mut a = ContentAssembler::default();
        a.start(publish("q")).unwrap();
        a.header(header(size as u64), NO_LIMIT).unwrap();
        let chunk = Bytes::from(body(size));
        let ptr = chunk.as_ptr();
        let c = a.body(chunk).unwrap().expect("complete");
        assert_eq!(c.body.as_ptr(), ptr);
        assert_eq!(c.body, body(size));
    }
}

#[test]
fn multi_frame_bodies_reassemble() {
    for (size, chunk) in [
        (2usize, 1usize),
        (10, 3),
        (10_000, 1),
        (10_000, 4088),
        (131_064 * 3 + 17, 131_064),
        (1 << 20, 8184),
    ] {
        let want = body(size);
        let mut a = ContentAssembler::default();
        a.start(publish("big")).unwrap();
        assert_eq!(a.header(header(size as u64), NO_LIMIT).unwrap(), None);
        let mut got = None;
        let chunks: Vec<&[u8]> = want.chunks(chunk).collect();
        for (i, part) in chunks.iter().enumerate() {
            let r = a.body(Bytes::copy_from_slice(part)).unwrap();
            if i + 1 < chunks.len() {
                assert_eq!(r, None, "{size}/{chunk}: done early at chunk {i}");
                assert!(a.in_progress());
            } else {
                got = r;
            }
        }
        let c = got.expect("complete after the last chunk");
        assert_eq!(c.body.len(), size);
        assert!(c.body == want, "{size}/{chunk}: body differs");
        assert!(!a.in_progress());
    }
}

#[test]
fn uneven_chunks_reassemble() {
    let want = body(5000);
    let cuts = [0usize, 1, 2, 700, 701, 4096, 4999, 5000];
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(header(5000), NO_LIMIT).unwrap();
    let mut done = None;
    for w in cuts.windows(2) {
        done = a.body(Bytes::copy_from_slice(&want[w[0]..w[1]])).unwrap();
    }
    assert_eq!(done.expect("complete").body, want);
}

#[test]
fn empty_body_frames_in_the_middle_are_harmless() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(header(3), NO_LIMIT).unwrap();
    assert_eq!(a.body(Bytes::new()).unwrap(), None);
    assert_eq!(a.body(Bytes::from_static(b"ab")).unwrap(), None);
    assert_eq!(a.body(Bytes::new()).unwrap(), None);
    let c = a.body(Bytes::from_static(b"c")).unwrap().expect("complete");
    assert_eq!(&c.body[..], b"abc");
}

#[test]
fn one_message_after_another() {
    let mut a = ContentAssembler::default();
    for i in 0..5u8 {
        a.start(publish(&format!("k{i}"))).unwrap();
        a.header(header(2), NO_LIMIT).unwrap();
        assert_eq!(a.body(Bytes::from(vec![i])).unwrap(), None);
        let c = a.body(Bytes::from(vec![i])).unwrap().expect("complete");
        assert_eq!(c.publish.routing_key.as_str(), format!("k{i}"));
        assert_eq!(&c.body[..], &[i, i]);
    }
}

#[test]
fn reset_forgets_partial_content() {
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(header(10), NO_LIMIT).unwrap();
    a.body(Bytes::from_static(b"12345")).unwrap();
    a.reset();
    assert!(!a.in_progress());
    a.start(publish("q2")).unwrap();
    let c = a.header(header(0), NO_LIMIT).unwrap().expect("complete");
    assert_eq!(c.publish.routing_key.as_str(), "q2");
}

#[test]
fn properties_travel_with_the_content() {
    let props = Properties::from_amqp(
        &BasicProperties::default()
            .with_delivery_mode(2)
            .with_expiration("100".into()),
    )
    .unwrap();
    let mut a = ContentAssembler::default();
    a.start(publish("q")).unwrap();
    a.header(
        ContentHeader {
            class_id: 60,
            body_size: 1,
            properties: props.clone(),
        },
        NO_LIMIT,
    )
    .unwrap();
    let c = a.body(Bytes::from_static(b"x")).unwrap().expect("complete");
    assert_eq!(c.properties, props);
    assert!(c.properties.persistent());
    assert_eq!(c.properties.expiration(), Some("100"));
}

/// The assembler fed from the decoder, as a connection does: method, header and bodies off
/// the wire, for every split of the body at several frame sizes.
#[test]
fn wire_to_content() {
    let props = Properties::from_amqp(&BasicProperties::default().with_priority(3)).unwrap();
    let want = body(20_000);
    for frame_max in [4096u32, 8192, 131_072] {
        let mut wire = BytesMut::new();
        // basic.publish to "" / "q": class, method, ticket, exchange, routing key, bits
        let payload = [0, 60, 0, 40, 0, 0, 0, 1, b'q', 0];
        wire.extend_from_slice(&[1, 0, 1, 0, 0, 0, payload.len() as u8]);
        wire.extend_from_slice(&payload);
        wire.extend_from_slice(&[0xCE]);
        warren_codec::encode::content(&mut wire, 1, props.raw(), &want, frame_max);
        let mut a = ContentAssembler::default();
        let mut out = None;
        while let Some(f) = decode_frame(&mut wire, frame_max).unwrap() {
            match f {
                Frame::Method(1, m) => {
                    let warren_codec::Method::Publish(p) = m else {
                        panic!("{m:?}")
                    };
                    a.start(p).unwrap();
                }
                Frame::Header(1, h) => assert_eq!(a.header(h, NO_LIMIT).unwrap(), None),
                Frame::Body(1, b) => {
                    assert!(out.is_none(), "a body frame after completion");
                    out = a.body(b).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(wire.is_empty());
        let c = out.expect("complete");
        assert_eq!(c.publish, publish("q"));
        assert_eq!(c.properties, props);
        assert!(c.body == want, "frame_max {frame_max}: body differs");
    }
}
