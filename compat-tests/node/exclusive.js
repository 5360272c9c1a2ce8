'use strict';
// Exclusive queues belong to one connection.
// * Another connection gets 405 RESOURCE_LOCKED for declare (exclusive,
//   plain or passive), basic.consume and basic.get on it.
// * The owner can use it from any of its channels.
// * When the owner disconnects the queue is deleted (passive declare: 404).

const { connect, eq, expectChannelClose, run, unique } = require('./common');

const QUEUE = unique('exclusive');

run(async () => {
  const owner = await connect();
  const och = await owner.createChannel();
  eq((await och.assertQueue(QUEUE, { exclusive: true })).queue, QUEUE, 'declare-ok name');
  och.sendToQueue(QUEUE, Buffer.from('mine'));
  const och2 = await owner.createChannel();
  eq((await och2.checkQueue(QUEUE)).messageCount, 1, "passive declare from the owner's second channel");

  const other = await connect();
  await expectChannelClose(other, (c) => c.assertQueue(QUEUE, { exclusive: true }), 405,
    'exclusive declare from another connection');
  await expectChannelClose(other, (c) => c.assertQueue(QUEUE, { exclusive: false }), 405,
    'plain declare from another connection');
  await expectChannelClose(other, (c) => c.checkQueue(QUEUE), 405,
    'passive declare from another connection');
  await expectChannelClose(other, (c) => c.consume(QUEUE, () => {}), 405,
    'basic.consume from another connection');
  await expectChannelClose(other, (c) => c.get(QUEUE), 405,
    'basic.get from another connection');

  const m = await och.get(QUEUE, { noAck: true });
  eq(m && m.content.toString(), 'mine', "owner's message");

  await owner.close();
  await expectChannelClose(other, (c) => c.checkQueue(QUEUE), 404,
    'passive declare after the owner disconnected');
  await other.close();
});
