#!/usr/bin/env bash
# The management API's list of queues at scale (issue 15's bar: GET /api/queues with
# 10,000 queues answers in under 200 ms, release build). Starts the release broker with a
# management listener, declares QUEUES queues over AMQP (warren-perf, pipelining), then
# times `curl /api/queues` RUNS times and prints the median. If the reference RabbitMQ
# answers on REF_HTTP (its AMQP on REF_AMQP), the same queues are declared there in the
# vhost REF_VHOST (made, then deleted), and its median and the ratio are printed too.
#
#   bench/management.sh
#   QUEUES=50000 RUNS=9 bench/management.sh
#
# Environment: PORT (5792), HTTP_PORT (15692+100 = 15792), QUEUES (10000), RUNS (7),
# REF_HTTP (127.0.0.1:15672), REF_AMQP (127.0.0.1:5699), REF_VHOST (bench-management),
# OUT (a new temporary folder), NO_BUILD (set: use the binaries already in
# $CARGO_TARGET_DIR/release).
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-5792}
HTTP_PORT=${HTTP_PORT:-15792}
QUEUES=${QUEUES:-10000}
RUNS=${RUNS:-7}
REF_HTTP=${REF_HTTP:-127.0.0.1:15672}
REF_AMQP=${REF_AMQP:-127.0.0.1:5699}
REF_VHOST=${REF_VHOST:-bench-management}
OUT=${OUT:-$(mktemp -d /tmp/warren-mgmt.XXXXXX)}
TARGET=${CARGO_TARGET_DIR:-target}
PERF=$TARGET/release/warren-perf
mkdir -p "$OUT"
if [ -z "${NO_BUILD:-}" ]; then
  { cargo build --release --locked --bin warren && cargo build --release --locked -p warren-perf; } >&2 || exit 1
fi

. bench/lib.sh

# median URL: times RUNS GETs of URL (after one warm-up) and prints the median in ms.
median() {
  curl -s -u guest:guest "$1" -o /dev/null
  for _ in $(seq 1 "$RUNS"); do
    curl -s -u guest:guest "$1" -o /dev/null -w '%{time_total}\n'
  done | sort -n | awk '{t[NR] = $1} END {printf "%.1f\n", t[int((NR + 1) / 2)] * 1000}'
}

DATA=$(mktemp -d /tmp/warren-mgmt-data.XXXXXX)
WARREN_LISTEN="127.0.0.1:$PORT" WARREN_METRICS_LISTEN=off \
  WARREN_MANAGEMENT_LISTEN="127.0.0.1:$HTTP_PORT" WARREN_DATA_DIR="$DATA" \
  "$TARGET/release/warren" >>"$OUT/warren.log" 2>&1 &
PID=$!
cleanup() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$DATA"; }
trap cleanup EXIT
for _ in $(seq 1 600); do port_open "$HTTP_PORT" && port_open "$PORT" && break; sleep 0.05; done

log "declaring $QUEUES queues on Warren"
"$PERF" --uri "amqp://guest:guest@127.0.0.1:$PORT/%2F" --json --quiet \
  --declare-queues "$QUEUES" --pipeline 500 >"$OUT/declare-warren.json" 2>>"$OUT/perf.log" || exit 1
count=$(curl -s -u guest:guest "http://127.0.0.1:$HTTP_PORT/api/queues?columns=name" |
  python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
bytes=$(curl -s -u guest:guest "http://127.0.0.1:$HTTP_PORT/api/queues" -o /dev/null -w '%{size_download}')
warren=$(median "http://127.0.0.1:$HTTP_PORT/api/queues")
echo "warren: GET /api/queues with $count queues ($bytes bytes): median ${warren} ms of $RUNS"

if curl -s -o /dev/null -u guest:guest "http://$REF_HTTP/api/overview"; then
  api="http://$REF_HTTP/api"
  curl -s -u guest:guest -X PUT "$api/vhosts/$REF_VHOST" >/dev/null
  curl -s -u guest:guest -X PUT -H 'content-type: application/json' \
    -d '{"configure":".*","write":".*","read":".*"}' "$api/permissions/$REF_VHOST/guest" >/dev/null
  log "declaring $QUEUES queues on the reference RabbitMQ (vhost $REF_VHOST)"
  "$PERF" --uri "amqp://guest:guest@$REF_AMQP/$REF_VHOST" --json --quiet \
    --declare-queues "$QUEUES" --pipeline 500 >"$OUT/declare-rabbit.json" 2>>"$OUT/perf.log"
  sleep 6 # the management plugin's stats arrive every 5 s
  total=$(curl -s -u guest:guest "$api/queues?columns=name" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  rabbit=$(median "$api/queues")
  echo "rabbitmq: GET /api/queues with $total queues: median ${rabbit} ms of $RUNS"
  awk -v w="$warren" -v r="$rabbit" 'BEGIN {printf "ratio (rabbitmq / warren): %.1f\n", r / w}'
  curl -s -u guest:guest -X DELETE "$api/vhosts/$REF_VHOST" >/dev/null
else
  log "no reference RabbitMQ at $REF_HTTP: Warren only"
fi
