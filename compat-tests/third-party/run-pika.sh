#!/usr/bin/env bash
# Run pika's tests/acceptance against amqp://guest:guest@127.0.0.1:PORT/
# usage: run-pika.sh PORT [extra pytest args...]   (env: TIMEOUT=1200 total seconds, JOBS=2 xdist workers, 0 = serial)
set -u
PORT=${1:?usage: run-pika.sh PORT [pytest args]}; shift
EXT=/work/ext; DIR=$EXT/pika; LOG=$EXT/logs/pika-$PORT.log; XML=$EXT/logs/pika-$PORT.xml
TIMEOUT=${TIMEOUT:-1200}; JOBS=${JOBS:-2}
mkdir -p $EXT/logs
[ -x $DIR/.venv/bin/pytest ] || { echo "no venv: run $EXT/setup.sh first" >&2; exit 2; }
python3 $EXT/patch-pika.py $DIR >/dev/null || exit 2          # port comes from PIKA_TEST_PORT
(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null || { echo "nothing listening on 127.0.0.1:$PORT" >&2; exit 2; }
xdist=(); [ "$JOBS" != 0 ] && xdist=(-n "$JOBS" --dist=loadscope)
cd $DIR
PIKA_TEST_PORT=$PORT timeout -k 10 "$TIMEOUT" .venv/bin/pytest tests/acceptance "${xdist[@]}" \
  --timeout=120 -p no:cacheprovider -rfE --junitxml="$XML" "$@" >"$LOG" 2>&1
rc=$?
[ $rc = 124 ] && echo "TIMEOUT after ${TIMEOUT}s" | tee -a "$LOG"
echo "--- pika (port $PORT) exit=$rc, full log: $LOG"
grep -E "^(FAILED|ERROR) tests/" "$LOG" | sed 's/^/  /' | cut -c1-220
tail -1 "$LOG"
python3 - "$XML" <<'PY'
import sys, xml.etree.ElementTree as ET
try: r = ET.parse(sys.argv[1]).getroot()
except Exception as e: print('pika: no junit xml (%s)' % e); sys.exit()
p = f = s = 0
for tc in r.iter('testcase'):
    kinds = {c.tag for c in tc}
    if kinds & {'failure', 'error'}: f += 1
    elif 'skipped' in kinds: s += 1
    else: p += 1
print(f'pika: {p} passed, {f} failed, {s} skipped')
PY
exit $rc
