//! The crash lab: rounds of confirmed publishing into a broker child process that is then
//! killed (SIGKILL) or has the power cut under it (forgetfs), all on one data directory, and
//! a final start that drains everything and checks what the broker promised.
//!
//! Each round starts the broker, declares a durable queue of its own (`lab-r{round}`, bound
//! to `amq.direct`) and publishes one confirmed message into it; then runs [`PUBLISHERS`]
//! publishers (own connection each, confirm mode, persistent messages to the durable queue
//! [`QUEUE`], up to [`WINDOW`] confirms outstanding) and one consumer (manual acks, prefetch
//! [`PREFETCH`]); then, after a random delay, cuts. What the final drain checks, and why:
//!
//! - A message the broker confirmed (basic.ack to the publisher) and the consumer never tried
//!   to ack is in the final drain: a confirm promises the message is on disk. An ack the
//!   consumer sent (even one whose send reported an error: it may have reached the broker)
//!   excuses a message, since acks are not synced (at-least-once).
//! - Every round's own queue exists after the final start, with its message: a queue declared
//!   before a confirm is as durable as the confirmed message.
//! - No id is drained twice, and within one broker process the consumer never gets an id
//!   twice.
//! - Every id drained or consumed was published, and its body and delivery mode are exactly
//!   what was sent (nothing is invented or corrupted; every third body is [`LARGE`] bytes,
//!   so large bodies take whatever path the store has for them).
//! - The declare-ok message count after recovery matches what is then delivered, and the
//!   queue ends empty. The broker's output never contains "panicked".
//! - Sanity, so the run proves something: enough confirmed messages, and at least one round
//!   cut with publishes in flight.
#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::watch;

use super::child::{assert_no_panic, ChildBroker};
use super::{durable, persistent};

pub const QUEUE: &str = "lab-q";
pub const PUBLISHERS: usize = 3;
/// Confirms each publisher may have outstanding.
pub const WINDOW: usize = 256;
pub const PREFETCH: u16 = 100;
/// How long any single client step may take before the test gives up on it.
const STEP: Duration = Duration::from_secs(10);
/// Size of the large bodies (every third message).
pub const LARGE: usize = 4096;

/// What the clients did, by message id (`r{round}-p{publisher}-{n}`).
#[derive(Default)]
pub struct Ledger {
    /// Recorded before basic.publish is sent.
    pub published: HashSet<String>,
    /// basic.ack from the broker received.
    pub confirmed: HashSet<String>,
    /// basic.nack from the broker received.
    pub nacked: HashSet<String>,
    /// Delivered to the consumer (any round).
    pub received: HashSet<String>,
    /// The consumer started sending a basic.ack (recorded before the send).
    pub ack_sent: HashSet<String>,
    /// ... and the send returned Ok.
    pub acked: HashSet<String>,
    /// Consumed bodies that were never published or differ from what was sent.
    pub bad_bodies: Vec<String>,
    /// Ids the consumer got twice from one broker process: `(round, id)`.
    pub dup_in_round: Vec<(usize, String)>,
    /// Each round's own queue and the id confirmed into it.
    pub round_queues: Vec<(String, String)>,
}

pub type Shared = Arc<Mutex<Ledger>>;

/// The exact body sent for `id`: the id alone, or for every third message the id, a `|`, and
/// filler derived from the id up to [`LARGE`] bytes.
pub fn body_for(id: &str) -> Vec<u8> {
    let n: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
    let mut b = id.as_bytes().to_vec();
    if n % 3 == 0 {
        b.push(b'|');
        let mut i = 0usize;
        while b.len() < LARGE {
            b.push(b'a' + ((i + n as usize) % 26) as u8);
            i += 1;
        }
    }
    b
}

/// The id a body claims to carry (valid or not).
pub fn id_of(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.split('|').next().unwrap_or_default().to_string()
}

