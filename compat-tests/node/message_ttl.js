'use strict';
// Message TTLs: x-message-ttl and per-message expiration remove unconsumed messages (the
// count drops with no consumer asking); expired messages are dead-lettered (reason
// "expired"); a dead-lettered message loses its expiration, kept in x-death as
// original-expiration; an invalid expiration closes the channel with 406.

const { connect, eq, expectChannelClose, run, sleep, unique } = require('./common');

const DLX = unique('dlx');
const DLQ = unique('dlq');

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(DLX, 'fanout');
  await ch.assertQueue(DLQ);
  await ch.bindQueue(DLQ, DLX, '');
  const byQueue = unique('ttl-queue');
  const byMessage = unique('ttl-message');
  await ch.assertQueue(byQueue, { messageTtl: 100, deadLetterExchange: DLX });
  await ch.assertQueue(byMessage, { deadLetterExchange: DLX });
  for (let i = 0; i < 3; i++) ch.sendToQueue(byQueue, Buffer.from(`q${i}`));
  ch.sendToQueue(byMessage, Buffer.from('m0'), { expiration: '100' });
  await sleep(500);
  eq((await ch.checkQueue(byQueue)).messageCount, 0, 'queue TTL: messages left');
  eq((await ch.checkQueue(byMessage)).messageCount, 0, 'message TTL: messages left');
  const dead = {};
  for (;;) {
    const m = await ch.get(DLQ, { noAck: true });
    if (!m) break;
    dead[m.content.toString()] = m.properties;
  }
  eq(Object.keys(dead).sort(), ['m0', 'q0', 'q1', 'q2'], 'expired messages dead-lettered');
  for (const [body, p] of Object.entries(dead)) {
    eq(p.headers['x-death'][0].reason, 'expired', `${body}: x-death reason`);
  }
  eq(dead.m0.expiration, undefined, 'expiration removed from the dead-lettered message');
  eq(dead.m0.headers['x-death'][0]['original-expiration'], '100', 'original-expiration');
  await ch.deleteQueue(byQueue);
  await ch.deleteQueue(byMessage);
  await ch.deleteQueue(DLQ);
  await ch.deleteExchange(DLX);

  const q = unique('ttl-bad');
  await ch.assertQueue(q);
  await expectChannelClose(conn, async (c) => {
    c.sendToQueue(q, Buffer.from('x'), { expiration: 'soon' });
    await c.checkQueue(q);
  }, 406, 'invalid expiration');
  await ch.deleteQueue(q);
  await conn.close();
});
