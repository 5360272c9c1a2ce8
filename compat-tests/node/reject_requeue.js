'use strict';
// basic.reject and basic.nack.
// * reject(requeue=true) puts the message back; it is redelivered with
//   redelivered=true and the same body.
// * reject(requeue=false) drops it (no dead-letter exchange configured).
// * nack(multiple=true, requeue=true) up to the 2nd of three unacked
//   deliveries requeues exactly the first two; the third stays unacked.
// * nack(multiple=true, requeue=false) drops everything outstanding.
// * Closing a channel with an unacked message requeues it.

const { collect, connect, eq, run, sleep, unique, waitUntil } = require('./common');

const QUEUE = unique('reject');

const summary = (m) => m && [m.content.toString(), m.fields.redelivered];

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { durable: false });

  // --- basic.reject via basic.get ---
  ch.sendToQueue(QUEUE, Buffer.from('reject me'));
  let m = await ch.get(QUEUE, { noAck: false });
  eq(summary(m), ['reject me', false], 'first get [body, redelivered]');
  ch.reject(m, true);

  m = await ch.get(QUEUE, { noAck: false });
  eq(summary(m), ['reject me', true], 'get after reject(requeue=true)');
  ch.reject(m, false);
  eq(await ch.get(QUEUE, { noAck: false }), false, 'get after reject(requeue=false) (must be get-empty)');

  // --- basic.nack multiple via a consumer ---
  for (const b of ['n1', 'n2', 'n3']) ch.sendToQueue(QUEUE, Buffer.from(b));
  const col = await collect(ch, QUEUE, { noAck: false });
  await col.waitFor(3);
  eq(col.bodies(), ['n1', 'n2', 'n3'], 'first deliveries');
  eq(col.msgs.map((x) => x.fields.redelivered), [false, false, false], 'redelivered flags, first time');

  // Requeue n1 and n2 only (multiple up to n2); n3 stays unacked.
  ch.nack(col.msgs[1], true, true);
  await col.waitFor(5);
  const again = col.msgs.slice(3);
  // RabbitMQ requeues at the original position, so they come back in order;
  // the AMQP spec only guarantees the set.
  eq(again.map((x) => x.content.toString()).sort(), ['n1', 'n2'], 'messages requeued by nack(multiple)');
  eq(again.map((x) => x.fields.redelivered), [true, true], 'redelivered flags after nack');

  // Drop everything outstanding (n3 and the two redeliveries).
  ch.nack(col.msgs.at(-1), true, false);
  await sleep(400);
  eq(col.msgs.length, 5, 'deliveries after nack(requeue=false) (nothing may come back)');
  await col.cancel();
  eq((await ch.checkQueue(QUEUE)).messageCount, 0, 'messages left after nack(requeue=false)');

  // --- unacked messages are requeued when their channel closes ---
  ch.sendToQueue(QUEUE, Buffer.from('orphan'));
  const ch2 = await conn.createChannel();
  m = await ch2.get(QUEUE, { noAck: false });
  eq(summary(m), ['orphan', false], 'get on second channel');
  await ch2.close();
  // Requeue-on-close may complete just after close-ok; allow a moment.
  await waitUntil(async () => (await ch.checkQueue(QUEUE)).messageCount === 1, 2000,
    'the unacked message to be requeued after channel.close');
  m = await ch.get(QUEUE, { noAck: true });
  eq(summary(m), ['orphan', true], 'get after the holding channel closed');

  eq((await ch.deleteQueue(QUEUE)).messageCount, 0, 'messages left at delete');
  await conn.close();
});
