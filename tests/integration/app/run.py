#!/usr/bin/env python3
"""Integration tests of `flowd app` against a real redis-server, on SQLite and on a real
PostgreSQL started here. A fake worker (this script) drives the /v1/engine endpoints the way
the worker does (src/app/engine_api.h), so that every endpoint is covered without the engine.

Covers: flows CRUD and validation (400 with the JSON path), webhooks async and sync (the
return_response reply, 204, 504), the BullMQ job a webhook enqueues (inspected in Redis), body
parsing (JSON, form, text; invalid JSON 400; > 5 MiB 413), catch_webhook auth (basic, header,
hmac: 401), the API key (401), engine tokens (forged or expired 401), attempts and superseded
results (409), pause and resume (410 when used or unknown, a resume before the pause kept), a
delay as a delayed job, runs list/show/retry/cancel, the piece store, /metrics, /v1/health, the
CLI clients, schedules with two app replicas firing once per tick, the reaper, and SIGTERM.
"""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402

PREFIX = "bull:workerJobs:"


def webhook_trigger(auth=None):
    inp = {"authType": "none"}
    inp.update(auth or {})
    return {"name": "trigger", "type": "PIECE_TRIGGER", "displayName": "Catch",
            "settings": {"pieceName": "@activepieces/piece-webhook", "pieceVersion": "0.1.0",
                         "triggerName": "catch_webhook", "input": inp}}


def code_step(name, nxt=None):
    s = {"name": name, "type": "CODE", "displayName": name,
         "settings": {"input": {}, "sourceCode": {"code": "export const code = async () => 1",
                                                  "packageJson": "{}"}}}
    if nxt:
        s["nextAction"] = nxt
    return s


def flow(name="f", auth=None, steps=2):
    t = webhook_trigger(auth)
    nxt = None
    for i in range(steps, 0, -1):
        nxt = code_step("step_%d" % i, nxt)
    if nxt:
        t["nextAction"] = nxt
    return {"displayName": name, "trigger": t}


def schedule_flow(cron):
    return {"displayName": "sched", "trigger": {
        "name": "trigger", "type": "PIECE_TRIGGER", "displayName": "Every",
        "settings": {"pieceName": "@activepieces/piece-schedule", "pieceVersion": "0.1.0",
                     "triggerName": "cron_expression",
                     "input": {"cronExpression": cron, "timezone": "Europe/Paris"}},
        "nextAction": code_step("step_1")}}


class Ctx:
    def __init__(self, db, redis_port):
        self.db = db
        self.redis_port = redis_port
        self.redis = h.Redis(redis_port)
        self.app = h.App(redis_port, db, env={"AP_WEBHOOK_TIMEOUT_SECONDS": "2"})

    def push(self, f):
        st, body, _ = self.app.api("POST", "/v1/flows", f)
        assert st == 201, (st, body)
        return body

    def job(self, job_id):
        return self.redis.hgetall(PREFIX + job_id)

    # a fake worker
    def start(self, run_id, job_id=None, delivery=None, kind="BEGIN", worker="w-test"):
        body = {"jobId": job_id or run_id, "workerId": worker, "executionType": kind}
        if delivery:
            body["delivery"] = delivery
        return self.app.engine("POST", "/v1/engine/runs/%s/start" % run_id, body, run_id=run_id)

    def post(self, run_id, op, body):
        return self.app.engine("POST", "/v1/engine/runs/%s/%s" % (run_id, op), body,
                               run_id=run_id)

    def run(self, run_id):
        st, body, _ = self.app.api("GET", "/v1/flow-runs/" + run_id)
        assert st == 200, (st, body)
        return body


def record(status="SUCCEEDED", output=1, duration=2, type_="CODE"):
    return {"type": type_, "status": status, "input": {}, "output": output,
            "duration": duration}


def complete_run(c, run_id, response=None, job_id=None):
    """Runs run_id to SUCCEEDED as a worker would: start, one checkpoint, response, result."""
    st, ctx, _ = c.start(run_id, job_id=job_id, delivery=(job_id or run_id) + ":1")
    assert st == 200, (st, ctx)
    a = ctx["attempt"]
    st, body, _ = c.post(run_id, "steps", {"attempt": a, "steps": [
        {"path": "step_1", "record": record()}]})
    assert st == 200, (st, body)
    if response:
        st, body, _ = c.post(run_id, "response", {"attempt": a, "response": response})
        assert st == 200 and body["stored"], (st, body)
    st, body, _ = c.post(run_id, "result", {"attempt": a, "status": "SUCCEEDED",
                                            "steps": {"step_1": record()}, "duration": 5})
    assert st == 200 and body["status"] == "SUCCEEDED", (st, body)
    return ctx


# ---------------------------------------------------------------- tests

