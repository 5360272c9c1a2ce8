//! Durable storage: definitions (vhosts, durable exchanges and queues, bindings between
//! durable ends) in sled, and the persistent messages of each durable queue in a log of its
//! own beside it (`log`), described by small sled records. (Transient messages of deep
//! queues go to page files, `queue/page_file.rs`, not here.)
//!
//! Every write goes through one channel to the group-commit writer ([`writer`]), in the order
//! it was sent: a queue sends a message's write under its own lock, before any consumer can
//! see the message, so the write always precedes the ack that deletes it. The writer drains
//! everything waiting, appends the messages to their logs and applies the rest as one sled
//! batch (a write and its delete in the same commit cancel out), syncs, then releases the
//! publisher confirms that waited on it.
//!
//! Reads (recovery at start, a queue's tail read back) go straight to the files.
//! Files: `op` (the writer's ops and their weight in its backlog), `gate` (what pauses a
//! sender while the writer is behind), `writer`, `reclaim` (sled's garbage, collected by
//! the writer), `durable` (the syncs sled does not do), `records`, `log`, `recovery`.

mod durable;
mod gate;
pub mod log;
mod op;
mod reclaim;
pub mod records;
pub mod recovery;
mod writer;

pub use durable::create_dir_all_synced;
pub(crate) use gate::Gate;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, RwLock};
use thiserror::Error;
use tracing::error;

use crate::message::Message;
pub(crate) use op::Op;
use records::DestKind;

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
    #[error("cannot recover the queue log {path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} was written by another version of Warren (store format {found}, this one \
         reads format {expected}); start with an empty data directory"
    )]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

/// What a sync wait does when its commit is durable (`true`) or failed (`false`). Runs on
/// the writer's thread: it must be quick (send a message, set a flag).
pub type SyncDone = Box<dyn FnOnce(bool) + Send>;

/// The sled database, shared by the writer (which replaces it when it reopens sled after
/// a failure) and the readers (recovery, paging a recovered tail back in).
pub(crate) type DbSlot = RwLock<Option<sled::Db>>;

/// Opens sled under `dir` with the writer's settings, and makes what the open wrote durable.
pub(crate) fn open_sled(
    dir: &Path,
    cache_bytes: u64,
) -> Result<(sled::Db, durable::SledFiles), sled::Error> {
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(cache_bytes)
        // The writer syncs when a batch needs it; no background flusher.
        .flush_every_ms(None)
        .open()?;
    let files = durable::SledFiles::open(dir)?;
    Ok((db, files))
}

thread_local! {
    /// Backlog this thread has sent since [`Store::take_sent_here`] last asked: what the
    /// current batch of one connection's input (run without yielding) added.
    static SENT_HERE: std::cell::Cell<Sent> = const {
        std::cell::Cell::new(Sent {
            bytes: 0,
            definitions: 0,
        })
    };
}

pub struct Store {
    db: Arc<DbSlot>,
    path: PathBuf,
    /// The durable queues' logs, a directory each.
    logs: PathBuf,
    /// Deep queues' page files (scratch, emptied at every start).
    pages: PathBuf,
    /// Unbounded: a sender never blocks a connection's thread. Publishers with confirms are
    /// bounded by their window; see ARCHITECTURE.md for the rest.
    tx: mpsc::Sender<Op>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Message bytes sent to the writer, not yet applied: senders pause above
    /// [`BACKLOG_HIGH`] so RAM holds no more than that waiting for the disk.
    pub(crate) backlog: Arc<Gate>,
    /// Definition ops sent to the writer, not yet applied: senders pause above
    /// [`DEFINITIONS_HIGH`], so a client pipelining binds keeps the queue ahead of every
    /// other connection's confirm short.
    pub(crate) definitions: Arc<Gate>,
    /// Failed commits so far (see `writer`).
    epoch: Arc<AtomicU64>,
    /// Ids of queue and exchange incarnations: never reused (seeded past every id found).
    next_id: AtomicU64,
}

/// Publishing connections stop reading while this many message bytes wait for the writer...
pub const BACKLOG_HIGH: usize = 64 << 20;
/// ... and resume below this.
pub const BACKLOG_LOW: usize = 32 << 20;
/// Connections that declare, bind or delete durable things stop reading while this many
/// definition ops wait for the writer (a few ms of its time: a confirm sent meanwhile waits
/// behind them; 10,000 pipelined binds held confirms for up to 97 ms without it)...
pub const DEFINITIONS_HIGH: usize = 512;
/// ... and resume below this.
pub const DEFINITIONS_LOW: usize = 256;

