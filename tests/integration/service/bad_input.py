#!/usr/bin/env python3
"""Bad input against a running `flowd serve` (issue 4): an invalid flow is 400 with the JSON
path, an unknown flow's webhook 404, a body over 5 MiB 413, invalid JSON with a JSON content
type 400 (and no run), a wrong API key 401, a forged or expired engine token 401. After all of
it the app still serves, and nothing was enqueued by the refused requests."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (API_KEY, FLOWD, JWT_SECRET, Client, Harness, check, code_step, engine_token,  # noqa: E402
                     flow, log, main, return_response)


def raw_post(port, path, headers, parts):
    """POSTs over a raw socket, tolerating a server that answers and closes before the whole
    body is sent; returns the raw reply."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" % path
    head += "".join("%s: %s\r\n" % kv for kv in headers.items()) + "\r\n"
    try:
        s.sendall(head.encode())
        for p in parts:
            s.sendall(p)
    except OSError:
        pass
    reply = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                break
            reply += d
    except OSError:
        pass
    s.close()
    return reply


def test():
    with Harness("bad-input") as h:
        # The defaults of `make run`: a relative AP_CONFIG_PATH and the embedded redis-server.
        app = h.flowd("serve", "serve", env={"AP_WORKER_CONCURRENCY": 2}, config_dir="./var")
        c = Client(app.port)
        q = subprocess.run([FLOWD, "queue", "stats", "--json"], cwd=h.dir, env=app.env,
                           capture_output=True, text=True, timeout=20)
        check(q.returncode == 0 and "waiting" in q.stdout,
              "flowd queue on the embedded Redis of AP_CONFIG_PATH=./var: %s %s", q.stdout,
              q.stderr)
        echo = c.push_flow(flow("echo", code_step(
            "step_1", "export const code = async (i) => ({ok: true})",
            next_action=return_response("step_2", 200, {}, {"ok": True}))))

        # An invalid flow: the error names the offending field by its JSON path.
        bad = flow("bad", code_step("step_1", "export const code = async () => 1"))
        bad["trigger"]["nextAction"]["settings"]["sourceCode"] = 5
        r = c.post("/v1/flows", bad)
        check(r.status == 400, "invalid flow: want 400, got %r", r)
        msg = r.json().get("error", "")
        check("trigger.nextAction.settings.sourceCode" in msg,
              "invalid flow: the error should name trigger.nextAction.settings.sourceCode: %r",
              msg)
        bad = flow("bad", code_step("step_1", "export const code = async () => 1"))
        bad["trigger"]["nextAction"]["nextAction"] = code_step("step_1", "x")
        r = c.post("/v1/flows", bad)
        check(r.status == 400 and "step_1" in r.json().get("error", ""),
              "duplicate step name: want 400 naming it, got %r", r)
        r = c.post("/v1/flows", "{not json", headers={"Content-Type": "application/json"})
        check(r.status == 400, "a flow that is not JSON: want 400, got %r", r)
        log("invalid flows: 400 with the path")

        # Unknown flow.
        for path in ("/v1/webhooks/nosuchflow0000000000", "/v1/webhooks/nosuchflow0000000000/sync"):
            r = c.post(path, {"a": 1}, auth=False)
            check(r.status == 404, "%s: want 404, got %r", path, r)
        log("unknown flow: 404")

        # A body over 5 MiB, announced by Content-Length: refused before it is read (the app
        # may answer and close while the body is still being sent, as a server should).
        big = b"x" * (5 * 1024 * 1024 + 1)
        reply = raw_post(app.port, "/v1/webhooks/%s" % echo["id"],
                         {"Content-Type": "text/plain", "Content-Length": str(len(big))}, [big])
        check(reply.startswith(b"HTTP/1.1 413"), "5 MiB + 1 body: want 413, got %r", reply[:200])
        # Exactly 5 MiB is fine.
        r = c.post("/v1/webhooks/%s" % echo["id"], b"y" * (5 * 1024 * 1024), auth=False,
                   headers={"Content-Type": "text/plain"})
        check(r.status == 200, "a 5 MiB body: want 200, got %r", r)
        # Chunked, with no Content-Length: refused once it crosses the limit.
        chunk = b"z" * 65536
        chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (6 * 16 + 1) + [b"0\r\n\r\n"]
        reply = raw_post(app.port, "/v1/webhooks/%s" % echo["id"],
                         {"Content-Type": "text/plain", "Transfer-Encoding": "chunked"}, chunks)
        check(reply.startswith(b"HTTP/1.1 413"), "chunked 6 MiB body: want 413, got %r",
              reply[:200])
        # The sync webhook and the management API have the same limit.
        reply = raw_post(app.port, "/v1/webhooks/%s/sync" % echo["id"],
                         {"Content-Type": "application/json", "Content-Length": str(len(big))},
                         [big])
        check(reply.startswith(b"HTTP/1.1 413"), "sync 5 MiB + 1 body: want 413, got %r",
              reply[:200])
        log("bodies over 5 MiB: 413")

        # Invalid JSON with a JSON content type: 400 and no run.
        before = len(c.runs(flowId=echo["id"]))
        for ct in ("application/json", "application/json; charset=utf-8"):
            for path in ("/v1/webhooks/%s" % echo["id"], "/v1/webhooks/%s/sync" % echo["id"]):
                r = c.post(path, b'{"a": 1,', auth=False, headers={"Content-Type": ct})
                check(r.status == 400, "%s with invalid JSON (%s): want 400, got %r", path, ct, r)
        after = len(c.runs(flowId=echo["id"]))
        check(after == before, "invalid JSON started runs: %d before, %d after", before, after)
        log("invalid JSON: 400, no run")

        # Wrong API key.
        for key in ("wrong", API_KEY + "x", API_KEY[:-1], None):
            r = Client(app.port, key).get("/v1/flows")
            check(r.status == 401, "API key %r: want 401, got %r", key, r)
        r = c.get("/v1/flows", headers={"Authorization": "Basic " + API_KEY})
        check(r.status == 401, "a Basic header instead of Bearer: want 401, got %r", r)
        r = Client(app.port, "wrong").post("/v1/flows", flow("x", None))
        check(r.status == 401, "push with a wrong key: want 401, got %r", r)
        log("wrong API key: 401")

        # Engine tokens: forged (wrong secret, tampered payload, alg none), expired.
        r = c.post("/v1/webhooks/%s" % echo["id"], {"n": 1}, auth=False)
        run_id = r.json()["runId"]
        now = int(time.time())
        good = engine_token(run_id)
        head, body, mac = good.split(".")
        other = engine_token("another-run-id-00000")
        tokens = {
            "wrong secret": engine_token(run_id, secret="not-the-secret"),
            "expired": engine_token(run_id, iat=now - 7200, exp=now - 60),
            "tampered payload": head + "." + other.split(".")[1] + "." + mac,
            "no signature": head + "." + body + ".",
            "alg none": "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + body + ".",
            "garbage": "garbage",
            "empty": "",
        }
        for what, tok in tokens.items():
            for op in ("start", "steps", "result"):
                r = Client(app.port, tok).post("/v1/engine/runs/%s/%s" % (run_id, op),
                                               {"attempt": 1})
                check(r.status == 401, "%s engine token on %s: want 401, got %r", what, op, r)
            r = Client(app.port, tok).get("/v1/engine/store?key=k")
            check(r.status == 401, "%s engine token on the store: want 401, got %r", what, r)
        r = c.post("/v1/engine/runs/%s/start" % run_id, {"attempt": 1})
        check(r.status == 401, "the API key as an engine token: want 401, got %r", r)
        # A valid token for another run is refused too (403: authenticated, not allowed).
        r = Client(app.port, other).post("/v1/engine/runs/%s/steps" % run_id,
                                         {"attempt": 1, "steps": []})
        check(r.status in (401, 403), "another run's token: want 403, got %r", r)
        log("forged and expired engine tokens: 401")

        # The app survived all of it and the refused requests left the run alone.
        got = c.wait_run(run_id, "SUCCEEDED", 30)
        check(got["steps"]["step_2"]["output"]["body"] == {"ok": True},
              "the run after the token probes: %r", got)
        check(c.get("/v1/health", auth=False).status == 200, "the app is not healthy")
        check(app.alive(), "flowd serve died")
        check(JWT_SECRET not in app.log_text(), "the JWT secret appeared in the log")


if __name__ == "__main__":
    main(test)
