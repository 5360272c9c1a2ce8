//! The store keeps the order of the changes it records: a durable queue deleted on one
//! connection while another re-declares it (and binds it, and confirms a message into it)
//! must come back after a restart exactly as it was before, many rounds over.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;
use support::{durable, TestBroker};

const ROUNDS: usize = 150;
/// Transient messages in the queue when it is deleted.
const FILL: u32 = 2000;

/// Passive declare (on a channel of its own: a 404 closes it): the queue's message count, or
/// None if it does not exist.
async fn count(conn: &lapin::Connection, name: &str) -> Option<u32> {
    let ch = conn.create_channel().await.unwrap();
    let r = support::declare_passive(&ch, name)
        .await
        .ok()
        .map(|q| q.message_count());
    let _ = ch.close(200, "ok".into()).await;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_redeclare_races_survive_a_restart() {
    let b = TestBroker::start().await;
    let (_c1, deleter) = b.open().await;
    let (_c3, filler) = b.open().await;
    let probe = b.connect().await;
    let (declare_conn, declarer) = b.open().await;
    declarer
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut raced = 0;
    for r in 0..ROUNDS {
        let name = format!("race-{r}");
        declarer
            .queue_declare(name.as_str().into(), durable(), FieldTable::default())
            .await
            .unwrap();
        // One connection deletes the queue while the other declares it (the old one, or a
        // new one if the delete came first) and binds it: both outcomes are fine, but the
        // store must end up saying what memory says.
        // Transient messages make the delete take a while (the window in which the name is
        // free again but the delete's store write is not yet sent, if it is sent late).
        for _ in 0..FILL {
            support::send(&filler, "", &name, b"filler", BasicProperties::default()).await;
        }
        while count(&probe, &name).await < Some(FILL) {
            tokio::task::yield_now().await;
        }
        let delete = deleter.queue_delete(name.as_str().into(), QueueDeleteOptions::default());
        // On a channel of its own: a bind that comes after the delete is a 404 (closing it).
        let racer = declare_conn.create_channel().await.unwrap();
        let redeclare = async {
            if r % 2 == 1 {
                tokio::task::yield_now().await;
            }
            racer
                .queue_declare(name.as_str().into(), durable(), FieldTable::default())
                .await?;
            racer
                .queue_bind(
                    name.as_str().into(),
                    "amq.direct".into(),
                    name.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        };
        let (deleted, _raced) = tokio::join!(delete, redeclare);
        deleted.unwrap();
        // Whatever the outcome, the queue exists now (declared again if it was deleted last),
        // is bound, and gets one confirmed message through its binding.
        declarer
            .queue_declare(name.as_str().into(), durable(), FieldTable::default())
            .await
            .unwrap();
        support::bind(&declarer, &name, "amq.direct", &name).await;
        let confirm = support::send(
            &declarer,
            "amq.direct",
            &name,
            format!("m{r}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .await
        .unwrap();
        assert!(confirm.is_ack());
        let n = count(&probe, &name).await;
        if n != Some(1) {
            raced += 1;
        }
        assert!(
            n.is_some(),
            "round {r}: the queue is gone before any restart"
        );
    }
    drop((_c1, declare_conn, _c3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(probe);
    let b = b.restart().await;
    let probe = b.connect().await;
    let mut missing = Vec::new();
    let mut unbound = Vec::new();
    for r in 0..ROUNDS {
        let name = format!("race-{r}");
        match count(&probe, &name).await {
            Some(n) if n >= 1 => {}
            other => {
                missing.push(format!("{name}: {other:?}"));
                continue;
            }
        }
        // The binding came back too: a publish through it lands in the queue.
        let (conn, ch) = b.open().await;
        support::send(
            &ch,
            "amq.direct",
            &name,
            b"again",
            BasicProperties::default(),
        )
        .await;
        let _ = conn.close(200, "ok".into()).await;
        if count(&probe, &name).await != Some(2) {
            unbound.push(name);
        }
    }
    eprintln!(
        "store order: {ROUNDS} rounds ({raced} with an odd count before the restart); after \
         it {} queues missing or empty, {} unbound",
        missing.len(),
        unbound.len()
    );
    assert!(
        missing.is_empty(),
        "queues (or their confirmed message) lost by the restart: {missing:?}"
    );
    assert!(
        unbound.is_empty(),
        "bindings lost by the restart: {unbound:?}"
    );
}
