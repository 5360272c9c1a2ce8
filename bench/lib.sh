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
