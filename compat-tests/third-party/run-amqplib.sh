#!/usr/bin/env bash
# Run amqplib's test suite (node --test) against amqp://guest:guest@127.0.0.1:PORT/
# usage: run-amqplib.sh PORT [extra node --test args...]
# env: TIMEOUT=1200 total seconds; V6FWD=1 forwards [::1]:PORT -> 127.0.0.1:PORT with socat for the
#      'Connect > Connect API > ipv6' test, for a broker that listens on IPv4 only (rabbitmq-ref does)
set -u
PORT=${1:?usage: run-amqplib.sh PORT}; shift
EXT=/work/ext; DIR=$EXT/amqplib; LOG=$EXT/logs/amqplib-$PORT.log; XML=$EXT/logs/amqplib-$PORT.xml
TIMEOUT=${TIMEOUT:-1200}
mkdir -p $EXT/logs
[ -d $DIR/node_modules ] || { echo "no node_modules: run $EXT/setup.sh first" >&2; exit 2; }
python3 $EXT/patch-amqplib.py $DIR >/dev/null || exit 2   # connect/callback tests take port from AMQP_PORT
(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null || { echo "nothing listening on 127.0.0.1:$PORT" >&2; exit 2; }
cd $DIR
rm -f "$XML"
if [ "${V6FWD:-0}" = 1 ]; then
  socat TCP6-LISTEN:$PORT,bind=[::1],reuseaddr,fork TCP4:127.0.0.1:$PORT & fwd=$!
  trap 'kill $fwd 2>/dev/null' EXIT; sleep 0.5
fi
URL="amqp://guest:guest@127.0.0.1:$PORT/" AMQP_PORT=$PORT timeout -k 10 "$TIMEOUT" \
  node --test --test-timeout=30000 --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="$XML" "$@" >"$LOG" 2>&1
rc=$?
[ $rc = 124 ] && echo "TIMEOUT after ${TIMEOUT}s" | tee -a "$LOG"
echo "--- amqplib (port $PORT) exit=$rc, full log: $LOG"
grep "^ℹ" "$LOG" | tr "\n" " "; echo
python3 - "$XML" <<'PY'
import sys, xml.etree.ElementTree as ET
try: r = ET.parse(sys.argv[1]).getroot()
except Exception as e: print('amqplib: no junit xml (%s)' % e); sys.exit()
p = f = s = 0; failed = []
def walk(node, path):
    global p, f, s
    for c in node:
        if c.tag == 'testsuite': walk(c, path + [c.get('name')])
        elif c.tag == 'testcase':
            kinds = {x.tag for x in c}
            name = ' > '.join(path + [c.get('name')])
            if kinds & {'failure', 'error'}: f += 1; failed.append(name)
            elif 'skipped' in kinds: s += 1
            else: p += 1
walk(r, [])
for n in failed: print('  FAILED', n)
print(f'amqplib: {p} passed, {f} failed, {s} skipped')
PY
exit $rc
