'use strict';
// Tutorial 2, "Work queues": competing consumers with fair dispatch.
//
// A durable task queue, persistent messages, two workers (own connections)
// with prefetch 1 and manual acks.  Each task "takes" 100 ms per dot.
// Phase 1 (round-robin): six equal tasks are shared 3/3 between the workers.
// Phase 2 (fair dispatch): one long task then four short ones.  With
// prefetch 1 the worker busy with the long task gets nothing else, so the
// other worker does all four short tasks.  (Round-robin without the prefetch
// limit would hand the busy worker two of them.)

const { check, connect, eq, expectChannelClose, run, sleep, unique, waitUntil } = require('./common');

const QUEUE = unique('task_queue');
const MS_PER_DOT = 100;

async function startWorker(name, log, acks) {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertQueue(QUEUE, { durable: true });
  await ch.prefetch(1);
  await ch.consume(QUEUE, (msg) => {
    const task = msg.content.toString();
    log.push({ worker: name, task, persistent: msg.properties.deliveryMode, redelivered: msg.fields.redelivered });
    const dots = task.split('.').length - 1;
    setTimeout(() => { ch.ack(msg); acks.count += 1; }, dots * MS_PER_DOT);
  }, { noAck: false });
  return { conn, ch };
}

const byWorker = (log, name) => log.filter((e) => e.worker === name).map((e) => e.task);

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  eq((await ch.assertQueue(QUEUE, { durable: true })).messageCount, 0, 'fresh task queue message count');
  // Redeclaring with another durability must be refused: 406 PRECONDITION_FAILED.
  await expectChannelClose(conn, (c) => c.assertQueue(QUEUE, { durable: false }), 406,
    'redeclaring the durable queue as non-durable');

  const log = [];
  const acks = { count: 0 };
  const workers = [await startWorker('w1', log, acks), await startWorker('w2', log, acks)];
  await waitUntil(async () => (await ch.checkQueue(QUEUE)).consumerCount === 2, 5000, 'both workers consuming');

  const publish = (tasks) => tasks.forEach((t) => ch.sendToQueue(QUEUE, Buffer.from(t), { persistent: true }));

  // Phase 1: equal tasks are shared evenly.
  const phase1 = [0, 1, 2, 3, 4, 5].map((i) => `task ${i} ..`);
  publish(phase1);
  await waitUntil(() => log.length >= 6, 8000, 'phase 1 tasks to be processed');
  await sleep(300);
  const p1 = log.splice(0);
  eq(p1.map((e) => e.task).sort(), [...phase1].sort(), 'phase 1 tasks processed (each exactly once)');
  eq(byWorker(p1, 'w1').length, 3, `phase 1 tasks handled by w1 ${byWorker(p1, 'w1')}`);
  eq(byWorker(p1, 'w2').length, 3, `phase 1 tasks handled by w2 ${byWorker(p1, 'w2')}`);
  for (const e of p1) {
    eq(e.persistent, 2, `delivery mode of ${e.task}`);
    check(!e.redelivered, `${e.task} flagged redelivered`);
  }
  // Both workers must be idle (all acked) when phase 2 starts.
  await waitUntil(() => acks.count === 6, 3000, 'phase 1 acks');

  // Phase 2: fair dispatch.
  const long = 'long ' + '.'.repeat(15);
  const shorts = [0, 1, 2, 3].map((i) => `short ${i} .`);
  publish([long, ...shorts]);
  await waitUntil(() => log.length >= 5, 8000, 'phase 2 tasks to be processed');
  await sleep(300);
  const busy = log.find((e) => e.task === long).worker;
  const idle = busy === 'w1' ? 'w2' : 'w1';
  eq(byWorker(log, busy), [long], `tasks given to the busy worker ${busy}`);
  eq(byWorker(log, idle), shorts, `tasks given to the idle worker ${idle}`);

  // Wait for the long task's ack before tearing down.
  await waitUntil(() => acks.count === 11, 3000, 'all acks');
  // Close each worker's channel first: amqplib may write connection.close ahead of frames
  // still queued on a channel (the last ack), and the broker would then requeue that message
  // as unacked, exactly as RabbitMQ does. channel.close is queued behind the ack.
  for (const w of workers) {
    await w.ch.close();
    await w.conn.close();
  }
  eq((await ch.deleteQueue(QUEUE)).messageCount, 0, 'messages left at delete');
  await conn.close();
});
