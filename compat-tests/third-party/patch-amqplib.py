"""Make amqplib's broker tests use the port in env AMQP_PORT (default 5672) instead of 5672. Idempotent.
channel_api.test.js already reads env URL; connect.test.js and callback_api.test.js hard-code amqp://localhost."""
import pathlib, sys
root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else '/work/ext/amqplib')
MARK = '// [warren-ext] port patch\n'
P = "const __PORT = Number(process.env.AMQP_PORT || 5672);\n"
def patch(f, subs):
    p = root / f; s = p.read_text()
    if s.startswith(MARK): return
    for old, new in subs:
        n = s.count(old)
        if n == 0: sys.exit(f'patch-amqplib: {old!r} not found in {f}')
        s = s.replace(old, new)
    p.write_text(MARK + P + s)
patch('test/connect.test.js', [
    ("'amqp://localhost'", "`amqp://localhost:${__PORT}`"),
    ("'amqp://localhost?frameMax=NOT_A_NUMBER'", "`amqp://localhost:${__PORT}?frameMax=NOT_A_NUMBER`"),
    ("'amqp://localhost?heartbeat=NOT_A_NUMBER'", "`amqp://localhost:${__PORT}?heartbeat=NOT_A_NUMBER`"),
    ("{ protocol: 'amqp', hostname: 'localhost' }", "{ protocol: 'amqp', hostname: 'localhost', port: __PORT }"),
    ("connect({ heartbeat: 20 }, ", "connect({ heartbeat: 20, hostname: 'localhost', port: __PORT }, "),
    ("'amqp://[::1]'", "`amqp://[::1]:${__PORT}`"),
])
patch('test/callback_api.test.js', [
    ("const { connect } = require('../callback_api');",
     "const { connect: __connect } = require('../callback_api');\n"
     "const connect = (...a) => typeof a[0] === 'function' ? __connect(`amqp://localhost:${__PORT}`, ...a) : __connect(...a);"),
])
print('patched')
