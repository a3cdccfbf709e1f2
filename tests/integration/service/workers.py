#!/usr/bin/env python3
"""Three `flowd worker` processes with AP_WORKER_CONCURRENCY=5 behind one `flowd app` drain
1,000 runs (issue 4). Each worker's /metrics (on its own AP_PORT) shows runs done by it, the
three add up to 1,000, and none ever had more than 5 engines: flowd_worker_engines_peak <= 5,
and the engine processes counted in /proc while the runs drain agree. Each run's one code step
is one checkpoint in flowd_worker_checkpoint_seconds."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Harness, check, code_step, flow, log, main, parallel,  # noqa: E402
                     wait_for)

N = 1000
WORKERS = 3
CONCURRENCY = 5

# A few milliseconds on a timer: long enough that every slot of every worker gets work, short
# enough that 1,000 runs drain in seconds.
CODE = ("export const code = async (i) => { await new Promise(r => setTimeout(r, 5)); "
        "return { n: i.n + 1 }; }")


def test():
    with Harness("workers") as h:
        redis = h.redis()
        common = {"AP_REDIS_URL": redis, "AP_WORKER_CONCURRENCY": CONCURRENCY,
                  "AP_FLOW_TIMEOUT_SECONDS": 60}
        app = h.flowd("app", "app", env=common)
        c = Client(app.port)
        workers = [h.flowd("worker%d" % i, "worker", env=dict(
            common, AP_APP_URL="http://127.0.0.1:%d" % app.port)) for i in range(WORKERS)]
        fl = c.push_flow(flow("drain", code_step("step_1", CODE, {"n": "{{trigger.body.n}}"})))

        t0 = time.monotonic()
        parallel(8, range(N), lambda n: check(
            c.post("/v1/webhooks/%s" % fl["id"], {"n": n}, auth=False).status == 200,
            "webhook call %d failed", n))
        log("%d runs enqueued in %.2fs", N, time.monotonic() - t0)

        # While they drain, count each worker's engine processes in /proc.
        most = [0] * WORKERS

        def drained():
            for i, w in enumerate(workers):
                most[i] = max(most[i], len(w.engine_pids()))
            done = 0
            for w in workers:
                m = Client(w.port).metrics()
                done += sum(v for k, v in m.items() if k.startswith("flowd_worker_runs_total"))
            return done >= N
        wait_for(drained, 120, "the workers to finish %d runs" % N, interval=0.05)
        log("%d runs drained %.2fs after the first webhook", N, time.monotonic() - t0)

        runs = c.runs(flowId=fl["id"])
        check(len(runs) == N, "%d runs stored, want %d", len(runs), N)
        bad = [(r["id"], r["status"]) for r in runs if r["status"] != "SUCCEEDED"]
        check(not bad, "runs that did not succeed: %s", bad[:10])

        per_worker = []
        for i, w in enumerate(workers):
            m = Client(w.port).metrics()
            done = m.get('flowd_worker_runs_total{status="SUCCEEDED"}', 0)
            peak = m.get("flowd_worker_engines_peak")
            slots = m.get("flowd_worker_slots")
            per_worker.append(int(done))
            log("worker%d: %d runs, engines peak %s (%d seen in /proc), %s slots", i, done, peak,
                most[i], slots)
            check(slots == CONCURRENCY, "worker%d has %s slots", i, slots)
            check(done > 0, "worker%d ran nothing", i)
            check(peak is not None and 1 <= peak <= CONCURRENCY,
                  "worker%d engines peak %s, want 1..%d", i, peak, CONCURRENCY)
            check(most[i] <= CONCURRENCY, "worker%d had %d engines at once", i, most[i])
            check(m.get('flowd_worker_jobs_total{outcome="rejected"}', 0) == 0,
                  "worker%d rejected jobs", i)
            # One code step per run: one checkpoint each, every one in the +Inf bucket.
            ck = m.get("flowd_worker_checkpoint_seconds_count")
            check(ck == done and m.get('flowd_worker_checkpoint_seconds_bucket{le="+Inf"}') == ck
                  and m.get("flowd_worker_checkpoint_seconds_sum", 0) > 0,
                  "worker%d: %s checkpoints for %d runs of one code step", i, ck, done)
        check(sum(per_worker) == N, "the workers' counts add up to %d, want %d",
              sum(per_worker), N)
        # Every run names the worker that ran it, and all three appear.
        sample = parallel(8, [r["id"] for r in runs[:60]], lambda rid: c.run(rid))
        names = {a["worker"] for run in sample for a in run["attemptHistory"]}
        check(all(len(run["attemptHistory"]) == 1 for run in sample), "runs ran twice")
        log("attempts of 60 runs were made by %d distinct workers", len(names))
        for w in workers:
            check(w.stop() == 0, "%s did not exit 0 on SIGTERM", w.name)
        check(app.stop() == 0, "the app did not exit 0 on SIGTERM")


if __name__ == "__main__":
    main(test)
