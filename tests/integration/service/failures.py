#!/usr/bin/env python3
"""Failure cases of the service (issue 4), one per --case, each on its own servers:

  timeout      an infinite loop becomes TIMEOUT within AP_FLOW_TIMEOUT_SECONDS + 2 s
  memory       allocating past AP_SANDBOX_MEMORY_LIMIT becomes MEMORY_LIMIT_EXCEEDED
  engine-kill  a SIGKILLed engine makes that attempt INTERNAL_ERROR; the job is retried and the
               retry replays the persisted steps; killed on every attempt, the run ends
               INTERNAL_ERROR, and the run record says so truthfully
  app-down     the app is down for 10 s while a worker runs flows: no progress or result lost
  sigterm      a worker SIGTERMed mid-run finishes its jobs within the grace period, or hands
               them back at once for another worker; no run is left RUNNING
"""
import argparse
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Harness, check, code_step, flow, log, main, parallel,  # noqa: E402
                     return_response, sleep_code, wait_for)

STAMP = "export const code = async (i) => ({ stamp: Date.now() + Math.random(), n: i.n });"


def step_chain(names_ms, last=None):
    """code steps that each sleep the given ms and return their name."""
    nxt = last
    for name, ms in reversed(names_ms):
        nxt = code_step(name, sleep_code(ms, "{ step: '%s', at: Date.now() }" % name),
                        next_action=nxt)
    return nxt


def redis_cli(url, *args):
    return Harness.redis_cli(url[len("unix://"):], *args)


def post_run(c, fl, body=None):
    r = c.post("/v1/webhooks/%s" % fl["id"], body or {}, auth=False)
    check(r.status == 200, "webhook: %r", r)
    return r.json()["runId"]


def wait_step(c, run_id, name, timeout=15):
    return wait_for(lambda: name in c.run(run_id)["steps"] and c.run(run_id), timeout,
                    "run %s to record %s" % (run_id, name), interval=0.05)


def still_works(c):
    fl = c.push_flow(flow("after", code_step(
        "step_1", "export const code = async () => ({ fine: true })",
        next_action=return_response("step_2", 200, {}, {"fine": True}))))
    r = c.post("/v1/webhooks/%s/sync" % fl["id"], {}, auth=False)
    check(r.status == 200 and r.json() == {"fine": True}, "a run after the failure: %r", r)


# ---- timeout ---------------------------------------------------------------------------------

def case_timeout():
    limit = 3
    with Harness("fail-timeout") as h:
        app = h.flowd("serve", "serve", env={"AP_FLOW_TIMEOUT_SECONDS": limit,
                                             "AP_WORKER_CONCURRENCY": 2})
        c = Client(app.port)
        loop = c.push_flow(flow("loop", code_step(
            "step_1", "export const code = async () => ({ ok: 1 })",
            next_action=code_step("step_2", "export const code = async () => { while (true) {} }",
                                  next_action=code_step("step_3", STAMP)))))
        sleepy = c.push_flow(flow("sleepy", code_step("step_1", sleep_code(60000))))
        for fl, what in ((loop, "an infinite loop"), (sleepy, "a 60 s timer")):
            t0 = time.monotonic()
            run_id = post_run(c, fl)
            run = c.wait_run(run_id, ("TIMEOUT", "FAILED", "INTERNAL_ERROR", "SUCCEEDED"),
                             limit + 10)
            took = time.monotonic() - t0
            check(run["status"] == "TIMEOUT", "%s: want TIMEOUT, got %s", what, run["status"])
            check(took <= limit + 2, "%s: TIMEOUT after %.2fs, want <= %ds", what, took,
                  limit + 2)
            check(took >= limit - 0.5, "%s: TIMEOUT after only %.2fs", what, took)
            check(len(run["attemptHistory"]) == 1, "a TIMEOUT was retried: %s",
                  run["attemptHistory"])
            check(run["attemptHistory"][0]["status"] == "TIMEOUT", "attempt: %s",
                  run["attemptHistory"][0])
            if fl is loop:
                check(run["steps"]["step_1"]["status"] == "SUCCEEDED"
                      and "step_3" not in run["steps"], "steps of the timed-out run: %s",
                      sorted(run["steps"]))
                fs = run.get("failedStep") or {}
                check(fs.get("name") == "step_2" and "AP_FLOW_TIMEOUT_SECONDS" in
                      fs.get("message", ""), "failedStep of the timed-out run: %s", fs)
            log("%s: TIMEOUT %.2fs after the webhook (AP_FLOW_TIMEOUT_SECONDS=%d)", what, took,
                limit)
        still_works(c)


