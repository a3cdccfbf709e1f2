#!/usr/bin/env python3
"""What durability costs: the per-step overhead of the checkpoint barrier (shared/DESIGN.md §5.2).

Method. One flow of STEPS cheap code steps (each returns a small object: a side-effecting step
type, so each one is a checkpoint barrier), run through the real service on SQLite, worker
concurrency 1, a private redis-server, in both topologies: `flowd serve` (app and worker in one
process; the worker reaches the app in process) and `flowd app` + `flowd worker` (HTTP over
loopback between them). The same app, database, flow and binary serve both modes; only the
worker differs:
  durable      the normal worker: after every step the engine waits while the worker posts the
               step record to the app and the app commits it (app 2xx), then acks;
  not durable  the same worker with FLOWD_BENCH_NO_CHECKPOINT=1: the engine waits for no ack and
               the worker posts every record at once with the result, as a worker with no
               checkpoints would.
Each run's time is the app's own: from the attempt's start (/start committed) to its result
(committed), so both modes include storing every record. Runs go one at a time, rounds
alternate between the modes (a worker of the other mode is started for each round), and each
mode's figure is the median over its runs. The overhead per step is the difference of the
medians divided by STEPS. Target: <= 300 us per side-effecting step (printed as met or
MISSED; the script fails only when a run does).

While it waits for the ack, the engine creates the JavaScript context its next code step will
use (js_prepare_code_context), so part of the barrier overlaps work the step needs anyway; the
not durable engine waits for nothing and creates each context on the step's path. The barrier
by itself is printed too: the worker's mean checkpoint round trip (from the step's record to
the ack: post, commit, answer), from its flowd_worker_checkpoint_seconds histogram.

The machine is shared: every barrier crosses three processes (engine, worker, app), and each
crossing waits for a core when others are busy, so under load the wall-clock figures grow with
the load average, which is printed. Two figures do not: the difference of the fastest runs of
each mode (the barrier on a core that was free), and the CPU time that app, worker and engine
spent per step in each mode (from /proc, over the same runs).
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


TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids):
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


def run_once(c, flow_id):
    r = c.post("/v1/webhooks/%s" % flow_id, {}, auth=False)
    assert r.status == 200, r
    run = c.wait_run(r.json()["runId"], ("SUCCEEDED", "FAILED", "INTERNAL_ERROR", "TIMEOUT"), 120)
    assert run["status"] == "SUCCEEDED", run["status"]
    assert len(run["stepRecords"]) == STEPS + 1, len(run["stepRecords"])
    return run["duration"]  # ms, finish - start at the app


def checkpoints(port):
    """(seconds, count) of the worker's checkpoint histogram so far."""
    m = Client(port).metrics()
    return (m.get("flowd_worker_checkpoint_seconds_sum", 0.0),
            m.get("flowd_worker_checkpoint_seconds_count", 0.0))


