// flowd's queue against the real npm bullmq (BULLMQ_PKG: current 6.x or last 5.x), both
// directions, one test per acceptance point of the queue. Run by meson as queue-bullmq6 and
// queue-bullmq5; every test has its own queue on one private redis-server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  bullmq, BULLMQ_VERSION, Redis, OurWorker, ourWorker, ourAdd, flowdQueue, invocations,
  qname, sleep, waitFor, within, schedulingLag, spawnGuarded,
} from './lib.mjs';

const { Queue, QueueEvents, Worker } = bullmq;
let redis;
const closers = [];
const track = (x) => { closers.push(x); return x; };

before(async () => {
  console.log(`# bullmq ${BULLMQ_VERSION}`);
  redis = new Redis();
  await redis.start();
});

after(async () => {
  for (const c of closers.reverse()) {
    try { await (c.stop ? c.stop('SIGKILL') : c.close()); } catch { /* already gone */ }
  }
  await redis.stop();
});

function mkQueue(name) { return track(new Queue(name, { connection: redis.connection() })); }
async function mkEvents(name) {
  const ev = track(new QueueEvents(name, { connection: redis.connection() }));
  await ev.waitUntilReady();
  return ev;
}
function nodeWorker(name, fn, opts = {}) {
  return track(new Worker(name, fn, { connection: redis.connection(), ...opts }));
}
function nodeCounts(q) { return q.getJobCounts(); }
// The counts Node reports must equal `flowd queue stats --json` for every state Node names.
async function assertSameCounts(q, name, label) {
  const node = await nodeCounts(q);
  const ours = flowdQueue(redis, name, ['stats']);
  for (const [state, n] of Object.entries(node)) {
    assert.equal(ours[state], n, `${label}: ${state} node=${n} flowd=${ours[state]}`);
  }
  return node;
}
// Collects the event stream of one job through QueueEvents.
function collect(ev, names) {
  const seen = [];
  for (const n of names) ev.on(n, (args) => seen.push({ event: n, ...args }));
  return seen;
}

test('1. Node Queue.add -> our worker -> QueueEvents completed with our returnvalue', async () => {
  const name = qname('a1');
  const q = mkQueue(name);
  const ev = await mkEvents(name);
  const w = track(await ourWorker(redis, name, ['--concurrency', '2']));
  const done = new Promise((resolve) => ev.on('completed', resolve));
  const before = Date.now();
  const job = await q.add('EXECUTE_FLOW', { return: { ok: true, n: 42 } });
  const completed = await done;
  assert.equal(completed.jobId, job.id);
  assert.deepEqual(completed.returnvalue, { ok: true, n: 42 });
  const got = await q.getJob(job.id);
  assert.equal(got.attemptsMade, 1);
  assert.ok(got.processedOn >= before && got.processedOn <= Date.now());
  assert.ok(got.finishedOn >= got.processedOn);
  assert.deepEqual(got.returnvalue, { ok: true, n: 42 });
  assert.equal(await got.getState(), 'completed');
  await w.stop();
});

test('2. our add -> Node Worker; counts agree with flowd queue stats at every stage', async () => {
  const name = qname('a2');
  const q = mkQueue(name);
  await assertSameCounts(q, name, 'empty');
  const ids = ourAdd(redis, name, 'EXECUTE_FLOW', { v: 1 }, null, 3);
  ourAdd(redis, name, 'EXECUTE_FLOW', { v: 2 }, { delay: 60000 });
  ourAdd(redis, name, 'EXECUTE_FLOW', { v: 3 }, { priority: 5 });
  let c = await assertSameCounts(q, name, 'after add');
  assert.equal(c.waiting, 3);
  assert.equal(c.delayed, 1);
  assert.equal(c.prioritized, 1);
  let release;
  const gate = new Promise((r) => { release = r; });
  const w = nodeWorker(name, async (job) => {
    if (job.data.v === 3) throw new Error('no good');
    if (job.id === ids[0]) await gate;
    return { seen: job.data.v };
  }, { concurrency: 1 });
  await waitFor('node worker to take the first job', async () =>
    (await nodeCounts(q)).active === 1);
  c = await assertSameCounts(q, name, 'while active');
  release();
  await waitFor('node worker to finish', async () => {
    const n = await nodeCounts(q);
    return n.completed === 3 && n.failed === 1;
  });
  await w.close();
  await assertSameCounts(q, name, 'after processing');
  const completed = flowdQueue(redis, name, ['ls', 'completed']);
  assert.equal(completed.length, 3);
  for (const j of completed) {
    const node = await q.getJob(j.id);
    assert.deepEqual(j.returnvalue, node.returnvalue);
    assert.equal(j.attemptsMade, node.attemptsMade);
    assert.equal(j.finishedOn, node.finishedOn);
    assert.equal(j.processedOn, node.processedOn);
  }
  const failed = flowdQueue(redis, name, ['ls', 'failed']);
  assert.equal(failed.length, 1);
  assert.equal(failed[0].failedReason, 'no good');
});

