'use strict';
// queue.purge.
// purge-ok reports how many ready messages were removed.  Delivered but
// unacked messages are not purged: after 7 publishes and one unacked get,
// purge removes 6, and rejecting the unacked one puts exactly 1 back.

const { connect, eq, openChannel, run, unique } = require('./common');

const QUEUE = unique('purge');

run(async () => {
  const conn = await connect();
  // A confirm channel, so every publish is known to be enqueued before purging.
  const ch = await openChannel(conn, { confirm: true });
  await ch.assertQueue(QUEUE, { durable: false });

  eq((await ch.purgeQueue(QUEUE)).messageCount, 0, 'purge of an empty queue');

  for (let i = 0; i < 7; i++) ch.sendToQueue(QUEUE, Buffer.from(`p${i}`));
  await ch.waitForConfirms();
  const held = await ch.get(QUEUE, { noAck: false });
  eq(held.content.toString(), 'p0', 'body of the unacked get');

  eq((await ch.purgeQueue(QUEUE)).messageCount, 6, 'purge-ok messageCount (one message unacked)');
  eq((await ch.checkQueue(QUEUE)).messageCount, 0, 'ready messages after purge');
  eq((await ch.purgeQueue(QUEUE)).messageCount, 0, 'second purge');

  ch.reject(held, true);
  const m = await ch.get(QUEUE, { noAck: true });
  eq([m.content.toString(), m.fields.redelivered, m.fields.messageCount], ['p0', true, 0],
    'the unacked message after requeue [body, redelivered, messageCount]');

  for (let i = 0; i < 3; i++) ch.sendToQueue(QUEUE, Buffer.from('x'));
  await ch.waitForConfirms();
  eq((await ch.deleteQueue(QUEUE)).messageCount, 3, 'delete-ok messageCount');
  await conn.close();
});
