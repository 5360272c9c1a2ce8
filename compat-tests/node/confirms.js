'use strict';
// Publisher confirms (createConfirmChannel).
// * 50 persistent publishes: each publish callback reports success, the
//   broker's basic.ack delivery tags cover exactly 1..50, and all 50 are in
//   the queue.
// * A mandatory, unroutable publish is returned (312) and then acked - not
//   nacked: unroutable is not a broker failure.
// * Publishing to a missing exchange closes the channel with 404 NOT_FOUND;
//   the pending confirm fails; the connection stays usable.

const { check, connect, eq, openChannel, run, sleep, unique } = require('./common');

const QUEUE = unique('confirms');
const MISSING_EXCHANGE = unique('no-such-exchange');

// Publish on a confirm channel and resolve with the callback's error (or null).
const publishConfirmed = (ch, exchange, key, body, opts = {}) =>
  new Promise((resolve) => ch.publish(exchange, key, Buffer.from(body), opts, (err) => resolve(err)));

run(async () => {
  const conn = await connect();
  const ch = await openChannel(conn, { confirm: true });
  await ch.assertQueue(QUEUE, { durable: false });

  const acked = new Set();
  const nacks = [];
  ch.on('ack', ({ deliveryTag, multiple }) => {
    // A multiple ack confirms every tag up to deliveryTag.
    if (multiple) for (let t = 1; t <= deliveryTag; t++) acked.add(t);
    else acked.add(deliveryTag);
  });
  ch.on('nack', (f) => nacks.push(f));

  const results = [];
  for (let i = 0; i < 50; i++) {
    results.push(publishConfirmed(ch, '', QUEUE, `confirmed ${i}`, { persistent: true, mandatory: true }));
  }
  await ch.waitForConfirms();
  eq(await Promise.all(results), new Array(50).fill(null), 'publish callback errors');
  eq([...acked].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 1), 'acked delivery tags');
  eq(nacks, [], 'nacks');
  eq((await ch.checkQueue(QUEUE)).messageCount, 50, 'messages in queue after 50 confirmed publishes');

  // Unroutable + mandatory: basic.return, then basic.ack for tag 51.
  const returned = [];
  ch.on('return', (msg) => returned.push(msg));
  const err = await publishConfirmed(ch, '', unique('nobody-home'), 'returned', { mandatory: true });
  eq(err, null, 'confirm of the returned message (ack, not nack)');
  eq(returned.length, 1, 'returned messages');
  eq(returned[0].fields.replyCode, 312, 'basic.return reply-code');
  eq(returned[0].content.toString(), 'returned', 'returned body');
  check(acked.has(51), 'delivery tag 51 acked');

  // Publish to a missing exchange: channel.close 404, pending confirm fails.
  const lost = await publishConfirmed(ch, MISSING_EXCHANGE, 'rk', 'into the void');
  check(lost instanceof Error, 'confirm callback of a publish to a missing exchange must get an error');
  await Promise.race([ch.closed, sleep(3000)]);
  check(ch.errors.length === 1, `channel errors after publishing to a missing exchange: ${ch.errors.map(String)}`);
  eq(ch.errors[0].code, 404, `channel.close reply-code (${ch.errors[0].message})`);

  // Channel errors do not take the connection down.
  const ch2 = await openChannel(conn, { confirm: true });
  eq(await publishConfirmed(ch2, '', QUEUE, 'on a new channel'), null, 'confirm on a new channel');
  eq((await ch2.checkQueue(QUEUE)).messageCount, 51, 'messages in queue at the end');
  await ch2.deleteQueue(QUEUE);
  await conn.close();
});
