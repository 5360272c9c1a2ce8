#!/usr/bin/env bash
# Scale benchmarks (issue 12): many queues, many bindings, many connections, restart.
# Warren only (RabbitMQ takes minutes to hours at these sizes); with BASELINE_BIN, each
# scenario runs against that binary too, in the same session, for a before/after table.
#
#   bench/scale.sh                        every scenario (about 10 minutes; more with a baseline)
#   SCENARIOS="q r" bench/scale.sh        some of them
#
# Scenarios:
#   q   10,000 / 50,000 / 100,000 durable queues, each declared and bound to amq.direct by
#       one client pipelining 500 requests: seconds, and broker RSS per queue
#   r   restart with the 100,000 queues of q (graceful stop, start): seconds from start
#       until a passive declare of the last queue answers (needs q)
#   c   connection open+close, 2,000 in turn, with 100,000 queues declared (after r) and
#       with none
#   d   deleting a durable queue with 10,000 durable bindings while another connection
#       publishes persistent messages with confirms at 2,000 msg/s: that publisher's confirm
#       latency (p99, max) over the run, and the delete's time
#   b   1,000,000 bindings on one durable direct exchange, then on one topic exchange
#       (BINDINGS to change the count; the baseline gets BASE_BINDINGS, default 100,000):
#       seconds per 100,000 (flat when linear), RSS per binding, and the confirm latency of a
#       publisher at 1,000 msg/s meanwhile
#   i   10,000 idle connections (handshake done, one channel open): RSS per connection
#
# Environment: PORT (5772), BASE_PORT (5782), OUT (a new temporary folder).
set -uo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-5772}
BASE_PORT=${BASE_PORT:-5782}
SCENARIOS=" ${SCENARIOS:-q r c d b i} "
OUT=${OUT:-$(mktemp -d /tmp/warren-scale.XXXXXX)}
PERF=target/release/warren-perf
BASELINE_BIN=${BASELINE_BIN:-}
BINDINGS=${BINDINGS:-1000000}
BASE_BINDINGS=${BASE_BINDINGS:-100000}
RESULTS="$OUT/results.tsv"
mkdir -p "$OUT"
{ cargo build --release --locked --bin warren && cargo build --release --locked -p warren-perf; } >&2 || exit 1
: >"$RESULTS"
# 10,000 connections need as many descriptors on both sides.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

. bench/lib.sh
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# Broker slots: "cur" (target/release/warren) and "base" (BASELINE_BIN).
declare -A BIN PORTS PID DATA
BIN[cur]=target/release/warren
BIN[base]=$BASELINE_BIN
PORTS[cur]=$PORT
PORTS[base]=$BASE_PORT
PID[cur]=""
PID[base]=""
DATA[cur]=""
DATA[base]=""
SLOTS="cur"
[ -n "$BASELINE_BIN" ] && SLOTS="cur base"

uri() { echo "amqp://guest:guest@127.0.0.1:${PORTS[$1]}/%2F"; }

# start SLOT [keep]: starts the slot's broker on a new data dir (or the old one with keep).
start() {
  local s=$1
  if port_open "${PORTS[$s]}"; then log "port ${PORTS[$s]} is taken"; return 1; fi
  if [ "${2:-}" != keep ] || [ -z "${DATA[$s]}" ]; then
    DATA[$s]=$(mktemp -d "/tmp/warren-scale-$s.XXXXXX")
  fi
  STARTED_AT=$(date +%s.%N)
  WARREN_LISTEN="127.0.0.1:${PORTS[$s]}" WARREN_METRICS_LISTEN=off WARREN_MANAGEMENT_LISTEN=off WARREN_DATA_DIR="${DATA[$s]}" \
    "${BIN[$s]}" >>"$OUT/$s.log" 2>&1 &
  PID[$s]=$!
}

wait_port() {
  for _ in $(seq 1 600); do port_open "${PORTS[$1]}" && return 0; sleep 0.05; done
  log "the $1 broker did not start; see $OUT/$1.log"; return 1
}

