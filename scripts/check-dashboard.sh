#!/usr/bin/env bash
# The Grafana dashboard against reality: a release Warren with its metrics endpoint, a real
# Prometheus (Debian's package, installed if missing) scraping /metrics and
# /metrics/per-object every second, load from warren-perf (persistent with confirms, a
# deep queue, unroutable publishes), then every PromQL expression of grafana/dashboards/*.json
# through Prometheus's HTTP API: each must return data.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v prometheus >/dev/null; then
  echo "installing Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq prometheus >/dev/null
fi
# The package may start its own instance (when the machine runs services); ours is separate.

cargo build --release --locked --bin warren
cargo build --release --locked -p warren-perf
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
amqp=$(free_port); metrics=$(free_port); prom=$(free_port)
work=$(mktemp -d)
cleanup() {
  kill "${broker:-}" "${prom_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

WARREN_LISTEN="127.0.0.1:$amqp" WARREN_METRICS_LISTEN="127.0.0.1:$metrics" WARREN_MANAGEMENT_LISTEN=off \
  WARREN_DATA_DIR="$work/data" ./target/release/warren >"$work/warren.log" 2>&1 &
broker=$!
cat >"$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: warren
    metrics_path: /metrics
    static_configs: [{targets: ["127.0.0.1:$metrics"]}]
  - job_name: warren-per-object
    metrics_path: /metrics/per-object
    static_configs: [{targets: ["127.0.0.1:$metrics"]}]
YML
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$amqp") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$prom") 2>/dev/null && break
  sleep 0.1
done

uri="amqp://guest:guest@127.0.0.1:$amqp/%2F"
perf=./target/release/warren-perf
# Persistent messages with confirms (confirm latency, store commits), consumed and acked.
"$perf" --uri "$uri" --persistent --confirm 500 --prefetch 500 --size 64 --duration 6 --quiet >/dev/null
# A queue left with messages in it (queue depth, top queues), held while Prometheus scrapes.
"$perf" --uri "$uri" --fill 5000 --size 256 --quiet >/dev/null
# Load still running while the last scrapes happen, so that every rate has data.
"$perf" --uri "$uri" --persistent --confirm 500 --prefetch 500 --size 64 --duration 8 --quiet >/dev/null &
load=$!
sleep 6
status=0
python3 tests/dashboard/check_dashboard.py "http://127.0.0.1:$prom" grafana/dashboards/*.json || status=$?
wait "$load" || true
if [ "$status" != 0 ]; then
  echo "--- warren log"; tail -n 20 "$work/warren.log"
  echo "--- prometheus log"; tail -n 20 "$work/prometheus.log"
fi
exit $status
