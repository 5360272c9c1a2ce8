//! Durability on sled, through a graceful restart on the same data directory: durable
//! exchanges, queues and bindings come back, persistent messages come back in order (those
//! delivered before, redelivered), transient ones don't; acks, purges and deletes stick; a
//! queue past its RAM budget pages to disk and still delivers everything in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use support::TestBroker;
use support::{code, drain, durable, next_delivery, persistent, within};

fn transient() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(1)
}

/// Publishes with confirms on and waits for every confirm (all must be acks).
async fn publish_confirmed(
    ch: &Channel,
    exchange: &str,
    key: &str,
    bodies: impl IntoIterator<Item = String>,
    props: BasicProperties,
) {
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut confirms = Vec::new();
    for body in bodies {
        confirms.push(
            within(ch.basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props.clone(),
            ))
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(within(c).await.unwrap().is_ack());
    }
}

async fn queue_exists(ch: &Channel, name: &str) -> Option<u32> {
    let r = support::declare_passive(ch, name).await;
    match r {
        Ok(q) => Some(q.message_count()),
        Err(e) => {
            assert_eq!(code(&e), Some(404), "{e}");
            None
        }
    }
}

async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let ch = conn.create_channel().await.unwrap();
    let r = ch
        .exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    match r {
        Ok(()) => true,
        Err(e) => {
            assert_eq!(code(&e), Some(404), "{e}");
            false
        }
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn durable_definitions_and_persistent_messages_survive_a_restart() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.open().await;
    let opts = |durable| ExchangeDeclareOptions {
        durable,
        ..Default::default()
    };
    let none = FieldTable::default;
    ch.exchange_declare("logs".into(), ExchangeKind::Topic, opts(true), none())
        .await
        .unwrap();
    ch.exchange_declare("hop".into(), ExchangeKind::Fanout, opts(true), none())
        .await
        .unwrap();
    ch.exchange_declare("scratch".into(), ExchangeKind::Direct, opts(false), none())
        .await
        .unwrap();
    ch.queue_declare("orders".into(), durable(), none())
        .await
        .unwrap();
    ch.queue_declare("temp".into(), QueueDeclareOptions::default(), none())
        .await
        .unwrap();
    // logs -(a.#)-> hop -> orders: an exchange-to-exchange binding between durable ends.
    ch.exchange_bind(
        "hop".into(),
        "logs".into(),
        "a.#".into(),
        ExchangeBindOptions::default(),
        none(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "orders".into(),
        "hop".into(),
        "".into(),
        QueueBindOptions::default(),
        none(),
    )
    .await
    .unwrap();
    // A binding from a transient exchange is not stored.
    ch.queue_bind(
        "orders".into(),
        "scratch".into(),
        "k".into(),
        QueueBindOptions::default(),
        none(),
    )
    .await
    .unwrap();
    publish_confirmed(&ch, "logs", "a.b", numbered("p", 50), persistent()).await;
    publish_confirmed(&ch, "logs", "a.b", numbered("t", 5), transient()).await;
    publish_confirmed(&ch, "", "temp", numbered("x", 5), persistent()).await;
    assert_eq!(queue_exists(&ch, "orders").await, Some(55));
    drop(conn);

    let b = b.restart().await;
    let (conn, ch) = b.open().await;
    assert!(exchange_exists(&conn, "logs").await);
    assert!(exchange_exists(&conn, "hop").await);
    assert!(!exchange_exists(&conn, "scratch").await);
    let ch2 = conn.create_channel().await.unwrap();
    assert_eq!(queue_exists(&ch2, "temp").await, None);
    // Only the persistent messages, in their order.
    assert_eq!(drain(&ch, "orders").await, numbered("p", 50));
    // The bindings are back: logs -> hop -> orders routes again.
    publish_confirmed(&ch, "logs", "a.c", ["again".to_string()], persistent()).await;
    assert_eq!(drain(&ch, "orders").await, vec!["again".to_string()]);
}

#[tokio::test]
async fn acked_messages_stay_acked_and_delivered_ones_come_back_redelivered() {
    let b = TestBroker::start().await;
    let (conn, ch) = b.open().await;
    ch.queue_declare("work".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "", "work", numbered("m", 20), persistent()).await;
    let consumer_ch = conn.create_channel().await.unwrap();
    consumer_ch
        .basic_qos(10, BasicQosOptions::default())
        .await
        .unwrap();
    let mut c = support::consume(&consumer_ch, "work", "c", false).await;
    // Ack the first 5 and hold the next 5 unacked; the acks free credit for 5 more (10..15),
    // which are delivered too: 5..15 have all been delivered, 15..20 never.
    let mut held = Vec::new();
    for i in 0..10 {
        let d = next_delivery(&mut c).await;
        assert_eq!(d.data, format!("m-{i}").as_bytes());
        if i < 5 {
            d.ack(BasicAckOptions::default()).await.unwrap();
        } else {
            held.push(d);
        }
    }
    support::sync(&consumer_ch).await;
    drop(held);

    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    let mut got = Vec::new();
    while let Some(m) = ch
        .basic_get("work".into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
    {
        let body = String::from_utf8(m.delivery.data.clone()).unwrap();
        got.push((body, m.delivery.redelivered));
    }
    let expected: Vec<(String, bool)> = (5..20).map(|i| (format!("m-{i}"), i < 15)).collect();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn purged_and_deleted_queues_stay_empty_and_gone() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.open().await;
    let none = FieldTable::default;
    ch.queue_declare("purged".into(), durable(), none())
        .await
        .unwrap();
    ch.queue_declare("deleted".into(), durable(), none())
        .await
        .unwrap();
    publish_confirmed(&ch, "", "purged", numbered("a", 300), persistent()).await;
    publish_confirmed(&ch, "", "deleted", numbered("b", 300), persistent()).await;
    assert_eq!(
        ch.queue_purge("purged".into(), QueuePurgeOptions::default())
            .await
            .unwrap(),
        300
    );
    ch.queue_delete("deleted".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    publish_confirmed(&ch, "", "purged", ["after".to_string()], persistent()).await;

    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    assert_eq!(drain(&ch, "purged").await, vec!["after".to_string()]);
    assert_eq!(queue_exists(&ch, "deleted").await, None);
}

/// A 64 KiB RAM budget and 4,000 messages of ~100 bytes: most of the queue lives on disk
/// (persistent and transient alike), and a consumer still gets every message once, in order.
#[tokio::test]
async fn a_queue_past_its_ram_budget_pages_to_disk_and_delivers_in_order() {
    let b = TestBroker::start_with(|c| c.queue_ram_bytes = 64 * 1024).await;
    let (conn, ch) = b.open().await;
    ch.queue_declare("deep".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    let pad = "x".repeat(80);
    let bodies: Vec<String> = (0..4000).map(|i| format!("{i:05}-{pad}")).collect();
    for (i, chunk) in bodies.chunks(500).enumerate() {
        let props = if i % 2 == 0 {
            persistent()
        } else {
            transient()
        };
        publish_confirmed(&ch, "", "deep", chunk.to_vec(), props).await;
    }
    assert_eq!(queue_exists(&ch, "deep").await, Some(4000));
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(300, BasicQosOptions::default())
        .await
        .unwrap();
    let mut c = support::consume(&cch, "deep", "c", false).await;
    for expected in &bodies[..3000] {
        let d = next_delivery(&mut c).await;
        assert_eq!(String::from_utf8_lossy(&d.data), *expected);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    cch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    // Anything prefetched past the cancel goes back unacked.
    cch.close(200, "bye".into()).await.unwrap();
    drop(c.next());
    assert_eq!(queue_exists(&ch, "deep").await, Some(1000));

    // After a restart only the persistent ones of the last 1,000 are left (chunks 6 and 7
    // were persistent and transient: 3000..3500 persistent, 3500..4000 transient).
    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    assert_eq!(drain(&ch, "deep").await, bodies[3000..3500].to_vec());
}

#[tokio::test]
async fn large_messages_page_out_and_back_whole() {
    // Bodies past the page file's write buffer are written straight from the message and
    // read back into a buffer of their own (no copy): each comes back byte for byte.
    let b = TestBroker::start_with(|c| c.queue_ram_bytes = 256 * 1024).await;
    let (_conn, ch) = b.open().await;
    ch.queue_declare("big-deep".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    let bodies: Vec<String> = (0..6)
        .map(|i| format!("{i}:") + &"abcdefghij".repeat(60_000 + i * 1000))
        .collect();
    for (i, body) in bodies.iter().enumerate() {
        let props = if i % 2 == 0 {
            persistent()
        } else {
            transient()
        };
        publish_confirmed(&ch, "", "big-deep", [body.clone()], props).await;
    }
    assert_eq!(drain(&ch, "big-deep").await, bodies);
}

/// A transient queue that paged to disk leaves nothing behind after a restart.
#[tokio::test]
async fn a_transient_queue_paged_to_disk_is_gone_after_a_restart() {
    let b = TestBroker::start_with(|c| c.queue_ram_bytes = 16 * 1024).await;
    let (_conn, ch) = b.open().await;
    ch.queue_declare(
        "paged".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    publish_confirmed(&ch, "", "paged", numbered("t", 1000), persistent()).await;
    assert_eq!(drain(&ch, "paged").await.len(), 1000);
    publish_confirmed(&ch, "", "paged", numbered("u", 1000), persistent()).await;
    let b = b.restart().await;
    let (conn, ch) = b.open().await;
    assert_eq!(queue_exists(&ch, "paged").await, None);
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "paged".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    assert!(drain(&ch, "paged").await.is_empty());
}

/// tx.commit with persistent messages answers commit-ok (after the sync), and they stay.
#[tokio::test]
async fn committed_persistent_messages_survive_a_restart() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.open().await;
    ch.queue_declare("txq".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    ch.tx_select().await.unwrap();
    for body in numbered("c", 10) {
        ch.basic_publish(
            "".into(),
            "txq".into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            persistent(),
        )
        .await
        .unwrap();
    }
    within(ch.tx_commit()).await.unwrap();
    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    assert_eq!(drain(&ch, "txq").await, numbered("c", 10));
}

/// Persistent messages live in their queue's log (`logs/<queue>/*.log`): large ones come
/// back intact after a restart, and once every message of the log is settled (taken for
/// good) its segment files are deleted without a restart (the idle writer sweeps a drained
/// log's last segment within a second or so).
#[tokio::test]
async fn large_bodies_survive_a_restart_and_a_drained_log_gives_its_space_back() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.open().await;
    ch.queue_declare("big".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    let bodies: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "{i:04}{}",
                char::from(b'a' + (i % 26) as u8).to_string().repeat(3000)
            )
        })
        .collect();
    publish_confirmed(&ch, "", "big", bodies.clone(), persistent()).await;
    // Take the first 50 for good.
    for expected in &bodies[..50] {
        let m = ch
            .basic_get("big".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&m.delivery.data), *expected);
    }
    let segments = |b: &TestBroker| -> usize {
        std::fs::read_dir(b.data_dir.path().join("logs"))
            .map(|d| {
                d.flatten()
                    .map(|q| std::fs::read_dir(q.path()).map_or(0, |s| s.count()))
                    .sum()
            })
            .unwrap_or(0)
    };
    assert!(segments(&b) > 0, "persistent messages are not in a log");

    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    assert_eq!(drain(&ch, "big").await, bodies[50..].to_vec());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while segments(&b) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a drained log kept {} segment files",
            segments(&b)
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let b = b.restart().await;
    let (_conn, ch) = b.open().await;
    assert!(
        drain(&ch, "big").await.is_empty(),
        "settled messages came back"
    );
}

/// Bytes the data directory's files hold on disk (allocated blocks, as `du` counts them).
fn disk_used(dir: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            total += disk_used(&e.path());
        } else {
            total += m.blocks() * 512;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_backlog_gives_the_data_directory_back_without_a_restart() {
    let b = TestBroker::start().await;
    let (_conn, ch) = b.open().await;
    ch.queue_declare("backlog".into(), durable(), FieldTable::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = disk_used(b.data_dir.path());
    // 40 MB: past two 16 MiB segments, every message acked one at a time (a settling
    // commit each), as a consumer catching up on a backlog does.
    let body = "x".repeat(2000);
    publish_confirmed(
        &ch,
        "",
        "backlog",
        (0..20_000).map(|i| format!("{i:06}{body}")),
        persistent(),
    )
    .await;
    let holding = disk_used(b.data_dir.path());
    assert!(
        holding > 40_000_000,
        "the backlog takes {holding} B on disk"
    );
    ch.basic_qos(500, BasicQosOptions::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume(
            "backlog".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for i in 0..20_000 {
        let d = next_delivery(&mut consumer).await;
        assert!(d.data.starts_with(format!("{i:06}").as_bytes()));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    // The bar (issue 13): within 10% of the size before the backlog, within a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = disk_used(b.data_dir.path());
        if now <= before + before / 10 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "60 s after the drain the data directory takes {now} B (before the backlog: {before} B)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
