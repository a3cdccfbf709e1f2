#!/usr/bin/env python3
"""The chaos suite of durable execution (shared/DESIGN.md §5.2): processes die at random moments
while flows act on a local side-effect server (sideeffect.py) that counts every request per
Idempotency-Key. One case per --case, each on its own servers (redis-server, flowd app, flowd
workers on SQLite), started and always stopped by the service harness (../service/harness.py).

  worker-kill  a flow of 6 http steps with short in-place delays between them; the worker is
               SIGKILLed at a random moment of every run and a second worker finishes them
  engine-kill  the same, killing only the engine processes: that attempt ends INTERNAL_ERROR and
               the job's retry replays it
  worker-stop  the same, freezing the worker with SIGSTOP past its lock: a second worker takes
               the runs over, and once continued the first one's late results are refused
  redis        the same, with redis-server (persistence on) SIGKILLed and restarted mid-run
  app          the same, with the app SIGKILLed and restarted mid-run
  loop         a loop of 20 iterations, each an http call, killed at iteration 10: iterations
               1-9 are not requested again; and a code step's fetches keep their keys on replay
  pause        paused runs (approval, and a delay that is a delayed job) survive a restart of
               app, worker and Redis and resume once; two concurrent resume calls resume once;
               a resume that arrives before the pause is persisted is kept and applied
  retry        FROM_FAILED_STEP retry of a run failed at step 4 of 6 runs only steps 4-6;
               ON_LATEST_VERSION starts a new run on the latest version with the old trigger
               output
  reaper       runs whose job is gone, or whose worker hangs, still end: within
               AP_FLOW_TIMEOUT_SECONDS plus the stall detection time

--db postgres runs a case with the app on a PostgreSQL cluster that the harness starts (SQLite
otherwise). Every case also ends by checking that no run it started is left open, and that each ended within
AP_FLOW_TIMEOUT_SECONDS plus the stall detection time of its creation.

What "exactly once" means here: every step whose record an attempt had persisted before it was
interrupted is requested once in all; only the step in flight at an interruption (the first step
that the next attempt executed rather than replayed) may be requested twice, and then with the
same Idempotency-Key. The run's record must agree: the attempt that finished lists as replayed
exactly the steps that earlier attempts executed, and names the worker that ran it.

Environment: FLOWD_CHAOS_RUNS (runs per kill case; 8 by default, 50 in `make chaos`),
FLOWD_CHAOS_SEED (to repeat a sequence of random moments; printed at start).
"""
import argparse
import calendar
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "service"))
sys.path.insert(0, here)
import harness  # noqa: E402
from harness import (Client, Harness, check, code_step, flow, log, main,  # noqa: E402
                     piece_step, wait_for)
from sideeffect import SideEffectServer  # noqa: E402

RUNS = int(os.environ.get("FLOWD_CHAOS_RUNS") or 8)
DB = "sqlite"  # --db: the app's store
SEED = int(os.environ.get("FLOWD_CHAOS_SEED") or int(time.time() * 1000) % 1000000)
rng = random.Random(SEED)

HTTP = "@activepieces/piece-http"
DELAY = "@activepieces/piece-delay"
APPROVAL = "@activepieces/piece-approval"

LOCK_S = 2            # AP_WORKER_LOCK_DURATION_SECONDS
STALLED_S = 1         # AP_WORKER_STALLED_INTERVAL_SECONDS
TIMEOUT_S = 60        # AP_FLOW_TIMEOUT_SECONDS
# The app's reaper acts on a run that has not moved for lock + stalled interval + 10 s, and
# looks every 5 s: together with the lock expiry that is the stall detection time.
STALL_DETECTION_S = LOCK_S + STALLED_S + 10 + 5
FINAL = ("SUCCEEDED", "FAILED", "TIMEOUT", "INTERNAL_ERROR", "MEMORY_LIMIT_EXCEEDED",
         "LOG_SIZE_EXCEEDED", "CANCELED")


# ---- flows -----------------------------------------------------------------------------------

def http_step(name, url, next_action=None, data=None):
    return piece_step(name, HTTP, "send_request",
                      {"method": "POST", "url": url, "headers": {}, "queryParams": {},
                       "body_type": "json", "body": {"data": data or {"step": name}}},
                      next_action)


def delay_step(name, seconds, next_action=None):
    return piece_step(name, DELAY, "delayFor", {"unit": "seconds", "delayFor": seconds},
                      next_action)


SIX = ["http_1", "delay_1", "http_2", "delay_2", "http_3", "delay_3", "http_4", "delay_4",
       "http_5", "delay_5", "http_6"]
SIX_HTTP = [s for s in SIX if s.startswith("http")]


def six_http(se, ms=150, delay=0.25, fail=None, name="six http steps"):
    """trigger -> http_1 -> delay_1 -> ... -> http_6; http_<fail> goes to a /fail/ path."""
    nxt = None
    for k in range(6, 0, -1):
        path = "/fail/s%d/http_%d" % (k, k) if k == fail else "/effect/http_%d" % k
        nxt = http_step("http_%d" % k, "%s%s?ms=%d" % (se.base, path, ms), nxt)
        if k > 1:
            nxt = delay_step("delay_%d" % (k - 1), delay, nxt)
    return flow(name, nxt)


