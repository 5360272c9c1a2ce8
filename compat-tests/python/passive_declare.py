"""Passive declares.

* queue.declare passive of a missing queue: channel.close 404 NOT_FOUND.
* exchange.declare passive of a missing exchange: 404 as well.
* Channel errors leave the connection usable.
* Passive declare of an existing queue reports its message and consumer
  counts and does not change the queue.
"""

from common import connect, eq, expect_channel_close, pump, run, unique, wait_until

QUEUE = unique("passive")
MISSING = unique("missing")


def main():
    conn = connect()

    ch = conn.channel()
    expect_channel_close(lambda: ch.queue_declare(MISSING, passive=True),
                         404, "passive declare of a missing queue")
    eq(ch.is_closed, True, "channel closed after 404")
    expect_channel_close(lambda: conn.channel().exchange_declare(MISSING, passive=True),
                         404, "passive declare of a missing exchange")

    ch = conn.channel()
    ch.queue_declare(QUEUE)
    ch.confirm_delivery()
    for _ in range(4):
        ch.basic_publish("", QUEUE, b"x")
    # Two consumers with prefetch 1 each: 2 messages out, 2 ready.
    consumers = []
    for _ in range(2):
        cch = conn.channel()
        cch.basic_qos(prefetch_count=1)
        cch.basic_consume(QUEUE, lambda *a: None, auto_ack=False)
        consumers.append(cch)
    pump(conn, 0.3)

    ok = conn.channel().queue_declare(QUEUE, passive=True)
    eq(ok.method.queue, QUEUE, "declare-ok name")
    eq(ok.method.consumer_count, 2, "declare-ok consumer_count")
    eq(ok.method.message_count, 2, "declare-ok message_count (ready only, 2 unacked)")

    # A passive declare ignores the other flags: no 406 for a mismatch.
    conn.channel().queue_declare(QUEUE, passive=True, durable=True, auto_delete=True)
    expect_channel_close(lambda: conn.channel().queue_declare(MISSING, passive=True),
                         404, "passive declare still 404 (not created by earlier attempts)")

    # Closing the consumers' channels requeues their unacked messages.
    for cch in consumers:
        cch.close()
    wait_until(lambda: ch.queue_declare(QUEUE, passive=True).method.message_count == 4,
               2, "4 ready messages after the consumers closed")
    ok = ch.queue_declare(QUEUE, passive=True)
    eq(ok.method.consumer_count, 0, "consumer_count after the consumers closed")
    eq(ch.queue_delete(QUEUE).method.message_count, 4, "delete-ok message_count")
    conn.close()


if __name__ == "__main__":
    run(main)
