//! Exchanges through lapin: declare and delete with RabbitMQ's checks and reply codes,
//! exchange-to-exchange bindings, auto-delete and internal exchanges, and routing by the
//! direct, fanout, topic and headers types.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::{
    assert_channel_error, code, drain, is_hard, next_error, publish, publish_with, sync, uniq,
    within, Env,
};

fn passive() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    }
}

async fn declare(ch: &Channel, name: &str, kind: ExchangeKind, opts: ExchangeDeclareOptions) {
    within(ch.exchange_declare(name.into(), kind, opts, FieldTable::default()))
        .await
        .unwrap_or_else(|e| panic!("declare exchange {name}: {e:?}"));
}

/// A fresh server-named queue (exclusive to this connection) bound to `ex` with `key`.
async fn bound_queue(ch: &Channel, ex: &str, key: &str, args: FieldTable) -> String {
    let name = within(support::server_named_queue(ch)).await;
    within(support::bind_with(ch, &name, ex, key, args)).await;
    name
}

/// exchange.bind: `destination` gets what `source` routes with `key`.
async fn bind_exchange(ch: &Channel, destination: &str, source: &str, key: &str) {
    within(ch.exchange_bind(
        destination.into(),
        source.into(),
        key.into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap_or_else(|e| panic!("bind {destination} to {source} with {key:?}: {e:?}"));
}

/// exchange.delete with if-unused.
async fn delete_if_unused(ch: &Channel, name: &str) -> lapin::Result<()> {
    within(ch.exchange_delete(
        name.into(),
        ExchangeDeleteOptions {
            if_unused: true,
            ..Default::default()
        },
    ))
    .await
}

/// Routing case `i`: a fresh queue bound to `ex` (binding key and arguments), one message
/// published to `ex` with `key` and `props`. True if it arrived exactly once when `routed`,
/// or not at all when not. The queue is deleted after.
async fn routes_as(
    ch: &Channel,
    ex: &str,
    (binding, args): (&str, FieldTable),
    key: &str,
    props: BasicProperties,
    routed: bool,
    i: usize,
) -> bool {
    let q = bound_queue(ch, ex, binding, args).await;
    let body = format!("case {i}");
    publish_with(ch, ex, key, body.as_bytes(), props).await;
    let got = drain(ch, &q).await;
    let want: Vec<String> = if routed { vec![body] } else { vec![] };
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    got == want
}

async fn exists(ch: &Channel, name: &str) -> bool {
    match within(ch.exchange_declare(
        name.into(),
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    ))
    .await
    {
        Ok(()) => true,
        Err(e) if code(&e) == Some(404) => false,
        Err(e) => panic!("passive declare of {name}: {e:?}"),
    }
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert((*k).into(), v.clone());
    }
    t
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v.as_bytes()))
}

#[tokio::test]
async fn passive_declare_of_missing_exchange_is_404() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let r = within(ch.exchange_declare(
        uniq("missing").into(),
        ExchangeKind::Direct,
        passive(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 404);
}

#[tokio::test]
async fn passive_declare_of_existing_exchange_ignores_its_type_and_flags() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let name = uniq("ex");
    declare(&ch, &name, ExchangeKind::Topic, Default::default()).await;
    // Passive: type and flags are not compared.
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            passive: true,
            durable: true,
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .unwrap();
    for builtin in [
        "amq.direct",
        "amq.fanout",
        "amq.topic",
        "amq.headers",
        "amq.match",
    ] {
        assert!(exists(&ch, builtin).await, "{builtin}");
    }
}

#[tokio::test]
async fn redeclare_with_same_properties_is_ok() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let name = uniq("ex");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    for _ in 0..2 {
        declare(&ch, &name, ExchangeKind::Headers, opts).await;
    }
}

