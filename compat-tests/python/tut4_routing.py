"""Tutorial 4, "Routing": a direct exchange routing logs by severity.

Queue "disk" is bound with the key "error" only; queue "console" is bound
with three keys (info, warning, error).  "debug" is bound nowhere.  Each queue
must receive exactly the messages whose severity it is bound to, in order,
and a message matching several bindings of one queue arrives there once.
"""

from common import Collector, connect, eq, run, unique

EXCHANGE = unique("direct_logs")

# (severity, message) in publish order.
LOGS = [
    ("info", "service started"),
    ("warning", "disk 80% full"),
    ("error", "disk full"),
    ("debug", "x=42"),
    ("error", "cannot write"),
    ("info", "retrying"),
]

BINDINGS = {
    "disk": ["error"],
    "console": ["info", "warning", "error"],
}


def main():
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="direct")

    collectors = {}
    for role, keys in BINDINGS.items():
        rconn = connect()
        rch = rconn.channel()
        queue = rch.queue_declare("", exclusive=True).method.queue
        for key in keys:
            rch.queue_bind(queue, EXCHANGE, routing_key=key)
        # A duplicate binding is a no-op, not a second copy of each message.
        rch.queue_bind(queue, EXCHANGE, routing_key=keys[0])
        collectors[role] = Collector(rconn, rch, queue)

    for severity, text in LOGS:
        ch.basic_publish(EXCHANGE, severity, f"[{severity}] {text}".encode())

    for role, keys in BINDINGS.items():
        expected = [f"[{s}] {t}".encode() for s, t in LOGS if s in keys]
        col = collectors[role]
        col.wait_for(len(expected))
        eq(col.bodies(), expected, f"messages received by {role} (bound to {keys})")
        for method, _, body in col.deliveries:
            eq(method.routing_key, body.decode()[1:].split("]")[0], "delivery routing key")

    for col in collectors.values():
        col.conn.close()
    ch.exchange_delete(EXCHANGE)
    conn.close()


if __name__ == "__main__":
    run(main)
