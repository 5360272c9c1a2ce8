//! Queues through lapin: server-named and passive declares, declare-ok counts, exclusive and
//! auto-delete queues, redeclare checks, purge and delete (with if-unused / if-empty), and
//! the empty name standing for the channel's last declared queue.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection};
use support::{
    assert_channel_error, code, drain, is_hard, next_delivery, publish, sync, uniq, within, Env,
};

fn exclusive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    }
}

/// queue.delete with if-unused: the ready messages it dropped.
async fn delete_if_unused(ch: &Channel, q: &str) -> lapin::Result<u32> {
    within(ch.queue_delete(
        q.into(),
        QueueDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await
}

/// queue.delete with if-empty.
async fn delete_if_empty(ch: &Channel, q: &str) -> lapin::Result<u32> {
    within(ch.queue_delete(
        q.into(),
        QueueDeleteOptions {
            if_empty: true,
            ..Default::default()
        },
    ))
    .await
}

fn auto_delete() -> QueueDeclareOptions {
    QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare(ch: &Channel, name: &str, opts: QueueDeclareOptions) -> lapin::Queue {
    within(ch.queue_declare(name.into(), opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("declare queue {name}: {e:?}"))
}

/// Whether `name` exists (passive declare on a fresh channel of `conn`).
async fn exists(conn: &Connection, name: &str) -> bool {
    let ch = within(conn.create_channel()).await.unwrap();
    match within(ch.queue_declare(name.into(), passive(), FieldTable::default())).await {
        Ok(_) => {
            let _ = ch.close(200, "OK".into()).await;
            true
        }
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of {name}: {e:?}"),
    }
}

/// Waits (up to a second) for a queue to disappear: RabbitMQ deletes exclusive and
/// auto-delete queues asynchronously, so a client may briefly still see them.
async fn assert_gone(conn: &Connection, name: &str) {
    for _ in 0..20 {
        if !exists(conn, name).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("queue {name} still exists");
}

fn args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

#[tokio::test]
async fn server_named_queues_get_distinct_amq_gen_names() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let a = declare(&ch, "", exclusive()).await;
    let b = declare(&ch, "", exclusive()).await;
    for q in [&a, &b] {
        let name = q.name().as_str();
        assert!(name.starts_with("amq.gen-"), "{name}");
        assert_eq!(name.len(), "amq.gen-".len() + 22, "{name}");
        assert!(
            name["amq.gen-".len()..]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
            "{name}"
        );
        assert_eq!((q.message_count(), q.consumer_count()), (0, 0));
    }
    assert_ne!(a.name(), b.name());
    // The name is usable like any other.
    publish(&ch, "", a.name().as_str(), b"hi").await;
    assert_eq!(drain(&ch, a.name().as_str()).await, ["hi"]);
}

#[tokio::test]
async fn passive_declare_of_missing_queue_is_404() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let r =
        within(ch.queue_declare(uniq("missing").into(), passive(), FieldTable::default())).await;
    assert_channel_error(r, 404);
    // Passive declare does not create it.
    assert!(!exists(&conn, &uniq("missing")).await);
}

#[tokio::test]
async fn declare_ok_counts_ready_messages_and_consumers() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("counts");
    let first = declare(&ch, &q, exclusive()).await;
    assert_eq!((first.message_count(), first.consumer_count()), (0, 0));
    // Confirmed, so the queue has them before it is asked (RabbitMQ answers declare-ok
    // ahead of deliveries still in its queue's mailbox).
    let pch = within(conn.create_channel()).await.unwrap();
    within(pch.confirm_select(Default::default()))
        .await
        .unwrap();
    for i in 0..3 {
        publish(&pch, "", &q, format!("m{i}").as_bytes()).await;
    }
    within(pch.wait_for_confirms()).await.unwrap();
    let again = declare(&ch, &q, exclusive()).await;
    assert_eq!((again.message_count(), again.consumer_count()), (3, 0));

    // One consumer holding one unacked message: it no longer counts as ready.
    let cch = within(conn.create_channel()).await.unwrap();
    within(cch.basic_qos(1, BasicQosOptions::default()))
        .await
        .unwrap();
    let mut consumer = within(support::consume(&cch, &q, "c1", false)).await;
    let d = next_delivery(&mut consumer).await;
    assert_eq!(d.data, b"m0");
    let again = declare(&ch, &q, exclusive()).await;
    assert_eq!((again.message_count(), again.consumer_count()), (2, 1));
    let passive = within(ch.queue_declare(q.as_str().into(), passive(), FieldTable::default()))
        .await
        .unwrap();
    assert_eq!((passive.message_count(), passive.consumer_count()), (2, 1));
}

#[tokio::test]
async fn exclusive_queue_of_another_connection_is_405_for_every_use() {
    let env = Env::start().await;
    let (_owner, och) = env.open().await;
    let q = uniq("excl");
    declare(&och, &q, exclusive()).await;
    publish(&och, "", &q, b"mine").await;
    let other = env.connect().await;

    type Attempt = fn(
        Channel,
        String,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = lapin::Result<()>> + Send>,
    >;
    let attempts: Vec<(&str, Attempt)> = vec![
        ("declare exclusive", |ch, q| {
            Box::pin(async move {
                ch.queue_declare(q.as_str().into(), exclusive(), FieldTable::default())
                    .await
                    .map(drop)
            })
        }),
        ("declare shared", |ch, q| {
            Box::pin(async move {
                ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default())
                    .await
                    .map(drop)
            })
        }),
        ("declare passive", |ch, q| {
            Box::pin(async move {
                ch.queue_declare(q.as_str().into(), passive(), FieldTable::default())
                    .await
                    .map(drop)
            })
        }),
        ("bind", |ch, q| {
            Box::pin(async move {
                ch.queue_bind(
                    q.as_str().into(),
                    "amq.direct".into(),
                    "k".into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await
            })
        }),
        ("purge", |ch, q| {
            Box::pin(async move {
                ch.queue_purge(q.as_str().into(), Default::default())
                    .await
                    .map(drop)
            })
        }),
        ("delete", |ch, q| {
            Box::pin(async move {
                ch.queue_delete(q.as_str().into(), Default::default())
                    .await
                    .map(drop)
            })
        }),
        ("consume", |ch, q| {
            Box::pin(async move {
                ch.basic_consume(
                    q.as_str().into(),
                    "".into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await
                .map(drop)
            })
        }),
        ("get", |ch, q| {
            Box::pin(async move {
                ch.basic_get(q.as_str().into(), Default::default())
                    .await
                    .map(drop)
            })
        }),
    ];
    for (what, attempt) in attempts {
        let ch = within(other.create_channel()).await.unwrap();
        match within(attempt(ch, q.clone())).await {
            Err(e) if code(&e) == Some(405) && !is_hard(&e) => {}
            r => panic!("{what}: expected a 405 channel close, got {r:?}"),
        }
    }
    // The owner still has its queue and its message.
    assert_eq!(drain(&och, &q).await, ["mine"]);
}

#[tokio::test]
async fn exclusive_queue_is_usable_from_every_channel_of_its_connection() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("excl");
    declare(&ch, &q, exclusive()).await;
    let ch2 = within(conn.create_channel()).await.unwrap();
    declare(&ch2, &q, exclusive()).await;
    publish(&ch2, "", &q, b"x").await;
    assert_eq!(drain(&ch2, &q).await, ["x"]);
}

#[tokio::test]
async fn exclusive_queue_is_deleted_when_its_connection_closes() {
    let env = Env::start().await;
    let (owner, och) = env.open().await;
    let q = uniq("excl");
    declare(&och, &q, exclusive()).await;
    let watcher = env.connect().await;
    within(owner.close(200, "bye".into())).await.unwrap();
    assert_gone(&watcher, &q).await;
    // The name is free again.
    let ch = within(watcher.create_channel()).await.unwrap();
    let again = declare(&ch, &q, exclusive()).await;
    assert_eq!(again.message_count(), 0);
}

#[tokio::test]
async fn auto_delete_queue_goes_after_its_last_consumer_cancels() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("auto");
    declare(&ch, &q, auto_delete()).await;
    // (lapin cancels a consumer when its handle is dropped: keep them.)
    let mut consumers = Vec::new();
    for tag in ["c1", "c2"] {
        consumers.push(
            within(ch.basic_consume(
                q.as_str().into(),
                tag.into(),
                Default::default(),
                FieldTable::default(),
            ))
            .await
            .unwrap(),
        );
    }
    within(ch.basic_cancel("c1".into(), Default::default()))
        .await
        .unwrap();
    assert!(exists(&conn, &q).await, "one consumer is left");
    within(ch.basic_cancel("c2".into(), Default::default()))
        .await
        .unwrap();
    assert_gone(&conn, &q).await;
}

#[tokio::test]
async fn auto_delete_queue_goes_when_its_consumers_channel_closes() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("auto");
    declare(&ch, &q, auto_delete()).await;
    let cch = within(conn.create_channel()).await.unwrap();
    let _consumer = within(support::consume(&cch, &q, "c", false)).await;
    assert!(exists(&conn, &q).await);
    within(cch.close(200, "OK".into())).await.unwrap();
    assert_gone(&conn, &q).await;
}

#[tokio::test]
async fn auto_delete_queue_without_consumers_ever_is_kept() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("auto");
    declare(&ch, &q, auto_delete()).await;
    publish(&ch, "", &q, b"m").await;
    // Gets are not consumers; a closed channel that never consumed changes nothing.
    assert_eq!(drain(&ch, &q).await, ["m"]);
    within(ch.close(200, "OK".into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(exists(&conn, &q).await);
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn redeclare_with_different_durable_auto_delete_or_arguments_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q = uniq("shape");
    let ttl = args(&[("x-message-ttl", AMQPValue::LongInt(60_000))]);
    within(ch.queue_declare(q.as_str().into(), Default::default(), ttl.clone()))
        .await
        .unwrap();
    let cases: Vec<(&str, QueueDeclareOptions, FieldTable)> = vec![
        (
            "durable",
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            ttl.clone(),
        ),
        (
            "auto_delete",
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            ttl.clone(),
        ),
        (
            "x-message-ttl value",
            Default::default(),
            args(&[("x-message-ttl", AMQPValue::LongInt(1000))]),
        ),
        (
            "x-message-ttl missing",
            Default::default(),
            FieldTable::default(),
        ),
        (
            "x-max-length added",
            Default::default(),
            args(&[
                ("x-message-ttl", AMQPValue::LongInt(60_000)),
                ("x-max-length", AMQPValue::LongInt(10)),
            ]),
        ),
    ];
    for (what, opts, a) in cases {
        let ch = within(conn.create_channel()).await.unwrap();
        match within(ch.queue_declare(q.as_str().into(), opts, a)).await {
            Err(e) if code(&e) == Some(406) && !is_hard(&e) => {}
            r => panic!("{what}: expected a 406 channel close, got {r:?}"),
        }
    }
    // Same shape (integer width aside) is fine; unknown arguments are not compared.
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.queue_declare(
        q.as_str().into(),
        Default::default(),
        args(&[
            ("x-message-ttl", AMQPValue::LongLongInt(60_000)),
            (
                "x-whatever",
                AMQPValue::LongString(LongString::from(&b"x"[..])),
            ),
        ]),
    ))
    .await
    .unwrap();
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn redeclare_with_different_exclusivity_is_405() {
    // RabbitMQ checks exclusivity strictly on redeclare: RESOURCE_LOCKED, not 406.
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let shared = uniq("shared");
    let excl = uniq("excl");
    declare(&ch, &shared, Default::default()).await;
    declare(&ch, &excl, exclusive()).await;
    for (name, opts) in [
        (&shared, exclusive()),
        (&excl, QueueDeclareOptions::default()),
    ] {
        let ch = within(conn.create_channel()).await.unwrap();
        match within(ch.queue_declare(name.as_str().into(), opts, FieldTable::default())).await {
            Err(e) if code(&e) == Some(405) && !is_hard(&e) => {}
            r => panic!("{name} {opts:?}: expected a 405 channel close, got {r:?}"),
        }
    }
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.queue_delete(shared.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn declaring_an_amq_queue_is_403() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.queue_declare(
        "amq.my-queue".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);
    // Passively it is just missing.
    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.queue_declare("amq.my-queue".into(), passive(), FieldTable::default())).await;
    assert_channel_error(r, 404);
}

#[tokio::test]
async fn purge_returns_the_ready_count_and_leaves_unacked_messages() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("purge");
    declare(&ch, &q, exclusive()).await;
    for i in 0..5 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    // One delivered, not acked.
    let got = within(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: false }))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"m0");
    let n = within(ch.queue_purge(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 4);
    let n = within(ch.queue_purge(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 0);
    // The unacked one comes back when rejected.
    within(ch.basic_reject(
        got.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    ))
    .await
    .unwrap();
    assert_eq!(drain(&ch, &q).await, ["m0"]);
}

#[tokio::test]
async fn delete_if_unused_with_a_consumer_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q = uniq("inuse");
    declare(&ch, &q, exclusive()).await;
    let _consumer = within(support::consume(&ch, &q, "c", false)).await;
    let ch2 = within(conn.create_channel()).await.unwrap();
    let r = delete_if_unused(&ch2, &q).await;
    assert_channel_error(r, 406);
    assert!(exists(&conn, &q).await);
    // Without a consumer, if-unused deletes.
    within(ch.basic_cancel("c".into(), Default::default()))
        .await
        .unwrap();
    let ch3 = within(conn.create_channel()).await.unwrap();
    let n = delete_if_unused(&ch3, &q).await.unwrap();
    assert_eq!(n, 0);
    assert!(!exists(&conn, &q).await);
}