test('3. ordering: delayed jobs on time, priorities beat plain jobs, lifo', async () => {
  const name = qname('a3');
  const q = mkQueue(name);
  const inv = join(redis.dir, `${name}.inv`);
  // priority and lifo before any worker runs
  await q.add('p', { o: 'p3' }, { priority: 3, jobId: 'p3' });
  await q.add('p', { o: 'p1' }, { priority: 1, jobId: 'p1' });
  ourAdd(redis, name, 'p', {}, { priority: 2, jobId: 'p2' });
  await q.add('plain', {}, { jobId: 'w1' });
  ourAdd(redis, name, 'plain', {}, { jobId: 'w2' });
  ourAdd(redis, name, 'lifo', {}, { jobId: 'l1', lifo: true });
  await q.add('lifo', {}, { jobId: 'l2', lifo: true });
  const w = track(await ourWorker(redis, name, ['--concurrency', '1', '--invocations', inv]));
  await waitFor('7 jobs', async () => (await invocations(inv)).length === 7);
  assert.deepEqual((await invocations(inv)).map((i) => i.id),
    ['l2', 'l1', 'w1', 'w2', 'p1', 'p2', 'p3']);

  // delayed: one from Node, one from us, both run within 100 ms of their due time. A loaded
  // machine delays every process's wake-ups; the window grows by the delay this process's own
  // timers see meanwhile, so that it stays 100 ms on a quiet machine and never flakes on a
  // busy one. A worker that missed the due time and woke on its drain delay would be seconds
  // late either way.
  const ev = await mkEvents(name);
  const done = new Map();
  ev.on('completed', ({ jobId }) => done.set(jobId, Date.now()));
  await q.add('d', {}, { delay: 1200, jobId: 'dn' });
  ourAdd(redis, name, 'd', {}, { delay: 700, jobId: 'dc' });
  const lag = schedulingLag(); // from here: the add above blocks this process by design
  await waitFor('delayed jobs', () => done.size === 2, 15000, 5);
  const slack = lag.stop();
  const ran = {};
  const due = {};
  for (const id of ['dn', 'dc']) {
    const j = await q.getJob(id);
    due[id] = j.timestamp + j.opts.delay;
    ran[id] = j.processedOn;
    assert.ok(j.processedOn >= due[id], `${id} ran early by ${due[id] - j.processedOn} ms`);
    assert.ok(j.processedOn - due[id] <= 100 + slack,
      `${id} ran ${j.processedOn - due[id]} ms late (timers here ran up to ${slack} ms late)`);
  }
  // in the order they came due (usually dc first; the add of dc may come late on a busy machine)
  const [first, second] = due.dc <= due.dn ? ['dc', 'dn'] : ['dn', 'dc'];
  assert.ok(ran[first] <= ran[second], `${first} due first but ran after ${second}`);
  await w.stop();
});

// The events one job produces, in order, as a listener sees them.
async function failThreeTimes(name, startWorker) {
  const q = mkQueue(name);
  const ev = await mkEvents(name);
  const seen = collect(ev, ['delayed', 'failed', 'retries-exhausted', 'completed']);
  const stop = await startWorker(name);
  const job = await q.add('x', { fail: 'always' },
    { attempts: 3, backoff: { type: 'exponential', delay: 100 } });
  await waitFor('retries-exhausted', () =>
    seen.some((e) => e.event === 'retries-exhausted' && e.jobId === job.id));
  await sleep(150);
  await stop();
  const mine = seen.filter((e) => e.jobId === job.id);
  return { events: mine.map((e) => e.event), seen: mine, job: await q.getJob(job.id) };
}