# ---- memory ----------------------------------------------------------------------------------

def case_memory():
    limit_kb = 256 * 1024
    with Harness("fail-memory") as h:
        app = h.flowd("serve", "serve", env={"AP_SANDBOX_MEMORY_LIMIT": limit_kb,
                                             "AP_FLOW_TIMEOUT_SECONDS": 30,
                                             "AP_WORKER_CONCURRENCY": 1})
        c = Client(app.port)
        # 8 MiB typed arrays, each filled so that its pages are really resident.
        hog = ("export const code = async () => { const keep = []; "
               "for (let i = 0; i < 400; i++) { const a = new Float64Array(1 << 20); "
               "a.fill(i + 1); keep.push(a); } return { kept: keep.length }; }")
        fl = c.push_flow(flow("hog", code_step("step_1", STAMP, {"n": 1},
                                                code_step("step_2", hog))))
        t0 = time.monotonic()
        run_id = post_run(c, fl)
        run = c.wait_run(run_id, ("MEMORY_LIMIT_EXCEEDED", "FAILED", "INTERNAL_ERROR",
                                  "SUCCEEDED", "TIMEOUT"), 30)
        check(run["status"] == "MEMORY_LIMIT_EXCEEDED", "want MEMORY_LIMIT_EXCEEDED, got %s: %s",
              run["status"], run.get("failedStep"))
        check(len(run["attemptHistory"]) == 1 and
              run["attemptHistory"][0]["status"] == "MEMORY_LIMIT_EXCEEDED",
              "attempts: %s", run["attemptHistory"])
        check(run["steps"]["step_1"]["status"] == "SUCCEEDED", "step_1 lost: %s",
              sorted(run["steps"]))
        fs = run.get("failedStep") or {}
        check(fs.get("name") == "step_2" and "AP_SANDBOX_MEMORY_LIMIT" in fs.get("message", ""),
              "failedStep of the run over its memory: %s", fs)
        log("allocating past %d KiB: MEMORY_LIMIT_EXCEEDED after %.2fs", limit_kb,
            time.monotonic() - t0)
        # Under the limit the same engine size is fine.
        small = c.push_flow(flow("small", code_step("step_1", hog.replace("400", "8"))))
        run = c.wait_run(post_run(c, small), ("SUCCEEDED", "MEMORY_LIMIT_EXCEEDED", "FAILED"), 20)
        check(run["status"] == "SUCCEEDED", "64 MiB under a 256 MiB limit: %s", run["status"])
        m = c.metrics()
        check(m.get('flowd_worker_runs_total{status="MEMORY_LIMIT_EXCEEDED"}') == 1,
              "worker metrics: %s", {k: v for k, v in m.items() if "runs_total" in k})
        still_works(c)


# ---- engine killed ---------------------------------------------------------------------------

