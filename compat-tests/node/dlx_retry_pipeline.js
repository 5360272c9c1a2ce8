'use strict';
// The classic retry pipeline with dead-lettering: work queue W (dead-letters to the default
// exchange, key R) -> reject(requeue=false) -> retry queue R (x-message-ttl 100 ms,
// dead-letters back to W) -> W, three times. On the 4th delivery x-death holds one entry per
// (queue, reason), newest first, each with count 3, and x-first-death-* name the first
// rejection. Both queues are durable.

const { check, connect, eq, run, sleep, unique } = require('./common');

const WORK = unique('work');
const RETRY = unique('retry');

async function get(ch, q) {
  for (let i = 0; i < 250; i++) {
    const m = await ch.get(q, { noAck: false });
    if (m) return m;
    await sleep(20);
  }
  throw new Error(`nothing arrived in ${q}`);
}

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(WORK, { durable: true, deadLetterExchange: '', deadLetterRoutingKey: RETRY });
  await ch.assertQueue(RETRY, {
    durable: true, messageTtl: 100, deadLetterExchange: '', deadLetterRoutingKey: WORK,
  });
  ch.sendToQueue(WORK, Buffer.from('job-1'));
  for (let i = 0; i < 3; i++) {
    const m = await get(ch, WORK);
    eq(m.content.toString(), 'job-1', 'body on the way round');
    ch.reject(m, false);
  }
  const m = await get(ch, WORK);
  const h = m.properties.headers;
  const deaths = h['x-death'];
  eq(deaths.length, 2, 'x-death entries (one per queue and reason)');
  eq([deaths[0].queue, deaths[0].reason, deaths[0].count], [RETRY, 'expired', 3], 'newest x-death entry');
  eq([deaths[1].queue, deaths[1].reason, deaths[1].count], [WORK, 'rejected', 3], 'older x-death entry');
  for (const d of deaths) {
    for (const k of ['queue', 'reason', 'count', 'time', 'exchange', 'routing-keys']) {
      check(k in d, `x-death entry lacks ${k}: ${Object.keys(d)}`);
    }
  }
  eq(deaths[1]['routing-keys'], [WORK], 'routing-keys of the rejection');
  eq(h['x-first-death-queue'], WORK, 'x-first-death-queue');
  eq(h['x-first-death-reason'], 'rejected', 'x-first-death-reason');
  eq(h['x-first-death-exchange'], '', 'x-first-death-exchange');
  ch.ack(m);
  await ch.deleteQueue(WORK);
  await ch.deleteQueue(RETRY);
  await conn.close();
});
