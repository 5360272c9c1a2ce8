"""Length limits: x-max-length with drop-head (the dropped head is dead-lettered, reason
maxlen), reject-publish (the publisher gets basic.nack), reject-publish-dlx (nack, and the
message is dead-lettered), and x-max-length-bytes."""

import time

import pika
import pika.exceptions

from common import check, connect, eq, run, unique

DLX = unique("dlx")
DLQ = unique("dlq")


def drain(ch, queue):
    out = []
    while True:
        m, props, body = ch.basic_get(queue, auto_ack=True)
        if m is None:
            return out
        out.append((body.decode(), props))


def wait_drain(ch, queue, n):
    end = time.monotonic() + 5
    got = []
    while len(got) < n and time.monotonic() < end:
        got += drain(ch, queue)
        time.sleep(0.02)
    return got


def main():
    conn = connect()
    ch = conn.channel()
    ch.exchange_declare(DLX, "fanout")
    ch.queue_declare(DLQ)
    ch.queue_bind(DLQ, DLX)

    # drop-head
    q = unique("drop-head")
    ch.queue_declare(q, arguments={"x-max-length": 3, "x-dead-letter-exchange": DLX})
    for i in range(5):
        ch.basic_publish("", q, f"m{i}".encode())
    eq([b for b, _ in drain(ch, q)], ["m2", "m3", "m4"], "drop-head keeps the newest 3")
    dead = wait_drain(ch, DLQ, 2)
    eq([b for b, _ in dead], ["m0", "m1"], "dropped heads, dead-lettered in order")
    eq(dead[0][1].headers["x-death"][0]["reason"], "maxlen", "x-death reason")

    # reject-publish and reject-publish-dlx, with confirms
    cch = conn.channel()
    cch.confirm_delivery()
    for mode, dead_lettered in (("reject-publish", False), ("reject-publish-dlx", True)):
        q = unique(mode)
        cch.queue_declare(q, arguments={"x-max-length": 2, "x-overflow": mode,
                                        "x-dead-letter-exchange": DLX})
        cch.basic_publish("", q, b"a")
        cch.basic_publish("", q, b"b")
        try:
            cch.basic_publish("", q, f"{mode}-c".encode())
            raise AssertionError(f"{mode}: the third publish was confirmed")
        except pika.exceptions.NackError:
            pass
        eq(cch.queue_declare(q, passive=True).method.message_count, 2, f"{mode}: messages kept")
        if dead_lettered:
            dead = wait_drain(ch, DLQ, 1)
            eq([b for b, _ in dead], [f"{mode}-c"], f"{mode}: the refused message dead-lettered")
            eq(dead[0][1].headers["x-death"][0]["reason"], "maxlen", "x-death reason")
        cch.queue_delete(q)
    time.sleep(0.1)
    eq(drain(ch, DLQ), [], "nothing else dead-lettered (reject-publish does not)")

    # x-max-length-bytes counts body bytes
    q = unique("bytes")
    ch.queue_declare(q, arguments={"x-max-length-bytes": 10})
    for body in (b"aaaa", b"bbbb", b"cccc", b"dddd"):
        ch.basic_publish("", q, body)
    eq([b for b, _ in drain(ch, q)], ["cccc", "dddd"], "max-length-bytes keeps 8 of 16 bytes")
    check(True, "")
    ch.queue_delete(q)
    ch.queue_delete(DLQ)
    ch.exchange_delete(DLX)
    conn.close()


if __name__ == "__main__":
    run(main)