#[tokio::test]
async fn redeclare_with_different_type_flags_or_alternate_exchange_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let name = uniq("ex");
    let ae = table(&[("alternate-exchange", s("amq.fanout"))]);
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        Default::default(),
        ae.clone(),
    ))
    .await
    .unwrap();
    let cases: Vec<(&str, ExchangeKind, ExchangeDeclareOptions, FieldTable)> = vec![
        ("type", ExchangeKind::Fanout, Default::default(), ae.clone()),
        (
            "durable",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            ae.clone(),
        ),
        (
            "auto_delete",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            ae.clone(),
        ),
        (
            "internal",
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                internal: true,
                ..Default::default()
            },
            ae.clone(),
        ),
        (
            "alternate-exchange",
            ExchangeKind::Direct,
            Default::default(),
            table(&[("alternate-exchange", s("amq.topic"))]),
        ),
        (
            "alternate-exchange missing",
            ExchangeKind::Direct,
            Default::default(),
            FieldTable::default(),
        ),
    ];
    for (what, kind, opts, args) in cases {
        let ch = within(conn.create_channel()).await.unwrap();
        let r = within(ch.exchange_declare(name.as_str().into(), kind, opts, args)).await;
        match r {
            Err(e) if code(&e) == Some(406) && !is_hard(&e) => {}
            other => panic!("{what}: expected a 406 channel close, got {other:?}"),
        }
    }
    // The original is untouched.
    let ch = within(conn.create_channel()).await.unwrap();
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        Default::default(),
        ae,
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn redeclare_with_other_arguments_is_ok() {
    // RabbitMQ compares only `alternate-exchange` among an exchange's arguments.
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let name = uniq("ex");
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        Default::default(),
        table(&[("x-custom", s("one"))]),
    ))
    .await
    .unwrap();
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        Default::default(),
        table(&[("x-custom", s("two")), ("other", AMQPValue::LongInt(1))]),
    ))
    .await
    .unwrap();
    within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_exchange_type_closes_the_channel_with_406() {
    let env = Env::start().await;
    if env.is_ref() {
        // RabbitMQ 3.10 (the local reference) closes the connection with 503 instead;
        // Warren follows newer RabbitMQ (see ARCHITECTURE.md).
        return;
    }
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let name = uniq("ex");
    let r = within(ch.exchange_declare(
        name.as_str().into(),
        ExchangeKind::Custom("x-no-such-type".into()),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 406);
    // Only the channel closed, and nothing was declared.
    let ch2 = within(conn.create_channel()).await.unwrap();
    assert!(!exists(&ch2, &name).await);
}

#[tokio::test]
async fn declaring_a_new_amq_exchange_or_the_default_exchange_is_403() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, opts) in [
        ("amq.foo", Default::default()),
        ("amq.foo", durable),
        ("", durable),
        ("", passive()),
    ] {
        let ch = within(conn.create_channel()).await.unwrap();
        let r = within(ch.exchange_declare(
            name.into(),
            ExchangeKind::Direct,
            opts,
            FieldTable::default(),
        ))
        .await;
        match r {
            Err(e) if code(&e) == Some(403) && !is_hard(&e) => {}
            other => {
                panic!("declare '{name}' {opts:?}: expected a 403 channel close, got {other:?}")
            }
        }
    }
    let ch = within(conn.create_channel()).await.unwrap();
    assert!(!exists(&ch, "amq.foo").await);
}

