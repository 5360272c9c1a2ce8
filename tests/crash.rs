//! Crash safety: the `warren` binary killed with SIGKILL in the middle of a confirmed
//! publishing stream, several times over, on one data directory.
//!
//! Each round starts the broker as a child process on the same data directory, runs three
//! publishers (own connection each, confirm mode, persistent messages to the durable queue
//! `crash-q`, up to [`WINDOW`] confirms outstanding) and one consumer (manual acks, prefetch
//! [`PREFETCH`]), then kills the broker with SIGKILL after a random 300–1500 ms and stops the
//! clients. A last start drains the queue. What is checked, and why:
//!
//! - A message the broker confirmed (basic.ack to the publisher) and the consumer never tried
//!   to ack is in the final drain: a confirm promises the message is on disk, and a kill -9
//!   must not take it back. An ack the consumer sent (even one whose send reported an error:
//!   it may have reached the broker) excuses a message, since acks are not synced and an
//!   acked message may come back or not (at-least-once).
//! - No id is drained twice, and within one broker process the consumer never gets an id
//!   twice (no message is duplicated by recovery or redelivery bookkeeping).
//! - Every id drained or consumed was published, and its body and delivery mode are exactly
//!   what was sent (nothing is invented or corrupted; every third body is 4 KiB, so large
//!   bodies take whatever path the store has for them).
//! - The declare-ok message count after recovery matches what is then delivered, and the
//!   queue ends empty.
//! - The broker's output never contains "panicked".
//! - Sanity, so the test proves something: enough confirmed messages overall, and at least
//!   one round was killed with publishes in flight (published, never confirmed).
//!
//! What this cannot see: SIGKILL ends the process, not the machine, so whatever the broker
//! handed to the kernel survives even unsynced (sled without its flush loses nothing here).
//! It checks the order of things (the write before the confirm, before the ack's delete)
//! and recovery; a missing fsync only shows on power loss.
//!
//! `WARREN_CRASH_ROUNDS` sets the number of rounds (default 5). The summary line
//! (`crash: rounds=...`) is printed with `--nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashSet, VecDeque};
use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::watch;

const QUEUE: &str = "crash-q";
const PUBLISHERS: usize = 3;
/// Confirms each publisher may have outstanding.
const WINDOW: usize = 256;
const PREFETCH: u16 = 100;
/// How long any single client step may take before the test gives up on it.
const STEP: Duration = Duration::from_secs(10);
/// Size of the large bodies (every third message).
const LARGE: usize = 4096;
/// Confirmed messages needed over all rounds for the run to count.
const MIN_CONFIRMED: usize = 1000;

/// What the clients did, by message id (`r{round}-p{publisher}-{n}`).
#[derive(Default)]
struct Ledger {
    /// Recorded before basic.publish is sent.
    published: HashSet<String>,
    /// basic.ack from the broker received.
    confirmed: HashSet<String>,
    /// basic.nack from the broker received.
    nacked: HashSet<String>,
    /// Delivered to the consumer (any round).
    received: HashSet<String>,
    /// The consumer started sending a basic.ack (recorded before the send).
    ack_sent: HashSet<String>,
    /// ... and the send returned Ok.
    acked: HashSet<String>,
    /// Consumed bodies that were never published or differ from what was sent.
    bad_bodies: Vec<String>,
    /// Ids the consumer got twice from one broker process: `(round, id)`.
    dup_in_round: Vec<(usize, String)>,
}

