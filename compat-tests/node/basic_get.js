'use strict';
// basic.get, basic.get-empty and round-tripping of content properties.
// * get on an empty queue answers get-empty (amqplib resolves false).
// * get-ok carries messageCount = messages still ready after this one.
// * Every basic property, including a header table with nested values,
//   floats and byte arrays, comes back exactly as published; an empty body
//   and a body larger than the default frame size (131072) round-trip too.

const { connect, eq, run, unique } = require('./common');

const QUEUE = unique('get');

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { durable: false });

  eq(await ch.get(QUEUE, { noAck: true }), false, 'get on an empty queue');

  const headers = {
    str: 'text',
    int: 42,
    negative: -7,
    big: 2 ** 40,
    bool: true,
    float: 1.5,
    bytes: Buffer.from([0, 1, 2, 255]),
    nested: { a: 1, b: 'two' },
    list: [1, 'x', false],
    none: null,
  };
  const props = {
    contentType: 'application/json', contentEncoding: 'utf-8', headers, deliveryMode: 2, priority: 5,
    correlationId: 'corr-1', replyTo: 'reply-q', expiration: '60000', messageId: 'msg-1',
    timestamp: 1700000000, type: 'kind', appId: 'warren-compat',
  };
  const big = Buffer.alloc(256 * 1024);
  for (let i = 0; i < big.length; i++) big[i] = i % 256; // spans several body frames

  ch.sendToQueue(QUEUE, Buffer.from('{"n": 1}'), props);
  ch.sendToQueue(QUEUE, Buffer.alloc(0));
  ch.sendToQueue(QUEUE, big);

  let m = await ch.get(QUEUE, { noAck: true });
  eq(m.content.toString(), '{"n": 1}', 'first body');
  eq(m.fields.messageCount, 2, 'get-ok messageCount after first get');
  eq([m.fields.exchange, m.fields.routingKey, m.fields.redelivered], ['', QUEUE, false],
    'get-ok [exchange, routingKey, redelivered]');
  for (const [k, v] of Object.entries(props)) {
    if (k !== 'headers') eq(m.properties[k], v, `property ${k}`);
  }
  eq(m.properties.headers, headers, 'headers table');

  m = await ch.get(QUEUE, { noAck: true });
  eq([m.content.length, m.fields.messageCount], [0, 1], '[empty body length, messageCount]');

  m = await ch.get(QUEUE, { noAck: false });
  eq(m.content.length, big.length, 'large body length');
  eq(m.content.equals(big), true, 'large body content');
  eq(m.fields.messageCount, 0, 'messageCount after the last get');
  ch.ack(m);

  eq(await ch.get(QUEUE, { noAck: true }), false, 'get after draining the queue');
  eq((await ch.deleteQueue(QUEUE)).messageCount, 0, 'messages left at delete');
  await conn.close();
});
