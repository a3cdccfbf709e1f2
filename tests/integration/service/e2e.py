#!/usr/bin/env python3
"""End to end through `flowd serve` (app + worker + engines, private Redis) on SQLite or, with
--db postgres, on a PostgreSQL cluster started here as the postgres user (issue 4):

  - a webhook → code → return_response flow called 200 times async and 200 times sync: every
    run SUCCEEDED with every step stored as DESIGN.md §5.4 (GET /v1/flow-runs/:id), and each
    sync call answered with the return_response status, headers and body;
  - a flow without return_response answers 204;
  - a flow that outlives AP_WEBHOOK_TIMEOUT_SECONDS answers 504 {"runId"} (and still finishes);
  - an approval flow is PAUSED, resumed through its approval link to SUCCEEDED, and a second
    call of the link answers 410;
  - a 60 s delayFor pauses the run with a delayed BullMQ job due in 60 s; the test moves that
    job's due time to now (the clock, not the logic) and the delayed job resumes the run.

Schedules with two app replicas firing once per tick are covered by the app's own suite
(meson test app_service: tests/integration/app/run.py, test_schedule_two_replicas), against two
real `flowd app` processes on one store.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Client, Harness, check, code_step, flow, log, main, parallel,  # noqa: E402
                     piece_step, return_response, sleep_code, wait_for)

N = 200
WEBHOOK_TIMEOUT_S = 5  # short, yet roomy for the bulk sync calls on a loaded machine
QUEUE = "bull:workerJobs:"

ECHO_CODE = ("export const code = async (inputs) => "
             "({ doubled: inputs.n * 2, tag: inputs.tag + '!' });")


def echo_flow():
    return flow("echo", code_step(
        "step_1", ECHO_CODE, {"n": "{{trigger.body.n}}", "tag": "t{{trigger.body.n}}"},
        return_response("step_2", 201, {"x-run": "n{{trigger.body.n}}", "x-kind": "echo"},
                        {"doubled": "{{step_1.doubled}}", "tag": "{{step_1.tag}}",
                         "query": "{{trigger.queryParams.q}}"})))


def check_record(run, name, typ, status="SUCCEEDED"):
    """A StepOutput of §5.4: {type, status, input, output, duration, errorMessage?}."""
    rec = run["steps"].get(name)
    check(rec is not None, "run %s has no step %s: %s", run["id"], name, json.dumps(run)[:1500])
    for key in ("type", "status", "input", "output", "duration"):
        check(key in rec, "run %s step %s lacks %r: %s", run["id"], name, key, rec)
    check(rec["type"] == typ, "run %s step %s: type %r, want %r", run["id"], name, rec["type"],
          typ)
    check(rec["status"] == status, "run %s step %s: status %r, want %r: %s", run["id"], name,
          rec["status"], status, rec)
    check(isinstance(rec["duration"], (int, float)) and rec["duration"] >= 0,
          "run %s step %s: duration %r", run["id"], name, rec["duration"])
    return rec


def check_echo_run(run, n, sync):
    """The stored run of one echo call with body {"n": n} and query q=<n>."""
    check(run["status"] == "SUCCEEDED", "run %s is %s", run["id"], run["status"])
    for key in ("id", "flowId", "flowVersionId", "startTime", "finishTime", "duration"):
        check(run.get(key) is not None, "run %s lacks %s", run["id"], key)
    check(set(run["steps"]) == {"trigger", "step_1", "step_2"},
          "run %s steps: %s", run["id"], sorted(run["steps"]))
    trig = run["steps"]["trigger"]
    check(trig["status"] == "SUCCEEDED", "run %s trigger: %s", run["id"], trig)
    out = trig["output"]
    check(out["body"] == {"n": n} and out["queryParams"] == {"q": str(n)}
          and out["method"] == "POST" and out["headers"].get("x-test") == "yes",
          "run %s trigger output: %s", run["id"], out)
    s1 = check_record(run, "step_1", "CODE")
    check(s1["input"] == {"n": n, "tag": "t%d" % n}, "run %s step_1 input: %s", run["id"],
          s1["input"])
    check(s1["output"] == {"doubled": 2 * n, "tag": "t%d!" % n}, "run %s step_1 output: %s",
          run["id"], s1["output"])
    s2 = check_record(run, "step_2", "PIECE")
    check(s2["input"]["fields"]["body"] == {"doubled": 2 * n, "tag": "t%d!" % n,
                                            "query": str(n)},
          "run %s step_2 resolved input: %s", run["id"], s2["input"])
    check(s2["output"]["status"] == 201 and s2["output"]["body"]["doubled"] == 2 * n,
          "run %s step_2 output: %s", run["id"], s2["output"])
    check(run["synchronous"] == sync, "run %s synchronous=%s", run["id"], run["synchronous"])


def call_many(c, fl):
    """200 async then 200 sync calls of the echo flow, 8 at a time."""
    hdr = {"X-Test": "yes"}

    def async_call(n):
        r = c.post("/v1/webhooks/%s?q=%d" % (fl["id"], n), {"n": n}, auth=False, headers=hdr)
        check(r.status == 200, "async call %d: %r", n, r)
        run_id = r.json().get("runId")
        check(isinstance(run_id, str) and len(run_id) == 21 and not run_id.isdigit(),
              "async call %d: runId %r", n, run_id)
        return run_id
    t0 = time.monotonic()
    async_ids = parallel(8, range(N), async_call)
    log("%d async calls answered in %.2fs", N, time.monotonic() - t0)
    # The sync calls must not queue behind the async runs: AP_WEBHOOK_TIMEOUT_SECONDS is short.
    wait_for(lambda: len(c.runs(flowId=fl["id"], status="SUCCEEDED")) == N, 60,
             "the async runs to succeed", interval=0.1)
    log("%d async runs SUCCEEDED %.2fs after the first call", N, time.monotonic() - t0)

    def sync_call(n):
        r = c.post("/v1/webhooks/%s/sync?q=%d" % (fl["id"], n), {"n": n}, auth=False,
                   headers=hdr)
        check(r.status == 201, "sync call %d: want the flow's 201, got %r", n, r)
        check(r.headers.get("x-run") == "n%d" % n and r.headers.get("x-kind") == "echo",
              "sync call %d: headers %s", n, r.headers)
        check(r.headers.get("content-type", "").startswith("application/json"),
              "sync call %d: content type %r", n, r.headers.get("content-type"))
        check(r.json() == {"doubled": 2 * n, "tag": "t%d!" % n, "query": str(n)},
              "sync call %d: body %r", n, r.body)
    t0 = time.monotonic()
    parallel(8, range(N, 2 * N), sync_call)
    log("%d sync calls answered with the flow's reply in %.2fs", N, time.monotonic() - t0)
    return async_ids


def test_bulk(c):
    fl = c.push_flow(echo_flow())
    check(fl.get("webhookUrl", "").endswith("/v1/webhooks/" + fl["id"]), "webhookUrl: %s", fl)
    async_ids = call_many(c, fl)

    # Every run of the flow, async and sync, SUCCEEDED with its steps stored.
    def all_done():
        runs = c.runs(flowId=fl["id"])
        return runs if len(runs) == 2 * N and all(
            r["status"] == "SUCCEEDED" for r in runs) else None
    try:
        runs = wait_for(all_done, 60, "the %d runs to succeed" % (2 * N), interval=0.2)
    except Exception:
        runs = c.runs(flowId=fl["id"])
        by = {}
        for r in runs:
            by[r["status"]] = by.get(r["status"], 0) + 1
        log("runs by status: %s", by)
        raise
    ids = {r["id"] for r in runs}
    check(set(async_ids) <= ids, "async run ids missing from the list")

    def verify(run_id):
        run = c.run(run_id)
        n = run["steps"]["trigger"]["output"]["body"]["n"]
        check_echo_run(run, n, n >= N)
        if n >= N:
            check(run.get("response", {}).get("status") == 201, "run %s response: %s", run_id,
                  run.get("response"))
        return n
    ns = parallel(8, sorted(ids), verify)
    check(sorted(ns) == list(range(2 * N)), "the stored runs do not cover every call")
    log("all %d runs SUCCEEDED with trigger, step_1 and step_2 stored as §5.4", 2 * N)


def test_no_response(c):
    fl = c.push_flow(flow("no reply", code_step(
        "step_1", "export const code = async (i) => ({ seen: i.v })", {"v": "{{trigger.body}}"})))
    r = c.post("/v1/webhooks/%s/sync" % fl["id"], {"hello": "world"}, auth=False)
    check(r.status == 204 and r.body == b"", "no return_response: want 204, got %r", r)
    runs = c.runs(flowId=fl["id"])
    check(len(runs) == 1, "one run expected, got %d", len(runs))
    run = c.wait_run(runs[0]["id"], "SUCCEEDED", 10)
    rec = check_record(run, "step_1", "CODE")
    check(rec["output"] == {"seen": {"hello": "world"}}, "step_1 output: %s", rec)
    check("response" not in run or run["response"] is None, "a run without reply has %s",
          run.get("response"))
    log("no return_response: 204")


def test_webhook_timeout(c):
    fl = c.push_flow(flow("slow", code_step(
        "step_1", sleep_code(WEBHOOK_TIMEOUT_S * 1000 + 1500, "{late: true}"),
        next_action=return_response("step_2", 200, {}, {"late": True}))))
    t0 = time.monotonic()
    r = c.post("/v1/webhooks/%s/sync" % fl["id"], {}, auth=False)
    waited = time.monotonic() - t0
    check(r.status == 504, "a flow past AP_WEBHOOK_TIMEOUT_SECONDS: want 504, got %r", r)
    body = r.json()
    check(isinstance(body, dict) and isinstance(body.get("runId"), str),
          "504 body: want {\"runId\"}, got %r", r.body)
    check(WEBHOOK_TIMEOUT_S - 0.2 <= waited <= WEBHOOK_TIMEOUT_S + 1.5,
          "504 after %.2fs, want about %ds", waited, WEBHOOK_TIMEOUT_S)
    run = c.wait_run(body["runId"], "SUCCEEDED", 15)
    check_record(run, "step_2", "PIECE")
    log("sync past AP_WEBHOOK_TIMEOUT_SECONDS: 504 {runId} after %.2fs; the run still "
        "SUCCEEDED", waited)


def test_approval(c, port):
    fl = c.push_flow(flow("approval", piece_step(
        "step_1", "@activepieces/piece-approval", "create_approval_links", {},
        piece_step("step_2", "@activepieces/piece-approval", "wait_for_approval", {},
                   code_step("step_3", "export const code = async (i) => ({ approved: i.a })",
                             {"a": "{{step_2.approved}}"},
                             return_response("step_4", 200, {}, {"ok": "{{step_3.approved}}"}))))))
    r = c.post("/v1/webhooks/%s" % fl["id"], {"order": 7}, auth=False)
    check(r.status == 200, "approval webhook: %r", r)
    run_id = r.json()["runId"]
    run = c.wait_run(run_id, "PAUSED", 15)
    links = check_record(run, "step_1", "PIECE")["output"]
    check_record(run, "step_2", "PIECE", "PAUSED")
    check("step_3" not in run["steps"], "a paused run went on: %s", sorted(run["steps"]))
    link = links["approvalLink"]
    base = "http://127.0.0.1:%d" % port
    check(link.startswith(base + "/v1/flow-runs/%s/waitpoints/" % run_id)
          and link.endswith("?action=approve"), "approval link %r", link)
    check(run.get("waitpoint", {}).get("resumeUrl") == link.split("?")[0],
          "the run's waitpoint %s is not the link's", run.get("waitpoint"))
    time.sleep(0.5)
    check(c.run(run_id)["status"] == "PAUSED", "the run did not stay PAUSED")
    path = link[len(base):]
    r = c.get(path, auth=False)
    check(r.status == 200, "calling the approval link: want 200, got %r", r)
    run = c.wait_run(run_id, "SUCCEEDED", 15)
    check(check_record(run, "step_2", "PIECE")["output"] == {"approved": True},
          "step_2 after approval: %s", run["steps"]["step_2"])
    check(check_record(run, "step_3", "CODE")["output"] == {"approved": True},
          "step_3: %s", run["steps"]["step_3"])
    check(run["steps"]["step_1"]["output"] == links, "step_1 was run again on resume")
    kinds = [a["executionType"] for a in run["attemptHistory"]]
    check(kinds == ["BEGIN", "RESUME"], "attempts: %s", run["attemptHistory"])
    for p in (path, link[len(base):].replace("approve", "disapprove")):
        r = c.get(p, auth=False)
        check(r.status == 410, "calling a used link again: want 410, got %r", r)
    r = c.get("/v1/flow-runs/%s/waitpoints/nosuchwaitpoint" % run_id, auth=False)
    check(r.status == 410, "an unknown waitpoint: want 410, got %r", r)
    log("approval: PAUSED, resumed by its link to SUCCEEDED, second call 410")


def test_delay(c, h, redis_sock):
    fl = c.push_flow(flow("delay", piece_step(
        "step_1", "@activepieces/piece-delay", "delayFor", {"unit": "seconds", "delayFor": 60},
        code_step("step_2", "export const code = async (i) => ({ after: i.d })",
                  {"d": "{{step_1.delayForInMs}}"}))))
    r = c.post("/v1/webhooks/%s" % fl["id"], {}, auth=False)
    check(r.status == 200, "delay webhook: %r", r)
    run_id = r.json()["runId"]
    paused_at = time.time()
    run = c.wait_run(run_id, "PAUSED", 15)
    check_record(run, "step_1", "PIECE", "PAUSED")
    wp = run["waitpoint"]["id"]
    job_id = "%s_%s" % (run_id, wp)

    # The resume is a delayed BullMQ job, due 60 s after the pause.
    def delayed_score():
        s = h.redis_cli(redis_sock, "ZSCORE", QUEUE + "delayed", job_id)
        return int(float(s)) if s else None
    score = delayed_score()
    check(score is not None, "no delayed job %s: delayed = %s", job_id,
          h.redis_cli(redis_sock, "ZRANGE", QUEUE + "delayed", 0, -1))
    due_ms = score // 4096
    ahead = due_ms / 1000.0 - paused_at
    check(55 <= ahead <= 61, "the delayed job is due %.1fs after the pause, want 60s", ahead)
    data = json.loads(h.redis_cli(redis_sock, "HGET", QUEUE + job_id, "data"))
    check(data.get("executionType") == "RESUME" and data.get("runId") == run_id,
          "delayed job data: %s", data)
    time.sleep(1)
    check(c.run(run_id)["status"] == "PAUSED", "the run did not stay PAUSED")

    # Shorten the clock: the same job becomes due now (BullMQ's delayed score and marker).
    now_ms = int(time.time() * 1000)
    new_score = now_ms * 4096 + (score % 4096)
    h.redis_cli(redis_sock, "ZADD", QUEUE + "delayed", "XX", new_score, job_id)
    h.redis_cli(redis_sock, "ZADD", QUEUE + "marker", now_ms, "1")
    run = c.wait_run(run_id, "SUCCEEDED", 20)
    s1 = check_record(run, "step_1", "PIECE")
    check(s1["output"] == {"delayForInMs": 60000, "success": True}, "step_1 output: %s", s1)
    check(check_record(run, "step_2", "CODE")["output"] == {"after": 60000}, "step_2: %s",
          run["steps"]["step_2"])
    kinds = [(a["executionType"], a["jobId"]) for a in run["attemptHistory"]]
    check(kinds == [("BEGIN", run_id), ("RESUME", job_id)], "attempts: %s", kinds)
    log("delayFor 60 s: PAUSED with a delayed job due in %.1fs, resumed by it to SUCCEEDED",
        ahead)


def test(db):
    with Harness("e2e-" + db) as h:
        env = {"AP_WEBHOOK_TIMEOUT_SECONDS": WEBHOOK_TIMEOUT_S, "AP_WORKER_CONCURRENCY": 5,
               "AP_FLOW_TIMEOUT_SECONDS": 60}
        if db == "postgres":
            env.update({"AP_DB_TYPE": "POSTGRES", "AP_POSTGRES_URL": h.postgres()})
        # A Redis of our own (not the embedded one) so that the test can look at the queue.
        redis_url = h.redis()
        env["AP_REDIS_URL"] = redis_url
        app = h.flowd("serve", "serve", env=env)
        c = Client(app.port)
        health = c.get("/v1/health", auth=False).json()
        check(health.get("store") == ("postgres" if db == "postgres" else "sqlite"),
              "health: %s", health)
        test_bulk(c)
        test_no_response(c)
        test_webhook_timeout(c)
        test_approval(c, app.port)
        test_delay(c, h, redis_url[len("unix://"):])
        # Nothing is left running, and the worker saw no job it could not use.
        left = c.runs(status="QUEUED,RUNNING")
        check(not left, "runs left open: %s", [(r["id"], r["status"]) for r in left])
        m = c.metrics()
        check(m.get('flowd_worker_jobs_total{outcome="rejected"}', 0) == 0, "rejected jobs")
        check(app.stop() == 0, "flowd serve did not exit 0 on SIGTERM")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    opts = ap.parse_args()
    main(lambda: test(opts.db))