#[tokio::test]
async fn redeclaring_a_builtin_exchange_only_checks_equivalence() {
    // As RabbitMQ: the `amq.` prefix only stops the creation of a new exchange.
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        within(ch.exchange_declare(name.into(), kind, durable, FieldTable::default()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    }
    for (name, kind, opts) in [
        ("amq.direct", ExchangeKind::Direct, Default::default()),
        ("amq.direct", ExchangeKind::Fanout, durable),
    ] {
        let ch = within(conn.create_channel()).await.unwrap();
        let r = within(ch.exchange_declare(name.into(), kind.clone(), opts, FieldTable::default()))
            .await;
        match r {
            Err(e) if code(&e) == Some(406) && !is_hard(&e) => {}
            other => panic!(
                "declare {name} {kind:?} {opts:?}: expected a 406 channel close, got {other:?}"
            ),
        }
    }
}

#[tokio::test]
async fn delete_if_unused_with_bindings_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let ex = uniq("ex");
    declare(&ch, &ex, ExchangeKind::Direct, Default::default()).await;
    let q = bound_queue(&ch, &ex, "k", FieldTable::default()).await;
    let r = delete_if_unused(&ch, &ex).await;
    assert_channel_error(r, 406);

    // Still there, binding intact; once unbound, if-unused delete succeeds.
    let ch = within(conn.create_channel()).await.unwrap();
    assert!(exists(&ch, &ex).await);
    within(support::unbind(&ch, &q, &ex, "k")).await;
    delete_if_unused(&ch, &ex).await.unwrap();
    assert!(!exists(&ch, &ex).await);
}

#[tokio::test]
async fn delete_if_unused_ignores_bindings_where_it_is_the_destination() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("ex");
    declare(&ch, &ex, ExchangeKind::Fanout, Default::default()).await;
    bind_exchange(&ch, &ex, "amq.fanout", "").await;
    delete_if_unused(&ch, &ex).await.unwrap();
    assert!(!exists(&ch, &ex).await);
}

#[tokio::test]
async fn deleting_a_missing_exchange_is_ok() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    within(ch.exchange_delete(uniq("missing").into(), Default::default()))
        .await
        .unwrap();
    // The channel is still usable.
    sync(&ch).await;
}

#[tokio::test]
async fn deleting_a_builtin_exchange_is_403() {
    let env = Env::start().await;
    let conn = env.connect().await;
    for name in ["amq.direct", "amq.fanout", "amq.no-such-exchange", ""] {
        let ch = within(conn.create_channel()).await.unwrap();
        let r = within(ch.exchange_delete(name.into(), Default::default())).await;
        match r {
            Err(e) if code(&e) == Some(403) && !is_hard(&e) => {}
            other => panic!("delete '{name}': expected a 403 channel close, got {other:?}"),
        }
    }
    let ch = within(conn.create_channel()).await.unwrap();
    assert!(exists(&ch, "amq.direct").await);
}

#[tokio::test]
async fn exchange_to_exchange_bind_routes_and_unbind_stops_it() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let src = uniq("src");
    let dst = uniq("dst");
    declare(&ch, &src, ExchangeKind::Topic, Default::default()).await;
    declare(&ch, &dst, ExchangeKind::Direct, Default::default()).await;
    bind_exchange(&ch, &dst, &src, "orders.*").await;
    // The destination routes by its own type: direct on the message's key.
    let q_new = bound_queue(&ch, &dst, "orders.new", FieldTable::default()).await;
    let q_old = bound_queue(&ch, &dst, "orders.old", FieldTable::default()).await;

    publish(&ch, &src, "orders.new", b"1").await;
    publish(&ch, &src, "orders.old", b"2").await;
    publish(&ch, &src, "orders.x.y", b"3").await; // no match on src's binding
    publish(&ch, &src, "other", b"4").await;
    assert_eq!(drain(&ch, &q_new).await, ["1"]);
    assert_eq!(drain(&ch, &q_old).await, ["2"]);

    within(ch.exchange_unbind(
        dst.as_str().into(),
        src.as_str().into(),
        "orders.*".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    publish(&ch, &src, "orders.new", b"5").await;
    publish(&ch, &dst, "orders.new", b"6").await;
    assert_eq!(drain(&ch, &q_new).await, ["6"]);
}

#[tokio::test]
async fn exchange_bindings_deliver_once_per_queue_even_with_cycles() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let a = uniq("a");
    let b = uniq("b");
    declare(&ch, &a, ExchangeKind::Fanout, Default::default()).await;
    declare(&ch, &b, ExchangeKind::Fanout, Default::default()).await;
    for (dst, src) in [(&b, &a), (&a, &b)] {
        bind_exchange(&ch, dst, src, "").await;
    }
    // Bound to both exchanges, reachable along several paths.
    let q = bound_queue(&ch, &a, "", FieldTable::default()).await;
    within(support::bind(&ch, &q, &b, "")).await;
    publish(&ch, &a, "k", b"once").await;
    publish(&ch, &b, "k", b"second").await;
    assert_eq!(drain(&ch, &q).await, ["once", "second"]);
}