# ---- the cluster -----------------------------------------------------------------------------

class Cluster:
    """redis-server, one flowd app and any number of flowd workers, all restartable."""

    def __init__(self, h, persistent=False, env=None, app_env=None):
        self.h = h
        if DB == "postgres":
            app_env = dict(app_env or {}, AP_DB_TYPE="POSTGRES", AP_POSTGRES_URL=h.postgres())
        self.persistent = persistent
        self.sock = h.path("redis.sock")
        self.redis_dir = h.path("redis-data")
        os.makedirs(self.redis_dir, exist_ok=True)
        self.start_redis()
        self.common = {"AP_REDIS_URL": "unix://" + self.sock,
                       "AP_FLOW_TIMEOUT_SECONDS": TIMEOUT_S,
                       "AP_WORKER_LOCK_DURATION_SECONDS": LOCK_S,
                       "AP_WORKER_STALLED_INTERVAL_SECONDS": STALLED_S,
                       "AP_WORKER_CONCURRENCY": 5}
        self.common.update(env or {})
        self.app = h.flowd("app", "app", env=dict(self.common, **(app_env or {})))
        self.c = Client(self.app.port)
        self.wenv = dict(self.common, AP_APP_URL="http://127.0.0.1:%d" % self.app.port)
        self.n_workers = 0

    def start_redis(self):
        argv = ["redis-server", "--port", "0", "--unixsocket", self.sock, "--unixsocketperm",
                "700", "--dir", self.redis_dir, "--daemonize", "no", "--save", ""]
        if self.persistent:
            # Every write is on disk before Redis answers: a SIGKILL loses nothing.
            argv += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            argv += ["--appendonly", "no"]
        self.redis = self.h.spawn("redis", argv)
        wait_for(lambda: self.h.redis_cli(self.sock, "PING") == "PONG", 15,
                 "redis-server to answer")

    def restart_redis(self, down_s):
        self.redis.kill()
        time.sleep(down_s)
        self.start_redis()

    def restart_app(self, down_s):
        self.app.kill()
        time.sleep(down_s)
        self.app = self.h.restart(self.app)

    def worker(self, env=None):
        self.n_workers += 1
        return self.h.flowd("worker%d" % self.n_workers, "worker", env=dict(self.wenv, **(env or {})))

    def post(self, fl, body=None):
        r = self.c.post("/v1/webhooks/%s" % fl["id"], body or {}, auth=False)
        check(r.status == 200, "webhook: %r", r)
        return r.json()["runId"]

    def wait_final(self, run_id, timeout=60):
        return self.c.wait_run(run_id, FINAL, timeout)

    def attempts(self, run_id):
        return self.c.run(run_id)["attemptHistory"]


def worker_of(proc):
    """The worker name a flowd worker process records on the attempts it runs."""
    return ":%d" % proc.pid


# ---- checks ----------------------------------------------------------------------------------

def check_exactly_once(run, se, order, http_steps, keys_per_step=1):
    """The side-effect counts and the run's record of one SUCCEEDED run, as the module docstring
    explains. Returns the steps that were requested twice."""
    rid = run["id"]
    check(run["status"] == "SUCCEEDED", "run %s is %s: %s", rid, run["status"],
          run.get("failedStep"))
    counts = {k: v for k, v in se.counts().items() if k and k.startswith(rid + ":")}
    want = {"%s:%s:%d" % (rid, s, n) for s in http_steps for n in range(1, keys_per_step + 1)}
    check(set(counts) == want, "run %s: requests carried the keys %s, want %s", rid,
          sorted(counts), sorted(want))
    rec = {r["path"]: r for r in run["stepRecords"]}
    check(all(p in rec for p in order), "run %s: records %s, want %s", rid, sorted(rec), order)
    hist = run["attemptHistory"]
    # The first step each attempt executed: the one in flight when the attempt before it died.
    first_exec = {}
    for p in order:
        first_exec.setdefault(rec[p]["executedInAttempt"], p)
    twice = []
    for s in http_steps:
        n = max(counts["%s:%s:%d" % (rid, s, i)] for i in range(1, keys_per_step + 1))
        a = rec[s]["executedInAttempt"]
        if n == 1:
            continue
        check(n == 2 and a > 1 and first_exec.get(a) == s,
              "run %s: %s was requested %d times; it was executed by attempt %d, whose first "
              "executed step is %s: only the step in flight at an interruption may be "
              "requested twice (attempts: %s)", rid, s, n, a, first_exec.get(a),
              [(h["attempt"], h["status"]) for h in hist])
        twice.append(s)
    # The record tells the truth: the last attempt replayed exactly what earlier ones executed.
    last = hist[-1]
    check(last["status"] == "SUCCEEDED", "run %s: last attempt %s", rid, last)
    earlier = {p for p, r in rec.items() if r["executedInAttempt"] < last["attempt"]}
    replayed = set(last["replayedPaths"])
    check(replayed == earlier, "run %s: attempt %d says it replayed %s, but earlier attempts "
          "executed %s", rid, last["attempt"], sorted(replayed), sorted(earlier))
    for p in earlier:
        check(last["attempt"] in rec[p]["replayedInAttempts"], "run %s: %s's record: %s", rid,
              p, rec[p])
    check(set(last["executedSteps"]) == set(rec) - earlier, "run %s: attempt %d executed %s",
          rid, last["attempt"], last["executedSteps"])
    return twice


