#!/usr/bin/env bash
# One-time setup for the three client suites under /work/ext (idempotent).
# Sources come from the search tool's fetch mirrors (/work/.mirror/...); re-run fetch first if those are gone.
set -eu
EXT=/work/ext; cd $EXT
extract() { # dir mirror
  [ -e "$EXT/$1/.extracted" ] && return
  mkdir -p "$EXT/$1"; git --git-dir="/work/.mirror/$2/repo" archive HEAD | tar -x -C "$EXT/$1"
  git --git-dir="/work/.mirror/$2/repo" rev-parse HEAD > "$EXT/$1/.extracted"
}
extract pika pika+pika
extract amqplib amqp-node+amqplib
extract amqp091-go rabbitmq+amqp091-go
# pika: venv with the test deps (pika itself is imported from the source tree via pytest's pythonpath)
[ -x pika/.venv/bin/pytest ] || { python3 -m venv pika/.venv; pika/.venv/bin/pip install -q pytest pytest-timeout pytest-xdist twisted tornado gevent; }
python3 patch-pika.py pika
# amqplib: dev deps (claire is used by the codec/data tests)
[ -d amqplib/node_modules ] || (cd amqplib && npm ci --no-audit --no-fund)
python3 patch-amqplib.py amqplib
# amqp091-go: Debian's Go 1.19 + goleak, no module downloads
command -v go >/dev/null && [ -d /usr/share/gocode/src/go.uber.org/goleak ] && command -v socat >/dev/null || \
  { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go golang-uber-goleak-dev socat; }
echo "setup done"
