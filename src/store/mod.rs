//! Durable storage over sled: definitions (vhosts, durable exchanges and queues, bindings
//! between durable ends), persistent messages of durable queues, and transient bodies paged
//! out of RAM by deep queues.
//!
//! Every write goes through one channel to the group-commit writer ([`writer`]), in the order
//! it was sent: a queue sends a message's write under its own lock, before any consumer can
//! see the message, so the write always precedes the ack that deletes it. The writer drains
//! everything waiting, applies it as one sled batch (a write and its delete in the same batch
//! cancel out), syncs, then releases the publisher confirms that waited on it.
//!
//! Reads (recovery at start, paging a deep queue's messages back in) go straight to sled.

pub mod records;
pub mod recovery;
pub mod segments;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use thiserror::Error;
use tokio::sync::mpsc::UnboundedSender;
use tracing::error;

use crate::connection::ConnEvent;
use crate::exchange::ExchangeKind;
use crate::message::Message;
use records::{DestKind, MessageKey};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the data directory {path}: {source}")]
    Open { path: PathBuf, source: sled::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: sled::Error },
    #[error("damaged record in {path} (key {key}): {source}")]
    Record {
        path: PathBuf,
        key: String,
        source: records::RecordError,
    },
}

/// One unit of work for the writer.
pub(crate) enum Op {
    PutMessage {
        key: MessageKey,
        message: Arc<Message>,
        persistent: bool,
        /// ms since the epoch, 0 = never.
        expires_at: u64,
    },
    /// `external`: its body may be in a segment (the writer looks the record up first).
    DeleteMessage {
        key: MessageKey,
        external: bool,
    },
    /// Messages `from..to` of a queue (a purged tail).
    DeleteMessages {
        qid: u64,
        from: u64,
        to: u64,
    },
    /// Highest delivered seq of a durable queue (recovery marks those redelivered).
    Delivered {
        qid: u64,
        seq: u64,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete(Vec<u8>),
    /// Every key under a prefix (a queue's messages, an exchange's bindings).
    DeletePrefix(Vec<u8>),
    /// Every binding of a vhost leading to `dest`.
    DeleteBindingsTo {
        vhost: String,
        kind: DestKind,
        dest: String,
    },
    /// Tell a connection when everything sent before this is durable.
    Notify {
        token: u64,
        to: UnboundedSender<ConnEvent>,
    },
    /// Answer once everything sent before this is durable (shutdown, tests).
    Barrier(mpsc::Sender<bool>),
    /// Commit what came before, then end the writer.
    Stop,
}

pub struct Store {
    db: sled::Db,
    path: PathBuf,
    /// Segment files of large bodies.
    bodies: PathBuf,
    /// Deep queues' page files (scratch, emptied at every start).
    pages: PathBuf,
    /// Unbounded: a sender never blocks a connection's thread. Publishers with confirms are
    /// bounded by their window; see ARCHITECTURE.md for the rest.
    tx: mpsc::Sender<Op>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Message bytes sent to the writer and not yet applied: publishers pause above
    /// [`BACKLOG_HIGH`] so RAM holds no more than that waiting for the disk.
    backlog: Arc<AtomicUsize>,
}

/// Publishing connections stop reading while this many message bytes wait for the writer...
pub const BACKLOG_HIGH: usize = 64 << 20;
/// ... and resume below this.
pub const BACKLOG_LOW: usize = 32 << 20;

/// A message read back from a record.
pub struct Loaded {
    pub message: Message,
    /// ms since the epoch, 0 = never.
    pub expires_at: u64,
}

/// Settings for [`Store::open`].
pub struct StoreConfig {
    pub cache_bytes: u64,
}

impl Store {
    /// Opens (or creates) the database under `dir`, reads back what it holds (each queue's
    /// head up to `queue_budget` bytes of RAM), and starts the writer.
    pub fn open(
        dir: &Path,
        config: &StoreConfig,
        queue_budget: usize,
    ) -> Result<(Arc<Store>, recovery::Recovered), StoreError> {
        let path = dir.join("sled");
        let db = sled::Config::new()
            .path(&path)
            .cache_capacity(config.cache_bytes)
            // The writer syncs when a batch needs it; no background flusher.
            .flush_every_ms(None)
            .open()
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(Store {
            db,
            path,
            bodies: dir.join("bodies"),
            pages: dir.join("pages"),
            tx,
            writer: Mutex::new(None),
            backlog: Arc::new(AtomicUsize::new(0)),
        });
        // Page files only hold what a previous run had in its queues' tails: scratch.
        let _ = std::fs::remove_dir_all(&store.pages);
        std::fs::create_dir_all(&store.pages).map_err(|e| StoreError::Open {
            path: store.pages.clone(),
            source: sled::Error::Io(e),
        })?;
        // Recovery queues its deletes on the channel; the writer applies them once started.
        let (recovered, live) = store.recover(queue_budget)?;
        let segments =
            segments::Segments::open(store.bodies.clone(), live).map_err(|e| StoreError::Open {
                path: store.bodies.clone(),
                source: sled::Error::Io(e),
            })?;
        let wdb = store.db.clone();
        let backlog = store.backlog.clone();
        let writer = std::thread::Builder::new()
            .name("warren-store".into())
            .spawn(move || writer::run(wdb, rx, backlog, segments))
            .map_err(|e| StoreError::Open {
                path: store.path.clone(),
                source: sled::Error::Io(e),
            })?;
        *store.writer.lock() = Some(writer);
        Ok((store, recovered))
    }

