//! The management API's status endpoints over real HTTP, shapes checked against RabbitMQ
//! 3.10.8's management plugin: the overview's totals following AMQP activity, connections
//! (listed with their client properties, closed by DELETE with 320 and the `X-Reason`),
//! channels and consumers, health checks (200, or 503 with RabbitMQ's body), the aliveness
//! test, and message rates after a sample period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};
use support::http::{http, Reply};
use support::{code, text, within, TestBroker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN: Option<(&str, &str)> = Some(("guest", "guest"));

async fn broker() -> (TestBroker, SocketAddr) {
    let b = TestBroker::start_with(|c| {
        c.management_listen = Some("127.0.0.1:0".parse().unwrap());
        c.management_sample_interval = Duration::from_millis(100);
    })
    .await;
    let api = b.handle.management_addr.unwrap();
    (b, api)
}

async fn get(api: SocketAddr, path: &str) -> Value {
    let r = http(api, "GET", path, ADMIN, None).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// A connection named `name` in its client properties (RabbitMQ's `user_provided_name`).
async fn connect(b: &TestBroker, name: &str) -> Connection {
    let p = ConnectionProperties::default().with_connection_name(name.into());
    within(Connection::connect(
        &format!("amqp://guest:guest@{}/%2f", b.addr),
        p,
    ))
    .await
    .unwrap()
}

/// The listed connection whose client named it `name`.
async fn listed(api: SocketAddr, name: &str) -> Value {
    let all = get(api, "/api/connections").await;
    all.as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_properties"]["connection_name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {all}"))
}

fn encode(s: &str) -> String {
    s.replace('%', "%25")
        .replace(' ', "%20")
        .replace(':', "%3A")
        .replace('>', "%3E")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace('/', "%2F")
}

/// A request with extra headers (the shared client sends none).
async fn http_with(api: SocketAddr, method: &str, path: &str, headers: &str) -> Reply {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("guest:guest");
    let mut s = tokio::net::TcpStream::connect(api).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\nAuthorization: Basic {auth}\r\n{headers}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    within(s.read_to_end(&mut out)).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Reply {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        headers: head.to_lowercase(),
        body: body.to_string(),
    }
}

/// Polls the overview until `f` holds of it (the rates need a sample or two).
async fn overview_until(api: SocketAddr, f: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let o = get(api, "/api/overview").await;
        if f(&o) {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the overview never got there");
}

#[tokio::test]
async fn overview_totals_follow_connections_channels_queues_and_consumers() {
    let (b, api) = broker().await;
    let before = get(api, "/api/overview").await;
    assert_eq!(before["product_name"], "Warren");
    assert_eq!(before["statistics_db_event_queue"], 0);
    assert_eq!(before["object_totals"]["connections"], 0);
    let node = get(api, "/api/nodes").await[0].clone();
    assert_eq!(before["node"], node["name"]);
    assert_eq!(node["type"], "disc");
    assert_eq!(node["running"], true);
    assert!(node["mem_used"].as_u64().unwrap() > 0);
    assert_eq!(node["mem_alarm"], false);
    let one = get(
        api,
        &format!("/api/nodes/{}", encode(node["name"].as_str().unwrap())),
    )
    .await;
    assert_eq!(one["name"], node["name"]);
    assert_eq!(
        http(api, "GET", "/api/nodes/rabbit@nowhere", ADMIN, None)
            .await
            .status,
        404
    );
    let listeners = before["listeners"].as_array().unwrap();
    assert!(listeners
        .iter()
        .any(|l| l["protocol"] == "amqp" && l["port"] == b.addr.port()));
    assert!(listeners
        .iter()
        .any(|l| l["protocol"] == "http" && l["port"] == api.port()));

    let conn = connect(&b, "totals").await;
    let ch = conn.create_channel().await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    let _consumer = ch
        .basic_consume(
            q.as_str().into(),
            "c1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let after = get(api, "/api/overview").await;
    let (t0, t1) = (&before["object_totals"], &after["object_totals"]);
    assert_eq!(t1["connections"], 1);
    assert_eq!(t1["channels"], 1);
    assert_eq!(
        t1["queues"].as_u64().unwrap(),
        t0["queues"].as_u64().unwrap() + 1
    );
    assert_eq!(t1["consumers"], 1);
    assert_eq!(t1["exchanges"], t0["exchanges"]);

    // A management user counts its own vhosts and connections only, and is no monitor.
    let put = |path: &'static str, body: Value| async move {
        let r = http(api, "PUT", path, ADMIN, Some(body)).await;
        assert!(r.status == 201 || r.status == 204, "{path}: {}", r.body);
    };
    put(
        "/api/users/mgr",
        json!({"password": "p", "tags": "management"}),
    )
    .await;
    put("/api/vhosts/other", json!({})).await;
    let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
    put("/api/permissions/other/mgr", all).await;
    let mgr = Some(("mgr", "p"));
    let r = http(api, "GET", "/api/overview", mgr, None).await;
    let t = &r.json()["object_totals"];
    assert_eq!(
        (t["connections"].clone(), t["queues"].clone()),
        (json!(0), json!(0))
    );
    assert_eq!(
        t["exchanges"].as_u64().unwrap(),
        t0["exchanges"].as_u64().unwrap()
    );
    let r = http(api, "GET", "/api/nodes", mgr, None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["reason"], "Not monitor user");
}

#[tokio::test]
async fn a_connection_is_listed_and_delete_closes_it_with_320_and_the_reason() {
    let (b, api) = broker().await;
    let conn = connect(&b, "status-test").await;
    let mut events = conn.events_listener();
    let c = listed(api, "status-test").await;
    let name = c["name"].as_str().unwrap().to_string();
    assert_eq!(
        name,
        format!(
            "{} -> {}",
            c["peer_host"].as_str().unwrap().to_owned() + ":" + &c["peer_port"].to_string(),
            b.addr
        )
    );
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    assert_eq!(c["auth_mechanism"], "PLAIN");
    assert_eq!(c["ssl"], false);
    assert_eq!(c["user_provided_name"], "status-test");
    assert_eq!(c["client_properties"]["product"], "lapin");
    assert!(c["client_properties"]["capabilities"]["publisher_confirms"]
        .as_bool()
        .unwrap());
    let path = format!("/api/connections/{}", encode(&name));
    assert_eq!(get(api, &path).await["name"], name.as_str());
    let mine = get(api, "/api/connections/username/guest").await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    assert_eq!(
        get(api, "/api/vhosts/%2F/connections")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = http_with(api, "DELETE", &path, "X-Reason: bye now\r\n").await;
    assert_eq!(r.status, 204, "{}", r.body);
    let e = support::next_error(&mut events).await;
    assert_eq!(code(&e), Some(320));
    assert!(text(&e).contains("bye now"), "{}", text(&e));
    overview_until(api, |o| o["object_totals"]["connections"] == 0).await;
    let r = http(api, "GET", &path, ADMIN, None).await;
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json(),
        json!({"error": "Object Not Found", "reason": "Not Found"})
    );

    // No X-Reason: RabbitMQ's own text.
    let conn = connect(&b, "second").await;
    let mut events = conn.events_listener();
    let r = http_with(api, "DELETE", "/api/connections/username/guest", "").await;
    assert_eq!(r.status, 204);
    let e = support::next_error(&mut events).await;
    assert_eq!(code(&e), Some(320));
    assert!(
        text(&e).contains("Closed via management plugin"),
        "{}",
        text(&e)
    );
}

#[tokio::test]
async fn channels_and_consumers_are_listed_with_their_settings() {
    let (b, api) = broker().await;
    let conn = connect(&b, "chans").await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    ch.basic_qos(7, BasicQosOptions::default()).await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    let _consumer = ch
        .basic_consume(
            q.as_str().into(),
            "ctag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let conn_name = listed(api, "chans").await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let chans = get(api, "/api/channels").await;
    let c = &chans[0];
    assert_eq!(c["name"], format!("{conn_name} (1)"));
    assert_eq!(c["number"], 1);
    assert_eq!(c["connection_details"]["name"], conn_name.as_str());
    assert_eq!(c["confirm"], true);
    assert_eq!(c["transactional"], false);
    assert_eq!(c["prefetch_count"], 7);
    assert_eq!(c["consumer_count"], 1);
    assert_eq!(c["messages_unacknowledged"], 0);
    assert_eq!(c["state"], "running");
    let one = get(
        api,
        &format!("/api/channels/{}", encode(&format!("{conn_name} (1)"))),
    )
    .await;
    assert_eq!(one["number"], 1);
    let of_conn = get(
        api,
        &format!("/api/connections/{}/channels", encode(&conn_name)),
    )
    .await;
    assert_eq!(of_conn.as_array().unwrap().len(), 1);
    assert_eq!(
        get(api, "/api/vhosts/%2F/channels")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let missing = format!("/api/channels/{}", encode(&format!("{conn_name} (9)")));
    assert_eq!(http(api, "GET", &missing, ADMIN, None).await.status, 404);

    let consumers = get(api, "/api/consumers").await;
    let k = &consumers[0];
    assert_eq!(k["consumer_tag"], "ctag");
    assert_eq!(k["queue"], json!({"name": q, "vhost": "/"}));
    assert_eq!(k["ack_required"], true);
    assert_eq!(k["prefetch_count"], 7);
    assert_eq!(k["channel_details"]["connection_name"], conn_name.as_str());
    assert_eq!(k["activity_status"], "up");
    assert_eq!(get(api, "/api/consumers/%2F").await, consumers);
}

#[tokio::test]
async fn health_checks_answer_200_or_rabbitmqs_503() {
    let (b, api) = broker().await;
    let ok = json!({"status": "ok"});
    for p in [
        "alarms",
        "local-alarms",
        "virtual-hosts",
        "ready-to-serve-clients",
        "is-in-service",
        "certificate-expiration/1/months",
    ] {
        assert_eq!(
            get(api, &format!("/api/health/checks/{p}")).await,
            ok,
            "{p}"
        );
    }
    let r = http(
        api,
        "GET",
        "/api/health/checks/certificate-expiration/1/eons",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    let port = b.addr.port();
    let r = get(api, &format!("/api/health/checks/port-listener/{port}")).await;
    assert_eq!(r, json!({"status": "ok", "port": port}));
    let r = http(
        api,
        "GET",
        "/api/health/checks/port-listener/1",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 503);
    let body = r.json();
    assert_eq!(body["status"], "failed");
    assert_eq!(body["reason"], "No active listener");
    assert_eq!(body["missing"], 1);
    assert!(body["ports"].as_array().unwrap().contains(&json!(port)));
    let r = get(api, "/api/health/checks/protocol-listener/amqp").await;
    assert_eq!(r, json!({"status": "ok", "protocol": "amqp"}));
    let r = http(
        api,
        "GET",
        "/api/health/checks/protocol-listener/amqps",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["missing"], "amqp/ssl");

    b.handle.set_alarm(Some("test"));
    let r = http(api, "GET", "/api/health/checks/alarms", ADMIN, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json()["reason"],
        "There are alarms in effect in the cluster"
    );
    b.handle.set_alarm(None);

    assert_eq!(get(api, "/api/aliveness-test/%2F").await, ok);
    assert_eq!(
        http(api, "GET", "/api/aliveness-test/nope", ADMIN, None)
            .await
            .status,
        404
    );
    let r = http(
        api,
        "PUT",
        "/api/cluster-name",
        ADMIN,
        Some(json!({"name": "burrow"})),
    )
    .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        get(api, "/api/cluster-name").await,
        json!({"name": "burrow"})
    );
    assert_eq!(get(api, "/api/overview").await["cluster_name"], "burrow");
    assert_eq!(get(api, "/api/extensions").await, json!([]));
    assert_eq!(get(api, "/api/feature-flags").await, json!([]));
}

#[tokio::test]
async fn message_rates_become_non_zero_after_publishing_for_a_sample() {
    let (b, api) = broker().await;
    let conn = connect(&b, "rates").await;
    let ch = conn.create_channel().await.unwrap();
    let q = support::exclusive_queue(&ch).await;
    for _ in 0..100 {
        support::publish(&ch, "", &q, b"m").await;
    }
    let _ = support::message_count(&ch, &q).await;
    let o = overview_until(api, |o| {
        let s = &o["message_stats"];
        s["publish"] == 100
            && s["publish_details"]["rate"].as_f64().unwrap() > 0.0
            && o["queue_totals"]["messages_ready"] == 100
    })
    .await;
    assert_eq!(o["message_stats"]["deliver_get"], 0);
    // The rate falls back to 0 once publishing stops (two samples without change).
    overview_until(api, |o| {
        o["message_stats"]["publish_details"]["rate"] == 0.0
    })
    .await;
    // Gets count as deliver_get, with their own rate.
    for _ in 0..10 {
        let got = ch
            .basic_get(
                q.as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await;
        assert!(got.unwrap().is_some());
    }
    overview_until(api, |o| {
        let s = &o["message_stats"];
        s["get_no_ack"] == 10
            && s["deliver_get"] == 10
            && s["get_no_ack_details"]["rate"].as_f64().unwrap() > 0.0
    })
    .await;
}