/// What one thread's input sent to the writer (see [`Store::take_sent_here`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub bytes: usize,
    pub definitions: usize,
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
        queue_budget: &dyn Fn(&records::QueueDef) -> usize,
    ) -> Result<(Arc<Store>, recovery::Recovered), StoreError> {
        let path = dir.join("sled");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| StoreError::Open {
                path,
                source: sled::Error::Io(e),
            }
        };
        durable::create_dir_all_synced(dir).map_err(io(dir))?;
        let existed = path.exists();
        let (db, files) =
            open_sled(&path, config.cache_bytes).map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        if !existed {
            durable::sync_dir(dir).map_err(io(dir))?;
        }
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(Store {
            db: Arc::new(RwLock::new(Some(db))),
            path,
            logs: dir.join("logs"),
            pages: dir.join("pages"),
            tx,
            writer: Mutex::new(None),
            backlog: Arc::new(Gate::new(BACKLOG_HIGH, BACKLOG_LOW)),
            definitions: Arc::new(Gate::new(DEFINITIONS_HIGH, DEFINITIONS_LOW)),
            epoch: Arc::new(AtomicU64::new(0)),
            next_id: AtomicU64::new(1),
        });
        store.check_format()?;
        // Page files only hold what a previous run had in its queues' tails: scratch.
        let _ = std::fs::remove_dir_all(&store.pages);
        std::fs::create_dir_all(&store.pages).map_err(io(&store.pages))?;
        if !store.logs.exists() {
            std::fs::create_dir_all(&store.logs).map_err(io(&store.logs))?;
            durable::sync_dir(dir).map_err(io(dir))?;
        }
        // Recovery queues its deletes on the channel; the writer applies them once started.
        let mut meta = log::MetaLog::open(&store.logs).map_err(|e| StoreError::Log {
            path: log::meta::meta_path(&store.logs),
            source: e,
        })?;
        let (recovered, logs) = store.recover(queue_budget, &mut meta)?;
        store.next_id.store(recovered.max_id + 1, Ordering::Relaxed);
        let setup = writer::Setup {
            slot: store.db.clone(),
            files,
            sled_dir: store.path.clone(),
            cache_bytes: config.cache_bytes,
            rx,
            backlog: store.backlog.clone(),
            definitions: store.definitions.clone(),
            epoch: store.epoch.clone(),
            logs: log::Logs::new(store.logs.clone(), logs, meta).map_err(io(&store.logs))?,
        };
        let writer = std::thread::Builder::new()
            .name("warren-store".into())
            .spawn(move || writer::run(setup))
            .map_err(io(&store.path))?;
        *store.writer.lock() = Some(writer);
        Ok((store, recovered))
    }

    fn read_error(&self, source: sled::Error) -> StoreError {
        StoreError::Read {
            path: self.path.clone(),
            source,
        }
    }

    /// The current sled handle (None while the writer reopens it after a failure).
    fn db(&self) -> Option<sled::Db> {
        self.db.read().clone()
    }

    /// A new store refuses another version's records rather than misread them; a new one
    /// is stamped with this version's format.
    fn check_format(&self) -> Result<(), StoreError> {
        let db = self
            .db()
            .ok_or_else(|| self.read_error(sled::Error::ReportableBug("no db".into())))?;
        let found = db
            .get(records::format_key())
            .map_err(|source| self.read_error(source))?;
        match found {
            Some(v) => {
                let found = v
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, u32::from_be_bytes);
                if found != records::FORMAT {
                    return Err(StoreError::Format {
                        path: self.path.clone(),
                        found,
                        expected: records::FORMAT,
                    });
                }
            }
            None if db.is_empty() => self.send(Op::Put {
                key: records::format_key(),
                value: records::FORMAT.to_be_bytes().to_vec(),
            }),
            None => {
                return Err(StoreError::Format {
                    path: self.path.clone(),
                    found: 1,
                    expected: records::FORMAT,
                })
            }
        }
        Ok(())
    }

    /// A reader of one queue's log (see [`log::LogReader`]).
    pub fn log_reader(&self, qid: u64) -> log::LogReader {
        log::LogReader::new(log::queue_dir(&self.logs, qid))
    }

    pub fn pages_dir(&self) -> &Path {
        &self.pages
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn send(&self, op: Op) {
        // Only the gate the op counts in is touched: a persistent publish must not pay an
        // atomic on the definitions' shared counter, nor a delete on either.
        let cost = op.cost();
        let definition = usize::from(op.is_definition());
        if cost > 0 {
            self.backlog.add(cost);
        }
        if definition > 0 {
            self.definitions.add(definition);
        }
        if cost > 0 || definition > 0 {
            SENT_HERE.with(|c| {
                let mut sent = c.get();
                sent.bytes += cost;
                sent.definitions += definition;
                c.set(sent);
            });
        }
        if self.tx.send(op).is_err() {
            // Only after close(): nothing can be made durable any more.
            error!("store writer is gone; a write was dropped");
        }
    }

    /// A fresh id for a queue or exchange incarnation (never reused, even across restarts:
    /// recovery starts past every id it finds).
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// How many commits have failed so far. A connection reads it when a batch begins and
    /// hands it to [`Store::notify`]: a failure after that point fails the batch's confirms.
    pub fn failure_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Appends a persistent message to its durable queue's log.
    pub fn put_message(&self, qid: u64, seq: u64, message: Arc<Message>, expires_at: u64) {
        self.send(Op::PutMessage {
            qid,
            seq,
            message,
            expires_at,
        });
    }

    /// A logged message was settled; `body_len`: its body size.
    pub fn delete_message(&self, qid: u64, seq: u64, body_len: usize) {
        self.send(Op::DeleteMessage {
            qid,
            seq,
            bytes: body_len as u64,
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

    /// A vhost's record (its description and limits as `value`; empty: none).
    pub fn put_vhost(&self, vhost: &str, value: Vec<u8>) {
        self.put_named(records::VHOST, &[vhost], value);
    }

    /// A definition stored by name (`records::named_key`): vhosts and the access records.
    /// The caller checks that names fit (255 bytes each).
    pub fn put_named(&self, kind: u8, names: &[&str], value: Vec<u8>) {
        self.send(Op::Put {
            key: records::named_key(kind, names),
            value,
        });
    }

    pub fn delete_named(&self, kind: u8, names: &[&str]) {
        self.send(Op::Delete(records::named_key(kind, names)));
    }

    #[allow(clippy::too_many_arguments)]
    pub fn put_exchange(
        &self,
        id: u64,
        vhost: &str,
        name: &str,
        kind: &str,
        auto_delete: bool,
        internal: bool,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::exchange_key(id),
            value: records::encode_exchange(vhost, name, kind, auto_delete, internal, args),
        });
    }

    /// Removes an exchange and every binding to it (those from it are deleted one by one
    /// by the caller, who knows them).
    pub fn delete_exchange(&self, id: u64) {
        self.send(Op::Delete(records::exchange_key(id)));
        self.send(Op::DeletePrefix(records::bindings_to_prefix(
            DestKind::Exchange,
            id,
        )));
    }

    pub fn put_queue(
        &self,
        qid: u64,
        vhost: &str,
        name: &str,
        auto_delete: bool,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::queue_key(qid),
            value: records::encode_queue(vhost, name, auto_delete, args),
        });
    }

    /// Removes a durable queue's definition, the bindings to it, and its log.
    pub fn delete_queue(&self, qid: u64, durable: bool) {
        if !durable {
            return;
        }
        self.send(Op::Delete(records::queue_key(qid)));
        self.send(Op::DeletePrefix(records::bindings_to_prefix(
            DestKind::Queue,
            qid,
        )));
        // Its log and the records describing it (`log::meta`).
        self.send(Op::DropLog(qid));
    }

    pub fn put_binding(
        &self,
        kind: DestKind,
        dest: u64,
        source: u64,
        key: &str,
        args: &FieldTable,
    ) {
        self.send(Op::Put {
            key: records::binding_key(kind, dest, source, key, args),
            value: Vec::new(),
        });
    }

    pub fn delete_binding(
        &self,
        kind: DestKind,
        dest: u64,
        source: u64,
        key: &str,
        args: &FieldTable,
    ) {
        self.send(Op::Delete(records::binding_key(
            kind, dest, source, key, args,
        )));
    }

    /// Calls `done` once everything sent so far is synced (or failed); `epoch` is
    /// [`Store::failure_epoch`] as read when the batch began.
    pub fn notify(&self, epoch: u64, done: SyncDone) {
        self.send(Op::Notify { epoch, done });
    }

    /// Blocks until everything sent so far is synced; false if the write or sync failed.
    pub fn sync(&self) -> bool {
        let (tx, rx) = mpsc::channel();
        self.send(Op::Barrier(tx));
        rx.recv().unwrap_or(false)
    }

    /// What this thread sent since the last call (see [`Op::cost`]): a connection asks
    /// before and after a batch of its input, to know whether it should pause.
    pub fn take_sent_here() -> Sent {
        SENT_HERE.with(|c| c.replace(Sent::default()))
    }

    /// Message bytes waiting for the writer (see [`Op::cost`]).
    pub fn backlog(&self) -> usize {
        self.backlog.pending()
    }

    /// Bytes on disk: sled's files and the queues' logs.
    pub fn size_on_disk(&self) -> u64 {
        self.db().and_then(|db| db.size_on_disk().ok()).unwrap_or(0) + dir_size(&self.logs, 2)
    }

    /// Syncs and stops the writer, waiting for it, so the database is closed (and its lock
    /// released) once the last handle goes. Later writes are dropped and logged.
    pub fn close(&self) {
        if let Some(w) = self.writer.lock().take() {
            self.send(Op::Stop);
            let _ = w.join();
        }
        // sled's file lock goes with its last handle: let it go now, even if a queue (a
        // timer, a late task) still holds this store.
        *self.db.write() = None;
    }
}

/// Bytes of the files under `dir`, `depth` levels down.
fn dir_size(dir: &Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() && depth > 1 => dir_size(&e.path(), depth - 1),
            Ok(m) if m.is_file() => m.len(),
            _ => 0,
        })
        .sum()
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}
