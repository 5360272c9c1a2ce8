//! RabbitMQ's queue features through lapin: dead-lettering and `x-death`, TTLs, length
//! limits, priorities, alternate exchanges, single active consumer, delivery limits,
//! `x-expires`, `x-queue-type`. Like the other lapin tests these run against RabbitMQ too
//! (`WARREN_REF_URI`), except where a test says Warren goes beyond it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::{assert_channel_error, next_delivery, uniq, within, Env};

fn args(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(*k), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn n(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

async fn declare(ch: &Channel, name: &str, a: FieldTable) {
    within(ch.queue_declare(name.into(), QueueDeclareOptions::default(), a))
        .await
        .expect("queue.declare");
}

/// A fanout exchange bound to a fresh queue: where dead letters land in these tests.
async fn dead_letter_target(ch: &Channel) -> (String, String) {
    let (x, q) = (uniq("dlx"), uniq("dlq"));
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare(ch, &q, FieldTable::default()).await;
    support::bind(ch, &q, &x, "").await;
    (x, q)
}

async fn publish(ch: &Channel, exchange: &str, key: &str, body: &str, props: BasicProperties) {
    within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    ))
    .await
    .unwrap();
}

async fn get(ch: &Channel, q: &str) -> Option<lapin::message::BasicGetMessage> {
    within(ch.basic_get(q.into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap()
}

async fn count(ch: &Channel, q: &str) -> u32 {
    within(support::declare_passive(ch, q))
        .await
        .unwrap()
        .message_count()
}

/// Polls `q` until a message arrives (dead-lettering and expiry happen in the background).
async fn wait_get(ch: &Channel, q: &str) -> lapin::message::BasicGetMessage {
    for _ in 0..100 {
        if let Some(m) = get(ch, q).await {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing arrived in {q}");
}

fn headers(m: &lapin::message::BasicGetMessage) -> FieldTable {
    m.delivery
        .properties
        .headers()
        .clone()
        .expect("the message has headers")
}

fn header<'a>(t: &'a FieldTable, k: &str) -> &'a AMQPValue {
    t.inner()
        .get(k)
        .unwrap_or_else(|| panic!("no header {k} in {t:?}"))
}

fn text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        other => panic!("not a string: {other:?}"),
    }
}

fn deaths(t: &FieldTable) -> Vec<FieldTable> {
    match header(t, "x-death") {
        AMQPValue::FieldArray(a) => a
            .as_slice()
            .iter()
            .map(|e| match e {
                AMQPValue::FieldTable(t) => t.clone(),
                other => panic!("x-death entry is not a table: {other:?}"),
            })
            .collect(),
        other => panic!("x-death is not an array: {other:?}"),
    }
}