def case_engine_kill():
    with Harness("fail-engine-kill") as h:
        app = h.flowd("serve", "serve", env={"AP_WORKER_CONCURRENCY": 1,
                                             "AP_FLOW_TIMEOUT_SECONDS": 60})
        c = Client(app.port)
        fl = c.push_flow(flow("victim", code_step(
            "step_1", STAMP, {"n": "{{trigger.body.n}}"},
            step_chain([("step_2", 1500)], code_step("step_3", STAMP, {"n": 3})))))

        def kill_engine(run_id, attempt):
            # Once step_1 is persisted by this attempt and step_2 is running.
            def ready():
                run = c.run(run_id)
                return (len(run["attemptHistory"]) == attempt and "step_1" in run["steps"]
                        and app.engine_pids() and run)
            run = wait_for(ready, 15, "attempt %d of %s to be mid-run" % (attempt, run_id),
                           interval=0.02)
            time.sleep(0.2)
            pids = app.engine_pids()
            check(len(pids) == 1, "want one engine, found %s", pids)
            os.kill(pids[0], signal.SIGKILL)
            return run["steps"]["step_1"]["output"]

        # Killed once: that attempt is INTERNAL_ERROR, the retry replays step_1 and succeeds.
        run_id = post_run(c, fl, {"n": 1})
        first = kill_engine(run_id, 1)
        run = c.wait_run(run_id, ("SUCCEEDED", "INTERNAL_ERROR", "FAILED"), 20)
        check(run["status"] == "SUCCEEDED", "after one kill: %s", run["status"])
        hist = run["attemptHistory"]
        check([a["status"] for a in hist] == ["INTERNAL_ERROR", "SUCCEEDED"],
              "attempts after one kill: %s", hist)
        check(run["steps"]["step_1"]["output"] == first,
              "step_1 ran again after the kill: %s then %s", first,
              run["steps"]["step_1"]["output"])
        rec = {r["path"]: r for r in run["stepRecords"]}
        check(rec["step_1"]["executedInAttempt"] == 1 and 2 in rec["step_1"]["replayedInAttempts"],
              "step_1's record: %s", rec["step_1"])
        check(rec["step_2"]["executedInAttempt"] == 2, "step_2's record: %s", rec["step_2"])
        check("step_1" in hist[0]["executedSteps"] and "step_2" not in hist[0]["executedSteps"],
              "attempt 1 claims %s", hist[0]["executedSteps"])
        log("engine SIGKILLed once: attempt 1 INTERNAL_ERROR, attempt 2 replayed step_1 and "
            "SUCCEEDED")

        # Killed on every attempt: the run ends INTERNAL_ERROR and says why.
        run_id = post_run(c, fl, {"n": 2})
        for attempt in (1, 2, 3):
            kill_engine(run_id, attempt)
        run = c.wait_run(run_id, ("SUCCEEDED", "INTERNAL_ERROR", "FAILED"), 20)
        check(run["status"] == "INTERNAL_ERROR", "killed on every attempt: %s", run["status"])
        hist = run["attemptHistory"]
        check([a["status"] for a in hist] == ["INTERNAL_ERROR"] * 3, "attempts: %s", hist)
        check(run["finishTime"] is not None, "no finishTime: %s", run)
        fs = run.get("failedStep") or {}
        text = fs.get("message", "")
        check("signal 9" in text and fs.get("name") == "step_2"
              and fs.get("displayName") == "Code step_2",
              "the run does not say the engine was killed in step_2: failedStep=%s", fs)
        check(run["steps"]["step_1"]["status"] == "SUCCEEDED", "steps: %s", run["steps"])
        log("engine SIGKILLed on all 3 attempts: run INTERNAL_ERROR (%s)", text[:120])
        still_works(c)


# ---- app down --------------------------------------------------------------------------------

def case_app_down():
    runs_n = 5
    with Harness("fail-app-down") as h:
        redis = h.redis()
        common = {"AP_REDIS_URL": redis, "AP_FLOW_TIMEOUT_SECONDS": 120,
                  "AP_WORKER_CONCURRENCY": runs_n}
        app = h.flowd("app", "app", env=common)
        worker = h.flowd("worker", "worker", env=dict(
            common, AP_APP_URL="http://127.0.0.1:%d" % app.port))
        c = Client(app.port)
        steps = [("step_%d" % i, 1000) for i in range(1, 6)]
        fl = c.push_flow(flow("long", step_chain(steps)))
        sync_fl = c.push_flow(flow("long sync", step_chain(
            steps[:3], return_response("reply", 202, {}, {"done": "{{step_3.step}}"}))))
        ids = [post_run(c, fl, {"n": i}) for i in range(runs_n - 1)]
        ids.append(post_run(c, sync_fl))
        for run_id in ids:
            wait_step(c, run_id, "step_1")
        app.kill()
        log("app SIGKILLed with %d runs mid-flow; down for 10 s", runs_n)
        time.sleep(10)
        check(worker.alive(), "the worker died while the app was down")
        app = h.restart(app)
        log("app back")
        for run_id in ids:
            run = c.wait_run(run_id, ("SUCCEEDED", "FAILED", "INTERNAL_ERROR", "TIMEOUT"), 30)
            check(run["status"] == "SUCCEEDED", "run %s: %s", run_id, run["status"])
            want = {"trigger"} | {n for n, _ in (steps if run_id != ids[-1] else steps[:3])}
            if run_id == ids[-1]:
                want.add("reply")
                check(run.get("response", {}).get("status") == 202, "response lost: %s",
                      run.get("response"))
            check(set(run["steps"]) == want, "run %s steps: %s", run_id, sorted(run["steps"]))
            check(all(s["status"] == "SUCCEEDED" for s in run["steps"].values()),
                  "run %s: a step is not SUCCEEDED", run_id)
            check(len(run["attemptHistory"]) == 1, "run %s needed %d attempts: nothing should "
                  "have been redone", run_id, len(run["attemptHistory"]))
            check(all(r["executedInAttempt"] == 1 for r in run["stepRecords"]),
                  "run %s: %s", run_id, run["stepRecords"])
            ats = [run["steps"][n]["output"]["at"] for n, _ in steps if n in run["steps"]]
            check(ats == sorted(ats), "steps out of order: %s", ats)
        log("after 10 s without the app, all %d runs SUCCEEDED in their first attempt with "
            "every step", runs_n)
        still_works(c)


