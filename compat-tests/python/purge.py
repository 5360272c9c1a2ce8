"""queue.purge.

purge-ok reports how many ready messages were removed.  Messages delivered
but not yet acked are not purged: after 7 publishes and one unacked get,
purge removes 6, and rejecting the unacked one puts exactly 1 back.
"""

from common import connect, eq, run, unique

QUEUE = unique("purge")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE)
    ch.confirm_delivery()  # so every publish is known to be enqueued before purging

    eq(ch.queue_purge(QUEUE).method.message_count, 0, "purge of an empty queue")

    for i in range(7):
        ch.basic_publish("", QUEUE, f"p{i}".encode())
    m, _, body = ch.basic_get(QUEUE, auto_ack=False)
    eq(body, b"p0", "body of the unacked get")

    eq(ch.queue_purge(QUEUE).method.message_count, 6, "purge-ok message_count (one message unacked)")
    eq(ch.queue_declare(QUEUE, passive=True).method.message_count, 0, "ready messages after purge")
    eq(ch.queue_purge(QUEUE).method.message_count, 0, "second purge")

    ch.basic_reject(m.delivery_tag, requeue=True)
    m, _, body = ch.basic_get(QUEUE, auto_ack=True)
    eq((body, m.redelivered, m.message_count), (b"p0", True, 0), "the unacked message after requeue")

    for i in range(3):
        ch.basic_publish("", QUEUE, b"x")
    eq(ch.queue_delete(QUEUE).method.message_count, 3, "delete-ok message_count")
    conn.close()


if __name__ == "__main__":
    run(main)
