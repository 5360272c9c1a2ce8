"""Mandatory publishing and basic.return (no confirms involved).

* An unroutable mandatory message (direct exchange, key bound to nothing)
  comes back as basic.return 312 NO_ROUTE, with exchange, routing key, body
  (binary, including NUL and 0xFF bytes) and properties intact.
* The same via the default exchange to a queue name that does not exist.
* A routable mandatory message is delivered, not returned.
* An unroutable message without the mandatory flag is silently dropped.
"""

import pika

from common import connect, eq, pump, pump_until, run, unique

EXCHANGE = unique("mandatory")
QUEUE = unique("mandatory-q")
BODY = b"\x00\x01binary\xff\xfe body \x00"


def main():
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="direct")
    ch.queue_declare(QUEUE)
    ch.queue_bind(QUEUE, EXCHANGE, routing_key="bound")

    returns = []
    ch.add_on_return_callback(lambda _ch, method, props, body: returns.append((method, props, body)))

    props = pika.BasicProperties(content_type="application/octet-stream",
                                 message_id="m-1", headers={"x-test": "kept"})
    ch.basic_publish(EXCHANGE, "unbound", BODY, props, mandatory=True)
    ch.basic_publish("", unique("no-such-queue"), b"to nowhere", mandatory=True)
    ch.basic_publish(EXCHANGE, "bound", b"routable", mandatory=True)
    ch.basic_publish(EXCHANGE, "unbound", b"dropped silently", mandatory=False)

    pump_until(conn, lambda: len(returns) >= 2, 5, "2 basic.return frames")
    pump(conn, 0.5)  # a wrongly returned routable/non-mandatory message would show up here
    eq(len(returns), 2, f"number of returned messages ({[b for _, _, b in returns]})")

    method, rprops, body = returns[0]
    eq(method.reply_code, 312, "basic.return reply-code")
    eq(method.exchange, EXCHANGE, "basic.return exchange")
    eq(method.routing_key, "unbound", "basic.return routing key")
    eq(body, BODY, "returned body")
    eq(rprops.content_type, "application/octet-stream", "returned content_type")
    eq(rprops.message_id, "m-1", "returned message_id")
    eq(rprops.headers, {"x-test": "kept"}, "returned headers")

    method, _, body = returns[1]
    eq(method.reply_code, 312, "basic.return reply-code (default exchange)")
    eq(method.exchange, "", "basic.return exchange (default exchange)")
    eq(body, b"to nowhere", "returned body (default exchange)")

    # Exactly the routable message reached the queue.
    m, _, body = ch.basic_get(QUEUE, auto_ack=True)
    eq(body, b"routable", "routed mandatory message")
    eq(m.message_count, 0, "messages left after the routed one")

    ch.queue_delete(QUEUE)
    ch.exchange_delete(EXCHANGE)
    conn.close()


if __name__ == "__main__":
    run(main)
