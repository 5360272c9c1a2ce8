//! Bytes to frames. The 7-byte frame header is checked against `frame_max` before a byte of
//! payload is buffered, so an oversized frame costs nothing. `basic.publish` and `basic.ack`
//! are parsed by hand; other methods go through amq-protocol's generated parser.
//!
//! Reply codes follow RabbitMQ's reader: an oversized frame, a bad frame-end, an unknown
//! frame type, a heartbeat with a payload and a method or header it cannot decode are all
//! 501 FRAME_ERROR; an unknown class or method is 540.

use amq_protocol::protocol::parse_class;
use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::error::{CodecError, FrameError};
use crate::frame::{Ack, ContentHeader, Frame, Method, Publish, Qos, ShortStr};
use crate::properties::Properties;
use crate::{reply, FRAME_END, FRAME_OVERHEAD};

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;

/// Decodes frames, enforcing `frame_max` as RabbitMQ does: `frame_max` counts header, payload
/// and frame-end, but RabbitMQ lets a payload of up to `frame_max` itself through (its
/// `FRAME_SIZE_FUDGE`, for clients that get the 8 bytes of framing wrong), so we do too.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    frame_max: u32,
}

impl FrameDecoder {
    pub fn new(frame_max: u32) -> Self {
        FrameDecoder { frame_max }
    }

    pub fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// Set after tune-ok.
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_max = frame_max;
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(decode_frame(src, self.frame_max)?)
    }
}

/// One frame out of `src`, `Ok(None)` when more bytes are needed.
pub fn decode_frame(src: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    if src.len() < 7 {
        return Ok(None);
    }
    let kind = src[0];
    let channel = u16::from_be_bytes([src[1], src[2]]);
    let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]) as usize;
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::new(
            reply::FRAME_ERROR,
            format!("unknown frame type {kind}"),
        ));
    }
    if frame_max != 0 && size > frame_max as usize {
        return Err(FrameError::new(
            reply::FRAME_ERROR,
            format!("frame too large: {size}-byte payload, frame_max {frame_max}"),
        ));
    }
    let total = size + FRAME_OVERHEAD;
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    if src[total - 1] != FRAME_END {
        return Err(FrameError::new(
            reply::FRAME_ERROR,
            format!("bad frame end octet {:#04x}", src[total - 1]),
        ));
    }
    let mut frame = src.split_to(total);
    frame.advance(7);
    frame.truncate(size);
    let frame = match kind {
        FRAME_METHOD => Frame::Method(channel, decode_method(frame.freeze())?),
        FRAME_HEADER => Frame::Header(channel, decode_header(frame.freeze())?),
        // Shared with the read buffer; content assembly detaches small messages.
        FRAME_BODY => Frame::Body(channel, frame.freeze()),
        _ if size != 0 => {
            return Err(FrameError::new(
                reply::FRAME_ERROR,
                format!("heartbeat frame with a {size}-byte payload"),
            ))
        }
        _ => Frame::Heartbeat(channel),
    };
    Ok(Some(frame))
}

/// Every (class, method) pair AMQP 0-9-1 defines, to tell "unknown" (540) from "malformed" (501).
fn is_known_method(class: u16, method: u16) -> bool {
    let methods: &[u16] = match class {
        10 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 60, 61, 70, 71],
        20 => &[10, 11, 20, 21, 40, 41],
        30 => &[10, 11],
        40 => &[10, 11, 20, 21, 30, 31, 40, 51],
        50 => &[10, 11, 20, 21, 30, 31, 40, 41, 50, 51],
        60 => &[
            10, 11, 20, 21, 30, 31, 40, 50, 60, 70, 71, 72, 80, 90, 100, 110, 111, 120,
        ],
        85 => &[10, 11],
        90 => &[10, 11, 20, 21, 30, 31],
        _ => &[],
    };
    methods.contains(&method)
}

