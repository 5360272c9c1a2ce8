"""RabbitMQ's own rabbitmqadmin (v1, from Debian's rabbitmq-server package, which
compat-tests/run.sh fetches when it is not installed) against the management API
at MANAGEMENT_URL: declare a vhost, queue, exchange, binding and policy; publish,
list, get, export, purge, delete, import; every command's output checked (the same
lines RabbitMQ 3.10.8 answers with, checked by hand against its management
plugin). Without MANAGEMENT_URL or rabbitmqadmin the program fails: a skipped
test is not a passed one.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

from common import RUN_ID, eq, run

API = os.environ.get("MANAGEMENT_URL")
ADMIN = os.environ.get("RABBITMQADMIN", "rabbitmqadmin")
VHOST = f"compat-admin-{RUN_ID}"


def admin(*args, vhost=VHOST):
    url = urllib.parse.urlparse(API)
    cmd = [sys.executable, ADMIN] if ADMIN.endswith("rabbitmqadmin") and os.path.isfile(ADMIN) else [ADMIN]
    cmd += ["-H", url.hostname, "-P", str(url.port), "-u", "guest", "-p", "guest"]
    if vhost:
        cmd += ["-V", vhost]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError(f"rabbitmqadmin {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout.strip()


def tsv(*args):
    """A list command's rows (after the header) as tuples."""
    lines = admin(*args, "-f", "tsv").splitlines()
    return [tuple(l.split("\t")) for l in lines[1:]]


def eventually(fn, expected, what, wait=12.0):
    """RabbitMQ's counts lag its stats interval (5 s); Warren's are current at once."""
    deadline = time.monotonic() + wait
    while True:
        got = fn()
        if got == expected or time.monotonic() > deadline:
            return eq(got, expected, what)
        time.sleep(0.5)


def main():
    if not API:
        raise AssertionError("MANAGEMENT_URL is not set")
    eq(admin("declare", "vhost", f"name={VHOST}", vhost=None), "vhost declared", "declare vhost")
    eq(admin("declare", "queue", "name=adm.q", "durable=true"), "queue declared", "declare queue")
    eq(admin("declare", "exchange", "name=adm.x", "type=direct"), "exchange declared", "declare exchange")
    eq(
        admin("declare", "binding", "source=adm.x", "destination=adm.q", "routing_key=k"),
        "binding declared",
        "declare binding",
    )
    eq(
        admin("publish", "exchange=adm.x", "routing_key=k", "payload=hello"),
        "Message published",
        "publish",
    )
    eventually(lambda: tsv("list", "queues", "name", "messages"), [("adm.q", "1")], "list queues")
    assert ("adm.x", "direct") in tsv("list", "exchanges", "name", "type"), "adm.x listed"
    eq(
        sorted(tsv("list", "bindings", "source", "destination", "routing_key")),
        [("", "adm.q", "adm.q"), ("adm.x", "adm.q", "k")],
        "list bindings",
    )
    got = json.loads(admin("get", "queue=adm.q", "ackmode=ack_requeue_true", "-f", "raw_json"))
    eq(
        [(m["payload"], m["exchange"], m["routing_key"], m["redelivered"]) for m in got],
        [("hello", "adm.x", "k", False)],
        "get",
    )
    eq(admin("declare", "policy", "name=one", "pattern=^adm", 'definition={"max-length":1}'),
       "policy declared", "declare policy")
    mine = [row for row in tsv("list", "policies") if row[0] == VHOST]
    eq(mine, [(VHOST, "one", "all", '{"max-length": 1}', "^adm", "0")], "list policies")

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "defs.json")
        out = admin("export", path, vhost=None)
        assert out.startswith("Exported definitions for ") and out.endswith(f'to "{path}"'), out
        exported = json.load(open(path))
        assert {"name": "adm.q", "vhost": VHOST, "durable": True, "auto_delete": False,
                "arguments": {}} in exported["queues"], exported["queues"]
        eq(admin("purge", "queue", "name=adm.q"), "queue purged", "purge")
        eventually(lambda: tsv("list", "queues", "name", "messages"), [("adm.q", "0")], "purged")
        eq(admin("delete", "queue", "name=adm.q"), "queue deleted", "delete queue")
        eq(tsv("list", "queues", "name"), [], "no queue left")
        out = admin("import", path, vhost=None)
        assert out.startswith("Uploaded definitions from "), out
        eq(tsv("list", "queues", "name"), [("adm.q",)], "imported back")

    users = dict(tsv("list", "users", "name", "tags"))
    eq(users.get("guest"), "administrator", "list users")
    assert (VHOST,) in tsv("list", "vhosts", "name"), "list vhosts"
    overview = admin("show", "overview", "-f", "raw_json", vhost=None)
    assert "object_totals" in json.loads(overview)[0], overview
    eq(admin("delete", "policy", "name=one"), "policy deleted", "delete policy")
    eq(admin("delete", "vhost", f"name={VHOST}", vhost=None), "vhost deleted", "delete vhost")


if __name__ == "__main__":
    run(main, timeout=35)
