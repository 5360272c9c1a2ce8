"""Tutorial 6, "RPC": request/reply over a queue.

A server thread consumes a named RPC queue (prefetch 1, manual ack) and
answers fib(n) to the request's reply_to queue, copying its correlation_id.
The client declares an exclusive server-named callback queue, fires several
requests at once with distinct correlation ids and matches the replies by id.
A reply with an unknown correlation id (sent by the test itself) must be
ignored by the client, as the tutorial's client does.
"""

import uuid

import pika

from common import Background, check, connect, eq, pump_until, run, unique

RPC_QUEUE = unique("rpc_queue")


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def server(bg):
    conn = connect()
    ch = conn.channel()
    ch.queue_declare(RPC_QUEUE)
    ch.basic_qos(prefetch_count=1)

    def on_request(_ch, method, props, body):
        n = int(body)
        ch.basic_publish(
            exchange="",
            routing_key=props.reply_to,
            properties=pika.BasicProperties(correlation_id=props.correlation_id),
            body=str(fib(n)).encode(),
        )
        ch.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(RPC_QUEUE, on_request)
    bg.ready.set()
    bg.serve(conn)
    conn.close()


def main():
    srv = Background("rpc-server", server)
    srv.start()
    srv.wait_ready()

    conn = connect()
    ch = conn.channel()
    callback_queue = ch.queue_declare("", exclusive=True).method.queue

    pending = {}  # correlation_id -> n, for requests sent
    replies = {}  # correlation_id -> body
    stray = []

    def on_reply(_ch, _method, props, body):
        if props.correlation_id in pending:
            check(props.correlation_id not in replies, f"duplicate reply for {props.correlation_id}")
            replies[props.correlation_id] = body
        else:
            stray.append((props.correlation_id, body))

    ch.basic_consume(callback_queue, on_reply, auto_ack=True)

    # A reply nobody asked for: must not be taken for an answer.
    ch.basic_publish("", callback_queue, b"-1",
                     pika.BasicProperties(correlation_id="not-a-request"))

    numbers = [0, 1, 2, 10, 20, 30, 7]
    for n in numbers:
        corr_id = str(uuid.uuid4())
        pending[corr_id] = n
        ch.basic_publish(
            exchange="",
            routing_key=RPC_QUEUE,
            properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=corr_id),
            body=str(n).encode(),
        )

    pump_until(conn, lambda: len(replies) == len(numbers) and len(stray) == 1, 8,
               f"{len(numbers)} RPC replies (got {len(replies)})")
    srv.finish()

    for corr_id, n in pending.items():
        eq(replies[corr_id], str(fib(n)).encode(), f"fib({n}) reply")
    eq(stray, [("not-a-request", b"-1")], "replies with unknown correlation ids")
    eq(fib(30), 832040, "local fib sanity")

    ch.queue_delete(RPC_QUEUE)
    conn.close()


if __name__ == "__main__":
    run(main)