def test_health_and_auth(c):
    st, body, _ = h.request(c.app.port, "GET", "/v1/health")
    assert st == 200 and body["status"] == "ok", body
    for key in ("wrong", ""):
        st, body, hd = c.app.api("GET", "/v1/flows", key=key)
        assert st == 401 and "error" in body, (st, body)
    st, body, _ = h.request(c.app.port, "GET", "/v1/flow-runs")
    assert st == 401, st
    st, body, _ = h.request(c.app.port, "GET", "/nothing/here")
    assert st == 404, st


def test_flows_crud(c):
    f = c.push(flow("crud"))
    assert f["webhookUrl"].endswith("/v1/webhooks/" + f["id"]), f
    assert f["version"]["number"] == 1 and f["version"]["trigger"]["name"] == "trigger"
    st, got, _ = c.app.api("GET", "/v1/flows/" + f["id"])
    assert st == 200 and got["displayName"] == "crud"
    st, upd, _ = c.app.api("PUT", "/v1/flows/" + f["id"], flow("crud2", steps=1))
    assert st == 200 and upd["version"]["number"] == 2 and upd["displayName"] == "crud2", upd
    assert upd["version"]["id"] != f["version"]["id"]
    st, page, _ = c.app.api("GET", "/v1/flows?limit=1000")
    assert st == 200 and any(x["id"] == f["id"] for x in page["data"])
    # an exported template is accepted too
    st, t, _ = c.app.api("POST", "/v1/flows", {"name": "tpl", "template": flow("from-tpl")})
    assert st == 201 and t["displayName"] == "from-tpl", (st, t)
    st, body, _ = c.app.api("DELETE", "/v1/flows/" + f["id"])
    assert st == 200, (st, body)
    st, body, _ = c.app.api("GET", "/v1/flows/" + f["id"])
    assert st == 404, st
    st, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    assert st == 404, st


def test_invalid_flow(c):
    bad = flow("bad")
    bad["trigger"]["nextAction"]["settings"]["sourceCode"] = 7
    st, body, _ = c.app.api("POST", "/v1/flows", bad)
    assert st == 400, (st, body)
    assert body["path"] == "trigger.nextAction.settings.sourceCode", body
    assert body["error"].startswith("trigger.nextAction.settings.sourceCode:"), body
    st, body, _ = c.app.api("POST", "/v1/flows", None, headers={"Content-Type": "application/json"})
    assert st == 400, st
    st, body, _ = h.request(c.app.port, "POST", "/v1/flows", raw=b"{nope",
                            headers={"Authorization": "Bearer " + c.app.api_key,
                                     "Content-Type": "application/json"})
    assert st == 400 and "JSON" in body["error"], body
    bad_cron = schedule_flow("61 * * * *")
    st, body, _ = c.app.api("POST", "/v1/flows", bad_cron)
    assert st == 400 and body["path"] == "trigger.settings.input.cronExpression", body
    empty = {"displayName": "draft", "trigger": {"name": "trigger", "type": "EMPTY",
                                                  "displayName": "x", "settings": {}}}
    st, body, _ = c.app.api("POST", "/v1/flows", empty)
    assert st == 400, (st, body)


def test_webhook_enqueues_bullmq_job(c):
    f = c.push(flow("hook"))
    st, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/%s?a=1&b=x%%20y" % f["id"],
                            {"x": [1, 2]}, {"X-Custom": "v"})
    assert st == 200, (st, body)
    run_id = body["runId"]
    assert len(run_id) == 21 and run_id.isalnum() and not run_id.isdigit()
    job = c.job(run_id)
    assert job["name"] == "EXECUTE_FLOW", job
    data = json.loads(job["data"])
    assert data == {"schemaVersion": 1, "runId": run_id, "flowId": f["id"],
                    "flowVersionId": f["version"]["id"], "executionType": "BEGIN",
                    "synchronous": False}, data
    opts = json.loads(job["opts"])
    assert opts["jobId"] == run_id and opts["removeOnComplete"] is True, opts
    assert opts["removeOnFail"] == {"age": 7 * 24 * 3600}, opts
    assert run_id in c.redis("LRANGE", PREFIX + "wait", 0, -1)
    events = c.redis("XRANGE", PREFIX + "events", "-", "+")
    assert any(e[1][:4] == ["event", "added", "jobId", run_id] for e in events), events[-3:]
    run = c.run(run_id)
    assert run["status"] == "QUEUED" and run["flowVersionId"] == f["version"]["id"]
    st, ctx, _ = c.start(run_id)
    trig = ctx["triggerOutput"]
    assert trig["method"] == "POST" and trig["body"] == {"x": [1, 2]}, trig
    assert trig["queryParams"] == {"a": "1", "b": "x y"}, trig
    assert trig["headers"]["x-custom"] == "v", trig


