'use strict';
// x-expires: a queue nobody uses for that long is deleted; one with a consumer is not.

const { connect, eq, expectChannelClose, run, sleep, unique } = require('./common');

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  const idle = unique('expires-idle');
  const busy = unique('expires-busy');
  await ch.assertQueue(idle, { expires: 300 });
  await ch.assertQueue(busy, { expires: 300 });
  const { consumerTag } = await ch.consume(busy, () => {}, { noAck: true });
  await sleep(900);
  eq((await ch.checkQueue(busy)).consumerCount, 1, 'the used queue is still there');
  await ch.cancel(consumerTag);
  await expectChannelClose(conn, (c) => c.checkQueue(idle), 404, 'the unused queue');
  await ch.deleteQueue(busy);
  await conn.close();
});
