//! The basic class through lapin: publish errors and mandatory returns, consumers (tags,
//! exclusivity, cancel from either side), get, ack/nack/reject, redelivery, round-robin,
//! prefetch, requeue on close, recover, and bodies spanning many frames.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Consumer};
use support::{
    assert_channel_error, assert_connection_error, assert_no_delivery, code, drain,
    exclusive_queue as queue, next_delivery, next_error, publish, publish_with, sync, uniq, within,
    Env,
};

async fn consume(ch: &Channel, q: &str, tag: &str, no_ack: bool) -> Consumer {
    within(support::consume(ch, q, tag, no_ack)).await
}

async fn get(ch: &Channel, q: &str, no_ack: bool) -> Option<lapin::message::BasicGetMessage> {
    within(ch.basic_get(q.into(), BasicGetOptions { no_ack }))
        .await
        .unwrap()
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8(d.data.clone()).unwrap()
}

/// The ready messages of `q` as (body, redelivered), taken with no-ack gets.
async fn drain_flags(ch: &Channel, q: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Some(m) = get(ch, q, true).await {
        out.push((body(&m.delivery), m.delivery.redelivered));
    }
    out
}

async fn publish_n(ch: &Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
}

#[tokio::test]
async fn publish_to_a_missing_exchange_closes_the_channel_with_404() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let mut events = conn.events_listener();
    let ch = within(conn.create_channel()).await.unwrap();
    publish(&ch, &uniq("missing"), "k", b"lost").await;
    let e = next_error(&mut events).await;
    support::assert_soft(&e, 404);
    // The channel is gone, the connection is not.
    let r = within(ch.basic_qos(1, Default::default())).await;
    assert!(r.is_err(), "channel still open: {r:?}");
    let ch2 = within(conn.create_channel()).await.unwrap();
    sync(&ch2).await;
}

#[tokio::test]
async fn mandatory_unroutable_message_is_returned_with_312_no_route() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    within(ch.confirm_select(Default::default())).await.unwrap();
    let key = uniq("nobody");
    let props = BasicProperties::default()
        .with_content_type("text/plain".into())
        .with_message_id("id-1".into());
    let confirm = within(ch.basic_publish(
        "amq.direct".into(),
        key.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"come back",
        props,
    ))
    .await
    .unwrap();
    match within(confirm).await.unwrap() {
        Confirmation::Ack(Some(ret)) => {
            assert_eq!(ret.reply_code, 312);
            assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
            assert_eq!(ret.delivery.exchange.as_str(), "amq.direct");
            assert_eq!(ret.delivery.routing_key.as_str(), key);
            assert_eq!(ret.delivery.data, b"come back");
            assert_eq!(
                ret.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.as_str()),
                Some("id-1")
            );
        }
        other => panic!("expected an ack with the returned message, got {other:?}"),
    }

    // Unroutable but not mandatory: dropped silently. Routable and mandatory: delivered.
    let confirm = within(support::send(
        &ch,
        "amq.direct",
        &key,
        b"dropped",
        BasicProperties::default(),
    ))
    .await;
    assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
    let q = queue(&ch).await;
    let confirm = within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"routed",
        BasicProperties::default(),
    ))
    .await
    .unwrap();
    assert_eq!(within(confirm).await.unwrap(), Confirmation::Ack(None));
    assert_eq!(drain(&ch, &q).await, ["routed"]);
}

#[tokio::test]
async fn user_id_must_match_the_authenticated_user() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q = queue(&ch).await;
    publish_with(
        &ch,
        "",
        &q,
        b"mine",
        BasicProperties::default().with_user_id("guest".into()),
    )
    .await;
    let got = get(&ch, &q, true).await.expect("a message");
    assert_eq!(
        got.delivery
            .properties
            .user_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("guest")
    );

    let mut events = conn.events_listener();
    publish_with(
        &ch,
        "",
        &q,
        b"forged",
        BasicProperties::default().with_user_id("admin".into()),
    )
    .await;
    let e = next_error(&mut events).await;
    support::assert_soft(&e, 406);
    let ch2 = within(conn.create_channel()).await.unwrap();
    assert_eq!(drain(&ch2, &q).await, Vec::<String>::new());
}

