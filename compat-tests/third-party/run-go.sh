#!/usr/bin/env bash
# Run amqp091-go's integration tests (go test -tags integration) against amqp://guest:guest@127.0.0.1:PORT/
# usage: run-go.sh PORT [extra go test args, e.g. -run 'TestIntegration.*']
# env: TIMEOUT=1200 total seconds; RACE=1 adds -race (as upstream's Makefile does);
#      CTL=/path/to/rabbitmqctl-like-script (e.g. CTL=/work/ext/refctl.sh for the reference RabbitMQ) enables TestConnection_Close_WhenMemoryAlarmIsActive (skipped otherwise)
# Excluded: recovery_test.go (all 17 TestConnectionRecovery* tests drop connections via the management HTTP API on :15672).
set -u
PORT=${1:?usage: run-go.sh PORT [go test args]}; shift
EXT=/work/ext; DIR=$EXT/amqp091-go; LOG=$EXT/logs/go-$PORT.log
TIMEOUT=${TIMEOUT:-1200}
mkdir -p $EXT/logs
command -v go >/dev/null && [ -d /usr/share/gocode/src/go.uber.org/goleak ] || { echo "need golang-go and golang-uber-goleak-dev: run $EXT/setup.sh" >&2; exit 2; }
(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null || { echo "nothing listening on 127.0.0.1:$PORT" >&2; exit 2; }
cd $DIR
# offline build: Debian's goleak instead of a module download; Debian's Go is 1.19 (go.mod says 1.20, builds fine)
cat > go.mod <<'MOD'
module github.com/rabbitmq/amqp091-go

go 1.19

require go.uber.org/goleak v1.3.0

replace go.uber.org/goleak => /usr/share/gocode/src/go.uber.org/goleak
MOD
# leave the management-API tests out of the build
sed -i '1,/^\/\/go:build/ s#^//go:build integration$#//go:build integration \&\& mgmtapi#' recovery_test.go
export GOFLAGS=-mod=mod GOPROXY=off GOSUMDB=off GOTOOLCHAIN=local GOCACHE=${GOCACHE:-$EXT/.gocache}
race=(); [ "${RACE:-0}" = 1 ] && race=(-race)
ctl=(); [ -n "${CTL:-}" ] && ctl=(RABBITMQ_RABBITMQCTL_PATH="$CTL" REFCTL_PORT="$PORT")
env "${ctl[@]}" AMQP_URL="amqp://guest:guest@127.0.0.1:$PORT/" timeout -k 10 "$TIMEOUT" \
  go test -tags integration -count=1 -v "${race[@]}" -timeout $((TIMEOUT - 30))s "$@" . >"$LOG" 2>&1
rc=$?
[ $rc = 124 ] && echo "TIMEOUT after ${TIMEOUT}s" | tee -a "$LOG"
echo "--- amqp091-go (port $PORT) exit=$rc, full log: $LOG"
grep -E "^\s*--- FAIL: " "$LOG" | sed 's/^/ /'
grep -E "^panic: |^FAIL\s|^ok\s|build failed|cannot find" "$LOG" | head -5
p=$(grep -cE "^--- PASS: " "$LOG"); f=$(grep -cE "^--- FAIL: " "$LOG"); s=$(grep -cE "^--- SKIP: " "$LOG")
echo "go: $p passed, $f failed, $s skipped   (top-level tests and examples; subtests not counted)"
exit $rc