/// Whether a delivered message is exactly one that was published.
fn genuine(ledger: &Ledger, id: &str, body: &[u8], props: &BasicProperties) -> bool {
    ledger.published.contains(id)
        && body == body_for(id).as_slice()
        && props.delivery_mode() == &Some(2)
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

pub async fn open(uri: &str) -> (Connection, Channel) {
    let conn = within(
        "connect",
        Connection::connect(uri, ConnectionProperties::default()),
    )
    .await
    .expect("lapin connects");
    let ch = within("channel.open", conn.create_channel())
        .await
        .expect("channel opens");
    (conn, ch)
}

fn settle(ledger: &Shared, id: String, ack: bool) {
    let mut l = ledger.lock().unwrap();
    if ack {
        l.confirmed.insert(id);
    } else {
        l.nacked.insert(id);
    }
}

/// Set once the broker has been cut: clients stop waiting on it (lapin does not always
/// report a connection whose peer is gone, when it has nothing to send).
type Killed = watch::Receiver<bool>;

/// `f`, or None if the broker was cut first or it took longer than [`STEP`].
async fn step<F: std::future::Future>(killed: &mut Killed, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = tokio::time::timeout(STEP, f) => r.ok(),
        _ = killed.wait_for(|k| *k) => None,
    }
}

/// Publishes `{prefix}-{n}` for n = 0, 1, ... into `queue` until the broker is cut, keeping
/// up to [`WINDOW`] confirms outstanding.
pub async fn publisher(
    _conn: Connection,
    ch: Channel,
    queue: String,
    prefix: String,
    ledger: Shared,
    mut killed: Killed,
) {
    let mut window: VecDeque<(String, PublisherConfirm)> = VecDeque::new();
    let mut n = 0u64;
    loop {
        if window.len() >= WINDOW {
            let (_, confirm) = window.front_mut().unwrap();
            match step(&mut killed, confirm).await {
                Some(Ok(c)) => {
                    let (id, _) = window.pop_front().unwrap();
                    settle(&ledger, id, c.is_ack());
                }
                Some(Err(_)) => {
                    window.pop_front();
                    break;
                }
                None => break,
            }
            continue;
        }
        let id = format!("{prefix}-{n}");
        n += 1;
        let body = body_for(&id);
        ledger.lock().unwrap().published.insert(id.clone());
        let sent = ch.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            persistent(),
        );
        match step(&mut killed, sent).await {
            Some(Ok(confirm)) => window.push_back((id, confirm)),
            _ => break,
        }
    }
    // Confirms that arrived before the cut still count (lapin resolves them in order, before
    // it reports the connection lost); the rest fail, or never resolve.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    for (id, confirm) in window {
        match tokio::time::timeout_at(deadline, confirm).await {
            Ok(Ok(c)) => settle(&ledger, id, c.is_ack()),
            Ok(Err(_)) => {}
            Err(_) => break,
        }
    }
}

/// Consumes [`QUEUE`] with manual acks until the broker is cut.
async fn consumer(
    _conn: Connection,
    ch: Channel,
    round: usize,
    ledger: Shared,
    mut killed: Killed,
) {
    let consume = ch.basic_consume(
        QUEUE.into(),
        "lab-consumer".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    );
    let Some(Ok(mut deliveries)) = step(&mut killed, consume).await else {
        return;
    };
    let mut seen = HashSet::new();
    loop {
        let d: Delivery = match step(&mut killed, deliveries.next()).await {
            Some(Some(Ok(d))) => d,
            _ => break,
        };
        let id = id_of(&d.data);
        {
            let mut l = ledger.lock().unwrap();
            if !genuine(&l, &id, &d.data, &d.properties) {
                l.bad_bodies
                    .push(String::from_utf8_lossy(&d.data).chars().take(80).collect());
            }
            if !seen.insert(id.clone()) {
                l.dup_in_round.push((round, id.clone()));
            }
            l.received.insert(id.clone());
            l.ack_sent.insert(id.clone());
        }
        match step(&mut killed, d.acker.ack(Default::default())).await {
            Some(Ok(true)) => {
                ledger.lock().unwrap().acked.insert(id);
            }
            _ => break,
        }
    }
}

