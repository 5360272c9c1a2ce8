'use strict';
// Length limits: x-max-length with drop-head (the dropped head is dead-lettered, reason
// maxlen), reject-publish (confirming publisher gets a nack), reject-publish-dlx (nack and
// dead-lettered), and x-max-length-bytes.

const { connect, eq, openChannel, run, sleep, unique } = require('./common');

const DLX = unique('dlx');
const DLQ = unique('dlq');

async function drain(ch, q) {
  const out = [];
  for (;;) {
    const m = await ch.get(q, { noAck: true });
    if (!m) return out;
    out.push(m);
  }
}

async function waitDrain(ch, q, n) {
  let got = [];
  for (let i = 0; i < 250 && got.length < n; i++) {
    got = got.concat(await drain(ch, q));
    if (got.length < n) await sleep(20);
  }
  return got;
}

const bodies = (ms) => ms.map((m) => m.content.toString());

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(DLX, 'fanout');
  await ch.assertQueue(DLQ);
  await ch.bindQueue(DLQ, DLX, '');

  let q = unique('drop-head');
  await ch.assertQueue(q, { maxLength: 3, deadLetterExchange: DLX });
  for (let i = 0; i < 5; i++) ch.sendToQueue(q, Buffer.from(`m${i}`));
  eq(bodies(await drain(ch, q)), ['m2', 'm3', 'm4'], 'drop-head keeps the newest 3');
  const dead = await waitDrain(ch, DLQ, 2);
  eq(bodies(dead), ['m0', 'm1'], 'dropped heads, dead-lettered in order');
  eq(dead[0].properties.headers['x-death'][0].reason, 'maxlen', 'x-death reason');

  const cch = await openChannel(conn, { confirm: true });
  for (const [mode, deadLettered] of [['reject-publish', false], ['reject-publish-dlx', true]]) {
    q = unique(mode);
    await cch.assertQueue(q, { maxLength: 2, overflow: mode, deadLetterExchange: DLX });
    const outcome = (body) => new Promise((resolve) => {
      cch.sendToQueue(q, Buffer.from(body), {}, (err) => resolve(err ? 'nack' : 'ack'));
    });
    eq([await outcome('a'), await outcome('b'), await outcome(`${mode}-c`)], ['ack', 'ack', 'nack'],
      `${mode}: confirms`);
    eq((await cch.checkQueue(q)).messageCount, 2, `${mode}: messages kept`);
    if (deadLettered) {
      const d = await waitDrain(ch, DLQ, 1);
      eq(bodies(d), [`${mode}-c`], `${mode}: the refused message dead-lettered`);
      eq(d[0].properties.headers['x-death'][0].reason, 'maxlen', 'x-death reason');
    }
    await cch.deleteQueue(q);
  }
  await sleep(100);
  eq(bodies(await drain(ch, DLQ)), [], 'nothing else dead-lettered (reject-publish does not)');

  q = unique('bytes');
  await ch.assertQueue(q, { arguments: { 'x-max-length-bytes': 10 } });
  for (const b of ['aaaa', 'bbbb', 'cccc', 'dddd']) ch.sendToQueue(q, Buffer.from(b));
  eq(bodies(await drain(ch, q)), ['cccc', 'dddd'], 'max-length-bytes keeps 8 of 16 bytes');
  await ch.deleteQueue(q);
  await ch.deleteQueue(DLQ);
  await ch.deleteExchange(DLX);
  await conn.close();
});
