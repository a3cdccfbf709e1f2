#!/usr/bin/env python3
"""Integration test of `flowd run` and `flowd engine` as processes.

flowd run: the exit codes (0 SUCCEEDED/PAUSED, 1 other statuses, 2 unusable input) and the
messages for unusable input, each of which must name the file and the problem.
flowd engine: the pipe protocol of src/engine/proto.h, driven as a worker would drive it:
acknowledgements, store requests, pauses, several operations on one engine, bad input.
"""
import json
import os
import subprocess
import sys
import tempfile

FLOWD = os.environ.get("FLOWD", "build/flowd")
SRC = os.environ.get("FLOWD_SRC", ".")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def trigger(next_action=None):
    t = {"name": "trigger", "type": "PIECE_TRIGGER", "displayName": "Catch Webhook",
         "settings": {"pieceName": "@activepieces/piece-webhook", "pieceVersion": "0.1.0",
                      "triggerName": "catch_webhook", "input": {}}}
    if next_action:
        t["nextAction"] = next_action
    return {"displayName": "t", "trigger": t}


def piece(name, piece_name, action, inp, nxt=None):
    a = {"name": name, "displayName": name, "type": "PIECE",
         "settings": {"pieceName": "@activepieces/piece-" + piece_name, "pieceVersion": "0.1.0",
                      "actionName": action, "input": inp}}
    if nxt:
        a["nextAction"] = nxt
    return a


def flowd_run(tmp, args, flow=None, text=None):
    path = os.path.join(tmp, "flow.json")
    if flow is not None or text is not None:
        with open(path, "w") as f:
            f.write(text if text is not None else json.dumps(flow))
    p = subprocess.run([FLOWD, "run"] + [a.replace("FLOW", path) for a in args],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, NO_COLOR="1"))
    return p, path


def test_run(tmp):
    # The example flow, readable and as JSON.
    hello = os.path.join(SRC, "examples", "hello.json")
    payload = os.path.join(SRC, "examples", "hello-payload.json")
    p = subprocess.run([FLOWD, "run", hello, "--payload", payload], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0, "hello exits 0, got %d: %s" % (p.returncode, p.stderr))
    check("step_1" in p.stdout and "SUCCEEDED" in p.stdout, "hello prints its steps")
    p = subprocess.run([FLOWD, "run", hello, "--payload", payload, "--json"],
                       capture_output=True, text=True, timeout=60)
    res = json.loads(p.stdout)
    check(res["status"] == "SUCCEEDED", "hello --json status")
    check(res["response"]["status"] == 200, "hello --json response")
    check(res["response"]["body"]["message"] == "Hello, Ada!", "hello greets Ada")
    check(set(res["steps"]) == {"trigger", "step_1", "step_2"}, "hello steps")

    # Inline payload; a failing flow exits 1; a paused one exits 0.
    # Numbers come out as JavaScript writes them (shared/FLOWS.md section 2), in the raw
    # bytes and not only once parsed: 5.4, not 5.4000000000000004.
    flow = trigger(piece("m", "data-mapper", "advanced_mapping",
                         {"mapping": {"p": "{{trigger.price + 2 - 3}}", "s": "{{0.1 + 0.2}}",
                                      "big": "{{1e21}}", "t": "p={{trigger.price + 2 - 3}}"}}))
    p, _ = flowd_run(tmp, ["FLOW", "--payload", '{"price": 6.4}', "--json"], flow)
    check(p.returncode == 0 and
          '{"p":5.4,"s":0.30000000000000004,"big":1e+21,"t":"p=5.4"}' in p.stdout and
          '"price":6.4' in p.stdout, "run --json writes shortest numbers: %r" % p.stdout[:600])
    flow = trigger(piece("m", "data-mapper", "advanced_mapping",
                         {"mapping": {"x": "{{trigger.x}}"}}))
    p, _ = flowd_run(tmp, ["FLOW", "--payload", '{"x": 7}', "--json"], flow)
    check(p.returncode == 0 and json.loads(p.stdout)["steps"]["m"]["output"] == {"x": 7},
          "inline payload reaches the steps")
    p = subprocess.run([FLOWD, "run", os.path.join(tmp, "flow.json"), "--payload", "-",
                        "--json"], input='{"x": 8}', capture_output=True, text=True, timeout=60)
    check(p.returncode == 0 and json.loads(p.stdout)["steps"]["m"]["output"] == {"x": 8},
          "payload on stdin with --payload -")
    p, _ = flowd_run(tmp, ["FLOW"], trigger(piece("p", "nope", "x", {})))
    check(p.returncode == 1, "a FAILED run exits 1, got %d" % p.returncode)
    check("piece @activepieces/piece-nope is not installed" in p.stdout,
          "the failure is printed: " + p.stdout)
    p, _ = flowd_run(tmp, ["FLOW", "--json"],
                     trigger(piece("d", "delay", "delayFor", {"delayFor": 3600})))
    check(p.returncode == 0 and json.loads(p.stdout)["status"] == "PAUSED",
          "a PAUSED run exits 0")

    # Unusable input: exit 2, and a message that names the file and the problem.
    cases = [
        (["/nonexistent/flow.json"], None, None, ["/nonexistent/flow.json", "No such file"]),
        (["FLOW"], None, '{\n  "trigger": {,\n}', ["flow.json", "2:15"]),
        (["FLOW"], {"trigger": {"name": "trigger", "type": "PIECE_TRIGGER",
                                "settings": {"pieceName": "p", "triggerName": "t"},
                                "nextAction": {"name": "l", "type": "LOOP_ON_ITEMS",
                                               "settings": {"items": 5}}}}, None,
         ["flow.json", "trigger.nextAction.settings.items: expected a string"]),
        (["FLOW"], {"displayName": "d", "trigger": {"name": "trigger", "type": "EMPTY",
                                                    "settings": {}}}, None,
         ["flow.json", "EMPTY"]),
        (["FLOW"], trigger(piece("a", "data-mapper", "advanced_mapping", {},
                                 piece("a", "data-mapper", "advanced_mapping", {}))), None,
         ["flow.json", "duplicate step name 'a'"]),
        (["FLOW", "--payload", '{"a":'], trigger(), None, ["payload is not valid JSON", "1:5"]),
        (["FLOW", "--payload", "missing-payload.json"], trigger(), None,
         ["missing-payload.json", "No such file"]),
        (["FLOW", "--bogus"], trigger(), None, ["unknown option '--bogus'"]),
        ([], None, None, ["no flow file given"]),
    ]
    for args, flow, text, needles in cases:
        p, path = flowd_run(tmp, args, flow, text)
        check(p.returncode == 2, "%s exits 2, got %d (%s)" % (needles, p.returncode, p.stderr))
        for n in needles:
            check(n in p.stderr, "message for %s mentions %r: %r" % (args, n, p.stderr))
        check(p.stdout == "", "nothing on stdout for unusable input %s" % args)

    bad_payload = os.path.join(tmp, "bad-payload.json")
    with open(bad_payload, "w") as f:
        f.write("{\n\n  oops }")
    p, _ = flowd_run(tmp, ["FLOW", "--payload", bad_payload], trigger())
    check(p.returncode == 2 and "bad-payload.json" in p.stderr and ": 3:" in p.stderr,
          "a payload file that is not JSON names the file and line:column: " + p.stderr)


