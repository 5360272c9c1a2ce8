# Helpers shared by bench/compare.sh and bench/scale.sh (sourced; they read $SCENARIOS).
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
want() { [[ "$SCENARIOS" == *" $1 "* ]]; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# jget FILE EXPR: a value from the JSON summary in FILE (EXPR indexes it, e.g. ["latency_us"]["p50"])
jget() {
  python3 -c 'import json,sys
try:
    v = json.load(open(sys.argv[1]))
    print(eval("v" + sys.argv[2]))
except Exception:
    print("")' "$1" "$2"
}
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo ""; }

# rabbit_boot PORT DIR: starts the reference RabbitMQ on PORT (keeping its data) with its
# open-files limit raised to the hard limit (as RabbitMQ recommends for production:
# Debian's 1024 cannot hold 1,000 connections); DIR holds the env file it reads.
rabbit_boot() {
  local hard
  hard=$(ulimit -Hn)
  [ "$hard" = unlimited ] && hard=65536
  [ "$hard" -gt 65536 ] && hard=65536
  echo "ulimit -n $hard" >"$2/rabbitmq-env.conf"
  chmod 644 "$2/rabbitmq-env.conf"
  chmod 755 "$2" # the rabbitmq user reads the env file from here
  RABBITMQ_CONF_ENV_FILE="$2/rabbitmq-env.conf" "${RABBITMQ_REF:-/work/shared/bin/rabbitmq-ref}" start "$1"
}

# rabbit_pid PORT: the pid of the node's beam.smp (from its pid file, or from the node
# name in a beam.smp's environment).
rabbit_pid() {
  local pid p
  pid=$(cat "/tmp/rabbitmq-ref-$1/pid" 2>/dev/null)
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != beam.smp ]; then
    pid=""
    for p in $(pgrep -x beam.smp); do
      if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RABBITMQ_NODENAME=ref$1@localhost"; then
        pid=$p
      fi
    done
  fi
  echo "$pid"
}
