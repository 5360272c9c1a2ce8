//! `warren ctl`'s topology and diagnostics commands end to end, against the management
//! API's queue, exchange, binding, overview, node, connection, channel, consumer and
//! health-check endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::ctl::{broker, mgmt_url, run};

use support::broker::TestBroker;

async fn amqp(b: &TestBroker) -> lapin::Connection {
    let uri = format!("amqp://guest:guest@{}/%2f", b.addr);
    lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_exchanges_bindings_purge_and_delete() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let b = broker().await;
    let url = mgmt_url(&b);
    let conn = amqp(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "ctl_q".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.queue_bind(
        "ctl_q".into(),
        "amq.direct".into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..3 {
        ch.basic_publish(
            "".into(),
            "ctl_q".into(),
            BasicPublishOptions::default(),
            b"m",
            Default::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }

    let out = run(&url, &["list_queues"], 0).await;
    assert!(
        out.starts_with("Listing queues for vhost / ...\nname\tmessages\n"),
        "{out}"
    );
    assert!(out.contains("ctl_q\t3\n"), "{out}");
    let out = run(
        &url,
        &[
            "-q",
            "--no-table-headers",
            "list_queues",
            "name",
            "durable",
            "arguments",
        ],
        0,
    )
    .await;
    assert!(out.contains("ctl_q\ttrue\t[]\n"), "{out}");
    let out = run(
        &url,
        &["--formatter", "json", "list_queues", "name", "messages"],
        0,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "ctl_q" && q["messages"] == 3),
        "{out}"
    );

    let out = run(&url, &["-q", "list_exchanges"], 0).await;
    assert!(
        out.starts_with("name\ttype\n") && out.contains("amq.direct\tdirect\n"),
        "{out}"
    );
    let out = run(&url, &["-q", "list_bindings"], 0).await;
    assert!(
        out.contains("amq.direct\texchange\tctl_q\tqueue\tk\t[]\n"),
        "{out}"
    );
    assert!(
        out.contains("\texchange\tctl_q\tqueue\tctl_q\t[]\n"),
        "{out}"
    );

    let out = run(&url, &["purge_queue", "ctl_q"], 0).await;
    assert_eq!(out, "Purging queue 'ctl_q' in vhost '/' ...\n");
    assert!(run(&url, &["-q", "list_queues"], 0)
        .await
        .contains("ctl_q\t0\n"));
    run(&url, &["purge_queue", "no_such_q"], 69).await;
    let out = run(&url, &["-q", "delete_queue", "ctl_q"], 0).await;
    assert_eq!(
        out,
        "Queue was successfully deleted with 0 ready messages\n"
    );
    run(&url, &["delete_queue", "ctl_q"], 69).await;
    conn.close(200, "bye".into()).await.unwrap();
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_consumers_and_close() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    let b = broker().await;
    let url = mgmt_url(&b);
    let conn = amqp(&b).await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "ctl_c".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Kept: lapin cancels a consumer it drops.
    let _consumer = ch
        .basic_consume(
            "ctl_c".into(),
            "tag1".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let out = run(&url, &["-q", "list_connections"], 0).await;
    assert!(
        out.starts_with("user\tpeer_host\tpeer_port\tstate\n"),
        "{out}"
    );
    assert!(out.contains("guest\t127.0.0.1\t"), "{out}");
    let out = run(&url, &["-q", "list_channels", "user", "consumer_count"], 0).await;
    assert!(out.contains("guest\t1\n"), "{out}");
    let out = run(
        &url,
        &["-q", "list_consumers", "queue_name", "consumer_tag"],
        0,
    )
    .await;
    assert!(out.contains("ctl_c\ttag1\n"), "{out}");

    let name = run(
        &url,
        &["-q", "--no-table-headers", "list_connections", "name"],
        0,
    )
    .await;
    let name = name.lines().next().unwrap().to_string();
    run(&url, &["close_connection", &name, "go away"], 0).await;
    run(&url, &["close_connection", "no such connection", "x"], 69).await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_health_checks() {
    let b = broker().await;
    let url = mgmt_url(&b);
    assert_eq!(run(&url, &["-q", "ping"], 0).await, "Ping succeeded\n");
    run(&url, &["await_startup", "--timeout", "5"], 0).await;
    let out = run(&url, &["check_running"], 0).await;
    assert!(out.contains("is fully booted and running"), "{out}");
    run(&url, &["check_local_alarms"], 0).await;
    run(&url, &["check_alarms"], 0).await;
    run(&url, &["check_port_connectivity"], 0).await;
    let amqp_port = b.addr.port().to_string();
    run(&url, &["check_port_listener", &amqp_port], 0).await;
    run(&url, &["check_port_listener", "1"], 69).await;
    let out = run(&url, &["status"], 0).await;
    for want in [
        "Status of node ",
        "Runtime",
        "Alarms",
        "Memory",
        "Listeners",
        "protocol: amqp",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let out = run(&url, &["--formatter", "json", "status"], 0).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["overview"]["node"].is_string(), "{out}");
    b.handle.shutdown().await;
}
