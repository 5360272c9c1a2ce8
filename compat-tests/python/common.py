"""Shared helpers for the pika compatibility programs.

Every other program in this folder is a standalone script, run with the
venv's python (e.g. `.venv/bin/python python/tut1_hello_world.py`).  It
connects to the broker named by AMQP_URL, asserts precise behaviour and exits
0 on success, 1 on an assertion/protocol failure and 2 on timeout.  The last
line printed on failure starts with "FAIL:" so run.sh can show a reason.
"""

import os
import secrets
import sys
import threading
import time
import traceback

import pika
import pika.exceptions

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
DEFAULT_TIMEOUT = float(os.environ.get("COMPAT_TEST_TIMEOUT", "20"))

# A short, per-run suffix so that reruns (or a run that died half-way and left
# durable objects behind) never collide with each other.
RUN_ID = f"{os.getpid()}.{secrets.token_hex(3)}"


class CheckFailed(AssertionError):
    pass


# Names handed out by unique(): deleted best-effort if a program fails, so
# that failed runs do not pile up durable queues on the broker under test.
_NAMES = []


def unique(prefix):
    """A queue/exchange name unique to this run."""
    name = f"warren-compat.{prefix}.{RUN_ID}"
    _NAMES.append(name)
    return name


def _cleanup_after_failure():
    try:
        conn = connect()
    except Exception:  # noqa: BLE001 - best effort only
        return
    for name in _NAMES:
        for op in ("queue_delete", "exchange_delete"):
            try:
                ch = conn.channel()
                getattr(ch, op)(name)
                ch.close()
            except Exception:  # noqa: BLE001 - e.g. 404 from an older broker
                pass
    try:
        conn.close()
    except Exception:  # noqa: BLE001
        pass


def connect(**overrides):
    params = pika.URLParameters(AMQP_URL)
    # Fail fast: a broker that does not answer should be a clear failure, not
    # a hang that only the watchdog catches.
    params.connection_attempts = 1
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    for key, value in overrides.items():
        setattr(params, key, value)
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPConnectionError as exc:
        # pika's str() of this is often empty; its repr names the cause.
        raise CheckFailed(f"cannot connect to {params.host}:{params.port}: {exc!r}") from exc


def check(cond, message):
    if not cond:
        raise CheckFailed(message)


def eq(actual, expected, what):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def expect_channel_close(fn, code, what):
    """Run fn(), which must make the broker close the channel with `code`.

    Returns the pika ChannelClosedByBroker exception so callers can inspect it.
    Only the numeric reply code is asserted; reply text is free-form in the
    spec (RabbitMQ uses e.g. "NOT_FOUND - no queue 'x' in vhost '/'").
    """
    try:
        fn()
    except pika.exceptions.ChannelClosedByBroker as exc:
        eq(exc.reply_code, code, f"{what}: channel.close reply-code (text {exc.reply_text!r})")
        return exc
    raise CheckFailed(f"{what}: expected channel.close {code}, but the call succeeded")


def pump(conn, seconds):
    """Let a BlockingConnection dispatch callbacks for `seconds`."""
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return
        conn.process_data_events(time_limit=min(left, 0.05))


def pump_until(conn, cond, timeout, what=None):
    """Dispatch callbacks on conn until cond() is true.

    On timeout: fail naming `what`, or with what=None just return False so
    the caller's own, more precise assertions report the difference.
    """
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            if what is None:
                return False
            raise CheckFailed(f"timed out after {timeout}s waiting for {what}")
        conn.process_data_events(time_limit=0.05)
    return True


class Collector:
    """Consume from a queue on a BlockingConnection and record deliveries.

    Deliveries are (method, properties, body) tuples.  wait_for(n) pumps the
    connection until n deliveries arrived, then keeps pumping for a quiet
    period so that an extra, unexpected delivery is noticed as well.
    """

    def __init__(self, conn, channel, queue, auto_ack=True):
        self.conn = conn
        self.channel = channel
        self.queue = queue
        self.auto_ack = auto_ack
        self.deliveries = []
        self.tag = channel.basic_consume(queue, self._on_message, auto_ack=auto_ack)

    def _on_message(self, ch, method, properties, body):
        self.deliveries.append((method, properties, body))

    def wait_for(self, n, timeout=5.0, quiet=0.4):
        end = time.monotonic() + timeout
        while len(self.deliveries) < n and time.monotonic() < end:
            self.conn.process_data_events(time_limit=0.05)
        if len(self.deliveries) < n:
            raise CheckFailed(
                f"queue {self.queue}: expected {n} deliveries, got {len(self.deliveries)} "
                f"after {timeout}s: {self.bodies()!r}"
            )
        pump(self.conn, quiet)
        return self.deliveries

    def bodies(self):
        return [body for _, _, body in self.deliveries]

    def cancel(self):
        self.channel.basic_cancel(self.tag)


class Background(threading.Thread):
    """A producer/consumer running in its own thread.

    pika connections are not thread-safe, so `target(bg)` must open its own
    connection.  It calls bg.ready.set() once it is consuming, and should loop
    until bg.stop is set (see bg.serve).  An exception raised in the thread is
    kept and re-raised by wait_ready()/finish() in the main thread.
    """

    def __init__(self, name, target):
        super().__init__(name=name, daemon=True)
        self._fn = target
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            self._fn(self)
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            self.error = exc
            self.ready.set()

    def serve(self, conn):
        """Pump conn's callbacks until asked to stop."""
        while not self.stop.is_set():
            conn.process_data_events(time_limit=0.05)

    def _raise(self):
        if isinstance(self.error, CheckFailed):
            raise CheckFailed(f"thread {self.name}: {self.error}")
        if self.error is not None:
            raise CheckFailed(f"thread {self.name}: {type(self.error).__name__}: {self.error!r}")

    def wait_ready(self, timeout=5.0):
        if not self.ready.wait(timeout):
            raise CheckFailed(f"thread {self.name} not ready after {timeout}s")
        self._raise()

    def finish(self, timeout=5.0):
        self.stop.set()
        self.join(timeout)
        if self.is_alive():
            raise CheckFailed(f"thread {self.name} did not stop within {timeout}s")
        self._raise()


def wait_until(cond, timeout, what):
    """Poll cond() (from the main thread) until true, else fail."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise CheckFailed(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def run(main, timeout=DEFAULT_TIMEOUT):
    """Run main() under a hard watchdog and turn the outcome into an exit code."""
    name = os.path.basename(sys.argv[0])
    failed = threading.Event()

    def on_timeout():
        if failed.is_set():
            os._exit(1)  # the failure is already reported; cleanup hung
        print(f"FAIL: {name}: timed out after {timeout:g}s", file=sys.stderr, flush=True)
        # os._exit: a thread blocked in a socket read must not keep us alive.
        os._exit(2)

    watchdog = threading.Timer(timeout, on_timeout)
    watchdog.daemon = True
    watchdog.start()
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - every failure becomes exit 1
        if not isinstance(exc, CheckFailed):  # protocol errors, connection refused, ...
            traceback.print_exc()
            exc = f"unexpected {type(exc).__name__}: {exc}"
        failed.set()
        print(f"FAIL: {exc}", file=sys.stderr, flush=True)
        _cleanup_after_failure()
        os._exit(1)
    print(f"OK {name}", flush=True)
    # os._exit so that helper threads (consumers) cannot delay the exit.
    os._exit(0)