test('4. attempts=3 exponential: two delayed, one failed, one retries-exhausted, as Node', async () => {
  const ours = await failThreeTimes(qname('a4c'), async (name) => {
    const w = track(await ourWorker(redis, name, ['--concurrency', '2']));
    return () => w.stop();
  });
  const node = await failThreeTimes(qname('a4n'), async (name) => {
    const w = nodeWorker(name, async (job) => { throw new Error(job.data.fail); });
    await w.waitUntilReady();
    return () => w.close();
  });
  assert.deepEqual(ours.events, ['delayed', 'delayed', 'failed', 'retries-exhausted']);
  assert.deepEqual(ours.events, node.events);
  assert.equal(ours.job.attemptsMade, 3);
  assert.equal(ours.job.attemptsMade, node.job.attemptsMade);
  assert.equal(ours.job.failedReason, 'always');
  assert.equal(await ours.job.getState(), 'failed');
  // backoff: due times 100 ms and 200 ms after the failures
  const delays = ours.seen.filter((e) => e.event === 'delayed').map((e) => Number(e.delay));
  assert.ok(delays[1] - delays[0] >= 200, `exponential backoff: ${delays}`);
  const failed = ours.seen.find((e) => e.event === 'failed');
  assert.equal(failed.failedReason, 'always');
  assert.equal(Number(ours.seen.find((e) => e.event === 'retries-exhausted').attemptsMade), 3);
});

const SHORT = ['--lock-ms', '1000', '--stalled-ms', '500'];

test('5a. our worker SIGKILLed mid-job: a Node worker, or a second flowd worker, takes over', async () => {
  for (const successor of ['node', 'flowd']) {
    const name = qname(`a5a-${successor}`);
    const q = mkQueue(name);
    const ev = await mkEvents(name);
    const first = track(await ourWorker(redis, name, SHORT));
    const job = await q.add('x', { sleep: 30000, return: 'first' });
    await waitFor('our worker to take the job', async () => (await q.getJob(job.id)).processedOn);
    await first.stop('SIGKILL');
    // Nobody may run the job before its lock expires, so the data the successor sees can be
    // changed now, before the successor starts: after, it could already have taken the job.
    const c = redis.client();
    await c.hset(`bull:${name}:${job.id}`, 'data', '{"return":"second"}');
    const lockGone = Date.now() + Math.max(await c.pttl(`bull:${name}:${job.id}:lock`), 0);
    const completed = new Promise((r) => ev.on('completed', r));
    const lag = schedulingLag();
    if (successor === 'node') {
      await nodeWorker(name, async () => 'second',
        { lockDuration: 1000, stalledInterval: 500, maxStalledCount: 2 }).waitUntilReady();
    } else {
      track(await ourWorker(redis, name, [...SHORT, '--max-stalled', '2']));
    }
    const ready = Date.now();
    const done = await within('the successor to complete the job', completed, 30000);
    const slack = lag.stop();
    assert.equal(done.jobId, job.id);
    assert.equal(done.returnvalue, 'second');
    const j = await q.getJob(job.id);
    assert.equal(j.stalledCounter, 1);
    // Taken over by the stalled check, within about two of its 500 ms intervals of the lock's
    // expiry (or of the successor's start, if later), not by the successor's 5 s drain delay.
    const from = Math.max(lockGone, ready);
    assert.ok(j.processedOn - from < 2500 + slack,
      `taken over ${j.processedOn - from} ms after the lock expired (timers ${slack} ms late)`);
  }
});

test('5b. past maxStalledCount the job fails with "job stalled more than allowable limit"', async () => {
  const name = qname('a5b');
  const q = mkQueue(name);
  const first = track(await ourWorker(redis, name, SHORT));
  const job = await q.add('x', { sleep: 30000 });
  await waitFor('our worker to take the job', async () => (await q.getJob(job.id)).processedOn);
  await first.stop('SIGKILL');
  const second = track(await ourWorker(redis, name, [...SHORT, '--max-stalled', '0']));
  await waitFor('the job to fail', async () => (await q.getJob(job.id)).finishedOn, 20000);
  const j = await q.getJob(job.id);
  assert.equal(await j.getState(), 'failed');
  assert.equal(j.failedReason, 'job stalled more than allowable limit');
  assert.equal(j.attemptsStarted, 2);
  const st = await second.stop();
  assert.equal(st.failed, 1);
});

