//! A connection's output: frames waiting for the socket, written with `writev`.
//!
//! Small frames (methods, content headers, small bodies) are encoded into one buffer; a large
//! body is not copied but queued as a slice of the message's own bytes, between the frame
//! header and frame-end encoded around it. A delivery of a 128 MiB message costs the output a
//! few bytes, and every message reaching several consumers is still stored once.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use warren_codec::encode;

/// Bodies (or body-frame parts) at least this big are shared, not copied.
const SHARE_MIN: usize = 4096;
/// Slices handed to one `writev`.
pub const MAX_SLICES: usize = 64;
/// A drained buffer larger than this is given back rather than kept for the next burst.
const KEEP_CAPACITY: usize = 256 * 1024;

#[derive(Default)]
pub struct Output {
    /// Ready to go, in order, before `buf`.
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    queued: usize,
    /// Frames being encoded.
    buf: BytesMut,
}

/// A point to roll the output back to (see [`Output::truncate`]): its length then.
pub struct Mark(usize);

impl Output {
    /// Where encoders write frames.
    pub fn frames(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    pub fn len(&self) -> usize {
        self.queued + self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.chunks.clear();
        self.queued = 0;
        self.buf.clear();
        self.shrink();
    }

    pub fn mark(&self) -> Mark {
        Mark(self.len())
    }

    /// Drops what was added since `mark` (marks are taken and used within one handler,
    /// before the socket is written again, so nothing of it was sent).
    pub fn truncate(&mut self, mark: Mark) {
        let target = mark.0;
        if self.queued >= target {
            self.buf.clear();
        } else {
            self.buf.truncate(target - self.queued);
        }
        while self.queued > target {
            let excess = self.queued - target;
            let Some(last) = self.chunks.back_mut() else {
                break;
            };
            if last.len() <= excess {
                self.queued -= last.len();
                self.chunks.pop_back();
            } else {
                last.truncate(last.len() - excess);
                self.queued -= excess;
            }
        }
    }

    /// Queues `b` after everything encoded so far, without copying it.
    fn share(&mut self, b: Bytes) {
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            self.queued += head.len();
            self.chunks.push_back(head);
        }
        self.queued += b.len();
        self.chunks.push_back(b);
    }

    /// A content header and body frames (each at most `frame_max`), large parts of `body`
    /// shared rather than copied.
    pub fn content(&mut self, channel: u16, props: &[u8], body: &Bytes, frame_max: u32) {
        encode::content_header(&mut self.buf, channel, props, body.len() as u64);
        let chunk = (frame_max as usize)
            .saturating_sub(warren_codec::FRAME_OVERHEAD)
            .max(1);
        let mut at = 0;
        while at < body.len() {
            let end = (at + chunk).min(body.len());
            encode::body_frame_start(&mut self.buf, channel, (end - at) as u32);
            if end - at >= SHARE_MIN {
                self.share(body.slice(at..end));
            } else {
                self.buf.extend_from_slice(&body[at..end]);
            }
            encode::frame_end(&mut self.buf);
            at = end;
        }
    }

    /// The next pieces to write, in order; returns how many of `slices` it filled.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for c in &self.chunks {
            if n == slices.len() {
                return n;
            }
            slices[n] = IoSlice::new(c);
            n += 1;
        }
        if n < slices.len() && !self.buf.is_empty() {
            slices[n] = IoSlice::new(&self.buf);
            n += 1;
        }
        n
    }

    /// `n` bytes were written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.len() > n {
                front.advance(n);
                self.queued -= n;
                return;
            }
            n -= front.len();
            self.queued -= front.len();
            self.chunks.pop_front();
        }
        self.buf.advance(n.min(self.buf.len()));
        if self.is_empty() {
            self.shrink();
        }
    }

    /// An idle connection gives its buffers back (they are allocated again on next use).
    pub fn release(&mut self) {
        if self.is_empty() {
            self.chunks = VecDeque::new();
            self.buf = BytesMut::new();
        }
    }

    fn shrink(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = BytesMut::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the output would write, in order.
    fn drain(o: &mut Output) -> Vec<u8> {
        let mut all = Vec::new();
        while !o.is_empty() {
            let mut s = [IoSlice::new(&[]); 3];
            let n = o.slices(&mut s);
            // Write a little less than offered, to cross chunk boundaries.
            let mut take = s[..n].iter().map(|x| x.len()).sum::<usize>();
            take = (take / 2).max(1);
            let mut left = take;
            for x in &s[..n] {
                let k = left.min(x.len());
                all.extend_from_slice(&x[..k]);
                left -= k;
                if left == 0 {
                    break;
                }
            }
            o.advance(take);
        }
        all
    }

    #[test]
    fn shared_bodies_write_the_same_bytes_as_copied_ones() {
        let body = Bytes::from((0..20_000u32).map(|i| i as u8).collect::<Vec<_>>());
        let props = [0x10u8, 0, 2];
        let mut o = Output::default();
        encode::heartbeat(o.frames());
        o.content(5, &props, &body, 8192);
        encode::heartbeat(o.frames());
        let mut expected = bytes::BytesMut::new();
        encode::heartbeat(&mut expected);
        encode::content(&mut expected, 5, &props, &body, 8192);
        encode::heartbeat(&mut expected);
        assert!(o.chunks.len() > 2, "large parts were shared");
        assert_eq!(o.len(), expected.len());
        assert_eq!(drain(&mut o), &expected[..]);
        assert!(o.is_empty());
    }

    #[test]
    fn truncate_rolls_back_to_a_mark() {
        let mut o = Output::default();
        encode::heartbeat(o.frames());
        let m = o.mark();
        o.content(1, &[0, 0], &Bytes::from(vec![1u8; 10_000]), 131_072);
        o.truncate(m);
        assert_eq!(o.len(), 8);
        let mut expected = bytes::BytesMut::new();
        encode::heartbeat(&mut expected);
        assert_eq!(drain(&mut o), &expected[..]);
    }
}
