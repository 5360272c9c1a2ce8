//! `warren-perf`: Warren's own AMQP 0-9-1 load tool, in the spirit of RabbitMQ's PerfTest
//! and lavinmqperf. It speaks the protocol itself through `warren-codec` so that it is
//! never the bottleneck: each publisher or consumer is one connection served by one task,
//! which writes hundreds of pre-encoded publishes per syscall or scans a batch of
//! deliveries in place, without per-message allocations or futures.
//!
//! Throughput/latency run (the default):
//!   warren-perf --uri amqp://guest:guest@127.0.0.1:5672/%2F --publishers 1 --consumers 1 \
//!     --size 16 --confirm 1000 --prefetch 1000 --ack-every 100 --duration 10
//! Footprint scenarios: `--idle-connections N --hold S`, `--fill N [--hold S]`,
//! `--declare-queues N [--pipeline P] [--hold S]`, `--bindings N [--hold S]`,
//! `--connect-close N`, `--wait-queue NAME`.
//!
//! Every message body starts with its send time (big-endian nanoseconds since the tool
//! started; publishers and consumers share that instant), which gives end-to-end latency.
//! Works against RabbitMQ as well as Warren.

mod conn;
mod consumer;
mod modes;
mod publisher;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinSet;

use conn::{err, Conn, Error, Result, Uri};
use publisher::Template;
use stats::{new_histogram, Snapshot, Stats};

#[derive(Parser, Debug)]
#[command(
    name = "warren-perf",
    version,
    about = "AMQP 0-9-1 load generator for Warren and RabbitMQ"
)]
pub struct Opts {
    /// Broker to load: amqp://user:pass@host:port/vhost (vhost percent-encoded, %2F for "/").
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2F")]
    uri: String,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Consuming connections (consumer i reads queue i mod --queues).
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Queues, each bound to the run's own exchange.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    queues: u64,
    /// Message body size in bytes (at least 8 for latency: the send time rides in the body).
    #[arg(long, default_value_t = 16)]
    size: usize,
    /// Durable exchange and queues, persistent messages (delivery-mode 2).
    #[arg(long)]
    persistent: bool,
    /// Priority queues (x-max-priority N); messages cycle through priorities 0..=N.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..))]
    max_priority: Option<u8>,
    /// Queues with x-message-ttl MS (with --consumers 0: an expiry benchmark).
    #[arg(long, value_name = "MS")]
    message_ttl: Option<u32>,
    /// Publisher confirms, with at most WINDOW unconfirmed messages per publisher.
    #[arg(long, value_name = "WINDOW", value_parser = clap::value_parser!(u32).range(1..))]
    confirm: Option<u32>,
    /// Per-consumer prefetch (basic.qos); 0 is unlimited. Ignored with --autoack.
    #[arg(long, default_value_t = 0)]
    prefetch: u16,
    /// Consume with no-ack.
    #[arg(long, conflicts_with = "ack_every")]
    autoack: bool,
    /// Acknowledge with one multiple-ack per N deliveries (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    ack_every: Option<u64>,
    /// Fixed publish rate in messages per second, in total across publishers.
    #[arg(long, value_name = "MSGS_PER_SEC", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Type of the exchange the run declares.
    #[arg(long, value_enum, default_value_t = ExchangeType::Direct)]
    exchange_type: ExchangeType,
    /// Topic runs: the binding key of every queue (default `perf.<i>.*`).
    #[arg(long, value_name = "KEY")]
    binding_key: Option<String>,
    /// Topic runs: one more binding per queue, say an adversarial pattern (`#.#.#.#.nomatch`)
    /// that every publish must also be matched against.
    #[arg(long, value_name = "KEY")]
    extra_binding: Option<String>,
    /// Topic runs: the routing key of every publish (default `perf.<i>.msg`).
    #[arg(long, value_name = "KEY")]
    routing_key: Option<String>,
    /// Publish each routing key in N variants (a number appended to it), in turn: with
    /// N > 1 no two publishes in a row share a key, so the broker routes every one afresh
    /// (Warren reuses a route while the key repeats).
    #[arg(long, value_name = "N", default_value_t = 1)]
    key_variants: usize,
    /// Seconds to run (SIGINT ends the run sooner, with its summary).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Print the summary as one JSON object on stdout (per-second lines go to stderr).
    #[arg(long)]
    json: bool,
    /// No per-second lines.
    #[arg(long)]
    quiet: bool,
    /// Worker threads of the tool's runtime (default: the number of CPUs).
    #[arg(long)]
    threads: Option<usize>,
    /// Open N connections, each with one channel, hold them --hold seconds, close.
    #[arg(long, value_name = "N", conflicts_with_all = ["fill", "declare_queues"])]
    idle_connections: Option<usize>,
    /// Publish N messages of --size bytes to the queue "warren-perf-fill" with confirms
    /// (window --confirm, default 1000) and leave them there (deleted after --hold if given).
    #[arg(long, value_name = "N", conflicts_with = "declare_queues")]
    fill: Option<u64>,
    /// Declare N queues, bind each to amq.direct and report the time (deleted after --hold
    /// if given, else kept).
    #[arg(long, value_name = "N")]
    declare_queues: Option<usize>,
    /// With --declare-queues or --bindings: requests in flight at once (a pipelining client),
    /// instead of one at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pipeline: usize,
    /// Bind one queue ("warren-perf-bq") to the run's exchange (--exchange-type direct or
    /// topic; both durable with --persistent) with N distinct keys, and report the time per 100,000; with --hold, delete the
    /// queue after it and report that time.
    #[arg(long, value_name = "N")]
    bindings: Option<usize>,
    /// Open and close N connections one after the other; report the rate.
    #[arg(long, value_name = "N")]
    connect_close: Option<usize>,
    /// Wait until a passive declare of this queue succeeds (the broker starting, recovering);
    /// report how long it took.
    #[arg(long, value_name = "QUEUE")]
    wait_queue: Option<String>,
    /// Consume every message in the queues --fill fills (with --queues, as many), waiting
    /// for the broker and the queues first (a restart, a recovery); report the time to the
    /// first delivery and the drain rate. --prefetch, --ack-every and --autoack apply.
    #[arg(long)]
    drain: bool,
    /// Seconds to hold the state of --idle-connections, --fill, --declare-queues or --bindings.
    #[arg(long, value_name = "SECS")]
    hold: Option<u64>,
}

