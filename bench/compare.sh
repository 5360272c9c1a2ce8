#!/usr/bin/env bash
# Side-by-side benchmark of Warren and RabbitMQ (Debian's rabbitmq-server) on this machine,
# both loaded by warren-perf with the same options. Prints one Markdown table.
#
#   bench/compare.sh                      every scenario (about 10 minutes)
#   SCENARIOS="a e f1" bench/compare.sh   some of them
#
# Scenarios:
#   a   16 B, 1 publisher / 1 consumer, transient, no confirms, autoack
#   b   16 B, 1p/1c, confirm window 1000, prefetch 1000, multiple ack every 100
#   c   1 KiB, as b
#   d   fanout, 1 publisher -> 10 queues, 10 consumers, autoack
#   e   latency at a fixed 10,000 msg/s (16 B, 1p/1c, autoack)
#   f1  broker RSS holding 1,000 idle connections (one channel each)
#   f2  broker RSS holding 1,000,000 queued 16 B messages
#   g   10,000 queues declared and bound to amq.direct: time and RSS
#   p1  16 B persistent (durable queue, delivery-mode 2), 1p/1c, confirm window 1000,
#       prefetch 1000, multiple ack every 100: every confirm waits for its fsync
#   p2  1 KiB, as p1
#   p3  16 B persistent, confirm window 1000, no consumer (every message is written)
#   q1  priority queue (x-max-priority 10, messages cycling priorities 0..10), as b
#   q2  TTL expiry: x-message-ttl 1 ms, no consumer, confirm window 1000 (every message
#       expires; the rate is how fast the broker takes and expires them)
#   t1  topic exchange, adversarial: each queue bound with `#` and with eight `#`s before a
#       word that never matches, 100-word routing keys (two, in turn, so every publish is
#       matched afresh), 16 B, autoack (how long matching takes when every `#` could
#       swallow any number of words)
#   ("f" selects f1 and f2.)
#
# Environment: DURATION (seconds per throughput run, default 15), REPS (runs of each
# throughput scenario per broker, default 1: with more, the runs alternate which broker goes
# first, every run's JSON is kept, and the table shows each broker's median), WARREN_PORT (5742),
# RABBIT_PORT (5752), OUT (folder for logs and raw JSON, default a new temporary one).
# BASELINE_BIN: another warren binary (say, a build of an older commit) run beside the
# current one in every scenario, on BASE_PORT (5762): the table gains a baseline column and
# the ratio current/baseline, so a change is measured against a rerun in the same session
# rather than against numbers from another day on this noisy machine.
#
# Each broker starts fresh (Warren with an empty data dir; RabbitMQ with its /tmp node
# folder wiped) and again before each memory scenario, so that RSS is not what an earlier
# scenario left behind. Scenarios alternate which broker goes first. RabbitMQ is started
# with its open-files limit raised to the hard limit (as RabbitMQ recommends for
# production): Debian's default of 1024 cannot hold 1,000 connections. Both brokers are
# stopped at the end, whatever happens.
set -uo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
REPS=${REPS:-1}
WARREN_PORT=${WARREN_PORT:-5742}
RABBIT_PORT=${RABBIT_PORT:-5752}
SCENARIOS=" ${SCENARIOS:-a b c d e f1 f2 g p1 p2 p3 q1 q2 t1} "
SCENARIOS=${SCENARIOS// f / f1 f2 }
OUT=${OUT:-$(mktemp -d /tmp/warren-bench.XXXXXX)}
REF=${RABBITMQ_REF:-/work/shared/bin/rabbitmq-ref}
PERF=target/release/warren-perf
BASELINE_BIN=${BASELINE_BIN:-}
BASE_PORT=${BASE_PORT:-5762}
BASE_URI="amqp://guest:guest@127.0.0.1:$BASE_PORT/%2F"
WARREN_URI="amqp://guest:guest@127.0.0.1:$WARREN_PORT/%2F"
RABBIT_URI="amqp://guest:guest@127.0.0.1:$RABBIT_PORT/%2F"
RESULTS="$OUT/results.tsv"
mkdir -p "$OUT"
chmod 755 "$OUT" # the rabbitmq user reads rabbitmq-env.conf from here
: >"$RESULTS"

. bench/lib.sh

WARREN_PID=""
WARREN_DATA=""
RABBIT_PID=""
BASE_PID=""
BASE_DATA=""

start_base() {
  [ -n "$BASELINE_BIN" ] || return 0
  if port_open "$BASE_PORT"; then
    log "port $BASE_PORT is already taken; set BASE_PORT"; return 1
  fi
  BASE_DATA=$(mktemp -d /tmp/warren-bench-base.XXXXXX)
  WARREN_LISTEN="127.0.0.1:$BASE_PORT" WARREN_METRICS_LISTEN=off WARREN_MANAGEMENT_LISTEN=off WARREN_DATA_DIR="$BASE_DATA" \
    "$BASELINE_BIN" >>"$OUT/base.log" 2>&1 &
  BASE_PID=$!
  for _ in $(seq 1 100); do port_open "$BASE_PORT" && return 0; sleep 0.1; done
  log "the baseline warren did not start; see $OUT/base.log"; return 1
}

stop_base() {
  [ -n "$BASE_PID" ] || return 0
  kill "$BASE_PID" 2>/dev/null
  wait "$BASE_PID" 2>/dev/null
  BASE_PID=""
  [ -n "$BASE_DATA" ] && rm -rf "$BASE_DATA"
  BASE_DATA=""
}

start_warren() {
  if port_open "$WARREN_PORT"; then
    log "port $WARREN_PORT is already taken; set WARREN_PORT"; return 1
  fi
  WARREN_DATA=$(mktemp -d /tmp/warren-bench-data.XXXXXX)
  WARREN_LISTEN="127.0.0.1:$WARREN_PORT" WARREN_METRICS_LISTEN=off WARREN_MANAGEMENT_LISTEN=off WARREN_DATA_DIR="$WARREN_DATA" \
    target/release/warren >>"$OUT/warren.log" 2>&1 &
  WARREN_PID=$!
  for _ in $(seq 1 100); do port_open "$WARREN_PORT" && return 0; sleep 0.1; done
  log "warren did not start; see $OUT/warren.log"; return 1
}

stop_warren() {
  [ -n "$WARREN_PID" ] || return 0
  kill "$WARREN_PID" 2>/dev/null
  wait "$WARREN_PID" 2>/dev/null
  WARREN_PID=""
  [ -n "$WARREN_DATA" ] && rm -rf "$WARREN_DATA"
  WARREN_DATA=""
}

start_rabbit() {
  "$REF" stop "$RABBIT_PORT" >/dev/null 2>&1
  for _ in $(seq 1 30); do port_open "$RABBIT_PORT" || break; sleep 1; done
  rm -rf "/tmp/rabbitmq-ref-$RABBIT_PORT"
  rabbit_boot "$RABBIT_PORT" "$OUT" >&2 || return 1
  RABBIT_PID=$(rabbit_pid "$RABBIT_PORT")
  [ -n "$RABBIT_PID" ] || { log "cannot find RabbitMQ's beam.smp"; return 1; }
}

stop_rabbit() {
  "$REF" stop "$RABBIT_PORT" >/dev/null 2>&1
  RABBIT_PID=""
}

cleanup() {
  stop_warren
  stop_base
  stop_rabbit
}
trap cleanup EXIT
trap 'exit 130' INT TERM

restart_brokers() {
  stop_warren
  stop_base
  start_warren || exit 1
  start_base || exit 1
  start_rabbit || exit 1
  sleep 3 # let RabbitMQ finish booting its plugins and settle its memory
}

# record SCENARIO METRIC UNIT WARREN RABBITMQ [BASELINE] (raw numbers; "" for a failed run)
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" >>"$RESULTS"; }


# run_load NAME BROKER ARGS...: one throughput run, summary in $OUT/NAME-BROKER.json
run_load() {
  local name=$1 broker=$2 uri
  shift 2
  case $broker in warren) uri=$WARREN_URI ;; base) uri=$BASE_URI ;; *) uri=$RABBIT_URI ;; esac
  log "$name on $broker (run $REP of $REPS): warren-perf $*"
  timeout $((DURATION + 90)) "$PERF" --uri "$uri" --json --duration "$DURATION" "$@" \
    >"$OUT/$name-$broker.run$REP.json" 2>"$OUT/$name-$broker.run$REP.log" ||
    log "  failed: $(tail -n 3 "$OUT/$name-$broker.run$REP.log")"
}
REP=1

