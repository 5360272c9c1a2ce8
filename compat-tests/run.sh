#!/usr/bin/env bash
# Warren compatibility tests: real third-party AMQP 0-9-1 clients (Python
# pika, Node amqplib) against the broker at $AMQP_URL.
#
#   AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F bash compat-tests/run.sh [FILTER...]
#
# Installs the pinned clients into compat-tests/.venv and
# compat-tests/node/node_modules (skipped when already installed), runs every
# program (only those whose name contains one of the FILTERs, if given), prints
# "PASS name" / "FAIL name (reason)" per program, then "N passed, M failed",
# and exits non-zero if anything failed.  Full output of each program is kept
# in compat-tests/.logs/.
#
# Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2F),
# MANAGEMENT_URL (the broker's management API, for python/access.py and
# python/rabbitmqadmin.py; they fail without it), RABBITMQADMIN (rabbitmqadmin v1;
# found or fetched when unset), AMQPS_URL and AMQPS_CA (the broker's TLS listener and the CA of its
# certificate, for the tls programs; they fail without them),
# COMPAT_TEST_TIMEOUT (each program's own watchdog, seconds, default 20),
# COMPAT_KILL_TIMEOUT (outer kill timeout per program, default 40).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2F}
export COMPAT_TEST_TIMEOUT=${COMPAT_TEST_TIMEOUT:-20}
KILL_TIMEOUT=${COMPAT_KILL_TIMEOUT:-40}
VENV="$HERE/.venv"
LOG_DIR="$HERE/.logs"

# ---------------------------------------------------------------- install --

# True when every "name==version" pin of requirements.txt is installed in the venv.
python_deps_ok() {
  [ -x "$VENV/bin/python" ] || return 1
  "$VENV/bin/python" - "$HERE/python/requirements.txt" <<'PY' 2>/dev/null
import importlib.metadata as md, sys
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, version = line.split("==")
        if md.version(name) != version:
            sys.exit(1)
PY
}

install_python() {
  if python_deps_ok; then return; fi
  echo "installing Python clients into $VENV" >&2
  if ! python3 -m venv "$VENV" >/dev/null 2>&1; then
    # Debian's own python3 ships venv/ensurepip separately.
    rm -rf "$VENV"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "python3 -m venv failed; installing python3-venv" >&2
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv) >&2
      python3 -m venv "$VENV"
    else
      echo "python3 -m venv failed: install python3-venv" >&2
      return 1
    fi
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/python/requirements.txt" >&2
  python_deps_ok || { echo "pika install did not take" >&2; return 1; }
}

# True when node_modules holds exactly the versions package-lock.json pins.
node_deps_ok() {
  (cd "$HERE/node" && node - <<'JS' 2>/dev/null
const fs = require('fs');
const lock = JSON.parse(fs.readFileSync('package-lock.json', 'utf8'));
for (const [p, info] of Object.entries(lock.packages || {})) {
  if (!p.startsWith('node_modules/')) continue;
  const installed = JSON.parse(fs.readFileSync(`${p}/package.json`, 'utf8'));
  if (installed.version !== info.version) process.exit(1);
}
JS
  )
}

install_node() {
  if node_deps_ok; then return; fi
  echo "installing Node clients into $HERE/node/node_modules" >&2
  (cd "$HERE/node" && npm ci --no-audit --no-fund --loglevel=error) >&2
  node_deps_ok || { echo "amqplib install did not take" >&2; return 1; }
}

# RabbitMQ's rabbitmqadmin (v1), for python/rabbitmqadmin.py: the installed one, else
# the script from Debian's rabbitmq-server package, unpacked into .cache (not installed:
# the package would pull in Erlang and start a node).
install_rabbitmqadmin() {
  if [ -n "${RABBITMQADMIN:-}" ]; then return; fi
  if command -v rabbitmqadmin >/dev/null; then
    RABBITMQADMIN=$(command -v rabbitmqadmin); export RABBITMQADMIN; return
  fi
  local cache="$HERE/.cache/rabbitmq-server"
  if [ ! -f "$cache/usr/bin/rabbitmqadmin" ]; then
    echo "fetching rabbitmqadmin from Debian's rabbitmq-server package" >&2
    mkdir -p "$cache"
    (cd "$cache" && { apt-get download rabbitmq-server >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get download rabbitmq-server; }; } &&
      dpkg-deb -x rabbitmq-server_*.deb . && rm -f rabbitmq-server_*.deb) >&2
  fi
  RABBITMQADMIN="$cache/usr/bin/rabbitmqadmin"; export RABBITMQADMIN
}

install_python
install_node
install_rabbitmqadmin

# ------------------------------------------------------------------- run --

passed=0
failed=0
mkdir -p "$LOG_DIR"

FILTERS=("$@")

# selected NAME: no filters given, or NAME contains one of them.
selected() {
  local f
  [ "${#FILTERS[@]}" -eq 0 ] && return 0
  for f in "${FILTERS[@]}"; do
    [[ $1 == *"$f"* ]] && return 0
  done
  return 1
}

# run_one NAME CMD...: runs CMD with a kill timeout, reports PASS/FAIL.
run_one() {
  local name=$1; shift
  local log="$LOG_DIR/${name//\//_}.log" rc=0 reason
  # `|| rc=$?` keeps set -e from aborting the run on a failing program.
  timeout --kill-after=5 "$KILL_TIMEOUT" "$@" >"$log" 2>&1 </dev/null || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "PASS $name"
    passed=$((passed + 1))
    return
  fi
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    reason="killed after ${KILL_TIMEOUT}s"
  else
    # The programs end a failure with a "FAIL: reason" line; fall back to
    # the last line of output (e.g. an interpreter crash).
    reason=$(grep '^FAIL: ' "$log" | tail -n 1 | cut -c7- || true)
    [ -n "$reason" ] || reason="exit $rc: $(tail -n 1 "$log")"
  fi
  echo "FAIL $name ($reason)"
  failed=$((failed + 1))
}

for prog in "$HERE"/python/*.py; do
  base=$(basename "$prog" .py)
  [ "$base" = common ] && continue
  selected "python/$base" || continue
  run_one "python/$base" "$VENV/bin/python" "$prog"
done

for prog in "$HERE"/node/*.js; do
  base=$(basename "$prog" .js)
  [ "$base" = common ] && continue
  selected "node/$base" || continue
  run_one "node/$base" node "$prog"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
