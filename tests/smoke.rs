#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test]
async fn publish_and_get() {
    let b = support::TestBroker::start().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    ch.basic_publish(
        "".into(),
        q.name().as_str().into(),
        BasicPublishOptions::default(),
        b"hi",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = ch
        .basic_get(q.name().as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(got.delivery.data, b"hi");
}
