#!/usr/bin/env bash
# Persistent queues at depth, Warren beside RabbitMQ (Debian's rabbitmq-server) on this
# machine, both loaded by warren-perf. Prints one Markdown table.
#
#   bench/depth.sh                        both scenarios, both brokers
#   SCENARIOS="d1" BROKERS="warren" bench/depth.sh
#
# Scenarios:
#   d1  DEPTH_N (10,000,000) persistent 16 B messages into one durable queue (confirm
#       window 1000, no consumer); then RSS holding them, the data directory's size, kill -9,
#       a restart, the time until the first message is delivered again (from the restart
#       command), RSS after the restart, a drain by one consumer (prefetch 1000, a multiple
#       ack every 100) and the data directory's size right after the drain and 60 s later.
#   d2  WIDE_N (1,000,000) persistent 1 KiB messages over 1,000 durable queues: the same
#       rows.
#
# Environment: DEPTH_N, WIDE_N, WIDE_QUEUES (1000), WARREN_PORT (5742), RABBIT_PORT (5752),
# OUT (folder for logs and raw JSON, default a new temporary one), BROKERS ("warren rabbitmq").
# Each broker starts on an empty data directory for each scenario and is stopped after it.
set -uo pipefail
cd "$(dirname "$0")/.."

DEPTH_N=${DEPTH_N:-10000000}
WIDE_N=${WIDE_N:-1000000}
WIDE_QUEUES=${WIDE_QUEUES:-1000}
WARREN_PORT=${WARREN_PORT:-5742}
RABBIT_PORT=${RABBIT_PORT:-5752}
SCENARIOS=" ${SCENARIOS:-d1 d2} "
BROKERS=" ${BROKERS:-warren rabbitmq} "
OUT=${OUT:-$(mktemp -d /tmp/warren-depth.XXXXXX)}
REF=${RABBITMQ_REF:-/work/shared/bin/rabbitmq-ref}
PERF=target/release/warren-perf
RESULTS="$OUT/results.tsv"
mkdir -p "$OUT"
: >"$RESULTS"

. bench/lib.sh

PID=""
DATA=""
uri() { case $1 in warren) echo "amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2F" ;; *) echo "amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2F" ;; esac; }
du_kb() { du -sk "$1" 2>/dev/null | awk '{print $1}'; }

# boot BROKER: starts it on its data directory (kept as it is) and sets PID.
boot() {
  if [ "$1" = warren ]; then
    WARREN_LISTEN="127.0.0.1:$WARREN_PORT" WARREN_METRICS_LISTEN=off WARREN_MANAGEMENT_LISTEN=off WARREN_DATA_DIR="$DATA" \
      target/release/warren >>"$OUT/warren.log" 2>&1 &
    PID=$!
  else
    rabbit_boot "$RABBIT_PORT" "$OUT" >>"$OUT/rabbitmq-boot.log" 2>&1 &
    local waiter=$!
    PID=""
    for _ in $(seq 1 600); do
      PID=$(rabbit_pid "$RABBIT_PORT")
      [ -n "$PID" ] && break
      sleep 0.1
    done
    wait "$waiter" # the port is open (or the wait gave up: the drain keeps retrying)
  fi
}

# fresh BROKER: an empty data directory, started.
fresh() {
  if [ "$1" = warren ]; then
    DATA=$(mktemp -d /tmp/warren-depth-data.XXXXXX)
  else
    "$REF" stop "$RABBIT_PORT" >/dev/null 2>&1
    rm -rf "/tmp/rabbitmq-ref-$RABBIT_PORT"
    DATA="/tmp/rabbitmq-ref-$RABBIT_PORT/mnesia"
  fi
  boot "$1"
  for _ in $(seq 1 600); do port_open "$(port "$1")" && return 0; sleep 0.1; done
  log "$1 did not start"; return 1
}
port() { [ "$1" = warren ] && echo "$WARREN_PORT" || echo "$RABBIT_PORT"; }

stop() {
  if [ "$1" = warren ]; then
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    [ -n "$DATA" ] && rm -rf "$DATA"
  else
    "$REF" stop "$RABBIT_PORT" >/dev/null 2>&1
  fi
  PID="" DATA=""
}

kill9() {
  kill -9 "$PID" 2>/dev/null
  while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
  [ "$1" = warren ] && wait "$PID" 2>/dev/null
  for _ in $(seq 1 100); do port_open "$(port "$1")" || break; sleep 0.1; done
}

cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  [[ "$DATA" == /tmp/warren-depth-data.* ]] && rm -rf "$DATA"
  "$REF" stop "$RABBIT_PORT" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }

# scenario NAME BROKER N QUEUES SIZE: the whole sequence on one broker; the raw
# numbers go to $OUT/NAME-BROKER.tsv as "metric<TAB>value".
scenario() {
  local name=$1 b=$2 n=$3 queues=$4 size=$5 f="$OUT/$1-$2" u
  u=$(uri "$b")
  : >"$f.tsv"
  put() { printf '%s\t%s\n' "$1" "$2" >>"$f.tsv"; }
  fresh "$b" || return
  sleep 3 # RabbitMQ boots its plugins and settles its memory
  "$PERF" --uri "$u" --json --quiet --persistent --queues "$queues" --fill 0 >/dev/null 2>&1
  put disk_before "$(du_kb "$DATA")"
  log "$name on $b: fill $n x $size B over $queues queues"
  timeout 3600 "$PERF" --uri "$u" --json --quiet --persistent --queues "$queues" --size "$size" \
    --confirm 1000 --fill "$n" >"$f-fill.json" 2>"$f-fill.log" || log "  fill failed: $(tail -n 3 "$f-fill.log")"
  put fill_rate "$(jget "$f-fill.json" '["rate"]')"
  sleep 5
  put rss_full "$(rss_kb "$PID")"
  put disk_full "$(du_kb "$DATA")"
  log "$name on $b: kill -9, restart, drain"
  kill9 "$b"
  # The drainer starts first and retries until the broker answers: its time to the first
  # delivery counts from (about) the restart command.
  timeout 3600 "$PERF" --uri "$u" --json --quiet --queues "$queues" --drain --prefetch 1000 \
    --ack-every 100 >"$f-drain.json" 2>"$f-drain.log" &
  local drainer=$! peak=0 r
  boot "$b"
  while kill -0 "$drainer" 2>/dev/null; do
    r=$(rss_kb "$PID")
    [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.5
  done
  wait "$drainer" || log "  drain failed: $(tail -n 3 "$f-drain.log")"
  put rss_drain_peak "$peak"
  put serving_secs "$(jget "$f-drain.json" '["serving_secs"]')"
  put drain_rate "$(jget "$f-drain.json" '["rate"]')"
  put drained "$(jget "$f-drain.json" '["delivered"]')"
  put messages_after_restart "$(jget "$f-drain.json" '["messages"]')"
  put disk_drained "$(du_kb "$DATA")"
  sleep 60
  put disk_drained_60s "$(du_kb "$DATA")"
  stop "$b"
}

get() { awk -F'\t' -v k="$2" '$1 == k {print $2}' "$OUT/$1.tsv" 2>/dev/null; }
fmt() { python3 -c 'import sys
try:
    v = float(sys.argv[1]); d = sys.argv[2]
    print({"k": f"{v:,.0f}", "mb": f"{v/1024:,.1f}", "s": f"{v:.2f}", "n": f"{v:,.0f}"}[d])
except Exception:
    print("-")' "$1" "$2"; }

row() { # row SCENARIO LABEL METRIC KIND UNIT
  local w r
  w=$(fmt "$(get "$1-warren" "$3")" "$4")
  r=$(fmt "$(get "$1-rabbitmq" "$3")" "$4")
  printf '| %s | %s (%s) | %s | %s |\n' "$2" "$3" "$5" "$w" "$r"
}

for s in d1 d2; do
  want "$s" || continue
  for b in warren rabbitmq; do
    [[ "$BROKERS" == *" $b "* ]] || continue
    case $s in
      d1) scenario d1 "$b" "$DEPTH_N" 1 16 ;;
      d2) scenario d2 "$b" "$WIDE_N" "$WIDE_QUEUES" 1024 ;;
    esac
  done
done

echo
echo "| scenario | metric | Warren | RabbitMQ |"
echo "|---|---|---|---|"
for s in d1 d2; do
  want "$s" || continue
  case $s in
    d1) label="d1. $DEPTH_N x 16 B, 1 durable queue" ;;
    d2) label="d2. $WIDE_N x 1 KiB, $WIDE_QUEUES durable queues" ;;
  esac
  row "$s" "$label" fill_rate n "msg/s confirmed"
  row "$s" "$label" rss_full mb "MiB RSS holding them"
  row "$s" "$label" disk_before mb "MiB data dir before"
  row "$s" "$label" disk_full mb "MiB data dir holding them"
  row "$s" "$label" serving_secs s "s from restart after kill -9 to first delivery"
  row "$s" "$label" messages_after_restart n "messages after restart"
  row "$s" "$label" drain_rate n "msg/s drained, 1 consumer"
  row "$s" "$label" rss_drain_peak mb "MiB RSS peak, restart and drain"
  row "$s" "$label" disk_drained mb "MiB data dir right after drain"
  row "$s" "$label" disk_drained_60s mb "MiB data dir 60 s after drain"
done
echo
echo "raw numbers: $OUT"