#[tokio::test]
async fn exclusive_consumer_conflicts_are_403() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q1 = queue(&ch).await;
    let q2 = queue(&ch).await;
    // An exclusive consumer locks out others ...
    let _excl = within(ch.basic_consume(
        q1.as_str().into(),
        "excl".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .unwrap();
    let ch2 = within(conn.create_channel()).await.unwrap();
    let r = within(ch2.basic_consume(
        q1.as_str().into(),
        "second".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r.map(|c| c.tag()), 403);
    // ... and an exclusive consumer cannot join a queue that has consumers.
    let _shared = consume(&ch, &q2, "shared", false).await;
    let ch3 = within(conn.create_channel()).await.unwrap();
    let r = within(ch3.basic_consume(
        q2.as_str().into(),
        "excl2".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r.map(|c| c.tag()), 403);
}

#[tokio::test]
async fn reusing_a_consumer_tag_on_a_channel_closes_the_connection_with_530() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let _first = consume(&ch, &q, "dup", false).await;
    let r = within(ch.basic_consume(
        q.as_str().into(),
        "dup".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_connection_error(r.map(|c| c.tag()), 530);
}

#[tokio::test]
async fn the_same_consumer_tag_on_two_channels_is_fine() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    let ch2 = within(conn.create_channel()).await.unwrap();
    let _a = consume(&ch, &q, "same", false).await;
    let _b = consume(&ch2, &q, "same", false).await;
    let d = within(support::declare_passive(&ch, &q)).await.unwrap();
    assert_eq!(d.consumer_count(), 2);
}

#[tokio::test]
async fn server_generated_consumer_tags_start_with_amq_ctag() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let a = consume(&ch, &q, "", false).await;
    let b = consume(&ch, &q, "", false).await;
    for tag in [a.tag(), b.tag()] {
        assert!(tag.as_str().starts_with("amq.ctag-"), "{tag:?}");
        assert_eq!(tag.as_str().len(), "amq.ctag-".len() + 22, "{tag:?}");
    }
    assert_ne!(a.tag(), b.tag());
    // Deliveries carry the generated tag's consumer.
    publish(&ch, "", &q, b"x").await;
    let mut a = a;
    let mut b = b;
    let got = tokio::select! {
        d = a.next() => d,
        d = b.next() => d,
    };
    assert_eq!(got.unwrap().unwrap().data, b"x");
}

#[tokio::test]
async fn cancel_stops_deliveries_and_ends_the_consumer() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let mut c = consume(&ch, &q, "c", true).await;
    publish(&ch, "", &q, b"before").await;
    assert_eq!(next_delivery(&mut c).await.data, b"before");
    within(ch.basic_cancel("c".into(), Default::default()))
        .await
        .unwrap();
    assert!(within(c.next()).await.is_none(), "consumer did not end");
    publish(&ch, "", &q, b"after").await;
    assert_eq!(drain(&ch, &q).await, ["after"]);
    // Cancelling an unknown tag is not an error.
    within(ch.basic_cancel("no-such-consumer".into(), Default::default()))
        .await
        .unwrap();
    sync(&ch).await;
}

#[tokio::test]
async fn deleting_a_consumed_queue_cancels_its_consumers() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("doomed");
    within(ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default()))
        .await
        .unwrap();
    let mut c = consume(&ch, &q, "c", false).await;
    let other = env.connect().await;
    let och = within(other.create_channel()).await.unwrap();
    within(och.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    // lapin advertises consumer_cancel_notify: the broker's basic.cancel ends the stream.
    assert!(
        within(c.next()).await.is_none(),
        "consumer was not cancelled"
    );
    // The channel is still open.
    sync(&ch).await;
}