# run_hold NAME BROKER SETTLE ARGS...: a footprint run; samples the broker's RSS SETTLE
# seconds after the tool says it is holding, into $OUT/NAME-BROKER.rss (KiB)
run_hold() {
  local name=$1 broker=$2 settle=$3 uri pid tool
  shift 3
  case $broker in
    warren) uri=$WARREN_URI pid=$WARREN_PID ;;
    base) uri=$BASE_URI pid=$BASE_PID ;;
    *) uri=$RABBIT_URI pid=$RABBIT_PID ;;
  esac
  log "$name on $broker: warren-perf $*"
  rss_kb "$pid" >"$OUT/$name-$broker.rss0"
  timeout 600 "$PERF" --uri "$uri" --json "$@" >"$OUT/$name-$broker.json" 2>"$OUT/$name-$broker.log" &
  tool=$!
  : >"$OUT/$name-$broker.rss"
  for _ in $(seq 1 6000); do
    if grep -q '^holding' "$OUT/$name-$broker.log"; then
      sleep "$settle"
      rss_kb "$pid" >"$OUT/$name-$broker.rss"
      break
    fi
    kill -0 "$tool" 2>/dev/null || break
    sleep 0.1
  done
  wait "$tool" || log "  failed: $(tail -n 3 "$OUT/$name-$broker.log")"
}

