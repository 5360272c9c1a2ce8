'use strict';
// Tutorial 5, "Topics": a topic exchange with `*` and `#` patterns.
// Queues are bound with patterns; a table of routing keys says which queues
// each message must reach.  Covers `*` = exactly one word, `#` = zero or more
// words (zero words at the end, in the middle, at the start, and the empty
// key), two matching bindings on one queue (delivered once), and keys that
// match nothing.

const { collect, connect, eq, run, sleep, unique, waitUntil } = require('./common');

const EXCHANGE = unique('topic_logs');

const PATTERNS = {
  Q1: ['*.orange.*'],
  Q2: ['*.*.rabbit', 'lazy.#'],
  Q3: ['#'],
  Q4: ['kern.*'],
  Q5: ['*.critical'],
  Q6: ['a.#.b'],
  Q7: ['#.end'],
};

// routing key -> queues it must reach; Q3 ('#') is added to every row below.
const TABLE = [
  ['quick.orange.rabbit', ['Q1', 'Q2']],
  ['lazy.orange.elephant', ['Q1', 'Q2']],
  ['quick.orange.fox', ['Q1']],
  ['lazy.brown.fox', ['Q2']],
  ['lazy.pink.rabbit', ['Q2']], // matches both Q2 patterns, delivered once
  ['quick.brown.fox', []],
  ['orange', []],
  ['quick.orange.male.rabbit', []],
  ['lazy.orange.male.rabbit', ['Q2']],
  ['lazy', ['Q2']], // 'lazy.#': '#' matching zero words
  ['kern.critical', ['Q4', 'Q5']],
  ['kern', []], // '*' needs exactly one word
  ['kern.disk.critical', []],
  ['a.b', ['Q6']], // '#' matching zero words in the middle
  ['a.x.b', ['Q6']],
  ['a.x.y.b', ['Q6']],
  ['a.x.y', []],
  ['end', ['Q7']], // '#.end': '#' matching zero words at the start
  ['the.very.end', ['Q7']],
  ['', []], // empty key: only '#' matches
].map(([key, queues]) => [key, [...queues, 'Q3']]);

run(async () => {
  const conn = await connect();
  const ch = await conn.createChannel();
  await ch.assertExchange(EXCHANGE, 'topic', { durable: false });

  const cols = {};
  for (const [role, patterns] of Object.entries(PATTERNS)) {
    const { queue } = await ch.assertQueue('', { exclusive: true });
    for (const p of patterns) await ch.bindQueue(queue, EXCHANGE, p);
    cols[role] = await collect(ch, queue);
  }

  for (const [key] of TABLE) ch.publish(EXCHANGE, key, Buffer.from(`msg<${key}>`));

  const total = TABLE.reduce((n, [, qs]) => n + qs.length, 0);
  await waitUntil(() => Object.values(cols).reduce((n, c) => n + c.msgs.length, 0) >= total, 5000, null);
  await sleep(500); // catch stray extra deliveries too

  for (const [role, patterns] of Object.entries(PATTERNS)) {
    const expected = TABLE.filter(([, qs]) => qs.includes(role)).map(([k]) => `msg<${k}>`);
    eq(cols[role].bodies(), expected, `${role} bound to ${patterns}`);
  }

  await ch.deleteExchange(EXCHANGE);
  await conn.close();
});
