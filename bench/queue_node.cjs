// Node side of bench/queue.sh, on the npm bullmq pinned in tests/node:
//   node queue_node.cjs fill SOCK QUEUE N          adds N no-op jobs with addBulk
//   node queue_node.cjs work SOCK QUEUE N CONC     runs a Worker until N jobs completed
//   node queue_node.cjs add SOCK QUEUE N           N Queue.add calls, one at a time
// work and add print {"seconds": ...}: from the first job's start to the last completion, or
// the whole add loop.
const path = require('node:path');
const src = process.env.FLOWD_SRC || path.join(__dirname, '..');
const { Queue, Worker } = require(path.join(src, 'tests/node/node_modules/bullmq'));

const [cmd, sock, name, nStr, concStr] = process.argv.slice(2);
const n = Number(nStr);
const connection = { path: sock, maxRetriesPerRequest: null };

async function main() {
  if (cmd === 'fill') {
    const q = new Queue(name, { connection });
    for (let i = 0; i < n; i += 5000) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 5000); j++) batch.push({ name: 'noop', data: {} });
      await q.addBulk(batch);
    }
    await q.close();
  } else if (cmd === 'add') {
    const q = new Queue(name, { connection });
    await q.waitUntilReady();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await q.add('noop', {});
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    console.log(JSON.stringify({ seconds: s }));
    await q.close();
  } else if (cmd === 'work') {
    let first = 0n;
    let done = 0;
    let finish;
    const finished = new Promise((r) => { finish = r; });
    const w = new Worker(name, async () => {
      if (!first) first = process.hrtime.bigint();
      return null;
    }, { connection, concurrency: Number(concStr) });
    w.on('completed', () => { if (++done === n) finish(process.hrtime.bigint()); });
    const end = await finished;
    console.log(JSON.stringify({ seconds: Number(end - first) / 1e9 }));
    await w.close();
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
