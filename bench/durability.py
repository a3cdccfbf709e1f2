#!/usr/bin/env python3
"""What durability costs: the per-step overhead of the checkpoint barrier (shared/DESIGN.md §5.2).

Method. One flow of STEPS cheap code steps (each returns a small object: a side-effecting step
type, so each one is a checkpoint barrier), run through the real service on SQLite: `flowd app`
and one `flowd worker` (concurrency 1) on a private redis-server. The same app, database, flow
and worker binary serve both modes; only the worker differs:
  durable      the normal worker: after every step the engine waits while the worker posts the
               step record to the app and the app commits it (app 2xx), then acks;
  not durable  the same worker with FLOWD_BENCH_NO_CHECKPOINT=1: the engine waits for no ack and
               the worker posts every record at once with the result, as a worker with no
               checkpoints would.
Each run's time is the app's own: from the attempt's start (/start committed) to its result
(committed), so both modes include storing every record. Runs go one at a time, rounds
alternate between the modes (a worker of the other mode is started for each round), and each
mode's figure is the median over its runs. The overhead per step is the difference of the
medians divided by STEPS. Target: <= 300 us per side-effecting step.
"""
import os
import statistics
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration", "service"))
import harness  # noqa: E402
from harness import Client, Harness, code_step, flow, log  # noqa: E402

STEPS = int(os.environ.get("DURABILITY_BENCH_STEPS", "200"))
RUNS = int(os.environ.get("DURABILITY_BENCH_RUNS", "10"))      # per mode and round
ROUNDS = int(os.environ.get("DURABILITY_BENCH_ROUNDS", "3"))
TARGET_US = 300


def many_steps(n):
    nxt = None
    for k in range(n, 0, -1):
        nxt = code_step("step_%d" % k, "export const code = async (i) => ({ n: %d })" % k, {},
                        nxt)
    return flow("durability bench", nxt)


def run_once(c, flow_id):
    r = c.post("/v1/webhooks/%s" % flow_id, {}, auth=False)
    assert r.status == 200, r
    run = c.wait_run(r.json()["runId"], ("SUCCEEDED", "FAILED", "INTERNAL_ERROR", "TIMEOUT"), 120)
    assert run["status"] == "SUCCEEDED", run["status"]
    assert len(run["stepRecords"]) == STEPS + 1, len(run["stepRecords"])
    return run["duration"]  # ms, finish - start at the app


def main():
    with Harness("durability-bench") as h:
        redis = h.redis()
        common = {"AP_REDIS_URL": redis, "AP_WORKER_CONCURRENCY": 1, "AP_LOG_LEVEL": "warn",
                  "AP_FLOW_TIMEOUT_SECONDS": 600}
        app = h.flowd("app", "app", env=common)
        c = Client(app.port)
        fl = c.push_flow(many_steps(STEPS))
        wenv = dict(common, AP_APP_URL="http://127.0.0.1:%d" % app.port)
        times = {"durable": [], "not durable": []}
        for rnd in range(ROUNDS):
            for mode in ("durable", "not durable"):
                env = dict(wenv, FLOWD_BENCH_NO_CHECKPOINT="1" if mode == "not durable" else None)
                w = h.flowd("worker-%d-%s" % (rnd, mode.replace(" ", "-")), "worker", env=env)
                run_once(c, fl["id"])  # warm: engine started, statements prepared
                for _ in range(RUNS):
                    times[mode].append(run_once(c, fl["id"]))
                w.stop()
        d = statistics.median(times["durable"])
        nd = statistics.median(times["not durable"])
        per_step_us = (d - nd) * 1000.0 / STEPS
        print("flow of %d code steps, %d runs per mode (%d rounds), SQLite, worker concurrency 1"
              % (STEPS, RUNS * ROUNDS, ROUNDS))
        print("%-14s %12s %12s %14s" % ("mode", "median ms", "min ms", "us per step"))
        for mode in ("durable", "not durable"):
            t = times[mode]
            print("%-14s %12.1f %12.1f %14.1f" % (mode, statistics.median(t), min(t),
                                                  statistics.median(t) * 1000.0 / STEPS))
        print("checkpoint barrier: %.1f us per side-effecting step (target <= %d us); "
              "durable/not durable = %.2fx" % (per_step_us, TARGET_US, d / nd if nd else 0))
        return 0 if per_step_us <= TARGET_US else 1


if __name__ == "__main__":
    if os.environ.get("FLOWD"):
        harness.FLOWD = os.environ["FLOWD"]
    sys.exit(main())