def test_webhook_bodies(c):
    f = c.push(flow("bodies"))
    url = "/v1/webhooks/" + f["id"]
    cases = [
        (b"a=1&b=two+words", "application/x-www-form-urlencoded", {"a": "1", "b": "two words"}),
        (b"plain text", "text/plain", "plain text"),
        (b"", "application/json", {}),
        (b'"just a string"', "application/vnd.api+json", "just a string"),
    ]
    for raw, ct, want in cases:
        st, body, _ = h.request(c.app.port, "PUT", url, raw=raw, headers={"Content-Type": ct})
        assert st == 200, (st, body)
        st, ctx, _ = c.start(body["runId"])
        assert ctx["triggerOutput"]["body"] == want, (ct, ctx["triggerOutput"])
        assert ctx["triggerOutput"]["method"] == "PUT"
    before = c.redis("LLEN", PREFIX + "wait")
    st, body, _ = h.request(c.app.port, "POST", url, raw=b'{"broken":',
                            headers={"Content-Type": "application/json"})
    assert st == 400 and "JSON" in body["error"], (st, body)
    big = b"x" * (5 * 1024 * 1024 + 1)
    st, body, _ = h.request(c.app.port, "POST", url, raw=big,
                            headers={"Content-Type": "text/plain"})
    assert st == 413, st
    # a client that waits for 100-continue is refused before it sends the body
    import socket
    s = socket.create_connection(("127.0.0.1", c.app.port))
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (url, len(big))).encode())
    head = s.recv(4096).decode()
    s.close()
    assert head.startswith("HTTP/1.1 413"), head
    assert c.redis("LLEN", PREFIX + "wait") == before, "a refused request enqueued a job"
    st, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/NoSuchFlow123", {})
    assert st == 404, st


def test_webhook_auth(c):
    fb = c.push(flow("basic", {"authType": "basic",
                               "authFields": {"username": "u", "password": "p:w"}}))
    fh = c.push(flow("header", {"authType": "header",
                                "authFields": {"headerName": "X-Token", "headerValue": "s3"}}))
    fm = c.push(flow("hmac", {"authType": "hmac",
                              "authFields": {"hmacSecret": "k", "hmacHeaderName": "x-sig",
                                             "hmacSignaturePrefix": "sha256="}}))
    import base64
    good = "Basic " + base64.b64encode(b"u:p:w").decode()
    bad = "Basic " + base64.b64encode(b"u:nope").decode()
    body = b'{"a":1}'
    sig = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    cases = [
        (fb, {"Authorization": good}, 200), (fb, {"Authorization": bad}, 401), (fb, {}, 401),
        (fh, {"X-Token": "s3"}, 200), (fh, {"X-Token": "s4"}, 401), (fh, {}, 401),
        (fm, {"x-sig": sig}, 200), (fm, {"x-sig": sig[:-1] + "0"}, 401), (fm, {}, 401),
    ]
    for f, hdrs, want in cases:
        hdrs = dict(hdrs, **{"Content-Type": "application/json"})
        before = c.redis("LLEN", PREFIX + "wait")
        st, resp, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], raw=body,
                                headers=hdrs)
        assert st == want, (f["displayName"], hdrs, st, resp)
        after = c.redis("LLEN", PREFIX + "wait")
        assert after == before + (1 if want == 200 else 0), "401 must start no run"


def sync_call(c, path, result, method="POST", body=None):
    def go():
        result.append(h.request(c.app.port, method, path, body if body is not None else {},
                                timeout=30))
    t = threading.Thread(target=go)
    t.start()
    return t


def wait_job(c, flow_id):
    """The run id of the newest job of flow_id in `wait`."""
    def find():
        for jid in c.redis("LRANGE", PREFIX + "wait", 0, -1):
            d = c.job(jid).get("data")
            if d and json.loads(d)["flowId"] == flow_id:
                return jid
        return None
    return h.wait_until(find, what="a job of flow " + flow_id)


def test_sync_webhooks(c):
    f = c.push(flow("sync"))
    # the return_response reply
    out = []
    t = sync_call(c, "/v1/webhooks/%s/sync" % f["id"], out)
    run_id = wait_job(c, f["id"])
    assert json.loads(c.job(run_id)["data"])["synchronous"] is True
    complete_run(c, run_id, {"status": 201, "headers": {"x-reply": "yes",
                                                        "content-type": "application/json"},
                             "body": {"ok": True}})
    t.join()
    st, body, hd = out[0]
    assert st == 201 and body == {"ok": True} and hd["x-reply"] == "yes", out
    c.redis("LREM", PREFIX + "wait", 0, run_id)
    # no return_response: 204
    out = []
    t = sync_call(c, "/v1/webhooks/%s/sync" % f["id"], out)
    run_id = wait_job(c, f["id"])
    complete_run(c, run_id)
    t.join()
    assert out[0][0] == 204 and out[0][1] is None, out
    c.redis("LREM", PREFIX + "wait", 0, run_id)
    # nobody runs it: 504 with the run id after AP_WEBHOOK_TIMEOUT_SECONDS (2 s here)
    t0 = time.time()
    st, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/%s/sync" % f["id"], {})
    took = time.time() - t0
    assert st == 504 and len(body["runId"]) == 21, (st, body)
    assert 1.5 < took < 5, took
    c.redis("LREM", PREFIX + "wait", 0, body["runId"])
    # a text reply keeps its bytes
    out = []
    t = sync_call(c, "/v1/webhooks/%s/sync" % f["id"], out)
    run_id = wait_job(c, f["id"])
    complete_run(c, run_id, {"status": 200, "headers": {"content-type": "text/csv"},
                             "body": "a,b\n1,2"})
    t.join()
    st, body, hd = out[0]
    assert st == 200 and body == "a,b\n1,2" and hd["content-type"] == "text/csv", out
    c.redis("LREM", PREFIX + "wait", 0, run_id)