/// Up to 20 items of a list, for failure messages.
pub fn some<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
    let mut v: Vec<_> = ids.into_iter().collect();
    v.sort();
    v.truncate(20);
    v
}

/// How a round ends.
pub enum Cut<'a> {
    /// SIGKILL: the process ends, the kernel keeps what it was given.
    Kill,
    /// SIGKILL, then the power goes: forgetfs drops everything not synced (`torn`: the last
    /// unsynced write survives in part).
    PowerLoss {
        fs: &'a mut forgetfs::ForgetFs,
        torn: bool,
    },
}

pub struct RoundStats {
    pub delay_ms: u64,
    pub published: usize,
    pub confirmed: usize,
    /// Published in this round and never confirmed nor nacked: in flight at the cut.
    pub in_flight: usize,
    /// Unsynced bytes a power cut dropped.
    pub bytes_lost: u64,
}

/// Rounds on one data directory, then a final drain.
pub struct Lab {
    pub data: PathBuf,
    pub log: PathBuf,
    pub ledger: Shared,
    pub rounds: Vec<RoundStats>,
    started: Instant,
}

/// What the final check found (the test asserts on it and prints it).
pub struct Summary {
    pub published: usize,
    pub confirmed: usize,
    pub must_survive: usize,
    pub recovered: usize,
    pub lost: Vec<String>,
    pub lost_queues: Vec<String>,
    pub line: String,
}

impl Lab {
    pub fn new(data: &Path, log: &Path) -> Lab {
        Lab {
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            ledger: Arc::default(),
            rounds: Vec::new(),
            started: Instant::now(),
        }
    }

    /// One round: start, a queue of its own with one confirmed message, publish and consume,
    /// the cut after a random delay (ms) from `delay`, wait for the clients.
    pub async fn round(&mut self, delay: RangeInclusive<u64>, cut: Cut<'_>) -> &RoundStats {
        let round = self.rounds.len();
        let mut broker = ChildBroker::start(&self.data, &self.log, &[]).await;
        let uri = broker.uri();
        self.round_queue(&uri, round).await;
        let (kill_tx, killed) = watch::channel(false);
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let (conn, ch) = open(&uri).await;
            within(
                "queue.declare",
                ch.queue_declare(QUEUE.into(), durable(), FieldTable::default()),
            )
            .await
            .expect("declare the lab queue");
            within(
                "confirm.select",
                ch.confirm_select(ConfirmSelectOptions::default()),
            )
            .await
            .expect("confirm.select");
            tasks.push((
                format!("publisher {p}"),
                tokio::spawn(publisher(
                    conn,
                    ch,
                    QUEUE.to_string(),
                    format!("r{round}-p{p}"),
                    self.ledger.clone(),
                    killed.clone(),
                )),
            ));
        }
        let (conn, ch) = open(&uri).await;
        within(
            "basic.qos",
            ch.basic_qos(PREFETCH, BasicQosOptions::default()),
        )
        .await
        .expect("basic.qos");
        tasks.push((
            "consumer".to_string(),
            tokio::spawn(consumer(
                conn,
                ch,
                round,
                self.ledger.clone(),
                killed.clone(),
            )),
        ));

        let delay_ms = rand::random_range(delay);
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        broker.kill();
        let mut bytes_lost = 0;
        if let Cut::PowerLoss { fs, torn } = cut {
            bytes_lost = fs.power_cut(torn).expect("power cut").bytes_lost;
        }
        kill_tx.send(true).unwrap();
        // Every client stops at once; one that does not is stopped.
        let deadline = tokio::time::Instant::now() + STEP;
        for (name, mut t) in tasks {
            match tokio::time::timeout_at(deadline, &mut t).await {
                Ok(r) => r.expect("client task panicked"),
                Err(_) => {
                    t.abort();
                    eprintln!("lab: round {round}: the {name} did not stop in time");
                }
            }
        }
        drop(broker);
        assert_no_panic(&self.log, &format!("round {round}"));