#[tokio::test]
async fn exchange_bind_with_missing_source_or_destination_is_404() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let ex = uniq("ex");
    declare(&ch, &ex, ExchangeKind::Fanout, Default::default()).await;
    let missing = uniq("missing");
    for (dst, src) in [(&ex, &missing), (&missing, &ex)] {
        let ch = within(conn.create_channel()).await.unwrap();
        let r = within(ch.exchange_bind(
            dst.as_str().into(),
            src.as_str().into(),
            "".into(),
            Default::default(),
            FieldTable::default(),
        ))
        .await;
        assert_channel_error(r, 404);
    }
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_last_binding_goes() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("auto");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare(&ch, &ex, ExchangeKind::Direct, opts).await;
    // Never bound: it stays.
    assert!(exists(&ch, &ex).await);
    let q1 = bound_queue(&ch, &ex, "a", FieldTable::default()).await;
    let q2 = bound_queue(&ch, &ex, "b", FieldTable::default()).await;
    within(support::unbind(&ch, &q1, &ex, "a")).await;
    assert!(exists(&ch, &ex).await, "one binding is left");
    within(support::unbind(&ch, &q2, &ex, "b")).await;
    assert!(
        !exists(&ch, &ex).await,
        "auto-delete exchange outlived its bindings"
    );
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_bound_queue_is_deleted() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("auto");
    let opts = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare(&ch, &ex, ExchangeKind::Fanout, opts).await;
    let q = bound_queue(&ch, &ex, "", FieldTable::default()).await;
    within(ch.queue_delete(q.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert!(!exists(&ch, &ex).await);
}

#[tokio::test]
async fn auto_delete_exchange_goes_when_its_exchange_binding_goes() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let src = uniq("auto-src");
    let dst = uniq("dst");
    declare(
        &ch,
        &src,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
    )
    .await;
    declare(&ch, &dst, ExchangeKind::Fanout, Default::default()).await;
    bind_exchange(&ch, &dst, &src, "").await;
    within(ch.exchange_delete(dst.as_str().into(), Default::default()))
        .await
        .unwrap();
    assert!(!exists(&ch, &src).await);
}

#[tokio::test]
async fn publishing_to_an_internal_exchange_is_403_but_it_routes_from_another_exchange() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let internal = uniq("internal");
    let front = uniq("front");
    declare(
        &ch,
        &internal,
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
    )
    .await;
    declare(&ch, &front, ExchangeKind::Fanout, Default::default()).await;
    bind_exchange(&ch, &internal, &front, "").await;
    let q = bound_queue(&ch, &internal, "", FieldTable::default()).await;
    publish(&ch, &front, "", b"via front").await;
    assert_eq!(drain(&ch, &q).await, ["via front"]);

    let mut events = conn.events_listener();
    let pub_ch = within(conn.create_channel()).await.unwrap();
    publish(&pub_ch, &internal, "", b"direct").await;
    let e = next_error(&mut events).await;
    support::assert_soft(&e, 403);
    assert_eq!(drain(&ch, &q).await, Vec::<String>::new());
}