fn positive_rate(s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!(
            "{s:?} is not a positive number of messages per second"
        )),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExchangeType {
    Direct,
    Fanout,
    Topic,
}

impl ExchangeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
        }
    }
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let threads = opts.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warren-perf: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&opts)) {
        Ok(summary) => {
            if opts.json {
                println!("{summary}");
            } else {
                print_summary(&summary);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warren-perf: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: &Opts) -> Result<Value> {
    let uri = Uri::parse(&opts.uri)?;
    if let Some(n) = opts.idle_connections {
        modes::idle_connections(opts, &uri, n).await
    } else if let Some(n) = opts.fill {
        modes::fill(opts, &uri, n).await
    } else if let Some(n) = opts.declare_queues {
        modes::declare_queues(opts, &uri, n).await
    } else if let Some(n) = opts.bindings {
        modes::bindings(opts, &uri, n).await
    } else if let Some(n) = opts.connect_close {
        modes::connect_close(&uri, n).await
    } else if let Some(q) = &opts.wait_queue {
        modes::wait_queue(&uri, q).await
    } else if opts.drain {
        modes::drain(opts, &uri, ack_mode(opts)?).await
    } else {
        throughput(opts, &uri).await
    }
}

impl Opts {
    /// The x-arguments the run's queues are declared with.
    pub fn queue_arguments(&self) -> amq_protocol::types::FieldTable {
        use amq_protocol::types::AMQPValue;
        let mut t = amq_protocol::types::FieldTable::default();
        if let Some(p) = self.max_priority {
            t.insert("x-max-priority".into(), AMQPValue::ShortShortUInt(p));
        }
        if let Some(ms) = self.message_ttl {
            t.insert("x-message-ttl".into(), AMQPValue::LongUInt(ms));
        }
        t
    }
}

/// Declares the run's exchange and queues, runs the load, and deletes them again.
async fn throughput(opts: &Opts, uri: &Uri) -> Result<Value> {
    let prefix = format!("warren-perf-{}", std::process::id());
    let kind = opts.exchange_type;
    let exchange = format!("{prefix}-{}", kind.as_str());
    let mut setup = Conn::open(uri).await?;
    setup
        .declare_exchange(&exchange, kind.as_str(), opts.persistent)
        .await?;
    let mut queues = Vec::new();
    let mut keys = Vec::new();
    let mut declared: Result<()> = Ok(());
    for i in 0..opts.queues {
        let queue = format!("{prefix}-q{i}");
        let (binding, key) = match kind {
            ExchangeType::Direct => (queue.clone(), queue.clone()),
            ExchangeType::Fanout => (String::new(), String::new()),
            ExchangeType::Topic => (
                opts.binding_key
                    .clone()
                    .unwrap_or_else(|| format!("perf.{i}.*")),
                opts.routing_key
                    .clone()
                    .unwrap_or_else(|| format!("perf.{i}.msg")),
            ),
        };
        declared = setup
            .declare_queue(&queue, opts.persistent, &opts.queue_arguments())
            .await;
        if declared.is_err() {
            break;
        }
        queues.push(queue.clone());
        declared = setup.bind_queue(&queue, &exchange, &binding).await;
        if declared.is_err() {
            break;
        }
        if let (ExchangeType::Topic, Some(extra)) = (kind, &opts.extra_binding) {
            declared = setup.bind_queue(&queue, &exchange, extra).await;
            if declared.is_err() {
                break;
            }
        }
        keys.push(key);
    }
    // One fanout publish reaches every queue.
    if kind == ExchangeType::Fanout {
        keys.truncate(1);
    }
    if opts.key_variants > 1 {
        keys = keys
            .iter()
            .flat_map(|k| (0..opts.key_variants).map(move |i| format!("{k}{i}")))
            .collect();
    }
    let result = match declared {
        Ok(()) => load(opts, uri, &exchange, &queues, &keys).await,
        Err(e) => Err(e),
    };
    // Clean up whatever happened; a failure here is worth a warning, not the run.
    let cleanup = async {
        for q in &queues {
            setup.delete_queue(q).await?;
        }
        setup.delete_exchange(&exchange).await
    };
    if let Err(e) = cleanup.await {
        eprintln!("warning: cleaning up {prefix}-*: {e}");
    }
    setup.close().await;
    result
}

/// What a connection task hands back.
enum Done {
    Publisher(Option<Histogram<u64>>),
    Consumer(Histogram<u64>),
}

/// `None` for autoack; otherwise how many deliveries one multiple-ack covers.
fn ack_mode(opts: &Opts) -> Result<Option<u64>> {
    Ok(if opts.autoack {
        None
    } else {
        let every = opts.ack_every.unwrap_or(1);
        // Acking less often than the prefetch allows would stall the consumer for good.
        if opts.prefetch > 0 && every > u64::from(opts.prefetch) {
            eprintln!(
                "warning: --ack-every {every} > --prefetch {}; acking every {}",
                opts.prefetch, opts.prefetch
            );
            Some(u64::from(opts.prefetch))
        } else {
            Some(every)
        }
    })
}

async fn load(
    opts: &Opts,
    uri: &Uri,
    exchange: &str,
    queues: &[String],
    keys: &[String],
) -> Result<Value> {
    if queues.is_empty() || keys.is_empty() {
        return Err(err("no queue to use"));
    }
    let epoch = Instant::now();
    let stats = Arc::new(Stats::default());
    let (stop_tx, stop_rx) = watch::channel(false);

    let ack_every = ack_mode(opts)?;

    // Connect everything first, so that all publishers start together.
    let mut consumers = Vec::with_capacity(opts.consumers);
    for i in 0..opts.consumers {
        let mut c = Conn::open(uri).await?;
        if !opts.autoack && opts.prefetch > 0 {
            c.qos(opts.prefetch).await?;
        }
        c.consume(&queues[i % queues.len()], opts.autoack).await?;
        consumers.push(c);
    }
    let mut publishers = Vec::with_capacity(opts.publishers);
    for _ in 0..opts.publishers {
        let mut c = Conn::open(uri).await?;
        if opts.confirm.is_some() {
            c.confirm_select().await?;
        }
        // With --max-priority, each key gets one template per priority, sent in turn.
        let priorities: Vec<Option<u8>> = match opts.max_priority {
            Some(max) => (0..=max).map(Some).collect(),
            None => vec![None],
        };
        let templates = keys
            .iter()
            .flat_map(|k| priorities.iter().map(move |p| (k, *p)))
            .map(|(k, p)| Template::new(exchange, k, opts.size, opts.persistent, p, c.frame_max))
            .collect::<Result<Vec<_>>>()?;
        let cfg = publisher::Config {
            templates,
            confirm: opts.confirm,
            rate: opts.rate.map(|r| r / opts.publishers as f64),
            limit: None,
        };
        publishers.push((c, Arc::new(cfg)));
    }

    let mut tasks: JoinSet<Result<Done>> = JoinSet::new();
    let cfg = consumer::Config { ack_every };
    for c in consumers {
        let (stats, stop) = (stats.clone(), stop_rx.clone());
        tasks.spawn(async move {
            consumer::run(c, cfg, stats, epoch, stop)
                .await
                .map(Done::Consumer)
        });
    }
    for (c, cfg) in publishers {
        let (stats, stop) = (stats.clone(), stop_rx.clone());
        tasks.spawn(async move {
            publisher::run(c, cfg, stats, epoch, stop)
                .await
                .map(|p| Done::Publisher(p.confirm_latency))
        });
    }

    let started = Instant::now();
    let deadline = tokio::time::Instant::from_std(started + Duration::from_secs(opts.duration));
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(started + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    let mut latency = new_histogram()?;
    let mut confirm_latency = new_histogram()?;
    let mut prev = stats.snapshot();
    let mut prev_at = started;
    let failed: Option<Error> = loop {
        tokio::select! {
            // The tick first, so that the last second is reported when it ends with the run.
            biased;
            _ = tick.tick() => {
                let now = stats.snapshot();
                let at = Instant::now();
                let dt = at.duration_since(prev_at).as_secs_f64();
                report_progress(opts, started.elapsed().as_secs_f64(), &prev, &now, dt);
                (prev, prev_at) = (now, at);
            }
            _ = tokio::time::sleep_until(deadline) => break None,
            // Interrupted (a script's kill -INT): ends the run early, summary as usual.
            _ = tokio::signal::ctrl_c() => break None,
            Some(done) = tasks.join_next() => {
                if let Err(e) = absorb(done, &mut latency, &mut confirm_latency) {
                    break Some(e);
                }
            }
        }
    };
    let secs = started.elapsed().as_secs_f64();
    let total = stats.snapshot();

    // Stop every task and collect the consumers' histograms (each close is bounded).
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = absorb(done, &mut latency, &mut confirm_latency) {
            eprintln!("warning: while stopping: {e}");
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    let rate = |n: u64| n as f64 / secs.max(1e-9);
    Ok(json!({
        "mode": "throughput",
        "publishers": opts.publishers,
        "consumers": opts.consumers,
        "queues": opts.queues,
        "size": opts.size,
        "exchange_type": opts.exchange_type.as_str(),
        "persistent": opts.persistent,
        "confirm": opts.confirm,
        "prefetch": opts.prefetch,
        "autoack": opts.autoack,
        "ack_every": ack_every,
        "rate_target": opts.rate,
        "secs": secs,
        "published": total.published,
        "confirmed": total.confirmed,
        "nacked": total.nacked,
        "delivered": total.delivered,
        "publish_rate": rate(total.published),
        "confirm_rate": rate(total.confirmed),
        "deliver_rate": rate(total.delivered),
        "latency_us": summary_us(&latency),
        "confirm_latency_us": summary_us(&confirm_latency),
    }))
}

/// A finished task's histogram added to the run's (consumers: delivery latency; publishers:
/// confirm latency); its error, if it failed.
fn absorb(
    done: std::result::Result<Result<Done>, tokio::task::JoinError>,
    latency: &mut Histogram<u64>,
    confirm_latency: &mut Histogram<u64>,
) -> Result<()> {
    match done {
        Ok(Ok(Done::Consumer(h))) => merge(latency, &h),
        Ok(Ok(Done::Publisher(Some(h)))) => merge(confirm_latency, &h),
        Ok(Ok(Done::Publisher(None))) => {}
        Ok(Err(e)) => return Err(e),
        Err(e) => return Err(err(format!("task failed: {e}"))),
    }
    Ok(())
}

/// A latency histogram (ns) as the JSON summary gives it, in µs.
fn summary_us(h: &Histogram<u64>) -> Value {
    let us = |ns: u64| ns as f64 / 1000.0;
    json!({
        "count": h.len(),
        "mean": h.mean() / 1000.0,
        "p50": us(h.value_at_quantile(0.5)),
        "p99": us(h.value_at_quantile(0.99)),
        "p999": us(h.value_at_quantile(0.999)),
        "max": us(h.max()),
    })
}

fn merge(into: &mut Histogram<u64>, h: &Histogram<u64>) {
    if let Err(e) = into.add(h) {
        eprintln!("warning: dropping latency samples: {e:?}");
    }
}

/// One per-second line: on stdout, or on stderr when stdout carries the JSON summary.
pub fn report_progress(opts: &Opts, t: f64, prev: &Snapshot, now: &Snapshot, dt: f64) {
    if opts.quiet {
        return;
    }
    let per_sec = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / dt.max(1e-9);
    let mut line = format!(
        "{t:6.1}s  published {:>10.0}/s  confirmed {:>10.0}/s  delivered {:>10.0}/s",
        per_sec(prev.published, now.published),
        per_sec(prev.confirmed, now.confirmed),
        per_sec(prev.delivered, now.delivered),
    );
    if now.confirm_max_ns > 0 {
        line += &format!("  confirm max {:>8.2} ms", now.confirm_max_ns as f64 / 1e6);
    }
    if opts.json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn print_summary(v: &Value) {
    if v["mode"] != "throughput" {
        if let Some(map) = v.as_object() {
            for (k, val) in map {
                println!("{k}: {val}");
            }
        }
        return;
    }
    let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
    let l = |k: &str| v["latency_us"][k].as_f64().unwrap_or(0.0);
    println!(
        "summary: {:.1} s, {} publisher(s), {} consumer(s), {} queue(s), {} B, {}{}",
        f("secs"),
        v["publishers"],
        v["consumers"],
        v["queues"],
        v["size"],
        v["exchange_type"].as_str().unwrap_or("?"),
        if v["persistent"] == true {
            ", persistent"
        } else {
            ""
        },
    );
    println!(
        "  published {:>10.0} msg/s  ({} in all)",
        f("publish_rate"),
        v["published"]
    );
    println!(
        "  confirmed {:>10.0} msg/s  ({} in all, {} nacked)",
        f("confirm_rate"),
        v["confirmed"],
        v["nacked"]
    );
    println!(
        "  delivered {:>10.0} msg/s  ({} in all)",
        f("deliver_rate"),
        v["delivered"]
    );
    println!(
        "  latency   p50 {} p99 {} p99.9 {} max {} ({} samples)",
        fmt_us(l("p50")),
        fmt_us(l("p99")),
        fmt_us(l("p999")),
        fmt_us(l("max")),
        v["latency_us"]["count"]
    );
}

fn fmt_us(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}