type Shared = Arc<Mutex<Ledger>>;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The exact body sent for `id`: the id alone, or for every third message the id, a `|`, and
/// filler derived from the id up to [`LARGE`] bytes.
fn body_for(id: &str) -> Vec<u8> {
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
fn id_of(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    s.split('|').next().unwrap_or_default().to_string()
}

/// Whether a delivered message is exactly one that was published.
fn genuine(ledger: &Ledger, id: &str, body: &[u8], props: &BasicProperties) -> bool {
    ledger.published.contains(id)
        && body == body_for(id).as_slice()
        && props.delivery_mode() == &Some(2)
}

fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The broker as a child process; killed and reaped on drop.
struct Broker {
    child: Child,
    port: u16,
}

impl Broker {
    /// Starts `warren` on `data`, its stdout and stderr appended to `log`, and waits until it
    /// accepts connections (after recovery).
    async fn start(data: &Path, log: &Path) -> Broker {
        let port = free_port();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_warren"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("WARREN_METRICS_LISTEN", "off")
            .env("WARREN_DATA_DIR", data)
            .env_remove("WARREN_CONFIG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut b = Broker { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = b.child.try_wait().unwrap() {
                panic!(
                    "broker exited while starting ({status}); log:\n{}",
                    tail(log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start listening; log:\n{}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b
    }

    fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// SIGKILL, then reap.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of the broker's log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

fn assert_no_panic(log: &Path, when: &str) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "the broker panicked ({when}); log:\n{}",
        tail(log)
    );
}

async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn open(uri: &str) -> (Connection, Channel) {
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

/// Set once the broker has been killed: clients stop waiting on it (lapin does not always
/// report a connection whose peer is gone, when it has nothing to send).
type Killed = watch::Receiver<bool>;

/// `f`, or None if the broker was killed first or it took longer than [`STEP`].
async fn step<F: std::future::Future>(killed: &mut Killed, f: F) -> Option<F::Output> {
    tokio::select! {
        biased;
        r = tokio::time::timeout(STEP, f) => r.ok(),
        _ = killed.wait_for(|k| *k) => None,
    }
}

/// Publishes `r{round}-p{p}-{n}` for n = 0, 1, ... until the broker is killed, keeping up to
/// [`WINDOW`] confirms outstanding.
async fn publisher(
    _conn: Connection,
    ch: Channel,
    round: usize,
    p: usize,
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
        let id = format!("r{round}-p{p}-{n}");
        n += 1;
        let body = body_for(&id);
        ledger.lock().unwrap().published.insert(id.clone());
        let sent = ch.basic_publish(
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            &body,
            persistent(),
        );
        match step(&mut killed, sent).await {
            Some(Ok(confirm)) => window.push_back((id, confirm)),
            _ => break,
        }
    }
    // Confirms that arrived before the kill still count (lapin resolves them in order, before
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

/// Consumes `crash-q` with manual acks until the broker is killed.
async fn consumer(
    _conn: Connection,
    ch: Channel,
    round: usize,
    ledger: Shared,
    mut killed: Killed,
) {
    let consume = ch.basic_consume(
        QUEUE.into(),
        "crash-consumer".into(),
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
fn some<'a>(ids: impl IntoIterator<Item = &'a String>) -> Vec<&'a String> {
    let mut v: Vec<_> = ids.into_iter().collect();
    v.sort();
    v.truncate(20);
    v
}

struct Round {
    delay_ms: u64,
    published: usize,
    confirmed: usize,
    /// Published in this round and never confirmed nor nacked: in flight at the kill.
    in_flight: usize,
}

/// One round: start, publish and consume, SIGKILL after a random delay, wait for the clients.
async fn round(round: usize, data: &Path, log: &Path, ledger: &Shared) -> Round {
    let mut broker = Broker::start(data, log).await;
    let uri = broker.uri();
    let (kill_tx, killed) = watch::channel(false);
    let mut tasks = Vec::new();
    for p in 0..PUBLISHERS {
        let (conn, ch) = open(&uri).await;
        within(
            "queue.declare",
            ch.queue_declare(QUEUE.into(), durable(), FieldTable::default()),
        )
        .await
        .expect("declare crash-q");
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
                round,
                p,
                ledger.clone(),
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
        tokio::spawn(consumer(conn, ch, round, ledger.clone(), killed.clone())),
    ));

    let delay_ms = rand::random_range(300..=1500u64);
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    broker.kill();
    kill_tx.send(true).unwrap();
    // Every client stops at once; one that does not is stopped.
    let deadline = tokio::time::Instant::now() + STEP;
    for (name, mut t) in tasks {
        match tokio::time::timeout_at(deadline, &mut t).await {
            Ok(r) => r.expect("client task panicked"),
            Err(_) => {
                t.abort();
                eprintln!("crash: round {round}: the {name} did not stop in time");
            }
        }
    }
    drop(broker);
    assert_no_panic(log, &format!("round {round}"));

    let l = ledger.lock().unwrap();
    let prefix = format!("r{round}-");
    let mine = |s: &HashSet<String>| s.iter().filter(|id| id.starts_with(&prefix)).count();
    let (published, confirmed, nacked) = (mine(&l.published), mine(&l.confirmed), mine(&l.nacked));
    Round {
        delay_ms,
        published,
        confirmed,
        in_flight: published - confirmed - nacked,
    }
}

/// Final start: every message left in `crash-q`, in delivery order, checked for shape.
async fn drain_all(data: &Path, log: &Path, ledger: &Shared) -> Vec<String> {
    let broker = Broker::start(data, log).await;
    let (conn, ch) = open(&broker.uri()).await;
    let q = within(
        "queue.declare",
        ch.queue_declare(QUEUE.into(), durable(), FieldTable::default()),
    )
    .await
    .expect("declare crash-q");
    let expected = q.message_count() as usize;
    let mut deliveries = within(
        "basic.consume",
        ch.basic_consume(
            QUEUE.into(),
            "crash-drain".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("basic.consume");
    let mut drained = Vec::with_capacity(expected);
    let mut bad = Vec::new();
    // Everything the declare counted, then whatever else comes within a moment.
    loop {
        let wait = if drained.len() < expected {
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
        if !genuine(&ledger.lock().unwrap(), &id, &d.data, &d.properties) {
            bad.push(
                String::from_utf8_lossy(&d.data)
                    .chars()
                    .take(80)
                    .collect::<String>(),
            );
        }
        drained.push(id);
    }
    within(
        "basic.cancel",
        ch.basic_cancel("crash-drain".into(), BasicCancelOptions::default()),
    )
    .await
    .expect("basic.cancel");
    let left = within(
        "passive queue.declare",
        ch.queue_declare(
            QUEUE.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("passive declare crash-q")
    .message_count();
    let got = within(
        "basic.get",
        ch.basic_get(QUEUE.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get");
    let _ = conn.close(200, "bye".into()).await;
    drop(broker);
    assert_no_panic(log, "final drain");
    assert!(
        bad.is_empty(),
        "{} drained messages were never published or were altered, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    assert_eq!(left, 0, "crash-q not empty after the drain");
    assert!(got.is_none(), "basic.get found a message after the drain");
    assert_eq!(
        drained.len(),
        expected,
        "declare-ok counted {expected} messages after recovery, {} were delivered",
        drained.len()
    );
    drained
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_no_confirmed_message() {
    let rounds: usize = std::env::var("WARREN_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let log = dir.path().join("broker.log");
    let ledger: Shared = Arc::default();
    let started = Instant::now();

    let mut stats = Vec::new();
    for r in 0..rounds {
        let s = round(r, &data, &log, &ledger).await;
        eprintln!(
            "crash: round {r}: killed after {} ms, published {}, confirmed {}, in flight {}",
            s.delay_ms, s.published, s.confirmed, s.in_flight
        );
        stats.push(s);
    }
    let drained = drain_all(&data, &log, &ledger).await;

    let l = ledger.lock().unwrap();
    let mut once = HashSet::new();
    let dups: Vec<&String> = drained.iter().filter(|id| !once.insert(*id)).collect();
    let lost: Vec<&String> = l
        .confirmed
        .iter()
        .filter(|id| !l.ack_sent.contains(*id) && !once.contains(id))
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
    eprintln!(
        "crash: rounds={rounds} published={} confirmed={} nacked={} consumed={} acked={} \
         recovered={} (confirmed and unacked {must_survive}, lost {}; acked but back {acked_back}; \
         unconfirmed but kept {unconfirmed_back}) in {:.1}s",
        l.published.len(),
        l.confirmed.len(),
        l.nacked.len(),
        l.received.len(),
        l.acked.len(),
        drained.len(),
        lost.len(),
        started.elapsed().as_secs_f64()
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
    assert!(
        dups.is_empty(),
        "{} ids drained more than once, e.g. {:?}",
        dups.len(),
        some(dups.iter().copied())
    );
    assert!(
        lost.is_empty(),
        "{} confirmed (and never acked) messages were lost, e.g. {:?}",
        lost.len(),
        some(lost.iter().copied())
    );
    assert!(
        l.confirmed.len() > MIN_CONFIRMED,
        "only {} messages confirmed: the run proves little",
        l.confirmed.len()
    );
    assert!(
        stats.iter().any(|s| s.in_flight > 0),
        "no round was killed with publishes in flight"
    );
}
