// Shared helpers of the queue test bed: a private redis-server per test file, our C worker and
// producer (tests/queue/bqtool), `flowd queue`, and the npm bullmq under test (BULLMQ_PKG picks
// "bullmq" for the current 6.x or "bullmq5" for the last 5.x).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';

const require = createRequire(import.meta.url);
export const PKG = process.env.BULLMQ_PKG || 'bullmq';
export const bullmq = require(PKG);
export const IORedis = require('ioredis');
export const BULLMQ_VERSION = require(`${PKG}/package.json`).version;

const BUILD = process.env.FLOWD_BUILD;
if (!BUILD) throw new Error('FLOWD_BUILD is not set (run through meson test)');
export const BQTOOL = join(BUILD, 'tests/queue/bqtool');
export const FLOWD = process.env.FLOWD || join(BUILD, 'flowd');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Servers and workers started here die with this process (PR_SET_PDEATHSIG through setpriv),
// so that a test run killed at its timeout leaves no redis-server or worker behind.
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
export function spawnGuarded(cmd, args, opts) {
  if (!SETPRIV) return spawn(cmd, args, opts);
  return spawn(SETPRIV, ['--pdeathsig', 'KILL', cmd, ...args], opts);
}

// Resolves p, or fails with `what` after timeoutMs: a deadline that names what never came,
// instead of a test that hangs until the runner kills the whole suite.
export async function within(what, p, timeoutMs) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
  });
  try { return await Promise.race([p, deadline]); } finally { clearTimeout(timer); }
}

// How late this process's timers fire while the machine is loaded: a 10 ms interval timer that
// records its worst delay. stop() returns that delay in ms. Tests that check a time window
// widen it by this much, and by no more: on a quiet machine it is a millisecond or two.
export function schedulingLag() {
  let worst = 0;
  let last = performance.now();
  const t = setInterval(() => {
    const now = performance.now();
    worst = Math.max(worst, now - last - 10);
    last = now;
  }, 10);
  return { stop() { clearInterval(t); return Math.ceil(worst); } };
}

export async function waitFor(what, fn, timeoutMs = 10000, stepMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

// A redis-server on a unix socket in its own temp dir. restart() keeps socket and data.
export class Redis {
  constructor({ aof = false } = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'flowd-q-'));
    this.sock = join(this.dir, 'redis.sock');
    this.url = `unix://${this.sock}`;
    this.aof = aof;
  }
  // Resolves once the server answers PING, which a server still loading its data refuses
  // (LOADING). ioredis's own ready check is off: it would wait for loading in steps of up to
  // 10 s, and a restart would look that much longer than it is.
  async start() {
    const args = ['--port', '0', '--unixsocket', this.sock, '--dir', this.dir, '--save', '',
      '--appendonly', this.aof ? 'yes' : 'no', '--appendfsync', 'always', '--loglevel', 'warning'];
    this.proc = spawnGuarded('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor('redis-server', async () => {
      if (this.proc.exitCode !== null) throw new Error(`redis-server exited (${this.proc.exitCode})`);
      if (!existsSync(this.sock)) return false;
      const c = new IORedis({ path: this.sock, lazyConnect: true, maxRetriesPerRequest: 0,
        enableReadyCheck: false, retryStrategy: () => null });
      c.on('error', () => {});
      try { await c.connect(); return (await c.ping()) === 'PONG'; } catch { return false; }
      finally { c.disconnect(); }
    }, 30000);
  }
  async kill(signal = 'SIGKILL') {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode) return;
    const exited = once(this.proc, 'exit');
    this.proc.kill(signal);
    await exited;
  }
  async stop() {
    for (const c of this.clients || []) c.disconnect();
    await this.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }
  connection() { return { path: this.sock, maxRetriesPerRequest: null }; }
  client() {
    const c = new IORedis({ path: this.sock, maxRetriesPerRequest: null });
    (this.clients ||= []).push(c);
    return c;
  }
}

// Our C worker (bqtool work). Resolves ready() once connected; stop() sends SIGTERM and returns
// its closing stats line.
export class OurWorker {
  constructor(redis, queue, args = []) {
    this.out = '';
    this.err = '';
    this.proc = spawnGuarded(BQTOOL, ['work', redis.url, queue, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc.stdout.on('data', (d) => { this.out += d; });
    this.proc.stderr.on('data', (d) => { this.err += d; });
    // 'close', not 'exit': the closing stats line may still be in the pipe at 'exit'
    this.exited = once(this.proc, 'close');
  }
  async ready() {
    // a start-up deadline only: a loaded machine may take seconds to spawn and connect
    await waitFor('our worker to connect', () => {
      if (this.proc.exitCode !== null) throw new Error(`worker exited: ${this.err}`);
      return this.out.includes('ready\n');
    }, 30000);
    return this;
  }
  async stop(signal = 'SIGTERM') {
    if (this.proc.exitCode === null && !this.proc.signalCode) this.proc.kill(signal);
    await this.exited;
    if (signal === 'SIGKILL') return null;
    const lines = this.out.trim().split('\n');
    const last = lines[lines.length - 1];
    if (!last.startsWith('{')) {
      throw new Error(`our worker ended without its stats (exit ${this.proc.exitCode}, ` +
        `signal ${this.proc.signalCode}): ${this.err}`);
    }
    return JSON.parse(last);
  }
}

export async function ourWorker(redis, queue, args) {
  return new OurWorker(redis, queue, args).ready();
}

// bqtool add: returns the ids printed.
export function ourAdd(redis, queue, name, data, opts, count = 1) {
  const args = ['add', redis.url, queue, name, JSON.stringify(data)];
  if (opts) args.push(JSON.stringify(opts));
  args.push('--count', String(count));
  return execFileSync(BQTOOL, args, { encoding: 'utf8' }).trim().split('\n');
}

export function flowdQueue(redis, queue, args) {
  const env = { ...process.env, AP_REDIS_URL: redis.url, AP_QUEUE_NAME: queue,
    AP_CONFIG_PATH: redis.dir };
  return JSON.parse(execFileSync(FLOWD, ['queue', ...args, '--json'], { env, encoding: 'utf8' }));
}

// Reads an invocations file written by bqtool --invocations: [{id, attemptsMade, name}].
export async function invocations(path) {
  const { readFileSync } = await import('node:fs');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
    const [id, attemptsMade, name] = l.split(' ');
    return { id, attemptsMade: Number(attemptsMade), name };
  });
}

let queueSeq = 0;
export const qname = (tag) => `${tag}-${process.pid}-${++queueSeq}`;