#[tokio::test]
async fn delete_if_empty_with_messages_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q = uniq("notempty");
    declare(&ch, &q, exclusive()).await;
    publish(&ch, "", &q, b"m").await;
    let r = delete_if_empty(&ch, &q).await;
    assert_channel_error(r, 406);
    let ch = within(conn.create_channel()).await.unwrap();
    assert_eq!(drain(&ch, &q).await, ["m"]);
    let n = delete_if_empty(&ch, &q).await.unwrap();
    assert_eq!(n, 0);
    assert!(!exists(&conn, &q).await);
}

#[tokio::test]
async fn delete_ok_counts_ready_messages_and_delete_is_idempotent() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = uniq("del");
    declare(&ch, &q, Default::default()).await;
    for i in 0..7 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let n = within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 7);
    assert!(!exists(&conn, &q).await);
    // Deleting again (or a queue that never was) is fine.
    for name in [q.clone(), uniq("never")] {
        let n = within(ch.queue_delete(name.as_str().into(), Default::default()))
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
    sync(&ch).await;
}

#[tokio::test]
async fn deleting_a_queue_removes_its_bindings() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("bound");
    let key = uniq("key");
    declare(&ch, &q, Default::default()).await;
    within(support::bind(&ch, &q, "amq.direct", &key)).await;
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    // Re-created: the old binding did not survive.
    declare(&ch, &q, Default::default()).await;
    publish(&ch, "amq.direct", &key, b"x").await;
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn empty_queue_name_means_the_last_declared_queue() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = declare(&ch, "", exclusive()).await;
    let name = q.name().as_str().to_string();
    // bind "" → the server-named queue.
    let key = uniq("key");
    within(support::bind(&ch, "", "amq.direct", &key)).await;
    publish(&ch, "amq.direct", &key, b"one").await;
    publish(&ch, "", &name, b"two").await;
    // get "" and purge "".
    let got = within(ch.basic_get("".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"one");
    let n = within(ch.queue_purge("".into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    // delete "".
    publish(&ch, "", &name, b"three").await;
    let n = within(ch.queue_delete("".into(), Default::default()))
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert!(!exists(&conn, &name).await);

    // A channel that never declared a queue has no "" to refer to.
    let fresh = within(conn.create_channel()).await.unwrap();
    let r = within(fresh.queue_purge("".into(), Default::default())).await;
    assert_channel_error(r, 404);
}

#[tokio::test]
async fn passive_declare_of_the_empty_name_is_404_even_after_a_declare() {
    // RabbitMQ does not expand "" in a passive queue.declare.
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    declare(&ch, "", exclusive()).await;
    let r = within(ch.queue_declare("".into(), passive(), FieldTable::default())).await;
    assert_channel_error(r, 404);
}