def test_engine_tokens(c):
    f = c.push(flow("tok"))
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    run_id = body["runId"]
    path = "/v1/engine/runs/%s/start" % run_id
    forged = h.mint_token("not-the-secret", run_id)
    expired = h.mint_token(c.app.jwt_secret, run_id, exp=int(time.time()) - 5,
                           iat=int(time.time()) - 100)
    for tok in (forged, expired, "garbage", forged.rsplit(".", 1)[0] + "."):
        st, body, _ = c.app.engine("POST", path, {"jobId": run_id}, token=tok)
        assert st == 401, (tok, st, body)
    st, body, _ = h.request(c.app.port, "POST", path, {"jobId": run_id})
    assert st == 401, st
    other = h.mint_token(c.app.jwt_secret, "SomeOtherRunId1234567")
    st, body, _ = c.app.engine("POST", path, {"jobId": run_id}, token=other)
    assert st == 403, st
    st, body, _ = c.app.engine("POST", "/v1/engine/runs/NoSuchRun/start", {"jobId": "x"},
                               run_id="NoSuchRun")
    assert st == 404, (st, body)


def test_attempts_and_replay(c):
    f = c.push(flow("attempts"))
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    run_id = body["runId"]
    st, a1, _ = c.start(run_id, delivery=run_id + ":1", worker="w-one")
    st2, again, _ = c.start(run_id, delivery=run_id + ":1", worker="w-one")
    assert a1["attempt"] == 1 and again["attempt"] == 1, (a1, again)
    assert a1["steps"] == {} and a1["resume"] is None
    loop_rec = {"type": "LOOP_ON_ITEMS", "status": "RUNNING", "input": {}, "output": {}}
    st, body, _ = c.post(run_id, "steps", {"attempt": 1, "steps": [
        {"path": "step_1", "record": record(output={"v": 1})},
        {"path": "loop_1[1].inner", "record": record(output="i1")},
        {"path": "loop_1[2].inner", "record": record(output="i2")}]})
    assert st == 200, (st, body)
    # a second delivery (the first worker stalled) replays what was persisted
    st, a2, _ = c.start(run_id, delivery=run_id + ":2", worker="w-two")
    assert a2["attempt"] == 2, a2
    steps = a2["steps"]
    assert steps["step_1"]["output"] == {"v": 1}, steps
    its = steps["loop_1"]["output"]["iterations"]
    assert [x["inner"]["output"] for x in its] == ["i1", "i2"], steps
    del loop_rec
    # the superseded attempt can write nothing more
    st, body, _ = c.post(run_id, "steps", {"attempt": 1, "steps": [
        {"path": "step_2", "record": record()}]})
    assert st == 409 and body["status"] == "RUNNING", (st, body)
    st, body, _ = c.post(run_id, "result", {"attempt": 1, "status": "SUCCEEDED"})
    assert st == 409, (st, body)
    # the worker reports what its engine replayed with its next checkpoint
    st, body, _ = c.post(run_id, "steps", {"attempt": 2, "steps": [
        {"path": "step_2", "record": record(duration=7)}],
        "replayed": ["step_1", "loop_1[1].inner", "loop_1[2].inner"]})
    assert st == 200
    res = {"attempt": 2, "status": "SUCCEEDED", "steps": {"step_1": record(), "step_2": record()}}
    assert c.post(run_id, "result", res)[0] == 200
    assert c.post(run_id, "result", res)[0] == 200  # retried post
    st, body, _ = c.post(run_id, "result", dict(res, status="FAILED"))
    assert st == 409, (st, body)
    st, body, _ = c.start(run_id, delivery=run_id + ":3")
    assert st == 409 and body["status"] == "SUCCEEDED", (st, body)
    run = c.run(run_id)
    assert run["status"] == "SUCCEEDED" and run["attempts"] == 2
    hist = run["attemptHistory"]
    assert [x["worker"] for x in hist] == ["w-one", "w-two"], hist
    assert hist[0]["status"] == "ABANDONED" and hist[1]["status"] == "SUCCEEDED", hist
    assert hist[1]["replayedSteps"] == 3 and hist[1]["executedSteps"] == ["step_2"], hist
    assert hist[0]["replayedPaths"] == [] and sorted(hist[1]["replayedPaths"]) == [
        "loop_1[1].inner", "loop_1[2].inner", "step_1"], hist
    recs = {r["path"]: r for r in run["stepRecords"]}
    assert recs["step_1"]["executedInAttempt"] == 1 and recs["step_1"]["replayedInAttempts"] == [2]
    assert recs["step_2"]["executedInAttempt"] == 2 and recs["step_2"]["replayedInAttempts"] == []
    # a retried attempt: INTERNAL_ERROR, not final, back to QUEUED for the job's retry
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    r2 = body["runId"]
    _, ctx, _ = c.start(r2, delivery=r2 + ":1")
    st, body, _ = c.post(r2, "result", {"attempt": 1, "status": "INTERNAL_ERROR", "final": False})
    assert st == 200 and body["status"] == "QUEUED", (st, body)
    _, ctx, _ = c.start(r2, delivery=r2 + ":2")
    assert ctx["attempt"] == 2


