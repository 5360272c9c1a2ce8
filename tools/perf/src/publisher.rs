//! A publisher connection: one task that keeps its write buffer full of ready-made
//! `basic.publish` + header + body frames and reads confirms, both on the same socket.
//!
//! Each message is a memcpy of a pre-encoded template plus an 8-byte timestamp patched into
//! its body; there is no per-message allocation or future. The task waits on socket
//! readiness (`readable`/`writable`) and uses `try_read`/`try_write`, so reading confirms
//! and writing publishes never block each other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BufMut;
use hdrhistogram::Histogram;
use tokio::sync::watch;
use warren_codec::decode::decode_frame;
use warren_codec::protocol::{basic, channel};
use warren_codec::{AMQPClass, Frame, Method, FRAME_END, FRAME_OVERHEAD};

use crate::conn::{err, Conn, Result, CHANNEL};
use crate::stats::Stats;

/// Refill the write buffer when it drops below this...
const LOW_WATER: usize = 64 * 1024;
/// ...up to about this much, so one `write` carries hundreds of small messages.
const HIGH_WATER: usize = 256 * 1024;

/// One message as bytes on the wire, with where its timestamp goes.
pub struct Template {
    bytes: Vec<u8>,
    /// Offset of the first 8 body bytes, when the body is at least 8 bytes long.
    ts_offset: Option<usize>,
}

impl Template {
    /// method + content header + body frame(s) for one publish on [`CHANNEL`].
    pub fn new(
        exchange: &str,
        routing_key: &str,
        size: usize,
        persistent: bool,
        priority: Option<u8>,
        frame_max: u32,
    ) -> Result<Template> {
        if exchange.len() > 255 || routing_key.len() > 255 {
            return Err(err("exchange and routing key must be at most 255 bytes"));
        }
        let mut b: Vec<u8> = Vec::with_capacity(size + 128);
        // basic.publish
        let method_len = 4 + 2 + 1 + exchange.len() + 1 + routing_key.len() + 1;
        frame_head(&mut b, 1, method_len);
        b.put_u16(60);
        b.put_u16(40);
        b.put_u16(0); // ticket
        b.put_u8(exchange.len() as u8);
        b.put_slice(exchange.as_bytes());
        b.put_u8(routing_key.len() as u8);
        b.put_slice(routing_key.as_bytes());
        b.put_u8(0); // mandatory, immediate
        b.put_u8(FRAME_END);
        // content header: class 60, weight 0, body size, property flags (+ delivery-mode 2,
        // + priority)
        frame_head(
            &mut b,
            2,
            14 + usize::from(persistent) + usize::from(priority.is_some()),
        );
        b.put_u16(60);
        b.put_u16(0);
        b.put_u64(size as u64);
        let flags =
            if persistent { 1 << 12 } else { 0 } | if priority.is_some() { 1 << 11 } else { 0 };
        b.put_u16(flags);
        if persistent {
            b.put_u8(2);
        }
        if let Some(p) = priority {
            b.put_u8(p);
        }
        b.put_u8(FRAME_END);
        // body frames, none larger than frame_max
        let chunk = (frame_max as usize).saturating_sub(FRAME_OVERHEAD).max(1);
        let mut ts_offset = None;
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk);
            frame_head(&mut b, 3, n);
            if ts_offset.is_none() && size >= 8 {
                ts_offset = Some(b.len());
            }
            b.resize(b.len() + n, b'x');
            b.put_u8(FRAME_END);
            left -= n;
        }
        Ok(Template {
            bytes: b,
            ts_offset,
        })
    }
}

fn frame_head(b: &mut Vec<u8>, kind: u8, size: usize) {
    b.put_u8(kind);
    b.put_u16(CHANNEL);
    b.put_u32(size as u32);
}

/// What one publisher does.
pub struct Config {
    /// Round-robin over these (one per routing key); never empty.
    pub templates: Vec<Template>,
    /// Publisher confirms with at most this many unconfirmed messages.
    pub confirm: Option<u32>,
    /// Messages per second for this publisher.
    pub rate: Option<f64>,
    /// Stop after this many messages (and, with confirms, once all are confirmed).
    pub limit: Option<u64>,
}

/// Unconfirmed publishes, as a ring of `window` slots indexed by delivery tag: confirms may
/// come singly and out of order, or as `multiple` up to a tag.
struct ConfirmWindow {
    acked: Vec<bool>,
    /// When each slot's message went into the write buffer (ns since the run's epoch).
    sent_at: Vec<u64>,
    /// Lowest tag not yet confirmed.
    low: u64,
    /// Next tag to publish (tags start at 1 after confirm.select).
    next: u64,
}

