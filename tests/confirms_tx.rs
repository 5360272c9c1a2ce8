//! Publisher confirms and transactions through lapin (and a raw client where lapin hides the
//! confirms' delivery tags): every publish confirmed, `multiple` acks covering each sequence
//! number once, and tx with RabbitMQ's semantics for publishes and acks.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::BTreeSet;

use amq_protocol::frame::AMQPFrame;
use amq_protocol::protocol::{basic, confirm, AMQPClass};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation};
use support::raw::{publish_frames, Raw};
use support::{
    assert_channel_error, drain, exclusive_queue as queue, next_error, publish, sync, uniq, within,
    Env,
};

/// Ready messages of `q` as another channel sees them.
async fn ready(ch: &Channel, q: &str) -> u32 {
    within(support::declare_passive(ch, q))
        .await
        .unwrap()
        .message_count()
}

async fn get_tag(ch: &Channel, q: &str) -> u64 {
    within(ch.basic_get(q.into(), BasicGetOptions { no_ack: false }))
        .await
        .unwrap()
        .expect("a message")
        .delivery
        .delivery_tag
}

#[tokio::test]
async fn every_publish_in_confirm_mode_is_acked() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    within(ch.confirm_select(Default::default())).await.unwrap();
    assert!(ch.status().confirm());
    let mut confirms = Vec::new();
    for i in 0..100 {
        // Routed, unroutable, and to an exchange with no bindings: all acked.
        let (ex, key) = match i % 3 {
            0 => ("", q.as_str()),
            1 => ("amq.direct", "nobody"),
            _ => ("amq.fanout", ""),
        };
        confirms.push(
            within(ch.basic_publish(
                ex.into(),
                key.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            ))
            .await
            .unwrap(),
        );
    }
    for (i, c) in confirms.into_iter().enumerate() {
        assert_eq!(
            within(c).await.unwrap(),
            Confirmation::Ack(None),
            "publish {i}"
        );
    }
    assert!(within(ch.wait_for_confirms()).await.unwrap().is_empty());
    assert_eq!(drain(&ch, &q).await.len(), 34);
    // confirm.select again is harmless.
    within(ch.confirm_select(Default::default())).await.unwrap();
}

#[tokio::test]
async fn confirm_acks_cover_every_sequence_number_exactly_once() {
    let env = Env::start().await;
    let addr = env.addr();
    let (_c, ch) = env.open().await;
    let q = queue_shared(&ch).await;
    const N: u64 = 500;
    let acks = within(async {
        let mut raw = Raw::open(addr).await;
        raw.send(&AMQPFrame::Method(
            1,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
        ))
        .await;
        assert!(matches!(
            raw.recv().await,
            AMQPFrame::Method(1, AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)))
        ));
        // All publishes in one write: the broker may (and RabbitMQ does) coalesce acks.
        let mut out = Vec::new();
        for i in 0..N {
            publish_frames("", &q, format!("m{i}").as_bytes(), &mut out);
        }
        raw.write(&out).await;
        let mut acks = Vec::new();
        loop {
            match raw.recv().await {
                AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Ack(a))) => {
                    acks.push((a.delivery_tag, a.multiple));
                    if a.delivery_tag == N {
                        return acks;
                    }
                }
                AMQPFrame::Heartbeat => {}
                other => panic!("unexpected frame {other:?}"),
            }
        }
    })
    .await;
    let mut covered = BTreeSet::new();
    let mut last = 0;
    for (tag, multiple) in &acks {
        assert!(*tag > last, "acks out of order: {acks:?}");
        let range = if *multiple {
            last + 1..=*tag
        } else {
            *tag..=*tag
        };
        for t in range {
            assert!(covered.insert(t), "tag {t} confirmed twice: {acks:?}");
        }
        last = *tag;
    }
    assert_eq!(covered, (1..=N).collect::<BTreeSet<_>>(), "{acks:?}");
    assert_eq!(ready(&ch, &q).await, N as u32);
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
}