def test_pause_resume(c):
    f = c.push(flow("approval"))
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    run_id = body["runId"]
    _, ctx, _ = c.start(run_id, delivery=run_id + ":1")
    wp = {"id": "WaitpointForApproval1", "type": "WEBHOOK", "stepName": "approve",
          "stepPath": "approve", "resumeUrl": "x"}
    paused = dict(record(status="PAUSED", output={}), waitpoint=wp)
    st, body, _ = c.post(run_id, "pause", {"attempt": 1, "waitpoint": wp,
                                           "records": [{"path": "approve", "record": paused}]})
    assert st == 200 and body["status"] == "PAUSED", (st, body)
    st, body, _ = c.post(run_id, "result", {"attempt": 1, "status": "PAUSED", "waitpoint": wp})
    assert st == 200, (st, body)
    run = c.run(run_id)
    assert run["status"] == "PAUSED" and run["waitpoint"]["id"] == wp["id"], run
    url = "/v1/flow-runs/%s/waitpoints/%s" % (run_id, wp["id"])
    assert run["waitpoint"]["resumeUrl"].endswith(url)
    st, _, _ = h.request(c.app.port, "GET", "/v1/flow-runs/%s/waitpoints/Unknown" % run_id)
    assert st == 410, st
    st, body, _ = h.request(c.app.port, "GET", url + "?action=approve")
    assert st == 200 and body["status"] == "RESUMED", (st, body)
    job_id = run_id + "_" + wp["id"]
    job = c.job(job_id)
    data = json.loads(job["data"])
    assert data["executionType"] == "RESUME" and data["runId"] == run_id, data
    st, body, _ = h.request(c.app.port, "GET", url + "?action=approve")
    assert st == 410, st
    _, ctx, _ = c.start(run_id, job_id=job_id, delivery=job_id + ":1", kind="RESUME")
    assert ctx["resume"]["waitpointId"] == wp["id"] and ctx["resume"]["stepPath"] == "approve"
    assert ctx["resume"]["payload"]["queryParams"] == {"action": "approve"}, ctx["resume"]
    assert ctx["steps"]["approve"]["status"] == "PAUSED"
    assert c.post(run_id, "result", {"attempt": 2, "status": "SUCCEEDED"})[0] == 200
    # a resume that arrives before the pause is persisted is kept
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    r2 = body["runId"]
    c.start(r2, delivery=r2 + ":1")
    early = "/v1/flow-runs/%s/waitpoints/EarlyWaitpoint12345" % r2
    st, body, _ = h.request(c.app.port, "POST", early, {"n": 1})
    assert st == 200 and body["status"] == "ACCEPTED", (st, body)
    st, body, _ = h.request(c.app.port, "POST", early, {"n": 2})
    assert st == 410, st
    wp2 = dict(wp, id="EarlyWaitpoint12345")
    st, body, _ = c.post(r2, "result", {"attempt": 1, "status": "PAUSED", "waitpoint": wp2})
    assert st == 200 and body["status"] == "QUEUED", (st, body)
    assert c.job(r2 + "_EarlyWaitpoint12345")["name"] == "EXECUTE_FLOW"
    _, ctx, _ = c.start(r2, job_id=r2 + "_EarlyWaitpoint12345", kind="RESUME")
    assert ctx["resume"]["payload"]["body"] == {"n": 1}, ctx["resume"]