impl ConfirmWindow {
    fn new(window: u32) -> Self {
        ConfirmWindow {
            acked: vec![false; window.max(1) as usize],
            sent_at: vec![0; window.max(1) as usize],
            low: 1,
            next: 1,
        }
    }

    fn free(&self) -> u64 {
        self.acked.len() as u64 - (self.next - self.low)
    }

    fn outstanding(&self) -> u64 {
        self.next - self.low
    }

    fn slot(&self, tag: u64) -> usize {
        (tag % self.acked.len() as u64) as usize
    }

    /// Records that the next `n` tags were published at `ts`.
    fn sent(&mut self, n: u64, ts: u64) {
        for t in self.next..self.next + n {
            let s = self.slot(t);
            self.sent_at[s] = ts;
        }
        self.next += n;
    }

    /// Marks `tag` (or everything up to it) confirmed and records each one's
    /// publish-to-confirm time (`now`, ns since the epoch) in `latency`; returns how many
    /// were newly confirmed and the longest of their waits (ns).
    fn confirm(
        &mut self,
        tag: u64,
        multiple: bool,
        now: u64,
        latency: &mut Option<Histogram<u64>>,
    ) -> (u64, u64) {
        if tag < self.low || tag >= self.next {
            return (0, 0);
        }
        let from = if multiple { self.low } else { tag };
        let (mut newly, mut worst) = (0, 0);
        for t in from..=tag {
            let s = self.slot(t);
            if !self.acked[s] {
                self.acked[s] = true;
                newly += 1;
                let waited = now.saturating_sub(self.sent_at[s]).max(1);
                worst = worst.max(waited);
                if let Some(h) = latency.as_mut() {
                    let _ = h.record(waited);
                }
            }
        }
        while self.low < self.next {
            let s = self.slot(self.low);
            if !self.acked[s] {
                break;
            }
            self.acked[s] = false;
            self.low += 1;
        }
        (newly, worst)
    }
}

/// What a publisher measured: (with confirms) each message's time from publish to confirm.
pub struct Published {
    pub confirm_latency: Option<Histogram<u64>>,
}

/// Runs until `stop` fires (or, with a limit, until done).
pub async fn run(
    mut conn: Conn,
    cfg: Arc<Config>,
    stats: Arc<Stats>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> Result<Published> {
    if cfg.templates.is_empty() {
        return Err(err("publisher without a message template"));
    }
    let mut window = cfg.confirm.map(ConfirmWindow::new);
    let mut latency = match window {
        Some(_) => Some(crate::stats::new_histogram()?),
        None => None,
    };
    let started = Instant::now();
    let mut sent: u64 = 0;
    let mut next_template = 0usize;
    conn.wbuf.reserve(HIGH_WATER + cfg.templates[0].bytes.len());
    loop {
        // How many more messages may go into the buffer now.
        let mut allowed = u64::MAX;
        if let Some(w) = &window {
            allowed = w.free();
        }
        if let Some(limit) = cfg.limit {
            if sent >= limit
                && conn.wbuf.is_empty()
                && window.as_ref().map_or(0, ConfirmWindow::outstanding) == 0
            {
                break;
            }
            allowed = allowed.min(limit - sent);
        }
        let mut wake_at = None;
        if let Some(rate) = cfg.rate {
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            let budget = due.saturating_sub(sent);
            if budget == 0 {
                let next_due = Duration::try_from_secs_f64((sent + 1) as f64 / rate)
                    .unwrap_or(Duration::from_secs(3600));
                wake_at = Some(started + next_due);
            }
            allowed = allowed.min(budget);
        }
        if allowed > 0 && conn.wbuf.len() < LOW_WATER {
            let ts = epoch.elapsed().as_nanos() as u64;
            let n = fill(
                &mut conn.wbuf,
                &cfg.templates,
                &mut next_template,
                allowed,
                ts,
            );
            sent += n;
            if let Some(w) = &mut window {
                w.sent(n, ts);
            }
            Stats::add(&stats.published, n);
        }
        let want_write = !conn.wbuf.is_empty();
        let wake = wake_at.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = conn.stream.readable() => {
                r?;
                if conn.read_some()? {
                    let now = epoch.elapsed().as_nanos() as u64;
                    read_frames(&mut conn, &mut window, &stats, now, &mut latency).await?
                }
            }
            r = conn.stream.writable(), if want_write => {
                r?;
                conn.write_some()?;
            }
            _ = tokio::time::sleep_until(wake.into()), if wake_at.is_some() && !want_write => {}
        }
    }
    // `close` first writes out the rest of the buffer (it may end in half a frame), so the
    // connection.close that follows is well-framed.
    conn.close().await;
    Ok(Published {
        confirm_latency: latency,
    })
}