#[tokio::test]
async fn direct_routing_matches_the_key_exactly() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("direct");
    declare(&ch, &ex, ExchangeKind::Direct, Default::default()).await;
    let qa = bound_queue(&ch, &ex, "a", FieldTable::default()).await;
    let qb = bound_queue(&ch, &ex, "b", FieldTable::default()).await;
    // One queue bound twice with two keys, and one bound with the empty key.
    within(support::bind(&ch, &qa, &ex, "shared")).await;
    within(support::bind(&ch, &qb, &ex, "shared")).await;
    let qe = bound_queue(&ch, &ex, "", FieldTable::default()).await;
    for key in ["a", "b", "shared", "", "A", "a.b", "c"] {
        publish(&ch, &ex, key, key.as_bytes()).await;
    }
    assert_eq!(drain(&ch, &qa).await, ["a", "shared"]);
    assert_eq!(drain(&ch, &qb).await, ["b", "shared"]);
    assert_eq!(drain(&ch, &qe).await, [""]);
}

#[tokio::test]
async fn default_exchange_routes_by_queue_name() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = bound_queue(&ch, "amq.direct", "unused", FieldTable::default()).await;
    publish(&ch, "", &q, b"by name").await;
    publish(&ch, "", "unused", b"nowhere").await;
    assert_eq!(drain(&ch, &q).await, ["by name"]);
}

#[tokio::test]
async fn fanout_routing_ignores_the_key() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("fanout");
    declare(&ch, &ex, ExchangeKind::Fanout, Default::default()).await;
    let q1 = bound_queue(&ch, &ex, "x", FieldTable::default()).await;
    let q2 = bound_queue(&ch, &ex, "", FieldTable::default()).await;
    publish(&ch, &ex, "anything", b"m1").await;
    publish(&ch, &ex, "", b"m2").await;
    assert_eq!(drain(&ch, &q1).await, ["m1", "m2"]);
    assert_eq!(drain(&ch, &q2).await, ["m1", "m2"]);
}

