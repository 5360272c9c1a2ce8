//! A connection reuses the route of its last publish while the vhost's topology is unchanged:
//! every change (bind, unbind, queue declared or deleted, exchange deleted) must show in the
//! very next publish on the same channel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use support::*;

async fn declare(ch: &lapin::Channel, name: &str) {
    within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
}

async fn bind(ch: &lapin::Channel, q: &str, ex: &str, key: &str) {
    within(support::bind(ch, q, ex, key)).await;
}

#[tokio::test]
async fn topology_changes_show_in_the_next_publish() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("rr-ex");
    within(ch.exchange_declare(
        ex.as_str().into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    let (q1, q2) = (uniq("rr-q1"), uniq("rr-q2"));
    declare(&ch, &q1).await;
    declare(&ch, &q2).await;
    bind(&ch, &q1, &ex, "k").await;

    publish(&ch, &ex, "k", b"1").await;
    bind(&ch, &q2, &ex, "k").await;
    publish(&ch, &ex, "k", b"2").await;
    within(support::unbind(&ch, &q1, &ex, "k")).await;
    publish(&ch, &ex, "k", b"3").await;
    sync(&ch).await;
    assert_eq!(drain(&ch, &q1).await, vec!["1", "2"]);
    assert_eq!(drain(&ch, &q2).await, vec!["2", "3"]);

    // Deleting the queue empties the cached route; the default exchange sees a new queue.
    within(ch.queue_delete(q2.as_str().into(), QueueDeleteOptions::default()))
        .await
        .unwrap();
    publish(&ch, &ex, "k", b"4").await;
    let q3 = uniq("rr-q3");
    publish(&ch, "", &q3, b"lost").await;
    declare(&ch, &q3).await;
    publish(&ch, "", &q3, b"5").await;
    sync(&ch).await;
    assert_eq!(drain(&ch, &q3).await, vec!["5"]);
    declare(&ch, &q2).await;
    sync(&ch).await;
    assert!(drain(&ch, &q2).await.is_empty());
}