def check_no_unkeyed(se):
    check(se.counts().get(None, 0) == 0, "%d requests carried no Idempotency-Key",
          se.counts().get(None, 0))


def check_all_ended(c, since_ms=None):
    """No run of the app is left open, and each ended within AP_FLOW_TIMEOUT_SECONDS plus the
    stall detection time of its creation."""
    runs = c.runs()
    left = [(r["id"], r["status"]) for r in runs if r["status"] not in FINAL]
    check(not left, "runs left open: %s", left)
    bound = TIMEOUT_S + STALL_DETECTION_S
    for r in runs:
        took = (iso_ms(r["finishTime"]) - iso_ms(r["created"])) / 1000.0
        check(took <= bound, "run %s took %.1fs to end (%s), more than %ds", r["id"], took,
              r["status"], bound)
    return runs


def iso_ms(text):
    # "2026-01-02T03:04:05.678Z"
    t = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    return calendar.timegm(t) * 1000 + int(text[20:23])


# ---- runs interrupted in batches -------------------------------------------------------------

def warm_duration(cl, fl):
    """Runs the flow once undisturbed; returns its duration in seconds."""
    run = cl.wait_final(cl.post(fl, {"warm": True}), 60)
    check(run["status"] == "SUCCEEDED", "undisturbed run: %s %s", run["status"],
          run.get("failedStep"))
    return run["duration"] / 1000.0


def start_batch(cl, fl, n, duration, victim):
    """Posts n runs staggered over half the flow's duration, each started by victim; returns
    [(run_id, start time)]."""
    stagger = duration / 2.0 / max(n - 1, 1)
    out = []
    for i in range(n):
        if i:
            time.sleep(stagger)
        rid = cl.post(fl, {"i": i})
        out.append((rid, time.monotonic()))

    def started():
        for rid, _ in out:
            hist = cl.attempts(rid)
            if not hist:
                return False
            check(hist[0]["worker"].endswith(worker_of(victim)),
                  "run %s started on %s, not on the victim", rid, hist[0]["worker"])
        return True
    wait_for(started, 20, "the batch to start on the victim", interval=0.02)
    return out


def pick_moment(batch, duration):
    """A random moment when every run of the batch is mid-flow: after the last one started and
    well before the first one can end. Sleeps until then; returns [(run_id, seconds in)]."""
    lo = batch[-1][1] + 0.1
    hi = batch[0][1] + duration * 0.8
    now = time.monotonic()
    at = rng.uniform(max(lo, now), max(hi, now + 0.01))
    time.sleep(max(0, at - time.monotonic()))
    return [(rid, at - t0) for rid, t0 in batch]


def interrupted_runs(case, n_runs, batch_size, interrupt, min_attempts=2, max_attempts=None,
                     persistent=False, after=None):
    """The shape of the kill cases: batches of staggered runs of the six-step flow on one
    victim worker, interrupted at a random moment by interrupt(cluster, victim, batch,
    duration), which returns the next victim and the runs' progress at the interruption; then
    every run is checked. Runs that the interruption missed (possible on a loaded machine:
    one that ended before it) are checked too but not counted: batches go on until n_runs runs
    were interrupted."""
    with Harness("chaos-" + case) as h, SideEffectServer() as se:
        cl = Cluster(h, persistent=persistent, env={"AP_WORKER_CONCURRENCY": batch_size})
        fl = cl.c.push_flow(six_http(se))
        victim = cl.worker()
        duration = warm_duration(cl, fl)
        log("%s: %d runs in batches of %d on %s; an undisturbed run takes %.2fs; seed %d",
            case, n_runs, batch_size, DB, duration, SEED)
        counted, missed, twice_total = 0, 0, 0
        while counted < n_runs:
            check(missed <= n_runs, "%d runs were not interrupted: the machine is too "
                  "uneven for this case's timing", missed)
            batch = start_batch(cl, fl, min(batch_size, n_runs - counted), duration, victim)
            victim, at = interrupt(cl, victim, batch, duration)
            for rid, _ in batch:
                run = cl.wait_final(rid, TIMEOUT_S)
                twice = check_exactly_once(run, se, SIX, SIX_HTTP)
                twice_total += len(twice)
                hist = run["attemptHistory"]
                attempts = [(a["attempt"], a["status"]) for a in hist]
                check(max_attempts is None or len(hist) <= max_attempts,
                      "run %s needed attempts %s", rid, attempts)
                if len(hist) >= min_attempts:
                    counted += 1
                else:
                    missed += 1
                log("  run %s: interrupted %.2fs in, attempts %s, requested twice: %s%s", rid,
                    dict(at).get(rid), attempts, twice or "none",
                    "" if len(hist) >= min_attempts else " (ended before the interruption)")
        log("%s: %d interrupted runs SUCCEEDED; %d in-flight steps were requested twice (with "
            "the same key), every other step once", case, counted, twice_total)
        if after:
            after(cl, se, fl, victim)
        check_no_unkeyed(se)
        check_all_ended(cl.c)


