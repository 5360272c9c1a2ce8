'use strict';
// Tutorial 6, "RPC": request/reply over a queue.
// A server (own connection) consumes a named RPC queue with prefetch 1 and
// manual acks, and answers fib(n) to the request's replyTo queue, copying its
// correlationId.  The client declares an exclusive server-named callback
// queue, fires several requests at once with distinct correlation ids and
// matches replies by id.  A reply with an unknown correlation id (planted by
// the test) must be ignored, as the tutorial's client does.

const crypto = require('node:crypto');
const { connect, eq, run, unique, waitUntil } = require('./common');

const RPC_QUEUE = unique('rpc_queue');

function fib(n) {
  let [a, b] = [0, 1];
  for (let i = 0; i < n; i++) [a, b] = [b, a + b];
  return a;
}

async function startServer() {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(RPC_QUEUE, { durable: false });
  await ch.prefetch(1);
  await ch.consume(RPC_QUEUE, (msg) => {
    const n = parseInt(msg.content.toString(), 10);
    ch.sendToQueue(msg.properties.replyTo, Buffer.from(String(fib(n))),
      { correlationId: msg.properties.correlationId });
    ch.ack(msg);
  });
  return conn;
}

run(async () => {
  const server = await startServer();

  const conn = await connect();
  const ch = await conn.createChannel();
  const { queue: callbackQueue } = await ch.assertQueue('', { exclusive: true });

  const pending = new Map(); // correlationId -> n
  const replies = new Map(); // correlationId -> body
  const stray = [];
  const duplicates = [];
  await ch.consume(callbackQueue, (msg) => {
    const id = msg.properties.correlationId;
    // Only record here: an exception thrown inside amqplib's callback would
    // be reported as a channel error, not as a clear test failure.
    if (pending.has(id) && replies.has(id)) {
      duplicates.push(id);
    } else if (pending.has(id)) {
      replies.set(id, msg.content.toString());
    } else {
      stray.push([id, msg.content.toString()]);
    }
  }, { noAck: true });

  ch.sendToQueue(callbackQueue, Buffer.from('-1'), { correlationId: 'not-a-request' });

  const numbers = [0, 1, 2, 10, 20, 30, 7];
  for (const n of numbers) {
    const id = crypto.randomUUID();
    pending.set(id, n);
    ch.sendToQueue(RPC_QUEUE, Buffer.from(String(n)), { correlationId: id, replyTo: callbackQueue });
  }

  await waitUntil(() => replies.size === numbers.length && stray.length === 1, 8000,
    `${numbers.length} RPC replies`);
  for (const [id, n] of pending) eq(replies.get(id), String(fib(n)), `fib(${n}) reply`);
  eq(stray, [['not-a-request', '-1']], 'replies with unknown correlation ids');
  eq(duplicates, [], 'correlation ids answered twice');
  eq(fib(30), 832040, 'local fib sanity');

  await server.close();
  await ch.deleteQueue(RPC_QUEUE);
  await conn.close();
});
