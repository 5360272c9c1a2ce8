//! A deep queue's tail in a file of its own (`DATA_DIR/pages/<qid>.pg`): messages past the
//! queue's RAM budget are appended in order and read back in order, so the tail costs no RAM
//! at all (not even an index). The file is scratch space: written without fsync, emptied
//! when the tail is, deleted with the queue and at every start (durability comes from the
//! store's records of persistent messages, never from here).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use super::ready::QueuedMessage;
use crate::message::Message;
use crate::store::records;

/// Appends are written in pieces of about this much.
const WRITE_BUFFER: usize = 256 * 1024;
/// Reads take this much at a time (or one record, if larger).
const READ_CHUNK: usize = 1 << 20;

pub struct PageFile {
    path: PathBuf,
    file: File,
    /// The piece being encoded (empty between appends).
    out: Vec<u8>,
    /// Bytes written to the file, and read back from it.
    written: u64,
    read: u64,
    pub count: usize,
    /// Body bytes of the messages in the file.
    pub bytes: usize,
    /// Every message in the file has a seq at least this.
    pub floor: u64,
    record: Vec<u8>,
}

impl PageFile {
    pub fn create(path: PathBuf) -> std::io::Result<PageFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(PageFile {
            path,
            file,
            out: Vec::new(),
            written: 0,
            read: 0,
            count: 0,
            bytes: 0,
            floor: 0,
            record: Vec::new(),
        })
    }

    /// Appends `batch` in order: all of it, or (on a write error) none of it. Each record is
    /// `len | seq | record` (the record as the store writes it, body inline). Writes go to
    /// explicit offsets from `written`, so a failed one leaves nothing the reads would see.
    pub fn append(&mut self, batch: &[QueuedMessage]) -> std::io::Result<()> {
        let mut at = self.written;
        let result = self.write_batch(batch, &mut at);
        self.out.clear();
        result?;
        for m in batch {
            if self.count == 0 {
                self.floor = m.seq;
            }
            self.count += 1;
            self.bytes += m.message.size();
        }
        self.written = at;
        Ok(())
    }

    fn write_batch(&mut self, batch: &[QueuedMessage], at: &mut u64) -> std::io::Result<()> {
        for m in batch {
            self.record.clear();
            let flags = if m.on_disk { records::PERSISTENT } else { 0 };
            let body = m.message.body();
            records::encode_message_head(&m.message, flags, m.expires_at, &mut self.record);
            let len = 8 + self.record.len() + body.len();
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
            self.out.extend_from_slice(&m.seq.to_be_bytes());
            self.out.extend_from_slice(&self.record);
            if body.len() >= WRITE_BUFFER {
                // A large body is written from the message itself, not copied into the buffer.
                self.write_out(at)?;
                self.file.write_all_at(body, *at)?;
                *at += body.len() as u64;
            } else {
                self.out.extend_from_slice(body);
            }
            if self.out.len() >= WRITE_BUFFER {
                self.write_out(at)?;
            }
        }
        self.write_out(at)
    }

    fn write_out(&mut self, at: &mut u64) -> std::io::Result<()> {
        if !self.out.is_empty() {
            self.file.write_all_at(&self.out, *at)?;
            *at += self.out.len() as u64;
            self.out.clear();
        }
        Ok(())
    }

    /// The next messages, up to about `max_cost` bytes of RAM (at least one).
    pub fn pop_chunk(&mut self, max_cost: usize) -> std::io::Result<Vec<QueuedMessage>> {
        let mut out = Vec::new();
        let mut cost = 0;
        while self.count > 0 && cost < max_cost {
            let left = self.written - self.read;
            let mut buf = vec![0u8; (left as usize).min(READ_CHUNK)];
            self.file.read_exact_at(&mut buf, self.read)?;
            let mut at = 0;
            while self.count > 0 && cost < max_cost && buf.len() - at >= 4 {
                let len =
                    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
                if buf.len() - at - 4 < len {
                    if at == 0 {
                        // One record larger than the chunk: read exactly it.
                        buf = vec![0u8; 4 + len];
                        self.file.read_exact_at(&mut buf, self.read)?;
                        continue;
                    }
                    break;
                }
                let alone = at == 0 && len + 4 == buf.len() && len >= WRITE_BUFFER;
                let m = if alone {
                    // A record read on its own (a large one): its buffer is kept, not copied.
                    let owner = bytes::Bytes::from(std::mem::take(&mut buf)).slice(4..);
                    decode(&owner, Some(&owner))?
                } else {
                    decode(&buf[at + 4..at + 4 + len], None)?
                };
                at += 4 + len;
                if alone {
                    // `buf` was handed over: nothing more to read from it.
                    cost += m.message.ram_cost();
                    self.count -= 1;
                    self.bytes = self.bytes.saturating_sub(m.message.size());
                    self.floor = m.seq + 1;
                    out.push(m);
                    break;
                }
                cost += m.message.ram_cost();
                self.count -= 1;
                self.bytes = self.bytes.saturating_sub(m.message.size());
                self.floor = m.seq + 1;
                out.push(m);
            }
            self.read += at as u64;
            if at == 0 {
                break;
            }
        }
        if self.count == 0 {
            self.clear()?;
        }
        Ok(out)
    }

    /// Forgets every message (purge, or the file drained).
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.out.clear();
        self.file.set_len(0)?;
        self.written = 0;
        self.read = 0;
        self.count = 0;
        self.bytes = 0;
        Ok(())
    }
}

impl Drop for PageFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A record (`seq | record`) back as a message. With `owner` (the buffer `b` is all of), a
/// large body stays in that buffer instead of being copied.
fn decode(b: &[u8], owner: Option<&bytes::Bytes>) -> std::io::Result<QueuedMessage> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "damaged page record");
    let seq = u64::from_be_bytes(b.get(..8).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    let m = records::decode_message(&b[8..]).map_err(|_| bad())?;
    let body = m.body;
    let message = match owner {
        Some(o) => {
            let at = body.as_ptr() as usize - o.as_ptr() as usize;
            let body = o.slice(at..at + body.len());
            Message::from_parts_shared(&m.exchange, &m.routing_key, m.properties, body)
        }
        None => Message::from_parts(&m.exchange, &m.routing_key, m.properties, body),
    }
    .ok_or_else(bad)?;
    Ok(QueuedMessage {
        seq,
        message: Arc::new(message),
        redelivered: false,
        on_disk: m.flags & records::PERSISTENT != 0,
        expires_at: m.expires_at,
        deliveries: 0,
    })
}
