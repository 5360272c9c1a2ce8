'use strict';
// Mandatory publishing and basic.return (no confirms involved).
// * An unroutable mandatory message (direct exchange, key bound to nothing)
//   comes back as basic.return 312 NO_ROUTE with exchange, routing key, body
//   (binary: NUL and 0xFF bytes) and properties intact.
// * The same via the default exchange to a queue name that does not exist.
// * A routable mandatory message is delivered, not returned.
// * An unroutable message without the mandatory flag is silently dropped.

const { connect, eq, run, sleep, unique, waitUntil } = require('./common');

const EXCHANGE = unique('mandatory');
const QUEUE = unique('mandatory-q');
const BODY = Buffer.from([0, 1, ...Buffer.from('binary'), 0xff, 0xfe, 0x20, 0]);

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'direct', { durable: false });
  await ch.assertQueue(QUEUE, { durable: false });
  await ch.bindQueue(QUEUE, EXCHANGE, 'bound');

  const returns = [];
  ch.on('return', (msg) => returns.push(msg));

  ch.publish(EXCHANGE, 'unbound', BODY, {
    mandatory: true, contentType: 'application/octet-stream', messageId: 'm-1', headers: { 'x-test': 'kept' },
  });
  ch.sendToQueue(unique('no-such-queue'), Buffer.from('to nowhere'), { mandatory: true });
  ch.publish(EXCHANGE, 'bound', Buffer.from('routable'), { mandatory: true });
  ch.publish(EXCHANGE, 'unbound', Buffer.from('dropped silently'));

  await waitUntil(() => returns.length >= 2, 5000, '2 basic.return frames');
  await sleep(500); // a wrongly returned routable/non-mandatory message would show up here
  eq(returns.map((m) => m.content.toString('latin1')),
    [BODY.toString('latin1'), 'to nowhere'], 'returned message bodies');

  const [r1, r2] = returns;
  eq(r1.fields.replyCode, 312, 'basic.return reply-code');
  eq(r1.fields.exchange, EXCHANGE, 'basic.return exchange');
  eq(r1.fields.routingKey, 'unbound', 'basic.return routing key');
  eq(r1.content, BODY, 'returned body bytes');
  eq(r1.properties.contentType, 'application/octet-stream', 'returned contentType');
  eq(r1.properties.messageId, 'm-1', 'returned messageId');
  eq(r1.properties.headers, { 'x-test': 'kept' }, 'returned headers');
  eq(r2.fields.replyCode, 312, 'basic.return reply-code (default exchange)');
  eq(r2.fields.exchange, '', 'basic.return exchange (default exchange)');

  // Exactly the routable message reached the queue.
  const got = await ch.get(QUEUE, { noAck: true });
  eq(got && got.content.toString(), 'routable', 'routed mandatory message');
  eq(got.fields.messageCount, 0, 'messages left after the routed one');

  await ch.deleteQueue(QUEUE);
  await ch.deleteExchange(EXCHANGE);
  await conn.close();
});
