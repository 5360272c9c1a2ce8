'use strict';
// Tutorial 4, "Routing": a direct exchange routing logs by severity.
// Queue "disk" is bound with "error" only; queue "console" with info, warning
// and error; "debug" is bound nowhere.  Each queue must receive exactly the
// messages of the severities it is bound to, in order, each once (a repeated
// binding is a no-op).

const { collect, connect, eq, run, unique } = require('./common');

const EXCHANGE = unique('direct_logs');

const LOGS = [
  ['info', 'service started'],
  ['warning', 'disk 80% full'],
  ['error', 'disk full'],
  ['debug', 'x=42'],
  ['error', 'cannot write'],
  ['info', 'retrying'],
];
const BINDINGS = { disk: ['error'], console: ['info', 'warning', 'error'] };

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'direct', { durable: false });

  const receivers = {};
  for (const [role, keys] of Object.entries(BINDINGS)) {
    const rconn = await connect();
    const rch = await rconn.createChannel();
    const { queue } = await rch.assertQueue('', { exclusive: true });
    for (const key of keys) await rch.bindQueue(queue, EXCHANGE, key);
    await rch.bindQueue(queue, EXCHANGE, keys[0]); // duplicate binding
    receivers[role] = { rconn, col: await collect(rch, queue) };
  }

  for (const [severity, text] of LOGS) ch.publish(EXCHANGE, severity, Buffer.from(`[${severity}] ${text}`));

  for (const [role, keys] of Object.entries(BINDINGS)) {
    const expected = LOGS.filter(([s]) => keys.includes(s)).map(([s, t]) => `[${s}] ${t}`);
    const { col } = receivers[role];
    await col.waitFor(expected.length);
    eq(col.bodies(), expected, `messages received by ${role} (bound to ${keys})`);
    col.msgs.forEach((m) => eq(`[${m.fields.routingKey}]`, m.content.toString().split(' ')[0], 'delivery routing key'));
  }

  for (const { rconn } of Object.values(receivers)) await rconn.close();
  await ch.deleteExchange(EXCHANGE);
  await conn.close();
});
