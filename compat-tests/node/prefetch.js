'use strict';
// basic.qos prefetch_count.
// Ten messages wait in a queue; a consumer with prefetch 3 and manual acks
// must get exactly 3 and then nothing until it acks.  Acking one lets exactly
// one more through; a multiple ack of everything outstanding lets 3 more
// through; and so on until all 10 arrived, in order.

const { collect, connect, eq, run, unique } = require('./common');

const QUEUE = unique('prefetch');

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { durable: false });
  const bodies = Array.from({ length: 10 }, (_, i) => `m${i}`);
  for (const b of bodies) ch.sendToQueue(QUEUE, Buffer.from(b));

  await ch.prefetch(3);
  const col = await collect(ch, QUEUE, { noAck: false });

  await col.waitFor(3);
  eq(col.bodies(), bodies.slice(0, 3), 'deliveries before any ack (prefetch 3)');
  const q = await ch.checkQueue(QUEUE);
  eq([q.messageCount, q.consumerCount], [7, 1], '[ready messages, consumers] with 3 unacked');

  ch.ack(col.msgs[0]); // single ack: exactly one more
  await col.waitFor(4);
  eq(col.bodies(), bodies.slice(0, 4), 'deliveries after acking one');

  ch.ack(col.msgs.at(-1), true); // multiple ack: three more
  await col.waitFor(7);
  eq(col.bodies(), bodies.slice(0, 7), 'deliveries after a multiple ack');

  ch.ack(col.msgs.at(-1), true);
  await col.waitFor(10);
  eq(col.bodies(), bodies, 'all deliveries');
  eq(col.msgs.map((m) => m.fields.deliveryTag), Array.from({ length: 10 }, (_, i) => i + 1),
    'delivery tags on a fresh channel');

  ch.ack(col.msgs.at(-1), true);
  await col.cancel();
  eq((await ch.deleteQueue(QUEUE)).messageCount, 0, 'messages left at delete');
  await conn.close();
});