#[tokio::test]
async fn get_reports_remaining_messages_then_get_empty() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    assert!(get(&ch, &q, true).await.is_none());
    publish_n(&ch, &q, 3).await;
    for (i, remaining) in [2u32, 1, 0].into_iter().enumerate() {
        let m = get(&ch, &q, true).await.expect("a message");
        assert_eq!(m.message_count, remaining);
        assert_eq!(body(&m.delivery), format!("m{i}"));
        assert_eq!(m.delivery.routing_key.as_str(), q);
        assert_eq!(m.delivery.exchange.as_str(), "");
        assert!(!m.delivery.redelivered);
    }
    assert!(get(&ch, &q, true).await.is_none());
}

#[tokio::test]
async fn get_and_consume_on_a_missing_queue_are_404() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.basic_get(uniq("missing").into(), Default::default())).await;
    assert_channel_error(r.map(|m| m.is_some()), 404);
    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.basic_consume(
        uniq("missing").into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r.map(|c| c.tag()), 404);
}

#[tokio::test]
async fn ack_multiple_settles_everything_up_to_the_tag() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    publish_n(&ch, &q, 4).await;
    let mut tags = Vec::new();
    for _ in 0..4 {
        tags.push(get(&ch, &q, false).await.unwrap().delivery.delivery_tag);
    }
    assert_eq!(tags, [1, 2, 3, 4]);
    within(ch.basic_ack(3, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    // Only m3 (tag 4) is still unacked: recover puts it back.
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .unwrap();
    assert_eq!(drain_flags(&ch, &q).await, [("m3".to_string(), true)]);
}

#[tokio::test]
async fn ack_multiple_with_tag_zero_settles_everything() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    publish_n(&ch, &q, 3).await;
    for _ in 0..3 {
        get(&ch, &q, false).await.unwrap();
    }
    within(ch.basic_ack(0, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .unwrap();
    assert_eq!(drain_flags(&ch, &q).await, []);
}

#[tokio::test]
async fn nack_and_reject_requeue_or_drop() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    publish_n(&ch, &q, 6).await;
    for _ in 0..6 {
        get(&ch, &q, false).await.unwrap();
    }
    // Tags 1..=6 carry m0..m5.
    within(ch.basic_reject(2, BasicRejectOptions { requeue: false }))
        .await
        .unwrap(); // m1 dropped
    within(ch.basic_reject(4, BasicRejectOptions { requeue: true }))
        .await
        .unwrap(); // m3 back
    within(ch.basic_nack(
        3,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    ))
    .await
    .unwrap(); // m0, m2 back (m1 already gone)
    within(ch.basic_nack(
        6,
        BasicNackOptions {
            multiple: true,
            requeue: false,
        },
    ))
    .await
    .unwrap(); // m4, m5 dropped
    assert_eq!(
        drain_flags(&ch, &q).await,
        [
            ("m0".to_string(), true),
            ("m2".to_string(), true),
            ("m3".to_string(), true)
        ]
    );
}

#[tokio::test]
async fn acking_twice_or_an_unknown_tag_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let mut events = conn.events_listener();
    let ch = within(conn.create_channel()).await.unwrap();
    let q = queue(&ch).await;
    publish_n(&ch, &q, 1).await;
    let m = get(&ch, &q, false).await.unwrap();
    let tag = m.delivery.delivery_tag;
    within(ch.basic_ack(tag, Default::default())).await.unwrap();
    within(ch.basic_ack(tag, Default::default())).await.unwrap();
    let e = next_error(&mut events).await;
    support::assert_soft(&e, 406);

    for (what, tag, multiple) in [("unknown", 42u64, false), ("unknown multiple", 42, true)] {
        let ch = within(conn.create_channel()).await.unwrap();
        within(ch.basic_ack(tag, BasicAckOptions { multiple }))
            .await
            .unwrap();
        let e = next_error(&mut events).await;
        assert_eq!(code(&e), Some(406), "{what}: {e:?}");
    }
    for what in ["nack", "reject"] {
        let ch = within(conn.create_channel()).await.unwrap();
        if what == "nack" {
            within(ch.basic_nack(7, Default::default())).await.unwrap();
        } else {
            within(ch.basic_reject(7, Default::default()))
                .await
                .unwrap();
        }
        let e = next_error(&mut events).await;
        assert_eq!(code(&e), Some(406), "{what}: {e:?}");
    }
}

