// BullMQ peer for `python -m bench`: `node bullmq_peer.js worker|produce`.
// REDIS_URL: the queue's Redis; BENCH_COUNTER_URL: where workers count jobs done (hash
// bench:done, one field per process, written every 50 ms); BENCH_BACKLOG: most jobs waiting.
// bullmq is resolved through NODE_PATH (the benchmark installs it into a scratch folder).
'use strict';
const { Queue, Worker } = require('bullmq');
const IORedis = require('ioredis');

const CONCURRENCY = 50;
const role = process.argv[2];
const connection = new IORedis(process.env.REDIS_URL, { maxRetriesPerRequest: null });
const counter = new IORedis(process.env.BENCH_COUNTER_URL);

async function done() {
  const values = await counter.hvals('bench:done');
  return values.reduce((sum, v) => sum + Number(v), 0);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function produce() {
  const backlog = Number(process.env.BENCH_BACKLOG || 2000);
  const queue = new Queue('bench', { connection });
  let sent = 0;
  for (;;) {
    if (sent - (await done()) >= backlog) {
      await sleep(10);
      continue;
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, () => queue.add('noop', {})));
    sent += CONCURRENCY;
  }
}

function work() {
  let count = 0;
  const worker = new Worker('bench', async () => { count += 1; },
    { connection, concurrency: CONCURRENCY });
  worker.on('error', (err) => console.error(err));
  setInterval(() => counter.hset('bench:done', `node-${process.pid}`, count), 50);
}

if (role === 'produce') {
  produce().catch((err) => { console.error(err); process.exit(1); });
} else {
  work();
}
