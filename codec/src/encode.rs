//! Frames out. Control methods go through amq-protocol's generator; the per-message frames
//! (deliver, get-ok, return, confirms, content header and body) are written by hand straight
//! into the connection's write buffer, re-using the publisher's raw property bytes.

use amq_protocol::frame::{gen_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::gen_class;
use bytes::{BufMut, BytesMut};
use tokio_util::codec::Encoder;

use crate::error::{CodecError, FrameError};
use crate::{reply, AMQPClass, FRAME_END, FRAME_OVERHEAD};

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;

/// Encodes amq-protocol frames (the `Encoder` half of the codec).
#[derive(Debug, Default, Clone, Copy)]
pub struct FrameEncoder;

impl Encoder<&AMQPFrame> for FrameEncoder {
    type Error = CodecError;

    fn encode(&mut self, frame: &AMQPFrame, dst: &mut BytesMut) -> Result<(), CodecError> {
        let ctx = WriteContext::from(Vec::with_capacity(64));
        let (buf, _) = gen_frame(frame)(ctx)
            .map_err(|e| FrameError::new(reply::INTERNAL_ERROR, format!("encode: {e}")))?
            .into_inner();
        dst.extend_from_slice(&buf);
        Ok(())
    }
}

/// Writes a method frame for any generated method.
pub fn method(dst: &mut BytesMut, channel: u16, class: &AMQPClass) -> Result<(), FrameError> {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    let ctx = WriteContext::from(Vec::with_capacity(64));
    let (buf, _) = gen_class(class)(ctx)
        .map_err(|e| FrameError::new(reply::INTERNAL_ERROR, format!("encode: {e}")))?
        .into_inner();
    dst.extend_from_slice(&buf);
    end_frame(dst, start);
    Ok(())
}

/// Reserves the 7-byte header; returns where it starts.
fn begin_frame(dst: &mut BytesMut, kind: u8, channel: u16) -> usize {
    let start = dst.len();
    dst.put_u8(kind);
    dst.put_u16(channel);
    dst.put_u32(0);
    start
}

/// Patches the payload size and appends the frame-end octet.
fn end_frame(dst: &mut BytesMut, start: usize) {
    let size = (dst.len() - start - 7) as u32;
    dst[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    dst.put_u8(FRAME_END);
}

/// Short strings we write come from our own state or validated peer input; clip defensively.
fn put_short_str(dst: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    dst.put_u8(s.len() as u8);
    dst.put_slice(s);
}

pub fn heartbeat(dst: &mut BytesMut) {
    dst.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// `basic.deliver` method frame.
pub fn deliver(
    dst: &mut BytesMut,
    channel: u16,
    consumer_tag: &[u8],
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
) {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    dst.put_u16(60);
    dst.put_u16(60);
    put_short_str(dst, consumer_tag);
    dst.put_u64(delivery_tag);
    dst.put_u8(redelivered as u8);
    put_short_str(dst, exchange);
    put_short_str(dst, routing_key);
    end_frame(dst, start);
}

/// `basic.get-ok` method frame.
pub fn get_ok(
    dst: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &[u8],
    routing_key: &[u8],
    message_count: u32,
) {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    dst.put_u16(60);
    dst.put_u16(71);
    dst.put_u64(delivery_tag);
    dst.put_u8(redelivered as u8);
    put_short_str(dst, exchange);
    put_short_str(dst, routing_key);
    dst.put_u32(message_count);
    end_frame(dst, start);
}

/// `basic.return` method frame.
pub fn basic_return(
    dst: &mut BytesMut,
    channel: u16,
    reply_code: u16,
    reply_text: &str,
    exchange: &[u8],
    routing_key: &[u8],
) {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    dst.put_u16(60);
    dst.put_u16(50);
    dst.put_u16(reply_code);
    put_short_str(dst, reply_text.as_bytes());
    put_short_str(dst, exchange);
    put_short_str(dst, routing_key);
    end_frame(dst, start);
}

/// `basic.ack` from the broker (publisher confirm).
pub fn basic_ack(dst: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    dst.put_u16(60);
    dst.put_u16(80);
    dst.put_u64(delivery_tag);
    dst.put_u8(multiple as u8);
    end_frame(dst, start);
}

/// `basic.nack` from the broker (publisher confirm refused).
pub fn basic_nack(dst: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    let start = begin_frame(dst, FRAME_METHOD, channel);
    dst.put_u16(60);
    dst.put_u16(120);
    dst.put_u64(delivery_tag);
    dst.put_u8(multiple as u8); // requeue bit is meaningless from the server
    end_frame(dst, start);
}

/// A content header frame for a body of `body_len` bytes (`props`: the raw property list).
pub fn content_header(dst: &mut BytesMut, channel: u16, props: &[u8], body_len: u64) {
    dst.reserve(FRAME_OVERHEAD + 12 + props.len());
    dst.put_u8(FRAME_HEADER);
    dst.put_u16(channel);
    dst.put_u32(12 + props.len() as u32);
    dst.put_u16(60);
    dst.put_u16(0);
    dst.put_u64(body_len);
    dst.put_slice(props);
    dst.put_u8(FRAME_END);
}

/// The 7-byte header of a body frame of `len` bytes; the payload and [`frame_end`] follow.
pub fn body_frame_start(dst: &mut BytesMut, channel: u16, len: u32) {
    dst.put_u8(FRAME_BODY);
    dst.put_u16(channel);
    dst.put_u32(len);
}

pub fn frame_end(dst: &mut BytesMut) {
    dst.put_u8(FRAME_END);
}

/// Content header + body frames, bodies split so no frame exceeds `frame_max`.
/// `props` is the raw property list (flags + properties), as [`crate::Properties::raw`] holds it.
pub fn content(dst: &mut BytesMut, channel: u16, props: &[u8], body: &[u8], frame_max: u32) {
    let raw = props;
    dst.reserve(FRAME_OVERHEAD * 2 + 12 + raw.len() + body.len());
    dst.put_u8(FRAME_HEADER);
    dst.put_u16(channel);
    dst.put_u32(12 + raw.len() as u32);
    dst.put_u16(60);
    dst.put_u16(0);
    dst.put_u64(body.len() as u64);
    dst.put_slice(raw);
    dst.put_u8(FRAME_END);
    let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
    for part in body.chunks(chunk) {
        dst.put_u8(FRAME_BODY);
        dst.put_u16(channel);
        dst.put_u32(part.len() as u32);
        dst.put_slice(part);
        dst.put_u8(FRAME_END);
    }
}