    /// A message record back as a message (reading its body from its segment if need be).
    pub fn load_message(
        &self,
        v: &[u8],
        file: &mut Option<(u64, std::fs::File)>,
    ) -> Result<Loaded, String> {
        let m = records::decode_message(v).map_err(|e| e.to_string())?;
        let external;
        let body = match m.body {
            records::Body::Inline(b) => b,
            records::Body::External(r) => {
                external = segments::read_body(&self.bodies, r, file).map_err(|e| e.to_string())?;
                &external[..]
            }
        };
        let message = Message::from_parts(&m.exchange, &m.routing_key, m.properties, body)
            .ok_or_else(|| "malformed message properties".to_string())?;
        Ok(Loaded {
            message,
            expires_at: m.expires_at,
        })
    }

    pub fn pages_dir(&self) -> &Path {
        &self.pages
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op) {
        if self.tx.send(op).is_err() {
            // Only after close(): nothing can be made durable any more.
            error!("store writer is gone; a write was dropped");
        }
    }

    /// A fresh id for a queue's message keys (never reused, even across restarts).
    pub fn new_queue_id(&self) -> u64 {
        match self.db.generate_id() {
            Ok(id) => id,
            Err(e) => {
                // Ids only need to be unique in this run for a transient queue; a durable
                // queue's definition write will fail and be logged too.
                error!("cannot generate a queue id: {e}");
                u64::MAX / 2 + rand::random::<u32>() as u64
            }
        }
    }

    pub fn put_message(
        &self,
        qid: u64,
        seq: u64,
        message: Arc<Message>,
        persistent: bool,
        expires_at: u64,
    ) {
        self.backlog
            .fetch_add(message.ram_cost(), Ordering::Relaxed);
        self.send(Op::PutMessage {
            key: records::message_key(qid, seq),
            message,
            persistent,
            expires_at,
        });
    }

    /// `body_len`: the message's body size (large bodies live in segments).
    pub fn delete_message(&self, qid: u64, seq: u64, body_len: usize) {
        self.send(Op::DeleteMessage {
            key: records::message_key(qid, seq),
            external: body_len >= segments::EXTERNAL_BODY_MIN,
        });
    }

    pub fn delete_messages(&self, qid: u64, from: u64, to: u64) {
        if from < to {
            self.send(Op::DeleteMessages { qid, from, to });
        }
    }

    pub fn delivered(&self, qid: u64, seq: u64) {
        self.send(Op::Delivered { qid, seq });
    }

    pub fn put_vhost(&self, vhost: &str) {
        self.send(Op::Put {
            key: records::named_key(records::VHOST, &[vhost]),
            value: Vec::new(),
        });
    }

