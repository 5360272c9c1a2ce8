'use strict';
// Tutorial 3, "Publish/Subscribe": a fanout exchange broadcasting logs.
// Two subscribers (own connections) each declare an exclusive server-named
// queue bound to the fanout exchange; every log line must reach both, in
// order.  A line emitted before anyone subscribed is dropped, and the
// exclusive queues vanish when their connection closes.

const { check, collect, connect, eq, expectChannelClose, run, unique } = require('./common');

const EXCHANGE = unique('logs');

async function subscribe() {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'fanout', { durable: false });
  const ok = await ch.assertQueue('', { exclusive: true });
  check(ok.queue !== '', 'server-named queue: declare-ok returned an empty name');
  eq(ok.messageCount, 0, 'fresh server-named queue message count');
  await ch.bindQueue(ok.queue, EXCHANGE, ''); // routing key ignored by fanout
  return { conn, col: await collect(ch, ok.queue, { noAck: true }) };
}

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'fanout', { durable: false });
  ch.publish(EXCHANGE, '', Buffer.from('lost: before any subscriber'));

  const subs = [await subscribe(), await subscribe()];
  check(subs[0].col.queue !== subs[1].col.queue, 'two server-named queues got the same name');

  const lines = [0, 1, 2, 3, 4].map((i) => `log line ${i}`);
  // The routing key must not matter for a fanout exchange.
  lines.forEach((line, i) => ch.publish(EXCHANGE, `ignored.${i}`, Buffer.from(line)));

  for (const [i, { col }] of subs.entries()) {
    await col.waitFor(lines.length);
    eq(col.bodies(), lines, `subscriber ${i} log lines`);
    col.msgs.forEach((m) => eq(m.fields.exchange, EXCHANGE, `subscriber ${i} delivery exchange`));
  }

  // Exclusive queues are deleted along with their owning connection.
  for (const { conn: c, col } of subs) {
    await c.close();
    await expectChannelClose(conn, (x) => x.checkQueue(col.queue), 404,
      `passive declare of closed subscriber's queue ${col.queue}`);
  }

  await ch.deleteExchange(EXCHANGE);
  await conn.close();
});