# both NAME ORDER FN ARGS...: FN NAME BROKER ARGS... for each broker, ORDER 0 = Warren first
both() {
  local name=$1 order=$2 fn=$3
  shift 3
  if [ "$order" = 0 ]; then
    "$fn" "$name" warren "$@"
    [ -n "$BASELINE_BIN" ] && "$fn" "$name" base "$@"
    "$fn" "$name" rabbitmq "$@"
  else
    "$fn" "$name" rabbitmq "$@"
    [ -n "$BASELINE_BIN" ] && "$fn" "$name" base "$@"
    "$fn" "$name" warren "$@"
  fi
}

# repeated NAME ORDER FN ARGS...: `both` REPS times, the first broker alternating run by run
repeated() {
  local name=$1 order=$2 fn=$3
  shift 3
  for REP in $(seq 1 "$REPS"); do
    both "$name" "$(((order + REP + 1) % 2))" "$fn" "$@"
  done
}

# rate NAME SCENARIO METRIC KEY: a rate from both summaries
# json NAME BROKER EXPR: a value from a summary ("" without a baseline)
# (the median over the runs of a repeated scenario; every run's value goes to runs.tsv)
json() {
  [ "$2" = base ] && [ -z "$BASELINE_BIN" ] && return 0
  if [ -e "$OUT/$1-$2.json" ]; then
    jget "$OUT/$1-$2.json" "$3"
    return
  fi
  local values=() v f
  for f in "$OUT/$1-$2".run*.json; do
    [ -e "$f" ] || continue
    v=$(jget "$f" "$3")
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(basename "$f" .json)" "$v" >>"$OUT/runs.tsv"
    values+=("$v")
  done
  python3 -c 'import statistics, sys
v = [float(x) for x in sys.argv[1:] if x]
print(statistics.median(v) if v else "")' "${values[@]}"
}

rate_row() {
  record "$2" "$3" "msg/s" "$(json "$1" warren "[\"$4\"]")" "$(json "$1" rabbitmq "[\"$4\"]")" \
    "$(json "$1" base "[\"$4\"]")"
}

latency_row() {
  record "$2" "$3" "ms" "$(json "$1" warren "[\"latency_us\"][\"$4\"]/1000")" \
    "$(json "$1" rabbitmq "[\"latency_us\"][\"$4\"]/1000")" \
    "$(json "$1" base "[\"latency_us\"][\"$4\"]/1000")"
}

mib() { awk -v k="$1" 'BEGIN { if (k != "") printf "%.1f", k / 1024 }'; }

