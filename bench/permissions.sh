#!/usr/bin/env bash
# The cost of permission checks on the publish path: scenario b of compare.sh (16 B, 1p/1c,
# confirms 1000, prefetch 1000, ack/100) run as guest (".*" for all three permissions)
# and as a user whose permissions are regexes (configure/write/read "^warren-perf-\d+-"),
# in turn, on one broker, REPS times each. Prints each run and the ratio of the medians.
#   bench/permissions.sh                 REPS=5 DURATION=15 by default
# Needs target/release/warren and target/release/warren-perf (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
DURATION=${DURATION:-15}
PERF=target/release/warren-perf
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# guest/guest and app/test12, hashes as RabbitMQ 3.10.8 made them.
cat >"$work/definitions.json" <<'JSON'
{"users": [
  {"name": "guest", "password_hash": "xSZrCF4EYYl8Qp0DzwMoZpWBfEgE2xkYc/0yn4p70QD4GqN0",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ["administrator"]},
  {"name": "app", "password_hash": "c+NvRXPDBttATdwsM9PktAScPwRSs2gni2ufuRuUwBqhAgkO",
   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []}],
 "vhosts": [{"name": "/"}],
 "permissions": [
  {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
  {"user": "app", "vhost": "/", "configure": "^warren-perf-\\d+-", "write": "^warren-perf-\\d+-",
   "read": "^warren-perf-\\d+-"}]}
JSON
printf 'load_definitions = "%s"\n' "$work/definitions.json" >"$work/warren.toml"
WARREN_LISTEN="127.0.0.1:$port" WARREN_METRICS_LISTEN=off WARREN_MANAGEMENT_LISTEN=off \
  WARREN_DATA_DIR="$work/data" WARREN_CONFIG="$work/warren.toml" target/release/warren \
  >"$work/warren.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
run() {
  "$PERF" --uri "amqp://$1@127.0.0.1:$port/%2F" --json --duration "$DURATION" \
    --size 16 --confirm 1000 --prefetch 1000 --ack-every 100 2>/dev/null |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(int(d["confirm_rate"]))'
}
full=() regex=()
for r in $(seq 1 "$REPS"); do
  full+=("$(run guest:guest)")
  regex+=("$(run app:test12)")
  echo "run $r: full permissions ${full[-1]} msg/s, regex permissions ${regex[-1]} msg/s"
done
python3 - "${full[*]}" "${regex[*]}" <<'PY'
import statistics, sys
f = statistics.median(map(int, sys.argv[1].split()))
r = statistics.median(map(int, sys.argv[2].split()))
print(f"median confirmed msg/s: full {f:.0f}, regex {r:.0f}, regex/full {r / f:.3f}")
PY