        let l = self.ledger.lock().unwrap();
        let prefix = format!("r{round}-");
        let mine = |s: &HashSet<String>| s.iter().filter(|id| id.starts_with(&prefix)).count();
        let (published, confirmed, nacked) =
            (mine(&l.published), mine(&l.confirmed), mine(&l.nacked));
        drop(l);
        self.rounds.push(RoundStats {
            delay_ms,
            published,
            confirmed,
            in_flight: published - confirmed - nacked,
            bytes_lost,
        });
        let s = self.rounds.last().unwrap();
        eprintln!(
            "lab: round {round}: cut after {} ms, published {}, confirmed {}, in flight {}, \
             unsynced bytes dropped {}",
            s.delay_ms, s.published, s.confirmed, s.in_flight, s.bytes_lost
        );
        s
    }

    /// Declares `lab-r{round}` (durable, bound to amq.direct) and confirms one message into it.
    async fn round_queue(&mut self, uri: &str, round: usize) {
        let name = format!("lab-r{round}");
        let id = format!("q{round}-0");
        let (conn, ch) = open(uri).await;
        within(
            "queue.declare",
            ch.queue_declare(name.as_str().into(), durable(), FieldTable::default()),
        )
        .await
        .expect("declare the round's queue");
        within("queue.bind", super::bind(&ch, &name, "amq.direct", &name)).await;
        within(
            "confirm.select",
            ch.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .unwrap();
        self.ledger.lock().unwrap().published.insert(id.clone());
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                "amq.direct".into(),
                name.as_str().into(),
                BasicPublishOptions::default(),
                &body_for(&id),
                persistent(),
            ),
        )
        .await
        .unwrap();
        let c = within("confirm", confirm).await.unwrap();
        assert!(c.is_ack(), "the round's queue message was nacked");
        {
            let mut l = self.ledger.lock().unwrap();
            l.confirmed.insert(id.clone());
            l.round_queues.push((name, id));
        }
        let _ = conn.close(200, "ok".into()).await;
    }

    /// Final start: every round's queue and its message, then every message left in
    /// [`QUEUE`], in delivery order, checked for shape. Returns what to assert on.
    pub async fn drain(&mut self) -> Summary {
        let broker = ChildBroker::start(&self.data, &self.log, &[]).await;
        let (conn, ch) = open(&broker.uri()).await;
        let mut lost_queues = Vec::new();
        let round_queues = self.ledger.lock().unwrap().round_queues.clone();
        let mut drained = Vec::new();
        for (name, id) in &round_queues {
            let (c, ch2) = open(&broker.uri()).await;
            let found = within("passive queue.declare", super::declare_passive(&ch2, name)).await;
            if found.is_err() {
                lost_queues.push(name.clone());
                continue;
            }
            let got = within(
                "basic.get",
                ch2.basic_get(name.as_str().into(), BasicGetOptions { no_ack: true }),
            )
            .await
            .expect("basic.get");
            match got {
                Some(m) if id_of(&m.delivery.data) == *id => drained.push(id.clone()),
                _ => lost_queues.push(format!("{name} (its message)")),
            }
            let _ = c.close(200, "ok".into()).await;
        }
        let q = within(
            "queue.declare",
            ch.queue_declare(QUEUE.into(), durable(), FieldTable::default()),
        )
        .await
        .expect("declare the lab queue");
        let expected = q.message_count() as usize;
        let mut deliveries = within(
            "basic.consume",
            super::consume(&ch, QUEUE, "lab-drain", true),
        )
        .await;
        let mut bad = Vec::new();
        let mut from_queue = 0;
        // Everything the declare counted, then whatever else comes within a moment.
        loop {
            let wait = if from_queue < expected {
                STEP
            } else {
                Duration::from_millis(500)
            };
            let d = match tokio::time::timeout(wait, deliveries.next()).await {
                Ok(Some(d)) => d.expect("delivery"),
                Ok(None) => panic!("drain consumer ended"),
                Err(_) => break,
            };
            let id = id_of(&d.data);
            if !genuine(&self.ledger.lock().unwrap(), &id, &d.data, &d.properties) {
                bad.push(
                    String::from_utf8_lossy(&d.data)
                        .chars()
                        .take(80)
                        .collect::<String>(),
                );
            }
            drained.push(id);
            from_queue += 1;
        }
        within(
            "basic.cancel",
            ch.basic_cancel("lab-drain".into(), BasicCancelOptions::default()),
        )
        .await
        .expect("basic.cancel");
        let left = within("passive queue.declare", super::message_count(&ch, QUEUE)).await;
        let _ = conn.close(200, "bye".into()).await;
        drop(broker);
        assert_no_panic(&self.log, "final drain");
        assert!(
            bad.is_empty(),
            "{} drained messages were never published or were altered, e.g. {:?}",
            bad.len(),
            &bad[..bad.len().min(10)]
        );
        assert_eq!(left, 0, "the lab queue is not empty after the drain");
        assert_eq!(
            from_queue, expected,
            "declare-ok counted {expected} messages after recovery, {from_queue} were delivered"
        );

        let l = self.ledger.lock().unwrap();
        let mut once = HashSet::new();
        let dups: Vec<&String> = drained.iter().filter(|id| !once.insert(*id)).collect();
        assert!(
            dups.is_empty(),
            "{} ids drained more than once, e.g. {:?}",
            dups.len(),
            some(dups.iter().copied())
        );
        assert!(
            l.bad_bodies.is_empty(),
            "the consumer got {} messages never published or altered, e.g. {:?}",
            l.bad_bodies.len(),
            &l.bad_bodies[..l.bad_bodies.len().min(10)]
        );
        assert!(
            l.dup_in_round.is_empty(),
            "one broker process delivered the same id twice: {:?}",
            &l.dup_in_round[..l.dup_in_round.len().min(20)]
        );
        let lost: Vec<String> = l
            .confirmed
            .iter()
            .filter(|id| !l.ack_sent.contains(*id) && !once.contains(id))
            .cloned()
            .collect();
        let must_survive = l
            .confirmed
            .iter()
            .filter(|id| !l.ack_sent.contains(*id))
            .count();
        let acked_back = l.acked.iter().filter(|id| once.contains(id)).count();
        let unconfirmed_back = drained
            .iter()
            .filter(|id| !l.confirmed.contains(*id))
            .count();
        let line = format!(
            "rounds={} published={} confirmed={} nacked={} consumed={} acked={} recovered={} \
             (confirmed and unacked {must_survive}, lost {}; queues lost {}; acked but back \
             {acked_back}; unconfirmed but kept {unconfirmed_back}) in {:.1}s",
            self.rounds.len(),
            l.published.len(),
            l.confirmed.len(),
            l.nacked.len(),
            l.received.len(),
            l.acked.len(),
            drained.len(),
            lost.len(),
            lost_queues.len(),
            self.started.elapsed().as_secs_f64()
        );
        Summary {
            published: l.published.len(),
            confirmed: l.confirmed.len(),
            must_survive,
            recovered: drained.len(),
            lost,
            lost_queues,
            line,
        }
    }
}

impl Summary {
    /// The promises: nothing confirmed is lost, no queue declared before a confirm is lost;
    /// and the run was big enough to mean something.
    pub fn assert_kept(&self, rounds: &[RoundStats], min_confirmed: usize) {
        assert!(
            self.lost_queues.is_empty(),
            "{} durable queues declared before a confirm were lost: {:?}",
            self.lost_queues.len(),
            &self.lost_queues[..self.lost_queues.len().min(20)]
        );
        assert!(
            self.lost.is_empty(),
            "{} confirmed (and never acked) messages were lost, e.g. {:?}",
            self.lost.len(),
            some(self.lost.iter())
        );
        assert!(
            self.confirmed > min_confirmed,
            "only {} messages confirmed: the run proves little",
            self.confirmed
        );
        assert!(
            rounds.iter().any(|s| s.in_flight > 0),
            "no round was cut with publishes in flight"
        );
    }
}
