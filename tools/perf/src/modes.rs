//! The scenarios that measure a broker's footprint rather than its speed: many idle
//! connections, a deep queue, many queues. Each can hold its state for `--hold` seconds so
//! that a script can read the broker's memory meanwhile; it prints a line starting with
//! `holding` on stderr when the state is in place.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use warren_codec::protocol::queue;
use warren_codec::AMQPClass;

use crate::conn::{err, Conn, Result, Uri};
use crate::publisher::{self, Template};
use crate::stats::Stats;
use crate::{report_progress, Opts};

/// Opens this many connections at a time.
const OPEN_CONCURRENCY: usize = 32;

/// The queue `--fill` fills.
pub const FILL_QUEUE: &str = "warren-perf-fill";

fn holding(what: &str, secs: u64) {
    eprintln!("holding {what} for {secs} s");
    let _ = std::io::stderr().flush();
}

/// `--idle-connections N`: N connections, each with one open channel, held `--hold` s.
pub async fn idle_connections(opts: &Opts, uri: &Uri, n: usize) -> Result<Value> {
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(OPEN_CONCURRENCY));
    let mut opening = JoinSet::new();
    for _ in 0..n {
        let (uri, limit) = (uri.clone(), limit.clone());
        opening.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .map_err(|_| err("semaphore closed"))?;
            Conn::open(&uri).await
        });
    }
    let mut conns = Vec::with_capacity(n);
    while let Some(r) = opening.join_next().await {
        let conn = r.map_err(|e| err(format!("open task: {e}")))??;
        conns.push(conn);
    }
    let open_secs = started.elapsed().as_secs_f64();
    let hold = opts.hold.unwrap_or(0);
    holding(&format!("{n} connections"), hold);
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let mut closing = JoinSet::new();
    for c in conns {
        closing.spawn(c.close());
    }
    while closing.join_next().await.is_some() {}
    Ok(json!({
        "mode": "idle-connections",
        "connections": n,
        "open_secs": open_secs,
        "held_secs": hold,
    }))
}

/// The queues `--fill` fills and `--drain` drains: [`FILL_QUEUE`], or with `--queues K`
/// (K > 1) `warren-perf-fill-0` .. `warren-perf-fill-<K-1>`.
pub fn fill_queues(k: u64) -> Vec<String> {
    if k <= 1 {
        vec![FILL_QUEUE.to_string()]
    } else {
        (0..k).map(|i| format!("{FILL_QUEUE}-{i}")).collect()
    }
}