    pub fn put_exchange(
        &self,
        vhost: &str,
        name: &str,
        kind: ExchangeKind,
        auto_delete: bool,
        internal: bool,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::exchange_key(vhost, name),
            value: records::encode_exchange(kind, auto_delete, internal, args),
        });
    }

    /// Removes an exchange and every binding from or to it.
    pub fn delete_exchange(&self, vhost: &str, name: &str) {
        self.send(Op::Delete(records::exchange_key(vhost, name)));
        self.send(Op::DeletePrefix(records::bindings_from_prefix(vhost, name)));
        self.send(Op::DeleteBindingsTo {
            vhost: vhost.into(),
            kind: DestKind::Exchange,
            dest: name.into(),
        });
    }

    pub fn put_queue(
        &self,
        vhost: &str,
        name: &str,
        qid: u64,
        auto_delete: bool,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::queue_key(vhost, name),
            value: records::encode_queue(qid, auto_delete, args),
        });
    }

    /// Removes a queue's messages (durable or paged), and for a durable queue its definition
    /// and the bindings to it.
    pub fn delete_queue(&self, vhost: &str, name: &str, qid: u64, durable: bool) {
        if durable {
            self.send(Op::Delete(records::queue_key(vhost, name)));
            self.send(Op::Delete(records::delivered_key(qid).to_vec()));
            self.send(Op::DeleteBindingsTo {
                vhost: vhost.into(),
                kind: DestKind::Queue,
                dest: name.into(),
            });
        }
        self.send(Op::DeletePrefix(
            records::queue_messages_prefix(qid).to_vec(),
        ));
    }

    pub fn put_binding(
        &self,
        vhost: &str,
        source: &str,
        kind: DestKind,
        dest: &str,
        key: &str,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::binding_key(vhost, source, kind, dest, key, args),
            value: Vec::new(),
        });
    }

    pub fn delete_binding(
        &self,
        vhost: &str,
        source: &str,
        kind: DestKind,
        dest: &str,
        key: &str,
        args: &FieldTable,
    ) {
        self.send(Op::Delete(records::binding_key(
            vhost, source, kind, dest, key, args,
        )));
    }

    /// Asks for `ConnEvent::Durable { token, .. }` once everything sent so far is synced.
    pub fn notify(&self, token: u64, to: UnboundedSender<ConnEvent>) {
        self.send(Op::Notify { token, to });
    }

    /// Blocks until everything sent so far is synced; false if the write or sync failed.
    pub fn sync(&self) -> bool {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Barrier(tx));
        rx.recv().unwrap_or(false)
    }

    /// Up to `max_bytes` (at least one message) of a queue's stored messages from `from` up
    /// to, not including, `to`, in order: `(seq, message)`. Damaged records are logged and
    /// deleted; a read error returns `Err` (nothing was taken).
    pub fn read_messages(
        &self,
        qid: u64,
        from: u64,
        to: u64,
        max_bytes: usize,
    ) -> Result<Vec<(u64, Message, u64)>, StoreError> {
        let mut out = Vec::new();
        let mut bytes = 0;
        let mut file = None;
        let range = records::message_key(qid, from)..records::message_key(qid, to);
        for item in self.db.range(range) {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(source) => {
                    return Err(StoreError::Read {
                        path: self.path.clone(),
                        source,
                    })
                }
            };
            let Some((_, seq)) = records::parse_message_key(&k) else {
                continue;
            };
            match self.load_message(&v, &mut file) {
                Ok(l) => {
                    bytes += l.message.ram_cost();
                    out.push((seq, l.message, l.expires_at));
                }
                Err(e) => {
                    error!(path = %self.path.display(), qid, seq, "damaged message record ({e}): dropped");
                    self.send(Op::DeleteMessage {
                        key: records::message_key(qid, seq),
                        external: true,
                    });
                }
            }
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Message bytes waiting for the writer.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Bytes on disk: sled's files and the body segments.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0) + segments::Segments::size_on_disk(&self.bodies)
    }

    /// Syncs and stops the writer, waiting for it, so the database is closed (and its lock
    /// released) once the last handle goes. Later writes are dropped and logged.
    pub fn close(&self) {
        if let Some(w) = self.writer.lock().take() {
            self.send(Op::Stop);
            let _ = w.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}