test('5c. a Node worker killed mid-job is recovered by ours', async () => {
  const name = qname('a5c');
  const q = mkQueue(name);
  const ev = await mkEvents(name);
  const script = `
    const { Worker } = require(${JSON.stringify(process.env.BULLMQ_PKG || 'bullmq')});
    const w = new Worker(${JSON.stringify(name)}, async () => { console.log('started');
      await new Promise(() => {}); }, { connection: { path: ${JSON.stringify(redis.sock)} },
      lockDuration: 1000, stalledInterval: 500 });`;
  const child = spawnGuarded(process.execPath, ['-e', script], { cwd: process.cwd(),
    stdio: ['ignore', 'pipe', 'inherit'] });
  // killed by after() too if this test fails: a live child would keep the run from ending
  track({ stop() { if (child.exitCode === null && !child.signalCode) child.kill('SIGKILL'); } });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const job = await q.add('x', { return: 'recovered' });
  // a start-up deadline: loading bullmq in a fresh node takes seconds on a busy machine
  await waitFor('the node worker to start the job', () => {
    if (child.exitCode !== null) throw new Error(`node worker exited (${child.exitCode})`);
    return out.includes('started');
  }, 60000);
  child.kill('SIGKILL');
  const completed = new Promise((r) => ev.on('completed', r));
  const w = track(await ourWorker(redis, name, SHORT));
  const c = await within('our worker to recover the job', completed, 30000);
  assert.equal(c.jobId, job.id);
  assert.equal(c.returnvalue, 'recovered');
  assert.equal((await q.getJob(job.id)).stalledCounter, 1);
  await w.stop();
});

// Runs five jobs with one retention option through a worker; returns the ids left completed.
async function retained(name, opt, startWorker, wait = 0) {
  const q = mkQueue(name);
  const stop = await startWorker(name);
  for (let i = 1; i <= 5; i++) {
    await q.add('x', {}, { jobId: `j${i}`, removeOnComplete: opt });
    await waitFor('job done', async () => {
      const c = await q.getJobCounts('completed', 'waiting', 'active');
      return c.waiting + c.active === 0;
    });
    if (i === 4) await sleep(wait);
  }
  await stop();
  const ids = (await q.getCompleted()).map((j) => j.id).sort();
  const existing = [];
  for (let i = 1; i <= 5; i++) if (await q.getJob(`j${i}`)) existing.push(`j${i}`);
  return { ids, existing };
}

test('6. retention: removeOnComplete true, N and {age} leave what Node leaves', async () => {
  const ourStart = async (name) => {
    const w = track(await ourWorker(redis, name, []));
    return () => w.stop();
  };
  const nodeStart = async (name) => {
    const w = nodeWorker(name, async () => 'x');
    await w.waitUntilReady();
    return () => w.close();
  };
  for (const [opt, wait] of [[true, 0], [2, 0], [{ age: 1 }, 1100], [{ age: 1, count: 3 }, 1100]]) {
    const ours = await retained(qname('a6c'), opt, ourStart, wait);
    const node = await retained(qname('a6n'), opt, nodeStart, wait);
    assert.deepEqual(ours, node, `removeOnComplete ${JSON.stringify(opt)}`);
  }
});

test('7. pause from Node stops our worker fetching; resume restarts it', async () => {
  const name = qname('a7');
  const q = mkQueue(name);
  const inv = join(redis.dir, `${name}.inv`);
  const w = track(await ourWorker(redis, name, ['--concurrency', '3', '--invocations', inv]));
  await q.add('x', {});
  await waitFor('first job', async () => (await invocations(inv)).length === 1);
  await q.pause();
  for (let i = 0; i < 5; i++) await q.add('x', {});
  ourAdd(redis, name, 'x', {}, null, 2);
  await sleep(700);
  assert.equal((await invocations(inv)).length, 1, 'our worker fetched from a paused queue');
  const c = await assertSameCounts(q, name, 'paused');
  assert.equal((c.waiting || 0) + (c.paused || 0), 7);
  assert.equal(flowdQueue(redis, name, ['stats']).waiting + flowdQueue(redis, name, ['stats']).paused, 7);
  await q.resume();
  await waitFor('jobs after resume', async () => (await invocations(inv)).length === 8);
  await assertSameCounts(q, name, 'resumed');
  // and the other way: pause from flowd stops a Node worker
  flowdQueue(redis, name, ['pause']);
  assert.equal(await q.isPaused(), true);
  flowdQueue(redis, name, ['resume']);
  assert.equal(await q.isPaused(), false);
  await w.stop();
});