# stop SLOT [keep]: graceful stop; the data dir goes unless keep.
stop() {
  local s=$1
  [ -n "${PID[$s]}" ] || return 0
  kill "${PID[$s]}" 2>/dev/null
  wait "${PID[$s]}" 2>/dev/null
  PID[$s]=""
  if [ "${2:-}" != keep ] && [ -n "${DATA[$s]}" ]; then rm -rf "${DATA[$s]}"; DATA[$s]=""; fi
}

cleanup() { for s in cur base; do stop "$s"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# record SCENARIO METRIC UNIT SLOT VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >>"$RESULTS"; }

perf() { local s=$1; shift; timeout 3600 "$PERF" --uri "$(uri "$s")" --json --quiet "$@"; }
# Ends a background perf run early, with its summary: SIGINT to warren-perf itself (the job
# is a subshell running timeout, and background subshells of a script ignore SIGINT).
interrupt() {
  local t
  for t in $(pgrep -P "$1"); do pkill -INT -P "$t" 2>/dev/null; done
}

for s in $SLOTS; do
  if want q; then
    for n in 10000 50000 100000; do
      start "$s" && wait_port "$s" || exit 1
      sleep 1
      before=$(rss_kb "${PID[$s]}")
      log "q $n on $s"
      perf "$s" --declare-queues "$n" --pipeline 500 --persistent >"$OUT/q$n-$s.json" 2>>"$OUT/perf.log"
      # Settled: the store's writer has applied what the declares queued.
      sleep 3
      after=$(rss_kb "${PID[$s]}")
      record q "$n queues" s "$s" "$(jget "$OUT/q$n-$s.json" '["secs"]')"
      record q "$n queues: RSS per queue" B "$s" "$(( (after - before) * 1024 / n ))"
      if [ "$n" = 100000 ] && want r; then
        stop "$s" keep
        log "r on $s"
        start "$s" keep
        perf "$s" --wait-queue warren-perf-dq-99999 >"$OUT/r-$s.json" 2>>"$OUT/perf.log"
        record r "restart with 100000 queues: serving" s "$s" "$(jget "$OUT/r-$s.json" '["secs"]')"
        if want c; then
          log "c (100000 queues) on $s"
          perf "$s" --connect-close 2000 >"$OUT/c100k-$s.json" 2>>"$OUT/perf.log"
          record c "open+close with 100000 queues" "conn/s" "$s" "$(jget "$OUT/c100k-$s.json" '["per_sec"]')"
        fi
      fi
      stop "$s"
    done
  fi

  if want c; then
    start "$s" && wait_port "$s" || exit 1
    log "c (no queues) on $s"
    perf "$s" --connect-close 2000 >"$OUT/c0-$s.json" 2>>"$OUT/perf.log"
    record c "open+close with no queues" "conn/s" "$s" "$(jget "$OUT/c0-$s.json" '["per_sec"]')"
    stop "$s"
  fi

  if want d; then
    for variant in quiet delete; do
      start "$s" && wait_port "$s" || exit 1
      log "d ($variant) on $s"
      perf "$s" --persistent --confirm 100 --rate 2000 --consumers 1 --autoack --size 16 \
        --duration 20 >"$OUT/d-$variant-$s.json" 2>>"$OUT/perf.log" &
      load=$!
      sleep 3
      if [ "$variant" = delete ]; then
        perf "$s" --bindings 10000 --persistent --pipeline 500 --hold 5 \
          >"$OUT/d-bind-$s.json" 2>>"$OUT/perf.log"
        record d "delete queue with 10000 bindings" ms "$s" \
          "$(python3 -c "print(round(1000*float('$(jget "$OUT/d-bind-$s.json" '["delete_secs"]')' or 'nan'),1))")"
      fi
      wait "$load"
      record d "confirm p99 ($variant)" ms "$s" \
        "$(python3 -c "print(round(float('$(jget "$OUT/d-$variant-$s.json" '["confirm_latency_us"]["p99"]')' or 'nan')/1000,2))")"
      record d "confirm max ($variant)" ms "$s" \
        "$(python3 -c "print(round(float('$(jget "$OUT/d-$variant-$s.json" '["confirm_latency_us"]["max"]')' or 'nan')/1000,2))")"
      stop "$s"
    done
  fi

  if want b; then
    n=$BINDINGS
    [ "$s" = base ] && n=$BASE_BINDINGS
    for kind in direct topic; do
      start "$s" && wait_port "$s" || exit 1
      sleep 1
      before=$(rss_kb "${PID[$s]}")
      log "b $kind $n on $s"
      perf "$s" --persistent --confirm 10 --rate 1000 --consumers 1 --autoack --size 16 \
        --duration 100000 >"$OUT/b-$kind-load-$s.json" 2>>"$OUT/perf.log" &
      load=$!
      sleep 2
      perf "$s" --bindings "$n" --exchange-type "$kind" --persistent --pipeline 500 --hold 2 \
        >"$OUT/b-$kind-$s.json" 2>"$OUT/b-$kind-$s.log" &
      binder=$!
      until grep -q holding "$OUT/b-$kind-$s.log" 2>/dev/null || ! kill -0 "$binder" 2>/dev/null; do sleep 0.2; done
      after=$(rss_kb "${PID[$s]}")
      wait "$binder"
      interrupt "$load"
      wait "$load"
      record b "$n $kind bindings" s "$s" "$(jget "$OUT/b-$kind-$s.json" '["secs"]')"
      record b "$kind: s per 100000 (first, last)" s "$s" \
        "$(python3 -c "import json; c=json.load(open('$OUT/b-$kind-$s.json'))['secs_per_100k']; print(f'{c[0]:.2f}, {c[-1]:.2f}')" 2>/dev/null)"
      record b "$kind: RSS per binding" B "$s" "$(( (after - before) * 1024 / n ))"
      record b "$kind: delete the queue" s "$s" "$(jget "$OUT/b-$kind-$s.json" '["delete_secs"]')"
      record b "$kind: publisher confirm p99 meanwhile" ms "$s" \
        "$(python3 -c "print(round(float('$(jget "$OUT/b-$kind-load-$s.json" '["confirm_latency_us"]["p99"]')' or 'nan')/1000,2))")"
      record b "$kind: publisher confirm max meanwhile" ms "$s" \
        "$(python3 -c "print(round(float('$(jget "$OUT/b-$kind-load-$s.json" '["confirm_latency_us"]["max"]')' or 'nan')/1000,2))")"
      stop "$s"
    done
  fi

  if want i; then
    start "$s" && wait_port "$s" || exit 1
    sleep 1
    before=$(rss_kb "${PID[$s]}")
    log "i on $s"
    perf "$s" --idle-connections 10000 --hold 8 >"$OUT/i-$s.json" 2>"$OUT/i-$s.log" &
    tool=$!
    until grep -q holding "$OUT/i-$s.log" 2>/dev/null || ! kill -0 "$tool" 2>/dev/null; do sleep 0.2; done
    sleep 5
    after=$(rss_kb "${PID[$s]}")
    wait "$tool"
    record i "10000 idle connections: RSS per connection" B "$s" "$(( (after - before) * 1024 / 10000 ))"
    stop "$s"
  fi
done

# The table: one row per metric, a column per slot.
python3 - "$RESULTS" "$SLOTS" <<'EOF'
import sys, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    sc, metric, unit, slot, value = line.rstrip("\n").split("\t")
    rows.setdefault((sc, metric, unit), {})[slot] = value
slots = sys.argv[2].split()
names = {"cur": "Warren", "base": "baseline"}
print("| scenario | metric | unit | " + " | ".join(names[s] for s in slots) + " |")
print("|---|---|---|" + "---|" * len(slots))
for (sc, metric, unit), v in rows.items():
    print(f"| {sc} | {metric} | {unit} | " + " | ".join(v.get(s, "") for s in slots) + " |")
EOF
log "raw results in $OUT"