#[tokio::test]
async fn requeued_deliveries_come_back_marked_redelivered() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let mut c = consume(&ch, &q, "c", false).await;
    publish(&ch, "", &q, b"again").await;
    let d = next_delivery(&mut c).await;
    assert!(!d.redelivered);
    d.acker
        .nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        })
        .await
        .unwrap();
    let d2 = next_delivery(&mut c).await;
    assert_eq!(d2.data, b"again");
    assert!(d2.redelivered);
    assert!(d2.delivery_tag > d.delivery_tag);
    d2.acker.ack(Default::default()).await.unwrap();
    assert_no_delivery(&mut c, 100).await;
}

#[tokio::test]
async fn consumers_on_a_queue_take_turns() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    let ch2 = within(conn.create_channel()).await.unwrap();
    let mut c1 = consume(&ch, &q, "c1", true).await;
    let mut c2 = consume(&ch2, &q, "c2", true).await;
    publish_n(&ch, &q, 6).await;
    let mut got1 = Vec::new();
    let mut got2 = Vec::new();
    for _ in 0..3 {
        got1.push(body(&next_delivery(&mut c1).await));
        got2.push(body(&next_delivery(&mut c2).await));
    }
    assert_eq!(got1, ["m0", "m2", "m4"]);
    assert_eq!(got2, ["m1", "m3", "m5"]);
    assert_no_delivery(&mut c1, 100).await;
    assert_no_delivery(&mut c2, 1).await;
}

#[tokio::test]
async fn per_consumer_prefetch_limits_unacked_deliveries() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    within(ch.basic_qos(2, BasicQosOptions { global: false }))
        .await
        .unwrap();
    let mut c = consume(&ch, &q, "c", false).await;
    publish_n(&ch, &q, 5).await;
    let d0 = next_delivery(&mut c).await;
    let d1 = next_delivery(&mut c).await;
    assert_eq!((body(&d0), body(&d1)), ("m0".into(), "m1".into()));
    assert_no_delivery(&mut c, 200).await;
    d0.acker.ack(Default::default()).await.unwrap();
    let d2 = next_delivery(&mut c).await;
    assert_eq!(body(&d2), "m2");
    assert_no_delivery(&mut c, 200).await;
    // Acking several at once frees as many slots.
    within(ch.basic_ack(d2.delivery_tag, BasicAckOptions { multiple: true }))
        .await
        .unwrap();
    let mut rest = vec![
        body(&next_delivery(&mut c).await),
        body(&next_delivery(&mut c).await),
    ];
    rest.sort();
    assert_eq!(rest, ["m3", "m4"]);
}

#[tokio::test]
async fn per_consumer_and_per_channel_prefetch_both_apply() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q1 = queue(&ch).await;
    let q2 = queue(&ch).await;
    // Each consumer at most 2 unacked, the channel at most 3.
    within(ch.basic_qos(2, BasicQosOptions { global: false }))
        .await
        .unwrap();
    within(ch.basic_qos(3, BasicQosOptions { global: true }))
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q1, "c1", false).await;
    let mut c2 = consume(&ch, &q2, "c2", false).await;
    publish_n(&ch, &q1, 5).await;
    // c1 is held by its own limit ...
    let a0 = next_delivery(&mut c1).await;
    let a1 = next_delivery(&mut c1).await;
    assert_eq!((body(&a0), body(&a1)), ("m0".into(), "m1".into()));
    assert_no_delivery(&mut c1, 200).await;
    publish_n(&ch, &q2, 5).await;
    // ... c2 by the channel's, reached before its own.
    let b0 = next_delivery(&mut c2).await;
    assert_eq!(body(&b0), "m0");
    assert_no_delivery(&mut c2, 200).await;
    // Acking c2's message frees a channel slot that only c2 may use (c1 is at 2).
    b0.acker.ack(Default::default()).await.unwrap();
    let b1 = next_delivery(&mut c2).await;
    assert_eq!(body(&b1), "m1");
    assert_no_delivery(&mut c1, 200).await;
    assert_no_delivery(&mut c2, 1).await;
    // Acking one of c1's frees one slot in all: exactly one more delivery, to either.
    a0.acker.ack(Default::default()).await.unwrap();
    let mut more = 0;
    for c in [&mut c1, &mut c2] {
        if let Ok(d) = tokio::time::timeout(Duration::from_millis(300), c.next()).await {
            assert!(d.is_some());
            more += 1;
        }
    }
    assert_eq!(more, 1);
}

