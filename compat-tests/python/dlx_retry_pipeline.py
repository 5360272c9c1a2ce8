"""The classic retry pipeline with dead-lettering.

work queue W (dead-letters to the default exchange, key R) -> reject(requeue=False) ->
retry queue R (x-message-ttl 100 ms, dead-letters back to W) -> W ... three times; on the
4th delivery the x-death header holds one entry per (queue, reason), newest first, each
with count 3 (a 64-bit "long"), plus x-first-death-* naming the first rejection.
Both queues are durable.
"""

import time

from common import check, connect, eq, run, unique

WORK = unique("work")
RETRY = unique("retry")


def get(ch, queue, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        m, props, body = ch.basic_get(queue, auto_ack=False)
        if m is not None:
            return m, props, body
        time.sleep(0.02)
    raise AssertionError(f"nothing arrived in {queue} within {timeout}s")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(WORK, durable=True, arguments={
        "x-dead-letter-exchange": "", "x-dead-letter-routing-key": RETRY})
    ch.queue_declare(RETRY, durable=True, arguments={
        "x-message-ttl": 100, "x-dead-letter-exchange": "", "x-dead-letter-routing-key": WORK})
    ch.basic_publish("", WORK, b"job-1")
    for _ in range(3):
        m, _, body = get(ch, WORK)
        eq(body, b"job-1", "body on the way round")
        ch.basic_reject(m.delivery_tag, requeue=False)
    m, props, body = get(ch, WORK)
    eq(body, b"job-1", "body after three retries")
    deaths = props.headers["x-death"]
    eq(len(deaths), 2, "x-death entries (one per queue and reason)")
    eq((deaths[0]["queue"], deaths[0]["reason"], deaths[0]["count"]), (RETRY, "expired", 3),
       "newest x-death entry")
    eq((deaths[1]["queue"], deaths[1]["reason"], deaths[1]["count"]), (WORK, "rejected", 3),
       "older x-death entry")
    for d in deaths:
        check(set(d) >= {"queue", "reason", "count", "time", "exchange", "routing-keys"},
              f"x-death entry keys: {sorted(d)}")
    eq(deaths[1]["routing-keys"], [WORK], "routing-keys of the rejection (the key it was routed with)")
    eq(props.headers["x-first-death-queue"], WORK, "x-first-death-queue")
    eq(props.headers["x-first-death-reason"], "rejected", "x-first-death-reason")
    eq(props.headers["x-first-death-exchange"], "", "x-first-death-exchange")
    ch.basic_ack(m.delivery_tag)
    ch.queue_delete(WORK)
    ch.queue_delete(RETRY)
    conn.close()


if __name__ == "__main__":
    run(main)
