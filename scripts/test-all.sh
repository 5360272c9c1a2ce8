#!/usr/bin/env bash
# Runs every test Warren has, on a fresh Debian 12 machine as on a developer's:
#   1. cargo test --workspace: codec byte-vector tests, unit tests, and the integration
#      tests in tests/ (a real broker on a free port, lapin and raw sockets over TCP);
#   2. compat-tests/: real pika and amqplib programs against a release build of the broker,
#      plain and over TLS (certificates made with openssl; compat-tests/run.sh installs
#      pika and amqplib into local folders first);
#   3. tests/soak.rs: about a minute of a normal client under hostile load, against the
#      release build;
#   4. scripts/fuzz.sh: every cargo-fuzz target for 10 s (nightly toolchain; cargo-fuzz is
#      installed with `cargo install` if missing; the targets are built beside step 2's build);
#   5. scripts/check-dashboard.sh: every query of the Grafana dashboard through a real
#      Prometheus (Debian's package, installed if missing) scraping a loaded broker.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --workspace"
cargo test --workspace --locked 2>&1 | tee /tmp/warren-cargo-test.log
cargo_summary=$(grep -E '^test result:' /tmp/warren-cargo-test.log | awk '{p+=$4; f+=$6; i+=$8} END {print p" passed, "f" failed, "i" ignored"}')

echo "== compat-tests (pika, amqplib) against a release build"
# The fuzz targets' sanitizer build (nightly, fuzz/target) runs beside the release build, at
# a lower priority: the release build's last crate (one codegen unit, LTO) leaves a core idle.
# scripts/fuzz.sh then finds it built (and, if it failed, builds again and shows why).
if ! command -v cargo-fuzz >/dev/null; then
  cargo install cargo-fuzz --locked --quiet
fi
(cd fuzz && exec nice cargo +nightly fuzz build -O) >/tmp/warren-fuzz-build.log 2>&1 &
fuzz_build=$!
trap 'kill $fuzz_build 2>/dev/null || true' EXIT
cargo build --release --locked --bin warren
wait $fuzz_build || true
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
tls_port=$(free_port)
mgmt_port=$(free_port)
data=$(mktemp -d)
# AMQPS beside it: a CA and a server certificate for localhost, made with openssl.
certs="$data/certs"
mkdir -p "$certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=warren compat CA" \
  -keyout "$certs/ca.key" -out "$certs/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
  -keyout "$certs/server.key" -out "$certs/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$certs/san.ext"
openssl x509 -req -in "$certs/server.csr" -CA "$certs/ca.pem" -CAkey "$certs/ca.key" \
  -CAcreateserial -days 2 -extfile "$certs/san.ext" -out "$certs/server.pem" 2>/dev/null
printf '[tls]\nlisten = ["127.0.0.1:%s"]\ncertfile = "%s"\nkeyfile = "%s"\n' \
  "$tls_port" "$certs/server.pem" "$certs/server.key" > "$data/warren.toml"
WARREN_LISTEN="127.0.0.1:$port,[::1]:$port" WARREN_METRICS_LISTEN=off \
  WARREN_MANAGEMENT_LISTEN="127.0.0.1:$mgmt_port" WARREN_DATA_DIR="$data" \
  WARREN_CONFIG="$data/warren.toml" ./target/release/warren > "$data/warren.log" 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true' EXIT
# The management API is bound after the AMQP port (which accepts once the store is open).
for p in $port $mgmt_port; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && break
    sleep 0.1
  done
done
status=0
AMQP_URL="amqp://guest:guest@127.0.0.1:$port/%2F" MANAGEMENT_URL="http://127.0.0.1:$mgmt_port" \
  AMQPS_URL="amqps://guest:guest@localhost:$tls_port/%2F" AMQPS_CA="$certs/ca.pem" \
  bash compat-tests/run.sh || status=$?
if ! kill -0 $broker 2>/dev/null; then
  echo "the broker died during the compat tests; its log:"; cat "$data/warren.log"; status=1
fi
kill $broker 2>/dev/null || true
echo "== soak: a normal client under hostile load (release build)"
WARREN_TEST_BIN=target/release/warren cargo test --locked --test soak -- --nocapture 2>&1 |
  tee /tmp/warren-soak.log | grep -E '^soak:|test result|panicked' || true
grep -q 'test result: ok' /tmp/warren-soak.log || { tail -n 40 /tmp/warren-soak.log; status=1; }
echo "== fuzz smoke: every target for 10 s"
bash scripts/fuzz.sh 10 || status=1
echo "== Grafana dashboard queries through a real Prometheus"
bash scripts/check-dashboard.sh || status=1
echo "cargo tests: $cargo_summary"
exit $status