test('8. redis-server restarted in the middle of 5,000 jobs: each completes exactly once', async () => {
  const r2 = new Redis({ aof: true });
  await r2.start();
  try {
    const name = qname('a8');
    const inv = join(r2.dir, 'inv');
    ourAdd(r2, name, 'x', {}, null, 1); // warm the scripts
    const q = new Queue(name, { connection: r2.connection() });
    const ids = [];
    const batch = [];
    for (let i = 0; i < 5000; i++) batch.push({ name: 'x', data: { sleep: 1 }, opts: { jobId: `r${i}` } });
    for (let i = 0; i < batch.length; i += 1000) await q.addBulk(batch.slice(i, i + 1000));
    await q.close();
    for (const b of batch) ids.push(b.opts.jobId);
    // The lock (BullMQ's 30 s, renewed every 15 s) outlives the outage, so no job may run twice:
    // a second run would be a lost outcome or a lost fetch, never a lock that expired while
    // Redis was away. The stalled check runs often, so that a job left behind would show.
    const w = new OurWorker(r2, name, ['--concurrency', '5', '--lock-ms', '30000',
      '--stalled-ms', '1000', '--invocations', inv]);
    await w.ready();
    await waitFor('1,000 jobs', async () => (await invocations(inv)).length >= 1000, 60000);
    const killed = Date.now();
    await r2.kill('SIGKILL');
    await sleep(300);
    await r2.start();
    const outage = Date.now() - killed;
    assert.ok(outage < 15000, `redis-server took ${outage} ms to come back: longer than the ` +
      'lock is sure to last, and a second run would be allowed');
    const c = r2.client();
    await waitFor('5,001 completed', async () =>
      (await c.zcard(`bull:${name}:completed`)) === 5001, 120000, 100);
    const st = await w.stop();
    const calls = await invocations(inv);
    const per = new Map();
    for (const i of calls) per.set(i.id, (per.get(i.id) || 0) + 1);
    const twice = [...per].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], `jobs processed more than once; worker stderr:\n${w.err}`);
    for (const id of ids) assert.equal(per.get(id), 1, `job ${id} invocations`);
    assert.equal(await c.llen(`bull:${name}:active`), 0);
    assert.equal(await c.llen(`bull:${name}:wait`), 0);
    // Every outcome counted once, those whose reply the restart cut off included (the repeat is
    // recognised, not refused), and no job was left active for the stalled check to requeue
    // (a fetch whose reply was lost hands its job over on the repeat).
    assert.equal(st.completed, 5001, `stats ${JSON.stringify(st)}`);
    assert.equal(st.lost, 0, `stats ${JSON.stringify(st)}`);
    assert.doesNotMatch(w.err, /stalled: moved back/);
    c.disconnect();
  } finally {
    await r2.stop();
  }
});

test('9. bad name or non-JSON data: failed at once with a clear reason; events keep flowing', async () => {
  const name = qname('a9');
  const q = mkQueue(name);
  const ev = await mkEvents(name);
  const failures = new Map();
  ev.on('failed', ({ jobId, failedReason }) => failures.set(jobId, failedReason));
  const completions = [];
  ev.on('completed', ({ jobId, returnvalue }) => completions.push({ jobId, returnvalue }));
  const c = redis.client();
  const bad = await q.add('EXECUTE_FLOW', { ok: 1 }, { delay: 300, attempts: 3 });
  await c.hset(`bull:${name}:${bad.id}`, 'data', '{"runId": "abc", oops');
  const unknown = await q.add('SOMETHING_ELSE', {}, { attempts: 3 });
  const w = track(await ourWorker(redis, name, ['--names', 'EXECUTE_FLOW']));
  await waitFor('two failures', () => failures.size === 2, 15000);
  assert.match(failures.get(bad.id), /^job data is not valid JSON: /);
  assert.equal(failures.get(unknown.id), "unknown job name 'SOMETHING_ELSE'");
  // Node's own getJob cannot parse the bad job's data, so read its hash directly
  for (const id of [bad.id, unknown.id]) {
    const h = await c.hgetall(`bull:${name}:${id}`);
    assert.equal(h.atm, '1', 'a bad job must not be retried');
    assert.notEqual(await c.zscore(`bull:${name}:failed`, id), null);
  }
  const good = await q.add('EXECUTE_FLOW', { return: { fine: true } });
  await waitFor('the good job', () => completions.some((x) => x.jobId === good.id));
  assert.deepEqual(completions.find((x) => x.jobId === good.id).returnvalue, { fine: true });
  c.disconnect();
  await w.stop();
});

