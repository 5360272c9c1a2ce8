"""Priority queues: x-max-priority 10; messages come out highest priority first, FIFO within
a priority; a priority above the maximum counts as the maximum; no priority counts as 0;
x-max-priority 300 is refused with 406."""

import pika

from common import connect, eq, expect_channel_close, run, unique

QUEUE = unique("prio")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE, arguments={"x-max-priority": 10})
    sent = [("p0-a", 0), ("none", None), ("p5-a", 5), ("p10-a", 10), ("p20", 20),
            ("p5-b", 5), ("p1", 1), ("p10-b", 10)]
    for body, p in sent:
        props = pika.BasicProperties(priority=p) if p is not None else None
        ch.basic_publish("", QUEUE, body.encode(), properties=props)
    got = []
    while True:
        m, _, body = ch.basic_get(QUEUE, auto_ack=True)
        if m is None:
            break
        got.append(body.decode())
    eq(got, ["p10-a", "p20", "p10-b", "p5-a", "p5-b", "p1", "p0-a", "none"], "delivery order")
    ch.queue_delete(QUEUE)
    bad = conn.channel()
    expect_channel_close(
        lambda: bad.queue_declare(unique("prio-bad"), arguments={"x-max-priority": 300}),
        406, "x-max-priority 300")
    conn.close()


if __name__ == "__main__":
    run(main)