fn decode_method(payload: Bytes) -> Result<Method, FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::new(
            reply::FRAME_ERROR,
            "method frame too short",
        ));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    // RabbitMQ: 501 "cannot decode", naming the method.
    let malformed = || {
        FrameError::new(
            reply::FRAME_ERROR,
            format!("cannot decode method frame (class {class}, method {method})"),
        )
        .with_method(class, method)
    };
    // amq-protocol parses tables recursively without a bound: check them first.
    if let Some(at) = table_offset(class, method, &payload[4..]) {
        if let Err(e) = crate::table::check_table(&payload[4 + at..]) {
            return Err(FrameError::new(
                reply::FRAME_ERROR,
                format!("cannot decode method frame (class {class}, method {method}): {e}"),
            )
            .with_method(class, method));
        }
    }
    match (class, method) {
        (60, 40) => return decode_publish(payload.slice(4..)).ok_or_else(malformed),
        (60, 80) => return decode_ack(&payload[4..]).ok_or_else(malformed),
        (60, 10) => return decode_qos(&payload[4..]).ok_or_else(malformed),
        _ => {}
    }
    if !is_known_method(class, method) {
        return Err(FrameError::new(
            reply::NOT_IMPLEMENTED,
            format!("unknown method (class {class}, method {method})"),
        )
        .with_method(class, method));
    }
    match parse_class(&payload[..]) {
        Ok((&[], m)) => Ok(Method::Other(Box::new(m))),
        _ => Err(malformed()),
    }
}

/// Where the field table of a method that carries one starts in its arguments (after the
/// class and method ids), found by skipping the fields before it; None for methods without a
/// table, or arguments too short to hold one (the parser then reports them malformed).
fn table_offset(class: u16, method: u16, args: &[u8]) -> Option<usize> {
    // The fields before the table: 'o' octet (or packed bits), 's' short (reserved-1),
    // 'S' short string.
    let before: &[u8] = match (class, method) {
        (10, 10) => b"oo",               // connection.start: version-major, version-minor
        (10, 11) => b"",                 // connection.start-ok: client-properties first
        (40, 10) => b"sSSo",             // exchange.declare: exchange, type, bits
        (40, 30) | (40, 40) => b"sSSSo", // exchange.bind/unbind: dest, source, key, no-wait
        (50, 10) => b"sSo",              // queue.declare: queue, bits
        (50, 20) => b"sSSSo",            // queue.bind: queue, exchange, key, no-wait
        (50, 50) => b"sSSS",             // queue.unbind: queue, exchange, key
        (60, 20) => b"sSSo",             // basic.consume: queue, consumer-tag, bits
        _ => return None,
    };
    let mut at = 0usize;
    for f in before {
        at += match f {
            b'o' => 1,
            b's' => 2,
            _ => 1 + *args.get(at)? as usize,
        };
    }
    (at + 4 <= args.len()).then_some(at)
}

fn short_str(b: &mut Bytes) -> Option<ShortStr> {
    let len = *b.first()? as usize;
    if b.len() < 1 + len {
        return None;
    }
    let s = b.slice(1..1 + len);
    std::str::from_utf8(&s).ok()?;
    b.advance(1 + len);
    Some(ShortStr::from_checked(s))
}

fn decode_publish(mut b: Bytes) -> Option<Method> {
    if b.len() < 2 {
        return None;
    }
    b.advance(2); // reserved-1 (ticket)
    let exchange = short_str(&mut b)?;
    let routing_key = short_str(&mut b)?;
    if b.len() != 1 {
        return None;
    }
    let bits = b[0];
    Some(Method::Publish(Publish {
        exchange,
        routing_key,
        mandatory: bits & 1 != 0,
        immediate: bits & 2 != 0,
    }))
}

fn decode_ack(b: &[u8]) -> Option<Method> {
    let bytes: [u8; 9] = b.try_into().ok()?;
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&bytes[..8]);
    Some(Method::Ack(Ack {
        delivery_tag: u64::from_be_bytes(tag),
        multiple: bytes[8] & 1 != 0,
    }))
}

fn decode_qos(b: &[u8]) -> Option<Method> {
    let bytes: [u8; 7] = b.try_into().ok()?;
    Some(Method::Qos(Qos {
        prefetch_size: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        prefetch_count: u16::from_be_bytes([bytes[4], bytes[5]]),
        global: bytes[6] & 1 != 0,
    }))
}

fn decode_header(payload: Bytes) -> Result<ContentHeader, FrameError> {
    if payload.len() < 14 {
        return Err(FrameError::new(
            reply::FRAME_ERROR,
            "content header frame too short",
        ));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let mut size = [0u8; 8];
    size.copy_from_slice(&payload[4..12]);
    Ok(ContentHeader {
        class_id,
        body_size: u64::from_be_bytes(size),
        properties: Properties::parse(payload.slice(12..))?,
    })
}
