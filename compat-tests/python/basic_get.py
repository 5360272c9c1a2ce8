"""basic.get, basic.get-empty and round-tripping of content properties.

* get on an empty queue answers get-empty (pika returns (None, None, None)).
* get-ok carries message_count = messages still ready after this one.
* Every basic property, including a header table with nested values, comes
  back exactly as published; an empty body and a body larger than the
  default frame size (131072) round-trip too.
"""

import datetime
import decimal

import pika

from common import connect, eq, run, unique

QUEUE = unique("get")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE)

    eq(ch.basic_get(QUEUE, auto_ack=True), (None, None, None), "get on an empty queue")

    headers = {
        "str": "text",
        "int": 42,
        "negative": -7,
        "big": 2**40,
        "bool": True,
        "decimal": decimal.Decimal("3.14"),
        "time": datetime.datetime(2024, 1, 2, 3, 4, 5),
        "nested": {"a": 1, "b": "two"},
        "list": [1, "x", False],
        "none": None,
    }
    props = pika.BasicProperties(
        content_type="application/json", content_encoding="utf-8", headers=headers,
        delivery_mode=2, priority=5, correlation_id="corr-1", reply_to="reply-q",
        expiration="60000", message_id="msg-1", timestamp=1700000000, type="kind",
        app_id="warren-compat",
    )
    big = bytes(range(256)) * 1024  # 256 KiB: spans several body frames
    ch.basic_publish("", QUEUE, b'{"n": 1}', props)
    ch.basic_publish("", QUEUE, b"")
    ch.basic_publish("", QUEUE, big)

    m, p, body = ch.basic_get(QUEUE, auto_ack=True)
    eq(body, b'{"n": 1}', "first body")
    eq(m.message_count, 2, "get-ok message_count after first get")
    eq((m.exchange, m.routing_key, m.redelivered), ("", QUEUE, False), "get-ok exchange/key/redelivered")
    for field in ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                  "reply_to", "expiration", "message_id", "timestamp", "type", "app_id"):
        eq(getattr(p, field), getattr(props, field), f"property {field}")
    eq(p.headers, headers, "headers table")

    m, p, body = ch.basic_get(QUEUE, auto_ack=True)
    eq((body, m.message_count), (b"", 1), "empty body, message_count")
    eq(p.headers, None, "no headers on a message published without")

    m, _, body = ch.basic_get(QUEUE, auto_ack=False)
    eq(len(body), len(big), "large body length")
    eq(body, big, "large body content")
    eq(m.message_count, 0, "message_count after the last get")
    ch.basic_ack(m.delivery_tag)

    eq(ch.basic_get(QUEUE, auto_ack=True), (None, None, None), "get after draining the queue")
    eq(ch.queue_delete(QUEUE).method.message_count, 0, "messages left at delete")
    conn.close()


if __name__ == "__main__":
    run(main)