/// Appends up to `max` messages, stopping once the buffer reaches [`HIGH_WATER`].
fn fill(
    wbuf: &mut bytes::BytesMut,
    templates: &[Template],
    next: &mut usize,
    max: u64,
    ts: u64,
) -> u64 {
    let stamp = ts.to_be_bytes();
    let mut n = 0;
    while n < max && wbuf.len() < HIGH_WATER {
        let Some(t) = templates.get(*next) else {
            break;
        };
        *next = (*next + 1) % templates.len();
        let start = wbuf.len();
        wbuf.extend_from_slice(&t.bytes);
        if let Some(off) = t.ts_offset {
            wbuf[start + off..start + off + 8].copy_from_slice(&stamp);
        }
        n += 1;
    }
    n
}

/// Confirms (hand-decoded `basic.ack`, no allocation), nacks and closes.
async fn read_frames(
    conn: &mut Conn,
    window: &mut Option<ConfirmWindow>,
    stats: &Stats,
    now: u64,
    latency: &mut Option<Histogram<u64>>,
) -> Result<()> {
    let (mut acked, mut nacked, mut worst) = (0, 0, 0);
    while let Some(frame) = decode_frame(&mut conn.rbuf, conn.frame_max)? {
        match frame {
            Frame::Method(_, Method::Ack(a)) => {
                if let Some(w) = window.as_mut() {
                    let (n, waited) = w.confirm(a.delivery_tag, a.multiple, now, latency);
                    acked += n;
                    worst = worst.max(waited);
                }
            }
            Frame::Method(_, Method::Other(m)) => match *m {
                AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                    if let Some(w) = window.as_mut() {
                        let (n, waited) = w.confirm(n.delivery_tag, n.multiple, now, latency);
                        nacked += n;
                        worst = worst.max(waited);
                    }
                }
                AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                    // Old-style flow control; answer it, and keep publishing: TCP
                    // back-pressure does the rest.
                    let ok = AMQPClass::Channel(channel::AMQPMethod::FlowOk(channel::FlowOk {
                        active: f.active,
                    }));
                    warren_codec::encode::method(&mut conn.wbuf, CHANNEL, &ok)?;
                }
                other => conn.check_close(&other).await?,
            },
            _ => {}
        }
    }
    Stats::add(&stats.confirmed, acked);
    Stats::add(&stats.nacked, nacked);
    if worst > 0 {
        stats
            .confirm_max_ns
            .fetch_max(worst, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_window_handles_single_multiple_and_out_of_order() {
        let mut lat = Some(crate::stats::new_histogram().unwrap());
        let mut w = ConfirmWindow::new(4);
        w.sent(4, 100); // tags 1..=4 out at t=100
        assert_eq!(w.free(), 0);
        assert_eq!(w.confirm(2, false, 150, &mut lat).0, 1);
        assert_eq!(w.free(), 0); // 1 still holds the window
        assert_eq!(w.confirm(3, true, 300, &mut lat).0, 2); // 1 and 3 (2 already)
        assert_eq!(w.free(), 3);
        assert_eq!(w.confirm(3, false, 400, &mut lat).0, 0); // duplicate
        w.sent(3, 1000); // 5..=7
        assert_eq!(w.confirm(7, true, 1500, &mut lat), (4, 1400)); // 4..=7; 4 waited longest
        assert_eq!(w.outstanding(), 0);
        assert_eq!(w.confirm(9, false, 2000, &mut lat).0, 0); // never published
        let lat = lat.unwrap();
        assert_eq!(lat.len(), 7);
        assert_eq!(lat.min(), 50);
        assert_eq!(lat.max(), 1400); // tag 4: out at 100, confirmed at 1500
    }

    #[test]
    fn template_has_frames_and_timestamp_slot() {
        let t = Template::new("x", "rk", 20, false, None, 131_072).unwrap();
        // method(8+4+2+2+3+1=20) + header(8+14=22) + body(8+20=28)
        assert_eq!(t.bytes.len(), 20 + 22 + 28);
        assert_eq!(t.ts_offset, Some(20 + 22 + 7));
        let mut buf = bytes::BytesMut::from(&t.bytes[..]);
        for _ in 0..3 {
            assert!(decode_frame(&mut buf, 131_072).unwrap().is_some());
        }
        assert!(buf.is_empty());
        // a body over frame_max is split; the timestamp sits in the first body frame
        let t = Template::new("", "q", 10_000, true, Some(3), 4096).unwrap();
        let mut buf = bytes::BytesMut::from(&t.bytes[..]);
        let mut frames = 0;
        while decode_frame(&mut buf, 4096).unwrap().is_some() {
            frames += 1;
        }
        assert_eq!(frames, 2 + 3);
        assert!(Template::new("", "q", 4, false, None, 4096)
            .unwrap()
            .ts_offset
            .is_none());
    }
}
