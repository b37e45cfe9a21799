// Bytes of Redis memory per queued BullMQ job (default job options, payload {n: i}), to set
// beside bench.scale's figure for workhorse: cd bench/bytes && npm install && node bullmq_bytes.js
// Uses Redis database 9 of 127.0.0.1:6379 and empties it.
const { Queue } = require('bullmq');
const IORedis = require('ioredis');
const N = parseInt(process.argv[2] || '200000');
(async () => {
  const conn = { host: '127.0.0.1', port: 6379, db: 9 };
  const r = new IORedis(conn);
  await r.flushdb();
  const used = async () => parseInt((await r.info('memory')).match(/used_memory:(\d+)/)[1]);
  const q = new Queue('bench', { connection: conn });
  await q.waitUntilReady();
  await q.add('warm', { n: -1 });
  const before = await used();
  const t0 = Date.now();
  for (let i = 0; i < N; i += 1000) {
    const jobs = [];
    for (let j = i; j < Math.min(N, i + 1000); j++) jobs.push({ name: 'noop', data: { n: j } });
    await q.addBulk(jobs);
  }
  const after = await used();
  console.log(JSON.stringify({ bullmq: require('bullmq/package.json').version, jobs: N,
    bytes_per_job: (after - before) / N, fill_s: (Date.now() - t0) / 1000,
    keys: await r.dbsize() }));
  await r.flushdb(); await q.close(); await r.quit();
})();
