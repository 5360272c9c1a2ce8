'use strict';
// Priority queues: x-max-priority 10; highest priority first, FIFO within a priority; above
// the maximum counts as the maximum, none as 0; x-max-priority 300 is refused with 406.

const { connect, eq, expectChannelClose, run, unique } = require('./common');

const QUEUE = unique('prio');

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { maxPriority: 10 });
  const sent = [['p0-a', 0], ['none', null], ['p5-a', 5], ['p10-a', 10], ['p20', 20],
    ['p5-b', 5], ['p1', 1], ['p10-b', 10]];
  for (const [body, p] of sent) {
    ch.sendToQueue(QUEUE, Buffer.from(body), p === null ? {} : { priority: p });
  }
  const got = [];
  for (;;) {
    const m = await ch.get(QUEUE, { noAck: true });
    if (!m) break;
    got.push(m.content.toString());
  }
  eq(got, ['p10-a', 'p20', 'p10-b', 'p5-a', 'p5-b', 'p1', 'p0-a', 'none'], 'delivery order');
  await ch.deleteQueue(QUEUE);
  await expectChannelClose(conn, (c) => c.assertQueue(unique('prio-bad'), { maxPriority: 300 }),
    406, 'x-max-priority 300');
  await conn.close();
});
