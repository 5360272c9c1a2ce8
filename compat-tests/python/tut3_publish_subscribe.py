"""Tutorial 3, "Publish/Subscribe": a fanout exchange broadcasting logs.

Two subscribers each declare an exclusive, server-named queue and bind it to
the fanout exchange.  Every log line must reach both of them, in order.  A line
emitted before anyone subscribed is dropped (fanout to nobody), and the
exclusive queues disappear when their connection closes.
"""

from common import Collector, check, connect, eq, expect_channel_close, run, unique

EXCHANGE = unique("logs")


def subscribe(conn):
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="fanout")
    ok = ch.queue_declare("", exclusive=True)
    name = ok.method.queue
    check(name != "", "server-named queue: declare-ok returned an empty name")
    eq(ok.method.message_count, 0, "fresh server-named queue message count")
    ch.queue_bind(name, EXCHANGE)  # routing key ignored by fanout
    return Collector(conn, ch, name)


def main():
    emitter = connect()
    ech = emitter.channel()
    ech.exchange_declare(EXCHANGE, exchange_type="fanout")
    # Nobody listens yet: this one must vanish, not be buffered somewhere.
    ech.basic_publish(EXCHANGE, "", b"lost: before any subscriber")

    sub_conns = [connect(), connect()]
    subs = [subscribe(c) for c in sub_conns]
    check(subs[0].queue != subs[1].queue, "two server-named queues got the same name")

    lines = [f"log line {i}".encode() for i in range(5)]
    for i, line in enumerate(lines):
        # The routing key must not matter for a fanout exchange.
        ech.basic_publish(EXCHANGE, f"ignored.{i}", line)

    for i, sub in enumerate(subs):
        sub.wait_for(len(lines))
        eq(sub.bodies(), lines, f"subscriber {i} log lines")
        for method, _, _ in sub.deliveries:
            eq(method.exchange, EXCHANGE, f"subscriber {i} delivery exchange")

    # Exclusive queues are deleted with their owning connection.
    names = [s.queue for s in subs]
    for c in sub_conns:
        c.close()
    for name in names:
        expect_channel_close(lambda: emitter.channel().queue_declare(name, passive=True),
                             404, f"passive declare of closed subscriber's queue {name}")

    ech.exchange_delete(EXCHANGE)
    emitter.close()


if __name__ == "__main__":
    run(main)
