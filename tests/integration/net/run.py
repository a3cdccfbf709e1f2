#!/usr/bin/env python3
"""AP_NETWORK_MODE=STRICT end to end, through `flowd run`: a flow's http step and a code step's
fetch reach the allowed server (127.0.0.2, through AP_SSRF_ALLOW_LIST), and are refused, before
any connection, every spelling of 127.0.0.1, localhost, [::1], a redirect from the allowed server
to 127.0.0.1, and a name whose answer mixes an allowed and a blocked address. UNRESTRICTED reaches
everything. Under `flowd serve`, the app's own port is refused like any loopback address, and the
allowed server is reached through the worker's engines. Each local server counts the
connections that reach it."""
import http.server
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "service"))
import harness  # noqa: E402  (the flow builders)

FLOWD = os.environ.get("FLOWD") or sys.exit("FLOWD is not set")
failures = []


class Server:
    """An HTTP server on one address that counts connections. /redirect answers 302 to
    redirect_to; anything else answers 200 {"server": name}."""

    def __init__(self, name, host, family=socket.AF_INET):
        self.name, self.connections, self.redirect_to = name, 0, None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.startswith("/redirect"):
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = json.dumps({"server": outer.name}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        class Srv(http.server.ThreadingHTTPServer):
            address_family = family

            def get_request(self):
                conn = super().get_request()
                outer.connections += 1
                return conn

        self.httpd = Srv((host, 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def reached(self):
        """Connections so far, including any still waiting to be accepted."""
        time.sleep(0.05)
        pending, _, _ = select.select([self.httpd.socket], [], [], 0)
        return self.connections + (1 if pending else 0)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def http_flow(url):
    return harness.flow("net http", harness.piece_step(
        "step_1", "@activepieces/piece-http", "send_request",
        {"method": "GET", "url": url, "headers": {}, "queryParams": {}, "body_type": "none",
         "followRedirects": True, "failureMode": "continue_none"}))


def fetch_flow(url):
    code = ("export const code = async (inputs) => {\n"
            "  const r = await fetch(inputs.url);\n"
            "  return { status: r.status, body: await r.json() };\n"
            "};")
    return harness.flow("net fetch", harness.code_step("step_1", code, {"url": url}))


def run_flow(tmp, flow, env, wrap=None):
    path = os.path.join(tmp, "flow.json")
    with open(path, "w") as f:
        json.dump(flow, f)
    cmd = [FLOWD, "run", path, "--json"]
    if wrap:
        cmd = wrap(cmd)
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    try:
        result = json.loads(p.stdout)
    except ValueError:
        result = None
    return p.returncode, result, p.stderr


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + detail))
    if not ok:
        failures.append(name)


def expect_reached(tmp, env, kind, url, server, name, wrap=None):
    flow = http_flow(url) if kind == "http" else fetch_flow(url)
    before = server.connections
    rc, result, stderr = run_flow(tmp, flow, env, wrap)
    out = (result or {}).get("steps", {}).get("step_1", {}).get("output") or {}
    body = out.get("body")
    ok = rc == 0 and result and result["status"] == "SUCCEEDED" and \
        body == {"server": server.name} and server.reached() > before
    check(f"{kind} reaches {url}", ok, f"rc={rc} result={result} stderr={stderr[-500:]}")


def expect_blocked(tmp, env, kind, url, servers, wrap=None, message="blocked address"):
    flow = http_flow(url) if kind == "http" else fetch_flow(url)
    before = [s.connections for s in servers]
    rc, result, stderr = run_flow(tmp, flow, env, wrap)
    msg = ((result or {}).get("failedStep") or {}).get("message", "")
    untouched = all(s.reached() == b for s, b in zip(servers, before))
    ok = rc == 1 and result and result["status"] == "FAILED" and message in msg and untouched
    check(f"{kind} blocked {url}", ok,
          f"rc={rc} message={msg!r} untouched={untouched} stderr={stderr[-500:]}")


def netns_hosts_wrapper(tmp, text):
    """Runs the command with a hosts file of our own over /etc/hosts, in a private mount
    namespace, so that the real resolver answers a name with the addresses we choose."""
    hosts = os.path.join(tmp, "hosts")
    with open(hosts, "w") as f:
        f.write(text)
    unshare = shutil.which("unshare")
    if not unshare:
        return None
    probe = subprocess.run([unshare, "-rm", "sh", "-c", f"mount --bind {hosts} /etc/hosts"],
                           capture_output=True)
    if probe.returncode != 0:
        return None

    def wrap(cmd):
        return [unshare, "-rm", "sh", "-c",
                f'mount --bind {hosts} /etc/hosts && exec "$@"', "sh"] + cmd
    return wrap


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_phase(tmp, base_env, two):
    """flowd serve under STRICT: the app's own port is blocked, 127.0.0.2 is reached."""
    var = os.path.join(tmp, "serve-var")
    port = free_port()
    env = dict(base_env, AP_CONFIG_PATH=var, AP_PORT=str(port), AP_API_KEY="net-test-key",
               AP_NETWORK_MODE="STRICT", AP_SSRF_ALLOW_LIST="127.0.0.2")
    log = open(os.path.join(tmp, "serve.log"), "w")
    proc = subprocess.Popen([FLOWD, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def call(method, path, body=None, auth=True):
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer net-test-key"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, None

    def run(flow):
        _, created = call("POST", "/v1/flows", flow)
        _, started = call("POST", f"/v1/webhooks/{created['id']}", {}, auth=False)
        deadline = time.time() + 30
        while time.time() < deadline:
            _, r = call("GET", f"/v1/flow-runs/{started['runId']}")
            if r and r["status"] not in ("QUEUED", "RUNNING"):
                return r
            time.sleep(0.1)
        return None

    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if call("GET", "/v1/health", auth=False)[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        for kind, make in (("http", http_flow), ("fetch", fetch_flow)):
            r = run(make(f"{base}/v1/health"))
            msg = ((r or {}).get("failedStep") or {}).get("message", "")
            check(f"serve: {kind} to the app's own port is blocked",
                  r and r["status"] == "FAILED" and
                  msg.endswith("blocked address 127.0.0.1 for host '127.0.0.1' (loopback)"),
                  f"run={r}")
            before = two.connections
            r = run(make(f"http://127.0.0.2:{two.port}/"))
            check(f"serve: {kind} reaches the allowed server",
                  r and r["status"] == "SUCCEEDED" and two.reached() > before, f"run={r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def main():
    tmp = tempfile.mkdtemp(prefix="flowd-net-")
    one = Server("one", "127.0.0.1")
    two = Server("two", "127.0.0.2")
    try:
        six = Server("six", "::1", socket.AF_INET6)
    except OSError:
        six = None
    two.redirect_to = f"http://127.0.0.1:{one.port}/"
    servers = [one, two] + ([six] if six else [])
    base = {k: v for k, v in os.environ.items() if not k.startswith("AP_")}
    base.update({"AP_CONFIG_PATH": tmp, "AP_LOG_LEVEL": "warn"})
    strict = dict(base, AP_NETWORK_MODE="STRICT", AP_SSRF_ALLOW_LIST="127.0.0.2")
    open_env = dict(base, AP_NETWORK_MODE="UNRESTRICTED")
    p1, p2 = one.port, two.port
    blocked = [f"http://127.0.0.1:{p1}/", f"http://localhost:{p1}/",
               f"http://[::ffff:127.0.0.1]:{p1}/", f"http://2130706433:{p1}/",
               f"http://0x7f.1:{p1}/", f"http://0177.0.0.1:{p1}/", f"http://127.1:{p1}/"]
    if six:
        blocked.append(f"http://[::1]:{six.port}/")
    try:
        for kind in ("http", "fetch"):
            expect_reached(tmp, strict, kind, f"http://127.0.0.2:{p2}/", two, "allowed")
            for url in blocked:
                expect_blocked(tmp, strict, kind, url, servers)
            expect_blocked(tmp, strict, kind, f"http://127.0.0.2:{p2}/redirect", [one])
            wrap = netns_hosts_wrapper(tmp, "127.0.0.2 mixed.test\n127.0.0.1 mixed.test\n"
                                            "127.0.0.2 public.test\n")
            if wrap:
                expect_reached(tmp, strict, kind, f"http://public.test:{p2}/", two,
                               "allowed name", wrap)
                expect_blocked(tmp, strict, kind, f"http://mixed.test:{p2}/", servers, wrap,
                               "blocked address 127.0.0.1 for host 'mixed.test'")
            else:
                print("skip mixed resolution: no private mount namespace here")
            for url in [f"http://127.0.0.1:{p1}/", f"http://0x7f.1:{p1}/",
                        f"http://localhost:{p1}/"]:
                expect_reached(tmp, open_env, kind, url, one, "unrestricted")
            if six:
                expect_reached(tmp, open_env, kind, f"http://[::1]:{six.port}/", six,
                               "unrestricted")
        rc, _, stderr = run_flow(tmp, http_flow("http://127.0.0.2/"),
                                 dict(strict, AP_SSRF_ALLOW_LIST="127.0.0.2,nonsense"))
        check("bad allow list refused", rc == 2 and "nonsense" in stderr,
              f"rc={rc} stderr={stderr[-300:]}")
        if shutil.which("redis-server"):
            serve_phase(tmp, base, two)
        else:
            print("skip flowd serve: no redis-server")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