rss_row() {
  local w r b=""
  w=$(cat "$OUT/$1-warren.$4" 2>/dev/null)
  r=$(cat "$OUT/$1-rabbitmq.$4" 2>/dev/null)
  [ -n "$BASELINE_BIN" ] && b=$(cat "$OUT/$1-base.$4" 2>/dev/null)
  record "$2" "$3" "MiB" "$(mib "$w")" "$(mib "$r")" "$(mib "$b")"
}

# ---------------------------------------------------------------------------------------
log "building release binaries"
{ cargo build --release --locked --bin warren && cargo build --release --locked -p warren-perf; } >&2 || exit 1
log "raw results in $OUT"
restart_brokers
WARREN_VERSION="$(git describe --always --dirty 2>/dev/null || echo unknown)"
RABBIT_VERSION="$("$REF" ctl "$RABBIT_PORT" version 2>/dev/null | tail -n 1)"
record "idle brokers" "RSS at start" "MiB" "$(mib "$(rss_kb "$WARREN_PID")")" \
  "$(mib "$(rss_kb "$RABBIT_PID")")" "$([ -n "$BASE_PID" ] && mib "$(rss_kb "$BASE_PID")")"

if want a; then
  repeated a 0 run_load --size 16 --autoack
  rate_row a "a. 16 B, 1p/1c, autoack, no confirms" "published" publish_rate
  rate_row a "a. 16 B, 1p/1c, autoack, no confirms" "delivered" deliver_rate
fi
if want b; then
  repeated b 1 run_load --size 16 --confirm 1000 --prefetch 1000 --ack-every 100
  rate_row b "b. 16 B, 1p/1c, confirms 1000, prefetch 1000, ack/100" "confirmed" confirm_rate
  rate_row b "b. 16 B, 1p/1c, confirms 1000, prefetch 1000, ack/100" "delivered" deliver_rate
fi
if want c; then
  repeated c 0 run_load --size 1024 --confirm 1000 --prefetch 1000 --ack-every 100
  rate_row c "c. 1 KiB, as b" "confirmed" confirm_rate
  rate_row c "c. 1 KiB, as b" "delivered" deliver_rate
fi
if want d; then
  repeated d 1 run_load --size 16 --exchange-type fanout --queues 10 --consumers 10 --autoack
  rate_row d "d. fanout 1p -> 10 queues/10c, autoack" "published" publish_rate
  rate_row d "d. fanout 1p -> 10 queues/10c, autoack" "delivered (all queues)" deliver_rate
fi
if want e; then
  repeated e 0 run_load --size 16 --rate 10000 --autoack
  rate_row e "e. fixed 10,000 msg/s, 16 B, autoack" "delivered" deliver_rate
  latency_row e "e. fixed 10,000 msg/s, 16 B, autoack" "latency p50" p50
  latency_row e "e. fixed 10,000 msg/s, 16 B, autoack" "latency p99" p99
fi
if want f1; then
  restart_brokers
  both f1 1 run_hold 3 --idle-connections 1000 --hold 8
  rss_row f1 "f. 1,000 idle connections" "RSS before" rss0
  rss_row f1 "f. 1,000 idle connections" "RSS holding them" rss
fi
if want f2; then
  restart_brokers
  both f2 0 run_hold 5 --fill 1000000 --size 16 --confirm 5000 --hold 10
  rss_row f2 "f. 1M queued 16 B messages" "RSS holding them" rss
  record "f. 1M queued 16 B messages" "fill rate (confirmed)" "msg/s" \
    "$(json f2 warren '["rate"]')" "$(json f2 rabbitmq '["rate"]')" "$(json f2 base '["rate"]')"
fi
if want g; then
  restart_brokers
  both g 1 run_hold 3 --declare-queues 10000 --hold 8
  record "g. 10,000 queues declared + bound" "time" "s" \
    "$(json g warren '["secs"]')" "$(json g rabbitmq '["secs"]')" "$(json g base '["secs"]')"
  rss_row g "g. 10,000 queues declared + bound" "RSS holding them" rss
fi

