//! The disk side of a deep queue's ready messages, run off the queue's lock.
//!
//! A queue's lock is taken on runtime threads by every connection that publishes to it or
//! consumes from it, so it never waits for a disk. Everything a deep queue reads or writes
//! (its page file, its durable log) is a [`Job`] handed to its pager:
//! jobs run one at a time, in the order they were handed in, on a blocking thread. The queue
//! side only counts what is on disk; a read's messages come back through the refill callback,
//! which swaps them into the head under the queue's lock and dispatches them.
//!
//! Order is the whole contract: the logged range comes first (persistent messages of a
//! durable queue, read back from its log: they are on disk once, not copied to a page
//! file), then the page file, then (once a write failed, e.g. on a full disk) what the file
//! could not take, kept in RAM here until the file has been read through. The queue extends
//! the logged range only while nothing is paged (`Ready`). Jobs keep their order, so a read
//! handed in after a write sees that write's messages; a read of the log first waits for
//! the store's writer to have written what it asks for (a barrier, once per range grown).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::page_file::PageFile;
use super::ready::{Disk, QueuedMessage, Tail};
use super::Queue;
use crate::store::log::{LogReader, Settled};

/// What a queue asks of its disk side.
pub(super) enum Job {
    /// Append these messages (they follow everything already handed in).
    Write(Vec<QueuedMessage>),
    /// Messages already in the queue's log join the logged range (nothing is paged).
    Logged(Tail),
    /// Read back the next messages, about `max_cost` bytes of RAM (at least one).
    Read { generation: u64, max_cost: usize },
    /// Forget everything (purge, delete).
    Clear,
}

/// A read's result, for the queue of the generation it was asked in.
pub(super) struct Refill {
    pub generation: u64,
    pub messages: Vec<QueuedMessage>,
    /// Messages that were counted on disk but are gone (damaged records, an unreadable
    /// page file): the queue stops counting them.
    pub dropped: usize,
    pub dropped_bytes: usize,
    /// How many of `messages` and `dropped` were paged ones (not logged).
    pub paged: usize,
}

pub(super) struct Pager {
    jobs: Mutex<Jobs>,
    /// Signalled when the last job handed in has run.
    idle: Condvar,
    /// Only the running job touches it (jobs run one at a time): never contended.
    tail: Mutex<DiskTail>,
    /// Where reads go ([`Queue::refilled`]; weak: the queue holds its pager).
    queue: Weak<Queue>,
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<Job>,
    running: bool,
}

struct DiskTail {
    disk: Disk,
    /// Messages in the queue's log, not read back yet.
    logged: Tail,
    /// Settled seqs in the log (holes a restart found).
    settled: Settled,
    /// Reads the log (made at the first read).
    reader: Option<LogReader>,
    /// Everything in the log below this has been written by the store's writer.
    written_to: u64,
    /// Recovered messages with a seq up to this were delivered before the restart.
    delivered_before: Option<u64>,
    /// Opened when first written.
    pages: Option<PageFile>,
    /// Messages the page file could not take (a failing or full disk), after everything in
    /// it: kept in RAM rather than lost, and written nowhere until the file is read through.
    spilled: VecDeque<QueuedMessage>,
}

impl Pager {
    pub fn new(disk: Disk, queue: Weak<Queue>) -> Arc<Pager> {
        Arc::new(Pager {
            jobs: Mutex::new(Jobs::default()),
            idle: Condvar::new(),
            tail: Mutex::new(DiskTail {
                disk,
                logged: Tail::default(),
                settled: Settled::default(),
                reader: None,
                written_to: 0,
                delivered_before: None,
                pages: None,
                spilled: VecDeque::new(),
            }),
            queue,
        })
    }

    /// A queue recovered at start: the messages still in its log (before any job runs),
    /// all written.
    pub fn restore(&self, recovered: Tail, settled: Settled, delivered_before: Option<u64>) {
        let mut t = self.tail.lock();
        t.logged = recovered;
        t.written_to = recovered.to;
        t.settled = settled;
        t.delivered_before = delivered_before;
    }

    /// Hands in a job; starts a blocking task to run the jobs if none is running.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let mut jobs = self.jobs.lock();
        jobs.queue.push_back(job);
        if jobs.running {
            return;
        }
        jobs.running = true;
        drop(jobs);
        let me = self.clone();
        let run = move || me.run();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(run);
            }
            Err(_) => {
                std::thread::spawn(run);
            }
        }
    }

    /// Waits (at most `limit`) until every job handed in has run; off the runtime's
    /// workers where it can, so the connections sharing this thread go on meanwhile.
    pub fn wait_idle(&self, limit: Duration) {
        let wait = || {
            let mut jobs = self.jobs.lock();
            if jobs.running {
                let _ = self.idle.wait_for(&mut jobs, limit);
            }
        };
        crate::offload::off_worker(wait)
    }

    fn run(self: Arc<Self>) {
        loop {
            let job = {
                let mut jobs = self.jobs.lock();
                match jobs.queue.pop_front() {
                    Some(j) => j,
                    None => {
                        jobs.running = false;
                        self.idle.notify_all();
                        return;
                    }
                }
            };
            // The jobs lock is free here: the refill callback takes the queue's lock, and a
            // queue hands in jobs while holding it.
            let refill = self.tail.lock().run(job);
            if let (Some(r), Some(q)) = (refill, self.queue.upgrade()) {
                q.refilled(r);
            }
        }
    }
}

