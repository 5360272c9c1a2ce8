'use strict';
// AMQPS: amqplib over TLS to the broker's [tls] listener.
// AMQPS_URL (amqps://guest:guest@localhost:PORT/%2F) and AMQPS_CA (the CA that
// signed the server's certificate) come from scripts/test-all.sh; without them
// the program fails (a skipped test is not a passed one). The certificate is checked against that
// CA (hostname included); a message is published and got back.

const fs = require('node:fs');
const amqp = require('amqplib');
const { eq, run, unique } = require('./common');

const URL = process.env.AMQPS_URL;
const CA = process.env.AMQPS_CA;
const QUEUE = unique('tls');

if (!URL || !CA) {
  // Not a pass: a run without a TLS broker did not test TLS.
  console.log('FAIL: AMQPS_URL and AMQPS_CA are not set (no TLS broker to test)');
  process.exit(1);
}

run(async () => {
  const conn = await amqp.connect(URL, { ca: [fs.readFileSync(CA)], timeout: 5000 });
  conn.on('error', () => {});
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { exclusive: true });
  ch.sendToQueue(QUEUE, Buffer.from('over tls'));
  let m = false;
  for (let i = 0; i < 50 && m === false; i++) {
    m = await ch.get(QUEUE, { noAck: true });
  }
  eq(m && m.content.toString(), 'over tls', 'the message back over TLS');
  await conn.close();
});