# ---- case 1: worker SIGKILL ------------------------------------------------------------------

def case_worker_kill():
    def interrupt(cl, victim, batch, duration):
        second = cl.worker()
        at = pick_moment(batch, duration)
        victim.kill()
        for rid, _ in batch:
            run = cl.wait_final(rid, TIMEOUT_S)
            check(run["attemptHistory"][0]["worker"].endswith(worker_of(victim)) and
                  run["attemptHistory"][-1]["worker"].endswith(worker_of(second)),
                  "run %s: attempts ran on %s; the victim was %s, the second worker %s", rid,
                  [a["worker"] for a in run["attemptHistory"]], victim.pid, second.pid)
        return second, at
    interrupted_runs("worker-kill", RUNS, 4, interrupt)


# ---- case 2: engine SIGKILL, worker SIGSTOP, redis and app restarts --------------------------

def case_engine_kill():
    def interrupt(cl, victim, batch, duration):
        at = pick_moment(batch, duration)
        # Slots keep their engines between jobs: idle ones die too, harmlessly.
        pids = victim.engine_pids()
        check(len(pids) >= len(batch), "want %d engines, found %s", len(batch), pids)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for rid, _ in batch:
            hist = cl.wait_final(rid, TIMEOUT_S)["attemptHistory"]
            check(hist[0]["status"] == "INTERNAL_ERROR" and hist[-1]["status"] == "SUCCEEDED"
                  and len(hist) == 2, "run %s: attempts %s", rid,
                  [(a["attempt"], a["status"]) for a in hist])
        return victim, at

    def idle_deaths(cl, se, fl, victim):
        # Engines that die between jobs cost no attempt: the next job gets a fresh one.
        pids = victim.engine_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not set(pids) & set(victim.engine_pids()), 10, "idle engines to die")
        rids = [cl.post(fl, {"after": i}) for i in range(len(pids))]
        for rid in rids:
            run = cl.wait_final(rid, TIMEOUT_S)
            check_exactly_once(run, se, SIX, SIX_HTTP)
            check(len(run["attemptHistory"]) == 1, "run %s after idle engines died: attempts %s",
                  rid, [(a["attempt"], a["status"]) for a in run["attemptHistory"]])
        log("%d idle engines SIGKILLed: the next %d runs each SUCCEEDED in one attempt",
            len(pids), len(rids))
    interrupted_runs("engine-kill", RUNS, 4, interrupt, after=idle_deaths)


def case_worker_stop():
    def interrupt(cl, victim, batch, duration):
        second = cl.worker()
        before = Client(victim.port).metrics()
        at = pick_moment(batch, duration)
        victim.send(signal.SIGSTOP)
        # Frozen past its lock: the second worker's stalled check hands the jobs over.
        for rid, _ in batch:
            wait_for(lambda: any(a["worker"].endswith(worker_of(second))
                                 for a in cl.attempts(rid)),
                     LOCK_S + STALLED_S * 2 + 15, "run %s to move to the second worker" % rid,
                     interval=0.05)
        victim.send(signal.SIGCONT)
        for rid, _ in batch:
            hist = cl.wait_final(rid, TIMEOUT_S)["attemptHistory"]
            check(hist[0]["status"] == "ABANDONED" and
                  hist[-1]["worker"].endswith(worker_of(second)),
                  "run %s: attempts %s", rid,
                  [(a["attempt"], a["worker"], a["status"]) for a in hist])
        # Its late outcomes were refused: Redis refused to let the continued worker finish any
        # of the jobs it had held (the app had already refused its late posts with 409).
        def count(m, outcome):
            return m.get('flowd_worker_jobs_total{outcome="%s"}' % outcome, 0)

        def lost():
            m = Client(victim.port).metrics()
            return count(m, "lost") - count(before, "lost") >= len(batch) and m
        m = wait_for(lost, 15, "the frozen worker to count its refused outcomes")
        for outcome in ("completed", "failed", "retried"):
            check(count(m, outcome) == count(before, outcome),
                  "the continued worker had %s outcomes accepted for jobs it had lost: %s",
                  outcome, {k: v for k, v in m.items() if "jobs_total" in k})
        check(victim.alive(), "the continued worker died")
        victim.stop()
        return second, at
    interrupted_runs("worker-stop", RUNS, 4, interrupt)