def test_delay(c):
    f = c.push(flow("delay"))
    _, body, _ = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})
    run_id = body["runId"]
    c.start(run_id)
    at = int(time.time() * 1000) + 60000
    wp = {"id": "DelayWaitpoint1234567", "type": "DELAY", "resumeAt": at, "stepPath": "wait"}
    st, body, _ = c.post(run_id, "result", {"attempt": 1, "status": "PAUSED", "waitpoint": wp})
    assert st == 200 and body["status"] == "PAUSED", (st, body)
    job_id = run_id + "_" + wp["id"]
    job = c.job(job_id)
    assert 55000 <= int(job["delay"]) <= 60000, job
    assert c.redis("ZSCORE", PREFIX + "delayed", job_id) is not None
    assert json.loads(job["data"])["executionType"] == "RESUME"
    st, body, _ = h.request(c.app.port, "POST",
                            "/v1/flow-runs/%s/waitpoints/%s" % (run_id, wp["id"]), {})
    assert st == 409, (st, body)
    _, ctx, _ = c.start(run_id, job_id=job_id, kind="RESUME")
    assert ctx["attempt"] == 2 and ctx["resume"]["payload"] == {}, ctx["resume"]


def test_runs_endpoints(c):
    f = c.push(flow("runs"))
    ids = []
    for _ in range(3):
        # Apart in time: runs created in the same millisecond are listed in id order.
        time.sleep(0.005)
        ids.append(h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})[1]["runId"])
    st, page, _ = c.app.api("GET", "/v1/flow-runs?flowId=%s&limit=2" % f["id"])
    assert st == 200 and [r["id"] for r in page["data"]] == ids[::-1][:2], page
    st, page2, _ = c.app.api("GET", "/v1/flow-runs?flowId=%s&limit=2&cursor=%s" % (
        f["id"], h.quote(page["next"])))
    assert [r["id"] for r in page2["data"]] == [ids[0]] and page2["next"] is None, page2
    st, body, _ = c.app.api("GET", "/v1/flow-runs?status=BOGUS")
    assert st == 400, st
    st, body, _ = c.app.api("GET", "/v1/flow-runs?limit=0")
    assert st == 400, st
    # cancel a QUEUED run; a RUNNING one cannot be
    st, body, _ = c.app.api("POST", "/v1/flow-runs/%s/cancel" % ids[0], {})
    assert st == 200 and body["status"] == "CANCELED", (st, body)
    st, body, _ = c.start(ids[0])
    assert st == 409 and body["status"] == "CANCELED", (st, body)
    c.start(ids[1])
    st, body, _ = c.app.api("POST", "/v1/flow-runs/%s/cancel" % ids[1], {})
    assert st == 409, st
    st, page, _ = c.app.api("GET", "/v1/flow-runs?flowId=%s&status=RUNNING,CANCELED" % f["id"])
    assert sorted(r["id"] for r in page["data"]) == sorted(ids[:2]), page
    # a failed run retried from its failed step keeps the succeeded steps
    c.post(ids[1], "steps", {"attempt": 1, "steps": [
        {"path": "step_1", "record": record()},
        {"path": "step_2", "record": record(status="FAILED")}]})
    failed = {"name": "step_2", "displayName": "step_2", "message": "boom"}
    st, body, _ = c.post(ids[1], "result", {"attempt": 1, "status": "FAILED",
                                            "failedStep": failed})
    assert st == 200 and body["status"] == "FAILED"
    run = c.run(ids[1])
    assert run["failedStep"] == failed, run
    st, body, _ = c.app.api("POST", "/v1/flow-runs/%s/retry" % ids[1], {"strategy": "BOGUS"})
    assert st == 400, st
    st, body, _ = c.app.api("POST", "/v1/flow-runs/%s/retry" % ids[1],
                            {"strategy": "FROM_FAILED_STEP"})
    assert st == 200 and body["status"] == "QUEUED", (st, body)
    job = c.job(ids[1] + "_retry1")
    assert json.loads(job["data"])["executionType"] == "BEGIN", job
    _, ctx, _ = c.start(ids[1], job_id=ids[1] + "_retry1")
    assert list(ctx["steps"]) == ["step_1"], ctx["steps"]
    st, body, _ = c.app.api("POST", "/v1/flow-runs/%s/retry" % ids[2],
                            {"strategy": "ON_LATEST_VERSION"})
    assert st == 201 and body["id"] != ids[2] and body["retryOf"] == ids[2], (st, body)
    assert c.job(body["id"])["name"] == "EXECUTE_FLOW"
    st, body, _ = c.app.api("GET", "/v1/flow-runs/NoSuchRun")
    assert st == 404, st


def test_piece_store(c):
    f = c.push(flow("store"))
    run_id = h.request(c.app.port, "POST", "/v1/webhooks/" + f["id"], {})[1]["runId"]
    key = h.quote("flow_%s/run_%s/k" % (f["id"], run_id))
    path = "/v1/engine/store?key=" + key
    st, body, _ = c.app.engine("GET", path, run_id=run_id)
    assert st == 404, st
    st, body, _ = c.app.engine("PUT", path, {"value": {"list": [1, "2"]}}, run_id=run_id)
    assert st == 200, (st, body)
    st, body, _ = c.app.engine("GET", path, run_id=run_id)
    assert st == 200 and body["value"] == {"list": [1, "2"]}, body
    st, body, _ = c.app.engine("DELETE", path, run_id=run_id)
    assert st == 200 and body["deleted"] is True
    st, body, _ = c.app.engine("GET", "/v1/engine/store?key=" + "k" * 129, run_id=run_id)
    assert st == 400, st
    st, body, _ = c.app.engine("PUT", path, {"value": "x" * (600 * 1024)}, run_id=run_id)
    assert st == 413, st


