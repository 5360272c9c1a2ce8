"""Message TTLs: per-queue x-message-ttl and per-message expiration both remove messages
that sit unconsumed (the count drops with no consumer asking); expired messages are
dead-lettered with reason "expired"; a dead-lettered message loses its expiration, which
x-death keeps as original-expiration; an invalid expiration closes the channel with 406."""

import time

import pika

from common import connect, eq, expect_channel_close, run, unique

DLX = unique("dlx")
DLQ = unique("dlq")


def count(ch, q):
    return ch.queue_declare(q, passive=True).method.message_count


def main():
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(DLX, "fanout")
    ch.queue_declare(DLQ)
    ch.queue_bind(DLQ, DLX)
    by_queue = unique("ttl-queue")
    by_message = unique("ttl-message")
    ch.queue_declare(by_queue, arguments={"x-message-ttl": 100, "x-dead-letter-exchange": DLX})
    ch.queue_declare(by_message, arguments={"x-dead-letter-exchange": DLX})
    for i in range(3):
        ch.basic_publish("", by_queue, f"q{i}".encode())
    ch.basic_publish("", by_message, b"m0", properties=pika.BasicProperties(expiration="100"))
    time.sleep(0.5)
    eq(count(ch, by_queue), 0, "queue TTL: messages left")
    eq(count(ch, by_message), 0, "message TTL: messages left")
    dead = {}
    while True:
        m, props, body = ch.basic_get(DLQ, auto_ack=True)
        if m is None:
            break
        dead[body.decode()] = props
    eq(sorted(dead), ["m0", "q0", "q1", "q2"], "expired messages dead-lettered")
    for body, props in dead.items():
        eq(props.headers["x-death"][0]["reason"], "expired", f"{body}: x-death reason")
    eq(dead["m0"].expiration, None, "expiration removed from the dead-lettered message")
    eq(dead["m0"].headers["x-death"][0]["original-expiration"], "100", "original-expiration")
    ch.queue_delete(by_queue)
    ch.queue_delete(by_message)
    ch.queue_delete(DLQ)
    ch.exchange_delete(DLX)

    bad = conn.channel()
    q = unique("ttl-bad")
    bad.queue_declare(q)
    bad.basic_publish("", q, b"x", properties=pika.BasicProperties(expiration="soon"))
    expect_channel_close(lambda: bad.queue_declare(q, passive=True), 406, "invalid expiration")
    conn.channel().queue_delete(q)
    conn.close()


if __name__ == "__main__":
    run(main)
