'use strict';
// Tutorial 1, "Hello World": one producer, one consumer, one named queue.
// The sender publishes "Hello World!" through the default exchange; a
// receiver on its own connection must get exactly that one message.

const { check, collect, connect, eq, run, unique } = require('./common');

const QUEUE = unique('hello');

run(async () => {
  const receiverConn = await connect();
  const rch = await receiverConn.createChannel();
  await rch.assertQueue(QUEUE, { durable: false });
  const received = await collect(rch, QUEUE, { noAck: true });

  const senderConn = await connect();
  const sch = await senderConn.createChannel();
  const ok = await sch.assertQueue(QUEUE, { durable: false });
  eq(ok.queue, QUEUE, 'declare-ok queue name');
  eq(ok.consumerCount, 1, 'declare-ok consumer count (receiver is consuming)');
  sch.sendToQueue(QUEUE, Buffer.from('Hello World!'));

  await received.waitFor(1);
  eq(received.bodies(), ['Hello World!'], 'messages received');
  const { fields } = received.msgs[0];
  eq(fields.exchange, '', 'delivered exchange');
  eq(fields.routingKey, QUEUE, 'delivered routing key');
  check(!fields.redelivered, 'first delivery must not be flagged redelivered');

  eq((await sch.deleteQueue(QUEUE)).messageCount, 0, 'messages left in queue at delete');
  await senderConn.close();
  await receiverConn.close();
});
