"""Exclusive queues belong to one connection.

* Another connection declaring it gets 405 RESOURCE_LOCKED, whether it
  declares passively or not, and so does basic.consume on it.
* The owner can use it from any of its channels.
* When the owner disconnects, the queue is deleted (passive declare: 404).
"""

from common import connect, eq, expect_channel_close, run, unique

QUEUE = unique("exclusive")


def main():
    owner = connect()
    och = owner.channel()
    ok = och.queue_declare(QUEUE, exclusive=True)
    eq(ok.method.queue, QUEUE, "declare-ok name")
    och.basic_publish("", QUEUE, b"mine")
    # A second channel of the owning connection may use it.
    eq(owner.channel().queue_declare(QUEUE, passive=True).method.message_count, 1,
       "passive declare from the owner's second channel")

    other = connect()
    expect_channel_close(lambda: other.channel().queue_declare(QUEUE, exclusive=True),
                         405, "exclusive declare from another connection")
    expect_channel_close(lambda: other.channel().queue_declare(QUEUE),
                         405, "plain declare from another connection")
    expect_channel_close(lambda: other.channel().queue_declare(QUEUE, passive=True),
                         405, "passive declare from another connection")
    expect_channel_close(lambda: other.channel().basic_consume(QUEUE, lambda *a: None),
                         405, "basic.consume from another connection")
    expect_channel_close(lambda: other.channel().basic_get(QUEUE),
                         405, "basic.get from another connection")

    # The other connection survives channel errors and the owner still has its message.
    m, _, body = och.basic_get(QUEUE, auto_ack=True)
    eq(body, b"mine", "owner's message")

    owner.close()
    expect_channel_close(lambda: other.channel().queue_declare(QUEUE, passive=True),
                         404, "passive declare after the owner disconnected")
    other.close()


if __name__ == "__main__":
    run(main)
