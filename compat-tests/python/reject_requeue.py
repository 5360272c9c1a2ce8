"""basic.reject and basic.nack.

* reject(requeue=True) puts the message back; it is redelivered with
  redelivered=True and the same body.
* reject(requeue=False) drops it (no dead-letter exchange configured).
* nack(multiple=True, requeue=True) up to the 2nd of three unacked deliveries
  requeues exactly the first two; the third stays unacked.
* nack(multiple=True, requeue=False) drops everything outstanding.
* Closing a channel with unacked messages requeues them too.
"""

from common import Collector, connect, eq, pump, run, unique, wait_until

QUEUE = unique("reject")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE)

    # --- basic.reject via basic.get --------------------------------------
    ch.basic_publish("", QUEUE, b"reject me")
    m, _, body = ch.basic_get(QUEUE, auto_ack=False)
    eq((body, m.redelivered), (b"reject me", False), "first get (body, redelivered)")
    ch.basic_reject(m.delivery_tag, requeue=True)

    m, _, body = ch.basic_get(QUEUE, auto_ack=False)
    eq((body, m.redelivered), (b"reject me", True), "get after reject(requeue=True)")
    ch.basic_reject(m.delivery_tag, requeue=False)
    m, _, _ = ch.basic_get(QUEUE, auto_ack=False)
    eq(m, None, "get after reject(requeue=False) (must be get-empty)")

    # --- basic.nack multiple via a consumer --------------------------------
    for body in (b"n1", b"n2", b"n3"):
        ch.basic_publish("", QUEUE, body)
    col = Collector(conn, ch, QUEUE, auto_ack=False)
    col.wait_for(3)
    eq(col.bodies(), [b"n1", b"n2", b"n3"], "first deliveries")
    eq([m.redelivered for m, _, _ in col.deliveries], [False] * 3, "redelivered flags, first time")

    # Requeue n1 and n2 only (multiple up to n2's tag); n3 stays unacked.
    ch.basic_nack(col.deliveries[1][0].delivery_tag, multiple=True, requeue=True)
    col.wait_for(5)
    again = col.deliveries[3:]
    # RabbitMQ puts requeued messages back at their original position, so
    # they come back in order; only the set matters for the AMQP spec.
    eq(sorted(b for _, _, b in again), [b"n1", b"n2"], "messages requeued by nack(multiple)")
    eq([m.redelivered for m, _, _ in again], [True, True], "redelivered flags after nack")

    # Drop everything outstanding (n3 and the two redeliveries).
    ch.basic_nack(col.deliveries[-1][0].delivery_tag, multiple=True, requeue=False)
    pump(conn, 0.4)
    eq(len(col.deliveries), 5, "deliveries after nack(requeue=False) (nothing may come back)")
    col.cancel()
    eq(ch.queue_declare(QUEUE, passive=True).method.message_count, 0,
       "messages left after nack(requeue=False)")

    # --- unacked messages are requeued when their channel closes ----------
    ch.basic_publish("", QUEUE, b"orphan")
    ch2 = conn.channel()
    m, _, body = ch2.basic_get(QUEUE, auto_ack=False)
    eq((body, m.redelivered), (b"orphan", False), "get on second channel")
    ch2.close()
    # Requeue-on-close may complete just after close-ok; allow a moment.
    wait_until(lambda: ch.queue_declare(QUEUE, passive=True).method.message_count == 1,
               2, "the unacked message to be requeued after channel.close")
    m, _, body = ch.basic_get(QUEUE, auto_ack=True)
    eq((body, m.redelivered), (b"orphan", True), "get after the holding channel closed")

    eq(ch.queue_delete(QUEUE).method.message_count, 0, "messages left at delete")
    conn.close()


if __name__ == "__main__":
    run(main)
