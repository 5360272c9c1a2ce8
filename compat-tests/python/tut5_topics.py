"""Tutorial 5, "Topics": a topic exchange with `*` and `#` patterns.

Several queues are bound with patterns; a table of routing keys says which
queues each message must reach.  Covers `*` = exactly one word, `#` = zero or
more words (including zero words at the end, in the middle and for an empty
key), a queue with two bindings that both match (delivered once), and keys
that match nothing.
"""

from common import Collector, connect, eq, pump, pump_until, run, unique

EXCHANGE = unique("topic_logs")

PATTERNS = {
    "Q1": ["*.orange.*"],
    "Q2": ["*.*.rabbit", "lazy.#"],
    "Q3": ["#"],
    "Q4": ["kern.*"],
    "Q5": ["*.critical"],
    "Q6": ["a.#.b"],
    "Q7": ["#.end"],
}

# routing key -> queues it must reach ("#" in Q3 matches everything).
TABLE = [
    ("quick.orange.rabbit", {"Q1", "Q2"}),
    ("lazy.orange.elephant", {"Q1", "Q2"}),
    ("quick.orange.fox", {"Q1"}),
    ("lazy.brown.fox", {"Q2"}),
    ("lazy.pink.rabbit", {"Q2"}),  # matches both Q2 patterns, delivered once
    ("quick.brown.fox", set()),
    ("orange", set()),
    ("quick.orange.male.rabbit", set()),
    ("lazy.orange.male.rabbit", {"Q2"}),
    ("lazy", {"Q2"}),  # "lazy.#": '#' matching zero words
    ("kern.critical", {"Q4", "Q5"}),
    ("kern", set()),  # '*' needs exactly one word
    ("kern.disk.critical", set()),
    ("a.b", {"Q6"}),  # '#' matching zero words in the middle
    ("a.x.b", {"Q6"}),
    ("a.x.y.b", {"Q6"}),
    ("a.x.y", set()),
    ("end", {"Q7"}),  # '#.end': '#' matching zero words at the start
    ("the.very.end", {"Q7"}),
    ("", set()),  # empty key: only '#' (Q3) matches
]
for _key, _queues in TABLE:
    _queues.add("Q3")


def main():
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(EXCHANGE, exchange_type="topic")

    collectors = {}
    for role, patterns in PATTERNS.items():
        rch = conn.channel()
        queue = rch.queue_declare("", exclusive=True).method.queue
        for pattern in patterns:
            rch.queue_bind(queue, EXCHANGE, routing_key=pattern)
        collectors[role] = Collector(conn, rch, queue)

    for key, _ in TABLE:
        ch.basic_publish(EXCHANGE, key, f"msg<{key}>".encode())

    # One connection carries all consumers, so pumping once collects for all.
    total = sum(len(queues) for _, queues in TABLE)
    pump_until(conn, lambda: sum(len(c.deliveries) for c in collectors.values()) >= total, 5)
    pump(conn, 0.5)  # catch stray extra deliveries too

    for role, patterns in PATTERNS.items():
        expected = [f"msg<{k}>".encode() for k, queues in TABLE if role in queues]
        eq(collectors[role].bodies(), expected, f"{role} bound to {patterns}")

    ch.exchange_delete(EXCHANGE)
    conn.close()


if __name__ == "__main__":
    run(main)
