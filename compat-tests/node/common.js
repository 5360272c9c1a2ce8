'use strict';
// Shared helpers for the amqplib compatibility programs.
//
// Every program in this folder is standalone (`node name.js`): it connects to
// the broker named by AMQP_URL, asserts precise behaviour and exits 0 on
// success, 1 on an assertion/protocol failure and 2 on timeout.  On failure
// the last line printed starts with "FAIL:" so run.sh can show a reason.

const amqp = require('amqplib');
const crypto = require('node:crypto');
const path = require('node:path');
const util = require('node:util');

const AMQP_URL = process.env.AMQP_URL || 'amqp://guest:guest@127.0.0.1:5672/%2F';
const DEFAULT_TIMEOUT_MS = 1000 * Number(process.env.COMPAT_TEST_TIMEOUT || 20);

// Per-run suffix so reruns (or leftovers of a crashed run) never collide.
const RUN_ID = `${process.pid}.${crypto.randomBytes(3).toString('hex')}`;

class CheckFailed extends Error {}

// Names handed out by unique(): deleted best-effort if a program fails, so
// that failed runs do not pile up durable queues on the broker under test.
const NAMES = [];

function unique(prefix) {
  const name = `warren-compat.${prefix}.${RUN_ID}`;
  NAMES.push(name);
  return name;
}

async function cleanupAfterFailure() {
  let conn;
  try {
    conn = await connect();
  } catch (e) {
    return;
  }
  for (const name of NAMES) {
    for (const op of ['deleteQueue', 'deleteExchange']) {
      try {
        const ch = await openChannel(conn);
        await ch[op](name);
        await ch.close();
      } catch (e) { /* best effort, e.g. 404 from an older broker */ }
    }
  }
  await conn.close().catch(() => {});
}

const show = (v) => util.inspect(v, { breakLength: Infinity, depth: 6 });

function check(cond, message) {
  if (!cond) throw new CheckFailed(message);
}

// Deep, strict equality; Buffers compare by content.
function eq(actual, expected, what) {
  if (!util.isDeepStrictEqual(actual, expected)) {
    throw new CheckFailed(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Poll cond() (which may be async) until truthy; with what=null just return
// false on timeout so the caller's own, more precise assertions can report.
async function waitUntil(cond, timeoutMs, what) {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) {
      if (what == null) return false;
      throw new CheckFailed(`timed out after ${timeoutMs}ms waiting for ${what}`);
    }
    await sleep(20);
  }
  return true;
}

async function connect() {
  const conn = await amqp.connect(AMQP_URL, { timeout: 5000 });
  // Connection-level errors also reject whatever is pending; keep Node from
  // treating the 'error' event as an uncaught exception.
  conn.errors = [];
  conn.on('error', (e) => conn.errors.push(e));
  return conn;
}

// A channel that records broker-initiated closes instead of crashing: an
// EventEmitter 'error' without listener would throw.  ch.closed resolves on
// close; ch.errors[i].code is the channel.close reply-code.
async function openChannel(conn, { confirm = false } = {}) {
  const ch = confirm ? await conn.createConfirmChannel() : await conn.createChannel();
  ch.errors = [];
  ch.on('error', (e) => ch.errors.push(e));
  ch.closed = new Promise((resolve) => ch.once('close', resolve));
  return ch;
}

// Run op(ch) on a fresh channel; the broker must close that channel with
// `code`.  Only the numeric reply code is asserted: the reply text is free
// form (RabbitMQ says e.g. "NOT_FOUND - no queue 'x' in vhost '/'").
async function expectChannelClose(conn, op, code, what) {
  const ch = await openChannel(conn);
  let rejected = null;
  try {
    await op(ch);
  } catch (e) {
    rejected = e;
  }
  const closed = await Promise.race([ch.closed.then(() => true), sleep(3000).then(() => false)]);
  check(closed, `${what}: expected channel.close ${code}, channel still open` +
    (rejected ? ` (operation failed: ${rejected.message})` : ''));
  check(ch.errors.length > 0, `${what}: channel closed without an error`);
  eq(ch.errors[0].code, code, `${what}: channel.close reply-code (${ch.errors[0].message})`);
  if (rejected && rejected.code !== undefined) {
    eq(rejected.code, code, `${what}: reply-code seen by the failed operation`);
  }
  return ch.errors[0];
}

// Consume from a queue and record deliveries (amqplib message objects).
class Collector {
  constructor(ch, queue, { noAck = true } = {}) {
    this.ch = ch;
    this.queue = queue;
    this.noAck = noAck;
    this.msgs = [];
    this.cancelledByServer = false;
  }

  async start() {
    const ok = await this.ch.consume(this.queue, (msg) => {
      if (msg === null) this.cancelledByServer = true;
      else this.msgs.push(msg);
    }, { noAck: this.noAck });
    this.tag = ok.consumerTag;
    return this;
  }

  // Wait until n deliveries arrived, then a quiet period so that an extra,
  // unexpected delivery is noticed too.
  async waitFor(n, { timeoutMs = 5000, quietMs = 400 } = {}) {
    const ok = await waitUntil(() => this.msgs.length >= n, timeoutMs, null);
    check(ok, `queue ${this.queue}: expected ${n} deliveries, got ${this.msgs.length} ` +
      `after ${timeoutMs}ms: ${show(this.bodies())}`);
    await sleep(quietMs);
    return this.msgs;
  }

  bodies() {
    return this.msgs.map((m) => m.content.toString());
  }

  cancel() {
    return this.ch.cancel(this.tag);
  }
}

async function collect(ch, queue, opts) {
  return new Collector(ch, queue, opts).start();
}

// Run main() under a hard timeout and turn the outcome into an exit code.
function run(main, timeoutMs = DEFAULT_TIMEOUT_MS) {
  const name = path.basename(process.argv[1]);
  let failed = false;
  setTimeout(() => {
    if (failed) process.exit(1); // failure already reported; cleanup hung
    console.error(`FAIL: ${name}: timed out after ${timeoutMs / 1000}s`);
    process.exit(2);
  }, timeoutMs);
  main().then(() => {
    console.log(`OK ${name}`);
    // Exit explicitly: a forgotten open connection must not hang the run.
    process.exit(0);
  }, async (err) => {
    failed = true;
    if (!(err instanceof CheckFailed)) console.error(err);
    const msg = err instanceof CheckFailed ? err.message : `unexpected ${err.name}: ${err.message}`;
    console.error(`FAIL: ${msg.replace(/\s*\n\s*/g, ' ')}`);
    await cleanupAfterFailure();
    process.exit(1);
  });
}

module.exports = {
  AMQP_URL, CheckFailed, Collector, check, collect, connect, eq, expectChannelClose,
  openChannel, run, show, sleep, unique, waitUntil,
};