def measure(topology, start, c, flow_id):
    """Runs ROUNDS rounds of RUNS runs per mode; start(mode, rnd) starts the processes of one
    mode and returns (pids to account CPU to, stop function, port of the worker's metrics)."""
    modes = ("durable", "not durable")
    times = {m: [] for m in modes}
    cpu = {m: 0.0 for m in modes}
    rtt = [0.0, 0.0]
    for rnd in range(ROUNDS):
        for mode in modes:
            procs, stop, metrics_port = start(mode, rnd)
            run_once(c(), flow_id)  # warm: engine started, statements prepared
            pids = [p.pid for p in procs] + [e for p in procs for e in p.engine_pids()]
            c0 = cpu_s(pids)
            k0 = checkpoints(metrics_port)
            for _ in range(RUNS):
                times[mode].append(run_once(c(), flow_id))
            cpu[mode] += cpu_s(pids) - c0
            if mode == "durable":
                k1 = checkpoints(metrics_port)
                rtt = [rtt[0] + k1[0] - k0[0], rtt[1] + k1[1] - k0[1]]
            stop()
    n = RUNS * ROUNDS
    med = {m: statistics.median(times[m]) for m in modes}
    fast = {m: min(times[m]) for m in modes}
    cpu_us = {m: cpu[m] * 1e6 / (n * STEPS) for m in modes}
    barrier = (med["durable"] - med["not durable"]) * 1000.0 / STEPS
    fast_us = (fast["durable"] - fast["not durable"]) * 1000.0 / STEPS
    print("%s:" % topology)
    print("  %-12s %11s %11s %15s %15s" % ("mode", "median ms", "fastest ms", "wall us/step",
                                          "CPU us/step"))
    for m in modes:
        print("  %-12s %11.1f %11.1f %15.1f %15.1f" % (m, med[m], fast[m],
                                                     med[m] * 1000.0 / STEPS, cpu_us[m]))
    print("  checkpoint barrier per side-effecting step: %.1f us (medians), %.1f us (fastest "
          "runs), %.1f us of CPU; durable/not durable = %.2fx; target <= %d us: %s (medians), "
          "%s (fastest runs)"
          % (barrier, fast_us, cpu_us["durable"] - cpu_us["not durable"],
             med["durable"] / med["not durable"] if med["not durable"] else 0, TARGET_US,
             "met" if barrier <= TARGET_US else "MISSED",
             "met" if fast_us <= TARGET_US else "MISSED"))
    print("  the barrier by itself: mean checkpoint round trip %.1f us over %d checkpoints "
          "(worker: record -> app commit -> ack); the engine prepares its next JavaScript "
          "context meanwhile" % (rtt[0] * 1e6 / rtt[1] if rtt[1] else 0, rtt[1]))


def main():
    with Harness("durability-bench") as h:
        redis = h.redis()
        common = {"AP_REDIS_URL": redis, "AP_WORKER_CONCURRENCY": 1, "AP_LOG_LEVEL": "warn",
                  "AP_FLOW_TIMEOUT_SECONDS": 600}
        load0 = open("/proc/loadavg").read().split()[0]
        print("flow of %d code steps, %d runs per mode (%d rounds), SQLite, worker concurrency 1"
              % (STEPS, RUNS * ROUNDS, ROUNDS))

        # flowd serve: app and worker in one process, the worker reaching the app in process.
        state = {}

        def start_serve(mode, rnd):
            env = dict(common, FLOWD_BENCH_NO_CHECKPOINT="1" if mode == "not durable" else None)
            if "serve" in state:
                p = state["serve"]
                p.env = h.flowd_env(p.config_dir, p.port, env)
                p = h.restart(p)
            else:
                p = h.flowd("serve", "serve", env=env)
            state["serve"] = p
            return [p], lambda: p.stop(), p.port
        (p,), _, _ = start_serve("durable", 0)
        fl = Client(p.port).push_flow(many_steps(STEPS))
        p.stop()
        measure("flowd serve (worker and app in one process)", start_serve,
                lambda: Client(state["serve"].port), fl["id"])

        # flowd app + flowd worker: every checkpoint an HTTP request over loopback.
        app = h.flowd("app", "app", env=common)
        c = Client(app.port)
        fl = c.push_flow(many_steps(STEPS))
        wenv = dict(common, AP_APP_URL="http://127.0.0.1:%d" % app.port)

        def start_worker(mode, rnd):
            env = dict(wenv, FLOWD_BENCH_NO_CHECKPOINT="1" if mode == "not durable" else None)
            w = h.flowd("worker-%d-%s" % (rnd, mode.replace(" ", "-")), "worker", env=env)
            return [app, w], lambda: w.stop(), w.port
        measure("flowd app + flowd worker (HTTP between them)", start_worker, lambda: c,
                fl["id"])
        print("load average %s at the start, %s at the end, on %d cores: other work on the "
              "machine lengthens every crossing between processes"
              % (load0, open("/proc/loadavg").read().split()[0], os.cpu_count()))
        return 0


if __name__ == "__main__":
    if os.environ.get("FLOWD"):
        harness.FLOWD = os.environ["FLOWD"]
    sys.exit(main())