#[tokio::test]
async fn a_rejected_message_is_dead_lettered_with_its_x_death_history() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let work = uniq("work");
    declare(&ch, &work, args(&[("x-dead-letter-exchange", s(&dlx))])).await;
    publish(&ch, "", &work, "poison", BasicProperties::default()).await;
    let m = within(ch.basic_get(work.as_str().into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(dead.delivery.data, b"poison");
    assert_eq!(dead.delivery.exchange.as_str(), dlx);
    assert_eq!(
        dead.delivery.routing_key.as_str(),
        work,
        "the original key is kept"
    );
    let h = headers(&dead);
    let d = deaths(&h);
    assert_eq!(d.len(), 1);
    assert_eq!(text(header(&d[0], "queue")), work);
    assert_eq!(text(header(&d[0], "reason")), "rejected");
    assert_eq!(header(&d[0], "count"), &AMQPValue::LongLongInt(1));
    assert_eq!(text(header(&d[0], "exchange")), "");
    assert!(matches!(header(&d[0], "time"), AMQPValue::Timestamp(_)));
    match header(&d[0], "routing-keys") {
        AMQPValue::FieldArray(a) => assert_eq!(a.as_slice(), &[s(&work)]),
        other => panic!("routing-keys: {other:?}"),
    }
    assert_eq!(text(header(&h, "x-first-death-queue")), work);
    assert_eq!(text(header(&h, "x-first-death-reason")), "rejected");
    assert_eq!(text(header(&h, "x-first-death-exchange")), "");
}

/// work → reject → DLX → retry queue (TTL) → back to work, three times: the x-death
/// entries count each (queue, reason) in place, newest first.
#[tokio::test]
async fn the_retry_pipeline_counts_each_death_in_place() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (work, retry) = (uniq("work"), uniq("retry"));
    declare(
        &ch,
        &work,
        args(&[
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&retry)),
        ]),
    )
    .await;
    declare(
        &ch,
        &retry,
        args(&[
            ("x-message-ttl", n(30)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(&work)),
        ]),
    )
    .await;
    publish(&ch, "", &work, "job", BasicProperties::default()).await;
    for _ in 0..3 {
        let m = loop {
            if let Some(m) = within(ch.basic_get(work.as_str().into(), BasicGetOptions::default()))
                .await
                .unwrap()
            {
                break m;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        m.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    }
    let m = wait_get(&ch, &work).await;
    let h = headers(&m);
    let d = deaths(&h);
    assert_eq!(d.len(), 2, "{d:?}");
    // Newest first: the last death was the expiry in the retry queue.
    assert_eq!(text(header(&d[0], "queue")), retry);
    assert_eq!(text(header(&d[0], "reason")), "expired");
    assert_eq!(header(&d[0], "count"), &AMQPValue::LongLongInt(3));
    assert_eq!(text(header(&d[1], "queue")), work);
    assert_eq!(text(header(&d[1], "reason")), "rejected");
    assert_eq!(header(&d[1], "count"), &AMQPValue::LongLongInt(3));
    assert_eq!(text(header(&h, "x-first-death-reason")), "rejected");
}

#[tokio::test]
async fn expired_messages_leave_the_queue_and_are_dead_lettered_without_expiration() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let (by_queue, by_message) = (uniq("ttl-q"), uniq("ttl-m"));
    declare(
        &ch,
        &by_queue,
        args(&[
            ("x-message-ttl", n(50)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    declare(
        &ch,
        &by_message,
        args(&[("x-dead-letter-exchange", s(&dlx))]),
    )
    .await;
    for i in 0..3 {
        publish(
            &ch,
            "",
            &by_queue,
            &format!("q{i}"),
            BasicProperties::default(),
        )
        .await;
    }
    let exp = BasicProperties::default().with_expiration("50".into());
    publish(&ch, "", &by_message, "m0", exp).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Gone without anyone asking for them (no consumer, no get).
    assert_eq!(count(&ch, &by_queue).await, 0);
    assert_eq!(count(&ch, &by_message).await, 0);
    let mut got = Vec::new();
    while let Some(m) = get(&ch, &dlq).await {
        let h = headers(&m);
        let d = deaths(&h);
        assert_eq!(text(header(&d[0], "reason")), "expired");
        let body = String::from_utf8_lossy(&m.delivery.data).into_owned();
        if body == "m0" {
            assert_eq!(m.delivery.properties.expiration(), &None);
            assert_eq!(text(header(&d[0], "original-expiration")), "50");
        }
        got.push(body);
    }
    got.sort();
    assert_eq!(got, ["m0", "q0", "q1", "q2"]);
}

#[tokio::test]
async fn an_invalid_expiration_is_refused_with_406() {
    let env = Env::start().await;
    let (c, ch) = env.open().await;
    let mut events = c.events_listener();
    let q = uniq("q");
    declare(&ch, &q, FieldTable::default()).await;
    let _ = ch
        .basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_expiration("soon".into()),
        )
        .await;
    // The close comes on the connection's events (a method sent after it would race it).
    let e = support::next_error(&mut events).await;
    support::assert_soft(&e, 406);
}

#[tokio::test]
async fn max_length_drops_the_head_into_the_dead_letter_exchange() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = uniq("bounded");
    declare(
        &ch,
        &q,
        args(&[("x-max-length", n(3)), ("x-dead-letter-exchange", s(&dlx))]),
    )
    .await;
    for i in 0..5 {
        publish(&ch, "", &q, &format!("m{i}"), BasicProperties::default()).await;
    }
    support::sync(&ch).await;
    assert_eq!(support::drain(&ch, &q).await, ["m2", "m3", "m4"]);
    let first = wait_get(&ch, &dlq).await;
    assert_eq!(first.delivery.data, b"m0");
    assert_eq!(
        text(header(&deaths(&headers(&first))[0], "reason")),
        "maxlen"
    );
    assert_eq!(wait_get(&ch, &dlq).await.delivery.data, b"m1");
}

#[tokio::test]
async fn max_length_bytes_counts_body_bytes() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("bytes");
    declare(&ch, &q, args(&[("x-max-length-bytes", n(10))])).await;
    for body in ["aaaa", "bbbb", "cccc", "dddd"] {
        publish(&ch, "", &q, body, BasicProperties::default()).await;
    }
    support::sync(&ch).await;
    assert_eq!(support::drain(&ch, &q).await, ["cccc", "dddd"]);
}

#[tokio::test]
async fn reject_publish_nacks_and_reject_publish_dlx_also_dead_letters() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let (dlx, dlq) = dead_letter_target(&ch).await;
    for (mode, dead_lettered) in [("reject-publish", false), ("reject-publish-dlx", true)] {
        let q = uniq(mode);
        declare(
            &ch,
            &q,
            args(&[
                ("x-max-length", n(2)),
                ("x-overflow", s(mode)),
                ("x-dead-letter-exchange", s(&dlx)),
            ]),
        )
        .await;
        let mut outcomes = Vec::new();
        for i in 0..3 {
            let c = ch
                .basic_publish(
                    "".into(),
                    q.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("{mode}-{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .unwrap();
            outcomes.push(within(c).await.unwrap().is_ack());
        }
        assert_eq!(outcomes, [true, true, false], "{mode}");
        assert_eq!(count(&ch, &q).await, 2);
        if dead_lettered {
            let m = wait_get(&ch, &dlq).await;
            assert_eq!(m.delivery.data, format!("{mode}-2").as_bytes());
            assert_eq!(text(header(&deaths(&headers(&m))[0], "reason")), "maxlen");
        }
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        get(&ch, &dlq).await.is_none(),
        "reject-publish must not dead-letter"
    );
}

#[tokio::test]
async fn a_priority_queue_delivers_highest_priority_first_then_fifo() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("prio");
    declare(&ch, &q, args(&[("x-max-priority", n(5))])).await;
    let sent: [(&str, Option<u8>); 7] = [
        ("low-a", Some(1)),
        ("none", None),
        ("high-a", Some(5)),
        ("low-b", Some(1)),
        ("over", Some(9)), // above the maximum: treated as 5
        ("high-b", Some(5)),
        ("mid", Some(3)),
    ];
    for (body, p) in sent {
        let props = match p {
            Some(p) => BasicProperties::default().with_priority(p),
            None => BasicProperties::default(),
        };
        publish(&ch, "", &q, body, props).await;
    }
    support::sync(&ch).await;
    assert_eq!(
        support::drain(&ch, &q).await,
        ["high-a", "over", "high-b", "mid", "low-a", "low-b", "none"]
    );
}

#[tokio::test]
async fn bad_queue_arguments_are_406() {
    let env = Env::start().await;
    for (k, v) in [
        ("x-max-priority", n(300)),
        ("x-message-ttl", n(-1)),
        ("x-overflow", s("explode")),
    ] {
        let (_c, ch) = env.open().await;
        assert_channel_error(
            ch.queue_declare(
                uniq("bad").as_str().into(),
                QueueDeclareOptions::default(),
                args(&[(k, v)]),
            )
            .await,
            406,
        );
    }
    let (_c, ch) = env.open().await;
    declare(
        &ch,
        &uniq("classic"),
        args(&[("x-queue-type", s("classic"))]),
    )
    .await;
}

/// Warren has classic queues only: a quorum or stream queue is refused (RabbitMQ creates
/// one).
#[tokio::test]
async fn quorum_and_stream_queues_are_refused_with_406() {
    let env = Env::start().await;
    if env.is_ref() {
        return;
    }
    for t in ["quorum", "stream"] {
        let (_c, ch) = env.open().await;
        assert_channel_error(
            ch.queue_declare(
                uniq(t).as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args(&[("x-queue-type", s(t))]),
            )
            .await,
            406,
        );
    }
}

#[tokio::test]
async fn unroutable_messages_go_to_the_alternate_exchange() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (ae, caught) = dead_letter_target(&ch).await;
    let main = uniq("main");
    ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        args(&[("alternate-exchange", s(&ae))]),
    )
    .await
    .unwrap();
    publish(&ch, &main, "nobody", "lost?", BasicProperties::default()).await;
    let m = wait_get(&ch, &caught).await;
    assert_eq!(m.delivery.data, b"lost?");
    assert_eq!(m.delivery.exchange.as_str(), main);
}

