"""Tutorial 1, "Hello World": one producer, one consumer, one named queue.

The producer sends "Hello World!" through the default exchange; a consumer on
its own connection (in a thread) must receive exactly that one message.
"""

import threading

from common import Background, CheckFailed, check, connect, eq, run, unique

QUEUE = unique("hello")


def main():
    received = []
    got = threading.Event()

    def consumer(bg):
        conn = connect()
        ch = conn.channel()
        ch.queue_declare(QUEUE)  # idempotent: both sides declare, as in the tutorial

        def on_message(_ch, method, properties, body):
            received.append((method, body))
            got.set()

        ch.basic_consume(QUEUE, on_message, auto_ack=True)
        bg.ready.set()
        bg.serve(conn)
        conn.close()

    worker = Background("receiver", consumer)
    worker.start()
    worker.wait_ready()

    conn = connect()
    ch = conn.channel()
    ok = ch.queue_declare(QUEUE)
    eq(ok.method.queue, QUEUE, "declare-ok queue name")
    eq(ok.method.consumer_count, 1, "declare-ok consumer count (receiver is consuming)")
    ch.basic_publish(exchange="", routing_key=QUEUE, body=b"Hello World!")

    if not got.wait(5):
        worker.finish()
        raise CheckFailed("receiver got nothing within 5s")
    # Give a duplicate delivery a chance to show up before checking the count.
    threading.Event().wait(0.3)
    worker.finish()

    eq(len(received), 1, "number of messages received")
    method, body = received[0]
    eq(body, b"Hello World!", "body")
    eq(method.exchange, "", "delivered exchange")
    eq(method.routing_key, QUEUE, "delivered routing key")
    check(not method.redelivered, "first delivery must not be flagged redelivered")

    eq(ch.queue_delete(QUEUE).method.message_count, 0, "messages left in queue at delete")
    conn.close()


if __name__ == "__main__":
    run(main)