/// `--fill N`: N messages into the fill queues (in turn) with confirms; left there unless
/// `--hold` is given, in which case the queues are deleted after the hold.
pub async fn fill(opts: &Opts, uri: &Uri, n: u64) -> Result<Value> {
    let queues = fill_queues(opts.queues);
    let mut setup = Conn::open(uri).await?;
    for q in &queues {
        setup
            .declare_queue(q, opts.persistent, &opts.queue_arguments())
            .await?;
    }
    let mut conn = Conn::open(uri).await?;
    conn.confirm_select().await?;
    let templates = queues
        .iter()
        .map(|q| Template::new("", q, opts.size, opts.persistent, None, conn.frame_max))
        .collect::<Result<Vec<_>>>()?;
    let cfg = Arc::new(publisher::Config {
        templates,
        confirm: Some(opts.confirm.unwrap_or(1000)),
        rate: None,
        limit: Some(n),
    });
    let stats = Arc::new(Stats::default());
    let (_stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let mut task = tokio::spawn(publisher::run(conn, cfg, stats.clone(), started, stop_rx));
    let mut prev = stats.snapshot();
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let result = loop {
        tokio::select! {
            r = &mut task => break r,
            _ = tick.tick() => {
                let now = stats.snapshot();
                report_progress(opts, started.elapsed().as_secs_f64(), &prev, &now, 1.0);
                prev = now;
            }
        }
    };
    result.map_err(|e| err(format!("publisher task: {e}")))??;
    let secs = started.elapsed().as_secs_f64();
    let s = stats.snapshot();
    if s.nacked > 0 {
        eprintln!("warning: the broker nacked {} messages", s.nacked);
    }
    let mut out = json!({
        "mode": "fill",
        "queues": queues.len(),
        "messages": n,
        "size": opts.size,
        "confirmed": s.confirmed,
        "nacked": s.nacked,
        "secs": secs,
        "rate": n as f64 / secs.max(1e-9),
    });
    if let Some(hold) = opts.hold {
        holding(&format!("{n} messages in {} queues", queues.len()), hold);
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let mut left = 0u64;
        for q in &queues {
            left += u64::from(setup.delete_queue(q).await?);
        }
        out["deleted_with_messages"] = json!(left);
    }
    setup.close().await;
    Ok(out)
}

/// `--declare-queues N`: N queues declared and bound to amq.direct one after the other
/// (each waiting for its -ok, as an application would); kept unless `--hold` is given,
/// in which case they are deleted after the hold.
pub async fn declare_queues(opts: &Opts, uri: &Uri, n: usize) -> Result<Value> {
    let mut conn = Conn::open(uri).await?;
    let names: Vec<String> = (0..n).map(|i| format!("warren-perf-dq-{i}")).collect();
    let started = Instant::now();
    if opts.pipeline > 1 {
        let requests = names.iter().flat_map(|name| {
            [
                (
                    AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                        queue: name.as_str().into(),
                        durable: opts.persistent,
                        ..Default::default()
                    })),
                    (50, 11),
                ),
                (
                    AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                        queue: name.as_str().into(),
                        exchange: "amq.direct".into(),
                        routing_key: name.as_str().into(),
                        ..Default::default()
                    })),
                    (50, 21),
                ),
            ]
        });
        conn.pipeline(requests, opts.pipeline).await?;
    } else {
        for name in &names {
            conn.declare_queue(name, opts.persistent, &Default::default())
                .await?;
            conn.bind_queue(name, "amq.direct", name).await?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let mut out = json!({
        "mode": "declare-queues",
        "queues": n,
        "secs": secs,
        "per_sec": n as f64 / secs.max(1e-9),
    });
    if let Some(hold) = opts.hold {
        holding(&format!("{n} queues"), hold);
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let started = Instant::now();
        for name in &names {
            conn.delete_queue(name).await?;
        }
        out["delete_secs"] = json!(started.elapsed().as_secs_f64());
    }
    conn.close().await;
    Ok(out)
}

/// `--bindings N`: one queue bound to the run's exchange with N distinct keys, pipelined
/// (queue and exchange durable with `--persistent`, so the bindings are stored);
/// the time for each 100,000 (a linear cost keeps them equal). With `--hold`, the queue is
/// deleted after the hold (every binding goes with it) and that is timed too.
pub async fn bindings(opts: &Opts, uri: &Uri, n: usize) -> Result<Value> {
    let mut conn = Conn::open(uri).await?;
    let kind = opts.exchange_type.as_str();
    let exchange = format!("warren-perf-bx-{kind}");
    let queue = "warren-perf-bq";
    conn.declare_exchange(&exchange, kind, opts.persistent)
        .await?;
    conn.declare_queue(queue, opts.persistent, &Default::default())
        .await?;
    let started = Instant::now();
    let mut chunks = Vec::new();
    const CHUNK: usize = 100_000;
    let mut done = 0;
    while done < n {
        let upto = (done + CHUNK).min(n);
        let t = Instant::now();
        let requests = (done..upto).map(|i| {
            let key = match opts.exchange_type {
                crate::ExchangeType::Topic => format!("k.{}.{}.*", i % 1000, i / 1000),
                _ => format!("k{i}"),
            };
            (
                AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                    queue: queue.into(),
                    exchange: exchange.as_str().into(),
                    routing_key: key.as_str().into(),
                    ..Default::default()
                })),
                (50, 21),
            )
        });
        conn.pipeline(requests, opts.pipeline.max(1)).await?;
        chunks.push(t.elapsed().as_secs_f64());
        done = upto;
    }
    let mut out = json!({
        "mode": "bindings",
        "exchange_type": kind,
        "bindings": n,
        "secs": started.elapsed().as_secs_f64(),
        "secs_per_100k": chunks,
    });
    if let Some(hold) = opts.hold {
        holding(&format!("{n} bindings"), hold);
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let t = Instant::now();
        conn.delete_queue(queue).await?;
        out["delete_secs"] = json!(t.elapsed().as_secs_f64());
    }
    let _ = conn.delete_exchange(&exchange).await;
    conn.close().await;
    Ok(out)
}

