"""Access control with pika: RabbitMQ's access table, allowed and refused.

A user made through the management API (MANAGEMENT_URL, as RabbitMQ's management
plugin serves it; scripts/test-all.sh passes the compat broker's) may configure
names containing C, write those containing W and read those containing R.  Each
row checks the operation is allowed, or refused with channel.close 403 and
RabbitMQ's text (the same on RabbitMQ 3.10.8).  Without MANAGEMENT_URL the
program fails: a skipped test is not a passed one.
"""

import base64
import json
import os
import sys
import urllib.parse
import urllib.request

import pika
import pika.exceptions

from common import connect, eq, run, unique, RUN_ID

API = os.environ.get("MANAGEMENT_URL")
USER = f"compat-app-{RUN_ID}"
PASSWORD = "app-password"


def api(method, path, body=None):
    req = urllib.request.Request(API.rstrip("/") + path, method=method)
    token = base64.b64encode(b"guest:guest").decode()
    req.add_header("Authorization", f"Basic {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, data, timeout=10) as r:
        return r.status


def refused(kind, name):
    return f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user '{USER}'"


def main():
    qC, qW, qR, qX, qCR = (unique(n) for n in ("qC", "qW", "qR", "qX", "qCR"))
    xC, xW, xR, xWR, tWR = (unique(n) for n in ("xC", "xW", "xR", "xWR", "tWR"))
    missingW, missingR = unique("missingW"), unique("missingR")
    guest = connect()
    g = guest.channel()
    for q in (qW, qR, qX):
        g.queue_declare(q)
    for x in (xW, xR, xWR):
        g.exchange_declare(x, "fanout")
    g.exchange_declare(tWR, "topic")
    api("PUT", f"/api/users/{USER}", {"password": PASSWORD, "tags": ""})
    api("PUT", f"/api/permissions/%2F/{USER}", {"configure": "C", "write": "W", "read": "R"})
    api("PUT", f"/api/topic-permissions/%2F/{USER}",
        {"exchange": tWR, "write": "^ok\\.", "read": "^ok\\."})
    try:
        params = pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
        params.credentials = pika.PlainCredentials(USER, PASSWORD)
        app = connect(credentials=params.credentials)

        def row(what, op, refusal=None):
            ch = app.channel()
            try:
                op(ch)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if refusal is None:
                    raise AssertionError(f"{what}: refused ({exc.reply_code} {exc.reply_text})")
                eq((exc.reply_code, exc.reply_text), (403, refusal), what)
                return
            if refusal is not None:
                raise AssertionError(f"{what}: allowed, expected 403")
            ch.close()

        def publish(x, key):
            def op(ch):
                ch.confirm_delivery()
                ch.basic_publish(x, key, b"m")
            return op

        row("declare qC", lambda ch: ch.queue_declare(qC))
        row("declare qW", lambda ch: ch.queue_declare(qW), refused("queue", qW))
        row("passive declare qX", lambda ch: ch.queue_declare(qX, passive=True))
        row("declare qCR with dlx xW", lambda ch: ch.queue_declare(qCR, arguments={"x-dead-letter-exchange": xW}))
        row("declare qC with dlx xW", lambda ch: ch.queue_declare(qC + "2", arguments={"x-dead-letter-exchange": xW}), refused("queue", qC + "2"))
        row("declare xC", lambda ch: ch.exchange_declare(xC, "fanout"))
        row("declare xW", lambda ch: ch.exchange_declare(xW, "fanout"), refused("exchange", xW))
        row("declare xC with ae xR", lambda ch: ch.exchange_declare(xC + "R", "fanout", arguments={"alternate-exchange": xR}), refused("exchange", xR))
        row("bind qW to xR", lambda ch: ch.queue_bind(qW, xR))
        row("bind qR to xR", lambda ch: ch.queue_bind(qR, xR), refused("queue", qR))
        row("bind qW to xW", lambda ch: ch.queue_bind(qW, xW), refused("exchange", xW))
        row("unbind qW from xR", lambda ch: ch.queue_unbind(qW, xR))
        row("exchange bind xW to xR", lambda ch: ch.exchange_bind(xW, xR))
        row("exchange bind xR to xWR", lambda ch: ch.exchange_bind(xR, xWR), refused("exchange", xR))
        row("publish to xW", publish(xW, ""))
        row("publish to xR", publish(xR, ""), refused("exchange", xR))
        row("publish to the default exchange", publish("", qW), refused("exchange", "amq.default"))
        row("get qR", lambda ch: ch.basic_get(qR))
        row("get qW", lambda ch: ch.basic_get(qW), refused("queue", qW))
        row("consume qR", lambda ch: ch.basic_consume(qR, lambda *a: None))
        row("consume qW", lambda ch: ch.basic_consume(qW, lambda *a: None), refused("queue", qW))
        row("purge qR", lambda ch: ch.queue_purge(qR))
        row("purge qW", lambda ch: ch.queue_purge(qW), refused("queue", qW))
        row("delete qC", lambda ch: ch.queue_delete(qC))
        row("delete qW", lambda ch: ch.queue_delete(qW), refused("queue", qW))
        row("delete xC", lambda ch: ch.exchange_delete(xC))
        row("delete xW", lambda ch: ch.exchange_delete(xW), refused("exchange", xW))
        row("get a missing queue it may not read (403 before 404)", lambda ch: ch.basic_get(missingW), refused("queue", missingW))
        topic = f"ACCESS_REFUSED - access to topic 'bad.1' in exchange '{tWR}' in vhost '/' refused for user '{USER}'"
        row("topic publish ok.1", publish(tWR, "ok.1"))
        row("topic publish bad.1", publish(tWR, "bad.1"), topic)
        row("topic bind ok.#", lambda ch: ch.queue_bind(qW, tWR, "ok.#"))
        row("topic bind bad.#", lambda ch: ch.queue_bind(qW, tWR, "bad.#"), topic.replace("bad.1", "bad.#"))
        ch = app.channel()
        try:
            ch.basic_get(missingR)
            raise AssertionError("get of a missing readable queue succeeded")
        except pika.exceptions.ChannelClosedByBroker as exc:
            eq(exc.reply_code, 404, "get a missing queue it may read")
        app.close()
    finally:
        api("DELETE", f"/api/users/{USER}")
        for q in (qW, qR, qX, qCR):
            g.queue_delete(q)
        for x in (xW, xR, xWR, tWR):
            g.exchange_delete(x)
        guest.close()


if __name__ == "__main__":
    if not API:
        print("FAIL: MANAGEMENT_URL is not set (no management API to make the user with)")
        sys.exit(1)
    run(main)
