#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 10) on a copy of its seed corpus
# (fuzz/corpus/<target>: valid frames of every method, tables nested and wide, ...), and
# fails if any finds a crash (the input is kept under fuzz/artifacts/<target>/).
#   scripts/fuzz.sh 1200          20 minutes per target, by hand
#   TARGETS="sasl config" scripts/fuzz.sh 60
#   FUZZ_JOBS=1 scripts/fuzz.sh 10   one target at a time (default: as many as cores)
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`), installed by the
# README's test command if missing.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-10}
targets=${TARGETS:-frame_decoder content_assembly field_table sasl config store_records}
# Every target at once (one build of the instrumented crates).
cargo +nightly fuzz build -O
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One libFuzzer process per target, up to FUZZ_JOBS (default: one per core) at a time; each
# still runs for SECONDS on its own core. Results are printed in the order of $targets.
jobs_max=${FUZZ_JOBS:-$(nproc)}
run_target() {
  local t=$1 log="$work/$1.log" runs
  if cargo +nightly fuzz run -O "$t" "$work/$t" -- -max_total_time="$secs" -max_len=262144 \
      -rss_limit_mb=2048 -timeout=10 >"$log" 2>&1; then
    runs=$(grep -oE '#[0-9]+' "$log" | tail -1 | tr -d '#' || true)
    echo "fuzz: $t: ${runs:-?} executions in ${secs}s, no crash" >"$work/$t.result"
  else
    { echo "fuzz: $t: FAILED (artifacts in fuzz/artifacts/$t)"; tail -n 40 "$log"; } >"$work/$t.result"
    touch "$work/$t.failed"
  fi
}
for t in $targets; do
  mkdir -p "$work/$t"
  cp -r "corpus/$t/." "$work/$t/"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n || true; done
  run_target "$t" &
done
wait
status=0
for t in $targets; do
  cat "$work/$t.result" 2>/dev/null || echo "fuzz: $t: FAILED (no result)"
  [ ! -e "$work/$t.failed" ] && [ -e "$work/$t.result" ] || status=1
done
exit $status