# ---- worker SIGTERM --------------------------------------------------------------------------

def case_sigterm():
    with Harness("fail-sigterm") as h:
        redis = h.redis()
        # A lock far longer than the test: a handed-back job must not wait for its expiry.
        common = {"AP_REDIS_URL": redis, "AP_FLOW_TIMEOUT_SECONDS": 120,
                  "AP_WORKER_CONCURRENCY": 3, "AP_WORKER_LOCK_DURATION_SECONDS": 60,
                  "AP_WORKER_STALLED_INTERVAL_SECONDS": 60}
        app = h.flowd("app", "app", env=common)
        wenv = dict(common, AP_APP_URL="http://127.0.0.1:%d" % app.port)
        c = Client(app.port)

        # 1. Jobs that fit in the grace period are finished by the stopping worker.
        w1 = h.flowd("w1", "worker", env=wenv, args=["--grace", "10"])
        fl = c.push_flow(flow("short", step_chain([("step_1", 300), ("step_2", 2000)])))
        ids = [post_run(c, fl) for _ in range(3)]
        for run_id in ids:
            wait_step(c, run_id, "step_1")
        t0 = time.monotonic()
        w1.send(signal.SIGTERM)
        rc = w1.popen.wait(20)
        took = time.monotonic() - t0
        check(rc == 0, "w1 exited %s", rc)
        for run_id in ids:
            run = c.run(run_id)
            check(run["status"] == "SUCCEEDED", "run %s after a graceful stop: %s", run_id,
                  run["status"])
            check(len(run["attemptHistory"]) == 1, "run %s was handed back", run_id)
        log("SIGTERM with a 10 s grace: w1 finished its 3 runs and exited in %.2fs", took)

        # 2. Jobs longer than the grace period are handed back and another worker takes them
        #    at once (well before the 60 s lock would expire).
        w2 = h.flowd("w2", "worker", env=wenv, args=["--grace", "1"])
        fl = c.push_flow(flow("long", step_chain([("step_1", 300), ("step_2", 8000),
                                                   ("step_3", 100)])))
        ids = [post_run(c, fl) for _ in range(3)]
        firsts = {run_id: wait_step(c, run_id, "step_1")["steps"]["step_1"]["output"]
                  for run_id in ids}
        t0 = time.monotonic()
        w2.send(signal.SIGTERM)
        rc = w2.popen.wait(15)
        took = time.monotonic() - t0
        check(rc == 0, "w2 exited %s", rc)
        check(took < 6, "w2 took %.2fs to stop with a 1 s grace", took)
        check(not w2.engine_pids(), "w2 left engines behind")
        for run_id in ids:
            # Nobody runs it now: it waits in the queue, and says so.
            run = c.run(run_id)
            check(run["status"] == "QUEUED", "run %s after hand-back: %s", run_id,
                  run["status"])
            check([a["status"] for a in run["attemptHistory"]] == ["INTERNAL_ERROR"],
                  "run %s attempts after hand-back: %s", run_id, run["attemptHistory"])
            check(redis_cli(redis, "LPOS", "bull:workerJobs:wait", run_id) != "",
                  "run %s's job is not back in wait", run_id)
        log("SIGTERM with a 1 s grace: w2 handed its runs back and exited in %.2fs", took)
        w3 = h.flowd("w3", "worker", env=wenv)
        t0 = time.monotonic()
        for run_id in ids:
            run = c.wait_run(run_id, ("SUCCEEDED", "FAILED", "INTERNAL_ERROR", "TIMEOUT"), 25)
            check(run["status"] == "SUCCEEDED", "run %s: %s", run_id, run["status"])
            check(run["steps"]["step_1"]["output"] == firsts[run_id],
                  "run %s: step_1 ran again", run_id)
            hist = run["attemptHistory"]
            check([a["status"] for a in hist] == ["INTERNAL_ERROR", "SUCCEEDED"],
                  "run %s attempts: %s", run_id, hist)
        log("w3 finished the handed-back runs %.2fs after it started", time.monotonic() - t0)
        left = c.runs(status="QUEUED,RUNNING")
        check(not left, "runs left open: %s", [(r["id"], r["status"]) for r in left])
        check(w3.stop() == 0, "w3 did not exit 0")


CASES = {"timeout": case_timeout, "memory": case_memory, "engine-kill": case_engine_kill,
         "app-down": case_app_down, "sigterm": case_sigterm}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    main(CASES[ap.parse_args().case])
