"""Make pika's acceptance tests read the broker port from PIKA_TEST_PORT (default 5672). Idempotent."""
import re, pathlib, sys
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '/work/ext/pika')
EXPR = "int(__import__('os').environ.get('PIKA_TEST_PORT', '5672'))"
files = {
    'tests/acceptance/blocking_adapter_test.py': [("% {'port': 5672}", "% {'port': " + EXPR + "}")],
    'tests/acceptance/thread_safe_bounded_queue_test.py': [("port=5672,", "port=" + EXPR + ",")],
    'tests/acceptance/thread_safe_connection_test.py': [("port=5672,", "port=" + EXPR + ",")],
    'tests/base/async_test_base.py': [("port=5672)", "port=" + EXPR + ")")],
}
for f, subs in files.items():
    p = root / f
    s = p.read_text()
    for old, new in subs:
        if new in s:
            continue
        if old not in s:
            sys.exit(f'patch-pika: {old!r} not found in {f}')
        s = s.replace(old, new)
    p.write_text(s)
print('patched')
