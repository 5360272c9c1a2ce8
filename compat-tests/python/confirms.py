"""Publisher confirms.

* confirm.select on a channel; 50 persistent publishes are each acked (pika's
  BlockingChannel waits for the ack of every basic_publish and raises on a
  nack), and all 50 are then in the queue.
* A mandatory, unroutable publish on a confirm channel is returned (312) and
  then acked - not nacked: unroutable is not a broker failure.
* Publishing to an exchange that does not exist closes the channel with 404
  NOT_FOUND; the connection itself stays usable.
"""

import pika
import pika.exceptions

from common import CheckFailed, connect, eq, expect_channel_close, run, unique

QUEUE = unique("confirms")
MISSING_EXCHANGE = unique("no-such-exchange")


def main():
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(QUEUE)
    ch.confirm_delivery()

    for i in range(50):
        # Raises NackError / UnroutableError if not positively confirmed.
        ch.basic_publish("", QUEUE, f"confirmed {i}".encode(),
                         pika.BasicProperties(delivery_mode=2), mandatory=True)
    eq(ch.queue_declare(QUEUE, passive=True).method.message_count, 50,
       "messages in queue after 50 confirmed publishes")

    # Unroutable + mandatory: basic.return then basic.ack.
    try:
        ch.basic_publish("", unique("nobody-home"), b"returned", mandatory=True)
        raise CheckFailed("unroutable mandatory publish on a confirm channel was not returned")
    except pika.exceptions.UnroutableError as exc:
        eq(len(exc.messages), 1, "returned messages")
        eq(exc.messages[0].method.reply_code, 312, "basic.return reply-code")
        eq(exc.messages[0].body, b"returned", "returned body")
    # The channel must still be open and confirming.
    ch.basic_publish("", QUEUE, b"after return", mandatory=True)

    # Publish to a missing exchange: channel.close 404.
    def publish_to_missing():
        ch.basic_publish(MISSING_EXCHANGE, "rk", b"into the void")
    expect_channel_close(publish_to_missing, 404, "publish to a non-existent exchange")
    eq(ch.is_closed, True, "channel closed after the 404")

    # Channel errors do not take the connection down.
    ch2 = conn.channel()
    ch2.confirm_delivery()
    ch2.basic_publish("", QUEUE, b"on a new channel")
    eq(ch2.queue_declare(QUEUE, passive=True).method.message_count, 52, "messages in queue at the end")
    ch2.queue_delete(QUEUE)
    conn.close()


if __name__ == "__main__":
    run(main)