/// A non-exclusive queue (the raw client is another connection).
async fn queue_shared(ch: &Channel) -> String {
    let name = uniq("q");
    within(ch.queue_declare(
        name.as_str().into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    name
}

#[tokio::test]
async fn tx_publishes_are_invisible_until_commit() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    for i in 0..3 {
        publish(&tx, "", &q, format!("m{i}").as_bytes()).await;
    }
    sync(&tx).await;
    assert_eq!(ready(&ch, &q).await, 0);
    assert!(within(ch.basic_get(q.as_str().into(), Default::default()))
        .await
        .unwrap()
        .is_none());
    within(tx.tx_commit()).await.unwrap();
    assert_eq!(drain(&ch, &q).await, ["m0", "m1", "m2"]);
}

#[tokio::test]
async fn tx_rollback_discards_publishes_and_the_channel_stays_transactional() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    publish(&tx, "", &q, b"gone1").await;
    publish(&tx, "", &q, b"gone2").await;
    within(tx.tx_rollback()).await.unwrap();
    assert_eq!(ready(&ch, &q).await, 0);
    publish(&tx, "", &q, b"kept").await;
    sync(&tx).await;
    assert_eq!(ready(&ch, &q).await, 0);
    within(tx.tx_commit()).await.unwrap();
    assert_eq!(drain(&ch, &q).await, ["kept"]);
    // An empty commit and rollback are fine.
    within(tx.tx_commit()).await.unwrap();
    within(tx.tx_rollback()).await.unwrap();
}

#[tokio::test]
async fn tx_acks_apply_at_commit() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    for i in 0..3 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    let t0 = get_tag(&tx, &q).await;
    let _t1 = get_tag(&tx, &q).await;
    within(tx.basic_ack(t0, Default::default())).await.unwrap();
    within(tx.tx_commit()).await.unwrap();
    // m0 is settled; m1 (never acked) comes back when the channel closes.
    within(tx.close(200, "OK".into())).await.unwrap();
    assert_eq!(drain(&ch, &q).await, ["m1", "m2"]);
}

#[tokio::test]
async fn tx_acks_are_undone_by_rollback_and_by_closing_uncommitted() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    for i in 0..2 {
        publish(&ch, "", &q, format!("m{i}").as_bytes()).await;
    }
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    let t0 = get_tag(&tx, &q).await;
    let t1 = get_tag(&tx, &q).await;
    within(tx.basic_ack(t1, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(tx.tx_rollback()).await.unwrap();
    // Rolled back: both are unacked again, so acking t0 once more is no error.
    within(tx.basic_ack(t0, Default::default())).await.unwrap();
    within(tx.tx_commit()).await.unwrap();
    // An ack left uncommitted (t1) does not count when the channel closes.
    within(tx.basic_ack(t1, Default::default())).await.unwrap();
    sync(&tx).await;
    within(tx.close(200, "OK".into())).await.unwrap();
    let back = within(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
        .expect("m1 requeued");
    assert_eq!(back.delivery.data, b"m1");
    assert!(back.delivery.redelivered);
    assert_eq!(back.message_count, 0);
}

#[tokio::test]
async fn tx_rejects_apply_at_commit() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    publish(&ch, "", &q, b"m0").await;
    publish(&ch, "", &q, b"m1").await;
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    let t0 = get_tag(&tx, &q).await;
    let t1 = get_tag(&tx, &q).await;
    within(tx.basic_reject(t0, BasicRejectOptions { requeue: true }))
        .await
        .unwrap();
    within(tx.basic_nack(
        t1,
        BasicNackOptions {
            multiple: false,
            requeue: false,
        },
    ))
    .await
    .unwrap();
    sync(&tx).await;
    assert_eq!(ready(&ch, &q).await, 0, "requeued before commit");
    within(tx.tx_commit()).await.unwrap();
    within(tx.close(200, "OK".into())).await.unwrap();
    // m0 back (requeued), m1 dropped.
    assert_eq!(drain(&ch, &q).await, ["m0"]);
}

#[tokio::test]
async fn tx_publish_to_a_missing_exchange_is_404_at_once() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let mut events = conn.events_listener();
    let tx = within(conn.create_channel()).await.unwrap();
    within(tx.tx_select()).await.unwrap();
    publish(&tx, &uniq("missing"), "k", b"x").await;
    let e = next_error(&mut events).await;
    support::assert_soft(&e, 404);
}

#[tokio::test]
async fn tx_commit_or_rollback_without_select_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    assert_channel_error(within(ch.tx_commit()).await, 406);
    let ch = within(conn.create_channel()).await.unwrap();
    assert_channel_error(within(ch.tx_rollback()).await, 406);
}

#[tokio::test]
async fn confirm_and_tx_modes_exclude_each_other() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.tx_select()).await.unwrap();
    assert_channel_error(within(ch.confirm_select(Default::default())).await, 406);
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.confirm_select(Default::default())).await.unwrap();
    assert_channel_error(within(ch.tx_select()).await, 406);
    // tx.select twice is fine.
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.tx_select()).await.unwrap();
    within(ch.tx_select()).await.unwrap();
}
