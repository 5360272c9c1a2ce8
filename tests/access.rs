//! Access control as RabbitMQ enforces it, with lapin against a real broker: every row of
//! RabbitMQ's access table allowed and refused (403 ACCESS_REFUSED, its text, checked
//! before existence), topic permissions, connection.open refused (530) without
//! permissions, limits, definitions exported by RabbitMQ 3.10.8 imported and logged in
//! with, and the model kept across a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use support::{code, is_hard, text, within, TestBroker};

/// `app` may configure names containing `C`, write those containing `W`, read those
/// containing `R` (an unanchored search, as RabbitMQ matches), on `/` only; `tWR` is a
/// topic exchange where `app` may publish and bind only keys starting `ok.`.
const DEFINITIONS: &str = r#"{
  "users": [
    {"name": "guest", "password_hash": "xSZrCF4EYYl8Qp0DzwMoZpWBfEgE2xkYc/0yn4p70QD4GqN0",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"], "limits": {}},
    {"name": "app", "password_hash": "c+NvRXPDBttATdwsM9PktAScPwRSs2gni2ufuRuUwBqhAgkO",
     "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": [], "limits": {}},
    {"name": "nopass", "password_hash": "", "hashing_algorithm": "rabbit_password_hashing_sha256",
     "tags": [], "limits": {}}
  ],
  "vhosts": [{"name": "/"}, {"name": "other"},
             {"name": "small", "limits": [["max-connections", 1], ["max-queues", 1]]}],
  "permissions": [
    {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "guest", "vhost": "other", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "guest", "vhost": "small", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "nopass", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
    {"user": "app", "vhost": "/", "configure": "C", "write": "W", "read": "R"}
  ],
  "topic_permissions": [
    {"user": "app", "vhost": "/", "exchange": "tWR", "write": "^ok\\.", "read": "^ok\\."}
  ],
  "exchanges": [
    {"name": "xW", "vhost": "/", "type": "fanout", "durable": true, "auto_delete": false, "arguments": {}},
    {"name": "xR", "vhost": "/", "type": "fanout", "durable": true, "auto_delete": false, "arguments": {}},
    {"name": "xWR", "vhost": "/", "type": "fanout", "durable": true, "auto_delete": false, "arguments": {}},
    {"name": "tWR", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false, "arguments": {}}
  ],
  "queues": [
    {"name": "qW", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}},
    {"name": "qR", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}},
    {"name": "qX", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}
  ],
  "bindings": []
}"#;

async fn broker_with(defs: &str) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("definitions.json");
    std::fs::write(&path, defs).unwrap();
    let b = TestBroker::start_with(|c| c.load_definitions = Some(path)).await;
    (b, dir)
}

async fn login(b: &TestBroker, user: &str, pass: &str, vhost: &str) -> lapin::Result<Connection> {
    let vhost = vhost.replace('/', "%2f");
    let uri = format!("amqp://{user}:{pass}@{}/{vhost}", b.addr);
    within(Connection::connect(&uri, ConnectionProperties::default())).await
}

fn args(pairs: &[(&str, &str)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(
            (*k).into(),
            AMQPValue::LongString(LongString::from(v.as_bytes())),
        );
    }
    t
}

/// One row of the table: `op` on a fresh channel of `conn` either works (`None`) or
/// closes the channel with 403 and the text given.
async fn row<F, Fut>(conn: &Connection, case: &str, refused: Option<&str>, op: F)
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<()>>,
{
    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(op(ch)).await;
    match (refused, r) {
        (None, Ok(())) => {}
        (None, Err(e)) => panic!("{case}: expected to be allowed, got {e:?}"),
        (Some(_), Ok(())) => panic!("{case}: expected 403, was allowed"),
        (Some(want), Err(e)) => {
            assert_eq!(code(&e), Some(403), "{case}: {e:?}");
            assert!(!is_hard(&e), "{case}: a channel error, got {e:?}");
            assert_eq!(text(&e), format!("ACCESS_REFUSED - {want}"), "{case}");
        }
    }
}

fn refused(kind: &str, name: &str) -> String {
    format!("access to {kind} '{name}' in vhost '/' refused for user 'app'")
}

