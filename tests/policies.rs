//! Policies and operator policies through the management API, acting on real queues over
//! AMQP (lapin): a policy applies to existing queues at once and goes when cleared;
//! RabbitMQ's resolution (highest priority wins, the smaller number of x-argument and
//! policy wins, the x-argument wins for dead-lettering, the operator policy bounds the
//! policy); an alternate exchange from a policy; policies kept across a restart; RabbitMQ's
//! 400s and tag rules. And definitions: export → empty broker → export gives the same
//! file, and a per-vhost export of RabbitMQ 3.10.8 with policies imports unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};
use support::http::{http, Reply};
use support::{bind, drain, durable, message_count, publish, sync, within, TestBroker};

const ADMIN: Option<(&str, &str)> = Some(("guest", "guest"));

async fn broker() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| c.management_listen = Some("127.0.0.1:0".parse().unwrap()))
        .await;
    let api = b.handle.management_addr.unwrap();
    (b, api)
}

async fn put(api: SocketAddr, path: &str, body: Value) -> Reply {
    http(api, "PUT", path, ADMIN, Some(body)).await
}

async fn declare(ch: &lapin::Channel, q: &str, args: &[(&str, AMQPValue)]) {
    let mut t = FieldTable::default();
    for (k, v) in args {
        t.insert((*k).into(), v.clone());
    }
    within(ch.queue_declare(q.into(), QueueDeclareOptions::default(), t))
        .await
        .unwrap();
}

async fn fill(ch: &lapin::Channel, q: &str, n: usize) {
    for i in 0..n {
        publish(ch, "", q, format!("m{i}").as_bytes()).await;
    }
    sync(ch).await;
}

