//! A consumer connection: one task that reads deliveries in large batches, takes each
//! message's send timestamp from its first body bytes, and writes multiple-acks.
//!
//! The three frames of a delivery (`basic.deliver`, content header, body) are scanned in
//! place in the read buffer: only the delivery tag, body size and timestamp are read, so a
//! delivery costs no allocation. `decode_frame` would parse `basic.deliver` through
//! amq-protocol (three `String`s and a `Box`) and copy small bodies, which is right for a
//! broker and too slow for a load tool; every other frame still goes through it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Buf;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use warren_codec::decode::decode_frame;
use warren_codec::protocol::basic;
use warren_codec::{encode, AMQPClass, Frame, Method, FRAME_END, FRAME_OVERHEAD};

use crate::conn::{err, Conn, Result, CHANNEL};
use crate::stats::{new_histogram, Stats};

/// What one consumer does.
#[derive(Clone, Copy)]
pub struct Config {
    /// `None` for autoack (no-ack consume); otherwise send a multiple ack once this many
    /// deliveries are unacknowledged.
    pub ack_every: Option<u64>,
}

/// Where we are inside a delivery.
#[derive(Default)]
struct Delivery {
    tag: u64,
    /// Body bytes still to come.
    remaining: u64,
    /// The next body frame is the message's first (it carries the timestamp).
    first_body: bool,
}

struct State {
    cfg: Config,
    cur: Delivery,
    /// Deliveries since the last ack, and the tag of the latest.
    unacked: u64,
    last_tag: u64,
    hist: Histogram<u64>,
}

/// Runs until `stop` fires; returns the latency histogram (nanoseconds).
pub async fn run(
    mut conn: Conn,
    cfg: Config,
    stats: Arc<Stats>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> Result<Histogram<u64>> {
    let mut st = State {
        cfg,
        cur: Delivery::default(),
        unacked: 0,
        last_tag: 0,
        hist: new_histogram()?,
    };
    loop {
        let want_write = !conn.wbuf.is_empty();
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = conn.stream.readable() => {
                r?;
                if conn.read_some()? {
                    // One clock read per batch: every message in it had arrived by now.
                    let now = epoch.elapsed().as_nanos() as u64;
                    let n = st.scan(&mut conn, now).await?;
                    Stats::add(&stats.delivered, n);
                }
            }
            r = conn.stream.writable(), if want_write => {
                r?;
                conn.write_some()?;
            }
        }
    }
    // Acks still owed (fewer than --ack-every since the last) go out before the close, so
    // a drain leaves nothing to be requeued.
    if st.unacked > 0 {
        encode::basic_ack(&mut conn.wbuf, CHANNEL, st.last_tag, true);
    }
    let _ = conn.flush().await;
    conn.close().await;
    Ok(st.hist)
}

impl State {
    /// Consumes every whole frame in the read buffer; returns the messages completed.
    async fn scan(&mut self, conn: &mut Conn, now: u64) -> Result<u64> {
        let mut done = 0;
        loop {
            let buf = &conn.rbuf[..];
            if buf.len() < 7 {
                break;
            }
            let kind = buf[0];
            let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
            let total = size + FRAME_OVERHEAD;
            if total > conn.frame_max as usize {
                return Err(err(format!(
                    "frame of {total} bytes over frame_max {}",
                    conn.frame_max
                )));
            }
            if buf.len() < total {
                break;
            }
            if buf[total - 1] != FRAME_END {
                return Err(err("bad frame-end octet from the broker"));
            }
            let payload = &buf[7..7 + size];
            match kind {
                // basic.deliver: class 60, method 60, consumer-tag, delivery-tag, ...
                1 if payload.starts_with(&[0, 60, 0, 60]) => {
                    let ctag_len = usize::from(*payload.get(4).unwrap_or(&0));
                    let at = 5 + ctag_len;
                    let tag = payload
                        .get(at..at + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| err("malformed basic.deliver"))?;
                    self.cur = Delivery {
                        tag,
                        remaining: 0,
                        first_body: true,
                    };
                }
                // content header: class, weight, body size, properties
                2 => {
                    let body_size = payload
                        .get(4..12)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map(u64::from_be_bytes)
                        .ok_or_else(|| err("malformed content header"))?;
                    self.cur.remaining = body_size;
                    if body_size == 0 {
                        done += self.complete(&mut conn.wbuf);
                    }
                }
                3 => {
                    if self.cur.first_body {
                        self.cur.first_body = false;
                        if let Some(ts) = payload
                            .get(..8)
                            .and_then(|b| <[u8; 8]>::try_from(b).ok())
                            .map(u64::from_be_bytes)
                        {
                            if ts > 0 && ts <= now {
                                self.hist.saturating_record(now - ts);
                            }
                        }
                    }
                    self.cur.remaining = self.cur.remaining.saturating_sub(size as u64);
                    if self.cur.remaining == 0 {
                        done += self.complete(&mut conn.wbuf);
                    }
                }
                8 => {}
                _ => {
                    // Anything else: let the codec parse it (it consumes the frame itself).
                    if let Some(Frame::Method(_, Method::Other(m))) =
                        decode_frame(&mut conn.rbuf, conn.frame_max)?
                    {
                        if let AMQPClass::Basic(basic::AMQPMethod::Cancel(_)) = *m {
                            return Err(err("the broker cancelled the consumer"));
                        }
                        conn.check_close(&m).await?;
                    }
                    continue;
                }
            }
            conn.rbuf.advance(total);
        }
        Ok(done)
    }

    /// A whole message has arrived: count it and ack if due. Returns 1.
    fn complete(&mut self, wbuf: &mut bytes::BytesMut) -> u64 {
        if let Some(every) = self.cfg.ack_every {
            self.unacked += 1;
            self.last_tag = self.cur.tag;
            if self.unacked >= every {
                encode::basic_ack(wbuf, CHANNEL, self.last_tag, true);
                self.unacked = 0;
            }
        }
        1
    }
}