test('graceful stop hands unfinished jobs straight back to wait', async () => {
  const name = qname('stop');
  const q = mkQueue(name);
  // The quick job runs until the test creates a file, just after the stop begins, so that it
  // is surely in flight then and ends well inside the 1 s grace; the slow one would need a
  // minute.
  const grace = 1000;
  const flag = join(redis.dir, `${name}.go`);
  const w = track(await ourWorker(redis, name, ['--concurrency', '2', '--grace-ms',
    String(grace), '--lock-ms', '30000']));
  const quick = await q.add('x', { wait_file: flag, return: 'quick' });
  const slow = await q.add('x', { sleep: 60000 });
  await waitFor('both active', async () => (await q.getJobCounts('active')).active === 2);
  const lag = schedulingLag();
  const t0 = Date.now();
  const stopped = w.stop(); // sends SIGTERM now
  writeFileSync(flag, '');
  const st = await stopped;
  const took = Date.now() - t0;
  const slack = lag.stop();
  assert.ok(took < grace + 2000 + slack, `stop took ${took} ms (timers ${slack} ms late)`);
  assert.equal(st.handed_back, 1, `stats ${JSON.stringify(st)}; worker stderr: ${w.err}`);
  assert.equal(await (await q.getJob(quick.id)).getState(), 'completed');
  assert.equal(await (await q.getJob(slow.id)).getState(), 'waiting');
  const counts = await q.getJobCounts('active', 'waiting');
  assert.equal(counts.active, 0);
  assert.equal(counts.waiting, 1);
});

test('lock lost: the processor is told, and its finish is refused', async () => {
  const name = qname('lost');
  const q = mkQueue(name);
  const w = track(await ourWorker(redis, name, ['--lock-ms', '600']));
  const job = await q.add('x', { sleep: 5000, return: 'late' });
  await waitFor('active', async () => (await q.getJobCounts('active')).active === 1);
  const c = redis.client();
  await c.set(`bull:${name}:${job.id}:lock`, 'someone-else');
  await waitFor('the renewal to find the lock taken', () => w.err.includes('lock lost'));
  const st = await w.stop();
  assert.equal(st.lost, 1);
  assert.equal(st.completed, 0);
  assert.equal(await c.get(`bull:${name}:${job.id}:lock`), 'someone-else');
  assert.equal(await (await q.getJob(job.id)).getState(), 'active');
  c.disconnect();
});

test('progress and logs from our processor reach Node', async () => {
  const name = qname('prog');
  const q = mkQueue(name);
  const ev = await mkEvents(name);
  const progress = new Promise((r) => ev.on('progress', r));
  const w = track(await ourWorker(redis, name, []));
  const job = await q.add('x', { progress: { pct: 50 }, log: 'hello from C' }, { keepLogs: 5 });
  const p = await within('the progress event', progress, 15000);
  assert.equal(p.jobId, job.id);
  assert.deepEqual(p.data, { pct: 50 });
  await waitFor('completion', async () => (await q.getJob(job.id)).finishedOn);
  const logs = await q.getJobLogs(job.id);
  assert.deepEqual(logs.logs, ['hello from C']);
  assert.deepEqual((await q.getJob(job.id)).progress, { pct: 50 });
  await w.stop();
});

test('flowd queue retry and clean match Node', async () => {
  const name = qname('admin');
  const q = mkQueue(name);
  const w = track(await ourWorker(redis, name, []));
  for (let i = 0; i < 3; i++) await q.add('x', { fail: 'nope', final: true });
  await q.add('x', {});
  await waitFor('finished', async () => {
    const c = await q.getJobCounts('failed', 'completed');
    return c.failed === 3 && c.completed === 1;
  });
  await w.stop();
  assert.deepEqual(flowdQueue(redis, name, ['retry']), { retried: 3 });
  let c = await assertSameCounts(q, name, 'after retry');
  assert.equal(c.waiting, 3);
  const waiting = await q.getWaiting();
  assert.ok(waiting.every((j) => j.failedReason == null && !j.finishedOn));
  assert.deepEqual(flowdQueue(redis, name, ['clean', 'completed', '--grace', '3600']), { removed: 0 });
  assert.deepEqual(flowdQueue(redis, name, ['clean', 'completed', '--grace', '0']), { removed: 1 });
  c = await assertSameCounts(q, name, 'after clean');
  assert.equal(c.completed, 0);
});