if want p1; then
  restart_brokers
  repeated p1 0 run_load --size 16 --persistent --confirm 1000 --prefetch 1000 --ack-every 100
  rate_row p1 "p1. 16 B persistent, confirms 1000, prefetch 1000, ack/100" "confirmed" confirm_rate
  rate_row p1 "p1. 16 B persistent, confirms 1000, prefetch 1000, ack/100" "delivered" deliver_rate
  latency_row p1 "p1. 16 B persistent, confirms 1000, prefetch 1000, ack/100" "latency p99" p99
fi
if want p2; then
  restart_brokers
  repeated p2 1 run_load --size 1024 --persistent --confirm 1000 --prefetch 1000 --ack-every 100
  rate_row p2 "p2. 1 KiB persistent, as p1" "confirmed" confirm_rate
  rate_row p2 "p2. 1 KiB persistent, as p1" "delivered" deliver_rate
fi
if want p3; then
  restart_brokers
  repeated p3 0 run_load --size 16 --persistent --confirm 1000 --consumers 0
  rate_row p3 "p3. 16 B persistent, confirms 1000, no consumer" "confirmed" confirm_rate
fi
if want q1; then
  repeated q1 0 run_load --size 16 --max-priority 10 --confirm 1000 --prefetch 1000 --ack-every 100
  rate_row q1 "q1. priority queue (10 levels), as b" "confirmed" confirm_rate
  rate_row q1 "q1. priority queue (10 levels), as b" "delivered" deliver_rate
fi
if want q2; then
  repeated q2 1 run_load --size 16 --message-ttl 1 --consumers 0 --confirm 1000
  rate_row q2 "q2. TTL 1 ms, no consumer (all expire)" "confirmed" confirm_rate
fi

if want t1; then
  ADVERSARIAL="#.#.#.#.#.#.#.#.nomatch"
  LONG_KEY=$(printf 'w.%.0s' $(seq 1 99))w # 100 words, 199 bytes (a key is at most 255)
  repeated t1 0 run_load --size 16 --autoack --exchange-type topic --binding-key '#' \
    --extra-binding "$ADVERSARIAL" --routing-key "$LONG_KEY" --key-variants 2
  rate_row t1 "t1. topic, # and #x8.nomatch bindings, 100-word keys, autoack" "delivered" deliver_rate
fi

# ---------------------------------------------------------------------------------------
{
  echo "Warren $WARREN_VERSION vs RabbitMQ $RABBIT_VERSION; $(date -u '+%Y-%m-%d %H:%M UTC');" \
    "$(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo))," \
    "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM; ${DURATION} s per throughput run"
  echo
  python3 - "$RESULTS" <<'EOF'
import sys

def num(s):
    try:
        return float(s)
    except ValueError:
        return None

def fmt(v, unit):
    if v is None:
        return "failed"
    if unit == "msg/s":
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:.2f}" if v < 100 else f"{v:,.0f}"
    if unit == "s":
        return f"{v:.2f}"
    return f"{v:,.1f}"

rows = [(line.rstrip("\n").split("\t") + [""] * 6)[:6] for line in open(sys.argv[1])]
base = any(num(r[5]) is not None for r in rows)
if base:
    print("| Scenario | Metric | Warren | Warren baseline | RabbitMQ | Warren/baseline | Warren/RabbitMQ |")
    print("|---|---|---:|---:|---:|---:|---:|")
else:
    print("| Scenario | Metric | Warren | RabbitMQ | Warren/RabbitMQ |")
    print("|---|---|---:|---:|---:|")
last = None
for scenario, metric, unit, w, r, b in rows:
    w, r, b = num(w), num(r), num(b)
    ratio = f"{w / r:.2f}" if w is not None and r else "–"
    shown = scenario if scenario != last else ""
    last = scenario
    if base:
        vs = f"{w / b:.2f}" if w is not None and b else "–"
        print(f"| {shown} | {metric} ({unit}) | {fmt(w, unit)} | {fmt(b, unit)} | {fmt(r, unit)} | {vs} | {ratio} |")
    else:
        print(f"| {shown} | {metric} ({unit}) | {fmt(w, unit)} | {fmt(r, unit)} | {ratio} |")
print()
print("Rates: higher is better. Latency, time and memory: lower is better.")
EOF
} | tee "$OUT/table.md"
log "table saved to $OUT/table.md"