#[tokio::test]
async fn an_ack_on_one_queue_frees_channel_credit_for_another() {
    // global=true qos 1: the channel holds one unacked message across both consumers.
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q1 = queue(&ch).await;
    let q2 = queue(&ch).await;
    within(ch.basic_qos(1, BasicQosOptions { global: true }))
        .await
        .unwrap();
    let mut c1 = consume(&ch, &q1, "c1", false).await;
    let mut c2 = consume(&ch, &q2, "c2", false).await;
    publish_n(&ch, &q1, 1).await;
    let a = next_delivery(&mut c1).await;
    publish_n(&ch, &q2, 1).await;
    assert_no_delivery(&mut c2, 200).await;
    // q1 is now empty: only q2's consumer can use the freed slot.
    a.acker.ack(Default::default()).await.unwrap();
    let b = next_delivery(&mut c2).await;
    assert_eq!(body(&b), "m0");
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_the_channel_closes() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let q = queue(&ch).await;
    publish_n(&ch, &q, 5).await;
    // Taken with basic.get (ack mode) on another channel, so nothing else takes m5 below.
    let gch = within(conn.create_channel()).await.unwrap();
    let mut tags = Vec::new();
    for _ in 0..5 {
        tags.push(get(&gch, &q, false).await.unwrap().delivery.delivery_tag);
    }
    // m2 is acked; a new message queues up behind the unacked ones.
    within(gch.basic_ack(tags[2], Default::default()))
        .await
        .unwrap();
    publish(&ch, "", &q, b"m5").await;
    sync(&gch).await;
    within(gch.close(200, "OK".into())).await.unwrap();
    let want: Vec<(String, bool)> = [
        ("m0", true),
        ("m1", true),
        ("m3", true),
        ("m4", true),
        ("m5", false),
    ]
    .into_iter()
    .map(|(b, r)| (b.to_string(), r))
    .collect();
    assert_eq!(drain_flags(&ch, &q).await, want);
}

#[tokio::test]
async fn unacked_messages_return_in_order_when_the_connection_closes() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("shared");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: false,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish_n(&ch, &q, 4).await;
    let (consumer_conn, cch) = env.open().await;
    let mut c = consume(&cch, &q, "c", false).await;
    let mut ds = Vec::new();
    for _ in 0..4 {
        ds.push(next_delivery(&mut c).await);
    }
    // Settled out of order: m3 acked, m1 rejected (requeued at once).
    ds[3].acker.ack(Default::default()).await.unwrap();
    ds[1]
        .acker
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    // The consumer gets m1 again (redelivered) and leaves it unacked.
    let again = next_delivery(&mut c).await;
    assert_eq!((body(&again), again.redelivered), ("m1".to_string(), true));
    within(consumer_conn.close(200, "bye".into()))
        .await
        .unwrap();
    // The requeue happens as the broker handles the close; poll briefly for it.
    let mut ready = 0;
    for _ in 0..20 {
        let d = within(support::declare_passive(&ch, &q)).await.unwrap();
        ready = d.message_count();
        if ready == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready, 3);
    let want: Vec<(String, bool)> = ["m0", "m1", "m2"]
        .into_iter()
        .map(|b| (b.to_string(), true))
        .collect();
    assert_eq!(drain_flags(&ch, &q).await, want);
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
}