def test_metrics(c):
    st, text, hd = h.request(c.app.port, "GET", "/metrics")
    assert st == 200 and hd["content-type"].startswith("text/plain"), hd
    for needle in ('flowd_runs{status="SUCCEEDED"}', 'flowd_queue_jobs{state="waiting"}',
                   "flowd_queue_depth", 'flowd_step_duration_seconds_bucket{le="+Inf"}',
                   'flowd_http_responses_total{code="200"}',
                   'flowd_http_responses_total{code="401"}',
                   'flowd_runs_enqueued_total{origin="webhook"}'):
        assert needle in text, needle
    count = [l for l in text.splitlines() if l.startswith("flowd_step_duration_seconds_count")]
    assert int(count[0].split()[1]) > 0, count


def test_cli(c):
    env = dict(c.app.env)
    env.pop("AP_API_KEY", None)
    d = h.temp_dir("flowd-cli-")
    path = os.path.join(d, "flow.json")
    json.dump(flow("cli"), open(path, "w"))
    out = subprocess.run([h.FLOWD, "flows", "push", path], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0 and "webhook: http" in out.stdout, out
    fid = out.stdout.split()[0]
    out = subprocess.run([h.FLOWD, "flows", "ls"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and fid in out.stdout, out
    run_id = h.request(c.app.port, "POST", "/v1/webhooks/" + fid, {})[1]["runId"]
    complete_run(c, run_id, {"status": 200, "headers": {}, "body": {"hi": 1}})
    out = subprocess.run([h.FLOWD, "runs", "show", run_id], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 0, out
    assert "SUCCEEDED" in out.stdout and "step_1" in out.stdout and "|" in out.stdout, out.stdout
    assert "attempt 1" in out.stdout and "response 200" in out.stdout, out.stdout
    out = subprocess.run([h.FLOWD, "runs", "ls", "--flow", fid, "--json"], env=env,
                         capture_output=True, text=True)
    assert json.loads(out.stdout)["data"][0]["id"] == run_id, out
    out = subprocess.run([h.FLOWD, "runs", "cancel", run_id], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 1 and "409" in out.stderr, out
    bad = dict(env, AP_API_KEY="wrong")
    out = subprocess.run([h.FLOWD, "flows", "ls"], env=bad, capture_output=True, text=True)
    assert out.returncode == 1 and "401" in out.stderr, out
    out = subprocess.run([h.FLOWD, "runs", "frobnicate"], env=env, capture_output=True,
                         text=True)
    assert out.returncode == 2, out


# ---------------------------------------------------------------- separate deployments

def fresh_db(c, name):
    """A database no other app of this run uses."""
    if c.db == "sqlite":
        return "sqlite", h.temp_dir("flowd-%s-" % name)
    host = c.db.split("host=")[1].split()[0]
    subprocess.check_call([os.path.join(h.pg_bin(), "createdb"), "-h", host, "-U", "postgres",
                           name])
    return c.db.replace("dbname=postgres", "dbname=" + name), None


def test_schedule_two_replicas(c):
    db, shared_dir = fresh_db(c, "sched")
    env = {"AP_API_KEY": "k-sched", "AP_JWT_SECRET": "j-sched"}
    # Two replicas on one store: on SQLite they share the directory (the file), on
    # PostgreSQL the database.
    a1 = h.App(c.redis_port, db, config_path=shared_dir, env=env)
    a2 = h.App(c.redis_port, db, config_path=shared_dir, env=env)
    st, f, _ = a1.api("POST", "/v1/flows", schedule_flow("*/2 * * * * *"))
    assert st == 201 and f["schedule"]["timezone"] == "Europe/Paris", (st, f)
    assert f["schedule"]["nextRunAt"], f
    start = time.time()
    time.sleep(9)
    st, page, _ = a2.api("GET", "/v1/flow-runs?limit=1000&flowId=" + f["id"])
    runs = page["data"]
    elapsed = time.time() - start
    ticks = {}
    for r in runs:
        job = c.job(r["id"])
        assert json.loads(job["data"])["flowId"] == f["id"], job
        t = h_iso_ms(r["created"]) // 2000
        ticks.setdefault(t, []).append(r["id"])
    dup = {t: v for t, v in ticks.items() if len(v) > 1}
    assert not dup, "a tick fired more than once: %s" % dup
    assert int(elapsed / 2) - 2 <= len(runs) <= int(elapsed / 2) + 1, (len(runs), elapsed)
    st, ctx, _ = a1.engine("POST", "/v1/engine/runs/%s/start" % runs[0]["id"],
                           {"jobId": runs[0]["id"]}, run_id=runs[0]["id"])
    assert ctx["triggerOutput"] == {}, ctx["triggerOutput"]
    a1.api("DELETE", "/v1/flows/" + f["id"])
    for a in (a1, a2):
        assert a.stop() == 0


def h_iso_ms(iso):
    from datetime import datetime
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_reaper(c):
    db, d = fresh_db(c, "reaper")
    env = {"AP_WORKER_LOCK_DURATION_SECONDS": "1", "AP_WORKER_STALLED_INTERVAL_SECONDS": "1",
           "AP_FLOW_TIMEOUT_SECONDS": "2"}
    a = h.App(c.redis_port, db, config_path=d, env=env)
    st, f, _ = a.api("POST", "/v1/flows", flow("reap"))
    hook = "/v1/webhooks/" + f["id"]
    lost = h.request(a.port, "POST", hook, {})[1]["runId"]      # RUNNING, job gone
    queued = h.request(a.port, "POST", hook, {})[1]["runId"]    # QUEUED, job gone
    slow = h.request(a.port, "POST", hook, {})[1]["runId"]      # RUNNING past the timeout
    for r in (lost, slow):
        a.engine("POST", "/v1/engine/runs/%s/start" % r, {"jobId": r}, run_id=r)
    for r in (lost, queued):
        c.redis("DEL", PREFIX + r)
        c.redis("LREM", PREFIX + "wait", 0, r)

    def status(r):
        return a.api("GET", "/v1/flow-runs/" + r)[1]["status"]

    h.wait_until(lambda: status(lost) == "INTERNAL_ERROR", timeout=15, what="lost run reaped")
    assert "without a result" in a.api("GET", "/v1/flow-runs/" + lost)[1]["failedStep"]["message"]
    h.wait_until(lambda: c.job(queued).get("name") == "EXECUTE_FLOW", timeout=15,
                 what="queued run enqueued again")
    assert status(queued) == "QUEUED"
    h.wait_until(lambda: status(slow) == "TIMEOUT", timeout=15, what="slow run timed out")
    st, text, _ = h.request(a.port, "GET", "/metrics")
    assert 'flowd_reaper_runs_total{action="finalised"} 2' in text, text
    assert 'flowd_reaper_runs_total{action="requeued"} 1' in text, text
    assert a.stop() == 0


def test_sigterm(c):
    db, d = fresh_db(c, "sigterm")
    a = h.App(c.redis_port, db, config_path=d, env={"AP_WEBHOOK_TIMEOUT_SECONDS": "4"})
    st, f, _ = a.api("POST", "/v1/flows", flow("term"))
    out = []

    def go():
        out.append(h.request(a.port, "POST", "/v1/webhooks/%s/sync" % f["id"], {}))
    t = threading.Thread(target=go)
    t.start()
    h.wait_until(lambda: "flowd_sync_waiters 1" in h.request(a.port, "GET", "/metrics")[1],
                 what="a waiting sync call")
    t0 = time.time()
    assert a.stop() == 0
    t.join()
    took = time.time() - t0
    # The sync call had its grace (min(AP_WEBHOOK_TIMEOUT_SECONDS, 10 s)) to be answered,
    # then got an answer: never a hang, never a dropped connection.
    assert took < 6, took
    assert out[0][0] in (503, 504), out


TESTS = [test_health_and_auth, test_flows_crud, test_invalid_flow,
         test_webhook_enqueues_bullmq_job, test_webhook_bodies, test_webhook_auth,
         test_sync_webhooks, test_engine_tokens, test_attempts_and_replay, test_pause_resume,
         test_delay, test_runs_endpoints, test_piece_store, test_cli, test_metrics,
         test_schedule_two_replicas, test_reaper, test_sigterm]


def main():
    only = sys.argv[1:]
    redis_port = h.start_redis()
    backends = [("sqlite", "sqlite")]
    if os.environ.get("FLOWD_SKIP_POSTGRES") != "1":
        backends.append(("postgres", h.start_postgres()))
    failed = passed = 0
    for name, db in backends:
        h.Redis(redis_port)("FLUSHALL")
        c = Ctx(db, redis_port)
        for t in TESTS:
            if only and t.__name__ not in only:
                continue
            t0 = time.time()
            try:
                t(c)
                passed += 1
                print("ok   %-8s %-34s %.1fs" % (name, t.__name__, time.time() - t0), flush=True)
            except Exception:  # noqa: BLE001 - report and go on
                failed += 1
                print("FAIL %-8s %s" % (name, t.__name__), flush=True)
                traceback.print_exc()
        c.app.kill()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