class Engine:
    def __init__(self):
        self.p = subprocess.Popen([FLOWD, "engine"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def send(self, msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()

    def recv(self):
        line = self.p.stdout.readline()
        if not line:
            raise EOFError("engine closed stdout: " + self.p.stderr.read())
        return json.loads(line)

    def close(self):
        self.p.stdin.close()
        code = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()
        return code


def test_engine():
    e = Engine()
    ready = e.recv()
    check(ready["type"] == "ready" and ready["protocol"] == 1, "engine says ready")

    # put (effects: acked), a mapper (no ack), get (store request), return_response.
    flow = trigger(piece("put", "store", "put", {"key": "k", "value": "{{trigger.v}}"},
                         piece("m", "data-mapper", "advanced_mapping", {"mapping": {"a": 1}},
                               piece("get", "store", "get", {"key": "k"},
                                     piece("resp", "webhook", "return_response",
                                           {"fields": {"body": "{{get}}"}})))))
    e.send({"type": "run", "runId": "RunA00000000000000001", "flowId": "f1",
            "flowVersion": flow, "triggerOutput": {"v": "hello"}})
    store = {}
    events = []
    while True:
        ev = e.recv()
        events.append(ev)
        if ev["type"] == "step_finished" and ev["ack"]:
            e.send({"type": "ack"})
        elif ev["type"] == "store":
            if ev["op"] == "put":
                store[ev["key"]] = ev["value"]
                e.send({"type": "store_result"})
            elif ev["op"] == "get":
                e.send({"type": "store_result", "found": ev["key"] in store,
                        "value": store.get(ev["key"])})
        elif ev["type"] == "finished":
            break
    types = [(ev["type"], ev.get("name")) for ev in events]
    check(("step_finished", "trigger") in types, "trigger reported")
    fin = events[-1]
    check(fin["status"] == "SUCCEEDED", "engine run SUCCEEDED: %s" % fin)
    check(fin["result"]["response"]["body"] == "hello", "the store round trip: %s" % fin)
    acks = {ev["name"]: ev["ack"] for ev in events if ev["type"] == "step_finished"}
    check(acks == {"trigger": False, "put": True, "m": False, "get": True, "resp": True},
          "acks only for steps with effects: %s" % acks)
    check(any(ev["type"] == "respond" for ev in events), "respond event sent")
    check(isinstance(fin.get("cpuNs"), int) and fin["cpuNs"] > 0,
          "finished reports the operation's CPU time: %s" % fin.get("cpuNs"))
    check(all(ev.get("runId") == "RunA00000000000000001" for ev in events),
          "every event names the run")

    # A second operation on the same engine: it pauses; the paused event waits for an ack.
    flow2 = trigger(piece("wait", "approval", "wait_for_approval", {}))
    e.send({"type": "run", "runId": "RunB00000000000000002", "flowVersion": flow2,
            "frontendUrl": "https://ap.example.com"})
    steps = {}
    while True:
        ev = e.recv()
        if ev["type"] == "step_finished":
            steps[ev["name"]] = ev["record"]
            if ev["ack"]:
                e.send({"type": "ack"})
        elif ev["type"] == "paused":
            wp = ev["waitpoint"]
            check(wp["type"] == "WEBHOOK" and wp["resumeUrl"].startswith(
                "https://ap.example.com/v1/flow-runs/RunB00000000000000002/waitpoints/"),
                "paused event carries the waitpoint: %s" % wp)
            e.send({"type": "ack"})
        elif ev["type"] == "finished":
            check(ev["status"] == "PAUSED", "second run PAUSED")
            break
    # The resume: the persisted steps and the payload.
    e.send({"type": "run", "runId": "RunB00000000000000002", "flowVersion": flow2,
            "steps": steps, "resume": {"body": {}, "headers": {},
                                       "queryParams": {"action": "approve"}}})
    while True:
        ev = e.recv()
        if ev["type"] == "step_finished" and ev["ack"]:
            e.send({"type": "ack"})
        elif ev["type"] == "finished":
            check(ev["status"] == "SUCCEEDED" and
                  ev["result"]["steps"]["wait"]["output"] == {"approved": True},
                  "resumed run approved: %s" % ev)
            break

    # A refused checkpoint ends the run INTERNAL_ERROR; an invalid flow is reported.
    e.send({"type": "run", "runId": "RunC00000000000000003", "flowVersion": flow})
    while True:
        ev = e.recv()
        if ev["type"] == "store":
            e.send({"type": "store_result"})
        elif ev["type"] == "step_finished" and ev["ack"]:
            e.send({"type": "ack", "ok": False, "error": "lock lost"})
        elif ev["type"] == "finished":
            check(ev["status"] == "INTERNAL_ERROR", "refused ack: INTERNAL_ERROR")
            check("get" not in ev["result"]["steps"], "nothing runs after a refused ack")
            break
    e.send({"type": "run", "runId": "RunD00000000000000004",
            "flowVersion": {"trigger": {"name": "trigger", "type": "EMPTY"}}})
    ev = e.recv()
    check(ev["type"] == "finished" and ev["status"] == "INTERNAL_ERROR" and "EMPTY" in
          ev["error"], "invalid flow finishes with an error: %s" % ev)

    # Versions sent with their id are kept: an operation may then give the id alone.
    def run_kept(run_id, **op):
        e.send(dict({"type": "run", "runId": run_id, "triggerOutput": {"v": "x"}}, **op))
        while True:
            ev = e.recv()
            if ev["type"] == "store":
                e.send({"type": "store_result", "found": True, "value": "kept"})
            elif ev["type"] == "step_finished" and ev["ack"]:
                e.send({"type": "ack"})
            elif ev["type"] == "finished":
                return ev
    ev = run_kept("RunE00000000000000005", flowVersionId="V1", flowVersion=flow)
    check(ev["status"] == "SUCCEEDED", "a version sent with its id runs: %s" % ev)
    ev = run_kept("RunE00000000000000006", flowVersionId="V1")
    check(ev["status"] == "SUCCEEDED" and ev["result"]["response"]["body"] == "kept",
          "the id alone runs the kept version: %s" % ev)
    ev = run_kept("RunE00000000000000007", flowVersionId="V9")
    check(ev["status"] == "INTERNAL_ERROR" and "keeps no version 'V9'" in ev["error"],
          "an id the engine does not keep is an error: %s" % ev)
    bad = {"trigger": {"name": "trigger", "type": "EMPTY"}}
    first = run_kept("RunE00000000000000008", flowVersionId="VBAD", flowVersion=bad)
    again = run_kept("RunE00000000000000009", flowVersionId="VBAD")
    check(again["status"] == "INTERNAL_ERROR" and again["error"] == first["error"],
          "a kept invalid version gives its error again: %s / %s" % (first, again))
    # The oldest goes out first: four versions after V1 (VBAD, V2, V3, V4), V1 is gone.
    for i in range(2, 5):
        run_kept("RunF0000000000000000%d" % i, flowVersionId="V%d" % i, flowVersion=flow)
    ev = run_kept("RunG00000000000000001", flowVersionId="V1")
    check(ev["status"] == "INTERNAL_ERROR" and "keeps no version 'V1'" in ev["error"],
          "the oldest version goes out once more are sent: %s" % ev)
    ev = run_kept("RunG00000000000000002", flowVersionId="V2")
    check(ev["status"] == "SUCCEEDED", "the later versions are kept: %s" % ev)
    check(e.close() == 0, "EOF ends the engine with 0")

    # Garbage on stdin: exit 3, not a crash.
    e = Engine()
    e.recv()
    e.p.stdin.write("this is not json\n")
    check(e.close() == 3, "a bad line ends the engine with exit code 3")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        test_run(tmp)
    test_engine()
    if failures:
        print("%d checks failed" % len(failures), file=sys.stderr)
        sys.exit(1)
    print("engine_cli: all checks passed")


if __name__ == "__main__":
    main()