#[tokio::test]
async fn a_policy_applies_to_existing_queues_at_once_and_goes_when_cleared() {
    let (b, api) = broker().await;
    let (_c, ch) = b.open().await;
    declare(&ch, "lim.a", &[]).await;
    declare(&ch, "other", &[]).await;
    fill(&ch, "lim.a", 5).await;
    fill(&ch, "other", 5).await;
    let r = put(
        api,
        "/api/policies/%2f/lim",
        json!({"pattern": "^lim\\.", "definition": {"max-length": 2}, "apply-to": "queues"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The limit dropped the oldest at once; the other queue is untouched.
    assert_eq!(drain(&ch, "lim.a").await, ["m3", "m4"]);
    assert_eq!(message_count(&ch, "other").await, 5);
    // A queue declared later gets it too.
    declare(&ch, "lim.b", &[]).await;
    fill(&ch, "lim.b", 4).await;
    assert_eq!(message_count(&ch, "lim.b").await, 2);
    // A second PUT changes it (204), then clearing it lifts the limit.
    let r = put(
        api,
        "/api/policies/%2f/lim",
        json!({"pattern": "^lim\\.", "definition": {"max-length": 3}, "apply-to": "queues"}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    fill(&ch, "lim.b", 4).await;
    assert_eq!(message_count(&ch, "lim.b").await, 3);
    let r = http(api, "DELETE", "/api/policies/%2f/lim", ADMIN, None).await;
    assert_eq!(r.status, 204);
    fill(&ch, "lim.b", 4).await;
    assert_eq!(message_count(&ch, "lim.b").await, 7);
    let r = http(api, "DELETE", "/api/policies/%2f/lim", ADMIN, None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"error": "Object Not Found", "reason": "Not Found"})
        )
    );
}

#[tokio::test]
async fn rabbitmqs_resolution_rules() {
    let (b, api) = broker().await;
    let (_c, ch) = b.open().await;
    for (name, prio, len) in [("low", 1, 4), ("high", 5, 3)] {
        let r = put(
            api,
            &format!("/api/policies/%2f/{name}"),
            json!({"pattern": "^r\\.", "definition": {"max-length": len}, "priority": prio}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    // The highest priority applies.
    declare(&ch, "r.plain", &[]).await;
    fill(&ch, "r.plain", 6).await;
    assert_eq!(message_count(&ch, "r.plain").await, 3);
    // The smaller of argument and policy wins, both ways.
    declare(&ch, "r.small", &[("x-max-length", AMQPValue::LongInt(1))]).await;
    declare(&ch, "r.big", &[("x-max-length", AMQPValue::LongInt(10))]).await;
    fill(&ch, "r.small", 6).await;
    fill(&ch, "r.big", 6).await;
    assert_eq!(message_count(&ch, "r.small").await, 1);
    assert_eq!(message_count(&ch, "r.big").await, 3);
    // The operator policy bounds it.
    let r = put(
        api,
        "/api/operator-policies/%2f/cap",
        json!({"pattern": "", "definition": {"max-length": 2}, "apply-to": "queues"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    fill(&ch, "r.big", 6).await;
    assert_eq!(message_count(&ch, "r.big").await, 2);
    // The queue's page names both and what they give it merged.
    let q = http(api, "GET", "/api/queues/%2f/r.big", ADMIN, None)
        .await
        .json();
    assert_eq!(
        (
            &q["policy"],
            &q["operator_policy"],
            &q["effective_policy_definition"]
        ),
        (&json!("high"), &json!("cap"), &json!({"max-length": 2}))
    );
    // Dead-lettering: the argument wins over the policy.
    for q in ["dl.theirs", "dl.mine"] {
        declare(&ch, q, &[]).await;
    }
    let r = put(
        api,
        "/api/policies/%2f/ttl",
        json!({"pattern": "^t\\.", "definition": {"message-ttl": 1, "dead-letter-exchange": "",
               "dead-letter-routing-key": "dl.theirs"}, "priority": 9}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    declare(&ch, "t.policy", &[]).await;
    declare(
        &ch,
        "t.arg",
        &[(
            "x-dead-letter-routing-key",
            AMQPValue::LongString("dl.mine".into()),
        )],
    )
    .await;
    publish(&ch, "", "t.policy", b"a").await;
    publish(&ch, "", "t.arg", b"b").await;
    sync(&ch).await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(drain(&ch, "dl.theirs").await, ["a"]);
    assert_eq!(drain(&ch, "dl.mine").await, ["b"]);
}

#[tokio::test]
async fn an_alternate_exchange_from_a_policy_and_policies_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mgmt =
        |c: &mut warren::config::Config| c.management_listen = Some("127.0.0.1:0".parse().unwrap());
    let b = TestBroker::start_in_dir(dir, mgmt).await;
    let api = b.handle.management_addr.unwrap();
    let (c, ch) = b.open().await;
    for q in ["caught", "d.q"] {
        within(ch.queue_declare(q.into(), durable(), FieldTable::default()))
            .await
            .unwrap();
    }
    bind(&ch, "caught", "amq.fanout", "").await;
    let r = put(
        api,
        "/api/policies/%2f/ae",
        json!({"pattern": "^amq\\.direct$", "definition": {"alternate-exchange": "amq.fanout"},
               "apply-to": "exchanges"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let x = http(api, "GET", "/api/exchanges/%2f/amq.direct", ADMIN, None)
        .await
        .json();
    assert_eq!(x["policy"], "ae");
    publish(&ch, "amq.direct", "nobody", b"lost?").await;
    sync(&ch).await;
    assert_eq!(drain(&ch, "caught").await, ["lost?"]);
    let r = put(
        api,
        "/api/policies/%2f/len",
        json!({"pattern": "^d\\.", "definition": {"max-length": 1}, "apply-to": "queues"}),
    )
    .await;
    assert_eq!(r.status, 201);
    drop(c);
    let b = b.restart().await;
    let (_c, ch) = b.open().await;
    fill(&ch, "d.q", 3).await;
    assert_eq!(message_count(&ch, "d.q").await, 1);
    publish(&ch, "amq.direct", "nobody", b"still caught").await;
    sync(&ch).await;
    assert_eq!(drain(&ch, "caught").await, ["still caught"]);
}

#[tokio::test]
async fn bad_policies_and_tag_rules_get_rabbitmqs_answers() {
    let (_b, api) = broker().await;
    let cases = [
        (
            json!({"definition": {"max-length": 5}}),
            "[{key_missing,pattern}]",
        ),
        (json!({"pattern": "^a"}), "[{key_missing,definition}]"),
        (
            json!({"pattern": "^a", "definition": {}}),
            "Validation failed\n\nno policy provided\n",
        ),
        (
            json!({"pattern": "^a", "definition": {"foo": 1}}),
            "Validation failed\n\n[{<<\"foo\">>,1}] are not recognised policy settings\n",
        ),
        (
            json!({"pattern": "^a", "definition": {"message-ttl": -1}}),
            "Validation failed\n\n-1 is not a valid message TTL\n",
        ),
        (
            json!({"pattern": "^a", "definition": {"max-length": 5}, "priority": "x"}),
            "Validation failed\n\npriority should be a number, actually was <<\"x\">>\n",
        ),
    ];
    for (body, reason) in cases {
        let r = put(api, "/api/policies/%2f/p", body.clone()).await;
        assert_eq!(
            (r.status, r.json()),
            (400, json!({"error": "bad_request", "reason": reason})),
            "{body}"
        );
    }
    let r = put(
        api,
        "/api/policies/nohost/p",
        json!({"pattern": "", "definition": {"max-length": 1}}),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"error": "not_found", "reason": "vhost_not_found"})
        )
    );
    let r = put(
        api,
        "/api/operator-policies/%2f/o",
        json!({"pattern": "", "definition": {"dead-letter-exchange": "x"}}),
    )
    .await;
    assert_eq!(r.status, 400);
    // A management user lists, but may not read one or change one; a policymaker may.
    for (user, tags) in [("mgr", "management"), ("pm", "policymaker")] {
        let r = put(
            api,
            &format!("/api/users/{user}"),
            json!({"password": "p", "tags": tags}),
        )
        .await;
        assert_eq!(r.status, 201);
        let r = put(
            api,
            &format!("/api/permissions/%2f/{user}"),
            json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await;
        assert_eq!(r.status, 201);
    }
    let body = json!({"pattern": "^q", "definition": {"max-length": 1}});
    let r = http(
        api,
        "PUT",
        "/api/policies/%2f/p",
        Some(("mgr", "p")),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, 401);
    let r = http(
        api,
        "PUT",
        "/api/policies/%2f/p",
        Some(("pm", "p")),
        Some(body.clone()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(api, "GET", "/api/policies", Some(("mgr", "p")), None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!([{"vhost": "/", "name": "p", "pattern": "^q", "apply-to": "all",
                    "definition": {"max-length": 1}, "priority": 0}])
        )
    );
    let r = http(api, "GET", "/api/policies/%2f/p", Some(("mgr", "p")), None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            401,
            json!({"error": "not_authorised", "reason": "User not authorised to access object"})
        )
    );
    let r = http(
        api,
        "PUT",
        "/api/operator-policies/%2f/o",
        Some(("pm", "p")),
        Some(body),
    )
    .await;
    assert_eq!(r.status, 401, "operator policies are administrators' only");
}

/// Sorted lists, so two exports compare whatever order each broker walked its maps in.
fn normalised(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        for (_, items) in o.iter_mut() {
            if let Some(a) = items.as_array_mut() {
                a.sort_by_key(|x| x.to_string());
            }
        }
    }
    v
}

#[tokio::test]
async fn definitions_round_trip_into_an_empty_broker() {
    let (b, api) = broker().await;
    let (_c, ch) = b.open().await;
    assert_eq!(
        put(api, "/api/vhosts/shop", json!({"description": "the shop"}))
            .await
            .status,
        201
    );
    let r = put(
        api,
        "/api/users/app",
        json!({"password": "s3cret", "tags": "management"}),
    )
    .await;
    assert_eq!(r.status, 201);
    let perms = json!({"configure": "^app\\.", "write": ".*", "read": ".*"});
    assert_eq!(
        put(api, "/api/permissions/shop/app", perms).await.status,
        201
    );
    let r = put(
        api,
        "/api/vhost-limits/shop/max-queues",
        json!({"value": 50}),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let policy = json!({"pattern": "^app\\.", "definition": {"message-ttl": 60000}, "priority": 2});
    assert_eq!(put(api, "/api/policies/shop/ttl", policy).await.status, 201);
    let cap = json!({"pattern": "", "definition": {"max-length": 1000}, "apply-to": "queues"});
    assert_eq!(
        put(api, "/api/operator-policies/shop/cap", cap)
            .await
            .status,
        201
    );
    declare(
        &ch,
        "app.jobs",
        &[("x-max-priority", AMQPValue::ShortShortUInt(5))],
    )
    .await;
    within(ch.exchange_declare(
        "app.events".into(),
        lapin::ExchangeKind::Topic,
        Default::default(),
        FieldTable::default(),
    ))
    .await
    .unwrap();
    bind(&ch, "app.jobs", "app.events", "job.#").await;
    let r = http(api, "GET", "/api/definitions", ADMIN, None).await;
    assert_eq!(r.status, 200);
    let exported = r.json();
    for key in [
        "users",
        "vhosts",
        "permissions",
        "parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ] {
        assert!(
            exported[key].as_array().is_some_and(|a| !a.is_empty()),
            "{key}: {exported}"
        );
    }

    let (_b2, api2) = broker().await;
    let r = http(
        api2,
        "POST",
        "/api/definitions",
        ADMIN,
        Some(exported.clone()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let again = http(api2, "GET", "/api/definitions", ADMIN, None)
        .await
        .json();
    assert_eq!(normalised(again), normalised(exported));
    // The imported user logs in with its password, and the policy runs the queue.
    let r = http(api2, "GET", "/api/whoami", Some(("app", "s3cret")), None).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_rabbitmq_vhost_export_with_policies_imports_unchanged() {
    let (b, api) = broker().await;
    let file: Value =
        serde_json::from_str(include_str!("fixtures/rabbitmq-3.10.8-vhost-policies.json")).unwrap();
    assert_eq!(
        put(api, "/api/vhosts/pol-fixture", json!({})).await.status,
        201
    );
    let r = http(
        api,
        "POST",
        "/api/definitions/pol-fixture",
        ADMIN,
        Some(file.clone()),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let mine = http(api, "GET", "/api/definitions/pol-fixture", ADMIN, None)
        .await
        .json();
    for key in ["parameters", "policies", "queues", "exchanges", "bindings"] {
        assert_eq!(
            normalised(json!({key: mine[key]})),
            normalised(json!({key: file[key]})),
            "{key}"
        );
    }
    // And they act: the operator policy's cap and the `ha` policy's max-length meet at 5;
    // `in.x` sends what it cannot route to `unrouted`.
    let conn = lapin::Connection::connect(
        &format!("amqp://guest:guest@{}/pol-fixture", b.addr),
        lapin::ConnectionProperties::default(),
    )
    .await
    .unwrap();
    let ch = conn.create_channel().await.unwrap();
    fill(&ch, "ha.q", 7).await;
    assert_eq!(message_count(&ch, "ha.q").await, 5);
    publish(&ch, "in.x", "no-such-key", b"x").await;
    sync(&ch).await;
    assert_eq!(drain(&ch, "unrouted.q").await, ["x"]);
}