#[tokio::test]
async fn recover_with_requeue_redelivers_unacked_messages() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let mut c = consume(&ch, &q, "c", false).await;
    publish_n(&ch, &q, 3).await;
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(next_delivery(&mut c).await);
    }
    first[1].acker.ack(Default::default()).await.unwrap();
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .unwrap();
    let mut again = Vec::new();
    for _ in 0..2 {
        let d = next_delivery(&mut c).await;
        assert!(d.redelivered, "{}", body(&d));
        again.push(body(&d));
        d.acker.ack(Default::default()).await.unwrap();
    }
    assert_eq!(again, ["m0", "m2"]);
    assert_no_delivery(&mut c, 200).await;
}

#[tokio::test]
async fn large_bodies_cross_frames_byte_exact() {
    let env = Env::start().await;
    let (conn, ch) = env.open().await;
    let frame_max = conn.configuration().frame_max() as usize;
    assert!(frame_max >= 4096, "{frame_max}");
    let q = queue(&ch).await;
    // Empty, one byte, exactly one full body frame, one byte more, and 1 MiB.
    let sizes = [0, 1, frame_max - 8, frame_max - 7, 1 << 20];
    let make = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 31 % 251) as u8).collect() };
    for n in sizes {
        publish(&ch, "", &q, &make(n)).await;
    }
    // Through basic.get ...
    for n in sizes {
        let m = get(&ch, &q, true).await.expect("a message");
        assert_eq!(m.delivery.data.len(), n);
        assert!(m.delivery.data == make(n), "body of {n} bytes differs");
    }
    // ... and basic.deliver.
    let mut c = consume(&ch, &q, "c", true).await;
    for n in sizes {
        publish(&ch, "", &q, &make(n)).await;
    }
    for n in sizes {
        let d = next_delivery(&mut c).await;
        assert_eq!(d.data.len(), n);
        assert!(d.data == make(n), "delivered body of {n} bytes differs");
    }
}

/// basic.qos with prefetch-size != 0 (lapin's `basic_qos` has no prefetch-size, so this
/// test speaks raw AMQP): RabbitMQ closes the connection with 540 NOT_IMPLEMENTED.
#[tokio::test]
async fn qos_with_a_prefetch_size_closes_the_connection_with_540() {
    use support::raw::{method_payload, raw_frame, Raw};
    let env = Env::start().await;
    let close = within(async {
        let mut raw = Raw::open(env.addr()).await;
        // basic.qos (60, 10): prefetch-size 4096, prefetch-count 1, global false.
        let mut args = Vec::new();
        args.extend_from_slice(&4096u32.to_be_bytes());
        args.extend_from_slice(&1u16.to_be_bytes());
        args.push(0);
        raw.write(&raw_frame(1, 1, &method_payload(60, 10, &args)))
            .await;
        raw.expect_close_frame().await
    })
    .await;
    assert_eq!(close.reply_code, 540, "{close:?}");
    assert!(
        close.reply_text.as_str().starts_with("NOT_IMPLEMENTED"),
        "{close:?}"
    );
    assert_eq!((close.class_id, close.method_id), (60, 10));
}

#[tokio::test]
async fn deliveries_carry_exchange_key_and_properties() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = queue(&ch).await;
    let key = uniq("key");
    within(support::bind(&ch, &q, "amq.topic", &key)).await;
    let mut c = consume(&ch, &q, "c", false).await;
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_correlation_id("corr".into())
        .with_priority(3)
        .with_delivery_mode(2);
    publish_with(&ch, "amq.topic", &key, b"{}", props).await;
    let d = next_delivery(&mut c).await;
    assert_eq!(d.exchange.as_str(), "amq.topic");
    assert_eq!(d.routing_key.as_str(), key);
    assert_eq!(d.delivery_tag, 1);
    assert!(!d.redelivered);
    assert_eq!(
        d.properties.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        d.properties.correlation_id().as_ref().map(|s| s.as_str()),
        Some("corr")
    );
    assert_eq!(*d.properties.priority(), Some(3));
    assert_eq!(*d.properties.delivery_mode(), Some(2));
}