#[tokio::test]
async fn a_single_active_consumer_gets_everything_until_it_leaves() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("sac");
    declare(
        &ch,
        &q,
        args(&[("x-single-active-consumer", AMQPValue::Boolean(true))]),
    )
    .await;
    let mut first = support::consume(&ch, &q, "first", true).await;
    let ch2 = env.connect().await.create_channel().await.unwrap();
    let mut second = support::consume(&ch2, &q, "second", true).await;
    for i in 0..4 {
        publish(&ch, "", &q, &format!("m{i}"), BasicProperties::default()).await;
    }
    for i in 0..4 {
        assert_eq!(
            next_delivery(&mut first).await.data,
            format!("m{i}").as_bytes()
        );
    }
    support::assert_no_delivery(&mut second, 100).await;
    ch.basic_cancel("first".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    publish(&ch, "", &q, "after", BasicProperties::default()).await;
    assert_eq!(next_delivery(&mut second).await.data, b"after");
}

/// `x-delivery-limit` on a classic queue (RabbitMQ offers it on quorum queues only; LavinMQ
/// and Warren on all): redeliveries carry `x-delivery-count`, and past the limit the message
/// is dead-lettered with reason `delivery_limit`.
#[tokio::test]
async fn past_its_delivery_limit_a_message_is_dead_lettered() {
    let env = Env::start().await;
    if env.is_ref() {
        return;
    }
    let (_c, ch) = env.open().await;
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let q = uniq("limited");
    declare(
        &ch,
        &q,
        args(&[
            ("x-delivery-limit", n(2)),
            ("x-dead-letter-exchange", s(&dlx)),
        ]),
    )
    .await;
    publish(&ch, "", &q, "flaky", BasicProperties::default()).await;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let m = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
            .await
            .unwrap()
            .expect("redelivered");
        counts.push(
            m.delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("x-delivery-count").cloned()),
        );
        m.delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    assert_eq!(counts, [None, Some(n(1)), Some(n(2))]);
    let dead = wait_get(&ch, &dlq).await;
    assert_eq!(
        text(header(&deaths(&headers(&dead))[0], "reason")),
        "delivery_limit"
    );
    assert_eq!(count(&ch, &q).await, 0);
}

