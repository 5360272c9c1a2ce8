'use strict';
// Passive declares (amqplib's checkQueue / checkExchange).
// * Missing queue: channel.close 404 NOT_FOUND; missing exchange: 404 too.
// * Channel errors leave the connection usable.
// * On an existing queue it reports ready-message and consumer counts; it
//   never creates anything.  (amqplib's checkQueue sends no other flags, so
//   "passive ignores mismatching flags" is covered by the pika test only.)

const { connect, eq, expectChannelClose, openChannel, run, sleep, unique, waitUntil } = require('./common');

const QUEUE = unique('passive');
const MISSING = unique('missing');

run(async () => {
  const conn = await connect();
  await expectChannelClose(conn, (c) => c.checkQueue(MISSING), 404, 'passive declare of a missing queue');
  await expectChannelClose(conn, (c) => c.checkExchange(MISSING), 404, 'passive declare of a missing exchange');

  const ch = await openChannel(conn, { confirm: true });
  await ch.assertQueue(QUEUE, { durable: false });
  for (let i = 0; i < 4; i++) ch.sendToQueue(QUEUE, Buffer.from('x'));
  await ch.waitForConfirms();

  // Two consumers with prefetch 1 each: 2 messages out, 2 ready.
  const consumers = [];
  for (let i = 0; i < 2; i++) {
    const c = await conn.createChannel();
    await c.prefetch(1);
    await c.consume(QUEUE, () => {}, { noAck: false });
    consumers.push(c);
  }
  await sleep(300);
  let ok = await ch.checkQueue(QUEUE);
  eq(ok.queue, QUEUE, 'declare-ok name');
  eq(ok.consumerCount, 2, 'declare-ok consumerCount');
  eq(ok.messageCount, 2, 'declare-ok messageCount (ready only, 2 unacked)');

  await expectChannelClose(conn, (c) => c.checkQueue(MISSING), 404,
    'passive declare still 404 (not created by earlier attempts)');

  // Closing the consumers' channels requeues their unacked messages.
  for (const c of consumers) await c.close();
  await waitUntil(async () => (await ch.checkQueue(QUEUE)).messageCount === 4, 2000,
    '4 ready messages after the consumers closed');
  ok = await ch.checkQueue(QUEUE);
  eq(ok.consumerCount, 0, 'consumerCount after the consumers closed');
  eq((await ch.deleteQueue(QUEUE)).messageCount, 4, 'delete-ok messageCount');
  await conn.close();
});