#[tokio::test]
async fn topic_routing_follows_rabbitmq_word_matching() {
    // (binding key, routing key, routed?)
    let cases: &[(&str, &str, bool)] = &[
        ("a.b.c", "a.b.c", true),
        ("a.b.c", "a.b", false),
        ("a.*.c", "a.b.c", true),
        ("a.*.c", "a.c", false),
        ("a.*.c", "a.b.b.c", false),
        ("*", "a", true),
        ("*", "a.b", false),
        ("*", "", false),
        ("*.*", "a.b", true),
        ("a.#", "a", true),
        ("a.#", "a.b.c", true),
        ("a.#", "ab", false),
        ("#.c", "c", true),
        ("#.c", "a.b.c", true),
        ("#.c", "a.b.c.d", false),
        ("a.#.c", "a.c", true),
        ("a.#.c", "a.b.x.c", true),
        ("a.#.c", "a.b.x", false),
        ("#", "", true),
        ("#", "a.b.c", true),
        ("#.#", "", true),
        ("*.#", "", false),
        ("*.#", "a", true),
        ("#.*", "a", true),
        ("#.*.#", "a.b", true),
        ("", "", true),
        ("", "a", false),
        ("a..b", "a..b", true),
        ("a.*.b", "a..b", true),
        ("a.b", "a..b", false),
        ("a.#.b", "a..b", true),
        ("*.*", "a.", true),
        ("a.*", "a.", true),
        ("a", "a.", false),
        ("*", ".", false),
        ("*.*", ".", true),
    ];
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("topic");
    declare(&ch, &ex, ExchangeKind::Topic, Default::default()).await;
    let mut failures = Vec::new();
    for (i, (binding, key, routed)) in cases.iter().enumerate() {
        let binding_to = (*binding, FieldTable::default());
        if !routes_as(&ch, &ex, binding_to, key, Default::default(), *routed, i).await {
            failures.push(format!(
                "binding '{binding}', key '{key}': expected routed={routed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn topic_routing_delivers_once_to_a_queue_matching_several_bindings() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("topic");
    declare(&ch, &ex, ExchangeKind::Topic, Default::default()).await;
    let q = bound_queue(&ch, &ex, "#", FieldTable::default()).await;
    for key in ["a.*", "a.b", "*.b", "#.b"] {
        within(support::bind(&ch, &q, &ex, key)).await;
    }
    publish(&ch, &ex, "a.b", b"one").await;
    assert_eq!(drain(&ch, &q).await, ["one"]);
    // Unbinding one key leaves the others.
    within(support::unbind(&ch, &q, &ex, "#")).await;
    publish(&ch, &ex, "a.b", b"two").await;
    publish(&ch, &ex, "c.d", b"three").await;
    assert_eq!(drain(&ch, &q).await, ["two"]);
}

#[tokio::test]
async fn headers_routing_follows_x_match() {
    let int = AMQPValue::LongInt;
    // (binding arguments, message headers (None = no headers at all), routed?)
    let cases: Vec<(FieldTable, Option<FieldTable>, bool)> = vec![
        // x-match all (explicit and default).
        (
            table(&[("x-match", s("all")), ("a", int(1)), ("b", s("2"))]),
            Some(table(&[("a", int(1)), ("b", s("2")), ("c", int(3))])),
            true,
        ),
        (
            table(&[("x-match", s("all")), ("a", int(1)), ("b", s("2"))]),
            Some(table(&[("a", int(1))])),
            false,
        ),
        (
            table(&[("x-match", s("all")), ("a", int(1)), ("b", s("2"))]),
            Some(table(&[("a", int(1)), ("b", s("3"))])),
            false,
        ),
        (table(&[("a", int(1))]), Some(table(&[("a", int(1))])), true),
        (
            table(&[("a", int(1))]),
            Some(table(&[("a", int(2))])),
            false,
        ),
        (table(&[("a", int(1))]), None, false),
        (table(&[("x-match", s("all"))]), None, true),
        // Integer widths do not matter.
        (
            table(&[("a", AMQPValue::LongLongInt(7))]),
            Some(table(&[("a", AMQPValue::ShortInt(7))])),
            true,
        ),
        // x-match any.
        (
            table(&[("x-match", s("any")), ("a", int(1)), ("b", s("2"))]),
            Some(table(&[("b", s("2"))])),
            true,
        ),
        (
            table(&[("x-match", s("any")), ("a", int(1)), ("b", s("2"))]),
            Some(table(&[("a", int(2)), ("b", s("x"))])),
            false,
        ),
        (table(&[("x-match", s("any")), ("a", int(1))]), None, false),
        (
            table(&[("x-match", s("any"))]),
            Some(table(&[("a", int(1))])),
            false,
        ),
        // x- arguments are ignored by all/any ...
        (
            table(&[("x-match", s("all")), ("a", int(1)), ("x-tag", s("t"))]),
            Some(table(&[("a", int(1))])),
            true,
        ),
        (
            table(&[("x-match", s("any")), ("x-tag", s("t"))]),
            Some(table(&[("x-tag", s("t"))])),
            false,
        ),
        // ... and compared by all-with-x/any-with-x.
        (
            table(&[
                ("x-match", s("all-with-x")),
                ("a", int(1)),
                ("x-tag", s("t")),
            ]),
            Some(table(&[("a", int(1))])),
            false,
        ),
        (
            table(&[
                ("x-match", s("all-with-x")),
                ("a", int(1)),
                ("x-tag", s("t")),
            ]),
            Some(table(&[("a", int(1)), ("x-tag", s("t"))])),
            true,
        ),
        (
            table(&[("x-match", s("any-with-x")), ("x-tag", s("t"))]),
            Some(table(&[("x-tag", s("t"))])),
            true,
        ),
        (
            table(&[
                ("x-match", s("any-with-x")),
                ("x-tag", s("t")),
                ("a", int(1)),
            ]),
            Some(table(&[("x-tag", s("u")), ("a", int(0))])),
            false,
        ),
        // A void argument only asks for the header to be present.
        (
            table(&[("x-match", s("all")), ("a", AMQPValue::Void)]),
            Some(table(&[("a", s("whatever"))])),
            true,
        ),
        (
            table(&[("x-match", s("all")), ("a", AMQPValue::Void)]),
            Some(table(&[("b", s("whatever"))])),
            false,
        ),
    ];
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let ex = uniq("headers");
    declare(&ch, &ex, ExchangeKind::Headers, Default::default()).await;
    let mut failures = Vec::new();
    for (i, (args, headers, routed)) in cases.into_iter().enumerate() {
        let props = match &headers {
            Some(h) => BasicProperties::default().with_headers(h.clone()),
            None => BasicProperties::default(),
        };
        let binding_to = ("ignored", args.clone());
        if !routes_as(&ch, &ex, binding_to, "other-key", props, routed, i).await {
            failures.push(format!(
                "case {i}: binding {args:?}, headers {headers:?}: expected routed={routed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn binding_to_or_from_the_default_exchange_is_403() {
    let env = Env::start().await;
    let conn = env.connect().await;
    let ch = within(conn.create_channel()).await.unwrap();
    let q = bound_queue(&ch, "amq.fanout", "", FieldTable::default()).await;
    let ex = uniq("ex");
    declare(&ch, &ex, ExchangeKind::Fanout, Default::default()).await;

    let r = within(ch.queue_bind(
        q.as_str().into(),
        "".into(),
        q.as_str().into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);

    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.exchange_bind(
        ex.as_str().into(),
        "".into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);

    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.exchange_bind(
        "".into(),
        ex.as_str().into(),
        "".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);

    let ch = within(conn.create_channel()).await.unwrap();
    let r = within(ch.queue_unbind(
        q.as_str().into(),
        "".into(),
        q.as_str().into(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);
}

#[tokio::test]
async fn binding_to_the_default_exchange_is_403_before_the_queue_is_looked_up() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let r = within(ch.queue_bind(
        uniq("missing-queue").into(),
        "".into(),
        "k".into(),
        Default::default(),
        FieldTable::default(),
    ))
    .await;
    assert_channel_error(r, 403);
}

#[tokio::test]
async fn headers_binding_with_an_invalid_x_match_is_406() {
    let env = Env::start().await;
    let conn = env.connect().await;
    for bad in [s("bogus"), s("ALL"), AMQPValue::LongInt(1)] {
        let ch = within(conn.create_channel()).await.unwrap();
        let q = within(support::server_named_queue(&ch)).await;
        let r = within(ch.queue_bind(
            q.as_str().into(),
            "amq.headers".into(),
            "".into(),
            Default::default(),
            table(&[("x-match", bad.clone()), ("a", AMQPValue::LongInt(1))]),
        ))
        .await;
        match r {
            Err(e) if code(&e) == Some(406) && !is_hard(&e) => {}
            other => panic!("x-match {bad:?}: expected a 406 channel close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn unbinding_what_does_not_exist_is_ok() {
    let env = Env::start().await;
    let (_c, ch) = env.open().await;
    let q = bound_queue(&ch, "amq.direct", "bound", FieldTable::default()).await;
    let ex = uniq("ex");
    declare(&ch, &ex, ExchangeKind::Direct, Default::default()).await;
    // No such binding, no such queue, no such source exchange.
    for (queue, exchange, key) in [
        (q.as_str(), "amq.direct", "not-bound"),
        (&uniq("missing-queue"), "amq.direct", "bound"),
        (q.as_str(), &uniq("missing-exchange"), "bound"),
    ] {
        within(ch.queue_unbind(
            queue.into(),
            exchange.into(),
            key.into(),
            FieldTable::default(),
        ))
        .await
        .unwrap_or_else(|e| panic!("unbind {queue} from {exchange}: {e:?}"));
    }
    for (dst, src) in [(ex.as_str(), "amq.direct"), (&uniq("missing"), ex.as_str())] {
        within(ch.exchange_unbind(
            dst.into(),
            src.into(),
            "k".into(),
            Default::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap_or_else(|e| panic!("unbind {dst} from {src}: {e:?}"));
    }
    // The real binding survived.
    publish(&ch, "amq.direct", "bound", b"still bound").await;
    assert_eq!(drain(&ch, &q).await, ["still bound"]);
}