/// `--connect-close N`: N connections opened (handshake, one channel) and closed in turn.
pub async fn connect_close(uri: &Uri, n: usize) -> Result<Value> {
    let started = Instant::now();
    for _ in 0..n {
        let c = Conn::open(uri).await?;
        c.close().await;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "connect-close",
        "connections": n,
        "secs": secs,
        "per_sec": n as f64 / secs.max(1e-9),
    }))
}

/// `--wait-queue NAME`: retries a connection and a passive declare of NAME until it answers.
pub async fn wait_queue(uri: &Uri, name: &str) -> Result<Value> {
    let started = Instant::now();
    loop {
        if let Ok(mut c) = Conn::open(uri).await {
            let passive = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                passive: true,
                ..Default::default()
            }));
            if c.rpc(crate::conn::CHANNEL, passive, (50, 11)).await.is_ok() {
                c.close().await;
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(err(format!("no queue {name} within 10 minutes")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(json!({
        "mode": "wait-queue",
        "queue": name,
        "secs": started.elapsed().as_secs_f64(),
    }))
}

/// A passive declare of `name`: its message count, or `None` if it is not there (yet).
async fn queue_count(c: &mut Conn, name: &str) -> Result<Option<u64>> {
    let passive = AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
        queue: name.into(),
        passive: true,
        ..Default::default()
    }));
    match c.rpc(crate::conn::CHANNEL, passive, (50, 11)).await {
        Ok(AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok))) => {
            Ok(Some(u64::from(ok.message_count)))
        }
        Ok(_) => Err(err("unexpected reply to a passive queue.declare")),
        Err(_) => Ok(None),
    }
}

/// `--drain`: waits for the broker (retrying, as after a restart) and the fill queues,
/// then consumes every message they hold on one connection (prefetch `--prefetch`, acks
/// every `--ack-every`, or `--autoack`). Reports how long until the first delivery
/// (`serving_secs`, from this tool's start: a broker recovering counts) and the drain rate.
pub async fn drain(opts: &Opts, uri: &Uri, ack_every: Option<u64>) -> Result<Value> {
    let started = Instant::now();
    let queues = fill_queues(opts.queues);
    let (mut conn, total) = 'found: loop {
        if let Ok(mut c) = Conn::open(uri).await {
            let mut total = 0;
            let mut all = true;
            for q in &queues {
                match queue_count(&mut c, q).await {
                    Ok(Some(n)) => total += n,
                    _ => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                break 'found (c, total);
            }
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(err("the fill queues did not appear within 10 minutes"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let connected_secs = started.elapsed().as_secs_f64();
    if ack_every.is_some() && opts.prefetch > 0 {
        conn.qos(opts.prefetch).await?;
    }
    // Every consume is sent before any -ok is read: deliveries from the first queues
    // would otherwise arrive amid the replies an rpc waits for. The consumer loop reads
    // the -oks with the deliveries.
    for q in &queues {
        conn.queue_consume(q, ack_every.is_none())?;
    }
    conn.flush().await?;
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let cfg = crate::consumer::Config { ack_every };
    let task = tokio::spawn(crate::consumer::run(
        conn,
        cfg,
        stats.clone(),
        started,
        stop_rx,
    ));
    let mut first = None;
    let mut prev = stats.snapshot();
    let mut last_tick = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = stats.snapshot();
        if first.is_none() && now.delivered > 0 {
            first = Some(started.elapsed().as_secs_f64());
        }
        if now.delivered >= total {
            break;
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            report_progress(opts, started.elapsed().as_secs_f64(), &prev, &now, 1.0);
            prev = now;
            last_tick = Instant::now();
        }
        if task.is_finished() {
            break;
        }
    }
    let end = started.elapsed().as_secs_f64();
    let _ = stop_tx.send(true);
    task.await
        .map_err(|e| err(format!("consumer task: {e}")))??;
    let delivered = stats.snapshot().delivered;
    let serving = first.unwrap_or(end);
    Ok(json!({
        "mode": "drain",
        "queues": queues.len(),
        "messages": total,
        "delivered": delivered,
        "connected_secs": connected_secs,
        "serving_secs": serving,
        "drain_secs": end - serving,
        "rate": delivered as f64 / (end - connected_secs).max(1e-9),
    }))
}
