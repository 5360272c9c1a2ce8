//! Writes the seed corpora: a valid frame of every AMQP 0-9-1 method a client can send (and
//! some it cannot), content headers with and without nested headers tables, bodies,
//! heartbeats, a publish sequence; tables nested and wide; SASL responses; config files;
//! store records. `cargo run --bin gen_seeds` from `fuzz/`.

use std::path::Path;

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{
    basic, channel, confirm, connection, exchange, queue, tx, AMQPClass,
};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

fn frame(f: &AMQPFrame) -> Vec<u8> {
    let (b, _) = gen_frame(f)(WriteContext::from(Vec::new()))
        .expect("encode")
        .into_inner();
    b
}

fn table_bytes(t: &FieldTable) -> Vec<u8> {
    let (b, _) = amq_protocol::types::generation::gen_field_table(t)(WriteContext::from(Vec::new()))
        .expect("encode")
        .into_inner();
    b
}

fn nested(depth: usize) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("leaf".into(), AMQPValue::LongInt(1));
    for _ in 1..depth {
        let mut outer = FieldTable::default();
        outer.insert("t".into(), AMQPValue::FieldTable(t));
        t = outer;
    }
    t
}

fn wide(n: usize) -> FieldTable {
    let mut t = FieldTable::default();
    for i in 0..n {
        t.insert(format!("k{i}").into(), AMQPValue::LongString(LongString::from("v")));
    }
    let mut a = FieldArray::default();
    for i in 0..n {
        a.push(AMQPValue::ShortInt(i as i16));
    }
    t.insert("array".into(), AMQPValue::FieldArray(a));
    t
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let m = |c: AMQPClass| AMQPFrame::Method(1, c);
    let args = wide(4);
    let methods: Vec<(&str, AMQPFrame)> = vec![
        ("connection-start", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start { version_major: 0, version_minor: 9, server_properties: wide(3), mechanisms: "PLAIN".into(), locales: "en_US".into() })))),
        ("connection-start-ok", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk { client_properties: nested(3), mechanism: "PLAIN".into(), response: "\0guest\0guest".into(), locale: "en_US".into() })))),
        ("connection-tune-ok", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk { channel_max: 2047, frame_max: 131072, heartbeat: 60 })))),
        ("connection-open", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open { virtual_host: "/".into() })))),
        ("connection-close", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close { reply_code: 200, reply_text: "bye".into(), class_id: 0, method_id: 0 })))),
        ("connection-close-ok", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})))),
        ("connection-blocked", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked { reason: "low on memory".into() })))),
        ("connection-update-secret", AMQPFrame::Method(0, AMQPClass::Connection(connection::AMQPMethod::UpdateSecret(connection::UpdateSecret { new_secret: "s".into(), reason: "r".into() })))),
        ("channel-open", m(AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})))),
        ("channel-close", m(AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close { reply_code: 200, reply_text: "".into(), class_id: 0, method_id: 0 })))),
        ("channel-close-ok", m(AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})))),
        ("channel-flow", m(AMQPClass::Channel(channel::AMQPMethod::Flow(channel::Flow { active: true })))),
        ("exchange-declare", m(AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare { exchange: "x".into(), kind: "topic".into(), durable: true, arguments: args.clone(), ..Default::default() })))),
        ("exchange-delete", m(AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete { exchange: "x".into(), ..Default::default() })))),
        ("exchange-bind", m(AMQPClass::Exchange(exchange::AMQPMethod::Bind(exchange::Bind { destination: "d".into(), source: "s".into(), routing_key: "a.#".into(), arguments: args.clone(), ..Default::default() })))),
        ("exchange-unbind", m(AMQPClass::Exchange(exchange::AMQPMethod::Unbind(exchange::Unbind { destination: "d".into(), source: "s".into(), routing_key: "a.#".into(), arguments: args.clone(), ..Default::default() })))),
        ("queue-declare", m(AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare { queue: "q".into(), durable: true, arguments: nested(4), ..Default::default() })))),
        ("queue-bind", m(AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind { queue: "q".into(), exchange: "amq.topic".into(), routing_key: "#.a.*".into(), arguments: args.clone(), ..Default::default() })))),
        ("queue-purge", m(AMQPClass::Queue(queue::AMQPMethod::Purge(queue::Purge { queue: "q".into(), ..Default::default() })))),
        ("queue-delete", m(AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete { queue: "q".into(), ..Default::default() })))),
        ("queue-unbind", m(AMQPClass::Queue(queue::AMQPMethod::Unbind(queue::Unbind { queue: "q".into(), exchange: "amq.topic".into(), routing_key: "k".into(), arguments: args.clone() })))),
        ("basic-qos", m(AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos { prefetch_count: 100, global: false })))),
        ("basic-consume", m(AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume { queue: "q".into(), consumer_tag: "c".into(), arguments: args.clone(), ..Default::default() })))),
        ("basic-cancel", m(AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel { consumer_tag: "c".into(), nowait: false })))),
        ("basic-get", m(AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get { queue: "q".into(), no_ack: false })))),
        ("basic-ack", m(AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack { delivery_tag: 7, multiple: true })))),
        ("basic-reject", m(AMQPClass::Basic(basic::AMQPMethod::Reject(basic::Reject { delivery_tag: 7, requeue: true })))),
        ("basic-nack", m(AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack { delivery_tag: 7, multiple: false, requeue: false })))),
        ("basic-recover", m(AMQPClass::Basic(basic::AMQPMethod::Recover(basic::Recover { requeue: true })))),
        ("basic-recover-async", m(AMQPClass::Basic(basic::AMQPMethod::RecoverAsync(basic::RecoverAsync { requeue: true })))),
        ("confirm-select", m(AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select { nowait: false })))),
        ("tx-select", m(AMQPClass::Tx(tx::AMQPMethod::Select(tx::Select {})))),
        ("tx-commit", m(AMQPClass::Tx(tx::AMQPMethod::Commit(tx::Commit {})))),
        ("tx-rollback", m(AMQPClass::Tx(tx::AMQPMethod::Rollback(tx::Rollback {})))),
        ("heartbeat", AMQPFrame::Heartbeat),
    ];
    let publish = m(AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish { exchange: "".into(), routing_key: "q".into(), mandatory: true, immediate: false })));
    let mut props = AMQPProperties::default().with_delivery_mode(2).with_expiration("1000".into()).with_priority(3);
    props = props.with_headers(wide(3));
    let header = AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 10, properties: props });
    let body = AMQPFrame::Body(1, b"0123456789".to_vec());
    let mut publish_seq = frame(&publish);
    publish_seq.extend(frame(&header));
    publish_seq.extend(frame(&body));
    for dir in ["frame_decoder", "content_assembly"] {
        let d = root.join(dir);
        for (name, f) in &methods {
            write(&d, name, &frame(f));
        }
        write(&d, "publish-header-body", &publish_seq);
        let mut all = Vec::new();
        for (_, f) in &methods {
            all.extend(frame(f));
        }
        all.extend(&publish_seq);
        write(&d, "every-method", &all);
    }
    let d = root.join("field_table");
    write(&d, "nested-8", &table_bytes(&nested(8)));
    write(&d, "wide-64", &table_bytes(&wide(64)));
    write(&d, "empty", &[0, 0, 0, 0]);
    // A content header's flags + property list (what PropertyIndex reads).
    let h = frame(&header);
    write(&d, "properties", &h[7 + 12..h.len() - 1]);
    let d = root.join("sasl");
    write(&d, "plain", b"\0guest\0guest");
    let mut login = FieldTable::default();
    login.insert("LOGIN".into(), AMQPValue::LongString(LongString::from("guest")));
    login.insert("PASSWORD".into(), AMQPValue::LongString(LongString::from("guest")));
    write(&d, "amqplain", &table_bytes(&login)[4..]);
    let d = root.join("config");
    write(&d, "full", br#"listen = ["127.0.0.1:5672"]
data_dir = "/tmp/w"
metrics_listen = "off"
vhosts = ["/", "v"]
frame_max = 131072
channel_max = 2047
heartbeat = 60
memory_high_watermark = 0.4
disk_free_limit = "50MB"
consumer_timeout = 1800000
[[users]]
name = "guest"
password = "guest"
remote = false
"#);
    write(&d, "limits", b"memory_high_watermark = \"2GiB\"\ndisk_free_limit = 1.5\n");
    let d = root.join("store_records");
    // split byte, then key ++ value
    let mut q = vec![9u8, b'q'];
    q.extend_from_slice(&42u64.to_be_bytes());
    q.extend_from_slice(&[1, b'/', 6]);
    q.extend_from_slice(b"orders");
    q.push(0);
    q.extend_from_slice(&table_bytes(&wide(2)));
    write(&d, "queue", &q);
    let mut msg = vec![0u8, 1, 1, b'x', 1, b'k'];
    msg.extend_from_slice(&3u32.to_be_bytes());
    msg.extend_from_slice(&[0x10, 0, 2]);
    msg.extend_from_slice(b"body");
    write(&d, "message", &msg);
    println!("seeds written under {}", root.display());
}