async fn declare_q(ch: &Channel, name: &str, a: FieldTable) -> lapin::Result<()> {
    let o = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(name.into(), o, a).await.map(|_| ())
}

async fn declare_x(ch: &Channel, name: &str, a: FieldTable) -> lapin::Result<()> {
    let o = ExchangeDeclareOptions::default();
    ch.exchange_declare(name.into(), ExchangeKind::Fanout, o, a)
        .await
}

async fn publish_confirmed(ch: &Channel, exchange: &str, key: &str) -> lapin::Result<()> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let o = BasicPublishOptions::default();
    let p = BasicProperties::default();
    ch.basic_publish(exchange.into(), key.into(), o, b"m", p)
        .await?
        .await?;
    Ok(())
}

#[tokio::test]
async fn every_row_of_the_access_table_is_allowed_or_refused_as_in_rabbitmq() {
    let (b, _defs) = broker_with(DEFINITIONS).await;
    let app = login(&b, "app", "test12", "/").await.unwrap();
    let none = FieldTable::default;

    // queue.declare: configure on the queue; passive needs nothing.
    row(&app, "declare qC", None, |c| async move {
        declare_q(&c, "qC", none()).await
    })
    .await;
    row(
        &app,
        "declare qW",
        Some(&refused("queue", "qW")),
        |c| async move { declare_q(&c, "qW", none()).await },
    )
    .await;
    row(&app, "passive declare qX", None, |c| async move {
        let o = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        c.queue_declare("qX".into(), o, none()).await.map(|_| ())
    })
    .await;
    // With a dead-letter exchange: also read on the queue and write on the exchange.
    row(&app, "declare qCR dlx xW", None, |c| async move {
        declare_q(&c, "qCR", args(&[("x-dead-letter-exchange", "xW")])).await
    })
    .await;
    row(
        &app,
        "declare qC2 dlx xW",
        Some(&refused("queue", "qC2")),
        |c| async move { declare_q(&c, "qC2", args(&[("x-dead-letter-exchange", "xW")])).await },
    )
    .await;
    row(
        &app,
        "declare qCR2 dlx xR",
        Some(&refused("exchange", "xR")),
        |c| async move { declare_q(&c, "qCR2", args(&[("x-dead-letter-exchange", "xR")])).await },
    )
    .await;
    // exchange.declare: configure; with an alternate exchange, read on it and write on the AE.
    row(&app, "declare xC", None, |c| async move {
        declare_x(&c, "xC", none()).await
    })
    .await;
    row(
        &app,
        "declare xW2",
        Some(&refused("exchange", "xW2")),
        |c| async move { declare_x(&c, "xW2", none()).await },
    )
    .await;
    row(&app, "declare xCR ae xW", None, |c| async move {
        declare_x(&c, "xCR", args(&[("alternate-exchange", "xW")])).await
    })
    .await;
    row(
        &app,
        "declare xCR ae xR",
        Some(&refused("exchange", "xR")),
        |c| async move { declare_x(&c, "xCR", args(&[("alternate-exchange", "xR")])).await },
    )
    .await;
    // queue.bind / unbind: write on the queue, read on the exchange.
    row(&app, "bind qW to xR", None, |c| async move {
        c.queue_bind(
            "qW".into(),
            "xR".into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await
    })
    .await;
    row(
        &app,
        "bind qR to xR",
        Some(&refused("queue", "qR")),
        |c| async move {
            c.queue_bind(
                "qR".into(),
                "xR".into(),
                "".into(),
                QueueBindOptions::default(),
                none(),
            )
            .await
        },
    )
    .await;
    row(
        &app,
        "bind qW to xW",
        Some(&refused("exchange", "xW")),
        |c| async move {
            c.queue_bind(
                "qW".into(),
                "xW".into(),
                "".into(),
                QueueBindOptions::default(),
                none(),
            )
            .await
        },
    )
    .await;
    row(&app, "unbind qW from xR", None, |c| async move {
        c.queue_unbind("qW".into(), "xR".into(), "".into(), none())
            .await
    })
    .await;
    row(
        &app,
        "unbind qR from xR",
        Some(&refused("queue", "qR")),
        |c| async move {
            c.queue_unbind("qR".into(), "xR".into(), "".into(), none())
                .await
        },
    )
    .await;
    // exchange.bind / unbind: write on the destination, read on the source.
    row(&app, "bind xW to xR", None, |c| async move {
        c.exchange_bind(
            "xW".into(),
            "xR".into(),
            "".into(),
            ExchangeBindOptions::default(),
            none(),
        )
        .await
    })
    .await;
    row(
        &app,
        "bind xR to xR",
        Some(&refused("exchange", "xR")),
        |c| async move {
            c.exchange_bind(
                "xR".into(),
                "xWR".into(),
                "".into(),
                ExchangeBindOptions::default(),
                none(),
            )
            .await
        },
    )
    .await;
    row(&app, "unbind xW from xR", None, |c| async move {
        c.exchange_unbind(
            "xW".into(),
            "xR".into(),
            "".into(),
            Default::default(),
            none(),
        )
        .await
    })
    .await;
    row(
        &app,
        "unbind xW from xW",
        Some(&refused("exchange", "xW")),
        |c| async move {
            c.exchange_unbind(
                "xWR".into(),
                "xW".into(),
                "".into(),
                Default::default(),
                none(),
            )
            .await
        },
    )
    .await;
    // basic.publish: write on the exchange; the default exchange is amq.default.
    row(&app, "publish to xW", None, |c| async move {
        publish_confirmed(&c, "xW", "k").await
    })
    .await;
    row(
        &app,
        "publish to xR",
        Some(&refused("exchange", "xR")),
        |c| async move { publish_confirmed(&c, "xR", "k").await },
    )
    .await;
    row(
        &app,
        "publish to the default exchange",
        Some(&refused("exchange", "amq.default")),
        |c| async move { publish_confirmed(&c, "", "qW").await },
    )
    .await;
    // basic.get, basic.consume, queue.purge: read on the queue.
    row(&app, "get qR", None, |c| async move {
        c.basic_get("qR".into(), BasicGetOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    row(
        &app,
        "get qW",
        Some(&refused("queue", "qW")),
        |c| async move {
            c.basic_get("qW".into(), BasicGetOptions::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    row(&app, "consume qR", None, |c| async move {
        c.basic_consume(
            "qR".into(),
            "t".into(),
            BasicConsumeOptions::default(),
            none(),
        )
        .await
        .map(|_| ())
    })
    .await;
    row(
        &app,
        "consume qW",
        Some(&refused("queue", "qW")),
        |c| async move {
            c.basic_consume(
                "qW".into(),
                "t".into(),
                BasicConsumeOptions::default(),
                none(),
            )
            .await
            .map(|_| ())
        },
    )
    .await;
    row(&app, "purge qR", None, |c| async move {
        c.queue_purge("qR".into(), QueuePurgeOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    row(
        &app,
        "purge qW",
        Some(&refused("queue", "qW")),
        |c| async move {
            c.queue_purge("qW".into(), QueuePurgeOptions::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    // Deletes: configure.
    row(&app, "delete qC", None, |c| async move {
        c.queue_delete("qC".into(), QueueDeleteOptions::default())
            .await
            .map(|_| ())
    })
    .await;
    row(
        &app,
        "delete qW",
        Some(&refused("queue", "qW")),
        |c| async move {
            c.queue_delete("qW".into(), QueueDeleteOptions::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    row(&app, "delete xC", None, |c| async move {
        c.exchange_delete("xC".into(), ExchangeDeleteOptions::default())
            .await
    })
    .await;
    row(
        &app,
        "delete xW",
        Some(&refused("exchange", "xW")),
        |c| async move {
            c.exchange_delete("xW".into(), ExchangeDeleteOptions::default())
                .await
        },
    )
    .await;
    // 403 before 404: a missing queue the user may not read is refused, not "not found".
    row(
        &app,
        "get a missing qW2",
        Some(&refused("queue", "qMissingW")),
        |c| async move {
            c.basic_get("qMissingW".into(), BasicGetOptions::default())
                .await
                .map(|_| ())
        },
    )
    .await;
    let ch = within(app.create_channel()).await.unwrap();
    let e = within(ch.basic_get("qMissingR".into(), BasicGetOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(404), "{e:?}");
}

#[tokio::test]
async fn topic_permissions_check_publish_and_bind_keys_on_a_topic_exchange() {
    let (b, _defs) = broker_with(DEFINITIONS).await;
    let app = login(&b, "app", "test12", "/").await.unwrap();
    let none = FieldTable::default;
    let topic = |k: &str| {
        format!("access to topic '{k}' in exchange 'tWR' in vhost '/' refused for user 'app'")
    };
    row(&app, "publish ok.1", None, |c| async move {
        publish_confirmed(&c, "tWR", "ok.1").await
    })
    .await;
    row(
        &app,
        "publish bad.1",
        Some(&topic("bad.1")),
        |c| async move { publish_confirmed(&c, "tWR", "bad.1").await },
    )
    .await;
    row(&app, "bind ok.#", None, |c| async move {
        c.queue_bind(
            "qW".into(),
            "tWR".into(),
            "ok.#".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await
    })
    .await;
    row(&app, "bind bad.#", Some(&topic("bad.#")), |c| async move {
        c.queue_bind(
            "qW".into(),
            "tWR".into(),
            "bad.#".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await
    })
    .await;
    // A publish that was allowed once is still checked per key (the cached exchange does
    // not skip the topic check).
    let ch = within(app.create_channel()).await.unwrap();
    publish_confirmed(&ch, "tWR", "ok.2").await.unwrap();
    let o = BasicPublishOptions::default();
    let r = async {
        ch.basic_publish(
            "tWR".into(),
            "bad.2".into(),
            o,
            b"m",
            BasicProperties::default(),
        )
        .await?
        .await?;
        Ok::<(), lapin::Error>(())
    };
    let e = within(r).await.unwrap_err();
    assert_eq!(code(&e), Some(403), "{e:?}");
    assert_eq!(text(&e), format!("ACCESS_REFUSED - {}", topic("bad.2")));
}

#[tokio::test]
async fn connection_open_is_530_without_permissions_or_for_an_unknown_vhost() {
    let (b, _defs) = broker_with(DEFINITIONS).await;
    let e = login(&b, "app", "test12", "other").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    assert_eq!(
        text(&e),
        "NOT_ALLOWED - access to vhost 'other' refused for user 'app'"
    );
    let e = login(&b, "app", "test12", "nowhere").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    // A user with no password cannot log in with PLAIN, not even with an empty one.
    for pass in ["", "x"] {
        let e = login(&b, "nopass", pass, "/").await.unwrap_err();
        assert_eq!(code(&e), Some(403), "nopass/{pass:?}: {e:?}");
    }
}

#[tokio::test]
async fn vhost_and_user_limits_refuse_as_rabbitmq_does() {
    let defs = DEFINITIONS.replace(
        r#""limits": {}},
    {"name": "nopass""#,
        r#""limits": {"max-channels": 2, "max-connections": 2}},
    {"name": "nopass""#,
    );
    assert_ne!(defs, DEFINITIONS);
    let (b, _defs) = broker_with(&defs).await;
    // vhost max-connections 1.
    let first = login(&b, "guest", "guest", "small").await.unwrap();
    let e = login(&b, "guest", "guest", "small").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    assert_eq!(
        text(&e),
        "NOT_ALLOWED - access to vhost 'small' refused for user 'guest': connection limit (1) is reached"
    );
    // vhost max-queues 1: a second queue is 406, redeclaring the first is fine.
    let ch = within(first.create_channel()).await.unwrap();
    declare_q(&ch, "one", FieldTable::default()).await.unwrap();
    declare_q(&ch, "one", FieldTable::default()).await.unwrap();
    let e = declare_q(&ch, "two", FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(406), "{e:?}");
    assert_eq!(
        text(&e),
        "PRECONDITION_FAILED - cannot declare queue 'two': queue limit in vhost 'small' (1) is reached"
    );
    // guest has no user limits; app (this file's copy) has max-connections 2, max-channels 2
    // over all its connections.
    let a1 = login(&b, "app", "test12", "/").await.unwrap();
    let a2 = login(&b, "app", "test12", "/").await.unwrap();
    let e = login(&b, "app", "test12", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    assert_eq!(
        text(&e),
        "NOT_ALLOWED - connection refused for user 'app': user connection limit (2) is reached"
    );
    let _c1 = within(a1.create_channel()).await.unwrap();
    let _c2 = within(a2.create_channel()).await.unwrap();
    // The end of a batch reports a connection's channels; give a2's a moment to land.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let e = within(a1.create_channel()).await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    assert!(is_hard(&e));
    assert_eq!(
        text(&e),
        "NOT_ALLOWED - number of channels opened for user 'app' has reached the maximum allowed user limit of (2)"
    );
    // A closed connection frees its count.
    drop(a2);
    let e = login(&b, "app", "test12", "/").await;
    let mut tries = 0;
    let mut e = e;
    while e.is_err() && tries < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        e = login(&b, "app", "test12", "/").await;
        tries += 1;
    }
    e.unwrap();
}

#[tokio::test]
async fn definitions_exported_by_rabbitmq_3_10_8_import_and_their_users_log_in() {
    let defs = include_str!("fixtures/rabbitmq-3.10.8-definitions.json");
    let (b, _defs) = broker_with(defs).await;
    // alice/test12 was made by RabbitMQ 3.10.8 (rabbitmqctl add_user), with permissions
    // on prod only: configure ^a, write ^b, read ^c, and max-channels 3.
    let alice = login(&b, "alice", "test12", "prod").await.unwrap();
    let ch = within(alice.create_channel()).await.unwrap();
    let e = declare_q(&ch, "zz", FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(403));
    let e = login(&b, "alice", "wrong", "prod").await.unwrap_err();
    assert_eq!(code(&e), Some(403), "{e:?}");
    let e = login(&b, "alice", "test12", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    // guest/guest (RabbitMQ's own hash) on prod: the queues, exchanges and bindings are there.
    let guest = login(&b, "guest", "guest", "prod").await.unwrap();
    let ch = within(guest.create_channel()).await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    for q in ["q1", "q2"] {
        within(ch.queue_declare(q.into(), passive, FieldTable::default()))
            .await
            .unwrap_or_else(|e| panic!("queue {q}: {e:?}"));
    }
    // ex2 (fanout) -> ex1 (topic) -> q1 on a.#; amq.direct -> q2 on q2.
    publish_confirmed(&ch, "ex2", "a.b").await.unwrap();
    publish_confirmed(&ch, "amq.direct", "q2").await.unwrap();
    for q in ["q1", "q2"] {
        let got = within(ch.basic_get(q.into(), BasicGetOptions { no_ack: true }))
            .await
            .unwrap();
        assert!(got.is_some(), "{q} got the routed message");
    }
    // q1 kept its arguments (x-max-length 10): redeclaring without them is 406.
    let e = declare_q(&ch, "q1", FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(406), "{e:?}");
    // prod's limits came from the vhost-limits parameter: max-queues 5.
    let ch = within(guest.create_channel()).await.unwrap();
    for i in 0..3 {
        declare_q(&ch, &format!("more{i}"), FieldTable::default())
            .await
            .unwrap();
    }
    let e = declare_q(&ch, "more3", FieldTable::default())
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(406), "{e:?}");
}

#[tokio::test]
async fn users_and_permissions_survive_a_restart_without_the_definitions_file() {
    let (b, defs) = broker_with(DEFINITIONS).await;
    drop(login(&b, "app", "test12", "/").await.unwrap());
    std::fs::remove_file(defs.path().join("definitions.json")).unwrap();
    let TestBroker {
        handle, data_dir, ..
    } = b;
    handle.shutdown().await;
    let b = TestBroker::start_in_dir(data_dir, |_| {}).await;
    let app = login(&b, "app", "test12", "/").await.unwrap();
    row(
        &app,
        "declare qW after restart",
        Some(&refused("queue", "qW")),
        |c| async move { declare_q(&c, "qW", FieldTable::default()).await },
    )
    .await;
    // No default user was made: the store had users.
    let e = login(&b, "guest", "nope", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(403));
    login(&b, "guest", "guest", "/").await.unwrap();
}

#[tokio::test]
async fn a_first_start_makes_guest_loopback_only_administrator() {
    let b = TestBroker::start().await;
    let guest = login(&b, "guest", "guest", "/").await.unwrap();
    let ch = within(guest.create_channel()).await.unwrap();
    declare_q(&ch, "anything", FieldTable::default())
        .await
        .unwrap();
}
