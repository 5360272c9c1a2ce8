//! The management API's topology endpoints over real HTTP, against the answers of RabbitMQ
//! 3.10.8's management plugin: queues, exchanges, bindings (props keys), publish and get,
//! purge and delete, list paging, sorting and columns, and who may see and change what.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use serde_json::{json, Value};
use support::http::{http, Reply};
use support::{within, TestBroker};

const ADMIN: Option<(&str, &str)> = Some(("guest", "guest"));

async fn broker() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| c.management_listen = Some("127.0.0.1:0".parse().unwrap()))
        .await;
    let api = b.handle.management_addr.unwrap();
    (b, api)
}

async fn call(api: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Reply {
    http(api, method, path, ADMIN, body).await
}

async fn channel(b: &TestBroker) -> (lapin::Connection, lapin::Channel) {
    let uri = format!("amqp://guest:guest@{}/%2F", b.addr);
    let conn = within(lapin::Connection::connect(&uri, Default::default()))
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn publish(api: SocketAddr, exchange: &str, key: &str, payload: &str) -> Reply {
    let body = json!({"routing_key": key, "payload": payload, "payload_encoding": "string",
        "properties": {"delivery_mode": 2, "content_type": "text/plain", "headers": {"a": 1}}});
    let path = format!("/api/exchanges/%2F/{exchange}/publish");
    call(api, "POST", &path, Some(body)).await
}

async fn get(api: SocketAddr, q: &str, body: Value) -> Value {
    let r = call(api, "POST", &format!("/api/queues/%2F/{q}/get"), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[tokio::test]
async fn a_queue_declared_over_amqp_is_listed_with_its_counts() {
    let (b, api) = broker().await;
    let (_conn, ch) = channel(&b).await;
    let opts = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare("counted".into(), opts, FieldTable::default())
        .await
        .unwrap();
    for body in [&b"one"[..], b"two", b"three"] {
        ch.basic_publish(
            "".into(),
            "counted".into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap();
    }
    // One taken and not acked: unacknowledged.
    let got = ch
        .basic_get("counted".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap();
    assert!(got.is_some());
    let q = call(api, "GET", "/api/queues/%2F/counted", None)
        .await
        .json();
    assert_eq!(q["name"], "counted");
    assert_eq!(q["vhost"], "/");
    assert_eq!(
        (q["durable"].clone(), q["exclusive"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(q["messages"], 3);
    assert_eq!(q["messages_ready"], 2);
    assert_eq!(q["messages_unacknowledged"], 1);
    assert_eq!(q["message_bytes_ready"], 8, "{q}");
    assert_eq!(
        (q["state"].clone(), q["type"].clone()),
        (json!("running"), json!("classic"))
    );
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["policy"], Value::Null);
    assert_eq!(q["effective_policy_definition"], json!({}));
    assert!(q["memory"].as_u64().unwrap() > 0);
    assert!(q["node"].as_str().unwrap().starts_with("warren@"));
    // Its counts so far: three publishes, one get with ack.
    assert_eq!(q["message_stats"]["publish"], 3, "{q}");
    assert_eq!(q["message_stats"]["get"], 1, "{q}");
    let all = call(api, "GET", "/api/queues", None).await.json();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counted"]);
}

#[tokio::test]
async fn a_queue_put_over_http_is_used_over_amqp() {
    let (b, api) = broker().await;
    let body = json!({"durable": true, "arguments": {"x-max-length": 10}});
    let r = call(api, "PUT", "/api/queues/%2F/made", Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        call(api, "PUT", "/api/queues/%2F/made", Some(body))
            .await
            .status,
        204
    );
    // Redeclared with other arguments: RabbitMQ's 400 and text.
    let r = call(
        api,
        "PUT",
        "/api/queues/%2F/made",
        Some(json!({"durable": true})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("inequivalent arg 'x-max-length'"));
    let (_conn, ch) = channel(&b).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    ch.queue_declare("made".into(), passive, FieldTable::default())
        .await
        .unwrap();
    support::publish(&ch, "", "made", b"hi").await;
    assert_eq!(support::message_count(&ch, "made").await, 1);
    let q = call(api, "GET", "/api/queues/%2F/made", None).await.json();
    assert_eq!(q["arguments"], json!({"x-max-length": 10}));
    // amq.* names are refused as RabbitMQ refuses them.
    let r = call(api, "PUT", "/api/queues/%2F/amq.mine", Some(json!({}))).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("Access refused."))
    );
}

#[tokio::test]
async fn publish_over_http_routes_and_get_returns_the_message() {
    let (_b, api) = broker().await;
    call(api, "PUT", "/api/queues/%2F/inbox", Some(json!({}))).await;
    let r = publish(api, "amq.default", "inbox", "hello").await;
    assert_eq!((r.status, r.json()), (200, json!({"routed": true})));
    let r = publish(api, "amq.default", "nowhere", "lost").await;
    assert_eq!(r.json(), json!({"routed": false}));
    let r = publish(api, "no-such", "inbox", "x").await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["reason"],
        "404 NOT_FOUND - no exchange 'no-such' in vhost '/'"
    );
    let mode = |m: &str| json!({"count": 5, "ackmode": m, "encoding": "auto", "truncate": 50000});
    let got = get(api, "inbox", mode("ack_requeue_true")).await;
    assert_eq!(
        got,
        json!([{"payload_bytes": 5, "redelivered": false, "exchange": "", "routing_key": "inbox",
            "message_count": 0, "payload": "hello", "payload_encoding": "string",
            "properties": {"delivery_mode": 2, "content_type": "text/plain", "headers": {"a": 1}}}])
    );
    // Requeued: back, redelivered; base64 and truncate as asked.
    let body =
        json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64", "truncate": 2});
    let got = get(api, "inbox", body).await;
    assert_eq!(got[0]["redelivered"], true);
    assert_eq!(
        (
            got[0]["payload"].clone(),
            got[0]["payload_encoding"].clone()
        ),
        (json!("aGU="), json!("base64"))
    );
    assert_eq!(got[0]["payload_bytes"], 5);
    assert_eq!(
        get(api, "inbox", mode("ack_requeue_false")).await,
        json!([])
    );
    let r = call(
        api,
        "POST",
        "/api/exchanges/%2F/amq.default/publish",
        Some(json!({"routing_key": "inbox"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.json()["reason"]
        .as_str()
        .unwrap()
        .contains("{key_missing,payload_encoding}"));
}

#[tokio::test]
async fn purge_empties_and_delete_if_empty_refuses_a_queue_with_messages() {
    let (_b, api) = broker().await;
    call(
        api,
        "PUT",
        "/api/queues/%2F/full",
        Some(json!({"durable": true})),
    )
    .await;
    publish(api, "amq.default", "full", "m").await;
    let r = call(api, "DELETE", "/api/queues/%2F/full?if-empty=true", None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json(),
        json!({"error": "bad_request", "reason": "queue 'full' in vhost '/' not empty"})
    );
    assert_eq!(
        call(api, "DELETE", "/api/queues/%2F/full/contents", None)
            .await
            .status,
        204
    );
    let q = call(api, "GET", "/api/queues/%2F/full", None).await.json();
    assert_eq!(q["messages"], 0);
    let r = call(
        api,
        "DELETE",
        "/api/queues/%2F/full?if-empty=true&if-unused=true",
        None,
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call(api, "GET", "/api/queues/%2F/full", None).await.status,
        404
    );
    assert_eq!(
        call(api, "DELETE", "/api/queues/%2F/full", None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn bindings_are_made_listed_and_deleted_by_props_key() {
    let (_b, api) = broker().await;
    call(
        api,
        "PUT",
        "/api/queues/%2F/bq",
        Some(json!({"durable": true})),
    )
    .await;
    let r = call(
        api,
        "PUT",
        "/api/exchanges/%2F/bx",
        Some(json!({"type": "topic", "durable": true})),
    )
    .await;
    assert_eq!(r.status, 201);
    let cases = [
        (
            json!({"routing_key": "a.b", "arguments": {}}),
            "location: bq/a.b",
        ),
        (json!({"routing_key": ""}), "location: bq/~"),
        (json!({"routing_key": "k/x y"}), "location: bq/k%252fx%2by"),
    ];
    for (body, location) in cases {
        let r = call(api, "POST", "/api/bindings/%2F/e/bx/q/bq", Some(body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        assert!(r.headers.contains(location), "{}", r.headers);
    }
    let r = call(
        api,
        "POST",
        "/api/bindings/%2F/e/bx/q/bq",
        Some(json!({"routing_key": "h", "arguments": {"x-a": "b"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    let list = call(api, "GET", "/api/bindings/%2F/e/bx/q/bq", None)
        .await
        .json();
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["properties_key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(&keys[..2], ["~", "a.b"]);
    assert!(keys[2].starts_with("h~"), "{keys:?}");
    assert_eq!(keys[3], "k%2Fx+y");
    assert_eq!(
        list[1],
        json!({"source": "bx", "vhost": "/", "destination": "bq", "destination_type": "queue", "routing_key": "a.b", "arguments": {}, "properties_key": "a.b"})
    );
    let one = call(api, "GET", "/api/bindings/%2F/e/bx/q/bq/k%252Fx%2By", None).await;
    assert_eq!(
        (one.status, one.json()["routing_key"].clone()),
        (200, json!("k/x y"))
    );
    // The queue's bindings start with the default exchange's.
    let of_q = call(api, "GET", "/api/queues/%2F/bq/bindings", None)
        .await
        .json();
    assert_eq!(
        (of_q[0]["source"].clone(), of_q[0]["routing_key"].clone()),
        (json!(""), json!("bq"))
    );
    assert_eq!(of_q.as_array().unwrap().len(), 5);
    // Exchange to exchange.
    let r = call(
        api,
        "POST",
        "/api/bindings/%2F/e/bx/e/amq.direct",
        Some(json!({"routing_key": "r"})),
    )
    .await;
    assert!(
        r.headers.contains("location: amq.direct/r"),
        "{}",
        r.headers
    );
    let src = call(api, "GET", "/api/exchanges/%2F/bx/bindings/source", None)
        .await
        .json();
    assert_eq!(src.as_array().unwrap().len(), 5);
    let dst = call(
        api,
        "GET",
        "/api/exchanges/%2F/amq.direct/bindings/destination",
        None,
    )
    .await
    .json();
    assert_eq!(dst[0]["source"], "bx");
    for key in ["a.b", "~", "k%252Fx%2By", keys[2]] {
        let r = call(
            api,
            "DELETE",
            &format!("/api/bindings/%2F/e/bx/q/bq/{key}"),
            None,
        )
        .await;
        assert_eq!(r.status, 204, "{key}: {}", r.body);
    }
    assert_eq!(
        call(api, "GET", "/api/bindings/%2F/e/bx/q/bq", None)
            .await
            .json(),
        json!([])
    );
    assert_eq!(
        call(api, "GET", "/api/bindings/%2F/e/bx/q/bq/a.b", None)
            .await
            .status,
        404
    );
    let r = call(
        api,
        "POST",
        "/api/bindings/%2F/e/bx/q/nope",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"error": "not_found", "reason": "no queue 'nope' in vhost '/'"})
    );
    let r = call(
        api,
        "POST",
        "/api/bindings/%2F/e/amq.default/q/bq",
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (401, json!("Access refused."))
    );
}

#[tokio::test]
async fn lists_page_sort_filter_and_select_columns() {
    let (_b, api) = broker().await;
    for (name, n) in [("p1", 1), ("p2", 3), ("p3", 2), ("other", 0)] {
        call(
            api,
            "PUT",
            &format!("/api/queues/%2F/{name}"),
            Some(json!({})),
        )
        .await;
        for _ in 0..n {
            publish(api, "amq.default", name, "x").await;
        }
    }
    let r = call(
        api,
        "GET",
        "/api/queues/%2F?page=1&page_size=2&columns=name,vhost",
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"filtered_count": 4, "item_count": 2, "page": 1, "page_count": 2, "page_size": 2,
            "total_count": 4, "items": [{"name": "other", "vhost": "/"}, {"name": "p1", "vhost": "/"}]})
    );
    let r = call(api, "GET", "/api/queues?page=1&name=P%5B12%5D&use_regex=true&sort=messages&sort_reverse=true&columns=name,messages", None).await;
    let page = r.json();
    assert_eq!(page["filtered_count"], 2);
    assert_eq!(
        page["items"],
        json!([{"name": "p2", "messages": 3}, {"name": "p1", "messages": 1}])
    );
    let r = call(
        api,
        "GET",
        "/api/queues?name=P&columns=name&sort=name&sort_reverse=true",
        None,
    )
    .await;
    assert_eq!(
        r.json(),
        json!([{"name": "p3"}, {"name": "p2"}, {"name": "p1"}])
    );
    let r = call(
        api,
        "GET",
        "/api/queues?columns=name,arguments.x-none",
        None,
    )
    .await;
    assert_eq!(r.json()[0], json!({"name": "other", "arguments": {}}));
    let r = call(api, "GET", "/api/queues?page=9&page_size=2", None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (400, json!("page_out_of_range"))
    );
    let r = call(api, "GET", "/api/queues?page=1&page_size=501", None).await;
    assert_eq!(
        r.json()["reason"],
        "Invalid pagination parameters: page number 1, page size 501"
    );
    let r = call(api, "GET", "/api/queues?page=x", None).await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!("Pagination parameters are invalid"))
    );
    let r = call(api, "GET", "/api/queues?page=1&name=(&use_regex=true", None).await;
    assert_eq!(r.status, 400);
    let r = call(api, "GET", "/api/exchanges/%2F?columns=name,type", None).await;
    assert_eq!(r.json()[0], json!({"name": "", "type": "direct"}));
}

#[tokio::test]
async fn a_management_user_sees_only_its_vhosts() {
    let (_b, api) = broker().await;
    call(api, "PUT", "/api/vhosts/mine", None).await;
    call(
        api,
        "PUT",
        "/api/permissions/mine/guest",
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    call(
        api,
        "PUT",
        "/api/users/m",
        Some(json!({"password": "pw", "tags": "management"})),
    )
    .await;
    call(
        api,
        "PUT",
        "/api/permissions/mine/m",
        Some(json!({"configure": "^$", "write": "^$", "read": ".*"})),
    )
    .await;
    call(api, "PUT", "/api/queues/mine/theirs", Some(json!({}))).await;
    call(api, "PUT", "/api/queues/%2F/hidden", Some(json!({}))).await;
    let m = Some(("m", "pw"));
    let r = http(api, "GET", "/api/queues", m, None).await;
    let names: Vec<Value> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, [json!("theirs")]);
    let r = http(api, "GET", "/api/queues/%2F", m, None).await;
    assert_eq!(
        (r.status, r.json()["error"].clone()),
        (401, json!("not_authorised"))
    );
    assert_eq!(
        http(api, "GET", "/api/queues/%2F/hidden", m, None)
            .await
            .status,
        401
    );
    assert_eq!(
        http(api, "GET", "/api/exchanges/%2F", m, None).await.status,
        401
    );
    // Read-only permissions: no declare, no delete, no publish; get and purge are allowed.
    let r = http(api, "PUT", "/api/queues/mine/new", m, Some(json!({}))).await;
    assert_eq!(
        r.json(),
        json!({"error": "not_authorised", "reason": "Access refused."})
    );
    assert_eq!(
        http(api, "DELETE", "/api/queues/mine/theirs", m, None)
            .await
            .status,
        401
    );
    let body = json!({"routing_key": "theirs", "payload": "x", "payload_encoding": "string", "properties": {}});
    let r = http(
        api,
        "POST",
        "/api/exchanges/mine/amq.default/publish",
        m,
        Some(body),
    )
    .await;
    assert_eq!(
        (r.status, r.json()["reason"].clone()),
        (400, json!("403 ACCESS_REFUSED - access to exchange 'amq.default' in vhost 'mine' refused for user 'm'"))
    );
    assert_eq!(
        http(api, "DELETE", "/api/queues/mine/theirs/contents", m, None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn unknown_objects_are_404_and_the_default_exchange_is_kept() {
    let (_b, api) = broker().await;
    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for path in [
        "/api/queues/nope",
        "/api/queues/%2F/nope",
        "/api/exchanges/nope",
        "/api/exchanges/%2F/nope",
        "/api/bindings/nope",
    ] {
        let r = call(api, "GET", path, None).await;
        assert_eq!((r.status, r.json()), (404, not_found.clone()), "{path}");
    }
    let d = call(api, "GET", "/api/exchanges/%2F/amq.default", None)
        .await
        .json();
    assert_eq!(
        d,
        json!({"name": "", "vhost": "/", "type": "direct", "durable": true, "auto_delete": false, "internal": false, "arguments": {}})
    );
    for name in ["amq.default", "amq.direct"] {
        let r = call(api, "DELETE", &format!("/api/exchanges/%2F/{name}"), None).await;
        assert_eq!(
            r.json(),
            json!({"error": "not_authorised", "reason": "Access refused."})
        );
    }
    let r = call(
        api,
        "PUT",
        "/api/exchanges/%2F/ex",
        Some(json!({"type": "bogus"})),
    )
    .await;
    assert_eq!(
        r.json(),
        json!({"error": "bad_request", "reason": "invalid exchange type 'bogus'"})
    );
    call(
        api,
        "PUT",
        "/api/exchanges/%2F/ex",
        Some(json!({"type": "fanout"})),
    )
    .await;
    call(api, "PUT", "/api/queues/%2F/q", Some(json!({}))).await;
    call(api, "POST", "/api/bindings/%2F/e/ex/q/q", Some(json!({}))).await;
    let r = call(api, "DELETE", "/api/exchanges/%2F/ex?if-unused=true", None).await;
    assert_eq!(r.json()["reason"], "exchange 'ex' in vhost '/' in use");
    assert_eq!(
        call(api, "DELETE", "/api/exchanges/%2F/ex", None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(api, "DELETE", "/api/exchanges/%2F/ex", None)
            .await
            .status,
        404
    );
}