#[tokio::test]
async fn an_unused_queue_expires() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("expiring");
    declare(&ch, &q, args(&[("x-expires", n(150))])).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_channel_error(support::declare_passive(&ch, &q).await, 404);
}

/// Two full queues dead-lettering into each other: messages move until their history says
/// they would go round again, then are dropped; the broker stays responsive.
#[tokio::test]
async fn dead_letter_cycles_end() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let (a, b) = (uniq("ring-a"), uniq("ring-b"));
    let ring = |other: &str| {
        args(&[
            ("x-max-length", n(1)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s(other)),
        ])
    };
    declare(&ch, &a, ring(&b)).await;
    declare(&ch, &b, ring(&a)).await;
    for i in 0..50 {
        publish(&ch, "", &a, &format!("m{i}"), BasicProperties::default()).await;
    }
    support::sync(&ch).await;
    assert!(count(&ch, &a).await <= 1);
    assert!(count(&ch, &b).await <= 1);
}

/// A priority queue and a TTL queue keep their behaviour across a restart (durable queue,
/// persistent messages).
#[tokio::test]
async fn priorities_and_expiry_times_survive_a_restart() {
    let b = support::TestBroker::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("prio".into(), durable, args(&[("x-max-priority", n(9))]))
        .await
        .unwrap();
    ch.queue_declare("ttl".into(), durable, args(&[("x-message-ttl", n(400))]))
        .await
        .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (body, p) in [("p1", 1), ("p9", 9), ("p5", 5), ("p9b", 9)] {
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_priority(p);
        let c = ch
            .basic_publish(
                "".into(),
                "prio".into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await
            .unwrap();
        assert!(within(c).await.unwrap().is_ack());
    }
    let c = ch
        .basic_publish(
            "".into(),
            "ttl".into(),
            BasicPublishOptions::default(),
            b"short-lived",
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap();
    assert!(within(c).await.unwrap().is_ack());
    drop(conn);
    let b = b.restart().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    assert_eq!(support::drain(&ch, "prio").await, ["p9", "p9b", "p5", "p1"]);
    assert_eq!(count(&ch, "ttl").await, 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        count(&ch, "ttl").await,
        0,
        "the expiry time survived the restart"
    );
}

/// Consumer priorities (`x-priority` on basic.consume): the higher one gets messages while
/// it has credit, the lower one only the overflow.
#[tokio::test]
async fn a_higher_priority_consumer_is_served_first() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = uniq("cprio");
    declare(&ch, &q, FieldTable::default()).await;
    let high_ch = env.connect().await.create_channel().await.unwrap();
    high_ch
        .basic_qos(2, BasicQosOptions::default())
        .await
        .unwrap();
    let low_ch = env.connect().await.create_channel().await.unwrap();
    let mut low = support::consume(&low_ch, &q, "low", false).await;
    let mut high = high_ch
        .basic_consume(
            q.as_str().into(),
            "high".into(),
            BasicConsumeOptions::default(),
            args(&[("x-priority", n(10))]),
        )
        .await
        .unwrap();
    for i in 0..5 {
        publish(&ch, "", &q, &format!("m{i}"), BasicProperties::default()).await;
    }
    let h: Vec<_> = [
        next_delivery(&mut high).await,
        next_delivery(&mut high).await,
    ]
    .iter()
    .map(|d| String::from_utf8_lossy(&d.data).into_owned())
    .collect();
    assert_eq!(h, ["m0", "m1"]);
    for i in 2..5 {
        assert_eq!(
            next_delivery(&mut low).await.data,
            format!("m{i}").as_bytes()
        );
    }
    support::assert_no_delivery(&mut high, 100).await;
}

/// Direct reply-to: the RPC client consumes `amq.rabbitmq.reply-to` (no-ack), its request's
/// `reply_to` is rewritten to a private name, and the reply goes straight to it.
#[tokio::test]
async fn direct_reply_to_carries_an_rpc_reply_without_a_queue() {
    let env = Env::start().await;
    let (_c, client) = env.open().await;
    let requests = uniq("rpc");
    declare(&client, &requests, FieldTable::default()).await;
    let mut replies = support::consume(&client, "amq.rabbitmq.reply-to", "replies", true).await;
    publish(
        &client,
        "",
        &requests,
        "ping",
        BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
    )
    .await;
    let (_s, server) = env.open().await;
    let req = wait_get(&server, &requests).await;
    let reply_to = req
        .delivery
        .properties
        .reply_to()
        .clone()
        .expect("reply_to")
        .to_string();
    assert!(
        reply_to.starts_with("amq.rabbitmq.reply-to.") && reply_to.len() > 22,
        "{reply_to}"
    );
    publish(&server, "", &reply_to, "pong", BasicProperties::default()).await;
    let d = next_delivery(&mut replies).await;
    assert_eq!(d.data, b"pong");
    assert_eq!(d.routing_key.as_str(), reply_to);

    // Without a reply consumer on the channel, naming the pseudo-queue is 406 (the close
    // comes on the connection's events: a method sent after it would race it).
    let (o, other) = env.open().await;
    let mut events = o.events_listener();
    let _ = other
        .basic_publish(
            "".into(),
            requests.as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
        )
        .await;
    let e = support::next_error(&mut events).await;
    support::assert_soft(&e, 406);
    // A reply consumer must be no-ack.
    let (_a, acking) = env.open().await;
    assert_channel_error(
        acking
            .basic_consume(
                "amq.rabbitmq.reply-to".into(),
                "acking".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await,
        406,
    );
}

/// Sender-selected distribution: `CC` and `BCC` header keys route too; `BCC` is removed
/// before delivery; a dead-lettered message records its CC keys in `routing-keys`.
#[tokio::test]
async fn cc_and_bcc_headers_route_and_bcc_is_hidden() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let x = uniq("cc");
    ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let (dlx, dlq) = dead_letter_target(&ch).await;
    let mut queues = Vec::new();
    for key in ["to", "cc", "bcc"] {
        let q = uniq(key);
        declare(&ch, &q, args(&[("x-dead-letter-exchange", s(&dlx))])).await;
        support::bind(&ch, &q, &x, key).await;
        queues.push(q);
    }
    let list = |k: &str| AMQPValue::FieldArray(lapin::types::FieldArray::from(vec![s(k)]));
    let h = args(&[("CC", list("cc")), ("BCC", list("bcc"))]);
    publish(
        &ch,
        &x,
        "to",
        "memo",
        BasicProperties::default().with_headers(h),
    )
    .await;
    for q in &queues {
        let m = wait_get(&ch, q).await;
        assert_eq!(m.delivery.data, b"memo");
        let h = headers(&m);
        assert!(h.inner().contains_key("CC"), "{q}: CC stays");
        assert!(!h.inner().contains_key("BCC"), "{q}: BCC is removed");
    }
    // Dead-letter one copy: routing-keys lists the key and the CC key.
    publish(
        &ch,
        &x,
        "to",
        "again",
        BasicProperties::default().with_headers(args(&[("CC", list("cc"))])),
    )
    .await;
    let m = within(ch.basic_get(queues[0].as_str().into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let dead = wait_get(&ch, &dlq).await;
    match header(&deaths(&headers(&dead))[0], "routing-keys") {
        AMQPValue::FieldArray(a) => assert_eq!(a.as_slice(), &[s("to"), s("cc")]),
        other => panic!("routing-keys: {other:?}"),
    }
}

/// Queue arguments are part of a durable queue's definition: after a restart a rejection
/// still dead-letters and the length limit still holds.
#[tokio::test]
async fn dead_lettering_and_length_limits_survive_a_restart() {
    let b = support::TestBroker::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("dlq".into(), durable, FieldTable::default())
        .await
        .unwrap();
    ch.queue_declare(
        "work".into(),
        durable,
        args(&[
            ("x-max-length", n(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("dlq")),
        ]),
    )
    .await
    .unwrap();
    drop(conn);
    let b = b.restart().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    for i in 0..3 {
        publish(
            &ch,
            "",
            "work",
            &format!("w{i}"),
            BasicProperties::default(),
        )
        .await;
    }
    // w0 was pushed out by the limit; reject w1.
    let m = within(ch.basic_get("work".into(), BasicGetOptions::default()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.delivery.data, b"w1");
    m.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    let first = wait_get(&ch, "dlq").await;
    let second = wait_get(&ch, "dlq").await;
    let reasons: Vec<_> = [&first, &second]
        .iter()
        .map(|m| {
            (
                String::from_utf8_lossy(&m.delivery.data).into_owned(),
                text(header(&deaths(&headers(m))[0], "reason")),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        [
            ("w0".to_string(), "maxlen".to_string()),
            ("w1".to_string(), "rejected".to_string())
        ]
    );
}
