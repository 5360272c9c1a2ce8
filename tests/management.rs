//! The management API's access endpoints over real HTTP, against RabbitMQ's answers
//! (checked on RabbitMQ 3.10.8's management plugin): basic auth and the 401s, users,
//! vhosts, permissions, topic permissions, limits; and what each change does to AMQP
//! connections at once (permissions re-read without reconnecting, a deleted vhost or user
//! closing its connections with 320, limits refusing new ones).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;
use support::http::http;
use support::{code, text, within, TestBroker};

const ADMIN: Option<(&str, &str)> = Some(("guest", "guest"));

async fn broker() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| c.management_listen = Some("127.0.0.1:0".parse().unwrap()))
        .await;
    let api = b.handle.management_addr.unwrap();
    (b, api)
}

async fn login(b: &TestBroker, user: &str, pass: &str, vhost: &str) -> lapin::Result<Connection> {
    let vhost = vhost.replace('/', "%2f");
    let uri = format!("amqp://{user}:{pass}@{}/{vhost}", b.addr);
    within(Connection::connect(&uri, ConnectionProperties::default())).await
}

/// The broker's close of a watched connection: its code and text.
async fn closed_by_broker(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> (u16, String) {
    let e = support::next_error(events).await;
    assert!(support::is_hard(&e), "{e:?}");
    (code(&e).unwrap_or(0), text(&e))
}

#[tokio::test]
async fn logins_and_tags_get_rabbitmqs_401s() {
    let (_b, api) = broker().await;
    let r = http(api, "GET", "/api/whoami", None, None).await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .contains("www-authenticate: basic realm=\"rabbitmq management\""),
        "{}",
        r.headers
    );
    let r = http(api, "GET", "/api/whoami", Some(("guest", "nope")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorized", "reason": "Login failed"})
    );
    let r = http(api, "GET", "/api/whoami", ADMIN, None).await;
    assert_eq!(
        (r.status, r.json()),
        (200, json!({"name": "guest", "tags": ["administrator"]}))
    );
    for (user, tags) in [("plain", ""), ("watcher", "monitoring")] {
        let r = http(
            api,
            "PUT",
            &format!("/api/users/{user}"),
            ADMIN,
            Some(json!({"password": "pw", "tags": tags})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = http(api, "GET", "/api/whoami", Some(("plain", "pw")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorised", "reason": "Not management user"})
    );
    let r = http(api, "GET", "/api/whoami", Some(("watcher", "pw")), None).await;
    assert_eq!(r.status, 200);
    let r = http(api, "GET", "/api/users", Some(("watcher", "pw")), None).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.json(),
        json!({"error": "not_authorised", "reason": "Not administrator user"})
    );
    // Monitoring users see every vhost.
    let r = http(api, "GET", "/api/vhosts", Some(("watcher", "pw")), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()[0]["name"], "/");
}

#[tokio::test]
async fn users_are_made_changed_and_deleted_and_their_connections_follow() {
    let (b, api) = broker().await;
    let r = http(
        api,
        "PUT",
        "/api/users/bob",
        ADMIN,
        Some(json!({"password": "pw1", "tags": "management"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = http(
        api,
        "PUT",
        "/api/users/bob",
        ADMIN,
        Some(json!({"password": "pw1", "tags": ["management"]})),
    )
    .await;
    assert_eq!(r.status, 204);
    let u = http(api, "GET", "/api/users/bob", ADMIN, None).await.json();
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert_eq!(u["tags"], json!(["management"]));
    assert_eq!(u["limits"], json!({}));
    assert!(u["password_hash"].as_str().unwrap().len() > 40);
    // A user made with a RabbitMQ hash logs in with its RabbitMQ password.
    let r = http(
        api,
        "PUT",
        "/api/users/alice",
        ADMIN,
        Some(json!({"password_hash": "c+NvRXPDBttATdwsM9PktAScPwRSs2gni2ufuRuUwBqhAgkO", "tags": ""})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = http(
        api,
        "PUT",
        "/api/permissions/%2F/alice",
        ADMIN,
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(r.status, 201);
    drop(login(&b, "alice", "test12", "/").await.unwrap());

    // No permissions on "/": 530 at connection.open.
    let e = login(&b, "bob", "pw1", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(530));
    let r = http(
        api,
        "PUT",
        "/api/permissions/%2F/bob",
        ADMIN,
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = http(api, "GET", "/api/users/bob/permissions", ADMIN, None).await;
    assert_eq!(
        r.json(),
        json!([{"user": "bob", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}])
    );
    // A new password closes the user's connections, and the old one no longer logs in.
    let _conn = login(&b, "bob", "pw1", "/").await.unwrap();
    let mut events = _conn.events_listener();
    let r = http(
        api,
        "PUT",
        "/api/users/bob",
        ADMIN,
        Some(json!({"password": "pw2"})),
    )
    .await;
    assert_eq!(r.status, 204);
    let closed = closed_by_broker(&mut events).await;
    assert_eq!(
        closed,
        (
            320,
            "CONNECTION_FORCED - user 'bob' had its password changed".to_string()
        )
    );
    assert_eq!(
        code(&login(&b, "bob", "pw1", "/").await.unwrap_err()),
        Some(403)
    );
    // Tags were kept by a change that named only the password.
    assert_eq!(
        http(api, "GET", "/api/users/bob", ADMIN, None).await.json()["tags"],
        json!(["management"])
    );
    // Deleting the user closes its connections and takes its permissions.
    let _conn = login(&b, "bob", "pw2", "/").await.unwrap();
    let mut events = _conn.events_listener();
    assert_eq!(
        http(api, "DELETE", "/api/users/bob", ADMIN, None)
            .await
            .status,
        204
    );
    let closed = closed_by_broker(&mut events).await;
    assert_eq!(
        closed,
        (320, "CONNECTION_FORCED - user 'bob' is deleted".to_string())
    );
    assert_eq!(
        http(api, "DELETE", "/api/users/bob", ADMIN, None)
            .await
            .status,
        404
    );
    let r = http(api, "GET", "/api/users/bob", ADMIN, None).await;
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            json!({"error": "Object Not Found", "reason": "Not Found"})
        )
    );
    let all = http(api, "GET", "/api/permissions", ADMIN, None)
        .await
        .json();
    assert!(
        all.as_array().unwrap().iter().all(|p| p["user"] != "bob"),
        "{all}"
    );
}

#[tokio::test]
async fn a_permission_change_applies_to_open_channels_without_reconnecting() {
    let (b, api) = broker().await;
    http(
        api,
        "PUT",
        "/api/users/app",
        ADMIN,
        Some(json!({"password": "pw", "tags": ""})),
    )
    .await;
    let set = |c: &str| {
        let body = json!({"configure": c, "write": ".*", "read": ".*"});
        async move {
            http(api, "PUT", "/api/permissions/%2F/app", ADMIN, Some(body))
                .await
                .status
        }
    };
    assert_eq!(set("^none$").await, 201);
    let conn = login(&b, "app", "pw", "/").await.unwrap();
    let declare = |ch: lapin::Channel| async move {
        ch.queue_declare(
            "q.app".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .map(|_| ())
    };
    let ch = within(conn.create_channel()).await.unwrap();
    let e = within(declare(ch)).await.unwrap_err();
    assert_eq!(code(&e), Some(403));
    assert_eq!(set("^q\\.").await, 204);
    let ch = within(conn.create_channel()).await.unwrap();
    within(declare(ch.clone())).await.unwrap();
    // Read taken away: the same channel's next get is refused (its cached decision is gone).
    let body = json!({"configure": ".*", "write": ".*", "read": "^nothing$"});
    assert_eq!(
        http(api, "PUT", "/api/permissions/%2F/app", ADMIN, Some(body))
            .await
            .status,
        204
    );
    let e = within(ch.basic_get("q.app".into(), BasicGetOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(403));
    // Bad input is 400, as RabbitMQ answers.
    let r = http(
        api,
        "PUT",
        "/api/permissions/%2F/app",
        ADMIN,
        Some(json!({"configure": "(", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = http(
        api,
        "PUT",
        "/api/permissions/nowhere/app",
        ADMIN,
        Some(json!({"configure": ".*", "write": ".*", "read": ".*"})),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "bad_request", "reason": "vhost_or_user_not_found"})
        )
    );
    let r = http(
        api,
        "PUT",
        "/api/permissions/%2F/app",
        ADMIN,
        Some(json!({"configure": ".*", "write": ".*"})),
    )
    .await;
    assert_eq!(
        (r.status, r.json()),
        (
            400,
            json!({"error": "bad_request", "reason": "[{key_missing,read}]"})
        )
    );
    // Topic permissions through the API.
    let r = http(
        api,
        "PUT",
        "/api/topic-permissions/%2F/app",
        ADMIN,
        Some(json!({"exchange": "amq.topic", "write": "^a\\.", "read": ".*"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = http(api, "GET", "/api/topic-permissions/%2F/app", ADMIN, None).await;
    assert_eq!(
        r.json(),
        json!([{"user": "app", "vhost": "/", "exchange": "amq.topic", "write": "^a\\.", "read": ".*"}])
    );
    assert_eq!(
        http(api, "DELETE", "/api/topic-permissions/%2F/app", ADMIN, None)
            .await
            .status,
        204
    );
    assert_eq!(
        http(api, "DELETE", "/api/permissions/%2F/app", ADMIN, None)
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn deleting_a_vhost_closes_its_connections_and_deletes_what_it_held() {
    let (b, api) = broker().await;
    let r = http(
        api,
        "PUT",
        "/api/vhosts/v2",
        ADMIN,
        Some(json!({"description": "second", "tags": "a,b"})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        http(api, "PUT", "/api/vhosts/v2", ADMIN, Some(json!({})))
            .await
            .status,
        204
    );
    let v = http(api, "GET", "/api/vhosts/v2", ADMIN, None).await.json();
    assert_eq!(v["description"], "second");
    assert_eq!(v["tags"], json!(["a", "b"]));
    let r = http(
        api,
        "PUT",
        "/api/permissions/v2/guest",
        ADMIN,
        Some(json!({"configure": "^kept$", "write": ".*", "read": ".*"})),
    )
    .await;
    // 204: as in RabbitMQ, the vhost's creator was given full permissions on it.
    assert_eq!(r.status, 204);
    let conn = login(&b, "guest", "guest", "v2").await.unwrap();
    let mut events = conn.events_listener();
    let ch = within(conn.create_channel()).await.unwrap();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    within(ch.queue_declare("kept".into(), durable, FieldTable::default()))
        .await
        .unwrap();
    assert_eq!(
        http(api, "GET", "/api/vhosts/v2", ADMIN, None).await.json()["messages"],
        0
    );
    assert_eq!(
        http(api, "DELETE", "/api/vhosts/v2", ADMIN, None)
            .await
            .status,
        204
    );
    let closed = closed_by_broker(&mut events).await;
    assert_eq!(
        closed,
        (320, "CONNECTION_FORCED - vhost 'v2' is deleted".to_string())
    );
    assert_eq!(
        http(api, "GET", "/api/vhosts/v2", ADMIN, None).await.status,
        404
    );
    assert_eq!(
        http(api, "DELETE", "/api/vhosts/v2", ADMIN, None)
            .await
            .status,
        404
    );
    // Made again, it is empty: the durable queue went with it, and so did the permissions
    // (the creator has the full ones a new vhost gives it, not the old `^kept$`).
    assert_eq!(
        http(api, "PUT", "/api/vhosts/v2", ADMIN, None).await.status,
        201
    );
    let p = http(api, "GET", "/api/permissions/v2/guest", ADMIN, None).await;
    assert_eq!(p.json()["configure"], ".*");
    let conn = login(&b, "guest", "guest", "v2").await.unwrap();
    let ch = within(conn.create_channel()).await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let e = within(ch.queue_declare("kept".into(), passive, FieldTable::default()))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some(404));
}

#[tokio::test]
async fn limits_set_through_the_api_refuse_new_connections_and_survive_a_restart() {
    let (b, api) = broker().await;
    let r = http(
        api,
        "PUT",
        "/api/vhost-limits/%2F/max-connections",
        ADMIN,
        Some(json!({"value": 0})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.body);
    let r = http(api, "GET", "/api/vhost-limits", ADMIN, None).await;
    assert_eq!(
        r.json(),
        json!([{"vhost": "/", "value": {"max-connections": 0}}])
    );
    let e = login(&b, "guest", "guest", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(530));
    let r = http(
        api,
        "PUT",
        "/api/vhost-limits/%2F/bogus",
        ADMIN,
        Some(json!({"value": 1})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        http(
            api,
            "DELETE",
            "/api/vhost-limits/%2F/max-connections",
            ADMIN,
            None
        )
        .await
        .status,
        204
    );
    // A vhost made through the API, with a durable queue bound to its amq.direct: the
    // built-in exchanges' records are written when the vhost is made (bindings from them are
    // stored by id), so the binding survives the restart.
    http(api, "PUT", "/api/vhosts/v3", ADMIN, None).await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    http(api, "PUT", "/api/permissions/v3/guest", ADMIN, Some(all)).await;
    {
        let conn = login(&b, "guest", "guest", "v3").await.unwrap();
        let ch = within(conn.create_channel()).await.unwrap();
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        within(ch.queue_declare("bound".into(), durable, FieldTable::default()))
            .await
            .unwrap();
        within(ch.queue_bind(
            "bound".into(),
            "amq.direct".into(),
            "k".into(),
            Default::default(),
            FieldTable::default(),
        ))
        .await
        .unwrap();
        let _ = conn.close(200, "bye".into()).await;
    }
    drop(login(&b, "guest", "guest", "/").await.unwrap());
    let r = http(
        api,
        "PUT",
        "/api/user-limits/guest/max-connections",
        ADMIN,
        Some(json!({"value": 1})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        http(api, "GET", "/api/user-limits/guest", ADMIN, None)
            .await
            .json(),
        json!([{"user": "guest", "value": {"max-connections": 1}}])
    );
    let b = b.restart().await;
    let one = login(&b, "guest", "guest", "v3").await.unwrap();
    let ch = within(one.create_channel()).await.unwrap();
    support::publish(&ch, "amq.direct", "k", b"after").await;
    let got = within(ch.basic_get("bound".into(), BasicGetOptions { no_ack: true }))
        .await
        .unwrap();
    assert!(got.is_some(), "the binding from amq.direct came back");
    let e = login(&b, "guest", "guest", "/").await.unwrap_err();
    assert_eq!(code(&e), Some(530), "{e:?}");
    drop(one);
}
