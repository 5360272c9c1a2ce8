"""Tutorial 2, "Work queues": competing consumers with fair dispatch.

A durable task queue, persistent messages, two workers with prefetch 1 and
manual acks.  Each task "takes" 0.1 s per dot in its body.

Phase 1 (round-robin): six equal tasks are shared 3/3 between the workers.
Phase 2 (fair dispatch): one long task and four short ones.  With prefetch 1
the worker busy with the long task must not be handed anything else, so the
other worker processes all four short tasks.  (Plain round-robin without the
prefetch limit would give the busy worker two of the short tasks.)
"""

import threading
import time

import pika

from common import Background, check, connect, eq, expect_channel_close, run, unique, wait_until

QUEUE = unique("task_queue")
SECONDS_PER_DOT = 0.1


def make_worker(name, log, lock):
    def worker(bg):
        conn = connect()
        ch = conn.channel()
        ch.queue_declare(QUEUE, durable=True)
        ch.basic_qos(prefetch_count=1)

        def on_message(_ch, method, properties, body):
            # Record what arrived, then simulate the work and ack it.
            with lock:
                log.append((name, body.decode(), properties.delivery_mode, method.redelivered))
            time.sleep(body.count(b".") * SECONDS_PER_DOT)
            ch.basic_ack(delivery_tag=method.delivery_tag)

        ch.basic_consume(QUEUE, on_message)  # manual ack (auto_ack defaults to False)
        bg.ready.set()
        bg.serve(conn)
        conn.close()

    return worker


def publish_tasks(ch, tasks):
    for task in tasks:
        ch.basic_publish(
            exchange="",
            routing_key=QUEUE,
            body=task.encode(),
            properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
        )


def by_worker(log, name):
    return [task for worker, task, _, _ in log if worker == name]


def main():
    log, lock = [], threading.Lock()

    conn = connect()
    ch = conn.channel()
    ok = ch.queue_declare(QUEUE, durable=True)
    eq(ok.method.message_count, 0, "fresh task queue message count")
    # Redeclaring with different durability must be refused (406 PRECONDITION_FAILED);
    # done on a throwaway channel because the broker closes it.
    expect_channel_close(lambda: conn.channel().queue_declare(QUEUE, durable=False),
                         406, "redeclaring the durable queue as non-durable")

    workers = [Background(n, make_worker(n, log, lock)) for n in ("w1", "w2")]
    for w in workers:
        w.start()
    for w in workers:
        w.wait_ready()
    wait_until(lambda: ch.queue_declare(QUEUE, passive=True).method.consumer_count == 2,
               5, "both workers to be consuming")

    # Phase 1: equal tasks are shared evenly.
    phase1 = [f"task {i} .." for i in range(6)]
    publish_tasks(ch, phase1)
    wait_until(lambda: len(log) >= 6, 8, "phase 1 tasks to be processed")
    time.sleep(0.3)
    with lock:
        p1 = list(log)
        log.clear()
    eq(sorted(t for _, t, _, _ in p1), sorted(phase1), "phase 1 tasks processed (each exactly once)")
    eq(len(by_worker(p1, "w1")), 3, f"phase 1 tasks handled by w1 {by_worker(p1, 'w1')}")
    eq(len(by_worker(p1, "w2")), 3, f"phase 1 tasks handled by w2 {by_worker(p1, 'w2')}")
    for _, task, mode, redelivered in p1:
        eq(mode, 2, f"delivery_mode of {task!r}")
        check(not redelivered, f"{task!r} flagged redelivered")

    # Let any trailing acks land so both workers start phase 2 idle.
    wait_until(lambda: ch.queue_declare(QUEUE, passive=True).method.message_count == 0,
               3, "queue to be empty")
    time.sleep(0.3)

    # Phase 2: fair dispatch.
    long_task = "long " + "." * 15  # 1.5 s
    shorts = [f"short {i} ." for i in range(4)]
    publish_tasks(ch, [long_task] + shorts)
    wait_until(lambda: len(log) >= 5, 8, "phase 2 tasks to be processed")
    time.sleep(0.3)
    with lock:
        p2 = list(log)
    busy = next(w for w, t, _, _ in p2 if t == long_task)
    other = "w2" if busy == "w1" else "w1"
    eq(by_worker(p2, busy), [long_task], f"tasks given to the busy worker {busy}")
    eq(by_worker(p2, other), shorts, f"tasks given to the idle worker {other}")

    for w in workers:
        w.finish()
    eq(ch.queue_declare(QUEUE, passive=True).method.message_count, 0, "messages left")
    ch.queue_delete(QUEUE)
    conn.close()


if __name__ == "__main__":
    run(main)