impl DiskTail {
    fn run(&mut self, job: Job) -> Option<Refill> {
        match job {
            Job::Write(batch) => {
                self.write(batch);
                None
            }
            Job::Logged(more) => {
                if self.logged.count == 0 {
                    self.logged = more;
                } else {
                    self.logged.to = more.to;
                    self.logged.count += more.count;
                    self.logged.bytes += more.bytes;
                }
                None
            }
            Job::Read {
                generation,
                max_cost,
            } => Some(self.read(generation, max_cost)),
            Job::Clear => {
                self.logged = Tail::default();
                self.settled = Settled::default();
                self.spilled.clear();
                if let Some(p) = &mut self.pages {
                    if let Err(e) = p.clear() {
                        tracing::warn!(qid = self.disk.qid, "page file: {e}");
                    }
                }
                None
            }
        }
    }

    fn write(&mut self, batch: Vec<QueuedMessage>) {
        if self.spilled.is_empty() {
            match self.page_file().and_then(|p| p.append(&batch)) {
                Ok(()) => return,
                // A full or failing disk: keep them in RAM rather than lose them.
                Err(e) => tracing::error!(qid = self.disk.qid, "cannot page messages out: {e}"),
            }
        }
        self.spilled.extend(batch);
    }

    fn page_file(&mut self) -> std::io::Result<&mut PageFile> {
        if self.pages.is_none() {
            let path = self
                .disk
                .store
                .pages_dir()
                .join(format!("{:016x}.pg", self.disk.qid));
            self.pages = Some(PageFile::create(path)?);
        }
        match &mut self.pages {
            Some(p) => Ok(p),
            None => Err(std::io::Error::other("page file not open")),
        }
    }

    /// The next messages in order: the logged range first, then the page file, then what
    /// it could not take.
    fn read(&mut self, generation: u64, max_cost: usize) -> Refill {
        let mut r = Refill {
            generation,
            messages: Vec::new(),
            dropped: 0,
            dropped_bytes: 0,
            paged: 0,
        };
        let mut cost = 0;
        if self.logged.count > 0 && self.logged.to > self.written_to {
            // The writer may not have written the newest yet: wait until it has.
            let to = self.logged.to;
            self.disk.store.sync();
            self.written_to = to;
        }
        while cost < max_cost && self.logged.count > 0 {
            let t = self.logged;
            let reader = self
                .reader
                .get_or_insert_with(|| self.disk.store.log_reader(self.disk.qid));
            let read = match reader.read(t.from, t.to, max_cost - cost, &self.settled) {
                Ok(read) => read,
                Err(e) => {
                    // The messages stay where they are; the next read tries again.
                    tracing::error!(qid = self.disk.qid, "{e}");
                    return r;
                }
            };
            if read.is_empty() {
                // Records that are not there (damaged, or a failed commit's) leave no
                // phantom count.
                r.dropped += t.count;
                r.dropped_bytes += t.bytes;
                self.logged = Tail::default();
                break;
            }
            for (seq, message, expires_at) in read {
                cost += message.ram_cost();
                self.logged.from = seq + 1;
                self.logged.count = self.logged.count.saturating_sub(1);
                self.logged.bytes = self.logged.bytes.saturating_sub(message.size());
                r.messages.push(QueuedMessage {
                    seq,
                    message: Arc::new(message),
                    redelivered: self.delivered_before.is_some_and(|d| seq <= d),
                    on_disk: true,
                    expires_at,
                    deliveries: 0,
                });
            }
        }
        if cost > 0 {
            return r;
        }
        if let Some(pages) = self.pages.as_mut().filter(|p| p.count > 0) {
            match pages.pop_chunk(max_cost) {
                Ok(ms) => {
                    r.paged = ms.len();
                    r.messages = ms;
                }
                Err(e) => {
                    // Unreadable scratch: those messages are lost (persistent ones come back
                    // from the store at the next start). Said loudly; the queue goes on.
                    tracing::error!(qid = self.disk.qid, lost = pages.count, "page file: {e}");
                    r.dropped += pages.count;
                    r.paged = pages.count;
                    r.dropped_bytes += pages.bytes;
                    let _ = pages.clear();
                }
            }
            return r;
        }
        while cost < max_cost {
            let Some(m) = self.spilled.pop_front() else {
                break;
            };
            cost += m.message.ram_cost();
            r.messages.push(m);
            r.paged += 1;
        }
        r
    }
}
