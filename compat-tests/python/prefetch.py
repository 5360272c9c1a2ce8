"""basic.qos prefetch_count.

Ten messages wait in a queue; a consumer with prefetch 3 and manual acks
must get exactly 3 and then nothing until it acks.  Acking one message lets
exactly one more through; a multiple-ack of everything outstanding lets 3
more through; and so on until all 10 have arrived, in order.
"""

from common import Collector, connect, eq, run, unique

QUEUE = unique("prefetch")
PREFETCH = 3


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE)
    bodies = [f"m{i}".encode() for i in range(10)]
    for body in bodies:
        ch.basic_publish("", QUEUE, body)

    ch.basic_qos(prefetch_count=PREFETCH)
    col = Collector(conn, ch, QUEUE, auto_ack=False)

    col.wait_for(3)
    eq(col.bodies(), bodies[:3], "deliveries before any ack (prefetch 3)")
    q = ch.queue_declare(QUEUE, passive=True).method
    eq((q.message_count, q.consumer_count), (7, 1), "(ready messages, consumers) with 3 unacked")

    # Single ack of the first delivery: exactly one more.
    ch.basic_ack(col.deliveries[0][0].delivery_tag)
    col.wait_for(4)
    eq(col.bodies(), bodies[:4], "deliveries after acking one")

    # Multiple ack up to the latest: three more.
    ch.basic_ack(col.deliveries[-1][0].delivery_tag, multiple=True)
    col.wait_for(7)
    eq(col.bodies(), bodies[:7], "deliveries after a multiple ack")

    ch.basic_ack(col.deliveries[-1][0].delivery_tag, multiple=True)
    col.wait_for(10)
    eq(col.bodies(), bodies, "all deliveries")
    tags = [m.delivery_tag for m, _, _ in col.deliveries]
    eq(tags, list(range(1, 11)), "delivery tags on a fresh channel")

    ch.basic_ack(col.deliveries[-1][0].delivery_tag, multiple=True)
    col.cancel()
    eq(ch.queue_delete(QUEUE).method.message_count, 0, "messages left at delete")
    conn.close()


if __name__ == "__main__":
    run(main)
