"""x-expires: a queue nobody uses (no consumer, no get, no redeclare) for that long is deleted;
one with a consumer is not."""

import time

from common import connect, eq, expect_channel_close, run, unique


def main():
    conn = connect()
    ch = conn.channel()
    idle = unique("expires-idle")
    busy = unique("expires-busy")
    ch.queue_declare(idle, arguments={"x-expires": 300})
    ch.queue_declare(busy, arguments={"x-expires": 300})
    tag = ch.basic_consume(busy, lambda *a: None, auto_ack=True)
    time.sleep(0.9)
    eq(ch.queue_declare(busy, passive=True).method.consumer_count, 1, "the used queue is still there")
    ch.basic_cancel(tag)
    expect_channel_close(lambda: ch.queue_declare(idle, passive=True), 404, "the unused queue")
    conn.channel().queue_delete(busy)
    conn.close()


if __name__ == "__main__":
    run(main)