def case_redis():
    def interrupt(cl, victim, batch, duration):
        at = pick_moment(batch, duration)
        # Down for less or more than the lock duration: locks survive, or expire and the
        # jobs are redelivered.
        cl.restart_redis(rng.uniform(0.2, LOCK_S * 1.5))
        return victim, at
    interrupted_runs("redis", RUNS, 4, interrupt, min_attempts=1, persistent=True)


def case_app():
    def interrupt(cl, victim, batch, duration):
        at = pick_moment(batch, duration)
        cl.restart_app(rng.uniform(0.5, 2.0))
        return victim, at
    # The worker holds its records and results until the app is back: nothing is redone.
    interrupted_runs("app", RUNS, 4, interrupt, min_attempts=1, max_attempts=1)


# ---- the checkpoint barrier -------------------------------------------------------------------

def case_barrier():
    """A step with effects is persisted at the app (2xx) before the next step starts, and
    compute-only steps ride along with the next checkpoint: checked from the side-effect
    server, which looks at the app's record of the run as each request arrives; and at the
    engine's pipe, where nothing happens between a step_finished that asks for an ack and the
    ack."""
    with Harness("chaos-barrier") as h, SideEffectServer() as se:
        cl = Cluster(h)
        cl.worker()
        chain = http_step("http_3", se.base + "/effect/b3")
        chain = http_step("http_2", se.base + "/effect/b2", chain)
        chain = piece_step("m", "@activepieces/piece-data-mapper", "advanced_mapping",
                           {"mapping": {"from": "{{http_1.status}}"}}, chain)
        doc = flow("barrier", http_step("http_1", se.base + "/effect/b1", chain))
        fl = cl.c.push_flow(doc)
        before_step = {"/effect/b2": ["http_1"], "/effect/b3": ["http_2", "m"]}
        looked, wrong = [], []

        def look(req):
            rid = req.key.split(":")[0]
            recs = {r["path"]: r["status"] for r in cl.c.run(rid)["stepRecords"]}
            looked.append(req.path)
            for step in before_step.get(req.path, []):
                if recs.get(step) != "SUCCEEDED":
                    wrong.append("run %s: %s requested while the app had %s" % (rid, req.path,
                                                                               recs))
            # The mapper computes only: it waits in the worker for http_2's checkpoint.
            if req.path == "/effect/b2" and "m" in recs:
                wrong.append("run %s: the mapper was posted on its own" % rid)
        se.on_request = look
        runs = [cl.post(fl) for _ in range(5)]
        for rid in runs:
            check(cl.wait_final(rid, 30)["status"] == "SUCCEEDED", "barrier run %s", rid)
        se.on_request = None
        check(sorted(looked) == sorted(["/effect/b1", "/effect/b2", "/effect/b3"] * 5),
              "requests: %s", looked)
        check(not wrong, "a step started before the one before it was persisted: %s", wrong)
        log("service: each http step was requested only once the step before it was "
            "committed at the app; the mapper rode along with the next checkpoint")

        # The engine itself: after a step_finished with "ack": true it does nothing until
        # the ack comes.
        eng = subprocess.Popen([harness.FLOWD, "engine"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
        try:
            def read(timeout):
                r, _, _ = select.select([eng.stdout], [], [], timeout)
                return json.loads(eng.stdout.readline()) if r else None
            check(read(10)["type"] == "ready", "no ready line")
            before = len(se.seen())
            eng.stdin.write((json.dumps({"type": "run", "runId": "BarrierRun0000000000a",
                                         "flowId": "f", "flowVersion": doc}) +
                             "\n").encode())
            eng.stdin.flush()
            order = []
            while True:
                ev = read(10)
                check(ev is not None, "the engine went quiet before asking for an ack")
                order.append((ev["type"], ev.get("name"), ev.get("ack")))
                if ev["type"] == "step_finished" and ev["ack"]:
                    break
            check(order[-1][1] == "http_1", "first ack asked for %s: %s", order[-1], order)
            quiet = read(0.5)
            check(quiet is None, "the engine went on before its ack: %s", quiet)
            check(len(se.seen()) == before + 1, "requests before the ack: %d",
                  len(se.seen()) - before)
            acks = 1
            while True:
                eng.stdin.write(b'{"type":"ack"}\n')
                eng.stdin.flush()
                while True:
                    ev = read(10)
                    check(ev is not None, "the engine went quiet")
                    order.append((ev["type"], ev.get("name"), ev.get("ack")))
                    if ev["type"] == "finished" or (ev["type"] == "step_finished" and
                                                    ev["ack"]):
                        break
                if ev["type"] == "finished":
                    break
                acks += 1
                check(read(0.2) is None, "the engine went on before ack %d" % acks)
            check(ev["status"] == "SUCCEEDED", "pipe run: %s", ev)
            fin = [(n, a) for t, n, a in order if t == "step_finished"]
            check(fin == [("trigger", False), ("http_1", True), ("m", False), ("http_2", True),
                          ("http_3", True)], "step_finished events: %s", fin)
        finally:
            eng.stdin.close()
            eng.wait(10)
        log("engine: after each step with effects it waited for its ack (%d acks); the trigger "
            "and the mapper asked for none", acks)
        check_all_ended(cl.c)


# ---- case 3: a loop killed at iteration 10; a code step's fetches ----------------------------

def case_loop():
    with Harness("chaos-loop") as h, SideEffectServer() as se:
        cl = Cluster(h)
        body = http_step("http_1", se.base + "/effect/iter/{{loop_1.index}}?ms=20",
                         data={"item": "{{loop_1.item}}"})
        loop = {"name": "loop_1", "type": "LOOP_ON_ITEMS", "displayName": "Loop",
                "valid": True, "settings": {"items": "{{trigger.body.items}}"},
                "firstLoopAction": body}
        fl = cl.c.push_flow(flow("loop of 20 calls", loop))
        a = cl.worker()
        gate = se.gate("/effect/iter/10")
        rid = cl.post(fl, {"items": list(range(101, 121))})
        check(gate.arrived.wait(30), "iteration 10 never called")
        a.kill()
        log("worker SIGKILLed while iteration 10's request was in flight")
        b = cl.worker()
        se.ungate(gate)
        run = cl.wait_final(rid, TIMEOUT_S)
        check(run["status"] == "SUCCEEDED", "loop run: %s %s", run["status"],
              run.get("failedStep"))
        iters = run["steps"]["loop_1"]["output"]["iterations"]
        check(len(iters) == 20, "%d iterations", len(iters))
        counts = se.counts("/effect/iter/")
        for i in range(1, 21):
            key = "%s:loop_1[%d].http_1:1" % (rid, i)
            want = 2 if i == 10 else 1
            check(counts.get(key) == want, "iteration %d requested %s times (key %s), want %d",
                  i, counts.get(key), key, want)
        check(len(counts) == 20, "keys: %s", sorted(counts))
        hist = run["attemptHistory"]
        check(len(hist) == 2 and hist[1]["worker"].endswith(worker_of(b)), "attempts: %s", hist)
        want = {"trigger"} | {"loop_1[%d].http_1" % i for i in range(1, 10)}
        check(set(hist[1]["replayedPaths"]) == want, "attempt 2 replayed %s",
              hist[1]["replayedPaths"])
        log("loop: iterations 1-9 requested once, 10 twice with key %s:loop_1[10].http_1:1, "
            "11-20 once; attempt 2 replayed 9 iterations", rid)

        # A code step's fetches: killed during the second one, the replay sends both again
        # with the same keys.
        code = ("export const code = async () => { const out = []; for (const n of [1, 2]) {"
                " const r = await fetch('%s/effect/fetch/' + n, {method: 'POST'});"
                " out.push((await r.json()).key); } return out; }" % se.base)
        fl = cl.c.push_flow(flow("fetch twice", code_step("code_1", code)))
        gate = se.gate("/effect/fetch/2")
        rid = cl.post(fl)
        check(gate.arrived.wait(30), "the second fetch never came")
        b.kill()
        cl.worker()
        se.ungate(gate)
        run = cl.wait_final(rid, TIMEOUT_S)
        check(run["status"] == "SUCCEEDED", "fetch run: %s %s", run["status"],
              run.get("failedStep"))
        keys = ["%s:code_1:%d" % (rid, n) for n in (1, 2)]
        check(run["steps"]["code_1"]["output"] == keys, "fetch keys seen: %s",
              run["steps"]["code_1"]["output"])
        counts = se.counts("/effect/fetch/")
        check(counts == {keys[0]: 2, keys[1]: 2}, "fetch counts: %s", counts)
        check_no_unkeyed(se)
        check_all_ended(cl.c)
        log("code fetch: the in-flight step ran again with the same keys %s", keys)


# ---- case 4: pause and resume across restarts ------------------------------------------------

def case_pause():
    with Harness("chaos-pause") as h, SideEffectServer() as se:
        cl = Cluster(h, persistent=True)
        after = http_step("after", se.base + "/effect/after")
        approval = cl.c.push_flow(flow("approval", piece_step(
            "wait", APPROVAL, "wait_for_approval", {}, after)))
        delay_s = 12  # over 10 s: a DELAY waitpoint and a delayed RESUME job
        delayed = cl.c.push_flow(flow("delay", delay_step("wait", delay_s, http_step(
            "after", se.base + "/effect/after-delay"))))
        worker = cl.worker()
        rid = cl.post(approval)
        did = cl.post(delayed)
        run = cl.c.wait_run(rid, "PAUSED", 30)
        wp_url = run["waitpoint"]["resumeUrl"]
        cl.c.wait_run(did, "PAUSED", 30)
        t_paused = time.monotonic()
        # Everything restarts: the pause is only in the store and in Redis's append-only file.
        worker.kill()
        cl.app.kill()
        cl.restart_redis(0.5)
        cl.app = h.restart(cl.app)
        worker = cl.worker()
        log("app, worker and redis-server restarted with both runs PAUSED")
        check(cl.c.run(rid)["status"] == "PAUSED", "approval run after the restart: %s",
              cl.c.run(rid)["status"])

        # Two concurrent resume calls: one resumes, the other gets 410.
        path = wp_url.split("127.0.0.1:%d" % cl.app.port, 1)[-1] + "?action=approve"
        answers = []
        barrier = threading.Barrier(2)

        def call():
            barrier.wait()
            answers.append(cl.c.get(path, auth=False).status)
        threads = [threading.Thread(target=call) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(sorted(answers) == [200, 410], "two concurrent resumes answered %s", answers)
        run = cl.wait_final(rid, 30)
        check(run["status"] == "SUCCEEDED", "approval run: %s %s", run["status"],
              run.get("failedStep"))
        check(run["steps"]["wait"]["output"] == {"approved": True}, "approval output: %s",
              run["steps"]["wait"]["output"])
        check([a["executionType"] for a in run["attemptHistory"]] == ["BEGIN", "RESUME"],
              "approval attempts: %s", run["attemptHistory"])
        check(se.counts("/effect/after") == {"%s:after:1" % rid: 1}, "after the approval: %s",
              se.counts("/effect/after"))
        check(cl.c.get(path, auth=False).status == 410, "a third call did not get 410")
        log("approval: resumed once after the restarts (concurrent calls answered %s)",
            sorted(answers))

        # The delay resumes by its delayed job, which survived the restart, at its time.
        run = cl.wait_final(did, delay_s + 30)
        waited = time.monotonic() - t_paused
        check(run["status"] == "SUCCEEDED", "delayed run: %s %s", run["status"],
              run.get("failedStep"))
        check([a["executionType"] for a in run["attemptHistory"]] == ["BEGIN", "RESUME"],
              "delay attempts: %s", run["attemptHistory"])
        check(se.counts("/effect/after-delay") == {"%s:after:1" % did: 1},
              "after the delay: %s", se.counts("/effect/after-delay"))
        check(waited >= delay_s - 2, "the delay resumed after %.1fs of %ds", waited, delay_s)
        log("delay: resumed by its delayed job %.1fs after the pause", waited)

        # A resume that arrives before the pause is persisted: the approval link goes out (to
        # the side-effect server) before the run pauses, and is called while it still runs.
        notify = http_step("notify", se.base + "/effect/notify",
                           data={"link": "{{links.approvalLink}}"},
                           next_action=piece_step("wait", APPROVAL, "wait_for_approval", {},
                                                  http_step("after", se.base + "/effect/early")))
        early = cl.c.push_flow(flow("early", piece_step("links", APPROVAL,
                                                        "create_approval_links", {}, notify)))
        gate = se.gate("/effect/notify")
        eid = cl.post(early)
        check(gate.arrived.wait(30), "the link was never sent")
        link = gate.held[0].json()["link"]
        check(cl.c.run(eid)["status"] == "RUNNING", "run before the early resume: %s",
              cl.c.run(eid)["status"])
        r = cl.c.get(link.split("127.0.0.1:%d" % cl.app.port, 1)[-1], auth=False)
        check(r.status == 200 and r.json()["status"] == "ACCEPTED", "early resume: %r", r)
        se.ungate(gate)
        run = cl.wait_final(eid, 30)
        check(run["status"] == "SUCCEEDED", "early-resumed run: %s %s", run["status"],
              run.get("failedStep"))
        check(run["steps"]["wait"]["output"] == {"approved": True}, "approval output: %s",
              run["steps"]["wait"]["output"])
        check(se.counts("/effect/early") == {"%s:after:1" % eid: 1}, "after the early resume: %s",
              se.counts("/effect/early"))
        check(cl.c.get(link.split("127.0.0.1:%d" % cl.app.port, 1)[-1],
                       auth=False).status == 410, "the used link did not get 410")
        log("early resume: kept while the run was RUNNING and applied when it paused")
        check_no_unkeyed(se)
        check_all_ended(cl.c)


# ---- case 5: retries -------------------------------------------------------------------------

def case_retry():
    with Harness("chaos-retry") as h, SideEffectServer() as se:
        cl = Cluster(h)
        cl.worker()
        fl = cl.c.push_flow(six_http(se, delay=0.05, fail=4))
        se.fail("s4")
        rid = cl.post(fl, {"order": 7})
        run = cl.wait_final(rid, 30)
        check(run["status"] == "FAILED" and run["failedStep"]["name"] == "http_4",
              "run before the retry: %s %s", run["status"], run.get("failedStep"))
        se.fail("s4", False)
        r = cl.c.post("/v1/flow-runs/%s/retry" % rid, {"strategy": "FROM_FAILED_STEP"})
        check(r.status == 200, "retry: %r", r)
        run = cl.wait_final(rid, 30)
        check(run["status"] == "SUCCEEDED", "retried run: %s %s", run["status"],
              run.get("failedStep"))
        counts = {k: v for k, v in se.counts().items() if k and k.startswith(rid)}
        want = {"%s:http_%d:1" % (rid, k): (2 if k == 4 else 1) for k in range(1, 7)}
        check(counts == want, "requests per key: %s, want %s", counts, want)
        hist = run["attemptHistory"]
        check([a["status"] for a in hist] == ["FAILED", "SUCCEEDED"], "attempts: %s", hist)
        check(set(hist[1]["replayedPaths"]) == set(["trigger"] + SIX[:6]),
              "the retry replayed %s", hist[1]["replayedPaths"])
        check(set(hist[1]["executedSteps"]) == set(SIX[6:]), "the retry executed %s",
              hist[1]["executedSteps"])
        log("FROM_FAILED_STEP: steps 1-3 replayed, 4-6 executed; http_4 requested twice with "
            "its one key, the others once")

        # ON_LATEST_VERSION: a new run of the latest version with the old trigger output.
        se.fail("s4")
        rid2 = cl.post(fl, {"order": 8})
        check(cl.wait_final(rid2, 30)["status"] == "FAILED", "second run did not fail")
        r = cl.c.request("PUT", "/v1/flows/%s" % fl["id"],
                         six_http(se, delay=0.05, name="six http steps, fixed"))
        check(r.status == 200, "new version: %r", r)
        latest = cl.c.get("/v1/flows/%s" % fl["id"]).json()["version"]["id"]
        r = cl.c.post("/v1/flow-runs/%s/retry" % rid2, {"strategy": "ON_LATEST_VERSION"})
        check(r.status in (200, 201), "retry on the latest version: %r", r)
        new = r.json()
        check(new["id"] != rid2 and new.get("retryOf") == rid2, "new run: %s", new)
        run = cl.wait_final(new["id"], 30)
        check(run["status"] == "SUCCEEDED", "run on the latest version: %s", run["status"])
        check(run["flowVersionId"] == latest, "ran version %s, latest is %s",
              run["flowVersionId"], latest)
        check(run["steps"]["trigger"]["output"]["body"] == {"order": 8},
              "trigger output of the new run: %s", run["steps"]["trigger"]["output"])
        check(cl.c.run(rid2)["status"] == "FAILED", "the old run changed")
        check_no_unkeyed(se)
        check_all_ended(cl.c)
        log("ON_LATEST_VERSION: new run %s on version %s with the old trigger output",
            new["id"], latest)


# ---- case 6: the reaper ends runs whose job is gone or whose worker hangs --------------------

def case_reaper():
    timeout_s = 8
    with Harness("chaos-reaper") as h, SideEffectServer() as se:
        cl = Cluster(h, env={"AP_FLOW_TIMEOUT_SECONDS": timeout_s})
        fl = cl.c.push_flow(flow("slow", http_step("http_1", se.base + "/effect/one", next_action=
                                                     delay_step("wait", 5, http_step(
                                                         "http_2", se.base + "/effect/two")))))
        bound = timeout_s + STALL_DETECTION_S + 3

        # The worker dies and its job is lost with it (deleted from Redis): no worker can
        # redeliver it, so only the reaper can end the run.
        w = cl.worker()
        rid = cl.post(fl)
        wait_for(lambda: "http_1" in cl.c.run(rid)["steps"], 20, "http_1 to be persisted")
        w.kill()
        prefix = "bull:workerJobs:"
        h.redis_cli(cl.sock, "LREM", prefix + "active", 0, rid)
        h.redis_cli(cl.sock, "DEL", prefix + rid, prefix + rid + ":lock")
        t0 = time.monotonic()
        run = cl.wait_final(rid, bound)
        check(run["status"] == "INTERNAL_ERROR", "run with a lost job: %s", run["status"])
        log("lost job: the reaper made the run %s after %.1fs", run["status"],
            time.monotonic() - t0)

        # The worker hangs (SIGSTOP) and no other worker runs the stalled check: the job stays
        # active with an expired lock, and the run ends TIMEOUT.
        w = cl.worker()
        rid = cl.post(fl)
        wait_for(lambda: "http_1" in cl.c.run(rid)["steps"], 20, "http_1 to be persisted")
        w.send(signal.SIGSTOP)
        t0 = time.monotonic()
        run = cl.wait_final(rid, bound)
        check(run["status"] == "TIMEOUT", "run of a hung worker: %s", run["status"])
        log("hung worker: the reaper made the run %s after %.1fs", run["status"],
            time.monotonic() - t0)
        w.send(signal.SIGCONT)
        w.kill()
        check_all_ended(cl.c)


CASES = {"barrier": case_barrier, "worker-kill": case_worker_kill, "engine-kill": case_engine_kill,
         "worker-stop": case_worker_stop, "redis": case_redis, "app": case_app,
         "loop": case_loop, "pause": case_pause, "retry": case_retry, "reaper": case_reaper}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = ap.parse_args()
    DB = args.db
    main(CASES[args.case])
