"""AMQPS: pika over TLS to the broker's [tls] listener.

AMQPS_URL (amqps://guest:guest@localhost:PORT/%2F) and AMQPS_CA (the CA that
signed the server's certificate) come from scripts/test-all.sh; without them
the program fails (a skipped test is not a passed one).  It checks the certificate against that
CA (hostname included), publishes a message and gets it back, over TLS 1.2 or
1.3 only.
"""

import os
import ssl
import sys

import pika

from common import connect, eq, run, unique

URL = os.environ.get("AMQPS_URL")
CA = os.environ.get("AMQPS_CA")
QUEUE = unique("tls")


def main():
    context = ssl.create_default_context(cafile=CA)
    params = pika.URLParameters(URL)
    params.ssl_options = pika.SSLOptions(context, server_hostname=params.host)
    conn = connect(ssl_options=params.ssl_options, host=params.host, port=params.port)
    ch = conn.channel()
    ch.queue_declare(QUEUE, exclusive=True)
    ch.basic_publish("", QUEUE, b"over tls")
    _, _, body = ch.basic_get(QUEUE, auto_ack=True)
    eq(body, b"over tls", "the message back over TLS")
    sock = conn._impl._transport._sock  # noqa: SLF001 - the negotiated version
    eq(sock.version() in ("TLSv1.2", "TLSv1.3"), True, f"TLS version {sock.version()}")
    conn.close()


if __name__ == "__main__":
    if not URL or not CA:
        # Not a pass: a run without a TLS broker did not test TLS.
        print("FAIL: AMQPS_URL and AMQPS_CA are not set (no TLS broker to test)")
        sys.exit(1)
    run(main)
